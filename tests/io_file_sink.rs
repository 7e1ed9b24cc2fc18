//! The file sink writing real part files: lines and JSON lines, one file per subtask, and the
//! error when the output directory cannot be created.

mod common;

use floe::operators::sinks::file::{FileFormat, FileSink, FileSinkConfig};
use floe::operators::{BuildContext, Operator};
use floe::record::{Batch, Column, DataType, Schema, StrColumnBuilder};
use std::path::Path;

fn ctx(dir: &Path, subtask: u32, parallelism: u32) -> BuildContext {
    BuildContext {
        operator_id: "sink".into(),
        subtask,
        parallelism,
        max_parallelism: 128,
        base_dir: dir.to_path_buf(),
        delta_checkpoints: true,
    }
}

fn word_counts() -> (Schema, Batch) {
    let mut words = StrColumnBuilder::default();
    for w in ["w1", "say \"hi\"\n"] {
        words.push(w.as_bytes());
    }
    let schema = Schema::new([
        ("word", DataType::Str),
        ("count", DataType::Int),
        ("avg", DataType::Float),
        ("ok", DataType::Bool),
    ]);
    let batch = Batch::new(vec![
        Column::Str(words.finish()),
        Column::Int(vec![3, 10]),
        Column::Float(vec![1.5, f64::NAN]),
        Column::Bool(vec![true, false]),
    ]);
    (schema, batch)
}

fn run(format: FileFormat, subtask: u32, parallelism: u32) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let (schema, batch) = word_counts();
    let cfg = FileSinkConfig {
        path: "out/counts".into(),
        format,
        rolling: Default::default(),
    };
    let mut sink = FileSink::new(&cfg, &schema, &ctx(dir.path(), subtask, parallelism)).unwrap();
    sink.process(batch, &mut Vec::new()).unwrap();
    sink.finish(&mut Vec::new()).unwrap();
    let expected = dir.path().join(format!("out/counts/part-{subtask}-0"));
    assert_eq!(sink.path(), expected);
    let text = std::fs::read_to_string(&expected).unwrap();
    (dir, text)
}

#[test]
fn lines_are_print_text_without_prefix() {
    let (_dir, text) = run(FileFormat::Lines, 1, 2);
    assert_eq!(text, "(w1,3,1.5,true)\n(say \"hi\"\n,10,NaN,false)\n");
}

#[test]
fn json_lines_escape_strings_and_keep_numbers() {
    let (_dir, text) = run(FileFormat::Json, 0, 1);
    assert_eq!(
        text,
        "{\"word\":\"w1\",\"count\":3,\"avg\":1.5,\"ok\":true}\n\
         {\"word\":\"say \\\"hi\\\"\\n\",\"count\":10,\"avg\":null,\"ok\":false}\n"
    );
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v.is_object());
    }
}

#[test]
fn an_uncreatable_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("blocker"), "a file, not a directory").unwrap();
    let (schema, _) = word_counts();
    let cfg = FileSinkConfig {
        path: "blocker/out".into(),
        format: FileFormat::Lines,
        rolling: Default::default(),
    };
    let err = FileSink::new(&cfg, &schema, &ctx(dir.path(), 0, 1))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "cannot create the output directory {} (`path`): ",
            dir.path().join("blocker/out").display()
        )),
        "{err}"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_an_io_error_naming_the_file() {
    if !Path::new("/dev/full").exists() {
        common::tools::missing("/dev/full", "a Linux with devtmpfs has it");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The part file is a link to /dev/full, where every write fails with ENOSPC.
    std::os::unix::fs::symlink("/dev/full", dir.path().join("part-0-0")).unwrap();
    let (schema, batch) = word_counts();
    let cfg = FileSinkConfig {
        path: ".".into(),
        format: FileFormat::Lines,
        rolling: Default::default(),
    };
    let mut sink = FileSink::new(&cfg, &schema, &ctx(dir.path(), 0, 1)).unwrap();
    // Small writes stay in the buffer; the flush at the end reaches the device.
    let result = sink
        .process(batch, &mut Vec::new())
        .and_then(|_| sink.finish(&mut Vec::new()));
    let err = result.unwrap_err();
    assert!(
        matches!(&err, floe::operators::OperatorError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(&format!(
            "cannot write {}",
            dir.path().join("part-0-0").display()
        )),
        "{err}"
    );
}
