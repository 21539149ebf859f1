//! Serving peers: real `headway-net` nodes answering from the cached chain's
//! store through `headway_node::serve::answer_queue`, as the node's dispatch does
//! (header requests rate-limited per peer by `serve::rate_weight`, weighted by the
//! headers asked for,
//! with explicit `RATE_LIMITED` answers; store reads on the blocking pool),
//! and greeting every client with their status in the handshake (as the
//! node's header sync reactor does, `Network::set_greeting`).

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use headway_headersync::{
    RateLimiter,
    server::{DEFAULT_RATE_WINDOW, get_headers_weight, rate_limited},
};
use headway_net::{DEFAULT_MAX_UDP_PAYLOAD_SIZE, NetConfig, NetEvent, Network, NodeKey, PeerId};
use headway_store::Store;
use headway_wire::{Features, Push, StatusResponse, limits::MAX_HEADERS_PER_BATCH};
use tokio::task::JoinHandle;

/// One serving peer.
pub struct ServingPeer {
    /// Its transport.
    pub net: Network,
    /// Its peer id.
    pub id: PeerId,
    /// Its listening address.
    pub addr: SocketAddr,
    /// `GetHeaders` refused with `RATE_LIMITED`.
    pub rate_limited: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

/// The transport settings of every node in the bench: a node's defaults.
/// `HEADWAY_BENCH_UDP_PAYLOAD=<bytes>` sets the datagram ceiling
/// ([`NetConfig::max_udp_payload_size`], at most
/// `headway_net::MAX_UDP_PAYLOAD_SIZE`) of the client and the serving peers
/// alike; loopback's MTU is 64 KiB, and the relays of the delayed cells
/// forward datagrams of any size.
pub fn net_config() -> NetConfig {
    let max_udp_payload_size = match std::env::var("HEADWAY_BENCH_UDP_PAYLOAD") {
        Ok(bytes) => bytes
            .trim()
            .parse()
            .expect("HEADWAY_BENCH_UDP_PAYLOAD in bytes"),
        Err(_) => DEFAULT_MAX_UDP_PAYLOAD_SIZE,
    };
    NetConfig {
        max_udp_payload_size,
        ..NetConfig::default()
    }
}

impl ServingPeer {
    /// Starts a peer serving `store` up to `tip`, allowing each client
    /// `get_headers_per_second` `GetHeaders` per sliding second. Must run
    /// inside the runtime that should drive the peer.
    pub async fn start(store: Store, tip: u64, get_headers_per_second: usize) -> ServingPeer {
        let config = NetConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..net_config()
        };
        let (net, mut events) = Network::start(NodeKey::generate(), config, vec![])
            .await
            .expect("starting a serving peer");
        let addr = net.local_addr().expect("serving peer address");
        let id = net.peer_id();
        // R1.1: a client hears our status with the handshake, as 0.5-RTT data.
        let status = StatusResponse {
            features: Features::HEADERS_V2,
            ..StatusResponse::new(1, tip)
        };
        net.set_greeting(Some(status))
            .expect("a serving peer's status encodes");
        // As the node: the rate counts full batches, the limiter weighted units.
        let limiter = Arc::new(Mutex::new(RateLimiter::<PeerId>::new(
            get_headers_per_second * get_headers_weight(MAX_HEADERS_PER_BATCH),
            DEFAULT_RATE_WINDOW,
        )));
        let refusals = Arc::new(AtomicU64::new(0));
        let answers = headway_node::serve::answer_queue(
            store.clone(),
            headway_node::answers::default_concurrency(),
        );
        let task = tokio::spawn({
            let (net, refused) = (net.clone(), refusals.clone());
            async move {
                while let Some(event) = events.recv().await {
                    match event {
                        // Only a client that was not greeted needs telling.
                        NetEvent::Connected {
                            peer,
                            greeted: None,
                            ..
                        } => {
                            let _ = net.push(peer, Push::Status(status));
                        }
                        NetEvent::Request {
                            peer,
                            request,
                            responder,
                        } => {
                            if let Some(weight) = headway_node::serve::rate_weight(&request) {
                                let verdict = limiter
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .check_weighted(peer, Instant::now(), weight);
                                if let Err(retry_after) = verdict {
                                    refused.fetch_add(1, Ordering::Relaxed);
                                    responder.respond(rate_limited(
                                        retry_after.max(Duration::from_millis(1)),
                                    ));
                                    continue;
                                }
                            }
                            if let Err((_, responder)) =
                                answers.submit(peer, responder.order(), (request, responder))
                            {
                                responder.respond(headway_node::serve::busy());
                            }
                        }
                        _ => {}
                    }
                }
            }
        });
        ServingPeer {
            net,
            id,
            addr,
            rate_limited: refusals,
            task,
        }
    }

    /// Closes the peer's transport.
    pub async fn shutdown(self) {
        self.task.abort();
        self.net.shutdown().await;
    }
}
