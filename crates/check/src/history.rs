//! The history format: JSON Lines, one event per line, shared by the simulator, the process
//! tests and `ballot check`.
//!
//! `{"process":N,"type":"invoke|ok|fail|info","f":"read|write|cas|…","key":"k","value":V,"time":ns}`
//! `fail` means the operation certainly did not happen; `info` means it may have happened at
//! any time after its invocation. For `cas`, `value` is `[expected, new]`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What an event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// A process started an operation.
    Invoke,
    /// It completed and took effect with this result.
    Ok,
    /// It certainly did not take effect.
    Fail,
    /// Unknown: it may or may not have taken effect.
    Info,
}

/// One line of a history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The client process (one operation at a time per process).
    pub process: u64,
    /// Invoke or completion.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Operation name: `read`, `write`, `cas`, `delete`.
    pub f: String,
    /// The key (histories are checked per key).
    #[serde(default)]
    pub key: String,
    /// Argument on invoke, result on completion.
    #[serde(default)]
    pub value: Value,
    /// Nanoseconds, on one clock for the whole history.
    pub time: u64,
    /// The client session the operation belongs to (a session outlives its processes: it is
    /// what carries a causal token), for the session guarantees' checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<u64>,
    /// On a completion: the store revision the operation returned (a read's, or the revision a
    /// write was committed at).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
}

impl Event {
    /// Serializes as one JSONL line (without the newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("events always serialize")
    }
}

/// An operation: an invocation paired with its completion.
#[derive(Clone, Debug, PartialEq)]
pub struct Operation {
    /// Position in the history (stable id).
    pub id: usize,
    /// Process that ran it.
    pub process: u64,
    /// Operation name.
    pub f: String,
    /// Key.
    pub key: String,
    /// Argument.
    pub input: Value,
    /// Result; `None` when unknown (`info`, or no completion in the history).
    pub output: Option<Value>,
    /// Invocation time.
    pub call: u64,
    /// Completion time; `u64::MAX` when unknown (it may take effect at any later time).
    pub ret: u64,
    /// Its session, if the history names one.
    pub session: Option<u64>,
    /// The revision its completion returned, if known.
    pub revision: Option<i64>,
}

impl Operation {
    /// True if the outcome is unknown.
    pub fn is_info(&self) -> bool {
        self.output.is_none()
    }

    /// A short human-readable form, e.g. `cas(1→2) ok` or `read → 3`.
    pub fn describe(&self) -> String {
        let show = |v: &Value| match v {
            Value::Null => "nil".to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match (self.f.as_str(), &self.output) {
            ("read", Some(v)) => format!("read → {}", show(v)),
            ("read", None) => "read → ?".to_string(),
            ("cas", out) => {
                let arg = match &self.input {
                    Value::Array(pair) if pair.len() == 2 => format!("{}→{}", show(&pair[0]), show(&pair[1])),
                    other => show(other),
                };
                format!("cas({arg}){}", if out.is_none() { " ?" } else { "" })
            }
            (f, out) => format!("{f}({}){}", show(&self.input), if out.is_none() { " ?" } else { "" }),
        }
    }
}

/// Why a history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A line is not a valid event.
    #[error("line {line}: {message}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Parses a JSONL history; blank lines are skipped.
pub fn parse_history(text: &str) -> Result<Vec<Event>, HistoryError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            serde_json::from_str(line).map_err(|e| HistoryError::Parse { line: number + 1, message: e.to_string() })
        })
        .collect()
}

/// Pairs invocations with completions. Failed operations are dropped (they did not happen);
/// `info` completions and invocations left open at the end become unknown-outcome operations.
pub fn pair_operations(events: &[Event]) -> Result<Vec<Operation>, HistoryError> {
    let mut open: std::collections::BTreeMap<u64, (usize, &Event)> = Default::default();
    let mut operations = Vec::new();
    let mut next_id = 0;
    for (line, event) in events.iter().enumerate() {
        match event.kind {
            EventType::Invoke => {
                if open.insert(event.process, (line, event)).is_some() {
                    return Err(HistoryError::Parse {
                        line: line + 1,
                        message: format!("process {} invoked twice without completing", event.process),
                    });
                }
            }
            kind => {
                let Some((_, invoke)) = open.remove(&event.process) else {
                    return Err(HistoryError::Parse {
                        line: line + 1,
                        message: format!("process {} completed an operation it never invoked", event.process),
                    });
                };
                if kind == EventType::Fail {
                    continue;
                }
                let output = (kind == EventType::Ok).then(|| event.value.clone());
                let ret = if kind == EventType::Ok { event.time.max(invoke.time) } else { u64::MAX };
                operations.push(Operation {
                    id: next_id,
                    process: invoke.process,
                    f: invoke.f.clone(),
                    key: invoke.key.clone(),
                    input: invoke.value.clone(),
                    output,
                    call: invoke.time,
                    ret,
                    session: invoke.session.or(event.session),
                    revision: event.revision,
                });
                next_id += 1;
            }
        }
    }
    for (_, (_, invoke)) in open {
        operations.push(Operation {
            id: next_id,
            process: invoke.process,
            f: invoke.f.clone(),
            key: invoke.key.clone(),
            input: invoke.value.clone(),
            output: None,
            call: invoke.time,
            ret: u64::MAX,
            session: invoke.session,
            revision: None,
        });
        next_id += 1;
    }
    Ok(operations)
}
