//! Header-sync batch verification (seed 003) and the NOTES holes 1–4.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use common::{chain, signed, small_chain, static_config};
use headway_chain::{
    BlockId, ChainGenerator, Corruption, GeneratorConfig, HeaderExt, SignedHeader, TrustedState,
    VerifyError, verify_batch, verify_batch_full,
};

#[test]
fn valid_batches_verify_and_move_trust_to_the_last_header() {
    let blocks = small_chain(1, 40);
    let mut trusted = blocks[0].trusted_state();
    for window in blocks[1..].chunks(13) {
        let verified = verify_batch(&trusted, &signed(window)).expect("valid batch");
        assert_eq!(verified.first_height, window[0].height());
        assert_eq!(verified.last_height, window.last().unwrap().height());
        assert_eq!(verified.anchors.last(), Some(&verified.last_height));
        assert_eq!(
            verified.trusted.validator_set(),
            &window.last().unwrap().validator_set
        );
        trusted = verified.trusted;
    }
    assert_eq!(trusted.height(), 40);
}

#[test]
fn skip_verification_checks_one_commit_where_full_checks_all() {
    let blocks = chain(static_config(2, 10), 21);
    let trusted = blocks[0].trusted_state();
    let batch = signed(&blocks[1..]);
    let skip = verify_batch(&trusted, &batch).unwrap();
    let full = verify_batch_full(&trusted, &batch).unwrap();
    assert_eq!(skip.anchors, vec![21]);
    assert_eq!(full.anchors.len(), 20);
    // Same set: only the 2/3 tally runs, and it stops at 7 of 10 equal votes.
    assert_eq!(skip.signatures_verified, 7);
    assert_eq!(full.signatures_verified, 20 * 7);
    assert_eq!(skip.trusted, full.trusted);
}

#[test]
fn input_trusted_state_is_unchanged_when_a_batch_fails() {
    let blocks = small_chain(3, 12);
    let trusted = blocks[0].trusted_state();
    let before = trusted.clone();
    let mut batch = signed(&blocks[1..]);
    batch[10].commit.signatures[0].signature.0[5] ^= 1;
    assert!(verify_batch(&trusted, &batch).is_err());
    assert_eq!(trusted, before);
}

#[test]
fn hole1_commit_not_bound_to_header_is_rejected() {
    // A forged, internally linked batch ending in a real commit: every header
    // is rewritten (another state root) and re-linked, commits kept as they were.
    let blocks = small_chain(4, 8);
    let trusted = blocks[0].trusted_state();
    let mut batch = signed(&blocks[1..]);
    let mut prev = trusted.header_hash();
    for sh in &mut batch {
        sh.header.state_root.0[0] ^= 0xFF;
        sh.header.last_block_id = Some(BlockId { hash: prev });
        prev = sh.header.hash();
    }
    let err = verify_batch(&trusted, &batch).unwrap_err();
    assert!(
        matches!(err, VerifyError::CommitBlockIdMismatch { height: 2, .. }),
        "{err}"
    );

    // Only the last header forged: still caught at its own height.
    let mut batch = signed(&blocks[1..]);
    batch.last_mut().unwrap().header.time_ms += 1;
    let err = verify_batch(&trusted, &batch).unwrap_err();
    assert!(
        matches!(err, VerifyError::CommitBlockIdMismatch { height: 8, .. }),
        "{err}"
    );

    // A commit for the right block id but another height.
    let mut batch = signed(&blocks[1..]);
    batch[2].commit.height += 1;
    let err = verify_batch(&trusted, &batch).unwrap_err();
    assert_eq!(err.height(), 4);
}

#[test]
fn hole1_commit_from_another_chain_is_rejected() {
    let generator = ChainGenerator::new(GeneratorConfig::small(5)).unwrap();
    let blocks = small_chain(5, 6);
    let trusted = blocks[0].trusted_state();
    let mut batch = signed(&blocks[1..]);
    batch[4] = generator
        .corrupt(&blocks[5], Corruption::WrongChainId)
        .signed_header;
    let err = verify_batch(&trusted, &batch).unwrap_err();
    assert!(
        matches!(err, VerifyError::ChainIdMismatch { height: 6, .. }),
        "{err}"
    );
}

#[test]
fn hole2_validator_set_is_attached_where_validators_hash_changes() {
    let blocks = small_chain(6, 30);
    let mut changes = 0;
    for pair in blocks.windows(2) {
        let (prev, cur) = (&pair[0].signed_header, &pair[1].signed_header);
        let changed = cur.header.validators_hash != prev.header.validators_hash;
        assert_eq!(
            cur.validator_set.is_some(),
            changed,
            "height {}",
            cur.header.height
        );
        // The comparison of the original implementation never fires.
        assert_eq!(prev.header.next_validators_hash, cur.header.validators_hash);
        changes += usize::from(changed);
    }
    assert!(changes >= 5);

    // Dropping the attached set at a change is an error, not a silent pass.
    let trusted = blocks[0].trusted_state();
    let mut batch = signed(&blocks[1..]);
    let at = batch
        .iter()
        .position(|s| s.validator_set.is_some())
        .unwrap();
    batch[at].validator_set = None;
    let err = verify_batch(&trusted, &batch).unwrap_err();
    assert_eq!(
        err,
        VerifyError::MissingValidatorSet {
            height: batch[at].header.height
        }
    );
}

#[test]
fn hole2_attached_set_must_hash_to_validators_hash() {
    let generator = ChainGenerator::new(GeneratorConfig::small(7)).unwrap();
    let blocks = small_chain(7, 10);
    let trusted = blocks[0].trusted_state();
    let mut batch = signed(&blocks[1..]);
    batch[3] = generator
        .corrupt(&blocks[4], Corruption::WrongValidatorSet)
        .signed_header;
    let err = verify_batch(&trusted, &batch).unwrap_err();
    assert!(
        matches!(err, VerifyError::ValidatorSetMismatch { height: 5, .. }),
        "{err}"
    );
}

#[test]
fn hole3_intermediate_commit_must_be_bound() {
    let generator = ChainGenerator::new(GeneratorConfig::small(8)).unwrap();
    let blocks = small_chain(8, 12);
    let trusted = blocks[0].trusted_state();
    for index in [0, 5, 9] {
        let mut batch = signed(&blocks[1..]);
        let height = batch[index].header.height;
        batch[index].commit = generator
            .corrupt(&blocks[index + 1], Corruption::CommitForOtherHeader)
            .signed_header
            .commit;
        let err = verify_batch(&trusted, &batch).unwrap_err();
        assert!(
            matches!(err, VerifyError::CommitBlockIdMismatch { height: h, .. } if h == height),
            "{err}"
        );
    }
}

#[test]
fn hole3_intermediate_header_must_match_next_last_block_id() {
    let generator = ChainGenerator::new(GeneratorConfig::small(9)).unwrap();
    let blocks = small_chain(9, 10);
    let trusted = blocks[0].trusted_state();
    let mut batch = signed(&blocks[1..]);
    // A validly signed fork of height 5: its own commit is fine, linkage is not.
    batch[3] = generator
        .corrupt(&blocks[4], Corruption::ForgedLinkage)
        .signed_header;
    let err = verify_batch(&trusted, &batch).unwrap_err();
    assert!(
        matches!(err, VerifyError::LinkageBroken { height: 5, .. }),
        "{err}"
    );
    // The same with a re-signed header at 5 that keeps its link: 6 no longer links to it.
    let mut batch = signed(&blocks[1..]);
    batch[3] = generator
        .corrupt(&blocks[4], Corruption::WrongStateRoot)
        .signed_header;
    let err = verify_batch(&trusted, &batch).unwrap_err();
    assert!(
        matches!(err, VerifyError::LinkageBroken { height: 6, .. }),
        "{err}"
    );
}

#[test]
fn hole4_non_adjacent_header_needs_two_thirds_of_its_own_set() {
    // Same set as trusted: > 1/3 is not enough, +2/3 of it is required.
    let blocks = chain(static_config(10, 9), 6);
    let trusted = blocks[0].trusted_state();
    let mut batch = signed(&blocks[1..]);
    batch.last_mut().unwrap().commit.signatures.truncate(4); // 4/9 > 1/3, < 2/3
    let err = verify_batch(&trusted, &batch).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::NotEnoughOwnPower {
                height: 6,
                tallied: 40,
                total: 90
            }
        ),
        "{err}"
    );

    // A rotated set: > 1/3 of the trusted set signed, but not +2/3 of the header's own set.
    let config = GeneratorConfig {
        validator_count: 12,
        voting_power: 10..=10,
        rotation_interval: 3,
        rotation_percent: 25,
        ..GeneratorConfig::small(11)
    };
    let blocks = chain(config, 6);
    let trusted = blocks[0].trusted_state();
    let mut batch = signed(&blocks[1..]);
    let own = &blocks[5].validator_set;
    assert_ne!(own, trusted.validator_set());
    let trusted_addresses: Vec<_> = trusted
        .validator_set()
        .validators
        .iter()
        .map(|v| headway_chain::address_of(&v.pub_key))
        .collect();
    let last = batch.last_mut().unwrap();
    last.commit
        .signatures
        .retain(|s| trusted_addresses.contains(&s.validator_address));
    last.commit.signatures.truncate(5); // 5/12 of the trusted set; 5/12 of the own set
    let err = verify_batch(&trusted, &batch).unwrap_err();
    assert!(
        matches!(err, VerifyError::NotEnoughOwnPower { height: 6, .. }),
        "{err}"
    );
}

#[test]
fn abrupt_set_replacement_inside_a_batch_is_crossed_by_backward_search() {
    let config = GeneratorConfig {
        replace_all_at: vec![10, 20],
        ..GeneratorConfig::small(12)
    };
    let blocks = chain(config, 30);
    let trusted = blocks[0].trusted_state();
    let verified = verify_batch(&trusted, &signed(&blocks[1..])).unwrap();
    // Anchors: the last header before the first replacement (9), the header
    // adjacent to it (10), then onward across the second replacement.
    assert_eq!(verified.anchors.first(), Some(&9));
    assert!(verified.anchors.contains(&10));
    assert!(verified.anchors.contains(&20));
    assert_eq!(verified.anchors.last(), Some(&30));
    assert_eq!(verified.trusted.validator_set(), &blocks[29].validator_set);
}

#[test]
fn no_trusted_path_when_replaced_set_is_not_adjacent() {
    // A batch that starts after the replacement, trusted from before it: the
    // first header of the batch is adjacent, so a gap must be forged to fail.
    let config = GeneratorConfig {
        replace_all_at: vec![5],
        ..GeneratorConfig::small(13)
    };
    let blocks = chain(config, 10);
    let trusted = blocks[0].trusted_state();
    let mut batch = signed(&blocks[1..]);
    // Strip signatures from every header the old set could vouch for.
    for sh in &mut batch[..3] {
        sh.commit.signatures.truncate(1);
    }
    let err = verify_batch(&trusted, &batch).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::NotEnoughOwnPower { .. } | VerifyError::NoTrustedPath { .. }
        ),
        "{err}"
    );
}

#[test]
fn structural_batch_rules() {
    let blocks = small_chain(14, 8);
    let trusted = blocks[0].trusted_state();
    assert!(matches!(
        verify_batch::<SignedHeader>(&trusted, &[]),
        Err(VerifyError::EmptyBatch { height: 2 })
    ));
    let mut gap = signed(&blocks[1..]);
    gap.remove(2);
    assert!(matches!(
        verify_batch(&trusted, &gap),
        Err(VerifyError::NonSequentialHeight {
            height: 5,
            expected: 4
        })
    ));
    let from_later = blocks[3].trusted_state();
    assert!(matches!(
        verify_batch(&from_later, &signed(&blocks[1..])),
        Err(VerifyError::NonSequentialHeight { .. })
    ));
    let long: Vec<_> = chain(GeneratorConfig::small(14), 53);
    assert!(matches!(
        verify_batch(&long[0].trusted_state(), &signed(&long[1..])),
        Err(VerifyError::BatchTooLong {
            len: 52,
            max: 50,
            ..
        })
    ));
    // validators_hash must continue next_validators_hash.
    let mut batch = signed(&blocks[1..]);
    batch[0].header.validators_hash.0[0] ^= 1;
    assert!(matches!(
        verify_batch(&trusted, &batch),
        Err(VerifyError::CommitBlockIdMismatch { .. }
            | VerifyError::ValidatorsHashDiscontinuity { .. })
    ));
    // A trusted state refuses a set that is not its header's.
    assert!(matches!(
        TrustedState::new(blocks[0].signed_header.header.clone(), {
            let mut set = blocks[0].validator_set.clone();
            set.validators[0].voting_power += 1;
            set
        }),
        Err(VerifyError::ValidatorSetMismatch { .. })
    ));
}

#[test]
fn every_corruption_kind_is_rejected_by_batch_or_execution() {
    let generator = ChainGenerator::new(GeneratorConfig::small(15)).unwrap();
    let blocks = small_chain(15, 8);
    let trusted = blocks[0].trusted_state();
    for kind in Corruption::ALL {
        let mut batch = signed(&blocks[1..]);
        let bad = generator.corrupt(&blocks[7], kind);
        batch[6] = bad.signed_header.clone();
        let header_result = verify_batch(&trusted, &batch);
        let mut state = headway_chain::MemState::new();
        for b in &blocks[..7] {
            headway_chain::execute_block(&mut state, &b.block).unwrap();
        }
        let exec_result = headway_chain::execute_block(&mut state, &bad.block);
        match kind {
            Corruption::BodyMismatch | Corruption::WrongStateRoot => {
                assert!(exec_result.is_err(), "{kind:?} executed");
            }
            _ => assert!(header_result.is_err(), "{kind:?} verified"),
        }
    }
}

/// Headers hashed beforehand (`Hashed`, as header sync hashes them once for
/// verification and storage) verify exactly as plain ones, and fail the same.
#[test]
fn hashed_batches_verify_as_plain_ones() {
    use headway_chain::Hashed;
    let blocks = small_chain(40, 8);
    let trusted = blocks[0].trusted_state();
    let plain = signed(&blocks[1..]);
    let hashed = Hashed::all(plain.clone());
    assert_eq!(
        verify_batch(&trusted, &hashed).unwrap(),
        verify_batch(&trusted, &plain).unwrap()
    );
    assert_eq!(
        verify_batch_full(&trusted, &hashed).unwrap(),
        verify_batch_full(&trusted, &plain).unwrap()
    );
    let mut broken = plain.clone();
    broken[3].header.time_ms += 1; // its hash changes, so the next link breaks
    let plain_err = verify_batch(&trusted, &broken).unwrap_err();
    let hashed_err = verify_batch(&trusted, &Hashed::all(broken)).unwrap_err();
    assert_eq!(plain_err, hashed_err);
}
