//! Value formats through the whole loader: every accepted form, and every bad value's error
//! naming key, origin (file:line, env var, pipeline location, -D), value and accepted forms;
//! Flink's limits; all problems reported at once.

use floe::config::{
    load_with_env, CheckpointingMode, ClaimMode, ConfigError, ConfigProblem, ExternalizedRetention,
    LoadOptions, Loaded, RestartStrategy, StateBackendKind,
};
use floe::pipeline::PipelineSetting;
use std::time::Duration;

fn conf_dir(yaml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("flink-conf.yaml"), yaml).expect("write conf");
    dir
}

fn try_load(yaml: &str, dynamic: &[&str]) -> (tempfile::TempDir, Result<Loaded, ConfigError>) {
    let dir = conf_dir(yaml);
    let o = LoadOptions {
        conf_dir: Some(dir.path().into()),
        pipeline_settings: Vec::new(),
        dynamic: dynamic.iter().map(|s| s.to_string()).collect(),
    };
    let r = load_with_env(&o, &[]);
    (dir, r)
}

fn ok(yaml: &str) -> Loaded {
    match try_load(yaml, &[]).1 {
        Ok(l) => l,
        Err(e) => panic!("{yaml:?} failed:\n{e}"),
    }
}

/// The error of one bad line, with the file path replaced by `F`.
fn err(yaml: &str) -> String {
    let (dir, r) = try_load(yaml, &[]);
    let e = r.expect_err(yaml);
    let path = dir.path().join("flink-conf.yaml").display().to_string();
    e.to_string().replace(&path, "F")
}

fn interval(text: &str) -> Option<Duration> {
    ok(&format!("execution.checkpointing.interval: {text}\n"))
        .config
        .checkpointing
        .interval
}

#[test]
fn durations_in_every_form() {
    let s = Duration::from_secs;
    assert_eq!(interval("1000"), Some(s(1)));
    assert_eq!(interval("10 s"), Some(s(10)));
    assert_eq!(interval("10s"), Some(s(10)));
    assert_eq!(interval("10 SECONDS"), Some(s(10)));
    assert_eq!(interval("10min"), Some(s(600)));
    assert_eq!(interval("2 m"), Some(s(120)));
    assert_eq!(interval("1 h"), Some(s(3600)));
    assert_eq!(interval("1 d"), Some(s(86400)));
    assert_eq!(interval("1500 millis"), Some(Duration::from_millis(1500)));
    assert_eq!(interval("1m 30s"), Some(s(90)));
    assert_eq!(interval("1h 30m"), Some(s(5400)));
    assert_eq!(interval("PT10S"), Some(s(10)));
    assert_eq!(interval("pt1m"), Some(s(60)));
}

#[test]
fn bad_duration_names_key_line_value_and_forms() {
    let e = err("# c\nexecution.checkpointing.timeout: 10 parsecs\n");
    assert_eq!(
        e,
        "F:2: invalid value '10 parsecs' for key 'execution.checkpointing.timeout': \
         Time interval unit label 'parsecs' does not match any of the recognized units: \
         DAYS: (d | day | days), HOURS: (h | hour | hours), MINUTES: (min | m | minute | minutes), \
         SECONDS: (s | sec | secs | second | seconds), \
         MILLISECONDS: (ms | milli | millis | millisecond | milliseconds), \
         MICROSECONDS: (µs | micro | micros | microsecond | microseconds), \
         NANOSECONDS: (ns | nano | nanos | nanosecond | nanoseconds). \
         Accepted: a number of milliseconds (1000), a number and a unit (10 s, 10min, 1 h), \
         a compound (1m 30s) or ISO-8601 (PT10S)"
    );
    let e = err("execution.checkpointing.min-pause: soon\n");
    assert!(
        e.contains(
            "text does not start with a number, and is not a valid ISO-8601 duration format: soon"
        ),
        "{e}"
    );
    let e = err("execution.checkpointing.min-pause: 1.5s\n");
    assert!(e.contains("unit label '.5s'"), "{e}");
    let e = err("execution.checkpointing.min-pause: -1s\n");
    assert!(e.starts_with("F:1: invalid value '-1s'"), "{e}");
}

#[test]
fn memory_sizes_in_every_form() {
    let t = |v: &str| {
        ok(&format!(
            "execution.checkpointing.data-inline-threshold: {v}\n"
        ))
        .config
        .state
        .inline_threshold
    };
    assert_eq!(t("1024"), 1024);
    assert_eq!(t("20kb"), 20 * 1024);
    assert_eq!(t("20 k"), 20 * 1024);
    assert_eq!(t("1 mb"), 1 << 20);
    assert_eq!(t("1 MB"), 1 << 20);
    assert_eq!(t("100 bytes"), 100);
    let w = ok("execution.checkpointing.write-buffer-size: 8 kb\n");
    assert_eq!(w.config.state.write_buffer_size, 8192);
}

#[test]
fn bad_memory_size_has_flinks_message() {
    let e = err("state.backend.fs.memory-threshold: 20 KiB\n");
    assert_eq!(
        e,
        "F:1: invalid value '20 KiB' for key 'execution.checkpointing.data-inline-threshold': \
         Memory size unit 'kib' does not match any of the recognized units: (b | bytes) / \
         (k | kb | kibibytes) / (m | mb | mebibytes) / (g | gb | gibibytes) / (t | tb | tebibytes). \
         Accepted: bytes (4096) or a number and a unit, binary multiples (20kb, 1 mb, 2 g); units: \
         (b | bytes) / (k | kb | kibibytes) / (m | mb | mebibytes) / (g | gb | gibibytes) / (t | tb | tebibytes)"
    );
    let e = err("state.backend.fs.memory-threshold: 2mb\n");
    assert!(e.contains("2 mb is above the maximum of 1 mb"), "{e}");
    let e = err("state.backend.fs.memory-threshold: -1\n");
    assert!(e.contains("text does not start with a number"), "{e}");
}

#[test]
fn booleans_any_case_only_true_false() {
    assert!(
        ok("state.backend.incremental: TRUE\n")
            .config
            .state
            .incremental
    );
    assert!(
        ok("state.backend.incremental: 'True'\n")
            .config
            .state
            .incremental
    );
    assert!(
        !ok("state.backend.incremental: false\n")
            .config
            .state
            .incremental
    );
    let e = err("state.backend.incremental: yes\n");
    assert_eq!(
        e,
        "F:1: invalid value 'yes' for key 'execution.checkpointing.incremental': \
         'yes' is not a boolean. Accepted: true or false (any case)"
    );
    assert!(err("state.backend.incremental: 1\n").contains("'1' is not a boolean"));
}

#[test]
fn enums_any_case_with_underscores() {
    let l = ok("execution.checkpointing.mode: at_least_once\n\
         execution.checkpointing.externalized-checkpoint-retention: Retain_On_Cancellation\n\
         execution.state-recovery.claim-mode: legacy\n");
    assert_eq!(l.config.checkpointing.mode, CheckpointingMode::AtLeastOnce);
    assert_eq!(
        l.config.checkpointing.externalized_retention,
        ExternalizedRetention::RetainOnCancellation
    );
    assert_eq!(l.config.recovery.claim_mode, ClaimMode::Legacy);
    let e =
        err("execution.checkpointing.externalized-checkpoint-retention: retain-on-cancellation\n");
    assert_eq!(
        e,
        "F:1: invalid value 'retain-on-cancellation' for key \
         'execution.checkpointing.externalized-checkpoint-retention': not one of the names \
         (write underscores, not hyphens). Accepted: RETAIN_ON_CANCELLATION, \
         DELETE_ON_CANCELLATION, NO_EXTERNALIZED_CHECKPOINTS (any case)"
    );
}

#[test]
fn state_backends() {
    assert_eq!(
        ok("state.backend: HashMap\n").config.state.backend,
        StateBackendKind::HashMap
    );
    assert_eq!(
        ok("state.backend.type: jobmanager\n").config.state.backend,
        StateBackendKind::JobManager
    );
    let l = ok("state.backend: filesystem\n");
    assert_eq!(l.config.state.backend, StateBackendKind::HashMap);
    assert_eq!(l.warnings.len(), 1);
    assert!(l.warnings[0].contains("deprecated"), "{:?}", l.warnings);
    let e = err("state.backend: rocksdb\n");
    assert!(
        e.contains("floe has no rocksdb state backend; use hashmap"),
        "{e}"
    );
    let e = err("state.backend: org.example.MyBackendFactory\n");
    assert!(
        e.contains("unknown state backend. Accepted: hashmap"),
        "{e}"
    );
}

#[test]
fn flinks_limits() {
    let e = err("execution.checkpointing.interval: 5ms\n");
    assert!(
        e.contains(": Checkpoint interval must be larger than or equal to 10 ms."),
        "{e}"
    );
    assert!(err("execution.checkpointing.interval: 0\n").contains("larger than or equal to 10 ms"));
    assert_eq!(interval("10 ms"), Some(Duration::from_millis(10)));
    let e = err("execution.checkpointing.timeout: 9ms\n");
    assert!(
        e.contains("Checkpoint timeout must be larger than or equal to 10 ms"),
        "{e}"
    );
    let e = err("execution.checkpointing.max-concurrent-checkpoints: 0\n");
    assert!(
        e.contains("The maximum number of concurrent attempts must be at least one."),
        "{e}"
    );
    let e = err("execution.checkpointing.tolerable-failed-checkpoints: -1\n");
    assert!(e.contains("must be non-negative"), "{e}");
    let e = err("parallelism.default: 0\n");
    assert!(e.contains("at least 1 and at most 32768"), "{e}");
    assert!(err("parallelism.default: 32769\n").contains("at most 32768"));
    assert!(err("parallelism.default: two\n").contains("'two' is not an integer"));
    assert_eq!(
        ok("pipeline.max-parallelism: -1\n").config.max_parallelism,
        None
    );
    assert_eq!(
        ok("pipeline.max-parallelism: 128\n").config.max_parallelism,
        Some(128)
    );
    assert!(err("pipeline.max-parallelism: 0\n").contains("-1 (derive"));
    assert!(err("pipeline.max-parallelism: 40000\n").contains("-1 (derive"));
    assert!(err("rest.port: 70000\n").contains("between 0 and 65535"));
    assert!(err("restart-strategy.exponential-delay.jitter-factor: 2\n").contains("jitter"));
}

#[test]
fn restart_strategies() {
    assert_eq!(ok("").config.restart, RestartStrategy::None);
    // Flink's rule: with checkpointing on and no strategy, exponential-delay.
    let l = ok("execution.checkpointing.interval: 1 s\n");
    assert!(matches!(
        l.config.restart,
        RestartStrategy::ExponentialDelay { initial_backoff, .. } if initial_backoff == Duration::from_secs(1)
    ));
    let l = ok("restart-strategy.type: fixed-delay\n\
         restart-strategy.fixed-delay.attempts: 3\n\
         restart-strategy.fixed-delay.delay: 10 s\n");
    assert_eq!(
        l.config.restart,
        RestartStrategy::FixedDelay {
            attempts: 3,
            delay: Duration::from_secs(10)
        }
    );
    assert_eq!(
        ok("execution.checkpointing.interval: 1 s\nrestart-strategy.type: NONE\n")
            .config
            .restart,
        RestartStrategy::None
    );
    assert!(err("restart-strategy.type: sometimes\n").contains("Accepted: none, off"));
}

#[test]
fn all_problems_are_reported_at_once_with_their_origins() {
    let dir = conf_dir(
        "execution:\n  checkpointing:\n    interval: 5 ms\n    mode: maybe\n\
         state.backend.incremental: perhaps\n",
    );
    let o = LoadOptions {
        conf_dir: Some(dir.path().into()),
        pipeline_settings: vec![PipelineSetting {
            key: "execution.checkpointing.timeout".into(),
            value: "forever".into(),
            origin: "pipelines/p.yaml:9".into(),
        }],
        dynamic: vec!["parallelism.default=zero".into(), "no-equals-sign".into()],
    };
    let env = vec![(
        "FLOE_EXECUTION_CHECKPOINTING_MIN_PAUSE".to_string(),
        "later".to_string(),
    )];
    let e = load_with_env(&o, &env).expect_err("bad values");
    let path = dir.path().join("flink-conf.yaml").display().to_string();
    let text = e.to_string().replace(&path, "F");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(e.problems().len(), 7, "{text}");
    assert_eq!(lines.len(), 7, "one problem per line:\n{text}");
    for needle in [
        "-D no-equals-sign: expected key=value",
        "F:3: invalid value '5 ms' for key 'execution.checkpointing.interval'",
        "F:4: invalid value 'maybe' for key 'execution.checkpointing.mode'",
        "F:5: invalid value 'perhaps' for key 'execution.checkpointing.incremental'",
        "pipeline pipelines/p.yaml:9: invalid value 'forever' for key 'execution.checkpointing.timeout'",
        "env FLOE_EXECUTION_CHECKPOINTING_MIN_PAUSE: invalid value 'later'",
        "-D: invalid value 'zero' for key 'parallelism.default'",
    ] {
        assert!(lines.iter().any(|l| l.starts_with(needle)), "missing {needle:?} in:\n{text}");
    }
    assert!(e
        .problems()
        .iter()
        .all(|p| !matches!(p, ConfigProblem::Yaml { .. })));
}

#[test]
fn yaml_syntax_error_names_file_and_line() {
    let e = err("parallelism.default: 1\nexecution: [unclosed\n");
    assert!(e.starts_with("F:"), "{e}");
    assert!(e.contains("invalid YAML"), "{e}");
    let e = err("execution.checkpointing.dir: [a, b]\n");
    assert!(
        e.contains("F:1: 'execution.checkpointing.dir' has a list; expected a single value"),
        "{e}"
    );
}
