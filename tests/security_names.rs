//! Names are printable text (issue 13, point 6): a job name with a line break or another
//! control character is refused by validation, for `floe validate` and `floe run` alike, with
//! the file and line; and no other text that reaches the log (here: a pipeline file's name)
//! can start a log line of its own.

mod security_support;

use security_support::*;

fn pipeline_named(name_yaml: &str) -> String {
    format!(
        "name: {name_yaml}
operators:
  - id: source
    type: datagen
    rate: 100
  - id: sink
    type: blackhole
    inputs: [source]
"
    )
}

#[test]
fn job_names_with_control_characters_are_refused_by_validate_and_run() {
    let root = tempfile::tempdir().unwrap();
    for (label, yaml, says) in [
        (
            "a newline",
            "\"wc\\n2024-01-01T00:00:00Z ERROR forged\"",
            "a line break (U+000A) at character 3",
        ),
        ("a carriage return", "\"wc\\rX\"", "a line break (U+000D)"),
        ("an escape", "\"wc\\e[2K\"", "an escape character (U+001B)"),
        (
            "a bidirectional override",
            "\"wc\\u202Etxt.exe\"",
            "a bidirectional text control (U+202E)",
        ),
    ] {
        let p = root.path().join("p.yaml");
        std::fs::write(&p, pipeline_named(yaml)).unwrap();
        for verb in ["validate", "run"] {
            let out = floe()
                .arg(verb)
                .arg(&p)
                .args(if verb == "run" {
                    &["-D", "rest.port=0"][..]
                } else {
                    &[][..]
                })
                .output()
                .unwrap();
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(78), "{verb}, {label}: {err}");
            assert!(
                err.contains(&format!("{}:1: name: the job name contains", p.display())),
                "{verb}, {label}: file:line and field: {err}"
            );
            assert!(err.contains(says), "{verb}, {label}: {err}");
            assert!(!err.contains("ERROR forged\n"), "{verb}, {label}: {err}");
        }
    }
    // Printable text of any script is fine.
    let p = root.path().join("ok.yaml");
    std::fs::write(&p, pipeline_named("\"Wörter zählen — 単語\"")).unwrap();
    let out = floe().arg("validate").arg(&p).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_file_name_cannot_forge_a_log_line() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    std::fs::create_dir_all(dir.join("conf")).unwrap();
    std::fs::write(dir.join("conf/flink-conf.yaml"), "").unwrap();
    let pipelines = dir.join("pipelines");
    std::fs::create_dir_all(&pipelines).unwrap();
    let forged = "x\n2024-01-01T00:00:00.000000Z ERROR forged by a file name\r.yaml";
    std::fs::write(pipelines.join(forged), pipeline_named("named")).unwrap();
    let mut cmd = floe();
    cmd.current_dir(dir)
        .env("FLOE_REST_PORT", "0")
        .arg("serve")
        .arg("--conf-dir")
        .arg(dir.join("conf"))
        .arg("--pipelines")
        .arg(&pipelines);
    let f = Floe::serve(cmd);
    f.wait_log("job started");
    let (status, log) = f.terminate();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("x\\n2024-01-01T00:00:00.000000Z ERROR forged by a file name\\r.yaml"),
        "the name is logged, escaped:\n{log}"
    );
    for line in log.lines() {
        assert!(
            !line.contains("ERROR forged") || line.contains("x\\n2024"),
            "a forged line:\n{line}\nin\n{log}"
        );
    }
}
