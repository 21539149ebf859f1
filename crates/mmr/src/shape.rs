//! Structure derived from a leaf count alone: peaks, node addresses and
//! storage positions. Nothing here hashes or reads a proof.
//!
//! A node is addressed by `(level, index)`: level 0 holds the leaves, and the
//! node at `(level, index)` covers leaves `[index << level, (index + 1) << level)`.
//! Storage positions are the post-order append order (see [`node_position`]).

/// The largest leaf count a [`crate::Mmr`] can hold: its node count,
/// `2^64 - 1`, is the largest that fits a `u64` storage position count.
pub const MAX_LEAF_COUNT: u64 = 1 << 63;

/// One perfect tree of the MMR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Peak {
    /// Height of the tree: it has `2^height` leaves.
    pub(crate) height: u32,
    /// Index of the tree's first (leftmost) leaf.
    pub(crate) first_leaf: u64,
}

impl Peak {
    /// Number of leaves under this peak.
    pub(crate) fn leaves(self) -> u64 {
        1u64 << self.height
    }

    /// One past the index of the peak's last leaf. Never overflows: the peaks
    /// of a `u64` leaf count end at that count.
    pub(crate) fn end_leaf(self) -> u64 {
        self.first_leaf.saturating_add(self.leaves())
    }

    /// The peak's node index at its own level.
    pub(crate) fn index(self) -> u64 {
        self.first_leaf >> self.height
    }
}

/// The peaks of an MMR of `leaf_count` leaves, oldest (tallest) first: one
/// per set bit of `leaf_count`.
pub(crate) fn peaks(leaf_count: u64) -> impl Iterator<Item = Peak> {
    let mut first_leaf = 0u64;
    (0..u64::BITS)
        .rev()
        .filter(move |height| leaf_count >> height & 1 == 1)
        .map(move |height| {
            let peak = Peak { height, first_leaf };
            first_leaf = peak.end_leaf();
            peak
        })
}

/// Number of nodes (leaves and interior) of an MMR of `leaf_count` leaves,
/// `2 * leaf_count - popcount(leaf_count)`; `None` past [`MAX_LEAF_COUNT`].
pub(crate) fn node_count(leaf_count: u64) -> Option<u64> {
    let count = 2 * u128::from(leaf_count) - u128::from(leaf_count.count_ones());
    u64::try_from(count).ok()
}

/// The leaf count whose MMR has exactly `node_count` nodes, if there is one.
pub(crate) fn leaf_count_for_node_count(node_count: u64) -> Option<u64> {
    // A perfect tree of height h has 2^(h+1) - 1 nodes, more than all smaller
    // trees together, so taking the tallest tree that fits is forced.
    let mut remaining = node_count;
    let mut leaf_count = 0u64;
    for height in (0..u64::BITS).rev() {
        let tree_nodes = u64::MAX >> (u64::BITS - 1 - height);
        if remaining >= tree_nodes {
            remaining -= tree_nodes;
            leaf_count |= 1 << height;
        }
    }
    (remaining == 0).then_some(leaf_count)
}

/// The storage position of node `(level, index)`: the number of nodes
/// appended before it, when nodes are stored in post-order (each leaf, then
/// the parents its append completes, lowest first).
///
/// `None` when the position does not fit a `u64`.
pub(crate) fn node_position(level: u32, index: u64) -> Option<u64> {
    // Once leaves [0, (index + 1) << level) are appended, node_count of that
    // many leaves nodes exist; the last `trailing_zeros(index + 1)` of them
    // are the node's ancestors, appended right after it.
    let next = u128::from(index) + 1;
    let leaves_through = next.checked_shl(level)?;
    let nodes_through = 2 * leaves_through - u128::from(next.count_ones());
    let position = nodes_through.checked_sub(1 + u128::from(next.trailing_zeros()))?;
    u64::try_from(position).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_post_order() {
        // Build the post-order sequence of (level, index) by simulating appends.
        let mut order = Vec::new();
        for leaf in 0u64..64 {
            order.push((0u32, leaf));
            let mut level = 0;
            let mut index = leaf;
            while index & 1 == 1 {
                level += 1;
                index >>= 1;
                order.push((level, index));
            }
            assert_eq!(node_count(leaf + 1), Some(order.len() as u64));
            assert_eq!(
                leaf_count_for_node_count(order.len() as u64),
                Some(leaf + 1)
            );
        }
        for (position, &(level, index)) in order.iter().enumerate() {
            assert_eq!(node_position(level, index), Some(position as u64));
        }
    }

    #[test]
    fn only_mmr_sizes_have_a_leaf_count() {
        let valid: Vec<u64> = (0..100).filter_map(node_count).collect();
        for size in 0..valid[99] {
            assert_eq!(
                leaf_count_for_node_count(size).is_some(),
                valid.contains(&size),
                "{size}"
            );
        }
    }

    #[test]
    fn extremes_do_not_overflow() {
        assert_eq!(node_count(MAX_LEAF_COUNT), Some(u64::MAX));
        assert_eq!(node_count(MAX_LEAF_COUNT + 1), None);
        assert_eq!(node_count(u64::MAX), None);
        assert_eq!(leaf_count_for_node_count(u64::MAX), Some(MAX_LEAF_COUNT));
        assert_eq!(node_position(63, 0), Some(u64::MAX - 1));
        assert_eq!(node_position(63, 1), None);
        assert_eq!(node_position(0, u64::MAX), None);
        let all: Vec<Peak> = peaks(u64::MAX).collect();
        assert_eq!(all.len(), 64);
        assert_eq!(
            all[63],
            Peak {
                height: 0,
                first_leaf: u64::MAX - 1
            }
        );
        assert_eq!(all[63].end_leaf(), u64::MAX);
        assert_eq!(peaks(0).count(), 0);
    }
}
