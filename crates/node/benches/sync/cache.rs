//! The benchmark chain, generated once and cached on disk as a store.
//!
//! Generating 100 000 devnet blocks takes a minute or so, so the chain is
//! built once into a `headway-store` under the bench directory
//! (`chain-<params>/store`) and reused by later runs. A `complete` marker is
//! written only after the store is flushed, so an interrupted build is
//! detected and redone.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use headway_chain::{ChainGenerator, TrustedState};
use headway_node::config::DevnetParams;
use headway_store::{Store, StoreConfig, StoreError};
use headway_wire::SignedHeader;

/// Headers handed to one `save_headers` call while building the cache.
const BUILD_BATCH: usize = 1000;

/// The chain under test: its serving store, every signed header in memory,
/// and the genesis trusted state.
pub struct Chain {
    /// The tip height.
    pub tip: u64,
    /// The store the serving peers answer from (shared by all of them): a
    /// copy of the cache in memory (see [`MemoryCopy`]).
    pub store: Store,
    /// Removes that copy when the chain is dropped (after `store`).
    _copy: MemoryCopy,
    /// Signed headers `1..=tip` (index `h - 1`).
    pub headers: Arc<Vec<SignedHeader>>,
    /// Trusted state at height 1.
    pub genesis: TrustedState,
}

impl Chain {
    /// Loads the cached chain of `len` headers under `dir`, building it first if needed.
    pub fn load_or_build(dir: &Path, params: &DevnetParams, len: u64) -> Chain {
        let path = cache_dir(dir, params, len);
        let marker = path.join("complete");
        let config = StoreConfig::new().with_sync_on_commit(false);
        // A cache written by an older store format is rebuilt.
        if marker.exists()
            && let Err(StoreError::UnsupportedVersion { found, supported }) =
                Store::open(path.join("store"), config.clone())
        {
            eprintln!("[cache] store format {found} is not {supported}: rebuilding");
            std::fs::remove_file(&marker).expect("removing a stale cache marker");
        }
        if !marker.exists() {
            if path.exists() {
                std::fs::remove_dir_all(&path).expect("removing an incomplete chain cache");
            }
            std::fs::create_dir_all(&path).expect("creating the chain cache directory");
            eprintln!(
                "[cache] generating a {len}-header devnet chain into {} (once; later runs reuse it)",
                path.display()
            );
            let started = Instant::now();
            let store =
                Store::open(path.join("store"), config.clone()).expect("opening the cache store");
            let mut batch = Vec::with_capacity(BUILD_BATCH);
            let generator = ChainGenerator::new(params.generator_config()).expect("devnet params");
            for block in generator.take(len as usize) {
                batch.push(block.signed_header);
                if batch.len() == BUILD_BATCH {
                    store
                        .save_headers(&batch)
                        .expect("storing generated headers");
                    batch.clear();
                    let height = store.header_height();
                    if height.is_multiple_of(10_000) {
                        eprintln!(
                            "[cache]   {height} headers, {:.0} s",
                            started.elapsed().as_secs_f64()
                        );
                    }
                }
            }
            if !batch.is_empty() {
                store
                    .save_headers(&batch)
                    .expect("storing generated headers");
            }
            store.flush().expect("flushing the cache store");
            drop(store);
            std::fs::write(&marker, format!("{params:?} len={len}\n"))
                .expect("writing the cache marker");
            eprintln!("[cache] built in {:.1} s", started.elapsed().as_secs_f64());
        }
        let started = Instant::now();
        let copy = MemoryCopy::of(&path.join("store"));
        let store = Store::open(&copy.0, config).expect("opening the cached chain");
        let tip = store.header_height();
        assert_eq!(tip, len, "cached chain at {} is incomplete", path.display());
        let headers: Vec<SignedHeader> = (1..=tip)
            .map(|h| {
                store
                    .load_signed_header(h)
                    .expect("reading the cached chain")
                    .expect("cached header")
            })
            .collect();
        let first = &headers[0];
        let set = first
            .validator_set
            .clone()
            .expect("genesis carries its validator set");
        let genesis =
            TrustedState::new(first.header.clone(), set).expect("genesis is a trusted state");
        eprintln!(
            "[cache] loaded {tip} headers from {} in {:.1} s",
            path.display(),
            started.elapsed().as_secs_f64()
        );
        Chain {
            tip,
            store,
            _copy: copy,
            headers: Arc::new(headers),
            genesis,
        }
    }
}

/// The serving store, copied into memory (`/dev/shm`, else the temporary
/// directory) for the run, as the syncing node's store is.
///
/// This VM drops clean page-cache pages within seconds even with most of
/// its memory free (a third of a freshly read 156 MB header log was gone
/// 20 s later), so serving peers reading the cache where it lies read from
/// the virtual disk: readahead and I/O were ~14% of their CPU in a profile,
/// and their latency varied from run to run. A serving node with its
/// headers in memory is what the loopback cells mean to measure.
struct MemoryCopy(PathBuf);

impl MemoryCopy {
    fn of(store: &Path) -> MemoryCopy {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_owned()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("headway-bench-store-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("removing a stale serving-store copy");
        }
        copy_dir(store, &dir);
        MemoryCopy(dir)
    }
}

impl Drop for MemoryCopy {
    fn drop(&mut self) {
        // Best effort: a leftover copy is removed by the next run of this pid.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating the serving-store copy");
    for entry in std::fs::read_dir(from).expect("reading the cached store") {
        let entry = entry.expect("reading the cached store");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("cached store entry").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copying the cached store");
        }
    }
}

/// What the cached chain's bytes depend on besides the parameters: bumped
/// when the chain's encoding or history roots change (2: the MMR root puts
/// the leaf count last), or when the store would read an older cache but
/// serve it otherwise than a new one (3: store format 10 reads format-9
/// segments, but the serving peers should read the delta rows a store now
/// writes), so a stale cache is rebuilt rather than loaded.
const CACHE_FORMAT: u32 = 3;

/// `chain-devnet-s<seed>-v<validators>-r<rotation>-x<replacements>-n<len>-f<format>`.
fn cache_dir(dir: &Path, params: &DevnetParams, len: u64) -> PathBuf {
    let replace: Vec<String> = params.replace_all_at.iter().map(u64::to_string).collect();
    dir.join(format!(
        "chain-devnet-s{}-v{}-r{}-x{}-n{len}-f{CACHE_FORMAT}",
        params.seed,
        params.validators,
        params.rotation_interval,
        if replace.is_empty() {
            "none".to_owned()
        } else {
            replace.join("_")
        },
    ))
}
