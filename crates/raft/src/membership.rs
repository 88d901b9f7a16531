//! Membership by joint consensus (thesis §4.3, §6 of the extended paper).
//!
//! A configuration takes effect as soon as its entry is in a node's log, committed or not, as
//! the thesis prescribes; a truncated configuration entry rolls the configuration back. (Taking
//! effect only when *applied*, as some implementations do, lets a node that has not yet applied
//! C_old,new win an election with a C_old majority after C_new has committed entries without
//! it.) Every change enters the joint configuration C_old,new; once that entry commits, the
//! leader appends the empty change that leaves it for C_new. So no two majorities can ever
//! decide independently, whether a change adds, removes, promotes or replaces members.

use crate::types::{ConfChange, ConfChangeStep, ConfState, Entry, EntryKind, Index, SnapshotMeta};
use crate::Error;

/// Applies `change` to `conf`, returning the next configuration or why the change is invalid.
pub fn apply_change(conf: &ConfState, change: &ConfChange) -> Result<ConfState, Error> {
    let invalid = |why: String| Err(Error::InvalidConfChange(why));
    if change.steps.is_empty() {
        if !conf.is_joint() {
            return invalid("leaving a joint configuration that was never entered".into());
        }
        let mut next = conf.clone();
        next.voters_outgoing.clear();
        let demoted = std::mem::take(&mut next.learners_next);
        next.learners.extend(demoted);
        return Ok(next);
    }
    if let [ConfChangeStep::ForceAlone(id)] = change.steps[..] {
        return Ok(ConfState::with_voters([id]));
    }
    if change.steps.iter().any(|step| matches!(step, ConfChangeStep::ForceAlone(_))) {
        return invalid("a forced configuration has one step".into());
    }
    if conf.is_joint() {
        return invalid("a membership change is already in progress".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut next = conf.clone();
    next.voters_outgoing = conf.voters.clone();
    for step in &change.steps {
        let id = match *step {
            ConfChangeStep::AddVoter(id)
            | ConfChangeStep::AddLearner(id)
            | ConfChangeStep::Remove(id)
            | ConfChangeStep::ForceAlone(id) => id,
        };
        if !seen.insert(id) {
            return invalid(format!("node {id} appears twice in one change"));
        }
        match *step {
            ConfChangeStep::AddVoter(id) => {
                if next.voters.contains(&id) {
                    return invalid(format!("node {id} is already a voter"));
                }
                next.learners.remove(&id);
                next.voters.insert(id);
            }
            ConfChangeStep::AddLearner(id) => {
                if next.learners.contains(&id) {
                    return invalid(format!("node {id} is already a learner"));
                }
                // A demoted voter keeps voting in C_old until the joint configuration is left.
                if next.voters.remove(&id) {
                    next.learners_next.insert(id);
                } else {
                    next.learners.insert(id);
                }
            }
            ConfChangeStep::Remove(id) => {
                if !next.voters.remove(&id) && !next.learners.remove(&id) {
                    return invalid(format!("node {id} is not a member"));
                }
            }
            ConfChangeStep::ForceAlone(_) => unreachable!("checked above"),
        }
    }
    if next.voters.is_empty() {
        return invalid("the change would leave no voters".into());
    }
    Ok(next)
}

/// The configurations introduced by log entries after the snapshot, so the configuration at any
/// index can be found and a truncation can roll back.
#[derive(Clone, Debug, Default)]
pub struct ConfHistory {
    /// Configuration at the snapshot.
    base: ConfState,
    /// (index of the conf-change entry, configuration it introduced), ascending.
    changes: Vec<(Index, ConfState)>,
}

impl ConfHistory {
    /// A history that starts at the snapshot's configuration.
    pub fn new(base: ConfState) -> Self {
        ConfHistory { base, changes: Vec::new() }
    }

    /// The latest configuration: the one in force.
    pub fn current(&self) -> &ConfState {
        self.changes.last().map_or(&self.base, |(_, conf)| conf)
    }

    /// Index of the entry that introduced the current configuration (0 if it came with the snapshot).
    pub fn current_index(&self) -> Index {
        self.changes.last().map_or(0, |(index, _)| *index)
    }

    /// The configuration in force at `index`.
    pub fn at(&self, index: Index) -> &ConfState {
        self.changes.iter().rev().find(|(at, _)| *at <= index).map_or(&self.base, |(_, conf)| conf)
    }

    /// Forgets configurations from entries at or after `index` (they were truncated).
    pub fn truncate_from(&mut self, index: Index) {
        self.changes.retain(|(at, _)| *at < index);
    }

    /// Records the configuration changes in newly appended entries. Entries come from our own
    /// log (validated when proposed), so a malformed one means corrupted state.
    pub fn observe(&mut self, entries: &[Entry]) {
        for entry in entries.iter().filter(|e| e.kind == EntryKind::ConfChange) {
            let change = ConfChange::decode(&entry.data)
                .unwrap_or_else(|e| panic!("conf change entry {} is corrupt: {e}", entry.index));
            let next = apply_change(self.current(), &change)
                .unwrap_or_else(|e| panic!("conf change entry {} is invalid: {e}", entry.index));
            self.changes.push((entry.index, next));
        }
    }

    /// Folds configurations at or below a new snapshot into the base.
    pub fn compact(&mut self, index: Index) {
        self.base = self.at(index).clone();
        self.changes.retain(|(at, _)| *at > index);
    }

    /// Starts over from an installed snapshot.
    pub fn reset(&mut self, meta: &SnapshotMeta) {
        self.base = meta.conf_state.clone();
        self.changes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConfChangeStep::*;

    fn conf(voters: &[u64]) -> ConfState {
        ConfState::with_voters(voters.iter().copied())
    }

    fn change(steps: &[ConfChangeStep]) -> ConfChange {
        ConfChange { steps: steps.to_vec(), ..Default::default() }
    }

    #[test]
    fn every_change_goes_through_a_joint_configuration() {
        let joint = apply_change(&conf(&[1, 2, 3]), &change(&[AddVoter(4)])).unwrap();
        assert!(joint.is_joint());
        assert_eq!(joint.voters_outgoing, conf(&[1, 2, 3]).voters);
        let left = apply_change(&joint, &change(&[])).unwrap();
        assert!(!left.is_joint());
        assert_eq!(left.voters, conf(&[1, 2, 3, 4]).voters);
    }

    #[test]
    fn replace_is_one_joint_change() {
        let joint = apply_change(&conf(&[1, 2, 3]), &change(&[Remove(3), AddVoter(4)])).unwrap();
        assert_eq!(joint.voters, conf(&[1, 2, 4]).voters);
        assert_eq!(joint.voters_outgoing, conf(&[1, 2, 3]).voters);
    }

    #[test]
    fn demoted_voter_keeps_voting_until_leave() {
        let joint = apply_change(&conf(&[1, 2, 3]), &change(&[AddLearner(3)])).unwrap();
        assert!(joint.is_voter(3), "still votes in C_old");
        assert!(joint.learners_next.contains(&3));
        let left = apply_change(&joint, &change(&[])).unwrap();
        assert!(!left.is_voter(3));
        assert!(left.learners.contains(&3));
    }

    #[test]
    fn invalid_changes_are_refused() {
        let base = conf(&[1, 2, 3]);
        assert!(apply_change(&base, &change(&[])).is_err(), "leave without joint");
        assert!(apply_change(&base, &change(&[AddVoter(1)])).is_err(), "already a voter");
        assert!(apply_change(&base, &change(&[Remove(9)])).is_err(), "not a member");
        assert!(apply_change(&base, &change(&[Remove(1), Remove(2), Remove(3)])).is_err(), "no voters");
        assert!(apply_change(&base, &change(&[AddVoter(4), Remove(4)])).is_err(), "twice");
        let joint = apply_change(&base, &change(&[AddVoter(4)])).unwrap();
        assert!(apply_change(&joint, &change(&[AddVoter(5)])).is_err(), "one change at a time");
    }

    #[test]
    fn history_rolls_back_on_truncation() {
        let mut history = ConfHistory::new(conf(&[1, 2, 3]));
        let entry =
            Entry { stamp: 0, term: 1, index: 5, kind: EntryKind::ConfChange, data: change(&[AddVoter(4)]).encode() };
        history.observe(&[entry]);
        assert!(history.current().is_joint());
        assert_eq!(history.at(4), &conf(&[1, 2, 3]));
        history.truncate_from(5);
        assert_eq!(history.current(), &conf(&[1, 2, 3]));
    }

    #[test]
    fn a_change_round_trips_with_and_without_a_context() {
        let plain = change(&[AddVoter(4), Remove(2)]);
        assert_eq!(ConfChange::decode(&plain.encode()).unwrap(), plain);
        let with_context = ConfChange { context: b"member 4".to_vec(), ..plain };
        assert_eq!(ConfChange::decode(&with_context.encode()).unwrap(), with_context);
        let leave = ConfChange::default();
        assert_eq!(ConfChange::decode(&leave.encode()).unwrap(), leave);
        let mut bytes = with_context.encode();
        bytes.pop();
        assert!(ConfChange::decode(&bytes).is_err(), "a truncated context");
        assert!(ConfChange::decode(&[1, 0, 0]).is_err(), "a truncated id");
        assert!(ConfChange::decode(&[9, 0, 0, 0, 0, 0, 0, 0, 1]).is_err(), "an unknown tag");
    }
}
