//! The block store (seed 003, R4 and R6): headers and commits stored as block
//! metas without bodies, a header height apart from the contiguous block
//! height, a hash index, validator sets where they change, and bodies.

use std::sync::atomic::Ordering;

use headway_chain::{HeaderExt as _, ValidatorSetExt as _, data_hash};
use headway_mmr::Mmr;
use headway_wire::{
    Block, BlockId, BlockMeta, Commit, Hash, Header, SignedHeader, ValidatorSet, raw,
};
use prost::Message as _;
use tracing::{debug, warn};

use crate::history::{SledNodes, node_count_for_leaves};
use crate::keys;
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

    /// Stores a verified batch of signed headers as block metas without
    /// bodies, with their commits, hash index entries, validator sets where
    /// they change, and history MMR nodes: one atomic, flushed batch.
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
        let staged = stage_headers(
            &mut writer.mmr,
            writer.last_header.clone(),
            expected,
            headers,
            &mut batch,
        );
        let last = match staged {
            Ok(last) => last,
            Err(error) => {
                self.rewind_mmr(&mut writer.mmr, start_leaves);
                return Err(error);
            }
        };
        let top = expected + headers.len() as u64 - 1;
        writer.mmr.store().stage(&mut batch);
        batch.insert(keys::HEADER_HEIGHT, &top.to_be_bytes()[..]);
        if let Err(error) = self.inner.commit(batch, "storing headers") {
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
        let mut meta = read_meta(&self.inner.db, height)?.ok_or_else(|| {
            StoreError::corrupt(
                &keys::by_u64(keys::HEADER_META, height),
                "header missing below the header height",
            )
        })?;
        if block.header.hash() != meta.block_id.hash {
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
        meta.block_size = encoded.len() as u64;
        meta.num_txs = block.txs.len() as u64;
        let mut batch = sled::Batch::default();
        batch.insert(&body_key[..], encoded);
        batch.insert(
            &keys::by_u64(keys::HEADER_META, height)[..],
            raw::BlockMeta::from(&meta).encode_to_vec(),
        );
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
    /// [`StoreError::Corrupt`] if the stored meta does not decode.
    pub fn load_block_meta(&self, height: u64) -> Result<Option<BlockMeta>, StoreError> {
        if height == 0 || height > self.header_height() {
            return Ok(None);
        }
        read_meta(&self.inner.db, height)
    }

    /// The header at `height`, or `None` above the header height.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if the stored meta does not decode.
    pub fn load_header(&self, height: u64) -> Result<Option<Header>, StoreError> {
        Ok(self.load_block_meta(height)?.map(|meta| meta.header))
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
        let key = keys::by_u64(keys::COMMIT, height);
        self.inner
            .get(&key, "reading a commit")?
            .map(|v| decode_raw::<raw::Commit, Commit>(&key, &v, "commit"))
            .transpose()
    }

    /// The header at `height` with its commit and, if the validator set
    /// changes at this height, the set: what a `HeadersResponse` carries.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if a stored part is missing or does not decode.
    pub fn load_signed_header(&self, height: u64) -> Result<Option<SignedHeader>, StoreError> {
        let Some(meta) = self.load_block_meta(height)? else {
            return Ok(None);
        };
        let commit = self.load_commit(height)?.ok_or_else(|| {
            StoreError::corrupt(
                &keys::by_u64(keys::COMMIT, height),
                "commit missing for a stored header",
            )
        })?;
        let key = keys::by_u64(keys::VALIDATOR_SET, height);
        let validator_set = self
            .inner
            .get(&key, "reading a validator set")?
            .map(|v| decode_raw::<raw::ValidatorSet, ValidatorSet>(&key, &v, "validator set"))
            .transpose()?;
        Ok(Some(SignedHeader {
            header: meta.header,
            commit,
            validator_set,
        }))
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
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if the index entry does not decode.
    pub fn height_of(&self, hash: &Hash) -> Result<Option<u64>, StoreError> {
        let key = keys::hash_index(&hash.0);
        let Some(value) = self.inner.get(&key, "reading the hash index")? else {
            return Ok(None);
        };
        let height = keys::decode_u64(&value).map_err(|what| StoreError::corrupt(&key, what))?;
        Ok((height <= self.header_height()).then_some(height))
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

/// Checks and stages the rows of a header batch starting at `expected`;
/// appends to the MMR (pending nodes). Returns the new top header's facts.
fn stage_headers(
    mmr: &mut Mmr<SledNodes>,
    mut last: Option<LastHeader>,
    expected: u64,
    headers: &[SignedHeader],
    batch: &mut sled::Batch,
) -> Result<LastHeader, StoreError> {
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
        let meta = BlockMeta {
            block_id: BlockId { hash },
            header: header.clone(),
            block_size: 0,
            num_txs: 0,
        };
        batch.insert(
            &keys::by_u64(keys::HEADER_META, height)[..],
            raw::BlockMeta::from(&meta).encode_to_vec(),
        );
        batch.insert(
            &keys::by_u64(keys::COMMIT, height)[..],
            raw::Commit::from(&signed.commit).encode_to_vec(),
        );
        batch.insert(&keys::hash_index(&hash.0)[..], &height.to_be_bytes()[..]);
        last = Some(LastHeader {
            hash,
            validators_hash: header.validators_hash,
            chain_id: header.chain_id.clone(),
        });
    }
    last.ok_or(StoreError::EmptyBatch)
}

/// Reads and decodes the block meta at `height`.
pub(crate) fn read_meta(db: &sled::Db, height: u64) -> Result<Option<BlockMeta>, StoreError> {
    let key = keys::by_u64(keys::HEADER_META, height);
    db.get(key)
        .map_err(StoreError::engine("reading a block meta"))?
        .map(|v| decode_raw::<raw::BlockMeta, BlockMeta>(&key, &v, "block meta"))
        .transpose()
}
