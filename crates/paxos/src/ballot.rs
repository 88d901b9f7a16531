//! Ballots (proposal numbers) and which proposer owns which.
//!
//! Two proposers must never use the same ballot: if they did, two different values could be
//! accepted under one number and a learner counting votes per ballot would mix them. The
//! chapter's sketch pairs a counter with the node id; here the ballot stays one `u64` (so it
//! fits where Raft keeps its term) and ownership is arithmetic: with `n` proposers, proposer
//! `i` (0-based) owns every ballot `b ≥ 1` with `(b - 1) mod n = i`.

/// A proposal number. 0 means "none yet": no proposal is ever numbered 0.
pub type Ballot = u64;

/// The ballot space of `proposers` proposers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ballots {
    proposers: u64,
}

impl Ballots {
    /// Ballots shared out among `proposers` proposers (at least one).
    pub fn new(proposers: u64) -> Ballots {
        assert!(proposers > 0, "a ballot space needs a proposer");
        Ballots { proposers }
    }

    /// How many proposers share the space.
    pub fn proposers(&self) -> u64 {
        self.proposers
    }

    /// The proposer (0-based) that owns ballot `b` (`b ≥ 1`).
    pub fn owner(&self, b: Ballot) -> u64 {
        debug_assert!(b > 0, "ballot 0 belongs to nobody");
        (b - 1) % self.proposers
    }

    /// The smallest ballot above `above` that proposer `me` owns.
    pub fn next_owned(&self, me: u64, above: Ballot) -> Ballot {
        debug_assert!(me < self.proposers);
        let candidate = above + 1;
        let owner = (candidate - 1) % self.proposers;
        if owner <= me {
            candidate + (me - owner)
        } else {
            candidate + (self.proposers - owner + me)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ballots_alternate_between_two_proposers() {
        let space = Ballots::new(2);
        assert_eq!(space.next_owned(0, 0), 1);
        assert_eq!(space.next_owned(1, 0), 2);
        assert_eq!(space.next_owned(0, 1), 3);
        assert_eq!(space.next_owned(1, 3), 4);
        assert_eq!(space.owner(3), 0);
    }

    proptest! {
        #[test]
        fn next_owned_is_the_smallest_owned_ballot_above(n in 1u64..9, me in 0u64..9, above in 0u64..1000) {
            let me = me % n;
            let space = Ballots::new(n);
            let next = space.next_owned(me, above);
            prop_assert!(next > above);
            prop_assert_eq!(space.owner(next), me);
            for b in above + 1..next {
                prop_assert_ne!(space.owner(b), me);
            }
        }
    }
}
