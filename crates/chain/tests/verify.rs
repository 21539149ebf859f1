//! Commit verification rules: binding, full (+2/3) and trusting (1/3)
//! tallies, strict thresholds, matching by address, duplicates, non-members,
//! bad keys and signatures, early stop and the signature cache.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use ed25519_dalek::{Signer as _, SigningKey};
use headway_chain::{
    Address, BlockId, Commit, CommitSig, Hash, Header, HeaderExt, PublicKey, PublicKeyExt,
    Signature, TrustThreshold, Validator, ValidatorSet, ValidatorSetExt, VerifyError,
    verify_commit_full, verify_commit_trusting, vote_sign_bytes,
};
use proptest::prelude::*;

const CHAIN: &str = "verify-test";

fn key(i: u8) -> SigningKey {
    SigningKey::from_bytes(&[i; 32])
}

fn set_of(keys: &[(SigningKey, u64)]) -> ValidatorSet {
    let mut validators: Vec<Validator> = keys
        .iter()
        .map(|(k, p)| Validator {
            pub_key: PublicKey(k.verifying_key().to_bytes()),
            voting_power: *p,
        })
        .collect();
    validators.sort_by_key(|v| v.pub_key);
    ValidatorSet { validators }
}

fn header_for(set: &ValidatorSet) -> Header {
    Header {
        chain_id: CHAIN.to_owned(),
        height: 10,
        time_ms: 1,
        last_block_id: Some(BlockId {
            hash: Hash([1; 32]),
        }),
        data_hash: Hash([2; 32]),
        validators_hash: set.hash(),
        next_validators_hash: set.hash(),
        state_root: Hash([3; 32]),
        history_root: Hash([4; 32]),
        proposer_address: Address([5; 20]),
    }
}

fn sign(header: &Header, chain_id: &str, signers: &[&SigningKey]) -> Commit {
    let hash = header.hash();
    let bytes = vote_sign_bytes(chain_id, header.height, 0, &hash);
    let mut signatures: Vec<CommitSig> = signers
        .iter()
        .map(|k| CommitSig {
            validator_address: PublicKey(k.verifying_key().to_bytes()).address(),
            signature: Signature(k.sign(&bytes).to_bytes()),
        })
        .collect();
    signatures.sort_by_key(|s| s.validator_address);
    Commit {
        height: header.height,
        round: 0,
        block_id: BlockId { hash },
        signatures,
    }
}

fn equal_keys(range: std::ops::Range<u8>) -> Vec<(SigningKey, u64)> {
    range.map(|i| (key(i), 10)).collect()
}

#[test]
fn full_verification_passes_and_stops_early() {
    let keys = equal_keys(1..11);
    let set = set_of(&keys);
    let header = header_for(&set);
    let commit = sign(
        &header,
        CHAIN,
        &keys.iter().map(|(k, _)| k).collect::<Vec<_>>(),
    );
    let verified = verify_commit_full(CHAIN, &header, &commit, &set).unwrap();
    assert_eq!(verified.header_hash, header.hash());
    assert_eq!(verified.signatures_verified, 7, "stops at 70 > 2/3 of 100");
}

#[test]
fn exactly_two_thirds_is_not_enough() {
    let keys = equal_keys(1..10);
    let set = set_of(&keys);
    let header = header_for(&set);
    let six: Vec<_> = keys.iter().take(6).map(|(k, _)| k).collect();
    let err = verify_commit_full(CHAIN, &header, &sign(&header, CHAIN, &six), &set).unwrap_err();
    assert_eq!(
        err,
        VerifyError::NotEnoughOwnPower {
            height: 10,
            tallied: 60,
            total: 90
        }
    );
    let seven: Vec<_> = keys.iter().take(7).map(|(k, _)| k).collect();
    verify_commit_full(CHAIN, &header, &sign(&header, CHAIN, &seven), &set).unwrap();
}

/// Trusted set: keys 1..=9. Own set: keys 1..=6 and 20..=22.
fn trusting_fixture() -> (ValidatorSet, ValidatorSet, Header, Vec<(SigningKey, u64)>) {
    let trusted = set_of(&equal_keys(1..10));
    let own_keys: Vec<_> = equal_keys(1..7)
        .into_iter()
        .chain(equal_keys(20..23))
        .collect();
    let own = set_of(&own_keys);
    let header = header_for(&own);
    (trusted, own, header, own_keys)
}

#[test]
fn trusting_needs_more_than_one_third_of_trusted_and_two_thirds_of_own() {
    let (trusted, own, header, keys) = trusting_fixture();
    let k = |i: u8| {
        keys.iter()
            .find(|(k, _)| k.to_bytes() == [i; 32])
            .map(|(k, _)| k)
            .unwrap()
    };
    // 4 trusted signers (40/90 > 1/3) + 3 new (70/90 > 2/3 of own).
    let commit = sign(
        &header,
        CHAIN,
        &[k(1), k(2), k(3), k(4), k(20), k(21), k(22)],
    );
    let verified = verify_commit_trusting(
        CHAIN,
        &header,
        &commit,
        &trusted,
        &own,
        TrustThreshold::ONE_THIRD,
    )
    .unwrap();
    // Each signature verified at most once: 4 for the trusted tally are
    // reused by the own tally, which needs 7 in all.
    assert_eq!(verified.signatures_verified, 7);

    // Exactly 1/3 of the trusted set: not enough (strict).
    let commit = sign(&header, CHAIN, &[k(1), k(2), k(3), k(20), k(21), k(22)]);
    let err = verify_commit_trusting(
        CHAIN,
        &header,
        &commit,
        &trusted,
        &own,
        TrustThreshold::ONE_THIRD,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::NotEnoughTrustedPower {
                tallied: 30,
                total: 90,
                ..
            }
        ),
        "{err}"
    );

    // Enough trusted overlap but not +2/3 of the own set (hole 4).
    let commit = sign(&header, CHAIN, &[k(1), k(2), k(3), k(4), k(5), k(6)]);
    let err = verify_commit_trusting(
        CHAIN,
        &header,
        &commit,
        &trusted,
        &own,
        TrustThreshold::ONE_THIRD,
    )
    .unwrap_err();
    assert_eq!(
        err,
        VerifyError::NotEnoughOwnPower {
            height: 10,
            tallied: 60,
            total: 90
        }
    );
}

#[test]
fn non_members_are_ignored_by_the_trusted_tally_but_rejected_by_the_own_tally() {
    let (trusted, own, header, keys) = trusting_fixture();
    let all: Vec<_> = keys.iter().map(|(k, _)| k).collect();
    // Keys 20..=22 are not trusted: ignored there, no error.
    let commit = sign(&header, CHAIN, &all);
    verify_commit_trusting(
        CHAIN,
        &header,
        &commit,
        &trusted,
        &own,
        TrustThreshold::ONE_THIRD,
    )
    .unwrap();
    // A signature by key 30, outside the header's own set.
    let outsider = key(30);
    let mut signers = all.clone();
    signers.push(&outsider);
    let commit = sign(&header, CHAIN, &signers);
    let err = verify_commit_full(CHAIN, &header, &commit, &own).unwrap_err();
    assert_eq!(
        err,
        VerifyError::UnknownValidator {
            height: 10,
            validator: PublicKey(outsider.verifying_key().to_bytes()).address()
        }
    );
}

#[test]
fn same_set_needs_two_thirds_only() {
    let keys = equal_keys(1..10);
    let set = set_of(&keys);
    let header = header_for(&set);
    let four: Vec<_> = keys.iter().take(4).map(|(k, _)| k).collect();
    let commit = sign(&header, CHAIN, &four);
    let err = verify_commit_trusting(
        CHAIN,
        &header,
        &commit,
        &set,
        &set,
        TrustThreshold::ONE_THIRD,
    )
    .unwrap_err();
    assert!(
        matches!(err, VerifyError::NotEnoughOwnPower { .. }),
        "{err}"
    );
}

#[test]
fn duplicate_vote_is_an_error() {
    let keys = equal_keys(1..5);
    let set = set_of(&keys);
    let header = header_for(&set);
    let mut commit = sign(
        &header,
        CHAIN,
        &keys.iter().map(|(k, _)| k).collect::<Vec<_>>(),
    );
    let dup = commit.signatures[1];
    commit.signatures.insert(1, dup);
    let err = verify_commit_full(CHAIN, &header, &commit, &set).unwrap_err();
    assert_eq!(
        err,
        VerifyError::DuplicateVote {
            height: 10,
            validator: dup.validator_address
        }
    );
}

#[test]
fn bad_signature_is_named_after_batch_failure() {
    let keys = equal_keys(1..11);
    let set = set_of(&keys);
    let header = header_for(&set);
    let mut commit = sign(
        &header,
        CHAIN,
        &keys.iter().map(|(k, _)| k).collect::<Vec<_>>(),
    );
    commit.signatures[4].signature.0[10] ^= 0x40;
    let err = verify_commit_full(CHAIN, &header, &commit, &set).unwrap_err();
    assert_eq!(
        err,
        VerifyError::InvalidSignature {
            height: 10,
            validator: commit.signatures[4].validator_address
        }
    );
}

#[test]
fn signature_on_another_chain_or_height_does_not_verify() {
    let keys = equal_keys(1..4);
    let set = set_of(&keys);
    let header = header_for(&set);
    let signers: Vec<_> = keys.iter().map(|(k, _)| k).collect();
    let commit = sign(&header, "other-chain", &signers);
    assert!(matches!(
        verify_commit_full(CHAIN, &header, &commit, &set),
        Err(VerifyError::InvalidSignature { .. })
    ));
    // The header's chain id must be the trusted one.
    let commit = sign(&header, CHAIN, &signers);
    assert!(matches!(
        verify_commit_full("other-chain", &header, &commit, &set),
        Err(VerifyError::ChainIdMismatch { .. })
    ));
}

#[test]
fn commit_must_be_bound_to_the_header() {
    let keys = equal_keys(1..4);
    let set = set_of(&keys);
    let header = header_for(&set);
    let signers: Vec<_> = keys.iter().map(|(k, _)| k).collect();
    let mut other = header.clone();
    other.state_root = Hash([9; 32]);
    let commit = sign(&other, CHAIN, &signers);
    assert!(matches!(
        verify_commit_full(CHAIN, &header, &commit, &set),
        Err(VerifyError::CommitBlockIdMismatch { height: 10, .. })
    ));
    let mut commit = sign(&header, CHAIN, &signers);
    commit.height = 11;
    assert_eq!(
        verify_commit_full(CHAIN, &header, &commit, &set).unwrap_err(),
        VerifyError::CommitHeightMismatch {
            height: 10,
            commit_height: 11
        }
    );
    // A set that is not the header's.
    let wrong = set_of(&equal_keys(1..5));
    assert!(matches!(
        verify_commit_full(CHAIN, &header, &sign(&header, CHAIN, &signers), &wrong),
        Err(VerifyError::ValidatorSetMismatch { .. })
    ));
}

#[test]
fn invalid_public_keys_are_typed_errors() {
    // Bytes that do not decode to a curve point, and the small-order identity.
    let not_a_point = (0u8..=255)
        .map(|i| {
            let mut b = [i; 32];
            b[31] &= 0x7f;
            b
        })
        .find(|b| ed25519_dalek::VerifyingKey::from_bytes(b).is_err())
        .unwrap();
    let mut identity = [0u8; 32];
    identity[0] = 1;
    for bytes in [not_a_point, identity] {
        let pub_key = PublicKey(bytes);
        let set = ValidatorSet {
            validators: vec![Validator {
                pub_key,
                voting_power: 10,
            }],
        };
        let header = header_for(&set);
        let commit = Commit {
            height: 10,
            round: 0,
            block_id: BlockId {
                hash: header.hash(),
            },
            signatures: vec![CommitSig {
                validator_address: pub_key.address(),
                signature: Signature([7; 64]),
            }],
        };
        assert_eq!(
            verify_commit_full(CHAIN, &header, &commit, &set).unwrap_err(),
            VerifyError::InvalidPublicKey {
                height: 10,
                validator: pub_key.address()
            }
        );
    }
}

#[test]
fn hostile_shapes_are_errors_not_panics() {
    let keys = equal_keys(1..4);
    let set = set_of(&keys);
    let header = header_for(&set);
    let mut commit = sign(
        &header,
        CHAIN,
        &keys.iter().map(|(k, _)| k).collect::<Vec<_>>(),
    );
    commit.signatures.reverse();
    assert!(matches!(
        verify_commit_full(CHAIN, &header, &commit, &set),
        Err(VerifyError::Malformed { .. })
    ));
    commit.signatures.clear();
    assert!(verify_commit_full(CHAIN, &header, &commit, &set).is_err());
    let huge = ValidatorSet {
        validators: vec![Validator {
            pub_key: PublicKey([1; 32]),
            voting_power: u64::MAX,
        }],
    };
    let header = header_for(&huge);
    assert!(matches!(
        verify_commit_full(CHAIN, &header, &commit, &huge),
        Err(VerifyError::Malformed { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Full verification passes exactly when the signers' power is strictly
    /// above 2/3; trusting passes exactly when above `trust` of the trusted
    /// set as well.
    #[test]
    fn tallies_match_the_arithmetic(
        powers in proptest::collection::vec(1u64..50, 1..7),
        signed_mask in any::<u8>(),
        trusted_count in 1usize..7,
    ) {
        let keys: Vec<(SigningKey, u64)> =
            powers.iter().enumerate().map(|(i, p)| (key(i as u8 + 1), *p)).collect();
        let set = set_of(&keys);
        let header = header_for(&set);
        let signers: Vec<&(SigningKey, u64)> =
            keys.iter().enumerate().filter(|(i, _)| signed_mask & (1 << i) != 0).map(|(_, k)| k).collect();
        prop_assume!(!signers.is_empty());
        let commit = sign(&header, CHAIN, &signers.iter().map(|(k, _)| k).collect::<Vec<_>>());
        let total: u64 = powers.iter().sum();
        let signed: u64 = signers.iter().map(|(_, p)| p).sum();
        let full = verify_commit_full(CHAIN, &header, &commit, &set);
        prop_assert_eq!(full.is_ok(), signed * 3 > total * 2);

        // Trusted set: the first `trusted_count` keys (plus an outsider).
        let mut trusted_keys: Vec<(SigningKey, u64)> =
            keys.iter().take(trusted_count).map(|(k, p)| (k.clone(), *p)).collect();
        trusted_keys.push((key(99), 7));
        let trusted = set_of(&trusted_keys);
        let trusted_total: u64 = trusted_keys.iter().map(|(_, p)| p).sum();
        let trusted_signed: u64 = signers
            .iter()
            .filter(|(k, _)| trusted_keys.iter().any(|(t, _)| t.to_bytes() == k.to_bytes()))
            .map(|(_, p)| p)
            .sum();
        let trusting = verify_commit_trusting(CHAIN, &header, &commit, &trusted, &set, TrustThreshold::ONE_THIRD);
        prop_assert_eq!(trusting.is_ok(), trusted_signed * 3 > trusted_total && signed * 3 > total * 2);
    }
}

#[test]
fn trusted_overlap_alone_ignores_non_members_and_is_strict() {
    let (trusted, _own, header, keys) = trusting_fixture();
    let k = |i: u8| {
        keys.iter()
            .find(|(k, _)| k.to_bytes() == [i; 32])
            .map(|(k, _)| k)
            .unwrap()
    };
    let commit = sign(&header, CHAIN, &[k(1), k(2), k(3), k(4), k(20)]);
    let verified = headway_chain::verify_commit_trusted_overlap(
        CHAIN,
        &header,
        &commit,
        &trusted,
        TrustThreshold::ONE_THIRD,
    )
    .unwrap();
    assert_eq!(verified.signatures_verified, 4);
    let commit = sign(&header, CHAIN, &[k(1), k(2), k(3), k(20), k(21)]);
    assert!(matches!(
        headway_chain::verify_commit_trusted_overlap(
            CHAIN,
            &header,
            &commit,
            &trusted,
            TrustThreshold::ONE_THIRD
        ),
        Err(VerifyError::NotEnoughTrustedPower { tallied: 30, .. })
    ));
}
