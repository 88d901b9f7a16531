//! What a simulation run does: cluster size, faults, length, workload.

use std::fmt;

/// The kinds of fault a run may inject.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Message loss, duplication, long delays (reordering).
    pub network: bool,
    /// Partitions: majority/minority splits, isolated nodes, asymmetric links, bridges.
    pub partition: bool,
    /// Crashes (losing unsynced writes, possibly tearing the last one) and restarts.
    pub crash: bool,
    /// A bit rots in synced data of a crashed node's log or snapshot; the node must refuse to
    /// start from it (at most one node per run, so a quorum remains).
    pub bitflip: bool,
    /// Pauses: a node stops processing, then resumes with its backlog.
    pub pause: bool,
    /// Clock skew: nodes tick at rates up to ±5% apart.
    pub skew: bool,
    /// Membership changes: add learner, promote, demote, remove, replace.
    pub membership: bool,
    /// Leader transfers.
    pub transfer: bool,
}

impl Faults {
    /// Every fault.
    pub fn all() -> Self {
        Faults {
            network: true,
            partition: true,
            crash: true,
            bitflip: true,
            pause: true,
            skew: true,
            membership: true,
            transfer: true,
        }
    }

    /// Parses `all`, `none`, or a comma list of `network,partition,crash,bitflip,pause,skew,membership,transfer`.
    pub fn parse(text: &str) -> Result<Faults, String> {
        let mut faults = Faults::default();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "all" => faults = Faults::all(),
                "none" => {}
                "network" => faults.network = true,
                "partition" => faults.partition = true,
                "crash" => faults.crash = true,
                "bitflip" => faults.bitflip = true,
                "pause" => faults.pause = true,
                "skew" => faults.skew = true,
                "membership" => faults.membership = true,
                "transfer" => faults.transfer = true,
                other => return Err(format!("unknown fault '{other}' (known: all, none, network, partition, crash, bitflip, pause, skew, membership, transfer)")),
            }
        }
        Ok(faults)
    }

    /// True if any fault is on.
    pub fn any(&self) -> bool {
        *self != Faults::default()
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Faults::all() {
            return write!(f, "all");
        }
        let names: Vec<&str> = [
            (self.network, "network"),
            (self.partition, "partition"),
            (self.crash, "crash"),
            (self.bitflip, "bitflip"),
            (self.pause, "pause"),
            (self.skew, "skew"),
            (self.membership, "membership"),
            (self.transfer, "transfer"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect();
        if names.is_empty() {
            write!(f, "none")
        } else {
            write!(f, "{}", names.join(","))
        }
    }
}

/// One simulation run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seed of everything random in the run.
    pub seed: u64,
    /// Initial voters (3, 5 or 7).
    pub nodes: usize,
    /// Faults to inject during the fault phase.
    pub faults: Faults,
    /// Events processed in the fault phase, before everything heals.
    pub steps: u64,
    /// Concurrent clients.
    pub clients: usize,
    /// Keys the clients use (few keys: more contention, more to check).
    pub keys: u8,
    /// ZooKeeper clients (sessions, ephemeral and sequential nodes) beside the others.
    pub zk_clients: usize,
    /// Keep the event trace as text.
    pub trace: bool,
    /// The consensus engine the cluster runs. Multi-Paxos has a fixed membership: the
    /// membership and transfer faults are not drawn for it.
    pub consensus: ballot_node::Consensus,
    /// A deliberate protocol bug (tests of the simulator itself).
    #[cfg(any(test, feature = "fault-injection"))]
    pub bug: Option<ballot_raft::InjectedBug>,
    /// The chapter's Paxos bug in a Multi-Paxos cluster: new leaders take each slot's first
    /// reported value, not the highest ballot's.
    #[cfg(any(test, feature = "fault-injection"))]
    pub paxos_first_reported: bool,
}

impl SimConfig {
    /// Defaults for `seed`: 3 nodes, every fault, 20,000 fault-phase events, 4 clients on 3 keys.
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            nodes: 3,
            faults: Faults::all(),
            steps: 20_000,
            clients: 4,
            keys: 3,
            zk_clients: 0,
            trace: false,
            consensus: ballot_node::Consensus::Raft,
            #[cfg(any(test, feature = "fault-injection"))]
            bug: None,
            #[cfg(any(test, feature = "fault-injection"))]
            paxos_first_reported: false,
        }
    }
}
