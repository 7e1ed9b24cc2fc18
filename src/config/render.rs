//! Rendering the effective configuration for `floe config`: an aligned table for people and
//! JSON for tools. Formatting only; warnings are the caller's to print (they go to stderr).

use super::{Entry, Loaded};
use serde_json::{json, Value};

const UNSET: &str = "(not set)";

/// The value as shown: masked for a secret key ([`crate::secrets::is_secret_key`]).
fn shown(e: &Entry) -> String {
    crate::secrets::shown(&e.key, &e.value).into_owned()
}

/// The table: one line per known key, `key  value  origin`, columns aligned; a first line
/// names the conf file read.
pub fn render_text(loaded: &Loaded) -> String {
    let rows: Vec<[String; 3]> = loaded.entries.iter().map(row).collect();
    let w0 = rows.iter().map(|r| r[0].len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r[1].chars().count()).max().unwrap_or(0);
    let mut out = match &loaded.conf_file {
        Some(f) => format!("# conf file: {}\n", f.display()),
        None => "# conf file: none (built-in defaults)\n".to_string(),
    };
    for [key, value, origin] in rows {
        let pad = w1.saturating_sub(value.chars().count());
        let line = format!("{key:<w0$}  {value}{}  {origin}", " ".repeat(pad));
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn row(e: &Entry) -> [String; 3] {
    let value = if e.value.is_empty() {
        UNSET.to_string()
    } else {
        shown(e)
    };
    let origin = match &e.written_as {
        Some(name) => format!("{} (as {name})", e.origin),
        None => e.origin.to_string(),
    };
    [e.key.clone(), value, origin]
}

/// `{"conf_file": .., "settings": [{"key", "value", "origin", "written_as"}], "warnings": [..]}`;
/// an unset value is `null`, `origin` is the same text as the table's.
pub fn render_json(loaded: &Loaded) -> Value {
    let settings: Vec<Value> = loaded
        .entries
        .iter()
        .map(|e| {
            json!({
                "key": e.key,
                "value": (!e.value.is_empty()).then(|| shown(e)),
                "origin": e.origin.to_string(),
                "written_as": e.written_as,
            })
        })
        .collect();
    json!({
        "conf_file": loaded.conf_file.as_ref().map(|f| f.display().to_string()),
        "settings": settings,
        "warnings": loaded.warnings,
    })
}

/// The configuration reference as a Markdown table, one row per known key: what
/// docs/configuration.md shows (a test keeps the two equal). The "in floe" column says
/// whether floe acts on the key ([`super::keys::Effect`]).
pub fn render_reference_markdown() -> String {
    let mut out = String::from(
        "| key (Flink 2.x name) | also read (Flink 1.x names) | value | default | in floe | meaning |\n\
         |---|---|---|---|---|---|\n",
    );
    for k in super::known_keys() {
        let aliases = k
            .aliases
            .iter()
            .map(|a| format!("`{a}`"))
            .collect::<Vec<_>>()
            .join("<br>");
        let effect = match k.effect {
            super::keys::Effect::Works => "works".to_string(),
            super::keys::Effect::NoEffect(why) => {
                format!("**no effect** ({why}); a value other than the default is warned about")
            }
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            k.canonical,
            aliases,
            k.kind,
            k.default
                .map_or("(not set)".to_string(), |d| format!("`{d}`")),
            effect.replace('|', "\\|"),
            k.doc.replace('|', "\\|"),
        ));
    }
    out
}
