//! Which checkpoints and shared files to delete: pure decisions over plain data, no disk.
//!
//! - [`subsume`]: after a checkpoint completes, the `num-retained` newest stay, older ones go
//!   (docs/architecture.md#retention).
//! - [`on_termination`]: what `externalized-checkpoint-retention` does when the job ends
//!   (docs/architecture.md#retention-at-job-end).
//! - [`SharedRegistry`]: which retained checkpoints use each file of `shared/`, so a file is
//!   deleted only once none does (docs/architecture.md#shared-files). It is rebuilt from the retained `_metadata`
//!   files when a store starts, never kept in a side file that could drift from them.
//!
//! Ownership (Flink's NO_CLAIM guard): a checkpoint or shared file this job did not create (the
//! snapshot it was restored from) is never deleted, whatever these rules say. Entries carry an
//! `owned` flag; the restore (next issue) registers its snapshot with `owned: false`.
//!
//! This module must not touch the disk: `storage` does the deleting.

use crate::checkpoint::JobTermination;
use crate::config::ExternalizedRetention;
use std::collections::{BTreeMap, BTreeSet};

/// A completed checkpoint in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retained {
    pub id: u64,
    /// Created by this job (false for a snapshot restored in NO_CLAIM mode).
    pub owned: bool,
}

/// What happens to older checkpoints when one completes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subsumption {
    /// Checkpoints that leave the store (no longer restorable by this job's failover).
    pub leave_store: Vec<u64>,
    /// Of those, the ones whose files are deleted (the owned ones).
    pub delete: Vec<u64>,
}

/// Keeps the `num_retained` newest checkpoints (at least one: the newest completed checkpoint
/// is what a failover restores from) and subsumes the others.
pub fn subsume(retained: &[Retained], num_retained: u32) -> Subsumption {
    let keep = num_retained.max(1) as usize;
    let mut by_age: Vec<Retained> = retained.to_vec();
    by_age.sort_by_key(|r| std::cmp::Reverse(r.id));
    let mut out = Subsumption::default();
    for r in by_age.into_iter().skip(keep) {
        out.leave_store.push(r.id);
        if r.owned {
            out.delete.push(r.id);
        }
    }
    out.leave_store.sort_unstable();
    out.delete.sort_unstable();
    out
}

/// What happens to the retained checkpoints when the job ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminationAction {
    /// Leave every retained checkpoint (all `num-retained` of them) for a later `-s`.
    Retain,
    /// Delete every retained checkpoint this job owns, and the shared files they used.
    Delete,
}

/// Reference §4.3's table, by `externalized-checkpoint-retention` and how the job ended:
///
/// | mode                         | cancelled | failed | finished | suspended |
/// |------------------------------|-----------|--------|----------|-----------|
/// | NO_EXTERNALIZED_CHECKPOINTS  | delete    | delete | delete   | retain    |
/// | DELETE_ON_CANCELLATION       | delete    | retain | delete   | retain    |
/// | RETAIN_ON_CANCELLATION       | retain    | retain | delete   | retain    |
///
/// SUSPENDED: Flink's `CheckpointProperties` flags say "discard" for the first two modes, but
/// Flink's completed-checkpoint store only discards on a *globally terminal* state, and
/// SUSPENDED is not one: a suspended job's checkpoints stay so it can resume. floe uses
/// `Suspended` for "the process stops and a later `run -s` resumes", which is what a killed
/// process gives too, so it retains in every mode.
pub fn on_termination(mode: ExternalizedRetention, how: JobTermination) -> TerminationAction {
    use ExternalizedRetention::*;
    use JobTermination::*;
    use TerminationAction::*;
    match (mode, how) {
        (_, Suspended) => Retain,
        (_, Finished) => Delete,
        (NoExternalizedCheckpoints, Cancelled | Failed) => Delete,
        (DeleteOnCancellation, Cancelled) => Delete,
        (DeleteOnCancellation, Failed) => Retain,
        (RetainOnCancellation, Cancelled | Failed) => Retain,
    }
}

/// The checkpoints to delete at termination: every owned one, or none.
pub fn termination_deletes(retained: &[Retained], action: TerminationAction) -> Vec<u64> {
    match action {
        TerminationAction::Retain => Vec::new(),
        TerminationAction::Delete => {
            let mut ids: Vec<u64> = retained.iter().filter(|r| r.owned).map(|r| r.id).collect();
            ids.sort_unstable();
            ids
        }
    }
}

/// Which retained checkpoints use each file of the job's `shared/` directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedRegistry {
    files: BTreeMap<String, SharedEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SharedEntry {
    users: BTreeSet<u64>,
    owned: bool,
}

impl SharedRegistry {
    pub fn new() -> SharedRegistry {
        SharedRegistry::default()
    }

    /// The registry of a job's retained checkpoints, from their `_metadata`: each checkpoint
    /// id with the shared file names it references. Every file is owned (it is in this job's
    /// own `shared/`).
    pub fn rebuild<'a, I, F>(retained: I) -> SharedRegistry
    where
        I: IntoIterator<Item = (u64, F)>,
        F: IntoIterator<Item = &'a str>,
    {
        let mut r = SharedRegistry::new();
        for (id, files) in retained {
            r.register(id, files, true);
        }
        r
    }

    /// Records that checkpoint `id` uses `files`. `owned: false` marks files this job must
    /// never delete (a NO_CLAIM restore's); a file once registered as not owned stays so.
    pub fn register<'a>(&mut self, id: u64, files: impl IntoIterator<Item = &'a str>, owned: bool) {
        for f in files {
            let e = self
                .files
                .entry(f.to_string())
                .or_insert_with(|| SharedEntry {
                    users: BTreeSet::new(),
                    owned,
                });
            e.owned &= owned;
            e.users.insert(id);
        }
    }

    /// Drops the references of the checkpoints in `deleted` and returns the files no retained
    /// checkpoint uses any more and this job owns, sorted: those may be deleted. Files left
    /// without users but not owned are forgotten, never returned.
    pub fn unreferenced_after(&mut self, deleted: &[u64]) -> Vec<String> {
        let mut out = Vec::new();
        self.files.retain(|name, e| {
            for id in deleted {
                e.users.remove(id);
            }
            if e.users.is_empty() {
                if e.owned {
                    out.push(name.clone());
                }
                false
            } else {
                true
            }
        });
        out
    }

    /// How many retained checkpoints use `file`.
    pub fn users(&self, file: &str) -> usize {
        self.files.get(file).map_or(0, |e| e.users.len())
    }

    /// Whether any retained checkpoint uses `file`.
    pub fn is_referenced(&self, file: &str) -> bool {
        self.users(file) > 0
    }

    /// Number of files known.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ExternalizedRetention::*;
    use JobTermination::*;
    use TerminationAction::*;

    fn owned(ids: &[u64]) -> Vec<Retained> {
        ids.iter().map(|&id| Retained { id, owned: true }).collect()
    }

    #[test]
    fn keeps_exactly_n_newest() {
        let r = owned(&[3, 1, 5, 2, 4]);
        assert_eq!(subsume(&r, 3).delete, vec![1, 2]);
        assert_eq!(subsume(&r, 1).delete, vec![1, 2, 3, 4]);
        assert_eq!(subsume(&r, 5).delete, Vec::<u64>::new());
        assert_eq!(subsume(&r, 9).delete, Vec::<u64>::new());
    }

    #[test]
    fn zero_retained_still_keeps_the_newest() {
        assert_eq!(subsume(&owned(&[1, 2]), 0).delete, vec![1]);
    }

    #[test]
    fn not_owned_checkpoints_leave_the_store_but_are_not_deleted() {
        let mut r = owned(&[8, 9]);
        r.push(Retained {
            id: 7,
            owned: false,
        });
        let s = subsume(&r, 1);
        assert_eq!(s.leave_store, vec![7, 8]);
        assert_eq!(s.delete, vec![8]);
    }

    #[test]
    fn termination_table() {
        let cases = [
            (NoExternalizedCheckpoints, Cancelled, Delete),
            (NoExternalizedCheckpoints, Failed, Delete),
            (NoExternalizedCheckpoints, Finished, Delete),
            (NoExternalizedCheckpoints, Suspended, Retain),
            (DeleteOnCancellation, Cancelled, Delete),
            (DeleteOnCancellation, Failed, Retain),
            (DeleteOnCancellation, Finished, Delete),
            (DeleteOnCancellation, Suspended, Retain),
            (RetainOnCancellation, Cancelled, Retain),
            (RetainOnCancellation, Failed, Retain),
            (RetainOnCancellation, Finished, Delete),
            (RetainOnCancellation, Suspended, Retain),
        ];
        for (mode, how, want) in cases {
            assert_eq!(on_termination(mode, how), want, "{mode:?} {how:?}");
        }
    }

    #[test]
    fn termination_deletes_all_owned_or_none() {
        let mut r = owned(&[4, 5, 6]);
        r.push(Retained {
            id: 2,
            owned: false,
        });
        assert_eq!(termination_deletes(&r, Delete), vec![4, 5, 6]);
        assert!(termination_deletes(&r, Retain).is_empty());
    }

    #[test]
    fn shared_file_stays_while_any_checkpoint_uses_it() {
        // chk-1: base; chk-2: base + d2; chk-3: base + d2 + d3; chk-4: compacted full f4.
        let mut reg = SharedRegistry::rebuild([
            (1, vec!["base"]),
            (2, vec!["base", "d2"]),
            (3, vec!["base", "d2", "d3"]),
        ]);
        assert_eq!(reg.users("base"), 3);
        assert!(reg.unreferenced_after(&[1]).is_empty());
        assert!(reg.unreferenced_after(&[2]).is_empty());
        assert_eq!(reg.users("base"), 1);
        reg.register(4, ["f4"], true);
        assert_eq!(reg.unreferenced_after(&[3]), vec!["base", "d2", "d3"]);
        assert!(reg.is_referenced("f4"));
        assert!(!reg.is_referenced("base"));
        assert_eq!(reg.len(), 1);
    }

    #[test]
    fn not_owned_shared_files_are_never_returned() {
        let mut reg = SharedRegistry::new();
        reg.register(1, ["theirs"], false);
        reg.register(2, ["theirs", "mine"], true);
        assert!(reg.unreferenced_after(&[1]).is_empty());
        assert_eq!(reg.unreferenced_after(&[2]), vec!["mine"]);
        assert!(reg.is_empty());
    }

    #[test]
    fn deleting_unknown_ids_changes_nothing() {
        let mut reg = SharedRegistry::rebuild([(1, vec!["a"])]);
        assert!(reg.unreferenced_after(&[42]).is_empty());
        assert_eq!(reg.users("a"), 1);
    }
}
