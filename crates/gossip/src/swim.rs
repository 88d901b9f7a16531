//! SWIM membership (Das, Gupta, Motivala, 2002) with Lifeguard (Dadgar et al., 2018), as a
//! pure state machine.
//!
//! Each protocol period a member probes one other, chosen by shuffled round robin; without an
//! ack in time it asks `indirect_checks` others to probe it (ping-req); without any ack by the
//! period's end it suspects it. A suspect that hears of its suspicion refutes it with a higher
//! incarnation; one not refuted within the suspicion timeout is declared dead. News rides on
//! probes and acks and on a few gossip messages per period, each item a bounded number of
//! times; a periodic push-pull of the whole state with one random member (anti-entropy) heals
//! what gossip missed, partitions included (it sometimes picks a dead member, which, if alive,
//! refutes its death).
//!
//! Lifeguard's three extensions, switched together by [`Config::lifeguard`]:
//! - *local health awareness*: a score that rises when this member misses acks and nacks it
//!   should have had (the sign that it, not its peers, is slow) and falls with each answered
//!   probe; probe periods and timeouts stretch by `score + 1`;
//! - *dynamic suspicion*: a suspicion starts with a long timeout that shrinks toward the
//!   plain one as independent members confirm it;
//! - *the buddy system*: a member probing a suspect tells it first thing that it is suspected.
//!
//! With [`Detector::Phi`] a missed probe is held open past its period until the target's
//! round-trip history says the ack is no longer coming (φ over the threshold), instead of a
//! fixed timeout.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ballot_raft::rng::Rng;

use crate::codec;
use crate::message::{Body, Message};
use crate::news::{Meta, News, Query, Queue, State, Tags, Update, UserEvent};
use crate::phi::{PhiConfig, PhiDetector};
use crate::version_vector::{VersionVector, Versioned};

/// What turns a missed probe into a suspicion.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Detector {
    /// No ack by the end of the probe period (SWIM).
    Timeout,
    /// No ack by the end of the probe period, and φ of the wait over the target's round trips
    /// (or all round trips, while the target has too few) above the threshold.
    Phi(PhiConfig),
}

/// The protocol's settings, in ticks.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Ticks per protocol period (one probe each).
    pub probe_interval: u64,
    /// Ticks to wait for a direct ack before asking others.
    pub probe_timeout: u64,
    /// Members asked to probe indirectly.
    pub indirect_checks: usize,
    /// The plain suspicion timeout: this many periods times log10(members), at least once.
    pub suspicion_mult: u64,
    /// Lifeguard: a suspicion's longest timeout, as a multiple of the plain one.
    pub suspicion_max_mult: u64,
    /// Each item is sent this many times times ⌈log10(members + 1)⌉.
    pub retransmit_mult: u64,
    /// Ticks between gossip rounds (news only, sent when there is news).
    pub gossip_interval: u64,
    /// Members each gossip round goes to.
    pub gossip_nodes: usize,
    /// Ticks a dead member still gets gossip (so it learns of its death and refutes).
    pub gossip_to_dead: u64,
    /// Ticks between push-pulls (0: never), stretched in large fleets as memberlist does.
    pub push_pull_interval: u64,
    /// Largest message, bytes (a UDP packet's safe size).
    pub max_message_bytes: usize,
    /// Lifeguard's extensions on or off.
    pub lifeguard: bool,
    /// Lifeguard: the highest local health score.
    pub awareness_max: u32,
    /// What turns a missed probe into a suspicion.
    pub detector: Detector,
}

impl Config {
    /// memberlist's LAN settings (which serf uses), at a 10 ms tick.
    pub fn lan() -> Config {
        Config {
            probe_interval: 100,
            probe_timeout: 50,
            indirect_checks: 3,
            suspicion_mult: 4,
            suspicion_max_mult: 6,
            retransmit_mult: 4,
            gossip_interval: 20,
            gossip_nodes: 3,
            gossip_to_dead: 3000,
            push_pull_interval: 3000,
            max_message_bytes: 1400,
            lifeguard: true,
            awareness_max: 8,
            detector: Detector::Timeout,
        }
    }

    /// φ settings at a 10 ms tick (samples are round trips in ticks).
    pub fn phi_at_10ms() -> PhiConfig {
        PhiConfig { threshold: 8.0, window: 64, min_std_dev_ms: 5.0, acceptable_pause_ms: 0.0, first_interval_ms: 1.0 }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::lan()
    }
}

/// What this node knows of one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its incarnation (raised only by itself: to refute, to change tags, on rejoining).
    pub incarnation: u64,
    /// Its state.
    pub state: State,
    /// The tick its state last changed.
    pub since: u64,
    /// Its address and tags.
    pub meta: Meta,
}

/// A change this node observed, for the runtime and the simulator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A member's state changed (joined, suspected, refuted, failed, left).
    Member {
        /// Who.
        name: String,
        /// Its new state.
        state: State,
        /// At which incarnation.
        incarnation: u64,
    },
    /// A member alive already changed its tags or address.
    Updated(String),
    /// A user event arrived (once per event).
    User(UserEvent),
    /// A query arrived (the runtime may [`Node::respond`]).
    Query(Query),
    /// An answer to one of this node's queries.
    QueryResponse {
        /// The query.
        id: u64,
        /// Who answers.
        responder: String,
        /// The answer.
        payload: Vec<u8>,
    },
    /// A key of the multi-writer map changed here.
    Kv(String),
}

/// The probe of the current period.
#[derive(Clone, Debug)]
struct Probe {
    target: String,
    seq: u64,
    sent: u64,
    /// This period's length and direct timeout (Lifeguard stretches both).
    interval: u64,
    timeout: u64,
    indirect_sent: bool,
    acked: bool,
    nacks_expected: u32,
    nacks: u32,
}

/// A ping-req this node is carrying out for another member.
#[derive(Clone, Debug)]
struct Relay {
    asker_addr: String,
    their_seq: u64,
    nack_at: Option<u64>,
    drop_at: u64,
}

/// A suspicion this node holds (Lifeguard: with its confirmations).
#[derive(Clone, Debug)]
struct Suspicion {
    incarnation: u64,
    start: u64,
    confirmers: BTreeSet<String>,
}

/// Counts for the simulator and the runtime's metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Probes that failed (no ack at all).
    pub probes_failed: u64,
    /// Suspicions of this node it refuted.
    pub refutations: u64,
}

/// Event identities remembered, so each is delivered once (older ones are refused as stale).
const EVENTS_REMEMBERED: u64 = 1024;
/// Query identities remembered.
const QUERIES_REMEMBERED: usize = 4096;
/// Multi-writer keys are text; a key or value past this is refused.
pub const MAX_KV_BYTES: usize = 512;

/// One member's protocol state.
#[derive(Clone, Debug)]
pub struct Node {
    config: Config,
    name: String,
    incarnation: u64,
    meta: Meta,
    leaving: bool,
    members: BTreeMap<String, Member>,
    /// Every other member ever known, for random picks.
    roster: Vec<String>,
    tick: u64,
    rng: Rng,
    order: Vec<String>,
    next_in_order: usize,
    seq: u64,
    probe: Option<Probe>,
    next_probe_at: u64,
    relays: BTreeMap<u64, Relay>,
    suspicions: BTreeMap<String, Suspicion>,
    news: Queue,
    outbox: Vec<(String, Message)>,
    events: Vec<Event>,
    /// Lifeguard's local health score (0: healthy).
    health: u32,
    /// Round trips of every probe, and of each target's (φ mode).
    round_trips: PhiDetector,
    round_trips_of: BTreeMap<String, PhiDetector>,
    next_gossip_at: u64,
    next_push_pull_at: u64,
    kv: BTreeMap<String, Versioned<Option<String>>>,
    event_clock: u64,
    events_seen: BTreeSet<(u64, String)>,
    query_seq: u64,
    queries_seen: VecDeque<(String, u64)>,
    stats: Stats,
}

/// ⌈log10(n + 1)⌉, at least 1: the scale of retransmissions (memberlist's).
fn log_scale(n: usize) -> u64 {
    ((n as f64 + 1.0).log10().ceil() as u64).max(1)
}

/// log10(n), at least 1: the scale of suspicion timeouts (memberlist's).
fn suspicion_scale(n: usize) -> f64 {
    (n.max(1) as f64).log10().max(1.0)
}

/// A state's precedence at one incarnation.
fn rank(state: State) -> u8 {
    match state {
        State::Alive => 0,
        State::Suspect => 1,
        State::Dead => 2,
        State::Left => 3,
    }
}

/// Whether news `new` overrides what is known, `old` (a higher incarnation wins; at the same
/// incarnation the graver state does).
fn overrides(new: (u64, State), old: (u64, State)) -> bool {
    new.0 > old.0 || new.0 == old.0 && rank(new.1) > rank(old.1)
}

impl Node {
    /// A node named `name`, listening at `addr`, knowing only itself; `seed` drives its random
    /// choices.
    pub fn new(config: Config, name: &str, addr: &str, tags: Tags, seed: u64) -> Node {
        let meta = Meta { addr: addr.to_string(), tags };
        let mut members = BTreeMap::new();
        members.insert(name.to_string(), Member { incarnation: 0, state: State::Alive, since: 0, meta: meta.clone() });
        let phi = match config.detector {
            Detector::Phi(phi) => phi,
            Detector::Timeout => Config::phi_at_10ms(),
        };
        let mut rng = Rng::new(seed);
        // Members started together do not probe in lockstep.
        let next_probe_at = rng.range(1, config.probe_interval.max(1) + 1);
        let next_push_pull_at = rng.range(1, config.push_pull_interval.max(1) + 1);
        Node {
            name: name.to_string(),
            incarnation: 0,
            meta,
            leaving: false,
            members,
            roster: Vec::new(),
            tick: 0,
            rng,
            order: Vec::new(),
            next_in_order: 0,
            seq: 0,
            probe: None,
            next_probe_at,
            relays: BTreeMap::new(),
            suspicions: BTreeMap::new(),
            news: Queue::default(),
            outbox: Vec::new(),
            events: Vec::new(),
            health: 0,
            round_trips: PhiDetector::new(PhiConfig { window: 256, ..phi }),
            round_trips_of: BTreeMap::new(),
            next_gossip_at: config.gossip_interval,
            next_push_pull_at,
            kv: BTreeMap::new(),
            event_clock: 0,
            events_seen: BTreeSet::new(),
            query_seq: 0,
            queries_seen: VecDeque::new(),
            stats: Stats::default(),
            config,
        }
    }

    /// Starts at `incarnation` (a restarted member that remembers its last one): news of its
    /// former life's death or departure is then already overtaken.
    pub fn with_incarnation(mut self, incarnation: u64) -> Node {
        self.incarnation = incarnation;
        let me = self.members.get_mut(&self.name).expect("a node knows itself");
        me.incarnation = incarnation;
        self
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This node's incarnation.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Every member this node knows of, itself included.
    pub fn members(&self) -> &BTreeMap<String, Member> {
        &self.members
    }

    /// Lifeguard's local health score (0 is healthy; probes stretch by score + 1).
    pub fn health(&self) -> u32 {
        self.health
    }

    /// φ of `member` right now, if this node is probing it and waiting (φ mode), else 0.
    pub fn phi_of(&self, member: &str) -> f64 {
        match &self.probe {
            Some(probe) if probe.target == member && !probe.acked => self.phi(probe),
            _ => 0.0,
        }
    }

    /// News items still to be gossiped (a leaving node waits for its goodbye to go out).
    pub fn news_pending(&self) -> usize {
        self.news.len()
    }

    /// Ticks so far.
    pub fn now(&self) -> u64 {
        self.tick
    }

    /// Counts so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Messages to send, as (address, message).
    pub fn take_messages(&mut self) -> Vec<(String, Message)> {
        std::mem::take(&mut self.outbox)
    }

    /// Changes observed since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Joins the fleet through a member at `addr` (name unknown): a push-pull exchanges the
    /// whole state both ways.
    pub fn join(&mut self, addr: &str) {
        let body = self.state_body(true);
        self.send(addr, body);
    }

    /// Leaves the fleet: tells everyone (keep ticking a little while the news spreads) and
    /// stops probing. Members then list it as left, not failed.
    pub fn leave(&mut self) {
        self.leaving = true;
        self.probe = None;
        let update = self.own_update(State::Left);
        self.set_own_state(State::Left);
        self.news.push(News::Member(update));
    }

    /// Replaces this node's tags (news at a new incarnation).
    pub fn set_tags(&mut self, tags: Tags) {
        self.meta.tags = tags;
        self.incarnation += 1;
        let me = self.members.get_mut(&self.name).expect("a node knows itself");
        me.incarnation = self.incarnation;
        me.meta = self.meta.clone();
        let update = self.own_update(State::Alive);
        self.news.push(News::Member(update));
    }

    /// Sends a user event to every member (and delivers it here).
    pub fn event(&mut self, name: &str, payload: Vec<u8>) {
        self.event_clock += 1;
        let event = UserEvent { ltime: self.event_clock, origin: self.name.clone(), name: name.to_string(), payload };
        self.take_event(event);
    }

    /// Asks every member; answers arrive as [`Event::QueryResponse`]. Returns the query's id.
    pub fn query(&mut self, name: &str, payload: Vec<u8>) -> u64 {
        self.query_seq += 1;
        let query = Query {
            id: self.query_seq,
            origin: self.name.clone(),
            origin_addr: self.meta.addr.clone(),
            name: name.to_string(),
            payload,
        };
        self.take_query(query);
        self.query_seq
    }

    /// Answers a query this node received.
    pub fn respond(&mut self, query: &Query, payload: Vec<u8>) {
        if query.origin == self.name {
            self.events.push(Event::QueryResponse { id: query.id, responder: self.name.clone(), payload });
            return;
        }
        let body = Body::QueryResponse { id: query.id, responder: self.name.clone(), payload };
        self.send(&query.origin_addr, body);
    }

    /// A key of the multi-writer map: every sibling (a `None` sibling is a deletion).
    pub fn kv_get(&self, key: &str) -> Option<&Versioned<Option<String>>> {
        self.kv.get(key)
    }

    /// The whole multi-writer map.
    pub fn kv(&self) -> &BTreeMap<String, Versioned<Option<String>>> {
        &self.kv
    }

    /// Writes `value` (`None` deletes) under `key`, having seen `context` (what a read
    /// returned; empty for a blind write): siblings the context covers are replaced, others
    /// stay beside it. Always succeeds locally, partition or not; gossip spreads it.
    pub fn kv_set(&mut self, key: &str, value: Option<String>, context: &VersionVector) -> VersionVector {
        let entry = self.kv.entry(key.to_string()).or_default();
        let vector = entry.write(&self.name, value, context);
        let merged = entry.clone();
        self.news.push(News::Kv(key.to_string(), merged));
        self.events.push(Event::Kv(key.to_string()));
        vector
    }

    /// One tick of time.
    pub fn tick(&mut self) {
        self.tick += 1;
        self.expire_suspicions();
        self.expire_relays();
        if !self.leaving {
            self.advance_probe();
        }
        if self.tick >= self.next_gossip_at {
            self.next_gossip_at = self.tick + self.config.gossip_interval.max(1);
            self.gossip();
        }
        if self.config.push_pull_interval > 0 && self.tick >= self.next_push_pull_at {
            self.next_push_pull_at = self.tick + self.push_pull_interval();
            self.push_pull();
        }
    }

    /// Takes in a message from another member.
    pub fn step(&mut self, message: Message) {
        let Message { from, from_addr, body, news } = message;
        for item in news {
            self.take_news(item);
        }
        match body {
            Body::Ping { seq, to } => {
                if to == self.name {
                    let about = self.name.clone();
                    self.send(&from_addr, Body::Ack { seq, about });
                }
            }
            Body::PingReq { seq, target, target_addr, nack } => {
                self.seq += 1;
                let nack_at = nack.then_some(self.tick + self.config.probe_timeout * 8 / 10);
                let drop_at = self.tick + self.config.probe_interval;
                self.relays.insert(self.seq, Relay { asker_addr: from_addr, their_seq: seq, nack_at, drop_at });
                let ping = Body::Ping { seq: self.seq, to: target };
                self.send(&target_addr, ping);
            }
            Body::Ack { seq, about } => self.take_ack(seq, about),
            Body::Nack { seq } => {
                if let Some(probe) = self.probe.as_mut().filter(|probe| probe.seq == seq) {
                    probe.nacks += 1;
                }
            }
            Body::Gossip => {}
            Body::PushPull { members, kv, event_clock, reply } => {
                self.merge_state(&from, members, kv, event_clock);
                if reply {
                    let body = self.state_body(false);
                    self.send(&from_addr, body);
                }
            }
            Body::QueryResponse { id, responder, payload } => {
                self.events.push(Event::QueryResponse { id, responder, payload });
            }
        }
    }

    fn take_ack(&mut self, seq: u64, about: String) {
        if let Some(relay) = self.relays.remove(&seq) {
            self.send(&relay.asker_addr, Body::Ack { seq: relay.their_seq, about });
            return;
        }
        let now = self.tick;
        let Some(probe) = self.probe.as_mut().filter(|probe| probe.seq == seq && probe.target == about) else {
            return;
        };
        if probe.acked {
            return;
        }
        probe.acked = true;
        let round_trip = (now - probe.sent) as f64;
        if let Detector::Phi(phi) = self.config.detector {
            self.round_trips.sample(round_trip);
            self.round_trips_of.entry(about).or_insert_with(|| PhiDetector::new(phi)).sample(round_trip);
        }
        self.health = self.health.saturating_sub(1);
    }

    /// Moves this period's probe along: ping-reqs after the direct timeout, a verdict at the
    /// period's end, and the next probe.
    fn advance_probe(&mut self) {
        if let Some(probe) = self.probe.clone() {
            let elapsed = self.tick - probe.sent;
            if !probe.acked && !probe.indirect_sent && elapsed >= probe.timeout {
                self.send_ping_reqs(&probe);
            }
            if elapsed < probe.interval {
                return;
            }
            if !probe.acked {
                if !self.gives_up(&probe, elapsed) {
                    return;
                }
                self.stats.probes_failed += 1;
                self.suspect(&probe.target);
                // Lifeguard: missed nacks mean this node hears badly; with none expected, the
                // failed probe itself counts once.
                let missed =
                    if probe.nacks_expected > 0 { probe.nacks_expected.saturating_sub(probe.nacks) } else { 1 };
                self.adjust_health(missed as i64);
            }
            self.probe = None;
        }
        if self.tick >= self.next_probe_at {
            self.start_probe();
        }
    }

    fn gives_up(&self, probe: &Probe, elapsed: u64) -> bool {
        match self.config.detector {
            Detector::Timeout => true,
            Detector::Phi(phi) => elapsed >= 3 * probe.interval || self.phi(probe) > phi.threshold,
        }
    }

    /// φ of the current wait for `probe`'s ack, over the target's round trips once it has a
    /// few, else over every probe's (0 while there are none: the fixed timeout decides).
    fn phi(&self, probe: &Probe) -> f64 {
        let elapsed = (self.tick - probe.sent) as f64;
        match self.round_trips_of.get(&probe.target) {
            Some(detector) if detector.samples() >= 4 => detector.phi_after(elapsed),
            _ if self.round_trips.samples() == 0 => f64::INFINITY,
            _ => self.round_trips.phi_after(elapsed),
        }
    }

    fn adjust_health(&mut self, delta: i64) {
        if self.config.lifeguard {
            self.health = (i64::from(self.health) + delta).clamp(0, i64::from(self.config.awareness_max)) as u32;
        }
    }

    /// A period or timeout stretched by the local health score.
    fn scaled(&self, ticks: u64) -> u64 {
        ticks * (u64::from(self.health) + 1)
    }

    fn start_probe(&mut self) {
        let interval = self.scaled(self.config.probe_interval);
        self.next_probe_at = self.tick + interval;
        let Some(target) = self.next_target() else { return };
        let member = &self.members[&target];
        let addr = member.meta.addr.clone();
        // The buddy system: a suspect hears of its suspicion from whoever probes it.
        if self.config.lifeguard && member.state == State::Suspect {
            let update = Update {
                member: target.clone(),
                incarnation: member.incarnation,
                state: State::Suspect,
                from: self.name.clone(),
                meta: None,
            };
            self.news.front(News::Member(update));
        }
        self.seq += 1;
        self.probe = Some(Probe {
            target: target.clone(),
            seq: self.seq,
            sent: self.tick,
            interval,
            timeout: self.scaled(self.config.probe_timeout),
            indirect_sent: false,
            acked: false,
            nacks_expected: 0,
            nacks: 0,
        });
        self.send(&addr, Body::Ping { seq: self.seq, to: target });
    }

    /// The next member to probe: shuffled round robin over the live and suspect others, so
    /// every member is probed within a bounded time (SWIM's §4.3).
    fn next_target(&mut self) -> Option<String> {
        for _ in 0..2 {
            while self.next_in_order < self.order.len() {
                let candidate = self.order[self.next_in_order].clone();
                self.next_in_order += 1;
                if self.members.get(&candidate).is_some_and(|member| probed(member.state)) {
                    return Some(candidate);
                }
            }
            self.order = self
                .members
                .iter()
                .filter(|(name, member)| **name != self.name && probed(member.state))
                .map(|(name, _)| name.clone())
                .collect();
            shuffle(&mut self.rng, &mut self.order);
            self.next_in_order = 0;
        }
        None
    }

    /// Up to `k` distinct other members that pass `wanted`, picked at random.
    fn random_members(&mut self, k: usize, wanted: impl Fn(&str, &Member) -> bool) -> Vec<String> {
        let mut picked = Vec::new();
        if self.roster.len() <= 4 * k.max(8) {
            let mut all: Vec<String> =
                self.roster.iter().filter(|name| wanted(name, &self.members[*name])).cloned().collect();
            shuffle(&mut self.rng, &mut all);
            all.truncate(k);
            return all;
        }
        for _ in 0..8 * k {
            if picked.len() == k {
                break;
            }
            let name = &self.roster[self.rng.range(0, self.roster.len() as u64) as usize];
            if !picked.contains(name) && wanted(name, &self.members[name]) {
                picked.push(name.clone());
            }
        }
        picked
    }

    fn send_ping_reqs(&mut self, probe: &Probe) {
        let target = probe.target.clone();
        let helpers = self
            .random_members(self.config.indirect_checks, |name, member| name != target && member.state == State::Alive);
        let target_addr = self.members[&probe.target].meta.addr.clone();
        let nack = self.config.lifeguard;
        for helper in &helpers {
            let addr = self.members[helper].meta.addr.clone();
            let body = Body::PingReq { seq: probe.seq, target: target.clone(), target_addr: target_addr.clone(), nack };
            self.send(&addr, body);
        }
        if let Some(current) = self.probe.as_mut() {
            current.indirect_sent = true;
            current.nacks_expected = if nack { helpers.len() as u32 } else { 0 };
        }
    }

    fn expire_relays(&mut self) {
        let now = self.tick;
        let mut nacks = Vec::new();
        for relay in self.relays.values_mut() {
            if relay.nack_at.is_some_and(|at| at <= now) {
                relay.nack_at = None;
                nacks.push((relay.asker_addr.clone(), relay.their_seq));
            }
        }
        for (addr, seq) in nacks {
            self.send(&addr, Body::Nack { seq });
        }
        self.relays.retain(|_, relay| relay.drop_at > now);
    }

    fn suspect(&mut self, target: &str) {
        let Some(member) = self.members.get(target) else { return };
        if member.state == State::Alive {
            let update = Update {
                member: target.to_string(),
                incarnation: member.incarnation,
                state: State::Suspect,
                from: self.name.clone(),
                meta: None,
            };
            self.take_update(update);
        }
    }

    /// The plain suspicion timeout, and Lifeguard's longest.
    fn suspicion_bounds(&self) -> (u64, u64) {
        let periods = self.config.suspicion_mult as f64 * suspicion_scale(self.members.len());
        let min = (periods * self.config.probe_interval as f64) as u64;
        let max = if self.config.lifeguard { self.config.suspicion_max_mult * min } else { min };
        (min, max)
    }

    /// How long a suspicion with `confirmations` independent confirmations lasts: Lifeguard's
    /// max − (max − min)·log(c + 1)/log(k + 1), where k confirmations are expected.
    fn suspicion_timeout(&self, confirmations: usize) -> u64 {
        let (min, max) = self.suspicion_bounds();
        let expected = self.config.indirect_checks.min(self.members.len().saturating_sub(2));
        if !self.config.lifeguard || expected == 0 || confirmations >= expected {
            return min;
        }
        let fraction = ((confirmations + 1) as f64).ln() / ((expected + 1) as f64).ln();
        let timeout = max as f64 - (max - min) as f64 * fraction;
        (timeout.floor() as u64).max(min)
    }

    /// Suspects not refuted in time are declared dead.
    fn expire_suspicions(&mut self) {
        if self.suspicions.is_empty() {
            return;
        }
        let expired: Vec<(String, u64)> = self
            .suspicions
            .iter()
            .filter(|(_, suspicion)| {
                self.tick - suspicion.start >= self.suspicion_timeout(suspicion.confirmers.len().saturating_sub(1))
            })
            .map(|(name, suspicion)| (name.clone(), suspicion.incarnation))
            .collect();
        for (member, incarnation) in expired {
            self.suspicions.remove(&member);
            let from = self.name.clone();
            self.take_update(Update { member, incarnation, state: State::Dead, from, meta: None });
        }
    }

    fn own_update(&self, state: State) -> Update {
        Update {
            member: self.name.clone(),
            incarnation: self.incarnation,
            state,
            from: self.name.clone(),
            meta: (state == State::Alive).then(|| self.meta.clone()),
        }
    }

    fn set_own_state(&mut self, state: State) {
        let me = self.members.get_mut(&self.name).expect("a node knows itself");
        me.state = state;
        me.incarnation = self.incarnation;
    }

    fn take_news(&mut self, news: News) {
        match news {
            News::Member(update) => self.take_update(update),
            News::Kv(key, value) => self.take_kv(key, value),
            News::Event(event) => self.take_event(event),
            News::Query(query) => self.take_query(query),
        }
    }

    /// Takes in news of a member: kept and passed on if it overrides what this node knew.
    /// News of this node's own suspicion, death or departure is refuted.
    fn take_update(&mut self, update: Update) {
        if update.member == self.name {
            self.take_news_of_self(update);
            return;
        }
        let Some(known) = self.members.get(&update.member) else {
            // A stranger is met through its own Alive only (that carries where it listens).
            if update.state == State::Alive && update.meta.is_some() {
                self.admit(update);
            }
            return;
        };
        let old = (known.incarnation, known.state);
        if update.state == State::Suspect && old == (update.incarnation, State::Suspect) {
            self.confirm(update);
            return;
        }
        if !overrides((update.incarnation, update.state), old) {
            return;
        }
        let member = self.members.get_mut(&update.member).expect("known");
        member.incarnation = update.incarnation;
        member.since = self.tick;
        let tags_changed = update.meta.as_ref().is_some_and(|meta| *meta != member.meta);
        if let Some(meta) = &update.meta {
            member.meta = meta.clone();
        }
        if member.state == update.state {
            if tags_changed {
                self.events.push(Event::Updated(update.member.clone()));
            }
        } else {
            member.state = update.state;
            self.events.push(Event::Member {
                name: update.member.clone(),
                state: update.state,
                incarnation: update.incarnation,
            });
        }
        self.suspicions.remove(&update.member);
        if update.state == State::Suspect {
            let confirmers = BTreeSet::from([update.from.clone()]);
            let suspicion = Suspicion { incarnation: update.incarnation, start: self.tick, confirmers };
            self.suspicions.insert(update.member.clone(), suspicion);
        }
        self.news.push(News::Member(update));
    }

    fn admit(&mut self, update: Update) {
        let meta = update.meta.clone().unwrap_or_default();
        let member = Member { incarnation: update.incarnation, state: State::Alive, since: self.tick, meta };
        self.members.insert(update.member.clone(), member);
        self.roster.push(update.member.clone());
        self.events.push(Event::Member {
            name: update.member.clone(),
            state: State::Alive,
            incarnation: update.incarnation,
        });
        self.news.push(News::Member(update));
    }

    /// Lifeguard: another member independently suspects the same incarnation.
    fn confirm(&mut self, update: Update) {
        let Some(suspicion) = self.suspicions.get_mut(&update.member) else { return };
        if suspicion.incarnation == update.incarnation && suspicion.confirmers.insert(update.from.clone()) {
            // Passed on, so others count it too.
            self.news.push(News::Member(update));
        }
    }

    fn take_news_of_self(&mut self, update: Update) {
        if self.leaving {
            return;
        }
        let refute = match update.state {
            State::Alive => update.incarnation > self.incarnation,
            _ => update.incarnation >= self.incarnation,
        };
        if !refute {
            return;
        }
        self.incarnation = update.incarnation + 1;
        self.set_own_state(State::Alive);
        if update.state != State::Alive {
            self.stats.refutations += 1;
            // Lifeguard: being suspected is a sign this node is the slow one.
            self.adjust_health(1);
        }
        let alive = self.own_update(State::Alive);
        self.news.front(News::Member(alive));
    }

    fn take_kv(&mut self, key: String, value: Versioned<Option<String>>) {
        if key.len() > MAX_KV_BYTES {
            return;
        }
        let entry = self.kv.entry(key.clone()).or_default();
        let before = entry.clone();
        entry.merge(&value);
        if *entry != before {
            let merged = entry.clone();
            self.news.push(News::Kv(key.clone(), merged));
            self.events.push(Event::Kv(key));
        }
    }

    fn take_event(&mut self, event: UserEvent) {
        // Lamport: this node's clock passes every event it sees.
        self.event_clock = self.event_clock.max(event.ltime);
        let floor = self.event_clock.saturating_sub(EVENTS_REMEMBERED);
        if event.ltime <= floor || !self.events_seen.insert((event.ltime, event.origin.clone())) {
            return;
        }
        while self.events_seen.first().is_some_and(|(ltime, _)| *ltime <= floor) {
            self.events_seen.pop_first();
        }
        self.events.push(Event::User(event.clone()));
        self.news.push(News::Event(event));
    }

    fn take_query(&mut self, query: Query) {
        let identity = (query.origin.clone(), query.id);
        if self.queries_seen.contains(&identity) {
            return;
        }
        self.queries_seen.push_back(identity);
        if self.queries_seen.len() > QUERIES_REMEMBERED {
            self.queries_seen.pop_front();
        }
        self.events.push(Event::Query(query.clone()));
        self.news.push(News::Query(query));
    }

    /// Takes in another member's whole state. Its "dead" is taken as "suspect" here (memberlist's
    /// caution: one member's verdict does not kill a member this one still hears from; if it is
    /// dead, the suspicion runs out).
    fn merge_state(
        &mut self,
        from: &str,
        members: Vec<Update>,
        kv: Vec<(String, Versioned<Option<String>>)>,
        event_clock: u64,
    ) {
        for mut update in members {
            if update.state == State::Dead && update.member != self.name {
                update.state = State::Suspect;
                update.from = from.to_string();
            }
            self.take_update(update);
        }
        for (key, value) in kv {
            self.take_kv(key, value);
        }
        self.event_clock = self.event_clock.max(event_clock);
    }

    fn state_body(&self, reply: bool) -> Body {
        let members = self
            .members
            .iter()
            .map(|(name, member)| Update {
                member: name.clone(),
                incarnation: member.incarnation,
                state: member.state,
                from: self.name.clone(),
                meta: Some(member.meta.clone()),
            })
            .collect();
        let kv = self.kv.iter().map(|(key, value)| (key.clone(), value.clone())).collect();
        Body::PushPull { members, kv, event_clock: self.event_clock, reply }
    }

    /// memberlist's push-pull scaling: past 32 members, one more interval per doubling.
    fn push_pull_interval(&self) -> u64 {
        let n = self.members.len().max(1) as f64;
        let doublings = (n.log2() - 32f64.log2()).ceil().max(0.0) as u64;
        self.config.push_pull_interval * (doublings + 1)
    }

    /// Push-pull with one member: usually a live one; with a chance as large as the dead's
    /// share of the fleet, a dead one (not left), which heals partitions: if it is alive, it
    /// learns of its death and refutes it, and each side learns the other's state.
    fn push_pull(&mut self) {
        let dead = self.members.values().filter(|member| member.state == State::Dead).count();
        let alive = self.members.len() - dead;
        let want =
            if dead > 0 && self.rng.chance(dead as u64, (alive + dead) as u64) { State::Dead } else { State::Alive };
        let Some(peer) = self.random_members(1, |_, member| member.state == want).pop() else { return };
        let addr = self.members[&peer].meta.addr.clone();
        let body = self.state_body(true);
        self.send(&addr, body);
    }

    /// A gossip round: news to a few members (live or suspect, or dead not long ago).
    fn gossip(&mut self) {
        if self.news.is_empty() {
            return;
        }
        let now = self.tick;
        let to_dead = self.config.gossip_to_dead;
        let peers = self.random_members(self.config.gossip_nodes, |_, member| match member.state {
            State::Alive | State::Suspect => true,
            State::Dead | State::Left => now - member.since < to_dead,
        });
        for peer in peers {
            let addr = self.members[&peer].meta.addr.clone();
            self.send(&addr, Body::Gossip);
        }
    }

    /// Sends `body` with as much news as fits (none on a push-pull: it carries everything).
    fn send(&mut self, addr: &str, body: Body) {
        let mut message =
            Message { from: self.name.clone(), from_addr: self.meta.addr.clone(), body, news: Vec::new() };
        if !matches!(message.body, Body::PushPull { .. }) {
            let budget = self.config.max_message_bytes.saturating_sub(codec::header_len(&message));
            let limit = self.config.retransmit_mult * log_scale(self.members.len());
            message.news = self.news.take(budget, limit);
            if matches!(message.body, Body::Gossip) && message.news.is_empty() {
                return;
            }
        }
        self.outbox.push((addr.to_string(), message));
    }
}

/// Whether members in `state` are probed.
fn probed(state: State) -> bool {
    matches!(state, State::Alive | State::Suspect)
}

/// Fisher–Yates with the node's seeded generator.
fn shuffle(rng: &mut Rng, items: &mut [String]) {
    for i in (1..items.len()).rev() {
        let j = rng.range(0, i as u64 + 1) as usize;
        items.swap(i, j);
    }
}
