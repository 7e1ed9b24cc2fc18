//! Restore mapping: which state of a checkpoint goes to which operator subtask of a new job.
//!
//! Pure decisions over plain data (metadata in, mapping out), tested without disks: operators
//! are matched by `id`; state of an id the new pipeline lacks is refused with Flink's message
//! unless non-restored state is allowed; new ids start empty; operators without state never
//! block a restore; a changed max parallelism of keyed state is refused with Flink's message;
//! keyed state moves by whole key groups, so a restore at another parallelism reads, for each
//! new subtask, exactly the groups of its range from the old subtasks that held them.
//! Source positions at another parallelism ([`rescale_sources`]): a `file` source's new
//! subtasks all get every old file offset (each keeps those of the files it owns now); a
//! `datagen` source's get the rule of which lines are done, which each applies to its share.
//!
//! Also here, at the edge to the disk: [`load_snapshot`] and [`prepare`] turn an unreadable
//! checkpoint (a `_metadata` or state file missing or corrupt) into a [`RestoreError`] that
//! names the checkpoint, the file and an older retained checkpoint that is intact, and
//! [`find_latest`] resolves `-s latest` (the choice itself, [`pick_latest`], is pure).

use crate::checkpoint::metadata::{CheckpointMetadata, KeyedStateHandle, OperatorStateMeta};
use crate::checkpoint::storage::{self, LoadedSnapshot};
use crate::checkpoint::{CheckpointError, JobId, SinkState, SourcePosition};
use crate::state::keygroup::KeyGroupRange;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One operator of the new job, as the mapping needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetOperator {
    pub id: String,
    pub parallelism: u32,
    pub max_parallelism: u32,
    /// Whether the new job set max parallelism itself (Flink refuses a mismatch only then).
    pub max_parallelism_explicit: bool,
}

/// Why a checkpoint cannot be mapped onto the new job. Messages follow Flink's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error(
        "Failed to rollback to checkpoint/savepoint {pointer}. Cannot map checkpoint/savepoint \
         state for operator {operator} to the new program, because the operator is not \
         available in the new program. If you want to allow to skip this, you can set the \
         --allowNonRestoredState option on the CLI (floe run -n)."
    )]
    NonRestoredState { pointer: String, operator: String },
    #[error(
        "Failed to rollback to checkpoint/savepoint {pointer}. Max parallelism mismatch between \
         checkpoint/savepoint state and new program. Cannot map operator {operator} with max \
         parallelism {old} to new program with max parallelism {new}. This indicates that the \
         program has been changed in a non-compatible way after the checkpoint/savepoint."
    )]
    MaxParallelismMismatch {
        pointer: String,
        operator: String,
        old: u32,
        new: u32,
    },
    #[error(
        "cannot restore source \"{operator}\" from {pointer}: it was checkpointed with \
         parallelism {old} and would now run with {new}; run it with -p {old} (or set its \
         `parallelism: {old}`)"
    )]
    SourceRescale {
        pointer: String,
        operator: String,
        old: u32,
        new: u32,
    },
    #[error(
        "cannot restore source \"{operator}\" from {pointer} at parallelism {new}: it was \
         checkpointed at parallelism {old} while still skipping the lines done before an \
         earlier rescale from parallelism {earlier}, and combining both needs {residues} block \
         classes (at most {MAX_DONE_RESIDUES}); restore it with -p {old}, the parallelism it \
         was checkpointed at, and rescale from a later checkpoint"
    )]
    SourceRescaleTooComplex {
        pointer: String,
        operator: String,
        old: u32,
        earlier: u32,
        new: u32,
        residues: u64,
    },
}

/// The largest table of a `datagen` rescale rule (one `u64` per entry in every subtask's
/// position in `_metadata`).
pub const MAX_DONE_RESIDUES: u64 = 4096;

/// What happens to one operator id on restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorFate {
    /// In the checkpoint with state, and in the new job: its state comes back.
    Restored,
    /// In the checkpoint with state, not in the new job: dropped (only with `-n`).
    Dropped,
    /// In the checkpoint without any state: nothing to bring back, never blocks.
    Empty,
    /// In the new job, not in the checkpoint: starts empty.
    New,
}

/// Where one new keyed subtask's state comes from: for each old subtask whose key groups meet
/// its range, the old handle and the groups to read from it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyedSource {
    pub old_subtask: u32,
    pub groups: KeyGroupRange,
    pub handle: KeyedStateHandle,
}

/// What one new subtask gets.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SubtaskRestore {
    pub keyed: Vec<KeyedSource>,
    pub source: Option<SourcePosition>,
    /// Transactional sink state of the old subtasks `j` with `j % new parallelism` equal to
    /// this subtask's index (each old subtask's state to exactly one new subtask, the same
    /// index when it still exists), so that every pre-committed file is committed once.
    pub sink: Vec<SinkState>,
}

/// The mapping of a checkpoint onto a new job.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RestoreMapping {
    pub checkpoint_id: u64,
    /// Every operator id of the checkpoint and of the new job, with its fate, sorted by id.
    pub fates: BTreeMap<String, OperatorFate>,
    /// Per restored operator id, one entry per new subtask.
    pub subtasks: BTreeMap<String, Vec<SubtaskRestore>>,
    /// Max parallelism per restored keyed operator (the checkpoint's, which the new job must
    /// adopt when it did not set its own).
    pub max_parallelism: BTreeMap<String, u32>,
}

fn has_state(op: &OperatorStateMeta) -> bool {
    op.subtasks
        .iter()
        .any(|s| s.keyed.is_some() || s.source.is_some() || s.sink.is_some())
}

/// Maps `meta` (read from `pointer`) onto the operators of a new job.
pub fn map_checkpoint(
    meta: &CheckpointMetadata,
    pointer: &str,
    targets: &[TargetOperator],
    allow_non_restored_state: bool,
) -> Result<RestoreMapping, MappingError> {
    let mut mapping = RestoreMapping {
        checkpoint_id: meta.checkpoint_id,
        ..Default::default()
    };
    // By id: a job of thousands of operators maps in linear time.
    let by_id: std::collections::HashMap<&str, &TargetOperator> =
        targets.iter().map(|t| (t.id.as_str(), t)).collect();
    for op in &meta.operators {
        let target = by_id.get(op.operator_id.as_str()).copied();
        let fate = match (target, has_state(op)) {
            (_, false) => OperatorFate::Empty,
            (None, true) if allow_non_restored_state => OperatorFate::Dropped,
            (None, true) => {
                return Err(MappingError::NonRestoredState {
                    pointer: pointer.to_string(),
                    operator: op.operator_id.clone(),
                })
            }
            (Some(t), true) => {
                mapping
                    .subtasks
                    .insert(op.operator_id.clone(), map_operator(op, t, pointer)?);
                if op.subtasks.iter().any(|s| s.keyed.is_some()) {
                    mapping
                        .max_parallelism
                        .insert(op.operator_id.clone(), op.max_parallelism);
                }
                OperatorFate::Restored
            }
        };
        mapping.fates.insert(op.operator_id.clone(), fate);
    }
    for t in targets {
        mapping
            .fates
            .entry(t.id.clone())
            .or_insert(OperatorFate::New);
    }
    Ok(mapping)
}

fn map_operator(
    op: &OperatorStateMeta,
    target: &TargetOperator,
    pointer: &str,
) -> Result<Vec<SubtaskRestore>, MappingError> {
    let keyed = op.subtasks.iter().any(|s| s.keyed.is_some());
    if keyed && target.max_parallelism_explicit && target.max_parallelism != op.max_parallelism {
        return Err(MappingError::MaxParallelismMismatch {
            pointer: pointer.to_string(),
            operator: op.operator_id.clone(),
            old: op.max_parallelism,
            new: target.max_parallelism,
        });
    }
    let sourced = op.subtasks.iter().any(|s| s.source.is_some());
    let rescaled_sources = if sourced && op.parallelism != target.parallelism {
        Some(rescale_sources(op, target.parallelism, pointer)?)
    } else {
        None
    };
    // Keyed state keeps the checkpoint's max parallelism (the new job adopts it).
    let max_p = op.max_parallelism;
    let mut out = Vec::with_capacity(target.parallelism as usize);
    for new_index in 0..target.parallelism {
        let range = KeyGroupRange::for_subtask(new_index, target.parallelism, max_p);
        let mut restore = SubtaskRestore::default();
        for old in &op.subtasks {
            if let (Some(handle), Some((start, end))) = (&old.keyed, old.key_groups) {
                let start = start.max(range.start);
                let end = end.min(range.end);
                if start <= end {
                    restore.keyed.push(KeyedSource {
                        old_subtask: old.subtask,
                        groups: KeyGroupRange { start, end },
                        handle: handle.clone(),
                    });
                }
            }
            if rescaled_sources.is_none() && old.subtask == new_index {
                restore.source = old.source.clone();
            }
            if let Some(sink) = &old.sink {
                if old.subtask % target.parallelism == new_index {
                    restore.sink.push(sink.clone());
                }
            }
        }
        if let Some(positions) = &rescaled_sources {
            restore.source = positions.get(new_index as usize).cloned().flatten();
        }
        out.push(restore);
    }
    Ok(out)
}

/// The positions of the `new` subtasks of a source whose checkpoint was taken at another
/// parallelism, one per new subtask; refused unless every old subtask holds a position of one
/// kind (`file` or `datagen`).
///
/// `file`: every new subtask gets the union of the old positions (each old subtask held only
/// its own files, so no file appears twice) and keeps the offsets of the files it owns now; a
/// file without one starts at 0.
///
/// `datagen`: old subtask `o` of `P` walked the blocks `k` with `k % P == o` in order up to
/// line `next[o]`, so line `L` of block `k` is done iff `L < next[k % P]`; every new subtask
/// gets that rule (as a [`SourcePosition::DatagenRescaled`] at line 0) and skips what it says
/// is done. When the checkpoint was itself taken while skipping after an earlier rescale (rule
/// `m` of modulus `R`), a line is done iff either rule says so: one rule of modulus
/// `lcm(P, R)`, `max(next[r % P], m[r % R])` per residue `r`, refused beyond
/// [`MAX_DONE_RESIDUES`].
pub fn rescale_sources(
    op: &OperatorStateMeta,
    new: u32,
    pointer: &str,
) -> Result<Vec<Option<SourcePosition>>, MappingError> {
    let old = op.parallelism;
    let refuse = || MappingError::SourceRescale {
        pointer: pointer.to_string(),
        operator: op.operator_id.clone(),
        old,
        new,
    };
    let mut by_subtask: Vec<Option<&SourcePosition>> = vec![None; old as usize];
    for s in &op.subtasks {
        let slot = by_subtask.get_mut(s.subtask as usize).ok_or_else(refuse)?;
        *slot = s.source.as_ref();
    }
    let positions: Vec<&SourcePosition> = by_subtask
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(refuse)?;
    // `kafka`: like `file`, every new subtask gets the union and keeps the partitions it
    // owns now (each old subtask held only its own partitions).
    if positions
        .iter()
        .all(|p| matches!(p, SourcePosition::Kafka(_)))
    {
        let mut union: Vec<crate::checkpoint::KafkaOffset> = positions
            .iter()
            .flat_map(|p| match p {
                SourcePosition::Kafka(offsets) => offsets.clone(),
                _ => Vec::new(),
            })
            .collect();
        union.sort();
        union.dedup_by(|a, b| a.topic == b.topic && a.partition == b.partition);
        return Ok(vec![Some(SourcePosition::Kafka(union)); new as usize]);
    }
    if positions
        .iter()
        .all(|p| matches!(p, SourcePosition::Files(_)))
    {
        let mut union: Vec<(String, u64)> = positions
            .iter()
            .flat_map(|p| match p {
                SourcePosition::Files(files) => files.clone(),
                _ => Vec::new(),
            })
            .collect();
        union.sort();
        union.dedup_by(|a, b| a.0 == b.0);
        return Ok(vec![Some(SourcePosition::Files(union)); new as usize]);
    }
    let mut next = Vec::with_capacity(old as usize);
    let mut earlier: Option<(u32, &Vec<u64>)> = None;
    for p in &positions {
        match p {
            SourcePosition::Datagen { next_line } => next.push(*next_line),
            SourcePosition::DatagenRescaled {
                next_line,
                old_parallelism,
                old_next_lines,
            } => {
                next.push(*next_line);
                if *old_parallelism == 0 || old_next_lines.len() != *old_parallelism as usize {
                    return Err(refuse());
                }
                match earlier {
                    None => earlier = Some((*old_parallelism, old_next_lines)),
                    // Every subtask got the same rule at the restore; differing ones cannot
                    // come from floe.
                    Some((m, lines)) if m == *old_parallelism && lines == old_next_lines => {}
                    Some(_) => return Err(refuse()),
                }
            }
            SourcePosition::Files(_) | SourcePosition::Kafka(_) => return Err(refuse()),
        }
    }
    let (modulus, lines) = match earlier {
        None => (old, next),
        Some((m, earlier_lines)) => {
            let residues = lcm(old as u64, m as u64);
            if residues > MAX_DONE_RESIDUES {
                return Err(MappingError::SourceRescaleTooComplex {
                    pointer: pointer.to_string(),
                    operator: op.operator_id.clone(),
                    old,
                    earlier: m,
                    new,
                    residues,
                });
            }
            let lines = (0..residues)
                .map(|r| {
                    next[(r % old as u64) as usize].max(earlier_lines[(r % m as u64) as usize])
                })
                .collect();
            (residues as u32, lines)
        }
    };
    Ok(vec![
        Some(SourcePosition::DatagenRescaled {
            next_line: 0,
            old_parallelism: modulus,
            old_next_lines: lines,
        });
        new as usize
    ])
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: u64, b: u64) -> u64 {
    a / gcd(a, b) * b
}

/// Reads and rebuilds the keyed state of one new subtask owning `range`: the groups each
/// [`KeyedSource`] names, base first then each delta of a chain, so later values and deletions
/// win. Errors name the checkpoint and the file.
pub fn load_keyed(
    loaded: &crate::checkpoint::storage::LoadedSnapshot,
    sources: &[KeyedSource],
    range: KeyGroupRange,
    max_parallelism: u32,
) -> Result<crate::state::keyed::KeyedStore, crate::checkpoint::CheckpointError> {
    use crate::checkpoint::CheckpointError;
    use crate::state::snapshot::{decode_group, restore_store};
    let mut groups = Vec::new();
    for source in sources {
        for (entry, bytes) in
            crate::checkpoint::storage::read_handle(loaded, &source.handle, source.groups)?
        {
            let decoded = decode_group(&bytes, &entry).map_err(|e| {
                CheckpointError::Format(format!(
                    "checkpoint '{}', state of subtask {}: {e}",
                    loaded.dir.display(),
                    source.old_subtask
                ))
            })?;
            groups.push((entry.key_group, decoded));
        }
    }
    restore_store(range, max_parallelism, groups)
        .map_err(|e| CheckpointError::Format(format!("checkpoint '{}': {e}", loaded.dir.display())))
}

/// The operators of a plan as restore targets.
pub fn targets_of(plan: &crate::pipeline::plan::Plan, explicit: bool) -> Vec<TargetOperator> {
    plan.tasks
        .iter()
        .flat_map(|t| {
            t.operators.iter().map(move |o| TargetOperator {
                id: o.id.0.clone(),
                parallelism: t.parallelism,
                max_parallelism: plan.max_parallelism,
                max_parallelism_explicit: explicit,
            })
        })
        .collect()
}

/// The max parallelism of the checkpoint's keyed state, which a job that does not set its own
/// adopts (as Flink does).
pub fn keyed_max_parallelism(meta: &CheckpointMetadata) -> Option<u32> {
    meta.operators
        .iter()
        .find(|o| o.subtasks.iter().any(|s| s.keyed.is_some()))
        .map(|o| o.max_parallelism)
}

/// Reads the state `mapping` assigns to each subtask of the new job: keyed stores rebuilt from
/// the groups each subtask owns, source positions as they were.
pub fn load_state(
    loaded: &crate::checkpoint::storage::LoadedSnapshot,
    mapping: &RestoreMapping,
    max_parallelism: u32,
) -> Result<crate::runtime::RestoreState, crate::checkpoint::CheckpointError> {
    use crate::operators::RestoredState;
    use crate::pipeline::OperatorId;
    let mut state = crate::runtime::RestoreState {
        checkpoint_id: crate::checkpoint::CheckpointId(mapping.checkpoint_id),
        ..Default::default()
    };
    for (id, subtasks) in &mapping.subtasks {
        let parallelism = subtasks.len() as u32;
        for (index, restore) in subtasks.iter().enumerate() {
            let index = index as u32;
            if !restore.keyed.is_empty() {
                let range = KeyGroupRange::for_subtask(index, parallelism, max_parallelism);
                let store = load_keyed(loaded, &restore.keyed, range, max_parallelism)?;
                state
                    .operators
                    .insert((OperatorId(id.clone()), index), RestoredState::Keyed(store));
            }
            if !restore.sink.is_empty() {
                state.operators.insert(
                    (OperatorId(id.clone()), index),
                    RestoredState::Sink(restore.sink.clone()),
                );
            }
            if let Some(position) = &restore.source {
                state
                    .sources
                    .insert((OperatorId(id.clone()), index), position.clone());
            }
        }
    }
    Ok(state)
}

/// Why a restore cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Mapping(#[from] MappingError),
    /// A `_metadata` or state file is missing or corrupt. Flink loops in RESTARTING here;
    /// floe stops and says which older checkpoint would work.
    #[error("cannot restore from '{}': {}{}", checkpoint.display(), without_period(source), older_hint(intact_older.as_deref()))]
    Unreadable {
        checkpoint: PathBuf,
        #[source]
        source: CheckpointError,
        /// The newest older checkpoint of the same job that is intact.
        intact_older: Option<PathBuf>,
    },
    #[error(
        "-s latest: no complete checkpoint of pipeline \"{pipeline}\" in '{}' (searched \
         <dir>/<job-id>/chk-<n>/_metadata for job name \"{pipeline}\"); run without -s to \
         start fresh, or give a checkpoint or savepoint path",
        dir.display()
    )]
    NoLatest { dir: PathBuf, pipeline: String },
    #[error(
        "-s latest needs the checkpoint directory: set execution.checkpointing.dir \
         (state.checkpoints.dir) or the pipeline's checkpointing.checkpoint-dir"
    )]
    NoCheckpointDir,
    #[error("-s latest: {0}")]
    Scan(#[source] CheckpointError),
    #[error(
        "claim mode CLAIM refused for '{}': a claimed snapshot is deleted once subsumed, so \
         floe claims only a checkpoint directory (chk-<n>) or a savepoint directory \
         (savepoint-…), and this is neither; restore it with NO_CLAIM (the default) instead",
        dir.display()
    )]
    NotClaimable { dir: PathBuf },
}

/// Whether CLAIM may take `loaded`: only a `chk-<n>` or a `savepoint-…` directory, never
/// whatever directory a `_metadata` file was found in (claiming deletes it later).
pub fn check_claimable(loaded: &LoadedSnapshot) -> Result<(), RestoreError> {
    let name = loaded
        .dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    let is_checkpoint = storage::checkpoint_id_of(name).is_some();
    let is_savepoint = name.len() > "savepoint-".len() && name.starts_with("savepoint-");
    if is_checkpoint || is_savepoint {
        Ok(())
    } else {
        Err(RestoreError::NotClaimable {
            dir: loaded.dir.clone(),
        })
    }
}

/// A message without its closing period, so that the hint after it reads as one sentence
/// (Flink's own messages end with one).
fn without_period(e: &CheckpointError) -> String {
    let text = e.to_string();
    text.strip_suffix('.').map(str::to_string).unwrap_or(text)
}

fn older_hint(intact: Option<&Path>) -> String {
    match intact {
        Some(p) => format!(
            "; an older checkpoint is intact: {0}; restore it with -s {0}",
            p.display()
        ),
        None => "; no older retained checkpoint of this job is intact".to_string(),
    }
}

impl RestoreError {
    /// A restore of the snapshot in `dir` failed reading it: names an older intact one.
    pub fn unreadable(dir: &Path, job_id: Option<&JobId>, source: CheckpointError) -> Self {
        RestoreError::Unreadable {
            checkpoint: dir.to_path_buf(),
            intact_older: storage::find_intact_older(dir, job_id),
            source,
        }
    }
}

/// The snapshot directory a `-s` path names: the directory itself, or the one holding the
/// `_metadata` file given.
fn snapshot_dir_of(given: &Path) -> PathBuf {
    let local = storage::normalize(given).unwrap_or_else(|_| given.to_path_buf());
    if local
        .file_name()
        .is_some_and(|n| n == storage::METADATA_FILE)
    {
        local.parent().map_or(local.clone(), Path::to_path_buf)
    } else {
        local
    }
}

/// Reads a checkpoint's or savepoint's `_metadata` (`-s PATH`); when it is missing or corrupt
/// the error names an older intact checkpoint of the same job directory.
pub fn load_snapshot(given: impl AsRef<Path>) -> Result<LoadedSnapshot, RestoreError> {
    let given = given.as_ref();
    storage::load(given).map_err(|e| RestoreError::unreadable(&snapshot_dir_of(given), None, e))
}

/// Checks that every file `loaded` references is there with its size, without reading any:
/// cheap enough to run before a job is created, so a restore that cannot work fails early.
pub fn check_files(loaded: &LoadedSnapshot) -> Result<(), RestoreError> {
    storage::verify_files(loaded)
        .map_err(|e| RestoreError::unreadable(&loaded.dir, Some(&loaded.metadata.job_id), e))
}

/// Maps `loaded` onto `plan` and reads the state each subtask gets. Every state file is
/// checked (present, right size) before any is read, so a missing file is reported as such,
/// with an older intact checkpoint of the same job.
pub fn prepare(
    loaded: &LoadedSnapshot,
    plan: &crate::pipeline::plan::Plan,
    max_parallelism_explicit: bool,
    allow_non_restored_state: bool,
) -> Result<(RestoreMapping, crate::runtime::RestoreState), RestoreError> {
    let targets = targets_of(plan, max_parallelism_explicit);
    let mapping = map_checkpoint(
        &loaded.metadata,
        &pointer(&loaded.dir),
        &targets,
        allow_non_restored_state,
    )?;
    check_files(loaded)?;
    let state = load_state(loaded, &mapping, plan.max_parallelism)
        .map_err(|e| RestoreError::unreadable(&loaded.dir, Some(&loaded.metadata.job_id), e))?;
    Ok((mapping, state))
}

/// A checkpoint directory as Flink prints it: `file:/abs/path`, or its `s3://` URI.
pub fn pointer(dir: &Path) -> String {
    if storage::is_object_path(dir) {
        return dir.display().to_string();
    }
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    format!("file:{}", abs.display())
}

/// One complete checkpoint found under the checkpoint root, as `-s latest` weighs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub dir: PathBuf,
    pub job_name: String,
    pub checkpoint_id: u64,
    pub completion_timestamp_ms: u64,
}

/// `-s latest`: of the checkpoints of pipeline `name`, the one completed last (by completion
/// time, then by id, which orders checkpoints within a job and across restores, since ids
/// continue after the restored one).
pub fn pick_latest<'a>(candidates: &'a [Candidate], name: &str) -> Option<&'a Candidate> {
    candidates
        .iter()
        .filter(|c| c.job_name == name)
        .max_by_key(|c| (c.completion_timestamp_ms, c.checkpoint_id))
}

/// Resolves `-s latest` under the checkpoint root `dir` (a `file:` URI or a path) for the
/// pipeline `name`. A `_metadata` that does not decode is skipped with a warning: its job is
/// unknown.
pub fn find_latest(dir: &str, name: &str) -> Result<PathBuf, RestoreError> {
    let base = storage::parse_dir(dir).map_err(RestoreError::Scan)?;
    let found = storage::scan_checkpoints(&base).map_err(RestoreError::Scan)?;
    let mut candidates = Vec::new();
    for (path, loaded) in found {
        match loaded {
            Ok(l) => candidates.push(Candidate {
                dir: path,
                job_name: l.metadata.job_name,
                checkpoint_id: l.metadata.checkpoint_id,
                completion_timestamp_ms: l.metadata.completion_timestamp_ms,
            }),
            Err(e) => tracing::warn!(error = %e, "-s latest: skipping an unreadable checkpoint"),
        }
    }
    pick_latest(&candidates, name)
        .map(|c| c.dir.clone())
        .ok_or_else(|| RestoreError::NoLatest {
            dir: base,
            pipeline: name.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::metadata::{BlobLocation, SnapshotKind, StateBlob, SubtaskStateMeta};
    use crate::checkpoint::JobId;

    fn blob(tag: u8) -> KeyedStateHandle {
        KeyedStateHandle::Full(StateBlob {
            location: BlobLocation::Inline(vec![tag]),
            size: 1,
            groups: vec![],
        })
    }

    fn keyed_op(id: &str, parallelism: u32, max_p: u32) -> OperatorStateMeta {
        OperatorStateMeta {
            operator_id: id.into(),
            parallelism,
            max_parallelism: max_p,
            subtasks: (0..parallelism)
                .map(|i| {
                    let r = KeyGroupRange::for_subtask(i, parallelism, max_p);
                    SubtaskStateMeta {
                        subtask: i,
                        key_groups: Some((r.start, r.end)),
                        keyed: Some(blob(i as u8)),
                        source: None,
                        sink: None,
                    }
                })
                .collect(),
        }
    }

    fn meta(ops: Vec<OperatorStateMeta>) -> CheckpointMetadata {
        CheckpointMetadata {
            checkpoint_id: 7,
            job_id: JobId("0".repeat(32)),
            job_name: "j".into(),
            kind: SnapshotKind::Checkpoint,
            trigger_timestamp_ms: 0,
            completion_timestamp_ms: 0,
            operators: ops,
        }
    }

    fn target(id: &str, p: u32) -> TargetOperator {
        TargetOperator {
            id: id.into(),
            parallelism: p,
            max_parallelism: 128,
            max_parallelism_explicit: false,
        }
    }

    fn candidate(dir: &str, name: &str, id: u64, done: u64) -> Candidate {
        Candidate {
            dir: PathBuf::from(dir),
            job_name: name.into(),
            checkpoint_id: id,
            completion_timestamp_ms: done,
        }
    }

    #[test]
    fn latest_is_the_last_completed_checkpoint_of_the_pipeline() {
        let c = [
            candidate("a/chk-9", "wc", 9, 100),
            candidate("b/chk-3", "wc", 3, 200),
            candidate("b/chk-4", "other", 4, 300),
            candidate("c/chk-5", "wc", 5, 200),
        ];
        assert_eq!(pick_latest(&c, "wc").unwrap().dir, PathBuf::from("c/chk-5"));
        assert_eq!(pick_latest(&c, "other").unwrap().checkpoint_id, 4);
        assert!(pick_latest(&c, "nope").is_none());
    }

    #[test]
    fn unreadable_names_the_older_intact_checkpoint_and_the_flag() {
        let e = RestoreError::Unreadable {
            checkpoint: PathBuf::from("/ck/j/chk-5"),
            source: CheckpointError::Format("state file 'x' is missing".into()),
            intact_older: Some(PathBuf::from("/ck/j/chk-4")),
        };
        assert_eq!(
            e.to_string(),
            "cannot restore from '/ck/j/chk-5': state file 'x' is missing; an older \
             checkpoint is intact: /ck/j/chk-4; restore it with -s /ck/j/chk-4"
        );
    }

    #[test]
    fn missing_operator_with_state_is_refused_with_flinks_message_unless_allowed() {
        let m = meta(vec![keyed_op("count", 2, 128)]);
        let err = map_checkpoint(&m, "file:/cp/chk-7", &[target("other", 1)], false).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("Failed to rollback to checkpoint/savepoint file:/cp/chk-7."));
        assert!(text.contains("operator count"));
        assert!(text.contains("--allowNonRestoredState"));

        let ok = map_checkpoint(&m, "p", &[target("other", 1)], true).unwrap();
        assert_eq!(ok.fates["count"], OperatorFate::Dropped);
        assert_eq!(ok.fates["other"], OperatorFate::New);
    }

    #[test]
    fn stateless_operators_never_block() {
        let mut op = keyed_op("print", 1, 128);
        op.subtasks[0].keyed = None;
        op.subtasks[0].key_groups = None;
        let m = meta(vec![op]);
        let ok = map_checkpoint(&m, "p", &[], false).unwrap();
        assert_eq!(ok.fates["print"], OperatorFate::Empty);
    }

    #[test]
    fn rescaling_moves_whole_key_groups() {
        let m = meta(vec![keyed_op("count", 2, 128)]);
        let ok = map_checkpoint(&m, "p", &[target("count", 3)], false).unwrap();
        let subs = &ok.subtasks["count"];
        assert_eq!(subs.len(), 3);
        // Old: [0,63] [64,127]; new: [0,42] [43,85] [86,127].
        let ranges: Vec<Vec<(u32, u32, u32)>> = subs
            .iter()
            .map(|s| {
                s.keyed
                    .iter()
                    .map(|k| (k.old_subtask, k.groups.start, k.groups.end))
                    .collect()
            })
            .collect();
        assert_eq!(
            ranges,
            vec![
                vec![(0, 0, 42)],
                vec![(0, 43, 63), (1, 64, 85)],
                vec![(1, 86, 127)]
            ]
        );
    }

    #[test]
    fn explicit_max_parallelism_change_is_refused() {
        let m = meta(vec![keyed_op("count", 2, 128)]);
        let mut t = target("count", 2);
        t.max_parallelism = 64;
        t.max_parallelism_explicit = true;
        let err = map_checkpoint(&m, "p", &[t.clone()], false).unwrap_err();
        assert!(err
            .to_string()
            .contains("Cannot map operator count with max parallelism 128 to new program with max parallelism 64"));
        t.max_parallelism_explicit = false;
        let ok = map_checkpoint(&m, "p", &[t], false).unwrap();
        assert_eq!(ok.max_parallelism["count"], 128);
    }

    #[test]
    fn sink_state_of_every_old_subtask_goes_to_exactly_one_new_subtask() {
        use crate::checkpoint::FileSinkState;
        let sink = |i: u32| {
            SinkState::Files(FileSinkState {
                subtask: i,
                next_part: 10 + i as u64,
                pending: vec![],
                in_progress: None,
            })
        };
        let op = OperatorStateMeta {
            operator_id: "out".into(),
            parallelism: 3,
            max_parallelism: 128,
            subtasks: (0..3)
                .map(|i| SubtaskStateMeta {
                    subtask: i,
                    key_groups: None,
                    keyed: None,
                    source: None,
                    sink: Some(sink(i)),
                })
                .collect(),
        };
        let m = meta(vec![op]);
        let same = map_checkpoint(&m, "p", &[target("out", 3)], false).unwrap();
        assert_eq!(same.fates["out"], OperatorFate::Restored);
        let got: Vec<_> = same.subtasks["out"]
            .iter()
            .map(|s| s.sink.clone())
            .collect();
        assert_eq!(got, vec![vec![sink(0)], vec![sink(1)], vec![sink(2)]]);
        let down = map_checkpoint(&m, "p", &[target("out", 2)], false).unwrap();
        let got: Vec<_> = down.subtasks["out"]
            .iter()
            .map(|s| s.sink.clone())
            .collect();
        assert_eq!(got, vec![vec![sink(0), sink(2)], vec![sink(1)]]);
        let up = map_checkpoint(&m, "p", &[target("out", 4)], false).unwrap();
        assert!(up.subtasks["out"][3].sink.is_empty());
    }

    #[test]
    fn source_positions_go_to_the_same_subtask() {
        let op = OperatorStateMeta {
            operator_id: "src".into(),
            parallelism: 2,
            max_parallelism: 128,
            subtasks: (0..2)
                .map(|i| SubtaskStateMeta {
                    subtask: i,
                    key_groups: None,
                    keyed: None,
                    source: Some(SourcePosition::Datagen {
                        next_line: 100 + i as u64,
                    }),
                    sink: None,
                })
                .collect(),
        };
        let m = meta(vec![op]);
        let ok = map_checkpoint(&m, "p", &[target("src", 2)], false).unwrap();
        assert_eq!(
            ok.subtasks["src"][1].source,
            Some(SourcePosition::Datagen { next_line: 101 })
        );
        let up = map_checkpoint(&m, "p", &[target("src", 3)], false).unwrap();
        for s in &up.subtasks["src"] {
            assert_eq!(
                s.source,
                Some(SourcePosition::DatagenRescaled {
                    next_line: 0,
                    old_parallelism: 2,
                    old_next_lines: vec![100, 101],
                })
            );
        }
    }

    fn source_op(positions: Vec<Option<SourcePosition>>) -> OperatorStateMeta {
        OperatorStateMeta {
            operator_id: "src".into(),
            parallelism: positions.len() as u32,
            max_parallelism: 128,
            subtasks: positions
                .into_iter()
                .enumerate()
                .map(|(i, source)| SubtaskStateMeta {
                    subtask: i as u32,
                    key_groups: None,
                    keyed: None,
                    source,
                    sink: None,
                })
                .collect(),
        }
    }

    #[test]
    fn file_positions_rescale_as_their_union() {
        let op = source_op(vec![
            Some(SourcePosition::Files(vec![
                ("b".into(), 5),
                ("d".into(), 0),
            ])),
            Some(SourcePosition::Files(vec![("a".into(), 7)])),
        ]);
        let got = rescale_sources(&op, 3, "p").unwrap();
        let want = SourcePosition::Files(vec![("a".into(), 7), ("b".into(), 5), ("d".into(), 0)]);
        assert_eq!(got, vec![Some(want); 3]);
    }

    #[test]
    fn datagen_rules_compose_over_two_rescales() {
        // Taken at 2 while still skipping after a rescale from 3.
        let earlier = vec![10, 20, 30];
        let op = source_op(vec![
            Some(SourcePosition::DatagenRescaled {
                next_line: 15,
                old_parallelism: 3,
                old_next_lines: earlier.clone(),
            }),
            Some(SourcePosition::Datagen { next_line: 40 }),
        ]);
        let got = rescale_sources(&op, 1, "p").unwrap();
        // Residue r of 6: max(next[r % 2], earlier[r % 3]).
        assert_eq!(
            got,
            vec![Some(SourcePosition::DatagenRescaled {
                next_line: 0,
                old_parallelism: 6,
                old_next_lines: vec![15, 40, 30, 40, 20, 40],
            })]
        );
    }

    #[test]
    fn mixed_or_missing_positions_and_huge_rules_are_refused() {
        let mixed = source_op(vec![
            Some(SourcePosition::Datagen { next_line: 1 }),
            Some(SourcePosition::Files(vec![])),
        ]);
        assert!(matches!(
            rescale_sources(&mixed, 3, "p"),
            Err(MappingError::SourceRescale { old: 2, new: 3, .. })
        ));
        let missing = source_op(vec![Some(SourcePosition::Datagen { next_line: 1 }), None]);
        assert!(rescale_sources(&missing, 1, "p").is_err());
        let huge = source_op(
            (0..127)
                .map(|i| {
                    Some(SourcePosition::DatagenRescaled {
                        next_line: i,
                        old_parallelism: 128,
                        old_next_lines: vec![0; 128],
                    })
                })
                .collect(),
        );
        let err = rescale_sources(&huge, 2, "file:/ck/chk-3").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("source \"src\""), "{text}");
        assert!(text.contains("restore it with -p 127"), "{text}");
    }
}
