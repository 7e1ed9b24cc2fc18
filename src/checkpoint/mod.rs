//! Checkpoints (issue 3). Stub.
