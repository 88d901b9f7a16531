//! `ballot dev`: a local cluster of child processes on loopback, for trying ballot out.
//!
//! Members are `n1`, `n2`, … with client ports 2379, 22379, 32379, …, peer ports one above
//! (the layout etcd's own local cluster uses) and ZooKeeper ports 2181, 22181, 32181, ….
//! Data and logs go under `--data-dir`; a second
//! run restarts the same cluster with its data. Ctrl-C stops every member gracefully.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;

/// Flags of `ballot dev`.
#[derive(Args, Debug)]
pub struct DevArgs {
    /// Members to start (1 to 6).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Where the members keep their data and logs.
    #[arg(long, default_value = "dev.ballot")]
    pub data_dir: PathBuf,
    /// Exit after this many seconds (for scripts); default: run until Ctrl-C.
    #[arg(long)]
    pub duration: Option<u64>,
    /// The consensus engine: raft (the default), paxos or paxos:Q1/Q2 (see `ballot serve
    /// --consensus`). A data dir keeps the engine it was created with.
    #[arg(long, default_value = "raft")]
    pub consensus: String,
}

/// The ZooKeeper port of member `i`: 2181, 22181, 32181, …
fn zk_port(i: usize) -> u16 {
    client_port(i) - 198
}

fn client_port(i: usize) -> u16 {
    if i == 0 {
        2379
    } else {
        (i as u16) * 10000 + 12379
    }
}

/// `GET path` on a member's client port; the body, if the member answered.
pub fn http_get(address: &str, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect_timeout(&address.parse().ok()?, Duration::from_millis(300)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

fn terminate(children: &mut [Child]) {
    for child in children.iter() {
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for child in children.iter_mut() {
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Starts the cluster and watches it until Ctrl-C.
pub fn run(args: DevArgs) -> anyhow::Result<std::process::ExitCode> {
    if !(1..=6).contains(&args.nodes) {
        bail!("--nodes must be between 1 and 6");
    }
    std::fs::create_dir_all(&args.data_dir)?;
    let names: Vec<String> = (1..=args.nodes).map(|i| format!("n{i}")).collect();
    let peer = |i: usize| format!("http://127.0.0.1:{}", client_port(i) + 1);
    let client = |i: usize| format!("http://127.0.0.1:{}", client_port(i));
    let initial_cluster: Vec<String> =
        names.iter().enumerate().map(|(i, name)| format!("{name}={}", peer(i))).collect();
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    println!(
        "ballot dev: {} member(s) on loopback running {}, data and logs in {}",
        args.nodes,
        args.consensus,
        args.data_dir.display()
    );
    for (i, name) in names.iter().enumerate() {
        let log_path = args.data_dir.join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        let child = Command::new(&exe)
            .arg("serve")
            .args(["--name", name])
            .arg("--data-dir")
            .arg(args.data_dir.join(name))
            .args(["--listen-client-urls", &client(i), "--advertise-client-urls", &client(i)])
            .args(["--listen-peer-urls", &peer(i), "--initial-advertise-peer-urls", &peer(i)])
            .args(["--initial-cluster", &initial_cluster.join(",")])
            .args(["--listen-zk-urls", &format!("127.0.0.1:{}", zk_port(i))])
            .args(["--consensus", &args.consensus])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        println!(
            "  {name}  client {}  peer {}  zookeeper 127.0.0.1:{}  log {}",
            client(i),
            peer(i),
            zk_port(i),
            log_path.display()
        );
        children.push(child);
    }
    let endpoints: Vec<String> = (0..args.nodes).map(|i| format!("127.0.0.1:{}", client_port(i))).collect();
    println!("try:  etcdctl --endpoints={} put hello world", endpoints.join(","));
    println!("      etcdctl --endpoints={} get hello", endpoints[0]);
    let zk_hosts: Vec<String> = (0..args.nodes).map(|i| format!("127.0.0.1:{}", zk_port(i))).collect();
    println!("      zkCli.sh -server {} ls /", zk_hosts.join(","));
    println!("console: http://{}/ui (every member serves one)", endpoints[0]);
    println!("Ctrl-C stops the cluster.");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::spawn(move || {
        runtime.block_on(super::serve::shutdown_signal());
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let started = Instant::now();
    let mut last_leader = String::new();
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        if args.duration.is_some_and(|seconds| started.elapsed() >= Duration::from_secs(seconds)) {
            break;
        }
        for (i, child) in children.iter_mut().enumerate() {
            if let Ok(Some(status)) = child.try_wait() {
                eprintln!(
                    "{} exited ({status}); see {}",
                    names[i],
                    args.data_dir.join(format!("{}.log", names[i])).display()
                );
                terminate(&mut children);
                return Ok(std::process::ExitCode::from(1));
            }
        }
        let leader = endpoints.iter().zip(&names).find_map(|(address, name)| {
            let body = http_get(address, "/status")?;
            let status: serde_json::Value = serde_json::from_str(&body).ok()?;
            status["is_leader"].as_bool()?.then(|| format!("{name} (term {})", status["term"]))
        });
        if let Some(leader) = leader {
            if leader != last_leader {
                println!("leader: {leader}");
                last_leader = leader;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    println!("stopping the cluster");
    terminate(&mut children);
    Ok(std::process::ExitCode::SUCCESS)
}
