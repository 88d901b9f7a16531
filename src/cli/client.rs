//! Client commands over the etcd v3 API: `ballot put/get/del/watch/status/member/lease/lock/elect`.

use anyhow::{bail, Context};
use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::{
    cluster_client::ClusterClient, kv_client::KvClient, lease_client::LeaseClient,
    maintenance_client::MaintenanceClient, watch_client::WatchClient,
};
use ballot_proto::v3electionpb::election_client::ElectionClient;
use ballot_proto::v3lockpb::lock_client::LockClient;
use clap::Subcommand;

use super::connect::{Conn, Dialer, Endpoints};

/// A client command.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Puts a key.
    Put {
        /// Key.
        key: String,
        /// Value.
        value: String,
        /// Attach to this lease (hex id as printed by `lease grant`).
        #[arg(long)]
        lease: Option<String>,
    },
    /// Gets a key, or every key under a prefix.
    Get {
        /// Key (or prefix).
        key: String,
        /// Treat the key as a prefix.
        #[arg(long)]
        prefix: bool,
        /// Serve from the contacted member without a ReadIndex round (may be stale); the same
        /// as `--consistency serializable`.
        #[arg(long)]
        serializable: bool,
        /// Read as of a time: the newest revision written at or before it (RFC 3339, such as
        /// 2026-12-01T10:05:00Z, or ms since the epoch), unless compacted; the revision and its
        /// time are printed on standard error.
        #[arg(long, value_name = "TIME")]
        as_of: Option<String>,
    },
    /// Deletes a key, or every key under a prefix.
    Del {
        /// Key (or prefix).
        key: String,
        /// Treat the key as a prefix.
        #[arg(long)]
        prefix: bool,
    },
    /// Prints changes to a key (or prefix) until interrupted.
    Watch {
        /// Key (or prefix).
        key: String,
        /// Treat the key as a prefix.
        #[arg(long)]
        prefix: bool,
        /// Start from this revision (history first).
        #[arg(long, default_value_t = 0)]
        rev: i64,
    },
    /// A table of the members' status.
    Status,
    /// Membership.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Leases.
    #[command(subcommand)]
    Lease(LeaseCommand),
    /// Snapshots (backups).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Runs a command while holding a lock; the fencing token is in $BALLOT_LOCK_TOKEN, and
    /// $BALLOT_CAUSAL_TOKEN carries the session on, so the command's causal reads see
    /// everything written before the lock was taken.
    Lock {
        /// Lock name.
        name: String,
        /// Lease TTL of the hold, seconds.
        #[arg(long, default_value_t = 10)]
        ttl: i64,
        /// The command to run.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// A transaction from standard input, in etcdctl's format (compares, blank line, success
    /// operations, blank line, failure operations).
    Txn,
    /// Campaigns in an election and prints when this process leads; leads until interrupted.
    Elect {
        /// Election name.
        name: String,
        /// Value to proclaim.
        #[arg(default_value = "ballot")]
        value: String,
    },
}

/// Membership commands.
#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Lists the members.
    List,
    /// Hands leadership to another member (hex id, as `member list` prints it).
    MoveLeader {
        /// The new leader's member id.
        id: String,
    },
    /// Adds a member; prints the flags to start it with.
    Add {
        /// Its name (used for the printed flags; the member publishes it when it starts).
        name: String,
        /// Its peer URLs, comma-separated.
        #[arg(long)]
        peer_urls: String,
        /// Add it as a learner (it receives the log, does not vote; promote it later).
        #[arg(long)]
        learner: bool,
    },
    /// Removes a member (hex id).
    Remove {
        /// The member id.
        id: String,
    },
    /// Promotes a learner that has caught up to voter (hex id).
    Promote {
        /// The member id.
        id: String,
    },
    /// Changes a member's peer URLs (hex id).
    Update {
        /// The member id.
        id: String,
        /// The new peer URLs, comma-separated.
        #[arg(long)]
        peer_urls: String,
    },
}

/// Snapshot commands.
#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Streams a snapshot from a member into a file, checking its SHA-256.
    Save {
        /// Where to write it.
        file: std::path::PathBuf,
        /// `etcd`: etcd's snapshot format (what `etcdctl snapshot save` gets; etcd's tools
        /// read it); `ballot`: ballot's own store image (smaller, streamed as it is read).
        #[arg(long, default_value = "etcd", value_parser = ["etcd", "ballot"])]
        format: String,
    },
    /// Builds a new member's data dir from a saved snapshot (disaster recovery): run it for
    /// every member of the new cluster, with the same --initial-cluster, then start them with
    /// `ballot serve` and the same flags.
    Restore {
        /// The snapshot file: etcd's (`etcdctl snapshot save` against etcd or ballot, or
        /// `ballot snapshot save`) or ballot's own (`ballot snapshot save --format ballot`).
        file: std::path::PathBuf,
        /// Accept an etcd database file without its SHA-256 (a copy of `member/snap/db`).
        #[arg(long)]
        skip_hash_check: bool,
        /// This member's name.
        #[arg(long, default_value = "default")]
        name: String,
        /// The data dir to create (must not exist or be empty); default NAME.ballot.
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
        /// `name=peer-url,…` of every member of the new cluster.
        #[arg(long, default_value = "default=http://127.0.0.1:2380")]
        initial_cluster: String,
        /// The new cluster's token.
        #[arg(long, default_value = "ballot-cluster")]
        initial_cluster_token: String,
        /// This member's peer URLs.
        #[arg(long, default_value = "http://127.0.0.1:2380")]
        initial_advertise_peer_urls: String,
    },
}

/// Lease commands.
#[derive(Subcommand, Debug)]
pub enum LeaseCommand {
    /// Grants a lease with a TTL in seconds.
    Grant {
        /// TTL, seconds.
        ttl: i64,
    },
    /// Revokes a lease (its keys are deleted).
    Revoke {
        /// Lease id (hex).
        id: String,
    },
    /// Keeps a lease alive until interrupted.
    Keepalive {
        /// Lease id (hex).
        id: String,
    },
}

/// The range end for `key`: empty for the key alone, the prefix's end with `prefix`.
pub fn range_end(key: &str, prefix: bool) -> Vec<u8> {
    if prefix {
        ballot_server::api::prefix_end(key.as_bytes())
    } else {
        Vec::new()
    }
}

fn lease_id(hex: &str) -> anyhow::Result<i64> {
    i64::from_str_radix(hex.trim_start_matches("0x"), 16).with_context(|| format!("'{hex}' is not a hex lease id"))
}

/// Runs a client command.
pub fn run(endpoints: Endpoints, command: ClientCommand) -> anyhow::Result<std::process::ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run_async(endpoints, command)).map_err(plain_status)?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// A member's refusal as etcdctl prints it (`etcdserver: permission denied`), not tonic's
/// debug form of the status.
pub fn plain_status(error: anyhow::Error) -> anyhow::Error {
    match error.downcast_ref::<tonic::Status>() {
        Some(status) if !status.message().is_empty() => anyhow::anyhow!("{}", status.message()),
        Some(status) => anyhow::anyhow!("{:?}", status.code()),
        None => error,
    }
}

async fn run_async(endpoints: Endpoints, command: ClientCommand) -> anyhow::Result<()> {
    if let ClientCommand::Snapshot(SnapshotCommand::Restore {
        file,
        skip_hash_check,
        name,
        data_dir,
        initial_cluster,
        initial_cluster_token,
        initial_advertise_peer_urls,
    }) = command
    {
        let config = ballot_server::ServerConfig {
            data_dir: data_dir.unwrap_or_else(|| format!("{name}.ballot").into()),
            name,
            initial_cluster,
            initial_cluster_token,
            initial_advertise_peer_urls,
            ..Default::default()
        };
        let restored = ballot_server::restore::restore(&file, &config, skip_hash_check)?;
        for line in &restored.not_carried {
            eprintln!("not carried over: {line}");
        }
        println!(
            "Restored {} ({} format) into {} (member {:x} of cluster {:x}, revision {}, log from index {})",
            file.display(),
            restored.format,
            config.data_dir.display(),
            restored.member_id,
            restored.cluster_id,
            restored.revision,
            restored.index
        );
        return Ok(());
    }
    let dialer = Dialer::new(&endpoints)?;
    let channel = dialer.connect(&endpoints.endpoints).await?;
    let session = dialer.session.clone();
    if let Err(error) = run_command(&dialer, channel.clone(), command).await {
        // A token carried to another cluster names a revision this one may never reach: say
        // so rather than that the member stayed behind.
        if endpoints.causal_token.is_some() {
            let members = ClusterClient::new(channel).member_list(pb::MemberListRequest::default()).await;
            if let Ok(members) = members {
                session.saw(members.into_inner().header.as_ref())?;
            }
        }
        return Err(error);
    }
    if endpoints.print_token {
        println!("{}", session.token());
    }
    Ok(())
}

/// Runs a command that talks to the cluster through `channel`; the session takes in every
/// answer's header.
async fn run_command(dialer: &Dialer, channel: Conn, command: ClientCommand) -> anyhow::Result<()> {
    let session = &dialer.session;
    match command {
        ClientCommand::Put { key, value, lease } => {
            let lease = lease.as_deref().map(lease_id).transpose()?.unwrap_or(0);
            let request =
                pb::PutRequest { key: key.into_bytes(), value: value.into_bytes(), lease, ..Default::default() };
            let response = KvClient::new(channel).put(request).await?.into_inner();
            session.saw(response.header.as_ref())?;
            println!("OK (revision {})", response.header.map_or(0, |h| h.revision));
        }
        ClientCommand::Get { key, prefix, serializable, as_of } => {
            let range_end = range_end(&key, prefix);
            let serializable = serializable || dialer.serializable();
            let request = pb::RangeRequest { key: key.into_bytes(), range_end, serializable, ..Default::default() };
            let mut request = tonic::Request::new(request);
            if let Some(time) = &as_of {
                let value = time.parse().map_err(|_| anyhow::anyhow!("--as-of {time:?} is not valid metadata"))?;
                request.metadata_mut().insert(ballot_server::api::caller::AS_OF, value);
            }
            let response = KvClient::new(channel).range(request).await?;
            if as_of.is_some() {
                let text = |key| response.metadata().get(key).and_then(|value| value.to_str().ok()).unwrap_or("?");
                use ballot_server::api::caller::{AS_OF_REVISION, AS_OF_TIME};
                eprintln!("as of revision {}, written at {}", text(AS_OF_REVISION), text(AS_OF_TIME));
            }
            let response = response.into_inner();
            session.saw(response.header.as_ref())?;
            for kv in response.kvs {
                println!("{}\n{}", String::from_utf8_lossy(&kv.key), String::from_utf8_lossy(&kv.value));
            }
        }
        ClientCommand::Del { key, prefix } => {
            let range_end = range_end(&key, prefix);
            let request = pb::DeleteRangeRequest { key: key.into_bytes(), range_end, prev_kv: false };
            let response = KvClient::new(channel).delete_range(request).await?.into_inner();
            session.saw(response.header.as_ref())?;
            println!("{}", response.deleted);
        }
        ClientCommand::Watch { key, prefix, rev } => {
            let create = pb::WatchCreateRequest {
                range_end: range_end(&key, prefix),
                key: key.into_bytes(),
                start_revision: rev,
                ..Default::default()
            };
            let request =
                pb::WatchRequest { request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)) };
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tx.send(request).await?;
            let mut responses =
                WatchClient::new(channel).watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
            while let Some(response) = responses.message().await? {
                if response.canceled {
                    bail!("watch canceled: {}", response.cancel_reason);
                }
                session.saw(response.header.as_ref())?;
                for event in response.events {
                    let kind = if event.r#type == 0 { "PUT" } else { "DELETE" };
                    let kv = event.kv.unwrap_or_default();
                    println!("{kind}\n{}\n{}", String::from_utf8_lossy(&kv.key), String::from_utf8_lossy(&kv.value));
                }
            }
            drop(tx);
        }
        ClientCommand::Txn => {
            let mut input = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut input)?;
            let request = super::txn::parse(&input)?;
            let response = KvClient::new(channel).txn(request).await?.into_inner();
            session.saw(response.header.as_ref())?;
            super::txn::print(&response);
        }
        ClientCommand::Status => {
            let members =
                ClusterClient::new(channel.clone()).member_list(pb::MemberListRequest::default()).await?.into_inner();
            println!(
                "{:<10} {:<18} {:<7} {:>6} {:>10} {:>10} {:>12} {:>13}",
                "MEMBER", "ENDPOINT", "LEADER", "TERM", "INDEX", "APPLIED", "DB SIZE", "CLOCK OFFSET"
            );
            for member in members.members {
                let Some(url) = member.client_ur_ls.first() else { continue };
                let row = async {
                    let channel = dialer.dial(url).await?;
                    anyhow::Ok(MaintenanceClient::new(channel).status(pb::StatusRequest {}).await?)
                };
                match row.await {
                    Ok(answer) => {
                        let offset = answer
                            .metadata()
                            .get(ballot_server::api::caller::CLOCK_OFFSET)
                            .and_then(|value| value.to_str().ok())
                            .map_or("?".to_string(), |ms| format!("{ms} ms"));
                        let status = answer.into_inner();
                        println!(
                            "{:<10} {:<18} {:<7} {:>6} {:>10} {:>10} {:>12} {:>13}",
                            member.name,
                            url.trim_start_matches("http://").trim_start_matches("https://"),
                            if status.leader == member.id { "yes" } else { "no" },
                            status.raft_term,
                            status.raft_index,
                            status.raft_applied_index,
                            status.db_size,
                            offset
                        )
                    }
                    Err(error) => println!("{:<10} {:<18} unreachable: {error}", member.name, url),
                }
            }
        }
        ClientCommand::Member(MemberCommand::List) => {
            let members = ClusterClient::new(channel).member_list(pb::MemberListRequest::default()).await?.into_inner();
            print_members(&members.members);
        }
        ClientCommand::Member(MemberCommand::Add { name, peer_urls, learner }) => {
            let peer_ur_ls: Vec<String> = peer_urls.split(',').map(str::to_string).collect();
            let request = pb::MemberAddRequest { peer_ur_ls, is_learner: learner };
            let response = ClusterClient::new(channel).member_add(request).await?.into_inner();
            let added = response.member.context("the answer names no member")?;
            println!("Member {:x} added to cluster {:x}", added.id, response.header.unwrap_or_default().cluster_id);
            let mut cluster: Vec<String> = Vec::new();
            for member in &response.members {
                let member_name = if member.id == added.id { name.as_str() } else { member.name.as_str() };
                cluster.extend(member.peer_ur_ls.iter().map(|url| format!("{member_name}={url}")));
            }
            println!();
            println!("BALLOT_NAME=\"{name}\"");
            println!("BALLOT_INITIAL_CLUSTER=\"{}\"", cluster.join(","));
            println!("BALLOT_INITIAL_ADVERTISE_PEER_URLS=\"{peer_urls}\"");
            println!("BALLOT_INITIAL_CLUSTER_STATE=\"existing\"");
        }
        ClientCommand::Member(MemberCommand::Remove { id }) => {
            let id = member_id(&id)?;
            ClusterClient::new(channel).member_remove(pb::MemberRemoveRequest { id }).await?;
            println!("Member {id:x} removed");
        }
        ClientCommand::Member(MemberCommand::Promote { id }) => {
            let id = member_id(&id)?;
            ClusterClient::new(channel).member_promote(pb::MemberPromoteRequest { id }).await?;
            println!("Member {id:x} promoted");
        }
        ClientCommand::Member(MemberCommand::Update { id, peer_urls }) => {
            let id = member_id(&id)?;
            let peer_ur_ls = peer_urls.split(',').map(str::to_string).collect();
            ClusterClient::new(channel).member_update(pb::MemberUpdateRequest { id, peer_ur_ls }).await?;
            println!("Member {id:x} updated");
        }
        ClientCommand::Member(MemberCommand::MoveLeader { id }) => {
            let target = member_id(&id)?;
            super::ops::move_leader(dialer, channel, target).await?;
            println!("Leadership transferred to {target:x}");
        }
        ClientCommand::Snapshot(SnapshotCommand::Save { file, format }) => {
            let (size, revision) = super::ops::snapshot_save(channel, &file, format == "ballot").await?;
            println!("Snapshot saved at {} ({size} bytes, revision {revision})", file.display());
        }
        ClientCommand::Snapshot(SnapshotCommand::Restore { .. }) => unreachable!("handled above, without a connection"),
        ClientCommand::Lease(LeaseCommand::Grant { ttl }) => {
            let response =
                LeaseClient::new(channel).lease_grant(pb::LeaseGrantRequest { ttl, id: 0 }).await?.into_inner();
            session.saw(response.header.as_ref())?;
            println!("lease {:x} granted with TTL({}s)", response.id, response.ttl);
        }
        ClientCommand::Lease(LeaseCommand::Revoke { id }) => {
            let id = lease_id(&id)?;
            LeaseClient::new(channel).lease_revoke(pb::LeaseRevokeRequest { id }).await?;
            println!("lease {id:x} revoked");
        }
        ClientCommand::Lease(LeaseCommand::Keepalive { id }) => {
            let id = lease_id(&id)?;
            keep_alive(channel, id, |ttl| println!("lease {id:x} keepalived with TTL({ttl})")).await?;
        }
        ClientCommand::Lock { name, ttl, command } => {
            let lease =
                LeaseClient::new(channel.clone()).lease_grant(pb::LeaseGrantRequest { ttl, id: 0 }).await?.into_inner();
            let keeper = tokio::spawn(keep_alive(channel.clone(), lease.id, |_| {}));
            let request = ballot_proto::v3lockpb::LockRequest { name: name.into_bytes(), lease: lease.id };
            let locked = LockClient::new(channel.clone()).lock(request).await?.into_inner();
            session.saw(locked.header.as_ref())?;
            let token = locked.header.map_or(0, |h| h.revision);
            let status = tokio::process::Command::new(&command[0])
                .args(&command[1..])
                .env("BALLOT_LOCK_KEY", String::from_utf8_lossy(&locked.key).to_string())
                .env("BALLOT_LOCK_TOKEN", token.to_string())
                .env("BALLOT_CAUSAL_TOKEN", session.token())
                .status()
                .await
                .with_context(|| format!("running {}", command[0]))?;
            keeper.abort();
            LeaseClient::new(channel).lease_revoke(pb::LeaseRevokeRequest { id: lease.id }).await?;
            if !status.success() {
                bail!("{} exited with {status}", command[0]);
            }
        }
        ClientCommand::Elect { name, value } => {
            let lease = LeaseClient::new(channel.clone())
                .lease_grant(pb::LeaseGrantRequest { ttl: 10, id: 0 })
                .await?
                .into_inner();
            let keeper = tokio::spawn(keep_alive(channel.clone(), lease.id, |_| {}));
            let request = ballot_proto::v3electionpb::CampaignRequest {
                name: name.into_bytes(),
                lease: lease.id,
                value: value.into_bytes(),
            };
            let campaign = ElectionClient::new(channel.clone()).campaign(request).await?.into_inner();
            let leader = campaign.leader.unwrap_or_default();
            println!(
                "leading {} as {} (fencing token {})",
                String::from_utf8_lossy(&leader.name),
                String::from_utf8_lossy(&leader.key),
                leader.rev
            );
            super::serve::shutdown_signal().await;
            keeper.abort();
            ElectionClient::new(channel.clone())
                .resign(ballot_proto::v3electionpb::ResignRequest { leader: Some(leader) })
                .await?;
            LeaseClient::new(channel).lease_revoke(pb::LeaseRevokeRequest { id: lease.id }).await?;
        }
    }
    Ok(())
}

/// Keeps a lease alive (a keep-alive every third of its TTL) until the lease is gone.
pub(crate) async fn keep_alive(channel: Conn, id: i64, mut each: impl FnMut(i64)) -> anyhow::Result<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut responses =
        LeaseClient::new(channel).lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
    loop {
        tx.send(pb::LeaseKeepAliveRequest { id }).await?;
        let Some(response) = responses.message().await? else { bail!("keep-alive stream closed") };
        if response.ttl <= 0 {
            bail!("lease {id:x} expired or revoked");
        }
        each(response.ttl);
        tokio::time::sleep(std::time::Duration::from_secs((response.ttl / 3).max(1) as u64)).await;
    }
}

fn member_id(hex: &str) -> anyhow::Result<u64> {
    u64::from_str_radix(hex, 16).with_context(|| format!("{hex:?} is not a hex member id"))
}

/// Prints members as `etcdctl member list` does (an unstarted member has no name yet).
fn print_members(members: &[pb::Member]) {
    for member in members {
        println!(
            "{:x}, {}, {}, {}, {}, {}",
            member.id,
            if member.name.is_empty() { "unstarted" } else { "started" },
            member.name,
            member.peer_ur_ls.join(","),
            member.client_ur_ls.join(","),
            member.is_learner
        );
    }
}
