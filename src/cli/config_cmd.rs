//! `floe config [--pipeline FILE] [-D k=v]...`: the effective settings and where each came from.

use super::{parse_dynamic, GlobalArgs, EXIT_CONFIG};
use crate::config::{self, LoadOptions};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// Layer this pipeline file's own settings over the configuration.
    #[arg(long, value_name = "FILE")]
    pub pipeline: Option<PathBuf>,
    /// A configuration key=value, over everything else (repeatable).
    #[arg(short = 'D', value_name = "KEY=VALUE", value_parser = parse_dynamic)]
    pub dynamic: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn config(global: &GlobalArgs, args: ConfigArgs) -> u8 {
    let pipeline_settings = match &args.pipeline {
        Some(path) => match crate::pipeline::load(path) {
            Ok(p) => p.settings,
            Err(e) => {
                crate::errln!("{e}");
                return EXIT_CONFIG;
            }
        },
        None => Vec::new(),
    };
    let opts = LoadOptions {
        conf_dir: global.conf_dir.clone(),
        pipeline_settings,
        dynamic: args.dynamic,
    };
    match config::load(&opts) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                tracing::warn!("{w}");
            }
            if args.json {
                crate::outln!(
                    "{}",
                    serde_json::to_string_pretty(&config::render_json(&loaded)).unwrap_or_default()
                );
            } else {
                crate::stdio::out(&config::render_text(&loaded));
            }
            0
        }
        Err(e) => {
            crate::errln!("{e}");
            EXIT_CONFIG
        }
    }
}
