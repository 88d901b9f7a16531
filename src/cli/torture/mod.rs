//! `ballot torture`: Jepsen-style fault testing of real processes. A cluster of `ballot serve`
//! (or `etcd`) processes on loopback, each member's peer and client traffic through a
//! fault-injecting proxy ([`net`]); clients recording a history ([`workload`]); a seeded
//! nemesis killing, pausing, partitioning, replacing members ([`nemesis`]). At the end every
//! fault is healed, the members must converge to equal `HashKV`, and the history is checked:
//! by the linearizability checker (register, kv) or the workload's own checks (lock, lease,
//! zk-lock: kazoo's lock recipe over the ZooKeeper front end, [`zk_lock`]).

mod causal;
mod cluster;
mod nemesis;
mod net;
mod workload;
mod zk_lock;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ballot_check::{pair_operations, Verdict};
use ballot_proto::etcdserverpb as pb;
use ballot_proto::etcdserverpb::{
    kv_client::KvClient, maintenance_client::MaintenanceClient, watch_client::WatchClient,
};

use crate::cli::connect::{Consistency, Dialer, Endpoints};
use cluster::{Cluster, Security, Target, TlsFiles};
use nemesis::{Kind, Rng};
use workload::{Recorder, Workload};

/// Arguments of `ballot torture`.
#[derive(clap::Args, Debug)]
pub struct TortureArgs {
    /// Members: 3 or 5.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Seconds of faults (the heal, convergence and check come after).
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 6)]
    clients: usize,
    /// Keys the register and kv workloads use.
    #[arg(long, default_value_t = 4)]
    keys: usize,
    /// register, kv, lock, lease, zk-lock or causal (reads through random members in causal
    /// sessions; with the global `--consistency serializable` the same reads without the
    /// session's revision, which the checker must catch).
    #[arg(long, default_value = "register")]
    workload: String,
    /// Faults: kill, pause, partition, leader, member, clock (comma-separated), all, or none.
    /// `clock` needs libfaketime; `all` includes it where libfaketime is installed.
    #[arg(long, default_value = "all")]
    nemesis: String,
    /// Seed of the nemesis's and the clients' choices (default: from the clock, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Where the history, the nemesis log, the members' logs and any violation's timeline go
    /// (default: ./torture-SEED).
    #[arg(long)]
    out: Option<PathBuf>,
    /// ballot (this executable) or etcd (Debian's `etcd` on the PATH: a check of the harness
    /// itself, and a comparison).
    #[arg(long, default_value = "ballot", value_parser = ["ballot", "etcd"])]
    target: String,
    /// Start the members with `--lease-reads`: the leader answers linearizable reads from its
    /// lease, which the pause nemesis (SIGSTOP past the lease) puts to the test.
    #[arg(long)]
    lease_reads: bool,
    /// The members' consensus engine: raft, paxos or paxos:Q1/Q2 (Multi-Paxos has a fixed
    /// membership, so `all` leaves out the member nemesis).
    #[arg(long, default_value = "raft")]
    consensus: String,
    /// Start the members with `--inject-bug BUG` (e.g. `stale-reads`), to show that torture
    /// catches a broken server (needs a build with `--features fault-injection`).
    #[cfg(feature = "fault-injection")]
    #[arg(long)]
    inject_bug: Option<String>,
}

/// Runs a torture test; exit 1 on a violation or a divergence. With the global `--cacert`,
/// `--cert` and `--key` the members' client ports use TLS (the certificate serves both the
/// members and the clients); with `--user` authentication is on and the workload runs as that
/// user (`root` gets the same password, for the harness).
pub fn run(endpoints: Endpoints, args: TortureArgs) -> anyhow::Result<ExitCode> {
    if ![3, 5].contains(&args.nodes) {
        bail!("--nodes must be 3 or 5");
    }
    if args.clients == 0 || args.keys == 0 {
        bail!("--clients and --keys must be at least 1");
    }
    let workload = Workload::parse(&args.workload)?;
    // Clock faults need libfaketime, and ballot (etcd runs as it is).
    let libfaketime = cluster::find_libfaketime().filter(|_| args.target == "ballot");
    let consensus = ballot_node::Consensus::parse(&args.consensus).map_err(anyhow::Error::msg)?;
    let paxos = consensus != ballot_node::Consensus::Raft;
    if paxos && args.target == "etcd" {
        bail!("--consensus is ballot's own: etcd runs Raft");
    }
    let mut kinds = Kind::parse_list(&args.nemesis, libfaketime.is_some())?;
    if paxos {
        if args.nemesis.split(',').any(|word| word.trim() == "member") {
            bail!("the member nemesis changes membership, which --consensus paxos does not support");
        }
        kinds.retain(|kind| *kind != Kind::Member);
    }
    if args.nemesis.split(',').any(|word| word.trim() == "all") && libfaketime.is_none() && args.target == "ballot" {
        println!("torture: no clock faults in this run (libfaketime is not installed: apt-get install libfaketime)");
    }
    let libfaketime = libfaketime.filter(|_| kinds.contains(&Kind::Clock));
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from(format!("torture-{seed}")));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut extra: Vec<String> = Vec::new();
    if paxos {
        extra.extend(["--consensus".to_string(), consensus.to_string()]);
    }
    if args.lease_reads {
        extra.push("--lease-reads".to_string());
    }
    #[cfg(feature = "fault-injection")]
    if let Some(bug) = &args.inject_bug {
        extra.extend(["--inject-bug".to_string(), bug.clone()]);
    }
    if args.lease_reads && args.target == "etcd" {
        bail!("--lease-reads is ballot's own: etcd always confirms reads with a heartbeat round");
    }
    let security = security(&endpoints)?;
    let target = match args.target.as_str() {
        "etcd" => Target::Etcd,
        _ => Target::Ballot(std::env::current_exe()?, extra),
    };
    println!(
        "torture: {} {} members{}, {} clients, workload {}{}, nemesis {}, {} s, seed {seed}; output in {}",
        args.nodes,
        args.target,
        match (&security.tls, &security.user) {
            (None, None) => String::new(),
            (tls, user) => format!(
                " ({}{}{})",
                if tls.is_some() { "TLS" } else { "" },
                if tls.is_some() && user.is_some() { ", " } else { "" },
                user.as_ref().map_or(String::new(), |(user, _)| format!("auth as {user}"))
            ),
        },
        args.clients,
        args.workload,
        match endpoints.consistency {
            Some(consistency) => format!(" ({consistency:?} reads)").to_lowercase(),
            None => String::new(),
        },
        args.nemesis,
        args.duration,
        out.display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // The causal workload reads causally unless told otherwise; the others as asked (their
    // reads are linearizable by default, which the linearizability checker expects).
    let consistency = endpoints.consistency.unwrap_or(match workload {
        Workload::Causal => Consistency::Causal,
        _ => Consistency::Linearizable,
    });
    runtime.block_on(torture(args, consistency, workload, kinds, seed, out, target, security, libfaketime))
}

/// TLS and auth for the run, from the global client flags.
fn security(endpoints: &Endpoints) -> anyhow::Result<Security> {
    let tls = match (&endpoints.cacert, &endpoints.cert, &endpoints.key) {
        (None, None, None) => None,
        (Some(ca), Some(cert), Some(key)) => Some(TlsFiles {
            ca: std::fs::canonicalize(ca).with_context(|| format!("{}", ca.display()))?,
            cert: std::fs::canonicalize(cert).with_context(|| format!("{}", cert.display()))?,
            key: std::fs::canonicalize(key).with_context(|| format!("{}", key.display()))?,
        }),
        _ => bail!(
            "torture over TLS needs --cacert, --cert and --key together (the members serve the certificate, \
             and the clients present it)"
        ),
    };
    let dialer = Dialer::new(endpoints)?;
    let user = dialer.credentials().map(|(user, password)| (user.to_string(), password.to_string()));
    if user.as_ref().is_some_and(|(_, password)| password.is_empty()) {
        bail!("torture with --user needs a password (root gets the same one)");
    }
    // The workload's clients log in themselves (Session); the shared dialer logs in as nobody.
    Ok(Security { tls, user, dialer: dialer.anonymous() })
}

/// What the run found.
struct Findings {
    ops: usize,
    faults: usize,
    /// Each fault as an interval, for the report's plots.
    held: Vec<ballot_check::report::Fault>,
    violations: Vec<String>,
    linearizable: Option<bool>,
}

#[allow(clippy::too_many_arguments)]
async fn torture(
    args: TortureArgs,
    consistency: Consistency,
    workload: Workload,
    kinds: Vec<Kind>,
    seed: u64,
    out: PathBuf,
    target: Target,
    security: Security,
    libfaketime: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let mut cluster = Cluster::start(target, args.nodes, out.join("members"), security, libfaketime).await?;
    let mut log = std::fs::File::create(out.join("nemesis.log"))?;
    let recorder = Arc::new(Recorder::new());
    let mut note = |recorder: &Recorder, line: &str| {
        let line = format!("{:>9.3} s  {line}", recorder.now() as f64 / 1e9);
        let _ = writeln!(log, "{line}");
        println!("  {line}");
    };
    wait_for_leader(&cluster, Duration::from_secs(30)).await?;
    if workload == Workload::Lock {
        put(&cluster, workload::FENCE_KEY, workload::token_text(0).as_bytes()).await?;
    }
    if workload == Workload::ZkLock {
        if matches!(cluster.target, Target::Etcd) {
            bail!("the zk-lock workload needs ballot's ZooKeeper front end (etcd has none)");
        }
        let address = cluster.nodes[0].zk_proxy;
        tokio::task::spawn_blocking(move || zk_lock::setup(address)).await??;
    }
    note(&recorder, &format!("cluster up: {}", names_and_ids(&cluster)));

    let stop = Arc::new(AtomicBool::new(false));
    let ctx = workload::Context {
        workload,
        proxies: cluster.nodes.iter().map(|node| node.client_proxy).collect(),
        zk_proxies: cluster.nodes.iter().map(|node| node.zk_proxy).collect(),
        clients: args.clients,
        keys: args.keys,
        stop: stop.clone(),
        recorder: recorder.clone(),
        seed,
        dialer: match &cluster.security.user {
            Some((user, password)) => cluster.security.dialer.as_user(user, password),
            None => cluster.security.dialer.clone(),
        }
        .with_consistency(consistency),
    };
    let clients: Vec<_> =
        (0..args.clients).map(|client| tokio::spawn(workload::run_client(ctx.clone(), client))).collect();

    let mut rng = Rng::new(seed);
    let mut faults = 0;
    let mut held = Vec::new();
    let mut violations = Vec::new();
    let started = Instant::now();
    let end = Duration::from_secs(args.duration);
    while started.elapsed() < end {
        tokio::time::sleep(rng.millis(1000, 3000).min(end.saturating_sub(started.elapsed()))).await;
        if started.elapsed() >= end {
            break;
        }
        if let Some(crashed) = crashed_members(&mut cluster) {
            violations.push(crashed);
            break;
        }
        if kinds.is_empty() {
            continue;
        }
        let kind = kinds[rng.below(kinds.len())];
        // A bad clock is held longer: what it breaks (a lease on a slow clock) shows once a new
        // leader has been elected and has taken writes.
        let hold = if kind == Kind::Clock { rng.millis(3000, 8000) } else { rng.millis(1000, 5000) };
        let start_ns = recorder.now();
        if kind == Kind::Partition && rng.below(6) == 0 {
            let what = nemesis::flap(&mut cluster, &mut rng, hold).await;
            faults += 1;
            note(&recorder, &what);
            held.push(ballot_check::report::Fault { start_ns, end_ns: recorder.now(), what });
            continue;
        }
        let applied = nemesis::apply(&mut cluster, kind, &mut rng).await;
        faults += 1;
        note(&recorder, &applied.what);
        tokio::time::sleep(hold).await;
        nemesis::undo(&mut cluster, &applied).await?;
        note(&recorder, "healed");
        held.push(ballot_check::report::Fault { start_ns, end_ns: recorder.now(), what: applied.what.clone() });
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = tokio::time::timeout(Duration::from_secs(15), client).await;
    }
    // Heal everything: links, paused and killed members.
    cluster.net.heal();
    for i in 0..cluster.nodes.len() {
        cluster.skew_clock(i, 0, 1.0)?;
        cluster.resume(i);
        cluster.restart(i)?;
    }
    note(&recorder, "all faults healed; waiting for the members to converge");
    if let Some(crashed) = crashed_members(&mut cluster) {
        violations.push(crashed);
    }
    match converge(&cluster, Duration::from_secs(90)).await {
        Ok(line) => note(&recorder, &line),
        Err(error) => violations.push(format!("divergence: {error:#}")),
    }

    let events = recorder.events();
    let mut history = std::io::BufWriter::new(std::fs::File::create(out.join("history.jsonl"))?);
    for event in &events {
        writeln!(history, "{}", event.to_line())?;
    }
    history.flush()?;
    let operations = pair_operations(&events).map_err(|error| anyhow::anyhow!("pairing the history: {error}"))?;
    let mut linearizable = None;
    match workload {
        Workload::Register | Workload::Kv => {
            let model = if workload == Workload::Kv {
                ballot_check::model::RegisterModel::kv()
            } else {
                ballot_check::model::RegisterModel::register()
            };
            match ballot_check::check(&model, &operations, ballot_check::Limits::default()) {
                Verdict::Linearizable => linearizable = Some(true),
                Verdict::NotLinearizable(violation) => {
                    linearizable = Some(false);
                    let path = out.join("violation.html");
                    std::fs::write(&path, ballot_check::html::render_timeline(&violation))?;
                    violations.push(format!(
                        "key {}: no linearization; {} operation(s) could not be placed; timeline in {}",
                        violation.key,
                        violation.unplaced.len(),
                        path.display()
                    ));
                }
                Verdict::Unknown { key } => {
                    violations.push(format!("the checker's search limit was reached on key {key}"))
                }
            }
        }
        Workload::Lock => {
            let fences = fence_history(&cluster).await.context("reading the fence key's history")?;
            let found = workload::check_lock(&recorder, &fences);
            linearizable = Some(found.is_empty());
            violations.extend(found);
        }
        Workload::ZkLock => {
            // A hold counts as certain while a reply came less than half a session timeout
            // before it ended (renewals come every third of it).
            let certain = Duration::from_millis(zk_lock::SESSION_TIMEOUT_MS as u64 / 2);
            let mut found = workload::check_holds(&recorder, &[], certain);
            found.extend(zk_lock::check_fences(&recorder.fences.lock().expect("fences")));
            let address = cluster.nodes[0].zk_proxy;
            let within = Duration::from_millis(zk_lock::SESSION_TIMEOUT_MS as u64) + Duration::from_secs(30);
            if let Err(stuck) = tokio::task::spawn_blocking(move || zk_lock::wait_released(address, within)).await? {
                found.push(stuck);
            }
            linearizable = Some(found.is_empty());
            violations.extend(found);
        }
        Workload::Causal => {
            let mut found = ballot_check::session::check_sessions(&operations, &ballot_check::session::Guarantee::ALL);
            found.extend(ballot_check::session::check_snapshots(&operations));
            if !found.is_empty() {
                let path = out.join("violation.html");
                std::fs::write(&path, ballot_check::html::render_session_violations(&operations, &found))?;
                for violation in found.iter().take(10) {
                    let name = violation.guarantee.map_or("snapshot", |guarantee| guarantee.name());
                    violations.push(format!(
                        "{name} broken: {}; timeline in {}",
                        violation.explanation,
                        path.display()
                    ));
                }
                if found.len() > 10 {
                    violations.push(format!("... {} more session violation(s)", found.len() - 10));
                }
            }
            linearizable = Some(found.is_empty());
        }
        Workload::Lease => {
            let remaining = remaining_keys(&cluster, b"lease/").await.context("reading the lease keys")?;
            let found = workload::check_lease(&recorder, &remaining);
            linearizable = Some(found.is_empty());
            violations.extend(found);
        }
    }
    let findings = Findings { ops: operations.len(), faults, held, violations, linearizable };
    cluster.stop().await;
    let verdict = if workload == Workload::Causal { "causal" } else { "linearizable" };
    report(&findings, &out, seed, verdict, &events, &args)?;
    if findings.violations.is_empty() {
        cluster.remove_data();
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(1))
    }
}

fn names_and_ids(cluster: &Cluster) -> String {
    cluster.nodes.iter().map(|node| format!("{}={:x}", node.name, node.id)).collect::<Vec<_>>().join(" ")
}

/// A member whose process exited by itself (not killed by the nemesis): a crash.
fn crashed_members(cluster: &mut Cluster) -> Option<String> {
    for i in 0..cluster.nodes.len() {
        if let Some(status) = cluster.exited(i) {
            return Some(format!(
                "member {} exited by itself ({status}); see {}",
                cluster.nodes[i].name,
                cluster.log_path(i).display()
            ));
        }
    }
    None
}

async fn wait_for_leader(cluster: &Cluster, within: Duration) -> anyhow::Result<usize> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(leader) = cluster.leader().await {
            return Ok(leader);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("no leader within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Writes through the leader's real port (the control plane); returns the revision.
async fn put(cluster: &Cluster, key: &[u8], value: &[u8]) -> anyhow::Result<i64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let leader = wait_for_leader(cluster, Duration::from_secs(30)).await?;
        if let Some(channel) = cluster.control(leader).await {
            let request = pb::PutRequest { key: key.to_vec(), value: value.to_vec(), ..Default::default() };
            if let Ok(Ok(response)) =
                tokio::time::timeout(Duration::from_secs(5), KvClient::new(channel).put(request)).await
            {
                return Ok(response.into_inner().header.map_or(0, |h| h.revision));
            }
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("could not write {} within 30 s", String::from_utf8_lossy(key));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until every member has applied a fresh write, then compares their `HashKV` at its
/// revision.
async fn converge(cluster: &Cluster, within: Duration) -> anyhow::Result<String> {
    let revision = put(cluster, b"torture-converged", b"1").await?;
    let deadline = tokio::time::Instant::now() + within;
    let mut hashes = Vec::new();
    for i in 0..cluster.nodes.len() {
        loop {
            let answer = async {
                let channel = cluster.control(i).await?;
                let mut client = MaintenanceClient::new(channel);
                let call = client.hash_kv(pb::HashKvRequest { revision });
                tokio::time::timeout(Duration::from_secs(10), call).await.ok()?.ok().map(|r| r.into_inner())
            }
            .await;
            if let Some(answer) = answer {
                hashes.push((cluster.nodes[i].name.clone(), answer.hash, answer.compact_revision));
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("member {} did not reach revision {revision} within {within:?}", cluster.nodes[i].name);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let first = hashes[0].1;
    let listed = hashes.iter().map(|(name, hash, _)| format!("{name}={hash:08x}")).collect::<Vec<_>>().join(" ");
    if hashes.iter().any(|(_, hash, _)| *hash != first) {
        bail!("HashKV at revision {revision} differs: {listed}");
    }
    Ok(format!("converged: HashKV at revision {revision} equal on every member ({listed})"))
}

/// Every value the fence key took, in revision order (a watch from revision 1: nothing is
/// compacted during a run).
async fn fence_history(cluster: &Cluster) -> anyhow::Result<Vec<i64>> {
    let leader = wait_for_leader(cluster, Duration::from_secs(30)).await?;
    let channel = cluster.control(leader).await.context("the leader does not answer")?;
    let current = KvClient::new(channel.clone())
        .range(pb::RangeRequest { key: workload::FENCE_KEY.to_vec(), ..Default::default() })
        .await?
        .into_inner();
    let last = current.kvs.first().map_or(0, |kv| kv.mod_revision);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: workload::FENCE_KEY.to_vec(),
            start_revision: 1,
            ..Default::default()
        })),
    })
    .await?;
    let mut stream =
        WatchClient::new(channel).watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
    let mut values = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Ok(Some(message)) =
        tokio::time::timeout_at(deadline, stream.message()).await.map_err(|_| ()).and_then(|m| m.map_err(|_| ()))
    {
        let mut done = false;
        for event in message.events {
            if let Some(kv) = event.kv {
                values.push(std::str::from_utf8(&kv.value).ok().and_then(|v| v.parse().ok()).unwrap_or(-1));
                done |= kv.mod_revision >= last;
            }
        }
        if done {
            break;
        }
    }
    drop(tx);
    Ok(values)
}

/// The keys left under `prefix`.
async fn remaining_keys(cluster: &Cluster, prefix: &[u8]) -> anyhow::Result<Vec<String>> {
    let leader = wait_for_leader(cluster, Duration::from_secs(30)).await?;
    let channel = cluster.control(leader).await.context("the leader does not answer")?;
    let request = pb::RangeRequest {
        key: prefix.to_vec(),
        range_end: ballot_server::api::prefix_end(prefix),
        keys_only: true,
        ..Default::default()
    };
    let response = KvClient::new(channel).range(request).await?.into_inner();
    Ok(response.kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key).into_owned()).collect())
}

/// Writes and prints the summary; `verdict` names what the run judged (`linearizable`, or
/// `causal` for the causal workload, whose histories need not be linearizable).
fn report(
    findings: &Findings,
    out: &std::path::Path,
    seed: u64,
    verdict_of: &str,
    events: &[ballot_check::Event],
    args: &TortureArgs,
) -> anyhow::Result<()> {
    let mut summary = String::new();
    for violation in &findings.violations {
        summary.push_str(&format!("VIOLATION: {violation}\n"));
    }
    summary.push_str(&format!("seed {seed}; history, nemesis log and member logs in {}\n", out.display()));
    summary.push_str(&format!("report: {}\n", out.join("report.html").display()));
    let verdict = match (findings.linearizable, findings.violations.is_empty()) {
        (Some(true), true) => "true",
        (Some(false), _) | (_, false) => "false",
        (None, true) => "unknown",
    };
    // The verdict stays the last line: scripts and tests read it there.
    let verdict_line = format!("{verdict_of}: {verdict}, {} ops, {} faults", findings.ops, findings.faults);
    summary.push_str(&format!("{verdict_line}\n"));
    let mut links = vec![("nemesis.log".to_string(), "the nemesis's log".to_string())];
    if out.join("violation.html").exists() {
        links.insert(0, ("violation.html".to_string(), "the violation's timeline".to_string()));
    }
    let page = ballot_check::report::render(&ballot_check::report::RunReport {
        title: format!(
            "ballot torture: {} workload against {}, {} members, seed {seed}",
            args.workload, args.target, args.nodes
        ),
        verdict: verdict_line,
        passed: findings.violations.is_empty(),
        violations: findings.violations.clone(),
        events,
        faults: findings.held.clone(),
        marks: Vec::new(),
        links,
        time_unit: "s".to_string(),
    });
    std::fs::write(out.join("report.html"), page)?;
    std::fs::write(out.join("summary.txt"), &summary)?;
    print!("{summary}");
    Ok(())
}
