//! Transforms: operators that read records and produce records.

pub mod assign;
pub mod expr;
pub mod filter;
pub mod flat_map;
pub mod key_by;
pub mod map;
pub mod parse;
pub mod side_output;
pub mod window;
