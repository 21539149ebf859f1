//! The block store (seed 003, R4 and R6): headers and commits stored without
//! bodies, a header height apart from the contiguous block height, a hash
//! index, validator sets where they change, and bodies.
//!
//! Format 3 keeps the per-header cost of a header batch low by writing few
//! sled keys: the batch's headers and commits go into header segments (up to
//! [`MAX_SEGMENT_HEADERS`] rows a value, see `segment.rs`), its MMR nodes into
//! one chunk (`history.rs`), its hash index entries into one sorted run
//! (`hash_index.rs`). Header rows are written once: a body's sizes go under
//! their own small key.

use std::sync::atomic::Ordering;

use headway_chain::{HeaderExt as _, ValidatorSetExt as _, data_hash};
use headway_mmr::Mmr;
use headway_wire::{
    Block, BlockId, BlockMeta, Commit, Hash, Header, SignedHeader, ValidatorSet, raw,
};

use prost::Message as _;
use tracing::{debug, warn};

use crate::hash_index;
use crate::history::{SledNodes, node_count_for_leaves};
use crate::keys;
use crate::segment::{self, MAX_SEGMENT_HEADERS, SegmentBuilder};
use crate::store::{LastHeader, decode_raw};
use crate::{Store, StoreError};

impl Store {
    /// The height of the highest stored header: headers `1..=header_height`
    /// are all stored (with their commits). Header-only storage advances it.
    #[must_use]
    pub fn header_height(&self) -> u64 {
        self.inner.header_height.load(Ordering::SeqCst)
    }

    /// The contiguous block height: the bodies of blocks `1..=block_height`
    /// are all stored (or, after a snapshot restore at height `S`, covered by
    /// it: then it is at least `S`). Header-only storage never advances it.
    #[must_use]
    pub fn block_height(&self) -> u64 {
        self.inner.block_height.load(Ordering::SeqCst)
    }

    /// Stores a verified batch of signed headers without bodies, with their
    /// commits, hash index entries, validator sets where they change, and
    /// history MMR nodes: one atomic, flushed batch. Headers and commits go
    /// into header segments of at most [`MAX_SEGMENT_HEADERS`] rows and the
    /// MMR nodes into one chunk, so a batch costs few sled keys besides the
    /// hash index's one per header.
    ///
    /// The batch must start at `header_height() + 1` and be contiguous. The
    /// store checks what is cheap and binds the data together (it does not
    /// verify signatures, that is the verifier's job): each commit is for its
    /// header, each header links to the previous one, keeps the chain id,
    /// carries the history root of the headers before it, and has its
    /// validator set attached where the set changes (and at height 1).
    ///
    /// # Errors
    ///
    /// [`StoreError::HeaderHeightGap`] / [`StoreError::NonContiguousBatch`] for
    /// gaps and overlaps; the binding errors listed on [`StoreError`]. Nothing
    /// is stored when an error is returned.
    pub fn save_headers(&self, headers: &[SignedHeader]) -> Result<(), StoreError> {
        let first = headers.first().ok_or(StoreError::EmptyBatch)?;
        let writer = &mut *self.inner.writer()?;
        let expected = self.header_height() + 1;
        if first.header.height != expected {
            return Err(StoreError::HeaderHeightGap {
                expected,
                got: first.header.height,
            });
        }
        let start_leaves = writer.mmr.leaf_count();
        let mut batch = sled::Batch::default();
        let mut entries = Vec::with_capacity(headers.len());
        let staged = stage_headers(
            &self.inner.db,
            &mut writer.mmr,
            writer.last_header.clone(),
            expected,
            headers,
            &mut batch,
            &mut entries,
        )
        .and_then(|last| writer.mmr.store().stage(&mut batch).map(|()| last))
        .and_then(|last| {
            let index = self
                .inner
                .hash_index
                .read()
                .map_err(|_| StoreError::Poisoned)?;
            let next = index.stage(&self.inner.db, &mut batch, entries, expected)?;
            Ok((last, next))
        });
        let (last, next_index) = match staged {
            Ok(staged) => staged,
            Err(error) => {
                self.rewind_mmr(&mut writer.mmr, start_leaves);
                return Err(error);
            }
        };
        let top = expected + headers.len() as u64 - 1;
        batch.insert(keys::HEADER_HEIGHT, &top.to_be_bytes()[..]);
        let applied = match self.inner.hash_index.write() {
            Ok(mut index) => self
                .inner
                .db
                .apply_batch(batch)
                .map(|()| *index = next_index)
                .map_err(StoreError::engine("storing headers")),
            Err(_) => Err(StoreError::Poisoned),
        };
        if let Err(error) = applied.and_then(|()| self.inner.flush_if_durable("storing headers")) {
            self.rewind_mmr(&mut writer.mmr, start_leaves);
            return Err(error);
        }
        writer.mmr.store().mark_persisted();
        writer.last_header = Some(last);
        self.inner.header_height.store(top, Ordering::SeqCst);
        debug!(from = expected, to = top, "stored headers");
        Ok(())
    }

    /// Stores a block body whose header is already stored, and advances the
    /// block height over every contiguous body. Storing a body twice is a no-op.
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownHeader`] if its header is not the stored one,
    /// [`StoreError::BodyMismatch`] / [`StoreError::DataHashMismatch`] if the
    /// body is malformed or does not match the header.
    pub fn save_block(&self, block: &Block) -> Result<(), StoreError> {
        let height = block.header.height;
        let _writer = self.inner.writer()?;
        let header_height = self.header_height();
        if height == 0 || height > header_height {
            return Err(StoreError::UnknownHeader {
                height,
                reason: "no header is stored at this height",
            });
        }
        let stored_hash = self.with_row(height, |_, row| Ok(row.hash))?;
        if block.header.hash() != stored_hash {
            return Err(StoreError::UnknownHeader {
                height,
                reason: "the block's header is not the stored header",
            });
        }
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
        let body_key = keys::by_u64(keys::BODY, height);
        if self.inner.get(&body_key, "reading a block body")?.is_some() {
            return Ok(());
        }
        let encoded = raw::Block::from(block).encode_to_vec();
        let mut sizes = [0u8; 16];
        sizes[..8].copy_from_slice(&(encoded.len() as u64).to_be_bytes());
        sizes[8..].copy_from_slice(&(block.txs.len() as u64).to_be_bytes());
        let mut batch = sled::Batch::default();
        batch.insert(&body_key[..], encoded);
        batch.insert(&keys::by_u64(keys::BODY_SIZE, height)[..], &sizes[..]);
        let block_height = self.block_height();
        let mut top = block_height;
        if height == block_height + 1 {
            top = height;
            while top < header_height
                && self
                    .inner
                    .get(&keys::by_u64(keys::BODY, top + 1), "reading a block body")?
                    .is_some()
            {
                top += 1;
            }
            batch.insert(keys::BLOCK_HEIGHT, &top.to_be_bytes()[..]);
        }
        self.inner.commit(batch, "storing a block body")?;
        self.inner.block_height.store(top, Ordering::SeqCst);
        debug!(height, block_height = top, "stored block body");
        Ok(())
    }

    /// The block meta at `height` (header, id, and body size and transaction
    /// count once the body is stored), or `None` above the header height.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if the stored header or sizes do not decode.
    pub fn load_block_meta(&self, height: u64) -> Result<Option<BlockMeta>, StoreError> {
        if height == 0 || height > self.header_height() {
            return Ok(None);
        }
        let (hash, header) = self.with_row(height, |s, row| Ok((row.hash, s.header(row)?)))?;
        let (block_size, num_txs) = self.body_sizes(height)?;
        Ok(Some(BlockMeta {
            block_id: BlockId { hash },
            header,
            block_size,
            num_txs,
        }))
    }

    /// The header at `height`, or `None` above the header height.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if the stored header does not decode.
    pub fn load_header(&self, height: u64) -> Result<Option<Header>, StoreError> {
        if height == 0 || height > self.header_height() {
            return Ok(None);
        }
        self.with_row(height, |s, row| s.header(row)).map(Some)
    }

    /// The commit of the header at `height`, or `None` above the header height.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if the stored commit does not decode.
    pub fn load_commit(&self, height: u64) -> Result<Option<Commit>, StoreError> {
        if height == 0 || height > self.header_height() {
            return Ok(None);
        }
        self.with_row(height, |s, row| s.commit(row)).map(Some)
    }

    /// The header at `height` with its commit and, if the validator set
    /// changes at this height, the set: what a `HeadersResponse` carries.
    /// For several consecutive heights use [`Store::load_signed_headers`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if a stored part is missing or does not decode.
    pub fn load_signed_header(&self, height: u64) -> Result<Option<SignedHeader>, StoreError> {
        if height == 0 || height > self.header_height() {
            return Ok(None);
        }
        let (header, commit) =
            self.with_row(height, |s, row| Ok((s.header(row)?, s.commit(row)?)))?;
        let key = keys::by_u64(keys::VALIDATOR_SET, height);
        let validator_set = self
            .inner
            .get(&key, "reading a validator set")?
            .map(|v| decode_raw::<raw::ValidatorSet, ValidatorSet>(&key, &v, "validator set"))
            .transpose()?;
        Ok(Some(SignedHeader {
            header,
            commit,
            validator_set,
        }))
    }

    /// The signed headers at heights `start_height..start_height + count`,
    /// each as [`Store::load_signed_header`] gives it, stopping at the header
    /// height: what a server answering `GetHeaders` (50 headers) or a v2 range
    /// (250) sends. Reads each header segment once and the validator sets of
    /// the range with one scan, instead of a segment lookup per header.
    ///
    /// Empty if `start_height` is 0 or above the header height, or `count` is
    /// 0. The result holds every header of the range, so callers bound
    /// `count` (the protocol's limits do).
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if a stored part is missing or does not decode.
    pub fn load_signed_headers(
        &self,
        start_height: u64,
        count: u64,
    ) -> Result<Vec<SignedHeader>, StoreError> {
        let header_height = self.header_height();
        if start_height == 0 || start_height > header_height || count == 0 {
            return Ok(Vec::new());
        }
        let end = start_height.saturating_add(count - 1).min(header_height);
        let from = keys::by_u64(keys::VALIDATOR_SET, start_height);
        let to = keys::by_u64(keys::VALIDATOR_SET, end);
        let mut sets = std::collections::BTreeMap::new();
        for row in self.inner.db.range(from..=to) {
            let (key, value) = row.map_err(StoreError::engine("reading a validator set"))?;
            let height = keys::u64_at(&key, 1)
                .ok_or_else(|| StoreError::corrupt(&key, "malformed validator set key"))?;
            let set = decode_raw::<raw::ValidatorSet, ValidatorSet>(&key, &value, "validator set")?;
            sets.insert(height, set);
        }
        let len = usize::try_from(end - start_height + 1).unwrap_or(usize::MAX);
        let mut out = Vec::with_capacity(len.min(4 * MAX_SEGMENT_HEADERS));
        let mut next = start_height;
        while next <= end {
            let segment = segment::find_stored(&self.inner.db, next)?;
            let rows = segment.rows()?;
            let skip = usize::try_from(next - segment.first).unwrap_or(usize::MAX);
            if skip >= rows.len() {
                // Makes row() name the missing height.
                segment.row(next)?;
            }
            for row in rows.iter().skip(skip).take_while(|row| row.height <= end) {
                out.push(SignedHeader {
                    header: segment.header(row)?,
                    commit: segment.commit(row)?,
                    validator_set: sets.remove(&row.height),
                });
                next = row.height + 1;
            }
        }
        Ok(out)
    }

    /// As [`Store::load_signed_headers`], but each signed header in its
    /// protobuf encoding (a raw `SignedHeader`: header, commit, and the
    /// validator set where it changes), copied from the stored encodings
    /// without decoding them: for servers that splice headers into a
    /// response (`headway_wire::encoded`). The rows' structure is checked,
    /// their contents are not: they were checked when stored.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if a segment is missing or malformed.
    pub fn load_encoded_signed_headers(
        &self,
        start_height: u64,
        count: u64,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let header_height = self.header_height();
        if start_height == 0 || start_height > header_height || count == 0 {
            return Ok(Vec::new());
        }
        let end = start_height.saturating_add(count - 1).min(header_height);
        let from = keys::by_u64(keys::VALIDATOR_SET, start_height);
        let to = keys::by_u64(keys::VALIDATOR_SET, end);
        let mut sets = std::collections::BTreeMap::new();
        for row in self.inner.db.range(from..=to) {
            let (key, value) = row.map_err(StoreError::engine("reading a validator set"))?;
            let height = keys::u64_at(&key, 1)
                .ok_or_else(|| StoreError::corrupt(&key, "malformed validator set key"))?;
            sets.insert(height, value);
        }
        let len = usize::try_from(end - start_height + 1).unwrap_or(usize::MAX);
        let mut out = Vec::with_capacity(len.min(4 * MAX_SEGMENT_HEADERS));
        let mut next = start_height;
        while next <= end {
            let segment = segment::find_stored(&self.inner.db, next)?;
            let rows = segment.rows()?;
            let skip = usize::try_from(next - segment.first).unwrap_or(usize::MAX);
            if skip >= rows.len() {
                // Makes row() name the missing height.
                segment.row(next)?;
            }
            for row in rows.iter().skip(skip).take_while(|row| row.height <= end) {
                let (header, commit) = segment::Segment::encoded(row);
                let set = sets.remove(&row.height);
                out.push(headway_wire::encoded::signed_header_from_parts(
                    header,
                    commit,
                    set.as_deref(),
                ));
                next = row.height + 1;
            }
        }
        Ok(out)
    }

    /// The body sizes at `height`: `(block_size, num_txs)`, zero until the
    /// body is stored.
    fn body_sizes(&self, height: u64) -> Result<(u64, u64), StoreError> {
        let key = keys::by_u64(keys::BODY_SIZE, height);
        let Some(value) = self.inner.get(&key, "reading body sizes")? else {
            return Ok((0, 0));
        };
        match (
            value.len(),
            keys::u64_at(&value, 0),
            keys::u64_at(&value, 8),
        ) {
            (16, Some(size), Some(txs)) => Ok((size, txs)),
            _ => Err(StoreError::corrupt(
                &key,
                format!("body sizes are {} bytes, expected 16", value.len()),
            )),
        }
    }

    /// The block at `height` with its body, or `None` if its body is not
    /// stored, even when its meta is (seed 003, R6.2).
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if the stored body does not decode.
    pub fn load_block(&self, height: u64) -> Result<Option<Block>, StoreError> {
        if height == 0 || height > self.header_height() {
            return Ok(None);
        }
        let key = keys::by_u64(keys::BODY, height);
        self.inner
            .get(&key, "reading a block body")?
            .map(|v| decode_raw::<raw::Block, Block>(&key, &v, "block"))
            .transpose()
    }

    /// The height of the stored header with this hash.
    ///
    /// The index yields candidate heights (by the hash's first 8 bytes); the
    /// answer is the one whose stored header has this hash.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if an index page or a header segment is
    /// missing or malformed.
    pub fn height_of(&self, hash: &Hash) -> Result<Option<u64>, StoreError> {
        let candidates = self
            .inner
            .hash_index
            .read()
            .map_err(|_| StoreError::Poisoned)?
            .candidates(&self.inner.db, &hash.0)?;
        let header_height = self.header_height();
        for height in candidates {
            if height == 0 || height > header_height {
                continue;
            }
            if self.with_row(height, |_, row| Ok(row.hash == *hash))? {
                return Ok(Some(height));
            }
        }
        Ok(None)
    }

    /// The validator set in force at `height` (the one that signs the header
    /// at `height`): the last set stored at or below it. `None` above the
    /// header height.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if the stored set does not decode.
    pub fn validator_set_at(&self, height: u64) -> Result<Option<ValidatorSet>, StoreError> {
        if height == 0 || height > self.header_height() {
            return Ok(None);
        }
        let from = keys::by_u64(keys::VALIDATOR_SET, 0);
        let to = keys::by_u64(keys::VALIDATOR_SET, height);
        let Some(entry) = self.inner.db.range(from..=to).next_back() else {
            return Ok(None);
        };
        let (key, value) = entry.map_err(StoreError::engine("reading a validator set"))?;
        decode_raw::<raw::ValidatorSet, ValidatorSet>(&key, &value, "validator set").map(Some)
    }

    /// Brings the in-memory MMR back to `leaves` after a failed batch.
    fn rewind_mmr(&self, mmr: &mut Mmr<SledNodes>, leaves: u64) {
        if mmr.truncate(leaves).is_ok() {
            return;
        }
        warn!(
            leaves,
            "rewinding the history MMR failed; reloading it from disk"
        );
        let nodes = node_count_for_leaves(leaves).unwrap_or(0);
        if let Ok(fresh) = Mmr::new(SledNodes::new(self.inner.db.clone(), nodes)) {
            *mmr = fresh;
        }
    }
}

/// Checks and stages the rows of a header batch starting at `expected`
/// (header segments, hash index entries, validator sets); appends to the MMR
/// (pending nodes). Returns the new top header's facts.
fn stage_headers(
    db: &sled::Db,
    mmr: &mut Mmr<SledNodes>,
    mut last: Option<LastHeader>,
    expected: u64,
    headers: &[SignedHeader],
    batch: &mut sled::Batch,
    entries: &mut Vec<hash_index::Entry>,
) -> Result<LastHeader, StoreError> {
    segment::remove_from(db, expected, batch)?;
    let mut segment = SegmentBuilder::new(expected);
    for (index, signed) in headers.iter().enumerate() {
        let header = &signed.header;
        let height = expected + index as u64;
        if header.height != height {
            return Err(StoreError::NonContiguousBatch {
                index,
                expected: height,
                got: header.height,
            });
        }
        signed
            .validate()
            .map_err(|source| StoreError::InvalidSignedHeader { height, source })?;
        let hash = header.hash();
        if signed.commit.block_id.hash != hash {
            return Err(StoreError::CommitMismatch {
                height,
                reason: "commit.block_id.hash is not the header hash",
            });
        }
        let set_changes = match &last {
            None => true,
            Some(prev) => {
                let linked = header.last_block_id.map(|id| id.hash).unwrap_or(Hash::ZERO);
                if linked != prev.hash {
                    return Err(StoreError::BrokenLinkage {
                        height,
                        expected: prev.hash,
                        got: linked,
                    });
                }
                if header.chain_id != prev.chain_id {
                    return Err(StoreError::ChainIdMismatch {
                        height,
                        expected: prev.chain_id.clone(),
                        got: header.chain_id.clone(),
                    });
                }
                header.validators_hash != prev.validators_hash
            }
        };
        match &signed.validator_set {
            Some(set) if set.hash() != header.validators_hash => {
                return Err(StoreError::ValidatorSetMismatch {
                    height,
                    expected: header.validators_hash,
                });
            }
            Some(set) if set_changes => {
                batch.insert(
                    &keys::by_u64(keys::VALIDATOR_SET, height)[..],
                    raw::ValidatorSet::from(set).encode_to_vec(),
                );
            }
            Some(_) => {}
            None if set_changes => return Err(StoreError::MissingValidatorSet { height }),
            None => {}
        }
        let root = Hash(mmr.root());
        if header.history_root != root {
            return Err(StoreError::HistoryRootMismatch {
                height,
                expected: root,
                got: header.history_root,
            });
        }
        mmr.append(&hash.0)?;
        if segment.len() == MAX_SEGMENT_HEADERS {
            let full = std::mem::replace(&mut segment, SegmentBuilder::new(height));
            if let Some((key, value)) = full.finish() {
                batch.insert(&key[..], value);
            }
        }
        segment.push(&hash, header, &signed.commit);
        entries.push((hash_index::fingerprint(&hash.0), height));
        last = Some(LastHeader {
            hash,
            validators_hash: header.validators_hash,
            chain_id: header.chain_id.clone(),
        });
    }
    if let Some((key, value)) = segment.finish() {
        batch.insert(&key[..], value);
    }
    last.ok_or(StoreError::EmptyBatch)
}
