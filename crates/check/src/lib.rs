//! # ballot-check: the linearizability checker
//!
//! Reads a history of client operations (JSON Lines, see [`history`]), and decides whether
//! some total order of the operations, consistent with their real-time order, explains every
//! result under a sequential [`model::Model`]. Pure: no I/O, no clock; the search is bounded by
//! [`checker::Limits`] so it always ends.
//!
//! ```
//! use ballot_check::{check_history, model::RegisterModel, checker::Limits};
//! let history = r#"{"process":0,"type":"invoke","f":"write","key":"x","value":1,"time":0}
//! {"process":0,"type":"ok","f":"write","key":"x","value":1,"time":1}
//! {"process":1,"type":"invoke","f":"read","key":"x","value":null,"time":2}
//! {"process":1,"type":"ok","f":"read","key":"x","value":1,"time":3}"#;
//! let verdict = check_history(history, &RegisterModel::register(), Limits::default()).unwrap();
//! assert!(verdict.is_linearizable());
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod checker;
pub mod history;
pub mod html;
pub mod model;
pub mod report;
pub mod session;

pub use checker::{check, Limits, Verdict, Violation};
pub use history::{pair_operations, parse_history, Event, EventType, HistoryError, Operation};

/// Parses a JSONL history and checks it.
pub fn check_history<M: model::Model>(text: &str, model: &M, limits: Limits) -> Result<Verdict, HistoryError> {
    let events = parse_history(text)?;
    let operations = pair_operations(&events)?;
    Ok(check(model, &operations, limits))
}
