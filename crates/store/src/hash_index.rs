//! The header hash index (format 3): header hash → height, kept as a few
//! sorted *runs* rather than one sled key per header.
//!
//! Why: sled's cost is per key, and random keys are its worst case (every
//! insert lands in another leaf, and leaves split every few inserts). One key
//! per header made the hash index about half of the cost of storing a header
//! batch. A run is written once, sorted, in pages of [`PAGE_ENTRIES`]
//! entries, so a batch of `n` headers costs `⌈n / PAGE_ENTRIES⌉ + 1` keys.
//!
//! Runs are merged by size tier, like an LSM tree: a run's level is
//! `⌊log₄(entries / LEVEL_BASE)⌋`, and whenever [`MERGE_FANIN`] runs share a
//! level they are merged into one (of a higher level). Each entry is thus
//! rewritten about `log₄(headers / LEVEL_BASE)` times (≈ 8 for 10 million
//! headers), and at most `MERGE_FANIN - 1` runs exist per level, so a lookup
//! reads one page from each of a few dozen runs at most.
//!
//! An entry is `be64(fingerprint) ‖ be64(height)` where the fingerprint is
//! the hash's first 8 bytes; entries are sorted by fingerprint then height.
//! A lookup yields *candidate* heights; the caller keeps the one whose stored
//! header has the hash (so fingerprint collisions, and entries left by a
//! batch whose flush failed, can never give a wrong answer). The index never
//! deletes a header's entry, so runs need no order among themselves. What
//! such a batch left is dropped by merges: entries of older runs at or above
//! the new batch's first height, and all but one of identical entries (its
//! entries for the heights the next batch indexes again). `check_integrity`
//! reads every entry ([`HashIndex::visit_entries`]): each header must have
//! its own, the others are stale.
//!
//! Keys: `0x0A ‖ be64(run) ‖ be64(page)` → entries; `0x0B ‖ be64(run)` →
//! `be64(entries) ‖ be64(first fingerprint of each page)…`. A run, its pages
//! and the removal of the runs it replaces are staged in the same sled batch
//! as the headers, so the index is exactly as durable as they are.

use crate::StoreError;
use crate::keys;

/// Tag of a run's pages: `RUN_PAGE ‖ be64(run) ‖ be64(page)`.
pub(crate) const RUN_PAGE: u8 = 0x0A;
/// Tag of a run's directory: `RUN_META ‖ be64(run)`.
pub(crate) const RUN_META: u8 = 0x0B;
/// Entries per page (64 KiB pages: below sled's 128 KiB blob threshold).
pub(crate) const PAGE_ENTRIES: usize = 4096;
/// Runs of one level merged together.
pub(crate) const MERGE_FANIN: usize = 4;
/// Runs of up to `4 * LEVEL_BASE - 1` entries are level 0.
const LEVEL_BASE: u64 = 64;
/// Bytes per entry: fingerprint and height.
const ENTRY: usize = 16;

/// One entry: `(fingerprint, height)`, ordered as stored.
pub(crate) type Entry = (u64, u64);

/// The fingerprint of a header hash: its first 8 bytes.
pub(crate) fn fingerprint(hash: &[u8; 32]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    u64::from_be_bytes(first)
}

fn page_key(run: u64, page: usize) -> [u8; 17] {
    let mut key = [0u8; 17];
    key[..9].copy_from_slice(&keys::by_u64(RUN_PAGE, run));
    key[9..].copy_from_slice(&(page as u64).to_be_bytes());
    key
}

/// A run's directory, as kept in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Run {
    id: u64,
    entries: u64,
    /// The first fingerprint of each page.
    firsts: Vec<u64>,
}

impl Run {
    fn level(&self) -> u32 {
        (self.entries / LEVEL_BASE).max(1).ilog(4)
    }

    fn decode(key: &[u8], value: &[u8]) -> Result<Run, StoreError> {
        let corrupt = |what: String| StoreError::corrupt(key, what);
        let id = keys::u64_at(key, 1)
            .filter(|_| key.len() == 9)
            .ok_or_else(|| corrupt("hash index run key is not tag ‖ be64".to_owned()))?;
        let entries = keys::u64_at(value, 0)
            .filter(|&n| n > 0)
            .ok_or_else(|| corrupt("hash index run without an entry count".to_owned()))?;
        let pages = usize::try_from(entries.div_ceil(PAGE_ENTRIES as u64))
            .map_err(|_| corrupt(format!("hash index run of {entries} entries")))?;
        if value.len() != 8 + 8 * pages {
            return Err(corrupt(format!(
                "hash index run of {entries} entries has a {}-byte directory, expected {}",
                value.len(),
                8 + 8 * pages
            )));
        }
        let firsts: Vec<u64> = value[8..]
            .chunks_exact(8)
            .filter_map(|b| keys::u64_at(b, 0))
            .collect();
        if firsts.windows(2).any(|w| w[0] > w[1]) {
            return Err(corrupt("hash index run pages are not sorted".to_owned()));
        }
        Ok(Run {
            id,
            entries,
            firsts,
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut value = Vec::with_capacity(8 + 8 * self.firsts.len());
        value.extend_from_slice(&self.entries.to_be_bytes());
        for first in &self.firsts {
            value.extend_from_slice(&first.to_be_bytes());
        }
        value
    }

    /// Entries a page must hold.
    fn page_len(&self, page: usize) -> usize {
        let before = page as u64 * PAGE_ENTRIES as u64;
        (self.entries - before).min(PAGE_ENTRIES as u64) as usize
    }

    fn read_page(&self, db: &sled::Db, page: usize) -> Result<sled::IVec, StoreError> {
        let key = page_key(self.id, page);
        let value = db
            .get(key)
            .map_err(StoreError::engine("reading the hash index"))?
            .ok_or_else(|| StoreError::corrupt(&key, "hash index page missing"))?;
        let expected = self.page_len(page) * ENTRY;
        if value.len() != expected {
            return Err(StoreError::corrupt(
                &key,
                format!(
                    "hash index page of {} bytes, expected {expected}",
                    value.len()
                ),
            ));
        }
        Ok(value)
    }

    /// Heights of this run's entries with `fp`, appended to `out`.
    fn candidates(&self, db: &sled::Db, fp: u64, out: &mut Vec<u64>) -> Result<(), StoreError> {
        // The last page starting below `fp` may end with it; later pages
        // starting at `fp` hold more of it.
        let mut page = self
            .firsts
            .partition_point(|&first| first < fp)
            .saturating_sub(1);
        while self.firsts.get(page).is_some_and(|&first| first <= fp) {
            let bytes = self.read_page(db, page)?;
            let n = bytes.len() / ENTRY;
            let fp_at = |i: usize| keys::u64_at(&bytes, i * ENTRY).unwrap_or(u64::MAX);
            let (mut lo, mut hi) = (0, n);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if fp_at(mid) < fp {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            let mut i = lo;
            while i < n && fp_at(i) == fp {
                out.extend(keys::u64_at(&bytes, i * ENTRY + 8));
                i += 1;
            }
            if i < n {
                break;
            }
            page += 1;
        }
        Ok(())
    }

    /// Gives `visit` each page's number and entries, in order, holding one
    /// page in memory at a time.
    fn read_pages(
        &self,
        db: &sled::Db,
        mut visit: impl FnMut(usize, &[Entry]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut entries = Vec::with_capacity(PAGE_ENTRIES);
        for page in 0..self.firsts.len() {
            let bytes = self.read_page(db, page)?;
            entries.clear();
            entries.extend(
                bytes
                    .chunks_exact(ENTRY)
                    .filter_map(|e| Some((keys::u64_at(e, 0)?, keys::u64_at(e, 8)?))),
            );
            visit(page, &entries)?;
        }
        Ok(())
    }

    fn read_all(&self, db: &sled::Db, out: &mut Vec<Entry>) -> Result<(), StoreError> {
        self.read_pages(db, |_, page| {
            out.extend_from_slice(page);
            Ok(())
        })
    }
}

/// The runs of the hash index (loaded at open, replaced after each commit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HashIndex {
    runs: Vec<Run>,
}

impl HashIndex {
    /// Reads every run's directory.
    pub(crate) fn load(db: &sled::Db) -> Result<HashIndex, StoreError> {
        let mut runs = Vec::new();
        for row in db.scan_prefix([RUN_META]) {
            let (key, value) = row.map_err(StoreError::engine("reading the hash index"))?;
            runs.push(Run::decode(&key, &value)?);
        }
        Ok(HashIndex { runs })
    }

    /// Entries in every run.
    #[cfg(test)]
    pub(crate) fn entries(&self) -> u64 {
        self.runs.iter().map(|r| r.entries).sum()
    }

    /// Number of runs.
    #[cfg(test)]
    pub(crate) fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Whether both hold the same runs, in whatever order.
    pub(crate) fn same_runs(&self, other: &HashIndex) -> bool {
        fn by_id(index: &HashIndex) -> Vec<&Run> {
            let mut runs: Vec<&Run> = index.runs.iter().collect();
            runs.sort_unstable_by_key(|run| run.id);
            runs
        }
        by_id(self) == by_id(other)
    }

    /// Gives `visit` every entry of every run, run by run and in each run's
    /// order, reading one page at a time. Checks what lookups rely on to
    /// find each entry: every run is sorted, and its directory holds the
    /// first fingerprint of each of its pages.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if a page is missing, of the wrong length,
    /// out of order, or does not start with the fingerprint its run's
    /// directory gives.
    pub(crate) fn visit_entries(
        &self,
        db: &sled::Db,
        mut visit: impl FnMut(Entry),
    ) -> Result<(), StoreError> {
        for run in &self.runs {
            let mut previous: Option<Entry> = None;
            run.read_pages(db, |page, entries| {
                let key = page_key(run.id, page);
                let first = entries.first().map(|&(fp, _)| fp);
                let listed = run.firsts.get(page).copied();
                if first != listed {
                    return Err(StoreError::corrupt(
                        &key,
                        format!(
                            "hash index page {page} of run {} starts with fingerprint {:#018x}, its directory says {:#018x}",
                            run.id,
                            first.unwrap_or(0),
                            listed.unwrap_or(0)
                        ),
                    ));
                }
                for &entry in entries {
                    if let Some(before) = previous.filter(|&before| entry < before) {
                        return Err(StoreError::corrupt(
                            &key,
                            format!(
                                "hash index entry ({:#018x}, {}) of run {} after ({:#018x}, {}): the run is not sorted",
                                entry.0, entry.1, run.id, before.0, before.1
                            ),
                        ));
                    }
                    previous = Some(entry);
                    visit(entry);
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Candidate heights of `hash`, newest runs first.
    pub(crate) fn candidates(
        &self,
        db: &sled::Db,
        hash: &[u8; 32],
    ) -> Result<Vec<u64>, StoreError> {
        let fp = fingerprint(hash);
        let mut out = Vec::new();
        for run in self.runs.iter().rev() {
            run.candidates(db, fp, &mut out)?;
        }
        Ok(out)
    }

    /// Stages `entries` (the hashes and heights of a header batch starting at
    /// `first_height`) as a new run, then the merges it triggers; returns the
    /// index as it is once `batch` is applied. Entries of older runs at or
    /// above `first_height` can only come from a batch whose flush failed;
    /// merges drop them. Merges also keep one of identical entries: such a
    /// batch and the one that stores its heights again give two.
    pub(crate) fn stage(
        &self,
        db: &sled::Db,
        batch: &mut sled::Batch,
        mut entries: Vec<Entry>,
        first_height: u64,
    ) -> Result<HashIndex, StoreError> {
        let mut next = self.clone();
        if entries.is_empty() {
            return Ok(next);
        }
        entries.sort_unstable();
        let mut next_id = self.runs.iter().map(|r| r.id + 1).max().unwrap_or(0);
        // Entries of the runs written by this call (not in sled yet).
        let mut written: Vec<(u64, Vec<Entry>)> = Vec::new();
        next.runs.push(write_run(batch, next_id, &entries));
        written.push((next_id, entries));
        next_id += 1;
        while let Some(level) = next.full_level() {
            let (merged, kept): (Vec<Run>, Vec<Run>) = std::mem::take(&mut next.runs)
                .into_iter()
                .partition(|r| r.level() == level);
            let (merged, extra) = merged.split_at(MERGE_FANIN);
            next.runs = kept;
            next.runs.extend_from_slice(extra);
            let mut all = Vec::new();
            for run in merged {
                if let Some(at) = written.iter().position(|(id, _)| *id == run.id) {
                    all.append(&mut written.swap_remove(at).1);
                } else {
                    let mut old = Vec::new();
                    run.read_all(db, &mut old)?;
                    all.extend(old.into_iter().filter(|&(_, h)| h < first_height));
                }
                remove_run(batch, run);
            }
            all.sort_unstable();
            all.dedup();
            if all.is_empty() {
                continue;
            }
            next.runs.push(write_run(batch, next_id, &all));
            written.push((next_id, all));
            next_id += 1;
        }
        Ok(next)
    }

    /// A level with at least [`MERGE_FANIN`] runs, the lowest first.
    fn full_level(&self) -> Option<u32> {
        let mut levels: Vec<u32> = self.runs.iter().map(Run::level).collect();
        levels.sort_unstable();
        levels
            .chunk_by(|a, b| a == b)
            .find(|same| same.len() >= MERGE_FANIN)
            .map(|same| same[0])
    }
}

/// Stages a run of sorted `entries` under `id`.
fn write_run(batch: &mut sled::Batch, id: u64, entries: &[Entry]) -> Run {
    let mut firsts = Vec::with_capacity(entries.len().div_ceil(PAGE_ENTRIES));
    for (page, chunk) in entries.chunks(PAGE_ENTRIES).enumerate() {
        firsts.push(chunk[0].0);
        let mut value = Vec::with_capacity(chunk.len() * ENTRY);
        for (fp, height) in chunk {
            value.extend_from_slice(&fp.to_be_bytes());
            value.extend_from_slice(&height.to_be_bytes());
        }
        batch.insert(&page_key(id, page)[..], value);
    }
    let run = Run {
        id,
        entries: entries.len() as u64,
        firsts,
    };
    batch.insert(&keys::by_u64(RUN_META, id)[..], run.encode());
    run
}

/// Stages the removal of a run's directory and pages.
fn remove_run(batch: &mut sled::Batch, run: &Run) {
    batch.remove(&keys::by_u64(RUN_META, run.id)[..]);
    for page in 0..run.firsts.len() {
        batch.remove(&page_key(run.id, page)[..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> sled::Db {
        sled::Config::new().temporary(true).open().unwrap()
    }

    fn hash_of(height: u64) -> [u8; 32] {
        // A cheap deterministic scramble standing in for a header hash.
        let mut x = height.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            x ^= x >> 29;
            x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            chunk.copy_from_slice(&x.to_be_bytes());
        }
        out
    }

    /// Stages and applies one batch of heights `from..from + n`.
    fn add(db: &sled::Db, index: HashIndex, from: u64, n: u64) -> HashIndex {
        let entries = (from..from + n)
            .map(|h| (fingerprint(&hash_of(h)), h))
            .collect();
        let mut batch = sled::Batch::default();
        let next = index.stage(db, &mut batch, entries, from).unwrap();
        db.apply_batch(batch).unwrap();
        next
    }

    #[test]
    fn every_hash_is_found_and_runs_stay_few() {
        let db = db();
        let mut index = HashIndex::default();
        let mut height = 1;
        // Batches of varying sizes, as header sync's group commits are.
        for (i, n) in [50u64, 1, 4096, 300, 7, 5000, 50, 50, 50, 50, 2048]
            .iter()
            .cycle()
            .take(60)
            .enumerate()
        {
            index = add(&db, index, height, *n);
            height += n;
            let levels = index.runs.iter().map(Run::level).max().unwrap_or(0) as usize + 1;
            assert!(
                index.runs() <= (MERGE_FANIN - 1) * levels,
                "batch {i}: {} runs over {levels} levels",
                index.runs()
            );
        }
        assert_eq!(index.entries(), height - 1);
        for h in 1..height {
            assert!(
                index.candidates(&db, &hash_of(h)).unwrap().contains(&h),
                "{h}"
            );
        }
        assert!(index.candidates(&db, &[0xAB; 32]).unwrap().is_empty());
        // What is on disk is what was kept in memory.
        assert_eq!(HashIndex::load(&db).unwrap(), index);
        // Merged runs left no pages or directories behind.
        let pages: usize = index.runs.iter().map(|r| r.firsts.len()).sum();
        assert_eq!(db.scan_prefix([RUN_PAGE]).count(), pages);
        assert_eq!(db.scan_prefix([RUN_META]).count(), index.runs());
    }

    #[test]
    fn a_fingerprint_spanning_pages_is_found_in_each() {
        let db = db();
        let fp = 0x0102_0304_0506_0708;
        // 3 pages of the same fingerprint between two others.
        let mut entries: Vec<Entry> = (1..=3 * PAGE_ENTRIES as u64).map(|h| (fp, h)).collect();
        entries.push((fp - 1, 1_000_000));
        entries.push((fp + 1, 1_000_001));
        let mut batch = sled::Batch::default();
        let index = HashIndex::default()
            .stage(&db, &mut batch, entries, 1)
            .unwrap();
        db.apply_batch(batch).unwrap();
        let mut hash = [0u8; 32];
        hash[..8].copy_from_slice(&fp.to_be_bytes());
        let mut found = index.candidates(&db, &hash).unwrap();
        found.sort_unstable();
        assert_eq!(found, (1..=3 * PAGE_ENTRIES as u64).collect::<Vec<_>>());
        hash[..8].copy_from_slice(&(fp + 1).to_be_bytes());
        assert_eq!(index.candidates(&db, &hash).unwrap(), [1_000_001]);
        hash[..8].copy_from_slice(&(fp - 1).to_be_bytes());
        assert_eq!(index.candidates(&db, &hash).unwrap(), [1_000_000]);
    }

    #[test]
    fn merges_drop_entries_at_or_above_the_new_batch() {
        let db = db();
        // Heights 1..=300, then a batch "whose flush failed" at 301..=400,
        // then the same heights stored again (other hashes): a merge must
        // keep only the new entries for 301..=400.
        let mut index = add(&db, HashIndex::default(), 1, 300);
        index = add(&db, index, 301, 100);
        let stale = index.entries();
        for _ in 0..MERGE_FANIN {
            let entries = (301..=400).map(|h| (fingerprint(&hash_of(h + 1_000_000)), h));
            let mut batch = sled::Batch::default();
            index = index
                .stage(&db, &mut batch, entries.collect(), 301)
                .unwrap();
            db.apply_batch(batch).unwrap();
        }
        assert!(index.entries() < stale + MERGE_FANIN as u64 * 100);
        assert!(index.candidates(&db, &hash_of(350)).unwrap().is_empty());
        assert!(index.candidates(&db, &hash_of(200)).unwrap().contains(&200));
    }

    #[test]
    fn merges_keep_one_of_identical_entries() {
        let db = db();
        // Heights 1..=40, a batch "whose flush failed" at 35..=60 (six
        // heights stored already), the next batch storing 41..=70 again, and
        // a fourth level-0 run: the merge of the four keeps one entry each.
        let mut index = add(&db, HashIndex::default(), 1, 40);
        index = add(&db, index, 35, 26);
        index = add(&db, index, 41, 30);
        assert_eq!(index.entries(), 96);
        index = add(&db, index, 71, 10);
        assert_eq!(index.runs(), 1);
        assert_eq!(index.entries(), 80);
        let mut seen = Vec::new();
        index.visit_entries(&db, |entry| seen.push(entry)).unwrap();
        let mut expected: Vec<Entry> = (1..=80).map(|h| (fingerprint(&hash_of(h)), h)).collect();
        expected.sort_unstable();
        assert_eq!(seen, expected);
    }

    #[test]
    fn visiting_gives_every_entry_and_checks_the_runs() {
        let db = db();
        let mut index = add(&db, HashIndex::default(), 1, 5_000);
        index = add(&db, index, 5_001, 30);
        let mut seen = Vec::new();
        index.visit_entries(&db, |entry| seen.push(entry)).unwrap();
        assert_eq!(seen.len(), 5_030);
        // Run by run, each sorted.
        assert!(seen[..5_000].is_sorted() && seen[5_000..].is_sorted());
        seen.sort_unstable_by_key(|&(_, h)| h);
        assert!(
            seen.iter()
                .zip(1..)
                .all(|(&(fp, h), at)| h == at && fp == fingerprint(&hash_of(h)))
        );

        // A page out of order (same length, same first entry).
        let page = db.get(page_key(1, 0)).unwrap().unwrap();
        let mut swapped = page.to_vec();
        swapped[ENTRY..2 * ENTRY].copy_from_slice(&page[2 * ENTRY..3 * ENTRY]);
        swapped[2 * ENTRY..3 * ENTRY].copy_from_slice(&page[ENTRY..2 * ENTRY]);
        db.insert(page_key(1, 0), swapped).unwrap();
        let error = index.visit_entries(&db, |_| {}).unwrap_err();
        assert!(error.to_string().contains("not sorted"), "{error}");
        db.insert(page_key(1, 0), page).unwrap();

        // A directory naming another first fingerprint for page 1 of run 0.
        let mut run = index.runs[0].clone();
        run.firsts[1] -= 1;
        db.insert(keys::by_u64(RUN_META, 0), run.encode()).unwrap();
        let error = HashIndex::load(&db)
            .unwrap()
            .visit_entries(&db, |_| {})
            .unwrap_err();
        assert!(error.to_string().contains("directory says"), "{error}");
    }

    #[test]
    fn malformed_runs_are_corrupt() {
        let db = db();
        let index = add(&db, HashIndex::default(), 1, 10);
        db.insert(keys::by_u64(RUN_META, 0), &[0u8; 3][..]).unwrap();
        assert!(matches!(
            HashIndex::load(&db),
            Err(StoreError::Corrupt { .. })
        ));
        db.insert(keys::by_u64(RUN_META, 0), index.runs[0].encode())
            .unwrap();
        db.insert(page_key(0, 0), &[1u8; 17][..]).unwrap();
        assert!(matches!(
            index.candidates(&db, &hash_of(3)),
            Err(StoreError::Corrupt { .. })
        ));
        db.remove(page_key(0, 0)).unwrap();
        assert!(matches!(
            index.candidates(&db, &hash_of(3)),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
