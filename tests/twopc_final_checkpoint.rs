//! A bounded input ends with a final checkpoint (Flink's FLIP-147): with periodic
//! checkpoints, every record a sink received is in a snapshot whose checkpoint completed
//! before the sink hears that the input ended. A transactional sink that commits at the end
//! then commits only output a completed checkpoint holds, so a crash while the job ends
//! (after the commit, before the process exits) restores a checkpoint that already has it,
//! and nothing is written twice. (Before, the sink committed at the end what no checkpoint
//! held: the Kafka crash test's duplicated transactions.)

mod runtime_support;

use floe::checkpoint::{CheckpointId, OperatorSnapshot};
use floe::operators::{EndOfInput, Operator, OperatorError};
use floe::pipeline::plan::Plan;
use floe::record::Batch;
use floe::runtime::{self, JobOptions};
use runtime_support::checkpoints::{checkpointing, counting_source, Counting, MemoryStore};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Data,
    Snapshot(u64),
    Complete(u64),
    End(EndOfInput),
}

type Log = Arc<Mutex<Vec<(u32, Event)>>>;

struct Sink {
    subtask: u32,
    log: Log,
}

impl Sink {
    fn push(&self, e: Event) {
        self.log.lock().unwrap().push((self.subtask, e));
    }
}

impl Operator for Sink {
    fn process(&mut self, _batch: Batch, _out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        self.push(Event::Data);
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
        self.push(Event::Complete(id.0));
        Ok(())
    }
    fn end_of_input(&mut self, why: EndOfInput) {
        self.push(Event::End(why));
    }
}

/// Two source subtasks of 50 batches each into two [`Sink`]s that log to `log`.
fn job(name: &str, log: &Log) -> Plan {
    let sink_log = log.clone();
    let vertices = vec![
        counting_source(
            "src",
            Some(2),
            Counting {
                name: "w".into(),
                size: 10,
                batches: Some(50),
            },
        ),
        runtime_support::operator("sink", &[0], Some(2), move |ctx| {
            Box::new(Sink {
                subtask: ctx.subtask,
                log: sink_log.clone(),
            })
        }),
    ];
    Plan::from_vertices(name, PathBuf::from("."), vertices, 1, None).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_input_ends_only_after_a_checkpoint_holding_all_of_it_completed() {
    let log = Log::default();
    let store = Arc::new(MemoryStore::default());
    let mut opts = JobOptions::new("final");
    opts.checkpointing = Some(checkpointing(store, Duration::from_millis(20)));
    let plan = job("final", &log);
    let handle = runtime::start(plan, opts).unwrap();
    handle.wait().await.unwrap();

    for subtask in 0..2 {
        let events: Vec<Event> = log
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| *s == subtask)
            .map(|(_, e)| e.clone())
            .collect();
        let end = events
            .iter()
            .position(|e| *e == Event::End(EndOfInput::Finished))
            .unwrap_or_else(|| panic!("subtask {subtask} never heard the end: {events:?}"));
        let last_data = events.iter().rposition(|e| *e == Event::Data).unwrap();
        // A snapshot after the last record, completed before the end.
        let final_snapshot = events[last_data..end]
            .iter()
            .find_map(|e| match e {
                Event::Snapshot(id) => Some(*id),
                _ => None,
            })
            .unwrap_or_else(|| {
                panic!("subtask {subtask}: no snapshot after its last record: {events:?}")
            });
        assert!(
            events[last_data..end].contains(&Event::Complete(final_snapshot)),
            "subtask {subtask}: checkpoint {final_snapshot} did not complete before the end: \
             {events:?}"
        );
    }
}

/// `execution.checkpointing.checkpoints-after-tasks-finish: false` (Flink's flag): a bounded
/// input ends without a final checkpoint, and the sinks hear [`EndOfInput::Stopped`], so a
/// transactional sink leaves what no completed checkpoint holds uncommitted (as in Flink,
/// where that output is lost; committing it would write it twice after a failover). With
/// checkpoints an hour apart, the job ends at once, without any checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_checkpoints_after_tasks_finish_the_end_commits_nothing_more() {
    let log = Log::default();
    let store = Arc::new(MemoryStore::default());
    let mut opts = JobOptions::new("no-final");
    let mut cp = checkpointing(store.clone(), Duration::from_secs(3600));
    cp.config.checkpoints_after_tasks_finish = false;
    opts.checkpointing = Some(cp);
    let plan = job("no-final", &log);
    let handle = runtime::start(plan, opts).unwrap();
    // A hang guard only: the job ends as soon as its input does.
    tokio::time::timeout(Duration::from_secs(300), handle.wait())
        .await
        .expect("the job waited for a checkpoint")
        .unwrap();
    let events = log.lock().unwrap().clone();
    for subtask in 0..2 {
        let ends: Vec<&Event> = events
            .iter()
            .filter(|(s, e)| *s == subtask && matches!(e, Event::End(_)))
            .map(|(_, e)| e)
            .collect();
        assert_eq!(
            ends,
            vec![&Event::End(EndOfInput::Stopped)],
            "subtask {subtask}"
        );
    }
    assert!(
        !events
            .iter()
            .any(|(_, e)| matches!(e, Event::Snapshot(_) | Event::Complete(_))),
        "no checkpoint was taken: {events:?}"
    );
    assert!(store.completed_ids().is_empty());
}

/// The final checkpoint does not wait for the interval: once every source's input ended it
/// is triggered at once, as in Flink since 1.18. With checkpoints an hour apart the job still
/// ends as soon as that one checkpoint completes, and the sinks commit with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_final_checkpoint_is_triggered_when_every_input_ended() {
    let log = Log::default();
    let store = Arc::new(MemoryStore::default());
    let mut opts = JobOptions::new("final-now");
    opts.checkpointing = Some(checkpointing(store.clone(), Duration::from_secs(3600)));
    let plan = job("final-now", &log);
    let handle = runtime::start(plan, opts).unwrap();
    // A hang guard only: without the immediate trigger the job would wait an hour.
    tokio::time::timeout(Duration::from_secs(300), handle.wait())
        .await
        .expect("the job waited for the checkpoint interval")
        .unwrap();
    assert_eq!(store.completed_ids(), vec![1]);
    let events = log.lock().unwrap().clone();
    for subtask in 0..2 {
        let mine: Vec<&Event> = events
            .iter()
            .filter(|(s, _)| *s == subtask)
            .map(|(_, e)| e)
            .skip_while(|e| **e == Event::Data)
            .collect();
        assert_eq!(
            mine,
            vec![
                &Event::Snapshot(1),
                &Event::Complete(1),
                &Event::End(EndOfInput::Finished)
            ],
            "subtask {subtask}"
        );
    }
}
