//! EllipticSum against its floor and its peers, on the same records.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-esum cargo bench -p headway-ellipticsum --bench ellipticsum
//! ```
//!
//! Every contender digests the same records (default 100 000 records with
//! 32-byte keys and 100-byte values; set `ELLIPTICSUM_BENCH_RECORDS` to
//! change the count) into one 32-byte result:
//!
//! - `ellipticsum_sequential` / `ellipticsum_parallel`: this crate, one
//!   thread / the rayon pool, compressed once at the end;
//! - `map_floor`: `RistrettoPoint::from_uniform_bytes` on the records'
//!   pre-computed 64 uniform bytes, summed and compressed once: everything
//!   EllipticSum does except encoding and hashing;
//! - `expand_only`: encoding and `expand_message_xmd` alone;
//! - `muhash3072` (`kaspa-muhash`) and `lthash` (`solana-lattice-hash`, blake3):
//!   the peer multiset hashes, fed the record encodings;
//! - `merkle_sha256`: a binary SHA-256 Merkle root over the records sorted
//!   by key (leaf `SHA-256(0x00 || encoding)`, node `SHA-256(0x01 || l || r)`).
//!
//! After the run the benchmark prints each rate as a ratio, from this run's
//! criterion estimates.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, measurement::WallTime};
use curve25519_dalek::ristretto::RistrettoPoint;
use headway_ellipticsum::{RecordHasher, encode_record};
use sha2::{Digest, Sha256};

/// Benchmark group name, also the directory of criterion's estimates.
const GROUP: &str = "ellipticsum";

/// Default number of records.
const DEFAULT_RECORDS: usize = 100_000;

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let count = std::env::var("ELLIPTICSUM_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_RECORDS);
    let fixture = Fixture::new(count);

    let mut group = criterion.benchmark_group(GROUP);
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(count as u64));
    bench_ellipticsum(&mut group, &fixture);
    bench_peers(&mut group, &fixture);
    group.finish();

    criterion.final_summary();
    report_ratios(count);
}

/// The records and the inputs each contender starts from.
struct Fixture {
    /// Sorted by key, so the Merkle root needs no sort.
    records: Vec<([u8; 32], [u8; 100])>,
    /// Each record's encoding, for the peers.
    encodings: Vec<Vec<u8>>,
    /// Each record's 64 uniform bytes under Headway's DST, for the floor.
    uniform: Vec<[u8; 64]>,
    hasher: RecordHasher,
}

impl Fixture {
    fn new(count: usize) -> Self {
        let mut records: Vec<([u8; 32], [u8; 100])> = (0..count as u64)
            .map(|i| {
                let key: [u8; 32] = Sha256::digest(i.to_le_bytes()).into();
                let mut value = [0u8; 100];
                let mut state = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                for byte in &mut value {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    *byte = state as u8;
                }
                (key, value)
            })
            .collect();
        records.sort_unstable_by_key(|a| a.0);
        let hasher = RecordHasher::headway();
        let encodings = records.iter().map(|(k, v)| encode_record(k, v)).collect();
        let uniform = records
            .iter()
            .map(|(k, v)| hasher.expand_record(k, v))
            .collect();
        Self {
            records,
            encodings,
            uniform,
            hasher,
        }
    }
}

fn bench_ellipticsum(group: &mut BenchmarkGroup<'_, WallTime>, fixture: &Fixture) {
    let hasher = &fixture.hasher;
    let records = &fixture.records;
    group.bench_function("ellipticsum_sequential", |b| {
        b.iter(|| hasher.sum_records(black_box(records)).to_bytes());
    });
    group.bench_function("ellipticsum_parallel", |b| {
        b.iter(|| hasher.par_sum_records(black_box(records)).to_bytes());
    });
    group.bench_function("map_floor", |b| {
        b.iter(|| {
            let mut sum = RistrettoPoint::default();
            for uniform in black_box(&fixture.uniform) {
                sum += RistrettoPoint::from_uniform_bytes(uniform);
            }
            sum.compress().to_bytes()
        });
    });
    group.bench_function("expand_only", |b| {
        b.iter(|| {
            let mut acc = [0u8; 64];
            for (k, v) in black_box(records) {
                let u = hasher.expand_record(k, v);
                for (a, x) in acc.iter_mut().zip(u) {
                    *a ^= x;
                }
            }
            acc
        });
    });
}

#[allow(deprecated, reason = "solana-lattice-hash 3.x marks its API unstable")]
fn bench_peers(group: &mut BenchmarkGroup<'_, WallTime>, fixture: &Fixture) {
    let encodings = &fixture.encodings;
    group.bench_function("muhash3072", |b| {
        b.iter(|| {
            let mut muhash = kaspa_muhash::MuHash::new();
            for encoding in black_box(encodings) {
                muhash.add_element(encoding);
            }
            muhash.finalize()
        });
    });
    group.bench_function("lthash", |b| {
        use solana_lattice_hash::lt_hash::LtHash;
        b.iter(|| {
            let mut sum = LtHash::identity();
            for encoding in black_box(encodings) {
                let mut hasher = blake3::Hasher::new();
                hasher.update(encoding);
                sum.mix_in(&LtHash::with(&hasher));
            }
            sum.checksum()
        });
    });
    group.bench_function("merkle_sha256", |b| {
        b.iter(|| merkle_root(black_box(encodings)));
    });
}

/// Binary SHA-256 Merkle root; an odd node is carried up unchanged.
fn merkle_root(encodings: &[Vec<u8>]) -> [u8; 32] {
    let mut level: Vec<[u8; 32]> = encodings
        .iter()
        .map(|e| {
            Sha256::new()
                .chain_update([0u8])
                .chain_update(e)
                .finalize()
                .into()
        })
        .collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => Sha256::new()
                    .chain_update([1u8])
                    .chain_update(left)
                    .chain_update(right)
                    .finalize()
                    .into(),
                [single] => *single,
                _ => [0u8; 32],
            })
            .collect();
    }
    level.first().copied().unwrap_or([0u8; 32])
}

/// Prints every contender's rate relative to the others, from this run's
/// criterion estimates (mean time per iteration).
#[allow(clippy::print_stdout, reason = "the benchmark reports its ratios")]
fn report_ratios(count: usize) {
    let Some(dir) = criterion_dir() else {
        println!("set CARGO_TARGET_DIR or CRITERION_HOME to get the ratio summary");
        return;
    };
    let mean = |id: &str| -> Option<f64> {
        let path = dir.join(GROUP).join(id).join("new/estimates.json");
        let text = std::fs::read_to_string(path).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        json["mean"]["point_estimate"].as_f64()
    };
    let ids = [
        "ellipticsum_sequential",
        "ellipticsum_parallel",
        "map_floor",
        "expand_only",
        "muhash3072",
        "lthash",
        "merkle_sha256",
    ];
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("\n== EllipticSum summary: {count} records, {cores} cores ==");
    println!("load average at the end (1/5/15 min): {}", load.trim());
    for id in ids {
        if let Some(ns) = mean(id) {
            let per_record = ns / count as f64;
            println!(
                "{id:>24}: {:>9.3} µs/record, {:>10.0} records/s",
                per_record / 1e3,
                1e9 / per_record
            );
        }
    }
    // A rate ratio is the inverse ratio of times.
    let rate = |fast: &str, slow: &str| Some(mean(slow)? / mean(fast)?);
    let lines = [
        (
            "sequential rate / map floor rate (goal >= 0.90)",
            rate("ellipticsum_sequential", "map_floor"),
        ),
        (
            "encoding + hashing share of sequential time",
            mean("expand_only")
                .zip(mean("ellipticsum_sequential"))
                .map(|(e, s)| e / s),
        ),
        (
            "parallel rate / sequential rate",
            rate("ellipticsum_parallel", "ellipticsum_sequential"),
        ),
        (
            "parallel / (cores x sequential) (goal >= 0.80)",
            rate("ellipticsum_parallel", "ellipticsum_sequential").map(|r| r / cores as f64),
        ),
        (
            "muhash3072 rate / sequential rate",
            rate("muhash3072", "ellipticsum_sequential"),
        ),
        (
            "lthash rate / sequential rate",
            rate("lthash", "ellipticsum_sequential"),
        ),
        (
            "merkle_sha256 rate / sequential rate",
            rate("merkle_sha256", "ellipticsum_sequential"),
        ),
    ];
    for (label, value) in lines {
        match value {
            Some(v) => println!("{label:>52}: {v:.3}"),
            None => println!("{label:>52}: not measured in this run"),
        }
    }
}

/// Where criterion writes its estimates, found as criterion does.
fn criterion_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(PathBuf::from(home));
    }
    std::env::var_os("CARGO_TARGET_DIR").map(|dir| PathBuf::from(dir).join("criterion"))
}
