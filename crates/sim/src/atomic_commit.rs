//! The chapter's comparison of atomic commit protocols, as a deterministic simulation: the same
//! bank transfers under the same faults, run by
//!
//! - **2PC**, classic two-phase commit with one coordinator that is not replicated: a
//!   participant that voted yes may not decide alone, so a coordinator that dies after
//!   "prepare" leaves it holding its locks, in doubt, until the coordinator comes back — or for
//!   good;
//! - **3PC**, three-phase commit with timeouts and its termination protocol (a participant that
//!   times out asks the others and commits if anyone was pre-committed, else aborts): it never
//!   blocks on a crash, but it assumes a bounded network delay, and under a partition each side
//!   terminates on its own and the two sides can decide differently;
//! - **Raft-2PC**, two-phase commit whose coordinator and participants are consensus groups
//!   (each a group of three replicas): the transaction record and the intents are replicated,
//!   so one crash costs a leader election, not the state; participants never decide alone,
//!   they ask the record, which always answers once reachable.
//!
//! This is a model of the protocols' messages and timeouts, not the multi-group store: a group
//! is one simulated node that a crash takes away for an election timeout (its replicated state
//! kept), where the other protocols' nodes lose their volatile state for the whole downtime.
//! Faults per seed: the coordinator crashes (half of the seeds; down 2–30 s, sometimes to the
//! end), one or two partitions cut one node off for 0.5–4 s, 1% of messages are lost, delays are
//! 10–40 ms. A tick is 10 ms of virtual time.

use std::collections::BTreeMap;

use ballot_raft::rng::Rng;

/// The protocols compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Two-phase commit, one coordinator not replicated.
    TwoPc,
    /// Three-phase commit with timeouts and a termination protocol.
    ThreePc,
    /// Two-phase commit over consensus groups.
    RaftTwoPc,
}

impl Protocol {
    /// Every protocol, in the chapter's order.
    pub const ALL: [Protocol; 3] = [Protocol::TwoPc, Protocol::ThreePc, Protocol::RaftTwoPc];

    /// `2pc`, `3pc`, `raft-2pc`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::TwoPc => "2pc",
            Protocol::ThreePc => "3pc",
            Protocol::RaftTwoPc => "raft-2pc",
        }
    }

    /// The protocols `text` names: one name, or `all`.
    pub fn parse(text: &str) -> Result<Vec<Protocol>, String> {
        match text {
            "all" => Ok(Protocol::ALL.to_vec()),
            _ => Protocol::ALL
                .iter()
                .find(|protocol| protocol.name() == text)
                .map(|protocol| vec![*protocol])
                .ok_or_else(|| format!("unknown atomic commit protocol {text:?} (2pc, 3pc, raft-2pc or all)")),
        }
    }
}

/// Ticks of the fault phase (60 s); then faults stop and every node that will recover has.
const FAULT_TICKS: u64 = 6_000;
/// Ticks after the fault phase for what is pending to resolve (20 s).
const HEAL_TICKS: u64 = 2_000;
/// Participants (shards, each holding one account).
const PARTICIPANTS: usize = 3;
/// The coordinator's node id; participants are 1..=PARTICIPANTS.
const COORDINATOR: usize = 0;
/// Each account's starting balance.
const BALANCE: i64 = 100;
/// How long a coordinator waits for votes (or, in 3PC, acknowledgements).
const VOTE_TIMEOUT: u64 = 60;
/// How long a 3PC participant waits for the next message before it terminates on its own.
const PHASE_TIMEOUT: u64 = 60;
/// How long a 3PC participant waits for the others' states in its termination protocol.
const TERMINATION_WAIT: u64 = 20;
/// How often an in-doubt participant asks the coordinator (2PC) or the record (Raft-2PC).
const INQUIRE_EVERY: u64 = 20;
/// A consensus group's failover after its leader's crash: an election timeout.
const FAILOVER_TICKS: u64 = 20;
/// A consensus round inside a group (replicating the record or an intent).
const ROUND_TICKS: u64 = 2;

/// A participant's state for one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PartState {
    /// Voted yes (2PC: prepared; 3PC: uncertain), since the tick.
    Prepared(u64),
    /// 3PC only: received pre-commit, since the tick.
    PreCommitted(u64),
    Committed,
    Aborted,
}

impl PartState {
    fn decided(self) -> Option<bool> {
        match self {
            PartState::Committed => Some(true),
            PartState::Aborted => Some(false),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
enum Body {
    Prepare,
    Vote,
    PreCommit,
    Ack,
    Decision(bool),
    Inquire,
    StateReq,
    StateIs(PartState),
}

#[derive(Clone, Debug)]
struct Msg {
    at: u64,
    from: usize,
    to: usize,
    tx: u64,
    body: Body,
}

/// The coordinator's view of its transaction in flight.
#[derive(Clone, Debug)]
struct Flight {
    tx: u64,
    parts: [usize; 2],
    votes: Vec<usize>,
    acks: Vec<usize>,
    pre_committing: bool,
    deadline: u64,
}

/// What one run (or many, summed) showed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Transactions begun.
    pub transactions: u64,
    /// Committed everywhere.
    pub committed: u64,
    /// Aborted everywhere.
    pub aborted: u64,
    /// Left in doubt at some participant at the end of the run (locks still held).
    pub in_doubt: u64,
    /// Ticks participants spent holding a transaction's locks without knowing its outcome.
    pub blocked_ticks: u64,
    /// The longest such wait.
    pub max_blocked_ticks: u64,
    /// Transactions committed at one participant and aborted at another.
    pub atomicity_violations: u64,
    /// The bank's total at the end differs from the start's (money made or lost).
    pub total_broken: u64,
    /// The first seed with an atomicity violation.
    pub first_violation: Option<u64>,
}

impl Outcome {
    /// Adds `other` (another seed's outcome) to this one.
    pub fn add(&mut self, other: &Outcome) {
        self.transactions += other.transactions;
        self.committed += other.committed;
        self.aborted += other.aborted;
        self.in_doubt += other.in_doubt;
        self.blocked_ticks += other.blocked_ticks;
        self.max_blocked_ticks = self.max_blocked_ticks.max(other.max_blocked_ticks);
        self.atomicity_violations += other.atomicity_violations;
        self.total_broken += other.total_broken;
        self.first_violation = self.first_violation.or(other.first_violation);
    }
}

/// The faults of one seed, drawn before the run so every protocol meets the same ones.
#[derive(Clone, Debug)]
struct Faults {
    /// The coordinator crashes at this tick for this many ticks (`u64::MAX`: for good).
    coordinator_crash: Option<(u64, u64)>,
    /// A node is cut off from every other from the first tick to the second.
    partitions: Vec<(usize, u64, u64)>,
}

impl Faults {
    fn draw(rng: &mut Rng) -> Faults {
        let coordinator_crash = rng.chance(1, 2).then(|| {
            let at = rng.range(200, FAULT_TICKS - 500);
            let down = if rng.chance(1, 4) { u64::MAX } else { rng.range(200, 3_000) };
            (at, down)
        });
        let partitions = (0..rng.range(1, 3))
            .map(|_| {
                let node = rng.range(0, PARTICIPANTS as u64 + 1) as usize;
                let from = rng.range(100, FAULT_TICKS - 500);
                (node, from, from + rng.range(50, 400))
            })
            .collect();
        Faults { coordinator_crash, partitions }
    }
}

struct Sim {
    protocol: Protocol,
    rng: Rng,
    now: u64,
    faults: Faults,
    messages: Vec<Msg>,
    /// The coordinator's durable decisions.
    decisions: BTreeMap<u64, bool>,
    /// The coordinator's transaction in flight (volatile, except in Raft-2PC).
    flight: Option<Flight>,
    next_tx: u64,
    /// Each participant's state per transaction (durable: a prepared participant logs it).
    parts: Vec<BTreeMap<u64, PartState>>,
    /// Each participant's transactions voted on and not settled.
    undecided: Vec<std::collections::BTreeSet<u64>>,
    /// The two participants of each transaction and its amount.
    txs: BTreeMap<u64, ([usize; 2], i64)>,
    /// 3PC: a participant running its termination protocol: (tx, deadline, states heard).
    terminating: Vec<Option<(u64, u64, Vec<PartState>)>>,
    /// When each participant last asked about a transaction in doubt.
    inquired: Vec<u64>,
    balances: Vec<i64>,
    blocked: Vec<u64>,
    /// Messages may be lost (off in the calm runs that check the protocols themselves).
    lossy: bool,
}

impl Sim {
    fn new(protocol: Protocol, seed: u64) -> Sim {
        let mut faults_rng = Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xA7C0);
        let faults = Faults::draw(&mut faults_rng);
        Sim {
            protocol,
            rng: Rng::new(seed ^ 0x2BC0_3BC0),
            now: 0,
            faults,
            messages: Vec::new(),
            decisions: BTreeMap::new(),
            flight: None,
            next_tx: 1,
            parts: vec![BTreeMap::new(); PARTICIPANTS + 1],
            undecided: vec![std::collections::BTreeSet::new(); PARTICIPANTS + 1],
            txs: BTreeMap::new(),
            terminating: vec![None; PARTICIPANTS + 1],
            inquired: vec![0; PARTICIPANTS + 1],
            balances: vec![BALANCE; PARTICIPANTS + 1],
            blocked: Vec::new(),
            lossy: true,
        }
    }

    /// The same run without any fault: no crash, partition or loss.
    #[cfg(test)]
    fn calm(protocol: Protocol, seed: u64) -> Sim {
        let mut sim = Sim::new(protocol, seed);
        sim.faults = Faults { coordinator_crash: None, partitions: Vec::new() };
        sim.lossy = false;
        sim
    }

    /// The coordinator is down now. In Raft-2PC a crash takes its group only for a failover.
    fn coordinator_down(&self) -> bool {
        let Some((at, down)) = self.faults.coordinator_crash else { return false };
        let down = if self.protocol == Protocol::RaftTwoPc { FAILOVER_TICKS } else { down };
        self.now >= at && self.now < at.saturating_add(down)
    }

    /// `node` is cut off now.
    fn isolated(&self, node: usize) -> bool {
        self.now < FAULT_TICKS
            && self
                .faults
                .partitions
                .iter()
                .any(|(cut, from, until)| *cut == node && self.now >= *from && self.now < *until)
    }

    fn send(&mut self, from: usize, to: usize, tx: u64, body: Body) {
        if self.lossy && self.rng.chance(1, 100) && self.now < FAULT_TICKS {
            return; // lost
        }
        let mut delay = self.rng.range(1, 5);
        if self.protocol == Protocol::RaftTwoPc {
            delay += ROUND_TICKS; // the receiving group replicates what it is told before acting
        }
        self.messages.push(Msg { at: self.now + delay, from, to, tx, body });
    }

    fn run(mut self, seed: u64) -> Outcome {
        let mut crashed_flight = false;
        while self.now < FAULT_TICKS + HEAL_TICKS {
            // A coordinator that is not replicated forgets what it had in flight.
            if self.protocol != Protocol::RaftTwoPc && self.coordinator_down() && !crashed_flight {
                crashed_flight = true;
                self.flight = None;
            }
            if !self.coordinator_down() && crashed_flight && self.protocol != Protocol::RaftTwoPc {
                crashed_flight = false;
                self.coordinator_recovers();
            }
            self.deliver();
            self.coordinator_tick();
            for part in 1..=PARTICIPANTS {
                self.participant_tick(part);
            }
            self.now += 1;
        }
        self.outcome(seed)
    }

    /// 2PC's recovery: every transaction it knows of without a logged decision is aborted
    /// (presumed abort), and the decisions are sent again to whoever is in doubt.
    fn coordinator_recovers(&mut self) {
        if self.protocol == Protocol::ThreePc {
            return; // the participants terminated on their own
        }
        let known: Vec<u64> = self.txs.keys().copied().collect();
        for tx in known {
            let decision = *self.decisions.entry(tx).or_insert(false);
            let parts = self.txs[&tx].0;
            for part in parts {
                self.send(COORDINATOR, part, tx, Body::Decision(decision));
            }
        }
    }

    fn deliver(&mut self) {
        let now = self.now;
        let (due, later): (Vec<Msg>, Vec<Msg>) =
            std::mem::take(&mut self.messages).into_iter().partition(|m| m.at <= now);
        self.messages = later;
        for msg in due {
            let down = |sim: &Sim, node: usize| node == COORDINATOR && sim.coordinator_down();
            if down(self, msg.to) || down(self, msg.from) || self.isolated(msg.to) || self.isolated(msg.from) {
                continue;
            }
            if msg.to == COORDINATOR {
                self.coordinator_receives(msg);
            } else {
                self.participant_receives(msg);
            }
        }
    }

    fn coordinator_tick(&mut self) {
        if self.coordinator_down() {
            return;
        }
        match self.flight.clone() {
            None if self.now < FAULT_TICKS => {
                // Begin the next transfer between two accounts.
                let a = self.rng.range(1, PARTICIPANTS as u64 + 1) as usize;
                let b = (a % PARTICIPANTS) + 1;
                let amount = self.rng.range(1, 20) as i64;
                let tx = self.next_tx;
                self.next_tx += 1;
                self.txs.insert(tx, ([a, b], amount));
                self.flight = Some(Flight {
                    tx,
                    parts: [a, b],
                    votes: Vec::new(),
                    acks: Vec::new(),
                    pre_committing: false,
                    deadline: self.now + VOTE_TIMEOUT,
                });
                for part in [a, b] {
                    self.send(COORDINATOR, part, tx, Body::Prepare);
                }
            }
            Some(flight) if self.now >= flight.deadline => {
                // 3PC commits once everyone pre-committed or the acknowledgements time out;
                // otherwise a vote missing in time aborts.
                let commit = self.protocol == Protocol::ThreePc && flight.pre_committing;
                self.decide(flight.tx, flight.parts, commit);
            }
            _ => {}
        }
    }

    fn decide(&mut self, tx: u64, parts: [usize; 2], commit: bool) {
        self.decisions.insert(tx, commit);
        for part in parts {
            self.send(COORDINATOR, part, tx, Body::Decision(commit));
        }
        self.flight = None;
    }

    fn coordinator_receives(&mut self, msg: Msg) {
        match msg.body {
            Body::Vote => {
                let Some(flight) = self.flight.as_mut().filter(|f| f.tx == msg.tx && !f.pre_committing) else { return };
                if !flight.votes.contains(&msg.from) {
                    flight.votes.push(msg.from);
                }
                if flight.votes.len() == 2 {
                    let (tx, parts) = (flight.tx, flight.parts);
                    if self.protocol == Protocol::ThreePc {
                        flight.pre_committing = true;
                        flight.deadline = self.now + VOTE_TIMEOUT;
                        for part in parts {
                            self.send(COORDINATOR, part, tx, Body::PreCommit);
                        }
                    } else {
                        self.decide(tx, parts, true);
                    }
                }
            }
            Body::Ack => {
                let Some(flight) = self.flight.as_mut().filter(|f| f.tx == msg.tx && f.pre_committing) else { return };
                if !flight.acks.contains(&msg.from) {
                    flight.acks.push(msg.from);
                }
                if flight.acks.len() == 2 {
                    let (tx, parts) = (flight.tx, flight.parts);
                    self.decide(tx, parts, true);
                }
            }
            Body::Inquire => {
                // The record (or the coordinator's log) answers what it decided; a transaction
                // it no longer has in flight and never decided was lost with a crash: aborted.
                let in_flight = self.flight.as_ref().is_some_and(|f| f.tx == msg.tx);
                let decision = match self.decisions.get(&msg.tx) {
                    Some(decision) => Some(*decision),
                    None if !in_flight && self.protocol == Protocol::TwoPc => {
                        self.decisions.insert(msg.tx, false);
                        Some(false)
                    }
                    None => None,
                };
                if let Some(decision) = decision {
                    self.send(COORDINATOR, msg.from, msg.tx, Body::Decision(decision));
                }
            }
            _ => {}
        }
    }

    fn participant_receives(&mut self, msg: Msg) {
        let part = msg.to;
        let state = self.parts[part].get(&msg.tx).copied();
        match msg.body {
            Body::Prepare if state.is_none() => {
                self.parts[part].insert(msg.tx, PartState::Prepared(self.now));
                self.undecided[part].insert(msg.tx);
                self.send(part, COORDINATOR, msg.tx, Body::Vote);
            }
            Body::Prepare if matches!(state, Some(PartState::Prepared(_))) => {
                self.send(part, COORDINATOR, msg.tx, Body::Vote); // a vote lost: again
            }
            Body::PreCommit => {
                if let Some(PartState::Prepared(since)) = state {
                    self.parts[part].insert(msg.tx, PartState::PreCommitted(since));
                }
                if matches!(self.parts[part].get(&msg.tx), Some(PartState::PreCommitted(_))) {
                    self.send(part, COORDINATOR, msg.tx, Body::Ack);
                }
            }
            Body::Decision(commit) => self.settle(part, msg.tx, commit),
            Body::StateReq => {
                if let Some(state) = state {
                    self.send(part, msg.from, msg.tx, Body::StateIs(state));
                }
            }
            Body::StateIs(other) => {
                if let Some((tx, _, heard)) = self.terminating[part].as_mut() {
                    if *tx == msg.tx {
                        heard.push(other);
                    }
                }
            }
            _ => {}
        }
    }

    /// A participant learns (or, in 3PC's termination, decides) the outcome.
    fn settle(&mut self, part: usize, tx: u64, commit: bool) {
        match self.parts[part].get(&tx).copied() {
            Some(PartState::Prepared(since) | PartState::PreCommitted(since)) => self.blocked.push(self.now - since),
            Some(_) => return, // already settled
            None => {}         // told the outcome before being asked to prepare: nothing held
        }
        if commit {
            let ([from, _], amount) = self.txs[&tx];
            self.balances[part] += if part == from { -amount } else { amount };
        }
        self.parts[part].insert(tx, if commit { PartState::Committed } else { PartState::Aborted });
        self.undecided[part].remove(&tx);
        if self.terminating[part].as_ref().is_some_and(|(t, _, _)| *t == tx) {
            self.terminating[part] = None;
        }
    }

    fn participant_tick(&mut self, part: usize) {
        let pending: Vec<(u64, PartState)> =
            self.undecided[part].iter().map(|tx| (*tx, self.parts[part][tx])).collect();
        let inquire = self.now >= self.inquired[part] + INQUIRE_EVERY;
        if inquire && !pending.is_empty() && self.protocol != Protocol::ThreePc {
            self.inquired[part] = self.now;
        }
        for (tx, state) in pending {
            let since = match state {
                PartState::Prepared(since) | PartState::PreCommitted(since) => since,
                _ => continue,
            };
            match self.protocol {
                // In doubt: ask again now and then; never decide alone.
                Protocol::TwoPc | Protocol::RaftTwoPc => {
                    if inquire && self.now >= since + INQUIRE_EVERY {
                        self.send(part, COORDINATOR, tx, Body::Inquire);
                    }
                }
                Protocol::ThreePc => self.three_pc_timeout(part, tx, state, since),
            }
        }
    }

    /// 3PC: no word from the coordinator in time, so the participant terminates: it asks the
    /// other participant's state and commits if either was pre-committed (or committed), else
    /// aborts; an unanswered question (a partition) leaves it to its own state alone.
    fn three_pc_timeout(&mut self, part: usize, tx: u64, state: PartState, since: u64) {
        match self.terminating[part].clone() {
            None if self.now >= since + PHASE_TIMEOUT => {
                let other = self.txs[&tx].0.into_iter().find(|p| *p != part).unwrap_or(part);
                self.send(part, other, tx, Body::StateReq);
                self.terminating[part] = Some((tx, self.now + TERMINATION_WAIT, Vec::new()));
            }
            Some((t, deadline, heard)) if t == tx && self.now >= deadline => {
                let commit = heard
                    .iter()
                    .chain([&state])
                    .any(|s| matches!(s, PartState::PreCommitted(_) | PartState::Committed));
                let aborted = heard.contains(&PartState::Aborted);
                self.settle(part, tx, commit && !aborted);
                let other = self.txs[&tx].0.into_iter().find(|p| *p != part).unwrap_or(part);
                self.send(part, other, tx, Body::Decision(commit && !aborted));
            }
            _ => {}
        }
    }

    fn outcome(&self, seed: u64) -> Outcome {
        let mut outcome = Outcome { transactions: self.txs.len() as u64, ..Outcome::default() };
        for (tx, (parts, _)) in &self.txs {
            let states: Vec<Option<PartState>> = parts.iter().map(|p| self.parts[*p].get(tx).copied()).collect();
            let decided: Vec<Option<bool>> = states.iter().map(|s| s.and_then(PartState::decided)).collect();
            if decided.contains(&Some(true)) && decided.contains(&Some(false)) {
                outcome.atomicity_violations += 1;
            } else if decided.iter().all(|d| *d == Some(true)) {
                outcome.committed += 1;
            } else if states.iter().any(|s| matches!(s, Some(PartState::Prepared(_) | PartState::PreCommitted(_)))) {
                outcome.in_doubt += 1;
            } else {
                outcome.aborted += 1;
            }
        }
        for part in 1..=PARTICIPANTS {
            for state in self.parts[part].values() {
                if let PartState::Prepared(since) | PartState::PreCommitted(since) = state {
                    outcome.blocked_ticks += self.now - since;
                    outcome.max_blocked_ticks = outcome.max_blocked_ticks.max(self.now - since);
                }
            }
        }
        outcome.blocked_ticks += self.blocked.iter().sum::<u64>();
        outcome.max_blocked_ticks = outcome.max_blocked_ticks.max(self.blocked.iter().copied().max().unwrap_or(0));
        // A read of every account waits on locks in doubt: the total is only checked without any.
        let total: i64 = self.balances[1..].iter().sum();
        outcome.total_broken = u64::from(outcome.in_doubt == 0 && total != BALANCE * PARTICIPANTS as i64);
        if outcome.atomicity_violations > 0 {
            outcome.first_violation = Some(seed);
        }
        outcome
    }
}

/// Runs `protocol` on `seed`'s transfers and faults.
pub fn run(protocol: Protocol, seed: u64) -> Outcome {
    Sim::new(protocol, seed).run(seed)
}

/// Milliseconds of virtual time in `ticks`.
pub fn ticks_to_ms(ticks: u64) -> u64 {
    ticks * 10
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summed(protocol: Protocol, seeds: std::ops::Range<u64>) -> Outcome {
        let mut total = Outcome::default();
        for seed in seeds {
            total.add(&run(protocol, seed));
        }
        total
    }

    #[test]
    fn without_faults_every_protocol_commits_every_transfer() {
        for protocol in Protocol::ALL {
            for seed in 0..5 {
                let outcome = Sim::calm(protocol, seed).run(seed);
                assert!(outcome.transactions > 100, "{protocol:?}: {outcome:?}");
                assert_eq!(outcome.committed, outcome.transactions, "{protocol:?}: {outcome:?}");
                assert!(outcome.max_blocked_ticks <= 30, "{protocol:?}: {outcome:?}");
            }
        }
    }

    #[test]
    fn a_run_is_a_function_of_its_seed() {
        for protocol in Protocol::ALL {
            assert_eq!(run(protocol, 7), run(protocol, 7));
        }
    }

    #[test]
    fn two_phase_commit_blocks_when_its_coordinator_dies_after_prepare() {
        let outcome = summed(Protocol::TwoPc, 0..100);
        assert_eq!(outcome.atomicity_violations, 0, "{outcome:?}");
        assert!(outcome.in_doubt > 0, "a coordinator gone for good leaves someone in doubt: {outcome:?}");
        assert!(outcome.max_blocked_ticks > 1_000, "blocked for more than 10 s: {outcome:?}");
    }

    #[test]
    fn three_phase_commit_decides_both_ways_under_a_partition() {
        let outcome = summed(Protocol::ThreePc, 0..100);
        assert!(outcome.atomicity_violations > 0, "{outcome:?}");
        assert!(outcome.total_broken > 0, "money made or lost: {outcome:?}");
        assert_eq!(outcome.in_doubt, 0, "3PC never blocks at the end: {outcome:?}");
    }

    #[test]
    fn two_phase_commit_over_groups_neither_blocks_nor_splits() {
        let outcome = summed(Protocol::RaftTwoPc, 0..100);
        assert_eq!(outcome.atomicity_violations, 0, "{outcome:?}");
        assert_eq!(outcome.total_broken, 0, "{outcome:?}");
        assert_eq!(outcome.in_doubt, 0, "every transaction resolved once faults healed: {outcome:?}");
        // The longest wait is the partitions' (two of 4 s at most, back to back at worst) plus a
        // failover and a few rounds: never a crash's downtime.
        assert!(outcome.max_blocked_ticks < 900, "{outcome:?}");
    }

    #[test]
    fn protocols_are_named_and_parsed() {
        assert_eq!(Protocol::parse("all").unwrap(), Protocol::ALL.to_vec());
        assert_eq!(Protocol::parse("raft-2pc").unwrap(), vec![Protocol::RaftTwoPc]);
        assert!(Protocol::parse("4pc").is_err());
    }
}
