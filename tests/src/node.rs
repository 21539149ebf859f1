//! The node under test.
//!
//! [`TestNode::start`] prepares a home directory the way `headway init`
//! does (node key, `config.toml`, genesis file), sets the `[sync]` knobs the
//! suite needs, and runs the node:
//!
//! - **in-process** (default): a dedicated thread with its own tokio runtime
//!   runs [`headway_node::node::run`]; a oneshot channel is its `shutdown`
//!   future. Its runtime threads log through a thread-local tracing
//!   dispatcher into the node's own [`LogBuffer`].
//! - **external** when [`NODE_BIN_ENV`] (`HEADWAY_NODE_BIN`) names a binary:
//!   `BIN init --home DIR --listen ADDR --metrics ADDR --genesis FILE
//!   [--peer ID@ADDR]...` (its stdout's last line is the peer id), then
//!   `BIN run --home DIR` with stderr captured to `DIR/../node.log` and
//!   `RUST_LOG=info` unless set; SIGTERM stops it.
//!
//! Either way the node listens on free loopback ports, and is ready once its
//! metrics endpoint answers. Dropping a [`TestNode`] stops it and deletes its
//! files.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use headway_headersync::bootstrap::Checkpoint;
use headway_net::{NodeKey, PeerId};
use headway_wire::SignedHeader;
use tokio::sync::oneshot;

use crate::{
    chain::test_chain,
    logs::{LogBuffer, tail},
    metrics::{Metrics, scrape},
    wait,
};

/// Environment variable naming an external node binary to test instead of
/// the in-process node.
pub const NODE_BIN_ENV: &str = "HEADWAY_NODE_BIN";
/// How long a node has to start (its metrics endpoint answering).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node has to stop after SIGTERM or the shutdown signal.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts at starting a node when its freshly picked ports were taken meanwhile.
pub const START_ATTEMPTS: u32 = 3;
/// Log lines shown when a test fails.
pub const LOG_TAIL_LINES: usize = 40;

/// Settings of the node under test (the `[sync]` section of `config.toml`
/// and its bootstrap peers).
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// `[sync] request_timeout_ms`: when an unanswered `GetHeaders` times out.
    pub request_timeout_ms: u64,
    /// `[sync] ban_seconds`: how long a peer that sent invalid data stays banned.
    pub ban_seconds: u64,
    /// `[sync] get_headers_per_second`, or the node's default.
    pub get_headers_per_second: Option<u64>,
    /// Bootstrap peers (`--peer ID@ADDR` at init).
    pub bootstrap: Vec<(PeerId, SocketAddr)>,
    /// The genesis file's content (the test chain's block 1 by default).
    pub genesis: SignedHeader,
    /// `[sync] header_sync = "v2"`: parallel header sync (checkpoint
    /// bootstrap, then MMR-proven ranges) instead of the default v1.
    pub header_sync_v2: bool,
    /// With `header_sync_v2`: `header_sync = "v2-headers-only"`, ranges of
    /// headers without commits.
    pub headers_only: bool,
    /// `[sync.checkpoint]`: the trusted height and its header hash or
    /// validator set hash (v2 only).
    pub checkpoint: Option<Checkpoint>,
    /// `[sync] progress_log_ms`, or the node's default.
    pub progress_log_ms: Option<u64>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            request_timeout_ms: 1000,
            ban_seconds: 60,
            get_headers_per_second: None,
            bootstrap: Vec::new(),
            genesis: test_chain().genesis().clone(),
            header_sync_v2: false,
            headers_only: false,
            checkpoint: None,
            progress_log_ms: None,
        }
    }
}

/// A running node under test.
#[derive(Debug)]
pub struct TestNode {
    peer_id: PeerId,
    addr: SocketAddr,
    metrics_addr: SocketAddr,
    root: PathBuf,
    runner: Runner,
}

#[derive(Debug)]
enum Runner {
    InProcess {
        shutdown: Option<oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<Result<(), String>>>,
        logs: LogBuffer,
    },
    External {
        child: Option<Child>,
        log_path: PathBuf,
    },
}

impl TestNode {
    /// Prepares a home directory and starts the node (in-process, or the
    /// binary named by `HEADWAY_NODE_BIN`); returns once it is ready.
    ///
    /// # Panics
    ///
    /// When the node cannot be set up or does not become ready in time.
    pub async fn start(options: NodeOptions) -> TestNode {
        let mut attempt = 1;
        loop {
            let mut node = TestNode::launch_fresh(&options);
            match node.try_wait_ready().await {
                Ok(()) => return node,
                // Free ports are found by binding and releasing them: another
                // test may take one in between. Try again on new ports.
                Err(e) if attempt < START_ATTEMPTS && e.contains("listen") => attempt += 1,
                Err(e) => node.fail(&e),
            }
        }
    }

    fn launch_fresh(options: &NodeOptions) -> TestNode {
        let root = unique_dir();
        let home = root.join("home");
        let genesis_path = root.join("genesis.pb");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
        let metrics_addr = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
        let setup = || -> Result<PeerId, String> {
            std::fs::create_dir_all(&root)
                .map_err(|e| format!("creating {}: {e}", root.display()))?;
            headway_node::genesis::write(&genesis_path, &options.genesis)
                .map_err(|e| format!("{e:#}"))?;
            let peers: Vec<String> = options
                .bootstrap
                .iter()
                .map(|(id, a)| format!("{id}@{a}"))
                .collect();
            let peer_id = match node_bin() {
                Some(bin) => init_external(&bin, &home, addr, metrics_addr, &genesis_path, &peers)?,
                None => init_in_process(&home, addr, metrics_addr, &genesis_path, &peers)?,
            };
            let mut sync = vec![
                ("request_timeout_ms", options.request_timeout_ms.to_string()),
                ("ban_seconds", options.ban_seconds.to_string()),
            ];
            if let Some(rate) = options.get_headers_per_second {
                sync.push(("get_headers_per_second", rate.to_string()));
            }
            if let Some(ms) = options.progress_log_ms {
                sync.push(("progress_log_ms", ms.to_string()));
            }
            if options.header_sync_v2 {
                let mode = if options.headers_only {
                    "\"v2-headers-only\""
                } else {
                    "\"v2\""
                };
                sync.push(("header_sync", mode.into()));
            }
            let config_path = home.join("config.toml");
            patch_sync_section(&config_path, &sync)?;
            if let Some(checkpoint) = &options.checkpoint {
                append_checkpoint(&config_path, checkpoint)?;
            }
            Ok(peer_id)
        };
        let peer_id = match setup() {
            Ok(id) => id,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&root);
                panic!("setting up the node under test failed: {e}");
            }
        };
        let runner = launch(&root);
        TestNode {
            peer_id,
            addr,
            metrics_addr,
            root,
            runner,
        }
    }

    /// The node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The node's QUIC address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node's metrics address.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// True when the node under test is an external binary.
    pub fn is_external(&self) -> bool {
        matches!(self.runner, Runner::External { .. })
    }

    /// Everything the node logged so far.
    pub fn logs(&self) -> String {
        match &self.runner {
            Runner::InProcess { logs, .. } => logs.text(),
            Runner::External { log_path, .. } => std::fs::read(log_path)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default(),
        }
    }

    /// One scrape of the node's metrics.
    ///
    /// # Panics
    ///
    /// When the endpoint does not answer.
    pub async fn metrics(&self) -> Metrics {
        match scrape(self.metrics_addr).await {
            Ok(m) => m,
            Err(e) => self.fail(&format!("cannot scrape the node's metrics: {e}")),
        }
    }

    /// Waits until metric `name` satisfies `accept`; returns its value.
    ///
    /// # Panics
    ///
    /// After `timeout`, with the metrics and the log tail.
    pub async fn wait_metric(
        &self,
        name: &str,
        accept: impl Fn(f64) -> bool,
        timeout: Duration,
    ) -> f64 {
        let addr = self.metrics_addr;
        let result = wait::until_value(
            &format!("metric {name}"),
            timeout,
            || async move { scrape(addr).await.ok().and_then(|m| m.get(name)) },
            |v| v.is_some_and(&accept),
        )
        .await;
        match result {
            Ok(v) => v.unwrap_or_default(),
            Err(e) => self.fail(&e),
        }
    }

    /// Waits until the node's header height (`headway_header_height`) is at least `height`.
    pub async fn wait_header_height(&self, height: u64, timeout: Duration) {
        self.wait_metric("headway_header_height", |v| v >= height as f64, timeout)
            .await;
    }

    /// The node's header height as its metrics report it.
    pub async fn header_height(&self) -> u64 {
        self.metrics().await.value("headway_header_height") as u64
    }

    /// Fails the test with `message`, the node's metrics and its log tail.
    ///
    /// # Panics
    ///
    /// Always: that is the point.
    pub fn fail(&self, message: &str) -> ! {
        let logs = self.logs();
        panic!(
            "{message}\n--- node {} ({}), last {LOG_TAIL_LINES} log lines ---\n{}",
            self.peer_id.short(),
            if self.is_external() {
                "external"
            } else {
                "in-process"
            },
            tail(&logs, LOG_TAIL_LINES)
        );
    }

    /// Stops the node and starts it again on the same home directory and
    /// ports (its database must survive).
    pub async fn restart(&mut self) {
        let stopped = self.stop_runner().await;
        if let Err(e) = stopped {
            self.fail(&format!("the node did not stop cleanly: {e}"));
        }
        self.runner = launch(&self.root);
        self.wait_ready().await;
    }

    /// Stops the node, checks it stopped cleanly, and removes its files.
    ///
    /// # Panics
    ///
    /// When the node failed or did not stop in time.
    pub async fn stop(mut self) {
        if let Err(e) = self.stop_runner().await {
            self.fail(&format!("the node did not stop cleanly: {e}"));
        }
    }

    async fn wait_ready(&mut self) {
        if let Err(e) = self.try_wait_ready().await {
            self.fail(&e);
        }
    }

    async fn try_wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(exit) = self.exited() {
                let logs = self.logs();
                let hint = logs
                    .lines()
                    .rev()
                    .find(|l| l.contains("listen"))
                    .unwrap_or_default();
                return Err(format!("the node exited during start-up: {exit} {hint}"));
            }
            if scrape(self.metrics_addr).await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the node was not ready (metrics on {}) within {START_TIMEOUT:?}",
                    self.metrics_addr
                ));
            }
            tokio::time::sleep(wait::POLL_INTERVAL).await;
        }
    }

    /// `Some(description)` when the node has already stopped.
    fn exited(&mut self) -> Option<String> {
        match &mut self.runner {
            Runner::InProcess { thread, .. } => {
                if thread
                    .as_ref()
                    .is_some_and(std::thread::JoinHandle::is_finished)
                {
                    let result = thread.take().map(std::thread::JoinHandle::join);
                    return Some(match result {
                        Some(Ok(Ok(()))) => "returned Ok before being asked to stop".into(),
                        Some(Ok(Err(e))) => e,
                        Some(Err(_)) => "panicked".into(),
                        None => "already joined".into(),
                    });
                }
                None
            }
            Runner::External { child, .. } => match child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(format!("exited with {status}")),
                _ => None,
            },
        }
    }

    async fn stop_runner(&mut self) -> Result<(), String> {
        match &mut self.runner {
            Runner::InProcess {
                shutdown, thread, ..
            } => {
                if let Some(tx) = shutdown.take() {
                    let _ = tx.send(());
                }
                let Some(handle) = thread.take() else {
                    return Ok(());
                };
                let joined = tokio::task::spawn_blocking(move || handle.join());
                match tokio::time::timeout(STOP_TIMEOUT, joined).await {
                    Ok(Ok(Ok(result))) => result,
                    Ok(Ok(Err(_))) => Err("the node thread panicked".into()),
                    Ok(Err(e)) => Err(format!("joining the node thread: {e}")),
                    Err(_) => Err(format!("the node did not stop within {STOP_TIMEOUT:?}")),
                }
            }
            Runner::External { child, .. } => {
                let Some(mut child) = child.take() else {
                    return Ok(());
                };
                tokio::task::spawn_blocking(move || terminate(&mut child))
                    .await
                    .map_err(|e| format!("joining the stopper: {e}"))?
            }
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        match &mut self.runner {
            Runner::InProcess {
                shutdown, thread, ..
            } => {
                if let Some(tx) = shutdown.take() {
                    let _ = tx.send(());
                }
                if let Some(handle) = thread.take() {
                    let _ = handle.join();
                }
            }
            Runner::External { child, .. } => {
                if let Some(mut child) = child.take() {
                    let _ = terminate(&mut child);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The external node binary, if `HEADWAY_NODE_BIN` is set.
pub fn node_bin() -> Option<PathBuf> {
    std::env::var_os(NODE_BIN_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// A free UDP port on loopback (bound, then released).
///
/// # Panics
///
/// When no port can be bound.
pub fn free_udp_port() -> u16 {
    #[allow(
        clippy::expect_used,
        reason = "no free port on loopback: nothing can run"
    )]
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("binding a UDP port");
    #[allow(clippy::expect_used, reason = "a bound socket has an address")]
    socket.local_addr().expect("bound address").port()
}

/// A free TCP port on loopback (bound, then released).
///
/// # Panics
///
/// When no port can be bound.
pub fn free_tcp_port() -> u16 {
    #[allow(
        clippy::expect_used,
        reason = "no free port on loopback: nothing can run"
    )]
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a TCP port");
    #[allow(clippy::expect_used, reason = "a bound socket has an address")]
    listener.local_addr().expect("bound address").port()
}

/// A new directory path under the system temp dir, unique in this process and across processes.
fn unique_dir() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!(
        "headway-conformance-{}-{n}-{nanos}",
        std::process::id()
    ))
}

fn init_in_process(
    home: &Path,
    listen: SocketAddr,
    metrics: SocketAddr,
    genesis: &Path,
    peers: &[String],
) -> Result<PeerId, String> {
    use headway_node::config::{HeaderSyncMode, template};
    std::fs::create_dir_all(home).map_err(|e| format!("creating {}: {e}", home.display()))?;
    let key = NodeKey::generate();
    headway_node::node::write_key(&home.join("node_key"), &key).map_err(|e| format!("{e:#}"))?;
    let config = template(listen, Some(metrics), peers, None, HeaderSyncMode::V1);
    std::fs::write(home.join("config.toml"), config).map_err(|e| format!("writing config: {e}"))?;
    std::fs::copy(genesis, home.join("genesis.pb")).map_err(|e| format!("copying genesis: {e}"))?;
    Ok(key.peer_id())
}

fn init_external(
    bin: &Path,
    home: &Path,
    listen: SocketAddr,
    metrics: SocketAddr,
    genesis: &Path,
    peers: &[String],
) -> Result<PeerId, String> {
    let mut command = Command::new(bin);
    command
        .arg("init")
        .arg("--home")
        .arg(home)
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--metrics")
        .arg(metrics.to_string())
        .arg("--genesis")
        .arg(genesis);
    for p in peers {
        command.arg("--peer").arg(p);
    }
    let out = command
        .output()
        .map_err(|e| format!("running {} init: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} init failed ({}): {}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .rev()
        .find_map(|l| l.trim().parse::<PeerId>().ok())
        .ok_or_else(|| format!("{} init printed no peer id: {stdout:?}", bin.display()))
}

/// Sets `key = value` lines in the `[sync]` section of a TOML file, replacing
/// existing ones, adding missing ones (and the section if absent).
fn patch_sync_section(path: &Path, settings: &[(&str, String)]) -> Result<(), String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let section = lines.iter().position(|l| l.trim() == "[sync]");
    let start = match section {
        Some(i) => i,
        None => {
            lines.push(String::new());
            lines.push("[sync]".into());
            lines.len() - 1
        }
    };
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.trim_start().starts_with('['))
        .map_or(lines.len(), |i| start + 1 + i);
    let mut missing = Vec::new();
    for (key, value) in settings {
        let found = lines[start + 1..end]
            .iter()
            .position(|l| l.split_once('=').is_some_and(|(k, _)| k.trim() == *key));
        match found {
            Some(i) => lines[start + 1 + i] = format!("{key} = {value}"),
            None => missing.push(format!("{key} = {value}")),
        }
    }
    for (i, line) in missing.into_iter().enumerate() {
        lines.insert(start + 1 + i, line);
    }
    std::fs::write(path, lines.join("\n") + "\n")
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Appends a `[sync.checkpoint]` table (hashes as hex) to a TOML file.
fn append_checkpoint(path: &Path, checkpoint: &Checkpoint) -> Result<(), String> {
    let table = match checkpoint {
        Checkpoint::HeaderHash { height, hash } => {
            format!("\n[sync.checkpoint]\nheight = {height}\nheader_hash = \"{hash}\"\n")
        }
        Checkpoint::ValidatorSet {
            height,
            validators_hash,
        } => format!(
            "\n[sync.checkpoint]\nheight = {height}\nvalidators_hash = \"{validators_hash}\"\n"
        ),
    };
    let mut text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    text.push_str(&table);
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn launch(root: &Path) -> Runner {
    let home = root.join("home");
    match node_bin() {
        Some(bin) => launch_external(&bin, &home, &root.join("node.log")),
        None => launch_in_process(home),
    }
}

fn launch_in_process(home: PathBuf) -> Runner {
    let logs = LogBuffer::new();
    let (tx, rx) = oneshot::channel::<()>();
    let dispatch = logs.dispatch();
    let thread = std::thread::Builder::new()
        .name("node-under-test".into())
        .spawn(move || {
            let _guard = tracing::dispatcher::set_default(&dispatch);
            let worker_dispatch = dispatch.clone();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .thread_name("node-under-test-rt")
                .on_thread_start(move || {
                    // Each runtime thread logs into this node's buffer for its
                    // whole life: the guard is deliberately never dropped.
                    std::mem::forget(tracing::dispatcher::set_default(&worker_dispatch));
                })
                .build()
                .map_err(|e| format!("building the node's runtime: {e}"))?;
            let shutdown = async move {
                let _ = rx.await;
                "conformance test shutdown"
            };
            let result = runtime.block_on(headway_node::node::run(
                &home,
                headway_node::node::Overrides::default(),
                shutdown,
            ));
            runtime.shutdown_timeout(Duration::from_secs(5));
            result.map_err(|e| format!("{e:#}"))
        });
    match thread {
        Ok(handle) => Runner::InProcess {
            shutdown: Some(tx),
            thread: Some(handle),
            logs,
        },
        Err(e) => panic!("spawning the node thread: {e}"),
    }
}

fn launch_external(bin: &Path, home: &Path, log_path: &Path) -> Runner {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", log_path.display()));
    let mut command = Command::new(bin);
    command
        .arg("run")
        .arg("--home")
        .arg(home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "info");
    }
    match command.spawn() {
        Ok(child) => Runner::External {
            child: Some(child),
            log_path: log_path.to_path_buf(),
        },
        Err(e) => panic!("starting {} run: {e}", bin.display()),
    }
}

/// SIGTERM, then SIGKILL if the process has not exited within [`STOP_TIMEOUT`].
fn terminate(child: &mut Child) -> Result<(), String> {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + STOP_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("the node exited with {status} after SIGTERM")),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the node did not exit within {STOP_TIMEOUT:?} of SIGTERM"
                ));
            }
            Err(e) => return Err(format!("waiting for the node: {e}")),
        }
    }
}
