//! Execution plan: chains, exchanges, parallelism. Stub: to be written.
