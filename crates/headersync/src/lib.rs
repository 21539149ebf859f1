//! Header sync for Headway.
//!
//! - [`pool`]: the sans-IO header sync pool of the spec in seed 003
//!   (requirements R1–R8): peers and their reported ranges, parallel
//!   non-overlapping batch requests, in-order batch verification with skip
//!   verification, timeouts that move work elsewhere, bans.
//! - [`reactor`]: the thin async driver: transport events in, requests out,
//!   verified batches stored through `headway-store`, status pushed to peers,
//!   bans applied, metrics ([`HeaderSyncMetrics`]) and logs.
//! - [`subscription`]: loss-free, in-order header delivery to later stages.
//! - [`v2`], [`parallel`], [`bootstrap`]: parallel header sync over MMR
//!   commitments (getheadersv2, seed 000) after a checkpoint bootstrap that
//!   jumps to the latest verified header by bisection (seed 001).
//! - [`progress`]: what the reactor logs every 10 s while behind (height,
//!   target, rate, time left), sans-IO.
//! - [`server`]: answering `GetHeaders` from a store, with a per-peer sliding
//!   window rate limit and explicit `RATE_LIMITED` answers.
//!
//! The pool is deterministic: tests drive it with virtual time and many
//! simulated peers (`tests/pool_sim.rs`).
//!
//! ```
//! use std::time::Instant;
//! use headway_chain::{ChainGenerator, GeneratorConfig};
//! use headway_headersync::{HeaderSyncPool, PoolConfig, PoolEvent};
//! use headway_wire::{HeadersResponse, StatusResponse};
//!
//! let chain: Vec<_> = ChainGenerator::new(GeneratorConfig::small(1)).unwrap().take(30).collect();
//! let mut pool = HeaderSyncPool::new(chain[0].trusted_state(), PoolConfig::default());
//! let now = Instant::now();
//! pool.on_status(7u32, StatusResponse::new(1, 30), now);
//! let (peer, request) = pool.poll_request(now).unwrap();
//! assert_eq!((peer, request.start_height, request.count), (7, 2, 29));
//! let headers = chain[1..30].iter().map(|b| b.signed_header.clone()).collect();
//! pool.on_headers(peer, HeadersResponse { start_height: 2, headers }, now);
//! assert!(matches!(pool.poll_event(), Some(PoolEvent::Verified { .. })));
//! assert_eq!(pool.header_height(), 30);
//! ```

pub mod bootstrap;
pub mod metrics;
pub mod parallel;
pub mod pool;
pub mod progress;
pub mod reactor;
pub mod server;
pub mod status;
pub mod subscription;
pub mod v2;
pub mod writer;

pub use metrics::HeaderSyncMetrics;
pub use parallel::{ParallelConfig, ParallelReport, PeerUpdate, sync_parallel};
pub use pool::{HeaderSyncPool, PeerStats, PoolConfig, PoolCounters, PoolEvent, RequestFailure};
pub use reactor::{HeaderSync, HeaderSyncInput, ReactorConfig, SyncMode, trusted_from_store};
pub use server::{RateLimiter, SignedHeaderSource, answer_get_headers};
pub use status::StatusAnnouncer;
pub use subscription::{HeaderSubscription, SubscriptionError};
pub use writer::{HeaderWriter, WriterState};
