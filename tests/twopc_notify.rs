//! Checkpoint outcomes reach operators (issue 4 point 5; Flink's `CheckpointListener`): every
//! subtask, chained after a source or in an operator task, hears `notify_checkpoint_complete(id)` only
//! after the checkpoint's `_metadata` is durable (`store.complete` returned) and after its own
//! snapshot for `id`, in increasing order; failed checkpoints give
//! `notify_checkpoint_aborted`; `open` says the delivery guarantee and `end_of_input` says why
//! the input ended.

mod runtime_support;

use floe::checkpoint::{CheckpointId, OperatorSnapshot};
use floe::operators::{DeliveryGuarantee, EndOfInput, Operator, OperatorError};
use floe::pipeline::plan::Plan;
use floe::record::Batch;
use floe::runtime::CheckpointOutcome;
use floe::runtime::{self, CheckpointNotice, JobOptions};
use runtime_support::checkpoints::{
    checkpointing, counting_source_logged, Counting, MemoryStore, SourceHeard, SourceLog,
};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Open(DeliveryGuarantee),
    Snapshot(u64),
    /// The id, and whether the store had completed it when the notification came.
    Complete(u64, bool),
    Aborted(u64),
    End(EndOfInput),
    Finish,
}

type Log = Arc<Mutex<Vec<(String, u32, Event)>>>;

struct Recorder {
    name: String,
    subtask: u32,
    log: Log,
    store: Option<Arc<MemoryStore>>,
}

impl Recorder {
    fn push(&self, e: Event) {
        self.log
            .lock()
            .unwrap()
            .push((self.name.clone(), self.subtask, e));
    }
}

impl Operator for Recorder {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        out.push(batch);
        Ok(())
    }
    fn open(&mut self, g: DeliveryGuarantee) -> Result<(), OperatorError> {
        self.push(Event::Open(g));
        Ok(())
    }
    fn snapshot_state_at(
        &mut self,
        id: CheckpointId,
    ) -> Result<Option<OperatorSnapshot>, OperatorError> {
        self.push(Event::Snapshot(id.0));
        Ok(None)
    }
    fn notify_checkpoint_complete(&mut self, id: CheckpointId) -> Result<(), OperatorError> {
        let durable = self
            .store
            .as_ref()
            .is_some_and(|s| s.completed_ids().contains(&id.0));
        self.push(Event::Complete(id.0, durable));
        Ok(())
    }
    fn notify_checkpoint_aborted(&mut self, id: CheckpointId) -> Result<(), OperatorError> {
        self.push(Event::Aborted(id.0));
        Ok(())
    }
    fn end_of_input(&mut self, why: EndOfInput) {
        self.push(Event::End(why));
    }
    fn finish(&mut self, _out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        self.push(Event::Finish);
        Ok(())
    }
}

/// source (x2) -> chained (x2, in the source task) -> alone (x1, its own operator task).
fn plan(batches: Option<u64>, log: &Log, store: Option<Arc<MemoryStore>>) -> Plan {
    plan_logged(batches, log, store, None)
}

/// [`plan`], its source subtasks logging what they hear into `sources`.
fn plan_logged(
    batches: Option<u64>,
    log: &Log,
    store: Option<Arc<MemoryStore>>,
    sources: Option<SourceLog>,
) -> Plan {
    let recorder = |name: &str, inputs: &[usize], p: u32| {
        let (log, store, n) = (log.clone(), store.clone(), name.to_string());
        runtime_support::operator(name, inputs, Some(p), move |ctx| {
            Box::new(Recorder {
                name: n.clone(),
                subtask: ctx.subtask,
                log: log.clone(),
                store: store.clone(),
            })
        })
    };
    let vs = vec![
        counting_source_logged(
            "src",
            Some(2),
            Counting {
                name: "w".into(),
                size: 10,
                batches,
            },
            sources,
        ),
        recorder("chained", &[0], 2),
        recorder("alone", &[1], 1),
    ];
    Plan::from_vertices("n", PathBuf::from("."), vs, 1, None).unwrap()
}

fn events(log: &Log, name: &str, subtask: u32) -> Vec<Event> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(n, s, _)| n == name && *s == subtask)
        .map(|(_, _, e)| e.clone())
        .collect()
}

const SUBTASKS: [(&str, u32); 3] = [("chained", 0), ("chained", 1), ("alone", 0)];

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_reach_every_subtask_after_durability_and_its_snapshot_in_order() {
    let log = Log::default();
    let sources = SourceLog::default();
    let store = Arc::new(MemoryStore::default());
    let mut opts = JobOptions::new("n");
    opts.checkpointing = Some(checkpointing(store.clone(), Duration::from_millis(20)));
    let plan = plan_logged(None, &log, Some(store.clone()), Some(sources.clone()));
    let mut handle = runtime::start(plan, opts).unwrap();
    let mut notices = handle.take_checkpoint_notices().unwrap();
    loop {
        match notices.recv().await {
            Some(CheckpointNotice::Completed(s)) if s.id.0 >= 3 => break,
            Some(_) => {}
            None => panic!("job ended"),
        }
    }
    for (name, s) in SUBTASKS {
        wait_for(&format!("{name} {s} to hear of checkpoint 3"), || {
            events(&log, name, s)
                .iter()
                .any(|e| matches!(e, Event::Complete(id, _) if *id >= 3))
        })
        .await;
    }
    for s in 0..2 {
        wait_for(&format!("source {s} to hear of checkpoint 3"), || {
            heard(&sources, s).iter().any(
                |e| matches!(e, SourceHeard::Outcome(CheckpointOutcome::Completed(id)) if id.0 >= 3),
            )
        })
        .await;
    }
    handle.cancel();
    handle.wait().await.unwrap();
    for (name, s) in SUBTASKS {
        let ev = events(&log, name, s);
        assert_eq!(
            ev[0],
            Event::Open(DeliveryGuarantee::ExactlyOnce),
            "{name} {s}"
        );
        let mut last = 0;
        for (i, e) in ev.iter().enumerate() {
            if let Event::Complete(id, durable) = e {
                assert!(*durable, "{name} {s}: {id} notified before store.complete");
                assert!(*id > last, "{name} {s}: out of order: {ev:?}");
                assert!(
                    ev[..i].contains(&Event::Snapshot(*id)),
                    "{name} {s}: complete({id}) before its snapshot"
                );
                last = *id;
            }
        }
        assert!(last >= 3, "{name} {s}: {ev:?}");
    }
    // The sources hear completions too, each after their own snapshot, in order.
    for s in 0..2 {
        let ev = heard(&sources, s);
        let mut last = 0;
        for (i, e) in ev.iter().enumerate() {
            if let SourceHeard::Outcome(CheckpointOutcome::Completed(id)) = e {
                assert!(id.0 > last, "source {s}: out of order: {ev:?}");
                assert!(
                    ev[..i].contains(&SourceHeard::Snapshot(id.0)),
                    "source {s}: complete({}) before its snapshot: {ev:?}",
                    id.0
                );
                last = id.0;
            }
        }
        assert!(last >= 3, "source {s}: {ev:?}");
    }
}

fn heard(log: &SourceLog, subtask: u32) -> Vec<SourceHeard> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(s, _)| *s == subtask)
        .map(|(_, e)| *e)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_checkpoints_are_notified_as_aborted() {
    let log = Log::default();
    let sources = SourceLog::default();
    let store = MemoryStore::failing();
    let mut opts = JobOptions::new("n");
    let mut c = checkpointing(store.clone(), Duration::from_millis(20));
    c.config.tolerable_failed = 1000;
    opts.checkpointing = Some(c);
    let plan = plan_logged(None, &log, Some(store), Some(sources.clone()));
    let mut handle = runtime::start(plan, opts).unwrap();
    let mut notices = handle.take_checkpoint_notices().unwrap();
    let failed = loop {
        match notices.recv().await {
            Some(CheckpointNotice::Failed { id, .. }) => break id.0,
            Some(_) => {}
            None => panic!("job ended"),
        }
    };
    for (name, s) in SUBTASKS {
        wait_for(
            &format!("{name} {s} to hear checkpoint {failed} aborted"),
            || events(&log, name, s).contains(&Event::Aborted(failed)),
        )
        .await;
        assert!(!events(&log, name, s)
            .iter()
            .any(|e| matches!(e, Event::Complete(..))));
    }
    for s in 0..2 {
        let aborted = SourceHeard::Outcome(CheckpointOutcome::Aborted(CheckpointId(failed)));
        wait_for(
            &format!("source {s} to hear checkpoint {failed} aborted"),
            || heard(&sources, s).contains(&aborted),
        )
        .await;
    }
    handle.cancel();
    handle.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_of_input_says_finished_or_stopped_before_finish() {
    let log = Log::default();
    let report = runtime::start(plan(Some(5), &log, None), JobOptions::new("n"))
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(report.status, runtime::JobStatus::Finished);
    for (name, s) in SUBTASKS {
        let ev = events(&log, name, s);
        assert_eq!(ev.first(), Some(&Event::Open(DeliveryGuarantee::None)));
        assert_eq!(
            &ev[ev.len() - 2..],
            &[Event::End(EndOfInput::Finished), Event::Finish]
        );
    }

    let log = Log::default();
    let handle = runtime::start(plan(None, &log, None), JobOptions::new("n")).unwrap();
    handle.stop();
    handle.wait().await.unwrap();
    for (name, s) in SUBTASKS {
        let ev = events(&log, name, s);
        assert_eq!(
            &ev[ev.len() - 2..],
            &[Event::End(EndOfInput::Stopped), Event::Finish],
            "{name} {s}"
        );
    }
}
