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

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, sources: MetricsSources) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "metrics endpoint listening");
    }
    loop {
        let Ok((mut stream, peer)) = listener.accept().await else {
            continue;
        };
        let sources = sources.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_HTTP_REQUEST];
            let mut len = 0;
            // Read until the end of the request head, within the bound.
            while len < buf.len() {
                match tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    stream.read(&mut buf[len..]),
                )
                .await
                {
                    Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => len += n,
                }
                if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&buf[..len]);
            let (status, body) = if head.starts_with("GET /metrics") {
                ("200 OK", sources.render())
            } else {
                ("404 Not Found", "try GET /metrics\n".to_string())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            if let Err(e) = stream.write_all(response.as_bytes()).await {
                debug!(%peer, error = %e, "metrics response failed");
            }
        });
    }
}

/// Binds the endpoint's listener (a clear error when the port is taken).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))
}
