//! The history root: an MMR over the hashes of all earlier headers.
//!
//! The header at height `h` carries the root of the MMR (`headway-mmr`) whose
//! leaves are the hashes of headers `1..h-1`, leaf index `i` being the header
//! at height `i + 1`; a leaf's data is the 32-byte header hash. So any
//! verified header commits to its whole ancestry, and header ranges can be
//! proven against it.

use headway_mmr::{MemStore, Mmr, MmrError};
use headway_wire::Hash;

/// Accumulates header hashes and gives the history root the next header must carry.
#[derive(Debug, Default)]
pub struct HistoryAccumulator {
    mmr: Mmr<MemStore>,
}

impl HistoryAccumulator {
    /// The accumulator before height 1 (no header yet).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the hash of the next header (height [`Self::len`] + 1).
    pub fn push(&mut self, header_hash: &Hash) -> Result<(), MmrError<std::convert::Infallible>> {
        self.mmr.append(&header_hash.0).map(|_| ())
    }

    /// The history root the header at height `len() + 1` must carry.
    pub fn root(&self) -> Hash {
        Hash(self.mmr.root())
    }

    /// Number of header hashes appended.
    pub fn len(&self) -> u64 {
        self.mmr.leaf_count()
    }

    /// Whether no header hash was appended yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The underlying MMR, for proofs.
    pub fn mmr(&self) -> &Mmr<MemStore> {
        &self.mmr
    }
}
