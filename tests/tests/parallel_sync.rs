//! Parallel header sync (v2, `docs/protocol.md` §7) conformance, black-box
//! over QUIC.
//!
//! Each test starts a node under test with `[sync] header_sync = "v2"` (and,
//! for two tests, a `[sync.checkpoint]`) whose genesis is block 1 of the
//! shared test chain (rotations every 25 blocks, the whole validator set
//! replaced at 230), and connects scripted peers that serve v1 `GetHeaders`,
//! `GetValidatorSet` and `GetHeadersV2` ranges proven into the MMR history
//! ([`headway_conformance::v2::ChainServer`]), honestly or not. The honest
//! v2 servers return at most 50 headers per answer (a small byte budget, as
//! the protocol allows), so the 398 headers below the tip come as several
//! ranges.
//!
//! Every test checks what the node did: whom it banned, that it stored
//! nothing invalid (its headers are fetched back with `GetHeaders` and
//! compared with the honest chain: headers, commits, attached validator
//! sets), and that it still finished from the honest peers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is the assertion"
)]

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use headway_chain::{HeaderExt as _, ValidatorSetExt as _};
use headway_conformance::{
    DEADLINE,
    chain::{CHAIN_LEN, FULL_REPLACEMENT_HEIGHT, TIP, TestChain, test_chain},
    node::{NodeOptions, TestNode},
    peer::{
        Reply, RequestScript, Script, ScriptedPeer, check_honest_prefix, connect_all_and_claim,
        serving, slice, unsupported,
    },
    v2::{ChainServer, DEFAULT_V2_MAX_HEADERS, v2_scripted, v2_serving, v2_unsupported},
    wait,
};
use headway_headersync::bootstrap::Checkpoint;
use headway_wire::{
    ErrorCode, ErrorResponse, Features, GetHeaders, GetHeadersV2, Hash, HeadersV2Result, Response,
    limits::MAX_HEADERS_V2,
};

/// The trusted height of the checkpoint tests: mid-chain, below the full
/// replacement of the validator set (so bisection from it must still cross it).
const CHECKPOINT: u64 = 200;
/// Delay of the honest v2 servers' answers: long enough that a peer not yet
/// measured looks faster to a planner than one that answered (so ranges
/// spread), short enough to keep tests quick.
const HONEST_DELAY: Duration = Duration::from_millis(40);

fn chain() -> &'static TestChain {
    test_chain()
}

fn server() -> Arc<ChainServer> {
    ChainServer::honest()
}

/// `X`: the tip's height minus one, the end of every range.
fn x() -> u64 {
    TIP - 1
}

/// `C(X)`: the history root of the tip the peers claim.
fn commitment() -> Hash {
    chain().signed_header(TIP).header.history_root
}

async fn v2_node(checkpoint: Option<Checkpoint>) -> TestNode {
    TestNode::start(NodeOptions {
        header_sync_v2: true,
        checkpoint,
        // The observer reads 400 headers back; the node's serving rate is not under test here.
        get_headers_per_second: Some(1000),
        ..NodeOptions::default()
    })
    .await
}

/// A node syncing headers-only v2 ranges from [`CHECKPOINT`].
async fn headers_only_node() -> TestNode {
    TestNode::start(NodeOptions {
        header_sync_v2: true,
        headers_only: true,
        checkpoint: Some(Checkpoint::HeaderHash {
            height: CHECKPOINT,
            hash: chain().signed_header(CHECKPOINT).header.hash(),
        }),
        get_headers_per_second: Some(1000),
        ..NodeOptions::default()
    })
    .await
}

/// A peer serving v1 `GetHeaders` honestly and the other requests with `others`.
async fn peer_with(others: RequestScript) -> ScriptedPeer {
    ScriptedPeer::start_with(serving(chain().headers()), others, TIP).await
}

/// An honest v2 peer (answers after [`HONEST_DELAY`], at most 50 headers each).
async fn honest_v2_peer() -> ScriptedPeer {
    peer_with(v2_serving(server(), DEFAULT_V2_MAX_HEADERS, HONEST_DELAY)).await
}

/// Fetches everything the node serves, checks it is exactly the honest
/// chain `1..=height` (nothing invalid, nothing missing, nothing above).
async fn assert_stores_exactly_honest_chain(node: &TestNode, height: u64) {
    let o = ScriptedPeer::observer().await;
    o.connect(node).await;
    let stored = o.fetch_headers(1, CHAIN_LEN).await;
    if let Err(e) = check_honest_prefix(&stored, &chain().headers(), 1) {
        node.fail(&format!("the node stored invalid data: {e}"));
    }
    if stored.len() as u64 != height {
        node.fail(&format!(
            "the node serves {} headers, expected exactly {height}",
            stored.len()
        ));
    }
}

/// Every `GetHeadersV2` is a well-formed range into the verified tip's commitment.
fn assert_ranges_well_formed(peer: &ScriptedPeer) {
    for q in peer.record().v2_requests() {
        assert!(
            q.count >= 1 && q.count <= MAX_HEADERS_V2,
            "count {} out of 1..={MAX_HEADERS_V2}: {q:?}",
            q.count
        );
        assert!(q.start_height >= 2, "range below the genesis: {q:?}");
        assert_eq!(q.end_height, x(), "ranges end at tip - 1: {q:?}");
        assert!(
            q.start_height + u64::from(q.count) - 1 <= q.end_height,
            "range past end_height: {q:?}"
        );
        assert_eq!(
            q.commitment,
            commitment(),
            "the commitment is the verified tip's history_root"
        );
    }
}

/// Heights covered by the `GetHeadersV2` ranges `peers` were asked for.
fn heights_requested(peers: &[&ScriptedPeer]) -> BTreeSet<u64> {
    peers
        .iter()
        .flat_map(|p| p.record().v2_requests())
        .flat_map(|q| q.start_height..q.start_height + u64::from(q.count))
        .collect()
}

/// Heights of the single-header `GetHeaders` (bootstrap) the peers got.
fn single_header_requests(peers: &[&ScriptedPeer]) -> Vec<u64> {
    peers
        .iter()
        .flat_map(|p| p.record().requests)
        .filter(|r| r.request.count == 1)
        .map(|r| r.request.start_height)
        .collect()
}

fn assert_not_banned(peers: &[&ScriptedPeer]) {
    for p in peers {
        assert!(
            p.record().ban().is_none(),
            "an honest peer was banned: {}",
            p.summary()
        );
    }
}

// ------------------------------------------------------------------ sync

/// Four honest v2 peers: the node bootstraps to the tip (bisection across
/// the rotations and the full replacement), downloads every missing height
/// as `GetHeadersV2` ranges spread over the peers, and stores exactly the
/// honest chain, with no v1 batch needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_syncs_from_many_peers_by_ranges() {
    let node = v2_node(None).await;
    let peers = [
        honest_v2_peer().await,
        honest_v2_peer().await,
        honest_v2_peer().await,
        honest_v2_peer().await,
    ];
    let refs: Vec<&ScriptedPeer> = peers.iter().collect();
    connect_all_and_claim(&refs, &node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;

    let with_ranges: Vec<(String, Vec<(u64, u32)>)> = peers
        .iter()
        .map(|p| {
            let ranges = p.record().v2_requests();
            (
                p.id().short(),
                ranges
                    .iter()
                    .map(|q| (q.start_height, q.count))
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, r)| !r.is_empty())
        .collect();
    assert!(
        with_ranges.len() >= 3,
        "ranges should be spread over several peers; ranges per peer: {with_ranges:?}"
    );
    for p in &peers {
        assert_ranges_well_formed(p);
    }
    let requested = heights_requested(&refs);
    let missing: Vec<u64> = (2..=x()).filter(|h| !requested.contains(h)).collect();
    assert!(
        missing.is_empty(),
        "heights never asked for by range: {missing:?}"
    );
    // Everything below the tip came by ranges: GetHeaders were only the
    // bootstrap's single headers.
    for p in &peers {
        let batches: Vec<(u64, u32)> = p
            .record()
            .requests
            .iter()
            .filter(|r| r.request.count > 1)
            .map(|r| (r.request.start_height, r.request.count))
            .collect();
        assert!(batches.is_empty(), "v1 batches during v2 sync: {batches:?}");
    }
    // Bisection from the genesis: no set overlap across the full replacement,
    // so the node verified intermediate headers before the tip.
    let singles = single_header_requests(&refs);
    assert!(
        singles.contains(&TIP),
        "bootstrap fetched the tip: {singles:?}"
    );
    assert!(
        singles.iter().any(|h| *h > 1 && *h < TIP),
        "bootstrap verified intermediate heights: {singles:?}"
    );
    let m = node.metrics().await;
    assert!(
        m.value("headway_headersync_bootstrap_rounds") >= 2.0,
        "bootstrap rounds across the replacement at {FULL_REPLACEMENT_HEIGHT}: {m:?}"
    );
    assert_eq!(m.value("headway_headersync_bans_total"), 0.0, "{m:?}");
    node.wait_metric("headway_headersync_syncing", |v| v == 0.0, DEADLINE)
        .await;
    assert_stores_exactly_honest_chain(&node, TIP).await;
    assert_not_banned(&refs);
}

// ------------------------------------------------------------ checkpoints

/// `[sync.checkpoint]` with the header hash at [`CHECKPOINT`]: the node
/// trusts that header, verifies from there (no bootstrap request below it),
/// proves everything below it by hashes, and stores the honest chain. A hash
/// that is not the peers' header at that height makes the v2 phase fail
/// safely: see [`checkpoint_mismatch_is_safe`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_bootstrap_from_a_checkpoint_header_hash() {
    let hash = chain().signed_header(CHECKPOINT).header.hash();
    syncs_from_checkpoint(Checkpoint::HeaderHash {
        height: CHECKPOINT,
        hash,
    })
    .await;
    // The hash of another header of the chain: well-formed, not the one at CHECKPOINT.
    let wrong = chain().signed_header(CHECKPOINT - 1).header.hash();
    checkpoint_mismatch_is_safe(Checkpoint::HeaderHash {
        height: CHECKPOINT,
        hash: wrong,
    })
    .await;
}

/// `[sync.checkpoint]` with the validator set hash at [`CHECKPOINT`]: as
/// with a header hash, plus the checkpoint header's commit must verify
/// against that set. A set hash that is not the one at that height
/// (the set after the full replacement) fails safely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_bootstrap_from_a_checkpoint_validator_set() {
    let validators_hash = chain().validator_set(CHECKPOINT).hash();
    syncs_from_checkpoint(Checkpoint::ValidatorSet {
        height: CHECKPOINT,
        validators_hash,
    })
    .await;
    let wrong = chain().validator_set(FULL_REPLACEMENT_HEIGHT).hash();
    assert_ne!(wrong, validators_hash);
    checkpoint_mismatch_is_safe(Checkpoint::ValidatorSet {
        height: CHECKPOINT,
        validators_hash: wrong,
    })
    .await;
}

/// A checkpoint at the peers' highest header: nothing above it to verify,
/// but every header below it must still arrive (proven into the checkpoint's
/// history root) before the checkpoint itself is stored; then the node
/// serves the whole chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_checkpoint_at_the_tip_still_downloads_everything_below() {
    let hash = chain().signed_header(TIP).header.hash();
    let node = v2_node(Some(Checkpoint::HeaderHash { height: TIP, hash })).await;
    let peers = [honest_v2_peer().await, honest_v2_peer().await];
    let refs: Vec<&ScriptedPeer> = peers.iter().collect();
    connect_all_and_claim(&refs, &node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;
    assert_stores_exactly_honest_chain(&node, TIP).await;
    assert_not_banned(&refs);
}

/// One peer claiming a height nobody can prove (a lie, or another chain)
/// set the bootstrap's target, every attempt failed there, and the node
/// stayed at its genesis for as long as that peer stayed connected. Now an
/// attempt that fails leaves out the peers that set its target: the node
/// bootstraps to the honest tip and syncs the honest chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_claiming_a_height_nobody_proves_does_not_hold_the_bootstrap() {
    let node = v2_node(Some(Checkpoint::HeaderHash {
        height: CHECKPOINT,
        hash: chain().signed_header(CHECKPOINT).header.hash(),
    }))
    .await;
    let liar = honest_v2_peer().await;
    let honest = [
        honest_v2_peer().await,
        honest_v2_peer().await,
        honest_v2_peer().await,
    ];
    let refs: Vec<&ScriptedPeer> = honest.iter().collect();
    liar.connect_and_claim(&node, TIP + 1_000_000).await;
    connect_all_and_claim(&refs, &node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;
    assert_stores_exactly_honest_chain(&node, TIP).await;
    assert_not_banned(&refs);
}

/// A peer that answers everything `BUSY`, retry in 5 s: each bootstrap
/// request it was asked first waited for it 20 times, 100 s. The wait is
/// bounded in all (`MAX_BUSY_WAIT`), then the next peer is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_busy_for_ever_does_not_stall_the_bootstrap() {
    let node = v2_node(Some(Checkpoint::HeaderHash {
        height: CHECKPOINT,
        hash: chain().signed_header(CHECKPOINT).header.hash(),
    }))
    .await;
    let busy = || {
        Reply::Response(Box::new(Response::Error(ErrorResponse {
            code: ErrorCode::Busy,
            message: "never now".into(),
            retry_after_ms: 5_000,
        })))
    };
    let stalling = ScriptedPeer::start_with(
        Arc::new(move |_: &GetHeaders, _: u64| busy()),
        Arc::new(move |_: &headway_wire::Request, _: u64| busy()),
        TIP,
    )
    .await;
    let honest = [honest_v2_peer().await, honest_v2_peer().await];
    let mut refs: Vec<&ScriptedPeer> = honest.iter().collect();
    refs.push(&stalling);
    connect_all_and_claim(&refs, &node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;
    assert_stores_exactly_honest_chain(&node, TIP).await;
    assert_not_banned(&refs[..2]);
}

async fn syncs_from_checkpoint(checkpoint: Checkpoint) {
    let node = v2_node(Some(checkpoint)).await;
    let peers = [
        honest_v2_peer().await,
        honest_v2_peer().await,
        honest_v2_peer().await,
    ];
    let refs: Vec<&ScriptedPeer> = peers.iter().collect();
    connect_all_and_claim(&refs, &node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;

    let singles = single_header_requests(&refs);
    let sets: Vec<u64> = peers
        .iter()
        .flat_map(|p| p.record().validator_set_requests())
        .collect();
    assert!(
        singles.iter().chain(&sets).all(|h| *h >= CHECKPOINT),
        "bootstrap asked below the checkpoint {CHECKPOINT}: single headers {singles:?}, validator sets {sets:?}"
    );
    assert!(
        singles.contains(&TIP),
        "bootstrap fetched the tip: {singles:?}"
    );
    // Below the checkpoint, headers are proven into the tip's history by hashes.
    let requested = heights_requested(&refs);
    assert!(
        (2..CHECKPOINT).all(|h| requested.contains(&h)),
        "heights below the checkpoint come by ranges"
    );
    for p in &peers {
        assert_ranges_well_formed(p);
    }
    let m = node.metrics().await;
    assert!(
        m.value("headway_headersync_bootstrap_rounds") >= 1.0,
        "{m:?}"
    );
    assert_eq!(m.value("headway_headersync_bans_total"), 0.0, "{m:?}");
    assert_stores_exactly_honest_chain(&node, TIP).await;
    assert_not_banned(&refs);
}

/// A checkpoint the peers' chain does not match. The peers hold back v1
/// batches (`BUSY`) until the test has looked: so what the node stored by
/// then is what its v2 phase stored.
///
/// Asserted (safety): the v2 phase ends without a single `GetHeadersV2`,
/// without storing anything beyond the genesis, and without banning the
/// honest peers (the checkpoint is the operator's mistake, not theirs).
///
/// Also asserted: the node does not fall back to v1 below its checkpoint
/// (v1 from the genesis could follow a chain the checkpoint excludes); it
/// retries v2 later instead.
async fn checkpoint_mismatch_is_safe(checkpoint: Checkpoint) {
    let node = v2_node(Some(checkpoint)).await;
    let gate = Arc::new(AtomicBool::new(false));
    let gated = |gate: Arc<AtomicBool>| -> Script {
        let headers = chain().headers();
        Arc::new(move |q: &GetHeaders, up_to: u64| {
            if q.count > 1 && !gate.load(Ordering::SeqCst) {
                Reply::Response(Box::new(Response::Error(ErrorResponse {
                    code: ErrorCode::Busy,
                    message: "held back by the test".into(),
                    retry_after_ms: 100,
                })))
            } else {
                Reply::Headers(slice(&headers, q, up_to))
            }
        })
    };
    let mut peers = Vec::new();
    for _ in 0..2 {
        peers.push(
            ScriptedPeer::start_with(
                gated(gate.clone()),
                v2_serving(server(), DEFAULT_V2_MAX_HEADERS, HONEST_DELAY),
                TIP,
            )
            .await,
        );
    }
    let refs: Vec<&ScriptedPeer> = peers.iter().collect();
    connect_all_and_claim(&refs, &node, TIP).await;

    // The v2 phase ends at the checkpoint check, within a round trip or two
    // of the first status; give it time to have done anything it would do.
    node.wait_metric("headway_header_height", |v| v >= 1.0, DEADLINE)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let batches: Vec<_> = peers
        .iter()
        .flat_map(|p| p.record().requests)
        .filter(|q| q.request.count > 1)
        .collect();
    assert!(
        batches.is_empty(),
        "v1 batches below the checkpoint: {} requests",
        batches.len()
    );
    let v2_ranges: Vec<GetHeadersV2> = peers
        .iter()
        .flat_map(|p| p.record().v2_requests())
        .collect();
    assert!(
        v2_ranges.is_empty(),
        "ranges requested although the checkpoint did not match: {v2_ranges:?}"
    );
    let height = node.header_height().await;
    assert_eq!(
        height, 1,
        "the failed v2 phase must not store anything beyond the genesis"
    );
    assert_stores_exactly_honest_chain(&node, 1).await;
    assert_not_banned(&refs);
    let m = node.metrics().await;
    assert_eq!(m.value("headway_headersync_bans_total"), 0.0, "{m:?}");

    // Let v1 batches through: the node still does not sync past its
    // checkpoint from a chain that contradicts it.
    gate.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        node.header_height().await,
        1,
        "nothing stored against the checkpoint"
    );
    let o = ScriptedPeer::observer().await;
    o.connect(&node).await;
    let stored = o.fetch_headers(1, CHAIN_LEN).await;
    if let Err(e) = check_honest_prefix(&stored, &chain().headers(), 1) {
        node.fail(&format!("the node stored invalid data: {e}"));
    }
    assert_not_banned(&refs);
}

// --------------------------------------------------------------- bad peers

/// Four v2 peers each corrupting their ranges in one way, among two honest
/// ones: (a) a wrong MMR proof, (b) a forged header inside the range (validly
/// re-signed) with the real last header and proof, (c) another commitment
/// instead of headers, (d) a commit not bound to its header. Each is banned
/// on its first range; the node stores exactly the honest chain, from the
/// honest peers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_bad_proof_peer_is_banned_and_nothing_invalid_stored() {
    let node = v2_node(None).await;
    let wrong_proof = peer_with(v2_scripted(server(), 50, |_, _, mut r| {
        if let Response::HeadersV2(v2) = &mut r
            && let HeadersV2Result::Headers { proof, .. } = &mut v2.result
        {
            match proof.hashes.first_mut() {
                Some(h) => h.0[0] ^= 1,
                None => proof.hashes.push(Hash([1; 32])),
            }
        }
        Reply::Response(Box::new(r))
    }))
    .await;
    let forged_inside = peer_with(v2_scripted(server(), 50, |_, _, mut r| {
        if let Response::HeadersV2(v2) = &mut r
            && let HeadersV2Result::Headers { headers, .. } = &mut v2.result
            && headers.len() >= 3
        {
            let k = headers.len() / 2;
            let signed = &mut headers[k];
            signed.header.state_root = Hash([0x66; 32]);
            let height = signed.header.height;
            signed.commit = chain().sign(&signed.header, chain().validator_set(height));
        }
        Reply::Response(Box::new(r))
    }))
    .await;
    let other_commitment = peer_with(v2_scripted(server(), 50, |_, _, mut r| {
        if let Response::HeadersV2(v2) = &mut r {
            v2.result = HeadersV2Result::Commitment(Hash([0x42; 32]));
        }
        Reply::Response(Box::new(r))
    }))
    .await;
    let unbound_commit = peer_with(v2_scripted(server(), 50, |_, _, mut r| {
        if let Response::HeadersV2(v2) = &mut r
            && let HeadersV2Result::Headers { headers, .. } = &mut v2.result
            && headers.len() >= 2
        {
            let k = headers.len() / 2;
            let previous = headers[k - 1].header.hash();
            headers[k].commit.block_id.hash = previous;
        }
        Reply::Response(Box::new(r))
    }))
    .await;
    let honest = [honest_v2_peer().await, honest_v2_peer().await];
    let bad = [
        ("wrong MMR proof", &wrong_proof),
        ("forged header inside the range", &forged_inside),
        ("another commitment", &other_commitment),
        ("commit not bound to its header", &unbound_commit),
    ];
    let mut all: Vec<&ScriptedPeer> = bad.iter().map(|(_, p)| *p).collect();
    all.extend(honest.iter());
    connect_all_and_claim(&all, &node, TIP).await;

    for (what, p) in &bad {
        let ban = wait::until(
            &format!("the ban of the peer with a {what}"),
            DEADLINE,
            || {
                let record = p.record();
                async move { record.ban().cloned() }
            },
        )
        .await;
        match ban {
            Ok(ban) => assert!(!ban.reason.is_empty(), "{what}: ban without a reason"),
            Err(e) => node.fail(&format!("{e}; the peer saw: {}", p.summary())),
        }
        assert!(
            !p.record().v2_requests().is_empty(),
            "{what}: banned without being asked for a range?"
        );
    }
    node.wait_header_height(TIP, DEADLINE).await;
    assert_stores_exactly_honest_chain(&node, TIP).await;
    let honest_refs: Vec<&ScriptedPeer> = honest.iter().collect();
    assert_not_banned(&honest_refs);
    let m = node.metrics().await;
    assert!(
        m.value("headway_headersync_bans_total") >= 4.0,
        "bans_total: {m:?}"
    );
    assert!(
        m.value("headway_headersync_verification_failures_total") >= 4.0,
        "verification failures: {m:?}"
    );
    // A banned peer's reconnection is refused at once.
    assert!(
        wrong_proof.reconnect().await.is_some(),
        "a banned peer's new connection must be closed at once"
    );
}

/// Headers-only v2 (`header_sync = "v2-headers-only"`): ranges of headers
/// without commits, asked for in the compact form, proven by hashes alone,
/// from a checkpoint, among peers that serve a wrong MMR proof, a forged
/// header inside the range (no commit to hide behind: only the linkage and
/// the proof catch it), another commitment and a compact range expanded
/// from another parent. Asserted: the bad peers are banned; both honest
/// peers, one answering compact ranges and one plain bare headers, serve
/// ranges; the node stores exactly the honest headers, every one below the
/// tip without its commit (it serves them as bare headers and announces a
/// status `base` above them, so v1 peers never ask it for them), the tip
/// with its commit; honest peers are never banned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_headers_only_bans_bad_proofs_and_stores_the_honest_headers_bare() {
    let node = headers_only_node().await;
    let wrong_proof = peer_with(v2_scripted(server(), 50, |_, _, mut r| {
        if let Response::HeadersV2(v2) = &mut r
            && let HeadersV2Result::BareHeaders { proof, .. }
            | HeadersV2Result::CompactHeaders { proof, .. } = &mut v2.result
        {
            match proof.hashes.first_mut() {
                Some(h) => h.0[0] ^= 1,
                None => proof.hashes.push(Hash([1; 32])),
            }
        }
        Reply::Response(Box::new(r))
    }))
    .await;
    let forged_inside = peer_with(v2_scripted(server(), 50, |_, _, mut r| {
        if let Response::HeadersV2(v2) = &mut r
            && let HeadersV2Result::BareHeaders { headers, .. } = &mut v2.result
            && headers.len() >= 3
        {
            let k = headers.len() / 2;
            headers[k].header.state_root = Hash([0x66; 32]);
        }
        if let Response::HeadersV2(v2) = &mut r
            && let HeadersV2Result::CompactHeaders { headers, .. } = &mut v2.result
            && headers.len() >= 3
        {
            // The middle header's state root (its second 32 bytes of roots).
            let k = headers.len() / 2;
            headers.roots[k * 96 + 32..k * 96 + 64].copy_from_slice(&[0x66; 32]);
        }
        Reply::Response(Box::new(r))
    }))
    .await;
    // A compact range expanded from another parent: every header's hash
    // changes with it, so the last one's proof fails.
    let other_parent = peer_with(v2_scripted(server(), 50, |_, _, mut r| {
        if let Response::HeadersV2(v2) = &mut r
            && let HeadersV2Result::CompactHeaders { headers, .. } = &mut v2.result
        {
            headers.parent_hash = Some(Hash([0x77; 32]));
        }
        Reply::Response(Box::new(r))
    }))
    .await;
    let other_commitment = peer_with(v2_scripted(server(), 50, |_, _, mut r| {
        if let Response::HeadersV2(v2) = &mut r {
            v2.result = HeadersV2Result::Commitment(Hash([0x42; 32]));
        }
        Reply::Response(Box::new(r))
    }))
    .await;
    // One honest peer answers compact ranges, the other plain bare headers
    // (a server that predates the compact form): the node takes both.
    let plain_bare = peer_with(v2_scripted(server(), 50, |q, up_to, _| {
        let plain = GetHeadersV2 {
            compact: false,
            ..*q
        };
        let reply = Reply::Response(Box::new(server().headers_v2(&plain, up_to, 50)));
        Reply::Delayed(HONEST_DELAY, Box::new(reply))
    }))
    .await;
    let honest = [honest_v2_peer().await, plain_bare];
    let bad = [
        ("wrong MMR proof", &wrong_proof),
        ("forged header inside the range", &forged_inside),
        ("another commitment", &other_commitment),
        ("compact range from another parent", &other_parent),
    ];
    let mut all: Vec<&ScriptedPeer> = bad.iter().map(|(_, p)| *p).collect();
    all.extend(honest.iter());
    connect_all_and_claim(&all, &node, TIP).await;
    for (what, p) in &bad {
        let ban = wait::until(
            &format!("the ban of the peer with a {what}"),
            DEADLINE,
            || {
                let record = p.record();
                async move { record.ban().cloned() }
            },
        )
        .await;
        if let Err(e) = ban {
            node.fail(&format!("{e}; the peer saw: {}", p.summary()));
        }
        assert!(
            p.record()
                .v2_requests()
                .iter()
                .all(|q| q.headers_only && q.compact),
            "{what}: the node asked for signed or plain bare headers"
        );
    }
    node.wait_header_height(TIP, DEADLINE).await;
    for (what, p) in [("compact", &honest[0]), ("plain bare", &honest[1])] {
        assert!(
            !p.record().v2_requests().is_empty() && p.record().ban().is_none(),
            "the honest peer answering {what} ranges served unbanned: {}",
            p.summary()
        );
    }

    let o = ScriptedPeer::observer().await;
    o.connect(&node).await;
    // Below the tip: exactly the honest headers, served bare.
    let bare = o.fetch_bare_headers(1, x(), x(), commitment()).await;
    let honest_headers: Vec<_> = chain().headers()[..x() as usize]
        .iter()
        .map(|s| s.header.clone())
        .collect();
    let stored: Vec<_> = bare.iter().map(|b| b.header.clone()).collect();
    if stored != honest_headers {
        node.fail(&format!(
            "the node serves {} bare headers that are not the honest chain 1..={}",
            stored.len(),
            x()
        ));
    }
    // The tip is stored with its commit; the headers below it are not, and
    // the status the node announces starts at the tip.
    let tip = o.fetch_headers(TIP, TIP).await;
    assert_eq!(tip.len(), 1, "the tip is served signed");
    assert_eq!(tip[0], chain().signed_header(TIP).clone());
    let status = o.wait_status(|s| s.height >= TIP, DEADLINE).await;
    assert_eq!(
        status.base, TIP,
        "headers stored without commits are not offered to v1 peers"
    );
    // It answered the ranges above, and says so in its status (protocol.md §6).
    assert!(
        status.features.contains(Features::HEADERS_V2),
        "a node serving GetHeadersV2 announces it: {status:?}"
    );
    match o.get_headers(CHECKPOINT, 10).await {
        Response::Headers(h) => assert!(
            h.headers.is_empty(),
            "served signed headers it has no commits for: {h:?}"
        ),
        Response::Error(_) => {}
        other => panic!("unexpected answer below the base: {other:?}"),
    }
    let honest_refs: Vec<&ScriptedPeer> = honest.iter().collect();
    assert_not_banned(&honest_refs);
    for p in &honest {
        assert_ranges_well_formed(p);
    }
}

// ----------------------------------------------------------- fallback, slow

/// No peer serves v2 ranges: two answer `GetHeadersV2` with `UNSUPPORTED`
/// (they do serve validator sets), one answers every request but
/// `GetHeaders` with `UNSUPPORTED` (a v1-only peer). The node still syncs,
/// by v1 batches; nobody is banned, and no peer is asked for a range again
/// after saying `UNSUPPORTED` (protocol.md §10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_falls_back_to_v1_for_peers_without_v2() {
    let node = v2_node(None).await;
    let peers = [
        peer_with(v2_unsupported(server())).await,
        peer_with(v2_unsupported(server())).await,
        peer_with(unsupported()).await,
    ];
    let refs: Vec<&ScriptedPeer> = peers.iter().collect();
    connect_all_and_claim(&refs, &node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;

    let total_v2: usize = peers.iter().map(|p| p.record().v2_requests().len()).sum();
    assert!(total_v2 >= 1, "the node never tried v2");
    for p in &peers {
        assert!(
            p.record().v2_requests().len() <= 1,
            "asked for ranges again after UNSUPPORTED: {}",
            p.summary()
        );
    }
    let batches = peers
        .iter()
        .flat_map(|p| p.record().requests)
        .filter(|r| r.request.count > 1)
        .count();
    assert!(batches >= 1, "the headers came by v1 batches");
    let m = node.metrics().await;
    assert_eq!(m.value("headway_headersync_bans_total"), 0.0, "{m:?}");
    assert_stores_exactly_honest_chain(&node, TIP).await;
    assert_not_banned(&refs);
}

/// One peer answers ranges only after a minute (bootstrap requests and v1
/// promptly). Its ranges are asked of the other peers too, and sync
/// finishes long before it would have answered; being slow is no fault, so
/// it is not banned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_slow_peer_ranges_are_reassigned() {
    const SLOW: Duration = Duration::from_secs(60);
    let node = v2_node(None).await;
    let slow = peer_with(v2_serving(server(), DEFAULT_V2_MAX_HEADERS, SLOW)).await;
    let fast = [honest_v2_peer().await, honest_v2_peer().await];
    let mut all: Vec<&ScriptedPeer> = vec![&slow];
    all.extend(fast.iter());
    let started = Instant::now();
    connect_all_and_claim(&all, &node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;
    let took = started.elapsed();
    assert!(
        took < SLOW / 4,
        "sync took {took:?}; the slow peer answers after {SLOW:?}"
    );

    let slow_record = slow.record();
    let slow_ranges = slow_record.v2_requests();
    assert!(
        !slow_ranges.is_empty(),
        "the slow peer was never asked for a range, so nothing was reassigned: {}",
        slow.summary()
    );
    assert!(
        slow_record
            .others
            .iter()
            .filter(|o| matches!(o.request, headway_wire::Request::GetHeadersV2(_)))
            .all(|o| o.answered.is_none()),
        "the slow peer answered a range within the test"
    );
    let fast_refs: Vec<&ScriptedPeer> = fast.iter().collect();
    let by_others = heights_requested(&fast_refs);
    for q in &slow_ranges {
        assert!(
            by_others.contains(&q.start_height),
            "range from {} given to the slow peer was never asked of another peer",
            q.start_height
        );
    }
    assert_stores_exactly_honest_chain(&node, TIP).await;
    assert_not_banned(&all);
}

/// A long-range fork, as an attacker holding old validator keys would make
/// it: the peers serve a chain that forks from the honest one at 150 and is
/// validly signed from the genesis on. The node's checkpoint is the honest
/// header at [`CHECKPOINT`], which excludes that fork. The node must not
/// store the fork at or above the checkpoint height, whichever protocol it
/// falls back to. (This found a bug: the node used to fall back to v1 from
/// the genesis after the checkpoint mismatch and store the fork.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_checkpoint_excludes_a_long_range_fork() {
    let honest_hash = chain().signed_header(CHECKPOINT).header.hash();
    let node = v2_node(Some(Checkpoint::HeaderHash {
        height: CHECKPOINT,
        hash: honest_hash,
    }))
    .await;
    let fork = Arc::new(chain().forge(150, |h| h.state_root = Hash([0x77; 32])));
    let fork_server = Arc::new(ChainServer::new(fork.clone()));
    let mut peers = Vec::new();
    for _ in 0..2 {
        peers.push(
            ScriptedPeer::start_with(
                serving(fork.clone()),
                v2_serving(fork_server.clone(), DEFAULT_V2_MAX_HEADERS, Duration::ZERO),
                TIP,
            )
            .await,
        );
    }
    let refs: Vec<&ScriptedPeer> = peers.iter().collect();
    connect_all_and_claim(&refs, &node, TIP).await;
    // Give the node time to do whatever it does with the fork.
    let _ = wait::until_value(
        "the node to store the fork",
        Duration::from_secs(5),
        || node.header_height(),
        |h| *h >= TIP,
    )
    .await;
    let o = ScriptedPeer::observer().await;
    o.connect(&node).await;
    let stored = o.fetch_headers(CHECKPOINT, CHECKPOINT).await;
    if let Some(at) = stored.first() {
        assert_eq!(
            at.header.hash(),
            honest_hash,
            "the node stored a header at the checkpoint height that is not the checkpoint"
        );
    }
}

/// A peer that connects after the v2 download has started still gets
/// ranges: the node does not wait for every peer before it starts, and it
/// does not leave a late peer idle until the download ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_peer_joining_mid_run_gets_ranges() {
    const SLOW_ANSWER: Duration = Duration::from_millis(300);
    let node = v2_node(None).await;
    let early = peer_with(v2_serving(server(), DEFAULT_V2_MAX_HEADERS, SLOW_ANSWER)).await;
    connect_all_and_claim(&[&early], &node, TIP).await;
    wait::until("the first range request", DEADLINE, || async {
        (!early.record().v2_requests().is_empty()).then_some(())
    })
    .await
    .unwrap();
    assert!(
        node.header_height().await < TIP,
        "the run must still be under way when the late peer joins"
    );
    let late = honest_v2_peer().await;
    late.connect_and_claim(&node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;
    assert!(
        !late.record().v2_requests().is_empty(),
        "the peer that joined mid-run was never asked for a range: {}",
        late.summary()
    );
    assert_ranges_well_formed(&late);
    assert_stores_exactly_honest_chain(&node, TIP).await;
    assert_not_banned(&[&early, &late]);
}

/// A peer that answers every range with an error (`INTERNAL`) fails at once
/// and so looks like the fastest peer: the node must not keep asking it
/// while the honest peer waits. Asserted: the sync finishes from the honest
/// peer; the failing peer is asked a bounded number of times (paused after
/// each failure, then left to v1) and is not banned (an error is not
/// invalid data).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_a_peer_failing_every_range_does_not_stall_the_sync() {
    let node = headers_only_node().await;
    let failing = peer_with(v2_scripted(server(), 50, |_, _, _| {
        Reply::Response(Box::new(headway_conformance::v2::error(
            ErrorCode::Internal,
            "storage unavailable",
        )))
    }))
    .await;
    let honest = honest_v2_peer().await;
    connect_all_and_claim(&[&failing, &honest], &node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;
    let asked = failing.record().v2_requests().len();
    assert!(
        (1..=headway_headersync::v2::MAX_CONSECUTIVE_FAILURES as usize).contains(&asked),
        "the failing peer was asked {asked} times: {}",
        failing.summary()
    );
    assert!(failing.record().ban().is_none(), "{}", failing.summary());
    assert!(honest.record().ban().is_none(), "{}", honest.summary());
}
