//! The `ballot` binary as a user runs it: `ballot check` and `ballot sim`.

use std::process::Command;

fn ballot(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ballot")).args(args).output().expect("ballot runs");
    let text = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

fn last_line(text: &str) -> &str {
    text.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("")
}

fn write_history(name: &str, lines: &[&str]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ballot-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("history.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

#[test]
fn check_accepts_a_linearizable_history() {
    let path = write_history(
        "ok",
        &[
            r#"{"process":0,"type":"invoke","f":"write","key":"x","value":1,"time":0}"#,
            r#"{"process":0,"type":"ok","f":"write","key":"x","value":1,"time":10}"#,
            r#"{"process":1,"type":"invoke","f":"read","key":"x","value":null,"time":20}"#,
            r#"{"process":1,"type":"ok","f":"read","key":"x","value":1,"time":30}"#,
        ],
    );
    let (code, out) = ballot(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(last_line(&out), "linearizable: true");
}

#[test]
fn check_rejects_a_stale_read_and_writes_a_timeline() {
    let path = write_history(
        "stale",
        &[
            r#"{"process":0,"type":"invoke","f":"write","key":"x","value":1,"time":0}"#,
            r#"{"process":0,"type":"ok","f":"write","key":"x","value":1,"time":10}"#,
            r#"{"process":0,"type":"invoke","f":"write","key":"x","value":2,"time":20}"#,
            r#"{"process":0,"type":"ok","f":"write","key":"x","value":2,"time":30}"#,
            r#"{"process":1,"type":"invoke","f":"read","key":"x","value":null,"time":40}"#,
            r#"{"process":1,"type":"ok","f":"read","key":"x","value":1,"time":50}"#,
        ],
    );
    let html = path.with_extension("html");
    let (code, out) = ballot(&["check", path.to_str().unwrap(), "--html", html.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(last_line(&out), "linearizable: false");
    assert!(out.contains("read → 1"), "{out}");
    assert!(std::fs::read_to_string(&html).unwrap().contains("<svg"));
}

#[test]
fn check_reports_a_malformed_history_clearly() {
    let path = write_history("bad", &["{not json"]);
    let (code, out) = ballot(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(out.contains("line 1"), "{out}");
    let (code, out) = ballot(&["check", "/nonexistent/history.jsonl"]);
    assert_eq!(code, 2);
    assert!(out.contains("/nonexistent/history.jsonl"), "{out}");
}

#[test]
fn sim_runs_seeds_and_ends_with_the_count() {
    let (code, out) = ballot(&["sim", "--seeds", "4", "--steps", "3000"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(last_line(&out), "4 seeds, 0 violations");
}

#[test]
fn sim_replays_a_seed_exactly() {
    let args = ["sim", "--seed", "77", "--steps", "2000", "--trace"];
    let (_, first) = ballot(&args);
    let (_, second) = ballot(&args);
    let hash = |out: &str| out.lines().find(|l| l.starts_with("trace hash")).map(str::to_string);
    assert!(hash(&first).is_some(), "{first}");
    assert_eq!(hash(&first), hash(&second));
    assert!(first.contains("leads term"), "the trace shows what happened");
}

#[test]
fn sim_refuses_bad_arguments() {
    let (code, out) = ballot(&["sim", "--nodes", "4"]);
    assert_eq!(code, 2);
    assert!(out.contains("--nodes must be 3, 5 or 7"), "{out}");
    let (code, out) = ballot(&["sim", "--faults", "meteor"]);
    assert_eq!(code, 2);
    assert!(out.contains("unknown fault 'meteor'"), "{out}");
}
