//! The wire format of [`Message`]: compact and self-describing enough to refuse garbage.
//! Integers are LEB128 varints, strings and byte strings a varint length and the bytes; each
//! message starts with a version byte, so a future format can be told apart.

use crate::message::{Body, Message};
use crate::news::{Meta, News, Query, State, Tags, Update, UserEvent};
use crate::version_vector::{VersionVector, Versioned};

/// The format written by this build.
const VERSION: u8 = 1;

/// A frame that is not a message of this format.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// It ended in the middle of a field.
    #[error("message truncated")]
    Truncated,
    /// A tag or value no encoder writes.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
}

/// Encodes `message`.
pub fn encode(message: &Message) -> Vec<u8> {
    let mut out = vec![VERSION];
    put_str(&mut out, &message.from);
    put_str(&mut out, &message.from_addr);
    put_body(&mut out, &message.body);
    put_varint(&mut out, message.news.len() as u64);
    for news in &message.news {
        put_news(&mut out, news);
    }
    out
}

/// Decodes a message written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let mut input = Reader { bytes, at: 0 };
    if input.byte()? != VERSION {
        return Err(DecodeError::Malformed("unknown version"));
    }
    let from = input.string()?;
    let from_addr = input.string()?;
    let body = input.body()?;
    let count = input.count()?;
    let mut news = Vec::with_capacity(count);
    for _ in 0..count {
        news.push(input.news()?);
    }
    if input.at != bytes.len() {
        return Err(DecodeError::Malformed("trailing bytes"));
    }
    Ok(Message { from, from_addr, body, news })
}

/// The encoded size of a message without news: what is left of a packet for news.
pub fn header_len(message: &Message) -> usize {
    let mut out = Vec::new();
    put_str(&mut out, &message.from);
    put_str(&mut out, &message.from_addr);
    put_body(&mut out, &message.body);
    out.len() + 1 + 2
}

/// The encoded size of one news item.
pub(crate) fn news_len(news: &News) -> usize {
    let mut out = Vec::new();
    put_news(&mut out, news);
    out.len()
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_bytes(out, text.as_bytes());
}

fn put_body(out: &mut Vec<u8>, body: &Body) {
    match body {
        Body::Ping { seq, to } => {
            out.push(0);
            put_varint(out, *seq);
            put_str(out, to);
        }
        Body::PingReq { seq, target, target_addr, nack } => {
            out.push(1);
            put_varint(out, *seq);
            put_str(out, target);
            put_str(out, target_addr);
            out.push(u8::from(*nack));
        }
        Body::Ack { seq, about } => {
            out.push(2);
            put_varint(out, *seq);
            put_str(out, about);
        }
        Body::Nack { seq } => {
            out.push(3);
            put_varint(out, *seq);
        }
        Body::Gossip => out.push(4),
        Body::PushPull { members, kv, event_clock, reply } => {
            out.push(5);
            put_varint(out, members.len() as u64);
            for update in members {
                put_update(out, update);
            }
            put_varint(out, kv.len() as u64);
            for (key, value) in kv {
                put_str(out, key);
                put_versioned(out, value);
            }
            put_varint(out, *event_clock);
            out.push(u8::from(*reply));
        }
        Body::QueryResponse { id, responder, payload } => {
            out.push(6);
            put_varint(out, *id);
            put_str(out, responder);
            put_bytes(out, payload);
        }
    }
}

fn put_update(out: &mut Vec<u8>, update: &Update) {
    put_str(out, &update.member);
    put_varint(out, update.incarnation);
    out.push(match update.state {
        State::Alive => 0,
        State::Suspect => 1,
        State::Dead => 2,
        State::Left => 3,
    });
    put_str(out, &update.from);
    match &update.meta {
        None => out.push(0),
        Some(meta) => {
            out.push(1);
            put_str(out, &meta.addr);
            put_varint(out, meta.tags.len() as u64);
            for (key, value) in &meta.tags {
                put_str(out, key);
                put_str(out, value);
            }
        }
    }
}

fn put_versioned(out: &mut Vec<u8>, value: &Versioned<Option<String>>) {
    put_varint(out, value.siblings().len() as u64);
    for (vector, sibling) in value.siblings() {
        let counters: Vec<(&str, u64)> = vector.counters().collect();
        put_varint(out, counters.len() as u64);
        for (writer, counter) in counters {
            put_str(out, writer);
            put_varint(out, counter);
        }
        match sibling {
            None => out.push(0),
            Some(text) => {
                out.push(1);
                put_str(out, text);
            }
        }
    }
}

fn put_news(out: &mut Vec<u8>, news: &News) {
    match news {
        News::Member(update) => {
            out.push(0);
            put_update(out, update);
        }
        News::Kv(key, value) => {
            out.push(1);
            put_str(out, key);
            put_versioned(out, value);
        }
        News::Event(event) => {
            out.push(2);
            put_varint(out, event.ltime);
            put_str(out, &event.origin);
            put_str(out, &event.name);
            put_bytes(out, &event.payload);
        }
        News::Query(query) => {
            out.push(3);
            put_varint(out, query.id);
            put_str(out, &query.origin);
            put_str(out, &query.origin_addr);
            put_str(out, &query.name);
            put_bytes(out, &query.payload);
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let byte = *self.bytes.get(self.at).ok_or(DecodeError::Truncated)?;
        self.at += 1;
        Ok(byte)
    }

    fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Malformed("flag")),
        }
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Malformed("varint too long"))
    }

    /// A count of items that follow: never more than bytes left (each item takes one at
    /// least), so a hostile count cannot make us allocate.
    fn count(&mut self) -> Result<usize, DecodeError> {
        let count = self.varint()?;
        if count > (self.bytes.len() - self.at) as u64 {
            return Err(DecodeError::Truncated);
        }
        Ok(count as usize)
    }

    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let len = self.count()?;
        let bytes = self.bytes[self.at..self.at + len].to_vec();
        self.at += len;
        Ok(bytes)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?).map_err(|_| DecodeError::Malformed("text is not UTF-8"))
    }

    fn body(&mut self) -> Result<Body, DecodeError> {
        Ok(match self.byte()? {
            0 => Body::Ping { seq: self.varint()?, to: self.string()? },
            1 => Body::PingReq {
                seq: self.varint()?,
                target: self.string()?,
                target_addr: self.string()?,
                nack: self.flag()?,
            },
            2 => Body::Ack { seq: self.varint()?, about: self.string()? },
            3 => Body::Nack { seq: self.varint()? },
            4 => Body::Gossip,
            5 => {
                let count = self.count()?;
                let mut members = Vec::with_capacity(count);
                for _ in 0..count {
                    members.push(self.update()?);
                }
                let count = self.count()?;
                let mut kv = Vec::with_capacity(count);
                for _ in 0..count {
                    kv.push((self.string()?, self.versioned()?));
                }
                Body::PushPull { members, kv, event_clock: self.varint()?, reply: self.flag()? }
            }
            6 => Body::QueryResponse { id: self.varint()?, responder: self.string()?, payload: self.bytes()? },
            _ => return Err(DecodeError::Malformed("unknown message kind")),
        })
    }

    fn update(&mut self) -> Result<Update, DecodeError> {
        let member = self.string()?;
        let incarnation = self.varint()?;
        let state = match self.byte()? {
            0 => State::Alive,
            1 => State::Suspect,
            2 => State::Dead,
            3 => State::Left,
            _ => return Err(DecodeError::Malformed("unknown member state")),
        };
        let from = self.string()?;
        let meta = if self.flag()? {
            let addr = self.string()?;
            let count = self.count()?;
            let mut tags = Tags::new();
            for _ in 0..count {
                tags.insert(self.string()?, self.string()?);
            }
            Some(Meta { addr, tags })
        } else {
            None
        };
        Ok(Update { member, incarnation, state, from, meta })
    }

    fn versioned(&mut self) -> Result<Versioned<Option<String>>, DecodeError> {
        let count = self.count()?;
        let mut siblings = Vec::with_capacity(count);
        for _ in 0..count {
            let writers = self.count()?;
            let mut counters = Vec::with_capacity(writers);
            for _ in 0..writers {
                counters.push((self.string()?, self.varint()?));
            }
            let value = if self.flag()? { Some(self.string()?) } else { None };
            siblings.push((VersionVector::from_counters(counters), value));
        }
        Ok(Versioned::from_siblings(siblings))
    }

    fn news(&mut self) -> Result<News, DecodeError> {
        Ok(match self.byte()? {
            0 => News::Member(self.update()?),
            1 => News::Kv(self.string()?, self.versioned()?),
            2 => News::Event(UserEvent {
                ltime: self.varint()?,
                origin: self.string()?,
                name: self.string()?,
                payload: self.bytes()?,
            }),
            3 => News::Query(Query {
                id: self.varint()?,
                origin: self.string()?,
                origin_addr: self.string()?,
                name: self.string()?,
                payload: self.bytes()?,
            }),
            _ => return Err(DecodeError::Malformed("unknown news kind")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        let mut tags = Tags::new();
        tags.insert("role".into(), "web".into());
        let mut value = Versioned::default();
        value.write("a", Some("x".to_string()), &VersionVector::default());
        value.write("b", None, &VersionVector::default());
        Message {
            from: "a".into(),
            from_addr: "127.0.0.1:7946".into(),
            body: Body::PushPull {
                members: vec![Update {
                    member: "b".into(),
                    incarnation: 300,
                    state: State::Suspect,
                    from: "a".into(),
                    meta: Some(Meta { addr: "127.0.0.1:7947".into(), tags }),
                }],
                kv: vec![("k".into(), value.clone())],
                event_clock: 7,
                reply: true,
            },
            news: vec![
                News::Kv("k".into(), value),
                News::Event(UserEvent { ltime: 3, origin: "a".into(), name: "deploy".into(), payload: b"v2".to_vec() }),
                News::Query(Query {
                    id: 1,
                    origin: "a".into(),
                    origin_addr: "x".into(),
                    name: "load".into(),
                    payload: vec![],
                }),
            ],
        }
    }

    #[test]
    fn every_kind_of_message_round_trips() {
        let bodies = [
            Body::Ping { seq: 1, to: "b".into() },
            Body::PingReq { seq: 2, target: "c".into(), target_addr: "c:1".into(), nack: true },
            Body::Ack { seq: 3, about: "c".into() },
            Body::Nack { seq: 4 },
            Body::Gossip,
            Body::QueryResponse { id: 9, responder: "b".into(), payload: b"ok".to_vec() },
        ];
        for body in bodies {
            let message = Message { body, ..sample() };
            assert_eq!(decode(&encode(&message)), Ok(message));
        }
        let message = sample();
        let bytes = encode(&message);
        assert_eq!(decode(&bytes), Ok(message.clone()));
        let news: usize = message.news.iter().map(News::encoded_len).sum();
        assert_eq!(bytes.len(), header_len(&message) - 1 + news);
    }

    #[test]
    fn truncated_or_garbled_frames_are_refused_not_panicked_on() {
        let bytes = encode(&sample());
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut rng = ballot_raft::rng::Rng::new(7);
        for _ in 0..2000 {
            let mut garbled = bytes.clone();
            let at = rng.range(0, garbled.len() as u64) as usize;
            garbled[at] = rng.next_u64() as u8;
            let _ = decode(&garbled);
        }
        assert!(decode(&[VERSION, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
    }
}
