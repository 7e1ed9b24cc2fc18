//! The one check a pipeline passes before any of its data is read: its configuration (conf
//! file, environment, its own settings, `-D`), its plan (parallelism, max parallelism, chains,
//! exchanges), the memory its channels would take, and what its operators need from the
//! machine (a file source's `path`). `floe validate`, `floe run` and `floe serve` all call
//! [`check`], so what one refuses the others refuse, with the same words and exit code (78).
//!
//! Warnings (unknown keys, keys given twice, inputs not there yet) come back with the result
//! for the caller to show; `floe validate --strict` refuses on them.
//!
//! It must not create, write or connect to anything: a check changes nothing on the machine.

use super::launch::LaunchSpec;
use crate::config::{self, ConfigError, LoadOptions};
use crate::pipeline::plan::{Plan, PlanError};
use crate::pipeline::Pipeline;
use crate::runtime::memory::{self, MemoryEstimate};
use crate::runtime::DEFAULT_CHANNEL_CAPACITY;
use crate::textfile::human_bytes;
use std::fmt;
use std::path::PathBuf;

/// A pipeline that passed: its configuration and plan, and what deserves a word.
#[derive(Debug)]
pub struct Checked {
    /// The configuration; its warnings are in [`Checked::warnings`].
    pub loaded: config::Loaded,
    pub plan: Plan,
    pub memory: MemoryEstimate,
    /// Configuration warnings, then the operators', one line each.
    pub warnings: Vec<String>,
}

/// Why a pipeline would be refused. Every variant is a configuration problem: exit 78.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("pipeline {}: {source}", file.display())]
    Plan {
        file: PathBuf,
        #[source]
        source: PlanError,
    },
    #[error("pipeline {}: {over}", file.display())]
    Memory { file: PathBuf, over: OverBudget },
    /// Operators that could not start, one message each (`operator "source": ...`).
    #[error("{}", operator_lines(file, problems))]
    Operators {
        file: PathBuf,
        problems: Vec<String>,
    },
}

fn operator_lines(file: &std::path::Path, problems: &[String]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|p| format!("pipeline {}: {p}", file.display()))
        .collect();
    lines.join("\n")
}

/// The channels of a plan would take more than `taskmanager.memory.network.max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverBudget {
    pub estimate: MemoryEstimate,
    pub budget: u64,
}

impl fmt::Display for OverBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.estimate;
        write!(
            f,
            "insufficient memory for the channels between subtasks: the plan needs {} channels \
             of {} bytes each (with their slots for {DEFAULT_CHANNEL_CAPACITY} batches), about \
             {} ({} bytes), but taskmanager.memory.network.max is {} ({} bytes)",
            thousands(e.channels),
            e.per_channel,
            human_bytes(e.bytes),
            thousands(e.bytes),
            human_bytes(self.budget),
            thousands(self.budget)
        )?;
        if let Some(l) = &e.largest {
            write!(
                f,
                "; the largest edge, {}, has {} channels",
                l.name,
                thousands(l.channels)
            )?;
        }
        f.write_str(
            ". An exchange between parallelism p and q needs p × q channels: lower the \
             parallelism (-p, `parallelism:`), or raise taskmanager.memory.network.max",
        )
    }
}

/// `25,000,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Everything about `spec.pipeline` that can be judged before a record is read. `spec.restore`
/// is not looked at (the snapshot is `launch::prepare`'s business).
/// The pipeline's secret values are remembered first, so no message from here on shows them.
pub fn check(spec: &LaunchSpec) -> Result<Checked, CheckError> {
    remember_secrets(&spec.pipeline);
    let mut loaded = config::load(&LoadOptions {
        conf_dir: spec.conf_dir.clone(),
        pipeline_settings: spec.pipeline.settings.clone(),
        dynamic: spec.dynamic.clone(),
    })?;
    let (plan, memory) = plan_within_budget(&spec.pipeline, &loaded.config, None)?;
    let mut warnings = std::mem::take(&mut loaded.warnings);
    warnings.extend(check_operators(&spec.pipeline, &plan, &loaded.config)?);
    Ok(Checked {
        loaded,
        plan,
        memory,
        warnings,
    })
}

/// The secret Kafka properties of `pipeline` (`sasl.password`, ...): from now on no log line
/// or error of this process shows their values (librdkafka's messages included).
fn remember_secrets(pipeline: &Pipeline) {
    use crate::operators::{OperatorConfig, SinkConfig, SourceConfig};
    for op in &pipeline.operators {
        let props = match &op.config {
            OperatorConfig::Source(SourceConfig::Kafka(c)) => &c.properties,
            OperatorConfig::Sink(SinkConfig::Kafka(c)) => &c.properties,
            _ => continue,
        };
        for (k, v) in props {
            if let Some(text) = v.as_str() {
                crate::secrets::remember_setting(k, text);
            } else if let Ok(text) = serde_yaml::to_string(v) {
                crate::secrets::remember_setting(k, text.trim());
            }
        }
    }
}

/// The plan of `pipeline` with `config`'s parallelism and max parallelism (or `adopted`, a
/// restored snapshot's, when the configuration sets none), refused when its channels would
/// not fit in `taskmanager.memory.network.max`.
pub fn plan_within_budget(
    pipeline: &Pipeline,
    config: &config::Config,
    adopted: Option<u32>,
) -> Result<(Plan, MemoryEstimate), CheckError> {
    let max_parallelism = config.max_parallelism.or(adopted);
    let plan =
        Plan::build(pipeline, config.parallelism_default, max_parallelism).map_err(|source| {
            CheckError::Plan {
                file: pipeline.path.clone(),
                source,
            }
        })?;
    let estimate = memory::estimate(&plan, DEFAULT_CHANNEL_CAPACITY);
    if estimate.bytes > config.network_memory_max {
        return Err(CheckError::Memory {
            file: pipeline.path.clone(),
            over: OverBudget {
                estimate,
                budget: config.network_memory_max,
            },
        });
    }
    Ok((plan, estimate))
}

/// Each operator's own start check, and whether it can work under the job's delivery
/// guarantee (a Kafka sink that cannot write exactly-once with its client settings):
/// problems refuse the pipeline, warnings are returned.
fn check_operators(
    pipeline: &Pipeline,
    plan: &Plan,
    cfg: &config::Config,
) -> Result<Vec<String>, CheckError> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    // The runtime's rule: an interval makes sinks follow the checkpointing mode.
    let job = crate::operators::DeliveryGuarantee::of_checkpointing(
        cfg.checkpointing.interval.is_some(),
        cfg.checkpointing.mode,
    );
    for op in &pipeline.operators {
        for p in op.config.spec().check_guarantee(job) {
            problems.push(format!("operators[{}].{}: {}", op.id, p.field, p.message));
        }
        match op.config.spec().check_start(&plan.base_dir) {
            Ok(None) => {}
            Ok(Some(w)) => warnings.push(format!(
                "pipeline {}: operator \"{}\": {w}",
                pipeline.path.display(),
                op.id
            )),
            Err(p) => problems.push(format!("operator \"{}\": {p}", op.id)),
        }
    }
    if problems.is_empty() {
        Ok(warnings)
    } else {
        Err(CheckError::Operators {
            file: pipeline.path.clone(),
            problems,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn large_numbers_read_in_groups_of_three() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(25_000_000), "25,000,000");
        assert_eq!(thousands(1_073_741_824), "1,073,741,824");
    }
}
