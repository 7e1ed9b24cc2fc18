//! Claim mode: under NO_CLAIM the restored checkpoint survives the new job's retention; under
//! CLAIM the new job owns it and retention deletes it once subsumed.

mod recovery_support;

use floe::checkpoint::restore;
use floe::checkpoint::storage::FsCheckpointStore;
use floe::checkpoint::JobId;
use floe::config::{ClaimMode, Config, RestartStrategy};
use floe::pipeline::plan::Plan;
use floe::runtime::failover::{self, FailoverHandle, FailoverSetup};
use recovery_support::*;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

fn plan(name: &str, finals: &FinalCounts) -> Plan {
    let spec = Replay {
        total: None,
        hold: u64::MAX,
        release: Arc::new(|| Box::new(|| true)),
        started_at: Arc::new(Mutex::new(Vec::new())),
    };
    let vs = vec![
        replay("src", spec),
        count_words("count", &[0], Some(2), finals),
    ];
    Plan::from_vertices(name, PathBuf::from("."), vs, 1, None).unwrap()
}

/// Runs the pipeline (restoring `initial` in `mode`) until its store retains a checkpoint with
/// id at least `until`, then stops it (Ctrl-C: checkpoints are kept). Returns the store.
async fn run_until(
    c: &Config,
    initial: Option<&Path>,
    mode: ClaimMode,
    until: impl Fn(u64) -> bool,
) -> Arc<FsCheckpointStore> {
    let job_id = JobId::random();
    let store = store(c, &job_id, "claim");
    let plan = plan("claim", &FinalCounts::default());
    let handle = FailoverHandle::new();
    let setup = FailoverSetup {
        job_id: job_id.clone(),
        name: "claim".into(),
        strategy: RestartStrategy::None,
        store: Some(store.clone()),
        initial: initial.map(|p| restore::load_snapshot(p).unwrap()),
        claim_mode: mode,
    };
    let c2 = c.clone();
    let run = tokio::spawn(failover::run(setup, handle.clone(), move |a| {
        attempt_options(&c2, &job_id, &plan, a)
    }));
    let s = store.clone();
    wait_for("checkpoints of the new job", || {
        s.latest_retained().is_some_and(|(id, _)| until(id))
    })
    .await;
    handle.stop();
    run.await.unwrap().expect("stopped cleanly");
    store
}

/// A checkpoint of a first job, then a second job restored from it in `mode`, run until it
/// completed two checkpoints of its own (num-retained 1). Returns the restored directory and
/// the second job's store.
async fn restore_and_checkpoint_twice(
    mode: ClaimMode,
) -> (PathBuf, Arc<FsCheckpointStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 1);
    // Incremental, every blob in a file: the restored checkpoint uses its job's shared/.
    c.state.incremental = true;
    c.state.inline_threshold = 0;
    let first = run_until(&c, None, ClaimMode::NoClaim, |id| id >= 2).await;
    let (id, restored) = first.latest_retained().unwrap();
    let restored = restored.to_path_buf();
    let second = run_until(&c, Some(&restored), mode, |n| n >= id + 2).await;
    (restored, second, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_claim_never_deletes_the_restored_checkpoint() {
    let (restored, second, _dir) = restore_and_checkpoint_twice(ClaimMode::NoClaim).await;
    assert!(
        restored.join("_metadata").is_file(),
        "{} was deleted",
        restored.display()
    );
    // It left the new job's store all the same: only the newest is retained.
    assert_eq!(second.retained().len(), 1);
    assert_ne!(second.latest_retained().unwrap().1, restored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_lets_retention_delete_the_restored_checkpoint() {
    let (restored, second, _dir) = restore_and_checkpoint_twice(ClaimMode::Claim).await;
    assert!(!restored.exists(), "{} is still there", restored.display());
    // So are the shared files it used, in its own job's shared/.
    let shared = restored.parent().unwrap().join("shared");
    let left: Vec<_> = std::fs::read_dir(&shared).unwrap().collect();
    assert!(left.is_empty(), "{left:?} left in {}", shared.display());
    assert_eq!(second.retained().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_is_taken_as_no_claim() {
    let (restored, _second, _dir) = restore_and_checkpoint_twice(ClaimMode::Legacy).await;
    assert!(restored.join("_metadata").is_file());
}
