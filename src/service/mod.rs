//! The service side of a running floe: the job registry, the REST API shaped like Flink's,
//! the Prometheus metrics, the web dashboard, and `floe serve`'s supervisor.
//!
//! - `registry`: the jobs of this process and their command channels.
//! - `rest`: the axum router, Flink's paths and JSON, the token check, [`rest::serve`].
//! - `metrics`: `/metrics` in Prometheus' text format.
//! - `console`: lines for people on stderr, as text or JSON log lines.
//! - `process`: this process's memory, CPU and open files, for the metrics.
//! - `pipelines`: `floe serve`'s pipelines (one per file) as the API shows them, readiness.
//! - `dashboard`: the web page at `/` and `/assets/*`, built into the binary.
//! - `supervisor`: starting a job (shared by `floe run` and `floe serve`), and `floe serve`'s
//!   jobs by pipeline file: reloads, submissions, shutdown with savepoints, resume at start.
//! - `watcher`: the pipeline directory followed by content hash.
//! - `sdnotify`: systemd's notify protocol.
//! - `signals`: SIGINT/SIGTERM/SIGHUP.
//!
//! Nothing here but `supervisor` starts or stops a job: the job's driver registers it and
//! answers its commands.

pub mod console;
pub mod dashboard;
pub mod metrics;
pub mod pipelines;
pub mod process;
pub mod registry;
pub mod rest;
pub mod sdnotify;
pub mod signals;
pub mod supervisor;
pub mod watcher;

pub use registry::{JobCommand, JobRegistration, JobRegistry, JobState, JobView};
pub use rest::{router, serve, ApiState, RestOptions, RestServer, ServeError};
