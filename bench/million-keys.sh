#!/usr/bin/env bash
# Scale: etcd 3.4 and ballot, 3 members each on loopback, one after the other on the same disk,
# driven by the same client (`ballot bench`). For each system, on a fresh cluster:
#   1. put at 64 clients and a linearizable range at 64 clients over a 100k-key space (the
#      reference figures, in the same run);
#   2. load KEYS keys of 256 B (transactions of 100 puts, 16 clients), then put at 64 clients
#      over the KEYS-key space, linearizable and serializable range at 64 clients;
#   3. the members' resident memory and data-dir size;
#   4. a new fourth member: the time from its start until it serves the newest revision (it
#      catches up by snapshot: both systems run with a snapshot every 10,000 entries), while 16
#      clients put for 20 s (their longest stall shows what sending the snapshot costs the
#      cluster);
#   5. a restart of the whole cluster: the time until every member serves a serializable read.
#
#   bench/million-keys.sh [KEYS] [SECONDS_PER_WORKLOAD]     (defaults 1000000, 10)
#   TARGETS=ballot BALLOT=/path/to/an/older/ballot bench/million-keys.sh   (one system, a given binary)
set -euo pipefail
cd "$(dirname "$0")/.."
keys=${1:-1000000}
seconds=${2:-10}
source bench/lib.sh
install_missing etcd:etcd-server etcdctl:etcd-client python3:python3
if [ -z "${BALLOT:-}" ]; then cargo build --release --bin ballot -q; fi
ballot=${BALLOT:-target/release/ballot}
work=$(mktemp -d /var/tmp/ballot-million.XXXXXX)
results="$work/results.jsonl"
endpoints=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379
fourth=""
trap 'kill -TERM $fourth 2>/dev/null || true; stop_server; rm -rf "$work"' EXIT
# Both systems snapshot every 10,000 applied entries, so the new member gets a snapshot.
export ETCD_SNAPSHOT_COUNT=10000 BALLOT_SNAPSHOT_COUNT=10000
# etcd's default quota (2 GiB) would raise its NOSPACE alarm before a large KEYS is loaded.
export ETCD_QUOTA_BACKEND_BYTES=$((8 * 1024 * 1024 * 1024))
etcdctl() { ETCDCTL_API=3 command etcdctl --command-timeout=2s "$@"; }
now() { date +%s.%N; }
revision() { # endpoint [--consistency=s]: the revision the endpoint serves
  etcdctl --endpoints="$1" "${@:2}" get /compare/ready -w json 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])' 2>/dev/null || echo 0
}
last_key=$(printf "%08d" $((keys - 1)))
if [ ${#last_key} -gt 8 ]; then last_key=$((keys - 1)); fi

started=$(date +%s)
for target in ${TARGETS:-etcd ballot}; do
  echo "$target"
  data="$work/$target"
  start "$target" "$data"
  run "$target" 1 "put-64-100k" put --conns 8 --clients 64 --duration "$seconds" --key-space 100000
  run "$target" 1 "range-l-64-100k" range --conns 8 --clients 64 --duration "$seconds" --key-space 100000
  run "$target" 1 "load" load --conns 8 --clients 16 --key-space "$keys" --val-size 256
  run "$target" 1 "put-64-big" put --conns 8 --clients 64 --duration "$seconds" --key-space "$keys"
  run "$target" 1 "range-l-64-big" range --conns 8 --clients 64 --duration "$seconds" --key-space "$keys" --loaded
  run "$target" 1 "range-s-64-big" range --conns 8 --clients 64 --duration "$seconds" --key-space "$keys" --loaded --consistency s
  sleep 2
  record "$target" 1 "memory" "{\"rss_kib\": $(rss_kib "$target"), \"data_bytes\": $(du -sb "$data" | cut -f1)}"

  # A fourth member, from an empty data dir.
  etcdctl --endpoints=$endpoints put /compare/ready 2 >/dev/null
  newest=$(revision 127.0.0.1:2379)
  "$ballot" bench put --endpoints $endpoints --json --conns 4 --clients 16 --duration 20 --key-space "$keys" \
    > "$work/during.json" 2>/dev/null &
  during=$!
  sleep 1
  case $target in
    etcd)
      etcdctl --endpoints=$endpoints member add e4 --peer-urls=http://127.0.0.1:42380 >/dev/null
      t0=$(now)
      etcd --name e4 --data-dir "$data/e4" \
        --listen-client-urls http://127.0.0.1:42379 --advertise-client-urls http://127.0.0.1:42379 \
        --listen-peer-urls http://127.0.0.1:42380 --initial-advertise-peer-urls http://127.0.0.1:42380 \
        --initial-cluster e1=http://127.0.0.1:2380,e2=http://127.0.0.1:22380,e3=http://127.0.0.1:32380,e4=http://127.0.0.1:42380 \
        --initial-cluster-state existing --initial-cluster-token bench > "$data/e4.log" 2>&1 &
      ;;
    ballot)
      etcdctl --endpoints=$endpoints member add n4 --peer-urls=http://127.0.0.1:42380 >/dev/null
      t0=$(now)
      "$ballot" serve --name n4 --data-dir "$data/n4" \
        --listen-client-urls http://127.0.0.1:42379 --advertise-client-urls http://127.0.0.1:42379 \
        --listen-peer-urls http://127.0.0.1:42380 --initial-advertise-peer-urls http://127.0.0.1:42380 \
        --initial-cluster n1=http://127.0.0.1:2380,n2=http://127.0.0.1:22380,n3=http://127.0.0.1:32380,n4=http://127.0.0.1:42380 \
        --initial-cluster-state existing > "$data/n4.log" 2>&1 &
      ;;
  esac
  fourth=$!
  caught_up=""
  for _ in $(seq 1200); do
    if [ "$(revision 127.0.0.1:42379 --consistency=s)" -ge "$newest" ]; then caught_up=$(now); break; fi
    sleep 0.1
  done
  [ -n "$caught_up" ] || { echo "the fourth $target member did not catch up in 2 minutes"; tail -20 "$data/"*4.log; exit 1; }
  record "$target" 1 "catch-up" "{\"seconds\": $(python3 -c "print($caught_up - $t0)"), \"revision\": $newest, \"data_bytes\": $(du -sb "$data/"*4 | cut -f1)}"
  wait $during
  record "$target" 1 "put-16-during-catch-up" "$(cat "$work/during.json")"
  etcdctl --endpoints=$endpoints member remove "$(etcdctl --endpoints=$endpoints member list | awk -F', ' '$3 ~ /4$/ {print $1}')" >/dev/null
  kill -TERM $fourth; wait $fourth 2>/dev/null || true; fourth=""

  # A restart of the whole cluster.
  stop_server
  t0=$(now)
  case $target in
    etcd) bench/etcd-cluster.sh "$data" >/dev/null 2>&1 & ;;
    ballot) "$ballot" dev --data-dir "$data" >/dev/null 2>&1 & ;;
  esac
  server=$!
  serving=""
  for _ in $(seq 1200); do
    all=1
    for endpoint in ${endpoints//,/ }; do
      etcdctl --endpoints="$endpoint" get --consistency=s "$last_key" --print-value-only 2>/dev/null | grep -q v || { all=0; break; }
    done
    if [ $all = 1 ]; then serving=$(now); break; fi
    sleep 0.1
  done
  [ -n "$serving" ] || { echo "$target did not serve reads within 2 minutes of a restart"; exit 1; }
  record "$target" 1 "restart" "{\"seconds\": $(python3 -c "print($serving - $t0)"), \"rss_kib\": $(rss_kib "$target")}"
  stop_server
done
echo "took $(( $(date +%s) - started )) s"
mkdir -p target && cp "$results" target/million-keys-results.jsonl
echo "every figure: target/million-keys-results.jsonl"

python3 - "$results" "$keys" <<'PY'
import json, sys
rows = {(r["target"], r["name"]): r for r in map(json.loads, open(sys.argv[1]))}
keys = int(sys.argv[2])
def get(target, name, pick):
    row = rows.get((target, name))
    return pick(row) if row else float("nan")
ops = lambda r: r["ops_per_sec"]
cpu = lambda r: r["server_cpu"]["us_per_op"] if r.get("server_cpu") else float("nan")
measures = [
    (f"load {keys:,} keys, keys/s", "load", lambda r: keys / r["seconds"], True),
    ("put 64, 100k keys, ops/s", "put-64-100k", ops, True),
    (f"put 64, {keys:,} keys, ops/s", "put-64-big", ops, True),
    (f"put 64, {keys:,} keys, server CPU us/op", "put-64-big", cpu, False),
    (f"put 64, {keys:,} keys, p99 ms", "put-64-big", lambda r: r["latency_ms"]["p99"], False),
    ("linearizable range 64, 100k keys, ops/s", "range-l-64-100k", ops, True),
    (f"linearizable range 64, {keys:,} keys, ops/s", "range-l-64-big", ops, True),
    (f"serializable range 64, {keys:,} keys, ops/s", "range-s-64-big", ops, True),
    (f"RSS of 3 members at {keys:,} keys, MiB", "memory", lambda r: r["rss_kib"] / 1024, False),
    (f"data dirs at {keys:,} keys, MiB", "memory", lambda r: r["data_bytes"] / 2**20, False),
    ("new member: start to newest revision, s", "catch-up", lambda r: r["seconds"], False),
    ("new member's data dir, MiB", "catch-up", lambda r: r["data_bytes"] / 2**20, False),
    ("put 16 meanwhile: longest stall ms", "put-16-during-catch-up", lambda r: r["longest_gap_ms"], False),
    ("put 16 meanwhile: p99.9 ms", "put-16-during-catch-up", lambda r: r["latency_ms"]["p999"], False),
    ("restart: start to every member serving, s", "restart", lambda r: r["seconds"], False),
    ("RSS of 3 members just after restart, MiB", "restart", lambda r: r["rss_kib"] / 1024, False),
]
print(f"\n{'measure':<48} {'etcd':>10} {'ballot':>10} {'ballot/etcd':>12}")
for label, name, pick, _ in measures:
    e, b = get("etcd", name, pick), get("ballot", name, pick)
    print(f"{label:<48} {e:>10.2f} {b:>10.2f} {b / e if e else float('nan'):>11.2f}×")
for target in ("etcd", "ballot"):
    small, big = get(target, "put-64-100k", ops), get(target, "put-64-big", ops)
    rs, rb = get(target, "range-l-64-100k", ops), get(target, "range-l-64-big", ops)
    print(f"{target}: put at {keys:,} keys is {big / small:.2f}× its 100k-key figure, linearizable range {rb / rs:.2f}×")
PY
