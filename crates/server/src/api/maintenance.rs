//! The Maintenance service: status, alarms, hashes, snapshot, leader transfer, defragment.

use std::time::{Duration, Instant};

use ballot_mvcc::{AlarmKind, Command};
use ballot_proto::etcdserverpb as pb;
use ballot_raft::Role;
use sha2::{Digest, Sha256};
use tonic::Status;

use super::{async_stream, status, Caller, Handle};
use crate::driver::ApiError;

/// The etcd API version ballot speaks (clients gate features on it).
pub const API_VERSION: &str = "3.4.0";
/// The request metadata that asks for a snapshot in ballot's own format.
pub const SNAPSHOT_FORMAT_HEADER: &str = "x-ballot-snapshot-format";
/// The SHA-256 that ends a snapshot.
const SHA256_BYTES: usize = 32;
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

/// The Snapshot response stream.
pub type SnapshotStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::SnapshotResponse, Status>> + Send>>;

impl Maintenance {
    /// etcd's Alarm, as 3.4 answers it: no header; GET lists the alarms of a type (every type
    /// for NONE), whatever member is named; ACTIVATE and DEACTIVATE answer with the alarm they
    /// touched (DEACTIVATE: only if it was raised). ACTIVATE of NONE raises nothing (etcd 3.4
    /// would store an alarm of no type; 3.5 ignores it, as here).
    pub async fn alarm(&self, caller: &Caller, message: pb::AlarmRequest) -> Result<pb::AlarmResponse, Status> {
        use pb::alarm_request::AlarmAction;
        let identity = self.handle.identity(caller).await?;
        let kind = match message.alarm() {
            pb::AlarmType::Nospace => Some(AlarmKind::NoSpace),
            pb::AlarmType::Corrupt => Some(AlarmKind::Corrupt),
            pb::AlarmType::None => None,
        };
        let member = |kind: AlarmKind| pb::AlarmMember { member_id: message.member_id, alarm: alarm_type(kind) as i32 };
        let activate = match message.action() {
            AlarmAction::Get => {
                self.handle.barrier().await?;
                let alarms = self.handle.reader().alarms().map_err(|error| status(ApiError::Mvcc(error)))?;
                let alarms = alarms
                    .into_iter()
                    .filter(|(alarm, _)| kind.is_none_or(|kind| kind == *alarm))
                    .map(|(alarm, member_id)| pb::AlarmMember { member_id, alarm: alarm_type(alarm) as i32 })
                    .collect();
                return Ok(pb::AlarmResponse { header: None, alarms });
            }
            AlarmAction::Activate => true,
            AlarmAction::Deactivate => false,
        };
        let Some(kind) = kind else { return Ok(pb::AlarmResponse::default()) };
        let alarm = Command::Alarm { activate, kind, member_id: message.member_id };
        let answer = self.handle.propose_as(&identity, alarm).await.map_err(status)?;
        let was_raised = match answer.value.result.map_err(|error| status(ApiError::Mvcc(error)))? {
            ballot_mvcc::Response::Alarm { was_raised } => was_raised,
            _ => return Err(Status::internal("an alarm answered with another kind of response")),
        };
        let alarms = if activate || was_raised { vec![member(kind)] } else { Vec::new() };
        Ok(pb::AlarmResponse { header: None, alarms })
    }

    /// etcd's Status.
    pub async fn status(&self, _caller: &Caller, _message: pb::StatusRequest) -> Result<pb::StatusResponse, Status> {
        let member_id = self.handle.member_id;
        let status = self
            .handle
            .query(move |core| {
                let engine = core.replica.engine();
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
                    raft_index: engine.committed(),
                    raft_term: engine.term(),
                    raft_applied_index: core.replica.applied(),
                    errors,
                    db_size_in_use: db_size,
                    is_learner: engine.conf_state().learners.contains(&member_id),
                };
                let offset = if engine.is_leader() { Some(0) } else { engine.clock_offset_ms() };
                (response, store.revision(), offset)
            })
            .await?;
        let (mut response, revision, offset) = status;
        if let Some(offset) = offset {
            super::add_answer_metadata(super::caller::CLOCK_OFFSET, offset.to_string());
        }
        response.header = self.handle.header(revision, response.raft_term);
        Ok(response)
    }

    /// etcd's Defragment (online: see `Core::defragment`).
    pub async fn defragment(
        &self,
        caller: &Caller,
        _message: pb::DefragmentRequest,
    ) -> Result<pb::DefragmentResponse, Status> {
        let identity = self.handle.identity(caller).await?;
        self.handle.check_admin(&identity).await?;
        // Online, unlike etcd's: the store is copied off the loop and the copy brought up to
        // date in bounded steps, so reads and writes go on (see `Core::defragment`).
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.handle.send(crate::driver::Input::Defragment(tx))?;
        let report = rx.await.map_err(|_| status(ApiError::Stopped))?.map_err(Status::unavailable)?;
        tracing::info!(?report, "defragment done");
        // No header: etcd 3.4 answers Defragment with none, and clients check.
        Ok(pb::DefragmentResponse { header: None })
    }

    /// etcd's Hash.
    pub async fn hash(&self, _caller: &Caller, _message: pb::HashRequest) -> Result<pb::HashResponse, Status> {
        // The hash of the whole key-value history (as HashKV at the current revision): what
        // replicas must agree on.
        let (result, revision, term) = self
            .handle
            .query(|core| (core.replica.store().hash_kv(0), core.replica.store().revision(), core.term()))
            .await?;
        let (hash, _) = result.map_err(|error| status(ApiError::Mvcc(error)))?;
        Ok(pb::HashResponse { header: self.handle.header(revision, term), hash })
    }

    /// etcd's HashKV.
    pub async fn hash_kv(&self, _caller: &Caller, message: pb::HashKvRequest) -> Result<pb::HashKvResponse, Status> {
        // Off the loop: a hash reads the whole history.
        let revision = message.revision;
        let reader = self.handle.reader().clone();
        let result = tokio::task::spawn_blocking(move || reader.hash_kv(revision))
            .await
            .map_err(|_| status(ApiError::Stopped))?;
        let (hash, compact_revision, current) = result.map_err(|error| status(ApiError::Mvcc(error)))?;
        let term = self.handle.term();
        Ok(pb::HashKvResponse {
            header: self.handle.header(current, term),
            hash,
            compact_revision,
            // A 3.5 field; etcd 3.4, which ballot answers as, leaves it out.
            hash_revision: 0,
        })
    }

    /// etcd's Snapshot: etcd's format, or ballot's own image when `ballot_format` (the
    /// `x-ballot-snapshot-format: ballot` metadata).
    pub async fn snapshot(&self, caller: &Caller, ballot_format: bool) -> Result<SnapshotStream, Status> {
        let identity = self.handle.identity(caller).await?;
        self.handle.check_admin(&identity).await?;
        // etcd's format (a bbolt database, see `etcd_snapshot`) unless the client asks for
        // ballot's own image with the `x-ballot-snapshot-format: ballot` metadata. Either way
        // the content is followed by its SHA-256, which `etcdctl snapshot save` checks. The
        // image is read from one read transaction on a blocking thread: the Raft loop never
        // waits for it. etcd's format is built whole in the scratch dir first (its meta pages,
        // at the start, name the tree's root, known at the end), then streamed and removed.
        let chunks =
            self.handle.reader().snapshot_chunks(SNAPSHOT_CHUNK_BYTES).map_err(|e| status(ApiError::Mvcc(e)))?;
        let scratch = self.handle.scratch_dir().join(format!("snapshot-{:x}.db", scratch_serial()));
        let stream = async_stream(move |tx| async move {
            // As etcd 3.4 sends it: no header, and `remaining_bytes` the bytes still to come
            // (ballot's own format streams as it reads: there it says 1, "more", until the
            // last message, which says 0).
            let response = move |blob: Vec<u8>, remaining_bytes: u64| {
                Ok(pb::SnapshotResponse { header: None, remaining_bytes, blob, version: String::new() })
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
                        if tx.blocking_send(response(blob, 1)).is_err() {
                            return;
                        }
                    }
                    // Padded to a multiple of 512 bytes, as etcdctl expects before the hash.
                    let padding = vec![0; length.next_multiple_of(512) - length];
                    hasher.update(&padding);
                    if !padding.is_empty() && tx.blocking_send(response(padding, 1)).is_err() {
                        return;
                    }
                    let _ = tx.blocking_send(response(hasher.finalize().to_vec(), 0));
                    return;
                }
                let sent = crate::etcd_snapshot::save_file(chunks, &scratch).and_then(|_| {
                    // The database, then its SHA-256 in a message of its own, as etcd sends
                    // them (the last piece of the database already says 0 bytes remain).
                    let mut file = std::fs::File::open(&scratch)?;
                    let mut remaining = file.metadata()?.len().saturating_sub(SHA256_BYTES as u64);
                    let mut blob = vec![0u8; SNAPSHOT_CHUNK_BYTES];
                    while remaining > 0 {
                        let want = blob.len().min(remaining as usize);
                        let read = std::io::Read::read(&mut file, &mut blob[..want])?;
                        if read == 0 {
                            return Err(anyhow::anyhow!("the snapshot file ended {remaining} bytes early"));
                        }
                        remaining -= read as u64;
                        if tx.blocking_send(response(blob[..read].to_vec(), remaining)).is_err() {
                            return Ok(());
                        }
                    }
                    let mut sha = vec![0u8; SHA256_BYTES];
                    std::io::Read::read_exact(&mut file, &mut sha)?;
                    let _ = tx.blocking_send(response(sha, 0));
                    Ok(())
                });
                let _ = std::fs::remove_file(&scratch);
                if let Err(error) = sent {
                    let _ = tx.blocking_send(Err(Status::internal(format!("building the snapshot: {error:#}"))));
                }
            })
            .await;
        });
        Ok(stream)
    }

    /// etcd's MoveLeader.
    pub async fn move_leader(
        &self,
        caller: &Caller,
        message: pb::MoveLeaderRequest,
    ) -> Result<pb::MoveLeaderResponse, Status> {
        let identity = self.handle.identity(caller).await?;
        self.handle.check_admin(&identity).await?;
        let target = message.target_id;
        let started = self
            .handle
            .query(move |core| {
                core.replica.engine().check_raft("moving the leader").map_err(|e| status(ApiError::from(e)))?;
                if core.replica.engine().role() != Role::Leader {
                    return Err(Status::failed_precondition("etcdserver: not leader"));
                }
                if !core.replica.engine().conf_state().is_voter(target) {
                    return Err(Status::failed_precondition("etcdserver: bad leader transferee"));
                }
                core.replica
                    .engine_mut()
                    .transfer_leader(target)
                    .map_err(|error| Status::failed_precondition(error.to_string()))
            })
            .await?;
        started?;
        let deadline = Instant::now() + self.handle.limits.request_timeout;
        loop {
            let leader = self.handle.query(|core| core.leader()).await?;
            if leader == target {
                // No header, as etcd 3.4 answers MoveLeader.
                return Ok(pb::MoveLeaderResponse { header: None });
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
