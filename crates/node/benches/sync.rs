//! Header sync benchmark (issues 8 and 9).
//!
//! `cargo bench -p headway-node --bench sync` (set `CARGO_TARGET_DIR` to keep
//! clear of other builds' locks). One run:
//!
//! 1. **Issue 8**: v1 header sync of a devnet chain (100 000 headers, 16
//!    validators, a quarter rotated every 100 blocks, the whole set replaced
//!    at half the length) from 4 serving peers over loopback, beside the
//!    verification-only throughput of the same chain (`verify_batch` over
//!    consecutive 50-header batches from genesis, one thread, no I/O). Probes
//!    split the time: the store writes alone, the transport and serving
//!    peers alone.
//! 2. **Issue 9**: every contender on the same chain with 1, 4 and 8 serving
//!    peers, over loopback and with 50 ms added round-trip time (an in-process
//!    UDP delay relay per serving peer, `headway_net::testing::DelayRelay`;
//!    real QUIC on both sides). Loopback
//!    cells are the median of 3 runs (their spread is printed and kept);
//!    delayed cells, paced by round trips, run once. Each run reports the
//!    CPU of the syncing node and of the serving peers apart (by thread
//!    name), and the loopback v2 cells are set against the v2 hash-only
//!    bound, measured right before each of their runs (so that a slow
//!    spell of the shared host weighs on both), per header of CPU as well as
//!    in headers/s. A probe sends v2-bare's requests to 8 peers and drops
//!    the answers (`v2-fetch`): with what it costs per header and what the
//!    bound costs, it gives the ceiling a sync on these shared cores cannot
//!    pass even with its store free.
//! 3. Writes `results.json` (every figure and every 20 ms height sample) to
//!    the bench directory and the plot to `docs/bench/header-sync.png`.
//!
//! Environment:
//! - `HEADWAY_BENCH_QUICK=1`: 10 000 headers (replacement at 5 000), one repetition.
//! - `HEADWAY_BENCH_LOG`: a `tracing` filter (e.g. `headway_headersync=debug`)
//!   for the client's and peers' logs on stderr.
//! - `HEADWAY_BENCH_DIR`: chain cache and results (default `<target dir>/bench-sync`).
//! - `HEADWAY_BENCH_PLOT`: where the PNG goes (default `docs/bench/header-sync.png`).
//! - `HEADWAY_BENCH_UDP_PAYLOAD`: the datagram ceiling of every node, in bytes
//!   (default 1452, a node's; at most 6550).
//! - `HEADWAY_BENCH_CLIENT_WORKERS`, `HEADWAY_BENCH_SERVER_WORKERS`: worker
//!   threads of the syncing node's runtime and of the serving peers' (2 each
//!   by default, the machine's cores).
//! - `HEADWAY_BENCH_ONLY=issue8|issue9|v1|v2|v2-bare|v2-fetch|v2-store|pair|cache|plot`: one part only
//!   (`v2`: v2 with 8 peers on loopback and at +50 ms, or at the added RTTs listed in
//!   `HEADWAY_BENCH_RTT_MS=0,50`, for profiling; `pair`: v1 then v2 there; both
//!   also run v2 headers-only, which `v2-bare` runs alone
//!   (`HEADWAY_BENCH_REPEAT=n`: each of their cells n times in one process); `v2-fetch`: goal 2's
//!   probes once (v2-bare's requests with the answers dropped, then verified,
//!   and the store alone); `v2-store`: the store probe alone, five times; `v1`: the issue 8 v1
//!   runs alone, once, for profiling; results.json and the plot are then not
//!   written; `plot`: redraws the plot from the last full run's results.json).
//!
//! The chain is generated once into `chain-<params>/` under the bench
//! directory and reused. Serving peers, relays and the client run in three
//! runtimes (thread names `server`, `relay`, `client`) of one process on
//! this machine's cores, so a profile can tell them apart.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "benchmark binary"
)]

#[path = "sync/cache.rs"]
mod cache;
#[path = "sync/contenders.rs"]
mod contenders;
#[path = "sync/peers.rs"]
mod peers;
#[path = "sync/plot.rs"]
mod plot;
#[path = "sync/png.rs"]
mod png;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use headway_chain::HeaderExt as _;
use headway_headersync::{
    ParallelConfig, ReactorConfig, bootstrap::Checkpoint, server::DEFAULT_GET_HEADERS_PER_WINDOW,
    v2::RangeSyncConfig,
};
use headway_node::config::DevnetParams;
use serde_json::{Value, json};

use crate::{
    cache::Chain,
    contenders::{Env, RunOutput, Scenario},
};

/// Headers per `verify_batch` call in the bound, as v1 requests them.
const BOUND_BATCH: usize = 50;
/// Peers of the issue 8 run.
const ISSUE8_PEERS: usize = 4;
/// Serving peer counts of issue 9.
const PEER_COUNTS: [usize; 3] = [1, 4, 8];
/// v2's checkpoint is this far below the tip.
const CHECKPOINT_BEHIND: u64 = 1000;
/// A serving rate limit that never binds.
const UNLIMITED: usize = 1_000_000;
/// Added one-way delays of issue 9 (0 = plain loopback; 25 ms each way = 50 ms RTT).
const DELAYS: [Duration; 2] = [Duration::ZERO, Duration::from_millis(25)];

fn main() {
    if std::env::var("HEADWAY_BENCH_LOG").is_ok() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("HEADWAY_BENCH_LOG"))
            .init();
    }
    let quick = std::env::var("HEADWAY_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let len: u64 = if quick { 10_000 } else { 100_000 };
    let reps = if quick { 1 } else { 3 };
    let params = DevnetParams {
        seed: 1,
        validators: 16,
        rotation_interval: 100,
        replace_all_at: vec![len / 2],
    };
    let dir = bench_dir();
    std::fs::create_dir_all(&dir).expect("creating the bench directory");
    let only = std::env::var("HEADWAY_BENCH_ONLY").ok();
    if only.as_deref() == Some("plot") {
        // Redraw from the last full run's figures, without running anything.
        let json_path = dir.join("results.json");
        let text = std::fs::read_to_string(&json_path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", json_path.display()));
        let results: Value = serde_json::from_str(&text).expect("results.json is JSON");
        let len = results["chain"]["headers"].as_u64().expect("chain.headers");
        write_plot(&results, len);
        return;
    }
    let chain = Arc::new(Chain::load_or_build(&dir, &params, len));
    let part = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if only.as_deref() == Some("cache") {
        return;
    }

    let runtime = |name: &str, workers: usize| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(name)
            .enable_all()
            .build()
            .expect("tokio runtime")
    };
    let workers = |var: &str| {
        std::env::var(var)
            .ok()
            .map_or(2, |v| v.trim().parse().expect("a number of worker threads"))
    };
    let client = runtime("client", workers("HEADWAY_BENCH_CLIENT_WORKERS"));
    let servers = runtime("server", workers("HEADWAY_BENCH_SERVER_WORKERS"));
    let relays = runtime("relay", 1);
    let env = Env {
        chain: chain.clone(),
        servers: servers.handle().clone(),
        relays: relays.handle().clone(),
    };
    let mut results = json!({
        "bench": "header-sync",
        "quick": quick,
        "chain": { "headers": len, "params": format!("{params:?}") },
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
    });
    if only.as_deref() == Some("v1") {
        v1_runs(&client, &env, 1, f64::NAN);
        return;
    }
    if only.as_deref() == Some("v2-store") {
        // The store probe alone, five times, for profiling the writer's path.
        for _ in 0..5 {
            StoreProbe::measure(&chain, 1).print();
        }
        return;
    }
    if only.as_deref() == Some("v2-fetch") {
        // Goal 2's probes once each: v2-bare's requests to 8 peers on
        // loopback, the answers dropped, then verified and dropped.
        let range = u64::from(RangeSyncConfig::default().range_len);
        for probe in PROBES {
            let bound = contenders::v2_verification_bound(&chain, range);
            let run = client.block_on(probe.run(&env));
            print_cell(
                probe.name(),
                &loopback(8, DEFAULT_GET_HEADERS_PER_WINDOW),
                &run,
            );
            println!(
                "  {:.2} of the hash-only bound measured before it ({:.0} headers/s)",
                run.rate() * bound.as_secs_f64() / (chain.tip - 1) as f64,
                (chain.tip - 1) as f64 / bound.as_secs_f64()
            );
        }
        let store = StoreProbe::measure(&chain, 1);
        store.print();
        return;
    }
    if let Some(which @ ("v2" | "pair" | "v2-bare")) = only.as_deref() {
        // For profiling: v2 from a checkpoint, loopback and +50 ms, 8 peers.
        let from_checkpoint = checkpoint_config(&chain);
        let delays: Vec<Duration> = match std::env::var("HEADWAY_BENCH_RTT_MS") {
            Ok(list) => list
                .split(',')
                .map(|ms| Duration::from_millis(ms.trim().parse::<u64>().expect("RTT in ms") / 2))
                .collect(),
            Err(_) => DELAYS.to_vec(),
        };
        // `HEADWAY_BENCH_REPEAT=n`: each cell n times in this process (the
        // first run of a process touches fresh memory the later ones reuse).
        let repeat = std::env::var("HEADWAY_BENCH_REPEAT").map_or(1, |n| {
            n.parse::<usize>().expect("HEADWAY_BENCH_REPEAT: a count")
        });
        for delay in delays.iter().flat_map(|&d| std::iter::repeat_n(d, repeat)) {
            let scenario = Scenario {
                peers: 8,
                one_way_delay: delay,
                get_headers_per_second: DEFAULT_GET_HEADERS_PER_WINDOW,
            };
            if which == "pair" {
                let run =
                    client.block_on(contenders::run_v1(&env, scenario, ReactorConfig::default()));
                print_cell("v1", &scenario, &run);
            }
            if which != "v2-bare" {
                let run = client.block_on(contenders::run_v2(
                    &env,
                    scenario,
                    ReactorConfig::default(),
                    from_checkpoint.clone(),
                ));
                print_cell("v2", &scenario, &run);
            }
            let run = client.block_on(contenders::run_v2(
                &env,
                scenario,
                ReactorConfig::default(),
                headers_only(from_checkpoint.clone()),
            ));
            print_cell("v2-bare", &scenario, &run);
        }
        return;
    }
    if part("issue8") {
        results["issue8"] = issue8(&client, &env, reps, &dir);
    }
    if part("issue9") {
        let v2_bound = results["issue8"]["v2_hash_only_bound"]["headers_per_s"].as_f64();
        results["issue9"] = issue9(&client, &env, &chain, reps, v2_bound);
    }
    if only.is_none() {
        let json_path = dir.join("results.json");
        std::fs::write(
            &json_path,
            serde_json::to_string_pretty(&results).expect("json"),
        )
        .expect("writing results.json");
        println!("\nresults: {}", json_path.display());
        write_plot(&results, len);
    }
    drop((client, servers, relays));
}

fn write_plot(results: &Value, len: u64) {
    let plot_path = plot_path();
    if let Some(parent) = plot_path.parent() {
        std::fs::create_dir_all(parent).expect("creating the plot directory");
    }
    std::fs::write(&plot_path, draw(results, len)).expect("writing the plot");
    println!("plot:    {}", plot_path.display());
}

/// Issue 8: v1 from 4 peers over loopback against the verification bound, and the probes.
fn issue8(client: &tokio::runtime::Runtime, env: &Env, reps: usize, dir: &Path) -> Value {
    let chain = &env.chain;
    let synced = chain.tip - 1;
    let per_s = |d: Duration| synced as f64 / d.as_secs_f64();
    println!(
        "\n== Issue 8: v1 vs the verification bound ({} headers, {ISSUE8_PEERS} peers, loopback)",
        chain.tip
    );
    let bound =
        median_duration((0..reps).map(|_| contenders::verification_bound(chain, BOUND_BATCH)));
    let bound_rate = per_s(bound);
    println!(
        "verification bound (verify_batch x{BOUND_BATCH}, 1 thread, no I/O): {bound_rate:>8.0} headers/s ({:.2} s)",
        bound.as_secs_f64()
    );
    let v2_range = u64::from(RangeSyncConfig::default().range_len);
    let v2_bound =
        median_duration((0..reps).map(|_| contenders::v2_verification_bound(chain, v2_range)));
    println!(
        "v2 hash-only bound (verify_range x{v2_range}, 1 thread, no I/O, CPU time): {:>8.0} headers/s",
        per_s(v2_bound)
    );
    let store_durable = contenders::store_only(chain, BOUND_BATCH, true, None);
    let store_buffered = contenders::store_only(chain, BOUND_BATCH, false, None);
    let store_disk =
        contenders::store_only(chain, BOUND_BATCH, true, Some(&dir.join("probe-store")));
    println!(
        "store only, save_headers x{BOUND_BATCH}, durable (tmpfs, as the client): {:>8.0} headers/s",
        per_s(store_durable)
    );
    println!(
        "store only, save_headers x{BOUND_BATCH}, buffered (tmpfs):               {:>8.0} headers/s",
        per_s(store_buffered)
    );
    println!(
        "store only, save_headers x{BOUND_BATCH}, durable on disk:                {:>8.0} headers/s",
        per_s(store_disk)
    );
    let serial = 1.0 / (1.0 / bound_rate + 1.0 / per_s(store_durable));
    println!("verify, then store (durable), one after the other: {serial:>8.0} headers/s");
    let fetch = client.block_on(contenders::fetch_only(
        env,
        loopback(ISSUE8_PEERS, UNLIMITED),
        50,
        4,
    ));
    println!(
        "fetch only (transport + serving peers, answers dropped, no rate limit): {:>8.0} headers/s",
        fetch.rate()
    );

    let runs = v1_runs(client, env, reps, bound_rate);
    json!({
        "peers": ISSUE8_PEERS,
        "repetitions": reps,
        "verification_bound": { "batch": BOUND_BATCH, "seconds": bound.as_secs_f64(), "headers_per_s": bound_rate },
        "v2_hash_only_bound": { "range": v2_range, "seconds": v2_bound.as_secs_f64(), "headers_per_s": per_s(v2_bound) },
        "store_only": {
            "durable_headers_per_s": per_s(store_durable),
            "buffered_headers_per_s": per_s(store_buffered),
            "durable_on_disk_headers_per_s": per_s(store_disk),
        },
        "verify_then_store_headers_per_s": serial,
        "fetch_only": run_json(&fetch),
        "v1": runs,
    })
}

/// The v1 configurations of issue 8, each the median of `reps` runs.
fn v1_runs(
    client: &tokio::runtime::Runtime,
    env: &Env,
    reps: usize,
    bound_rate: f64,
) -> Vec<Value> {
    let mut runs = Vec::new();
    for (name, config, rate) in v1_configs() {
        let run = median_run(
            (0..reps)
                .map(|_| {
                    client.block_on(contenders::run_v1(
                        env,
                        loopback(ISSUE8_PEERS, rate),
                        config.clone(),
                    ))
                })
                .collect(),
        );
        println!(
            "v1 {name:<28} {:>8.0} headers/s in {:>6.2} s  ratio to bound {:.2}  {}",
            run.rate(),
            run.duration.as_secs_f64(),
            run.rate() / bound_rate,
            counters(&run)
        );
        runs.push(json!({
            "name": name,
            "config": describe(&config, rate),
            "run": run_json(&run),
            "ratio_to_bound": run.rate() / bound_rate,
        }));
    }
    runs
}

/// Issue 9: every contender with 1, 4 and 8 peers, over loopback and with
/// 50 ms more RTT. v2 starts from a checkpoint [`CHECKPOINT_BEHIND`] below
/// the tip; v2 from genesis (bisection over every validator-set change) runs
/// with [`ISSUE8_PEERS`] peers only, as its bootstrap asks one peer at a time.
fn issue9(
    client: &tokio::runtime::Runtime,
    env: &Env,
    chain: &Chain,
    reps: usize,
    v2_bound: Option<f64>,
) -> Value {
    println!(
        "\n== Issue 9: contenders x serving peers x added RTT ({} headers; loopback cells: median of {reps} runs, min-max)",
        chain.tip
    );
    println!(
        "{:<14} {:>6} {:>9} {:>10} {:>12}  counters",
        "", "peers", "RTT +ms", "time s", "headers/s"
    );
    let checkpoint = chain.tip - CHECKPOINT_BEHIND;
    let from_checkpoint = checkpoint_config(chain);
    let mut cells = Vec::new();
    let mut loopback_v2 = Vec::new();
    let v2_range = u64::from(RangeSyncConfig::default().range_len);
    let per_s = |d: Duration| (chain.tip - 1) as f64 / d.as_secs_f64();
    // Every hash-only bound measured beside a loopback v2 run.
    let mut bounds: Vec<Duration> = Vec::new();
    for delay in DELAYS {
        // Delayed cells are paced by round trips and take seconds (v1 from
        // one peer, ~30 s): one run each. Loopback cells take a fraction of
        // a second and vary most with the machine's load: the median of `reps`.
        let reps = if delay.is_zero() { reps } else { 1 };
        for peers in PEER_COUNTS {
            let scenario = Scenario {
                peers,
                one_way_delay: delay,
                get_headers_per_second: DEFAULT_GET_HEADERS_PER_WINDOW,
            };
            let mut contenders: Vec<(&str, Contender)> = vec![
                ("v1", Contender::V1),
                ("v2", Contender::V2(from_checkpoint.clone())),
                (
                    "v2-bare",
                    Contender::V2(headers_only(checkpoint_config(chain))),
                ),
            ];
            if peers == ISSUE8_PEERS {
                contenders.push(("v2-genesis", Contender::V2(ParallelConfig::default())));
            }
            for (name, contender) in contenders {
                // Goal 2 sets each loopback v2 cell against the hash-only
                // bound measured right before each of its runs, so that a
                // slow spell of this shared host weighs on both.
                let paired = delay.is_zero() && name.starts_with("v2") && name != "v2-genesis";
                let mut cell_bounds = Vec::new();
                let runs: Vec<RunOutput> = (0..reps)
                    .map(|_| {
                        if paired {
                            cell_bounds.push(contenders::v2_verification_bound(chain, v2_range));
                        }
                        client.block_on(contender.run(env, scenario))
                    })
                    .collect();
                let rates: Vec<f64> = runs.iter().map(RunOutput::rate).collect();
                let run = median_run(runs);
                print_cell(name, &scenario, &run);
                if rates.len() > 1 {
                    let (lo, hi) = min_max(&rates);
                    println!("{:<14} {:>41}  min-max {lo:.0}-{hi:.0}", "", "");
                }
                let mut cell = cell_json(name, &scenario, &run);
                cell["repeats_headers_per_s"] = json!(rates);
                if paired {
                    let bound = per_s(median_duration(cell_bounds.iter().copied()));
                    bounds.extend(cell_bounds);
                    loopback_v2.push(GoalCell {
                        name,
                        peers,
                        rate: run.rate(),
                        bound,
                        cpu_us: cpu_per_header(&run),
                    });
                }
                cells.push(cell);
            }
        }
    }
    // Goal 2's probes: v2-bare's requests to 8 peers, the answers dropped
    // (then verified and dropped), each run beside a bound of its own.
    let mut probes = Vec::new();
    for probe in PROBES {
        let mut probe_bounds = Vec::new();
        let runs: Vec<RunOutput> = (0..reps)
            .map(|_| {
                probe_bounds.push(contenders::v2_verification_bound(chain, v2_range));
                client.block_on(probe.run(env))
            })
            .collect();
        let rates: Vec<f64> = runs.iter().map(RunOutput::rate).collect();
        let run = median_run(runs);
        print_cell(
            probe.name(),
            &loopback(8, DEFAULT_GET_HEADERS_PER_WINDOW),
            &run,
        );
        let cell = GoalCell {
            name: probe.name(),
            peers: 8,
            rate: run.rate(),
            bound: per_s(median_duration(probe_bounds.iter().copied())),
            cpu_us: cpu_per_header(&run),
        };
        bounds.extend(probe_bounds);
        probes.push((probe, cell, rates));
    }
    let store = StoreProbe::measure(chain, reps);
    store.print();
    let goal = v2_goal(
        v2_bound,
        &bounds.iter().map(|d| per_s(*d)).collect::<Vec<_>>(),
        &loopback_v2,
        &probes,
        &store,
    );
    json!({
        "v1": "ReactorConfig::default(), serving rate limit DEFAULT_GET_HEADERS_PER_WINDOW",
        "v2": format!("SyncMode::V2, ParallelConfig::default() with checkpoint HeaderHash at height {checkpoint} (tip - {CHECKPOINT_BEHIND})"),
        "v2-bare": "as v2, with RangeSyncConfig::bare() (GetHeadersV2.headers_only, 1000-header ranges; headers stored without commits)",
        "v2-genesis": "SyncMode::V2, ParallelConfig::default() (no checkpoint: bootstrap by bisection from genesis)",
        "loopback_repetitions": reps,
        "loopback_v2_against_bound": goal,
        "cells": cells,
    })
}

/// What a cell runs.
enum Contender {
    V1,
    V2(ParallelConfig),
}

impl Contender {
    async fn run(&self, env: &Env, scenario: Scenario) -> RunOutput {
        match self {
            Contender::V1 => contenders::run_v1(env, scenario, ReactorConfig::default()).await,
            Contender::V2(parallel) => {
                contenders::run_v2(env, scenario, ReactorConfig::default(), parallel.clone()).await
            }
        }
    }
}

/// µs of CPU per synced header: `(syncing node, serving peers)`, from the
/// run's per-role counters.
fn cpu_per_header(run: &RunOutput) -> (f64, f64) {
    let counter = |name: &str| {
        run.counters
            .iter()
            .find(|(k, _)| *k == name)
            .map_or(0, |(_, v)| *v)
    };
    let per = |ms: u64| ms as f64 * 1000.0 / run.synced.max(1) as f64;
    (
        per(counter("cpu_client_ms")),
        per(counter("cpu_servers_ms")),
    )
}

/// A loopback v2 cell as goal 2 reads it: its median rate, the median of
/// the hash-only bounds measured right before its runs, and µs of CPU per
/// header (syncing node, serving peers).
struct GoalCell<'a> {
    name: &'a str,
    peers: usize,
    rate: f64,
    bound: f64,
    cpu_us: (f64, f64),
}

impl GoalCell<'_> {
    /// The cell as `results.json` keeps it, against its own bound and
    /// against the run's `fastest`.
    fn to_json(&self, fastest: f64) -> Value {
        let (client_us, servers_us) = self.cpu_us;
        json!({
            "contender": self.name,
            "peers": self.peers,
            "ratio_to_bound": self.rate / self.bound,
            "ratio_to_fastest_bound": self.rate / fastest,
            "bound_headers_per_s": self.bound,
            "client_cpu_us_per_header": client_us,
            "servers_cpu_us_per_header": servers_us,
            "bound_cpu_us_per_header": 1e6 / self.bound,
        })
    }
}

/// Issue 9's second goal, cell by cell: each loopback v2 rate against the
/// v2 hash-only bound measured beside its runs, beside what the syncing node
/// and the serving peers spent per header (all of them share this machine's
/// cores). `issue8_bound` (measured once, before every cell) and the spread
/// of all `bounds` measured beside the cells are printed too: on this shared
/// host the bound alone has moved by half between runs.
fn v2_goal(
    issue8_bound: Option<f64>,
    bounds: &[f64],
    cells: &[GoalCell<'_>],
    probes: &[(Probe, GoalCell<'_>, Vec<f64>)],
    store: &StoreProbe,
) -> Value {
    if cells.is_empty() {
        return Value::Null;
    }
    let mut sorted = bounds.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let (lo, hi) = min_max(bounds);
    let fastest = issue8_bound.map_or(hi, |b| b.max(hi));
    println!(
        "\nloopback v2 against the v2 hash-only bound measured before each of the cell's runs ({} measurements beside the cells: median {median:.0} headers/s = {:.2} us of CPU per header, min-max {lo:.0}-{hi:.0}; before the cells, in issue 8: {}); last column: against the fastest bound measured in the run ({fastest:.0}):",
        bounds.len(),
        1e6 / median,
        issue8_bound.map_or_else(|| "not run".to_owned(), |b| format!("{b:.0}")),
    );
    let mut out = Vec::new();
    for cell in cells {
        let bound_us = 1e6 / cell.bound;
        let (client_us, servers_us) = cell.cpu_us;
        println!(
            "  {:<8} {} peers  {:.2} of the bound ({:.0} headers/s)   CPU per header: syncing node {client_us:.2} us ({:.1}x the bound's), serving peers {servers_us:.2} us   {:.2} of the fastest",
            cell.name,
            cell.peers,
            cell.rate / cell.bound,
            cell.bound,
            client_us / bound_us,
            cell.rate / fastest,
        );
        out.push(cell.to_json(fastest));
    }
    // A sync does at least what a probe does (plus, for the probe that
    // does not verify, the bound's hashing), on the cores the serving peers
    // share: at full use of all of them it reaches at most `cores / (probe
    // [+ bound])` headers per µs.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut probes_json = Vec::new();
    for (probe, cell, rates) in probes {
        let (client_us, servers_us) = cell.cpu_us;
        let bound_us = 1e6 / cell.bound;
        let hashing_us = match probe {
            Probe::Fetch => bound_us,
            Probe::FetchVerify => 0.0,
        };
        let ceiling = cores * bound_us / (client_us + servers_us + hashing_us);
        println!(
            "  probe {}: {:.2} of the bound ({:.0} headers/s)   CPU per header: requester {client_us:.2} us, serving peers {servers_us:.2} us   {:.2} of the fastest\n    ceiling on {cores} cores: at most {ceiling:.2} of the bound {}",
            cell.name,
            cell.rate / cell.bound,
            cell.bound,
            cell.rate / fastest,
            probe.ceiling_says(),
        );
        let mut json = cell.to_json(fastest);
        json["what"] = json!(probe.what());
        json["headers_per_s"] = json!(cell.rate);
        json["repeats_headers_per_s"] = json!(rates);
        json["ceiling_ratio_to_bound"] = json!(ceiling);
        if let Probe::FetchVerify = probe {
            // Everything a sync does: the probe's, then the writer's.
            let sync_us = client_us + servers_us + store.cpu_us;
            let ceiling = cores * bound_us / sync_us;
            println!(
                "    with the store as measured alone ({:.2} us a header): {sync_us:.2} us of CPU a header in all, at most {ceiling:.2} of the bound on {cores} cores",
                store.cpu_us
            );
            json["with_store_cpu_us_per_header"] = json!(sync_us);
            json["with_store_ceiling_ratio_to_bound"] = json!(ceiling);
        }
        probes_json.push(json);
    }
    json!({
        "cells": out,
        "probes": probes_json,
        "store_only": store.to_json(),
        "bounds_beside_cells_headers_per_s": bounds,
        "issue8_bound_headers_per_s": issue8_bound,
        "fastest_bound_headers_per_s": fastest,
    })
}

/// v2-bare's store writes alone ([`contenders::store_only_v2`]): the median
/// of `reps` measurements, as headers/s of wall time and µs of the storing
/// thread's CPU per header.
struct StoreProbe {
    rate: f64,
    cpu_us: f64,
}

impl StoreProbe {
    fn measure(chain: &Chain, reps: usize) -> StoreProbe {
        let range = u64::from(RangeSyncConfig::bare().range_len);
        let mut runs: Vec<(Duration, Duration)> = (0..reps.max(1))
            .map(|_| contenders::store_only_v2(chain, range))
            .collect();
        runs.sort();
        let (wall, cpu) = runs[runs.len() / 2];
        let headers = (chain.tip - 2) as f64;
        StoreProbe {
            rate: headers / wall.as_secs_f64(),
            cpu_us: cpu.as_secs_f64() * 1e6 / headers,
        }
    }

    fn print(&self) {
        println!(
            "{:<14} store only: save_proven_compact_parts of v2-bare's ranges in the writer's groups, durable (tmpfs): {:.0} headers/s, {:.2} us of CPU a header",
            "v2-store", self.rate, self.cpu_us
        );
    }

    fn to_json(&self) -> Value {
        json!({
            "what": "save_proven_compact_parts of v2-bare's 1000-header ranges (hashed beforehand) in groups of up to MAX_WRITE_HEADERS, fresh temporary durable store",
            "headers_per_s": self.rate,
            "cpu_us_per_header": self.cpu_us,
        })
    }
}

/// Goal 2's probes: v2-bare's requests without the sync, 8 peers on
/// loopback ([`contenders::fetch_only_v2`]), as many in flight per peer as
/// v2 keeps.
#[derive(Debug, Clone, Copy)]
enum Probe {
    /// The answers dropped: the transport and the serving peers alone.
    Fetch,
    /// Each answer hashed and verified as the syncing node does, then
    /// dropped: all of a sync but storing.
    FetchVerify,
}

const PROBES: [Probe; 2] = [Probe::Fetch, Probe::FetchVerify];

impl Probe {
    fn name(self) -> &'static str {
        match self {
            Probe::Fetch => "v2-fetch",
            Probe::FetchVerify => "v2-verify",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Probe::Fetch => "v2-bare's requests to 8 peers, answers dropped",
            Probe::FetchVerify => {
                "v2-bare's requests to 8 peers, answers hashed and verified (HashedCompact::new, verify_compact_range), then dropped"
            }
        }
    }

    fn ceiling_says(self) -> &'static str {
        match self {
            Probe::Fetch => {
                "(the probe's CPU and the bound's per header: verifying at the bound's cost, storing free)"
            }
            Probe::FetchVerify => "(the probe's CPU per header: storing free)",
        }
    }

    async fn run(self, env: &Env) -> RunOutput {
        let config = RangeSyncConfig::bare();
        contenders::fetch_only_v2(
            env,
            loopback(8, DEFAULT_GET_HEADERS_PER_WINDOW),
            config.range_len,
            config.max_inflight_per_peer,
            matches!(self, Probe::FetchVerify),
        )
        .await
    }
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// v2's configuration: trust a checkpoint [`CHECKPOINT_BEHIND`] below the tip.
fn checkpoint_config(chain: &Chain) -> ParallelConfig {
    let checkpoint = chain.tip - CHECKPOINT_BEHIND;
    ParallelConfig {
        checkpoint: Some(Checkpoint::HeaderHash {
            height: checkpoint,
            hash: chain.headers[(checkpoint - 1) as usize].header.hash(),
        }),
        ..ParallelConfig::default()
    }
}

/// `config` asking for headers without commits.
fn headers_only(mut config: ParallelConfig) -> ParallelConfig {
    config.ranges = RangeSyncConfig::bare();
    // For tuning: `HEADWAY_BENCH_V2_TRY=range_len:inflight` replaces the
    // headers-only range length and requests in flight per peer.
    if let Ok(try_) = std::env::var("HEADWAY_BENCH_V2_TRY") {
        let mut parts = try_.split(':').map(|p| p.trim().parse::<usize>());
        if let (Some(Ok(len)), Some(Ok(inflight))) = (parts.next(), parts.next()) {
            config.ranges.range_len = u32::try_from(len).expect("range length");
            config.ranges.max_inflight_per_peer = inflight;
        }
    }
    config
}

/// Loopback with `peers` serving peers allowing `rate` `GetHeaders` per second.
fn loopback(peers: usize, rate: usize) -> Scenario {
    Scenario {
        peers,
        one_way_delay: Duration::ZERO,
        get_headers_per_second: rate,
    }
}

/// The v1 configurations of issue 8: the node's defaults, then tuned
/// values (`HEADWAY_BENCH_V1_TRY=inflight:pending:rate,…` replaces the tuned
/// ones, for exploring).
fn v1_configs() -> Vec<(String, ReactorConfig, usize)> {
    let with = |inflight: usize, pending: usize| {
        let mut c = ReactorConfig::default();
        c.pool.max_inflight_per_peer = inflight;
        c.pool.max_pending_batches = pending;
        c
    };
    let mut v = vec![(
        "defaults".to_owned(),
        ReactorConfig::default(),
        DEFAULT_GET_HEADERS_PER_WINDOW,
    )];
    match std::env::var("HEADWAY_BENCH_V1_TRY") {
        Ok(list) => {
            for item in list.split(',') {
                let f: Vec<usize> = item
                    .split(':')
                    .map(|x| x.parse().expect("inflight:pending:rate"))
                    .collect();
                v.push((format!("try {item}"), with(f[0], f[1]), f[2]));
            }
        }
        Err(_) => {
            v.push((
                "serving rate 1000/s".to_owned(),
                ReactorConfig::default(),
                1000,
            ));
            v.push((
                "rate 1000/s, 8 in flight, 128 pending".to_owned(),
                with(8, 128),
                1000,
            ));
        }
    }
    v
}

fn describe(config: &ReactorConfig, rate: usize) -> Value {
    json!({
        "batch_size": config.pool.batch_size,
        "max_inflight_per_peer": config.pool.max_inflight_per_peer,
        "max_pending_batches": config.pool.max_pending_batches,
        "tick_ms": config.tick.as_millis() as u64,
        "server_get_headers_per_second": rate,
    })
}

fn counters(run: &RunOutput) -> String {
    let mut s: Vec<String> = run
        .counters
        .iter()
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !run.complete {
        s.insert(0, "INCOMPLETE".into());
    }
    s.join(" ")
}

fn run_json(run: &RunOutput) -> Value {
    let counters: serde_json::Map<String, Value> = run
        .counters
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    json!({
        "seconds": run.duration.as_secs_f64(),
        "headers": run.synced,
        "headers_per_s": run.rate(),
        "complete": run.complete,
        "counters": counters,
    })
}

fn cell_json(contender: &str, scenario: &Scenario, run: &RunOutput) -> Value {
    let series: Vec<Value> = run
        .series
        .iter()
        .map(|(t, h)| json!([(t * 1000.0).round() / 1000.0, h]))
        .collect();
    json!({
        "contender": contender,
        "peers": scenario.peers,
        "added_rtt_ms": scenario.one_way_delay.as_millis() as u64 * 2,
        "run": run_json(run),
        "series": series,
    })
}

fn print_cell(contender: &str, scenario: &Scenario, run: &RunOutput) {
    println!(
        "{contender:<14} {:>6} {:>9} {:>10.2} {:>12.0}  {}",
        scenario.peers,
        scenario.one_way_delay.as_millis() * 2,
        run.duration.as_secs_f64(),
        run.rate(),
        counters(run)
    );
}

fn median_duration(it: impl Iterator<Item = Duration>) -> Duration {
    let mut v: Vec<Duration> = it.collect();
    v.sort();
    v[v.len() / 2]
}

fn median_run(mut runs: Vec<RunOutput>) -> RunOutput {
    runs.sort_by_key(|a| a.duration);
    runs.swap_remove(runs.len() / 2)
}

/// The plot: one panel per contender, a curve per cell.
fn draw(results: &Value, len: u64) -> Vec<u8> {
    let cells = results["issue9"]["cells"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut panels: Vec<plot::Panel> = Vec::new();
    for contender in ["v1", "v2", "v2-bare"] {
        let mut series = Vec::new();
        for cell in cells.iter().filter(|c| c["contender"] == contender) {
            let peers = cell["peers"].as_u64().unwrap_or(0);
            let rtt = cell["added_rtt_ms"].as_u64().unwrap_or(0);
            let color = PEER_COUNTS
                .iter()
                .position(|&p| p as u64 == peers)
                .map_or(plot::color::SERIES[4], |i| plot::color::SERIES[i]);
            let points = cell["series"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .map(|p| (p[0].as_f64().unwrap_or(0.0), p[1].as_f64().unwrap_or(0.0)))
                        .collect()
                })
                .unwrap_or_default();
            let rate = cell["run"]["headers_per_s"].as_f64().unwrap_or(0.0);
            series.push(plot::Series {
                label: format!(
                    "{peers} PEER{} {} {:.1}K/S",
                    if peers == 1 { " " } else { "S" },
                    if rtt == 0 { "LOOPBACK " } else { "+50MS RTT" },
                    rate / 1000.0
                ),
                color,
                dashed: rtt > 0,
                points,
            });
        }
        if !series.is_empty() {
            let title = match contender {
                "v1" => "V1 (DEFAULTS)".to_owned(),
                "v2" => format!("V2 (CHECKPOINT AT TIP - {CHECKPOINT_BEHIND})"),
                _ => "V2 HEADERS ONLY (SAME CHECKPOINT)".to_owned(),
            };
            panels.push(plot::Panel { title, series });
        }
    }
    plot::render(
        "HEADERS SYNCED OVER TIME",
        &format!(
            "{len} DEVNET HEADERS, 16 VALIDATORS, ROTATION EVERY 100, FULL REPLACEMENT AT {}",
            len / 2
        ),
        "SECONDS SINCE FIRST DIAL",
        "HEADER HEIGHT",
        &panels,
    )
}

/// `HEADWAY_BENCH_DIR`, else `<target dir>/bench-sync` (the target dir is
/// found from this binary's path: `<target>/<profile>/deps/sync-…`).
fn bench_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HEADWAY_BENCH_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("bench binary path");
    let target = exe
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "deps"))
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("bench-sync")
}

fn plot_path() -> PathBuf {
    if let Some(p) = std::env::var_os("HEADWAY_BENCH_PLOT") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/bench/header-sync.png")
}
