//! Configuration layering: defaults < conf file < FLOE_* env < pipeline settings < -D, each
//! over the one below; Flink 1.x/2.x aliases; flat and nested YAML; the shipped conf file.

use floe::config::{load_with_env, Config, LoadOptions, Loaded, Origin};
use floe::pipeline::PipelineSetting;
use std::path::PathBuf;
use std::time::Duration;

const INTERVAL: &str = "execution.checkpointing.interval";

fn conf_dir(yaml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("flink-conf.yaml"), yaml).expect("write conf");
    dir
}

fn opts(dir: &tempfile::TempDir) -> LoadOptions {
    LoadOptions {
        conf_dir: Some(dir.path().to_path_buf()),
        ..LoadOptions::default()
    }
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn setting(key: &str, value: &str, origin: &str) -> PipelineSetting {
    PipelineSetting {
        key: key.into(),
        value: value.into(),
        origin: origin.into(),
    }
}

fn load(o: &LoadOptions, vars: &[(&str, &str)]) -> Loaded {
    match load_with_env(o, &env(vars)) {
        Ok(l) => l,
        Err(e) => panic!("load failed:\n{e}"),
    }
}

fn origin_of(l: &Loaded, key: &str) -> String {
    let e = l.entries.iter().find(|e| e.key == key).expect("known key");
    e.origin.to_string()
}

fn file_origin(dir: &tempfile::TempDir, line: usize) -> String {
    format!("{}:{line}", dir.path().join("flink-conf.yaml").display())
}

#[test]
fn each_layer_overrides_the_one_below() {
    let dir = conf_dir("parallelism.default: 2\nexecution.checkpointing.interval: 1 s\n");
    let mut o = opts(&dir);

    let l = load(&o, &[]);
    assert_eq!(l.config.parallelism_default, 2);
    assert_eq!(
        l.config.checkpointing.interval,
        Some(Duration::from_secs(1))
    );
    assert_eq!(origin_of(&l, INTERVAL), file_origin(&dir, 2));
    assert_eq!(origin_of(&l, "execution.checkpointing.timeout"), "default");

    let vars = [("FLOE_EXECUTION_CHECKPOINTING_INTERVAL", "2s")];
    let l = load(&o, &vars);
    assert_eq!(
        l.config.checkpointing.interval,
        Some(Duration::from_secs(2))
    );
    assert_eq!(
        origin_of(&l, INTERVAL),
        "env FLOE_EXECUTION_CHECKPOINTING_INTERVAL"
    );
    assert_eq!(l.config.parallelism_default, 2, "file value kept");

    o.pipeline_settings = vec![setting(INTERVAL, "3 s", "p.yaml:7")];
    let l = load(&o, &vars);
    assert_eq!(
        l.config.checkpointing.interval,
        Some(Duration::from_secs(3))
    );
    assert_eq!(origin_of(&l, INTERVAL), "pipeline p.yaml:7");

    o.dynamic = vec![format!("{INTERVAL}=4s")];
    let l = load(&o, &vars);
    assert_eq!(
        l.config.checkpointing.interval,
        Some(Duration::from_secs(4))
    );
    assert_eq!(origin_of(&l, INTERVAL), "-D");
    assert_eq!(l.config.parallelism_default, 2);
}

#[test]
fn higher_layers_override_whatever_name_they_use() {
    // The file uses the 2.x name, the environment the 1.x name: the environment still wins.
    let dir = conf_dir("execution.checkpointing.num-retained: 2\n");
    let l = load(&opts(&dir), &[("FLOE_STATE_CHECKPOINTS_NUM_RETAINED", "5")]);
    assert_eq!(l.config.state.num_retained, 5);
    // And a 2.x name on -D beats a 1.x name in the pipeline.
    let mut o = opts(&dir);
    o.pipeline_settings = vec![setting("state.checkpoints.dir", "/p", "p.yaml:3")];
    o.dynamic = vec!["execution.checkpointing.dir=/d".into()];
    let l = load(&o, &[]);
    assert_eq!(l.config.state.checkpoints_dir.as_deref(), Some("/d"));
}

#[test]
fn old_names_alone_are_read() {
    let dir = conf_dir(
        "state.backend: jobmanager\n\
         state.checkpoints.dir: file:///tmp/ck\n\
         state.savepoints.dir: /tmp/sp\n\
         state.checkpoints.num-retained: 3\n\
         state.backend.incremental: true\n\
         state.backend.fs.memory-threshold: 1024\n\
         execution.savepoint.path: /tmp/sp/savepoint-1\n\
         execution.savepoint-restore-mode: claim\n\
         execution.checkpointing.unaligned: true\n",
    );
    let l = load(&opts(&dir), &[]);
    let s = &l.config.state;
    assert_eq!(s.backend, floe::config::StateBackendKind::JobManager);
    assert_eq!(s.checkpoints_dir.as_deref(), Some("file:///tmp/ck"));
    assert_eq!(s.savepoints_dir.as_deref(), Some("/tmp/sp"));
    assert_eq!(s.num_retained, 3);
    assert!(s.incremental);
    assert_eq!(s.inline_threshold, 1024);
    assert_eq!(
        l.config.recovery.path.as_deref(),
        Some("/tmp/sp/savepoint-1")
    );
    assert_eq!(l.config.recovery.claim_mode, floe::config::ClaimMode::Claim);
    assert!(l.config.checkpointing.unaligned);
    // The only warning: floe reads the unaligned flag but keeps checkpoints aligned.
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    assert!(
        l.warnings[0].contains(
            "execution.checkpointing.unaligned.enabled: accepted for Flink compatibility and has no effect in floe: floe takes aligned checkpoints only"
        ),
        "{:?}",
        l.warnings
    );
    let e = l
        .entries
        .iter()
        .find(|e| e.key == "execution.checkpointing.dir")
        .expect("entry");
    assert_eq!(e.written_as.as_deref(), Some("state.checkpoints.dir"));
    assert_eq!(e.origin.to_string(), file_origin(&dir, 2));
}

#[test]
fn new_names_alone_are_read() {
    let dir = conf_dir(
        "state.backend.type: hashmap\n\
         execution.checkpointing.dir: /tmp/ck2\n\
         execution.checkpointing.num-retained: 4\n\
         execution.checkpointing.data-inline-threshold: 1 mb\n",
    );
    let l = load(&opts(&dir), &[]);
    assert_eq!(l.config.state.checkpoints_dir.as_deref(), Some("/tmp/ck2"));
    assert_eq!(l.config.state.num_retained, 4);
    assert_eq!(l.config.state.inline_threshold, 1 << 20);
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn both_names_in_one_layer_new_wins_with_a_warning() {
    // Old name written after the new one: order does not matter, the new name wins.
    let dir = conf_dir(
        "execution.checkpointing.dir: /new\n\
         state.checkpoints.dir: /old\n",
    );
    let l = load(&opts(&dir), &[]);
    assert_eq!(l.config.state.checkpoints_dir.as_deref(), Some("/new"));
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    let w = &l.warnings[0];
    assert!(w.contains("state.checkpoints.dir"), "{w}");
    assert!(w.contains("execution.checkpointing.dir"), "{w}");
    assert!(
        w.contains(&file_origin(&dir, 2)),
        "names the dropped line: {w}"
    );

    // Same in the environment.
    let l = load(
        &opts(&conf_dir("")),
        &[
            ("FLOE_STATE_CHECKPOINTS_NUM_RETAINED", "7"),
            ("FLOE_EXECUTION_CHECKPOINTING_NUM_RETAINED", "8"),
        ],
    );
    assert_eq!(l.config.state.num_retained, 8);
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);

    // Two old names without the new one: Flink's fallback order picks the first declared.
    let dir = conf_dir(
        "state.backend.fs.memory-threshold: 2kb\n\
         state.storage.fs.memory-threshold: 1kb\n",
    );
    let l = load(&opts(&dir), &[]);
    assert_eq!(l.config.state.inline_threshold, 1024);
}

#[test]
fn nested_yaml_equals_flat_keys() {
    let flat = conf_dir(
        "execution.checkpointing.interval: 10 s\n\
         execution.checkpointing.mode: AT_LEAST_ONCE\n\
         state.backend.type: hashmap\n\
         state.backend.incremental: true\n\
         rest.port: 9000\n",
    );
    let nested = conf_dir(
        "execution:\n  checkpointing:\n    interval: 10 s\n    mode: AT_LEAST_ONCE\n\
         state:\n  backend:\n    type: hashmap\n    incremental: true\n\
         rest: {port: 9000}\n",
    );
    let a = load(&opts(&flat), &[]);
    let b = load(&opts(&nested), &[]);
    assert_eq!(a.config, b.config);
    assert_eq!(b.config.rest.port, 9000);
    assert_eq!(
        b.config.checkpointing.mode,
        floe::config::CheckpointingMode::AtLeastOnce
    );
    assert_eq!(origin_of(&b, INTERVAL), file_origin(&nested, 3));
    assert_eq!(origin_of(&b, "state.backend.type"), file_origin(&nested, 7));
    assert_eq!(origin_of(&b, "rest.port"), file_origin(&nested, 9));
}

#[test]
fn conf_dir_from_env_and_missing_dirs() {
    let dir = conf_dir("parallelism.default: 3\n");
    let o = LoadOptions::default();
    let path = dir.path().to_string_lossy().into_owned();
    let l = load(&o, &[("FLOE_CONF_DIR", &path)]);
    assert_eq!(l.config.parallelism_default, 3);
    assert_eq!(l.conf_file, Some(dir.path().join("flink-conf.yaml")));

    // An explicitly given directory must exist.
    let missing = PathBuf::from("/nonexistent/floe-conf");
    let e = load_with_env(
        &LoadOptions {
            conf_dir: Some(missing.clone()),
            ..LoadOptions::default()
        },
        &[],
    )
    .expect_err("missing --conf-dir");
    assert!(e.to_string().contains("/nonexistent/floe-conf"), "{e}");
    assert!(e.to_string().contains("--conf-dir"), "{e}");
    let e = load_with_env(&o, &env(&[("FLOE_CONF_DIR", "/nonexistent/x")]))
        .expect_err("missing FLOE_CONF_DIR");
    assert!(e.to_string().contains("FLOE_CONF_DIR"), "{e}");

    // An explicit directory without a conf file is an error too.
    let empty = tempfile::tempdir().expect("temp dir");
    let e = load_with_env(
        &LoadOptions {
            conf_dir: Some(empty.path().into()),
            ..LoadOptions::default()
        },
        &[],
    )
    .expect_err("no file");
    assert!(e.to_string().contains("flink-conf.yaml"), "{e}");
}

#[test]
fn shipped_conf_file_loads_cleanly() {
    let conf = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("conf");
    let l = load(
        &LoadOptions {
            conf_dir: Some(conf),
            ..LoadOptions::default()
        },
        &[],
    );
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let c = &l.config;
    assert_eq!(c.checkpointing.interval, None, "no checkpoints by default");
    assert_eq!(c.state.backend, floe::config::StateBackendKind::HashMap);
    assert_eq!(
        c.state.checkpoints_dir.as_deref(),
        Some("file:///tmp/floe/checkpoints")
    );
    assert_eq!(c.state.inline_threshold, 20 * 1024);
    assert_eq!(c.parallelism_default, 1);
    // Every key of the Flink setup conf/flink-conf.yaml stands for is present in the file, under its 1.x name.
    for key in [
        "state.backend",
        "state.backend.async",
        "state.backend.fs.memory-threshold",
        "state.checkpoints.dir",
        "state.savepoints.dir",
        "state.backend.incremental",
        "state.checkpoints.num-retained",
    ] {
        assert!(
            l.entries
                .iter()
                .any(|e| e.written_as.as_deref() == Some(key) || e.key == key),
            "{key} missing from conf/flink-conf.yaml"
        );
    }
}

#[test]
fn empty_conf_file_gives_flinks_defaults() {
    for text in ["", "# only comments\n", "---\n"] {
        let dir = conf_dir(text);
        let l = load(&opts(&dir), &[]);
        assert_eq!(l.config, Config::default());
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        assert!(l.entries.iter().all(|e| e.origin == Origin::Default));
    }
}

#[test]
fn load_reads_conf_from_the_working_directory() {
    // The real entry point, with the process environment; tests run in the crate root.
    if std::env::var_os("FLOE_CONF_DIR").is_some() {
        return;
    }
    let l = match floe::config::load(&LoadOptions::default()) {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(l.conf_file, Some(PathBuf::from("conf/flink-conf.yaml")));
    let e = l
        .entries
        .iter()
        .find(|e| e.key == "execution.checkpointing.dir")
        .expect("entry");
    assert!(
        matches!(&e.origin, Origin::File { path, line: Some(_) } if path.as_path() == std::path::Path::new("conf/flink-conf.yaml")),
        "{:?}",
        e.origin
    );
    assert!(e.origin.to_string().starts_with("conf/flink-conf.yaml:"));
}
