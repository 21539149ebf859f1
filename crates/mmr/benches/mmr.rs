//! headway-mmr against ckb-merkle-mountain-range, side by side in one run.
//!
//! Both hash with SHA-256 and the same domain separation (leaf
//! `SHA256(0x00 || data)`, node `SHA256(0x01 || left || right)`), leaf `i`
//! has data `u64_be(i)`, and both keep nodes in their own in-memory store.
//! The peer's leaves and merges use `sha2::Sha256` the ordinary way.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-mmr cargo bench -p headway-mmr
//! ```
//!
//! Groups (each with an `ours` and a `ckb` entry):
//! - `append_1M`: build an MMR of 1,000,000 leaves from scratch (throughput in leaves/s);
//!   a third entry, `ckb_with_our_hashing`, runs the peer with this crate's hash
//!   functions to show how much of the difference is structure rather than hashing;
//! - `prove_inclusion_1M`, `verify_inclusion_1M`: one leaf of the 1M-leaf MMR;
//! - `prove_range50_1M`, `verify_range50_1M`: 50 consecutive leaves (one header-sync batch);
//! - `append_and_root_100k`: a root before every append, as a store checking
//!   every header's `history_root` does; a third entry, `ours_whole_message`,
//!   hashes each root's whole message with `sha2` instead of `Mmr::root`'s
//!   midstates.

use std::hint::black_box;
use std::time::Duration;

use ckb_merkle_mountain_range::{
    MMR, Merge, MerkleProof, leaf_index_to_pos, util::MemStore as CkbStore,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use headway_mmr::{LeafHash, MemStore, Mmr, Proof, verify_inclusion, verify_range};
use sha2::{Digest, Sha256};

const LEAVES: u64 = 1_000_000;
/// Distinct query leaves, cycled through by the proof benchmarks.
const QUERIES: usize = 1024;
/// Leaves per range proof: one header-sync batch.
const RANGE: u64 = 50;

struct Sha256Merge;

/// The peer with this crate's hash functions, to separate the cost of the
/// peer's structure from the cost of its hashing.
struct FastMerge;

impl Merge for FastMerge {
    type Item = [u8; 32];

    fn merge(left: &[u8; 32], right: &[u8; 32]) -> ckb_merkle_mountain_range::Result<[u8; 32]> {
        Ok(headway_mmr::node_hash(left, right))
    }
}

type PeerProof = MerkleProof<[u8; 32], Sha256Merge>;
type PeerRange = (Vec<(u64, [u8; 32])>, PeerProof);

impl Merge for Sha256Merge {
    type Item = [u8; 32];

    fn merge(left: &[u8; 32], right: &[u8; 32]) -> ckb_merkle_mountain_range::Result<[u8; 32]> {
        Ok(Sha256::new()
            .chain_update([0x01])
            .chain_update(left)
            .chain_update(right)
            .finalize()
            .into())
    }
}

fn peer_leaf(i: u64) -> [u8; 32] {
    Sha256::new()
        .chain_update([0x00])
        .chain_update(i.to_be_bytes())
        .finalize()
        .into()
}

fn build_ours(n: u64) -> Mmr<MemStore> {
    let mut mmr = Mmr::default();
    for i in 0..n {
        let _ = mmr.append(&i.to_be_bytes());
    }
    mmr
}

fn build_peer(n: u64) -> (u64, CkbStore<[u8; 32]>) {
    let store = CkbStore::default();
    let mut mmr = MMR::<_, Sha256Merge, _>::new(0, &store);
    for i in 0..n {
        let _ = mmr.push(peer_leaf(i));
    }
    let size = mmr.mmr_size();
    let _ = mmr.commit();
    (size, store)
}

fn build_peer_fast_hash(n: u64) -> u64 {
    let store = CkbStore::default();
    let mut mmr = MMR::<_, FastMerge, _>::new(0, &store);
    for i in 0..n {
        let _ = mmr.push(LeafHash::of(&i.to_be_bytes()).to_bytes());
    }
    let size = mmr.mmr_size();
    let _ = mmr.commit();
    size
}

/// Deterministic pseudo-random leaf indices below `bound` (an LCG; no `rand`).
fn queries(bound: u64) -> Vec<u64> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..QUERIES)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 16) % bound
        })
        .collect()
}

fn appends(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_1M");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(LEAVES));
    group.bench_function("ours", |b| {
        b.iter(|| black_box(build_ours(LEAVES)).leaf_count())
    });
    group.bench_function("ckb", |b| b.iter(|| black_box(build_peer(LEAVES)).0));
    group.bench_function("ckb_with_our_hashing", |b| {
        b.iter(|| black_box(build_peer_fast_hash(LEAVES)));
    });
    group.finish();
}

fn proofs(c: &mut Criterion) {
    let ours = build_ours(LEAVES);
    let (peer_size, peer_store) = build_peer(LEAVES);
    let peer = MMR::<_, Sha256Merge, _>::new(peer_size, &peer_store);
    let our_root = ours.root();
    let peer_root = peer.get_root().unwrap_or_default();
    let indices = queries(LEAVES);
    let starts = queries(LEAVES - RANGE + 1);

    let mut group = c.benchmark_group("prove_inclusion_1M");
    configure_fast(&mut group);
    let mut k = 0;
    group.bench_function("ours", |b| {
        b.iter(|| {
            k = (k + 1) % QUERIES;
            ours.prove_inclusion(indices[k], LEAVES)
        });
    });
    group.bench_function("ckb", |b| {
        b.iter(|| {
            k = (k + 1) % QUERIES;
            peer.gen_proof(vec![leaf_index_to_pos(indices[k])])
        });
    });
    group.finish();

    let our_proofs: Vec<(u64, LeafHash, Proof)> = indices
        .iter()
        .filter_map(|&i| {
            Some((
                i,
                LeafHash::of(&i.to_be_bytes()),
                ours.prove_inclusion(i, LEAVES).ok()?,
            ))
        })
        .collect();
    let peer_proofs: Vec<(u64, [u8; 32], PeerProof)> = indices
        .iter()
        .filter_map(|&i| {
            let pos = leaf_index_to_pos(i);
            Some((pos, peer_leaf(i), peer.gen_proof(vec![pos]).ok()?))
        })
        .collect();
    let mut group = c.benchmark_group("verify_inclusion_1M");
    configure_fast(&mut group);
    group.bench_function("ours", |b| {
        b.iter(|| {
            k = (k + 1) % our_proofs.len();
            let (i, leaf, proof) = &our_proofs[k];
            verify_inclusion(&our_root, LEAVES, *i, leaf, proof).is_ok()
        });
    });
    group.bench_function("ckb", |b| {
        b.iter(|| {
            k = (k + 1) % peer_proofs.len();
            let (pos, leaf, proof) = &peer_proofs[k];
            proof
                .verify(peer_root, vec![(*pos, *leaf)])
                .unwrap_or(false)
        });
    });
    group.finish();

    let mut group = c.benchmark_group("prove_range50_1M");
    configure_fast(&mut group);
    group.bench_function("ours", |b| {
        b.iter(|| {
            k = (k + 1) % QUERIES;
            ours.prove_range(starts[k], starts[k] + RANGE, LEAVES)
        });
    });
    group.bench_function("ckb", |b| {
        b.iter(|| {
            k = (k + 1) % QUERIES;
            peer.gen_proof(
                (starts[k]..starts[k] + RANGE)
                    .map(leaf_index_to_pos)
                    .collect(),
            )
        });
    });
    group.finish();

    let our_ranges: Vec<(u64, Vec<LeafHash>, Proof)> = starts
        .iter()
        .filter_map(|&s| {
            let leaves = (s..s + RANGE)
                .map(|i| LeafHash::of(&i.to_be_bytes()))
                .collect();
            Some((s, leaves, ours.prove_range(s, s + RANGE, LEAVES).ok()?))
        })
        .collect();
    let peer_ranges: Vec<PeerRange> = starts
        .iter()
        .filter_map(|&s| {
            let leaves: Vec<(u64, [u8; 32])> = (s..s + RANGE)
                .map(|i| (leaf_index_to_pos(i), peer_leaf(i)))
                .collect();
            let proof = peer
                .gen_proof(leaves.iter().map(|&(pos, _)| pos).collect())
                .ok()?;
            Some((leaves, proof))
        })
        .collect();
    let mut group = c.benchmark_group("verify_range50_1M");
    configure_fast(&mut group);
    group.bench_function("ours", |b| {
        b.iter(|| {
            k = (k + 1) % our_ranges.len();
            let (start, leaves, proof) = &our_ranges[k];
            verify_range(&our_root, LEAVES, *start, leaves, proof).is_ok()
        });
    });
    group.bench_function("ckb", |b| {
        b.iter(|| {
            k = (k + 1) % peer_ranges.len();
            let (leaves, proof) = &peer_ranges[k];
            // The peer's API consumes the leaf list; the clone is part of using it.
            proof.verify(peer_root, leaves.clone()).unwrap_or(false)
        });
    });
    group.finish();
}

fn configure_fast(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
}

/// Leaves of the root-per-append benchmark.
const ROOT_LEAVES: u64 = 100_000;

/// The root of `peaks` hashed as one message, as a verifier does:
/// `SHA256(0x02 || peaks… || u64_be(leaf_count))` with `sha2` alone.
fn whole_message_root(leaf_count: u64, peaks: &[[u8; 32]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update([0x02]);
    for peak in peaks {
        hasher.update(peak);
    }
    hasher.update(leaf_count.to_be_bytes());
    hasher.finalize().into()
}

/// A root after every append, as a store checking every header's
/// `history_root` takes them: `Mmr::root` (midstates over the unchanged
/// peaks) against hashing the whole root message each time, and against a
/// peer crate's bagged root.
fn roots(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_and_root_100k");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(ROOT_LEAVES));
    group.bench_function("ours", |b| {
        b.iter(|| {
            let mut mmr = Mmr::default();
            let mut acc = 0u8;
            for i in 0..ROOT_LEAVES {
                acc ^= mmr.root()[0];
                let _ = mmr.append(&i.to_be_bytes());
            }
            acc
        });
    });
    group.bench_function("ours_whole_message", |b| {
        b.iter(|| {
            let mut mmr = Mmr::default();
            let mut acc = 0u8;
            for i in 0..ROOT_LEAVES {
                acc ^= whole_message_root(mmr.leaf_count(), mmr.peaks())[0];
                let _ = mmr.append(&i.to_be_bytes());
            }
            acc
        });
    });
    group.bench_function("ckb", |b| {
        b.iter(|| {
            let store = CkbStore::default();
            let mut mmr = MMR::<_, Sha256Merge, _>::new(0, &store);
            let mut acc = 0u8;
            for i in 0..ROOT_LEAVES {
                acc ^= mmr.get_root().map_or(0, |root| root[0]);
                let _ = mmr.push(peer_leaf(i));
            }
            acc
        });
    });
    group.finish();
}

criterion_group!(benches, appends, proofs, roots);
criterion_main!(benches);
