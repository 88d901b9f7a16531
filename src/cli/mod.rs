//! Subcommands.

pub mod check;
pub mod sim;
pub mod wal;
