//! The key/value state and its one write path.
//!
//! Every write to the state goes through [`stage_changes`]: it reads each
//! key's old value, updates the per-prefix EllipticSum checksums and record
//! counts, records the key's value at the snapshot height in the Ancestral
//! Records the first time the key changes in a snapshot epoch, and puts all
//! of it, with the new state height, into one batch. There is no other way
//! to write a state key (DeSo's snapshot corruption came from a write that
//! bypassed its snapshot-aware path, NOTES).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use headway_chain::{HeaderExt as _, StateStore, data_hash};
use headway_ellipticsum::{Checksum, PrefixChecksums};
use headway_wire::{Block, Hash, Write};
use tracing::{debug, info};

use crate::keys;
use crate::store::{Inner, Writer, checksum_row};
use crate::{Store, StoreError};

/// Records hashed in one go below which hashing stays on this thread.
const MIN_RECORDS_FOR_PARALLEL_HASHING: usize = 8;

/// Ancestral Record marker: the key did not exist at the snapshot height.
pub(crate) const ABSENT_MARKER: u8 = 0x00;
/// Ancestral Record marker: the key existed; its value follows.
pub(crate) const VALUE_MARKER: u8 = 0x01;

/// Ancestral Records deleted per batch when an old epoch's records are dropped.
const GC_BATCH_KEYS: usize = 4096;

/// What a committed block of state writes did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedState {
    /// The new state height.
    pub height: u64,
    /// The state root after the writes (over the state prefixes' checksums).
    pub state_root: Hash,
    /// Keys whose value changed.
    pub keys_changed: usize,
    /// State prefixes whose checksum changed, ascending.
    pub changed_prefixes: Vec<u8>,
    /// Whether this height became the snapshot height.
    pub snapshot_taken: bool,
}

impl Store {
    /// The state height: the height of the last block whose writes are in
    /// the state (or of the restored snapshot).
    #[must_use]
    pub fn state_height(&self) -> u64 {
        self.inner.state_height.load(Ordering::SeqCst)
    }

    /// The live value of a state or local key.
    ///
    /// # Errors
    ///
    /// [`StoreError::Engine`] if the read fails.
    pub fn get_state(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .inner
            .get(&keys::state(key), "reading a state key")?
            .map(|v| v.to_vec()))
    }

    /// The current per-prefix checksums (state prefixes only).
    ///
    /// # Errors
    ///
    /// [`StoreError::Poisoned`] if a writer panicked.
    pub fn state_checksums(&self) -> Result<PrefixChecksums, StoreError> {
        Ok(self.inner.writer()?.checksums.clone())
    }

    /// The current state root: the commitment to [`Store::state_checksums`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Poisoned`] if a writer panicked.
    pub fn state_root(&self) -> Result<Hash, StoreError> {
        Ok(Hash(self.state_checksums()?.state_root().into()))
    }

    /// Number of records under each state prefix now (index = prefix).
    ///
    /// # Errors
    ///
    /// [`StoreError::Poisoned`] if a writer panicked.
    pub fn state_record_counts(&self) -> Result<Box<[u64; 256]>, StoreError> {
        Ok(self.inner.writer()?.counts.clone())
    }

    /// Applies the writes of the block at `height` (which must be
    /// `state_height() + 1`), in order, as one atomic, durable batch together
    /// with the checksums, the Ancestral Records and the new state height.
    /// Writes to the same key: the last one wins. Every key must be under a
    /// state prefix.
    ///
    /// # Errors
    ///
    /// [`StoreError::StateHeightGap`], [`StoreError::InvalidWrite`],
    /// [`StoreError::NotAStatePrefix`], [`StoreError::RestoreInProgress`];
    /// nothing is written then.
    pub fn apply_writes(&self, height: u64, writes: &[Write]) -> Result<AppliedState, StoreError> {
        let changes = net_changes(writes.iter())?;
        let writer = &mut *self.inner.writer()?;
        let staged = stage_block(&self.inner, writer, height, &changes)?;
        commit_block(&self.inner, writer, height, staged)
    }

    /// Executes `block` into the state: checks the body against the header's
    /// data hash (and against the stored header at that height, if any),
    /// applies its writes through the one write path, and commits only if the
    /// resulting state root is the header's.
    ///
    /// # Errors
    ///
    /// As [`Store::apply_writes`], plus [`StoreError::DataHashMismatch`],
    /// [`StoreError::StateRootMismatch`], [`StoreError::UnknownHeader`] and
    /// [`StoreError::BodyMismatch`]; nothing is written then.
    pub fn execute_block(&self, block: &Block) -> Result<AppliedState, StoreError> {
        let height = block.header.height;
        block.validate().map_err(|e| StoreError::BodyMismatch {
            height,
            reason: e.to_string(),
        })?;
        let computed = data_hash(&block.txs);
        if computed != block.header.data_hash {
            return Err(StoreError::DataHashMismatch {
                height,
                header: block.header.data_hash,
                computed,
            });
        }
        if let Some(meta) = self.load_block_meta(height)?
            && meta.block_id.hash != block.header.hash()
        {
            return Err(StoreError::UnknownHeader {
                height,
                reason: "the block's header is not the stored header",
            });
        }
        let changes = net_changes(block.txs.iter().flat_map(|tx| &tx.writes))?;
        let writer = &mut *self.inner.writer()?;
        let staged = stage_block(&self.inner, writer, height, &changes)?;
        let computed = Hash(staged.checksums.state_root().into());
        if computed != block.header.state_root {
            return Err(StoreError::StateRootMismatch {
                height,
                header: block.header.state_root,
                computed,
            });
        }
        commit_block(&self.inner, writer, height, staged)
    }

    /// Starts a block of state writes for an external executor: the returned
    /// [`StateBlock`] implements `headway_chain::StateStore`, so
    /// `headway_chain::execute_block` can run against it; then
    /// [`StateBlock::commit`] writes it through the one write path.
    #[must_use]
    pub fn begin_block(&self) -> StateBlock<'_> {
        let checksums = self
            .inner
            .writer()
            .map(|w| w.checksums.clone())
            .unwrap_or_default();
        StateBlock {
            store: self,
            base_checksums: checksums,
            overlay: BTreeMap::new(),
            claimed: None,
        }
    }

    /// Writes local (non-state) keys: keys under prefixes that are not
    /// declared as state. They are not checksummed or snapshotted and do not
    /// change the state height. One atomic, durable batch.
    ///
    /// # Errors
    ///
    /// [`StoreError::StatePrefixInLocalWrite`] for a key under a state
    /// prefix, [`StoreError::InvalidWrite`] for a malformed write.
    pub fn write_local(&self, writes: &[Write]) -> Result<(), StoreError> {
        let changes = net_changes(writes.iter())?;
        let writer = &mut *self.inner.writer()?;
        let staged = stage_changes(&self.inner, writer, &changes, Mode::Local)?;
        self.inner.commit(staged.batch, "writing local keys")
    }

    /// The live records of `prefix` in key order, streamed from disk.
    pub fn state_records(
        &self,
        prefix: u8,
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + '_ {
        self.inner
            .db
            .scan_prefix(keys::by_prefix(keys::STATE, prefix))
            .map(|row| {
                let (key, value) = row.map_err(StoreError::engine("scanning the state"))?;
                Ok((key[1..].to_vec(), value.to_vec()))
            })
    }

    /// Drops the Ancestral Records of every epoch but the current one (after
    /// a rollover, and at open in case a crash interrupted that).
    pub(crate) fn collect_old_ancestral_records(&self) -> Result<(), StoreError> {
        let current = self.inner.snapshot_height.load(Ordering::SeqCst);
        let below = keys::by_u64(keys::ANCESTRAL, 0)..keys::by_u64(keys::ANCESTRAL, current);
        let mut dropped = delete_range(&self.inner, below)?;
        if let Some(after) = current.checked_add(1) {
            // Up to the next table's tag alone: `[tag + 1]` sorts before every key of that table.
            let above = keys::by_u64(keys::ANCESTRAL, after).to_vec()..vec![keys::ANCESTRAL + 1];
            dropped += delete_range(&self.inner, above)?;
        }
        if dropped > 0 {
            info!(
                dropped,
                snapshot_height = current,
                "dropped old Ancestral Records"
            );
        }
        Ok(())
    }
}

/// A block of state writes collected for an external executor (see
/// [`Store::begin_block`]). Nothing reaches the store until [`StateBlock::commit`].
#[derive(Debug)]
pub struct StateBlock<'a> {
    store: &'a Store,
    base_checksums: PrefixChecksums,
    overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    claimed: Option<PrefixChecksums>,
}

impl StateBlock<'_> {
    /// Commits the collected writes as the block at `height` through the one
    /// write path. If the executor handed over checksums
    /// (`StateStore::set_checksums`), they must equal the ones the store
    /// computes for the same writes.
    ///
    /// # Errors
    ///
    /// As [`Store::apply_writes`], plus [`StoreError::ExecutorChecksumMismatch`];
    /// nothing is written then.
    pub fn commit(self, height: u64) -> Result<AppliedState, StoreError> {
        let inner = &self.store.inner;
        let writer = &mut *inner.writer()?;
        let staged = stage_block(inner, writer, height, &self.overlay)?;
        if let Some(claimed) = &self.claimed
            && *claimed != staged.checksums
        {
            let prefixes = (0..=u8::MAX)
                .filter(|&p| claimed.get(p) != staged.checksums.get(p))
                .collect();
            return Err(StoreError::ExecutorChecksumMismatch { height, prefixes });
        }
        commit_block(inner, writer, height, staged)
    }

    /// Number of keys written so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.overlay.len()
    }

    /// Whether nothing was written.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.overlay.is_empty()
    }
}

impl StateStore for StateBlock<'_> {
    type Error = StoreError;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.overlay.get(key) {
            Some(value) => Ok(value.clone()),
            None => self.store.get_state(key),
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.overlay.insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.overlay.insert(key.to_vec(), None);
        Ok(())
    }

    fn checksums(&self) -> &PrefixChecksums {
        self.claimed.as_ref().unwrap_or(&self.base_checksums)
    }

    fn set_checksums(&mut self, checksums: PrefixChecksums) -> Result<(), StoreError> {
        self.claimed = Some(checksums);
        Ok(())
    }
}

/// A state batch built but not yet committed.
pub(crate) struct Staged {
    pub(crate) batch: sled::Batch,
    pub(crate) checksums: PrefixChecksums,
    pub(crate) counts: Box<[u64; 256]>,
    pub(crate) changed_prefixes: Vec<u8>,
    pub(crate) keys_changed: usize,
    /// Whether this batch moves the snapshot height to its height.
    pub(crate) rollover: bool,
}

/// Who is writing, which decides which prefixes are allowed and what else
/// goes into the batch.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Mode {
    /// A block's writes: state prefixes only; Ancestral Records for the
    /// snapshot at `snapshot_height` (0: none).
    Block { snapshot_height: u64 },
    /// Snapshot restore: state prefixes only, into an empty state; no
    /// Ancestral Records, no old values to read.
    Restore,
    /// Local data: non-state prefixes only.
    Local,
}

/// The net effect of `writes` (validated; the last write to a key wins).
pub(crate) fn net_changes<'a>(
    writes: impl Iterator<Item = &'a Write>,
) -> Result<BTreeMap<Vec<u8>, Option<Vec<u8>>>, StoreError> {
    let mut changes = BTreeMap::new();
    for write in writes {
        write
            .validate()
            .map_err(|source| StoreError::InvalidWrite { source })?;
        changes.insert(write.key.clone(), write.value.clone());
    }
    Ok(changes)
}

/// THE write path of the state (see the module documentation). Builds the
/// batch for `changes` and the checksums and counts after it; writes nothing.
pub(crate) fn stage_changes(
    inner: &Inner,
    writer: &Writer,
    changes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    mode: Mode,
) -> Result<Staged, StoreError> {
    let prefixes = &inner.config.state_prefixes;
    let mut batch = sled::Batch::default();
    let mut counts = writer.counts.clone();
    let mut added: Vec<(&[u8], &[u8])> = Vec::new();
    let mut removed_values: Vec<(&[u8], sled::IVec)> = Vec::new();
    let mut keys_changed = 0;
    for (key, new) in changes {
        let Some(&prefix) = key.first() else {
            continue; // validated writes have non-empty keys
        };
        let is_state = prefixes.contains(prefix);
        match mode {
            Mode::Local if is_state => return Err(StoreError::StatePrefixInLocalWrite { prefix }),
            Mode::Block { .. } | Mode::Restore if !is_state => {
                return Err(StoreError::NotAStatePrefix { prefix });
            }
            _ => {}
        }
        let state_key = keys::state(key);
        let old = match mode {
            Mode::Restore => None,
            _ => inner.get(&state_key, "reading a state key")?,
        };
        if old.as_deref() == new.as_deref() {
            continue;
        }
        keys_changed += 1;
        match new {
            Some(value) => batch.insert(state_key, value.as_slice()),
            None => batch.remove(state_key),
        }
        if !is_state {
            continue;
        }
        let count = &mut counts[usize::from(prefix)];
        if let Mode::Block { snapshot_height } = mode
            && snapshot_height != 0
        {
            let record_key = keys::ancestral(snapshot_height, key);
            if inner
                .get(&record_key, "reading an Ancestral Record")?
                .is_none()
            {
                let record = match &old {
                    None => vec![ABSENT_MARKER],
                    Some(value) => {
                        let mut record = Vec::with_capacity(value.len() + 1);
                        record.push(VALUE_MARKER);
                        record.extend_from_slice(value);
                        record
                    }
                };
                batch.insert(record_key, record);
            }
        }
        if let Some(old) = old {
            *count = count.saturating_sub(1);
            removed_values.push((key, old));
        }
        if let Some(new) = new {
            *count += 1;
            added.push((key, new));
        }
    }
    let removed: Vec<(&[u8], &[u8])> = removed_values
        .iter()
        .map(|(k, v)| (*k, v.as_ref()))
        .collect();
    let mut checksums = writer.checksums.clone();
    let mut changed_prefixes: Vec<u8> = Vec::new();
    let added_elements = hash_records(inner, &added);
    let removed_elements = hash_records(inner, &removed);
    for ((key, _), element) in added.iter().zip(added_elements) {
        let prefix = key[0];
        checksums.set(prefix, checksums.get(prefix) + element);
        changed_prefixes.push(prefix);
    }
    for ((key, _), element) in removed.iter().zip(removed_elements) {
        let prefix = key[0];
        checksums.set(prefix, checksums.get(prefix) - element);
        changed_prefixes.push(prefix);
    }
    changed_prefixes.sort_unstable();
    changed_prefixes.dedup();
    for &prefix in &changed_prefixes {
        let key = keys::by_prefix(keys::CHECKSUM, prefix);
        let (sum, records) = (checksums.get(prefix), counts[usize::from(prefix)]);
        if records == 0 && sum.is_identity() {
            batch.remove(&key[..]);
        } else {
            batch.insert(&key[..], &checksum_row(&sum, records)[..]);
        }
    }
    Ok(Staged {
        batch,
        checksums,
        counts,
        changed_prefixes,
        keys_changed,
        rollover: false,
    })
}

/// Stages the writes of the block at `height` with its height and, at an
/// epoch boundary, the snapshot rollover.
fn stage_block(
    inner: &Inner,
    writer: &Writer,
    height: u64,
    changes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
) -> Result<Staged, StoreError> {
    if let Some(restore) = &writer.restore {
        return Err(StoreError::RestoreInProgress {
            snapshot_height: restore.snapshot_height,
        });
    }
    let expected = inner.state_height.load(Ordering::SeqCst) + 1;
    if height != expected {
        return Err(StoreError::StateHeightGap {
            expected,
            got: height,
        });
    }
    let rollover = height.is_multiple_of(inner.config.snapshot_period);
    // The writes of a rollover block need no records: the epoch they would
    // belong to ends with this very batch.
    let snapshot_height = if rollover {
        0
    } else {
        inner.snapshot_height.load(Ordering::SeqCst)
    };
    let mut staged = stage_changes(inner, writer, changes, Mode::Block { snapshot_height })?;
    staged
        .batch
        .insert(keys::STATE_HEIGHT, &height.to_be_bytes()[..]);
    if rollover {
        staged.rollover = true;
        staged
            .batch
            .insert(keys::SNAPSHOT_HEIGHT, &height.to_be_bytes()[..]);
        stage_snapshot_checksums(inner, &mut staged.batch, &staged.checksums, &staged.counts);
    }
    Ok(staged)
}

/// Writes the snapshot checksum rows: the checksums at the new snapshot height.
pub(crate) fn stage_snapshot_checksums(
    inner: &Inner,
    batch: &mut sled::Batch,
    checksums: &PrefixChecksums,
    counts: &[u64; 256],
) {
    for prefix in inner.config.state_prefixes.iter() {
        let key = keys::by_prefix(keys::SNAPSHOT_CHECKSUM, prefix);
        let (sum, records) = (checksums.get(prefix), counts[usize::from(prefix)]);
        if records == 0 && sum.is_identity() {
            batch.remove(&key[..]);
        } else {
            batch.insert(&key[..], &checksum_row(&sum, records)[..]);
        }
    }
}

/// Commits a staged block: the batch (under the state seqlock), then the
/// in-memory view; after a rollover, drops the old epoch's records.
fn commit_block(
    inner: &Inner,
    writer: &mut Writer,
    height: u64,
    staged: Staged,
) -> Result<AppliedState, StoreError> {
    let old_snapshot = inner.snapshot_height.load(Ordering::SeqCst);
    {
        let _seqlock = inner.state_write();
        inner.commit(staged.batch, "applying state writes")?;
        inner.state_height.store(height, Ordering::SeqCst);
        if staged.rollover {
            inner.snapshot_height.store(height, Ordering::SeqCst);
        }
    }
    writer.checksums = staged.checksums;
    writer.counts = staged.counts;
    let state_root = Hash(writer.checksums.state_root().into());
    if staged.rollover {
        info!(snapshot_height = height, "snapshot epoch rolled over");
        if old_snapshot != 0 {
            let range = keys::by_u64(keys::ANCESTRAL, old_snapshot)
                ..keys::by_u64(keys::ANCESTRAL, old_snapshot + 1);
            delete_range(inner, range)?;
        }
    }
    debug!(height, keys = staged.keys_changed, "applied state writes");
    Ok(AppliedState {
        height,
        state_root,
        keys_changed: staged.keys_changed,
        changed_prefixes: staged.changed_prefixes,
        snapshot_taken: staged.rollover,
    })
}

/// Each record's EllipticSum element, in order; in parallel for many records.
pub(crate) fn hash_records(inner: &Inner, records: &[(&[u8], &[u8])]) -> Vec<Checksum> {
    if records.len() < MIN_RECORDS_FOR_PARALLEL_HASHING {
        records
            .iter()
            .map(|(k, v)| inner.hasher.hash_record(k, v))
            .collect()
    } else {
        inner.hasher.par_hash_records(records)
    }
}

/// Deletes every key in `range`, a bounded batch at a time (not atomic as a
/// whole: used for garbage whose partial removal is harmless).
pub(crate) fn delete_range<K: AsRef<[u8]>>(
    inner: &Inner,
    range: std::ops::Range<K>,
) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for row in inner
            .db
            .range(range.start.as_ref()..range.end.as_ref())
            .keys()
            .take(GC_BATCH_KEYS)
        {
            batch.remove(row.map_err(StoreError::engine("scanning keys to delete"))?);
            in_batch += 1;
        }
        if in_batch == 0 {
            return Ok(total);
        }
        inner
            .db
            .apply_batch(batch)
            .map_err(StoreError::engine("deleting old records"))?;
        total += in_batch;
    }
}
