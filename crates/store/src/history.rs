//! The history MMR persisted in sled, and the proofs served from it.
//!
//! Leaf `i` is the hash of the header at height `i + 1`; `C(X)` is the root
//! of the MMR over headers `1..=X` (the `history_root` of header `X + 1`).
//! Nodes are appended in the same batch as the headers they come from, so
//! after a restart every proof for any `X <= header_height` can be served.

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

/// MMR nodes in sled: positions below `persisted` are on disk, the rest are
/// the pending nodes of the batch being built.
///
/// The counters use interior mutability because [`Mmr`] only lends its store
/// by shared reference once built.
pub(crate) struct SledNodes {
    db: sled::Db,
    persisted: Cell<u64>,
    pending: RefCell<Vec<NodeHash>>,
}

impl SledNodes {
    pub(crate) fn new(db: sled::Db, persisted: u64) -> Self {
        Self {
            db,
            persisted: Cell::new(persisted),
            pending: RefCell::new(Vec::new()),
        }
    }

    /// Copies the pending nodes into `batch`.
    pub(crate) fn stage(&self, batch: &mut sled::Batch) {
        let persisted = self.persisted.get();
        for (offset, node) in (0u64..).zip(self.pending.borrow().iter()) {
            batch.insert(
                &keys::by_u64(keys::MMR_NODE, persisted + offset)[..],
                &node[..],
            );
        }
    }

    /// The staged nodes are on disk now.
    pub(crate) fn mark_persisted(&self) {
        let mut pending = self.pending.borrow_mut();
        // pending.len() is bounded by memory, so it fits in u64.
        self.persisted
            .set(self.persisted.get() + pending.len() as u64);
        pending.clear();
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
        let key = keys::by_u64(keys::MMR_NODE, position);
        let Some(value) = self
            .db
            .get(key)
            .map_err(StoreError::engine("reading an MMR node"))?
        else {
            return Ok(None);
        };
        NodeHash::try_from(value.as_ref()).map(Some).map_err(|_| {
            StoreError::corrupt(
                &key,
                format!("MMR node is {} bytes, expected 32", value.len()),
            )
        })
    }

    fn append_nodes(&mut self, nodes: &[NodeHash]) -> Result<(), StoreError> {
        self.pending.get_mut().extend_from_slice(nodes);
        Ok(())
    }

    fn truncate(&mut self, node_count: u64) -> Result<(), StoreError> {
        let persisted = self.persisted.get();
        if node_count < persisted {
            return Err(StoreError::corrupt(
                &keys::by_u64(keys::MMR_NODE, node_count),
                "rewinding the stored history MMR is not supported",
            ));
        }
        let keep = usize::try_from(node_count - persisted).unwrap_or(usize::MAX);
        self.pending.get_mut().truncate(keep);
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
