//! The pure crates (consensus cores, checker, simulator, gossip) must never depend on an async runtime,
//! a network stack or an OS-seeded random source: that is what keeps them deterministic.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

const PURE: [&str; 8] = [
    "ballot-raft",
    "ballot-check",
    "ballot-sim",
    "ballot-mvcc",
    "ballot-node",
    "ballot-zk",
    "ballot-gossip",
    "ballot-paxos",
];
const FORBIDDEN: [&str; 8] = ["tokio", "tonic", "mio", "rand", "getrandom", "async-std", "hyper", "socket2"];

#[test]
fn pure_crates_have_no_runtime_io_or_os_randomness_in_their_dependency_tree() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // This machine's target only: other platforms' dependencies (never built here) need not be
    // downloaded, so the check runs offline.
    let rustc = Command::new("rustc").arg("-vV").output().expect("rustc runs");
    let rustc = String::from_utf8_lossy(&rustc.stdout).to_string();
    let host = rustc.lines().find_map(|line| line.strip_prefix("host: ")).expect("rustc names its host");
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--filter-platform", host])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("metadata is JSON");
    let names: BTreeMap<String, String> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().unwrap().to_string(), p["name"].as_str().unwrap().to_string()))
        .collect();
    // Normal (non-dev) dependency edges of the resolved graph.
    let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for node in metadata["resolve"]["nodes"].as_array().expect("resolve nodes") {
        let id = node["id"].as_str().unwrap().to_string();
        for dep in node["deps"].as_array().expect("deps") {
            let normal = dep["dep_kinds"].as_array().expect("kinds").iter().any(|k| k["kind"].is_null());
            if normal {
                edges.entry(id.clone()).or_default().push(dep["pkg"].as_str().unwrap().to_string());
            }
        }
    }
    for pure in PURE {
        let root = names.iter().find(|(_, name)| name.as_str() == pure).map(|(id, _)| id.clone()).expect(pure);
        let mut seen = BTreeSet::new();
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            let name = &names[&id];
            assert!(!FORBIDDEN.contains(&name.as_str()), "{pure} depends on {name}");
            stack.extend(edges.get(&id).cloned().unwrap_or_default());
        }
    }
}
