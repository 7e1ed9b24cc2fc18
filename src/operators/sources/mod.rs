//! Sources: operators without inputs.

pub mod datagen;
pub mod file;
pub mod kafka;
mod kafka_discovery;
mod kafka_records;
pub mod position;
pub mod socket;
pub mod text;

pub use position::{KafkaOffset, SourcePosition};

use std::time::Duration;

/// Parse a duration setting in a pipeline: the same grammar as `flink-conf.yaml`'s durations
/// (`500` = milliseconds, `100 ms`, `10 s`, `1 min`, `PT10S`, `1m 30s`), so a value means the
/// same in both files.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    // Flink's own message lists every unit label; a pipeline error names the forms instead.
    crate::config::values::parse_duration(text).map_err(|_| {
        format!(
            "invalid duration `{}`; write a number of milliseconds (`500`), a number and unit (`100 ms`, `10 s`, `1 min`, `2 h`), or ISO-8601 (`PT10S`)",
            text.trim()
        )
    })
}

/// serde glue for duration settings: a number (milliseconds) or a string.
pub(crate) mod duration_serde {
    use std::time::Duration;

    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Millis(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match <Raw as serde::Deserialize>::deserialize(d)? {
            Raw::Millis(ms) => Ok(Duration::from_millis(ms)),
            Raw::Text(t) => super::parse_duration(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// serde glue for an optional duration setting (`idle-timeout: 30 s`).
pub(crate) mod opt_duration_serde {
    use std::time::Duration;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        super::duration_serde::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_in_flink_forms() {
        assert_eq!(parse_duration("500"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("100 ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("10 s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1 min"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("PT10S"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_duration("1 µs"), Ok(Duration::from_micros(1)));
        assert!(parse_duration("1.5s").is_err());
        let err = parse_duration("soon").unwrap_err();
        assert!(err.contains("invalid duration `soon`"), "{err}");
    }
}
