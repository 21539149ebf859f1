//! Test support (feature `test-util`): an in-process UDP delay shim, for
//! tests and benchmarks that need round trips longer than loopback's where
//! `netem` is not available. A relay on 127.0.0.1 holds every datagram for a
//! fixed one-way delay in each direction, then forwards it. Both ends
//! still speak real QUIC: the client dials the relay's address with the
//! serving peer's real peer id, and the serving peer sees the relay's second
//! socket as the client.
//!
//! ```text
//! client ──▶ [front socket] ─ hold d ─▶ [back socket] ──▶ server
//! client ◀── [front socket] ◀─ hold d ─ [back socket] ◀── server
//! ```
//!
//! The delay is constant, so a FIFO per direction keeps datagram order.
//! Each direction's queue is bounded ([`MAX_QUEUED_DATAGRAMS`]); a datagram
//! arriving at a full queue is dropped and counted, as a router would.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{net::UdpSocket, sync::mpsc, task::JoinHandle, time::Instant};

/// Datagrams held per direction at most.
pub const MAX_QUEUED_DATAGRAMS: usize = 65_536;
/// Largest datagram relayed.
const MAX_DATAGRAM: usize = 65_535;

/// One relay in front of one serving peer, for one client.
pub struct DelayRelay {
    /// The address the client dials instead of the server's.
    pub addr: SocketAddr,
    /// Datagrams dropped at a full queue.
    pub dropped: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

impl DelayRelay {
    /// Starts a relay towards `server`, holding each datagram `one_way` in each
    /// direction (so the round trip gains `2 × one_way`). Must run inside the
    /// runtime that should drive the relay.
    pub async fn start(server: SocketAddr, one_way: Duration) -> std::io::Result<DelayRelay> {
        let front = Arc::new(bind()?);
        let back = Arc::new(bind()?);
        back.connect(server).await?;
        let addr = front.local_addr()?;
        let dropped = Arc::new(AtomicU64::new(0));
        let (client_tx, client_rx) = tokio::sync::watch::channel(None::<SocketAddr>);
        let (up_tx, up_rx) = mpsc::channel(MAX_QUEUED_DATAGRAMS);
        let (down_tx, down_rx) = mpsc::channel(MAX_QUEUED_DATAGRAMS);
        let tasks = vec![
            // Client → relay: remember the client, queue for the server.
            tokio::spawn({
                let (front, dropped) = (front.clone(), dropped.clone());
                async move {
                    let mut buf = vec![0u8; MAX_DATAGRAM];
                    while let Ok((n, from)) = front.recv_from(&mut buf).await {
                        client_tx.send_if_modified(|c| {
                            let new = *c != Some(from);
                            *c = Some(from);
                            new
                        });
                        hold(&up_tx, &buf[..n], one_way, &dropped);
                    }
                }
            }),
            // Server → relay: queue for the client.
            tokio::spawn({
                let (back, dropped) = (back.clone(), dropped.clone());
                async move {
                    let mut buf = vec![0u8; MAX_DATAGRAM];
                    while let Ok(n) = back.recv(&mut buf).await {
                        hold(&down_tx, &buf[..n], one_way, &dropped);
                    }
                }
            }),
            tokio::spawn(release(up_rx, move |bytes| {
                let back = back.clone();
                async move {
                    let _ = back.send(&bytes).await;
                }
            })),
            tokio::spawn(release(down_rx, move |bytes| {
                let (front, client) = (front.clone(), *client_rx.borrow());
                async move {
                    if let Some(client) = client {
                        let _ = front.send_to(&bytes, client).await;
                    }
                }
            })),
        ];
        Ok(DelayRelay {
            addr,
            dropped,
            tasks,
        })
    }
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Kernel buffer requested for each relay socket: as the transport's, so
/// the relay never drops what the endpoints would not.
const SOCKET_BUFFER: usize = crate::DEFAULT_SOCKET_BUFFER_BYTES;

/// A loopback UDP socket with large kernel buffers.
fn bind() -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_recv_buffer_size(SOCKET_BUFFER)?;
    socket.set_send_buffer_size(SOCKET_BUFFER)?;
    socket.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

type Held = (Instant, Vec<u8>);

fn hold(queue: &mpsc::Sender<Held>, bytes: &[u8], delay: Duration, dropped: &AtomicU64) {
    if queue
        .try_send((Instant::now() + delay, bytes.to_vec()))
        .is_err()
    {
        dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends each held datagram once its time has come, in arrival order.
async fn release<F, Fut>(mut queue: mpsc::Receiver<Held>, send: F)
where
    F: Fn(Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    while let Some((due, bytes)) = queue.recv().await {
        // Only wait when the datagram is not yet due: a timer wait costs a
        // timer-driver turn (millisecond granularity), so waiting on every
        // datagram would cap the relay at about one datagram per turn.
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        send(bytes).await;
    }
}
