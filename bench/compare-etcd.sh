#!/usr/bin/env bash
# Side by side: a 3-member etcd 3.4 cluster and a 3-member ballot cluster on loopback, one after
# the other on the same disk, durability on for both (no unsafe flags), driven by the same client
# (`ballot bench`). Each round runs etcd, then ballot; with ROUNDS rounds (default 3) the table
# reports medians. For each workload the table gives the CPU time all server processes used per
# operation (from /proc, the same way for both: `ballot bench` finds the processes listening on
# the endpoints' ports) and, for puts, the longest time without a completion (a stall). Also
# measures each server's resident memory and data-dir size after 100k puts of 256 B over a 100k-key
# space (about 63k distinct keys), and the disk's raw fsync rate (the floor under a 1-client put).
#
#   bench/compare-etcd.sh [ROUNDS] [SECONDS_PER_WORKLOAD]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
seconds=${2:-5}
# What a fresh Debian machine lacks: etcd itself, etcdctl (the readiness probe) and python3
# (the probes and the table).
source bench/lib.sh
install_missing etcd:etcd-server etcdctl:etcd-client python3:python3
cargo build --release --bin ballot -q
ballot=target/release/ballot
work=$(mktemp -d /var/tmp/ballot-compare.XXXXXX)
results="$work/results.jsonl"
endpoints=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379
trap 'stop_server; rm -rf "$work"' EXIT

memory() { # target round data-dir
  "$ballot" bench put --endpoints $endpoints --json --conns 8 --clients 64 --total 100000 --key-space 100000 --val-size 256 >/dev/null 2>&1
  sleep 2
  local rss disk
  rss=$(rss_kib "$1")
  disk=$(du -sb "$3" | cut -f1)
  record "$1" "$2" "memory" "{\"rss_kib\": $rss, \"data_bytes\": $disk}"
}

fsync_rate=$(python3 - "$work" <<'PY'
import os, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
start = time.time(); n = 0
while time.time() - start < 2:
    os.write(fd, b"x" * 512); os.fdatasync(fd); n += 1
os.close(fd); os.unlink(path)
print(round(n / (time.time() - start)))
PY
)
echo "raw fsync rate on this disk: $fsync_rate/s ($(python3 -c "print(round(1000/$fsync_rate, 3))") ms each)"
# Loopback TCP round trip: 2,000 one-byte ping-pongs with Nagle off, the median.
rtt_ms=$(python3 - <<'PY'
import socket, statistics, threading, time
server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen(1)
def echo():
    conn, _ = server.accept(); conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while (data := conn.recv(1)):
        conn.sendall(data)
threading.Thread(target=echo, daemon=True).start()
client = socket.create_connection(server.getsockname()); client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
samples = []
for _ in range(2000):
    start = time.perf_counter(); client.sendall(b"x"); client.recv(1); samples.append(time.perf_counter() - start)
print(round(statistics.median(samples) * 1000, 4))
PY
)
echo "loopback TCP round trip: $rtt_ms ms"

started=$(date +%s)
for round in $(seq "$rounds"); do
  for target in etcd ballot; do
    echo "round $round: $target"
    data="$work/$target-$round"
    start "$target" "$data"
    for clients in 1 16 64 256; do
      conns=$(( clients < 8 ? 1 : 8 ))
      run "$target" "$round" "put-$clients" put --conns $conns --clients $clients --duration "$seconds" --key-space 100000
    done
    run "$target" "$round" "range-l-64" range --conns 8 --clients 64 --duration "$seconds" --key-space 1000
    run "$target" "$round" "range-s-64" range --conns 8 --clients 64 --duration "$seconds" --key-space 1000 --consistency s
    run "$target" "$round" "txn-cas-16" txn-cas --conns 4 --clients 16 --duration "$seconds" --key-space 1000
    run "$target" "$round" "watch-100" watch-latency --conns 4 --watchers 100 --total 500
    run "$target" "$round" "watch-fanout-100" watch-fanout --conns 4 --watchers 100 --duration "$seconds"
    run "$target" "$round" "lease-16" lease --conns 4 --clients 16 --duration "$seconds"
    run "$target" "$round" "mixed-64" mixed --conns 8 --clients 64 --duration "$seconds" --key-space 1000
    memory "$target" "$round" "$data"
    stop_server
  done
done
save_results compare-etcd

python3 - "$results" "$fsync_rate" "$rtt_ms" <<'PY'
import sys
sys.path.insert(0, "bench")
from results import Results, cpu
median = Results(sys.argv[1]).median
fsync = float(sys.argv[2])
rtt = float(sys.argv[3])
measures = []
for clients in (1, 16, 64, 256):
    measures.append((f"put {clients} clients, ops/s", f"put-{clients}", lambda r: r["ops_per_sec"], True))
    measures.append((f"put {clients} clients, p99 ms", f"put-{clients}", lambda r: r["latency_ms"]["p99"], False))
    if clients >= 64:
        measures.append((f"put {clients} clients, p99.9 ms", f"put-{clients}", lambda r: r["latency_ms"]["p999"], False))
        measures.append((f"put {clients} clients, longest stall ms", f"put-{clients}", lambda r: r["longest_gap_ms"], False))
    measures.append((f"put {clients} clients, server CPU us/op", f"put-{clients}", cpu, False))
measures.append(("put 1 client, p50 ms", "put-1", lambda r: r["latency_ms"]["p50"], False))
for name, label in (("range-l-64", "linearizable range 64"), ("range-s-64", "serializable range 64"),
                    ("txn-cas-16", "txn-cas 16"), ("lease-16", "lease grant+keepalive+revoke 16"),
                    ("mixed-64", "mixed 64")):
    measures.append((f"{label}, ops/s", name, lambda r: r["ops_per_sec"], True))
    measures.append((f"{label}, server CPU us/op", name, cpu, False))
measures.append(("txn-cas 16, success rate", "txn-cas-16", lambda r: r["cas_success_rate"], True))
measures.append(("watch 100 watchers, p99 ms", "watch-100", lambda r: r["latency_ms"]["p99"], False))
measures.append(("watch fan-out 100, events/s", "watch-fanout-100", lambda r: r["ops_per_sec"], True))
measures.append(("watch fan-out 100, p50 ms", "watch-fanout-100", lambda r: r["latency_ms"]["p50"], False))
measures.append(("watch fan-out 100, p99 ms", "watch-fanout-100", lambda r: r["latency_ms"]["p99"], False))
measures.append(("watch fan-out 100, server CPU us/event", "watch-fanout-100", cpu, False))
measures.append(("RSS after 100k puts over 100k keys, MiB", "memory", lambda r: r["rss_kib"] / 1024, False))
measures.append(("data dir after the same, MiB", "memory", lambda r: r["data_bytes"] / 2**20, False))
print(f"\n{'measure':<44} {'etcd':>10} {'ballot':>10} {'ballot/etcd':>12}  better")
for label, name, pick, higher in measures:
    e, b = median("etcd", name, pick), median("ballot", name, pick)
    ratio = b / e if e else float("nan")
    better = "ballot" if (ratio > 1) == higher and ratio != 1 else "etcd"
    print(f"{label:<44} {e:>10.2f} {b:>10.2f} {ratio:>11.2f}×  {better}")
floor = 1000 / fsync + 2 * rtt
print(f"\nphysical floor of a 1-client put (one fsync {1000 / fsync:.3f} ms + two loopback round trips of {rtt:.3f} ms): ~{floor:.2f} ms; "
      f"ballot p50 is {median('ballot', 'put-1', lambda r: r['latency_ms']['p50']) / floor:.2f}× that")
PY
