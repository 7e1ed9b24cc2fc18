//! Checkpoint settings changed while the job runs (`FailoverHandle::reconfigure`, what
//! `floe serve` calls when `flink-conf.yaml` changes): the interval and retention apply from
//! the next checkpoint, without a restart.

mod recovery_support;

use floe::checkpoint::JobId;
use floe::config::live::LiveSettings;
use floe::config::{ClaimMode, RestartStrategy};
use floe::pipeline::plan::Plan;
use floe::runtime::failover::{self, FailoverHandle, FailoverSetup};
use recovery_support::*;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_and_retention_change_while_the_job_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 1);
    // Far beyond the test: without the change no checkpoint would ever trigger.
    c.checkpointing.interval = Some(Duration::from_secs(3600));
    let job_id = JobId::random();
    let store = store(&c, &job_id, "live");
    let finals = FinalCounts::default();
    let spec = Replay {
        total: None,
        hold: u64::MAX,
        release: Arc::new(|| Box::new(|| true)),
        started_at: Arc::new(Mutex::new(Vec::new())),
    };
    let vs = vec![
        replay("src", spec),
        count_words("count", &[0], Some(2), &finals),
    ];
    let plan = Plan::from_vertices("live", PathBuf::from("."), vs, 1, None).unwrap();
    let handle = FailoverHandle::new();
    let setup = FailoverSetup {
        job_id: job_id.clone(),
        name: "live".into(),
        strategy: RestartStrategy::None,
        store: Some(store.clone()),
        initial: None,
        claim_mode: ClaimMode::NoClaim,
    };
    let (cc, id) = (c.clone(), job_id.clone());
    let job = tokio::spawn(failover::run(setup, handle.clone(), move |attempt| {
        attempt_options(&cc, &id, &plan, attempt)
    }));
    wait_for("the job to run", || handle.metrics().is_some()).await;
    assert!(store.retained().is_empty());

    let mut live = LiveSettings::from_config(&c);
    live.interval = Some(Duration::from_millis(20));
    live.num_retained = 3;
    handle.reconfigure(live);
    assert_eq!(handle.live_settings(), Some(live));
    wait_for("three retained checkpoints at the new interval", || {
        store.retained().len() == 3
    })
    .await;

    // Fewer retained: the next completed checkpoint subsumes the extra ones.
    let before = store.latest_retained().unwrap().0;
    live.num_retained = 1;
    handle.reconfigure(live);
    wait_for("retention down to one", || {
        let r = store.retained();
        r.len() == 1 && r[0] > before
    })
    .await;

    handle.stop();
    let report = job.await.unwrap();
    assert!(report.is_ok(), "{:?}", report.err());
    assert!(store.retained().len() <= 1);
}
