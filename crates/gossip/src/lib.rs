//! `ballot-gossip`: how the machines of a fleet learn that others have failed, without a
//! coordinator, and share a small always-writable state. A pure core like `ballot-raft`: no
//! I/O, no clock, no threads, no global randomness; time arrives as ticks or readings, and
//! randomness from a seed.
//!
//! Built so far (issue 20, in progress): [`phi`], the accrual failure detector, and
//! [`version_vector`], the multi-writer values with siblings, and the core of [`swim`]
//! (probes, indirect probes, suspicion, refutation, piggybacked news). Lifeguard comes next.

pub mod phi;
pub mod swim;
pub mod version_vector;
