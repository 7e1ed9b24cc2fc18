//! floe: stream pipelines declared in YAML, with Flink's checkpoint and savepoint model, in one
//! binary.
//!
//! # Layout
//! - [`cli`]: clap commands, rendering for humans and `--json`, exit codes; no engine logic.
//! - [`config`]: `conf/flink-conf.yaml` through figment (defaults < file < env < pipeline <
//!   `-D`), Flink 1.x/2.x aliases, Flink's value formats, the typed [`config::Config`] and
//!   where each value came from.
//! - [`pipeline`]: pipeline YAML → validated [`pipeline::Pipeline`] → execution plan.
//! - [`operators`]: one file per `type:`; the closed catalogue of sources, transforms, sinks.
//! - [`record`]: batches of records as columns; the data model operators and runtime share.
//! - [`runtime`]: subtasks on tokio, bounded channels of batches, exchanges by key group,
//!   barrier alignment, job lifecycle. Knows no YAML.
//! - [`state`]: keyed state per operator subtask, key groups, snapshot encoding.
//! - [`checkpoint`]: coordinator, storage layout, `_metadata`, retention, restore mapping.
//! - [`service`]: the daemon (`floe serve`), REST API, dashboard, watcher, signals.
//! - [`stdio`]: floe's own lines on stdout and stderr; a closed pipe stops, never panics.
//! - [`textfile`]: reading a pipeline or conf file: regular files only, bounded in size.
//! - [`secrets`]: which settings are secrets, masking them, redacting known values from text.
//! - [`text`]: printable names and escaping untrusted text for log lines.
// `deny`, not `forbid`: a measured hot path may allow it locally, with a safety comment at
// the site; today that is only the cache prefetch of `state::keyed`.
#![deny(unsafe_code)]
// floe's own output goes through `stdio` (`outln!`, `errln!`): a closed pipe must not panic.
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod exit;
pub mod ids;
pub mod operators;
pub mod pipeline;
pub mod record;
pub mod runtime;
pub mod secrets;
pub mod service;
pub mod state;
pub mod stdio;
pub mod text;
pub mod textfile;

/// The allocator of the `floe` binary and of the benches (each declares it its
/// `#[global_allocator]`; in-process tests keep the system's, and may count with their own).
/// With glibc's malloc, freeing a checkpoint's copies on a thread of their own took the lock
/// of the job thread's arena, so the job waited; mimalloc frees across threads without a
/// lock, and the word count at 1M keys ran 15-18% faster with it (docs/benchmarks.md).
pub use mimalloc::MiMalloc as Allocator;
