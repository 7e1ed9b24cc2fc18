//! `floe validate FILE|DIR...`: check pipeline files, every problem of every file at once.
//!
//! A directory stands for the pipeline files in it (`*.yaml`, `*.yml`, not recursive), as
//! `floe serve --pipelines DIR` runs them, so that a service can check its whole
//! configuration before it starts (`ExecStartPre=floe validate --conf-dir /etc/floe
//! /etc/floe/pipelines`). Each valid pipeline is also checked together with the conf file
//! (`--conf-dir`, `FLOE_CONF_DIR`, or `conf/`): unknown keys and values in the wrong format
//! there, or in the pipeline's own settings, are errors too.

use super::{GlobalArgs, EXIT_CONFIG};
use crate::config::{self, LoadOptions};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Pipeline files, or directories of pipeline files (*.yaml, *.yml), to check.
    #[arg(required = true, value_name = "FILE|DIR")]
    pub files: Vec<PathBuf>,
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
        dynamic: vec![],
    }) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("floe serve cannot start: the configuration is invalid");
            return EXIT_CONFIG;
        }
    };
    if let Err(e) = check_rest(&loaded.config) {
        eprintln!("error: {e}");
        eprintln!("floe serve cannot start: its REST API cannot be served");
        return EXIT_CONFIG;
    }
    for dir in args.files.iter().filter(|f| !f.is_file()) {
        if let Err(e) = std::fs::read_dir(dir) {
            eprintln!(
                "error: the pipeline directory {} cannot be read: {e}; create it or pass \
                 --pipelines DIR",
                dir.display()
            );
            return EXIT_CONFIG;
        }
    }
    let code = validate_files(global, args);
    if code != 0 {
        eprintln!(
            "floe serve starts every valid pipeline and shows the invalid ones \
             (GET /pipelines, /readyz, the dashboard)"
        );
    }
    println!("the service configuration is valid");
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
                    println!(
                        "{}: no pipeline files (*.yaml, *.yml) in this directory",
                        given.display()
                    );
                }
                Ok(found) => files.extend(found),
                Err(e) => {
                    invalid += 1;
                    eprintln!("error: {}: cannot list the directory: {e}", given.display());
                }
            }
        } else {
            files.push(given.clone());
        }
    }
    for file in &files {
        let pipeline = match crate::pipeline::load(file) {
            Ok(p) => p,
            Err(e) => {
                invalid += 1;
                eprintln!("{e}");
                continue;
            }
        };
        let loaded = config::load(&LoadOptions {
            conf_dir: global.conf_dir.clone(),
            pipeline_settings: pipeline.settings.clone(),
            dynamic: vec![],
        });
        match loaded {
            Ok(_) => println!(
                "{}: valid (pipeline \"{}\", {} operators)",
                file.display(),
                pipeline.name,
                pipeline.operators.len()
            ),
            Err(e) => {
                invalid += 1;
                eprintln!("{}: configuration: {e}", file.display());
            }
        }
    }
    if invalid == 0 {
        return 0;
    }
    if files.len() > 1 {
        eprintln!("{invalid} of {} pipeline files are invalid", files.len());
    }
    EXIT_CONFIG
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
