//! `floe run FILE [-p N] [-D k=v]...`: run a pipeline in this process, as `flink run` does in
//! attached mode: it returns when the job ends.
//!
//! Ctrl-C (SIGINT) or SIGTERM stops the job cleanly: sources stop, what is in flight drains,
//! sinks flush, and floe exits 0. A second Ctrl-C cancels at once.

use super::{parse_dynamic, print_error, GlobalArgs, EXIT_CONFIG, EXIT_FAILURE};
use crate::config::{self, LoadOptions};
use crate::pipeline::plan::Plan;
use clap::Args;
use std::path::PathBuf;
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
    let plan = match Plan::build(&pipeline, cfg.parallelism_default, cfg.max_parallelism) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("error: pipeline {}: {e}", args.file.display());
            return EXIT_CONFIG;
        }
    };
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
    let mut options = crate::runtime::JobOptions::new(pipeline.name.clone());
    options.checkpointing_mode = cfg.checkpointing.mode;
    rt.block_on(run_job(plan, options))
}

async fn run_job(plan: Plan, options: crate::runtime::JobOptions) -> u8 {
    let name = options.name.clone();
    let job_id = uuid::Uuid::new_v4().simple().to_string();
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
