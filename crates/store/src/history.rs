//! The history MMR persisted in its node file, and the proofs served from it.
//!
//! Leaf `i` is the hash of the header at height `i + 1`; `C(X)` is the root
//! of the MMR over headers `1..=X` (the `history_root` of header `X + 1`).
//! Nodes are written with the batch of headers they come from, so after a
//! restart every proof for any `X <= header_height` can be served.
//!
//! Since format 7 the nodes live in a flat file next to the database
//! (`mmr.nodes`): node `p` is the 32 bytes at offset `32 p`. Nodes are
//! written once, in position order, and an MMR position never changes, so a
//! file indexed by position needs no index at all; in sled, every batch's
//! nodes were a 32 KB value or two rewritten with their B-tree leaf (~15% of
//! the header writer's time in the header sync bench). The committed node
//! count is not stored: it is the node count of the header height's leaves,
//! and the header height is written in the same sled batch as everything
//! else.
//!
//! Syncing the node file with every batch cost a second `fdatasync` per
//! batch (a quarter of the store's speed with 50-header batches on disk),
//! so the file is synced only every [`SYNC_EVERY_LEAVES`] leaves: the batch
//! that crosses the mark syncs the file **before** the sled batch that
//! records the new mark (`keys::MMR_SYNCED`, a leaf count). Nodes above the
//! mark are a cache of the stored header hashes: at open they are rebuilt
//! from the headers' segments (at most [`SYNC_EVERY_LEAVES`] headers'
//! worth, whatever a crash left there: nothing, a short tail or garbage),
//! written, synced, and the mark raised. Bytes past the committed count are
//! cut off; a file short of the synced mark's nodes is
//! [`StoreError::Corrupt`].

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use headway_mmr::{Hash as NodeHash, MAX_LEAF_COUNT, Mmr, NodeStore, Proof};
use headway_wire::Hash;

use crate::header_log::{HeaderLog, cut_file, open_file, read_exact_at, write_all_at};
use crate::segment::{self, Segment, Stored as _};
use crate::{Store, StoreError};

/// The file name of the MMR node file inside the store's directory.
pub(crate) const FILE_NAME: &str = "mmr.nodes";

/// Bytes of one node.
const NODE_BYTES: u64 = 32;

/// Leaves between two syncs of the node file: nodes above the last synced
/// mark are rebuilt at open from the stored header hashes, so this bounds
/// that work (4 096 headers: ~8 000 node hashes).
pub(crate) const SYNC_EVERY_LEAVES: u64 = 4096;

/// MMR nodes at least this high (each the root of `2^8` = 256 leaves or
/// more) are kept in memory once read. Every root and proof a serving peer
/// makes ends in the same few high nodes, and each read from the file is a
/// system call for 32 bytes: a v2 answer read ~50 of them (peaks, `C(x)`,
/// the proof), ~11% of the serving peers' time in the header sync bench.
/// The cache holds about one node per 256 headers (40 000 nodes, 1.25 MB,
/// for 10 million headers).
pub(crate) const CACHED_NODE_HEIGHT: u32 = 8;

/// Most nodes [`CACHED_NODE_HEIGHT`] or higher kept in memory (32 MiB of
/// hashes, reached above 2^28 headers); past it, further nodes are read
/// from the file every time.
pub(crate) const MAX_CACHED_NODES: usize = 1 << 20;

/// The height of the node at MMR position `position` (0-based, nodes in
/// post-order: a leaf then the merges it completes), leaves being 0.
pub(crate) fn node_height(position: u64) -> u32 {
    // 1-based, a position whose binary form is all ones is the last node of
    // a perfect tree, of height bit length - 1; any other is in a perfect
    // tree to the right of one as large as its top bit says, so it moves
    // left by that tree's size until it is all ones.
    let mut pos = position.saturating_add(1);
    loop {
        let bits = u64::BITS - pos.leading_zeros();
        if pos.count_ones() == bits {
            return bits - 1;
        }
        pos -= (1u64 << (bits - 1)) - 1;
    }
}

/// The number of MMR nodes of `leaves` leaves (`2n - popcount(n)`), if in range.
pub(crate) fn node_count_for_leaves(leaves: u64) -> Option<u64> {
    if leaves > MAX_LEAF_COUNT {
        return None;
    }
    leaves
        .checked_mul(2)
        .map(|n| n - u64::from(leaves.count_ones()))
}

/// The flat file of MMR nodes: node `p` at byte `32 p`.
#[derive(Debug)]
pub(crate) struct NodeFile {
    file: File,
    path: PathBuf,
    /// Nodes of [`CACHED_NODE_HEIGHT`] or higher read so far, by position
    /// (at most [`MAX_CACHED_NODES`]). Only committed nodes are read, and a
    /// committed node never changes; a write drops every entry at or past
    /// its first position all the same.
    upper: RwLock<BTreeMap<u64, NodeHash>>,
    /// The last `C(x)` computed, as `(x, root)`: every answer of a v2 sync
    /// checks the requester's commitment at the same `x`. Dropped by any
    /// write, like [`NodeFile::upper`].
    last_root: Mutex<Option<(u64, NodeHash)>>,
}

/// The key the node file's errors are reported under (it has no sled key).
fn file_key() -> &'static [u8] {
    FILE_NAME.as_bytes()
}

impl NodeFile {
    /// Opens (or creates) the node file at `path`, whose first `synced`
    /// nodes are durable, keeping at most `committed` nodes: a longer file
    /// is cut (nodes written by a batch that never committed), one short of
    /// `synced` nodes is corrupt. Nodes from `synced` on are rebuilt by the
    /// caller.
    pub(crate) fn open(path: &Path, synced: u64, committed: u64) -> Result<Self, StoreError> {
        let (file, len) = open_file(path).map_err(StoreError::log("opening the MMR node file"))?;
        let durable = synced.saturating_mul(NODE_BYTES);
        if len < durable {
            return Err(StoreError::corrupt(
                file_key(),
                format!(
                    "the MMR node file holds {len} bytes, short of its {synced} synced nodes ({durable} bytes)"
                ),
            ));
        }
        let want = committed.saturating_mul(NODE_BYTES);
        if len > want {
            cut_file(&file, want).map_err(StoreError::log(
                "cutting uncommitted nodes off the MMR node file",
            ))?;
            tracing::info!(
                dropped_bytes = len - want,
                "cut uncommitted nodes off the MMR node file"
            );
        }
        Ok(Self {
            file,
            path: path.to_owned(),
            upper: RwLock::new(BTreeMap::new()),
            last_root: Mutex::new(None),
        })
    }

    /// Syncs what was written to disk.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        self.file
            .sync_data()
            .map_err(StoreError::log("syncing the MMR node file"))
    }

    /// Writes `nodes` at positions `first..` (not synced: see
    /// [`NodeFile::sync`]). Only positions at or above the committed count
    /// are ever written.
    fn write(&self, first: u64, nodes: &[NodeHash]) -> Result<(), StoreError> {
        if nodes.is_empty() {
            return Ok(());
        }
        // The nodes are `[u8; 32]`s back to back: written as they lie.
        if let Ok(mut upper) = self.upper.write() {
            drop(upper.split_off(&first));
        }
        if let Ok(mut last_root) = self.last_root.lock() {
            *last_root = None;
        }
        let bytes = nodes.as_flattened();
        let offset = first
            .checked_mul(NODE_BYTES)
            .ok_or_else(|| StoreError::corrupt(file_key(), "MMR position out of range"))?;
        write_all_at(&self.file, bytes, offset)
            .map_err(StoreError::log("writing the MMR node file"))
    }

    /// The node at `position` (below the committed count), from memory if
    /// it is high enough to be kept there ([`CACHED_NODE_HEIGHT`]).
    fn read(&self, position: u64) -> Result<NodeHash, StoreError> {
        if node_height(position) < CACHED_NODE_HEIGHT {
            return self.read_from_file(position);
        }
        // A poisoned lock only costs the cache: the file is read instead.
        if let Some(node) = self
            .upper
            .read()
            .ok()
            .and_then(|upper| upper.get(&position).copied())
        {
            return Ok(node);
        }
        let node = self.read_from_file(position)?;
        if let Ok(mut upper) = self.upper.write()
            && upper.len() < MAX_CACHED_NODES
        {
            upper.insert(position, node);
        }
        Ok(node)
    }

    /// The node at `position` as the file holds it.
    fn read_from_file(&self, position: u64) -> Result<NodeHash, StoreError> {
        let mut node = [0u8; 32];
        let offset = position
            .checked_mul(NODE_BYTES)
            .ok_or_else(|| StoreError::corrupt(file_key(), "MMR position out of range"))?;
        read_exact_at(&self.file, &mut node, offset).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                StoreError::corrupt(
                    file_key(),
                    format!(
                        "MMR node {position} lies past the end of {}",
                        self.path.display()
                    ),
                )
            } else {
                StoreError::log("reading the MMR node file")(e)
            }
        })?;
        Ok(node)
    }

    /// The file's length in nodes (whole nodes only).
    pub(crate) fn len_nodes(&self) -> Result<u64, StoreError> {
        self.file
            .metadata()
            .map(|m| m.len() / NODE_BYTES)
            .map_err(StoreError::log("reading the MMR node file's length"))
    }
}

/// MMR nodes in the node file: positions below `persisted` are on disk (and
/// committed, for a reader; possibly not yet committed for the writer
/// between [`FileNodes::persist`] and [`FileNodes::mark_persisted`]); the
/// rest are the pending nodes of the batch being built.
///
/// [`Mmr`] keeps its peaks in memory, so appends read nothing from here;
/// reads (roots at earlier counts, proofs) read 32 bytes at a position.
///
/// The counters use interior mutability because [`Mmr`] only lends its store
/// by shared reference once built.
pub(crate) struct FileNodes {
    file: Arc<NodeFile>,
    persisted: Cell<u64>,
    pending: RefCell<Vec<NodeHash>>,
}

impl FileNodes {
    pub(crate) fn new(file: Arc<NodeFile>, persisted: u64) -> Self {
        Self {
            file,
            persisted: Cell::new(persisted),
            pending: RefCell::new(Vec::new()),
        }
    }

    /// Writes the pending nodes to the file (unsynced: [`NodeFile::sync`]
    /// before recording a higher synced mark). A batch that fails after
    /// this leaves them past the committed count, to be overwritten by the
    /// next batch or cut at open.
    pub(crate) fn persist(&self) -> Result<(), StoreError> {
        self.file
            .write(self.persisted.get(), &self.pending.borrow())
    }

    /// The node file.
    pub(crate) fn file(&self) -> &Arc<NodeFile> {
        &self.file
    }

    /// The pending nodes are committed now.
    pub(crate) fn mark_persisted(&self) {
        let mut pending = self.pending.borrow_mut();
        // pending.len() is bounded by memory, so it fits in u64.
        self.persisted
            .set(self.persisted.get() + pending.len() as u64);
        pending.clear();
    }
}

impl NodeStore for FileNodes {
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
        self.file.read(position).map(Some)
    }

    fn append_nodes(&mut self, nodes: &[NodeHash]) -> Result<(), StoreError> {
        self.pending.get_mut().extend_from_slice(nodes);
        Ok(())
    }

    fn truncate(&mut self, node_count: u64) -> Result<(), StoreError> {
        let persisted = self.persisted.get();
        if node_count < persisted {
            return Err(StoreError::corrupt(
                file_key(),
                format!(
                    "rewinding the stored history MMR below its {persisted} committed nodes is not supported"
                ),
            ));
        }
        let keep = usize::try_from(node_count - persisted).unwrap_or(usize::MAX);
        self.pending.get_mut().truncate(keep);
        Ok(())
    }
}

/// Rebuilds the MMR's nodes above its current leaf count up to `to` leaves
/// from the stored hashes of headers `leaf_count + 1 ..= to` (read from
/// their segments' header parts), writes them and syncs the file: what
/// [`Store::open`] does with the nodes above the synced mark.
pub(crate) fn rebuild_tail(
    db: &sled::Db,
    log: &HeaderLog,
    mmr: &mut Mmr<FileNodes>,
    to: u64,
) -> Result<(), StoreError> {
    let mut next = mmr.leaf_count() + 1;
    while next <= to {
        let segment: Segment = segment::find_stored(db, log, next)?;
        let before = next;
        for row in segment.rows()? {
            if row.height < next {
                continue;
            }
            if row.height > to {
                break;
            }
            mmr.append(&row.hash.0)?;
            next = row.height + 1;
        }
        if next == before {
            return Err(StoreError::corrupt(
                &crate::keys::by_u64(crate::keys::HEADER_SEGMENT, next),
                format!("header {next} missing below the header height {to}"),
            ));
        }
    }
    mmr.store().persist()?;
    mmr.store().file().sync()?;
    mmr.store().mark_persisted();
    Ok(())
}

/// A [`NodeStore`] that checks every node appended to it against the node
/// file instead of storing it: rebuilding the MMR from the stored header
/// hashes through it proves every stored node ([`Store::check_integrity`]).
pub(crate) struct CheckingNodes {
    file: Arc<NodeFile>,
    count: u64,
    /// The first position whose stored node differs, if any.
    pub(crate) mismatch: Option<u64>,
}

impl CheckingNodes {
    pub(crate) fn new(file: Arc<NodeFile>) -> Self {
        Self {
            file,
            count: 0,
            mismatch: None,
        }
    }
}

impl NodeStore for CheckingNodes {
    type Error = StoreError;

    fn node_count(&self) -> u64 {
        self.count
    }

    fn get_node(&self, position: u64) -> Result<Option<NodeHash>, StoreError> {
        if position >= self.count {
            return Ok(None);
        }
        // The check proves the file's bytes, not the cache's.
        self.file.read_from_file(position).map(Some)
    }

    fn append_nodes(&mut self, nodes: &[NodeHash]) -> Result<(), StoreError> {
        for node in nodes {
            if self.mismatch.is_none() && self.file.read_from_file(self.count)? != *node {
                self.mismatch = Some(self.count);
            }
            self.count += 1;
        }
        Ok(())
    }

    fn truncate(&mut self, node_count: u64) -> Result<(), StoreError> {
        self.count = self.count.min(node_count);
        Ok(())
    }
}

impl Store {
    /// A read-only MMR over the persisted nodes of the first
    /// `header_height()` leaves; its reads never block writers.
    fn history_view(&self) -> Result<Mmr<FileNodes>, StoreError> {
        let leaves = self.header_height();
        let nodes = node_count_for_leaves(leaves).unwrap_or(u64::MAX);
        Ok(Mmr::new(FileNodes::new(self.inner.nodes.clone(), nodes))?)
    }

    /// `C(x)`: the root of the MMR over the hashes of headers `1..=x`, which
    /// is the `history_root` of header `x + 1`. `x` is at most the header height.
    ///
    /// # Errors
    ///
    /// [`StoreError::History`] if `x` is above the header height.
    pub fn history_root(&self, x: u64) -> Result<Hash, StoreError> {
        let nodes = &self.inner.nodes;
        if let Some((_, root)) = nodes
            .last_root
            .lock()
            .ok()
            .and_then(|last| last.filter(|(at, _)| *at == x))
        {
            return Ok(Hash(root));
        }
        let root = self.history_view()?.root_at(x)?;
        if let Ok(mut last) = nodes.last_root.lock() {
            *last = Some((x, root));
        }
        Ok(Hash(root))
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
    fn node_heights_follow_the_append_order() {
        // Heights as appends lay them out: a leaf, then one merge for each
        // pair of equal peaks it completes.
        let mut heights = Vec::new();
        let mut peaks: Vec<u32> = Vec::new();
        for _ in 0..5_000 {
            heights.push(0);
            peaks.push(0);
            while let [.., a, b] = peaks[..]
                && a == b
            {
                peaks.truncate(peaks.len() - 2);
                peaks.push(a + 1);
                heights.push(a + 1);
            }
        }
        for (position, height) in heights.iter().enumerate() {
            assert_eq!(node_height(position as u64), *height, "position {position}");
        }
        assert_eq!(node_height(u64::MAX), 63);
    }

    #[test]
    fn high_nodes_are_served_from_memory_and_dropped_when_rewritten() {
        let dir = crate::header_log::TempDir::new().unwrap();
        let file = NodeFile::open(&dir.path().join(FILE_NAME), 0, u64::MAX).unwrap();
        // 512 leaves: positions 0..1023, the one root (height 9) at 1022,
        // its children (height 8) at 510 and 1021.
        let nodes: Vec<NodeHash> = (0..1023u32)
            .map(|p| {
                let mut node = [0u8; 32];
                node[..4].copy_from_slice(&p.to_be_bytes());
                node
            })
            .collect();
        file.write(0, &nodes).unwrap();
        for position in [0, 509, 510, 1021, 1022] {
            assert_eq!(file.read(position).unwrap(), nodes[position as usize]);
        }
        let cached: Vec<u64> = file.upper.read().unwrap().keys().copied().collect();
        assert_eq!(cached, [510, 1021, 1022], "only nodes of height 8 and up");
        // Served from memory: what the file says no longer matters...
        write_all_at(&file.file, &[0xff; 32], 1022 * NODE_BYTES).unwrap();
        assert_eq!(file.read(1022).unwrap(), nodes[1022]);
        assert_eq!(file.read_from_file(1022).unwrap(), [0xff; 32]);
        // ...until the store writes there itself, which also drops the
        // last root computed.
        *file.last_root.lock().unwrap() = Some((512, [9; 32]));
        file.write(1021, &[[7; 32], [8; 32]]).unwrap();
        assert_eq!(*file.last_root.lock().unwrap(), None);
        let cached: Vec<u64> = file.upper.read().unwrap().keys().copied().collect();
        assert_eq!(cached, [510]);
        assert_eq!(file.read(1022).unwrap(), [8; 32]);
        assert_eq!(file.read(510).unwrap(), nodes[510]);
    }

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
