//! The exactly-once `file` sink through the runtime (issue 4 point 5): output is invisible
//! until the checkpoint covering it completes, visible after; a restore commits what the
//! restored checkpoint left pending and discards what was written after it; a run that is
//! "crashed" and restored commits exactly the output of a run without failure; a bounded job
//! commits everything at its end.
//!
//! Timing: nothing sleeps for a duration and hopes. Tests wait for checkpoint notices, for a
//! held store write, or for a file to appear (polled, with a generous deadline that only
//! bounds a hang).

mod file_sink_support;
mod runtime_support;
use file_sink_support::{
    assert_each_update_once, committed_lines, completed, hidden, latest_checkpoint, names, visible,
    wait_for, write_pipeline,
};

use floe::checkpoint::metadata::{CheckpointMetadata, SubtaskStateMeta};
use floe::checkpoint::restore;
use floe::checkpoint::storage::{self, FsCheckpointStore};
use floe::checkpoint::{
    CheckpointError, CheckpointStore, CompletedCheckpoint, JobTermination, SubtaskSnapshot,
};
use floe::checkpoint::{CheckpointId, JobId};
use floe::config::live::LiveSettings;
use floe::config::{Config, ExternalizedRetention};
use floe::operators::sinks::file::{
    parse_part_name, FileFormat, FileSink, FileSinkConfig, PartKind,
};
use floe::operators::sinks::rolling::RollingConfig;
use floe::operators::sinks::state::SinkState;
use floe::operators::{BuildContext, DeliveryGuarantee, Operator, RestoredState};
use floe::pipeline::plan::Plan;
use floe::record::{DataType, Schema};
use floe::runtime::{self, CheckpointingOptions, JobOptions, JobStatus};
use runtime_support::checkpoints::{checkpointing, MemoryStore};

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A part per checkpoint (`rollover-interval: 0`), as the pipeline below says: these tests
/// follow each checkpoint's part.
fn per_checkpoint() -> RollingConfig {
    RollingConfig {
        rollover_interval: Duration::ZERO,
        ..RollingConfig::default()
    }
}

/// Checkpointing settings: EXACTLY_ONCE every 50 ms into `ck`, kept on cancellation (a
/// cancelled job stands for a crashed one).
fn config(ck: &Path) -> Config {
    let mut cfg = Config::default();
    cfg.state.checkpoints_dir = Some(format!("file://{}", ck.display()));
    cfg.checkpointing.interval = Some(Duration::from_millis(50));
    cfg.checkpointing.externalized_retention = ExternalizedRetention::RetainOnCancellation;
    cfg
}

/// The plan and options of one run, as `floe run [-s restore]` builds them.
fn job(
    pipeline: &Path,
    parallelism: u32,
    checkpoints: Option<&Path>,
    restore_from: Option<&Path>,
) -> (Plan, JobOptions) {
    let p = floe::pipeline::load(pipeline).unwrap();
    let snapshot = restore_from.map(|r| storage::load(r).unwrap());
    let max_p = snapshot
        .as_ref()
        .and_then(|s| restore::keyed_max_parallelism(&s.metadata));
    let plan = Plan::build(&p, parallelism, max_p).unwrap();
    let mut opts = JobOptions::new("twopc");
    if let Some(s) = &snapshot {
        let targets = restore::targets_of(&plan, false);
        let mapping = restore::map_checkpoint(&s.metadata, "test", &targets, false).unwrap();
        opts.restore = Some(restore::load_state(s, &mapping, plan.max_parallelism).unwrap());
    }
    if let Some(ck) = checkpoints {
        let cfg = config(ck);
        let job_id = JobId::random();
        let store = FsCheckpointStore::new(&cfg.state, &cfg.checkpointing, job_id.clone(), "twopc")
            .unwrap();
        opts.checkpointing = Some(CheckpointingOptions {
            config: cfg.checkpointing,
            store: Arc::new(store),
            job_id,
            first_id: snapshot
                .as_ref()
                .map_or(1, |s| s.metadata.checkpoint_id + 1),
        });
    }
    (plan, opts)
}

/// The plain word count output (no checkpoints): what every exactly-once run must commit.
async fn reference(lines: u64, parallelism: u32) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let p = write_pipeline(dir.path(), Some(lines), None);
    let (plan, opts) = job(&p, parallelism, None, None);
    runtime::start(plan, opts).unwrap().wait().await.unwrap();
    let out = dir.path().join("out");
    // Plain mode: one part per subtask, nothing hidden.
    assert!(hidden(&out).is_empty(), "{:?}", names(&out));
    assert_eq!(visible(&out).len(), parallelism as usize);
    let lines = committed_lines(&out);
    assert_each_update_once(&lines);
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_invisible_until_its_checkpoint_completes_then_visible() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_pipeline(dir.path(), None, None);
    let (plan, mut opts) = job(&p, 1, None, None);
    // Writes of checkpoint 1 wait until released: it cannot complete before.
    let (store, mut entered) = MemoryStore::holding();
    // Periodic checkpoints (so the sink is transactional), but the first one only once
    // records reached the sink: the interval is set live once the in-progress part exists.
    let cp = checkpointing(store.clone(), Duration::from_secs(3600));
    let mut live = LiveSettings::from_config(&Config::default());
    live.interval = Some(Duration::from_millis(10));
    live.tolerable_failed = cp.config.tolerable_failed;
    let (live_tx, live_rx) = tokio::sync::watch::channel(None);
    opts.checkpointing = Some(cp);
    opts.live = Some(live_rx);
    let mut handle = runtime::start(plan, opts).unwrap();
    let mut notices = handle.take_checkpoint_notices().unwrap();
    let out = dir.path().join("out");
    wait_for("records in the in-progress part", || {
        hidden(&out).contains(&".part-0-0.inprogress".to_string())
    })
    .await;
    live_tx.send(Some(live)).unwrap();
    // Three subtask snapshots carry state: the source's position, the sum's keyed state, the
    // sink's pre-commit (split and pair are stateless and ack without a write).
    for _ in 0..3 {
        assert_eq!(entered.recv().await, Some(CheckpointId(1)));
    }
    // The barrier found records in the in-progress part and turned it pending.
    assert!(
        hidden(&out).contains(&".part-0-0.pending".to_string()),
        "{:?}",
        names(&out)
    );
    assert_eq!(visible(&out), Vec::<String>::new(), "nothing visible yet");

    store.release();
    assert_eq!(completed(&mut notices, 1).await, 1);
    // The commit runs on the sink's task after the notice was sent to it.
    wait_for("part-0-0 to be committed", || {
        out.join("part-0-0").is_file()
    })
    .await;
    assert!(!out.join(".part-0-0.pending").exists());
    handle.cancel();
    handle.wait().await.unwrap();
    // Only committed parts are visible, and their lines are whole updates.
    assert!(visible(&out)
        .iter()
        .all(|n| parse_part_name(n, 0).is_some_and(|(_, k)| k == PartKind::Committed)));
    assert_each_update_once(&committed_lines(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_commits_the_checkpoints_pending_parts_and_discards_later_ones() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let p = write_pipeline(dir.path(), None, Some(20_000));
    let (plan, mut opts) = job(&p, 1, Some(&ck), None);
    // Checkpoints after 2 never complete: what the sink writes after checkpoint 2's barrier
    // stays after the newest checkpoint, whenever the crash comes.
    let held = UpTo::wrap(&mut opts, 2);
    let mut handle = runtime::start(plan, opts).unwrap();
    let mut notices = handle.take_checkpoint_notices().unwrap();
    let n = completed(&mut notices, 2).await;
    let out = dir.path().join("out");
    // Records keep coming: a part after checkpoint n is being written.
    wait_for("an in-progress part", || {
        hidden(&out).iter().any(|h| h.ends_with(".inprogress"))
    })
    .await;
    // The crash: tasks dropped, nothing committed or cleaned up.
    handle.cancel();
    held.release();
    handle.wait().await.unwrap();

    let chk = latest_checkpoint(&ck);
    let loaded = storage::load(&chk).unwrap();
    assert_eq!(loaded.metadata.checkpoint_id, n);
    let state = loaded
        .metadata
        .operators
        .iter()
        .find(|o| o.operator_id == "out")
        .and_then(|o| o.subtasks[0].operator.as_ref())
        .map(|b| SinkState::from_blob(b).unwrap())
        .expect("the sink's state is in _metadata");
    let SinkState::Files(files) = &state else {
        panic!("expected the file sink's state");
    };
    let before = hidden(&out);
    assert!(
        before.iter().any(|h| {
            parse_part_name(h, 0).is_some_and(|(part, _)| {
                !files.pending.iter().any(|p| p.part == part) || part >= files.next_part
            })
        }),
        "something was written after checkpoint {}: {before:?}",
        loaded.metadata.checkpoint_id
    );

    // What the runtime does on `-s chk`: build, open, restore, before any record.
    let schema = Schema::new([("word", DataType::Str), ("one", DataType::Int)]);
    let cfg = FileSinkConfig {
        path: "out".into(),
        format: FileFormat::Lines,
        rolling: per_checkpoint(),
    };
    let ctx = BuildContext {
        operator_id: "out".into(),
        subtask: 0,
        parallelism: 1,
        max_parallelism: 128,
        base_dir: dir.path().to_path_buf(),
        delta_checkpoints: true,
    };
    let mut sink = FileSink::new(&cfg, &schema, &ctx).unwrap();
    sink.open(DeliveryGuarantee::ExactlyOnce).unwrap();
    sink.restore_state(RestoredState::sink(vec![state.clone()]))
        .unwrap();
    // Pending parts of the checkpoint committed, everything after it gone: parts 0 .. next
    // are exactly the visible files, and nothing is hidden.
    assert_eq!(hidden(&out), Vec::<String>::new(), "before: {before:?}");
    let expected: Vec<String> = {
        let mut v: Vec<String> = (0..files.next_part)
            .map(|n| format!("part-0-{n}"))
            .collect();
        v.sort();
        v
    };
    assert_eq!(visible(&out), expected);
    assert_each_update_once(&committed_lines(&out));
    // Committing again (a second restore of the same checkpoint) is a no-op.
    let mut again = FileSink::new(&cfg, &schema, &ctx).unwrap();
    again.open(DeliveryGuarantee::ExactlyOnce).unwrap();
    again
        .restore_state(RestoredState::sink(vec![state]))
        .unwrap();
    assert_eq!(visible(&out), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_and_restored_run_commits_exactly_the_output_of_a_run_without_failure() {
    const LINES: u64 = 30_000;
    let expected = reference(LINES, 2).await;

    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    // A minute of input at 500 lines/s: the crash (once checkpoint 2 completed, however
    // slowly) comes long before the end. The restored run reads the rest unthrottled (the
    // rate is not state).
    let throttled = write_pipeline(dir.path(), Some(LINES), Some(500));
    let (plan, opts) = job(&throttled, 2, Some(&ck), None);
    let mut handle = runtime::start(plan, opts).unwrap();
    let mut notices = handle.take_checkpoint_notices().unwrap();
    completed(&mut notices, 2).await;
    handle.cancel();
    let report = handle.wait().await.unwrap();
    assert_eq!(
        report.status,
        JobStatus::Cancelled,
        "crashed before the end"
    );
    let out = dir.path().join("out");
    assert!(committed_lines(&out).len() < expected.len());

    let chk = latest_checkpoint(&ck);
    let p = write_pipeline(dir.path(), Some(LINES), None);
    let (plan, opts) = job(&p, 2, Some(&ck), Some(&chk));
    let report = runtime::start(plan, opts).unwrap().wait().await.unwrap();
    assert_eq!(report.status, JobStatus::Finished);
    assert_eq!(hidden(&out), Vec::<String>::new());
    let got = committed_lines(&out);
    assert_each_update_once(&got);
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "committed output differs from the run without failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_exactly_once_job_commits_all_its_output_at_the_end() {
    const LINES: u64 = 2_000;
    let expected = reference(LINES, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    // ~0.5 s: checkpoints usually complete (and commit) during the run; how many depends on
    // the machine, so the test asks only that everything is committed at the end, once.
    let p = write_pipeline(dir.path(), Some(LINES), Some(4_000));
    let (plan, opts) = job(&p, 2, Some(&ck), None);
    let report = runtime::start(plan, opts).unwrap().wait().await.unwrap();
    assert_eq!(report.status, JobStatus::Finished);
    let out = dir.path().join("out");
    assert_eq!(hidden(&out), Vec::<String>::new());
    assert!(
        visible(&out).len() >= 2,
        "a part per subtask: {:?}",
        names(&out)
    );
    assert!(committed_lines(&out) == expected);
}

/// A store that writes checkpoints up to `last` through the job's own store and holds every
/// write of a later one until [`UpTo::release`] (then fails it): no checkpoint after `last`
/// can complete, however the timing goes.
struct UpTo {
    inner: Arc<dyn CheckpointStore>,
    last: u64,
    open: Mutex<bool>,
    cv: Condvar,
}

impl UpTo {
    /// Puts itself between the job of `opts` and its store. The held checkpoints fail once
    /// released, which must not fail the job: failures are tolerated.
    fn wrap(opts: &mut JobOptions, last: u64) -> Arc<UpTo> {
        let cp = opts.checkpointing.as_mut().expect("checkpointing");
        cp.config.tolerable_failed = u32::MAX;
        let held = Arc::new(UpTo {
            inner: cp.store.clone(),
            last,
            open: Mutex::new(false),
            cv: Condvar::new(),
        });
        cp.store = held.clone();
        held
    }

    fn release(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

impl CheckpointStore for UpTo {
    fn write_subtask(&self, s: SubtaskSnapshot) -> Result<SubtaskStateMeta, CheckpointError> {
        if s.checkpoint_id.0 <= self.last {
            return self.inner.write_subtask(s);
        }
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
        Err(CheckpointError::Other("held by the test".into()))
    }

    fn complete(&self, m: CheckpointMetadata) -> Result<CompletedCheckpoint, CheckpointError> {
        self.inner.complete(m)
    }

    fn abort(&self, id: CheckpointId) {
        self.inner.abort(id)
    }

    fn terminate(&self, how: JobTermination) {
        self.inner.terminate(how)
    }
}
