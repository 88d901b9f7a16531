//! The Maintenance service: status, alarms, hashes, snapshot, leader transfer, defragment.

use std::time::{Duration, Instant};

use ballot_mvcc::{AlarmKind, Command};
use ballot_proto::etcdserverpb as pb;
use ballot_raft::Role;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use super::{async_stream, status, Handle};
use crate::driver::ApiError;

/// The etcd API version ballot speaks (clients gate features on it).
pub const API_VERSION: &str = "3.4.0";
/// The request metadata that asks for a snapshot in ballot's own format.
pub const SNAPSHOT_FORMAT_HEADER: &str = "x-ballot-snapshot-format";
/// Snapshot stream chunk size.
const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// The Maintenance service.
pub struct Maintenance {
    /// The member.
    pub handle: Handle,
}

fn alarm_type(kind: AlarmKind) -> pb::AlarmType {
    match kind {
        AlarmKind::NoSpace => pb::AlarmType::Nospace,
        AlarmKind::Corrupt => pb::AlarmType::Corrupt,
    }
}

#[tonic::async_trait]
impl pb::maintenance_server::Maintenance for Maintenance {
    async fn alarm(&self, request: Request<pb::AlarmRequest>) -> Result<Response<pb::AlarmResponse>, Status> {
        use pb::alarm_request::AlarmAction;
        let identity = self.handle.identity(&request).await?;
        let message = request.into_inner();
        let kind = match message.alarm() {
            pb::AlarmType::Nospace => Some(AlarmKind::NoSpace),
            pb::AlarmType::Corrupt => Some(AlarmKind::Corrupt),
            pb::AlarmType::None => None,
        };
        let activate = match message.action() {
            AlarmAction::Get => None,
            AlarmAction::Activate => Some(true),
            AlarmAction::Deactivate => Some(false),
        };
        let (mut revision, mut term) = (0, 0);
        if let Some(activate) = activate {
            let kind = kind.ok_or_else(|| Status::invalid_argument("etcdserver: an alarm type is required"))?;
            let alarm = Command::Alarm { activate, kind, member_id: message.member_id };
            let answer = self.handle.propose_as(&identity, alarm).await;
            let answer = answer.map_err(status)?;
            (revision, term) = (answer.revision, answer.term);
        }
        let alarms = self.handle.query(|core| core.replica.store().alarms()).await?;
        let alarms = alarms.map_err(|error| status(ApiError::Mvcc(error)))?;
        let alarms = alarms
            .into_iter()
            .filter(|(alarm, member)| {
                kind.is_none_or(|kind| kind == *alarm) && (message.member_id == 0 || message.member_id == *member)
            })
            .map(|(alarm, member_id)| pb::AlarmMember { member_id, alarm: alarm_type(alarm) as i32 })
            .collect();
        Ok(Response::new(pb::AlarmResponse { header: self.handle.header(revision, term), alarms }))
    }

    async fn status(&self, _request: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let member_id = self.handle.member_id;
        let status = self
            .handle
            .query(move |core| {
                let raft = core.replica.raft().raft();
                let store = core.replica.store();
                let db_size = store.size_bytes().unwrap_or(0) as i64;
                let errors = store
                    .alarms()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(alarm, member)| format!("memberID:{member} alarm:{} ", alarm_type(alarm).as_str_name()))
                    .collect();
                let response = pb::StatusResponse {
                    header: None,
                    version: API_VERSION.into(),
                    db_size,
                    leader: core.leader(),
                    raft_index: raft.log().committed(),
                    raft_term: raft.term(),
                    raft_applied_index: core.replica.applied(),
                    errors,
                    db_size_in_use: db_size,
                    is_learner: raft.conf_state().learners.contains(&member_id),
                };
                (response, store.revision())
            })
            .await?;
        let (mut response, revision) = status;
        response.header = self.handle.header(revision, response.raft_term);
        Ok(Response::new(response))
    }

    async fn defragment(
        &self,
        request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        let identity = self.handle.identity(&request).await?;
        self.handle.check_admin(&identity).await?;
        // Online, unlike etcd's: the store is copied off the loop and the copy brought up to
        // date in bounded steps, so reads and writes go on (see `Core::defragment`).
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.handle.send(crate::driver::Input::Defragment(tx))?;
        let report = rx.await.map_err(|_| status(ApiError::Stopped))?.map_err(Status::unavailable)?;
        tracing::info!(?report, "defragment done");
        let term = self.handle.query(|core| core.term()).await?;
        Ok(Response::new(pb::DefragmentResponse { header: self.handle.header(0, term) }))
    }

    async fn hash(&self, _request: Request<pb::HashRequest>) -> Result<Response<pb::HashResponse>, Status> {
        // The hash of the whole key-value history (as HashKV at the current revision): what
        // replicas must agree on.
        let (result, term) = self.handle.query(|core| (core.replica.store().hash_kv(0), core.term())).await?;
        let (hash, _) = result.map_err(|error| status(ApiError::Mvcc(error)))?;
        Ok(Response::new(pb::HashResponse { header: self.handle.header(0, term), hash }))
    }

    async fn hash_kv(&self, request: Request<pb::HashKvRequest>) -> Result<Response<pb::HashKvResponse>, Status> {
        // Off the loop: a hash reads the whole history.
        let revision = request.get_ref().revision;
        let reader = self.handle.reader().clone();
        let result = tokio::task::spawn_blocking(move || reader.hash_kv(revision))
            .await
            .map_err(|_| status(ApiError::Stopped))?;
        let (hash, compact_revision, current) = result.map_err(|error| status(ApiError::Mvcc(error)))?;
        let term = self.handle.term();
        Ok(Response::new(pb::HashKvResponse {
            header: self.handle.header(current, term),
            hash,
            compact_revision,
            hash_revision: if revision <= 0 { current } else { revision },
        }))
    }

    type SnapshotStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::SnapshotResponse, Status>> + Send>>;

    async fn snapshot(&self, request: Request<pb::SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        let identity = self.handle.identity(&request).await?;
        self.handle.check_admin(&identity).await?;
        // etcd's format (a bbolt database, see `etcd_snapshot`) unless the client asks for
        // ballot's own image with the `x-ballot-snapshot-format: ballot` metadata. Either way
        // the content is followed by its SHA-256, which `etcdctl snapshot save` checks. The
        // image is read from one read transaction on a blocking thread: the Raft loop never
        // waits for it. etcd's format is built whole in the scratch dir first (its meta pages,
        // at the start, name the tree's root, known at the end), then streamed and removed.
        let ballot_format =
            request.metadata().get(SNAPSHOT_FORMAT_HEADER).is_some_and(|value| value.as_bytes() == b"ballot");
        let (revision, term) = self.handle.query(|core| (core.replica.store().revision(), core.term())).await?;
        let header = self.handle.header(revision, term);
        let chunks =
            self.handle.reader().snapshot_chunks(SNAPSHOT_CHUNK_BYTES).map_err(|e| status(ApiError::Mvcc(e)))?;
        let scratch = self.handle.scratch_dir().join(format!("snapshot-{:x}.db", scratch_serial()));
        let stream = async_stream(move |tx| async move {
            // `remaining_bytes` says 1 ("more to come") until the last message, which says 0.
            let response = move |blob: Vec<u8>, last: bool| {
                Ok(pb::SnapshotResponse {
                    header,
                    remaining_bytes: u64::from(!last),
                    blob,
                    version: API_VERSION.into(),
                })
            };
            let _ = tokio::task::spawn_blocking(move || {
                if ballot_format {
                    let mut hasher = Sha256::new();
                    let mut length = 0usize;
                    for chunk in chunks {
                        let blob = match chunk {
                            Ok(blob) => blob,
                            Err(error) => return drop(tx.blocking_send(Err(status(ApiError::Mvcc(error))))),
                        };
                        hasher.update(&blob);
                        length += blob.len();
                        if tx.blocking_send(response(blob, false)).is_err() {
                            return;
                        }
                    }
                    // Padded to a multiple of 512 bytes, as etcdctl expects before the hash.
                    let padding = vec![0; length.next_multiple_of(512) - length];
                    hasher.update(&padding);
                    if !padding.is_empty() && tx.blocking_send(response(padding, false)).is_err() {
                        return;
                    }
                    let _ = tx.blocking_send(response(hasher.finalize().to_vec(), true));
                    return;
                }
                let sent = crate::etcd_snapshot::save_file(chunks, &scratch).and_then(|_| {
                    let mut file = std::fs::File::open(&scratch)?;
                    let mut blob = vec![0u8; SNAPSHOT_CHUNK_BYTES];
                    let mut last = None;
                    loop {
                        let read = std::io::Read::read(&mut file, &mut blob)?;
                        if read == 0 {
                            break;
                        }
                        // Each blob goes out once the next is known, so the last says so.
                        if let Some(previous) = last.replace(blob[..read].to_vec()) {
                            if tx.blocking_send(response(previous, false)).is_err() {
                                return Ok(());
                            }
                        }
                    }
                    let _ = tx.blocking_send(response(last.unwrap_or_default(), true));
                    Ok(())
                });
                let _ = std::fs::remove_file(&scratch);
                if let Err(error) = sent {
                    let _ = tx.blocking_send(Err(Status::internal(format!("building the snapshot: {error:#}"))));
                }
            })
            .await;
        });
        Ok(Response::new(stream))
    }

    async fn move_leader(
        &self,
        request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        let identity = self.handle.identity(&request).await?;
        self.handle.check_admin(&identity).await?;
        let target = request.get_ref().target_id;
        let started = self
            .handle
            .query(move |core| {
                if core.replica.raft().raft().soft_state().role != Role::Leader {
                    return Err(Status::failed_precondition("etcdserver: not leader"));
                }
                if !core.replica.raft().raft().conf_state().is_voter(target) {
                    return Err(Status::failed_precondition("etcdserver: bad leader transferee"));
                }
                core.replica
                    .raft_mut()
                    .transfer_leader(target)
                    .map_err(|error| Status::failed_precondition(error.to_string()))
            })
            .await?;
        started?;
        let deadline = Instant::now() + self.handle.limits.request_timeout;
        loop {
            let (leader, term) = self.handle.query(|core| (core.leader(), core.term())).await?;
            if leader == target {
                return Ok(Response::new(pb::MoveLeaderResponse { header: self.handle.header(0, term) }));
            }
            if Instant::now() >= deadline {
                return Err(status(ApiError::Timeout));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A per-request suffix for scratch file names (unique among concurrent requests).
fn scratch_serial() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
