use super::*;
use crate::record::Value;
use crate::state::keygroup::hash_str;
use std::collections::BTreeMap;

type Results = BTreeMap<(String, i64, i64), Vec<i64>>;

fn store(aggs: &[AggKind], lateness: i64) -> WindowStore {
    WindowStore::new(KeyGroupRange::for_subtask(0, 1, 128), 128, aggs, lateness)
}

fn add(s: &mut WindowStore, key: &str, start: i64, size: i64, v: i64, ts: i64) -> bool {
    let h = hash_str(key.as_bytes());
    s.add_aligned(
        h.key_group(128),
        h.table,
        key.as_bytes(),
        start,
        start + size,
        &[Value::Int(v); 2],
        ts,
        i64::MIN,
    )
    .unwrap()
}

fn collect(out: &mut Results) -> impl FnMut(&[u8], i64, i64, &[Acc]) + '_ {
    move |k, s, e, accs| {
        let vals = accs
            .iter()
            .map(|a| match a.result() {
                Value::Int(x) => x,
                other => panic!("expected ints, got {other:?}"),
            })
            .collect();
        out.insert((String::from_utf8(k.to_vec()).unwrap(), s, e), vals);
    }
}

#[test]
fn panes_fire_once_at_their_end_and_go() {
    let mut s = store(&[AggKind::Count, AggKind::SumInt], 0);
    for (k, t) in [("a", 5), ("b", 7), ("a", 9), ("a", 12)] {
        add(&mut s, k, t / 10 * 10, 10, t, t);
    }
    assert_eq!(s.next_due(), Some(9));
    let mut out = Results::new();
    s.fire(8, &mut collect(&mut out));
    assert!(out.is_empty());
    s.fire(9, &mut collect(&mut out));
    assert_eq!(out.len(), 2);
    assert_eq!(out[&("a".into(), 0, 10)], vec![2, 14]);
    assert_eq!(out[&("b".into(), 0, 10)], vec![1, 7]);
    assert_eq!(s.size(), (1, 1), "only [10, 20) is left");
    out.clear();
    s.fire(100, &mut collect(&mut out));
    assert_eq!(out[&("a".into(), 10, 20)], vec![1, 12]);
    assert_eq!(s.size(), (0, 0));
    assert_eq!(s.next_due(), None);
}

#[test]
fn a_fired_pane_takes_late_records_until_its_lateness_passed() {
    let mut s = store(&[AggKind::Count, AggKind::SumInt], 5);
    assert!(!add(&mut s, "a", 0, 10, 1, 1));
    let mut out = Results::new();
    s.fire(9, &mut collect(&mut out));
    assert_eq!(out[&("a".into(), 0, 10)], vec![1, 1]);
    assert!(add(&mut s, "a", 0, 10, 2, 3), "late but within lateness");
    let h = hash_str(b"a");
    out.clear();
    s.emit_key(h.key_group(128), h.table, b"a", 0, &mut collect(&mut out));
    assert_eq!(out[&("a".into(), 0, 10)], vec![2, 3]);
    out.clear();
    s.fire(13, &mut collect(&mut out));
    assert!(out.is_empty(), "fired already, kept until 9 + 5");
    assert_eq!(s.size().0, 1);
    s.fire(14, &mut collect(&mut out));
    assert!(out.is_empty());
    assert_eq!(s.size().0, 0);
}

#[test]
fn sessions_merge_fire_and_refuse_late_records() {
    let mut s = store(&[AggKind::Count, AggKind::SumInt], 0);
    let kg = hash_str(b"k").key_group(128);
    let mut out = Results::new();
    let add = |s: &mut WindowStore, ts: i64, time: i64, out: &mut Results| {
        s.add_session(
            kg,
            b"k",
            ts,
            10,
            &[Value::Int(ts); 2],
            time,
            &mut collect(out),
        )
        .unwrap()
    };
    assert_eq!(add(&mut s, 0, i64::MIN, &mut out), SessionAdd::Added);
    assert_eq!(add(&mut s, 30, i64::MIN, &mut out), SessionAdd::Added);
    // [15, 25) touches neither; [20, 30) touches [30, 40) (Flink's intersects).
    assert_eq!(add(&mut s, 20, i64::MIN, &mut out), SessionAdd::Added);
    assert_eq!(s.size(), (2, 2));
    s.fire(9, &mut collect(&mut out));
    assert_eq!(out.remove(&("k".into(), 0, 10)), Some(vec![1, 0]));
    assert!(out.is_empty());
    assert_eq!(
        add(&mut s, -5, 9, &mut out),
        SessionAdd::Late,
        "[-5, 5) ended before 9"
    );
    assert_eq!(add(&mut s, 12, 9, &mut out), SessionAdd::Added);
    // [12, 22) joins [20, 40): one session [12, 40).
    s.fire(39, &mut collect(&mut out));
    assert_eq!(out[&("k".into(), 12, 40)], vec![3, 62]);
    assert_eq!(s.size(), (0, 0));
}

#[test]
fn snapshots_are_frozen_and_restore_full_then_deltas() {
    let aggs = [AggKind::Count, AggKind::SumInt];
    let mut s = store(&aggs, 0);
    for i in 0..200 {
        add(&mut s, &format!("k{i}"), 0, 10, i, 1);
    }
    let kg = hash_str(b"x").key_group(128);
    s.add_session(
        kg,
        b"x",
        50,
        5,
        &[Value::Int(1); 2],
        i64::MIN,
        &mut |_, _, _, _| {},
    )
    .unwrap();
    let first = s.snapshot();
    let full: Vec<_> = first.full().collect();
    add(&mut s, "k0", 0, 10, 1000, 1);
    add(&mut s, "new", 10, 10, 1, 11);
    let second = s.snapshot();
    assert!(
        second.delta_len() <= 2,
        "only the groups written: {}",
        second.delta_len()
    );
    let delta: Vec<_> = second.delta().collect();
    // The first snapshot did not change.
    assert_eq!(first.full().collect::<Vec<_>>(), full);

    let mut back = store(&aggs, 0);
    for (kg, run, _) in full.iter().chain(&delta) {
        back.restore_group(*kg, run).unwrap();
    }
    back.finish_restore();
    let (mut want, mut got) = (Results::new(), Results::new());
    s.fire(i64::MAX, &mut collect(&mut want));
    back.fire(i64::MAX, &mut collect(&mut got));
    assert_eq!(got, want);
    assert_eq!(got[&("k0".into(), 0, 10)], vec![2, 1000]);
    assert_eq!(got[&("x".into(), 50, 55)], vec![1, 1]);
}

#[test]
fn bad_runs_are_errors_not_panics() {
    let aggs = [AggKind::Count, AggKind::First];
    let mut s = store(&aggs, 0);
    add(&mut s, "a", 0, 10, 1, 1);
    let (kg, run, _) = s.snapshot().full().next().unwrap();
    let mut other = store(&[AggKind::Count], 0);
    let err = other.restore_group(kg, &run).unwrap_err();
    assert!(err.to_string().contains("held [count, first]"), "{err}");
    let mut back = store(&aggs, 0);
    for n in 0..run.len() {
        assert!(back.restore_group(kg, &run[..n]).is_err(), "cut at {n}");
    }
    let mut longer = run.clone();
    longer.push(0);
    assert!(back.restore_group(kg, &longer).is_err());
    assert!(back.restore_group(kg, &run).is_ok());
}
