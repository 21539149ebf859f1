//! Protocol conformance tests for Headway.
//!
//! The vectors in `tests/vectors/` are the normative known answers; the tests
//! in this crate check an implementation against them and against the header
//! sync specification (seed 003, requirements R1–R8) and parallel header
//! sync (v2, `docs/protocol.md` §7), black-box, over real QUIC.
//!
//! This library is the harness the tests in `tests/tests/` are built on:
//!
//! - [`node`]: the node under test, started in-process (the default: a
//!   dedicated thread with its own tokio runtime running
//!   `headway_node::node::run`) or as an external process when
//!   `HEADWAY_NODE_BIN` is set (through the `init` / `run` CLI contract, see
//!   `tests/README.md`), so another implementation can be checked the same
//!   way. Its logs are captured per node in both modes.
//! - [`peer`]: scripted peers built on `headway_net::Network` that serve a
//!   generated chain with programmable misbehaviour, record every request
//!   the node sends them and every status it pushes, and detect being banned;
//!   the same type, without a script, is the observer that queries the
//!   node's stored headers.
//! - [`chain`]: the shared test chain (validator rotations and an abrupt
//!   replacement of the whole set) and forgeries of it that break exactly one
//!   rule each.
//! - [`metrics`]: scraping the node's Prometheus endpoint over plain HTTP.
//! - [`wait`]: bounded waits that fail with a message saying what was awaited.
//! - [`v2`]: a parallel header sync (v2) server for scripted peers:
//!   `GetHeadersV2` ranges proven into the MMR history, `GetValidatorSet`,
//!   with hooks to delay, refuse or corrupt any answer.
//!
//! ```no_run
//! use std::time::Duration;
//! use headway_conformance::{chain::test_chain, node::{NodeOptions, TestNode}, peer::ScriptedPeer};
//!
//! # async fn example() {
//! let chain = test_chain();
//! let node = TestNode::start(NodeOptions::default()).await;
//! let honest = ScriptedPeer::honest(chain.headers(), 400).await;
//! honest.connect_and_claim(&node, 400).await;
//! node.wait_header_height(400, Duration::from_secs(30)).await;
//! # }
//! ```

pub mod chain;
pub mod logs;
pub mod metrics;
pub mod node;
pub mod peer;
pub mod v2;
pub mod wait;

/// How long a test waits for something the node must do (sync, ban, push)
/// before failing. Generous: the suite makes no timing assertions about speed.
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);
