//! The simulated network between nodes: per-message delay (so messages reorder), loss,
//! duplication, and partitions expressed as a set of cut directed links.

use std::collections::BTreeSet;

use ballot_raft::rng::Rng;
use ballot_raft::NodeId;

/// How unreliable the network is for one run (chosen from the seed).
#[derive(Clone, Debug)]
pub struct NetworkProfile {
    /// Chance in 1000 that a message is lost.
    pub drop_per_mille: u64,
    /// Chance in 1000 that a message is delivered twice.
    pub duplicate_per_mille: u64,
    /// Usual one-way delay range, in microseconds.
    pub delay_us_min: u64,
    /// Upper end of the usual delay.
    pub delay_us_max: u64,
    /// Chance in 1000 of a long delay (up to `long_delay_us_max`), which reorders heavily.
    pub long_delay_per_mille: u64,
    /// Longest delay.
    pub long_delay_us_max: u64,
}

impl NetworkProfile {
    /// A perfect network with a fixed small delay.
    pub fn reliable() -> Self {
        NetworkProfile {
            drop_per_mille: 0,
            duplicate_per_mille: 0,
            delay_us_min: 500,
            delay_us_max: 2_000,
            long_delay_per_mille: 0,
            long_delay_us_max: 2_000,
        }
    }

    /// A lossy, reordering, duplicating network drawn from `rng`.
    pub fn faulty(rng: &mut Rng) -> Self {
        NetworkProfile {
            drop_per_mille: rng.range(0, 100),
            duplicate_per_mille: rng.range(0, 50),
            delay_us_min: 200,
            delay_us_max: rng.range(1_000, 10_000),
            long_delay_per_mille: rng.range(0, 30),
            long_delay_us_max: rng.range(20_000, 300_000),
        }
    }
}

/// Link state and the fates of messages.
#[derive(Clone, Debug)]
pub struct Network {
    /// The profile in force.
    pub profile: NetworkProfile,
    /// Cut links (from, to).
    cut: BTreeSet<(NodeId, NodeId)>,
}

impl Network {
    /// A fully connected network.
    pub fn new(profile: NetworkProfile) -> Self {
        Network { profile, cut: BTreeSet::new() }
    }

    /// True if messages from `from` to `to` are dropped by a partition.
    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cut.contains(&(from, to))
    }

    /// Cuts one direction.
    pub fn cut_one_way(&mut self, from: NodeId, to: NodeId) {
        self.cut.insert((from, to));
    }

    /// Cuts every link between the two groups, both ways.
    pub fn split(&mut self, side_a: &[NodeId], side_b: &[NodeId]) {
        for a in side_a {
            for b in side_b {
                self.cut.insert((*a, *b));
                self.cut.insert((*b, *a));
            }
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Number of cut links.
    pub fn cut_count(&self) -> usize {
        self.cut.len()
    }

    /// Delivery of a client request or reply: lost or delayed like any message, never
    /// duplicated (the state machine has etcd's semantics, without request deduplication; see
    /// `kv.rs`).
    pub fn client_fates(&self, rng: &mut Rng) -> Vec<u64> {
        let mut fates = self.fates(rng);
        fates.truncate(1);
        fates
    }

    /// The delivery delays for one message: empty if lost, two if duplicated.
    pub fn fates(&self, rng: &mut Rng) -> Vec<u64> {
        let profile = &self.profile;
        if rng.chance(profile.drop_per_mille, 1000) {
            return Vec::new();
        }
        let copies = if rng.chance(profile.duplicate_per_mille, 1000) { 2 } else { 1 };
        (0..copies)
            .map(|_| {
                if rng.chance(profile.long_delay_per_mille, 1000) {
                    rng.range(profile.delay_us_max, profile.long_delay_us_max.max(profile.delay_us_max + 1))
                } else {
                    rng.range(profile.delay_us_min, profile.delay_us_max)
                }
            })
            .map(|us| us * 1_000)
            .collect()
    }
}
