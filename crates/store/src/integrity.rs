//! A full consistency check, recomputing everything derived from scratch.

use std::sync::atomic::Ordering;

use headway_chain::{HeaderExt as _, ValidatorSetExt as _};
use headway_ellipticsum::{Checksum, PrefixChecksums};
use headway_wire::{Hash, ValidatorSet, raw};

use crate::hash_index::{self, HashIndex};
use crate::header_log;
use crate::history::{self, CheckingNodes, node_count_for_leaves};
use crate::keys;
use crate::segment::{Stored as _, WholeSegment};
use crate::store::{decode_raw, load_checksum_rows, read_u64};
use crate::{Store, StoreError};
use headway_mmr::Mmr;

/// What [`Store::check_integrity`] found (everything consistent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrityReport {
    /// Header height.
    pub header_height: u64,
    /// Bare height: the highest height stored without its commit (0: none),
    /// recomputed from the header rows.
    pub bare_height: u64,
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
    /// Hash index entries that stand for no stored header: at height 0 or
    /// above the header height, with a fingerprint other than that of the
    /// header at their height, or repeating an entry counted already. A
    /// header batch applied to sled whose flush then failed leaves them (its
    /// run stays while the header height does not advance, and the next
    /// batch indexes those heights again). Merges drop repeats, and entries
    /// at or above the first height of the batch that merges them. They
    /// are harmless: lookups check each candidate height against the stored
    /// header, so they ignore them.
    pub stale_hash_index_entries: u64,
}

impl Store {
    /// Checks that everything derived agrees with the data it is derived
    /// from, recomputing it: the header segments hold every header up to the
    /// header height, in order, each with its hash and its commit (for this
    /// header) unless it was stored without one, linking to its predecessor
    /// and carrying the root of the stored MMR, whose chunks are contiguous;
    /// the hash index, every entry of every run read (each run sorted and
    /// paged as lookups need, the runs in memory those on disk), holds each
    /// header's own entry (its hash's fingerprint and its height), any other
    /// entry being stale (tolerated and counted: see
    /// [`IntegrityReport::stale_hash_index_entries`]); the bare height is
    /// the highest height stored without a commit; nothing is stored above
    /// the heights or under earlier formats' tags; bodies are contiguous up
    /// to the block height, and each has body sizes that match it; the
    /// per-prefix checksums and record counts, live and at the snapshot
    /// height, equal those of the records; Ancestral Records exist only for
    /// the current snapshot. Holds the write lock meanwhile and costs one
    /// hash per record: meant for tests, tools and recovery, not for every
    /// start.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] naming the first inconsistency found.
    pub fn check_integrity(&self) -> Result<IntegrityReport, StoreError> {
        let writer = self.inner.writer()?;
        let db = &self.inner.db;
        let header_height = self.header_height();
        let bare_height = self.bare_height();
        let block_height = self.block_height();
        let state_height = self.state_height();
        let snapshot = self.inner.snapshot_height.load(Ordering::SeqCst);
        for (key, in_memory) in [
            (keys::HEADER_HEIGHT, header_height),
            (keys::BARE_HEIGHT, bare_height),
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

        // Headers and commits (segments), hash index, history MMR (node file).
        for tag in keys::RETIRED {
            if let Some(row) = db.scan_prefix([tag]).keys().next() {
                let key = row.map_err(StoreError::engine("scanning retired tables"))?;
                return Err(StoreError::corrupt(
                    &key,
                    format!(
                        "key of an earlier format's table in a format-{} store",
                        keys::FORMAT_VERSION
                    ),
                ));
            }
        }
        let nodes = node_count_for_leaves(header_height).unwrap_or(u64::MAX);
        if writer.mmr.leaf_count() != header_height {
            return Err(StoreError::corrupt(
                keys::HEADER_HEIGHT,
                "MMR leaf count is not the header height",
            ));
        }
        let stored_nodes = self.inner.nodes.len_nodes()?;
        if stored_nodes < nodes {
            return Err(StoreError::corrupt(
                history::FILE_NAME.as_bytes(),
                format!(
                    "the MMR node file holds {stored_nodes} nodes, short of the header height's {nodes}"
                ),
            ));
        }
        // The MMR rebuilt from the stored header hashes, each node compared
        // with the stored one as it is appended.
        let mut rebuilt = Mmr::new(CheckingNodes::new(self.inner.nodes.clone()))?;
        let mut previous: Option<Hash> = None;
        let mut previous_validators: Option<Hash> = None;
        let mut sets = db.scan_prefix([keys::VALIDATOR_SET]).peekable();
        let mut next = 1u64;
        let mut bare_rows_top = 0u64;
        // The hash index fingerprint of each header, by height (from 1).
        let mut fingerprints: Vec<u64> =
            Vec::with_capacity(usize::try_from(header_height).map_or(0, |n| n.min(1 << 24)));
        // Segments lie in the header log in height order, without overlap.
        let mut log_end = 0u64;
        for row in db.scan_prefix([keys::HEADER_SEGMENT]) {
            let (key, pointer) = row.map_err(StoreError::engine("scanning header segments"))?;
            let pointer_at = header_log::Pointer::decode(&key, &pointer)?;
            let offset = pointer_at.offset;
            if offset < log_end {
                return Err(StoreError::corrupt(
                    &key,
                    format!(
                        "header segment starts at byte {offset} of the header log, inside the previous one (ending at {log_end})"
                    ),
                ));
            }
            log_end = pointer_at.end();
            let segment = WholeSegment::load(&self.inner.log, key, &pointer)?;
            if segment.first != next {
                return Err(StoreError::corrupt(
                    &segment.key,
                    format!(
                        "header segment starts at {}, expected {next}",
                        segment.first
                    ),
                ));
            }
            for row in segment.rows()? {
                let height = row.height;
                if height > header_height {
                    return Err(StoreError::corrupt(
                        &segment.key,
                        format!("header {height} stored above the header height"),
                    ));
                }
                let header = segment.header(&row)?;
                let hash = header.hash();
                if row.hash != hash {
                    return Err(StoreError::corrupt(
                        &segment.key,
                        format!("stored hash of header {height} is not its hash"),
                    ));
                }
                match segment.commit(&row)? {
                    Some(commit) if commit.block_id.hash != hash => {
                        return Err(StoreError::corrupt(
                            &segment.key,
                            format!("commit of header {height} is for another header"),
                        ));
                    }
                    Some(_) => {}
                    None => bare_rows_top = height,
                }
                fingerprints.push(hash_index::fingerprint(&hash.0));
                if header.last_block_id.map(|id| id.hash) != previous {
                    return Err(StoreError::corrupt(
                        &segment.key,
                        format!("header {height} does not link to the previous header"),
                    ));
                }
                if Hash(rebuilt.root()) != header.history_root {
                    return Err(StoreError::corrupt(
                        &segment.key,
                        format!(
                            "history_root of header {height} is not the root of the MMR of the headers below it"
                        ),
                    ));
                }
                rebuilt.append(&hash.0)?;
                if let Some(position) = rebuilt.store().mismatch {
                    return Err(StoreError::corrupt(
                        history::FILE_NAME.as_bytes(),
                        format!(
                            "MMR node {position} in the node file is not the one the stored headers give"
                        ),
                    ));
                }
                // A validator set row exactly where the set changes (and at
                // height 1), holding the set the header names.
                let changes = previous_validators != Some(header.validators_hash);
                let set_row = sets
                    .next_if(|row| {
                        row.as_ref()
                            .map_or(true, |(key, _)| keys::u64_at(key, 1) <= Some(height))
                    })
                    .transpose()
                    .map_err(StoreError::engine("scanning validator sets"))?;
                match (set_row, changes) {
                    (Some((key, value)), true) if keys::u64_at(&key, 1) == Some(height) => {
                        let set = decode_raw::<raw::ValidatorSet, ValidatorSet>(
                            &key,
                            &value,
                            "validator set",
                        )?;
                        if set.hash() != header.validators_hash {
                            return Err(StoreError::corrupt(
                                &key,
                                format!(
                                    "validator set stored at {height} is not the one header {height} names"
                                ),
                            ));
                        }
                    }
                    (Some((key, _)), _) => {
                        return Err(StoreError::corrupt(
                            &key,
                            "validator set stored where the set does not change",
                        ));
                    }
                    (None, true) => {
                        return Err(StoreError::corrupt(
                            &keys::by_u64(keys::VALIDATOR_SET, height),
                            format!("validator set missing where it changes, at {height}"),
                        ));
                    }
                    (None, false) => {}
                }
                previous_validators = Some(header.validators_hash);
                previous = Some(hash);
                next = height + 1;
            }
        }
        if let Some(row) = sets.next() {
            let (key, _) = row.map_err(StoreError::engine("scanning validator sets"))?;
            return Err(StoreError::corrupt(
                &key,
                "validator set stored above the header height",
            ));
        }
        if rebuilt.leaf_count() == header_height && rebuilt.root() != writer.mmr.root() {
            return Err(StoreError::corrupt(
                history::FILE_NAME.as_bytes(),
                "the writer's MMR is not the one the stored headers give",
            ));
        }
        let committed = read_u64(db, keys::LOG_END)?.unwrap_or(0);
        if log_end > committed {
            return Err(StoreError::corrupt(
                keys::LOG_END,
                format!(
                    "header segments reach byte {log_end} of the header log, past its committed length {committed}"
                ),
            ));
        }
        if next != header_height + 1 {
            return Err(StoreError::corrupt(
                &keys::by_u64(keys::HEADER_SEGMENT, next),
                format!("header {next} missing below the header height {header_height}"),
            ));
        }
        if bare_rows_top != bare_height {
            return Err(StoreError::corrupt(
                keys::BARE_HEIGHT,
                format!(
                    "bare height is {bare_height}, but the highest header stored without its commit is {bare_rows_top}"
                ),
            ));
        }
        let stale_hash_index_entries = check_hash_index(self, &fingerprints)?;

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
        let mut sized = 0u64;
        for row in db.scan_prefix([keys::BODY_SIZE]).keys() {
            let key = row.map_err(StoreError::engine("scanning body sizes"))?;
            let height = keys::u64_at(&key, 1).unwrap_or(0);
            let meta = self.load_block_meta(height)?;
            let body = self.load_block(height)?;
            let stored_len = self
                .inner
                .get(&keys::by_u64(keys::BODY, height), "reading a block body")?
                .map_or(0, |v| v.len() as u64);
            match (meta, body) {
                (Some(meta), Some(body))
                    if meta.block_size == stored_len && meta.num_txs == body.txs.len() as u64 => {}
                _ => {
                    return Err(StoreError::corrupt(
                        &key,
                        "body sizes do not match a stored body",
                    ));
                }
            }
            sized += 1;
        }
        let bodies = db.scan_prefix([keys::BODY]).count() as u64;
        if bodies != sized {
            return Err(StoreError::corrupt(
                &[keys::BODY_SIZE],
                format!("{sized} body size rows for {bodies} bodies"),
            ));
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
            bare_height,
            block_height,
            state_height,
            snapshot_height: (snapshot != 0).then_some(snapshot),
            state_records,
            snapshot_records,
            ancestral_records,
            state_root: Hash(recomputed.state_root().into()),
            stale_hash_index_entries,
        })
    }
}

/// Checks that the hash index holds the entry of each header (whose
/// fingerprints, by height from 1, are `fingerprints`): the runs every
/// header up to the mark, the in-memory tail each one above it, in order
/// and found by lookups; and that its runs and mark in memory (those
/// lookups read) are those on disk. Returns the number of stale entries.
fn check_hash_index(store: &Store, fingerprints: &[u64]) -> Result<u64, StoreError> {
    let db = &store.inner.db;
    let index = store
        .inner
        .hash_index
        .read()
        .map_err(|_| StoreError::Poisoned)?
        .clone();
    if !HashIndex::load(db)?.same_runs(index.runs()) {
        return Err(StoreError::corrupt(
            &[hash_index::RUN_META],
            "the hash index runs in memory are not those on disk",
        ));
    }
    let tail = index.tail();
    let mark = read_u64(db, keys::HASH_INDEX_MARK)?.unwrap_or(0);
    if mark != tail.indexed() {
        return Err(StoreError::corrupt(
            keys::HASH_INDEX_MARK,
            format!(
                "the hash index mark is {mark} on disk and {} in memory",
                tail.indexed()
            ),
        ));
    }
    if tail.indexed() + tail.len() as u64 != fingerprints.len() as u64 {
        return Err(StoreError::corrupt(
            keys::HASH_INDEX_MARK,
            format!(
                "the hash index holds headers up to {} in runs and {} above them in memory, but the header height is {}",
                tail.indexed(),
                tail.len(),
                fingerprints.len()
            ),
        ));
    }
    // A bit per header: its entry was found.
    let mut found = vec![0u64; fingerprints.len().div_ceil(64)];
    let mut indexed = 0u64;
    let mut stale = 0u64;
    let mut candidates = Vec::new();
    for (fp, height) in tail.entries() {
        let at = usize::try_from(height - 1).unwrap_or(usize::MAX);
        candidates.clear();
        tail.candidates(fp, &mut candidates);
        if fingerprints.get(at) != Some(&fp) || !candidates.contains(&height) {
            return Err(StoreError::corrupt(
                keys::HASH_INDEX_MARK,
                format!(
                    "the hash index's in-memory entry for header {height} is not its fingerprint or is not found by it"
                ),
            ));
        }
        found[at / 64] |= 1 << (at % 64);
        indexed += 1;
    }
    index.runs().visit_entries(db, |(fp, height)| {
        let at = usize::try_from(height)
            .ok()
            .and_then(|h| h.checked_sub(1))
            .filter(|&at| fingerprints.get(at) == Some(&fp));
        match at {
            Some(at) if found[at / 64] & 1 << (at % 64) == 0 => {
                found[at / 64] |= 1 << (at % 64);
                indexed += 1;
            }
            _ => stale += 1,
        }
    })?;
    let headers = fingerprints.len() as u64;
    if indexed != headers {
        let missing = (0..fingerprints.len())
            .find(|&at| found[at / 64] & 1 << (at % 64) == 0)
            .unwrap_or(0);
        return Err(StoreError::corrupt(
            &[hash_index::RUN_META],
            format!(
                "no hash index entry for header {} (fingerprint {:#018x}): {} of the {headers} headers have none, beside {stale} stale entries",
                missing + 1,
                fingerprints.get(missing).copied().unwrap_or(0),
                headers - indexed
            ),
        ));
    }
    Ok(stale)
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
