//! The `_metadata` file: what a completed checkpoint or savepoint holds, and its on-disk form.
//!
//! On disk: `magic (4 bytes) | format version (u32 BE) | payload length (u64 BE) | payload |
//! crc32c of everything before it (u32 BE)`, the payload being postcard of
//! [`CheckpointMetadata`]. A reader refuses an unknown magic or version and a wrong checksum,
//! with an error naming the file.
//!
//! State is referenced by names relative to the checkpoint's own directory (exclusive files)
//! or to the job's `shared/` directory (incremental files), never by absolute paths, so a
//! savepoint directory can be moved.
//!
//! Versions: 1 (issue 3) had source positions and keyed state; 2 added sink state; 3 added
//! the rolling `file` sink's state and the Kafka sink's pooled ids to the sink states; 4
//! stores every operator's state as that operator's own versioned encoding
//! ([`OperatorBlob`], [`SubtaskStateMeta::keyed_format`]) instead of listing each operator's
//! state types. postcard is positional, so a v1, v2 or v3 payload is decoded into the types
//! it was written with (`legacy`, frozen) and converted: every version floe ever wrote keeps
//! decoding, and a floe that reads only up to 3 refuses a v4 file by its version.

use crate::checkpoint::{CheckpointError, JobId};
use crate::state::{OperatorBlob, StateFormat};
use serde::{Deserialize, Serialize};
use std::path::Path;

mod legacy;

/// First bytes of every `_metadata` file floe writes.
pub const METADATA_MAGIC: [u8; 4] = *b"FLOE";
/// The format version this build writes (and the newest it reads).
pub const METADATA_VERSION: u32 = 4;

/// Checkpoint or savepoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotKind {
    Checkpoint,
    Savepoint,
}

/// Everything a restore needs, and everything `floe inspect` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    pub checkpoint_id: u64,
    pub job_id: JobId,
    pub job_name: String,
    pub kind: SnapshotKind,
    /// When the checkpoint was triggered, ms since the Unix epoch.
    pub trigger_timestamp_ms: u64,
    /// When `_metadata` was written, ms since the Unix epoch.
    pub completion_timestamp_ms: u64,
    pub operators: Vec<OperatorStateMeta>,
}

/// One operator's state in a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorStateMeta {
    /// The pipeline `id` of the operator.
    pub operator_id: String,
    pub parallelism: u32,
    pub max_parallelism: u32,
    pub subtasks: Vec<SubtaskStateMeta>,
}

/// One subtask's state. The checkpoint stores it without knowing what is inside: each
/// operator owns its encoding ([`crate::state`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubtaskStateMeta {
    pub subtask: u32,
    /// Inclusive key-group range `[start, end]` of keyed state.
    pub key_groups: Option<(u32, u32)>,
    pub keyed: Option<KeyedStateHandle>,
    /// How the keyed state's runs are encoded (format version 4+; older files hold the
    /// keyed store's runs, `keyed-values` v1).
    pub keyed_format: Option<StateFormat>,
    /// The operator's own state: a source's position, a transactional sink's pending
    /// commits (format version 4+; older files' are converted on reading).
    pub operator: Option<OperatorBlob>,
}

/// Where a subtask's keyed state is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum KeyedStateHandle {
    /// One full snapshot.
    Full(StateBlob),
    /// Incremental: `chain[0]` is a full snapshot, each later one the changes (with
    /// deletions) since the one before; applying them in order gives the state.
    Incremental { chain: Vec<StateBlob> },
}

/// One encoded piece of keyed state, indexed by key group so that a restore reads only the
/// groups it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateBlob {
    pub location: BlobLocation,
    /// Bytes of the encoded state.
    pub size: u64,
    pub groups: Vec<GroupIndexEntry>,
}

/// Where a blob's bytes are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BlobLocation {
    /// Below `state.backend.fs.memory-threshold` (or with the `jobmanager` backend): inside
    /// `_metadata`.
    Inline(Vec<u8>),
    /// A file in the checkpoint's own directory (`chk-<n>/<name>`, or the savepoint's).
    Exclusive(String),
    /// A file in the job's `shared/` directory (incremental checkpoints).
    Shared(String),
}

pub use crate::state::GroupIndexEntry;

/// Bytes before the payload: magic, version, payload length.
const HEADER_LEN: usize = 4 + 4 + 8;
/// Bytes after the payload: the crc32c.
const TRAILER_LEN: usize = 4;

/// The bytes of a `_metadata` file for `metadata`.
pub fn encode(metadata: &CheckpointMetadata) -> Vec<u8> {
    // postcard into a Vec cannot fail for these types (no maps with non-string keys, no
    // unsized sequences): a failure would be a bug in the types, not in user input.
    let payload = postcard::to_stdvec(metadata).expect("bug: _metadata types must serialize");
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + TRAILER_LEN);
    out.extend_from_slice(&METADATA_MAGIC);
    out.extend_from_slice(&METADATA_VERSION.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    out.extend_from_slice(&payload);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Reads a `_metadata` file's bytes. `path` only names the file in errors.
///
/// Checks, in order: the magic (a file that is not ours), the version (a newer floe wrote
/// it), the length (a truncated file), the checksum (a flipped bit), then the payload.
pub fn decode(bytes: &[u8], path: &Path) -> Result<CheckpointMetadata, CheckpointError> {
    let p = path.display();
    if bytes.len() < 4 || bytes[..4] != METADATA_MAGIC {
        if bytes.len() < 4 && METADATA_MAGIC.starts_with(bytes) {
            return Err(CheckpointError::Corrupt(format!(
                "'{p}' is truncated ({} bytes): not a complete floe _metadata file",
                bytes.len()
            )));
        }
        return Err(CheckpointError::Corrupt(format!(
            "'{p}' is not a floe checkpoint/savepoint _metadata file, or corrupt \
             (unexpected magic number); point at a checkpoint directory (chk-<n>), a savepoint \
             directory or their _metadata file"
        )));
    }
    if bytes.len() < 8 {
        return Err(truncated(path, bytes.len()));
    }
    let version = u32::from_be_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if version == 0 || version > METADATA_VERSION {
        return Err(CheckpointError::Refused(format!(
            "'{p}' has _metadata format version {version}, which this floe does not read \
             (it reads versions 1..={METADATA_VERSION}); restore it with the floe that wrote it \
             or a newer one"
        )));
    }
    if bytes.len() < HEADER_LEN + TRAILER_LEN {
        return Err(truncated(path, bytes.len()));
    }
    let len = u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let expected = (HEADER_LEN as u64)
        .checked_add(len)
        .and_then(|n| n.checked_add(TRAILER_LEN as u64));
    match expected {
        Some(n) if n == bytes.len() as u64 => {}
        Some(n) if n > bytes.len() as u64 => return Err(truncated(path, bytes.len())),
        // Longer than it says, or a length that cannot be: the length field itself is
        // damaged or garbage was appended.
        _ => {
            return Err(CheckpointError::Corrupt(format!(
                "'{p}' is corrupt (payload length {len} does not match the file size {})",
                bytes.len()
            )))
        }
    }
    let body_end = bytes.len() - TRAILER_LEN;
    let stored = u32::from_be_bytes(bytes[body_end..].try_into().expect("4 bytes"));
    let actual = crc32c::crc32c(&bytes[..body_end]);
    if stored != actual {
        return Err(CheckpointError::Corrupt(format!(
            "'{p}' is corrupt (checksum mismatch: stored {stored:08x}, computed {actual:08x}); \
             restore from an older checkpoint or a savepoint"
        )));
    }
    let payload = &bytes[HEADER_LEN..body_end];
    let decoded = match version {
        1 => postcard::from_bytes::<legacy::V1>(payload).map(Into::into),
        2 => postcard::from_bytes::<legacy::V2>(payload).map(Into::into),
        3 => postcard::from_bytes::<legacy::V3>(payload).map(Into::into),
        _ => postcard::from_bytes::<CheckpointMetadata>(payload),
    };
    let metadata = decoded.map_err(|e| {
        CheckpointError::Corrupt(format!(
            "'{p}' is corrupt (checksum matches but the contents do not decode: {e}); it may \
             have been written by an incompatible build"
        ))
    })?;
    check_names(&metadata, path)?;
    Ok(metadata)
}

/// Whether `name` is a state file name of the form floe writes: a lowercase hyphenated UUID
/// (`8-4-4-4-12` hex digits), one plain path component.
pub fn is_state_file_name(name: &str) -> bool {
    name.len() == 36
        && name.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// Whether `id` is an operator id as pipelines allow them (`[A-Za-z0-9_.-]+`).
fn is_operator_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `_metadata` is untrusted input: a checksum only proves the file is whole, not who wrote
/// it. Every name a path is built from must be of the form floe writes, so that no file
/// outside the snapshot's own directory and its job's `shared/` is ever read or deleted
/// through it (an absolute path, `..`, a name with a slash). A savepoint references no
/// shared file (it is self-contained). Anything else refuses the whole file.
fn check_names(m: &CheckpointMetadata, path: &Path) -> Result<(), CheckpointError> {
    let refuse = |what: String| {
        CheckpointError::Refused(format!(
            "'{}' is refused: {what}; it was not written by floe (or was altered), and floe \
             reads and deletes nothing through it",
            path.display()
        ))
    };
    if !crate::checkpoint::JobId::is_valid(&m.job_id.0) {
        return Err(refuse(format!(
            "its job id \"{}\" is not 32 lowercase hex digits",
            crate::text::escape(&m.job_id.0)
        )));
    }
    for op in &m.operators {
        if !is_operator_id(&op.operator_id) {
            return Err(refuse(format!(
                "operator id \"{}\" is not of the form [A-Za-z0-9_.-]",
                crate::text::escape(&op.operator_id)
            )));
        }
    }
    for (op, st, blob) in m.blobs() {
        let (name, shared) = match &blob.location {
            BlobLocation::Inline(_) => continue,
            BlobLocation::Exclusive(n) => (n, false),
            BlobLocation::Shared(n) => (n, true),
        };
        let at = format!(
            "operator \"{}\", subtask {}",
            op.operator_id,
            st.subtask + 1
        );
        if !is_state_file_name(name) {
            return Err(refuse(format!(
                "the state file name \"{}\" ({at}) is not one floe writes (a plain name of 8-4-4-4-12 \
                 lowercase hex digits)",
                crate::text::escape(name)
            )));
        }
        if shared && m.kind == SnapshotKind::Savepoint {
            return Err(refuse(format!(
                "it is a savepoint but references the shared file \"{name}\" ({at}); savepoints \
                 are self-contained"
            )));
        }
    }
    Ok(())
}

fn truncated(path: &Path, len: usize) -> CheckpointError {
    CheckpointError::Corrupt(format!(
        "'{}' is truncated ({len} bytes): the checkpoint was not completely written; restore \
         from an older checkpoint",
        path.display()
    ))
}

impl CheckpointMetadata {
    /// Every blob of every subtask, in operator and subtask order (a chain's blobs in chain
    /// order).
    pub fn blobs(
        &self,
    ) -> impl Iterator<Item = (&OperatorStateMeta, &SubtaskStateMeta, &StateBlob)> {
        self.operators.iter().flat_map(|op| {
            op.subtasks.iter().flat_map(move |st| {
                let blobs: &[StateBlob] = match &st.keyed {
                    None => &[],
                    Some(KeyedStateHandle::Full(b)) => std::slice::from_ref(b),
                    Some(KeyedStateHandle::Incremental { chain }) => chain,
                };
                blobs.iter().map(move |b| (op, st, b))
            })
        })
    }

    /// Names of the files in the job's `shared/` directory this checkpoint references.
    pub fn shared_files(&self) -> impl Iterator<Item = &str> {
        self.blobs().filter_map(|(_, _, b)| match &b.location {
            BlobLocation::Shared(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// Names of the files in the checkpoint's own directory.
    pub fn exclusive_files(&self) -> impl Iterator<Item = &str> {
        self.blobs().filter_map(|(_, _, b)| match &b.location {
            BlobLocation::Exclusive(name) => Some(name.as_str()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::operators::sinks::state::{
        FileSinkState, FileSinkStateBeforeRolling, InProgressPart, KafkaSinkState, PendingPart,
        SinkState,
    };
    use crate::operators::sources::SourcePosition;

    const SHARED_A: &str = "0a0a0a0a-0000-4000-8000-00000000000a";

    fn sink_state() -> SinkState {
        SinkState::Files(FileSinkState {
            subtask: 0,
            next_part: 4,
            pending: vec![PendingPart {
                checkpoint_id: 7,
                part: 3,
            }],
            in_progress: Some(InProgressPart {
                part: 4,
                length: 17,
            }),
        })
    }
    const EXCLUSIVE_B: &str = "0b0b0b0b-0000-4000-8000-00000000000b";

    pub(crate) fn sample() -> CheckpointMetadata {
        CheckpointMetadata {
            checkpoint_id: 7,
            job_id: JobId("0123456789abcdef0123456789abcdef".into()),
            job_name: "wordcount".into(),
            kind: SnapshotKind::Checkpoint,
            trigger_timestamp_ms: 1_700_000_000_000,
            completion_timestamp_ms: 1_700_000_000_250,
            operators: vec![
                OperatorStateMeta {
                    operator_id: "source".into(),
                    parallelism: 1,
                    max_parallelism: 128,
                    subtasks: vec![SubtaskStateMeta {
                        subtask: 0,
                        key_groups: None,
                        keyed: None,
                        keyed_format: None,
                        operator: Some(SourcePosition::Datagen { next_line: 42 }.to_blob()),
                    }],
                },
                OperatorStateMeta {
                    operator_id: "count".into(),
                    parallelism: 1,
                    max_parallelism: 128,
                    subtasks: vec![SubtaskStateMeta {
                        subtask: 0,
                        key_groups: Some((0, 127)),
                        keyed: Some(KeyedStateHandle::Incremental {
                            chain: vec![
                                StateBlob {
                                    location: BlobLocation::Shared(SHARED_A.into()),
                                    size: 100,
                                    groups: vec![],
                                },
                                StateBlob {
                                    location: BlobLocation::Inline(vec![1, 2, 3]),
                                    size: 3,
                                    groups: vec![GroupIndexEntry {
                                        key_group: 3,
                                        offset: 8,
                                        len: 2,
                                        crc32c: 9,
                                        entries: 1,
                                    }],
                                },
                                StateBlob {
                                    location: BlobLocation::Exclusive(EXCLUSIVE_B.into()),
                                    size: 5,
                                    groups: vec![],
                                },
                            ],
                        }),
                        keyed_format: Some(crate::state::snapshot::keyed_values_format()),
                        operator: None,
                    }],
                },
                OperatorStateMeta {
                    operator_id: "out".into(),
                    parallelism: 1,
                    max_parallelism: 128,
                    subtasks: vec![SubtaskStateMeta {
                        subtask: 0,
                        key_groups: None,
                        keyed: None,
                        keyed_format: None,
                        operator: Some(sink_state().to_blob()),
                    }],
                },
            ],
        }
    }

    fn path() -> &'static Path {
        Path::new("/ck/job/chk-7/_metadata")
    }

    fn err(bytes: &[u8]) -> String {
        decode(bytes, path()).unwrap_err().to_string()
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let bytes = encode(&m);
        assert_eq!(&bytes[..4], b"FLOE");
        assert_eq!(&bytes[4..8], &METADATA_VERSION.to_be_bytes());
        assert_eq!(decode(&bytes, path()).unwrap(), m);
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let bytes = encode(&sample());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            let e = err(&b);
            assert!(e.contains("/ck/job/chk-7/_metadata"), "byte {i}: {e}");
        }
    }

    #[test]
    fn bad_magic_names_the_file() {
        let e = err(b"{\"not\": \"ours\"} and some more bytes");
        assert!(
            e.contains("not a floe checkpoint/savepoint _metadata file, or corrupt"),
            "{e}"
        );
        assert!(e.contains("/ck/job/chk-7/_metadata"), "{e}");
    }

    #[test]
    fn newer_version_is_refused() {
        let mut b = encode(&sample());
        b[4..8].copy_from_slice(&(METADATA_VERSION + 1).to_be_bytes());
        let e = err(&b);
        assert!(
            e.contains(&format!("format version {}", METADATA_VERSION + 1)),
            "{e}"
        );
        assert!(!e.contains("checksum"), "{e}");
    }

    #[test]
    fn checksum_mismatch() {
        let mut b = encode(&sample());
        let mid = b.len() / 2;
        b[mid] ^= 0x80;
        let e = err(&b);
        assert!(e.contains("is corrupt (checksum mismatch"), "{e}");
    }

    #[test]
    fn truncated_at_every_length() {
        let b = encode(&sample());
        for n in 0..b.len() {
            let e = err(&b[..n]);
            assert!(e.contains("truncated"), "len {n}: {e}");
        }
    }

    /// A sink state as versions 2 and 3 wrote it (version 2: the first two variants).
    #[derive(Serialize)]
    enum LegacySink {
        FilesBeforeRolling(FileSinkStateBeforeRolling),
        Kafka(KafkaSinkState),
        Files(FileSinkState),
        KafkaPooled { state: KafkaSinkState, id_pool: u32 },
    }

    impl LegacySink {
        fn of(b: &OperatorBlob) -> Option<LegacySink> {
            let v = (b.format.name.as_str(), b.format.version);
            match (v, SinkState::from_blob(b).ok()?) {
                (("file-sink", 1), SinkState::Files(f)) => {
                    Some(LegacySink::FilesBeforeRolling(FileSinkStateBeforeRolling {
                        subtask: f.subtask,
                        next_part: f.next_part,
                        pending: f.pending,
                    }))
                }
                (_, SinkState::Files(f)) => Some(LegacySink::Files(f)),
                (_, SinkState::Kafka(k)) => Some(LegacySink::Kafka(k)),
                (_, SinkState::KafkaPooled { state, id_pool }) => {
                    Some(LegacySink::KafkaPooled { state, id_pool })
                }
            }
        }
    }

    /// A `_metadata` file of `version` (1, 2 or 3) as those versions wrote it: source
    /// positions and sink states as enums of the checkpoint format (the source's type has
    /// the same wire shape), keyed state without a format.
    fn legacy_file(version: u32, m: &CheckpointMetadata) -> Vec<u8> {
        #[derive(Serialize)]
        struct Subtask<'a> {
            subtask: u32,
            key_groups: Option<(u32, u32)>,
            keyed: Option<&'a KeyedStateHandle>,
            source: Option<SourcePosition>,
        }
        #[derive(Serialize)]
        struct Operator<S> {
            operator_id: String,
            parallelism: u32,
            max_parallelism: u32,
            subtasks: Vec<S>,
        }
        #[derive(Serialize)]
        struct Payload<'a, S> {
            checkpoint_id: u64,
            job_id: &'a JobId,
            job_name: &'a str,
            kind: SnapshotKind,
            trigger_timestamp_ms: u64,
            completion_timestamp_ms: u64,
            operators: Vec<Operator<S>>,
        }
        fn subtask(s: &SubtaskStateMeta) -> Subtask<'_> {
            let op = s.operator.as_ref();
            let source = op.and_then(|b| SourcePosition::from_blob(b).ok());
            Subtask {
                subtask: s.subtask,
                key_groups: s.key_groups,
                keyed: s.keyed.as_ref(),
                source,
            }
        }
        let operators = m
            .operators
            .iter()
            .map(|o| Operator {
                operator_id: o.operator_id.clone(),
                parallelism: o.parallelism,
                max_parallelism: o.max_parallelism,
                subtasks: o
                    .subtasks
                    .iter()
                    .map(|s| {
                        let mut out = postcard::to_stdvec(&subtask(s)).unwrap();
                        if version >= 2 {
                            let sink = s.operator.as_ref().and_then(LegacySink::of);
                            out.extend(postcard::to_stdvec(&sink).unwrap());
                        }
                        serde_bytes_like::Raw(out)
                    })
                    .collect(),
            })
            .collect();
        let payload = postcard::to_stdvec(&Payload {
            checkpoint_id: m.checkpoint_id,
            job_id: &m.job_id,
            job_name: &m.job_name,
            kind: m.kind,
            trigger_timestamp_ms: m.trigger_timestamp_ms,
            completion_timestamp_ms: m.completion_timestamp_ms,
            operators,
        })
        .unwrap();
        let mut bytes = METADATA_MAGIC.to_vec();
        bytes.extend_from_slice(&version.to_be_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        bytes.extend_from_slice(&payload);
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_be_bytes());
        bytes
    }

    /// Bytes spliced into a postcard stream as they are (a struct's fields written apart).
    mod serde_bytes_like {
        pub struct Raw(pub Vec<u8>);
        impl serde::Serialize for Raw {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeTuple;
                let mut t = s.serialize_tuple(self.0.len())?;
                for b in &self.0 {
                    t.serialize_element(b)?;
                }
                t.end()
            }
        }
    }

    /// Version 1, 2 and 3 files decode, their positions and sink states in the operators' own
    /// encodings (each sink state in the version of the sink's format that holds it), their
    /// keyed state as the keyed store's runs.
    #[test]
    fn versions_1_2_and_3_still_decode() {
        let mut m = sample();
        // Their keyed state is the keyed store's runs of its first format.
        for s in m.operators.iter_mut().flat_map(|o| &mut o.subtasks) {
            if s.keyed_format.is_some() {
                s.keyed_format = Some(crate::state::snapshot::keyed_values_v1());
            }
        }
        // Version 3: the rolling file sink's state (file-sink v2), the Kafka sink's pooled
        // ids (kafka-sink v2) and its state before pools (v1).
        let kafka = KafkaSinkState {
            subtask: 0,
            prefix: "floe-k".into(),
            slots: 1,
            pending: vec![],
        };
        let mut m3 = m.clone();
        let mut kafka_op = m3.operators[2].clone();
        kafka_op.operator_id = "kout".into();
        kafka_op.subtasks[0].operator = Some(
            SinkState::KafkaPooled {
                state: kafka.clone(),
                id_pool: 8,
            }
            .to_blob(),
        );
        m3.operators.push(kafka_op.clone());
        kafka_op.operator_id = "kold".into();
        kafka_op.subtasks[0].operator = Some(SinkState::Kafka(kafka).to_blob());
        m3.operators.push(kafka_op);
        assert_eq!(decode(&legacy_file(3, &m3), path()).unwrap(), m3);
        // Version 2: the file sink before rolling (file-sink v1).
        m.operators[2].subtasks[0].operator = Some(
            FileSinkStateBeforeRolling {
                subtask: 0,
                next_part: 4,
                pending: vec![PendingPart {
                    checkpoint_id: 7,
                    part: 3,
                }],
            }
            .to_blob(),
        );
        assert_eq!(decode(&legacy_file(2, &m), path()).unwrap(), m);
        m.operators.pop(); // the sink operator: v1 had no sink state
        assert_eq!(decode(&legacy_file(1, &m), path()).unwrap(), m);
    }

    /// Re-encodes `m` after `edit`, as a forger with floe's encoder would.
    fn forged(edit: impl FnOnce(&mut CheckpointMetadata)) -> String {
        let mut m = sample();
        edit(&mut m);
        err(&encode(&m))
    }

    fn set_names(m: &mut CheckpointMetadata, shared: &str, exclusive: &str) {
        let Some(KeyedStateHandle::Incremental { chain }) = &mut m.operators[1].subtasks[0].keyed
        else {
            unreachable!("the sample's second operator has a chain")
        };
        chain[0].location = BlobLocation::Shared(shared.into());
        chain[2].location = BlobLocation::Exclusive(exclusive.into());
    }

    #[test]
    fn forged_file_names_refuse_the_whole_file() {
        for bad in [
            "/etc/passwd",
            "../../outside",
            "..",
            "dir/0b0b0b0b-0000-4000-8000-00000000000b",
            "0B0B0B0B-0000-4000-8000-00000000000B",
            "0b0b0b0b-0000-4000-8000-00000000000b\n",
            "",
        ] {
            let e = forged(|m| set_names(m, SHARED_A, bad));
            assert!(e.contains("is refused"), "{bad:?}: {e}");
            assert!(e.contains("not one floe writes"), "{bad:?}: {e}");
            assert!(
                !e.contains('\n'),
                "{bad:?}: the message stays on one line: {e}"
            );
            let e = forged(|m| set_names(m, bad, EXCLUSIVE_B));
            assert!(e.contains("is refused"), "{bad:?}: {e}");
        }
        let e = forged(|m| m.kind = SnapshotKind::Savepoint);
        assert!(e.contains("savepoints are self-contained"), "{e}");
        let e = forged(|m| m.operators[0].operator_id = "../x".into());
        assert!(e.contains("operator id"), "{e}");
        let e = forged(|m| m.job_id = JobId("../../x".into()));
        assert!(e.contains("job id"), "{e}");
    }

    #[test]
    fn names_floe_writes_are_accepted() {
        for _ in 0..100 {
            let name = uuid::Uuid::new_v4().to_string();
            assert!(is_state_file_name(&name), "{name}");
        }
    }

    #[test]
    fn file_lists() {
        let m = sample();
        assert_eq!(m.shared_files().collect::<Vec<_>>(), vec![SHARED_A]);
        assert_eq!(m.exclusive_files().collect::<Vec<_>>(), vec![EXCLUSIVE_B]);
        assert_eq!(m.blobs().count(), 3);
    }
}
