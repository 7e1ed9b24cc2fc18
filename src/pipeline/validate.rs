//! Pipeline validation. Stub: to be written.
