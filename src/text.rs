//! Untrusted text on its way into a log line or a name: what counts as printable, and how
//! the rest is escaped so that no input can start a line of its own (a forged log entry) or
//! move the cursor of the terminal that shows it.
//!
//! A leaf module: plain functions over `str`.

use std::borrow::Cow;

/// Characters that are not printable text: control characters (but tab), the Unicode line
/// and paragraph separators, and the bidirectional overrides that make text display in
/// another order than it is stored.
pub fn is_unprintable(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every unprintable character written as an escape (`\n`, `\r`, `\u{1b}`), so that
/// it stays on one line and shows what it holds.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unprintable) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        c if is_unprintable(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        c => out.push(c),
    }
}

/// Why `s` is not a printable name, if it is not: the first unprintable character, by code
/// point and position (1-based, in characters).
pub fn check_printable(s: &str) -> Result<(), String> {
    match s.chars().enumerate().find(|(_, c)| is_unprintable(*c)) {
        None => Ok(()),
        Some((i, c)) => Err(format!(
            "contains {} (U+{:04X}) at character {}; use printable text without control \
             characters or line breaks",
            describe(c),
            c as u32,
            i + 1
        )),
    }
}

fn describe(c: char) -> &'static str {
    match c {
        '\n' | '\r' | '\u{2028}' | '\u{2029}' | '\u{0b}' | '\u{0c}' | '\u{85}' => "a line break",
        '\u{1b}' => "an escape character",
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => "a bidirectional text control",
        _ => "a control character",
    }
}

/// One formatted log event (text ending in its own `\n`) made safe to write: every
/// unprintable character escaped but the final newline, and, when `ansi` is on, the colour
/// sequences (`ESC [ digits ; … m`) the formatter itself writes. Cursor movements and any
/// other escape sequence are escaped like the rest.
pub fn escape_log_event(event: &str, ansi: bool) -> Cow<'_, str> {
    let body = event.strip_suffix('\n').unwrap_or(event);
    if !body.chars().any(is_unprintable) {
        return Cow::Borrowed(event);
    }
    let mut out = String::with_capacity(event.len() + 16);
    let mut rest = body;
    while let Some(c) = rest.chars().next() {
        if ansi && c == '\u{1b}' {
            if let Some(len) = colour_sequence_len(rest) {
                out.push_str(&rest[..len]);
                rest = &rest[len..];
                continue;
            }
        }
        push_escaped(&mut out, c);
        rest = &rest[c.len_utf8()..];
    }
    if body.len() < event.len() {
        out.push('\n');
    }
    Cow::Owned(out)
}

/// The length of an SGR (colour) sequence at the start of `s`: `ESC [`, digits and `;`, `m`.
fn colour_sequence_len(s: &str) -> Option<usize> {
    let params = s.strip_prefix("\u{1b}[")?;
    let n = params
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b';')
        .count();
    (params.as_bytes().get(n) == Some(&b'm')).then_some(2 + n + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_line_breaks_and_controls() {
        assert_eq!(escape("a\nb\r\u{1b}[2Kc"), "a\\nb\\r\\u{1b}[2Kc");
        assert_eq!(escape("tab\tok"), "tab\tok");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(escape("x\u{202E}y"), "x\\u{202e}y");
    }

    #[test]
    fn names_must_be_printable() {
        assert!(check_printable("word count ✓").is_ok());
        let e = check_printable("job\nfake line").unwrap_err();
        assert!(e.contains("a line break (U+000A) at character 4"), "{e}");
        assert!(check_printable("a\u{0}").is_err());
        assert!(check_printable("\u{2066}x").is_err());
    }

    #[test]
    fn log_events_keep_their_final_newline_and_colours() {
        let ev = "\u{1b}[32m INFO\u{1b}[0m job started name=evil\n2024 ERROR forged\n";
        let safe = escape_log_event(ev, true);
        assert_eq!(
            safe,
            "\u{1b}[32m INFO\u{1b}[0m job started name=evil\\n2024 ERROR forged\n"
        );
        assert_eq!(safe.matches('\n').count(), 1);
        let no_ansi = escape_log_event("\u{1b}[32mx\n", false);
        assert_eq!(no_ansi, "\\u{1b}[32mx\n");
        // A cursor movement is escaped even with colours on.
        assert_eq!(escape_log_event("a\u{1b}[1Ab\n", true), "a\\u{1b}[1Ab\n");
    }
}
