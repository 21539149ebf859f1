//! The header sync reactor: a thin async driver around [`HeaderSyncPool`].
//!
//! It turns transport events into pool inputs, sends the pool's requests
//! (one task each, results back through a bounded channel), stores verified
//! batches through the store (header height, never block height), publishes
//! the header height to subscribers, pushes status updates to peers, bans
//! the peers the pool names, and logs peer problems and verification
//! failures (R8.2). Without a trusted state it only announces status (a
//! producer, which makes its own headers).

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use headway_chain::{Hashed, TrustedState};
use headway_net::{NetError, Network, PeerId};
use headway_store::Store;
use headway_wire::{
    ErrorCode, Features, GetHeaders, Push, Request, Response, SignedHeader, StatusResponse,
};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::{
    HeaderSyncMetrics, HeaderSyncPool, PoolConfig, PoolEvent, RequestFailure, StatusAnnouncer,
    parallel::{
        PEER_UPDATE_QUEUE, ParallelConfig, ParallelError, ParallelReport, PeerUpdate, sync_parallel,
    },
    progress::{PROGRESS_EVERY, SyncProgress},
    subscription::HeaderSubscription,
    writer::{HeaderBatch, HeaderWriter, MAX_UNSTORED_HEADERS, WriterState},
};

/// Which protocol the reactor catches up with.
#[derive(Debug, Clone, Default)]
pub enum SyncMode {
    /// Batches of signed headers from the trusted state (seed 003).
    #[default]
    V1,
    /// Checkpoint bootstrap and parallel MMR ranges (seeds 001 and 000), then
    /// v1 from the verified tip; v1 from the stored tip if no peer serves v2.
    V2(ParallelConfig),
}

/// Reactor settings.
#[derive(Debug, Clone)]
pub struct ReactorConfig {
    /// The pool's limits.
    pub pool: PoolConfig,
    /// Timeout checks and metric updates happen at least this often.
    pub tick: Duration,
    /// Capacity of the input channel from the node.
    pub input_queue: usize,
    /// The catch-up protocol.
    pub mode: SyncMode,
    /// In v2 mode, how long to gather peers' statuses after the first one
    /// before bootstrapping (so ranges can go to several peers).
    pub v2_gather: Duration,
    /// What this node announces in its statuses: set
    /// [`Features::HEADERS_V2`] only when it answers `GetHeadersV2` (the
    /// node does); v2 peers then pipeline ranges to it from the first request.
    pub features: Features,
    /// While behind its peers, the reactor logs its progress (height, target,
    /// rate, time left) this often; `Duration::ZERO` turns that off.
    pub progress_every: Duration,
}

impl Default for ReactorConfig {
    fn default() -> Self {
        ReactorConfig {
            pool: PoolConfig::default(),
            tick: Duration::from_millis(250),
            input_queue: 1024,
            mode: SyncMode::V1,
            v2_gather: Duration::from_millis(750),
            features: Features::NONE,
            progress_every: PROGRESS_EVERY,
        }
    }
}

/// In v2 mode with a checkpoint, the wait before retrying a failed run.
pub const V2_RETRY: Duration = Duration::from_secs(5);

/// In v2 mode, the least time to gather statuses even when every connected
/// peer has reported. Short: peers that report later join the running
/// download (see [`PeerUpdate`]).
pub const V2_MIN_GATHER: Duration = Duration::from_millis(5);

/// Where the reactor is in catching up.
#[allow(
    clippy::large_enum_variant,
    reason = "one value per reactor, replaced at most twice"
)]
enum Phase {
    /// v1 (or serve-only without a pool).
    V1,
    /// v2: gathering statuses since the first one arrived.
    Gathering {
        config: ParallelConfig,
        since: Option<Instant>,
        trusted: TrustedState,
        /// No start before this (a retry's backoff).
        not_before: Instant,
    },
    /// v2 running.
    Parallel(tokio::task::JoinHandle<Result<ParallelReport, ParallelError>>),
}

/// What the node tells the reactor.
#[derive(Debug, Clone)]
pub enum HeaderSyncInput {
    /// A peer connected.
    Connected {
        /// The peer.
        peer: PeerId,
        /// The status the transport greeted it with
        /// ([`NetEvent::Connected`](headway_net::NetEvent::Connected)'s
        /// `greeted`): it counts as the first status pushed to it, so it is
        /// not repeated, which the peer would punish (R1.4).
        greeted: Option<StatusResponse>,
    },
    /// A peer disconnected.
    Disconnected(PeerId),
    /// A peer pushed its status.
    Status(PeerId, StatusResponse),
    /// Headers up to this height were stored by someone else (a producer).
    LocalHeight(u64),
}

/// Handle to a running reactor.
#[derive(Debug, Clone)]
pub struct HeaderSync {
    inputs: mpsc::Sender<HeaderSyncInput>,
    metrics: Arc<HeaderSyncMetrics>,
    height: watch::Receiver<u64>,
    store: Store,
}

impl HeaderSync {
    /// Starts the reactor. With `trusted`, it syncs headers after that state;
    /// without, it only serves status (a producer).
    pub fn spawn(
        net: Network,
        store: Store,
        trusted: Option<TrustedState>,
        config: ReactorConfig,
    ) -> (HeaderSync, tokio::task::JoinHandle<()>) {
        let (inputs, input_rx) = mpsc::channel(config.input_queue.max(1));
        let metrics = Arc::new(HeaderSyncMetrics::default());
        let start_height = store.header_height();
        metrics.header_height.store(start_height, Ordering::Relaxed);
        let (height_tx, height) = watch::channel(start_height);
        let (pool, phase) = match (trusted, config.mode.clone()) {
            (Some(t), SyncMode::V2(parallel)) => (
                None,
                Phase::Gathering {
                    config: parallel,
                    since: None,
                    trusted: t,
                    not_before: Instant::now(),
                },
            ),
            (Some(t), SyncMode::V1) => {
                (Some(HeaderSyncPool::new(t, config.pool.clone())), Phase::V1)
            }
            (None, _) => (None, Phase::V1),
        };
        let capacity = config.pool.max_pending_batches.max(1) * 2;
        let (done_tx, done_rx) = mpsc::channel(capacity);
        let reactor = Reactor {
            net,
            writer: HeaderWriter::spawn(store.clone(), metrics.clone()),
            backlog: Vec::new(),
            store: store.clone(),
            pool,
            announcer: StatusAnnouncer::with_features(config.features),
            greeting: None,
            metrics: metrics.clone(),
            height_tx,
            inputs: input_rx,
            done_tx,
            done_rx,
            tick: config.tick,
            rate_mark: (Instant::now(), 0),
            progress: SyncProgress::new(config.progress_every),
            phase,
            pool_config: config.pool.clone(),
            v2_gather: config.v2_gather,
            statuses: std::collections::HashMap::new(),
            v2_retry: None,
            v2_updates: None,
            v2_pending: std::collections::HashMap::new(),
        };
        let task = tokio::spawn(reactor.run());
        (
            HeaderSync {
                inputs,
                metrics,
                height,
                store,
            },
            task,
        )
    }

    /// Sends an input; waits when the reactor is behind (back-pressure).
    pub async fn input(&self, input: HeaderSyncInput) {
        let _ = self.inputs.send(input).await;
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<HeaderSyncMetrics> {
        &self.metrics
    }

    /// The stored header height, as the reactor last published it.
    pub fn header_height(&self) -> u64 {
        *self.height.borrow()
    }

    /// A loss-free, in-order stream of verified headers from `from_height` (R5.1).
    pub fn subscribe(&self, from_height: u64) -> HeaderSubscription {
        HeaderSubscription::new(self.store.clone(), self.height.clone(), from_height)
    }

    /// A watch of the stored header height.
    pub fn height_watch(&self) -> watch::Receiver<u64> {
        self.height.clone()
    }
}

/// A request's peer, the request, and the response with its size in bytes.
type Completion = (PeerId, GetHeaders, Result<(Response, usize), NetError>);

/// Completes when a running v2 task does; pends forever otherwise.
async fn parallel_done(phase: &mut Phase) -> Result<ParallelReport, ParallelError> {
    match phase {
        Phase::Parallel(handle) => match handle.await {
            Ok(result) => result,
            Err(e) => Err(ParallelError::Task(e.to_string())),
        },
        _ => std::future::pending().await,
    }
}

/// The trusted state at the store's tip: its header and validator set.
pub fn trusted_from_store(store: &Store) -> Result<TrustedState, String> {
    let height = store.header_height();
    let header = store
        .load_header(height)
        .map_err(|e| e.to_string())?
        .ok_or(format!("no header at {height}"))?;
    let set = store
        .validator_set_at(height)
        .map_err(|e| e.to_string())?
        .ok_or(format!("no validator set for {height}"))?;
    TrustedState::new(header, set).map_err(|e| e.to_string())
}

struct Reactor {
    net: Network,
    store: Store,
    /// Stores verified headers off the reactor, overlapping verification.
    writer: HeaderWriter,
    /// Verified headers waiting for room in the writer's queue (bounded: no
    /// requests go out while `MAX_UNSTORED_HEADERS` are unstored).
    backlog: Vec<Hashed<SignedHeader>>,
    pool: Option<HeaderSyncPool<PeerId>>,
    announcer: StatusAnnouncer<PeerId>,
    /// The status the transport greets inbound peers with, as last set.
    greeting: Option<StatusResponse>,
    metrics: Arc<HeaderSyncMetrics>,
    height_tx: watch::Sender<u64>,
    inputs: mpsc::Receiver<HeaderSyncInput>,
    done_tx: mpsc::Sender<Completion>,
    done_rx: mpsc::Receiver<Completion>,
    tick: Duration,
    rate_mark: (Instant, u64),
    progress: SyncProgress,
    phase: Phase,
    pool_config: PoolConfig,
    v2_gather: Duration,
    /// Latest status of each connected peer (bounded by the transport's
    /// connection limits), replayed into the v1 pool after v2.
    statuses: std::collections::HashMap<PeerId, Option<StatusResponse>>,
    /// What a failed v2 run would retry with.
    v2_retry: Option<(ParallelConfig, TrustedState)>,
    /// Peer news for the running v2 run.
    v2_updates: Option<mpsc::Sender<PeerUpdate>>,
    /// News not yet taken by the v2 run (it reads none while bootstrapping):
    /// the latest per peer, at most `PEER_UPDATE_QUEUE` peers.
    v2_pending: std::collections::HashMap<PeerId, PeerUpdate>,
}

/// When gathering v2 statuses that began at `since` may end: once every
/// connected peer has reported (after [`V2_MIN_GATHER`], so peers connecting
/// together are included), else when the `window` ends; never before
/// `not_before` (a retry's back-off).
fn gather_ready_at(
    since: Instant,
    not_before: Instant,
    all_reported: bool,
    window: Duration,
) -> Instant {
    let wait = if all_reported {
        V2_MIN_GATHER.min(window)
    } else {
        window
    };
    (since + wait).max(not_before)
}

impl Reactor {
    async fn run(mut self) {
        self.refresh_greeting();
        loop {
            if let Err(e) = self.drain() {
                error!(error = %e, "header sync stopped: the store failed");
                return;
            }
            let now = Instant::now();
            let deadline = self
                .pool
                .as_ref()
                .and_then(HeaderSyncPool::next_deadline)
                .into_iter()
                .chain(self.gather_deadline())
                .fold(now + self.tick, Instant::min);
            tokio::select! {
                input = self.inputs.recv() => match input {
                    Some(input) => self.on_input(input),
                    None => return,
                },
                Some((peer, request, result)) = self.done_rx.recv() => self.on_completion(peer, request, result),
                result = parallel_done(&mut self.phase) => self.on_parallel_done(result),
                state = self.writer.changed() => if let Err(e) = self.on_stored(state) {
                    error!(error = %e, "header sync stopped: the store failed");
                    return;
                },
                () = tokio::time::sleep_until(deadline.into()) => self.on_tick(),
            }
        }
    }

    /// The lowest height we can serve signed headers from: headers stored
    /// without commits (headers-only v2) cannot be served to v1 peers.
    fn base(&self) -> u64 {
        let height = self.store.header_height();
        if height == 0 {
            return 0;
        }
        (self.store.bare_height() + 1).min(height)
    }

    fn on_input(&mut self, input: HeaderSyncInput) {
        let now = Instant::now();
        match &input {
            HeaderSyncInput::Connected { peer, .. } => {
                self.statuses.entry(*peer).or_insert(None);
            }
            HeaderSyncInput::Disconnected(peer) => {
                self.statuses.remove(peer);
            }
            HeaderSyncInput::Status(peer, status) => {
                if let Some(slot) = self.statuses.get_mut(peer) {
                    *slot = Some(*status);
                }
                if let Phase::Gathering { since, .. } = &mut self.phase
                    && since.is_none()
                {
                    *since = Some(now);
                }
            }
            HeaderSyncInput::LocalHeight(_) => {}
        }
        if self.v2_updates.is_some() {
            let update = match &input {
                HeaderSyncInput::Status(peer, status) => Some(PeerUpdate::Status(*peer, *status)),
                HeaderSyncInput::Disconnected(peer) => Some(PeerUpdate::Gone(*peer)),
                _ => None,
            };
            if let Some(update) = update {
                let peer = match update {
                    PeerUpdate::Status(p, _) | PeerUpdate::Gone(p) => p,
                };
                if self.v2_pending.len() < PEER_UPDATE_QUEUE || self.v2_pending.contains_key(&peer)
                {
                    self.v2_pending.insert(peer, update);
                } else {
                    debug!(?update, "v2 peer update dropped: too many peers pending");
                }
            }
            self.flush_v2_updates();
        }
        match input {
            HeaderSyncInput::Connected { peer, greeted } => {
                if let Some(pool) = &mut self.pool {
                    pool.add_peer(peer);
                }
                let height = self.store.header_height();
                let base = self.base();
                let status = match greeted {
                    Some(greeted) => self
                        .announcer
                        .on_connected_greeted(peer, &greeted, base, height),
                    None => self.announcer.on_connected(peer, base, height),
                };
                if let Some(status) = status {
                    self.push_status(peer, status);
                }
            }
            HeaderSyncInput::Disconnected(peer) => {
                if let Some(pool) = &mut self.pool {
                    pool.remove_peer(&peer);
                }
                self.announcer.on_disconnected(&peer);
            }
            HeaderSyncInput::Status(peer, status) => {
                if let Some(pool) = &mut self.pool {
                    pool.on_status(peer, status, now);
                }
            }
            HeaderSyncInput::LocalHeight(height) => self.announce(height),
        }
        self.maybe_start_parallel(now);
    }

    fn on_completion(
        &mut self,
        peer: PeerId,
        request: GetHeaders,
        result: Result<(Response, usize), NetError>,
    ) {
        let Some(pool) = &mut self.pool else { return };
        let now = Instant::now();
        let start = request.start_height;
        let result = result.map(|(response, bytes)| {
            if matches!(response, Response::Headers(_)) {
                self.metrics
                    .bytes_synced
                    .fetch_add(bytes as u64, Ordering::Relaxed);
            }
            response
        });
        let failure = match result {
            Ok(Response::Headers(headers)) => return pool.on_headers(peer, headers, now),
            Ok(Response::Error(e)) => {
                let retry_after = Duration::from_millis(u64::from(e.retry_after_ms));
                debug!(peer = %peer.short(), code = ?e.code, message = %e.message, "GetHeaders refused");
                match e.code {
                    ErrorCode::Busy => RequestFailure::Busy { retry_after },
                    ErrorCode::RateLimited => RequestFailure::RateLimited { retry_after },
                    ErrorCode::NotFound => RequestFailure::NotFound,
                    _ => RequestFailure::Transport,
                }
            }
            Ok(_) => RequestFailure::Invalid,
            Err(NetError::Timeout(_)) => RequestFailure::Timeout,
            Err(e) if e.is_peer_fault() => {
                warn!(peer = %peer.short(), error = %e, "peer sent an invalid GetHeaders response");
                RequestFailure::Invalid
            }
            Err(e) => {
                debug!(peer = %peer.short(), error = %e, "GetHeaders failed");
                RequestFailure::Transport
            }
        };
        pool.on_request_failed(peer, start, failure, now);
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        if let Some(pool) = &mut self.pool {
            pool.on_tick(now);
        }
        self.flush_v2_updates();
        // Peers that connected while we were at this height heard `height - 1`
        // (R1.5): tell them the real height now. Pushes to a peer only ever
        // increase, so this never looks like a repetition (R1.4).
        let height = self.store.header_height();
        for (peer, status) in self.announcer.on_height(self.base(), height) {
            self.push_status(peer, status);
        }
        self.refresh_greeting();
        self.maybe_start_parallel(now);
        let (at, count) = self.rate_mark;
        let elapsed = now.saturating_duration_since(at);
        if elapsed >= Duration::from_secs(1) {
            let synced = self.metrics.headers_synced.load(Ordering::Relaxed);
            let rate = (synced.saturating_sub(count)) as f64 / elapsed.as_secs_f64();
            self.metrics
                .sync_rate_milli
                .store((rate * 1000.0) as u64, Ordering::Relaxed);
            self.rate_mark = (now, synced);
        }
        self.report_progress(now, height);
    }

    /// The highest height peers claim: the v1 pool's target (peers in good
    /// standing), or during v2 the highest status gathered.
    fn target_height(&self) -> u64 {
        let reported = self
            .statuses
            .values()
            .flatten()
            .map(|s| s.height)
            .max()
            .unwrap_or(0);
        match (&self.phase, &self.pool) {
            (Phase::V1, Some(pool)) => pool.target_height(),
            _ => reported,
        }
    }

    /// Logs progress every `progress_every` while behind (see [`SyncProgress`]).
    /// During v2 it also keeps the target gauge, which the v1 pool sets otherwise.
    fn report_progress(&mut self, now: Instant, height: u64) {
        let target = self.target_height();
        if matches!(self.phase, Phase::Parallel(_)) {
            self.metrics.target_height.store(target, Ordering::Relaxed);
        }
        if let Some(report) = self.progress.on_tick(now, height, target) {
            let mode = if matches!(self.phase, Phase::Parallel(_)) {
                "v2"
            } else {
                "v1"
            };
            info!(
                mode,
                height = report.height,
                target = report.target,
                headers_per_s = report.headers_per_s.round() as u64,
                "header sync progress: {report}"
            );
        }
    }

    /// While gathering statuses for v2, when [`Self::maybe_start_parallel`]
    /// can next start it: the run loop wakes then rather than at its next
    /// tick (which cost every v2 sync up to a tick of idle waiting).
    fn gather_deadline(&self) -> Option<Instant> {
        let Phase::Gathering {
            since: Some(since),
            not_before,
            ..
        } = &self.phase
        else {
            return None;
        };
        Some(gather_ready_at(
            *since,
            *not_before,
            self.statuses.values().all(Option::is_some),
            self.v2_gather,
        ))
    }

    /// In v2 mode, starts bootstrap and range download once statuses are gathered.
    fn maybe_start_parallel(&mut self, now: Instant) {
        let Phase::Gathering {
            since: Some(since),
            not_before,
            ..
        } = &self.phase
        else {
            return;
        };
        let ready_at = gather_ready_at(
            *since,
            *not_before,
            self.statuses.values().all(Option::is_some),
            self.v2_gather,
        );
        if now < ready_at {
            return;
        }
        let Phase::Gathering {
            config, trusted, ..
        } = std::mem::replace(&mut self.phase, Phase::V1)
        else {
            return;
        };
        let peers: Vec<(PeerId, StatusResponse)> = self
            .statuses
            .iter()
            .filter_map(|(p, s)| s.map(|s| (*p, s)))
            .collect();
        info!(
            peers = peers.len(),
            from = trusted.height(),
            "starting parallel header sync (v2)"
        );
        let (net, store, metrics) = (self.net.clone(), self.store.clone(), self.metrics.clone());
        self.v2_retry = Some((config.clone(), trusted.clone()));
        self.metrics.syncing.store(1, Ordering::Relaxed);
        let (updates_tx, updates) = mpsc::channel(PEER_UPDATE_QUEUE);
        self.v2_updates = Some(updates_tx);
        self.phase = Phase::Parallel(tokio::spawn(async move {
            sync_parallel(&net, &store, peers, updates, trusted, config, &metrics).await
        }));
    }

    /// v2 finished (or failed): continue with the v1 pool from the tip.
    fn on_parallel_done(&mut self, result: Result<ParallelReport, ParallelError>) {
        self.phase = Phase::V1;
        self.v2_updates = None;
        self.v2_pending.clear();
        let retry = self.v2_retry.take();
        let trusted = match result {
            Ok(report) => report.trusted,
            Err(e) => {
                // Below a configured checkpoint, v1 from the stored tip could
                // follow a validly signed fork the checkpoint excludes (a
                // long-range attack): only v2, which verifies the checkpoint
                // first, may take the node past it. Try again later.
                if let Some((config, trusted)) = retry
                    && let Some(checkpoint) = config.checkpoint
                    && self.store.header_height() < checkpoint.height()
                {
                    warn!(error = %e, checkpoint = checkpoint.height(), retry_in = ?V2_RETRY, "parallel header sync failed below the checkpoint; not falling back to v1");
                    self.metrics.syncing.store(0, Ordering::Relaxed);
                    let now = Instant::now();
                    self.phase = Phase::Gathering {
                        config,
                        since: Some(now),
                        trusted,
                        not_before: now + V2_RETRY,
                    };
                    return;
                }
                warn!(error = %e, "parallel header sync stopped; continuing with v1");
                match trusted_from_store(&self.store) {
                    Ok(t) => t,
                    Err(e) => return error!(error = %e, "cannot continue header sync"),
                }
            }
        };
        let mut pool = HeaderSyncPool::new(trusted, self.pool_config.clone());
        let now = Instant::now();
        for (peer, status) in &self.statuses {
            pool.add_peer(*peer);
            if let Some(status) = status {
                pool.on_status(*peer, *status, now);
            }
        }
        self.pool = Some(pool);
        let height = self.store.header_height();
        self.announce(height);
    }

    /// Hands pending peer news to the running v2 run, as far as its queue
    /// takes them; the rest waits for the next input or tick.
    fn flush_v2_updates(&mut self) {
        let Some(updates) = &self.v2_updates else {
            self.v2_pending.clear();
            return;
        };
        let peers: Vec<PeerId> = self.v2_pending.keys().copied().collect();
        for peer in peers {
            let Some(update) = self.v2_pending.get(&peer).copied() else {
                continue;
            };
            match updates.try_send(update) {
                Ok(()) => {
                    self.v2_pending.remove(&peer);
                }
                Err(mpsc::error::TrySendError::Full(_)) => return,
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.v2_pending.clear();
                    return;
                }
            }
        }
    }

    /// The writer stored more headers (or failed).
    fn on_stored(&mut self, state: WriterState) -> Result<(), String> {
        let height = match state {
            WriterState::Stored(height) => height,
            WriterState::Failed(e) => return Err(e),
        };
        self.announce(height);
        if let Some(pool) = &self.pool
            && !pool.is_syncing()
            && height >= pool.header_height()
        {
            info!(height, "header sync caught up");
        }
        Ok(())
    }

    /// Acts on everything the pool has to say: events, then requests.
    fn drain(&mut self) -> Result<(), String> {
        let Some(pool) = &mut self.pool else {
            return Ok(());
        };
        let now = Instant::now();
        let mut verified: Vec<Hashed<SignedHeader>> = Vec::new();
        while let Some(event) = pool.poll_event() {
            match event {
                PoolEvent::Verified { headers, from } => {
                    debug!(peer = %from.short(), from = headers.first().map(|h| h.header.height), count = headers.len(), "verified headers");
                    verified.extend(headers);
                }
                PoolEvent::Ban {
                    peer,
                    reason,
                    duration,
                } => {
                    self.metrics.bans.fetch_add(1, Ordering::Relaxed);
                    self.net.ban(peer, duration, &reason);
                }
                PoolEvent::TimedOut { peer, start_height } => {
                    self.metrics.timeouts.fetch_add(1, Ordering::Relaxed);
                    warn!(peer = %peer.short(), start_height, "GetHeaders timed out; asking other peers");
                }
                PoolEvent::VerificationFailed { peer, error } => {
                    self.metrics
                        .verification_failures
                        .fetch_add(1, Ordering::Relaxed);
                    warn!(peer = %peer.short(), height = error.height(), %error, "header verification failed");
                }
            }
        }
        // Verified batches go to the writer, which stores consecutive ones
        // in one atomic, durable write while the next ones are verified.
        self.backlog.extend(verified);
        if !self.backlog.is_empty()
            && let Some(back) = self
                .writer
                .try_send(HeaderBatch::Signed(std::mem::take(&mut self.backlog)))?
        {
            // Only ever signed here: what was sent comes back.
            if let HeaderBatch::Signed(back) = back {
                self.backlog = back;
            }
        }
        let height = self.store.header_height();
        let unstored = pool.header_height().saturating_sub(height);
        while unstored < MAX_UNSTORED_HEADERS
            && let Some((peer, request)) = pool.poll_request(now)
        {
            // Started here, in the pool's order, so each peer answers the
            // batch at the head of the window first.
            let response = self.net.start_request(peer, &Request::GetHeaders(request));
            let done = self.done_tx.clone();
            tokio::spawn(async move {
                let _ = done.send((peer, request, response.await)).await;
            });
        }
        self.metrics.header_height.store(height, Ordering::Relaxed);
        self.metrics
            .target_height
            .store(pool.target_height(), Ordering::Relaxed);
        self.metrics
            .pending_requests
            .store(pool.pending_requests() as u64, Ordering::Relaxed);
        self.metrics
            .peers
            .store(pool.peer_count() as u64, Ordering::Relaxed);
        let syncing = pool.is_syncing() || unstored > 0;
        self.metrics
            .syncing
            .store(u64::from(syncing), Ordering::Relaxed);
        Ok(())
    }

    /// Publishes a new header height to subscribers and peers (R1.2, R5).
    fn announce(&mut self, height: u64) {
        self.metrics.header_height.store(height, Ordering::Relaxed);
        self.height_tx.send_if_modified(|h| {
            let advanced = height > *h;
            if advanced {
                *h = height;
            }
            advanced
        });
        for (peer, status) in self.announcer.on_height(self.base(), height) {
            self.push_status(peer, status);
        }
        self.refresh_greeting();
    }

    /// Keeps the transport's greeting (the first status of inbound peers,
    /// sent with the handshake) at what [`StatusAnnouncer::on_connected`]
    /// would push now.
    fn refresh_greeting(&mut self) {
        let status = self
            .announcer
            .greeting(self.base(), self.store.header_height());
        if self.greeting == Some(status) {
            return;
        }
        match self.net.set_greeting(Some(status)) {
            Ok(()) => self.greeting = Some(status),
            Err(e) => warn!(error = %e, "cannot greet peers with our status"),
        }
    }

    fn push_status(&self, peer: PeerId, status: StatusResponse) {
        if let Err(e) = self.net.push(peer, Push::Status(status)) {
            debug!(peer = %peer.short(), error = %e, "status push failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathering_ends_at_the_floor_once_all_reported_else_at_the_window() {
        let since = Instant::now();
        let window = Duration::from_millis(750);
        assert_eq!(
            gather_ready_at(since, since, true, window),
            since + V2_MIN_GATHER
        );
        assert_eq!(gather_ready_at(since, since, false, window), since + window);
        // A window shorter than the floor ends gathering first.
        let short = Duration::from_millis(5);
        assert_eq!(gather_ready_at(since, since, true, short), since + short);
        // A retry's back-off holds it back either way.
        let later = since + Duration::from_secs(5);
        assert_eq!(gather_ready_at(since, later, true, window), later);
        assert_eq!(gather_ready_at(since, later, false, window), later);
    }
}
