//! Secrets: which settings hold one, how they are shown, and the values floe must never print.
//!
//! One rule decides what a secret is ([`is_secret_key`]): the REST token, the S3 keys, Kafka's
//! `sasl.password` and `ssl.key.password` (and its other credentials), and any key whose name
//! contains `password` or `secret`. It applies to configuration keys and to the `properties:`
//! a pipeline passes to librdkafka alike. Every output that shows such a setting shows
//! [`MASK`] instead of its value: `floe config`, the REST configuration routes, the dashboard
//! (which reads those routes).
//!
//! Text that is not a setting (an error from S3 or Kafka, a log line) can still quote a
//! secret. Every secret value floe reads is therefore remembered ([`remember`]) and
//! [`redact`] replaces it in logs, REST error fields and the errors `floe run` prints. Values
//! shorter than [`MIN_REDACTED_LEN`] are masked where they are shown as settings but not
//! searched for in free text, where they would garble every line that happens to contain them.
//! In JSON only string values are redacted ([`redact_json`]), never keys, so a short secret
//! cannot break an answer's structure.
//!
//! A leaf module: it knows no configuration type, only names and text.

use std::borrow::Cow;
use std::sync::RwLock;

/// What a secret value is shown as.
pub const MASK: &str = "******";

/// Secret values shorter than this are not searched for in free text.
pub const MIN_REDACTED_LEN: usize = 4;

/// Keys that hold a credential although their name says neither `password` nor `secret`.
const SECRET_NAMES: &[&str] = &[
    "rest.auth.token",
    "s3.access-key",
    "s3.secret-key",
    // librdkafka: an inline private key, and settings that embed credentials.
    "ssl.key.pem",
    "ssl_key",
    "sasl.oauthbearer.config",
    "sasl.jaas.config",
];

/// Name parts that make any key a secret (`sasl.password`, `ssl.key.password`,
/// `sasl.oauthbearer.client.secret`, `my.secret.thing`).
const SECRET_PARTS: &[&str] = &["password", "secret"];

/// Whether the setting `key` (a configuration key or a Kafka property) holds a secret.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.trim().to_ascii_lowercase();
    SECRET_NAMES.contains(&key.as_str()) || SECRET_PARTS.iter().any(|p| key.contains(p))
}

/// The value of `key` as any output may show it: [`MASK`] for a set secret.
pub fn shown<'a>(key: &str, value: &'a str) -> Cow<'a, str> {
    if is_secret_key(key) && !value.is_empty() {
        Cow::Borrowed(MASK)
    } else {
        Cow::Borrowed(value)
    }
}

/// Secret values seen so far, longest first (so that a secret containing another is replaced
/// whole).
static KNOWN: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remembers the value of `key` if `key` holds a secret, so that [`redact`] hides it.
pub fn remember_setting(key: &str, value: &str) {
    if is_secret_key(key) {
        remember(value);
    }
}

/// Remembers a secret value, so that [`redact`] hides it from now on.
pub fn remember(value: &str) {
    let value = value.trim();
    if value.chars().count() < MIN_REDACTED_LEN {
        return;
    }
    let mut known = KNOWN.write().unwrap_or_else(|p| p.into_inner());
    if !known.iter().any(|k| k == value) {
        known.push(value.to_owned());
        known.sort_by_key(|k| std::cmp::Reverse(k.len()));
    }
}

/// `text` with every remembered secret value replaced by [`MASK`].
pub fn redact(text: &str) -> Cow<'_, str> {
    let known = KNOWN.read().unwrap_or_else(|p| p.into_inner());
    if !known.iter().any(|k| text.contains(k.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_owned();
    for k in known.iter() {
        if out.contains(k.as_str()) {
            out = out.replace(k.as_str(), MASK);
        }
    }
    Cow::Owned(out)
}

/// Redacts every string in a JSON value (keys stay as they are); whether anything changed.
pub fn redact_json(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::String(s) => match redact(s) {
            Cow::Borrowed(_) => false,
            Cow::Owned(r) => {
                *s = r;
                true
            }
        },
        Value::Array(items) => items.iter_mut().fold(false, |c, i| redact_json(i) | c),
        Value::Object(map) => map.values_mut().fold(false, |c, i| redact_json(i) | c),
        _ => false,
    }
}

/// Whether any secret value is known (nothing to redact otherwise).
pub fn any_known() -> bool {
    !KNOWN.read().unwrap_or_else(|p| p.into_inner()).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_list_of_secret_keys() {
        for k in [
            "rest.auth.token",
            "s3.access-key",
            "s3.secret-key",
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "sasl.oauthbearer.client.secret",
            "my.Secret.thing",
            "ssl.key.pem",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "rest.auth.token-file",
            "s3.endpoint",
            "sasl.username",
            "bootstrap.servers",
            "execution.checkpointing.dir",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn shown_masks_set_secrets_only() {
        assert_eq!(shown("sasl.password", "hunter2"), MASK);
        assert_eq!(shown("sasl.password", ""), "");
        assert_eq!(shown("sasl.username", "bob"), "bob");
    }

    #[test]
    fn redacts_remembered_values_whole() {
        remember("redact-test-long-secret");
        remember("redact-test");
        remember("abc"); // too short to search for
        let t = "key redact-test-long-secret and redact-test, abc";
        assert_eq!(redact(t), format!("key {MASK} and {MASK}, abc"));
        assert!(matches!(redact("nothing here"), Cow::Borrowed(_)));
        let mut v = serde_json::json!({"redact-test": ["x redact-test y", 3]});
        assert!(redact_json(&mut v));
        assert_eq!(
            v,
            serde_json::json!({"redact-test": [format!("x {MASK} y"), 3]})
        );
    }
}
