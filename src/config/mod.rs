//! Configuration: `conf/flink-conf.yaml` with Flink's key names, layered with figment as
//! built-in defaults < conf file < `FLOE_*` environment < the pipeline file's settings <
//! `-D key=value`. Flink 1.x and 2.x key names both work (the 2.x name wins within a layer),
//! values are read in Flink's formats, and every effective value keeps where it came from.
//!
//! The result is the typed [`Config`]; the rest of floe reads that, never the YAML. This
//! module does not start anything and does not create directories.
//!
//! - `keys`: the key table (canonical names, aliases, defaults, env names, did-you-mean).
//! - `values`: duration, memory size, boolean and enum parsing with Flink's messages.
//! - `load`: finding the file, reading each layer, merging with figment.
//! - `build`: effective text values → typed [`Config`], with Flink's limits.
//! - `render`: the `floe config` table and JSON.
//! - `live`: which keys a running job takes without a restart, and what changed between loads.

mod build;
pub mod keys;
pub mod live;
mod load;
mod render;
pub mod values;

pub use keys::{known_keys, Effect, KeySpec, Kind};
pub use load::{conf_file, load, load_with_conf_text, load_with_env, MAX_CONF_BYTES};
pub use render::{render_json, render_reference_markdown, render_text};

use serde::Serialize;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A setting the pipeline file gives for a configuration key (its `parallelism`,
/// `max-parallelism`, `checkpointing:` block, `config:` block), with where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSetting {
    /// The canonical or alias Flink key (`execution.checkpointing.interval`).
    pub key: String,
    /// The value as written, as text (`10 s`, `3`, `true`).
    pub value: String,
    /// Where it stands: `pipelines/wordcount.yaml:7` (or without a line when unknown).
    pub origin: String,
}

/// What to load. The CLI fills it from `--conf-dir`, the pipeline file and `-D`.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--conf-dir`; when `None`, `FLOE_CONF_DIR`, else `./conf` (which may be missing).
    pub conf_dir: Option<PathBuf>,
    /// The pipeline file's settings, layered over the environment.
    pub pipeline_settings: Vec<PipelineSetting>,
    /// `-D` arguments as written after the flag: `key=value`.
    pub dynamic: Vec<String>,
}

/// A loaded configuration.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Unknown keys, deprecated values, keys given under two names: one line each, for the
    /// caller to log or print.
    pub warnings: Vec<String>,
    /// Every known key's effective value and where it came from, in table order.
    pub entries: Vec<Entry>,
    /// The conf file read, if any.
    pub conf_file: Option<PathBuf>,
}

/// One key's effective value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// The canonical (Flink 2.x) name.
    pub key: String,
    /// The value as written (or the default's text); empty when unset with no default.
    pub value: String,
    pub origin: Origin,
    /// The deprecated name it was given under, if not the canonical one.
    pub written_as: Option<String>,
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "layer", rename_all = "snake_case")]
pub enum Origin {
    /// floe's built-in default (Flink's default).
    Default,
    /// A line of the conf file.
    File { path: PathBuf, line: Option<usize> },
    /// A `FLOE_*` environment variable.
    Env { var: String },
    /// The pipeline file; `at` is the location it gave (`pipelines/p.yaml:7`).
    Pipeline { at: String },
    /// A `-D` argument on the command line.
    Dynamic { arg: String },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File {
                path,
                line: Some(l),
            } => write!(f, "{}:{l}", path.display()),
            Origin::File { path, line: None } => write!(f, "{}", path.display()),
            Origin::Env { var } => write!(f, "env {var}"),
            Origin::Pipeline { at } => write!(f, "pipeline {at}"),
            Origin::Dynamic { .. } => f.write_str("-D"),
        }
    }
}

/// One problem found while loading; [`ConfigError`] carries all of them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigProblem {
    #[error("configuration directory {} (from {given_by}) does not exist; create it or point {given_by} at the directory holding flink-conf.yaml", dir.display())]
    MissingConfDir { dir: PathBuf, given_by: String },
    #[error("no flink-conf.yaml (or config.yaml) in configuration directory {} (from {given_by})", dir.display())]
    MissingConfFile { dir: PathBuf, given_by: String },
    #[error("cannot read {}: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("{}{}: invalid YAML: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Yaml {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error("{origin}: '{key}' has {what}; expected a single value")]
    NotAScalar {
        key: String,
        origin: Origin,
        what: String,
    },
    #[error("-D {arg}: expected key=value, e.g. -D execution.checkpointing.interval=10s")]
    BadDynamic { arg: String },
    #[error("{origin}: invalid value '{value}' for key '{key}': {reason}. Accepted: {accepted}")]
    BadValue {
        key: String,
        origin: Origin,
        value: String,
        reason: String,
        accepted: String,
    },
}

/// Loading failed; Display gives every problem, one per line. Callers exit 78.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("{}", lines(.0))]
    Invalid(Vec<ConfigProblem>),
}

impl ConfigError {
    pub fn problems(&self) -> &[ConfigProblem] {
        match self {
            ConfigError::Invalid(p) => p,
        }
    }
}

fn lines(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The typed configuration the rest of floe reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `parallelism.default`, 1..=32768.
    pub parallelism_default: u32,
    /// `pipeline.max-parallelism`; `None` = derive from the parallelism (Flink's -1).
    pub max_parallelism: Option<u32>,
    pub checkpointing: CheckpointingConfig,
    pub state: StateConfig,
    pub recovery: RecoveryConfig,
    pub restart: RestartStrategy,
    pub rest: RestConfig,
    /// `s3.*`: how `s3://` checkpoint and savepoint paths are reached.
    pub s3: S3Config,
    /// `taskmanager.memory.network.max`: bytes the channels between subtasks may take.
    pub network_memory_max: u64,
    /// `service.*`: how `floe serve` looks after a pipeline.
    pub service: ServiceConfig,
}

/// floe's own `service.*` keys (`floe serve`).
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// `service.reload.probation`; `None`: derived from the checkpoint interval.
    pub probation: Option<Duration>,
    /// `service.savepoints.num-retained`, at least 1.
    pub savepoints_retained: u32,
    /// `service.history.max-versions`.
    pub history_versions: u32,
}

impl ServiceConfig {
    /// The probation of a reloaded version: the key, else twice the checkpoint interval plus
    /// 10 s, else (checkpointing off) 5 s.
    pub fn probation_for(&self, interval: Option<Duration>) -> Duration {
        self.probation.unwrap_or(match interval {
            Some(i) => i.saturating_mul(2) + Duration::from_secs(10),
            None => Duration::from_secs(5),
        })
    }
}

/// Flink's `execution.checkpointing.mode`: aligned barriers (exactly once) or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum CheckpointingMode {
    #[default]
    ExactlyOnce,
    AtLeastOnce,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ExternalizedRetention {
    RetainOnCancellation,
    DeleteOnCancellation,
    NoExternalizedCheckpoints,
}

/// The state backend. floe has no RocksDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StateBackendKind {
    /// Keyed state on the heap (`hashmap`; also `filesystem`, deprecated).
    HashMap,
    /// `jobmanager`: as hashmap, snapshots kept inline in `_metadata`.
    JobManager,
}

/// `execution.checkpointing.storage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CheckpointStorageKind {
    JobManager,
    FileSystem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ClaimMode {
    Claim,
    NoClaim,
    Legacy,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointingConfig {
    /// `None` = checkpointing disabled (Flink's default).
    pub interval: Option<Duration>,
    pub mode: CheckpointingMode,
    pub timeout: Duration,
    pub min_pause: Duration,
    pub max_concurrent: u32,
    pub tolerable_failed: u32,
    pub externalized_retention: ExternalizedRetention,
    pub unaligned: bool,
    /// `execution.checkpointing.aligned-checkpoint-timeout`.
    pub aligned_checkpoint_timeout: Duration,
    /// `execution.checkpointing.unaligned.forced`.
    pub unaligned_forced: bool,
    /// `execution.checkpointing.checkpoints-after-tasks-finish`.
    pub checkpoints_after_tasks_finish: bool,
    /// `execution.checkpointing.interval-during-backlog`.
    pub interval_during_backlog: Option<Duration>,
    /// `web.checkpoints.history`: recent checkpoints the REST statistics list.
    pub history: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StateConfig {
    pub backend: StateBackendKind,
    /// `None` = filesystem when a checkpoint dir is set, else jobmanager (Flink's rule).
    pub storage: Option<CheckpointStorageKind>,
    pub checkpoints_dir: Option<String>,
    pub savepoints_dir: Option<String>,
    pub num_retained: u32,
    pub incremental: bool,
    /// Bytes; at most 1 MiB.
    pub inline_threshold: u64,
    /// Bytes.
    pub write_buffer_size: u64,
    pub create_subdir: bool,
    /// `execution.checkpointing.cleaner.parallel-mode`.
    pub cleaner_parallel: bool,
    /// `execution.checkpointing.local-backup.enabled`.
    pub local_backup: bool,
}

impl StateConfig {
    /// The checkpoint storage in effect, by Flink's `CheckpointStorageLoader` rule.
    pub fn effective_storage(&self) -> CheckpointStorageKind {
        match (self.storage, &self.checkpoints_dir) {
            (Some(s), _) => s,
            (None, Some(_)) => CheckpointStorageKind::FileSystem,
            (None, None) => CheckpointStorageKind::JobManager,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecoveryConfig {
    pub path: Option<String>,
    pub ignore_unclaimed_state: bool,
    pub claim_mode: ClaimMode,
}

/// What the runtime does when a job fails.
#[derive(Debug, Clone, PartialEq)]
pub enum RestartStrategy {
    /// Fail the job.
    None,
    FixedDelay {
        attempts: u32,
        delay: Duration,
    },
    FailureRate {
        max_failures_per_interval: u32,
        interval: Duration,
        delay: Duration,
    },
    ExponentialDelay {
        initial_backoff: Duration,
        max_backoff: Duration,
        backoff_multiplier: f64,
        reset_backoff_threshold: Duration,
        jitter_factor: f64,
        attempts_before_reset_backoff: u32,
    },
}

#[derive(Clone, PartialEq)]
pub struct RestConfig {
    pub bind_address: String,
    pub port: u16,
    pub address: String,
    /// `rest.auth.token`.
    pub auth_token: Option<String>,
    /// `rest.auth.token-file`.
    pub auth_token_file: Option<String>,
    /// `rest.savepoints.allowed-dirs`, split at commas.
    pub savepoints_allowed_dirs: Vec<String>,
    /// `rest.allowed-hosts`, split at commas.
    pub allowed_hosts: Vec<String>,
    /// `rest.server.max-content-length`, bytes.
    pub max_content_length: u64,
    /// `rest.server.read-timeout`.
    pub read_timeout: Duration,
    /// `web.submit.enable`.
    pub submit_enabled: bool,
    /// `web.submit.allowed-dirs`, split at commas.
    pub submit_allowed_dirs: Vec<String>,
}

impl fmt::Debug for RestConfig {
    /// The token never appears in Debug output (logs, panics).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestConfig")
            .field("bind_address", &self.bind_address)
            .field("port", &self.port)
            .field("address", &self.address)
            .field("auth_token", &self.auth_token.as_ref().map(|_| "***"))
            .field("auth_token_file", &self.auth_token_file)
            .field("savepoints_allowed_dirs", &self.savepoints_allowed_dirs)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("max_content_length", &self.max_content_length)
            .field("read_timeout", &self.read_timeout)
            .field("submit_enabled", &self.submit_enabled)
            .field("submit_allowed_dirs", &self.submit_allowed_dirs)
            .finish()
    }
}

/// Flink's `s3.*` keys. Unset values fall back to the AWS environment where the checkpoint
/// storage opens a bucket (`checkpoint::storage`), not here: this module reads no environment
/// beyond `FLOE_*`.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct S3Config {
    /// `s3.endpoint`.
    pub endpoint: Option<String>,
    /// `s3.access-key`.
    pub access_key: Option<String>,
    /// `s3.secret-key`.
    pub secret_key: Option<String>,
    /// `s3.path.style.access`.
    pub path_style_access: bool,
}

impl fmt::Debug for S3Config {
    /// The keys never appear in Debug output (logs, panics).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("access_key", &self.access_key.as_ref().map(|_| "***"))
            .field("secret_key", &self.secret_key.as_ref().map(|_| "***"))
            .field("path_style_access", &self.path_style_access)
            .finish()
    }
}

impl Default for Config {
    /// Flink's defaults (what an empty conf file gives).
    fn default() -> Self {
        build::defaults()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_flinks() {
        let c = Config::default();
        assert_eq!(c.parallelism_default, 1);
        assert_eq!(c.max_parallelism, None);
        assert_eq!(c.checkpointing.interval, None);
        assert_eq!(c.checkpointing.timeout, Duration::from_secs(600));
        assert_eq!(c.checkpointing.mode, CheckpointingMode::ExactlyOnce);
        assert_eq!(
            c.checkpointing.externalized_retention,
            ExternalizedRetention::NoExternalizedCheckpoints
        );
        assert_eq!(c.state.inline_threshold, 20 * 1024);
        assert_eq!(c.state.write_buffer_size, 4096);
        assert_eq!(c.state.num_retained, 1);
        assert!(c.state.create_subdir);
        assert_eq!(c.state.backend, StateBackendKind::HashMap);
        assert_eq!(
            c.state.effective_storage(),
            CheckpointStorageKind::JobManager
        );
        assert_eq!(c.recovery.claim_mode, ClaimMode::NoClaim);
        assert_eq!(c.restart, RestartStrategy::None);
        assert_eq!(c.rest.port, 8081);
        assert_eq!(c.rest.bind_address, "127.0.0.1");
        assert_eq!(c.rest.address, "localhost");
        assert_eq!(c.checkpointing.history, 10);
    }

    #[test]
    fn origins_display() {
        assert_eq!(Origin::Default.to_string(), "default");
        let f = Origin::File {
            path: "conf/flink-conf.yaml".into(),
            line: Some(12),
        };
        assert_eq!(f.to_string(), "conf/flink-conf.yaml:12");
        assert_eq!(
            Origin::Env {
                var: "FLOE_X".into()
            }
            .to_string(),
            "env FLOE_X"
        );
        assert_eq!(
            Origin::Pipeline {
                at: "p.yaml:7".into()
            }
            .to_string(),
            "pipeline p.yaml:7"
        );
        assert_eq!(Origin::Dynamic { arg: "a=b".into() }.to_string(), "-D");
    }
}
