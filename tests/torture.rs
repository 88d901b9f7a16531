//! Process tests of `ballot torture` itself: a short run passes, and (in a build with
//! `--features fault-injection`) a server with an injected stale-read bug is caught.

use std::process::Command;

/// One torture run at a time: each starts a cluster on ports it picked free, and runs side by
/// side (the test harness's threads) raced for them (a member failed to bind its peer port).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn torture(args: &[&str]) -> (bool, String) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let out = std::env::temp_dir().join(format!("ballot-torture-test-{}-{}", std::process::id(), args.join("-")));
    let _ = std::fs::remove_dir_all(&out);
    let output = Command::new(env!("CARGO_BIN_EXE_ballot"))
        .arg("torture")
        .args(args)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("ballot torture runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let last = stdout.lines().last().unwrap_or_default().to_string();
    if output.status.success() {
        let _ = std::fs::remove_dir_all(&out);
    }
    eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    (output.status.success(), last)
}

#[test]
fn a_short_run_under_kills_and_partitions_is_linearizable_and_converges() {
    let (passed, last) = torture(&["--nodes", "3", "--duration", "12", "--nemesis", "kill,partition", "--seed", "11"]);
    assert!(passed, "{last}");
    assert!(last.starts_with("linearizable: true, "), "{last}");
}

#[test]
fn causal_sessions_hold_through_partitions_and_pauses() {
    let (passed, last) =
        torture(&["--workload", "causal", "--duration", "12", "--nemesis", "partition,pause", "--seed", "21"]);
    assert!(passed, "{last}");
    assert!(last.starts_with("causal: true, "), "{last}");
}

/// The causal checker can fail: the same workload with plain serializable reads (no session
/// revision) reads behind its own writes on a lagging member, and is caught.
#[test]
fn serializable_reads_break_the_session_guarantees() {
    let (passed, last) = torture(&[
        "--workload",
        "causal",
        "--consistency",
        "serializable",
        "--duration",
        "10",
        "--nemesis",
        "partition,pause",
        "--seed",
        "22",
    ]);
    assert!(!passed, "{last}");
    assert!(last.starts_with("causal: false, "), "{last}");
}

/// The harness can fail: members that serve linearizable reads without ReadIndex answer with
/// stale data from the minority side of a partition, and the checker says so.
#[cfg(feature = "fault-injection")]
#[test]
fn stale_reads_under_partitions_are_caught() {
    let mut verdicts = Vec::new();
    for seed in ["2", "3", "4"] {
        let (passed, last) = torture(&[
            "--nodes",
            "3",
            "--duration",
            "25",
            "--nemesis",
            "partition",
            "--keys",
            "2",
            "--seed",
            seed,
            "--inject-bug",
            "stale-reads",
        ]);
        if !passed && last.starts_with("linearizable: false, ") {
            return;
        }
        verdicts.push(last);
    }
    panic!("three runs with stale reads all passed: {verdicts:?}");
}

/// The chapter's warning about leases and clocks, shown: with lease reads on, a leader whose
/// lease clock runs at a twentieth of real speed (beyond the lease's margin) keeps answering
/// from its lease after it was cut off and the others elected a leader that took writes, and
/// the checker catches its stale reads. (With ReadIndex, the default, the same faults keep
/// every run linearizable: the clock nemesis is part of `all` in CI's runs.) Needs libfaketime,
/// which `.ci/run` installs.
#[cfg(feature = "fault-injection")]
#[test]
fn lease_reads_on_a_slow_clock_are_caught() {
    let mut verdicts = Vec::new();
    for seed in ["41", "42", "43"] {
        let (passed, last) = torture(&[
            "--nodes",
            "3",
            "--duration",
            "30",
            "--nemesis",
            "clock",
            "--keys",
            "2",
            "--clients",
            "12",
            "--lease-reads",
            "--seed",
            seed,
        ]);
        if !passed && last.starts_with("linearizable: false, ") {
            return;
        }
        verdicts.push(last);
    }
    panic!("three runs of lease reads on a slow clock all passed: {verdicts:?}");
}
