//! Tunables of one Raft node. Every limit is here, named `*_max`.

use crate::types::NodeId;
use crate::Error;

/// A deliberate protocol bug, switched on only by tests that prove the simulator catches it.
#[cfg(feature = "fault-injection")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectedBug {
    /// Grant votes without the §5.4.1 up-to-date check.
    VoteIgnoresLog,
    /// Commit entries of earlier terms by counting replicas (the §5.4.2 / Figure 8 mistake),
    /// in an implementation without the new leader's no-op (which otherwise hides it).
    CommitPreviousTerm,
    /// Answer ReadIndex at once, without confirming leadership.
    ReadIndexWithoutQuorum,
}

/// Configuration of one Raft node.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id (non-zero).
    pub id: NodeId,
    /// Minimum election timeout in ticks; each timeout is drawn from `[election_ticks, 2 * election_ticks)`.
    pub election_ticks: u32,
    /// Ticks between leader heartbeats; must be less than `election_ticks`.
    pub heartbeat_ticks: u32,
    /// Run a pre-vote round before bumping the term (thesis §9.6).
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum for `election_ticks` steps down; followers that
    /// heard from a leader within `election_ticks` ignore vote requests (thesis §6.2).
    pub check_quorum: bool,
    /// Serve ReadIndex from the leader lease, without a heartbeat round. Needs `check_quorum`
    /// here and on every voter (a voter that does not honour leases may elect a new leader
    /// while this one's lease runs), and clocks whose rates differ by less than the drift bound.
    /// See `docs/raft.md`, "Leases".
    pub lease_read: bool,
    /// Ticks subtracted from the lease to cover clock drift between nodes and the phase of a
    /// follower's ticks (a follower's first tick after a heartbeat may come at once): at least 1.
    pub lease_drift_ticks: u32,
    /// Length of a tick on the driver's monotonic clock, in nanoseconds. The lease is measured
    /// on that clock, not in ticks: a driver that falls behind on ticks (a stalled process)
    /// must not make a lease last longer. A lease confirmed by a heartbeat round sent at `t`
    /// holds until `t + (election_ticks - lease_drift_ticks) * tick_interval_ns`.
    pub tick_interval_ns: u64,
    /// Append messages in flight per follower.
    pub inflight_messages_max: usize,
    /// Bytes of entries in one append message (at least one entry is always sent).
    pub append_bytes_max: u64,
    /// Bytes of committed entries handed out in one `Ready` (at least one entry).
    pub apply_bytes_max: u64,
    /// Bytes of proposed but uncommitted entries the leader accepts before refusing proposals.
    pub uncommitted_bytes_max: u64,
    /// Seed of the node's random source (election timeouts).
    pub seed: u64,
    /// A follower that knows the leader forwards proposals to it instead of refusing them with
    /// `NotLeader` (etcd's default). The outcome reaches the proposer when it applies the entry.
    /// Forwarded proposals are held across a leader change rather than dropped, but one can
    /// still be lost with a crashed member, so callers need a timeout, as with any proposal.
    /// Duplicated messages are recognised by payload, so forwarded payloads must be unique
    /// (ballot's carry a request id).
    pub forward_proposals: bool,
    /// The leader refuses proposals while its next entry stamp ([`crate::hlc`]) would be ahead
    /// of its wall clock by more than this many milliseconds; 0 turns the check off.
    pub max_clock_skew_ms: u64,
    /// Test-only protocol bug.
    #[cfg(feature = "fault-injection")]
    pub injected_bug: Option<InjectedBug>,
}

impl Config {
    /// Defaults modelled on etcd: with a 100 ms tick, heartbeat 100 ms and election 1 s.
    pub fn new(id: NodeId) -> Self {
        Config {
            id,
            election_ticks: 10,
            heartbeat_ticks: 1,
            pre_vote: true,
            check_quorum: true,
            lease_read: false,
            lease_drift_ticks: 2,
            tick_interval_ns: 100_000_000,
            inflight_messages_max: 256,
            append_bytes_max: 1024 * 1024,
            apply_bytes_max: 16 * 1024 * 1024,
            uncommitted_bytes_max: 64 * 1024 * 1024,
            seed: id,
            forward_proposals: true,
            max_clock_skew_ms: 0,
            #[cfg(feature = "fault-injection")]
            injected_bug: None,
        }
    }

    /// Checks the values against each other.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |why: &str| Err(Error::InvalidConfig(why.to_string()));
        if self.id == crate::types::NO_NODE {
            return invalid("id must be non-zero");
        }
        if self.heartbeat_ticks == 0 || self.heartbeat_ticks >= self.election_ticks {
            return invalid("need 0 < heartbeat_ticks < election_ticks");
        }
        if self.lease_read && !self.check_quorum {
            return invalid("lease_read needs check_quorum");
        }
        if self.lease_read && (self.lease_drift_ticks == 0 || self.lease_drift_ticks >= self.election_ticks) {
            return invalid("lease_read needs 0 < lease_drift_ticks < election_ticks");
        }
        if self.lease_read && self.tick_interval_ns == 0 {
            return invalid("lease_read needs tick_interval_ns");
        }
        if self.inflight_messages_max == 0 {
            return invalid("inflight_messages_max must be positive");
        }
        Ok(())
    }

    #[cfg(feature = "fault-injection")]
    pub(crate) fn has_bug(&self, bug: InjectedBug) -> bool {
        self.injected_bug == Some(bug)
    }

    #[cfg(not(feature = "fault-injection"))]
    #[inline(always)]
    pub(crate) fn has_bug(&self, _bug: InjectedBug) -> bool {
        false
    }
}

/// Without the feature the bugs still have names, so call sites need no `cfg`, but no
/// `Config` can carry one.
#[cfg(not(feature = "fault-injection"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InjectedBug {
    VoteIgnoresLog,
    CommitPreviousTerm,
    ReadIndexWithoutQuorum,
}
