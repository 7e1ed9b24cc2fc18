//! In-process failover: a failing operator restarts the job from the latest completed
//! checkpoint as the restart strategy says, and the final counts equal a run without failure;
//! `none` and exhausted attempts fail the job with Flink's words.

mod recovery_support;

use floe::checkpoint::JobId;
use floe::config::{ClaimMode, RestartStrategy};
use floe::pipeline::plan::Plan;
use floe::runtime::failover::{self, FailoverError, FailoverHandle, FailoverSetup};
use recovery_support::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOTAL: u64 = 2000;
const HOLD: u64 = 1000;

struct Setup {
    plan: Plan,
    finals: FinalCounts,
    started_at: Arc<Mutex<Vec<Option<u64>>>>,
}

/// src -> boom -> count (keyed, x2). The source of each attempt holds at HOLD until a
/// checkpoint taken there completed, and boom fails at the first record past HOLD while armed.
fn setup(
    store: &Arc<floe::checkpoint::storage::FsCheckpointStore>,
    armed: &Arc<AtomicBool>,
    once: bool,
) -> Setup {
    let finals = FinalCounts::default();
    let started_at = Arc::new(Mutex::new(Vec::new()));
    let spec = Replay {
        total: Some(TOTAL),
        hold: HOLD,
        release: after_checkpoint_at_hold(store, HOLD),
        started_at: started_at.clone(),
    };
    let vs = vec![
        replay("src", spec),
        boom("boom", 0, HOLD, armed, once),
        count_words("count", &[1], Some(2), &finals),
    ];
    let plan = Plan::from_vertices("fo", PathBuf::from("."), vs, 1, None).unwrap();
    Setup {
        plan,
        finals,
        started_at,
    }
}

async fn run(
    strategy: RestartStrategy,
    once: bool,
) -> (
    Result<floe::runtime::JobReport, FailoverError>,
    Setup,
    FailoverHandle,
    Arc<floe::checkpoint::storage::FsCheckpointStore>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), 1);
    let job_id = JobId::random();
    let store = store(&c, &job_id, "fo");
    let armed = Arc::new(AtomicBool::new(true));
    let s = setup(&store, &armed, once);
    let handle = FailoverHandle::new();
    let fs = FailoverSetup {
        job_id: job_id.clone(),
        name: "fo".into(),
        strategy,
        store: Some(store.clone()),
        initial: None,
        claim_mode: ClaimMode::NoClaim,
    };
    let plan = s.plan.clone();
    let (cfg, id) = (c.clone(), job_id.clone());
    let result = failover::run(fs, handle.clone(), move |a| {
        attempt_options(&cfg, &id, &plan, a)
    })
    .await;
    (result, s, handle, store, dir)
}

fn fixed(attempts: u32) -> RestartStrategy {
    RestartStrategy::FixedDelay {
        attempts,
        delay: Duration::from_millis(1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_delay_restarts_from_the_latest_checkpoint_and_counts_match_a_clean_run() {
    let (result, s, handle, _store, _dir) = run(fixed(3), true).await;
    result.expect("the job recovers and finishes");
    let status = handle.status();
    assert_eq!(status.restarts, 1);
    let restored = status.last_restore.expect("restored from a checkpoint");
    assert!(!restored.from_initial);
    assert!(restored.checkpoint_id >= 1);
    assert_eq!(
        restored.path.name(),
        Some(format!("chk-{}", restored.checkpoint_id).as_str())
    );
    assert!(status.last_failure.unwrap().contains("injected failure"));
    // The second attempt's source resumed where the checkpoint had it (HOLD), not from 0.
    let starts = s.started_at.lock().unwrap().clone();
    assert_eq!(starts, vec![None, Some(HOLD)]);
    // Exactly the counts of a run without failure: 2000 records, 200 per word.
    let want: BTreeMap<String, u64> = (0..10).map(|i| (format!("w{i}"), TOTAL / 10)).collect();
    assert_eq!(*s.finals.lock().unwrap(), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn none_fails_the_job_with_flinks_message() {
    let (result, _s, handle, _store, _dir) = run(RestartStrategy::None, true).await;
    let err = result.expect_err("no restart");
    assert!(matches!(err, FailoverError::Suppressed { .. }));
    let text = err.to_string();
    assert!(
        text.ends_with("Recovery is suppressed by NoRestartBackoffTimeStrategy"),
        "{text}"
    );
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(cause.contains("injected failure"), "{cause}");
    assert_eq!(handle.status().restarts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_attempts_fail_the_job_and_checkpoint_ids_keep_rising() {
    let (result, s, handle, store, _dir) = run(fixed(2), false).await;
    let err = result.expect_err("gives up");
    assert!(
        err.to_string().ends_with(
            "Recovery is suppressed by FixedDelayRestartBackoffTimeStrategy(\
             maxNumberRestartAttempts=2, backoffTimeMS=1)"
        ),
        "{err}"
    );
    assert_eq!(handle.status().restarts, 2);
    assert_eq!(s.started_at.lock().unwrap().len(), 3);
    // Each attempt completed a checkpoint before failing, numbered after the one it restored:
    // the third attempt restored the second's, id 2 or above.
    let restored = handle.status().last_restore.unwrap().checkpoint_id;
    assert!(restored >= 2, "restored {restored}");
    // Giving up applied the retention of a failed job (NO_EXTERNALIZED_CHECKPOINTS: delete).
    assert_eq!(store.retained(), Vec::<u64>::new());
}
