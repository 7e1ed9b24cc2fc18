//! `floe validate FILE|DIR...`: check pipeline files, every problem of every file at once.
//!
//! A directory stands for the pipeline files in it (`*.yaml`, `*.yml`, not recursive), as
//! `floe serve --pipelines DIR` runs them, so that a service can check its whole
//! configuration before it starts (`ExecStartPre=floe validate --conf-dir /etc/floe
//! /etc/floe/pipelines`). Each valid pipeline is also checked together with the conf file
//! (`--conf-dir`, `FLOE_CONF_DIR`, or `conf/`) through the one check `floe run` makes before it
//! starts a job (`service::supervisor::check`): what `run` would refuse, `validate` refuses,
//! with the same message and exit code (78); its warnings are printed too, and `--strict`
//! refuses on them.

use super::{load_and_check, parse_dynamic, GlobalArgs, EXIT_CONFIG};
use crate::config::{self, LoadOptions};
use crate::service::supervisor::launch::LaunchSpec;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Pipeline files, or directories of pipeline files (*.yaml, *.yml), to check.
    #[arg(required = true, value_name = "FILE|DIR")]
    pub files: Vec<PathBuf>,
    /// Check with this parallelism, as `floe run -p N` would run.
    #[arg(short = 'p', long = "parallelism", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=32768))]
    pub parallelism: Option<u32>,
    /// A configuration key=value, as `floe run -D` would set it (repeatable).
    #[arg(short = 'D', value_name = "KEY=VALUE", value_parser = parse_dynamic)]
    pub dynamic: Vec<String>,
    /// Warnings (unknown keys, keys given twice, inputs not there yet) make a file invalid too
    /// (exit 78).
    #[arg(long)]
    pub strict: bool,
    /// Check what `floe serve` needs as a whole (the conf file, the REST address and token,
    /// the pipeline directory): exit 78 only for those. Pipeline files are checked and
    /// reported, but an invalid one does not fail the check: `floe serve` starts every
    /// valid pipeline and shows the invalid ones (what systemd's ExecStartPre runs).
    #[arg(long)]
    pub service: bool,
}

pub fn validate(global: &GlobalArgs, args: ValidateArgs) -> u8 {
    if args.service {
        return validate_service(global, &args);
    }
    validate_files(global, &args)
}

/// `--service`: 78 when the conf file, the REST settings or a pipeline directory stop the
/// whole service; the pipelines themselves are reported and never fail the check.
fn validate_service(global: &GlobalArgs, args: &ValidateArgs) -> u8 {
    let loaded = match config::load(&LoadOptions {
        conf_dir: global.conf_dir.clone(),
        pipeline_settings: Vec::new(),
        dynamic: args.dynamic.clone(),
    }) {
        Ok(l) => l,
        Err(e) => {
            crate::errln!("{e}");
            crate::errln!("floe serve cannot start: the configuration is invalid");
            return EXIT_CONFIG;
        }
    };
    if let Err(e) = check_rest(&loaded.config) {
        crate::errln!("error: {e}");
        crate::errln!("floe serve cannot start: its REST API cannot be served");
        return EXIT_CONFIG;
    }
    for dir in args.files.iter().filter(|f| !f.is_file()) {
        if let Err(e) = std::fs::read_dir(dir) {
            crate::errln!(
                "error: the pipeline directory {} cannot be read: {e}; create it or pass \
                 --pipelines DIR",
                dir.display()
            );
            return EXIT_CONFIG;
        }
    }
    let code = validate_files(global, args);
    if code != 0 {
        crate::errln!(
            "floe serve starts every valid pipeline and shows the invalid ones \
             (GET /pipelines, /readyz, the dashboard)"
        );
    }
    crate::outln!("the service configuration is valid");
    0
}

/// What `floe serve` checks of its REST settings before it binds: an address that parses
/// (or resolves), a token where one is required, a token file that can be read.
fn check_rest(cfg: &crate::config::Config) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    let options = crate::service::RestOptions::from_config(cfg);
    let token = options.resolve_token().map_err(|e| e.to_string())?;
    let addrs: Vec<std::net::SocketAddr> = (options.bind_address.as_str(), options.port)
        .to_socket_addrs()
        .map_err(|e| {
            format!(
                "rest.bind-address '{}' is not an address of this machine: {e}; use an IP \
                 address such as 127.0.0.1",
                options.bind_address
            )
        })?
        .collect();
    if token.is_none() && addrs.iter().any(|a| !a.ip().is_loopback()) {
        return Err(format!(
            "rest.bind-address '{}' is not loopback and no token is set: set \
             rest.auth.token or rest.auth.token-file, or bind to 127.0.0.1",
            options.bind_address
        ));
    }
    Ok(())
}

fn validate_files(global: &GlobalArgs, args: &ValidateArgs) -> u8 {
    let mut files = Vec::new();
    let mut invalid = 0usize;
    for given in &args.files {
        if given.is_dir() {
            match pipeline_files(given) {
                Ok(found) if found.is_empty() => {
                    crate::outln!(
                        "{}: no pipeline files (*.yaml, *.yml) in this directory",
                        given.display()
                    );
                }
                Ok(found) => files.extend(found),
                Err(e) => {
                    invalid += 1;
                    crate::errln!("error: {}: cannot list the directory: {e}", given.display());
                }
            }
        } else {
            files.push(given.clone());
        }
    }
    let mut dynamic = args.dynamic.clone();
    if let Some(p) = args.parallelism {
        dynamic.push(format!("parallelism.default={p}"));
    }
    for file in &files {
        if !validate_file(global, file, &dynamic, args.strict) {
            invalid += 1;
        }
    }
    if invalid == 0 {
        return 0;
    }
    if files.len() > 1 {
        crate::errln!("{invalid} of {} pipeline files are invalid", files.len());
    }
    EXIT_CONFIG
}

/// Checks one file as `floe run` would before starting it (the same check, the same
/// messages); prints its warnings and, when it passes, one line on stdout.
fn validate_file(global: &GlobalArgs, file: &Path, dynamic: &[String], strict: bool) -> bool {
    let checked = load_and_check(file, |pipeline| LaunchSpec {
        pipeline,
        conf_dir: global.conf_dir.clone(),
        dynamic: dynamic.to_vec(),
        restore: None,
        allow_non_restored: false,
        dry_run: true,
    });
    let Ok((spec, checked)) = checked else {
        return false;
    };
    for w in &checked.warnings {
        crate::errln!("warning: {}", crate::secrets::redact(w));
    }
    if strict && !checked.warnings.is_empty() {
        crate::errln!(
            "{}: invalid with --strict: {} warning(s)",
            file.display(),
            checked.warnings.len()
        );
        return false;
    }
    let conf = match &checked.loaded.conf_file {
        Some(f) => f.display().to_string(),
        None => "built-in defaults (no conf file)".to_string(),
    };
    crate::outln!(
        "{}: valid (pipeline \"{}\", {} operators; configuration: {conf})",
        file.display(),
        spec.pipeline.name,
        spec.pipeline.operators.len()
    );
    true
}

/// The pipeline files of `dir`, sorted by name: `*.yaml` and `*.yml`, hidden files (editor
/// swap files, Kubernetes' `..data`) left out.
pub fn pipeline_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let yaml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "yaml" || e == "yml");
        if yaml && !name.starts_with('.') && path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}
