//! Membership changes on the leader: the safety rails etcd has (`--strict-reconfig-check`, one
//! change at a time, at most one learner, promotion only of a learner in sync), the changes
//! themselves as Raft membership entries whose context updates the member table, and the
//! automatic promotion of members that caught up.
//!
//! A member added as a voter enters Raft as a learner and is promoted by the leader once it has
//! caught up (its record says voter from the start, so `MemberList` shows what the operator
//! asked for). etcd adds the voter at once: a one-member etcd cluster then stops committing
//! until the new member runs and has the log. Here adding a voter never costs availability,
//! whether the new member starts or not.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ballot_mvcc::{command_codec, Command, MemberChange, MemberRecord};
use ballot_node::Engine;
use ballot_raft::{ConfChange, ConfChangeStep, NodeId};
use tonic::Status;

use crate::members::{url_address, Members};

/// A learner is in sync once it has this share of the leader's log (etcd's `readyPercent`).
const READY_SHARE: f64 = 0.9;
/// Most learners at once (etcd 3.4's limit), counting only members added as learners.
pub const LEARNERS_MAX: usize = 1;

/// etcd's errors for membership changes.
pub mod errors {
    use tonic::Status;

    /// `ErrGRPCMemberNotFound`.
    pub fn not_found() -> Status {
        Status::not_found("etcdserver: member not found")
    }
    /// `ErrGRPCPeerURLExist`.
    pub fn peer_url_exists() -> Status {
        Status::failed_precondition("etcdserver: Peer URLs already exists")
    }
    /// `ErrGRPCMemberBadURLs`.
    pub fn bad_urls() -> Status {
        Status::invalid_argument("etcdserver: given member URLs are invalid")
    }
    /// `ErrGRPCMemberNotEnoughStarted`.
    pub fn not_enough_started() -> Status {
        Status::failed_precondition("etcdserver: re-configuration failed due to not enough started members")
    }
    /// `ErrGRPCMemberNotLearner`.
    pub fn not_learner() -> Status {
        Status::failed_precondition("etcdserver: can only promote a learner member")
    }
    /// `ErrGRPCLearnerNotReady`.
    pub fn learner_not_ready() -> Status {
        Status::failed_precondition("etcdserver: can only promote a learner member which is in sync with leader")
    }
    /// `ErrGRPCTooManyLearners`.
    pub fn too_many_learners() -> Status {
        Status::failed_precondition("etcdserver: too many learner members in cluster")
    }
    /// A change while another is still under way (etcd queues none either).
    pub fn change_in_progress() -> Status {
        Status::unavailable("etcdserver: a membership change is in progress; retry once it completes")
    }
}

/// The leader's view of the cluster, for the checks.
pub struct View<'a> {
    /// The leader's consensus engine (membership changes need Raft; Multi-Paxos refuses them).
    pub engine: &'a Engine,
    /// The member table.
    pub members: &'a Members,
    /// Members heard from lately (the leader itself among them).
    pub active: BTreeSet<NodeId>,
}

fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

impl View<'_> {
    /// True if this member leads.
    pub fn leads(&self) -> bool {
        self.engine.is_leader()
    }

    /// Voters in Raft's configuration.
    fn voters(&self) -> BTreeSet<NodeId> {
        self.engine.conf_state().voters.clone()
    }

    /// Members added as voters that are still learners in Raft (catching up).
    fn pending_voters(&self) -> usize {
        let conf = self.engine.conf_state();
        conf.learners.iter().filter(|id| self.members.get(**id).is_some_and(|member| !member.is_learner)).count()
    }

    /// Refuses a change while another is under way.
    pub fn check_idle(&self) -> Result<(), Status> {
        // Raft refuses a change while the last one is uncommitted as well (`ConfChangePending`).
        if self.engine.conf_state().is_joint() {
            return Err(errors::change_in_progress());
        }
        Ok(())
    }

    /// Checks the peer URLs of a new or updated member (`except` is the member being updated).
    pub fn check_urls(&self, urls: &[String], except: Option<NodeId>) -> Result<(), Status> {
        if urls.is_empty() || urls.iter().any(|url| url_address(url).is_err()) {
            return Err(errors::bad_urls());
        }
        let taken = self
            .members
            .list()
            .iter()
            .filter(|member| Some(member.id) != except)
            .any(|member| member.peer_urls.iter().any(|url| urls.contains(url)));
        if taken {
            return Err(errors::peer_url_exists());
        }
        Ok(())
    }

    /// etcd's `--strict-reconfig-check` for an added member: with it counted, the members heard
    /// from must still be a quorum. At most [`LEARNERS_MAX`] learners.
    pub fn check_add(&self, is_learner: bool) -> Result<(), Status> {
        if is_learner {
            let learners = self.members.list().iter().filter(|member| member.is_learner).count();
            if learners >= LEARNERS_MAX {
                return Err(errors::too_many_learners());
            }
            return Ok(());
        }
        let voters = self.voters();
        let active = voters.iter().filter(|id| self.active.contains(id)).count();
        let after = voters.len() + self.pending_voters() + 1;
        // etcd's exception: growing a lone member to two (how a restored cluster grows).
        if active < quorum(after) && !(active == 1 && after == 2) {
            return Err(errors::not_enough_started());
        }
        Ok(())
    }

    /// The same for a removed member: without it, the members heard from must be a quorum of
    /// the voters left.
    pub fn check_remove(&self, id: NodeId) -> Result<(), Status> {
        let voters = self.voters();
        if !voters.contains(&id) {
            return Ok(());
        }
        let active = voters.iter().filter(|voter| **voter != id && self.active.contains(voter)).count();
        if active < quorum(voters.len() - 1) {
            return Err(errors::not_enough_started());
        }
        Ok(())
    }

    /// True if learner `id` has (nearly) the leader's log and was heard from lately.
    pub fn learner_ready(&self, id: NodeId) -> bool {
        let Some(raft) = self.engine.raft() else { return false };
        let Some(progress) = raft.progress_of(id) else { return false };
        let leader_match = raft.log().last_index();
        self.active.contains(&id) && (progress.match_index as f64) >= (leader_match as f64) * READY_SHARE
    }

    /// Checks a promotion as etcd does.
    pub fn check_promote(&self, id: NodeId) -> Result<(), Status> {
        if self.members.get(id).is_none() {
            return Err(errors::not_found());
        }
        if !self.engine.conf_state().learners.contains(&id) {
            return Err(errors::not_learner());
        }
        if !self.learner_ready(id) {
            return Err(errors::learner_not_ready());
        }
        let voters = self.voters();
        let active = voters.iter().filter(|voter| self.active.contains(voter)).count();
        if active < quorum(voters.len() + 1) {
            return Err(errors::not_enough_started());
        }
        Ok(())
    }

    /// The next learner to promote automatically: one added as a voter (or any, with
    /// `--auto-promote-learners`) that has caught up.
    pub fn next_promotion(&self, promote_learners: bool) -> Option<MemberRecord> {
        if self.engine.conf_state().is_joint() {
            return None;
        }
        self.engine.conf_state().learners.iter().find_map(|id| {
            let member = self.members.get(*id)?;
            ((!member.is_learner || promote_learners) && self.learner_ready(*id)).then_some(member)
        })
    }
}

/// A membership change with the member-table change it carries.
pub fn change(steps: Vec<ConfChangeStep>, members: Vec<MemberChange>) -> ConfChange {
    ConfChange { steps, context: command_codec::encode(&Command::Members(members)) }
}

/// The change that adds `record` (as a Raft learner whatever it asked for; see the module doc).
pub fn add(record: MemberRecord) -> ConfChange {
    change(vec![ConfChangeStep::AddLearner(record.id)], vec![MemberChange::Upsert(record)])
}

/// The change that promotes `record` to voter.
pub fn promote(record: MemberRecord) -> ConfChange {
    let id = record.id;
    change(vec![ConfChangeStep::AddVoter(id)], vec![MemberChange::Upsert(MemberRecord { is_learner: false, ..record })])
}

/// The change that removes `id`.
pub fn remove(id: NodeId) -> ConfChange {
    change(vec![ConfChangeStep::Remove(id)], vec![MemberChange::Remove(id)])
}

/// A fresh member id for the given peer URLs (as etcd's, from the URLs, the cluster and the
/// time, so that a member added again with the same URLs gets a new id).
pub fn new_member_id(peer_urls: &[String], cluster_id: u64) -> NodeId {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let mut urls = peer_urls.to_vec();
    urls.sort();
    crate::members::hash64(&[urls.join(",").as_bytes(), &cluster_id.to_be_bytes(), &now.to_be_bytes()])
}

/// When each peer was last heard from, for the checks above.
#[derive(Debug, Default)]
pub struct LastHeard {
    at: std::collections::HashMap<NodeId, Instant>,
}

impl LastHeard {
    /// A message from `peer` arrived.
    pub fn heard(&mut self, peer: NodeId, now: Instant) {
        self.at.insert(peer, now);
    }

    /// The peers heard from within `window`, and `me`.
    pub fn active(&self, me: NodeId, now: Instant, window: Duration) -> BTreeSet<NodeId> {
        let mut active: BTreeSet<NodeId> =
            self.at.iter().filter(|(_, at)| now.duration_since(**at) <= window).map(|(id, _)| *id).collect();
        active.insert(me);
        active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorums() {
        assert_eq!(quorum(1), 1);
        assert_eq!(quorum(2), 2);
        assert_eq!(quorum(3), 2);
        assert_eq!(quorum(4), 3);
        assert_eq!(quorum(5), 3);
    }

    #[test]
    fn changes_carry_their_member_table_change() {
        let record = MemberRecord { id: 7, peer_urls: vec!["http://127.0.0.1:1".into()], ..Default::default() };
        let added = add(record.clone());
        assert_eq!(added.steps, [ConfChangeStep::AddLearner(7)]);
        let Ok(Command::Members(changes)) = command_codec::decode(&added.context) else { panic!("members") };
        assert_eq!(changes, [MemberChange::Upsert(record.clone())]);
        let promoted = promote(MemberRecord { is_learner: true, ..record });
        assert_eq!(promoted.steps, [ConfChangeStep::AddVoter(7)]);
        assert_ne!(new_member_id(&["http://a:1".into()], 1), 0);
    }

    #[test]
    fn last_heard_counts_recent_peers_and_self() {
        let mut heard = LastHeard::default();
        let now = Instant::now();
        heard.heard(2, now);
        heard.heard(3, now - Duration::from_secs(10));
        let active = heard.active(1, now, Duration::from_secs(1));
        assert_eq!(active.into_iter().collect::<Vec<_>>(), [1, 2]);
    }
}
