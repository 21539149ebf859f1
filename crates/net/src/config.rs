//! Transport configuration: every limit has a name and a default.

use std::{net::SocketAddr, time::Duration};

/// The ALPN of Headway protocol version 1.
pub const ALPN_V1: &[u8] = b"headway/1";

/// Default size of the UDP socket's kernel receive and send buffers. The
/// kernel's default (about 200 KiB on Linux) overflows when many peers
/// stream responses at once while the process is busy, and every datagram
/// dropped there is a loss that halves a QUIC congestion window. Linux caps
/// the request at `net.core.rmem_max` / `wmem_max`.
pub const DEFAULT_SOCKET_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Default initial congestion window of every connection, in bytes: 128
/// datagrams of 1200 bytes. RFC 9002 suggests ten (14 720 bytes), sized for
/// the web's many short flows. A syncing node opens few connections and
/// fills them: at 50 ms RTT, ten datagrams cost a fresh connection about
/// three more round trips of slow start before it carries a 1 MB response
/// pipeline (measured in the header sync bench: v2 headers-only went from
/// ~107k to ~145k headers/s from 8 peers; v1 from ~24k to ~26k). Sends are
/// paced over the round trip, so the window does not leave as one burst,
/// and loss shrinks it as usual. quinn's own BBR starts at 200 datagrams.
pub const DEFAULT_INITIAL_CONGESTION_WINDOW: u64 = 128 * 1200;
/// Largest accepted [`NetConfig::initial_congestion_window`] (1 MiB).
pub const MAX_INITIAL_CONGESTION_WINDOW: u64 = 1024 * 1024;
/// Smallest accepted [`NetConfig::initial_congestion_window`]: two minimum
/// QUIC datagrams, RFC 9002's floor.
pub const MIN_INITIAL_CONGESTION_WINDOW: u64 = 2 * 1200;

/// Default [`NetConfig::max_udp_payload_size`]: quinn's own ceiling, what a
/// 1500-byte Ethernet path carries over IPv6 (1500 − 40 − 8).
pub const DEFAULT_MAX_UDP_PAYLOAD_SIZE: u16 = 1452;
/// Largest accepted [`NetConfig::max_udp_payload_size`]. quinn sends up to
/// ten datagrams in one GSO batch ([`GSO_BATCH_DATAGRAMS`]), and the kernel
/// refuses a batch whose payloads add up to more than one UDP datagram can
/// carry (65 507 bytes over IPv4) with `EMSGSIZE`, which quinn-udp ignores as
/// it would a failed MTU probe: the whole batch is lost, quinn takes the
/// losses for a black hole and drops to 1 200-byte datagrams, and probes
/// again later. With datagrams of 7 000 bytes a loopback header sync
/// stalled on this cycle; 65 507 / 10 keeps every full batch sendable.
pub const MAX_UDP_PAYLOAD_SIZE: u16 = (65_507 / GSO_BATCH_DATAGRAMS) as u16;
/// Smallest accepted [`NetConfig::max_udp_payload_size`]: QUIC's minimum
/// datagram (RFC 9000 §14).
pub const MIN_UDP_PAYLOAD_SIZE: u16 = 1200;
/// Most datagrams quinn 0.11 puts in one GSO send (its
/// `MAX_TRANSMIT_SEGMENTS`).
pub const GSO_BATCH_DATAGRAMS: u32 = 10;

/// Transport limits and timeouts.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// ALPN to offer and require.
    pub alpn: Vec<u8>,
    /// Most inbound connections at once; more are refused before the handshake.
    pub max_inbound_connections: usize,
    /// Most outbound connections at once.
    pub max_outbound_connections: usize,
    /// Most concurrent request streams a peer may open to us (QUIC flow control enforces it).
    pub max_concurrent_requests_per_peer: u32,
    /// Close a connection idle for this long.
    pub idle_timeout: Duration,
    /// Keep-alive interval (must be below `idle_timeout`).
    pub keep_alive: Duration,
    /// Default time for a whole request/response exchange.
    pub request_timeout: Duration,
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Capacity of the event channel to the application; requests beyond it are answered `BUSY`.
    pub event_queue: usize,
    /// Capacity of each peer's outgoing push queue.
    pub push_queue_per_peer: usize,
    /// Time the application has to answer an inbound request.
    pub response_deadline: Duration,
    /// Time a response has to reach the requester's flow-control window:
    /// a requester that opens a stream and never reads it gets the stream
    /// reset then, instead of pinning the response (up to a frame's 16 MiB)
    /// for as long as its connection lives.
    pub response_write_timeout: Duration,
    /// Requested size of the UDP socket's receive and send buffers (best
    /// effort: the kernel may grant less).
    pub socket_buffer_bytes: usize,
    /// Initial congestion window of each connection in bytes
    /// ([`DEFAULT_INITIAL_CONGESTION_WINDOW`]; between
    /// [`MIN_INITIAL_CONGESTION_WINDOW`] and [`MAX_INITIAL_CONGESTION_WINDOW`]).
    pub initial_congestion_window: u64,
    /// Largest UDP payload this node sends and accepts, in bytes: the
    /// ceiling of path MTU discovery, which starts every connection at
    /// 1 200 and probes upwards ([`DEFAULT_MAX_UDP_PAYLOAD_SIZE`]; between
    /// [`MIN_UDP_PAYLOAD_SIZE`] and [`MAX_UDP_PAYLOAD_SIZE`]). Paths with a
    /// larger MTU than Ethernet's (loopback, jumbo frames) carry the same
    /// bytes in fewer datagrams; with GSO and GRO batching the system calls
    /// already, the header sync bench on loopback moved within its noise
    /// (README, MTU).
    pub max_udp_payload_size: u16,
}

impl NetConfig {
    /// The connection limit of a direction.
    #[must_use]
    pub fn max_connections(&self, inbound: bool) -> usize {
        if inbound {
            self.max_inbound_connections
        } else {
            self.max_outbound_connections
        }
    }
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            alpn: ALPN_V1.to_vec(),
            max_inbound_connections: 64,
            max_outbound_connections: 32,
            max_concurrent_requests_per_peer: 16,
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            event_queue: 1024,
            push_queue_per_peer: 64,
            response_deadline: Duration::from_secs(10),
            response_write_timeout: Duration::from_secs(30),
            socket_buffer_bytes: DEFAULT_SOCKET_BUFFER_BYTES,
            initial_congestion_window: DEFAULT_INITIAL_CONGESTION_WINDOW,
            max_udp_payload_size: DEFAULT_MAX_UDP_PAYLOAD_SIZE,
        }
    }
}
