//! Checkpoint bisection (seed 001): few rounds, abrupt set changes, lying
//! sources, and absurd target heights (hole 6's verification side).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use common::chain;
use headway_chain::{
    BisectionError, ChainGenerator, Corruption, GeneratedBlock, GeneratorConfig, HeaderSource,
    SignedHeader, ValidatorSet, VerifyError, verify_to_target,
};

#[derive(Debug, thiserror::Error)]
#[error("no header at height {0}")]
struct Missing(u64);

/// A source over generated blocks, counting requests.
struct MemSource {
    blocks: Vec<GeneratedBlock>,
}

impl MemSource {
    fn block(&self, height: u64) -> Result<&GeneratedBlock, Missing> {
        height
            .checked_sub(1)
            .and_then(|i| self.blocks.get(usize::try_from(i).ok()?))
            .ok_or(Missing(height))
    }
}

impl HeaderSource for MemSource {
    type Error = Missing;
    fn signed_header(&mut self, height: u64) -> Result<SignedHeader, Missing> {
        Ok(self.block(height)?.signed_header.clone())
    }
    fn validator_set(&mut self, height: u64) -> Result<ValidatorSet, Missing> {
        Ok(self.block(height)?.validator_set.clone())
    }
}

fn rotating(seed: u64, replace_all_at: Vec<u64>) -> GeneratorConfig {
    GeneratorConfig {
        validator_count: 8,
        voting_power: 10..=10,
        rotation_interval: 10,
        rotation_percent: 25,
        replace_all_at,
        txs_per_block: 0..=0,
        ..GeneratorConfig::small(seed)
    }
}

#[test]
fn no_set_change_needs_no_intermediate() {
    let config = GeneratorConfig {
        rotation_interval: 0,
        txs_per_block: 0..=0,
        ..GeneratorConfig::small(1)
    };
    let blocks = chain(config, 300);
    let trusted = blocks[0].trusted_state();
    let mut source = MemSource { blocks };
    let verified = verify_to_target(&trusted, 300, &mut source).unwrap();
    assert_eq!(verified.verified_heights, vec![300]);
    assert!(verified.intermediate_heights().is_empty());
    assert_eq!(verified.trusted.height(), 300);
}

#[test]
fn gradual_rotation_needs_one_round_per_broken_overlap() {
    // 2 of 8 validators replaced every 10 blocks: overlap falls to 2/8 (< 1/3)
    // after 30 blocks, so about one round per 20-30 blocks.
    let blocks = chain(rotating(2, vec![]), 200);
    let trusted = blocks[0].trusted_state();
    let mut source = MemSource {
        blocks: blocks.clone(),
    };
    let verified = verify_to_target(&trusted, 200, &mut source).unwrap();
    assert_eq!(verified.trusted.header(), &blocks[199].signed_header.header);
    let rounds = verified.verified_heights.len();
    assert!(
        (2..=12).contains(&rounds),
        "rounds {rounds}: {:?}",
        verified.verified_heights
    );
    // Each hop is as far as the anchor's set reaches: no two consecutive hops
    // could have been merged into one.
    for pair in verified.verified_heights.windows(2) {
        assert!(pair[1] > pair[0]);
    }
    assert!(verified.fetches < 200);
}

#[test]
fn abrupt_replacement_is_crossed_through_its_adjacent_header() {
    let blocks = chain(rotating(3, vec![60, 140]), 200);
    let trusted = blocks[0].trusted_state();
    let mut source = MemSource { blocks };
    let verified = verify_to_target(&trusted, 200, &mut source).unwrap();
    let hops = &verified.verified_heights;
    assert!(hops.contains(&59) && hops.contains(&60), "{hops:?}");
    assert!(hops.contains(&139) && hops.contains(&140), "{hops:?}");
    assert_eq!(hops.last(), Some(&200));
}

#[test]
fn lying_source_is_caught() {
    let blocks = chain(rotating(4, vec![]), 40);
    let generator = ChainGenerator::new(rotating(4, vec![])).unwrap();
    let trusted = blocks[0].trusted_state();
    for (kind, check) in [
        (Corruption::BadSignature, "signature"),
        (Corruption::CommitForOtherHeader, "commit"),
        (Corruption::WrongChainId, "chain"),
    ] {
        let mut bad_blocks = blocks.clone();
        bad_blocks[39] = generator.corrupt(&blocks[39], kind);
        let mut source = MemSource { blocks: bad_blocks };
        let err = verify_to_target(&trusted, 40, &mut source).unwrap_err();
        assert!(matches!(err, BisectionError::Verify(_)), "{kind:?}: {err}");
        assert!(
            err.to_string().contains(check) || err.to_string().contains("block"),
            "{err}"
        );
    }
    // A validator set that is not the header's.
    let mut bad_blocks = blocks.clone();
    bad_blocks[39].validator_set.validators[0].voting_power += 1;
    let mut source = MemSource { blocks: bad_blocks };
    assert!(matches!(
        verify_to_target(&trusted, 40, &mut source),
        Err(BisectionError::Verify(VerifyError::ValidatorSetMismatch {
            height: 40,
            ..
        }))
    ));
}

#[test]
fn hole6_absurd_target_height_cannot_stall_verification() {
    // A peer claims height u64::MAX. Verification towards it ends at once
    // with an error from the source, after O(log) probes, never a hang.
    let blocks = chain(rotating(5, vec![]), 30);
    let trusted = blocks[0].trusted_state();
    let mut source = MemSource { blocks };
    let err = verify_to_target(&trusted, u64::MAX, &mut source).unwrap_err();
    assert!(matches!(err, BisectionError::Source { .. }), "{err}");

    // A source that answers every height with fabricated headers: bounded too.
    struct Liar(SignedHeader, ValidatorSet);
    impl HeaderSource for Liar {
        type Error = Missing;
        fn signed_header(&mut self, height: u64) -> Result<SignedHeader, Missing> {
            let mut sh = self.0.clone();
            sh.header.height = height;
            sh.commit.height = height;
            Ok(sh)
        }
        fn validator_set(&mut self, _: u64) -> Result<ValidatorSet, Missing> {
            Ok(self.1.clone())
        }
    }
    let blocks = chain(rotating(5, vec![]), 3);
    let mut liar = Liar(
        blocks[2].signed_header.clone(),
        blocks[2].validator_set.clone(),
    );
    let err = verify_to_target(&trusted, u64::MAX, &mut liar).unwrap_err();
    assert!(matches!(err, BisectionError::Verify(_)), "{err}");
}

#[test]
fn target_must_be_ahead() {
    let blocks = chain(rotating(6, vec![]), 5);
    let trusted = blocks[3].trusted_state();
    let mut source = MemSource { blocks };
    assert!(matches!(
        verify_to_target(&trusted, 4, &mut source),
        Err(BisectionError::Verify(VerifyError::NotAfterTrusted {
            height: 4,
            trusted_height: 4
        }))
    ));
}
