#!/usr/bin/env bash
# Side by side: a 3-server ZooKeeper 3.8 ensemble and a 3-member ballot cluster on loopback, one
# after the other on the same disk, durability on for both, driven by the same client (`ballot
# bench`'s ZooKeeper workloads, one blocking session per client thread) on the same ports
# (2181, 22181, 32181). Each round runs ZooKeeper, then ballot; with ROUNDS rounds (default 3)
# the table reports medians (each system warmed up for 5 s first): create, setData and getData at 1, 64 and 256 clients, watch-event
# latency with 100 watchers, sessions opened and closed per second, server CPU per operation.
# Round 1 also times a session's expiry after its client is killed and a client's reconnection
# after its member is killed (bench/zk_failover.py, with kazoo in target/zk-venv).
# With MEMORY=1, also the resident memory of each system's three processes after 1 million
# znodes of 100 B (loaded by 64 clients; several minutes per system).
#
#   bench/compare-zookeeper.sh [ROUNDS] [SECONDS_PER_WORKLOAD]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
seconds=${2:-5}
source bench/lib.sh
install_missing java:zookeeper python3:python3
[ -f /usr/share/java/zookeeper.jar ] || install_missing zkCli.sh:zookeeper
cargo build --release --bin ballot -q
ballot=target/release/ballot
venv=${BALLOT_ZK_VENV:-target/zk-venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import kazoo' 2>/dev/null; then
  python3 -m venv "$venv" && "$venv/bin/pip" install -q kazoo==2.11.0
fi
work=$(mktemp -d /var/tmp/ballot-compare-zk.XXXXXX)
results="$work/results.jsonl"
endpoints=127.0.0.1:2181,127.0.0.1:22181,127.0.0.1:32181
zk_server=""
stop_zk() {
  stop_server
  if [ -n "$zk_server" ]; then
    kill -TERM "$zk_server" 2>/dev/null || true
    wait "$zk_server" 2>/dev/null || true
    zk_server=""
  fi
  pkill -f "QuorumPeerMain $work" 2>/dev/null || true
  sync
  sleep 1
}
trap 'stop_zk; rm -rf "$work"' EXIT

start_zk() { # target data-dir: starts the cluster and waits until every server serves
  case $1 in
    zookeeper) bench/zk-cluster.sh "$2" >/dev/null 2>&1 & zk_server=$! ;;
    ballot) bench/ballot-cluster.sh "$ballot" "$2" >/dev/null 2>&1 & server=$! ;;
  esac
  for _ in $(seq 300); do
    python3 compat/zk_ready.py "$endpoints" && return
    sleep 0.2
  done
  echo "$1 did not start"; exit 1
}

zk_rss_kib() { # target: the resident memory of its three processes, KiB
  local pattern rss=0
  case $1 in zookeeper) pattern="QuorumPeerMain $work" ;; ballot) pattern="serve --name n[123] --data-dir $work" ;; esac
  for pid in $(pgrep -f "$pattern"); do rss=$((rss + $(ps -o rss= -p "$pid"))); done
  echo "$rss"
}

started=$(date +%s)
for round in $(seq "$rounds"); do
  for target in zookeeper ballot; do
    echo "round $round: $target"
    data="$work/$target-$round"
    start_zk "$target" "$data"
    # Warm up (the JVM compiles its hot paths in the first seconds); not recorded.
    "$ballot" bench zk-set --endpoints $endpoints --clients 64 --duration 5 >/dev/null 2>&1
    for clients in 1 64 256; do
      run "$target" "$round" "create-$clients" zk-create --clients $clients --duration "$seconds" --val-size 100
      run "$target" "$round" "set-$clients" zk-set --clients $clients --duration "$seconds" --val-size 100
      run "$target" "$round" "get-$clients" zk-get --clients $clients --duration "$seconds" --val-size 100
    done
    run "$target" "$round" "watch-100" zk-watch --watchers 100 --total 20000
    run "$target" "$round" "session-16" zk-session --clients 16 --duration "$seconds"
    if [ "${MEMORY:-0}" = 1 ] && [ "$round" = 1 ]; then
      "$ballot" bench zk-create --endpoints $endpoints --clients 64 --total 1000000 --val-size 100 >/dev/null 2>&1
      sleep 5
      record "$target" "$round" "memory" "{\"rss_kib\": $(zk_rss_kib "$target")}"
    fi
    if [ "$round" = 1 ]; then
      pairs=""
      for i in 1 2 3; do
        case $i in 1) port=2181 ;; 2) port=22181 ;; 3) port=32181 ;; esac
        case $target in
          zookeeper) pid=$(pgrep -f "QuorumPeerMain $data/z$i/zoo.cfg") ;;
          ballot) pid=$(pgrep -f "serve --name n$i --data-dir $data") ;;
        esac
        pairs="$pairs${pairs:+,}$port=$pid"
      done
      failover=$(timeout 180 "$venv/bin/python" bench/zk_failover.py "$endpoints" "$pairs" 2>/dev/null || echo '{}')
      record "$target" "$round" "failover" "$failover"
    fi
    stop_zk
  done
done
save_results compare-zookeeper

python3 - "$results" <<'PY'
import sys
sys.path.insert(0, "bench")
from results import Results, cpu
median = Results(sys.argv[1]).median
measures = []
for op in ("create", "set", "get"):
    for clients in (1, 64, 256):
        name = f"{op}-{clients}"
        measures.append((f"{op} {clients} clients, ops/s", name, lambda r: r["ops_per_sec"], True))
        measures.append((f"{op} {clients} clients, p99 ms", name, lambda r: r["latency_ms"]["p99"], False))
        measures.append((f"{op} {clients} clients, server CPU us/op", name, cpu, False))
measures.append(("create 1 client, p50 ms", "create-1", lambda r: r["latency_ms"]["p50"], False))
measures.append(("watch event, 100 watchers, p50 ms", "watch-100", lambda r: r["latency_ms"]["p50"], False))
measures.append(("watch event, 100 watchers, p99 ms", "watch-100", lambda r: r["latency_ms"]["p99"], False))
measures.append(("sessions opened+closed/s, 16 clients", "session-16", lambda r: r["ops_per_sec"], True))
measures.append(("session expiry after its client dies, s (4 s session)", "failover", lambda r: r.get("expiry_s") or float("nan"), False))
measures.append(("reconnection after its member dies, s", "failover", lambda r: r.get("reconnect_s") or float("nan"), False))
measures.append(("RSS with 1M znodes of 100 B, MiB", "memory", lambda r: r["rss_kib"] / 1024, False))
print(f"\n{'measure':<44} {'zookeeper':>10} {'ballot':>10} {'ballot/zk':>10}  better")
for label, name, pick, higher in measures:
    z, b = median("zookeeper", name, pick), median("ballot", name, pick)
    ratio = b / z if z else float("nan")
    better = "ballot" if (ratio > 1) == higher and ratio != 1 else "zookeeper"
    print(f"{label:<44} {z:>10.2f} {b:>10.2f} {ratio:>9.2f}×  {better}")
PY
