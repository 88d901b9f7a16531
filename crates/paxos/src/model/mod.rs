//! An explicit-state model checker: breadth-first over every reachable state, with state
//! hashing and symmetry reduction, checking an invariant in each state.
//!
//! Breadth-first order makes the first violation found one at the smallest depth, so the
//! trace printed is a shortest counterexample. Visited states are kept as 128-bit
//! fingerprints of their canonical form (as TLC does): two SipHash-1-3 digests with different
//! prefixes. A collision would only merge two states and could hide a violation, never invent
//! one; at 2⁻¹²⁸ per pair it is not a practical concern. Symmetry reduction: the model maps each
//! state to a canonical representative of its symmetry class (acceptors are interchangeable)
//! before hashing, so a class is explored once.
//!
//! To print a trace without keeping states, each visited state keeps its parent's index;
//! the trace is rebuilt by replaying from the initial state, at each step taking the
//! successor whose fingerprint is the next one on the path.

pub mod multi;
pub mod single;

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};

/// A finite transition system to explore.
pub trait Model {
    /// A state; its `Ord` makes the canonical form well defined.
    type State: Clone + Hash + Ord + Debug;
    /// What takes one state to the next (shown in traces).
    type Action: Clone + Debug;

    /// The initial state.
    fn initial(&self) -> Self::State;
    /// Every (action, successor) of `state` that changes it.
    fn successors(&self, state: &Self::State, out: &mut Vec<(Self::Action, Self::State)>);
    /// The representative of `state`'s symmetry class.
    fn canonical(&self, state: &Self::State) -> Self::State;
    /// The invariant: `Err` names what is violated.
    fn check(&self, state: &Self::State) -> Result<(), String>;
    /// An action as a line of a trace.
    fn describe(&self, action: &Self::Action) -> String;
}

/// How far to go.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Stop (incomplete) after this many distinct states.
    pub max_states: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_states: 50_000_000 }
    }
}

/// A broken invariant and the shortest way there.
#[derive(Clone, Debug)]
pub struct Violation {
    /// What the invariant says went wrong.
    pub message: String,
    /// The actions from the initial state, one per line.
    pub trace: Vec<String>,
}

/// What an exploration found.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Distinct states (after symmetry reduction).
    pub states: u64,
    /// Transitions taken (including those to states already seen).
    pub transitions: u64,
    /// The deepest breadth-first level reached.
    pub depth: u32,
    /// False when [`Limits::max_states`] stopped the search.
    pub complete: bool,
    /// The first violation found, at the smallest depth.
    pub violation: Option<Violation>,
}

/// The 128-bit fingerprint of a canonical state.
fn fingerprint<S: Hash>(state: &S) -> u128 {
    let digest = |prefix: u8| {
        let mut hasher = std::hash::DefaultHasher::new();
        prefix.hash(&mut hasher);
        state.hash(&mut hasher);
        hasher.finish()
    };
    (u128::from(digest(0)) << 64) | u128::from(digest(1))
}

/// Explores every state of `model` reachable from its initial state, breadth-first.
pub fn explore<M: Model>(model: &M, limits: Limits) -> Outcome {
    let initial = model.canonical(&model.initial());
    let mut index: HashMap<u128, u32> = HashMap::new();
    // Per visited state: its fingerprint and its parent's position (u32::MAX for the root).
    let mut visited: Vec<(u128, u32)> = Vec::new();
    index.insert(fingerprint(&initial), 0);
    visited.push((fingerprint(&initial), u32::MAX));
    let mut outcome = Outcome { states: 1, transitions: 0, depth: 0, complete: true, violation: None };
    if let Err(message) = model.check(&initial) {
        outcome.violation = Some(Violation { message, trace: Vec::new() });
        return outcome;
    }
    let mut frontier = vec![(initial, 0u32)];
    let mut successors = Vec::new();
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for (state, position) in frontier {
            successors.clear();
            model.successors(&state, &mut successors);
            for (_, successor) in successors.drain(..) {
                outcome.transitions += 1;
                let canonical = model.canonical(&successor);
                let print = fingerprint(&canonical);
                if index.contains_key(&print) {
                    continue;
                }
                let child = visited.len() as u32;
                index.insert(print, child);
                visited.push((print, position));
                outcome.states += 1;
                if let Err(message) = model.check(&canonical) {
                    outcome.depth += 1;
                    let trace = rebuild_trace(model, &visited, child);
                    outcome.violation = Some(Violation { message, trace });
                    return outcome;
                }
                if outcome.states >= limits.max_states {
                    outcome.complete = false;
                    return outcome;
                }
                next.push((canonical, child));
            }
        }
        if !next.is_empty() {
            outcome.depth += 1;
        }
        frontier = next;
    }
    outcome
}

/// Replays the path to `target` from the initial state, describing each action.
fn rebuild_trace<M: Model>(model: &M, visited: &[(u128, u32)], target: u32) -> Vec<String> {
    let mut path = Vec::new();
    let mut at = target;
    while at != 0 {
        path.push(visited[at as usize].0);
        at = visited[at as usize].1;
    }
    path.reverse();
    let mut state = model.initial();
    let mut trace = Vec::new();
    let mut successors = Vec::new();
    for print in path {
        successors.clear();
        model.successors(&state, &mut successors);
        let (action, successor) = successors
            .drain(..)
            .find(|(_, successor)| fingerprint(&model.canonical(successor)) == print)
            .expect("a state on the path has a successor that is the next one");
        trace.push(model.describe(&action));
        state = successor;
    }
    trace
}

/// Every sequence of `quorum` positions of `senders` whose senders are distinct, in every
/// order: the ways a proposer can take in a quorum of the promises at hand.
pub fn ordered_quorums(senders: &[u32], quorum: usize) -> Vec<Vec<usize>> {
    fn extend(senders: &[u32], quorum: usize, current: &mut Vec<usize>, all: &mut Vec<Vec<usize>>) {
        if current.len() == quorum {
            all.push(current.clone());
            return;
        }
        for (i, sender) in senders.iter().enumerate() {
            if current.iter().all(|&taken| senders[taken] != *sender) {
                current.push(i);
                extend(senders, quorum, current, all);
                current.pop();
            }
        }
    }
    let mut all = Vec::new();
    extend(senders, quorum, &mut Vec::new(), &mut all);
    all
}

/// Every permutation of `0..n`, for symmetry reduction over `n` interchangeable processes.
pub fn permutations(n: usize) -> Vec<Vec<u32>> {
    let mut all = Vec::new();
    let mut current: Vec<u32> = (0..n as u32).collect();
    heap_permutations(n, &mut current, &mut all);
    all
}

fn heap_permutations(k: usize, current: &mut Vec<u32>, all: &mut Vec<Vec<u32>>) {
    if k <= 1 {
        all.push(current.clone());
        return;
    }
    for i in 0..k {
        heap_permutations(k - 1, current, all);
        if k.is_multiple_of(2) {
            current.swap(i, k - 1);
        } else {
            current.swap(0, k - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter that may step by one or two up to 10; the invariant forbids 7.
    struct Counter;

    impl Model for Counter {
        type State = u32;
        type Action = u32;
        fn initial(&self) -> u32 {
            0
        }
        fn successors(&self, state: &u32, out: &mut Vec<(u32, u32)>) {
            for step in [1, 2] {
                if state + step <= 10 {
                    out.push((step, state + step));
                }
            }
        }
        fn canonical(&self, state: &u32) -> u32 {
            *state
        }
        fn check(&self, state: &u32) -> Result<(), String> {
            if *state == 7 {
                Err("seven".into())
            } else {
                Ok(())
            }
        }
        fn describe(&self, action: &u32) -> String {
            format!("+{action}")
        }
    }

    #[test]
    fn finds_the_shortest_path_to_a_violation() {
        let outcome = explore(&Counter, Limits::default());
        let violation = outcome.violation.expect("7 is reachable");
        assert_eq!(violation.message, "seven");
        assert_eq!(violation.trace.len(), 4, "{:?}", violation.trace);
        assert_eq!(outcome.depth, 4);
    }

    #[test]
    fn quorums_take_distinct_senders_in_every_order() {
        // Two promises from acceptor 0 (say before and after it accepted), one from 1.
        let all = ordered_quorums(&[0, 0, 1], 2);
        assert_eq!(all, vec![vec![0, 2], vec![1, 2], vec![2, 0], vec![2, 1]]);
        assert!(ordered_quorums(&[0, 0], 2).is_empty());
    }

    #[test]
    fn permutations_are_all_there_once() {
        let mut all = permutations(4);
        assert_eq!(all.len(), 24);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 24);
    }
}
