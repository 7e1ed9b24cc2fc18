//! [`FsCheckpointStore`]: the [`CheckpointStore`] on a local file system or `s3://` (the paths
//! decide; see `storage`). Writes subtask state (inline or
//! to files, full or incremental), completes checkpoints by writing `_metadata`, and applies
//! retention and termination cleanup decided in `retention`.
//!
//! Incremental chains: per keyed subtask the store remembers the chain its last snapshot
//! ended (`chain[0]` a full blob, then deltas). The next snapshot is a delta onto it unless
//! [`choose_encoding`] says to compact (write a full blob) so that a restore reads a bounded
//! number of blobs.
//!
//! Caller contract for incremental checkpoints: a delta holds the changes since the store's
//! previous snapshot, so every `KeyedSnapshot` taken must reach `write_subtask`, in checkpoint
//! order per subtask, even when its checkpoint was aborted meanwhile. Otherwise the next delta
//! misses those changes. A snapshot that arrives out of order is written full.

use super::backend::FreshFile;
use super::{
    delete_snapshot_dir, drop_aside, list_checkpoints, path, placement, write_metadata,
    write_state_file, Location, PathKind, Placement,
};
use crate::checkpoint::metadata::{
    self, BlobLocation, CheckpointMetadata, KeyedStateHandle, StateBlob, SubtaskStateMeta,
};
use crate::checkpoint::retention::{self, Retained, SharedRegistry};
use crate::checkpoint::{
    CheckpointError, CheckpointId, CheckpointStore, CompletedCheckpoint, JobId, JobTermination,
    OperatorSnapshot, SubtaskSnapshot,
};
use crate::config::{
    CheckpointStorageKind, CheckpointingConfig, ExternalizedRetention, StateBackendKind,
    StateConfig,
};
use crate::state::keyed::DeltaBase;
use crate::state::keygroup::KeyGroupRange;
use crate::state::snapshot::{EncodedBlob, GroupIndexEntry};
use crate::state::BlobOut;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A chain gets compacted (the next snapshot written full) after this many deltas.
pub const MAX_DELTAS: usize = 8;

/// Full blob or delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Full,
    Delta,
}

/// What [`choose_encoding`] needs to know about a subtask's current chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainInfo {
    /// Checkpoint of the chain's last blob.
    pub last_checkpoint: u64,
    /// Deltas after the full base.
    pub deltas: usize,
    pub base_size: u64,
    pub deltas_size: u64,
}

/// Full or delta for the snapshot of `checkpoint` of one subtask. Full when incremental is
/// off, there is no chain yet, the snapshot is out of order, or the chain is due for
/// compaction: [`MAX_DELTAS`] deltas already, or deltas bigger in total than the base (then a
/// restore reads more than a full snapshot would).
pub fn choose_encoding(incremental: bool, chain: Option<ChainInfo>, checkpoint: u64) -> Encoding {
    match chain {
        Some(c)
            if incremental
                && checkpoint > c.last_checkpoint
                && c.deltas < MAX_DELTAS
                && c.deltas_size <= c.base_size =>
        {
            Encoding::Delta
        }
        _ => Encoding::Full,
    }
}

#[derive(Debug, Clone)]
struct Chain {
    info: ChainInfo,
    blobs: Vec<StateBlob>,
    /// The `KeyedSnapshot::sequence` of the chain's last blob, when known: a delta continues
    /// the chain only if it is relative to exactly that snapshot. A savepoint takes a
    /// snapshot of the keyed store too (moving its change tracking on) but is written full
    /// elsewhere and never joins the chain, so the checkpoint after it is written full.
    last_sequence: Option<u64>,
}

/// What a checkpoint that has not completed yet has written.
#[derive(Debug, Default)]
struct Pending {
    /// Bytes of state files.
    bytes: u64,
    /// Names of the files it wrote to `shared/`.
    shared: Vec<String>,
}

#[derive(Debug, Clone)]
struct RetainedCheckpoint {
    id: u64,
    dir: Location,
    owned: bool,
    /// For a claimed snapshot (a directory floe did not create): the state files its
    /// `_metadata` lists, the only ones deleted with it. `None` for this job's own `chk-<n>`.
    claimed_files: Option<Vec<String>>,
}

impl RetainedCheckpoint {
    fn own(id: u64, dir: Location) -> Self {
        RetainedCheckpoint {
            id,
            dir,
            owned: true,
            claimed_files: None,
        }
    }

    /// Deletes its files: all of this job's own directory, or only what a claimed snapshot
    /// listed.
    fn delete(&self) -> Result<(), CheckpointError> {
        match &self.claimed_files {
            None => delete_snapshot_dir(&self.dir),
            Some(names) => super::delete_listed(&self.dir, names).map(|_| ()),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Completed checkpoints in the store, oldest first.
    retained: Vec<RetainedCheckpoint>,
    registry: SharedRegistry,
    chains: HashMap<(String, u32), Chain>,
    pending: BTreeMap<u64, Pending>,
    /// Shared files of a claimed snapshot, which live in its own job's `shared/`, by name.
    foreign_shared: HashMap<String, Location>,
    terminated: bool,
}

impl Inner {
    /// Shared files some live chain still ends in: the next checkpoints will reference them,
    /// so they are not deleted even when no retained checkpoint uses them yet.
    fn chain_files(&self) -> BTreeSet<&str> {
        self.chains
            .values()
            .flat_map(|c| c.blobs.iter())
            .filter_map(|b| match &b.location {
                BlobLocation::Shared(n) => Some(n.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// Checkpoint storage for one job, on a local file system or an object store (`s3://`): the
/// paths decide, every write and delete goes through `storage`'s functions.
#[derive(Debug)]
pub struct FsCheckpointStore {
    job_id: JobId,
    job_name: String,
    job_dir: Location,
    shared_dir: Location,
    /// Atomics: `floe serve` may change them while the job runs (`CheckpointStore::reconfigure`).
    inline_threshold: AtomicU64,
    always_inline: bool,
    incremental: bool,
    num_retained: AtomicU32,
    retention: ExternalizedRetention,
    inner: Mutex<Inner>,
    /// Buffers of state-file pieces already written, for the next ones.
    pieces: Arc<PiecePool>,
}

impl FsCheckpointStore {
    /// Opens the job's checkpoint directory: creates `<dir>/<job-id>/`, `shared/` and
    /// `taskowned/` (as Flink does at job start; they are left behind at the end), and
    /// rebuilds the retained checkpoints and shared-file counts from the `_metadata` files
    /// of this job found there.
    pub fn new(
        state: &StateConfig,
        checkpointing: &CheckpointingConfig,
        job_id: JobId,
        job_name: &str,
    ) -> Result<FsCheckpointStore, CheckpointError> {
        let dir = state.checkpoints_dir.as_deref().ok_or_else(|| {
            CheckpointError::Refused(
                "checkpoints need a directory: set execution.checkpointing.dir \
                 (state.checkpoints.dir) in conf/flink-conf.yaml or the pipeline's \
                 checkpointing block, e.g. file:///var/lib/floe/checkpoints"
                    .into(),
            )
        })?;
        let base = super::parse_dir(dir)?;
        let job_dir = path(PathKind::JobDir {
            base: &base,
            job_id: &job_id,
            create_subdir: state.create_subdir,
        });
        let shared_dir = path(PathKind::SharedDir { job_dir: &job_dir });
        shared_dir.storage().create_dir()?;
        path(PathKind::TaskOwnedDir { job_dir: &job_dir })
            .storage()
            .create_dir()?;
        job_dir.storage().sync_dir()?;
        // On an object store with the job-id subdirectory the job directory is new (job ids
        // are fresh), so there is nothing to rebuild; skipping the listing keeps a slow or
        // unreachable store from delaying the job's start.
        let inner = if job_dir.is_object() && state.create_subdir {
            Inner::default()
        } else {
            rebuild(&job_dir, &job_id)
        };
        Ok(FsCheckpointStore {
            job_id,
            job_name: job_name.to_string(),
            job_dir,
            shared_dir,
            inline_threshold: AtomicU64::new(state.inline_threshold),
            always_inline: state.backend == StateBackendKind::JobManager
                || state.effective_storage() == CheckpointStorageKind::JobManager,
            incremental: state.incremental,
            num_retained: AtomicU32::new(state.num_retained),
            retention: checkpointing.externalized_retention,
            inner: Mutex::new(inner),
            pieces: Arc::default(),
        })
    }

    pub fn job_id(&self) -> &JobId {
        &self.job_id
    }

    pub fn job_name(&self) -> &str {
        &self.job_name
    }

    /// `<dir>/<job-id>` (or `<dir>` without the subdirectory).
    pub fn job_dir(&self) -> &Location {
        &self.job_dir
    }

    /// `chk-<id>` of this job.
    pub fn checkpoint_dir(&self, id: u64) -> Location {
        path(PathKind::CheckpointDir {
            job_dir: &self.job_dir,
            id,
        })
    }

    /// Ids of the completed checkpoints in the store, oldest first.
    pub fn retained(&self) -> Vec<u64> {
        self.lock().retained.iter().map(|r| r.id).collect()
    }

    /// The newest completed checkpoint in the store (possibly the snapshot the job was
    /// restored from): what a failover restores.
    pub fn latest_retained(&self) -> Option<(u64, Location)> {
        self.lock().retained.last().map(|r| (r.id, r.dir.clone()))
    }

    /// Puts the snapshot the job was restored from into the store, as Flink's
    /// `registerAllAfterRestored` does: it is the restore point of a failover until a newer
    /// checkpoint completes, and leaves the store when subsumed. `claim` (CLAIM mode) makes
    /// the job its owner: subsumption and termination may delete it and the shared files it
    /// uses. Without it (NO_CLAIM) nothing of it is ever deleted by this job.
    pub fn register_restored(&self, restored: &super::LoadedSnapshot, claim: bool) {
        let id = restored.metadata.checkpoint_id;
        let mut inner = self.lock();
        if inner.retained.iter().any(|r| r.id == id) {
            return;
        }
        let files: Vec<&str> = restored.metadata.shared_files().collect();
        if claim {
            // Its shared files are in its own job directory, not in this job's `shared/`.
            for name in &files {
                let file = path(PathKind::SharedFile {
                    job_dir: &restored.job_dir(),
                    name,
                });
                inner.foreign_shared.insert((*name).to_string(), file);
            }
        }
        inner.registry.register(id, files.iter().copied(), claim);
        // A claimed directory is later deleted through a walk that follows no symlink: the
        // path the user gave is resolved now, while it is what they meant.
        let dir = match restored.dir.as_local() {
            Some(local) if claim => {
                std::fs::canonicalize(local).map_or_else(|_| restored.dir.clone(), Location::Local)
            }
            _ => restored.dir.clone(),
        };
        inner.retained.push(RetainedCheckpoint {
            id,
            dir,
            owned: claim,
            claimed_files: Some(
                restored
                    .metadata
                    .exclusive_files()
                    .map(String::from)
                    .collect(),
            ),
        });
        inner.retained.sort_by_key(|r| r.id);
    }

    /// Before the job restarts in-process (failover): the operators come back from a
    /// restored snapshot, so no chain of the failed attempt may be continued (its last blob
    /// may hold changes the restore rolled back). The next snapshot of every subtask is full.
    pub fn prepare_restart(&self) {
        self.lock().chains.clear();
    }

    /// How many retained checkpoints use `shared/<file>`.
    pub fn shared_users(&self, file: &str) -> usize {
        self.lock().registry.users(file)
    }

    /// How many written pieces' buffers the store keeps for the next ones.
    #[cfg(test)]
    pub(super) fn kept_pieces(&self) -> usize {
        self.pieces.0.lock().unwrap().len()
    }

    /// Whether another thread (or this one) holds the store's lock now.
    #[cfg(test)]
    pub(super) fn is_locked(&self) -> bool {
        matches!(
            self.inner.try_lock(),
            Err(std::sync::TryLockError::WouldBlock)
        )
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain bookkeeping behind; the files on disk
        // are the truth and are rebuilt from at the next start, so keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes an encoded blob of `checkpoint`: inline, or to a new file (exclusive or shared
    /// by `placement`). The file is durable when this returns.
    pub fn write_blob(
        &self,
        checkpoint: u64,
        blob: EncodedBlob,
        incremental: bool,
    ) -> Result<StateBlob, CheckpointError> {
        let size = blob.bytes.len() as u64;
        let place = placement(
            size,
            self.inline_threshold.load(Ordering::Relaxed),
            self.always_inline,
            incremental,
        );
        let location = match place {
            Placement::Inline => BlobLocation::Inline(blob.bytes),
            _ => {
                let dir = self.state_file_dir(checkpoint, place)?;
                let name = write_state_file(&dir, blob.bytes)?;
                self.note_pending(checkpoint, place, &name, size);
                file_location(place, name)
            }
        };
        Ok(StateBlob {
            location,
            size,
            groups: blob.groups,
        })
    }

    /// Where a state file of `checkpoint` placed by `place` goes: the checkpoint's own
    /// directory (created here) or the shared one.
    fn state_file_dir(
        &self,
        checkpoint: u64,
        place: Placement,
    ) -> Result<Location, CheckpointError> {
        if place == Placement::Shared {
            return Ok(self.shared_dir.clone());
        }
        let dir = self.checkpoint_dir(checkpoint);
        dir.storage().create_dir()?;
        Ok(dir)
    }

    /// Counts a state file of `checkpoint` (`bytes` more) in what it wrote, and lists a shared
    /// one, for an abort to delete. A file being written is listed before its first byte.
    fn note_pending(&self, checkpoint: u64, place: Placement, name: &str, bytes: u64) {
        let mut inner = self.lock();
        let p = inner.pending.entry(checkpoint).or_default();
        p.bytes += bytes;
        if place == Placement::Shared && !p.shared.iter().any(|n| n == name) {
            p.shared.push(name.to_string());
        }
    }

    /// Encodes with `encode` into [`StreamedBlob`]: kept in memory while it may still go
    /// inline, then written to its state file a piece at a time.
    fn write_streamed(
        &self,
        checkpoint: u64,
        incremental: bool,
        encode: impl FnOnce(&mut dyn BlobOut) -> Vec<GroupIndexEntry>,
    ) -> Result<StateBlob, CheckpointError> {
        let mut out = StreamedBlob {
            store: self,
            checkpoint,
            incremental,
            held: Vec::new(),
            file: None,
            size: 0,
            error: None,
        };
        let groups = encode(&mut out);
        out.finish(groups)
    }

    /// Writes one keyed subtask's state with `encode` producing the bytes for the encoding
    /// [`choose_encoding`] picks; keeps the subtask's chain. `write_subtask` streams a
    /// snapshot's encoding the same way ([`KeyedStateSnapshot::encode_into`]).
    pub fn write_keyed_with(
        &self,
        checkpoint: u64,
        operator_id: &str,
        subtask: u32,
        range: KeyGroupRange,
        encode: impl FnOnce(Encoding) -> EncodedBlob,
    ) -> Result<SubtaskStateMeta, CheckpointError> {
        let streamed = |encoding, out: &mut dyn BlobOut| {
            let blob = encode(encoding);
            out.write(&blob.bytes);
            blob.groups
        };
        self.write_keyed_from(checkpoint, operator_id, subtask, range, None, streamed)
    }

    /// [`FsCheckpointStore::write_keyed_with`], and with `origin` (the snapshot's sequence and
    /// what its delta is relative to) a delta only when it applies on the chain's last blob.
    fn write_keyed_from(
        &self,
        checkpoint: u64,
        operator_id: &str,
        subtask: u32,
        range: KeyGroupRange,
        origin: Option<(u64, DeltaBase)>,
        encode: impl FnOnce(Encoding, &mut dyn BlobOut) -> Vec<GroupIndexEntry>,
    ) -> Result<SubtaskStateMeta, CheckpointError> {
        let key = (operator_id.to_string(), subtask);
        let encoding = {
            let inner = self.lock();
            let chain = inner.chains.get(&key);
            let continues = match (origin, chain) {
                (None, _) => true,
                (Some((_, base)), Some(c)) => c
                    .last_sequence
                    .is_some_and(|l| base == DeltaBase::Snapshot(l)),
                (Some(_), None) => false,
            };
            let info = chain.filter(|_| continues).map(|c| c.info);
            choose_encoding(self.incremental, info, checkpoint)
        };
        // Encoding and writing run without the lock: other subtasks write in parallel.
        let written =
            self.write_streamed(checkpoint, self.incremental, |out| encode(encoding, out));
        let mut inner = self.lock();
        let blob = match written {
            Ok(b) => b,
            Err(e) => {
                // The store's change tracking has moved past this snapshot, so the chain
                // cannot be continued: the next snapshot must be full.
                inner.chains.remove(&key);
                return Err(e);
            }
        };
        let keyed = if !self.incremental {
            KeyedStateHandle::Full(blob)
        } else {
            // A snapshot older than the chain's end (out of order) was written full and does
            // not replace the newer chain.
            let out_of_order = inner
                .chains
                .get(&key)
                .is_some_and(|c| c.info.last_checkpoint >= checkpoint);
            let chain = match (encoding, inner.chains.get(&key)) {
                (Encoding::Delta, Some(c)) => {
                    let mut c = c.clone();
                    c.info.last_checkpoint = checkpoint;
                    c.info.deltas += 1;
                    c.info.deltas_size += blob.size;
                    c.blobs.push(blob);
                    c.last_sequence = origin.map(|(seq, _)| seq);
                    c
                }
                _ => Chain {
                    info: ChainInfo {
                        last_checkpoint: checkpoint,
                        deltas: 0,
                        base_size: blob.size,
                        deltas_size: 0,
                    },
                    blobs: vec![blob],
                    last_sequence: origin.map(|(seq, _)| seq),
                },
            };
            let handle = KeyedStateHandle::Incremental {
                chain: chain.blobs.clone(),
            };
            if !out_of_order {
                inner.chains.insert(key, chain);
            }
            handle
        };
        Ok(SubtaskStateMeta {
            subtask,
            key_groups: Some((range.start, range.end)),
            keyed: Some(keyed),
            keyed_format: None,
            operator: None,
        })
    }

    /// The files of checkpoints that will never complete: their `chk-<n>` directory and the
    /// shared files no retained checkpoint and no live chain uses. Decided under the lock,
    /// deleted by the caller after releasing it ([`Deletions::run`]).
    fn discard_pending(&self, inner: &mut Inner, ids: &[u64], out: &mut Deletions) {
        let mut shared = Vec::new();
        for id in ids {
            if let Some(p) = inner.pending.remove(id) {
                shared.extend(p.shared);
            }
            if inner.retained.iter().any(|r| r.id == *id) {
                continue;
            }
            out.dirs.push(self.checkpoint_dir(*id));
        }
        let live = inner.chain_files();
        for name in shared {
            if !inner.registry.is_referenced(&name) && !live.contains(name.as_str()) {
                out.files.push(self.shared_file(inner, &name));
            }
        }
    }

    /// Removes `leave` from the store and decides the deletion of retained checkpoints
    /// `delete` and of the shared files nothing uses any more (deleted by the caller after
    /// releasing the lock).
    fn drop_retained(&self, inner: &mut Inner, leave: &[u64], delete: &[u64], out: &mut Deletions) {
        for id in delete {
            if let Some(r) = inner.retained.iter().find(|r| r.id == *id) {
                out.retained.push(r.clone());
            }
        }
        inner.retained.retain(|r| !leave.contains(&r.id));
        let unreferenced = inner.registry.unreferenced_after(leave);
        let live = inner.chain_files();
        for name in &unreferenced {
            if !live.contains(name.as_str()) {
                out.files.push(self.shared_file(inner, name));
            }
        }
        drop(live);
        for name in &unreferenced {
            inner.foreign_shared.remove(name);
        }
    }
}

/// Directories and files the store decided to delete, deleted once its lock is released: a
/// delete on S3 is a network round trip, and nothing else may wait on the lock meanwhile.
/// Safe to run unlocked: what is listed left the store's bookkeeping under the lock, so no
/// later checkpoint can reference it.
#[derive(Debug, Default)]
#[must_use = "the decided deletions happen only in run()"]
struct Deletions {
    /// Checkpoint directories (`_metadata` deleted first).
    dirs: Vec<Location>,
    /// Retained checkpoints: this job's own directory, or only what a claimed one listed.
    retained: Vec<RetainedCheckpoint>,
    files: Vec<Location>,
}

#[cfg(test)]
thread_local! {
    /// Runs as decided deletions start (tests: is the store's lock free by then?).
    pub(super) static BEFORE_DELETIONS: std::cell::RefCell<Option<Box<dyn Fn()>>> =
        const { std::cell::RefCell::new(None) };
}

impl Deletions {
    fn run(self) {
        #[cfg(test)]
        BEFORE_DELETIONS.with(|h| {
            if let Some(h) = &*h.borrow() {
                h();
            }
        });
        for d in &self.dirs {
            warn_on_err(delete_snapshot_dir(d));
        }
        for r in &self.retained {
            warn_on_err(r.delete());
        }
        for f in &self.files {
            warn_on_err(f.storage().delete());
        }
    }
}

impl FsCheckpointStore {
    /// Where a shared file is: in this job's `shared/`, or in a claimed snapshot's.
    fn shared_file(&self, inner: &Inner, name: &str) -> Location {
        match inner.foreign_shared.get(name) {
            Some(p) => p.clone(),
            None => path(PathKind::SharedFile {
                job_dir: &self.job_dir,
                name,
            }),
        }
    }
}

fn warn_on_err(r: Result<(), CheckpointError>) {
    if let Err(e) = r {
        tracing::warn!(error = %e, "checkpoint cleanup failed; the files stay behind");
    }
}

/// The store's view of a job directory at start: this job's complete checkpoints and the
/// shared files they use, from their `_metadata`. A `_metadata` that does not decode or
/// belongs to another job (possible with `create-subdir: false`) is left alone: not retained,
/// never deleted.
fn rebuild(job_dir: &Location, job_id: &JobId) -> Inner {
    let mut inner = Inner::default();
    let Ok(found) = list_checkpoints(job_dir) else {
        return inner;
    };
    for (id, dir) in found.into_iter().rev() {
        match super::load_at(&dir) {
            Ok(l) if &l.metadata.job_id == job_id => {
                inner.registry.register(id, l.metadata.shared_files(), true);
                inner.retained.push(RetainedCheckpoint::own(id, dir));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "ignoring an unreadable checkpoint at start"),
        }
    }
    inner
}

/// Where a keyed blob goes while it is encoded ([`FsCheckpointStore::write_streamed`]).
struct StreamedBlob<'s> {
    store: &'s FsCheckpointStore,
    checkpoint: u64,
    incremental: bool,
    /// The bytes so far, until they go to a file.
    held: Vec<u8>,
    /// The state file being written: its placement, name and writer.
    file: Option<(Placement, String, FileWriter)>,
    size: u64,
    error: Option<CheckpointError>,
}

impl StreamedBlob<'_> {
    /// Opens the state file once the blob is too big to go inline, and writes what is held.
    fn spill(&mut self) -> Result<(), CheckpointError> {
        let st = self.store;
        let place = placement(
            self.size,
            st.inline_threshold.load(Ordering::Relaxed),
            st.always_inline,
            self.incremental,
        );
        if place == Placement::Inline {
            return Ok(());
        }
        let dir = st.state_file_dir(self.checkpoint, place)?;
        let name = super::state_file_name();
        st.note_pending(self.checkpoint, place, &name, 0);
        let file = dir.join(&name).storage().create_fresh()?;
        let writer = FileWriter::spawn(file, self.store.pieces.clone())?;
        writer.send(std::mem::take(&mut self.held));
        self.file = Some((place, name, writer));
        Ok(())
    }

    fn finish(self, groups: Vec<GroupIndexEntry>) -> Result<StateBlob, CheckpointError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let Some((place, name, file)) = self.file else {
            // An inline blob is small; a piece buffer it came in goes back to the pool.
            let bytes = self.held.clone();
            self.store.pieces.give(self.held);
            let blob = EncodedBlob { bytes, groups };
            return self
                .store
                .write_blob(self.checkpoint, blob, self.incremental);
        };
        file.finish()?.finish()?;
        self.store
            .note_pending(self.checkpoint, place, &name, self.size);
        Ok(StateBlob {
            location: file_location(place, name),
            size: self.size,
            groups,
        })
    }
}

impl BlobOut for StreamedBlob<'_> {
    fn write(&mut self, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        if self.file.is_none() {
            // Likely a small blob, kept whole if it stays under the inline threshold.
            self.size += bytes.len() as u64;
            self.held.extend_from_slice(bytes);
            if let Err(e) = self.spill() {
                self.error = Some(e);
            }
            return;
        }
        let mut piece = self.store.pieces.take(bytes.len());
        piece.extend_from_slice(bytes);
        self.write_piece(piece);
    }

    fn buffer(&mut self, capacity: usize) -> Vec<u8> {
        self.store.pieces.take(capacity)
    }

    fn write_piece(&mut self, piece: Vec<u8>) {
        if self.error.is_some() {
            return;
        }
        self.size += piece.len() as u64;
        let written = match &mut self.file {
            Some((_, _, w)) => {
                w.send(piece);
                Ok(())
            }
            None if self.held.is_empty() => {
                self.held = piece;
                self.spill()
            }
            None => {
                self.held.extend_from_slice(&piece);
                self.store.pieces.give(piece);
                self.spill()
            }
        };
        if let Err(e) = written {
            self.error = Some(e);
        }
    }
}

/// How much a state file's writer writes between two write-backs ([`FreshFile::write_back`]).
const WRITE_BACK: usize = 4 << 20;

/// A state file written on a thread of its own while its blob is encoded, so that encoding
/// and disk overlap: the disk is told to write each few MiB as they come, and the final fsync
/// finds little left. At most two pieces wait for it.
struct FileWriter {
    pieces: std::sync::mpsc::SyncSender<Vec<u8>>,
    done: std::thread::JoinHandle<Result<Box<dyn FreshFile>, CheckpointError>>,
}

/// Buffers of pieces a [`FileWriter`] has written, lent to the encoder for the next pieces of
/// any state file of the store ([`BlobOut::buffer`]): it makes each piece in one and hands it
/// over whole. A fresh megabyte per piece (24 per checkpoint at 1M keys) may land on pages the
/// allocator gave back, which are faulted in and zeroed again; and a copy of each piece was a
/// second pass over the blob. Both together: about a fifth of the encoder thread's time.
#[derive(Debug, Default)]
struct PiecePool(Mutex<Vec<Vec<u8>>>);

impl PiecePool {
    /// Enough for the pieces of one file in flight (two queued, one being written, one
    /// being filled and the next one it asks for while the queue is full); more would only
    /// hold memory.
    const KEEP: usize = 5;
    /// Smaller buffers are let go: the keyed encoder's pieces are 1 MiB or more, and a small
    /// one kept would be let go at the next `take` anyway. So are bigger ones (a key group
    /// bigger than a piece makes one): five of them would be held for the store's life.
    const SMALLEST: usize = 1 << 20;
    const LARGEST: usize = 4 << 20;

    /// An empty buffer of at least `capacity` bytes: one given back if it is big enough (a
    /// smaller one is let go, not grown: growing copies its old capacity's bytes).
    fn take(&self, capacity: usize) -> Vec<u8> {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match kept {
            Some(v) if v.capacity() >= capacity => v,
            _ => Vec::with_capacity(capacity),
        }
    }

    fn give(&self, mut piece: Vec<u8>) {
        if !(Self::SMALLEST..=Self::LARGEST).contains(&piece.capacity()) {
            return;
        }
        piece.clear();
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() < Self::KEEP {
            kept.push(piece);
        }
    }
}

impl FileWriter {
    fn spawn(
        mut file: Box<dyn FreshFile>,
        pool: Arc<PiecePool>,
    ) -> Result<FileWriter, CheckpointError> {
        let (pieces, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        let done = std::thread::Builder::new()
            .name("floe-state-file".into())
            .spawn(move || {
                let mut unsynced = 0;
                for piece in rx {
                    file.write(&piece)?;
                    unsynced += piece.len();
                    pool.give(piece);
                    if unsynced >= WRITE_BACK {
                        file.write_back()?;
                        unsynced = 0;
                    }
                }
                Ok(file)
            })
            .map_err(|e| {
                CheckpointError::Other(format!("cannot start a state file's writer: {e}"))
            })?;
        Ok(FileWriter { pieces, done })
    }

    /// Queues a piece. A writer that failed has stopped taking them; its error comes from
    /// [`FileWriter::finish`].
    fn send(&self, piece: Vec<u8>) {
        let _ = self.pieces.send(piece);
    }

    /// Waits for every piece to be written; the file, still to be finished.
    fn finish(self) -> Result<Box<dyn FreshFile>, CheckpointError> {
        drop(self.pieces);
        self.done.join().unwrap_or_else(|_| {
            Err(CheckpointError::Other(
                "bug: a state file's writer panicked".into(),
            ))
        })
    }
}

/// The location of a state file placed by `place`.
fn file_location(place: Placement, name: String) -> BlobLocation {
    match place {
        Placement::Shared => BlobLocation::Shared(name),
        _ => BlobLocation::Exclusive(name),
    }
}

impl CheckpointStore for FsCheckpointStore {
    fn writes_deltas(&self) -> bool {
        self.incremental
    }

    fn write_subtask(
        &self,
        snapshot: SubtaskSnapshot,
    ) -> Result<SubtaskStateMeta, CheckpointError> {
        let id = snapshot.checkpoint_id.0;
        match snapshot.state {
            OperatorSnapshot::Blob { blob, durable } => {
                super::fsync_paths(&durable)?;
                Ok(SubtaskStateMeta {
                    subtask: snapshot.subtask,
                    key_groups: None,
                    keyed: None,
                    keyed_format: None,
                    operator: Some(blob),
                })
            }
            OperatorSnapshot::Keyed(ks) => {
                let (range, format) = (ks.range(), ks.format());
                let origin = Some((ks.sequence(), ks.delta_base()));
                // The snapshot is let go once encoded, before the file's fsync (and off
                // this path): the keyed store then writes the shards it still shares with
                // it in place, and frees the copies it made for it after its next snapshot.
                let encode = move |e, out: &mut dyn BlobOut| {
                    let groups = ks.encode_into(e == Encoding::Full, out);
                    drop_aside(ks);
                    groups
                };
                let mut meta = self.write_keyed_from(
                    id,
                    &snapshot.operator_id.0,
                    snapshot.subtask,
                    range,
                    origin,
                    encode,
                )?;
                meta.keyed_format = Some(format);
                Ok(meta)
            }
        }
    }

    fn complete(
        &self,
        metadata: CheckpointMetadata,
    ) -> Result<CompletedCheckpoint, CheckpointError> {
        let id = metadata.checkpoint_id;
        let dir = self.checkpoint_dir(id);
        let bytes = metadata::encode(&metadata);
        // Every state file it references was fsynced by `write_blob` before this point.
        write_metadata(&dir, &bytes)?;
        let mut inner = self.lock();
        let written = inner.pending.remove(&id).map_or(0, |p| p.bytes);
        inner.registry.register(id, metadata.shared_files(), true);
        inner
            .retained
            .push(RetainedCheckpoint::own(id, dir.clone()));
        inner.retained.sort_by_key(|r| r.id);
        // Older checkpoints still pending are subsumed by this one, as Flink aborts them.
        let older: Vec<u64> = inner.pending.range(..id).map(|(k, _)| *k).collect();
        let mut deletions = Deletions::default();
        self.discard_pending(&mut inner, &older, &mut deletions);
        let retained: Vec<Retained> = inner
            .retained
            .iter()
            .map(|r| Retained {
                id: r.id,
                owned: r.owned,
            })
            .collect();
        let s = retention::subsume(&retained, self.num_retained.load(Ordering::Relaxed));
        self.drop_retained(&mut inner, &s.leave_store, &s.delete, &mut deletions);
        drop(inner);
        deletions.run();
        let size = bytes.len() as u64 + written;
        tracing::debug!(checkpoint_id = id, bytes = size, job_id = %self.job_id, "completed checkpoint");
        Ok(CompletedCheckpoint {
            checkpoint_id: CheckpointId(id),
            path: dir,
            size,
        })
    }

    fn write_savepoint_subtask(
        &self,
        dir: &Location,
        snapshot: SubtaskSnapshot,
    ) -> Result<SubtaskStateMeta, CheckpointError> {
        // The keyed store's change tracking moved past this snapshot: `last_sequence` makes
        // the next checkpoint of this subtask full (see `Chain`).
        crate::checkpoint::savepoint::SavepointWriter {
            inline_threshold: self.inline_threshold.load(Ordering::Relaxed),
            always_inline: self.always_inline,
        }
        .write_subtask(dir, snapshot)
    }

    fn abort(&self, checkpoint_id: CheckpointId) {
        let mut deletions = Deletions::default();
        self.discard_pending(&mut self.lock(), &[checkpoint_id.0], &mut deletions);
        deletions.run();
    }

    fn reconfigure(&self, num_retained: u32, inline_threshold: u64) {
        self.num_retained.store(num_retained, Ordering::Relaxed);
        self.inline_threshold
            .store(inline_threshold, Ordering::Relaxed);
    }

    fn terminate(&self, how: JobTermination) {
        let mut inner = self.lock();
        if std::mem::replace(&mut inner.terminated, true) {
            return;
        }
        let pending: Vec<u64> = inner.pending.keys().copied().collect();
        // No more checkpoints will continue the chains: their files are needed only as far
        // as retained checkpoints use them.
        inner.chains.clear();
        let mut deletions = Deletions::default();
        self.discard_pending(&mut inner, &pending, &mut deletions);
        let action = retention::on_termination(self.retention, how);
        let retained: Vec<Retained> = inner
            .retained
            .iter()
            .map(|r| Retained {
                id: r.id,
                owned: r.owned,
            })
            .collect();
        let delete = retention::termination_deletes(&retained, action);
        tracing::info!(?how, ?action, deleted = ?delete, "checkpoint retention at job end");
        self.drop_retained(&mut inner, &delete, &delete, &mut deletions);
        drop(inner);
        deletions.run();
    }
}

#[cfg(test)]
mod piece_pool_tests {
    use super::PiecePool;

    /// The pool lends back a kept buffer big enough for the piece asked for, keeps at most
    /// five, and lets go of buffers too small to lend or too big to hold on to.
    #[test]
    fn the_piece_pool_keeps_a_bounded_number_of_piece_sized_buffers() {
        let pool = PiecePool::default();
        let kept = Vec::<u8>::with_capacity(1 << 20);
        let at = kept.as_ptr();
        pool.give(kept);
        let lent = pool.take(1 << 20);
        assert_eq!(lent.as_ptr(), at, "a kept buffer is lent");
        pool.give(Vec::with_capacity(1 << 20));
        let bigger = pool.take(2 << 20);
        assert!(
            bigger.capacity() >= 2 << 20,
            "a fresh one when none is big enough"
        );
        let kept = |pool: &PiecePool| pool.0.lock().unwrap().len();
        assert_eq!(kept(&pool), 0, "the small one was let go, not grown");
        pool.give(Vec::with_capacity(1000));
        pool.give(Vec::with_capacity(64 << 20));
        assert_eq!(kept(&pool), 0, "too small or too big to keep");
        for _ in 0..8 {
            pool.give(Vec::with_capacity(1 << 20));
        }
        assert_eq!(kept(&pool), PiecePool::KEEP);
    }
}
