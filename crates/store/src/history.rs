//! The history MMR persisted in sled, and the proofs served from it.
//!
//! Leaf `i` is the hash of the header at height `i + 1`; `C(X)` is the root
//! of the MMR over headers `1..=X` (the `history_root` of header `X + 1`).
//! Nodes are appended in the same batch as the headers they come from, packed
//! into chunks (one value per batch, see [`SledNodes`]), so after a restart
//! every proof for any `X <= header_height` can be served.

use std::cell::{Cell, RefCell};

use headway_mmr::{Hash as NodeHash, MAX_LEAF_COUNT, Mmr, NodeStore, Proof};
use headway_wire::Hash;

use crate::keys;
use crate::{Store, StoreError};

/// The number of MMR nodes of `leaves` leaves (`2n - popcount(n)`), if in range.
pub(crate) fn node_count_for_leaves(leaves: u64) -> Option<u64> {
    if leaves > MAX_LEAF_COUNT {
        return None;
    }
    leaves
        .checked_mul(2)
        .map(|n| n - u64::from(leaves.count_ones()))
}

/// The most nodes one MMR chunk holds (32 KiB), so that a lookup copies a
/// bounded value. A batch's pending nodes are split into chunks this long.
pub(crate) const MAX_CHUNK_NODES: usize = 1024;

/// MMR nodes in sled, packed into chunks (format 2): positions below
/// `persisted` are on disk, in values keyed `MMR_CHUNK || be64(first
/// position)` holding up to [`MAX_CHUNK_NODES`] consecutive 32-byte nodes;
/// the rest are the pending nodes of the batch being built. A header batch
/// writes its nodes as one chunk (or a few), not one key per node.
///
/// [`Mmr`] keeps its peaks in memory, so appends read nothing from here;
/// reads (roots at earlier counts, proofs, rewinds) find a position's chunk
/// with one range lookup, and the last chunk read or written is cached so
/// neighbouring reads do not repeat it.
///
/// The counters use interior mutability because [`Mmr`] only lends its store
/// by shared reference once built.
pub(crate) struct SledNodes {
    db: sled::Db,
    persisted: Cell<u64>,
    pending: RefCell<Vec<NodeHash>>,
    /// The last chunk read or persisted: first position and its bytes.
    cached: RefCell<Option<Chunk>>,
    /// The last chunk of the staged batch, cached once it is persisted.
    staged: RefCell<Option<Chunk>>,
}

/// A stored chunk: its first position and its nodes' bytes.
#[derive(Clone)]
pub(crate) struct Chunk {
    first: u64,
    bytes: sled::IVec,
}

impl Chunk {
    /// Checks a chunk row read from sled.
    fn from_row(key: &[u8], bytes: sled::IVec) -> Result<Self, StoreError> {
        let first = match (key.len(), keys::u64_at(key, 1)) {
            // Every position of the chunk must fit in a u64.
            (9, Some(first)) if first <= u64::MAX - MAX_CHUNK_NODES as u64 => first,
            _ => return Err(StoreError::corrupt(key, "malformed MMR chunk key")),
        };
        if bytes.is_empty() || !bytes.len().is_multiple_of(32) || bytes.len() > MAX_CHUNK_NODES * 32
        {
            return Err(StoreError::corrupt(
                key,
                format!(
                    "MMR chunk is {} bytes, expected 1..={MAX_CHUNK_NODES} 32-byte nodes",
                    bytes.len()
                ),
            ));
        }
        Ok(Self { first, bytes })
    }

    /// The position after the chunk's last node.
    pub(crate) fn end(&self) -> u64 {
        self.first + (self.bytes.len() / 32) as u64
    }

    /// The first position.
    pub(crate) fn first(&self) -> u64 {
        self.first
    }

    /// The node at `position`, if the chunk holds it.
    fn node(&self, position: u64) -> Option<NodeHash> {
        let offset = usize::try_from(position.checked_sub(self.first)?).ok()?;
        let at = offset.checked_mul(32)?;
        self.bytes
            .get(at..at.checked_add(32)?)
            .and_then(|b| NodeHash::try_from(b).ok())
    }
}

/// Every stored chunk in position order, checked one by one.
pub(crate) fn chunks(db: &sled::Db) -> impl Iterator<Item = Result<Chunk, StoreError>> + '_ {
    db.scan_prefix([keys::MMR_CHUNK]).map(|row| {
        let (key, value) = row.map_err(StoreError::engine("reading the MMR"))?;
        Chunk::from_row(&key, value)
    })
}

/// The last stored chunk, if any.
pub(crate) fn last_chunk(db: &sled::Db) -> Result<Option<Chunk>, StoreError> {
    let Some(row) = db.scan_prefix([keys::MMR_CHUNK]).next_back() else {
        return Ok(None);
    };
    let (key, value) = row.map_err(StoreError::engine("reading the MMR"))?;
    Chunk::from_row(&key, value).map(Some)
}

impl SledNodes {
    pub(crate) fn new(db: sled::Db, persisted: u64) -> Self {
        Self {
            db,
            persisted: Cell::new(persisted),
            pending: RefCell::new(Vec::new()),
            cached: RefCell::new(None),
            staged: RefCell::new(None),
        }
    }

    /// As [`SledNodes::new`], with a chunk already read (the last one, at open).
    pub(crate) fn with_cached(db: sled::Db, persisted: u64, chunk: Option<Chunk>) -> Self {
        let nodes = Self::new(db, persisted);
        *nodes.cached.borrow_mut() = chunk;
        nodes
    }

    /// Stages the pending nodes into `batch` as chunks of at most
    /// [`MAX_CHUNK_NODES`], removing any chunk left at or above the first
    /// pending position (only a batch that reached sled but whose flush
    /// failed can leave one).
    pub(crate) fn stage(&self, batch: &mut sled::Batch) -> Result<(), StoreError> {
        let persisted = self.persisted.get();
        let from = keys::by_u64(keys::MMR_CHUNK, persisted).to_vec();
        for stale in self.db.range(from..vec![keys::MMR_CHUNK + 1]).keys() {
            batch.remove(stale.map_err(StoreError::engine("reading the MMR"))?);
        }
        let pending = self.pending.borrow();
        let mut first = persisted;
        let mut last = None;
        for nodes in pending.chunks(MAX_CHUNK_NODES) {
            let bytes: sled::IVec = nodes.concat().into();
            batch.insert(&keys::by_u64(keys::MMR_CHUNK, first)[..], bytes.clone());
            last = Some(Chunk { first, bytes });
            first += nodes.len() as u64;
        }
        *self.staged.borrow_mut() = last;
        Ok(())
    }

    /// The staged nodes are on disk now.
    pub(crate) fn mark_persisted(&self) {
        let mut pending = self.pending.borrow_mut();
        // pending.len() is bounded by memory, so it fits in u64.
        self.persisted
            .set(self.persisted.get() + pending.len() as u64);
        pending.clear();
        if let Some(chunk) = self.staged.borrow_mut().take() {
            *self.cached.borrow_mut() = Some(chunk);
        }
    }

    /// The stored chunk holding `position`, if any.
    fn chunk_at(&self, position: u64) -> Result<Option<Chunk>, StoreError> {
        let from = keys::by_u64(keys::MMR_CHUNK, 0);
        let to = keys::by_u64(keys::MMR_CHUNK, position);
        let Some(row) = self.db.range(from..=to).next_back() else {
            return Ok(None);
        };
        let (key, value) = row.map_err(StoreError::engine("reading an MMR node"))?;
        Chunk::from_row(&key, value).map(Some)
    }
}

impl NodeStore for SledNodes {
    type Error = StoreError;

    fn node_count(&self) -> u64 {
        self.persisted.get() + self.pending.borrow().len() as u64
    }

    fn get_node(&self, position: u64) -> Result<Option<NodeHash>, StoreError> {
        let persisted = self.persisted.get();
        if position >= persisted {
            let offset = usize::try_from(position - persisted).unwrap_or(usize::MAX);
            return Ok(self.pending.borrow().get(offset).copied());
        }
        if let Some(node) = self.cached.borrow().as_ref().and_then(|c| c.node(position)) {
            return Ok(Some(node));
        }
        let Some(chunk) = self.chunk_at(position)? else {
            return Ok(None);
        };
        let node = chunk.node(position);
        *self.cached.borrow_mut() = Some(chunk);
        Ok(node)
    }

    fn append_nodes(&mut self, nodes: &[NodeHash]) -> Result<(), StoreError> {
        self.pending.get_mut().extend_from_slice(nodes);
        Ok(())
    }

    fn truncate(&mut self, node_count: u64) -> Result<(), StoreError> {
        let persisted = self.persisted.get();
        if node_count < persisted {
            return Err(StoreError::corrupt(
                &keys::by_u64(keys::MMR_CHUNK, node_count),
                "rewinding the stored history MMR is not supported",
            ));
        }
        let keep = usize::try_from(node_count - persisted).unwrap_or(usize::MAX);
        self.pending.get_mut().truncate(keep);
        *self.staged.get_mut() = None;
        Ok(())
    }
}

impl Store {
    /// A read-only MMR over the persisted nodes of the first
    /// `header_height()` leaves; its reads never block writers.
    fn history_view(&self) -> Result<Mmr<SledNodes>, StoreError> {
        let leaves = self.header_height();
        let nodes = node_count_for_leaves(leaves).unwrap_or(u64::MAX);
        Ok(Mmr::new(SledNodes::new(self.inner.db.clone(), nodes))?)
    }

    /// `C(x)`: the root of the MMR over the hashes of headers `1..=x`, which
    /// is the `history_root` of header `x + 1`. `x` is at most the header height.
    ///
    /// # Errors
    ///
    /// [`StoreError::History`] if `x` is above the header height.
    pub fn history_root(&self, x: u64) -> Result<Hash, StoreError> {
        Ok(Hash(self.history_view()?.root_at(x)?))
    }

    /// Proof that the header at `height` is leaf `height - 1` of `C(x)`
    /// (`height <= x <= header_height`). Verify with [`headway_mmr::verify_inclusion`].
    ///
    /// # Errors
    ///
    /// [`StoreError::History`] if the heights are out of range.
    pub fn prove_header(&self, height: u64, x: u64) -> Result<Proof, StoreError> {
        // Height 0 has no leaf: u64::MAX is out of range for any MMR.
        let leaf = height.checked_sub(1).unwrap_or(u64::MAX);
        Ok(self.history_view()?.prove_inclusion(leaf, x)?)
    }

    /// Proof that headers `start_height..=end_height` are leaves of `C(x)`
    /// (`1 <= start_height <= end_height <= x <= header_height`). Verify with
    /// [`headway_mmr::verify_range`] from leaf `start_height - 1`.
    ///
    /// # Errors
    ///
    /// [`StoreError::History`] if the heights are out of range.
    pub fn prove_header_range(
        &self,
        start_height: u64,
        end_height: u64,
        x: u64,
    ) -> Result<Proof, StoreError> {
        let start = start_height.checked_sub(1).unwrap_or(u64::MAX);
        Ok(self.history_view()?.prove_range(start, end_height, x)?)
    }

    /// Proof that `C(old_x)` is a prefix of `C(new_x)`
    /// (`old_x <= new_x <= header_height`). Verify with [`headway_mmr::verify_ancestry`].
    ///
    /// # Errors
    ///
    /// [`StoreError::History`] if the counts are out of range.
    pub fn prove_history_ancestry(&self, old_x: u64, new_x: u64) -> Result<Proof, StoreError> {
        Ok(self.history_view()?.prove_ancestry(old_x, new_x)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_counts() {
        assert_eq!(node_count_for_leaves(0), Some(0));
        assert_eq!(node_count_for_leaves(1), Some(1));
        assert_eq!(node_count_for_leaves(2), Some(3));
        assert_eq!(node_count_for_leaves(3), Some(4));
        assert_eq!(node_count_for_leaves(4), Some(7));
        assert_eq!(node_count_for_leaves(MAX_LEAF_COUNT + 1), None);
    }
}
