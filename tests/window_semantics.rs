//! Windows against their definition: generated events with known timestamps, disorder and
//! late records go through the real binary (socket source with JSON records and event time,
//! a window, the print sink), and every result it prints is compared with what the
//! definition gives, computed here without floe's code: Flink's `TimeWindow` bounds, firing
//! when the watermark reaches `end - 1`, a late record within the allowed lateness updating
//! and emitting its window again, later ones dropped and counted.
//!
//! What makes the expected output exact is when each late record arrives. The events go in
//! phases. Phase k's on-time events come first, the last one at `T_k`, which is their
//! largest timestamp: the source's watermark is then exactly `W_k = T_k - 300 - 1` (bounded
//! out-of-orderness of 300 ms), never more. A marker key has a window ending at `W_k + 1`,
//! which fires only at that watermark: once the test has seen it printed, the source has
//! sent `W_k` after those events, so the late records written next reach every window
//! subtask behind it, at exactly `W_k` (the channel from the single source subtask is in
//! order). On-time events are at most 200 ms out of order, less than the 300 ms allowed, so
//! none of them is ever late, whatever the watermark is while they arrive.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};

const STEP: i64 = 5;
const DISORDER: i64 = 200;
const OUT_OF_ORDERNESS: i64 = 300;
const LATENESS: i64 = 1500;
const PHASE_EVENTS: i64 = 600;
const PHASES: i64 = 3;
const LATE_PER_PHASE: usize = 40;
const T0: i64 = 1_700_000_000_000;
const USERS: [&str; 7] = ["ann", "bob", "cy", "dee", "eve", "fay", "gus"];
const MARKER: &str = "zz-marker";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Tumbling(i64),
    Sliding(i64, i64),
    Session(i64),
}

impl Shape {
    fn yaml(self) -> String {
        match self {
            Shape::Tumbling(s) => format!("tumbling: {s} ms"),
            Shape::Sliding(size, slide) => {
                format!("sliding: {{size: {size} ms, slide: {slide} ms}}")
            }
            Shape::Session(gap) => format!("session: {{gap: {gap} ms}}"),
        }
    }
}

#[derive(Debug, Clone)]
struct Event {
    user: String,
    n: i64,
    m: i64,
    ts: i64,
}

impl Event {
    fn json(&self) -> String {
        format!(
            "{{\"user\": \"{}\", \"n\": {}, \"m\": {}, \"ts\": {}}}\n",
            self.user, self.n, self.m, self.ts
        )
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One emitted result as the print sink shows it: `(user,start,end,c,s,lo,hi,f,l,d,a)`.
fn render(user: &str, start: i64, end: i64, events: &[&Event]) -> String {
    let c = events.len() as i64;
    let s: i64 = events.iter().map(|e| e.n).sum();
    let lo = events.iter().map(|e| e.n).min().unwrap_or(0);
    let hi = events.iter().map(|e| e.n).max().unwrap_or(0);
    let first = events.iter().min_by_key(|e| e.ts).map_or(0, |e| e.n);
    let last = events.iter().max_by_key(|e| e.ts).map_or(0, |e| e.n);
    let distinct = events.iter().map(|e| e.m).collect::<BTreeSet<_>>().len();
    let avg = s as f64 / c as f64;
    // Java's Double.toString for these values, as Flink's print sink shows them.
    let avg = if avg.fract() == 0.0 && avg.abs() < 1e7 {
        format!("{avg:.1}")
    } else {
        format!("{avg}")
    };
    format!("({user},{start},{end},{c},{s},{lo},{hi},{first},{last},{distinct},{avg})")
}

/// One session of the definition: start, end, its events, whether it fired.
type Session = (i64, i64, Vec<Event>, bool);

/// The definition: what a window operator with these settings emits, record by record.
struct Model {
    shape: Shape,
    watermark: i64,
    /// Aligned windows: (user, start, end) → events, fired.
    aligned: BTreeMap<(String, i64, i64), (Vec<Event>, bool)>,
    /// Sessions per user: (start, end, events, fired).
    sessions: BTreeMap<String, Vec<Session>>,
    emitted: Vec<String>,
    dropped: u64,
    /// The dropped events as the print sink shows them: `(user,n,m,ts)`.
    late: Vec<String>,
}

impl Model {
    fn new(shape: Shape) -> Model {
        Model {
            shape,
            watermark: i64::MIN,
            aligned: BTreeMap::new(),
            sessions: BTreeMap::new(),
            emitted: Vec::new(),
            dropped: 0,
            late: Vec::new(),
        }
    }

    fn emit(&mut self, user: &str, start: i64, end: i64, events: &[Event]) {
        let refs: Vec<&Event> = events.iter().collect();
        self.emitted.push(render(user, start, end, &refs));
    }

    /// The aligned windows `[start, end)` an event at `ts` belongs to.
    fn windows(&self, ts: i64) -> Vec<(i64, i64)> {
        match self.shape {
            Shape::Tumbling(size) => {
                let start = ts - ts.rem_euclid(size);
                vec![(start, start + size)]
            }
            Shape::Sliding(size, slide) => {
                let mut out = Vec::new();
                let mut start = ts - ts.rem_euclid(slide);
                while start > ts - size {
                    out.push((start, start + size));
                    start -= slide;
                }
                out
            }
            Shape::Session(_) => Vec::new(),
        }
    }

    fn late(&self, end: i64) -> bool {
        end - 1 + LATENESS <= self.watermark
    }

    fn add(&mut self, e: &Event) {
        if let Shape::Session(gap) = self.shape {
            return self.add_session(e, gap);
        }
        let mut taken = false;
        for (start, end) in self.windows(e.ts) {
            if self.late(end) {
                continue;
            }
            taken = true;
            let key = (e.user.clone(), start, end);
            let (events, fired) = self.aligned.entry(key).or_insert((Vec::new(), false));
            events.push(e.clone());
            // Late but within the lateness (or the window's first record after its end):
            // the window fires again at once, with this record.
            if end - 1 <= self.watermark {
                *fired = true;
                let events = events.clone();
                self.emit(&e.user, start, end, &events);
            }
        }
        if !taken {
            self.drop_late(e);
        }
    }

    fn drop_late(&mut self, e: &Event) {
        self.dropped += 1;
        self.late
            .push(format!("({},{},{},{})", e.user, e.n, e.m, e.ts));
    }

    fn add_session(&mut self, e: &Event, gap: i64) {
        let list = self.sessions.entry(e.user.clone()).or_default();
        let (mut start, mut end) = (e.ts, e.ts + gap);
        // Flink's `TimeWindow.intersects`: windows that meet merge.
        let touches = |s: i64, t: i64, a: i64, b: i64| s <= b && t >= a;
        for (s, t, _, _) in list.iter() {
            if touches(*s, *t, e.ts, e.ts + gap) {
                start = start.min(*s);
                end = end.max(*t);
            }
        }
        if end - 1 + LATENESS <= self.watermark {
            self.drop_late(e);
            return;
        }
        let mut events = vec![e.clone()];
        list.retain(|(s, t, evs, _)| {
            if touches(*s, *t, start, end) {
                events.extend(evs.iter().cloned());
                false
            } else {
                true
            }
        });
        let fired = end - 1 <= self.watermark;
        list.push((start, end, events.clone(), fired));
        if fired {
            let user = e.user.clone();
            self.emit(&user, start, end, &events);
        }
    }

    /// The watermark reached `w`: windows whose end passed fire, those whose lateness
    /// passed go.
    fn advance(&mut self, w: i64) {
        self.watermark = w;
        let mut out = Vec::new();
        for ((user, start, end), (events, fired)) in self.aligned.iter_mut() {
            if !*fired && *end - 1 <= w {
                *fired = true;
                let refs: Vec<&Event> = events.iter().collect();
                out.push(render(user, *start, *end, &refs));
            }
        }
        self.aligned.retain(|(_, _, end), _| end - 1 + LATENESS > w);
        for (user, list) in self.sessions.iter_mut() {
            for (start, end, events, fired) in list.iter_mut() {
                if !*fired && *end - 1 <= w {
                    *fired = true;
                    let refs: Vec<&Event> = events.iter().collect();
                    out.push(render(user, *start, *end, &refs));
                }
            }
            list.retain(|(_, end, _, _)| end - 1 + LATENESS > w);
        }
        self.emitted.extend(out);
    }
}

/// The events of one phase from event `*next` on: on-time ones (bursts per user, so
/// sessions end), the marker, the last at `t_end`; then late ones behind
/// `w = t_end - 300 - 1`, one below a multiple of 1000.
fn phase(next: &mut i64, rng: &mut Rng, used: &mut BTreeSet<i64>) -> (Vec<Event>, Vec<Event>, i64) {
    let unique = |ts: i64, used: &mut BTreeSet<i64>| {
        let mut t = ts;
        while !used.insert(t) {
            t -= 1;
        }
        t
    };
    let w = (T0 + (*next + PHASE_EVENTS) * STEP) / 1000 * 1000 - 1;
    let t_end = w + OUT_OF_ORDERNESS + 1;
    let marker_ts = w + 1 - 250;
    let mut on_time = Vec::new();
    let mut marker_placed = false;
    while T0 + *next * STEP < t_end {
        let i = *next;
        *next += 1;
        let base = T0 + i * STEP;
        if !marker_placed && base >= marker_ts {
            marker_placed = true;
            used.insert(marker_ts);
            on_time.push(Event {
                user: MARKER.into(),
                n: 0,
                m: 0,
                ts: marker_ts,
            });
        }
        let burst = (i / 30 + rng.below(2) as i64) as usize;
        let ts = unique(base - rng.below(DISORDER as u64 + 1) as i64, used);
        on_time.push(Event {
            user: USERS[burst % USERS.len()].into(),
            n: rng.below(100) as i64 - 20,
            m: rng.below(5) as i64,
            ts,
        });
    }
    assert!(marker_placed, "the marker falls inside the phase");
    assert!(used.insert(t_end));
    on_time.push(Event {
        user: USERS[0].into(),
        n: 7,
        m: 1,
        ts: t_end,
    });
    let mut late = Vec::new();
    for _ in 0..LATE_PER_PHASE {
        let ts = unique(w - rng.below(4000) as i64, used);
        late.push(Event {
            user: USERS[rng.below(USERS.len() as u64) as usize].into(),
            n: rng.below(100) as i64,
            m: rng.below(5) as i64,
            ts,
        });
    }
    (on_time, late, w)
}

fn pipeline(dir: &std::path::Path, port: u16, shape: Shape, side: bool) -> std::path::PathBuf {
    // With `side`, records too late go to a side output, printed by a second sink.
    let side_output = if side {
        "    late-output: too-late
  - id: late
    type: side_output
    inputs: [win]
    tag: too-late
  - id: late-out
    type: print
    inputs: [late]
"
    } else {
        ""
    };
    let yaml = format!(
        r#"name: window-semantics
operators:
  - id: events
    type: socket
    port: {port}
    host: 127.0.0.1
    max-retries: 0
    format: json
    fields:
      - {{name: user, type: str}}
      - {{name: n, type: int}}
      - {{name: m, type: int}}
      - {{name: ts, type: int}}
    event-time: {{field: ts, max-out-of-orderness: {OUT_OF_ORDERNESS} ms}}
  - id: win
    type: window
    inputs: [events]
    key: user
    {}
    allowed-lateness: {LATENESS} ms
    aggregates:
      c: count()
      s: sum(n)
      lo: min(n)
      hi: max(n)
      f: first(n)
      l: last(n)
      d: count_distinct(m)
      a: avg(n)
{side_output}  - id: out
    type: print
    inputs: [win]
"#,
        shape.yaml()
    );
    let path = dir.join("window.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Collects the records floe prints (without the `2> ` subtask prefix); the thread ends at
/// the end of floe's output.
fn collect_stdout(child: &mut Child) -> (Arc<Mutex<Vec<String>>>, std::thread::JoinHandle<()>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let out = child.stdout.take().unwrap();
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let record = match line.split_once("> ") {
                Some((p, rest)) if p.chars().all(|c| c.is_ascii_digit()) => rest.to_string(),
                _ => line,
            };
            sink.lock().unwrap().push(record);
        }
    });
    (lines, reader)
}

/// Whether `have` holds every line of `want` at least as often.
fn covers(have: &[String], want: &[String]) -> bool {
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for h in have {
        *counts.entry(h.as_str()).or_default() += 1;
    }
    want.iter().all(|w| {
        let c = counts.entry(w.as_str()).or_default();
        *c -= 1;
        *c >= 0
    })
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn run(shape: Shape, parallelism: u32, seed: u64) {
    run_with(shape, parallelism, seed, false)
}

/// Window results have 11 fields, the side output's records (the events) 4.
fn is_event(line: &str) -> bool {
    line.split(',').count() == 4
}

fn run_with(shape: Shape, parallelism: u32, seed: u64, side: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let yaml = pipeline(tmp.path(), port, shape, side);
    let log = tmp.path().join("floe.log");
    let mut child = common::floe()
        .args(["run", "-p", &parallelism.to_string()])
        .arg(&yaml)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let (printed, reader) = collect_stdout(&mut child);
    let (mut socket, _) = listener.accept().unwrap();

    let mut model = Model::new(shape);
    let mut rng = Rng(seed);
    let mut used = BTreeSet::new();
    let mut next = 0;
    for _ in 0..PHASES {
        let (on_time, late, w) = phase(&mut next, &mut rng, &mut used);
        let text: String = on_time.iter().map(Event::json).collect();
        socket.write_all(text.as_bytes()).unwrap();
        for e in &on_time {
            model.add(e);
        }
        model.advance(w);
        let want = model.emitted.clone();
        let marker = model
            .emitted
            .iter()
            .any(|l| l.starts_with(&format!("({MARKER},")) && l.contains(&format!(",{},", w + 1)));
        assert!(marker, "the model fires the marker's window at {w}");
        common::wait_for(&format!("the results up to watermark {w}"), || {
            covers(&printed.lock().unwrap(), &want)
        });
        let text: String = late.iter().map(Event::json).collect();
        socket.write_all(text.as_bytes()).unwrap();
        for e in &late {
            model.add(e);
        }
    }
    drop(socket);
    let status = child.wait().unwrap();
    // Everything floe printed, read to its end.
    reader.join().unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "floe failed: {stderr}");
    model.advance(i64::MAX);
    let (late, results): (Vec<String>, Vec<String>) = printed
        .lock()
        .unwrap()
        .iter()
        .cloned()
        .partition(|l| is_event(l));
    assert_eq!(
        sorted(late),
        if side {
            sorted(model.late.clone())
        } else {
            Vec::new()
        },
        "{shape:?} at p {parallelism}: the side output's records"
    );
    let got = sorted(results);
    let want = sorted(model.emitted.clone());
    let missing: Vec<&String> = want.iter().filter(|w| !got.contains(w)).take(5).collect();
    let extra: Vec<&String> = got.iter().filter(|g| !want.contains(g)).take(5).collect();
    let totals: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("operator totals"))
        .collect();
    assert_eq!(
        got.len(),
        want.len(),
        "{shape:?} at p {parallelism}: missing {missing:?}, unexpected {extra:?}; model dropped {}; {totals:#?}",
        model.dropped
    );
    assert_eq!(got, want, "{shape:?} at p {parallelism}");
    eprintln!(
        "{shape:?} at p {parallelism}: {} results, {} records dropped as late",
        got.len(),
        model.dropped
    );
    assert!(model.dropped > 0, "the test drops some records");
    let totals = stderr
        .lines()
        .find(|l| l.contains("operator totals") && l.contains("operator=win"))
        .unwrap_or_else(|| panic!("no totals for the window in: {stderr}"));
    // Records sent to the side output are not discarded.
    let discarded = if side { 0 } else { model.dropped };
    assert!(
        totals.contains(&format!("records_discarded={discarded}")),
        "dropped {} by the definition: {totals}",
        model.dropped
    );
}

#[test]
fn tumbling_at_p1_and_p3() {
    run(Shape::Tumbling(1000), 1, 1);
    run(Shape::Tumbling(1000), 3, 2);
}

#[test]
fn sliding_at_p1_and_p3() {
    run(Shape::Sliding(2000, 500), 1, 3);
    run(Shape::Sliding(2000, 500), 3, 4);
}

#[test]
fn late_records_go_to_the_side_output_at_p1_and_p3() {
    run_with(Shape::Tumbling(1000), 1, 7, true);
    run_with(Shape::Session(250), 3, 8, true);
}

#[test]
fn session_at_p1_and_p3() {
    run(Shape::Session(250), 1, 5);
    run(Shape::Session(250), 3, 6);
}
