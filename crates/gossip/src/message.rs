//! The messages members exchange.

use crate::news::{News, Update};
use crate::version_vector::Versioned;

/// One message, with news piggybacked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The sender's name.
    pub from: String,
    /// Where the sender listens (answers go there).
    pub from_addr: String,
    /// The request or answer.
    pub body: Body,
    /// Gossip riding along.
    pub news: Vec<News>,
}

/// What a message asks or answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Are you alive? `to` names the member meant, so a stranger at a reused address stays
    /// silent instead of answering for it.
    Ping {
        /// Pairs the ack with the probe.
        seq: u64,
        /// The member probed.
        to: String,
    },
    /// Probe `target` for me and tell me (Lifeguard: and say so if it does not answer).
    PingReq {
        /// The asker's sequence number, echoed in what is relayed back.
        seq: u64,
        /// Whom to probe.
        target: String,
        /// Where it listens.
        target_addr: String,
        /// Whether the asker wants a nack when the target stays silent.
        nack: bool,
    },
    /// Alive: an answer to a ping, or relayed for a ping-req (`about` is who answered).
    Ack {
        /// The probe's sequence number.
        seq: u64,
        /// The member whose liveness the ack shows.
        about: String,
    },
    /// The target of a ping-req did not answer me in time, but I, the helper, am here.
    Nack {
        /// The asker's sequence number.
        seq: u64,
    },
    /// News only.
    Gossip,
    /// Anti-entropy: the sender's whole state (sent over TCP by the runtime).
    PushPull {
        /// Every member the sender knows, as its latest news about each.
        members: Vec<Update>,
        /// The whole multi-writer map.
        kv: Vec<(String, Versioned<Option<String>>)>,
        /// The sender's Lamport time for user events.
        event_clock: u64,
        /// Whether the receiver should answer with its own state.
        reply: bool,
    },
    /// An answer to a query, sent straight to the asker.
    QueryResponse {
        /// The query's id.
        id: u64,
        /// Who answers.
        responder: String,
        /// The answer.
        payload: Vec<u8>,
    },
}

impl Body {
    /// A short name, for metrics and traces.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Ping { .. } => "ping",
            Body::PingReq { .. } => "ping-req",
            Body::Ack { .. } => "ack",
            Body::Nack { .. } => "nack",
            Body::Gossip => "gossip",
            Body::PushPull { .. } => "push-pull",
            Body::QueryResponse { .. } => "query-response",
        }
    }
}
