//! Majorities: which index a quorum has, and whether an election is won, for a plain or a joint
//! configuration. Joint consensus (§6 of the thesis) requires a majority of *both* halves.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{Index, NodeId};

/// Outcome of counting votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// Still waiting for answers that could change the outcome.
    Pending,
    /// A majority (of every half) granted.
    Won,
    /// A majority (of some half) refused; the election cannot be won.
    Lost,
}

/// The largest index that a majority of `voters` have, given each voter's acknowledged index.
/// An empty voter set commits everything (it places no constraint, as in a non-joint half).
pub fn majority_index(voters: &BTreeSet<NodeId>, acked: &impl Fn(NodeId) -> Option<Index>) -> Index {
    if voters.is_empty() {
        return Index::MAX;
    }
    let mut indexes: Vec<Index> = voters.iter().map(|id| acked(*id).unwrap_or(0)).collect();
    indexes.sort_unstable_by(|a, b| b.cmp(a));
    indexes[voters.len() / 2]
}

/// [`majority_index`] over both halves of a (possibly joint) configuration.
pub fn joint_index(
    incoming: &BTreeSet<NodeId>,
    outgoing: &BTreeSet<NodeId>,
    acked: &impl Fn(NodeId) -> Option<Index>,
) -> Index {
    majority_index(incoming, acked).min(majority_index(outgoing, acked))
}

/// Counts votes in one majority configuration.
pub fn majority_vote(voters: &BTreeSet<NodeId>, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
    if voters.is_empty() {
        return VoteResult::Won;
    }
    let (mut granted, mut missing) = (0, 0);
    for id in voters {
        match votes.get(id) {
            Some(true) => granted += 1,
            Some(false) => {}
            None => missing += 1,
        }
    }
    let quorum = voters.len() / 2 + 1;
    if granted >= quorum {
        VoteResult::Won
    } else if granted + missing >= quorum {
        VoteResult::Pending
    } else {
        VoteResult::Lost
    }
}

/// Counts votes in a (possibly joint) configuration: won only if both halves are won.
pub fn joint_vote(
    incoming: &BTreeSet<NodeId>,
    outgoing: &BTreeSet<NodeId>,
    votes: &BTreeMap<NodeId, bool>,
) -> VoteResult {
    match (majority_vote(incoming, votes), majority_vote(outgoing, votes)) {
        (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
        (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
        _ => VoteResult::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    /// The naive definition: the largest index i such that more than half the voters have >= i.
    fn naive_majority_index(voters: &BTreeSet<NodeId>, acked: &BTreeMap<NodeId, Index>) -> Index {
        let candidates: BTreeSet<Index> = voters.iter().map(|v| acked.get(v).copied().unwrap_or(0)).collect();
        candidates
            .into_iter()
            .rev()
            .find(|i| voters.iter().filter(|v| acked.get(v).copied().unwrap_or(0) >= *i).count() * 2 > voters.len())
            .unwrap_or(0)
    }

    proptest! {
        #[test]
        fn majority_index_matches_the_naive_definition(
            acks in proptest::collection::vec(0u64..20, 1..8),
        ) {
            let voters: BTreeSet<NodeId> = (1..=acks.len() as u64).collect();
            let acked: BTreeMap<NodeId, Index> = voters.iter().copied().zip(acks.iter().copied()).collect();
            let fast = majority_index(&voters, &|id| acked.get(&id).copied());
            prop_assert_eq!(fast, naive_majority_index(&voters, &acked));
        }
    }

    #[test]
    fn joint_commit_needs_both_majorities() {
        let acked: BTreeMap<NodeId, Index> = [(1, 10), (2, 10), (3, 1), (4, 1), (5, 1)].into();
        let get = |id| acked.get(&id).copied();
        assert_eq!(majority_index(&set(&[1, 2, 3]), &get), 10);
        assert_eq!(joint_index(&set(&[1, 2, 3]), &set(&[3, 4, 5]), &get), 1);
    }

    #[test]
    fn votes_resolve_early_either_way() {
        let voters = set(&[1, 2, 3]);
        assert_eq!(majority_vote(&voters, &[(1, true)].into()), VoteResult::Pending);
        assert_eq!(majority_vote(&voters, &[(1, true), (2, true)].into()), VoteResult::Won);
        assert_eq!(majority_vote(&voters, &[(1, false), (2, false)].into()), VoteResult::Lost);
        let joint = joint_vote(&voters, &set(&[4, 5, 6]), &[(1, true), (2, true), (4, false), (5, false)].into());
        assert_eq!(joint, VoteResult::Lost);
    }
}
