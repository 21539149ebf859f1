//! Header segments (format 2, rows without commits since format 4, in the
//! header log since format 5, headers apart from commits since format 6,
//! delta rows since format 10): the consecutive header rows of (part of)
//! one `save_headers` or `save_bare_headers` batch stored as one value,
//! because sled's cost is per key, not per byte.
//!
//! Key: `HEADER_SEGMENT || be64(first height)`; sled's value points at the
//! segment's bytes in the header log (`header_log.rs`). The bytes, in two
//! parts laid out back to back:
//!
//! ```text
//! header part:
//! be32(rows | 0x8000_0000)        rows in 1 ..= MAX_SEGMENT_HEADERS; the top
//!                                 bit set: delta rows (below); clear:
//!                                 protobuf rows (formats 6 to 9)
//! rows × {
//!     header hash (32)            the BlockMeta's block_id
//!     the header                  a delta row, or varint(len) raw::Header
//! }                               row i is the header at height first + i
//! commit part:
//! rows × varint(len) raw::Commit  prost, length-delimited; len 0: no commit
//! ```
//!
//! A **delta row** leaves out what the rows before it in the segment give:
//!
//! ```text
//! flags (1)                       which optional fields follow (DELTA_*)
//! [varint(len) chain id]          CHAIN_ID: else the previous row's
//! [parent hash (32)]              PARENT: else the previous row's hash (none
//!                                 in the first row: height 1); NO_PARENT: none
//! [validators_hash (32)]          VALIDATORS: else the previous row's
//!                                 next_validators_hash
//! [next_validators_hash (32)]     NEXT_VALIDATORS: else validators_hash
//! varint(time)                    the first row, or ABSOLUTE_TIME: the time;
//!                                 else zigzag(time − the previous row's)
//! data_hash (32), state_root (32), history_root (32), proposer (20)
//! ```
//!
//! The height is the row's. Every field is kept (a row decodes to exactly
//! the header stored), but a header of a linked chain takes ~150 bytes
//! instead of ~285: the header log, what the writer copies into it and
//! what a server reads back per header nearly halve, and a server builds a
//! compact range from the fields (`headway_wire::encoded::HeaderFields`)
//! without parsing protobuf. Segments of earlier formats keep their
//! protobuf rows and are read as they were.
//!
//! Headers and commits are apart so that a reader of headers alone (a
//! headers-only v2 range, a hash lookup) reads the header part and not the
//! commits, which are ~6× larger. A commit of length 0 means the header was
//! stored without its commit (a headers-only batch): a real commit never
//! encodes to 0 bytes, since its height is at least 1 and is encoded.
//! Segments are written once and never rewritten (body sizes live under
//! their own key). Every decoding step is checked: a bad count, a length
//! running past its part, unknown flags, a first row missing what it
//! cannot take from a previous one, trailing bytes, a message that does not
//! decode or validate, or a header of another height gives
//! [`StoreError::Corrupt`] naming the segment key, never a panic.

use std::borrow::Cow;

use headway_wire::encoded::HeaderFields;
use headway_wire::{Commit, Hash, Header, raw};
use prost::Message as _;

use crate::header_log::{HeaderLog, Part};
use crate::keys;
use crate::store::decode_raw;
use crate::{Store, StoreError};

/// The most header rows one segment holds, so that a lookup walks (and a
/// reader copies) a bounded value. Batches longer than this are split.
pub(crate) const MAX_SEGMENT_HEADERS: usize = 256;

/// Bytes of the row count at the start of a segment value.
const COUNT_LEN: usize = 4;

/// The top bit of the row count: the segment's rows are delta rows.
const DELTA_ROWS: u32 = 0x8000_0000;

/// Delta row flag: the chain id follows (else the previous row's).
const DELTA_CHAIN_ID: u8 = 1;
/// Delta row flag: the parent hash follows (else the previous row's hash).
const DELTA_PARENT: u8 = 1 << 1;
/// Delta row flag: no parent (`last_block_id` empty) in a row after the first.
const DELTA_NO_PARENT: u8 = 1 << 2;
/// Delta row flag: `validators_hash` follows (else the previous row's
/// `next_validators_hash`).
const DELTA_VALIDATORS: u8 = 1 << 3;
/// Delta row flag: `next_validators_hash` follows (else `validators_hash`).
const DELTA_NEXT_VALIDATORS: u8 = 1 << 4;
/// Delta row flag: the time is absolute, not a step from the previous row's.
const DELTA_ABSOLUTE_TIME: u8 = 1 << 5;
/// Every delta row flag; any other bit set is corruption.
const DELTA_FLAGS: u8 = (1 << 6) - 1;

/// Builds the two parts of one segment.
pub(crate) struct SegmentBuilder {
    first: u64,
    rows: u32,
    headers: Vec<u8>,
    commits: Vec<u8>,
    /// What the next delta row may leave out: the last row's.
    last: Option<LastRow>,
}

/// What a delta row takes from the row before it.
struct LastRow {
    hash: Hash,
    chain_id: Vec<u8>,
    next_validators_hash: Hash,
    time_ms: u64,
}

/// A segment ready for the header log.
pub(crate) struct BuiltSegment {
    pub(crate) key: [u8; 9],
    pub(crate) headers: Vec<u8>,
    pub(crate) commits: Vec<u8>,
}

impl SegmentBuilder {
    /// An empty segment whose first row will be the header at `first`.
    pub(crate) fn new(first: u64) -> Self {
        Self::with_capacity(first, 1024, 0)
    }

    /// As [`SegmentBuilder::new`], with room for parts of these sizes: the
    /// previous segment of a batch is a good guess, and a 256-row part
    /// would otherwise grow through seven reallocations.
    pub(crate) fn with_capacity(first: u64, headers: usize, commits: usize) -> Self {
        let mut header_part = Vec::with_capacity(headers.max(COUNT_LEN));
        header_part.extend_from_slice(&0u32.to_be_bytes());
        Self {
            first,
            rows: 0,
            headers: header_part,
            commits: Vec::with_capacity(commits),
            last: None,
        }
    }

    /// The bytes of each part so far (header part, commit part).
    pub(crate) fn part_lens(&self) -> (usize, usize) {
        (self.headers.len(), self.commits.len())
    }

    /// Rows so far.
    pub(crate) fn len(&self) -> usize {
        self.rows as usize
    }

    /// [`SegmentBuilder::push_fields`] of a header struct.
    #[cfg(test)]
    pub(crate) fn push(&mut self, hash: &Hash, header: &Header, commit: Option<&Commit>) {
        self.push_fields(hash, &HeaderFields::of(header), commit);
    }

    /// Appends the row of the next height, given by its fields, with its
    /// commit or without one.
    pub(crate) fn push_fields(
        &mut self,
        hash: &Hash,
        header: &HeaderFields<'_>,
        commit: Option<&Commit>,
    ) {
        self.push_delta(hash, header);
        match commit {
            Some(commit) => {
                // Encoding into a Vec cannot run out of space.
                let _ = raw::Commit::from(commit).encode_length_delimited(&mut self.commits);
            }
            // A zero length: no commit.
            None => self.commits.push(0),
        }
        self.rows += 1;
    }

    /// Appends `header`'s delta row (see the [module documentation](self)).
    fn push_delta(&mut self, hash: &Hash, header: &HeaderFields<'_>) {
        let out = &mut self.headers;
        out.reserve(32 + 1 + 10 + 3 * 32 + 20);
        out.extend_from_slice(&hash.0);
        let flags_at = out.len();
        out.push(0);
        let mut flags = 0;
        let parent = header.parent_hash;
        match &mut self.last {
            None => {
                flags |= DELTA_CHAIN_ID | DELTA_VALIDATORS;
                prost::encoding::encode_varint(header.chain_id.len() as u64, out);
                out.extend_from_slice(header.chain_id);
                if let Some(parent) = parent {
                    flags |= DELTA_PARENT;
                    out.extend_from_slice(&parent);
                }
                out.extend_from_slice(&header.validators_hash);
            }
            Some(last) => {
                if header.chain_id != last.chain_id {
                    flags |= DELTA_CHAIN_ID;
                    prost::encoding::encode_varint(header.chain_id.len() as u64, out);
                    out.extend_from_slice(header.chain_id);
                }
                match parent {
                    Some(parent) if parent == last.hash.0 => {}
                    Some(parent) => {
                        flags |= DELTA_PARENT;
                        out.extend_from_slice(&parent);
                    }
                    None => flags |= DELTA_NO_PARENT,
                }
                if header.validators_hash != last.next_validators_hash.0 {
                    flags |= DELTA_VALIDATORS;
                    out.extend_from_slice(&header.validators_hash);
                }
            }
        }
        if header.next_validators_hash != header.validators_hash {
            flags |= DELTA_NEXT_VALIDATORS;
            out.extend_from_slice(&header.next_validators_hash);
        }
        let step = self.last.as_ref().and_then(|last| {
            i64::try_from(i128::from(header.time_ms) - i128::from(last.time_ms)).ok()
        });
        match step {
            // Zigzag, as `sint64` is encoded.
            Some(step) => prost::encoding::encode_varint(((step << 1) ^ (step >> 63)) as u64, out),
            None => {
                if self.last.is_some() {
                    flags |= DELTA_ABSOLUTE_TIME;
                }
                prost::encoding::encode_varint(header.time_ms, out);
            }
        }
        out.extend_from_slice(header.data_hash);
        out.extend_from_slice(header.state_root);
        out.extend_from_slice(header.history_root);
        out.extend_from_slice(&header.proposer);
        out[flags_at] = flags;
        match &mut self.last {
            Some(last) => {
                last.hash = *hash;
                if flags & DELTA_CHAIN_ID != 0 {
                    last.chain_id.clear();
                    last.chain_id.extend_from_slice(header.chain_id);
                }
                last.next_validators_hash = Hash(header.next_validators_hash);
                last.time_ms = header.time_ms;
            }
            None => {
                self.last = Some(LastRow {
                    hash: *hash,
                    chain_id: header.chain_id.to_vec(),
                    next_validators_hash: Hash(header.next_validators_hash),
                    time_ms: header.time_ms,
                });
            }
        }
    }

    /// The key and the two parts to store (`None` if no row was pushed).
    pub(crate) fn finish(mut self) -> Option<BuiltSegment> {
        if self.rows == 0 {
            return None;
        }
        self.headers[..COUNT_LEN].copy_from_slice(&(self.rows | DELTA_ROWS).to_be_bytes());
        Some(BuiltSegment {
            key: keys::by_u64(keys::HEADER_SEGMENT, self.first),
            headers: self.headers,
            commits: self.commits,
        })
    }
}

/// A row's header as the segment holds it.
#[derive(Clone, Copy)]
enum RowHeader<'a> {
    /// A protobuf row (formats 6 to 9): the encoded `Header`.
    Encoded(&'a [u8]),
    /// A delta row, its fields resolved against the rows before it.
    Fields(HeaderFields<'a>),
}

impl<'a> RowHeader<'a> {
    /// The protobuf encoding of the header.
    fn encoded(&self) -> Cow<'a, [u8]> {
        match self {
            RowHeader::Encoded(bytes) => Cow::Borrowed(bytes),
            RowHeader::Fields(fields) => {
                let mut bytes = Vec::with_capacity(fields.encoded_len());
                fields.encode(&mut bytes);
                Cow::Owned(bytes)
            }
        }
    }
}

/// One row of a segment's header part, not decoded into a [`Header`].
#[derive(Clone, Copy)]
pub(crate) struct HeaderRow<'a> {
    pub(crate) height: u64,
    pub(crate) hash: Hash,
    header: RowHeader<'a>,
}

/// One row of a whole segment, not decoded.
#[derive(Clone, Copy)]
pub(crate) struct Row<'a> {
    pub(crate) height: u64,
    pub(crate) hash: Hash,
    header: RowHeader<'a>,
    /// Empty when the header was stored without its commit.
    commit: &'a [u8],
}

impl Row<'_> {
    /// Whether the header was stored with its commit.
    pub(crate) fn has_commit(&self) -> bool {
        !self.commit.is_empty()
    }

    fn header_row(&self) -> HeaderRow<'_> {
        HeaderRow {
            height: self.height,
            hash: self.hash,
            header: self.header,
        }
    }
}

/// The header part of a stored segment ([`Part::Headers`]): hashes and
/// headers, without the commits.
pub(crate) struct Segment {
    pub(crate) key: sled::IVec,
    pub(crate) first: u64,
    /// The header part, followed by the commit part in a [`WholeSegment`].
    value: Vec<u8>,
    /// Bytes of the header part.
    header_len: usize,
}

/// A stored segment read whole ([`Part::Whole`]): headers and commits.
pub(crate) struct WholeSegment(Segment);

impl std::ops::Deref for WholeSegment {
    type Target = Segment;
    fn deref(&self) -> &Segment {
        &self.0
    }
}

/// The part of a segment a reader loads, with the rows it yields: a
/// [`Segment`] (header part) or a [`WholeSegment`].
pub(crate) trait Stored: Sized {
    /// A row of this part.
    type Row<'a>: Copy
    where
        Self: 'a;

    /// Reads the segment whose sled row is `key` → `pointer` from the log
    /// (checks the key's shape and the pointer; the rows are checked as
    /// they are read).
    fn load(log: &HeaderLog, key: sled::IVec, pointer: &[u8]) -> Result<Self, StoreError>;

    /// The segment's header part.
    fn segment(&self) -> &Segment;

    /// Every row, checking the whole part (no trailing bytes).
    fn rows(&self) -> Result<Vec<Self::Row<'_>>, StoreError>;

    /// The height of a row.
    fn height(row: &Self::Row<'_>) -> u64;
}

impl Stored for Segment {
    type Row<'a> = HeaderRow<'a>;

    fn load(log: &HeaderLog, key: sled::IVec, pointer: &[u8]) -> Result<Self, StoreError> {
        let first = Self::first_of(&key)?;
        let (pointer, value) = log.read(&key, pointer, Part::Headers)?;
        Ok(Self {
            key,
            first,
            value,
            header_len: pointer.header_len as usize,
        })
    }

    fn segment(&self) -> &Segment {
        self
    }

    fn rows(&self) -> Result<Vec<HeaderRow<'_>>, StoreError> {
        let count = self.len()?;
        let mut rest = self.header_part();
        let mut rows: Vec<HeaderRow<'_>> = Vec::with_capacity(count as usize);
        for index in 0..count {
            let row = self.next_header_row(&mut rest, self.first + index, rows.last())?;
            rows.push(row);
        }
        if !rest.is_empty() {
            return Err(self.corrupt(format!(
                "{} bytes after the last row of the header segment's header part",
                rest.len()
            )));
        }
        Ok(rows)
    }

    fn height(row: &HeaderRow<'_>) -> u64 {
        row.height
    }
}

impl Stored for WholeSegment {
    type Row<'a> = Row<'a>;

    fn load(log: &HeaderLog, key: sled::IVec, pointer: &[u8]) -> Result<Self, StoreError> {
        let first = Segment::first_of(&key)?;
        let (pointer, value) = log.read(&key, pointer, Part::Whole)?;
        Ok(Self(Segment {
            key,
            first,
            value,
            header_len: pointer.header_len as usize,
        }))
    }

    fn segment(&self) -> &Segment {
        &self.0
    }

    fn rows(&self) -> Result<Vec<Row<'_>>, StoreError> {
        let headers = self.0.rows()?;
        let mut rest = self.value.get(self.header_len..).unwrap_or_default();
        let mut rows = Vec::with_capacity(headers.len());
        for head in headers {
            let commit = self.delimited(&mut rest, head.height, "commit part")?;
            rows.push(Row {
                height: head.height,
                hash: head.hash,
                header: head.header,
                commit,
            });
        }
        if !rest.is_empty() {
            return Err(self.corrupt(format!(
                "{} bytes after the last row of the header segment's commit part",
                rest.len()
            )));
        }
        Ok(rows)
    }

    fn height(row: &Row<'_>) -> u64 {
        row.height
    }
}

impl Segment {
    /// A segment from its parts (tests build them without a log).
    #[cfg(test)]
    pub(crate) fn whole_from(built: BuiltSegment) -> Result<WholeSegment, StoreError> {
        let key: sled::IVec = built.key.to_vec().into();
        let first = Self::first_of(&key)?;
        let header_len = built.headers.len();
        let mut value = built.headers;
        value.extend_from_slice(&built.commits);
        Ok(WholeSegment(Self {
            key,
            first,
            value,
            header_len,
        }))
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

    fn header_part(&self) -> &[u8] {
        let part = self.value.get(..self.header_len).unwrap_or(&self.value);
        part.get(COUNT_LEN..).unwrap_or_default()
    }

    /// The number of rows the segment says it holds.
    pub(crate) fn len(&self) -> Result<u64, StoreError> {
        let count = self.count_word()? & !DELTA_ROWS;
        if count == 0 || count as usize > MAX_SEGMENT_HEADERS {
            return Err(self.corrupt(format!(
                "header segment holds {count} rows, expected 1..={MAX_SEGMENT_HEADERS}"
            )));
        }
        Ok(u64::from(count))
    }

    /// The row count word: the count, and [`DELTA_ROWS`].
    fn count_word(&self) -> Result<u32, StoreError> {
        self.value
            .get(..COUNT_LEN.min(self.header_len))
            .and_then(|b| <[u8; COUNT_LEN]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or_else(|| self.corrupt("header segment is shorter than its row count"))
    }

    /// Whether the segment's rows are delta rows.
    fn has_delta_rows(&self) -> Result<bool, StoreError> {
        Ok(self.count_word()? & DELTA_ROWS != 0)
    }

    /// The height of the last row.
    pub(crate) fn last_height(&self) -> Result<u64, StoreError> {
        Ok(self.first + self.len()? - 1)
    }

    /// The error for a height the segment should hold and does not.
    fn missing(&self, height: u64) -> StoreError {
        match self.len() {
            Ok(count) => self.corrupt(format!(
                "header {height} missing below the header height (segment holds {}..={})",
                self.first,
                self.first + count - 1
            )),
            Err(e) => e,
        }
    }

    /// The header row of `height`, walking the rows before it.
    pub(crate) fn row(&self, height: u64) -> Result<HeaderRow<'_>, StoreError> {
        let count = self.len()?;
        if height < self.first || height - self.first >= count {
            return Err(self.missing(height));
        }
        let mut rest = self.header_part();
        let mut row = self.next_header_row(&mut rest, self.first, None)?;
        for at in self.first + 1..=height {
            row = self.next_header_row(&mut rest, at, Some(&row))?;
        }
        Ok(row)
    }

    /// Decodes the header of a row (and checks its height).
    pub(crate) fn header(&self, row: &HeaderRow<'_>) -> Result<Header, StoreError> {
        let header: Header = match &row.header {
            RowHeader::Encoded(bytes) => {
                decode_raw::<raw::Header, Header>(&self.key, bytes, "header")?
            }
            // Through the protobuf decoder, which checks every field as it
            // checks any stored or received header.
            RowHeader::Fields(fields) => {
                let mut bytes = Vec::with_capacity(fields.encoded_len());
                fields.encode(&mut bytes);
                decode_raw::<raw::Header, Header>(&self.key, &bytes, "header")?
            }
        };
        if header.height != row.height {
            return Err(self.corrupt(format!(
                "row for height {} holds the header of height {}",
                row.height, header.height
            )));
        }
        Ok(header)
    }

    /// The row's header as its protobuf encoding, undecoded: borrowed from
    /// a protobuf row, encoded from a delta row's fields.
    pub(crate) fn encoded_header<'a>(row: &HeaderRow<'a>) -> Cow<'a, [u8]> {
        row.header.encoded()
    }

    /// The row's header fields (a server's compact range is built from
    /// them), read from a protobuf row; `Corrupt` where that row is not a
    /// `Header` in the canonical shape every writer of the store gives.
    pub(crate) fn header_fields<'a>(
        &self,
        row: &HeaderRow<'a>,
    ) -> Result<HeaderFields<'a>, StoreError> {
        match row.header {
            RowHeader::Fields(fields) => Ok(fields),
            RowHeader::Encoded(bytes) => HeaderFields::read(bytes)
                .filter(|fields| fields.height == row.height)
                .ok_or_else(|| {
                    self.corrupt(format!(
                        "row {}: the header is not a canonical encoding of its height's header",
                        row.height
                    ))
                }),
        }
    }

    fn next_header_row<'a>(
        &self,
        rest: &mut &'a [u8],
        height: u64,
        previous: Option<&HeaderRow<'a>>,
    ) -> Result<HeaderRow<'a>, StoreError> {
        let Some((hash, tail)) = rest.split_first_chunk::<32>() else {
            return Err(self.corrupt(format!("header segment ends inside row {height}")));
        };
        *rest = tail;
        let header = if self.has_delta_rows()? {
            RowHeader::Fields(self.delta_fields(rest, height, previous)?)
        } else {
            RowHeader::Encoded(self.delimited(rest, height, "header part")?)
        };
        Ok(HeaderRow {
            height,
            hash: Hash(*hash),
            header,
        })
    }

    /// Reads the delta row of `height` off `rest`, `previous` the row
    /// before it in the segment (`None` for the first).
    fn delta_fields<'a>(
        &self,
        rest: &mut &'a [u8],
        height: u64,
        previous: Option<&HeaderRow<'a>>,
    ) -> Result<HeaderFields<'a>, StoreError> {
        let short = || self.corrupt(format!("header segment ends inside delta row {height}"));
        let previous = match previous {
            None => None,
            Some(HeaderRow {
                hash,
                header: RowHeader::Fields(fields),
                ..
            }) => Some((hash, fields)),
            Some(_) => {
                return Err(self.corrupt(format!("row {height}: a delta row after a protobuf row")));
            }
        };
        let (&flags, tail) = rest.split_first().ok_or_else(short)?;
        *rest = tail;
        if flags & !DELTA_FLAGS != 0 || flags & DELTA_PARENT != 0 && flags & DELTA_NO_PARENT != 0 {
            return Err(self.corrupt(format!("row {height}: delta row flags {flags:#04x}")));
        }
        let missing = |what: &str| {
            self.corrupt(format!(
                "row {height}: the segment's first delta row has no {what}"
            ))
        };
        let chain_id = if flags & DELTA_CHAIN_ID != 0 {
            let len = prost::encoding::decode_varint(rest)
                .map_err(|e| self.corrupt(format!("row {height}: bad chain id length: {e}")))?;
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            let (chain_id, tail) = rest.split_at_checked(len).ok_or_else(short)?;
            *rest = tail;
            chain_id
        } else {
            previous
                .map(|(_, p)| p.chain_id)
                .ok_or_else(|| missing("chain id"))?
        };
        let hash = |rest: &mut &'a [u8]| -> Result<[u8; 32], StoreError> {
            let (hash, tail) = rest.split_first_chunk::<32>().ok_or_else(short)?;
            *rest = tail;
            Ok(*hash)
        };
        let parent_hash = if flags & DELTA_PARENT != 0 {
            Some(hash(rest)?)
        } else if flags & DELTA_NO_PARENT != 0 {
            None
        } else {
            previous.map(|(hash, _)| hash.0)
        };
        let validators_hash = if flags & DELTA_VALIDATORS != 0 {
            hash(rest)?
        } else {
            previous
                .map(|(_, p)| p.next_validators_hash)
                .ok_or_else(|| missing("validators hash"))?
        };
        let next_validators_hash = if flags & DELTA_NEXT_VALIDATORS != 0 {
            hash(rest)?
        } else {
            validators_hash
        };
        let time = prost::encoding::decode_varint(rest)
            .map_err(|e| self.corrupt(format!("row {height}: bad time: {e}")))?;
        let time_ms = match previous {
            Some((_, p)) if flags & DELTA_ABSOLUTE_TIME == 0 => {
                // Zigzag-decoded.
                let step = (time >> 1) as i64 ^ -((time & 1) as i64);
                p.time_ms.checked_add_signed(step).ok_or_else(|| {
                    self.corrupt(format!("row {height}: the time step leaves u64"))
                })?
            }
            _ => time,
        };
        let (fixed, tail) = rest
            .split_first_chunk::<{ 3 * 32 + 20 }>()
            .ok_or_else(short)?;
        *rest = tail;
        let (data_hash, fixed) = fixed.split_first_chunk::<32>().ok_or_else(short)?;
        let (state_root, fixed) = fixed.split_first_chunk::<32>().ok_or_else(short)?;
        let (history_root, proposer) = fixed.split_first_chunk::<32>().ok_or_else(short)?;
        let proposer = <[u8; 20]>::try_from(proposer).map_err(|_| short())?;
        Ok(HeaderFields {
            chain_id,
            height,
            time_ms,
            parent_hash,
            data_hash,
            validators_hash,
            next_validators_hash,
            state_root,
            history_root,
            proposer,
        })
    }

    /// Splits one length-delimited message off `rest` (of `part`).
    fn delimited<'a>(
        &self,
        rest: &mut &'a [u8],
        height: u64,
        part: &str,
    ) -> Result<&'a [u8], StoreError> {
        let len = prost::encoding::decode_varint(rest)
            .map_err(|e| self.corrupt(format!("row {height}: bad length in the {part}: {e}")))?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > rest.len() {
            return Err(self.corrupt(format!(
                "row {height}: a {len}-byte message runs past the header segment's {part}"
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

impl WholeSegment {
    /// The row of `height`, with its commit.
    pub(crate) fn row(&self, height: u64) -> Result<Row<'_>, StoreError> {
        let rows = self.rows()?;
        let index = usize::try_from(height.wrapping_sub(self.first)).unwrap_or(usize::MAX);
        rows.get(index).copied().ok_or_else(|| self.missing(height))
    }

    /// Decodes the header of a row (and checks its height).
    pub(crate) fn header(&self, row: &Row<'_>) -> Result<Header, StoreError> {
        self.0.header(&row.header_row())
    }

    /// The row's stored encodings of its header and of its commit (`None`:
    /// stored without one), undecoded.
    pub(crate) fn encoded<'a>(row: &Row<'a>) -> (Cow<'a, [u8]>, Option<&'a [u8]>) {
        (row.header.encoded(), row.has_commit().then_some(row.commit))
    }

    /// Decodes the commit of a row (`None`: stored without one).
    pub(crate) fn commit(&self, row: &Row<'_>) -> Result<Option<Commit>, StoreError> {
        if !row.has_commit() {
            return Ok(None);
        }
        decode_raw::<raw::Commit, Commit>(&self.key, row.commit, "commit").map(Some)
    }
}

/// The segment holding `height` (the last one starting at or below it), if
/// any, read as `S`.
pub(crate) fn find<S: Stored>(
    db: &sled::Db,
    log: &HeaderLog,
    height: u64,
) -> Result<Option<S>, StoreError> {
    let from = keys::by_u64(keys::HEADER_SEGMENT, 0);
    let to = keys::by_u64(keys::HEADER_SEGMENT, height);
    db.range(from..=to)
        .next_back()
        .transpose()
        .map_err(StoreError::engine("reading a header segment"))?
        .map(|(key, pointer)| S::load(log, key, &pointer))
        .transpose()
}

/// The segment holding `height`, which must exist (`height <= header_height`).
pub(crate) fn find_stored<S: Stored>(
    db: &sled::Db,
    log: &HeaderLog,
    height: u64,
) -> Result<S, StoreError> {
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
    keys::remove_from(db, keys::HEADER_SEGMENT, first, batch)
}

/// The key and pointer of the last stored segment, if any.
pub(crate) fn last_pointer(db: &sled::Db) -> Result<Option<(sled::IVec, sled::IVec)>, StoreError> {
    db.scan_prefix([keys::HEADER_SEGMENT])
        .next_back()
        .transpose()
        .map_err(StoreError::engine("reading a header segment"))
}

/// The last stored segment, if any, read whole.
pub(crate) fn last(db: &sled::Db, log: &HeaderLog) -> Result<Option<WholeSegment>, StoreError> {
    last_pointer(db)?
        .map(|(key, pointer)| WholeSegment::load(log, key, &pointer))
        .transpose()
}

impl Store {
    /// The stored row at `height` (`1 <= height <= header_height`) with its
    /// segment, read whole (with the commit).
    pub(crate) fn with_row<T>(
        &self,
        height: u64,
        f: impl FnOnce(&WholeSegment, &Row<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let segment: WholeSegment = find_stored(&self.inner.db, &self.inner.log, height)?;
        let row = segment.row(height)?;
        f(&segment, &row)
    }

    /// As [`Store::with_row`], reading the segment's header part alone.
    pub(crate) fn with_header_row<T>(
        &self,
        height: u64,
        f: impl FnOnce(&Segment, &HeaderRow<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let segment: Segment = find_stored(&self.inner.db, &self.inner.log, height)?;
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

    fn segment(first: u64, n: u64) -> WholeSegment {
        segment_with(first, n, |_| true)
    }

    fn built(first: u64, n: u64, signed: impl Fn(u64) -> bool) -> BuiltSegment {
        let mut builder = SegmentBuilder::new(first);
        for h in first..first + n {
            let commit = commit(h);
            builder.push(
                &Hash([h as u8; 32]),
                &header(h),
                signed(h).then_some(&commit),
            );
        }
        builder.finish().unwrap_or_else(|| unreachable!())
    }

    /// A segment whose row at `h` has its commit where `signed(h)`.
    fn segment_with(first: u64, n: u64, signed: impl Fn(u64) -> bool) -> WholeSegment {
        Segment::whole_from(built(first, n, signed)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A segment from raw parts (for damaging them).
    fn from_parts(key: &sled::IVec, headers: &[u8], commits: &[u8]) -> WholeSegment {
        Segment::whole_from(BuiltSegment {
            key: key.as_ref().try_into().unwrap_or_else(|_| unreachable!()),
            headers: headers.to_vec(),
            commits: commits.to_vec(),
        })
        .unwrap_or_else(|e| panic!("{e}"))
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
        // The header part alone gives the same hashes and headers.
        let head: &Segment = &s;
        let header_rows = Stored::rows(head).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(header_rows.len(), 4);
        let row = head.row(7).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(row.hash, Hash([7; 32]));
        assert_eq!(head.header(&row).ok(), Some(header(7)));
        assert!(matches!(head.row(9), Err(StoreError::Corrupt { .. })));
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
            let (encoded_header, encoded_commit) = WholeSegment::encoded(row);
            assert_eq!(
                encoded_header,
                raw::Header::from(&header(row.height)).encode_to_vec()
            );
            assert_eq!(
                encoded_commit.map(<[u8]>::to_vec),
                signed.then(|| raw::Commit::from(&commit(row.height)).encode_to_vec())
            );
        }
        // A bare row is one byte (the zero length) where a commit would be,
        // and the header parts are the same.
        let signed = segment(10, 5);
        let commits: usize = (10..15)
            .filter(|h| h % 2 == 0)
            .map(|h| {
                let len = raw::Commit::from(&commit(h)).encoded_len();
                len + prost::encoding::encoded_len_varint(len as u64) - 1
            })
            .sum();
        assert_eq!(s.value.len() + commits, signed.value.len());
        assert_eq!(s.header_len, signed.header_len);
        assert_eq!(s.value[..s.header_len], signed.value[..signed.header_len]);
    }

    #[test]
    fn every_truncation_and_bad_count_is_corrupt() {
        let b = built(1, 3, |_| true);
        let key: sled::IVec = b.key.to_vec().into();
        let (headers, commits) = (b.headers, b.commits);
        for cut in 0..headers.len() {
            let short = from_parts(&key, &headers[..cut], &commits);
            assert!(matches!(short.rows(), Err(StoreError::Corrupt { .. })));
            assert!(matches!(
                Stored::rows(&*short),
                Err(StoreError::Corrupt { .. })
            ));
        }
        for cut in 0..commits.len() {
            let short = from_parts(&key, &headers, &commits[..cut]);
            assert!(matches!(short.rows(), Err(StoreError::Corrupt { .. })));
            // The header part alone is intact.
            assert_eq!(Stored::rows(&*short).map(|rows| rows.len()).ok(), Some(3));
        }
        let mut long = headers.clone();
        long.push(0);
        let long = from_parts(&key, &long, &commits);
        assert!(matches!(long.rows(), Err(StoreError::Corrupt { .. })));
        assert!(matches!(
            Stored::rows(&*long),
            Err(StoreError::Corrupt { .. })
        ));
        let mut long = commits.clone();
        long.push(0);
        let long = from_parts(&key, &headers, &long);
        assert!(matches!(long.rows(), Err(StoreError::Corrupt { .. })));
        let mut zero = headers.clone();
        zero[..4].copy_from_slice(&0u32.to_be_bytes());
        let zero = from_parts(&key, &zero, &commits);
        assert!(matches!(zero.row(1), Err(StoreError::Corrupt { .. })));
        let mut huge = headers;
        huge[32 + 4 + 1] ^= 0xff; // inside the first header
        let huge = from_parts(&key, &huge, &commits);
        let result = huge
            .row(1)
            .and_then(|row| huge.header(&row).map(|_| ()))
            .and_then(|()| huge.rows().map(|_| ()));
        assert!(result.is_err());
        assert!(
            Segment::whole_from(BuiltSegment {
                key: keys::by_u64(keys::HEADER_SEGMENT, 0),
                headers: Vec::new(),
                commits: Vec::new(),
            })
            .is_err()
        );
    }

    /// Headers that exercise every delta row flag, built so that row `i`
    /// differs from row `i - 1` as `kind(i)` says.
    fn varied(first: u64, n: u64, kind: impl Fn(u64) -> u8) -> Vec<(Hash, Header)> {
        let mut rows: Vec<(Hash, Header)> = Vec::new();
        for h in first..first + n {
            let k = kind(h);
            let mut header = header(h);
            header.time_ms = 1_000 + 7 * h;
            header.data_hash = Hash([h as u8; 32]);
            header.history_root = Hash([(h * 3) as u8; 32]);
            let hash = Hash([(h as u8).wrapping_mul(5) ^ 0x5a; 32]);
            if let Some((last_hash, last)) = rows.last() {
                header.last_block_id = Some(headway_wire::BlockId { hash: *last_hash });
                header.chain_id.clone_from(&last.chain_id);
                header.validators_hash = last.next_validators_hash;
                header.next_validators_hash = header.validators_hash;
                match k {
                    1 => header.chain_id = format!("other-{h}"),
                    2 => {
                        header.last_block_id = Some(headway_wire::BlockId {
                            hash: Hash([9; 32]),
                        })
                    }
                    3 => header.last_block_id = None,
                    4 => header.validators_hash = Hash([h as u8; 32]),
                    5 => header.next_validators_hash = Hash([h as u8 ^ 1; 32]),
                    6 => header.time_ms = u64::MAX - h,
                    7 => header.time_ms = 0,
                    8 => header.time_ms = last.time_ms.wrapping_sub(3),
                    _ => {}
                }
            } else if k == 1 {
                header.last_block_id = None;
            }
            rows.push((hash, header));
        }
        rows
    }

    fn built_from(first: u64, rows: &[(Hash, Header)]) -> WholeSegment {
        let mut builder = SegmentBuilder::new(first);
        for (hash, header) in rows {
            builder.push(hash, header, None);
        }
        Segment::whole_from(builder.finish().unwrap_or_else(|| unreachable!()))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn delta_rows_give_back_every_header_exactly() {
        for kinds in [
            [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            [1, 1, 2, 3, 4, 5, 6, 7, 8, 0],
            [0, 8, 6, 6, 7, 5, 4, 3, 2, 1],
            [1, 0, 4, 5, 0, 2, 0, 3, 0, 6],
        ] {
            let rows = varied(40, 10, |h| kinds[(h - 40) as usize]);
            let s = built_from(40, &rows);
            assert!(s.has_delta_rows().unwrap_or(false));
            let read = s.rows().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(read.len(), rows.len());
            for (row, (hash, header)) in read.iter().zip(&rows) {
                assert_eq!(row.hash, *hash);
                // Kept exactly even where no valid header is (a parent at
                // height 1, none above), which decoding then refuses.
                let valid = header.last_block_id.is_none() == (header.height == 1);
                let decoded = s.header(row);
                if valid {
                    assert_eq!(decoded.ok().as_ref(), Some(header), "{kinds:?}");
                } else {
                    assert!(matches!(decoded, Err(StoreError::Corrupt { .. })));
                }
                let fields = s
                    .header_fields(&row.header_row())
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(fields, HeaderFields::of(header));
                assert_eq!(
                    WholeSegment::encoded(row).0.into_owned(),
                    raw::Header::from(header).encode_to_vec()
                );
                // Random access walks to the same row.
                let at = s.row(row.height).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(
                    s.header_fields(&at.header_row()).ok(),
                    Some(HeaderFields::of(header))
                );
            }
        }
    }

    #[test]
    fn a_linked_delta_row_is_the_hash_and_151_bytes() {
        let rows = varied(2, 200, |_| 0);
        let s = built_from(2, &rows);
        let first = 32 + 1 + 1 + rows[0].1.chain_id.len() + 32 + 32 + 2 + 3 * 32 + 20;
        assert_eq!(
            s.header_len,
            COUNT_LEN + first + 199 * (32 + 1 + 1 + 3 * 32 + 20)
        );
        let protobuf: usize = rows
            .iter()
            .map(|(_, h)| {
                let len = raw::Header::from(h).encoded_len();
                32 + len + prost::encoding::encoded_len_varint(len as u64)
            })
            .sum();
        assert!(
            s.header_len * 10 < protobuf * 6,
            "{} vs {protobuf}",
            s.header_len
        );
    }

    #[test]
    fn damaged_delta_rows_are_corrupt_never_a_panic() {
        let rows = varied(1, 6, |h| [1u8, 4, 5, 6, 2, 0][(h - 1) as usize]);
        let mut builder = SegmentBuilder::new(1);
        for (hash, header) in &rows {
            builder.push(hash, header, None);
        }
        let b = builder.finish().unwrap_or_else(|| unreachable!());
        let key: sled::IVec = b.key.to_vec().into();
        for cut in 0..b.headers.len() {
            let short = from_parts(&key, &b.headers[..cut], &b.commits);
            assert!(matches!(
                Stored::rows(&*short),
                Err(StoreError::Corrupt { .. })
            ));
        }
        let flags_at = COUNT_LEN + 32;
        for (flags, what) in [
            (0x40, "an unknown flag"),
            (
                DELTA_PARENT | DELTA_NO_PARENT | DELTA_CHAIN_ID | DELTA_VALIDATORS,
                "both parents",
            ),
            (DELTA_VALIDATORS, "no chain id in the first row"),
        ] {
            let mut headers = b.headers.clone();
            headers[flags_at] = flags;
            let bad = from_parts(&key, &headers, &b.commits);
            assert!(
                matches!(Stored::rows(&*bad), Err(StoreError::Corrupt { .. })),
                "{what}"
            );
        }
        // Every byte flipped: an error or other headers, never a panic.
        for at in COUNT_LEN..b.headers.len() {
            let mut headers = b.headers.clone();
            headers[at] ^= 0x81;
            let bad = from_parts(&key, &headers, &b.commits);
            if let Ok(read) = Stored::rows(&*bad) {
                for row in &read {
                    let _ = bad.0.header(row);
                }
            }
        }
        // A protobuf-row segment (formats 6 to 9) still reads.
        let mut old = 6u32.to_be_bytes().to_vec();
        for (hash, header) in &rows {
            old.extend_from_slice(&hash.0);
            let _ = raw::Header::from(header).encode_length_delimited(&mut old);
        }
        let old = from_parts(&key, &old, &b.commits);
        let read = Stored::rows(&*old).unwrap_or_else(|e| panic!("{e}"));
        for (row, (_, header)) in read.iter().zip(&rows) {
            assert_eq!(old.0.header(row).ok().as_ref(), Some(header));
            assert_eq!(
                old.0.header_fields(row).ok(),
                Some(HeaderFields::of(header))
            );
        }
    }
}
