//! # ballot-sim: the deterministic simulator
//!
//! Runs a whole cluster in one thread on virtual time, with one seeded random source for
//! everything: message delays, loss, duplication and reordering; partitions (splits, isolated
//! nodes, one-way cuts, bridges); crashes that lose unsynced writes and may tear the last one;
//! bits rotting in synced data; pauses; clock skew; membership changes; leader transfers. Each
//! node persists through the production write-ahead log (`ballot-storage`) on a `SimDisk`, so
//! every simulated crash exercises the real recovery code. Clients issue reads, writes and
//! compare-and-sets as real clients would and record a history.
//!
//! Checked while running: one leader per term, log matching, leader completeness, the same
//! entry applied at the same index everywhere. Checked at the end: after healing, a leader
//! exists, every client completes an operation and every member catches up within a bounded
//! virtual time; and the history is linearizable ([`ballot_check`]). A seed replays exactly.
//!
//! ```
//! let mut config = ballot_sim::SimConfig::new(7);
//! config.steps = 2_000;
//! let report = ballot_sim::run(config.clone());
//! assert!(report.violations.is_empty(), "{:?}", report.violations);
//! assert_eq!(report.trace_hash, ballot_sim::run(config).trace_hash);
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod atomic_commit;
pub mod client;
pub mod config;
pub mod invariants;
pub mod kv;
pub mod network;
pub mod node;
pub mod trace;
mod world;

#[cfg(test)]
mod tests;

pub use config::{Faults, SimConfig};
pub use world::{SimReport, World};

/// Runs one simulation.
pub fn run(config: SimConfig) -> SimReport {
    World::new(config).run()
}
