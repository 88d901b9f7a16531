//! The peer protocol's encoding of Raft messages: a compact, explicit binary layout (big-endian
//! integers, length-prefixed byte strings). Decoding checks every length against what is left,
//! so a malformed or hostile frame is an error, never a panic or a huge allocation.

use ballot_raft::{ConfState, Entry, EntryKind, Message, MessageBody, Snapshot, SnapshotMeta};

/// A frame that does not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed peer message: {0}")]
pub struct DecodeError(pub &'static str);

/// Appends big-endian fields to a buffer.
#[derive(Default)]
pub struct Writer {
    /// The bytes written so far.
    pub out: Vec<u8>,
}

impl Writer {
    /// One byte.
    pub fn u8(&mut self, value: u8) {
        self.out.push(value);
    }
    /// A big-endian u64.
    pub fn u64(&mut self, value: u64) {
        self.out.extend_from_slice(&value.to_be_bytes());
    }
    /// A length-prefixed byte string.
    pub fn bytes(&mut self, value: &[u8]) {
        self.u64(value.len() as u64);
        self.out.extend_from_slice(value);
    }
    fn bool(&mut self, value: bool) {
        self.u8(u8::from(value));
    }
    fn ids<'a>(&mut self, ids: impl ExactSizeIterator<Item = &'a u64>) {
        self.u64(ids.len() as u64);
        for id in ids {
            self.u64(*id);
        }
    }
}

/// Reads what [`Writer`] wrote, checking bounds.
pub struct Reader<'a> {
    input: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Reader { input }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.input.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (head, tail) = self.input.split_at(n);
        self.input = tail;
        Ok(head)
    }
    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    /// A big-endian u64.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    /// A length-prefixed byte string.
    pub fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let len = self.u64()?;
        let len = usize::try_from(len).map_err(|_| DecodeError("length"))?;
        Ok(self.take(len)?.to_vec())
    }
    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError("bool")),
        }
    }
    /// A count of items each at least `item_bytes` long, checked against what is left.
    fn count(&mut self, item_bytes: usize) -> Result<usize, DecodeError> {
        let n = usize::try_from(self.u64()?).map_err(|_| DecodeError("count"))?;
        if n.saturating_mul(item_bytes) > self.input.len() {
            return Err(DecodeError("count larger than the frame"));
        }
        Ok(n)
    }
    fn ids(&mut self) -> Result<std::collections::BTreeSet<u64>, DecodeError> {
        let n = self.count(8)?;
        (0..n).map(|_| self.u64()).collect()
    }
    /// Fails unless everything was read.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.input.is_empty() {
            Ok(())
        } else {
            Err(DecodeError("trailing bytes"))
        }
    }
}

/// Encodes a message.
pub fn encode(message: &Message) -> Vec<u8> {
    let mut w = Writer::default();
    w.u64(message.from);
    w.u64(message.to);
    w.u64(message.term);
    match &message.body {
        MessageBody::Vote { pre_vote, last_index, last_term, leader_transfer } => {
            w.u8(1);
            w.bool(*pre_vote);
            w.u64(*last_index);
            w.u64(*last_term);
            w.bool(*leader_transfer);
        }
        MessageBody::VoteResponse { pre_vote, reject } => {
            w.u8(2);
            w.bool(*pre_vote);
            w.bool(*reject);
        }
        MessageBody::Append { prev_index, prev_term, entries, commit } => {
            w.u8(3);
            w.u64(*prev_index);
            w.u64(*prev_term);
            w.u64(*commit);
            w.u64(entries.len() as u64);
            for entry in entries {
                w.u64(entry.term);
                w.u64(entry.index);
                // Kinds 2 and 3 carry a stamp (as in the WAL's records): unstamped entries
                // encode as before.
                let kind = match entry.kind {
                    EntryKind::Normal => 0,
                    EntryKind::ConfChange => 1,
                };
                if entry.stamp == 0 {
                    w.u8(kind);
                } else {
                    w.u8(kind + 2);
                    w.u64(entry.stamp);
                }
                w.bytes(&entry.data);
            }
        }
        MessageBody::AppendResponse { reject, index, hint_index, hint_term } => {
            w.u8(4);
            w.bool(*reject);
            w.u64(*index);
            w.u64(*hint_index);
            w.u64(*hint_term);
        }
        MessageBody::Heartbeat { commit, round, clock_ms: 0 } => {
            w.u8(5);
            w.u64(*commit);
            w.u64(*round);
        }
        MessageBody::Heartbeat { commit, round, clock_ms } => {
            w.u8(12);
            w.u64(*commit);
            w.u64(*round);
            w.u64(*clock_ms);
        }
        MessageBody::HeartbeatResponse { round } => {
            w.u8(6);
            w.u64(*round);
        }
        MessageBody::InstallSnapshot { snapshot } => {
            w.u8(7);
            let meta = &snapshot.meta;
            w.u64(meta.index);
            w.u64(meta.term);
            let conf = &meta.conf_state;
            w.ids(conf.voters.iter());
            w.ids(conf.voters_outgoing.iter());
            w.ids(conf.learners.iter());
            w.ids(conf.learners_next.iter());
            w.bytes(&snapshot.data);
        }
        MessageBody::ReadIndex { context } => {
            w.u8(8);
            w.bytes(context);
        }
        MessageBody::ReadIndexResponse { context, index } => {
            w.u8(9);
            w.bytes(context);
            w.u64(*index);
        }
        MessageBody::TimeoutNow => w.u8(10),
        MessageBody::Propose { entries } => {
            w.u8(11);
            w.u64(entries.len() as u64);
            for entry in entries {
                w.bytes(entry);
            }
        }
    }
    w.out
}

/// Decodes a message written by [`encode`].
pub fn decode(input: &[u8]) -> Result<Message, DecodeError> {
    let mut r = Reader::new(input);
    let from = r.u64()?;
    let to = r.u64()?;
    let term = r.u64()?;
    let body = match r.u8()? {
        1 => MessageBody::Vote {
            pre_vote: r.bool()?,
            last_index: r.u64()?,
            last_term: r.u64()?,
            leader_transfer: r.bool()?,
        },
        2 => MessageBody::VoteResponse { pre_vote: r.bool()?, reject: r.bool()? },
        3 => {
            let prev_index = r.u64()?;
            let prev_term = r.u64()?;
            let commit = r.u64()?;
            let n = r.count(25)?;
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                let term = r.u64()?;
                let index = r.u64()?;
                let (kind, stamp) = match r.u8()? {
                    0 => (EntryKind::Normal, 0),
                    1 => (EntryKind::ConfChange, 0),
                    2 => (EntryKind::Normal, r.u64()?),
                    3 => (EntryKind::ConfChange, r.u64()?),
                    _ => return Err(DecodeError("entry kind")),
                };
                entries.push(Entry { term, index, kind, data: r.bytes()?, stamp });
            }
            MessageBody::Append { prev_index, prev_term, entries, commit }
        }
        4 => MessageBody::AppendResponse {
            reject: r.bool()?,
            index: r.u64()?,
            hint_index: r.u64()?,
            hint_term: r.u64()?,
        },
        5 => MessageBody::Heartbeat { commit: r.u64()?, round: r.u64()?, clock_ms: 0 },
        12 => MessageBody::Heartbeat { commit: r.u64()?, round: r.u64()?, clock_ms: r.u64()? },
        6 => MessageBody::HeartbeatResponse { round: r.u64()? },
        7 => {
            let index = r.u64()?;
            let term = r.u64()?;
            let conf_state =
                ConfState { voters: r.ids()?, voters_outgoing: r.ids()?, learners: r.ids()?, learners_next: r.ids()? };
            let data = r.bytes()?;
            MessageBody::InstallSnapshot { snapshot: Snapshot { meta: SnapshotMeta { index, term, conf_state }, data } }
        }
        8 => MessageBody::ReadIndex { context: r.bytes()? },
        9 => MessageBody::ReadIndexResponse { context: r.bytes()?, index: r.u64()? },
        10 => MessageBody::TimeoutNow,
        11 => {
            let n = r.count(8)?;
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                entries.push(r.bytes()?);
            }
            MessageBody::Propose { entries }
        }
        _ => return Err(DecodeError("message kind")),
    };
    r.finish()?;
    Ok(Message { from, to, term, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Message> {
        let bodies = vec![
            MessageBody::Vote { pre_vote: true, last_index: 7, last_term: 3, leader_transfer: false },
            MessageBody::VoteResponse { pre_vote: false, reject: true },
            MessageBody::Append {
                prev_index: 4,
                prev_term: 2,
                entries: vec![
                    Entry { stamp: 0, term: 2, index: 5, kind: EntryKind::Normal, data: b"put".to_vec() },
                    Entry { stamp: 0, term: 2, index: 6, kind: EntryKind::ConfChange, data: vec![] },
                    Entry { stamp: 9 << 16 | 3, term: 2, index: 7, kind: EntryKind::Normal, data: b"x".to_vec() },
                ],
                commit: 5,
            },
            MessageBody::AppendResponse { reject: false, index: 6, hint_index: 0, hint_term: 0 },
            MessageBody::Heartbeat { commit: 6, round: 9, clock_ms: 0 },
            MessageBody::Heartbeat { commit: 6, round: 9, clock_ms: 1_765_000_000_000 },
            MessageBody::HeartbeatResponse { round: 9 },
            MessageBody::InstallSnapshot {
                snapshot: Snapshot {
                    meta: SnapshotMeta { index: 10, term: 3, conf_state: ConfState::with_voters([1, 2, 3]) },
                    data: vec![1, 2, 3],
                },
            },
            MessageBody::ReadIndex { context: vec![0, 1] },
            MessageBody::ReadIndexResponse { context: vec![0, 1], index: 12 },
            MessageBody::TimeoutNow,
            MessageBody::Propose { entries: vec![vec![1, 2], vec![]] },
        ];
        bodies.into_iter().map(|body| Message { from: 1, to: 2, term: 3, body }).collect()
    }

    #[test]
    fn every_message_kind_round_trips() {
        for message in samples() {
            assert_eq!(decode(&encode(&message)).unwrap(), message);
        }
    }

    #[test]
    fn every_truncation_and_a_trailing_byte_are_errors() {
        for message in samples() {
            let bytes = encode(&message);
            for len in 0..bytes.len() {
                assert!(decode(&bytes[..len]).is_err(), "{} truncated to {len}", message.body.kind_name());
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(decode(&longer), Err(DecodeError("trailing bytes")));
        }
    }

    #[test]
    fn a_huge_count_is_refused_before_allocating() {
        let mut w = Writer::default();
        for _ in 0..3 {
            w.u64(1);
        }
        w.u8(3);
        for _ in 0..3 {
            w.u64(0);
        }
        w.u64(u64::MAX);
        assert!(decode(&w.out).is_err());
    }
}
