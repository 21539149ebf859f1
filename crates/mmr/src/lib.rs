//! A Merkle Mountain Range (MMR) over SHA-256, the chain commitment that
//! Headway's parallel header sync is built on.
//!
//! The header at height `h` carries the root of the MMR over the hashes of
//! headers `1..h-1` (leaf index `i` is the header at height `i + 1`). Peers
//! agree on a commitment, download header ranges from many peers at once, and
//! check each range against the commitment with a compact proof.
//!
//! The construction, normative and specified bit for bit in `docs/mmr.md`:
//! - leaf `SHA256(0x00 || data)`, interior node `SHA256(0x01 || left || right)`;
//! - one perfect tree (peak) per set bit of the leaf count, oldest on the left;
//! - root `SHA256(0x02 || peak_0 || … || peak_k || u64_be(leaf_count))`, no bagging;
//!   the count comes last so that a root after an append re-hashes only the
//!   changed peaks from a cached midstate.
//!
//! A [`Proof`] is only a sequence of hashes: verifiers derive every structural
//! fact from the leaf counts and indices they already trust. There are
//! proofs of one leaf ([`verify_inclusion`]), many leaves ([`verify_multi`]), a
//! contiguous range ([`verify_range`]) and that one MMR is a prefix of a larger
//! one ([`verify_ancestry`]).
//!
//! Nodes live in a [`NodeStore`]; [`MemStore`] keeps them in memory, and
//! another crate can put them on disk and report its own I/O errors.
//!
//! ```
//! use headway_mmr::{LeafHash, Mmr, Proof, verify_ancestry, verify_inclusion, verify_range};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut mmr = Mmr::default();
//! let headers: Vec<[u8; 32]> = (0u8..10).map(|i| [i; 32]).collect();
//! for header_hash in &headers {
//!     mmr.append(header_hash)?;
//! }
//! let root = mmr.root();
//!
//! // One header.
//! let proof = mmr.prove_inclusion(3, 10)?;
//! verify_inclusion(&root, 10, 3, &LeafHash::of(&headers[3]), &proof)?;
//!
//! // Headers 4..8 in one proof, sent as bytes.
//! let bytes = mmr.prove_range(4, 8, 10)?.to_bytes();
//! let leaves: Vec<LeafHash> = headers[4..8].iter().map(|h| LeafHash::of(h)).collect();
//! verify_range(&root, 10, 4, &leaves, &Proof::from_bytes(&bytes)?)?;
//!
//! // The commitment at 6 leaves is a prefix of today's.
//! let old_root = mmr.root_at(6)?;
//! verify_ancestry(&old_root, 6, &root, 10, &mmr.prove_ancestry(6, 10)?)?;
//! # Ok(())
//! # }
//! ```

mod hash;
mod mmr;
mod proof;
mod shape;
mod store;

pub use hash::{Hash, LEAF_PREFIX, LeafHash, NODE_PREFIX, ROOT_PREFIX, empty_root, node_hash};
pub use mmr::{Mmr, MmrError};
pub use proof::{
    MAX_PROOF_HASHES, PROOF_HASH_LEN, Proof, ProofError, verify_ancestry, verify_inclusion,
    verify_multi, verify_range,
};
pub use shape::MAX_LEAF_COUNT;
pub use store::{MemStore, NodeStore};

/// Compiles and runs the README's example as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
