//! Operators through a snapshot and a restore: `key_by` restored from its keyed state
//! continues counting exactly as an uninterrupted run (also at another parallelism, and
//! through a chain of deltas); datagen and the file source resume at their position with
//! nothing lost or repeated.

use floe::checkpoint::OperatorSnapshot;
use floe::operators::sources::datagen::DatagenConfig;
use floe::operators::sources::file::FileSourceConfig;
use floe::operators::sources::SourcePosition;
use floe::operators::transforms::key_by::{KeyBy, KeyByConfig};
use floe::operators::{
    BuildContext, Operator, RestoredState, SourceConfig, SourceEvent, SourceRuntime,
};
use floe::record::{Batch, Column, DataType, Schema, StrColumnBuilder, Value};
use floe::state::keyed::KeyedSnapshot;
use floe::state::keygroup::{hash_str, operator_index, KeyGroupRange};
use floe::state::snapshot::keyed_values_format;
use floe::state::snapshot::{decode_blob, encode_delta, encode_full, EncodedBlob};
use floe::state::KeyedRuns;
use std::collections::BTreeMap;
use std::path::Path;

const MAX_P: u32 = 128;

fn ctx(subtask: u32, parallelism: u32, base_dir: &Path) -> BuildContext {
    BuildContext {
        operator_id: "counts".into(),
        subtask,
        parallelism,
        max_parallelism: MAX_P,
        base_dir: base_dir.to_path_buf(),
        delta_checkpoints: true,
    }
}

fn schema() -> Schema {
    Schema::new([("word", DataType::Str)])
}

fn key_by(subtask: u32, parallelism: u32) -> KeyBy {
    let c: KeyByConfig = serde_yaml::from_str("{key: word, aggregate: count}").unwrap();
    KeyBy::new(&c, &schema(), &ctx(subtask, parallelism, Path::new("."))).unwrap()
}

/// Batch `n` of the input: 500 words over a vocabulary of 3000 (short and long words).
fn words(n: u64) -> Vec<String> {
    (0..500u64)
        .map(|i| {
            let id = (n * 500 + i).wrapping_mul(2_654_435_761) % 3000;
            if id.is_multiple_of(5) {
                format!("a-long-word-number-{id}")
            } else {
                format!("w{id}")
            }
        })
        .collect()
}

fn batch(ws: &[String]) -> Batch {
    let mut b = StrColumnBuilder::default();
    for w in ws {
        b.push(w.as_bytes());
    }
    Batch::new(vec![Column::Str(b.finish())])
}

/// Per word, the sequence of rolling counts the operator emitted.
type Outputs = BTreeMap<String, Vec<i64>>;

fn run(op: &mut KeyBy, input: &[String], out: &mut Outputs) {
    let mut batches = Vec::new();
    op.process(batch(input), &mut batches).unwrap();
    for b in &batches {
        for i in 0..b.len() {
            let row = b.row(i);
            let (Value::Str(w), Value::Int(c)) = (&row[0], &row[1]) else {
                panic!("unexpected row {row:?}")
            };
            out.entry(String::from_utf8_lossy(w).into_owned())
                .or_default()
                .push(*c);
        }
    }
}

fn keyed(snapshot: Option<OperatorSnapshot>) -> KeyedSnapshot {
    match snapshot.as_ref().and_then(OperatorSnapshot::keyed_values) {
        Some(s) => s.clone(),
        None => panic!("key_by should snapshot keyed state, got {snapshot:?}"),
    }
}

/// The runs of `range` of a chain of blobs, in order, as a restore hands them over (each
/// checked by decoding it).
fn restore(chain: &[EncodedBlob], range: KeyGroupRange) -> RestoredState {
    let mut runs = Vec::new();
    for blob in chain {
        decode_blob(&blob.bytes, &blob.groups, range).unwrap();
        for g in blob.groups.iter().filter(|g| range.contains(g.key_group)) {
            let (s, e) = (g.offset as usize, (g.offset + g.len) as usize);
            runs.push((g.key_group, blob.bytes[s..e].to_vec()));
        }
    }
    RestoredState::Keyed(KeyedRuns {
        format: keyed_values_format(),
        range,
        max_parallelism: MAX_P,
        runs,
    })
}

fn uninterrupted(batches: u64) -> Outputs {
    let mut op = key_by(0, 1);
    let mut out = Outputs::new();
    for n in 0..batches {
        run(&mut op, &words(n), &mut out);
    }
    out
}

#[test]
fn key_by_restored_from_a_chain_continues_counting() {
    let want = uninterrupted(12);

    let mut out = Outputs::new();
    let mut op = key_by(0, 1);
    let mut chain = Vec::new();
    for n in 0..8 {
        run(&mut op, &words(n), &mut out);
        // A checkpoint every other batch: the first full, then deltas.
        if !n.is_multiple_of(2) {
            let snap = keyed(op.snapshot_state());
            chain.push(if chain.is_empty() {
                encode_full(&snap)
            } else {
                encode_delta(&snap)
            });
        }
    }
    assert_eq!(chain.len(), 4);
    // The failure: everything after the last checkpoint is lost with the operator.
    drop(op);
    let mut fresh = key_by(0, 1);
    fresh
        .restore_state(restore(&chain, KeyGroupRange::for_subtask(0, 1, MAX_P)))
        .unwrap();
    for n in 8..12 {
        run(&mut fresh, &words(n), &mut out);
    }
    assert_eq!(out, want);
}

#[test]
fn key_by_restored_at_another_parallelism_continues_counting() {
    let want = uninterrupted(10);
    let mut out = Outputs::new();
    let mut op = key_by(0, 1);
    for n in 0..5 {
        run(&mut op, &words(n), &mut out);
    }
    let blob = encode_full(&keyed(op.snapshot_state()));
    let mut ops: Vec<KeyBy> = (0..3)
        .map(|s| {
            let mut o = key_by(s, 3);
            o.restore_state(restore(
                std::slice::from_ref(&blob),
                KeyGroupRange::for_subtask(s, 3, MAX_P),
            ))
            .unwrap();
            o
        })
        .collect();
    for n in 5..10 {
        // Route as the keyed exchange does: by key group.
        let mut parts: Vec<Vec<String>> = vec![Vec::new(); 3];
        for w in words(n) {
            let g = hash_str(w.as_bytes()).key_group(MAX_P);
            parts[operator_index(g, 3, MAX_P) as usize].push(w);
        }
        for (op, part) in ops.iter_mut().zip(&parts) {
            run(op, part, &mut out);
        }
    }
    assert_eq!(out, want);
}

#[test]
fn key_by_refuses_state_of_other_key_groups() {
    let mut op = key_by(0, 2);
    let err = op
        .restore_state(restore(&[], KeyGroupRange::for_subtask(1, 2, MAX_P)))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("\"counts\"") && msg.contains("[0, 63]") && msg.contains("[64, 127]"),
        "{msg}"
    );
}

fn lines_of(event: SourceEvent) -> Option<Vec<String>> {
    match event {
        SourceEvent::Batch(b) => {
            let Column::Str(c) = &b.columns[0] else {
                panic!("expected a text column")
            };
            Some(
                c.iter()
                    .map(|l| String::from_utf8_lossy(l).into_owned())
                    .collect(),
            )
        }
        SourceEvent::Idle => Some(Vec::new()),
        SourceEvent::End => None,
    }
}

/// Up to `batches` batches (all if `None`), then the source's position.
async fn read(
    src: &mut SourceRuntime,
    batches: Option<usize>,
) -> (Vec<String>, Option<SourcePosition>) {
    let mut out = Vec::new();
    let mut n = 0;
    while batches.is_none_or(|b| n < b) {
        match lines_of(src.next().await.unwrap()) {
            Some(lines) => {
                n += usize::from(!lines.is_empty());
                out.extend(lines);
            }
            None => break,
        }
    }
    (out, src.position())
}

#[tokio::test]
async fn datagen_resumes_at_its_position() {
    let cfg = SourceConfig::Datagen(DatagenConfig {
        lines: Some(10_000),
        words_per_line: 3,
        ..DatagenConfig::default()
    });
    let dir = Path::new(".");
    for parallelism in [1u32, 3] {
        let mut all = Vec::new();
        let mut resumed = Vec::new();
        for s in 0..parallelism {
            let c = ctx(s, parallelism, dir);
            let (whole, _) = read(&mut cfg.build(&c).unwrap(), None).await;
            let mut first = cfg.build(&c).unwrap();
            let (before, pos) = read(&mut first, Some(2)).await;
            let pos = pos.expect("datagen has a position");
            assert!(matches!(pos, SourcePosition::Datagen { .. }), "{pos:?}");
            // Lines generated after the checkpoint but lost with the failure are replayed.
            read(&mut first, Some(1)).await;
            let mut again = cfg.build_restored(&c, Some(&pos)).unwrap();
            let (after, end) = read(&mut again, None).await;
            let resumed_share: Vec<String> = before.into_iter().chain(after).collect();
            assert_eq!(resumed_share, whole, "subtask {s} of {parallelism}");
            assert!(
                matches!(end, Some(SourcePosition::Datagen { next_line }) if next_line >= 10_000),
                "{end:?}"
            );
            all.extend(whole);
            resumed.extend(resumed_share);
        }
        assert_eq!(all.len(), 10_000);
        assert_eq!(resumed, all);
    }
}

#[tokio::test]
async fn file_source_resumes_at_its_position() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mut expected = Vec::new();
    for f in 0..3 {
        let lines: Vec<String> = (0..2500).map(|i| format!("file {f} line {i}")).collect();
        // The last file ends without a newline: its last line still counts once.
        let text = lines.join("\n") + if f < 2 { "\n" } else { "" };
        std::fs::write(data.join(format!("{f}.txt")), text).unwrap();
        expected.extend(lines);
    }
    let cfg = SourceConfig::File(FileSourceConfig::new("data"));
    let c = ctx(0, 1, tmp.path());
    for cut in [1usize, 3, 5, 8] {
        let mut first = cfg.build(&c).unwrap();
        let (before, pos) = read(&mut first, Some(cut)).await;
        let Some(SourcePosition::Files(files)) = &pos else {
            panic!("expected file positions, got {pos:?}")
        };
        // Named relative to the pipeline's directory, as the pipeline names them.
        assert!(
            files.iter().all(|(name, _)| name.starts_with("data")),
            "{files:?}"
        );
        read(&mut first, Some(2)).await;
        let mut again = cfg.build_restored(&c, pos.as_ref()).unwrap();
        let (after, _) = read(&mut again, None).await;
        let got: Vec<String> = before.into_iter().chain(after).collect();
        assert_eq!(got.len(), expected.len(), "cut after {cut} batches");
        assert_eq!(got, expected, "cut after {cut} batches");
    }
    // The pipeline's directory moved with its data between the checkpoint and the restore:
    // relative names still resolve.
    let mut first = cfg.build(&c).unwrap();
    let (before, pos) = read(&mut first, Some(4)).await;
    drop(first);
    let moved = tmp.path().join("moved");
    std::fs::create_dir(&moved).unwrap();
    std::fs::rename(&data, moved.join("data")).unwrap();
    let mut again = cfg
        .build_restored(&ctx(0, 1, &moved), pos.as_ref())
        .unwrap();
    let (after, _) = read(&mut again, None).await;
    let got: Vec<String> = before.into_iter().chain(after).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn a_position_of_another_source_type_is_an_error() {
    let cfg = SourceConfig::Datagen(DatagenConfig::default());
    let err = cfg
        .build_restored(
            &ctx(0, 1, Path::new(".")),
            Some(&SourcePosition::Files(vec![("x".into(), 3)])),
        )
        .err()
        .expect("a file position cannot restore a datagen");
    let msg = err.to_string();
    assert!(
        msg.contains("\"counts\"") && msg.contains("`file`") && msg.contains("datagen"),
        "{msg}"
    );
}
