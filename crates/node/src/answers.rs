//! The queue of requests waiting to be answered from the store.
//!
//! Answers are computed on blocking threads (they read the store). Spawning
//! one blocking task per request, as the node used to, let a burst of
//! requests start that many threads, and answered a peer's pipelined
//! requests in no particular order: a syncing peer asking for four ranges
//! got all four late together instead of the first one early. Here:
//!
//! - each peer's requests are answered **one at a time, lowest order
//!   first** (the order the peer opened their streams,
//!   `headway_net::Responder::order`; requests read at the same moment reach
//!   the queue in any order), so its first request is answered first and one
//!   peer never holds more than one thread;
//! - at most `concurrency` answers are computed at once, across peers;
//! - at most [`MAX_QUEUED_PER_PEER`] requests wait per peer and
//!   [`MAX_QUEUED_ANSWERS`] in all: beyond that [`AnswerQueue::submit`]
//!   gives the job back, and the caller answers `BUSY`;
//! - a job whose requester gave up (for requests,
//!   `headway_net::Responder::is_abandoned`: the request timed out at the
//!   requester, or its connection closed) is dropped unrun when its turn
//!   comes, and a full queue first drops those before refusing a new job:
//!   a peer that reconnects, or that asks and cancels, costs no store reads
//!   for answers nobody reads and cannot fill the queue with them.
//!
//! The queue is generic over the job so that its ordering and bounds are
//! tested without a network.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use headway_net::PeerId;
use tokio::sync::Semaphore;

/// Requests waiting for an answer, at most, over all peers.
pub const MAX_QUEUED_ANSWERS: usize = 1024;

/// Requests of one peer waiting for an answer, at most. The transport
/// already bounds a peer's open streams; this bounds what it can queue here.
pub const MAX_QUEUED_PER_PEER: usize = 64;

/// Answers computed at once by default: the machine's cores, at least 2
/// and at most 16.
#[must_use]
pub fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 16))
}

/// The queue's counters, exported by the node in Prometheus text format.
#[derive(Debug, Default)]
pub struct AnswerMetrics {
    /// Jobs run (answers computed).
    pub answered: AtomicU64,
    /// Jobs given back because a queue was full (answered `BUSY`).
    pub refused: AtomicU64,
    /// Jobs dropped unrun because their requester gave up.
    pub abandoned: AtomicU64,
    /// Jobs waiting now.
    pub waiting: AtomicU64,
}

impl AnswerMetrics {
    /// Appends the counters in Prometheus text format.
    pub fn render_prometheus(&self, out: &mut String) {
        let rows = [
            (
                "headway_answers_total",
                "counter",
                "Peer requests answered from the store.",
                &self.answered,
            ),
            (
                "headway_answers_refused_total",
                "counter",
                "Peer requests answered BUSY because the answer queue was full.",
                &self.refused,
            ),
            (
                "headway_answers_abandoned_total",
                "counter",
                "Peer requests dropped unanswered because the requester gave up.",
                &self.abandoned,
            ),
            (
                "headway_answers_waiting",
                "gauge",
                "Peer requests waiting for an answer.",
                &self.waiting,
            ),
        ];
        for (name, kind, help, value) in rows {
            let value = value.load(Ordering::Relaxed);
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        }
    }
}

/// Per-peer FIFO queues of jobs run on blocking threads, with bounded
/// concurrency and bounded length. Cloning gives another handle to the
/// same queue.
pub struct AnswerQueue<J> {
    inner: Arc<Inner<J>>,
}

impl<J> Clone for AnswerQueue<J> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<J> {
    run: Box<dyn Fn(J) + Send + Sync>,
    abandoned: Box<dyn Fn(&J) -> bool + Send + Sync>,
    metrics: Arc<AnswerMetrics>,
    slots: Arc<Semaphore>,
    queues: Mutex<Queues<J>>,
}

struct Queues<J> {
    /// A peer has an entry exactly while its worker task runs: its jobs
    /// by ascending order (equal orders first in, first out).
    by_peer: HashMap<PeerId, VecDeque<(u64, J)>>,
    /// Jobs waiting in all queues (not counting the ones running).
    waiting: usize,
}

impl<J: Send + 'static> AnswerQueue<J> {
    /// A queue that runs each job with `run` on a blocking thread, at most
    /// `concurrency` (at least 1) at once.
    pub fn new(concurrency: usize, run: impl Fn(J) + Send + Sync + 'static) -> Self {
        Self::shedding(concurrency, run, |_| false)
    }

    /// As [`AnswerQueue::new`], dropping unrun every job for which
    /// `abandoned` says its requester gave up (checked when its turn comes,
    /// and over the queues before a full one refuses a job).
    pub fn shedding(
        concurrency: usize,
        run: impl Fn(J) + Send + Sync + 'static,
        abandoned: impl Fn(&J) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                run: Box::new(run),
                abandoned: Box::new(abandoned),
                metrics: Arc::default(),
                slots: Arc::new(Semaphore::new(concurrency.max(1))),
                queues: Mutex::new(Queues {
                    by_peer: HashMap::new(),
                    waiting: 0,
                }),
            }),
        }
    }

    /// Queues `job` among `peer`'s waiting ones by its `order` (lowest runs
    /// first; equal orders in submission order). Must be called inside a
    /// tokio runtime.
    ///
    /// # Errors
    ///
    /// Gives `job` back if the peer already has [`MAX_QUEUED_PER_PEER`]
    /// waiting, or all peers [`MAX_QUEUED_ANSWERS`]: answer it `BUSY`.
    pub fn submit(&self, peer: PeerId, order: u64, job: J) -> Result<(), J> {
        let mut queues = self.inner.queues.lock().unwrap_or_else(|p| p.into_inner());
        let refuse = |job| {
            self.inner.metrics.refused.fetch_add(1, Ordering::Relaxed);
            Err(job)
        };
        if queues.waiting >= MAX_QUEUED_ANSWERS {
            self.drop_abandoned(&mut queues, None);
            if queues.waiting >= MAX_QUEUED_ANSWERS {
                return refuse(job);
            }
        }
        if queues
            .by_peer
            .get(&peer)
            .is_some_and(|queue| queue.len() >= MAX_QUEUED_PER_PEER)
        {
            self.drop_abandoned(&mut queues, Some(peer));
        }
        let start_worker = match queues.by_peer.get_mut(&peer) {
            Some(queue) if queue.len() >= MAX_QUEUED_PER_PEER => return refuse(job),
            Some(queue) => {
                let at = queue.partition_point(|(o, _)| *o <= order);
                queue.insert(at, (order, job));
                false
            }
            None => {
                queues.by_peer.insert(peer, VecDeque::from([(order, job)]));
                true
            }
        };
        queues.waiting += 1;
        self.inner
            .metrics
            .waiting
            .store(queues.waiting as u64, Ordering::Relaxed);
        drop(queues);
        if start_worker {
            tokio::spawn(self.clone().work(peer));
        }
        Ok(())
    }

    /// Drops the waiting jobs of `peer` (of every peer if `None`) whose
    /// requester gave up, counting them.
    fn drop_abandoned(&self, queues: &mut Queues<J>, peer: Option<PeerId>) {
        let abandoned = &self.inner.abandoned;
        let mut dropped = 0;
        for (p, queue) in &mut queues.by_peer {
            if peer.is_none_or(|peer| peer == *p) {
                let before = queue.len();
                queue.retain(|(_, job)| !abandoned(job));
                dropped += before - queue.len();
            }
        }
        queues.waiting -= dropped;
        self.inner
            .metrics
            .abandoned
            .fetch_add(dropped as u64, Ordering::Relaxed);
        self.inner
            .metrics
            .waiting
            .store(queues.waiting as u64, Ordering::Relaxed);
    }

    /// The queue's counters.
    #[must_use]
    pub fn metrics(&self) -> &Arc<AnswerMetrics> {
        &self.inner.metrics
    }

    /// Jobs waiting (not yet running), over all peers.
    #[must_use]
    pub fn waiting(&self) -> usize {
        self.inner
            .queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .waiting
    }

    /// Runs `peer`'s jobs one after the other until its queue is empty,
    /// then removes it (under the lock, so a job submitted meanwhile either
    /// is seen here or starts a new worker). A job leaves its queue only
    /// once it has a slot, so [`AnswerQueue::waiting`] counts every job not
    /// running, and peers with an entry are at most the waiting jobs plus
    /// the running ones.
    async fn work(self, peer: PeerId) {
        // Requests read together (a peer's pipelined streams) are submitted
        // by separate tasks: let them queue before choosing the lowest.
        tokio::task::yield_now().await;
        loop {
            // The semaphore is never closed.
            let Ok(slot) = self.inner.slots.clone().acquire_owned().await else {
                return;
            };
            let job = {
                let mut queues = self.inner.queues.lock().unwrap_or_else(|p| p.into_inner());
                match queues.by_peer.get_mut(&peer).and_then(VecDeque::pop_front) {
                    Some((_, job)) => {
                        queues.waiting -= 1;
                        self.inner
                            .metrics
                            .waiting
                            .store(queues.waiting as u64, Ordering::Relaxed);
                        job
                    }
                    None => {
                        queues.by_peer.remove(&peer);
                        return;
                    }
                }
            };
            if (self.inner.abandoned)(&job) {
                self.inner.metrics.abandoned.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let inner = self.inner.clone();
            // A job that panics loses its answer (the requester times out);
            // the peer's later jobs still run.
            let _ = tokio::task::spawn_blocking(move || {
                let _slot = slot;
                (inner.run)(job);
                inner.metrics.answered.fetch_add(1, Ordering::Relaxed);
            })
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn peer(n: u8) -> PeerId {
        PeerId([n; 32])
    }

    /// Each peer's jobs run in submission order, one at a time; at most
    /// `concurrency` run at once overall; full queues give the job back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_run_in_order_per_peer_within_the_bounds() {
        let (done_tx, done_rx) = mpsc::channel::<(u8, usize)>();
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let queue = AnswerQueue::new(2, {
            let (running, most) = (running.clone(), most.clone());
            move |(p, i): (u8, usize)| {
                use std::sync::atomic::Ordering::SeqCst;
                let now = running.fetch_add(1, SeqCst) + 1;
                most.fetch_max(now, SeqCst);
                std::thread::sleep(Duration::from_millis(1));
                running.fetch_sub(1, SeqCst);
                done_tx.send((p, i)).unwrap();
            }
        });
        for i in 0..20 {
            for p in 0..4u8 {
                queue.submit(peer(p), i as u64, (p, i)).unwrap();
            }
        }
        let mut next = [0usize; 4];
        for _ in 0..80 {
            let (p, i) = done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(i, next[p as usize], "peer {p}'s jobs out of order");
            next[p as usize] += 1;
        }
        assert_eq!(next, [20; 4]);
        let most = most.load(std::sync::atomic::Ordering::SeqCst);
        assert!((1..=2).contains(&most), "{most} jobs ran at once");
        // Idle peers leave no queue behind.
        for _ in 0..100 {
            if queue.inner.queues.lock().unwrap().by_peer.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(queue.inner.queues.lock().unwrap().by_peer.is_empty());
        assert_eq!(queue.waiting(), 0);
        let metrics = queue.metrics();
        assert_eq!(
            metrics.answered.load(std::sync::atomic::Ordering::SeqCst),
            80
        );
        assert_eq!(metrics.refused.load(std::sync::atomic::Ordering::SeqCst), 0);
        let mut text = String::new();
        metrics.render_prometheus(&mut text);
        assert!(text.contains("headway_answers_total 80\n"), "{text}");
        assert!(text.contains("headway_answers_waiting 0\n"), "{text}");
    }

    /// Jobs waiting together run lowest order first, whatever order they
    /// were submitted in.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_jobs_run_lowest_order_first() {
        let (done_tx, done_rx) = mpsc::channel::<u64>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let queue = AnswerQueue::new(1, move |order: u64| {
            if order == 100 {
                // Holds the only slot until the others are queued.
                let _ = release_rx
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(10));
            }
            done_tx.send(order).unwrap();
        });
        queue.submit(peer(1), 100, 100).unwrap();
        assert_eq!(done_rx.recv_timeout(Duration::from_millis(50)).ok(), None);
        for order in [7, 3, 9, 3, 1, 8] {
            queue.submit(peer(1), order, order).unwrap();
        }
        release_tx.send(()).unwrap();
        let got: Vec<u64> = (0..7)
            .map(|_| done_rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        assert_eq!(got, [100, 1, 3, 3, 7, 8, 9]);
    }

    /// Jobs whose requester gave up are dropped unrun when their turn
    /// comes, and a full queue drops them before refusing a new job.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abandoned_jobs_are_dropped_unrun_and_make_room() {
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
        type Job = (u64, Arc<AtomicBool>);
        let (done_tx, done_rx) = mpsc::channel::<u64>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let queue = AnswerQueue::shedding(
            1,
            move |(order, _): Job| {
                if order == 0 {
                    // Holds the only slot while the test fills the queue.
                    let _ = release_rx
                        .lock()
                        .unwrap()
                        .recv_timeout(Duration::from_secs(10));
                }
                done_tx.send(order).unwrap();
            },
            |(_, gone): &Job| gone.load(SeqCst),
        );
        let live = || Arc::new(AtomicBool::new(false));
        queue.submit(peer(1), 0, (0, live())).unwrap();
        // Let job 0 take the slot, so the queue below holds waiting jobs only.
        for _ in 0..200 {
            if queue.waiting() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(queue.waiting(), 0);
        // Fill peer 1's queue: every third job's requester gives up.
        let flags: Vec<Arc<AtomicBool>> = (0..MAX_QUEUED_PER_PEER).map(|_| live()).collect();
        for (i, flag) in flags.iter().enumerate() {
            queue
                .submit(peer(1), i as u64 + 1, (i as u64 + 1, flag.clone()))
                .unwrap();
        }
        assert_eq!(queue.waiting(), MAX_QUEUED_PER_PEER);
        let extra = (MAX_QUEUED_PER_PEER as u64 + 1, live());
        let back = queue.submit(peer(1), extra.0, extra).unwrap_err();
        // Now a third of them are abandoned: the next submission makes room.
        let mut gone = 0;
        for flag in flags.iter().step_by(3) {
            flag.store(true, SeqCst);
            gone += 1;
        }
        queue.submit(peer(1), back.0, back).unwrap();
        assert_eq!(queue.waiting(), MAX_QUEUED_PER_PEER - gone + 1);
        // A job abandoned while waiting is dropped when its turn comes.
        flags[1].store(true, SeqCst);
        release_tx.send(()).unwrap();
        let expected: Vec<u64> = (0..=MAX_QUEUED_PER_PEER as u64 + 1)
            .filter(|&o| {
                o == 0 || o == MAX_QUEUED_PER_PEER as u64 + 1 || {
                    let i = (o - 1) as usize;
                    !i.is_multiple_of(3) && i != 1
                }
            })
            .collect();
        let got: Vec<u64> = (0..expected.len())
            .map(|_| done_rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        assert_eq!(got, expected);
        assert_eq!(done_rx.recv_timeout(Duration::from_millis(100)).ok(), None);
        let metrics = queue.metrics();
        assert_eq!(metrics.abandoned.load(SeqCst), gone as u64 + 1);
        assert_eq!(metrics.answered.load(SeqCst), expected.len() as u64);
        assert_eq!(metrics.refused.load(SeqCst), 1);
        let mut text = String::new();
        metrics.render_prometheus(&mut text);
        assert!(
            text.contains(&format!("headway_answers_abandoned_total {}\n", gone + 1)),
            "{text}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn full_queues_give_the_job_back() {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let queue = AnswerQueue::new(1, move |_: usize| {
            let _ = release_rx
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(10));
        });
        // One peer: its first job may be running, the rest wait, up to the bound.
        let mut accepted = 0;
        let mut refused = 0;
        for i in 0..MAX_QUEUED_PER_PEER + 10 {
            match queue.submit(peer(1), 0, i) {
                Ok(()) => accepted += 1,
                Err(job) => {
                    assert_eq!(job, i);
                    refused += 1;
                }
            }
        }
        assert!((MAX_QUEUED_PER_PEER..=MAX_QUEUED_PER_PEER + 1).contains(&accepted));
        assert_eq!(accepted + refused, MAX_QUEUED_PER_PEER + 10);
        assert!(queue.waiting() <= MAX_QUEUED_PER_PEER);
        // All peers together: refused at the global bound.
        let mut total = queue.waiting();
        let mut p = 2u8;
        while total < MAX_QUEUED_ANSWERS {
            for i in 0..MAX_QUEUED_PER_PEER / 2 {
                if queue.submit(peer(p), 0, i).is_ok() {
                    total = queue.waiting();
                }
            }
            p += 1;
        }
        assert_eq!(queue.waiting(), MAX_QUEUED_ANSWERS);
        assert_eq!(queue.submit(peer(250), 0, 0), Err(0));
        let refused_total = queue
            .metrics()
            .refused
            .load(std::sync::atomic::Ordering::SeqCst);
        assert!(refused_total > refused as u64);
        assert_eq!(
            queue
                .metrics()
                .waiting
                .load(std::sync::atomic::Ordering::SeqCst),
            MAX_QUEUED_ANSWERS as u64
        );
        for _ in 0..MAX_QUEUED_ANSWERS + MAX_QUEUED_PER_PEER + 10 {
            let _ = release_tx.send(());
        }
    }
}
