//! Block execution: state roots, incremental checksums, rejection of bodies
//! and results that differ from the header, atomicity.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use common::small_chain;
use headway_chain::{
    Block, ChainGenerator, Corruption, ExecutionError, GeneratorConfig, Hash, MemState, StateStore,
    Transaction, Write, compute_transition, data_hash, execute_block,
};
use proptest::prelude::*;

#[test]
fn generated_chain_executes_and_checksums_stay_exact() {
    let blocks = small_chain(1, 60);
    let mut state = MemState::new();
    for block in &blocks {
        let outcome = execute_block(&mut state, &block.block).unwrap();
        assert_eq!(outcome.state_root, block.block.header.state_root);
    }
    assert!(!state.is_empty());
    assert_eq!(state.checksums(), &state.recompute_checksums());
}

fn snapshot(state: &MemState) -> Vec<(Vec<u8>, Vec<u8>)> {
    state
        .records()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

#[test]
fn body_not_matching_its_header_is_rejected_and_state_untouched() {
    let generator = ChainGenerator::new(GeneratorConfig::small(2)).unwrap();
    let blocks = small_chain(2, 10);
    let mut state = MemState::new();
    for block in &blocks[..9] {
        execute_block(&mut state, &block.block).unwrap();
    }
    let before = (snapshot(&state), state.checksums().clone());
    let bad = generator.corrupt(&blocks[9], Corruption::BodyMismatch);
    let err = execute_block(&mut state, &bad.block).unwrap_err();
    assert!(
        matches!(err, ExecutionError::DataHashMismatch { height: 10, .. }),
        "{err}"
    );
    let bad = generator.corrupt(&blocks[9], Corruption::WrongStateRoot);
    let err = execute_block(&mut state, &bad.block).unwrap_err();
    assert!(
        matches!(err, ExecutionError::StateRootMismatch { height: 10, .. }),
        "{err}"
    );
    assert_eq!((snapshot(&state), state.checksums().clone()), before);
    execute_block(&mut state, &blocks[9].block).unwrap();
}

#[test]
fn writes_within_a_block_apply_in_order() {
    let w = |k: &[u8], v: Option<&[u8]>| Write {
        key: k.to_vec(),
        value: v.map(<[u8]>::to_vec),
    };
    let mut state = MemState::new();
    let txs = vec![
        Transaction {
            writes: vec![w(b"\x01a", Some(b"1")), w(b"\x01a", Some(b"2"))],
        },
        Transaction {
            writes: vec![
                w(b"\x02b", Some(b"x")),
                w(b"\x02b", None),
                w(b"\x01c", Some(b"3")),
            ],
        },
    ];
    let transition = compute_transition(&state, &txs).unwrap();
    assert_eq!(
        transition.changes.len(),
        2,
        "b is created and deleted: no change"
    );
    assert_eq!(transition.changed_prefixes, vec![1]);
    headway_chain::apply_transition(&mut state, transition).unwrap();
    assert_eq!(state.get(b"\x01a").unwrap(), Some(b"2".to_vec()));
    assert_eq!(state.get(b"\x02b").unwrap(), None);
    assert_eq!(state.checksums(), &state.recompute_checksums());
}

#[test]
fn malformed_block_is_rejected() {
    let blocks = small_chain(3, 1);
    let mut block: Block = blocks[0].block.clone();
    block.txs = vec![Transaction {
        writes: vec![Write {
            key: vec![],
            value: None,
        }],
    }];
    block.header.data_hash = data_hash(&block.txs);
    let err = execute_block(&mut MemState::new(), &block).unwrap_err();
    assert!(
        matches!(err, ExecutionError::Malformed { height: 1, .. }),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Incremental checksums equal checksums recomputed from scratch, and one
    /// block of writes gives the same root as the same writes split in blocks.
    #[test]
    fn incremental_equals_recomputed(
        writes in proptest::collection::vec(
            (0u8..3, 0u8..6, proptest::option::of(proptest::collection::vec(any::<u8>(), 0..6))),
            1..30),
        split in 1usize..30,
    ) {
        let writes: Vec<Write> = writes
            .into_iter()
            .map(|(p, k, v)| Write { key: vec![p, k], value: v })
            .collect();
        let mut one = MemState::new();
        let t = compute_transition(&one, &[Transaction { writes: writes.clone() }]).unwrap();
        let root_one = t.state_root;
        headway_chain::apply_transition(&mut one, t).unwrap();
        prop_assert_eq!(one.checksums(), &one.recompute_checksums());

        let mut many = MemState::new();
        let mut root_many = Hash::ZERO;
        for chunk in writes.chunks(split) {
            let t = compute_transition(&many, &[Transaction { writes: chunk.to_vec() }]).unwrap();
            root_many = t.state_root;
            headway_chain::apply_transition(&mut many, t).unwrap();
        }
        prop_assert_eq!(root_one, root_many);
        prop_assert_eq!(one.checksums(), many.checksums());
    }
}
