//! The async driver of parallel header sync (v2): checkpoint bootstrap, then
//! ranges from every agreeing peer, stored in order.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use headway_chain::{HeaderExt, TrustedState};
use headway_net::{NetError, Network, PeerId};
use headway_store::Store;
use headway_wire::{
    ErrorCode, Features, GetHeaders, GetHeadersV2, GetSkipChain, GetValidatorSet, Request,
    Response, SignedHeader, StatusResponse,
};
use tokio::sync::mpsc;
use tracing::{debug, info, trace, warn};

use crate::{
    HeaderSyncMetrics,
    bootstrap::{self, Checkpoint, NetHeaderSource},
    v2::{RangeEvent, RangeFailure, RangeSync, RangeSyncConfig},
    writer::{HeaderWriter, WriterState},
};

/// A change in the peer set while a v2 run is under way: peers that report
/// after the run started still get ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerUpdate {
    /// A peer reported this status.
    Status(PeerId, StatusResponse),
    /// A peer disconnected.
    Gone(PeerId),
}

/// Peer updates queued for a running v2 run at most (the reactor drops
/// updates beyond it; a peer's next status repeats its news).
pub const PEER_UPDATE_QUEUE: usize = 256;

/// Settings of a v2 run.
#[derive(Debug, Clone, Default)]
pub struct ParallelConfig {
    /// The range planner's limits.
    pub ranges: RangeSyncConfig,
    /// Trust this checkpoint instead of the stored tip.
    pub checkpoint: Option<Checkpoint>,
    /// Timeout of each bootstrap request.
    pub bootstrap_timeout: Option<Duration>,
}

/// What a v2 run did.
#[derive(Debug, Clone)]
pub struct ParallelReport {
    /// The verified tip, now stored: continue (v1) from here.
    pub trusted: TrustedState,
    /// Heights bisection verified (one per round), ending with the tip.
    pub bootstrap_heights: Vec<u64>,
    /// Headers downloaded and stored by ranges.
    pub headers: u64,
    /// Time spent bootstrapping.
    pub bootstrap_time: Duration,
    /// Time spent downloading ranges.
    pub download_time: Duration,
}

/// Why a v2 run stopped early (the caller falls back to v1).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParallelError {
    /// Bootstrap failed.
    #[error(transparent)]
    Bootstrap(#[from] bootstrap::BootstrapError),
    /// No peer could serve v2 ranges for the verified commitment.
    #[error("no peer serves v2 ranges for the verified commitment (left at height {height})")]
    NoPeers {
        /// The stored header height.
        height: u64,
    },
    /// The stored headers are not the verified chain's.
    #[error("stored headers conflict with the verified history at height {height}")]
    PrefixConflict {
        /// The height.
        height: u64,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] headway_store::StoreError),
    /// A blocking task failed.
    #[error("task failed: {0}")]
    Task(String),
}

/// Bootstrap attempts at most: the first to the highest status, each later
/// one without the peers whose status set the failed target.
pub const MAX_BOOTSTRAP_ATTEMPTS: usize = 4;

/// One bootstrap attempt: resolves the checkpoint (or starts from
/// `trusted`), then verifies the header at `target` by a skip chain or by
/// bisection. The verified tip, its signed header (`None` when `target` is
/// not above the trusted height and there is no checkpoint header to
/// store) and the heights verified on the way.
fn bootstrap_once(
    mut source: NetHeaderSource,
    checkpoint: Option<bootstrap::Checkpoint>,
    trusted: &TrustedState,
    target: u64,
) -> Result<(TrustedState, Option<SignedHeader>, Vec<u64>), bootstrap::BootstrapError> {
    if let Some(c) = checkpoint
        && target > c.height()
    {
        // The checkpoint's header and set and the skip chain from it in
        // one round trip rather than three; verified as before.
        let h = c.height();
        source.prefetch(&[
            Request::GetHeaders(GetHeaders {
                start_height: h,
                count: 1,
            }),
            Request::GetValidatorSet(GetValidatorSet { height: h }),
            Request::GetSkipChain(GetSkipChain {
                trusted_height: h,
                target_height: target,
            }),
        ]);
    }
    let trust = match checkpoint {
        Some(c) => bootstrap::resolve_checkpoint(&mut source, c)?,
        None => trusted.clone(),
    };
    if target <= trust.height() {
        // Nothing above the trusted height to verify. With a checkpoint the
        // headers below it still have to come (proven into its history
        // root), and the checkpoint header itself stored after them.
        let checkpoint_header = checkpoint.and_then(|c| source.take_fetched(c.height()));
        return Ok((trust, checkpoint_header, Vec::new()));
    }
    // One round trip when a peer offers the hops; bisection otherwise.
    match bootstrap::skip_chain(&mut source, &trust, target) {
        Ok(v) => return Ok((v.trusted, Some(v.signed), v.heights)),
        Err(e) => debug!(error = %e, "skip-chain bootstrap failed; bisecting"),
    }
    let (verified, signed) = bootstrap::bisect(&mut source, &trust, target)?;
    Ok((
        verified.trusted.clone(),
        Some(signed),
        verified.verified_heights,
    ))
}

/// Bootstraps from `trusted` (or the configured checkpoint) to the highest
/// header of `peers`, downloads every missing header below it in parallel
/// ranges, stores them in order, then stores the tip.
///
/// `peers` are the peers known at the start with their heights; `updates`
/// brings the ones that report (or leave) later.
pub async fn sync_parallel(
    net: &Network,
    store: &Store,
    peers: Vec<(PeerId, StatusResponse)>,
    mut updates: mpsc::Receiver<PeerUpdate>,
    trusted: TrustedState,
    config: ParallelConfig,
    metrics: &Arc<HeaderSyncMetrics>,
) -> Result<ParallelReport, ParallelError> {
    let started = Instant::now();
    let mut by_height: Vec<(PeerId, u64)> = peers.iter().map(|(p, s)| (*p, s.height)).collect();
    by_height.sort_by_key(|(p, h)| (std::cmp::Reverse(*h), *p));
    let timeout = config
        .bootstrap_timeout
        .unwrap_or(config.ranges.request_timeout);
    let source_net = net.clone();
    let handle = tokio::runtime::Handle::current();
    let checkpoint = config.checkpoint;
    // Bisection is synchronous (chain crate): run it on a blocking thread that
    // drives requests on this runtime.
    let (tip, tip_signed, heights) = tokio::task::spawn_blocking(move || {
        // The target is the highest status, which one peer alone can set: a
        // height nobody can prove (a lie, or a peer on another chain) made
        // every attempt fail, for ever. After a failed attempt the peers that
        // set the target are left out, and the next attempt asks the others
        // first, up to MAX_BOOTSTRAP_ATTEMPTS.
        let mut left_out = 0;
        let mut attempt = 0;
        loop {
            let candidates = &by_height[left_out..];
            let target = candidates.first().map_or(0, |(_, h)| *h);
            let mut peer_ids: Vec<PeerId> = candidates.iter().map(|(p, _)| *p).collect();
            // Who is asked first turns with each attempt (a bad answer from
            // the first peer asked ended the attempt).
            let turn = attempt % peer_ids.len().max(1);
            peer_ids.rotate_left(turn);
            let source = NetHeaderSource::new(source_net.clone(), peer_ids, handle.clone(), timeout);
            match bootstrap_once(source, checkpoint, &trusted, target) {
                Ok(done) => return Ok(done),
                Err(e) if attempt + 1 < MAX_BOOTSTRAP_ATTEMPTS => {
                    let at_target = candidates.iter().take_while(|(_, h)| *h == target).count();
                    warn!(error = %e, target, attempt, "bootstrap failed; trying again without the peers that set the target");
                    // Keep at least one peer to ask.
                    if at_target < candidates.len() {
                        left_out += at_target;
                    }
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .map_err(|e| ParallelError::Task(e.to_string()))??;
    let bootstrap_time = started.elapsed();
    metrics
        .bootstrap_rounds
        .store(heights.len() as u64, Ordering::Relaxed);
    info!(tip = tip.height(), rounds = heights.len(), intermediate = ?&heights[..heights.len().saturating_sub(1)], ?bootstrap_time, "bootstrap verified the tip");

    let Some(tip_signed) = tip_signed else {
        return Ok(ParallelReport {
            trusted: tip,
            bootstrap_heights: heights,
            headers: 0,
            bootstrap_time,
            download_time: Duration::ZERO,
        });
    };
    let download_started = Instant::now();
    let x = tip.height() - 1;
    let stored = store.header_height();
    if stored >= tip.height() {
        // Already stored (a restart after an earlier run): nothing to do.
        return Ok(ParallelReport {
            trusted: tip,
            bootstrap_heights: heights,
            headers: 0,
            bootstrap_time,
            download_time: Duration::ZERO,
        });
    }
    let mut headers = 0u64;
    if stored < x {
        let prev = store
            .load_header(stored)?
            .ok_or(ParallelError::PrefixConflict { height: stored })?;
        let mut planner = RangeSync::new(
            tip.chain_id().to_string(),
            tip.header().history_root,
            x,
            stored + 1,
            prev.hash(),
            config.ranges.clone(),
        );
        match store.validator_set_at(stored)? {
            Some(set) => planner.set_prev_validator_set(set),
            None => planner.set_prev_validators_hash(prev.validators_hash),
        }
        for (peer, status) in &peers {
            add_peer(&mut planner, *peer, status, x);
        }
        headers = download(net, store, &mut planner, &mut updates, x, metrics).await?;
    }
    // The tip itself, verified by bisection, completes the chain.
    // A skip-chain hop carries its set even where it did not change; the
    // store wants it only where it changed.
    let mut tip_signed = tip_signed;
    if let Some(below) = store.load_header(tip.height() - 1)?
        && below.validators_hash == tip_signed.header.validators_hash
    {
        tip_signed.validator_set = None;
    }
    let tip_store = store.clone();
    tokio::task::spawn_blocking(move || tip_store.save_headers(&[tip_signed]))
        .await
        .map_err(|e| ParallelError::Task(e.to_string()))??;
    metrics
        .header_height
        .store(store.header_height(), Ordering::Relaxed);
    let download_time = download_started.elapsed();
    info!(
        headers,
        ?download_time,
        rate = headers as f64 / download_time.as_secs_f64().max(1e-9),
        "parallel header sync done"
    );
    Ok(ParallelReport {
        trusted: tip,
        bootstrap_heights: heights,
        headers,
        bootstrap_time,
        download_time,
    })
}

/// Offers `peer` ranges if it has `C(x)`; a peer announcing
/// [`Features::HEADERS_V2`] is pipelined to from its first range.
fn add_peer(planner: &mut RangeSync<PeerId>, peer: PeerId, status: &StatusResponse, x: u64) {
    if status.height < x {
        return;
    }
    if status.features.contains(Features::HEADERS_V2) {
        planner.add_announced_peer(peer);
    } else {
        planner.add_peer(peer);
    }
}

/// A request's peer, the request, and the response with its size in bytes.
type Completion = (PeerId, GetHeadersV2, Result<(Response, usize), NetError>);

async fn download(
    net: &Network,
    store: &Store,
    planner: &mut RangeSync<PeerId>,
    updates: &mut mpsc::Receiver<PeerUpdate>,
    x: u64,
    metrics: &Arc<HeaderSyncMetrics>,
) -> Result<u64, ParallelError> {
    let (done_tx, mut done_rx) = mpsc::channel::<Completion>(256);
    // Storing runs on its own blocking thread so downloads continue meanwhile;
    // its queue is bounded, which bounds memory together with the planner's cap.
    let start_height = store.header_height();
    let writer = HeaderWriter::spawn(store.clone(), metrics.clone());
    let mut inflight = 0usize;
    let mut failure = None;
    loop {
        let now = Instant::now();
        while let Some(buffer) = writer.take_spare() {
            planner.recycle(buffer);
        }
        while let Some(event) = planner.poll_event() {
            match event {
                RangeEvent::Ready(headers) => {
                    if let Err(e) = writer.send(headers).await {
                        failure = Some(ParallelError::Task(e));
                    }
                }
                RangeEvent::Ban { peer, reason } => {
                    metrics.bans.fetch_add(1, Ordering::Relaxed);
                    metrics
                        .verification_failures
                        .fetch_add(1, Ordering::Relaxed);
                    warn!(peer = %peer.short(), reason, "v2 range failed verification");
                    net.ban(peer, Duration::from_secs(60), &reason);
                }
                RangeEvent::Unusable { peer, reason } => {
                    debug!(peer = %peer.short(), reason, "peer left to v1")
                }
                RangeEvent::PrefixConflict { height } => {
                    failure = Some(ParallelError::PrefixConflict { height })
                }
            }
        }
        if failure.is_some() || planner.is_done() {
            break;
        }
        while let Some((peer, request)) = planner.poll_request(now) {
            inflight += 1;
            // Started here, in the planner's order (lowest range first), so
            // each peer answers the ranges the writer needs first first.
            let response = net.start_request(peer, &Request::GetHeadersV2(request));
            let done = done_tx.clone();
            tokio::spawn(async move {
                let _ = done.send((peer, request, response.await)).await;
            });
        }
        metrics
            .pending_requests
            .store(inflight as u64, Ordering::Relaxed);
        if inflight == 0 && planner.peer_count() == 0 {
            failure = Some(ParallelError::NoPeers {
                height: store.header_height(),
            });
            break;
        }
        let deadline = planner
            .next_deadline()
            .map_or(now + Duration::from_millis(250), |d| {
                d.min(now + Duration::from_millis(250))
            });
        tokio::select! {
            Some((peer, request, result)) = done_rx.recv() => {
                inflight = inflight.saturating_sub(1);
                let now = Instant::now();
                let result = result.map(|(response, bytes)| {
                    trace!(peer = %peer.short(), start = request.start_height, bytes, "range answered");
                    if matches!(response, Response::HeadersV2(_)) {
                        metrics.bytes_synced.fetch_add(bytes as u64, Ordering::Relaxed);
                    }
                    response
                });
                match result {
                    Ok(Response::HeadersV2(r)) => planner.on_response(peer, r, now),
                    Ok(Response::Error(e)) => {
                        let kind = match e.code {
                            ErrorCode::Busy | ErrorCode::RateLimited => RangeFailure::Busy,
                            ErrorCode::NotFound => RangeFailure::NotFound,
                            ErrorCode::Unsupported => RangeFailure::Unsupported,
                            _ => RangeFailure::Transport,
                        };
                        planner.on_failure(peer, request.start_height, kind, now);
                    }
                    Ok(_) => planner.on_failure(peer, request.start_height, RangeFailure::Invalid, now),
                    Err(NetError::Timeout(_)) => planner.on_failure(peer, request.start_height, RangeFailure::Timeout, now),
                    // Gone: its ranges go back to the others (its disconnect
                    // news may not have arrived yet).
                    Err(NetError::NotConnected(_)) => planner.remove_peer(&peer),
                    Err(e) if e.is_peer_fault() => planner.on_failure(peer, request.start_height, RangeFailure::Invalid, now),
                    Err(_) => planner.on_failure(peer, request.start_height, RangeFailure::Transport, now),
                }
            }
            Some(update) = updates.recv() => match update {
                PeerUpdate::Status(peer, status) => add_peer(planner, peer, &status, x),
                PeerUpdate::Gone(peer) => planner.remove_peer(&peer),
            },
            () = tokio::time::sleep_until(deadline.into()) => planner.on_tick(Instant::now()),
        }
    }
    let stored = match writer.finish().await {
        WriterState::Stored(height) => height.saturating_sub(start_height),
        WriterState::Failed(e) => return Err(ParallelError::Task(e)),
    };
    match failure {
        Some(e) => Err(e),
        None => Ok(stored),
    }
}
