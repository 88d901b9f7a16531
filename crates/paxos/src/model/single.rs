//! The single-decree model: the real [`Acceptor`], [`Proposer`] and [`Learner`] driven through
//! every interleaving.
//!
//! The network is the set of every message ever sent, and any message in it may be delivered
//! to any of its recipients at any time, any number of times. That one rule covers loss (a
//! message never delivered), duplication (delivered twice) and reordering (delivered in any
//! order), as in Lamport's TLA+ specification of Paxos. A proposer may start a new round at
//! any time (a timeout), with any value of the domain, while its next ballot is within the
//! bound. Acceptors are interchangeable, which symmetry reduction exploits.
//!
//! Two reductions keep the space small without losing a behaviour that matters to safety, as
//! in Lamport's specification:
//! - A proposer takes in a quorum of promises in one step (in every order, since the
//!   chapter's rule depends on it). Promises stay in the network for ever, so taking one
//!   early or late changes nothing an acceptor can see; only the proposer's partial tally would
//!   multiply the states.
//! - Refusals are not sent: a `Nack` only makes a proposer give up sooner and skip ballots,
//!   and the model already lets a proposer start a new round at any time. The unit tests
//!   cover the refusal path.
//!
//! Invariants checked in every state:
//! - **agreement**: at most one value is chosen (accepted by a quorum under one ballot);
//! - **validity**: a chosen value is one some proposer was asked to propose;
//! - a ballot never carries two values, and the learner, given every acceptance sent,
//!   learns the chosen value and only it.

use std::collections::{BTreeMap, BTreeSet};

use super::{ordered_quorums, permutations, Model};
use crate::pick::Pick;
use crate::single::{Acceptor, AcceptorId, Learner, Message, Phase, Proposer};
use crate::{Ballot, Ballots};

/// The bounds of a single-decree run.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Acceptors (a majority of them is the quorum).
    pub acceptors: usize,
    /// Proposers, each owning its share of ballots.
    pub proposers: usize,
    /// Values a proposer may be asked to propose.
    pub values: u8,
    /// No ballot above this one is started.
    pub max_ballot: Ballot,
}

/// A state of the single-decree protocol.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct State {
    acceptors: Vec<Acceptor<u8>>,
    proposers: Vec<Proposer<u8>>,
    network: BTreeSet<Message<u8>>,
    proposed: BTreeSet<u8>,
}

/// One step.
#[derive(Clone, Debug)]
pub enum Action {
    /// A proposer starts a round for a value.
    Prepare {
        /// The proposer.
        proposer: u64,
        /// The value its client asked for.
        value: u8,
        /// The ballot it used.
        ballot: Ballot,
    },
    /// A message delivered to an acceptor, and its answer.
    Deliver {
        /// The message.
        message: Message<u8>,
        /// The acceptor.
        to: AcceptorId,
        /// Its answer (a refusal is not sent).
        reply: Message<u8>,
    },
    /// A proposer takes in a quorum of promises, in this order, and starts phase 2.
    Quorum {
        /// The proposer.
        proposer: u64,
        /// The promises, in arrival order.
        promises: Vec<Message<u8>>,
        /// The phase-2 message it sent.
        accept: Message<u8>,
    },
}

/// Sends an acceptor's answer: refusals are left out (see the module's docs).
fn send(network: &mut BTreeSet<Message<u8>>, reply: &Message<u8>) {
    if !matches!(reply, Message::Nack { .. }) {
        network.insert(reply.clone());
    }
}

/// Single-decree Paxos within [`Bounds`].
pub struct SingleDecree {
    bounds: Bounds,
    quorum: usize,
    ballots: Ballots,
    rule: Pick,
    permutations: Vec<Vec<u32>>,
}

impl SingleDecree {
    /// The model of `bounds`, proposers picking values by `rule`.
    pub fn new(bounds: Bounds, rule: Pick) -> SingleDecree {
        assert!(bounds.acceptors >= 1 && bounds.proposers >= 1 && bounds.values >= 1);
        SingleDecree {
            bounds,
            quorum: bounds.acceptors / 2 + 1,
            ballots: Ballots::new(bounds.proposers as u64),
            rule,
            permutations: permutations(bounds.acceptors),
        }
    }

    fn deliver(&self, state: &State, message: &Message<u8>, out: &mut Vec<(Action, State)>) {
        let mut push = |to: AcceptorId, next: State, reply: Message<u8>| {
            if next != *state {
                out.push((Action::Deliver { message: message.clone(), to, reply }, next));
            }
        };
        match message {
            Message::Prepare { ballot } => {
                for a in 0..self.bounds.acceptors {
                    let mut next = state.clone();
                    let reply = next.acceptors[a].on_prepare(a as AcceptorId, *ballot);
                    send(&mut next.network, &reply);
                    push(a as AcceptorId, next, reply);
                }
            }
            Message::Accept { ballot, value } => {
                for a in 0..self.bounds.acceptors {
                    let mut next = state.clone();
                    let reply = next.acceptors[a].on_accept(a as AcceptorId, *ballot, *value);
                    send(&mut next.network, &reply);
                    push(a as AcceptorId, next, reply);
                }
            }
            // Promises are taken in by quorum ([`SingleDecree::take_quorum`]). Learners hold no
            // state the protocol depends on; `check` plays one over every acceptance sent
            // instead of multiplying the states by a learner's.
            Message::Promise { .. } | Message::Accepted { .. } | Message::Nack { .. } => {}
        }
    }

    /// Proposer `p`, preparing, takes in a quorum of its round's promises in every order.
    fn take_quorum(&self, state: &State, p: usize, out: &mut Vec<(Action, State)>) {
        let proposer = &state.proposers[p];
        let Phase::Preparing { ballot, .. } = proposer.phase() else { return };
        let promises: Vec<(AcceptorId, Option<(Ballot, u8)>)> = state
            .network
            .iter()
            .filter_map(|m| match m {
                Message::Promise { ballot: b, from, accepted } if b == ballot => Some((*from, *accepted)),
                _ => None,
            })
            .collect();
        let senders: Vec<AcceptorId> = promises.iter().map(|(from, _)| *from).collect();
        for order in ordered_quorums(&senders, self.quorum) {
            let mut next = state.clone();
            let mut accept = None;
            for &i in &order {
                let (from, accepted) = promises[i];
                accept = next.proposers[p].on_promise(*ballot, from, accepted);
            }
            let accept = accept.expect("a quorum of promises for the current round starts phase 2");
            next.network.insert(accept.clone());
            let promises = order
                .iter()
                .map(|&i| Message::Promise { ballot: *ballot, from: promises[i].0, accepted: promises[i].1 })
                .collect();
            out.push((Action::Quorum { proposer: p as u64, promises, accept }, next));
        }
    }

    /// `state` without the messages that can no longer change anything, as in the Multi-Paxos
    /// model ([`super::multi`]): prepares and accepts below every acceptor's promise, promises
    /// for a round their proposer has left, and acceptances of a ballot that can gain no more
    /// votes and fell short of a quorum.
    fn without_dead_messages(&self, state: &State) -> State {
        let lowest_promise = state.acceptors.iter().map(|a| a.promised).min().unwrap_or(0);
        let preparing = |ballot: Ballot| matches!(state.proposers[self.ballots.owner(ballot) as usize].phase(), Phase::Preparing { ballot: b, .. } if *b == ballot);
        let mut voters: BTreeMap<Ballot, usize> = BTreeMap::new();
        for m in &state.network {
            if let Message::Accepted { ballot, .. } = m {
                *voters.entry(*ballot).or_default() += 1;
            }
        }
        let network = state
            .network
            .iter()
            .filter(|m| match m {
                Message::Prepare { ballot } | Message::Accept { ballot, .. } => *ballot >= lowest_promise,
                Message::Promise { ballot, .. } => preparing(*ballot),
                Message::Accepted { ballot, value, .. } => {
                    voters[ballot] >= self.quorum
                        || *ballot >= lowest_promise
                            && state.network.contains(&Message::Accept { ballot: *ballot, value: *value })
                }
                Message::Nack { .. } => false,
            })
            .cloned()
            .collect();
        State { network, ..state.clone() }
    }

    /// The state with acceptor `a` renamed `permutation[a]`.
    fn permute(&self, state: &State, permutation: &[u32]) -> State {
        let rename = |a: &AcceptorId| permutation[*a as usize];
        let mut acceptors = vec![Acceptor::default(); state.acceptors.len()];
        for (a, acceptor) in state.acceptors.iter().enumerate() {
            acceptors[permutation[a] as usize] = acceptor.clone();
        }
        let proposers = state
            .proposers
            .iter()
            .map(|p| {
                let mut p = p.clone();
                if let Phase::Preparing { promises, .. } = &mut p.phase {
                    for (a, _) in promises.iter_mut() {
                        *a = rename(a);
                    }
                }
                p
            })
            .collect();
        let network = state
            .network
            .iter()
            .map(|m| match m {
                Message::Promise { ballot, from, accepted } => {
                    Message::Promise { ballot: *ballot, from: rename(from), accepted: *accepted }
                }
                Message::Accepted { ballot, from, value } => {
                    Message::Accepted { ballot: *ballot, from: rename(from), value: *value }
                }
                Message::Nack { ballot, from, promised } => {
                    Message::Nack { ballot: *ballot, from: rename(from), promised: *promised }
                }
                other => other.clone(),
            })
            .collect();
        State { acceptors, proposers, network, proposed: state.proposed.clone() }
    }
}

/// A value of the model's domain as a letter.
fn letter(value: u8) -> char {
    (b'a' + value) as char
}

/// A message as a trace shows it.
pub fn show(message: &Message<u8>) -> String {
    let accepted = |a: &Option<(Ballot, u8)>| match a {
        Some((b, v)) => format!("accepted ({b}, {})", letter(*v)),
        None => "accepted nothing".to_string(),
    };
    match message {
        Message::Prepare { ballot } => format!("Prepare({ballot})"),
        Message::Promise { ballot, from, accepted: a } => {
            format!("Promise({ballot}) from acceptor {from}, {}", accepted(a))
        }
        Message::Accept { ballot, value } => format!("Accept({ballot}, {})", letter(*value)),
        Message::Accepted { ballot, from, value } => {
            format!("Accepted({ballot}, {}) from acceptor {from}", letter(*value))
        }
        Message::Nack { ballot, from, promised } => format!("Nack({ballot}) from acceptor {from}, promised {promised}"),
    }
}

impl Model for SingleDecree {
    type State = State;
    type Action = Action;

    fn initial(&self) -> State {
        State {
            acceptors: vec![Acceptor::default(); self.bounds.acceptors],
            proposers: (0..self.bounds.proposers as u64)
                .map(|p| Proposer::new(p, self.ballots, self.quorum, self.rule))
                .collect(),
            network: BTreeSet::new(),
            proposed: BTreeSet::new(),
        }
    }

    fn successors(&self, state: &State, out: &mut Vec<(Action, State)>) {
        for (p, proposer) in state.proposers.iter().enumerate() {
            let ballot = proposer.next_ballot();
            if ballot > self.bounds.max_ballot {
                continue;
            }
            for value in 0..self.bounds.values {
                let mut next = state.clone();
                let prepare = next.proposers[p].prepare(value);
                next.network.insert(prepare);
                next.proposed.insert(value);
                out.push((Action::Prepare { proposer: p as u64, value, ballot }, next));
            }
        }
        for p in 0..state.proposers.len() {
            self.take_quorum(state, p, out);
        }
        for message in &state.network {
            self.deliver(state, message, out);
        }
    }

    fn canonical(&self, state: &State) -> State {
        let state = &self.without_dead_messages(state);
        self.permutations.iter().map(|p| self.permute(state, p)).min().expect("at least the identity")
    }

    fn check(&self, state: &State) -> Result<(), String> {
        let mut votes: BTreeMap<Ballot, (u8, BTreeSet<AcceptorId>)> = BTreeMap::new();
        for message in &state.network {
            if let Message::Accepted { ballot, from, value } = message {
                let (v, voters) = votes.entry(*ballot).or_insert((*value, BTreeSet::new()));
                if v != value {
                    return Err(format!("ballot {ballot} carries two values, {} and {}", letter(*v), letter(*value)));
                }
                voters.insert(*from);
            }
        }
        let chosen: BTreeMap<u8, Ballot> = votes
            .iter()
            .rev()
            .filter(|(_, (_, voters))| voters.len() >= self.quorum)
            .map(|(b, (v, _))| (*v, *b))
            .collect();
        if chosen.len() > 1 {
            let list: Vec<String> = chosen.iter().map(|(v, b)| format!("{} (at ballot {b})", letter(*v))).collect();
            return Err(format!("agreement violated: {} are chosen", list.join(" and ")));
        }
        if let Some((value, _)) = chosen.iter().next() {
            if !state.proposed.contains(value) {
                return Err(format!("validity violated: {} is chosen but nobody proposed it", letter(*value)));
            }
        }
        let mut learner = Learner::new(self.quorum);
        for message in &state.network {
            if let Message::Accepted { ballot, from, value } = message {
                learner.on_accepted(*ballot, *from, *value);
            }
        }
        if learner.chosen() != chosen.keys().next() {
            return Err(format!(
                "the learner learned {:?} where {:?} is chosen",
                learner.chosen(),
                chosen.keys().next()
            ));
        }
        Ok(())
    }

    fn describe(&self, action: &Action) -> String {
        match action {
            Action::Prepare { proposer, value, ballot } => {
                format!(
                    "proposer {proposer} starts ballot {ballot} to propose {}: sends Prepare({ballot})",
                    letter(*value)
                )
            }
            Action::Deliver { message, to, reply } => {
                format!("acceptor {to} receives {}: sends {}", show(message), show(reply))
            }
            Action::Quorum { proposer, promises, accept } => {
                let promises: Vec<String> = promises.iter().map(show).collect();
                format!("proposer {proposer} receives {}: sends {}", promises.join("; "), show(accept))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{explore, Limits};

    const CHAPTER: Bounds = Bounds { acceptors: 3, proposers: 2, values: 2, max_ballot: 3 };

    #[test]
    fn paxos_keeps_agreement_in_every_state() {
        let outcome = explore(&SingleDecree::new(CHAPTER, Pick::HighestBallot), Limits::default());
        assert!(outcome.complete);
        assert!(outcome.violation.is_none(), "{:?}", outcome.violation);
        assert!(outcome.states > 1000, "explored only {} states", outcome.states);
    }

    #[test]
    fn the_chapters_rule_loses_agreement_and_the_checker_shows_how() {
        let outcome = explore(&SingleDecree::new(CHAPTER, Pick::FirstReported), Limits::default());
        let violation = outcome.violation.expect("taking the first reported value breaks agreement");
        assert!(violation.message.starts_with("agreement violated"), "{}", violation.message);
        // Shortest: a at ballot 1 on one acceptor, b chosen at 2, a chosen again at 3.
        assert!(violation.trace.len() <= 20, "{:#?}", violation.trace);
        assert!(violation.trace.iter().any(|line| line.contains("Prepare(3)")), "{:#?}", violation.trace);
    }

    #[test]
    fn symmetry_reduction_shrinks_the_space_without_changing_the_verdict() {
        let small = Bounds { acceptors: 3, proposers: 2, values: 1, max_ballot: 2 };
        let model = SingleDecree::new(small, Pick::HighestBallot);
        let reduced = explore(&model, Limits::default());
        let mut plain = SingleDecree::new(small, Pick::HighestBallot);
        plain.permutations = vec![vec![0, 1, 2]];
        let full = explore(&plain, Limits::default());
        assert!(reduced.violation.is_none() && full.violation.is_none());
        assert!(reduced.states < full.states, "{} vs {}", reduced.states, full.states);
        assert_eq!(reduced.depth, full.depth);
    }
}
