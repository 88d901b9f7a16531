//! # ballot-raft: a pure, deterministic Raft consensus core
//!
//! No I/O, no clock, no threads, no global randomness. Time arrives as [`RawNode::tick`]
//! (elections, heartbeats) and as a [`Monotonic`] clock reading passed to [`RawNode::ready`]
//! and [`RawNode::take_messages`] (the leader lease, which must not depend on ticks arriving on
//! time); randomness comes from [`Config::seed`]. Everything the node must do comes out of a
//! [`Ready`], which the caller carries out in order and acknowledges with [`RawNode::advance`]:
//!
//! 1. send `ready.messages` (they may leave before anything is durable);
//! 2. persist `ready.snapshot`, `ready.entries` (replacing any stored entry at or after the
//!    first one's index) and `ready.hard_state`, and sync;
//! 3. only then send `ready.messages_after_persist` (votes and append acks promise durability);
//! 4. install the snapshot, apply `ready.committed_entries` in order, serve `ready.read_states`
//!    once the applied index reaches theirs;
//! 5. call `advance`.
//!
//! The node may be stepped and ticked between `ready` and `advance` (while the disk works);
//! a new `Ready` is only produced after `advance`.
//!
//! What a driver owes the core in time (`docs/raft.md`, "Time and leases"): one `tick` per tick
//! interval of its monotonic clock, and after a stall every tick it missed, before anything else
//! it received meanwhile; and to `ready` and `take_messages`, a reading of that clock taken for
//! the call, never going back. Late ticks only make elections and check-quorum late; the
//! lease is measured on the clock readings, so a driver that falls behind cannot stretch it.
//!
//! ```
//! use ballot_raft::{Config, ConfState, RawNode};
//! use ballot_raft::Monotonic;
//! let mut node = RawNode::new(Config::new(1), ConfState::with_voters([1])).unwrap();
//! let mut clock_ns = 0;
//! while node.raft().soft_state().role != ballot_raft::Role::Leader {
//!     node.tick();
//!     clock_ns += 100_000_000; // one tick of the default 100 ms
//! }
//! node.propose(b"x=1".to_vec()).unwrap();
//! let mut applied = Vec::new();
//! for _ in 0..3 {
//!     if !node.has_ready() { break; }
//!     let ready = node.ready(Monotonic::from_nanos(clock_ns));
//!     // (persist ready.entries and ready.hard_state here, then send and apply)
//!     applied.extend(ready.committed_entries.iter().map(|e| e.data.clone()));
//!     node.advance();
//! }
//! assert!(applied.contains(&b"x=1".to_vec()));
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod config;
pub mod forwarded;
pub mod hlc;
mod log;
pub mod membership;
mod progress;
pub mod quorum;
mod raft;
mod raw_node;
pub mod rng;
mod types;

#[cfg(test)]
mod tests;

pub use config::Config;
#[cfg(feature = "fault-injection")]
pub use config::InjectedBug;
pub use log::RaftLog;
pub use progress::{Inflights, Progress, ProgressState};
pub use raft::Raft;
pub use raw_node::{RawNode, Ready, RestartState};
pub use types::*;

/// Expected refusals and bad input; broken invariants panic instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// This node is not the leader; `leader` is the one it knows of.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The known leader, if any.
        leader: Option<NodeId>,
    },
    /// The leader refused the proposal for the reason given; retry later.
    #[error("proposal dropped: {0}")]
    ProposalDropped(String),
    /// The leader's next timestamp would be ahead of its wall clock by more than the bound.
    #[error(
        "clock skew: the next timestamp would be {ahead_ms} ms ahead of the leader's wall clock (bound {max_ms} ms)"
    )]
    ClockSkew {
        /// How far ahead, ms.
        ahead_ms: u64,
        /// The bound ([`Config::max_clock_skew_ms`]).
        max_ms: u64,
    },
    /// A membership change is already pending, or this leader has not committed an entry yet.
    #[error("a membership change is pending")]
    ConfChangePending,
    /// The membership change is not valid against the current configuration.
    #[error("invalid membership change: {0}")]
    InvalidConfChange(String),
    /// A conf-change payload could not be decoded.
    #[error("malformed membership change")]
    MalformedConfChange,
    /// Leadership cannot move to this node (not a voter).
    #[error("cannot transfer leadership to {0}: not a voter")]
    InvalidTransfer(NodeId),
    /// A snapshot or compaction point is older than what the log already has.
    #[error("snapshot out of date")]
    SnapshotOutOfDate,
    /// Compaction asked for entries that are not yet applied or durable.
    #[error("cannot compact to {index}: only {applied} applied and durable")]
    CompactBeyondApplied {
        /// Requested index.
        index: Index,
        /// Highest index that may be compacted.
        applied: Index,
    },
    /// A message with a zero sender or for another node.
    #[error("misaddressed message from {from} to {to}")]
    MisaddressedMessage {
        /// Sender.
        from: NodeId,
        /// Addressee.
        to: NodeId,
    },
    /// Configuration values are inconsistent.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// The request needs something this consensus engine does not do (a replica running
    /// another engine than Raft behind the same contract says what).
    #[error("{0}")]
    Unsupported(String),
}
