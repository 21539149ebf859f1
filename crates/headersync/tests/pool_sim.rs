//! The header sync pool against many simulated peers, with virtual time.
//!
//! Each test builds a generated chain (with validator-set rotations and an
//! abrupt replacement of the whole set), runs the pool against a mix of
//! honest and adversarial peers, and checks what the pool did: whom it
//! banned, that it verified every header in order, and that it finished
//! from the honest peers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is the assertion"
)]

use std::{
    cmp::Reverse,
    collections::{BTreeSet, BinaryHeap, HashMap},
    time::{Duration, Instant},
};

use headway_chain::{ChainGenerator, Corruption, GeneratedBlock, GeneratorConfig};
use headway_headersync::{HeaderSyncPool, PoolConfig, PoolEvent, RequestFailure};
use headway_wire::{GetHeaders, HeadersResponse, SignedHeader, StatusResponse};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    /// Serves the chain up to `height`.
    Honest { height: u64 },
    /// Claims the chain height but never answers.
    Silent,
    /// Claims an enormous height (u64::MAX / 2) and answers honestly up to the real tip.
    Poisoner,
    /// Serves batches whose last commit has a bad signature.
    BadSignature,
    /// Serves forged batches: a header in the middle is forged, the last one is real.
    ForgedMiddle,
    /// Serves batches where the attached validator set is not the header's.
    WrongValidatorSet,
    /// Honest, but answers BUSY to every other request.
    SometimesBusy,
    /// Honest, one header an answer (each answer splits its batch).
    OneHeader,
}

struct SimPeer {
    behaviour: Behaviour,
    latency: Duration,
    served: u64,
}

enum Delivery {
    Headers(u32, HeadersResponse),
    Failed(u32, u64, RequestFailure),
}

struct Sim {
    pool: HeaderSyncPool<u32>,
    chain: Vec<GeneratedBlock>,
    generator: ChainGenerator,
    peers: HashMap<u32, SimPeer>,
    start: Instant,
    now: Instant,
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    deliveries: Vec<Option<Delivery>>,
    seq: u64,
    stored: Vec<SignedHeader>,
    banned: BTreeSet<u32>,
    ban_reasons: HashMap<u32, String>,
    timed_out: BTreeSet<u32>,
}

fn chain(len: usize) -> (Vec<GeneratedBlock>, ChainGenerator) {
    let config = GeneratorConfig {
        replace_all_at: vec![len as u64 / 2],
        ..GeneratorConfig::small(42)
    };
    let mut generator = ChainGenerator::new(config).unwrap();
    let blocks: Vec<_> = generator.by_ref().take(len).collect();
    (blocks, generator)
}

impl Sim {
    fn new(len: usize, config: PoolConfig) -> Sim {
        let (chain, generator) = chain(len);
        let start = Instant::now();
        Sim {
            pool: HeaderSyncPool::new(chain[0].trusted_state(), config),
            chain,
            generator,
            peers: HashMap::new(),
            start,
            now: start,
            queue: BinaryHeap::new(),
            deliveries: Vec::new(),
            seq: 0,
            stored: Vec::new(),
            banned: BTreeSet::new(),
            ban_reasons: HashMap::new(),
            timed_out: BTreeSet::new(),
        }
    }

    fn tip(&self) -> u64 {
        self.chain.len() as u64
    }

    fn add(&mut self, id: u32, behaviour: Behaviour, latency_ms: u64) {
        self.peers.insert(
            id,
            SimPeer {
                behaviour,
                latency: Duration::from_millis(latency_ms),
                served: 0,
            },
        );
        let height = match behaviour {
            Behaviour::Honest { height } => height,
            Behaviour::Poisoner => u64::MAX / 2,
            _ => self.tip(),
        };
        // R1.5: a peer first reports height - 1, then its height.
        self.pool
            .on_status(id, StatusResponse::new(1, height - 1), self.now);
        self.pool
            .on_status(id, StatusResponse::new(1, height), self.now);
    }

    fn schedule(&mut self, after: Duration, delivery: Delivery) {
        self.seq += 1;
        self.deliveries.push(Some(delivery));
        self.queue.push(Reverse((
            self.now + after,
            self.seq,
            self.deliveries.len() - 1,
        )));
    }

    fn answer(&mut self, peer: u32, request: GetHeaders) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.served += 1;
        let (behaviour, latency, served) = (p.behaviour, p.latency, p.served);
        let start = request.start_height;
        let end = (start + u64::from(request.count) - 1).min(self.tip());
        let mut headers: Vec<SignedHeader> = if start <= self.tip() {
            (start..=end)
                .map(|h| self.chain[h as usize - 1].signed_header.clone())
                .collect()
        } else {
            vec![]
        };
        let corrupt_last = |sim: &Sim, headers: &mut Vec<SignedHeader>, kind| {
            if let Some(last) = headers.last_mut() {
                let block = &sim.chain[last.header.height as usize - 1];
                *last = sim.generator.corrupt(block, kind).signed_header;
            }
        };
        match behaviour {
            Behaviour::Silent => return,
            Behaviour::Honest { height } => headers.retain(|h| h.header.height <= height),
            Behaviour::OneHeader => headers.truncate(1),
            Behaviour::Poisoner => {}
            Behaviour::BadSignature => corrupt_last(self, &mut headers, Corruption::BadSignature),
            Behaviour::WrongValidatorSet => {
                // Attach a wrong set where the set really changes (or to the last header).
                let at = headers
                    .iter()
                    .position(|h| h.validator_set.is_some())
                    .unwrap_or(headers.len().saturating_sub(1));
                if let Some(h) = headers.get_mut(at) {
                    let block = &self.chain[h.header.height as usize - 1];
                    *h = self
                        .generator
                        .corrupt(block, Corruption::WrongValidatorSet)
                        .signed_header;
                }
            }
            Behaviour::ForgedMiddle => {
                if headers.len() >= 3 {
                    let mid = headers.len() / 2;
                    let block = &self.chain[headers[mid].header.height as usize - 1];
                    headers[mid] = self
                        .generator
                        .corrupt(block, Corruption::ForgedLinkage)
                        .signed_header;
                }
            }
            Behaviour::SometimesBusy => {
                if served % 2 == 0 {
                    let retry_after = Duration::from_millis(20);
                    self.schedule(
                        latency,
                        Delivery::Failed(peer, start, RequestFailure::Busy { retry_after }),
                    );
                    return;
                }
            }
        }
        self.schedule(
            latency,
            Delivery::Headers(
                peer,
                HeadersResponse {
                    start_height: start,
                    headers,
                },
            ),
        );
    }

    fn drain(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(event) = self.pool.poll_event() {
                progressed = true;
                match event {
                    PoolEvent::Verified { headers, .. } => {
                        self.stored
                            .extend(headers.into_iter().map(headway_chain::Hashed::into_inner));
                    }
                    PoolEvent::Ban { peer, reason, .. } => {
                        self.banned.insert(peer);
                        self.ban_reasons.insert(peer, reason);
                    }
                    PoolEvent::TimedOut { peer, .. } => {
                        self.timed_out.insert(peer);
                    }
                    PoolEvent::VerificationFailed { .. } => {}
                }
            }
            while let Some((peer, request)) = self.pool.poll_request(self.now) {
                progressed = true;
                assert!(request.count >= 1 && request.count <= 50, "R2.2");
                assert!(
                    !self.banned.contains(&peer),
                    "requests never go to banned peers"
                );
                self.answer(peer, request);
            }
            if !progressed {
                return;
            }
        }
    }

    /// Runs until every header is verified or `limit` of virtual time passes.
    fn run(&mut self, limit: Duration) {
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps < 1_000_000, "simulation did not converge");
            self.drain();
            if self.pool.header_height() == self.tip() && !self.pool.is_syncing() {
                return;
            }
            let next_delivery = self.queue.peek().map(|Reverse((t, _, _))| *t);
            let next = match (next_delivery, self.pool.next_deadline()) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => return,
            };
            if next.saturating_duration_since(self.start) > limit {
                return;
            }
            self.now = self.now.max(next);
            while let Some(Reverse((t, _, i))) = self.queue.peek().copied() {
                if t > self.now {
                    break;
                }
                self.queue.pop();
                match self.deliveries[i].take() {
                    Some(Delivery::Headers(peer, response)) if !self.banned.contains(&peer) => {
                        self.pool.on_headers(peer, response, self.now);
                    }
                    Some(Delivery::Failed(peer, start, failure))
                        if !self.banned.contains(&peer) =>
                    {
                        self.pool.on_request_failed(peer, start, failure, self.now);
                    }
                    _ => {}
                }
            }
            self.pool.on_tick(self.now);
        }
    }

    fn assert_complete_and_in_order(&self) {
        assert_eq!(self.pool.header_height(), self.tip());
        assert_eq!(
            self.stored.len() as u64,
            self.tip() - 1,
            "every header after the trusted one, once"
        );
        for (i, h) in self.stored.iter().enumerate() {
            assert_eq!(
                h,
                &self.chain[i + 1].signed_header,
                "R5.2: in order, and exactly the real chain"
            );
        }
        assert!(!self.pool.is_syncing());
    }
}

#[test]
fn syncs_from_several_honest_peers_across_rotations_and_a_full_replacement() {
    let mut sim = Sim::new(400, PoolConfig::default());
    for id in 0..4 {
        sim.add(id, Behaviour::Honest { height: 400 }, 5 + u64::from(id) * 7);
    }
    sim.run(Duration::from_secs(60));
    sim.assert_complete_and_in_order();
    assert!(sim.banned.is_empty());
    assert!(sim.timed_out.is_empty());
    // R2.5: work was spread over every peer.
    for id in 0..4 {
        assert!(
            sim.pool.peer_stats(&id).unwrap().batches_ok > 0,
            "peer {id} served nothing"
        );
    }
}

#[test]
fn faster_peers_get_more_work() {
    let mut sim = Sim::new(
        600,
        PoolConfig {
            max_inflight_per_peer: 2,
            ..PoolConfig::default()
        },
    );
    sim.add(1, Behaviour::Honest { height: 600 }, 2);
    sim.add(2, Behaviour::Honest { height: 600 }, 80);
    sim.run(Duration::from_secs(60));
    sim.assert_complete_and_in_order();
    let fast = sim.pool.peer_stats(&1).unwrap().batches_ok;
    let slow = sim.pool.peer_stats(&2).unwrap().batches_ok;
    assert!(fast > slow * 2, "R7.1: fast {fast} vs slow {slow}");
}

#[test]
fn adversaries_are_banned_and_sync_finishes_from_honest_peers() {
    let mut sim = Sim::new(300, PoolConfig::default());
    sim.add(1, Behaviour::Honest { height: 300 }, 20);
    sim.add(2, Behaviour::BadSignature, 1);
    sim.add(3, Behaviour::ForgedMiddle, 1);
    sim.add(4, Behaviour::WrongValidatorSet, 1);
    sim.add(5, Behaviour::Honest { height: 300 }, 30);
    sim.run(Duration::from_secs(120));
    sim.assert_complete_and_in_order();
    assert_eq!(
        sim.banned,
        BTreeSet::from([2, 3, 4]),
        "{:?}",
        sim.ban_reasons
    );
    assert!(sim.ban_reasons[&2].contains("invalid headers"));
    assert!(sim.pool.counters().verification_failures >= 3);
}

#[test]
fn silent_peer_times_out_and_work_moves_to_others() {
    let config = PoolConfig {
        request_timeout: Duration::from_secs(2),
        ..PoolConfig::default()
    };
    let mut sim = Sim::new(200, config);
    sim.add(1, Behaviour::Silent, 1);
    sim.add(2, Behaviour::Honest { height: 200 }, 10);
    sim.run(Duration::from_secs(120));
    sim.assert_complete_and_in_order();
    assert!(
        sim.timed_out.contains(&1),
        "R7.2: the silent peer is marked timed out"
    );
    assert!(!sim.timed_out.contains(&2), "the honest peer never is");
    assert!(sim.pool.is_timed_out(&1));
}

#[test]
fn height_poisoning_does_not_stall_sync() {
    let config = PoolConfig {
        request_timeout: Duration::from_secs(2),
        ..PoolConfig::default()
    };
    let mut sim = Sim::new(150, config);
    sim.add(1, Behaviour::Poisoner, 1);
    sim.add(2, Behaviour::Honest { height: 150 }, 10);
    sim.run(Duration::from_secs(120));
    sim.assert_complete_and_in_order();
    // Its claim was cut back to what it could serve: nothing holds the target up.
    assert_eq!(sim.pool.target_height(), 150);
    assert!(!sim.pool.is_syncing());
}

#[test]
fn silent_height_poisoner_does_not_keep_the_node_syncing() {
    let config = PoolConfig {
        request_timeout: Duration::from_secs(2),
        ..PoolConfig::default()
    };
    let mut sim = Sim::new(100, config);
    sim.add(2, Behaviour::Honest { height: 100 }, 10);
    sim.run(Duration::from_secs(60));
    // A peer claims a huge height and never answers.
    sim.peers.insert(
        9,
        SimPeer {
            behaviour: Behaviour::Silent,
            latency: Duration::from_millis(1),
            served: 0,
        },
    );
    sim.pool
        .on_status(9, StatusResponse::new(1, u64::MAX / 2), sim.now);
    assert!(sim.pool.is_syncing());
    sim.run(Duration::from_secs(120));
    sim.drain();
    assert!(sim.timed_out.contains(&9));
    assert!(
        !sim.pool.is_syncing(),
        "a timed-out claim does not count towards the target"
    );
    assert_eq!(sim.pool.header_height(), 100);
}

#[test]
fn busy_answers_pause_without_timeouts() {
    let mut sim = Sim::new(300, PoolConfig::default());
    sim.add(1, Behaviour::SometimesBusy, 5);
    sim.add(2, Behaviour::SometimesBusy, 5);
    sim.run(Duration::from_secs(60));
    sim.assert_complete_and_in_order();
    assert!(
        sim.timed_out.is_empty(),
        "hole 5: BUSY never becomes a timeout"
    );
    assert!(sim.banned.is_empty());
}

#[test]
fn status_regression_and_repetition_ban() {
    let mut sim = Sim::new(20, PoolConfig::default());
    let now = sim.now;
    sim.pool.on_status(1, StatusResponse::new(1, 10), now);
    sim.pool.on_status(1, StatusResponse::new(1, 10), now);
    sim.pool.on_status(2, StatusResponse::new(1, 10), now);
    sim.pool.on_status(2, StatusResponse::new(1, 9), now);
    sim.pool.on_status(3, StatusResponse::new(1, 9), now);
    sim.pool.on_status(3, StatusResponse::new(1, 10), now);
    sim.drain();
    assert_eq!(
        sim.banned,
        BTreeSet::from([1, 2]),
        "R1.4: same or lower height bans; higher does not"
    );
}

#[test]
fn pending_batches_stay_bounded_with_a_stalled_head() {
    // The peer serving the first batch is silent; others serve everything
    // else fast. Buffered batches never exceed the bound (R2.6).
    let config = PoolConfig {
        max_pending_batches: 8,
        request_timeout: Duration::from_secs(5),
        ..PoolConfig::default()
    };
    let mut sim = Sim::new(2000, config);
    sim.add(0, Behaviour::Silent, 1);
    for id in 1..4 {
        sim.add(id, Behaviour::Honest { height: 2000 }, 3);
    }
    for _ in 0..50 {
        sim.drain();
        assert!(sim.pool.pending_batches() <= 8);
        sim.run(Duration::from_millis(100));
    }
    sim.run(Duration::from_secs(600));
    sim.assert_complete_and_in_order();
}

/// Partial answers split batches, and the batch count bounded the headers
/// waiting for a stalled head only by the window's heights: peers answering
/// one header at a time, and claiming the rest again by ever higher
/// statuses, filled the window behind a silent head. The buffered bytes are
/// bounded by `max_buffered_bytes` (plus the answers in flight).
#[test]
fn buffered_headers_stay_under_the_byte_bound_when_answers_split_batches() {
    const BOUND: usize = 64 * 1024;
    let config = PoolConfig {
        max_buffered_bytes: BOUND,
        request_timeout: Duration::from_secs(5),
        ..PoolConfig::default()
    };
    let mut sim = Sim::new(2000, config);
    sim.add(0, Behaviour::Silent, 1);
    for id in 1..4 {
        sim.add(id, Behaviour::OneHeader, 3);
    }
    let mut most = 0;
    for round in 0..50u64 {
        // A partial answer cuts a peer's claim to what it sent; these push
        // ever higher statuses to claim the rest again.
        for id in 1..4 {
            sim.pool
                .on_status(id, StatusResponse::new(1, sim.tip() + round + 1), sim.now);
        }
        sim.drain();
        most = most.max(sim.pool.buffered_bytes());
        sim.run(Duration::from_millis(100));
    }
    // In flight past the bound: 3 peers x 4 requests of one header (without
    // the bound, 131 KB here: the whole window).
    assert!(most <= BOUND + 12 * 4096, "{most} bytes buffered");
    assert!(most >= BOUND / 2, "the bound was reached: {most}");
}

/// A slow honest peer's answer arriving after its request timed out, when
/// the batch went meanwhile to a peer with fewer headers (and so was cut
/// shorter), held more headers than the batch now asks for: it counted as
/// an empty answer (a strike, three of which ban), cut the peer's height
/// and dropped the new holder's request. Its first headers are taken now.
#[test]
fn a_late_answer_to_a_batch_cut_shorter_since_is_taken_not_struck() {
    let (chain, _) = chain(200);
    let config = PoolConfig {
        request_timeout: Duration::from_secs(1),
        ..PoolConfig::default()
    };
    let mut pool = HeaderSyncPool::new(chain[0].trusted_state(), config);
    let t0 = Instant::now();
    let claim = |pool: &mut HeaderSyncPool<u32>, peer: u32, height: u64| {
        assert!(pool.add_peer(peer));
        pool.on_status(peer, StatusResponse::new(1, height - 1), t0);
        pool.on_status(peer, StatusResponse::new(1, height), t0);
    };
    claim(&mut pool, 1, 200);
    let mut asked = Vec::new();
    while let Some((peer, q)) = pool.poll_request(t0) {
        asked.push((peer, q));
    }
    let first = asked[0].1;
    assert_eq!((asked[0].0, first.start_height, first.count), (1, 2, 50));
    // Every request to peer 1 times out.
    let t1 = t0 + Duration::from_secs(2);
    pool.on_tick(t1);
    claim(&mut pool, 2, 30);
    let mut to_two = None;
    while let Some((peer, q)) = pool.poll_request(t1) {
        if peer == 2 && q.start_height == 2 {
            to_two = Some(q);
        }
    }
    let to_two = to_two.expect("the first batch goes to peer 2");
    assert_eq!(to_two.count, 29, "cut to what peer 2 has");
    // Peer 1's late answer to its 50-header request.
    let late: Vec<SignedHeader> = (2..=51)
        .map(|h| chain[h - 1].signed_header.clone())
        .collect();
    pool.on_headers(
        1,
        HeadersResponse {
            start_height: 2,
            headers: late,
        },
        t1,
    );
    let mut verified = Vec::new();
    while let Some(event) = pool.poll_event() {
        match event {
            PoolEvent::Verified { headers, .. } => {
                verified.extend(headers.iter().map(|h| h.value().header.height));
            }
            PoolEvent::Ban { peer, reason, .. } => panic!("peer {peer} banned: {reason}"),
            _ => {}
        }
    }
    assert_eq!(verified, (2..=30).collect::<Vec<_>>());
    assert_eq!(pool.header_height(), 30);
}
