//! A power loss during checkpoints leaves the newest completed checkpoint, or a newer one, or
//! a clear refusal naming the file; never a checkpoint that restores wrong state, and never
//! the loss of a checkpoint whose `complete` had returned (after which the sinks commit).
//!
//! How: local checkpoint storage records every file-system operation it performs
//! (`floe::checkpoint::storage::fs_log`) while a store opens and completes three checkpoints
//! (full, and incremental with shared files), retention deleting the older ones. Then for every
//! prefix of that sequence (a power cut after each operation) this test builds every disk state
//! POSIX allows to survive:
//! - an operation followed (within the prefix) by an fsync of what it changed is durable: file
//!   contents by an fsync of the file; a name created, linked, renamed or removed by an fsync
//!   of its directory;
//! - anything else may or may not have reached the disk, independently of everything else
//!   (un-fsynced contents: nothing, half, or all of what was written), and a name survives
//!   only if the directory holding it does.
//!
//! Each state is written to a fresh directory and restored as `floe run -s latest` would:
//! find the newest checkpoint of the pipeline, load its `_metadata`, check its files, read its
//! state, and compare that with what was written for that checkpoint id.

use floe::checkpoint::metadata::{CheckpointMetadata, OperatorStateMeta, SnapshotKind};
use floe::checkpoint::restore::{
    check_files, find_latest, load_snapshot, load_state, map_checkpoint, TargetOperator,
};
use floe::checkpoint::storage::fs_log::{self, FsOp};
use floe::checkpoint::storage::FsCheckpointStore;
use floe::checkpoint::{CheckpointId, CheckpointStore, JobId, OperatorSnapshot, SubtaskSnapshot};
use floe::config::Config;
use floe::operators::sources::SourcePosition;
use floe::operators::RestoredState;
use floe::pipeline::OperatorId;
use floe::state::keyed::KeyedStore;
use floe::state::keygroup::{hash_str, KeyGroupRange};
use floe::state::snapshot::restore_keyed_values;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const NAME: &str = "power-loss";
const JOB: &str = "0123456789abcdef0123456789abcdef";
const MAX_P: u32 = 128;
const CHECKPOINTS: u64 = 3;
/// Above this many independent choices in one prefix, states are sampled (seeded), not all
/// enumerated; the all-durable and nothing-durable extremes are always in.
const MAX_STATES_PER_PREFIX: u64 = 1024;

/// Recording is process-wide: one scenario records at a time.
static RECORDING: Mutex<()> = Mutex::new(());

/// The counts checkpoint `n` holds: words `w0..w(8+n)`, with a delete of `w1` from 3 on.
fn counts(n: u64) -> BTreeMap<String, u64> {
    (0..8 + n)
        .filter(|i| !(n >= 3 && *i == 1))
        .map(|i| (format!("w{i}"), n * 100 + i))
        .collect()
}

fn position(n: u64) -> SourcePosition {
    SourcePosition::Datagen {
        next_line: n * 1000,
    }
}

fn config(ck: &Path, incremental: bool) -> Config {
    let mut c = Config::default();
    c.state.checkpoints_dir = Some(format!("file://{}", ck.display()));
    c.state.inline_threshold = 1; // state goes to files, the part worth testing
    c.state.incremental = incremental;
    c.state.num_retained = 1;
    c
}

fn snapshot(n: u64, operator: &str, state: OperatorSnapshot) -> SubtaskSnapshot {
    SubtaskSnapshot {
        checkpoint_id: CheckpointId(n),
        operator_id: OperatorId(operator.into()),
        subtask: 0,
        parallelism: 1,
        max_parallelism: MAX_P,
        state,
    }
}

/// Opens a store under `ck` and completes checkpoints 1..=3, recording every file operation.
fn record(ck: &Path, incremental: bool) -> Vec<FsOp> {
    let _one = RECORDING.lock().unwrap_or_else(|p| p.into_inner());
    fs_log::start();
    let c = config(ck, incremental);
    let store = FsCheckpointStore::new(&c.state, &c.checkpointing, JobId(JOB.into()), NAME)
        .expect("open the store");
    let mut keyed = KeyedStore::new(KeyGroupRange::for_subtask(0, 1, MAX_P), MAX_P);
    for n in 1..=CHECKPOINTS {
        let want = counts(n);
        for (w, v) in &want {
            *keyed
                .get_or_insert(hash_str(w.as_bytes()), w.as_bytes(), 0)
                .unwrap() = *v;
        }
        if n >= 3 {
            keyed.remove(hash_str(b"w1"), b"w1").unwrap();
        }
        fs_log::mark(format!("begin {n}"));
        let source = store
            .write_subtask(snapshot(
                n,
                "gen",
                OperatorSnapshot::blob(position(n).to_blob()),
            ))
            .unwrap();
        let state = store
            .write_subtask(snapshot(
                n,
                "count",
                OperatorSnapshot::Keyed(Arc::new(keyed.snapshot())),
            ))
            .unwrap();
        let op = |id: &str, s| OperatorStateMeta {
            operator_id: id.into(),
            parallelism: 1,
            max_parallelism: MAX_P,
            subtasks: vec![s],
        };
        store
            .complete(CheckpointMetadata {
                checkpoint_id: n,
                job_id: JobId(JOB.into()),
                job_name: NAME.into(),
                kind: SnapshotKind::Checkpoint,
                trigger_timestamp_ms: 1_000 + n,
                completion_timestamp_ms: 2_000 + n,
                operators: vec![op("gen", source), op("count", state)],
            })
            .unwrap();
        fs_log::mark(format!("complete {n}"));
    }
    let ops = fs_log::stop();
    // Everything under the test's own directory, which holds `ck` (and whose fsync makes
    // `ck` itself durable); other tests' operations are elsewhere.
    let ck = ck.parent().expect("ck is in the test's directory");
    ops.into_iter()
        .filter(|op| match op {
            FsOp::Mark(_) => true,
            FsOp::HardLink { from, to } | FsOp::Rename { from, to } => {
                from.starts_with(ck) || to.starts_with(ck)
            }
            FsOp::Write { path, .. } => path.starts_with(ck),
            FsOp::CreateDir(p)
            | FsOp::CreateFile(p)
            | FsOp::SyncFile(p)
            | FsOp::SyncDir(p)
            | FsOp::RemoveFile(p)
            | FsOp::RemoveDirAll(p) => p.starts_with(ck),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The crash model

/// Which inode each operation touched, from replaying the whole sequence as it happened.
fn inodes(ops: &[FsOp]) -> Vec<Option<usize>> {
    let mut names: HashMap<PathBuf, usize> = HashMap::new();
    let mut next = 0;
    ops.iter()
        .map(|op| match op {
            FsOp::CreateFile(p) => {
                let ino = *names.entry(p.clone()).or_insert_with(|| {
                    next += 1;
                    next
                });
                Some(ino)
            }
            FsOp::Write { path, .. } | FsOp::SyncFile(path) => names.get(path).copied(),
            FsOp::HardLink { from, to } => {
                let ino = names.get(from).copied();
                if let Some(i) = ino {
                    names.insert(to.clone(), i);
                }
                ino
            }
            FsOp::Rename { from, to } => {
                let ino = names.remove(from);
                if let Some(i) = ino {
                    names.insert(to.clone(), i);
                }
                ino
            }
            FsOp::RemoveFile(p) => names.remove(p),
            FsOp::RemoveDirAll(d) => {
                names.retain(|p, _| !p.starts_with(d));
                None
            }
            _ => None,
        })
        .collect()
}

/// The directories whose fsync makes an operation's names durable (none: not a name change).
fn parents(op: &FsOp) -> Vec<&Path> {
    fn parent(p: &Path) -> Option<&Path> {
        p.parent()
    }
    match op {
        FsOp::CreateDir(p) | FsOp::CreateFile(p) | FsOp::RemoveFile(p) | FsOp::RemoveDirAll(p) => {
            parent(p).into_iter().collect()
        }
        FsOp::HardLink { to, .. } => parent(to).into_iter().collect(),
        FsOp::Rename { from, to } => parent(from).into_iter().chain(parent(to)).collect(),
        _ => Vec::new(),
    }
}

/// For a power cut after `ops[..k]`: per operation, whether it is certainly durable.
fn durable(ops: &[FsOp], ino: &[Option<usize>], k: usize) -> Vec<bool> {
    (0..k)
        .map(|i| match &ops[i] {
            FsOp::Write { .. } => (i + 1..k).any(|j| {
                matches!(ops[j], FsOp::SyncFile(_)) && ino[j].is_some() && ino[j] == ino[i]
            }),
            op => {
                let dirs = parents(op);
                !dirs.is_empty()
                    && dirs
                        .iter()
                        .all(|d| (i + 1..k).any(|j| matches!(&ops[j], FsOp::SyncDir(s) if s == d)))
            }
        })
        .collect()
}

/// What an operation that may or may not have reached the disk did, in one state.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fate {
    Lost,
    Half,
    Kept,
}

/// The disk after the cut: files with their bytes, and directories.
#[derive(Default)]
struct Disk {
    dirs: BTreeSet<PathBuf>,
    files: BTreeMap<PathBuf, usize>,
    data: HashMap<usize, Vec<u8>>,
}

/// Applies `ops[..k]` as far as each survived: certainly durable ones, and the uncertain
/// ones (in order) as `fates` decides.
fn replay(ops: &[FsOp], ino: &[Option<usize>], sure: &[bool], fates: &[Fate]) -> Disk {
    let mut disk = Disk::default();
    let mut uncertain = fates.iter();
    for (i, op) in ops.iter().enumerate().take(sure.len()) {
        if matches!(op, FsOp::Mark(_) | FsOp::SyncDir(_) | FsOp::SyncFile(_)) {
            continue;
        }
        let fate = if sure[i] {
            Fate::Kept
        } else {
            *uncertain.next().expect("a fate per uncertain operation")
        };
        match op {
            FsOp::Write { bytes, .. } => {
                let kept = match fate {
                    Fate::Lost => Vec::new(),
                    Fate::Half => bytes[..bytes.len() / 2].to_vec(),
                    Fate::Kept => bytes.clone(),
                };
                disk.data.insert(ino[i].expect("written file"), kept);
            }
            _ if fate == Fate::Lost => {}
            FsOp::CreateDir(p) => {
                disk.dirs.insert(p.clone());
            }
            FsOp::CreateFile(p) => {
                let ino = ino[i].expect("created file");
                disk.data.insert(ino, Vec::new());
                disk.files.insert(p.clone(), ino);
            }
            FsOp::HardLink { to, .. } => {
                disk.files.insert(to.clone(), ino[i].expect("linked file"));
            }
            FsOp::Rename { from, to } => {
                disk.files.remove(from);
                disk.files.insert(to.clone(), ino[i].expect("renamed file"));
            }
            FsOp::RemoveFile(p) => {
                disk.files.remove(p);
            }
            FsOp::RemoveDirAll(d) => {
                disk.files.retain(|p, _| !p.starts_with(d));
                disk.dirs.retain(|p| !p.starts_with(d));
            }
            FsOp::Mark(_) | FsOp::SyncDir(_) | FsOp::SyncFile(_) => unreachable!(),
        }
    }
    disk
}

/// How many ways each uncertain operation of the prefix can have gone.
fn choices(ops: &[FsOp], sure: &[bool]) -> Vec<&'static [Fate]> {
    const WRITE: &[Fate] = &[Fate::Lost, Fate::Half, Fate::Kept];
    const NAME: &[Fate] = &[Fate::Lost, Fate::Kept];
    sure.iter()
        .zip(ops)
        .filter(|(sure, op)| {
            !**sure && !matches!(op, FsOp::Mark(_) | FsOp::SyncDir(_) | FsOp::SyncFile(_))
        })
        .map(|(_, op)| match op {
            FsOp::Write { .. } => WRITE,
            _ => NAME,
        })
        .collect()
}

/// Every combination of fates (or a seeded sample of them, with both extremes).
fn combinations(dims: &[&'static [Fate]], seed: u64) -> Vec<Vec<Fate>> {
    let total = dims
        .iter()
        .try_fold(1u64, |acc, d| acc.checked_mul(d.len() as u64))
        .unwrap_or(u64::MAX);
    let pick = |mut n: u64| -> Vec<Fate> {
        dims.iter()
            .map(|d| {
                let f = d[(n % d.len() as u64) as usize];
                n /= d.len() as u64;
                f
            })
            .collect()
    };
    if total <= MAX_STATES_PER_PREFIX {
        return (0..total).map(pick).collect();
    }
    let mut rng = seed;
    let mut out = vec![
        dims.iter().map(|d| d[0]).collect(),
        dims.iter().map(|d| d[d.len() - 1]).collect(),
    ];
    while (out.len() as u64) < MAX_STATES_PER_PREFIX {
        rng = rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = rng;
        out.push(
            dims.iter()
                .map(|d| {
                    z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    d[((z >> 33) % d.len() as u64) as usize]
                })
                .collect(),
        );
    }
    out
}

/// Writes `disk` under `to` (paths rebased from `from`); a name whose directory did not
/// survive is lost with it.
fn materialize(disk: &Disk, from: &Path, to: &Path) {
    let alive = |p: &Path| {
        p.ancestors()
            .skip(1)
            .take_while(|a| *a != from)
            .all(|a| disk.dirs.contains(a))
    };
    let rebase = |p: &Path| to.join(p.strip_prefix(from).expect("under the root"));
    for d in disk.dirs.iter().filter(|d| alive(d)) {
        std::fs::create_dir_all(rebase(d)).unwrap();
    }
    for (f, ino) in disk.files.iter().filter(|(f, _)| alive(f)) {
        std::fs::write(rebase(f), &disk.data[ino]).unwrap();
    }
}

/// One line for an operation, paths relative to the recorded root.
fn describe(op: &FsOp) -> String {
    let short = |p: &Path| {
        let s = p.display().to_string();
        s.split_once("/recorded/")
            .map_or(s.clone(), |(_, r)| r.to_string())
    };
    match op {
        FsOp::Write { path, bytes } => format!("write {} ({} bytes)", short(path), bytes.len()),
        FsOp::HardLink { from, to } => format!("link {} -> {}", short(from), short(to)),
        FsOp::Rename { from, to } => format!("rename {} -> {}", short(from), short(to)),
        FsOp::CreateDir(p) => format!("mkdir {}", short(p)),
        FsOp::CreateFile(p) => format!("create {}", short(p)),
        FsOp::SyncFile(p) => format!("fsync {}", short(p)),
        FsOp::SyncDir(p) => format!("fsync dir {}", short(p)),
        FsOp::RemoveFile(p) => format!("unlink {}", short(p)),
        FsOp::RemoveDirAll(p) => format!("rm -r {}", short(p)),
        FsOp::Mark(m) => format!("-- {m}"),
    }
}

/// The uncertain operations of a prefix, described, in the order of their fates.
fn uncertain(ops: &[FsOp], sure: &[bool]) -> Vec<String> {
    sure.iter()
        .zip(ops)
        .filter(|(sure, op)| {
            !**sure && !matches!(op, FsOp::Mark(_) | FsOp::SyncDir(_) | FsOp::SyncFile(_))
        })
        .map(|(_, op)| describe(op))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Restoring a state

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// `-s latest` restored checkpoint n with exactly the state written for n.
    Restored(u64),
    /// No checkpoint of the pipeline: a fresh start.
    Nothing,
    /// Refused, with this message.
    Refused(String),
}

/// Restores checkpoint `dir` completely and checks its state is what was written for its id.
fn restore(dir: &Path) -> Result<u64, String> {
    let loaded = load_snapshot(dir).map_err(|e| e.to_string())?;
    check_files(&loaded).map_err(|e| e.to_string())?;
    let targets: Vec<TargetOperator> = ["gen", "count"]
        .iter()
        .map(|id| TargetOperator {
            id: id.to_string(),
            parallelism: 1,
            max_parallelism: MAX_P,
            max_parallelism_explicit: false,
        })
        .collect();
    let mapping =
        map_checkpoint(&loaded.metadata, "x", &targets, false).map_err(|e| e.to_string())?;
    let state = load_state(&loaded, &mapping, MAX_P).map_err(|e| e.to_string())?;
    let n = loaded.metadata.checkpoint_id;
    let mut got = BTreeMap::new();
    if let Some(RestoredState::Keyed(runs)) = state.operators.get(&(OperatorId("count".into()), 0))
    {
        let store = restore_keyed_values(runs).map_err(|e| e.to_string())?;
        for (_, g) in store.groups() {
            for (k, v) in g.iter() {
                got.insert(String::from_utf8_lossy(k).into_owned(), v);
            }
        }
    }
    let pos = match state.operators.get(&(OperatorId("gen".into()), 0)) {
        Some(RestoredState::Blobs(blobs)) if blobs.len() == 1 => {
            SourcePosition::from_blob(&blobs[0].blob).ok()
        }
        _ => None,
    };
    assert!(
        got == counts(n) && pos == Some(position(n)),
        "WRONG STATE restored from {}: checkpoint {n} gave {got:?} at {pos:?}",
        dir.display()
    );
    Ok(n)
}

fn outcome(ck: &Path) -> Outcome {
    let latest = match find_latest(&format!("file://{}", ck.display()), NAME) {
        Ok(dir) => dir,
        Err(floe::checkpoint::restore::RestoreError::NoLatest { .. }) => return Outcome::Nothing,
        Err(e) => return Outcome::Refused(e.to_string()),
    };
    match restore(&latest) {
        Ok(n) => Outcome::Restored(n),
        Err(e) => Outcome::Refused(e),
    }
}

/// The checkpoints in `ck` that restore completely, by id.
fn intact(ck: &Path) -> Vec<u64> {
    let job = ck.join(JOB);
    let mut ids: Vec<u64> = std::fs::read_dir(&job)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    ids.sort_unstable();
    ids.into_iter()
        .filter(|n| restore(&job.join(format!("chk-{n}"))).is_ok())
        .collect()
}

/// What one prefix's states gave, and what was wrong with any.
#[derive(Default, Debug)]
struct Tally {
    states: u64,
    outcomes: BTreeMap<String, u64>,
    problems: Vec<String>,
}

fn check_prefix(ops: &[FsOp], ino: &[Option<usize>], k: usize, scratch: &Path, tally: &mut Tally) {
    let from = scratch.join("recorded");
    let completed = ops[..k]
        .iter()
        .filter_map(|op| match op {
            FsOp::Mark(m) => m.strip_prefix("complete ")?.parse::<u64>().ok(),
            _ => None,
        })
        .max();
    let sure = durable(ops, ino, k);
    let dims = choices(&ops[..k], &sure);
    for (s, fates) in combinations(&dims, k as u64).into_iter().enumerate() {
        let disk = replay(ops, ino, &sure, &fates);
        let state = scratch.join(format!("state-{k}-{s}"));
        std::fs::create_dir(&state).unwrap();
        materialize(&disk, &from, &state);
        let ck = state.join("ck");
        let got = outcome(&ck);
        tally.states += 1;
        let kind = match &got {
            Outcome::Restored(n) => format!("restored chk-{n}"),
            Outcome::Nothing => "no checkpoint".into(),
            Outcome::Refused(e) => {
                eprintln!("REFUSED {k}: {e}");
                "refused".into()
            }
        };
        *tally.outcomes.entry(kind).or_default() += 1;
        let problem = match (&got, completed) {
            (Outcome::Restored(n), Some(c)) if *n < c => Some(format!(
                "restored chk-{n}, older than chk-{c}, which had completed"
            )),
            (Outcome::Nothing, Some(c)) => Some(format!("chk-{c} had completed and is gone")),
            (Outcome::Refused(e), _) if !e.contains(&state.display().to_string()) => {
                Some(format!("refused without naming the file: {e}"))
            }
            (Outcome::Refused(e), Some(c)) if !intact(&ck).iter().any(|n| *n >= c) => Some(
                format!("chk-{c} had completed and nothing as new is intact: {e}"),
            ),
            _ => None,
        };
        if let Some(p) = problem {
            if tally.problems.len() < 5 {
                tally.problems.push(format!(
                    "power cut after operation {k}, uncertain operations {:?} -> {fates:?}: {p}",
                    uncertain(ops, &sure)
                ));
            }
        }
        std::fs::remove_dir_all(&state).unwrap();
    }
}

fn power_loss_at_every_point(incremental: bool) {
    let scratch = tempfile::tempdir().unwrap();
    let recorded = scratch.path().join("recorded");
    std::fs::create_dir(&recorded).unwrap();
    let ops = record(&recorded.join("ck"), incremental);
    assert!(
        ops.iter()
            .any(|o| matches!(o, FsOp::HardLink { .. } | FsOp::Rename { .. }))
            && ops.iter().any(|o| matches!(o, FsOp::RemoveDirAll(_))),
        "the record lacks a kind of step: {:?}",
        ops.iter().map(describe).collect::<Vec<_>>()
    );
    let ino = inodes(&ops);
    let mut tally = Tally::default();
    for k in 0..=ops.len() {
        check_prefix(&ops, &ino, k, scratch.path(), &mut tally);
    }
    eprintln!(
        "power loss ({}): {} operations, {} disk states: {:?}",
        if incremental { "incremental" } else { "full" },
        ops.len(),
        tally.states,
        tally.outcomes
    );
    assert!(
        tally.problems.is_empty(),
        "{} operations recorded:\n{}\nproblems:\n{}",
        ops.len(),
        ops.iter()
            .enumerate()
            .map(|(i, o)| format!("  {}: {}", i + 1, describe(o)))
            .collect::<Vec<_>>()
            .join("\n"),
        tally.problems.join("\n")
    );
}

#[test]
fn power_loss_during_full_checkpoints() {
    power_loss_at_every_point(false);
}

#[test]
fn power_loss_during_incremental_checkpoints() {
    power_loss_at_every_point(true);
}
