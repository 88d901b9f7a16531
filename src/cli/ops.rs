//! Operator commands: `ballot snapshot save` and `ballot member move-leader`.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::{cluster_client::ClusterClient, maintenance_client::MaintenanceClient};
use sha2::{Digest, Sha256};

use super::connect::{Conn, Dialer};

/// Length of the SHA-256 trailer that ends a snapshot stream.
const TRAILER_BYTES: usize = 32;

/// Streams a snapshot from the member behind `channel` into `file`, checks its SHA-256 trailer,
/// and makes it durable under its final name only when it is whole: written to `FILE.part`,
/// fsynced, renamed, the directory fsynced. Returns its size and the revision it was taken at.
/// `ballot_format` asks for ballot's own image instead of etcd's bbolt database.
pub async fn snapshot_save(channel: Conn, file: &Path, ballot_format: bool) -> anyhow::Result<(u64, i64)> {
    let part = file.with_extension(match file.extension() {
        Some(extension) => format!("{}.part", extension.to_string_lossy()),
        None => "part".into(),
    });
    let mut out = std::fs::File::create(&part).with_context(|| format!("creating {}", part.display()))?;
    let mut request = tonic::Request::new(pb::SnapshotRequest {});
    if ballot_format {
        request
            .metadata_mut()
            .insert(ballot_server::api::maintenance::SNAPSHOT_FORMAT_HEADER, "ballot".parse().expect("ascii"));
    }
    let mut stream = MaintenanceClient::new(channel).snapshot(request).await?.into_inner();
    let (mut hasher, mut held, mut size, mut revision) = (Sha256::new(), Vec::<u8>::new(), 0u64, 0i64);
    while let Some(message) = stream.message().await? {
        revision = message.header.map_or(revision, |h| h.revision);
        out.write_all(&message.blob)?;
        size += message.blob.len() as u64;
        // Everything but the last 32 bytes seen so far is content: hash it as it passes.
        held.extend_from_slice(&message.blob);
        if held.len() > TRAILER_BYTES {
            let content = held.len() - TRAILER_BYTES;
            hasher.update(&held[..content]);
            held.drain(..content);
        }
    }
    if held.len() < TRAILER_BYTES {
        let _ = std::fs::remove_file(&part);
        bail!("the snapshot stream ended after {size} bytes, before its SHA-256 trailer");
    }
    if hasher.finalize().as_slice() != held.as_slice() {
        let _ = std::fs::remove_file(&part);
        bail!("the snapshot's SHA-256 does not match its trailer: the stream was damaged");
    }
    out.sync_all()?;
    drop(out);
    std::fs::rename(&part, file).with_context(|| format!("renaming {} to {}", part.display(), file.display()))?;
    let directory = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(directory)?.sync_all()?;
    Ok((size, revision))
}

/// Asks the leader to hand leadership to `target` (a member id) and waits until it has.
pub async fn move_leader(dialer: &Dialer, channel: Conn, target: u64) -> anyhow::Result<()> {
    let members = ClusterClient::new(channel).member_list(pb::MemberListRequest::default()).await?.into_inner();
    if !members.members.iter().any(|m| m.id == target) {
        bail!("{target:x} is not a member");
    }
    // Only the leader can move leadership: find it through the members' status.
    for member in &members.members {
        let Some(url) = member.client_ur_ls.first() else { continue };
        let Ok(channel) = dialer.dial(url).await else { continue };
        let mut maintenance = MaintenanceClient::new(channel);
        let Ok(status) = maintenance.status(pb::StatusRequest {}).await else { continue };
        if status.into_inner().leader != member.id {
            continue;
        }
        if member.id == target {
            return Ok(());
        }
        maintenance.move_leader(pb::MoveLeaderRequest { target_id: target }).await?;
        return Ok(());
    }
    bail!("no member reports itself as the leader")
}
