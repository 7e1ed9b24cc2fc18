//! Validation messages for broken pipelines, checked against golden files.
//!
//! Each `tests/golden/validate/NAME.yaml` is a broken pipeline; `NAME.expected` holds the
//! exact text `floe validate` shows for it. Rewrite the golden files with `UPDATE_EXPECT=1`
//! and review the diff.

use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    Path::new("tests").join("golden").join("validate")
}

#[test]
fn broken_pipelines_give_the_expected_messages() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("golden directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 10,
        "expected the golden cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let err = match floe::pipeline::load(case) {
            Ok(_) => {
                failures.push(format!("{}: validated, but it is broken", case.display()));
                continue;
            }
            Err(e) => e,
        };
        let actual = format!("{err}\n");
        let expected_path = case.with_extension("expected");
        if update {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- actual\n{actual}",
                case.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden case(s) differ (UPDATE_EXPECT=1 rewrites them):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_problem_is_one_line_with_file_and_path() {
    let err = floe::pipeline::load(&golden_dir().join("several_problems.yaml")).unwrap_err();
    assert!(err.problems.len() >= 6, "{err}");
    for line in err.to_string().lines() {
        assert!(
            line.starts_with("tests/golden/validate/several_problems.yaml"),
            "{line}"
        );
    }
}

#[test]
fn invalid_yaml_points_at_line_and_column() {
    let err = floe::pipeline::load(&golden_dir().join("invalid_yaml.yaml")).unwrap_err();
    assert_eq!(err.problems.len(), 1);
    assert!(err.problems[0].line.is_some() && err.problems[0].column.is_some());
}

#[test]
fn a_missing_file_is_a_problem_not_a_panic() {
    let err = floe::pipeline::load(Path::new("tests/golden/validate/no-such.yaml")).unwrap_err();
    assert!(
        err.to_string().contains("cannot read the pipeline file"),
        "{err}"
    );
}
