//! A reloaded pipeline's new version on probation: until it proves itself, the version
//! before can come back from the savepoint the new one started from, with nothing lost or
//! doubled, because nothing of the new version is committed before its first completed
//! checkpoint.
//!
//! It passes at its first completed checkpoint (with checkpointing off: when it ran
//! `service.reload.probation` without failing). It fails when it fails or restarts after a
//! failure first, or, with checkpointing on, when no checkpoint completed within the
//! probation. [`decide`] is the rule, [`watch`] applies it to a running job.

use super::launch::StartedJob;
use crate::service::registry::{JobRegistry, JobState};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The end of a probation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    /// Why it failed.
    Failed(String),
}

/// What is known of the new version at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// It ended: its final state and error.
    pub ended: Option<(JobState, Option<String>)>,
    /// Restarts after failures so far, and the last failure.
    pub restarts: u32,
    pub last_failure: Option<String>,
    /// Checkpoints it completed.
    pub checkpoints: u64,
    pub elapsed: Duration,
    pub limit: Duration,
    pub checkpointing: bool,
}

/// The verdict, if there is one yet.
pub fn decide(o: &Observation) -> Option<Verdict> {
    let cause = |e: &Option<String>| e.clone().unwrap_or_else(|| "no cause given".into());
    match &o.ended {
        Some((JobState::Failed, error)) => return Some(Verdict::Failed(cause(error))),
        // Ran to its end (a bounded input), or ended by a user meanwhile: nothing failed.
        Some(_) => return Some(Verdict::Passed),
        None => {}
    }
    if o.restarts > 0 {
        return Some(Verdict::Failed(format!(
            "it failed and restarted: {}",
            cause(&o.last_failure)
        )));
    }
    if o.checkpointing && o.checkpoints > 0 {
        return Some(Verdict::Passed);
    }
    if o.elapsed >= o.limit {
        return Some(if o.checkpointing {
            Verdict::Failed(format!(
                "no checkpoint completed within its probation of {} s \
                 (service.reload.probation)",
                o.limit.as_secs_f64()
            ))
        } else {
            Verdict::Passed
        });
    }
    None
}

/// Watches `job` until [`decide`] gives a verdict. A stop of floe serve meanwhile ends the
/// probation as passed: the shutdown takes a savepoint of whatever runs.
pub async fn watch(
    job: &StartedJob,
    registry: &JobRegistry,
    limit: Duration,
    checkpointing: bool,
    stopping: &AtomicBool,
) -> Verdict {
    let started = Instant::now();
    loop {
        if stopping.load(Ordering::SeqCst) {
            return Verdict::Passed;
        }
        let status = job.handle.status();
        let ended = job.done.is_finished().then(|| {
            registry
                .get(&job.job_id)
                .map_or((JobState::Failed, None), |v| (v.state, v.error))
        });
        let o = Observation {
            ended,
            restarts: status.restarts + u32::from(status.restarting),
            last_failure: status.last_failure,
            checkpoints: job.handle.checkpoints_completed(),
            elapsed: started.elapsed(),
            limit,
            checkpointing,
        };
        if let Some(v) = decide(&o) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ends a version that failed its probation without a savepoint (its state is the one it
/// started from): a stop, and a cancel if it does not end within `grace`. A stop keeps its
/// checkpoints (if it completed any, they are what it resumes from).
pub async fn end(job: &mut StartedJob, grace: Duration) {
    if job.done.is_finished() {
        return;
    }
    job.handle.stop();
    if tokio::time::timeout(grace, &mut job.done).await.is_ok() {
        return;
    }
    tracing::warn!(job_id = %job.job_id, "the failed new version did not stop in time: cancelling it");
    job.handle.cancel();
    let _ = tokio::time::timeout(grace, &mut job.done).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs() -> Observation {
        Observation {
            ended: None,
            restarts: 0,
            last_failure: None,
            checkpoints: 0,
            elapsed: Duration::from_secs(1),
            limit: Duration::from_secs(10),
            checkpointing: true,
        }
    }

    #[test]
    fn the_first_completed_checkpoint_passes() {
        assert_eq!(decide(&obs()), None);
        let o = Observation {
            checkpoints: 1,
            ..obs()
        };
        assert_eq!(decide(&o), Some(Verdict::Passed));
    }

    #[test]
    fn a_failure_or_a_restart_before_it_fails_the_probation_with_the_cause() {
        let o = Observation {
            ended: Some((JobState::Failed, Some("cannot create /x".into()))),
            ..obs()
        };
        assert_eq!(decide(&o), Some(Verdict::Failed("cannot create /x".into())));
        let o = Observation {
            restarts: 1,
            last_failure: Some("sink broke".into()),
            ..obs()
        };
        assert!(matches!(decide(&o), Some(Verdict::Failed(m)) if m.contains("sink broke")));
        // A restart counts even after a checkpoint: the failure came first in time only if
        // nothing completed, but both are facts now and the restart is the one to act on.
        let o = Observation {
            restarts: 1,
            checkpoints: 1,
            ..obs()
        };
        assert!(matches!(decide(&o), Some(Verdict::Failed(_))));
    }

    #[test]
    fn time_runs_out_differently_with_and_without_checkpoints() {
        let late = Observation {
            elapsed: Duration::from_secs(10),
            ..obs()
        };
        assert!(matches!(decide(&late), Some(Verdict::Failed(m)) if m.contains("no checkpoint")));
        let no_checkpoints = Observation {
            checkpointing: false,
            ..late
        };
        assert_eq!(decide(&no_checkpoints), Some(Verdict::Passed));
        let finished = Observation {
            ended: Some((JobState::Finished, None)),
            ..obs()
        };
        assert_eq!(decide(&finished), Some(Verdict::Passed));
    }
}
