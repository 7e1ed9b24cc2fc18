//! Effective text values → the typed [`Config`], with Flink's value formats and limits. Every
//! bad value becomes one [`ConfigProblem`] naming key, origin, value and accepted forms; all
//! are collected, none stops the others. Reads no files and no environment.

use super::keys::{self, Kind};
use super::load::Setting;
use super::values::{self, BOOL_FORMS, DURATION_FORMS, MEMORY_FORMS};
use super::*;
use std::collections::BTreeMap;

/// Largest parallelism and max-parallelism (Flink's `UPPER_BOUND_MAX_PARALLELISM`).
pub const MAX_PARALLELISM: i64 = 32768;

/// Largest `web.checkpoints.history` (Flink has no bound; floe keeps every entry in memory).
pub const MAX_CHECKPOINT_HISTORY: i64 = 1000;

struct Ctx<'a> {
    eff: &'a BTreeMap<String, Setting>,
    origins: &'a [Origin],
    problems: &'a mut Vec<ConfigProblem>,
    warnings: &'a mut Vec<String>,
}

impl Ctx<'_> {
    fn get(&self, key: &str) -> Option<(&str, &Origin)> {
        let s = self.eff.get(key)?;
        Some((s.value.as_str(), &self.origins[s.origin]))
    }

    fn bad(&mut self, key: &str, reason: impl Into<String>, accepted: impl Into<String>) {
        let Some((value, origin)) = self.get(key) else {
            return;
        };
        let problem = ConfigProblem::BadValue {
            key: key.to_string(),
            origin: origin.clone(),
            // A secret's value never goes into a message, even a wrong one.
            value: crate::secrets::shown(key, value).into_owned(),
            reason: reason.into(),
            accepted: accepted.into(),
        };
        self.problems.push(problem);
    }

    fn warn(&mut self, key: &str, text: impl std::fmt::Display) {
        let origin = self
            .get(key)
            .map(|(_, o)| o.to_string())
            .unwrap_or_default();
        self.warnings.push(format!("{origin}: {key}: {text}"));
    }

    /// A comma-separated list: its non-empty items, trimmed.
    fn list(&self, key: &str) -> Vec<String> {
        self.text(key)
            .map(|v| {
                v.split(',')
                    .map(|d| d.trim().to_string())
                    .filter(|d| !d.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The text of a key, when set.
    fn text(&self, key: &str) -> Option<String> {
        debug_assert_eq!(keys::spec(key).canonical, key);
        self.get(key).map(|(v, _)| v.to_string())
    }

    /// `None` when unset or bad (bad values are recorded).
    fn duration(&mut self, key: &str) -> Option<Duration> {
        let text = self.text(key)?;
        values::parse_duration(&text)
            .map_err(|reason| self.bad(key, reason, DURATION_FORMS))
            .ok()
    }

    /// A duration with Flink's 10 ms minimum, `what` naming it in Flink's message.
    fn duration_min_10ms(&mut self, key: &str, what: &str) -> Option<Duration> {
        let d = self.duration(key)?;
        if d < Duration::from_millis(10) {
            self.bad(
                key,
                format!("{what} must be larger than or equal to 10 ms"),
                format!("{DURATION_FORMS}, at least 10 ms"),
            );
            return None;
        }
        Some(d)
    }

    fn memory(&mut self, key: &str) -> Option<u64> {
        let text = self.text(key)?;
        values::parse_memory(&text)
            .map_err(|reason| self.bad(key, reason, MEMORY_FORMS))
            .ok()
    }

    fn bool(&mut self, key: &str) -> Option<bool> {
        let text = self.text(key)?;
        let b = values::parse_bool(&text);
        if b.is_none() {
            self.bad(
                key,
                format!("'{}' is not a boolean", text.trim()),
                BOOL_FORMS,
            );
        }
        b
    }

    /// An integer within `min..=max`; `limit` is the message when out of range.
    fn int(&mut self, key: &str, min: i64, max: i64, limit: &str) -> Option<i64> {
        let text = self.text(key)?;
        let accepted = format!("an integer from {min} to {max}");
        let Ok(n) = text.trim().parse::<i64>() else {
            self.bad(
                key,
                format!("'{}' is not an integer", text.trim()),
                accepted,
            );
            return None;
        };
        if !(min..=max).contains(&n) {
            self.bad(key, limit, accepted);
            return None;
        }
        Some(n)
    }

    fn u32(&mut self, key: &str, min: u32, limit: &str) -> Option<u32> {
        self.int(key, min.into(), u32::MAX.into(), limit)
            .and_then(|n| u32::try_from(n).ok())
    }

    fn float(&mut self, key: &str, min: f64, max: f64, limit: &str) -> Option<f64> {
        let text = self.text(key)?;
        let accepted = format!("a number from {min} to {max}");
        match text.trim().parse::<f64>() {
            Ok(f) if (min..=max).contains(&f) => Some(f),
            Ok(_) => {
                self.bad(key, limit, accepted);
                None
            }
            Err(_) => {
                self.bad(key, format!("'{}' is not a number", text.trim()), accepted);
                None
            }
        }
    }

    /// Index into the key's enum names (case-insensitive, underscores as written).
    fn enumeration(&mut self, key: &str) -> Option<usize> {
        let Kind::Enum(names) = keys::spec(key).kind else {
            unreachable!("bug: config key {key} is not an enum");
        };
        let text = self.text(key)?;
        let i = values::parse_enum(&text, names);
        if i.is_none() {
            let reason = if text.contains('-') && names.iter().any(|n| n.contains('_')) {
                "not one of the names (write underscores, not hyphens)"
            } else {
                "not one of the names"
            };
            self.bad(key, reason, format!("{} (any case)", names.join(", ")));
        }
        i
    }
}

/// The built-in defaults layer: every key with a default, at origin index `origin`.
pub(super) fn default_settings(origin: usize) -> BTreeMap<String, Setting> {
    keys::KEYS
        .iter()
        .filter_map(|k| {
            Some((
                k.canonical.to_string(),
                Setting {
                    value: k.default?.to_string(),
                    name: k.canonical.to_string(),
                    origin,
                },
            ))
        })
        .collect()
}

/// Flink's defaults, typed.
pub(super) fn defaults() -> Config {
    let (mut problems, mut warnings) = (Vec::new(), Vec::new());
    // The defaults are floe's own constants; a unit test checks they raise no problem.
    build(
        &default_settings(0),
        &[Origin::Default],
        &mut problems,
        &mut warnings,
    )
    .0
}

/// Types every effective value; returns the config and the entries table. The config is only
/// meaningful when no problem was added.
pub(super) fn build(
    eff: &BTreeMap<String, Setting>,
    origins: &[Origin],
    problems: &mut Vec<ConfigProblem>,
    warnings: &mut Vec<String>,
) -> (Config, Vec<Entry>) {
    let mut c = Ctx {
        eff,
        origins,
        problems,
        warnings,
    };
    let checkpointing = checkpointing(&mut c);
    let state = state(&mut c);
    let recovery = recovery(&mut c);
    let restart = restart(&mut c, checkpointing.interval.is_some());
    let config = Config {
        parallelism_default: c
            .int(
                "parallelism.default",
                1,
                MAX_PARALLELISM,
                "The parallelism must be at least 1 and at most 32768",
            )
            .map_or(1, |n| n as u32),
        max_parallelism: max_parallelism(&mut c),
        checkpointing,
        state,
        recovery,
        restart,
        rest: RestConfig {
            bind_address: c.text("rest.bind-address").unwrap_or_default(),
            port: c
                .int(
                    "rest.port",
                    0,
                    65535,
                    "The port must be between 0 and 65535",
                )
                .map_or(0, |n| n as u16),
            address: c.text("rest.address").unwrap_or_default(),
            auth_token: c.text("rest.auth.token"),
            auth_token_file: c.text("rest.auth.token-file"),
            savepoints_allowed_dirs: c.list("rest.savepoints.allowed-dirs"),
            allowed_hosts: c.list("rest.allowed-hosts"),
            max_content_length: c
                .memory("rest.server.max-content-length")
                .unwrap_or(1 << 20),
            read_timeout: c
                .duration_min_10ms("rest.server.read-timeout", "The REST read timeout")
                .unwrap_or(Duration::from_secs(30)),
            submit_enabled: c.bool("web.submit.enable").unwrap_or(false),
            submit_allowed_dirs: c.list("web.submit.allowed-dirs"),
        },
        s3: S3Config {
            endpoint: c.text("s3.endpoint"),
            access_key: c.text("s3.access-key"),
            secret_key: c.text("s3.secret-key"),
            path_style_access: c.bool("s3.path.style.access").unwrap_or(false),
        },
        network_memory_max: c
            .memory("taskmanager.memory.network.max")
            .unwrap_or(1 << 30),
        service: ServiceConfig {
            probation: c.duration("service.reload.probation"),
            savepoints_retained: c
                .u32(
                    "service.savepoints.num-retained",
                    1,
                    "At least the newest savepoint is kept",
                )
                .unwrap_or(3),
            history_versions: c
                .u32(
                    "service.history.max-versions",
                    0,
                    "Negative number of remembered versions",
                )
                .unwrap_or(5),
        },
    };
    warn_no_effect(&mut c);
    (config, entries(eff, origins))
}

/// Warns about each key floe accepts but does not act on ([`keys::Effect::NoEffect`]), when
/// a layer sets it to something else than its default: a Flink file that spells out the
/// defaults loads quietly, a setting that would change Flink's behaviour is called out.
fn warn_no_effect(c: &mut Ctx) {
    for spec in keys::known_keys() {
        let keys::Effect::NoEffect(why) = spec.effect else {
            continue;
        };
        let Some((value, origin)) = c.get(spec.canonical) else {
            continue;
        };
        if matches!(origin, Origin::Default)
            || spec
                .default
                .is_some_and(|d| values::same_value(spec.kind, d, value))
        {
            continue;
        }
        c.warn(
            spec.canonical,
            format!("accepted for Flink compatibility and has no effect in floe: {why}"),
        );
    }
}

fn max_parallelism(c: &mut Ctx) -> Option<u32> {
    const KEY: &str = "pipeline.max-parallelism";
    let limit =
        "The maximum parallelism must be -1 (derive from the parallelism) or between 1 and 32768";
    match c.int(KEY, -1, MAX_PARALLELISM, limit)? {
        -1 => None,
        0 => {
            c.bad(KEY, limit, "-1 or an integer from 1 to 32768");
            None
        }
        n => Some(n as u32),
    }
}

fn checkpointing(c: &mut Ctx) -> CheckpointingConfig {
    use CheckpointingMode::*;
    use ExternalizedRetention::*;
    const P: &str = "execution.checkpointing.";
    let k = |s: &str| format!("{P}{s}");
    CheckpointingConfig {
        interval: c.duration_min_10ms(&k("interval"), "Checkpoint interval"),
        mode: match c.enumeration(&k("mode")) {
            Some(1) => AtLeastOnce,
            _ => ExactlyOnce,
        },
        timeout: c
            .duration_min_10ms(&k("timeout"), "Checkpoint timeout")
            .unwrap_or(Duration::from_secs(600)),
        // A parsed duration is never negative: Flink's "Pause value must be zero or
        // positive" cannot arise.
        min_pause: c.duration(&k("min-pause")).unwrap_or_default(),
        max_concurrent: c
            .u32(
                &k("max-concurrent-checkpoints"),
                1,
                "The maximum number of concurrent attempts must be at least one.",
            )
            .unwrap_or(1),
        tolerable_failed: c
            .u32(
                &k("tolerable-failed-checkpoints"),
                0,
                "The tolerable failure checkpoint number must be non-negative.",
            )
            .unwrap_or_default(),
        externalized_retention: match c.enumeration(&k("externalized-checkpoint-retention")) {
            Some(0) => RetainOnCancellation,
            Some(1) => DeleteOnCancellation,
            _ => NoExternalizedCheckpoints,
        },
        unaligned: c.bool(&k("unaligned.enabled")).unwrap_or_default(),
        aligned_checkpoint_timeout: c
            .duration(&k("aligned-checkpoint-timeout"))
            .unwrap_or_default(),
        unaligned_forced: c.bool(&k("unaligned.forced")).unwrap_or_default(),
        checkpoints_after_tasks_finish: c
            .bool(&k("checkpoints-after-tasks-finish"))
            .unwrap_or(true),
        interval_during_backlog: c.duration(&k("interval-during-backlog")),
        history: c
            .int(
                "web.checkpoints.history",
                0,
                MAX_CHECKPOINT_HISTORY,
                "The number of remembered checkpoints must be between 0 and 1000 in floe",
            )
            .map_or(10, |n| n as u32),
    }
}

fn state(c: &mut Ctx) -> StateConfig {
    const P: &str = "execution.checkpointing.";
    let k = |s: &str| format!("{P}{s}");
    let backend = backend(c);
    // Only checked for a valid boolean; `warn_no_effect` says it does nothing.
    c.bool("state.backend.async");
    let checkpoints_dir = c.text(&k("dir"));
    let storage = storage(c, checkpoints_dir.is_some());
    let inline_key = k("data-inline-threshold");
    let mut inline_threshold = c.memory(&inline_key).unwrap_or(20 * 1024);
    if inline_threshold > 1 << 20 {
        c.bad(
            &inline_key,
            format!(
                "{} is above the maximum of 1 mb (Flink would silently use 20 kb; floe refuses)",
                values::format_memory(inline_threshold)
            ),
            format!("{MEMORY_FORMS}; at most 1 mb"),
        );
        inline_threshold = 20 * 1024;
    }
    StateConfig {
        backend,
        storage,
        checkpoints_dir,
        savepoints_dir: c.text(&k("savepoint-dir")),
        num_retained: c
            .u32(
                &k("num-retained"),
                1,
                "The number of retained checkpoints must be at least 1.",
            )
            .unwrap_or(1),
        incremental: c.bool(&k("incremental")).unwrap_or_default(),
        inline_threshold,
        write_buffer_size: c.memory(&k("write-buffer-size")).unwrap_or(4096),
        create_subdir: c.bool(&k("create-subdir")).unwrap_or(true),
        cleaner_parallel: c.bool(&k("cleaner.parallel-mode")).unwrap_or(true),
        local_backup: c.bool(&k("local-backup.enabled")).unwrap_or_default(),
    }
}

fn backend(c: &mut Ctx) -> StateBackendKind {
    const KEY: &str = "state.backend.type";
    const ACCEPTED: &str =
        "hashmap (keyed state on the heap), jobmanager (snapshots inline in _metadata), \
         filesystem (deprecated; read as hashmap)";
    let Some(text) = c.text(KEY) else {
        return StateBackendKind::HashMap;
    };
    match text.trim().to_ascii_lowercase().as_str() {
        "hashmap" => StateBackendKind::HashMap,
        "jobmanager" => StateBackendKind::JobManager,
        "filesystem" => {
            c.warn(
                KEY,
                "'filesystem' is deprecated (Flink 2.x refuses it); read as 'hashmap' - write 'hashmap'",
            );
            StateBackendKind::HashMap
        }
        name @ ("rocksdb" | "forst") => {
            c.bad(
                KEY,
                format!("floe has no {name} state backend; use hashmap"),
                ACCEPTED,
            );
            StateBackendKind::HashMap
        }
        _ => {
            c.bad(KEY, "unknown state backend", ACCEPTED);
            StateBackendKind::HashMap
        }
    }
}

fn storage(c: &mut Ctx, has_dir: bool) -> Option<CheckpointStorageKind> {
    const KEY: &str = "execution.checkpointing.storage";
    let kind = match c.enumeration(KEY)? {
        0 => CheckpointStorageKind::JobManager,
        _ => CheckpointStorageKind::FileSystem,
    };
    if kind == CheckpointStorageKind::FileSystem && !has_dir {
        c.bad(
            KEY,
            "Cannot create the file system state backend: The configuration does not specify the \
             checkpoint directory 'execution.checkpointing.dir'",
            "filesystem together with execution.checkpointing.dir, or jobmanager",
        );
    }
    Some(kind)
}

fn recovery(c: &mut Ctx) -> RecoveryConfig {
    RecoveryConfig {
        path: c.text("execution.state-recovery.path"),
        ignore_unclaimed_state: c
            .bool("execution.state-recovery.ignore-unclaimed-state")
            .unwrap_or_default(),
        claim_mode: match c.enumeration("execution.state-recovery.claim-mode") {
            Some(0) => ClaimMode::Claim,
            Some(2) => ClaimMode::Legacy,
            _ => ClaimMode::NoClaim,
        },
    }
}

/// Every sub-key is checked whichever strategy is chosen, so a typo'd value never hides.
fn restart(c: &mut Ctx, checkpointing: bool) -> RestartStrategy {
    const FD: &str = "restart-strategy.fixed-delay.";
    const FR: &str = "restart-strategy.failure-rate.";
    const ED: &str = "restart-strategy.exponential-delay.";
    let fixed = RestartStrategy::FixedDelay {
        attempts: c
            .u32(
                &format!("{FD}attempts"),
                0,
                "The number of attempts must be non-negative.",
            )
            .unwrap_or(1),
        delay: c.duration(&format!("{FD}delay")).unwrap_or_default(),
    };
    let rate = RestartStrategy::FailureRate {
        max_failures_per_interval: c
            .u32(
                &format!("{FR}max-failures-per-interval"),
                1,
                "The maximum number of failures per interval must be at least 1.",
            )
            .unwrap_or(1),
        interval: c
            .duration(&format!("{FR}failure-rate-interval"))
            .unwrap_or_default(),
        delay: c.duration(&format!("{FR}delay")).unwrap_or_default(),
    };
    let exponential = RestartStrategy::ExponentialDelay {
        initial_backoff: c
            .duration(&format!("{ED}initial-backoff"))
            .unwrap_or_default(),
        max_backoff: c.duration(&format!("{ED}max-backoff")).unwrap_or_default(),
        backoff_multiplier: c
            .float(
                &format!("{ED}backoff-multiplier"),
                1.0,
                f64::MAX,
                "The backoff multiplier must be greater than or equal to 1.",
            )
            .unwrap_or(1.5),
        reset_backoff_threshold: c
            .duration(&format!("{ED}reset-backoff-threshold"))
            .unwrap_or_default(),
        jitter_factor: c
            .float(
                &format!("{ED}jitter-factor"),
                0.0,
                1.0,
                "The jitter factor must be >= 0.0 and <= 1.0.",
            )
            .unwrap_or(0.1),
        attempts_before_reset_backoff: c
            .u32(
                &format!("{ED}attempts-before-reset-backoff"),
                1,
                "The number of attempts before resetting the backoff must be at least 1.",
            )
            .unwrap_or(u32::MAX),
    };
    match c.enumeration("restart-strategy.type") {
        Some(0..=2) => RestartStrategy::None,
        Some(3 | 4) => fixed,
        Some(5 | 6) => rate,
        Some(_) => exponential,
        // Flink's rule: unset = exponential-delay with checkpointing, none without.
        None if checkpointing => exponential,
        None => RestartStrategy::None,
    }
}

fn entries(eff: &BTreeMap<String, Setting>, origins: &[Origin]) -> Vec<Entry> {
    keys::KEYS
        .iter()
        .map(|k| match eff.get(k.canonical) {
            Some(s) => Entry {
                key: k.canonical.to_string(),
                value: s.value.clone(),
                origin: origins[s.origin].clone(),
                written_as: (s.name != k.canonical).then(|| s.name.clone()),
            },
            None => Entry {
                key: k.canonical.to_string(),
                value: String::new(),
                origin: Origin::Default,
                written_as: None,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_raise_no_problem() {
        let (mut p, mut w) = (Vec::new(), Vec::new());
        build(&default_settings(0), &[Origin::Default], &mut p, &mut w);
        assert_eq!(p, vec![]);
        assert_eq!(w, Vec::<String>::new());
    }
}
