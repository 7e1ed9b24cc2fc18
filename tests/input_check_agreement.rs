//! `floe validate` says what `floe run` would: both go through the one check, so on every
//! pipeline of the repository (`pipelines/`, and every YAML file under `tests/`) they give
//! the same exit code, the same error lines and the same warnings; and the cases `validate`
//! used to pass while `run` refused or changed them are refused (or warned about) by both.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The binary with quiet logs and no conf dir of the environment leaking in.
fn floe() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_floe"));
    c.env_remove("FLOE_CONF_DIR")
        .env("RUST_LOG", "warn")
        .env("FLOE_REST_PORT", "0")
        .current_dir(repo());
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The lines of stderr that are floe's own messages: errors as printed, warnings as logged
/// (without the log's time and level).
fn messages(out: &Output) -> (Vec<String>, Vec<String>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for line in text(&out.stderr).lines() {
        if let Some(w) = line.strip_prefix("warning: ") {
            warnings.push(w.to_string());
        } else if let Some((_, w)) = line.split_once(" WARN ") {
            warnings.push(w.to_string());
        } else if line.contains(" INFO ") {
            continue;
        } else if !line.contains("invalid with --strict")
            && !line.contains("pipeline files are invalid")
        {
            errors.push(line.to_string());
        }
    }
    (errors, warnings)
}

fn yaml_files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let path = e.unwrap().path();
        if path.is_dir() {
            yaml_files_under(&path, out);
        } else if path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(path);
        }
    }
}

/// validate and run --dry-run of `file` with `args`: both outputs, after checking they agree.
fn agree(file: &Path, args: &[&str]) -> (Output, Output) {
    let validate = floe()
        .arg("validate")
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    let run = floe()
        .args(["run", "--dry-run"])
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    let shown = file.display();
    assert_eq!(
        validate.status.code(),
        run.status.code(),
        "{shown}: validate and run disagree\n--- validate\n{}\n--- run\n{}",
        text(&validate.stderr),
        text(&run.stderr)
    );
    let (v_errors, v_warnings) = messages(&validate);
    let (r_errors, r_warnings) = messages(&run);
    assert_eq!(v_errors, r_errors, "{shown}: the same error lines");
    assert_eq!(v_warnings, r_warnings, "{shown}: the same warnings");
    (validate, run)
}

#[test]
fn validate_and_run_agree_on_every_pipeline_of_the_repository() {
    let mut files = Vec::new();
    yaml_files_under(&repo().join("pipelines"), &mut files);
    yaml_files_under(&repo().join("tests"), &mut files);
    files.sort();
    assert!(files.len() >= 15, "found {} pipeline files", files.len());
    let (mut valid, mut invalid) = (0, 0);
    for file in &files {
        // The repository's conf file, as a checkout would use it.
        let (validate, _) = agree(file, &["--conf-dir", "conf"]);
        match validate.status.code() {
            Some(0) => valid += 1,
            Some(78) => invalid += 1,
            other => panic!("{}: exit {other:?}", file.display()),
        }
    }
    assert!(
        valid >= 4 && invalid >= 10,
        "{valid} valid, {invalid} invalid"
    );
}

/// A temp dir with `p.yaml` holding `pipeline` and an empty conf dir.
fn case(pipeline: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    std::fs::write(dir.path().join("conf/flink-conf.yaml"), "").unwrap();
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, pipeline).unwrap();
    (dir, file)
}

fn conf_args(dir: &Path) -> Vec<String> {
    vec!["--conf-dir".into(), dir.join("conf").display().to_string()]
}

#[test]
fn parallelism_above_max_parallelism_is_refused_by_both() {
    let (dir, file) = case(
        "name: p\nmax-parallelism: 4\noperators:\n  - {id: s, type: datagen, lines: 1}\n  - {id: k, type: key_by, inputs: [s], key: line, aggregate: count}\n  - {id: o, type: blackhole, inputs: [k]}\n",
    );
    let conf = conf_args(dir.path());
    let mut args: Vec<&str> = conf.iter().map(String::as_str).collect();
    args.extend(["-p", "8"]);
    let (validate, _) = agree(&file, &args);
    assert_eq!(validate.status.code(), Some(78));
    let err = text(&validate.stderr);
    assert!(
        err.contains("the parallelism (8) is higher than the max parallelism (4)"),
        "{err}"
    );
}

#[test]
fn a_misspelled_config_key_warns_in_both_and_strict_refuses_it() {
    let (dir, file) = case(
        "name: p\nconfig:\n  execution.checkpointing.intervall: 1s\noperators:\n  - {id: s, type: datagen, lines: 1}\n  - {id: o, type: blackhole, inputs: [s]}\n",
    );
    let conf = conf_args(dir.path());
    let args: Vec<&str> = conf.iter().map(String::as_str).collect();
    let (validate, run) = agree(&file, &args);
    assert_eq!(validate.status.code(), Some(0));
    let (_, warnings) = messages(&run);
    assert!(
        warnings.iter().any(|w| w
            .contains("unknown configuration key 'execution.checkpointing.intervall'")
            && w.contains("did you mean 'execution.checkpointing.interval'")),
        "{warnings:?}"
    );
    let strict = floe()
        .arg("validate")
        .arg("--strict")
        .args(&args)
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(strict.status.code(), Some(78), "{}", text(&strict.stderr));
    assert!(text(&strict.stderr).contains("invalid with --strict: 1 warning(s)"));
}

#[test]
fn a_file_source_whose_path_does_not_exist_is_refused_by_both() {
    let (dir, file) = case(
        "name: p\noperators:\n  - {id: src, type: file, path: missing/input.txt}\n  - {id: o, type: blackhole, inputs: [src]}\n",
    );
    let conf = conf_args(dir.path());
    let args: Vec<&str> = conf.iter().map(String::as_str).collect();
    let (validate, _) = agree(&file, &args);
    assert_eq!(validate.status.code(), Some(78));
    let err = text(&validate.stderr);
    assert!(
        err.contains("operator \"src\": `path` missing/input.txt: no such file or directory"),
        "{err}"
    );
    // Relative to the pipeline's directory, not to where floe runs.
    assert!(
        err.contains(&dir.path().join("missing/input.txt").display().to_string()),
        "{err}"
    );
}

#[test]
fn a_followed_glob_that_matches_nothing_yet_is_a_warning_in_both() {
    let (dir, file) = case(
        "name: p\noperators:\n  - {id: src, type: file, path: 'logs/*.txt', follow: true}\n  - {id: o, type: blackhole, inputs: [src]}\n",
    );
    let conf = conf_args(dir.path());
    let args: Vec<&str> = conf.iter().map(String::as_str).collect();
    let (validate, run) = agree(&file, &args);
    assert_eq!(
        validate.status.code(),
        Some(0),
        "{}",
        text(&validate.stderr)
    );
    assert_eq!(run.status.code(), Some(0));
    let (_, warnings) = messages(&validate);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("matches no files; follow mode reads files as they appear")),
        "{warnings:?}"
    );
}
