#!/usr/bin/env bash
# Raft against Multi-Paxos on real processes: the same 3-member ballot cluster on loopback,
# once per engine and round, driven by the same client (`ballot bench`), durability on for
# both. Per engine: put throughput and latency at 1 and 64 clients, the server CPU per put, and
# the time from a kill -9 of the leader to the next acknowledged write (the mean of FAILOVERS
# kills per round). With ROUNDS rounds (default 3) the table gives medians.
#
#   bench/raft-vs-paxos.sh [ROUNDS] [SECONDS_PER_WORKLOAD] [FAILOVERS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
seconds=${2:-5}
failovers=${3:-5}
source bench/lib.sh
install_missing etcdctl:etcd-client python3:python3
cargo build --release --bin ballot -q
ballot=target/release/ballot
work=$(mktemp -d /var/tmp/ballot-paxos.XXXXXX)
results="$work/results.jsonl"
endpoints=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379
pids=()
stop_members() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
  sync
  sleep 1
}
trap 'stop_members; rm -rf "$work"' EXIT

member() { # i consensus data-dir: starts (or restarts) member i of the cluster
  local i=$1 c p
  case $i in 1) c=2379 ;; 2) c=22379 ;; 3) c=32379 ;; esac
  p=$((c + 1))
  "$ballot" serve --name "n$i" --data-dir "$3/n$i" --consensus "$2" \
    --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
    --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
    --initial-cluster "n1=http://127.0.0.1:2380,n2=http://127.0.0.1:22380,n3=http://127.0.0.1:32380" \
    >> "$3/n$i.log" 2>&1 &
  pids[$i]=$!
}

wait_ready() {
  for _ in $(seq 100); do
    if ETCDCTL_API=3 etcdctl --endpoints=$endpoints --command-timeout=1s put /compare/ready 1 >/dev/null 2>&1; then
      return
    fi
    sleep 0.2
  done
  echo "the cluster did not start"; exit 1
}

# Kills the leader (-9), times the first write acknowledged after it (appended to $work/failover,
# in ms), restarts the member and waits until the cluster is whole again. Not to be run in a
# subshell: it restarts the member, whose pid the script keeps.
failover() { # consensus data-dir
  local leader
  leader=$(ETCDCTL_API=3 etcdctl --endpoints=$endpoints endpoint status -w json 2>/dev/null | python3 -c '
import json, sys
for s in json.load(sys.stdin):
    if s["Status"]["leader"] == s["Status"]["header"]["member_id"]:
        print({"2379": 1, "22379": 2, "32379": 3}[s["Endpoint"].rsplit(":", 1)[1]])')
  kill -9 "${pids[$leader]}"
  wait "${pids[$leader]}" 2>/dev/null || true
  local others
  others=$(echo "$endpoints" | tr ',' '\n' | grep -v ":$(case $leader in 1) echo 2379 ;; 2) echo 22379 ;; 3) echo 32379 ;; esac)\$" | paste -sd,)
  python3 - "$others" >> "$work/failover" <<'PY'
import subprocess, sys, time
start = time.perf_counter()
while time.perf_counter() - start < 30:
    done = subprocess.run(["etcdctl", f"--endpoints={sys.argv[1]}", "--command-timeout=300ms", "put", "/failover", "x"],
                          env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}, capture_output=True)
    if done.returncode == 0:
        print(round((time.perf_counter() - start) * 1000))
        sys.exit(0)
print(-1)
PY
  member "$leader" "$1" "$2"
  wait_ready
  sleep 2
}

started=$(date +%s)
for round in $(seq "$rounds"); do
  for consensus in raft paxos; do
    echo "round $round: $consensus"
    data="$work/$consensus-$round"
    mkdir -p "$data"
    for i in 1 2 3; do member "$i" "$consensus" "$data"; done
    wait_ready
    run "$consensus" "$round" put-1 put --conns 1 --clients 1 --duration "$seconds" --key-space 100000
    run "$consensus" "$round" put-64 put --conns 8 --clients 64 --duration "$seconds" --key-space 100000
    run "$consensus" "$round" range-l-64 range --conns 8 --clients 64 --duration "$seconds" --key-space 1000
    : > "$work/failover"
    for _ in $(seq "$failovers"); do
      failover "$consensus" "$data"
    done
    record "$consensus" "$round" failover "{\"mean_ms\": $(python3 -c 'import sys; v=[int(l) for l in open(sys.argv[1])]; print(sum(v) / len(v))' "$work/failover")}"
    stop_members
  done
done
save_results raft-vs-paxos
echo "took $(( $(date +%s) - started )) s"

python3 - "$results" <<'PY'
import sys
sys.path.insert(0, "bench")
from results import Results, cpu
median = Results(sys.argv[1]).median
measures = [
    ("put 1 client, ops/s", "put-1", lambda r: r["ops_per_sec"]),
    ("put 1 client, p50 ms", "put-1", lambda r: r["latency_ms"]["p50"]),
    ("put 1 client, p99 ms", "put-1", lambda r: r["latency_ms"]["p99"]),
    ("put 1 client, server CPU us/op", "put-1", cpu),
    ("put 64 clients, ops/s", "put-64", lambda r: r["ops_per_sec"]),
    ("put 64 clients, p50 ms", "put-64", lambda r: r["latency_ms"]["p50"]),
    ("put 64 clients, p99 ms", "put-64", lambda r: r["latency_ms"]["p99"]),
    ("put 64 clients, server CPU us/op", "put-64", cpu),
    ("linearizable range 64 clients, ops/s", "range-l-64", lambda r: r["ops_per_sec"]),
    ("kill -9 of the leader to the next write, ms", "failover", lambda r: r["mean_ms"]),
]
print(f"\n{'measure':<46} {'raft':>10} {'paxos':>10} {'paxos/raft':>11}")
for label, name, pick in measures:
    r, p = median("raft", name, pick), median("paxos", name, pick)
    print(f"{label:<46} {r:>10.2f} {p:>10.2f} {p / r if r else float('nan'):>10.2f}×")
PY
