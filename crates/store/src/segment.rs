//! Header segments (format 2, rows without commits since format 4, in the
//! header log since format 5): the consecutive header rows of (part of) one
//! `save_headers` or `save_bare_headers` batch stored as one value, because
//! sled's cost is per key, not per byte.
//!
//! Key: `HEADER_SEGMENT || be64(first height)`; sled's value points at the
//! segment's bytes in the header log (`header_log.rs`). The bytes:
//!
//! ```text
//! be32(rows)                      1 ..= MAX_SEGMENT_HEADERS
//! rows × {
//!     header hash (32)            the BlockMeta's block_id
//!     varint(len) raw::Header     prost, length-delimited
//!     varint(len) raw::Commit     prost, length-delimited; len 0: no commit
//! }                               row i is the header at height first + i
//! ```
//!
//! with nothing after the last row. A commit of length 0 means the header was
//! stored without its commit (a headers-only batch): a real commit never
//! encodes to 0 bytes, since its height is at least 1 and is encoded. Segments are written once and never
//! rewritten (body sizes live under their own key). Every decoding step is
//! checked: a bad count, a length running past the value, trailing bytes, a
//! message that does not decode or validate, or a header of another height
//! gives [`StoreError::Corrupt`] naming the segment key, never a panic.

use headway_wire::{Commit, Hash, Header, raw};
use prost::Message as _;

use crate::header_log::HeaderLog;
use crate::keys;
use crate::store::decode_raw;
use crate::{Store, StoreError};

/// The most header rows one segment holds, so that a lookup walks (and a
/// reader copies) a bounded value. Batches longer than this are split.
pub(crate) const MAX_SEGMENT_HEADERS: usize = 256;

/// Bytes of the row count at the start of a segment value.
const COUNT_LEN: usize = 4;

/// Builds the value of one segment.
pub(crate) struct SegmentBuilder {
    first: u64,
    rows: u32,
    value: Vec<u8>,
}

impl SegmentBuilder {
    /// An empty segment whose first row will be the header at `first`.
    pub(crate) fn new(first: u64) -> Self {
        let mut value = Vec::with_capacity(1024);
        value.extend_from_slice(&0u32.to_be_bytes());
        Self {
            first,
            rows: 0,
            value,
        }
    }

    /// Rows so far.
    pub(crate) fn len(&self) -> usize {
        self.rows as usize
    }

    /// Appends the row of the next height, with its commit or without one.
    pub(crate) fn push(&mut self, hash: &Hash, header: &Header, commit: Option<&Commit>) {
        self.value.extend_from_slice(&hash.0);
        headway_wire::encoded::put_header_length_delimited(&mut self.value, header);
        match commit {
            Some(commit) => {
                // Encoding into a Vec cannot run out of space.
                let _ = raw::Commit::from(commit).encode_length_delimited(&mut self.value);
            }
            // A zero length: no commit.
            None => self.value.push(0),
        }
        self.rows += 1;
    }

    /// The key and the bytes to store (`None` if no row was pushed).
    pub(crate) fn finish(mut self) -> Option<([u8; 9], Vec<u8>)> {
        if self.rows == 0 {
            return None;
        }
        self.value[..COUNT_LEN].copy_from_slice(&self.rows.to_be_bytes());
        Some((keys::by_u64(keys::HEADER_SEGMENT, self.first), self.value))
    }
}

/// One row of a segment, still encoded.
#[derive(Clone, Copy)]
pub(crate) struct Row<'a> {
    pub(crate) height: u64,
    pub(crate) hash: Hash,
    header: &'a [u8],
    /// Empty when the header was stored without its commit.
    commit: &'a [u8],
}

impl Row<'_> {
    /// Whether the header was stored with its commit.
    pub(crate) fn has_commit(&self) -> bool {
        !self.commit.is_empty()
    }
}

/// A stored segment.
pub(crate) struct Segment {
    pub(crate) key: sled::IVec,
    pub(crate) first: u64,
    value: Vec<u8>,
}

impl Segment {
    /// Reads the segment whose sled row is `key` → `pointer` from the log
    /// (checks the key's shape and the pointer; the rows are checked as
    /// they are read).
    pub(crate) fn load(
        log: &HeaderLog,
        key: sled::IVec,
        pointer: &[u8],
    ) -> Result<Self, StoreError> {
        let first = Self::first_of(&key)?;
        let value = log.read(&key, pointer)?;
        Ok(Self { key, first, value })
    }

    /// A segment from its bytes (tests build them without a log).
    #[cfg(test)]
    pub(crate) fn new(key: sled::IVec, value: Vec<u8>) -> Result<Self, StoreError> {
        let first = Self::first_of(&key)?;
        Ok(Self { key, first, value })
    }

    /// The first height of the segment stored under `key`.
    pub(crate) fn first_of(key: &[u8]) -> Result<u64, StoreError> {
        match (key.len(), keys::u64_at(key, 1)) {
            // Heights start at 1, and every height of the segment must fit in
            // a u64 (so height arithmetic on it cannot overflow).
            (9, Some(first)) if first > 0 && first <= u64::MAX - MAX_SEGMENT_HEADERS as u64 => {
                Ok(first)
            }
            _ => Err(StoreError::corrupt(key, "malformed header segment key")),
        }
    }

    /// The number of rows the segment says it holds.
    pub(crate) fn len(&self) -> Result<u64, StoreError> {
        let count = self
            .value
            .get(..COUNT_LEN)
            .and_then(|b| <[u8; COUNT_LEN]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or_else(|| self.corrupt("header segment is shorter than its row count"))?;
        if count == 0 || count as usize > MAX_SEGMENT_HEADERS {
            return Err(self.corrupt(format!(
                "header segment holds {count} rows, expected 1..={MAX_SEGMENT_HEADERS}"
            )));
        }
        Ok(u64::from(count))
    }

    /// The height of the last row.
    pub(crate) fn last_height(&self) -> Result<u64, StoreError> {
        Ok(self.first + self.len()? - 1)
    }

    /// Every row, checking the whole value (no trailing bytes).
    pub(crate) fn rows(&self) -> Result<Vec<Row<'_>>, StoreError> {
        let count = self.len()?;
        let mut rest = &self.value[COUNT_LEN..];
        let mut rows = Vec::with_capacity(count as usize);
        for index in 0..count {
            rows.push(self.next_row(&mut rest, self.first + index)?);
        }
        if !rest.is_empty() {
            return Err(self.corrupt(format!(
                "{} bytes after the last row of the header segment",
                rest.len()
            )));
        }
        Ok(rows)
    }

    /// The row of `height`, walking the rows before it.
    pub(crate) fn row(&self, height: u64) -> Result<Row<'_>, StoreError> {
        let count = self.len()?;
        if height < self.first || height - self.first >= count {
            return Err(self.corrupt(format!(
                "header {height} missing below the header height (segment holds {}..={})",
                self.first,
                self.first + count - 1
            )));
        }
        let mut rest = &self.value[COUNT_LEN..];
        let mut row = self.next_row(&mut rest, self.first)?;
        for at in self.first + 1..=height {
            row = self.next_row(&mut rest, at)?;
        }
        Ok(row)
    }

    /// Decodes the header of a row (and checks its height).
    pub(crate) fn header(&self, row: &Row<'_>) -> Result<Header, StoreError> {
        let header: Header = decode_raw::<raw::Header, Header>(&self.key, row.header, "header")?;
        if header.height != row.height {
            return Err(self.corrupt(format!(
                "row for height {} holds the header of height {}",
                row.height, header.height
            )));
        }
        Ok(header)
    }

    /// The row's stored encodings of its header and of its commit (`None`:
    /// stored without one), undecoded.
    pub(crate) fn encoded<'a>(row: &Row<'a>) -> (&'a [u8], Option<&'a [u8]>) {
        (row.header, row.has_commit().then_some(row.commit))
    }

    /// Decodes the commit of a row (`None`: stored without one).
    pub(crate) fn commit(&self, row: &Row<'_>) -> Result<Option<Commit>, StoreError> {
        if !row.has_commit() {
            return Ok(None);
        }
        decode_raw::<raw::Commit, Commit>(&self.key, row.commit, "commit").map(Some)
    }

    fn next_row<'a>(&self, rest: &mut &'a [u8], height: u64) -> Result<Row<'a>, StoreError> {
        let Some((hash, tail)) = rest.split_first_chunk::<32>() else {
            return Err(self.corrupt(format!("header segment ends inside row {height}")));
        };
        *rest = tail;
        let header = self.delimited(rest, height)?;
        let commit = self.delimited(rest, height)?;
        Ok(Row {
            height,
            hash: Hash(*hash),
            header,
            commit,
        })
    }

    /// Splits one length-delimited message off `rest`.
    fn delimited<'a>(&self, rest: &mut &'a [u8], height: u64) -> Result<&'a [u8], StoreError> {
        let len = prost::encoding::decode_varint(rest)
            .map_err(|e| self.corrupt(format!("row {height}: bad length: {e}")))?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > rest.len() {
            return Err(self.corrupt(format!(
                "row {height}: a {len}-byte message runs past the header segment"
            )));
        }
        let (message, tail) = rest.split_at(len);
        *rest = tail;
        Ok(message)
    }

    fn corrupt(&self, what: impl Into<String>) -> StoreError {
        StoreError::corrupt(&self.key, what)
    }
}

/// The segment holding `height` (the last one starting at or below it), if any.
pub(crate) fn find(
    db: &sled::Db,
    log: &HeaderLog,
    height: u64,
) -> Result<Option<Segment>, StoreError> {
    let from = keys::by_u64(keys::HEADER_SEGMENT, 0);
    let to = keys::by_u64(keys::HEADER_SEGMENT, height);
    db.range(from..=to)
        .next_back()
        .transpose()
        .map_err(StoreError::engine("reading a header segment"))?
        .map(|(key, pointer)| Segment::load(log, key, &pointer))
        .transpose()
}

/// The segment holding `height`, which must exist (`height <= header_height`).
pub(crate) fn find_stored(
    db: &sled::Db,
    log: &HeaderLog,
    height: u64,
) -> Result<Segment, StoreError> {
    find(db, log, height)?.ok_or_else(|| {
        StoreError::corrupt(
            &keys::by_u64(keys::HEADER_SEGMENT, height),
            "no header segment holds a height below the header height",
        )
    })
}

/// Stages the removal of every segment starting at or above `first` (only a
/// batch that reached sled but whose flush failed can leave one above the
/// header height); normally one range seek that finds nothing.
pub(crate) fn remove_from(
    db: &sled::Db,
    first: u64,
    batch: &mut sled::Batch,
) -> Result<(), StoreError> {
    let from = keys::by_u64(keys::HEADER_SEGMENT, first).to_vec();
    for stale in db.range(from..vec![keys::HEADER_SEGMENT + 1]).keys() {
        batch.remove(stale.map_err(StoreError::engine("reading a header segment"))?);
    }
    Ok(())
}

/// The key and pointer of the last stored segment, if any.
pub(crate) fn last_pointer(db: &sled::Db) -> Result<Option<(sled::IVec, sled::IVec)>, StoreError> {
    db.scan_prefix([keys::HEADER_SEGMENT])
        .next_back()
        .transpose()
        .map_err(StoreError::engine("reading a header segment"))
}

/// The last stored segment, if any.
pub(crate) fn last(db: &sled::Db, log: &HeaderLog) -> Result<Option<Segment>, StoreError> {
    last_pointer(db)?
        .map(|(key, pointer)| Segment::load(log, key, &pointer))
        .transpose()
}

impl Store {
    /// The stored row at `height` (`1 <= height <= header_height`) with its segment.
    pub(crate) fn with_row<T>(
        &self,
        height: u64,
        f: impl FnOnce(&Segment, &Row<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let segment = find_stored(&self.inner.db, &self.inner.log, height)?;
        let row = segment.row(height)?;
        f(&segment, &row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(height: u64) -> Header {
        Header {
            chain_id: "seg".to_owned(),
            height,
            time_ms: 1,
            last_block_id: (height > 1).then_some(headway_wire::BlockId {
                hash: Hash([1; 32]),
            }),
            data_hash: Hash([2; 32]),
            validators_hash: Hash([3; 32]),
            next_validators_hash: Hash([3; 32]),
            state_root: Hash([4; 32]),
            history_root: Hash([5; 32]),
            proposer_address: headway_wire::Address([6; 20]),
        }
    }

    fn commit(height: u64) -> Commit {
        Commit {
            height,
            round: 0,
            block_id: headway_wire::BlockId {
                hash: Hash([height as u8; 32]),
            },
            signatures: vec![headway_wire::CommitSig {
                validator_address: headway_wire::Address([9; 20]),
                signature: headway_wire::Signature([8; 64]),
            }],
        }
    }

    fn segment(first: u64, n: u64) -> Segment {
        segment_with(first, n, |_| true)
    }

    /// A segment whose row at `h` has its commit where `signed(h)`.
    fn segment_with(first: u64, n: u64, signed: impl Fn(u64) -> bool) -> Segment {
        let mut builder = SegmentBuilder::new(first);
        for h in first..first + n {
            let commit = commit(h);
            builder.push(
                &Hash([h as u8; 32]),
                &header(h),
                signed(h).then_some(&commit),
            );
        }
        let (key, value) = builder.finish().unwrap_or_else(|| unreachable!());
        Segment::new(key.to_vec().into(), value).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn rows_round_trip() {
        let s = segment(5, 4);
        assert_eq!(s.last_height().ok(), Some(8));
        let rows = s.rows().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rows.len(), 4);
        let row = s.row(7).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(row.hash, Hash([7; 32]));
        assert_eq!(s.header(&row).ok(), Some(header(7)));
        assert_eq!(s.commit(&row).ok(), Some(Some(commit(7))));
        assert!(row.has_commit());
        assert!(matches!(s.row(9), Err(StoreError::Corrupt { .. })));
        assert!(matches!(s.row(4), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn rows_without_commits_round_trip_among_signed_ones() {
        let s = segment_with(10, 5, |h| h % 2 == 1);
        let rows = s.rows().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rows.len(), 5);
        for row in &rows {
            let signed = row.height % 2 == 1;
            assert_eq!(row.has_commit(), signed, "row {}", row.height);
            assert_eq!(s.header(row).ok(), Some(header(row.height)));
            let expected = signed.then(|| commit(row.height));
            assert_eq!(s.commit(row).ok(), Some(expected));
            let (encoded_header, encoded_commit) = Segment::encoded(row);
            assert_eq!(
                encoded_header,
                raw::Header::from(&header(row.height)).encode_to_vec()
            );
            assert_eq!(
                encoded_commit.map(<[u8]>::to_vec),
                signed.then(|| raw::Commit::from(&commit(row.height)).encode_to_vec())
            );
        }
        // A bare row is one byte (the zero length) where a commit would be.
        let signed = segment(10, 5);
        let commits: usize = (10..15)
            .filter(|h| h % 2 == 0)
            .map(|h| {
                let len = raw::Commit::from(&commit(h)).encoded_len();
                len + prost::encoding::encoded_len_varint(len as u64) - 1
            })
            .sum();
        assert_eq!(s.value.len() + commits, signed.value.len());
    }

    #[test]
    fn every_truncation_and_bad_count_is_corrupt() {
        let s = segment(1, 3);
        let value = s.value.to_vec();
        for cut in 0..value.len() {
            let short = Segment::new(s.key.clone(), value[..cut].to_vec())
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(matches!(short.rows(), Err(StoreError::Corrupt { .. })));
        }
        let mut long = value.clone();
        long.push(0);
        let long = Segment::new(s.key.clone(), long).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(long.rows(), Err(StoreError::Corrupt { .. })));
        let mut zero = value.clone();
        zero[..4].copy_from_slice(&0u32.to_be_bytes());
        let zero = Segment::new(s.key.clone(), zero).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(zero.row(1), Err(StoreError::Corrupt { .. })));
        let mut huge = value;
        huge[32 + 4 + 1] ^= 0xff; // inside the first header
        let huge = Segment::new(s.key.clone(), huge).unwrap_or_else(|e| panic!("{e}"));
        let result = huge
            .row(1)
            .and_then(|row| huge.header(&row).map(|_| ()))
            .and_then(|()| huge.rows().map(|_| ()));
        assert!(result.is_err());
        assert!(Segment::new(vec![keys::HEADER_SEGMENT, 1].into(), Vec::new()).is_err());
    }
}
