//! The agent process: the pure [`ballot_gossip::swim::Node`] driven by real time and real
//! sockets. UDP carries probes and gossip; TCP carries push-pulls and anything too large for
//! one datagram (a 4-byte length, then the frame). One task owns the node; the sockets, the
//! control endpoint, the handlers and the service checks talk to it through a channel.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ballot_gossip::codec;
use ballot_gossip::message::{Body, Message};
use ballot_gossip::news::{Query, State, Tags};
use ballot_gossip::swim::{Config, Event, Node};
use ballot_gossip::version_vector::VersionVector;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use super::rpc::Request;
use super::seal::Sealer;
use super::services::Registrar;

/// Milliseconds per tick of the core (its settings are in ticks of this).
pub const TICK_MS: u64 = 10;
/// Largest TCP frame accepted (a push-pull of a large fleet fits many times over).
const MAX_FRAME: usize = 32 << 20;
/// How often an agent alone retries its --join addresses.
const JOIN_RETRY: Duration = Duration::from_secs(1);
/// How long a leaving agent keeps gossiping its goodbye at most.
const LEAVE_PROPAGATE: Duration = Duration::from_secs(3);

/// Everything an agent is started with.
pub struct Settings {
    /// Its name in the fleet.
    pub node: String,
    /// Where it listens (UDP and TCP).
    pub bind: SocketAddr,
    /// Agents to join through.
    pub join: Vec<String>,
    /// Its tags.
    pub tags: Tags,
    /// Gossip encryption.
    pub sealer: Sealer,
    /// The control endpoint.
    pub rpc: SocketAddr,
    /// A command run on every event (serf's event handler).
    pub handler: Option<String>,
    /// The protocol's settings.
    pub config: Config,
    /// Service registration into ballot, if configured.
    pub registrar: Option<Registrar>,
}

/// What reaches the node's task.
enum Input {
    Frame(Vec<u8>),
    Rpc(Request, mpsc::UnboundedSender<serde_json::Value>),
    Respond(Query, Vec<u8>),
    Stop,
}

/// A query this agent asked, collecting answers until its deadline.
struct Asking {
    deadline: Instant,
    answers: BTreeMap<String, String>,
    reply: mpsc::UnboundedSender<serde_json::Value>,
}

/// Runs the agent until it leaves (RPC `leave`, SIGINT or SIGTERM).
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let udp = Arc::new(UdpSocket::bind(settings.bind).await.with_context(|| format!("binding UDP {}", settings.bind))?);
    let tcp = TcpListener::bind(settings.bind).await.with_context(|| format!("binding TCP {}", settings.bind))?;
    let rpc = TcpListener::bind(settings.rpc)
        .await
        .with_context(|| format!("binding the control endpoint {}", settings.rpc))?;
    let addr = settings.bind.to_string();
    let seed = u64::from_le_bytes(random_bytes());
    let mut node = Node::new(settings.config.clone(), &settings.node, &addr, settings.tags.clone(), seed);
    let (inputs, mut input) = mpsc::unbounded_channel();
    tokio::spawn(receive_datagrams(udp.clone(), inputs.clone()));
    tokio::spawn(receive_streams(tcp, inputs.clone()));
    tokio::spawn(serve_rpc(rpc, inputs.clone()));
    tokio::spawn(stop_on_signal(inputs.clone()));
    let mut next_join = Instant::now();
    println!("agent {} listening on {addr} (gossip), {} (control)", settings.node, settings.rpc);
    if let Some(registrar) = &settings.registrar {
        registrar.start(settings.node.clone(), addr.clone());
    }
    let sealer = settings.sealer.clone();
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(TICK_MS));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut monitors: Vec<mpsc::UnboundedSender<serde_json::Value>> = Vec::new();
    let mut asking: BTreeMap<u64, Asking> = BTreeMap::new();
    let mut leaving: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let due = started.elapsed().as_millis() as u64 / TICK_MS;
                while node.now() < due {
                    node.tick();
                }
                // --join is retried until some member answers (the seeds may start later).
                if node.members().len() == 1 && !settings.join.is_empty() && Instant::now() >= next_join {
                    next_join = Instant::now() + JOIN_RETRY;
                    println!("joining through {}", settings.join.join(", "));
                    for seed in &settings.join {
                        node.join(seed);
                    }
                }
                let now = Instant::now();
                let finished: Vec<u64> = asking.iter().filter(|(_, q)| q.deadline <= now).map(|(id, _)| *id).collect();
                for id in finished {
                    let query = asking.remove(&id).expect("listed");
                    let _ = query.reply.send(json!({ "answers": query.answers }));
                }
            }
            Some(message) = input.recv() => match message {
                Input::Frame(bytes) => match sealer.open(&bytes).map(|frame| codec::decode(&frame)) {
                    Some(Ok(message)) => node.step(message),
                    Some(Err(error)) => eprintln!("dropped a frame of {} bytes: {error}", bytes.len()),
                    None => eprintln!("dropped a frame of {} bytes: not sealed with this fleet's key", bytes.len()),
                },
                Input::Rpc(request, reply) => {
                    if let Request::Monitor = request {
                        let _ = reply.send(json!({ "monitoring": node.name() }));
                        monitors.push(reply);
                    } else if let Request::Query { name, payload, timeout_ms } = request {
                        let id = node.query(&name, payload.into_bytes());
                        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
                        asking.insert(id, Asking { deadline, answers: BTreeMap::new(), reply });
                    } else {
                        let leave = matches!(request, Request::Leave);
                        let _ = reply.send(answer(&mut node, request));
                        if leave && leaving.is_none() {
                            leaving = Some(Instant::now());
                        }
                    }
                }
                Input::Respond(query, payload) => node.respond(&query, payload),
                Input::Stop => {
                    if leaving.is_none() {
                        node.leave();
                        leaving = Some(Instant::now());
                    }
                }
            },
        }
        for (to, message) in node.take_messages() {
            send(&udp, &sealer, &to, &message, settings.config.max_message_bytes);
        }
        for event in node.take_events() {
            let line = describe(&node, &event);
            if let Event::Member { name, state, incarnation } = &event {
                println!("{} {name} (incarnation {incarnation})", member_event(*state));
            }
            monitors.retain(|monitor| monitor.send(line.clone()).is_ok());
            match &event {
                Event::QueryResponse { id, responder, payload } => {
                    if let Some(query) = asking.get_mut(id) {
                        query.answers.insert(responder.clone(), String::from_utf8_lossy(payload).into_owned());
                    }
                }
                Event::Query(query) => {
                    let query = query.clone();
                    let inputs = inputs.clone();
                    let handler = settings.handler.clone();
                    tokio::spawn(async move {
                        let output = match handler {
                            Some(handler) => run_handler(&handler, "query", &query.name, &query.payload).await,
                            None => Vec::new(),
                        };
                        let _ = inputs.send(Input::Respond(query, output));
                    });
                }
                Event::Member { name, state: State::Dead | State::Left, .. } => {
                    if let Some(registrar) = &settings.registrar {
                        registrar.member_gone(node.members(), name);
                    }
                    spawn_handler(&settings.handler, &event, &line);
                }
                _ => spawn_handler(&settings.handler, &event, &line),
            }
        }
        if let Some(since) = leaving {
            if node.news_pending() == 0 || since.elapsed() > LEAVE_PROPAGATE {
                if let Some(registrar) = &settings.registrar {
                    registrar.stop().await;
                }
                println!("agent {} left", node.name());
                return Ok(());
            }
        }
    }
}

fn random_bytes() -> [u8; 8] {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the system's random source works");
    bytes
}

/// Answers a control request that needs no waiting.
fn answer(node: &mut Node, request: Request) -> serde_json::Value {
    match request {
        Request::Members => {
            let members: Vec<serde_json::Value> = node
                .members()
                .iter()
                .map(|(name, member)| {
                    json!({
                        "name": name,
                        "addr": member.meta.addr,
                        "status": member.state.name(),
                        "incarnation": member.incarnation,
                        "tags": member.meta.tags,
                        "since_ms": (node.now() - member.since) * TICK_MS,
                        "phi": node.phi_of(name),
                    })
                })
                .collect();
            json!({ "members": members, "health": node.health() })
        }
        Request::Join { addrs } => {
            for addr in &addrs {
                node.join(addr);
            }
            json!({ "joining": addrs })
        }
        Request::Leave => {
            node.leave();
            json!({ "leaving": node.name() })
        }
        Request::Tags { set, delete } => {
            let mut tags = node.members()[node.name()].meta.tags.clone();
            tags.extend(set);
            for key in delete {
                tags.remove(&key);
            }
            node.set_tags(tags.clone());
            json!({ "tags": tags })
        }
        Request::Event { name, payload } => {
            node.event(&name, payload.into_bytes());
            json!({ "sent": name })
        }
        Request::KvGet { key } => kv_json(node, &key),
        Request::KvSet { key, value, blind } => {
            if key.len() > ballot_gossip::swim::MAX_KV_BYTES
                || value.as_ref().is_some_and(|v| v.len() > ballot_gossip::swim::MAX_KV_BYTES)
            {
                return json!({ "error": format!("keys and values are at most {} bytes", ballot_gossip::swim::MAX_KV_BYTES) });
            }
            let context = if blind {
                VersionVector::default()
            } else {
                node.kv_get(&key).map(|v| v.context()).unwrap_or_default()
            };
            node.kv_set(&key, value, &context);
            kv_json(node, &key)
        }
        Request::Monitor | Request::Query { .. } => json!({ "error": "answered elsewhere" }),
    }
}

fn kv_json(node: &Node, key: &str) -> serde_json::Value {
    let siblings: Vec<serde_json::Value> = node
        .kv_get(key)
        .map(|value| {
            value
                .siblings()
                .iter()
                .map(|(vector, value)| {
                    let vector: BTreeMap<&str, u64> = vector.counters().collect();
                    json!({ "value": value, "version": vector })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({ "key": key, "siblings": siblings })
}

/// One event as the monitor and the handlers see it.
fn describe(node: &Node, event: &Event) -> serde_json::Value {
    match event {
        Event::Member { name, state, incarnation } => {
            let addr = node.members().get(name).map(|m| m.meta.addr.clone()).unwrap_or_default();
            json!({ "event": member_event(*state), "member": name, "addr": addr, "incarnation": incarnation })
        }
        Event::Updated(name) => json!({ "event": "member-update", "member": name }),
        Event::User(event) => json!({
            "event": "user", "name": event.name, "origin": event.origin, "ltime": event.ltime,
            "payload": String::from_utf8_lossy(&event.payload),
        }),
        Event::Query(query) => json!({ "event": "query", "name": query.name, "origin": query.origin }),
        Event::QueryResponse { id, responder, .. } => json!({ "event": "query-response", "id": id, "from": responder }),
        Event::Kv(key) => json!({ "event": "kv", "key": key }),
    }
}

/// serf's names for membership events.
fn member_event(state: State) -> &'static str {
    match state {
        State::Alive => "member-join",
        State::Suspect => "member-suspect",
        State::Dead => "member-failed",
        State::Left => "member-leave",
    }
}

/// Runs the handler for an event (not for queries and not for responses: those are answered
/// elsewhere or are this agent's own).
fn spawn_handler(handler: &Option<String>, event: &Event, line: &serde_json::Value) {
    let Some(handler) = handler.clone() else { return };
    let (kind, name, payload) = match event {
        Event::User(user) => ("user", user.name.clone(), user.payload.clone()),
        Event::Member { .. } | Event::Updated(_) => {
            let kind = line["event"].as_str().unwrap_or("member-update").to_string();
            let payload = format!("{}\n", line["member"].as_str().unwrap_or_default()).into_bytes();
            tokio::spawn(async move { run_handler(&handler, &kind, "", &payload).await });
            return;
        }
        _ => return,
    };
    tokio::spawn(async move { run_handler(&handler, kind, &name, &payload).await });
}

/// Runs `sh -c HANDLER` with the event in its environment and the payload on its stdin;
/// returns its stdout (a query's answer).
async fn run_handler(handler: &str, kind: &str, name: &str, payload: &[u8]) -> Vec<u8> {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(handler)
        .env("BALLOT_AGENT_EVENT", kind)
        .env("BALLOT_AGENT_NAME", name)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else { return Vec::new() };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(payload).await;
    }
    match tokio::time::timeout(Duration::from_secs(10), child.wait_with_output()).await {
        Ok(Ok(output)) => output.stdout,
        _ => Vec::new(),
    }
}

/// Sends one message: a datagram if it fits, else a TCP frame (push-pulls always).
fn send(udp: &Arc<UdpSocket>, sealer: &Sealer, to: &str, message: &Message, max_datagram: usize) {
    let Ok(addr) = to.parse::<SocketAddr>() else { return };
    let frame = sealer.seal(codec::encode(message));
    if !matches!(message.body, Body::PushPull { .. }) && frame.len() <= max_datagram + sealer.overhead() {
        let _ = udp.try_send_to(&frame, addr);
        return;
    }
    tokio::spawn(async move {
        let sent = async {
            let mut stream = TcpStream::connect(addr).await?;
            stream.write_all(&(frame.len() as u32).to_be_bytes()).await?;
            stream.write_all(&frame).await?;
            stream.shutdown().await
        };
        match tokio::time::timeout(Duration::from_secs(2), sent).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("sending to {addr} over TCP: {error}"),
            Err(_) => eprintln!("sending to {addr} over TCP: timed out"),
        }
    });
}

async fn receive_datagrams(udp: Arc<UdpSocket>, inputs: mpsc::UnboundedSender<Input>) {
    let mut buffer = vec![0u8; 65_536];
    loop {
        match udp.recv_from(&mut buffer).await {
            Ok((len, _)) => {
                if inputs.send(Input::Frame(buffer[..len].to_vec())).is_err() {
                    return;
                }
            }
            // An ICMP error from an earlier send (a dead member's port) surfaces here: it says
            // nothing about this socket, which keeps receiving.
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

async fn receive_streams(tcp: TcpListener, inputs: mpsc::UnboundedSender<Input>) {
    loop {
        // A failed accept (a peer that gave up before it, a moment out of descriptors) is the
        // connection's failure, not the listener's: keep accepting.
        let Ok((mut stream, _)) = tcp.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let inputs = inputs.clone();
        tokio::spawn(async move {
            let read = async {
                let mut len = [0u8; 4];
                stream.read_exact(&mut len).await?;
                let len = u32::from_be_bytes(len) as usize;
                if len > MAX_FRAME {
                    return Err(std::io::Error::other("frame too large"));
                }
                let mut frame = vec![0u8; len];
                stream.read_exact(&mut frame).await?;
                Ok(frame)
            };
            if let Ok(Ok(frame)) = tokio::time::timeout(Duration::from_secs(5), read).await {
                let _ = inputs.send(Input::Frame(frame));
            }
        });
    }
}

async fn serve_rpc(rpc: TcpListener, inputs: mpsc::UnboundedSender<Input>) {
    loop {
        let Ok((stream, _)) = rpc.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let inputs = inputs.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            let Ok(Some(line)) = lines.next_line().await else { return };
            let (reply, mut answers) = mpsc::unbounded_channel();
            match serde_json::from_str::<Request>(&line) {
                Ok(request) => {
                    if inputs.send(Input::Rpc(request, reply)).is_err() {
                        return;
                    }
                }
                Err(error) => {
                    let _ = reply.send(json!({ "error": format!("bad request: {error}") }));
                    drop(reply);
                }
            }
            while let Some(answer) = answers.recv().await {
                let mut text = answer.to_string();
                text.push('\n');
                if write.write_all(text.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn stop_on_signal(inputs: mpsc::UnboundedSender<Input>) {
    let Ok(mut terminate) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else { return };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    let _ = inputs.send(Input::Stop);
}
