//! The crash test runner: runs the real `floe` binary on a bounded, deterministic pipeline
//! with checkpoints, kills it with SIGKILL at random moments, restarts it from the newest
//! checkpoint, and hands back the committed output once a run finishes on its own.
//!
//! Nothing here sleeps for correctness: the runner waits for files (a new `chk-*` directory,
//! a new `_metadata`) or for the process to exit; the only sleeps are the random kill delays,
//! which are the point, and short polling intervals while waiting for those files.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The `-s` arguments of a restart: `-s latest` (floe picks the newest retained checkpoint of
/// the pipeline), or none when no checkpoint completed yet (the job then starts from scratch,
/// which is correct: nothing was committed without a checkpoint).
pub fn restore_args(checkpoint_dir: &Path) -> Vec<String> {
    match newest_checkpoint(checkpoint_dir) {
        Some(_) => vec!["-s".into(), "latest".into()],
        None => Vec::new(),
    }
}

/// The newest complete checkpoint under `base` (`<base>/<job-id>/chk-<n>/_metadata`, over
/// every job the restarts created): the highest id, then the newest `_metadata`. A
/// checkpoint exists once its `_metadata` does (it is renamed into place last).
pub fn newest_checkpoint(base: &Path) -> Option<PathBuf> {
    checkpoints(base)
        .into_iter()
        .max_by_key(|c| (c.id, c.modified))
        .map(|c| c.dir)
}

struct Found {
    id: u64,
    modified: std::time::SystemTime,
    dir: PathBuf,
}

fn checkpoints(base: &Path) -> Vec<Found> {
    let mut found = Vec::new();
    for job in read_dir(base) {
        for chk in read_dir(&job) {
            let Some(id) = chk_id(&chk) else { continue };
            let Ok(meta) = std::fs::metadata(chk.join("_metadata")) else {
                continue;
            };
            found.push(Found {
                id,
                modified: meta.modified().unwrap_or(std::time::UNIX_EPOCH),
                dir: chk,
            });
        }
    }
    found
}

fn read_dir(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

fn chk_id(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix("chk-")?
        .parse()
        .ok()
}

/// Every `chk-*` directory under `base`, complete or not.
fn chk_dirs(base: &Path) -> HashSet<PathBuf> {
    read_dir(base)
        .iter()
        .flat_map(|job| read_dir(job))
        .filter(|p| chk_id(p).is_some())
        .collect()
}

/// Every complete checkpoint's `_metadata` under `base`.
fn metadata_files(base: &Path) -> HashSet<PathBuf> {
    checkpoints(base)
        .into_iter()
        .map(|c| c.dir.join("_metadata"))
        .collect()
}

/// SplitMix64: the runner's random choices, reproducible from a seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `lo..hi` (hi > lo).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}

pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// When a kill happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KillAt {
    /// A random delay after the process started: usually while records are processed.
    Processing { after_ms: u64 },
    /// As soon as a new `chk-*` directory appears: state files are being written.
    CheckpointStarted,
    /// A random delay (µs) after a new `chk-*` appears: often while `_metadata` is written.
    DuringCheckpoint { after_us: u64 },
    /// Right after a new `_metadata` appears: the checkpoint completed and the sink commits.
    Committing { after_us: u64 },
}

impl KillAt {
    pub fn pick(rng: &mut Rng) -> KillAt {
        match rng.range(0, 4) {
            0 => KillAt::Processing {
                after_ms: rng.range(20, 700),
            },
            1 => KillAt::CheckpointStarted,
            2 => KillAt::DuringCheckpoint {
                after_us: rng.range(0, 5_000),
            },
            _ => KillAt::Committing {
                after_us: rng.range(0, 3_000),
            },
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            KillAt::Processing { .. } => "while processing",
            KillAt::CheckpointStarted => "as a checkpoint started",
            KillAt::DuringCheckpoint { .. } => "during a checkpoint",
            KillAt::Committing { .. } => "while committing",
        }
    }
}

/// One crash test: the binary, the pipeline, where its checkpoints and output go.
pub struct CrashRun {
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub pipeline: PathBuf,
    pub checkpoints: PathBuf,
    pub output: PathBuf,
    pub parallelism: u32,
    /// No single attempt (nor the final one) may run longer than this: a hung process fails
    /// the test instead of hanging CI.
    pub attempt_limit: Duration,
}

impl CrashRun {
    /// A run of `pipeline` in `dir` (checkpoints in `dir/ck`, output in `dir/out`) with the
    /// crash binary and the 120 s limit per attempt.
    pub fn in_dir(dir: &Path, pipeline: PathBuf, parallelism: u32) -> CrashRun {
        CrashRun {
            bin: floe_bin(),
            dir: dir.to_path_buf(),
            pipeline,
            checkpoints: dir.join("ck"),
            output: dir.join("out"),
            parallelism,
            attempt_limit: Duration::from_secs(120),
        }
    }
}

/// The seed of the kill moments: `FLOE_CRASH_SEED`, else the test's own `default`.
pub fn seed(default: u64) -> u64 {
    std::env::var("FLOE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Kills per case and corpus size (lines, lines per second) of the datagen crash tests: CI's
/// bounded run (25 kills), or `FLOE_CRASH_SOAK` kills. The corpus grows with the kills so that
/// the job cannot finish before the last one. What an attempt commits does not grow on a
/// slower machine: it is what the source read (at most `rate` lines a second) before the
/// newest checkpoint's barrier, and the kill comes at most 700 ms after the start, or at the
/// attempt's first checkpoint (its barrier ~150 ms in). So an attempt commits 150–700 lines,
/// about 250 on average, against 400 per kill here.
pub fn sizes() -> (u32, u64, u64) {
    let kills = std::env::var("FLOE_CRASH_SOAK")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(25);
    (kills, 2_000 + 400 * u64::from(kills), 1_000)
}

/// What happened over a crash run.
#[derive(Debug, Default)]
pub struct CrashSummary {
    pub attempts: u32,
    pub kills: BTreeMap<&'static str, u32>,
    /// Kills that hit before the event they waited for (the process ended or the attempt's
    /// wait ran out first) are counted as kills while processing.
    pub restores_from_checkpoint: u32,
    pub restarts_from_scratch: u32,
    /// Restores from a checkpoint at another parallelism than the attempt before.
    pub rescales: u32,
    pub elapsed: Duration,
}

impl CrashSummary {
    pub fn total_kills(&self) -> u32 {
        self.kills.values().sum()
    }
}

impl fmt::Display for CrashSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} attempts, {} kills (",
            self.attempts,
            self.total_kills()
        )?;
        for (i, (k, n)) in self.kills.iter().enumerate() {
            write!(f, "{}{n} {k}", if i > 0 { ", " } else { "" })?;
        }
        write!(
            f,
            "), {} restores from a checkpoint ({} at another parallelism), {} restarts from \
             scratch, {:.1} s",
            self.restores_from_checkpoint,
            self.rescales,
            self.restarts_from_scratch,
            self.elapsed.as_secs_f64()
        )
    }
}

/// The runner's own failures: the process failed on its own, or hung.
#[derive(Debug)]
pub struct CrashError(pub String);

impl fmt::Display for CrashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl CrashRun {
    /// Runs the pipeline, killing it `kills` times at moments picked by `rng`, restarting it
    /// each time from the newest checkpoint, then lets the last attempt run to its end,
    /// within `attempt_limit`.
    pub fn run(&self, kills: u32, rng: &mut Rng) -> Result<CrashSummary, CrashError> {
        self.run_until(kills, rng, |_| self.attempt_limit)
    }

    /// [`CrashRun::run`], where the final attempt may take `final_limit(newest checkpoint)`:
    /// a limit that grows with the input the newest checkpoint leaves, so a slow machine or a
    /// long soak is not mistaken for a hang.
    pub fn run_until(
        &self,
        kills: u32,
        rng: &mut Rng,
        final_limit: impl Fn(Option<&Path>) -> Duration,
    ) -> Result<CrashSummary, CrashError> {
        self.run_rescaling(kills, rng, &[self.parallelism], final_limit)
    }

    /// [`CrashRun::run_until`], each attempt at a parallelism `rng` picks from `parallelisms`
    /// (the first at the first one): restores at another parallelism than the checkpoint's.
    pub fn run_rescaling(
        &self,
        kills: u32,
        rng: &mut Rng,
        parallelisms: &[u32],
        final_limit: impl Fn(Option<&Path>) -> Duration,
    ) -> Result<CrashSummary, CrashError> {
        let started = Instant::now();
        let mut summary = CrashSummary::default();
        let mut previous = None;
        loop {
            let killing = summary.total_kills() < kills;
            let restore = restore_args(&self.checkpoints);
            if restore.is_empty() {
                summary.restarts_from_scratch += u32::from(summary.attempts > 0);
            } else {
                summary.restores_from_checkpoint += 1;
            }
            summary.attempts += 1;
            let log = self.dir.join(format!("attempt-{}.log", summary.attempts));
            // What exists before the attempt, so "a new checkpoint" means one of this attempt.
            let chk_before = chk_dirs(&self.checkpoints);
            let meta_before = metadata_files(&self.checkpoints);
            let parallelism = match parallelisms {
                [] => self.parallelism,
                [only] => *only,
                _ if summary.attempts == 1 => parallelisms[0],
                _ => parallelisms[rng.range(0, parallelisms.len() as u64) as usize],
            };
            if !restore.is_empty() && previous.is_some_and(|p| p != parallelism) {
                summary.rescales += 1;
            }
            previous = Some(parallelism);
            let mut child = self.spawn(&restore, &log, parallelism)?;
            let status = if killing {
                let at = KillAt::pick(rng);
                match self.kill_at(&mut child, at, &chk_before, &meta_before)? {
                    Some(status) => status, // it ended before the kill
                    None => {
                        *summary.kills.entry(at.kind()).or_default() += 1;
                        continue;
                    }
                }
            } else {
                let newest = newest_checkpoint(&self.checkpoints);
                self.wait_limited(&mut child, final_limit(newest.as_deref()), &log)?
            };
            summary.elapsed = started.elapsed();
            if status.success() {
                return Ok(summary);
            }
            return Err(CrashError(format!(
                "attempt {} ({}) failed with {status}; its log, {}:\n{}",
                summary.attempts,
                describe_restore(&restore),
                log.display(),
                tail(&log, 30)
            )));
        }
    }

    fn spawn(&self, restore: &[String], log: &Path, parallelism: u32) -> Result<Child, CrashError> {
        let err = std::fs::File::create(log)
            .map_err(|e| CrashError(format!("cannot create {}: {e}", log.display())))?;
        Command::new(&self.bin)
            .current_dir(&self.dir)
            .env_remove("FLOE_CONF_DIR")
            // `FLOE_CRASH_LOG` (a RUST_LOG filter) to see more of the attempts, e.g. the Kafka
            // sink's transactions: `info,floe::operators::sinks=debug`.
            .env(
                "RUST_LOG",
                std::env::var("FLOE_CRASH_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("FLOE_REST_PORT", "0")
            .arg("run")
            .arg(&self.pipeline)
            .args(["-p", &parallelism.to_string()])
            .args(restore)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .map_err(|e| CrashError(format!("cannot run {}: {e}", self.bin.display())))
    }

    /// Kills `child` at `at`; returns its status instead if it exited first.
    fn kill_at(
        &self,
        child: &mut Child,
        at: KillAt,
        chk_before: &HashSet<PathBuf>,
        meta_before: &HashSet<PathBuf>,
    ) -> Result<Option<ExitStatus>, CrashError> {
        let deadline = Instant::now() + self.attempt_limit;
        let delay = match at {
            KillAt::Processing { after_ms } => Duration::from_millis(after_ms),
            KillAt::CheckpointStarted | KillAt::DuringCheckpoint { .. } => {
                let new_chk = || chk_dirs(&self.checkpoints).difference(chk_before).count() > 0;
                if let Some(status) = self.wait_for(child, deadline, new_chk)? {
                    return Ok(Some(status));
                }
                match at {
                    KillAt::DuringCheckpoint { after_us } => Duration::from_micros(after_us),
                    _ => Duration::ZERO,
                }
            }
            KillAt::Committing { after_us } => {
                let new_meta = || {
                    metadata_files(&self.checkpoints)
                        .difference(meta_before)
                        .count()
                        > 0
                };
                if let Some(status) = self.wait_for(child, deadline, new_meta)? {
                    return Ok(Some(status));
                }
                Duration::from_micros(after_us)
            }
        };
        if !delay.is_zero() {
            std::thread::sleep(delay); // the random kill moment: the point of the test
        }
        if let Some(status) = try_wait(child)? {
            return Ok(Some(status));
        }
        // SIGKILL: no handler runs, nothing is flushed, as a power cut for the process.
        child
            .kill()
            .map_err(|e| CrashError(format!("cannot kill floe: {e}")))?;
        let _ = child.wait();
        Ok(None)
    }

    /// Polls until `event` holds (None) or the child exits (its status). Fails past the
    /// deadline, killing the child.
    fn wait_for(
        &self,
        child: &mut Child,
        deadline: Instant,
        mut event: impl FnMut() -> bool,
    ) -> Result<Option<ExitStatus>, CrashError> {
        loop {
            if event() {
                return Ok(None);
            }
            if let Some(status) = try_wait(child)? {
                return Ok(Some(status));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CrashError(format!(
                    "no checkpoint appeared under {} within {:?}: is checkpointing on?",
                    self.checkpoints.display(),
                    self.attempt_limit
                )));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    fn wait_limited(
        &self,
        child: &mut Child,
        limit: Duration,
        log: &Path,
    ) -> Result<ExitStatus, CrashError> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = try_wait(child)? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CrashError(format!(
                    "the final run did not end within {limit:?} (hung?); its log, {}:\n{}",
                    log.display(),
                    tail(log, 30)
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Every committed record line of the output: files named `part-*` (in-progress and
    /// pending files start with a dot and are not output yet).
    pub fn committed_lines(&self) -> Result<Vec<String>, CrashError> {
        let mut lines = Vec::new();
        let mut files: Vec<PathBuf> = read_dir(&self.output)
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("part-"))
            })
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f)
                .map_err(|e| CrashError(format!("cannot read {}: {e}", f.display())))?;
            lines.extend(text.lines().map(str::to_string));
        }
        Ok(lines)
    }
}

fn try_wait(child: &mut Child) -> Result<Option<ExitStatus>, CrashError> {
    child
        .try_wait()
        .map_err(|e| CrashError(format!("cannot wait for floe: {e}")))
}

fn describe_restore(restore: &[String]) -> String {
    if restore.is_empty() {
        "from scratch".into()
    } else {
        restore.join(" ")
    }
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The `floe` binary to crash: the release build if it is at least as new as the debug one
/// cargo built for this test (faster, so more kills per second), else the debug one.
/// `FLOE_CRASH_BIN` overrides.
pub fn floe_bin() -> PathBuf {
    if let Some(b) = std::env::var_os("FLOE_CRASH_BIN") {
        return PathBuf::from(b);
    }
    let debug = PathBuf::from(env!("CARGO_BIN_EXE_floe"));
    let release = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/floe");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(&release), modified(&debug)) {
        (Some(r), Some(d)) if r >= d => release,
        _ => debug,
    }
}

/// Lines of a `datagen` source (operator `source_id`, `total` lines) that the checkpoint in
/// `checkpoint` has not read yet, for the subtask furthest behind: the input a run restored
/// from it still has to generate. All of it without a checkpoint (or one that cannot be read).
pub fn datagen_lines_left(checkpoint: Option<&Path>, source_id: &str, total: u64) -> u64 {
    use floe::operators::sources::SourcePosition;
    let Some(loaded) = checkpoint.and_then(|c| floe::checkpoint::storage::load(c).ok()) else {
        return total;
    };
    let Some(source) = loaded
        .metadata
        .operators
        .iter()
        .find(|o| o.operator_id == source_id)
    else {
        return total;
    };
    let slowest = source
        .subtasks
        .iter()
        .map(
            |s| match s.operator.as_ref().map(SourcePosition::from_blob) {
                Some(Ok(SourcePosition::Datagen { next_line }))
                | Some(Ok(SourcePosition::DatagenRescaled { next_line, .. })) => next_line,
                _ => 0,
            },
        )
        .min()
        .unwrap_or(0);
    total.saturating_sub(slowest)
}

/// How long a run with `lines_left` lines of input throttled at `rate` lines per second may
/// take before it counts as hung: `base`, plus twice the time the input takes at that rate
/// (a loaded machine may fall behind the rate; a hung run makes no progress at all).
pub fn limit_for_input(base: Duration, lines_left: u64, rate: u64) -> Duration {
    base + Duration::from_secs_f64(2.0 * lines_left as f64 / rate.max(1) as f64)
}
