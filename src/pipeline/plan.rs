//! Execution plan: which operators run together in one task (chains), how records cross
//! between tasks (exchanges) and how many subtasks each task runs as.
//!
//! [`Plan::build`] turns a validated [`Pipeline`] into a [`Plan`]; [`Plan::from_vertices`] does
//! the same from plain [`Vertex`] values, which is how tests plug in their own operators. A
//! vertex carries a [`Factory`] that builds one subtask of its operator; for a pipeline the
//! factory is the operator catalogue (`SourceConfig::build`, `TransformConfig::build`,
//! `SinkConfig::build`).
//!
//! This module decides; it must not run anything, open files or spawn tasks.
//!
//! Rules (Flink's, docs/architecture.md#key-groups-and-rescaling):
//! - parallelism of an operator = its own `parallelism:` > what the operator requires
//!   (`socket`: 1) > the job default;
//! - max parallelism = the pipeline's, else Flink's default for the largest parallelism; it must
//!   not be below any operator's parallelism;
//! - an edge into a keyed operator is a hash exchange by key group; otherwise forward when both
//!   sides have the same parallelism, else rebalance (round-robin batches);
//! - a forward edge that is the upstream's only output and the downstream's only input is
//!   chained: both operators run in one task, one calling the other. A hash edge between two
//!   operators of parallelism 1 is chained too: with one subtask every key group lands on it,
//!   and the keyed operator hashes its keys itself anyway.

use crate::operators::task_source::TaskSource;
use crate::operators::{
    BuildContext, Operator, OperatorConfig, OperatorError, SinkConfig, SourceConfig,
    TransformConfig,
};
use crate::pipeline::{OperatorId, OperatorNode, Pipeline};
use crate::record::Schema;
use crate::state::keygroup::{default_max_parallelism, UPPER_BOUND_MAX_PARALLELISM};
use crate::state::RestoredBlob;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Builds one source subtask; the restored state (its position, or at another parallelism
/// every old subtask's) is where a restored job resumes it (`None`: from the start).
pub type SourceFactory = Arc<
    dyn Fn(&BuildContext, Option<&[RestoredBlob]>) -> Result<TaskSource, OperatorError>
        + Send
        + Sync,
>;
/// Builds one transform or sink subtask (its input schema is known to the factory).
pub type OperatorFactory =
    Arc<dyn Fn(&BuildContext) -> Result<Box<dyn Operator>, OperatorError> + Send + Sync>;

/// How to build a subtask of an operator.
#[derive(Clone)]
pub enum Factory {
    Source(SourceFactory),
    Operator(OperatorFactory),
}

impl Factory {
    /// The catalogue's factory for an operator config reading records of `input`.
    pub fn catalogue(config: &OperatorConfig, input: Option<&Schema>) -> Factory {
        let input = input.cloned().unwrap_or_default();
        match config {
            OperatorConfig::Source(c) => {
                let c: SourceConfig = c.clone();
                Factory::Source(Arc::new(move |ctx, position| c.build_task(ctx, position)))
            }
            OperatorConfig::Transform(c) => {
                let c: TransformConfig = c.clone();
                Factory::Operator(Arc::new(move |ctx| c.build(&input, ctx)))
            }
            OperatorConfig::Sink(c) => {
                let c: SinkConfig = c.clone();
                Factory::Operator(Arc::new(move |ctx| c.build(&input, ctx)))
            }
        }
    }
}

impl fmt::Debug for Factory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Factory::Source(_) => "Factory::Source",
            Factory::Operator(_) => "Factory::Operator",
        })
    }
}

/// One operator as the planner sees it: a node of the graph with what decides its placement.
#[derive(Debug, Clone)]
pub struct Vertex {
    pub id: OperatorId,
    /// Indices of the vertices it reads from; each one before this vertex.
    pub inputs: Vec<usize>,
    /// Its own `parallelism:`.
    pub parallelism: Option<u32>,
    /// What the operator itself requires (`socket`: 1).
    pub required_parallelism: Option<u32>,
    /// For a keyed operator, the field of its input it is keyed by.
    pub key_field: Option<String>,
    pub keyed: bool,
    pub input_schema: Option<Schema>,
    pub output_schema: Schema,
    pub factory: Factory,
}

impl Vertex {
    /// The vertex of a validated pipeline operator, built by the catalogue.
    pub fn from_node(node: &OperatorNode) -> Vertex {
        let spec = node.config.spec();
        Vertex {
            id: node.id.clone(),
            inputs: node.inputs.clone(),
            parallelism: node.parallelism,
            required_parallelism: spec.required_parallelism(),
            key_field: spec.key_field().map(str::to_owned),
            keyed: spec.is_keyed(),
            input_schema: node.input_schema.clone(),
            output_schema: node.output_schema.clone(),
            factory: Factory::catalogue(&node.config, node.input_schema.as_ref()),
        }
    }
}

/// How records cross from one task to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exchange {
    /// Subtask i feeds subtask i (same parallelism).
    Forward,
    /// Whole batches round-robin over the downstream subtasks.
    Rebalance,
    /// Each record to the subtask owning its key's key group.
    Hash {
        key_field: String,
        /// Column of `key_field` in the records crossing.
        key_column: usize,
    },
}

impl fmt::Display for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exchange::Forward => f.write_str("forward"),
            Exchange::Rebalance => f.write_str("rebalance"),
            Exchange::Hash { key_field, .. } => write!(f, "hash({key_field})"),
        }
    }
}

/// One operator inside a task's chain.
#[derive(Debug, Clone)]
pub struct PlanOperator {
    pub id: OperatorId,
    pub factory: Factory,
}

/// An input of a task: the task it reads from and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInput {
    /// Index into [`Plan::tasks`].
    pub from: usize,
    pub exchange: Exchange,
}

/// A chain of operators run as `parallelism` subtasks, each calling its operators in turn.
#[derive(Debug, Clone)]
pub struct PlanTask {
    pub parallelism: u32,
    /// In chain order: the first reads the task's inputs, the last feeds its outputs.
    pub operators: Vec<PlanOperator>,
    /// Empty for a task that starts with a source.
    pub inputs: Vec<TaskInput>,
}

impl PlanTask {
    /// `source -> split`, as Flink names chained tasks.
    pub fn name(&self) -> String {
        let ids: Vec<&str> = self.operators.iter().map(|o| o.id.0.as_str()).collect();
        ids.join(" -> ")
    }

    pub fn is_source(&self) -> bool {
        matches!(
            self.operators.first().map(|o| &o.factory),
            Some(Factory::Source(_))
        )
    }
}

/// The execution plan of one job: tasks in topological order (every input before its readers).
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub max_parallelism: u32,
    /// Relative paths in operator settings resolve against this directory.
    pub base_dir: PathBuf,
    pub tasks: Vec<PlanTask>,
}

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("the pipeline has no operators")]
    Empty,
    #[error(
        "operator \"{operator}\": parallelism {parallelism} is not within bounds 1..={UPPER_BOUND_MAX_PARALLELISM} \
         (Flink: \"Operator parallelism not within bounds: {parallelism}\"); set `parallelism:` or -p to a value in range"
    )]
    ParallelismOutOfBounds { operator: String, parallelism: u32 },
    #[error(
        "max-parallelism {0} is not within bounds 1..={UPPER_BOUND_MAX_PARALLELISM}; \
         set `max-parallelism:` (pipeline.max-parallelism) to a value in range"
    )]
    MaxParallelismOutOfBounds(u32),
    #[error(
        "operator \"{operator}\": the parallelism ({parallelism}) is higher than the max parallelism \
         ({max_parallelism}); lower the parallelism or raise `max-parallelism:` (pipeline.max-parallelism)"
    )]
    MaxParallelismTooLow {
        operator: String,
        parallelism: u32,
        max_parallelism: u32,
    },
    #[error(
        "operator \"{operator}\": keyed by field \"{field}\", which its input {schema} does not have"
    )]
    UnknownKeyField {
        operator: String,
        field: String,
        schema: String,
    },
    #[error(
        "bug: operator \"{operator}\" is keyed but names no key field (OperatorSpec::key_field)"
    )]
    MissingKeyField { operator: String },
    #[error("bug: operator \"{operator}\": {message}")]
    Graph { operator: String, message: String },
}

impl Plan {
    /// The plan of a validated pipeline, operators built by the catalogue.
    ///
    /// `default_parallelism` is `parallelism.default` (or `-p`); `max_parallelism` is
    /// `pipeline.max-parallelism` when set.
    pub fn build(
        pipeline: &Pipeline,
        default_parallelism: u32,
        max_parallelism: Option<u32>,
    ) -> Result<Plan, PlanError> {
        let vertices: Vec<Vertex> = pipeline.operators.iter().map(Vertex::from_node).collect();
        let base_dir = pipeline
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        Plan::from_vertices(
            &pipeline.name,
            base_dir,
            vertices,
            default_parallelism,
            max_parallelism,
        )
    }

    /// The plan of a graph of vertices (in topological order).
    pub fn from_vertices(
        name: &str,
        base_dir: PathBuf,
        vertices: Vec<Vertex>,
        default_parallelism: u32,
        max_parallelism: Option<u32>,
    ) -> Result<Plan, PlanError> {
        if vertices.is_empty() {
            return Err(PlanError::Empty);
        }
        check_graph(&vertices)?;
        let parallelism = parallelisms(&vertices, default_parallelism)?;
        let max_parallelism = max_parallelism_of(&vertices, &parallelism, max_parallelism)?;

        let mut readers = vec![0usize; vertices.len()];
        for v in &vertices {
            for &i in &v.inputs {
                readers[i] += 1;
            }
        }

        // Chains grow in topological order: a vertex joins its single input's chain when that
        // input is the chain's tail and the edge may be chained, else it starts a new task.
        let mut task_of = vec![usize::MAX; vertices.len()];
        let mut tail_of_task: Vec<usize> = Vec::new();
        let mut tasks: Vec<PlanTask> = Vec::new();
        for (i, v) in vertices.iter().enumerate() {
            let chained_to = match v.inputs.as_slice() {
                &[u] if readers[u] == 1
                    && tail_of_task[task_of[u]] == u
                    && chainable(&vertices, &parallelism, u, i) =>
                {
                    Some(task_of[u])
                }
                _ => None,
            };
            let op = PlanOperator {
                id: v.id.clone(),
                factory: v.factory.clone(),
            };
            match chained_to {
                Some(t) => {
                    tasks[t].operators.push(op);
                    tail_of_task[t] = i;
                    task_of[i] = t;
                }
                None => {
                    let mut inputs = Vec::with_capacity(v.inputs.len());
                    for &u in &v.inputs {
                        inputs.push(TaskInput {
                            from: task_of[u],
                            exchange: exchange(&vertices, &parallelism, u, i)?,
                        });
                    }
                    task_of[i] = tasks.len();
                    tail_of_task.push(i);
                    tasks.push(PlanTask {
                        parallelism: parallelism[i],
                        operators: vec![op],
                        inputs,
                    });
                }
            }
        }
        Ok(Plan {
            name: name.to_owned(),
            max_parallelism,
            base_dir,
            tasks,
        })
    }

    /// One line per task, for logs: `task 1 "count -> print" x2 <- hash(word) from task 0`.
    pub fn describe(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "plan of \"{}\" (max parallelism {}):",
            self.name, self.max_parallelism
        )?;
        for (i, t) in self.tasks.iter().enumerate() {
            write!(f, "  task {i} \"{}\" x{}", t.name(), t.parallelism)?;
            for (k, input) in t.inputs.iter().enumerate() {
                let sep = if k == 0 { " <- " } else { ", " };
                write!(f, "{sep}{} from task {}", input.exchange, input.from)?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

fn check_graph(vertices: &[Vertex]) -> Result<(), PlanError> {
    for (i, v) in vertices.iter().enumerate() {
        let bug = |message: &str| PlanError::Graph {
            operator: v.id.0.clone(),
            message: message.to_owned(),
        };
        if v.inputs.iter().any(|&u| u >= i) {
            return Err(bug(
                "an input is not before it (operators must be in topological order)",
            ));
        }
        match (&v.factory, v.inputs.is_empty()) {
            (Factory::Source(_), false) => return Err(bug("a source cannot have inputs")),
            (Factory::Operator(_), true) => return Err(bug("a transform or sink needs inputs")),
            _ => {}
        }
    }
    Ok(())
}

fn parallelisms(vertices: &[Vertex], default: u32) -> Result<Vec<u32>, PlanError> {
    vertices
        .iter()
        .map(|v| {
            let p = v.parallelism.or(v.required_parallelism).unwrap_or(default);
            if p == 0 || p > UPPER_BOUND_MAX_PARALLELISM {
                return Err(PlanError::ParallelismOutOfBounds {
                    operator: v.id.0.clone(),
                    parallelism: p,
                });
            }
            Ok(p)
        })
        .collect()
}

fn max_parallelism_of(
    vertices: &[Vertex],
    parallelism: &[u32],
    given: Option<u32>,
) -> Result<u32, PlanError> {
    let highest = parallelism.iter().copied().max().unwrap_or(1);
    let max = match given {
        Some(m) if m == 0 || m > UPPER_BOUND_MAX_PARALLELISM => {
            return Err(PlanError::MaxParallelismOutOfBounds(m))
        }
        Some(m) => m,
        None => default_max_parallelism(highest),
    };
    if let Some(i) = parallelism.iter().position(|&p| p > max) {
        return Err(PlanError::MaxParallelismTooLow {
            operator: vertices[i].id.0.clone(),
            parallelism: parallelism[i],
            max_parallelism: max,
        });
    }
    Ok(max)
}

fn chainable(vertices: &[Vertex], parallelism: &[u32], up: usize, down: usize) -> bool {
    if parallelism[up] != parallelism[down] {
        return false;
    }
    !vertices[down].keyed || parallelism[down] == 1
}

fn exchange(
    vertices: &[Vertex],
    parallelism: &[u32],
    up: usize,
    down: usize,
) -> Result<Exchange, PlanError> {
    let v = &vertices[down];
    if v.keyed {
        let field = v
            .key_field
            .as_ref()
            .ok_or_else(|| PlanError::MissingKeyField {
                operator: v.id.0.clone(),
            })?;
        let schema = &vertices[up].output_schema;
        let key_column = schema
            .index_of(field)
            .ok_or_else(|| PlanError::UnknownKeyField {
                operator: v.id.0.clone(),
                field: field.clone(),
                schema: schema.to_string(),
            })?;
        return Ok(Exchange::Hash {
            key_field: field.clone(),
            key_column,
        });
    }
    Ok(if parallelism[up] == parallelism[down] {
        Exchange::Forward
    } else {
        Exchange::Rebalance
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::DataType;

    fn source(id: &str) -> Vertex {
        Vertex {
            id: OperatorId(id.into()),
            inputs: vec![],
            parallelism: None,
            required_parallelism: None,
            key_field: None,
            keyed: false,
            input_schema: None,
            output_schema: Schema::new([("line", DataType::Str)]),
            factory: Factory::Source(Arc::new(|_, _| Err(OperatorError::Config("test".into())))),
        }
    }

    fn op(id: &str, inputs: &[usize]) -> Vertex {
        Vertex {
            id: OperatorId(id.into()),
            inputs: inputs.to_vec(),
            parallelism: None,
            required_parallelism: None,
            key_field: None,
            keyed: false,
            input_schema: Some(Schema::new([("word", DataType::Str)])),
            output_schema: Schema::new([("word", DataType::Str), ("n", DataType::Int)]),
            factory: Factory::Operator(Arc::new(|_| Err(OperatorError::Config("test".into())))),
        }
    }

    fn keyed(id: &str, inputs: &[usize], field: &str) -> Vertex {
        Vertex {
            keyed: true,
            key_field: Some(field.into()),
            ..op(id, inputs)
        }
    }

    fn plan(vs: Vec<Vertex>, p: u32) -> Plan {
        Plan::from_vertices("t", PathBuf::from("."), vs, p, None).expect("plan")
    }

    fn names(p: &Plan) -> Vec<String> {
        p.tasks.iter().map(PlanTask::name).collect()
    }

    fn wordcount() -> Vec<Vertex> {
        let mut split = op("split", &[0]);
        split.output_schema = Schema::new([("word", DataType::Str)]);
        vec![
            source("source"),
            split,
            keyed("count", &[1], "word"),
            op("print", &[2]),
        ]
    }

    #[test]
    fn wordcount_at_parallelism_1_is_one_task() {
        let p = plan(wordcount(), 1);
        assert_eq!(names(&p), vec!["source -> split -> count -> print"]);
        assert!(p.tasks[0].inputs.is_empty());
        assert!(p.tasks[0].is_source());
        assert_eq!(p.max_parallelism, 128);
    }

    #[test]
    fn wordcount_at_parallelism_2_hashes_between_two_chains() {
        let p = plan(wordcount(), 2);
        assert_eq!(names(&p), vec!["source -> split", "count -> print"]);
        assert_eq!(
            p.tasks[1].inputs,
            vec![TaskInput {
                from: 0,
                exchange: Exchange::Hash {
                    key_field: "word".into(),
                    key_column: 0
                }
            }]
        );
        assert_eq!(p.tasks[1].parallelism, 2);
        let text = p.to_string();
        assert!(
            text.contains("task 1 \"count -> print\" x2 <- hash(word) from task 0"),
            "{text}"
        );
    }

    #[test]
    fn different_parallelism_rebalances_and_required_parallelism_applies() {
        let mut s = source("socket");
        s.required_parallelism = Some(1);
        let p = plan(vec![s, op("split", &[0]), op("print", &[1])], 3);
        assert_eq!(names(&p), vec!["socket", "split -> print"]);
        assert_eq!(p.tasks[0].parallelism, 1);
        assert_eq!(p.tasks[1].parallelism, 3);
        assert_eq!(p.tasks[1].inputs[0].exchange, Exchange::Rebalance);
    }

    #[test]
    fn own_parallelism_wins_over_required_and_default() {
        let mut s = source("src");
        s.required_parallelism = Some(1);
        s.parallelism = Some(2);
        let mut sink = op("print", &[0]);
        sink.parallelism = Some(4);
        let p = plan(vec![s, sink], 3);
        assert_eq!(p.tasks[0].parallelism, 2);
        assert_eq!(p.tasks[1].parallelism, 4);
    }

    #[test]
    fn fan_out_and_union_are_not_chained() {
        // a -> b, a -> c, (b, c) -> d
        let vs = vec![source("a"), op("b", &[0]), op("c", &[0]), op("d", &[1, 2])];
        let p = plan(vs, 2);
        assert_eq!(names(&p), vec!["a", "b", "c", "d"]);
        assert_eq!(p.tasks[1].inputs[0].exchange, Exchange::Forward);
        assert_eq!(
            p.tasks[3].inputs.iter().map(|i| i.from).collect::<Vec<_>>(),
            vec![1, 2]
        );
    }

    #[test]
    fn keyed_with_equal_parallelism_above_1_is_not_chained() {
        let vs = vec![source("a"), keyed("k", &[0], "line")];
        let p = plan(vs, 4);
        assert_eq!(names(&p), vec!["a", "k"]);
        assert!(matches!(
            p.tasks[1].inputs[0].exchange,
            Exchange::Hash { key_column: 0, .. }
        ));
    }

    #[test]
    fn max_parallelism_default_given_and_errors() {
        let p = plan(vec![source("a"), op("b", &[0])], 200);
        assert_eq!(p.max_parallelism, 512);
        let p = Plan::from_vertices("t", ".".into(), vec![source("a")], 2, Some(4)).unwrap();
        assert_eq!(p.max_parallelism, 4);
        let err = Plan::from_vertices("t", ".".into(), vec![source("a")], 8, Some(4)).unwrap_err();
        assert_eq!(
            err,
            PlanError::MaxParallelismTooLow {
                operator: "a".into(),
                parallelism: 8,
                max_parallelism: 4
            }
        );
        assert!(err.to_string().contains("max-parallelism"));
        let err = Plan::from_vertices("t", ".".into(), vec![source("a")], 1, Some(40000));
        assert_eq!(
            err.unwrap_err(),
            PlanError::MaxParallelismOutOfBounds(40000)
        );
        let err = Plan::from_vertices("t", ".".into(), vec![source("a")], 0, None).unwrap_err();
        assert!(err.to_string().contains("not within bounds: 0"), "{err}");
    }

    #[test]
    fn keyed_by_an_unknown_field_is_an_error() {
        let vs = vec![source("a"), keyed("k", &[0], "wrod")];
        let err = Plan::from_vertices("t", ".".into(), vs, 2, None).unwrap_err();
        assert!(matches!(err, PlanError::UnknownKeyField { ref field, .. } if field == "wrod"));
    }

    #[test]
    fn bad_graphs_are_bugs_not_panics() {
        let vs = vec![op("b", &[0])];
        let err = Plan::from_vertices("t", ".".into(), vs, 1, None).unwrap_err();
        assert!(err.to_string().starts_with("bug:"), "{err}");
        assert_eq!(
            Plan::from_vertices("t", ".".into(), vec![], 1, None).unwrap_err(),
            PlanError::Empty
        );
    }
}
