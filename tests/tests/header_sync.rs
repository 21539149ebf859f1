//! Header sync conformance (seed 003, requirements R1–R8), black-box over QUIC.
//!
//! Each test starts a node under test (in-process, or the binary named by
//! `HEADWAY_NODE_BIN`) whose genesis is block 1 of the shared test chain
//! (rotations every 25 blocks, the whole validator set replaced at 230), and
//! drives it with scripted peers. Adversarial tests check what the node did:
//! whom it banned, that it stored nothing invalid (its headers are fetched
//! back with `GetHeaders` and compared with the honest chain), and that it
//! still finished from the honest peers.
//!
//! R5 (the header subscription) is an in-process API, not on the wire: its
//! tests run the `headway-headersync` reactor with a store directly.
//!
//! R6.4 (no interference with consensus) does not apply as such: Headway has
//! no consensus reactor. Its test checks the nearest observable property: the
//! node keeps serving peers and metrics while it syncs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is the assertion"
)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use headway_chain::{Corruption, HeaderExt as _, ValidatorSetExt as _};
use headway_conformance::{
    DEADLINE,
    chain::{CHAIN_LEN, FULL_REPLACEMENT_HEIGHT, TIP, TestChain, test_chain},
    metrics::REQUIRED_METRICS,
    node::{NodeOptions, TestNode},
    peer::{
        self, Reply, Script, ScriptedPeer, check_honest_prefix, serving, serving_slowly, silent,
        slice,
    },
};
use headway_headersync::{HeaderSync, HeaderSyncInput, ReactorConfig};
use headway_net::{NetConfig, NetEvent, Network, NodeKey};
use headway_store::{Store, StoreConfig};
use headway_wire::{
    BlockId, ErrorCode, GetBlocks, GetHeaders, Hash, HeadersResponse, Push, Response, SignedHeader,
    limits::MAX_HEADERS_PER_BATCH,
};

/// Height at which the adversarial tests' corruption starts: inside the
/// first batch a node asks for.
const CORRUPT_AT: u64 = 30;
/// Bound on outstanding `GetHeaders` assumed by R2.6 (the reference node's
/// `max_pending_batches`).
const MAX_OUTSTANDING: usize = 64;

fn chain() -> &'static TestChain {
    test_chain()
}

async fn start_node() -> TestNode {
    TestNode::start(NodeOptions::default()).await
}

async fn honest_peer(serve: u64) -> ScriptedPeer {
    ScriptedPeer::honest(chain().headers(), serve).await
}

async fn observer(node: &TestNode) -> ScriptedPeer {
    let o = ScriptedPeer::observer().await;
    o.connect(node).await;
    o
}

/// Fetches the node's headers `1..=height` and checks they are exactly the
/// honest ones (headers, commits, attached validator sets).
async fn assert_stores_honest_chain(node: &TestNode, height: u64) {
    let o = observer(node).await;
    let stored = o.fetch_headers(1, height).await;
    if let Err(e) = check_honest_prefix(&stored, &chain().headers(), 1) {
        node.fail(&format!(
            "the node serves a header that is not the honest chain's: {e}"
        ));
    }
    if (stored.len() as u64) < height {
        node.fail(&format!(
            "the node serves {} headers, expected {height}",
            stored.len()
        ));
    }
}

/// Fetches everything the node serves and checks it is a prefix of the
/// honest chain; returns how many headers it has.
async fn assert_stores_honest_prefix(node: &TestNode) -> u64 {
    let o = observer(node).await;
    let stored = o.fetch_headers(1, CHAIN_LEN).await;
    if let Err(e) = check_honest_prefix(&stored, &chain().headers(), 1) {
        node.fail(&format!("the node stored invalid data: {e}"));
    }
    stored.len() as u64
}

/// The common shape of the invalid-data tests: a bad peer alone first, then
/// an honest one.
async fn rejects_invalid_data(script: Script, first_bad: u64) {
    let node = start_node().await;
    let bad = ScriptedPeer::start(script, TIP).await;
    bad.connect_and_claim(&node, TIP).await;
    let ban = bad.wait_banned(DEADLINE).await;
    assert!(!ban.reason.is_empty());

    let stored = assert_stores_honest_prefix(&node).await;
    assert!(
        stored < first_bad,
        "the node stored {stored} headers; invalid data starts at {first_bad}"
    );
    let m = node.metrics().await;
    assert!(
        m.value("headway_headersync_bans_total") >= 1.0,
        "bans_total: {m:?}"
    );
    assert!(
        m.value("headway_headersync_verification_failures_total") >= 1.0,
        "verification failures: {m:?}"
    );

    let requests_before = bad.record().requests.len();
    assert!(
        bad.reconnect().await.is_some(),
        "a banned peer's new connection must be closed at once"
    );
    assert_eq!(
        bad.record().requests.len(),
        requests_before,
        "the node asked a banned peer for headers"
    );

    let honest = honest_peer(TIP).await;
    honest.connect_and_claim(&node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;
    assert_stores_honest_chain(&node, TIP).await;
    assert!(
        honest.record().ban().is_none(),
        "the honest peer was banned: {}",
        honest.summary()
    );
}

/// A script serving `chain` whose answers are post-processed by `edit`.
fn serving_edited(
    chain: Arc<Vec<SignedHeader>>,
    edit: impl Fn(&mut Vec<SignedHeader>) + Send + Sync + 'static,
) -> Script {
    Arc::new(move |q: &GetHeaders, up_to: u64| {
        let mut headers = slice(&chain, q, up_to);
        edit(&mut headers);
        Reply::Headers(headers)
    })
}

fn strictly_increasing(heights: &[u64]) -> bool {
    heights.windows(2).all(|w| w[0] < w[1])
}

// ------------------------------------------------------------------ R1

/// R1.1: on connect the node pushes its status, and takes ours (it asks us for headers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_1_status_exchanged_on_connect() {
    let node = start_node().await;
    let peer = honest_peer(TIP).await;
    peer.connect_and_claim(&node, TIP).await;
    let status = peer.wait_status(|_| true, DEADLINE).await;
    assert!(status.base <= status.height, "{status:?}");
    peer.wait_requests(1, DEADLINE).await;
}

/// R1.2: the node broadcasts its status as its header height advances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_2_status_broadcast_on_advance() {
    let node = start_node().await;
    let o = observer(&node).await;
    o.wait_status(|_| true, DEADLINE).await;
    let honest = honest_peer(TIP).await;
    honest.connect_and_claim(&node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;
    o.wait_status(|s| s.height == TIP, DEADLINE).await;
    for p in [&o, &honest] {
        let heights: Vec<u64> = p.record().statuses.iter().map(|s| s.height).collect();
        assert!(
            heights.len() >= 2,
            "expected the connect status and at least one advance: {heights:?}"
        );
        assert!(
            strictly_increasing(&heights),
            "status heights must strictly increase: {heights:?}"
        );
    }
}

/// R1.3: the node tracks the highest height any peer reports, and asks each
/// peer only for what it claims.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_3_tracks_max_peer_height() {
    let node = start_node().await;
    let low = honest_peer(200).await;
    low.connect_and_claim(&node, 200).await;
    node.wait_header_height(200, DEADLINE).await;
    let high = honest_peer(TIP).await;
    high.connect_and_claim(&node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;
    assert_stores_honest_chain(&node, TIP).await;
    let above = low
        .record()
        .requests
        .iter()
        .filter(|r| *r.heights().end() > 200)
        .count();
    assert_eq!(
        above,
        0,
        "the node asked a peer for heights above its claim: {}",
        low.summary()
    );
}

/// R1.4: a status at a lower height than before bans the peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_4_status_regression_bans() {
    status_misbehaviour_bans(200).await;
}

/// R1.4 (NOTES hole 7): a status at the same height as before bans the peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_4_status_repetition_bans() {
    status_misbehaviour_bans(300).await;
}

async fn status_misbehaviour_bans(second: u64) {
    let node = start_node().await;
    let bad = honest_peer(300).await;
    bad.connect_and_claim(&node, 300).await;
    bad.push_status(1, second);
    let ban = bad.wait_banned(DEADLINE).await;
    assert!(ban.banned);
    assert!(
        bad.reconnect().await.is_some(),
        "a banned peer's new connection must be closed at once"
    );
    let m = node.metrics().await;
    assert!(m.value("headway_headersync_bans_total") >= 1.0);
    let honest = honest_peer(TIP).await;
    honest.connect_and_claim(&node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;
    assert_stores_honest_chain(&node, TIP).await;
}

/// R1.5: the first status to a new peer is height - 1, and the next
/// broadcast is above it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_5_first_status_is_height_minus_one() {
    let node = start_node().await;
    let honest = honest_peer(TIP).await;
    honest.connect_and_claim(&node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;
    let o = observer(&node).await;
    let first = o.wait_status(|_| true, DEADLINE).await;
    assert_eq!(
        first.height,
        TIP - 1,
        "first status to a new peer: {first:?}"
    );
    honest.set_serve_height(TIP + 50);
    honest.push_status(1, TIP + 50);
    node.wait_header_height(TIP + 50, DEADLINE).await;
    o.wait_status(|s| s.height == TIP + 50, DEADLINE).await;
    let heights: Vec<u64> = o.record().statuses.iter().map(|s| s.height).collect();
    assert!(strictly_increasing(&heights), "{heights:?}");
    assert!(o.is_connected(), "the observer must not be disconnected");
}

// ------------------------------------------------------------------ R2

/// R2.1: the node requests batches from a start height, covering the whole range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_1_requests_batches() {
    let node = start_node().await;
    let honest = honest_peer(TIP).await;
    honest.connect_and_claim(&node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;
    let requests = honest.record().requests;
    assert!(
        requests.iter().any(|r| r.request.count > 1),
        "no batch requests: {}",
        honest.summary()
    );
    let mut covered = vec![false; TIP as usize + 1];
    for r in &requests {
        for h in r.heights() {
            if let Some(c) = covered.get_mut(h as usize) {
                *c = true;
            }
        }
    }
    let missing: Vec<u64> = (2..=TIP).filter(|h| !covered[*h as usize]).collect();
    assert!(missing.is_empty(), "heights never requested: {missing:?}");
}

/// R2.2: no request asks for more than 50 headers (and none is malformed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_2_never_requests_more_than_50() {
    let node = start_node().await;
    let honest = honest_peer(CHAIN_LEN).await;
    honest.connect_and_claim(&node, CHAIN_LEN).await;
    node.wait_header_height(CHAIN_LEN, DEADLINE).await;
    let record = honest.record();
    assert!(
        record.misbehaved.is_empty(),
        "the node sent malformed frames: {:?}",
        record.misbehaved
    );
    for r in &record.requests {
        assert!(
            (1..=50).contains(&r.request.count),
            "request {:?}",
            r.request
        );
    }
}

/// R2.2 as a server: a `GetHeaders` with count 51 is refused (`BAD_REQUEST`
/// or a refused stream), never answered with headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_2_count_over_50_is_refused() {
    use prost::Message as _;
    let node = start_node().await;
    let o = observer(&node).await;
    let conn = o
        .net()
        .raw_connection(node.peer_id())
        .expect("observer connected");
    let raw = headway_wire::raw::Request {
        body: Some(headway_wire::raw::request::Body::GetHeaders(
            headway_wire::raw::GetHeaders {
                start_height: 1,
                count: 51,
            },
        )),
    };
    let payload = raw.encode_to_vec();
    let mut frame = u32::try_from(payload.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(&payload);
    let (mut send, mut recv) = conn.open_bi().await.expect("open a stream");
    send.write_all(&frame).await.expect("write the request");
    send.finish().expect("finish");
    let answer =
        tokio::time::timeout(DEADLINE, recv.read_to_end(headway_wire::limits::MAX_FRAME)).await;
    match answer {
        Err(_) => node.fail("the node neither answered nor refused a GetHeaders with count 51"),
        // A reset stream or closed connection is a refusal.
        Ok(Err(_)) => {}
        Ok(Ok(bytes)) => {
            let response: Response =
                headway_wire::frame::decode_frame(&bytes, headway_wire::limits::MAX_FRAME)
                    .expect("a valid response frame");
            match response {
                Response::Error(e) => assert_eq!(e.code, ErrorCode::BadRequest, "{e:?}"),
                other => node.fail(&format!("count 51 must be refused, got {other:?}")),
            }
        }
    }
}

/// R2.3: headers are served with their commits and, where the validator set
/// changes, the set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_3_serves_headers_with_commits() {
    let node = start_node().await;
    let honest = honest_peer(TIP).await;
    honest.connect_and_claim(&node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;
    let o = observer(&node).await;
    for start in [1, FULL_REPLACEMENT_HEIGHT - 20] {
        let Response::Headers(r) = o.get_headers(start, 50).await else {
            panic!("no headers")
        };
        assert_eq!(r.start_height, start);
        assert_eq!(r.headers.len(), 50);
        check_honest_prefix(&r.headers, &chain().headers(), start).unwrap();
        for h in &r.headers {
            assert_eq!(
                h.commit.block_id.hash,
                h.header.hash(),
                "commit not for header {}",
                h.header.height
            );
        }
        assert!(
            r.headers.iter().any(|h| h.validator_set.is_some()),
            "no validator set attached in 50 headers from {start}"
        );
    }
}

/// R2.4: as many sequential headers as the node has; empty when it has none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_4_serves_partial_and_empty() {
    let node = start_node().await;
    let honest = honest_peer(TIP).await;
    honest.connect_and_claim(&node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;
    let o = observer(&node).await;
    let Response::Headers(partial) = o.get_headers(TIP - 9, 50).await else {
        panic!("no headers")
    };
    assert_eq!(partial.headers.len(), 10, "partial answer");
    check_honest_prefix(&partial.headers, &chain().headers(), TIP - 9).unwrap();
    for start in [TIP + 1, 1_000_000] {
        match o.get_headers(start, 50).await {
            Response::Headers(HeadersResponse {
                start_height,
                headers,
            }) => {
                assert_eq!(start_height, start);
                assert!(
                    headers.is_empty(),
                    "headers from {start}: {}",
                    headers.len()
                );
            }
            other => node.fail(&format!(
                "an empty HeadersResponse expected from {start}, got {other:?}"
            )),
        }
    }
}

/// R2.5: requests go to several peers in parallel, for non-overlapping ranges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_5_parallel_non_overlapping_requests() {
    let node = start_node().await;
    let mut peers = Vec::new();
    for _ in 0..3 {
        let p = ScriptedPeer::start(
            serving_slowly(chain().headers(), Duration::from_millis(200)),
            CHAIN_LEN,
        )
        .await;
        p.connect_and_claim(&node, CHAIN_LEN).await;
        peers.push(p);
    }
    node.wait_header_height(CHAIN_LEN, DEADLINE).await;
    let records: Vec<_> = peers.iter().map(ScriptedPeer::record).collect();
    let busy = records.iter().filter(|r| !r.requests.is_empty()).count();
    assert!(busy >= 2, "only {busy} peer(s) were asked");
    let all: Vec<(usize, &peer::RequestRecord)> = records
        .iter()
        .enumerate()
        .flat_map(|(i, r)| r.requests.iter().map(move |q| (i, q)))
        .collect();
    let mut parallel = false;
    for (n, (pa, a)) in all.iter().enumerate() {
        for (pb, b) in &all[n + 1..] {
            let (ra, rb) = (a.heights(), b.heights());
            assert!(
                ra.end() < rb.start() || rb.end() < ra.start(),
                "overlapping requests {:?} and {:?}",
                a.request,
                b.request
            );
            let (ea, eb) = (
                a.answered.unwrap_or(a.received),
                b.answered.unwrap_or(b.received),
            );
            if pa != pb && a.received < eb && b.received < ea {
                parallel = true;
            }
        }
    }
    assert!(parallel, "no two peers were asked at the same time");
    assert_stores_honest_chain(&node, CHAIN_LEN).await;
}

/// R2.6: outstanding requests stay bounded even when many peers claim a
/// huge height and never answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_6_bounded_outstanding_requests() {
    let node = start_node().await;
    let mut peers = Vec::new();
    for _ in 0..20 {
        let p = ScriptedPeer::start(silent(), 0).await;
        p.connect_and_claim(&node, 1_000_000).await;
        peers.push(p);
    }
    // Past the first timeouts, so retries are counted too.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // A silent peer's request is outstanding from its arrival until the
    // node's timeout. Arrival times are taken on this side, later than the
    // node sent them, so the end is pulled in by a margin: a request sent
    // after a timeout must not look like it overlapped the one it replaced.
    let timeout = Duration::from_millis(NodeOptions::default().request_timeout_ms)
        - Duration::from_millis(250);
    let mut edges: Vec<(Instant, i32)> = Vec::new();
    for p in &peers {
        for r in p.record().requests {
            edges.push((r.received, 1));
            edges.push((r.received + timeout, -1));
        }
    }
    edges.sort_by_key(|(t, d)| (*t, *d));
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        max = max.max(now);
    }
    assert!(max >= 1, "the node asked nobody");
    assert!(
        max as usize <= MAX_OUTSTANDING,
        "{max} requests outstanding at once"
    );
    let pending = node
        .metrics()
        .await
        .value("headway_headersync_pending_requests");
    assert!(
        pending as usize <= MAX_OUTSTANDING,
        "pending_requests metric {pending}"
    );
}

/// R2.7 (NOTES hole 5): GetHeaders spam is answered `RATE_LIMITED` with a
/// retry delay, never silence; per peer; and service resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_7_get_headers_spam_is_rate_limited() {
    let node = TestNode::start(NodeOptions {
        get_headers_per_second: Some(5),
        ..NodeOptions::default()
    })
    .await;
    let spammer = observer(&node).await;
    let (mut served, mut limited, mut retry_after) = (0, 0, 0);
    // Full batches: a node may weigh requests by the headers they ask for
    // (ours does, counting `get_headers_per_second` in full batches).
    for _ in 0..30 {
        match spammer.get_headers(1, MAX_HEADERS_PER_BATCH).await {
            Response::Headers(r) => {
                assert_eq!(r.headers.len(), 1);
                served += 1;
            }
            Response::Error(e) if e.code == ErrorCode::RateLimited => {
                limited += 1;
                retry_after = e.retry_after_ms;
            }
            other => node.fail(&format!("expected headers or RATE_LIMITED, got {other:?}")),
        }
    }
    assert!(
        limited > 0,
        "30 requests in a burst were all served ({served})"
    );
    assert!(retry_after > 0, "RATE_LIMITED must say when to retry");
    let other = observer(&node).await;
    assert!(
        matches!(other.get_headers(1, 1).await, Response::Headers(_)),
        "another peer must not be limited"
    );
    // The budget belongs to the peer's identity, not to its connection:
    // leaving and coming back within the window does not reset it.
    let limited_at = std::time::Instant::now();
    spammer.disconnect();
    node.wait_metric("headway_peers", |v| v <= 1.0, DEADLINE)
        .await;
    // The node has seen the disconnect (and acted on it) by now.
    tokio::time::sleep(Duration::from_millis(100)).await;
    spammer.connect(&node).await;
    let again = spammer.get_headers(1, MAX_HEADERS_PER_BATCH).await;
    if limited_at.elapsed() < Duration::from_millis(u64::from(retry_after).saturating_sub(100)) {
        assert!(
            matches!(&again, Response::Error(e) if e.code == ErrorCode::RateLimited),
            "reconnecting reset the rate limit: {again:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(u64::from(retry_after) + 1100)).await;
    assert!(
        matches!(spammer.get_headers(1, 1).await, Response::Headers(_)),
        "service must resume after the window"
    );
}

/// R2.7 for v2: `GetHeadersV2` ranges draw on the same per-peer budget,
/// weighted by the headers asked for, so range spam is answered
/// `RATE_LIMITED` too (it used to be served without limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_7_v2_range_spam_is_rate_limited_too() {
    let node = TestNode::start(NodeOptions {
        get_headers_per_second: Some(5),
        ..NodeOptions::default()
    })
    .await;
    let spammer = observer(&node).await;
    let range = headway_wire::Request::GetHeadersV2(headway_wire::GetHeadersV2 {
        start_height: 1,
        count: 250,
        end_height: 250,
        commitment: headway_wire::Hash::ZERO,
        proof_kind: headway_wire::ProofKind::LastLeaf,
        headers_only: false,
        compact: false,
    });
    let (mut answered, mut limited) = (0, 0);
    for _ in 0..10 {
        match spammer.request(&range).await {
            Ok(Response::Error(e)) if e.code == ErrorCode::RateLimited => {
                assert!(e.retry_after_ms > 0, "RATE_LIMITED must say when to retry");
                limited += 1;
            }
            Ok(_) => answered += 1,
            Err(e) => node.fail(&format!("range request failed: {e}")),
        }
    }
    // 5 full batches (30 units) per second; a 250-header range costs 26.
    assert!(answered >= 1, "the first range must be answered");
    assert!(
        limited >= 8,
        "10 ranges of 250 in a burst: {answered} answered, {limited} limited"
    );
}

// ------------------------------------------------------------------ R3

/// Flips a byte of every signature of `h`'s commit.
fn break_all_signatures(h: &mut SignedHeader) {
    for s in &mut h.commit.signatures {
        s.signature.0[0] ^= 0x01;
    }
}

/// R3.1, R3.9: the last header of every answer has only invalid signatures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_1_invalid_signatures_rejected() {
    let script = serving_edited(chain().headers(), |hs| {
        if let Some(last) = hs.last_mut() {
            break_all_signatures(last);
        }
    });
    rejects_invalid_data(script, 2).await;
}

/// R3.1 (NOTES hole 4): the last header of every answer is signed by a part
/// of its own validator set holding less than 2/3 of its power (enough for
/// a 1/3 trusting check alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_1_commit_without_two_thirds_of_own_set_rejected() {
    let chain = chain();
    let weakened: Vec<SignedHeader> = (1..=CHAIN_LEN).map(|h| chain.weakened(h)).collect();
    let weakened = Arc::new(weakened);
    let honest = chain.headers();
    // Every header but the last of an answer is honest: only the checked commit is weak.
    let script: Script = Arc::new(move |q: &GetHeaders, up_to: u64| {
        let mut hs = slice(&honest, q, up_to);
        if let Some(last) = hs.last_mut() {
            *last = weakened[(last.header.height - 1) as usize].clone();
        }
        Reply::Headers(hs)
    });
    rejects_invalid_data(script, 2).await;
}

/// R3.2 (NOTES hole 1): a forged batch, internally linked, that ends in the
/// real commit of its last height.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_2_forged_batch_ending_in_real_commit_rejected() {
    let chain = chain();
    let forged = Arc::new(chain.forge(CORRUPT_AT, |h| h.state_root = Hash([0x66; 32])));
    let honest = chain.headers();
    let script: Script = Arc::new(move |q: &GetHeaders, up_to: u64| {
        let mut hs = slice(&forged, q, up_to);
        if let Some(last) = hs.last_mut() {
            last.commit = honest[(last.header.height - 1) as usize].commit.clone();
        }
        Reply::Headers(hs)
    });
    rejects_invalid_data(script, CORRUPT_AT).await;
}

/// R3.2: an intermediate header carries a valid commit for another header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_2_commit_for_other_header_rejected() {
    let chain = chain();
    let mut headers = chain.headers().to_vec();
    headers[(CORRUPT_AT - 1) as usize] =
        chain.corrupt(CORRUPT_AT, Corruption::CommitForOtherHeader);
    rejects_invalid_data(serving(Arc::new(headers)), CORRUPT_AT).await;
}

/// R3.3: chain linkage broken once (everything else rebuilt and validly signed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_3_broken_linkage_rejected() {
    let forged = chain().forge(CORRUPT_AT, |h| {
        h.last_block_id = Some(BlockId {
            hash: Hash([0x77; 32]),
        })
    });
    rejects_invalid_data(serving(Arc::new(forged)), CORRUPT_AT).await;
}

/// R3.4: validator hash continuity broken once (`next_validators_hash` of
/// one header is not the next header's `validators_hash`), everything else
/// linked and validly signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_4_validator_hash_continuity_rejected() {
    let other = chain().validator_set(FULL_REPLACEMENT_HEIGHT).hash();
    let forged = chain().forge(CORRUPT_AT, |h| h.next_validators_hash = other);
    rejects_invalid_data(serving(Arc::new(forged)), CORRUPT_AT + 1).await;
}

/// R3.1, R3.5–R3.7: skip verification across gradual rotations and the
/// replacement of the whole validator set; every header stored as served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_5_r3_6_r3_7_skip_verification_across_rotations_and_full_replacement() {
    let node = start_node().await;
    let honest = honest_peer(CHAIN_LEN).await;
    honest.connect_and_claim(&node, CHAIN_LEN).await;
    node.wait_header_height(CHAIN_LEN, DEADLINE).await;
    assert_stores_honest_chain(&node, CHAIN_LEN).await;
    let m = node.metrics().await;
    assert_eq!(
        m.value("headway_headersync_verification_failures_total"),
        0.0
    );
    assert_eq!(m.value("headway_headersync_bans_total"), 0.0);
    assert!(honest.record().ban().is_none());
}

/// R3.8, R3.9: an attached validator set whose hash is not the header's
/// `validators_hash`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_8_wrong_validator_set_rejected() {
    let at = (CORRUPT_AT..TIP)
        .find(|h| chain().signed_header(*h).validator_set.is_some())
        .expect("a rotation");
    let mut headers = chain().headers().to_vec();
    headers[(at - 1) as usize] = chain().corrupt(at, Corruption::WrongValidatorSet);
    rejects_invalid_data(serving(Arc::new(headers)), at).await;
}

/// R3.9: a header of another chain id, validly signed there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_9_wrong_chain_id_rejected_and_peer_banned() {
    let mut headers = chain().headers().to_vec();
    headers[(CORRUPT_AT - 1) as usize] = chain().corrupt(CORRUPT_AT, Corruption::WrongChainId);
    rejects_invalid_data(serving(Arc::new(headers)), CORRUPT_AT).await;
}

/// R3.9: an answer that does not answer the request (wrong start height
/// echoed) is a protocol fault: the peer is banned and nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_9_response_not_answering_the_request_bans() {
    let headers = chain().headers();
    let script: Script = Arc::new(move |q: &GetHeaders, up_to: u64| {
        let shifted = GetHeaders {
            start_height: q.start_height + 1,
            count: q.count,
        };
        Reply::Response(Box::new(Response::Headers(HeadersResponse {
            start_height: shifted.start_height,
            headers: slice(&headers, &shifted, up_to),
        })))
    });
    let node = start_node().await;
    let bad = ScriptedPeer::start(script, TIP).await;
    bad.connect_and_claim(&node, TIP).await;
    bad.wait_banned(DEADLINE).await;
    assert_eq!(
        assert_stores_honest_prefix(&node).await,
        1,
        "nothing may be stored from the bad peer"
    );
    let honest = honest_peer(TIP).await;
    honest.connect_and_claim(&node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;
    assert_stores_honest_chain(&node, TIP).await;
}

// ------------------------------------------------------------------ R4

/// R4.1, R4.2: verified headers and their commits are stored: served back
/// exactly after a restart, and sync continues from them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r4_1_r4_2_stored_headers_survive_restart_with_commits() {
    let mut node = start_node().await;
    let honest = honest_peer(TIP).await;
    honest.connect_and_claim(&node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;
    node.restart().await;
    assert_eq!(
        node.header_height().await,
        TIP,
        "header height after a restart"
    );
    assert_stores_honest_chain(&node, TIP).await;
    honest.set_serve_height(TIP + 50);
    honest.connect_and_claim(&node, TIP + 50).await;
    node.wait_header_height(TIP + 50, DEADLINE).await;
    assert_stores_honest_chain(&node, TIP + 50).await;
}

/// R4.4, R4.5: the header height advances, the block height does not
/// (headers only, no bodies).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r4_4_r4_5_header_height_apart_from_block_height() {
    let node = start_node().await;
    let honest = honest_peer(TIP).await;
    honest.connect_and_claim(&node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;
    let m = node.metrics().await;
    assert_eq!(m.get("headway_header_height"), Some(TIP as f64));
    assert_eq!(
        m.get("headway_block_height"),
        Some(0.0),
        "block height of a header-only node"
    );
}

/// R4.3, R6.1, R6.2: heights with a header but no body: `GetBlocks` returns
/// no block (by range and by hash) and the headers are still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r4_3_r6_1_r6_2_header_only_heights_have_no_block() {
    let node = start_node().await;
    let honest = honest_peer(TIP).await;
    honest.connect_and_claim(&node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;
    let o = observer(&node).await;
    let requests = [
        GetBlocks::ByRange {
            start_height: 2,
            count: 128,
        },
        GetBlocks::ByHash(vec![
            chain().signed_header(200).header.hash(),
            chain().signed_header(TIP).header.hash(),
        ]),
    ];
    for request in requests {
        match o.get_blocks(request.clone()).await {
            Response::Blocks(b) => assert!(
                b.blocks.is_empty(),
                "{request:?} returned {} blocks",
                b.blocks.len()
            ),
            Response::Error(e) if e.code == ErrorCode::NotFound => {}
            other => node.fail(&format!("{request:?}: unexpected {other:?}")),
        }
    }
    let Response::Headers(r) = o.get_headers(200, 1).await else {
        panic!("no headers")
    };
    check_honest_prefix(&r.headers, &chain().headers(), 200).unwrap();
    assert_eq!(r.headers.len(), 1);
}

/// Operators see a long catch-up progress: while behind its peers the node
/// logs, at the interval configured, its height, the target and the rate;
/// once caught up it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_logged_while_behind() {
    let node = TestNode::start(NodeOptions {
        progress_log_ms: Some(100),
        ..NodeOptions::default()
    })
    .await;
    let slow = ScriptedPeer::start(
        serving_slowly(chain().headers(), Duration::from_millis(400)),
        TIP,
    )
    .await;
    slow.connect_and_claim(&node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;
    let logs = node.logs();
    let progress: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("header sync progress"))
        .collect();
    if progress.is_empty() {
        node.fail("no progress line while syncing from a slow peer");
    }
    for line in &progress {
        assert!(
            line.contains(&format!("/{TIP} (")) && line.contains(&format!("target={TIP}")),
            "a progress line without the target: {line}"
        );
        assert!(line.contains("headers/s"), "no rate: {line}");
    }
    // Caught up: no more progress lines (a tick is 250 ms).
    let before = progress.len();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let after = node
        .logs()
        .lines()
        .filter(|l| l.contains("header sync progress"))
        .count();
    assert_eq!(after, before, "progress was logged after catching up");
}

// ------------------------------------------------------------------ R5 (library level)

/// A header sync reactor on a temporary store, wired to a transport the way
/// the node wires it; returns its handle and its transport.
async fn reactor() -> (HeaderSync, Network, Store) {
    let store = Store::open_temporary(StoreConfig::new()).unwrap();
    store
        .save_headers(std::slice::from_ref(chain().genesis()))
        .unwrap();
    let config = NetConfig {
        request_timeout: Duration::from_secs(1),
        ..NetConfig::default()
    };
    let (net, mut events) = Network::start(NodeKey::generate(), config, Vec::new())
        .await
        .unwrap();
    let (hs, _task) = HeaderSync::spawn(
        net.clone(),
        store.clone(),
        Some(chain().trusted_genesis()),
        ReactorConfig::default(),
    );
    let inputs = hs.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                NetEvent::Connected { peer, greeted, .. } => {
                    inputs
                        .input(HeaderSyncInput::Connected { peer, greeted })
                        .await
                }
                NetEvent::Disconnected { peer, .. } => {
                    inputs.input(HeaderSyncInput::Disconnected(peer)).await
                }
                NetEvent::Push {
                    peer,
                    push: Push::Status(s),
                } => inputs.input(HeaderSyncInput::Status(peer, s)).await,
                _ => {}
            }
        }
    });
    (hs, net, store)
}

/// R5.1, R5.2: a subscriber receives every verified header, in height order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r5_1_r5_2_subscription_delivers_in_order() {
    let (hs, net, _store) = reactor().await;
    let mut sub = hs.subscribe(2);
    let honest = honest_peer(TIP).await;
    honest
        .connect_and_claim_to(net.peer_id(), net.local_addr().unwrap(), TIP)
        .await;
    for h in 2..=TIP {
        let got = tokio::time::timeout(DEADLINE, sub.next())
            .await
            .expect("a header in time")
            .unwrap();
        assert_eq!(got.header.height, h);
        assert_eq!(&got, chain().signed_header(h));
    }
}

/// R5.3 (NOTES hole 8): a subscriber that reads nothing until sync has
/// finished still gets every header, in order, and did not hold sync back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r5_3_slow_subscriber_gets_every_header() {
    let (hs, net, _store) = reactor().await;
    let mut slow = hs.subscribe(1);
    let honest = honest_peer(CHAIN_LEN).await;
    honest
        .connect_and_claim_to(net.peer_id(), net.local_addr().unwrap(), CHAIN_LEN)
        .await;
    let mut height = hs.height_watch();
    tokio::time::timeout(DEADLINE, height.wait_for(|h| *h >= CHAIN_LEN))
        .await
        .expect("sync finished")
        .unwrap();
    for h in 1..=CHAIN_LEN {
        let got = tokio::time::timeout(DEADLINE, slow.next())
            .await
            .expect("a header in time")
            .unwrap();
        assert_eq!(got.header.height, h, "lost or reordered header");
        if h % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

// ------------------------------------------------------------------ R6

/// R6.3: a node with headers but no blocks serves them: a second node syncs
/// its headers from the first alone, including headers the first gets later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r6_3_header_only_node_serves_headers_to_another_node() {
    let first = start_node().await;
    let honest = honest_peer(TIP).await;
    honest.connect_and_claim(&first, TIP).await;
    first.wait_header_height(TIP, DEADLINE).await;
    let second = TestNode::start(NodeOptions {
        bootstrap: vec![(first.peer_id(), first.addr())],
        ..NodeOptions::default()
    })
    .await;
    // The first node announces TIP - 1 to a new peer (R1.5); see
    // `r1_5_peer_connecting_after_sync_learns_the_tip` for the last header.
    second.wait_header_height(TIP - 1, DEADLINE).await;
    honest.set_serve_height(TIP + 50);
    honest.push_status(1, TIP + 50);
    first.wait_header_height(TIP + 50, DEADLINE).await;
    second.wait_header_height(TIP + 50, DEADLINE).await;
    assert_stores_honest_chain(&second, TIP + 50).await;
    assert_eq!(
        second.metrics().await.get("headway_block_height"),
        Some(0.0)
    );
}

/// R1.3 with R1.5: a peer that connects after the node finished syncing is
/// told `height - 1` first; it must still learn the real height without
/// waiting for the chain to advance, or a new node can never get the last
/// header of an idle chain from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_5_peer_connecting_after_sync_learns_the_tip() {
    let node = start_node().await;
    let honest = honest_peer(TIP).await;
    honest.connect_and_claim(&node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;
    let o = observer(&node).await;
    o.wait_status(|s| s.height == TIP, DEADLINE).await;
}

/// R6.4 (see the module docs): while syncing, the node keeps answering
/// `GetHeaders` and serving metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r6_4_keeps_serving_while_syncing() {
    let node = start_node().await;
    let slow = ScriptedPeer::start(
        serving_slowly(chain().headers(), Duration::from_millis(700)),
        TIP,
    )
    .await;
    slow.connect_and_claim(&node, TIP).await;
    slow.wait_requests(1, DEADLINE).await;
    let o = observer(&node).await;
    let before = node.header_height().await;
    let Response::Headers(r) = o.get_headers(1, 10).await else {
        panic!("no headers while syncing")
    };
    assert!(!r.headers.is_empty());
    let m = node.metrics().await;
    assert!(
        before < TIP,
        "the node finished before the check ({before}); the test did not test anything"
    );
    assert!(m.get("headway_header_height").is_some());
    node.wait_header_height(TIP, DEADLINE).await;
}

// ------------------------------------------------------------------ R7

/// R7.1: per-peer statistics steer work to the faster peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r7_1_prefers_the_faster_peer() {
    let node = start_node().await;
    let slow = ScriptedPeer::start(
        serving_slowly(chain().headers(), Duration::from_millis(500)),
        CHAIN_LEN,
    )
    .await;
    slow.connect_and_claim(&node, CHAIN_LEN).await;
    let fast = honest_peer(CHAIN_LEN).await;
    fast.connect_and_claim(&node, CHAIN_LEN).await;
    node.wait_header_height(CHAIN_LEN, DEADLINE).await;
    let (f, s) = (fast.record().requests.len(), slow.record().requests.len());
    assert!(f > s, "fast peer asked {f} times, slow peer {s} times");
}

/// R7.2: a peer that never answers times out; the work moves to another
/// peer and the silent one gets nothing new while others can serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r7_2_silent_peer_times_out_and_work_moves() {
    let node = start_node().await;
    let quiet = ScriptedPeer::start(silent(), TIP).await;
    quiet.connect_and_claim(&node, TIP).await;
    quiet.wait_requests(1, DEADLINE).await;
    node.wait_metric("headway_headersync_timeouts_total", |v| v >= 1.0, DEADLINE)
        .await;
    let asked_before = quiet.record().requests.len();
    let honest = honest_peer(TIP).await;
    honest.connect_and_claim(&node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;
    assert_stores_honest_chain(&node, TIP).await;
    let asked_after = quiet.record().requests.len() - asked_before;
    assert!(
        asked_after <= 1,
        "the timed-out peer was asked {asked_after} more times: {}",
        quiet.summary()
    );
}

/// R7.3: a peer that sends invalid data is banned, refused while banned,
/// and banned again when it comes back and does it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r7_3_repeat_offender_banned_again() {
    let ban_seconds = 2;
    let node = TestNode::start(NodeOptions {
        ban_seconds,
        ..NodeOptions::default()
    })
    .await;
    let script = serving_edited(chain().headers(), |hs| {
        if let Some(last) = hs.last_mut() {
            break_all_signatures(last);
        }
    });
    let bad = ScriptedPeer::start(script, TIP).await;
    bad.connect_and_claim(&node, TIP).await;
    let first = bad.wait_banned(DEADLINE).await;
    assert!(bad.reconnect().await.is_some(), "refused while banned");
    let until = first.at + Duration::from_secs(ban_seconds) + Duration::from_millis(500);
    tokio::time::sleep_until(until.into()).await;
    let (asked, bans) = (bad.record().requests.len(), bad.record().bans());
    bad.connect(&node).await;
    let record = wait_for_bans(&bad, bans + 1).await;
    assert!(
        record.requests.len() > asked,
        "the node did not talk to the peer after its ban expired"
    );
    assert!(node.metrics().await.value("headway_headersync_bans_total") >= 2.0);
    let honest = honest_peer(TIP).await;
    honest.connect_and_claim(&node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;
    assert_stores_honest_chain(&node, TIP).await;
}

async fn wait_for_bans(p: &ScriptedPeer, n: usize) -> peer::PeerRecord {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let r = p.record();
        if r.bans() >= n {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} bans: {}",
            p.summary()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// NOTES hole 6: a peer claiming height i64::MAX (and serving the real
/// chain) cannot hold the sync target: the node finishes and stops syncing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn height_poisoning_does_not_stall_sync() {
    poisoning(serving(chain().headers())).await;
}

/// NOTES hole 6, R7.2: the same with a peer that is silent above the real tip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn height_poisoning_by_silent_peer_does_not_stall_sync() {
    let headers = chain().headers();
    let script: Script = Arc::new(move |q: &GetHeaders, up_to: u64| {
        if q.start_height > up_to {
            Reply::Silent
        } else {
            Reply::Headers(slice(&headers, q, up_to))
        }
    });
    poisoning(script).await;
}

async fn poisoning(script: Script) {
    let node = start_node().await;
    let liar = ScriptedPeer::start(script, TIP).await;
    liar.connect_and_claim(&node, i64::MAX as u64).await;
    let honest = honest_peer(TIP).await;
    honest.connect_and_claim(&node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;
    node.wait_metric("headway_headersync_syncing", |v| v == 0.0, DEADLINE)
        .await;
    assert_eq!(node.header_height().await, TIP);
    assert_stores_honest_chain(&node, TIP).await;
    assert!(honest.record().ban().is_none());
}

// ------------------------------------------------------------------ R8

/// R8.1: the header sync metrics are exposed and describe the sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r8_1_metrics_exposed() {
    let node = start_node().await;
    let honest = honest_peer(TIP).await;
    honest.connect_and_claim(&node, TIP).await;
    node.wait_header_height(TIP, DEADLINE).await;
    node.wait_metric("headway_headersync_syncing", |v| v == 0.0, DEADLINE)
        .await;
    let m = node.metrics().await;
    let missing: Vec<&str> = REQUIRED_METRICS
        .iter()
        .copied()
        .filter(|n| m.get(n).is_none())
        .collect();
    assert!(missing.is_empty(), "missing metrics: {missing:?}");
    assert!(
        m.0.keys().any(|k| k.starts_with("headway_net_")),
        "no transport metrics"
    );
    assert_eq!(m.value("headway_header_height"), TIP as f64);
    assert!(m.value("headway_headersync_headers_synced_total") >= (TIP - 1) as f64);
    assert!(m.value("headway_headersync_peers") >= 1.0);
    assert_eq!(m.value("headway_headersync_pending_requests"), 0.0);
}

/// R8.2: peer problems and verification failures are logged, naming the
/// peer (its id or the id's first 8 hex digits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r8_2_logs_peer_problems() {
    let node = start_node().await;
    let bad = ScriptedPeer::start(
        serving_edited(chain().headers(), |hs| {
            if let Some(last) = hs.last_mut() {
                break_all_signatures(last);
            }
        }),
        TIP,
    )
    .await;
    bad.connect_and_claim(&node, TIP).await;
    bad.wait_banned(DEADLINE).await;
    let quiet = ScriptedPeer::start(silent(), TIP).await;
    quiet.connect_and_claim(&node, TIP).await;
    node.wait_metric("headway_headersync_timeouts_total", |v| v >= 1.0, DEADLINE)
        .await;
    let bad_id = bad.id().short();
    let quiet_id = quiet.id().short();
    let logs = headway_conformance::wait::until_value(
        "the log lines",
        DEADLINE,
        || async { node.logs().to_lowercase() },
        |logs| {
            let lines: Vec<&str> = logs.lines().collect();
            let has = |id: &str, words: &[&str]| {
                lines
                    .iter()
                    .any(|l| l.contains(id) && words.iter().any(|w| l.contains(w)))
            };
            has(&bad_id, &["ban"])
                && has(&bad_id, &["verif", "invalid"])
                && has(&quiet_id, &["timed out", "timeout"])
        },
    )
    .await;
    if let Err(e) = logs {
        node.fail(&format!("{e:.200}: expected a ban and a verification failure naming {bad_id}, a timeout naming {quiet_id}"));
    }
}
