//! Parsing of configuration values as Flink writes them: durations (Flink's `TimeUtils`, plus
//! humantime's compound forms and ISO-8601 as Flink 2.x), memory sizes (Flink's `MemorySize`,
//! binary multiples), booleans and enum names. Pure functions over text; errors carry Flink's
//! own wording. Knows nothing of keys, files or layers.

use super::keys::Kind;
use std::time::Duration;

/// Accepted duration forms, for error messages.
pub const DURATION_FORMS: &str =
    "a number of milliseconds (1000), a number and a unit (10 s, 10min, 1 h), \
     a compound (1m 30s) or ISO-8601 (PT10S)";

/// Accepted memory size forms, for error messages.
pub const MEMORY_FORMS: &str =
    "bytes (4096) or a number and a unit, binary multiples (20kb, 1 mb, 2 g); units: \
     (b | bytes) / (k | kb | kibibytes) / (m | mb | mebibytes) / (g | gb | gibibytes) / (t | tb | tebibytes)";

/// Accepted boolean forms.
pub const BOOL_FORMS: &str = "true or false (any case)";

const UNITS_TEXT: &str = "DAYS: (d | day | days), HOURS: (h | hour | hours), \
     MINUTES: (min | m | minute | minutes), SECONDS: (s | sec | secs | second | seconds), \
     MILLISECONDS: (ms | milli | millis | millisecond | milliseconds), \
     MICROSECONDS: (µs | micro | micros | microsecond | microseconds), \
     NANOSECONDS: (ns | nano | nanos | nanosecond | nanoseconds)";

/// Nanoseconds per unit label (Flink's `TimeUtils.TimeUnit` labels).
fn duration_unit(label: &str) -> Option<u64> {
    Some(match label {
        "d" | "day" | "days" => 86_400_000_000_000,
        "h" | "hour" | "hours" => 3_600_000_000_000,
        "min" | "m" | "minute" | "minutes" => 60_000_000_000,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000_000_000,
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1_000_000,
        // `us`: floe's ASCII spelling of `µs` (Flink knows only the latter).
        "µs" | "us" | "micro" | "micros" | "microsecond" | "microseconds" => 1_000,
        "ns" | "nano" | "nanos" | "nanosecond" | "nanoseconds" => 1,
        _ => return None,
    })
}

/// Splits leading ASCII digits from the rest.
fn split_number(text: &str) -> (&str, &str) {
    let end = text
        .char_indices()
        .find(|(_, c)| !c.is_ascii_digit())
        .map_or(text.len(), |(i, _)| i);
    text.split_at(end)
}

/// Parses a duration as Flink does (`1000` = 1000 ms, `10 s`, `10min`, `1 h`; ISO-8601 such as
/// `PT10S` as Flink 2.x), and, where Flink's form fails, humantime's (`1m 30s`, `1h 30m`).
/// The error is Flink's message.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("argument is an empty- or whitespace-only string".into());
    }
    let (digits, rest) = split_number(trimmed);
    if digits.is_empty() {
        return parse_iso8601(trimmed).ok_or_else(|| {
            format!(
                "text does not start with a number, and is not a valid ISO-8601 duration format: {trimmed}"
            )
        });
    }
    let label = rest.trim().to_lowercase();
    let Some(nanos_per_unit) = duration_unit(&label) else {
        // floe's extension: humantime's compound durations (`1m 30s`), and only those, so
        // that a single value means exactly what it means in Flink (`1.5s`, `10 mins` stay
        // errors). Lower-cased first so that `M` means minutes as in Flink, never months.
        if is_compound(trimmed) {
            if let Ok(d) = humantime::parse_duration(&trimmed.to_lowercase()) {
                return Ok(d);
            }
        }
        return Err(format!(
            "Time interval unit label '{label}' does not match any of the recognized units: {UNITS_TEXT}"
        ));
    };
    let overflow = || {
        format!("The value '{digits}' cannot be re represented as 64bit number (numeric overflow).")
    };
    let n: u64 = digits.parse().map_err(|_| overflow())?;
    // Flink keeps a signed 64-bit count of the unit; stay within that.
    if n > i64::MAX as u64 {
        return Err(overflow());
    }
    let nanos = u128::from(n) * u128::from(nanos_per_unit);
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| "long overflow".to_string())?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// Several number-unit groups, no decimals: `1h 30m`, `1m30s`.
fn is_compound(text: &str) -> bool {
    let runs = text
        .as_bytes()
        .split(|b| !b.is_ascii_digit())
        .filter(|run| !run.is_empty())
        .count();
    runs >= 2 && !text.contains('.')
}

/// ISO-8601 durations as `java.time.Duration.parse` reads them (`PT10S`, `P1DT2H`, `PT0.5S`),
/// case-insensitive; negative durations are refused (no key takes one).
fn parse_iso8601(text: &str) -> Option<Duration> {
    let upper = text.to_ascii_uppercase();
    let body = upper.strip_prefix('P')?;
    let (date, time) = match body.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (body, None),
    };
    let mut nanos: u128 = 0;
    let mut any = false;
    if !date.is_empty() {
        let days = date.strip_suffix('D')?;
        nanos += u128::from(days.parse::<u64>().ok()?) * 86_400_000_000_000;
        any = true;
    }
    if let Some(mut t) = time {
        if t.is_empty() {
            return None;
        }
        for (unit, scale) in [('H', 3_600_000_000_000u128), ('M', 60_000_000_000)] {
            if let Some((n, rest)) = t.split_once(unit) {
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                nanos += u128::from(n.parse::<u64>().ok()?) * scale;
                t = rest;
                any = true;
            }
        }
        if !t.is_empty() {
            let s = t.strip_suffix('S')?;
            let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
            if whole.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            nanos += u128::from(whole.parse::<u64>().ok()?) * 1_000_000_000;
            if !frac.is_empty() {
                let scaled = format!("{frac:0<9}");
                nanos += u128::from(scaled.parse::<u32>().ok()?);
            }
            any = true;
        }
    }
    if !any {
        return None;
    }
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// Parses a memory size as Flink's `MemorySize.parse`: bytes, or a number and a binary unit.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("argument is an empty- or whitespace-only string".into());
    }
    let (digits, rest) = split_number(trimmed);
    if digits.is_empty() {
        return Err("text does not start with a number".into());
    }
    let unit = rest.trim().to_lowercase();
    let multiplier: u64 = match unit.as_str() {
        "" | "b" | "bytes" => 1,
        "k" | "kb" | "kibibytes" => 1 << 10,
        "m" | "mb" | "mebibytes" => 1 << 20,
        "g" | "gb" | "gibibytes" => 1 << 30,
        "t" | "tb" | "tebibytes" => 1 << 40,
        _ => {
            return Err(format!(
                "Memory size unit '{unit}' does not match any of the recognized units: \
                 (b | bytes) / (k | kb | kibibytes) / (m | mb | mebibytes) / (g | gb | gibibytes) / (t | tb | tebibytes)"
            ))
        }
    };
    let overflow = || {
        format!(
            "The value '{trimmed}' cannot be re represented as 64bit number of bytes (numeric overflow)."
        )
    };
    let n: u64 = digits.parse().map_err(|_| overflow())?;
    n.checked_mul(multiplier)
        .filter(|b| *b <= i64::MAX as u64)
        .ok_or_else(overflow)
}

/// Flink's `MemorySize.toString`: the largest exact unit (`20480` → `20 kb`).
pub fn format_memory(bytes: u64) -> String {
    for (unit, scale) in [
        ("tb", 1u64 << 40),
        ("gb", 1 << 30),
        ("mb", 1 << 20),
        ("kb", 1 << 10),
    ] {
        if bytes >= scale && bytes.is_multiple_of(scale) {
            return format!("{} {unit}", bytes / scale);
        }
    }
    format!("{bytes} bytes")
}

/// `true` / `false` in any case; nothing else (Flink refuses `yes`, `1`, `on`).
pub fn parse_bool(text: &str) -> Option<bool> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("true") {
        Some(true)
    } else if t.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Index of `text` among `names`, case-insensitive (Flink's enum matching: underscores must
/// stay underscores).
pub fn parse_enum(text: &str, names: &[&str]) -> Option<usize> {
    let t = text.trim();
    names.iter().position(|n| n.eq_ignore_ascii_case(t))
}

/// A duration as a person writes it (`10 min`, `1500 ms`), for rendering defaults.
/// Whether two texts are the same value of `kind` (`20kb` and `20480`, `TRUE` and `true`);
/// texts that do not parse compare as they are written.
pub fn same_value(kind: Kind, a: &str, b: &str) -> bool {
    let same = match kind {
        Kind::Duration => parse_duration(a)
            .ok()
            .zip(parse_duration(b).ok())
            .map(|(x, y)| x == y),
        Kind::MemorySize => parse_memory(a)
            .ok()
            .zip(parse_memory(b).ok())
            .map(|(x, y)| x == y),
        Kind::Bool => parse_bool(a).zip(parse_bool(b)).map(|(x, y)| x == y),
        Kind::Enum(names) => parse_enum(a, names)
            .zip(parse_enum(b, names))
            .map(|(x, y)| x == y),
        Kind::Integer | Kind::Float | Kind::Text => None,
    };
    same.unwrap_or_else(|| a.trim() == b.trim())
}

pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return format!("{} ns", d.as_nanos());
    }
    for (unit, scale) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("min", 60_000),
        ("s", 1000),
    ] {
        if ms >= scale && ms.is_multiple_of(scale) {
            return format!("{} {unit}", ms / scale);
        }
    }
    format!("{ms} ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn flink_durations() {
        assert_eq!(parse_duration("1000"), Ok(ms(1000)));
        assert_eq!(parse_duration("10 s"), Ok(ms(10_000)));
        assert_eq!(parse_duration("10s"), Ok(ms(10_000)));
        assert_eq!(parse_duration("10 S"), Ok(ms(10_000)));
        assert_eq!(parse_duration("10min"), Ok(ms(600_000)));
        assert_eq!(parse_duration("1 h"), Ok(ms(3_600_000)));
        assert_eq!(parse_duration("2 days"), Ok(ms(172_800_000)));
        assert_eq!(parse_duration("1M"), Ok(ms(60_000)));
        assert_eq!(parse_duration("5 µs"), Ok(Duration::from_micros(5)));
        assert_eq!(parse_duration("7 nanos"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_duration("  3 secs "), Ok(ms(3000)));
    }

    #[test]
    fn compound_and_iso() {
        assert_eq!(parse_duration("1m 30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("1h 30m"), Ok(ms(5_400_000)));
        assert_eq!(parse_duration("PT10S"), Ok(ms(10_000)));
        assert_eq!(parse_duration("pt10s"), Ok(ms(10_000)));
        assert_eq!(parse_duration("P1D"), Ok(ms(86_400_000)));
        assert_eq!(parse_duration("PT1H30M"), Ok(ms(5_400_000)));
        assert_eq!(parse_duration("PT0.5S"), Ok(ms(500)));
        assert!(parse_duration("PT").is_err());
        assert!(parse_duration("P").is_err());
    }

    #[test]
    fn duration_errors_have_flinks_text() {
        assert_eq!(
            parse_duration(" "),
            Err("argument is an empty- or whitespace-only string".into())
        );
        let e = parse_duration("1.5s").unwrap_err();
        assert!(
            e.starts_with("Time interval unit label '.5s' does not match"),
            "{e}"
        );
        assert!(e.contains("MINUTES: (min | m | minute | minutes)"), "{e}");
        let e = parse_duration("-1s").unwrap_err();
        assert!(e.starts_with("text does not start with a number"), "{e}");
        let e = parse_duration("99999999999999999999999").unwrap_err();
        assert!(e.contains("numeric overflow"), "{e}");
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("1 h 30 parsecs").is_err());
        assert!(parse_duration("10 mins").is_err());
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("1024"), Ok(1024));
        assert_eq!(parse_memory("20kb"), Ok(20 * 1024));
        assert_eq!(parse_memory("20 KB"), Ok(20 * 1024));
        assert_eq!(parse_memory("1 mb"), Ok(1 << 20));
        assert_eq!(parse_memory("2g"), Ok(2 << 30));
        assert_eq!(parse_memory("1 tebibytes"), Ok(1 << 40));
        assert_eq!(parse_memory("100 bytes"), Ok(100));
        let e = parse_memory("20 KiB").unwrap_err();
        assert!(
            e.starts_with("Memory size unit 'kib' does not match any of the recognized units"),
            "{e}"
        );
        assert_eq!(
            parse_memory("-1"),
            Err("text does not start with a number".into())
        );
        assert!(parse_memory("1.5mb").is_err());
        assert!(parse_memory("99999999999 tb")
            .unwrap_err()
            .contains("overflow"));
    }

    #[test]
    fn memory_format() {
        assert_eq!(format_memory(20480), "20 kb");
        assert_eq!(format_memory(1 << 20), "1 mb");
        assert_eq!(format_memory(100), "100 bytes");
    }

    #[test]
    fn bools_and_enums() {
        assert_eq!(parse_bool("TRUE"), Some(true));
        assert_eq!(parse_bool("False"), Some(false));
        assert_eq!(parse_bool("yes"), None);
        assert_eq!(parse_bool("1"), None);
        let names = &["EXACTLY_ONCE", "AT_LEAST_ONCE"];
        assert_eq!(parse_enum("exactly_once", names), Some(0));
        assert_eq!(parse_enum("At_Least_Once", names), Some(1));
        assert_eq!(parse_enum("at-least-once", names), None);
    }

    #[test]
    fn duration_format() {
        assert_eq!(format_duration(ms(600_000)), "10 min");
        assert_eq!(format_duration(ms(1500)), "1500 ms");
        assert_eq!(format_duration(ms(0)), "0 ms");
    }
}
