//! The store's error type.

use headway_mmr::MmrError;
use headway_wire::{Hash, WireError};

/// Why a store operation failed.
///
/// Corruption on disk is reported as [`StoreError::Corrupt`] (naming the key
/// and what failed to decode), never as a panic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The storage engine (sled) failed: I/O error, or its own files are damaged.
    #[error("storage engine failed while {context}")]
    Engine {
        /// What the store was doing.
        context: &'static str,
        /// The engine's error.
        #[source]
        source: sled::Error,
    },
    /// Reading or writing one of the store's files next to its database
    /// (the header log of header segments, the MMR node file) failed.
    #[error("store file I/O failed while {context}")]
    Log {
        /// What the store was doing.
        context: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The database was not created by this crate: its format marker is
    /// missing or different.
    #[error("not a headway-store database: {reason}")]
    ForeignDatabase {
        /// What was found instead of the format marker.
        reason: String,
    },
    /// The database was written by another version of this crate's format.
    #[error("store format version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        /// The version on disk.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// The configuration given at open differs from the one the store was created with.
    #[error("store was created with {what} = {stored}, but opened with {given}")]
    ConfigMismatch {
        /// The setting.
        what: &'static str,
        /// The value on disk.
        stored: String,
        /// The value given to `open`.
        given: String,
    },
    /// The configuration is unusable.
    #[error("invalid store config: {what}")]
    InvalidConfig {
        /// The rule broken.
        what: &'static str,
    },
    /// A value on disk could not be decoded or contradicts the rest of the store.
    #[error("corrupt store: key {key}: {what}")]
    Corrupt {
        /// The key, in hex.
        key: String,
        /// What failed.
        what: String,
    },

    // ------------------------------------------------------------ block store
    /// An empty header batch was given.
    #[error("empty header batch")]
    EmptyBatch,
    /// A header batch does not start right after the stored header height
    /// (a gap or an overlap).
    #[error("header batch starts at height {got}, but the next header height is {expected}")]
    HeaderHeightGap {
        /// `header_height + 1`.
        expected: u64,
        /// The batch's first height.
        got: u64,
    },
    /// A header inside a batch does not follow its predecessor's height.
    #[error("header batch item {index} has height {got}, expected {expected}")]
    NonContiguousBatch {
        /// Index in the batch.
        index: usize,
        /// The height it should have.
        expected: u64,
        /// Its height.
        got: u64,
    },
    /// A header, commit or validator set breaks a shape rule.
    #[error("height {height}: {source}")]
    InvalidSignedHeader {
        /// The header's height.
        height: u64,
        /// The rule.
        #[source]
        source: WireError,
    },
    /// A commit is not for the header it is stored with.
    #[error("height {height}: commit is not for this header ({reason})")]
    CommitMismatch {
        /// The height.
        height: u64,
        /// What differs.
        reason: &'static str,
    },
    /// A header's `last_block_id` is not the previous header's hash.
    #[error("height {height}: last_block_id {got} is not the previous header's hash {expected}")]
    BrokenLinkage {
        /// The height.
        height: u64,
        /// The previous header's hash.
        expected: Hash,
        /// The header's `last_block_id.hash`.
        got: Hash,
    },
    /// A header's chain id differs from the stored chain's.
    #[error("height {height}: chain id {got:?} differs from the stored chain's {expected:?}")]
    ChainIdMismatch {
        /// The height.
        height: u64,
        /// The stored chain id.
        expected: String,
        /// The header's.
        got: String,
    },
    /// A header's `history_root` is not the root of the MMR of all earlier headers.
    #[error(
        "height {height}: history_root {got} is not the MMR root {expected} of headers 1..{height}"
    )]
    HistoryRootMismatch {
        /// The height.
        height: u64,
        /// The root of the stored MMR.
        expected: Hash,
        /// The header's `history_root`.
        got: Hash,
    },
    /// An attached validator set does not hash to the header's `validators_hash`.
    #[error("height {height}: attached validator set does not hash to validators_hash {expected}")]
    ValidatorSetMismatch {
        /// The height.
        height: u64,
        /// The header's `validators_hash`.
        expected: Hash,
    },
    /// The validator set changes at this height (or it is height 1) but none is attached.
    #[error("height {height}: the validator set changes here but none is attached")]
    MissingValidatorSet {
        /// The height.
        height: u64,
    },
    /// A block body was given for a height whose header is not stored, or not this header.
    #[error("height {height}: {reason}")]
    UnknownHeader {
        /// The height.
        height: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A block body does not match its header (data hash) or is malformed.
    #[error("height {height}: block body rejected: {reason}")]
    BodyMismatch {
        /// The height.
        height: u64,
        /// What is wrong.
        reason: String,
    },
    /// The history MMR failed (a missing node means a corrupt store).
    #[error("history MMR failed")]
    History(#[source] Box<MmrError<StoreError>>),

    // ------------------------------------------------------------ state
    /// State writes were given for a height that does not follow the state height.
    #[error("state writes for height {got}, but the next state height is {expected}")]
    StateHeightGap {
        /// `state_height + 1`.
        expected: u64,
        /// The height given.
        got: u64,
    },
    /// A write breaks a shape rule (empty key, key or value too long).
    #[error("invalid state write: {source}")]
    InvalidWrite {
        /// The rule.
        #[source]
        source: WireError,
    },
    /// A block write or snapshot request names a prefix that is not declared
    /// as a state prefix in the store's config.
    #[error("prefix {prefix:#04x} is not a state prefix of this store")]
    NotAStatePrefix {
        /// The prefix.
        prefix: u8,
    },
    /// A local (non-state) write names a state prefix: state writes come from blocks only.
    #[error("prefix {prefix:#04x} is a state prefix; local writes may only use non-state prefixes")]
    StatePrefixInLocalWrite {
        /// The prefix.
        prefix: u8,
    },
    /// A block's data hash does not match its transactions.
    #[error("height {height}: data hash {computed} of the body is not the header's {header}")]
    DataHashMismatch {
        /// The height.
        height: u64,
        /// The header's `data_hash`.
        header: Hash,
        /// The body's.
        computed: Hash,
    },
    /// Executing a block gives another state root than its header commits to;
    /// nothing was written.
    #[error("height {height}: state root {computed} after execution is not the header's {header}")]
    StateRootMismatch {
        /// The height.
        height: u64,
        /// The header's `state_root`.
        header: Hash,
        /// The computed root.
        computed: Hash,
    },
    /// An executor handed the store checksums that differ from the ones the
    /// store computed for the same writes; nothing was written.
    #[error(
        "height {height}: executor's checksums differ from the store's for prefixes {prefixes:?}"
    )]
    ExecutorChecksumMismatch {
        /// The height.
        height: u64,
        /// The prefixes that differ.
        prefixes: Vec<u8>,
    },

    // ------------------------------------------------------------ snapshots
    /// The requested snapshot height is not the one this store serves.
    #[error("snapshot at height {requested} is not available (serving {available:?})")]
    SnapshotUnavailable {
        /// The height asked for.
        requested: u64,
        /// The snapshot height served now, if any.
        available: Option<u64>,
    },
    /// A snapshot start key is neither empty nor starts with the prefix byte.
    #[error("start key must be empty or start with the prefix byte {prefix:#04x}")]
    InvalidStartKey {
        /// The prefix asked for.
        prefix: u8,
    },

    // ------------------------------------------------------------ restore
    /// A restore needs an empty state.
    #[error("cannot restore a snapshot: the state is not empty (state height {state_height})")]
    StateNotEmpty {
        /// The current state height.
        state_height: u64,
    },
    /// No restore is in progress.
    #[error("no snapshot restore is in progress")]
    NoRestoreInProgress,
    /// A restore is in progress, so blocks cannot be applied (or another restore begun).
    #[error("a snapshot restore at height {snapshot_height} is in progress")]
    RestoreInProgress {
        /// Its snapshot height.
        snapshot_height: u64,
    },
    /// The manifest does not commit to the expected state root, or is invalid.
    #[error("snapshot manifest rejected: {reason}")]
    ManifestRejected {
        /// What is wrong.
        reason: String,
    },
    /// A received chunk cannot be stored.
    #[error("snapshot chunk for prefix {prefix:#04x} rejected: {reason}")]
    ChunkRejected {
        /// The chunk's prefix.
        prefix: u8,
        /// What is wrong.
        reason: String,
    },
    /// A completed prefix's records do not add up to the manifest's checksum
    /// or count: the prefix's data is wrong (reset it and fetch it elsewhere).
    #[error(
        "prefix {prefix:#04x}: received {records} records with checksum {checksum}, manifest says {expected_records} records with {expected_checksum}"
    )]
    PrefixChecksumMismatch {
        /// The prefix.
        prefix: u8,
        /// Checksum of what was received, hex.
        checksum: String,
        /// Records received.
        records: u64,
        /// The manifest's checksum, hex.
        expected_checksum: String,
        /// The manifest's count.
        expected_records: u64,
    },
    /// `finish_restore` was called before every prefix was complete.
    #[error("restore incomplete: prefix {prefix:#04x} is not complete")]
    RestoreIncomplete {
        /// The first incomplete prefix.
        prefix: u8,
    },

    /// A writer panicked while holding the store's write lock; the in-memory
    /// view may be stale. Reopen the store.
    #[error("the store's write lock is poisoned by an earlier panic; reopen the store")]
    Poisoned,
}

impl StoreError {
    /// Wraps a sled error with what the store was doing.
    pub(crate) fn engine(context: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
        move |source| StoreError::Engine { context, source }
    }

    /// Wraps an I/O error on the store's files with what the store was doing.
    pub(crate) fn log(context: &'static str) -> impl FnOnce(std::io::Error) -> StoreError {
        move |source| StoreError::Log { context, source }
    }

    /// A corruption error for `key`.
    pub(crate) fn corrupt(key: &[u8], what: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            key: hex_string(key),
            what: what.into(),
        }
    }
}

impl From<MmrError<StoreError>> for StoreError {
    fn from(error: MmrError<StoreError>) -> Self {
        StoreError::History(Box::new(error))
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex_string(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}
