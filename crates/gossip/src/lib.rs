//! `ballot-gossip`: how the machines of a fleet learn that others have failed, without a
//! coordinator, and share a small always-writable state. A pure core like `ballot-raft`: no
//! I/O, no clock, no threads, no global randomness; time arrives as ticks, and randomness from
//! a seed.
//!
//! - [`swim`]: SWIM membership with Lifeguard's extensions, tags, leave, push-pull, user
//!   events and queries;
//! - [`phi`]: the phi accrual failure detector;
//! - [`version_vector`]: multi-writer values with siblings, gossiped by [`swim`];
//! - [`news`] and [`message`]: what members say to each other; [`codec`]: its wire format;
//! - [`sim`]: a deterministic fleet simulator with faults, the measurements and invariants
//!   `ballot sim --gossip` reports, and the all-to-all heartbeat baseline.

pub mod codec;
pub mod heartbeat;
pub mod message;
pub mod news;
pub mod phi;
pub mod sim;
pub mod swim;
pub mod version_vector;
