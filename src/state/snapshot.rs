//! Encoding of keyed state snapshots: full and incremental (delta) blobs indexed by key
//! group. Stub: to be written (issue 3).
