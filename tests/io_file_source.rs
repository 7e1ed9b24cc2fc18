//! The file source over real files: one file, a directory, a glob, sharing over subtasks,
//! positions and restore, follow mode picking up appended lines and new files, and the errors
//! for paths that name nothing.

use floe::operators::sources::file::{FileSource, FileSourceConfig};
use floe::operators::{BuildContext, Source, SourceEvent};
use floe::record::Column;
use std::io::Write;
use std::path::Path;

fn ctx(dir: &Path, subtask: u32, parallelism: u32) -> BuildContext {
    BuildContext {
        operator_id: "source".into(),
        subtask,
        parallelism,
        max_parallelism: 128,
        base_dir: dir.to_path_buf(),
        delta_checkpoints: true,
    }
}

fn cfg(path: &str, follow: bool) -> FileSourceConfig {
    FileSourceConfig {
        follow,
        ..FileSourceConfig::new(path)
    }
}

fn event_lines(event: &SourceEvent) -> Vec<String> {
    match event {
        SourceEvent::Batch(b) => {
            let Column::Str(c) = &b.columns[0] else {
                panic!("expected a text column")
            };
            c.iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect()
        }
        _ => Vec::new(),
    }
}

async fn read_all(src: &mut FileSource) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let event = src.next().await.unwrap();
        if matches!(event, SourceEvent::End) {
            return out;
        }
        out.extend(event_lines(&event));
    }
}

#[tokio::test]
async fn one_file_with_crlf_empty_lines_and_no_final_newline() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "a b\r\n\nlast").unwrap();
    let mut src = FileSource::new(&cfg("in.txt", false), &ctx(dir.path(), 0, 1)).unwrap();
    assert_eq!(read_all(&mut src).await, ["a b", "", "last"]);
    assert_eq!(src.positions(), [(dir.path().join("in.txt"), 10)]);
}

#[tokio::test]
async fn a_directory_is_read_in_name_order_and_shared_by_index() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [("b.txt", "b1\nb2\n"), ("a.txt", "a1\n"), ("c.log", "c1\n")] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let mut src = FileSource::new(&cfg(".", false), &ctx(dir.path(), 0, 1)).unwrap();
    assert_eq!(read_all(&mut src).await, ["a1", "b1", "b2", "c1"]);
    // Two subtasks: files 0 and 2 (a, c) to subtask 0, file 1 (b) to subtask 1.
    let mut s0 = FileSource::new(&cfg(".", false), &ctx(dir.path(), 0, 2)).unwrap();
    let mut s1 = FileSource::new(&cfg(".", false), &ctx(dir.path(), 1, 2)).unwrap();
    assert_eq!(read_all(&mut s0).await, ["a1", "c1"]);
    assert_eq!(read_all(&mut s1).await, ["b1", "b2"]);
}

#[tokio::test]
async fn a_glob_selects_files() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [("x1.txt", "one\n"), ("x2.txt", "two\n"), ("y.log", "no\n")] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let mut src = FileSource::new(&cfg("*.txt", false), &ctx(dir.path(), 0, 1)).unwrap();
    assert_eq!(read_all(&mut src).await, ["one", "two"]);
}

#[tokio::test]
async fn big_files_come_in_batches_and_restore_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..5000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(dir.path().join("big.txt"), &text).unwrap();
    let mut src = FileSource::new(&cfg("big.txt", false), &ctx(dir.path(), 0, 1)).unwrap();
    let first = src.next().await.unwrap();
    let first = event_lines(&first);
    assert_eq!(first.len(), floe::record::BATCH_SIZE);
    let (path, offset) = src.positions()[0].clone();
    assert_eq!(offset as usize, text.find("line 1024\n").unwrap());
    let rest = read_all(&mut src).await;
    assert_eq!(first.len() + rest.len(), 5000);
    assert_eq!(rest[0], "line 1024");
    let mut again = FileSource::restore(
        &cfg("big.txt", false),
        &ctx(dir.path(), 0, 1),
        &[(path, offset)],
    )
    .unwrap();
    assert_eq!(read_all(&mut again).await, rest);
}

#[tokio::test]
async fn follow_picks_up_appended_lines_and_new_files() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("a.txt");
    std::fs::write(&first, "one\npart").unwrap();
    let mut src = FileSource::new(&cfg(".", true), &ctx(dir.path(), 0, 1)).unwrap();
    let mut got = Vec::new();
    // The partial line waits for its newline: only "one" until then.
    for _ in 0..3 {
        got.extend(event_lines(&src.next().await.unwrap()));
    }
    assert_eq!(got, ["one"]);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&first)
        .unwrap();
    f.write_all(b"ial\ntwo\n").unwrap();
    std::fs::write(dir.path().join("b.txt"), "new file\n").unwrap();
    for _ in 0..100 {
        let event = src.next().await.unwrap();
        assert!(!matches!(event, SourceEvent::End), "follow mode never ends");
        got.extend(event_lines(&event));
        if got.len() == 4 {
            break;
        }
    }
    assert_eq!(got, ["one", "partial", "two", "new file"]);
}

#[tokio::test]
async fn paths_that_name_nothing_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = FileSource::new(&cfg("missing.txt", false), &ctx(dir.path(), 0, 1))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with("`path` missing.txt: no such file or directory"),
        "{err}"
    );
    let err = FileSource::new(&cfg("*.csv", false), &ctx(dir.path(), 0, 1))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("*.csv") && err.ends_with("matches no files"),
        "{err}"
    );
    let err = FileSource::new(&cfg(".", false), &ctx(dir.path(), 0, 1))
        .err()
        .unwrap()
        .to_string();
    assert!(err.ends_with("holds no files"), "{err}");
    // Following an empty directory is fine: files may come.
    assert!(FileSource::new(&cfg(".", true), &ctx(dir.path(), 0, 1)).is_ok());
}
