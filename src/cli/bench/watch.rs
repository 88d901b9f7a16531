//! The watch workloads: `--watchers` watchers on one prefix, and puts under it.
//! - `watch-latency`: one writer, one put at a time (at most 2,000): the time from a put's
//!   acknowledgement to each watcher's receipt of its event.
//! - `watch-fanout`: `--clients` writers put as fast as they can: the events delivered per second
//!   to all watchers together, and the time from a put's sending to each watcher's receipt.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::{kv_client::KvClient, watch_client::WatchClient};
use tokio::sync::mpsc;

use super::{error_kind, BenchArgs, Conn, Tally};

const PREFIX: &[u8] = b"bench-watch/";

/// How long to wait, after the last put, for the last events.
const DRAIN: Duration = Duration::from_secs(10);

/// A watcher's stream with the sender that keeps it open.
struct Watcher {
    responses: tonic::Streaming<pb::WatchResponse>,
    _requests: mpsc::Sender<pb::WatchRequest>,
}

/// Creates `--watchers` watchers on [`PREFIX`], spread over the connections, each confirmed
/// created before the first put.
async fn open_watchers(args: &BenchArgs, channels: &[Conn]) -> anyhow::Result<Vec<Watcher>> {
    let mut watchers = Vec::new();
    for w in 0..args.watchers {
        let mut client = WatchClient::new(channels[w % channels.len()].clone());
        let create = pb::WatchCreateRequest {
            key: PREFIX.to_vec(),
            range_end: ballot_server::api::prefix_end(PREFIX),
            ..Default::default()
        };
        let (tx, rx) = mpsc::channel(1);
        tx.send(pb::WatchRequest { request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)) })
            .await?;
        let mut responses = client.watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
        responses.message().await?.context("watch created")?;
        watchers.push(Watcher { responses, _requests: tx });
    }
    Ok(watchers)
}

/// Each watcher's events as (mod revision, time received), sent on `events` as they come.
fn forward_events(
    watchers: Vec<Watcher>,
    events: mpsc::UnboundedSender<(i64, Instant)>,
) -> Vec<tokio::task::JoinHandle<()>> {
    watchers
        .into_iter()
        .map(|Watcher { mut responses, _requests: requests }| {
            let events = events.clone();
            tokio::spawn(async move {
                // The request side stays open for as long as the watcher reads.
                let _keep_open = requests;
                while let Ok(Some(response)) = responses.message().await {
                    let now = Instant::now();
                    for event in response.events {
                        let _ = events.send((event.kv.map_or(0, |kv| kv.mod_revision), now));
                    }
                }
            })
        })
        .collect()
}

/// Receives events until `expected` have come or [`DRAIN`] has passed.
async fn drain(
    events: &mut mpsc::UnboundedReceiver<(i64, Instant)>,
    received: &mut Vec<(i64, Instant)>,
    expected: usize,
) {
    let until = Instant::now() + DRAIN;
    while received.len() < expected && Instant::now() < until {
        match tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
            Ok(Some(event)) => received.push(event),
            Ok(None) => break,
            Err(_) => {}
        }
    }
}

/// Latencies of the received events from `started` (by revision), and the events missing.
fn tally_events(received: &[(i64, Instant)], started: &BTreeMap<i64, Instant>, expected: usize, tally: &mut Tally) {
    for (revision, at) in received {
        if let Some(start) = started.get(revision) {
            tally.latencies_us.push(at.saturating_duration_since(*start).as_micros() as u64);
        }
    }
    let missing = expected.saturating_sub(tally.latencies_us.len());
    if missing > 0 {
        tally.errors.insert(format!("events not received within {} s", DRAIN.as_secs()), missing as u64);
    }
}

fn put_request(args: &BenchArgs, i: u64) -> pb::PutRequest {
    pb::PutRequest {
        key: [PREFIX, format!("{i}").as_bytes()].concat(),
        value: vec![b'v'; args.val_size],
        ..Default::default()
    }
}

/// `watch-latency`: for each put, the time from its acknowledgement to each watcher's receipt of
/// the event (0 if the event came first).
pub(super) async fn watch_latency(
    args: &BenchArgs,
    channels: &[Conn],
    total: u64,
    deadline: Option<Instant>,
    done: Arc<AtomicU64>,
) -> anyhow::Result<Tally> {
    let watchers = open_watchers(args, channels).await?;
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let streams = forward_events(watchers, events_tx);
    let mut kv = KvClient::new(channels[0].clone());
    let mut acked: BTreeMap<i64, Instant> = BTreeMap::new();
    let mut tally = Tally::default();
    let mut received: Vec<(i64, Instant)> = Vec::new();
    for i in 0..total.min(2000) {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        match kv.put(put_request(args, i)).await {
            Ok(response) => {
                acked.insert(response.into_inner().header.map_or(0, |h| h.revision), Instant::now());
            }
            Err(status) => *tally.errors.entry(error_kind(&status)).or_default() += 1,
        }
        while let Ok(event) = events_rx.try_recv() {
            received.push(event);
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    let expected = acked.len() * args.watchers;
    drain(&mut events_rx, &mut received, expected).await;
    streams.iter().for_each(|stream| stream.abort());
    tally_events(&received, &acked, expected, &mut tally);
    Ok(tally)
}

/// What `watch-fanout` measured besides the latencies in its tally.
pub(super) struct Fanout {
    /// Puts acknowledged.
    pub puts: u64,
    /// From the first put to the last event received.
    pub seconds: f64,
}

/// `watch-fanout`: `--clients` writers put as fast as they can (up to `total` puts or the
/// deadline) while every watcher receives every event; latency is from a put's sending to each
/// watcher's receipt of its event.
pub(super) async fn watch_fanout(
    args: &BenchArgs,
    channels: &[Conn],
    total: u64,
    deadline: Option<Instant>,
    done: Arc<AtomicU64>,
) -> anyhow::Result<(Tally, Fanout)> {
    let watchers = open_watchers(args, channels).await?;
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let streams = forward_events(watchers, events_tx);
    let sent: Arc<Mutex<BTreeMap<i64, Instant>>> = Arc::default();
    let errors: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let issued = Arc::new(AtomicU64::new(0));
    let began = Instant::now();
    let mut writers = Vec::new();
    for writer in 0..args.clients {
        let mut kv = KvClient::new(channels[writer % channels.len()].clone());
        let (sent, errors, issued, done, args) =
            (sent.clone(), errors.clone(), issued.clone(), done.clone(), args.clone());
        writers.push(tokio::spawn(async move {
            loop {
                let i = issued.fetch_add(1, Ordering::Relaxed);
                if i >= total || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let at = Instant::now();
                match kv.put(put_request(&args, i)).await {
                    Ok(response) => {
                        let revision = response.into_inner().header.map_or(0, |h| h.revision);
                        sent.lock().unwrap().insert(revision, at);
                    }
                    Err(status) => *errors.lock().unwrap().entry(error_kind(&status)).or_default() += 1,
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Events are taken off the channel while the writers run, so that the channel stays short.
    let mut received: Vec<(i64, Instant)> = Vec::new();
    let all_written = futures_all(writers);
    tokio::pin!(all_written);
    loop {
        tokio::select! {
            _ = &mut all_written => break,
            Some(event) = events_rx.recv() => received.push(event),
        }
    }
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let expected = sent.len() * args.watchers;
    drain(&mut events_rx, &mut received, expected).await;
    streams.iter().for_each(|stream| stream.abort());
    let last_event = received.iter().map(|(_, at)| *at).max().unwrap_or(began);
    let mut tally = Tally { errors: std::mem::take(&mut *errors.lock().unwrap()), ..Tally::default() };
    tally_events(&received, &sent, expected, &mut tally);
    let fanout = Fanout { puts: sent.len() as u64, seconds: last_event.duration_since(began).as_secs_f64() };
    Ok((tally, fanout))
}

/// Waits for every task (a panic in one is reported when its results are missing).
async fn futures_all(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}
