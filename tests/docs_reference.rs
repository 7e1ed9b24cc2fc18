//! The generated parts of docs/: the configuration table of docs/configuration.md comes from
//! the key table the loader uses, the command reference of docs/cli.md from the clap
//! definitions the binary parses with. This test fails when either differs from the code, and
//! `UPDATE_EXPECT=1 cargo test --test docs_reference` rewrites them (review the diff).

use std::path::Path;

/// Checks (or with UPDATE_EXPECT rewrites) the text between `<!-- NAME:start -->` and
/// `<!-- NAME:end -->` of `file`.
fn check_generated(file: &str, name: &str, want: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let start_marker = format!("<!-- {name}:start -->\n");
    let end_marker = format!("<!-- {name}:end -->");
    let start = text
        .find(&start_marker)
        .unwrap_or_else(|| panic!("{file} has no {start_marker:?}"))
        + start_marker.len();
    let end = text[start..]
        .find(&end_marker)
        .unwrap_or_else(|| panic!("{file} has no {end_marker:?}"))
        + start;
    if text[start..end] == *want {
        return;
    }
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        let updated = format!("{}{}{}", &text[..start], want, &text[end..]);
        std::fs::write(&path, updated).unwrap_or_else(|e| panic!("rewrite {file}: {e}"));
        return;
    }
    panic!(
        "{file}: the {name} section is stale: run UPDATE_EXPECT=1 cargo test --test docs_reference"
    );
}

#[test]
fn configuration_reference_matches_the_known_keys() {
    let table = floe::config::render_reference_markdown();
    check_generated("docs/configuration.md", "config-reference", &table);
    for key in floe::config::known_keys() {
        assert!(
            table.contains(&format!("| `{}` |", key.canonical)),
            "{}",
            key.canonical
        );
    }
}

#[test]
fn cli_reference_matches_the_command_line_definitions() {
    let reference = floe::cli::reference_markdown();
    for verb in [
        "run",
        "validate",
        "config",
        "inspect",
        "list",
        "savepoint",
        "stop",
        "cancel",
        "serve",
        "reload",
    ] {
        assert!(
            reference.contains(&format!("### `floe {verb}`")),
            "the reference lacks floe {verb}"
        );
    }
    assert!(
        reference.contains("`-s, --fromSavepoint <PATH>`"),
        "{reference}"
    );
    check_generated("docs/cli.md", "cli-reference", &reference);
}
