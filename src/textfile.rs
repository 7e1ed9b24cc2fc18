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

/// Flow collections (`[`, `{`) nested deeper than this are refused before the YAML parser sees
/// them. serde_yaml refuses more than 128 levels of nesting anyway, but only after libyaml has
/// scanned the whole document, in time that grows with the square of the flow depth (100,000
/// `[` in a row kept `floe validate` busy for many minutes).
pub const MAX_FLOW_DEPTH: usize = 1000;

/// The line (1-based) where `text`'s flow collections first nest deeper than
/// [`MAX_FLOW_DEPTH`], if they do. One pass over the text: in block context only the start of
/// a line's value can open a flow collection (after `- `, `? `, `key: `, anchors and tags);
/// block scalars, quoted scalars and comments are skipped, so brackets in text do not count.
pub fn yaml_flow_too_deep(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let line_of = |pos: usize| b[..pos].iter().filter(|c| **c == b'\n').count() + 1;
    let mut i = 0;
    // The indentation of a block scalar's header line while its content lines are skipped.
    let mut block_scalar: Option<usize> = None;
    while i < b.len() {
        let end = memchr::memchr(b'\n', &b[i..]).map_or(b.len(), |n| i + n);
        let line = &b[i..end];
        let indent = line.iter().take_while(|c| **c == b' ').count();
        if let Some(parent) = block_scalar {
            if line[indent..].iter().all(u8::is_ascii_whitespace) || indent > parent {
                i = end + 1;
                continue;
            }
            block_scalar = None;
        }
        let mut resume = end;
        if let Some(p) = value_start(line, indent) {
            match line[p] {
                b'[' | b'{' => match scan_flow(b, i + p) {
                    Ok(after) => resume = after.max(end),
                    Err(at) => return Some(line_of(at)),
                },
                b'|' | b'>' => block_scalar = Some(indent),
                b'"' | b'\'' => resume = skip_quoted(b, i + p).max(end),
                _ => {}
            }
        }
        // Go on at the start of the line after `resume`.
        i = memchr::memchr(b'\n', &b[resume.min(b.len())..]).map_or(b.len(), |n| resume + n + 1);
    }
    None
}

/// Why a text whose `[`/`{` nest too deep is refused (pipeline and conf files alike).
pub fn flow_too_deep_message() -> String {
    format!(
        "`[` or `{{` nested more than {} levels deep (YAML nesting is limited to \
         128 levels)",
        MAX_FLOW_DEPTH
    )
}

/// Where the value of a block-context `line` starts (past its indentation, `- `, `? `, `: `
/// indicators, `key: `, anchors and tags), or `None` for a comment or no value.
fn value_start(line: &[u8], indent: usize) -> Option<usize> {
    let is_space = |p: usize| p >= line.len() || line[p] == b' ' || line[p] == b'\t';
    let skip_spaces = |mut p: usize| {
        while p < line.len() && (line[p] == b' ' || line[p] == b'\t') {
            p += 1;
        }
        p
    };
    let mut p = indent;
    let mut key_seen = false;
    loop {
        p = skip_spaces(p);
        if p >= line.len() || line[p] == b'#' {
            return None;
        }
        match line[p] {
            b'-' | b'?' | b':' if is_space(p + 1) => p += 1,
            b'-' if line[p..].starts_with(b"---") && is_space(p + 3) => p += 3,
            b'&' | b'!' | b'*' => {
                while !is_space(p) {
                    p += 1;
                }
            }
            b'[' | b'{' | b'|' | b'>' | b'"' | b'\'' => return Some(p),
            _ if key_seen => return None,
            _ => {
                // A plain key: its value follows the first `: `.
                let colon = (p..line.len()).find(|&q| line[q] == b':' && is_space(q + 1))?;
                p = colon + 1;
                key_seen = true;
            }
        }
    }
}

/// Scans the flow collection opening at `start`: the position after its end, or the position
/// of the bracket that nests deeper than [`MAX_FLOW_DEPTH`].
fn scan_flow(b: &[u8], start: usize) -> Result<usize, usize> {
    let mut depth = 0usize;
    let mut i = start;
    // The last byte that was not white space: a quote starts a scalar only after one of `[{,:`.
    let mut prev = b'[';
    while i < b.len() {
        let c = b[i];
        match c {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Err(i);
                }
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Ok(i + 1);
                }
            }
            b'"' | b'\'' if matches!(prev, b'[' | b'{' | b',' | b':') => {
                i = skip_quoted(b, i);
                prev = c;
                continue;
            }
            b'#' if i > 0 && b[i - 1].is_ascii_whitespace() => {
                i = memchr::memchr(b'\n', &b[i..]).map_or(b.len(), |n| i + n);
                continue;
            }
            _ => {}
        }
        if !c.is_ascii_whitespace() {
            prev = c;
        }
        i += 1;
    }
    Ok(b.len())
}

/// The position after the quoted scalar opening at `start` (`"` with `\` escapes, `'` with
/// `''`), or the end of the text.
fn skip_quoted(b: &[u8], start: usize) -> usize {
    let quote = b[start];
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' if quote == b'"' => i += 2,
            c if c == quote => {
                if quote == b'\'' && b.get(i + 1) == Some(&b'\'') {
                    i += 2;
                } else {
                    return i + 1;
                }
            }
            _ => i += 1,
        }
    }
    b.len()
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

    #[test]
    fn deep_flow_nesting_is_found_and_brackets_in_text_are_not() {
        let deep = |n: usize| format!("name: x\nv: {}{}\n", "[".repeat(n), "]".repeat(n));
        assert_eq!(yaml_flow_too_deep(&deep(MAX_FLOW_DEPTH)), None);
        assert_eq!(yaml_flow_too_deep(&deep(MAX_FLOW_DEPTH + 1)), Some(2));
        let open = "[".repeat(5000);
        for text in [
            format!("a: \"{open}\"\n"),
            format!("a: '{open}'\n"),
            format!("a: |\n  {open}\n  {open}\nb: 1\n"),
            format!("a: 1 # {open}\n"),
            format!("# {open}\n"),
            format!("a: [\"{open}\", '{open}', x]\n"),
            format!("a: b{open}\n"),
            format!("- x: >\n    {open}\n"),
        ] {
            assert_eq!(yaml_flow_too_deep(&text), None, "{text:.40}");
        }
        for text in [
            format!("- {open}\n"),
            format!("a: &x !!seq {open}\n"),
            format!("? {open}\n"),
            format!("--- {open}\n"),
            format!("a:\n  - b: {open}\n"),
            format!("a: [x,\n{open}\n"),
            format!("a: {{k: '{open}', v: {open}\n"),
            format!("{open}\n"),
        ] {
            assert!(yaml_flow_too_deep(&text).is_some(), "{text:.40}");
        }
    }
}
