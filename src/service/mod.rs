//! The service side of a running floe: the job registry, the REST API shaped like Flink's,
//! and the Prometheus metrics (the dashboard and `floe serve` come later).
//!
//! - `registry`: the jobs of this process and their command channels.
//! - `rest`: the axum router, Flink's paths and JSON, the token check, [`rest::serve`].
//! - `metrics`: `/metrics` in Prometheus' text format.
//!
//! Nothing here runs a job: the job's driver registers it and answers its commands.

pub mod metrics;
pub mod registry;
pub mod rest;

pub use registry::{JobCommand, JobRegistration, JobRegistry, JobState, JobView};
pub use rest::{router, serve, ApiState, RestOptions, RestServer, ServeError};
