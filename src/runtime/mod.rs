//! The runtime. Stub: to be written.
