//! The leader's memory of proposals forwarded to it, so a duplicated `Propose` message is not
//! appended twice. A network may deliver a message twice (the simulator's does; a TCP stream
//! does not, but a driver is free to use another transport), and a forwarded proposal appended
//! twice would apply twice. Proposals are recognised by a digest of their payload, so payloads
//! must differ from each other (ballot's carry a unique request id). The memory outlives terms
//! (forwarded proposals are taken whatever their term) and holds the last [`WINDOW`] proposals
//! of each sender: a copy delayed past that many later proposals would pass, which a stream
//! transport never does and the simulator's delays are far too short for. The memory is not
//! durable either: a copy that reached this node after it restarted would pass too. So the
//! transport must not deliver a second copy of a `Propose` to a later incarnation of its
//! receiver. A stream transport never duplicates at all; the simulator, whose network does,
//! drops the copies in flight to a node when it restarts (a long soak found a duplicate
//! delivered after its receiver restarted, passed on to the next leader and applied twice).

use std::collections::{BTreeMap, HashSet, VecDeque};

use crate::types::NodeId;

/// Forwarded proposals a node holds at most while no leader can take them.
pub(crate) const HELD_MAX: usize = 16_384;

/// Forwarded proposals remembered per sender.
pub(crate) const WINDOW: usize = 4096;

#[derive(Debug, Default)]
struct Recent {
    order: VecDeque<u64>,
    seen: HashSet<u64>,
}

/// Digests of the proposals each sender forwarded lately (shared with ballot-paxos's
/// Multi-Paxos replica, whose forwarded proposals need the same memory).
#[derive(Debug, Default)]
pub struct Forwarded {
    by_sender: BTreeMap<NodeId, Recent>,
}

impl Forwarded {
    /// Keeps the payloads not seen before from `from`, and remembers them.
    pub fn admit(&mut self, from: NodeId, payloads: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let recent = self.by_sender.entry(from).or_default();
        payloads
            .into_iter()
            .filter(|payload| {
                let digest = fnv1a(payload);
                if !recent.seen.insert(digest) {
                    return false;
                }
                recent.order.push_back(digest);
                if recent.order.len() > WINDOW {
                    let oldest = recent.order.pop_front().expect("longer than the window");
                    recent.seen.remove(&oldest);
                }
                true
            })
            .collect()
    }
}

/// FNV-1a, 64 bits: deterministic across runs and platforms, unlike std's `RandomState`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicate_is_dropped_and_the_window_is_bounded() {
        let mut forwarded = Forwarded::default();
        assert_eq!(forwarded.admit(2, vec![b"a".to_vec(), b"b".to_vec()]).len(), 2);
        assert_eq!(forwarded.admit(2, vec![b"a".to_vec(), b"c".to_vec()]), vec![b"c".to_vec()]);
        assert_eq!(forwarded.admit(3, vec![b"a".to_vec()]).len(), 1, "senders are apart");
        for i in 0..WINDOW as u32 {
            forwarded.admit(2, vec![i.to_be_bytes().to_vec()]);
        }
        assert_eq!(forwarded.admit(2, vec![b"a".to_vec()]).len(), 1, "forgotten beyond the window");
    }
}
