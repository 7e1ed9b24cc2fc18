//! Following the pipeline directory and the conf directory for `floe serve`.
//!
//! Changes are recognised by content, not by events: any burst of file-system events only
//! says "look again". After a quiet moment ([`DEBOUNCE`]), the directory is scanned (every
//! `*.yaml`/`*.yml` whose name does not start with `.`, read through symlinks) and each file's
//! content hash is compared with the last scan's ([`diff`]). So an editor's save-by-rename,
//! a symlink re-pointed, a Kubernetes ConfigMap `..data` swap (every file a symlink through
//! `..data`, which is atomically renamed to a new timestamped directory) or the same event
//! delivered twice all come down to "this file's content changed" once, or to nothing.
//!
//! - [`scan`]: the directory as file name → [`ScannedFile`] (text and hash).
//! - [`diff`]: pure, old hashes and new ones in, added / changed / removed out.
//! - [`watch`]: the notify watcher; it sends `()` on a channel once events have been quiet
//!   for [`DEBOUNCE`]. It never reads pipeline files and never decides anything.

use notify::{RecursiveMode, Watcher};
use std::collections::BTreeMap;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long events must be quiet before the directory is scanned: an editor's write, rename
/// and chmod, or a ConfigMap's symlink swap, come within a few milliseconds of each other.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// One pipeline file as a scan found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedFile {
    /// The path in the watched directory (not the symlink's target: relative paths in the
    /// pipeline resolve from here).
    pub path: PathBuf,
    pub text: String,
    pub hash: u64,
}

/// What changed between two scans, by file name, each list sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// The content hash: FNV-1a over the bytes, 64 bits. Only compared within one process, to
/// tell whether a file's text changed.
pub fn content_hash(bytes: &[u8]) -> u64 {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    h.write(bytes);
    h.finish()
}

struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// Whether a directory entry's name is a pipeline file: `*.yaml` or `*.yml`, not hidden
/// (editor swap files, `..data`, `.#lock` files start with a dot).
pub fn is_pipeline_name(name: &str) -> bool {
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

/// The pipeline files of `dir`, by file name. A symlink is followed (a dangling one is left
/// out, as a file that is not there); a file that cannot be read as UTF-8 is kept with its
/// error as text, so that validation reports it on that file.
pub fn scan(dir: &Path) -> std::io::Result<BTreeMap<String, ScannedFile>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !is_pipeline_name(&name) {
            continue;
        }
        let path = entry.path();
        // `metadata` follows symlinks: only regular files (or links to them) are pipelines.
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => {}
            _ => continue,
        }
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            // Gone between the listing and the read: the next scan sees it as it is.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => format!("# floe: cannot read {}: {e}\n", path.display()).into_bytes(),
        };
        let hash = content_hash(&bytes);
        let text = String::from_utf8(bytes)
            .unwrap_or_else(|e| format!("# floe: {} is not UTF-8 text: {e}\n", path.display()));
        out.insert(name, ScannedFile { path, text, hash });
    }
    Ok(out)
}

/// The hashes of a scan.
pub fn hashes(scan: &BTreeMap<String, ScannedFile>) -> BTreeMap<String, u64> {
    scan.iter().map(|(k, v)| (k.clone(), v.hash)).collect()
}

/// What changed from `old` to `new` (file name → content hash).
pub fn diff(old: &BTreeMap<String, u64>, new: &BTreeMap<String, u64>) -> Changes {
    let mut c = Changes::default();
    for (name, hash) in new {
        match old.get(name) {
            None => c.added.push(name.clone()),
            Some(h) if h != hash => c.changed.push(name.clone()),
            Some(_) => {}
        }
    }
    c.removed = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .cloned()
        .collect();
    c
}

/// A running watcher; dropping it stops watching.
pub struct DirWatcher {
    watcher: notify::RecommendedWatcher,
    watched: std::collections::BTreeSet<PathBuf>,
}

impl DirWatcher {
    /// Also watches `dirs` (not recursively), those not watched yet: the directories that
    /// the pipeline files' symlinks point into, so that a target edited in place is seen.
    pub fn watch_more(&mut self, dirs: impl IntoIterator<Item = PathBuf>) {
        for d in dirs {
            if self.watched.contains(&d) {
                continue;
            }
            match self.watcher.watch(&d, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(d);
                }
                Err(e) => tracing::warn!(
                    dir = %d.display(),
                    "cannot watch {}: {e}; edits there are seen at the next reload",
                    d.display()
                ),
            }
        }
    }
}

/// The directories the symlinked files of a scan resolve into, outside `dir` itself (a
/// ConfigMap's `..data/` target lies inside and is seen through `dir`'s own events).
pub fn link_target_dirs(dir: &Path, scan: &BTreeMap<String, ScannedFile>) -> Vec<PathBuf> {
    let own = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut out: Vec<PathBuf> = scan
        .values()
        .filter(|f| std::fs::symlink_metadata(&f.path).is_ok_and(|m| m.file_type().is_symlink()))
        .filter_map(|f| std::fs::canonicalize(&f.path).ok())
        .filter_map(|t| t.parent().map(Path::to_path_buf))
        .filter(|p| !p.starts_with(&own))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Watches `dirs` (not recursively) and sends `()` on the returned channel once events have
/// been quiet for [`DEBOUNCE`]. Many events in a burst give one message.
pub fn watch(dirs: &[PathBuf]) -> notify::Result<(DirWatcher, mpsc::UnboundedReceiver<()>)> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        match res {
            // Access events (a scan reading the files) change nothing.
            Ok(e) if matches!(e.kind, notify::EventKind::Access(_)) => {}
            Ok(_) => {
                let _ = raw_tx.send(());
            }
            Err(e) => {
                tracing::warn!(error = %e, "watching the pipeline directory: {e}; rescanning");
                let _ = raw_tx.send(());
            }
        }
    })?;
    for d in dirs {
        watcher.watch(d, RecursiveMode::NonRecursive)?;
    }
    let watched = dirs.iter().cloned().collect();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            // Wait for a quiet moment: every event restarts the wait.
            loop {
                match tokio::time::timeout(DEBOUNCE, raw_rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    Ok((DirWatcher { watcher, watched }, rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(v: &[(&str, u64)]) -> BTreeMap<String, u64> {
        v.iter().map(|(k, h)| (k.to_string(), *h)).collect()
    }

    #[test]
    fn added_changed_removed_and_nothing_else() {
        let old = m(&[("a.yaml", 1), ("b.yaml", 2), ("c.yaml", 3)]);
        let new = m(&[("a.yaml", 1), ("b.yaml", 20), ("d.yml", 4)]);
        let c = diff(&old, &new);
        assert_eq!(c.added, ["d.yml"]);
        assert_eq!(c.changed, ["b.yaml"]);
        assert_eq!(c.removed, ["c.yaml"]);
    }

    #[test]
    fn the_same_content_twice_is_no_change() {
        let a = m(&[("a.yaml", 1), ("b.yaml", 2)]);
        assert!(diff(&a, &a.clone()).is_empty());
        assert!(diff(&BTreeMap::new(), &BTreeMap::new()).is_empty());
    }

    #[test]
    fn first_scan_adds_everything() {
        let c = diff(&BTreeMap::new(), &m(&[("b.yaml", 2), ("a.yaml", 1)]));
        assert_eq!(c.added, ["a.yaml", "b.yaml"]);
        assert!(c.changed.is_empty() && c.removed.is_empty());
    }

    #[test]
    fn only_visible_yaml_files_are_pipelines() {
        for ok in ["p.yaml", "p.yml", "a.b.yaml"] {
            assert!(is_pipeline_name(ok), "{ok}");
        }
        for no in [
            ".p.yaml.swp",
            ".p.yaml",
            "..data",
            "p.yaml~",
            "4913",
            "p.json",
        ] {
            assert!(!is_pipeline_name(no), "{no}");
        }
    }

    #[test]
    fn scan_follows_symlinks_and_hashes_content() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("..2026_a")).unwrap();
        std::fs::write(d.join("..2026_a/p.yaml"), "name: a\n").unwrap();
        std::os::unix::fs::symlink("..2026_a", d.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/p.yaml", d.join("p.yaml")).unwrap();
        std::os::unix::fs::symlink("missing.yaml", d.join("dangling.yaml")).unwrap();
        std::fs::write(d.join(".p.yaml.swp"), "junk").unwrap();
        let first = scan(d).unwrap();
        assert_eq!(first.keys().collect::<Vec<_>>(), ["p.yaml"]);
        assert_eq!(first["p.yaml"].text, "name: a\n");
        // The ConfigMap swap: a new data dir, `..data` re-pointed by rename.
        std::fs::create_dir(d.join("..2026_b")).unwrap();
        std::fs::write(d.join("..2026_b/p.yaml"), "name: b\n").unwrap();
        std::os::unix::fs::symlink("..2026_b", d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
        let second = scan(d).unwrap();
        assert_eq!(diff(&hashes(&first), &hashes(&second)).changed, ["p.yaml"]);
        assert_eq!(second["p.yaml"].path, d.join("p.yaml"));
    }
}
