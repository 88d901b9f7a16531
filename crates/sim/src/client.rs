//! Simulated clients: each runs one operation at a time against whichever node it believes
//! leads, follows redirects, times out like a real client, and records the history.

use ballot_check::{Event, EventType};
use ballot_raft::NodeId;
use serde_json::{json, Value};

use crate::kv::{KvOp, KvResult, RequestId};

/// The operation a client is waiting on.
#[derive(Clone, Debug)]
pub struct Outstanding {
    /// Request id (kept across redirects: a refused request certainly did not happen).
    pub request_id: RequestId,
    /// Key.
    pub key: u8,
    /// What was asked.
    pub op: KvOp,
    /// Redirects followed so far.
    pub redirects: u32,
}

/// One client.
#[derive(Clone, Debug)]
pub struct SimClient {
    /// Client id.
    pub id: u64,
    /// The history's process id; a new one after every unknown outcome (an `info` op never ends).
    pub process: u64,
    /// Where to send the next request.
    pub leader_guess: NodeId,
    /// The operation in progress.
    pub outstanding: Option<Outstanding>,
    /// Requests issued (for request ids).
    pub sequence: u64,
    /// An operation invoked after the faults healed has completed successfully.
    pub ok_after_heal: bool,
    /// Time the outstanding operation was invoked.
    pub invoked_at: u64,
}

impl SimClient {
    /// A client that first talks to `leader_guess`.
    pub fn new(id: u64, leader_guess: NodeId) -> Self {
        SimClient { id, process: id, leader_guess, outstanding: None, sequence: 0, ok_after_heal: false, invoked_at: 0 }
    }

    /// A fresh request id: client id in the high bits.
    pub fn next_request_id(&mut self) -> RequestId {
        self.sequence += 1;
        (self.id << 40) | self.sequence
    }
}

/// Name of a key in the history.
pub fn key_name(key: u8) -> String {
    format!("k{key}")
}

fn value_json(value: Option<u64>) -> Value {
    value.map_or(Value::Null, |v| json!(v))
}

/// The history event for invoking `op`.
pub fn invoke_event(process: u64, key: u8, op: &KvOp, time: u64) -> Event {
    let (f, value) = match op {
        KvOp::Read => ("read", Value::Null),
        KvOp::Write(v) => ("write", json!(v)),
        KvOp::Cas { expected, new } => ("cas", json!([value_json(*expected), new])),
        KvOp::Delete => ("delete", Value::Null),
    };
    Event {
        process,
        kind: EventType::Invoke,
        f: f.into(),
        key: key_name(key),
        value,
        time,
        session: None,
        revision: None,
    }
}

/// The history event for completing `op` with `kind` (and the result, for reads).
pub fn completion_event(
    process: u64,
    key: u8,
    op: &KvOp,
    kind: EventType,
    result: Option<KvResult>,
    time: u64,
) -> Event {
    let mut event = invoke_event(process, key, op, time);
    event.kind = kind;
    if let Some(KvResult::Value(value)) = result {
        event.value = value_json(value);
    }
    event
}
