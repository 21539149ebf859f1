//! The [`Store`] handle: opening, the format marker, and the commit machinery
//! shared by the block store and the state.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use headway_ellipticsum::{Checksum, PrefixChecksums, RecordHasher};
use headway_mmr::Mmr;
use headway_wire::{Hash, WireError};
use prost::Message;
use tracing::{debug, info};

use crate::StoreError;
use crate::config::{StatePrefixes, StoreConfig};
use crate::error::hex_string;
use crate::header_log::{self, HeaderLog, TempDir};
use crate::history::{self, FileNodes, NodeFile, node_count_for_leaves};
use crate::index_tail::Index;
use crate::keys;
use crate::restore::RestoreState;
use crate::segment::{self, Stored as _};

/// Headway's persistent store: block store, history MMR, state and snapshots.
///
/// A cheap handle (clone it freely; clones share one database). Reads take
/// `&self` and run concurrently with writes; writes are serialized by an
/// internal lock. Every write method commits one atomic batch and, with
/// [`StoreConfig::sync_on_commit`], flushes it to disk before returning.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("header_height", &self.header_height())
            .field("bare_height", &self.bare_height())
            .field("block_height", &self.block_height())
            .field("state_height", &self.state_height())
            .field("snapshot_height", &self.snapshot_height())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) db: sled::Db,
    pub(crate) config: StoreConfig,
    pub(crate) hasher: RecordHasher,
    pub(crate) header_height: AtomicU64,
    /// The highest height stored without its commit (0: none).
    pub(crate) bare_height: AtomicU64,
    pub(crate) block_height: AtomicU64,
    pub(crate) state_height: AtomicU64,
    /// 0 when there is no snapshot yet.
    pub(crate) snapshot_height: AtomicU64,
    /// Seqlock over the state: odd while a state batch is being applied.
    /// Snapshot readers revalidate against it (see `snapshot.rs`).
    pub(crate) state_generation: AtomicU64,
    pub(crate) writer: Mutex<Writer>,
    /// The hash index's runs. Replaced under the write lock together with
    /// the sled batch that changes them, so a lookup never sees runs whose
    /// pages are gone.
    pub(crate) hash_index: RwLock<Index>,
    /// The bytes of the header segments (`header_log.rs`).
    pub(crate) log: HeaderLog,
    /// The history MMR's nodes (`history.rs`), shared with read-only views.
    pub(crate) nodes: Arc<NodeFile>,
    /// The directory of a temporary store, deleted after the database and
    /// the log are closed (fields drop in order).
    _temporary: Option<TempDir>,
}

/// What only the writer touches.
pub(crate) struct Writer {
    pub(crate) mmr: Mmr<FileNodes>,
    /// Leaves whose nodes are synced in the node file (`keys::MMR_SYNCED`).
    pub(crate) mmr_synced: u64,
    pub(crate) last_header: Option<LastHeader>,
    pub(crate) checksums: PrefixChecksums,
    pub(crate) counts: Box<[u64; 256]>,
    pub(crate) restore: Option<RestoreState>,
}

/// The facts about the top stored header the next batch is checked against.
#[derive(Clone, Debug)]
pub(crate) struct LastHeader {
    pub(crate) hash: Hash,
    pub(crate) validators_hash: Hash,
    pub(crate) chain_id: String,
}

/// How long [`Store::open`] keeps retrying a directory lock still held by a
/// closing handle of this process, and its step.
const LOCK_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(2);
const LOCK_RETRY_STEP: std::time::Duration = std::time::Duration::from_millis(20);

/// Whether sled failed to take the directory lock (another handle holds it).
fn is_lock_held(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("could not acquire lock")
}

impl Store {
    /// Opens (or creates) the store in the directory `path`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Engine`] if sled cannot open the directory,
    /// [`StoreError::ForeignDatabase`] / [`StoreError::UnsupportedVersion`] if it
    /// holds another kind of database, [`StoreError::ConfigMismatch`] if it was
    /// created with another config, [`StoreError::Corrupt`] if stored values do
    /// not decode.
    pub fn open(path: impl AsRef<Path>, config: StoreConfig) -> Result<Self, StoreError> {
        config.validate()?;
        let sled_config = sled::Config::new()
            .path(path.as_ref())
            .cache_capacity(config.cache_capacity);
        // sled releases its directory lock from a background thread after
        // the last handle drops, so reopening right after closing (a restart
        // in the same process) can briefly find the lock held: retry a few
        // times before reporting it.
        let mut waited = std::time::Duration::ZERO;
        let db = loop {
            match sled_config.open() {
                Ok(db) => break db,
                Err(sled::Error::Io(e)) if is_lock_held(&e) && waited < LOCK_RETRY_FOR => {
                    std::thread::sleep(LOCK_RETRY_STEP);
                    waited += LOCK_RETRY_STEP;
                }
                Err(e) => return Err(StoreError::engine("opening the database")(e)),
            }
        };
        Self::from_db(db, path.as_ref(), None, config)
    }

    /// A store in a temporary directory, deleted when the last handle is dropped.
    ///
    /// # Errors
    ///
    /// As [`Store::open`].
    pub fn open_temporary(config: StoreConfig) -> Result<Self, StoreError> {
        config.validate()?;
        let dir = TempDir::new()?;
        let db = sled::Config::new()
            .path(dir.path().join("db"))
            .temporary(true)
            .cache_capacity(config.cache_capacity)
            .open()
            .map_err(StoreError::engine("opening a temporary database"))?;
        let files = dir.path().to_owned();
        Self::from_db(db, &files, Some(dir), config)
    }

    /// Opens the store around its sled database, with the header log and
    /// the MMR node file in `files`.
    fn from_db(
        db: sled::Db,
        files: &Path,
        temporary: Option<TempDir>,
        config: StoreConfig,
    ) -> Result<Self, StoreError> {
        check_format(&db, &config)?;
        let log = HeaderLog::open(&files.join(header_log::FILE_NAME))?;
        // Cut the bytes of a batch that reached the log but not sled: the
        // committed length is written in every header batch.
        let log_end = read_u64(&db, keys::LOG_END)?.unwrap_or(0);
        log.cut_after(log_end, keys::LOG_END)?;
        let header_height = read_u64(&db, keys::HEADER_HEIGHT)?.unwrap_or(0);
        let bare_height = read_u64(&db, keys::BARE_HEIGHT)?.unwrap_or(0);
        if bare_height > header_height {
            return Err(StoreError::corrupt(
                keys::BARE_HEIGHT,
                format!("bare height {bare_height} is above header height {header_height}"),
            ));
        }
        let block_height = read_u64(&db, keys::BLOCK_HEIGHT)?.unwrap_or(0);
        let state_height = read_u64(&db, keys::STATE_HEIGHT)?.unwrap_or(0);
        let snapshot_height = read_u64(&db, keys::SNAPSHOT_HEIGHT)?.unwrap_or(0);
        if block_height > header_height.max(state_height) {
            return Err(StoreError::corrupt(
                keys::BLOCK_HEIGHT,
                format!("block height {block_height} is above header height {header_height}"),
            ));
        }
        if snapshot_height > state_height {
            return Err(StoreError::corrupt(
                keys::SNAPSHOT_HEIGHT,
                format!("snapshot height {snapshot_height} is above state height {state_height}"),
            ));
        }
        let (checksums, counts) = load_checksum_rows(&db, keys::CHECKSUM, &config.state_prefixes)?;
        let nodes = node_count_for_leaves(header_height).ok_or_else(|| {
            StoreError::corrupt(
                keys::HEADER_HEIGHT,
                "header height is beyond the MMR's capacity",
            )
        })?;
        // The nodes up to the synced mark are durable; the ones above it
        // (at most SYNC_EVERY_LEAVES headers' worth) are rebuilt from the
        // stored header hashes, whatever a crash left of them.
        let mmr_synced = read_u64(&db, keys::MMR_SYNCED)?.unwrap_or(0);
        if mmr_synced > header_height {
            return Err(StoreError::corrupt(
                keys::MMR_SYNCED,
                format!(
                    "MMR synced up to {mmr_synced} leaves, above the header height {header_height}"
                ),
            ));
        }
        let synced_nodes = node_count_for_leaves(mmr_synced).unwrap_or(u64::MAX);
        let node_file = Arc::new(NodeFile::open(
            &files.join(history::FILE_NAME),
            synced_nodes,
            nodes,
        )?);
        let mut mmr = Mmr::new(FileNodes::new(node_file.clone(), synced_nodes)).map_err(|e| {
            StoreError::corrupt(history::FILE_NAME.as_bytes(), format!("history MMR: {e}"))
        })?;
        if mmr_synced < header_height {
            history::rebuild_tail(&db, &log, &mut mmr, header_height)?;
            db.insert(keys::MMR_SYNCED, &header_height.to_be_bytes()[..])
                .map_err(StoreError::engine("recording the synced MMR nodes"))?;
        }
        let last_header = read_last_header(&db, &log, header_height)?;
        let restore = RestoreState::load(&db, &config.state_prefixes)?;
        let hash_index = RwLock::new(Index::load(
            &db,
            &log,
            header_height,
            config.hash_index_tail,
        )?);
        let inner = Inner {
            hash_index,
            hasher: RecordHasher::headway(),
            header_height: AtomicU64::new(header_height),
            bare_height: AtomicU64::new(bare_height),
            block_height: AtomicU64::new(block_height),
            state_height: AtomicU64::new(state_height),
            snapshot_height: AtomicU64::new(snapshot_height),
            state_generation: AtomicU64::new(0),
            writer: Mutex::new(Writer {
                mmr,
                mmr_synced: header_height,
                last_header,
                checksums,
                counts,
                restore,
            }),
            config,
            db,
            log,
            nodes: node_file,
            _temporary: temporary,
        };
        let store = Store {
            inner: Arc::new(inner),
        };
        info!(
            header_height,
            bare_height, block_height, state_height, snapshot_height, "opened headway store"
        );
        store.collect_old_ancestral_records()?;
        Ok(store)
    }

    /// The configuration the store was opened with.
    #[must_use]
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// Flushes every buffered write to disk. Commits already flush when
    /// [`StoreConfig::sync_on_commit`] is set; this is for the other case.
    ///
    /// # Errors
    ///
    /// [`StoreError::Engine`] if the flush fails.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.inner
            .db
            .flush()
            .map(|_| ())
            .map_err(StoreError::engine("flushing"))
    }

    /// Approximate size of the store on disk (the database and the header
    /// log), in bytes.
    ///
    /// # Errors
    ///
    /// [`StoreError::Engine`] if sled cannot tell.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        let db = self
            .inner
            .db
            .size_on_disk()
            .map_err(StoreError::engine("measuring the database"))?;
        Ok(db + self.inner.log.len())
    }
}

impl Inner {
    /// Takes the write lock.
    pub(crate) fn writer(&self) -> Result<MutexGuard<'_, Writer>, StoreError> {
        self.writer.lock().map_err(|_| StoreError::Poisoned)
    }

    /// Applies `batch` atomically and, if configured, flushes it: the single
    /// commit point of every write.
    pub(crate) fn commit(
        &self,
        batch: sled::Batch,
        context: &'static str,
    ) -> Result<(), StoreError> {
        self.db
            .apply_batch(batch)
            .map_err(StoreError::engine(context))?;
        self.flush_if_durable(context)
    }

    /// Flushes if [`StoreConfig::sync_on_commit`] is set (the second half of
    /// [`Inner::commit`], for callers that apply the batch themselves).
    pub(crate) fn flush_if_durable(&self, context: &'static str) -> Result<(), StoreError> {
        if self.config.sync_on_commit {
            self.db.flush().map_err(StoreError::engine(context))?;
        }
        Ok(())
    }

    /// Marks the state as being written until the guard drops (seqlock).
    pub(crate) fn state_write(&self) -> StateWriteGuard<'_> {
        self.state_generation.fetch_add(1, Ordering::SeqCst);
        StateWriteGuard { inner: self }
    }

    pub(crate) fn get(
        &self,
        key: &[u8],
        context: &'static str,
    ) -> Result<Option<sled::IVec>, StoreError> {
        self.db.get(key).map_err(StoreError::engine(context))
    }
}

/// Keeps the state generation odd while alive.
pub(crate) struct StateWriteGuard<'a> {
    inner: &'a Inner,
}

impl Drop for StateWriteGuard<'_> {
    fn drop(&mut self) {
        self.inner.state_generation.fetch_add(1, Ordering::SeqCst);
    }
}

/// Decodes a prost value stored at `key` into a validated domain type.
pub(crate) fn decode_raw<R, T>(key: &[u8], bytes: &[u8], what: &str) -> Result<T, StoreError>
where
    R: Message + Default,
    T: TryFrom<R, Error = WireError>,
{
    let raw = R::decode(bytes)
        .map_err(|e| StoreError::corrupt(key, format!("{what} does not decode: {e}")))?;
    T::try_from(raw).map_err(|e| StoreError::corrupt(key, format!("{what} is invalid: {e}")))
}

/// The facts about the header at the header height, from the last header
/// segment, which must end exactly there (the whole segment is checked).
fn read_last_header(
    db: &sled::Db,
    log: &HeaderLog,
    header_height: u64,
) -> Result<Option<LastHeader>, StoreError> {
    let last = segment::last(db, log)?;
    let Some(segment) = last else {
        if header_height == 0 {
            return Ok(None);
        }
        return Err(StoreError::corrupt(
            &keys::by_u64(keys::HEADER_SEGMENT, header_height),
            "the header at the header height is missing",
        ));
    };
    let rows = segment.rows()?;
    let top = segment.last_height()?;
    if top != header_height {
        return Err(StoreError::corrupt(
            &segment.key,
            if top > header_height {
                format!("header {top} stored above the header height {header_height}")
            } else {
                format!(
                    "the header at the header height {header_height} is missing (last stored: {top})"
                )
            },
        ));
    }
    let Some(row) = rows.last() else {
        return Err(StoreError::corrupt(&segment.key, "empty header segment"));
    };
    let header = segment.header(row)?;
    Ok(Some(LastHeader {
        hash: row.hash,
        validators_hash: header.validators_hash,
        chain_id: header.chain_id,
    }))
}

/// Reads a `be64` meta value.
pub(crate) fn read_u64(db: &sled::Db, key: &[u8]) -> Result<Option<u64>, StoreError> {
    db.get(key)
        .map_err(StoreError::engine("reading store metadata"))?
        .map(|v| keys::decode_u64(&v).map_err(|what| StoreError::corrupt(key, what)))
        .transpose()
}

/// Encodes a checksum row: `checksum (32) || be64(records)`.
pub(crate) fn checksum_row(checksum: &Checksum, records: u64) -> [u8; 40] {
    let mut row = [0u8; 40];
    row[..32].copy_from_slice(&checksum.to_bytes());
    row[32..].copy_from_slice(&records.to_be_bytes());
    row
}

/// Decodes a checksum row.
pub(crate) fn decode_checksum_row(key: &[u8], bytes: &[u8]) -> Result<(Checksum, u64), StoreError> {
    if bytes.len() != 40 {
        return Err(StoreError::corrupt(
            key,
            format!("checksum row is {} bytes, expected 40", bytes.len()),
        ));
    }
    let checksum = Checksum::from_slice(&bytes[..32])
        .map_err(|e| StoreError::corrupt(key, format!("checksum does not decode: {e}")))?;
    let records = keys::u64_at(bytes, 32).unwrap_or(0);
    Ok((checksum, records))
}

/// Loads the checksum rows of table `tag` (current or snapshot).
pub(crate) fn load_checksum_rows(
    db: &sled::Db,
    tag: u8,
    prefixes: &StatePrefixes,
) -> Result<(PrefixChecksums, Box<[u64; 256]>), StoreError> {
    let mut checksums = PrefixChecksums::new();
    let mut counts = Box::new([0u64; 256]);
    for row in db.scan_prefix([tag]) {
        let (key, value) = row.map_err(StoreError::engine("reading checksums"))?;
        let prefix = match key.as_ref() {
            [_, prefix] if prefixes.contains(*prefix) => *prefix,
            _ => {
                return Err(StoreError::corrupt(
                    &key,
                    "checksum row for a key that is not a state prefix",
                ));
            }
        };
        let (checksum, records) = decode_checksum_row(&key, &value)?;
        checksums.set(prefix, checksum);
        counts[usize::from(prefix)] = records;
    }
    Ok((checksums, counts))
}

/// Checks the format marker and the recorded config, writing both into an
/// empty database.
fn check_format(db: &sled::Db, config: &StoreConfig) -> Result<(), StoreError> {
    let marker = db
        .get(keys::FORMAT)
        .map_err(StoreError::engine("reading the format marker"))?;
    let Some(marker) = marker else {
        let has_data = db
            .first()
            .map_err(StoreError::engine("reading the database"))?
            .is_some();
        let other_trees = db.tree_names().len() > 1;
        if has_data || other_trees {
            return Err(StoreError::ForeignDatabase {
                reason: "the database holds data but no headway-store format marker".to_owned(),
            });
        }
        let mut batch = sled::Batch::default();
        let mut value = keys::MAGIC.to_vec();
        value.extend_from_slice(&keys::FORMAT_VERSION.to_be_bytes());
        batch.insert(keys::FORMAT, value);
        batch.insert(keys::CONFIG_PREFIXES, &config.state_prefixes.to_bytes()[..]);
        batch.insert(
            keys::CONFIG_PERIOD,
            &config.snapshot_period.to_be_bytes()[..],
        );
        db.apply_batch(batch)
            .map_err(StoreError::engine("initializing the database"))?;
        db.flush()
            .map_err(StoreError::engine("initializing the database"))?;
        debug!("initialized a new headway store");
        return Ok(());
    };
    let Some(version) = marker.strip_prefix(keys::MAGIC) else {
        return Err(StoreError::ForeignDatabase {
            reason: format!("format marker is {}", hex_string(&marker)),
        });
    };
    let version = <[u8; 4]>::try_from(version)
        .map(u32::from_be_bytes)
        .map_err(|_| StoreError::ForeignDatabase {
            reason: format!("format marker is {}", hex_string(&marker)),
        })?;
    if version != keys::FORMAT_VERSION && !keys::UPGRADABLE_VERSIONS.contains(&version) {
        return Err(StoreError::UnsupportedVersion {
            found: version,
            supported: keys::FORMAT_VERSION,
        });
    }
    let stored_prefixes = db
        .get(keys::CONFIG_PREFIXES)
        .map_err(StoreError::engine("reading the config"))?
        .ok_or_else(|| StoreError::corrupt(keys::CONFIG_PREFIXES, "missing"))?;
    let stored_prefixes = <[u8; 32]>::try_from(stored_prefixes.as_ref())
        .map(StatePrefixes::from_bytes)
        .map_err(|_| StoreError::corrupt(keys::CONFIG_PREFIXES, "expected a 32-byte bitmap"))?;
    if stored_prefixes != config.state_prefixes {
        return Err(StoreError::ConfigMismatch {
            what: "state_prefixes",
            stored: format!("{stored_prefixes:?}"),
            given: format!("{:?}", config.state_prefixes),
        });
    }
    let period = read_u64(db, keys::CONFIG_PERIOD)?
        .ok_or_else(|| StoreError::corrupt(keys::CONFIG_PERIOD, "missing"))?;
    if period != config.snapshot_period {
        return Err(StoreError::ConfigMismatch {
            what: "snapshot_period",
            stored: period.to_string(),
            given: config.snapshot_period.to_string(),
        });
    }
    if version != keys::FORMAT_VERSION {
        upgrade(db, version)?;
    }
    debug!("reopened an existing headway store");
    Ok(())
}

/// Formats 8 and 9 → 10, in one batch with the new marker, flushed before
/// anything else is written. 8 → 9: a format-8 store's hash index runs
/// hold every stored header, so its mark is its header height. 9 → 10: the
/// marker alone (new segments hold delta rows; old ones are read as they
/// are).
fn upgrade(db: &sled::Db, from: u32) -> Result<(), StoreError> {
    let header_height = read_u64(db, keys::HEADER_HEIGHT)?.unwrap_or(0);
    let mut batch = sled::Batch::default();
    let mut marker = keys::MAGIC.to_vec();
    marker.extend_from_slice(&keys::FORMAT_VERSION.to_be_bytes());
    batch.insert(keys::FORMAT, marker);
    if from == keys::WITHOUT_INDEX_MARK {
        batch.insert(keys::HASH_INDEX_MARK, &header_height.to_be_bytes()[..]);
    }
    db.apply_batch(batch)
        .map_err(StoreError::engine("upgrading the store format"))?;
    db.flush()
        .map_err(StoreError::engine("upgrading the store format"))?;
    info!(
        from,
        to = keys::FORMAT_VERSION,
        header_height,
        "upgraded the store format in place"
    );
    Ok(())
}
