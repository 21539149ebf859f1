//! Commit verification: binding a commit to its header, full (+2/3 of the
//! header's own set) and trusting (skip) verification.
//!
//! Votes are matched to validators by address. A tally stops as soon as the
//! signed power strictly exceeds its threshold, and only then are the
//! signatures it counted verified, as one Ed25519 batch (split over the
//! available cores when large). When a batch fails, its signatures are
//! checked one by one so the error names the bad one. The two tallies of a
//! trusting verification share a cache, so no signature is verified twice.

use std::collections::{HashMap, HashSet};
use std::fmt;

use ed25519_dalek::{Verifier as _, VerifyingKey};
use headway_wire::{Address, Commit, Hash, Header, PublicKey, ValidatorSet, WireError};
use rayon::prelude::*;

use crate::encoding::{HeaderExt as _, address_of, commit_sign_bytes};
use crate::{ValidatorSetExt as _, VerifyError};

/// Signatures per batch below which a batch is not split across threads.
pub const MIN_SIGNATURES_PER_PARALLEL_BATCH: usize = 16;

/// A fraction of a validator set's voting power that a tally must strictly
/// exceed: `signed * denominator > total * numerator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustThreshold {
    numerator: u64,
    denominator: u64,
}

impl TrustThreshold {
    /// More than one third: the default trust level of skip verification.
    pub const ONE_THIRD: Self = Self {
        numerator: 1,
        denominator: 3,
    };
    /// More than two thirds: the commit rule of a header's own validator set.
    pub const TWO_THIRDS: Self = Self {
        numerator: 2,
        denominator: 3,
    };

    /// A threshold of `numerator / denominator`, which must lie in `[1/3, 1)`
    /// (below 1/3 a single faulty third could forge trust; at 1 nothing passes).
    pub fn new(numerator: u64, denominator: u64) -> Option<Self> {
        let valid = denominator > 0
            && u128::from(numerator) * 3 >= u128::from(denominator)
            && numerator < denominator;
        valid.then_some(Self {
            numerator,
            denominator,
        })
    }

    /// The numerator.
    pub fn numerator(&self) -> u64 {
        self.numerator
    }

    /// The denominator.
    pub fn denominator(&self) -> u64 {
        self.denominator
    }

    /// Whether `signed` strictly exceeds this fraction of `total`.
    pub fn is_exceeded(&self, signed: u64, total: u64) -> bool {
        u128::from(signed) * u128::from(self.denominator)
            > u128::from(total) * u128::from(self.numerator)
    }
}

impl fmt::Display for TrustThreshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.numerator, self.denominator)
    }
}

/// What a successful commit verification established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedCommit {
    /// The header hash the commit is bound to.
    pub header_hash: Hash,
    /// Ed25519 signatures verified to reach the thresholds.
    pub signatures_verified: usize,
}

/// Checks a header on its own and against the trusted chain id.
pub fn check_header(chain_id: &str, header: &Header) -> Result<(), VerifyError> {
    header.validate().map_err(|source| VerifyError::Malformed {
        height: header.height,
        what: "header",
        source,
    })?;
    if header.chain_id != chain_id {
        return Err(VerifyError::ChainIdMismatch {
            height: header.height,
            expected: chain_id.to_owned(),
            actual: header.chain_id.clone(),
        });
    }
    Ok(())
}

/// Binds a commit to its header before anything else is trusted: the commit
/// must be well formed, at the header's height, and for the header's hash.
/// Returns the header hash. (The chain id is bound by the vote sign bytes,
/// which are built from the header's chain id; check it with [`check_header`].)
pub fn bind_commit(header: &Header, commit: &Commit) -> Result<Hash, VerifyError> {
    bind_commit_hashed(header, header.hash(), commit)
}

/// [`bind_commit`] with the header's hash already computed (for example by
/// [`Hashed`](crate::Hashed)): `header_hash` must be `header`'s hash, or the
/// binding means nothing.
///
/// # Errors
///
/// As [`bind_commit`].
pub fn bind_commit_hashed(
    header: &Header,
    header_hash: Hash,
    commit: &Commit,
) -> Result<Hash, VerifyError> {
    let height = header.height;
    commit
        .validate()
        .map_err(|source| commit_shape_error(height, commit, source))?;
    if commit.height != height {
        return Err(VerifyError::CommitHeightMismatch {
            height,
            commit_height: commit.height,
        });
    }
    if commit.block_id.hash != header_hash {
        return Err(VerifyError::CommitBlockIdMismatch {
            height,
            commit: commit.block_id.hash,
            header: header_hash,
        });
    }
    Ok(header_hash)
}

/// Checks a validator set on its own and that it is the header's set
/// (its hash equals the header's `validators_hash`).
pub fn check_validator_set(header: &Header, set: &ValidatorSet) -> Result<(), VerifyError> {
    set.validate().map_err(|source| VerifyError::Malformed {
        height: header.height,
        what: "validator set",
        source,
    })?;
    let actual = set.hash();
    if actual != header.validators_hash {
        return Err(VerifyError::ValidatorSetMismatch {
            height: header.height,
            expected: header.validators_hash,
            actual,
        });
    }
    Ok(())
}

/// Full verification: the commit is bound to the header and more than 2/3 of
/// the header's own validator set signed it.
///
/// `chain_id` is the chain the caller trusts; `validators` must be the
/// header's set (its hash is checked against `validators_hash`). A signature by
/// a validator outside the set is an error.
pub fn verify_commit_full(
    chain_id: &str,
    header: &Header,
    commit: &Commit,
    validators: &ValidatorSet,
) -> Result<VerifiedCommit, VerifyError> {
    check_header(chain_id, header)?;
    let header_hash = bind_commit(header, commit)?;
    check_validator_set(header, validators)?;
    let mut check = CommitCheck::new(header, commit);
    check.tally_own(validators)?;
    Ok(VerifiedCommit {
        header_hash,
        signatures_verified: check.signatures_verified,
    })
}

/// Trusting (skip) verification: the commit is bound to the header, more than
/// `trust` of the `trusted` set signed it (signatures by non-members of the
/// trusted set are ignored), and more than 2/3 of the header's own set
/// `validators` signed it. When both sets are equal, only the 2/3 tally runs.
/// Each signature is verified at most once across the two tallies.
pub fn verify_commit_trusting(
    chain_id: &str,
    header: &Header,
    commit: &Commit,
    trusted: &ValidatorSet,
    validators: &ValidatorSet,
    trust: TrustThreshold,
) -> Result<VerifiedCommit, VerifyError> {
    check_header(chain_id, header)?;
    let header_hash = bind_commit(header, commit)?;
    check_validator_set(header, validators)?;
    trusted
        .validate()
        .map_err(|source| VerifyError::Malformed {
            height: header.height,
            what: "trusted validator set",
            source,
        })?;
    let mut check = CommitCheck::new(header, commit);
    check.tally_trusting(trusted, validators, trust)?;
    Ok(VerifiedCommit {
        header_hash,
        signatures_verified: check.signatures_verified,
    })
}

/// The trusting half of skip verification alone: the commit is bound to the
/// header and more than `trust` of the `trusted` set signed it (non-members
/// ignored). This says the header can be trusted from the trusted set, not
/// that it is final: combine it with +2/3 of the header's own set
/// ([`verify_commit_trusting`] does both) before accepting the header.
pub fn verify_commit_trusted_overlap(
    chain_id: &str,
    header: &Header,
    commit: &Commit,
    trusted: &ValidatorSet,
    trust: TrustThreshold,
) -> Result<VerifiedCommit, VerifyError> {
    check_header(chain_id, header)?;
    let header_hash = bind_commit(header, commit)?;
    trusted
        .validate()
        .map_err(|source| VerifyError::Malformed {
            height: header.height,
            what: "trusted validator set",
            source,
        })?;
    let mut check = CommitCheck::new(header, commit);
    check.tally_trusted(trusted, trust)?;
    Ok(VerifiedCommit {
        header_hash,
        signatures_verified: check.signatures_verified,
    })
}

/// The claimed (unverified) voting power of `set`'s members among the
/// commit's signers. Cheap: no signature is checked. Used to choose which
/// header to verify before paying for signatures.
pub fn claimed_power(commit: &Commit, set: &ValidatorSet) -> u64 {
    let members: HashMap<Address, u64> = set
        .validators
        .iter()
        .map(|v| (address_of(&v.pub_key), v.voting_power))
        .collect();
    let mut seen = HashSet::with_capacity(commit.signatures.len());
    commit
        .signatures
        .iter()
        .filter(|sig| seen.insert(sig.validator_address))
        .filter_map(|sig| members.get(&sig.validator_address))
        .fold(0u64, |acc, power| acc.saturating_add(*power))
}

// ------------------------------------------------------------------ internals

/// Whether a signature by a validator outside the tallied set is ignored or an error.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NonMember {
    Ignore,
    Reject,
}

/// The verification of one commit, with a cache shared between tallies.
pub(crate) struct CommitCheck<'a> {
    height: u64,
    commit: &'a Commit,
    sign_bytes: Vec<u8>,
    /// For each signature of the commit, the key it was verified with.
    verified: Vec<Option<PublicKey>>,
    /// Signatures verified so far.
    pub(crate) signatures_verified: usize,
}

impl<'a> CommitCheck<'a> {
    /// A check of `commit` (already bound to `header`).
    pub(crate) fn new(header: &Header, commit: &'a Commit) -> Self {
        Self {
            height: header.height,
            commit,
            sign_bytes: commit_sign_bytes(&header.chain_id, commit),
            verified: vec![None; commit.signatures.len()],
            signatures_verified: 0,
        }
    }

    /// +2/3 of the header's own set; non-members are errors.
    pub(crate) fn tally_own(&mut self, own: &ValidatorSet) -> Result<(), VerifyError> {
        let total = own.total_voting_power();
        self.tally(own, TrustThreshold::TWO_THIRDS, NonMember::Reject)
            .map_err(|short| match short {
                Short::Error(e) => e,
                Short::Power(tallied) => VerifyError::NotEnoughOwnPower {
                    height: self.height,
                    tallied,
                    total,
                },
            })
    }

    /// More than `trust` of `trusted` (non-members ignored), then +2/3 of `own`.
    pub(crate) fn tally_trusting(
        &mut self,
        trusted: &ValidatorSet,
        own: &ValidatorSet,
        trust: TrustThreshold,
    ) -> Result<(), VerifyError> {
        if trusted != own {
            self.tally_trusted(trusted, trust)?;
        }
        self.tally_own(own)
    }

    /// More than `trust` of `trusted`; non-members ignored.
    pub(crate) fn tally_trusted(
        &mut self,
        trusted: &ValidatorSet,
        trust: TrustThreshold,
    ) -> Result<(), VerifyError> {
        let total = trusted.total_voting_power();
        self.tally(trusted, trust, NonMember::Ignore)
            .map_err(|short| match short {
                Short::Error(e) => e,
                Short::Power(tallied) => VerifyError::NotEnoughTrustedPower {
                    height: self.height,
                    tallied,
                    total,
                    threshold: trust,
                },
            })
    }

    /// Counts the power of `set`'s members that signed until it strictly
    /// exceeds `threshold`, then verifies exactly the signatures counted.
    fn tally(
        &mut self,
        set: &ValidatorSet,
        threshold: TrustThreshold,
        non_member: NonMember,
    ) -> Result<(), Short> {
        let height = self.height;
        let total = set.total_voting_power();
        let mut members: HashMap<Address, (PublicKey, u64)> =
            HashMap::with_capacity(set.validators.len());
        for v in &set.validators {
            let address = address_of(&v.pub_key);
            if members
                .insert(address, (v.pub_key, v.voting_power))
                .is_some()
            {
                return Err(Short::Error(VerifyError::DuplicateValidatorAddress {
                    height,
                    validator: address,
                }));
            }
        }
        // Reject duplicates and (for the own set) non-members over the whole
        // commit first: cheap, and independent of where the tally stops.
        let mut seen = HashSet::with_capacity(self.commit.signatures.len());
        for sig in &self.commit.signatures {
            if !seen.insert(sig.validator_address) {
                return Err(Short::Error(VerifyError::DuplicateVote {
                    height,
                    validator: sig.validator_address,
                }));
            }
            if non_member == NonMember::Reject && !members.contains_key(&sig.validator_address) {
                return Err(Short::Error(VerifyError::UnknownValidator {
                    height,
                    validator: sig.validator_address,
                }));
            }
        }
        let mut tallied: u64 = 0;
        let mut pending: Vec<(usize, PublicKey)> = Vec::new();
        for (index, sig) in self.commit.signatures.iter().enumerate() {
            let Some(&(pub_key, power)) = members.get(&sig.validator_address) else {
                continue;
            };
            tallied = tallied.saturating_add(power);
            if self.verified.get(index).copied().flatten() != Some(pub_key) {
                pending.push((index, pub_key));
            }
            if threshold.is_exceeded(tallied, total) {
                self.verify_signatures(&pending).map_err(Short::Error)?;
                return Ok(());
            }
        }
        Err(Short::Power(tallied))
    }

    /// Verifies the signatures at the given commit indices with the given
    /// keys, in batches; on failure finds and names the first bad one.
    fn verify_signatures(&mut self, pending: &[(usize, PublicKey)]) -> Result<(), VerifyError> {
        if pending.is_empty() {
            return Ok(());
        }
        let height = self.height;
        let mut keys = Vec::with_capacity(pending.len());
        let mut signatures = Vec::with_capacity(pending.len());
        for &(index, pub_key) in pending {
            let Some(sig) = self.commit.signatures.get(index) else {
                continue;
            };
            let key = VerifyingKey::from_bytes(&pub_key.0)
                .ok()
                .filter(|key| !key.is_weak())
                .ok_or(VerifyError::InvalidPublicKey {
                    height,
                    validator: sig.validator_address,
                })?;
            keys.push(key);
            signatures.push(ed25519_dalek::Signature::from_bytes(&sig.signature.0));
        }
        let message = self.sign_bytes.as_slice();
        let chunks = chunk_count(keys.len());
        let chunk_len = keys.len().div_ceil(chunks);
        let batch_ok = keys
            .par_chunks(chunk_len)
            .zip(signatures.par_chunks(chunk_len))
            .all(|(keys, signatures)| {
                let messages = vec![message; keys.len()];
                ed25519_dalek::verify_batch(&messages, signatures, keys).is_ok()
            });
        if !batch_ok {
            for ((&(index, _), key), signature) in pending.iter().zip(&keys).zip(&signatures) {
                if key.verify(message, signature).is_err() {
                    let validator = self
                        .commit
                        .signatures
                        .get(index)
                        .map(|s| s.validator_address)
                        .unwrap_or_default();
                    return Err(VerifyError::InvalidSignature { height, validator });
                }
            }
            return Err(VerifyError::BatchSignatureFailure { height });
        }
        for &(index, pub_key) in pending {
            if let Some(slot) = self.verified.get_mut(index) {
                *slot = Some(pub_key);
            }
        }
        self.signatures_verified = self.signatures_verified.saturating_add(keys.len());
        Ok(())
    }
}

/// Why a tally ended without passing.
enum Short {
    /// A rule was broken.
    Error(VerifyError),
    /// The threshold was not exceeded; the power tallied.
    Power(u64),
}

/// How many parallel batches to split `n` signatures into.
fn chunk_count(n: usize) -> usize {
    let by_size = n / MIN_SIGNATURES_PER_PARALLEL_BATCH;
    by_size.clamp(1, rayon::current_num_threads().max(1))
}

/// Maps a commit shape error, naming a duplicate vote as such.
fn commit_shape_error(height: u64, commit: &Commit, source: WireError) -> VerifyError {
    if let WireError::Duplicate { index, .. } = source
        && let Some(sig) = commit.signatures.get(index)
    {
        return VerifyError::DuplicateVote {
            height,
            validator: sig.validator_address,
        };
    }
    VerifyError::Malformed {
        height,
        what: "commit",
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_strict() {
        assert!(!TrustThreshold::ONE_THIRD.is_exceeded(1, 3));
        assert!(TrustThreshold::ONE_THIRD.is_exceeded(2, 4));
        assert!(!TrustThreshold::TWO_THIRDS.is_exceeded(2, 3));
        assert!(TrustThreshold::TWO_THIRDS.is_exceeded(3, 4));
        assert!(TrustThreshold::TWO_THIRDS.is_exceeded(u64::MAX, u64::MAX));
    }

    #[test]
    fn threshold_range() {
        assert!(TrustThreshold::new(1, 4).is_none());
        assert!(TrustThreshold::new(1, 1).is_none());
        assert!(TrustThreshold::new(1, 0).is_none());
        assert_eq!(TrustThreshold::new(1, 3), Some(TrustThreshold::ONE_THIRD));
    }
}
