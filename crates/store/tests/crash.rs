#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "tests fail loudly; the child reports progress on stdout"
)]
//! Crash test: a child process (this test binary, re-invoked with an env var)
//! writes header batches (without their commits below [`BARE_BELOW`], as
//! headers-only sync does, with them above), bodies and state blocks to a
//! store; the parent kills
//! it with SIGKILL at random moments, reopens the store each time, and checks
//! it from scratch: no half batch, heights and checksums agree with the data,
//! the data equals the deterministic chain and model, and nothing the child
//! was told is stored has been lost.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Model, apply_to_model};
use headway_chain::HeaderExt as _;
use headway_store::{Store, StoreConfig};
use headway_wire::{BareHeader, Block, SignedHeader, raw};
use prost::Message as _;
use rand::{Rng as _, SeedableRng as _};

const CHILD_ENV: &str = "HEADWAY_STORE_CRASH_CHILD";
const CHAIN_ENV: &str = "HEADWAY_STORE_CRASH_CHAIN";
const TEST_NAME: &str = "survives_sigkill_at_random_moments";
const SEED: u64 = 0x5eed;
const CHAIN_LEN: u64 = 4000;
const KILLS: usize = 50;
/// Headers up to this height are stored without their commits.
const BARE_BELOW: u64 = 1200;
const TIME_BUDGET: Duration = Duration::from_secs(45);

fn config() -> StoreConfig {
    StoreConfig::new().with_snapshot_period(7)
}

#[test]
fn survives_sigkill_at_random_moments() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let dir = common::fresh_dir("crash");
    let (headers, blocks) = common::build_chain(SEED, CHAIN_LEN, false);
    // Building the chain takes a while; the children read it from a file.
    let chain_file = dir.with_extension("chain");
    write_chain(&chain_file, &headers, &blocks);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0xC0FFEE);
    let mut model = Model::new();
    let mut model_height = 0;
    let mut snapshots: BTreeMap<u64, Model> = BTreeMap::new();
    let (mut acked_h, mut acked_b, mut acked_s) = (0, 0, 0);
    let started = Instant::now();
    let mut kills = 0;
    while kills < KILLS && started.elapsed() < TIME_BUDGET {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir)
            .env(CHAIN_ENV, &chain_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let spawned = Instant::now();
        let stdout = child.stdout.take().unwrap();
        let (lines_tx, lines) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Kill at a random moment once the child is writing (sometimes during open).
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(20))
                .expect("child never got ready");
            if line.ends_with("READY") {
                break;
            }
        }
        if std::env::var_os("HEADWAY_STORE_CRASH_TIMING").is_some() {
            println!("timing: child ready after {:?}", spawned.elapsed());
        }
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..120_000)));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        reader.join().unwrap();
        for line in lines.try_iter() {
            let mut parts = line.split_whitespace();
            let (Some(kind), Some(value)) = (parts.next(), parts.next()) else {
                continue;
            };
            let Ok(value) = value.parse::<u64>() else {
                continue;
            };
            match kind {
                "ACK-H" => acked_h = acked_h.max(value),
                "ACK-B" => acked_b = acked_b.max(value),
                "ACK-S" => acked_s = acked_s.max(value),
                _ => {}
            }
        }
        kills += 1;

        // Reopen and check everything from scratch.
        let t0 = Instant::now();
        let store = Store::open(&dir, config()).unwrap();
        let t1 = Instant::now();
        let report = store.check_integrity().unwrap();
        if std::env::var_os("HEADWAY_STORE_CRASH_TIMING").is_some() {
            println!(
                "timing: reopen {:?}, integrity check {:?}",
                t1 - t0,
                t1.elapsed()
            );
        }
        assert!(
            report.header_height >= acked_h,
            "lost acknowledged headers: {report:?} < {acked_h}"
        );
        assert!(
            report.block_height >= acked_b,
            "lost acknowledged bodies: {report:?} < {acked_b}"
        );
        assert!(
            report.state_height >= acked_s,
            "lost acknowledged state: {report:?} < {acked_s}"
        );
        assert_eq!(
            report.bare_height,
            report.header_height.min(BARE_BELOW),
            "{report:?}"
        );
        assert_eq!(store.bare_height(), report.bare_height);
        if report.header_height > 0 {
            let top = store.load_header(report.header_height).unwrap().unwrap();
            assert_eq!(
                top.hash(),
                headers[report.header_height as usize - 1].header.hash()
            );
            assert_eq!(
                store.load_commit(report.header_height).unwrap().is_some(),
                report.header_height > BARE_BELOW
            );
        }
        if report.block_height > 0 {
            let block = store.load_block(report.block_height).unwrap().unwrap();
            assert_eq!(block, blocks[report.block_height as usize - 1]);
        }
        while model_height < report.state_height {
            model_height += 1;
            apply_to_model(&mut model, &common::writes_for(SEED, model_height));
            if model_height.is_multiple_of(config().snapshot_period) {
                snapshots.insert(model_height, model.clone());
            }
        }
        let mut stored = Model::new();
        for prefix in 0..=u8::MAX {
            stored.extend(store.state_records(prefix).map(Result::unwrap));
        }
        assert_eq!(
            stored, model,
            "state at height {} differs from the model",
            report.state_height
        );
        assert_eq!(report.state_root, common::model_root(&model));
        assert_eq!(store.state_root().unwrap(), report.state_root);
        if let Some(snapshot) = report.snapshot_height {
            let mut served = Model::new();
            for prefix in 1u8..=3 {
                let chunk = store
                    .read_snapshot_chunk(snapshot, prefix, b"", usize::MAX)
                    .unwrap();
                assert!(chunk.prefix_exhausted);
                served.extend(chunk.entries.into_iter().map(|e| (e.key, e.value)));
            }
            assert_eq!(
                &served, &snapshots[&snapshot],
                "snapshot at {snapshot} differs from the model"
            );
        }
        (acked_h, acked_b, acked_s) = (
            report.header_height,
            report.block_height,
            report.state_height,
        );
    }
    println!(
        "crash test: survived {kills} SIGKILLs in {:.1} s; reached header height {acked_h}, block height {acked_b}, state height {acked_s}",
        started.elapsed().as_secs_f64()
    );
    assert!(kills >= 40, "only {kills} kills in the time budget");
    assert!(
        acked_s > 50,
        "the child made too little progress to mean much"
    );
}

/// The child: keeps extending the store and acknowledges every commit.
fn child(dir: &Path) {
    let (headers, blocks) = read_chain(Path::new(&std::env::var(CHAIN_ENV).unwrap()));
    println!("READY");
    let store = Store::open(dir, config()).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(std::process::id().into());
    loop {
        let hh = store.header_height();
        let sh = store.state_height();
        // Header sync runs ahead of the state, but not all the way at once.
        if hh < CHAIN_LEN && hh < sh + 400 {
            let to = (hh + rng.gen_range(1..=50)).min(CHAIN_LEN);
            if hh < BARE_BELOW {
                let to = to.min(BARE_BELOW);
                let bare: Vec<BareHeader> = headers[hh as usize..to as usize]
                    .iter()
                    .map(BareHeader::from)
                    .collect();
                store.save_bare_headers(&bare).unwrap();
                println!("ACK-H {to}");
            } else {
                store
                    .save_headers(&headers[hh as usize..to as usize])
                    .unwrap();
                println!("ACK-H {to}");
            }
        }
        let bh = store.block_height();
        for height in bh + 1..=(bh + 3).min(store.header_height()) {
            store.save_block(&blocks[height as usize - 1]).unwrap();
        }
        println!("ACK-B {}", store.block_height());
        if sh < CHAIN_LEN {
            for height in sh + 1..=sh + 2 {
                store
                    .apply_writes(height, &common::writes_for(SEED, height))
                    .unwrap();
                println!("ACK-S {height}");
            }
        }
        if hh >= CHAIN_LEN && sh >= CHAIN_LEN {
            std::thread::sleep(Duration::from_secs(60));
        }
    }
}

fn write_chain(path: &Path, headers: &[SignedHeader], blocks: &[Block]) {
    let mut out = Vec::new();
    for (header, block) in headers.iter().zip(blocks) {
        raw::SignedHeader::from(header)
            .encode_length_delimited(&mut out)
            .unwrap();
        raw::Block::from(block)
            .encode_length_delimited(&mut out)
            .unwrap();
    }
    std::fs::write(path, out).unwrap();
}

fn read_chain(path: &Path) -> (Vec<SignedHeader>, Vec<Block>) {
    let bytes = std::fs::read(path).unwrap();
    let mut buf = bytes.as_slice();
    let (mut headers, mut blocks) = (Vec::new(), Vec::new());
    while !buf.is_empty() {
        headers.push(
            raw::SignedHeader::decode_length_delimited(&mut buf)
                .unwrap()
                .try_into()
                .unwrap(),
        );
        blocks.push(
            raw::Block::decode_length_delimited(&mut buf)
                .unwrap()
                .try_into()
                .unwrap(),
        );
    }
    (headers, blocks)
}
