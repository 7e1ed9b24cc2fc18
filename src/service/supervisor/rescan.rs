//! A rescan of the pipeline directory and the configuration file: what changed, by content,
//! and what each change does (`files` applies them). Two files with one `name:` are refused
//! here, before either runs: a pipeline's name is the identity of its state.

use super::report::{Outcome, PipelineResult, ReloadReport};
use super::service::{conf_hash, Supervisor};
use super::spec_for;
use crate::config;
use crate::service::pipelines::ProblemKind;
use crate::service::watcher::{self, ScannedFile};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Files by name, as a scan found them.
type Scan = BTreeMap<String, ScannedFile>;

impl Supervisor {
    /// Scans the pipeline directory and the configuration file and applies what changed.
    pub(super) async fn rescan(&mut self, explicit: bool) -> super::report::ReloadReport {
        let mut report = ReloadReport::default();
        let mut scanned = match self.scan().await {
            Ok(s) => s,
            Err(e) => {
                report.config_error = Some(e);
                return report;
            }
        };
        if watcher::diff(&self.seen, &watcher::hashes(&scanned))
            .removed
            .iter()
            .any(|r| self.jobs.contains_key(r))
        {
            // A file gone may be an editor's save in the middle (old file moved aside, new
            // one not written yet): look once more after a quiet moment before stopping a job.
            tokio::time::sleep(watcher::DEBOUNCE).await;
            match self.scan().await {
                Ok(s) => scanned = s,
                Err(e) => {
                    report.config_error = Some(e);
                    return report;
                }
            }
        }
        self.watcher
            .watch_more(watcher::link_target_dirs(&self.opts.pipelines, &scanned));
        let new_hashes = watcher::hashes(&scanned);
        let mut changes = watcher::diff(&self.seen, &new_hashes);
        if explicit {
            self.add_pending(&scanned, &mut changes);
        }
        let clashes = self.name_clashes(&scanned, &mut changes);
        let conf = self.conf_changed().await;
        let startup = self.seen.is_empty() && self.jobs.is_empty();
        let reloading = !startup && (explicit || !changes.is_empty() || conf.is_some());
        if reloading {
            self.notifier.reloading();
        }
        if !changes.is_empty() {
            tracing::info!(
                added = ?changes.added,
                changed = ?changes.changed,
                removed = ?changes.removed,
                "pipeline directory changed"
            );
        }
        self.seen = new_hashes;
        if let Some((file, hash)) = conf {
            self.apply_conf(file.as_deref(), hash, &mut report).await;
        }
        for name in changes.removed {
            let outcome = self.remove(&name).await;
            report.push(name, "removed", outcome);
        }
        for name in changes.added {
            let outcome = match clashes.get(&name) {
                Some(clash) => Outcome::Failed {
                    error: clash.clone(),
                },
                None if self.stopping.load(Ordering::SeqCst) => Outcome::Failed {
                    error: "not started: floe serve is stopping".into(),
                },
                None => self.add(&name, &scanned[&name]).await,
            };
            report.push(name, "added", outcome);
        }
        for name in changes.changed {
            let outcome = match clashes.get(&name) {
                Some(clash) => self.refuse(&name, scanned[&name].hash, clash.clone()),
                None => self.change(&name, &scanned[&name]).await,
            };
            report.push(name, "changed", outcome);
        }
        for p in &report.pipelines {
            if !clashes.contains_key(&p.file) {
                self.board_after(p);
            }
            match &p.outcome {
                o if o.ok() => tracing::info!(file = %p.file, change = p.change, "{}: {o}", p.file),
                o => tracing::error!(file = %p.file, change = p.change, "{}: {o}", p.file),
            }
        }
        if reloading {
            let status = self.status_line();
            self.notifier.ready(&status);
        }
        report
    }

    /// What the pipelines view shows after a change's outcome.
    fn board_after(&self, p: &PipelineResult) {
        let kind = match &p.outcome {
            Outcome::Failed { .. } if p.change == "removed" => return,
            Outcome::Stopped { .. } => {
                self.board.remove(&p.file);
                return;
            }
            Outcome::Failed { error } => Some((ProblemKind::Failed, error.clone())),
            Outcome::Invalid { error } => Some((ProblemKind::Invalid, error.clone())),
            Outcome::Rejected { error } => Some((ProblemKind::Refused, error.clone())),
            Outcome::RolledBack { error, .. } => Some((ProblemKind::RolledBack, error.clone())),
            _ => None,
        };
        self.board.update(&p.file, |e| e.problem = kind);
    }

    async fn scan(&self) -> Result<Scan, String> {
        let dir = self.opts.pipelines.clone();
        let scanned = tokio::task::spawn_blocking(move || watcher::scan(&dir))
            .await
            .map_err(|e| format!("bug: scanning the pipeline directory panicked: {e}"))?;
        scanned.map_err(|e| {
            format!(
                "cannot read the pipeline directory {}: {e}; nothing changed",
                self.opts.pipelines.display()
            )
        })
    }

    /// An explicit reload also retries what an earlier scan could not apply: files whose
    /// text is not the one their job runs (an edit rejected before) and files without a job
    /// (they failed to start). Files a user stopped or cancelled stay as they are.
    fn add_pending(&self, scanned: &Scan, changes: &mut watcher::Changes) {
        for (name, f) in scanned {
            if changes.added.contains(name) || changes.changed.contains(name) {
                continue;
            }
            match self.jobs.get(name) {
                Some(m) if m.hash != f.hash => changes.changed.push(name.clone()),
                Some(_) => {}
                None => changes.added.push(name.clone()),
            }
        }
        changes.added.sort();
        changes.changed.sort();
    }

    /// Files whose `name:` another file of the directory has too, with the error to show.
    /// A running file in a clash runs on (shown with the error); the others do not start.
    /// A file refused for a clash that is gone starts again.
    fn name_clashes(
        &self,
        scanned: &Scan,
        changes: &mut watcher::Changes,
    ) -> BTreeMap<String, String> {
        let mut by_name: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for (file, f) in scanned {
            if let Some(n) = name_of(&f.text) {
                by_name.entry(n).or_default().push(file);
            }
        }
        let mut out = BTreeMap::new();
        for (name, files) in by_name.iter().filter(|(_, f)| f.len() > 1) {
            let error = format!(
                "{} both have `name: {name}`; a pipeline's name is the identity of its state \
                 (checkpoints, savepoints), so a second one is not started: give each file its \
                 own name",
                files.join(" and ")
            );
            for f in files {
                out.insert((*f).to_string(), error.clone());
                let problem = (ProblemKind::NameClash, error.clone());
                self.board.update(f, |x| x.problem = Some(problem));
            }
        }
        for e in self.board.list() {
            let was_clash = matches!(e.problem, Some((ProblemKind::NameClash, _)));
            match out.get(&e.file) {
                Some(_) => {}
                None if was_clash && scanned.contains_key(&e.file) => {
                    self.board.update(&e.file, |x| x.problem = None);
                    let quiet =
                        !changes.changed.contains(&e.file) && !changes.added.contains(&e.file);
                    if quiet && !self.jobs.contains_key(&e.file) {
                        changes.added.push(e.file.clone());
                    }
                }
                None => {}
            }
        }
        changes.added.sort();
        out
    }

    /// `Some((file, hash))` when the configuration file's content differs from the last one
    /// applied.
    async fn conf_changed(&self) -> Option<(Option<PathBuf>, Option<u64>)> {
        let dir = self.opts.conf_dir.clone();
        let (file, hash) = tokio::task::spawn_blocking(move || {
            let file = config::conf_file(dir.as_deref());
            let hash = conf_hash(file.as_deref());
            (file, hash)
        })
        .await
        .ok()?;
        (hash != self.conf_hash).then_some((file, hash))
    }

    /// The configuration file changed: every job gets its live keys now; keys that need a
    /// restart are named in the log.
    async fn apply_conf(
        &mut self,
        file: Option<&Path>,
        hash: Option<u64>,
        report: &mut ReloadReport,
    ) {
        let shown = file.map_or("flink-conf.yaml".into(), |f| f.display().to_string());
        let mut live = std::collections::BTreeSet::new();
        let mut restart = std::collections::BTreeSet::new();
        // Every job's configuration loaded again, off the async workers (files are read).
        let specs: Vec<_> = self
            .jobs
            .values()
            .map(|m| spec_for(&self.opts, m.pipeline.clone(), None))
            .collect();
        let loads = tokio::task::spawn_blocking(move || {
            specs
                .iter()
                .map(|s| super::launch::load_config(s).map_err(|e| e.to_string()))
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(loads) = loads else {
            report.config_error = Some(format!("bug: loading {shown} panicked; nothing applied"));
            return;
        };
        for ((name, m), loaded) in self.jobs.iter_mut().zip(loads) {
            let loaded = match loaded {
                Ok(l) => l,
                Err(e) => {
                    report.config_error = Some(format!(
                        "{shown} is invalid; the running jobs keep their configuration: {e}"
                    ));
                    return;
                }
            };
            let d = super::conf::diff(&m.entries, &loaded.entries);
            if !d.live.is_empty() {
                super::conf::apply_live(&m.job, &loaded.config);
                tracing::info!(file = %name, keys = ?d.live, "configuration applied live");
            }
            if !d.restart.is_empty() {
                tracing::warn!(
                    file = %name,
                    keys = ?d.restart,
                    "{shown} changed keys that apply only when the job restarts: {}; edit the \
                     pipeline file or restart floe to apply them",
                    d.restart.join(", ")
                );
            }
            if !d.live.is_empty() {
                // The views show what the job runs with: its configuration with the live
                // keys replaced, not the keys that wait for a restart.
                let mut shown = (*m.config).clone();
                config::live::LiveSettings::from_config(&loaded.config).apply_to(&mut shown);
                self.registry.set_config(
                    &m.job.job_id,
                    Arc::new(shown),
                    Arc::new(loaded.entries.clone()),
                );
            }
            live.extend(d.live);
            restart.extend(d.restart);
            m.entries = Arc::new(loaded.entries);
            m.config = Arc::new(loaded.config);
        }
        self.conf_hash = hash;
        report.config_live = live.into_iter().collect();
        report.config_restart = restart.into_iter().collect();
    }
}

/// A pipeline file's `name:`, read without validating the rest (`None` when the YAML does
/// not parse that far: the full validation reports it).
pub(super) fn name_of(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Named {
        name: Option<String>,
    }
    serde_yaml::from_str::<Named>(text)
        .ok()
        .and_then(|n| n.name)
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
}
