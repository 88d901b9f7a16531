//! Service registration: the agent runs each service's health check and publishes the healthy
//! instances in ballot under `/services/<name>/<node>`, on a lease the agent keeps alive, so
//! any etcd client finds them with a prefix read and follows them with a prefix watch.
//!
//! Who removes what:
//! - the agent itself, as soon as a check fails, and all at once when it leaves (it revokes
//!   its lease);
//! - if the agent dies, its lease expires after its TTL; but gossip knows sooner. When a member
//!   is confirmed failed, the two live members that follow it in name order (a choice every
//!   agent makes alike, so the cluster sees two writers, not a thousand) delete its entries,
//!   each in a transaction guarded on the entry's lease and revision as they read it: an entry
//!   the agent wrote again since (it was alive after all, or restarted) is not touched.
//!
//! Why that is safe under a partition: the store is linearizable and only a majority side of
//! the Raft cluster accepts writes, so every deletion is ordered against the agent's own
//! writes. An agent wrongly declared dead (it was cut off, or slow) loses its entries for a
//! while; it re-publishes any of its entries it finds missing at its next check, at the
//! latest one check interval after it can reach the cluster again. The worst case is a
//! healthy instance hidden for a check interval, never a dead one advertised past its lease.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use ballot_gossip::news::State;
use ballot_gossip::swim::Member;
use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::kv_client::KvClient;
use ballot_proto::etcdserverpb::lease_client::LeaseClient;
use serde::Deserialize;
use tokio::task::JoinHandle;

use crate::cli::connect::{Conn, Dialer};

/// Where registrations live.
pub const PREFIX: &str = "/services/";
/// The registrations' lease, seconds: how long a vanished agent's entries outlive it at most
/// if no peer removes them. Long enough that gossip's verdict (about 5 s in a small fleet, 15
/// in a thousand) comes first, and a short outage of the cluster does not drop every entry.
const LEASE_TTL: i64 = 30;
/// Members that reap a failed one's registrations.
const REAPERS: usize = 2;

/// A file of service definitions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceFile {
    service: Vec<Service>,
}

/// One service this agent's machine runs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Its name (the key's middle part).
    pub name: String,
    /// Its port.
    pub port: u16,
    /// Its address (default: the agent's host).
    pub address: Option<String>,
    /// Free-form tags published with it.
    #[serde(default)]
    pub tags: Vec<String>,
    /// How its health is checked (none: always healthy).
    pub check: Option<Check>,
    /// How often, as `500ms`, `2s` or `1m` (default 2 s).
    pub interval: Option<String>,
}

/// A health check.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Check {
    /// An HTTP GET answering 2xx (`http://host:port/path`).
    Http(String),
    /// A TCP connection accepted (`host:port`).
    Tcp(String),
    /// A command exiting 0 (run with `sh -c`).
    Command(String),
}

/// Parses `500ms`, `2s`, `1m`.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let number: u64 = number.parse().with_context(|| format!("{text:?} is not a duration like 500ms, 2s or 1m"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(number),
        "s" | "" => Duration::from_secs(number),
        "m" => Duration::from_secs(60 * number),
        _ => bail!("{text:?} is not a duration like 500ms, 2s or 1m"),
    })
}

/// Reads and checks a service file.
pub fn load(path: &Path) -> anyhow::Result<Vec<Service>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: ServiceFile = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    for service in &file.service {
        if service.name.is_empty() || service.name.contains('/') {
            bail!("service name {:?} must be non-empty and have no '/'", service.name);
        }
        if let Some(interval) = &service.interval {
            parse_duration(interval)?;
        }
    }
    Ok(file.service)
}

/// Publishes this agent's services and reaps failed members' ones.
pub struct Registrar {
    dialer: Arc<Dialer>,
    endpoints: String,
    services: Vec<Service>,
    node: Arc<Mutex<String>>,
    lease: Arc<Mutex<Option<i64>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Registrar {
    /// A registrar for `services`, talking to the cluster at `endpoints`.
    pub fn new(dialer: Dialer, endpoints: String, services: Vec<Service>) -> Registrar {
        Registrar {
            dialer: Arc::new(dialer),
            endpoints,
            services,
            node: Arc::new(Mutex::new(String::new())),
            lease: Arc::new(Mutex::new(None)),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// Starts the checks of agent `node` listening at `addr`.
    pub fn start(&self, node: String, addr: String) {
        *self.node.lock().expect("no panics hold this lock") = node.clone();
        let host = addr.rsplit_once(':').map_or(addr.clone(), |(host, _)| host.to_string());
        let mut tasks = self.tasks.lock().expect("no panics hold this lock");
        for service in self.services.clone() {
            let (dialer, endpoints, lease, node, host) =
                (self.dialer.clone(), self.endpoints.clone(), self.lease.clone(), node.clone(), host.clone());
            tasks.push(tokio::spawn(async move {
                keep_registered(&dialer, &endpoints, &lease, &node, &host, &service).await;
            }));
        }
    }

    /// A member was confirmed failed or left: if this agent is one of its reapers, delete its
    /// registrations (guarded, see the module's notes).
    pub fn member_gone(&self, members: &BTreeMap<String, Member>, gone: &str) {
        let me = self.node.lock().expect("no panics hold this lock").clone();
        if !reapers(members, gone).contains(&me) {
            return;
        }
        let (dialer, endpoints, gone) = (self.dialer.clone(), self.endpoints.clone(), gone.to_string());
        tokio::spawn(async move {
            for _ in 0..5 {
                match reap(&dialer, &endpoints, &gone).await {
                    Ok(removed) => {
                        if removed > 0 {
                            println!("removed {removed} registration(s) of failed member {gone}");
                        }
                        return;
                    }
                    Err(error) => {
                        eprintln!("reaping {gone}'s registrations: {error:#}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }

    /// Stops the checks and revokes the lease (every registration of this agent goes at once).
    pub async fn stop(&self) {
        for task in self.tasks.lock().expect("no panics hold this lock").drain(..) {
            task.abort();
        }
        let lease = self.lease.lock().expect("no panics hold this lock").take();
        if let Some(id) = lease {
            if let Ok(conn) = self.dialer.connect(&self.endpoints).await {
                let _ = LeaseClient::new(conn).lease_revoke(pb::LeaseRevokeRequest { id }).await;
            }
        }
    }
}

/// The live members that reap `gone`: the next ones after it in name order, wrapping.
fn reapers(members: &BTreeMap<String, Member>, gone: &str) -> Vec<String> {
    let live: Vec<&String> =
        members.iter().filter(|(name, m)| m.state == State::Alive && name.as_str() != gone).map(|(n, _)| n).collect();
    let start = live.iter().position(|name| name.as_str() > gone).unwrap_or(0);
    (0..REAPERS.min(live.len())).map(|i| live[(start + i) % live.len()].clone()).collect()
}

/// The key of `service` on `node`.
pub fn key(service: &str, node: &str) -> String {
    format!("{PREFIX}{service}/{node}")
}

/// Deletes every registration of `gone`, each guarded on its lease and revision as read.
async fn reap(dialer: &Dialer, endpoints: &str, gone: &str) -> anyhow::Result<usize> {
    let conn = dialer.connect(endpoints).await?;
    let range = pb::RangeRequest {
        key: PREFIX.as_bytes().to_vec(),
        range_end: ballot_server::api::prefix_end(PREFIX.as_bytes()),
        ..Default::default()
    };
    let entries = KvClient::new(conn.clone()).range(range).await?.into_inner().kvs;
    let suffix = format!("/{gone}");
    let mut removed = 0;
    for entry in entries.iter().filter(|kv| kv.key.ends_with(suffix.as_bytes())) {
        let compare = |target, target_union| pb::Compare {
            result: pb::compare::CompareResult::Equal as i32,
            target: target as i32,
            key: entry.key.clone(),
            range_end: Vec::new(),
            target_union: Some(target_union),
        };
        let txn = pb::TxnRequest {
            compare: vec![
                compare(pb::compare::CompareTarget::Lease, pb::compare::TargetUnion::Lease(entry.lease)),
                compare(pb::compare::CompareTarget::Mod, pb::compare::TargetUnion::ModRevision(entry.mod_revision)),
            ],
            success: vec![pb::RequestOp {
                request: Some(pb::request_op::Request::RequestDeleteRange(pb::DeleteRangeRequest {
                    key: entry.key.clone(),
                    ..Default::default()
                })),
            }],
            failure: Vec::new(),
        };
        if KvClient::new(conn.clone()).txn(txn).await?.into_inner().succeeded {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Checks `service` forever: publishes it while healthy (again if its entry went missing),
/// removes it when not.
async fn keep_registered(
    dialer: &Dialer,
    endpoints: &str,
    lease: &Mutex<Option<i64>>,
    node: &str,
    host: &str,
    service: &Service,
) {
    let interval = service
        .interval
        .as_deref()
        .map_or(Ok(Duration::from_secs(2)), parse_duration)
        .unwrap_or(Duration::from_secs(2));
    let key = key(&service.name, node);
    let value = serde_json::json!({
        "node": node,
        "address": service.address.clone().unwrap_or_else(|| host.to_string()),
        "port": service.port,
        "tags": service.tags,
    })
    .to_string();
    let mut conn: Option<Conn> = None;
    loop {
        let healthy = check(service.check.as_ref()).await;
        let result = async {
            let channel = match &conn {
                Some(channel) => channel.clone(),
                None => {
                    let channel = dialer.connect(endpoints).await?;
                    conn = Some(channel.clone());
                    channel
                }
            };
            let id = ensure_lease(&channel, lease).await?;
            let mut kv = KvClient::new(channel);
            let current =
                kv.range(pb::RangeRequest { key: key.clone().into_bytes(), ..Default::default() }).await?.into_inner();
            let published =
                current.kvs.first().is_some_and(|entry| entry.lease == id && entry.value == value.as_bytes());
            if healthy && !published {
                let put = pb::PutRequest {
                    key: key.clone().into_bytes(),
                    value: value.clone().into_bytes(),
                    lease: id,
                    ..Default::default()
                };
                kv.put(put).await?;
                println!("registered {key}");
            } else if !healthy && !current.kvs.is_empty() {
                kv.delete_range(pb::DeleteRangeRequest { key: key.clone().into_bytes(), ..Default::default() }).await?;
                println!("deregistered {key}: its check fails");
            }
            anyhow::Ok(())
        }
        .await;
        if let Err(error) = result {
            eprintln!("registering {key}: {error:#}");
            conn = None;
        }
        tokio::time::sleep(interval).await;
    }
}

/// The agent's lease, granted (and kept alive) the first time, granted again if it lapsed.
async fn ensure_lease(conn: &Conn, lease: &Mutex<Option<i64>>) -> anyhow::Result<i64> {
    let known = *lease.lock().expect("no panics hold this lock");
    if let Some(id) = known {
        let alive = LeaseClient::new(conn.clone())
            .lease_time_to_live(pb::LeaseTimeToLiveRequest { id, keys: false })
            .await?
            .into_inner();
        if alive.ttl > 0 {
            return Ok(id);
        }
    }
    let granted =
        LeaseClient::new(conn.clone()).lease_grant(pb::LeaseGrantRequest { ttl: LEASE_TTL, id: 0 }).await?.into_inner();
    if !granted.error.is_empty() {
        bail!("lease grant: {}", granted.error);
    }
    *lease.lock().expect("no panics hold this lock") = Some(granted.id);
    let keeper = conn.clone();
    let id = granted.id;
    tokio::spawn(async move {
        let _ = crate::cli::client::keep_alive(keeper, id, |_| {}).await;
    });
    Ok(granted.id)
}

/// Runs a health check (2 s at most).
async fn check(check: Option<&Check>) -> bool {
    let Some(check) = check else { return true };
    let run = async {
        match check {
            Check::Tcp(addr) => tokio::net::TcpStream::connect(addr).await.is_ok(),
            Check::Command(command) => tokio::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .await
                .is_ok_and(|status| status.success()),
            Check::Http(url) => http_ok(url).await,
        }
    };
    tokio::time::timeout(Duration::from_secs(2), run).await.unwrap_or(false)
}

/// A plain-HTTP GET answered with a 2xx status.
async fn http_ok(url: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(rest) = url.strip_prefix("http://") else { return false };
    let (authority, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let Ok(mut stream) = tokio::net::TcpStream::connect(authority).await else { return false };
    let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    if stream.read_exact(&mut head).await.is_err() {
        return false;
    }
    head.starts_with(b"HTTP/1.") && head[9] == b'2'
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballot_gossip::news::Meta;

    fn member(state: State) -> Member {
        Member { incarnation: 0, state, since: 0, meta: Meta::default() }
    }

    #[test]
    fn the_two_live_members_after_the_failed_one_reap_it_wrapping_around() {
        let members: BTreeMap<String, Member> =
            [("a", State::Alive), ("b", State::Dead), ("c", State::Suspect), ("d", State::Alive), ("e", State::Alive)]
                .into_iter()
                .map(|(name, state)| (name.to_string(), member(state)))
                .collect();
        assert_eq!(reapers(&members, "b"), vec!["d", "e"]);
        assert_eq!(reapers(&members, "e"), vec!["a", "d"]);
    }

    #[test]
    fn service_files_and_durations_are_checked() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("soon").is_err());
        let dir = std::env::temp_dir().join(format!("ballot-services-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("services.toml");
        std::fs::write(
            &path,
            "[[service]]\nname = \"web\"\nport = 8080\ncheck = { tcp = \"127.0.0.1:8080\" }\ninterval = \"1s\"\n",
        )
        .unwrap();
        let services = load(&path).unwrap();
        assert!(matches!(services[0].check, Some(Check::Tcp(_))));
        std::fs::write(&path, "[[service]]\nname = \"a/b\"\nport = 1\n").unwrap();
        assert!(load(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
