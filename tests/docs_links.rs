//! Every relative link of the README and docs/ leads to an existing file and heading, and
//! every `docs/<page>.md#anchor` a code comment cites exists, so no reader meets a dead link.

mod docs_support;

use docs_support::{lines, link_targets, markdown_files, resolve, root};
use std::path::Path;

#[test]
fn every_relative_link_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for (file, text) in markdown_files() {
        for line in lines(&text) {
            if line.fence.is_some() {
                continue;
            }
            for target in link_targets(line.text) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                if let Err(e) = resolve(&file, &target) {
                    broken.push(format!(
                        "{}:{}: ({target}): {e}",
                        file.display(),
                        line.number
                    ));
                }
            }
        }
    }
    assert!(
        checked > 30,
        "only {checked} links found: is the parser broken?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_docs_anchor_cited_in_code_exists() {
    let mut broken = Vec::new();
    let mut cited = 0;
    let mut stale = Vec::new();
    for dir in ["src", "tests", "benches", "deploy", "pipelines", "conf"] {
        visit(&root().join(dir), &mut |path, text| {
            let rel = path
                .strip_prefix(root())
                .expect("under the root")
                .display()
                .to_string();
            if text.contains(concat!("reference ", "§")) {
                stale.push(rel.clone());
            }
            let mut rest = text;
            while let Some(i) = rest.find("docs/") {
                rest = &rest[i..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || "/._#-".contains(c)))
                    .unwrap_or(rest.len());
                let target = rest[..end].trim_end_matches('.');
                rest = &rest[end..];
                if !target.contains(".md") {
                    continue;
                }
                cited += 1;
                if let Err(e) = resolve(Path::new("README.md"), target) {
                    broken.push(format!("{rel}: {target}: {e}"));
                }
            }
        });
    }
    assert!(
        stale.is_empty(),
        "comments citing a document outside the repository: {stale:?}"
    );
    assert!(cited >= 17, "only {cited} citations of docs/ found");
    assert!(
        broken.is_empty(),
        "citations of missing docs:\n{}",
        broken.join("\n")
    );
}

fn visit(dir: &Path, f: &mut dyn FnMut(&Path, &str)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "node_modules") {
                continue;
            }
            visit(&path, f);
        } else if let Ok(text) = std::fs::read_to_string(&path) {
            f(&path, &text);
        }
    }
}
