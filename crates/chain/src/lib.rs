//! Headway's chain semantics: what a header, a commit and a block *mean*.
//!
//! `headway-wire` checks the shapes of the data model; this crate owns
//! everything else about it:
//!
//! - [`encoding`]: the canonical, domain-separated SHA-256 encodings: header
//!   hash ([`HeaderExt::hash`]), vote sign bytes, validator set hash, data
//!   hash, validator address. `docs/chain.md` specifies them bit for bit.
//! - [`verify`]: binding a commit to its header, full (+2/3) and trusting
//!   (1/3 skip) verification, with early-stopping tallies and batched Ed25519.
//! - [`batch`]: header-sync batch verification (seed 003, holes closed).
//! - [`bisection`]: checkpoint sync to a far header through as few
//!   intermediate headers as validator-set changes force (seed 001).
//! - [`execution`]: applying a block to a [`StateStore`] with per-prefix
//!   EllipticSum checksums, checked against the header's data hash and state root.
//! - [`history`]: the MMR history root every header carries.
//! - [`generator`]: a deterministic devnet chain generator, and invalid data on demand.
//!
//! Everything is sans-IO and deterministic.
//!
//! ```
//! use headway_chain::{ChainGenerator, GeneratorConfig, MemState, execute_block, verify_batch};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A small devnet: 4 validators, a validator rotated every 5 blocks.
//! let blocks: Vec<_> = ChainGenerator::new(GeneratorConfig::small(7))?.take(12).collect();
//!
//! // Header sync: trust block 1, verify blocks 2..=12 as one batch.
//! let trusted = blocks[0].trusted_state();
//! let batch: Vec<_> = blocks[1..].iter().map(|b| b.signed_header.clone()).collect();
//! let verified = verify_batch(&trusted, &batch)?;
//! assert_eq!(verified.trusted.height(), 12);
//!
//! // Block sync: execute every block; each result matches its header's state root.
//! let mut state = MemState::new();
//! for block in &blocks {
//!     execute_block(&mut state, &block.block)?;
//! }
//! # Ok(())
//! # }
//! ```

pub mod batch;
pub mod bisection;
pub mod encoding;
mod error;
pub mod execution;
pub mod generator;
pub mod hashed;
pub mod history;
pub mod verify;

pub use batch::{
    BatchVerified, MAX_BATCH_LEN, TrustedState, verify_batch, verify_batch_full, verify_batch_with,
};
pub use bisection::{
    BisectionError, BisectionVerified, HeaderSource, MAX_BISECTION_FETCHES, verify_to_target,
    verify_to_target_with,
};
pub use encoding::{
    HeaderExt, PublicKeyExt, ValidatorSetExt, address_of, data_hash, header_encoding,
    header_fields_hash, transaction_encoding, validator_set_hash, vote_sign_bytes,
};
pub use error::VerifyError;
pub use execution::{
    ExecutionError, ExecutionOutcome, MemState, StateStore, StateTransition, apply_transition,
    compute_transition, execute_block,
};
pub use generator::{ChainGenerator, Corruption, GeneratedBlock, GeneratorConfig, GeneratorError};
pub use hashed::{HasHeader, Hashed, HashedCompact, SignedItem};
pub use history::HistoryAccumulator;
pub use verify::{
    TrustThreshold, VerifiedCommit, bind_commit, bind_commit_hashed, check_header,
    check_validator_set, verify_commit_full, verify_commit_trusted_overlap, verify_commit_trusting,
};

/// The per-prefix checksums type of the state, from `headway-ellipticsum`.
pub use headway_ellipticsum::PrefixChecksums;
/// The data model, re-exported from `headway-wire` so users see one set of types.
pub use headway_wire::{
    Address, Block, BlockId, BlockMeta, Commit, CommitSig, Hash, Header, PublicKey, Signature,
    SignedHeader, Transaction, Validator, ValidatorSet, WireError, Write,
};
