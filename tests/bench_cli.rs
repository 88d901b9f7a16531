//! `ballot bench` against a real member: each workload runs, and its JSON report adds up.

mod common;

use std::time::Duration;

use common::Cluster;

fn bench(cluster: &Cluster, args: &[&str]) -> serde_json::Value {
    let endpoint = cluster.members[0].client.trim_start_matches("http://").to_string();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ballot"))
        .args(["bench", "--endpoints", &endpoint, "--json"])
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("a JSON report")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workload_runs_and_reports() {
    let cluster = Cluster::start("bench", 1, &[]);
    cluster.leader(Duration::from_secs(20)).await;
    let put = bench(&cluster, &["put", "--clients", "4", "--total", "200"]);
    assert_eq!(put["ops"], 200);
    assert_eq!(put["errors"], serde_json::json!({}));
    assert!(put["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
    assert!(put["longest_gap_ms"].as_f64().unwrap() > 0.0, "{put}");
    // The member listens on the endpoint's port on this machine: its CPU time is measured.
    assert_eq!(put["server_cpu"]["processes"], 1, "{put}");
    assert!(put["server_cpu"]["us_per_op"].as_f64().unwrap() > 0.0, "{put}");
    for workload in ["range", "mixed", "lease"] {
        let report = bench(&cluster, &[workload, "--clients", "2", "--total", "50", "--key-space", "20"]);
        assert_eq!(report["ops"], 50, "{workload}: {report}");
    }
    let serializable = bench(&cluster, &["range", "--consistency", "s", "--total", "50", "--key-space", "20"]);
    assert_eq!(serializable["ops"], 50);
    let cas = bench(&cluster, &["txn-cas", "--clients", "4", "--total", "100", "--key-space", "20"]);
    let rate = cas["cas_success_rate"].as_f64().unwrap();
    assert!(rate > 0.0 && rate <= 1.0, "{cas}");
    let watch = bench(&cluster, &["watch-latency", "--watchers", "5", "--total", "40"]);
    assert_eq!(watch["ops"], 200, "every watcher saw every put: {watch}");
    let fanout = bench(&cluster, &["watch-fanout", "--watchers", "5", "--clients", "2", "--total", "100"]);
    assert_eq!(fanout["puts"], 100, "{fanout}");
    assert_eq!(fanout["ops"], 500, "every watcher saw every put: {fanout}");
    assert_eq!(fanout["errors"], serde_json::json!({}));
}
