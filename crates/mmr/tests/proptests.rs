//! Property tests: the crate against the naive model in `common/`, and every
//! verifier against mutated and arbitrary proofs (rejected, never a panic).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure should panic"
)]

mod common;

use headway_mmr::{
    Hash, LeafHash, MAX_PROOF_HASHES, MemStore, Mmr, NodeStore, Proof, ProofError, empty_root,
    node_hash, verify_ancestry, verify_inclusion, verify_multi, verify_range,
};
use proptest::prelude::*;
use proptest::sample::subsequence;

const MAX_LEAVES: u64 = 150;

fn build(n: u64) -> (Mmr<MemStore>, Vec<common::H>) {
    let mut mmr = Mmr::default();
    let mut model = Vec::new();
    for i in 0..n {
        let data = common::leaf_data(i);
        assert_eq!(mmr.append(&data).unwrap(), i);
        model.push(common::leaf(&data));
    }
    (mmr, model)
}

fn leaf(i: u64) -> LeafHash {
    LeafHash::of(&common::leaf_data(i))
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A way of damaging a proof's hashes.
#[derive(Clone, Debug)]
enum Mutation {
    FlipBit { item: usize, bit: usize },
    Truncate { keep: usize },
    Extend { extra: Hash },
    Duplicate { item: usize },
    Remove { item: usize },
    Swap { a: usize, b: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0usize..256).prop_map(|(item, bit)| Mutation::FlipBit { item, bit }),
        any::<usize>().prop_map(|keep| Mutation::Truncate { keep }),
        any::<[u8; 32]>().prop_map(|extra| Mutation::Extend { extra }),
        any::<usize>().prop_map(|item| Mutation::Duplicate { item }),
        any::<usize>().prop_map(|item| Mutation::Remove { item }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap { a, b }),
    ]
}

/// Applies `mutation`; `None` when it would leave the proof unchanged.
fn mutate(proof: &Proof, mutation: &Mutation) -> Option<Proof> {
    let mut hashes = proof.hashes().to_vec();
    let len = hashes.len();
    match *mutation {
        Mutation::FlipBit { item, bit } => {
            if len == 0 {
                return None;
            }
            hashes[item % len][bit / 8] ^= 1 << (bit % 8);
        }
        Mutation::Truncate { keep } => {
            if len == 0 {
                return None;
            }
            hashes.truncate(keep % len);
        }
        Mutation::Extend { extra } => hashes.push(extra),
        Mutation::Duplicate { item } => {
            if len == 0 {
                return None;
            }
            let copy = hashes[item % len];
            hashes.insert(item % len, copy);
        }
        Mutation::Remove { item } => {
            if len == 0 {
                return None;
            }
            hashes.remove(item % len);
        }
        Mutation::Swap { a, b } => {
            if len < 2 || hashes[a % len] == hashes[b % len] {
                return None;
            }
            hashes.swap(a % len, b % len);
        }
    }
    Some(Proof::from_hashes(hashes))
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn roots_and_peaks_match_model(n in 0..=MAX_LEAVES, earlier in any::<u64>()) {
        let (mmr, model) = build(n);
        prop_assert_eq!(mmr.leaf_count(), n);
        prop_assert_eq!(mmr.root(), common::root(&model));
        prop_assert_eq!(mmr.peaks().to_vec(), common::peaks(&model));
        let k = earlier % (n + 1);
        prop_assert_eq!(mmr.root_at(k).unwrap(), common::root(&model[..k as usize]));
        prop_assert!(mmr.root_at(n + 1).is_err());
    }

    #[test]
    fn appends_truncates_and_reopens_match_model(
        ops in prop::collection::vec((any::<bool>(), 0u64..40), 1..12),
    ) {
        let mut mmr = Mmr::default();
        let mut model: Vec<common::H> = Vec::new();
        let mut next_data = 0u64;
        for (append, amount) in ops {
            if append {
                for _ in 0..amount {
                    let data = common::leaf_data(next_data);
                    next_data += 1;
                    mmr.append(&data).unwrap();
                    model.push(common::leaf(&data));
                }
            } else {
                let to = model.len() as u64 - amount.min(model.len() as u64);
                mmr.truncate(to).unwrap();
                model.truncate(to as usize);
            }
            prop_assert_eq!(mmr.root(), common::root(&model));
            prop_assert_eq!(mmr.store().node_count(), 2 * model.len() as u64 - u64::from((model.len() as u64).count_ones()));
        }
        let root = mmr.root();
        let reopened = Mmr::new(mmr.into_store()).unwrap();
        prop_assert_eq!(reopened.leaf_count(), model.len() as u64);
        prop_assert_eq!(reopened.root(), root);
        for (i, hash) in model.iter().enumerate() {
            prop_assert_eq!(reopened.leaf_hash(i as u64).unwrap().to_bytes(), *hash);
        }
    }

    #[test]
    fn runs_of_leaves_extended_at_once_match_appends(
        ops in prop::collection::vec((0u8..3, 0u64..70), 1..12),
    ) {
        // 0: append one by one, 1: extend with a run, 2: truncate.
        let mut mmr = Mmr::default();
        let mut model: Vec<common::H> = Vec::new();
        let mut next_data = 0u64;
        for (op, amount) in ops {
            match op {
                2 => {
                    let to = model.len() as u64 - amount.min(model.len() as u64);
                    mmr.truncate(to).unwrap();
                    model.truncate(to as usize);
                }
                _ => {
                    let run: Vec<_> = (0..amount).map(|i| common::leaf_data(next_data + i)).collect();
                    next_data += amount;
                    if op == 0 {
                        for data in &run {
                            mmr.append(data).unwrap();
                        }
                    } else {
                        let leaves = run.iter().map(|data| LeafHash::of(data));
                        prop_assert_eq!(mmr.extend_leaf_hashes(leaves).unwrap(), amount);
                    }
                    model.extend(run.iter().map(|data| common::leaf(data)));
                }
            }
            prop_assert_eq!(mmr.leaf_count(), model.len() as u64);
            prop_assert_eq!(mmr.root(), common::root(&model));
            prop_assert_eq!(mmr.peaks().to_vec(), common::peaks(&model));
        }
    }

    #[test]
    fn multi_proofs_match_model_and_verify(
        (n, indices) in (1..=MAX_LEAVES).prop_flat_map(|n| (Just(n), subsequence((0..n).collect::<Vec<_>>(), 1..=(n as usize).min(12)))),
        at_extra in 0u64..20,
    ) {
        let (mmr, model) = build(n + at_extra);
        let root = common::root(&model[..n as usize]);
        let proof = mmr.prove_multi(&indices, n).unwrap();
        let model_indices: Vec<usize> = indices.iter().map(|&i| i as usize).collect();
        prop_assert_eq!(proof.hashes().to_vec(), common::multi_proof(&model[..n as usize], &model_indices));
        let leaves: Vec<(u64, LeafHash)> = indices.iter().map(|&i| (i, leaf(i))).collect();
        prop_assert_eq!(verify_multi(&root, n, &leaves, &proof), Ok(()));
        for &i in &indices {
            let single = mmr.prove_inclusion(i, n).unwrap();
            prop_assert_eq!(&single, &mmr.prove_multi(&[i], n).unwrap());
            prop_assert_eq!(verify_inclusion(&root, n, i, &leaf(i), &single), Ok(()));
        }
    }

    #[test]
    fn range_and_ancestry_proofs_match_model_and_verify(
        n in 1..=MAX_LEAVES, a in any::<u64>(), b in any::<u64>(), at_extra in 0u64..20,
    ) {
        let (mmr, model) = build(n + at_extra);
        let (start, end) = { let x = a % n; let y = b % n; (x.min(y), x.max(y) + 1) };
        let root = common::root(&model[..n as usize]);
        let proof = mmr.prove_range(start, end, n).unwrap();
        let indices: Vec<usize> = (start as usize..end as usize).collect();
        prop_assert_eq!(proof.hashes().to_vec(), common::multi_proof(&model[..n as usize], &indices));
        let leaves: Vec<LeafHash> = (start..end).map(leaf).collect();
        prop_assert_eq!(verify_range(&root, n, start, &leaves, &proof), Ok(()));

        let old = a % (n + 1);
        let proof = mmr.prove_ancestry(old, n).unwrap();
        prop_assert_eq!(proof.hashes().to_vec(), common::ancestry_proof(&model[..n as usize], old as usize));
        let old_root = common::root(&model[..old as usize]);
        prop_assert_eq!(verify_ancestry(&old_root, old, &root, n, &proof), Ok(()));
        // Encoding round trip.
        prop_assert_eq!(Proof::from_bytes(&proof.to_bytes()).unwrap(), proof);
    }

    #[test]
    fn mutated_inclusion_and_multi_proofs_are_rejected(
        n in 1..=MAX_LEAVES, i in any::<u64>(), j in any::<u64>(), m in mutation(),
    ) {
        let (mmr, _) = build(n);
        let root = mmr.root();
        let i = i % n;
        let proof = mmr.prove_inclusion(i, n).unwrap();
        if let Some(bad) = mutate(&proof, &m) {
            prop_assert!(verify_inclusion(&root, n, i, &leaf(i), &bad).is_err());
            prop_assert!(verify_multi(&root, n, &[(i, leaf(i))], &bad).is_err());
        }
        // Wrong index, wrong leaf, wrong count, wrong root.
        let other = j % n;
        if other != i {
            prop_assert!(verify_inclusion(&root, n, other, &leaf(i), &proof).is_err());
            prop_assert!(verify_inclusion(&root, n, i, &leaf(other), &proof).is_err());
        }
        prop_assert!(verify_inclusion(&root, n + 1 + j % 1000, i, &leaf(i), &proof).is_err());
        prop_assert!(verify_inclusion(&root, n - 1, i, &leaf(i), &proof).is_err());
        prop_assert!(verify_inclusion(&empty_root(), n, i, &leaf(i), &proof).is_err());
    }

    #[test]
    fn mutated_range_and_ancestry_proofs_are_rejected(
        n in 2..=MAX_LEAVES, a in any::<u64>(), b in any::<u64>(), m in mutation(),
    ) {
        let (mmr, _) = build(n);
        let root = mmr.root();
        let (start, end) = { let x = a % n; let y = b % n; (x.min(y), x.max(y) + 1) };
        let leaves: Vec<LeafHash> = (start..end).map(leaf).collect();
        let proof = mmr.prove_range(start, end, n).unwrap();
        if let Some(bad) = mutate(&proof, &m) {
            prop_assert!(verify_range(&root, n, start, &leaves, &bad).is_err());
        }
        // Shifted range, dropped leaf, extra leaf.
        if end < n {
            prop_assert!(verify_range(&root, n, start + 1, &leaves, &proof).is_err());
        }
        if leaves.len() > 1 {
            prop_assert!(verify_range(&root, n, start, &leaves[1..], &proof).is_err());
            prop_assert!(verify_range(&root, n, start, &leaves[..leaves.len() - 1], &proof).is_err());
        }
        if end < n {
            let mut more = leaves.clone();
            more.push(leaf(end));
            prop_assert!(verify_range(&root, n, start, &more, &proof).is_err());
        }

        let old = a % n;
        let old_root = mmr.root_at(old).unwrap();
        let proof = mmr.prove_ancestry(old, n).unwrap();
        if let Some(bad) = mutate(&proof, &m) {
            prop_assert!(verify_ancestry(&old_root, old, &root, n, &bad).is_err());
        }
        // Wrong counts or swapped roots.
        prop_assert!(verify_ancestry(&old_root, old + 1, &root, n, &proof).is_err());
        prop_assert!(verify_ancestry(&old_root, old, &root, n - 1, &proof).is_err());
        prop_assert!(verify_ancestry(&root, n, &old_root, old, &proof).is_err());
        let other = mmr.root_at((old + 1 + b % n) % n).unwrap();
        if other != old_root {
            prop_assert!(verify_ancestry(&other, old, &root, n, &proof).is_err());
        }
    }

    #[test]
    fn mutated_multi_proofs_and_bad_index_lists_are_rejected(
        (n, indices) in (2..=MAX_LEAVES).prop_flat_map(|n| (Just(n), subsequence((0..n).collect::<Vec<_>>(), 2..=(n as usize).min(8)))),
        m in mutation(),
        pick in any::<usize>(),
    ) {
        let (mmr, _) = build(n);
        let root = mmr.root();
        let leaves: Vec<(u64, LeafHash)> = indices.iter().map(|&i| (i, leaf(i))).collect();
        let proof = mmr.prove_multi(&indices, n).unwrap();
        if let Some(bad) = mutate(&proof, &m) {
            prop_assert!(verify_multi(&root, n, &leaves, &bad).is_err());
        }
        // Duplicated, unsorted, dropped and out-of-range indices.
        let k = pick % leaves.len();
        let mut dup = leaves.clone();
        dup.insert(k, leaves[k]);
        prop_assert_eq!(verify_multi(&root, n, &dup, &proof), Err(ProofError::DuplicateLeafIndex { leaf_index: leaves[k].0 }));
        let mut unsorted = leaves.clone();
        unsorted.reverse();
        let unsorted_rejected = matches!(verify_multi(&root, n, &unsorted, &proof), Err(ProofError::UnsortedLeafIndices { .. }));
        prop_assert!(unsorted_rejected);
        let mut fewer = leaves.clone();
        fewer.remove(k);
        prop_assert!(verify_multi(&root, n, &fewer, &proof).is_err());
        let mut beyond = leaves.clone();
        beyond.push((n, leaf(n)));
        let beyond_rejected = matches!(verify_multi(&root, n, &beyond, &proof), Err(ProofError::LeafIndexOutOfRange { .. }));
        prop_assert!(beyond_rejected);
        prop_assert_eq!(verify_multi(&root, n, &[], &proof), Err(ProofError::NoLeaves));
        // Generation refuses the same bad requests.
        let dup_indices: Vec<u64> = dup.iter().map(|&(i, _)| i).collect();
        prop_assert!(mmr.prove_multi(&dup_indices, n).is_err());
        prop_assert!(mmr.prove_multi(&[n], n).is_err());
    }

    #[test]
    fn arbitrary_inputs_never_panic(
        leaf_count in prop_oneof![any::<u64>(), (u64::MAX - 4)..=u64::MAX, 0u64..64],
        other_count in prop_oneof![any::<u64>(), (u64::MAX - 4)..=u64::MAX, 0u64..64],
        index in prop_oneof![any::<u64>(), (u64::MAX - 4)..=u64::MAX, 0u64..64],
        hashes in prop::collection::vec(any::<[u8; 32]>(), 0..140),
        leaf_bytes in prop::collection::vec(any::<[u8; 32]>(), 0..6),
        root in any::<[u8; 32]>(),
    ) {
        let proof = Proof::from_hashes(hashes);
        let leaves: Vec<LeafHash> = leaf_bytes.iter().map(|b| LeafHash::from_bytes(*b)).collect();
        let indexed: Vec<(u64, LeafHash)> = leaves.iter().enumerate().map(|(k, l)| (index.wrapping_add(k as u64), *l)).collect();
        let first = leaves.first().copied().unwrap_or_default();
        prop_assert!(verify_inclusion(&root, leaf_count, index, &first, &proof).is_err());
        prop_assert!(verify_multi(&root, leaf_count, &indexed, &proof).is_err());
        prop_assert!(verify_range(&root, leaf_count, index, &leaves, &proof).is_err());
        prop_assert!(verify_ancestry(&root, other_count, &root, leaf_count, &proof).is_err());
        prop_assert!(verify_ancestry(&root, leaf_count.min(other_count), &empty_root(), leaf_count.max(other_count), &proof).is_err());
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        match Proof::from_bytes(&bytes) {
            Ok(proof) => {
                prop_assert_eq!(bytes.len() % 32, 0);
                prop_assert_eq!(proof.to_bytes(), bytes);
            }
            Err(e) => prop_assert_eq!(e, ProofError::BadEncodingLength { len: bytes.len() }),
        }
    }
}

#[test]
fn interior_nodes_do_not_verify_as_leaves() {
    let (mmr, model) = build(8);
    let root = mmr.root();
    let parent = node_hash(&model[0], &model[1]);
    // The proof of leaf 0 without its first item is a valid path for the
    // parent node; claimed as a leaf it must fail however it is presented.
    let proof = mmr.prove_inclusion(0, 8).unwrap();
    let path_of_parent = Proof::from_hashes(proof.hashes()[1..].to_vec());
    for claimed in [LeafHash::from_bytes(parent), LeafHash::of(&parent)] {
        for index in 0..8 {
            assert!(verify_inclusion(&root, 8, index, &claimed, &path_of_parent).is_err());
            assert!(verify_inclusion(&root, 8, index, &claimed, &proof).is_err());
            assert!(verify_multi(&root, 8, &[(index, claimed)], &path_of_parent).is_err());
        }
        // As if the MMR had 4 leaves: the count is bound into the root.
        assert!(verify_inclusion(&root, 4, 0, &claimed, &path_of_parent).is_err());
    }
    // Leaf data that equals an interior hash is just data: its leaf hash differs.
    assert_ne!(LeafHash::of(&parent).to_bytes(), parent);
}

#[test]
fn huge_counts_are_rejected_without_overflow() {
    let proof = Proof::from_hashes(vec![[7; 32]; 64]);
    let leaf = leaf(0);
    for count in [u64::MAX, u64::MAX - 1, 1 << 63, (1 << 63) + 1] {
        assert!(verify_inclusion(&[0; 32], count, count - 1, &leaf, &proof).is_err());
        assert!(verify_inclusion(&[0; 32], count, count, &leaf, &proof).is_err());
        assert!(verify_range(&[0; 32], count, count - 1, &[leaf, leaf], &proof).is_err());
        assert!(verify_range(&[0; 32], count, u64::MAX, &[leaf], &proof).is_err());
        assert!(verify_ancestry(&[0; 32], count - 1, &[0; 32], count, &proof).is_err());
        assert!(verify_ancestry(&[0; 32], 0, &[0; 32], count, &proof).is_err());
    }
    // An over-long proof is refused before any hashing.
    let long = Proof::from_hashes(vec![[0; 32]; MAX_PROOF_HASHES + 1]);
    assert!(matches!(
        verify_inclusion(&[0; 32], 1, 0, &leaf, &long),
        Err(ProofError::TooManyHashes { .. })
    ));
    assert!(matches!(
        Proof::from_bytes(&vec![0; 32 * (MAX_PROOF_HASHES + 1)]),
        Err(ProofError::TooManyHashes { .. })
    ));
}

#[test]
fn edge_cases() {
    let mut mmr = Mmr::default();
    assert_eq!(mmr.root(), empty_root());
    assert_eq!(mmr.root(), common::root(&[]));
    assert!(mmr.prove_inclusion(0, 0).is_err());
    // Ancestry from the empty MMR and of an MMR with itself.
    for i in 0..5u64 {
        mmr.append(&i.to_be_bytes()).unwrap();
    }
    let root = mmr.root();
    verify_ancestry(
        &empty_root(),
        0,
        &root,
        5,
        &mmr.prove_ancestry(0, 5).unwrap(),
    )
    .unwrap();
    verify_ancestry(&root, 5, &root, 5, &mmr.prove_ancestry(5, 5).unwrap()).unwrap();
    assert!(mmr.prove_ancestry(5, 4).is_err());
    assert!(mmr.prove_ancestry(4, 6).is_err());
    // The single leaf of a one-leaf MMR has an empty proof.
    let (one, _) = build(1);
    let proof = one.prove_inclusion(0, 1).unwrap();
    assert!(proof.is_empty());
    verify_inclusion(&one.root(), 1, 0, &leaf(0), &proof).unwrap();
    assert!(verify_inclusion(&one.root(), 1, 0, &leaf(1), &proof).is_err());
    // A store that is not an MMR size is refused.
    let mut store = MemStore::new();
    store.append_nodes(&[[0; 32], [1; 32]]).unwrap();
    assert!(Mmr::new(store).is_err());
    // Truncating forward is refused; truncating to zero gives the empty root.
    assert!(mmr.truncate(6).is_err());
    mmr.truncate(0).unwrap();
    assert_eq!(mmr.root(), empty_root());
    assert_eq!(mmr.store().node_count(), 0);
}
