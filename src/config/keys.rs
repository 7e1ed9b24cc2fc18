//! The table of configuration keys floe knows: Flink's canonical (2.x) name, the deprecated
//! 1.x names still read, the value kind, the default as Flink writes it, and the `FLOE_*`
//! environment name of each. Lookup and did-you-mean live here; parsing values does not.

use std::fmt;

/// What a key's value is, for docs and for the accepted-forms text of errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Duration,
    MemorySize,
    Bool,
    Integer,
    Float,
    /// One of the listed names, case-insensitive.
    Enum(&'static [&'static str]),
    Text,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Duration => f.write_str("duration"),
            Kind::MemorySize => f.write_str("memory size"),
            Kind::Bool => f.write_str("boolean"),
            Kind::Integer => f.write_str("integer"),
            Kind::Float => f.write_str("number"),
            Kind::Enum(names) => write!(f, "one of {}", names.join(", ")),
            Kind::Text => f.write_str("string"),
        }
    }
}

/// Whether floe acts on a key's value. Every key floe accepts either works or says it does
/// not: a `NoEffect` key set to anything but its default gets a warning at load, and the
/// generated configuration reference marks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// floe acts on the value.
    Works,
    /// Accepted so that Flink configuration files load; floe does not act on it, for the
    /// reason given.
    NoEffect(&'static str),
}

/// One known key.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// Flink's current (1.20+/2.x) name; what floe reports.
    pub canonical: &'static str,
    /// Older names still read, in Flink's fallback order (the first present wins when
    /// several old names are given without the new one).
    pub aliases: &'static [&'static str],
    pub kind: Kind,
    /// The default as text in Flink's format; `None` = unset.
    pub default: Option<&'static str>,
    pub doc: &'static str,
    pub effect: Effect,
}

impl KeySpec {
    /// Marks a key floe accepts but does not act on.
    const fn no_effect(self, why: &'static str) -> KeySpec {
        KeySpec {
            effect: Effect::NoEffect(why),
            ..self
        }
    }
}

const fn key(
    canonical: &'static str,
    aliases: &'static [&'static str],
    kind: Kind,
    default: Option<&'static str>,
    doc: &'static str,
) -> KeySpec {
    KeySpec {
        canonical,
        aliases,
        kind,
        default,
        doc,
        effect: Effect::Works,
    }
}

use Kind::*;

pub const CHECKPOINTING_MODES: &[&str] = &["EXACTLY_ONCE", "AT_LEAST_ONCE"];
pub const RETENTIONS: &[&str] = &[
    "RETAIN_ON_CANCELLATION",
    "DELETE_ON_CANCELLATION",
    "NO_EXTERNALIZED_CHECKPOINTS",
];
pub const CLAIM_MODES: &[&str] = &["CLAIM", "NO_CLAIM", "LEGACY"];
pub const BACKENDS: &[&str] = &["hashmap", "jobmanager", "filesystem"];
pub const STORAGES: &[&str] = &["jobmanager", "filesystem"];
pub const RESTART_TYPES: &[&str] = &[
    "none",
    "off",
    "disable",
    "fixed-delay",
    "fixeddelay",
    "failure-rate",
    "failurerate",
    "exponential-delay",
    "exponentialdelay",
];

/// Every key floe knows, canonical names, grouped as Flink's docs group them.
pub static KEYS: &[KeySpec] = &[
    // --- state backend and checkpoint storage
    key("state.backend.type", &["state.backend"], Enum(BACKENDS), Some("hashmap"),
        "The state backend: `hashmap` (keyed state on the heap). `filesystem` is read as hashmap (deprecated), `jobmanager` keeps snapshots inline in _metadata."),
    key("state.backend.async", &[], Bool, Some("true"),
        "Deprecated no-op kept for old files: every snapshot is asynchronous.")
        .no_effect("every snapshot is taken asynchronously"),
    key("execution.checkpointing.storage", &["state.checkpoint-storage"], Enum(STORAGES), None,
        "Checkpoint storage: `jobmanager` or `filesystem`. Unset: filesystem when a checkpoint directory is set, else jobmanager."),
    key("execution.checkpointing.dir", &["state.checkpoints.dir", "state.backend.fs.checkpointdir"], Text, None,
        "Directory (path, file:// URI or s3://bucket/prefix) for checkpoint data and _metadata."),
    key("execution.checkpointing.savepoint-dir", &["state.savepoints.dir", "savepoints.state.backend.fs.dir"], Text, None,
        "Default target directory of savepoints (path, file:// URI or s3://bucket/prefix)."),
    key("execution.checkpointing.num-retained", &["state.checkpoints.num-retained"], Integer, Some("1"),
        "Number of completed checkpoints kept."),
    key("execution.checkpointing.incremental", &["state.backend.incremental"], Bool, Some("false"),
        "Incremental checkpoints."),
    key("execution.checkpointing.data-inline-threshold", &["state.storage.fs.memory-threshold", "state.backend.fs.memory-threshold"], MemorySize, Some("20 kb"),
        "State chunks smaller than this are inlined in _metadata (max 1 mb)."),
    key("execution.checkpointing.write-buffer-size", &["state.storage.fs.write-buffer-size", "state.backend.fs.write-buffer-size"], MemorySize, Some("4096"),
        "Write buffer of checkpoint streams, in bytes (effective: the larger of this and the inline threshold).")
        .no_effect("floe writes each state file in one piece and has no stream write buffer"),
    key("execution.checkpointing.create-subdir", &["state.checkpoints.create-subdir"], Bool, Some("true"),
        "Put checkpoints under a <job-id>/ sub-directory."),
    key("execution.checkpointing.cleaner.parallel-mode", &["state.checkpoint.cleaner.parallel-mode"], Bool, Some("true"),
        "Discard checkpoint files in parallel.")
        .no_effect("floe deletes a subsumed checkpoint's files on a background thread, one after another"),
    key("execution.checkpointing.local-backup.enabled", &["state.backend.local-recovery", "execution.state-recovery.from-local"], Bool, Some("false"),
        "Keep a local copy of state for recovery.")
        .no_effect("floe keeps state in the process and restores from the checkpoint storage only"),
    // --- S3 checkpoint storage (s3:// in execution.checkpointing.dir or savepoint-dir)
    key("s3.endpoint", &[], Text, None,
        "S3 endpoint URL for s3:// checkpoint and savepoint paths (e.g. http://127.0.0.1:8333 for SeaweedFS or MinIO); unset: AWS_ENDPOINT_URL, else AWS."),
    key("s3.access-key", &[], Text, None,
        "S3 access key id; unset: AWS_ACCESS_KEY_ID, else the AWS profile or instance credentials. A secret: shown masked."),
    key("s3.secret-key", &[], Text, None,
        "S3 secret access key; unset: AWS_SECRET_ACCESS_KEY. A secret: shown masked."),
    key("s3.path.style.access", &[], Bool, Some("false"),
        "Address buckets as <endpoint>/<bucket> (path style, what most self-hosted S3 servers need) instead of <bucket>.<endpoint>."),
    // --- checkpointing
    key("execution.checkpointing.interval", &[], Duration, None,
        "Checkpoint interval; unset = checkpointing disabled. At least 10 ms."),
    key("execution.checkpointing.mode", &[], Enum(CHECKPOINTING_MODES), Some("EXACTLY_ONCE"),
        "Checkpointing guarantee."),
    key("execution.checkpointing.timeout", &[], Duration, Some("10 min"),
        "A checkpoint not complete within this is discarded. At least 10 ms."),
    key("execution.checkpointing.min-pause", &[], Duration, Some("0 ms"),
        "Minimal pause between the end of one checkpoint and the start of the next."),
    key("execution.checkpointing.max-concurrent-checkpoints", &[], Integer, Some("1"),
        "Checkpoints that may be in progress at once."),
    key("execution.checkpointing.tolerable-failed-checkpoints", &[], Integer, Some("0"),
        "Consecutive checkpoint failures tolerated before the job fails over."),
    key("execution.checkpointing.externalized-checkpoint-retention", &[], Enum(RETENTIONS), Some("NO_EXTERNALIZED_CHECKPOINTS"),
        "What happens to retained checkpoints when the job is cancelled."),
    key("execution.checkpointing.unaligned.enabled", &["execution.checkpointing.unaligned"], Bool, Some("false"),
        "Unaligned checkpoints (needs EXACTLY_ONCE and max-concurrent-checkpoints 1).")
        .no_effect("floe takes aligned checkpoints only"),
    key("execution.checkpointing.aligned-checkpoint-timeout", &["execution.checkpointing.alignment-timeout"], Duration, Some("0 ms"),
        "With unaligned checkpoints: start aligned, switch to unaligned after this.")
        .no_effect("floe takes aligned checkpoints only"),
    key("execution.checkpointing.unaligned.forced", &[], Bool, Some("false"),
        "Force unaligned checkpoints.")
        .no_effect("floe takes aligned checkpoints only"),
    key("execution.checkpointing.checkpoints-after-tasks-finish", &["execution.checkpointing.checkpoints-after-tasks-finish.enabled"], Bool, Some("true"),
        "A bounded input ends with a final checkpoint, with which sinks commit their last output; false: checkpoints stop once a source finished, and output after the last completed checkpoint is never committed (as in Flink)."),
    key("execution.checkpointing.interval-during-backlog", &[], Duration, None,
        "Checkpoint interval while sources report backlog; 0 = none during backlog.")
        .no_effect("no floe source reports backlog; the checkpoint interval applies throughout"),
    // --- recovery
    key("execution.state-recovery.path", &["execution.savepoint.path"], Text, None,
        "Checkpoint or savepoint to restore from (as `floe run -s`)."),
    key("execution.state-recovery.ignore-unclaimed-state", &["execution.savepoint.ignore-unclaimed-state"], Bool, Some("false"),
        "Allow state that maps to no operator (as `floe run -n`)."),
    key("execution.state-recovery.claim-mode", &["execution.savepoint-restore-mode"], Enum(CLAIM_MODES), Some("NO_CLAIM"),
        "Who owns the restored snapshot's files."),
    // --- parallelism
    key("parallelism.default", &[], Integer, Some("1"),
        "Default parallelism of operators (1..32768)."),
    key("pipeline.max-parallelism", &[], Integer, Some("-1"),
        "Number of key groups (1..32768); -1 = derive from the parallelism."),
    // --- restart strategy
    key("restart-strategy.type", &["restart-strategy"], Enum(RESTART_TYPES), None,
        "Restart strategy; unset = exponential-delay when checkpointing is on, else none."),
    key("restart-strategy.fixed-delay.attempts", &[], Integer, Some("1"),
        "fixed-delay: restarts before the job fails."),
    key("restart-strategy.fixed-delay.delay", &[], Duration, Some("1 s"),
        "fixed-delay: pause between restarts."),
    key("restart-strategy.failure-rate.max-failures-per-interval", &[], Integer, Some("1"),
        "failure-rate: failures tolerated within the interval."),
    key("restart-strategy.failure-rate.failure-rate-interval", &[], Duration, Some("1 min"),
        "failure-rate: the measuring interval."),
    key("restart-strategy.failure-rate.delay", &[], Duration, Some("1 s"),
        "failure-rate: pause between restarts."),
    key("restart-strategy.exponential-delay.initial-backoff", &[], Duration, Some("1 s"),
        "exponential-delay: first pause."),
    key("restart-strategy.exponential-delay.max-backoff", &[], Duration, Some("1 min"),
        "exponential-delay: largest pause."),
    key("restart-strategy.exponential-delay.backoff-multiplier", &[], Float, Some("1.5"),
        "exponential-delay: factor applied to the pause after each failure (at least 1)."),
    key("restart-strategy.exponential-delay.reset-backoff-threshold", &[], Duration, Some("1 h"),
        "exponential-delay: running this long without failure resets the pause."),
    key("restart-strategy.exponential-delay.jitter-factor", &[], Float, Some("0.1"),
        "exponential-delay: random share added to or taken from the pause (0..1)."),
    key("restart-strategy.exponential-delay.attempts-before-reset-backoff", &[], Integer, Some("2147483647"),
        "exponential-delay: restarts before the job fails."),
    // --- REST and web
    key("rest.bind-address", &[], Text, Some("127.0.0.1"),
        "Address the REST server listens on."),
    key("rest.port", &[], Integer, Some("8081"),
        "Port of the REST server (0 = any free port)."),
    key("rest.address", &[], Text, Some("localhost"),
        "Address clients (`floe savepoint`, `floe list`) connect to."),
    key("rest.auth.token", &[], Text, None,
        "Bearer token every changing REST call must carry; required when rest.bind-address is not loopback, and for job submission (floe's own key). A secret: shown masked."),
    key("rest.auth.token-file", &[], Text, None,
        "File holding the bearer token, instead of rest.auth.token (floe's own key)."),
    key("rest.savepoints.allowed-dirs", &[], Text, None,
        "Comma-separated directories, besides state.savepoints.dir, that savepoints may be written to and disposed of from through the REST API (floe's own key)."),
    key("rest.allowed-hosts", &[], Text, None,
        "Comma-separated host names the Host header of a REST request may name, besides localhost, loopback addresses, rest.address, rest.bind-address and the address the connection came in on; others get 403 (against DNS rebinding; floe's own key)."),
    key("rest.server.max-content-length", &[], MemorySize, Some("1 mb"),
        "Largest request body the REST server takes; a larger one gets 413."),
    key("rest.server.read-timeout", &[], Duration, Some("30 s"),
        "A REST connection that does not send a complete request header within this time, new or idle between requests, is closed, and a request body must arrive within it (floe's own key)."),
    key("web.submit.enable", &[], Bool, Some("false"),
        "Allow submitting jobs to `floe serve` (`POST /jobs`, `floe run -d`); takes effect only with a token (rest.auth.token or rest.auth.token-file)."),
    key("web.submit.allowed-dirs", &[], Text, None,
        "Comma-separated directories a submitted job's file sources and sinks must lie under; its checkpoint, savepoint and restore paths must lie under them or the service's own checkpoint and savepoint directories (floe's own key)."),
    key("web.checkpoints.history", &[], Integer, Some("10"),
        "Number of recent checkpoints and savepoints the REST checkpoint statistics list (`history`), 0..1000."),
    key("taskmanager.memory.network.max", &["taskmanager.network.memory.max"], MemorySize, Some("1 gb"),
        "Memory budget of the channels between subtasks (Flink's network buffers): a plan whose channels would take more is refused with the numbers."),
    // --- floe serve (floe's own keys; a pipeline's `config:` may set them for itself)
    key("service.reload.probation", &[], Duration, None,
        "How long a reloaded pipeline's new version has to prove itself before the version before is given up: it passes at its first completed checkpoint (checkpointing off: once it ran this long), and is rolled back if it fails first or completes none in time. Unset: twice the checkpoint interval plus 10 s (checkpointing off: 5 s)."),
    key("service.savepoints.num-retained", &[], Integer, Some("3"),
        "Savepoints `floe serve` takes (reload, removal, shutdown) kept per pipeline; older ones are deleted once a newer one is complete."),
    key("service.history.max-versions", &[], Integer, Some("5"),
        "Ended versions (jobs) of each pipeline kept in the REST API, the metrics and the dashboard; also the ended submitted jobs kept."),
];

/// `FLOE_*` variables that are not configuration keys; never warned about.
pub const NON_KEY_ENV: &[&str] = &[
    "FLOE_CONF_DIR",
    "FLOE_LOG",
    "FLOE_LOG_FORMAT",
    "FLOE_PIPELINES_DIR",
    "FLOE_STATE_DIR",
    "FLOE_HOME",
    // A test hook of `checkpoint::savepoint` (tests/security_symlink.rs).
    "FLOE_TEST_SAVEPOINT_PAUSE",
];

/// The prefix of environment variables that set keys.
pub const ENV_PREFIX: &str = "FLOE_";

/// Every known key (canonical names), for docs and other modules.
pub fn known_keys() -> &'static [KeySpec] {
    KEYS
}

/// Finds the spec of a canonical or alias name (exact, case-sensitive as in Flink).
pub fn lookup(name: &str) -> Option<&'static KeySpec> {
    KEYS.iter()
        .find(|k| k.canonical == name || k.aliases.contains(&name))
}

/// The spec of a canonical name. Panics only on a typo in floe's own code (a bug).
pub(crate) fn spec(canonical: &str) -> &'static KeySpec {
    match KEYS.iter().find(|k| k.canonical == canonical) {
        Some(k) => k,
        None => unreachable!("bug: config key {canonical} is not in the key table"),
    }
}

/// `execution.checkpointing.interval` → `FLOE_EXECUTION_CHECKPOINTING_INTERVAL`.
pub fn env_name(key: &str) -> String {
    let mut s = String::with_capacity(ENV_PREFIX.len() + key.len());
    s.push_str(ENV_PREFIX);
    for c in key.chars() {
        s.push(match c {
            '.' | '-' => '_',
            c => c.to_ascii_uppercase(),
        });
    }
    s
}

/// The key (canonical or alias name) an environment variable stands for.
pub fn key_for_env(var: &str) -> Option<&'static str> {
    KEYS.iter()
        .flat_map(|k| std::iter::once(&k.canonical).chain(k.aliases.iter()))
        .find(|name| env_name(name) == var)
        .copied()
}

/// Every name a user may write: canonical names and aliases.
fn all_names() -> impl Iterator<Item = &'static str> {
    KEYS.iter()
        .flat_map(|k| std::iter::once(k.canonical).chain(k.aliases.iter().copied()))
}

/// The closest known name, when close enough to be a likely typo.
pub fn did_you_mean(name: &str) -> Option<&'static str> {
    closest(name, all_names())
}

/// The closest known environment variable name.
pub fn did_you_mean_env(var: &str) -> Option<String> {
    let names: Vec<String> = all_names().map(env_name).collect();
    closest(var, names.iter().map(String::as_str)).map(str::to_string)
}

fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    // Comparing costs the product of the lengths: a name this long is no typo of a key.
    if name.len() > 200 {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    let limit = (name.len() / 5).max(3);
    candidates
        .map(|c| (strsim::levenshtein(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_and_env_names_are_unique() {
        let mut names = HashSet::new();
        let mut envs = HashSet::new();
        for name in all_names() {
            assert!(names.insert(name), "duplicate key name {name}");
            assert!(envs.insert(env_name(name)), "env name clash for {name}");
        }
    }

    #[test]
    fn aliases_resolve_to_canonical() {
        assert_eq!(
            lookup("state.checkpoints.dir").map(|k| k.canonical),
            Some("execution.checkpointing.dir")
        );
        assert_eq!(
            lookup("state.backend").map(|k| k.canonical),
            Some("state.backend.type")
        );
        assert!(lookup("state.checkpoint.dir").is_none());
    }

    #[test]
    fn env_names_map_back() {
        assert_eq!(
            env_name("execution.checkpointing.max-concurrent-checkpoints"),
            "FLOE_EXECUTION_CHECKPOINTING_MAX_CONCURRENT_CHECKPOINTS"
        );
        assert_eq!(
            key_for_env("FLOE_STATE_CHECKPOINTS_NUM_RETAINED"),
            Some("state.checkpoints.num-retained")
        );
        assert_eq!(key_for_env("FLOE_CONF_DIR"), None);
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("state.checkpoint.dir"),
            Some("state.checkpoints.dir")
        );
        assert_eq!(
            did_you_mean("execution.checkpointing.intervall"),
            Some("execution.checkpointing.interval")
        );
        assert_eq!(did_you_mean("completely.unrelated.thing"), None);
        assert_eq!(
            did_you_mean_env("FLOE_EXECUTION_CHECKPOINTING_INTERVALL").as_deref(),
            Some("FLOE_EXECUTION_CHECKPOINTING_INTERVAL")
        );
    }
}
