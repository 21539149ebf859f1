//! Block execution: apply a block's writes to the state, maintain the
//! per-prefix EllipticSum checksums, and check the result against the header.
//!
//! A write puts or deletes one key; its state prefix is the key's first byte.
//! Execution is two-phase: [`compute_transition`] reads the state and works
//! out the net change of every touched key and the new checksums without
//! writing anything; [`apply_transition`] writes them. [`execute_block`]
//! checks the data hash and the state root in between, so a block whose
//! result differs from its header leaves the state untouched.
//!
//! Every write goes through this one path, which keeps the checksums in step
//! with the records (the lesson of DeSo's snapshot corruption, NOTES).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use headway_ellipticsum::{Checksum, PrefixChecksums, RecordHasher};
use headway_wire::{Block, Hash, Transaction, WireError};
use rayon::prelude::*;

use crate::encoding::data_hash;

/// A key-value state with per-prefix checksums, as execution needs it.
///
/// Implemented in memory by [`MemState`]; a persistent store implements it
/// over its own database. The implementation stores what it is told: the
/// checksums it is given with [`StateStore::set_checksums`] must be returned by
/// [`StateStore::checksums`] until the next call.
pub trait StateStore {
    /// The store's own failure.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The value at `key`, if any.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error>;

    /// Sets `key` to `value`.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), Self::Error>;

    /// Removes `key` (a no-op if absent).
    fn delete(&mut self, key: &[u8]) -> Result<(), Self::Error>;

    /// The current per-prefix checksums.
    fn checksums(&self) -> &PrefixChecksums;

    /// Replaces the per-prefix checksums (called once per applied block, after its writes).
    fn set_checksums(&mut self, checksums: PrefixChecksums) -> Result<(), Self::Error>;
}

/// An in-memory [`StateStore`]: a sorted map and its checksums.
#[derive(Debug, Clone, Default)]
pub struct MemState {
    records: BTreeMap<Vec<u8>, Vec<u8>>,
    checksums: PrefixChecksums,
}

impl MemState {
    /// The empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the state holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The records, in key order.
    pub fn records(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.records
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// The checksums recomputed from every record (for checking the
    /// incremental ones; costs one hash per record).
    pub fn recompute_checksums(&self) -> PrefixChecksums {
        let records: Vec<(&[u8], &[u8])> = self.records().collect();
        // Keys in the state are never empty (writes are validated).
        PrefixChecksums::par_from_records(record_hasher(), &records).unwrap_or_default()
    }
}

impl StateStore for MemState {
    type Error = std::convert::Infallible;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error> {
        Ok(self.records.get(key).cloned())
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), Self::Error> {
        self.records.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), Self::Error> {
        self.records.remove(key);
        Ok(())
    }

    fn checksums(&self) -> &PrefixChecksums {
        &self.checksums
    }

    fn set_checksums(&mut self, checksums: PrefixChecksums) -> Result<(), Self::Error> {
        self.checksums = checksums;
        Ok(())
    }
}

/// The net effect of a list of transactions on a state, not yet written.
#[derive(Debug, Clone)]
pub struct StateTransition {
    /// Each key whose value changes, ascending, with its new value (`None` = deleted).
    pub changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// The per-prefix checksums after the change.
    pub checksums: PrefixChecksums,
    /// The state root after the change.
    pub state_root: Hash,
    /// The prefixes whose checksum changed, ascending.
    pub changed_prefixes: Vec<u8>,
}

/// What [`execute_block`] applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionOutcome {
    /// The block's height.
    pub height: u64,
    /// The new state root (equal to the header's).
    pub state_root: Hash,
    /// Keys written or deleted.
    pub keys_changed: usize,
    /// The prefixes whose checksum changed, ascending.
    pub changed_prefixes: Vec<u8>,
}

/// Why a block could not be executed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutionError<E: std::error::Error + 'static> {
    /// The block broke a shape rule (empty key, too many writes, ...).
    #[error("height {height}: malformed block: {source}")]
    Malformed {
        /// The block's height.
        height: u64,
        /// The rule.
        #[source]
        source: WireError,
    },
    /// The body does not match the header: its data hash differs.
    #[error("height {height}: body's data hash {computed} is not the header's data_hash {header}")]
    DataHashMismatch {
        /// The block's height.
        height: u64,
        /// The header's `data_hash`.
        header: Hash,
        /// The hash of the body received.
        computed: Hash,
    },
    /// Executing the body gives another state than the header commits to.
    #[error(
        "height {height}: resulting state root {computed} is not the header's state_root {header}"
    )]
    StateRootMismatch {
        /// The block's height.
        height: u64,
        /// The header's `state_root`.
        header: Hash,
        /// The state root the execution produced.
        computed: Hash,
    },
    /// The state store failed.
    #[error("height {height}: state store failed")]
    State {
        /// The block's height.
        height: u64,
        /// The store's error.
        #[source]
        source: E,
    },
}

/// Executes `block` on `state`: validates it, checks its data hash, computes
/// the new state and checks its root against the header, then writes it.
/// On any error nothing has been written (a store error during the final
/// writes is the exception: the store then reports it).
pub fn execute_block<S: StateStore>(
    state: &mut S,
    block: &Block,
) -> Result<ExecutionOutcome, ExecutionError<S::Error>> {
    let height = block.header.height;
    block
        .validate()
        .map_err(|source| ExecutionError::Malformed { height, source })?;
    let computed = data_hash(&block.txs);
    if computed != block.header.data_hash {
        return Err(ExecutionError::DataHashMismatch {
            height,
            header: block.header.data_hash,
            computed,
        });
    }
    let transition = compute_transition(state, &block.txs)
        .map_err(|source| ExecutionError::State { height, source })?;
    if transition.state_root != block.header.state_root {
        return Err(ExecutionError::StateRootMismatch {
            height,
            header: block.header.state_root,
            computed: transition.state_root,
        });
    }
    let outcome = ExecutionOutcome {
        height,
        state_root: transition.state_root,
        keys_changed: transition.changes.len(),
        changed_prefixes: transition.changed_prefixes.clone(),
    };
    apply_transition(state, transition)
        .map_err(|source| ExecutionError::State { height, source })?;
    Ok(outcome)
}

/// Works out the net effect of `txs` on `state` without writing: applies the
/// writes in order over an overlay, then updates the checksums of the keys
/// whose value changed (removing the old record, adding the new one). The
/// transactions are assumed valid (see [`Block::validate`]); a write with an
/// empty key is skipped.
pub fn compute_transition<S: StateStore>(
    state: &S,
    txs: &[Transaction],
) -> Result<StateTransition, S::Error> {
    // key -> (value before the block, value after).
    let mut overlay: BTreeMap<&[u8], Touched<'_>> = BTreeMap::new();
    for write in txs.iter().flat_map(|tx| &tx.writes) {
        if write.key.is_empty() {
            continue;
        }
        let new = write.value.as_deref();
        match overlay.get_mut(write.key.as_slice()) {
            Some(entry) => entry.1 = new,
            None => {
                let old = state.get(&write.key)?;
                overlay.insert(&write.key, (old, new));
            }
        }
    }
    let mut removed: Vec<(&[u8], &[u8])> = Vec::new();
    let mut added: Vec<(&[u8], &[u8])> = Vec::new();
    let mut changes = Vec::new();
    for (key, (old, new)) in &overlay {
        if old.as_deref() == *new {
            continue;
        }
        if let Some(old) = old {
            removed.push((key, old));
        }
        if let Some(new) = new {
            added.push((key, new));
        }
        changes.push((key.to_vec(), new.map(<[u8]>::to_vec)));
    }
    let mut checksums = state.checksums().clone();
    let mut changed_prefixes = Vec::new();
    let elements = hash_records(&added, &removed);
    for (prefix, delta) in elements {
        let mut sum = checksums.get(prefix);
        sum += delta;
        checksums.set(prefix, sum);
        if changed_prefixes.last() != Some(&prefix) {
            changed_prefixes.push(prefix);
        }
    }
    changed_prefixes.sort_unstable();
    changed_prefixes.dedup();
    let state_root = Hash(checksums.state_root().into());
    Ok(StateTransition {
        changes,
        checksums,
        state_root,
        changed_prefixes,
    })
}

/// Writes a transition computed by [`compute_transition`] on the same state.
pub fn apply_transition<S: StateStore>(
    state: &mut S,
    transition: StateTransition,
) -> Result<(), S::Error> {
    for (key, value) in &transition.changes {
        match value {
            Some(value) => state.put(key, value)?,
            None => state.delete(key)?,
        }
    }
    state.set_checksums(transition.checksums)
}

/// The record hasher of Headway's state: EllipticSum under `HEADWAY_DST`.
pub fn record_hasher() -> &'static RecordHasher {
    static HASHER: OnceLock<RecordHasher> = OnceLock::new();
    HASHER.get_or_init(RecordHasher::headway)
}

/// A key's value before the block, and after the writes so far.
type Touched<'a> = (Option<Vec<u8>>, Option<&'a [u8]>);

/// Records to hash in one go below which hashing stays on this thread.
const MIN_RECORDS_FOR_PARALLEL_HASHING: usize = 4;

/// Each record's signed contribution (added records positive, removed
/// negative), with its prefix. Records with an empty key are skipped.
fn hash_records(added: &[(&[u8], &[u8])], removed: &[(&[u8], &[u8])]) -> Vec<(u8, Checksum)> {
    let hasher = record_hasher();
    let one = |(key, value, add): (&[u8], &[u8], bool)| {
        let prefix = *key.first()?;
        let element = hasher.hash_record(key, value);
        Some((prefix, if add { element } else { -element }))
    };
    let all: Vec<(&[u8], &[u8], bool)> = added
        .iter()
        .map(|&(k, v)| (k, v, true))
        .chain(removed.iter().map(|&(k, v)| (k, v, false)))
        .collect();
    if all.len() < MIN_RECORDS_FOR_PARALLEL_HASHING {
        all.into_iter().filter_map(one).collect()
    } else {
        all.into_par_iter().filter_map(one).collect()
    }
}
