#!/usr/bin/env bash
# Measures what an online defragmentation costs a member that keeps taking writes: fills one
# member's store to about SIZE_MB (default 2048) with 16 KiB values over a key space written
# twice (so half the file is history), compacts, then defragments while `ballot bench put`
# writes small values, and reports the defragmentation's longest step on the Raft loop (the
# longest stall it caused), its duration, the file before and after, and the writes' latency
# during it. Needs etcdctl (installed from Debian if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb=${SIZE_MB:-2048}
ballot=${BALLOT_BIN:-target/release/ballot}
[ -x "$ballot" ] || cargo build --release --bin ballot
command -v etcdctl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-client >/dev/null; }

work=$(mktemp -d)
endpoint=127.0.0.1:2779
RUST_LOG=info,ballot_server::driver=debug "$ballot" serve --name d --data-dir "$work/d" \
  --listen-client-urls "http://$endpoint" --advertise-client-urls "http://$endpoint" \
  --listen-peer-urls http://127.0.0.1:2780 --initial-advertise-peer-urls http://127.0.0.1:2780 \
  --initial-cluster d=http://127.0.0.1:2780 --quota-backend-bytes $((size_mb * 4))000000 \
  > "$work/member.log" 2>&1 &
# (debug for the driver: each defragmentation step's duration is logged)
member=$!
trap 'kill $member 2>/dev/null || true; wait $member 2>/dev/null || true; rm -rf "$work"' EXIT
sleep 2
e() { ETCDCTL_API=3 etcdctl --endpoints="$endpoint" "$@"; }

keys=$((size_mb * 1024 / 16 / 2))
echo "== loading: $((keys * 2)) puts of 16 KiB over $keys keys"
start=$(date +%s)
"$ballot" bench put --endpoints "$endpoint" --conns 4 --clients 32 --val-size 16384 --key-size 16 \
  --key-space "$keys" --total $((keys * 2)) --json > "$work/load.json"
echo "loaded in $(( $(date +%s) - start )) s"
revision=$(e get x -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
e compaction --physical --command-timeout=600s "$revision" >/dev/null
before=$(stat -c %s "$work/d/db")
echo "store file: $((before / 1048576)) MiB after compacting to revision $revision"

echo "== 16 clients writing, without and then with a defragmentation"
"$ballot" bench put --endpoints "$endpoint" --conns 2 --clients 16 --duration 10 --json > "$work/baseline.json"
"$ballot" bench put --endpoints "$endpoint" --conns 2 --clients 16 --duration 25 --json > "$work/during.json" &
bench=$!
sleep 3
start_ms=$(date +%s%3N)
e defrag --command-timeout=900s
echo "etcdctl defrag took $(( $(date +%s%3N) - start_ms )) ms"
after=$(stat -c %s "$work/d/db")
wait $bench
echo "store file: $((before / 1048576)) MiB -> $((after / 1048576)) MiB"
grep -o 'defragmented.*' "$work/member.log" | tail -n 1
echo "slow WAL fsyncs during the run (ms):" $(grep -o 'slow fsync took_ms=[0-9]*' "$work/member.log" | tail -n 20 | cut -d= -f2 | sort -rn | head -5)
echo "slowest steps (ms):" $(grep -o 'defragment step took_ms=[0-9.]*' "$work/member.log" | cut -d= -f2 | sort -rn | head -5)
python3 - "$work/baseline.json" "$work/during.json" <<'EOF'
import json, sys
for name, path in (("without defrag", sys.argv[1]), ("defrag inside", sys.argv[2])):
    r = json.load(open(path))
    l = r["latency_ms"]
    print(f"{name:15} {r['ops']:7} puts {r['ops_per_sec']:7.0f}/s  p50 {l['p50']:.2f}  p99 {l['p99']:.2f}  "
          f"p99.9 {l['p999']:.2f}  max {l['max']:.2f} ms  errors {r['errors']}")
EOF
