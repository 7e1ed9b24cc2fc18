//! `type: print`: records to stdout (or stderr) in Flink's `print()` format: one field prints
//! as the value, several as `(hello,3)`; with more than one subtask each line starts with
//! `N> `, N the subtask index + 1.
//!
//! A batch is formatted into one buffer and written with one `write_all` on the locked stream,
//! so lines of several subtasks never interleave mid-line. When the reader goes away (`floe run
//! ... | head`), the broken pipe ends the output quietly: records after that are dropped, and
//! the stream is marked closed (`stdio`), which stops the job as Ctrl-C would. This module must
//! not write anything but records to its stream.

use super::{sink_schema, write_record};
use crate::operators::{BuildContext, Operator, OperatorError, OperatorSpec, Problem};
use crate::record::{Batch, Schema};
use std::io::{self, Write};

/// Where `print` writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrintTarget {
    #[default]
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PrintConfig {
    #[serde(default)]
    pub target: PrintTarget,
}

impl OperatorSpec for PrintConfig {
    fn output_schema(&self, input: Option<&Schema>) -> Result<Schema, Vec<Problem>> {
        sink_schema(input)
    }
}

enum Out {
    Stdout,
    Stderr,
    Writer(Box<dyn Write + Send>),
}

/// One running print subtask.
pub struct Print {
    out: Out,
    name: &'static str,
    /// `N> ` when the sink runs as several subtasks, else empty.
    prefix: Vec<u8>,
    buf: Vec<u8>,
    /// The reader went away: drop records quietly.
    closed: bool,
}

impl Print {
    pub fn new(
        c: &PrintConfig,
        _input: &Schema,
        ctx: &BuildContext,
    ) -> Result<Self, OperatorError> {
        let (out, name) = match c.target {
            PrintTarget::Stdout => (Out::Stdout, "stdout"),
            PrintTarget::Stderr => (Out::Stderr, "stderr"),
        };
        Ok(Self::build(out, name, ctx))
    }

    /// A print subtask writing to `writer` instead of stdout (tests, embedding).
    pub fn with_writer(_input: &Schema, ctx: &BuildContext, writer: Box<dyn Write + Send>) -> Self {
        Self::build(Out::Writer(writer), "the print writer", ctx)
    }

    fn build(out: Out, name: &'static str, ctx: &BuildContext) -> Self {
        let prefix = if ctx.parallelism > 1 {
            format!("{}> ", ctx.subtask + 1).into_bytes()
        } else {
            Vec::new()
        };
        Print {
            out,
            name,
            prefix,
            buf: Vec::new(),
            closed: false,
        }
    }

    fn write(&mut self) -> io::Result<()> {
        match &mut self.out {
            // The lock is held for the whole batch: no other subtask's line lands inside it.
            Out::Stdout => io::stdout().lock().write_all(&self.buf),
            Out::Stderr => io::stderr().lock().write_all(&self.buf),
            Out::Writer(w) => w.write_all(&self.buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Out::Stdout => io::stdout().lock().flush(),
            Out::Stderr => io::stderr().lock().flush(),
            Out::Writer(w) => w.flush(),
        }
    }

    /// A broken pipe closes the output quietly; anything else is an error.
    fn check(&mut self, result: io::Result<()>) -> Result<(), OperatorError> {
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                tracing::info!(
                    target_stream = self.name,
                    "the reader closed the output; print drops further records and the job stops"
                );
                self.closed = true;
                // `floe run` and `floe serve` stop their jobs, as on Ctrl-C.
                match self.out {
                    Out::Stdout => crate::stdio::mark_closed(crate::stdio::Stream::Stdout),
                    Out::Stderr => crate::stdio::mark_closed(crate::stdio::Stream::Stderr),
                    Out::Writer(_) => {}
                }
                Ok(())
            }
            Err(e) => Err(OperatorError::io(
                format!("cannot write to {}", self.name),
                e,
            )),
        }
    }
}

impl Operator for Print {
    fn process(&mut self, batch: Batch, _out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        if self.closed || batch.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        for row in 0..batch.len() {
            self.buf.extend_from_slice(&self.prefix);
            write_record(&mut self.buf, &batch, row);
            self.buf.push(b'\n');
        }
        let result = self.write();
        self.check(result)
    }

    fn finish(&mut self, _out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        if self.closed {
            return Ok(());
        }
        let result = self.flush();
        self.check(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Column, DataType, StrColumnBuilder};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
    }

    fn ctx(subtask: u32, parallelism: u32) -> BuildContext {
        BuildContext {
            operator_id: "print".into(),
            subtask,
            parallelism,
            max_parallelism: 128,
            base_dir: ".".into(),
            delta_checkpoints: true,
        }
    }

    fn words(ws: &[&str]) -> Column {
        let mut b = StrColumnBuilder::default();
        for w in ws {
            b.push(w.as_bytes());
        }
        Column::Str(b.finish())
    }

    fn printed(batch: Batch, ctx: &BuildContext) -> String {
        let shared = Shared::default();
        let mut print = Print::with_writer(&Schema::default(), ctx, Box::new(shared.clone()));
        print.process(batch, &mut Vec::new()).unwrap();
        print.finish(&mut Vec::new()).unwrap();
        let bytes = shared.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn one_field_prints_the_value() {
        let batch = Batch::new(vec![words(&["hello", "world"])]);
        assert_eq!(printed(batch, &ctx(0, 1)), "hello\nworld\n");
    }

    #[test]
    fn several_fields_print_as_a_tuple() {
        let batch = Batch::new(vec![
            words(&["hello", "x"]),
            Column::Int(vec![3, -1]),
            Column::Float(vec![2.0, 0.5]),
            Column::Bool(vec![true, false]),
        ]);
        assert_eq!(
            printed(batch, &ctx(0, 1)),
            "(hello,3,2.0,true)\n(x,-1,0.5,false)\n"
        );
    }

    #[test]
    fn subtasks_prefix_their_number_when_parallel() {
        let batch = Batch::new(vec![words(&["a"]), Column::Int(vec![1])]);
        assert_eq!(printed(batch, &ctx(1, 2)), "2> (a,1)\n");
    }

    #[test]
    fn a_broken_pipe_ends_quietly() {
        let mut print = Print::with_writer(&Schema::default(), &ctx(0, 1), Box::new(Closed));
        let batch = Batch::new(vec![words(&["a"])]);
        assert!(print.process(batch.clone(), &mut Vec::new()).is_ok());
        assert!(print.closed);
        assert!(print.process(batch, &mut Vec::new()).is_ok());
        assert!(print.finish(&mut Vec::new()).is_ok());
    }

    #[test]
    fn target_parses_and_sinks_need_inputs() {
        let c: PrintConfig = serde_yaml::from_str("target: stderr").unwrap();
        assert_eq!(c.target, PrintTarget::Stderr);
        assert!(serde_yaml::from_str::<PrintConfig>("target: file").is_err());
        let input = Schema::new([("word", DataType::Str)]);
        assert_eq!(c.output_schema(Some(&input)), Ok(Schema::default()));
        assert_eq!(c.output_schema(None).unwrap_err()[0].field, "inputs");
    }
}
