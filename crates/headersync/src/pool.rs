//! The header sync pool: a sans-IO state machine (seed 003, R1–R8).
//!
//! The pool owns no socket, clock or store. Inputs carry `now`; outputs are
//! polled. The reactor (or a test's simulator) feeds it:
//!
//! - [`HeaderSyncPool::add_peer`] / [`HeaderSyncPool::remove_peer`],
//! - [`HeaderSyncPool::on_status`] (R1.3, R1.4),
//! - [`HeaderSyncPool::on_headers`] and [`HeaderSyncPool::on_request_failed`],
//! - [`HeaderSyncPool::on_tick`] (timeouts, R7.2),
//!
//! and after each input drains [`HeaderSyncPool::poll_request`] (requests to
//! send, R2.5, R2.6) and [`HeaderSyncPool::poll_event`] (verified headers to
//! store, peers to ban).
//!
//! Verification happens in order: the pool verifies the batch that follows
//! its trusted header as soon as it has arrived (R3.5), so headers received
//! out of order wait in a bounded buffer ([`PoolConfig::max_pending_batches`]).
//!
//! Closed holes (see `NOTES.md`): a peer's claimed height only counts towards
//! the sync target while the peer is in good standing, and a claim the peer
//! fails to serve is cut back, so a peer reporting `u64::MAX` cannot stall the
//! node (hole 6); the number of requests in flight to one peer is capped and
//! `BUSY`/`RATE_LIMITED` answers pause the peer without marking it timed out
//! (hole 5); status updates at the same or a lower height ban (hole 7).

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    fmt::Debug,
    hash::Hash,
    time::{Duration, Instant},
};

use headway_chain::{Hashed, TrustedState, VerifyError, verify_batch};
use headway_wire::{
    GetHeaders, HeadersResponse, SignedHeader, StatusResponse, limits::MAX_HEADERS_PER_BATCH,
};

/// Default [`PoolConfig::max_buffered_bytes`]: 64 MiB, sixteen full
/// 50-header batches of the largest headers a `HeadersResponse` frame holds.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 64 * 1024 * 1024;

/// Pool limits and timings; every bound has a name.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Headers per request, at most 50 (R2.2).
    pub batch_size: u32,
    /// Most batches requested or buffered at once (R2.6); bounds memory
    /// with [`PoolConfig::max_buffered_bytes`].
    pub max_pending_batches: usize,
    /// Most bytes of received, not yet verified headers held (their encoded
    /// size): past it only the batch the next verification needs is
    /// requested. Partial answers split batches, so the batch count alone
    /// bounded the buffered headers only by the window's heights times a
    /// frame each.
    pub max_buffered_bytes: usize,
    /// Most requests in flight to one peer, kept below what a server's rate
    /// limit allows so honest peers are not pushed into timeouts.
    pub max_inflight_per_peer: usize,
    /// Most peers tracked.
    pub max_peers: usize,
    /// A request unanswered for this long times out (R7.2).
    pub request_timeout: Duration,
    /// How long a banned peer stays banned.
    pub ban_duration: Duration,
    /// Empty answers for heights a peer claimed before it is banned (R7.3).
    pub max_empty_answers: u32,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            batch_size: MAX_HEADERS_PER_BATCH,
            max_pending_batches: 64,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            max_inflight_per_peer: 4,
            max_peers: 128,
            request_timeout: Duration::from_secs(15),
            ban_duration: Duration::from_secs(60),
            max_empty_answers: 3,
        }
    }
}

/// Why a request failed, as the transport saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFailure {
    /// No answer in time.
    Timeout,
    /// The peer answered `BUSY`; retry after the delay.
    Busy {
        /// The peer's suggested delay.
        retry_after: Duration,
    },
    /// The peer answered `RATE_LIMITED`.
    RateLimited {
        /// The peer's suggested delay.
        retry_after: Duration,
    },
    /// The peer answered `NOT_FOUND` (it has nothing from the start height).
    NotFound,
    /// The connection or stream failed.
    Transport,
    /// The response broke the protocol (malformed, or not an answer to the request).
    Invalid,
}

/// Something the reactor must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolEvent<P> {
    /// A batch passed verification: store it (R4), then notify subscribers (R5).
    Verified {
        /// The verified headers, consecutive and in order, with the hashes
        /// verification computed (the store uses them).
        headers: Vec<Hashed<SignedHeader>>,
        /// The peer that served them.
        from: P,
    },
    /// Ban and disconnect this peer (R1.4, R3.9, R7.3).
    Ban {
        /// The peer.
        peer: P,
        /// Why, for the log and the ban list.
        reason: String,
        /// For how long.
        duration: Duration,
    },
    /// A request to this peer timed out; the peer is skipped until it answers (R7.2).
    TimedOut {
        /// The peer.
        peer: P,
        /// Start height of the request.
        start_height: u64,
    },
    /// A batch failed verification (already turned into a ban of its sender).
    VerificationFailed {
        /// The sender.
        peer: P,
        /// The error.
        error: VerifyError,
    },
}

/// Per-peer request statistics (R7.1).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerStats {
    /// Batches served and verified.
    pub batches_ok: u64,
    /// Requests that timed out.
    pub timeouts: u64,
    /// Other failed requests.
    pub failures: u64,
    /// Exponentially weighted mean response time.
    pub mean_response: Option<Duration>,
}

#[derive(Debug)]
struct PeerState {
    base: u64,
    /// Highest height the peer claims and has not been caught failing to serve.
    height: u64,
    /// Highest height it ever reported (status repetition rule, R1.4).
    last_reported: Option<u64>,
    inflight: usize,
    timed_out: bool,
    paused_until: Option<Instant>,
    empty_answers: u32,
    stats: PeerStats,
}

#[derive(Debug)]
enum BatchState<P> {
    Unassigned,
    Requested {
        peer: P,
        sent_at: Instant,
    },
    Received {
        peer: P,
        headers: Vec<SignedHeader>,
        /// Their encoded size, about.
        bytes: usize,
    },
}

#[derive(Debug)]
struct Batch<P> {
    count: u32,
    state: BatchState<P>,
}

/// Pool counters, read by the reactor's metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolCounters {
    /// Headers verified since start.
    pub headers_verified: u64,
    /// Batches that failed verification.
    pub verification_failures: u64,
    /// Requests that timed out.
    pub timeouts: u64,
    /// Peers banned.
    pub bans: u64,
}

/// The header sync pool. `P` is the peer id type.
#[derive(Debug)]
pub struct HeaderSyncPool<P> {
    config: PoolConfig,
    trusted: TrustedState,
    peers: HashMap<P, PeerState>,
    /// Batches keyed by start height, all above the trusted height.
    batches: BTreeMap<u64, Batch<P>>,
    events: VecDeque<PoolEvent<P>>,
    counters: PoolCounters,
}

impl<P: Copy + Eq + Hash + Ord + Debug> HeaderSyncPool<P> {
    /// A pool that continues from `trusted` (the last verified header and its set).
    pub fn new(trusted: TrustedState, config: PoolConfig) -> Self {
        let mut config = config;
        config.batch_size = config.batch_size.clamp(1, MAX_HEADERS_PER_BATCH);
        config.max_pending_batches = config.max_pending_batches.max(1);
        config.max_inflight_per_peer = config.max_inflight_per_peer.max(1);
        HeaderSyncPool {
            config,
            trusted,
            peers: HashMap::new(),
            batches: BTreeMap::new(),
            events: VecDeque::new(),
            counters: PoolCounters::default(),
        }
    }

    /// The last verified header height (the header height, R4.4).
    pub fn header_height(&self) -> u64 {
        self.trusted.height()
    }

    /// The trusted state: last verified header and its validator set.
    pub fn trusted(&self) -> &TrustedState {
        &self.trusted
    }

    /// The sync target: the highest height claimed by a peer in good standing
    /// (R1.3), never below our own height.
    pub fn target_height(&self) -> u64 {
        self.peers
            .values()
            .filter(|p| !p.timed_out)
            .map(|p| p.height)
            .max()
            .unwrap_or(0)
            .max(self.header_height())
    }

    /// True while peers in good standing have headers we lack.
    pub fn is_syncing(&self) -> bool {
        self.target_height() > self.header_height()
    }

    /// Requests in flight.
    pub fn pending_requests(&self) -> usize {
        self.batches
            .values()
            .filter(|b| matches!(b.state, BatchState::Requested { .. }))
            .count()
    }

    /// Batches requested or buffered.
    pub fn pending_batches(&self) -> usize {
        self.batches.len()
    }

    /// Peers tracked.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// A peer's statistics.
    pub fn peer_stats(&self, peer: &P) -> Option<&PeerStats> {
        self.peers.get(peer).map(|p| &p.stats)
    }

    /// True when the peer is marked timed out (R7.2).
    pub fn is_timed_out(&self, peer: &P) -> bool {
        self.peers.get(peer).is_some_and(|p| p.timed_out)
    }

    /// Counters since start.
    pub fn counters(&self) -> &PoolCounters {
        &self.counters
    }

    /// A new peer (no status yet). Ignored beyond [`PoolConfig::max_peers`].
    pub fn add_peer(&mut self, peer: P) -> bool {
        if self.peers.contains_key(&peer) {
            return true;
        }
        if self.peers.len() >= self.config.max_peers {
            return false;
        }
        self.peers.insert(
            peer,
            PeerState {
                base: 0,
                height: 0,
                last_reported: None,
                inflight: 0,
                timed_out: false,
                paused_until: None,
                empty_answers: 0,
                stats: PeerStats::default(),
            },
        );
        true
    }

    /// The peer left: its requests go back to be reassigned.
    pub fn remove_peer(&mut self, peer: &P) {
        if self.peers.remove(peer).is_none() {
            return;
        }
        for batch in self.batches.values_mut() {
            if matches!(batch.state, BatchState::Requested { peer: p, .. } if p == *peer) {
                batch.state = BatchState::Unassigned;
            }
        }
    }

    /// A status update from `peer` (R1.3). A height at or below one it
    /// reported before bans it (R1.4).
    pub fn on_status(&mut self, peer: P, status: StatusResponse, _now: Instant) {
        if !self.add_peer(peer) {
            return;
        }
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        if let Some(previous) = state.last_reported
            && status.height <= previous
        {
            let reason = format!(
                "status height {} is not above its previous status {}",
                status.height, previous
            );
            self.ban(peer, reason);
            return;
        }
        state.last_reported = Some(status.height);
        state.base = status.base;
        state.height = status.height;
    }

    /// The answer to a `GetHeaders` that started at `response.start_height`.
    pub fn on_headers(&mut self, peer: P, response: HeadersResponse, now: Instant) {
        let start = response.start_height;
        let Some(batch) = self.batches.get_mut(&start) else {
            return;
        };
        let (expected, displaced) = match batch.state {
            BatchState::Requested { peer: p, sent_at } if p == peer => (Some(sent_at), None),
            // A late answer after a timeout reassigned the batch: still useful.
            BatchState::Requested { peer: other, .. } => (None, Some(other)),
            BatchState::Unassigned => (None, None),
            BatchState::Received { .. } => return,
        };
        let count = batch.count;
        if let Some(other) = displaced
            && let Some(state) = self.peers.get_mut(&other)
        {
            // The other peer's answer will be ignored: free its slot now.
            state.inflight = state.inflight.saturating_sub(1);
        }
        let Some(batch) = self.batches.get_mut(&start) else {
            return;
        };
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        if let Some(sent_at) = expected {
            state.inflight = state.inflight.saturating_sub(1);
            let took = now.saturating_duration_since(sent_at);
            state.stats.mean_response = Some(match state.stats.mean_response {
                Some(mean) => (mean * 7 + took) / 8,
                None => took,
            });
        }
        // Answering at all clears the timed-out mark (R7.2).
        state.timed_out = false;
        let mut headers = response.headers;
        if expected.is_none() && headers.len() > count as usize {
            // A late answer to the request before the batch was reassigned
            // and cut to what its new peer has: it answered the longer
            // request honestly, so its start is taken, not struck.
            headers.truncate(count as usize);
        }
        if headers.is_empty() || headers.len() > count as usize {
            // Nothing from a height it claimed to have (or more than asked):
            // its claim is cut back so it cannot hold the sync target (hole 6).
            state.height = state.height.min(start.saturating_sub(1));
            state.empty_answers += 1;
            let strikes = state.empty_answers;
            batch.state = BatchState::Unassigned;
            if strikes >= self.config.max_empty_answers {
                self.ban(
                    peer,
                    format!("{strikes} empty answers for heights it claimed to have"),
                );
            }
            return;
        }
        let got = headers.len() as u32;
        let bytes = headers.iter().map(SignedHeader::encoded_len_bound).sum();
        batch.state = BatchState::Received {
            peer,
            headers,
            bytes,
        };
        if got < count {
            // A partial answer: the rest becomes its own batch.
            batch.count = got;
            self.batches.insert(
                start + u64::from(got),
                Batch {
                    count: count - got,
                    state: BatchState::Unassigned,
                },
            );
            if let Some(state) = self.peers.get_mut(&peer) {
                state.height = state.height.min(start + u64::from(got) - 1);
            }
        }
        self.process();
    }

    /// A request to `peer` starting at `start_height` failed.
    pub fn on_request_failed(
        &mut self,
        peer: P,
        start_height: u64,
        failure: RequestFailure,
        now: Instant,
    ) {
        let Some(batch) = self.batches.get_mut(&start_height) else {
            return;
        };
        if !matches!(batch.state, BatchState::Requested { peer: p, .. } if p == peer) {
            return;
        }
        batch.state = BatchState::Unassigned;
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        state.inflight = state.inflight.saturating_sub(1);
        match failure {
            RequestFailure::Timeout => {
                state.timed_out = true;
                state.stats.timeouts += 1;
                self.counters.timeouts += 1;
                self.events
                    .push_back(PoolEvent::TimedOut { peer, start_height });
            }
            RequestFailure::Busy { retry_after } | RequestFailure::RateLimited { retry_after } => {
                // Our own pace: pause, never mark timed out (hole 5).
                state.paused_until = Some(
                    now + retry_after.clamp(Duration::from_millis(10), Duration::from_secs(10)),
                );
            }
            RequestFailure::NotFound => {
                state.height = state.height.min(start_height.saturating_sub(1));
                state.stats.failures += 1;
            }
            RequestFailure::Transport => state.stats.failures += 1,
            RequestFailure::Invalid => {
                state.stats.failures += 1;
                self.ban(peer, "sent a response that breaks the protocol".into());
            }
        }
    }

    /// Checks request timeouts (R7.2); call periodically.
    pub fn on_tick(&mut self, now: Instant) {
        let timeout = self.config.request_timeout;
        let expired: Vec<(u64, P)> = self
            .batches
            .iter()
            .filter_map(|(start, b)| match b.state {
                BatchState::Requested { peer, sent_at }
                    if now.saturating_duration_since(sent_at) >= timeout =>
                {
                    Some((*start, peer))
                }
                _ => None,
            })
            .collect();
        for (start, peer) in expired {
            self.on_request_failed(peer, start, RequestFailure::Timeout, now);
        }
        for state in self.peers.values_mut() {
            if state.paused_until.is_some_and(|t| t <= now) {
                state.paused_until = None;
            }
        }
    }

    /// The next request to send, if any (R2.5: parallel, non-overlapping;
    /// R2.6: bounded). Call until it returns `None`.
    #[must_use]
    pub fn poll_request(&mut self, now: Instant) -> Option<(P, GetHeaders)> {
        self.extend_window();
        // Past the byte bound, only the batch verification waits for.
        let full = self.buffered_bytes() >= self.config.max_buffered_bytes;
        let head = self.header_height() + 1;
        let starts: Vec<(u64, u32)> = self
            .batches
            .iter()
            .filter(|(_, b)| matches!(b.state, BatchState::Unassigned))
            .map(|(s, b)| (*s, b.count))
            .collect();
        for (start, count) in starts {
            if full && start != head {
                break;
            }
            if let Some(peer) = self.best_peer_for(start, now) {
                let state = self.peers.get_mut(&peer)?;
                state.inflight += 1;
                let count = count.min(u32::try_from(state.height - start + 1).unwrap_or(u32::MAX));
                let batch = self.batches.get_mut(&start)?;
                if count < batch.count {
                    // The peer has fewer headers: split off the rest.
                    let rest = batch.count - count;
                    batch.count = count;
                    batch.state = BatchState::Requested { peer, sent_at: now };
                    self.batches.insert(
                        start + u64::from(count),
                        Batch {
                            count: rest,
                            state: BatchState::Unassigned,
                        },
                    );
                } else {
                    batch.state = BatchState::Requested { peer, sent_at: now };
                }
                return Some((
                    peer,
                    GetHeaders {
                        start_height: start,
                        count,
                    },
                ));
            }
        }
        None
    }

    /// Bytes of received headers waiting for verification (their encoded
    /// size, about), at most about [`PoolConfig::max_buffered_bytes`] plus
    /// the answers in flight.
    #[must_use]
    pub fn buffered_bytes(&self) -> usize {
        self.batches
            .values()
            .map(|b| match &b.state {
                BatchState::Received { bytes, .. } => *bytes,
                _ => 0,
            })
            .sum()
    }

    /// The next event to act on, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<PoolEvent<P>> {
        self.events.pop_front()
    }

    /// When the pool next needs [`HeaderSyncPool::on_tick`] (earliest timeout or pause end).
    pub fn next_deadline(&self) -> Option<Instant> {
        let timeouts = self.batches.values().filter_map(|b| match b.state {
            BatchState::Requested { sent_at, .. } => Some(sent_at + self.config.request_timeout),
            _ => None,
        });
        let pauses = self.peers.values().filter_map(|p| p.paused_until);
        timeouts.chain(pauses).min()
    }

    /// Opens batches up to the target, within the pending bound.
    fn extend_window(&mut self) {
        let target = self.target_height();
        let mut next = self
            .batches
            .last_key_value()
            .map_or(self.header_height() + 1, |(start, b)| {
                start + u64::from(b.count)
            });
        while next <= target && self.batches.len() < self.config.max_pending_batches {
            let count = u32::try_from((target - next + 1).min(u64::from(self.config.batch_size)))
                .unwrap_or(1);
            self.batches.insert(
                next,
                Batch {
                    count,
                    state: BatchState::Unassigned,
                },
            );
            next += u64::from(count);
        }
    }

    /// The best peer for a batch from `start`: has it, has room, not paused;
    /// peers not timed out first (R7.2), then fastest and least loaded (R7.1).
    fn best_peer_for(&self, start: u64, now: Instant) -> Option<P> {
        let eligible = |p: &PeerState| {
            p.height >= start && p.base <= start && p.paused_until.is_none_or(|t| t <= now)
        };
        let healthy = self
            .peers
            .iter()
            .filter(|(_, p)| {
                !p.timed_out && eligible(p) && p.inflight < self.config.max_inflight_per_peer
            })
            .min_by_key(|(id, p)| {
                let mean = p.stats.mean_response.unwrap_or(Duration::from_millis(50));
                (mean.saturating_mul(p.inflight as u32 + 1), **id)
            })
            .map(|(id, _)| *id);
        // Timed-out peers get one probe at a time, and only when no healthy
        // peer can serve: otherwise they could never answer "successfully".
        healthy.or_else(|| {
            self.peers
                .iter()
                .filter(|(_, p)| p.timed_out && eligible(p) && p.inflight == 0)
                .map(|(id, _)| *id)
                .min()
        })
    }

    /// Verifies every received batch that follows the trusted header, in order.
    fn process(&mut self) {
        loop {
            let next = self.header_height() + 1;
            let Some(batch) = self.batches.get(&next) else {
                return;
            };
            let BatchState::Received { peer, .. } = batch.state else {
                return;
            };
            let Some(Batch {
                state: BatchState::Received { headers, .. },
                ..
            }) = self.batches.remove(&next)
            else {
                return;
            };
            let headers = Hashed::all(headers);
            match verify_batch(&self.trusted, &headers) {
                Ok(verified) => {
                    self.trusted = verified.trusted;
                    self.counters.headers_verified += headers.len() as u64;
                    if let Some(state) = self.peers.get_mut(&peer) {
                        state.stats.batches_ok += 1;
                        state.empty_answers = 0;
                    }
                    self.events.push_back(PoolEvent::Verified {
                        headers,
                        from: peer,
                    });
                }
                Err(error) => {
                    // Error recovery: re-request the batch elsewhere; ban the sender (R3.9).
                    self.counters.verification_failures += 1;
                    let count = headers.len() as u32;
                    self.batches.insert(
                        next,
                        Batch {
                            count,
                            state: BatchState::Unassigned,
                        },
                    );
                    let reason = format!("invalid headers: {error}");
                    self.events
                        .push_back(PoolEvent::VerificationFailed { peer, error });
                    self.ban(peer, reason);
                    return;
                }
            }
        }
    }

    fn ban(&mut self, peer: P, reason: String) {
        self.counters.bans += 1;
        self.remove_peer(&peer);
        // Data it served and we have not verified yet is dropped too.
        for batch in self.batches.values_mut() {
            if matches!(batch.state, BatchState::Received { peer: p, .. } if p == peer) {
                batch.state = BatchState::Unassigned;
            }
        }
        self.events.push_back(PoolEvent::Ban {
            peer,
            reason,
            duration: self.config.ban_duration,
        });
    }
}
