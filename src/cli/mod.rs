//! Subcommands.

pub mod check;
pub mod sim;
