//! Restoring a snapshot received from peers, resumable after a restart.
//!
//! [`Store::begin_restore`] records the manifest (checked against the state
//! root of the verified header at the snapshot height). Each
//! [`Store::restore_chunk`] writes one chunk's records through the state's
//! one write path, which accumulates the per-prefix checksums, together with
//! the prefix's progress (its last key) in one durable batch; after a restart,
//! [`Store::restore_progress`] says where each prefix resumes. When a
//! prefix's last chunk arrives, its accumulated checksum and record count are
//! compared with the manifest, so bad data is attributed to its prefix
//! ([`Store::reset_restore_prefix`] then drops it for a refetch).
//! [`Store::finish_restore`] checks every prefix and the state root again and
//! makes the restored state the state at the snapshot height.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use headway_ellipticsum::{Checksum, PrefixChecksums};
use headway_wire::{Hash, SnapshotData, SnapshotManifest};
use tracing::{info, warn};

use crate::config::StatePrefixes;
use crate::error::hex_string;
use crate::keys;
use crate::state::{AppliedState, Mode, delete_range, stage_changes, stage_snapshot_checksums};
use crate::{Store, StoreError};

/// Where a restore stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreProgress {
    /// The snapshot height being restored.
    pub snapshot_height: u64,
    /// One entry per prefix of the manifest, ascending.
    pub prefixes: Vec<PrefixRestoreProgress>,
}

impl RestoreProgress {
    /// Whether every prefix is complete ([`Store::finish_restore`] can run).
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.prefixes.iter().all(|p| p.complete)
    }
}

/// Where the restore of one prefix stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixRestoreProgress {
    /// The state prefix.
    pub prefix: u8,
    /// The `start_key` of the next `GetSnapshot` for this prefix: empty at
    /// the start, else the last stored key followed by `0x00`.
    pub next_start_key: Vec<u8>,
    /// Records stored so far.
    pub records: u64,
    /// Records the manifest announces.
    pub expected_records: u64,
    /// Whether the prefix is complete and matched the manifest.
    pub complete: bool,
}

/// The restore in progress, as the writer keeps it.
#[derive(Debug, Clone)]
pub(crate) struct RestoreState {
    pub(crate) snapshot_height: u64,
    state_root: Hash,
    /// prefix -> (checksum, records) from the manifest.
    expected: BTreeMap<u8, (Checksum, u64)>,
    /// prefix -> (last stored key, complete).
    progress: BTreeMap<u8, (Option<Vec<u8>>, bool)>,
}

impl RestoreState {
    /// Loads the restore in progress, if any.
    pub(crate) fn load(
        db: &sled::Db,
        prefixes: &StatePrefixes,
    ) -> Result<Option<Self>, StoreError> {
        let Some(meta) = db
            .get(keys::RESTORE)
            .map_err(StoreError::engine("reading the restore state"))?
        else {
            return Ok(None);
        };
        let corrupt = |what: &str| StoreError::corrupt(keys::RESTORE, what);
        let snapshot_height = keys::u64_at(&meta, 0).ok_or_else(|| corrupt("too short"))?;
        let root: [u8; 32] = meta
            .get(8..40)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| corrupt("too short"))?;
        let rest = &meta[40..];
        if !rest.len().is_multiple_of(41) {
            return Err(corrupt("manifest entries are not 41 bytes each"));
        }
        let mut expected = BTreeMap::new();
        for entry in rest.chunks_exact(41) {
            let prefix = entry[0];
            if !prefixes.contains(prefix) {
                return Err(corrupt(
                    "manifest names a prefix that is not a state prefix",
                ));
            }
            let checksum = Checksum::from_slice(&entry[1..33])
                .map_err(|e| corrupt(&format!("manifest checksum does not decode: {e}")))?;
            let records = keys::u64_at(entry, 33).unwrap_or(0);
            expected.insert(prefix, (checksum, records));
        }
        let mut progress = BTreeMap::new();
        for row in db.scan_prefix([keys::RESTORE_PREFIX]) {
            let (key, value) = row.map_err(StoreError::engine("reading the restore progress"))?;
            let prefix = match key.as_ref() {
                [_, prefix] if expected.contains_key(prefix) => *prefix,
                _ => {
                    return Err(StoreError::corrupt(
                        &key,
                        "restore progress for a prefix not in the manifest",
                    ));
                }
            };
            let (complete, last_key) = match value.split_first() {
                Some((0, last)) => (false, last),
                Some((1, last)) => (true, last),
                _ => {
                    return Err(StoreError::corrupt(
                        &key,
                        "restore progress row has no valid flag",
                    ));
                }
            };
            let last_key = (!last_key.is_empty()).then(|| last_key.to_vec());
            progress.insert(prefix, (last_key, complete));
        }
        Ok(Some(Self {
            snapshot_height,
            state_root: Hash(root),
            expected,
            progress,
        }))
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40 + 41 * self.expected.len());
        out.extend_from_slice(&self.snapshot_height.to_be_bytes());
        out.extend_from_slice(&self.state_root.0);
        for (prefix, (checksum, records)) in &self.expected {
            out.push(*prefix);
            out.extend_from_slice(&checksum.to_bytes());
            out.extend_from_slice(&records.to_be_bytes());
        }
        out
    }

    fn report(&self, counts: &[u64; 256]) -> RestoreProgress {
        RestoreProgress {
            snapshot_height: self.snapshot_height,
            prefixes: self
                .expected
                .iter()
                .map(|(&prefix, &(_, expected_records))| {
                    let (last, complete) =
                        self.progress.get(&prefix).cloned().unwrap_or((None, false));
                    let next_start_key = last
                        .map(|mut key| {
                            key.push(0);
                            key
                        })
                        .unwrap_or_default();
                    PrefixRestoreProgress {
                        prefix,
                        next_start_key,
                        records: counts[usize::from(prefix)],
                        expected_records,
                        complete,
                    }
                })
                .collect(),
        }
    }
}

fn progress_row(complete: bool, last_key: &[u8]) -> Vec<u8> {
    let mut row = Vec::with_capacity(last_key.len() + 1);
    row.push(u8::from(complete));
    row.extend_from_slice(last_key);
    row
}

impl Store {
    /// Starts restoring the snapshot described by `manifest`, whose checksums
    /// must commit to `state_root` (the `state_root` of the verified header at
    /// the snapshot height). The state must be empty. Calling it again with
    /// the same manifest and root resumes the restore in progress.
    ///
    /// # Errors
    ///
    /// [`StoreError::ManifestRejected`], [`StoreError::StateNotEmpty`],
    /// [`StoreError::RestoreInProgress`] for another restore.
    pub fn begin_restore(
        &self,
        manifest: &SnapshotManifest,
        state_root: Hash,
    ) -> Result<RestoreProgress, StoreError> {
        let reject = |reason: String| StoreError::ManifestRejected { reason };
        manifest.validate().map_err(|e| reject(e.to_string()))?;
        let mut expected = BTreeMap::new();
        let mut sums = PrefixChecksums::new();
        for entry in &manifest.prefixes {
            if !self.inner.config.state_prefixes.contains(entry.prefix) {
                return Err(StoreError::NotAStatePrefix {
                    prefix: entry.prefix,
                });
            }
            let checksum = Checksum::from_bytes(&entry.checksum)
                .map_err(|e| reject(format!("prefix {:#04x}: {e}", entry.prefix)))?;
            sums.set(entry.prefix, checksum);
            expected.insert(entry.prefix, (checksum, entry.records));
        }
        let root = Hash(sums.state_root().into());
        if root != state_root {
            return Err(reject(format!(
                "its checksums commit to state root {root}, the header says {state_root}"
            )));
        }
        let writer = &mut *self.inner.writer()?;
        if let Some(restore) = &writer.restore {
            if restore.snapshot_height == manifest.snapshot_height
                && restore.state_root == state_root
                && restore.expected == expected
            {
                return Ok(restore.report(&writer.counts));
            }
            return Err(StoreError::RestoreInProgress {
                snapshot_height: restore.snapshot_height,
            });
        }
        let state_height = self.state_height();
        if state_height != 0 || writer.counts.iter().any(|&c| c > 0) {
            return Err(StoreError::StateNotEmpty { state_height });
        }
        let restore = RestoreState {
            snapshot_height: manifest.snapshot_height,
            state_root,
            expected,
            progress: BTreeMap::new(),
        };
        let mut batch = sled::Batch::default();
        batch.insert(keys::RESTORE, restore.encode());
        self.inner.commit(batch, "starting a snapshot restore")?;
        info!(
            snapshot_height = restore.snapshot_height,
            prefixes = restore.expected.len(),
            "snapshot restore started"
        );
        let report = restore.report(&writer.counts);
        writer.restore = Some(restore);
        Ok(report)
    }

    /// Stores one received chunk: its records, the accumulated checksum of
    /// its prefix and the prefix's progress, in one durable batch. A chunk
    /// must continue its prefix where the last stored chunk ended (its first
    /// key above the last stored key). When `prefix_exhausted` is set, the
    /// prefix's checksum and record count must equal the manifest's.
    ///
    /// # Errors
    ///
    /// [`StoreError::ChunkRejected`] for a chunk that does not fit,
    /// [`StoreError::PrefixChecksumMismatch`] for a prefix whose records do
    /// not add up; nothing is written then.
    pub fn restore_chunk(&self, chunk: &SnapshotData) -> Result<RestoreProgress, StoreError> {
        let prefix = chunk.prefix;
        let reject = |reason: &str| StoreError::ChunkRejected {
            prefix,
            reason: reason.to_owned(),
        };
        chunk.validate().map_err(|e| reject(&e.to_string()))?;
        let writer = &mut *self.inner.writer()?;
        let restore = writer
            .restore
            .as_ref()
            .ok_or(StoreError::NoRestoreInProgress)?;
        if chunk.snapshot_height != restore.snapshot_height {
            return Err(reject("chunk is for another snapshot height"));
        }
        let Some(&(expected_sum, expected_records)) = restore.expected.get(&prefix) else {
            return Err(reject("the manifest lists no records under this prefix"));
        };
        let (last_key, complete) = restore
            .progress
            .get(&prefix)
            .cloned()
            .unwrap_or((None, false));
        if complete {
            return Err(reject("the prefix is already complete"));
        }
        if let (Some(last), Some(first)) = (&last_key, chunk.entries.first())
            && first.key <= *last
        {
            return Err(reject("chunk overlaps records already stored"));
        }
        if last_key.is_none() {
            // A fresh prefix: drop what an interrupted reset may have left.
            let start = keys::state(&[prefix]);
            let end = keys::prefix_end(&start).unwrap_or_else(|| vec![keys::STATE + 1]);
            delete_range(&self.inner, start..end)?;
        }
        let changes: BTreeMap<Vec<u8>, Option<Vec<u8>>> = chunk
            .entries
            .iter()
            .map(|e| (e.key.clone(), Some(e.value.clone())))
            .collect();
        let mut staged = stage_changes(&self.inner, writer, &changes, Mode::Restore)?;
        let records = staged.counts[usize::from(prefix)];
        let checksum = staged.checksums.get(prefix);
        if chunk.prefix_exhausted && (checksum != expected_sum || records != expected_records) {
            warn!(
                prefix,
                records, expected_records, "restored prefix does not match the manifest"
            );
            return Err(StoreError::PrefixChecksumMismatch {
                prefix,
                checksum: hex_string(&checksum.to_bytes()),
                records,
                expected_checksum: hex_string(&expected_sum.to_bytes()),
                expected_records,
            });
        }
        let new_last = chunk.entries.last().map(|e| e.key.clone()).or(last_key);
        staged.batch.insert(
            &keys::by_prefix(keys::RESTORE_PREFIX, prefix)[..],
            progress_row(
                chunk.prefix_exhausted,
                new_last.as_deref().unwrap_or_default(),
            ),
        );
        {
            let _seqlock = self.inner.state_write();
            self.inner
                .commit(staged.batch, "storing a snapshot chunk")?;
        }
        writer.checksums = staged.checksums;
        writer.counts = staged.counts;
        let restore = writer
            .restore
            .as_mut()
            .ok_or(StoreError::NoRestoreInProgress)?;
        restore
            .progress
            .insert(prefix, (new_last, chunk.prefix_exhausted));
        Ok(restore.report(&writer.counts))
    }

    /// The restore in progress, if any, with where each prefix resumes.
    ///
    /// # Errors
    ///
    /// [`StoreError::Poisoned`] if a writer panicked.
    pub fn restore_progress(&self) -> Result<Option<RestoreProgress>, StoreError> {
        let writer = self.inner.writer()?;
        Ok(writer.restore.as_ref().map(|r| r.report(&writer.counts)))
    }

    /// Drops everything restored under `prefix` so it can be fetched again
    /// (for example from another peer after a [`StoreError::PrefixChecksumMismatch`]).
    ///
    /// # Errors
    ///
    /// [`StoreError::NoRestoreInProgress`], or an engine error.
    pub fn reset_restore_prefix(&self, prefix: u8) -> Result<(), StoreError> {
        let writer = &mut *self.inner.writer()?;
        if writer.restore.is_none() {
            return Err(StoreError::NoRestoreInProgress);
        }
        let mut batch = sled::Batch::default();
        batch.remove(&keys::by_prefix(keys::RESTORE_PREFIX, prefix)[..]);
        batch.remove(&keys::by_prefix(keys::CHECKSUM, prefix)[..]);
        {
            let _seqlock = self.inner.state_write();
            self.inner.commit(batch, "resetting a restored prefix")?;
        }
        writer.checksums.set(prefix, Checksum::identity());
        writer.counts[usize::from(prefix)] = 0;
        if let Some(restore) = writer.restore.as_mut() {
            restore.progress.remove(&prefix);
        }
        let start = keys::state(&[prefix]);
        let end = keys::prefix_end(&start).unwrap_or_else(|| vec![keys::STATE + 1]);
        let dropped = delete_range(&self.inner, start..end)?;
        info!(prefix, dropped, "restored prefix reset");
        Ok(())
    }

    /// Completes the restore: every prefix must be complete, and the
    /// accumulated checksums must equal the manifest's and commit to the
    /// expected state root. The restored state becomes the state (and the
    /// snapshot) at the snapshot height; the block height moves up to it.
    ///
    /// # Errors
    ///
    /// [`StoreError::RestoreIncomplete`], [`StoreError::PrefixChecksumMismatch`],
    /// [`StoreError::ManifestRejected`] if the root does not match.
    pub fn finish_restore(&self) -> Result<AppliedState, StoreError> {
        let writer = &mut *self.inner.writer()?;
        let restore = writer
            .restore
            .as_ref()
            .ok_or(StoreError::NoRestoreInProgress)?;
        for &prefix in restore.expected.keys() {
            if !restore
                .progress
                .get(&prefix)
                .is_some_and(|&(_, complete)| complete)
            {
                return Err(StoreError::RestoreIncomplete { prefix });
            }
        }
        for prefix in self.inner.config.state_prefixes.iter() {
            let (expected_sum, expected_records) = restore
                .expected
                .get(&prefix)
                .copied()
                .unwrap_or((Checksum::identity(), 0));
            let (sum, records) = (
                writer.checksums.get(prefix),
                writer.counts[usize::from(prefix)],
            );
            if sum != expected_sum || records != expected_records {
                return Err(StoreError::PrefixChecksumMismatch {
                    prefix,
                    checksum: hex_string(&sum.to_bytes()),
                    records,
                    expected_checksum: hex_string(&expected_sum.to_bytes()),
                    expected_records,
                });
            }
        }
        let root = Hash(writer.checksums.state_root().into());
        if root != restore.state_root {
            return Err(StoreError::ManifestRejected {
                reason: format!(
                    "restored state has root {root}, expected {}",
                    restore.state_root
                ),
            });
        }
        let height = restore.snapshot_height;
        let mut batch = sled::Batch::default();
        batch.insert(keys::STATE_HEIGHT, &height.to_be_bytes()[..]);
        batch.insert(keys::SNAPSHOT_HEIGHT, &height.to_be_bytes()[..]);
        batch.insert(keys::RESTORED_HEIGHT, &height.to_be_bytes()[..]);
        stage_snapshot_checksums(&self.inner, &mut batch, &writer.checksums, &writer.counts);
        let block_height = self.block_height().max(height);
        batch.insert(keys::BLOCK_HEIGHT, &block_height.to_be_bytes()[..]);
        batch.remove(keys::RESTORE);
        for &prefix in restore.expected.keys() {
            batch.remove(&keys::by_prefix(keys::RESTORE_PREFIX, prefix)[..]);
        }
        {
            let _seqlock = self.inner.state_write();
            self.inner.commit(batch, "finishing a snapshot restore")?;
            self.inner.state_height.store(height, Ordering::SeqCst);
            self.inner.snapshot_height.store(height, Ordering::SeqCst);
            self.inner
                .block_height
                .store(block_height, Ordering::SeqCst);
        }
        writer.restore = None;
        info!(snapshot_height = height, %root, "snapshot restore finished");
        let changed_prefixes = writer.checksums.iter().map(|(p, _)| p).collect();
        Ok(AppliedState {
            height,
            state_root: root,
            keys_changed: writer
                .counts
                .iter()
                .map(|&c| usize::try_from(c).unwrap_or(usize::MAX))
                .sum(),
            changed_prefixes,
            snapshot_taken: true,
        })
    }
}
