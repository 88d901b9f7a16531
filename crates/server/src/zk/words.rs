//! The four-letter words: a new connection whose first four bytes spell one gets a text answer
//! and is closed. Every word is enabled (ZooKeeper enables only `srvr` unless told otherwise;
//! kazoo's `server_version()` needs `envi`, monitoring needs `mntr`).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::Front;

/// The version ballot reports to ZooKeeper clients: the protocol it speaks, then its own.
pub fn version() -> String {
    format!("3.8.0-ballot-{}, built on ballot", env!("CARGO_PKG_VERSION"))
}

/// `/zookeeper/config`'s data: one line per voting member as ZooKeeper writes its dynamic
/// configuration (`server.N=host:peerport:peerport:participant`, numbered in member order),
/// then the member table's version.
pub fn config_text(front: &Front) -> String {
    let mut members = front.handle.members.list();
    members.sort_by_key(|member| member.id);
    let mut text = String::new();
    for (n, member) in members.iter().enumerate() {
        let peer = member.peer_urls.first().map(|url| url.split("://").last().unwrap_or(url).to_string());
        let role = if member.is_learner { "observer" } else { "participant" };
        let peer = peer.unwrap_or_default();
        let _ = writeln!(
            text,
            "server.{}={peer}:{peer_port}:{role}",
            n + 1,
            peer_port = peer.rsplit(':').next().unwrap_or("")
        );
    }
    let _ = write!(text, "version=0");
    text
}

/// The answer to one word.
pub async fn answer(front: &Front, word: &str) -> String {
    // The liveness probes answer without looking at anything (monitors call them often).
    match word {
        "ruok" => return "imok".into(),
        "isro" => return "rw".into(),
        _ => {}
    }
    let revision = front.handle.reader().revision().unwrap_or(0);
    let leader = front.handle.query(|core| core.replica.engine().role()).await;
    let mode = match leader {
        Ok(ballot_raft::Role::Leader) => "leader",
        Ok(_) => "follower",
        Err(_) => "standalone",
    };
    // ZooKeeper's count holds the root twice (as "" and "/"): a fresh tree has 5.
    let nodes = front.handle.reader().znode_descendants("/").unwrap_or(0) + 2;
    let connections = front.connections().len();
    let latency = *front.latency.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let average = if latency.count == 0 { 0.0 } else { latency.total as f64 / latency.count as f64 };
    let (watching, paths, watches) = front.watches.summary();
    match word {
        "srvr" | "stat" => {
            let mut text = format!("Zookeeper version: {}\n", version());
            if word == "stat" {
                text.push_str("Clients:\n");
                for entry in front.connections().values() {
                    let _ = writeln!(
                        text,
                        " /{}[1](queued=0,recved={},sent={})",
                        entry.peer,
                        entry.received.load(Ordering::Relaxed),
                        entry.sent.load(Ordering::Relaxed)
                    );
                }
                text.push('\n');
            }
            let _ = write!(
                text,
                "Latency min/avg/max: {}/{:.4}/{}\nReceived: {}\nSent: {}\nConnections: {connections}\nOutstanding: 0\nZxid: 0x{revision:x}\nMode: {mode}\nNode count: {nodes}\n",
                latency.min,
                average,
                latency.max,
                front.received.load(Ordering::Relaxed),
                front.sent.load(Ordering::Relaxed),
            );
            text
        }
        "mntr" => {
            let sessions = front.handle.query(|core| core.replica.store().leases().map(|l| l.len()).unwrap_or(0)).await.unwrap_or(0);
            let lines: [(&str, String); 16] = [
                ("zk_version", version()),
                ("zk_server_state", mode.into()),
                ("zk_avg_latency", format!("{average:.4}")),
                ("zk_max_latency", latency.max.to_string()),
                ("zk_min_latency", latency.min.to_string()),
                ("zk_packets_received", front.received.load(Ordering::Relaxed).to_string()),
                ("zk_packets_sent", front.sent.load(Ordering::Relaxed).to_string()),
                ("zk_num_alive_connections", connections.to_string()),
                ("zk_outstanding_requests", "0".into()),
                ("zk_uptime", front.started.elapsed().as_millis().to_string()),
                ("zk_znode_count", nodes.to_string()),
                ("zk_watch_count", watches.to_string()),
                ("zk_ephemerals_count", "0".into()),
                ("zk_approximate_data_size", "0".into()),
                ("zk_global_sessions", sessions.to_string()),
                ("zk_local_sessions", "0".into()),
            ];
            lines.iter().map(|(key, value)| format!("{key}\t{value}\n")).collect()
        }
        "conf" => format!(
            "clientPort=0\ndataDir=\ntickTime=2000\nmaxClientCnxns=0\nminSessionTimeout={}\nmaxSessionTimeout={}\nserverId={:x}\n",
            super::TIMEOUT_MIN_MS,
            super::TIMEOUT_MAX_MS,
            front.handle.member_id
        ),
        "cons" => {
            let mut text = String::new();
            for entry in front.connections().values() {
                let _ = writeln!(
                    text,
                    " /{}[1](queued=0,recved={},sent={},sid=0x{:x},to={})",
                    entry.peer,
                    entry.received.load(Ordering::Relaxed),
                    entry.sent.load(Ordering::Relaxed),
                    entry.session,
                    entry.timeout_ms
                );
            }
            text.push('\n');
            text
        }
        "wchs" => format!("{watching} connections watching {paths} paths\nTotal watches:{watches}\n"),
        "envi" => format!(
            "Environment:\nzookeeper.version={}\nhost.name=localhost\nos.name={}\nos.arch={}\nuser.dir={}\n",
            version(),
            std::env::consts::OS,
            std::env::consts::ARCH,
            std::env::current_dir().map(|dir| dir.display().to_string()).unwrap_or_default()
        ),
        "dirs" => "datadir_size: 0\nlogdir_size: 0\n".into(),
        other => format!("{other} is not executed because it is not supported by ballot.\n"),
    }
}
