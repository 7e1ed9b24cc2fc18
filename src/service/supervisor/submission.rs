//! What a job submitted over the API (`POST /jobs`, `floe run -d`) may touch. A submitted
//! pipeline runs with floe's rights on floe's machine, so every path it reads or writes must
//! lie under a configured root, checked (symlinks resolved) before anything is created:
//!
//! - file sources and sinks, and files Kafka properties name (`*.location`,
//!   `sasl.kerberos.keytab`): under `web.submit.allowed-dirs`;
//! - its checkpoint and savepoint directories: under those, or the service's own
//!   (`state.checkpoints.dir`, `state.savepoints.dir` of `flink-conf.yaml`);
//! - the snapshot it restores (`savepointPath`, `execution.state-recovery.path`): likewise.
//!
//! It may not set the service's own keys (`rest.*`, `web.*`, `s3.*`: the S3 settings of the
//! service's checkpoint and savepoint locations, which its jobs share), nor Kafka properties that load
//! code or run commands (`plugin.library.paths`, `sasl.kerberos.kinit.cmd`). The policy comes
//! from `flink-conf.yaml` alone: nothing a submission carries can widen it.

use super::launch::{LaunchSpec, LATEST};
use super::resume;
use crate::config::{self, Config};
use crate::operators::{OperatorConfig, SinkConfig, SourceConfig};
use crate::service::rest::paths::{confine, PathError};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// Key prefixes a submitted job may not set: they configure the service, not the job.
const SERVICE_KEY_PREFIXES: &[&str] = &["rest.", "web.", "s3."];

/// Kafka properties a submitted job may not set: they load code or run a command.
const FORBIDDEN_KAFKA_PROPERTIES: &[&str] = &["plugin.library.paths", "sasl.kerberos.kinit.cmd"];

/// The roots, from the service's configuration.
#[derive(Debug, Clone)]
pub struct SubmitPolicy {
    /// `web.submit.allowed-dirs`.
    allowed: Vec<PathBuf>,
    /// The service's checkpoint directory, and savepoint directory (or its
    /// `floe-savepoints/`).
    service_dirs: Vec<PathBuf>,
}

impl SubmitPolicy {
    pub fn from_config(base: &Config) -> SubmitPolicy {
        let root = |s: &str| crate::service::rest::paths::root_path("directory", s).ok();
        let allowed = base
            .rest
            .submit_allowed_dirs
            .iter()
            .filter_map(|d| root(d))
            .collect();
        let mut service_dirs: Vec<PathBuf> =
            [&base.state.checkpoints_dir, &base.state.savepoints_dir]
                .into_iter()
                .flatten()
                .filter_map(|d| root(d))
                .collect();
        service_dirs.extend(resume::savepoint_root(base));
        SubmitPolicy {
            allowed,
            service_dirs,
        }
    }

    /// Every problem with `spec` (whose effective configuration is `job`), one per line;
    /// `Ok` when it may run.
    pub fn check(&self, spec: &LaunchSpec, job: &Config) -> Result<(), String> {
        let mut problems = Vec::new();
        let names = spec
            .pipeline
            .settings
            .iter()
            .map(|s| (s.key.as_str(), s.origin.as_str()))
            .chain(spec.dynamic.iter().map(|d| {
                let key = d.split_once('=').map_or(d.as_str(), |(k, _)| k);
                (key.trim(), "-D")
            }));
        for (name, origin) in names {
            let key = config::keys::lookup(name).map_or(name, |k| k.canonical);
            if SERVICE_KEY_PREFIXES.iter().any(|p| key.starts_with(p)) {
                problems.push(format!(
                    "{origin}: a submitted job may not set '{name}': it is the service's own \
                     setting (flink-conf.yaml)"
                ));
            }
        }
        let mut both = self.allowed.clone();
        both.extend(self.service_dirs.iter().cloned());
        let dirs = [
            ("checkpoint directory", &job.state.checkpoints_dir),
            ("savepoint directory", &job.state.savepoints_dir),
        ];
        for (what, dir) in dirs {
            if let Some(d) = dir {
                self.inside(what, d, &both, &mut problems);
            }
        }
        let restore = spec.restore.clone().or_else(|| job.recovery.path.clone());
        if let Some(r) = restore.filter(|r| r != LATEST) {
            self.inside("snapshot to restore", &r, &both, &mut problems);
        }
        let base = spec
            .pipeline
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        for op in &spec.pipeline.operators {
            let at = format!("operator \"{}\"", op.id);
            for (what, path) in file_paths(&op.config, &mut problems, &at) {
                let full = base.join(&path);
                let Some(full) = glob_base(&full) else {
                    problems.push(format!(
                        "{at}: {what} '{path}' has '..' after a wildcard; write the directory \
                         without it"
                    ));
                    continue;
                };
                let full = full.display().to_string();
                self.inside(
                    &format!("{at}: {what}"),
                    &full,
                    &self.allowed,
                    &mut problems,
                );
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }

    fn inside(&self, what: &str, given: &str, roots: &[PathBuf], problems: &mut Vec<String>) {
        match confine("path", given, roots) {
            Ok(_) => {}
            Err(PathError::Invalid { reason, .. }) => {
                problems.push(format!("submitted job: {what} '{given}': {reason}"))
            }
            Err(PathError::NoRoots { .. }) => problems.push(format!(
                "submitted job: {what} '{given}' is refused: no directory is allowed for it; \
                 set web.submit.allowed-dirs in flink-conf.yaml"
            )),
            Err(PathError::Outside {
                resolved, roots, ..
            }) => problems.push(format!(
                "submitted job: {what} '{given}' (resolved to {}) is outside the directories a \
                 submitted job may use ({}); set web.submit.allowed-dirs in flink-conf.yaml",
                resolved.display(),
                roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

/// The local paths an operator reads or writes, as written; forbidden Kafka properties are
/// reported into `problems`.
fn file_paths(
    config: &OperatorConfig,
    problems: &mut Vec<String>,
    at: &str,
) -> Vec<(&'static str, String)> {
    let kafka = |props: &BTreeMap<String, serde_yaml::Value>, problems: &mut Vec<String>| {
        let mut out = Vec::new();
        for (k, v) in props {
            let key = k.trim().to_ascii_lowercase();
            if FORBIDDEN_KAFKA_PROPERTIES.contains(&key.as_str()) {
                problems.push(format!(
                    "{at}: a submitted job may not set the Kafka property '{k}' (it loads code \
                     or runs a command)"
                ));
            } else if key.ends_with(".location") || key == "sasl.kerberos.keytab" {
                let text = v.as_str().map(str::to_owned).unwrap_or_default();
                out.push(("Kafka property file", text));
            }
        }
        out
    };
    match config {
        OperatorConfig::Source(SourceConfig::File(c)) => vec![("file source path", c.path.clone())],
        OperatorConfig::Sink(SinkConfig::File(c)) => vec![("file sink path", c.path.clone())],
        OperatorConfig::Source(SourceConfig::Kafka(c)) => kafka(&c.properties, problems),
        OperatorConfig::Sink(SinkConfig::Kafka(c)) => kafka(&c.properties, problems),
        _ => Vec::new(),
    }
}

/// The directory a glob reads from: the components before the first one with a wildcard.
/// `None` when a `..` follows a wildcard (it could climb out of any checked directory).
fn glob_base(path: &Path) -> Option<PathBuf> {
    let is_glob = |c: &Component| {
        c.as_os_str()
            .to_str()
            .is_some_and(|s| s.contains(['*', '?', '[', '{']))
    };
    let parts: Vec<Component> = path.components().collect();
    let Some(first) = parts.iter().position(is_glob) else {
        return Some(path.to_path_buf());
    };
    if parts[first..].contains(&Component::ParentDir) {
        return None;
    }
    Some(parts[..first].iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_reads_from_its_literal_directory() {
        assert_eq!(
            glob_base(Path::new("/srv/in/*.txt")),
            Some(PathBuf::from("/srv/in"))
        );
        assert_eq!(
            glob_base(Path::new("/srv/in/a.txt")),
            Some(PathBuf::from("/srv/in/a.txt"))
        );
        assert_eq!(
            glob_base(Path::new("/srv/*/x")),
            Some(PathBuf::from("/srv"))
        );
        assert_eq!(glob_base(Path::new("/srv/in/*/../../etc")), None);
    }
}
