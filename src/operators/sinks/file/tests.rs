//! The file sink's unit tests: part names, the two-phase commit, rolling, restores.

use super::*;
use crate::operators::sinks::state::FileSinkStateBeforeRolling;
use crate::record::{Column, DataType, StrColumnBuilder};

#[test]
fn part_names_round_trip_and_other_files_are_not_parts() {
    for kind in [PartKind::InProgress, PartKind::Pending, PartKind::Committed] {
        let name = part_name(3, 17, kind);
        assert_eq!(parse_part_name(&name, 3), Some((17, kind)), "{name}");
        assert_eq!(parse_part_name(&name, 2), None, "another subtask: {name}");
    }
    for other in [
        "part-3-",
        "part-3-x",
        "part-3-1.pending",
        ".part-3-1",
        ".part-3-1.tmp",
        "part-+3-1",
        "part-3--1",
        "readme",
        ".part-31-1.pending",
    ] {
        assert_eq!(parse_part_name(other, 3), None, "{other}");
    }
}

/// A sink that finishes a part at every checkpoint (`rollover-interval: 0`).
fn sink(dir: &Path) -> FileSink {
    let per_checkpoint = RollingConfig {
        rollover_interval: std::time::Duration::ZERO,
        ..RollingConfig::default()
    };
    sink_with(dir, 0, per_checkpoint)
}

fn sink_with(dir: &Path, subtask: u32, rolling: RollingConfig) -> FileSink {
    let schema = Schema::new([("word", DataType::Str)]);
    let cfg = FileSinkConfig {
        path: "out".into(),
        format: FileFormat::Lines,
        rolling,
    };
    let ctx = BuildContext {
        operator_id: "out".into(),
        subtask,
        parallelism: 2,
        max_parallelism: 128,
        base_dir: dir.to_path_buf(),
        delta_checkpoints: true,
    };
    let mut s = FileSink::new(&cfg, &schema, &ctx).unwrap();
    s.open(DeliveryGuarantee::ExactlyOnce).unwrap();
    s
}

fn batch(words: &[&str]) -> Batch {
    let mut b = StrColumnBuilder::default();
    for w in words {
        b.push(w.as_bytes());
    }
    Batch::new(vec![Column::Str(b.finish())])
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn state(s: &mut FileSink, id: u64) -> SinkState {
    match s.snapshot_state_at(CheckpointId(id)).unwrap() {
        Some(OperatorSnapshot::Blob { blob, .. }) => SinkState::from_blob(&blob).unwrap(),
        other => panic!("expected sink state, got {other:?}"),
    }
}

#[test]
fn parts_go_in_progress_pending_committed_and_a_restore_undoes_what_came_after() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = sink(tmp.path());
    assert!(s.is_transactional());
    s.process(batch(&["a", "b"]), &mut Vec::new()).unwrap();
    assert_eq!(files(tmp.path()), [".part-0-0.inprogress"]);
    let at_1 = state(&mut s, 1);
    assert_eq!(files(tmp.path()), [".part-0-0.pending"]);
    s.process(batch(&["c"]), &mut Vec::new()).unwrap();
    let at_2 = state(&mut s, 2);
    // Aborted 2 keeps its part pending; completing 1 commits only 1's.
    s.notify_checkpoint_aborted(CheckpointId(2)).unwrap();
    s.notify_checkpoint_complete(CheckpointId(1)).unwrap();
    assert_eq!(files(tmp.path()), [".part-0-1.pending", "part-0-0"]);
    s.process(batch(&["d"]), &mut Vec::new()).unwrap();
    assert_eq!(
        at_1,
        SinkState::Files(FileSinkState {
            subtask: 0,
            next_part: 1,
            pending: vec![PendingPart {
                checkpoint_id: 1,
                part: 0
            }],
            in_progress: None,
        })
    );
    // 2 lists its own part and (until a completed checkpoint lists it) nothing else.
    let SinkState::Files(f2) = &at_2 else {
        panic!("expected the file sink's state");
    };
    assert_eq!(f2.next_part, 2);
    assert_eq!(
        f2.pending.iter().map(|p| p.part).collect::<Vec<_>>(),
        [0, 1]
    );

    // A crash, then a restore from checkpoint 1: part 0 committed (again: a no-op),
    // parts 1 (pending of 2) and 2 (in progress) discarded, numbering from 1.
    drop(s);
    let mut r = sink(tmp.path());
    r.restore_state(RestoredState::sink(vec![at_1])).unwrap();
    assert_eq!(files(tmp.path()), ["part-0-0"]);
    r.process(batch(&["x"]), &mut Vec::new()).unwrap();
    assert_eq!(files(tmp.path()), [".part-0-1.inprogress", "part-0-0"]);
    r.finish(&mut Vec::new()).unwrap();
    assert_eq!(files(tmp.path()), ["part-0-0", "part-0-1"]);
    let text = std::fs::read_to_string(tmp.path().join("out/part-0-0")).unwrap();
    assert_eq!(text, "a\nb\n");
    let text = std::fs::read_to_string(tmp.path().join("out/part-0-1")).unwrap();
    assert_eq!(text, "x\n");
}

#[test]
fn a_restore_from_checkpoint_2_commits_both_pending_parts() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = sink(tmp.path());
    s.process(batch(&["a"]), &mut Vec::new()).unwrap();
    state(&mut s, 1);
    s.process(batch(&["b"]), &mut Vec::new()).unwrap();
    let at_2 = state(&mut s, 2);
    drop(s);
    let mut r = sink(tmp.path());
    r.restore_state(RestoredState::sink(vec![at_2])).unwrap();
    assert_eq!(files(tmp.path()), ["part-0-0", "part-0-1"]);
}

#[test]
fn a_missing_pending_part_is_an_error_naming_both_files() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = sink(tmp.path());
    s.process(batch(&["a"]), &mut Vec::new()).unwrap();
    let at_1 = state(&mut s, 1);
    drop(s);
    std::fs::remove_file(tmp.path().join("out/.part-0-0.pending")).unwrap();
    let mut r = sink(tmp.path());
    let err = r
        .restore_state(RestoredState::sink(vec![at_1]))
        .unwrap_err()
        .to_string();
    assert!(err.contains(".part-0-0.pending"), "{err}");
    assert!(err.contains("part-0-0: neither exists"), "{err}");
}

#[test]
fn a_fresh_start_never_reuses_a_part_number_in_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("out")).unwrap();
    std::fs::write(tmp.path().join("out/part-0-4"), "old\n").unwrap();
    std::fs::write(tmp.path().join("out/.part-0-6.pending"), "old\n").unwrap();
    let mut s = sink(tmp.path());
    s.process(batch(&["new"]), &mut Vec::new()).unwrap();
    s.finish(&mut Vec::new()).unwrap();
    assert_eq!(
        files(tmp.path()),
        [".part-0-6.pending", "part-0-4", "part-0-7"]
    );
}

#[test]
fn stopped_leaves_the_tail_uncommitted() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = sink(tmp.path());
    s.process(batch(&["a"]), &mut Vec::new()).unwrap();
    s.end_of_input(EndOfInput::Stopped);
    s.finish(&mut Vec::new()).unwrap();
    assert_eq!(files(tmp.path()), [".part-0-0.inprogress"]);
}

fn text(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join("out").join(name)).unwrap()
}

#[test]
fn a_part_stays_open_across_checkpoints_and_a_restore_cuts_it_back_and_writes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = sink_with(tmp.path(), 0, RollingConfig::default());
    s.process(batch(&["a", "b"]), &mut Vec::new()).unwrap();
    let at_1 = state(&mut s, 1);
    s.notify_checkpoint_complete(CheckpointId(1)).unwrap();
    s.process(batch(&["c"]), &mut Vec::new()).unwrap();
    state(&mut s, 2);
    s.notify_checkpoint_complete(CheckpointId(2)).unwrap();
    s.process(batch(&["lost"]), &mut Vec::new()).unwrap();
    // Two checkpoints, one file: the part is still open.
    assert_eq!(files(tmp.path()), [".part-0-0.inprogress"]);
    let SinkState::Files(f1) = &at_1 else {
        panic!("expected the file sink's state");
    };
    assert_eq!(f1.in_progress, Some(InProgressPart { part: 0, length: 4 }));
    assert!(f1.pending.is_empty());

    // A crash; the restore from checkpoint 1 cuts "c" and "lost", and writes on.
    drop(s);
    let mut r = sink_with(tmp.path(), 0, RollingConfig::default());
    r.restore_state(RestoredState::sink(vec![at_1])).unwrap();
    assert_eq!(text(tmp.path(), ".part-0-0.inprogress"), "a\nb\n");
    r.process(batch(&["x"]), &mut Vec::new()).unwrap();
    r.finish(&mut Vec::new()).unwrap();
    assert_eq!(files(tmp.path()), ["part-0-0"]);
    assert_eq!(text(tmp.path(), "part-0-0"), "a\nb\nx\n");
}

#[test]
fn a_full_part_is_finished_at_once_and_committed_by_the_next_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let small = RollingConfig {
        max_part_size: 4,
        ..RollingConfig::default()
    };
    let mut s = sink_with(tmp.path(), 0, small);
    s.process(batch(&["a", "b"]), &mut Vec::new()).unwrap();
    s.process(batch(&["c"]), &mut Vec::new()).unwrap();
    assert_eq!(
        files(tmp.path()),
        [".part-0-0.pending", ".part-0-1.inprogress"]
    );
    let SinkState::Files(f) = state(&mut s, 1) else {
        panic!("expected the file sink's state");
    };
    assert_eq!(f.pending.iter().map(|p| p.part).collect::<Vec<_>>(), [0]);
    assert_eq!(f.in_progress, Some(InProgressPart { part: 1, length: 2 }));
    s.notify_checkpoint_complete(CheckpointId(1)).unwrap();
    assert_eq!(files(tmp.path()), [".part-0-1.inprogress", "part-0-0"]);
}

#[test]
fn a_part_finished_after_the_checkpoint_is_opened_again_by_the_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let small = RollingConfig {
        max_part_size: 6,
        ..RollingConfig::default()
    };
    let mut s = sink_with(tmp.path(), 0, small);
    s.process(batch(&["a"]), &mut Vec::new()).unwrap();
    let at_1 = state(&mut s, 1);
    s.process(batch(&["b", "c"]), &mut Vec::new()).unwrap();
    s.process(batch(&["d"]), &mut Vec::new()).unwrap();
    assert_eq!(
        files(tmp.path()),
        [".part-0-0.pending", ".part-0-1.inprogress"]
    );
    drop(s);
    let mut r = sink_with(tmp.path(), 0, small);
    r.restore_state(RestoredState::sink(vec![at_1])).unwrap();
    assert_eq!(files(tmp.path()), [".part-0-0.inprogress"]);
    assert_eq!(text(tmp.path(), ".part-0-0.inprogress"), "a\n");
}

#[test]
fn another_subtasks_open_part_is_committed_as_the_checkpoint_left_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s1 = sink_with(tmp.path(), 1, RollingConfig::default());
    s1.process(batch(&["a"]), &mut Vec::new()).unwrap();
    let at_1 = state(&mut s1, 1);
    s1.process(batch(&["after"]), &mut Vec::new()).unwrap();
    drop(s1);
    // Rescaled to one subtask: subtask 0 gets subtask 1's state.
    let mut r = sink_with(tmp.path(), 0, RollingConfig::default());
    r.restore_state(RestoredState::sink(vec![at_1])).unwrap();
    assert_eq!(files(tmp.path()), ["part-1-0"]);
    assert_eq!(text(tmp.path(), "part-1-0"), "a\n");
}

#[test]
fn state_of_the_sink_before_rolling_still_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = sink(tmp.path());
    s.process(batch(&["a"]), &mut Vec::new()).unwrap();
    state(&mut s, 1);
    drop(s);
    let old = FileSinkStateBeforeRolling {
        subtask: 0,
        next_part: 1,
        pending: vec![PendingPart {
            checkpoint_id: 1,
            part: 0,
        }],
    };
    // What older floe wrote (file-sink v1) reads as a state with no part in progress.
    let blob = old.to_blob();
    assert_eq!(blob.format.version, 1);
    let restored = crate::state::RestoredBlob {
        old_subtask: 0,
        old_parallelism: 1,
        blob,
    };
    let mut r = sink(tmp.path());
    r.restore_state(RestoredState::Blobs(vec![restored]))
        .unwrap();
    assert_eq!(files(tmp.path()), ["part-0-0"]);
}
