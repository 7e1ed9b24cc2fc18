//! Raw pipeline YAML and its parsing: the top-level keys, the `checkpointing:` and `config:`
//! blocks turned into configuration settings, and each operator's `id`, `type`, `inputs` and
//! body, the body parsed into that operator's config struct once `type:` is known.
//!
//! Problems are collected, not returned at the first: only YAML that does not parse stops
//! here. Graph checks (ids, inputs, cycles, schemas) are `validate`'s job; this module must
//! not judge configuration values either (the config module does, with their origin). It does
//! resolve a relative path given for a path key (`checkpoint-dir: ck`) against the pipeline
//! file's directory, as relative paths in operator settings are.

use crate::operators::{did_you_mean_suffix, OperatorConfig, Role};
use crate::pipeline::PipelineSetting;
use crate::textfile::{yaml_duplicate_key, yaml_duplicate_key_line, yaml_key_of};
use serde_yaml::{Mapping, Value};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The top-level keys of a pipeline file.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "name",
    "parallelism",
    "max-parallelism",
    "allow-non-restored-state",
    "checkpointing",
    "config",
    "operators",
];

/// `checkpointing:` keys and the configuration keys they set.
pub const CHECKPOINTING_KEYS: &[(&str, &str)] = &[
    ("interval", "execution.checkpointing.interval"),
    ("mode", "execution.checkpointing.mode"),
    ("min-pause", "execution.checkpointing.min-pause"),
    (
        "max-concurrent-checkpoints",
        "execution.checkpointing.max-concurrent-checkpoints",
    ),
    ("timeout", "execution.checkpointing.timeout"),
    (
        "tolerable-failed-checkpoints",
        "execution.checkpointing.tolerable-failed-checkpoints",
    ),
    (
        "externalized-checkpoint-retention",
        "execution.checkpointing.externalized-checkpoint-retention",
    ),
    ("state-backend", "state.backend.type"),
    ("checkpoint-dir", "execution.checkpointing.dir"),
    ("savepoint-dir", "execution.checkpointing.savepoint-dir"),
    ("incremental", "execution.checkpointing.incremental"),
];

/// Keys of an operator entry that are not the operator's own settings.
const OPERATOR_KEYS: &[&str] = &["id", "type", "inputs", "parallelism"];

/// The largest pipeline file (or submitted pipeline text) floe reads: room for thousands of
/// operators, while reading and checking it stays well under a second.
pub const MAX_PIPELINE_BYTES: u64 = 8 << 20;

/// The most operators one pipeline may have. Each costs a task or a link of a chain, and
/// checking a pipeline of this many takes about a second.
pub const MAX_OPERATORS: usize = 20_000;

/// Parallelism bounds, as Flink's (`1 << 15` key groups at most).
pub const MAX_PARALLELISM_BOUND: u64 = 32768;

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineProblem {
    /// Where in the document: `operators[1] (id "split").inputs[0]`; empty for the file.
    pub path: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known (YAML syntax errors).
    pub column: Option<usize>,
    pub message: String,
}

/// Every problem found in one pipeline file; displays one per line, with the file name.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", render(.file, .problems))]
pub struct PipelineErrors {
    pub file: PathBuf,
    pub problems: Vec<PipelineProblem>,
}

fn render(file: &Path, problems: &[PipelineProblem]) -> String {
    let mut out = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&p.display_in(file).to_string());
    }
    out
}

impl PipelineProblem {
    /// `file:line:col: path: message`.
    pub fn display_in<'a>(&'a self, file: &'a Path) -> impl fmt::Display + 'a {
        struct D<'a>(&'a PipelineProblem, &'a Path);
        impl fmt::Display for D<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let p = self.0;
                write!(f, "{}", self.1.display())?;
                if let Some(line) = p.line {
                    write!(f, ":{line}")?;
                    if let Some(col) = p.column {
                        write!(f, ":{col}")?;
                    }
                }
                if p.path.is_empty() {
                    write!(f, ": {}", p.message)
                } else {
                    write!(f, ": {}: {}", p.path, p.message)
                }
            }
        }
        D(self, file)
    }
}

/// One operator entry as written, before the graph is checked.
#[derive(Debug, Clone)]
pub struct RawOperator {
    /// Position in the `operators:` list.
    pub index: usize,
    /// The `id`, if one was given as text.
    pub id: Option<String>,
    /// `type:` as written.
    pub type_name: Option<String>,
    /// The parsed settings; `None` when the type or a setting is wrong.
    pub config: Option<OperatorConfig>,
    /// The role the type has (known even when its settings are wrong).
    pub role: Option<Role>,
    /// The `inputs` as written, `None` when absent.
    pub inputs: Option<Vec<String>>,
    pub parallelism: Option<u32>,
    /// Line of the entry's start.
    pub line: Option<usize>,
}

impl RawOperator {
    /// `operators[1] (id "split")`, the prefix of every path inside this operator.
    pub fn label(&self) -> String {
        match &self.id {
            Some(id) => format!("operators[{}] (id \"{id}\")", self.index),
            None => format!("operators[{}]", self.index),
        }
    }
}

/// A pipeline file as written, with the problems found reading it.
#[derive(Debug, Clone, Default)]
pub struct RawPipeline {
    pub name: String,
    pub settings: Vec<PipelineSetting>,
    pub allow_non_restored_state: bool,
    pub max_parallelism: Option<u32>,
    pub operators: Vec<RawOperator>,
    pub problems: Vec<PipelineProblem>,
    pub lines: LineIndex,
}

/// The top-level mapping of a pipeline file's text; an error for text above the size limit,
/// text that is not YAML (at the line of the problem: a duplicate key's own line) or YAML that
/// is not a mapping.
fn parse_document(text: &str, file: &Path) -> Result<Mapping, PipelineErrors> {
    let fail = |line, column, message: String| PipelineErrors {
        file: file.to_path_buf(),
        problems: vec![PipelineProblem {
            path: String::new(),
            line,
            column,
            message,
        }],
    };
    if text.len() as u64 > MAX_PIPELINE_BYTES {
        return Err(fail(
            None,
            None,
            crate::textfile::ReadError::TooLarge {
                size: text.len() as u64,
                limit: MAX_PIPELINE_BYTES,
            }
            .to_string(),
        ));
    }
    if let Some(line) = crate::textfile::yaml_flow_too_deep(text) {
        return Err(fail(
            Some(line),
            None,
            format!("invalid YAML: {}", crate::textfile::flow_too_deep_message()),
        ));
    }
    let doc: Value = serde_yaml::from_str(text).map_err(|e| {
        let loc = e.location();
        let msg = e.to_string();
        // The location is shown in front; drop serde_yaml's own " at line … column …".
        let msg = match msg.find(" at line ") {
            Some(i) => {
                msg[..i].to_string()
                    + &msg[i..]
                        .split_once(", ")
                        .map(|(_, r)| format!(", {r}"))
                        .unwrap_or_default()
            }
            None => msg,
        };
        let (mut line, mut column) = (
            loc.as_ref().map(|l| l.line()),
            loc.as_ref().map(|l| l.column()),
        );
        // serde_yaml places a duplicate key at its mapping: point at the key itself.
        if let (Some(l), Some(c), Some(key)) = (line, column, yaml_duplicate_key(&msg)) {
            if let Some(at) = yaml_duplicate_key_line(text, l, c, key) {
                (line, column) = (Some(at), None);
            }
        }
        fail(line, column, format!("invalid YAML: {msg}"))
    })?;
    let Value::Mapping(top) = doc else {
        let what = if doc.is_null() {
            "empty"
        } else {
            "not a mapping"
        };
        return Err(fail(
            None,
            None,
            format!("the pipeline file is {what}; it needs at least `name:` and `operators:`"),
        ));
    };
    Ok(top)
}

/// Parse the YAML of a pipeline file. Fails only when the text is not YAML or not a mapping;
/// every other problem lands in [`RawPipeline::problems`].
pub fn parse_raw(text: &str, file: &Path) -> Result<RawPipeline, PipelineErrors> {
    let top = parse_document(text, file)?;
    let mut p = RawPipeline {
        lines: LineIndex::new(text),
        ..RawPipeline::default()
    };
    let origin_of = |line: Option<usize>| match line {
        Some(l) => format!("{}:{l}", file.display()),
        None => file.display().to_string(),
    };

    for (k, v) in &top {
        let Some(key) = k.as_str() else {
            p.problem(
                "",
                None,
                format!("a top-level key must be text, got {}", kind(k)),
            );
            continue;
        };
        let line = p.lines.top_key(key);
        match key {
            "name" => match v.as_str() {
                // The name goes into logs, REST answers and `-s latest` matching: printable
                // text only, so no name can forge a log line.
                Some(s) if !s.trim().is_empty() => match crate::text::check_printable(s) {
                    Ok(()) => p.name = s.to_string(),
                    Err(why) => p.problem("name", line, format!("the job name {why}")),
                },
                _ => p.problem("name", line, "expected the job name as text".to_string()),
            },
            "parallelism" | "max-parallelism" => match bounded(v) {
                Ok(n) => {
                    let cfg_key = if key == "parallelism" {
                        "parallelism.default"
                    } else {
                        p.max_parallelism = Some(n);
                        "pipeline.max-parallelism"
                    };
                    p.settings.push(PipelineSetting {
                        key: cfg_key.to_string(),
                        value: n.to_string(),
                        origin: origin_of(line),
                    });
                }
                Err(m) => p.problem(key, line, m),
            },
            "allow-non-restored-state" => match v.as_bool() {
                Some(b) => p.allow_non_restored_state = b,
                None => p.problem(
                    key,
                    line,
                    format!("expected true or false, got {}", kind(v)),
                ),
            },
            "checkpointing" => p.checkpointing(v, &origin_of),
            "config" => p.config_block(v, &origin_of),
            "operators" => {}
            other => {
                let hint = did_you_mean_suffix(other, TOP_LEVEL_KEYS.iter().copied());
                p.problem(
                    other,
                    line,
                    format!(
                        "unknown top-level key{hint} (valid keys: {})",
                        TOP_LEVEL_KEYS.join(", ")
                    ),
                );
            }
        }
    }
    if !top.contains_key("name") {
        p.problem(
            "name",
            None,
            "missing: the job name (`name: wordcount`)".to_string(),
        );
    }
    p.resolve_paths(file);
    p.operators_block(top.get("operators"));
    Ok(p)
}

impl RawPipeline {
    pub fn problem(&mut self, path: &str, line: Option<usize>, message: String) {
        self.problems.push(PipelineProblem {
            path: path.to_string(),
            line,
            column: None,
            message,
        });
    }

    /// Relative paths of path keys resolved against the directory of `file`.
    fn resolve_paths(&mut self, file: &Path) {
        let base_dir = file.parent().unwrap_or(Path::new(""));
        for setting in &mut self.settings {
            if let Some(resolved) = resolve_path_setting(&setting.key, &setting.value, base_dir) {
                setting.value = resolved;
            }
        }
    }

    /// The `operators:` list (`None`: missing), each entry parsed by its `type:`.
    fn operators_block(&mut self, ops: Option<&Value>) {
        match ops {
            None => self.problem(
                "operators",
                None,
                "missing: the list of operators (`operators:`)".to_string(),
            ),
            Some(Value::Sequence(ops)) if ops.len() > MAX_OPERATORS => {
                let line = self.lines.top_key("operators");
                self.problem(
                    "operators",
                    line,
                    format!(
                        "{} operators, above the limit of {MAX_OPERATORS}; split the pipeline into several",
                        ops.len()
                    ),
                )
            }
            Some(Value::Sequence(ops)) if !ops.is_empty() => {
                for (i, op) in ops.iter().enumerate() {
                    let raw = self.operator(i, op);
                    self.operators.push(raw);
                }
            }
            Some(_) => {
                let line = self.lines.top_key("operators");
                self.problem(
                    "operators",
                    line,
                    "expected a non-empty list of operators".to_string(),
                )
            }
        }
    }

    fn checkpointing(&mut self, v: &Value, origin_of: &dyn Fn(Option<usize>) -> String) {
        let Value::Mapping(m) = v else {
            let line = self.lines.top_key("checkpointing");
            self.problem(
                "checkpointing",
                line,
                format!("expected a mapping, got {}", kind(v)),
            );
            return;
        };
        for (k, v) in m {
            let key = k.as_str().unwrap_or_default();
            let line = self.lines.block_key("checkpointing", key);
            let path = format!("checkpointing.{key}");
            let Some((_, cfg_key)) = CHECKPOINTING_KEYS.iter().find(|(n, _)| *n == key) else {
                let names: Vec<&str> = CHECKPOINTING_KEYS.iter().map(|(n, _)| *n).collect();
                let hint = did_you_mean_suffix(key, names.iter().copied());
                self.problem(
                    &path,
                    line,
                    format!(
                        "unknown checkpointing setting{hint} (valid settings: {})",
                        names.join(", ")
                    ),
                );
                continue;
            };
            match scalar_text(v) {
                Some(value) => self.settings.push(PipelineSetting {
                    key: cfg_key.to_string(),
                    value,
                    origin: origin_of(line),
                }),
                None => self.problem(
                    &path,
                    line,
                    format!("expected a single value, got {}", kind(v)),
                ),
            }
        }
    }

    fn config_block(&mut self, v: &Value, origin_of: &dyn Fn(Option<usize>) -> String) {
        let Value::Mapping(m) = v else {
            let line = self.lines.top_key("config");
            self.problem(
                "config",
                line,
                format!("expected a mapping of configuration keys, got {}", kind(v)),
            );
            return;
        };
        let mut flat = Vec::new();
        flatten("", m, &mut flat);
        for (key, leaf, value) in flat {
            let line = self.lines.block_key("config", &leaf);
            match value {
                Some(value) => self.settings.push(PipelineSetting {
                    key,
                    value,
                    origin: origin_of(line),
                }),
                None => self.problem(
                    &format!("config.{key}"),
                    line,
                    "expected a single value (text, number or boolean)".to_string(),
                ),
            }
        }
    }

    fn operator(&mut self, index: usize, v: &Value) -> RawOperator {
        let line = self.lines.operator_start(index);
        let mut raw = RawOperator {
            index,
            id: None,
            type_name: None,
            config: None,
            role: None,
            inputs: None,
            parallelism: None,
            line,
        };
        let Value::Mapping(m) = v else {
            self.problem(
                &raw.label(),
                line,
                format!(
                    "expected an operator (a mapping with `id` and `type`), got {}",
                    kind(v)
                ),
            );
            return raw;
        };
        let at = |this: &RawPipeline, key: &str| this.lines.operator_key(index, key).or(line);
        match m.get("id") {
            None => self.problem(
                &raw.label(),
                line,
                "missing `id:` (a unique name, the operator's state identity)".to_string(),
            ),
            Some(id) => match scalar_text(id) {
                Some(s) => raw.id = Some(s),
                None => {
                    let l = at(self, "id");
                    self.problem(
                        &format!("{}.id", raw.label()),
                        l,
                        format!("expected text, got {}", kind(id)),
                    )
                }
            },
        }
        let label = raw.label();
        match m.get("inputs") {
            None => {}
            Some(Value::String(s)) => raw.inputs = Some(vec![s.clone()]),
            Some(Value::Sequence(items)) => {
                let mut names = Vec::new();
                for (j, item) in items.iter().enumerate() {
                    match scalar_text(item) {
                        Some(s) => names.push(s),
                        None => {
                            let l = at(self, "inputs");
                            self.problem(
                                &format!("{label}.inputs[{j}]"),
                                l,
                                format!("expected an operator id, got {}", kind(item)),
                            )
                        }
                    }
                }
                raw.inputs = Some(names);
            }
            Some(other) => {
                let l = at(self, "inputs");
                self.problem(
                    &format!("{label}.inputs"),
                    l,
                    format!("expected a list of operator ids, got {}", kind(other)),
                )
            }
        }
        if let Some(par) = m.get("parallelism") {
            let l = at(self, "parallelism");
            match bounded(par) {
                Ok(n) => raw.parallelism = Some(n),
                Err(msg) => self.problem(&format!("{label}.parallelism"), l, msg),
            }
        }
        let type_name = match m.get("type") {
            None => {
                self.problem(
                    &label,
                    line,
                    format!(
                        "missing `type:`; valid types: {}",
                        crate::operators::all_types().join(", ")
                    ),
                );
                return raw;
            }
            Some(t) => match t.as_str() {
                Some(s) => s.to_string(),
                None => {
                    let l = at(self, "type");
                    self.problem(
                        &format!("{label}.type"),
                        l,
                        format!("expected a type name, got {}", kind(t)),
                    );
                    return raw;
                }
            },
        };
        let has_inputs = raw.inputs.is_some();
        let body: Mapping = m
            .iter()
            .filter(|(k, _)| !k.as_str().is_some_and(|k| OPERATOR_KEYS.contains(&k)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        raw.type_name = Some(type_name.clone());
        match OperatorConfig::parse(&type_name, has_inputs, body) {
            Ok(c) => {
                raw.role = Some(c.role());
                raw.config = Some(c);
            }
            Err(problems) => {
                raw.role = role_of(&type_name, has_inputs);
                for pr in problems {
                    self.operator_problem(&raw, &pr.field, pr.message);
                }
            }
        }
        raw
    }

    /// A problem about setting `field` (`fields.one`, empty for the whole operator) of `op`.
    pub fn operator_problem(&mut self, op: &RawOperator, field: &str, message: String) {
        let line = self.lines.operator_field(op.index, field).or(op.line);
        let path = if field.is_empty() {
            op.label()
        } else {
            format!("{}.{field}", op.label())
        };
        self.problem(&path, line, message);
    }
}

/// Keys whose value is a local path (or a URI): a relative path in a pipeline file means
/// relative to that file's directory, as for operator settings.
const PATH_KEYS: &[&str] = &[
    "execution.checkpointing.dir",
    "execution.checkpointing.savepoint-dir",
    "execution.state-recovery.path",
    "rest.auth.token-file",
];

/// The value of a path key resolved against `base_dir` (the pipeline file's directory), made
/// absolute; `None` when it needs nothing (another key, an absolute path, a URI such as
/// `s3://b/p` or `file:///x`, or `latest`).
pub fn resolve_path_setting(key: &str, value: &str, base_dir: &Path) -> Option<String> {
    let canonical = crate::config::keys::lookup(key)?.canonical;
    let v = value.trim();
    let is_uri = v.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
    });
    if !PATH_KEYS.contains(&canonical)
        || v.is_empty()
        || is_uri
        || v.starts_with("file:")
        || Path::new(v).is_absolute()
        || (canonical == "execution.state-recovery.path" && v == "latest")
    {
        return None;
    }
    let joined = base_dir.join(v);
    let absolute = std::path::absolute(&joined).unwrap_or(joined);
    Some(absolute.display().to_string())
}

/// The role a type name has, whatever its settings say.
fn role_of(type_name: &str, has_inputs: bool) -> Option<Role> {
    use crate::operators::{SINK_TYPES, SOURCE_TYPES, TRANSFORM_TYPES};
    // `file` and `kafka` are both: a source without inputs, a sink with them.
    if SOURCE_TYPES.contains(&type_name) && SINK_TYPES.contains(&type_name) {
        return Some(if has_inputs { Role::Sink } else { Role::Source });
    }
    if SOURCE_TYPES.contains(&type_name) {
        Some(Role::Source)
    } else if TRANSFORM_TYPES.contains(&type_name) {
        Some(Role::Transform)
    } else if SINK_TYPES.contains(&type_name) {
        Some(Role::Sink)
    } else {
        None
    }
}

/// A parallelism value: an integer in 1..=32768.
fn bounded(v: &Value) -> Result<u32, String> {
    match v.as_u64() {
        Some(n) if (1..=MAX_PARALLELISM_BOUND).contains(&n) => Ok(n as u32),
        _ => Err(format!(
            "expected a whole number from 1 to {MAX_PARALLELISM_BOUND}, got {}",
            scalar_text(v).unwrap_or_else(|| kind(v).to_string())
        )),
    }
}

/// A scalar as the text it stands for (`10 s`, `3`, `true`); `None` for lists, maps, null.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Tagged(t) => scalar_text(&t.value),
        Value::Null | Value::Sequence(_) | Value::Mapping(_) => None,
    }
}

/// What kind of YAML value this is, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Nested `config:` mappings as flat dotted keys: (key, last segment, value text).
fn flatten(prefix: &str, m: &Mapping, out: &mut Vec<(String, String, Option<String>)>) {
    for (k, v) in m {
        let seg = scalar_text(k).unwrap_or_default();
        let key = if prefix.is_empty() {
            seg.clone()
        } else {
            format!("{prefix}.{seg}")
        };
        match v {
            Value::Mapping(inner) => flatten(&key, inner, out),
            v => out.push((key, seg, scalar_text(v))),
        }
    }
}

/// Finds the line of a key in the pipeline text, for messages. A heuristic over block-style
/// YAML (what people write); flow style falls back to the enclosing entry's line.
///
/// Built in one pass over the text, each lookup a hash probe: a file of many keys or
/// operators costs time linear in its size, not in its size squared.
#[derive(Debug, Clone, Default)]
pub struct LineIndex {
    /// 1-based line of each top-level key (the first, when written twice).
    top: HashMap<String, usize>,
    /// Per top-level key: the first line of each key written inside its block.
    blocks: HashMap<String, HashMap<String, usize>>,
    /// 1-based start line of each `operators:` list item.
    op_starts: Vec<usize>,
    /// Per operator: the lines of each key written within it, ascending.
    op_keys: Vec<HashMap<String, Vec<usize>>>,
}

fn indent(l: &str) -> usize {
    l.len() - l.trim_start().len()
}

fn is_content(l: &str) -> bool {
    let t = l.trim_start();
    !t.is_empty() && !t.starts_with('#')
}

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        let mut idx = LineIndex::default();
        let mut block: Option<&str> = None;
        let mut operators_start = None;
        for (i, l) in text.lines().enumerate() {
            if !is_content(l) {
                continue;
            }
            let key = yaml_key_of(l);
            if indent(l) == 0 && !l.starts_with('-') {
                block = key;
                if let Some(k) = key {
                    idx.top.entry(k.to_string()).or_insert(i + 1);
                    if k == "operators" && operators_start.is_none() {
                        operators_start = Some(i);
                    }
                }
                continue;
            }
            if let (Some(b), Some(k)) = (block, key) {
                idx.blocks
                    .entry(b.to_string())
                    .or_default()
                    .entry(k.to_string())
                    .or_insert(i + 1);
            }
        }
        if let Some(start) = operators_start {
            idx.index_operators(text, start);
        }
        idx
    }

    /// Operator items of the `operators:` block that starts at 0-based line `start`, and the
    /// keys within each.
    fn index_operators(&mut self, text: &str, start: usize) {
        let mut item_indent = None;
        for (i, l) in text.lines().enumerate().skip(start + 1) {
            if !is_content(l) {
                continue;
            }
            if indent(l) == 0 && !l.starts_with('-') {
                break;
            }
            let t = l.trim_start();
            if t == "-" || t.starts_with("- ") {
                let ind = indent(l);
                if *item_indent.get_or_insert(ind) == ind {
                    self.op_starts.push(i + 1);
                    self.op_keys.push(HashMap::new());
                }
            }
            if let (Some(keys), Some(k)) = (self.op_keys.last_mut(), yaml_key_of(l)) {
                keys.entry(k.to_string()).or_default().push(i + 1);
            }
        }
    }

    /// Line of a top-level `key:`.
    pub fn top_key(&self, key: &str) -> Option<usize> {
        self.top.get(key).copied()
    }

    /// Line of `key:` inside the top-level block `block:` (else the block's own line).
    pub fn block_key(&self, block: &str, key: &str) -> Option<usize> {
        let start = self.top_key(block)?;
        self.blocks
            .get(block)
            .and_then(|keys| keys.get(key))
            .copied()
            .or(Some(start))
    }

    pub fn operator_start(&self, index: usize) -> Option<usize> {
        self.op_starts.get(index).copied()
    }

    /// Line of `key:` within operator `index`, at or after line `from`.
    fn operator_key_from(&self, index: usize, key: &str, from: usize) -> Option<usize> {
        let lines = self.op_keys.get(index)?.get(key)?;
        let at = lines.partition_point(|&l| l < from);
        lines.get(at).copied()
    }

    pub fn operator_key(&self, index: usize, key: &str) -> Option<usize> {
        self.operator_key_from(index, key, 0)
    }

    /// Line of a setting path (`fields.one`, `inputs[0]`) within operator `index`.
    pub fn operator_field(&self, index: usize, path: &str) -> Option<usize> {
        let mut line = None;
        for seg in path.split('.') {
            let seg = seg.split('[').next().unwrap_or(seg);
            if seg.is_empty() {
                continue;
            }
            match self.operator_key_from(index, seg, line.unwrap_or(0)) {
                Some(l) => line = Some(l),
                None => break,
            }
        }
        line
    }
}
