//! A real job behind the API: a datagen word count checkpointing into a temp dir, registered
//! with its live metrics and statistics. `/jobs/:id/checkpoints` shows a completed checkpoint
//! whose directory exists, and `PATCH /jobs/:id?mode=cancel` cancels the job through the
//! command channel.

mod rest_support;

use floe::checkpoint::storage::FsCheckpointStore;
use floe::checkpoint::JobId;
use floe::config::Config;
use floe::pipeline::plan::Plan;
use floe::runtime::{
    self, CheckpointNotice, CheckpointingOptions, JobHandle, JobOptions, JobStatus,
};
use floe::service::registry::{JobCommand, JobRegistration, JobState, StatsSource};
use floe::service::rest::{self, ApiState, RestOptions};
use floe::service::JobRegistry;
use rest_support::*;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_shows_its_checkpoints_and_cancels() {
    let dir = tempfile::tempdir().unwrap();
    let text = "name: rest-job
operators:
  - {id: source, type: datagen, words-per-line: 5, vocab: 300, seed: 3, rate: 2000}
  - {id: split, type: flat_map, inputs: [source]}
  - {id: count, type: key_by, inputs: [split], key: word, aggregate: count}
  - {id: sink, type: blackhole, inputs: [count]}
";
    let pipeline = floe::pipeline::parse(text, Path::new("rest-job.yaml")).unwrap();
    let plan = Plan::build(&pipeline, 2, None).unwrap();
    let mut cfg = Config::default();
    cfg.checkpointing.interval = Some(Duration::from_millis(50));
    cfg.state.checkpoints_dir = Some(dir.path().join("ck").display().to_string());
    // Retention keeps every checkpoint, so the one the API reports still exists when read.
    cfg.state.num_retained = 1000;
    let job_id = JobId::random();
    let store =
        FsCheckpointStore::new(&cfg.state, &cfg.checkpointing, job_id.clone(), "rest-job").unwrap();
    let mut opts = JobOptions::new("rest-job");
    opts.checkpointing = Some(CheckpointingOptions {
        config: cfg.checkpointing.clone(),
        store: Arc::new(store),
        job_id: job_id.clone(),
        first_id: 1,
    });
    let mut reg = JobRegistration::new(
        job_id.clone(),
        "rest-job",
        &plan,
        Arc::new(Default::default()),
    );
    let mut handle = runtime::start(plan, opts).unwrap();
    let mut notices = handle.take_checkpoint_notices().unwrap();
    let control = handle.control();
    reg.metrics = handle.metrics();
    reg.config = Arc::new(cfg);
    // The job owns its statistics; the registry reads them through the handle.
    let handle: Arc<Mutex<Option<JobHandle>>> = Arc::new(Mutex::new(Some(handle)));
    let h = handle.clone();
    let stats: StatsSource = Arc::new(move || {
        h.lock()
            .unwrap()
            .as_ref()
            .and_then(JobHandle::checkpoint_stats)
    });
    reg.stats = Some(stats);

    let registry = JobRegistry::new();
    let mut commands = registry.register(reg);
    // The job's side of the command channel: only cancel is needed here.
    tokio::spawn(async move {
        while let Some(cmd) = commands.recv().await {
            match cmd {
                JobCommand::Cancel { reply } => {
                    control.cancel();
                    let _ = reply.send(Ok(()));
                }
                JobCommand::TriggerSavepoint { reply, .. } | JobCommand::Stop { reply, .. } => {
                    let _ = reply.send(Err("not in this test".into()));
                }
            }
        }
    });
    let o = RestOptions::local_ephemeral();
    let server = rest::serve(rest::router(ApiState::new(registry.clone(), &o)), &o)
        .await
        .unwrap();
    let addr = server.local_addr();

    let first = loop {
        match notices.recv().await.expect("notices ended") {
            CheckpointNotice::Completed(c) => break c,
            CheckpointNotice::Failed { id, reason } => panic!("checkpoint {id} failed: {reason}"),
            _ => {}
        }
    };
    let v = get(addr, &format!("/jobs/{job_id}/checkpoints")).await;
    assert_eq!(v.status, 200, "{}", v.body);
    let v = v.json();
    assert!(v["counts"]["completed"].as_u64().unwrap() >= 1, "{v}");
    let latest = &v["latest"]["completed"];
    assert_eq!(latest["className"], "completed");
    assert_eq!(latest["status"], "COMPLETED");
    assert!(latest["id"].as_u64().unwrap() >= first.id.0, "{v}");
    let path = latest["external_path"].as_str().unwrap();
    let local = path.strip_prefix("file:").unwrap();
    assert!(
        local.contains(&format!("{job_id}/chk-")),
        "{path} is under the job's directory"
    );
    assert!(
        Path::new(local).join("_metadata").is_file(),
        "{path}/_metadata exists"
    );
    assert!(!v["history"].as_array().unwrap().is_empty());
    let c = get(addr, &format!("/jobs/{job_id}/checkpoints/config"))
        .await
        .json();
    assert_eq!(c["interval"], 50);
    assert_eq!(c["checkpoint_storage"], "FileSystemCheckpointStorage");

    let d = poll_until(addr, &format!("/jobs/{job_id}"), |d| {
        d["vertices"][0]["metrics"]["write-records"].as_u64() > Some(0)
    })
    .await;
    assert_eq!(d["state"], "RUNNING");
    assert_eq!(d["vertices"][0]["name"], "source -> split");

    let a = request(
        addr,
        "PATCH",
        &format!("/jobs/{job_id}?mode=cancel"),
        &[],
        None,
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(
        get(addr, &format!("/jobs/{job_id}")).await.json()["state"],
        "CANCELLING"
    );
    let job = handle.lock().unwrap().take().unwrap();
    let report = job.wait().await.unwrap();
    assert_eq!(report.status, JobStatus::Cancelled);
    registry.finish(&job_id, JobState::Canceled, None);
    let d = get(addr, &format!("/jobs/{job_id}")).await.json();
    assert_eq!(d["state"], "CANCELED");
    assert!(d["end-time"].as_i64().unwrap() > 0);
    server.shutdown().await;
}
