//! Sinks: operators that write records out and produce none.

pub mod blackhole;
pub mod file;
pub mod print;
