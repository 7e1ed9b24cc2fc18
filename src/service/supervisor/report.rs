//! What a reload did, pipeline by pipeline: the answer of `POST /floe/reload` and the lines
//! of the log. Plain data; `ok` is the exit code of `floe reload`.

use crate::checkpoint::JobId;
use serde_json::{json, Value};
use std::fmt;

/// What happened to one pipeline file in a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new file's job started (from `resumed` when it had state).
    Started {
        job_id: JobId,
        resumed: Option<String>,
    },
    /// An edit applied: the new version runs from the old one's savepoint.
    Applied {
        job_id: JobId,
        savepoint: Option<String>,
    },
    /// The file is back to the text its job runs (an edit undone): nothing to do.
    Kept { job_id: JobId },
    /// A removed file's job stopped, with its savepoint.
    Stopped { savepoint: Option<String> },
    /// The edit is invalid: the old version runs on.
    Rejected { error: String },
    /// The new version could not restore, or failed within its probation; the old one runs
    /// again from the savepoint.
    RolledBack { job_id: JobId, error: String },
    /// The file does not validate (or shares its `name:`): nothing runs for it.
    Invalid { error: String },
    /// A user stopped or cancelled it through the API: it stays down until `floe start`.
    Held {
        how: crate::service::pipelines::Hold,
    },
    /// Nothing runs for this file.
    Failed { error: String },
}

impl Outcome {
    pub fn ok(&self) -> bool {
        matches!(
            self,
            Outcome::Started { .. }
                | Outcome::Applied { .. }
                | Outcome::Kept { .. }
                | Outcome::Stopped { .. }
                | Outcome::Held { .. }
        )
    }
}

/// One line of a reload report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineResult {
    pub file: String,
    /// `added`, `changed` or `removed`.
    pub change: &'static str,
    pub outcome: Outcome,
}

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    pub pipelines: Vec<PipelineResult>,
    /// Keys of `flink-conf.yaml` applied live to running jobs.
    pub config_live: Vec<String>,
    /// Keys of `flink-conf.yaml` that changed but apply only when a job restarts.
    pub config_restart: Vec<String>,
    /// The configuration could not be read: nothing of it applied.
    pub config_error: Option<String>,
}

impl ReloadReport {
    pub fn push(&mut self, file: String, change: &'static str, outcome: Outcome) {
        self.pipelines.push(PipelineResult {
            file,
            change,
            outcome,
        });
    }

    pub fn ok(&self) -> bool {
        self.config_error.is_none() && self.pipelines.iter().all(|p| p.outcome.ok())
    }

    pub fn to_json(&self) -> Value {
        let pipelines: Vec<Value> = self
            .pipelines
            .iter()
            .map(|p| {
                let mut v = json!({"file": p.file, "change": p.change});
                let (result, extra) = match &p.outcome {
                    Outcome::Started { job_id, resumed } => (
                        "started",
                        json!({"job-id": job_id.0, "resumed-from": resumed}),
                    ),
                    Outcome::Applied { job_id, savepoint } => (
                        "applied",
                        json!({"job-id": job_id.0, "savepoint": savepoint}),
                    ),
                    Outcome::Kept { job_id } => ("kept", json!({"job-id": job_id.0})),
                    Outcome::Stopped { savepoint } => ("stopped", json!({"savepoint": savepoint})),
                    Outcome::Rejected { error } => ("rejected", json!({"error": error})),
                    Outcome::RolledBack { job_id, error } => {
                        ("rolled-back", json!({"job-id": job_id.0, "error": error}))
                    }
                    Outcome::Invalid { error } => ("invalid", json!({"error": error})),
                    Outcome::Held { how } => ("held", json!({"held": how.as_str()})),
                    Outcome::Failed { error } => ("failed", json!({"error": error})),
                };
                v["result"] = json!(result);
                if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
                    for (k, x) in e {
                        if !x.is_null() {
                            o.insert(k.clone(), x.clone());
                        }
                    }
                }
                v
            })
            .collect();
        json!({
            "ok": self.ok(),
            "pipelines": pipelines,
            "config": {
                "live": self.config_live,
                "restart": self.config_restart,
                "error": self.config_error,
            },
        })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Started {
                job_id,
                resumed: None,
            } => write!(f, "job {job_id} started"),
            Outcome::Started {
                job_id,
                resumed: Some(r),
            } => write!(f, "job {job_id} started, resumed from {r}"),
            Outcome::Applied {
                job_id,
                savepoint: Some(sp),
            } => write!(
                f,
                "the new version runs as job {job_id}, from savepoint {sp}"
            ),
            Outcome::Applied {
                job_id,
                savepoint: None,
            } => write!(f, "the new version runs as job {job_id}, without state"),
            Outcome::Kept { job_id } => {
                write!(f, "job {job_id} already runs this text: nothing to do")
            }
            Outcome::Stopped {
                savepoint: Some(sp),
            } => write!(f, "job stopped with savepoint {sp}"),
            Outcome::Stopped { savepoint: None } => write!(f, "job stopped"),
            Outcome::Rejected { error }
            | Outcome::Failed { error }
            | Outcome::Invalid { error } => f.write_str(error),
            Outcome::Held { how } => write!(
                f,
                "{} through the API: it stays down until `floe start`, an edit or its removal",
                how.as_str()
            ),
            Outcome::RolledBack { job_id, error } => {
                write!(f, "{error} (the version before runs as job {job_id})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_is_ok_only_when_every_change_applied() {
        let mut r = ReloadReport::default();
        assert!(r.ok());
        r.pipelines.push(PipelineResult {
            file: "a.yaml".into(),
            change: "changed",
            outcome: Outcome::Applied {
                job_id: JobId("a".repeat(32)),
                savepoint: Some("/sp/savepoint-aaaaaa-000000000000".into()),
            },
        });
        assert!(r.ok());
        let j = r.to_json();
        assert_eq!(j["pipelines"][0]["result"], "applied");
        assert_eq!(
            j["pipelines"][0]["savepoint"],
            "/sp/savepoint-aaaaaa-000000000000"
        );
        r.pipelines.push(PipelineResult {
            file: "b.yaml".into(),
            change: "changed",
            outcome: Outcome::Rejected {
                error: "b.yaml: bad".into(),
            },
        });
        assert!(!r.ok());
        assert_eq!(r.to_json()["ok"], false);
        assert_eq!(r.to_json()["pipelines"][1]["error"], "b.yaml: bad");
    }
}
