//! Configuration. Stub: to be written.
