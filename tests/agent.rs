//! `ballot agent` as real processes on loopback: a fleet of twenty that forms, detects kills,
//! survives a pause and agrees; encryption that shuts out an agent without the key; and
//! service registration through a real three-member ballot cluster, with a killed agent's
//! entries removed by the members gossip told of its death.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_ports, Cluster};

/// One agent process.
struct Agent {
    name: String,
    gossip: String,
    rpc: String,
    log: PathBuf,
    child: Child,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_agent(dir: &Path, name: &str, ports: (u16, u16), join: Option<&str>, extra: &[&str]) -> Agent {
    let gossip = format!("127.0.0.1:{}", ports.0);
    let rpc = format!("127.0.0.1:{}", ports.1);
    let log = dir.join(format!("{name}.log"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_ballot"));
    command.args(["agent", "--node", name, "--bind", &gossip, "--rpc-addr", &rpc]).args(extra);
    if let Some(join) = join {
        command.args(["--join", join]);
    }
    // One open file for both streams: two opens of it would each keep their own offset, and
    // the one's lines would overwrite the other's.
    let file = std::fs::File::create(&log).unwrap();
    let child = command.stdout(file.try_clone().unwrap()).stderr(Stdio::from(file)).spawn().unwrap();
    Agent { name: name.to_string(), gossip, rpc, log, child }
}

/// `ballot agent members --json` of the agent at `rpc`: name → status.
fn members(rpc: &str) -> Option<std::collections::BTreeMap<String, String>> {
    let output = Command::new(env!("CARGO_BIN_EXE_ballot"))
        .args(["agent", "members", "--json", "--rpc-addr", rpc])
        .output()
        .ok()?;
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    Some(
        list.as_array()?
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap_or_default().to_string(),
                    m["status"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
    )
}

/// Waits until `done` holds for every agent's view, or panics after `within`.
fn wait_views(
    agents: &[&Agent],
    within: Duration,
    what: &str,
    done: impl Fn(&std::collections::BTreeMap<String, String>) -> bool,
) {
    let deadline = Instant::now() + within;
    loop {
        let pending: Vec<&str> = agents
            .iter()
            .filter(|a| !members(&a.rpc).is_some_and(|view| done(&view)))
            .map(|a| a.name.as_str())
            .collect();
        if pending.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let views: Vec<String> = pending
                .iter()
                .take(2)
                .map(|n| format!("{n}: {:?}", members(&agents.iter().find(|a| a.name == *n).unwrap().rpc)))
                .collect();
            panic!("{what}: not yet at {pending:?} after {within:?}; {views:?}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ballot-agent-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn twenty_agents_form_a_fleet_detect_kills_and_survive_a_pause() {
    let dir = scratch("fleet");
    let ports = free_ports(40);
    let seed = format!("127.0.0.1:{}", ports[0]);
    let agents: Vec<Agent> = (0..20)
        .map(|i| {
            let join = (i > 0).then_some(seed.as_str());
            start_agent(
                &dir,
                &format!("a{i:02}"),
                (ports[2 * i], ports[2 * i + 1]),
                join,
                &["--tag", &format!("slot={i}")],
            )
        })
        .collect();
    let all: Vec<&Agent> = agents.iter().collect();
    wait_views(&all, Duration::from_secs(30), "all twenty alive everywhere", |view| {
        view.len() == 20 && view.values().all(|status| status == "alive")
    });
    // Two killed, one paused for three seconds (under the suspicion timeout: it must refute).
    let mut agents = agents;
    let killed: Vec<String> = [3usize, 11].iter().map(|&i| agents[i].name.clone()).collect();
    for &i in &[3usize, 11] {
        agents[i].child.kill().unwrap();
        agents[i].child.wait().unwrap();
    }
    let paused = agents[7].child.id().to_string();
    Command::new("kill").args(["-STOP", &paused]).status().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    Command::new("kill").args(["-CONT", &paused]).status().unwrap();
    let survivors: Vec<&Agent> = agents.iter().filter(|a| !killed.contains(&a.name)).collect();
    wait_views(&survivors, Duration::from_secs(40), "the killed are failed and the rest alive everywhere", |view| {
        view.iter().all(|(name, status)| if killed.contains(name) { status == "failed" } else { status == "alive" })
    });
}

#[test]
fn an_agent_without_the_key_cannot_join_an_encrypted_fleet() {
    let dir = scratch("encrypt");
    let ports = free_ports(6);
    let key = ["--encrypt", "cg8StVXbQJ0gPvMd9o7yrg=="];
    let first = start_agent(&dir, "k1", (ports[0], ports[1]), None, &key);
    let second = start_agent(&dir, "k2", (ports[2], ports[3]), Some(&first.gossip), &key);
    let stranger = start_agent(&dir, "x", (ports[4], ports[5]), Some(&first.gossip), &[]);
    wait_views(&[&first, &second], Duration::from_secs(20), "the two with the key see each other", |view| {
        view.len() == 2 && view.values().all(|s| s == "alive")
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(members(&stranger.rpc).map(|v| v.len()), Some(1), "the stranger knows only itself");
    assert!(!members(&first.rpc).unwrap().contains_key("x"));
}

#[tokio::test(flavor = "multi_thread")]
async fn services_are_published_in_ballot_and_a_killed_agents_are_removed_by_its_peers() {
    let cluster = Cluster::start("agent-services", 3, &[]);
    cluster.leader(Duration::from_secs(20)).await;
    let dir = scratch("registry");
    // The service is this check: healthy while its flag file exists.
    let flag = dir.join("healthy");
    std::fs::write(&flag, "").unwrap();
    let services = dir.join("services.toml");
    std::fs::write(
        &services,
        format!(
            "[[service]]\nname = \"web\"\nport = 8080\ntags = [\"v1\"]\ncheck = {{ command = \"test -e {}\" }}\ninterval = \"300ms\"\n",
            flag.display()
        ),
    )
    .unwrap();
    let endpoints = (0..3).map(|i| cluster.client_url(i).to_string()).collect::<Vec<_>>().join(",");
    let ports = free_ports(6);
    let mut agents = Vec::new();
    for i in 0..3 {
        let join = (i > 0).then(|| format!("127.0.0.1:{}", ports[0]));
        let extra = ["--services", services.to_str().unwrap(), "--endpoints", endpoints.as_str()];
        agents.push(start_agent(&dir, &format!("s{i}"), (ports[2 * i], ports[2 * i + 1]), join.as_deref(), &extra));
    }
    let mut kv = cluster.kv(0).await;
    wait_keys(&mut kv, &["/services/web/s0", "/services/web/s1", "/services/web/s2"], "all three published").await;
    let entry = kv.range(common::get("/services/web/s1")).await.unwrap().into_inner();
    let value: serde_json::Value = serde_json::from_slice(&entry.kvs[0].value).unwrap();
    assert_eq!((value["node"].as_str(), value["port"].as_u64()), (Some("s1"), Some(8080)));
    assert_ne!(entry.kvs[0].lease, 0, "registered on a lease");

    // The fleet must have formed first: an agent killed before any peer heard of it (its first
    // join can meet a seed not yet listening, and it retries only a second later) is known to
    // nobody, and only its lease can remove its entry.
    let all: Vec<&Agent> = agents.iter().collect();
    wait_views(&all, Duration::from_secs(20), "the three agents see each other", |view| {
        view.len() == 3 && view.values().all(|status| status == "alive")
    });
    // s2 killed: its peers see it fail through gossip and remove its entry.
    agents[2].child.kill().unwrap();
    agents[2].child.wait().unwrap();
    wait_keys(&mut kv, &["/services/web/s0", "/services/web/s1"], "the killed agent's entry removed").await;
    // The reaper logs once its transaction is answered, which may be just after we saw the key go.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(0..2)
        .any(|i| std::fs::read_to_string(&agents[i].log).unwrap().contains("registration(s) of failed member s2"))
    {
        assert!(Instant::now() < deadline, "a peer, not the lease, should have removed it");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A failing check deregisters; a passing one registers again.
    std::fs::remove_file(&flag).unwrap();
    wait_keys(&mut kv, &[], "entries of failing checks removed").await;
    std::fs::write(&flag, "").unwrap();
    wait_keys(&mut kv, &["/services/web/s0", "/services/web/s1"], "entries back once checks pass").await;

    // A graceful leave revokes the agent's lease at once.
    let leave = Command::new(env!("CARGO_BIN_EXE_ballot"))
        .args(["agent", "leave", "--rpc-addr", &agents[1].rpc])
        .status()
        .unwrap();
    assert!(leave.success());
    wait_keys(&mut kv, &["/services/web/s0"], "the leaving agent's entry removed").await;
}

type Kv = ballot_proto::etcdserverpb::kv_client::KvClient<tonic::transport::Channel>;

/// The keys under /services/.
async fn service_keys(kv: &mut Kv) -> Vec<String> {
    let range = ballot_proto::etcdserverpb::RangeRequest {
        key: b"/services/".to_vec(),
        range_end: b"/services0".to_vec(),
        keys_only: true,
        ..Default::default()
    };
    let answer = kv.range(range).await.unwrap().into_inner();
    answer.kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key).into_owned()).collect()
}

/// Waits until the keys under /services/ are `want`, or panics after 30 s.
async fn wait_keys(kv: &mut Kv, want: &[&str], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let have = service_keys(kv).await;
        if have == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: have {have:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
