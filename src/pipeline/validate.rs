//! Pipeline validation: ids, inputs by role, sinks read from, cycles, union schemas, field
//! references against what the upstream operator produces, parallelism. Every problem is
//! reported at once, each with its path and line; a problem upstream does not cascade into
//! made-up problems downstream (an operator whose input schema is unknown is not checked).
//!
//! It must not run anything nor judge configuration values (the config module does).

use crate::operators::{did_you_mean_suffix, Role};
use crate::pipeline::spec::{
    parse_raw, PipelineErrors, PipelineProblem, RawOperator, RawPipeline, MAX_PIPELINE_BYTES,
};
use crate::pipeline::{OperatorId, OperatorNode, Pipeline};
use crate::record::Schema;
use crate::textfile::read_text;
use std::collections::HashMap;
use std::path::Path;

/// Read, parse and validate the pipeline file at `path`.
pub fn load(path: &Path) -> Result<Pipeline, PipelineErrors> {
    let text = read_text(path, MAX_PIPELINE_BYTES).map_err(|e| PipelineErrors {
        file: path.to_path_buf(),
        problems: vec![PipelineProblem {
            path: String::new(),
            line: None,
            column: None,
            message: format!("cannot read the pipeline file: {e}"),
        }],
    })?;
    parse(&text, path)
}

/// Parse and validate pipeline `text`, read from `path` (for messages and relative paths).
pub fn parse(text: &str, path: &Path) -> Result<Pipeline, PipelineErrors> {
    let raw = parse_raw(text, path)?;
    validate(raw, path)
}

/// Whether an id is made of `[A-Za-z0-9_.-]`.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn validate(mut raw: RawPipeline, path: &Path) -> Result<Pipeline, PipelineErrors> {
    let ops = std::mem::take(&mut raw.operators);
    let ids = check_ids(&mut raw, &ops);
    let edges = resolve_inputs(&mut raw, &ops, &ids);
    let order = topological_order(&mut raw, &ops, &edges);
    let nodes = check_schemas(&mut raw, &ops, &edges, &order);

    if !raw.problems.is_empty() {
        // File order reads best; problems without a line go last.
        raw.problems
            .sort_by_key(|p| (p.line.is_none(), p.line.unwrap_or(0)));
        return Err(PipelineErrors {
            file: path.to_path_buf(),
            problems: raw.problems,
        });
    }
    Ok(Pipeline {
        name: raw.name,
        path: path.to_path_buf(),
        settings: raw.settings,
        operators: nodes,
        allow_non_restored_state: raw.allow_non_restored_state,
    })
}

/// Unique ids with the right characters; the map id → index of its first operator.
fn check_ids(raw: &mut RawPipeline, ops: &[RawOperator]) -> HashMap<String, usize> {
    let mut ids: HashMap<String, usize> = HashMap::new();
    for op in ops {
        let Some(id) = &op.id else { continue };
        let line = raw.lines.operator_key(op.index, "id").or(op.line);
        if !valid_id(id) {
            raw.problem(
                &format!("{}.id", op.label()),
                line,
                "an id may hold only letters, digits, `_`, `.` and `-`".to_string(),
            );
        }
        if let Some(&first) = ids.get(id) {
            raw.problem(
                &format!("{}.id", op.label()),
                line,
                format!(
                    "duplicate id \"{id}\", already used by operators[{first}]; ids must be unique (an id is the operator's state identity)"
                ),
            );
        } else {
            ids.insert(id.clone(), op.index);
        }
    }
    ids
}

/// The inputs of each operator as indices, with problems for unknown ids, sinks read from
/// and inputs missing or present against the operator's role.
fn resolve_inputs(
    raw: &mut RawPipeline,
    ops: &[RawOperator],
    ids: &HashMap<String, usize>,
) -> Vec<Vec<usize>> {
    let mut known: Vec<&str> = ids.keys().map(String::as_str).collect();
    known.sort_unstable();
    let mut edges = vec![Vec::new(); ops.len()];
    // A hint compares the name with every id: only the first ones get one, so that checking
    // stays linear in the number of operators.
    let mut hints_left = 100usize;
    for op in ops {
        let type_name = op.type_name.as_deref().unwrap_or("operator");
        let inputs_line = raw.lines.operator_key(op.index, "inputs").or(op.line);
        match (op.role, &op.inputs) {
            (Some(Role::Source), Some(_)) => raw.problem(
                &format!("{}.inputs", op.label()),
                inputs_line,
                format!("a {type_name} source reads no inputs; remove `inputs:`"),
            ),
            (Some(role @ (Role::Transform | Role::Sink)), None) => raw.problem(
                &op.label(),
                op.line,
                format!(
                    "a {type_name} {role} needs `inputs:`, the ids of the operators it reads from"
                ),
            ),
            (Some(Role::Transform | Role::Sink), Some(list)) if list.is_empty() => raw.problem(
                &format!("{}.inputs", op.label()),
                inputs_line,
                format!("a {type_name} needs at least one input"),
            ),
            _ => {}
        }
        for (j, name) in op.inputs.iter().flatten().enumerate() {
            let path = format!("{}.inputs[{j}]", op.label());
            match ids.get(name) {
                None => {
                    let hint = match hints_left.checked_sub(1) {
                        Some(left) => {
                            hints_left = left;
                            did_you_mean_suffix(name, known.iter().copied())
                        }
                        None => String::new(),
                    };
                    raw.problem(
                        &path,
                        inputs_line,
                        format!("unknown operator id \"{name}\"{hint}"),
                    );
                }
                Some(&from) if ops[from].role == Some(Role::Sink) => raw.problem(
                    &path,
                    inputs_line,
                    format!(
                        "\"{name}\" is a {} sink, and nothing may read from a sink",
                        ops[from].type_name.as_deref().unwrap_or("")
                    ),
                ),
                Some(&from) => edges[op.index].push(from),
            }
        }
    }
    edges
}

/// Operators in an order where every input comes before its readers (Kahn's algorithm);
/// every cycle is reported with the ids along it, and its operators left out.
fn topological_order(
    raw: &mut RawPipeline,
    ops: &[RawOperator],
    edges: &[Vec<usize>],
) -> Vec<usize> {
    let n = ops.len();
    let mut indegree: Vec<usize> = edges.iter().map(Vec::len).collect();
    let mut readers = vec![Vec::new(); n];
    for (to, froms) in edges.iter().enumerate() {
        for &from in froms {
            readers[from].push(to);
        }
    }
    let mut ready: Vec<usize> = (0..n).rev().filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop() {
        order.push(i);
        for &r in readers[i].iter().rev() {
            indegree[r] -= 1;
            if indegree[r] == 0 {
                ready.push(r);
            }
        }
    }
    if order.len() < n {
        report_cycles(raw, ops, edges, &order);
    }
    order
}

/// Find the cycles among the operators Kahn's algorithm could not order (depth-first search
/// over inputs; a back edge closes a cycle).
fn report_cycles(
    raw: &mut RawPipeline,
    ops: &[RawOperator],
    edges: &[Vec<usize>],
    ordered: &[usize],
) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark = vec![Mark::New; ops.len()];
    for &i in ordered {
        mark[i] = Mark::Done;
    }
    let name = |i: usize| {
        ops[i]
            .id
            .clone()
            .unwrap_or_else(|| format!("operators[{i}]"))
    };
    for start in 0..ops.len() {
        if mark[start] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next input to visit).
        let mut stack = vec![(start, 0usize)];
        mark[start] = Mark::Open;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&from) = edges[node].get(*next) {
                *next += 1;
                match mark[from] {
                    Mark::New => {
                        mark[from] = Mark::Open;
                        stack.push((from, 0));
                    }
                    Mark::Open => {
                        // Stack holds readers before their inputs; the cycle, in data-flow
                        // order, runs from `node`'s input `from` … back to `from`.
                        let pos = stack.iter().position(|&(s, _)| s == from).unwrap_or(0);
                        let mut cycle: Vec<String> =
                            stack[pos..].iter().rev().map(|&(s, _)| name(s)).collect();
                        cycle.push(name(node));
                        cycle.dedup();
                        if cycle.first() != cycle.last() || cycle.len() == 1 {
                            cycle.push(cycle[0].clone());
                        }
                        let op = &ops[node];
                        let line = raw.lines.operator_key(op.index, "inputs").or(op.line);
                        raw.problem(
                            &format!("{}.inputs", op.label()),
                            line,
                            format!(
                                "cycle: {}; records must flow one way, from sources to sinks",
                                cycle.join(" → ")
                            ),
                        );
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
            }
        }
    }
}

/// Propagate schemas in topological order, checking field references, unions and
/// parallelism. Returns the validated nodes, in that order.
fn check_schemas(
    raw: &mut RawPipeline,
    ops: &[RawOperator],
    edges: &[Vec<usize>],
    order: &[usize],
) -> Vec<OperatorNode> {
    let mut output: Vec<Option<Schema>> = vec![None; ops.len()];
    // Whether each operator's records carry event time.
    let mut timed = vec![false; ops.len()];
    let mut position = vec![usize::MAX; ops.len()];
    let mut nodes = Vec::with_capacity(order.len());
    for &i in order {
        let op = &ops[i];
        check_parallelism(raw, op);
        let Some(config) = &op.config else { continue };
        let mut input_schema = match union_schema(raw, ops, op, &edges[i], &output) {
            Ok(s) => s,
            Err(()) => continue,
        };
        let mut input_timed = !edges[i].is_empty() && edges[i].iter().all(|&e| timed[e]);
        if let Some(tag) = config.spec().reads_side_output() {
            // The side output's records are those its operator read.
            let Some(e) = side_output_of(raw, ops, op, tag, &edges[i]) else {
                continue;
            };
            input_schema = nodes
                .get(position[e])
                .and_then(|n: &OperatorNode| n.input_schema.clone());
            input_timed = !edges[e].is_empty() && edges[e].iter().all(|&x| timed[x]);
        }
        if config.role() != Role::Source && input_schema.is_none() {
            continue;
        }
        let schema = match config.spec().output_schema(input_schema.as_ref()) {
            Ok(s) => s,
            Err(problems) => {
                for p in problems {
                    raw.operator_problem(op, &p.field, p.message);
                }
                continue;
            }
        };
        if config.spec().needs_event_time() && !input_timed {
            raw.operator_problem(
                op,
                "",
                format!(
                    "a {} on event time needs records that carry it: set `event-time:` on the \
                     source, add a `type: assign` step before it, or set `time: processing`",
                    config.type_name()
                ),
            );
            continue;
        }
        timed[i] = config.spec().makes_event_time(input_timed);
        let schema = if config.role() == Role::Sink {
            Schema::default()
        } else {
            schema
        };
        output[i] = Some(schema.clone());
        position[i] = nodes.len();
        nodes.push(OperatorNode {
            id: OperatorId(op.id.clone().unwrap_or_default()),
            config: config.clone(),
            inputs: edges[i].iter().map(|&e| position[e]).collect(),
            parallelism: op.parallelism,
            input_schema,
            output_schema: schema,
        });
    }
    nodes
}

/// The one input of a `side_output` operator reading side output `tag`, if it has that side
/// output; a problem otherwise.
fn side_output_of(
    raw: &mut RawPipeline,
    ops: &[RawOperator],
    op: &RawOperator,
    tag: &str,
    inputs: &[usize],
) -> Option<usize> {
    let &[e] = inputs else {
        raw.operator_problem(
            op,
            "inputs",
            "a side_output reads one operator: the one whose side output it is".into(),
        );
        return None;
    };
    let from = &ops[e];
    let tags = from
        .config
        .as_ref()
        .map_or(Vec::new(), |c| c.spec().side_outputs());
    if tags.contains(&tag) {
        return Some(e);
    }
    let name = from.id.as_deref().unwrap_or("");
    let message = if tags.is_empty() {
        format!(
            "\"{name}\" has no side output named \"{tag}\" (a window's late records go to one \
             with `late-output: {tag}`)"
        )
    } else {
        format!(
            "\"{name}\" has no side output named \"{tag}\"{} (its side outputs: {})",
            did_you_mean_suffix(tag, tags.iter().copied()),
            tags.join(", ")
        )
    };
    raw.operator_problem(op, "tag", message);
    None
}

/// The schema an operator reads: its inputs' output, which must agree for a union.
/// `Ok(None)` for a source or when an input's schema is unknown; `Err` after a problem.
fn union_schema(
    raw: &mut RawPipeline,
    ops: &[RawOperator],
    op: &RawOperator,
    inputs: &[usize],
    output: &[Option<Schema>],
) -> Result<Option<Schema>, ()> {
    let mut schemas = Vec::new();
    for &from in inputs {
        match &output[from] {
            Some(s) => schemas.push((from, s)),
            None => return Ok(None),
        }
    }
    let Some(&(first, first_schema)) = schemas.first() else {
        return Ok(None);
    };
    let differing: Vec<String> = schemas
        .iter()
        .filter(|(_, s)| *s != first_schema)
        .map(|&(from, s)| format!("\"{}\" gives {s}", ops[from].id.as_deref().unwrap_or("")))
        .collect();
    if differing.is_empty() {
        return Ok(Some(first_schema.clone()));
    }
    let line = raw.lines.operator_key(op.index, "inputs").or(op.line);
    raw.problem(
        &format!("{}.inputs", op.label()),
        line,
        format!(
            "a union needs inputs with equal schemas, but \"{}\" gives {first_schema} and {}",
            ops[first].id.as_deref().unwrap_or(""),
            differing.join(" and ")
        ),
    );
    Err(())
}

fn check_parallelism(raw: &mut RawPipeline, op: &RawOperator) {
    let (Some(config), Some(p)) = (&op.config, op.parallelism) else {
        return;
    };
    let line = raw.lines.operator_key(op.index, "parallelism").or(op.line);
    if let Some(required) = config.spec().required_parallelism() {
        if required != p {
            raw.problem(
                &format!("{}.parallelism", op.label()),
                line,
                format!(
                    "a {} runs with parallelism {required} only; remove `parallelism: {p}`",
                    config.type_name()
                ),
            );
        }
    }
    if let Some(max) = raw.max_parallelism {
        if p > max {
            raw.problem(
                &format!("{}.parallelism", op.label()),
                line,
                format!("parallelism {p} is above the pipeline's max-parallelism {max}"),
            );
        }
    }
}
