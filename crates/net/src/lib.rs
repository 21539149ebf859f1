//! Headway's QUIC transport.
//!
//! - **Identity**: a node is an Ed25519 key ([`NodeKey`]); its [`PeerId`] is
//!   the public key. TLS 1.3 only, with self-signed certificates whose key is
//!   the identity: a dialler states the peer id it expects and the handshake
//!   fails for any other key; inbound peers are identified the same way.
//! - **Exchanges**: one QUIC stream per request/response, with a timeout;
//!   pushes (status updates, announcements) on one ordered stream per peer.
//!   Frames come from `headway-wire`, with their per-kind size limits checked
//!   before allocation.
//! - **Limits**: concurrent request streams per peer, inbound and outbound
//!   connections, idle time, queue capacities ([`NetConfig`]); back-pressure
//!   through bounded channels, and an explicit `BUSY` answer when the
//!   application cannot take more requests.
//! - **Peers**: bootstrap peers redialled with backoff, a ban list with expiry
//!   and reasons that protocol reactors add to, disconnect on request.
//!
//! ```no_run
//! use headway_net::{NetConfig, Network, NodeKey};
//! use headway_wire::{GetHeaders, Request};
//!
//! # async fn example(server_addr: std::net::SocketAddr, server: headway_net::PeerId) -> Result<(), headway_net::NetError> {
//! let (net, mut events) = Network::start(NodeKey::generate(), NetConfig::default(), vec![]).await?;
//! net.connect(server_addr, server).await?;
//! let response = net.request(server, &Request::GetHeaders(GetHeaders { start_height: 1, count: 50 })).await?;
//! # let _ = (response, events.recv().await);
//! # Ok(()) }
//! ```

mod config;
mod error;
mod identity;
pub mod peers;
#[cfg(feature = "test-util")]
pub mod testing;
mod transport;

pub use config::{
    ALPN_V1, DEFAULT_INITIAL_CONGESTION_WINDOW, DEFAULT_MAX_UDP_PAYLOAD_SIZE,
    DEFAULT_SOCKET_BUFFER_BYTES, GSO_BATCH_DATAGRAMS, MAX_INITIAL_CONGESTION_WINDOW,
    MAX_UDP_PAYLOAD_SIZE, MIN_INITIAL_CONGESTION_WINDOW, MIN_UDP_PAYLOAD_SIZE, NetConfig,
};
pub use error::NetError;
pub use identity::{NodeKey, PeerId, peer_id_from_certificate};
pub use peers::{BanList, BootstrapPeer, Dialler, MAX_BAN_DURATION};
pub use transport::{NetEvent, NetMetrics, Network, Responder, close_code};
