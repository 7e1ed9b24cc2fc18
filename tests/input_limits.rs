//! Limits instead of crashes, through the binary: a plan whose channels would not fit in
//! `taskmanager.memory.network.max` is refused with the numbers; ten thousand chained
//! operators validate and run (nothing recurses once per operator); a deeply nested
//! expression is refused, not a stack overflow; files above the size limits are refused
//! with both sizes; a pipeline with tens of thousands of keys or operator settings is read in
//! linear time; flow collections nested too deep are refused before the YAML parser slows.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn floe(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_floe"));
    c.env_remove("FLOE_CONF_DIR")
        .env("RUST_LOG", "warn")
        .env("FLOE_REST_PORT", "0")
        .current_dir(dir)
        .arg("--conf-dir")
        .arg(dir.join("conf"));
    c
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    std::fs::write(dir.path().join("conf/flink-conf.yaml"), "").unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `cmd` to its end, or kills it after `limit` and fails the test naming `what`: the
/// limit is a hang detector far above a normal run, never a measure of speed.
fn output_within(mut cmd: Command, limit: Duration, what: &str) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        stdout.read_to_end(&mut b).unwrap();
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        stderr.read_to_end(&mut b).unwrap();
        b
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("{what}: still running after {limit:?}, a hang");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

const WORDCOUNT: &str = "name: wc\noperators:\n  - {id: source, type: datagen, lines: 100}\n  - {id: split, type: flat_map, inputs: [source]}\n  - {id: count, type: key_by, inputs: [split], key: word, aggregate: count}\n  - {id: out, type: blackhole, inputs: [count]}\n";

#[test]
fn a_plan_whose_channels_exceed_the_budget_is_refused_with_the_numbers() {
    let dir = setup();
    let file = write(dir.path(), "wc.yaml", WORDCOUNT);
    for verb in [&["validate"][..], &["run"][..], &["run", "--dry-run"][..]] {
        let out = floe(dir.path())
            .args(verb)
            .args(["-p", "5000"])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(78),
            "{verb:?}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        for want in [
            "insufficient memory for the channels between subtasks",
            "25,000,000 channels",
            "taskmanager.memory.network.max is 1 GiB (1,073,741,824 bytes)",
            "\"source -> split\" x5000 to \"count -> out\" x5000 by hash(word)",
            "lower the parallelism",
        ] {
            assert!(err.contains(want), "{verb:?}: missing {want:?} in {err}");
        }
    }
    // A larger budget lets the same plan through the check (dry run: nothing is started).
    let out = floe(dir.path())
        .args([
            "run",
            "--dry-run",
            "-p",
            "64",
            "-D",
            "taskmanager.memory.network.max=1mb",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    let out = floe(dir.path())
        .args(["run", "--dry-run", "-p", "64"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("channels between subtasks: 4096"));
}

#[test]
fn the_default_budget_takes_a_word_count_to_parallelism_1300() {
    // The README's figure: p = 1,300 passes, p = 1,400 does not.
    let dir = setup();
    let file = write(dir.path(), "wc.yaml", WORDCOUNT);
    let check = |p: &str| {
        floe(dir.path())
            .args(["validate", "-p", p])
            .arg(&file)
            .output()
            .unwrap()
    };
    let ok = check("1300");
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let refused = check("1400");
    assert_eq!(refused.status.code(), Some(78), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("1,960,000 channels"));
    // -D reaches the check of validate as it does run's.
    let raised = floe(dir.path())
        .args([
            "validate",
            "-p",
            "1400",
            "-D",
            "taskmanager.memory.network.max=2gb",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(raised.status.code(), Some(0), "{}", text(&raised.stderr));
}

#[test]
fn more_operators_than_the_limit_are_refused() {
    let dir = setup();
    let mut p = String::from(
        "name: wide
operators:
  - {id: s, type: datagen, lines: 1}
",
    );
    for i in 0..20_000 {
        p.push_str(&format!(
            "  - {{id: o{i}, type: blackhole, inputs: [s]}}
"
        ));
    }
    let file = write(dir.path(), "wide.yaml", &p);
    let out = floe(dir.path())
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("operators: 20001 operators, above the limit of 20000; split the pipeline"),
        "{err}"
    );
}

#[test]
fn ten_thousand_chained_filters_validate_and_run() {
    let dir = setup();
    let mut p = String::from(
        "name: chain\noperators:\n  - {id: s, type: datagen, lines: 100, words-per-line: 2}\n",
    );
    let mut prev = "s".to_string();
    for i in 0..10_000 {
        p.push_str(&format!(
            "  - {{id: f{i}, type: filter, inputs: [{prev}], condition: \"size(line) > 0\"}}\n"
        ));
        prev = format!("f{i}");
    }
    p.push_str(&format!("  - {{id: out, type: print, inputs: [{prev}]}}\n"));
    let file = write(dir.path(), "chain.yaml", &p);
    let mut validate = floe(dir.path());
    validate.arg("validate").arg(&file);
    let out = output_within(validate, Duration::from_secs(300), "validate");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("10002 operators"));
    let mut run = floe(dir.path());
    run.arg("run").arg(&file);
    let out = output_within(run, Duration::from_secs(300), "run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).lines().count(),
        100,
        "every line passes every filter"
    );
}

#[test]
fn a_deeply_nested_expression_is_refused_not_a_stack_overflow() {
    let dir = setup();
    for (what, expr) in [
        (
            "parentheses",
            format!("{}true{}", "(".repeat(2000), ")".repeat(2000)),
        ),
        ("a sum", format!("{} > 0", vec!["1"; 1500].join("+"))),
        (
            "lists",
            format!("size({}1{}) > 0", "[".repeat(90), "]".repeat(90)),
        ),
        ("a long text", format!("{} > 0", vec!["1"; 5000].join("+"))),
    ] {
        let file = write(
            dir.path(),
            "deep.yaml",
            &format!(
                "name: d\noperators:\n  - {{id: s, type: datagen, lines: 1}}\n  - {{id: f, type: filter, inputs: [s], condition: \"{expr}\"}}\n  - {{id: o, type: blackhole, inputs: [f]}}\n"
            ),
        );
        let out = floe(dir.path())
            .arg("validate")
            .arg(&file)
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{what}: {err}");
        assert!(
            err.contains("operators[1] (id \"f\").condition"),
            "{what}: {err}"
        );
        assert!(!err.contains("overflow"), "{what}: {err}");
    }
    // Within the limits, an expression nested a few levels deep runs.
    let file = write(
        dir.path(),
        "ok.yaml",
        "name: d\noperators:\n  - {id: s, type: datagen, lines: 3}\n  - {id: f, type: filter, inputs: [s], condition: \"((size(line) + 1) * 2 - 1) > (0 + (0 + (0 + 0)))\"}\n  - {id: o, type: print, inputs: [f]}\n",
    );
    let out = floe(dir.path()).arg("run").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 3);
}

#[test]
fn files_above_the_size_limits_are_refused_with_both_sizes() {
    let dir = setup();
    // 9 MiB of comments: above the 8 MiB pipeline limit.
    let big = format!(
        "name: b\n{}",
        "# padding padding padding padding\n".repeat(280_000)
    );
    let file = write(dir.path(), "big.yaml", &big);
    let out = floe(dir.path())
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains(&format!(
            "the file is {} bytes, above the limit of 8388608 bytes (8 MiB)",
            big.len()
        )),
        "{err}"
    );
    std::fs::write(dir.path().join("conf/flink-conf.yaml"), &big).unwrap();
    let small = write(dir.path(), "small.yaml", WORDCOUNT);
    let out = floe(dir.path())
        .arg("validate")
        .arg(&small)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("flink-conf.yaml") && err.contains("above the limit"),
        "{err}"
    );
}

#[test]
fn fifty_thousand_config_keys_are_read_in_linear_time() {
    // Quadratic, this took minutes (20,000 keys: 12 s in a release build, 158 s in a debug
    // one); linear, a few seconds even in a debug build on a loaded machine.
    let dir = setup();
    let mut p = String::from("name: k\nconfig:\n");
    for i in 0..50_000 {
        p.push_str(&format!("  x.key{i}: {i}\n"));
    }
    p.push_str("operators:\n  - {id: s, type: datagen, lines: 1}\n  - {id: o, type: blackhole, inputs: [s]}\n");
    let file = write(dir.path(), "keys.yaml", &p);
    let mut validate = floe(dir.path());
    validate.arg("validate").arg(&file);
    let out = output_within(
        validate,
        Duration::from_secs(120),
        "validate of 50,000 keys",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let warnings = text(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .count();
    assert_eq!(warnings, 50_000, "each unknown key is named");
}

#[test]
fn fifty_thousand_unknown_operator_settings_are_each_named_in_linear_time() {
    // One parse per unknown setting was quadratic: 2,000 of them took over a minute.
    let dir = setup();
    let mut p = String::from("name: s\noperators:\n  - id: src\n    type: datagen\n    lines: 1\n");
    for i in 0..50_000 {
        p.push_str(&format!("    x{i}: {i}\n"));
    }
    p.push_str("  - {id: o, type: blackhole, inputs: [src]}\n");
    let file = write(dir.path(), "settings.yaml", &p);
    let mut validate = floe(dir.path());
    validate.arg("validate").arg(&file);
    let out = output_within(
        validate,
        Duration::from_secs(240),
        "validate of 50,000 unknown settings",
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{:.2000}", err);
    assert_eq!(err.matches("unknown setting \"x").count(), 50_000);
    assert!(
        err.contains("settings.yaml:50005: operators[0] (id \"src\").x49999: unknown setting"),
        "each at its own line: {:.500}",
        &err[err.len().saturating_sub(500)..]
    );
}

#[test]
fn deeply_nested_flow_collections_are_refused_at_once() {
    // libyaml scans flow nesting in time that grows with the square of its depth: 100,000
    // `[` in a pipeline or conf file kept floe busy for many minutes before the refusal.
    let dir = setup();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let file = write(
        dir.path(),
        "deep.yaml",
        &format!("name: d\nx: {deep}\noperators: []\n"),
    );
    let mut validate = floe(dir.path());
    validate.arg("validate").arg(&file);
    let out = output_within(
        validate,
        Duration::from_secs(60),
        "validate of deep nesting",
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("deep.yaml:2: invalid YAML: `[` or `{` nested more than 1000 levels deep"),
        "{err}"
    );

    std::fs::write(
        dir.path().join("conf/flink-conf.yaml"),
        format!("parallelism.default: 1\nx: {deep}\n"),
    )
    .unwrap();
    let mut config = floe(dir.path());
    config.arg("config");
    let out = output_within(
        config,
        Duration::from_secs(60),
        "floe config of deep nesting",
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("flink-conf.yaml:2: invalid YAML: `[` or `{` nested more than 1000"),
        "{err}"
    );
}
