//! The QUIC transport: a [`Network`] handle for the application and the tasks
//! that drive connections.
//!
//! - One bidirectional stream per request/response exchange, with a timeout.
//! - One unidirectional stream per peer and direction for pushes, so pushes
//!   (status updates) arrive in the order they were sent.
//! - Inbound requests reach the application through a bounded event channel;
//!   when it is full the peer is answered `BUSY` at once instead of waiting.
//! - Every frame's length is checked against the limit for its kind before
//!   anything is allocated.
//! - An inbound connection hears our status (the greeting,
//!   [`Network::set_greeting`]) in the server's first flight, as 0.5-RTT
//!   data, so the dialler knows our height when its handshake completes
//!   instead of a round trip later.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use headway_wire::{
    Envelope, ErrorCode, ErrorResponse, FrameError, Push, Request, Response, StatusResponse,
    encoded::EncodedResponse,
    frame,
    limits::{MAX_PUSH_FRAME, MAX_REQUEST_FRAME},
};
use quinn::{
    VarInt,
    crypto::rustls::{QuicClientConfig, QuicServerConfig},
};
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::{
    NetConfig, NetError, NodeKey, PeerId,
    config::{
        MAX_INITIAL_CONGESTION_WINDOW, MAX_UDP_PAYLOAD_SIZE, MIN_INITIAL_CONGESTION_WINDOW,
        MIN_UDP_PAYLOAD_SIZE,
    },
    identity::{self, SERVER_NAME},
    peers::{BanList, BootstrapPeer, Dialler},
};

/// QUIC application close codes.
pub mod close_code {
    /// Normal close (disconnect on request).
    pub const NORMAL: u32 = 0;
    /// The peer is banned.
    pub const BANNED: u32 = 1;
    /// A connection to this peer already exists.
    pub const DUPLICATE: u32 = 2;
    /// The node is shutting down.
    pub const SHUTDOWN: u32 = 3;
    /// Too many connections.
    pub const TOO_MANY: u32 = 4;
}

/// Stream error code sent when a frame is refused.
const STREAM_REFUSED: u32 = 1;

/// Something the transport reports to the application.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "events move once through a bounded channel"
)]
pub enum NetEvent {
    /// A connection to `peer` is up.
    Connected {
        /// The peer.
        peer: PeerId,
        /// Its address.
        addr: SocketAddr,
        /// True when the peer dialled us.
        inbound: bool,
        /// The status this peer was greeted with (inbound connections while
        /// a greeting is set, [`Network::set_greeting`]): it is the first
        /// push the peer receives from us, so an application that announces
        /// statuses must count it as sent.
        greeted: Option<StatusResponse>,
    },
    /// The connection to `peer` closed.
    Disconnected {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// `peer` asks something; answer through `responder`.
    Request {
        /// The peer.
        peer: PeerId,
        /// What it asks.
        request: Request,
        /// Where the answer goes.
        responder: Responder,
    },
    /// `peer` pushed a message.
    Push {
        /// The peer.
        peer: PeerId,
        /// The message.
        push: Push,
    },
    /// `peer` broke the protocol on a stream it opened (oversize or malformed frame).
    Misbehaved {
        /// The peer.
        peer: PeerId,
        /// What it did.
        reason: String,
    },
}

/// Answers one inbound request. Dropping it unanswered sends `INTERNAL`.
#[derive(Debug)]
pub struct Responder {
    tx: oneshot::Sender<Answer>,
    order: u64,
}

/// What the application answered.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per request, moved once through a oneshot"
)]
enum Answer {
    Response(Response),
    Encoded(EncodedResponse),
}

impl Responder {
    /// Where the request stands among the ones its peer opened on this
    /// connection: the index of its QUIC stream, which grows in the order
    /// the peer opened them. Requests reach the application in no
    /// guaranteed order (each stream is read by its own task); servers that
    /// answer a peer's requests one at a time answer the lowest first.
    #[must_use]
    pub fn order(&self) -> u64 {
        self.order
    }

    /// Whether nobody will read the answer any more: the requester stopped
    /// the stream (its request timed out or was dropped), the connection is
    /// gone, or the transport gave up waiting. An application with a queue
    /// of requests skips these instead of computing answers for nobody.
    #[must_use]
    pub fn is_abandoned(&self) -> bool {
        self.tx.is_closed()
    }

    /// Sends the response (it is validated and framed by the transport).
    pub fn respond(self, response: Response) {
        // The receiver is gone only if the stream already failed: nothing to do.
        let _ = self.tx.send(Answer::Response(response));
    }

    /// Sends a response the application framed itself
    /// (`headway_wire::encoded`, e.g. headers spliced from a store).
    pub fn respond_encoded(self, response: EncodedResponse) {
        let _ = self.tx.send(Answer::Encoded(response));
    }
}

/// Transport counters, exported by the node as Prometheus metrics.
#[derive(Debug, Default)]
pub struct NetMetrics {
    /// Connections established (both directions).
    pub connections_established: AtomicU64,
    /// Inbound connections refused (limit, ban, duplicate).
    pub connections_refused: AtomicU64,
    /// Requests we sent.
    pub requests_sent: AtomicU64,
    /// Requests we sent that failed (timeout, stream, bad response).
    pub requests_failed: AtomicU64,
    /// Requests peers sent us.
    pub requests_received: AtomicU64,
    /// Requests answered `BUSY` because the application queue was full.
    pub requests_busy: AtomicU64,
    /// Requests whose requester stopped the stream or lost the connection
    /// before the application answered (the answer was not sent).
    pub requests_abandoned: AtomicU64,
    /// Responses reset because the requester did not take them within
    /// `NetConfig::response_write_timeout`.
    pub responses_timed_out: AtomicU64,
    /// Frames refused (too large or malformed).
    pub bad_frames: AtomicU64,
    /// Bans imposed.
    pub bans: AtomicU64,
    /// Inbound connections greeted with our status as 0.5-RTT data.
    pub greetings_sent: AtomicU64,
}

impl NetMetrics {
    /// Appends the counters in Prometheus text format.
    pub fn render_prometheus(&self, out: &mut String) {
        let counters: [(&str, &str, &AtomicU64); 11] = [
            (
                "headway_net_connections_established_total",
                "Connections established.",
                &self.connections_established,
            ),
            (
                "headway_net_connections_refused_total",
                "Inbound connections refused.",
                &self.connections_refused,
            ),
            (
                "headway_net_requests_sent_total",
                "Requests sent to peers.",
                &self.requests_sent,
            ),
            (
                "headway_net_requests_failed_total",
                "Requests sent that failed.",
                &self.requests_failed,
            ),
            (
                "headway_net_requests_received_total",
                "Requests received from peers.",
                &self.requests_received,
            ),
            (
                "headway_net_requests_busy_total",
                "Requests answered BUSY.",
                &self.requests_busy,
            ),
            (
                "headway_net_requests_abandoned_total",
                "Requests the requester gave up on before they were answered.",
                &self.requests_abandoned,
            ),
            (
                "headway_net_responses_timed_out_total",
                "Responses reset because the requester did not read them in time.",
                &self.responses_timed_out,
            ),
            (
                "headway_net_bad_frames_total",
                "Frames refused as too large or malformed.",
                &self.bad_frames,
            ),
            ("headway_net_bans_total", "Peer bans imposed.", &self.bans),
            (
                "headway_net_greetings_sent_total",
                "Inbound connections greeted with our status in the handshake's first flight.",
                &self.greetings_sent,
            ),
        ];
        for (name, help, value) in counters {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                value.load(Ordering::Relaxed)
            ));
        }
    }
}

/// A running transport. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Network {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    key: NodeKey,
    config: NetConfig,
    endpoint: quinn::Endpoint,
    transport: Arc<quinn::TransportConfig>,
    state: Mutex<State>,
    events: mpsc::Sender<NetEvent>,
    dial_wakeup: Notify,
    closed: std::sync::atomic::AtomicBool,
    metrics: NetMetrics,
    /// What inbound connections are greeted with, encoded once.
    greeting: Mutex<Option<Greeting>>,
}

/// A status to greet inbound connections with, and its push frame.
#[derive(Debug, Clone)]
struct Greeting {
    status: StatusResponse,
    frame: bytes::Bytes,
}

#[derive(Debug)]
struct State {
    peers: HashMap<PeerId, PeerHandle>,
    bans: BanList,
    dialler: Dialler,
    inbound: usize,
    outbound: usize,
    /// Connections in their handshake ([`Reservation`]s): counted against
    /// the limits with the established ones, so that peers dialling at
    /// once cannot pass them.
    handshaking_in: usize,
    handshaking_out: usize,
}

impl State {
    /// Connections of a direction, established and in handshake.
    fn connections(&self, inbound: bool) -> usize {
        if inbound {
            self.inbound + self.handshaking_in
        } else {
            self.outbound + self.handshaking_out
        }
    }
}

/// A connection's place under its direction's limit while its handshake
/// runs: taken before the handshake starts, given back when dropped (by
/// then the connection is registered, and counted as established, or gone).
struct Reservation {
    inner: Arc<Inner>,
    inbound: bool,
}

impl Reservation {
    /// Reserves a place for a connection, `None` if its direction is full.
    fn take(inner: &Arc<Inner>, state: &mut State, inbound: bool) -> Option<Reservation> {
        if state.connections(inbound) >= inner.config.max_connections(inbound) {
            return None;
        }
        if inbound {
            state.handshaking_in += 1;
        } else {
            state.handshaking_out += 1;
        }
        Some(Reservation {
            inner: inner.clone(),
            inbound,
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        if self.inbound {
            state.handshaking_in = state.handshaking_in.saturating_sub(1);
        } else {
            state.handshaking_out = state.handshaking_out.saturating_sub(1);
        }
    }
}

#[derive(Debug)]
struct PeerHandle {
    conn: quinn::Connection,
    inbound: bool,
    push_tx: mpsc::Sender<Push>,
}

impl Network {
    /// Binds the listening socket and starts accepting connections and dialling
    /// `bootstrap` peers. Returns the handle and the event stream.
    pub async fn start(
        key: NodeKey,
        config: NetConfig,
        bootstrap: Vec<BootstrapPeer>,
    ) -> Result<(Network, mpsc::Receiver<NetEvent>), NetError> {
        let transport = Arc::new(transport_config(&config)?);
        let tls = identity::server_tls(&key, &config.alpn)?;
        let quic = QuicServerConfig::try_from(tls).map_err(|e| NetError::Tls(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
        server.transport_config(transport.clone());
        let bind_error = |source| NetError::Bind {
            addr: config.listen,
            source,
        };
        let socket = bind_udp(config.listen, config.socket_buffer_bytes).map_err(bind_error)?;
        let endpoint = quinn::Endpoint::new(
            endpoint_config(&config)?,
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(bind_error)?;
        let (events, rx) = mpsc::channel(config.event_queue.max(1));
        let inner = Arc::new(Inner {
            key,
            endpoint,
            transport,
            state: Mutex::new(State {
                peers: HashMap::new(),
                bans: BanList::default(),
                dialler: Dialler::new(bootstrap, Instant::now()),
                inbound: 0,
                outbound: 0,
                handshaking_in: 0,
                handshaking_out: 0,
            }),
            events,
            dial_wakeup: Notify::new(),
            closed: std::sync::atomic::AtomicBool::new(false),
            metrics: NetMetrics::default(),
            greeting: Mutex::new(None),
            config,
        });
        tokio::spawn(accept_loop(inner.clone()));
        tokio::spawn(dial_loop(inner.clone()));
        info!(peer_id = %inner.key.peer_id(), addr = ?inner.endpoint.local_addr().ok(), "transport listening");
        Ok((Network { inner }, rx))
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.inner.key.peer_id()
    }

    /// The bound listening address.
    pub fn local_addr(&self) -> Result<SocketAddr, NetError> {
        self.inner
            .endpoint
            .local_addr()
            .map_err(|source| NetError::Bind {
                addr: self.inner.config.listen,
                source,
            })
    }

    /// Transport counters.
    pub fn metrics(&self) -> &NetMetrics {
        &self.inner.metrics
    }

    /// Dials `addr`, expecting the peer `expected`; the handshake fails if the
    /// peer holds another key.
    pub async fn connect(&self, addr: SocketAddr, expected: PeerId) -> Result<(), NetError> {
        connect(&self.inner, addr, expected).await
    }

    /// The raw QUIC connection to `peer`, for conformance tests and tools that
    /// must send bytes the typed API refuses to produce (oversize or malformed
    /// frames). Protocol code uses [`Network::request`] and [`Network::push`].
    pub fn raw_connection(&self, peer: PeerId) -> Option<quinn::Connection> {
        self.inner.lock().peers.get(&peer).map(|p| p.conn.clone())
    }

    /// Peers with a live connection.
    pub fn connected_peers(&self) -> Vec<PeerId> {
        self.inner.lock().peers.keys().copied().collect()
    }

    /// Sends `request` to `peer` and waits for its response, within the
    /// configured request timeout.
    pub async fn request(&self, peer: PeerId, request: &Request) -> Result<Response, NetError> {
        self.request_with_timeout(peer, request, self.inner.config.request_timeout)
            .await
    }

    /// As [`Network::request`], with an explicit timeout for the whole exchange.
    pub async fn request_with_timeout(
        &self,
        peer: PeerId,
        request: &Request,
        timeout: Duration,
    ) -> Result<Response, NetError> {
        self.exchange(peer, request, timeout)
            .await
            .map(|(response, _)| response)
    }

    /// As [`Network::request`], also returning the size of the response
    /// frame's payload in bytes (for download accounting without
    /// re-encoding the response).
    pub async fn request_measured(
        &self,
        peer: PeerId,
        request: &Request,
    ) -> Result<(Response, usize), NetError> {
        self.exchange(peer, request, self.inner.config.request_timeout)
            .await
    }

    /// Starts `request` to `peer` now and returns the future of its
    /// response (and payload size, as [`Network::request_measured`]).
    ///
    /// Unlike the `async` methods, which open the request's stream when
    /// first polled, this opens it (and writes the request, when the stream
    /// has room) before it returns: requests started one after another reach
    /// the peer on streams in that order, however their futures are then
    /// spawned and polled. A serving node answers a peer's requests lowest
    /// stream first, so a syncing node that starts the range it needs first
    /// gets it first. When no stream is available yet (the peer's stream
    /// limit), the stream is opened when the future is polled.
    ///
    /// The request timeout counts from the first poll.
    pub fn start_request(
        &self,
        peer: PeerId,
        request: &Request,
    ) -> impl std::future::Future<Output = Result<(Response, usize), NetError>> + Send + 'static + use<>
    {
        let started = self.start_exchange(peer, request);
        let (this, request) = (self.clone(), request.clone());
        async move {
            let timeout = this.inner.config.request_timeout;
            this.finish_exchange(peer, &request, started, timeout).await
        }
    }

    async fn exchange(
        &self,
        peer: PeerId,
        request: &Request,
        timeout: Duration,
    ) -> Result<(Response, usize), NetError> {
        let started = self.start_exchange(peer, request);
        self.finish_exchange(peer, request, started, timeout).await
    }

    /// What can be done of an exchange without waiting: the connection, the
    /// encoded request, and the stream with the bytes already written, when
    /// one could be opened at once.
    fn start_exchange(&self, peer: PeerId, request: &Request) -> Result<Started, NetError> {
        let conn = self
            .inner
            .lock()
            .peers
            .get(&peer)
            .map(|p| p.conn.clone())
            .ok_or(NetError::NotConnected(peer))?;
        let bytes = frame::encode_frame(request).map_err(NetError::InvalidOutgoing)?;
        self.inner
            .metrics
            .requests_sent
            .fetch_add(1, Ordering::Relaxed);
        let stream = match poll_now(conn.open_bi()) {
            Some(Ok((mut send, recv))) => {
                // What the stream takes now; the rest is written when polled.
                let written = match poll_now(send.write(&bytes)) {
                    Some(Ok(n)) => n,
                    Some(Err(e)) => return Err(stream_error(peer, e)),
                    None => 0,
                };
                Some((send, recv, written))
            }
            Some(Err(e)) => return Err(stream_error(peer, e)),
            None => None,
        };
        Ok(Started {
            conn,
            bytes,
            stream,
        })
    }

    async fn finish_exchange(
        &self,
        peer: PeerId,
        request: &Request,
        started: Result<Started, NetError>,
        timeout: Duration,
    ) -> Result<(Response, usize), NetError> {
        // Not sent at all: not counted as a failed request.
        let started = match started {
            Err(e @ (NetError::NotConnected(_) | NetError::InvalidOutgoing(_))) => return Err(e),
            started => started,
        };
        let exchange = async {
            let Started {
                conn,
                bytes,
                stream,
            } = started?;
            let (mut send, mut recv, written) = match stream {
                Some(stream) => stream,
                None => {
                    let (send, recv) = conn.open_bi().await.map_err(|e| stream_error(peer, e))?;
                    (send, recv, 0)
                }
            };
            send.write_all(&bytes[written..])
                .await
                .map_err(|e| stream_error(peer, e))?;
            send.finish().map_err(|e| stream_error(peer, e))?;
            let payload = read_frame(&mut recv, request.kind().max_response_frame(), peer).await?;
            let response = Response::decode(&payload).map_err(|e| NetError::BadFrame {
                peer,
                source: FrameError::Message(e),
            })?;
            response
                .validate_for(request)
                .map_err(|source| NetError::BadResponse { peer, source })?;
            Ok((response, payload.len()))
        };
        let result = match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(NetError::Timeout(peer)),
        };
        if result.is_err() {
            self.inner
                .metrics
                .requests_failed
                .fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Queues `push` for `peer`'s push stream (in order, after earlier pushes).
    pub fn push(&self, peer: PeerId, push: Push) -> Result<(), NetError> {
        push.validate()
            .map_err(|e| NetError::InvalidOutgoing(FrameError::Message(e)))?;
        let tx = self
            .inner
            .lock()
            .peers
            .get(&peer)
            .map(|p| p.push_tx.clone())
            .ok_or(NetError::NotConnected(peer))?;
        tx.try_send(push).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => NetError::PushQueueFull(peer),
            mpsc::error::TrySendError::Closed(_) => NetError::NotConnected(peer),
        })
    }

    /// Sets the status every inbound connection hears first (`None`: none).
    ///
    /// It is written on the connection's push stream as soon as the peer's
    /// first flight is in, as 0.5-RTT data, before the peer has proven its
    /// identity: the dialler has it when its handshake completes, a round
    /// trip before a status pushed once the connection is up would arrive.
    /// A status is public, so nothing is told an unauthenticated peer that
    /// any peer could not learn. The greeted status is reported in
    /// [`NetEvent::Connected`], and later pushes follow it on the same
    /// stream, in order.
    ///
    /// # Errors
    ///
    /// [`NetError::InvalidOutgoing`] if the status does not encode (the
    /// greeting is left as it was).
    pub fn set_greeting(&self, status: Option<StatusResponse>) -> Result<(), NetError> {
        let greeting = match status {
            Some(status) => {
                let push = Push::Status(status);
                push.validate()
                    .map_err(|e| NetError::InvalidOutgoing(FrameError::Message(e)))?;
                let frame = frame::encode_frame(&push).map_err(NetError::InvalidOutgoing)?;
                Some(Greeting {
                    status,
                    frame: frame.into(),
                })
            }
            None => None,
        };
        *self
            .inner
            .greeting
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = greeting;
        Ok(())
    }

    /// Bans `peer` for `duration`, logging `reason`, and closes its connection.
    pub fn ban(&self, peer: PeerId, duration: Duration, reason: &str) {
        warn!(peer = %peer.short(), ?duration, reason, "banning peer");
        self.inner.metrics.bans.fetch_add(1, Ordering::Relaxed);
        let conn = {
            let mut state = self.inner.lock();
            state.bans.ban(peer, Instant::now(), duration, reason);
            state.peers.get(&peer).map(|p| p.conn.clone())
        };
        if let Some(conn) = conn {
            conn.close(VarInt::from_u32(close_code::BANNED), reason.as_bytes());
        }
        self.inner.dial_wakeup.notify_one();
    }

    /// True while `peer` is banned.
    pub fn is_banned(&self, peer: &PeerId) -> bool {
        self.inner
            .lock()
            .bans
            .banned(peer, Instant::now())
            .is_some()
    }

    /// Closes the connection to `peer`.
    pub fn disconnect(&self, peer: PeerId, reason: &str) {
        let conn = self.inner.lock().peers.get(&peer).map(|p| p.conn.clone());
        if let Some(conn) = conn {
            info!(peer = %peer.short(), reason, "disconnecting peer");
            conn.close(VarInt::from_u32(close_code::NORMAL), reason.as_bytes());
        }
    }

    /// Closes every connection and the endpoint, waiting briefly for peers to be told.
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::Relaxed);
        self.inner.dial_wakeup.notify_one();
        self.inner
            .endpoint
            .close(VarInt::from_u32(close_code::SHUTDOWN), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.inner.endpoint.wait_idle()).await;
    }
}

impl Inner {
    /// Counts a refused frame and tells the application who sent it.
    async fn report_bad_frame(&self, peer: PeerId, reason: String) {
        self.metrics.bad_frames.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .events
            .send(NetEvent::Misbehaved { peer, reason })
            .await;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic elsewhere while holding it; the state
        // itself (maps and counters) stays usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn client_config(&self, expected: PeerId) -> Result<quinn::ClientConfig, NetError> {
        let tls = identity::client_tls(&self.key, expected, &self.config.alpn)?;
        let quic = QuicClientConfig::try_from(tls).map_err(|e| NetError::Tls(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(quic));
        config.transport_config(self.transport.clone());
        Ok(config)
    }
}

/// An exchange as far as it got without waiting ([`Network::start_exchange`]).
struct Started {
    conn: quinn::Connection,
    bytes: Vec<u8>,
    /// The request's stream and how many of `bytes` it took, if it could
    /// be opened at once.
    stream: Option<(quinn::SendStream, quinn::RecvStream, usize)>,
}

/// Polls `future` once, without a task to wake: its output if it is ready
/// now. Dropping a pending quinn open or write leaves no stream opened and
/// no byte written.
fn poll_now<F: std::future::Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

fn stream_error(peer: PeerId, e: impl std::fmt::Display) -> NetError {
    NetError::Stream {
        peer,
        reason: e.to_string(),
    }
}

/// Reads one frame: the length prefix, checked against `max` before the
/// payload is allocated, then the payload.
async fn read_frame(
    recv: &mut quinn::RecvStream,
    max: usize,
    peer: PeerId,
) -> Result<Vec<u8>, NetError> {
    let mut prefix = [0u8; frame::LENGTH_PREFIX];
    recv.read_exact(&mut prefix)
        .await
        .map_err(|e| stream_error(peer, e))?;
    let len = match frame::payload_len(prefix, max) {
        Ok(len) => len,
        Err(source) => {
            let _ = recv.stop(VarInt::from_u32(STREAM_REFUSED));
            return Err(NetError::BadFrame { peer, source });
        }
    };
    let mut payload = vec![0u8; len];
    recv.read_exact(&mut payload)
        .await
        .map_err(|e| stream_error(peer, e))?;
    Ok(payload)
}

async fn connect(inner: &Arc<Inner>, addr: SocketAddr, expected: PeerId) -> Result<(), NetError> {
    let _reservation = {
        let mut state = inner.lock();
        if state.bans.banned(&expected, Instant::now()).is_some() {
            return Err(NetError::Banned(expected));
        }
        if state.peers.contains_key(&expected) {
            return Ok(());
        }
        Reservation::take(inner, &mut state, false).ok_or(NetError::TooManyConnections {
            inbound: false,
            limit: inner.config.max_outbound_connections,
        })?
    };
    let config = inner.client_config(expected)?;
    let connecting = inner
        .endpoint
        .connect_with(config, addr, SERVER_NAME)
        .map_err(|e| NetError::Connect {
            peer: expected,
            reason: e.to_string(),
        })?;
    let conn = match tokio::time::timeout(inner.config.connect_timeout, connecting).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            return Err(NetError::Connect {
                peer: expected,
                reason: e.to_string(),
            });
        }
        Err(_) => {
            return Err(NetError::Connect {
                peer: expected,
                reason: "handshake timed out".into(),
            });
        }
    };
    let peer = peer_of(&conn)?;
    if peer != expected {
        // Unreachable with the pinned verifier; checked again as defence in depth.
        conn.close(VarInt::from_u32(close_code::NORMAL), b"unexpected identity");
        return Err(NetError::Connect {
            peer: expected,
            reason: format!("peer presented {peer:?}"),
        });
    }
    register(inner, conn, peer, false, None)
}

fn peer_of(conn: &quinn::Connection) -> Result<PeerId, NetError> {
    let certs = conn
        .peer_identity()
        .and_then(|any| {
            any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .ok_or_else(|| NetError::BadCertificate("no peer certificate".into()))?;
    let first = certs
        .first()
        .ok_or_else(|| NetError::BadCertificate("empty certificate chain".into()))?;
    identity::peer_id_from_certificate(first)
}

/// Records a new connection and spawns its driver. Refuses duplicates and
/// banned peers. `greeted` is the push stream an inbound connection was
/// greeted on, and the status it carried.
fn register(
    inner: &Arc<Inner>,
    conn: quinn::Connection,
    peer: PeerId,
    inbound: bool,
    greeted: Option<(quinn::SendStream, StatusResponse)>,
) -> Result<(), NetError> {
    let (push_tx, push_rx) = mpsc::channel(inner.config.push_queue_per_peer.max(1));
    {
        let mut state = inner.lock();
        // Why the connection is refused, if it is: its close code and
        // reason, and the error (if any) for the caller.
        let limit = inner.config.max_connections(inbound);
        let established = if inbound {
            state.inbound
        } else {
            state.outbound
        };
        let refusal = if let Some(ban) = state.bans.banned(&peer, Instant::now()) {
            Some((
                close_code::BANNED,
                ban.reason.clone().into_bytes(),
                Err(NetError::Banned(peer)),
            ))
        } else if state.peers.contains_key(&peer) {
            Some((close_code::DUPLICATE, b"already connected".to_vec(), Ok(())))
        } else if established >= limit {
            // The connection's reservation is still counted: only the
            // established ones are checked here.
            Some((
                close_code::TOO_MANY,
                b"too many connections".to_vec(),
                Err(NetError::TooManyConnections { inbound, limit }),
            ))
        } else {
            None
        };
        if let Some((code, reason, result)) = refusal {
            drop(state);
            inner
                .metrics
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            conn.close(VarInt::from_u32(code), &reason);
            return result;
        }
        if inbound {
            state.inbound += 1;
        } else {
            state.outbound += 1;
        }
        state.dialler.on_connected(&peer);
        state.peers.insert(
            peer,
            PeerHandle {
                conn: conn.clone(),
                inbound,
                push_tx,
            },
        );
    }
    inner
        .metrics
        .connections_established
        .fetch_add(1, Ordering::Relaxed);
    info!(peer = %peer.short(), addr = %conn.remote_address(), inbound, "peer connected");
    tokio::spawn(drive_connection(
        inner.clone(),
        conn,
        peer,
        inbound,
        push_rx,
        greeted,
    ));
    Ok(())
}

async fn accept_loop(inner: Arc<Inner>) {
    while let Some(incoming) = inner.endpoint.accept().await {
        let reservation = {
            let mut state = inner.lock();
            Reservation::take(&inner, &mut state, true)
        };
        let Some(reservation) = reservation else {
            inner
                .metrics
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            debug!(addr = %incoming.remote_address(), "refusing inbound connection: limit reached");
            incoming.refuse();
            continue;
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            let _reservation = reservation;
            let connecting = match incoming.accept() {
                Ok(c) => c,
                Err(e) => return debug!(error = %e, "inbound handshake failed"),
            };
            let Some((conn, greeted)) = accept_greeting(&inner, connecting).await else {
                return;
            };
            match peer_of(&conn) {
                Ok(peer) => {
                    if let Err(e) = register(&inner, conn, peer, true, greeted) {
                        debug!(peer = %peer.short(), error = %e, "inbound connection refused");
                    }
                }
                Err(e) => {
                    warn!(error = %e, "inbound peer without a usable identity");
                    conn.close(VarInt::from_u32(close_code::NORMAL), b"bad identity");
                }
            }
        });
    }
}

/// Completes an inbound handshake, greeting the peer first when a greeting is
/// set: the push stream is opened and the status written as 0.5-RTT data
/// (quinn sends it with the server's handshake flight), then the handshake
/// is awaited as usual. `None` when the handshake failed or timed out.
async fn accept_greeting(
    inner: &Inner,
    connecting: quinn::Connecting,
) -> Option<(
    quinn::Connection,
    Option<(quinn::SendStream, StatusResponse)>,
)> {
    let greeting = inner
        .greeting
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let timeout = inner.config.connect_timeout;
    // Servers can always send 0.5-RTT data; a refusal is handled all the same.
    let attempt = match greeting {
        Some(greeting) => match connecting.into_0rtt() {
            Ok(half_rtt) => Ok((greeting, half_rtt)),
            Err(connecting) => Err(connecting),
        },
        None => Err(connecting),
    };
    let (conn, greeted) = match attempt {
        Ok((greeting, (conn, established))) => {
            // Everything under the handshake's timeout: the stream and the
            // write only wait if the peer gave no stream credit.
            let greet = async {
                let stream = greet(&conn, &greeting.frame).await;
                // For a server this resolves when the handshake completes,
                // whatever its value; a failed one shows in `close_reason`.
                let _ = established.await;
                stream
            };
            let Ok(stream) = tokio::time::timeout(timeout, greet).await else {
                conn.close(VarInt::from_u32(close_code::NORMAL), b"handshake timed out");
                debug!("inbound handshake timed out");
                return None;
            };
            if let Some(reason) = conn.close_reason() {
                debug!(error = %reason, "inbound handshake failed");
                return None;
            }
            if stream.is_some() {
                inner.metrics.greetings_sent.fetch_add(1, Ordering::Relaxed);
            }
            let greeted = stream.map(|s| (s, greeting.status));
            (conn, greeted)
        }
        Err(connecting) => match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(conn)) => (conn, None),
            Ok(Err(e)) => {
                debug!(error = %e, "inbound handshake failed");
                return None;
            }
            Err(_) => {
                debug!("inbound handshake timed out");
                return None;
            }
        },
    };
    Some((conn, greeted))
}

/// Opens `conn`'s push stream and writes the greeting `frame` on it; `None`
/// (and no greeting) if either fails, which only a closing connection does.
async fn greet(conn: &quinn::Connection, frame: &[u8]) -> Option<quinn::SendStream> {
    let mut stream = conn.open_uni().await.ok()?;
    // Only fails on a stream already closed; the write below reports that.
    let _ = stream.set_priority(PUSH_PRIORITY);
    stream.write_all(frame).await.ok()?;
    Some(stream)
}

async fn dial_loop(inner: Arc<Inner>) {
    while !inner.closed.load(Ordering::Relaxed) {
        let now = Instant::now();
        let (target, wakeup) = {
            let mut state = inner.lock();
            let state = &mut *state;
            let target = state.dialler.poll_dial(now, &state.bans);
            (target, state.dialler.next_wakeup(&state.bans, now))
        };
        if let Some(target) = target {
            let inner = inner.clone();
            tokio::spawn(async move {
                if let Err(e) = connect(&inner, target.addr, target.peer).await {
                    debug!(peer = %target.peer.short(), error = %e, "dial failed");
                    inner
                        .lock()
                        .dialler
                        .on_down(&target.peer, Instant::now(), false);
                    inner.dial_wakeup.notify_one();
                }
            });
            continue;
        }
        let sleep = wakeup.map_or(Duration::from_secs(3600), |at| {
            at.saturating_duration_since(now)
        });
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = inner.dial_wakeup.notified() => {}
        }
    }
}

async fn drive_connection(
    inner: Arc<Inner>,
    conn: quinn::Connection,
    peer: PeerId,
    inbound: bool,
    push_rx: mpsc::Receiver<Push>,
    greeted: Option<(quinn::SendStream, StatusResponse)>,
) {
    let (stream, greeted) = greeted.unzip();
    let _ = inner
        .events
        .send(NetEvent::Connected {
            peer,
            addr: conn.remote_address(),
            inbound,
            greeted,
        })
        .await;
    let writer = tokio::spawn(write_pushes(conn.clone(), peer, push_rx, stream));
    let reason = loop {
        tokio::select! {
            stream = conn.accept_bi() => match stream {
                Ok((send, recv)) => { tokio::spawn(serve_request(inner.clone(), peer, send, recv)); }
                Err(e) => break e.to_string(),
            },
            stream = conn.accept_uni() => match stream {
                Ok(recv) => { tokio::spawn(read_pushes(inner.clone(), peer, recv)); }
                Err(e) => break e.to_string(),
            },
        }
    };
    writer.abort();
    {
        let mut state = inner.lock();
        let ours = state
            .peers
            .get(&peer)
            .is_some_and(|p| p.conn.stable_id() == conn.stable_id());
        if ours {
            state.peers.remove(&peer);
            if inbound {
                state.inbound = state.inbound.saturating_sub(1);
            } else {
                state.outbound = state.outbound.saturating_sub(1);
            }
            state.dialler.on_down(&peer, Instant::now(), true);
        }
    }
    inner.dial_wakeup.notify_one();
    info!(peer = %peer.short(), reason, "peer disconnected");
    let _ = inner
        .events
        .send(NetEvent::Disconnected { peer, reason })
        .await;
}

async fn serve_request(
    inner: Arc<Inner>,
    peer: PeerId,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let order = recv.id().index();
    inner
        .metrics
        .requests_received
        .fetch_add(1, Ordering::Relaxed);
    let payload = match tokio::time::timeout(
        inner.config.request_timeout,
        read_frame(&mut recv, MAX_REQUEST_FRAME, peer),
    )
    .await
    {
        Ok(Ok(payload)) => payload,
        Ok(Err(e)) => {
            if e.is_peer_fault() {
                inner.report_bad_frame(peer, e.to_string()).await;
            }
            return;
        }
        Err(_) => return,
    };
    let request = match Request::decode(&payload) {
        Ok(request) => request,
        Err(e) => {
            inner.metrics.bad_frames.fetch_add(1, Ordering::Relaxed);
            let reason = format!("malformed request: {e}");
            let _ = inner
                .events
                .send(NetEvent::Misbehaved {
                    peer,
                    reason: reason.clone(),
                })
                .await;
            return write_response(
                &inner,
                &mut send,
                &error_response(ErrorCode::BadRequest, &reason, 0),
            )
            .await;
        }
    };
    let (tx, rx) = oneshot::channel();
    match inner.events.try_send(NetEvent::Request {
        peer,
        request,
        responder: Responder { tx, order },
    }) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            inner.metrics.requests_busy.fetch_add(1, Ordering::Relaxed);
            return write_response(
                &inner,
                &mut send,
                &error_response(ErrorCode::Busy, "request queue full", 100),
            )
            .await;
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            return write_response(
                &inner,
                &mut send,
                &error_response(ErrorCode::Internal, "shutting down", 0),
            )
            .await;
        }
    }
    // The requester may give up first (its request timed out, or the
    // connection is gone): then `rx` is dropped at once, which the
    // application sees as `Responder::is_abandoned`, rather than at the
    // deadline.
    let stopped = send.stopped();
    let answer = tokio::select! {
        answer = tokio::time::timeout(inner.config.response_deadline, rx) => answer,
        _ = stopped => {
            inner.metrics.requests_abandoned.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let response = match answer {
        Ok(Ok(Answer::Response(response))) => response,
        Ok(Ok(Answer::Encoded(frame))) => {
            // Handed to quinn as it is: a chunk is queued without a copy.
            return write_frame(&inner, &mut send, bytes::Bytes::from(frame.into_frame())).await;
        }
        Ok(Err(_)) => error_response(ErrorCode::Internal, "no answer", 0),
        Err(_) => error_response(ErrorCode::Busy, "answer took too long", 500),
    };
    write_response(&inner, &mut send, &response).await;
}

fn error_response(code: ErrorCode, message: &str, retry_after_ms: u32) -> Response {
    Response::Error(ErrorResponse {
        code,
        message: message.to_string(),
        retry_after_ms,
    })
}

async fn write_response(inner: &Inner, send: &mut quinn::SendStream, response: &Response) {
    let bytes = match frame::encode_frame(response) {
        Ok(bytes) => bytes,
        Err(e) => {
            warn!(error = %e, "application produced an invalid response; answering INTERNAL");
            match frame::encode_frame(&error_response(ErrorCode::Internal, "invalid response", 0)) {
                Ok(bytes) => bytes,
                Err(_) => return,
            }
        }
    };
    write_frame(inner, send, bytes::Bytes::from(bytes)).await;
}

/// Writes a response frame and finishes the stream, or resets it if the
/// requester has not taken the frame into its flow-control window within
/// `response_write_timeout` (a peer that never reads would otherwise hold
/// the frame, and this task, until its connection closes).
async fn write_frame(inner: &Inner, send: &mut quinn::SendStream, frame: bytes::Bytes) {
    match tokio::time::timeout(inner.config.response_write_timeout, send.write_chunk(frame)).await {
        Ok(Ok(())) => {
            let _ = send.finish();
        }
        Ok(Err(_)) => {}
        Err(_) => {
            inner
                .metrics
                .responses_timed_out
                .fetch_add(1, Ordering::Relaxed);
            let _ = send.reset(VarInt::from_u32(STREAM_REFUSED));
        }
    }
}

async fn read_pushes(inner: Arc<Inner>, peer: PeerId, mut recv: quinn::RecvStream) {
    loop {
        let payload = match read_frame(&mut recv, MAX_PUSH_FRAME, peer).await {
            Ok(payload) => payload,
            Err(e) => {
                if e.is_peer_fault() {
                    inner.report_bad_frame(peer, e.to_string()).await;
                }
                return;
            }
        };
        match Push::decode(&payload) {
            // Awaiting here applies back-pressure: a slow application slows this
            // stream, and QUIC flow control slows the peer.
            Ok(push) => {
                if inner
                    .events
                    .send(NetEvent::Push { peer, push })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                inner.metrics.bad_frames.fetch_add(1, Ordering::Relaxed);
                let _ = recv.stop(VarInt::from_u32(STREAM_REFUSED));
                let _ = inner
                    .events
                    .send(NetEvent::Misbehaved {
                        peer,
                        reason: format!("malformed push: {e}"),
                    })
                    .await;
                return;
            }
        }
    }
}

/// The endpoint's settings: it accepts datagrams as large as it sends
/// (quinn sizes its receive buffers by this, so it is not raised further).
fn endpoint_config(config: &NetConfig) -> Result<quinn::EndpointConfig, NetError> {
    let mut endpoint = quinn::EndpointConfig::default();
    endpoint
        .max_udp_payload_size(config.max_udp_payload_size)
        .map_err(|e| NetError::InvalidConfig {
            field: "max_udp_payload_size",
            reason: e.to_string(),
        })?;
    Ok(endpoint)
}

/// The QUIC transport settings of every connection, from `config`.
fn transport_config(config: &NetConfig) -> Result<quinn::TransportConfig, NetError> {
    let window = config.initial_congestion_window;
    if !(MIN_INITIAL_CONGESTION_WINDOW..=MAX_INITIAL_CONGESTION_WINDOW).contains(&window) {
        return Err(NetError::InvalidConfig {
            field: "initial_congestion_window",
            reason: format!(
                "{window} bytes is outside {MIN_INITIAL_CONGESTION_WINDOW}..={MAX_INITIAL_CONGESTION_WINDOW}"
            ),
        });
    }
    let payload = config.max_udp_payload_size;
    if !(MIN_UDP_PAYLOAD_SIZE..=MAX_UDP_PAYLOAD_SIZE).contains(&payload) {
        return Err(NetError::InvalidConfig {
            field: "max_udp_payload_size",
            reason: format!(
                "{payload} bytes is outside {MIN_UDP_PAYLOAD_SIZE}..={MAX_UDP_PAYLOAD_SIZE}"
            ),
        });
    }
    let mut congestion = quinn::congestion::CubicConfig::default();
    congestion.initial_window(window);
    let mut mtu_discovery = quinn::MtuDiscoveryConfig::default();
    mtu_discovery.upper_bound(payload);
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(config.max_concurrent_requests_per_peer))
        .max_concurrent_uni_streams(VarInt::from_u32(2))
        .keep_alive_interval(Some(config.keep_alive))
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(config.idle_timeout).map_err(|e| {
                NetError::InvalidConfig {
                    field: "idle_timeout",
                    reason: e.to_string(),
                }
            })?,
        ))
        .congestion_controller_factory(Arc::new(congestion))
        .mtu_discovery_config(Some(mtu_discovery))
        // Responses leave in the order they were written, each whole before
        // the next, rather than round-robin: a requester with several
        // requests in flight gets its first answer after a quarter of the
        // time instead of all four at the end, and re-requests while the
        // rest stream, so the pipe never drains (v2 headers-only from 8
        // peers at 50 ms RTT: ~107k → ~128k headers/s). Pushes go first
        // ([`PUSH_PRIORITY`]).
        .send_fairness(false);
    Ok(transport)
}

/// Send priority of the push stream (statuses, announcements) over
/// responses (priority 0): a status never waits behind a bulk response.
const PUSH_PRIORITY: i32 = 1;

/// Writes `peer`'s pushes in order on one stream: `stream` when the peer was
/// greeted on it, else one opened with the first push.
async fn write_pushes(
    conn: quinn::Connection,
    peer: PeerId,
    mut rx: mpsc::Receiver<Push>,
    mut stream: Option<quinn::SendStream>,
) {
    while let Some(push) = rx.recv().await {
        let bytes = match frame::encode_frame(&push) {
            Ok(bytes) => bytes,
            Err(e) => {
                warn!(peer = %peer.short(), error = %e, "dropping invalid push");
                continue;
            }
        };
        if stream.is_none() {
            match conn.open_uni().await {
                Ok(s) => {
                    // Only fails on a stream already closed; the write below reports that.
                    let _ = s.set_priority(PUSH_PRIORITY);
                    stream = Some(s);
                }
                Err(e) => {
                    return debug!(peer = %peer.short(), error = %e, "cannot open push stream");
                }
            }
        }
        if let Some(s) = stream.as_mut()
            && let Err(e) = s.write_all(&bytes).await
        {
            return debug!(peer = %peer.short(), error = %e, "push stream failed");
        }
    }
}

// Keep the unused-field lint honest: `inbound` is reported in events and kept for metrics.
impl PeerHandle {
    #[allow(dead_code, reason = "read by diagnostics")]
    fn is_inbound(&self) -> bool {
        self.inbound
    }
}

/// Binds the endpoint's UDP socket with `buffer` bytes of kernel receive and
/// send buffer requested (best effort; what the kernel granted is logged).
fn bind_udp(addr: SocketAddr, buffer: usize) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = socket.set_recv_buffer_size(buffer) {
        warn!(error = %e, buffer, "could not size the UDP receive buffer");
    }
    if let Err(e) = socket.set_send_buffer_size(buffer) {
        warn!(error = %e, buffer, "could not size the UDP send buffer");
    }
    socket.bind(&addr.into())?;
    debug!(
        recv = socket.recv_buffer_size().unwrap_or(0),
        send = socket.send_buffer_size().unwrap_or(0),
        "UDP socket buffers"
    );
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn the_socket_gets_the_requested_buffers_when_the_kernel_allows() {
        let requested = 1024 * 1024;
        let socket = bind_udp(SocketAddr::from(([127, 0, 0, 1], 0)), requested).unwrap();
        let socket = socket2::Socket::from(socket);
        // Linux grants up to net.core.rmem_max (and reports twice what it
        // grants, for bookkeeping); elsewhere, only check the bind worked.
        let limit = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok());
        if let Some(limit) = limit {
            let expected = requested.min(limit);
            assert!(socket.recv_buffer_size().unwrap() >= expected);
        }
        assert!(socket.local_addr().unwrap().as_socket().unwrap().port() > 0);
    }

    #[test]
    fn transport_sends_responses_in_order_and_checks_the_initial_window() {
        let config = NetConfig::default();
        let transport = transport_config(&config).unwrap();
        assert!(
            format!("{transport:?}").contains("send_fairness: false"),
            "{transport:?}"
        );
        for window in [
            0,
            MIN_INITIAL_CONGESTION_WINDOW - 1,
            MAX_INITIAL_CONGESTION_WINDOW + 1,
        ] {
            let config = NetConfig {
                initial_congestion_window: window,
                ..NetConfig::default()
            };
            let err = transport_config(&config).unwrap_err();
            assert!(
                matches!(
                    err,
                    NetError::InvalidConfig {
                        field: "initial_congestion_window",
                        ..
                    }
                ),
                "{err}"
            );
        }
        for window in [MIN_INITIAL_CONGESTION_WINDOW, MAX_INITIAL_CONGESTION_WINDOW] {
            let config = NetConfig {
                initial_congestion_window: window,
                ..NetConfig::default()
            };
            transport_config(&config).unwrap();
        }
    }
}
