//! Sources: operators without inputs.

pub mod datagen;
pub mod file;
pub mod socket;
