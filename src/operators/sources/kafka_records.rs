//! How a Kafka record becomes a floe record, by the `kafka` source's `format`: the value as
//! `line` (raw), the declared fields of a JSON object (json), or key, value, headers and
//! coordinates (key-value). One batch's columns are built side by side; text goes into one
//! buffer per column.

use super::kafka::{KafkaFormat, KafkaSourceConfig};
use crate::operators::OperatorError;
use crate::record::{Batch, Column, DataType, StrColumnBuilder, BATCH_SIZE};
use rdkafka::message::{BorrowedMessage, Headers, Message};

/// The columns of one batch being built.
enum Col {
    Str(StrColumnBuilder),
    Int(Vec<i64>),
    Float(Vec<f64>),
    Bool(Vec<bool>),
}

impl Col {
    fn new(ty: DataType) -> Col {
        match ty {
            DataType::Str => Col::Str(StrColumnBuilder::with_capacity(BATCH_SIZE, BATCH_SIZE * 32)),
            DataType::Int => Col::Int(Vec::with_capacity(BATCH_SIZE)),
            DataType::Float => Col::Float(Vec::with_capacity(BATCH_SIZE)),
            DataType::Bool => Col::Bool(Vec::with_capacity(BATCH_SIZE)),
        }
    }

    fn finish(self) -> Column {
        match self {
            Col::Str(b) => Column::Str(b.finish()),
            Col::Int(v) => Column::Int(v),
            Col::Float(v) => Column::Float(v),
            Col::Bool(v) => Column::Bool(v),
        }
    }
}

pub(super) struct Rows {
    cols: Vec<Col>,
    pub(super) len: usize,
}

impl Rows {
    /// Empty columns of `types` (the source's schema, computed once per subtask).
    pub(super) fn new(types: &[DataType]) -> Rows {
        Rows {
            cols: types.iter().map(|&ty| Col::new(ty)).collect(),
            len: 0,
        }
    }

    pub(super) fn finish(self) -> Batch {
        Batch::new(self.cols.into_iter().map(Col::finish).collect())
    }

    pub(super) fn push(
        &mut self,
        m: &BorrowedMessage<'_>,
        cfg: &KafkaSourceConfig,
        operator: &str,
    ) -> Result<(), OperatorError> {
        let value = m.payload().unwrap_or_default();
        match cfg.format {
            KafkaFormat::Raw => {
                if let Col::Str(b) = &mut self.cols[0] {
                    b.push(value);
                }
            }
            KafkaFormat::Json => {
                let at = || format!("{}-{} offset {}", m.topic(), m.partition(), m.offset());
                let obj: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(value).map_err(|e| {
                        OperatorError::Data(format!(
                            "kafka source \"{operator}\": the record at {} is not a JSON object: {e}",
                            at()
                        ))
                    })?;
                for (col, f) in self.cols.iter_mut().zip(&cfg.fields) {
                    let v = obj.get(&f.name);
                    let bad = || {
                        OperatorError::Data(format!(
                            "kafka source \"{operator}\": the record at {} has {} for field \"{}\", which is declared {}",
                            at(),
                            v.map_or("nothing".to_string(), |v| format!("`{v}`")),
                            f.name,
                            f.ty
                        ))
                    };
                    match (col, v) {
                        (Col::Str(b), Some(serde_json::Value::String(s))) => b.push(s.as_bytes()),
                        (Col::Str(b), Some(other)) if !other.is_null() => {
                            b.push(other.to_string().as_bytes())
                        }
                        (Col::Int(out), Some(n)) => out.push(n.as_i64().ok_or_else(bad)?),
                        (Col::Float(out), Some(n)) => out.push(n.as_f64().ok_or_else(bad)?),
                        (Col::Bool(out), Some(b)) => out.push(b.as_bool().ok_or_else(bad)?),
                        _ => return Err(bad()),
                    }
                }
            }
            KafkaFormat::KeyValue => {
                let headers = match m.headers() {
                    None => b"{}".to_vec(),
                    Some(h) => {
                        let mut map = serde_json::Map::new();
                        for hd in h.iter() {
                            let v = hd
                                .value
                                .map(|v| {
                                    serde_json::Value::String(
                                        String::from_utf8_lossy(v).into_owned(),
                                    )
                                })
                                .unwrap_or(serde_json::Value::Null);
                            map.insert(hd.key.to_string(), v);
                        }
                        serde_json::to_vec(&map).unwrap_or_default()
                    }
                };
                let ts = m.timestamp().to_millis().unwrap_or(-1);
                let texts: [&[u8]; 4] = [
                    m.key().unwrap_or_default(),
                    value,
                    &headers,
                    m.topic().as_bytes(),
                ];
                for (col, t) in self.cols.iter_mut().zip(texts) {
                    if let Col::Str(b) = col {
                        b.push(t);
                    }
                }
                let ints = [m.partition() as i64, m.offset(), ts];
                for (col, v) in self.cols[4..].iter_mut().zip(ints) {
                    if let Col::Int(out) = col {
                        out.push(v);
                    }
                }
            }
        }
        self.len += 1;
        Ok(())
    }
}
