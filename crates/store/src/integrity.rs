//! A full consistency check, recomputing everything derived from scratch.

use std::sync::atomic::Ordering;

use headway_chain::HeaderExt as _;
use headway_ellipticsum::{Checksum, PrefixChecksums};
use headway_wire::Hash;

use crate::history::node_count_for_leaves;
use crate::keys;
use crate::store::{load_checksum_rows, read_u64};
use crate::{Store, StoreError};

/// What [`Store::check_integrity`] found (everything consistent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrityReport {
    /// Header height.
    pub header_height: u64,
    /// Contiguous block height.
    pub block_height: u64,
    /// State height.
    pub state_height: u64,
    /// Snapshot height, if any.
    pub snapshot_height: Option<u64>,
    /// Live records under state prefixes.
    pub state_records: u64,
    /// Records in the snapshot.
    pub snapshot_records: u64,
    /// Ancestral Records of the current epoch.
    pub ancestral_records: u64,
    /// The state root recomputed from the records.
    pub state_root: Hash,
}

impl Store {
    /// Checks that everything derived agrees with the data it is derived
    /// from, recomputing it: every header up to the header height is stored
    /// with its commit and hash-index entry, links to its predecessor and
    /// carries the root of the stored MMR; nothing is stored above the
    /// heights; bodies are contiguous up to the block height; the per-prefix
    /// checksums and record counts, live and at the snapshot height, equal
    /// those of the records; Ancestral Records exist only for the current
    /// snapshot. Holds the write lock meanwhile and costs one hash per
    /// record: meant for tests, tools and recovery, not for every start.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] naming the first inconsistency found.
    pub fn check_integrity(&self) -> Result<IntegrityReport, StoreError> {
        let writer = self.inner.writer()?;
        let db = &self.inner.db;
        let header_height = self.header_height();
        let block_height = self.block_height();
        let state_height = self.state_height();
        let snapshot = self.inner.snapshot_height.load(Ordering::SeqCst);
        for (key, in_memory) in [
            (keys::HEADER_HEIGHT, header_height),
            (keys::BLOCK_HEIGHT, block_height),
            (keys::STATE_HEIGHT, state_height),
            (keys::SNAPSHOT_HEIGHT, snapshot),
        ] {
            let on_disk = read_u64(db, key)?.unwrap_or(0);
            if on_disk != in_memory {
                return Err(StoreError::corrupt(
                    key,
                    format!("on disk {on_disk}, in memory {in_memory}"),
                ));
            }
        }

        // Headers, commits, hash index, history MMR.
        let mut previous: Option<Hash> = None;
        for height in 1..=header_height {
            let meta_key = keys::by_u64(keys::HEADER_META, height);
            let meta = self
                .load_block_meta(height)?
                .ok_or_else(|| StoreError::corrupt(&meta_key, "header missing"))?;
            let hash = meta.header.hash();
            if meta.header.height != height || meta.block_id.hash != hash {
                return Err(StoreError::corrupt(
                    &meta_key,
                    "stored meta is not for this height or hash",
                ));
            }
            let commit = self.load_commit(height)?.ok_or_else(|| {
                StoreError::corrupt(&keys::by_u64(keys::COMMIT, height), "commit missing")
            })?;
            if commit.block_id.hash != hash {
                return Err(StoreError::corrupt(
                    &keys::by_u64(keys::COMMIT, height),
                    "commit is for another header",
                ));
            }
            if self.height_of(&hash)? != Some(height) {
                return Err(StoreError::corrupt(
                    &keys::hash_index(&hash.0),
                    "hash index does not point here",
                ));
            }
            if meta.header.last_block_id.map(|id| id.hash) != previous {
                return Err(StoreError::corrupt(
                    &meta_key,
                    "header does not link to the previous header",
                ));
            }
            if Hash(writer.mmr.root_at(height - 1)?) != meta.header.history_root {
                return Err(StoreError::corrupt(
                    &meta_key,
                    "history_root is not the stored MMR's root",
                ));
            }
            previous = Some(hash);
        }
        let above =
            keys::by_u64(keys::HEADER_META, header_height + 1)..keys::by_u64(keys::COMMIT, 0);
        if let Some(row) = db.range(above).keys().next() {
            let key = row.map_err(StoreError::engine("scanning headers"))?;
            return Err(StoreError::corrupt(
                &key,
                "header stored above the header height",
            ));
        }
        let nodes = node_count_for_leaves(header_height).unwrap_or(u64::MAX);
        if writer.mmr.leaf_count() != header_height {
            return Err(StoreError::corrupt(
                keys::HEADER_HEIGHT,
                "MMR leaf count is not the header height",
            ));
        }
        let above = keys::by_u64(keys::MMR_NODE, nodes).to_vec()..vec![keys::MMR_NODE + 1];
        if let Some(row) = db.range(above).keys().next() {
            let key = row.map_err(StoreError::engine("scanning MMR nodes"))?;
            return Err(StoreError::corrupt(
                &key,
                "MMR node stored beyond the header height",
            ));
        }
        let indexed = db.scan_prefix([keys::HASH_INDEX]).count() as u64;
        if indexed != header_height {
            return Err(StoreError::corrupt(
                &[keys::HASH_INDEX],
                format!("{indexed} hash index entries for {header_height} headers"),
            ));
        }

        // Bodies.
        let restored = read_u64(db, keys::RESTORED_HEIGHT)?.unwrap_or(0);
        for height in restored.min(block_height) + 1..=block_height {
            if self.load_block(height)?.is_none() {
                return Err(StoreError::corrupt(
                    &keys::by_u64(keys::BODY, height),
                    "body missing below the block height",
                ));
            }
        }
        if block_height < header_height && self.load_block(block_height + 1)?.is_some() {
            return Err(StoreError::corrupt(
                keys::BLOCK_HEIGHT,
                "block height is not maximal",
            ));
        }

        // Live state: checksums and counts from the records.
        let prefixes = self.inner.config.state_prefixes;
        let (stored, stored_counts) = load_checksum_rows(db, keys::CHECKSUM, &prefixes)?;
        let mut recomputed = PrefixChecksums::new();
        let mut state_records = 0u64;
        for prefix in prefixes.iter() {
            let (sum, records) = sum_records(self, self.state_records(prefix))?;
            recomputed.set(prefix, sum);
            state_records += records;
            let key = keys::by_prefix(keys::CHECKSUM, prefix);
            if stored.get(prefix) != sum || stored_counts[usize::from(prefix)] != records {
                return Err(StoreError::corrupt(
                    &key,
                    format!(
                        "stored checksum {} of {} records differs from {sum} of the {records} records",
                        stored.get(prefix),
                        stored_counts[usize::from(prefix)]
                    ),
                ));
            }
            if writer.checksums.get(prefix) != sum || writer.counts[usize::from(prefix)] != records
            {
                return Err(StoreError::corrupt(
                    &key,
                    "in-memory checksum or count differs from the records",
                ));
            }
        }

        // Snapshot and Ancestral Records.
        let mut ancestral_records = 0u64;
        for row in db.scan_prefix([keys::ANCESTRAL]).keys() {
            let key = row.map_err(StoreError::engine("scanning Ancestral Records"))?;
            if keys::u64_at(&key, 1) != Some(snapshot) || snapshot == 0 {
                return Err(StoreError::corrupt(
                    &key,
                    "Ancestral Record of another snapshot height",
                ));
            }
            ancestral_records += 1;
        }
        let (stored_snapshot, stored_snapshot_counts) =
            load_checksum_rows(db, keys::SNAPSHOT_CHECKSUM, &prefixes)?;
        let mut snapshot_records = 0u64;
        if snapshot == 0 {
            if !stored_snapshot.is_empty() {
                return Err(StoreError::corrupt(
                    &[keys::SNAPSHOT_CHECKSUM],
                    "snapshot checksums without a snapshot",
                ));
            }
        } else {
            for prefix in prefixes.iter() {
                let (sum, records) = sum_snapshot(self, snapshot, prefix)?;
                snapshot_records += records;
                if stored_snapshot.get(prefix) != sum
                    || stored_snapshot_counts[usize::from(prefix)] != records
                {
                    return Err(StoreError::corrupt(
                        &keys::by_prefix(keys::SNAPSHOT_CHECKSUM, prefix),
                        format!(
                            "snapshot checksum or count differs from the {records} records served"
                        ),
                    ));
                }
            }
        }
        drop(writer);
        Ok(IntegrityReport {
            header_height,
            block_height,
            state_height,
            snapshot_height: (snapshot != 0).then_some(snapshot),
            state_records,
            snapshot_records,
            ancestral_records,
            state_root: Hash(recomputed.state_root().into()),
        })
    }
}

/// Checksum and count of records, hashing them in bounded groups.
fn sum_records(
    store: &Store,
    records: impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>>,
) -> Result<(Checksum, u64), StoreError> {
    const GROUP: usize = 1024;
    let mut sum = Checksum::identity();
    let mut count = 0u64;
    let mut group: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(GROUP);
    let mut flush = |group: &mut Vec<(Vec<u8>, Vec<u8>)>| {
        sum += store.inner.hasher.par_sum_records(group);
        count += group.len() as u64;
        group.clear();
    };
    for record in records {
        group.push(record?);
        if group.len() == GROUP {
            flush(&mut group);
        }
    }
    flush(&mut group);
    Ok((sum, count))
}

/// Checksum and count of the records the snapshot serves under `prefix`.
fn sum_snapshot(store: &Store, snapshot: u64, prefix: u8) -> Result<(Checksum, u64), StoreError> {
    let mut start = Vec::new();
    let mut sum = Checksum::identity();
    let mut count = 0;
    loop {
        let mut chunk = store.snapshot_chunk(snapshot, prefix, &start, usize::MAX)?;
        let (part, records) =
            sum_records(store, chunk.by_ref().map(|e| e.map(|e| (e.key, e.value))))?;
        sum += part;
        count += records;
        match chunk.next_start_key() {
            Some(next) => start = next,
            None => return Ok((sum, count)),
        }
    }
}
