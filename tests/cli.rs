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

/// The chapter's lagging replica: a session writes at revision 7, then reads the key back from a
/// member that had applied only revision 5. Linearizability is not the question here: the
/// session model names the broken guarantee; with the read at revision 7 it holds.
#[test]
fn check_names_a_broken_session_guarantee() {
    let history = |read_value: i64, read_revision: i64| {
        [
            r#"{"process":0,"type":"invoke","f":"write","key":"x","value":1,"time":0,"session":0}"#.to_string(),
            r#"{"process":0,"type":"ok","f":"write","key":"x","value":1,"time":10,"session":0,"revision":5}"#
                .to_string(),
            r#"{"process":0,"type":"invoke","f":"write","key":"x","value":2,"time":20,"session":0}"#.to_string(),
            r#"{"process":0,"type":"ok","f":"write","key":"x","value":2,"time":30,"session":0,"revision":7}"#
                .to_string(),
            r#"{"process":0,"type":"invoke","f":"read","key":"x","value":null,"time":40,"session":0}"#.to_string(),
            format!(
                r#"{{"process":0,"type":"ok","f":"read","key":"x","value":{read_value},"time":50,"session":0,"revision":{read_revision}}}"#
            ),
        ]
    };
    let lines = history(1, 5);
    let path = write_history("session-stale", &lines.iter().map(String::as_str).collect::<Vec<_>>());
    let html = path.with_extension("html");
    let (code, out) = ballot(&["check", "--model", "causal", path.to_str().unwrap(), "--html", html.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(last_line(&out), "causal: false");
    assert!(out.contains("read-your-writes broken"), "{out}");
    assert!(std::fs::read_to_string(&html).unwrap().contains("read-your-writes"));
    let lines = history(2, 7);
    let path = write_history("session-fresh", &lines.iter().map(String::as_str).collect::<Vec<_>>());
    let (code, out) = ballot(&["check", "--model", "session", path.to_str().unwrap()]);
    assert_eq!((code, last_line(&out)), (0, "session guarantees: true"), "{out}");
    // A read claiming revision 7 with the value of revision 5: the values give it away.
    let lines = history(1, 7);
    let path = write_history("session-lying", &lines.iter().map(String::as_str).collect::<Vec<_>>());
    let (code, out) = ballot(&["check", "--model", "causal", path.to_str().unwrap()]);
    assert_eq!((code, last_line(&out)), (1, "causal: false"), "{out}");
    assert!(out.contains("snapshot broken"), "{out}");
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
fn sim_writes_a_report_of_one_seed_that_opens_from_disk() {
    let dir = std::env::temp_dir().join(format!("ballot-cli-sim-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (code, out) = ballot(&["sim", "--seed", "11", "--steps", "3000", "--report", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("report in"), "{out}");
    let page = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let history = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    let completions = history.lines().filter(|l| !l.contains(r#""type":"invoke""#)).count();
    let markers = page.matches(r#"<g class="op "#).count();
    assert!(completions > 10 && markers >= completions, "{markers} markers for {completions} completions");
    assert!(page.contains(r#"<svg id="throughput""#) && page.contains(r#"class="fault""#));
    assert!(page.contains(r#"class="mark""#), "leader changes are marked");
    let (code, out) = ballot(&["sim", "--report", dir.to_str().unwrap()]);
    assert_eq!(code, 2, "--report needs --seed: {out}");
    let _ = std::fs::remove_dir_all(&dir);
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
