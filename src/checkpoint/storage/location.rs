//! Where checkpoint storage reads and writes: a [`Location`], either a local path or an object
//! in an S3 bucket. Paths from configuration, the command line and REST arrive as text and
//! are parsed here once ([`Location::parse`]); from then on storage code never looks at a
//! scheme again: it asks the location for its [`Storage`] and calls it.

use super::backend::Storage;
use super::object::{self, ObjectPath, SUPPORTED_SCHEMES};
use crate::checkpoint::CheckpointError;
use std::fmt;
use std::path::{Path, PathBuf};

/// The config key named in errors about the checkpoint directory (Flink 2 name, then 1.x).
pub(crate) const DIR_KEY: &str = "execution.checkpointing.dir (state.checkpoints.dir)";

/// A checkpoint, savepoint or state file's place: on local disk or in an object store.
#[derive(Clone, Debug)]
pub enum Location {
    Local(PathBuf),
    Object(ObjectPath),
}

impl Location {
    /// A path as configured or given: a plain path or `file:` URI is local, `s3://bucket/key`
    /// an object; other schemes are refused, naming the supported ones.
    pub fn parse(given: &Path) -> Result<Location, CheckpointError> {
        match given.to_str() {
            Some(s) if scheme_of(s).is_some() => Location::parse_str(s),
            _ => Ok(Location::Local(given.to_path_buf())),
        }
    }

    /// [`Location::parse`] of a setting's text; an empty one is refused.
    pub fn parse_str(value: &str) -> Result<Location, CheckpointError> {
        let value = value.trim();
        if value.is_empty() {
            return Err(CheckpointError::Refused(format!(
                "{DIR_KEY} is empty; give a directory, e.g. file:///var/lib/floe/checkpoints"
            )));
        }
        match scheme_of(value) {
            None => Ok(Location::Local(PathBuf::from(value))),
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("file") => {
                file_uri_path(value, rest).map(Location::Local)
            }
            Some((scheme, _)) if object::is_object_scheme(scheme) => match ObjectPath::parse(value)
            {
                Some(Ok(obj)) => Ok(Location::Object(obj)),
                Some(Err(e)) => Err(CheckpointError::Refused(format!("{DIR_KEY} {e}"))),
                None => Err(CheckpointError::Refused(format!(
                    "{DIR_KEY} '{value}': write it as {}://bucket/prefix",
                    scheme.to_ascii_lowercase()
                ))),
            },
            Some((scheme, _)) => Err(unsupported_scheme(value, scheme)),
        }
    }

    /// The storage that holds this location.
    pub fn storage(&self) -> &dyn Storage {
        match self {
            Location::Local(path) => path,
            Location::Object(obj) => obj,
        }
    }

    /// Whether this is in an object store rather than on local disk.
    pub fn is_object(&self) -> bool {
        matches!(self, Location::Object(_))
    }

    /// The local path, for what only local disk has (directory handles, symlink checks).
    pub fn as_local(&self) -> Option<&Path> {
        match self {
            Location::Local(path) => Some(path),
            Location::Object(_) => None,
        }
    }

    /// The entry `name` inside this directory or prefix.
    pub fn join(&self, name: &str) -> Location {
        match self {
            Location::Local(path) => Location::Local(path.join(name)),
            Location::Object(obj) => Location::Object(obj.child(name)),
        }
    }

    /// The last component's name (`None` for a root).
    pub fn name(&self) -> Option<&str> {
        match self {
            Location::Local(path) => path.file_name()?.to_str(),
            Location::Object(obj) => Some(obj.name()).filter(|n| !n.is_empty()),
        }
    }

    /// The directory or prefix holding this location; a bare local name's is `.`.
    pub fn parent(&self) -> Option<Location> {
        match self {
            Location::Local(path) => {
                let parent = path.parent()?;
                Some(Location::Local(if parent.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    parent.to_path_buf()
                }))
            }
            Location::Object(obj) => obj.parent().map(Location::Object),
        }
    }

    /// The form floe prints, stores in `_metadata`-free places (REST, the job registry) and
    /// parses back: the local path, or the object's `s3://bucket/key`.
    pub fn to_path_buf(&self) -> PathBuf {
        match self {
            Location::Local(path) => path.clone(),
            Location::Object(obj) => PathBuf::from(obj.uri()),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::Object(obj) => f.write_str(&obj.uri()),
        }
    }
}

impl PartialEq for Location {
    fn eq(&self, other: &Location) -> bool {
        self.to_path_buf() == other.to_path_buf()
    }
}

impl Eq for Location {}

impl PartialEq<Path> for Location {
    fn eq(&self, other: &Path) -> bool {
        self.to_path_buf() == other
    }
}

impl PartialEq<&Path> for Location {
    fn eq(&self, other: &&Path) -> bool {
        self.to_path_buf() == *other
    }
}

impl PartialEq<PathBuf> for Location {
    fn eq(&self, other: &PathBuf) -> bool {
        self.to_path_buf() == *other
    }
}

/// The local path of a `file:` URI: `file:///x`, `file:/x` and `file://localhost/x` are `/x`;
/// another host is refused.
fn file_uri_path(value: &str, rest: &str) -> Result<PathBuf, CheckpointError> {
    let local = match rest.strip_prefix("//") {
        None => rest,
        Some(after) => {
            let (host, path) = after.split_at(after.find('/').unwrap_or(after.len()));
            if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) {
                return Err(CheckpointError::Refused(format!(
                    "{DIR_KEY} '{value}': file URI with host '{host}' is not supported; use \
                     file:///path (three slashes) for a local directory"
                )));
            }
            path
        }
    };
    if local.is_empty() {
        return Err(CheckpointError::Refused(format!(
            "{DIR_KEY} '{value}' has no path; use file:///path"
        )));
    }
    Ok(PathBuf::from(local))
}

fn unsupported_scheme(value: &str, scheme: &str) -> CheckpointError {
    let hdfs = if scheme.eq_ignore_ascii_case("hdfs") {
        " (floe has no HDFS client; put checkpoints on S3-compatible storage or a mounted file \
         system instead)"
    } else {
        ""
    };
    CheckpointError::Refused(format!(
        "{DIR_KEY} '{value}': scheme '{scheme}' is not supported{hdfs}; supported: \
         {SUPPORTED_SCHEMES}"
    ))
}

/// Whether `given` names an object store (`s3://`), not the local file system.
pub fn is_object_path(given: &Path) -> bool {
    given
        .to_str()
        .and_then(scheme_of)
        .is_some_and(|(scheme, _)| object::is_object_scheme(scheme))
}

/// `Some((scheme, rest))` when `s` starts with an RFC 3986 scheme and a colon. A single
/// letter is taken as a Windows drive, not a scheme.
fn scheme_of(s: &str) -> Option<(&str, &str)> {
    let colon = s.find(':')?;
    let scheme = &s[..colon];
    let mut bytes = scheme.bytes();
    let first = bytes.next()?;
    let valid = first.is_ascii_alphabetic()
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
        && scheme.len() > 1;
    valid.then(|| (scheme, &s[colon + 1..]))
}
