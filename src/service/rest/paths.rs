//! Confining savepoint targets and disposal paths to the allowed roots
//! (`state.savepoints.dir` plus `rest.savepoints.allowed-dirs`), so no API caller can make
//! floe write or delete anywhere else.
//!
//! A path is resolved before the check: `file:` URIs become local paths, relative paths are
//! taken from the working directory, `.` and `..` are folded, and symlinks are followed for
//! the part of the path that exists (the rest cannot be a symlink yet). Roots are resolved the
//! same way, so `/tmp` vs `/private/tmp` style aliases compare equal.

use std::path::{Component, Path, PathBuf};

/// Why a path given to the API was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("{what} '{given}' is not a local path: {reason}")]
    Invalid {
        what: &'static str,
        given: String,
        reason: String,
    },
    #[error(
        "{what} '{given}' (resolved to {}) is outside the allowed directories ({}); use a \
         directory under one of them, or add its parent to rest.savepoints.allowed-dirs",
        resolved.display(),
        roots_list(roots)
    )]
    Outside {
        what: &'static str,
        given: String,
        resolved: PathBuf,
        roots: Vec<PathBuf>,
    },
    #[error(
        "{what} '{given}' is refused: no directory is allowed for savepoints; set \
         execution.checkpointing.savepoint-dir (state.savepoints.dir) or \
         rest.savepoints.allowed-dirs"
    )]
    NoRoots { what: &'static str, given: String },
}

fn roots_list(roots: &[PathBuf]) -> String {
    roots
        .iter()
        .map(|r| r.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A `file:` URI or a plain path as a local path (not yet absolute).
pub fn local_path(what: &'static str, given: &str) -> Result<PathBuf, PathError> {
    let invalid = |reason: &str| PathError::Invalid {
        what,
        given: given.into(),
        reason: reason.into(),
    };
    let value = given.trim();
    if value.is_empty() {
        return Err(invalid("it is empty"));
    }
    if value.contains('\0') {
        return Err(invalid("it contains a NUL character"));
    }
    let Some((scheme, rest)) = value.split_once(':').filter(|(s, _)| {
        s.len() > 1
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    }) else {
        return Ok(PathBuf::from(value));
    };
    if !scheme.eq_ignore_ascii_case("file") {
        return Err(invalid(&format!(
            "scheme '{scheme}:' is not supported; floe writes savepoints to local directories \
             (file:///path or /path)"
        )));
    }
    let local = match rest.strip_prefix("//") {
        None => rest,
        Some(after) => {
            let (host, path) = after.split_at(after.find('/').unwrap_or(after.len()));
            if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) {
                return Err(invalid(&format!(
                    "file URI with host '{host}'; use file:///path (three slashes)"
                )));
            }
            path
        }
    };
    if local.is_empty() {
        return Err(invalid("the URI has no path"));
    }
    Ok(PathBuf::from(local))
}

/// Folds `.` and `..` without touching the disk (`..` at the root stays at the root).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The absolute, normalised path with symlinks resolved in the part that exists.
pub fn resolve(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    let abs = normalize(&abs);
    // Canonicalize the longest existing prefix; what follows it does not exist yet, so it
    // holds no symlink. `..` was folded lexically above, which the operating system would
    // not do after a symlink: callers must therefore use the returned path, never the
    // string they were given, so what is checked is what is written or deleted.
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(canon) = std::fs::canonicalize(existing) {
            let mut out = canon;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return abs,
        }
    }
}

/// A root as given in configuration: an `s3://` URI normalised, else a local path.
pub fn root_path(what: &'static str, given: &str) -> Result<PathBuf, PathError> {
    if crate::checkpoint::storage::is_object_path(Path::new(given.trim())) {
        return object_path(what, given);
    }
    local_path(what, given)
}

fn object_path(what: &'static str, given: &str) -> Result<PathBuf, PathError> {
    crate::checkpoint::storage::parse_dir(given)
        .map(|at| at.to_path_buf())
        .map_err(|e| PathError::Invalid {
            what,
            given: given.into(),
            reason: e.to_string(),
        })
}

/// Checks that `given` lies under one of `roots` (or is one) and returns it resolved. An
/// `s3://` path is compared with the `s3://` roots segment by segment (`..` is refused).
pub fn confine(what: &'static str, given: &str, roots: &[PathBuf]) -> Result<PathBuf, PathError> {
    if crate::checkpoint::storage::is_object_path(Path::new(given.trim())) {
        let resolved = object_path(what, given)?;
        if resolved.components().any(|c| c == Component::ParentDir) {
            return Err(PathError::Invalid {
                what,
                given: given.into(),
                reason: "'..' is not allowed in an object-store path".into(),
            });
        }
        if roots.is_empty() {
            return Err(PathError::NoRoots {
                what,
                given: given.into(),
            });
        }
        return if roots.iter().any(|r| resolved.starts_with(r)) {
            Ok(resolved)
        } else {
            Err(PathError::Outside {
                what,
                given: given.into(),
                resolved,
                roots: roots.to_vec(),
            })
        };
    }
    let roots: Vec<PathBuf> = roots
        .iter()
        .filter(|r| !crate::checkpoint::storage::is_object_path(r))
        .cloned()
        .collect();
    let roots = roots.as_slice();
    let resolved = resolve(&local_path(what, given)?);
    if roots.is_empty() {
        return Err(PathError::NoRoots {
            what,
            given: given.into(),
        });
    }
    let resolved_roots: Vec<PathBuf> = roots.iter().map(|r| resolve(r)).collect();
    if resolved_roots.iter().any(|r| resolved.starts_with(r)) {
        Ok(resolved)
    } else {
        Err(PathError::Outside {
            what,
            given: given.into(),
            resolved,
            roots: resolved_roots,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_and_plain_paths() {
        assert_eq!(
            local_path("t", "file:///a/b").unwrap(),
            PathBuf::from("/a/b")
        );
        assert_eq!(local_path("t", "file:/a/b").unwrap(), PathBuf::from("/a/b"));
        assert_eq!(
            local_path("t", "file://localhost/a").unwrap(),
            PathBuf::from("/a")
        );
        assert_eq!(local_path("t", "rel/x").unwrap(), PathBuf::from("rel/x"));
        assert!(local_path("t", "s3://bucket/x").is_err());
        assert!(local_path("t", "file://host/x").is_err());
        assert!(local_path("t", "  ").is_err());
    }

    #[test]
    fn dot_dot_cannot_escape_a_root() {
        let roots = [PathBuf::from("/nonexistent-floe-root/sp")];
        assert!(confine("t", "/nonexistent-floe-root/sp/a", &roots).is_ok());
        assert!(confine("t", "/nonexistent-floe-root/sp", &roots).is_ok());
        let e = confine("t", "/nonexistent-floe-root/sp/../etc", &roots).unwrap_err();
        assert!(matches!(e, PathError::Outside { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent-floe-root/etc"), "{e}");
        // A sibling sharing the prefix as a string is not inside.
        assert!(confine("t", "/nonexistent-floe-root/sp2", &roots).is_err());
        assert!(matches!(
            confine("t", "/x", &[]),
            Err(PathError::NoRoots { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_out_of_a_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        let roots = [root.clone()];
        let through = root.join("link/sp");
        assert!(confine("t", through.to_str().unwrap(), &roots).is_err());
        let inside = root.join("sp");
        assert!(confine("t", inside.to_str().unwrap(), &roots).is_ok());
    }
}
