//! CEL expressions over a record's fields, shared by `map` and `filter`.
//!
//! An expression is compiled once, when the operator is checked or built, and sorted into
//! what it needs at run time: a literal becomes a constant, a bare field name a column copy,
//! and only the rest runs through the CEL interpreter, record by record. The result type is
//! inferred before anything runs (literal → its type, field → the field's type, otherwise one
//! evaluation with zero values, then with ones).
//!
//! It must not hand-parse expressions: CEL (the `cel` crate) is the language.

use crate::operators::{did_you_mean_suffix, OperatorError};
use crate::record::{Batch, Column, DataType, Schema};
use cel::common::ast::Expr as Ast;
use cel::{Context, Env, ExecutionError, Program, Value as Cel};
use std::sync::Arc;

/// A constant result.
#[derive(Debug, Clone, PartialEq)]
pub enum Constant {
    Str(Arc<[u8]>),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Constant {
    /// `n` copies, as a column (text shares the constant's buffer).
    pub fn column(&self, n: usize) -> Column {
        match self {
            Constant::Str(s) => Column::Str(crate::record::StrColumn {
                buf: s.clone(),
                spans: vec![
                    crate::record::Span {
                        start: 0,
                        len: s.len() as u32
                    };
                    n
                ],
            }),
            Constant::Int(v) => Column::Int(vec![*v; n]),
            Constant::Float(v) => Column::Float(vec![*v; n]),
            Constant::Bool(v) => Column::Bool(vec![*v; n]),
        }
    }
}

/// How an expression is computed.
pub enum Kind {
    Literal(Constant),
    /// A bare reference to input column `.0`.
    Field(usize),
    /// A CEL program reading the listed input fields (name, column).
    Program {
        program: Program,
        vars: Vec<(String, usize)>,
    },
}

/// One compiled expression with its result type.
pub struct Expr {
    pub text: String,
    pub kind: Kind,
    pub ty: DataType,
    env: Arc<Env>,
}

/// The type a CEL value maps to, if it fits a field.
fn value_type(v: &Cel) -> Option<DataType> {
    Some(match v {
        Cel::Int(_) | Cel::UInt(_) => DataType::Int,
        Cel::Float(_) => DataType::Float,
        Cel::String(_) | Cel::Bytes(_) => DataType::Str,
        Cel::Bool(_) => DataType::Bool,
        _ => return None,
    })
}

fn sample(ty: DataType, one: bool) -> Cel {
    match (ty, one) {
        (DataType::Str, false) => Cel::String(Arc::new(String::new())),
        (DataType::Str, true) => Cel::String(Arc::new("a".to_string())),
        (DataType::Int, o) => Cel::Int(o as i64),
        (DataType::Float, o) => Cel::Float(o as i64 as f64),
        (DataType::Bool, o) => Cel::Bool(o),
    }
}

/// The longest expression text compiled: ample for any condition a person writes, and it
/// bounds the parser's work.
pub const MAX_EXPR_LEN: usize = 4096;

/// The deepest expression tree run. CEL evaluates a tree by recursion on the task's own stack,
/// one frame per level; `1 + (2 + (3 + …))` of this depth fits in it with room to spare. (`&&`
/// and `||` chains are balanced trees: a thousand terms are ten levels.)
pub const MAX_EXPR_DEPTH: usize = 32;

/// Stack for compiling an expression. The CEL parser recurses once per nesting level and
/// parse-tree node, with large frames (a chain `1+1+…` of 2,000 terms takes some 60 MB in a
/// debug build): compiling runs on a thread of its own with this much stack (reserved, touched
/// only as deep as a text needs), so that no text can overflow a caller's stack.
const COMPILE_STACK: usize = 256 << 20;

type CompileJob = Box<dyn FnOnce() + Send>;

/// Runs `f` on the compile thread (started on first use, then kept: its stack pages stay
/// mapped, so ten thousand compiles cost no page faults). Where no thread can be started, `f`
/// runs on a fresh big stack on this thread instead.
fn on_compile_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    static THREAD: std::sync::OnceLock<Option<std::sync::mpsc::Sender<CompileJob>>> =
        std::sync::OnceLock::new();
    let sender = THREAD.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<CompileJob>();
        std::thread::Builder::new()
            .name("floe-cel-compile".into())
            .stack_size(COMPILE_STACK)
            .spawn(move || rx.into_iter().for_each(|job| job()))
            .ok()
            .map(|_| tx)
    });
    let bug = |_| "bug: the CEL compiler panicked on this expression; please report it".to_string();
    let Some(sender) = sender else {
        return stacker::grow(COMPILE_STACK, || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(bug)
        });
    };
    let (reply, answer) = std::sync::mpsc::sync_channel(1);
    let job: CompileJob = Box::new(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = reply.send(result);
    });
    sender
        .send(job)
        .map_err(|_| "bug: the CEL compile thread is gone".to_string())?;
    answer
        .recv()
        .map_err(|_| "bug: the CEL compile thread is gone".to_string())?
        .map_err(bug)
}

/// An expression as quoted in a message: a long one cut to its start.
fn clip(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// The standard CEL environment, built once: building it registers every standard function.
fn stdlib() -> Arc<Env> {
    static ENV: std::sync::OnceLock<Arc<Env>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib())).clone()
}

/// The depth of an expression tree, counted without recursion.
fn depth(root: &cel::common::ast::IdedExpr) -> usize {
    use cel::common::ast::{EntryExpr, IdedEntryExpr, IdedExpr};
    fn entries<'a>(list: &'a [IdedEntryExpr], out: &mut Vec<&'a IdedExpr>) {
        for e in list {
            match &e.expr {
                EntryExpr::MapEntry(me) => out.extend([&me.key, &me.value]),
                EntryExpr::StructField(f) => out.push(&f.value),
            }
        }
    }
    let mut deepest = 0;
    let mut stack = vec![(root, 1usize)];
    let mut children: Vec<&IdedExpr> = Vec::new();
    while let Some((node, d)) = stack.pop() {
        deepest = deepest.max(d);
        match &node.expr {
            Ast::Call(c) => {
                children.extend(c.target.as_deref());
                children.extend(&c.args);
            }
            Ast::Comprehension(c) => children.extend([
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ]),
            Ast::List(l) => children.extend(&l.elements),
            Ast::Map(m) => entries(&m.entries, &mut children),
            Ast::Struct(st) => entries(&st.entries, &mut children),
            Ast::Select(sel) => children.push(&sel.operand),
            Ast::Ident(_) | Ast::Literal(_) | Ast::Unspecified => {}
        }
        stack.extend(children.drain(..).map(|c| (c, d + 1)));
    }
    deepest
}

impl Expr {
    /// Compile `text` against the input `schema`; the error is a message for a person.
    pub fn compile(text: &str, schema: &Schema) -> Result<Expr, String> {
        if text.len() > MAX_EXPR_LEN {
            return Err(format!(
                "the expression is {} bytes long, above the limit of {MAX_EXPR_LEN}; split it over several operators",
                text.len()
            ));
        }
        // Also the sample evaluations below, and dropping a refused tree, run on the big stack.
        let (owned_text, owned_schema) = (text.to_string(), schema.clone());
        on_compile_thread(move || Self::compile_on_big_stack(&owned_text, &owned_schema))?
    }

    fn compile_on_big_stack(text: &str, schema: &Schema) -> Result<Expr, String> {
        let env = stdlib();
        let program = env.compile(text).map_err(|e| {
            let first = e.to_string();
            let first = first
                .lines()
                .next()
                .unwrap_or("")
                .replace("ERROR: <input>:", "at ");
            format!("invalid expression {:?}: {first}", clip(text))
        })?;
        let levels = depth(program.expression());
        if levels > MAX_EXPR_DEPTH {
            return Err(format!(
                "the expression nests {levels} levels deep, above the limit of {MAX_EXPR_DEPTH}; \
                 split it over several operators"
            ));
        }
        match &program.expression().expr {
            Ast::Literal(_) => {
                let ctx = Context::with_env(env.clone());
                let v = program
                    .execute(&ctx)
                    .map_err(|e| format!("cannot evaluate {text:?}: {e}"))?;
                let c = constant(&v)
                    .ok_or_else(|| format!("{text:?} is not a str, int, float or bool value"))?;
                let ty = match c {
                    Constant::Str(_) => DataType::Str,
                    Constant::Int(_) => DataType::Int,
                    Constant::Float(_) => DataType::Float,
                    Constant::Bool(_) => DataType::Bool,
                };
                return Ok(Expr {
                    text: text.to_string(),
                    kind: Kind::Literal(c),
                    ty,
                    env,
                });
            }
            Ast::Ident(name) => {
                if let Some(i) = schema.index_of(name) {
                    return Ok(Expr {
                        text: text.to_string(),
                        kind: Kind::Field(i),
                        ty: schema.fields[i].ty,
                        env,
                    });
                }
            }
            _ => {}
        }
        let refs = program.references();
        let vars: Vec<(String, usize)> = schema
            .fields
            .iter()
            .enumerate()
            .filter(|(_, f)| refs.has_variable(&f.name))
            .map(|(i, f)| (f.name.clone(), i))
            .collect();
        let try_with = |one: bool| {
            let mut ctx = Context::with_env(env.clone());
            for (name, i) in &vars {
                ctx.add_variable_from_value(name.clone(), sample(schema.fields[*i].ty, one));
            }
            program.execute(&ctx)
        };
        let value = match try_with(false).or_else(|_| try_with(true)) {
            Ok(v) => v,
            Err(ExecutionError::UndeclaredReference(name)) if **name == *text.trim() => {
                return Err(format!(
                    "\"{name}\" is not a field of the input {schema}{}",
                    did_you_mean_suffix(&name, schema.names())
                ))
            }
            Err(ExecutionError::UndeclaredReference(name)) => {
                return Err(format!(
                    "{text:?} reads \"{name}\", which is not a field of the input {schema}{}",
                    did_you_mean_suffix(&name, schema.names())
                ))
            }
            Err(e) => {
                return Err(format!(
                "cannot tell the type of {text:?}: evaluating it with sample values failed ({e}); \
                     write a simpler expression"
            ))
            }
        };
        let ty = value_type(&value).ok_or_else(|| {
            format!("{text:?} gives {value:?}; a field holds only str, int, float or bool")
        })?;
        Ok(Expr {
            text: text.to_string(),
            kind: Kind::Program { program, vars },
            ty,
            env,
        })
    }

    /// Evaluate the CEL program for every record of `batch` into a column of `self.ty`.
    /// Only for [`Kind::Program`]; the other kinds have their own fast paths.
    pub fn eval_column(&self, batch: &Batch) -> Result<Column, OperatorError> {
        let Kind::Program { program, vars } = &self.kind else {
            return Err(OperatorError::Config(
                "bug: eval_column on a non-program".into(),
            ));
        };
        let root = Context::with_env(self.env.clone());
        let mut col = ColumnOut::new(self.ty, batch.len());
        for row in 0..batch.len() {
            let mut ctx = root.new_inner_scope();
            for (name, i) in vars {
                ctx.add_variable_from_value(name.clone(), to_cel(&batch.columns[*i], row));
            }
            let v = program
                .execute(&ctx)
                .map_err(|e| self.data_error(batch, row, &e.to_string()))?;
            if !col.push(&v) {
                let got = value_type(&v).map_or("another type", DataType::name);
                return Err(self.data_error(
                    batch,
                    row,
                    &format!("gave {got} where {} was inferred", self.ty),
                ));
            }
        }
        Ok(col.finish())
    }

    fn data_error(&self, batch: &Batch, row: usize, what: &str) -> OperatorError {
        let values: Vec<String> = batch.row(row).iter().map(ToString::to_string).collect();
        OperatorError::Data(format!(
            "expression {:?} failed on record ({}): {what}",
            self.text,
            values.join(",")
        ))
    }
}

fn constant(v: &Cel) -> Option<Constant> {
    Some(match v {
        Cel::Int(i) => Constant::Int(*i),
        Cel::UInt(u) => Constant::Int(i64::try_from(*u).ok()?),
        Cel::Float(f) => Constant::Float(*f),
        Cel::Bool(b) => Constant::Bool(*b),
        Cel::String(s) => Constant::Str(Arc::from(s.as_bytes())),
        Cel::Bytes(b) => Constant::Str(Arc::from(b.as_slice())),
        _ => return None,
    })
}

fn to_cel(col: &Column, row: usize) -> Cel {
    match col {
        Column::Str(c) => Cel::String(Arc::new(String::from_utf8_lossy(c.get(row)).into_owned())),
        Column::Int(v) => Cel::Int(v[row]),
        Column::Float(v) => Cel::Float(v[row]),
        Column::Bool(v) => Cel::Bool(v[row]),
    }
}

/// A column being filled with CEL results of one type.
enum ColumnOut {
    Str(crate::record::StrColumnBuilder),
    Int(Vec<i64>),
    Float(Vec<f64>),
    Bool(Vec<bool>),
}

impl ColumnOut {
    fn new(ty: DataType, n: usize) -> Self {
        match ty {
            DataType::Str => {
                ColumnOut::Str(crate::record::StrColumnBuilder::with_capacity(n, n * 8))
            }
            DataType::Int => ColumnOut::Int(Vec::with_capacity(n)),
            DataType::Float => ColumnOut::Float(Vec::with_capacity(n)),
            DataType::Bool => ColumnOut::Bool(Vec::with_capacity(n)),
        }
    }

    /// Append `v`; false when it does not fit the column's type (an int widens to float).
    fn push(&mut self, v: &Cel) -> bool {
        match (self, v) {
            (ColumnOut::Str(b), Cel::String(s)) => b.push(s.as_bytes()),
            (ColumnOut::Str(b), Cel::Bytes(s)) => b.push(s),
            (ColumnOut::Int(c), Cel::Int(i)) => c.push(*i),
            (ColumnOut::Int(c), Cel::UInt(u)) => match i64::try_from(*u) {
                Ok(i) => c.push(i),
                Err(_) => return false,
            },
            (ColumnOut::Float(c), Cel::Float(f)) => c.push(*f),
            (ColumnOut::Float(c), Cel::Int(i)) => c.push(*i as f64),
            (ColumnOut::Bool(c), Cel::Bool(b)) => c.push(*b),
            _ => return false,
        }
        true
    }

    fn finish(self) -> Column {
        match self {
            ColumnOut::Str(b) => Column::Str(b.finish()),
            ColumnOut::Int(c) => Column::Int(c),
            ColumnOut::Float(c) => Column::Float(c),
            ColumnOut::Bool(c) => Column::Bool(c),
        }
    }
}
