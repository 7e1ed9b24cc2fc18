//! `floe validate FILE...`: check pipeline files, every problem of every file at once.

use super::EXIT_CONFIG;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Pipeline files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

pub fn validate(args: ValidateArgs) -> u8 {
    let mut invalid = 0usize;
    for file in &args.files {
        match crate::pipeline::load(file) {
            Ok(p) => println!(
                "{}: valid (pipeline \"{}\", {} operators)",
                file.display(),
                p.name,
                p.operators.len()
            ),
            Err(e) => {
                invalid += 1;
                eprintln!("{e}");
            }
        }
    }
    if invalid == 0 {
        return 0;
    }
    if args.files.len() > 1 {
        eprintln!(
            "{invalid} of {} pipeline files are invalid",
            args.files.len()
        );
    }
    EXIT_CONFIG
}
