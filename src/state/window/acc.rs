//! Window aggregates: the accumulator of each named aggregate of one key in one window, how a
//! record changes it, how two merge (sessions), its result, and its bytes in a snapshot.

use super::codec::{Reader, Writer};
use crate::record::{DataType, Value};
use hashbrown::HashSet;

/// One aggregate function, specialised by its input type where that matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggKind {
    Count,
    SumInt,
    SumFloat,
    Min,
    Max,
    Avg,
    /// The value of the record with the earliest timestamp (ties: the first to arrive).
    First,
    /// The value of the record with the latest timestamp (ties: the last to arrive).
    Last,
    CountDistinct,
}

impl AggKind {
    /// Its byte in a snapshot's aggregate list.
    pub fn code(self) -> u8 {
        match self {
            AggKind::Count => 0,
            AggKind::SumInt => 1,
            AggKind::SumFloat => 2,
            AggKind::Min => 3,
            AggKind::Max => 4,
            AggKind::Avg => 5,
            AggKind::First => 6,
            AggKind::Last => 7,
            AggKind::CountDistinct => 8,
        }
    }

    pub fn from_code(code: u8) -> Option<AggKind> {
        Some(match code {
            0 => AggKind::Count,
            1 => AggKind::SumInt,
            2 => AggKind::SumFloat,
            3 => AggKind::Min,
            4 => AggKind::Max,
            5 => AggKind::Avg,
            6 => AggKind::First,
            7 => AggKind::Last,
            8 => AggKind::CountDistinct,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            AggKind::Count => "count",
            AggKind::SumInt | AggKind::SumFloat => "sum",
            AggKind::Min => "min",
            AggKind::Max => "max",
            AggKind::Avg => "avg",
            AggKind::First => "first",
            AggKind::Last => "last",
            AggKind::CountDistinct => "count_distinct",
        }
    }

    /// The type of its result for an input field of type `input` (`None`: no field).
    pub fn output_type(self, input: Option<DataType>) -> DataType {
        match self {
            AggKind::Count | AggKind::SumInt | AggKind::CountDistinct => DataType::Int,
            AggKind::SumFloat | AggKind::Avg => DataType::Float,
            AggKind::Min | AggKind::Max | AggKind::First | AggKind::Last => {
                input.unwrap_or(DataType::Int)
            }
        }
    }
}

/// One value kept by an accumulator.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(Box<[u8]>),
}

impl Val {
    pub fn of(v: Value<'_>) -> Val {
        match v {
            Value::Int(x) => Val::Int(x),
            Value::Float(x) => Val::Float(x),
            Value::Bool(x) => Val::Bool(x),
            Value::Str(s) => Val::Str(s.into()),
        }
    }

    pub fn as_value(&self) -> Value<'_> {
        match self {
            Val::Int(x) => Value::Int(*x),
            Val::Float(x) => Value::Float(*x),
            Val::Bool(x) => Value::Bool(*x),
            Val::Str(s) => Value::Str(s),
        }
    }

    fn write(&self, w: &mut Writer) {
        match self {
            Val::Int(x) => {
                w.u8(0);
                w.zigzag(*x);
            }
            Val::Float(x) => {
                w.u8(1);
                w.u64(x.to_bits());
            }
            Val::Bool(x) => {
                w.u8(2);
                w.u8(*x as u8);
            }
            Val::Str(s) => {
                w.u8(3);
                w.bytes(s);
            }
        }
    }

    fn read(r: &mut Reader<'_>) -> Option<Val> {
        Some(match r.u8()? {
            0 => Val::Int(r.zigzag()?),
            1 => Val::Float(f64::from_bits(r.u64()?)),
            2 => Val::Bool(r.u8()? != 0),
            3 => Val::Str(r.bytes()?.into()),
            _ => return None,
        })
    }
}

/// `a` against `b`, within one type (the column's); floats by IEEE total order.
fn cmp(a: Value<'_>, b: &Val) -> std::cmp::Ordering {
    use std::cmp::Ordering::Equal;
    match (a, b) {
        (Value::Int(x), Val::Int(y)) => x.cmp(y),
        (Value::Float(x), Val::Float(y)) => x.total_cmp(y),
        (Value::Bool(x), Val::Bool(y)) => x.cmp(y),
        (Value::Str(x), Val::Str(y)) => x.cmp(&y[..]),
        _ => Equal,
    }
}

/// A value's bytes as a distinct-set member: a type tag, then the value.
fn distinct_key(v: Value<'_>) -> Box<[u8]> {
    let mut out = Vec::with_capacity(9);
    match v {
        Value::Int(x) => {
            out.push(0);
            out.extend_from_slice(&x.to_le_bytes());
        }
        Value::Float(x) => {
            out.push(1);
            out.extend_from_slice(&x.to_bits().to_le_bytes());
        }
        Value::Bool(x) => {
            out.push(2);
            out.push(x as u8);
        }
        Value::Str(s) => {
            out.push(3);
            out.extend_from_slice(s);
        }
    }
    out.into()
}

/// The accumulator of one aggregate of one key in one window.
#[derive(Debug, Clone, PartialEq)]
pub enum Acc {
    Count(i64),
    SumInt(i64),
    SumFloat(f64),
    Avg { sum: f64, n: i64 },
    Val(Val),
    Timed { ts: i64, val: Val },
    Distinct(Box<HashSet<Box<[u8]>>>),
}

impl Acc {
    /// The accumulator after one record (value `v`, timestamp `ts`).
    #[inline]
    pub fn init(kind: AggKind, v: Value<'_>, ts: i64) -> Acc {
        match kind {
            AggKind::Count => Acc::Count(1),
            AggKind::SumInt => Acc::SumInt(int_of(v)),
            AggKind::SumFloat => Acc::SumFloat(float_of(v)),
            AggKind::Avg => Acc::Avg {
                sum: float_of(v),
                n: 1,
            },
            AggKind::Min | AggKind::Max => Acc::Val(Val::of(v)),
            AggKind::First | AggKind::Last => Acc::Timed {
                ts,
                val: Val::of(v),
            },
            AggKind::CountDistinct => {
                let mut set = HashSet::new();
                set.insert(distinct_key(v));
                Acc::Distinct(Box::new(set))
            }
        }
    }

    /// Adds one record (value `v`, timestamp `ts`).
    #[inline]
    pub fn apply(&mut self, kind: AggKind, v: Value<'_>, ts: i64) {
        match (self, kind) {
            (Acc::Count(n), _) => *n += 1,
            // Java's long arithmetic wraps, and so does Flink's sum.
            (Acc::SumInt(s), _) => *s = s.wrapping_add(int_of(v)),
            (Acc::SumFloat(s), _) => *s += float_of(v),
            (Acc::Avg { sum, n }, _) => {
                *sum += float_of(v);
                *n += 1;
            }
            (Acc::Val(cur), AggKind::Min) => {
                if cmp(v, cur).is_lt() {
                    *cur = Val::of(v);
                }
            }
            (Acc::Val(cur), _) => {
                if cmp(v, cur).is_gt() {
                    *cur = Val::of(v);
                }
            }
            (Acc::Timed { ts: t, val }, AggKind::First) => {
                if ts < *t {
                    *t = ts;
                    *val = Val::of(v);
                }
            }
            (Acc::Timed { ts: t, val }, _) => {
                if ts >= *t {
                    *t = ts;
                    *val = Val::of(v);
                }
            }
            (Acc::Distinct(set), _) => {
                set.insert(distinct_key(v));
            }
        }
    }

    /// Folds `other` (a later session's accumulator, or an earlier one's) into this one.
    pub fn merge(&mut self, kind: AggKind, other: Acc) {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::SumInt(a), Acc::SumInt(b)) => *a = a.wrapping_add(b),
            (Acc::SumFloat(a), Acc::SumFloat(b)) => *a += b,
            (Acc::Avg { sum, n }, Acc::Avg { sum: s2, n: n2 }) => {
                *sum += s2;
                *n += n2;
            }
            (Acc::Val(a), Acc::Val(b)) => {
                let order = cmp(b.as_value(), a);
                let replace = match kind {
                    AggKind::Min => order.is_lt(),
                    _ => order.is_gt(),
                };
                if replace {
                    *a = b;
                }
            }
            (Acc::Timed { ts, val }, Acc::Timed { ts: t2, val: v2 }) => {
                let replace = match kind {
                    AggKind::First => t2 < *ts,
                    _ => t2 > *ts,
                };
                if replace {
                    *ts = t2;
                    *val = v2;
                }
            }
            (Acc::Distinct(a), Acc::Distinct(b)) => a.extend(*b),
            // Accumulators of one aggregate are always of one kind.
            _ => {}
        }
    }

    /// The aggregate's result.
    pub fn result(&self) -> Value<'_> {
        match self {
            Acc::Count(n) | Acc::SumInt(n) => Value::Int(*n),
            Acc::SumFloat(s) => Value::Float(*s),
            Acc::Avg { sum, n } => Value::Float(if *n == 0 { 0.0 } else { sum / *n as f64 }),
            Acc::Val(v) | Acc::Timed { val: v, .. } => v.as_value(),
            Acc::Distinct(set) => Value::Int(set.len() as i64),
        }
    }

    pub fn write(&self, w: &mut Writer) {
        match self {
            Acc::Count(n) | Acc::SumInt(n) => w.zigzag(*n),
            Acc::SumFloat(s) => w.u64(s.to_bits()),
            Acc::Avg { sum, n } => {
                w.u64(sum.to_bits());
                w.zigzag(*n);
            }
            Acc::Val(v) => v.write(w),
            Acc::Timed { ts, val } => {
                w.zigzag(*ts);
                val.write(w);
            }
            Acc::Distinct(set) => {
                w.varint(set.len() as u64);
                for m in set.iter() {
                    w.bytes(m);
                }
            }
        }
    }

    pub fn read(kind: AggKind, r: &mut Reader<'_>) -> Option<Acc> {
        Some(match kind {
            AggKind::Count => Acc::Count(r.zigzag()?),
            AggKind::SumInt => Acc::SumInt(r.zigzag()?),
            AggKind::SumFloat => Acc::SumFloat(f64::from_bits(r.u64()?)),
            AggKind::Avg => Acc::Avg {
                sum: f64::from_bits(r.u64()?),
                n: r.zigzag()?,
            },
            AggKind::Min | AggKind::Max => Acc::Val(Val::read(r)?),
            AggKind::First | AggKind::Last => Acc::Timed {
                ts: r.zigzag()?,
                val: Val::read(r)?,
            },
            AggKind::CountDistinct => {
                let n = r.varint()?;
                let mut set = HashSet::new();
                for _ in 0..n {
                    set.insert(r.bytes()?.into());
                }
                Acc::Distinct(Box::new(set))
            }
        })
    }
}

#[inline]
fn int_of(v: Value<'_>) -> i64 {
    match v {
        Value::Int(x) => x,
        Value::Float(x) => x as i64,
        Value::Bool(x) => x as i64,
        Value::Str(_) => 0,
    }
}

#[inline]
fn float_of(v: Value<'_>) -> f64 {
    match v {
        Value::Int(x) => x as f64,
        Value::Float(x) => x,
        Value::Bool(x) => x as i64 as f64,
        Value::Str(_) => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(kind: AggKind, vals: &[(Value<'_>, i64)]) -> Acc {
        let mut acc = Acc::init(kind, vals[0].0, vals[0].1);
        for (v, t) in &vals[1..] {
            acc.apply(kind, *v, *t);
        }
        acc
    }

    #[test]
    fn each_aggregate_folds_merges_and_round_trips() {
        let ints = [
            (Value::Int(5), 30),
            (Value::Int(-2), 10),
            (Value::Int(9), 20),
            (Value::Int(5), 15),
        ];
        let expect = [
            (AggKind::Count, Value::Int(4)),
            (AggKind::SumInt, Value::Int(17)),
            (AggKind::SumFloat, Value::Float(17.0)),
            (AggKind::Min, Value::Int(-2)),
            (AggKind::Max, Value::Int(9)),
            (AggKind::Avg, Value::Float(4.25)),
            (AggKind::First, Value::Int(-2)),
            (AggKind::Last, Value::Int(5)),
            (AggKind::CountDistinct, Value::Int(3)),
        ];
        for (kind, want) in expect {
            let acc = fold(kind, &ints);
            assert_eq!(acc.result(), want, "{kind:?}");
            // Split in two and merged, either way round, gives the same.
            let mut a = fold(kind, &ints[..2]);
            a.merge(kind, fold(kind, &ints[2..]));
            assert_eq!(a.result(), want, "{kind:?} merged");
            let mut b = fold(kind, &ints[2..]);
            b.merge(kind, fold(kind, &ints[..2]));
            assert_eq!(b.result(), want, "{kind:?} merged the other way");
            let mut w = Writer::default();
            acc.write(&mut w);
            let bytes = w.finish();
            let mut r = Reader::new(&bytes);
            assert_eq!(Acc::read(kind, &mut r), Some(acc), "{kind:?}");
            assert!(r.is_empty());
        }
    }

    #[test]
    fn text_min_max_and_codes() {
        let words = [(Value::Str(b"pear"), 1), (Value::Str(b"apple"), 2)];
        assert_eq!(fold(AggKind::Min, &words).result(), Value::Str(b"apple"));
        assert_eq!(fold(AggKind::Max, &words).result(), Value::Str(b"pear"));
        for c in 0..=8 {
            assert_eq!(AggKind::from_code(c).map(AggKind::code), Some(c));
        }
        assert_eq!(AggKind::from_code(9), None);
    }
}
