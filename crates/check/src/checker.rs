//! The linearizability search: Wing & Gong's depth-first linearization with Lowe's memo of
//! (set of linearized operations, model state), run separately per key (P-compositionality:
//! a history is linearizable iff each key's sub-history is), as Porcupine does it.
//!
//! The history becomes a doubly linked list of call and return events in time order. The search
//! walks it: at a call, it tries to linearize that operation now (the model must accept it and
//! the (set, state) pair must be new), lifting its call and return out of the list; at a return,
//! the operation that returns there was not linearized in time, so it backtracks. Operations
//! with unknown outcomes return at +∞; reaching one of those returns means every operation with
//! a known outcome is placed, and the rest can always be placed after them.

use std::collections::{BTreeMap, HashSet};

use crate::history::Operation;
use crate::model::Model;

/// Bounds on the search, so that pathological histories end with a verdict of "unknown".
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Search steps per key before giving up.
    pub steps_per_key_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { steps_per_key_max: 20_000_000 }
    }
}

/// A key whose history has no linearization.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The key.
    pub key: String,
    /// The longest sequence of operations the search could linearize, in order.
    pub longest_prefix: Vec<Operation>,
    /// Operations with known outcomes that no linearization could place.
    pub unplaced: Vec<Operation>,
    /// All of the key's operations (for the timeline).
    pub operations: Vec<Operation>,
}

/// The checker's answer.
#[derive(Clone, Debug)]
pub enum Verdict {
    /// Every key's history has a linearization.
    Linearizable,
    /// Some key's history has none.
    NotLinearizable(Box<Violation>),
    /// The search limit was reached on `key` before an answer was found.
    Unknown {
        /// The key whose search was cut short.
        key: String,
    },
}

impl Verdict {
    /// True only for a proven linearizable history.
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

/// Checks a whole history, key by key. A violation on any key wins over an unknown elsewhere.
pub fn check<M: Model>(model: &M, operations: &[Operation], limits: Limits) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
    for op in operations {
        by_key.entry(op.key.as_str()).or_default().push(op.clone());
    }
    let mut unknown = None;
    for (key, ops) in by_key {
        match check_key(model, key, model.prune(ops), limits) {
            KeyResult::Ok => {}
            KeyResult::Violation(violation) => return Verdict::NotLinearizable(violation),
            KeyResult::LimitReached => {
                unknown.get_or_insert_with(|| key.to_string());
            }
        }
    }
    match unknown {
        Some(key) => Verdict::Unknown { key },
        None => Verdict::Linearizable,
    }
}

enum KeyResult {
    Ok,
    Violation(Box<Violation>),
    LimitReached,
}

/// A node of the event list: the call or the return of operation `op`.
#[derive(Clone, Copy)]
struct Node {
    op: usize,
    is_call: bool,
    prev: usize,
    next: usize,
}

/// The event list with O(1) lift and unlift. Index 0 is the head sentinel; `NIL` ends the list.
struct EventList {
    nodes: Vec<Node>,
    /// For operation i: index of its call node and its return node.
    call_of: Vec<usize>,
    return_of: Vec<usize>,
}

const NIL: usize = usize::MAX;

impl EventList {
    fn new(ops: &[Operation]) -> EventList {
        // (time, is_return, op): calls sort before returns at equal times (the permissive choice:
        // operations that touch at an instant count as concurrent).
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            events.push((op.call, false, i));
            events.push((op.ret, true, i));
        }
        events.sort();
        let mut nodes = vec![Node { op: NIL, is_call: false, prev: NIL, next: NIL }];
        let mut call_of = vec![0; ops.len()];
        let mut return_of = vec![0; ops.len()];
        for (position, (_, is_return, op)) in events.iter().enumerate() {
            let index = position + 1;
            nodes.push(Node { op: *op, is_call: !is_return, prev: index - 1, next: NIL });
            nodes[index - 1].next = index;
            if *is_return {
                return_of[*op] = index;
            } else {
                call_of[*op] = index;
            }
        }
        EventList { nodes, call_of, return_of }
    }

    fn unlink(&mut self, index: usize) {
        let Node { prev, next, .. } = self.nodes[index];
        self.nodes[prev].next = next;
        if next != NIL {
            self.nodes[next].prev = prev;
        }
    }

    fn relink(&mut self, index: usize) {
        let Node { prev, next, .. } = self.nodes[index];
        self.nodes[prev].next = index;
        if next != NIL {
            self.nodes[next].prev = index;
        }
    }

    /// Removes an operation's call and return (it has been linearized).
    fn lift(&mut self, op: usize) {
        self.unlink(self.call_of[op]);
        self.unlink(self.return_of[op]);
    }

    /// Puts them back, in reverse order of removal.
    fn unlift(&mut self, op: usize) {
        self.relink(self.return_of[op]);
        self.relink(self.call_of[op]);
    }

    fn first(&self) -> usize {
        self.nodes[0].next
    }
}

/// A set of operation ids as a bit vector (hashable for the memo).
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(len: usize) -> Bits {
        Bits(vec![0; len.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

fn check_key<M: Model>(model: &M, key: &str, mut ops: Vec<Operation>, limits: Limits) -> KeyResult {
    ops.sort_by_key(|op| (op.call, op.id));
    let mut list = EventList::new(&ops);
    let mut linearized = Bits::new(ops.len());
    let mut memo: HashSet<(Bits, M::State)> = HashSet::new();
    let mut state = model.init();
    // The stack of choices: (operation, state before it).
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut longest: Vec<usize> = Vec::new();
    let mut steps = 0u64;
    let mut cursor = list.first();
    while cursor != NIL {
        steps += 1;
        if steps > limits.steps_per_key_max {
            return KeyResult::LimitReached;
        }
        let node = list.nodes[cursor];
        if node.is_call {
            if let Some(next_state) = model.step(&state, &ops[node.op]) {
                let mut next_set = linearized.clone();
                next_set.set(node.op);
                if memo.insert((next_set.clone(), next_state.clone())) {
                    stack.push((node.op, std::mem::replace(&mut state, next_state)));
                    linearized = next_set;
                    list.lift(node.op);
                    if stack.len() > longest.len() {
                        longest = stack.iter().map(|(op, _)| *op).collect();
                    }
                    cursor = list.first();
                    continue;
                }
            }
            cursor = node.next;
        } else {
            if ops[node.op].is_info() {
                // Only unknown-outcome operations remain; they can all go last.
                return KeyResult::Ok;
            }
            let Some((op, previous)) = stack.pop() else {
                return KeyResult::Violation(Box::new(violation(key, &ops, &longest)));
            };
            state = previous;
            linearized.clear(op);
            list.unlift(op);
            cursor = list.nodes[list.call_of[op]].next;
        }
    }
    KeyResult::Ok
}

fn violation(key: &str, ops: &[Operation], longest: &[usize]) -> Violation {
    let placed: HashSet<usize> = longest.iter().copied().collect();
    // The operations that block: not placed, known outcome, and invoked before the earliest
    // return among them (anything later could not have been the problem yet).
    let pending: Vec<&Operation> =
        ops.iter().enumerate().filter(|(i, op)| !placed.contains(i) && !op.is_info()).map(|(_, op)| op).collect();
    let horizon = pending.iter().map(|op| op.ret).min().unwrap_or(u64::MAX);
    Violation {
        key: key.to_string(),
        longest_prefix: longest.iter().map(|i| ops[*i].clone()).collect(),
        unplaced: pending.into_iter().filter(|op| op.call <= horizon).cloned().collect(),
        operations: ops.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{pair_operations, parse_history};
    use crate::model::RegisterModel;

    fn verdict(history: &str) -> Verdict {
        let events = parse_history(history).unwrap();
        let ops = pair_operations(&events).unwrap();
        check(&RegisterModel::register(), &ops, Limits::default())
    }

    fn line(process: u64, kind: &str, f: &str, value: &str, time: u64) -> String {
        format!(r#"{{"process":{process},"type":"{kind}","f":"{f}","key":"x","value":{value},"time":{time}}}"#)
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = [
            line(0, "invoke", "write", "1", 0),
            line(0, "ok", "write", "1", 1),
            line(1, "invoke", "read", "null", 2),
            line(1, "ok", "read", "1", 3),
        ]
        .join("\n");
        assert!(verdict(&h).is_linearizable());
    }

    #[test]
    fn the_chapters_stale_read_after_an_acknowledged_write_is_caught() {
        // Alice's write is acknowledged at t=1; Bob reads at t=2 and sees the old value.
        let h = [
            line(0, "invoke", "write", "\"old\"", 0),
            line(0, "ok", "write", "\"old\"", 0),
            line(0, "invoke", "write", "\"new\"", 1),
            line(0, "ok", "write", "\"new\"", 2),
            line(1, "invoke", "read", "null", 3),
            line(1, "ok", "read", "\"old\"", 4),
        ]
        .join("\n");
        let Verdict::NotLinearizable(violation) = verdict(&h) else { panic!("must be a violation") };
        assert_eq!(violation.key, "x");
        assert!(violation.unplaced.iter().any(|op| op.f == "read"));
    }

    #[test]
    fn the_chapters_read_going_backwards_is_caught() {
        // Writes of 1 and 2 both complete; then one read sees 2 and a later one sees 1.
        let h = [
            line(0, "invoke", "write", "1", 0),
            line(1, "invoke", "write", "2", 0),
            line(0, "ok", "write", "1", 5),
            line(1, "ok", "write", "2", 5),
            line(2, "invoke", "read", "null", 6),
            line(2, "ok", "read", "2", 7),
            line(3, "invoke", "read", "null", 8),
            line(3, "ok", "read", "1", 9),
        ]
        .join("\n");
        assert!(matches!(verdict(&h), Verdict::NotLinearizable(_)));
    }

    #[test]
    fn concurrent_reads_may_see_either_value() {
        let h = [
            line(0, "invoke", "write", "1", 0),
            line(0, "ok", "write", "1", 1),
            line(1, "invoke", "write", "2", 2),
            line(2, "invoke", "read", "null", 3),
            line(2, "ok", "read", "1", 4),
            line(3, "invoke", "read", "null", 5),
            line(3, "ok", "read", "2", 6),
            line(1, "ok", "write", "2", 7),
        ]
        .join("\n");
        assert!(verdict(&h).is_linearizable());
    }

    #[test]
    fn an_info_write_may_take_effect_late_or_never() {
        let late = [
            line(0, "invoke", "write", "1", 0),
            line(0, "info", "write", "1", 1),
            line(1, "invoke", "read", "null", 2),
            line(1, "ok", "read", "null", 3),
            line(2, "invoke", "read", "null", 4),
            line(2, "ok", "read", "1", 5),
        ]
        .join("\n");
        assert!(verdict(&late).is_linearizable());
        let never = [line(0, "invoke", "write", "1", 0), line(0, "info", "write", "1", 1)].join("\n");
        assert!(verdict(&never).is_linearizable());
    }

    #[test]
    fn a_failed_write_must_not_be_seen() {
        let h = [
            line(0, "invoke", "write", "1", 0),
            line(0, "fail", "write", "1", 1),
            line(1, "invoke", "read", "null", 2),
            line(1, "ok", "read", "1", 3),
        ]
        .join("\n");
        assert!(!verdict(&h).is_linearizable());
    }

    #[test]
    fn cas_succeeds_only_from_the_expected_value() {
        let good = [
            line(0, "invoke", "write", "1", 0),
            line(0, "ok", "write", "1", 1),
            line(1, "invoke", "cas", "[1,2]", 2),
            line(1, "ok", "cas", "[1,2]", 3),
            line(2, "invoke", "read", "null", 4),
            line(2, "ok", "read", "2", 5),
        ];
        assert!(verdict(&good.join("\n")).is_linearizable());
        let mut bad = good.clone();
        bad[2] = line(1, "invoke", "cas", "[7,2]", 2);
        bad[3] = line(1, "ok", "cas", "[7,2]", 3);
        assert!(!verdict(&bad.join("\n")).is_linearizable());
    }

    #[test]
    fn keys_are_checked_independently() {
        let h = r#"{"process":0,"type":"invoke","f":"write","key":"a","value":1,"time":0}
{"process":0,"type":"ok","f":"write","key":"a","value":1,"time":1}
{"process":1,"type":"invoke","f":"read","key":"b","value":null,"time":2}
{"process":1,"type":"ok","f":"read","key":"b","value":null,"time":3}"#;
        assert!(verdict(h).is_linearizable());
    }

    #[test]
    fn hundreds_of_concurrent_info_operations_end_quickly() {
        let mut lines = Vec::new();
        for p in 0..300u64 {
            lines.push(line(p, "invoke", "write", &p.to_string(), p));
        }
        for p in 0..300u64 {
            lines.push(line(p, "info", "write", &p.to_string(), 1000 + p));
        }
        lines.push(line(999, "invoke", "read", "null", 5000));
        lines.push(line(999, "ok", "read", "17", 5001));
        assert!(verdict(&lines.join("\n")).is_linearizable());
    }

    #[test]
    fn a_pathological_history_ends_with_a_verdict_or_the_search_limit() {
        // Many concurrent writes and reads of values that force deep backtracking.
        let mut lines = Vec::new();
        for p in 0..40u64 {
            lines.push(line(p, "invoke", "write", &p.to_string(), 0));
        }
        for p in 0..40u64 {
            lines.push(line(100 + p, "invoke", "read", "null", 1));
        }
        for p in 0..40u64 {
            lines.push(line(p, "ok", "write", &p.to_string(), 10));
            lines.push(line(100 + p, "ok", "read", &((p * 7) % 40).to_string(), 10));
        }
        lines.push(line(500, "invoke", "read", "null", 20));
        lines.push(line(500, "ok", "read", "999", 21));
        let events = parse_history(&lines.join("\n")).unwrap();
        let ops = pair_operations(&events).unwrap();
        let limits = Limits { steps_per_key_max: 200_000 };
        let verdict = check(&RegisterModel::register(), &ops, limits);
        assert!(!verdict.is_linearizable(), "{verdict:?}");
    }

    #[test]
    fn a_search_that_is_too_big_reports_the_limit_instead_of_hanging() {
        // 30 concurrent writes, then reads that each see a different value: refuting this needs
        // every order of the writes, far beyond a small step budget.
        let mut lines = Vec::new();
        for p in 0..30u64 {
            lines.push(line(p, "invoke", "write", &p.to_string(), 0));
        }
        for p in 0..30u64 {
            lines.push(line(p, "ok", "write", &p.to_string(), 10));
        }
        for p in 0..30u64 {
            lines.push(line(100 + p, "invoke", "read", "null", 20 + 2 * p));
            lines.push(line(100 + p, "ok", "read", &p.to_string(), 21 + 2 * p));
        }
        let events = parse_history(&lines.join("\n")).unwrap();
        let ops = pair_operations(&events).unwrap();
        let verdict = check(&RegisterModel::register(), &ops, Limits { steps_per_key_max: 100_000 });
        assert!(matches!(verdict, Verdict::Unknown { ref key } if key == "x"), "{verdict:?}");
    }

    #[test]
    fn the_timeline_names_the_key_and_marks_unplaced_operations() {
        let h = [
            line(0, "invoke", "write", "1", 0),
            line(0, "ok", "write", "1", 1),
            line(1, "invoke", "read", "null", 2),
            line(1, "ok", "read", "2", 3),
        ]
        .join("\n");
        let Verdict::NotLinearizable(violation) = verdict(&h) else { panic!() };
        let html = crate::html::render_timeline(&violation);
        assert!(html.contains("key <code>x</code>"));
        assert!(html.contains(r#"class="bad""#));
        assert!(html.contains("read → 2"));
    }
}
