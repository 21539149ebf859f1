//! Verification errors: each names the header height and the rule it broke.

use headway_wire::{Address, Hash, WireError};

use crate::verify::TrustThreshold;

/// A header, commit, validator set or batch broke a verification rule.
///
/// Every variant carries the height of the header it is about (see
/// [`VerifyError::height`]); its message states the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Basic validation failed: a shape rule of the wire types.
    #[error("height {height}: malformed {what}: {source}")]
    Malformed {
        /// Height of the header concerned.
        height: u64,
        /// Which part: `"header"`, `"commit"`, `"validator set"`, `"signed header"`.
        what: &'static str,
        /// The broken shape rule.
        #[source]
        source: WireError,
    },
    /// The header's chain id is not the trusted chain id.
    #[error("height {height}: chain id {actual:?} is not the trusted chain id {expected:?}")]
    ChainIdMismatch {
        /// Height of the header.
        height: u64,
        /// The trusted chain id.
        expected: String,
        /// The header's chain id.
        actual: String,
    },
    /// The commit's height is not the header's height.
    #[error("height {height}: commit is for height {commit_height}, not the header's")]
    CommitHeightMismatch {
        /// Height of the header.
        height: u64,
        /// Height in the commit.
        commit_height: u64,
    },
    /// The commit's block id hash is not the header hash: the commit is for
    /// another block.
    #[error("height {height}: commit is for block {commit}, but the header hash is {header}")]
    CommitBlockIdMismatch {
        /// Height of the header.
        height: u64,
        /// The block id hash in the commit.
        commit: Hash,
        /// The header hash.
        header: Hash,
    },
    /// A validator set's hash is not the header's `validators_hash`.
    #[error(
        "height {height}: validator set hash {actual} is not the header's validators_hash {expected}"
    )]
    ValidatorSetMismatch {
        /// Height of the header.
        height: u64,
        /// The header's `validators_hash`.
        expected: Hash,
        /// The hash of the set offered.
        actual: Hash,
    },
    /// The header's validator set changed (its `validators_hash` differs from
    /// the previous header's) but no validator set is attached.
    #[error("height {height}: validators_hash changed but no validator set is attached")]
    MissingValidatorSet {
        /// Height of the header.
        height: u64,
    },
    /// A validator's public key is not a valid Ed25519 point, or is of small order.
    #[error("height {height}: public key of validator {validator} is not a valid Ed25519 key")]
    InvalidPublicKey {
        /// Height of the header.
        height: u64,
        /// The validator's address.
        validator: Address,
    },
    /// A signature in the commit does not verify.
    #[error("height {height}: signature of validator {validator} does not verify")]
    InvalidSignature {
        /// Height of the header.
        height: u64,
        /// The signer's address.
        validator: Address,
    },
    /// A batch of signatures failed but each verified on its own (cannot
    /// happen with honest or random data; reported rather than accepted).
    #[error("height {height}: batch signature verification failed without a single bad signature")]
    BatchSignatureFailure {
        /// Height of the header.
        height: u64,
    },
    /// The same validator voted twice in one commit.
    #[error("height {height}: validator {validator} voted more than once")]
    DuplicateVote {
        /// Height of the header.
        height: u64,
        /// The validator's address.
        validator: Address,
    },
    /// A commit carries a signature by a validator outside the header's own set.
    #[error("height {height}: signature by {validator}, who is not in the header's validator set")]
    UnknownValidator {
        /// Height of the header.
        height: u64,
        /// The signer's address.
        validator: Address,
    },
    /// Two validators of one set have the same address.
    #[error("height {height}: two validators of a set share the address {validator}")]
    DuplicateValidatorAddress {
        /// Height of the header.
        height: u64,
        /// The shared address.
        validator: Address,
    },
    /// The trusted validator set's signatures do not reach the trust threshold.
    #[error(
        "height {height}: trusted validators signed {tallied} of {total} voting power, not more than {threshold}"
    )]
    NotEnoughTrustedPower {
        /// Height of the header.
        height: u64,
        /// Voting power of trusted validators that signed (counted until the tally stopped).
        tallied: u64,
        /// Total voting power of the trusted set.
        total: u64,
        /// The threshold that had to be exceeded.
        threshold: TrustThreshold,
    },
    /// The header's own validator set's signatures do not exceed 2/3 of its power.
    #[error(
        "height {height}: its validators signed {tallied} of {total} voting power, not more than 2/3"
    )]
    NotEnoughOwnPower {
        /// Height of the header.
        height: u64,
        /// Voting power that signed.
        tallied: u64,
        /// Total voting power of the header's set.
        total: u64,
    },
    /// A header does not follow the previous one: `last_block_id` is not the
    /// previous header's hash.
    #[error(
        "height {height}: last_block_id {actual:?} is not the previous header's hash {expected}"
    )]
    LinkageBroken {
        /// Height of the header.
        height: u64,
        /// The previous header's hash.
        expected: Hash,
        /// The header's `last_block_id` hash.
        actual: Option<Hash>,
    },
    /// `validators_hash` is not the previous header's `next_validators_hash`.
    #[error(
        "height {height}: validators_hash {actual} is not the previous header's next_validators_hash {expected}"
    )]
    ValidatorsHashDiscontinuity {
        /// Height of the header.
        height: u64,
        /// The previous header's `next_validators_hash`.
        expected: Hash,
        /// The header's `validators_hash`.
        actual: Hash,
    },
    /// Heights are not consecutive from the trusted header.
    #[error("height {height}: expected height {expected}")]
    NonSequentialHeight {
        /// The height received.
        height: u64,
        /// The height required at this position.
        expected: u64,
    },
    /// The header's time is not after the previous header's.
    #[error(
        "height {height}: time {time_ms} ms is not after the previous header's {previous_ms} ms"
    )]
    TimeNotIncreasing {
        /// Height of the header.
        height: u64,
        /// The header's time.
        time_ms: u64,
        /// The previous header's time.
        previous_ms: u64,
    },
    /// No header of a batch (or bisection step) could be trusted from the
    /// trusted state: every one lacks 1/3 trusted overlap and none is adjacent.
    #[error("height {height}: no header up to here can be trusted from the trusted state")]
    NoTrustedPath {
        /// Height of the header that was to be verified.
        height: u64,
    },
    /// The batch is empty.
    #[error("height {height}: empty batch")]
    EmptyBatch {
        /// The height the batch should start at.
        height: u64,
    },
    /// The batch holds more headers than allowed.
    #[error("height {height}: batch of {len} headers is over the limit of {max}")]
    BatchTooLong {
        /// The height the batch starts at.
        height: u64,
        /// Headers in the batch.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The header to verify is not above the trusted height.
    #[error("height {height}: not above the trusted height {trusted_height}")]
    NotAfterTrusted {
        /// Height asked for.
        height: u64,
        /// Trusted height.
        trusted_height: u64,
    },
}

impl VerifyError {
    /// The height of the header the error is about.
    pub fn height(&self) -> u64 {
        match self {
            Self::Malformed { height, .. }
            | Self::ChainIdMismatch { height, .. }
            | Self::CommitHeightMismatch { height, .. }
            | Self::CommitBlockIdMismatch { height, .. }
            | Self::ValidatorSetMismatch { height, .. }
            | Self::MissingValidatorSet { height }
            | Self::InvalidPublicKey { height, .. }
            | Self::InvalidSignature { height, .. }
            | Self::BatchSignatureFailure { height }
            | Self::DuplicateVote { height, .. }
            | Self::UnknownValidator { height, .. }
            | Self::DuplicateValidatorAddress { height, .. }
            | Self::NotEnoughTrustedPower { height, .. }
            | Self::NotEnoughOwnPower { height, .. }
            | Self::LinkageBroken { height, .. }
            | Self::ValidatorsHashDiscontinuity { height, .. }
            | Self::NonSequentialHeight { height, .. }
            | Self::TimeNotIncreasing { height, .. }
            | Self::NoTrustedPath { height }
            | Self::EmptyBatch { height }
            | Self::BatchTooLong { height, .. }
            | Self::NotAfterTrusted { height, .. } => *height,
        }
    }
}
