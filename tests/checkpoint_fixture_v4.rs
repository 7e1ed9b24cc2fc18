//! `_metadata` format version 4, pinned by a checked-in checkpoint written by floe: a datagen
//! source's position, a window's state as an incremental chain (a full snapshot in `shared/`,
//! then a delta in which fired windows are deleted) and a rolling file sink's state with a
//! part in progress, each operator's state in its own versioned encoding. Reading these bytes must keep working
//! whatever floe writes later (a new format gets a version and a fixture of its own), so these
//! tests decode the checked-in files, restore the window at parallelism 1 and 2, fire every
//! window, and compare with the windows computed here from the records that were written.
//!
//! The fixture is `tests/fixtures/checkpoint/v4/<job>/chk-2/` with its `shared/` directory.
//! `UPDATE_FIXTURES=v4 cargo test --test checkpoint_fixture_v4 -- --test-threads=1` writes it
//! again through floe's checkpoint store (only for a reviewed change: state file names are
//! random, so every byte changes).

use floe::checkpoint::metadata::{BlobLocation, KeyedStateHandle, METADATA_MAGIC};
use floe::checkpoint::restore::{check_files, load_state, map_checkpoint, TargetOperator};
use floe::checkpoint::storage::{load, FsCheckpointStore};
use floe::checkpoint::{CheckpointId, CheckpointStore, JobId, OperatorSnapshot, SubtaskSnapshot};
use floe::config::Config;
use floe::operators::sinks::state::{FileSinkState, InProgressPart, PendingPart, SinkState};
use floe::operators::sources::SourcePosition;
use floe::operators::{BuildContext, Operator, OperatorConfig, RestoredState, TransformConfig};
use floe::pipeline::OperatorId;
use floe::record::{Batch, Column, DataType, Schema, StrColumnBuilder};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const NAME: &str = "every-v4-state";
const JOB: &str = "00112233445566778899aabbccddeeff";
const MAX_P: u32 = 128;
const WINDOW: i64 = 10;
/// Watermarks before checkpoints 1 and 2.
const WATERMARKS: [i64; 2] = [19, 39];

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoint/v4")
}

fn chk_dir() -> PathBuf {
    fixture().join(JOB).join("chk-2")
}

/// `(word, n, time)` of the records before checkpoint 1 and between 1 and 2.
fn events(part: usize) -> Vec<(String, i64, i64)> {
    match part {
        0 => (0..30).map(|i| (format!("w{}", i % 5), i, i * 2)).collect(),
        _ => (0..20)
            .map(|i| (format!("w{}", (i * 3) % 7), 100 + i, 20 + i * 2))
            .collect(),
    }
}

/// The windows still open after the second watermark, by the definition: tumbling 10 ms
/// windows of every record, those ending after the watermark; `(word,start,end,count,sum)`.
fn expected() -> Vec<String> {
    let mut w: BTreeMap<(String, i64), (i64, i64)> = BTreeMap::new();
    for (word, n, t) in events(0).into_iter().chain(events(1)) {
        let start = t - t.rem_euclid(WINDOW);
        let e = w.entry((word, start)).or_default();
        e.0 += 1;
        e.1 += n;
    }
    let mut out: Vec<String> = w
        .into_iter()
        .filter(|((_, s), _)| s + WINDOW - 1 > WATERMARKS[1])
        .map(|((word, s), (c, n))| format!("({word},{s},{},{c},{n})", s + WINDOW))
        .collect();
    out.sort();
    out
}

fn schema() -> Schema {
    Schema::new([("word", DataType::Str), ("n", DataType::Int)])
}

fn window(subtask: u32, parallelism: u32) -> Box<dyn Operator> {
    let yaml = "key: word\ntumbling: 10 ms\naggregates: {c: count(), s: sum(n)}";
    let body: serde_yaml::Mapping = serde_yaml::from_str(yaml).unwrap();
    let Ok(OperatorConfig::Transform(t @ TransformConfig::Window(_))) =
        OperatorConfig::parse("window", true, body)
    else {
        panic!("a window config");
    };
    let ctx = BuildContext {
        operator_id: "win".into(),
        subtask,
        parallelism,
        max_parallelism: MAX_P,
        base_dir: ".".into(),
        delta_checkpoints: true,
    };
    t.build(&schema(), &ctx).unwrap()
}

fn batch(events: &[(String, i64, i64)]) -> Batch {
    let mut words = StrColumnBuilder::default();
    for (w, _, _) in events {
        words.push(w.as_bytes());
    }
    let n = Column::Int(events.iter().map(|e| e.1).collect());
    Batch::new(vec![Column::Str(words.finish()), n])
        .with_timestamps(Some(events.iter().map(|e| e.2).collect()))
}

fn rows(out: &[Batch]) -> Vec<String> {
    out.iter()
        .flat_map(|b| (0..b.len()).map(move |i| b.row(i)))
        .map(|r| {
            let f: Vec<String> = r.iter().map(|v| v.to_string()).collect();
            format!("({})", f.join(","))
        })
        .collect()
}

fn position() -> SourcePosition {
    SourcePosition::Datagen { next_line: 50 }
}

fn sink_state() -> SinkState {
    SinkState::Files(FileSinkState {
        subtask: 0,
        next_part: 4,
        pending: vec![PendingPart {
            checkpoint_id: 2,
            part: 2,
        }],
        in_progress: Some(InProgressPart {
            part: 3,
            length: 120,
        }),
    })
}

/// Writes the fixture through floe's store: two incremental checkpoints of the window, the
/// second one kept, with its shared files.
fn generate() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    c.state.checkpoints_dir = Some(format!("file://{}", tmp.path().display()));
    c.state.inline_threshold = 1;
    c.state.incremental = true;
    c.state.num_retained = 1;
    let store = FsCheckpointStore::new(&c.state, &c.checkpointing, JobId(JOB.into()), NAME)
        .expect("open the store");
    let mut win = window(0, 1);
    let mut out = Vec::new();
    for (i, wm) in WATERMARKS.into_iter().enumerate() {
        let id = i as u64 + 1;
        win.process(batch(&events(i)), &mut out).unwrap();
        win.on_watermark(wm, &mut out).unwrap();
        let snap = |operator: &str, state| SubtaskSnapshot {
            checkpoint_id: CheckpointId(id),
            operator_id: OperatorId(operator.into()),
            subtask: 0,
            parallelism: 1,
            max_parallelism: MAX_P,
            state,
        };
        let subtasks = [
            ("gen", OperatorSnapshot::blob(position().to_blob())),
            ("win", win.snapshot_state().unwrap()),
            ("out", OperatorSnapshot::blob(sink_state().to_blob())),
        ]
        .map(|(op, state)| (op, store.write_subtask(snap(op, state)).unwrap()));
        let operators = subtasks
            .into_iter()
            .map(|(op, s)| floe::checkpoint::metadata::OperatorStateMeta {
                operator_id: op.into(),
                parallelism: 1,
                max_parallelism: MAX_P,
                subtasks: vec![s],
            })
            .collect();
        store
            .complete(floe::checkpoint::metadata::CheckpointMetadata {
                checkpoint_id: id,
                job_id: JobId(JOB.into()),
                job_name: NAME.into(),
                kind: floe::checkpoint::metadata::SnapshotKind::Checkpoint,
                trigger_timestamp_ms: 1_760_000_000_000 + id,
                completion_timestamp_ms: 1_760_000_000_100 + id,
                operators,
            })
            .unwrap();
    }
    let job = fixture().join(JOB);
    let _ = std::fs::remove_dir_all(&job);
    for dir in ["chk-2", "shared"] {
        copy_dir(&tmp.path().join(JOB).join(dir), &job.join(dir));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn v4_fixture_decodes_with_each_operators_own_state() {
    if std::env::var("UPDATE_FIXTURES").is_ok_and(|v| v.split(',').any(|v| v == "v4")) {
        generate();
    }
    let bytes = std::fs::read(chk_dir().join("_metadata")).unwrap();
    assert_eq!(&bytes[..4], &METADATA_MAGIC);
    assert_eq!(&bytes[4..8], &4u32.to_be_bytes(), "format version 4");
    let loaded = load(chk_dir()).unwrap();
    check_files(&loaded).unwrap();
    let m = &loaded.metadata;
    assert_eq!((m.checkpoint_id, m.job_name.as_str()), (2, NAME));
    let op = |id: &str| {
        let o = m.operators.iter().find(|o| o.operator_id == id).unwrap();
        assert_eq!(o.subtasks.len(), 1);
        &o.subtasks[0]
    };
    let gen = op("gen").operator.as_ref().unwrap();
    assert_eq!(SourcePosition::from_blob(gen), Ok(position()));
    let out = op("out").operator.as_ref().unwrap();
    assert_eq!(
        (out.format.name.as_str(), out.format.version),
        ("file-sink", 2)
    );
    assert_eq!(SinkState::from_blob(out), Ok(sink_state()));
    let win = op("win");
    let format = win.keyed_format.as_ref().unwrap();
    assert_eq!((format.name.as_str(), format.version), ("window", 1));
    let Some(KeyedStateHandle::Incremental { chain }) = &win.keyed else {
        panic!("an incremental chain: {:?}", win.keyed);
    };
    assert_eq!(chain.len(), 2, "a full snapshot and a delta");
    assert!(matches!(chain[0].location, BlobLocation::Shared(_)));
}

#[test]
fn v4_window_state_restores_at_parallelism_1_and_2() {
    let loaded = load(chk_dir()).unwrap();
    for parallelism in [1, 2] {
        let targets: Vec<TargetOperator> = ["gen", "win", "out"]
            .map(|id| TargetOperator {
                id: id.into(),
                parallelism,
                max_parallelism: MAX_P,
                max_parallelism_explicit: true,
            })
            .to_vec();
        let mapping = map_checkpoint(&loaded.metadata, "fixture", &targets, false).unwrap();
        let state = load_state(&loaded, &mapping, MAX_P).unwrap();
        let mut got = Vec::new();
        for subtask in 0..parallelism {
            let mut win = window(subtask, parallelism);
            match state.operators.get(&(OperatorId("win".into()), subtask)) {
                Some(RestoredState::Keyed(runs)) => win
                    .restore_state(RestoredState::Keyed(runs.clone()))
                    .unwrap(),
                other => panic!("win/{subtask} at p {parallelism}: {other:?}"),
            }
            let mut out = Vec::new();
            // Everything before the checkpoint's watermark fired before it was taken.
            win.on_watermark(WATERMARKS[1], &mut out).unwrap();
            assert_eq!(rows(&out), Vec::<String>::new(), "nothing fires twice");
            win.on_watermark(i64::MAX, &mut out).unwrap();
            got.extend(rows(&out));
        }
        got.sort();
        assert_eq!(
            got,
            expected(),
            "the open windows at parallelism {parallelism}"
        );
    }
}
