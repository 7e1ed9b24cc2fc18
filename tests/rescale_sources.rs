//! Sources restored at another parallelism: `datagen` and `file` positions taken mid-run
//! (mid-block for datagen: the throttle cuts blocks) go through the restore mapping to the new
//! subtasks, and the lines emitted before the snapshot plus those emitted after the restore
//! are every line exactly once. Lines are identified by their text, so content is checked too.

use floe::checkpoint::metadata::{
    CheckpointMetadata, OperatorStateMeta, SnapshotKind, SubtaskStateMeta,
};
use floe::checkpoint::restore::{map_checkpoint, TargetOperator};
use floe::checkpoint::JobId;
use floe::operators::sources::datagen::{line_text, DatagenConfig, BLOCK};
use floe::operators::sources::SourcePosition;
use floe::operators::{BuildContext, FileSourceConfig, SourceConfig, SourceEvent};
use floe::record::Column;
use std::collections::HashMap;
use std::path::Path;

fn ctx(subtask: u32, parallelism: u32, base_dir: &Path) -> BuildContext {
    BuildContext {
        operator_id: "src".into(),
        subtask,
        parallelism,
        max_parallelism: 128,
        base_dir: base_dir.to_path_buf(),
        delta_checkpoints: true,
    }
}

/// The positions one checkpoint holds for the source, mapped onto `new_p` subtasks as a
/// restore does, and each subtask's share worked out as the source does when it starts.
fn remap(positions: &[Option<SourcePosition>], new_p: u32) -> Vec<Option<SourcePosition>> {
    let meta = CheckpointMetadata {
        checkpoint_id: 1,
        job_id: JobId("0".repeat(32)),
        job_name: "rescale".into(),
        kind: SnapshotKind::Checkpoint,
        trigger_timestamp_ms: 0,
        completion_timestamp_ms: 0,
        operators: vec![OperatorStateMeta {
            operator_id: "src".into(),
            parallelism: positions.len() as u32,
            max_parallelism: 128,
            subtasks: positions
                .iter()
                .enumerate()
                .map(|(i, source)| SubtaskStateMeta {
                    subtask: i as u32,
                    key_groups: None,
                    keyed: None,
                    keyed_format: None,
                    operator: source.as_ref().map(SourcePosition::to_blob),
                })
                .collect(),
        }],
    };
    let target = TargetOperator {
        id: "src".into(),
        parallelism: new_p,
        max_parallelism: 128,
        max_parallelism_explicit: false,
    };
    let mapping = map_checkpoint(&meta, "file:/test/chk-1", &[target], false).unwrap();
    mapping.subtasks["src"]
        .iter()
        .enumerate()
        .map(|(i, s)| {
            floe::operators::sources::position::restore_position(&s.blobs, i as u32, new_p).unwrap()
        })
        .collect()
}

/// Runs subtask `s` of `p` (restored at `pos`) until it has emitted at least `stop` lines, or
/// to the end; returns the lines and the position then (what a checkpoint would hold).
async fn run(
    cfg: &SourceConfig,
    c: &BuildContext,
    pos: Option<&SourcePosition>,
    stop: Option<usize>,
) -> (Vec<String>, Option<SourcePosition>) {
    let mut src = cfg.build_restored(c, pos).unwrap();
    let mut out = Vec::new();
    while stop.is_none_or(|n| out.len() < n) {
        match src.next().await.unwrap() {
            SourceEvent::Batch(b) => {
                let Column::Str(col) = &b.columns[0] else {
                    panic!("expected a text column")
                };
                out.extend(col.iter().map(|l| String::from_utf8_lossy(l).into_owned()));
            }
            SourceEvent::Idle => {}
            SourceEvent::End => break,
        }
    }
    (out, src.position())
}

/// One stage of a job at parallelism `p`: each subtask restored from `positions` (or fresh),
/// stopped after `stops[s]` lines; returns what they emitted and the positions of the
/// snapshot.
async fn stage(
    cfg: &SourceConfig,
    dir: &Path,
    positions: &[Option<SourcePosition>],
    stops: &[Option<usize>],
) -> (Vec<String>, Vec<Option<SourcePosition>>) {
    let p = stops.len() as u32;
    let mut emitted = Vec::new();
    let mut snapshot = Vec::new();
    for s in 0..p {
        let pos = positions.get(s as usize).and_then(Option::as_ref);
        let (lines, at) = run(cfg, &ctx(s, p, dir), pos, stops[s as usize]).await;
        emitted.extend(lines);
        snapshot.push(at);
    }
    (emitted, snapshot)
}

const LINES: u64 = 9 * BLOCK + 77;

fn datagen(rate: Option<f64>) -> SourceConfig {
    SourceConfig::Datagen(DatagenConfig {
        lines: Some(LINES),
        words_per_line: 6,
        vocab: 1_000_000,
        seed: 11,
        rate,
        event_time: None,
    })
}

/// Every line index, each exactly once: panics naming the first missing or repeated one.
fn assert_exactly_once(emitted: &[String]) {
    let SourceConfig::Datagen(cfg) = datagen(None) else {
        unreachable!()
    };
    let index: HashMap<String, u64> = (0..LINES).map(|l| (line_text(&cfg, l), l)).collect();
    assert_eq!(index.len() as u64, LINES, "line texts are distinct");
    let mut seen = vec![0u32; LINES as usize];
    for text in emitted {
        let line = index
            .get(text)
            .unwrap_or_else(|| panic!("not a line: {text}"));
        seen[*line as usize] += 1;
    }
    for (line, n) in seen.iter().enumerate() {
        assert_eq!(*n, 1, "line {line} emitted {n} times");
    }
}

/// Lines each subtask of the first stage emits before the snapshot: not multiples of a block,
/// so positions fall mid-block.
fn cuts(p: usize) -> Vec<Option<usize>> {
    (0..p)
        .map(|s| Some(BLOCK as usize * (s + 1) + 300 + 57 * s))
        .collect()
}

async fn rescale_once(from: usize, to: usize) {
    let dir = Path::new(".");
    // Throttled, so that positions fall mid-block (unthrottled, datagen emits whole blocks).
    let (mut emitted, snapshot) = stage(&datagen(Some(50_000.0)), dir, &[], &cuts(from)).await;
    let mid_block = snapshot.iter().any(
        |p| matches!(p, Some(SourcePosition::Datagen { next_line }) if next_line % BLOCK != 0),
    );
    assert!(mid_block, "a position mid-block: {snapshot:?}");
    let positions = remap(&snapshot, to as u32);
    let (after, _) = stage(&datagen(None), dir, &positions, &vec![None; to]).await;
    emitted.extend(after);
    assert_exactly_once(&emitted);
}

#[tokio::test(start_paused = true)]
async fn datagen_1_to_2() {
    rescale_once(1, 2).await;
}

#[tokio::test(start_paused = true)]
async fn datagen_2_to_3() {
    rescale_once(2, 3).await;
}

#[tokio::test(start_paused = true)]
async fn datagen_3_to_1() {
    rescale_once(3, 1).await;
}

/// A checkpoint taken while the rescaled subtasks still skip old lines, restored again at the
/// same parallelism and at others (2 -> 3 -> 3, 2 -> 3 -> 2, 3 -> 2 -> 4, 3 -> 1 -> 2): still
/// exact. (From parallelism 1 a restored subtask starts past every old line at once.)
#[tokio::test(start_paused = true)]
async fn a_checkpoint_taken_while_skipping_restores_exactly() {
    let dir = Path::new(".");
    for (a, b, c) in [(2, 3, 3), (2, 3, 2), (3, 2, 4), (3, 1, 2)] {
        let (mut emitted, first) = stage(&datagen(Some(50_000.0)), dir, &[], &cuts(a)).await;
        let positions = remap(&first, b as u32);
        // A little after the restore: far from past the old lines.
        let stops: Vec<Option<usize>> = (0..b).map(|s| Some(200 + 100 * s)).collect();
        let (middle, second) = stage(&datagen(Some(50_000.0)), dir, &positions, &stops).await;
        assert!(
            second
                .iter()
                .any(|p| matches!(p, Some(SourcePosition::DatagenRescaled { .. }))),
            "{a} -> {b}: a position still skipping: {second:?}"
        );
        emitted.extend(middle);
        let positions = if b == c {
            second
        } else {
            remap(&second, c as u32)
        };
        let (last, end) = stage(&datagen(None), dir, &positions, &vec![None; c]).await;
        emitted.extend(last);
        assert_exactly_once(&emitted);
        // Past every old line, the position is plain again.
        assert!(
            end.iter()
                .all(|p| matches!(p, Some(SourcePosition::Datagen { .. }))),
            "{end:?}"
        );
    }
}

fn write_files(dir: &Path) -> Vec<String> {
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    let mut all = Vec::new();
    for f in 0..5 {
        let lines: Vec<String> = (0..1500 + 300 * f)
            .map(|i| format!("file {f} line {i}"))
            .collect();
        std::fs::write(data.join(format!("{f}.txt")), lines.join("\n") + "\n").unwrap();
        all.extend(lines);
    }
    all.sort();
    all
}

fn files() -> SourceConfig {
    SourceConfig::File(FileSourceConfig::new("data"))
}

#[tokio::test]
async fn file_source_1_to_2_and_2_to_1() {
    for (from, to) in [(1usize, 2usize), (2, 1), (2, 3), (3, 2)] {
        let tmp = tempfile::tempdir().unwrap();
        let want = write_files(tmp.path());
        let stops: Vec<Option<usize>> = (0..from).map(|s| Some(2000 + 900 * s)).collect();
        let (mut emitted, snapshot) = stage(&files(), tmp.path(), &[], &stops).await;
        let positions = remap(&snapshot, to as u32);
        let (after, _) = stage(&files(), tmp.path(), &positions, &vec![None; to]).await;
        emitted.extend(after);
        emitted.sort();
        assert_eq!(emitted.len(), want.len(), "{from} -> {to}");
        assert_eq!(emitted, want, "{from} -> {to}");
    }
}

#[tokio::test]
async fn file_source_rescaled_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let want = write_files(tmp.path());
    let (mut emitted, first) = stage(&files(), tmp.path(), &[], &[Some(2500)]).await;
    let (middle, second) = stage(
        &files(),
        tmp.path(),
        &remap(&first, 3),
        &[Some(1100), Some(10), None],
    )
    .await;
    emitted.extend(middle);
    let (last, _) = stage(&files(), tmp.path(), &remap(&second, 2), &[None, None]).await;
    emitted.extend(last);
    emitted.sort();
    assert_eq!(emitted, want);
}
