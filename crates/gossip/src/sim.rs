//! A deterministic fleet simulator for [`crate::swim`]: one seed gives one run, replayable.
//!
//! Time is the nodes' tick (10 ms with [`Config::lan`]). The network delays every message by
//! a few ticks, loses some, spikes some, and may cut the fleet in two for a while; push-pulls
//! travel as TCP would, never lost but cut by partitions. Crashed members stop for good. Slow
//! members are starved: for a while they stall for seconds at a time, during which they
//! neither tick nor read; when they wake, their overdue timers fire first and the messages
//! that waited are read after (the case Lifeguard was made for: a slow member that blames
//! healthy ones).
//!
//! Measured per run: time to the first suspicion and the first confirmation of each crash,
//! time until 99% and 100% of the live members know of it, healthy members declared dead,
//! messages and bytes per member per second. Checked: after the faults heal, every live member
//! sees every other alive and every crashed one dead; no member, having seen a member refute a
//! suspicion, declares it dead at the refuted incarnation; every live member ends with the
//! same multi-writer map, in which no write is lost (each is a sibling or overtaken by a write
//! that saw it).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use ballot_raft::rng::Rng;

use crate::codec;
use crate::message::{Body, Message};
use crate::news::{State, Tags};
use crate::swim::{Config, Detector, Event, Node};
use crate::version_vector::VersionVector;

/// Which failure detector the fleet runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Variant {
    /// Every member heartbeats every other; a fixed timeout (see [`crate::heartbeat`]).
    Heartbeat,
    /// Plain SWIM.
    Swim,
    /// SWIM with Lifeguard.
    Lifeguard,
    /// SWIM with Lifeguard, suspicion by φ.
    LifeguardPhi,
}

impl Variant {
    /// Every variant, in the comparison's order.
    pub const ALL: [Variant; 4] = [Variant::Heartbeat, Variant::Swim, Variant::Lifeguard, Variant::LifeguardPhi];

    /// Its name on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Heartbeat => "heartbeat",
            Variant::Swim => "swim",
            Variant::Lifeguard => "lifeguard",
            Variant::LifeguardPhi => "lifeguard+phi",
        }
    }

    /// The variant named `name`.
    pub fn parse(name: &str) -> Option<Variant> {
        Variant::ALL
            .into_iter()
            .find(|variant| variant.name() == name || name == "phi" && *variant == Variant::LifeguardPhi)
    }

    /// The SWIM settings of this variant.
    pub fn config(self) -> Config {
        let lan = Config::lan();
        match self {
            Variant::Heartbeat | Variant::Swim => Config { lifeguard: false, ..lan },
            Variant::Lifeguard => lan,
            Variant::LifeguardPhi => Config { detector: Detector::Phi(Config::phi_at_10ms()), ..lan },
        }
    }
}

/// One run's fleet and faults. Times are ticks (10 ms).
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Members.
    pub nodes: usize,
    /// The detector.
    pub variant: Variant,
    /// Drives every random choice.
    pub seed: u64,
    /// One-way delay of a message, ticks, uniform in this range.
    pub latency: (u64, u64),
    /// Chance of losing a datagram, per million.
    pub loss_ppm: u64,
    /// Chance of a latency spike on a message, per million, and its extra delay range.
    pub spike_ppm: u64,
    /// Extra delay of a spiked message, ticks.
    pub spike: (u64, u64),
    /// Members crashed when the faults begin.
    pub crashes: usize,
    /// Members starved while the faults last.
    pub slow: usize,
    /// A starved member's stalls, ticks, uniform in this range.
    pub stall: (u64, u64),
    /// Its waking spells between stalls, ticks.
    pub awake: (u64, u64),
    /// Whether the fleet is cut in two halves for part of the faults.
    pub partition: bool,
    /// Writes to the multi-writer map while the faults last (a few keys, so some collide).
    pub kv_writes: usize,
    /// How long the faults last.
    pub fault_ticks: u64,
    /// How long, after the faults heal, the fleet has to converge.
    pub settle_ticks: u64,
}

impl Scenario {
    /// The comparison's scenario: 1% loss, rare spikes, five crashes, 1% of the fleet starved
    /// in stalls of 1–10 s for a minute.
    pub fn standard(nodes: usize, variant: Variant, seed: u64) -> Scenario {
        Scenario {
            nodes,
            variant,
            seed,
            latency: (1, 5),
            loss_ppm: 10_000,
            spike_ppm: 1_000,
            spike: (20, 100),
            crashes: 5.min(nodes / 10),
            slow: (nodes / 100).max(1),
            stall: (100, 1000),
            awake: (20, 100),
            partition: false,
            kv_writes: 20,
            fault_ticks: 6000,
            settle_ticks: 9000,
        }
    }
}

/// How quickly one crash became known, ticks after it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Detection {
    /// The first suspicion by anyone.
    pub first_suspicion: Option<u64>,
    /// The first declaration of death by anyone.
    pub first_dead: Option<u64>,
    /// 99% of live members hold it dead.
    pub known_99: Option<u64>,
    /// Every live member holds it dead.
    pub known_all: Option<u64>,
}

/// What one run measured and found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Ticks until every member knew every other at the start (None: never).
    pub converged: Option<u64>,
    /// One per crashed member.
    pub detections: Vec<Detection>,
    /// Healthy members (never starved, never crashed) declared dead by someone.
    pub false_dead_members: usize,
    /// Declarations of a healthy member's death (observer, member, each time).
    pub false_dead_events: usize,
    /// Starved members declared dead by someone (slow, not crashed: arguably failing).
    pub starved_dead_members: usize,
    /// Messages a member sent per second while the faults lasted.
    pub messages_per_member_second: f64,
    /// Bytes a member sent per second while the faults lasted.
    pub bytes_per_member_second: f64,
    /// Broken invariants.
    pub violations: Vec<String>,
}

/// Ticks per simulated second.
pub const TICKS_PER_SECOND: u64 = 100;
/// How long the fleet has to form before the faults.
const FORM_TICKS: u64 = 12_000;

/// Runs `scenario`.
pub fn run(scenario: &Scenario) -> Report {
    if scenario.variant == Variant::Heartbeat {
        return crate::heartbeat::run(scenario);
    }
    World::new(scenario).run()
}

/// A member's name (also its address in the simulated network).
pub(crate) fn name_of(index: usize) -> String {
    format!("n{index:04}")
}

/// The members that crash and the ones that are starved, chosen by the seed, disjoint.
pub(crate) fn pick_faulty(scenario: &Scenario, rng: &mut Rng) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (1..scenario.nodes).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.range(0, i as u64 + 1) as usize);
    }
    let crashed = order.iter().take(scenario.crashes).copied().collect();
    let slow = order.iter().skip(scenario.crashes).take(scenario.slow).copied().collect();
    (crashed, slow)
}

/// A starved member's schedule: stalls alternating with short waking spells.
pub(crate) fn stalls(scenario: &Scenario, rng: &mut Rng, from: u64, until: u64) -> Vec<(u64, u64)> {
    let mut spans = Vec::new();
    let mut at = from + rng.range(0, scenario.awake.1.max(1));
    while at < until {
        let end = (at + rng.range(scenario.stall.0, scenario.stall.1 + 1)).min(until);
        spans.push((at, end));
        at = end + rng.range(scenario.awake.0, scenario.awake.1 + 1);
    }
    spans
}

/// The wake-up tick of a member stalled at `now`, if it is.
pub(crate) fn stalled_until(spans: &[(u64, u64)], now: u64) -> Option<u64> {
    spans.iter().find(|(start, end)| *start <= now && now < *end).map(|(_, end)| *end)
}

/// Distinct counts of a fleet's verdicts on one crashed member.
pub(crate) struct CrashWatch {
    pub(crate) member: usize,
    pub(crate) at: u64,
    pub(crate) detection: Detection,
    pub(crate) holding_dead: usize,
}

impl CrashWatch {
    /// One observer's verdict: it now suspects the member, or holds it dead, of `live`.
    pub(crate) fn observe(&mut self, now: u64, suspect: bool, dead: bool, live: usize) {
        let after = now.saturating_sub(self.at);
        if suspect || dead {
            self.detection.first_suspicion.get_or_insert(after);
        }
        if dead {
            self.holding_dead += 1;
            self.detection.first_dead.get_or_insert(after);
        }
        if self.holding_dead * 100 >= live * 99 {
            self.detection.known_99.get_or_insert(after);
        }
        if self.holding_dead >= live {
            self.detection.known_all.get_or_insert(after);
        }
    }
}

struct Packet {
    to: usize,
    message: Message,
}

struct World<'a> {
    scenario: &'a Scenario,
    rng: Rng,
    nodes: Vec<Node>,
    index: HashMap<String, usize>,
    up: Vec<bool>,
    side: Vec<u8>,
    split: Option<(u64, u64)>,
    stalls: Vec<Vec<(u64, u64)>>,
    /// Messages waiting for a stalled member, read when it wakes.
    held: Vec<Vec<Message>>,
    in_flight: BinaryHeap<Reverse<(u64, u64)>>,
    packets: HashMap<u64, Packet>,
    sequence: u64,
    now: u64,
    faults_from: u64,
    faults_until: u64,
    crashed: Vec<usize>,
    slow: Vec<usize>,
    watches: Vec<CrashWatch>,
    /// Per (observer, member): the highest incarnation the observer saw it refute at.
    refuted: HashMap<(usize, usize), u64>,
    false_dead: BTreeMap<usize, usize>,
    sent_messages: u64,
    sent_bytes: u64,
    writes: Vec<(String, VersionVector)>,
    report: Report,
}

impl<'a> World<'a> {
    fn new(scenario: &'a Scenario) -> World<'a> {
        let mut rng = Rng::new(scenario.seed);
        let config = scenario.variant.config();
        let nodes: Vec<Node> = (0..scenario.nodes)
            .map(|i| {
                let name = name_of(i);
                Node::new(config.clone(), &name, &name, Tags::new(), rng.next_u64())
            })
            .collect();
        let index = (0..scenario.nodes).map(|i| (name_of(i), i)).collect();
        World {
            scenario,
            rng,
            nodes,
            index,
            up: vec![true; scenario.nodes],
            side: vec![0; scenario.nodes],
            split: None,
            stalls: vec![Vec::new(); scenario.nodes],
            held: vec![Vec::new(); scenario.nodes],
            in_flight: BinaryHeap::new(),
            packets: HashMap::new(),
            sequence: 0,
            now: 0,
            faults_from: 0,
            faults_until: 0,
            crashed: Vec::new(),
            slow: Vec::new(),
            watches: Vec::new(),
            refuted: HashMap::new(),
            false_dead: BTreeMap::new(),
            sent_messages: 0,
            sent_bytes: 0,
            writes: Vec::new(),
            report: Report::default(),
        }
    }

    fn run(mut self) -> Report {
        // Every member joins through the first.
        let seed = name_of(0);
        for node in self.nodes.iter_mut().skip(1) {
            node.join(&seed);
        }
        while self.now < FORM_TICKS && self.report.converged.is_none() {
            self.step();
            if self.now.is_multiple_of(TICKS_PER_SECOND) && self.everyone_alive() {
                self.report.converged = Some(self.now);
            }
        }
        if self.report.converged.is_none() {
            self.report.violations.push(format!("the fleet did not form within {} s", FORM_TICKS / TICKS_PER_SECOND));
            return self.report;
        }
        self.start_faults();
        let (sent_messages, sent_bytes) = (self.sent_messages, self.sent_bytes);
        while self.now < self.faults_until {
            self.write_now_and_then();
            self.step();
        }
        let live = self.up.iter().filter(|up| **up).count().max(1) as f64;
        let seconds = self.scenario.fault_ticks as f64 / TICKS_PER_SECOND as f64;
        self.report.messages_per_member_second = (self.sent_messages - sent_messages) as f64 / live / seconds;
        self.report.bytes_per_member_second = (self.sent_bytes - sent_bytes) as f64 / live / seconds;
        self.heal();
        let settle_until = self.now + self.scenario.settle_ticks;
        while self.now < settle_until && !self.settled() {
            self.step();
        }
        self.check_end();
        self.report.detections = self.watches.iter().map(|watch| watch.detection).collect();
        let slow: Vec<usize> = self.slow.clone();
        tally_false_dead(&mut self.report, &self.false_dead, &slow);
        self.report
    }

    fn start_faults(&mut self) {
        self.faults_from = self.now;
        self.faults_until = self.now + self.scenario.fault_ticks;
        let (crashed, slow) = pick_faulty(self.scenario, &mut self.rng);
        for &member in &crashed {
            self.up[member] = false;
            self.watches.push(CrashWatch { member, at: self.now, detection: Detection::default(), holding_dead: 0 });
        }
        self.crashed = crashed;
        self.slow = slow.clone();
        for member in slow {
            self.stalls[member] = stalls(self.scenario, &mut self.rng, self.faults_from, self.faults_until);
        }
        if self.scenario.partition {
            for side in self.side.iter_mut() {
                *side = self.rng.range(0, 2) as u8;
            }
            let from = self.faults_from + self.scenario.fault_ticks / 6;
            self.split = Some((from, from + self.scenario.fault_ticks / 2));
        }
    }

    fn heal(&mut self) {
        self.split = None;
        for spans in self.stalls.iter_mut() {
            spans.clear();
        }
    }

    fn split_now(&self) -> bool {
        self.split.is_some_and(|(from, until)| from <= self.now && self.now < until)
    }

    fn everyone_alive(&self) -> bool {
        let n = self.scenario.nodes;
        self.nodes
            .iter()
            .all(|node| node.members().len() == n && node.members().values().all(|member| member.state == State::Alive))
    }

    /// Every live member sees every live one alive and every crashed one dead.
    fn settled(&self) -> bool {
        if !self.now.is_multiple_of(TICKS_PER_SECOND) {
            return false;
        }
        self.misviews().is_empty() && self.kv_differs().is_none()
    }

    fn misviews(&self) -> Vec<String> {
        let mut wrong = Vec::new();
        for (observer, node) in self.nodes.iter().enumerate().filter(|(i, _)| self.up[*i]) {
            for (member, up) in self.up.iter().enumerate() {
                let state = node.members().get(&name_of(member)).map(|m| m.state);
                let right = if *up { state == Some(State::Alive) } else { state == Some(State::Dead) };
                if !right {
                    wrong.push(format!("{} sees {} as {:?}", name_of(observer), name_of(member), state));
                }
            }
        }
        wrong
    }

    fn kv_differs(&self) -> Option<String> {
        let mut live = self.nodes.iter().enumerate().filter(|(i, _)| self.up[*i]).map(|(_, node)| node);
        let first = live.next()?;
        live.find(|node| node.kv() != first.kv())
            .map(|node| format!("{} and {} hold different maps", first.name(), node.name()))
    }

    fn check_end(&mut self) {
        let wrong = self.misviews();
        if !wrong.is_empty() {
            let shown: Vec<&String> = wrong.iter().take(3).collect();
            self.report.violations.push(format!(
                "{} s after healing, {} views are wrong: {shown:?}",
                self.scenario.settle_ticks / TICKS_PER_SECOND,
                wrong.len()
            ));
        }
        if let Some(differs) = self.kv_differs() {
            self.report.violations.push(format!("the multi-writer map did not converge: {differs}"));
        }
        let Some(node) = self.nodes.iter().enumerate().find(|(i, _)| self.up[*i]).map(|(_, node)| node) else { return };
        for (key, vector) in &self.writes {
            let kept = node.kv_get(key).is_some_and(|value| value.siblings().iter().any(|(v, _)| v.descends(vector)));
            if !kept {
                self.report.violations.push(format!("a write to {key} at {vector:?} was lost"));
            }
        }
    }

    /// Some live member writes one of a few keys now and then, blind or having read first.
    fn write_now_and_then(&mut self) {
        let every = (self.scenario.fault_ticks / self.scenario.kv_writes.max(1) as u64).max(1);
        if self.scenario.kv_writes == 0 || !(self.now - self.faults_from).is_multiple_of(every) {
            return;
        }
        let writer = self.rng.range(0, self.scenario.nodes as u64) as usize;
        if !self.up[writer] || stalled_until(&self.stalls[writer], self.now).is_some() {
            return;
        }
        let key = format!("k{}", self.rng.range(0, 3));
        let node = &mut self.nodes[writer];
        let context = if self.rng.chance(1, 2) {
            node.kv_get(&key).map(|value| value.context()).unwrap_or_default()
        } else {
            VersionVector::default()
        };
        let value = format!("{}@{}", node.name(), self.now);
        let vector = node.kv_set(&key, Some(value), &context);
        self.writes.push((key, vector));
    }

    /// One tick: deliveries due, then every running member's tick; starved members catch up
    /// when they wake (timers first, then the messages that waited).
    fn step(&mut self) {
        self.now += 1;
        while let Some(Reverse((at, id))) = self.in_flight.peek().copied() {
            if at > self.now {
                break;
            }
            self.in_flight.pop();
            let packet = self.packets.remove(&id).expect("queued");
            if !self.up[packet.to] {
                continue;
            }
            if stalled_until(&self.stalls[packet.to], self.now).is_some() {
                self.held[packet.to].push(packet.message);
            } else {
                self.nodes[packet.to].step(packet.message);
            }
        }
        for i in 0..self.nodes.len() {
            if !self.up[i] || stalled_until(&self.stalls[i], self.now).is_some() {
                continue;
            }
            let behind = self.now - self.nodes[i].now();
            for _ in 0..behind {
                self.nodes[i].tick();
            }
            for message in std::mem::take(&mut self.held[i]) {
                self.nodes[i].step(message);
            }
        }
        for i in 0..self.nodes.len() {
            let messages = self.nodes[i].take_messages();
            let events = self.nodes[i].take_events();
            if !self.up[i] {
                continue;
            }
            for (to, message) in messages {
                self.route(i, to, message);
            }
            for event in events {
                self.observe(i, event);
            }
        }
    }

    fn route(&mut self, from: usize, to: String, message: Message) {
        let Some(&to) = self.index.get(&to) else { return };
        self.sent_messages += 1;
        self.sent_bytes += codec::encode(&message).len() as u64;
        let reliable = matches!(message.body, Body::PushPull { .. });
        if self.split_now() && self.side[from] != self.side[to] {
            return;
        }
        if !reliable && self.rng.chance(self.scenario.loss_ppm, 1_000_000) {
            return;
        }
        let mut delay = self.rng.range(self.scenario.latency.0, self.scenario.latency.1 + 1);
        if self.rng.chance(self.scenario.spike_ppm, 1_000_000) {
            delay += self.rng.range(self.scenario.spike.0, self.scenario.spike.1 + 1);
        }
        self.sequence += 1;
        self.packets.insert(self.sequence, Packet { to, message });
        self.in_flight.push(Reverse((self.now + delay.max(1), self.sequence)));
    }

    fn observe(&mut self, observer: usize, event: Event) {
        let Event::Member { name, state, incarnation } = event else { return };
        let Some(&member) = self.index.get(&name) else { return };
        let live = self.up.iter().filter(|up| **up).count();
        if let Some(watch) = self.watches.iter_mut().find(|watch| watch.member == member) {
            // A crashed member never refutes: once held dead, it stays so.
            watch.observe(self.now, state == State::Suspect, state == State::Dead, live);
            return;
        }
        match state {
            State::Alive => {
                let refuted = self.refuted.entry((observer, member)).or_default();
                *refuted = (*refuted).max(incarnation);
            }
            State::Dead => {
                if self.refuted.get(&(observer, member)).is_some_and(|alive| *alive > incarnation) {
                    self.report.violations.push(format!(
                        "{} declared {} dead at incarnation {incarnation} after seeing it refute past it",
                        name_of(observer),
                        name_of(member)
                    ));
                }
                let across = self.split_now() && self.side[observer] != self.side[member];
                if !across {
                    *self.false_dead.entry(member).or_default() += 1;
                }
            }
            State::Suspect | State::Left => {}
        }
    }
}

/// Counts wrong declarations of death, split between healthy members and starved ones.
pub(crate) fn tally_false_dead(report: &mut Report, declared: &BTreeMap<usize, usize>, slow: &[usize]) {
    for (member, times) in declared {
        if slow.contains(member) {
            report.starved_dead_members += 1;
        } else {
            report.false_dead_members += 1;
            report.false_dead_events += times;
        }
    }
}

/// The mean of what is known, in seconds.
pub fn mean_seconds(values: impl Iterator<Item = Option<u64>>) -> Option<f64> {
    let known: Vec<u64> = values.flatten().collect();
    (!known.is_empty()).then(|| known.iter().sum::<u64>() as f64 / known.len() as f64 / TICKS_PER_SECOND as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet(nodes: usize, variant: Variant, seed: u64) -> Scenario {
        Scenario {
            loss_ppm: 0,
            spike_ppm: 0,
            crashes: 0,
            slow: 0,
            kv_writes: 0,
            fault_ticks: 1000,
            settle_ticks: 3000,
            ..Scenario::standard(nodes, variant, seed)
        }
    }

    #[test]
    fn a_fleet_forms_through_one_seed_and_stays_whole_without_faults() {
        for variant in [Variant::Swim, Variant::Lifeguard, Variant::LifeguardPhi] {
            let report = run(&quiet(30, variant, 1));
            assert!(report.converged.is_some(), "{variant:?}");
            assert!(report.violations.is_empty(), "{variant:?}: {:?}", report.violations);
            assert_eq!(report.false_dead_members, 0, "{variant:?}");
        }
    }

    #[test]
    fn crashes_are_detected_by_everyone_and_the_map_converges_under_loss() {
        let scenario = Scenario { crashes: 3, slow: 0, ..Scenario::standard(60, Variant::Lifeguard, 7) };
        let report = run(&scenario);
        assert!(report.violations.is_empty(), "{:?}", report.violations);
        assert_eq!(report.detections.len(), 3);
        for detection in &report.detections {
            let known = detection.known_all.expect("known to all");
            assert!(detection.first_suspicion <= detection.first_dead);
            assert!(known < 60 * TICKS_PER_SECOND, "{detection:?}");
        }
    }

    #[test]
    fn a_partition_heals_into_one_fleet() {
        let scenario =
            Scenario { partition: true, crashes: 0, slow: 0, ..Scenario::standard(40, Variant::Lifeguard, 3) };
        let report = run(&scenario);
        assert!(report.violations.is_empty(), "{:?}", report.violations);
    }

    /// Runs `seeds` of `variant` at 100 members on two threads.
    fn many(variant: Variant, seeds: std::ops::Range<u64>, fault_ticks: u64) -> Vec<Report> {
        let seeds: Vec<u64> = seeds.collect();
        let halves: Vec<Vec<u64>> = seeds.chunks(seeds.len().div_ceil(2)).map(<[u64]>::to_vec).collect();
        std::thread::scope(|scope| {
            let workers: Vec<_> = halves
                .into_iter()
                .map(|half| {
                    scope.spawn(move || {
                        half.into_iter()
                            .map(|seed| run(&Scenario { fault_ticks, ..Scenario::standard(100, variant, seed) }))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers.into_iter().flat_map(|worker| worker.join().unwrap()).collect()
        })
    }

    #[test]
    fn two_hundred_seeds_of_a_hundred_members_break_no_invariant() {
        for (seed, report) in many(Variant::Lifeguard, 0..200, 3000).iter().enumerate() {
            assert!(report.violations.is_empty(), "seed {seed}: {:?}", report.violations);
            assert!(report.detections.iter().all(|d| d.known_all.is_some()), "seed {seed}: {:?}", report.detections);
        }
    }

    #[test]
    fn lifeguard_spares_healthy_members_that_plain_swim_declares_dead() {
        let swim: usize = many(Variant::Swim, 0..20, 6000).iter().map(|r| r.false_dead_members).sum();
        let lifeguard: usize = many(Variant::Lifeguard, 0..20, 6000).iter().map(|r| r.false_dead_members).sum();
        assert!(swim >= 20, "the starved members should fool plain SWIM: {swim}");
        assert!(lifeguard * 10 <= swim, "lifeguard {lifeguard}, swim {swim}");
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let scenario = Scenario::standard(40, Variant::LifeguardPhi, 11);
        let (a, b) = (run(&scenario), run(&scenario));
        assert_eq!(a.detections, b.detections);
        assert_eq!(
            (a.false_dead_events, a.messages_per_member_second),
            (b.false_dead_events, b.messages_per_member_second)
        );
    }
}
