//! The daemon (`floe serve`), REST API, dashboard (later issues). Stub.
