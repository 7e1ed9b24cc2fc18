//! Sinks: operators that write records out and produce none.

pub mod blackhole;
pub mod file;
pub mod kafka;
mod kafka_producer;
pub mod kafka_resume;
mod kafka_scram;
pub mod kafka_txn;
pub mod print;
pub mod rolling;
pub mod state;

use crate::operators::{OperatorError, Problem, RestoredState};
use crate::record::{Batch, Schema, Value};
use state::SinkState;
use std::io::Write;

/// A sink reads records and produces none: its output schema is empty, and it needs an input.
pub(crate) fn sink_schema(input: Option<&Schema>) -> Result<Schema, Vec<Problem>> {
    match input {
        Some(_) => Ok(Schema::default()),
        None => Err(vec![Problem::new(
            "inputs",
            "a sink needs `inputs`: the ids of the operators it reads from",
        )]),
    }
}

/// The sink states a transactional sink (`kind`: "file", "kafka") restores; keyed state or
/// another operator's state under its operator id (the `type:` changed since the
/// checkpoint) is an error.
pub(crate) fn restored_sink_states(
    kind: &str,
    operator_id: &str,
    state: RestoredState,
) -> Result<Vec<SinkState>, OperatorError> {
    let refuse = |what: String| {
        OperatorError::Config(format!(
            "{kind} sink \"{operator_id}\": {what}; give the sink another `id` or start \
             without restoring its state"
        ))
    };
    match state {
        RestoredState::Blobs(blobs) => blobs
            .iter()
            .map(|b| SinkState::from_blob(&b.blob).map_err(&refuse))
            .collect(),
        RestoredState::Keyed(_) => Err(refuse(
            "the checkpoint holds keyed state under this operator id".into(),
        )),
    }
}

/// Per input field, its name as a JSON object key with the colon (`"word":`), escaped once
/// for [`write_json`].
pub(crate) fn json_keys(input: &Schema) -> Vec<Vec<u8>> {
    input
        .names()
        .map(|name| {
            let mut key = serde_json::to_vec(name).expect("a string always serializes");
            key.push(b':');
            key
        })
        .collect()
}

/// Record `row` as one JSON object (`{"word":"a","count":2}`), with the keys of
/// [`json_keys`]. Text is written lossily as UTF-8; NaN and infinities become null.
#[inline]
pub(crate) fn write_json(out: &mut Vec<u8>, keys: &[Vec<u8>], batch: &Batch, row: usize) {
    out.push(b'{');
    for (i, (key, column)) in keys.iter().zip(&batch.columns).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(key);
        // Serializing into a Vec cannot fail.
        let _ = match column.value(row) {
            Value::Str(s) => serde_json::to_writer(&mut *out, &String::from_utf8_lossy(s)),
            Value::Int(v) => serde_json::to_writer(&mut *out, &v),
            Value::Float(v) => serde_json::to_writer(&mut *out, &v),
            Value::Bool(v) => serde_json::to_writer(&mut *out, &v),
        };
    }
    out.push(b'}');
}

/// One value as Java's `toString` writes it (text as its raw bytes).
#[inline]
pub(crate) fn write_value(out: &mut Vec<u8>, value: Value<'_>) {
    match value {
        Value::Str(s) => out.extend_from_slice(s),
        // Writing into a Vec cannot fail.
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// Record `row` as Flink's `print()` shows it: the value itself for one field, `(a,b)` for
/// several (a Tuple's `toString`), no line end.
#[inline]
pub(crate) fn write_record(out: &mut Vec<u8>, batch: &Batch, row: usize) {
    if let [only] = batch.columns.as_slice() {
        write_value(out, only.value(row));
        return;
    }
    out.push(b'(');
    for (i, column) in batch.columns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_value(out, column.value(row));
    }
    out.push(b')');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::keygroup::KeyGroupRange;

    #[test]
    fn a_sink_restores_sink_states_and_refuses_keyed_state_naming_itself() {
        assert!(
            restored_sink_states("file", "out", RestoredState::Blobs(Vec::new()))
                .unwrap()
                .is_empty()
        );
        let keyed = crate::state::KeyedRuns {
            format: crate::state::snapshot::keyed_values_format(),
            range: KeyGroupRange::for_subtask(0, 1, 128),
            max_parallelism: 128,
            runs: Vec::new(),
        };
        let e = restored_sink_states("kafka", "out", RestoredState::Keyed(keyed)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "kafka sink \"out\": the checkpoint holds keyed state under this operator id; give \
             the sink another `id` or start without restoring its state"
        );
    }
}
