//! The nemesis: a seeded schedule of faults against the cluster, each held for a while and
//! then healed, logged as it happens.

use std::time::Duration;

use super::cluster::Cluster;
use super::net::CLIENTS;

/// A fault family the nemesis may choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// kill -9 a member, restart it on its data dir.
    Kill,
    /// SIGSTOP a member, SIGCONT it.
    Pause,
    /// Network faults: splits, an isolated leader, one-way cuts, a bridge, flapping, slow links.
    Partition,
    /// kill -9 or isolate whoever leads.
    Leader,
    /// Replace a member: remove it, wipe its data, add it back.
    Member,
    /// Skew a member's clocks: its wall clock jumps seconds forward or back (libfaketime), its
    /// lease clock slows to a twentieth (fault-injection builds); a leader so skewed is also
    /// cut off from its peers, so that a lease read it answers on its slow clock is stale.
    Clock,
}

impl Kind {
    /// Parses `kill,pause,partition,leader,member,clock` or `all` (which has `clock` only when
    /// `clock_faults`: libfaketime is installed).
    pub fn parse_list(text: &str, clock_faults: bool) -> anyhow::Result<Vec<Kind>> {
        let mut kinds = Vec::new();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "all" => {
                    kinds.extend([Kind::Kill, Kind::Pause, Kind::Partition, Kind::Leader, Kind::Member]);
                    if clock_faults {
                        kinds.push(Kind::Clock);
                    }
                }
                "clock" if !clock_faults => anyhow::bail!(
                    "the clock nemesis needs libfaketime (Debian: apt-get install libfaketime) to skew the members' wall clocks"
                ),
                "clock" => kinds.push(Kind::Clock),
                "kill" => kinds.push(Kind::Kill),
                "pause" => kinds.push(Kind::Pause),
                "partition" => kinds.push(Kind::Partition),
                "leader" => kinds.push(Kind::Leader),
                "member" => kinds.push(Kind::Member),
                "none" => {}
                other => {
                    anyhow::bail!("unknown nemesis {other:?} (kill, pause, partition, leader, member, clock, all, none)")
                }
            }
        }
        kinds.dedup();
        Ok(kinds)
    }
}

/// A small seeded generator (xorshift64*): the nemesis's choices repeat with the seed.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// A duration between `low` and `high` milliseconds.
    pub fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.next() % (high - low + 1))
    }
}

/// The lease clock's rate under the clock nemesis: far beyond the lease's margin (the lease is
/// the election timeout less two heartbeats, so a clock slower by more than a fifth or so
/// breaks it).
const LEASE_RATE_SKEWED: f64 = 0.05;

/// What one fault did, for the log.
pub struct Applied {
    /// What was done.
    pub what: String,
    /// How to undo it at the end of its time.
    undo: Undo,
}

enum Undo {
    Nothing,
    Restart(usize),
    Resume(usize),
    Heal,
    /// Set the member's clocks true again, and heal the network.
    Clock(usize),
}

/// Cuts every link between the two groups, both ways (the clients stay with every member).
fn split(cluster: &Cluster, left: &[usize]) {
    let n = cluster.nodes.len();
    for a in 0..n {
        for b in 0..n {
            if left.contains(&a) != left.contains(&b) {
                cluster.net.cut(a, b);
            }
        }
    }
}

fn names(cluster: &Cluster, group: &[usize]) -> String {
    group.iter().map(|i| cluster.nodes[*i].name.as_str()).collect::<Vec<_>>().join(",")
}

/// Applies one fault of `kind`, chosen by `rng`.
pub async fn apply(cluster: &mut Cluster, kind: Kind, rng: &mut Rng) -> Applied {
    let n = cluster.nodes.len();
    match kind {
        Kind::Kill => {
            let i = rng.below(n);
            cluster.kill(i).await;
            Applied { what: format!("kill -9 {}", cluster.nodes[i].name), undo: Undo::Restart(i) }
        }
        Kind::Pause => {
            let i = rng.below(n);
            cluster.pause(i);
            Applied { what: format!("SIGSTOP {}", cluster.nodes[i].name), undo: Undo::Resume(i) }
        }
        Kind::Leader => {
            let Some(leader) = cluster.leader().await else {
                return Applied { what: "no leader to fault".into(), undo: Undo::Nothing };
            };
            if rng.below(2) == 0 {
                cluster.kill(leader).await;
                Applied {
                    what: format!("kill -9 the leader {}", cluster.nodes[leader].name),
                    undo: Undo::Restart(leader),
                }
            } else {
                let others: Vec<usize> = (0..n).filter(|i| *i != leader).collect();
                split(cluster, &others);
                // Its clients are cut too: what it still answers can only come from itself.
                cluster.net.cut(CLIENTS, leader);
                Applied {
                    what: format!("isolate the leader {} (peers and clients)", cluster.nodes[leader].name),
                    undo: Undo::Heal,
                }
            }
        }
        Kind::Partition => partition(cluster, rng),
        Kind::Clock => {
            let leader = cluster.leader().await;
            // Mostly the leader: where a bad clock does harm (its stamps, its lease).
            let i = match leader {
                Some(leader) if rng.below(4) != 0 => leader,
                _ => rng.below(n),
            };
            let seconds = 1 + rng.below(3) as i64;
            let offset = if rng.below(2) == 0 { seconds } else { -seconds };
            if let Err(error) = cluster.skew_clock(i, offset, LEASE_RATE_SKEWED) {
                return Applied {
                    what: format!("skewing {}'s clock failed: {error:#}", cluster.nodes[i].name),
                    undo: Undo::Nothing,
                };
            }
            let mut what = format!(
                "clock: {} wall clock {offset:+} s, lease clock at {LEASE_RATE_SKEWED}x",
                cluster.nodes[i].name
            );
            if leader == Some(i) {
                let others: Vec<usize> = (0..n).filter(|j| *j != i).collect();
                split(cluster, &others);
                what.push_str(" (the leader; cut off from its peers, its clients still reach it)");
            }
            Applied { what, undo: Undo::Clock(i) }
        }
        Kind::Member => {
            let leader = cluster.leader().await;
            // Replacing the leader moves leadership first: worth doing too, but less often.
            let i = match leader {
                Some(leader) if rng.below(4) != 0 => (leader + 1 + rng.below(n - 1)) % n,
                _ => rng.below(n),
            };
            match cluster.replace(i).await {
                Ok(what) => Applied { what, undo: Undo::Nothing },
                Err(error) => Applied {
                    what: format!("replacing {} failed: {error:#}", cluster.nodes[i].name),
                    undo: Undo::Nothing,
                },
            }
        }
    }
}

fn partition(cluster: &mut Cluster, rng: &mut Rng) -> Applied {
    let n = cluster.nodes.len();
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let what = match rng.below(5) {
        0 => {
            let minority = &order[..(n - 1) / 2];
            split(cluster, minority);
            format!("split: {{{}}} | {{{}}}", names(cluster, minority), names(cluster, &order[(n - 1) / 2..]))
        }
        1 => {
            split(cluster, &order[..1]);
            format!("isolate {}", cluster.nodes[order[0]].name)
        }
        2 => {
            // One-way: a member hears nobody but is heard (or the reverse).
            let i = order[0];
            let inbound = rng.below(2) == 0;
            for j in (0..n).filter(|j| *j != i) {
                if inbound {
                    cluster.net.cut(j, i);
                } else {
                    cluster.net.cut(i, j);
                }
            }
            format!(
                "one-way: {} {}",
                cluster.nodes[i].name,
                if inbound { "hears nobody" } else { "is heard by nobody" }
            )
        }
        3 => {
            // A bridge: two halves that reach each other only through one member.
            let bridge = order[0];
            let half = (n - 1) / 2;
            let (left, right) = order[1..].split_at(half.max(1));
            for a in left {
                for b in right {
                    cluster.net.cut(*a, *b);
                    cluster.net.cut(*b, *a);
                }
            }
            format!(
                "bridge: {{{}}} - {} - {{{}}}",
                names(cluster, left),
                cluster.nodes[bridge].name,
                names(cluster, right)
            )
        }
        _ => {
            let delay = rng.millis(20, 200);
            for a in 0..n {
                for b in 0..n {
                    if a != b && rng.below(2) == 0 {
                        cluster.net.slow(a, b, delay);
                    }
                }
            }
            format!("slow links: about half of them delayed {} ms", delay.as_millis())
        }
    };
    Applied { what, undo: Undo::Heal }
}

/// Flapping: a random split toggled every 100-400 ms for `hold`.
pub async fn flap(cluster: &mut Cluster, rng: &mut Rng, hold: Duration) -> String {
    let n = cluster.nodes.len();
    let deadline = tokio::time::Instant::now() + hold;
    let mut flips = 0;
    while tokio::time::Instant::now() < deadline {
        let i = rng.below(n);
        split(cluster, &[i]);
        tokio::time::sleep(rng.millis(100, 400)).await;
        cluster.net.heal();
        tokio::time::sleep(rng.millis(100, 400)).await;
        flips += 1;
    }
    format!("flapping links: {flips} isolations of a random member")
}

/// Undoes a fault.
pub async fn undo(cluster: &mut Cluster, applied: &Applied) -> anyhow::Result<()> {
    match applied.undo {
        Undo::Nothing => {}
        Undo::Restart(i) => cluster.restart(i)?,
        Undo::Resume(i) => cluster.resume(i),
        Undo::Heal => cluster.net.heal(),
        Undo::Clock(i) => {
            cluster.skew_clock(i, 0, 1.0)?;
            cluster.net.heal();
        }
    }
    Ok(())
}
