//! The baseline the chapter starts from: every member sends a heartbeat to every other each
//! second and declares a peer dead after a fixed timeout without one (and alive again when
//! one comes). Simulated under the same [`Scenario`] as SWIM — the same crashes, starved
//! members, loss, spikes and partition, chosen by the same seed — to show what gossip buys:
//! the load per member grows with the fleet, and a starved member blames everyone.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use ballot_raft::rng::Rng;

use crate::codec;
use crate::message::{Body, Message};
use crate::sim::{name_of, pick_faulty, stalled_until, stalls, CrashWatch, Detection, Report, Scenario};

/// Ticks between heartbeats.
pub const INTERVAL: u64 = 100;
/// Ticks of silence before a peer is declared dead (five heartbeats).
pub const TIMEOUT: u64 = 500;

/// Runs the all-to-all baseline under `scenario` (its formation is instant: everyone is
/// configured with everyone).
pub fn run(scenario: &Scenario) -> Report {
    let n = scenario.nodes;
    let mut rng = Rng::new(scenario.seed);
    let (crashed, slow) = pick_faulty(scenario, &mut rng);
    let faults_until = scenario.fault_ticks;
    let mut schedule = vec![Vec::new(); n];
    for &member in &slow {
        schedule[member] = stalls(scenario, &mut rng, 0, faults_until);
    }
    let split_at =
        scenario.partition.then(|| (scenario.fault_ticks / 6, scenario.fault_ticks / 6 + scenario.fault_ticks / 2));
    let side: Vec<u8> = (0..n).map(|_| rng.range(0, 2) as u8).collect();
    let split = |at: u64, a: usize, b: usize| {
        split_at.is_some_and(|(from, until)| from <= at && at < until) && side[a] != side[b]
    };

    let mut up = vec![true; n];
    let mut watches: Vec<CrashWatch> = crashed
        .iter()
        .map(|&member| CrashWatch { member, at: 0, detection: Detection::default(), holding_dead: 0 })
        .collect();
    for &member in &crashed {
        up[member] = false;
    }
    let live = up.iter().filter(|up| **up).count();
    let mut heard = vec![vec![0u64; n]; n];
    let mut dead = vec![vec![false; n]; n];
    let mut pending: Vec<BinaryHeap<Reverse<(u64, u32)>>> = vec![BinaryHeap::new(); n];
    let mut false_dead: BTreeMap<usize, usize> = BTreeMap::new();
    let mut messages = 0u64;
    let heartbeat = Message { from: name_of(0), from_addr: name_of(0), body: Body::Gossip, news: Vec::new() };
    let size = codec::encode(&heartbeat).len() as u64;

    let end = faults_until + scenario.settle_ticks.min(20 * INTERVAL);
    let mut round = 0;
    while round * INTERVAL < end {
        let t = round * INTERVAL;
        // This round's heartbeats, sent when each sender is awake.
        for sender in (0..n).filter(|&i| up[i]) {
            let sent = match stalled_until(&schedule[sender], t) {
                // One heartbeat when it wakes, if that is within this round.
                Some(wake) if wake < t + INTERVAL => wake,
                Some(_) => continue,
                None => t,
            };
            for receiver in (0..n).filter(|&r| r != sender) {
                if t < faults_until {
                    messages += 1;
                }
                if !up[receiver] || split(sent, sender, receiver) || rng.chance(scenario.loss_ppm, 1_000_000) {
                    continue;
                }
                let mut arrival = sent + rng.range(scenario.latency.0, scenario.latency.1 + 1);
                if rng.chance(scenario.spike_ppm, 1_000_000) {
                    arrival += rng.range(scenario.spike.0, scenario.spike.1 + 1);
                }
                let read = stalled_until(&schedule[receiver], arrival).unwrap_or(arrival);
                pending[receiver].push(Reverse((read, sender as u32)));
            }
        }
        // Each receiver's checks in this round: at its end, and when it wakes from a stall
        // (timers first, then what waited).
        let next = t + INTERVAL;
        for receiver in (0..n).filter(|&r| up[r]) {
            let mut checks: Vec<u64> =
                schedule[receiver].iter().map(|(_, end)| *end).filter(|end| (t..next).contains(end)).collect();
            if stalled_until(&schedule[receiver], next).is_none() {
                checks.push(next);
            }
            for at in checks {
                while let Some(Reverse((read, sender))) = pending[receiver].peek().copied() {
                    if read >= at {
                        break;
                    }
                    pending[receiver].pop();
                    let sender = sender as usize;
                    heard[receiver][sender] = heard[receiver][sender].max(read);
                    dead[receiver][sender] = false;
                }
                for peer in (0..n).filter(|&p| p != receiver) {
                    if dead[receiver][peer] || at - heard[receiver][peer] <= TIMEOUT {
                        continue;
                    }
                    dead[receiver][peer] = true;
                    if let Some(watch) = watches.iter_mut().find(|watch| watch.member == peer) {
                        watch.observe(at, true, true, live);
                    } else if !split(at, receiver, peer) {
                        *false_dead.entry(peer).or_default() += 1;
                    }
                }
            }
        }
        round += 1;
    }

    let mut report = Report { converged: Some(0), ..Report::default() };
    let seconds = scenario.fault_ticks as f64 / crate::sim::TICKS_PER_SECOND as f64;
    report.messages_per_member_second = messages as f64 / live as f64 / seconds;
    report.bytes_per_member_second = (messages * size) as f64 / live as f64 / seconds;
    for receiver in (0..n).filter(|&r| up[r]) {
        for peer in (0..n).filter(|&p| p != receiver) {
            if dead[receiver][peer] == up[peer] {
                report.violations.push(format!(
                    "{} holds {} {} after healing",
                    name_of(receiver),
                    name_of(peer),
                    if up[peer] { "dead" } else { "alive" }
                ));
            }
        }
    }
    report.violations.truncate(3);
    report.detections = watches.iter().map(|watch| watch.detection).collect();
    crate::sim::tally_false_dead(&mut report, &false_dead, &slow);
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::Variant;

    #[test]
    fn crashes_are_declared_after_the_timeout_and_a_starved_member_blames_healthy_ones() {
        let scenario = Scenario { stall: (700, 1000), ..Scenario::standard(50, Variant::Heartbeat, 5) };
        let report = run(&scenario);
        assert!(report.violations.is_empty(), "{:?}", report.violations);
        for detection in &report.detections {
            let first = detection.first_dead.expect("detected");
            assert!((TIMEOUT..TIMEOUT + 2 * INTERVAL).contains(&first), "{detection:?}");
        }
        assert!(report.false_dead_members > 0, "stalls of 7–10 s outlast the 5 s timeout");
        // Each sends to all 49 others, but for the rounds the starved member sleeps through.
        let load = report.messages_per_member_second;
        assert!((47.0..=49.0).contains(&load), "{load}");
    }
}
