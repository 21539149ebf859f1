//! Header batch verification (header sync, seed 003, with its holes closed).
//!
//! Given a [`TrustedState`] (the last verified header and its validator set)
//! and a batch of consecutive [`SignedHeader`]s, [`verify_batch`]:
//!
//! 1. checks every header on its own, binds every commit to its header (height
//!    and block id hash; the chain id is the trusted one), and checks chain
//!    linkage from the trusted header through the batch: each `last_block_id`
//!    is the previous header's hash, each `validators_hash` the previous
//!    `next_validators_hash`, times increase;
//! 2. checks attached validator sets: a set is taken only when its hash equals
//!    its header's `validators_hash`, and one must be attached wherever
//!    `validators_hash` differs from the previous header's;
//! 3. skip-verifies the last header: more than 1/3 of the trusted set and more
//!    than 2/3 of its own set signed it (only the latter when the sets are
//!    equal; an adjacent header is trusted through `next_validators_hash`
//!    and needs +2/3 of its own set). When the trusted overlap is too small it
//!    searches backwards for a header that can be trusted, verifies it, makes
//!    it the new anchor and repeats towards the last header.
//!
//! Linkage from the verified last header then vouches for every earlier one.
//! The input trusted state is never changed; the new one is returned.

use headway_wire::{Hash, Header, ValidatorSet, limits::MAX_HEADERS_PER_BATCH};

use crate::VerifyError;
use crate::encoding::HeaderExt as _;
use crate::hashed::SignedItem;
use crate::verify::{
    CommitCheck, TrustThreshold, bind_commit_hashed, check_header, check_validator_set,
    verify_commit_full,
};

/// Most headers [`verify_batch`] accepts at once (seed 003's batch size).
pub const MAX_BATCH_LEN: usize = MAX_HEADERS_PER_BATCH as usize;

/// A verified header and its validator set: the anchor of further verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedState {
    header: Header,
    header_hash: Hash,
    validator_set: ValidatorSet,
}

impl TrustedState {
    /// Trusts `header` with its validator set `validator_set` (whose hash
    /// must be the header's `validators_hash`). The caller vouches for the
    /// header itself (a checkpoint, genesis, or an earlier verification).
    pub fn new(header: Header, validator_set: ValidatorSet) -> Result<Self, VerifyError> {
        header.validate().map_err(|source| VerifyError::Malformed {
            height: header.height,
            what: "header",
            source,
        })?;
        check_validator_set(&header, &validator_set)?;
        Ok(Self {
            header_hash: header.hash(),
            header,
            validator_set,
        })
    }

    /// The trusted header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The trusted header's hash.
    pub fn header_hash(&self) -> Hash {
        self.header_hash
    }

    /// The trusted validator set: the trusted header's own set.
    pub fn validator_set(&self) -> &ValidatorSet {
        &self.validator_set
    }

    /// The trusted height.
    pub fn height(&self) -> u64 {
        self.header.height
    }

    /// The trusted chain id.
    pub fn chain_id(&self) -> &str {
        &self.header.chain_id
    }

    /// Builds a trusted state from parts already checked by this crate.
    pub(crate) fn from_verified(header: Header, header_hash: Hash, set: ValidatorSet) -> Self {
        Self {
            header,
            header_hash,
            validator_set: set,
        }
    }
}

/// What [`verify_batch`] established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchVerified {
    /// Height of the first header of the batch.
    pub first_height: u64,
    /// Height of the last header of the batch.
    pub last_height: u64,
    /// Heights whose commits were signature-verified, ascending (the last
    /// height, plus any intermediate anchor the validator-set changes forced).
    pub anchors: Vec<u64>,
    /// Ed25519 signatures verified in total.
    pub signatures_verified: usize,
    /// The new trusted state: the last header and its validator set.
    pub trusted: TrustedState,
}

/// Verifies a batch of consecutive signed headers following `trusted` (see the
/// [module documentation](self)). The trust threshold of skip verification is
/// [`TrustThreshold::ONE_THIRD`].
pub fn verify_batch<S: SignedItem>(
    trusted: &TrustedState,
    batch: &[S],
) -> Result<BatchVerified, VerifyError> {
    verify_batch_with(trusted, batch, TrustThreshold::ONE_THIRD)
}

/// [`verify_batch`] with a chosen trust threshold.
pub fn verify_batch_with<S: SignedItem>(
    trusted: &TrustedState,
    batch: &[S],
    trust: TrustThreshold,
) -> Result<BatchVerified, VerifyError> {
    let prepared = prepare(trusted, batch)?;
    let last = batch.len() - 1; // `prepare` rejects an empty batch.
    let mut anchor: Option<usize> = None;
    let mut anchors = Vec::new();
    let mut signatures_verified = 0usize;
    loop {
        let lo = anchor.map_or(0, |a| a + 1);
        let mut found = None;
        for candidate in (lo..=last).rev() {
            match try_trust(trusted, batch, &prepared, anchor, candidate, trust) {
                Ok(verified) => {
                    signatures_verified = signatures_verified.saturating_add(verified);
                    found = Some(candidate);
                    break;
                }
                Err(VerifyError::NotEnoughTrustedPower { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        let Some(next) = found else {
            return Err(VerifyError::NoTrustedPath {
                height: batch[last].signed().header.height,
            });
        };
        anchors.push(batch[next].signed().header.height);
        anchor = Some(next);
        if next == last {
            break;
        }
    }
    let last_signed = batch[last].signed();
    let set = prepared.own_set(trusted, batch, last).clone();
    Ok(BatchVerified {
        first_height: batch[0].signed().header.height,
        last_height: last_signed.header.height,
        anchors,
        signatures_verified,
        trusted: TrustedState::from_verified(
            last_signed.header.clone(),
            prepared.hashes[last],
            set,
        ),
    })
}

/// Verifies a batch header by header: the same structural checks as
/// [`verify_batch`], then +2/3 of each header's own set on every commit.
/// The baseline [`verify_batch`] is measured against; also usable when every
/// stored commit must be verified.
pub fn verify_batch_full<S: SignedItem>(
    trusted: &TrustedState,
    batch: &[S],
) -> Result<BatchVerified, VerifyError> {
    let prepared = prepare(trusted, batch)?;
    let mut signatures_verified = 0usize;
    for (i, signed) in batch.iter().map(SignedItem::signed).enumerate() {
        let set = prepared.own_set(trusted, batch, i);
        let verified = verify_commit_full(trusted.chain_id(), &signed.header, &signed.commit, set)?;
        signatures_verified = signatures_verified.saturating_add(verified.signatures_verified);
    }
    let last = batch.len() - 1;
    let last_signed = batch[last].signed();
    Ok(BatchVerified {
        first_height: batch[0].signed().header.height,
        last_height: last_signed.header.height,
        anchors: batch.iter().map(|s| s.signed().header.height).collect(),
        signatures_verified,
        trusted: TrustedState::from_verified(
            last_signed.header.clone(),
            prepared.hashes[last],
            prepared.own_set(trusted, batch, last).clone(),
        ),
    })
}

// ------------------------------------------------------------------ internals

/// Results of the structural pass over a batch.
struct Prepared {
    /// Header hash of each batch entry.
    hashes: Vec<Hash>,
    /// For each entry, the index of the entry whose attached set is its own
    /// set, or `None` for the trusted set.
    set_source: Vec<Option<usize>>,
}

impl Prepared {
    fn own_set<'a, S: SignedItem>(
        &self,
        trusted: &'a TrustedState,
        batch: &'a [S],
        i: usize,
    ) -> &'a ValidatorSet {
        match self.set_source.get(i).copied().flatten() {
            Some(j) => batch[j]
                .signed()
                .validator_set
                .as_ref()
                .unwrap_or(&trusted.validator_set),
            None => &trusted.validator_set,
        }
    }
}

/// Structural checks of the whole batch: shapes, heights, chain id, commit
/// binding (holes 1 and 3), linkage, validator-set continuity and attachment
/// (hole 2). No signature is checked here.
fn prepare<S: SignedItem>(trusted: &TrustedState, batch: &[S]) -> Result<Prepared, VerifyError> {
    let first_height = trusted.height().saturating_add(1);
    if batch.is_empty() {
        return Err(VerifyError::EmptyBatch {
            height: first_height,
        });
    }
    if batch.len() > MAX_BATCH_LEN {
        return Err(VerifyError::BatchTooLong {
            height: first_height,
            len: batch.len(),
            max: MAX_BATCH_LEN,
        });
    }
    let mut hashes = Vec::with_capacity(batch.len());
    let mut set_source = Vec::with_capacity(batch.len());
    let mut prev_header = &trusted.header;
    let mut prev_hash = trusted.header_hash;
    let mut current_source: Option<usize> = None;
    for (i, item) in batch.iter().enumerate() {
        let signed = item.signed();
        let header = &signed.header;
        let height = header.height;
        let expected = prev_header.height.saturating_add(1);
        if height != expected {
            return Err(VerifyError::NonSequentialHeight { height, expected });
        }
        check_header(trusted.chain_id(), header)?;
        let hash = bind_commit_hashed(header, item.header_hash(), &signed.commit)?;
        let actual = header.last_block_id.map(|id| id.hash);
        if actual != Some(prev_hash) {
            return Err(VerifyError::LinkageBroken {
                height,
                expected: prev_hash,
                actual,
            });
        }
        if header.validators_hash != prev_header.next_validators_hash {
            return Err(VerifyError::ValidatorsHashDiscontinuity {
                height,
                expected: prev_header.next_validators_hash,
                actual: header.validators_hash,
            });
        }
        if header.time_ms <= prev_header.time_ms {
            return Err(VerifyError::TimeNotIncreasing {
                height,
                time_ms: header.time_ms,
                previous_ms: prev_header.time_ms,
            });
        }
        match &signed.validator_set {
            Some(set) => {
                check_validator_set(header, set)?;
                current_source = Some(i);
            }
            None if header.validators_hash != prev_header.validators_hash => {
                return Err(VerifyError::MissingValidatorSet { height });
            }
            None => {}
        }
        hashes.push(hash);
        set_source.push(current_source);
        prev_header = header;
        prev_hash = hash;
    }
    Ok(Prepared { hashes, set_source })
}

/// Tries to trust `batch[candidate]` from the anchor (`None` = the trusted
/// state). Returns the number of signatures verified. A header right after
/// its anchor is trusted through `next_validators_hash` (already checked by
/// [`prepare`]) and needs +2/3 of its own set; any other needs more than
/// `trust` of the anchor's set and +2/3 of its own (hole 4).
fn try_trust<S: SignedItem>(
    trusted: &TrustedState,
    batch: &[S],
    prepared: &Prepared,
    anchor: Option<usize>,
    candidate: usize,
    trust: TrustThreshold,
) -> Result<usize, VerifyError> {
    let signed = batch[candidate].signed();
    let own = prepared.own_set(trusted, batch, candidate);
    let mut check = CommitCheck::new(&signed.header, &signed.commit);
    let adjacent = anchor.map_or(0, |a| a + 1) == candidate;
    if adjacent {
        check.tally_own(own)?;
    } else {
        let anchor_set = match anchor {
            Some(a) => prepared.own_set(trusted, batch, a),
            None => &trusted.validator_set,
        };
        check.tally_trusting(anchor_set, own, trust)?;
    }
    Ok(check.signatures_verified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_limit_is_seed_003s() {
        assert_eq!(MAX_BATCH_LEN, 50);
    }
}
