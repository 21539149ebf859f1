//! Transport errors.

use headway_wire::{FrameError, WireError};

use crate::PeerId;

/// What went wrong in the transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// A peer id string is not 64 hex digits of an Ed25519 key.
    #[error("invalid peer id {0}")]
    InvalidPeerId(String),
    /// A peer's certificate is not a well-formed Ed25519 certificate.
    #[error("bad peer certificate: {0}")]
    BadCertificate(String),
    /// A [`crate::NetConfig`] value is out of its range.
    #[error("invalid transport configuration: {field}: {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// TLS could not be configured.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The listening socket could not be bound (for example: the port is in use).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Dialling failed before or during the handshake (includes a wrong peer key).
    #[error("connecting to {peer:?} failed: {reason}")]
    Connect {
        /// The peer dialled.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// The peer is banned.
    #[error("peer {0:?} is banned")]
    Banned(PeerId),
    /// The connection would pass the configured limit of its direction
    /// (`NetConfig::max_inbound_connections` or `max_outbound_connections`).
    #[error("{} connection limit of {limit} reached", if *.inbound { "inbound" } else { "outbound" })]
    TooManyConnections {
        /// Whether the refused connection was inbound.
        inbound: bool,
        /// The limit.
        limit: usize,
    },
    /// There is no connection to the peer.
    #[error("not connected to {0:?}")]
    NotConnected(PeerId),
    /// The exchange did not complete within its timeout.
    #[error("request to {0:?} timed out")]
    Timeout(PeerId),
    /// The connection or stream failed.
    #[error("stream to {peer:?}: {reason}")]
    Stream {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// The peer sent a frame that is too large, truncated or malformed: the peer's fault.
    #[error("peer {peer:?} sent a bad frame: {source}")]
    BadFrame {
        /// The peer.
        peer: PeerId,
        /// What was wrong.
        source: FrameError,
    },
    /// The peer's response does not answer the request: the peer's fault.
    #[error("peer {peer:?} sent a response that does not match the request: {source}")]
    BadResponse {
        /// The peer.
        peer: PeerId,
        /// What was wrong.
        source: WireError,
    },
    /// Our own message broke a protocol rule (a bug on this side).
    #[error("refusing to send an invalid message: {0}")]
    InvalidOutgoing(FrameError),
    /// The peer's push queue is full: it is not reading.
    #[error("push queue to {0:?} is full")]
    PushQueueFull(PeerId),
}

impl NetError {
    /// True when the error shows the peer misbehaved (as opposed to a network
    /// failure or our own limits), so protocol reactors can score or ban it.
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            NetError::BadFrame { .. } | NetError::BadResponse { .. }
        )
    }
}
