//! `ballot agent`: a gossip agent for every machine of a fleet (serf's job), plus service
//! registration into a ballot cluster. With no subcommand it runs the agent; the subcommands
//! talk to a running agent through its control endpoint.

mod rpc;
mod runtime;
mod seal;
pub mod services;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use ballot_gossip::news::Tags;
use ballot_gossip::swim::{Config, Detector};
use base64::Engine;

use super::connect::{Dialer, Endpoints};
use rpc::Request;

/// Arguments of `ballot agent`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentArgs {
    #[command(subcommand)]
    command: Option<AgentCommand>,
    /// The agent's control endpoint (it listens there; the subcommands call it there).
    #[arg(long, env = "BALLOT_AGENT_RPC", default_value = rpc::DEFAULT_RPC, global = true)]
    rpc_addr: String,
    #[command(flatten)]
    run: RunArgs,
}

/// How to run an agent.
#[derive(clap::Args)]
struct RunArgs {
    /// This agent's name in the fleet (default: the host's name).
    #[arg(long)]
    node: Option<String>,
    /// Address for gossip, UDP and TCP.
    #[arg(long, default_value = "127.0.0.1:7946")]
    bind: SocketAddr,
    /// Agents to join through (repeat, or separate with commas); retried until one answers.
    #[arg(long, value_delimiter = ',')]
    join: Vec<String>,
    /// A tag, `key=value` (repeat for more): role, datacenter, endpoints…
    #[arg(long = "tag", alias = "tags", value_name = "KEY=VALUE")]
    tags: Vec<String>,
    /// Encrypt gossip with this key (base64 of 16 or 32 bytes; `ballot agent keygen` makes one).
    #[arg(long, env = "BALLOT_AGENT_ENCRYPT", hide_env_values = true)]
    encrypt: Option<String>,
    /// A command run (with `sh -c`) on every event: BALLOT_AGENT_EVENT says which, the payload
    /// (or the member's name) arrives on its stdin; for a query, its stdout is the answer.
    #[arg(long)]
    event_handler: Option<String>,
    /// What turns a missed probe into a suspicion: `timeout` (SWIM's) or `phi` (accrual).
    #[arg(long, default_value = "timeout", value_parser = ["timeout", "phi"])]
    detector: String,
    /// Plain SWIM, without Lifeguard's extensions (for comparison).
    #[arg(long)]
    no_lifeguard: bool,
    /// Service definitions (TOML) to check and publish under /services/ in the ballot cluster
    /// at --endpoints.
    #[arg(long)]
    services: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum AgentCommand {
    /// List the members this agent knows.
    Members {
        /// Only members in this state: alive, suspect, failed or left.
        #[arg(long)]
        status: Option<String>,
        /// Show incarnation, time in the state, φ and tags.
        #[arg(long)]
        detailed: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Join the fleet through these agents.
    Join {
        /// `host:port` of agents in the fleet.
        #[arg(required = true)]
        addrs: Vec<String>,
    },
    /// Leave the fleet gracefully and stop the agent.
    Leave,
    /// Change this agent's tags.
    #[command(subcommand)]
    Tags(TagsCommand),
    /// Send a user event to every member (their handlers run it once).
    Event {
        /// Its name.
        name: String,
        /// Its payload.
        #[arg(default_value = "")]
        payload: String,
    },
    /// Ask every member and print the answers that come within the timeout.
    Query {
        /// Its name.
        name: String,
        /// Its payload.
        #[arg(default_value = "")]
        payload: String,
        /// How long to collect answers (`500ms`, `2s`).
        #[arg(long, default_value = "2s")]
        timeout: String,
    },
    /// Print this agent's events as they happen.
    Monitor,
    /// The fleet's gossiped multi-writer map (always writable; concurrent writes are kept as
    /// siblings until a write that saw them all).
    #[command(subcommand)]
    Kv(KvCommand),
    /// Print a new random encryption key.
    Keygen,
}

#[derive(clap::Subcommand)]
enum TagsCommand {
    /// Set tags, `key=value`.
    Set {
        /// Tags to set.
        #[arg(required = true)]
        tags: Vec<String>,
    },
    /// Remove tags.
    Delete {
        /// Keys to remove.
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

#[derive(clap::Subcommand)]
enum KvCommand {
    /// Print a key's value, or its siblings with their version vectors.
    Get {
        /// The key.
        key: String,
    },
    /// Write a key (replacing what this agent has seen of it).
    Set {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Write without having read: the value becomes a sibling of what is there.
        #[arg(long)]
        blind: bool,
    },
    /// Delete a key (a tombstone that replaces what this agent has seen).
    Delete {
        /// The key.
        key: String,
    },
}

/// Runs `ballot agent`.
pub fn run(endpoints: Endpoints, args: AgentArgs) -> anyhow::Result<ExitCode> {
    // One thread: an agent does little, often (a tick every 10 ms); a pool of workers would only
    // add wake-ups and memory on every machine of the fleet.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        match args.command {
            None => start(&endpoints, args.run, &args.rpc_addr).await,
            Some(command) => control(&args.rpc_addr, command).await,
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

fn parse_tags(pairs: &[String]) -> anyhow::Result<Tags> {
    pairs
        .iter()
        .map(|pair| {
            let (key, value) = pair.split_once('=').with_context(|| format!("tag {pair:?} is not key=value"))?;
            Ok((key.to_string(), value.to_string()))
        })
        .collect()
}

async fn start(endpoints: &Endpoints, args: RunArgs, rpc: &str) -> anyhow::Result<()> {
    let node = match args.node {
        Some(node) => node,
        None => std::fs::read_to_string("/etc/hostname").map(|name| name.trim().to_string()).unwrap_or_default(),
    };
    if node.is_empty() {
        bail!("give the agent a name with --node");
    }
    let mut config = Config::lan();
    config.lifeguard = !args.no_lifeguard;
    if args.detector == "phi" {
        config.detector = Detector::Phi(Config::phi_at_10ms());
    }
    let sealer = seal::Sealer::new(args.encrypt.as_deref())?;
    config.max_message_bytes -= sealer.overhead();
    let registrar = match &args.services {
        Some(path) => {
            let definitions = services::load(path)?;
            Some(services::Registrar::new(Dialer::new(endpoints)?, endpoints.endpoints.clone(), definitions))
        }
        None => None,
    };
    let settings = runtime::Settings {
        node,
        bind: args.bind,
        join: args.join,
        tags: parse_tags(&args.tags)?,
        sealer,
        rpc: rpc.parse().with_context(|| format!("--rpc-addr {rpc:?} is not host:port"))?,
        handler: args.event_handler,
        config,
        registrar,
    };
    runtime::run(settings).await
}

async fn control(rpc: &str, command: AgentCommand) -> anyhow::Result<()> {
    let request = match command {
        AgentCommand::Keygen => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).expect("the system's random source works");
            println!("{}", base64::engine::general_purpose::STANDARD.encode(key));
            return Ok(());
        }
        AgentCommand::Members { status, detailed, json } => {
            return members(rpc, status.as_deref(), detailed, json).await;
        }
        AgentCommand::Monitor => {
            return rpc::call(rpc, &Request::Monitor, |line| {
                println!("{line}");
                true
            })
            .await;
        }
        AgentCommand::Join { addrs } => Request::Join { addrs },
        AgentCommand::Leave => Request::Leave,
        AgentCommand::Tags(TagsCommand::Set { tags }) => Request::Tags { set: parse_tags(&tags)?, delete: Vec::new() },
        AgentCommand::Tags(TagsCommand::Delete { keys }) => Request::Tags { set: BTreeMap::new(), delete: keys },
        AgentCommand::Event { name, payload } => Request::Event { name, payload },
        AgentCommand::Query { name, payload, timeout } => {
            let timeout_ms = services::parse_duration(&timeout)?.as_millis() as u64;
            Request::Query { name, payload, timeout_ms }
        }
        AgentCommand::Kv(KvCommand::Get { key }) => Request::KvGet { key },
        AgentCommand::Kv(KvCommand::Set { key, value, blind }) => Request::KvSet { key, value: Some(value), blind },
        AgentCommand::Kv(KvCommand::Delete { key }) => Request::KvSet { key, value: None, blind: false },
    };
    let is_kv = matches!(request, Request::KvGet { .. } | Request::KvSet { .. });
    let is_query = matches!(request, Request::Query { .. });
    rpc::call(rpc, &request, |answer| {
        if is_kv {
            print_siblings(&answer);
        } else if is_query {
            let answers = answer["answers"].as_object().cloned().unwrap_or_default();
            for (member, text) in &answers {
                println!("{member}: {}", text.as_str().unwrap_or_default().trim_end());
            }
            println!("{} answers", answers.len());
        } else {
            println!("{answer}");
        }
        false
    })
    .await
}

fn print_siblings(answer: &serde_json::Value) {
    let siblings = answer["siblings"].as_array().cloned().unwrap_or_default();
    let live: Vec<&serde_json::Value> = siblings.iter().filter(|s| !s["value"].is_null()).collect();
    match (siblings.len(), live.len()) {
        (0, _) | (1, 0) => println!("(no value)"),
        (1, 1) => println!("{}", live[0]["value"].as_str().unwrap_or_default()),
        _ => {
            println!("{} concurrent values (siblings); a write now replaces them all:", siblings.len());
            for sibling in &siblings {
                let value = sibling["value"].as_str().map_or("(deleted)".to_string(), str::to_string);
                println!("  {value}  {}", sibling["version"]);
            }
        }
    }
}

async fn members(rpc: &str, status: Option<&str>, detailed: bool, json: bool) -> anyhow::Result<()> {
    let mut answer = serde_json::Value::Null;
    rpc::call(rpc, &Request::Members, |line| {
        answer = line;
        false
    })
    .await?;
    let members: Vec<&serde_json::Value> = answer["members"]
        .as_array()
        .map(|all| all.iter().filter(|m| status.is_none_or(|s| m["status"] == s)).collect())
        .unwrap_or_default();
    if json {
        println!("{}", serde_json::Value::Array(members.into_iter().cloned().collect()));
        return Ok(());
    }
    for member in members {
        let tags: Vec<String> = member["tags"]
            .as_object()
            .map(|tags| tags.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect())
            .unwrap_or_default();
        let name = member["name"].as_str().unwrap_or_default();
        let addr = member["addr"].as_str().unwrap_or_default();
        let state = member["status"].as_str().unwrap_or_default();
        if detailed {
            println!(
                "{name}  {addr}  {state}  incarnation={} for={:.1}s phi={:.2}  {}",
                member["incarnation"],
                member["since_ms"].as_u64().unwrap_or(0) as f64 / 1000.0,
                member["phi"].as_f64().unwrap_or(0.0),
                tags.join(",")
            );
        } else {
            println!("{name}  {addr}  {state}  {}", tags.join(","));
        }
    }
    Ok(())
}
