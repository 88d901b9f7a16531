//! The one decision in Paxos that carries its safety: which value a proposer must propose
//! after phase 1.
//!
//! If any acceptor in the promising quorum reported an accepted proposal, the proposer must
//! propose the value of the *highest-numbered* one: a value chosen at ballot `b` was accepted
//! by a majority, every later ballot's phase-1 quorum meets that majority, and by induction
//! every proposal numbered above `b` carries the same value, so the highest report is it.
//! Only when nobody reported anything is the proposer free to use its own value.
//!
//! The chapter's sketch writes `max(accepted_values, key=lambda v: promises[2][1])`: the key
//! does not depend on `v`, so `max` returns the first value reported, whatever its ballot.
//! [`Pick::FirstReported`] reproduces that (only in tests and `fault-injection` builds) so the
//! model checker can show it losing agreement. Single-decree Paxos, the Multi-Paxos model
//! and the Multi-Paxos leader all decide through [`pick`].

use crate::Ballot;

/// How a proposer picks among reported accepted values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pick {
    /// The value of the highest-numbered accepted proposal (Paxos).
    #[default]
    HighestBallot,
    /// The first value reported, whatever its ballot: the chapter's bug.
    #[cfg(any(test, feature = "fault-injection"))]
    FirstReported,
}

/// The value a proposer must propose given the `(ballot, value)` pairs reported by its
/// promising quorum, in the order they arrived; `None` when nobody reported one (the proposer
/// may then propose its own).
pub fn pick<'a, V>(reports: impl IntoIterator<Item = (Ballot, &'a V)>, rule: Pick) -> Option<&'a V> {
    match rule {
        Pick::HighestBallot => {
            let mut best: Option<(Ballot, &V)> = None;
            for (ballot, value) in reports {
                if best.is_none_or(|(b, _)| ballot > b) {
                    best = Some((ballot, value));
                }
            }
            best.map(|(_, value)| value)
        }
        #[cfg(any(test, feature = "fault-injection"))]
        Pick::FirstReported => reports.into_iter().next().map(|(_, value)| value),
    }
}

/// [`pick`] for every slot at once (Multi-Paxos's phase 1 covers all slots): given
/// `(slot, ballot, value)` reports in arrival order, the value each reported slot must carry.
/// Slots nobody reported are absent; the leader fills those below the highest reported one
/// with no-ops.
pub fn pick_per_slot<'a, V>(
    reports: impl IntoIterator<Item = (u64, Ballot, &'a V)>,
    rule: Pick,
) -> std::collections::BTreeMap<u64, &'a V> {
    let mut by_slot: std::collections::BTreeMap<u64, Vec<(Ballot, &V)>> = Default::default();
    for (slot, ballot, value) in reports {
        by_slot.entry(slot).or_default().push((ballot, value));
    }
    by_slot.into_iter().filter_map(|(slot, reports)| pick(reports, rule).map(|value| (slot, value))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_ballot_wins_whatever_the_order() {
        let reports = [(1, "a"), (3, "c"), (2, "b")];
        assert_eq!(pick(reports.iter().map(|(b, v)| (*b, v)), Pick::HighestBallot), Some(&"c"));
        assert_eq!(pick(std::iter::empty::<(Ballot, &&str)>(), Pick::HighestBallot), None);
    }

    #[test]
    fn each_slot_is_picked_on_its_own() {
        let reports = [(1, 1, "a"), (2, 2, "x"), (1, 3, "b"), (2, 1, "y")];
        let picked = pick_per_slot(reports.iter().map(|(s, b, v)| (*s, *b, v)), Pick::HighestBallot);
        assert_eq!(picked.into_iter().map(|(s, v)| (s, *v)).collect::<Vec<_>>(), vec![(1, "b"), (2, "x")]);
    }

    #[test]
    fn the_chapters_rule_takes_the_first_report() {
        let reports = [(1, "a"), (3, "c")];
        assert_eq!(pick(reports.iter().map(|(b, v)| (*b, v)), Pick::FirstReported), Some(&"a"));
    }
}
