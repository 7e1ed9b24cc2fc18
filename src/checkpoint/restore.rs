//! Restore mapping: which state of a checkpoint goes to which operator subtask of a new job.
//!
//! Pure decisions over plain data (metadata in, mapping out), tested without disks: operators
//! are matched by `id`; state of an id the new pipeline lacks is refused with Flink's message
//! unless non-restored state is allowed; new ids start empty; operators without state never
//! block a restore; a changed max parallelism of keyed state is refused with Flink's message;
//! keyed state moves by whole key groups, so a restore at another parallelism reads, for each
//! new subtask, exactly the groups of its range from the old subtasks that held them.
//! Operator state (a source's position, a sink's pending commits) is opaque here: at the
//! same parallelism each subtask gets its own back; at another, it is handed out as its
//! redistribution says (every old subtask's to every new one, or old `j`'s to new
//! `j mod p`) and the operator works out its share.
//!
//! Also here, at the edge to the disk: [`load_snapshot`] and [`prepare`] turn an unreadable
//! checkpoint (a `_metadata` or state file missing or corrupt) into a [`RestoreError`] that
//! names the checkpoint, the file and an older retained checkpoint that is intact, and
//! [`find_latest`] resolves `-s latest` (the choice itself, [`pick_latest`], is pure).

use crate::checkpoint::metadata::{CheckpointMetadata, KeyedStateHandle, OperatorStateMeta};
use crate::checkpoint::storage::{self, LoadedSnapshot, Location};
use crate::checkpoint::{CheckpointError, JobId};
use crate::state::keygroup::KeyGroupRange;
use crate::state::{Redistribution, RestoredBlob, StateFormat};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// What to put back into a job before its first record, per operator id and (new) subtask:
/// the result of the restore mapping (which state goes to which subtask at the new
/// parallelism), done by the caller.
#[derive(Debug, Default)]
pub struct RestoreState {
    /// The checkpoint or savepoint restored: numbering continues after it.
    pub checkpoint_id: crate::ids::CheckpointId,
    /// Keyed and operator state, sources' positions included.
    pub operators: HashMap<(crate::pipeline::OperatorId, u32), crate::operators::RestoredState>,
}

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
}

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
    /// The format the keyed state was written in.
    pub keyed_format: Option<StateFormat>,
    /// Operator state: its own old subtask's (same parallelism), or as each blob's
    /// redistribution hands it out (every old subtask's; or old `j`'s to new `j mod p`, so
    /// that every pre-committed file of a sink is committed once).
    pub blobs: Vec<RestoredBlob>,
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
        .any(|s| s.keyed.is_some() || s.operator.is_some())
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
    // Keyed state keeps the checkpoint's max parallelism (the new job adopts it).
    let max_p = op.max_parallelism;
    let rescaled = op.parallelism != target.parallelism;
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
                    restore.keyed_format = old.keyed_format.clone();
                }
            }
            if let Some(blob) = &old.operator {
                let mine = match (rescaled, blob.redistribution) {
                    (false, _) => old.subtask == new_index,
                    (true, Redistribution::Union) => true,
                    (true, Redistribution::RoundRobin) => {
                        old.subtask % target.parallelism == new_index
                    }
                };
                if mine {
                    restore.blobs.push(RestoredBlob {
                        old_subtask: old.subtask,
                        old_parallelism: op.parallelism,
                        blob: blob.clone(),
                    });
                }
            }
        }
        out.push(restore);
    }
    Ok(out)
}

/// Reads the keyed state of one new subtask owning `range`: the runs of the groups each
/// [`KeyedSource`] names, checked against their checksums, base first then each delta of a
/// chain (the operator applies them in that order, so later values and deletions win).
/// Errors name the checkpoint and the file.
pub fn load_keyed(
    loaded: &crate::checkpoint::storage::LoadedSnapshot,
    sources: &[KeyedSource],
    format: StateFormat,
    range: KeyGroupRange,
    max_parallelism: u32,
) -> Result<crate::state::KeyedRuns, crate::checkpoint::CheckpointError> {
    let mut runs = Vec::new();
    for source in sources {
        for (entry, bytes) in
            crate::checkpoint::storage::read_handle(loaded, &source.handle, source.groups)?
        {
            runs.push((entry.key_group, bytes));
        }
    }
    Ok(crate::state::KeyedRuns {
        format,
        range,
        max_parallelism,
        runs,
    })
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

/// Reads the state `mapping` assigns to each subtask of the new job: keyed state as the runs
/// of the groups each subtask owns, operator state as handed out.
pub fn load_state(
    loaded: &crate::checkpoint::storage::LoadedSnapshot,
    mapping: &RestoreMapping,
    max_parallelism: u32,
) -> Result<RestoreState, crate::checkpoint::CheckpointError> {
    use crate::operators::RestoredState;
    use crate::pipeline::OperatorId;
    let mut state = RestoreState {
        checkpoint_id: crate::checkpoint::CheckpointId(mapping.checkpoint_id),
        ..Default::default()
    };
    for (id, subtasks) in &mapping.subtasks {
        let parallelism = subtasks.len() as u32;
        for (index, restore) in subtasks.iter().enumerate() {
            let index = index as u32;
            let key = (OperatorId(id.clone()), index);
            if !restore.keyed.is_empty() {
                let range = KeyGroupRange::for_subtask(index, parallelism, max_parallelism);
                // Files before format version 3 hold only the keyed store's runs.
                let format = restore
                    .keyed_format
                    .clone()
                    .unwrap_or_else(crate::state::snapshot::keyed_values_v1);
                let runs = load_keyed(loaded, &restore.keyed, format, range, max_parallelism)?;
                state.operators.insert(key, RestoredState::Keyed(runs));
            } else if !restore.blobs.is_empty() {
                state
                    .operators
                    .insert(key, RestoredState::Blobs(restore.blobs.clone()));
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
    let name = loaded.dir.name().unwrap_or("");
    let is_checkpoint = storage::checkpoint_id_of(name).is_some();
    let is_savepoint = name.len() > "savepoint-".len() && name.starts_with("savepoint-");
    if is_checkpoint || is_savepoint {
        Ok(())
    } else {
        Err(RestoreError::NotClaimable {
            dir: loaded.dir.to_path_buf(),
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
    pub fn unreadable(dir: &Location, job_id: Option<&JobId>, source: CheckpointError) -> Self {
        // Only a missing or damaged snapshot makes an older one worth looking for; a refused
        // location or a storage failure would refuse or fail the same way for every one.
        let intact_older = source
            .is_damaged_snapshot()
            .then(|| storage::find_intact_older(dir, job_id))
            .flatten()
            .map(|older| older.to_path_buf());
        RestoreError::Unreadable {
            checkpoint: dir.to_path_buf(),
            intact_older,
            source,
        }
    }
}

/// The snapshot directory a `-s` path names: the directory itself, or the one holding the
/// `_metadata` file given.
fn snapshot_dir_of(given: &Path) -> Location {
    let at = Location::parse(given).unwrap_or_else(|_| Location::Local(given.to_path_buf()));
    match at.name() {
        Some(storage::METADATA_FILE) => at.parent().unwrap_or(at),
        _ => at,
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
) -> Result<(RestoreMapping, RestoreState), RestoreError> {
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
pub fn pointer(dir: &Location) -> String {
    match dir.as_local() {
        None => dir.to_string(),
        Some(local) => {
            let abs = std::fs::canonicalize(local).unwrap_or_else(|_| local.to_path_buf());
            format!("file:{}", abs.display())
        }
    }
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
                dir: path.to_path_buf(),
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
            dir: base.to_path_buf(),
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
                        keyed_format: None,
                        operator: None,
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
            source: CheckpointError::NotFound("state file 'x' is missing".into()),
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

    fn blob_op(blobs: Vec<Option<crate::state::OperatorBlob>>) -> OperatorStateMeta {
        OperatorStateMeta {
            operator_id: "op".into(),
            parallelism: blobs.len() as u32,
            max_parallelism: 128,
            subtasks: blobs
                .into_iter()
                .enumerate()
                .map(|(i, operator)| SubtaskStateMeta {
                    subtask: i as u32,
                    key_groups: None,
                    keyed: None,
                    keyed_format: None,
                    operator,
                })
                .collect(),
        }
    }

    fn state(tag: u8, redistribution: Redistribution) -> crate::state::OperatorBlob {
        crate::state::OperatorBlob {
            format: StateFormat::new("test", 1),
            redistribution,
            bytes: vec![tag],
        }
    }

    /// Which old subtasks' state each new subtask gets.
    fn handed_out(m: &RestoreMapping) -> Vec<Vec<u32>> {
        m.subtasks["op"]
            .iter()
            .map(|s| s.blobs.iter().map(|b| b.old_subtask).collect())
            .collect()
    }

    #[test]
    fn round_robin_state_of_every_old_subtask_goes_to_exactly_one_new_subtask() {
        let m = meta(vec![blob_op(
            (0..3)
                .map(|i| Some(state(i, Redistribution::RoundRobin)))
                .collect(),
        )]);
        let same = map_checkpoint(&m, "p", &[target("op", 3)], false).unwrap();
        assert_eq!(same.fates["op"], OperatorFate::Restored);
        assert_eq!(handed_out(&same), vec![vec![0], vec![1], vec![2]]);
        assert_eq!(same.subtasks["op"][1].blobs[0].blob.bytes, vec![1]);
        let down = map_checkpoint(&m, "p", &[target("op", 2)], false).unwrap();
        assert_eq!(handed_out(&down), vec![vec![0, 2], vec![1]]);
        let up = map_checkpoint(&m, "p", &[target("op", 4)], false).unwrap();
        assert_eq!(handed_out(&up), vec![vec![0], vec![1], vec![2], vec![]]);
    }

    #[test]
    fn union_state_goes_to_its_own_subtask_or_to_every_new_one() {
        let m = meta(vec![blob_op(
            (0..2)
                .map(|i| Some(state(i, Redistribution::Union)))
                .collect(),
        )]);
        let same = map_checkpoint(&m, "p", &[target("op", 2)], false).unwrap();
        assert_eq!(handed_out(&same), vec![vec![0], vec![1]]);
        let up = map_checkpoint(&m, "p", &[target("op", 3)], false).unwrap();
        assert_eq!(handed_out(&up), vec![vec![0, 1]; 3]);
        assert!(up.subtasks["op"]
            .iter()
            .all(|s| s.blobs.iter().all(|b| b.old_parallelism == 2)));
    }
}
