//! `cargo xtask devnet`: a throwaway local network on loopback.
//!
//! Builds the node (release), writes a devnet directory (genesis, node keys,
//! configs), starts a producer that pre-builds `--blocks` blocks and then
//! extends the chain every `--interval-ms`, starts `--nodes` full nodes that
//! sync from it, then starts a fresh node that syncs from all of them, showing
//! live progress and ending with a summary of every sync phase.

use std::{
    io::{IsTerminal, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// Parsed `cargo xtask devnet` options.
#[derive(Debug, Clone)]
pub struct Options {
    nodes: usize,
    blocks: u64,
    validators: usize,
    seed: u64,
    interval_ms: u64,
    header_sync: String,
    exit_when_synced: bool,
    report: Option<PathBuf>,
    keep: bool,
    dir: Option<PathBuf>,
    stall_secs: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nodes: 2,
            blocks: 2000,
            validators: 16,
            seed: 1,
            interval_ms: 1000,
            header_sync: "v1".into(),
            exit_when_synced: false,
            report: None,
            keep: false,
            dir: None,
            stall_secs: 60,
        }
    }
}

pub const HELP: &str = "cargo xtask devnet [options]

Starts a producer and N full nodes on loopback, then a fresh node that syncs
from them; shows progress; Ctrl-C stops every node.

options:
  --nodes N            full nodes besides the producer (default 2)
  --blocks N           blocks the producer pre-builds (default 2000)
  --validators N       validators per set (default 16)
  --seed N             chain generator seed (default 1)
  --interval-ms N      block interval after the pre-built blocks (default 1000)
  --header-sync v1|v2|v2-headers-only
                       header sync protocol of the fresh node (default v1)
  --exit-when-synced   exit 0 once the fresh node has caught up with the producer
                       (non-zero with the reason if a node fails or sync stalls)
  --stall-secs N       fail when the fresh node makes no progress this long (default 60)
  --report FILE        write the summary as JSON
  --keep               keep the devnet directory and the nodes' logs
  --dir DIR            devnet directory (default: a new directory under the temp dir)";

impl Options {
    /// Parses the arguments after `devnet`.
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .with_context(|| format!("{name} needs a value"))
            };
            match arg.as_str() {
                "--nodes" => o.nodes = value("--nodes")?.parse().context("--nodes")?,
                "--blocks" => o.blocks = value("--blocks")?.parse().context("--blocks")?,
                "--validators" => {
                    o.validators = value("--validators")?.parse().context("--validators")?
                }
                "--seed" => o.seed = value("--seed")?.parse().context("--seed")?,
                "--interval-ms" => {
                    o.interval_ms = value("--interval-ms")?.parse().context("--interval-ms")?
                }
                "--header-sync" => o.header_sync = value("--header-sync")?,
                "--exit-when-synced" => o.exit_when_synced = true,
                "--stall-secs" => {
                    o.stall_secs = value("--stall-secs")?.parse().context("--stall-secs")?
                }
                "--report" => o.report = Some(value("--report")?.into()),
                "--keep" => o.keep = true,
                "--dir" => o.dir = Some(value("--dir")?.into()),
                other => bail!("unknown devnet option `{other}`\n\n{HELP}"),
            }
        }
        if o.blocks < 2 {
            bail!("--blocks must be at least 2");
        }
        if o.validators == 0 {
            bail!("--validators must be at least 1");
        }
        if !matches!(o.header_sync.as_str(), "v1" | "v2" | "v2-headers-only") {
            bail!("--header-sync must be v1, v2 or v2-headers-only");
        }
        Ok(o)
    }
}

/// A node process and where to reach it.
struct NodeProc {
    name: String,
    child: Option<Child>,
    metrics: SocketAddr,
    log: PathBuf,
}

impl NodeProc {
    fn scrape(&self) -> Option<Metrics> {
        scrape(self.metrics)
    }

    fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(format!(
                "{} exited with {status}; log tail:\n{}",
                self.name,
                tail(&self.log, 15)
            )),
            _ => None,
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM for a graceful shutdown, then wait briefly, then kill.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The few metrics the devnet shows.
#[derive(Debug, Clone, Copy, Default)]
struct Metrics {
    header_height: u64,
    block_height: u64,
    state_height: u64,
    produced: u64,
    headers_synced: u64,
    bytes_synced: u64,
    peers: u64,
    bans: u64,
}

fn scrape(addr: SocketAddr) -> Option<Metrics> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: devnet\r\nconnection: close\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    let mut m = Metrics::default();
    for line in body.lines() {
        let Some((name, value)) = line.split_once(' ') else {
            continue;
        };
        let value = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
        match name {
            "headway_header_height" => m.header_height = value,
            "headway_block_height" => m.block_height = value,
            "headway_state_height" => m.state_height = value,
            "headway_produced_height" => m.produced = value,
            "headway_headersync_headers_synced_total" => m.headers_synced = value,
            "headway_headersync_bytes_synced_total" => m.bytes_synced = value,
            "headway_peers" => m.peers = value,
            "headway_headersync_bans_total" => m.bans = value,
            _ => {}
        }
    }
    Some(m)
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn free_udp() -> Result<SocketAddr> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?)
}

fn free_tcp() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn run_ok(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("could not start {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs the devnet.
pub fn run(root: &Path, options: &Options) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context("installing the Ctrl-C handler")?;
    }
    eprintln!("==> building the node (release)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "headway-node",
            "--bin",
            "headway",
        ])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building the node failed");
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let bin = target.join("release").join("headway");

    let dir = match &options.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("headway-devnet-{}", std::process::id())),
    };
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let result = run_in(&bin, &dir, options, &stop);
    if options.keep || result.is_err() {
        eprintln!("devnet directory kept: {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn devnet_args(options: &Options, replace_at: u64) -> Vec<String> {
    vec![
        "--seed".into(),
        options.seed.to_string(),
        "--validators".into(),
        options.validators.to_string(),
        "--rotation-interval".into(),
        "100".into(),
        "--replace-all-at".into(),
        replace_at.to_string(),
    ]
}

fn run_in(bin: &Path, dir: &Path, options: &Options, stop: &AtomicBool) -> Result<()> {
    // The chain rotates a quarter of the set every 100 blocks and replaces the
    // whole set once, halfway through the pre-built blocks.
    let replace_at = (options.blocks / 2).max(2);
    let genesis = dir.join("genesis.pb");
    let mut cmd = Command::new(bin);
    cmd.arg("genesis")
        .arg("--out")
        .arg(&genesis)
        .args(devnet_args(options, replace_at));
    let genesis_hash = run_ok(&mut cmd, "headway genesis")?;
    eprintln!("==> devnet in {} (genesis {genesis_hash})", dir.display());

    let init = |name: &str,
                peers: &[String],
                producer: bool,
                header_sync: &str|
     -> Result<(String, SocketAddr, SocketAddr, PathBuf)> {
        let home = dir.join(name);
        let (listen, metrics) = (free_udp()?, free_tcp()?);
        let mut cmd = Command::new(bin);
        cmd.arg("init").arg("--home").arg(&home).args([
            "--listen",
            &listen.to_string(),
            "--metrics",
            &metrics.to_string(),
        ]);
        cmd.args(["--header-sync", header_sync]);
        for p in peers {
            cmd.args(["--peer", p]);
        }
        if producer {
            cmd.args([
                "--producer-blocks",
                &options.blocks.to_string(),
                "--producer-interval-ms",
                &options.interval_ms.to_string(),
            ]);
            cmd.args(devnet_args(options, replace_at));
        } else {
            cmd.arg("--genesis").arg(&genesis);
        }
        let id = run_ok(&mut cmd, &format!("headway init {name}"))?;
        Ok((format!("{id}@{listen}"), listen, metrics, home))
    };
    let start = |name: &str, home: &Path, metrics: SocketAddr| -> Result<NodeProc> {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let child = Command::new(bin)
            .arg("run")
            .arg("--home")
            .arg(home)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(NodeProc {
            name: name.into(),
            child: Some(child),
            metrics,
            log,
        })
    };

    let (producer_addr, _, producer_metrics, producer_home) = init("producer", &[], true, "v1")?;
    let mut nodes = vec![start("producer", &producer_home, producer_metrics)?];
    let t0 = Instant::now();
    let mut progress = Progress::new();
    wait(
        &mut nodes,
        stop,
        &mut progress,
        options.stall_secs * 10,
        |ns| ns[0].scrape().is_some_and(|m| m.produced >= options.blocks),
    )
    .context("producer pre-building blocks")?;
    let prebuild = t0.elapsed();
    progress.line(
        &mut nodes,
        &format!(
            "producer built {} blocks in {:.1}s",
            options.blocks,
            prebuild.as_secs_f64()
        ),
    );

    let mut addrs = vec![producer_addr];
    for i in 1..=options.nodes {
        let name = format!("full-{i}");
        let (addr, _, metrics, home) = init(&name, &addrs, false, "v1")?;
        nodes.push(start(&name, &home, metrics)?);
        addrs.push(addr);
    }
    let t1 = Instant::now();
    if options.nodes > 0 {
        wait(&mut nodes, stop, &mut progress, options.stall_secs, |ns| {
            let tip = ns[0].scrape().map_or(u64::MAX, |m| m.header_height);
            ns[1..]
                .iter()
                .all(|n| n.scrape().is_some_and(|m| m.header_height + 2 >= tip))
        })
        .context("full nodes syncing from the producer")?;
    }
    let full_sync = t1.elapsed();
    progress.line(
        &mut nodes,
        &format!(
            "{} full nodes synced in {:.1}s",
            options.nodes,
            full_sync.as_secs_f64()
        ),
    );

    let (_, _, fresh_metrics, fresh_home) = init("fresh", &addrs, false, &options.header_sync)?;
    let target = nodes[0]
        .scrape()
        .map_or(options.blocks, |m| m.header_height);
    let t2 = Instant::now();
    nodes.push(start("fresh", &fresh_home, fresh_metrics)?);
    let fresh = nodes.len() - 1;
    let mut header_phase = None;
    wait(&mut nodes, stop, &mut progress, options.stall_secs, |ns| {
        let Some(m) = ns[fresh].scrape() else {
            return false;
        };
        if header_phase.is_none() && m.header_height >= target {
            header_phase = Some((t2.elapsed(), m));
        }
        let tip = ns[0].scrape().map_or(u64::MAX, |p| p.header_height);
        m.header_height >= tip
    })
    .context("fresh node syncing")?;
    let total = t2.elapsed();
    let (headers_time, at) = header_phase.unwrap_or((total, Metrics::default()));
    let fresh_m = nodes[fresh].scrape().unwrap_or_default();
    let producer_m = nodes[0].scrape().unwrap_or_default();
    let headers = at.headers_synced.max(target.saturating_sub(1));
    let secs = headers_time.as_secs_f64().max(1e-9);
    let summary = serde_json::json!({
        "nodes": options.nodes,
        "blocks": options.blocks,
        "validators": options.validators,
        "header_sync": options.header_sync,
        "producer_height": producer_m.header_height,
        "fresh_header_height": fresh_m.header_height,
        "fresh_block_height": fresh_m.block_height,
        "phases": {
            "producer_prebuild_s": prebuild.as_secs_f64(),
            "full_nodes_sync_s": full_sync.as_secs_f64(),
            "fresh_header_sync_s": headers_time.as_secs_f64(),
            "fresh_total_s": total.as_secs_f64(),
            "snapshot_sync_s": null,
            "block_sync_s": null
        },
        "headers_per_s": headers as f64 / secs,
        "header_mb_per_s": at.bytes_synced as f64 / 1e6 / secs,
        "blocks_per_s": null,
        "bans": fresh_m.bans,
    });
    progress.finish();
    eprintln!("\n==> summary");
    eprintln!(
        "  producer pre-built {} blocks      {:>8.2} s",
        options.blocks,
        prebuild.as_secs_f64()
    );
    eprintln!(
        "  {} full nodes synced headers       {:>8.2} s",
        options.nodes,
        full_sync.as_secs_f64()
    );
    eprintln!(
        "  fresh node: {} headers ({})      {:>8.2} s  {:>9.0} headers/s  {:>6.2} MB/s",
        headers,
        options.header_sync,
        headers_time.as_secs_f64(),
        headers as f64 / secs,
        at.bytes_synced as f64 / 1e6 / secs
    );
    eprintln!(
        "  fresh node caught up with the tip at {}  {:>8.2} s",
        fresh_m.header_height,
        total.as_secs_f64()
    );
    eprintln!("  snapshot sync, block sync: not part of this build yet");
    if let Some(path) = &options.report {
        std::fs::write(path, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("  report written to {}", path.display());
    }
    if options.exit_when_synced {
        eprintln!("==> synced; stopping the devnet");
        return Ok(());
    }
    eprintln!("==> devnet running; Ctrl-C stops every node");
    while !stop.load(Ordering::SeqCst) {
        if let Some(reason) = nodes.iter_mut().find_map(NodeProc::exited) {
            bail!(reason);
        }
        progress.show(&mut nodes);
        std::thread::sleep(Duration::from_millis(500));
    }
    progress.finish();
    eprintln!("==> stopping");
    Ok(())
}

/// Waits until `done`, showing progress; fails when a node exits, on Ctrl-C,
/// or when no node's header height moved for `stall_secs`.
fn wait(
    nodes: &mut [NodeProc],
    stop: &AtomicBool,
    progress: &mut Progress,
    stall_secs: u64,
    mut done: impl FnMut(&[NodeProc]) -> bool,
) -> Result<()> {
    let mut last_change = Instant::now();
    let mut last_sum = 0u64;
    loop {
        if stop.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        if let Some(reason) = nodes.iter_mut().find_map(NodeProc::exited) {
            bail!(reason);
        }
        if done(nodes) {
            return Ok(());
        }
        let sum: u64 = nodes
            .iter()
            .filter_map(|n| n.scrape())
            .map(|m| m.header_height + m.produced)
            .sum();
        if sum != last_sum {
            last_sum = sum;
            last_change = Instant::now();
        } else if last_change.elapsed() > Duration::from_secs(stall_secs) {
            let logs: Vec<String> = nodes
                .iter()
                .map(|n| format!("--- {} ---\n{}", n.name, tail(&n.log, 8)))
                .collect();
            bail!(
                "no progress for {stall_secs} s (stalled); log tails:\n{}",
                logs.join("\n")
            );
        }
        progress.show(nodes);
        std::thread::sleep(WAIT_POLL);
    }
}

/// How often [`wait`] scrapes the nodes: the sync times it reports are
/// this coarse (at 250 ms, a 20 000-header headers-only sync read 0.25 s
/// in one run and 0.51 s in the next).
const WAIT_POLL: Duration = Duration::from_millis(20);

/// Live progress: one refreshing line on a terminal, a line every 5 s otherwise.
struct Progress {
    tty: bool,
    last_print: Instant,
    last: Vec<(Instant, u64)>,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            last_print: Instant::now(),
            last: Vec::new(),
        }
    }

    fn show(&mut self, nodes: &mut [NodeProc]) {
        let every = if self.tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(5)
        };
        if self.last_print.elapsed() < every {
            return;
        }
        self.last_print = Instant::now();
        let now = Instant::now();
        self.last.resize(nodes.len(), (now, 0));
        let mut parts = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let Some(m) = n.scrape() else {
                parts.push(format!("{} starting", n.name));
                continue;
            };
            let (t, h) = self.last[i];
            let dt = now.saturating_duration_since(t).as_secs_f64();
            let rate = if dt > 0.0 {
                (m.header_height.saturating_sub(h)) as f64 / dt
            } else {
                0.0
            };
            self.last[i] = (now, m.header_height);
            parts.push(format!(
                "{} hdr {} blk {} state {} ({:.0} hdr/s, {} peers)",
                n.name, m.header_height, m.block_height, m.state_height, rate, m.peers
            ));
        }
        let line = parts.join(" | ");
        if self.tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }

    fn line(&mut self, nodes: &mut [NodeProc], text: &str) {
        let _ = nodes;
        self.finish();
        eprintln!("==> {text}");
    }

    fn finish(&mut self) {
        if self.tty {
            eprintln!();
        }
    }
}
