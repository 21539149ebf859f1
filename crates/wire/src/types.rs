//! Validated chain data: headers, commits, validator sets, blocks.
//!
//! Each type converts from its raw protobuf form with `TryFrom`, which checks
//! every rule of `docs/protocol.md` (lengths, limits, ordering) and returns a
//! [`WireError`] naming the rule that failed. Hashing and signature checks are
//! not done here: they belong to `headway-chain`.

use std::fmt;

use crate::{WireError, limits::*, raw};

/// A 32-byte hash (SHA-256 output, header hash, MMR root, state root).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

/// A validator address: the first 20 bytes of SHA-256 of its public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Address(pub [u8; 20]);

/// An Ed25519 public key, as its 32-byte encoding (not yet checked to be a valid point).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

/// An Ed25519 signature, as its 64-byte encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

macro_rules! hex_debug {
    ($($ty:ident),*) => {$(
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(", stringify!($ty))?;
                fmt::Display::fmt(self, f)?;
                f.write_str(")")
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
        impl AsRef<[u8]> for $ty {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }
    )*};
}
hex_debug!(Hash, Address, PublicKey, Signature);

impl Hash {
    /// The all-zero hash.
    pub const ZERO: Hash = Hash([0; 32]);
}

/// Identifies a block by its header hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BlockId {
    /// The header hash.
    pub hash: Hash,
}

/// A block header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Chain identifier: 1..=50 bytes of printable ASCII.
    pub chain_id: String,
    /// Height, starting at 1.
    pub height: u64,
    /// Block time, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The previous block; `None` exactly at height 1.
    pub last_block_id: Option<BlockId>,
    /// Commitment to the block's transactions.
    pub data_hash: Hash,
    /// Hash of the validator set that signs this block.
    pub validators_hash: Hash,
    /// Hash of the validator set that signs the next block.
    pub next_validators_hash: Hash,
    /// Per-prefix EllipticSum state commitment after this block.
    pub state_root: Hash,
    /// MMR root over the hashes of headers `1..height`.
    pub history_root: Hash,
    /// The proposer's address.
    pub proposer_address: Address,
}

/// One validator's signature in a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitSig {
    /// The signer's address.
    pub validator_address: Address,
    /// Signature over the vote sign bytes.
    pub signature: Signature,
}

/// The signatures that finalize a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Height of the committed block.
    pub height: u64,
    /// Consensus round.
    pub round: u32,
    /// The committed block.
    pub block_id: BlockId,
    /// Signatures, strictly ascending by validator address (so no duplicates).
    pub signatures: Vec<CommitSig>,
}

/// A validator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validator {
    /// Its Ed25519 public key.
    pub pub_key: PublicKey,
    /// Its voting power, at least 1.
    pub voting_power: u64,
}

/// A validator set: 1..=[`MAX_VALIDATORS`] validators strictly ascending by
/// public key, with total power at most [`MAX_TOTAL_VOTING_POWER`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorSet {
    /// The validators, in canonical order.
    pub validators: Vec<Validator>,
}

/// A header, its commit, and the validator set when it changes here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeader {
    /// The header.
    pub header: Header,
    /// The commit that finalizes it.
    pub commit: Commit,
    /// The header's validator set, present when it differs from the previous header's.
    pub validator_set: Option<ValidatorSet>,
}

/// A header without its commit, and the validator set when it changes here:
/// what a headers-only v2 range carries (trusted by hashes alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BareHeader {
    /// The header.
    pub header: Header,
    /// The header's validator set, present when it differs from the previous header's.
    pub validator_set: Option<ValidatorSet>,
}

/// A state write: set `key` to `value`, or delete `key` when `value` is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The key; its first byte is the state prefix.
    pub key: Vec<u8>,
    /// The new value, or `None` to delete.
    pub value: Option<Vec<u8>>,
}

/// A transaction: an ordered, non-empty list of writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// The writes, applied in order.
    pub writes: Vec<Write>,
}

/// A block: header and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The header.
    pub header: Header,
    /// The transactions.
    pub txs: Vec<Transaction>,
}

/// What a block store keeps per height, with or without the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockMeta {
    /// The block's id.
    pub block_id: BlockId,
    /// The header.
    pub header: Header,
    /// Size of the encoded block, in bytes.
    pub block_size: u64,
    /// Number of transactions.
    pub num_txs: u64,
}

// ------------------------------------------------------------ validation

impl Header {
    /// Checks the rules a header must meet on its own.
    pub fn validate(&self) -> Result<(), WireError> {
        check_chain_id("header.chain_id", &self.chain_id)?;
        if self.height == 0 {
            return Err(WireError::ZeroHeight {
                field: "header.height",
            });
        }
        match (self.height, &self.last_block_id) {
            (1, Some(_)) => Err(WireError::Invalid {
                field: "header.last_block_id",
                rule: "must be absent at height 1",
            }),
            (2.., None) => Err(WireError::Missing {
                field: "header.last_block_id",
            }),
            _ => Ok(()),
        }
    }
}

impl Commit {
    /// Checks the rules a commit must meet on its own.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.height == 0 {
            return Err(WireError::ZeroHeight {
                field: "commit.height",
            });
        }
        if self.signatures.is_empty() {
            return Err(WireError::Empty {
                field: "commit.signatures",
            });
        }
        check_count("commit.signatures", self.signatures.len(), MAX_VALIDATORS)?;
        check_strictly_ascending("commit.signatures", &self.signatures, |a, b| {
            a.validator_address.cmp(&b.validator_address)
        })
    }
}

impl ValidatorSet {
    /// Checks the rules a validator set must meet on its own.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.validators.is_empty() {
            return Err(WireError::Empty {
                field: "validator_set.validators",
            });
        }
        check_count(
            "validator_set.validators",
            self.validators.len(),
            MAX_VALIDATORS,
        )?;
        check_strictly_ascending("validator_set.validators", &self.validators, |a, b| {
            a.pub_key.cmp(&b.pub_key)
        })?;
        let mut total: u64 = 0;
        for v in &self.validators {
            if v.voting_power == 0 {
                return Err(WireError::Empty {
                    field: "validator.voting_power",
                });
            }
            total = total.saturating_add(v.voting_power);
        }
        if total > MAX_TOTAL_VOTING_POWER {
            return Err(WireError::Invalid {
                field: "validator_set.validators",
                rule: "total voting power is over MAX_TOTAL_VOTING_POWER",
            });
        }
        Ok(())
    }

    /// The total voting power (cannot overflow for a validated set).
    pub fn total_voting_power(&self) -> u64 {
        self.validators
            .iter()
            .fold(0u64, |acc, v| acc.saturating_add(v.voting_power))
    }
}

impl SignedHeader {
    /// An upper bound on the size of this signed header's protobuf encoding,
    /// computed from field counts alone (no encoding, no copies): for
    /// response budgets. Every field is fixed-size except the chain id
    /// (at most [`crate::limits::MAX_CHAIN_ID_LEN`] bytes) and the varints,
    /// which are counted at their widest.
    #[must_use]
    pub fn encoded_len_bound(&self) -> usize {
        // Tag and length prefixes are counted at 1 + 5 bytes per submessage
        // and field; hashes as 2 + 32, addresses 2 + 20, signatures 2 + 64,
        // public keys 2 + 32, varints 1 + 10.
        const SUB: usize = 6;
        const HASH: usize = 2 + 32;
        const VARINT: usize = 1 + 10;
        const HEADER: usize = SUB
            + (2 + crate::limits::MAX_CHAIN_ID_LEN)
            + 2 * VARINT
            + (SUB + HASH)
            + 5 * HASH
            + (2 + 20);
        const COMMIT: usize = SUB + 2 * VARINT + (SUB + HASH);
        const COMMIT_SIG: usize = SUB + (2 + 20) + (2 + 64);
        const VALIDATOR: usize = SUB + (2 + 32) + VARINT;
        let set = self
            .validator_set
            .as_ref()
            .map_or(0, |s| SUB + s.validators.len() * VALIDATOR);
        HEADER + COMMIT + self.commit.signatures.len() * COMMIT_SIG + set
    }

    /// Checks each part, and that the commit is for this header's height.
    pub fn validate(&self) -> Result<(), WireError> {
        self.header.validate()?;
        self.commit.validate()?;
        if let Some(set) = &self.validator_set {
            set.validate()?;
        }
        if self.commit.height != self.header.height {
            return Err(WireError::Invalid {
                field: "signed_header.commit.height",
                rule: "must equal the header's height",
            });
        }
        Ok(())
    }
}

impl BareHeader {
    /// An upper bound on the size of this bare header's protobuf encoding,
    /// as [`SignedHeader::encoded_len_bound`] computes it (without a commit).
    #[must_use]
    pub fn encoded_len_bound(&self) -> usize {
        const SUB: usize = 6;
        const HASH: usize = 2 + 32;
        const VARINT: usize = 1 + 10;
        const HEADER: usize = SUB
            + (2 + crate::limits::MAX_CHAIN_ID_LEN)
            + 2 * VARINT
            + (SUB + HASH)
            + 5 * HASH
            + (2 + 20);
        const VALIDATOR: usize = SUB + (2 + 32) + VARINT;
        let set = self
            .validator_set
            .as_ref()
            .map_or(0, |s| SUB + s.validators.len() * VALIDATOR);
        HEADER + set
    }

    /// Checks the header and the validator set.
    pub fn validate(&self) -> Result<(), WireError> {
        self.header.validate()?;
        if let Some(set) = &self.validator_set {
            set.validate()?;
        }
        Ok(())
    }
}

impl From<&SignedHeader> for BareHeader {
    fn from(signed: &SignedHeader) -> Self {
        BareHeader {
            header: signed.header.clone(),
            validator_set: signed.validator_set.clone(),
        }
    }
}

impl Write {
    /// Checks key and value bounds.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.key.is_empty() {
            return Err(WireError::Empty { field: "write.key" });
        }
        check_len("write.key", self.key.len(), MAX_KEY_LEN)?;
        if let Some(value) = &self.value {
            check_len("write.value", value.len(), MAX_VALUE_LEN)?;
        }
        Ok(())
    }
}

impl Transaction {
    /// Checks the writes.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.writes.is_empty() {
            return Err(WireError::Empty {
                field: "transaction.writes",
            });
        }
        check_count("transaction.writes", self.writes.len(), MAX_WRITES_PER_TX)?;
        for (i, w) in self.writes.iter().enumerate() {
            w.validate()
                .map_err(WireError::item("transaction.writes", i))?;
        }
        Ok(())
    }
}

impl Block {
    /// Checks the header and every transaction.
    pub fn validate(&self) -> Result<(), WireError> {
        self.header.validate()?;
        check_count("block.txs", self.txs.len(), MAX_TXS_PER_BLOCK)?;
        for (i, tx) in self.txs.iter().enumerate() {
            tx.validate().map_err(WireError::item("block.txs", i))?;
        }
        Ok(())
    }
}

impl BlockMeta {
    /// Checks the header and that the counts are plausible.
    pub fn validate(&self) -> Result<(), WireError> {
        self.header.validate()?;
        check_count(
            "block_meta.num_txs",
            usize::try_from(self.num_txs).unwrap_or(usize::MAX),
            MAX_TXS_PER_BLOCK,
        )
    }
}

/// A chain id: 1..=[`MAX_CHAIN_ID_LEN`] bytes of printable ASCII without spaces.
pub(crate) fn check_chain_id(field: &'static str, chain_id: &str) -> Result<(), WireError> {
    let id = chain_id.as_bytes();
    if id.is_empty() {
        return Err(WireError::Empty { field });
    }
    check_len(field, id.len(), MAX_CHAIN_ID_LEN)?;
    if !id.iter().all(u8::is_ascii_graphic) {
        return Err(WireError::Invalid {
            field,
            rule: "must be printable ASCII without spaces",
        });
    }
    Ok(())
}

pub(crate) fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), WireError> {
    if len > max {
        Err(WireError::TooLong {
            field,
            max,
            actual: len,
        })
    } else {
        Ok(())
    }
}

pub(crate) fn check_count(field: &'static str, count: usize, max: usize) -> Result<(), WireError> {
    if count > max {
        Err(WireError::TooMany {
            field,
            max,
            actual: count as u64,
        })
    } else {
        Ok(())
    }
}

pub(crate) fn check_strictly_ascending<T>(
    field: &'static str,
    items: &[T],
    cmp: impl Fn(&T, &T) -> std::cmp::Ordering,
) -> Result<(), WireError> {
    for (i, pair) in items.windows(2).enumerate() {
        match cmp(&pair[0], &pair[1]) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => {
                return Err(WireError::Duplicate {
                    field,
                    index: i + 1,
                });
            }
            std::cmp::Ordering::Greater => {
                return Err(WireError::Unsorted {
                    field,
                    index: i + 1,
                });
            }
        }
    }
    Ok(())
}

// ------------------------------------------------------------ raw -> domain

pub(crate) fn fixed<const N: usize>(
    field: &'static str,
    bytes: &[u8],
) -> Result<[u8; N], WireError> {
    <[u8; N]>::try_from(bytes).map_err(|_| WireError::Length {
        field,
        expected: N,
        actual: bytes.len(),
    })
}

pub(crate) fn hash(field: &'static str, bytes: &[u8]) -> Result<Hash, WireError> {
    fixed(field, bytes).map(Hash)
}

pub(crate) fn required<T>(field: &'static str, value: Option<T>) -> Result<T, WireError> {
    value.ok_or(WireError::Missing { field })
}

impl TryFrom<raw::BlockId> for BlockId {
    type Error = WireError;
    fn try_from(raw: raw::BlockId) -> Result<Self, WireError> {
        Ok(BlockId {
            hash: hash("block_id.hash", &raw.hash)?,
        })
    }
}

impl TryFrom<raw::Header> for Header {
    type Error = WireError;
    fn try_from(raw: raw::Header) -> Result<Self, WireError> {
        let header = Header {
            chain_id: raw.chain_id,
            height: raw.height,
            time_ms: raw.time_ms,
            last_block_id: raw.last_block_id.map(BlockId::try_from).transpose()?,
            data_hash: hash("header.data_hash", &raw.data_hash)?,
            validators_hash: hash("header.validators_hash", &raw.validators_hash)?,
            next_validators_hash: hash("header.next_validators_hash", &raw.next_validators_hash)?,
            state_root: hash("header.state_root", &raw.state_root)?,
            history_root: hash("header.history_root", &raw.history_root)?,
            proposer_address: Address(fixed("header.proposer_address", &raw.proposer_address)?),
        };
        header.validate()?;
        Ok(header)
    }
}

impl TryFrom<raw::CommitSig> for CommitSig {
    type Error = WireError;
    fn try_from(raw: raw::CommitSig) -> Result<Self, WireError> {
        Ok(CommitSig {
            validator_address: Address(fixed(
                "commit_sig.validator_address",
                &raw.validator_address,
            )?),
            signature: Signature(fixed("commit_sig.signature", &raw.signature)?),
        })
    }
}

impl TryFrom<raw::Commit> for Commit {
    type Error = WireError;
    fn try_from(raw: raw::Commit) -> Result<Self, WireError> {
        check_count("commit.signatures", raw.signatures.len(), MAX_VALIDATORS)?;
        let commit = Commit {
            height: raw.height,
            round: raw.round,
            block_id: required("commit.block_id", raw.block_id)?.try_into()?,
            signatures: try_items("commit.signatures", raw.signatures)?,
        };
        commit.validate()?;
        Ok(commit)
    }
}

impl TryFrom<raw::Validator> for Validator {
    type Error = WireError;
    fn try_from(raw: raw::Validator) -> Result<Self, WireError> {
        Ok(Validator {
            pub_key: PublicKey(fixed("validator.pub_key", &raw.pub_key)?),
            voting_power: raw.voting_power,
        })
    }
}

impl TryFrom<raw::ValidatorSet> for ValidatorSet {
    type Error = WireError;
    fn try_from(raw: raw::ValidatorSet) -> Result<Self, WireError> {
        check_count(
            "validator_set.validators",
            raw.validators.len(),
            MAX_VALIDATORS,
        )?;
        let set = ValidatorSet {
            validators: try_items("validator_set.validators", raw.validators)?,
        };
        set.validate()?;
        Ok(set)
    }
}

impl TryFrom<raw::SignedHeader> for SignedHeader {
    type Error = WireError;
    fn try_from(raw: raw::SignedHeader) -> Result<Self, WireError> {
        let signed = SignedHeader {
            header: required("signed_header.header", raw.header)?.try_into()?,
            commit: required("signed_header.commit", raw.commit)?.try_into()?,
            validator_set: raw.validator_set.map(ValidatorSet::try_from).transpose()?,
        };
        signed.validate()?;
        Ok(signed)
    }
}

impl TryFrom<raw::BareHeader> for BareHeader {
    type Error = WireError;
    fn try_from(raw: raw::BareHeader) -> Result<Self, WireError> {
        let bare = BareHeader {
            header: required("bare_header.header", raw.header)?.try_into()?,
            validator_set: raw.validator_set.map(ValidatorSet::try_from).transpose()?,
        };
        bare.validate()?;
        Ok(bare)
    }
}

impl TryFrom<raw::Write> for Write {
    type Error = WireError;
    fn try_from(raw: raw::Write) -> Result<Self, WireError> {
        let write = Write {
            key: raw.key,
            value: raw.value,
        };
        write.validate()?;
        Ok(write)
    }
}

impl TryFrom<raw::Transaction> for Transaction {
    type Error = WireError;
    fn try_from(raw: raw::Transaction) -> Result<Self, WireError> {
        check_count("transaction.writes", raw.writes.len(), MAX_WRITES_PER_TX)?;
        let tx = Transaction {
            writes: try_items("transaction.writes", raw.writes)?,
        };
        tx.validate()?;
        Ok(tx)
    }
}

impl TryFrom<raw::Block> for Block {
    type Error = WireError;
    fn try_from(raw: raw::Block) -> Result<Self, WireError> {
        check_count("block.txs", raw.txs.len(), MAX_TXS_PER_BLOCK)?;
        let block = Block {
            header: required("block.header", raw.header)?.try_into()?,
            txs: try_items("block.txs", raw.txs)?,
        };
        block.validate()?;
        Ok(block)
    }
}

impl TryFrom<raw::BlockMeta> for BlockMeta {
    type Error = WireError;
    fn try_from(raw: raw::BlockMeta) -> Result<Self, WireError> {
        let meta = BlockMeta {
            block_id: required("block_meta.block_id", raw.block_id)?.try_into()?,
            header: required("block_meta.header", raw.header)?.try_into()?,
            block_size: raw.block_size,
            num_txs: raw.num_txs,
        };
        meta.validate()?;
        Ok(meta)
    }
}

/// Converts every item of a repeated field, naming the index of a bad one.
pub(crate) fn try_items<R, T: TryFrom<R, Error = WireError>>(
    field: &'static str,
    items: Vec<R>,
) -> Result<Vec<T>, WireError> {
    // Collecting a `Result` iterator loses the size hint and regrows the
    // vector; decoding a commit does this once per header, so size it once.
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        out.push(T::try_from(item).map_err(WireError::item(field, i))?);
    }
    Ok(out)
}

// ------------------------------------------------------------ domain -> raw

impl From<&BlockId> for raw::BlockId {
    fn from(id: &BlockId) -> Self {
        raw::BlockId {
            hash: id.hash.0.to_vec(),
        }
    }
}

impl From<&Header> for raw::Header {
    fn from(h: &Header) -> Self {
        raw::Header {
            chain_id: h.chain_id.clone(),
            height: h.height,
            time_ms: h.time_ms,
            last_block_id: h.last_block_id.as_ref().map(Into::into),
            data_hash: h.data_hash.0.to_vec(),
            validators_hash: h.validators_hash.0.to_vec(),
            next_validators_hash: h.next_validators_hash.0.to_vec(),
            state_root: h.state_root.0.to_vec(),
            history_root: h.history_root.0.to_vec(),
            proposer_address: h.proposer_address.0.to_vec(),
        }
    }
}

impl From<&Commit> for raw::Commit {
    fn from(c: &Commit) -> Self {
        raw::Commit {
            height: c.height,
            round: c.round,
            block_id: Some((&c.block_id).into()),
            signatures: c
                .signatures
                .iter()
                .map(|s| raw::CommitSig {
                    validator_address: s.validator_address.0.to_vec(),
                    signature: s.signature.0.to_vec(),
                })
                .collect(),
        }
    }
}

impl From<&ValidatorSet> for raw::ValidatorSet {
    fn from(set: &ValidatorSet) -> Self {
        raw::ValidatorSet {
            validators: set
                .validators
                .iter()
                .map(|v| raw::Validator {
                    pub_key: v.pub_key.0.to_vec(),
                    voting_power: v.voting_power,
                })
                .collect(),
        }
    }
}

impl From<&SignedHeader> for raw::SignedHeader {
    fn from(s: &SignedHeader) -> Self {
        raw::SignedHeader {
            header: Some((&s.header).into()),
            commit: Some((&s.commit).into()),
            validator_set: s.validator_set.as_ref().map(Into::into),
        }
    }
}

impl From<&BareHeader> for raw::BareHeader {
    fn from(b: &BareHeader) -> Self {
        raw::BareHeader {
            header: Some((&b.header).into()),
            validator_set: b.validator_set.as_ref().map(Into::into),
        }
    }
}

impl From<&Transaction> for raw::Transaction {
    fn from(tx: &Transaction) -> Self {
        raw::Transaction {
            writes: tx
                .writes
                .iter()
                .map(|w| raw::Write {
                    key: w.key.clone(),
                    value: w.value.clone(),
                })
                .collect(),
        }
    }
}

impl From<&Block> for raw::Block {
    fn from(b: &Block) -> Self {
        raw::Block {
            header: Some((&b.header).into()),
            txs: b.txs.iter().map(Into::into).collect(),
        }
    }
}

impl From<&BlockMeta> for raw::BlockMeta {
    fn from(m: &BlockMeta) -> Self {
        raw::BlockMeta {
            block_id: Some((&m.block_id).into()),
            header: Some((&m.header).into()),
            block_size: m.block_size,
            num_txs: m.num_txs,
        }
    }
}
