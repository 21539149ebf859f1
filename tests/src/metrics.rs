//! Scraping a node's Prometheus endpoint (`GET /metrics`) over plain HTTP/1.1.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// Largest metrics page read.
pub const MAX_METRICS_PAGE: u64 = 1 << 20;
/// Time allowed for one scrape.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// The header sync metrics every conforming node exposes (R8.1), besides
/// `headway_net_*` transport counters.
pub const REQUIRED_METRICS: [&str; 10] = [
    "headway_header_height",
    "headway_block_height",
    "headway_headersync_syncing",
    "headway_headersync_bans_total",
    "headway_headersync_verification_failures_total",
    "headway_headersync_timeouts_total",
    "headway_headersync_peers",
    "headway_headersync_pending_requests",
    "headway_headersync_headers_synced_total",
    "headway_headersync_rate",
];

/// One scrape: sample name (with labels, if any) to value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics(pub BTreeMap<String, f64>);

impl Metrics {
    /// Parses the Prometheus text format (comments skipped, timestamps ignored).
    pub fn parse(text: &str) -> Metrics {
        let mut out = BTreeMap::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            if let (Some(name), Some(value)) = (parts.next(), parts.next())
                && let Ok(value) = value.parse::<f64>()
            {
                out.insert(name.to_string(), value);
            }
        }
        Metrics(out)
    }

    /// The value of a sample.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.get(name).copied()
    }

    /// The value of a sample, 0 when absent.
    pub fn value(&self, name: &str) -> f64 {
        self.get(name).unwrap_or(0.0)
    }
}

/// Scrapes `GET /metrics` from `addr`.
///
/// # Errors
///
/// A message when the endpoint cannot be reached or does not answer 200.
pub async fn scrape(addr: SocketAddr) -> Result<Metrics, String> {
    let fetch = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut body = Vec::new();
        stream
            .take(MAX_METRICS_PAGE)
            .read_to_end(&mut body)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&body).into_owned();
        let (head, page) = text.split_once("\r\n\r\n").ok_or("no HTTP head")?;
        if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
            return Err(format!(
                "metrics endpoint answered {:?}",
                head.lines().next()
            ));
        }
        Ok(Metrics::parse(page))
    };
    tokio::time::timeout(SCRAPE_TIMEOUT, fetch)
        .await
        .map_err(|_| format!("scraping {addr} timed out"))?
}
