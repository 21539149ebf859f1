//! Header sync metrics (R8.1), as a typed struct exported in Prometheus text format.

use std::sync::atomic::{AtomicU64, Ordering};

/// Header sync metrics. Gauges and counters are updated by the reactor and
/// read by the node's `/metrics` endpoint.
#[derive(Debug, Default)]
pub struct HeaderSyncMetrics {
    /// Height of the last verified and stored header.
    pub header_height: AtomicU64,
    /// Highest height claimed by a peer in good standing.
    pub target_height: AtomicU64,
    /// Headers verified and stored since start.
    pub headers_synced: AtomicU64,
    /// Bytes of the header responses received since start (frame payloads
    /// of answered `GetHeaders` and `GetHeadersV2`), the download volume.
    pub bytes_synced: AtomicU64,
    /// Requests in flight.
    pub pending_requests: AtomicU64,
    /// Peers taking part in header sync.
    pub peers: AtomicU64,
    /// Batches that failed verification.
    pub verification_failures: AtomicU64,
    /// Requests that timed out.
    pub timeouts: AtomicU64,
    /// Peers banned by header sync.
    pub bans: AtomicU64,
    /// 1 while syncing (peers have headers we lack), else 0.
    pub syncing: AtomicU64,
    /// Headers per second over the last measurement interval, times 1000.
    pub sync_rate_milli: AtomicU64,
    /// Rounds the last checkpoint bootstrap needed (one per verified header).
    pub bootstrap_rounds: AtomicU64,
}

impl HeaderSyncMetrics {
    /// Appends the metrics in Prometheus text format.
    pub fn render_prometheus(&self, out: &mut String) {
        let g = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let rows: [(&str, &str, &str, String); 12] = [
            (
                "headway_headersync_bootstrap_rounds",
                "gauge",
                "Headers the last checkpoint bootstrap verified (rounds).",
                g(&self.bootstrap_rounds).to_string(),
            ),
            (
                "headway_header_height",
                "gauge",
                "Height of the last verified and stored header.",
                g(&self.header_height).to_string(),
            ),
            (
                "headway_headersync_target_height",
                "gauge",
                "Highest header height claimed by a peer in good standing.",
                g(&self.target_height).to_string(),
            ),
            (
                "headway_headersync_headers_synced_total",
                "counter",
                "Headers verified and stored by header sync.",
                g(&self.headers_synced).to_string(),
            ),
            (
                "headway_headersync_bytes_synced_total",
                "counter",
                "Bytes of header responses received (frame payloads).",
                g(&self.bytes_synced).to_string(),
            ),
            (
                "headway_headersync_pending_requests",
                "gauge",
                "GetHeaders requests in flight.",
                g(&self.pending_requests).to_string(),
            ),
            (
                "headway_headersync_peers",
                "gauge",
                "Peers taking part in header sync.",
                g(&self.peers).to_string(),
            ),
            (
                "headway_headersync_verification_failures_total",
                "counter",
                "Header batches that failed verification.",
                g(&self.verification_failures).to_string(),
            ),
            (
                "headway_headersync_timeouts_total",
                "counter",
                "GetHeaders requests that timed out.",
                g(&self.timeouts).to_string(),
            ),
            (
                "headway_headersync_bans_total",
                "counter",
                "Peers banned by header sync.",
                g(&self.bans).to_string(),
            ),
            (
                "headway_headersync_syncing",
                "gauge",
                "1 while peers have headers this node lacks.",
                g(&self.syncing).to_string(),
            ),
            (
                "headway_headersync_rate",
                "gauge",
                "Headers synced per second.",
                format!("{:.3}", g(&self.sync_rate_milli) as f64 / 1000.0),
            ),
        ];
        for (name, kind, help, value) in rows {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        }
    }
}
