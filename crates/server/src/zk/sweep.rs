//! The leader's sweep of container and TTL nodes (ZooKeeper's ContainerManager): every few
//! seconds the leader reads the marked nodes and proposes the deletion of each container that
//! is empty after having had a child, and of each TTL node that has no child and has not
//! changed for its TTL. Each deletion names the version it saw, so a node changed meanwhile
//! stays (the write fails with BadVersion or NotEmpty and changes nothing).

use std::sync::Arc;
use std::time::Duration;

use ballot_mvcc::Command;
use ballot_zk::records::Id;
use ballot_zk::tree::{Lifetime, Op, Write};

use super::Front;

/// How often the leader sweeps (ZooKeeper's `znode.container.checkIntervalMs` is a minute by
/// default; ballot's sweep reads only marked nodes, so it can look more often).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Sweeps for as long as the member runs.
pub async fn run(front: Arc<Front>) {
    let mut ticker = tokio::time::interval(SWEEP_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let leads = front.handle.query(|core| core.replica.engine().is_leader()).await;
        match leads {
            Ok(true) => sweep(&front).await,
            Ok(false) => {}
            Err(_) => return,
        }
    }
}

/// One sweep.
async fn sweep(front: &Front) {
    let reader = front.handle.reader();
    let Ok(paths) = reader.zk_expiring() else { return };
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
    for path in paths {
        let Ok(read) = reader.znode(&path, false) else { continue };
        let Some(node) = read.node else { continue };
        let due = match node.lifetime {
            Lifetime::Container => node.num_children == 0 && node.children_created > 0,
            Lifetime::Ttl { ttl_ms } => node.num_children == 0 && now_ms - node.mtime > ttl_ms,
            _ => false,
        };
        if !due {
            continue;
        }
        let write = Write {
            ops: vec![Op::Delete { path: path.clone(), version: node.version }],
            session: 0,
            ids: vec![Id { scheme: "super".into(), id: String::new() }],
            now_ms,
        };
        match front.handle.propose(Command::Zk(write)).await {
            Ok(_) => tracing::debug!(path, "swept an expired container or TTL node"),
            Err(error) => tracing::debug!(path, ?error, "sweeping a node failed; the next sweep tries again"),
        }
    }
}
