//! Version vectors (the chapter's part 3): how replicas that all accept writes, with no leader,
//! tell a newer value from a concurrent one. Each value carries a vector of per-writer counters;
//! one vector dominates another if it is at least as large everywhere, and two that neither
//! dominates were written concurrently. A [`Versioned`] value keeps every concurrent write as a
//! sibling until a write that has seen them all replaces them, so no acknowledged write is ever
//! lost silently: it is either the value or one of the siblings. Merging is commutative,
//! associative and idempotent, so replicas converge whatever order gossip delivers states in.

use std::collections::BTreeMap;

/// Writer → how many writes of its this history has seen.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VersionVector(BTreeMap<String, u64>);

/// How two vectors relate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// The same history.
    Equal,
    /// The first has seen everything the second has, and more.
    After,
    /// The second has seen everything the first has, and more.
    Before,
    /// Each has seen a write the other has not.
    Concurrent,
}

impl VersionVector {
    /// A vector with these counters (as decoded from the wire).
    pub fn from_counters(counters: impl IntoIterator<Item = (String, u64)>) -> VersionVector {
        VersionVector(counters.into_iter().filter(|(_, counter)| *counter > 0).collect())
    }

    /// The counter of `writer`.
    pub fn get(&self, writer: &str) -> u64 {
        self.0.get(writer).copied().unwrap_or(0)
    }

    /// Records one more write by `writer`.
    pub fn increment(&mut self, writer: &str) {
        *self.0.entry(writer.to_string()).or_default() += 1;
    }

    /// The least vector that has seen both (element-wise maximum).
    pub fn join(&mut self, other: &VersionVector) {
        for (writer, counter) in &other.0 {
            let mine = self.0.entry(writer.clone()).or_default();
            *mine = (*mine).max(*counter);
        }
    }

    /// How `self` relates to `other`.
    pub fn compare(&self, other: &VersionVector) -> Order {
        let writers = self.0.keys().chain(other.0.keys());
        let (mut ahead, mut behind) = (false, false);
        for writer in writers {
            let (mine, theirs) = (self.get(writer), other.get(writer));
            ahead |= mine > theirs;
            behind |= mine < theirs;
        }
        match (ahead, behind) {
            (false, false) => Order::Equal,
            (true, false) => Order::After,
            (false, true) => Order::Before,
            (true, true) => Order::Concurrent,
        }
    }

    /// Whether `self` has seen everything `other` has.
    pub fn descends(&self, other: &VersionVector) -> bool {
        matches!(self.compare(other), Order::After | Order::Equal)
    }

    /// The counters, by writer.
    pub fn counters(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(writer, counter)| (writer.as_str(), *counter))
    }
}

/// A key's value in a multi-writer map: one or more concurrent versions (siblings), none of
/// which has seen another. An absent value is no siblings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Versioned<V> {
    siblings: Vec<(VersionVector, V)>,
}

impl<V: Clone + Ord> Versioned<V> {
    /// A value of these versions (as decoded from the wire): merged one by one, so versions
    /// that another one covers are dropped and the order is canonical.
    pub fn from_siblings(siblings: impl IntoIterator<Item = (VersionVector, V)>) -> Versioned<V> {
        let mut versioned = Versioned { siblings: Vec::new() };
        for (vector, value) in siblings {
            versioned.merge_one(vector, value);
        }
        versioned
    }

    /// The concurrent versions, in a canonical order.
    pub fn siblings(&self) -> &[(VersionVector, V)] {
        &self.siblings
    }

    /// What a writer has seen when it reads: the join of every sibling's vector. A write made
    /// with it replaces every sibling it read.
    pub fn context(&self) -> VersionVector {
        let mut seen = VersionVector::default();
        for (vector, _) in &self.siblings {
            seen.join(vector);
        }
        seen
    }

    /// `writer` writes `value`, having seen `context` (what its read returned, or nothing for a
    /// blind write): the new version replaces the siblings the context covers and stays beside
    /// the ones it has not seen. Returns the new version's vector.
    pub fn write(&mut self, writer: &str, value: V, context: &VersionVector) -> VersionVector {
        // Past every counter of this writer known here, so the new version is never mistaken
        // for one this writer made before.
        let mut vector = context.clone();
        let own = self.siblings.iter().map(|(v, _)| v.get(writer)).max().unwrap_or(0).max(context.get(writer));
        vector.0.insert(writer.to_string(), own + 1);
        self.merge_one(vector.clone(), value);
        vector
    }

    /// Takes in another replica's state of the key.
    pub fn merge(&mut self, other: &Versioned<V>) {
        for (vector, value) in &other.siblings {
            self.merge_one(vector.clone(), value.clone());
        }
    }

    fn merge_one(&mut self, vector: VersionVector, value: V) {
        if self.siblings.iter().any(|(kept, _)| kept.descends(&vector)) {
            return;
        }
        self.siblings.retain(|(kept, _)| !vector.descends(kept));
        self.siblings.push((vector, value));
        self.siblings.sort();
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn concurrent_writes_are_kept_as_siblings_until_a_write_that_saw_both() {
        let mut a: Versioned<&str> = Versioned::default();
        let mut b = a.clone();
        // Two replicas, cut off from each other, take a write each.
        a.write("a", "red", &VersionVector::default());
        b.write("b", "blue", &VersionVector::default());
        a.merge(&b);
        b.merge(&a);
        assert_eq!(a, b);
        let values: Vec<&str> = a.siblings().iter().map(|(_, v)| *v).collect();
        assert_eq!(values.len(), 2, "{values:?}");
        // A client reads both and writes a resolution: it replaces both everywhere.
        let context = a.context();
        a.write("a", "purple", &context);
        b.merge(&a);
        assert_eq!(b.siblings().iter().map(|(_, v)| *v).collect::<Vec<_>>(), ["purple"]);
    }

    #[test]
    fn a_later_write_replaces_an_earlier_one() {
        let mut value: Versioned<u32> = Versioned::default();
        let first = value.write("a", 1, &VersionVector::default());
        value.write("b", 2, &first);
        assert_eq!(value.siblings().len(), 1);
        assert_eq!(value.siblings()[0].1, 2);
        assert_eq!(value.siblings()[0].0.compare(&first), Order::After);
    }

    /// A random history of writes at three replicas with random merges between them.
    fn replica_history() -> impl Strategy<Value = Vec<(usize, usize, bool)>> {
        proptest::collection::vec((0..3usize, 0..3usize, any::<bool>()), 1..40)
    }

    fn run(history: &[(usize, usize, bool)]) -> (Vec<Versioned<u32>>, Vec<(VersionVector, u32)>) {
        let mut replicas: Vec<Versioned<u32>> = vec![Versioned::default(); 3];
        let mut written = Vec::new();
        for (step, (at, from, read_first)) in history.iter().enumerate() {
            if at == from {
                let context = if *read_first { replicas[*at].context() } else { VersionVector::default() };
                let vector = replicas[*at].write(&format!("r{at}"), step as u32, &context);
                written.push((vector, step as u32));
            } else {
                let other = replicas[*from].clone();
                replicas[*at].merge(&other);
            }
        }
        (replicas, written)
    }

    proptest! {
        #[test]
        fn merge_is_commutative_associative_and_idempotent(history in replica_history()) {
            let (replicas, _) = run(&history);
            let (a, b, c) = (&replicas[0], &replicas[1], &replicas[2]);
            let merged = |x: &Versioned<u32>, y: &Versioned<u32>| { let mut z = x.clone(); z.merge(y); z };
            prop_assert_eq!(merged(a, b), merged(b, a));
            prop_assert_eq!(merged(&merged(a, b), c), merged(a, &merged(b, c)));
            prop_assert_eq!(merged(a, a), a.clone());
        }

        #[test]
        fn every_write_is_the_value_a_sibling_or_overtaken_by_one_that_saw_it(history in replica_history()) {
            let (replicas, written) = run(&history);
            let mut all = replicas[0].clone();
            all.merge(&replicas[1]);
            all.merge(&replicas[2]);
            for (vector, value) in &written {
                let kept = all.siblings().iter().any(|(v, x)| v == vector && x == value);
                let overtaken = all.siblings().iter().any(|(v, _)| v.compare(vector) == Order::After);
                prop_assert!(kept || overtaken, "write {value} at {vector:?} lost: {:?}", all.siblings());
            }
        }
    }
}
