//! The daemon (`floe serve`), REST API, dashboard.
//! - [`dashboard`]: the web page at `/` and `/assets/*`, built into the binary.

pub mod dashboard;
