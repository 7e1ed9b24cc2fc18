//! Raw pipeline YAML and its parsing. Stub: to be written.
