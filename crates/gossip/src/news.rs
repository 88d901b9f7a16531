//! What members gossip to each other, and the queue that piggybacks it: every item is sent a
//! bounded number of times (λ·log n, so it reaches everyone with high probability and then
//! stops costing anything), the least-sent first, within a message's size limit.

use std::collections::BTreeMap;

use crate::version_vector::Versioned;

/// A member's state as a node believes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// Answering probes.
    Alive,
    /// Missed a probe; dead unless it refutes in time.
    Suspect,
    /// Confirmed failed.
    Dead,
    /// Left on purpose (never suspected again at this incarnation, not reconnected).
    Left,
}

impl State {
    /// The lower-case name the CLI and the runtime print.
    pub fn name(self) -> &'static str {
        match self {
            State::Alive => "alive",
            State::Suspect => "suspect",
            State::Dead => "failed",
            State::Left => "left",
        }
    }
}

/// Tags a member publishes about itself (role, datacenter, endpoints, services).
pub type Tags = BTreeMap<String, String>;

/// Where a member listens and what it says about itself: carried by every `Alive`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Its address, opaque to the core (the runtime's `host:port`; the simulator's name).
    pub addr: String,
    /// Its tags.
    pub tags: Tags,
}

/// News about a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    /// Whom it is about.
    pub member: String,
    /// The member's incarnation the news is about: a higher incarnation wins, and at equal
    /// incarnations Left and Dead beat Suspect, which beats Alive.
    pub incarnation: u64,
    /// What it says.
    pub state: State,
    /// Who says so (a suspicion's confirmations count distinct ones).
    pub from: String,
    /// The member's address and tags (with `Alive` only).
    pub meta: Option<Meta>,
}

/// A user event (serf's `event`): delivered once to every member's handlers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserEvent {
    /// The sender's Lamport time for events: with `origin`, the event's identity.
    pub ltime: u64,
    /// Who sent it.
    pub origin: String,
    /// Its name.
    pub name: String,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// A query (serf's `query`): every member that has a handler answers the origin directly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// With `origin`, the query's identity.
    pub id: u64,
    /// Who asks.
    pub origin: String,
    /// Where to send answers.
    pub origin_addr: String,
    /// Its name.
    pub name: String,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// One item of gossip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum News {
    /// Membership.
    Member(Update),
    /// A key of the multi-writer map, with every sibling.
    Kv(String, Versioned<Option<String>>),
    /// A user event.
    Event(UserEvent),
    /// A query.
    Query(Query),
}

impl News {
    /// What this news is about: a newer item about the same subject replaces a queued one.
    fn subject(&self) -> (u8, &str, u64) {
        match self {
            News::Member(update) => (0, &update.member, 0),
            News::Kv(key, _) => (1, key, 0),
            News::Event(event) => (2, &event.origin, event.ltime),
            News::Query(query) => (3, &query.origin, query.id),
        }
    }

    /// Its size on the wire, bytes (what [`crate::codec`] writes).
    pub fn encoded_len(&self) -> usize {
        crate::codec::news_len(self)
    }
}

/// News waiting to be piggybacked.
#[derive(Clone, Debug, Default)]
pub struct Queue {
    /// (news, times sent, order of arrival).
    items: Vec<(News, u64, u64)>,
    arrivals: u64,
}

impl Queue {
    /// Queues `news`, replacing anything queued about the same subject.
    pub fn push(&mut self, news: News) {
        let subject = news.subject();
        self.items.retain(|(queued, _, _)| queued.subject() != subject);
        self.arrivals += 1;
        self.items.push((news, 0, self.arrivals));
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Takes items for one message: the least-sent first (newest among equals), as many as fit
    /// in `budget` bytes, each counted as sent once; items sent `limit` times are dropped.
    pub fn take(&mut self, budget: usize, limit: u64) -> Vec<News> {
        self.items.sort_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)));
        let mut used = 0;
        let mut taken = Vec::new();
        for (news, sent, _) in self.items.iter_mut() {
            let size = news.encoded_len();
            if used + size > budget {
                continue;
            }
            used += size;
            *sent += 1;
            taken.push(news.clone());
        }
        self.items.retain(|(_, sent, _)| *sent < limit);
        taken
    }

    /// Puts `news` first in line, to be sent once more at least (the buddy system's way of
    /// making sure a suspect hears of its suspicion).
    pub fn front(&mut self, news: News) {
        self.push(news);
        if let Some(last) = self.items.last_mut() {
            last.1 = 0;
            last.2 = u64::MAX;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(member: &str, incarnation: u64) -> News {
        News::Member(Update {
            member: member.into(),
            incarnation,
            state: State::Alive,
            from: member.into(),
            meta: Some(Meta { addr: member.into(), tags: Tags::new() }),
        })
    }

    #[test]
    fn each_item_goes_out_a_bounded_number_of_times_least_sent_first() {
        let mut queue = Queue::default();
        queue.push(update("a", 0));
        queue.take(10_000, 3);
        queue.push(update("b", 0));
        let first = queue.take(update("b", 0).encoded_len(), 3);
        assert_eq!(first, vec![update("b", 0)], "the unsent item goes first");
        for _ in 0..5 {
            queue.take(10_000, 3);
        }
        assert!(queue.is_empty());
    }

    #[test]
    fn newer_news_about_a_member_replaces_the_queued_one() {
        let mut queue = Queue::default();
        queue.push(update("a", 0));
        queue.push(update("a", 1));
        assert_eq!(queue.take(10_000, 3), vec![update("a", 1)]);
    }

    #[test]
    fn a_message_carries_no_more_than_its_budget() {
        let mut queue = Queue::default();
        for i in 0..100 {
            queue.push(update(&format!("member-{i}"), 0));
        }
        let size = update("member-10", 0).encoded_len();
        let taken = queue.take(size * 10 + size / 2, 3);
        assert_eq!(taken.len(), 10);
    }
}
