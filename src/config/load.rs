//! Reading the layers (defaults, conf file, `FLOE_*` environment, pipeline settings, `-D`),
//! turning each into canonical keys (aliases resolved within the layer, the 2.x name winning)
//! and merging them with figment, each layer over the one before. Values stay text here;
//! `build` types and checks them.

use super::keys::{self, KeySpec};
use super::{build, ConfigError, ConfigProblem, LoadOptions, Loaded, Origin};
use crate::textfile::{yaml_duplicate_key, yaml_duplicate_key_line};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The conf file names looked for, in order (Flink 1.x's name first: it is what floe ships).
const CONF_FILES: &[&str] = &["flink-conf.yaml", "config.yaml"];

/// Unknown keys per layer that get a "did you mean" (the rest are only named).
const MAX_HINTS: usize = 100;

/// The largest conf file floe reads (Flink's own, fully commented, is about 20 KiB).
pub const MAX_CONF_BYTES: u64 = 8 << 20;

/// One key's value as a layer gives it, after alias resolution.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Setting {
    /// The value as written.
    pub value: String,
    /// The name it was written under (canonical or alias).
    pub name: String,
    /// Index into the origins table. An index, not the [`Origin`] itself, so that figment's
    /// recursive dict merge replaces the whole thing rather than mixing fields of two origins.
    pub origin: usize,
}

/// A value as read, before alias resolution.
struct Raw {
    name: String,
    value: Result<String, &'static str>,
    origin: Origin,
}

/// One layer as a figment provider: a dict of flat canonical keys. Flat on purpose: Flink's
/// keys are not a tree (`state.backend` and `state.backend.incremental` are both keys).
struct Layer {
    name: &'static str,
    settings: BTreeMap<String, Setting>,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        figment::providers::Serialized::defaults(&self.settings).data()
    }
}

/// Loads the configuration with the process environment.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    load_with_env(opts, &process_env())
}

/// The conf file [`load`] reads for `conf_dir` (`--conf-dir`; else `FLOE_CONF_DIR`, else
/// `./conf`), without reading it; `None` when there is none or the directory is unusable.
pub fn conf_file(conf_dir: Option<&Path>) -> Option<PathBuf> {
    let opts = LoadOptions {
        conf_dir: conf_dir.map(Path::to_path_buf),
        pipeline_settings: Vec::new(),
        dynamic: Vec::new(),
    };
    find_conf_file(&opts, &process_env(), &mut Vec::new())
        .ok()
        .flatten()
}

/// The process's FLOE_* variables. vars_os: a non-UTF-8 variable must not panic; only
/// FLOE_* ones matter, read lossily.
fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            k.starts_with(keys::ENV_PREFIX)
                .then(|| (k, v.to_string_lossy().into_owned()))
        })
        .collect()
}

/// Loads the configuration with the given environment instead of the process's (for tests and
/// embedding: no global state is read or changed).
pub fn load_with_env(opts: &LoadOptions, env: &[(String, String)]) -> Result<Loaded, ConfigError> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let conf_file = match find_conf_file(opts, env, &mut warnings) {
        Ok(f) => f,
        Err(p) => {
            problems.push(*p);
            None
        }
    };
    let file_raw = match &conf_file {
        Some(path) => read_conf_file(path, &mut problems, &mut warnings),
        None => Vec::new(),
    };
    merge_layers(opts, env, conf_file, file_raw, problems, warnings)
}

/// [`load_with_env`] with `text` as the conf file's content, named `path` in messages,
/// instead of a file looked for and read (for tests and fuzzing: no file system).
pub fn load_with_conf_text(
    text: &str,
    path: &Path,
    opts: &LoadOptions,
    env: &[(String, String)],
) -> Result<Loaded, ConfigError> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let file_raw = conf_text_layer(text, path, &mut problems, &mut warnings);
    merge_layers(
        opts,
        env,
        Some(path.to_path_buf()),
        file_raw,
        problems,
        warnings,
    )
}

/// Every layer over the defaults, then typed: the part of loading after the conf file is read.
fn merge_layers(
    opts: &LoadOptions,
    env: &[(String, String)],
    conf_file: Option<PathBuf>,
    file_raw: Vec<Raw>,
    mut problems: Vec<ConfigProblem>,
    mut warnings: Vec<String>,
) -> Result<Loaded, ConfigError> {
    let mut origins = Vec::new();
    let env_raw = env_layer(env, &mut warnings);
    let pipeline_raw = opts
        .pipeline_settings
        .iter()
        .map(|s| Raw {
            name: s.key.clone(),
            value: Ok(s.value.clone()),
            origin: Origin::Pipeline {
                at: s.origin.clone(),
            },
        })
        .collect();
    let dynamic_raw = dynamic_layer(&opts.dynamic, &mut problems);

    let mut figment = Figment::new().merge(Layer {
        name: "defaults",
        settings: defaults_layer(&mut origins),
    });
    for (name, raw) in [
        ("conf file", file_raw),
        ("environment", env_raw),
        ("pipeline", pipeline_raw),
        ("-D", dynamic_raw),
    ] {
        let settings = canonicalize(raw, &mut origins, &mut problems, &mut warnings);
        figment = figment.merge(Layer { name, settings });
    }
    let effective: BTreeMap<String, Setting> = match figment.extract() {
        Ok(e) => e,
        // Only text goes in, so this cannot fail on user input.
        Err(e) => unreachable!("bug: merging configuration layers failed: {e}"),
    };

    let (config, entries) = build::build(&effective, &origins, &mut problems, &mut warnings);
    // From now on no log line or error of this process shows these values.
    for e in &entries {
        crate::secrets::remember_setting(&e.key, &e.value);
    }
    if problems.is_empty() {
        Ok(Loaded {
            config,
            warnings,
            entries,
            conf_file,
        })
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

fn defaults_layer(origins: &mut Vec<Origin>) -> BTreeMap<String, Setting> {
    origins.push(Origin::Default);
    build::default_settings(origins.len() - 1)
}

/// The conf file: in the explicit directory (which must hold one), else in `FLOE_CONF_DIR`
/// (same), else in `./conf` if there is one.
fn find_conf_file(
    opts: &LoadOptions,
    env: &[(String, String)],
    warnings: &mut Vec<String>,
) -> Result<Option<PathBuf>, Box<ConfigProblem>> {
    let from_env = env
        .iter()
        .find(|(k, v)| k == "FLOE_CONF_DIR" && !v.is_empty())
        .map(|(_, v)| PathBuf::from(v));
    let (dir, given_by) = match (&opts.conf_dir, from_env) {
        (Some(d), _) => (d.clone(), Some("--conf-dir")),
        (None, Some(d)) => (d, Some("FLOE_CONF_DIR")),
        (None, None) => (PathBuf::from("conf"), None),
    };
    if !dir.is_dir() {
        return match given_by {
            Some(g) => Err(Box::new(ConfigProblem::MissingConfDir {
                dir,
                given_by: g.into(),
            })),
            None => Ok(None),
        };
    }
    let found: Vec<PathBuf> = CONF_FILES
        .iter()
        .map(|f| dir.join(f))
        // exists, not is_file: a FIFO or a directory by that name is an error when read,
        // never silently skipped for the built-in defaults.
        .filter(|p| p.exists())
        .collect();
    if let [used, ignored, ..] = found.as_slice() {
        warnings.push(format!(
            "{}: ignored, {} is read instead",
            ignored.display(),
            used.display()
        ));
    }
    match (found.into_iter().next(), given_by) {
        (Some(f), _) => Ok(Some(f)),
        (None, Some(g)) => Err(Box::new(ConfigProblem::MissingConfFile {
            dir,
            given_by: g.into(),
        })),
        (None, None) => Ok(None),
    }
}

fn read_conf_file(
    path: &Path,
    problems: &mut Vec<ConfigProblem>,
    warnings: &mut Vec<String>,
) -> Vec<Raw> {
    let text = match crate::textfile::read_text(path, MAX_CONF_BYTES) {
        Ok(t) => t,
        Err(e) => {
            problems.push(ConfigProblem::Unreadable {
                path: path.to_path_buf(),
                reason: e.to_string(),
            });
            return Vec::new();
        }
    };
    conf_text_layer(&text, path, problems, warnings)
}

/// The conf file's settings, from its text.
fn conf_text_layer(
    text: &str,
    path: &Path,
    problems: &mut Vec<ConfigProblem>,
    warnings: &mut Vec<String>,
) -> Vec<Raw> {
    if let Some(line) = crate::textfile::yaml_flow_too_deep(text) {
        problems.push(ConfigProblem::Yaml {
            path: path.to_path_buf(),
            line: Some(line),
            message: crate::textfile::flow_too_deep_message(),
        });
        return Vec::new();
    }
    let doc: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let message = e.to_string();
            let mut line = e.location().map(|l| l.line());
            // serde_yaml places a duplicate key at its mapping: point at the key itself.
            if let (Some(loc), Some(key)) = (e.location(), yaml_duplicate_key(&message)) {
                line = yaml_duplicate_key_line(text, loc.line(), loc.column(), key).or(line);
            }
            problems.push(ConfigProblem::Yaml {
                path: path.to_path_buf(),
                line,
                message,
            });
            return Vec::new();
        }
    };
    let mut flat = Vec::new();
    match doc {
        serde_yaml::Value::Null => {}
        serde_yaml::Value::Mapping(m) => flatten(&m, "", &mut flat),
        _ => problems.push(ConfigProblem::Yaml {
            path: path.to_path_buf(),
            line: None,
            message: "the file must be a mapping of keys to values".into(),
        }),
    }
    let lines = key_lines(text);
    // serde_yaml keeps document order, so the n-th occurrence of a path is its n-th line.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut raw = Vec::with_capacity(flat.len());
    for (name, value) in flat {
        let nth = seen.entry(name.clone()).or_default();
        let origin = Origin::File {
            path: path.to_path_buf(),
            line: line_of(&lines, &name, *nth),
        };
        *nth += 1;
        match value {
            Some(value) => raw.push(Raw {
                name,
                value,
                origin,
            }),
            None => warnings.push(format!("{origin}: '{name}' has no value; ignored")),
        }
    }
    raw
}

type Flat = Vec<(String, Option<Result<String, &'static str>>)>;

/// Nested mappings → flat dotted keys (`execution: {checkpointing: {interval: 1s}}` →
/// `execution.checkpointing.interval`); flat dotted keys stay as they are. `None` = null.
fn flatten(map: &serde_yaml::Mapping, prefix: &str, out: &mut Flat) {
    use serde_yaml::Value as V;
    for (k, v) in map {
        let k = match k {
            V::String(s) => s.clone(),
            V::Number(n) => n.to_string(),
            V::Bool(b) => b.to_string(),
            other => serde_yaml::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        let name = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}.{k}")
        };
        let value = match v {
            V::Mapping(m) => {
                flatten(m, &name, out);
                continue;
            }
            V::Null => None,
            V::String(s) => Some(Ok(s.clone())),
            V::Number(n) => Some(Ok(n.to_string())),
            V::Bool(b) => Some(Ok(b.to_string())),
            V::Sequence(_) => Some(Err("a list")),
            V::Tagged(_) => Some(Err("a tagged value")),
        };
        out.push((name, value));
    }
}

/// The line of the `nth` occurrence of key `name` (flat path), or of its nearest written
/// ancestor (for keys inside a flow mapping `{...}`).
fn line_of(lines: &HashMap<String, Vec<usize>>, name: &str, nth: usize) -> Option<usize> {
    let mut path = name;
    loop {
        if let Some(l) = lines.get(path) {
            return l.get(nth).or(l.last()).copied();
        }
        path = &path[..path.rfind('.')?];
    }
}

/// Flat key path → 1-based lines where it is written, for block-style YAML (flat dotted keys and nested
/// mappings). serde_yaml's `Value` keeps no positions, so the text is scanned by indentation.
fn key_lines(text: &str) -> HashMap<String, Vec<usize>> {
    let mut out = HashMap::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = strip_comment(raw);
        let content = line.trim();
        if content.is_empty() || content.starts_with('-') || content == "..." {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let Some((key, rest)) = split_key(content) else {
            continue;
        };
        while stack.last().is_some_and(|(ind, _)| *ind >= indent) {
            stack.pop();
        }
        let mut path = String::new();
        for (_, k) in &stack {
            path.push_str(k);
            path.push('.');
        }
        path.push_str(&key);
        out.entry(path).or_insert_with(Vec::new).push(i + 1);
        if rest.trim().is_empty() {
            stack.push((indent, key));
        }
    }
    out
}

/// The part of a line before a `#` comment (outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if prev_space => return &line[..i],
            _ => {}
        }
        prev_space = c.is_whitespace();
    }
    line
}

/// `key: rest` → (key without quotes, rest); `None` when the line holds no key.
fn split_key(content: &str) -> Option<(String, &str)> {
    if let Some(q @ ('"' | '\'')) = content.chars().next() {
        let end = content[1..].find(q)? + 1;
        let rest = content[end + 1..].trim_start().strip_prefix(':')?;
        return Some((content[1..end].to_string(), rest));
    }
    let bytes = content.as_bytes();
    let pos = (0..bytes.len()).find(|&i| {
        bytes[i] == b':' && (i + 1 == bytes.len() || bytes[i + 1].is_ascii_whitespace())
    })?;
    Some((content[..pos].trim_end().to_string(), &content[pos + 1..]))
}

/// `FLOE_*` variables that name a key (canonical or alias); others warn, with a suggestion.
fn env_layer(env: &[(String, String)], warnings: &mut Vec<String>) -> Vec<Raw> {
    let mut vars: Vec<&(String, String)> = env
        .iter()
        .filter(|(k, _)| {
            k.starts_with(keys::ENV_PREFIX) && !keys::NON_KEY_ENV.contains(&k.as_str())
        })
        .collect();
    vars.sort();
    let mut raw = Vec::new();
    for (var, value) in vars {
        match keys::key_for_env(var) {
            Some(name) => raw.push(Raw {
                name: name.to_string(),
                value: Ok(value.clone()),
                origin: Origin::Env { var: var.clone() },
            }),
            None => warnings.push(format!(
                "env {var}: not a configuration key (ignored){}",
                match keys::did_you_mean_env(var) {
                    Some(s) => format!("; did you mean {s}?"),
                    None => String::new(),
                }
            )),
        }
    }
    raw
}

fn dynamic_layer(args: &[String], problems: &mut Vec<ConfigProblem>) -> Vec<Raw> {
    let mut raw = Vec::new();
    for arg in args {
        match arg.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => raw.push(Raw {
                name: k.trim().to_string(),
                value: Ok(v.to_string()),
                origin: Origin::Dynamic { arg: arg.clone() },
            }),
            _ => problems.push(ConfigProblem::BadDynamic { arg: arg.clone() }),
        }
    }
    raw
}

/// One layer's values by canonical key. Unknown keys warn (with a did-you-mean). When a key is
/// given under several names in the layer, the canonical name wins, else the first alias in
/// Flink's fallback order, and a warning says which was dropped. The same name given twice:
/// the later wins, as for repeated `-D`.
fn canonicalize(
    raw: Vec<Raw>,
    origins: &mut Vec<Origin>,
    problems: &mut Vec<ConfigProblem>,
    warnings: &mut Vec<String>,
) -> BTreeMap<String, Setting> {
    let mut by_key: BTreeMap<&'static str, Vec<(usize, Raw)>> = BTreeMap::new();
    // Each hint compares the name with every known key: only so many, so that a file of many
    // thousands of unknown keys is still read in time linear in its size.
    let mut hints_left = MAX_HINTS;
    for r in raw {
        let Some(spec) = keys::lookup(&r.name) else {
            let hint = match hints_left.checked_sub(1) {
                Some(left) => {
                    hints_left = left;
                    keys::did_you_mean(&r.name)
                }
                None => None,
            };
            warnings.push(format!(
                "{}: unknown configuration key '{}' (ignored){}",
                r.origin,
                r.name,
                match hint {
                    Some(s) => format!("; did you mean '{s}'?"),
                    None => String::new(),
                }
            ));
            continue;
        };
        let rank = name_rank(spec, &r.name);
        let list = by_key.entry(spec.canonical).or_default();
        // A repeated name replaces its earlier value (normal for repeated `-D`; in a file it
        // means a flat and a nested spelling of the same key, worth a word).
        if let Some((_, earlier)) = list.iter().find(|(_, e)| e.name == r.name) {
            if matches!(r.origin, Origin::File { .. }) {
                warnings.push(format!(
                    "{}: '{}' is set twice (also at {}); the later one is used",
                    r.origin, r.name, earlier.origin
                ));
            }
        }
        list.retain(|(_, e)| e.name != r.name);
        list.push((rank, r));
    }
    let mut out = BTreeMap::new();
    for (canonical, mut list) in by_key {
        list.sort_by_key(|(rank, _)| *rank);
        let mut list = list.into_iter().map(|(_, r)| r);
        let Some(winner) = list.next() else { continue };
        for loser in list {
            warnings.push(format!(
                "{}: '{}' is also set as '{}' at {}; using '{}' (the newer name wins)",
                winner.origin, canonical, loser.name, loser.origin, winner.name
            ));
        }
        let value = match winner.value {
            Ok(v) => v,
            Err(what) => {
                problems.push(ConfigProblem::NotAScalar {
                    key: winner.name,
                    origin: winner.origin,
                    what: what.to_string(),
                });
                continue;
            }
        };
        origins.push(winner.origin);
        out.insert(
            canonical.to_string(),
            Setting {
                value,
                name: winner.name,
                origin: origins.len() - 1,
            },
        );
    }
    out
}

/// 0 for the canonical name, 1.. for aliases in fallback order.
fn name_rank(spec: &KeySpec, name: &str) -> usize {
    if spec.canonical == name {
        0
    } else {
        1 + spec.aliases.iter().position(|a| *a == name).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_flat_and_nested_keys() {
        let text = "# comment\nstate.backend: hashmap   # note\n\nexecution:\n  checkpointing:\n    interval: 10 s\n    mode: EXACTLY_ONCE\n  state-recovery:\n    path: /x\n'quoted.key': 1\nrest: {port: 1}\n";
        let l = key_lines(text);
        let at = |k: &str| line_of(&l, k, 0);
        assert_eq!(at("state.backend"), Some(2));
        assert_eq!(at("execution.checkpointing.interval"), Some(6));
        assert_eq!(at("execution.checkpointing.mode"), Some(7));
        assert_eq!(at("execution.state-recovery.path"), Some(9));
        assert_eq!(at("quoted.key"), Some(10));
        assert_eq!(at("rest.port"), Some(11));
        assert_eq!(at("unknown"), None);
    }

    #[test]
    fn comments_inside_quotes_are_kept() {
        assert_eq!(strip_comment("a: 'x # y' # z"), "a: 'x # y' ");
        assert_eq!(strip_comment("a: b#c"), "a: b#c");
    }

    #[test]
    fn urls_are_not_keys() {
        assert_eq!(
            split_key("dir: file:///tmp/x").map(|(k, r)| (k, r.trim().to_string())),
            Some(("dir".to_string(), "file:///tmp/x".to_string()))
        );
    }
}
