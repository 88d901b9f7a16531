//! Disaster recovery: a new member's data dir built from a saved snapshot file
//! (`ballot snapshot restore`), as `etcdutl snapshot restore` builds one.
//!
//! Every member of the new cluster restores the same file with its own `--name` and the same
//! `--initial-cluster`: each gets the same store (the snapshot's keys, revisions and leases),
//! the new member table in place of the old one, and a log that starts with a snapshot of
//! that state at index R (the snapshot's applied index + 1), term 1, voters from
//! `--initial-cluster`. Started with the same flags, the members elect a leader and go on
//! from R, with the snapshot's revisions.

use std::path::Path;

use anyhow::{bail, Context};
use ballot_mvcc::{Command, MemberChange, Store};
use ballot_raft::{ConfState, HardState, Snapshot, SnapshotMeta};
use ballot_storage::{Batch, FsDisk, Wal, WalOptions};
use sha2::{Digest, Sha256};

use crate::server::{founding, Identity, ServerConfig, IDENTITY_FILE};

/// Length of the SHA-256 trailer that ends a snapshot file.
const TRAILER_BYTES: usize = 32;

/// What a restore made.
#[derive(Debug)]
pub struct Restored {
    /// The member's id in the new cluster.
    pub member_id: u64,
    /// The new cluster's id.
    pub cluster_id: u64,
    /// The store revision the snapshot holds.
    pub revision: i64,
    /// The log index the new cluster starts after.
    pub index: u64,
}

/// Checks the SHA-256 trailer of a snapshot file's bytes and returns the image before it.
pub fn verify(bytes: &[u8]) -> anyhow::Result<&[u8]> {
    if bytes.len() < TRAILER_BYTES {
        bail!("the file is {} bytes long: too short to be a snapshot", bytes.len());
    }
    let (image, trailer) = bytes.split_at(bytes.len() - TRAILER_BYTES);
    if Sha256::digest(image).as_slice() != trailer {
        bail!("the snapshot's SHA-256 does not match its trailer: the file is damaged or not a ballot snapshot");
    }
    Ok(image)
}

/// Builds `config.data_dir` for member `config.name` of the cluster `config.initial_cluster`
/// from the snapshot file at `file`. The data dir must not exist or be empty.
pub fn restore(file: &Path, config: &ServerConfig) -> anyhow::Result<Restored> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let image = verify(&bytes)?;
    let (table, member_id, cluster_id) = founding(config)?;
    let dir = &config.data_dir;
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!("data dir {} is not empty; restore into a new one", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;

    let mut store = Store::open(&dir.join("db")).map_err(|error| anyhow::anyhow!("creating the database: {error}"))?;
    store
        .install_snapshot(image.chunks(1 << 20).map(<[u8]>::to_vec))
        .map_err(|error| anyhow::anyhow!("{}: {error}", file.display()))?;
    // The old members are gone for good; the new ones take their place, as one more entry.
    let index = store.applied_index() + 1;
    let (old, _) = store.members().map_err(|error| anyhow::anyhow!("reading the member table: {error}"))?;
    let mut changes: Vec<MemberChange> = old.iter().map(|member| MemberChange::Remove(member.id)).collect();
    changes.extend(table.iter().map(|member| MemberChange::Upsert(member.clone())));
    store.apply_batch(&[(index, Command::Members(changes))]).map_err(|error| anyhow::anyhow!("{error}"))?;
    store.make_durable().map_err(|error| anyhow::anyhow!("{error}"))?;
    let revision = store.revision();
    drop(store);

    let (mut wal, _) = Wal::open(FsDisk::open(&dir.join("wal"), true)?, WalOptions::default())?;
    let meta =
        SnapshotMeta { index, term: 1, conf_state: ConfState::with_voters(table.iter().map(|member| member.id)) };
    wal.save_snapshot(&Snapshot { meta: meta.clone(), data: Vec::new() })?;
    let hard_state = HardState { term: 1, vote: 0, commit: index };
    let _ = wal.append(Batch { installed_snapshot: Some(&meta), entries: &[], hard_state: Some(hard_state) })?;
    drop(wal);

    let identity = Identity::new(&config.name, member_id, cluster_id);
    identity.write(&dir.join(IDENTITY_FILE))?;
    Ok(Restored { member_id, cluster_id, revision, index })
}
