//! What the leader knows about each follower's log, and how fast it may send to it.

use std::collections::VecDeque;

use crate::types::Index;

/// How the leader currently replicates to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// The follower's position is unknown: send one append per heartbeat interval and wait.
    Probe,
    /// The follower is in sync: send optimistically, up to the in-flight window.
    Replicate,
    /// The follower needs the snapshot at this index; nothing else is sent until it reports.
    Snapshot {
        /// Index of the snapshot being sent.
        index: Index,
    },
}

/// Appends sent but not acknowledged, bounded so a slow follower cannot make the leader
/// buffer without limit. Each item is the last index of one append message.
#[derive(Clone, Debug)]
pub struct Inflights {
    last_indexes: VecDeque<Index>,
    messages_max: usize,
}

impl Inflights {
    /// An empty window of `messages_max` messages.
    pub fn new(messages_max: usize) -> Self {
        assert!(messages_max > 0, "the in-flight window must hold at least one message");
        Inflights { last_indexes: VecDeque::with_capacity(messages_max), messages_max }
    }

    /// True if no more appends may be sent.
    pub fn is_full(&self) -> bool {
        self.last_indexes.len() >= self.messages_max
    }

    /// Records an append ending at `last_index`.
    pub fn add(&mut self, last_index: Index) {
        assert!(!self.is_full(), "in-flight window overflow");
        debug_assert!(self.last_indexes.back().is_none_or(|back| *back <= last_index));
        self.last_indexes.push_back(last_index);
    }

    /// Frees every append acknowledged by an ack of `index`.
    pub fn free_to(&mut self, index: Index) {
        while self.last_indexes.front().is_some_and(|front| *front <= index) {
            self.last_indexes.pop_front();
        }
    }

    /// Frees the oldest message (its answer is presumed lost).
    pub fn free_first(&mut self) {
        self.last_indexes.pop_front();
    }

    /// Frees everything (on a state change).
    pub fn reset(&mut self) {
        self.last_indexes.clear();
    }

    /// Number of appends in flight.
    pub fn len(&self) -> usize {
        self.last_indexes.len()
    }

    /// True if nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.last_indexes.is_empty()
    }
}

/// The leader's view of one follower (§5.3: `next_index`, `match_index`) plus flow control.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Highest index known replicated on the follower.
    pub match_index: Index,
    /// Next index to send.
    pub next_index: Index,
    /// Replication mode.
    pub state: ProgressState,
    /// In Probe: an append was sent this heartbeat interval; wait for an answer or the next heartbeat.
    pub probe_sent: bool,
    /// In-flight appends (Replicate).
    pub inflights: Inflights,
    /// Heard from this follower since the last check-quorum round.
    pub recent_active: bool,
    /// True for learners: they replicate but never vote or count for commit.
    pub is_learner: bool,
    /// Latest heartbeat round this follower echoed (ReadIndex and lease confirmation).
    pub heartbeat_round_acked: u64,
    /// Leader's tick count when the pending snapshot was sent (to retry a lost one).
    pub snapshot_sent_tick: u64,
}

impl Progress {
    /// A follower about which nothing is known, probing from `next_index`.
    pub fn new(next_index: Index, inflight_messages_max: usize, is_learner: bool) -> Self {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflights: Inflights::new(inflight_messages_max),
            recent_active: false,
            is_learner,
            heartbeat_round_acked: 0,
            snapshot_sent_tick: 0,
        }
    }

    fn reset_state(&mut self, state: ProgressState) {
        self.state = state;
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// Back to probing from just after the match index.
    pub fn become_probe(&mut self) {
        if let ProgressState::Snapshot { index } = self.state {
            // The snapshot may have arrived; probe after whichever is further.
            self.reset_state(ProgressState::Probe);
            self.next_index = (self.match_index + 1).max(index + 1);
        } else {
            self.reset_state(ProgressState::Probe);
            self.next_index = self.match_index + 1;
        }
    }

    /// The snapshot did not arrive: probe again from just after the match index.
    pub fn abandon_snapshot(&mut self) {
        self.reset_state(ProgressState::Probe);
        self.next_index = self.match_index + 1;
    }

    /// Start streaming appends.
    pub fn become_replicate(&mut self) {
        self.reset_state(ProgressState::Replicate);
        self.next_index = self.match_index + 1;
    }

    /// Stop appends until the snapshot at `index` is reported.
    pub fn become_snapshot(&mut self, index: Index) {
        self.reset_state(ProgressState::Snapshot { index });
    }

    /// A successful ack up to `index`. Returns true if it told us something new.
    pub fn maybe_update(&mut self, index: Index) -> bool {
        let updated = index > self.match_index;
        if updated {
            self.match_index = index;
            self.probe_sent = false;
        }
        self.next_index = self.next_index.max(index + 1);
        updated
    }

    /// A rejection of an append at `rejected`; `hint` is where to probe next. Returns false if
    /// the rejection is stale (an answer to an older message) and was ignored.
    pub fn maybe_decrease_to(&mut self, rejected: Index, hint: Index) -> bool {
        if self.state == ProgressState::Replicate {
            // Only an answer about what we know is unmatched counts; older answers are stale.
            if rejected <= self.match_index {
                return false;
            }
            self.next_index = self.match_index + 1;
            return true;
        }
        // In Probe only the answer to the latest probe (at next_index - 1) counts.
        if self.next_index == 0 || self.next_index - 1 != rejected {
            return false;
        }
        self.next_index = (hint + 1).min(rejected).max(self.match_index + 1);
        self.probe_sent = false;
        true
    }

    /// True if the leader must not send this follower more appends right now.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.is_full(),
            ProgressState::Snapshot { .. } => true,
        }
    }

    /// Records that an append ending at `last_index` was sent (with `entry_count` entries).
    pub fn sent_append(&mut self, last_index: Index, entry_count: usize) {
        match self.state {
            ProgressState::Replicate => {
                if entry_count > 0 {
                    self.next_index = last_index + 1;
                    self.inflights.add(last_index);
                }
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot { .. } => unreachable!("no appends while sending a snapshot"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicate_pauses_when_the_window_is_full_and_resumes_on_ack() {
        let mut progress = Progress::new(1, 2, false);
        progress.become_replicate();
        progress.sent_append(5, 5);
        progress.sent_append(9, 4);
        assert!(progress.is_paused());
        assert_eq!(progress.next_index, 10);
        progress.maybe_update(5);
        progress.inflights.free_to(5);
        assert!(!progress.is_paused());
    }

    #[test]
    fn probe_sends_one_message_at_a_time() {
        let mut progress = Progress::new(10, 4, false);
        assert!(!progress.is_paused());
        progress.sent_append(12, 3);
        assert!(progress.is_paused());
        assert_eq!(progress.next_index, 10, "probing does not advance optimistically");
    }

    #[test]
    fn stale_rejections_are_ignored() {
        let mut progress = Progress::new(10, 4, false);
        assert!(!progress.maybe_decrease_to(5, 2), "not the latest probe");
        assert!(progress.maybe_decrease_to(9, 3));
        assert_eq!(progress.next_index, 4);
        progress.match_index = 3;
        progress.become_replicate();
        assert!(!progress.maybe_decrease_to(2, 0), "below match: stale");
    }

    #[test]
    fn hint_never_moves_next_below_match() {
        let mut progress = Progress::new(10, 4, false);
        progress.match_index = 6;
        assert!(progress.maybe_decrease_to(9, 1));
        assert_eq!(progress.next_index, 7);
    }
}
