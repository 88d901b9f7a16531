#!/usr/bin/env bash
# The three read levels side by side: range throughput, p99 and server CPU per read with 64
# clients spread over every member, for linearizable (ReadIndex through the leader), causal
# (any member, once it has applied what the client has seen: `ballot-min-revision`) and
# serializable (any member, as stale as it is) reads; 3 and 5 members. etcd 3.4 runs the
# linearizable and serializable ones on the same machine in the same run, for reference (it has
# no causal level). Each round runs etcd, then ballot; the table reports medians over ROUNDS.
#
#   bench/read-levels.sh [ROUNDS] [SECONDS_PER_RUN]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
seconds=${2:-5}
source bench/lib.sh
install_missing etcd:etcd-server etcdctl:etcd-client python3:python3
cargo build --release --bin ballot -q
ballot=target/release/ballot
work=$(mktemp -d /var/tmp/ballot-read-levels.XXXXXX)
results="$work/results.jsonl"
trap 'stop_server; rm -rf "$work"' EXIT

port() { if [ "$1" = 1 ]; then echo 2379; else echo $(( ($1 - 1) * 10000 + 12379 )); fi; }
started=$(date +%s)
for members in 3 5; do
  endpoints=""
  for i in $(seq "$members"); do endpoints="$endpoints${endpoints:+,}127.0.0.1:$(port "$i")"; done
  for round in $(seq "$rounds"); do
    for target in etcd ballot; do
      echo "$members members, round $round: $target"
      start "$target" "$work/$target-$members-$round"
      levels="l s"
      [ "$target" = ballot ] && levels="l c s"
      for level in $levels; do
        # Two connections per member, the 64 clients spread over them.
        run "$target" "$round" "range-$level-$members" range --conns $((2 * members)) --clients 64 \
          --duration "$seconds" --key-space 1000 --consistency "$level"
      done
      stop_server
    done
  done
done
save_results read-levels

python3 - "$results" <<'PY'
import sys
sys.path.insert(0, "bench")
from results import Results, cpu
median = Results(sys.argv[1]).median
print(f"\n{'members':>7} {'level':<13} {'ballot ops/s':>12} {'p99 ms':>7} {'CPU us/op':>9} {'etcd ops/s':>10} {'p99 ms':>7} {'CPU us/op':>9} {'ballot/etcd':>11}")
names = {"l": "linearizable", "c": "causal", "s": "serializable"}
for members in (3, 5):
    for level in "lcs":
        name = f"range-{level}-{members}"
        b = [median("ballot", name, f) for f in (lambda r: r["ops_per_sec"], lambda r: r["latency_ms"]["p99"], cpu)]
        e = [median("etcd", name, f) for f in (lambda r: r["ops_per_sec"], lambda r: r["latency_ms"]["p99"], cpu)]
        ratio = b[0] / e[0] if e[0] == e[0] and e[0] else float("nan")
        print(f"{members:>7} {names[level]:<13} {b[0]:>12.0f} {b[1]:>7.2f} {b[2]:>9.1f} {e[0]:>10.0f} {e[1]:>7.2f} {e[2]:>9.1f} {ratio:>10.2f}×")
for members in (3, 5):
    s, c = (median("ballot", f"range-{level}-{members}", lambda r: r["ops_per_sec"]) for level in "sc")
    print(f"{members} members: causal reads at {c / s:.2f}× the serializable throughput")
PY
