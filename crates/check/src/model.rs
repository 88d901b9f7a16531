//! Sequential specifications that histories are checked against.

use std::fmt::Debug;
use std::hash::Hash;

use serde_json::Value;

use crate::history::Operation;

/// A sequential object: a state and the rule for applying one operation to it.
pub trait Model {
    /// The object's state; hashed for the search's memo of visited (set, state) pairs.
    type State: Clone + Eq + Hash + Debug;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// The state after `op` if, from `state`, `op` could have returned its recorded output;
    /// `None` if not. An operation with an unknown output (`op.output == None`) must always be
    /// accepted: it either took effect here or had no visible effect.
    fn step(&self, state: &Self::State, op: &Operation) -> Option<Self::State>;

    /// Drops operations that provably cannot matter, before the search (which is exponential
    /// in the number of concurrent unknown-outcome operations). The default keeps everything.
    fn prune(&self, operations: Vec<Operation>) -> Vec<Operation> {
        operations
    }
}

/// A register (or one key of a key-value map): `read`, `write`, `cas`, and with `allow_delete`
/// also `delete`. A missing value is `null`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RegisterModel {
    /// Accept `delete` (the key-value store's model) as well as the register operations.
    pub allow_delete: bool,
}

impl RegisterModel {
    /// The plain register: read / write / cas.
    pub fn register() -> Self {
        RegisterModel { allow_delete: false }
    }

    /// One key of the key-value store: read (get) / write (put) / cas / delete.
    pub fn kv() -> Self {
        RegisterModel { allow_delete: true }
    }
}

/// Canonical text of a value, `None` for null, so equal values hash equally.
fn canonical(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

impl Model for RegisterModel {
    type State = Option<String>;

    fn init(&self) -> Self::State {
        None
    }

    fn step(&self, state: &Self::State, op: &Operation) -> Option<Self::State> {
        match op.f.as_str() {
            "read" | "get" => match &op.output {
                None => Some(state.clone()),
                Some(value) => (canonical(value) == *state).then(|| state.clone()),
            },
            "write" | "put" => Some(canonical(&op.input)),
            "delete" if self.allow_delete => Some(None),
            "cas" => {
                let Value::Array(pair) = &op.input else { return None };
                if pair.len() != 2 {
                    return None;
                }
                let matches = canonical(&pair[0]) == *state;
                match (&op.output, matches) {
                    (_, true) => Some(canonical(&pair[1])),
                    // An unknown cas whose expectation fails simply did not take effect.
                    (None, false) => Some(state.clone()),
                    (Some(_), false) => None,
                }
            }
            _ => None,
        }
    }

    /// An unknown-outcome operation whose effect nobody observed can be placed after everything
    /// else, so it is dropped: reads (no effect), and writes and cas whose new value no read
    /// returned and no cas expected. (If a linearization put such a write earlier, no
    /// operation could tell; removing it leaves a linearization of the rest.)
    fn prune(&self, operations: Vec<Operation>) -> Vec<Operation> {
        let mut observed = std::collections::HashSet::new();
        for op in &operations {
            match (op.f.as_str(), &op.output, &op.input) {
                ("read" | "get", Some(value), _) => {
                    observed.insert(canonical(value));
                }
                ("cas", _, Value::Array(pair)) if pair.len() == 2 => {
                    observed.insert(canonical(&pair[0]));
                }
                _ => {}
            }
        }
        operations
            .into_iter()
            .filter(|op| {
                if op.output.is_some() {
                    return true;
                }
                match (op.f.as_str(), &op.input) {
                    ("read" | "get", _) => false,
                    ("write" | "put", value) => observed.contains(&canonical(value)),
                    ("cas", Value::Array(pair)) if pair.len() == 2 => observed.contains(&canonical(&pair[1])),
                    _ => true,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(f: &str, input: Value, output: Option<Value>) -> Operation {
        Operation {
            id: 0,
            process: 0,
            f: f.into(),
            key: "k".into(),
            input,
            output,
            call: 0,
            ret: 1,
            session: None,
            revision: None,
        }
    }

    #[test]
    fn register_rules() {
        let model = RegisterModel::register();
        let s = model.init();
        assert_eq!(model.step(&s, &op("read", json!(null), Some(json!(null)))), Some(None));
        let s = model.step(&s, &op("write", json!(1), Some(json!(1)))).unwrap();
        assert!(model.step(&s, &op("read", json!(null), Some(json!(2)))).is_none());
        assert!(model.step(&s, &op("cas", json!([2, 3]), Some(json!([2, 3])))).is_none());
        let s = model.step(&s, &op("cas", json!([1, 3]), Some(json!([1, 3])))).unwrap();
        assert_eq!(s, Some("3".to_string()));
        assert_eq!(model.step(&s, &op("cas", json!([9, 4]), None)), Some(s.clone()), "unknown cas, no effect");
        assert!(model.step(&s, &op("delete", json!(null), Some(json!(null)))).is_none(), "no delete on a register");
        assert_eq!(RegisterModel::kv().step(&s, &op("delete", json!(null), Some(json!(null)))), Some(None));
    }

    #[test]
    fn prune_drops_only_unobserved_unknown_operations() {
        let ops = vec![
            op("write", json!(1), None),
            op("write", json!(2), None),
            op("cas", json!([2, 3]), None),
            op("cas", json!([5, 4]), None),
            op("read", json!(null), None),
            op("read", json!(null), Some(json!(3))),
        ];
        let kept: Vec<String> = RegisterModel::register().prune(ops).iter().map(|o| o.describe()).collect();
        assert_eq!(kept, vec!["write(2) ?", "cas(2→3) ?", "read → 3"]);
    }
}
