//! Command-line interface. Stub: to be written.
