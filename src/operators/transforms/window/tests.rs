use super::*;
use crate::record::StrColumnBuilder;

fn ctx() -> BuildContext {
    BuildContext::single("w")
}

fn input() -> Schema {
    Schema::new([("user", DataType::Str), ("n", DataType::Int)])
}

fn cfg(yaml: &str) -> WindowConfig {
    serde_yaml::from_str(yaml).unwrap()
}

fn problems(yaml: &str) -> Vec<String> {
    cfg(yaml)
        .output_schema(Some(&input()))
        .unwrap_err()
        .into_iter()
        .map(|p| format!("{}: {}", p.field, p.message))
        .collect()
}

fn batch(rows: &[(&str, i64, i64)]) -> Batch {
    let mut users = StrColumnBuilder::default();
    for (u, _, _) in rows {
        users.push(u.as_bytes());
    }
    Batch::new(vec![
        Column::Str(users.finish()),
        Column::Int(rows.iter().map(|r| r.1).collect()),
    ])
    .with_timestamps(Some(rows.iter().map(|r| r.2).collect()))
}

fn rows(out: &[Batch]) -> Vec<String> {
    let mut all: Vec<String> = out
        .iter()
        .flat_map(|b| {
            (0..b.len()).map(move |i| {
                let vals: Vec<String> = b.row(i).iter().map(|v| v.to_string()).collect();
                format!("{} @{}", vals.join(","), b.timestamps().unwrap()[i])
            })
        })
        .collect();
    all.sort();
    all
}

#[test]
fn schema_is_key_bounds_then_aggregates() {
    let c = cfg("{key: user, tumbling: 1 s, aggregates: {n: count(), total: sum(n), avg: avg(n), who: first(user)}}");
    let s = c.output_schema(Some(&input())).unwrap();
    assert_eq!(
        s.to_string(),
        "{user: str, window_start: int, window_end: int, n: int, total: int, avg: float, who: str}"
    );
    assert!(c.is_keyed());
    let global = cfg("{tumbling: 1 s, aggregates: {n: count()}}");
    assert_eq!(global.required_parallelism(), Some(1));
    assert_eq!(
        global.output_schema(Some(&input())).unwrap().to_string(),
        "{window_start: int, window_end: int, n: int}"
    );
}

#[test]
fn every_setting_is_checked() {
    let p = problems("{key: usr, aggregates: {n: count()}}");
    assert!(
        p.iter().any(|p| p.starts_with(": a window needs its kind")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|p| p.contains("did you mean \"user\"")),
        "{p:?}"
    );
    let p = problems("{tumbling: 1 s, session: {gap: 1 s}, aggregates: {n: count()}}");
    assert!(p[0].contains("not several"), "{p:?}");
    let p = problems("{tumbling: 0, aggregates: {n: cnt(), t: sum(user), x: max(nope), window_end: count(), y: sum(n}}");
    let text = p.join("\n");
    assert!(
        text.contains("tumbling: must be a whole number of milliseconds above 0"),
        "{text}"
    );
    assert!(
        text.contains("unknown function \"cnt\"; did you mean \"count\"?"),
        "{text}"
    );
    assert!(
        text.contains("aggregates.t: field \"user\" is str, but this setting needs int or float"),
        "{text}"
    );
    assert!(
        text.contains("aggregates.x: field \"nope\" is not in the input"),
        "{text}"
    );
    assert!(
        text.contains("aggregates.window_end: \"window_end\" is already an output field"),
        "{text}"
    );
    assert!(text.contains("the `)` is missing"), "{text}");
    let p = problems("{sliding: {size: 1 h, slide: 1 ms}, time: processing, allowed-lateness: 1 s, aggregates: {}}");
    let text = p.join("\n");
    assert!(text.contains("sliding: size / slide is 3600000"), "{text}");
    assert!(
        text.contains("allowed-lateness: applies to event time only"),
        "{text}"
    );
    assert!(text.contains("name at least one aggregate"), "{text}");
}

#[test]
fn negative_times_fall_in_the_window_below() {
    assert_eq!(window_start(-1, 10), -10);
    assert_eq!(window_start(-10, 10), -10);
    assert_eq!(window_start(9, 10), 0);
}

#[test]
fn tumbling_fires_at_the_watermark_and_refires_late_records() {
    let c = cfg(
        "{key: user, tumbling: 10 ms, allowed-lateness: 5 ms, aggregates: {c: count(), s: sum(n)}}",
    );
    let mut w = Window::new(&c, &input(), &ctx()).unwrap();
    let mut out = Vec::new();
    w.process(batch(&[("a", 1, 1), ("b", 2, 5), ("a", 3, 12)]), &mut out)
        .unwrap();
    assert!(out.is_empty());
    assert_eq!(w.on_watermark(8, &mut out).unwrap(), Some(8));
    assert!(out.is_empty());
    w.on_watermark(9, &mut out).unwrap();
    assert_eq!(rows(&out), ["a,0,10,1,1 @9", "b,0,10,1,2 @9"]);
    out.clear();
    // Late, within lateness: the key's result again, with the record.
    w.process(batch(&[("a", 10, 2)]), &mut out).unwrap();
    assert_eq!(rows(&out), ["a,0,10,2,11 @9"]);
    out.clear();
    // Past 9 + 5 the window is gone: dropped and counted.
    w.on_watermark(14, &mut out).unwrap();
    w.process(batch(&[("a", 100, 3)]), &mut out).unwrap();
    assert!(out.is_empty());
    assert_eq!(w.records_discarded(), 1);
    w.on_watermark(i64::MAX, &mut out).unwrap();
    assert_eq!(rows(&out), ["a,10,20,1,3 @19"]);
}

#[test]
fn sliding_windows_take_each_record_size_over_slide_times() {
    let c = cfg("{key: user, sliding: {size: 10 ms, slide: 5 ms}, aggregates: {c: count()}}");
    let mut w = Window::new(&c, &input(), &ctx()).unwrap();
    let mut out = Vec::new();
    w.process(batch(&[("a", 0, 7), ("a", 0, 12)]), &mut out)
        .unwrap();
    w.on_watermark(i64::MAX, &mut out).unwrap();
    assert_eq!(rows(&out), ["a,0,10,1 @9", "a,10,20,1 @19", "a,5,15,2 @14"]);
}

#[test]
fn records_without_time_fail_an_event_time_window() {
    let c = cfg("{key: user, tumbling: 10 ms, aggregates: {c: count()}}");
    let mut w = Window::new(&c, &input(), &ctx()).unwrap();
    let mut b = batch(&[("a", 0, 1)]);
    b.set_timestamps(None);
    let err = w.process(b, &mut Vec::new()).unwrap_err().to_string();
    assert!(err.contains("records without event time"), "{err}");
}

#[test]
fn processing_time_windows_fire_on_the_clock_and_at_a_finished_end() {
    let c = cfg("{key: user, tumbling: 1 h, time: processing, aggregates: {c: count()}}");
    let mut w = Window::new(&c, &input(), &ctx()).unwrap();
    let mut out = Vec::new();
    w.process(batch(&[("a", 0, 0), ("a", 0, 0)]), &mut out)
        .unwrap();
    let due = w.next_timer().unwrap();
    assert!(due > crate::runtime::task::now_ms());
    w.on_processing_time(due - 1, &mut out).unwrap();
    assert!(out.is_empty());
    w.end_of_input(EndOfInput::Finished);
    w.finish(&mut out).unwrap();
    assert_eq!(out[0].len(), 1);
    assert_eq!(out[0].row(0)[3], Value::Int(2));
}
