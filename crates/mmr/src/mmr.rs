//! The MMR itself: appends, roots, rewinds and proof generation.

use crate::hash::{Hash, LeafHash, RootMidstates, node_hash, root_from_peaks};
use crate::proof::{MAX_PROOF_HASHES, Proof, ProofError, check_leaf_indices};
use crate::shape::{
    MAX_LEAF_COUNT, Peak, leaf_count_for_node_count, node_count, node_position, peaks,
};
use crate::store::{MemStore, NodeStore};

/// A Merkle Mountain Range over a [`NodeStore`].
///
/// Keeps its current peaks in memory, so appends read nothing from the store
/// and cost one leaf hash plus, on average, one node hash. Roots and proofs
/// for any leaf count up to the current one are answered from the store.
#[derive(Debug)]
pub struct Mmr<S> {
    store: S,
    leaf_count: u64,
    /// Current peaks, oldest first.
    peaks: Vec<Hash>,
    /// The nodes of the append in progress (reused, never reallocated).
    pending: Vec<Hash>,
    /// The root's hash state over the unchanged peaks (see [`Self::root`]).
    midstates: RootMidstates,
}

/// Why an operation on an [`Mmr`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MmrError<E> {
    /// The node store failed.
    #[error("node store failed")]
    Store(#[source] E),
    /// The store has no node at a position the MMR's size says it must hold.
    #[error("node store has no node at position {position}")]
    MissingNode {
        /// The missing position.
        position: u64,
    },
    /// The store's node count is not the node count of any MMR.
    #[error("node store holds {node_count} nodes, which is not the size of any MMR")]
    InvalidNodeCount {
        /// Nodes in the store.
        node_count: u64,
    },
    /// The MMR already holds [`crate::MAX_LEAF_COUNT`] leaves.
    #[error("MMR is full: it holds the maximum of {max} leaves")]
    Full {
        /// [`crate::MAX_LEAF_COUNT`].
        max: u64,
    },
    /// A leaf count above the current one was asked for.
    #[error("leaf count {requested} is beyond the current leaf count {current}")]
    LeafCountBeyondCurrent {
        /// The leaf count asked for.
        requested: u64,
        /// The MMR's leaf count.
        current: u64,
    },
    /// The leaves or counts asked to prove are invalid (out of range,
    /// unsorted, duplicated, empty, wrong order).
    #[error("invalid proof request")]
    InvalidRequest(#[source] ProofError),
    /// The requested proof would have more than [`crate::MAX_PROOF_HASHES`] hashes.
    #[error("proof would have more than {max} hashes")]
    ProofTooLarge {
        /// [`crate::MAX_PROOF_HASHES`].
        max: usize,
    },
}

impl Default for Mmr<MemStore> {
    /// An empty MMR in memory.
    fn default() -> Self {
        Self::empty(MemStore::new())
    }
}

impl<S: NodeStore> Mmr<S> {
    /// Opens the MMR held by `store`: the leaf count follows from the store's
    /// node count, and the peaks are read back.
    pub fn new(store: S) -> Result<Self, MmrError<S::Error>> {
        let node_count = store.node_count();
        let leaf_count = leaf_count_for_node_count(node_count)
            .ok_or(MmrError::InvalidNodeCount { node_count })?;
        let mut mmr = Self::empty(store);
        mmr.peaks = mmr.peak_hashes_at(leaf_count)?;
        mmr.midstates.update(&mmr.peaks, 0);
        mmr.leaf_count = leaf_count;
        Ok(mmr)
    }

    /// Number of leaves.
    #[must_use]
    pub fn leaf_count(&self) -> u64 {
        self.leaf_count
    }

    /// Current peaks, oldest (tallest) first: one per set bit of the leaf count.
    #[must_use]
    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// Current root: `SHA256(0x02 || peaks… || u64_be(leaf_count))`.
    ///
    /// Keeps SHA-256's state over the peaks that appends left unchanged, so
    /// a root after each append costs about two compressions, not the
    /// whole message (a store checking every header's `history_root` takes
    /// a root per append).
    #[must_use]
    pub fn root(&self) -> Hash {
        self.midstates.root(self.leaf_count, &self.peaks)
    }

    /// The root the MMR had when it held `leaf_count` leaves (for example, the
    /// chain commitment at some height), read from stored nodes.
    pub fn root_at(&self, leaf_count: u64) -> Result<Hash, MmrError<S::Error>> {
        self.check_leaf_count(leaf_count)?;
        if leaf_count == self.leaf_count {
            return Ok(self.root());
        }
        Ok(root_from_peaks(
            leaf_count,
            &self.peak_hashes_at(leaf_count)?,
        ))
    }

    /// Appends a leaf with `data` (hashed as `SHA256(0x00 || data)`) and
    /// returns its leaf index.
    pub fn append(&mut self, data: &[u8]) -> Result<u64, MmrError<S::Error>> {
        self.append_leaf_hash(LeafHash::of(data))
    }

    /// Appends a leaf whose hash is already computed and returns its leaf index.
    pub fn append_leaf_hash(&mut self, leaf: LeafHash) -> Result<u64, MmrError<S::Error>> {
        let leaf_index = self.leaf_count;
        let unchanged = self.push_leaf(leaf)?;
        self.midstates.update(&self.peaks, unchanged);
        Ok(leaf_index)
    }

    /// Appends leaves whose hashes are already computed, in order, bringing
    /// the root's hash state (see [`Self::root`]) up to date once at the end
    /// instead of after each leaf: for a caller that wants no root between
    /// them, this saves about a third of the cost of an append. The result is
    /// that of appending them one by one. Returns how many were appended.
    ///
    /// # Errors
    ///
    /// As [`Self::append_leaf_hash`], for the first leaf that fails; the
    /// leaves before it stay appended (and the root is theirs).
    pub fn extend_leaf_hashes(
        &mut self,
        leaves: impl IntoIterator<Item = LeafHash>,
    ) -> Result<u64, MmrError<S::Error>> {
        let mut unchanged = self.peaks.len();
        let mut appended = 0;
        let mut result = Ok(());
        for leaf in leaves {
            match self.push_leaf(leaf) {
                Ok(kept) => {
                    unchanged = unchanged.min(kept);
                    appended += 1;
                }
                Err(error) => {
                    result = Err(error);
                    break;
                }
            }
        }
        self.midstates.update(&self.peaks, unchanged);
        result.map(|()| appended)
    }

    /// Appends a leaf and its merges to the store and the peaks, leaving
    /// the root's hash state behind; returns how many of the old peaks were
    /// left unchanged (for [`RootMidstates::update`]).
    fn push_leaf(&mut self, leaf: LeafHash) -> Result<usize, MmrError<S::Error>> {
        let leaf_index = self.leaf_count;
        if leaf_index >= MAX_LEAF_COUNT {
            return Err(MmrError::Full {
                max: MAX_LEAF_COUNT,
            });
        }
        // The new leaf merges with one peak per trailing one bit of the old
        // count; those are the last peaks, youngest first.
        let merges = leaf_index.trailing_ones() as usize;
        self.pending.clear();
        let mut node = leaf.to_bytes();
        self.pending.push(node);
        for left in self.peaks.iter().rev().take(merges) {
            node = node_hash(left, &node);
            self.pending.push(node);
        }
        self.store
            .append_nodes(&self.pending)
            .map_err(MmrError::Store)?;
        let unchanged = self.peaks.len().saturating_sub(merges);
        self.peaks.truncate(unchanged);
        self.peaks.push(node);
        self.leaf_count = leaf_index + 1;
        Ok(unchanged)
    }

    /// Rewinds to an earlier leaf count (a reorg), dropping later nodes from
    /// the store.
    pub fn truncate(&mut self, leaf_count: u64) -> Result<(), MmrError<S::Error>> {
        self.check_leaf_count(leaf_count)?;
        if leaf_count == self.leaf_count {
            return Ok(());
        }
        let peaks = self.peak_hashes_at(leaf_count)?;
        // leaf_count is below the current count, so its node count fits.
        let node_count = node_count(leaf_count).unwrap_or(u64::MAX);
        self.store.truncate(node_count).map_err(MmrError::Store)?;
        self.peaks = peaks;
        self.midstates.update(&self.peaks, 0);
        self.leaf_count = leaf_count;
        Ok(())
    }

    /// The hash of the leaf at `leaf_index`.
    pub fn leaf_hash(&self, leaf_index: u64) -> Result<LeafHash, MmrError<S::Error>> {
        if leaf_index >= self.leaf_count {
            return Err(MmrError::InvalidRequest(ProofError::LeafIndexOutOfRange {
                leaf_index,
                leaf_count: self.leaf_count,
            }));
        }
        self.node(0, leaf_index).map(LeafHash::from_bytes)
    }

    /// Proves the leaf at `leaf_index` against the root at `leaf_count`
    /// (at most the current leaf count). Verify with [`crate::verify_inclusion`].
    pub fn prove_inclusion(
        &self,
        leaf_index: u64,
        leaf_count: u64,
    ) -> Result<Proof, MmrError<S::Error>> {
        // The range of one leaf is the same proof, built without scratch space.
        self.check_leaf_count(leaf_count)?;
        match leaf_index.checked_add(1) {
            Some(end) => self.prove_range(leaf_index, end, leaf_count),
            None => Err(MmrError::InvalidRequest(ProofError::LeafIndexOutOfRange {
                leaf_index,
                leaf_count,
            })),
        }
    }

    /// Proves the leaves at `leaf_indices` (non-empty, strictly ascending)
    /// against the root at `leaf_count`. Verify with [`crate::verify_multi`].
    pub fn prove_multi(
        &self,
        leaf_indices: &[u64],
        leaf_count: u64,
    ) -> Result<Proof, MmrError<S::Error>> {
        self.check_leaf_count(leaf_count)?;
        check_leaf_indices(leaf_indices.iter().copied(), leaf_count)
            .map_err(MmrError::InvalidRequest)?;
        let mut out = ProofBuilder::default();
        let mut level = Vec::new();
        let mut next = Vec::new();
        let mut rest = leaf_indices;
        for peak in peaks(leaf_count) {
            let (below, after) = rest.split_at(rest.partition_point(|&i| i < peak.end_leaf()));
            rest = after;
            if below.is_empty() {
                out.push(self.node(peak.height, peak.index())?)?;
                continue;
            }
            level.clear();
            level.extend_from_slice(below);
            for height in 0..peak.height {
                next.clear();
                let mut pending = level.iter().peekable();
                while let Some(&index) = pending.next() {
                    let sibling = index ^ 1;
                    if pending.next_if(|&&i| i == sibling).is_none() {
                        out.push(self.node(height, sibling)?)?;
                    }
                    next.push(index >> 1);
                }
                std::mem::swap(&mut level, &mut next);
            }
        }
        Ok(out.finish())
    }

    /// Proves the contiguous leaves `[start, end)` against the root at
    /// `leaf_count`. Verify with [`crate::verify_range`]. Costs
    /// O(log `leaf_count`) store reads whatever the range's length.
    pub fn prove_range(
        &self,
        start: u64,
        end: u64,
        leaf_count: u64,
    ) -> Result<Proof, MmrError<S::Error>> {
        self.check_leaf_count(leaf_count)?;
        if start >= end || end > leaf_count {
            return Err(MmrError::InvalidRequest(ProofError::InvalidRange {
                start,
                end,
                leaf_count,
            }));
        }
        // The multi-leaf proof of start..end: at each level the known nodes
        // are a run [low, high], so only its two ends can lack a sibling.
        // At most one hash per peak plus two per level.
        let levels = u64::BITS - leaf_count.leading_zeros();
        let mut out = ProofBuilder::with_capacity((leaf_count.count_ones() + 2 * levels) as usize);
        for peak in peaks(leaf_count) {
            let (mut low, mut high) = (
                start.max(peak.first_leaf),
                (end - 1).min(peak.end_leaf() - 1),
            );
            if low > high {
                out.push(self.node(peak.height, peak.index())?)?;
                continue;
            }
            for height in 0..peak.height {
                if low & 1 == 1 {
                    out.push(self.node(height, low - 1)?)?;
                }
                if high & 1 == 0 {
                    out.push(self.node(height, high + 1)?)?;
                }
                low >>= 1;
                high >>= 1;
            }
        }
        Ok(out.finish())
    }

    /// Proves that the MMR at `old_leaf_count` is a prefix of the MMR at
    /// `new_leaf_count` (both at most the current leaf count, old ≤ new).
    /// Verify with [`crate::verify_ancestry`].
    pub fn prove_ancestry(
        &self,
        old_leaf_count: u64,
        new_leaf_count: u64,
    ) -> Result<Proof, MmrError<S::Error>> {
        self.check_leaf_count(new_leaf_count)?;
        if old_leaf_count > new_leaf_count {
            return Err(MmrError::InvalidRequest(ProofError::AncestryOrder {
                old_leaf_count,
                new_leaf_count,
            }));
        }
        let mut out = ProofBuilder::default();
        let old_peaks: Vec<Peak> = peaks(old_leaf_count).collect();
        for peak in &old_peaks {
            out.push(self.node(peak.height, peak.index())?)?;
        }
        let mut rest = old_peaks.as_slice();
        let mut level: Vec<u64> = Vec::new();
        let mut next = Vec::new();
        for peak in peaks(new_leaf_count) {
            let (inside, after) =
                rest.split_at(rest.partition_point(|old| old.first_leaf < peak.end_leaf()));
            rest = after;
            match inside {
                [] => out.push(self.node(peak.height, peak.index())?)?,
                [old] if old.height == peak.height => {}
                _ => {
                    level.clear();
                    for height in 0..peak.height {
                        for old in inside.iter().filter(|old| old.height == height) {
                            let at = level.partition_point(|&i| i < old.index());
                            level.insert(at, old.index());
                        }
                        next.clear();
                        let mut pending = level.iter().peekable();
                        while let Some(&index) = pending.next() {
                            let sibling = index ^ 1;
                            if pending.next_if(|&&i| i == sibling).is_none() {
                                out.push(self.node(height, sibling)?)?;
                            }
                            next.push(index >> 1);
                        }
                        std::mem::swap(&mut level, &mut next);
                    }
                }
            }
        }
        Ok(out.finish())
    }

    /// The underlying store.
    #[must_use]
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Gives back the underlying store.
    #[must_use]
    pub fn into_store(self) -> S {
        self.store
    }

    fn empty(store: S) -> Self {
        Self {
            store,
            leaf_count: 0,
            peaks: Vec::with_capacity(64),
            pending: Vec::with_capacity(64),
            midstates: RootMidstates::default(),
        }
    }

    fn check_leaf_count(&self, leaf_count: u64) -> Result<(), MmrError<S::Error>> {
        if leaf_count > self.leaf_count {
            return Err(MmrError::LeafCountBeyondCurrent {
                requested: leaf_count,
                current: self.leaf_count,
            });
        }
        Ok(())
    }

    /// The peak hashes of the MMR at `leaf_count` (stored nodes only).
    fn peak_hashes_at(&self, leaf_count: u64) -> Result<Vec<Hash>, MmrError<S::Error>> {
        let mut hashes = Vec::with_capacity(64);
        for peak in peaks(leaf_count) {
            hashes.push(self.node(peak.height, peak.index())?);
        }
        Ok(hashes)
    }

    /// The stored node `(level, index)`.
    fn node(&self, level: u32, index: u64) -> Result<Hash, MmrError<S::Error>> {
        let position = node_position(level, index).unwrap_or(u64::MAX);
        self.store
            .get_node(position)
            .map_err(MmrError::Store)?
            .ok_or(MmrError::MissingNode { position })
    }
}

/// Collects proof hashes, refusing to exceed [`MAX_PROOF_HASHES`].
#[derive(Default)]
struct ProofBuilder {
    hashes: Vec<Hash>,
}

impl ProofBuilder {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            hashes: Vec::with_capacity(capacity.min(MAX_PROOF_HASHES)),
        }
    }

    fn push<E>(&mut self, hash: Hash) -> Result<(), MmrError<E>> {
        if self.hashes.len() >= MAX_PROOF_HASHES {
            return Err(MmrError::ProofTooLarge {
                max: MAX_PROOF_HASHES,
            });
        }
        self.hashes.push(hash);
        Ok(())
    }

    fn finish(self) -> Proof {
        Proof::from_hashes(self.hashes)
    }
}
