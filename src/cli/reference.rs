//! The CLI reference of docs/cli.md, generated from the clap definitions so that it cannot
//! drift from them, and the check that a command line written in the docs parses. Neither
//! runs anything.

use super::{flink_long_options, Cli};
use clap::{Arg, CommandFactory, Parser};
use std::fmt::Write as _;

/// The reference in Markdown: the global options, then each command with its usage line and
/// one row per argument (from the doc comments of the clap definitions).
pub fn reference_markdown() -> String {
    let mut cli = Cli::command();
    cli.build();
    let mut out = String::new();
    out.push_str("### Global options\n\nAccepted by every command, before or after it.\n\n");
    let globals: Vec<&Arg> = cli
        .get_arguments()
        .filter(|a| !a.is_hide_set() && a.is_global_set())
        .collect();
    arg_table(&mut out, &globals);
    for sub in cli.get_subcommands() {
        if sub.is_hide_set() {
            continue;
        }
        let _ = write!(out, "\n### `floe {}`\n\n", sub.get_name());
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            let _ = writeln!(out, "{}\n", sentence(&about.to_string()));
        }
        let usage = sub.clone().render_usage().to_string();
        let _ = write!(out, "```text\n{}\n```\n\n", usage.trim());
        let args: Vec<&Arg> = sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && !a.is_global_set())
            .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
            .collect();
        if args.is_empty() {
            out.push_str("No arguments.\n");
        } else {
            arg_table(&mut out, &args);
        }
    }
    out
}

fn arg_table(out: &mut String, args: &[&Arg]) {
    out.push_str("| argument | meaning |\n|---|---|\n");
    for a in args {
        let mut help = a
            .get_long_help()
            .or(a.get_help())
            .map(|h| sentence(&h.to_string()))
            .unwrap_or_default();
        let possible: Vec<String> = a
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| v.get_name().to_string())
            .collect();
        if !possible.is_empty() {
            let _ = write!(help, " One of: {}.", possible.join(", "));
        }
        let defaults: Vec<String> = a
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        if !defaults.is_empty() && a.get_action().takes_values() {
            let _ = write!(help, " Default: `{}`.", defaults.join(","));
        }
        if let Some(env) = a.get_env() {
            let _ = write!(help, " Environment: `{}`.", env.to_string_lossy());
        }
        let _ = writeln!(
            out,
            "| `{}` | {} |",
            spelling(a),
            help.trim().replace('|', "\\|")
        );
    }
}

/// `-p, --parallelism <N>`, or `<FILE>` for a positional argument.
fn spelling(a: &Arg) -> String {
    let value = a
        .get_value_names()
        .map(|names| {
            names
                .iter()
                .map(|n| format!("<{n}>"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| format!("<{}>", a.get_id().as_str().to_uppercase()));
    if a.is_positional() {
        return value;
    }
    let mut names = Vec::new();
    if let Some(s) = a.get_short() {
        names.push(format!("-{s}"));
    }
    if let Some(l) = a.get_long() {
        names.push(format!("--{l}"));
    }
    let mut s = names.join(", ");
    if a.get_action().takes_values() {
        if a.get_num_args().is_some_and(|n| n.min_values() == 0) {
            let _ = write!(s, " [{value}]");
        } else {
            let _ = write!(s, " {value}");
        }
    }
    s
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A doc comment as one sentence: clap drops the final period of a one-paragraph help.
fn sentence(text: &str) -> String {
    let mut s = one_line(text);
    if !s.is_empty() && !s.ends_with('.') {
        s.push('.');
    }
    s
}

/// Whether `words` (the command line without the program name: `["run", "p.yaml", "-p",
/// "2"]`) is one floe accepts: a real command with real options. `Err` carries clap's message.
pub fn check_command_line(words: &[String]) -> Result<(), String> {
    let mut args: Vec<std::ffi::OsString> = vec!["floe".into()];
    args.extend(words.iter().map(Into::into));
    match Cli::try_parse_from(flink_long_options(args)) {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}
