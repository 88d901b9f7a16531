//! The streaming RPCs as etcd's gateway serves them over HTTP/1.1. The request body is a
//! sequence of JSON request messages, read as they arrive; the answer is a chunked stream,
//! `{"result": message}` and a newline per message. An error after the answer began is one
//! last object, `{"error": {"grpc_code", "http_code", "message", "http_status"}}` with no
//! newline, and the answer ends. A watch stays open after the request body ends, until the
//! client goes; a keep-alive ends with its requests.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use super::{decode, error_response, http_status, Services};
use crate::api::async_stream;

type Messages<T> = std::pin::Pin<Box<dyn Stream<Item = T> + Send>>;

/// `POST /v3/watch`.
pub async fn watch(State(services): State<Arc<Services>>, request: Request) -> Response {
    let caller = services.caller(&request);
    let requests = match requests(&services, request.into_body()).await {
        Ok(requests) => requests,
        Err(status) => return error_response(&status),
    };
    // The requests stream ends with the body, the watch does not: it goes on until the
    // client closes the connection.
    let requests = requests.chain(tokio_stream::pending());
    let responses = services.watch.watch(&caller, Box::pin(requests)).await;
    chunked(responses)
}

/// `POST /v3/lease/keepalive`: one answer per request in the body, then the end.
pub async fn keep_alive(State(services): State<Arc<Services>>, request: Request) -> Response {
    let caller = services.caller(&request);
    let requests = match requests(&services, request.into_body()).await {
        Ok(requests) => requests,
        Err(status) => return error_response(&status),
    };
    match services.lease.lease_keep_alive(&caller, requests).await {
        Ok(responses) => chunked(responses),
        Err(status) => error_response(&status),
    }
}

/// `POST /v3/maintenance/snapshot` (the body selects nothing: etcd's format).
pub async fn snapshot(State(services): State<Arc<Services>>, request: Request) -> Response {
    let caller = services.caller(&request);
    if let Err(status) =
        decode::<ballot_proto::etcdserverpb::SnapshotRequest>(&services.handle, request.into_body()).await
    {
        return error_response(&status);
    }
    match services.maintenance.snapshot(&caller, false).await {
        Ok(responses) => chunked(responses),
        Err(status) => error_response(&status),
    }
}

/// `POST /v3/election/observe`.
pub async fn observe(State(services): State<Arc<Services>>, request: Request) -> Response {
    let caller = services.caller(&request);
    let message = match decode(&services.handle, request.into_body()).await {
        Ok(message) => message,
        Err(status) => return error_response(&status),
    };
    match services.election.observe(&caller, message).await {
        Ok(responses) => chunked(responses),
        Err(status) => error_response(&status),
    }
}

/// The request messages of a streaming call, decoded from the body as its bytes arrive. The
/// first is read before answering, so a body that does not hold one is an error with its HTTP
/// status (as etcd's gateway answers it); a later message that does not decode ends the
/// requests, as a client's half-close would.
async fn requests<T>(services: &Services, body: Body) -> Result<Messages<T>, Status>
where
    T: DeserializeOwned + Send + 'static,
{
    let limit = services.handle.limits.request_bytes_max + 512 * 1024;
    let mut reader = JsonReader { body: body.into_data_stream(), buffer: Vec::new(), limit };
    let first = reader.next::<T>().await.map_err(Status::unknown)?;
    Ok(async_stream(move |tx| async move {
        let Some(first) = first else { return };
        if tx.send(first).await.is_err() {
            return;
        }
        while let Ok(Some(message)) = reader.next::<T>().await {
            if tx.send(message).await.is_err() {
                return;
            }
        }
    }))
}

/// Splits a body into JSON values as its bytes arrive (values may span chunks, and need no
/// separator).
struct JsonReader {
    body: axum::body::BodyDataStream,
    buffer: Vec<u8>,
    limit: usize,
}

impl JsonReader {
    /// The next value, `None` at the end of the body.
    async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, String> {
        loop {
            let start = self.buffer.iter().position(|byte| !byte.is_ascii_whitespace()).unwrap_or(self.buffer.len());
            self.buffer.drain(..start);
            if !self.buffer.is_empty() {
                let mut values = serde_json::Deserializer::from_slice(&self.buffer).into_iter::<T>();
                match values.next() {
                    Some(Ok(value)) => {
                        let used = values.byte_offset();
                        self.buffer.drain(..used);
                        return Ok(Some(value));
                    }
                    Some(Err(error)) if !error.is_eof() => return Err(error.to_string()),
                    _ => {}
                }
            }
            if self.buffer.len() > self.limit {
                return Err("etcdserver: request is too large".into());
            }
            match self.body.next().await {
                Some(Ok(bytes)) => self.buffer.extend_from_slice(&bytes),
                Some(Err(error)) => return Err(error.to_string()),
                None if self.buffer.is_empty() => return Ok(None),
                None => return Err("unexpected end of the request body".into()),
            }
        }
    }
}

/// A chunked answer: each message as `{"result": …}` and a newline; an error as the gateway's
/// stream error, last.
fn chunked<T: Serialize + Send + 'static>(
    responses: std::pin::Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>,
) -> Response {
    let chunks = responses.map(|response| {
        let bytes = match response {
            Ok(message) => {
                let mut line = serde_json::to_vec(&Chunk { result: &message }).unwrap_or_default();
                line.push(b'\n');
                line
            }
            Err(status) => {
                let code = http_status(status.code());
                let error = StreamError {
                    grpc_code: status.code() as i32,
                    http_code: code.as_u16(),
                    message: status.message(),
                    http_status: code.canonical_reason().unwrap_or(""),
                };
                serde_json::to_vec(&ErrorChunk { error }).unwrap_or_default()
            }
        };
        Ok::<_, std::convert::Infallible>(Bytes::from(bytes))
    });
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], Body::from_stream(chunks)).into_response()
}

/// One message of a streamed answer.
#[derive(Serialize)]
struct Chunk<'a, T> {
    result: &'a T,
}

/// The last object of a streamed answer that failed (grpc-gateway's `StreamError`).
#[derive(Serialize)]
struct ErrorChunk<'a> {
    error: StreamError<'a>,
}

#[derive(Serialize)]
struct StreamError<'a> {
    grpc_code: i32,
    http_code: u16,
    message: &'a str,
    http_status: &'a str,
}
