//! `headway`: the Headway node.
//!
//! - `headway init --home DIR` writes a node key and a commented config file.
//! - `headway genesis --out FILE` writes the genesis of a devnet chain.
//! - `headway run --home DIR` runs a node; flags override the config file.
//! - `headway peer-id --home DIR` prints the node's peer id.

#![allow(clippy::print_stdout, reason = "a CLI prints its results")]

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use headway_net::NodeKey;
use headway_node::{
    config::{self, DevnetParams, HeaderSyncMode},
    genesis, node,
};

#[derive(Parser)]
#[command(
    name = "headway",
    version,
    about = "The Headway node: the fastest verifiable catch-up for a blockchain node"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a node key and a commented config file into a home directory.
    Init {
        /// The node's home directory (created if missing).
        #[arg(long)]
        home: PathBuf,
        /// QUIC listen address.
        #[arg(long, default_value = "127.0.0.1:26656")]
        listen: SocketAddr,
        /// Prometheus endpoint address.
        #[arg(long)]
        metrics: Option<SocketAddr>,
        /// Bootstrap peers, `<peer id>@<host:port>` (repeatable).
        #[arg(long = "peer")]
        peers: Vec<String>,
        /// Genesis file to copy into the home directory.
        #[arg(long)]
        genesis: Option<PathBuf>,
        /// Make this node a devnet producer with these parameters: prebuilt blocks.
        #[arg(long)]
        producer_blocks: Option<u64>,
        /// Producer: milliseconds between blocks after the prebuilt ones.
        #[arg(long, default_value_t = 1000)]
        producer_interval_ms: u64,
        /// Devnet parameters (producer only).
        #[command(flatten)]
        devnet: DevnetArgs,
        /// Header sync protocol.
        #[arg(long, value_enum, default_value = "v1")]
        header_sync: HeaderSyncMode,
        /// Overwrite an existing config and key.
        #[arg(long)]
        force: bool,
    },
    /// Write the genesis file of a devnet chain.
    Genesis {
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Devnet parameters.
        #[command(flatten)]
        devnet: DevnetArgs,
    },
    /// Run a node.
    Run {
        /// The node's home directory.
        #[arg(long)]
        home: PathBuf,
        /// Override the QUIC listen address.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Override the metrics address.
        #[arg(long)]
        metrics: Option<SocketAddr>,
        /// Extra bootstrap peers, `<peer id>@<host:port>` (repeatable).
        #[arg(long = "peer")]
        peers: Vec<String>,
        /// Override the header sync protocol.
        #[arg(long, value_enum)]
        header_sync: Option<HeaderSyncMode>,
    },
    /// Print the node's peer id.
    PeerId {
        /// The node's home directory.
        #[arg(long)]
        home: PathBuf,
    },
}

#[derive(clap::Args, Clone)]
struct DevnetArgs {
    /// Devnet generator seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Validators per set.
    #[arg(long, default_value_t = 16)]
    validators: usize,
    /// Blocks between gradual rotations of a quarter of the set.
    #[arg(long, default_value_t = 100)]
    rotation_interval: u64,
    /// Heights at which the whole validator set is replaced (comma-separated).
    #[arg(long, value_delimiter = ',')]
    replace_all_at: Vec<u64>,
}

impl DevnetArgs {
    fn params(&self) -> DevnetParams {
        DevnetParams {
            seed: self.seed,
            validators: self.validators,
            rotation_interval: self.rotation_interval,
            replace_all_at: self.replace_all_at.clone(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            #[allow(clippy::print_stderr, reason = "the error is the CLI's output")]
            {
                eprintln!("error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init {
            home,
            listen,
            metrics,
            peers,
            genesis: genesis_file,
            producer_blocks,
            producer_interval_ms,
            devnet,
            header_sync,
            force,
        } => {
            std::fs::create_dir_all(&home)
                .with_context(|| format!("creating {}", home.display()))?;
            let config_path = home.join("config.toml");
            let key_path = home.join("node_key");
            if !force && (config_path.exists() || key_path.exists()) {
                bail!(
                    "{} is already initialised (use --force to overwrite)",
                    home.display()
                );
            }
            for p in &peers {
                config::parse_peer(p)?;
            }
            let key = NodeKey::generate();
            node::write_key(&key_path, &key)?;
            let params = devnet.params();
            let producer = producer_blocks.map(|blocks| (&params, blocks, producer_interval_ms));
            std::fs::write(
                &config_path,
                config::template(listen, metrics, &peers, producer, header_sync),
            )
            .with_context(|| format!("writing {}", config_path.display()))?;
            let genesis_path = home.join("genesis.pb");
            match genesis_file {
                Some(src) => {
                    std::fs::copy(&src, &genesis_path)
                        .with_context(|| format!("copying genesis {}", src.display()))?;
                }
                None if producer_blocks.is_some() => {
                    genesis::write(&genesis_path, &genesis::devnet_genesis(&params)?)?
                }
                None => {}
            }
            println!("{}", key.peer_id());
            Ok(())
        }
        Command::Genesis { out, devnet } => {
            let g = genesis::devnet_genesis(&devnet.params())?;
            genesis::write(&out, &g)?;
            println!("{}", headway_chain::HeaderExt::hash(&g.header));
            Ok(())
        }
        Command::Run {
            home,
            listen,
            metrics,
            peers,
            header_sync,
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            runtime.block_on(node::run(
                &home,
                node::Overrides {
                    listen,
                    metrics,
                    peers,
                    header_sync,
                },
                node::shutdown_signal(),
            ))
        }
        Command::PeerId { home } => {
            let key = node::read_key(&home.join("node_key"))?;
            println!("{}", key.peer_id());
            Ok(())
        }
    }
}
