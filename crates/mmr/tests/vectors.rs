//! Conformance vectors: `tests/vectors/mmr.json` at the workspace root.
//!
//! The file is generated from the naive model in `common/` (not from the
//! crate), so the crate's incremental algorithm is checked against an
//! independent computation. To rewrite it after a deliberate change:
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-mmr cargo test -p headway-mmr --test vectors -- --ignored regenerate_vectors
//! ```
//!
//! `vectors_file_is_up_to_date` fails when the file and the model disagree.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure should panic"
)]

mod common;

use std::path::PathBuf;

use headway_mmr::{
    LeafHash, Mmr, Proof, verify_ancestry, verify_inclusion, verify_multi, verify_range,
};
use serde::{Deserialize, Serialize};

const DESCRIPTION: &str = "Headway MMR conformance vectors (docs/mmr.md). All byte strings are lowercase hex. \
Leaf data: leaf i is the 8-byte big-endian encoding of i, and `leaves` lists leaf DATA; each leaf's hash is \
SHA256(0x00 || data). `cases`: the root of the MMR over leaves 0..leaf_count. `inclusion`, `multi`, `range`: \
proofs of the given leaves against `root`, the root at `leaf_count` (range covers [start, end)). `ancestry`: \
proof that the MMR at old_leaf_count is a prefix of the MMR at new_leaf_count. `proof` is the sequence of \
32-byte hashes; its canonical encoding is their concatenation. Generated from an independent naive model by \
crates/mmr/tests/vectors.rs (regenerate_vectors).";

const SIZES: &[usize] = &[0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 100, 1000];

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Vectors {
    description: String,
    cases: Vec<RootCase>,
    inclusion: Vec<InclusionCase>,
    multi: Vec<MultiCase>,
    range: Vec<RangeCase>,
    ancestry: Vec<AncestryCase>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct RootCase {
    leaf_count: u64,
    leaves: Vec<String>,
    root: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct InclusionCase {
    leaf_count: u64,
    leaf_index: u64,
    leaf: String,
    root: String,
    proof: Vec<String>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct MultiCase {
    leaf_count: u64,
    leaf_indices: Vec<u64>,
    leaves: Vec<String>,
    root: String,
    proof: Vec<String>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct RangeCase {
    leaf_count: u64,
    start: u64,
    end: u64,
    leaves: Vec<String>,
    root: String,
    proof: Vec<String>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct AncestryCase {
    old_leaf_count: u64,
    old_root: String,
    new_leaf_count: u64,
    new_root: String,
    proof: Vec<String>,
}

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/mmr.json")
}

fn model_leaves(n: usize) -> Vec<common::H> {
    (0..n as u64)
        .map(|i| common::leaf(&common::leaf_data(i)))
        .collect()
}

fn hexes(hashes: &[common::H]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

fn data_hexes(indices: impl IntoIterator<Item = u64>) -> Vec<String> {
    indices
        .into_iter()
        .map(|i| hex::encode(common::leaf_data(i)))
        .collect()
}

/// Everything in the vectors file, computed by the naive model.
fn model_vectors() -> Vectors {
    let all = model_leaves(1000);
    let root = |n: usize| hex::encode(common::root(&all[..n]));

    let cases = SIZES
        .iter()
        .map(|&n| RootCase {
            leaf_count: n as u64,
            leaves: data_hexes(0..n as u64),
            root: root(n),
        })
        .collect();

    let mut inclusion = Vec::new();
    for &n in SIZES.iter().filter(|&&n| n > 0) {
        let mut indices = vec![0, n / 2, n - 1];
        indices.dedup();
        for i in indices {
            inclusion.push(InclusionCase {
                leaf_count: n as u64,
                leaf_index: i as u64,
                leaf: hex::encode(common::leaf_data(i as u64)),
                root: root(n),
                proof: hexes(&common::multi_proof(&all[..n], &[i])),
            });
        }
    }

    let multi_cases: &[(usize, &[usize])] = &[
        (7, &[6]),
        (8, &[0, 1, 2, 3, 4, 5, 6, 7]),
        (17, &[0, 1, 5, 16]),
        (100, &[3, 4, 50, 63, 64, 99]),
        (1000, &[0, 511, 512, 999]),
    ];
    let multi = multi_cases
        .iter()
        .map(|&(n, indices)| MultiCase {
            leaf_count: n as u64,
            leaf_indices: indices.iter().map(|&i| i as u64).collect(),
            leaves: data_hexes(indices.iter().map(|&i| i as u64)),
            root: root(n),
            proof: hexes(&common::multi_proof(&all[..n], indices)),
        })
        .collect();

    let range_cases: &[(usize, usize, usize)] = &[
        (1, 0, 1),
        (17, 0, 17),
        (17, 3, 9),
        (100, 10, 90),
        (1000, 0, 1),
        (1000, 500, 520),
        (1000, 999, 1000),
    ];
    let range = range_cases
        .iter()
        .map(|&(n, start, end)| {
            let indices: Vec<usize> = (start..end).collect();
            RangeCase {
                leaf_count: n as u64,
                start: start as u64,
                end: end as u64,
                leaves: data_hexes(start as u64..end as u64),
                root: root(n),
                proof: hexes(&common::multi_proof(&all[..n], &indices)),
            }
        })
        .collect();

    let ancestry_cases: &[(usize, usize)] = &[
        (0, 5),
        (1, 1),
        (1, 2),
        (3, 4),
        (4, 5),
        (5, 7),
        (6, 8),
        (7, 8),
        (8, 9),
        (15, 16),
        (16, 17),
        (17, 100),
        (100, 1000),
        (999, 1000),
    ];
    let ancestry = ancestry_cases
        .iter()
        .map(|&(old, new)| AncestryCase {
            old_leaf_count: old as u64,
            old_root: root(old),
            new_leaf_count: new as u64,
            new_root: root(new),
            proof: hexes(&common::ancestry_proof(&all[..new], old)),
        })
        .collect();

    Vectors {
        description: DESCRIPTION.to_owned(),
        cases,
        inclusion,
        multi,
        range,
        ancestry,
    }
}

fn read_vectors() -> Vectors {
    let text = std::fs::read_to_string(vectors_path()).expect("read tests/vectors/mmr.json");
    serde_json::from_str(&text).expect("parse tests/vectors/mmr.json")
}

fn h32(s: &str) -> [u8; 32] {
    hex::decode(s).expect("hex").try_into().expect("32 bytes")
}

fn proof_of(items: &[String]) -> Proof {
    Proof::from_hashes(items.iter().map(|s| h32(s)).collect())
}

fn leaf_of(s: &str) -> LeafHash {
    LeafHash::of(&hex::decode(s).expect("hex"))
}

/// Rewrites `tests/vectors/mmr.json` from the model.
#[test]
#[ignore = "rewrites the vectors file; run explicitly after a deliberate change"]
fn regenerate_vectors() {
    let mut text = serde_json::to_string_pretty(&model_vectors()).expect("serialize");
    text.push('\n');
    std::fs::write(vectors_path(), text).expect("write tests/vectors/mmr.json");
}

#[test]
fn vectors_file_is_up_to_date() {
    assert!(
        read_vectors() == model_vectors(),
        "tests/vectors/mmr.json is stale: regenerate it"
    );
}

#[test]
fn crate_matches_root_vectors() {
    let vectors = read_vectors();
    assert_eq!(vectors.cases.len(), SIZES.len());
    for case in &vectors.cases {
        let mut mmr = Mmr::default();
        for leaf in &case.leaves {
            mmr.append(&hex::decode(leaf).unwrap()).unwrap();
        }
        assert_eq!(mmr.leaf_count(), case.leaf_count);
        assert_eq!(
            hex::encode(mmr.root()),
            case.root,
            "root of {} leaves",
            case.leaf_count
        );
    }
    // Every smaller root is also answered from stored nodes.
    let mut mmr = Mmr::default();
    for i in 0..1000u64 {
        mmr.append(&i.to_be_bytes()).unwrap();
    }
    for case in &vectors.cases {
        assert_eq!(
            hex::encode(mmr.root_at(case.leaf_count).unwrap()),
            case.root
        );
    }
}

fn mmr_1000() -> Mmr<headway_mmr::MemStore> {
    let mut mmr = Mmr::default();
    for i in 0..1000u64 {
        mmr.append(&i.to_be_bytes()).unwrap();
    }
    mmr
}

#[test]
fn crate_matches_proof_vectors() {
    let vectors = read_vectors();
    let mmr = mmr_1000();
    for case in &vectors.inclusion {
        let proof = proof_of(&case.proof);
        assert_eq!(
            mmr.prove_inclusion(case.leaf_index, case.leaf_count)
                .unwrap(),
            proof,
            "{case:?}"
        );
        verify_inclusion(
            &h32(&case.root),
            case.leaf_count,
            case.leaf_index,
            &leaf_of(&case.leaf),
            &proof,
        )
        .unwrap();
    }
    for case in &vectors.multi {
        let proof = proof_of(&case.proof);
        assert_eq!(
            mmr.prove_multi(&case.leaf_indices, case.leaf_count)
                .unwrap(),
            proof,
            "{case:?}"
        );
        let leaves: Vec<(u64, LeafHash)> = case
            .leaf_indices
            .iter()
            .copied()
            .zip(case.leaves.iter().map(|l| leaf_of(l)))
            .collect();
        verify_multi(&h32(&case.root), case.leaf_count, &leaves, &proof).unwrap();
    }
    for case in &vectors.range {
        let proof = proof_of(&case.proof);
        assert_eq!(
            mmr.prove_range(case.start, case.end, case.leaf_count)
                .unwrap(),
            proof,
            "{case:?}"
        );
        let leaves: Vec<LeafHash> = case.leaves.iter().map(|l| leaf_of(l)).collect();
        verify_range(
            &h32(&case.root),
            case.leaf_count,
            case.start,
            &leaves,
            &proof,
        )
        .unwrap();
    }
    for case in &vectors.ancestry {
        let proof = proof_of(&case.proof);
        assert_eq!(
            mmr.prove_ancestry(case.old_leaf_count, case.new_leaf_count)
                .unwrap(),
            proof,
            "{case:?}"
        );
        verify_ancestry(
            &h32(&case.old_root),
            case.old_leaf_count,
            &h32(&case.new_root),
            case.new_leaf_count,
            &proof,
        )
        .unwrap();
    }
}
