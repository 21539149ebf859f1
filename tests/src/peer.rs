//! Scripted peers: real `headway_net` endpoints that talk to the node under
//! test over QUIC, answer its `GetHeaders` as a script says, and record what
//! the node did.
//!
//! - A [`Script`] decides each answer: headers (honest or forged), any
//!   response (errors, answers that do not match the request), silence, or a
//!   delayed answer ([`Reply`]). `ScriptedPeer::serve_height` bounds what
//!   the standard scripts serve and can be raised while a test runs.
//! - A peer can push status updates: automatically on every connection (its
//!   claim, see [`ScriptedPeer::connect_and_claim`]) or one by one.
//! - The [`PeerRecord`] holds every `GetHeaders` the node sent (with receive
//!   and answer times), every status the node pushed, and every disconnect,
//!   with whether it was a ban (QUIC close code `BANNED`).
//! - The same type is the **observer**: a peer that claims nothing and asks
//!   the node for its stored headers ([`ScriptedPeer::fetch_headers`]).
//! - Every other request (`GetHeadersV2`, `GetValidatorSet`, …) goes to a
//!   second script, a [`RequestScript`] ([`ScriptedPeer::start_with`]; by
//!   default it answers `UNSUPPORTED`), and is recorded with its times in
//!   [`PeerRecord::others`]. [`crate::v2`] has the scripts of a v2 server.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use headway_net::{NetConfig, NetError, NetEvent, Network, NodeKey, PeerId, Responder, close_code};
use headway_wire::{
    ErrorCode, ErrorResponse, GetBlocks, GetHeaders, GetHeadersV2, HeadersResponse, Push, Request,
    Response, SignedHeader, StatusResponse, limits::MAX_HEADERS_PER_BATCH,
};
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{DEADLINE, node::TestNode, wait};

/// Most unanswered requests a silent peer holds (older ones are released,
/// which answers them `INTERNAL`).
pub const MAX_HELD_RESPONDERS: usize = 4096;
/// How long [`ScriptedPeer::reconnect`] waits to see whether the node closes
/// a new connection at once.
pub const RECONNECT_GRACE: Duration = Duration::from_secs(2);
/// Timeout of the observer's own requests.
pub const OBSERVER_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How a scripted peer answers one `GetHeaders`.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A `HeadersResponse` echoing the request's start height.
    Headers(Vec<SignedHeader>),
    /// Any response, as is (errors, answers that break the protocol).
    Response(Box<Response>),
    /// No answer, ever (the request is held until the peer is dropped).
    Silent,
    /// The reply, after a delay.
    Delayed(Duration, Box<Reply>),
}

/// Decides the reply to a `GetHeaders`, given the height the peer currently
/// serves up to ([`ScriptedPeer::set_serve_height`]).
pub type Script = Arc<dyn Fn(&GetHeaders, u64) -> Reply + Send + Sync>;

/// A script serving `chain` (index `h - 1` holds height `h`) up to the serve height.
pub fn serving(chain: Arc<Vec<SignedHeader>>) -> Script {
    Arc::new(move |q: &GetHeaders, up_to: u64| Reply::Headers(slice(&chain, q, up_to)))
}

/// As [`serving`], each answer delayed by `delay`.
pub fn serving_slowly(chain: Arc<Vec<SignedHeader>>, delay: Duration) -> Script {
    Arc::new(move |q: &GetHeaders, up_to: u64| {
        Reply::Delayed(delay, Box::new(Reply::Headers(slice(&chain, q, up_to))))
    })
}

/// Decides the reply to any request other than `GetHeaders`, given the
/// serve height. A [`Reply::Headers`] becomes a `HeadersResponse` starting at
/// its first header's height (1 when empty).
pub type RequestScript = Arc<dyn Fn(&Request, u64) -> Reply + Send + Sync>;

/// The default [`RequestScript`]: `UNSUPPORTED` for everything (a v1-only peer).
pub fn unsupported() -> RequestScript {
    Arc::new(|_: &Request, _: u64| Reply::Response(Box::new(unsupported_response())))
}

/// `ErrorResponse { code: UNSUPPORTED }`.
pub fn unsupported_response() -> Response {
    Response::Error(ErrorResponse {
        code: ErrorCode::Unsupported,
        message: "a scripted peer serves GetHeaders only".into(),
        retry_after_ms: 0,
    })
}

/// A script that never answers.
pub fn silent() -> Script {
    Arc::new(|_: &GetHeaders, _: u64| Reply::Silent)
}

/// The headers of `chain` a request asks for, up to height `up_to`.
pub fn slice(chain: &[SignedHeader], q: &GetHeaders, up_to: u64) -> Vec<SignedHeader> {
    let last = q
        .start_height
        .saturating_add(u64::from(q.count))
        .saturating_sub(1)
        .min(up_to)
        .min(chain.len() as u64);
    (q.start_height..=last)
        .filter_map(|h| chain.get(usize::try_from(h - 1).ok()?).cloned())
        .collect()
}

/// One `GetHeaders` the node sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// The request.
    pub request: GetHeaders,
    /// When it arrived.
    pub received: Instant,
    /// When it was answered (`None`: not answered, or silent).
    pub answered: Option<Instant>,
}

impl RequestRecord {
    /// The heights asked for.
    pub fn heights(&self) -> std::ops::RangeInclusive<u64> {
        self.request.start_height
            ..=self.request.start_height + u64::from(self.request.count).saturating_sub(1)
    }
}

/// One request other than `GetHeaders` the node sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherRequestRecord {
    /// The request.
    pub request: Request,
    /// When it arrived.
    pub received: Instant,
    /// When it was answered (`None`: not answered, or silent).
    pub answered: Option<Instant>,
}

/// One closed connection to the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// The reason the transport gave (for a ban: the node's reason and the code).
    pub reason: String,
    /// True when the node closed it with the `BANNED` close code.
    pub banned: bool,
    /// When.
    pub at: Instant,
}

/// Everything a scripted peer saw.
#[derive(Debug, Clone, Default)]
pub struct PeerRecord {
    /// `GetHeaders` from the node, in arrival order.
    pub requests: Vec<RequestRecord>,
    /// Other requests from the node, in arrival order (answered by the
    /// peer's [`RequestScript`], `UNSUPPORTED` by default).
    pub other_requests: Vec<Request>,
    /// The same requests as `other_requests`, with their times.
    pub others: Vec<OtherRequestRecord>,
    /// Status pushes from the node, in order.
    pub statuses: Vec<StatusResponse>,
    /// Malformed frames the node sent (the transport refused them).
    pub misbehaved: Vec<String>,
    /// Connections established.
    pub connects: u32,
    /// Connections closed.
    pub disconnects: Vec<Disconnect>,
}

impl PeerRecord {
    /// The first ban seen, if any.
    pub fn ban(&self) -> Option<&Disconnect> {
        self.disconnects.iter().find(|d| d.banned)
    }

    /// Bans seen.
    pub fn bans(&self) -> usize {
        self.disconnects.iter().filter(|d| d.banned).count()
    }

    /// The `GetHeadersV2` requests received, in order.
    pub fn v2_requests(&self) -> Vec<GetHeadersV2> {
        self.other_requests
            .iter()
            .filter_map(|r| match r {
                Request::GetHeadersV2(q) => Some(*q),
                _ => None,
            })
            .collect()
    }

    /// The heights of the `GetValidatorSet` requests received, in order.
    pub fn validator_set_requests(&self) -> Vec<u64> {
        self.other_requests
            .iter()
            .filter_map(|r| match r {
                Request::GetValidatorSet(q) => Some(q.height),
                _ => None,
            })
            .collect()
    }
}

/// A scripted peer (or an observer: a peer without a claim).
pub struct ScriptedPeer {
    net: Network,
    record: Arc<Mutex<PeerRecord>>,
    serve_height: Arc<AtomicU64>,
    claim: Arc<Mutex<Option<u64>>>,
    node: Mutex<Option<(PeerId, SocketAddr)>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for ScriptedPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedPeer")
            .field("id", &self.net.peer_id())
            .finish_non_exhaustive()
    }
}

impl ScriptedPeer {
    /// A peer answering `GetHeaders` with `script` and every other request
    /// `UNSUPPORTED`, serving up to `serve_height`; not yet connected.
    ///
    /// # Panics
    ///
    /// When its endpoint cannot be started.
    pub async fn start(script: Script, serve_height: u64) -> ScriptedPeer {
        ScriptedPeer::start_with(script, unsupported(), serve_height).await
    }

    /// A peer answering `GetHeaders` with `script` and every other request
    /// with `others`, serving up to `serve_height`; not yet connected.
    ///
    /// # Panics
    ///
    /// When its endpoint cannot be started.
    pub async fn start_with(
        script: Script,
        others: RequestScript,
        serve_height: u64,
    ) -> ScriptedPeer {
        let config = NetConfig {
            // A silent peer holds requests; the transport must not answer for it.
            response_deadline: Duration::from_secs(3600),
            request_timeout: OBSERVER_REQUEST_TIMEOUT,
            ..NetConfig::default()
        };
        let (net, events) = match Network::start(NodeKey::generate(), config, Vec::new()).await {
            Ok(x) => x,
            Err(e) => panic!("starting a scripted peer: {e}"),
        };
        let record = Arc::new(Mutex::new(PeerRecord::default()));
        let serve = Arc::new(AtomicU64::new(serve_height));
        let claim = Arc::new(Mutex::new(None));
        let task = tokio::spawn(event_loop(EventLoop {
            net: net.clone(),
            events,
            record: record.clone(),
            serve: serve.clone(),
            claim: claim.clone(),
            script,
            others,
            held: VecDeque::new(),
            connections: Vec::new(),
        }));
        ScriptedPeer {
            net,
            record,
            serve_height: serve,
            claim,
            node: Mutex::new(None),
            task,
        }
    }

    /// An honest peer serving `chain` up to `serve_height`.
    pub async fn honest(chain: Arc<Vec<SignedHeader>>, serve_height: u64) -> ScriptedPeer {
        ScriptedPeer::start(serving(chain), serve_height).await
    }

    /// An observer: serves nothing, claims nothing.
    pub async fn observer() -> ScriptedPeer {
        ScriptedPeer::start(
            Arc::new(|_: &GetHeaders, _: u64| Reply::Headers(Vec::new())),
            0,
        )
        .await
    }

    /// This peer's id.
    pub fn id(&self) -> PeerId {
        self.net.peer_id()
    }

    /// This peer's address.
    ///
    /// # Panics
    ///
    /// If the endpoint has no local address (it always has one).
    pub fn addr(&self) -> SocketAddr {
        match self.net.local_addr() {
            Ok(a) => a,
            Err(e) => panic!("scripted peer address: {e}"),
        }
    }

    /// The transport, for tests that need raw access.
    pub fn net(&self) -> &Network {
        &self.net
    }

    /// The height the standard scripts serve up to.
    pub fn set_serve_height(&self, height: u64) {
        self.serve_height.store(height, Ordering::SeqCst);
    }

    /// A snapshot of what the peer saw.
    pub fn record(&self) -> PeerRecord {
        lock(&self.record).clone()
    }

    /// Dials the node (no status is pushed unless a claim is set).
    ///
    /// # Panics
    ///
    /// When the connection cannot be established.
    pub async fn connect(&self, node: &TestNode) {
        self.connect_to(node.peer_id(), node.addr()).await;
    }

    /// Dials any Headway endpoint (for library-level tests without a [`TestNode`]).
    ///
    /// # Panics
    ///
    /// When the connection cannot be established.
    pub async fn connect_to(&self, id: PeerId, addr: SocketAddr) {
        *lock(&self.node) = Some((id, addr));
        if let Err(e) = self.net.connect(addr, id).await {
            panic!(
                "scripted peer {} cannot connect to the node: {e}",
                self.id().short()
            );
        }
    }

    /// Sets the height this peer claims in a status push on every connection
    /// (base 1), dials the node, and waits until it is connected.
    pub async fn connect_and_claim(&self, node: &TestNode, height: u64) {
        self.connect_and_claim_to(node.peer_id(), node.addr(), height)
            .await;
    }

    /// As [`ScriptedPeer::connect_and_claim`], to any Headway endpoint.
    ///
    /// # Panics
    ///
    /// When the connection is not established in time.
    pub async fn connect_and_claim_to(&self, id: PeerId, addr: SocketAddr, height: u64) {
        *lock(&self.claim) = Some(height);
        let before = self.record().connects;
        self.connect_to(id, addr).await;
        let record = self.record.clone();
        let connected = wait::until("the scripted peer's connection event", DEADLINE, || {
            let record = record.clone();
            async move { (lock(&record).connects > before).then_some(()) }
        })
        .await;
        if let Err(e) = connected {
            panic!("{e}");
        }
    }

    /// Sets the height claimed on every later connection (`None`: claim nothing).
    pub fn set_claim(&self, height: Option<u64>) {
        *lock(&self.claim) = height;
    }

    /// Pushes a status to the node.
    ///
    /// # Panics
    ///
    /// When not connected.
    pub fn push_status(&self, base: u64, height: u64) {
        let node = self.node_id();
        if let Err(e) = self
            .net
            .push(node, Push::Status(StatusResponse::new(base, height)))
        {
            panic!("pushing a status to the node: {e}");
        }
    }

    /// True while connected to the node.
    pub fn is_connected(&self) -> bool {
        self.net.connected_peers().contains(&self.node_id())
    }

    /// Closes the connection to the node.
    pub fn disconnect(&self) {
        self.net.disconnect(self.node_id(), "scripted peer leaves");
    }

    /// Sends a request to the node.
    ///
    /// # Errors
    ///
    /// The transport's error.
    pub async fn request(&self, request: &Request) -> Result<Response, NetError> {
        self.net.request(self.node_id(), request).await
    }

    /// Asks the node for headers.
    ///
    /// # Panics
    ///
    /// On a transport error (the node must answer, R2.3, R2.7).
    pub async fn get_headers(&self, start_height: u64, count: u32) -> Response {
        match self
            .request(&Request::GetHeaders(GetHeaders {
                start_height,
                count,
            }))
            .await
        {
            Ok(r) => r,
            Err(e) => panic!(
                "GetHeaders {{ start_height: {start_height}, count: {count} }} to the node failed: {e}"
            ),
        }
    }

    /// Asks the node for block bodies.
    ///
    /// # Panics
    ///
    /// On a transport error.
    pub async fn get_blocks(&self, request: GetBlocks) -> Response {
        match self.request(&Request::GetBlocks(request.clone())).await {
            Ok(r) => r,
            Err(e) => panic!("{request:?} to the node failed: {e}"),
        }
    }

    /// The node's stored headers from `from` up to `to` (or until it has no
    /// more), in batches of 50, waiting out `RATE_LIMITED` answers.
    ///
    /// # Panics
    ///
    /// On a transport error or an answer that is neither headers nor `RATE_LIMITED`.
    pub async fn fetch_headers(&self, from: u64, to: u64) -> Vec<SignedHeader> {
        let mut out = Vec::new();
        let mut next = from;
        while next <= to {
            let count =
                u32::try_from((to - next + 1).min(u64::from(MAX_HEADERS_PER_BATCH))).unwrap_or(1);
            match self.get_headers(next, count).await {
                Response::Headers(HeadersResponse { headers, .. }) => {
                    if headers.is_empty() {
                        break;
                    }
                    next += headers.len() as u64;
                    out.extend(headers);
                }
                Response::Error(ErrorResponse {
                    code: ErrorCode::RateLimited | ErrorCode::Busy,
                    retry_after_ms,
                    ..
                }) => {
                    tokio::time::sleep(Duration::from_millis(u64::from(
                        retry_after_ms.clamp(10, 2000),
                    )))
                    .await;
                }
                other => panic!("unexpected answer to GetHeaders from {next}: {other:?}"),
            }
        }
        out
    }

    /// Fetches the node's headers `from..=to` (at most `end_height`) by
    /// headers-only `GetHeadersV2` ranges proven into `commitment`, as bare
    /// headers (what a node that synced headers-only can serve).
    ///
    /// # Panics
    ///
    /// On a transport error or an answer that is not bare headers.
    pub async fn fetch_bare_headers(
        &self,
        from: u64,
        to: u64,
        end_height: u64,
        commitment: headway_wire::Hash,
    ) -> Vec<headway_wire::BareHeader> {
        let mut out = Vec::new();
        let mut next = from;
        while next <= to.min(end_height) {
            let count = u32::try_from((to.min(end_height) - next + 1).min(500)).unwrap_or(1);
            let request = Request::GetHeadersV2(headway_wire::GetHeadersV2 {
                start_height: next,
                count,
                end_height,
                commitment,
                proof_kind: headway_wire::ProofKind::LastLeaf,
                headers_only: true,
                compact: false,
            });
            match self.request(&request).await {
                Ok(Response::HeadersV2(headway_wire::HeadersV2Response {
                    result: headway_wire::HeadersV2Result::BareHeaders { headers, .. },
                    ..
                })) => {
                    if headers.is_empty() {
                        break;
                    }
                    next += headers.len() as u64;
                    out.extend(headers);
                }
                Ok(Response::Error(ErrorResponse {
                    code: ErrorCode::RateLimited | ErrorCode::Busy,
                    retry_after_ms,
                    ..
                })) => {
                    tokio::time::sleep(Duration::from_millis(u64::from(
                        retry_after_ms.clamp(10, 2000),
                    )))
                    .await;
                }
                other => panic!("unexpected answer to a headers-only range from {next}: {other:?}"),
            }
        }
        out
    }

    /// Waits until the node bans this peer; returns the disconnect.
    ///
    /// # Panics
    ///
    /// After `timeout`, with what the peer saw.
    pub async fn wait_banned(&self, timeout: Duration) -> Disconnect {
        let record = self.record.clone();
        let result = wait::until("the node to ban the peer", timeout, || {
            let record = record.clone();
            async move { lock(&record).ban().cloned() }
        })
        .await;
        match result {
            Ok(d) => d,
            Err(e) => panic!(
                "peer {}: {e}; it saw: {:?}",
                self.id().short(),
                self.summary()
            ),
        }
    }

    /// Waits until the peer has received at least `n` `GetHeaders`.
    ///
    /// # Panics
    ///
    /// After `timeout`.
    pub async fn wait_requests(&self, n: usize, timeout: Duration) {
        let record = self.record.clone();
        let result = wait::until(&format!("{n} GetHeaders requests"), timeout, || {
            let record = record.clone();
            async move { (lock(&record).requests.len() >= n).then_some(()) }
        })
        .await;
        if let Err(e) = result {
            panic!(
                "peer {}: {e}; it saw: {:?}",
                self.id().short(),
                self.summary()
            );
        }
    }

    /// Waits for a status push from the node satisfying `accept`.
    ///
    /// # Panics
    ///
    /// After `timeout`, with the statuses seen.
    pub async fn wait_status(
        &self,
        accept: impl Fn(&StatusResponse) -> bool,
        timeout: Duration,
    ) -> StatusResponse {
        let record = self.record.clone();
        let accept = &accept;
        let result = wait::until("a status push from the node", timeout, || {
            let record = record.clone();
            async move { lock(&record).statuses.iter().find(|s| accept(s)).copied() }
        })
        .await;
        match result {
            Ok(s) => s,
            Err(e) => panic!(
                "peer {}: {e}; statuses seen: {:?}",
                self.id().short(),
                self.record().statuses
            ),
        }
    }

    /// Dials the node again and reports whether it closed the new connection
    /// at once with the `BANNED` code (`Some(reason)`), or kept it open for
    /// [`RECONNECT_GRACE`] (`None`).
    pub async fn reconnect(&self) -> Option<String> {
        let (id, addr) =
            lock_node(&self.node).unwrap_or_else(|| panic!("reconnect before connect"));
        let before = self.record().disconnects.len();
        match self.net.connect(addr, id).await {
            Ok(()) => {}
            Err(NetError::Connect { reason, .. }) if is_ban_reason(&reason) => return Some(reason),
            Err(e) => panic!("reconnecting to the node: {e}"),
        }
        let deadline = Instant::now() + RECONNECT_GRACE;
        while Instant::now() < deadline {
            if let Some(d) = self.record().disconnects.get(before) {
                return d.banned.then(|| d.reason.clone());
            }
            tokio::time::sleep(wait::POLL_INTERVAL).await;
        }
        None
    }

    /// A one-line account of what the peer saw, for failure messages.
    pub fn summary(&self) -> String {
        let r = self.record();
        format!(
            "{} requests ({:?}), v2 ranges {:?}, validator sets {:?}, statuses {:?}, connects {}, disconnects {:?}, misbehaved {:?}",
            r.requests.len(),
            r.requests
                .iter()
                .map(|q| (q.request.start_height, q.request.count))
                .collect::<Vec<_>>(),
            r.v2_requests()
                .iter()
                .map(|q| (q.start_height, q.count))
                .collect::<Vec<_>>(),
            r.validator_set_requests(),
            r.statuses.iter().map(|s| s.height).collect::<Vec<_>>(),
            r.connects,
            r.disconnects.iter().map(|d| &d.reason).collect::<Vec<_>>(),
            r.misbehaved
        )
    }

    fn node_id(&self) -> PeerId {
        match lock_node(&self.node) {
            Some((id, _)) => id,
            None => panic!("the scripted peer has not connected to a node"),
        }
    }
}

impl Drop for ScriptedPeer {
    fn drop(&mut self) {
        self.task.abort();
        let net = self.net.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { net.shutdown().await });
        }
    }
}

/// Connects every peer to the node at once, each claiming `height`
/// ([`ScriptedPeer::connect_and_claim`] run concurrently), so that a node
/// gathering statuses for a short while hears all of them.
pub async fn connect_all_and_claim(peers: &[&ScriptedPeer], node: &TestNode, height: u64) {
    let mut pending: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>>> = peers
        .iter()
        .map(|p| {
            Box::pin(p.connect_and_claim(node, height))
                as std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>
        })
        .collect();
    std::future::poll_fn(|cx| {
        pending.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}

/// True when a transport close reason is the node's `BANNED` close.
pub fn is_ban_reason(reason: &str) -> bool {
    let code = close_code::BANNED;
    reason.contains("closed by peer")
        && (reason.ends_with(&format!("(code {code})")) || reason.ends_with(&format!(": {code}")))
}

struct EventLoop {
    net: Network,
    events: mpsc::Receiver<NetEvent>,
    record: Arc<Mutex<PeerRecord>>,
    serve: Arc<AtomicU64>,
    claim: Arc<Mutex<Option<u64>>>,
    script: Script,
    others: RequestScript,
    held: VecDeque<Responder>,
    connections: Vec<quinn::Connection>,
}

async fn event_loop(mut s: EventLoop) {
    while let Some(event) = s.events.recv().await {
        match event {
            NetEvent::Connected { peer, .. } => {
                if let Some(conn) = s.net.raw_connection(peer) {
                    s.connections.push(conn);
                }
                let claim = *lock(&s.claim);
                if let Some(height) = claim {
                    // The node may close at once (a ban): nothing to push then.
                    let _ = s
                        .net
                        .push(peer, Push::Status(StatusResponse::new(1, height)));
                }
                // Counted after the claim is queued, so a test's own pushes follow it.
                lock(&s.record).connects += 1;
            }
            NetEvent::Disconnected { reason, .. } => {
                let by_code = s.connections.iter().any(|c| {
                    matches!(c.close_reason(), Some(quinn::ConnectionError::ApplicationClosed(close))
                        if close.error_code == quinn::VarInt::from_u32(close_code::BANNED))
                });
                s.connections.retain(|c| c.close_reason().is_none());
                let banned = by_code || is_ban_reason(&reason);
                lock(&s.record).disconnects.push(Disconnect {
                    reason,
                    banned,
                    at: Instant::now(),
                });
            }
            NetEvent::Push {
                push: Push::Status(status),
                ..
            } => lock(&s.record).statuses.push(status),
            NetEvent::Push { .. } => {}
            NetEvent::Misbehaved { reason, .. } => lock(&s.record).misbehaved.push(reason),
            NetEvent::Request {
                request: Request::GetHeaders(q),
                responder,
                ..
            } => {
                let index = {
                    let mut record = lock(&s.record);
                    record.requests.push(RequestRecord {
                        request: q,
                        received: Instant::now(),
                        answered: None,
                    });
                    record.requests.len() - 1
                };
                let reply = (s.script)(&q, s.serve.load(Ordering::SeqCst));
                answer(
                    &mut s,
                    Some(q.start_height),
                    reply,
                    responder,
                    Slot::GetHeaders(index),
                );
            }
            NetEvent::Request {
                request, responder, ..
            } => {
                let index = {
                    let mut record = lock(&s.record);
                    record.other_requests.push(request.clone());
                    record.others.push(OtherRequestRecord {
                        request: request.clone(),
                        received: Instant::now(),
                        answered: None,
                    });
                    record.others.len() - 1
                };
                let reply = (s.others)(&request, s.serve.load(Ordering::SeqCst));
                answer(&mut s, None, reply, responder, Slot::Other(index));
            }
        }
    }
}

/// Which record a reply marks as answered.
#[derive(Debug, Clone, Copy)]
enum Slot {
    GetHeaders(usize),
    Other(usize),
}

/// Sends (or holds, or delays) `reply`; `start` is the `GetHeaders` start
/// height a [`Reply::Headers`] echoes (`None` for other requests: the first
/// header's height).
fn answer(s: &mut EventLoop, start: Option<u64>, reply: Reply, responder: Responder, slot: Slot) {
    match reply {
        Reply::Silent => {
            if s.held.len() >= MAX_HELD_RESPONDERS {
                s.held.pop_front();
            }
            s.held.push_back(responder);
        }
        Reply::Delayed(delay, inner) => {
            let record = s.record.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Some(response) = immediate(start, *inner) {
                    responder.respond(response);
                    mark_answered(&record, slot);
                }
            });
        }
        other => {
            if let Some(response) = immediate(start, other) {
                responder.respond(response);
                mark_answered(&s.record, slot);
            }
        }
    }
}

fn immediate(start: Option<u64>, reply: Reply) -> Option<Response> {
    match reply {
        Reply::Headers(headers) => Some(Response::Headers(HeadersResponse {
            start_height: start
                .or_else(|| headers.first().map(|h| h.header.height))
                .unwrap_or(1),
            headers,
        })),
        Reply::Response(r) => Some(*r),
        // Nested delays and silence inside a delay: treated as silence.
        Reply::Silent | Reply::Delayed(..) => None,
    }
}

fn mark_answered(record: &Arc<Mutex<PeerRecord>>, slot: Slot) {
    let mut record = lock(record);
    let answered = match slot {
        Slot::GetHeaders(i) => record.requests.get_mut(i).map(|r| &mut r.answered),
        Slot::Other(i) => record.others.get_mut(i).map(|r| &mut r.answered),
    };
    if let Some(answered) = answered {
        *answered = Some(Instant::now());
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Records stay usable after a panic elsewhere.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn lock_node(m: &Mutex<Option<(PeerId, SocketAddr)>>) -> Option<(PeerId, SocketAddr)> {
    *lock(m)
}

/// Compares headers fetched from the node with the honest chain from height
/// `from`: `Err` names the first height that differs.
///
/// # Errors
///
/// A message naming the first differing height and what differs.
pub fn check_honest_prefix(
    fetched: &[SignedHeader],
    honest: &[SignedHeader],
    from: u64,
) -> Result<(), String> {
    for (i, got) in fetched.iter().enumerate() {
        let height = from + i as u64;
        let Some(want) = usize::try_from(height - 1).ok().and_then(|i| honest.get(i)) else {
            return Err(format!(
                "the node serves height {height}, above the honest chain"
            ));
        };
        if got.header.height != height {
            return Err(format!(
                "position of height {height} holds height {}",
                got.header.height
            ));
        }
        if got.header != want.header {
            return Err(format!("header {height} is not the honest one"));
        }
        if got.commit != want.commit {
            return Err(format!("commit {height} is not the honest one"));
        }
        if got.validator_set != want.validator_set {
            return Err(format!(
                "validator set at {height}: got {}, want {}",
                if got.validator_set.is_some() {
                    "one"
                } else {
                    "none"
                },
                if want.validator_set.is_some() {
                    "the honest one"
                } else {
                    "none"
                }
            ));
        }
    }
    Ok(())
}
