//! Savepoints through the runtime, on a real `FsCheckpointStore` in temp directories
//! (issue 5 point 2; Flink's savepoint semantics): a savepoint restores and still does
//! after being moved; it takes its id from the checkpoint counter and is never deleted by
//! retention; stop-with-savepoint ends the job FINISHED with the sink committed and a
//! restore continues exactly once; an intermediate savepoint commits nothing; a savepoint
//! that cannot be written fails only its request; a job without a checkpoint interval can
//! take one; a delta checkpoint after a savepoint restores right.
//!
//! Timing: nothing sleeps and hopes; tests wait for notices, replies, or files (polled, with
//! a deadline that only bounds a hang).

mod file_sink_support;
mod runtime_support;
use file_sink_support::{
    assert_each_update_once, committed_lines, completed, hidden, latest_checkpoint, names, visible,
    wait_for, write_pipeline,
};

use floe::checkpoint::metadata::{BlobLocation, KeyedStateHandle, SnapshotKind};
use floe::checkpoint::restore;
use floe::checkpoint::storage::{self, list_checkpoints, FsCheckpointStore};
use floe::checkpoint::JobId;
use floe::config::{Config, ExternalizedRetention};
use floe::pipeline::plan::Plan;
use floe::runtime::{self, CheckpointingOptions, JobOptions, JobStatus, SavepointAction};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Checkpointing settings: EXACTLY_ONCE every 50 ms into `ck`, kept on cancellation (a
/// cancelled job stands for a crashed one).
fn config(ck: &Path, interval: Option<Duration>, incremental: bool) -> Config {
    let mut cfg = Config::default();
    cfg.state.checkpoints_dir = Some(format!("file://{}", ck.display()));
    cfg.checkpointing.interval = interval;
    cfg.checkpointing.externalized_retention = ExternalizedRetention::RetainOnCancellation;
    cfg.state.incremental = incremental;
    // Small: keyed state goes to files, so relocation is tested on real state files.
    cfg.state.inline_threshold = 16;
    cfg
}

/// The plan and options of one run, as `floe run [-s restore]` builds them.
fn job(
    pipeline: &Path,
    parallelism: u32,
    checkpoints: Option<(&Path, Option<Duration>, bool)>,
    restore_from: Option<&Path>,
) -> (Plan, JobOptions, Option<Arc<FsCheckpointStore>>) {
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
    let mut fs_store = None;
    if let Some((ck, interval, incremental)) = checkpoints {
        let cfg = config(ck, interval, incremental);
        let job_id = JobId::random();
        let store = FsCheckpointStore::new(&cfg.state, &cfg.checkpointing, job_id.clone(), "twopc")
            .unwrap();
        let store = Arc::new(store);
        fs_store = Some(store.clone());
        opts.checkpointing = Some(CheckpointingOptions {
            config: cfg.checkpointing,
            store,
            job_id,
            first_id: snapshot
                .as_ref()
                .map_or(1, |s| s.metadata.checkpoint_id + 1),
        });
    }
    (plan, opts, fs_store)
}

const FAST: Option<Duration> = Some(Duration::from_millis(50));
/// An interval no test reaches: the transactional sink is on, no checkpoint triggers.
const NEVER: Option<Duration> = Some(Duration::from_secs(3600));

/// The savepoint directories directly under `root`.
fn savepoints_in(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| {
        p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("savepoint-")
    });
    v.sort();
    v
}

/// Every checkpoint id retained under `ck`.
fn retained_ids(ck: &Path) -> Vec<u64> {
    let mut ids = Vec::new();
    for job in std::fs::read_dir(ck).unwrap().flatten() {
        if let Ok(list) = list_checkpoints(&storage::Location::Local(job.path())) {
            ids.extend(list.into_iter().map(|(id, _)| id));
        }
    }
    ids.sort_unstable();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_with_savepoint_finishes_commits_and_a_moved_savepoint_continues_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let sp_root = dir.path().join("savepoints");
    let p = write_pipeline(dir.path(), None, Some(2000));
    let (plan, opts, _) = job(&p, 2, Some((&ck, FAST, true)), None);
    let mut handle = runtime::start(plan, opts).unwrap();
    let mut notices = handle.take_checkpoint_notices().unwrap();
    let first = completed(&mut notices, 1).await;
    // Records reached the sink before the savepoint's barrier (however late the source
    // started): the savepoint has keyed state and output to commit.
    let out = dir.path().join("out");
    wait_for("output in progress", || !hidden(&out).is_empty()).await;
    let control = handle.control();
    let reply = control.trigger_savepoint(sp_root.clone(), SavepointAction::Stop { drain: false });
    let sp = reply.await.unwrap().expect("the savepoint completes");
    let sp_path = sp.path.to_path_buf();
    let report = handle.wait().await.unwrap();
    assert_eq!(
        report.status,
        JobStatus::Finished,
        "stop-with-savepoint ends FINISHED"
    );
    assert!(
        sp.checkpoint_id.0 > first,
        "numbered from the checkpoint counter"
    );
    assert_eq!(sp_path.parent(), Some(sp_root.as_path()));
    let name = sp_path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("savepoint-"), "{name}");
    let stats = report.checkpoints.expect("stats");
    let latest = stats
        .latest_savepoint
        .expect("latest savepoint in the stats");
    assert_eq!(latest.kind.flink_type(), "SYNC_SAVEPOINT");

    // The sink committed at the savepoint: nothing pending is left.
    assert!(
        hidden(&out).iter().all(|n| !n.ends_with(".pending")),
        "{:?}",
        names(&out)
    );
    assert!(!visible(&out).is_empty());
    // FINISHED: retained checkpoints deleted (RETAIN_ON_CANCELLATION), the savepoint stays.
    assert_eq!(retained_ids(&ck), Vec::<u64>::new());
    let loaded = storage::load_at(&sp.path).unwrap();
    assert_eq!(loaded.metadata.kind, SnapshotKind::Savepoint);
    assert_eq!(loaded.metadata.checkpoint_id, sp.checkpoint_id.0);
    // Canonical: keyed state full, never in shared/, even with incremental on.
    let mut files = 0;
    for o in &loaded.metadata.operators {
        for s in &o.subtasks {
            if let Some(k) = &s.keyed {
                let KeyedStateHandle::Full(b) = k else {
                    panic!("savepoint keyed state is not full: {k:?}")
                };
                assert!(!matches!(b.location, BlobLocation::Shared(_)));
                files += matches!(b.location, BlobLocation::Exclusive(_)) as usize;
            }
        }
    }
    assert!(files > 0, "state files in the savepoint directory");

    // Moved elsewhere (and the checkpoint directory gone), it still restores.
    let moved = dir.path().join("elsewhere");
    std::fs::create_dir(&moved).unwrap();
    let moved = moved.join(&name);
    std::fs::rename(&sp_path, &moved).unwrap();
    std::fs::remove_dir_all(&ck).unwrap();
    let p = write_pipeline(dir.path(), Some(3000), None);
    let ck2 = dir.path().join("ck2");
    let (plan, opts, _) = job(&p, 2, Some((&ck2, FAST, true)), Some(&moved));
    let report = runtime::start(plan, opts).unwrap().wait().await.unwrap();
    assert_eq!(report.status, JobStatus::Finished);
    // Both runs together: every (word, n) exactly once, so the counts continued.
    let lines = committed_lines(&out);
    assert_each_update_once(&lines);
    assert_eq!(lines.len(), 3000 * 3, "3 words a line, each update once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intermediate_savepoint_commits_nothing_and_shares_the_counter() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let sp_root = dir.path().join("sp");
    let p = write_pipeline(dir.path(), None, Some(2000));
    let (plan, opts, store) = job(&p, 1, Some((&ck, NEVER, false)), None);
    let store = store.unwrap();
    let handle = runtime::start(plan, opts).unwrap();
    let out = dir.path().join("out");
    wait_for("output in progress", || !hidden(&out).is_empty()).await;
    let sp = handle
        .control()
        .trigger_savepoint(sp_root.clone(), SavepointAction::Keep)
        .await
        .unwrap()
        .expect("savepoint");
    assert_eq!(sp.checkpoint_id.0, 1);
    // Its barrier turned the in-progress part pending, and nothing committed it (§8.3).
    assert!(
        hidden(&out).iter().any(|n| n.ends_with(".pending")),
        "{:?}",
        names(&out)
    );
    assert_eq!(
        visible(&out),
        Vec::<String>::new(),
        "an intermediate savepoint commits nothing"
    );
    assert_eq!(
        store.retained(),
        Vec::<u64>::new(),
        "a savepoint is not retained"
    );
    let stats = handle.checkpoint_stats().unwrap();
    assert_eq!(stats.latest_completed, None);
    assert_eq!(
        stats.latest_savepoint.unwrap().kind.flink_type(),
        "SAVEPOINT"
    );
    handle.cancel();
    handle.wait().await.unwrap();
    assert_eq!(savepoints_in(&sp_root), vec![sp.path.to_path_buf()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_shared_retention_keeps_savepoints_and_a_delta_after_one_restores_right() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let sp_root = dir.path().join("sp");
    let p = write_pipeline(dir.path(), None, Some(2000));
    // Incremental, num-retained 1 (default): each checkpoint subsumes the previous.
    let (plan, opts, store) = job(&p, 1, Some((&ck, FAST, true)), None);
    let store = store.unwrap();
    let mut handle = runtime::start(plan, opts).unwrap();
    let mut notices = handle.take_checkpoint_notices().unwrap();
    let c1 = completed(&mut notices, 1).await;
    let sp = handle
        .control()
        .trigger_savepoint(sp_root.clone(), SavepointAction::Keep)
        .await
        .unwrap()
        .expect("savepoint");
    assert!(sp.checkpoint_id.0 > c1);
    // Two checkpoints after it: the second one may be a delta of the first.
    let c2 = completed(&mut notices, sp.checkpoint_id.0 + 1).await;
    let c3 = completed(&mut notices, c2 + 1).await;
    assert!(c2 > sp.checkpoint_id.0);
    let retained = store.retained();
    assert!(!retained.contains(&sp.checkpoint_id.0), "{retained:?}");
    assert!(
        sp.path.to_path_buf().join("_metadata").exists(),
        "retention never deletes a savepoint"
    );
    handle.cancel();
    handle.wait().await.unwrap();
    assert!(sp.path.to_path_buf().join("_metadata").exists());
    // Restoring the checkpoint after the savepoint continues exactly once: the state
    // checkpoint c3 holds is right although the savepoint moved the change tracking.
    let chk = latest_checkpoint(&ck);
    assert!(storage::load(&chk).unwrap().metadata.checkpoint_id >= c3);
    let p = write_pipeline(dir.path(), Some(4000), None);
    let ck2 = dir.path().join("ck2");
    let (plan, opts, _) = job(&p, 1, Some((&ck2, FAST, true)), Some(&chk));
    runtime::start(plan, opts).unwrap().wait().await.unwrap();
    let lines = committed_lines(&dir.path().join("out"));
    assert_each_update_once(&lines);
    assert_eq!(lines.len(), 4000 * 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_savepoint_that_cannot_be_written_fails_only_its_request() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let p = write_pipeline(dir.path(), None, Some(2000));
    let (plan, mut opts, _) = job(&p, 1, Some((&ck, FAST, false)), None);
    if let Some(c) = &mut opts.checkpointing {
        c.config.tolerable_failed = 0;
    }
    let mut handle = runtime::start(plan, opts).unwrap();
    let mut notices = handle.take_checkpoint_notices().unwrap();
    let err = handle
        .control()
        .trigger_savepoint(blocker.join("sp"), SavepointAction::Stop { drain: true })
        .await
        .unwrap()
        .expect_err("an unwritable target fails");
    assert!(err.contains("a-file"), "names the path: {err}");
    // The job goes on: checkpoints still complete (tolerable failures 0 was not exceeded).
    let c = completed(&mut notices, 1).await;
    assert!(c >= 1);
    handle.stop();
    let report = handle.wait().await.unwrap();
    assert_eq!(report.status, JobStatus::Stopped);
    assert_eq!(report.checkpoints.unwrap().consecutive_failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_without_a_checkpoint_interval_takes_savepoints_that_restore() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let sp_root = dir.path().join("sp");
    let p = write_pipeline(dir.path(), None, Some(2000));
    let (plan, opts, _) = job(&p, 2, Some((&ck, None, false)), None);
    let handle = runtime::start(plan, opts).unwrap();
    let out = dir.path().join("out");
    wait_for("some output", || !names(&out).is_empty()).await;
    let sp = handle
        .control()
        .trigger_savepoint(sp_root, SavepointAction::Cancel)
        .await
        .unwrap()
        .expect("savepoint without an interval");
    assert_eq!(sp.checkpoint_id.0, 1);
    let report = handle.wait().await.unwrap();
    assert_eq!(
        report.status,
        JobStatus::Cancelled,
        "cancel-job: CANCELED after the savepoint"
    );
    // It holds every word's count: restoring into a fresh output directory and adding
    // lines continues each word's count where the savepoint left it.
    let loaded = storage::load_at(&sp.path).unwrap();
    assert_eq!(loaded.metadata.kind, SnapshotKind::Savepoint);
    let restored_lines = {
        let (plan, _, _) = job(&p, 2, None, None);
        let targets = restore::targets_of(&plan, false);
        let mapping = restore::map_checkpoint(&loaded.metadata, "t", &targets, false).unwrap();
        let state = restore::load_state(&loaded, &mapping, plan.max_parallelism).unwrap();
        state
            .operators
            .values()
            .filter_map(|s| match s {
                floe::operators::RestoredState::Blobs(b) => Some(b),
                _ => None,
            })
            .flatten()
            .map(
                |b| match floe::operators::sources::SourcePosition::from_blob(&b.blob) {
                    Ok(floe::operators::sources::SourcePosition::Datagen { next_line }) => {
                        next_line
                    }
                    other => panic!("{other:?}"),
                },
            )
            .sum::<u64>()
    };
    assert!(
        restored_lines > 0,
        "the savepoint holds the sources' positions"
    );
}
