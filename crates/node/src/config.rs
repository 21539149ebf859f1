//! The node's configuration file (`config.toml` in the node's home directory).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use headway_net::{
    BootstrapPeer, MAX_BAN_DURATION, MAX_UDP_PAYLOAD_SIZE, MIN_UDP_PAYLOAD_SIZE, PeerId,
};
use serde::Deserialize;

/// Which header sync protocol a node uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum HeaderSyncMode {
    /// Batches of 50 signed headers (seed 003, R1–R8).
    V1,
    /// Parallel ranges proven into the MMR history root (seed 000).
    V2,
    /// v2 asking for headers without commits (`GetHeadersV2.headers_only`):
    /// about a sixth of the bytes with 16 validators, but the headers below
    /// the v2 tip are stored without commits, so this node does not serve
    /// them to v1 peers (its status `base` starts above them).
    #[serde(rename = "v2-headers-only")]
    #[value(name = "v2-headers-only")]
    V2HeadersOnly,
}

impl HeaderSyncMode {
    /// Whether the node syncs by v2 ranges.
    #[must_use]
    pub fn is_v2(self) -> bool {
        matches!(self, HeaderSyncMode::V2 | HeaderSyncMode::V2HeadersOnly)
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[node]`
    pub node: NodeSection,
    /// `[genesis]`
    pub genesis: GenesisSection,
    /// `[p2p]`
    #[serde(default)]
    pub p2p: P2pSection,
    /// `[sync]`
    #[serde(default)]
    pub sync: SyncSection,
    /// `[producer]`
    #[serde(default)]
    pub producer: ProducerSection,
}

/// `[node]`: addresses and files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// QUIC listen address.
    pub listen: SocketAddr,
    /// Prometheus `/metrics` address; absent to disable.
    pub metrics: Option<SocketAddr>,
    /// Node key file (hex Ed25519 seed), relative to the home directory.
    #[serde(default = "default_key_file")]
    pub key_file: PathBuf,
    /// Database directory, relative to the home directory.
    #[serde(default = "default_db_dir")]
    pub db_dir: PathBuf,
}

/// `[genesis]`: the trusted starting point.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisSection {
    /// Genesis file (block 1's signed header with its validator set, protobuf).
    pub file: PathBuf,
}

/// `[p2p]`: peers and limits.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct P2pSection {
    /// Peers to keep connected to, as `<peer id>@<host:port>`.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Most inbound connections.
    pub max_inbound: Option<usize>,
    /// Requests answered at once, across peers; the rest wait in per-peer
    /// queues (default: the core count, clamped to 2..=16; at most
    /// [`MAX_ANSWER_CONCURRENCY`]).
    pub answer_concurrency: Option<usize>,
    /// Largest UDP payload sent and accepted, the ceiling of path MTU
    /// discovery (default [`headway_net::DEFAULT_MAX_UDP_PAYLOAD_SIZE`];
    /// between [`headway_net::MIN_UDP_PAYLOAD_SIZE`] and
    /// [`headway_net::MAX_UDP_PAYLOAD_SIZE`]). Raise it on paths with a
    /// larger MTU than Ethernet's (jumbo frames, loopback).
    pub max_udp_payload_size: Option<u16>,
}

/// Largest accepted `p2p.answer_concurrency`: each answer holds a blocking
/// thread and a response's buffers while it runs.
pub const MAX_ANSWER_CONCURRENCY: usize = 256;

/// `[sync]`: which protocols the node syncs with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSection {
    /// Header sync protocol.
    #[serde(default = "default_header_sync")]
    pub header_sync: HeaderSyncMode,
    /// Full batches' worth of headers served per peer per second, over
    /// `GetHeaders` and `GetHeadersV2` together (weighted by headers asked for).
    #[serde(default = "default_rate")]
    pub get_headers_per_second: usize,
    /// A request unanswered for this many milliseconds times out (R7.2).
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// How long a peer that sent invalid data stays banned, in seconds (at
    /// most a year, `headway_net::MAX_BAN_DURATION`).
    #[serde(default = "default_ban_seconds")]
    pub ban_seconds: u64,
    /// While behind its peers, log header sync progress (height, target,
    /// rate, time left) this often, in milliseconds; 0 turns it off.
    #[serde(default = "default_progress_log_ms")]
    pub progress_log_ms: u64,
    /// v2: trust this checkpoint instead of the genesis/stored tip.
    #[serde(default)]
    pub checkpoint: Option<CheckpointConfig>,
}

/// `[sync.checkpoint]`: a trusted height and either its header hash or the
/// hash of its validator set (hex).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// The trusted height.
    pub height: u64,
    /// Hash of the header at that height.
    pub header_hash: Option<String>,
    /// Hash of the validator set of the header at that height.
    pub validators_hash: Option<String>,
}

impl CheckpointConfig {
    /// The checkpoint as header sync takes it.
    pub fn resolve(&self) -> Result<headway_headersync::bootstrap::Checkpoint, String> {
        let parse = |s: &str| {
            let mut h = [0u8; 32];
            hex::decode_to_slice(s.trim(), &mut h)
                .map_err(|e| format!("{s:?} is not 64 hex digits: {e}"))?;
            Ok::<_, String>(headway_wire::Hash(h))
        };
        if self.height == 0 {
            return Err("checkpoint height must be at least 1".into());
        }
        match (&self.header_hash, &self.validators_hash) {
            (Some(h), None) => Ok(headway_headersync::bootstrap::Checkpoint::HeaderHash {
                height: self.height,
                hash: parse(h)?,
            }),
            (None, Some(v)) => Ok(headway_headersync::bootstrap::Checkpoint::ValidatorSet {
                height: self.height,
                validators_hash: parse(v)?,
            }),
            _ => Err("give exactly one of header_hash or validators_hash".into()),
        }
    }
}

impl Default for SyncSection {
    fn default() -> Self {
        SyncSection {
            header_sync: default_header_sync(),
            get_headers_per_second: default_rate(),
            request_timeout_ms: default_request_timeout_ms(),
            ban_seconds: default_ban_seconds(),
            progress_log_ms: default_progress_log_ms(),
            checkpoint: None,
        }
    }
}

/// `[producer]`: devnet block production from the deterministic generator.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerSection {
    /// Produce blocks.
    #[serde(default)]
    pub enabled: bool,
    /// The devnet's parameters (must match the genesis).
    #[serde(default)]
    pub devnet: DevnetParams,
    /// Blocks built at start, before the interval begins.
    #[serde(default)]
    pub prebuilt_blocks: u64,
    /// Milliseconds between new blocks after the prebuilt ones; 0 stops at the prebuilt height.
    #[serde(default = "default_interval")]
    pub block_interval_ms: u64,
}

impl Default for ProducerSection {
    fn default() -> Self {
        ProducerSection {
            enabled: false,
            devnet: DevnetParams::default(),
            prebuilt_blocks: 0,
            block_interval_ms: default_interval(),
        }
    }
}

/// The parameters that fix a devnet chain (the generator's inputs).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DevnetParams {
    /// Generator seed.
    pub seed: u64,
    /// Validators per set.
    pub validators: usize,
    /// Blocks between gradual rotations of a quarter of the set.
    pub rotation_interval: u64,
    /// Heights at which the whole validator set is replaced.
    pub replace_all_at: Vec<u64>,
}

impl Default for DevnetParams {
    fn default() -> Self {
        DevnetParams {
            seed: 1,
            validators: 16,
            rotation_interval: 100,
            replace_all_at: vec![],
        }
    }
}

impl DevnetParams {
    /// The generator configuration these parameters stand for.
    pub fn generator_config(&self) -> headway_chain::GeneratorConfig {
        headway_chain::GeneratorConfig {
            validator_count: self.validators,
            rotation_interval: self.rotation_interval,
            replace_all_at: self.replace_all_at.clone(),
            ..headway_chain::GeneratorConfig::devnet(self.seed)
        }
    }
}

fn default_key_file() -> PathBuf {
    "node_key".into()
}
fn default_db_dir() -> PathBuf {
    "data".into()
}
fn default_header_sync() -> HeaderSyncMode {
    HeaderSyncMode::V1
}
/// Largest `[sync] get_headers_per_second` accepted: a million headers per
/// second per peer, far above any honest need; it also keeps the rate
/// limiter's unit count (six per batch) and memory in range.
pub const MAX_GET_HEADERS_PER_SECOND: usize = 20_000;

fn default_rate() -> usize {
    headway_headersync::server::DEFAULT_GET_HEADERS_PER_WINDOW
}
fn default_request_timeout_ms() -> u64 {
    15_000
}
fn default_ban_seconds() -> u64 {
    60
}
fn default_progress_log_ms() -> u64 {
    u64::try_from(headway_headersync::progress::PROGRESS_EVERY.as_millis()).unwrap_or(10_000)
}
fn default_interval() -> u64 {
    1000
}

/// What was wrong with a configuration file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The path.
        path: PathBuf,
        /// What the parser said (with line and column).
        message: String,
    },
    /// A bootstrap peer entry is malformed.
    #[error(
        "invalid bootstrap peer {entry:?}: {why} (expected <64 hex digit peer id>@<host:port>)"
    )]
    Peer {
        /// The entry.
        entry: String,
        /// Why.
        why: String,
    },
    /// A value is out of range.
    #[error("invalid config {path}: {what}")]
    Invalid {
        /// The path.
        path: PathBuf,
        /// The rule.
        what: String,
    },
}

impl Config {
    /// Reads and checks `home/config.toml`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.bootstrap_peers()?;
        if config.producer.enabled && config.producer.devnet.validators == 0 {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                what: "producer.devnet.validators must be at least 1".into(),
            });
        }
        if let Some(c) = &config.sync.checkpoint {
            c.resolve().map_err(|what| ConfigError::Invalid {
                path: path.to_path_buf(),
                what: format!("sync.checkpoint: {what}"),
            })?;
        }
        if let Some(n) = config.p2p.answer_concurrency
            && !(1..=MAX_ANSWER_CONCURRENCY).contains(&n)
        {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                what: format!(
                    "p2p.answer_concurrency is {n}; it must be between 1 and {MAX_ANSWER_CONCURRENCY}"
                ),
            });
        }
        if let Some(n) = config.p2p.max_udp_payload_size
            && !(MIN_UDP_PAYLOAD_SIZE..=MAX_UDP_PAYLOAD_SIZE).contains(&n)
        {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                what: format!(
                    "p2p.max_udp_payload_size is {n}; it must be between {MIN_UDP_PAYLOAD_SIZE} and {MAX_UDP_PAYLOAD_SIZE} bytes"
                ),
            });
        }
        if config.sync.ban_seconds > MAX_BAN_DURATION.as_secs() {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                what: format!(
                    "sync.ban_seconds is {}; it must be at most {} (a year)",
                    config.sync.ban_seconds,
                    MAX_BAN_DURATION.as_secs()
                ),
            });
        }
        if config.sync.request_timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                what: "sync.request_timeout_ms must be at least 1".into(),
            });
        }
        if config.sync.get_headers_per_second == 0 {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                what: "sync.get_headers_per_second must be at least 1".into(),
            });
        }
        if config.sync.get_headers_per_second > MAX_GET_HEADERS_PER_SECOND {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                what: format!(
                    "sync.get_headers_per_second must be at most {MAX_GET_HEADERS_PER_SECOND}"
                ),
            });
        }
        Ok(config)
    }

    /// The parsed bootstrap peers.
    pub fn bootstrap_peers(&self) -> Result<Vec<BootstrapPeer>, ConfigError> {
        self.p2p
            .bootstrap
            .iter()
            .map(|entry| parse_peer(entry))
            .collect()
    }
}

/// Parses `<peer id>@<host:port>`.
pub fn parse_peer(entry: &str) -> Result<BootstrapPeer, ConfigError> {
    let err = |why: String| ConfigError::Peer {
        entry: entry.to_string(),
        why,
    };
    let (id, addr) = entry
        .split_once('@')
        .ok_or_else(|| err("missing '@'".into()))?;
    let peer: PeerId = id
        .parse()
        .map_err(|e: headway_net::NetError| err(e.to_string()))?;
    let addr: SocketAddr = addr.parse().map_err(|e| err(format!("bad address: {e}")))?;
    Ok(BootstrapPeer { addr, peer })
}

/// The commented configuration `headway init` writes.
pub fn template(
    listen: SocketAddr,
    metrics: Option<SocketAddr>,
    bootstrap: &[String],
    producer: Option<(&DevnetParams, u64, u64)>,
    header_sync: HeaderSyncMode,
) -> String {
    let metrics_line = match metrics {
        Some(m) => format!("metrics = \"{m}\""),
        None => "# metrics = \"127.0.0.1:26660\"".into(),
    };
    let peers = bootstrap
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let sync = match header_sync {
        HeaderSyncMode::V1 => "v1",
        HeaderSyncMode::V2 => "v2",
        HeaderSyncMode::V2HeadersOnly => "v2-headers-only",
    };
    let producer_section = match producer {
        Some((params, prebuilt, interval)) => format!(
            "enabled = true\n\
             # Blocks built from the generator at start.\n\
             prebuilt_blocks = {prebuilt}\n\
             # Milliseconds between blocks afterwards (0: stop at the prebuilt height).\n\
             block_interval_ms = {interval}\n\n\
             # The devnet chain: must be the parameters the genesis was made with.\n\
             [producer.devnet]\n\
             seed = {}\nvalidators = {}\nrotation_interval = {}\nreplace_all_at = {:?}\n",
            params.seed, params.validators, params.rotation_interval, params.replace_all_at
        ),
        None => "enabled = false\n".into(),
    };
    format!(
        "# Headway node configuration. Paths are relative to this file's directory.\n\
         # Flags of `headway run` override these values.\n\n\
         [node]\n\
         # UDP address of the QUIC transport.\n\
         listen = \"{listen}\"\n\
         # Address of the Prometheus endpoint (GET /metrics); comment out to disable.\n\
         {metrics_line}\n\
         # The node's Ed25519 identity key (hex seed). Keep it secret.\n\
         key_file = \"node_key\"\n\
         # Database directory.\n\
         db_dir = \"data\"\n\n\
         [genesis]\n\
         # Block 1's signed header with its validator set: the node's trusted start.\n\
         file = \"genesis.pb\"\n\n\
         [p2p]\n\
         # Peers to stay connected to, as \"<peer id>@<host:port>\".\n\
         bootstrap = [{peers}]\n\
         # Most inbound connections.\n\
         max_inbound = 64\n\
         # Peer requests answered at once (default: the core count, 2 to 16).\n\
         # answer_concurrency = 4\n\
         # Largest UDP payload sent and accepted, in bytes (1200 to 6550; default 1452, what an\n\
         # Ethernet path carries). Raise it where the path MTU is larger (jumbo frames).\n\
         # max_udp_payload_size = 1452\n\n\
         [sync]\n\
         # Header sync protocol: \"v1\" (batches of 50, R1-R8) or \"v2\" (parallel MMR ranges).\n\
         header_sync = \"{sync}\"\n\
         # Full 50-header GetHeaders batches served per peer per second (sliding window; smaller\n\
         # requests cost less, a single header 1/6 of a batch); more are answered RATE_LIMITED.\n\
         get_headers_per_second = {rate}\n\
         # Milliseconds before an unanswered request times out and moves to another peer.\n\
         request_timeout_ms = 15000\n\
         # Seconds a peer that sent invalid data stays banned.\n\
         ban_seconds = 60\n\
         # While behind its peers, log sync progress (height, target, rate, time left) this\n\
         # often, in milliseconds; 0 turns it off.\n\
         progress_log_ms = 10000\n\
         # v2 only: trust a checkpoint instead of the genesis, by header hash or validator set hash.\n\
         # [sync.checkpoint]\n\
         # height = 10000\n\
         # header_hash = \"<64 hex digits>\"\n\n\
         [producer]\n\
         # Devnet block production from the deterministic chain generator.\n\
         {producer_section}",
        rate = default_rate(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses_back() {
        let params = DevnetParams {
            seed: 7,
            validators: 4,
            rotation_interval: 10,
            replace_all_at: vec![50],
        };
        let text = template(
            "127.0.0.1:1".parse().unwrap(),
            Some("127.0.0.1:2".parse().unwrap()),
            &[],
            Some((&params, 100, 500)),
            HeaderSyncMode::V2,
        );
        let config: Config = toml::from_str(&text).unwrap();
        assert!(config.producer.enabled);
        assert_eq!(config.producer.devnet, params);
        assert_eq!(config.sync.header_sync, HeaderSyncMode::V2);
        assert_eq!(config.producer.prebuilt_blocks, 100);
        // The template states the default, and a config without the line gets it too.
        assert_eq!(
            config.sync.progress_log_ms,
            SyncSection::default().progress_log_ms
        );
        assert_eq!(SyncSection::default().progress_log_ms, 10_000);
    }

    #[test]
    fn serving_rate_out_of_range_is_refused() {
        check_loads(
            &format!("get_headers_per_second = {}", default_rate()),
            "get_headers_per_second",
            &[
                (0, false),
                (1, true),
                (MAX_GET_HEADERS_PER_SECOND, true),
                (MAX_GET_HEADERS_PER_SECOND + 1, false),
            ],
            |config| config.sync.get_headers_per_second,
        );
    }

    /// Loads the template with `placeholder` (a setting as the template
    /// writes it) replaced by `setting = n` for each case, and checks which
    /// load: those that do give `n` back through `get`, the others an error
    /// naming the setting.
    fn check_loads<T: Copy + std::fmt::Display + PartialEq + std::fmt::Debug>(
        placeholder: &str,
        setting: &str,
        cases: &[(T, bool)],
        get: impl Fn(&Config) -> T,
    ) {
        let dir = std::env::temp_dir().join(format!("headway-{setting}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = template_text();
        for &(n, ok) in cases {
            let path = dir.join(format!("{setting}-{n}.toml"));
            let edited = text.replace(placeholder, &format!("{setting} = {n}"));
            assert_ne!(edited, text, "the template mentions {setting}");
            std::fs::write(&path, edited).unwrap();
            let result = Config::load(&path);
            assert_eq!(result.is_ok(), ok, "{setting} = {n}: {result:?}");
            match result {
                Ok(config) => assert_eq!(get(&config), n),
                Err(e) => assert!(e.to_string().contains(setting), "{e}"),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// [`check_loads`] for a setting the template leaves commented out
    /// (`placeholder`), and so at its default.
    fn check_setting_range<T: Copy + std::fmt::Display + PartialEq + std::fmt::Debug>(
        placeholder: &str,
        setting: &str,
        cases: &[(T, bool)],
        get: impl Fn(&Config) -> Option<T>,
    ) {
        assert_eq!(
            get(&toml::from_str::<Config>(&template_text()).unwrap()),
            None,
            "the template leaves the default"
        );
        check_loads(placeholder, setting, cases, |config| {
            get(config).expect("a loaded setting")
        });
    }

    /// The template `init` writes, for a v1 node with no peers.
    fn template_text() -> String {
        template(
            "127.0.0.1:1".parse().unwrap(),
            None,
            &[],
            None,
            HeaderSyncMode::V1,
        )
    }

    #[test]
    fn a_ban_longer_than_a_year_is_refused() {
        let year = MAX_BAN_DURATION.as_secs();
        check_loads(
            "ban_seconds = 60",
            "ban_seconds",
            &[
                (0, true),
                (year, true),
                (year + 1, false),
                (i64::MAX as u64, false),
            ],
            |config| config.sync.ban_seconds,
        );
    }

    #[test]
    fn answer_concurrency_out_of_range_is_refused() {
        check_setting_range(
            "# answer_concurrency = 4",
            "answer_concurrency",
            &[
                (0, false),
                (1, true),
                (MAX_ANSWER_CONCURRENCY, true),
                (MAX_ANSWER_CONCURRENCY + 1, false),
            ],
            |config| config.p2p.answer_concurrency,
        );
    }

    #[test]
    fn max_udp_payload_size_out_of_range_is_refused() {
        check_setting_range(
            "# max_udp_payload_size = 1452",
            "max_udp_payload_size",
            &[
                (0, false),
                (MIN_UDP_PAYLOAD_SIZE - 1, false),
                (MIN_UDP_PAYLOAD_SIZE, true),
                (MAX_UDP_PAYLOAD_SIZE, true),
                (MAX_UDP_PAYLOAD_SIZE + 1, false),
                (9000, false),
            ],
            |config| config.p2p.max_udp_payload_size,
        );
    }

    #[test]
    fn bad_peer_entries_say_what_is_wrong() {
        assert!(
            parse_peer("nope")
                .unwrap_err()
                .to_string()
                .contains("missing '@'")
        );
        assert!(
            parse_peer("zz@127.0.0.1:1")
                .unwrap_err()
                .to_string()
                .contains("invalid peer id")
        );
    }
}
