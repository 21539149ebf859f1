//! The block store (seed 003, R4 and R6): headers and commits stored without
//! bodies, a header height apart from the contiguous block height, a hash
//! index, validator sets where they change, and bodies. Headers-only sync
//! stores headers without their commits (format 4): `save_bare_headers`
//! shares `save_headers`' checks and staging (`stage_headers`, generic over
//! [`BatchHeader`]), and the row simply holds no commit.
//!
//! Format 3 keeps the per-header cost of a header batch low by writing few
//! sled keys: the batch's headers and commits go into header segments (up to
//! [`MAX_SEGMENT_HEADERS`] rows a value, see `segment.rs`), its MMR nodes into
//! one chunk (`history.rs`), its hash index entries into one sorted run
//! (`hash_index.rs`). Header rows are written once: a body's sizes go under
//! their own small key. Since format 5 the segments' bytes are appended to
//! the header log (`header_log.rs`) and sled holds pointers to them.

use std::sync::atomic::Ordering;

use headway_chain::{Hashed, HashedCompact, HeaderExt as _, ValidatorSetExt as _, data_hash};
use headway_mmr::{LeafHash, Mmr};
use headway_wire::encoded::HeaderFields;
use headway_wire::{
    BareHeader, Block, BlockId, BlockMeta, Commit, Hash, Header, SignedHeader, ValidatorSet,
    WireError, raw,
};

use prost::Message as _;
use tracing::{debug, warn};

use crate::hash_index;
use crate::header_log;
use crate::history::{self, FileNodes, node_count_for_leaves};
use crate::keys;
use crate::segment::{
    self, BuiltSegment, MAX_SEGMENT_HEADERS, Segment, SegmentBuilder, Stored, WholeSegment,
};
use crate::store::{LastHeader, decode_raw};
use crate::{Store, StoreError};

impl Store {
    /// The height of the highest stored header: headers `1..=header_height`
    /// are all stored, each with its commit unless it was stored by
    /// [`Store::save_bare_headers`] (see [`Store::bare_height`]). Header-only
    /// storage advances it.
    #[must_use]
    pub fn header_height(&self) -> u64 {
        self.inner.header_height.load(Ordering::SeqCst)
    }

    /// The highest height of a header stored without its commit (by
    /// [`Store::save_bare_headers`]), or 0 if every stored header has its
    /// commit. Persisted with the batches, so it survives a restart.
    ///
    /// Every header above it (`bare_height() + 1 ..= header_height()`) is
    /// stored with its commit, so signed headers can be served exactly for
    /// that range when the bare batches come first (the normal case:
    /// headers-only sync below a verified tip, then signed headers above
    /// it). It says nothing about the heights below it: a signed batch
    /// stored before a bare one keeps its commits there, and
    /// [`Store::load_signed_headers`] checks row by row.
    ///
    /// A batch updates it before the header height, so reading
    /// [`Store::header_height`] first and this second never shows a bare
    /// header as signed.
    #[must_use]
    pub fn bare_height(&self) -> u64 {
        self.inner.bare_height.load(Ordering::SeqCst)
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
    /// into header segments of at most 256 rows, the MMR nodes into one
    /// chunk and the hash index entries into one sorted run, so a batch
    /// costs few sled keys.
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
        self.save_batch(&[headers], "storing headers")
    }

    /// Stores a batch of headers *without their commits* (headers-only sync:
    /// headers verified by their hashes alone, against a history commitment
    /// in a verified header), with hash index entries, validator sets where
    /// they change, and history MMR nodes: one atomic, flushed batch, as
    /// [`Store::save_headers`] with exactly its checks except the commit's.
    /// Each header must link to the previous one, keep the chain id, carry
    /// the history root of the headers before it, and have its validator set
    /// attached where the set changes (and at height 1), the set hashing to
    /// its `validators_hash`.
    ///
    /// Bare and signed batches may follow each other in any order. The
    /// headers are then served by [`Store::load_header`],
    /// [`Store::load_bare_headers`], [`Store::height_of`] and the history
    /// proofs like any other, but not as signed headers:
    /// [`Store::load_commit`] and [`Store::load_signed_header`] give `None`
    /// for them, and [`Store::load_signed_headers`] stops before them.
    /// Raises [`Store::bare_height`] to the batch's last height.
    ///
    /// # Errors
    ///
    /// As [`Store::save_headers`] (never [`StoreError::CommitMismatch`]).
    /// Nothing is stored when an error is returned.
    pub fn save_bare_headers(&self, headers: &[BareHeader]) -> Result<(), StoreError> {
        self.save_batch(&[headers], "storing bare headers")
    }

    /// [`Store::save_headers`] for headers hashed already (by verification):
    /// the same checks and result, without hashing every header again.
    ///
    /// # Errors
    ///
    /// As [`Store::save_headers`].
    pub fn save_hashed_headers(&self, headers: &[Hashed<SignedHeader>]) -> Result<(), StoreError> {
        self.save_batch(&[headers], "storing headers")
    }

    /// [`Store::save_hashed_headers`] for a batch given in consecutive parts
    /// (say, ranges as they were downloaded): stored exactly as their
    /// concatenation would be, in one atomic, flushed batch, without the
    /// caller copying them into one slice first.
    ///
    /// # Errors
    ///
    /// As [`Store::save_headers`], with indexes counted across the parts.
    pub fn save_hashed_header_parts(
        &self,
        parts: &[&[Hashed<SignedHeader>]],
    ) -> Result<(), StoreError> {
        self.save_batch(parts, "storing headers")
    }

    /// [`Store::save_bare_headers`] for headers hashed already (by
    /// verification): the same checks and result, without hashing every
    /// header again.
    ///
    /// # Errors
    ///
    /// As [`Store::save_bare_headers`].
    pub fn save_hashed_bare_headers(
        &self,
        headers: &[Hashed<BareHeader>],
    ) -> Result<(), StoreError> {
        self.save_batch(&[headers], "storing bare headers")
    }

    /// [`Store::save_hashed_bare_headers`] for a batch given in consecutive
    /// parts, as [`Store::save_hashed_header_parts`].
    ///
    /// # Errors
    ///
    /// As [`Store::save_bare_headers`], with indexes counted across the parts.
    pub fn save_hashed_bare_header_parts(
        &self,
        parts: &[&[Hashed<BareHeader>]],
    ) -> Result<(), StoreError> {
        self.save_batch(parts, "storing bare headers")
    }

    /// [`Store::save_hashed_bare_header_parts`] for headers *proven* already:
    /// each of them is bound, by its hash linkage to a header whose
    /// inclusion was proven, into a history commitment taken from a verified
    /// header (a v2 range that passed `headway_chain::verify_range`). Their
    /// `history_root` fields are then the committed chain's, so the store
    /// checks the history root of the batch's *first* header only, against
    /// its own MMR (which keeps the MMR from drifting from the chain: every
    /// batch boundary is checked), and not after every append, which was
    /// about a sixth of the cost of storing a header. Every other check is
    /// the same.
    ///
    /// Only for headers proven that way: a header whose `history_root` is
    /// wrong inside the batch is stored (and a later batch's first check
    /// fails), where [`Store::save_hashed_bare_header_parts`] refuses it.
    ///
    /// # Errors
    ///
    /// As [`Store::save_bare_headers`], with indexes counted across the
    /// parts; [`StoreError::HistoryRootMismatch`] only for the first header.
    pub fn save_proven_bare_header_parts(
        &self,
        parts: &[&[Hashed<BareHeader>]],
    ) -> Result<(), StoreError> {
        self.save_batch_checked(parts, "storing proven bare headers", RootChecks::First)
    }

    /// Stores compact ranges proven into a verified commitment, as
    /// [`Store::save_proven_bare_header_parts`] stores bare headers, from
    /// their columns and hashes ([`HashedCompact`]): no header is made
    /// between the wire and the stored rows. The ranges must follow each
    /// other and the stored headers.
    ///
    /// # Errors
    ///
    /// As [`Store::save_proven_bare_header_parts`].
    pub fn save_proven_compact_parts(&self, parts: &[&HashedCompact]) -> Result<(), StoreError> {
        self.save_source(
            CompactParts(parts),
            "storing proven compact ranges",
            RootChecks::First,
        )
    }

    /// The one write path of header batches, signed or bare: checks and
    /// stages the rows and the hash index run, writes the segments to the
    /// header log and the MMR nodes to the node file (both synced), then
    /// commits the rows with the header and bare heights in one atomic,
    /// flushed sled batch. The batch is the concatenation of `parts`.
    fn save_batch<H: BatchHeader>(
        &self,
        parts: &[&[H]],
        context: &'static str,
    ) -> Result<(), StoreError> {
        self.save_batch_checked(parts, context, RootChecks::Every)
    }

    /// [`Store::save_batch`] with the history root checked as `roots` says.
    fn save_batch_checked<H: BatchHeader>(
        &self,
        parts: &[&[H]],
        context: &'static str,
        roots: RootChecks,
    ) -> Result<(), StoreError> {
        self.save_source(Parts(parts), context, roots)
    }

    /// [`Store::save_batch_checked`] of any [`StageSource`].
    fn save_source<'a>(
        &self,
        headers: impl StageSource<'a>,
        context: &'static str,
        roots: RootChecks,
    ) -> Result<(), StoreError> {
        let first_height = headers.first_height().ok_or(StoreError::EmptyBatch)?;
        let writer = &mut *self.inner.writer()?;
        let expected = self.header_height() + 1;
        if first_height != expected {
            return Err(StoreError::HeaderHeightGap {
                expected,
                got: first_height,
            });
        }
        let start_leaves = writer.mmr.leaf_count();
        let mut batch = sled::Batch::default();
        let mut entries = Vec::with_capacity(headers.len());
        let staged = stage_headers(
            &self.inner.db,
            &mut writer.mmr,
            writer.last_header.clone(),
            (expected, headers, roots),
            &mut batch,
            &mut entries,
        )
        .and_then(|staged| {
            self.append_segments(&staged.segments, &mut batch)?;
            Ok(staged)
        })
        .and_then(|staged| writer.mmr.store().persist().map(|()| staged))
        .and_then(|staged| {
            let index = self
                .inner
                .hash_index
                .read()
                .map_err(|_| StoreError::Poisoned)?;
            let next = index.stage(&self.inner.db, &mut batch, entries, expected)?;
            Ok((staged, next))
        });
        let (staged, next_index) = match staged {
            Ok(staged) => staged,
            Err(error) => {
                self.rewind_mmr(&mut writer.mmr, start_leaves);
                return Err(error);
            }
        };
        let top = expected + headers.len() as u64 - 1;
        // Every SYNC_EVERY_LEAVES leaves the node file is synced, before
        // the batch that records the new mark (see `history.rs`).
        let mut mmr_synced = writer.mmr_synced;
        if top - mmr_synced >= history::SYNC_EVERY_LEAVES {
            if let Err(error) = writer.mmr.store().file().sync() {
                self.rewind_mmr(&mut writer.mmr, start_leaves);
                return Err(error);
            }
            mmr_synced = top;
            batch.insert(keys::MMR_SYNCED, &top.to_be_bytes()[..]);
        }
        let bare = staged.bare_top.unwrap_or_else(|| self.bare_height());
        batch.insert(keys::HEADER_HEIGHT, &top.to_be_bytes()[..]);
        // Written with every batch, not only bare ones, so that a batch that
        // reached sled but whose flush failed cannot leave a stale value.
        batch.insert(keys::BARE_HEIGHT, &bare.to_be_bytes()[..]);
        let applied = match self.inner.hash_index.write() {
            Ok(mut index) => self
                .inner
                .db
                .apply_batch(batch)
                .map(|()| index.apply(next_index))
                .map_err(StoreError::engine(context)),
            Err(_) => Err(StoreError::Poisoned),
        };
        if let Err(error) = applied.and_then(|()| self.inner.flush_if_durable(context)) {
            self.rewind_mmr(&mut writer.mmr, start_leaves);
            return Err(error);
        }
        writer.mmr.store().mark_persisted();
        writer.mmr_synced = mmr_synced;
        writer.last_header = Some(staged.last);
        // The bare height first: see `bare_height`.
        self.inner.bare_height.store(bare, Ordering::SeqCst);
        self.inner.header_height.store(top, Ordering::SeqCst);
        debug!(
            from = expected,
            to = top,
            bare_height = bare,
            context,
            "stored a header batch"
        );
        Ok(())
    }

    /// Appends the batch's segments to the header log, synced, and stages
    /// the pointers to them: the log must hold a segment before sled can.
    fn append_segments(
        &self,
        segments: &[BuiltSegment],
        batch: &mut sled::Batch,
    ) -> Result<(), StoreError> {
        // Each segment's header part, then its commit part, back to back.
        let mut lens = Vec::with_capacity(segments.len());
        for segment in segments {
            let part_len = |part: &[u8]| {
                u32::try_from(part.len())
                    .ok()
                    .filter(|&len| len <= header_log::MAX_SEGMENT_BYTES / 2)
                    .ok_or_else(|| {
                        StoreError::corrupt(
                            &segment.key,
                            format!("a header segment part of {} bytes", part.len()),
                        )
                    })
            };
            lens.push((part_len(&segment.headers)?, part_len(&segment.commits)?));
        }
        let parts: Vec<&[u8]> = segments
            .iter()
            .flat_map(|segment| [&segment.headers[..], &segment.commits[..]])
            .collect();
        let mut offset = self.inner.log.append_synced(&parts)?;
        for (segment, (header_len, commit_len)) in segments.iter().zip(lens) {
            let pointer = header_log::Pointer {
                offset,
                header_len,
                commit_len,
            };
            batch.insert(&segment.key[..], &pointer.encode()[..]);
            offset = pointer.end();
        }
        batch.insert(keys::LOG_END, &offset.to_be_bytes()[..]);
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
        let stored_hash = self.with_header_row(height, |_, row| Ok(row.hash))?;
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
        let (hash, header) =
            self.with_header_row(height, |s, row| Ok((row.hash, s.header(row)?)))?;
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
        self.with_header_row(height, |s, row| s.header(row))
            .map(Some)
    }

    /// The commit of the header at `height`, or `None` above the header
    /// height or if the header was stored without its commit
    /// ([`Store::save_bare_headers`]).
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if the stored commit does not decode.
    pub fn load_commit(&self, height: u64) -> Result<Option<Commit>, StoreError> {
        if height == 0 || height > self.header_height() {
            return Ok(None);
        }
        self.with_row(height, |s, row| s.commit(row))
    }

    /// The header at `height` with its commit and, if the validator set
    /// changes at this height, the set: what a `HeadersResponse` carries.
    /// For several consecutive heights use [`Store::load_signed_headers`].
    ///
    /// `None` above the header height, and for a header stored without its
    /// commit ([`Store::save_bare_headers`]): a signed header needs its
    /// commit ([`Store::load_header`] still gives the header).
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if a stored part is missing or does not decode.
    pub fn load_signed_header(&self, height: u64) -> Result<Option<SignedHeader>, StoreError> {
        if height == 0 || height > self.header_height() {
            return Ok(None);
        }
        let parts = self.with_row(height, |s, row| {
            let Some(commit) = s.commit(row)? else {
                return Ok(None);
            };
            Ok(Some((s.header(row)?, commit)))
        })?;
        let Some((header, commit)) = parts else {
            return Ok(None);
        };
        let key = keys::by_u64(keys::VALIDATOR_SET, height);
        let validator_set = self
            .inner
            .get(&key, "reading a validator set")?
            .map(|v| decode_set(height, &v))
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
    /// Stops before the first header of the range stored without its commit
    /// ([`Store::save_bare_headers`]): the result is the longest prefix of the
    /// range whose headers are all signed, so it is empty if the header at
    /// `start_height` is bare. Heights above [`Store::bare_height`] are always
    /// signed.
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
        self.collect_range(start_height, count, |segment: &WholeSegment, row, set| {
            let Some(commit) = segment.commit(row)? else {
                return Ok(None);
            };
            Ok(Some(SignedHeader {
                header: segment.header(row)?,
                commit,
                validator_set: set.map(|set| decode_set(row.height, &set)).transpose()?,
            }))
        })
    }

    /// As [`Store::load_signed_headers`] (stopping before the first header
    /// stored without its commit, too), but each signed header in its
    /// protobuf encoding (a raw `SignedHeader`: header, commit, and the
    /// validator set where it changes), copied from the stored encodings
    /// without decoding them: for servers that splice headers into a
    /// response (`headway_wire::encoded`). The rows' structure is checked,
    /// their contents are not: they were checked when stored.
    ///
    /// Stops, too, before the header whose encoding would take the total
    /// past `max_bytes` (the first header is always returned): a server
    /// filling an answer up to a byte budget reads each segment of the range
    /// once, whatever the headers' sizes. `usize::MAX`: no byte limit.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if a segment is missing or malformed.
    pub fn load_encoded_signed_headers(
        &self,
        start_height: u64,
        count: u64,
        max_bytes: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut budget = Budget::new(max_bytes);
        self.collect_range(start_height, count, |_: &WholeSegment, row, set| {
            let (header, Some(commit)) = WholeSegment::encoded(row) else {
                return Ok(None);
            };
            let encoded =
                headway_wire::encoded::signed_header_from_parts(&header, commit, set.as_deref());
            Ok(budget.take(encoded))
        })
    }

    /// The headers at heights `start_height..start_height + count` without
    /// their commits, stopping at the header height: every stored header of
    /// the range, whether it was stored with its commit or without
    /// ([`Store::save_bare_headers`]), each with the validator set attached
    /// where the set changes (as [`Store::load_signed_headers`] attaches it):
    /// what a headers-only v2 range carries. Reads each header segment once
    /// and the validator sets of the range with one scan.
    ///
    /// Empty if `start_height` is 0 or above the header height, or `count` is
    /// 0. The result holds every header of the range, so callers bound
    /// `count`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if a stored part is missing or does not decode.
    pub fn load_bare_headers(
        &self,
        start_height: u64,
        count: u64,
    ) -> Result<Vec<BareHeader>, StoreError> {
        self.collect_range(start_height, count, |segment: &Segment, row, set| {
            Ok(Some(BareHeader {
                header: segment.header(row)?,
                validator_set: set.map(|set| decode_set(row.height, &set)).transpose()?,
            }))
        })
    }

    /// As [`Store::load_bare_headers`], but each bare header in its protobuf
    /// encoding (a raw `BareHeader`: header, and the validator set where it
    /// changes), built from the stored encodings without decoding them
    /// (`headway_wire::encoded::bare_header_from_parts`). The rows'
    /// structure is checked, their contents are not: they were checked when
    /// stored. Only the header parts of the segments are read, not their
    /// commits.
    ///
    /// Stops before the header whose encoding would take the total past
    /// `max_bytes`, as [`Store::load_encoded_signed_headers`] does.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if a segment is missing or malformed.
    pub fn load_encoded_bare_headers(
        &self,
        start_height: u64,
        count: u64,
        max_bytes: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut budget = Budget::new(max_bytes);
        self.collect_range(start_height, count, |_: &Segment, row, set| {
            let encoded = headway_wire::encoded::bare_header_from_parts(
                &Segment::encoded_header(row),
                set.as_deref(),
            );
            Ok(budget.take(encoded))
        })
    }

    /// Walks the headers of heights `start_height..start_height + count` (up
    /// to the header height), signed or bare, giving `visit` each one's
    /// encoded `Header` and, where one is attached, its encoded
    /// `ValidatorSet`, in height order and without copying either, until
    /// `visit` returns `false`. Returns how many `visit` accepted. This is
    /// what a server needs to transcode a range into another encoding (a
    /// compact range, say) without a vector per header.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if a segment is missing or malformed.
    pub fn visit_encoded_header_parts(
        &self,
        start_height: u64,
        count: u64,
        mut visit: impl FnMut(&[u8], Option<&[u8]>) -> bool,
    ) -> Result<u64, StoreError> {
        let mut accepted = 0;
        self.walk_range(start_height, count, |_: &Segment, row, set| {
            let more = visit(&Segment::encoded_header(row), set.as_deref());
            accepted += u64::from(more);
            Ok(more)
        })?;
        Ok(accepted)
    }

    /// As [`Store::visit_encoded_header_parts`], but each header given by
    /// its fields ([`HeaderFields`](headway_wire::encoded::HeaderFields)),
    /// as delta rows hold them, and not encoded: what a server building a
    /// compact range needs
    /// ([`CompactRangeBuilder::push_fields`](headway_wire::encoded::CompactRangeBuilder::push_fields)),
    /// without a protobuf encoding or parse per header. The validator set
    /// stays encoded.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if a segment is missing or malformed, or a
    /// protobuf row (an earlier format's) is not a canonical `Header`.
    pub fn visit_header_fields(
        &self,
        start_height: u64,
        count: u64,
        mut visit: impl FnMut(&headway_wire::encoded::HeaderFields<'_>, Option<&[u8]>) -> bool,
    ) -> Result<u64, StoreError> {
        let mut accepted = 0;
        self.walk_range(start_height, count, |segment: &Segment, row, set| {
            let more = visit(&segment.header_fields(row)?, set.as_deref());
            accepted += u64::from(more);
            Ok(more)
        })?;
        Ok(accepted)
    }

    /// The range reader behind the `load_*_headers` methods: walks the stored
    /// rows of heights `start_height..start_height + count` (up to the header
    /// height) segment by segment, reading each segment once, and gives
    /// `visit` each row with the stored (encoded) validator set of its
    /// height, read for the whole range with one scan. Collects what `visit`
    /// returns, stopping before the first row for which it returns `None`.
    fn collect_range<S: Stored, T>(
        &self,
        start_height: u64,
        count: u64,
        mut visit: impl FnMut(&S, &S::Row<'_>, Option<sled::IVec>) -> Result<Option<T>, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let len = usize::try_from(count.min(self.header_height().saturating_sub(start_height) + 1))
            .unwrap_or(usize::MAX);
        let mut out = Vec::with_capacity(len.min(4 * MAX_SEGMENT_HEADERS));
        self.walk_range(start_height, count, |segment: &S, row, set| {
            Ok(match visit(segment, row, set)? {
                Some(item) => {
                    out.push(item);
                    true
                }
                None => false,
            })
        })?;
        Ok(out)
    }

    /// What [`Store::collect_range`] walks: `visit` gets each row in
    /// order until it returns `false`.
    fn walk_range<S: Stored>(
        &self,
        start_height: u64,
        count: u64,
        mut visit: impl FnMut(&S, &S::Row<'_>, Option<sled::IVec>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let header_height = self.header_height();
        if start_height == 0 || start_height > header_height || count == 0 {
            return Ok(());
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
        let mut next = start_height;
        while next <= end {
            let segment: S = segment::find_stored(&self.inner.db, &self.inner.log, next)?;
            let rows = segment.rows()?;
            let skip = usize::try_from(next - segment.segment().first).unwrap_or(usize::MAX);
            if skip >= rows.len() {
                // Makes row() name the missing height.
                segment.segment().row(next)?;
            }
            for row in rows
                .iter()
                .skip(skip)
                .take_while(|row| S::height(row) <= end)
            {
                let height = S::height(row);
                if !visit(&segment, row, sets.remove(&height))? {
                    return Ok(());
                }
                next = height + 1;
            }
        }
        Ok(())
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
            if self.with_header_row(height, |_, row| Ok(row.hash == *hash))? {
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
    fn rewind_mmr(&self, mmr: &mut Mmr<FileNodes>, leaves: u64) {
        if mmr.truncate(leaves).is_ok() {
            return;
        }
        warn!(
            leaves,
            "rewinding the history MMR failed; reloading it from disk"
        );
        let nodes = node_count_for_leaves(leaves).unwrap_or(0);
        if let Ok(fresh) = Mmr::new(FileNodes::new(self.inner.nodes.clone(), nodes)) {
            *mmr = fresh;
        }
    }
}

/// Decodes the validator set stored at `height`.
fn decode_set(height: u64, bytes: &[u8]) -> Result<ValidatorSet, StoreError> {
    let key = keys::by_u64(keys::VALIDATOR_SET, height);
    decode_raw::<raw::ValidatorSet, ValidatorSet>(&key, bytes, "validator set")
}

/// A header of a batch as the one staging path ([`stage_headers`]) sees it:
/// a signed header, or a bare one (no commit to check or store).
trait BatchHeader {
    /// The header.
    fn header(&self) -> &Header;
    /// The commit stored with it (`None`: stored without one).
    fn commit(&self) -> Option<&Commit>;
    /// The validator set attached to it.
    fn validator_set(&self) -> Option<&ValidatorSet>;
    /// Checks its parts' shape rules.
    fn validate(&self) -> Result<(), WireError>;
    /// The header hash: computed here, or the one [`Hashed`] computed.
    fn hash(&self) -> Hash {
        self.header().hash()
    }
}

impl<T: BatchHeader> BatchHeader for Hashed<T> {
    fn header(&self) -> &Header {
        self.value().header()
    }
    fn commit(&self) -> Option<&Commit> {
        self.value().commit()
    }
    fn validator_set(&self) -> Option<&ValidatorSet> {
        self.value().validator_set()
    }
    fn validate(&self) -> Result<(), WireError> {
        self.value().validate()
    }
    fn hash(&self) -> Hash {
        Hashed::hash(self)
    }
}

impl BatchHeader for SignedHeader {
    fn header(&self) -> &Header {
        &self.header
    }
    fn commit(&self) -> Option<&Commit> {
        Some(&self.commit)
    }
    fn validator_set(&self) -> Option<&ValidatorSet> {
        self.validator_set.as_ref()
    }
    fn validate(&self) -> Result<(), WireError> {
        SignedHeader::validate(self)
    }
}

impl BatchHeader for BareHeader {
    fn header(&self) -> &Header {
        &self.header
    }
    fn commit(&self) -> Option<&Commit> {
        None
    }
    fn validator_set(&self) -> Option<&ValidatorSet> {
        self.validator_set.as_ref()
    }
    fn validate(&self) -> Result<(), WireError> {
        BareHeader::validate(self)
    }
}

/// The byte limit of an encoded range read: the first encoding is always
/// taken, then each one while the total stays within `max_bytes`.
struct Budget {
    max_bytes: usize,
    used: Option<usize>,
}

impl Budget {
    fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            used: None,
        }
    }

    /// `Some(encoded)` if it fits (or is the first), else `None`: stop.
    fn take(&mut self, encoded: Vec<u8>) -> Option<Vec<u8>> {
        let total = match self.used {
            None => encoded.len(),
            Some(used) => used
                .checked_add(encoded.len())
                .filter(|&total| total <= self.max_bytes)?,
        };
        self.used = Some(total);
        Some(encoded)
    }
}

/// Which headers of a batch have their `history_root` checked against the
/// store's MMR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RootChecks {
    /// Every header (headers not proven otherwise).
    Every,
    /// The first only: the batch is proven into a verified commitment.
    First,
}

/// What [`stage_headers`] found about a batch it staged.
struct Staged {
    /// The new top header's facts.
    last: LastHeader,
    /// The highest height of the batch staged without a commit, if any.
    bare_top: Option<u64>,
    /// The batch's header segments (key and bytes), for the header log.
    segments: Vec<BuiltSegment>,
}

/// A header batch in consecutive parts, read as their concatenation.
struct Parts<'a, H>(&'a [&'a [H]]);

// Not derived: that would ask `H: Copy`.
impl<H> Clone for Parts<'_, H> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<H> Copy for Parts<'_, H> {}

impl<'a, H> Parts<'a, H> {
    fn iter(self) -> impl Iterator<Item = &'a H> {
        self.0.iter().flat_map(|part| part.iter())
    }
}

/// One header of a batch as [`stage_headers`] takes it.
struct StageItem<'a> {
    fields: HeaderFields<'a>,
    hash: Hash,
    commit: Option<&'a Commit>,
    validator_set: Option<&'a ValidatorSet>,
    /// Its shape check, by whoever made the item (a compact range is checked
    /// whole when it is hashed).
    valid: Result<(), WireError>,
}

/// A header batch as [`stage_headers`] reads it: headers as structs
/// ([`Parts`]) or compact ranges' columns ([`CompactParts`]).
trait StageSource<'a>: Copy {
    /// Headers in the batch.
    fn len(self) -> usize;
    /// The first header's height.
    fn first_height(self) -> Option<u64>;
    /// Calls `f` with each header in order, until it fails; how many it
    /// was called with. Internal iteration: each item is built where `f`
    /// takes it (an iterator moved each ~300-byte item through its
    /// adapters, about a tenth of what storing a compact range cost).
    fn try_for_each_item<E>(
        self,
        f: impl FnMut(StageItem<'a>) -> Result<(), E>,
    ) -> Result<usize, E>;
    /// Their hashes, in order.
    fn hashes(self) -> impl Iterator<Item = Hash>;
}

impl<'a, H: BatchHeader> StageSource<'a> for Parts<'a, H> {
    fn len(self) -> usize {
        self.0.iter().map(|part| part.len()).sum()
    }
    fn first_height(self) -> Option<u64> {
        self.iter().next().map(|item| item.header().height)
    }
    fn try_for_each_item<E>(
        self,
        mut f: impl FnMut(StageItem<'a>) -> Result<(), E>,
    ) -> Result<usize, E> {
        let mut count = 0;
        for item in self.iter() {
            f(StageItem {
                fields: HeaderFields::of(item.header()),
                hash: item.hash(),
                commit: item.commit(),
                validator_set: item.validator_set(),
                valid: item.validate(),
            })?;
            count += 1;
        }
        Ok(count)
    }
    fn hashes(self) -> impl Iterator<Item = Hash> {
        self.iter().map(BatchHeader::hash)
    }
}

/// Consecutive compact ranges, read as one batch of bare headers.
#[derive(Clone, Copy)]
struct CompactParts<'a>(&'a [&'a HashedCompact]);

impl<'a> StageSource<'a> for CompactParts<'a> {
    fn len(self) -> usize {
        self.0.iter().map(|part| part.len()).sum()
    }
    fn first_height(self) -> Option<u64> {
        self.0
            .iter()
            .find(|part| !part.is_empty())
            .map(|part| part.start_height())
    }
    fn try_for_each_item<E>(
        self,
        mut f: impl FnMut(StageItem<'a>) -> Result<(), E>,
    ) -> Result<usize, E> {
        let mut count = 0;
        for part in self.0 {
            for ((fields, set), hash) in part.fields().zip(part.hashes()) {
                f(StageItem {
                    fields,
                    hash: *hash,
                    commit: None,
                    validator_set: set,
                    valid: Ok(()),
                })?;
                count += 1;
            }
        }
        Ok(count)
    }
    fn hashes(self) -> impl Iterator<Item = Hash> {
        self.0.iter().flat_map(|part| part.hashes().iter().copied())
    }
}

/// Checks and stages the rows of a header batch starting at `expected`
/// (header segments, hash index entries, validator sets), with history roots
/// checked as `roots` says; appends to the MMR (pending nodes). The one path of signed and bare batches: a header without
/// a commit skips the commit's check and is stored without it.
fn stage_headers<'a, S: StageSource<'a>>(
    db: &sled::Db,
    mmr: &mut Mmr<FileNodes>,
    last: Option<LastHeader>,
    (expected, headers, roots): (u64, S, RootChecks),
    batch: &mut sled::Batch,
    entries: &mut Vec<hash_index::Entry>,
) -> Result<Staged, StoreError> {
    let mut segments = Vec::with_capacity(headers.len().div_ceil(MAX_SEGMENT_HEADERS));
    segment::remove_from(db, expected, batch)?;
    // A validator set row above the header height is as stale: without this,
    // a batch with no set change at its height would leave it in force.
    keys::remove_from(db, keys::VALIDATOR_SET, expected, batch)?;
    let mut segment = SegmentBuilder::new(expected);
    let mut bare_top = None;
    // The previous header's hash, validator set hash and chain id: borrowed,
    // so that a batch clones no chain id per header.
    let mut prev: Option<(Hash, [u8; 32], &[u8])> = last
        .as_ref()
        .map(|l| (l.hash, l.validators_hash.0, l.chain_id.as_bytes()));
    let mut index = 0;
    let count = headers.try_for_each_item(|item| {
        let header = &item.fields;
        let height = expected + index as u64;
        if header.height != height {
            return Err(StoreError::NonContiguousBatch {
                index,
                expected: height,
                got: header.height,
            });
        }
        item.valid
            .map_err(|source| StoreError::InvalidSignedHeader { height, source })?;
        let hash = item.hash;
        let commit = item.commit;
        match commit {
            Some(commit) if commit.block_id.hash != hash => {
                return Err(StoreError::CommitMismatch {
                    height,
                    reason: "commit.block_id.hash is not the header hash",
                });
            }
            Some(_) => {}
            None => bare_top = Some(height),
        }
        let set_changes = match prev {
            None => true,
            Some((prev_hash, prev_validators_hash, prev_chain_id)) => {
                let linked = Hash(header.parent_hash.unwrap_or(Hash::ZERO.0));
                if linked != prev_hash {
                    return Err(StoreError::BrokenLinkage {
                        height,
                        expected: prev_hash,
                        got: linked,
                    });
                }
                if header.chain_id != prev_chain_id {
                    return Err(StoreError::ChainIdMismatch {
                        height,
                        expected: String::from_utf8_lossy(prev_chain_id).into_owned(),
                        got: String::from_utf8_lossy(header.chain_id).into_owned(),
                    });
                }
                header.validators_hash != prev_validators_hash
            }
        };
        match item.validator_set {
            Some(set) if set.hash().0 != header.validators_hash => {
                return Err(StoreError::ValidatorSetMismatch {
                    height,
                    expected: Hash(header.validators_hash),
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
        if index == 0 || roots == RootChecks::Every {
            let root = Hash(mmr.root());
            if *header.history_root != root.0 {
                return Err(StoreError::HistoryRootMismatch {
                    height,
                    expected: root,
                    got: Hash(*header.history_root),
                });
            }
        }
        if roots == RootChecks::Every {
            mmr.append(&hash.0)?;
        }
        if segment.len() == MAX_SEGMENT_HEADERS {
            // Room for another segment like the full one, with some slack.
            let (headers, commits) = segment.part_lens();
            let next =
                SegmentBuilder::with_capacity(height, headers + headers / 8, commits + commits / 8);
            let full = std::mem::replace(&mut segment, next);
            segments.extend(full.finish());
        }
        segment.push_fields(&hash, header, commit);
        entries.push((hash_index::fingerprint(&hash.0), height));
        prev = Some((hash, header.validators_hash, header.chain_id));
        index += 1;
        Ok(())
    })?;
    segments.extend(segment.finish());
    if count != headers.len() {
        // A source whose items stop short of its length: nothing to store.
        return Err(StoreError::NonContiguousBatch {
            index: count,
            expected: expected + count as u64,
            got: expected + count as u64 - 1,
        });
    }
    if roots == RootChecks::First {
        // No root is asked for between these leaves: the root's hash state
        // is brought up to date once.
        mmr.extend_leaf_hashes(headers.hashes().map(|hash| LeafHash::of(&hash.0)))?;
    }
    let (hash, validators_hash, chain_id) = prev.ok_or(StoreError::EmptyBatch)?;
    let last = LastHeader {
        hash,
        validators_hash: Hash(validators_hash),
        chain_id: String::from_utf8_lossy(chain_id).into_owned(),
    };
    Ok(Staged {
        last,
        bare_top,
        segments,
    })
}
