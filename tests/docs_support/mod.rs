//! Reading the README and docs/ for the docs tests: the Markdown files, their fenced blocks,
//! their links and their headings' anchors, as GitHub renders them.

#![allow(dead_code)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every `docs/*.md`, as (path relative to the repository, text).
pub fn markdown_files() -> Vec<(PathBuf, String)> {
    let root = root();
    let mut files = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| p.strip_prefix(&root).expect("under the root").to_path_buf())
        .collect();
    docs.sort();
    files.extend(docs);
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(root.join(&f))
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            (f, text)
        })
        .collect()
}

/// One line of a Markdown file, with whether it lies in a fenced block and that block's
/// language.
pub struct Line<'a> {
    pub number: usize,
    pub text: &'a str,
    pub fence: Option<&'a str>,
}

pub fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut fence: Option<&str> = None;
    for (i, line) in text.lines().enumerate() {
        if let Some(lang) = line.trim_start().strip_prefix("```") {
            fence = match fence {
                Some(_) => None,
                None => Some(lang.trim()),
            };
            continue;
        }
        out.push(Line {
            number: i + 1,
            text: line,
            fence,
        });
    }
    out
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens.
pub fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Every anchor of a Markdown file (repeated headings get `-1`, `-2`, … as on GitHub).
pub fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    for line in lines(text) {
        if line.fence.is_some() {
            continue;
        }
        let Some(rest) = line.text.strip_prefix('#') else {
            continue;
        };
        let heading = rest.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let base = anchor(heading);
        let mut a = base.clone();
        let mut n = 0;
        while seen.contains(&a) {
            n += 1;
            a = format!("{base}-{n}");
        }
        seen.insert(a);
    }
    seen
}

/// The targets of the inline links `[text](target)` of a line, outside code spans.
pub fn link_targets(line: &str) -> Vec<String> {
    // Code spans may hold `](` legitimately: drop them first.
    let mut plain = String::new();
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
        } else if !in_code {
            plain.push(c);
        }
    }
    let mut out = Vec::new();
    let mut rest = plain.as_str();
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(end) = rest.find(')') {
            out.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    out
}

/// Whether `target` (a path relative to the file `from`, with an optional `#anchor`, or a
/// bare `#anchor`) leads to an existing file and heading. `Err` says what is missing.
pub fn resolve(from: &Path, target: &str) -> Result<(), String> {
    let (path, fragment) = match target.split_once('#') {
        Some((p, f)) => (p, Some(f)),
        None => (target, None),
    };
    let file = if path.is_empty() {
        from.to_path_buf()
    } else {
        from.parent().unwrap_or(Path::new("")).join(path)
    };
    let full = root().join(&file);
    if !full.exists() {
        return Err(format!("{} does not exist", file.display()));
    }
    if let Some(fragment) = fragment {
        let text =
            std::fs::read_to_string(&full).map_err(|e| format!("{}: {e}", file.display()))?;
        if !anchors(&text).contains(fragment) {
            return Err(format!("{} has no heading #{fragment}", file.display()));
        }
    }
    Ok(())
}
