//! Checkpoint and savepoint storage on S3-compatible object stores (`s3://bucket/prefix`,
//! also `s3a://` and `s3p://` as Flink users write them), through opendal.
//!
//! The layout is the local one (`<prefix>/<job-id>/chk-<n>/_metadata`, `shared/`, savepoint
//! directories); an object store has no directories, so "creating" one is a no-op and a
//! directory exists when some object is under its prefix. Durability comes from the store: an
//! object exists once its PUT returned. `_metadata` is written last with a create-only
//! conditional PUT (`If-None-Match: *`), so it is never replaced: a second writer of the same
//! `_metadata` is refused.
//!
//! Faults: every request goes through opendal's timeout layer (a request that hangs becomes
//! an error) and retry layer (temporary errors retried with exponential backoff and jitter,
//! [`RETRY_MAX_TIMES`] times); what still fails is returned as a [`CheckpointError`], which
//! fails the checkpoint and counts towards `tolerable-failed-checkpoints`.
//!
//! opendal is async; the storage functions are blocking (they run on `spawn_blocking` threads
//! or in CLI commands). Requests run on a small runtime of this module's own, so slow storage
//! never occupies the job's worker threads, and a blocking caller just waits for the answer.
//!
//! Where a bucket is reached (endpoint, region, credentials) comes from Flink's `s3.*` keys
//! and, for what they leave unset, the usual AWS environment ([`resolve_settings`]). The keys
//! belong to a location, not to the process: each job registers its checkpoint and savepoint
//! directories with its own keys ([`configure_root`]), so two pipelines of one `floe serve`
//! may use two endpoints or two sets of credentials; paths under no registered directory use
//! [`configure`]'s (the CLI verbs that run no job).

use super::backend::FreshFile;
use crate::checkpoint::CheckpointError;
use crate::config::S3Config;
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{ErrorKind, Operator};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

/// The schemes checkpoint and savepoint paths may have, for error messages.
pub const SUPPORTED_SCHEMES: &str =
    "file:// (or a plain local path), s3://bucket/prefix (also s3a://, s3p://)";

/// Schemes read as S3.
const S3_SCHEMES: &[&str] = &["s3", "s3a", "s3p"];

/// Retries of a request that failed with a temporary error (5xx, throttling, timeouts,
/// connection errors), with delays from [`RETRY_MIN_DELAY`] doubling up to [`RETRY_MAX_DELAY`]:
/// about 6 s of trying before a checkpoint write is given up.
pub const RETRY_MAX_TIMES: usize = 5;
const RETRY_MIN_DELAY: Duration = Duration::from_millis(200);
const RETRY_MAX_DELAY: Duration = Duration::from_secs(3);
/// A request (stat, delete, list page) that does not answer within this is failed (and
/// retried): a hung endpoint must not hold a checkpoint forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The same for each read or write of a body chunk.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `scheme` names an object store floe supports.
pub fn is_object_scheme(scheme: &str) -> bool {
    S3_SCHEMES.iter().any(|s| s.eq_ignore_ascii_case(scheme))
}

/// Where and how a bucket is reached: the `s3.*` keys, with the AWS environment for what they
/// leave unset.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub session_token: Option<String>,
    pub path_style: bool,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key", &self.access_key.as_ref().map(|_| "***"))
            .field("secret_key", &self.secret_key.as_ref().map(|_| "***"))
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .field("path_style", &self.path_style)
            .finish()
    }
}

/// The region when neither `AWS_REGION` nor `AWS_DEFAULT_REGION` says (what S3-compatible
/// servers accept and AWS routes from).
const DEFAULT_REGION: &str = "us-east-1";

/// `s3.*` over the AWS environment: endpoint from `s3.endpoint`, else `AWS_ENDPOINT_URL_S3`,
/// else `AWS_ENDPOINT_URL`; region from `AWS_REGION`, else `AWS_DEFAULT_REGION`, else
/// us-east-1; keys from `s3.access-key`/`s3.secret-key`, else `AWS_ACCESS_KEY_ID`/
/// `AWS_SECRET_ACCESS_KEY` (with `AWS_SESSION_TOKEN`). Without keys anywhere, opendal's
/// default chain (profile files, instance metadata) is asked.
pub fn resolve_settings(cfg: &S3Config, env: impl Fn(&str) -> Option<String>) -> S3Settings {
    let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    let from_keys = cfg.access_key.is_some() || cfg.secret_key.is_some();
    S3Settings {
        endpoint: cfg
            .endpoint
            .clone()
            .or_else(|| env("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env("AWS_ENDPOINT_URL")),
        region: env("AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| DEFAULT_REGION.to_string()),
        access_key: cfg.access_key.clone().or_else(|| env("AWS_ACCESS_KEY_ID")),
        secret_key: cfg
            .secret_key
            .clone()
            .or_else(|| env("AWS_SECRET_ACCESS_KEY")),
        // A session token belongs to the environment's keys, not to keys from the config.
        session_token: if from_keys {
            None
        } else {
            env("AWS_SESSION_TOKEN")
        },
        path_style: cfg.path_style_access,
    }
}

/// An `s3://bucket/key` URI split: scheme, bucket, key (no leading or trailing `/`, `//`
/// folded). `None` when it is no object URI; `Err` when it is one without a bucket.
pub fn split_uri(uri: &str) -> Option<Result<(String, String, String), String>> {
    let (scheme, rest) = uri.split_once("://")?;
    if !is_object_scheme(scheme) {
        return None;
    }
    let mut parts = rest.split('/').filter(|p| !p.is_empty());
    let Some(bucket) = parts.next() else {
        return Some(Err(format!(
            "'{uri}' names no bucket; use {}://bucket/prefix",
            scheme.to_ascii_lowercase()
        )));
    };
    let key = parts.collect::<Vec<_>>().join("/");
    Some(Ok((scheme.to_ascii_lowercase(), bucket.to_string(), key)))
}

/// The configuration [`configure`] was given (`None`: the AWS environment only): for paths
/// under no root of [`configure_root`].
static CONFIG: RwLock<Option<S3Config>> = RwLock::new(None);
/// `s3.*` settings by location, each given with the directory a job uses
/// ([`configure_root`]); the longest matching root decides.
static ROOTS: RwLock<Vec<Root>> = RwLock::new(Vec::new());
/// One operator per bucket and settings, built on first use.
static BUCKETS: Mutex<Option<BucketCache>> = Mutex::new(None);

/// Open buckets by name and settings.
type BucketCache = HashMap<(String, S3Config), Arc<Bucket>>;

/// A location and the `s3.*` settings that reach it.
#[derive(Debug, Clone)]
struct Root {
    bucket: String,
    /// Key prefix, no leading or trailing `/`; empty for the whole bucket.
    prefix: String,
    config: S3Config,
    /// Who registered it (pipeline names), for the message of a conflict.
    owners: Vec<String>,
}

impl Root {
    fn holds(&self, bucket: &str, key: &str) -> bool {
        self.bucket == bucket
            && (self.prefix.is_empty()
                || key == self.prefix
                || key
                    .strip_prefix(&self.prefix)
                    .is_some_and(|r| r.starts_with('/')))
    }
}

/// Sets how buckets are reached (Flink's `s3.*` keys) for paths under no root of
/// [`configure_root`]: what the CLI verbs that run no job use (`floe inspect s3://…`).
pub fn configure(cfg: &S3Config) {
    let mut config = CONFIG.write().unwrap_or_else(|p| p.into_inner());
    *config = Some(cfg.clone());
}

/// Makes `cfg` the settings of every path under `dir` (an `s3://bucket/prefix`; local
/// directories are ignored), for `owner` (a job's pipeline name). Each job's checkpoint and
/// savepoint directories are registered with that job's own `s3.*`, so jobs with different
/// endpoints or credentials each reach their own storage. The same owner replaces its
/// settings (an edited pipeline); another owner with other settings for the same location is
/// refused: one location is one storage.
pub fn configure_root(dir: &str, cfg: &S3Config, owner: &str) -> Result<(), CheckpointError> {
    let Some(parsed) = split_uri(dir) else {
        return Ok(());
    };
    let (_, bucket, prefix) = parsed.map_err(CheckpointError::Refused)?;
    let mut roots = ROOTS.write().unwrap_or_else(|p| p.into_inner());
    match roots
        .iter_mut()
        .find(|r| r.bucket == bucket && r.prefix == prefix)
    {
        Some(r) if r.config == *cfg => {
            if !r.owners.iter().any(|o| o == owner) {
                r.owners.push(owner.to_string());
            }
        }
        Some(r) if r.owners.iter().all(|o| o == owner) => {
            r.config = cfg.clone();
        }
        Some(r) => {
            return Err(CheckpointError::Refused(format!(
                "{dir} is already used by pipeline {} with other s3.* settings (endpoint {}); \
                 one location is one storage: give this pipeline its own prefix, or the same \
                 s3.* settings",
                r.owners.join(", "),
                r.config.endpoint.as_deref().unwrap_or("the AWS default")
            )))
        }
        None => roots.push(Root {
            bucket,
            prefix,
            config: cfg.clone(),
            owners: vec![owner.to_string()],
        }),
    }
    Ok(())
}

/// The settings for `key` in `bucket`: the longest registered root holding it, else the
/// process-wide ones of [`configure`].
fn settings_for(bucket: &str, key: &str) -> S3Config {
    let roots = ROOTS.read().unwrap_or_else(|p| p.into_inner());
    if let Some(r) = roots
        .iter()
        .filter(|r| r.holds(bucket, key))
        .max_by_key(|r| r.prefix.len())
    {
        return r.config.clone();
    }
    CONFIG
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_default()
}

/// A bucket: its operator (with retry and timeout layers) and its name for messages.
pub struct Bucket {
    op: Operator,
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bucket").finish_non_exhaustive()
    }
}

fn bucket(name: &str, key: &str) -> Result<Arc<Bucket>, CheckpointError> {
    let cfg = settings_for(name, key);
    let mut cache = BUCKETS.lock().unwrap_or_else(|p| p.into_inner());
    let cache = cache.get_or_insert_with(HashMap::new);
    let id = (name.to_string(), cfg);
    if let Some(b) = cache.get(&id) {
        return Ok(b.clone());
    }
    let settings = resolve_settings(&id.1, |k| std::env::var(k).ok());
    // Keys from the environment are secrets too: no log line or error may show them.
    for k in [
        &settings.access_key,
        &settings.secret_key,
        &settings.session_token,
    ]
    .into_iter()
    .flatten()
    {
        crate::secrets::remember(k);
    }
    let b = Arc::new(open_bucket(name, &settings)?);
    cache.insert(id, b.clone());
    Ok(b)
}

fn open_bucket(name: &str, s: &S3Settings) -> Result<Bucket, CheckpointError> {
    opendal::install_default();
    let mut builder = opendal::services::S3::default()
        .bucket(name)
        .root("/")
        .region(&s.region);
    if let Some(e) = &s.endpoint {
        builder = builder.endpoint(e);
    }
    if let Some(k) = &s.access_key {
        builder = builder.access_key_id(k);
    }
    if let Some(k) = &s.secret_key {
        builder = builder.secret_access_key(k);
    }
    if let Some(t) = &s.session_token {
        builder = builder.session_token(t);
    }
    if s.access_key.is_some() && s.secret_key.is_some() {
        // Static keys: asking instance metadata or profile files would only add latency.
        builder = builder.disable_config_load().disable_ec2_metadata();
    }
    if !s.path_style {
        builder = builder.enable_virtual_host_style();
    }
    let op = Operator::new(builder)
        .map_err(|e| {
            CheckpointError::Refused(format!(
                "cannot open S3 bucket '{name}': {e}; check s3.endpoint, s3.access-key and \
                 s3.secret-key (or AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
            ))
        })?
        // Timeout inside retry: a request that hangs is failed, then retried.
        .layer(
            TimeoutLayer::new()
                .with_timeout(REQUEST_TIMEOUT)
                .with_io_timeout(IO_TIMEOUT),
        )
        .layer(
            RetryLayer::new()
                .with_max_times(RETRY_MAX_TIMES)
                .with_min_delay(RETRY_MIN_DELAY)
                .with_max_delay(RETRY_MAX_DELAY)
                .with_factor(2.0)
                .with_jitter(),
        );
    Ok(Bucket { op })
}

/// The runtime object-storage requests run on: its own, so that the blocking callers (on
/// `spawn_blocking` threads of the job's runtime, or in a CLI command with no runtime) can
/// wait for a request without a runtime of theirs driving it.
fn runtime() -> Result<&'static tokio::runtime::Runtime, CheckpointError> {
    static RT: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("floe-storage")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| CheckpointError::Other(format!("cannot start the object-storage runtime: {e}")))
}

/// Runs `fut` on the storage runtime and waits for it. Callable from any thread, including
/// one inside another runtime (it never nests `block_on`).
fn block_on<T: Send + 'static>(
    fut: impl Future<Output = T> + Send + 'static,
) -> Result<T, CheckpointError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime()?.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| {
        CheckpointError::Other(
            "bug: an object-storage request panicked or its runtime shut down".into(),
        )
    })
}

/// An object or a "directory" (a prefix) in a bucket. The bucket's client is looked up at
/// each request, not when the path is parsed: the `s3.*` settings of a location are
/// registered by the job that uses it ([`configure_root`]), which may come later.
#[derive(Clone, PartialEq, Eq)]
pub struct ObjectPath {
    scheme: String,
    bucket_name: String,
    /// No leading or trailing `/`; empty for the bucket's root.
    key: String,
}

impl fmt::Debug for ObjectPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

impl ObjectPath {
    /// Parses `scheme://bucket/key`; `None` when `uri` is no object URI.
    pub fn parse(uri: &str) -> Option<Result<ObjectPath, CheckpointError>> {
        let parsed = split_uri(uri)?;
        Some(
            parsed
                .map_err(CheckpointError::Refused)
                .map(|(scheme, bucket_name, key)| ObjectPath {
                    scheme,
                    bucket_name,
                    key,
                }),
        )
    }

    /// `s3://bucket/key`, as floe prints and stores it.
    pub fn uri(&self) -> String {
        if self.key.is_empty() {
            format!("{}://{}", self.scheme, self.bucket_name)
        } else {
            format!("{}://{}/{}", self.scheme, self.bucket_name, self.key)
        }
    }

    /// The object `name` under this prefix.
    pub fn child(&self, name: &str) -> ObjectPath {
        let mut c = self.clone();
        let name = name.trim_matches('/');
        c.key = if self.key.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.key)
        };
        c
    }

    /// The last segment of the key.
    pub fn name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or("")
    }

    /// The prefix holding this object; `None` for the bucket's root.
    pub fn parent(&self) -> Option<ObjectPath> {
        if self.key.is_empty() {
            return None;
        }
        let mut p = self.clone();
        p.key = self.key.rsplit_once('/').map_or("", |(k, _)| k).to_string();
        Some(p)
    }

    /// The key as a directory, for listing: `a/b/` (`/` for the bucket's root).
    fn dir_key(&self) -> String {
        if self.key.is_empty() {
            "/".to_string()
        } else {
            format!("{}/", self.key)
        }
    }

    fn op(&self) -> Result<Operator, CheckpointError> {
        Ok(bucket(&self.bucket_name, &self.key)?.op.clone())
    }

    fn err(&self, what: &str, e: opendal::Error) -> CheckpointError {
        CheckpointError::Io {
            context: format!("{what} '{}'", self.uri()),
            source: e.into(),
        }
    }

    /// Writes the object (replacing one of the same name; callers use fresh names).
    pub fn put(&self, bytes: Vec<u8>) -> Result<(), CheckpointError> {
        let (op, key) = (self.op()?, self.key.clone());
        block_on(async move { op.write(&key, bytes).await.map(|_| ()) })?
            .map_err(|e| self.err("cannot write", e))
    }

    /// Writes the object only if there is none of that name (a conditional PUT). `Ok(false)`
    /// when one exists with other contents. The same contents count as written: a retried
    /// PUT whose first attempt succeeded but whose answer was lost finds its own object.
    pub fn put_if_absent(&self, bytes: Vec<u8>) -> Result<bool, CheckpointError> {
        let (op, key) = (self.op()?, self.key.clone());
        let len = bytes.len();
        let written = block_on({
            let bytes = bytes.clone();
            async move { op.write_with(&key, bytes).if_not_exists(true).await }
        })?;
        match written {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::ConditionNotMatch => {
                let existing = self.get()?;
                Ok(existing.is_some_and(|b| b.len() == len && b == bytes))
            }
            Err(e) => Err(self.err("cannot write", e)),
        }
    }

    /// The object's bytes; `None` when there is no such object.
    pub fn get(&self) -> Result<Option<Vec<u8>>, CheckpointError> {
        let (op, key) = (self.op()?, self.key.clone());
        match block_on(async move { op.read(&key).await })? {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("cannot read", e)),
        }
    }

    /// Bytes `offset..offset + len` of the object.
    pub fn get_range(&self, offset: u64, len: u64) -> Result<Vec<u8>, CheckpointError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let (op, key) = (self.op()?, self.key.clone());
        block_on(async move { op.read_with(&key).range(offset..offset + len).await })?
            .map(|b| b.to_vec())
            .map_err(|e| self.err("cannot read", e))
    }

    /// The object's size; `None` when there is no such object.
    pub fn size(&self) -> Result<Option<u64>, CheckpointError> {
        let (op, key) = (self.op()?, self.key.clone());
        match block_on(async move { op.stat(&key).await })? {
            Ok(m) => Ok(Some(m.content_length())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("cannot read", e)),
        }
    }

    /// Deletes the object; one already gone is fine.
    pub fn delete(&self) -> Result<(), CheckpointError> {
        let (op, key) = (self.op()?, self.key.clone());
        match block_on(async move { op.delete(&key).await })? {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err("cannot delete", e)),
        }
    }

    /// Deletes every object under this prefix.
    pub fn delete_all(&self) -> Result<(), CheckpointError> {
        let (op, key) = (self.op()?, self.dir_key());
        if self.key.is_empty() {
            return Err(CheckpointError::Other(format!(
                "bug: refusing to delete the whole bucket '{}'",
                self.uri()
            )));
        }
        let deleted = block_on(async move {
            op.delete_with(&key).recursive(true).await?;
            // Stores with real directories (SeaweedFS's filer) keep an empty one behind
            // unless its marker is deleted too; elsewhere this deletes nothing.
            op.delete(&key).await
        })?;
        match deleted {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err("cannot delete", e)),
        }
    }

    /// The names directly under this prefix, with whether each is a "directory" (has objects
    /// below it). Empty when there is nothing.
    pub fn list(&self) -> Result<Vec<(String, bool)>, CheckpointError> {
        let (op, key) = (self.op()?, self.dir_key());
        let entries = block_on(async move { op.list(&key).await })?
            .map_err(|e| self.err("cannot list", e))?;
        let own = self.dir_key();
        Ok(entries
            .into_iter()
            .filter(|e| e.path() != own)
            .map(|e| {
                let dir = e.metadata().is_dir();
                (e.name().trim_end_matches('/').to_string(), dir)
            })
            .collect())
    }

    /// Whether any object is under this prefix.
    /// Reads the listing only until the first entry that is not the prefix itself (a whole
    /// `list` would page through every object under it).
    pub fn has_children(&self) -> Result<bool, CheckpointError> {
        let (op, key) = (self.op()?, self.dir_key());
        let found = block_on(async move {
            use futures_core::Stream;
            let mut lister = op.lister_with(&key).limit(2).await?;
            loop {
                let next =
                    std::future::poll_fn(|cx| std::pin::Pin::new(&mut lister).poll_next(cx)).await;
                match next {
                    None => return Ok(false),
                    Some(Err(e)) => return Err(e),
                    Some(Ok(entry)) if entry.path() != key => return Ok(true),
                    Some(Ok(_)) => {}
                }
            }
        })?
        .map_err(|e| self.err("cannot list", e))?;
        Ok(found)
    }
}

/// An object being written ([`super::backend::Storage::create_fresh`]).
struct ObjectFresh {
    path: ObjectPath,
    bytes: Vec<u8>,
}

impl FreshFile for ObjectFresh {
    fn write(&mut self, bytes: &[u8]) -> Result<(), CheckpointError> {
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<(), CheckpointError> {
        self.path.put(self.bytes)
    }
}

impl super::backend::Storage for ObjectPath {
    fn read(&self) -> Result<Option<Vec<u8>>, CheckpointError> {
        self.get()
    }
    fn read_range(&self, offset: u64, len: u64) -> Result<Vec<u8>, CheckpointError> {
        self.get_range(offset, len)
    }
    fn size(&self) -> Result<Option<u64>, CheckpointError> {
        ObjectPath::size(self)
    }
    /// An object is a file; a prefix with objects under it a directory.
    fn is_dir(&self) -> Result<Option<bool>, CheckpointError> {
        if ObjectPath::size(self)?.is_some() {
            return Ok(Some(false));
        }
        Ok(ObjectPath::has_children(self)?.then_some(true))
    }
    /// An object is durable once its PUT returned.
    fn write_fresh(&self, bytes: Vec<u8>) -> Result<(), CheckpointError> {
        self.put(bytes)
    }
    /// Held in memory and PUT whole at the end: an object appears all at once.
    fn create_fresh(&self) -> Result<Box<dyn FreshFile>, CheckpointError> {
        Ok(Box::new(ObjectFresh {
            path: self.clone(),
            bytes: Vec::new(),
        }))
    }
    fn write_once(&self, bytes: &[u8]) -> Result<bool, CheckpointError> {
        self.put_if_absent(bytes.to_vec())
    }
    fn list(&self) -> Result<Vec<(String, bool)>, CheckpointError> {
        ObjectPath::list(self)
    }
    fn has_children(&self) -> Result<bool, CheckpointError> {
        ObjectPath::has_children(self)
    }
    fn delete(&self) -> Result<(), CheckpointError> {
        ObjectPath::delete(self)
    }
    fn delete_all(&self) -> Result<(), CheckpointError> {
        ObjectPath::delete_all(self)
    }
    /// A prefix with no objects does not exist.
    fn remove_dir_if_empty(&self) -> bool {
        ObjectPath::has_children(self).is_ok_and(|any| !any)
    }
    /// No directories to create on an object store.
    fn create_dir(&self) -> Result<(), CheckpointError> {
        Ok(())
    }
    fn sync_dir(&self) -> Result<(), CheckpointError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn keys_win_over_the_environment() {
        let cfg = S3Config {
            endpoint: Some("http://127.0.0.1:9000".into()),
            access_key: Some("ak".into()),
            secret_key: Some("sk".into()),
            path_style_access: true,
        };
        let s = resolve_settings(
            &cfg,
            env(&[
                ("AWS_ENDPOINT_URL", "http://other"),
                ("AWS_ACCESS_KEY_ID", "envak"),
                ("AWS_SECRET_ACCESS_KEY", "envsk"),
                ("AWS_SESSION_TOKEN", "tok"),
            ]),
        );
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s.access_key.as_deref(), Some("ak"));
        assert_eq!(s.secret_key.as_deref(), Some("sk"));
        assert_eq!(
            s.session_token, None,
            "a token goes with the env's keys only"
        );
        assert_eq!(s.region, "us-east-1");
        assert!(s.path_style);
    }

    #[test]
    fn the_environment_fills_what_keys_leave_unset() {
        let s = resolve_settings(
            &S3Config::default(),
            env(&[
                ("AWS_ENDPOINT_URL", "http://e"),
                ("AWS_ENDPOINT_URL_S3", "http://s3e"),
                ("AWS_DEFAULT_REGION", "eu-west-1"),
                ("AWS_ACCESS_KEY_ID", "envak"),
                ("AWS_SECRET_ACCESS_KEY", "envsk"),
                ("AWS_SESSION_TOKEN", "tok"),
            ]),
        );
        assert_eq!(s.endpoint.as_deref(), Some("http://s3e"));
        assert_eq!(s.region, "eu-west-1");
        assert_eq!(s.access_key.as_deref(), Some("envak"));
        assert_eq!(s.session_token.as_deref(), Some("tok"));
        assert!(!s.path_style, "Flink's default: virtual-host style");
        let s = resolve_settings(
            &S3Config::default(),
            env(&[("AWS_REGION", "ap-south-1"), ("AWS_DEFAULT_REGION", "x")]),
        );
        assert_eq!(s.region, "ap-south-1");
        assert_eq!(s.endpoint, None);
        assert!(!format!("{s:?}").contains("envsk"));
    }

    #[test]
    fn uris_split_into_bucket_and_key() {
        assert_eq!(
            split_uri("s3://ckpt/a//b/").unwrap().unwrap(),
            ("s3".into(), "ckpt".into(), "a/b".into())
        );
        assert_eq!(
            split_uri("S3A://ckpt").unwrap().unwrap(),
            ("s3a".into(), "ckpt".into(), String::new())
        );
        assert!(split_uri("s3://").unwrap().is_err());
        assert!(split_uri("hdfs://nn/x").is_none());
        assert!(split_uri("/local/path").is_none());
    }

    #[test]
    fn settings_belong_to_the_location_they_were_given_with() {
        let a = S3Config {
            endpoint: Some("http://a".into()),
            ..S3Config::default()
        };
        let b = S3Config {
            endpoint: Some("http://b".into()),
            ..S3Config::default()
        };
        // Bucket names of this test only: the roots are process-wide.
        configure_root("s3://roots-test/ck", &a, "p1").unwrap();
        configure_root("s3://roots-test/ck/deeper", &b, "p2").unwrap();
        assert_eq!(settings_for("roots-test", "ck/job/chk-1"), a);
        assert_eq!(settings_for("roots-test", "ck/deeper/job"), b);
        assert_eq!(settings_for("roots-test", "ck"), a);
        // `ckx` is not under `ck`.
        assert_ne!(settings_for("roots-test", "ckx/job").endpoint, a.endpoint);
        // The same pipeline may change its settings; another one may not take the location.
        configure_root("s3://roots-test/ck", &b, "p1").unwrap();
        assert_eq!(settings_for("roots-test", "ck/job"), b);
        let e = configure_root("s3://roots-test/ck", &a, "p3").unwrap_err();
        assert!(e.to_string().contains("already used by pipeline p1"), "{e}");
        configure_root("s3://roots-test/ck", &b, "p3").unwrap();
        // Local directories take no settings.
        configure_root("/var/lib/floe/ck", &a, "p4").unwrap();
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let s = S3Settings {
            secret_key: Some("topsecret".into()),
            session_token: Some("tok".into()),
            ..S3Settings::default()
        };
        let d = format!("{s:?}");
        assert!(!d.contains("topsecret") && !d.contains("tok\""), "{d}");
    }
}
