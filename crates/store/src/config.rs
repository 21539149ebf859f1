//! The store's configuration: which key prefixes are state, the snapshot
//! period, and durability.

use std::fmt;

use crate::StoreError;

/// The set of one-byte key prefixes declared as *state prefixes*.
///
/// State prefixes are what blocks write, what the per-prefix EllipticSum
/// checksums and the state root cover, what Ancestral Records track and what
/// snapshots serve. The other prefixes hold local, non-synced data written
/// with [`crate::Store::write_local`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatePrefixes([u8; 32]);

impl StatePrefixes {
    /// Every prefix is a state prefix.
    #[must_use]
    pub const fn all() -> Self {
        Self([0xff; 32])
    }

    /// No prefix is a state prefix.
    #[must_use]
    pub const fn none() -> Self {
        Self([0; 32])
    }

    /// Exactly the given prefixes.
    #[must_use]
    pub fn only(prefixes: &[u8]) -> Self {
        let mut set = Self::none();
        for &prefix in prefixes {
            set.insert(prefix);
        }
        set
    }

    /// Declares `prefix` a state prefix.
    pub fn insert(&mut self, prefix: u8) {
        self.0[usize::from(prefix / 8)] |= 1 << (prefix % 8);
    }

    /// Whether `prefix` is a state prefix.
    #[must_use]
    pub fn contains(&self, prefix: u8) -> bool {
        self.0[usize::from(prefix / 8)] & (1 << (prefix % 8)) != 0
    }

    /// The state prefixes, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=u8::MAX).filter(|&p| self.contains(p))
    }

    /// The 32-byte bitmap (bit `p % 8` of byte `p / 8`), as stored on disk.
    #[must_use]
    pub const fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// The set from its 32-byte bitmap.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl Default for StatePrefixes {
    fn default() -> Self {
        Self::all()
    }
}

impl fmt::Debug for StatePrefixes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Self::all() {
            return f.write_str("StatePrefixes(all)");
        }
        f.debug_set().entries(self.iter()).finish()
    }
}

/// Default snapshot period, in blocks.
pub const DEFAULT_SNAPSHOT_PERIOD: u64 = 1000;

/// Most (and the default number of) headers the hash index keeps in memory
/// before writing them as a run ([`StoreConfig::hash_index_tail`]).
pub const MAX_HASH_INDEX_TAIL: usize = 65_536;

/// Default size of sled's page cache, in bytes.
pub const DEFAULT_CACHE_CAPACITY: u64 = 256 * 1024 * 1024;

/// How a [`crate::Store`] is set up.
///
/// `state_prefixes` and `snapshot_period` are recorded when the store is
/// created; opening it later with other values is refused with
/// [`StoreError::ConfigMismatch`], because the stored checksums and Ancestral
/// Records depend on them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Which prefixes are state (synced by snapshot).
    pub state_prefixes: StatePrefixes,
    /// Snapshot epoch length `P` in blocks (at least 1): when the state height
    /// reaches a multiple of `P`, that height becomes the snapshot height.
    pub snapshot_period: u64,
    /// Flush (fsync) at every commit point, so a write is durable when the
    /// call returns. Turn off only for throwaway stores (benchmarks); sled
    /// otherwise syncs every 500 ms and a crash loses recent writes (whole
    /// batches only, never half of one).
    pub sync_on_commit: bool,
    /// Size of sled's page cache, in bytes.
    pub cache_capacity: u64,
    /// Headers the hash index keeps in memory before it writes them as one
    /// sorted run (1 to [`MAX_HASH_INDEX_TAIL`], the default; about 48 bytes
    /// each). Smaller only to exercise runs in tests: each run costs a
    /// sort, sled pages and later merges.
    pub hash_index_tail: usize,
}

impl StoreConfig {
    /// Every prefix is state, one snapshot every 1000 blocks, durable commits.
    #[must_use]
    pub fn new() -> Self {
        Self {
            state_prefixes: StatePrefixes::all(),
            snapshot_period: DEFAULT_SNAPSHOT_PERIOD,
            sync_on_commit: true,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            hash_index_tail: MAX_HASH_INDEX_TAIL,
        }
    }

    /// This config with another snapshot period.
    #[must_use]
    pub fn with_snapshot_period(mut self, period: u64) -> Self {
        self.snapshot_period = period;
        self
    }

    /// This config with other state prefixes.
    #[must_use]
    pub fn with_state_prefixes(mut self, prefixes: StatePrefixes) -> Self {
        self.state_prefixes = prefixes;
        self
    }

    /// This config with `sync_on_commit` set.
    #[must_use]
    pub fn with_sync_on_commit(mut self, sync: bool) -> Self {
        self.sync_on_commit = sync;
        self
    }

    /// This config with another hash index tail size.
    #[must_use]
    pub fn with_hash_index_tail(mut self, headers: usize) -> Self {
        self.hash_index_tail = headers;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        if !(1..=MAX_HASH_INDEX_TAIL).contains(&self.hash_index_tail) {
            return Err(StoreError::InvalidConfig {
                what: "hash_index_tail must be 1 to MAX_HASH_INDEX_TAIL",
            });
        }
        if self.snapshot_period == 0 {
            return Err(StoreError::InvalidConfig {
                what: "snapshot_period must be at least 1",
            });
        }
        Ok(())
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self::new()
    }
}
