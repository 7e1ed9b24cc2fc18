//! `floe run FILE [-p N] [-D k=v]...`: run a pipeline in this process, as `flink run` does in
//! attached mode: it returns when the job ends.
//!
//! Ctrl-C (SIGINT) or SIGTERM stops the job cleanly: sources stop, what is in flight drains,
//! sinks flush, and floe exits 0. A second Ctrl-C cancels at once.

use super::{parse_dynamic, print_error, GlobalArgs, EXIT_CONFIG, EXIT_FAILURE};
use crate::checkpoint::restore;
use crate::checkpoint::storage::FsCheckpointStore;
use crate::checkpoint::JobId;
use crate::config::{self, LoadOptions};
use crate::pipeline::plan::Plan;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The pipeline file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Parallelism of every operator that does not set its own (overrides parallelism.default).
    #[arg(short = 'p', long = "parallelism", value_name = "N")]
    pub parallelism: Option<u32>,
    /// A configuration key=value, over every other source (repeatable).
    #[arg(short = 'D', value_name = "KEY=VALUE", value_parser = parse_dynamic)]
    pub dynamic: Vec<String>,
    /// Restore from a checkpoint or savepoint: its directory or its `_metadata`
    /// (execution.state-recovery.path).
    #[arg(short = 's', long = "fromSavepoint", value_name = "PATH")]
    pub from_savepoint: Option<String>,
    /// Skip state of operators the pipeline no longer has
    /// (execution.state-recovery.ignore-unclaimed-state).
    #[arg(short = 'n', long = "allowNonRestoredState")]
    pub allow_non_restored_state: bool,
    /// With -s: print which operators get their state back, which state is dropped and which
    /// operators start empty, then stop.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(global: &GlobalArgs, args: RunArgs) -> u8 {
    let pipeline = match crate::pipeline::load(&args.file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_CONFIG;
        }
    };
    let mut dynamic = args.dynamic;
    if let Some(p) = args.parallelism {
        dynamic.push(format!("parallelism.default={p}"));
    }
    let loaded = match config::load(&LoadOptions {
        conf_dir: global.conf_dir.clone(),
        pipeline_settings: pipeline.settings.clone(),
        dynamic,
    }) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_CONFIG;
        }
    };
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let cfg = &loaded.config;
    let restore_path = args
        .from_savepoint
        .clone()
        .or_else(|| cfg.recovery.path.clone());
    let allow_non_restored = args.allow_non_restored_state || cfg.recovery.ignore_unclaimed_state;
    let snapshot = match &restore_path {
        Some(path) => match crate::checkpoint::storage::load(path) {
            Ok(s) => Some((path.clone(), s)),
            Err(e) => {
                print_error(&e);
                return EXIT_FAILURE;
            }
        },
        None => None,
    };
    // A job that does not fix its max parallelism adopts the checkpoint's, as Flink does.
    let max_parallelism = cfg.max_parallelism.or_else(|| {
        snapshot
            .as_ref()
            .and_then(|(_, s)| restore::keyed_max_parallelism(&s.metadata))
    });
    let plan = match Plan::build(&pipeline, cfg.parallelism_default, max_parallelism) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("error: pipeline {}: {e}", args.file.display());
            return EXIT_CONFIG;
        }
    };
    let job_id = JobId::random();
    let mut options = crate::runtime::JobOptions::new(pipeline.name.clone());
    options.checkpointing_mode = cfg.checkpointing.mode;
    if let Some((path, snapshot)) = &snapshot {
        let targets = restore::targets_of(&plan, cfg.max_parallelism.is_some());
        let mapping = match restore::map_checkpoint(
            &snapshot.metadata,
            &pointer(&snapshot.dir),
            &targets,
            allow_non_restored,
        ) {
            Ok(m) => m,
            Err(e) => {
                print_error(&e);
                return EXIT_FAILURE;
            }
        };
        if args.dry_run {
            print_mapping(path, &mapping);
            return 0;
        }
        eprintln!(
            "Starting job {job_id} from savepoint {path} ({})",
            if allow_non_restored {
                "allowing non restored state"
            } else {
                ""
            }
        );
        match restore::load_state(snapshot, &mapping, plan.max_parallelism) {
            Ok(state) => options.restore = Some(state),
            Err(e) => {
                print_error(&e);
                return EXIT_FAILURE;
            }
        }
        tracing::info!(
            "Restoring job {job_id} from Savepoint {} @ 0 for {job_id} located at {}.",
            snapshot.metadata.checkpoint_id,
            pointer(&snapshot.dir)
        );
    } else if args.dry_run {
        eprintln!(
            "error: --dry-run shows a restore: give the checkpoint or savepoint with -s PATH"
        );
        return EXIT_CONFIG;
    }
    if cfg.checkpointing.interval.is_some() {
        let store = match FsCheckpointStore::new(
            &cfg.state,
            &cfg.checkpointing,
            job_id.clone(),
            &pipeline.name,
        ) {
            Ok(s) => s,
            Err(e) => {
                print_error(&e);
                return EXIT_CONFIG;
            }
        };
        options.checkpointing = Some(crate::runtime::CheckpointingOptions {
            config: cfg.checkpointing.clone(),
            store: Arc::new(store),
            job_id: job_id.clone(),
            first_id: snapshot
                .as_ref()
                .map_or(1, |(_, s)| s.metadata.checkpoint_id + 1),
        });
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("floe-worker")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    rt.block_on(run_job(plan, options, job_id))
}

/// A checkpoint directory as Flink prints it: `file:/abs/path`.
fn pointer(dir: &std::path::Path) -> String {
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    format!("file:{}", abs.display())
}

fn print_mapping(path: &str, mapping: &restore::RestoreMapping) {
    println!(
        "restore from {path} (checkpoint {}), operator by operator:",
        mapping.checkpoint_id
    );
    for (id, fate) in &mapping.fates {
        let what = match fate {
            restore::OperatorFate::Restored => "restored",
            restore::OperatorFate::Dropped => "dropped (no such operator; allowed by -n)",
            restore::OperatorFate::Empty => "no state in the checkpoint",
            restore::OperatorFate::New => "new (starts empty)",
        };
        println!("  {id}: {what}");
    }
}

async fn run_job(plan: Plan, options: crate::runtime::JobOptions, job_id: JobId) -> u8 {
    let name = options.name.clone();
    let started = Instant::now();
    tracing::debug!("plan:\n{}", plan.describe());
    let handle = match crate::runtime::start(plan, options) {
        Ok(h) => h,
        Err(e) => {
            print_error(&e);
            return EXIT_FAILURE;
        }
    };
    eprintln!("Job has been submitted with JobID {job_id}");
    tracing::info!(job = %name, job_id = %job_id, "job running");
    let stopper = handle.control();
    let signals = tokio::spawn(async move {
        wait_for_stop_signal().await;
        tracing::info!(
            "stop requested: stopping sources, draining, flushing sinks (again to cancel)"
        );
        stopper.stop();
        wait_for_stop_signal().await;
        tracing::warn!("second stop request: cancelling");
        stopper.cancel();
    });
    let result = handle.wait().await;
    signals.abort();
    match result {
        Ok(report) => {
            eprintln!("Job with JobID {job_id} has finished.");
            eprintln!("Job Runtime: {} ms", started.elapsed().as_millis());
            for op in &report.operators {
                tracing::info!(
                    operator = %op.id,
                    parallelism = op.parallelism,
                    records_in = op.records_in,
                    records_out = op.records_out,
                    "operator totals"
                );
            }
            0
        }
        Err(e) => {
            eprintln!("Job with JobID {job_id} failed.");
            print_error(&e);
            EXIT_FAILURE
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
