//! The Headway node as a library: what the `headway` binary runs, usable
//! in-process by tests and tools.
//!
//! - [`answers`]: the bounded per-peer FIFO queue of requests being answered.
//! - [`config`]: the configuration file (`config.toml`) and its template.
//! - [`genesis`]: the genesis file (block 1's signed header and validator set).
//! - [`node`]: the running node: store, QUIC transport, header sync reactor,
//!   serving peers, devnet producer, Prometheus endpoint, graceful shutdown.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! let home = std::path::Path::new("/tmp/headway-node");
//! // Runs until the future completes (the binary passes SIGINT/SIGTERM).
//! headway_node::node::run(home, Default::default(), std::future::pending::<&'static str>()).await?;
//! # Ok(()) }
//! ```

pub mod answers;
pub mod config;
pub mod genesis;
pub mod metrics;
pub mod node;
mod producer;
pub mod serve;
