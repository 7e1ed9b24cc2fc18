//! The service side of a running floe: the job registry, the REST API shaped like Flink's,
//! the Prometheus metrics and the web dashboard (`floe serve` comes later).
//!
//! - `registry`: the jobs of this process and their command channels.
//! - `rest`: the axum router, Flink's paths and JSON, the token check, [`rest::serve`].
//! - `metrics`: `/metrics` in Prometheus' text format.
//! - `dashboard`: the web page at `/` and `/assets/*`, built into the binary.
//!
//! Nothing here runs a job: the job's driver registers it and answers its commands.

pub mod dashboard;
pub mod metrics;
pub mod registry;
pub mod rest;

pub use registry::{JobCommand, JobRegistration, JobRegistry, JobState, JobView};
pub use rest::{router, serve, ApiState, RestOptions, RestServer, ServeError};
