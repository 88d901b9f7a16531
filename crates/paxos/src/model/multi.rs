//! A bounded model of Multi-Paxos's slot agreement: leaders that run phase 1 once for every
//! slot, recover what a quorum reported through [`pick_per_slot`] (the function the
//! Multi-Paxos leader uses), fill holes with no-ops, and then propose their own commands in the
//! free slots one at a time (pipelined).
//!
//! The network rule and the reductions are the single-decree model's (every message ever sent
//! stays deliverable: loss, duplication, reordering; a leader takes in a quorum of promises in
//! one step, in every order; refusals are not sent). The invariant: in every slot, at most one
//! value is chosen.

use std::collections::{BTreeMap, BTreeSet};

use super::{ordered_quorums, permutations, Model};
use crate::pick::{pick_per_slot, Pick};
use crate::{Ballot, Ballots};

/// A slot's value: 0 is a no-op, `c ≥ 1` leader `c - 1`'s command.
pub type Value = u8;
const NO_OP: Value = 0;

/// What one acceptor accepted in each slot.
pub type Accepted = Vec<Option<(Ballot, Value)>>;

/// The bounds of a Multi-Paxos run.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Acceptors.
    pub acceptors: usize,
    /// Leaders (proposers), each owning its share of ballots.
    pub leaders: usize,
    /// Log slots.
    pub slots: usize,
    /// No ballot above this one is started.
    pub max_ballot: Ballot,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)] // Multi-Paxos's phases, as in single-decree Paxos but per slot.
/// A message of the Multi-Paxos model.
pub enum Message {
    /// Phase 1a, for every slot at once.
    Prepare { ballot: Ballot },
    /// Phase 1b, with what the acceptor accepted in each slot.
    Promise { ballot: Ballot, from: u32, accepted: Accepted },
    /// Phase 2a for one slot.
    Accept { ballot: Ballot, slot: u8, value: Value },
    /// Phase 2b for one slot.
    Accepted { ballot: Ballot, slot: u8, value: Value, from: u32 },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Acceptor {
    promised: Ballot,
    accepted: Accepted,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Leader {
    Idle,
    Preparing {
        ballot: Ballot,
    },
    /// Phase 1 done: slots below `next_slot` are proposed.
    Leading {
        ballot: Ballot,
        next_slot: u8,
    },
}

impl Leader {
    fn highest(&self) -> Ballot {
        match self {
            Leader::Idle => 0,
            Leader::Preparing { ballot } | Leader::Leading { ballot, .. } => *ballot,
        }
    }
}

/// A state of the Multi-Paxos model.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct State {
    acceptors: Vec<Acceptor>,
    leaders: Vec<Leader>,
    network: BTreeSet<Message>,
}

/// One step.
#[derive(Clone, Debug)]
pub enum Action {
    /// A leader starts phase 1.
    Prepare {
        /// The leader.
        leader: usize,
        /// Its ballot.
        ballot: Ballot,
    },
    /// A leader proposes its own command in its next free slot.
    Propose {
        /// The leader.
        leader: usize,
        /// The slot.
        slot: u8,
        /// Its ballot.
        ballot: Ballot,
    },
    /// An acceptor takes in a prepare or an accept.
    Deliver {
        /// The acceptor.
        acceptor: usize,
        /// What it received.
        message: Message,
    },
    /// A leader takes in a quorum of promises (in this order) and starts leading.
    Quorum {
        /// The leader.
        leader: usize,
        /// The promises, as (acceptor, what it had accepted per slot).
        promises: Vec<(u32, Accepted)>,
        /// The slots it re-proposed (value per slot, no-ops in the holes).
        recovered: Vec<Value>,
    },
}

/// Multi-Paxos within [`Bounds`].
pub struct MultiPaxos {
    bounds: Bounds,
    quorum: usize,
    ballots: Ballots,
    rule: Pick,
    permutations: Vec<Vec<u32>>,
}

impl MultiPaxos {
    /// The model of `bounds`, leaders recovering slots by `rule`.
    pub fn new(bounds: Bounds, rule: Pick) -> MultiPaxos {
        assert!(bounds.slots >= 1 && bounds.slots < 200 && bounds.acceptors >= 1 && bounds.leaders >= 1);
        MultiPaxos {
            bounds,
            quorum: bounds.acceptors / 2 + 1,
            ballots: Ballots::new(bounds.leaders as u64),
            rule,
            permutations: permutations(bounds.acceptors),
        }
    }

    /// Leader `l`, preparing `ballot`, takes in a quorum of its promises in every order.
    fn take_quorum(&self, state: &State, l: usize, ballot: Ballot, out: &mut Vec<(Action, State)>) {
        let promises: Vec<(u32, &Accepted)> = state
            .network
            .iter()
            .filter_map(|m| match m {
                Message::Promise { ballot: b, from, accepted } if *b == ballot => Some((*from, accepted)),
                _ => None,
            })
            .collect();
        let senders: Vec<u32> = promises.iter().map(|(from, _)| *from).collect();
        for order in ordered_quorums(&senders, self.quorum) {
            let taken: Vec<(u32, Accepted)> = order.iter().map(|&i| (promises[i].0, promises[i].1.clone())).collect();
            let mut next = state.clone();
            let (leader, recovered) = self.lead(ballot, &taken, &mut next.network);
            next.leaders[l] = leader;
            out.push((Action::Quorum { leader: l, promises: taken, recovered }, next));
        }
    }

    /// `state` without the messages that can no longer change anything, so that states which
    /// differ only in them are one (the space is otherwise dominated by such differences):
    /// prepares and accepts below every acceptor's promise (every acceptor would ignore them),
    /// promises for a round their leader has left (a leader's ballot only grows), and the
    /// acceptances of a (slot, ballot) that can gain no more votes and fell short of a quorum
    /// (they can never make a value chosen; a quorum's are kept for the invariant).
    fn without_dead_messages(&self, state: &State) -> State {
        let lowest_promise = state.acceptors.iter().map(|a| a.promised).min().unwrap_or(0);
        let live = |m: &Message| match m {
            Message::Prepare { ballot } | Message::Accept { ballot, .. } => *ballot >= lowest_promise,
            Message::Promise { ballot, .. } => {
                matches!(state.leaders[self.ballots.owner(*ballot) as usize], Leader::Preparing { ballot: b } if b == *ballot)
            }
            Message::Accepted { .. } => true,
        };
        let mut network: BTreeSet<Message> = state.network.iter().filter(|m| live(m)).cloned().collect();
        let mut voters: BTreeMap<(u8, Ballot), usize> = BTreeMap::new();
        for m in &network {
            if let Message::Accepted { ballot, slot, .. } = m {
                *voters.entry((*slot, *ballot)).or_default() += 1;
            }
        }
        network.retain(|m| match m {
            Message::Accepted { ballot, slot, value, .. } => {
                voters[&(*slot, *ballot)] >= self.quorum
                    || network_has_accept(&state.network, *ballot, *slot, *value) && *ballot >= lowest_promise
            }
            _ => true,
        });
        State { acceptors: state.acceptors.clone(), leaders: state.leaders.clone(), network }
    }

    /// Phase 1 complete: recover the reported slots, fill the holes below the highest with
    /// no-ops, propose them all.
    fn lead(
        &self,
        ballot: Ballot,
        promises: &[(u32, Accepted)],
        network: &mut BTreeSet<Message>,
    ) -> (Leader, Vec<Value>) {
        let reports = promises.iter().flat_map(|(_, accepted)| {
            accepted.iter().enumerate().filter_map(|(slot, a)| a.as_ref().map(|(b, v)| (slot as u64, *b, v)))
        });
        let recovered = pick_per_slot(reports, self.rule);
        let next_slot = recovered.keys().next_back().map_or(0, |s| s + 1);
        let mut values = Vec::new();
        for slot in 0..next_slot {
            let value = recovered.get(&slot).map_or(NO_OP, |v| **v);
            network.insert(Message::Accept { ballot, slot: slot as u8, value });
            values.push(value);
        }
        (Leader::Leading { ballot, next_slot: next_slot as u8 }, values)
    }
}

/// Whether `Accept(ballot, slot, value)` was sent.
fn network_has_accept(network: &BTreeSet<Message>, ballot: Ballot, slot: u8, value: Value) -> bool {
    network.contains(&Message::Accept { ballot, slot, value })
}

fn show_value(value: Value) -> String {
    if value == NO_OP {
        "no-op".into()
    } else {
        format!("cmd{}", value - 1)
    }
}

impl Model for MultiPaxos {
    type State = State;
    type Action = Action;

    fn initial(&self) -> State {
        State {
            acceptors: vec![Acceptor { promised: 0, accepted: vec![None; self.bounds.slots] }; self.bounds.acceptors],
            leaders: vec![Leader::Idle; self.bounds.leaders],
            network: BTreeSet::new(),
        }
    }

    fn successors(&self, state: &State, out: &mut Vec<(Action, State)>) {
        for (l, leader) in state.leaders.iter().enumerate() {
            let ballot = self.ballots.next_owned(l as u64, leader.highest());
            if ballot <= self.bounds.max_ballot {
                let mut next = state.clone();
                next.leaders[l] = Leader::Preparing { ballot };
                next.network.insert(Message::Prepare { ballot });
                out.push((Action::Prepare { leader: l, ballot }, next));
            }
            if let Leader::Leading { ballot, next_slot } = leader {
                if usize::from(*next_slot) < self.bounds.slots {
                    let mut next = state.clone();
                    let value = l as Value + 1;
                    next.network.insert(Message::Accept { ballot: *ballot, slot: *next_slot, value });
                    next.leaders[l] = Leader::Leading { ballot: *ballot, next_slot: next_slot + 1 };
                    out.push((Action::Propose { leader: l, slot: *next_slot, ballot: *ballot }, next));
                }
            }
            if let Leader::Preparing { ballot } = leader {
                self.take_quorum(state, l, *ballot, out);
            }
        }
        for message in &state.network {
            match message {
                Message::Prepare { ballot } => {
                    for a in 0..self.bounds.acceptors {
                        let mut next = state.clone();
                        let acceptor = &mut next.acceptors[a];
                        if *ballot < acceptor.promised {
                            continue;
                        }
                        acceptor.promised = *ballot;
                        let reply =
                            Message::Promise { ballot: *ballot, from: a as u32, accepted: acceptor.accepted.clone() };
                        next.network.insert(reply);
                        if next != *state {
                            out.push((Action::Deliver { acceptor: a, message: message.clone() }, next));
                        }
                    }
                }
                Message::Accept { ballot, slot, value } => {
                    for a in 0..self.bounds.acceptors {
                        let mut next = state.clone();
                        let acceptor = &mut next.acceptors[a];
                        if *ballot < acceptor.promised {
                            continue;
                        }
                        acceptor.promised = *ballot;
                        acceptor.accepted[usize::from(*slot)] = Some((*ballot, *value));
                        next.network.insert(Message::Accepted {
                            ballot: *ballot,
                            slot: *slot,
                            value: *value,
                            from: a as u32,
                        });
                        if next != *state {
                            out.push((Action::Deliver { acceptor: a, message: message.clone() }, next));
                        }
                    }
                }
                Message::Promise { .. } | Message::Accepted { .. } => {}
            }
        }
    }

    fn canonical(&self, state: &State) -> State {
        let state = &self.without_dead_messages(state);
        self.permutations
            .iter()
            .map(|perm| {
                let mut acceptors = state.acceptors.clone();
                for (a, acceptor) in state.acceptors.iter().enumerate() {
                    acceptors[perm[a] as usize] = acceptor.clone();
                }
                let leaders = state.leaders.clone();
                let network = state
                    .network
                    .iter()
                    .map(|m| match m {
                        Message::Promise { ballot, from, accepted } => {
                            Message::Promise { ballot: *ballot, from: perm[*from as usize], accepted: accepted.clone() }
                        }
                        Message::Accepted { ballot, slot, value, from } => Message::Accepted {
                            ballot: *ballot,
                            slot: *slot,
                            value: *value,
                            from: perm[*from as usize],
                        },
                        other => other.clone(),
                    })
                    .collect();
                State { acceptors, leaders, network }
            })
            .min()
            .expect("at least the identity")
    }

    fn check(&self, state: &State) -> Result<(), String> {
        let mut votes: BTreeMap<(u8, Ballot), (Value, BTreeSet<u32>)> = BTreeMap::new();
        for message in &state.network {
            if let Message::Accepted { ballot, slot, value, from } = message {
                let (v, voters) = votes.entry((*slot, *ballot)).or_insert((*value, BTreeSet::new()));
                if v != value {
                    return Err(format!("ballot {ballot} carries two values in slot {slot}"));
                }
                voters.insert(*from);
            }
        }
        let mut chosen: BTreeMap<u8, BTreeSet<Value>> = BTreeMap::new();
        for ((slot, _), (value, voters)) in &votes {
            if voters.len() >= self.quorum {
                chosen.entry(*slot).or_default().insert(*value);
            }
        }
        for (slot, values) in chosen {
            if values.len() > 1 {
                let list: Vec<String> = values.into_iter().map(show_value).collect();
                return Err(format!("slot agreement violated: slot {slot} has {} chosen", list.join(" and ")));
            }
        }
        Ok(())
    }

    fn describe(&self, action: &Action) -> String {
        let slots = |values: &mut dyn Iterator<Item = String>| values.collect::<Vec<_>>().join(", ");
        match action {
            Action::Prepare { leader, ballot } => format!("leader {leader} starts phase 1 with ballot {ballot}"),
            Action::Propose { leader, slot, ballot } => {
                format!(
                    "leader {leader} proposes {} in slot {slot} at ballot {ballot}",
                    show_value(*leader as Value + 1)
                )
            }
            Action::Deliver { acceptor, message } => match message {
                Message::Prepare { ballot } => format!("acceptor {acceptor} receives Prepare({ballot})"),
                Message::Accept { ballot, slot, value } => {
                    format!("acceptor {acceptor} receives Accept({ballot}, slot {slot}, {})", show_value(*value))
                }
                other => format!("acceptor {acceptor} receives {other:?}"),
            },
            Action::Quorum { leader, promises, recovered } => {
                let promises: Vec<String> = promises
                    .iter()
                    .map(|(from, accepted)| {
                        let shown = slots(
                            &mut accepted
                                .iter()
                                .map(|a| a.map_or("-".into(), |(b, v)| format!("({b}, {})", show_value(v)))),
                        );
                        format!("acceptor {from} accepted [{shown}]")
                    })
                    .collect();
                let recovered = slots(&mut recovered.iter().map(|v| show_value(*v)));
                format!("leader {leader} receives promises: {}; re-proposes [{recovered}]", promises.join("; "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{explore, Limits};

    const SMALL: Bounds = Bounds { acceptors: 3, leaders: 2, slots: 2, max_ballot: 3 };

    #[test]
    fn multi_paxos_keeps_slot_agreement() {
        let outcome = explore(&MultiPaxos::new(SMALL, Pick::HighestBallot), Limits::default());
        assert!(outcome.complete);
        assert!(outcome.violation.is_none(), "{:?}", outcome.violation);
        assert!(outcome.states > 1000, "explored only {} states", outcome.states);
    }

    #[test]
    fn recovering_by_the_chapters_rule_loses_a_slot() {
        let outcome = explore(&MultiPaxos::new(SMALL, Pick::FirstReported), Limits::default());
        let violation = outcome.violation.expect("the first-reported rule breaks slot agreement");
        assert!(violation.message.starts_with("slot agreement violated"), "{}", violation.message);
    }
}
