//! Every `floe …` command of a `sh` block in the README and docs/ is one the binary accepts: a
//! real command with real options, parsed by the same clap definitions (with Flink's
//! single-dash spellings) as `floe` itself. Pipeline files it names exist in the repository
//! or are written out on the same page.

mod docs_support;

use docs_support::{lines, markdown_files, root};

/// The command's words after `floe`, without a trailing `# comment` or a `host$ ` prompt.
fn floe_words(line: &str) -> Option<Vec<String>> {
    let line = match line.find("$ floe ") {
        Some(i) => &line[i + 2..],
        None => line.trim_start(),
    };
    let rest = line.strip_prefix("floe ")?;
    let rest = rest.split(" #").next().unwrap_or(rest);
    Some(rest.split_whitespace().map(str::to_string).collect())
}

#[test]
fn every_documented_floe_command_parses() {
    let mut bad = Vec::new();
    let mut checked = 0;
    for (file, text) in markdown_files() {
        for line in lines(&text) {
            if line.fence != Some("sh") {
                continue;
            }
            let Some(words) = floe_words(line.text) else {
                continue;
            };
            checked += 1;
            let at = format!("{}:{}", file.display(), line.number);
            if let Err(e) = floe::cli::check_command_line(&words) {
                bad.push(format!("{at}: floe {}\n{e}", words.join(" ")));
            }
            for word in words.iter().filter(|w| w.starts_with("pipelines/")) {
                // A file the page itself describes (`# pipelines/x.yaml` above its YAML, or
                // "x.yaml has …") counts: its name appears on the page besides the command.
                let name = word.rsplit('/').next().unwrap_or(word);
                let shown = text.matches(name).count() > 1;
                if !word.contains('*') && !shown && !root().join(word).exists() {
                    bad.push(format!("{at}: {word} is not in the repository"));
                }
            }
        }
    }
    assert!(
        checked >= 10,
        "only {checked} commands found: is the parser broken?"
    );
    assert!(
        bad.is_empty(),
        "commands floe would refuse:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_check_refuses_what_floe_refuses() {
    let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert!(floe::cli::check_command_line(&words("run p.yaml -p 2 -cm CLAIM -s x")).is_ok());
    assert!(floe::cli::check_command_line(&words("savepoint -detached 0123 /sp")).is_ok());
    assert!(floe::cli::check_command_line(&words("run p.yaml --parallelizm 2")).is_err());
    assert!(floe::cli::check_command_line(&words("submit p.yaml")).is_err());
}
