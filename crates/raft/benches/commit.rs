//! Entries committed per second through a 3-node cluster of Raft cores with no I/O: the
//! consensus core's own ceiling, so that it is never the bottleneck of the server.
//!
//! `cargo bench -p ballot-raft --bench commit`

use std::collections::VecDeque;

use ballot_raft::{ConfState, Config, Message, RawNode, Role};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

/// Three nodes wired back to back; disks are instantaneous (persisting is just `advance`).
struct Cluster {
    nodes: Vec<RawNode>,
    inbox: VecDeque<Message>,
}

impl Cluster {
    fn new() -> Cluster {
        let nodes = (1..=3u64)
            .map(|id| {
                let mut config = Config::new(id);
                config.inflight_messages_max = 1024;
                config.append_bytes_max = 4 * 1024 * 1024;
                RawNode::new(config, ConfState::with_voters([1, 2, 3])).expect("valid config")
            })
            .collect();
        let mut cluster = Cluster { nodes, inbox: VecDeque::new() };
        while cluster.nodes[0].raft().soft_state().role != Role::Leader {
            cluster.nodes[0].tick();
            cluster.settle();
        }
        cluster
    }

    /// Runs every Ready and delivers every message until nothing is left; returns the number
    /// of entries the leader handed out to apply.
    fn settle(&mut self) -> usize {
        let mut applied = 0;
        loop {
            let mut busy = false;
            for (position, node) in self.nodes.iter_mut().enumerate() {
                if !node.has_ready() {
                    continue;
                }
                busy = true;
                let mut ready = node.ready(ballot_raft::Monotonic::default());
                self.inbox.extend(ready.messages.drain(..));
                self.inbox.extend(ready.messages_after_persist.drain(..));
                if position == 0 {
                    applied += ready.committed_entries.len();
                }
                node.advance();
            }
            while let Some(message) = self.inbox.pop_front() {
                busy = true;
                let to = message.to as usize - 1;
                self.nodes[to].step(message).expect("well-formed message");
            }
            if !busy {
                return applied;
            }
        }
    }

    /// Proposes `total` entries of `size` bytes, `batch` per round, and waits until all commit.
    fn commit(&mut self, total: usize, batch: usize, size: usize) {
        let payload = vec![7u8; size];
        let mut applied = 0;
        let mut proposed = 0;
        while proposed < total {
            let count = batch.min(total - proposed);
            let proposals = vec![payload.clone(); count];
            self.nodes[0].propose_batch(proposals).expect("leader accepts");
            proposed += count;
            applied += self.settle();
        }
        while applied < total {
            applied += self.settle();
            self.nodes[0].tick();
        }
    }
}

fn bench_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("commit_3_nodes");
    for (name, total, batch) in
        [("unbatched", 2_000usize, 1usize), ("batched_256", 100_000, 256), ("batched_4096", 200_000, 4096)]
    {
        group.throughput(Throughput::Elements(total as u64));
        group.sample_size(10);
        group.bench_function(name, |b| {
            b.iter_batched(Cluster::new, |mut cluster| cluster.commit(total, batch, 16), BatchSize::LargeInput)
        });
    }
    group.finish();
}

criterion_group!(benches, bench_commit);
criterion_main!(benches);
