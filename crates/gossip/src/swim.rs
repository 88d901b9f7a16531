//! SWIM (Das, Gupta, Motivala, 2002) membership, the core of it, as a pure state machine:
//! each protocol period a member probes one other, chosen by shuffled round robin; without an
//! ack in time it asks `indirect_checks` others to probe it (ping-req); without any ack by the
//! period's end it suspects it. A suspect that hears of its suspicion refutes it with a higher
//! incarnation; one not refuted within the suspicion timeout is declared dead. News (alive,
//! suspect, dead) rides on the probes and acks, each item a bounded number of times.
//!
//! In progress (issue 20): Lifeguard's extensions, push-pull anti-entropy, the phi detector as
//! the suspicion trigger, tags and leave come next.

use std::collections::BTreeMap;

use ballot_raft::rng::Rng;

/// A member's state as this node believes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// Answering probes.
    Alive,
    /// Missed a probe; dead unless it refutes in time.
    Suspect,
    /// Confirmed failed.
    Dead,
}

/// News about a member, gossiped until every member has probably heard it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    /// Whom it is about.
    pub member: String,
    /// The member's incarnation the news is about: news of a higher incarnation wins, and at
    /// equal incarnations Dead beats Suspect beats Alive.
    pub incarnation: u64,
    /// What it says.
    pub state: State,
}

/// What a message asks or answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Are you alive? (`seq` pairs the ack.)
    Ping {
        /// Pairs the ack with the probe.
        seq: u64,
    },
    /// Probe `target` for me and tell me.
    PingReq {
        /// The asker's sequence number, echoed in the ack relayed back.
        seq: u64,
        /// Whom to probe.
        target: String,
    },
    /// Alive (an answer to a ping, or relayed for a ping-req: `about` is who answered).
    Ack {
        /// The probe's sequence number.
        seq: u64,
        /// The member whose liveness the ack shows.
        about: String,
    },
}

/// One message between members, with news piggybacked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The sender.
    pub from: String,
    /// The request or answer.
    pub body: Body,
    /// Membership news.
    pub updates: Vec<Update>,
}

/// The protocol's settings, in ticks (memberlist's LAN values at a 100 ms tick by default).
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Ticks per protocol period (one probe each).
    pub probe_interval: u64,
    /// Ticks to wait for a direct ack before asking others.
    pub probe_timeout: u64,
    /// Members asked to probe indirectly.
    pub indirect_checks: usize,
    /// The suspicion timeout is this many periods times log10(members), at least one period.
    pub suspicion_mult: u64,
    /// Each update is piggybacked this many times times log10(members + 1), at least once.
    pub retransmit_mult: u64,
    /// Updates carried per message.
    pub piggyback_max: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            probe_interval: 10,
            probe_timeout: 5,
            indirect_checks: 3,
            suspicion_mult: 4,
            retransmit_mult: 4,
            piggyback_max: 16,
        }
    }
}

/// What this node knows of one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its incarnation (raised only by itself, to refute suspicion).
    pub incarnation: u64,
    /// Its state.
    pub state: State,
    /// The tick its state last changed.
    pub since: u64,
}

/// A change this node observed, for the runtime and the simulator's measurements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A member became known, or alive again.
    Alive(String),
    /// A member is suspected.
    Suspect(String),
    /// A member is confirmed dead.
    Dead(String),
}

/// The probe of the current period.
#[derive(Clone, Debug)]
struct Probe {
    target: String,
    seq: u64,
    sent: u64,
    indirect_sent: bool,
    acked: bool,
}

/// One member's protocol state.
#[derive(Clone, Debug)]
pub struct Node {
    config: Config,
    name: String,
    incarnation: u64,
    members: BTreeMap<String, Member>,
    tick: u64,
    rng: Rng,
    order: Vec<String>,
    next_in_order: usize,
    seq: u64,
    probe: Option<Probe>,
    /// Ping-reqs this node relays: its own probe's seq → (asker, the asker's seq).
    relaying: BTreeMap<u64, (String, u64)>,
    /// Updates still to piggyback, with the transmissions left.
    broadcasts: Vec<(Update, u64)>,
    outbox: Vec<(String, Message)>,
    events: Vec<Event>,
}

/// Whether news `new` overrides news `old` about the same member (SWIM's rules: a higher
/// incarnation wins; at the same incarnation, suspect over alive and dead over both).
fn overrides(new: (u64, State), old: (u64, State)) -> bool {
    match new.1 {
        State::Dead => new.0 >= old.0 && old.1 != State::Dead || new.0 > old.0,
        State::Suspect => new.0 > old.0 || new.0 == old.0 && old.1 == State::Alive,
        State::Alive => new.0 > old.0,
    }
}

/// ⌈log10(n + 1)⌉, at least 1: the scale of suspicion timeouts and retransmissions.
fn log_scale(n: usize) -> u64 {
    ((n as f64 + 1.0).log10().ceil() as u64).max(1)
}

impl Node {
    /// A node named `name`, knowing only itself; `seed` drives its choices.
    pub fn new(config: Config, name: &str, seed: u64) -> Node {
        let mut members = BTreeMap::new();
        members.insert(name.to_string(), Member { incarnation: 0, state: State::Alive, since: 0 });
        let mut node = Node {
            config,
            name: name.to_string(),
            incarnation: 0,
            members,
            tick: 0,
            rng: Rng::new(seed),
            order: Vec::new(),
            next_in_order: 0,
            seq: 0,
            probe: None,
            relaying: BTreeMap::new(),
            broadcasts: Vec::new(),
            outbox: Vec::new(),
            events: Vec::new(),
        };
        // Its own existence is its first news: whoever it talks to passes it on (the join).
        node.broadcast(Update { member: name.to_string(), incarnation: 0, state: State::Alive });
        node
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every member this node knows of, itself included.
    pub fn members(&self) -> &BTreeMap<String, Member> {
        &self.members
    }

    /// Learns of `member` (a seed address given at start, or a join): it is probed like any.
    pub fn add_member(&mut self, member: &str) {
        self.apply(Update { member: member.to_string(), incarnation: 0, state: State::Alive });
    }

    /// Messages to send, as (to, message).
    pub fn take_messages(&mut self) -> Vec<(String, Message)> {
        std::mem::take(&mut self.outbox)
    }

    /// Changes observed since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// One tick of time.
    pub fn tick(&mut self) {
        self.tick += 1;
        self.expire_suspicions();
        let Some(probe) = self.probe.clone() else {
            if self.tick.is_multiple_of(self.config.probe_interval) {
                self.start_probe();
            }
            return;
        };
        let elapsed = self.tick - probe.sent;
        if !probe.acked && !probe.indirect_sent && elapsed >= self.config.probe_timeout {
            self.send_ping_reqs(&probe);
        }
        if elapsed >= self.config.probe_interval {
            if !probe.acked {
                self.suspect(&probe.target);
            }
            self.probe = None;
            self.start_probe();
        }
    }

    /// Takes in a message from another member.
    pub fn step(&mut self, message: Message) {
        for update in message.updates {
            self.apply(update);
        }
        // A sender not known yet has joined (its own news may have been crowded out).
        if !self.members.contains_key(&message.from) {
            self.add_member(&message.from);
        }
        match message.body {
            Body::Ping { seq } => {
                let ack = Body::Ack { seq, about: self.name.clone() };
                self.send(&message.from, ack);
            }
            Body::PingReq { seq, target } => {
                self.seq += 1;
                self.relaying.insert(self.seq, (message.from.clone(), seq));
                let ping = Body::Ping { seq: self.seq };
                self.send(&target, ping);
            }
            Body::Ack { seq, about } => {
                if let Some((asker, their_seq)) = self.relaying.remove(&seq) {
                    self.send(&asker, Body::Ack { seq: their_seq, about });
                    return;
                }
                if let Some(probe) = self.probe.as_mut().filter(|probe| probe.seq == seq && probe.target == about) {
                    probe.acked = true;
                }
            }
        }
    }

    fn start_probe(&mut self) {
        let Some(target) = self.next_target() else { return };
        self.seq += 1;
        self.probe =
            Some(Probe { target: target.clone(), seq: self.seq, sent: self.tick, indirect_sent: false, acked: false });
        self.send(&target, Body::Ping { seq: self.seq });
    }

    /// The next member to probe: shuffled round robin over the live and suspect others, so
    /// every member is probed within a bounded time (SWIM's §4.3).
    fn next_target(&mut self) -> Option<String> {
        for _ in 0..2 {
            while self.next_in_order < self.order.len() {
                let candidate = self.order[self.next_in_order].clone();
                self.next_in_order += 1;
                if self.members.get(&candidate).is_some_and(|member| member.state != State::Dead) {
                    return Some(candidate);
                }
            }
            self.order = self
                .members
                .iter()
                .filter(|(name, member)| **name != self.name && member.state != State::Dead)
                .map(|(name, _)| name.clone())
                .collect();
            for i in (1..self.order.len()).rev() {
                let j = self.rng.range(0, i as u64 + 1) as usize;
                self.order.swap(i, j);
            }
            self.next_in_order = 0;
        }
        None
    }

    fn send_ping_reqs(&mut self, probe: &Probe) {
        let mut helpers: Vec<String> = self
            .members
            .iter()
            .filter(|(name, member)| **name != self.name && **name != probe.target && member.state == State::Alive)
            .map(|(name, _)| name.clone())
            .collect();
        for i in (1..helpers.len()).rev() {
            let j = self.rng.range(0, i as u64 + 1) as usize;
            helpers.swap(i, j);
        }
        for helper in helpers.into_iter().take(self.config.indirect_checks) {
            self.send(&helper, Body::PingReq { seq: probe.seq, target: probe.target.clone() });
        }
        if let Some(current) = self.probe.as_mut() {
            current.indirect_sent = true;
        }
    }

    fn suspect(&mut self, target: &str) {
        let Some(member) = self.members.get(target) else { return };
        if member.state == State::Alive {
            let update = Update { member: target.to_string(), incarnation: member.incarnation, state: State::Suspect };
            self.apply(update);
        }
    }

    /// Suspects not refuted within the suspicion timeout are declared dead.
    fn expire_suspicions(&mut self) {
        let timeout = self.config.suspicion_mult * log_scale(self.members.len()) * self.config.probe_interval;
        let expired: Vec<(String, u64)> = self
            .members
            .iter()
            .filter(|(_, member)| member.state == State::Suspect && self.tick - member.since >= timeout)
            .map(|(name, member)| (name.clone(), member.incarnation))
            .collect();
        for (member, incarnation) in expired {
            self.apply(Update { member, incarnation, state: State::Dead });
        }
    }

    /// Takes in news: kept and passed on if it overrides what this node knew. News of this
    /// node's own suspicion or death is refuted with a higher incarnation.
    fn apply(&mut self, update: Update) {
        if update.member == self.name {
            if update.state != State::Alive && update.incarnation >= self.incarnation {
                self.incarnation = update.incarnation + 1;
                let me = self.members.get_mut(&self.name).expect("a node knows itself");
                me.incarnation = self.incarnation;
                let refutation =
                    Update { member: self.name.clone(), incarnation: self.incarnation, state: State::Alive };
                self.broadcast(refutation);
            }
            return;
        }
        let known = self.members.get(&update.member).map(|member| (member.incarnation, member.state));
        if known.is_some_and(|old| !overrides((update.incarnation, update.state), old)) {
            return;
        }
        self.members.insert(
            update.member.clone(),
            Member { incarnation: update.incarnation, state: update.state, since: self.tick },
        );
        self.events.push(match update.state {
            State::Alive => Event::Alive(update.member.clone()),
            State::Suspect => Event::Suspect(update.member.clone()),
            State::Dead => Event::Dead(update.member.clone()),
        });
        self.broadcast(update);
    }

    fn broadcast(&mut self, update: Update) {
        self.broadcasts.retain(|(queued, _)| queued.member != update.member);
        let transmits = self.config.retransmit_mult * log_scale(self.members.len());
        self.broadcasts.push((update, transmits));
    }

    /// Sends `body` with the freshest news piggybacked (newest first, each counted down).
    fn send(&mut self, to: &str, body: Body) {
        let mut updates = Vec::new();
        for (update, left) in self.broadcasts.iter_mut().rev().take(self.config.piggyback_max) {
            updates.push(update.clone());
            *left -= 1;
        }
        self.broadcasts.retain(|(_, left)| *left > 0);
        self.outbox.push((to.to_string(), Message { from: self.name.clone(), body, updates }));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Nodes on a lossless network that delivers every message within the tick; `down` nodes
    /// neither send nor receive.
    struct Fleet {
        nodes: BTreeMap<String, Node>,
        down: BTreeSet<String>,
        ever_dead: BTreeSet<(String, String)>,
    }

    impl Fleet {
        /// `n` nodes that each know only the first (a join through one seed).
        fn new(n: usize) -> Fleet {
            let mut nodes = BTreeMap::new();
            for i in 0..n {
                let mut node = Node::new(Config::default(), &format!("m{i:02}"), i as u64 + 1);
                if i > 0 {
                    node.add_member("m00");
                }
                nodes.insert(node.name().to_string(), node);
            }
            Fleet { nodes, down: BTreeSet::new(), ever_dead: BTreeSet::new() }
        }

        fn run(&mut self, ticks: u64) {
            for _ in 0..ticks {
                let names: Vec<String> = self.nodes.keys().cloned().collect();
                for name in &names {
                    if !self.down.contains(name) {
                        self.nodes.get_mut(name).unwrap().tick();
                    }
                }
                // Deliver until quiet (answers within the tick).
                loop {
                    let mut mail = Vec::new();
                    for name in &names {
                        let node = self.nodes.get_mut(name).unwrap();
                        let sent = node.take_messages();
                        for event in node.take_events() {
                            if let Event::Dead(who) = event {
                                self.ever_dead.insert((name.clone(), who));
                            }
                        }
                        if !self.down.contains(name) {
                            mail.extend(sent);
                        }
                    }
                    if mail.is_empty() {
                        break;
                    }
                    for (to, message) in mail {
                        if !self.down.contains(&to) {
                            if let Some(node) = self.nodes.get_mut(&to) {
                                node.step(message);
                            }
                        }
                    }
                }
            }
        }

        /// How `observer` sees `member`.
        fn state(&self, observer: &str, member: &str) -> Option<State> {
            self.nodes[observer].members().get(member).map(|m| m.state)
        }
    }

    #[test]
    fn members_that_know_one_seed_all_learn_of_each_other() {
        let mut fleet = Fleet::new(20);
        fleet.run(300);
        for observer in fleet.nodes.keys() {
            assert_eq!(fleet.nodes[observer].members().len(), 20, "{observer}");
            assert!(fleet.nodes[observer].members().values().all(|m| m.state == State::Alive), "{observer}");
        }
    }

    #[test]
    fn a_crashed_member_is_suspected_then_declared_dead_by_all_and_no_one_else_is() {
        let mut fleet = Fleet::new(20);
        fleet.run(300);
        fleet.down.insert("m07".into());
        fleet.run(400);
        for observer in fleet.nodes.keys().filter(|name| *name != "m07") {
            assert_eq!(fleet.state(observer, "m07"), Some(State::Dead), "{observer}");
        }
        let wrongly: Vec<_> = fleet.ever_dead.iter().filter(|(_, who)| who != "m07").collect();
        assert!(wrongly.is_empty(), "healthy members declared dead: {wrongly:?}");
    }

    #[test]
    fn a_member_cut_off_briefly_refutes_its_suspicion_and_is_never_declared_dead() {
        let mut fleet = Fleet::new(10);
        fleet.run(200);
        // Longer than a probe period, shorter than the suspicion timeout (4 periods).
        fleet.down.insert("m03".into());
        fleet.run(25);
        let suspected = fleet.nodes.keys().any(|observer| fleet.state(observer, "m03") == Some(State::Suspect));
        assert!(suspected, "someone should suspect m03 by now");
        fleet.down.clear();
        fleet.run(300);
        for observer in fleet.nodes.keys() {
            assert_eq!(fleet.state(observer, "m03"), Some(State::Alive), "{observer}");
        }
        assert!(fleet.nodes["m03"].members()["m03"].incarnation > 0, "m03 refuted with a higher incarnation");
        assert!(fleet.ever_dead.is_empty(), "{:?}", fleet.ever_dead);
    }
}
