//! Local directories reached without following symbolic links: what savepoint writes and
//! disposals go through, so that a directory replaced by a symlink after its path was
//! checked cannot make floe write or delete anywhere else.
//!
//! [`Dir::open`] walks a path one component at a time, each opened relative to the one before
//! with `O_NOFOLLOW | O_DIRECTORY`: a symlink anywhere on the way fails the open (`ELOOP` or
//! `ENOTDIR`) instead of being followed. Every operation then names a single plain entry
//! relative to that open handle (`openat`, `mkdirat`, `linkat`, `unlinkat`), so what the
//! handle refers to cannot change under it. A path is walked again for every operation: the
//! check happens at each open, never once for a later write.
//!
//! Callers resolve symlinks in paths they trust (configured directories) before handing them
//! here; a path checked against allowed roots is already resolved. Unix only (`rustix`).

use rustix::fs::{AtFlags, Mode, OFlags, CWD};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Component, Path, PathBuf};

/// A directory opened without following symlinks.
#[derive(Debug)]
pub struct Dir {
    fd: File,
    path: PathBuf,
}

/// Flags for opening a directory along a path: never follow a symlink.
fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// The error for a path that has a symlink (or a non-directory) where a directory should be.
fn not_a_plain_dir(at: &Path, e: rustix::io::Errno) -> io::Error {
    if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::NOTDIR {
        io::Error::other(format!(
            "'{}' is a symbolic link or not a directory; floe writes and deletes savepoints \
             only through real directories (was it replaced after the request was checked?)",
            at.display()
        ))
    } else {
        io::Error::from(e)
    }
}

/// One plain name: no separator, not `.` or `..`, not empty.
fn plain(name: &str) -> io::Result<&str> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            format!("bug: '{name}' is not a plain file name"),
        ));
    }
    Ok(name)
}

impl Dir {
    /// Opens `path` (absolute, or relative to the working directory) without following a
    /// symlink in any component. `..` is refused: paths are resolved before they get here.
    pub fn open(path: &Path) -> io::Result<Dir> {
        Self::walk(path, false)
    }

    /// [`Dir::open`], creating missing directories on the way (each created with `mkdirat`
    /// in the directory opened before it, then opened without following).
    pub fn open_or_create(path: &Path) -> io::Result<Dir> {
        Self::walk(path, true)
    }

    fn walk(path: &Path, create: bool) -> io::Result<Dir> {
        let start = if path.is_absolute() { "/" } else { "." };
        let fd = rustix::fs::openat(CWD, start, dir_flags(), Mode::empty())?;
        let mut dir = Dir {
            fd: File::from(fd),
            path: PathBuf::from(start),
        };
        for c in path.components() {
            match c {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(name) => dir = dir.child(name, create)?,
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(io::Error::new(
                        ErrorKind::InvalidInput,
                        format!("'{}' is not a resolved path (it has '..')", path.display()),
                    ))
                }
            }
        }
        dir.path = path.to_path_buf();
        Ok(dir)
    }

    fn child(&self, name: &OsStr, create: bool) -> io::Result<Dir> {
        let at = self.path.join(name);
        let open = || rustix::fs::openat(&self.fd, name, dir_flags(), Mode::empty());
        let fd = match open() {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) if create => {
                match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o777)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                open().map_err(|e| not_a_plain_dir(&at, e))?
            }
            Err(e) => return Err(not_a_plain_dir(&at, e)),
        };
        Ok(Dir {
            fd: File::from(fd),
            path: at,
        })
    }

    /// The path this directory was opened as.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the new directory `name` (an existing one is an error) and opens it.
    pub fn create_dir(&self, name: &str) -> io::Result<Dir> {
        rustix::fs::mkdirat(&self.fd, plain(name)?, Mode::from_raw_mode(0o777))?;
        self.child(OsStr::new(name), false)
    }

    /// Opens the directory `name` without following a symlink.
    pub fn open_dir(&self, name: &str) -> io::Result<Dir> {
        self.child(OsStr::new(plain(name)?), false)
    }

    /// Creates the new file `name` (an existing file or symlink there is an error) for
    /// writing.
    pub fn create_file(&self, name: &str) -> io::Result<File> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, plain(name)?, flags, Mode::from_raw_mode(0o666))?;
        Ok(File::from(fd))
    }

    /// Writes `bytes` to the new file `name` and fsyncs it.
    pub fn write_new(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let mut f = self.create_file(name)?;
        f.write_all(bytes)?;
        f.sync_all()
    }

    /// The contents of the file `name`; `None` when there is none. A symlink is refused.
    pub fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&self.fd, plain(name)?, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(not_a_plain_dir(&self.path.join(name), e)),
        };
        let mut out = Vec::new();
        File::from(fd).read_to_end(&mut out)?;
        Ok(Some(out))
    }

    /// Links the file `from` as `to` in this directory; fails when `to` exists. Neither is
    /// followed if it is a symlink.
    pub fn hard_link(&self, from: &str, to: &str) -> io::Result<()> {
        rustix::fs::linkat(
            &self.fd,
            plain(from)?,
            &self.fd,
            plain(to)?,
            AtFlags::empty(),
        )?;
        Ok(())
    }

    /// Removes the entry `name` (a file or a symlink, never what a symlink points to); one
    /// already gone is fine.
    pub fn remove_file(&self, name: &str) -> io::Result<()> {
        match rustix::fs::unlinkat(&self.fd, plain(name)?, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the empty directory `name`; whether it is gone (false when it is not empty).
    pub fn remove_dir_if_empty(&self, name: &str) -> io::Result<bool> {
        match rustix::fs::unlinkat(&self.fd, plain(name)?, AtFlags::REMOVEDIR) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(true),
            Err(rustix::io::Errno::NOTEMPTY) | Err(rustix::io::Errno::EXIST) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The names of the entries that are not directories (files, symlinks, ...).
    pub fn non_dir_entries(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in rustix::fs::Dir::read_from(&self.fd)? {
            let entry = entry?;
            if entry.file_type() == rustix::fs::FileType::Directory {
                continue;
            }
            if let Ok(name) = entry.file_name().to_str() {
                if name != "." && name != ".." {
                    out.push(name.to_owned());
                }
            }
        }
        Ok(out)
    }

    /// fsyncs the directory: the names created, linked or removed in it are durable.
    pub fn sync(&self) -> io::Result<()> {
        self.fd.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_symlink_on_the_way_is_never_followed() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(real.join("a")).unwrap();
        std::fs::create_dir_all(outside.join("a")).unwrap();
        symlink(&outside, t.path().join("link")).unwrap();
        assert!(Dir::open(&real.join("a")).is_ok());
        let e = Dir::open(&t.path().join("link/a")).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let e = Dir::open_or_create(&t.path().join("link/a/b")).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(
            !outside.join("a/b").exists(),
            "nothing created through the link"
        );
        // The last component too.
        symlink(&outside, real.join("last")).unwrap();
        assert!(Dir::open(&real.join("last")).is_err());
    }

    #[test]
    fn files_are_created_new_and_links_are_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open_or_create(&t.path().join("x/y")).unwrap();
        d.write_new("f", b"one").unwrap();
        assert!(d.write_new("f", b"two").is_err(), "create-new only");
        assert_eq!(d.read("f").unwrap().as_deref(), Some(&b"one"[..]));
        assert_eq!(d.read("missing").unwrap(), None);
        let target = t.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        symlink(&target, t.path().join("x/y/ln")).unwrap();
        assert!(
            d.read("ln").is_err(),
            "reading through a symlink is refused"
        );
        assert!(
            d.write_new("ln", b"x").is_err(),
            "writing through a symlink is refused"
        );
        d.remove_file("ln").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        d.hard_link("f", "g").unwrap();
        assert!(d.hard_link("f", "g").is_err());
        let mut names = d.non_dir_entries().unwrap();
        names.sort();
        assert_eq!(names, ["f", "g"]);
        assert!(plain("../f").is_err() && plain("a/b").is_err() && plain("..").is_err());
    }
}
