//! Serving the snapshot: the state at the snapshot height, rebuilt on the fly
//! from the live state and the Ancestral Records.
//!
//! The snapshot height is the last multiple of the snapshot period `P` the
//! state height reached (or the height of a restored snapshot). During the
//! epoch after it, the first change of each state key records the key's value
//! at the snapshot height (or that it was absent) in the Ancestral Records.
//! So the state at the snapshot height is: every Ancestral Record that holds
//! a value, plus every live record whose key has no Ancestral Record.
//!
//! [`SnapshotChunkIter`] merges the two sorted sled ranges of one prefix in
//! one pass, holding one record of each at a time: memory stays bounded
//! whatever the prefix's size. It runs concurrently with block writes: a
//! seqlock on the state tells it when a batch was applied since it opened its
//! sled iterators, and it then reopens them at the next key to produce (a
//! state key's live value and its Ancestral Record change in one batch, so a
//! view with no batch in between is exact).

use std::sync::atomic::Ordering;

use headway_wire::limits::MAX_SNAPSHOT_ENTRIES;
use headway_wire::{PrefixChecksum, SnapshotData, SnapshotEntry, SnapshotManifest};

use crate::keys;
use crate::state::{ABSENT_MARKER, VALUE_MARKER};
use crate::store::decode_checksum_row;
use crate::{Store, StoreError};

/// Bytes counted per entry on top of its key and value in a chunk's byte
/// budget: an upper bound on the protobuf framing of one `SnapshotEntry`
/// (tags and length varints for keys up to 1 KiB and values up to 1 MiB).
pub const SNAPSHOT_ENTRY_OVERHEAD: usize = 16;

/// Reopens after which a reader gives up (writers kept committing under it).
const MAX_REOPENS_WITHOUT_PROGRESS: u32 = 10_000;

impl Store {
    /// The height of the snapshot this store serves, if any.
    #[must_use]
    pub fn snapshot_height(&self) -> Option<u64> {
        match self.inner.snapshot_height.load(Ordering::SeqCst) {
            0 => None,
            height => Some(height),
        }
    }

    /// The manifest of the snapshot at `snapshot_height`: the checksum and
    /// record count of every state prefix that has records, ascending.
    ///
    /// # Errors
    ///
    /// [`StoreError::SnapshotUnavailable`] if it is not the served snapshot.
    pub fn snapshot_manifest(&self, snapshot_height: u64) -> Result<SnapshotManifest, StoreError> {
        for _ in 0..MAX_REOPENS_WITHOUT_PROGRESS {
            let generation = self.stable_generation();
            self.check_snapshot(snapshot_height)?;
            let mut prefixes = Vec::new();
            for row in self.inner.db.scan_prefix([keys::SNAPSHOT_CHECKSUM]) {
                let (key, value) = row.map_err(StoreError::engine("reading snapshot checksums"))?;
                let [_, prefix] = key.as_ref() else {
                    return Err(StoreError::corrupt(
                        &key,
                        "snapshot checksum key is not 2 bytes",
                    ));
                };
                let (checksum, records) = decode_checksum_row(&key, &value)?;
                prefixes.push(PrefixChecksum {
                    prefix: *prefix,
                    checksum: checksum.to_bytes(),
                    records,
                });
            }
            if self.inner.state_generation.load(Ordering::SeqCst) == generation {
                return Ok(SnapshotManifest {
                    snapshot_height,
                    prefixes,
                });
            }
        }
        Err(self.unavailable(snapshot_height))
    }

    /// Streams the records of `prefix` at `snapshot_height` in key order,
    /// from `start_key` (inclusive; empty = the prefix's first record), until
    /// about `byte_budget` bytes (keys, values and
    /// [`SNAPSHOT_ENTRY_OVERHEAD`] per entry; always at least one entry) or
    /// [`MAX_SNAPSHOT_ENTRIES`] entries. To continue, ask again from
    /// [`SnapshotChunkIter::next_start_key`]: the last key followed by `0x00`,
    /// as `docs/protocol.md` section 8 says.
    ///
    /// # Errors
    ///
    /// [`StoreError::SnapshotUnavailable`], [`StoreError::NotAStatePrefix`],
    /// [`StoreError::InvalidStartKey`]. Items are errors if the snapshot
    /// rolls over while streaming or the disk fails.
    pub fn snapshot_chunk(
        &self,
        snapshot_height: u64,
        prefix: u8,
        start_key: &[u8],
        byte_budget: usize,
    ) -> Result<SnapshotChunkIter, StoreError> {
        self.check_snapshot(snapshot_height)?;
        if !self.inner.config.state_prefixes.contains(prefix) {
            return Err(StoreError::NotAStatePrefix { prefix });
        }
        let next_key = match start_key.first() {
            None => vec![prefix],
            Some(&first) if first == prefix => start_key.to_vec(),
            Some(_) => return Err(StoreError::InvalidStartKey { prefix }),
        };
        Ok(SnapshotChunkIter {
            store: self.clone(),
            snapshot_height,
            prefix,
            next_key,
            last_key: None,
            byte_budget,
            bytes: 0,
            entries: 0,
            cursor: None,
            outcome: None,
            reopens: 0,
        })
    }

    /// One whole chunk, as the `SnapshotData` answer to a `GetSnapshot`
    /// (see [`Store::snapshot_chunk`]; memory is bounded by the budget).
    ///
    /// # Errors
    ///
    /// As [`Store::snapshot_chunk`].
    pub fn read_snapshot_chunk(
        &self,
        snapshot_height: u64,
        prefix: u8,
        start_key: &[u8],
        byte_budget: usize,
    ) -> Result<SnapshotData, StoreError> {
        let mut iter = self.snapshot_chunk(snapshot_height, prefix, start_key, byte_budget)?;
        let entries = iter.by_ref().collect::<Result<Vec<_>, _>>()?;
        Ok(SnapshotData {
            snapshot_height,
            prefix,
            entries,
            prefix_exhausted: iter.prefix_exhausted().unwrap_or(false),
        })
    }

    fn check_snapshot(&self, snapshot_height: u64) -> Result<(), StoreError> {
        if self.snapshot_height() == Some(snapshot_height) {
            Ok(())
        } else {
            Err(self.unavailable(snapshot_height))
        }
    }

    fn unavailable(&self, requested: u64) -> StoreError {
        StoreError::SnapshotUnavailable {
            requested,
            available: self.snapshot_height(),
        }
    }

    /// The state generation once no state batch is being applied.
    fn stable_generation(&self) -> u64 {
        let mut spins = 0u32;
        loop {
            let generation = self.inner.state_generation.load(Ordering::SeqCst);
            if generation.is_multiple_of(2) {
                return generation;
            }
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        }
    }
}

/// The records of one prefix at a snapshot height, in key order (see
/// [`Store::snapshot_chunk`]). Holds one live and one Ancestral Record at a
/// time; owns a store handle, so it can outlive the borrow it came from.
pub struct SnapshotChunkIter {
    store: Store,
    snapshot_height: u64,
    prefix: u8,
    /// The smallest key not yet decided (inclusive).
    next_key: Vec<u8>,
    last_key: Option<Vec<u8>>,
    byte_budget: usize,
    bytes: usize,
    entries: usize,
    cursor: Option<Cursor>,
    /// `Some(prefix_exhausted)` once the chunk is complete; `Some(false)` after an error too.
    outcome: Option<bool>,
    reopens: u32,
}

impl std::fmt::Debug for SnapshotChunkIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotChunkIter")
            .field("snapshot_height", &self.snapshot_height)
            .field("prefix", &self.prefix)
            .field("entries", &self.entries)
            .field("bytes", &self.bytes)
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

impl SnapshotChunkIter {
    /// Once the iterator returned `None`: whether no record of the prefix
    /// follows the last entry. `None` while it is still running.
    #[must_use]
    pub fn prefix_exhausted(&self) -> Option<bool> {
        self.outcome
    }

    /// Where the next chunk starts: the last key produced followed by `0x00`
    /// (or the start key if nothing was produced). `None` once the prefix is
    /// exhausted.
    #[must_use]
    pub fn next_start_key(&self) -> Option<Vec<u8>> {
        if self.outcome == Some(true) {
            return None;
        }
        Some(match &self.last_key {
            Some(last) => {
                let mut key = last.clone();
                key.push(0);
                key
            }
            None => self.next_key.clone(),
        })
    }

    /// Entries produced so far.
    #[must_use]
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Bytes of the budget used so far.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn open(&self, generation: u64) -> Cursor {
        let db = &self.store.inner.db;
        let live_start = keys::state(&self.next_key);
        let live_end =
            keys::prefix_end(&keys::state(&[self.prefix])).unwrap_or_else(|| vec![keys::STATE + 1]);
        let record_start = keys::ancestral(self.snapshot_height, &self.next_key);
        let record_end = keys::prefix_end(&keys::ancestral(self.snapshot_height, &[self.prefix]))
            .unwrap_or_else(|| vec![keys::ANCESTRAL + 1]);
        Cursor {
            generation,
            live: db.range(live_start..live_end),
            records: db.range(record_start..record_end),
            live_head: None,
            record_head: None,
            live_done: false,
            records_done: false,
        }
    }

    fn step(&mut self) -> Result<Option<SnapshotEntry>, StoreError> {
        loop {
            let generation = self.store.stable_generation();
            let reopen = self
                .cursor
                .as_ref()
                .is_none_or(|c| c.generation != generation);
            if reopen {
                self.reopens += 1;
                if self.reopens > MAX_REOPENS_WITHOUT_PROGRESS {
                    return Err(self.store.unavailable(self.snapshot_height));
                }
                self.store.check_snapshot(self.snapshot_height)?;
                self.cursor = Some(self.open(generation));
            }
            let Some(cursor) = self.cursor.as_mut() else {
                continue;
            };
            let decision = cursor.decide();
            if self.store.inner.state_generation.load(Ordering::SeqCst) != cursor.generation {
                // A batch landed while deciding: the view may mix two states.
                self.cursor = None;
                continue;
            }
            self.reopens = 0;
            match decision? {
                Decision::End => return Ok(None),
                Decision::Skip(key) => {
                    self.next_key = key;
                    self.next_key.push(0);
                }
                Decision::Emit(key, value) => return Ok(Some(SnapshotEntry { key, value })),
            }
        }
    }
}

impl Iterator for SnapshotChunkIter {
    type Item = Result<SnapshotEntry, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.outcome.is_some() {
            return None;
        }
        match self.step() {
            Err(error) => {
                self.outcome = Some(false);
                self.cursor = None;
                Some(Err(error))
            }
            Ok(None) => {
                self.outcome = Some(true);
                self.cursor = None;
                None
            }
            Ok(Some(entry)) => {
                let size = entry.key.len() + entry.value.len() + SNAPSHOT_ENTRY_OVERHEAD;
                let over_budget = self.bytes.saturating_add(size) > self.byte_budget;
                if self.entries > 0 && (over_budget || self.entries >= MAX_SNAPSHOT_ENTRIES) {
                    self.outcome = Some(false);
                    self.cursor = None;
                    return None;
                }
                self.bytes += size;
                self.entries += 1;
                self.next_key.clone_from(&entry.key);
                self.next_key.push(0);
                self.last_key = Some(entry.key.clone());
                // The cursor's heads already moved past this key.
                Some(Ok(entry))
            }
        }
    }
}

/// Two sled ranges opened at one state generation, and their current heads.
struct Cursor {
    generation: u64,
    live: sled::Iter,
    records: sled::Iter,
    live_head: Option<(sled::IVec, sled::IVec)>,
    record_head: Option<(sled::IVec, sled::IVec)>,
    live_done: bool,
    records_done: bool,
}

enum Decision {
    End,
    Skip(Vec<u8>),
    Emit(Vec<u8>, Vec<u8>),
}

impl Cursor {
    /// Decides the smallest undecided key and consumes its heads.
    fn decide(&mut self) -> Result<Decision, StoreError> {
        if self.live_head.is_none() && !self.live_done {
            match self.live.next() {
                Some(row) => {
                    self.live_head = Some(row.map_err(StoreError::engine("scanning the state"))?)
                }
                None => self.live_done = true,
            }
        }
        if self.record_head.is_none() && !self.records_done {
            match self.records.next() {
                Some(row) => {
                    self.record_head =
                        Some(row.map_err(StoreError::engine("scanning Ancestral Records"))?);
                }
                None => self.records_done = true,
            }
        }
        let live_key = self.live_head.as_ref().map(|(k, _)| &k[1..]);
        let record_key = self
            .record_head
            .as_ref()
            .map(|(k, _)| k.get(keys::ANCESTRAL_HEAD..).unwrap_or_default());
        let order = match (live_key, record_key) {
            (None, None) => return Ok(Decision::End),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(live), Some(record)) => live.cmp(record),
        };
        if order == std::cmp::Ordering::Equal {
            // The record decides; the live value is newer than the snapshot.
            self.live_head = None;
        }
        if order == std::cmp::Ordering::Less {
            let Some((key, value)) = self.live_head.take() else {
                return Ok(Decision::End);
            };
            return Ok(Decision::Emit(key[1..].to_vec(), value.to_vec()));
        }
        let Some((key, value)) = self.record_head.take() else {
            return Ok(Decision::End);
        };
        let state_key = key.get(keys::ANCESTRAL_HEAD..).unwrap_or_default().to_vec();
        match value.split_first() {
            Some((&ABSENT_MARKER, [])) => Ok(Decision::Skip(state_key)),
            Some((&VALUE_MARKER, v)) => Ok(Decision::Emit(state_key, v.to_vec())),
            _ => Err(StoreError::corrupt(
                &key,
                "Ancestral Record has no valid marker",
            )),
        }
    }
}
