//! kill -9 of a real process appending to the write-ahead log on a real disk: everything it
//! reported durable must be there after a restart, and the log must open cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn ballot() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ballot"))
}

#[test]
fn kill_9_while_appending_loses_nothing_that_was_reported_durable() {
    let dir = std::env::temp_dir().join(format!("ballot-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut durable = 0u64;
    for round in 0..5 {
        let mut child = ballot()
            .args(["wal", "append-loop", "--data-dir", dir.to_str().unwrap(), "--segment-bytes", "32768"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("ballot starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let started = Instant::now();
        let target = 40 + round * 13;
        let mut seen = 0;
        // Bounded: a number of fsyncs, or a few seconds, whichever comes first.
        while seen < target && started.elapsed() < Duration::from_secs(20) {
            let Some(Ok(line)) = lines.next() else { break };
            let index: u64 = line.strip_prefix("durable ").unwrap().parse().unwrap();
            assert!(index > durable, "indexes only grow");
            durable = index;
            seen += 1;
        }
        child.kill().expect("kill -9");
        child.wait().unwrap();
        let output = ballot().args(["wal", "check", "--data-dir", dir.to_str().unwrap()]).output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "round {round}: {text}");
        let last: u64 = text
            .lines()
            .find_map(|l| l.split("..=").nth(1).and_then(|rest| rest.split(' ').next()).and_then(|n| n.parse().ok()))
            .unwrap_or_else(|| panic!("no range in {text}"));
        assert!(last >= durable, "round {round}: reported durable up to {durable}, recovered only up to {last}");
        durable = last;
    }
    let output = ballot().args(["wal", "check", "--data-dir", dir.to_str().unwrap()]).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).trim_end().ends_with("wal: ok"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn wal_check_names_the_damage_and_repair_cuts_there() {
    let dir = std::env::temp_dir().join(format!("ballot-damage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = ballot()
        .args(["wal", "append-loop", "--data-dir", dir.to_str().unwrap(), "--batch", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..200 {
        lines.next();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let segment = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "wal"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[2000] ^= 0x40;
    std::fs::write(&segment, &bytes).unwrap();
    let output = ballot().args(["wal", "check", "--data-dir", dir.to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains(segment.file_name().unwrap().to_str().unwrap()) && text.contains("at byte"), "{text}");
    let output = ballot().args(["wal", "check", "--data-dir", dir.to_str().unwrap(), "--repair"]).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && text.contains("repair cut the log"), "{text}");
    let output = ballot().args(["wal", "check", "--data-dir", dir.to_str().unwrap()]).output().unwrap();
    assert!(output.status.success(), "after repair the log opens");
    let missing = ballot().args(["wal", "check", "--data-dir", "/nonexistent/ballot"]).output().unwrap();
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does not exist"));
    std::fs::remove_dir_all(&dir).unwrap();
}
