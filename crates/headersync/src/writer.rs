//! The header writer: stores verified headers on a blocking thread, so that
//! verifying the next batches (on the reactor) and storing the previous ones
//! overlap, and groups whatever has queued up meanwhile into one durable
//! write (group commit: one flush for many batches when the disk is the
//! bottleneck).
//!
//! The queue is bounded ([`WRITE_QUEUE`] batches); callers either wait for
//! room ([`HeaderWriter::send`]) or keep their own bounded backlog and stop
//! asking peers for more while it is full (the reactor does,
//! [`MAX_UNSTORED_HEADERS`]).

use std::sync::{Arc, Mutex, PoisonError, atomic::Ordering};

use headway_chain::{Hashed, HashedCompact, HeaderExt as _};
use headway_store::{Store, StoreError};
use headway_wire::{BareHeader, Hash, Header, SignedHeader};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, warn};

use crate::HeaderSyncMetrics;

/// Batches queued for the writer at most.
pub const WRITE_QUEUE: usize = 8;

/// Emptied vectors of stored headers-only batches the writer keeps for the
/// caller to reuse ([`HeaderWriter::take_spare`]), at most; past it they
/// are dropped.
pub const MAX_RETURNED_BUFFERS: usize = 4;

/// Headers stored in one write at most (a group of queued batches).
pub const MAX_WRITE_HEADERS: usize = 4096;

/// Verified headers the reactor holds that are not yet stored, at most,
/// before it stops sending requests (they are still bounded by the pool's
/// pending batches; this keeps the store from falling far behind).
pub const MAX_UNSTORED_HEADERS: u64 = 8192;

/// Consecutive verified headers to store: signed (with their commits, from
/// v1 or full v2 ranges), bare (headers-only v2 ranges) or compact (compact
/// headers-only v2 ranges, kept as their columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderBatch {
    /// Headers with their commits.
    Signed(Vec<Hashed<SignedHeader>>),
    /// Headers without commits, proven by hashes into a verified commitment
    /// (a v2 range that passed `verify_range`). They are stored with
    /// `Store::save_proven_bare_header_parts`, which relies on that proof:
    /// only a group's first `history_root` is checked against the store's
    /// MMR.
    Bare(Vec<Hashed<BareHeader>>),
    /// A compact range proven as [`HeaderBatch::Bare`] headers are (it passed
    /// `verify_compact_range`), stored from its columns with
    /// `Store::save_proven_compact_parts`: no header struct is made.
    Compact(Box<HashedCompact>),
}

impl HeaderBatch {
    /// Headers in the batch.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            HeaderBatch::Signed(h) => h.len(),
            HeaderBatch::Bare(h) => h.len(),
            HeaderBatch::Compact(h) => h.len(),
        }
    }

    /// True when it holds no header.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first header's `validators_hash`, and whether the batch carries
    /// its validator set.
    #[must_use]
    pub fn first_validators(&self) -> Option<(Hash, bool)> {
        match self {
            HeaderBatch::Signed(h) => h
                .first()
                .map(|s| (s.header.validators_hash, s.validator_set.is_some())),
            HeaderBatch::Bare(h) => h
                .first()
                .map(|b| (b.header.validators_hash, b.validator_set.is_some())),
            HeaderBatch::Compact(h) => (!h.is_empty()).then(|| {
                let columns = h.headers();
                let attached = columns.validator_sets.first().is_some_and(|(i, _)| *i == 0);
                (columns.validators_hash, attached)
            }),
        }
    }

    /// The last header's `validators_hash`.
    #[must_use]
    pub fn last_validators_hash(&self) -> Option<Hash> {
        match self {
            HeaderBatch::Signed(h) => h.last().map(|s| s.header.validators_hash),
            HeaderBatch::Bare(h) => h.last().map(|b| b.header.validators_hash),
            HeaderBatch::Compact(h) => (!h.is_empty()).then(|| {
                // A change at index i is header i's next set: header i + 1's.
                let columns = h.headers();
                let last = u32::try_from(h.len() - 1).unwrap_or(u32::MAX);
                columns
                    .validators_changes
                    .iter()
                    .take_while(|(i, _)| *i < last)
                    .last()
                    .map_or(columns.validators_hash, |(_, next)| *next)
            }),
        }
    }

    /// The first header's `last_block_id` hash.
    #[must_use]
    pub fn first_parent(&self) -> Option<Hash> {
        match self {
            HeaderBatch::Signed(h) => h.first()?.header.last_block_id.map(|id| id.hash),
            HeaderBatch::Bare(h) => h.first()?.header.last_block_id.map(|id| id.hash),
            HeaderBatch::Compact(h) => h.headers().parent_hash,
        }
    }

    /// The first header's height.
    #[must_use]
    pub fn first_height(&self) -> Option<u64> {
        match self {
            HeaderBatch::Signed(h) => h.first().map(|s| s.header.height),
            HeaderBatch::Bare(h) => h.first().map(|b| b.header.height),
            HeaderBatch::Compact(h) => Some(h.start_height()),
        }
    }

    /// The last header's height and hash.
    #[must_use]
    pub fn last(&self) -> Option<(u64, Hash)> {
        match self {
            HeaderBatch::Signed(h) => h.last().map(|s| (s.header.height, s.hash())),
            HeaderBatch::Bare(h) => h.last().map(|b| (b.header.height, b.hash())),
            HeaderBatch::Compact(h) => h.hashes().last().map(|hash| (h.last_height(), *hash)),
        }
    }

    /// The headers, copied (a compact batch's are made from its columns).
    #[must_use]
    pub fn to_headers(&self) -> Vec<Header> {
        match self {
            HeaderBatch::Signed(h) => h.iter().map(|s| s.header.clone()).collect(),
            HeaderBatch::Bare(h) => h.iter().map(|b| b.header.clone()).collect(),
            HeaderBatch::Compact(h) => h
                .to_bare()
                .into_iter()
                .map(|b| b.into_inner().header)
                .collect(),
        }
    }
}

impl From<HashedCompact> for HeaderBatch {
    fn from(range: HashedCompact) -> Self {
        HeaderBatch::Compact(Box::new(range))
    }
}

/// Hashes the headers (verification normally has: use `Hashed` batches).
impl From<Vec<SignedHeader>> for HeaderBatch {
    fn from(headers: Vec<SignedHeader>) -> Self {
        HeaderBatch::Signed(Hashed::all(headers))
    }
}

/// Hashes the headers (verification normally has: use `Hashed` batches).
impl From<Vec<BareHeader>> for HeaderBatch {
    fn from(headers: Vec<BareHeader>) -> Self {
        HeaderBatch::Bare(Hashed::all(headers))
    }
}

impl From<Vec<Hashed<SignedHeader>>> for HeaderBatch {
    fn from(headers: Vec<Hashed<SignedHeader>>) -> Self {
        HeaderBatch::Signed(headers)
    }
}

impl From<Vec<Hashed<BareHeader>>> for HeaderBatch {
    fn from(headers: Vec<Hashed<BareHeader>>) -> Self {
        HeaderBatch::Bare(headers)
    }
}

/// What the writer has done so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriterState {
    /// Headers up to this height are stored.
    Stored(u64),
    /// Storing failed; the writer stopped.
    Failed(String),
}

/// Handle to the writer thread.
#[derive(Debug)]
pub struct HeaderWriter {
    tx: Option<mpsc::Sender<HeaderBatch>>,
    state: watch::Receiver<WriterState>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The writer thread is gone and that was reported once.
    gone_reported: bool,
    /// Emptied vectors of stored bare batches (at most [`MAX_RETURNED_BUFFERS`]).
    spare: Arc<Spare>,
}

/// See [`HeaderWriter::take_spare`].
type Spare = Mutex<Vec<Vec<Hash>>>;

impl HeaderWriter {
    /// Starts the writer on a blocking thread. It counts stored headers into
    /// `metrics` and publishes the stored height.
    pub fn spawn(store: Store, metrics: Arc<HeaderSyncMetrics>) -> HeaderWriter {
        let (tx, mut rx) = mpsc::channel::<HeaderBatch>(WRITE_QUEUE);
        let (state_tx, state) = watch::channel(WriterState::Stored(store.header_height()));
        let spare = Arc::new(Spare::default());
        let returned = spare.clone();
        let task = tokio::task::spawn_blocking(move || {
            while let Some(first) = rx.blocking_recv() {
                let mut batches = vec![first];
                let mut count = batches[0].len();
                while count < MAX_WRITE_HEADERS {
                    match rx.try_recv() {
                        Ok(more) => {
                            count += more.len();
                            batches.push(more);
                        }
                        Err(_) => break,
                    }
                }
                if let Err(e) = write_group(&store, &metrics, &batches) {
                    error!(error = %e, "storing verified headers failed");
                    let _ = state_tx.send(WriterState::Failed(e.to_string()));
                    return;
                }
                // Before the new height is published: a caller that saw it
                // finds the vectors back.
                for batch in batches {
                    if let HeaderBatch::Compact(range) = batch {
                        // The columns are dropped here, on the writer's thread.
                        let mut hashes = range.into_hashes();
                        hashes.clear();
                        let mut spare = returned.lock().unwrap_or_else(PoisonError::into_inner);
                        if spare.len() < MAX_RETURNED_BUFFERS {
                            spare.push(hashes);
                        }
                    }
                }
                let _ = state_tx.send(WriterState::Stored(store.header_height()));
            }
        });
        HeaderWriter {
            tx: Some(tx),
            state,
            task: Some(task),
            gone_reported: false,
            spare,
        }
    }

    /// The emptied hash vector of a stored compact batch, if the writer kept
    /// one, to hash another range into instead of allocating (see
    /// `RangeSync::recycle`).
    pub fn take_spare(&self) -> Option<Vec<Hash>> {
        self.spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    /// Queues a batch, waiting for room.
    ///
    /// # Errors
    ///
    /// The writer's failure if it has stopped.
    pub async fn send(&self, headers: impl Into<HeaderBatch>) -> Result<(), String> {
        let Some(tx) = &self.tx else {
            return Err("the header writer is closed".into());
        };
        if tx.send(headers.into()).await.is_err() {
            return Err(self.failure());
        }
        Ok(())
    }

    /// Queues a batch if there is room; gives it back otherwise.
    ///
    /// # Errors
    ///
    /// `Ok(Some(headers))` when the queue is full; `Err` if the writer stopped.
    pub fn try_send(&self, headers: HeaderBatch) -> Result<Option<HeaderBatch>, String> {
        let Some(tx) = &self.tx else {
            return Err("the header writer is closed".into());
        };
        match tx.try_send(headers) {
            Ok(()) => Ok(None),
            Err(mpsc::error::TrySendError::Full(headers)) => Ok(Some(headers)),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(self.failure()),
        }
    }

    /// The writer's current state.
    pub fn state(&self) -> WriterState {
        self.state.borrow().clone()
    }

    /// Waits until the state changes. If the writer thread ends without
    /// having reported a failure (it panicked), this returns
    /// [`WriterState::Failed`] once; after that it pends forever.
    pub async fn changed(&mut self) -> WriterState {
        if self.state.changed().await.is_err() {
            let last = self.state.borrow().clone();
            if !self.gone_reported && !matches!(last, WriterState::Failed(_)) {
                self.gone_reported = true;
                return WriterState::Failed("the header writer stopped unexpectedly".into());
            }
            std::future::pending::<()>().await;
        }
        self.state.borrow_and_update().clone()
    }

    /// Stops taking batches, waits until everything queued is stored, and
    /// returns the final state.
    pub async fn finish(mut self) -> WriterState {
        self.tx = None;
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            return WriterState::Failed(format!("the header writer panicked: {e}"));
        }
        self.state()
    }

    fn failure(&self) -> String {
        match self.state() {
            WriterState::Failed(e) => e,
            WriterState::Stored(_) => "the header writer stopped".into(),
        }
    }
}

/// Stores the batches, each run of batches of one kind in one write; if
/// that fails, one by one, so every batch before a bad one is kept and the
/// error names the bad one. A run is handed to the store as parts, not
/// copied into one vector: moving every header of a run once more cost about
/// as much as encoding it for the store.
fn write_group(
    store: &Store,
    metrics: &HeaderSyncMetrics,
    batches: &[HeaderBatch],
) -> Result<(), StoreError> {
    let mut batches = batches;
    while let Some(first) = batches.first() {
        let kind = std::mem::discriminant(first);
        let run = batches
            .iter()
            .take_while(|b| std::mem::discriminant(*b) == kind)
            .count();
        let (this, rest) = batches.split_at(run);
        match first {
            HeaderBatch::Signed(_) => write_run(store, metrics, &signed_parts(this))?,
            HeaderBatch::Bare(_) => write_run(store, metrics, &bare_parts(this))?,
            HeaderBatch::Compact(_) => write_compact_run(store, metrics, &compact_parts(this))?,
        }
        batches = rest;
    }
    Ok(())
}

fn signed_parts(batches: &[HeaderBatch]) -> Vec<&[Hashed<SignedHeader>]> {
    batches
        .iter()
        .filter_map(|b| match b {
            HeaderBatch::Signed(h) => Some(&h[..]),
            _ => None,
        })
        .collect()
}

fn bare_parts(batches: &[HeaderBatch]) -> Vec<&[Hashed<BareHeader>]> {
    batches
        .iter()
        .filter_map(|b| match b {
            HeaderBatch::Bare(h) => Some(&h[..]),
            _ => None,
        })
        .collect()
}

fn compact_parts(batches: &[HeaderBatch]) -> Vec<&HashedCompact> {
    batches
        .iter()
        .filter_map(|b| match b {
            HeaderBatch::Compact(h) => Some(&**h),
            _ => None,
        })
        .collect()
}

/// [`write_run`] of compact ranges: stored from their columns, unless the
/// first reaches into the stored headers (only after a v2 run that ended
/// abnormally), when the run is made into headers and stored as bare ones,
/// which skips the headers stored already.
fn write_compact_run(
    store: &Store,
    metrics: &HeaderSyncMetrics,
    parts: &[&HashedCompact],
) -> Result<(), StoreError> {
    let Some(first) = parts.first() else {
        return Ok(());
    };
    if first.start_height() <= store.header_height() {
        let bare: Vec<Vec<Hashed<BareHeader>>> = parts.iter().map(|p| p.to_bare()).collect();
        let bare: Vec<&[Hashed<BareHeader>]> = bare.iter().map(Vec::as_slice).collect();
        return write_run(store, metrics, &bare);
    }
    let save = |parts: &[&HashedCompact]| {
        store.save_proven_compact_parts(parts)?;
        counted(store, metrics, parts.iter().map(|p| p.len()).sum(), true);
        Ok(())
    };
    let Err(error) = save(parts) else {
        return Ok(());
    };
    if parts.len() == 1 {
        return Err(error);
    }
    warn!(%error, batches = parts.len(), "storing a group of compact ranges failed; storing them one by one");
    for part in parts {
        save(&[part])?;
    }
    Ok(())
}

fn write_run<T: Stored>(
    store: &Store,
    metrics: &HeaderSyncMetrics,
    parts: &[&[Hashed<T>]],
) -> Result<(), StoreError> {
    let Err(error) = write(store, metrics, parts) else {
        return Ok(());
    };
    if parts.len() == 1 {
        return Err(error);
    }
    warn!(%error, batches = parts.len(), "storing a group of batches failed; storing them one by one");
    for part in parts {
        write(store, metrics, &[part])?;
    }
    Ok(())
}

/// What the writer stores: signed or bare headers.
trait Stored: Sized {
    /// Headers-only (bare) batches.
    const BARE: bool;
    fn header(item: &Hashed<Self>) -> &Header;
    fn save(store: &Store, parts: &[&[Hashed<Self>]]) -> Result<(), StoreError>;
}

impl Stored for SignedHeader {
    const BARE: bool = false;
    fn header(item: &Hashed<Self>) -> &Header {
        &item.header
    }
    fn save(store: &Store, parts: &[&[Hashed<Self>]]) -> Result<(), StoreError> {
        store.save_hashed_header_parts(parts)
    }
}

impl Stored for BareHeader {
    const BARE: bool = true;
    fn header(item: &Hashed<Self>) -> &Header {
        &item.header
    }
    fn save(store: &Store, parts: &[&[Hashed<Self>]]) -> Result<(), StoreError> {
        // Bare headers come from v2 ranges, proven into a verified
        // commitment (see `HeaderBatch::Bare`).
        store.save_proven_bare_header_parts(parts)
    }
}

/// Stores the concatenation of `parts`. Headers already stored (another
/// writer got there first, e.g. after a v2 run that ended abnormally) are
/// skipped when they are the same headers, and are an error when they are
/// not.
fn write<T: Stored>(
    store: &Store,
    metrics: &HeaderSyncMetrics,
    parts: &[&[Hashed<T>]],
) -> Result<(), StoreError> {
    let stored = store.header_height();
    let mut parts: Vec<&[Hashed<T>]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    while let Some(first) = parts.first().and_then(|p| p.first())
        && T::header(first).height <= stored
    {
        let height = T::header(first).height;
        let same = store
            .load_header(height)?
            .is_some_and(|h| h.hash() == first.hash());
        if !same {
            return Err(StoreError::HeaderHeightGap {
                expected: stored + 1,
                got: height,
            });
        }
        match parts[0].get(1..) {
            Some(rest) if !rest.is_empty() => parts[0] = rest,
            _ => {
                parts.remove(0);
            }
        }
    }
    let count: usize = parts.iter().map(|p| p.len()).sum();
    if count == 0 {
        return Ok(());
    }
    T::save(store, &parts)?;
    counted(store, metrics, count, T::BARE);
    Ok(())
}

/// Counts `count` headers just stored.
fn counted(store: &Store, metrics: &HeaderSyncMetrics, count: usize, bare: bool) {
    metrics
        .headers_synced
        .fetch_add(count as u64, Ordering::Relaxed);
    metrics
        .header_height
        .store(store.header_height(), Ordering::Relaxed);
    debug!(
        count,
        height = store.header_height(),
        bare,
        "stored a group of headers"
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use headway_chain::{ChainGenerator, GeneratorConfig};
    use headway_store::StoreConfig;

    use super::*;

    fn chain(n: usize) -> Vec<SignedHeader> {
        ChainGenerator::new(GeneratorConfig::small(3))
            .unwrap()
            .take(n)
            .map(|b| b.signed_header)
            .collect()
    }

    fn store() -> Store {
        Store::open_temporary(StoreConfig::new().with_sync_on_commit(false)).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stores_every_batch_in_order_and_counts_it() {
        let headers = chain(120);
        let (store, metrics) = (store(), Arc::new(HeaderSyncMetrics::default()));
        let writer = HeaderWriter::spawn(store.clone(), metrics.clone());
        for batch in headers.chunks(7) {
            writer.send(batch.to_vec()).await.unwrap();
        }
        assert_eq!(writer.finish().await, WriterState::Stored(120));
        assert_eq!(store.header_height(), 120);
        assert_eq!(store.load_header(77).unwrap().unwrap(), headers[76].header);
        assert_eq!(metrics.headers_synced.load(Ordering::Relaxed), 120);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_gives_the_batch_back() {
        let headers = chain(WRITE_QUEUE * 4);
        // Durable writes (a flush each) are far slower than queueing, so the
        // queue fills while the loop runs.
        let store = Store::open_temporary(StoreConfig::new().with_sync_on_commit(true)).unwrap();
        let writer = HeaderWriter::spawn(store.clone(), Arc::default());
        let mut given_back = 0;
        for one in headers.chunks(1) {
            if let Some(back) = writer.try_send(one.to_vec().into()).unwrap() {
                given_back += 1;
                assert_eq!(back, HeaderBatch::from(one.to_vec()));
                // Nothing is lost: the caller keeps it and queues it later.
                writer.send(back).await.unwrap();
            }
        }
        assert!(given_back > 0, "the queue never filled");
        assert_eq!(
            writer.finish().await,
            WriterState::Stored(headers.len() as u64)
        );
        assert_eq!(store.header_height(), headers.len() as u64);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn headers_stored_already_are_skipped_only_when_they_are_the_same() {
        let headers = chain(30);
        let store = store();
        let writer = HeaderWriter::spawn(store.clone(), Arc::default());
        writer.send(headers[..10].to_vec()).await.unwrap();
        // 5..=20 overlaps 5..=10: the same headers, so only 11.. is stored.
        writer.send(headers[4..20].to_vec()).await.unwrap();
        assert_eq!(writer.finish().await, WriterState::Stored(20));

        let other: Vec<SignedHeader> = ChainGenerator::new(GeneratorConfig::small(4))
            .unwrap()
            .take(30)
            .map(|b| b.signed_header)
            .collect();
        let writer = HeaderWriter::spawn(store.clone(), Arc::default());
        writer.send(other[14..25].to_vec()).await.unwrap();
        let WriterState::Failed(reason) = writer.finish().await else {
            panic!("a different header at a stored height must fail");
        };
        assert!(reason.contains("15"), "{reason}");
        assert_eq!(store.header_height(), 20);
        assert_eq!(store.load_header(15).unwrap().unwrap(), headers[14].header);
    }

    /// A group mixes kinds, overlaps what is stored across its parts, and
    /// fails in its last batch: runs of one kind go to the store as parts,
    /// the overlap is skipped part by part, and the one-by-one retry keeps
    /// every batch before the bad one.
    #[test]
    fn groups_are_stored_as_parts_by_kind_and_retried_one_by_one() {
        let headers = chain(70);
        let reference = store();
        reference.save_headers(&headers).unwrap();
        let bare = |from: usize, to: usize| {
            HeaderBatch::from(
                reference
                    .load_bare_headers(from as u64 + 1, (to - from) as u64)
                    .unwrap(),
            )
        };
        let signed = |from: usize, to: usize| HeaderBatch::from(headers[from..to].to_vec());
        let store = store();
        let metrics = HeaderSyncMetrics::default();
        store.save_headers(&headers[..12]).unwrap();
        // Heights 6..=10 and 11..=15 (signed, 12 stored already), 16..=30
        // bare in two parts, 31..=40 signed.
        let group = vec![
            signed(5, 10),
            signed(10, 15),
            bare(15, 22),
            bare(22, 30),
            signed(30, 40),
        ];
        write_group(&store, &metrics, &group).unwrap();
        assert_eq!(store.header_height(), 40);
        assert_eq!(store.bare_height(), 30);
        assert_eq!(metrics.headers_synced.load(Ordering::Relaxed), 28);
        assert_eq!(
            store.load_bare_headers(1, 40).unwrap(),
            reference.load_bare_headers(1, 40).unwrap()
        );
        assert!(store.load_commit(20).unwrap().is_none());
        assert_eq!(
            store.load_commit(35).unwrap(),
            reference.load_commit(35).unwrap()
        );

        // Compact runs: 38..=50 reaches into the stored 40 and is stored
        // as bare headers from 41; then 51..=60 from its columns.
        let group = vec![
            compact(&reference, 38, 13),
            compact(&reference, 51, 5),
            compact(&reference, 56, 5),
        ];
        write_group(&store, &metrics, &group).unwrap();
        assert_eq!(store.header_height(), 60);
        assert_eq!(store.bare_height(), 60);
        assert_eq!(
            store.load_bare_headers(1, 60).unwrap(),
            reference.load_bare_headers(1, 60).unwrap()
        );

        // 61..=65 good, then a range that skips 66: the run fails as a
        // whole, and the retry stores the good range before failing.
        let group = vec![compact(&reference, 61, 5), compact(&reference, 67, 4)];
        let error = write_group(&store, &metrics, &group).unwrap_err();
        assert!(
            matches!(
                error,
                StoreError::NonContiguousBatch {
                    expected: 66,
                    got: 67,
                    ..
                } | StoreError::HeaderHeightGap {
                    expected: 66,
                    got: 67
                }
            ),
            "{error}"
        );
        assert_eq!(store.header_height(), 65);
        store.check_integrity().unwrap();

        // 41..=45 good, then a batch that skips 46: the run fails as a
        // whole, and the retry stores the good batch before failing.
        let store = self::store();
        store.save_headers(&headers[..40]).unwrap();
        let group = vec![bare(40, 45), bare(46, 50)];
        let error = write_group(&store, &metrics, &group).unwrap_err();
        assert!(
            matches!(
                error,
                StoreError::HeaderHeightGap {
                    expected: 46,
                    got: 47
                }
            ),
            "{error}"
        );
        assert_eq!(store.header_height(), 45);
        store.check_integrity().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_error_stops_the_writer_with_its_reason() {
        let headers = chain(20);
        let store = store();
        let mut writer = HeaderWriter::spawn(store.clone(), Arc::default());
        writer.send(headers[..5].to_vec()).await.unwrap();
        // A gap: 11.. after 5. Whether or not both land in one group, the
        // first batch is kept.
        writer.send(headers[10..].to_vec()).await.unwrap();
        let state = loop {
            match writer.changed().await {
                WriterState::Stored(_) => continue,
                failed => break failed,
            }
        };
        let WriterState::Failed(reason) = state else {
            unreachable!()
        };
        assert!(
            reason.contains("height 11") && reason.contains("is 6"),
            "{reason}"
        );
        assert_eq!(writer.finish().await, WriterState::Failed(reason));
        assert_eq!(store.header_height(), 5);
    }

    /// Stored compact batches give their emptied hash vectors back (at most
    /// `MAX_RETURNED_BUFFERS` kept); signed and bare ones do not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stored_compact_batches_give_their_vectors_back() {
        let headers = chain(90);
        let reference = store();
        reference.save_headers(&headers).unwrap();
        let store = store();
        let mut writer = HeaderWriter::spawn(store.clone(), Arc::default());
        writer.send(headers[..10].to_vec()).await.unwrap();
        let bare = reference.load_bare_headers(11, 10).unwrap();
        writer.send(bare).await.unwrap();
        for from in (20..90).step_by(10) {
            writer
                .send(compact(&reference, from + 1, 10))
                .await
                .unwrap();
        }
        while writer.state() != WriterState::Stored(90) {
            writer.changed().await;
        }
        let mut spares = Vec::new();
        while let Some(spare) = writer.take_spare() {
            spares.push(spare);
        }
        assert!(
            (1..=MAX_RETURNED_BUFFERS).contains(&spares.len()),
            "{} vectors back",
            spares.len()
        );
        for spare in &spares {
            assert!(spare.is_empty() && spare.capacity() >= 10);
        }
        assert_eq!(writer.finish().await, WriterState::Stored(90));
        assert_eq!(
            store.load_bare_headers(1, 90).unwrap(),
            reference.load_bare_headers(1, 90).unwrap()
        );
        store.check_integrity().unwrap();
    }

    /// The compact range of `count` stored headers from `from`, hashed.
    fn compact(reference: &Store, from: u64, count: u64) -> HeaderBatch {
        let bare = reference.load_bare_headers(from, count).unwrap();
        let columns = headway_wire::CompactHeaders::from_bare(&bare).unwrap();
        HashedCompact::new(from, columns, Vec::new())
            .unwrap()
            .into()
    }
}
