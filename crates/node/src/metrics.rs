//! Node metrics and the Prometheus endpoint (`GET /metrics`).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use headway_headersync::HeaderSyncMetrics;
use headway_net::Network;
use headway_store::Store;

use crate::answers::AnswerMetrics;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tracing::{debug, info};

/// Largest HTTP request the endpoint reads.
const MAX_HTTP_REQUEST: usize = 8 * 1024;

/// Node-level gauges.
#[derive(Debug)]
pub struct NodeMetrics {
    /// When the node started.
    pub started: Instant,
    /// Blocks the producer has made (0 for other nodes).
    pub produced_height: AtomicU64,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        NodeMetrics {
            started: Instant::now(),
            produced_height: AtomicU64::new(0),
        }
    }
}

/// Everything the endpoint renders.
#[derive(Clone)]
pub struct MetricsSources {
    /// Node gauges.
    pub node: Arc<NodeMetrics>,
    /// Header sync.
    pub headersync: Arc<HeaderSyncMetrics>,
    /// Transport.
    pub net: Network,
    /// Store heights.
    pub store: Store,
    /// The queue of peer requests being answered.
    pub answers: Arc<AnswerMetrics>,
}

impl MetricsSources {
    /// Renders every metric in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let gauges: [(&str, &str, String); 5] = [
            (
                "headway_block_height",
                "Height of the last contiguous block with its body.",
                self.store.block_height().to_string(),
            ),
            (
                "headway_state_height",
                "Height of the applied state.",
                self.store.state_height().to_string(),
            ),
            (
                "headway_produced_height",
                "Height of the last block this producer made (0: not a producer).",
                self.node
                    .produced_height
                    .load(Ordering::Relaxed)
                    .to_string(),
            ),
            (
                "headway_peers",
                "Connected peers.",
                self.net.connected_peers().len().to_string(),
            ),
            (
                "headway_uptime_seconds",
                "Seconds since the node started.",
                format!("{:.3}", self.node.started.elapsed().as_secs_f64()),
            ),
        ];
        for (name, help, value) in gauges {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
            ));
        }
        self.headersync.render_prometheus(&mut out);
        self.net.metrics().render_prometheus(&mut out);
        self.answers.render_prometheus(&mut out);
        out
    }
}

/// Scrapes served at once, at most; a connection past it is closed unread.
pub const MAX_METRICS_CONNECTIONS: usize = 16;

/// Time a scrape has, from accept to the last byte of the answer: a client
/// that trickles its request or does not read the answer is cut off then.
pub const METRICS_REQUEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Pause after a failed accept (out of file descriptors, say), so that the
/// loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Serves `GET /metrics` on `listener` until the task is dropped: at most
/// [`MAX_METRICS_CONNECTIONS`] at once, each within
/// [`METRICS_REQUEST_DEADLINE`].
pub async fn serve(listener: TcpListener, sources: MetricsSources) {
    serve_rendered(listener, move || sources.render()).await;
}

/// [`serve`] with the text `render` makes for each scrape.
async fn serve_rendered(
    listener: TcpListener,
    render: impl Fn() -> String + Send + Sync + 'static,
) {
    let render = Arc::new(render);
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "metrics endpoint listening");
    }
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_METRICS_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                debug!(error = %e, "metrics accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "metrics connection refused: too many at once");
            drop(stream);
            continue;
        };
        let render = render.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if tokio::time::timeout(METRICS_REQUEST_DEADLINE, scrape(stream, &*render))
                .await
                .is_err()
            {
                debug!(%peer, "metrics request cut off at its deadline");
            }
        });
    }
}

/// Reads one request head (within [`MAX_HTTP_REQUEST`]) and answers it.
async fn scrape(mut stream: tokio::net::TcpStream, render: &(impl Fn() -> String + ?Sized)) {
    let mut buf = vec![0u8; MAX_HTTP_REQUEST];
    let mut len = 0;
    // Read until the end of the request head, within the bound.
    while len < buf.len() {
        match stream.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let (status, body) = if head.starts_with("GET /metrics") {
        ("200 OK", render())
    } else {
        ("404 Not Found", "try GET /metrics\n".to_string())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    if let Err(e) = stream.write_all(response.as_bytes()).await {
        debug!(error = %e, "metrics response failed");
    }
}

/// Binds the endpoint's listener (a clear error when the port is taken).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    async fn get(addr: SocketAddr) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        // A refused connection ends at once, empty (or reset).
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// Clients holding connections open take at most
    /// [`MAX_METRICS_CONNECTIONS`] scrapes; one past it is closed unread,
    /// and a place frees when a client goes.
    #[tokio::test]
    async fn connections_past_the_bound_are_closed_unread() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_rendered(listener, || "up 1\n".to_string()));
        assert!(get(addr).await.starts_with("HTTP/1.1 200 OK"));
        let mut idle = Vec::new();
        for _ in 0..MAX_METRICS_CONNECTIONS {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        // Let the endpoint take them all.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(get(addr).await, "", "a scrape past the bound is refused");
        drop(idle.pop());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let answer = get(addr).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.ends_with("up 1\n"), "{answer}");
    }
}
