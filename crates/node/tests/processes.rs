//! The `headway` binary as real processes on loopback (issue 7): `init`
//! writes a key and a commented config; a producer and followers (v1 and v2
//! header sync) connect, exchange status and serve the same headers; SIGTERM
//! stops them cleanly; and every misconfiguration ends the process with a
//! non-zero status and a message on stderr that says what is wrong.
//!
//! Ports are found by binding `127.0.0.1:0` and releasing; each test uses
//! its own temporary directory, removed when the test ends.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is the assertion"
)]

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use headway_net::{NetConfig, NetEvent, Network, NodeKey, PeerId};
use headway_wire::{
    ErrorCode, GetHeaders, HeadersResponse, Push, Request, Response, SignedHeader,
    limits::MAX_HEADERS_PER_BATCH,
};

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_headway");
/// How long a process may take to fail on a misconfiguration, or to stop.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the followers may take to sync.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Blocks the producer builds at start.
const PRODUCER_BLOCKS: u64 = 300;
/// Devnet flags of the test chain: small sets, rotations, a full replacement.
const DEVNET: [&str; 6] = [
    "--validators",
    "4",
    "--rotation-interval",
    "40",
    "--replace-all-at",
    "150",
];

// ----------------------------------------------------------------- helpers

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "headway-node-processes-{}-{n}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn free_udp() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn free_tcp() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn headway(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `headway genesis` of the test devnet into `dir/genesis.pb`.
fn write_genesis(dir: &Path) -> PathBuf {
    let out = dir.join("genesis.pb");
    let mut args = vec!["genesis", "--out", out.to_str().unwrap()];
    args.extend(DEVNET);
    let o = headway(&args);
    assert!(o.status.success(), "genesis: {}", text(&o.stderr));
    out
}

/// A node home: `headway init` with loopback addresses and `extra` flags;
/// returns the peer id it printed.
struct Home {
    dir: PathBuf,
    listen: SocketAddr,
    metrics: SocketAddr,
    peer_id: PeerId,
}

impl Home {
    fn init(dir: PathBuf, extra: &[&str]) -> Home {
        let (listen, metrics) = (free_udp(), free_tcp());
        let (l, m) = (listen.to_string(), metrics.to_string());
        let mut args = vec![
            "init",
            "--home",
            dir.to_str().unwrap(),
            "--listen",
            &l,
            "--metrics",
            &m,
        ];
        args.extend(extra);
        let o = headway(&args);
        assert!(
            o.status.success(),
            "init failed: {}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        let stdout = text(&o.stdout);
        let peer_id = stdout
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("init printed no peer id: {stdout:?}"));
        Home {
            dir,
            listen,
            metrics,
            peer_id,
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let text = fs::read_to_string(self.config()).unwrap();
        fs::write(self.config(), edit(text)).unwrap();
    }

    fn address(&self) -> String {
        format!("{}@{}", self.peer_id, self.listen)
    }
}

/// A running `headway run`, stderr in a file; killed on drop if still running.
struct Running {
    child: Option<Child>,
    log: PathBuf,
}

impl Running {
    fn start(home: &Home, extra: &[&str]) -> Running {
        let log = home.dir.with_extension("log");
        let file = fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .arg("run")
            .arg("--home")
            .arg(&home.dir)
            .args(extra)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Running {
            child: Some(child),
            log,
        }
    }

    fn stderr(&self) -> String {
        fs::read(&self.log).map(|b| text(&b)).unwrap_or_default()
    }

    /// Waits for the process to exit by itself.
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the process did not exit within {timeout:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// SIGTERM, then waits for the exit.
    fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.as_ref().unwrap().id();
        let kill = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(kill.success(), "kill -TERM {pid}");
        self.wait_exit(EXIT_TIMEOUT)
    }

    fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `headway run --home` on a misconfigured home and returns its stderr
/// after checking it failed with a non-zero status.
fn run_fails(home: &Home, extra: &[&str]) -> String {
    let mut run = Running::start(home, extra);
    let status = run.wait_exit(EXIT_TIMEOUT);
    let stderr = run.stderr();
    assert!(
        !status.success(),
        "the node must refuse to run ({status}); stderr:\n{stderr}"
    );
    stderr
}

fn assert_mentions(stderr: &str, fragments: &[&str]) {
    for f in fragments {
        assert!(
            stderr.contains(f),
            "stderr should mention {f:?}; it is:\n{stderr}"
        );
    }
}

/// One scrape of `GET /metrics`: sample name to value (`None` when unreachable).
async fn scrape(addr: SocketAddr) -> Option<Vec<(String, f64)>> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await.ok()?;
        let (_, page) = body.split_once("\r\n\r\n")?;
        Some(
            page.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let mut parts = l.split_whitespace();
                    Some((parts.next()?.to_string(), parts.next()?.parse().ok()?))
                })
                .collect(),
        )
    };
    tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .ok()
        .flatten()
}

async fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    scrape(addr)
        .await?
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

/// Waits until metric `name` of the node at `addr` is at least `at_least`.
async fn wait_metric(run: &mut Running, addr: SocketAddr, name: &str, at_least: f64) {
    let deadline = Instant::now() + SYNC_TIMEOUT;
    let mut last = None;
    while Instant::now() < deadline {
        last = metric(addr, name).await;
        if last.is_some_and(|v| v >= at_least) {
            return;
        }
        assert!(
            run.is_running(),
            "the node exited; stderr:\n{}",
            run.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{name} of {addr} did not reach {at_least} within {SYNC_TIMEOUT:?} (last {last:?}); stderr:\n{}",
        run.stderr()
    );
}

/// Headers `1..=to` from `peer`, in batches, waiting out rate limiting.
async fn fetch_headers(net: &Network, peer: PeerId, to: u64) -> Vec<SignedHeader> {
    let mut out: Vec<SignedHeader> = Vec::new();
    let mut next = 1;
    while next <= to {
        let count = u32::try_from((to - next + 1).min(u64::from(MAX_HEADERS_PER_BATCH))).unwrap();
        let request = Request::GetHeaders(GetHeaders {
            start_height: next,
            count,
        });
        match net.request(peer, &request).await.unwrap() {
            Response::Headers(HeadersResponse { headers, .. }) => {
                assert!(!headers.is_empty(), "{peer} has no header {next}");
                next += headers.len() as u64;
                out.extend(headers);
            }
            Response::Error(e) if matches!(e.code, ErrorCode::RateLimited | ErrorCode::Busy) => {
                let wait = u64::from(e.retry_after_ms).clamp(10, 2000);
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            other => panic!("unexpected answer to GetHeaders from {next}: {other:?}"),
        }
    }
    out
}

// -------------------------------------------------------------------- init

#[test]
fn init_writes_key_and_commented_config() {
    let tmp = TempDir::new();
    let genesis = write_genesis(tmp.path());
    let home = Home::init(
        tmp.path().join("node"),
        &["--genesis", genesis.to_str().unwrap()],
    );

    let key = fs::read_to_string(home.dir.join("node_key")).unwrap();
    let key = key.trim();
    assert_eq!(key.len(), 64, "the key is 64 hex digits: {key:?}");
    assert!(key.chars().all(|c| c.is_ascii_hexdigit()), "{key:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(home.dir.join("node_key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the key is readable by its owner only");
    }
    assert!(home.dir.join("genesis.pb").is_file(), "genesis copied");
    assert_eq!(
        fs::read(home.dir.join("genesis.pb")).unwrap(),
        fs::read(&genesis).unwrap()
    );

    let config = fs::read_to_string(home.config()).unwrap();
    let comments = config
        .lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .count();
    assert!(comments >= 10, "the config explains itself:\n{config}");
    let parsed = headway_node::config::Config::load(&home.config()).unwrap();
    assert_eq!(parsed.node.listen, home.listen);
    assert_eq!(parsed.node.metrics, Some(home.metrics));

    // The printed peer id is the key's, as `peer-id` reports it.
    let o = headway(&["peer-id", "--home", home.dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), home.peer_id.to_string());
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let tmp = TempDir::new();
    let home = Home::init(tmp.path().join("node"), &[]);
    let key_before = fs::read(home.dir.join("node_key")).unwrap();
    let config_before = fs::read(home.config()).unwrap();
    let dir = home.dir.to_str().unwrap();

    let again = headway(&["init", "--home", dir]);
    assert!(!again.status.success(), "a second init must fail");
    assert_mentions(
        &text(&again.stderr),
        &["already initialised", "--force", dir],
    );
    assert_eq!(fs::read(home.dir.join("node_key")).unwrap(), key_before);
    assert_eq!(fs::read(home.config()).unwrap(), config_before);

    let forced = headway(&["init", "--home", dir, "--force"]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    assert_ne!(
        fs::read(home.dir.join("node_key")).unwrap(),
        key_before,
        "--force writes a new key"
    );
    assert_ne!(text(&forced.stdout).trim(), home.peer_id.to_string());
}

// ------------------------------------------------------------ processes

/// A producer with 300 prebuilt blocks and two followers (v1, and v2 by the
/// `--header-sync v2` flag): both reach the producer's height, push their
/// status to a new peer, serve exactly the producer's headers, and stop
/// cleanly on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_follower_processes_connect_exchange_status_and_serve_headers() {
    let tmp = TempDir::new();
    let blocks = PRODUCER_BLOCKS.to_string();
    let mut producer_flags = vec!["--producer-blocks", &blocks, "--producer-interval-ms", "0"];
    producer_flags.extend(DEVNET);
    let producer = Home::init(tmp.path().join("producer"), &producer_flags);
    let genesis = producer.dir.join("genesis.pb");
    let peer = producer.address();
    let follower_flags = ["--genesis", genesis.to_str().unwrap(), "--peer", &peer];
    let follower = Home::init(tmp.path().join("follower"), &follower_flags);
    let follower_v2 = Home::init(tmp.path().join("follower-v2"), &follower_flags);

    let mut producer_run = Running::start(&producer, &[]);
    wait_metric(
        &mut producer_run,
        producer.metrics,
        "headway_produced_height",
        PRODUCER_BLOCKS as f64,
    )
    .await;
    let mut follower_run = Running::start(&follower, &[]);
    let mut follower_v2_run = Running::start(&follower_v2, &["--header-sync", "v2"]);
    let height = PRODUCER_BLOCKS as f64;
    wait_metric(
        &mut follower_run,
        follower.metrics,
        "headway_header_height",
        height,
    )
    .await;
    wait_metric(
        &mut follower_v2_run,
        follower_v2.metrics,
        "headway_header_height",
        height,
    )
    .await;
    for home in [&producer, &follower, &follower_v2] {
        let peers = metric(home.metrics, "headway_peers").await;
        assert!(
            peers.is_some_and(|p| p >= 1.0),
            "{} is connected: {peers:?}",
            home.dir.display()
        );
    }
    // The producer answered both followers' requests through its answer
    // queue, and refused none.
    let answered = metric(producer.metrics, "headway_answers_total").await;
    assert!(
        answered.is_some_and(|n| n >= 2.0),
        "the producer answered the followers: {answered:?}"
    );
    let refused = metric(producer.metrics, "headway_answers_refused_total").await;
    assert_eq!(refused, Some(0.0), "no request was refused");
    let v2_rounds = metric(follower_v2.metrics, "headway_headersync_bootstrap_rounds").await;
    assert!(
        v2_rounds.is_some_and(|r| r >= 1.0),
        "the v2 follower bootstrapped: {v2_rounds:?}"
    );

    // The test as a peer: each node pushes its status on connect, and serves headers.
    let config = NetConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..NetConfig::default()
    };
    let (net, mut events) = Network::start(NodeKey::generate(), config, Vec::new())
        .await
        .unwrap();
    for home in [&producer, &follower, &follower_v2] {
        net.connect(home.listen, home.peer_id).await.unwrap();
    }
    let mut statused = std::collections::HashSet::new();
    let deadline = Instant::now() + SYNC_TIMEOUT;
    while statused.len() < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(NetEvent::Push {
                peer,
                push: Push::Status(s),
            })) => {
                assert!(s.base <= s.height, "{s:?}");
                // R1.5: a new peer first hears height - 1.
                assert!(s.height >= PRODUCER_BLOCKS - 1, "{peer}: {s:?}");
                statused.insert(peer);
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => panic!("status pushes from only {statused:?}"),
        }
    }
    let reference = fetch_headers(&net, producer.peer_id, PRODUCER_BLOCKS).await;
    assert_eq!(reference.len() as u64, PRODUCER_BLOCKS);
    assert!(
        reference.iter().skip(1).any(|h| h.validator_set.is_some()),
        "the chain changes its validator set"
    );
    for home in [&follower, &follower_v2] {
        let served = fetch_headers(&net, home.peer_id, PRODUCER_BLOCKS).await;
        assert!(
            served == reference,
            "{} serves other headers than the producer",
            home.dir.display()
        );
    }
    net.shutdown().await;

    for (run, name) in [
        (&mut follower_run, "follower"),
        (&mut follower_v2_run, "v2 follower"),
        (&mut producer_run, "producer"),
    ] {
        let status = run.terminate();
        let stderr = run.stderr();
        assert!(
            status.success(),
            "{name} exited with {status} after SIGTERM; stderr:\n{stderr}"
        );
        assert_mentions(&stderr, &["SIGTERM", "stopped cleanly"]);
    }
}

// ------------------------------------------------------ misconfiguration

/// A home with a genesis, ready to run (each test then breaks one thing).
fn runnable_home(tmp: &TempDir) -> Home {
    let genesis = write_genesis(tmp.path());
    Home::init(
        tmp.path().join("node"),
        &["--genesis", genesis.to_str().unwrap()],
    )
}

#[test]
fn missing_key_file_is_reported() {
    let tmp = TempDir::new();
    let home = runnable_home(&tmp);
    let key = home.dir.join("node_key");
    fs::remove_file(&key).unwrap();
    let stderr = run_fails(&home, &[]);
    assert_mentions(
        &stderr,
        &[
            "cannot read node key",
            key.to_str().unwrap(),
            "headway init",
        ],
    );
}

#[test]
fn malformed_config_names_the_file_and_line() {
    let tmp = TempDir::new();
    let home = runnable_home(&tmp);
    let mut bad_line = 0;
    home.edit_config(|text| {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let i = lines
            .iter()
            .position(|l| l.starts_with("max_inbound"))
            .unwrap();
        lines[i] = "max_inbound = = 64".into();
        bad_line = i + 1;
        lines.join("\n") + "\n"
    });
    let stderr = run_fails(&home, &[]);
    let config = home.config();
    assert_mentions(
        &stderr,
        &[
            "invalid config",
            config.to_str().unwrap(),
            &format!("line {bad_line}"),
        ],
    );
}

#[test]
fn unknown_config_field_is_reported() {
    let tmp = TempDir::new();
    let home = runnable_home(&tmp);
    home.edit_config(|text| text.replacen("[node]\n", "[node]\ncolour = \"blue\"\n", 1));
    let stderr = run_fails(&home, &[]);
    let config = home.config();
    assert_mentions(
        &stderr,
        &[
            "invalid config",
            config.to_str().unwrap(),
            "unknown field",
            "colour",
        ],
    );
}

#[test]
fn bad_bootstrap_peer_entry_is_reported() {
    let tmp = TempDir::new();
    let home = runnable_home(&tmp);
    // In the config file.
    home.edit_config(|text| text.replace("bootstrap = []", "bootstrap = [\"nope\"]"));
    let stderr = run_fails(&home, &[]);
    assert_mentions(
        &stderr,
        &["invalid bootstrap peer", "\"nope\"", "missing '@'"],
    );
    // On the command line, with a peer id that is not 64 hex digits.
    home.edit_config(|text| text.replace("bootstrap = [\"nope\"]", "bootstrap = []"));
    let stderr = run_fails(&home, &["--peer", "zz@127.0.0.1:1"]);
    assert_mentions(&stderr, &["invalid bootstrap peer", "zz@127.0.0.1:1"]);
    // And `init` refuses it before writing anything.
    let other = tmp.path().join("other");
    let o = headway(&[
        "init",
        "--home",
        other.to_str().unwrap(),
        "--peer",
        "abcd@not-an-address",
    ]);
    assert!(!o.status.success(), "init accepted a bad peer");
    assert_mentions(
        &text(&o.stderr),
        &["invalid bootstrap peer", "abcd@not-an-address"],
    );
    assert!(!other.join("config.toml").exists(), "nothing written");
}

#[test]
fn listen_port_in_use_is_reported() {
    let tmp = TempDir::new();
    let home = runnable_home(&tmp);
    // Hold the node's UDP port.
    let taken = std::net::UdpSocket::bind(home.listen).unwrap();
    let stderr = run_fails(&home, &[]);
    assert_mentions(&stderr, &["cannot listen on", &home.listen.to_string()]);
    drop(taken);
}

#[test]
fn metrics_port_in_use_is_reported() {
    let tmp = TempDir::new();
    let home = runnable_home(&tmp);
    let taken = std::net::TcpListener::bind(home.metrics).unwrap();
    let stderr = run_fails(&home, &[]);
    assert_mentions(
        &stderr,
        &["cannot listen for metrics on", &home.metrics.to_string()],
    );
    drop(taken);
}

#[test]
fn missing_or_garbage_genesis_is_reported() {
    let tmp = TempDir::new();
    let home = runnable_home(&tmp);
    let genesis = home.dir.join("genesis.pb");
    fs::remove_file(&genesis).unwrap();
    let stderr = run_fails(&home, &[]);
    assert_mentions(
        &stderr,
        &["cannot read genesis file", genesis.to_str().unwrap()],
    );

    fs::write(&genesis, b"this is not a genesis file").unwrap();
    let stderr = run_fails(&home, &[]);
    assert_mentions(&stderr, &["genesis file", genesis.to_str().unwrap()]);
    assert!(
        stderr.contains("not a protobuf") || stderr.contains("invalid"),
        "says what is wrong with it:\n{stderr}"
    );

    // An empty file decodes as an empty message, which is no signed header.
    fs::write(&genesis, b"").unwrap();
    let stderr = run_fails(&home, &[]);
    assert_mentions(&stderr, &["genesis file", genesis.to_str().unwrap()]);
}

#[test]
fn checkpoint_with_both_or_neither_hash_is_reported() {
    let tmp = TempDir::new();
    let home = runnable_home(&tmp);
    let original = fs::read_to_string(home.config()).unwrap();
    let hash = "ab".repeat(32);
    for (what, table) in [
        ("neither", "[sync.checkpoint]\nheight = 10\n".to_string()),
        (
            "both",
            format!(
                "[sync.checkpoint]\nheight = 10\nheader_hash = \"{hash}\"\nvalidators_hash = \"{hash}\"\n"
            ),
        ),
    ] {
        fs::write(home.config(), format!("{original}\n{table}")).unwrap();
        let stderr = run_fails(&home, &["--header-sync", "v2"]);
        let config = home.config();
        assert_mentions(
            &stderr,
            &[
                "sync.checkpoint",
                "exactly one of header_hash or validators_hash",
                config.to_str().unwrap(),
            ],
        );
        assert!(!stderr.is_empty(), "{what}");
    }
    // A hash that is not 64 hex digits is named.
    fs::write(
        home.config(),
        format!("{original}\n[sync.checkpoint]\nheight = 10\nheader_hash = \"xyz\"\n"),
    )
    .unwrap();
    let stderr = run_fails(&home, &["--header-sync", "v2"]);
    assert_mentions(&stderr, &["sync.checkpoint", "\"xyz\"", "64 hex digits"]);
}
