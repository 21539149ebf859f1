//! The hash index as lookups see it (format 9): the sorted runs on disk
//! (`hash_index.rs`) plus an in-memory *tail* of the headers stored since
//! the last run was written.
//!
//! Why: writing a run per header batch cost the store writer about a fifth
//! of its time in header sync (sorting each batch, sled pages of up to
//! 64 KiB rewritten as blobs, and merges that read runs back), for an index
//! that only serves lookups by hash. Now a batch only adds its entries to
//! the tail; once the tail holds [`TAIL_ENTRIES`] entries, the batch that
//! fills it writes them as one run (level 5 at once instead of level 3,
//! skipping two rounds of merges).
//!
//! Durability is the header log's: the tail is never written. The meta key
//! `keys::HASH_INDEX_MARK` (written in the same sled batch as the run, and
//! absent until the first one) says up to which height the runs hold every
//! header; at open, the tail is rebuilt from the hashes in the stored
//! segments above it (fewer than [`TAIL_ENTRIES`] rows, a few milliseconds).
//! A batch that stores heights at or below the mark (only possible after a
//! batch whose flush failed) lowers the mark in its own sled batch, so the
//! headers it stores are rebuilt into the tail after a crash.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::{Mutex, PoisonError};

use crate::StoreError;
use crate::hash_index::{Entry, HashIndex};
use crate::header_log::HeaderLog;
use crate::keys;
use crate::segment::{self, Segment, Stored as _};

/// Headers the tail holds at most: the batch that would reach this writes
/// the tail as a run. 512 KiB of fingerprints, and about 3 MiB with the map
/// a lookup builds (see [`Tail`]). The store's config may set less
/// (`StoreConfig::hash_index_tail`), never more: a store whose mark is this
/// far below its header height is corrupt.
pub(crate) const TAIL_ENTRIES: usize = crate::config::MAX_HASH_INDEX_TAIL;

/// Hashes fingerprints, which are already uniform (a header hash's first 8
/// bytes): mixed with a per-process key, no rounds of SipHash per insert.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FingerprintState {
    key: u64,
}

impl Default for FingerprintState {
    fn default() -> Self {
        FingerprintState {
            key: RandomState::new().hash_one(0u64) | 1,
        }
    }
}

impl BuildHasher for FingerprintState {
    type Hasher = FingerprintHasher;
    fn build_hasher(&self) -> FingerprintHasher {
        FingerprintHasher {
            key: self.key,
            state: 0,
        }
    }
}

/// See [`FingerprintState`].
#[derive(Debug)]
pub(crate) struct FingerprintHasher {
    key: u64,
    state: u64,
}

impl Hasher for FingerprintHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not used by `u64` keys; kept correct for any other.
        for &byte in bytes {
            self.state = (self.state.rotate_left(8) ^ u64::from(byte)).wrapping_mul(self.key);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.state = (n ^ self.state).wrapping_mul(self.key).rotate_left(29);
    }
    fn finish(&self) -> u64 {
        self.state ^ self.state >> 32
    }
}

/// The entries of the headers above the mark, in memory.
///
/// Only the fingerprints by height are kept as headers arrive; the map
/// lookups need is built at the first lookup and kept up to date from then
/// on, until the tail becomes a run. Header sync stores tens of thousands of
/// headers a second and looks none up, so it never pays for the map (it was
/// about a tenth of the store writer's time there).
#[derive(Debug, Default)]
pub(crate) struct Tail {
    /// Heights up to this one are in the runs (`keys::HASH_INDEX_MARK`).
    indexed: u64,
    /// The fingerprint of each header above `indexed`, by height.
    fingerprints: Vec<u64>,
    /// Built by the first lookup since the tail was last emptied.
    lookup: Mutex<Option<Lookup>>,
}

/// Fingerprint → height over the tail's entries.
#[derive(Debug, Default)]
struct Lookup {
    by_fingerprint: HashMap<u64, u64, FingerprintState>,
    /// Entries whose fingerprint another tail entry has (8-byte collisions:
    /// practically never; bounded by the tail).
    collisions: Vec<Entry>,
}

impl Lookup {
    fn build(tail: &Tail) -> Lookup {
        let mut lookup = Lookup {
            by_fingerprint: HashMap::with_capacity_and_hasher(
                tail.fingerprints.len(),
                FingerprintState::default(),
            ),
            collisions: Vec::new(),
        };
        for (fp, height) in tail.entries() {
            lookup.insert(fp, height);
        }
        lookup
    }

    fn insert(&mut self, fp: u64, height: u64) {
        if let Some(other) = self.by_fingerprint.insert(fp, height) {
            self.collisions.push((fp, other));
        }
    }
}

impl Clone for Tail {
    fn clone(&self) -> Tail {
        Tail {
            indexed: self.indexed,
            fingerprints: self.fingerprints.clone(),
            lookup: Mutex::default(),
        }
    }
}

impl Tail {
    fn new(indexed: u64) -> Tail {
        Tail {
            indexed,
            ..Tail::default()
        }
    }

    /// Headers in the tail.
    pub(crate) fn len(&self) -> usize {
        self.fingerprints.len()
    }

    /// The height up to which the runs hold every header.
    pub(crate) fn indexed(&self) -> u64 {
        self.indexed
    }

    /// The tail's entries, by height.
    pub(crate) fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.fingerprints
            .iter()
            .zip(self.indexed + 1..)
            .map(|(&fp, h)| (fp, h))
    }

    /// The lookup map if a lookup built it (no locking: `&mut self`).
    fn lookup_mut(&mut self) -> &mut Option<Lookup> {
        self.lookup
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&mut self, fp: u64) {
        let height = self.indexed + self.fingerprints.len() as u64 + 1;
        self.fingerprints.push(fp);
        if let Some(lookup) = self.lookup_mut() {
            lookup.insert(fp, height);
        }
    }

    /// Keeps the first `keep` entries.
    fn truncate(&mut self, keep: usize) {
        if keep >= self.fingerprints.len() {
            return;
        }
        let cut = self.indexed + keep as u64 + 1;
        let (fingerprints, lookup) = (
            &self.fingerprints,
            self.lookup
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        if let Some(lookup) = lookup {
            for (i, &fp) in fingerprints[keep..].iter().enumerate() {
                let height = cut + i as u64;
                if lookup.by_fingerprint.get(&fp) == Some(&height) {
                    lookup.by_fingerprint.remove(&fp);
                }
            }
            lookup.collisions.retain(|&(_, h)| h < cut);
        }
        self.fingerprints.truncate(keep);
    }

    fn reset(&mut self, indexed: u64) {
        self.indexed = indexed;
        self.fingerprints.clear();
        *self.lookup_mut() = None;
    }

    /// Heights in the tail with fingerprint `fp`. The first lookup since the
    /// tail was emptied builds the map (a few milliseconds for a full tail).
    pub(crate) fn candidates(&self, fp: u64, out: &mut Vec<u64>) {
        let mut lookup = self.lookup.lock().unwrap_or_else(PoisonError::into_inner);
        let lookup = lookup.get_or_insert_with(|| Lookup::build(self));
        out.extend(lookup.by_fingerprint.get(&fp));
        out.extend(
            lookup
                .collisions
                .iter()
                .filter(|&&(f, _)| f == fp)
                .map(|&(_, h)| h),
        );
    }

    /// Whether a lookup has built the map (tests).
    #[cfg(test)]
    fn has_lookup(&self) -> bool {
        self.lookup
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}

/// What a staged header batch does to the index once its sled batch is
/// applied ([`Index::apply`]).
#[derive(Debug)]
pub(crate) enum IndexUpdate {
    /// The tail and the batch were written as a run: these are the runs now,
    /// the tail is empty and the mark is at `indexed`.
    Flushed { runs: HashIndex, indexed: u64 },
    /// The batch's entries join the tail after its first `keep` entries;
    /// the mark is (or stays) at `indexed`.
    Appended {
        keep: usize,
        indexed: u64,
        entries: Vec<Entry>,
    },
}

/// The hash index: runs on disk and the tail in memory.
#[derive(Debug, Clone)]
pub(crate) struct Index {
    runs: HashIndex,
    tail: Tail,
    /// The tail's size that triggers a run ([`TAIL_ENTRIES`]; smaller in tests).
    limit: usize,
}

impl Index {
    /// Loads the runs and rebuilds the tail from the stored segments above
    /// the mark, up to `header_height`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if the mark is above the header height or
    /// [`TAIL_ENTRIES`] or more below it, or a segment is missing or malformed.
    pub(crate) fn load(
        db: &sled::Db,
        log: &HeaderLog,
        header_height: u64,
        limit: usize,
    ) -> Result<Index, StoreError> {
        let runs = HashIndex::load(db)?;
        let indexed = crate::store::read_u64(db, keys::HASH_INDEX_MARK)?.unwrap_or(0);
        if indexed > header_height {
            return Err(StoreError::corrupt(
                keys::HASH_INDEX_MARK,
                format!("hash index mark {indexed} is above the header height {header_height}"),
            ));
        }
        if header_height - indexed >= TAIL_ENTRIES as u64 {
            return Err(StoreError::corrupt(
                keys::HASH_INDEX_MARK,
                format!(
                    "hash index mark {indexed} is {} headers below the header height {header_height}; the tail holds fewer than {TAIL_ENTRIES}",
                    header_height - indexed
                ),
            ));
        }
        let mut tail = Tail::new(indexed);
        let mut next = indexed + 1;
        while next <= header_height {
            let segment: Segment = segment::find_stored(db, log, next)?;
            let before = next;
            for row in segment.rows()? {
                if row.height < next {
                    continue;
                }
                if row.height > header_height || row.height != next {
                    break;
                }
                tail.push(crate::hash_index::fingerprint(&row.hash.0));
                next += 1;
            }
            if next == before {
                return Err(StoreError::corrupt(
                    &keys::by_u64(keys::HEADER_SEGMENT, next),
                    format!("header {next} missing below the header height {header_height}"),
                ));
            }
        }
        Ok(Index {
            runs,
            tail,
            limit: limit.clamp(1, TAIL_ENTRIES),
        })
    }

    /// An empty index whose tail writes a run at `limit` entries.
    #[cfg(test)]
    pub(crate) fn with_limit(limit: usize) -> Index {
        Index {
            runs: HashIndex::default(),
            tail: Tail::default(),
            limit: limit.clamp(1, TAIL_ENTRIES),
        }
    }

    /// The runs.
    pub(crate) fn runs(&self) -> &HashIndex {
        &self.runs
    }

    /// The tail.
    pub(crate) fn tail(&self) -> &Tail {
        &self.tail
    }

    /// Candidate heights of `hash`: the tail's, then the runs', newest first.
    pub(crate) fn candidates(
        &self,
        db: &sled::Db,
        hash: &[u8; 32],
    ) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        self.tail
            .candidates(crate::hash_index::fingerprint(hash), &mut out);
        out.extend(self.runs.candidates(db, hash)?);
        Ok(out)
    }

    /// Stages the entries of a header batch starting at `first_height` (by
    /// height): into the tail, or, when that fills it, together with the
    /// tail as a run (and the merges it triggers) and the new mark.
    pub(crate) fn stage(
        &self,
        db: &sled::Db,
        batch: &mut sled::Batch,
        entries: Vec<Entry>,
        first_height: u64,
    ) -> Result<IndexUpdate, StoreError> {
        let tail = &self.tail;
        // The tail entries below the batch stay; a batch at or below the
        // mark lowers it (see the module docs).
        let (keep, indexed) = if first_height > tail.indexed {
            let above = usize::try_from(first_height - tail.indexed - 1).unwrap_or(usize::MAX);
            if above > tail.len() {
                // The store only stages a batch at its header height + 1,
                // and the tail always reaches the header height: a gap
                // here means the index and the headers disagree.
                return Err(StoreError::corrupt(
                    keys::HASH_INDEX_MARK,
                    format!(
                        "a header batch at {first_height} would leave a gap above the hash index, which reaches {}",
                        tail.indexed + tail.len() as u64
                    ),
                ));
            }
            (above, tail.indexed)
        } else {
            (0, first_height.saturating_sub(1))
        };
        if keep + entries.len() >= self.limit {
            let top = indexed + (keep + entries.len()) as u64;
            let mut all: Vec<Entry> = Vec::with_capacity(keep + entries.len());
            all.extend(tail.entries().take(keep));
            all.extend(entries);
            // Entries of older runs above the mark can only come from a
            // batch whose flush failed: merges drop them.
            let runs = self.runs.stage(db, batch, all, indexed + 1)?;
            batch.insert(keys::HASH_INDEX_MARK, &top.to_be_bytes()[..]);
            return Ok(IndexUpdate::Flushed { runs, indexed: top });
        }
        if indexed != tail.indexed {
            batch.insert(keys::HASH_INDEX_MARK, &indexed.to_be_bytes()[..]);
        }
        Ok(IndexUpdate::Appended {
            keep,
            indexed,
            entries,
        })
    }

    /// Applies what [`Index::stage`] staged, once its sled batch is applied.
    pub(crate) fn apply(&mut self, update: IndexUpdate) {
        match update {
            IndexUpdate::Flushed { runs, indexed } => {
                self.runs = runs;
                self.tail.reset(indexed);
            }
            IndexUpdate::Appended {
                keep,
                indexed,
                entries,
            } => {
                if indexed == self.tail.indexed {
                    self.tail.truncate(keep);
                } else {
                    self.tail.reset(indexed);
                }
                for (fp, _) in entries {
                    self.tail.push(fp);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash_index::fingerprint;

    fn db() -> sled::Db {
        sled::Config::new().temporary(true).open().unwrap()
    }

    fn hash_of(height: u64, fork: u64) -> [u8; 32] {
        let mut x =
            (height ^ fork << 40).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            x ^= x >> 29;
            x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            chunk.copy_from_slice(&x.to_be_bytes());
        }
        out
    }

    fn add(db: &sled::Db, index: &mut Index, from: u64, n: u64, fork: u64) {
        let entries = (from..from + n)
            .map(|h| (fingerprint(&hash_of(h, fork)), h))
            .collect();
        let mut batch = sled::Batch::default();
        let update = index.stage(db, &mut batch, entries, from).unwrap();
        db.apply_batch(batch).unwrap();
        index.apply(update);
    }

    fn mark(db: &sled::Db) -> Option<u64> {
        crate::store::read_u64(db, keys::HASH_INDEX_MARK).unwrap()
    }

    #[test]
    fn batches_join_the_tail_until_it_fills_then_become_one_run() {
        let db = db();
        let mut index = Index::with_limit(1000);
        let mut height = 1;
        for n in [300, 300, 300] {
            add(&db, &mut index, height, n, 0);
            height += n;
        }
        // 900 in the tail: nothing written, no mark yet.
        assert_eq!(index.tail().len(), 900);
        assert_eq!(index.runs().runs(), 0);
        assert_eq!(mark(&db), None);
        assert!(
            db.scan_prefix([crate::hash_index::RUN_META])
                .next()
                .is_none()
        );
        // The batch that reaches the limit writes tail and batch as one run.
        add(&db, &mut index, height, 300, 0);
        height += 300;
        assert_eq!(index.tail().len(), 0);
        assert_eq!(index.tail().indexed(), 1200);
        assert_eq!(mark(&db), Some(1200));
        assert_eq!(index.runs().runs(), 1);
        assert_eq!(index.runs().entries(), 1200);
        add(&db, &mut index, height, 5, 0);
        height += 5;
        for h in 1..height {
            assert!(
                index.candidates(&db, &hash_of(h, 0)).unwrap().contains(&h),
                "{h}"
            );
        }
        assert!(index.candidates(&db, &hash_of(1, 7)).unwrap().is_empty());
        // The runs on disk are the ones in memory.
        assert!(HashIndex::load(&db).unwrap().same_runs(index.runs()));
    }

    #[test]
    fn a_batch_below_the_tails_end_replaces_what_it_covers() {
        let db = db();
        let mut index = Index::with_limit(1000);
        add(&db, &mut index, 1, 100, 0);
        // 61..=100 again on another fork ("a batch whose flush failed" left
        // the first ones in memory).
        add(&db, &mut index, 61, 40, 1);
        assert_eq!(index.tail().len(), 100);
        assert!(index.candidates(&db, &hash_of(70, 0)).unwrap().is_empty());
        assert_eq!(index.candidates(&db, &hash_of(70, 1)).unwrap(), [70]);
        assert_eq!(index.candidates(&db, &hash_of(60, 0)).unwrap(), [60]);
        assert_eq!(mark(&db), None);
    }

    #[test]
    fn a_batch_at_or_below_the_mark_lowers_it() {
        let db = db();
        let mut index = Index::with_limit(100);
        add(&db, &mut index, 1, 150, 0);
        assert_eq!(mark(&db), Some(150));
        add(&db, &mut index, 151, 10, 0);
        // Heights 141..=150 again: the runs hold stale entries for them
        // (tolerated: lookups check the stored header), the mark comes down
        // so that a restart rebuilds them into the tail.
        add(&db, &mut index, 141, 10, 1);
        assert_eq!(mark(&db), Some(140));
        assert_eq!(index.tail().indexed(), 140);
        assert_eq!(index.tail().len(), 10);
        assert_eq!(index.candidates(&db, &hash_of(145, 1)).unwrap(), [145]);
        assert!(index.candidates(&db, &hash_of(155, 0)).unwrap().is_empty());
        // Filling the tail writes it; the merge of the next runs drops the
        // stale entries.
        add(&db, &mut index, 151, 95, 1);
        assert_eq!(mark(&db), Some(245));
        assert_eq!(index.candidates(&db, &hash_of(200, 1)).unwrap(), [200]);
    }

    #[test]
    fn colliding_fingerprints_are_all_candidates() {
        let mut tail = Tail::new(10);
        tail.push(7);
        tail.push(8);
        tail.push(7);
        tail.push(7);
        let mut out = Vec::new();
        tail.candidates(7, &mut out);
        out.sort_unstable();
        assert_eq!(out, [11, 13, 14]);
        tail.truncate(3);
        out.clear();
        tail.candidates(7, &mut out);
        out.sort_unstable();
        assert_eq!(out, [11, 13]);
        tail.truncate(1);
        out.clear();
        tail.candidates(7, &mut out);
        assert_eq!(out, [11]);
        out.clear();
        tail.candidates(8, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn the_lookup_map_is_built_by_the_first_lookup_and_kept_in_step() {
        let all = |tail: &Tail, fps: std::ops::Range<u64>| -> Vec<Vec<u64>> {
            fps.map(|fp| {
                let mut out = Vec::new();
                tail.candidates(fp, &mut out);
                out.sort_unstable();
                out
            })
            .collect()
        };
        // `early` is looked up after every step, `late` only at the end:
        // they must answer alike.
        let mut early = Tail::new(100);
        let mut late = Tail::new(100);
        assert!(!early.has_lookup());
        let steps: [&dyn Fn(&mut Tail); 5] = [
            &|t| (0..40).for_each(|i| t.push(i % 30)),
            &|t| t.truncate(25),
            &|t| (0..10).for_each(|i| t.push(i * 3)),
            &|t| t.truncate(0),
            &|t| (5..20).for_each(|i| t.push(i)),
        ];
        for step in steps {
            step(&mut early);
            step(&mut late);
            let _ = all(&early, 0..40);
            assert!(early.has_lookup());
        }
        assert!(!late.has_lookup());
        assert_eq!(all(&early, 0..40), all(&late, 0..40));
        assert_eq!(all(&late, 5..6), [vec![101]]);
        // Emptying the tail drops the map; pushes alone do not rebuild it.
        early.reset(500);
        early.push(9);
        assert!(!early.has_lookup());
        assert_eq!(all(&early, 9..10), [vec![501]]);
    }

    #[test]
    fn a_batch_beyond_the_tails_end_is_refused() {
        let db = db();
        let mut index = Index::with_limit(1000);
        add(&db, &mut index, 1, 10, 0);
        let mut batch = sled::Batch::default();
        let err = index.stage(&db, &mut batch, vec![(1, 12)], 12).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("gap"), "{err}");
        // 11, right after the tail, is fine.
        add(&db, &mut index, 11, 1, 0);
        assert_eq!(index.tail().len(), 11);
    }
}
