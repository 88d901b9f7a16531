//! The session guarantees (Terry et al., 1994), checked on a history whose operations name their
//! session and the store revision they returned: weaker than linearizability, and what a causal
//! read promises.
//!
//! Within one session, operations run one after another; for each pair, earlier then later:
//! - **read your writes**: a read after a write returns a revision at or past the write's;
//! - **monotonic reads**: a read after a read returns a revision at or past the earlier one's;
//! - **monotonic writes**: a write after a write is committed at a later revision;
//! - **writes follow reads**: a write after a read is committed past the read's revision.
//!
//! Causal consistency, as ballot's causal reads promise it, is the four together, plus the
//! reads' values agreeing with the revisions they claim: a read of a key returns what the last
//! write to that key at or before its revision wrote ([`check_snapshots`]). Revisions alone
//! would trust the server's word; the values check it.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::history::Operation;

/// One of the session guarantees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Guarantee {
    /// A read sees the session's earlier writes.
    ReadYourWrites,
    /// Reads never go back.
    MonotonicReads,
    /// Writes are committed in session order.
    MonotonicWrites,
    /// A write is ordered after what the session read.
    WritesFollowReads,
}

impl Guarantee {
    /// All four: causal consistency's session part.
    pub const ALL: [Guarantee; 4] = [
        Guarantee::ReadYourWrites,
        Guarantee::MonotonicReads,
        Guarantee::MonotonicWrites,
        Guarantee::WritesFollowReads,
    ];

    /// Its usual name.
    pub fn name(self) -> &'static str {
        match self {
            Guarantee::ReadYourWrites => "read-your-writes",
            Guarantee::MonotonicReads => "monotonic reads",
            Guarantee::MonotonicWrites => "monotonic writes",
            Guarantee::WritesFollowReads => "writes-follow-reads",
        }
    }
}

/// A broken guarantee: the two operations (by id) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionViolation {
    /// Which guarantee.
    pub guarantee: Option<Guarantee>,
    /// The earlier operation (for a snapshot violation: the read itself).
    pub earlier: usize,
    /// The later operation.
    pub later: usize,
    /// What happened, in words.
    pub explanation: String,
}

/// True if the operation only reads.
fn is_read(op: &Operation) -> bool {
    op.f == "read"
}

/// Checks `guarantees` on every session of `operations`. Operations whose outcome or revision
/// is unknown, or that name no session, take no part.
pub fn check_sessions(operations: &[Operation], guarantees: &[Guarantee]) -> Vec<SessionViolation> {
    let mut sessions: BTreeMap<u64, Vec<&Operation>> = BTreeMap::new();
    for op in operations {
        if let (Some(session), Some(_), false) = (op.session, op.revision, op.is_info()) {
            sessions.entry(session).or_default().push(op);
        }
    }
    let mut violations = Vec::new();
    for (session, mut ops) in sessions {
        ops.sort_by_key(|op| op.call);
        // The highest revision of the session's reads and writes so far, with their op.
        let mut last_write: Option<&Operation> = None;
        let mut last_read: Option<&Operation> = None;
        for op in ops {
            let revision = op.revision.expect("filtered");
            let mut broken = |guarantee: Guarantee, earlier: &Operation, relation: &str| {
                violations.push(SessionViolation {
                    guarantee: Some(guarantee),
                    earlier: earlier.id,
                    later: op.id,
                    explanation: format!(
                        "session {session}: {} at revision {revision} comes after {} at revision {}, yet is not {relation} it",
                        op.describe(),
                        earlier.describe(),
                        earlier.revision.unwrap_or_default()
                    ),
                });
            };
            let wanted = |g: Guarantee| guarantees.contains(&g);
            if is_read(op) {
                if let Some(write) = last_write.filter(|w| revision < w.revision.unwrap_or_default()) {
                    if wanted(Guarantee::ReadYourWrites) {
                        broken(Guarantee::ReadYourWrites, write, "at or past");
                    }
                }
                if let Some(read) = last_read.filter(|r| revision < r.revision.unwrap_or_default()) {
                    if wanted(Guarantee::MonotonicReads) {
                        broken(Guarantee::MonotonicReads, read, "at or past");
                    }
                }
                if last_read.is_none_or(|r| revision >= r.revision.unwrap_or_default()) {
                    last_read = Some(op);
                }
            } else {
                if let Some(write) = last_write.filter(|w| revision <= w.revision.unwrap_or_default()) {
                    if wanted(Guarantee::MonotonicWrites) {
                        broken(Guarantee::MonotonicWrites, write, "past");
                    }
                }
                if let Some(read) = last_read.filter(|r| revision <= r.revision.unwrap_or_default()) {
                    if wanted(Guarantee::WritesFollowReads) {
                        broken(Guarantee::WritesFollowReads, read, "past");
                    }
                }
                if last_write.is_none_or(|w| revision > w.revision.unwrap_or_default()) {
                    last_write = Some(op);
                }
            }
        }
    }
    violations
}

/// The value a write-type operation leaves in its key, if it is known to leave one: a write's
/// value, a successful cas's new value, a delete's absence (`Null`).
fn written(op: &Operation) -> Option<Value> {
    match op.f.as_str() {
        "write" => Some(op.input.clone()),
        "delete" => Some(Value::Null),
        "cas" => match &op.input {
            Value::Array(pair) if pair.len() == 2 => Some(pair[1].clone()),
            _ => None,
        },
        _ => None,
    }
}

/// Checks that every read returned, for its key, what the last write at or before the read's
/// revision left there (the writes' revisions known from their answers). A read whose
/// revision falls among writes of unknown outcome is accepted if one of them explains it.
pub fn check_snapshots(operations: &[Operation]) -> Vec<SessionViolation> {
    // Per key: the known writes by revision, and the values of writes of unknown outcome.
    let mut known: BTreeMap<&str, BTreeMap<i64, (&Operation, Value)>> = BTreeMap::new();
    let mut unknown: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for op in operations.iter().filter(|op| !is_read(op)) {
        let Some(value) = written(op) else { continue };
        match (op.is_info(), op.revision) {
            (false, Some(revision)) => {
                known.entry(op.key.as_str()).or_default().insert(revision, (op, value));
            }
            _ => unknown.entry(op.key.as_str()).or_default().push(value),
        }
    }
    let mut violations = Vec::new();
    for read in operations.iter().filter(|op| is_read(op) && !op.is_info()) {
        let (Some(revision), Some(got)) = (read.revision, read.output.as_ref()) else { continue };
        let last = known.get(read.key.as_str()).and_then(|writes| writes.range(..=revision).next_back());
        let expected = last.map_or(Value::Null, |(_, (_, value))| value.clone());
        let explained = *got == expected || unknown.get(read.key.as_str()).is_some_and(|values| values.contains(got));
        if !explained {
            violations.push(SessionViolation {
                guarantee: None,
                earlier: last.map_or(read.id, |(_, (write, _))| write.id),
                later: read.id,
                explanation: format!(
                    "{} claims revision {revision}, but the last write of {} at or before it left {expected}",
                    read.describe(),
                    read.key
                ),
            });
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn op(id: usize, session: u64, f: &str, key: &str, value: Value, revision: i64, call: u64) -> Operation {
        let (input, output) = if f == "read" { (Value::Null, Some(value)) } else { (value.clone(), Some(value)) };
        Operation {
            id,
            process: session,
            f: f.into(),
            key: key.into(),
            input,
            output,
            call,
            ret: call + 1,
            session: Some(session),
            revision: Some(revision),
        }
    }

    #[test]
    fn reading_ones_own_write_back_at_a_lagging_replica_breaks_read_your_writes() {
        // The chapter's example: a user posts, then reloads the page from a replica that has
        // not applied the post yet.
        let history =
            [op(0, 1, "write", "profile", json!("new"), 10, 0), op(1, 1, "read", "profile", json!("old"), 7, 2)];
        let found = check_sessions(&history, &Guarantee::ALL);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].guarantee, found[0].earlier, found[0].later), (Some(Guarantee::ReadYourWrites), 0, 1));
        // With a causal read the replica waits until it has the write: revision 10 or more.
        let causal = [history[0].clone(), op(1, 1, "read", "profile", json!("new"), 10, 2)];
        assert!(check_sessions(&causal, &Guarantee::ALL).is_empty());
        // Another session may see the old state: no guarantee spans sessions.
        let other = [history[0].clone(), op(1, 2, "read", "profile", json!("old"), 7, 2)];
        assert!(check_sessions(&other, &Guarantee::ALL).is_empty());
    }

    #[test]
    fn a_comment_read_before_the_question_it_answers_breaks_the_snapshot_or_monotonic_reads() {
        // The chapter's example: an observer sees the answer before the question. Mrs. Cake's
        // answer (revision 6) was written after reading Mr. Poons's question (revision 5).
        let question = op(0, 1, "write", "question", json!("how far?"), 5, 0);
        let read = op(1, 2, "read", "question", json!("how far?"), 5, 1);
        let answer = op(2, 2, "write", "answer", json!("ten miles"), 6, 2);
        // The observer reads the answer at revision 6, then the question at a lagging replica.
        let saw_answer = op(3, 3, "read", "answer", json!("ten miles"), 6, 3);
        let no_question = op(4, 3, "read", "question", Value::Null, 4, 4);
        let history = [question, read, answer, saw_answer, no_question];
        let found = check_sessions(&history, &Guarantee::ALL);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].guarantee, found[0].later), (Some(Guarantee::MonotonicReads), 4));
        // And a replica claiming revision 6 while still missing the question is caught by
        // the snapshot check, whatever the session.
        let mut lying = history.clone();
        lying[4] = op(4, 3, "read", "question", Value::Null, 6, 4);
        assert!(check_sessions(&lying, &Guarantee::ALL).is_empty());
        let snapshot = check_snapshots(&lying);
        assert_eq!(snapshot.len(), 1, "{snapshot:?}");
        assert_eq!((snapshot[0].earlier, snapshot[0].later), (0, 4));
    }

    #[test]
    fn writes_follow_reads_and_monotonic_writes_are_checked_in_session_order() {
        let history = [
            op(0, 1, "read", "k", json!(1), 9, 0),
            op(1, 1, "write", "k", json!(2), 8, 1),
            op(2, 1, "write", "k", json!(3), 8, 2),
        ];
        let found = check_sessions(&history, &Guarantee::ALL);
        let kinds: Vec<Option<Guarantee>> = found.iter().map(|v| v.guarantee).collect();
        assert_eq!(
            kinds,
            [Some(Guarantee::WritesFollowReads), Some(Guarantee::MonotonicWrites), Some(Guarantee::WritesFollowReads)]
        );
        assert!(check_sessions(&history, &[Guarantee::ReadYourWrites]).is_empty(), "only what is asked");
    }

    #[test]
    fn a_read_explained_by_a_write_of_unknown_outcome_passes_the_snapshot_check() {
        let mut maybe = op(0, 1, "write", "k", json!(5), 0, 0);
        maybe.output = None;
        maybe.revision = None;
        let read = op(1, 2, "read", "k", json!(5), 3, 1);
        assert!(check_snapshots(&[maybe.clone(), read.clone()]).is_empty());
        let stray = op(1, 2, "read", "k", json!(6), 3, 1);
        assert_eq!(check_snapshots(&[maybe, stray]).len(), 1);
    }
}
