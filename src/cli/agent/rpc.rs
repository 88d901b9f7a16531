//! The agent's local control endpoint: one JSON request per line over TCP on loopback, one
//! JSON answer per line (`monitor` keeps answering, a line per event, until the client goes).
//! The `ballot agent …` commands are its client.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Where the agent listens for its commands by default (serf's RPC port).
pub const DEFAULT_RPC: &str = "127.0.0.1:7373";

/// A command to a running agent.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// Every member this agent knows.
    Members,
    /// Join through these addresses.
    Join {
        /// `host:port` of agents already in the fleet.
        addrs: Vec<String>,
    },
    /// Leave the fleet and stop.
    Leave,
    /// Change this agent's tags.
    Tags {
        /// Tags to set.
        set: BTreeMap<String, String>,
        /// Tags to remove.
        delete: Vec<String>,
    },
    /// Send a user event to every member.
    Event {
        /// Its name.
        name: String,
        /// Its payload.
        payload: String,
    },
    /// Ask every member and collect answers.
    Query {
        /// Its name.
        name: String,
        /// Its payload.
        payload: String,
        /// How long to collect answers.
        timeout_ms: u64,
    },
    /// Stream this agent's events.
    Monitor,
    /// Read a key of the gossiped multi-writer map.
    KvGet {
        /// The key.
        key: String,
    },
    /// Write (or, with no value, delete) a key of the map.
    KvSet {
        /// The key.
        key: String,
        /// The value; none deletes.
        value: Option<String>,
        /// Write without the context of a read: the write stays a sibling of what is there.
        blind: bool,
    },
}

/// Sends `request` to the agent at `rpc` and hands each answer line to `each` (one, except for
/// `monitor`).
pub async fn call(rpc: &str, request: &Request, mut each: impl FnMut(serde_json::Value) -> bool) -> anyhow::Result<()> {
    let stream = TcpStream::connect(rpc).await.with_context(|| format!("no agent answers at {rpc}"))?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    write.write_all(line.as_bytes()).await?;
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let answer: serde_json::Value = serde_json::from_str(&line).context("the agent answered garbage")?;
        if let Some(error) = answer.get("error").and_then(|e| e.as_str()) {
            bail!("{error}");
        }
        if !each(answer) {
            break;
        }
    }
    Ok(())
}
