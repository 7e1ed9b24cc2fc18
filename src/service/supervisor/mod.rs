//! Starting jobs and, for `floe serve`, keeping one job per pipeline file in line with the
//! directory: new file → start; removed file → stop with a savepoint; edited file → validate,
//! stop with a savepoint, start the new version from it (or bring the old one back from the
//! same savepoint when the new one cannot restore); `flink-conf.yaml` edited → live keys to
//! every job, restart keys named in the log. Plus jobs submitted with `floe run -d`, and the
//! shutdown that stops every job with a final savepoint.
//!
//! - [`check`]: the one check of a pipeline before it runs (`floe validate`, `floe run` and
//!   `floe serve` all call it).
//! - [`launch`]: preparing and starting one job (`floe run` uses it too).
//! - [`conf`]: what a changed `flink-conf.yaml` does to running jobs.
//! - [`follow`]: the registry's view of a running job and its API commands.
//! - [`report`]: what a reload did, per pipeline.
//! - [`resume`]: where service savepoints go and where a pipeline resumes from.
//! - [`stop`]: stopping one job with a savepoint, bounded in time.
//! - [`submission`]: what a job submitted over the API may read and write.
//! - [`service`]: the actor that owns the jobs; every change goes through its queue, one at a
//!   time, so a reload never races another reload, a submission or the shutdown.
//! - `rescan`: what changed in the directory and the configuration; files sharing a name.
//! - `files`: a file's job started, stopped, replaced on probation, rolled back, held.
//! - [`probation`]: when a reloaded version has proved itself, or failed.
//! - `housekeeping`: job ends, user holds, history, savepoint retention, cleaning.
//! - `submitted`: jobs of `floe run -d`, remembered and resumed.
//! - [`memory`]: the state file that carries holds, submissions and savepoints over restarts.

pub mod check;
pub mod conf;
mod files;
pub mod follow;
mod housekeeping;
pub mod launch;
pub mod memory;
pub mod probation;
pub mod report;
mod rescan;
pub mod resume;
pub mod service;
pub mod stop;
pub mod submission;
mod submitted;

use files::spec_for;

pub use service::{ServeOptions, Supervisor, SupervisorHandle};
