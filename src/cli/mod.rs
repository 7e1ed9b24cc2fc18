//! The command line: clap definitions, dispatch, rendering, exit codes. No engine logic here:
//! each command calls the library and turns its result into text and an exit code.
//!
//! Exit codes: 0 success; 78 (`EX_CONFIG`) for configuration and pipeline errors, so that
//! systemd's `RestartPreventExitStatus=78` stops a restart loop; 1 for everything else.
//!
//! Job status lines go to stderr; stdout belongs to the records of `print` sinks, so that
//! `floe run p.yaml | sort` sees records only.

mod cancel;
pub mod client;
mod config_cmd;
mod inspect;
mod list;
mod logging;
mod reference;
mod reload;
mod remote;
mod run;
mod savepoint;
mod serve;
mod start;
mod stop;
mod validate;

pub use reference::{check_command_line, reference_markdown};

use crate::service::supervisor::check::{self, CheckError, Checked};
use crate::service::supervisor::launch::{LaunchError, LaunchSpec};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

pub use crate::exit::{EXIT_CONFIG, EXIT_FAILURE};

#[derive(Parser, Debug)]
#[command(
    name = "floe",
    version,
    about = "Stream pipelines from YAML, with Flink's checkpoints and savepoints, in one binary",
    after_help = "Configuration comes from <conf-dir>/flink-conf.yaml (default ./conf), FLOE_* \
                  environment variables, the pipeline file and -D key=value, each over the one \
                  before. See `floe config`."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Directory holding flink-conf.yaml.
    #[arg(long, global = true, env = "FLOE_CONF_DIR", value_name = "DIR")]
    pub conf_dir: Option<PathBuf>,
    /// Log format on stderr. The level comes from RUST_LOG (default: info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a pipeline until its sources end, or until Ctrl-C (as `flink run`).
    Run(run::RunArgs),
    /// Check pipeline files; exit 0 when all are valid, 78 when not.
    Validate(validate::ValidateArgs),
    /// Print the effective configuration and where each value came from.
    Config(config_cmd::ConfigArgs),
    /// Show a checkpoint or savepoint offline (or the retained checkpoints of a job).
    Inspect(inspect::InspectArgs),
    /// List the jobs of a running floe (as `flink list`).
    List(list::ListArgs),
    /// Trigger a savepoint of a running job, or dispose of one with -d (offline).
    Savepoint(savepoint::SavepointArgs),
    /// Stop a running job with a savepoint: sinks commit and the job finishes.
    Stop(stop::StopArgs),
    /// Cancel a running job at once, without a savepoint.
    Cancel(cancel::CancelArgs),
    /// Run every pipeline file of a directory as a service: follow edits, reload, stop with
    /// savepoints, resume on start.
    Serve(serve::ServeArgs),
    /// Make a running `floe serve` apply its changed files and configuration now.
    Reload(reload::ReloadArgs),
    /// Make a running `floe serve` run again a pipeline stopped or cancelled through the API.
    Start(start::StartArgs),
}

/// The configuration without a pipeline (conf file, environment, `-D`), for the verbs that
/// run no job; its warnings are logged. On an error, it is printed and 78 returned.
fn load_conf(global: &GlobalArgs, dynamic: &[String]) -> Result<crate::config::Loaded, u8> {
    let loaded = crate::config::load(&crate::config::LoadOptions {
        conf_dir: global.conf_dir.clone(),
        pipeline_settings: Vec::new(),
        dynamic: dynamic.to_vec(),
    })
    .map_err(|e| {
        crate::errln!("{e}");
        EXIT_CONFIG
    })?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    Ok(loaded)
}

/// The multi-threaded runtime jobs run on; on failure, the message is printed and the exit
/// code returned.
fn tokio_runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("floe-worker")
        .build()
        .map_err(|e| {
            crate::errln!("error: cannot start the tokio runtime: {e}");
            EXIT_FAILURE
        })
}

/// Parse the command line, run the command, return the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse_from(flink_long_options(std::env::args_os().collect()));
    logging::init(cli.global.log_format);
    let code = match cli.command {
        Command::Run(args) => run::run(&cli.global, args),
        Command::Validate(args) => validate::validate(&cli.global, args),
        Command::Config(args) => config_cmd::config(&cli.global, args),
        Command::Inspect(args) => inspect::inspect(&cli.global, args),
        Command::List(args) => list::list(&cli.global, args),
        Command::Savepoint(args) => savepoint::savepoint(&cli.global, args),
        Command::Stop(args) => stop::stop(&cli.global, args),
        Command::Cancel(args) => cancel::cancel(&cli.global, args),
        Command::Serve(args) => serve::serve(&cli.global, args),
        Command::Reload(args) => reload::reload(&cli.global, args),
        Command::Start(args) => start::start(&cli.global, args),
    };
    ExitCode::from(code)
}

/// Flink spells some options with one dash and several letters, which clap cannot declare:
/// `-cm` (run) becomes `--claimMode`; after `savepoint` or `stop`, `-detached` and `-type`
/// become `--detached` and `--type`. Nothing else is touched.
fn flink_long_options(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut verb_seen = false;
    args.into_iter()
        .map(|a| {
            match a.to_str() {
                Some("-cm") => return "--claimMode".into(),
                Some("savepoint" | "stop") => verb_seen = true,
                Some(single @ ("-detached" | "-type")) if verb_seen => {
                    return format!("-{single}").into();
                }
                _ => {}
            }
            a
        })
        .collect()
}

/// Parse `-D key=value` arguments as `flink run` does (`-Dkey=value` or `-D key=value`).
fn parse_dynamic(s: &str) -> Result<String, String> {
    match s.split_once('=') {
        Some((k, _)) if !k.trim().is_empty() => Ok(s.to_string()),
        _ => Err(format!(
            "expected key=value (for example -D execution.checkpointing.interval=10s), got '{s}'"
        )),
    }
}

/// The pipeline `file` loaded and put through the one check `floe validate` and `floe run`
/// share (`service::supervisor::check`): the launch spec `spec` makes of it and what the check
/// found. On a refusal the reason is printed, in the same words for both verbs, and the exit
/// code returned.
fn load_and_check(
    file: &std::path::Path,
    spec: impl FnOnce(crate::pipeline::Pipeline) -> LaunchSpec,
) -> Result<(LaunchSpec, Checked), u8> {
    let pipeline = crate::pipeline::load(file).map_err(|e| {
        crate::errln!("{e}");
        EXIT_CONFIG
    })?;
    let spec = spec(pipeline);
    match check::check(&spec) {
        Ok(checked) => Ok((spec, checked)),
        Err(e) => Err(report_launch_error(&LaunchError::Check(e))),
    }
}

/// Prints why a job cannot start (or would not: `floe validate`) and returns its exit code.
/// Known secret values quoted by the reason (a path naming one) are masked.
fn report_launch_error(e: &LaunchError) -> u8 {
    use crate::secrets::redact;
    match e {
        // Already one `file:line: …` line per problem.
        LaunchError::Config(c) | LaunchError::Check(CheckError::Config(c)) => {
            crate::errln!("{}", redact(&c.to_string()))
        }
        LaunchError::Check(CheckError::Operators { .. }) => {
            for line in e.to_string().lines() {
                crate::errln!("error: {}", redact(line));
            }
        }
        _ => print_error(e),
    }
    e.exit_code()
}

/// Print an error chain for a person: the message, then each cause once. Known secret values
/// (an S3 key quoted by the server, a Kafka password) are masked.
fn print_error(err: &(dyn std::error::Error + 'static)) {
    use crate::secrets::redact;
    crate::errln!("error: {}", redact(&err.to_string()));
    // A cause whose text a line already printed holds adds nothing.
    let mut printed = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // A message quoted as part of a sentence loses its closing period.
        let core = text.strip_suffix('.').unwrap_or(&text);
        if !printed.iter().any(|p| p.contains(core)) {
            crate::errln!("  caused by: {}", redact(&text));
            printed.push(text);
        }
        source = cause.source();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flinks_single_dash_long_options_are_accepted_after_their_verbs() {
        let args = |v: &[&str]| {
            v.iter()
                .map(Into::into)
                .collect::<Vec<std::ffi::OsString>>()
        };
        assert_eq!(
            flink_long_options(args(&[
                "floe",
                "savepoint",
                "-detached",
                "x",
                "-type",
                "native"
            ])),
            args(&["floe", "savepoint", "--detached", "x", "--type", "native"])
        );
        assert_eq!(
            flink_long_options(args(&["floe", "run", "-detached"])),
            args(&["floe", "run", "-detached"])
        );
        let cli = Cli::try_parse_from(flink_long_options(args(&[
            "floe",
            "stop",
            "-detached",
            "-p",
            "/sp",
            "--drain",
            "abc",
        ])))
        .unwrap();
        assert!(matches!(cli.command, Command::Stop(s) if s.detached && s.drain));
    }
}
