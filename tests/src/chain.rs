//! The shared test chain and forgeries of it.
//!
//! One devnet chain serves every test of a test binary (generated once): 8
//! validators, a quarter of them rotated every 25 blocks, and the whole set
//! replaced at height [`FULL_REPLACEMENT_HEIGHT`], so skip verification must
//! cross rotations and an abrupt change with no overlap. Its parameters are
//! [`test_params`]; the node under test gets the same genesis.
//!
//! A forgery ([`TestChain::forge`]) changes one header and then rebuilds
//! everything after it as an attacker with the validators' keys would (links,
//! history roots and commits), so it breaks exactly the rule under test and
//! nothing else.

use std::sync::{Arc, OnceLock};

use headway_chain::{
    ChainGenerator, Corruption, GeneratedBlock, HeaderExt as _, HistoryAccumulator, TrustedState,
};
use headway_node::config::DevnetParams;
use headway_wire::{BlockId, Commit, Header, SignedHeader, ValidatorSet};

/// Blocks in the test chain.
pub const CHAIN_LEN: u64 = 600;
/// Height at which the whole validator set is replaced.
pub const FULL_REPLACEMENT_HEIGHT: u64 = 230;
/// Blocks between rotations of a quarter of the validator set.
pub const ROTATION_INTERVAL: u64 = 25;
/// The tip most tests sync to.
pub const TIP: u64 = 400;

/// The devnet parameters of the test chain (also given to `headway genesis`).
pub fn test_params() -> DevnetParams {
    DevnetParams {
        seed: 3,
        validators: 8,
        rotation_interval: ROTATION_INTERVAL,
        replace_all_at: vec![FULL_REPLACEMENT_HEIGHT],
    }
}

/// The test chain, generated once per process.
pub fn test_chain() -> &'static TestChain {
    static CHAIN: OnceLock<TestChain> = OnceLock::new();
    CHAIN.get_or_init(|| TestChain::generate(test_params(), CHAIN_LEN))
}

/// A generated chain, its signed headers, and the generator that holds every
/// validator key (to sign forgeries).
pub struct TestChain {
    params: DevnetParams,
    blocks: Vec<GeneratedBlock>,
    headers: Arc<Vec<SignedHeader>>,
    generator: ChainGenerator,
}

impl std::fmt::Debug for TestChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestChain")
            .field("params", &self.params)
            .field("len", &self.blocks.len())
            .finish_non_exhaustive()
    }
}

impl TestChain {
    /// Generates `len` blocks of the chain `params` describes.
    ///
    /// # Panics
    ///
    /// If the parameters are unusable (a bug in the suite).
    pub fn generate(params: DevnetParams, len: u64) -> Self {
        #[allow(
            clippy::expect_used,
            reason = "the suite's own parameters; failing is a suite bug"
        )]
        let mut generator =
            ChainGenerator::new(params.generator_config()).expect("valid devnet parameters");
        let blocks: Vec<GeneratedBlock> = generator
            .by_ref()
            .take(usize::try_from(len).unwrap_or(usize::MAX))
            .collect();
        let headers = Arc::new(blocks.iter().map(|b| b.signed_header.clone()).collect());
        TestChain {
            params,
            blocks,
            headers,
            generator,
        }
    }

    /// The parameters the chain was generated from.
    pub fn params(&self) -> &DevnetParams {
        &self.params
    }

    /// The genesis: block 1's signed header with its validator set.
    pub fn genesis(&self) -> &SignedHeader {
        &self.blocks[0].signed_header
    }

    /// The genesis as a trusted state (header and validator set of height 1).
    pub fn trusted_genesis(&self) -> TrustedState {
        self.blocks[0].trusted_state()
    }

    /// All honest signed headers; index `h - 1` holds height `h`.
    pub fn headers(&self) -> Arc<Vec<SignedHeader>> {
        self.headers.clone()
    }

    /// The honest signed header at `height` (1-based).
    pub fn signed_header(&self, height: u64) -> &SignedHeader {
        &self.blocks[index(height)].signed_header
    }

    /// The validator set of the header at `height`.
    pub fn validator_set(&self, height: u64) -> &ValidatorSet {
        &self.blocks[index(height)].validator_set
    }

    /// Honest headers `from..=to`.
    pub fn range(&self, from: u64, to: u64) -> Vec<SignedHeader> {
        (from..=to).map(|h| self.signed_header(h).clone()).collect()
    }

    /// The generated block at `height` (1-based).
    pub fn block(&self, height: u64) -> &GeneratedBlock {
        &self.blocks[index(height)]
    }

    /// The honest signed header at `height` turned into invalid data of the
    /// given kind by the generator that made the chain (its keys sign).
    pub fn corrupt(&self, height: u64, kind: Corruption) -> SignedHeader {
        self.generator
            .corrupt(self.block(height), kind)
            .signed_header
    }

    /// The honest signed header at `height` with a commit cut down to
    /// signers holding less than 2/3 of the header's own validator set's
    /// power, the longest-serving validators first (so that, as far as the
    /// powers allow, they hold more than 1/3 of an older trusted set): enough
    /// for a 1/3 trusting check alone, never for a full one (NOTES hole 4).
    pub fn weakened(&self, height: u64) -> SignedHeader {
        let mut signed = self.signed_header(height).clone();
        let set = self.validator_set(height);
        let total: u64 = set.validators.iter().map(|v| v.voting_power).sum();
        // Each member's address, power, and the first height of its current stay.
        let mut members: Vec<(headway_wire::Address, u64, u64)> = set
            .validators
            .iter()
            .map(|v| {
                let mut since = height;
                while since > 1 && self.validator_set(since - 1).validators.contains(v) {
                    since -= 1;
                }
                (headway_chain::address_of(&v.pub_key), v.voting_power, since)
            })
            .collect();
        members.sort_by_key(|m| m.2);
        let mut keep = Vec::new();
        let mut kept = 0u64;
        for (address, power, _) in members {
            if 3 * (kept + power) < 2 * total {
                kept += power;
                keep.push(address);
            }
        }
        signed
            .commit
            .signatures
            .retain(|s| keep.contains(&s.validator_address));
        signed
    }

    /// A commit for `header` signed by every validator of `set`.
    pub fn sign(&self, header: &Header, set: &ValidatorSet) -> Commit {
        self.generator.sign_commit(header, set)
    }

    /// A forged copy of the whole chain: `modify` changes the header at
    /// `height`, which is then signed by its own validators; every later
    /// header is rebuilt to link to the forged one (last block id, history
    /// root) and signed by its validators. Headers below `height` are the
    /// honest ones. Validator sets stay attached where they were.
    pub fn forge(&self, height: u64, modify: impl FnOnce(&mut Header)) -> Vec<SignedHeader> {
        let mut out: Vec<SignedHeader> = self.headers.iter().cloned().collect();
        let mut history = HistoryAccumulator::new();
        for h in 1..height {
            // The MMR holds 2^63 leaves; a test chain never gets near.
            let _ = history.push(&out[index(h)].header.hash());
        }
        let mut modify = Some(modify);
        for h in height..=self.blocks.len() as u64 {
            let i = index(h);
            let mut header = out[i].header.clone();
            if h == height {
                if let Some(modify) = modify.take() {
                    modify(&mut header);
                }
            } else {
                header.last_block_id = Some(BlockId {
                    hash: out[i - 1].header.hash(),
                });
                header.history_root = history.root();
            }
            out[i].commit = self.sign(&header, &self.blocks[i].validator_set);
            out[i].header = header;
            let _ = history.push(&out[i].header.hash());
        }
        out
    }
}

fn index(height: u64) -> usize {
    usize::try_from(height.saturating_sub(1)).unwrap_or(usize::MAX)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is the assertion"
)]
mod tests {
    //! Self-checks of the suite's data: each forgery breaks exactly the rule
    //! its test is about, so a node that skipped that check would accept it.

    use headway_chain::{
        TrustThreshold, ValidatorSetExt as _, verify_batch, verify_commit_full,
        verify_commit_trusted_overlap,
    };
    use headway_wire::Hash;

    use super::*;

    fn trusted(chain: &TestChain, height: u64) -> TrustedState {
        chain.block(height).trusted_state()
    }

    #[test]
    fn a_forgery_is_well_formed_until_its_last_commit_is_swapped() {
        let chain = test_chain();
        let forged = chain.forge(30, |h| h.state_root = Hash([0x66; 32]));
        let mut batch = forged[29..51].to_vec();
        verify_batch(&trusted(chain, 29), &batch)
            .expect("a forgery re-signed by the validators verifies");
        let last = batch.len() - 1;
        batch[last].commit = chain.signed_header(51).commit.clone();
        assert!(
            verify_batch(&trusted(chain, 29), &batch).is_err(),
            "the real commit is not for the forged header"
        );
    }

    #[test]
    fn continuity_forgery_breaks_only_continuity() {
        let chain = test_chain();
        let other = chain.validator_set(FULL_REPLACEMENT_HEIGHT).hash();
        let forged = chain.forge(30, |h| h.next_validators_hash = other);
        for h in 30..=51u64 {
            let s = &forged[(h - 1) as usize];
            verify_commit_full(
                &s.header.chain_id,
                &s.header,
                &s.commit,
                chain.validator_set(h),
            )
            .expect("validly signed");
            if h > 30 {
                assert_eq!(
                    s.header.last_block_id.unwrap().hash,
                    forged[(h - 2) as usize].header.hash(),
                    "linked"
                );
            }
        }
        assert!(verify_batch(&trusted(chain, 1), &forged[1..51]).is_err());
    }

    #[test]
    fn weakened_commit_passes_one_third_of_the_trusted_set_only() {
        let chain = test_chain();
        let weak = chain.weakened(51);
        let chain_id = &weak.header.chain_id;
        verify_commit_trusted_overlap(
            chain_id,
            &weak.header,
            &weak.commit,
            chain.validator_set(1),
            TrustThreshold::ONE_THIRD,
        )
        .expect("more than 1/3 of the genesis set signed");
        assert!(
            verify_commit_full(
                chain_id,
                &weak.header,
                &weak.commit,
                chain.validator_set(51)
            )
            .is_err()
        );
    }

    #[test]
    fn chain_has_rotations_and_a_full_replacement() {
        let chain = test_chain();
        let before = chain.validator_set(FULL_REPLACEMENT_HEIGHT - 1);
        let after = chain.validator_set(FULL_REPLACEMENT_HEIGHT);
        assert!(
            after
                .validators
                .iter()
                .all(|v| !before.validators.contains(v)),
            "no overlap across the replacement"
        );
        let attached = (2..=CHAIN_LEN)
            .filter(|h| chain.signed_header(*h).validator_set.is_some())
            .count();
        assert!(attached >= 10, "{attached} validator set changes");
    }
}
