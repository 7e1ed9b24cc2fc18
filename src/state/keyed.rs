//! The keyed value store of aggregates. Stub: to be written.
