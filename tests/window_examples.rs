//! The shipped window examples run as a user runs them: `pipelines/events-window.yaml`
//! through the binary gives, for its data file, exactly the windows computed here from the
//! definition (Flink's `TimeWindow`s: a view at `t` is in the minute `[t - t mod 60 s, +1 min)`;
//! a user's sessions are the views whose `[t, t + 5 min)` overlap or touch, merged), with the
//! line that is not JSON dropped and counted; `pipelines/socket-window-wordcount.yaml` counts
//! the words of a socket per processing-time window.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

struct View {
    ms: i64,
    user: String,
    page: String,
    bytes: i64,
}

/// The data file's views, read here with serde_json and chrono (not floe's parser); lines
/// that are not JSON objects are counted.
fn views() -> (Vec<View>, usize) {
    let text = std::fs::read_to_string(repo().join("pipelines/data/page-views.jsonl")).unwrap();
    let (mut out, mut bad) = (Vec::new(), 0);
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            bad += 1;
            continue;
        };
        let time = chrono::DateTime::parse_from_rfc3339(v["time"].as_str().unwrap()).unwrap();
        out.push(View {
            ms: time.timestamp_millis(),
            user: v["user"].as_str().unwrap().into(),
            page: v["page"].as_str().unwrap().into(),
            bytes: v["bytes"].as_i64().unwrap(),
        });
    }
    (out, bad)
}

/// `(user,start,end,views,bytes,largest)` per user and minute.
fn minutes(views: &[View]) -> BTreeSet<String> {
    let mut w: BTreeMap<(&str, i64), (i64, i64, i64)> = BTreeMap::new();
    for v in views {
        let start = v.ms - v.ms.rem_euclid(60_000);
        let e = w.entry((&v.user, start)).or_insert((0, 0, i64::MIN));
        e.0 += 1;
        e.1 += v.bytes;
        e.2 = e.2.max(v.bytes);
    }
    w.into_iter()
        .map(|((u, s), (n, b, m))| format!("({u},{s},{},{n},{b},{m})", s + 60_000))
        .collect()
}

/// `(user,start,end,views,distinct pages,first page,last page)` per session (gap 5 min):
/// first and last by time.
fn sessions(views: &[View]) -> BTreeSet<String> {
    const GAP: i64 = 300_000;
    let mut by_user: BTreeMap<&str, Vec<&View>> = BTreeMap::new();
    for v in views {
        by_user.entry(&v.user).or_default().push(v);
    }
    let mut out = BTreeSet::new();
    for (user, mut vs) in by_user {
        vs.sort_by_key(|v| v.ms);
        let mut groups: Vec<Vec<&View>> = Vec::new();
        for v in vs {
            match groups.last_mut() {
                Some(g) if v.ms <= g.last().unwrap().ms + GAP => g.push(v),
                _ => groups.push(vec![v]),
            }
        }
        for g in groups {
            let pages: BTreeSet<&str> = g.iter().map(|v| v.page.as_str()).collect();
            out.insert(format!(
                "({user},{},{},{},{},{},{})",
                g[0].ms,
                g.last().unwrap().ms + GAP,
                g.len(),
                pages.len(),
                g[0].page,
                g.last().unwrap().page
            ));
        }
    }
    out
}

#[test]
fn the_event_time_example_gives_every_window_of_its_data() {
    let (views, bad) = views();
    assert!(bad >= 1, "the example shows a dropped line");
    let dir = tempfile::tempdir().unwrap();
    let out = common::floe()
        .current_dir(dir.path())
        .env_remove("FLOE_CONF_DIR")
        .env("FLOE_REST_PORT", "0")
        .env("RUST_LOG", "info")
        .arg("run")
        .arg(repo().join("pipelines/events-window.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let records = |text: &str| -> BTreeSet<String> {
        text.lines()
            .filter(|l| l.starts_with('('))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        records(&stdout),
        minutes(&views),
        "minutes; stderr: {stderr}"
    );
    assert_eq!(records(&stderr), sessions(&views), "sessions");
    // The bad line is logged with where it is.
    assert!(
        stderr.contains("page-views.jsonl byte ") && stderr.contains("dropped a record"),
        "{stderr}"
    );
    let totals = stderr
        .lines()
        .find(|l| l.contains("operator totals") && l.contains("operator=views"))
        .unwrap_or_else(|| panic!("no totals for the source: {stderr}"));
    assert!(
        totals.contains(&format!("records_discarded={bad}")),
        "{totals}"
    );
}

#[test]
fn the_processing_time_example_counts_words_per_window() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let text = std::fs::read_to_string(repo().join("pipelines/socket-window-wordcount.yaml"))
        .unwrap()
        // The socket's end ends the job (by default the source reconnects for ever).
        .replace("port: 8888", &format!("port: {port}\n    max-retries: 0"))
        .replace("host: localhost", "host: 127.0.0.1");
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(&pipeline, text).unwrap();
    let mut child = common::floe()
        .current_dir(dir.path())
        .env_remove("FLOE_CONF_DIR")
        .env("FLOE_REST_PORT", "0")
        .arg("run")
        .arg(&pipeline)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (mut socket, _) = listener.accept().unwrap();
    socket.write_all(b"to be or not to be\n").unwrap();
    // The socket closing ends the input: its end fires the open window.
    drop(socket);
    let stdout = child.stdout.take().unwrap();
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    let mut bounds = BTreeSet::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let f: Vec<&str> = line.trim_matches(['(', ')']).split(',').collect();
        assert_eq!(f.len(), 4, "{line}");
        let (start, end): (i64, i64) = (f[1].parse().unwrap(), f[2].parse().unwrap());
        assert_eq!(end - start, 5_000, "{line}");
        assert_eq!(start % 5_000, 0, "{line}");
        bounds.insert((start, end));
        *counts.entry(f[0].into()).or_default() += f[3].parse::<i64>().unwrap();
    }
    assert!(child.wait().unwrap().success());
    let want: BTreeMap<String, i64> = [("to", 2), ("be", 2), ("or", 1), ("not", 1)]
        .map(|(w, n)| (w.to_string(), n))
        .into();
    // The line may straddle two windows of the clock; the counts add up either way.
    assert_eq!(counts, want);
    assert!(bounds.len() <= 2, "{bounds:?}");
}
