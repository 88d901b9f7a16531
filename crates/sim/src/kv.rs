//! The simulator's replicated state machine: a map of registers with read / write / cas, and
//! the commands that carry client requests through the log. (The real mvcc state machine
//! replaces it once it exists.)

use std::collections::BTreeMap;

/// A client's request id: unique per client request, carried in the entry so the node that
/// proposed it can answer when it is applied.
pub type RequestId = u64;

/// An operation on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    /// Read the value.
    Read,
    /// Set the value.
    Write(u64),
    /// Set to `new` if the value is `expected` (`None` = absent).
    Cas {
        /// Required current value.
        expected: Option<u64>,
        /// Value to set.
        new: u64,
    },
}

/// A write command in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// The request this command answers.
    pub request_id: RequestId,
    /// Key.
    pub key: u8,
    /// Write or cas.
    pub op: KvOp,
}

impl Command {
    /// Encodes as entry data: request id, key, tag, values.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(26);
        out.extend_from_slice(&self.request_id.to_be_bytes());
        out.push(self.key);
        match self.op {
            KvOp::Read => out.push(0),
            KvOp::Write(value) => {
                out.push(1);
                out.extend_from_slice(&value.to_be_bytes());
            }
            KvOp::Cas { expected, new } => {
                out.push(2);
                out.extend_from_slice(&expected.map_or(u64::MAX, |v| v).to_be_bytes());
                out.extend_from_slice(&new.to_be_bytes());
            }
        }
        out
    }

    /// Decodes entry data written by [`Command::encode`]; `None` if malformed.
    pub fn decode(data: &[u8]) -> Option<Command> {
        let u64_at = |at: usize| -> Option<u64> { Some(u64::from_be_bytes(data.get(at..at + 8)?.try_into().ok()?)) };
        let request_id = u64_at(0)?;
        let key = *data.get(8)?;
        let op = match *data.get(9)? {
            0 => KvOp::Read,
            1 => KvOp::Write(u64_at(10)?),
            2 => {
                let expected = u64_at(10)?;
                KvOp::Cas { expected: (expected != u64::MAX).then_some(expected), new: u64_at(18)? }
            }
            _ => return None,
        };
        Some(Command { request_id, key, op })
    }
}

/// What applying a command returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvResult {
    /// A read's value.
    Value(Option<u64>),
    /// A write took effect.
    Written,
    /// A cas took effect (true) or found another value (false).
    Swapped(bool),
}

/// The client a request id belongs to (high bits) and its sequence number (low 40 bits).
fn session_of(request_id: RequestId) -> (u64, u64) {
    (request_id >> 40, request_id & ((1 << 40) - 1))
}

/// The state machine. It keeps, per client, the last request applied and its result (a client
/// session, Raft thesis §6.3): the network may deliver a request twice and a redirect may
/// propose it again elsewhere, yet it takes effect once, and a duplicate gets the first answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvStore {
    values: BTreeMap<u8, u64>,
    sessions: BTreeMap<u64, (u64, KvResult)>,
}

impl KvStore {
    /// Applies a command once per request id. Returns `None` for a duplicate of a request older
    /// than the client's latest (nobody waits for it any more).
    pub fn apply(&mut self, command: &Command) -> Option<KvResult> {
        let (client, sequence) = session_of(command.request_id);
        match self.sessions.get(&client) {
            Some((last, result)) if *last == sequence => return Some(*result),
            Some((last, _)) if *last > sequence => return None,
            _ => {}
        }
        let result = self.execute(command);
        self.sessions.insert(client, (sequence, result));
        Some(result)
    }

    fn execute(&mut self, command: &Command) -> KvResult {
        match command.op {
            KvOp::Read => KvResult::Value(self.get(command.key)),
            KvOp::Write(value) => {
                self.values.insert(command.key, value);
                KvResult::Written
            }
            KvOp::Cas { expected, new } => {
                if self.get(command.key) == expected {
                    self.values.insert(command.key, new);
                    KvResult::Swapped(true)
                } else {
                    KvResult::Swapped(false)
                }
            }
        }
    }

    /// The value of a key.
    pub fn get(&self, key: u8) -> Option<u64> {
        self.values.get(&key).copied()
    }

    /// Serializes the state (the snapshot image): values, then sessions.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(self.values.len() as u64).to_be_bytes());
        for (key, value) in &self.values {
            out.push(*key);
            out.extend_from_slice(&value.to_be_bytes());
        }
        for (client, (sequence, result)) in &self.sessions {
            out.extend_from_slice(&client.to_be_bytes());
            out.extend_from_slice(&sequence.to_be_bytes());
            let (tag, value) = match result {
                KvResult::Value(None) => (0u8, 0),
                KvResult::Value(Some(v)) => (1, *v),
                KvResult::Written => (2, 0),
                KvResult::Swapped(false) => (3, 0),
                KvResult::Swapped(true) => (4, 0),
            };
            out.push(tag);
            out.extend_from_slice(&value.to_be_bytes());
        }
        out
    }

    /// Restores from [`KvStore::snapshot`] output (our own format; an empty image is the
    /// empty store).
    pub fn restore(data: &[u8]) -> KvStore {
        let u64_at = |at: usize| u64::from_be_bytes(data[at..at + 8].try_into().expect("8 bytes"));
        let mut store = KvStore::default();
        if data.is_empty() {
            return store;
        }
        let count = u64_at(0) as usize;
        let mut at = 8;
        for _ in 0..count {
            store.values.insert(data[at], u64_at(at + 1));
            at += 9;
        }
        while at < data.len() {
            let (client, sequence, tag, value) = (u64_at(at), u64_at(at + 8), data[at + 16], u64_at(at + 17));
            let result = match tag {
                0 => KvResult::Value(None),
                1 => KvResult::Value(Some(value)),
                2 => KvResult::Written,
                3 => KvResult::Swapped(false),
                _ => KvResult::Swapped(true),
            };
            store.sessions.insert(client, (sequence, result));
            at += 25;
        }
        store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        for op in
            [KvOp::Read, KvOp::Write(7), KvOp::Cas { expected: None, new: 3 }, KvOp::Cas { expected: Some(2), new: 3 }]
        {
            let command = Command { request_id: 99, key: 4, op };
            assert_eq!(Command::decode(&command.encode()), Some(command));
        }
        assert_eq!(Command::decode(&[1, 2, 3]), None);
    }

    #[test]
    fn snapshot_round_trips() {
        let mut store = KvStore::default();
        store.apply(&Command { request_id: 1, key: 1, op: KvOp::Write(5) });
        store.apply(&Command { request_id: 2, key: 1, op: KvOp::Cas { expected: Some(5), new: 6 } });
        assert_eq!(store.get(1), Some(6));
        assert_eq!(KvStore::restore(&store.snapshot()), store);
        assert_eq!(KvStore::restore(&[]), KvStore::default());
    }

    #[test]
    fn a_request_applied_twice_takes_effect_once() {
        let mut store = KvStore::default();
        let cas = Command { request_id: (7 << 40) | 1, key: 1, op: KvOp::Cas { expected: None, new: 3 } };
        assert_eq!(store.apply(&cas), Some(KvResult::Swapped(true)));
        assert_eq!(store.apply(&cas), Some(KvResult::Swapped(true)), "the duplicate gets the first answer");
        let next = Command { request_id: (7 << 40) | 2, key: 1, op: KvOp::Write(9) };
        store.apply(&next);
        assert_eq!(store.apply(&cas), None, "an older duplicate is ignored");
        assert_eq!(store.get(1), Some(9));
    }
}
