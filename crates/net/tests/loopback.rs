//! The transport over real QUIC on loopback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is the assertion"
)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use headway_net::{
    DEFAULT_MAX_UDP_PAYLOAD_SIZE, MAX_UDP_PAYLOAD_SIZE, MIN_UDP_PAYLOAD_SIZE, NetConfig, NetError,
    NetEvent, Network, NodeKey, PeerId,
};
use headway_wire::{
    ErrorCode, GetHeaders, GetSnapshot, HeadersResponse, Push, Request, Response, SnapshotData,
    SnapshotEntry, StatusResponse, limits::MAX_REQUEST_FRAME,
};
use tokio::sync::mpsc;

async fn node(seed: u8) -> (Network, mpsc::Receiver<NetEvent>) {
    node_with(seed, NetConfig::default()).await
}

async fn node_with(seed: u8, config: NetConfig) -> (Network, mpsc::Receiver<NetEvent>) {
    Network::start(NodeKey::from_seed([seed; 32]), config, vec![])
        .await
        .expect("starts")
}

/// Answers every GetHeaders with an empty batch; forwards other events.
fn serve(mut events: mpsc::Receiver<NetEvent>) -> mpsc::UnboundedReceiver<NetEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                NetEvent::Request {
                    request: Request::GetHeaders(q),
                    responder,
                    ..
                } => {
                    responder.respond(Response::Headers(HeadersResponse {
                        start_height: q.start_height,
                        headers: vec![],
                    }));
                }
                other => {
                    let _ = tx.send(other);
                }
            }
        }
    });
    rx
}

async fn next_matching(
    rx: &mut mpsc::UnboundedReceiver<NetEvent>,
    f: impl Fn(&NetEvent) -> bool,
) -> NetEvent {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = rx.recv().await.expect("event stream open");
            if f(&e) {
                return e;
            }
        }
    })
    .await
    .expect("event arrives in time")
}

fn get_headers(start_height: u64) -> Request {
    Request::GetHeaders(GetHeaders {
        start_height,
        count: 50,
    })
}

#[tokio::test]
async fn dialling_the_right_key_connects_and_exchanges() {
    let (server, events) = node(1).await;
    let _server_events = serve(events);
    let (client, _client_events) = node(2).await;
    client
        .connect(server.local_addr().unwrap(), server.peer_id())
        .await
        .unwrap();
    let response = client
        .request(server.peer_id(), &get_headers(7))
        .await
        .unwrap();
    assert_eq!(
        response,
        Response::Headers(HeadersResponse {
            start_height: 7,
            headers: vec![]
        })
    );
}

#[tokio::test]
async fn dialling_with_the_wrong_expected_key_is_refused() {
    let (server, _events) = node(1).await;
    let (client, _client_events) = node(2).await;
    let impostor = NodeKey::from_seed([99; 32]).peer_id();
    let err = client
        .connect(server.local_addr().unwrap(), impostor)
        .await
        .unwrap_err();
    assert!(matches!(err, NetError::Connect { .. }), "{err}");
    assert!(client.connected_peers().is_empty());
}

#[tokio::test]
async fn inbound_peers_are_identified_by_their_key() {
    let (server, events) = node(1).await;
    let mut server_events = serve(events);
    let (client, _client_events) = node(2).await;
    client
        .connect(server.local_addr().unwrap(), server.peer_id())
        .await
        .unwrap();
    let (peer, inbound, _) = next_connected(&mut server_events).await;
    assert_eq!(peer, client.peer_id());
    assert!(inbound);
}

/// Peers dialling at the same moment cannot pass the inbound limit: a
/// handshake holds its place under the limit from the moment it is
/// accepted (it was counted only once registered, and 20 of 20 simultaneous
/// dialers got in past a limit of 2). On one thread, the accept loop takes
/// every waiting connection before any handshake runs.
#[tokio::test]
async fn simultaneous_dialers_cannot_pass_the_inbound_limit() {
    let (server, _events) = node_with(
        1,
        NetConfig {
            max_inbound_connections: 2,
            ..NetConfig::default()
        },
    )
    .await;
    let addr = server.local_addr().unwrap();
    let mut clients = Vec::new();
    for seed in 10..30 {
        clients.push(node(seed).await.0);
    }
    let mut dials = tokio::task::JoinSet::new();
    for client in &clients {
        let client = client.clone();
        let id = server.peer_id();
        dials.spawn(async move { client.connect(addr, id).await });
    }
    while dials.join_next().await.is_some() {}
    // Let refused and closed connections settle on the server.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let connected = server.connected_peers().len();
    assert!(
        (1..=2).contains(&connected),
        "{connected} inbound peers past a limit of 2"
    );
}

/// Dials started at once cannot pass the outbound limit either: the ones
/// past it fail with `TooManyConnections`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_dials_cannot_pass_the_outbound_limit() {
    let mut servers = Vec::new();
    for seed in 40..44 {
        servers.push(node(seed).await.0);
    }
    let (client, _events) = node_with(
        2,
        NetConfig {
            max_outbound_connections: 1,
            ..NetConfig::default()
        },
    )
    .await;
    let mut dials = tokio::task::JoinSet::new();
    for server in &servers {
        let client = client.clone();
        let (addr, id) = (server.local_addr().unwrap(), server.peer_id());
        dials.spawn(async move { client.connect(addr, id).await });
    }
    let (mut ok, mut refused) = (0, 0);
    while let Some(result) = dials.join_next().await {
        match result.unwrap() {
            Ok(()) => ok += 1,
            Err(NetError::TooManyConnections {
                inbound: false,
                limit: 1,
            }) => refused += 1,
            Err(e) => panic!("unexpected dial error: {e}"),
        }
    }
    assert_eq!((ok, refused), (1, 3));
    assert_eq!(client.connected_peers().len(), 1);
}

/// The next `Connected` event: the peer, whether it dialled us, and what it
/// was greeted with.
async fn next_connected(
    rx: &mut mpsc::UnboundedReceiver<NetEvent>,
) -> (PeerId, bool, Option<StatusResponse>) {
    match next_matching(rx, |e| matches!(e, NetEvent::Connected { .. })).await {
        NetEvent::Connected {
            peer,
            inbound,
            greeted,
            ..
        } => (peer, inbound, greeted),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn oversize_request_frame_is_refused_from_its_prefix() {
    let (server, events) = node(1).await;
    let mut server_events = serve(events);
    let (client, _client_events) = node(2).await;
    client
        .connect(server.local_addr().unwrap(), server.peer_id())
        .await
        .unwrap();
    let conn = client.raw_connection(server.peer_id()).unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    // Announce a 1 GiB request and send nothing more: the server must refuse it
    // from the prefix alone (it could not have read 1 GiB).
    send.write_all(&(1u32 << 30).to_be_bytes()).await.unwrap();
    let event = next_matching(&mut server_events, |e| {
        matches!(e, NetEvent::Misbehaved { .. })
    })
    .await;
    let NetEvent::Misbehaved { peer, reason } = event else {
        unreachable!()
    };
    assert_eq!(peer, client.peer_id());
    assert!(reason.contains("over the limit"), "{reason}");
    // The server stops the stream: reading it yields no response.
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), recv.read(&mut buf))
        .await
        .unwrap();
    assert!(!matches!(read, Ok(Some(_))), "no response bytes expected");
    // Just over the request limit is refused too.
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(&((MAX_REQUEST_FRAME + 1) as u32).to_be_bytes())
        .await
        .unwrap();
    next_matching(&mut server_events, |e| {
        matches!(e, NetEvent::Misbehaved { .. })
    })
    .await;
}

#[tokio::test]
async fn malformed_request_is_answered_bad_request() {
    let (server, events) = node(1).await;
    let mut server_events = serve(events);
    let (client, _client_events) = node(2).await;
    client
        .connect(server.local_addr().unwrap(), server.peer_id())
        .await
        .unwrap();
    let conn = client.raw_connection(server.peer_id()).unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    send.finish().unwrap();
    let bytes = recv.read_to_end(1 << 16).await.unwrap();
    let response: Response = headway_wire::frame::decode_frame(&bytes, 1 << 16).unwrap();
    assert!(
        matches!(response, Response::Error(ref e) if e.code == ErrorCode::BadRequest),
        "{response:?}"
    );
    next_matching(&mut server_events, |e| {
        matches!(e, NetEvent::Misbehaved { .. })
    })
    .await;
}

#[tokio::test]
async fn ban_closes_the_connection_and_is_enforced_on_reconnect() {
    let (server, events) = node(1).await;
    let mut server_events = serve(events);
    let (client, client_events) = node(2).await;
    let mut client_events = serve(client_events);
    let addr = server.local_addr().unwrap();
    client.connect(addr, server.peer_id()).await.unwrap();
    next_matching(&mut server_events, |e| {
        matches!(e, NetEvent::Connected { .. })
    })
    .await;

    server.ban(
        client.peer_id(),
        Duration::from_secs(60),
        "sent invalid headers",
    );
    assert!(server.is_banned(&client.peer_id()));
    next_matching(&mut client_events, |e| {
        matches!(e, NetEvent::Disconnected { .. })
    })
    .await;

    // Reconnecting: the handshake completes (the key must be learned first) and
    // the server closes the connection at once, never handing it to the application.
    let _ = client.connect(addr, server.peer_id()).await;
    let event = next_matching(&mut client_events, |e| {
        matches!(e, NetEvent::Disconnected { .. })
    })
    .await;
    let NetEvent::Disconnected { reason, .. } = event else {
        unreachable!()
    };
    assert!(reason.contains("sent invalid headers"), "{reason}");
    assert!(!server.connected_peers().contains(&client.peer_id()));
    assert!(
        client
            .request(server.peer_id(), &get_headers(1))
            .await
            .is_err()
    );
    // The server refuses to dial a banned peer as well.
    let err = server
        .connect(client.local_addr().unwrap(), client.peer_id())
        .await
        .unwrap_err();
    assert!(matches!(err, NetError::Banned(_)));
}

#[tokio::test]
async fn many_concurrent_requests_complete() {
    let (server, events) = node(1).await;
    let _server_events = serve(events);
    let (client, _client_events) = node(2).await;
    client
        .connect(server.local_addr().unwrap(), server.peer_id())
        .await
        .unwrap();
    let peer = server.peer_id();
    // Far more than the per-peer stream limit (16): QUIC flow control queues the rest.
    let tasks: Vec<_> = (1..=300u64)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { (i, client.request(peer, &get_headers(i)).await) })
        })
        .collect();
    for task in tasks {
        let (i, response) = task.await.unwrap();
        assert_eq!(
            response.unwrap(),
            Response::Headers(HeadersResponse {
                start_height: i,
                headers: vec![]
            })
        );
    }
}

#[tokio::test]
async fn full_application_queue_answers_busy() {
    // The server's application never reads its events: after the queue (1) is
    // full, further requests are answered BUSY at once instead of hanging.
    let config = NetConfig {
        event_queue: 1,
        ..NetConfig::default()
    };
    let (server, _unread_events) = node_with(1, config).await;
    let (client, _client_events) = node(2).await;
    client
        .connect(server.local_addr().unwrap(), server.peer_id())
        .await
        .unwrap();
    let mut busy = 0;
    for i in 1..=4 {
        match client
            .request_with_timeout(server.peer_id(), &get_headers(i), Duration::from_secs(3))
            .await
        {
            Ok(Response::Error(e)) if e.code == ErrorCode::Busy => busy += 1,
            _ => {}
        }
    }
    assert!(busy >= 2, "expected BUSY answers, got {busy}");
    assert!(
        server
            .metrics()
            .requests_busy
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
}

#[tokio::test]
async fn pushes_arrive_in_order() {
    let (server, events) = node(1).await;
    let mut server_events = serve(events);
    let (client, _client_events) = node(2).await;
    client
        .connect(server.local_addr().unwrap(), server.peer_id())
        .await
        .unwrap();
    for height in 1..=50u64 {
        client
            .push(
                server.peer_id(),
                Push::Status(StatusResponse::new(1, height)),
            )
            .unwrap();
    }
    for height in 1..=50u64 {
        let event = next_matching(&mut server_events, |e| matches!(e, NetEvent::Push { .. })).await;
        let NetEvent::Push {
            push: Push::Status(s),
            peer,
        } = event
        else {
            unreachable!()
        };
        assert_eq!(peer, client.peer_id());
        assert_eq!(s.height, height);
    }
}

#[tokio::test]
async fn port_in_use_is_a_clear_error() {
    let (first, _events) = node(1).await;
    let config = NetConfig {
        listen: first.local_addr().unwrap(),
        ..NetConfig::default()
    };
    let err = Network::start(NodeKey::from_seed([2; 32]), config, vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, NetError::Bind { .. }), "{err}");
    assert!(err.to_string().contains("cannot listen on"));
}

#[tokio::test]
async fn bootstrap_peers_are_dialled_and_redialled() {
    let (server, events) = node(1).await;
    let mut server_events = serve(events);
    let addr = server.local_addr().unwrap();
    let bootstrap = vec![headway_net::BootstrapPeer {
        addr,
        peer: server.peer_id(),
    }];
    let (client, client_events) =
        Network::start(NodeKey::from_seed([2; 32]), NetConfig::default(), bootstrap)
            .await
            .unwrap();
    let mut client_events = serve(client_events);
    next_matching(&mut client_events, |e| {
        matches!(e, NetEvent::Connected { .. })
    })
    .await;
    next_matching(&mut server_events, |e| {
        matches!(e, NetEvent::Connected { .. })
    })
    .await;
    // The server drops the connection; the client redials on its own.
    server.disconnect(client.peer_id(), "test");
    next_matching(&mut client_events, |e| {
        matches!(e, NetEvent::Disconnected { .. })
    })
    .await;
    next_matching(&mut client_events, |e| {
        matches!(e, NetEvent::Connected { .. })
    })
    .await;
    let _: PeerId = client.peer_id();
}

async fn next_responder(events: &mut mpsc::Receiver<NetEvent>) -> headway_net::Responder {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let NetEvent::Request { responder, .. } = events.recv().await.unwrap() {
                return responder;
            }
        }
    })
    .await
    .expect("a request arrives")
}

async fn eventually_abandoned(responder: &headway_net::Responder) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !responder.is_abandoned() {
        assert!(
            std::time::Instant::now() < deadline,
            "the responder never saw the requester give up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A request whose requester gives up (its timeout, or its connection
/// closing) is seen as abandoned by the application holding its responder,
/// at once rather than at the response deadline.
#[tokio::test]
async fn a_request_given_up_by_its_requester_is_abandoned() {
    let (server, mut events) = node(1).await;
    let (client, _client_events) = node(2).await;
    client
        .connect(server.local_addr().unwrap(), server.peer_id())
        .await
        .unwrap();
    // 1. The request times out at the requester.
    let peer = server.peer_id();
    let asking = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .request_with_timeout(peer, &get_headers(1), Duration::from_millis(200))
                .await
        }
    });
    let responder = next_responder(&mut events).await;
    assert!(!responder.is_abandoned(), "the requester is still waiting");
    assert!(asking.await.unwrap().is_err(), "the request timed out");
    eventually_abandoned(&responder).await;
    let abandoned = || {
        server
            .metrics()
            .requests_abandoned
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert_eq!(abandoned(), 1);
    // Answering it anyway is harmless.
    responder.respond(Response::Headers(HeadersResponse {
        start_height: 1,
        headers: vec![],
    }));

    // 2. The requester's connection closes.
    let asking = tokio::spawn({
        let client = client.clone();
        async move { client.request(peer, &get_headers(2)).await }
    });
    let responder = next_responder(&mut events).await;
    assert!(!responder.is_abandoned());
    client.disconnect(peer, "leaving");
    assert!(asking.await.unwrap().is_err());
    eventually_abandoned(&responder).await;
    assert_eq!(abandoned(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_requests_reach_the_peer_in_start_order_however_they_are_polled() {
    let (server, mut events) = node(1).await;
    // The server records each request's stream order by its start height.
    let (orders_tx, mut orders_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let NetEvent::Request {
                request: Request::GetHeaders(q),
                responder,
                ..
            } = event
            {
                let _ = orders_tx.send((q.start_height, responder.order()));
                responder.respond(Response::Headers(HeadersResponse {
                    start_height: q.start_height,
                    headers: vec![],
                }));
            }
        }
    });
    let (client, _client_events) = node(2).await;
    client
        .connect(server.local_addr().unwrap(), server.peer_id())
        .await
        .unwrap();
    let peer = server.peer_id();
    // Below the per-peer stream limit (16), so every stream opens at once.
    let started: Vec<_> = (1..=12u64)
        .map(|i| (i, client.start_request(peer, &get_headers(i))))
        .collect();
    // Polled last first, each on its own task after a pause: a lazily
    // opened stream would reach the peer in this order instead.
    let mut tasks = Vec::new();
    for (i, response) in started.into_iter().rev() {
        tasks.push(tokio::spawn(async move { (i, response.await) }));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for task in tasks {
        let (i, response) = task.await.unwrap();
        assert_eq!(
            response.unwrap().0,
            Response::Headers(HeadersResponse {
                start_height: i,
                headers: vec![]
            })
        );
    }
    let mut orders = Vec::new();
    while orders.len() < 12 {
        orders.push(orders_rx.recv().await.unwrap());
    }
    orders.sort_unstable();
    let by_start: Vec<u64> = orders.iter().map(|(_, order)| *order).collect();
    assert!(
        by_start.windows(2).all(|w| w[0] < w[1]),
        "stream orders by start height: {by_start:?}"
    );
}

#[tokio::test]
async fn starting_a_request_to_an_unknown_peer_fails_when_awaited() {
    let (client, _events) = node(2).await;
    let stranger = NodeKey::from_seed([7; 32]).peer_id();
    let err = client
        .start_request(stranger, &get_headers(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, NetError::NotConnected(p) if p == stranger),
        "{err}"
    );
    assert_eq!(
        client
            .metrics()
            .requests_failed
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

/// The next push from `peer` on `events`, skipping other events.
async fn next_push(rx: &mut mpsc::UnboundedReceiver<NetEvent>) -> Push {
    let event = next_matching(rx, |e| matches!(e, NetEvent::Push { .. })).await;
    let NetEvent::Push { push, .. } = event else {
        unreachable!()
    };
    push
}

/// A node from `seed` that dialled `server`, with its events.
async fn dialler(seed: u8, server: &Network) -> (Network, mpsc::UnboundedReceiver<NetEvent>) {
    let (client, events) = node(seed).await;
    client
        .connect(server.local_addr().unwrap(), server.peer_id())
        .await
        .unwrap();
    (client, serve(events))
}

#[tokio::test]
async fn an_inbound_peer_is_greeted_with_our_status_before_any_other_push() {
    let (server, events) = node(1).await;
    let mut server_events = serve(events);
    let greeting = StatusResponse::new(3, 41);
    server.set_greeting(Some(greeting)).unwrap();
    let (client, mut client_events) = dialler(2, &server).await;
    // The server reports what it greeted the peer with; the dialler was
    // greeted by nobody.
    assert_eq!(
        next_connected(&mut server_events).await,
        (client.peer_id(), true, Some(greeting))
    );
    assert_eq!(
        next_connected(&mut client_events).await,
        (server.peer_id(), false, None)
    );
    // Later pushes follow the greeting on the same stream, in order.
    let later = StatusResponse::new(3, 42);
    server.push(client.peer_id(), Push::Status(later)).unwrap();
    assert_eq!(next_push(&mut client_events).await, Push::Status(greeting));
    assert_eq!(next_push(&mut client_events).await, Push::Status(later));
    let greetings = |net: &Network| {
        net.metrics()
            .greetings_sent
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert_eq!((greetings(&server), greetings(&client)), (1, 0));

    // With the greeting cleared, a new peer hears nothing unasked.
    server.set_greeting(None).unwrap();
    let (other, mut other_events) = dialler(3, &server).await;
    assert_eq!(
        next_connected(&mut server_events).await,
        (other.peer_id(), true, None)
    );
    let pushed = StatusResponse::new(3, 43);
    server.push(other.peer_id(), Push::Status(pushed)).unwrap();
    assert_eq!(next_push(&mut other_events).await, Push::Status(pushed));
    assert_eq!(greetings(&server), 1);
}

#[tokio::test]
async fn a_greeting_that_does_not_encode_is_refused_and_the_old_one_kept() {
    let (server, _events) = node(1).await;
    let kept = StatusResponse::new(1, 10);
    server.set_greeting(Some(kept)).unwrap();
    // A base above the height is not a status.
    let err = server
        .set_greeting(Some(StatusResponse::new(11, 10)))
        .unwrap_err();
    assert!(matches!(err, NetError::InvalidOutgoing(_)), "{err}");
    let (_client, mut client_events) = dialler(2, &server).await;
    assert_eq!(next_push(&mut client_events).await, Push::Status(kept));
}

/// The greeting is 0.5-RTT data: with 200 ms each way, the dialler has it
/// before the server has even seen the handshake complete (which needs the
/// dialler's last flight, half a round trip after the greeting left), so
/// before any status pushed on connection could have been sent. By
/// causality, not by a timed bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_greeting_reaches_the_dialler_before_the_server_completes_the_handshake() {
    use headway_net::testing::DelayRelay;
    use std::time::Instant;
    let (server, mut server_events) = node(1).await;
    let greeting = StatusResponse::new(1, 77);
    server.set_greeting(Some(greeting)).unwrap();
    let relay = DelayRelay::start(server.local_addr().unwrap(), Duration::from_millis(200))
        .await
        .unwrap();
    let (client, mut client_events) = node(2).await;
    let server_connected = tokio::spawn(async move {
        loop {
            match server_events.recv().await.expect("server events") {
                NetEvent::Connected { greeted, .. } => return (Instant::now(), greeted),
                _ => continue,
            }
        }
    });
    let client_greeted = tokio::spawn(async move {
        loop {
            match client_events.recv().await.expect("client events") {
                NetEvent::Push { push, .. } => return (Instant::now(), push),
                _ => continue,
            }
        }
    });
    client.connect(relay.addr, server.peer_id()).await.unwrap();
    let timeout = Duration::from_secs(10);
    let (greeted_at, push) = tokio::time::timeout(timeout, client_greeted)
        .await
        .unwrap()
        .unwrap();
    let (connected_at, greeted) = tokio::time::timeout(timeout, server_connected)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(push, Push::Status(greeting));
    assert_eq!(greeted, Some(greeting));
    assert!(
        greeted_at < connected_at,
        "the greeting arrived {:?} after the server's handshake completed",
        greeted_at - connected_at
    );
    assert_eq!(relay.dropped.load(std::sync::atomic::Ordering::Relaxed), 0);
}

/// A snapshot chunk of 12 entries of 512 KiB.
fn six_mib_chunk() -> SnapshotData {
    SnapshotData {
        snapshot_height: 1,
        prefix: 1,
        entries: (0u8..12)
            .map(|i| SnapshotEntry {
                key: vec![1, i],
                value: vec![i; 512 * 1024],
            })
            .collect(),
        prefix_exhausted: true,
    }
}

/// Serves every `GetSnapshot` with `chunk`.
fn serve_snapshot(mut events: mpsc::Receiver<NetEvent>, chunk: SnapshotData) {
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let NetEvent::Request {
                request: Request::GetSnapshot(_),
                responder,
                ..
            } = event
            {
                responder.respond(Response::SnapshotData(chunk.clone()));
            }
        }
    });
}

/// A requester that opens a stream and never reads its response gets the
/// stream reset once `response_write_timeout` passes, counted in
/// `responses_timed_out`, rather than pinning the response (and the task
/// writing it) until its connection closes: our keep-alives keep such a
/// connection from ever going idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_the_requester_never_reads_is_reset() {
    let (server, events) = node_with(
        1,
        NetConfig {
            response_write_timeout: Duration::from_millis(300),
            ..NetConfig::default()
        },
    )
    .await;
    // 6 MiB: several times what the requester's stream window takes in.
    let chunk = six_mib_chunk();
    serve_snapshot(events, chunk);
    let (client, _client_events) = node(2).await;
    client
        .connect(server.local_addr().unwrap(), server.peer_id())
        .await
        .unwrap();
    let conn = client.raw_connection(server.peer_id()).unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let request = headway_wire::frame::encode_frame(&Request::GetSnapshot(GetSnapshot {
        snapshot_height: 1,
        prefix: 1,
        start_key: vec![],
    }))
    .unwrap();
    send.write_all(&request).await.unwrap();
    send.finish().unwrap();
    // Not reading: the server's write stalls on flow control until its timeout.
    tokio::time::timeout(Duration::from_secs(10), async {
        while server.metrics().responses_timed_out.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the stalled response times out");
    // What reached the requester ends in a reset, not a finished frame.
    let read = recv.read_to_end(16 * 1024 * 1024).await;
    assert!(
        matches!(
            read,
            Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) if code == quinn::VarInt::from_u32(1)
        ),
        "{read:?}"
    );
    // The connection itself stays up for the requester's other streams.
    assert_eq!(server.connected_peers(), vec![client.peer_id()]);
}

/// Transfers a few MiB from a server configured with `payload` to a client
/// configured alike, and returns the server's path statistics towards it.
async fn bulk_transfer_path(payload: u16) -> quinn::PathStats {
    let config = NetConfig {
        max_udp_payload_size: payload,
        ..NetConfig::default()
    };
    let (server, events) = node_with(1, config.clone()).await;
    let chunk = six_mib_chunk();
    serve_snapshot(events, chunk.clone());
    let (client, _client_events) = node_with(2, config).await;
    client
        .connect(server.local_addr().unwrap(), server.peer_id())
        .await
        .unwrap();
    let request = Request::GetSnapshot(GetSnapshot {
        snapshot_height: 1,
        prefix: 1,
        start_key: vec![],
    });
    for _ in 0..4 {
        let response = client.request(server.peer_id(), &request).await.unwrap();
        assert_eq!(response, Response::SnapshotData(chunk.clone()));
    }
    server
        .raw_connection(client.peer_id())
        .expect("the client is connected")
        .stats()
        .path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raised_payload_ceiling_is_discovered_and_full_gso_batches_arrive() {
    // Loopback's MTU is 64 KiB, so discovery climbs to the ceiling. At the
    // largest accepted ceiling a full GSO batch is still one sendable UDP
    // message. Above it (checked with 9000) the kernel refuses whole
    // batches (`EMSGSIZE`, ignored by quinn-udp), quinn takes the losses for
    // a black hole and falls back to 1200-byte datagrams, and this fails.
    let path = bulk_transfer_path(MAX_UDP_PAYLOAD_SIZE).await;
    assert!(
        path.current_mtu > DEFAULT_MAX_UDP_PAYLOAD_SIZE && path.current_mtu <= MAX_UDP_PAYLOAD_SIZE,
        "{path:?}"
    );
    assert!(path.lost_packets * 20 < path.sent_packets, "{path:?}");

    let path = bulk_transfer_path(DEFAULT_MAX_UDP_PAYLOAD_SIZE).await;
    assert!(path.current_mtu <= DEFAULT_MAX_UDP_PAYLOAD_SIZE, "{path:?}");
}

#[tokio::test]
async fn a_payload_ceiling_outside_the_safe_range_is_refused() {
    for payload in [MIN_UDP_PAYLOAD_SIZE - 1, MAX_UDP_PAYLOAD_SIZE + 1, 9000] {
        let config = NetConfig {
            max_udp_payload_size: payload,
            ..NetConfig::default()
        };
        let err = Network::start(NodeKey::from_seed([3; 32]), config, vec![])
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(
                err,
                NetError::InvalidConfig {
                    field: "max_udp_payload_size",
                    ..
                }
            ),
            "{payload}: {err}"
        );
    }
}
