//! Disaster recovery: a new member's data dir built from a saved snapshot file
//! (`ballot snapshot restore`), as `etcdutl snapshot restore` builds one.
//!
//! Every member of the new cluster restores the same file with its own `--name` and the same
//! `--initial-cluster`: each gets the same store (the snapshot's keys, revisions and leases),
//! the new member table in place of the old one, and a log that starts with a snapshot of
//! that state at index R (the snapshot's applied index + 1), term 1, voters from
//! `--initial-cluster`. Started with the same flags, the members elect a leader and go on
//! from R, with the snapshot's revisions.
//!
//! The file is either ballot's own snapshot (its store image and a SHA-256) or etcd's (a bbolt
//! database and a SHA-256, see [`crate::etcd_snapshot`]); the first bytes tell which.

use std::path::Path;

use anyhow::{bail, Context};
use ballot_mvcc::{Command, MemberChange, Store};
use ballot_raft::{ConfState, HardState, Snapshot, SnapshotMeta};
use ballot_storage::{Batch, FsDisk, Wal, WalOptions};
use sha2::{Digest, Sha256};

use crate::etcd_snapshot;
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
    /// "etcd" or "ballot": the snapshot's format.
    pub format: &'static str,
    /// What the snapshot held that was not carried over, one line each.
    pub not_carried: Vec<String>,
}

/// Checks the SHA-256 trailer of the ballot snapshot file at `file`, reading it as a stream,
/// and returns the image's length (the file's, less the trailer).
pub fn verify(file: &Path) -> anyhow::Result<u64> {
    let mut input = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let len = input.metadata()?.len();
    if len < TRAILER_BYTES as u64 {
        bail!("the file is {len} bytes long: too short to be a snapshot");
    }
    let image = len - TRAILER_BYTES as u64;
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::io::Read::take(&mut input, image), &mut hasher)?;
    let mut trailer = [0u8; TRAILER_BYTES];
    std::io::Read::read_exact(&mut input, &mut trailer)?;
    if hasher.finalize().as_slice() != trailer {
        bail!("the snapshot's SHA-256 does not match its trailer: the file is damaged or not a ballot snapshot");
    }
    Ok(image)
}

/// Builds `config.data_dir` for member `config.name` of the cluster `config.initial_cluster`
/// from the snapshot file at `file`. The data dir must not exist or be empty; if the restore
/// fails, it is left as it was. `skip_hash_check` accepts an etcd database without a SHA-256
/// (a copy of a member's `member/snap/db`), as `etcdctl snapshot restore --skip-hash-check`.
pub fn restore(file: &Path, config: &ServerConfig, skip_hash_check: bool) -> anyhow::Result<Restored> {
    let dir = &config.data_dir;
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!("data dir {} is not empty; restore into a new one", dir.display());
    }
    let existed = dir.exists();
    let result = restore_into(file, config, skip_hash_check);
    if result.is_err() {
        let _ = if existed { clear_dir(dir) } else { std::fs::remove_dir_all(dir) };
    }
    result
}

fn clear_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(path)?;
        } else {
            std::fs::remove_file(path)?;
        }
    }
    Ok(())
}

fn restore_into(file: &Path, config: &ServerConfig, skip_hash_check: bool) -> anyhow::Result<Restored> {
    let mut head = [0u8; 32];
    let read = std::fs::File::open(file)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .with_context(|| format!("reading {}", file.display()))?;
    let (table, member_id, cluster_id) = founding(config)?;
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut store = Store::open(&dir.join("db")).map_err(|error| anyhow::anyhow!("creating the database: {error}"))?;
    let (format, not_carried) = if etcd_snapshot::is_etcd_snapshot(&head[..read]) {
        let db_len = etcd_snapshot::verify_hash(file, skip_hash_check)?;
        let image = dir.join("import.image");
        let imported = etcd_snapshot::import(file, db_len, &image)?;
        let chunks = FileChunks(std::io::Read::take(std::fs::File::open(&image)?, u64::MAX));
        store.install_snapshot(chunks).map_err(|error| anyhow::anyhow!("{}: {error}", file.display()))?;
        std::fs::remove_file(&image)?;
        ("etcd", imported.not_carried)
    } else {
        let len = verify(file)?;
        let chunks = FileChunks(std::io::Read::take(std::fs::File::open(file)?, len));
        store.install_snapshot(chunks).map_err(|error| anyhow::anyhow!("{}: {error}", file.display()))?;
        ("ballot", Vec::new())
    };
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
    Ok(Restored { member_id, cluster_id, revision, index, format, not_carried })
}

/// A file (up to a length) read in chunks of 1 MiB (a read error ends it early, which the
/// image's checksum then reports as a truncation).
struct FileChunks(std::io::Take<std::fs::File>);

impl Iterator for FileChunks {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let mut chunk = Vec::with_capacity(1 << 20);
        match std::io::Read::read_to_end(&mut std::io::Read::take(&mut self.0, 1 << 20), &mut chunk) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(chunk),
        }
    }
}
