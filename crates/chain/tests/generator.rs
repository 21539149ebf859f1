//! The devnet generator: determinism, schedule, history roots, and that
//! what it makes is accepted (good data) or rejected (each corruption kind).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use common::{chain, signed, small_chain};
use headway_chain::{
    ChainGenerator, Corruption, GeneratorConfig, GeneratorError, HeaderExt, HistoryAccumulator,
    MemState, execute_block, verify_batch, verify_commit_full,
};

#[test]
fn same_seed_same_chain_other_seed_other_chain() {
    let a = small_chain(1, 20);
    let b = small_chain(1, 20);
    let c = small_chain(2, 20);
    assert_eq!(a, b);
    assert_ne!(a[19].signed_header.header, c[19].signed_header.header);
}

#[test]
fn headers_link_and_carry_history_roots() {
    let blocks = small_chain(3, 40);
    let mut history = HistoryAccumulator::new();
    let mut prev: Option<&headway_chain::Header> = None;
    for block in &blocks {
        let header = &block.signed_header.header;
        assert_eq!(header.history_root, history.root());
        if let Some(prev) = prev {
            assert_eq!(header.last_block_id.unwrap().hash, prev.hash());
            assert!(header.time_ms > prev.time_ms);
            assert_eq!(header.validators_hash, prev.next_validators_hash);
        }
        verify_commit_full(
            "headway-devnet",
            header,
            &block.signed_header.commit,
            &block.validator_set,
        )
        .unwrap();
        history.push(&header.hash()).unwrap();
        prev = Some(header);
    }
}

#[test]
fn rotation_and_abrupt_replacement_follow_the_schedule() {
    let config = GeneratorConfig {
        validator_count: 8,
        rotation_interval: 10,
        rotation_percent: 25,
        replace_all_at: vec![25],
        ..GeneratorConfig::small(4)
    };
    let blocks = chain(config, 40);
    let keys = |i: usize| -> Vec<_> {
        blocks[i]
            .validator_set
            .validators
            .iter()
            .map(|v| v.pub_key)
            .collect()
    };
    let shared = |a: usize, b: usize| keys(a).iter().filter(|k| keys(b).contains(k)).count();
    assert_eq!(shared(0, 9), 8, "heights 1..=10 share a set");
    assert_eq!(shared(9, 10), 6, "height 11 replaces 2 of 8");
    assert_eq!(shared(23, 24), 0, "height 25 replaces everyone");
    for b in &blocks {
        assert_eq!(b.validator_set.validators.len(), 8);
        b.validator_set.validate().unwrap();
    }
}

#[test]
fn generated_chain_passes_verifier_and_executor() {
    let blocks = small_chain(5, 30);
    let verified = verify_batch(&blocks[0].trusted_state(), &signed(&blocks[1..])).unwrap();
    assert_eq!(verified.last_height, 30);
    let mut state = MemState::new();
    for b in &blocks {
        execute_block(&mut state, &b.block).unwrap();
    }
}

#[test]
fn each_corruption_kind_is_rejected_where_it_should_be() {
    let generator = ChainGenerator::new(GeneratorConfig::small(6)).unwrap();
    let blocks = small_chain(6, 5);
    let trusted = blocks[0].trusted_state();
    let mut state = MemState::new();
    for b in &blocks[..4] {
        execute_block(&mut state, &b.block).unwrap();
    }
    for kind in Corruption::ALL {
        let bad = generator.corrupt(&blocks[4], kind);
        assert_ne!(bad, blocks[4], "{kind:?} changed nothing");
        let mut batch = signed(&blocks[1..4]);
        batch.push(bad.signed_header.clone());
        let headers = verify_batch(&trusted, &batch);
        let executed = execute_block(&mut state.clone(), &bad.block);
        match kind {
            // The header chain is fine; the body or its result is not.
            Corruption::BodyMismatch => {
                assert!(headers.is_ok());
                assert!(matches!(
                    executed,
                    Err(headway_chain::ExecutionError::DataHashMismatch { .. })
                ));
            }
            Corruption::WrongStateRoot => {
                assert!(matches!(
                    executed,
                    Err(headway_chain::ExecutionError::StateRootMismatch { .. })
                ));
            }
            Corruption::BadSignature => assert!(matches!(
                headers,
                Err(headway_chain::VerifyError::InvalidSignature { height: 5, .. })
            )),
            Corruption::ForgedLinkage => assert!(matches!(
                headers,
                Err(headway_chain::VerifyError::LinkageBroken { height: 5, .. })
            )),
            Corruption::WrongValidatorSet => assert!(matches!(
                headers,
                Err(headway_chain::VerifyError::ValidatorSetMismatch { height: 5, .. })
            )),
            Corruption::CommitForOtherHeader => assert!(matches!(
                headers,
                Err(headway_chain::VerifyError::CommitBlockIdMismatch { height: 5, .. })
            )),
            Corruption::WrongChainId => assert!(matches!(
                headers,
                Err(headway_chain::VerifyError::ChainIdMismatch { height: 5, .. })
            )),
        }
    }
}

#[test]
fn bad_configs_are_refused() {
    let bad = [
        GeneratorConfig {
            validator_count: 0,
            ..GeneratorConfig::small(1)
        },
        GeneratorConfig {
            prefixes: vec![],
            ..GeneratorConfig::small(1)
        },
        GeneratorConfig {
            key_len: 0..=3,
            ..GeneratorConfig::small(1)
        },
        GeneratorConfig {
            chain_id: String::new(),
            ..GeneratorConfig::small(1)
        },
        GeneratorConfig {
            voting_power: 0..=3,
            ..GeneratorConfig::small(1)
        },
        GeneratorConfig {
            update_percent: 80,
            delete_percent: 30,
            ..GeneratorConfig::small(1)
        },
        GeneratorConfig {
            block_interval_ms: 0..=0,
            ..GeneratorConfig::small(1)
        },
    ];
    for config in bad {
        assert!(matches!(
            ChainGenerator::new(config),
            Err(GeneratorError::InvalidConfig { .. })
        ));
    }
}
