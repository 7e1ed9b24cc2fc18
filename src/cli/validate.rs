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
}

pub fn validate(global: &GlobalArgs, args: ValidateArgs) -> u8 {
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
