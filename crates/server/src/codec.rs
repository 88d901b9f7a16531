//! The peer protocol's encoding of consensus messages: a compact, explicit binary layout
//! (big-endian integers, length-prefixed byte strings). Decoding checks every length against
//! what is left, so a malformed or hostile frame is an error, never a panic or a huge
//! allocation.
//!
//! Every frame starts with sender, addressee and term (Raft's term, or the ballot of a
//! Multi-Paxos message), then a kind byte: Raft's kinds are 1–12, Multi-Paxos's 32–43, so a
//! member never mistakes one engine's message for the other's (it refuses them: see
//! `ballot_node::Engine::step`).

use ballot_node::PeerMessage;
use ballot_paxos::multi::{self, Body};
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
    fn entries(&mut self, entries: &[Entry]) {
        self.u64(entries.len() as u64);
        for entry in entries {
            self.u64(entry.term);
            self.u64(entry.index);
            // Kinds 2 and 3 carry a stamp (as in the WAL's records): unstamped entries
            // encode as before.
            let kind = match entry.kind {
                EntryKind::Normal => 0,
                EntryKind::ConfChange => 1,
            };
            if entry.stamp == 0 {
                self.u8(kind);
            } else {
                self.u8(kind + 2);
                self.u64(entry.stamp);
            }
            self.bytes(&entry.data);
        }
    }
    fn snapshot(&mut self, snapshot: &Snapshot) {
        let meta = &snapshot.meta;
        self.u64(meta.index);
        self.u64(meta.term);
        let conf = &meta.conf_state;
        self.ids(conf.voters.iter());
        self.ids(conf.voters_outgoing.iter());
        self.ids(conf.learners.iter());
        self.ids(conf.learners_next.iter());
        self.bytes(&snapshot.data);
    }
    fn payloads(&mut self, payloads: &[Vec<u8>]) {
        self.u64(payloads.len() as u64);
        for payload in payloads {
            self.bytes(payload);
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
    fn entries(&mut self) -> Result<Vec<Entry>, DecodeError> {
        let n = self.count(25)?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let term = self.u64()?;
            let index = self.u64()?;
            let (kind, stamp) = match self.u8()? {
                0 => (EntryKind::Normal, 0),
                1 => (EntryKind::ConfChange, 0),
                2 => (EntryKind::Normal, self.u64()?),
                3 => (EntryKind::ConfChange, self.u64()?),
                _ => return Err(DecodeError("entry kind")),
            };
            entries.push(Entry { term, index, kind, data: self.bytes()?, stamp });
        }
        Ok(entries)
    }
    fn snapshot(&mut self) -> Result<Snapshot, DecodeError> {
        let index = self.u64()?;
        let term = self.u64()?;
        let conf_state = ConfState {
            voters: self.ids()?,
            voters_outgoing: self.ids()?,
            learners: self.ids()?,
            learners_next: self.ids()?,
        };
        Ok(Snapshot { meta: SnapshotMeta { index, term, conf_state }, data: self.bytes()? })
    }
    fn payloads(&mut self) -> Result<Vec<Vec<u8>>, DecodeError> {
        let n = self.count(8)?;
        (0..n).map(|_| self.bytes()).collect()
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

/// Encodes a Raft message (kinds 1–12).
fn encode_raft(message: &Message) -> Vec<u8> {
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
            w.entries(entries);
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
            w.snapshot(snapshot);
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
            w.payloads(entries);
        }
    }
    w.out
}

/// Encodes a Multi-Paxos message (kinds 32–43).
fn encode_paxos(message: &multi::Message) -> Vec<u8> {
    let mut w = Writer::default();
    w.u64(message.from);
    w.u64(message.to);
    w.u64(message.ballot);
    match &message.body {
        Body::Prepare { from_slot } => {
            w.u8(32);
            w.u64(*from_slot);
        }
        Body::Promise { commit, compacted, entries } => {
            w.u8(33);
            w.u64(*commit);
            w.u64(*compacted);
            w.entries(entries);
        }
        Body::Nack { promised } => {
            w.u8(34);
            w.u64(*promised);
        }
        Body::Accept { entries, commit } => {
            w.u8(35);
            w.u64(*commit);
            w.entries(entries);
        }
        Body::Accepted { through } => {
            w.u8(36);
            w.u64(*through);
        }
        Body::Refused { through } => {
            w.u8(37);
            w.u64(*through);
        }
        Body::Heartbeat { commit, round } => {
            w.u8(38);
            w.u64(*commit);
            w.u64(*round);
        }
        Body::HeartbeatAck { round, through } => {
            w.u8(39);
            w.u64(*round);
            w.u64(*through);
        }
        Body::Snapshot { snapshot } => {
            w.u8(40);
            w.snapshot(snapshot);
        }
        Body::Propose { entries } => {
            w.u8(41);
            w.payloads(entries);
        }
        Body::ReadIndex { context } => {
            w.u8(42);
            w.bytes(context);
        }
        Body::ReadIndexResponse { context, index } => {
            w.u8(43);
            w.bytes(context);
            w.u64(*index);
        }
    }
    w.out
}

/// Encodes a message of either engine.
pub fn encode(message: &PeerMessage) -> Vec<u8> {
    match message {
        PeerMessage::Raft(message) => encode_raft(message),
        PeerMessage::Paxos(message) => encode_paxos(message),
    }
}

/// Decodes a message written by [`encode`].
pub fn decode(input: &[u8]) -> Result<PeerMessage, DecodeError> {
    let mut r = Reader::new(input);
    let from = r.u64()?;
    let to = r.u64()?;
    let term = r.u64()?;
    let kind = r.u8()?;
    if kind >= 32 {
        let body = decode_paxos_body(kind, &mut r)?;
        r.finish()?;
        return Ok(PeerMessage::Paxos(multi::Message { from, to, ballot: term, body }));
    }
    let body = match kind {
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
            let entries = r.entries()?;
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
        7 => MessageBody::InstallSnapshot { snapshot: r.snapshot()? },
        8 => MessageBody::ReadIndex { context: r.bytes()? },
        9 => MessageBody::ReadIndexResponse { context: r.bytes()?, index: r.u64()? },
        10 => MessageBody::TimeoutNow,
        11 => MessageBody::Propose { entries: r.payloads()? },
        _ => return Err(DecodeError("message kind")),
    };
    r.finish()?;
    Ok(PeerMessage::Raft(Message { from, to, term, body }))
}

fn decode_paxos_body(kind: u8, r: &mut Reader<'_>) -> Result<Body, DecodeError> {
    Ok(match kind {
        32 => Body::Prepare { from_slot: r.u64()? },
        33 => Body::Promise { commit: r.u64()?, compacted: r.u64()?, entries: r.entries()? },
        34 => Body::Nack { promised: r.u64()? },
        35 => {
            let commit = r.u64()?;
            Body::Accept { entries: r.entries()?, commit }
        }
        36 => Body::Accepted { through: r.u64()? },
        37 => Body::Refused { through: r.u64()? },
        38 => Body::Heartbeat { commit: r.u64()?, round: r.u64()? },
        39 => Body::HeartbeatAck { round: r.u64()?, through: r.u64()? },
        40 => Body::Snapshot { snapshot: r.snapshot()? },
        41 => Body::Propose { entries: r.payloads()? },
        42 => Body::ReadIndex { context: r.bytes()? },
        43 => Body::ReadIndexResponse { context: r.bytes()?, index: r.u64()? },
        _ => return Err(DecodeError("message kind")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<PeerMessage> {
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
        let entries = vec![
            Entry { stamp: 0, term: 0, index: 1, kind: EntryKind::ConfChange, data: b"genesis".to_vec() },
            Entry { stamp: 9 << 16, term: 7, index: 2, kind: EntryKind::Normal, data: b"put".to_vec() },
        ];
        let snapshot = Snapshot {
            meta: SnapshotMeta { index: 10, term: 7, conf_state: ConfState::with_voters([1, 2, 3]) },
            data: vec![4, 5],
        };
        let paxos = vec![
            Body::Prepare { from_slot: 5 },
            Body::Promise { commit: 4, compacted: 2, entries: entries.clone() },
            Body::Nack { promised: 11 },
            Body::Accept { entries, commit: 1 },
            Body::Accepted { through: 2 },
            Body::Refused { through: 1 },
            Body::Heartbeat { commit: 2, round: 8 },
            Body::HeartbeatAck { round: 8, through: 2 },
            Body::Snapshot { snapshot },
            Body::Propose { entries: vec![vec![1], vec![]] },
            Body::ReadIndex { context: vec![3] },
            Body::ReadIndexResponse { context: vec![3], index: 2 },
        ];
        let raft = bodies.into_iter().map(|body| PeerMessage::Raft(Message { from: 1, to: 2, term: 3, body }));
        raft.chain(paxos.into_iter().map(|body| PeerMessage::Paxos(multi::Message { from: 2, to: 1, ballot: 7, body })))
            .collect()
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
                assert!(decode(&bytes[..len]).is_err(), "{} truncated to {len}", message.kind_name());
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
