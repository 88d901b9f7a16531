//! # ballot-paxos: Paxos as a pure core
//!
//! No I/O, no clock, no threads, no global randomness, like `ballot-raft`.
//!
//! - [`single`]: single-decree Paxos's proposers, acceptors and learners.
//! - [`model`]: an explicit-state model checker that drives them (and a bounded model of
//!   Multi-Paxos's slots) through every interleaving with message loss, duplication and
//!   reordering, checking agreement and validity. `ballot model paxos` runs it.
//! - [`multi`]: Multi-Paxos as a replica engine with the contract of `ballot-raft`'s
//!   `RawNode` (ready/advance), checked in a simulated network with faults.
//! - [`pick()`]: the value a proposer must take after phase 1, shared by all of them, with the
//!   chapter's bug available as a test-only switch ([`Pick`]).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod ballot;
pub mod model;
pub mod multi;
mod pick;
pub mod single;

pub use ballot::{Ballot, Ballots};
pub use pick::{pick, pick_per_slot, Pick};
