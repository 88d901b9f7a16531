//! The members this one knows: ids, names, peer and client URLs.
//!
//! Ids are derived as etcd derives them, from what identifies a member (its name, peer URLs and
//! the cluster token), so every founding member computes the same table from the same
//! `--initial-cluster` flag; the cluster id is derived from the sorted member ids and the
//! token. Client URLs are not in that flag: each member publishes its own through the log
//! when it starts, and peers also learn them from its hello.
//!
//! The replicated member table lives in the state machine (it changes with membership changes,
//! `MemberUpdate` and publications, all through the log); [`Members`] is this member's copy,
//! reloaded whenever an applied entry changed it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use ballot_raft::NodeId;

/// One member: the replicated table's record (client URLs may also come from its hello).
pub use ballot_mvcc::MemberRecord as Member;

#[derive(Debug, Default)]
struct Table {
    members: BTreeMap<NodeId, Member>,
    removed: BTreeSet<NodeId>,
    /// Removed members Raft may still send to (see `replace`).
    departing: BTreeMap<NodeId, Member>,
}

/// The member table, shared by the transport, the API and the driver.
#[derive(Debug, Clone, Default)]
pub struct Members {
    inner: Arc<Mutex<Table>>,
}

/// A 64-bit FNV-1a hash, finished with a SplitMix64 round so that close inputs spread.
pub fn hash64(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain([&0xffu8]) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    let mut z = hash.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).max(1)
}

/// A member's id from its name, peer URLs and the cluster token.
pub fn member_id(name: &str, peer_urls: &[String], token: &str) -> NodeId {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    hash64(&[name.as_bytes(), urls.join(",").as_bytes(), token.as_bytes()])
}

/// The cluster id from its founding members and the token.
pub fn cluster_id(ids: impl IntoIterator<Item = NodeId>, token: &str) -> u64 {
    let mut ids: Vec<NodeId> = ids.into_iter().collect();
    ids.sort_unstable();
    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    hash64(&[&bytes, token.as_bytes()])
}

/// Parses `--initial-cluster` (`name=url[,name=url…]`, a name may repeat for several URLs).
pub fn parse_initial_cluster(flag: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for item in flag.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let (name, url) = item.split_once('=').ok_or_else(|| format!("--initial-cluster: '{item}' is not name=url"))?;
        if name.is_empty() {
            return Err(format!("--initial-cluster: '{item}' has an empty name"));
        }
        url_address(url)?;
        members.entry(name.to_string()).or_default().push(url.to_string());
    }
    if members.is_empty() {
        return Err("--initial-cluster names no member".into());
    }
    Ok(members)
}

/// `host:port` of an `http://host:port` URL.
pub fn url_address(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("URL '{url}' must start with http:// or https://"))?;
    let address = rest.trim_end_matches('/');
    if address.is_empty() || !address.contains(':') || address.contains('/') {
        return Err(format!("URL '{url}' must be http://host:port"));
    }
    Ok(address.to_string())
}

impl Members {
    /// A table of the given members.
    pub fn new(members: impl IntoIterator<Item = Member>) -> Members {
        let members = members.into_iter().map(|member| (member.id, member)).collect();
        Members { inner: Arc::new(Mutex::new(Table { members, ..Table::default() })) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces the table with the replicated one. Client URLs a member announced in its hello
    /// stay until it has published its own. `departing` members were removed from the table
    /// but are still in Raft's configuration: they keep their address (not their membership)
    /// until they are out of it.
    pub fn replace(&self, records: Vec<Member>, removed: Vec<NodeId>, departing: &[NodeId]) {
        let mut table = self.lock();
        let mut kept = BTreeMap::new();
        for id in departing {
            if let Some(member) = table.members.get(id).or_else(|| table.departing.get(id)) {
                kept.insert(*id, member.clone());
            }
        }
        table.departing = kept;
        let members = records
            .into_iter()
            .map(|record| {
                let mut member = record;
                if member.client_urls.is_empty() {
                    if let Some(known) = table.members.get(&member.id) {
                        member.client_urls = known.client_urls.clone();
                    }
                }
                (member.id, member)
            })
            .collect();
        table.members = members;
        table.removed = removed.into_iter().collect();
    }

    /// Every member, by id.
    pub fn list(&self) -> Vec<Member> {
        self.lock().members.values().cloned().collect()
    }

    /// One member.
    pub fn get(&self, id: NodeId) -> Option<Member> {
        self.lock().members.get(&id).cloned()
    }

    /// True if `id` is a member.
    pub fn contains(&self, id: NodeId) -> bool {
        self.lock().members.contains_key(&id)
    }

    /// True if `id` was a member and was removed.
    pub fn is_removed(&self, id: NodeId) -> bool {
        self.lock().removed.contains(&id)
    }

    /// The ids of removed members.
    pub fn removed(&self) -> Vec<NodeId> {
        self.lock().removed.iter().copied().collect()
    }

    /// The member whose peer URLs are `peer_urls` (in any order).
    pub fn find_by_peer_urls(&self, peer_urls: &[String]) -> Option<Member> {
        let wanted: BTreeSet<&String> = peer_urls.iter().collect();
        self.lock().members.values().find(|member| member.peer_urls.iter().collect::<BTreeSet<_>>() == wanted).cloned()
    }

    /// The peer address of one member.
    pub fn peer_address(&self, id: NodeId) -> Option<String> {
        let table = self.lock();
        let member = table.members.get(&id).or_else(|| table.departing.get(&id))?;
        url_address(member.peer_urls.first()?).ok()
    }

    /// Records the client URLs a member announced (comma-separated), unless it published some.
    pub fn set_client_urls(&self, id: NodeId, urls: &str) {
        if let Some(member) = self.lock().members.get_mut(&id) {
            if member.client_urls.is_empty() {
                member.client_urls = urls.split(',').filter(|url| !url.is_empty()).map(str::to_string).collect();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_name_urls_and_token_only() {
        let urls = vec!["http://127.0.0.1:2380".to_string()];
        assert_eq!(member_id("a", &urls, "t"), member_id("a", &urls, "t"));
        assert_ne!(member_id("a", &urls, "t"), member_id("b", &urls, "t"));
        assert_ne!(member_id("a", &urls, "t"), member_id("a", &urls, "u"));
        assert_eq!(cluster_id([3, 1, 2], "t"), cluster_id([1, 2, 3], "t"));
        assert_ne!(cluster_id([1, 2, 3], "t"), cluster_id([1, 2], "t"));
    }

    #[test]
    fn initial_cluster_parses_and_rejects_garbage() {
        let members = parse_initial_cluster("a=http://127.0.0.1:1,b=http://127.0.0.1:2").unwrap();
        assert_eq!(members.len(), 2);
        assert!(parse_initial_cluster("a").is_err());
        assert!(parse_initial_cluster("=http://x:1").is_err());
        assert!(parse_initial_cluster("a=ftp://x:1").is_err());
        assert!(parse_initial_cluster("").is_err());
        assert_eq!(url_address("http://127.0.0.1:2379").unwrap(), "127.0.0.1:2379");
    }
}
