//! The console's view of a gossip fleet: the members a `ballot agent` knows, with their state,
//! φ, incarnation and tags, asked of the agent beside this member.
//!
//! An agent is its own process with its own membership (SWIM over UDP), not part of the Raft
//! cluster; a member shows the fleet of the agent whose control endpoint it is given
//! (`--ui-agent 127.0.0.1:7373`, the agent's `--rpc-addr`). `GET /ui/agents` is a stream of
//! server-sent events (`event: agents`): once a second the member sends the agent its
//! `members` command (one JSON line over TCP, as `ballot agent members` does) and pushes the
//! answer when it changed (φ and the time in a state change at every sample), and at least
//! every few seconds.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::IntoResponse;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::actions::Console;
use super::changes_stream;

/// How often the agent is asked.
const ASK_EVERY: Duration = Duration::from_secs(1);

/// How long the agent may take to answer.
const ASK_TIMEOUT: Duration = Duration::from_millis(800);

/// What one push carries.
#[derive(Debug, Clone, Serialize, PartialEq)]
struct AgentsView {
    /// The agent's control endpoint (empty: none given to this member).
    agent: String,
    /// Why the agent's answer is missing, if it is.
    error: Option<String>,
    /// The agent's answer: `members` (name, addr, status, incarnation, tags, since_ms, phi) and
    /// `health` (Lifeguard's local health score).
    fleet: Option<serde_json::Value>,
}

/// Sends the agent at `address` its `members` command and reads its one-line answer.
async fn ask(address: &str) -> Result<serde_json::Value, String> {
    let exchange = async {
        let stream =
            TcpStream::connect(address).await.map_err(|error| format!("no agent answers at {address}: {error}"))?;
        let (read, mut write) = stream.into_split();
        write.write_all(b"{\"op\":\"members\"}\n").await.map_err(|error| error.to_string())?;
        let line = BufReader::new(read).lines().next_line().await.map_err(|error| error.to_string())?;
        let line = line.ok_or_else(|| format!("the agent at {address} closed without answering"))?;
        serde_json::from_str::<serde_json::Value>(&line).map_err(|_| format!("the agent at {address} answered garbage"))
    };
    match tokio::time::timeout(ASK_TIMEOUT, exchange).await {
        Ok(answer) => answer,
        Err(_) => Err(format!("the agent at {address} did not answer within {ASK_TIMEOUT:?}")),
    }
}

/// `GET /ui/agents`: the fleet as server-sent events; an `error` event (and the end) if the
/// caller may not see it (with authentication on, any user may).
pub async fn stream(State(console): State<Console>, request: Request) -> impl IntoResponse {
    let handle = console.handle.clone();
    let caller = super::actions::caller_of(&handle, &request);
    let agent = console.agent.clone();
    changes_stream("agents", ASK_EVERY, AgentsView::clone, move || {
        let (handle, caller, agent) = (handle.clone(), caller.clone(), agent.clone());
        async move {
            handle.check_user(&handle.identity(&caller).await?)?;
            Ok(Some(match agent.as_deref() {
                None => AgentsView { agent: String::new(), error: None, fleet: None },
                Some(address) => match ask(address).await {
                    Ok(fleet) => AgentsView { agent: address.to_string(), error: None, fleet: Some(fleet) },
                    Err(error) => AgentsView { agent: address.to_string(), error: Some(error), fleet: None },
                },
            }))
        }
    })
}
