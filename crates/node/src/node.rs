//! The running node: store, transport, reactors, serving, metrics, shutdown.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use headway_chain::{HeaderExt, TrustedState};
use headway_headersync::{
    HeaderSync, HeaderSyncInput, ParallelConfig, RateLimiter, ReactorConfig, SyncMode,
    server::{get_headers_weight, rate_limited},
    v2::RangeSyncConfig,
};
use headway_net::{NetConfig, NetEvent, Network, NodeKey, PeerId, Responder};
use headway_store::{Store, StoreConfig, StoreError};
use headway_wire::{Push, Request};
use tracing::{info, warn};

use crate::answers::AnswerQueue;
use crate::{
    config::{Config, HeaderSyncMode},
    genesis,
    metrics::{self, MetricsSources, NodeMetrics},
    producer, serve,
};

/// Command-line overrides of the config file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--listen`
    pub listen: Option<std::net::SocketAddr>,
    /// `--metrics`
    pub metrics: Option<std::net::SocketAddr>,
    /// `--peer` (added to the file's bootstrap peers)
    pub peers: Vec<String>,
    /// `--header-sync`
    pub header_sync: Option<HeaderSyncMode>,
}

/// Reads the node key file (64 hex digits).
pub fn read_key(path: &Path) -> Result<NodeKey> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read node key {} (run `headway init` first)",
            path.display()
        )
    })?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed)
        .with_context(|| format!("node key {} is not 64 hex digits", path.display()))?;
    Ok(NodeKey::from_seed(seed))
}

/// Writes a fresh node key file, readable only by its owner.
pub fn write_key(path: &Path, key: &NodeKey) -> Result<()> {
    std::fs::write(path, hex::encode(key.seed()) + "\n")
        .with_context(|| format!("writing node key {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

fn resolve(home: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        home.join(p)
    }
}

/// Runs a node from `home/config.toml` until `shutdown` completes (the binary
/// passes [`shutdown_signal`]: SIGINT or SIGTERM).
pub async fn run(
    home: &Path,
    overrides: Overrides,
    shutdown: impl std::future::Future<Output = &'static str>,
) -> Result<()> {
    let config_path = home.join("config.toml");
    let mut config = Config::load(&config_path)?;
    if let Some(listen) = overrides.listen {
        config.node.listen = listen;
    }
    if overrides.metrics.is_some() {
        config.node.metrics = overrides.metrics;
    }
    config.p2p.bootstrap.extend(overrides.peers.iter().cloned());
    if let Some(mode) = overrides.header_sync {
        config.sync.header_sync = mode;
    }
    let bootstrap = config.bootstrap_peers()?;

    let key = read_key(&resolve(home, &config.node.key_file))?;
    let (genesis, genesis_trust) = genesis::read(&resolve(home, &config.genesis.file))?;
    let producer = config.producer.enabled;
    if producer
        && genesis::devnet_genesis(&config.producer.devnet)?
            .header
            .hash()
            != genesis.header.hash()
    {
        bail!("producer.devnet parameters do not produce the configured genesis");
    }

    let db_dir = resolve(home, &config.node.db_dir);
    // A producer writes many blocks and flushes at its own commit points.
    let store = {
        let db_dir = db_dir.clone();
        tokio::task::spawn_blocking(move || {
            Store::open(&db_dir, StoreConfig::new().with_sync_on_commit(!producer))
        })
        .await?
    }
    .map_err(|e| {
        let context = store_open_context(&e, &db_dir);
        anyhow::Error::new(e).context(context)
    })?;
    let trusted = init_store(&store, &genesis, genesis_trust)?;
    info!(
        peer_id = %key.peer_id(),
        chain_id = %genesis.header.chain_id,
        header_height = store.header_height(),
        block_height = store.block_height(),
        producer,
        "node starting"
    );

    let request_timeout = Duration::from_millis(config.sync.request_timeout_ms);
    let mut net_config = NetConfig {
        listen: config.node.listen,
        request_timeout,
        ..NetConfig::default()
    };
    if let Some(max) = config.p2p.max_inbound {
        net_config.max_inbound_connections = max;
    }
    if let Some(bytes) = config.p2p.max_udp_payload_size {
        net_config.max_udp_payload_size = bytes;
    }
    let (net, mut events) = Network::start(key, net_config, bootstrap).await?;

    let (headersync, headersync_task) = HeaderSync::spawn(
        net.clone(),
        store.clone(),
        (!producer).then_some(trusted),
        reactor_config(&config)?,
    );
    let node_metrics = Arc::new(NodeMetrics::default());

    // Peer requests are answered from the store through one bounded queue.
    let concurrency = config
        .p2p
        .answer_concurrency
        .unwrap_or_else(crate::answers::default_concurrency);
    let answers = serve::answer_queue(store.clone(), concurrency);
    let metrics_task = match config.node.metrics {
        Some(addr) => {
            let listener = metrics::bind(addr).await?;
            let sources = MetricsSources {
                node: node_metrics.clone(),
                headersync: headersync.metrics().clone(),
                net: net.clone(),
                store: store.clone(),
                answers: answers.metrics().clone(),
            };
            Some(tokio::spawn(metrics::serve(listener, sources)))
        }
        None => None,
    };
    let producer_task = producer.then(|| {
        let (store, section, hs, m) = (
            store.clone(),
            config.producer.clone(),
            headersync.clone(),
            node_metrics.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = producer::run(store, section, hs, m).await {
                tracing::error!(error = %format!("{e:#}"), "producer stopped");
            }
        })
    });

    // `get_headers_per_second` counts full batches; the limiter counts units.
    let limiter = Arc::new(Mutex::new(RateLimiter::<PeerId>::new(
        config.sync.get_headers_per_second
            * get_headers_weight(headway_wire::limits::MAX_HEADERS_PER_BATCH),
        headway_headersync::server::DEFAULT_RATE_WINDOW,
    )));
    let strikes = Mutex::new(Strikes::new());
    let dispatch_ctx = Dispatch {
        answers: &answers,
        headersync: &headersync,
        limiter: &limiter,
        strikes: &strikes,
        net: &net,
        ban_seconds: config.sync.ban_seconds,
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break };
                dispatch(event, &dispatch_ctx).await;
            }
            signal = &mut shutdown => {
                info!(signal, "shutting down");
                break;
            }
        }
    }

    if let Some(task) = producer_task {
        task.abort();
    }
    if let Some(task) = metrics_task {
        task.abort();
    }
    headersync_task.abort();
    net.shutdown().await;
    let store2 = store.clone();
    tokio::task::spawn_blocking(move || store2.flush())
        .await?
        .context("flushing the store at shutdown")?;
    info!(
        header_height = store.header_height(),
        block_height = store.block_height(),
        "stopped cleanly"
    );
    Ok(())
}

fn reactor_config(config: &Config) -> Result<ReactorConfig> {
    let mut reactor = ReactorConfig {
        // serve.rs answers GetHeadersV2 and the bootstrap requests.
        features: headway_wire::Features::HEADERS_V2,
        ..ReactorConfig::default()
    };
    let timeout = Duration::from_millis(config.sync.request_timeout_ms);
    reactor.pool.request_timeout = timeout;
    reactor.pool.ban_duration = Duration::from_secs(config.sync.ban_seconds);
    reactor.progress_every = Duration::from_millis(config.sync.progress_log_ms);
    if config.sync.header_sync.is_v2() {
        let mut parallel = ParallelConfig::default();
        if config.sync.header_sync == HeaderSyncMode::V2HeadersOnly {
            parallel.ranges = RangeSyncConfig::bare();
        }
        parallel.ranges.request_timeout = timeout;
        parallel.checkpoint = config
            .sync
            .checkpoint
            .as_ref()
            .map(|c| c.resolve())
            .transpose()
            .map_err(|e| anyhow::anyhow!("sync.checkpoint: {e}"))?;
        reactor.mode = SyncMode::V2(parallel);
    }
    Ok(reactor)
}

/// Stores the genesis in a new store, or checks an existing store is of the
/// same chain; returns the trusted state to continue header sync from.
fn init_store(
    store: &Store,
    genesis: &headway_wire::SignedHeader,
    genesis_trust: TrustedState,
) -> Result<TrustedState> {
    if store.header_height() == 0 {
        store
            .save_headers(std::slice::from_ref(genesis))
            .context("storing the genesis header")?;
        return Ok(genesis_trust);
    }
    let first = store
        .load_header(1)?
        .context("store has headers but no header at height 1")?;
    if first.hash() != genesis.header.hash() {
        bail!("the database belongs to another chain (its block 1 is not the configured genesis)");
    }
    let height = store.header_height();
    let header = store
        .load_header(height)?
        .with_context(|| format!("stored header {height} is missing"))?;
    let set = store
        .validator_set_at(height)?
        .with_context(|| format!("no validator set stored for height {height}"))?;
    TrustedState::new(header, set).context("stored tip is not a valid trusted state")
}

/// Protocol violations (malformed or oversize frames) tolerated per peer within
/// [`STRIKE_WINDOW`] before a ban: one may be a bug, repeats are an attack.
pub const MAX_STRIKES: usize = 3;
/// Window over which strikes count.
pub const STRIKE_WINDOW: Duration = Duration::from_secs(60);

/// Counts protocol violations per peer (a sliding window over a bounded map).
pub struct Strikes(RateLimiter<PeerId>);

impl Strikes {
    fn new() -> Self {
        Strikes(RateLimiter::new(MAX_STRIKES - 1, STRIKE_WINDOW))
    }

    /// Records a strike; true when the peer is over the limit.
    fn strike(&mut self, peer: PeerId, now: Instant) -> bool {
        self.0.check(peer, now).is_err()
    }
}

struct Dispatch<'a> {
    answers: &'a AnswerQueue<(Request, Responder)>,
    headersync: &'a HeaderSync,
    limiter: &'a Arc<Mutex<RateLimiter<PeerId>>>,
    strikes: &'a Mutex<Strikes>,
    net: &'a Network,
    ban_seconds: u64,
}

async fn dispatch(event: NetEvent, d: &Dispatch<'_>) {
    let Dispatch {
        answers,
        headersync,
        limiter,
        strikes,
        net,
        ban_seconds,
    } = *d;
    match event {
        NetEvent::Connected { peer, greeted, .. } => {
            headersync
                .input(HeaderSyncInput::Connected { peer, greeted })
                .await
        }
        // The peer's request budget is kept: forgetting it here let a
        // spammer reset its rate limit by reconnecting. The limiter is
        // bounded on its own (`MAX_RATE_LIMITED_PEERS`, idle windows first).
        NetEvent::Disconnected { peer, .. } => {
            headersync.input(HeaderSyncInput::Disconnected(peer)).await;
        }
        NetEvent::Push {
            peer,
            push: Push::Status(status),
        } => {
            headersync
                .input(HeaderSyncInput::Status(peer, status))
                .await
        }
        NetEvent::Push {
            peer,
            push: Push::BlockAnnouncement(a),
        } => {
            tracing::debug!(peer = %peer.short(), height = a.signed_header.header.height, "block announced");
        }
        NetEvent::Misbehaved { peer, reason } => {
            warn!(peer = %peer.short(), reason, "peer misbehaved");
            let over = strikes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .strike(peer, Instant::now());
            if over {
                let reason = format!("repeated protocol violations, last: {reason}");
                net.ban(peer, Duration::from_secs(ban_seconds), &reason);
            }
        }
        NetEvent::Request {
            peer,
            request,
            responder,
        } => {
            if let Some(weight) = serve::rate_weight(&request) {
                // R2.7: rate-limit header requests per peer, weighted by the
                // headers asked for; say so instead of going silent.
                let verdict = limiter
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .check_weighted(peer, Instant::now(), weight);
                if let Err(retry_after) = verdict {
                    return responder
                        .respond(rate_limited(retry_after.max(Duration::from_millis(1))));
                }
            }
            // Answered in order per peer, a bounded number at once; a full
            // queue is BUSY.
            if let Err((_, responder)) =
                answers.submit(peer, responder.order(), (request, responder))
            {
                responder.respond(serve::busy());
            }
        }
    }
}

/// Completes on SIGINT or SIGTERM, naming the signal.
pub async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

/// What failing to open the store at `dir` with `error` tells the operator:
/// where, and for a store of another format version, what to do about it
/// (this build does not migrate stores; everything in one is synced again
/// from peers or rebuilt by the producer).
fn store_open_context(error: &StoreError, dir: &std::path::Path) -> String {
    let place = format!("opening the store at {}", dir.display());
    match error {
        StoreError::UnsupportedVersion { found, supported } => format!(
            "{place}: it was written by a build of store format {found}, and this build reads \
             format {supported} only. Move the directory away (or delete it) and start again: \
             the node syncs it again from its peers"
        ),
        _ => place,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_of_another_format_says_where_and_what_to_do() {
        let dir = std::path::Path::new("/var/lib/headway/data");
        let old = StoreError::UnsupportedVersion {
            found: 7,
            supported: 8,
        };
        let message = format!(
            "{:#}",
            anyhow::Error::new(old).context(store_open_context(
                &StoreError::UnsupportedVersion {
                    found: 7,
                    supported: 8
                },
                dir
            ))
        );
        for part in [
            "/var/lib/headway/data",
            "format 7",
            "format 8",
            "Move the directory away",
            "store format version 7 is not supported",
        ] {
            assert!(message.contains(part), "{part:?} missing from {message:?}");
        }
        let other = store_open_context(&StoreError::EmptyBatch, dir);
        assert_eq!(other, "opening the store at /var/lib/headway/data");
    }
}
