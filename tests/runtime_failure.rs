//! A failing operator fails the job with an error naming it and its subtask; the other tasks
//! (here an unbounded source that would never end) are cancelled. Panics are reported as bugs
//! naming the operator; build errors start nothing.

mod runtime_support;

use floe::operators::{Operator, OperatorError};
use floe::pipeline::plan::Plan;
use floe::record::Batch;
use floe::runtime::{self, JobError, JobOptions, RuntimeError, TaskError};
use runtime_support::*;
use std::path::PathBuf;

struct FailAfter {
    batches: usize,
    subtask: u32,
    fail_on: u32,
    panic: bool,
}

impl Operator for FailAfter {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        if self.subtask == self.fail_on {
            if self.batches == 0 {
                if self.panic {
                    panic!("index out of range in test");
                }
                return Err(OperatorError::Data("cannot count \"x\"".into()));
            }
            self.batches -= 1;
        }
        out.push(batch);
        Ok(())
    }
}

fn plan(panic: bool) -> (Plan, Collected) {
    let sink = Collected::default();
    let vs = vec![
        numbers("source", Some(2), NumbersSpec::new(None, 16)),
        operator("count", &[0], Some(4), move |ctx| {
            Box::new(FailAfter {
                batches: 3,
                subtask: ctx.subtask,
                fail_on: 1,
                panic,
            })
        }),
        collect("sink", &[1], Some(4), &sink),
    ];
    let plan = Plan::from_vertices("failing", PathBuf::from("."), vs, 1, None).unwrap();
    (plan, sink)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_error_fails_the_job_naming_operator_and_subtask() {
    let (plan, _sink) = plan(false);
    let err = runtime::start(plan, JobOptions::new("failing"))
        .unwrap()
        .wait()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, JobError::Failed { error: TaskError::Operator { operator, subtask: 1, parallelism: 4, .. }, .. } if operator.0 == "count"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "job \"failing\" failed: operator \"count\" (subtask 2/4) failed: cannot count \"x\""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_a_bug_naming_the_operator() {
    let (plan, _sink) = plan(true);
    let err = runtime::start(plan, JobOptions::new("failing"))
        .unwrap()
        .wait()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("bug: operator \"count\" (subtask 2/4) panicked: index out of range in test"),
        "{text}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_build_error_names_the_operator_and_starts_nothing() {
    let sink = Collected::default();
    let mut bad = collect("sink", &[0], Some(2), &sink);
    bad.factory = floe::pipeline::plan::Factory::Operator(std::sync::Arc::new(|ctx| {
        if ctx.subtask == 1 {
            Err(OperatorError::Config(
                "directory /nope does not exist".into(),
            ))
        } else {
            Ok(Box::new(PassThrough {
                finishes: Default::default(),
            }) as Box<dyn Operator>)
        }
    }));
    let vs = vec![numbers("source", Some(2), NumbersSpec::new(None, 1)), bad];
    let plan = Plan::from_vertices("b", PathBuf::from("."), vs, 1, None).unwrap();
    let err = runtime::start(plan, JobOptions::new("b")).err().unwrap();
    assert!(matches!(err, RuntimeError::Build { subtask: 1, .. }));
    assert_eq!(
        err.to_string(),
        "operator \"sink\" (subtask 2/2) cannot start: directory /nope does not exist"
    );
}
