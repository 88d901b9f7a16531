//! Single-decree Paxos: proposers, acceptors and learners agreeing on one value.
//!
//! Each role is a plain state machine: a message in, at most one message out, no I/O. The
//! model checker ([`crate::model::single`]) drives exactly these types through every
//! interleaving; a deployment would put them behind a transport.
//!
//! Phase 1: a proposer picks a ballot it owns above any it has seen and sends
//! `Prepare(b)`; an acceptor that has promised nothing higher promises `b` and reports its
//! accepted proposal. Phase 2: with promises from a quorum, the proposer sends `Accept(b, v)`
//! where `v` is chosen by [`pick`]; an acceptor that has promised nothing higher accepts and
//! tells the learners. A value is chosen once a quorum accepted it under one ballot.

use crate::pick::{pick, Pick};
use crate::{Ballot, Ballots};

/// An acceptor's index among the acceptors (0-based).
pub type AcceptorId = u32;

/// The messages of single-decree Paxos.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Message<V> {
    /// Phase 1a, to every acceptor.
    Prepare {
        /// The proposal number.
        ballot: Ballot,
    },
    /// Phase 1b, to the ballot's proposer: a promise, with the acceptor's accepted proposal.
    Promise {
        /// The ballot promised.
        ballot: Ballot,
        /// The acceptor.
        from: AcceptorId,
        /// Its accepted proposal, if any.
        accepted: Option<(Ballot, V)>,
    },
    /// Phase 2a, to every acceptor.
    Accept {
        /// The proposal number.
        ballot: Ballot,
        /// The value proposed.
        value: V,
    },
    /// Phase 2b, to the learners.
    Accepted {
        /// The ballot accepted.
        ballot: Ballot,
        /// The acceptor.
        from: AcceptorId,
        /// The value accepted.
        value: V,
    },
    /// A refusal, to the ballot's proposer: the acceptor promised a higher ballot.
    Nack {
        /// The ballot refused.
        ballot: Ballot,
        /// The acceptor.
        from: AcceptorId,
        /// What it has promised.
        promised: Ballot,
    },
}

impl<V> Message<V> {
    /// The ballot the message is about.
    pub fn ballot(&self) -> Ballot {
        match self {
            Message::Prepare { ballot }
            | Message::Promise { ballot, .. }
            | Message::Accept { ballot, .. }
            | Message::Accepted { ballot, .. }
            | Message::Nack { ballot, .. } => *ballot,
        }
    }
}

/// An acceptor: the only role whose state must survive a crash (on disk before it answers).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Acceptor<V> {
    pub(crate) promised: Ballot,
    pub(crate) accepted: Option<(Ballot, V)>,
}

impl<V> Default for Acceptor<V> {
    fn default() -> Self {
        Acceptor { promised: 0, accepted: None }
    }
}

impl<V: Clone> Acceptor<V> {
    /// The highest ballot promised.
    pub fn promised(&self) -> Ballot {
        self.promised
    }

    /// The accepted proposal, if any.
    pub fn accepted(&self) -> Option<&(Ballot, V)> {
        self.accepted.as_ref()
    }

    /// Phase 1b. Promising a ballot already promised is a repeat of the same promise (a
    /// duplicated `Prepare`), so `≥`, not `>`.
    pub fn on_prepare(&mut self, me: AcceptorId, ballot: Ballot) -> Message<V> {
        if ballot >= self.promised {
            self.promised = ballot;
            Message::Promise { ballot, from: me, accepted: self.accepted.clone() }
        } else {
            Message::Nack { ballot, from: me, promised: self.promised }
        }
    }

    /// Phase 2b.
    pub fn on_accept(&mut self, me: AcceptorId, ballot: Ballot, value: V) -> Message<V> {
        if ballot >= self.promised {
            self.promised = ballot;
            self.accepted = Some((ballot, value.clone()));
            Message::Accepted { ballot, from: me, value }
        } else {
            Message::Nack { ballot, from: me, promised: self.promised }
        }
    }
}

/// Where a proposer is in its current round.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase<V> {
    /// No round under way.
    Idle,
    /// Phase 1 sent; the promises so far, in arrival order.
    Preparing {
        /// The round's ballot.
        ballot: Ballot,
        /// Promises received, one per acceptor, in the order they arrived.
        promises: Vec<(AcceptorId, Option<(Ballot, V)>)>,
    },
    /// Phase 2 sent with this value.
    Accepting {
        /// The round's ballot.
        ballot: Ballot,
        /// The value proposed.
        value: V,
    },
}

/// A proposer, with the value its client asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Proposer<V> {
    me: u64,
    ballots: Ballots,
    quorum: usize,
    rule: Pick,
    pub(crate) own: Option<V>,
    pub(crate) highest_seen: Ballot,
    pub(crate) phase: Phase<V>,
}

impl<V: Clone> Proposer<V> {
    /// Proposer `me` of `ballots.proposers()`, needing `quorum` promises and acceptances.
    pub fn new(me: u64, ballots: Ballots, quorum: usize, rule: Pick) -> Proposer<V> {
        Proposer { me, ballots, quorum, rule, own: None, highest_seen: 0, phase: Phase::Idle }
    }

    /// The ballot a new round would use.
    pub fn next_ballot(&self) -> Ballot {
        self.ballots.next_owned(self.me, self.highest_seen)
    }

    /// The current round's state.
    pub fn phase(&self) -> &Phase<V> {
        &self.phase
    }

    /// Starts a round (also after a timeout: the old one is abandoned) to propose `value` if
    /// the acceptors have accepted nothing yet.
    pub fn prepare(&mut self, value: V) -> Message<V> {
        let ballot = self.next_ballot();
        self.highest_seen = ballot;
        self.own = Some(value);
        self.phase = Phase::Preparing { ballot, promises: Vec::new() };
        Message::Prepare { ballot }
    }

    /// A promise; returns the `Accept` once a quorum has promised.
    pub fn on_promise(
        &mut self,
        ballot: Ballot,
        from: AcceptorId,
        accepted: Option<(Ballot, V)>,
    ) -> Option<Message<V>> {
        let Phase::Preparing { ballot: current, promises } = &mut self.phase else { return None };
        if *current != ballot || promises.iter().any(|(a, _)| *a == from) {
            return None;
        }
        promises.push((from, accepted));
        if promises.len() < self.quorum {
            return None;
        }
        let reported = promises.iter().filter_map(|(_, accepted)| accepted.as_ref().map(|(b, v)| (*b, v)));
        let value = match pick(reported, self.rule) {
            Some(value) => value.clone(),
            None => self.own.clone().expect("a round starts with a value"),
        };
        self.phase = Phase::Accepting { ballot, value: value.clone() };
        Some(Message::Accept { ballot, value })
    }

    /// A refusal: remember the higher ballot (the next round goes above it) and give up the
    /// round it refused.
    pub fn on_nack(&mut self, ballot: Ballot, promised: Ballot) {
        self.highest_seen = self.highest_seen.max(promised);
        let current = match &self.phase {
            Phase::Idle => return,
            Phase::Preparing { ballot, .. } | Phase::Accepting { ballot, .. } => *ballot,
        };
        if current == ballot && promised > ballot {
            self.phase = Phase::Idle;
        }
    }
}

/// A learner: counts `Accepted` messages per ballot until one ballot has a quorum.
#[derive(Clone, Debug)]
pub struct Learner<V> {
    quorum: usize,
    votes: std::collections::BTreeMap<Ballot, (V, Vec<AcceptorId>)>,
    chosen: Option<V>,
}

impl<V: Clone + PartialEq> Learner<V> {
    /// A learner that needs `quorum` acceptances under one ballot.
    pub fn new(quorum: usize) -> Learner<V> {
        Learner { quorum, votes: Default::default(), chosen: None }
    }

    /// The value learned, once one is.
    pub fn chosen(&self) -> Option<&V> {
        self.chosen.as_ref()
    }

    /// One acceptance; returns the value learned, if this completes a quorum. A ballot
    /// carrying two values is a broken proposer and panics.
    pub fn on_accepted(&mut self, ballot: Ballot, from: AcceptorId, value: V) -> Option<&V> {
        let (ballot_value, voters) = self.votes.entry(ballot).or_insert_with(|| (value.clone(), Vec::new()));
        assert!(*ballot_value == value, "ballot {ballot} carries two values");
        if !voters.contains(&from) {
            voters.push(from);
        }
        if voters.len() >= self.quorum && self.chosen.is_none() {
            self.chosen = Some(value);
            return self.chosen.as_ref();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Delivers every message to every role at once, in order; returns what the learner learns.
    fn run(
        acceptors: &mut [Acceptor<&'static str>],
        proposer: &mut Proposer<&'static str>,
        value: &'static str,
    ) -> Option<&'static str> {
        let prepare = proposer.prepare(value);
        let mut learner = Learner::new(acceptors.len() / 2 + 1);
        let Message::Prepare { ballot } = prepare else { unreachable!() };
        let mut accept = None;
        for (id, acceptor) in acceptors.iter_mut().enumerate() {
            match acceptor.on_prepare(id as u32, ballot) {
                Message::Promise { ballot, from, accepted } => {
                    if let Some(message) = proposer.on_promise(ballot, from, accepted) {
                        accept = Some(message);
                    }
                }
                Message::Nack { ballot, promised, .. } => proposer.on_nack(ballot, promised),
                other => panic!("unexpected {other:?}"),
            }
        }
        let Some(Message::Accept { ballot, value }) = accept else { return None };
        for (id, acceptor) in acceptors.iter_mut().enumerate() {
            if let Message::Accepted { ballot, from, value } = acceptor.on_accept(id as u32, ballot, value) {
                learner.on_accepted(ballot, from, value);
            }
        }
        learner.chosen().copied()
    }

    #[test]
    fn one_proposer_gets_its_value_chosen() {
        let mut acceptors = vec![Acceptor::default(); 3];
        let mut proposer = Proposer::new(0, Ballots::new(2), 2, Pick::HighestBallot);
        assert_eq!(run(&mut acceptors, &mut proposer, "a"), Some("a"));
    }

    #[test]
    fn a_later_proposer_adopts_the_chosen_value() {
        let mut acceptors = vec![Acceptor::default(); 3];
        let mut first = Proposer::new(0, Ballots::new(2), 2, Pick::HighestBallot);
        let mut second = Proposer::new(1, Ballots::new(2), 2, Pick::HighestBallot);
        assert_eq!(run(&mut acceptors, &mut first, "a"), Some("a"));
        assert_eq!(run(&mut acceptors, &mut second, "b"), Some("a"));
    }

    #[test]
    fn a_stale_ballot_is_refused_and_the_next_round_goes_above() {
        let mut acceptor: Acceptor<&str> = Acceptor::default();
        assert!(matches!(acceptor.on_prepare(0, 4), Message::Promise { .. }));
        let mut proposer: Proposer<&str> = Proposer::new(0, Ballots::new(2), 1, Pick::HighestBallot);
        let Message::Prepare { ballot } = proposer.prepare("x") else { unreachable!() };
        let Message::Nack { promised, .. } = acceptor.on_prepare(0, ballot) else {
            panic!("a lower ballot was promised")
        };
        proposer.on_nack(ballot, promised);
        assert_eq!(proposer.phase(), &Phase::Idle);
        assert_eq!(proposer.next_ballot(), 5);
    }

    #[test]
    fn duplicate_promises_count_once() {
        let mut proposer: Proposer<&str> = Proposer::new(0, Ballots::new(1), 2, Pick::HighestBallot);
        let Message::Prepare { ballot } = proposer.prepare("x") else { unreachable!() };
        assert!(proposer.on_promise(ballot, 0, None).is_none());
        assert!(proposer.on_promise(ballot, 0, None).is_none());
        assert!(proposer.on_promise(ballot, 1, None).is_some());
    }
}
