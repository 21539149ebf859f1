//! The on-disk layout: one sled tree, every key starting with a table tag.
//!
//! Keeping everything in one tree makes any group of writes one atomic
//! `apply_batch`. Integers are big-endian so that key order is numeric order.
//!
//! Format 3 stores a header sync batch in few keys (sled's cost is per key,
//! not per byte): header rows are packed into segments, MMR nodes into
//! chunks, and the hash index into sorted runs (`hash_index.rs`). Format 4
//! lets a header row hold no commit (headers-only sync stores headers
//! verified by hashes alone) and records the bare height. Format 5 moves the
//! segments' bytes out of sled into the append-only header log, so that a
//! segment is written once instead of with every rewrite of its B-tree leaf.
//! Format 6 keeps a segment's headers apart from its commits, so that
//! readers of headers alone read a sixth of the bytes. Format 7 moves the
//! MMR nodes out of sled into a flat file indexed by position.
//!
//! | tag | key after the tag | value |
//! |---|---|---|
//! | `0x00` | meta name (ASCII) | format marker, heights (header, bare, block, state, snapshot), config |
//! | `0x04` | `be64(height)` | raw `ValidatorSet`, at heights where the set changes |
//! | `0x05` | `be64(height)` | raw `Block` (body with its header) |
//! | `0x07` | `be64(first height)` | header segment: `be64(offset) ‖ be32(header part length) ‖ be32(commit part length)` of its bytes in the header log, up to `segment::MAX_SEGMENT_HEADERS` (256) consecutive rows of hash and header, then their commits, a commit empty for a header stored without it (encoding in `segment.rs`); written once |
//! | `0x08` | `be64(height)` | body sizes: `be64(block_size) ‖ be64(num_txs)`, written with the body |
//! | `0x09` | | retired: MMR node chunks (formats 2–6), now in the MMR node file (`history.rs`) |
//! | `0x0A` | `be64(run)` ‖ `be64(page)` | hash index page: up to 4096 sorted entries `be64(hash fingerprint) ‖ be64(height)` |
//! | `0x0B` | `be64(run)` | hash index run: `be64(entries)` ‖ the first fingerprint of each page |
//! | `0x10` | state key | value (live state) |
//! | `0x11` | `be64(snapshot height)` ‖ state key | Ancestral Record: `0x00` (key absent then) or `0x01` ‖ value |
//! | `0x12` | prefix (1) | current checksum (32) ‖ `be64(records)` |
//! | `0x13` | prefix (1) | checksum at the snapshot height (32) ‖ `be64(records)` |
//! | `0x14` | prefix (1) | restore progress of the prefix |
//!
//! Tags `0x01` (per-height block meta), `0x02` (per-height commit) and
//! `0x06` (one MMR node per key) were format 1's, `0x03` (one hash index
//! key per header) format 1's and 2's, and `0x09` (MMR node chunks) formats
//! 2 to 6's; later formats never write them ([`RETIRED`]), and older
//! databases (formats 1 to 6) are refused at open
//! ([`crate::StoreError::UnsupportedVersion`]).

pub(crate) const VALIDATOR_SET: u8 = 0x04;
pub(crate) const BODY: u8 = 0x05;
pub(crate) const HEADER_SEGMENT: u8 = 0x07;
pub(crate) const BODY_SIZE: u8 = 0x08;
/// Earlier formats' tags (nothing may be stored under them); `0x09` held
/// MMR node chunks until format 7 moved the nodes to their own file.
pub(crate) const RETIRED: [u8; 5] = [0x01, 0x02, 0x03, 0x06, 0x09];
pub(crate) const STATE: u8 = 0x10;
pub(crate) const ANCESTRAL: u8 = 0x11;
pub(crate) const CHECKSUM: u8 = 0x12;
pub(crate) const SNAPSHOT_CHECKSUM: u8 = 0x13;
pub(crate) const RESTORE_PREFIX: u8 = 0x14;

/// Meta key of the format marker.
pub(crate) const FORMAT: &[u8] = b"\x00format";
/// Meta key of the state-prefix bitmap.
pub(crate) const CONFIG_PREFIXES: &[u8] = b"\x00config.state_prefixes";
/// Meta key of the snapshot period.
pub(crate) const CONFIG_PERIOD: &[u8] = b"\x00config.snapshot_period";
/// Meta key of the header height.
pub(crate) const HEADER_HEIGHT: &[u8] = b"\x00header_height";
/// Meta key of the bare height: the highest height stored without its
/// commit (absent: none). Written with every header batch.
pub(crate) const BARE_HEIGHT: &[u8] = b"\x00bare_height";
/// Meta key of the header log's committed length: where the bytes of the
/// last committed header batch end (absent: 0).
pub(crate) const LOG_END: &[u8] = b"\x00header_log_end";
/// Meta key: the leaf count whose MMR nodes are synced in the node file
/// (`history.rs`); nodes above it are rebuilt at open.
pub(crate) const MMR_SYNCED: &[u8] = b"\x00mmr_synced_leaves";
/// Meta key: the height up to which the hash index's runs hold every
/// header (`index_tail.rs`; absent: 0). The headers above it are rebuilt
/// into the index's in-memory tail at open.
pub(crate) const HASH_INDEX_MARK: &[u8] = b"\x00hash_index_mark";
/// Meta key of the contiguous block height.
pub(crate) const BLOCK_HEIGHT: &[u8] = b"\x00block_height";
/// Meta key of the state height.
pub(crate) const STATE_HEIGHT: &[u8] = b"\x00state_height";
/// Meta key of the snapshot height (absent: no snapshot yet).
pub(crate) const SNAPSHOT_HEIGHT: &[u8] = b"\x00snapshot_height";
/// Meta key of the height of the last finished snapshot restore (absent: none).
pub(crate) const RESTORED_HEIGHT: &[u8] = b"\x00restored_height";
/// Meta key of the restore in progress (absent: none).
pub(crate) const RESTORE: &[u8] = b"\x00restore";

/// The format marker's magic bytes; the marker is the magic then `be32(version)`.
pub(crate) const MAGIC: &[u8] = b"HEADWAY-STORE";
/// The format version this build reads and writes.
///
/// 2: header segments, body-size rows and MMR node chunks replace format 1's
/// per-height metas and commits and per-position nodes.
/// 3: the hash index is kept as sorted runs, not one key per header.
/// 4: a header row may hold no commit (an empty commit: a format-3 reader
/// would fail to decode it), and the bare height is recorded.
/// 5: header segment bytes live in the header log (`header_log.rs`); sled
/// keeps a pointer to them.
/// 6: a segment keeps its headers apart from its commits (a header part,
/// then a commit part), and the pointer gives both lengths, so that readers
/// of headers alone do not read the commits.
/// 7: MMR nodes live in their own flat file (`mmr.nodes`, node `p` at byte
/// `32 p`) instead of sled chunks.
/// 8: no layout change; the history root puts the leaf count after the
/// peaks (`headway-mmr`), so every stored `history_root` above height 2 of
/// an earlier store differs from what this version checks.
/// 9: the hash index keeps the headers above `HASH_INDEX_MARK` in memory
/// and writes them as a run every `index_tail::TAIL_ENTRIES` headers (a
/// format-8 reader would miss them). A format-8 store is upgraded in place
/// at open: its runs hold every header, so the mark is its header height.
/// 10: new header segments hold delta rows (`segment.rs`), flagged in their
/// row count, which a format-9 reader would take for a bad count. Segments
/// of earlier formats keep their protobuf rows and are read as they are, so
/// a format-9 store is upgraded in place by its marker alone (a format-8
/// one as to 9 first).
pub(crate) const FORMAT_VERSION: u32 = 10;
/// The older formats this version upgrades in place at open.
pub(crate) const UPGRADABLE_VERSIONS: [u32; 2] = [8, 9];
/// The format whose hash index is upgraded at open (see format 9).
pub(crate) const WITHOUT_INDEX_MARK: u32 = 8;

/// Stages into `batch` the removal of every key `tag || be64(n)` with
/// `n >= first`: rows of a table keyed by height above the header height,
/// which only a header batch that reached sled but whose flush failed can
/// leave behind. Normally one range seek that finds nothing. Inserts staged
/// later in the same batch win over these removals.
pub(crate) fn remove_from(
    db: &sled::Db,
    tag: u8,
    first: u64,
    batch: &mut sled::Batch,
) -> Result<(), crate::StoreError> {
    let from = by_u64(tag, first).to_vec();
    for stale in db.range(from..vec![tag + 1]).keys() {
        batch.remove(stale.map_err(crate::StoreError::engine("reading stale rows"))?);
    }
    Ok(())
}

/// `tag || be64(n)`.
pub(crate) fn by_u64(tag: u8, n: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = tag;
    key[1..].copy_from_slice(&n.to_be_bytes());
    key
}

/// `tag || prefix`.
pub(crate) fn by_prefix(tag: u8, prefix: u8) -> [u8; 2] {
    [tag, prefix]
}

/// `STATE || key`.
pub(crate) fn state(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 1);
    out.push(STATE);
    out.extend_from_slice(key);
    out
}

/// `ANCESTRAL || be64(snapshot_height) || key`.
pub(crate) fn ancestral(snapshot_height: u64, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 9);
    out.extend_from_slice(&by_u64(ANCESTRAL, snapshot_height));
    out.extend_from_slice(key);
    out
}

/// Length of the part of an Ancestral Record key before the state key.
pub(crate) const ANCESTRAL_HEAD: usize = 9;

/// The exclusive upper bound of the keys starting with `start`
/// (`None`: no bound, `start` is all `0xff`).
pub(crate) fn prefix_end(start: &[u8]) -> Option<Vec<u8>> {
    let mut end = start.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Decodes a `be64` value, or says what was wrong.
pub(crate) fn decode_u64(bytes: &[u8]) -> Result<u64, String> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| {
            format!(
                "expected an 8-byte big-endian integer, found {} bytes",
                bytes.len()
            )
        })
}

/// The `be64` at `bytes[at..at+8]`, if there.
pub(crate) fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    bytes
        .get(at..at.checked_add(8)?)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_prefix() {
        assert_eq!(prefix_end(&[0x10, 0x01]), Some(vec![0x10, 0x02]));
        assert_eq!(prefix_end(&[0x10, 0xff]), Some(vec![0x11]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }

    #[test]
    fn u64_keys_sort_numerically() {
        assert!(by_u64(HEADER_SEGMENT, 255) < by_u64(HEADER_SEGMENT, 256));
        assert_eq!(u64_at(&by_u64(HEADER_SEGMENT, 77), 1), Some(77));
        assert!(decode_u64(&[1, 2]).is_err());
    }
}
