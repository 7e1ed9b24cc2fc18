//! Reading a text file a person gave floe (a pipeline, a conf file): only a regular file, at
//! most a given size, as UTF-8. A FIFO, a device or a directory is refused before anything is
//! read from it, so that `floe validate` never blocks on a pipe nor reads `/dev/zero` for ever;
//! a file above the limit is refused with both sizes.
//!
//! It must not follow anything but the path it is given, nor read more than `limit + 1` bytes.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Why a file could not be read; Display is the reason only (the caller names the file).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a regular file (it is {0}); give the path of a YAML file")]
    NotAFile(&'static str),
    #[error("the file is {size} bytes, above the limit of {limit} bytes ({limit_text}); split it or make it smaller", limit_text = human_bytes(*.limit))]
    TooLarge { size: u64, limit: u64 },
    #[error("not UTF-8 text: {0}")]
    NotUtf8(#[from] std::string::FromUtf8Error),
}

/// Reads the regular file at `path` as text, refusing other kinds of files and files larger
/// than `limit` bytes.
pub fn read_text(path: &Path, limit: u64) -> Result<String, ReadError> {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer. It changes
    // nothing for a regular file.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    let kind = meta.file_type();
    if !kind.is_file() {
        return Err(ReadError::NotAFile(kind_name(&kind)));
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge {
            size: meta.len(),
            limit,
        });
    }
    read_bounded(file, limit)
}

/// At most `limit` bytes of `file`: a file that grew after its size was checked is refused
/// too, never read without end.
fn read_bounded(file: File, limit: u64) -> Result<String, ReadError> {
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(String::from_utf8(bytes)?)
}

fn kind_name(kind: &std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

/// `8 MiB`, `512 KiB`, `100 bytes`: a limit as people say it.
pub fn human_bytes(n: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    const GIB: u64 = 1024 * 1024 * 1024;
    let (unit, name) = match n {
        n if n >= GIB => (GIB, "GiB"),
        n if n >= MIB => (MIB, "MiB"),
        n if n >= KIB => (KIB, "KiB"),
        _ => return format!("{n} bytes"),
    };
    let whole = n / unit;
    let tenths = (n % unit) * 10 / unit;
    if tenths == 0 {
        format!("{whole} {name}")
    } else {
        format!("{whole}.{tenths} {name}")
    }
}

/// The line of the second `key:` of the block mapping whose first key stands at `line`,
/// `column` (1-based, as YAML parsers report a duplicate key: at its mapping), found by
/// indentation; `None` when the mapping is not written in block style.
pub fn yaml_duplicate_key_line(text: &str, line: usize, column: usize, key: &str) -> Option<usize> {
    let col = column.checked_sub(1)?;
    let mut seen = 0;
    for (i, l) in text.lines().enumerate().skip(line.checked_sub(1)?) {
        let at_key = match l.char_indices().nth(col) {
            Some((byte, _)) => &l[byte..],
            None => "",
        };
        let trimmed = l.trim_start();
        if i + 1 > line && !trimmed.is_empty() && !trimmed.starts_with('#') {
            let indent = l.len() - trimmed.len();
            if indent < col {
                return None; // the mapping ended
            }
        }
        if yaml_key_of(at_key) == Some(key) && (i + 1 == line || at_key.len() == trimmed.len()) {
            seen += 1;
            if seen == 2 {
                return Some(i + 1);
            }
        }
    }
    None
}

/// The key a block-style YAML line starts with (after a `- `, without quotes), if any.
pub fn yaml_key_of(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let t = t.strip_prefix("- ").map(str::trim_start).unwrap_or(t);
    if t.starts_with('#') {
        return None;
    }
    if let Some(rest) = t.strip_prefix('"') {
        let end = rest.find('"')?;
        return rest[end + 1..].starts_with(':').then(|| &rest[..end]);
    }
    let end = t.find(':')?;
    (end > 0).then(|| &t[..end])
}

/// `duplicate entry with key "name"` (serde_yaml's words) → `name`.
pub fn yaml_duplicate_key(message: &str) -> Option<&str> {
    let rest = &message[message.find("duplicate entry with key \"")? + 26..];
    Some(&rest[..rest.find('"')?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("p.yaml");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let err = read_text(&fifo, 1024).unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");
    }

    #[test]
    fn directories_devices_and_large_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_text(dir.path(), 10)
            .unwrap_err()
            .to_string()
            .contains("a directory"));
        assert!(read_text(Path::new("/dev/zero"), 10)
            .unwrap_err()
            .to_string()
            .contains("character device"));
        let f = dir.path().join("big.yaml");
        std::fs::write(&f, "x".repeat(11)).unwrap();
        let err = read_text(&f, 10).unwrap_err().to_string();
        assert!(
            err.contains("11 bytes") && err.contains("limit of 10 bytes"),
            "{err}"
        );
        assert_eq!(read_text(&f, 11).unwrap(), "x".repeat(11));
    }

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(human_bytes(100), "100 bytes");
        assert_eq!(human_bytes(8 << 20), "8 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3 GiB");
    }

    #[test]
    fn a_duplicate_key_is_found_at_its_own_line() {
        let text = "name: a\noperators:\n  - id: s\n    type: datagen\n    lines: 1\n    # lines: 3\n    lines: 2\n  - id: t\n    lines: 4\n";
        assert_eq!(yaml_duplicate_key_line(text, 3, 5, "lines"), Some(7));
        assert_eq!(yaml_duplicate_key_line(text, 3, 5, "id"), None);
        let top = "a: 1\nb:\n  a: 2\n\"a\": 3\n";
        assert_eq!(yaml_duplicate_key_line(top, 1, 1, "a"), Some(4));
        assert_eq!(
            yaml_duplicate_key("operators[0]: duplicate entry with key \"lines\""),
            Some("lines")
        );
        assert_eq!(yaml_key_of("  - \"id\": x"), Some("id"));
        assert_eq!(yaml_key_of("  # id: x"), None);
    }
}
