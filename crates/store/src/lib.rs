//! Headway's persistent store: everything a node keeps on disk, behind one
//! API so the engine (sled 0.34 today) can change.
//!
//! - **Block store** (seed 003, R4 and R6): verified headers and their
//!   commits stored without bodies ([`Store::save_headers`]), or headers
//!   without their commits for headers-only sync
//!   ([`Store::save_bare_headers`], [`Store::bare_height`],
//!   [`Store::load_bare_headers`]), packed into
//!   header segments of up to 256 consecutive rows so that a batch costs few
//!   sled keys, their bytes appended to a header log file next to the
//!   database (on-disk format 9); a header height apart from the contiguous
//!   block height, which only bodies advance ([`Store::save_block`]);
//!   [`Store::load_block`] returns `None` when the body is missing even though
//!   the meta exists; [`Store::load_signed_headers`] reads a range segment by
//!   segment; a hash index kept as a few sorted runs (an LSM: a batch adds
//!   one run, runs of a size merge four at a time); validator sets stored where they change, with the
//!   set in force at any height ([`Store::validator_set_at`]).
//! - **History MMR**: its nodes are persisted with the headers (in a flat
//!   file indexed by position, `mmr.nodes`), so inclusion,
//!   range and ancestry proofs can be served for any height after a restart
//!   ([`Store::prove_header`], [`Store::prove_header_range`],
//!   [`Store::prove_history_ancestry`]).
//! - **State** (seed 002): a key/value state whose one-byte prefixes are
//!   declared state or local in [`StoreConfig`]. Every state write goes through
//!   one path that updates the per-prefix EllipticSum checksums and the
//!   Ancestral Records in the same atomic batch as the write and the new state
//!   height ([`Store::apply_writes`], [`Store::execute_block`], and
//!   [`Store::begin_block`] for `headway_chain::execute_block`).
//! - **Snapshots**: epochs of `P` blocks; the state at the snapshot height is
//!   served in sorted, budgeted chunks merged from the live state and the
//!   Ancestral Records in bounded memory ([`Store::snapshot_chunk`],
//!   [`Store::snapshot_manifest`]), and restored from peers' chunks with
//!   per-prefix checks, resumable after a restart ([`Store::begin_restore`],
//!   [`Store::restore_chunk`], [`Store::finish_restore`]).
//!
//! Each write is one atomic sled batch, flushed before the call returns
//! (sled would otherwise sync only every 500 ms); a header batch's segments
//! are synced to the header log before that batch is applied. A database that is not a
//! headway store, or holds values that do not decode, gives a typed
//! [`StoreError`] at open or on read, never a panic.
//!
//! ```
//! use headway_store::{Store, StoreConfig};
//! use headway_wire::Write;
//!
//! # fn main() -> Result<(), headway_store::StoreError> {
//! let put = |key: &[u8], value: &[u8]| Write { key: key.to_vec(), value: Some(value.to_vec()) };
//! // A throwaway store (a temporary directory) taking a snapshot every 2 blocks.
//! let store = Store::open_temporary(StoreConfig::new().with_snapshot_period(2))?;
//!
//! store.apply_writes(1, &[put(b"\x01alice", b"10")])?;
//! let at_2 = store.apply_writes(2, &[put(b"\x01bob", b"5")])?;
//! assert!(at_2.snapshot_taken);
//! // Block 3 deletes alice; the snapshot at height 2 still has her.
//! store.apply_writes(3, &[Write { key: b"\x01alice".to_vec(), value: None }])?;
//! assert_eq!(store.get_state(b"\x01alice")?, None);
//!
//! let chunk = store.read_snapshot_chunk(2, 0x01, b"", 1 << 20)?;
//! let keys: Vec<&[u8]> = chunk.entries.iter().map(|e| e.key.as_slice()).collect();
//! assert_eq!(keys, [&b"\x01alice"[..], b"\x01bob"]);
//! assert!(chunk.prefix_exhausted);
//!
//! // The manifest's checksums commit to the state root at height 2.
//! let manifest = store.snapshot_manifest(2)?;
//! assert_eq!(manifest.prefixes[0].records, 2);
//! # let _ = at_2.state_root;
//! # Ok(())
//! # }
//! ```

mod blocks;
mod config;
mod error;
mod hash_index;
mod header_log;
mod history;
mod index_tail;
mod integrity;
mod keys;
mod restore;
mod segment;
mod snapshot;
mod state;
mod store;

pub use config::{
    DEFAULT_CACHE_CAPACITY, DEFAULT_SNAPSHOT_PERIOD, MAX_HASH_INDEX_TAIL, StatePrefixes,
    StoreConfig,
};
pub use error::StoreError;
pub use integrity::IntegrityReport;
pub use restore::{PrefixRestoreProgress, RestoreProgress};
pub use snapshot::{SNAPSHOT_ENTRY_OVERHEAD, SnapshotChunkIter};
pub use state::{AppliedState, StateBlock};
pub use store::Store;

/// MMR proofs as the store serves them, from `headway-mmr`.
pub use headway_mmr::Proof;
