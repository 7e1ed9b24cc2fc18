//! `floe serve [--pipelines DIR] [-D k=v]...`: run every pipeline file of a directory as a job, follow
//! edits, reload on SIGHUP or `floe reload`, stop every job with a final savepoint on
//! SIGTERM/SIGINT, and resume each from its newest state on the next start. The work is
//! `service::supervisor`; this file parses the flags and picks the exit code.
//!
//! Exit codes: 0 after a clean shutdown (every job stopped with a final savepoint); 78 when
//! the configuration, the pipeline directory or the REST address is unusable at start; 1 when
//! a job could not take its final savepoint in time (it resumes from its latest retained
//! checkpoint, as after a crash).

use super::{GlobalArgs, EXIT_FAILURE};
use crate::service::console;
use crate::service::supervisor::{service, ServeOptions};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The directory of pipeline files (*.yaml, *.yml): one job per file.
    #[arg(long, value_name = "DIR", default_value = "pipelines")]
    pub pipelines: PathBuf,
    /// How long a job may take to stop with a savepoint (reload, removal, shutdown), e.g.
    /// `60s`.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub stop_timeout: Duration,
    /// A configuration key=value, over every other source, for every job (repeatable), as
    /// `floe run -D`: `-D rest.port=8082`.
    #[arg(short = 'D', value_name = "KEY=VALUE", value_parser = super::parse_dynamic)]
    pub dynamic: Vec<String>,
    /// Where floe serve remembers, across its restarts, the pipelines stopped or cancelled
    /// through the API, the submitted jobs to resume and the savepoints it took
    /// (floe-serve-state.json). Default: systemd's $STATE_DIRECTORY, else the current
    /// directory.
    #[arg(long, value_name = "DIR", env = "FLOE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

/// `--state-dir`, else the first of systemd's `$STATE_DIRECTORY` (`StateDirectory=`), else
/// the current directory.
fn state_dir(given: Option<PathBuf>) -> PathBuf {
    given
        .or_else(|| {
            let dirs = std::env::var_os("STATE_DIRECTORY")?;
            let first = dirs.to_str()?.split(':').next()?.to_string();
            (!first.is_empty()).then(|| PathBuf::from(first))
        })
        .unwrap_or_else(|| PathBuf::from("."))
}

pub fn serve(global: &GlobalArgs, args: ServeArgs) -> u8 {
    let rt = match super::tokio_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let opts = ServeOptions {
        conf_dir: global.conf_dir.clone(),
        dynamic: args.dynamic,
        pipelines: args.pipelines,
        stop_timeout: args.stop_timeout,
        state_dir: state_dir(args.state_dir),
    };
    let result = rt.block_on(service::run(opts));
    // A job that did not stop in time may still write on a blocking thread: do not wait for
    // it, its checkpoints are what the next start resumes from.
    rt.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(summary) if summary.unclean.is_empty() => {
            console::line(&format!(
                "floe serve stopped: {} job(s) with a final savepoint",
                summary.savepoints.len()
            ));
            0
        }
        Ok(summary) => {
            for (job, why) in &summary.unclean {
                console::error(&format!(
                    "{job}: no final savepoint ({why}); it resumes from its latest retained \
                     checkpoint"
                ));
            }
            EXIT_FAILURE
        }
        Err(e) => {
            console::error(&e.to_string());
            e.exit_code()
        }
    }
}
