//! The contenders and the probes that explain them.
//!
//! Every contender is an `async fn run_*(env, scenario, …) -> RunOutput`
//! with the same inputs (the cached chain, `scenario.peers` serving peers,
//! `scenario.one_way_delay` added by the delay shim) and the same output
//! (the time to reach the tip and the header height sampled every
//! [`SAMPLE_EVERY`]). Each run syncs into a fresh temporary store holding
//! only the genesis, configured as a syncing node configures it (durable
//! commits).
//!
//! Probes (no contender, one cost each): [`verification_bound`] (verify only,
//! one thread, no I/O), [`store_only`] (the reactor's store writes alone) and
//! [`fetch_only`] and [`fetch_only_v2`] (the same requests over the same
//! transport, answers dropped).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use headway_chain::{HashedCompact, verify_batch};
use headway_headersync::{
    HeaderSync, HeaderSyncInput, ParallelConfig, ReactorConfig, SyncMode,
    v2::{verify_compact_range, verify_range},
    writer::MAX_WRITE_HEADERS,
};
use headway_net::{NetEvent, Network, NodeKey, PeerId};
use headway_store::{Store, StoreConfig};
use headway_wire::{
    CompactHeaders, ErrorCode, GetHeaders, GetHeadersV2, Hash, HeadersV2Response, HeadersV2Result,
    ProofKind, Push, Request, Response,
};
use tokio::{runtime::Handle, task::JoinHandle};

use crate::{
    cache::Chain,
    peers::{self, ServingPeer},
};
use headway_net::testing::DelayRelay;

/// How often the header height is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// A run that has not reached the tip after this long is cut off (and reported as such).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(240);

/// What every contender gets: the chain and where serving peers and relays run.
pub struct Env {
    /// The chain under test.
    pub chain: Arc<Chain>,
    /// Runtime of the serving peers (apart from the client's, so profiles tell them apart).
    pub servers: Handle,
    /// Runtime of the delay relays.
    pub relays: Handle,
}

/// Peers and network of one run.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Serving peers.
    pub peers: usize,
    /// Delay added in each direction (round trip gains twice this).
    pub one_way_delay: Duration,
    /// `GetHeaders` each serving peer allows one client per sliding second.
    pub get_headers_per_second: usize,
}

/// What every contender returns.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// From the first dial to the tip stored (or to the cut-off).
    pub duration: Duration,
    /// Headers synced (tip − 1 when complete).
    pub synced: u64,
    /// True when the tip was reached.
    pub complete: bool,
    /// `(seconds since the first dial, header height)` every [`SAMPLE_EVERY`], and at the end.
    pub series: Vec<(f64, u64)>,
    /// Counters worth printing: timeouts, bans, refusals, …
    pub counters: Vec<(&'static str, u64)>,
}

impl RunOutput {
    /// Headers per second.
    pub fn rate(&self) -> f64 {
        self.synced as f64 / self.duration.as_secs_f64()
    }
}

/// The serving side of one run: peers, and their relays when delayed.
struct Servers {
    peers: Vec<ServingPeer>,
    relays: Vec<DelayRelay>,
    /// `(peer id, address to dial)`.
    dial: Vec<(PeerId, SocketAddr)>,
}

impl Servers {
    async fn start(env: &Env, scenario: Scenario) -> Servers {
        let mut peers = Vec::new();
        for _ in 0..scenario.peers {
            let (store, tip, rate) = (
                env.chain.store.clone(),
                env.chain.tip,
                scenario.get_headers_per_second,
            );
            let peer = env
                .servers
                .spawn(ServingPeer::start(store, tip, rate))
                .await
                .expect("serving peer task");
            peers.push(peer);
        }
        let mut relays = Vec::new();
        let mut dial = Vec::new();
        for peer in &peers {
            if scenario.one_way_delay.is_zero() {
                dial.push((peer.id, peer.addr));
            } else {
                let relay = env
                    .relays
                    .spawn(DelayRelay::start(peer.addr, scenario.one_way_delay))
                    .await
                    .expect("relay task")
                    .expect("starting a delay relay");
                dial.push((peer.id, relay.addr));
                relays.push(relay);
            }
        }
        Servers {
            peers,
            relays,
            dial,
        }
    }

    fn rate_limited(&self) -> u64 {
        self.peers
            .iter()
            .map(|p| p.rate_limited.load(Ordering::Relaxed))
            .sum()
    }

    fn dropped(&self) -> u64 {
        self.relays
            .iter()
            .map(|r| r.dropped.load(Ordering::Relaxed))
            .sum()
    }

    async fn shutdown(self, env: &Env) {
        drop(self.relays);
        let mut closing = Vec::new();
        for peer in self.peers {
            closing.push(env.servers.spawn(peer.shutdown()));
        }
        for c in closing {
            let _ = c.await;
        }
    }
}

/// A fresh client: a temporary durable store holding only the genesis, and a transport.
async fn client(env: &Env) -> (Store, Network, tokio::sync::mpsc::Receiver<NetEvent>) {
    let genesis = env.chain.headers[0].clone();
    let store = tokio::task::spawn_blocking(move || {
        let store = Store::open_temporary(StoreConfig::new()).expect("temporary client store");
        store.save_headers(&[genesis]).expect("storing the genesis");
        store
    })
    .await
    .expect("client store task");
    let (net, events) = Network::start(NodeKey::generate(), peers::net_config(), vec![])
        .await
        .expect("client transport");
    (store, net, events)
}

/// Header sync v1: the reactor's batch pool (seed 003) from genesis.
pub async fn run_v1(env: &Env, scenario: Scenario, config: ReactorConfig) -> RunOutput {
    let config = ReactorConfig {
        mode: SyncMode::V1,
        ..config
    };
    run_reactor(env, scenario, config).await
}

/// Header sync v2: the same reactor in `SyncMode::V2` (gather statuses,
/// checkpoint bootstrap by bisection from genesis to the peers' tip, parallel
/// MMR-proven ranges, then v1 from the tip).
pub async fn run_v2(
    env: &Env,
    scenario: Scenario,
    config: ReactorConfig,
    parallel: ParallelConfig,
) -> RunOutput {
    let config = ReactorConfig {
        mode: SyncMode::V2(parallel),
        ..config
    };
    run_reactor(env, scenario, config).await
}

/// `HeaderSync` wired as the node wires it, syncing from genesis.
async fn run_reactor(env: &Env, scenario: Scenario, config: ReactorConfig) -> RunOutput {
    let servers = Servers::start(env, scenario).await;
    let (store, net, mut events) = client(env).await;
    let (sync, task) = HeaderSync::spawn(
        net.clone(),
        store.clone(),
        Some(env.chain.genesis.clone()),
        config,
    );
    // The node's dispatch, reduced to what header sync needs.
    let pump: JoinHandle<()> = tokio::spawn({
        let sync = sync.clone();
        async move {
            while let Some(event) = events.recv().await {
                match event {
                    NetEvent::Connected { peer, greeted, .. } => {
                        sync.input(HeaderSyncInput::Connected { peer, greeted })
                            .await
                    }
                    NetEvent::Disconnected { peer, .. } => {
                        sync.input(HeaderSyncInput::Disconnected(peer)).await
                    }
                    NetEvent::Push {
                        peer,
                        push: Push::Status(status),
                    } => sync.input(HeaderSyncInput::Status(peer, status)).await,
                    NetEvent::Request { responder, .. } => {
                        responder.respond(Response::Error(headway_wire::ErrorResponse {
                            code: ErrorCode::NotFound,
                            message: "client".into(),
                            retry_after_ms: 0,
                        }))
                    }
                    _ => {}
                }
            }
        }
    });
    let started = Instant::now();
    let cpu_before = process_cpu_ms();
    let steal_before = machine_steal_ms();
    let roles_before = cpu_by_role();
    dial_all(&net, &servers.dial).await;
    let (duration, complete, series) = observe(&sync, started, env.chain.tip).await;
    let cpu_ms = process_cpu_ms().saturating_sub(cpu_before);
    let steal_ms = machine_steal_ms().saturating_sub(steal_before);
    let roles = cpu_by_role().since(&roles_before);
    let m = sync.metrics();
    let counters = vec![
        ("timeouts", m.timeouts.load(Ordering::Relaxed)),
        ("bans", m.bans.load(Ordering::Relaxed)),
        (
            "verification_failures",
            m.verification_failures.load(Ordering::Relaxed),
        ),
        (
            "bootstrap_rounds",
            m.bootstrap_rounds.load(Ordering::Relaxed),
        ),
        (
            "requests_sent",
            net.metrics().requests_sent.load(Ordering::Relaxed),
        ),
        (
            "requests_failed",
            net.metrics().requests_failed.load(Ordering::Relaxed),
        ),
        ("rate_limited", servers.rate_limited()),
        ("relay_drops", servers.dropped()),
        ("cpu_ms", cpu_ms),
        ("cpu_client_ms", roles.client / 1000),
        ("cpu_servers_ms", roles.servers / 1000),
        (
            "cores_x100",
            (cpu_ms as f64 / duration.as_secs_f64().max(1e-9) / 10.0).round() as u64,
        ),
        ("steal_ms", steal_ms),
    ];
    let synced = store.header_height() - 1;
    task.abort();
    pump.abort();
    net.shutdown().await;
    servers.shutdown(env).await;
    RunOutput {
        duration,
        synced,
        complete,
        series,
        counters,
    }
}

async fn dial_all(net: &Network, dial: &[(PeerId, SocketAddr)]) {
    let mut dials = Vec::new();
    for &(id, addr) in dial {
        let net = net.clone();
        dials.push(tokio::spawn(async move { net.connect(addr, id).await }));
    }
    for d in dials {
        d.await
            .expect("dial task")
            .expect("dialling a serving peer");
    }
}

/// Samples the stored header height every [`SAMPLE_EVERY`] until the
/// reactor publishes `tip` (the exact moment is taken from its height watch,
/// not from the sampling). Samples read the metrics gauge, which v2's store
/// writer also advances while the watch only moves when v2 is done.
async fn observe(
    sync: &HeaderSync,
    started: Instant,
    tip: u64,
) -> (Duration, bool, Vec<(f64, u64)>) {
    let gauge = sync.metrics().clone();
    let height = move || gauge.header_height.load(Ordering::Relaxed);
    let mut series = vec![(0.0, height())];
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = tokio::time::sleep(RUN_TIMEOUT);
    tokio::pin!(deadline);
    let mut watch = sync.height_watch();
    let reached = async move {
        let _ = watch.wait_for(|h| *h >= tip).await;
        Instant::now()
    };
    tokio::pin!(reached);
    loop {
        tokio::select! {
            at = &mut reached => {
                let t = at.duration_since(started);
                series.push((t.as_secs_f64(), tip));
                return (t, true, series);
            }
            _ = ticks.tick() => series.push((started.elapsed().as_secs_f64(), height())),
            () = &mut deadline => {
                let t = started.elapsed();
                series.push((t.as_secs_f64(), height()));
                return (t, false, series);
            }
        }
    }
}

/// The bound of issue 8: `verify_batch` over consecutive batches of
/// `batch` headers from genesis, on this thread, no I/O. (With 16
/// validators a commit has at most 16 signatures, under the verifier's
/// parallel-batch threshold, so it is single-threaded.) Returns the time.
pub fn verification_bound(chain: &Chain, batch: usize) -> Duration {
    let started = Instant::now();
    let mut trusted = chain.genesis.clone();
    for headers in chain.headers[1..].chunks(batch) {
        trusted = verify_batch(&trusted, headers)
            .expect("the cached chain verifies")
            .trusted;
    }
    assert_eq!(trusted.height(), chain.tip);
    started.elapsed()
}

/// The reactor's store writes alone: `save_headers` of `batch` headers at a
/// time into a fresh store with the client's config (`durable`) or with
/// commits left to sled's background flush; temporary (tmpfs) unless
/// `on_disk` names a directory to create it in (removed afterwards).
pub fn store_only(
    chain: &Chain,
    batch: usize,
    durable: bool,
    on_disk: Option<&std::path::Path>,
) -> Duration {
    let config = StoreConfig::new().with_sync_on_commit(durable);
    let store = match on_disk {
        Some(dir) => {
            let _ = std::fs::remove_dir_all(dir);
            Store::open(dir, config).expect("probe store")
        }
        None => Store::open_temporary(config).expect("temporary store"),
    };
    store.save_headers(&chain.headers[..1]).expect("genesis");
    let started = Instant::now();
    for headers in chain.headers[1..].chunks(batch) {
        store.save_headers(headers).expect("storing headers");
    }
    let took = started.elapsed();
    drop(store);
    if let Some(dir) = on_disk {
        let _ = std::fs::remove_dir_all(dir);
    }
    took
}

/// v2-bare's store writes alone: the compact ranges the sync downloads
/// (heights `2..=tip-1` in ranges of `range_len`), hashed beforehand,
/// stored with `save_proven_compact_parts` in the writer's groups (ranges
/// added until a group holds [`MAX_WRITE_HEADERS`]) into a fresh temporary
/// durable store holding the genesis, as the syncing node's writer does.
/// Returns the wall time and the calling thread's CPU time (sled's own
/// background threads are in neither).
pub fn store_only_v2(chain: &Chain, range_len: u64) -> (Duration, Duration) {
    let x = chain.tip - 1;
    let mut ranges = Vec::new();
    let mut start = 2;
    while start <= x {
        let count = range_len.min(x - start + 1);
        let bare = chain
            .store
            .load_bare_headers(start, count)
            .expect("bare headers");
        let compact = CompactHeaders::from_bare(&bare).expect("a compact form");
        ranges.push(HashedCompact::new(start, compact, Vec::new()).expect("a compact range"));
        start += count;
    }
    let store = Store::open_temporary(StoreConfig::new()).expect("temporary store");
    store.save_headers(&chain.headers[..1]).expect("genesis");
    let (wall, cpu) = (Instant::now(), thread_cpu_time());
    let mut group: Vec<&HashedCompact> = Vec::new();
    let mut held = 0;
    for range in &ranges {
        group.push(range);
        held += range.len();
        if held >= MAX_WRITE_HEADERS {
            store.save_proven_compact_parts(&group).expect("storing");
            group.clear();
            held = 0;
        }
    }
    if !group.is_empty() {
        store.save_proven_compact_parts(&group).expect("storing");
    }
    let took = (wall.elapsed(), thread_cpu_time().saturating_sub(cpu));
    assert_eq!(store.header_height(), x);
    took
}

/// The reactor's v1 requests without the reactor: `GetHeaders` of `batch`
/// from every peer (`inflight_per_peer` in flight to each peer), answers
/// decoded and dropped: the transport and the serving peers alone.
pub async fn fetch_only(
    env: &Env,
    scenario: Scenario,
    batch: u32,
    inflight_per_peer: usize,
) -> RunOutput {
    fetch_ranges(
        env,
        scenario,
        batch,
        inflight_per_peer,
        |start, count| {
            Request::GetHeaders(GetHeaders {
                start_height: start,
                count,
            })
        },
        None,
    )
    .await
}

/// v2-bare's requests without the sync: `GetHeadersV2` for compact
/// headers-only ranges of `range_len` below the tip, proven into `C(tip -
/// 1)` as the syncing node asks for them, `inflight_per_peer` in flight to
/// each peer, answers decoded (as the transport does for the node) and
/// dropped, nothing stored: what the transport and the serving peers cost a
/// v2 sync by themselves. With `verify`, each answer is first hashed and
/// verified as the syncing node does it (`HashedCompact::new`, then
/// `verify_compact_range`), on the task that received it.
pub async fn fetch_only_v2(
    env: &Env,
    scenario: Scenario,
    range_len: u32,
    inflight_per_peer: usize,
    verify: bool,
) -> RunOutput {
    let x = env.chain.tip - 1;
    let commitment = env.chain.store.history_root(x).expect("history root");
    let chain_id = env.chain.genesis.chain_id().to_owned();
    let on_answer: Option<OnAnswer> = verify.then(|| {
        Arc::new(move |start: u64, answer: HeadersV2Response| {
            let HeadersV2Result::CompactHeaders { headers, proof } = answer.result else {
                panic!("fetch-only: not a compact range at {start}");
            };
            let range = HashedCompact::new(start, *headers, Vec::new()).expect("a compact range");
            verify_compact_range(
                &chain_id,
                &Hash(commitment.0),
                x,
                start,
                &range,
                &proof,
                ProofKind::LastLeaf,
            )
            .expect("the cached chain proves");
        }) as OnAnswer
    });
    fetch_ranges(
        env,
        scenario,
        range_len,
        inflight_per_peer,
        move |start, count| {
            Request::GetHeadersV2(GetHeadersV2 {
                start_height: start,
                count,
                end_height: x,
                commitment: Hash(commitment.0),
                proof_kind: ProofKind::LastLeaf,
                headers_only: true,
                compact: true,
            })
        },
        on_answer,
    )
    .await
}

/// What [`fetch_ranges`] does with each v2 answer besides counting it.
type OnAnswer = Arc<dyn Fn(u64, HeadersV2Response) + Send + Sync>;

/// Fetches heights `2..` up to the last one `request(start, count)` may
/// ask for (the tip for `GetHeaders`, `tip - 1` below a v2 commitment) in
/// requests of `batch`, and drops the answers (v2 ones after `on_answer`).
async fn fetch_ranges(
    env: &Env,
    scenario: Scenario,
    batch: u32,
    inflight_per_peer: usize,
    request: impl Fn(u64, u32) -> Request + Clone + Send + 'static,
    on_answer: Option<OnAnswer>,
) -> RunOutput {
    let servers = Servers::start(env, scenario).await;
    let (_store, net, mut events) = client(env).await;
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    let started = Instant::now();
    let cpu_before = process_cpu_ms();
    let roles_before = cpu_by_role();
    dial_all(&net, &servers.dial).await;
    let probe = request(2, 1);
    let last = match probe {
        Request::GetHeadersV2(r) => r.end_height,
        _ => env.chain.tip,
    };
    let next = Arc::new(AtomicU64::new(2));
    let fetched = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for &(peer, _) in &servers.dial {
        for _ in 0..inflight_per_peer {
            let (net, next, fetched) = (net.clone(), next.clone(), fetched.clone());
            let (request, on_answer) = (request.clone(), on_answer.clone());
            workers.push(tokio::spawn(async move {
                loop {
                    let start = next.fetch_add(u64::from(batch), Ordering::Relaxed);
                    if start > last {
                        return;
                    }
                    let count =
                        u32::try_from((last - start + 1).min(u64::from(batch))).unwrap_or(batch);
                    let request = request(start, count);
                    loop {
                        match net.request(peer, &request).await {
                            Ok(Response::Headers(r)) if r.headers.len() == count as usize => break,
                            Ok(Response::HeadersV2(r)) if answered(&r) == Some(count as usize) => {
                                if let Some(on_answer) = &on_answer {
                                    on_answer(start, r);
                                }
                                break;
                            }
                            Ok(Response::Error(e)) if e.code == ErrorCode::RateLimited => {
                                tokio::time::sleep(Duration::from_millis(u64::from(
                                    e.retry_after_ms,
                                )))
                                .await;
                            }
                            other => panic!("fetch-only: unexpected answer {other:?}"),
                        }
                    }
                    fetched.fetch_add(u64::from(count), Ordering::Relaxed);
                }
            }));
        }
    }
    for w in workers {
        w.await.expect("fetch worker");
    }
    let duration = started.elapsed();
    let cpu_ms = process_cpu_ms().saturating_sub(cpu_before);
    let roles = cpu_by_role().since(&roles_before);
    let counters = vec![
        (
            "requests_sent",
            net.metrics().requests_sent.load(Ordering::Relaxed),
        ),
        ("rate_limited", servers.rate_limited()),
        ("relay_drops", servers.dropped()),
        ("cpu_ms", cpu_ms),
        ("cpu_client_ms", roles.client / 1000),
        ("cpu_servers_ms", roles.servers / 1000),
    ];
    drain.abort();
    net.shutdown().await;
    servers.shutdown(env).await;
    RunOutput {
        duration,
        synced: fetched.load(Ordering::Relaxed),
        complete: true,
        series: Vec::new(),
        counters,
    }
}

/// Headers in a v2 answer, `None` when it holds none (a commitment instead).
fn answered(response: &HeadersV2Response) -> Option<usize> {
    match &response.result {
        HeadersV2Result::CompactHeaders { headers, .. } => Some(headers.len()),
        HeadersV2Result::BareHeaders { headers, .. } => Some(headers.len()),
        HeadersV2Result::Headers { headers, .. } => Some(headers.len()),
        HeadersV2Result::Commitment(_) => None,
    }
}

/// The v2 bound: [`verify_range`] (hashes alone, no signature) over the
/// ranges v2 downloads (heights `2..=tip-1` in ranges of `range_len`, each
/// with its last-leaf proof into `C(tip-1)`), one thread, proofs made
/// beforehand. Returns the thread's CPU time for it, so that the bound is
/// what one core does undisturbed: its wall time, measured beside the
/// cells, ranged over 2.2× within one run on this shared host.
pub fn v2_verification_bound(chain: &Chain, range_len: u64) -> Duration {
    let x = chain.tip - 1;
    let commitment = chain.store.history_root(x).expect("history root");
    let chain_id = chain.genesis.chain_id().to_owned();
    let mut ranges = Vec::new();
    let mut start = 2;
    while start <= x {
        let last = (start + range_len - 1).min(x);
        let proof = chain.store.prove_header(last, x).expect("proof");
        ranges.push((start, last, headway_node::serve::mmr_proof(&proof)));
        start = last + 1;
    }
    let started = thread_cpu_time();
    for (start, last, proof) in &ranges {
        let headers = &chain.headers[(*start - 1) as usize..*last as usize];
        verify_range(
            &chain_id,
            &commitment,
            x,
            *start,
            headers,
            proof,
            ProofKind::LastLeaf,
        )
        .expect("the cached chain proves");
    }
    thread_cpu_time().saturating_sub(started)
}

/// CPU time of the calling thread so far (`/proc/thread-self/schedstat`,
/// whose first field is the time it spent on a CPU, in ns): unlike a
/// wall clock, it leaves out the time other threads of this shared host
/// held the core.
fn thread_cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    let ns = stat
        .split_whitespace()
        .next()
        .and_then(|f| f.parse::<u64>().ok())
        .expect("schedstat starts with ns on a CPU");
    Duration::from_nanos(ns)
}

/// CPU time (µs) of this process's threads by role, from their names and
/// `/proc/self/task/*/schedstat`: the syncing node's runtime (`client`: its
/// reactor, transport and, on its blocking pool, the store writer) and the
/// serving peers' (`server`: their transports and store reads). Relays,
/// sled's shared I/O threads and the harness are in neither.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuByRole {
    pub client: u64,
    pub servers: u64,
}

/// Each live thread's role and CPU time (µs) at one moment, by thread id.
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot(std::collections::HashMap<u64, (Role, u64)>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
    Other,
}

impl CpuSnapshot {
    /// What each role used since `before`, thread by thread: a thread that
    /// is new counts whole, one that exited in between (an idle blocking
    /// thread retires after 10 s) is lost rather than taken off the total,
    /// so a role can be undercounted, never negative.
    pub fn since(&self, before: &CpuSnapshot) -> CpuByRole {
        let mut roles = CpuByRole::default();
        for (tid, &(role, us)) in &self.0 {
            let used = us.saturating_sub(before.0.get(tid).map_or(0, |&(_, b)| b));
            match role {
                Role::Client => roles.client += used,
                Role::Server => roles.servers += used,
                Role::Other => {}
            }
        }
        roles
    }
}

pub fn cpu_by_role() -> CpuSnapshot {
    let mut snapshot = CpuSnapshot::default();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return snapshot;
    };
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u64>().ok())
        else {
            continue;
        };
        let Ok(name) = std::fs::read_to_string(task.path().join("comm")) else {
            continue;
        };
        // The first field of `schedstat` is the thread's time on a CPU, in ns
        // (`stat`'s utime and stime are whole 10 ms ticks per thread, which
        // rounds a pool of briefly busy threads down to nothing).
        let Some(ns) = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        else {
            continue;
        };
        let role = match name.trim_end() {
            "client" => Role::Client,
            "server" => Role::Server,
            _ => Role::Other,
        };
        snapshot.0.insert(tid, (role, ns / 1000));
    }
    snapshot
}

/// Time the hypervisor kept this machine's vCPUs from running although
/// they had work (*steal*), over all of them so far, in ms, from the
/// `cpu` line of `/proc/stat` (0 where there is none). A run that lost
/// tens of ms to steal says so in its counters: on this shared host it
/// explains the slowest runs of a cell better than anything of ours.
pub fn machine_steal_ms() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0;
    };
    // cpu user nice system idle iowait irq softirq steal ...
    stat.lines()
        .next()
        .filter(|line| line.starts_with("cpu "))
        .and_then(|line| line.split_whitespace().nth(8))
        .and_then(|steal| steal.parse::<u64>().ok())
        .map_or(0, |ticks| ticks * 10) // USER_HZ is 100 on Linux
}

/// CPU time (user + system) of this whole process so far, in ms, from
/// `/proc/self/stat` (0 where there is none): client, serving peers and
/// relays together, so `cpu_ms / duration` is how many of the machine's
/// cores a run kept busy.
pub fn process_cpu_ms() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    // Fields after the command name (which may hold spaces) in parentheses.
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    ticks * 10 // USER_HZ is 100 on Linux
}
