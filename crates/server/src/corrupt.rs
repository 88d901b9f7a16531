//! The periodic corruption check (etcd's `--experimental-corrupt-check-time`): the leader
//! hashes its history (`hash_kv`, off the Raft loop) and asks every other member for its hash
//! at the same revision. Members that hold the same log must hold the same history; one that
//! does not has a damaged store (a disk that lied, a bug). A mismatch raises the CORRUPT alarm
//! through the log, naming the member at fault (the leader itself if no member agrees with it
//! and several disagree), and is logged as an error. Under the alarm every member refuses
//! writes with etcd's `etcdserver: corrupt cluster` until an operator replaces the member and
//! disarms it.

use std::time::Duration;

use ballot_mvcc::{AlarmKind, Command};
use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use ballot_raft::NodeId;

use crate::api::Handle;

/// Runs the check every `every` while the member runs.
pub async fn run(handle: Handle, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        if let Err(error) = check_once(&handle).await {
            tracing::debug!(%error, "corruption check skipped");
        }
    }
}

/// What one round found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Everyone who answered agrees.
    Agreed,
    /// These members disagree with the leader (which the others back).
    Corrupt(Vec<NodeId>),
}

/// Decides who is at fault from the peers that agree and those that do not.
pub fn judge(leader: NodeId, agreed: usize, mismatched: Vec<NodeId>) -> Verdict {
    if mismatched.is_empty() {
        Verdict::Agreed
    } else if agreed == 0 && mismatched.len() >= 2 {
        Verdict::Corrupt(vec![leader])
    } else {
        Verdict::Corrupt(mismatched)
    }
}

async fn check_once(handle: &Handle) -> anyhow::Result<()> {
    let me = handle.member_id;
    let leads = handle.query(|core| core.leader() == core.id()).await?;
    if !leads {
        return Ok(());
    }
    let reader = handle.reader().clone();
    let (hash, compact_revision, revision) = tokio::task::spawn_blocking(move || reader.hash_kv(0)).await??;
    let (mut agreed, mut mismatched) = (0, Vec::new());
    for peer in handle.members.list().into_iter().filter(|member| member.id != me) {
        let Some(url) = peer.client_urls.first() else { continue };
        let Ok(endpoint) = handle.endpoint(url) else { continue };
        let asked = async {
            let channel = endpoint.connect_timeout(Duration::from_secs(1)).connect().await.ok()?;
            let mut client = MaintenanceClient::new(channel);
            let request = client.hash_kv(pb::HashKvRequest { revision });
            tokio::time::timeout(Duration::from_secs(10), request).await.ok()?.ok()
        };
        // A member that is down or has not applied `revision` yet says nothing this round.
        let Some(answer) = asked.await.map(tonic::Response::into_inner) else { continue };
        if answer.compact_revision != compact_revision {
            continue;
        }
        if answer.hash == hash {
            agreed += 1;
        } else {
            tracing::error!(
                member = format!("{:x}", peer.id),
                revision,
                ours = hash,
                theirs = answer.hash,
                "CORRUPTION: a member's history differs from the leader's at the same revision"
            );
            mismatched.push(peer.id);
        }
    }
    if let Verdict::Corrupt(at_fault) = judge(me, agreed, mismatched) {
        for member_id in at_fault {
            tracing::error!(member = format!("{member_id:x}"), "raising the CORRUPT alarm");
            handle.apply(Command::Alarm { activate: true, kind: AlarmKind::Corrupt, member_id }).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_odd_one_out_is_at_fault() {
        assert_eq!(judge(1, 2, vec![]), Verdict::Agreed);
        assert_eq!(judge(1, 1, vec![3]), Verdict::Corrupt(vec![3]));
        assert_eq!(judge(1, 0, vec![2, 3]), Verdict::Corrupt(vec![1]), "everyone else disagrees with the leader");
        assert_eq!(judge(1, 0, vec![2]), Verdict::Corrupt(vec![2]), "one against one: the leader's log decides");
    }
}
