//! Warnings (unknown keys with did-you-mean, in every layer; ignored FLOE_* variables) and the
//! `floe config` rendering (table and JSON) of where each value came from.

use floe::config::{load_with_env, render_json, render_text, LoadOptions, Loaded};
use floe::pipeline::PipelineSetting;

fn conf_dir(name: &str, yaml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join(name), yaml).expect("write conf");
    dir
}

fn load(o: &LoadOptions, env: &[(&str, &str)]) -> Loaded {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match load_with_env(o, &env) {
        Ok(l) => l,
        Err(e) => panic!("load failed:\n{e}"),
    }
}

fn opts(dir: &tempfile::TempDir) -> LoadOptions {
    LoadOptions {
        conf_dir: Some(dir.path().into()),
        ..LoadOptions::default()
    }
}

#[test]
fn unknown_keys_warn_with_did_you_mean_in_every_layer() {
    let dir = conf_dir(
        "flink-conf.yaml",
        "parallelism.default: 2\nstate.checkpoint.dir: /tmp/x\ntotally.unrelated: 1\n",
    );
    let mut o = opts(&dir);
    o.pipeline_settings = vec![PipelineSetting {
        key: "execution.checkpointing.intervall".into(),
        value: "1 s".into(),
        origin: "p.yaml:4".into(),
    }];
    o.dynamic = vec!["state.savepoint.dir=/sp".into()];
    let l = load(
        &o,
        &[
            ("FLOE_EXECUTION_CHECKPOINTING_TIMOUT", "1 min"),
            ("FLOE_CONF_DIR_UNUSED_BUT_SIMILAR", "x"),
            ("FLOE_LOG", "debug"),
            ("FLOE_LOG_FORMAT", "json"),
            ("HOME", "/root"),
        ],
    );
    let file = dir.path().join("flink-conf.yaml").display().to_string();
    let expected = [
        format!(
            "{file}:2: unknown configuration key 'state.checkpoint.dir' (ignored); did you mean 'state.checkpoints.dir'?"
        ),
        format!("{file}:3: unknown configuration key 'totally.unrelated' (ignored)"),
        "env FLOE_EXECUTION_CHECKPOINTING_TIMOUT: not a configuration key (ignored); did you mean FLOE_EXECUTION_CHECKPOINTING_TIMEOUT?".to_string(),
        "pipeline p.yaml:4: unknown configuration key 'execution.checkpointing.intervall' (ignored); did you mean 'execution.checkpointing.interval'?".to_string(),
        "-D: unknown configuration key 'state.savepoint.dir' (ignored); did you mean 'state.savepoints.dir'?".to_string(),
    ];
    for w in &expected {
        assert!(l.warnings.contains(w), "missing {w:?} in {:#?}", l.warnings);
    }
    // FLOE_LOG / FLOE_LOG_FORMAT are floe's own, HOME is not ours: no warning. The odd
    // FLOE_CONF_DIR_… variable does warn.
    assert_eq!(l.warnings.len(), expected.len() + 1, "{:#?}", l.warnings);
    assert!(!l.warnings.iter().any(|w| w.contains("FLOE_LOG")));
    // Unknown keys are warnings, not errors: the rest loads.
    assert_eq!(l.config.parallelism_default, 2);
}

#[test]
fn a_key_written_twice_in_the_file_warns_and_the_later_wins() {
    let dir = conf_dir(
        "flink-conf.yaml",
        "execution.checkpointing.interval: 1 s\nexecution:\n  checkpointing:\n    interval: 2 s\n",
    );
    let l = load(&opts(&dir), &[]);
    assert_eq!(
        l.config.checkpointing.interval,
        Some(std::time::Duration::from_secs(2))
    );
    let file = dir.path().join("flink-conf.yaml").display().to_string();
    assert_eq!(
        l.warnings,
        [format!(
            "{file}:4: 'execution.checkpointing.interval' is set twice (also at {file}:1); the later one is used"
        )]
    );
}

#[test]
fn empty_value_warns_and_is_ignored() {
    let dir = conf_dir("flink-conf.yaml", "state.checkpoints.dir:\n");
    let l = load(&opts(&dir), &[]);
    assert_eq!(l.config.state.checkpoints_dir, None);
    assert_eq!(l.warnings.len(), 1);
    assert!(
        l.warnings[0].ends_with(":1: 'state.checkpoints.dir' has no value; ignored"),
        "{:?}",
        l.warnings
    );
}

#[test]
fn async_false_and_config_yaml() {
    // Flink 2.x's file name is read when flink-conf.yaml is absent.
    let dir = conf_dir("config.yaml", "state.backend.async: false\n");
    let l = load(&opts(&dir), &[]);
    assert_eq!(l.conf_file, Some(dir.path().join("config.yaml")));
    assert_eq!(l.warnings.len(), 1);
    assert!(
        l.warnings[0].ends_with(
            ":1: state.backend.async: accepted for Flink compatibility and has no effect in floe: every snapshot is taken asynchronously"
        ),
        "{:?}",
        l.warnings
    );
}

#[test]
fn table_shows_value_and_origin_of_every_key() {
    let dir = conf_dir(
        "flink-conf.yaml",
        "# header\nstate.checkpoints.dir: /tmp/ck\n",
    );
    let mut o = opts(&dir);
    o.dynamic = vec!["parallelism.default=4".into()];
    let l = load(&o, &[("FLOE_REST_PORT", "9999")]);
    let text = render_text(&l);
    let file = dir.path().join("flink-conf.yaml").display().to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("# conf file: {file}"));
    assert_eq!(lines.len(), 1 + floe::config::known_keys().len());
    let find = |key: &str| -> Vec<String> {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("{key} not in\n{text}"));
        line.split("  ")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        find("execution.checkpointing.dir"),
        [
            "execution.checkpointing.dir",
            "/tmp/ck",
            &format!("{file}:2 (as state.checkpoints.dir)")
        ]
    );
    assert_eq!(
        find("parallelism.default"),
        ["parallelism.default", "4", "-D"]
    );
    assert_eq!(
        find("rest.port"),
        ["rest.port", "9999", "env FLOE_REST_PORT"]
    );
    assert_eq!(
        find("execution.checkpointing.timeout"),
        ["execution.checkpointing.timeout", "10 min", "default"]
    );
    assert_eq!(
        find("execution.checkpointing.interval"),
        ["execution.checkpointing.interval", "(not set)", "default"]
    );
    // Columns are aligned: the origin column starts at the same place on every line, so
    // lines whose origin is "default" all have the same length.
    let lens: std::collections::HashSet<usize> = lines[1..]
        .iter()
        .filter(|l| l.ends_with("  default"))
        .map(|l| l.chars().count())
        .collect();
    assert_eq!(lens.len(), 1, "misaligned:\n{text}");
}

#[test]
fn json_lists_settings_and_warnings() {
    let dir = conf_dir("flink-conf.yaml", "state.backend: filesystem\n");
    let l = load(&opts(&dir), &[]);
    let j = render_json(&l);
    let settings = j["settings"].as_array().expect("settings array");
    let backend = settings
        .iter()
        .find(|s| s["key"] == "state.backend.type")
        .expect("backend");
    assert_eq!(backend["value"], "filesystem");
    assert_eq!(backend["written_as"], "state.backend");
    let interval = settings
        .iter()
        .find(|s| s["key"] == "execution.checkpointing.interval")
        .expect("interval");
    assert!(interval["value"].is_null());
    assert_eq!(interval["origin"], "default");
    assert_eq!(j["warnings"].as_array().map(Vec::len), Some(1));
}

/// Keys floe accepts for Flink's sake but does not act on: each set to something else than its
/// default is a warning naming the key, where it was set and why it does nothing; set to the
/// default (as a copied Flink file does), it loads quietly.
#[test]
fn keys_without_effect_warn_when_set_to_another_value() {
    let dir = conf_dir(
        "flink-conf.yaml",
        "state.backend.fs.write-buffer-size: 1 mb\n\
         state.checkpoint.cleaner.parallel-mode: false\n\
         state.backend.local-recovery: true\n\
         execution.checkpointing.interval-during-backlog: 1 min\n\
         execution.checkpointing.unaligned.enabled: true\n\
         execution.checkpointing.aligned-checkpoint-timeout: 5 s\n",
    );
    let mut o = opts(&dir);
    o.dynamic = vec!["execution.checkpointing.unaligned.forced=true".into()];
    let l = load(&o, &[]);
    let file = dir.path().join("flink-conf.yaml").display().to_string();
    let no_effect = "accepted for Flink compatibility and has no effect in floe";
    let expected = [
        format!("{file}:1: execution.checkpointing.write-buffer-size: {no_effect}"),
        format!("{file}:2: execution.checkpointing.cleaner.parallel-mode: {no_effect}"),
        format!("{file}:3: execution.checkpointing.local-backup.enabled: {no_effect}"),
        format!("{file}:4: execution.checkpointing.interval-during-backlog: {no_effect}"),
        format!("{file}:5: execution.checkpointing.unaligned.enabled: {no_effect}"),
        format!("{file}:6: execution.checkpointing.aligned-checkpoint-timeout: {no_effect}"),
        format!("-D: execution.checkpointing.unaligned.forced: {no_effect}"),
    ];
    for w in &expected {
        assert!(
            l.warnings.iter().any(|got| got.starts_with(w.as_str())),
            "missing {w:?} in {:#?}",
            l.warnings
        );
    }
    assert_eq!(l.warnings.len(), expected.len(), "{:#?}", l.warnings);

    // The same keys at their defaults, in other spellings: no warning.
    let quiet = conf_dir(
        "flink-conf.yaml",
        "state.backend.fs.write-buffer-size: 4 kb\n\
         state.checkpoint.cleaner.parallel-mode: TRUE\n\
         state.backend.local-recovery: false\n\
         execution.checkpointing.unaligned: false\n\
         execution.checkpointing.aligned-checkpoint-timeout: 0 s\n\
         state.backend.async: true\n",
    );
    let l = load(&opts(&quiet), &[]);
    assert!(l.warnings.is_empty(), "{:#?}", l.warnings);
}

/// Every key the table marks as without effect is one the loader warns about, and the
/// generated reference says so in its own column.
#[test]
fn the_reference_marks_every_key_without_effect() {
    let table = floe::config::render_reference_markdown();
    let inert: Vec<_> = floe::config::known_keys()
        .iter()
        .filter(|k| matches!(k.effect, floe::config::Effect::NoEffect(_)))
        .collect();
    assert!(inert.len() >= 6, "{inert:?}");
    for k in floe::config::known_keys() {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", k.canonical)))
            .unwrap_or_else(|| panic!("no row for {}", k.canonical));
        let marked = row.contains("**no effect**");
        let works = row.contains("| works |");
        assert!(marked != works, "{row}");
        assert_eq!(
            marked,
            !matches!(k.effect, floe::config::Effect::Works),
            "{row}"
        );
    }
}

/// `web.checkpoints.history` works up to its stated bound and refuses more.
#[test]
fn checkpoint_history_is_bounded_and_says_so() {
    let dir = conf_dir("flink-conf.yaml", "web.checkpoints.history: 250\n");
    assert_eq!(load(&opts(&dir), &[]).config.checkpointing.history, 250);
    let dir = conf_dir("flink-conf.yaml", "web.checkpoints.history: 1001\n");
    let Err(e) = load_with_env(&opts(&dir), &[]) else {
        panic!("1001 was accepted");
    };
    let text = e.to_string();
    assert!(
        text.contains("web.checkpoints.history") && text.contains("between 0 and 1000"),
        "{text}"
    );
}
