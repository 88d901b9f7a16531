//! The members this one knows: ids, names, peer and client URLs.
//!
//! Ids are derived as etcd derives them, from what identifies a member (its name, peer URLs and
//! the cluster token), so every founding member computes the same table from the same
//! `--initial-cluster` flag; the cluster id is derived from the sorted member ids and the
//! token. Client URLs are not in that flag: each member learns its peers' from their hello.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use ballot_raft::NodeId;

/// One member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Raft id.
    pub id: NodeId,
    /// Human-readable name.
    pub name: String,
    /// Where peers reach it.
    pub peer_urls: Vec<String>,
    /// Where clients reach it (empty until it has been heard from).
    pub client_urls: Vec<String>,
}

/// The member table, shared by the transport, the API and the driver.
#[derive(Debug, Clone, Default)]
pub struct Members {
    inner: Arc<Mutex<BTreeMap<NodeId, Member>>>,
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
        .ok_or_else(|| format!("URL '{url}' must start with http:// (TLS is not supported yet)"))?;
    let address = rest.trim_end_matches('/');
    if address.is_empty() || !address.contains(':') || address.contains('/') {
        return Err(format!("URL '{url}' must be http://host:port"));
    }
    Ok(address.to_string())
}

impl Members {
    /// A table of the given members.
    pub fn new(members: impl IntoIterator<Item = Member>) -> Members {
        let table = members.into_iter().map(|member| (member.id, member)).collect();
        Members { inner: Arc::new(Mutex::new(table)) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, Member>> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every member, by id.
    pub fn list(&self) -> Vec<Member> {
        self.lock().values().cloned().collect()
    }

    /// One member.
    pub fn get(&self, id: NodeId) -> Option<Member> {
        self.lock().get(&id).cloned()
    }

    /// True if `id` is a member.
    pub fn contains(&self, id: NodeId) -> bool {
        self.lock().contains_key(&id)
    }

    /// Each member's first peer address.
    pub fn peer_addresses(&self) -> Vec<(NodeId, String)> {
        self.lock()
            .values()
            .filter_map(|member| Some((member.id, url_address(member.peer_urls.first()?).ok()?)))
            .collect()
    }

    /// The peer address of one member.
    pub fn peer_address(&self, id: NodeId) -> Option<String> {
        url_address(self.lock().get(&id)?.peer_urls.first()?).ok()
    }

    /// Records the client URLs a member announced (comma-separated).
    pub fn set_client_urls(&self, id: NodeId, urls: &str) {
        if let Some(member) = self.lock().get_mut(&id) {
            member.client_urls = urls.split(',').filter(|url| !url.is_empty()).map(str::to_string).collect();
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
