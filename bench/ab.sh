#!/usr/bin/env bash
# Two ballot binaries side by side: before and after a change, alternating A, B in each round on
# a fresh 3-member `ballot dev` cluster, driven by the same client (B's `ballot bench`). Puts at
# 1, 16, 64 and 256 clients (in that order, so the 256-client run meets a log with segments to
# compact), the unthrottled watch fan-out and lease at 16; the table gives medians and B/A.
#
#   bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS] [SECONDS_PER_WORKLOAD]
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS] [SECONDS]"; exit 2; }
old=$(realpath "$1")
new=$(realpath "$2")
rounds=${3:-2}
seconds=${4:-5}
source bench/lib.sh
install_missing etcdctl:etcd-client python3:python3
client=$new
work=$(mktemp -d /var/tmp/ballot-ab.XXXXXX)
results="$work/results.jsonl"
endpoints=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379
trap 'stop_server; rm -rf "$work"' EXIT

for round in $(seq "$rounds"); do
  for target in A B; do
    echo "round $round: $target"
    case $target in A) ballot=$old ;; B) ballot=$new ;; esac
    start ballot "$work/$target-$round"
    run "$target" "$round" "put-1" put --conns 1 --clients 1 --duration "$seconds" --key-space 100000
    for clients in 16 64 256; do
      run "$target" "$round" "put-$clients" put --conns 8 --clients $clients --duration "$seconds" --key-space 100000
    done
    run "$target" "$round" "watch-fanout-100" watch-fanout --conns 4 --watchers 100 --duration "$seconds"
    run "$target" "$round" "lease-16" lease --conns 4 --clients 16 --duration "$seconds"
    stop_server
  done
done
mkdir -p target && cp "$results" target/ab-results.jsonl
echo "every round's figures: target/ab-results.jsonl"

python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
def values(target, name, pick):
    return [pick(r) for r in rows if r["target"] == target and r["name"] == name]
def cpu(r):
    return r["server_cpu"]["us_per_op"] if r.get("server_cpu") else float("nan")
measures = [("put 1 client, p50 ms", "put-1", lambda r: r["latency_ms"]["p50"])]
for clients in (1, 16, 64, 256):
    name = f"put-{clients}"
    measures += [(f"put {clients}, ops/s", name, lambda r: r["ops_per_sec"]),
                 (f"put {clients}, p99.9 ms", name, lambda r: r["latency_ms"]["p999"]),
                 (f"put {clients}, longest stall ms", name, lambda r: r["longest_gap_ms"]),
                 (f"put {clients}, stalls over 50 ms", name, lambda r: r.get("stalls_over_50ms", float("nan"))),
                 (f"put {clients}, server CPU us/op", name, cpu)]
measures += [("watch fan-out 100, events/s", "watch-fanout-100", lambda r: r["ops_per_sec"]),
             ("watch fan-out 100, p99 ms", "watch-fanout-100", lambda r: r["latency_ms"]["p99"]),
             ("watch fan-out 100, server CPU us/event", "watch-fanout-100", cpu),
             ("lease 16, ops/s", "lease-16", lambda r: r["ops_per_sec"]),
             ("lease 16, server CPU us/op", "lease-16", cpu)]
print(f"\n{'measure':<40} {'A (each round)':>22} {'B (each round)':>22} {'B/A':>6}")
for label, name, pick in measures:
    a, b = values("A", name, pick), values("B", name, pick)
    if not a or not b:
        continue
    ratio = statistics.median(b) / statistics.median(a) if statistics.median(a) else float("nan")
    show = lambda v: " / ".join(f"{x:.1f}" if x >= 10 else f"{x:.3f}" for x in v)
    print(f"{label:<40} {show(a):>22} {show(b):>22} {ratio:>6.2f}")
PY
