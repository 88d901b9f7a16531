//! The Watch service: one bidirectional stream carries many watchers. Watch ids are per
//! stream, as etcd's are (chosen by the client or numbered from 0); the hub's own ids stay
//! inside the member.

use std::collections::HashMap;

use ballot_mvcc::{Cancelled, WatchId, WatchRequest};
use ballot_proto::etcdserverpb as pb;
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt;
use tonic::Status;

use super::{async_stream, status, Caller, Handle};
use crate::auth::Identity;
use crate::driver::{ApiError, Input, WatchOut};

/// The Watch service.
pub struct Watch {
    /// The member.
    pub handle: Handle,
}

/// One stream's watchers: client id ↔ hub id.
struct Stream {
    handle: Handle,
    /// Who opened the stream (or why its token was refused).
    identity: Result<Identity, Status>,
    /// Client id → the hub's watcher and whether it may fragment; `None` once the hub ended it
    /// on a compaction (the id stays taken until the client cancels it, as in etcd).
    by_client: HashMap<i64, Option<(WatchId, bool)>>,
    by_hub: HashMap<WatchId, (i64, bool)>,
    next_client_id: i64,
    events: mpsc::Sender<WatchOut>,
}

type Out = mpsc::Sender<Result<pb::WatchResponse, Status>>;

impl Stream {
    fn response(&self, watch_id: i64, revision: i64) -> pb::WatchResponse {
        pb::WatchResponse { header: self.handle.header(revision, self.handle.term()), watch_id, ..Default::default() }
    }

    async fn create(&mut self, create: pb::WatchCreateRequest, out: &Out) -> bool {
        use pb::watch_create_request::FilterType;
        let watch_id = if create.watch_id != 0 { create.watch_id } else { self.next_client_id };
        if self.by_client.contains_key(&watch_id) {
            // As etcd refuses it: watch id -1, mvcc's reason, the stream going on.
            let revision = self.handle.reader().revision().unwrap_or(0);
            let mut response = self.response(-1, revision);
            response.created = true;
            response.canceled = true;
            response.cancel_reason = "mvcc: duplicate watch ID provided on the WatchStream".into();
            return out.send(Ok(response)).await.is_ok();
        }
        while self.by_client.contains_key(&self.next_client_id) || self.next_client_id == watch_id {
            self.next_client_id += 1;
        }
        // A range the user may not read is refused as etcd refuses it: a created-and-cancelled
        // response (watch id -1) whose reason is the gRPC error, the stream going on.
        let permitted = self.identity.clone().and_then(|identity| {
            if ballot_mvcc::read::reserved(&create.key) {
                return Err(super::status(crate::driver::ApiError::Mvcc(ballot_mvcc::Error::ReservedKey)));
            }
            let range_end = if create.range_end.is_empty() { Vec::new() } else { create.range_end.clone() };
            self.handle.check_read(&identity, &create.key, &range_end)
        });
        if let Err(refused) = permitted {
            let mut response = self.response(-1, 0);
            response.created = true;
            response.canceled = true;
            response.cancel_reason = format!("rpc error: code = {:?} desc = {}", refused.code(), refused.message());
            return out.send(Ok(response)).await.is_ok();
        }
        let filters: Vec<FilterType> = create.filters.iter().filter_map(|f| FilterType::try_from(*f).ok()).collect();
        let request = WatchRequest {
            key: create.key,
            range_end: create.range_end,
            start_revision: create.start_revision,
            prev_kv: create.prev_kv,
            no_put: filters.contains(&FilterType::Noput),
            no_delete: filters.contains(&FilterType::Nodelete),
        };
        let (tx, rx) = oneshot::channel();
        if self.handle.send(Input::Watch(request, self.events.clone(), tx)).is_err() {
            return false;
        }
        let mut created = self.response(watch_id, 0);
        created.created = true;
        match rx.await {
            Ok(Ok((hub_id, revision))) => {
                self.by_client.insert(watch_id, Some((hub_id, create.fragment)));
                self.by_hub.insert(hub_id, (watch_id, create.fragment));
                created.header = self.handle.header(revision, self.handle.term());
                out.send(Ok(created)).await.is_ok()
            }
            Ok(Err(ballot_mvcc::Error::Compacted)) => {
                // As etcd: the watch is created, then ended by a message of its own that names
                // the compaction (header revision 0, no reason); the id stays taken until the
                // client cancels it. (A client that pairs answers with requests by watch id,
                // as python-etcd3 does, must never see one id answer for two watches.)
                let (compact_revision, revision) = self
                    .handle
                    .query(|core| (core.replica.store().compact_revision(), core.replica.store().revision()))
                    .await
                    .unwrap_or((0, 0));
                created.header = self.handle.header(revision, self.handle.term());
                self.by_client.insert(watch_id, None);
                let mut compacted = self.response(watch_id, 0);
                compacted.canceled = true;
                compacted.compact_revision = compact_revision;
                out.send(Ok(created)).await.is_ok() && out.send(Ok(compacted)).await.is_ok()
            }
            Ok(Err(error)) => {
                // Any other refusal ends the stream with the error.
                let _ = out.send(Err(status(ApiError::Mvcc(error)))).await;
                false
            }
            Err(_) => false,
        }
    }

    /// Ends a watch the client names; a watch id the stream does not know is ignored, as etcd
    /// ignores it.
    async fn cancel(&mut self, watch_id: i64, out: &Out) -> bool {
        let Some(watcher) = self.by_client.remove(&watch_id) else { return true };
        if let Some((hub_id, _)) = watcher {
            self.by_hub.remove(&hub_id);
            let _ = self.handle.send(Input::Unwatch(hub_id));
        }
        let revision = self.handle.reader().revision().unwrap_or(0);
        let mut response = self.response(watch_id, revision);
        response.canceled = true;
        out.send(Ok(response)).await.is_ok()
    }

    async fn progress(&mut self, out: &Out) -> bool {
        let Ok(revision) = self.handle.query(|core| core.replica.store().revision()).await else { return false };
        // etcd answers a progress request with watch id -1: it speaks for the whole stream.
        out.send(Ok(self.response(-1, revision))).await.is_ok()
    }

    /// Events from the hub to the client, split into fragments if the watcher allowed it and
    /// they exceed the request size limit.
    async fn deliver(&mut self, batch: WatchOut, out: &Out) -> bool {
        let Some(&(watch_id, fragment)) = self.by_hub.get(&batch.watch) else { return true };
        let events: Vec<_> = batch.events.into_iter().map(super::convert::event).collect();
        let mut responses = Vec::new();
        let limit = self.handle.limits.request_bytes_max;
        if fragment && events.iter().map(|e| e.encoded_len()).sum::<usize>() > limit {
            let mut chunk = Vec::new();
            let mut size = 0;
            for event in events {
                size += event.encoded_len();
                chunk.push(event);
                if size >= limit {
                    responses.push(std::mem::take(&mut chunk));
                    size = 0;
                }
            }
            if !chunk.is_empty() {
                responses.push(chunk);
            }
        } else if !events.is_empty() {
            responses.push(events);
        }
        let count = responses.len();
        for (i, events) in responses.into_iter().enumerate() {
            let mut response = self.response(watch_id, batch.revision);
            response.events = events;
            response.fragment = i + 1 < count;
            if out.send(Ok(response)).await.is_err() {
                return false;
            }
        }
        if let Some(Cancelled::Compacted { compact_revision }) = batch.cancelled {
            // As at creation: header revision 0, no reason, the id kept until cancelled.
            self.by_hub.remove(&batch.watch);
            self.by_client.insert(watch_id, None);
            let mut response = self.response(watch_id, 0);
            response.canceled = true;
            response.compact_revision = compact_revision;
            return out.send(Ok(response)).await.is_ok();
        }
        true
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        for hub_id in self.by_hub.keys() {
            let _ = self.handle.send(Input::Unwatch(*hub_id));
        }
    }
}

/// The watch response stream.
pub type WatchStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

impl Watch {
    /// etcd's Watch: the requests of one stream in, its responses out.
    pub async fn watch(
        &self,
        caller: &Caller,
        mut inbound: impl tokio_stream::Stream<Item = pb::WatchRequest> + Send + Unpin + 'static,
    ) -> WatchStream {
        let identity = self.handle.identity(caller).await;
        let handle = self.handle.clone();
        async_stream(move |out: Out| async move {
            let (events, mut from_hub) = mpsc::channel(256);
            let mut stream = Stream {
                handle,
                identity,
                by_client: HashMap::new(),
                by_hub: HashMap::new(),
                next_client_id: 0,
                events,
            };
            loop {
                let going = tokio::select! {
                    request = inbound.next() => match request {
                        Some(pb::WatchRequest { request_union: Some(union) }) => {
                            use pb::watch_request::RequestUnion as U;
                            match union {
                                U::CreateRequest(create) => stream.create(create, &out).await,
                                U::CancelRequest(cancel) => stream.cancel(cancel.watch_id, &out).await,
                                U::ProgressRequest(_) => stream.progress(&out).await,
                            }
                        }
                        Some(_) => true,
                        None => false,
                    },
                    batch = from_hub.recv() => match batch {
                        Some(batch) => stream.deliver(batch, &out).await,
                        None => false,
                    },
                    // The client went (its answer stream was dropped): stop watching now, not
                    // at the next event that finds nobody to take it.
                    () = out.closed() => false,
                };
                if !going {
                    return;
                }
            }
        })
    }
}
