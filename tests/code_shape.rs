//! The shape of the code, checked on every test run (docs/architecture.md#layers):
//!
//! - **Layers.** Each top-level module of `src/` has a rank; a module may use only modules of
//!   a lower rank (`crate::<module>` paths, outside test code). A cycle or an upward import
//!   fails here, naming the file.
//! - **Function length.** No function outside test code is over 100 lines, from its `fn`
//!   line to its closing brace (the code is rustfmt-formatted, so both are at the item's
//!   indentation).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bottom to top. Modules on one line share a rank and may not use each other.
const LAYERS: &[&[&str]] = &[
    &[
        "ids", "exit", "record", "text", "textfile", "stdio", "secrets",
    ],
    &["state"],
    &["config"],
    &["operators"],
    &["pipeline"],
    &["checkpoint"],
    &["runtime"],
    &["service"],
    &["cli"],
];

/// `crate::` names that are macros or the crate root, not modules.
const NOT_MODULES: &[&str] = &["errln", "outln"];

const MAX_FUNCTION_LINES: usize = 100;

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Every `.rs` file under `dir`, with its text cut before test code: a `#[cfg(test)]` item
/// ends what a file contributes, and `tests.rs` files and `tests/` directories are skipped.
fn sources(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.is_dir() {
            if name != "tests" {
                sources(&p, out);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" {
            let text = std::fs::read_to_string(&p).unwrap();
            let cut = text.find("#[cfg(test)]").unwrap_or(text.len());
            out.push((p, text[..cut].to_string()));
        }
    }
}

fn src_files() -> Vec<(PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    sources(&src, &mut out);
    out.into_iter()
        .map(|(p, t)| (p.strip_prefix(&src).unwrap().to_path_buf(), t))
        .collect()
}

/// The top-level module a file under `src/` belongs to (`runtime/task.rs` → `runtime`).
fn module_of(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The modules a text names as `crate::<module>`.
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // `$crate::` in a macro is the crate root, as `crate::` is.
        if !name.is_empty() && !NOT_MODULES.contains(&name.as_str()) {
            out.push(name);
        }
        rest = after;
    }
    out
}

#[test]
fn no_module_uses_one_above_it() {
    let mut upward: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut unranked = Vec::new();
    for (rel, text) in src_files() {
        let module = module_of(&rel);
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(own) = rank(&module) else {
            unranked.push(format!("{} (module {module})", rel.display()));
            continue;
        };
        for used in crate_paths(&text) {
            if used == module {
                continue;
            }
            match rank(&used) {
                Some(r) if r < own => {}
                _ => upward
                    .entry(format!("{module} -> {used}"))
                    .or_default()
                    .push(rel.display().to_string()),
            }
        }
    }
    assert!(
        unranked.is_empty(),
        "modules without a layer (add them to LAYERS and to docs/architecture.md): {unranked:?}"
    );
    assert!(
        upward.is_empty(),
        "imports at or above the importing module's layer (move the shared item down, see \
         docs/architecture.md#layers): {upward:#?}"
    );
}

/// Functions longer than the limit: (lines, file:line, name).
fn long_functions(rel: &Path, text: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let item = [
            "pub(crate) ",
            "pub(super) ",
            "pub ",
            "const ",
            "async ",
            "unsafe ",
        ]
        .iter()
        .fold(trimmed, |t, p| t.strip_prefix(p).unwrap_or(t));
        if !item.starts_with("fn ") || line.trim_end().ends_with(';') {
            continue;
        }
        let close = format!("{indent}}}");
        let end = lines[i + 1..]
            .iter()
            .position(|l| *l == close)
            .map_or(lines.len(), |j| i + 1 + j);
        let length = end - i + 1;
        if length > MAX_FUNCTION_LINES {
            let name: String = item[3..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.push((length, format!("src/{}:{} {name}", rel.display(), i + 1)));
        }
    }
    out
}

#[test]
fn no_function_is_over_100_lines() {
    let mut long: Vec<(usize, String)> = src_files()
        .iter()
        .flat_map(|(rel, text)| long_functions(rel, text))
        .collect();
    long.sort();
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines (split them along their steps): {long:#?}"
    );
}

#[test]
fn the_checks_see_what_they_check() {
    // A checker that finds no files or no paths would pass anything.
    let files = src_files();
    assert!(files.len() > 50, "{} files", files.len());
    assert!(files.iter().any(|(p, _)| p == Path::new("runtime/mod.rs")));
    assert_eq!(
        crate_paths("use crate::state::x; crate::errln!()"),
        ["state"]
    );
    let long = format!("fn f() {{\n{}}}\n", "    x();\n".repeat(100));
    assert_eq!(long_functions(Path::new("a.rs"), &long).len(), 1);
    let short = format!("fn f() {{\n{}}}\n", "    x();\n".repeat(98));
    assert!(long_functions(Path::new("a.rs"), &short).is_empty());
}
