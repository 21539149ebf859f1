//! Store throughput against raw sled doing the same inserts or scans:
//! header batches, state writes with checksum and Ancestral Record upkeep,
//! and snapshot chunk iteration. Also prints the resident memory growth while
//! streaming a large snapshot prefix.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs,
    reason = "benchmark harness"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use headway_chain::HeaderExt as _;
use headway_store::{Store, StoreConfig};
use headway_wire::{BlockId, BlockMeta, SignedHeader, Write, raw};
use prost::Message as _;
use rand::{Rng as _, SeedableRng as _};

const HEADERS: u64 = 2_000;
/// Headers per `save_headers` call: GetHeaders (v1) answers 50, v2 ranges 250.
const BATCHES: [usize; 2] = [50, 250];
/// As the store's `MAX_SEGMENT_HEADERS` (format 2).
const SEGMENT_HEADERS: usize = 256;

fn config() -> StoreConfig {
    StoreConfig::new().with_sync_on_commit(false)
}

fn raw_sled() -> sled::Db {
    sled::Config::new().temporary(true).open().unwrap()
}

type Rows = Vec<Vec<(Vec<u8>, Vec<u8>)>>;

/// Format-1 rows for raw sled, per batch: for each header the same encoded
/// meta and commit, an index entry and two 32-byte nodes (about what the MMR
/// adds per leaf): five keys per header.
fn raw_rows_v1(headers: &[SignedHeader], batch: usize) -> Rows {
    headers
        .chunks(batch)
        .map(|batch| {
            batch
                .iter()
                .flat_map(|s| {
                    let h = s.header.height;
                    let hash = s.header.hash();
                    let meta = BlockMeta {
                        block_id: BlockId { hash },
                        header: s.header.clone(),
                        block_size: 0,
                        num_txs: 0,
                    };
                    vec![
                        (
                            [&[1u8][..], &h.to_be_bytes()].concat(),
                            raw::BlockMeta::from(&meta).encode_to_vec(),
                        ),
                        (
                            [&[2u8][..], &h.to_be_bytes()].concat(),
                            raw::Commit::from(&s.commit).encode_to_vec(),
                        ),
                        ([&[3u8][..], &hash.0].concat(), h.to_be_bytes().to_vec()),
                        (
                            [&[6u8][..], &(2 * h).to_be_bytes()].concat(),
                            hash.0.to_vec(),
                        ),
                        (
                            [&[6u8][..], &(2 * h + 1).to_be_bytes()].concat(),
                            hash.0.to_vec(),
                        ),
                    ]
                })
                .collect()
        })
        .collect()
}

/// Format-2 rows for raw sled, per batch: the header segments (hash, header
/// and commit of each row, at most 256 rows a value), one hash index entry
/// per header, the batch's MMR nodes (two per header) as one value, and the
/// header height: what the store writes, without its checks and hashing.
fn raw_rows_v2(headers: &[SignedHeader], batch: usize) -> Rows {
    headers
        .chunks(batch)
        .map(|batch| {
            let mut rows = Vec::new();
            for segment in batch.chunks(SEGMENT_HEADERS) {
                let first = segment[0].header.height;
                let mut value = (segment.len() as u32).to_be_bytes().to_vec();
                for s in segment {
                    value.extend_from_slice(&s.header.hash().0);
                    raw::Header::from(&s.header)
                        .encode_length_delimited(&mut value)
                        .unwrap();
                    raw::Commit::from(&s.commit)
                        .encode_length_delimited(&mut value)
                        .unwrap();
                }
                rows.push(([&[7u8][..], &first.to_be_bytes()].concat(), value));
            }
            let mut nodes = Vec::with_capacity(batch.len() * 64);
            for s in batch {
                let hash = s.header.hash();
                let h = s.header.height;
                rows.push(([&[3u8][..], &hash.0].concat(), h.to_be_bytes().to_vec()));
                nodes.extend_from_slice(&hash.0);
                nodes.extend_from_slice(&hash.0);
            }
            let first = batch[0].header.height;
            rows.push(([&[9u8][..], &(2 * first).to_be_bytes()].concat(), nodes));
            let top = first + batch.len() as u64 - 1;
            rows.push((b"\x00header_height".to_vec(), top.to_be_bytes().to_vec()));
            rows
        })
        .collect()
}

fn headers(c: &mut Criterion) {
    let (headers, _) = common::build_chain(1, HEADERS, false);
    let mut group = c.benchmark_group("header_batches");
    group.throughput(Throughput::Elements(HEADERS));
    for batch in BATCHES {
        let v1 = raw_rows_v1(&headers, batch);
        let v2 = raw_rows_v2(&headers, batch);
        for durable in [false, true] {
            let label = if durable { "durable" } else { "buffered" };
            group.bench_function(format!("store/{label}/{batch}"), |b| {
                b.iter_batched(
                    || Store::open_temporary(config().with_sync_on_commit(durable)).unwrap(),
                    |store| {
                        for chunk in headers.chunks(batch) {
                            store.save_headers(chunk).unwrap();
                        }
                        store
                    },
                    BatchSize::PerIteration,
                );
            });
            for (name, rows) in [("raw_sled_v1", &v1), ("raw_sled_v2", &v2)] {
                group.bench_function(format!("{name}/{label}/{batch}"), |b| {
                    b.iter_batched(
                        raw_sled,
                        |db| {
                            for batch in rows {
                                let mut sled_batch = sled::Batch::default();
                                for (k, v) in batch {
                                    sled_batch.insert(k.as_slice(), v.as_slice());
                                }
                                db.apply_batch(sled_batch).unwrap();
                                if durable {
                                    db.flush().unwrap();
                                }
                            }
                            db
                        },
                        BatchSize::PerIteration,
                    );
                });
            }
        }
    }
    group.finish();
}

const BLOCKS: u64 = 20;
const WRITES_PER_BLOCK: usize = 100;

/// Blocks of puts over 3 prefixes: half new keys, half updates of earlier keys.
fn state_blocks() -> Vec<Vec<Write>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let mut next_key = 0u32;
    (0..BLOCKS)
        .map(|_| {
            (0..WRITES_PER_BLOCK)
                .map(|i| {
                    let id = if i % 2 == 0 || next_key == 0 {
                        next_key += 1;
                        next_key
                    } else {
                        rng.gen_range(0..next_key)
                    };
                    let mut key = vec![(id % 3) as u8 + 1];
                    key.extend_from_slice(&id.to_be_bytes());
                    key.extend_from_slice(&[0x55; 28]);
                    Write {
                        key,
                        value: Some(vec![rng.r#gen::<u8>(); 100]),
                    }
                })
                .collect()
        })
        .collect()
}

fn state(c: &mut Criterion) {
    let blocks = state_blocks();
    let mut group = c.benchmark_group("state_writes");
    group.throughput(Throughput::Elements(BLOCKS * WRITES_PER_BLOCK as u64));
    group.bench_function("store", |b| {
        b.iter_batched(
            || Store::open_temporary(config().with_snapshot_period(5)).unwrap(),
            |store| {
                for (h, writes) in (1u64..).zip(&blocks) {
                    store.apply_writes(h, writes).unwrap();
                }
                store
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function("raw_sled", |b| {
        b.iter_batched(
            raw_sled,
            |db| {
                for writes in &blocks {
                    let mut batch = sled::Batch::default();
                    for w in writes {
                        batch.insert(w.key.as_slice(), w.value.as_deref().unwrap_or_default());
                    }
                    db.apply_batch(batch).unwrap();
                }
                db
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// A store whose prefix 1 holds `records` records of `value_len` bytes at the
/// snapshot height, with a tenth of them changed after it (Ancestral Records).
fn snapshot_store(records: u32, value_len: usize) -> (Store, sled::Db, u64) {
    let store = Store::open_temporary(config().with_snapshot_period(2)).unwrap();
    let db = raw_sled();
    let key = |i: u32| [&[1u8][..], &i.to_be_bytes(), &[0x33; 20]].concat();
    let writes: Vec<Write> = (0..records)
        .map(|i| Write {
            key: key(i),
            value: Some(vec![i as u8; value_len]),
        })
        .collect();
    for w in &writes {
        db.insert(&w.key, w.value.as_deref().unwrap()).unwrap();
    }
    store.apply_writes(1, &writes).unwrap();
    store.apply_writes(2, &[]).unwrap();
    let changes: Vec<Write> = (0..records)
        .step_by(10)
        .map(|i| Write {
            key: key(i),
            value: Some(vec![0xAB; value_len]),
        })
        .collect();
    store.apply_writes(3, &changes).unwrap();
    let bytes = u64::from(records) * (value_len as u64 + 25);
    (store, db, bytes)
}

fn read_all(store: &Store, budget: usize) -> usize {
    let mut start = Vec::new();
    let mut n = 0;
    loop {
        let chunk = store.read_snapshot_chunk(2, 1, &start, budget).unwrap();
        n += chunk.entries.len();
        if chunk.prefix_exhausted {
            return n;
        }
        start = chunk.entries.last().unwrap().key.clone();
        start.push(0);
    }
}

fn snapshot(c: &mut Criterion) {
    let (store, db, bytes) = snapshot_store(20_000, 200);
    let mut group = c.benchmark_group("snapshot_iteration");
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("store_chunks_1MiB", |b| {
        b.iter(|| black_box(read_all(&store, 1 << 20)))
    });
    group.bench_function("raw_sled_scan", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for row in db.scan_prefix([1u8]) {
                let (k, v) = row.unwrap();
                n += k.len() + v.len();
            }
            black_box(n)
        });
    });
    group.finish();
    drop((store, db));
    memory_while_serving();
}

/// Resident set size, from /proc (Linux), in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Streams a ~100 MB prefix in 4 MiB chunks and reports how far the resident
/// set grows above where it was before serving started.
fn memory_while_serving() {
    let (store, db, bytes) = snapshot_store(100_000, 1000);
    drop(db);
    let before = rss_kib();
    let mut peak = before;
    let mut start = Vec::new();
    let mut entries = 0;
    loop {
        let mut chunk = store.snapshot_chunk(2, 1, &start, 4 << 20).unwrap();
        for entry in chunk.by_ref() {
            black_box(entry.unwrap());
            entries += 1;
            if entries % 1000 == 0 {
                peak = peak.max(rss_kib());
            }
        }
        match chunk.next_start_key() {
            Some(next) => start = next,
            None => break,
        }
    }
    println!(
        "memory while serving: streamed {entries} records ({} MB) in 4 MiB chunks; RSS {} MiB before, peak {} MiB (+{} MiB)",
        bytes / 1_000_000,
        before / 1024,
        peak / 1024,
        peak.saturating_sub(before) / 1024
    );
}

fn quick() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
}

/// Headers of the compact-range group: ranges of `COMPACT_RANGE`.
const COMPACT_HEADERS: u64 = 10_000;
const COMPACT_RANGE: u64 = 1_000;

/// A syncing node's two ways from compact ranges (v2 headers-only answers)
/// to stored rows, on the same ranges: expanding each into hashed bare
/// header structs and storing those (`save_proven_bare_header_parts`), or
/// hashing the columns and storing from them (`HashedCompact`,
/// `save_proven_compact_parts`); each also without the store, to tell the
/// two halves apart.
fn compact_ranges(c: &mut Criterion) {
    use headway_chain::{Hashed, HashedCompact};
    use headway_wire::CompactHeaders;

    let (headers, _) = common::build_chain(1, COMPACT_HEADERS, false);
    let reference = Store::open_temporary(config()).unwrap();
    reference.save_headers(&headers).unwrap();
    let ranges: Vec<(u64, CompactHeaders)> = (1..=COMPACT_HEADERS)
        .step_by(COMPACT_RANGE as usize)
        .map(|start| {
            let bare = reference.load_bare_headers(start, COMPACT_RANGE).unwrap();
            (start, CompactHeaders::from_bare(&bare).unwrap())
        })
        .collect();
    let mut group = c.benchmark_group("compact_ranges");
    group.throughput(Throughput::Elements(COMPACT_HEADERS));
    group.bench_function("expand", |b| {
        b.iter(|| {
            for (start, compact) in &ranges {
                black_box(Hashed::expand_compact(*start, compact).unwrap());
            }
        });
    });
    group.bench_function("columns", |b| {
        b.iter_batched(
            || ranges.clone(),
            |ranges| {
                for (start, compact) in ranges {
                    black_box(HashedCompact::new(start, compact, Vec::new()).unwrap());
                }
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function("expand_store", |b| {
        b.iter_batched(
            || Store::open_temporary(config()).unwrap(),
            |store| {
                for (start, compact) in &ranges {
                    let expanded = Hashed::expand_compact(*start, compact).unwrap();
                    store.save_proven_bare_header_parts(&[&expanded]).unwrap();
                }
                store
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function("columns_store", |b| {
        b.iter_batched(
            || (Store::open_temporary(config()).unwrap(), ranges.clone()),
            |(store, ranges)| {
                for (start, compact) in ranges {
                    let range = HashedCompact::new(start, compact, Vec::new()).unwrap();
                    store.save_proven_compact_parts(&[&range]).unwrap();
                }
                store
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// What a serving peer computes from the history MMR for each v2 answer:
/// the requester's commitment `C(x)` to compare with ours, then the proof
/// of the range's last header into it; for ranges of [`COMPACT_RANGE`]
/// below `x` = [`COMPACT_HEADERS`]. The store reads the nodes from its node
/// file (the upper ones from memory once read); the raw primitive is
/// `headway-mmr` over the same leaves held in memory.
fn v2_answer_proofs(c: &mut Criterion) {
    use headway_mmr::{MemStore, Mmr};

    let (headers, _) = common::build_chain(1, COMPACT_HEADERS, false);
    let store = Store::open_temporary(config()).unwrap();
    store.save_headers(&headers).unwrap();
    let mut memory = Mmr::new(MemStore::new()).unwrap();
    for h in &headers {
        memory.append(&h.header.hash().0).unwrap();
    }
    let x = COMPACT_HEADERS;
    let lasts: Vec<u64> = (COMPACT_RANGE..=x)
        .step_by(COMPACT_RANGE as usize)
        .collect();
    assert_eq!(store.history_root(x).unwrap().0, memory.root_at(x).unwrap());
    assert_eq!(
        store.prove_header(lasts[0], x).unwrap(),
        memory.prove_inclusion(lasts[0] - 1, x).unwrap()
    );
    let mut group = c.benchmark_group("v2_answer_proofs");
    group.throughput(Throughput::Elements(lasts.len() as u64));
    group.bench_function("store", |b| {
        b.iter(|| {
            for &last in &lasts {
                black_box(store.history_root(x).unwrap());
                black_box(store.prove_header(last, x).unwrap());
            }
        });
    });
    group.bench_function("raw_mmr_in_memory", |b| {
        b.iter(|| {
            for &last in &lasts {
                black_box(memory.root_at(x).unwrap());
                black_box(memory.prove_inclusion(last - 1, x).unwrap());
            }
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = quick();
    targets = headers, state, snapshot, compact_ranges, v2_answer_proofs
}
criterion_main!(benches);
