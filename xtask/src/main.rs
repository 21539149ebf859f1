//! `cargo xtask`: Headway's project automation.
//!
//! A plain binary with few dependencies; every path is resolved from the
//! workspace root so it works from any directory.
//!
//! Tasks:
//! - `ci`: what `.ci/run` runs: formatting, clippy with warnings denied, and
//!   the test command from the README (`cargo test --workspace`).
//! - `devnet`: start a local devnet (see `--help`).

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a CLI reports to the terminal"
)]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

mod devnet;

/// The README's test command; `ci` runs exactly this.
const TEST_COMMAND: &[&str] = &["test", "--workspace", "--locked"];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(task) = args.first() else {
        print_help();
        return Ok(());
    };
    match task.as_str() {
        "ci" => ci(),
        "devnet" => devnet(&args[1..]),
        "help" | "--help" | "-h" => {
            print_help();
            Ok(())
        }
        other => bail!("unknown task `{other}`; run `cargo xtask help`"),
    }
}

fn print_help() {
    println!(
        "cargo xtask <task>\n\n\
         tasks:\n  \
         ci       formatting, clippy (-D warnings) and the test suite, as CI runs them\n  \
         devnet   start a local devnet (producer, full nodes, a fresh syncing node)"
    );
}

/// The workspace root: the parent of this crate's manifest directory.
fn project_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(project_root());
    cmd
}

fn run(step: &str, mut cmd: Command) -> Result<()> {
    eprintln!("==> {step}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{step}`"))?;
    if !status.success() {
        bail!("`{step}` failed with {status}");
    }
    Ok(())
}

/// CI builds every test binary of the workspace once. Incremental caches and
/// full debug info would be thrown away with the clone yet take most of the
/// disk (about 6 GB against 2 GB without); a full disk failed CI once. A
/// caller's own settings win.
const CI_ENV: &[(&str, &str)] = &[
    ("CARGO_INCREMENTAL", "0"),
    ("CARGO_PROFILE_DEV_DEBUG", "line-tables-only"),
];

fn ci() -> Result<()> {
    let cargo = || {
        let mut cmd = cargo();
        for (key, value) in CI_ENV {
            if std::env::var_os(key).is_none() {
                cmd.env(key, value);
            }
        }
        cmd
    };
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run("cargo fmt --all --check", fmt)?;

    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]);
    run(
        "cargo clippy --workspace --all-targets --locked -- -D warnings",
        clippy,
    )?;

    let mut test = cargo();
    test.args(TEST_COMMAND);
    run(&format!("cargo {}", TEST_COMMAND.join(" ")), test)?;
    Ok(())
}

fn devnet(args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", devnet::HELP);
        return Ok(());
    }
    let options = devnet::Options::parse(args)?;
    devnet::run(&project_root(), &options)
}
