//! What `floe serve` remembers across its restarts, in one small JSON file under its state
//! directory (`--state-dir`; systemd's `StateDirectory=`): the pipeline files a user stopped or
//! cancelled through the API (so a restart does not undo that), the jobs submitted with
//! `floe run -d` that run (so a restart resumes them), the savepoints the service took per
//! pipeline (so that only those are ever deleted by its retention), and the versions whose
//! checkpoint directories wait to be cleaned.
//!
//! Written atomically (temp file, fsync, rename, fsync of the directory), so a crash leaves
//! the old file or the new one. Read as untrusted input: a file that does not parse is set
//! aside (`<name>.unreadable`) with an error naming it, and the service starts as if it had
//! none. Nothing read from it is used as a path: job ids must be 32 hex characters and
//! savepoints plain directory names, and both are joined to the directories of the
//! pipeline's configuration.

use crate::checkpoint::JobId;
pub use crate::service::pipelines::Hold;
use crate::service::rest::service::SubmitRequest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file's name in the state directory.
pub const FILE_NAME: &str = "floe-serve-state.json";
/// The format this build writes and reads.
const VERSION: u32 = 1;

/// A pipeline file held down by the user, until `floe start`, an edit or its removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub how: Hold,
    /// The file's content hash when it was held: another content is an edit, which starts it.
    pub hash: String,
    pub since_ms: u64,
}

/// A job of `floe run -d` that runs: resumed at the next start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submitted {
    /// Its pipeline's name: where it resumes from (its newest savepoint or checkpoint).
    pub name: String,
    /// The job id it has now (each start gives a new one).
    pub job_id: String,
    pub request: SubmitRequest,
}

/// One version (job) of a pipeline whose checkpoint directory is not cleaned yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub job_id: String,
    /// Its retention mode keeps its checkpoints for the way it ended (e.g.
    /// RETAIN_ON_CANCELLATION and it was cancelled): never cleaned by the service.
    #[serde(default)]
    pub keep: bool,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Memory {
    pub version: u32,
    /// By pipeline file name.
    #[serde(default)]
    pub held: BTreeMap<String, Held>,
    #[serde(default)]
    pub submitted: Vec<Submitted>,
    /// Savepoint directory names (`savepoint-xxxxxx-xxxxxxxxxxxx`) the service took, by
    /// pipeline name, oldest first.
    #[serde(default)]
    pub savepoints: BTreeMap<String, Vec<String>>,
    /// Versions by pipeline name, oldest first; the newest may be running.
    #[serde(default)]
    pub versions: BTreeMap<String, Vec<Version>>,
}

/// Where the file is, and its contents as last written.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
    pub memory: Memory,
}

impl Store {
    /// Reads `<dir>/floe-serve-state.json`; none is an empty memory. One that cannot be read
    /// or parsed is set aside, with an error in the log naming it.
    pub fn open(dir: &Path) -> Store {
        let path = dir.join(FILE_NAME);
        let memory = match std::fs::read(&path) {
            Ok(bytes) => match parse(&bytes) {
                Ok(m) => m,
                Err(why) => {
                    let aside = path.with_extension("json.unreadable");
                    let moved = std::fs::rename(&path, &aside).is_ok();
                    tracing::error!(
                        file = %path.display(),
                        "{} cannot be read ({why}); floe serve starts as if it remembered \
                         nothing (pipelines stopped or cancelled before run again, submitted \
                         jobs are not resumed){}",
                        path.display(),
                        if moved {
                            format!("; the file was moved to {}", aside.display())
                        } else {
                            String::new()
                        }
                    );
                    Memory::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Memory::default(),
            Err(e) => {
                tracing::error!(file = %path.display(), "cannot read {}: {e}; floe serve starts as if it remembered nothing", path.display());
                Memory::default()
            }
        };
        Store { path, memory }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the memory atomically; a failure is logged (the service goes on: what it
    /// would forget is a restart's behaviour, not data).
    pub fn save(&self) {
        let mut m = self.memory.clone();
        m.version = VERSION;
        if let Err(e) = write_atomically(&self.path, &m) {
            tracing::error!(
                file = %self.path.display(),
                "cannot write {}: {e}; a restart of floe serve may not remember what was \
                 stopped, cancelled or submitted; check the state directory (--state-dir)",
                self.path.display()
            );
        }
    }
}

fn parse(bytes: &[u8]) -> Result<Memory, String> {
    let m: Memory = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if m.version != VERSION {
        return Err(format!(
            "format version {} (this floe reads {VERSION})",
            m.version
        ));
    }
    for v in m.versions.values().flatten() {
        if !JobId::is_valid(&v.job_id) {
            return Err(format!("'{}' is not a job id", v.job_id));
        }
    }
    for name in m.savepoints.values().flatten() {
        if !is_savepoint_name(name) {
            return Err(format!("'{name}' is not a savepoint directory name"));
        }
    }
    Ok(m)
}

/// `savepoint-<6 hex>-<12 hex>`, nothing that could lead elsewhere.
pub fn is_savepoint_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("savepoint-") else {
        return false;
    };
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    matches!(rest.split_once('-'), Some((a, b)) if hex(a, 6) && hex(b, 12))
}

fn write_atomically(path: &Path, m: &Memory) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(m).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// The content hash as the memory keeps it.
pub fn hash_text(hash: u64) -> String {
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_survives_a_round_trip_and_a_bad_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path());
        assert_eq!(s.memory, Memory::default());
        s.memory.held.insert(
            "wc.yaml".into(),
            Held {
                how: Hold::Cancelled,
                hash: hash_text(42),
                since_ms: 7,
            },
        );
        s.memory
            .savepoints
            .insert("wc".into(), vec!["savepoint-abcdef-0123456789ab".into()]);
        s.save();
        let again = Store::open(dir.path());
        assert_eq!(again.memory.held, s.memory.held);
        assert_eq!(again.memory.savepoints, s.memory.savepoints);

        std::fs::write(dir.path().join(FILE_NAME), "{not json").unwrap();
        let bad = Store::open(dir.path());
        assert_eq!(bad.memory, Memory::default());
        assert!(dir
            .path()
            .join("floe-serve-state.json.unreadable")
            .is_file());
    }

    #[test]
    fn nothing_in_the_file_can_name_a_path() {
        let evil = r#"{"version":1,"savepoints":{"wc":["../../etc"]}}"#;
        assert!(parse(evil.as_bytes()).is_err());
        let evil = r#"{"version":1,"versions":{"wc":[{"job_id":"../x"}]}}"#;
        assert!(parse(evil.as_bytes()).is_err());
        assert!(is_savepoint_name("savepoint-abcdef-0123456789ab"));
        assert!(!is_savepoint_name("savepoint-abcdef-0123456789ab/.."));
        assert!(!is_savepoint_name("savepoint-abc-0123456789ab"));
    }
}
