//! Stub: to be written (issue 3).
