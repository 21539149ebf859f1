//! Where an [`crate::Mmr`] keeps its nodes.

use std::convert::Infallible;

use crate::hash::Hash;

/// Append-only storage of MMR nodes, addressed by position.
///
/// Nodes are stored in post-order: each leaf is followed by the interior
/// nodes its append completes, lowest first, so position `p` is the `p`-th
/// node ever appended. The nodes of an MMR of `n` leaves are exactly the first
/// `2n - popcount(n)` positions, which is what makes roots and proofs at any
/// earlier leaf count, and rewinding, possible from one store.
///
/// Only [`crate::Mmr`] writes to a store. If a write fails, the store may hold
/// part of the append; reopen the MMR with [`crate::Mmr::new`], which takes
/// the leaf count from [`NodeStore::node_count`] and rejects sizes that are
/// not an MMR size, then [`crate::Mmr::truncate`] to a known-good leaf count.
pub trait NodeStore {
    /// The store's error, propagated unchanged inside [`crate::MmrError::Store`].
    type Error: std::error::Error + Send + Sync + 'static;

    /// Number of nodes stored (the position the next node will get).
    fn node_count(&self) -> u64;

    /// The node at `position`, or `None` if nothing is stored there.
    fn get_node(&self, position: u64) -> Result<Option<Hash>, Self::Error>;

    /// Appends `nodes` at positions `node_count()..node_count() + nodes.len()`.
    fn append_nodes(&mut self, nodes: &[Hash]) -> Result<(), Self::Error>;

    /// Drops every node at position `node_count` and above.
    fn truncate(&mut self, node_count: u64) -> Result<(), Self::Error>;
}

impl<T: NodeStore + ?Sized> NodeStore for &mut T {
    type Error = T::Error;

    fn node_count(&self) -> u64 {
        (**self).node_count()
    }

    fn get_node(&self, position: u64) -> Result<Option<Hash>, Self::Error> {
        (**self).get_node(position)
    }

    fn append_nodes(&mut self, nodes: &[Hash]) -> Result<(), Self::Error> {
        (**self).append_nodes(nodes)
    }

    fn truncate(&mut self, node_count: u64) -> Result<(), Self::Error> {
        (**self).truncate(node_count)
    }
}

/// An in-memory [`NodeStore`]: one `Vec` of nodes, indexed by position.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemStore {
    nodes: Vec<Hash>,
}

impl MemStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store with room for the nodes of `leaf_count` leaves
    /// (about `2 * leaf_count`) before it reallocates.
    #[must_use]
    pub fn with_leaf_capacity(leaf_count: usize) -> Self {
        Self {
            nodes: Vec::with_capacity(leaf_count.saturating_mul(2)),
        }
    }

    /// All stored nodes, in position order.
    #[must_use]
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }
}

impl NodeStore for MemStore {
    type Error = Infallible;

    fn node_count(&self) -> u64 {
        // usize is at most 64 bits on every supported target.
        self.nodes.len() as u64
    }

    fn get_node(&self, position: u64) -> Result<Option<Hash>, Infallible> {
        Ok(usize::try_from(position)
            .ok()
            .and_then(|position| self.nodes.get(position))
            .copied())
    }

    fn append_nodes(&mut self, nodes: &[Hash]) -> Result<(), Infallible> {
        self.nodes.extend_from_slice(nodes);
        Ok(())
    }

    fn truncate(&mut self, node_count: u64) -> Result<(), Infallible> {
        self.nodes
            .truncate(usize::try_from(node_count).unwrap_or(usize::MAX));
        Ok(())
    }
}
