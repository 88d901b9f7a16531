#!/usr/bin/env bash
# Snapshots of the same data in etcd 3.4 and in ballot, in the same run: loads one etcd member
# and one ballot member with the same puts (PUTS of VALUE bytes over KEYS keys, by
# `ballot bench put`), then times and sizes
#   etcdctl snapshot save   from etcd, and from ballot (etcd's format, built then streamed)
#   ballot snapshot save --format ballot   (ballot's own image, streamed as it is read)
#   ballot snapshot restore   of etcd's file and of ballot's etcd-format file
#   etcdctl snapshot restore  of etcd's file and of ballot's file
# Needs etcd and etcdctl (installed from Debian if missing). Loopback ports 12379-12380, 42379-42380.
set -euo pipefail
cd "$(dirname "$0")/.."
puts=${PUTS:-200000}
keys=${KEYS:-100000}
value=${VALUE:-1024}
ballot=${BALLOT_BIN:-target/release/ballot}
[ -x "$ballot" ] || cargo build --release --bin ballot
if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >/dev/null
fi
export ETCDCTL_API=3
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null || true; wait $p 2>/dev/null || true; done; rm -rf "$work"' EXIT
etcd --name e --data-dir "$work/e" --listen-client-urls http://127.0.0.1:12379 \
  --advertise-client-urls http://127.0.0.1:12379 --listen-peer-urls http://127.0.0.1:12380 \
  --initial-advertise-peer-urls http://127.0.0.1:12380 --initial-cluster e=http://127.0.0.1:12380 \
  --quota-backend-bytes 8000000000 > "$work/e.log" 2>&1 &
pids+=($!)
"$ballot" serve --name b --data-dir "$work/b" --listen-client-urls http://127.0.0.1:42379 \
  --advertise-client-urls http://127.0.0.1:42379 --listen-peer-urls http://127.0.0.1:42380 \
  --initial-advertise-peer-urls http://127.0.0.1:42380 --initial-cluster b=http://127.0.0.1:42380 \
  --quota-backend-bytes 8000000000 > "$work/b.log" 2>&1 &
pids+=($!)
sleep 3
for endpoint in 127.0.0.1:12379 127.0.0.1:42379; do
  "$ballot" bench put --endpoints "$endpoint" --conns 4 --clients 64 --val-size "$value" --key-size 16 \
    --key-space "$keys" --total "$puts" --json > /dev/null
done
timed() { # label, command...: prints "label seconds"
  local start end
  start=$(date +%s.%N)
  "${@:2}" > "$work/last.out" 2>&1 || { cat "$work/last.out"; exit 1; }
  end=$(date +%s.%N)
  printf '%-58s %6.2f s' "$1" "$(awk "BEGIN { print $end - $start }")"
}
size() { printf '  %6d MiB\n' $(( $(stat -c %s "$1") / 1048576 )); }
echo "$puts puts of $value bytes over $keys keys; etcd $(etcd --version | head -1 | awk '{print $3}')"
timed "etcdctl snapshot save (etcd)" etcdctl --endpoints 127.0.0.1:12379 snapshot save "$work/etcd.db"; size "$work/etcd.db"
timed "etcdctl snapshot save (ballot, etcd format)" etcdctl --endpoints 127.0.0.1:42379 snapshot save "$work/ballot.db"; size "$work/ballot.db"
timed "ballot snapshot save --format ballot" "$ballot" snapshot save --endpoints 127.0.0.1:42379 --format ballot "$work/ballot.image"; size "$work/ballot.image"
restore_ballot() {
  "$ballot" snapshot restore "$1" --name r --data-dir "$2" --initial-cluster r=http://127.0.0.1:2380 \
    --initial-advertise-peer-urls http://127.0.0.1:2380
}
restore_etcd() {
  etcdctl snapshot restore "$1" --name r --data-dir "$2" --initial-cluster r=http://127.0.0.1:2380 \
    --initial-advertise-peer-urls http://127.0.0.1:2380
}
timed "ballot snapshot restore (etcd's file)" restore_ballot "$work/etcd.db" "$work/r1"; echo
timed "ballot snapshot restore (ballot's etcd-format file)" restore_ballot "$work/ballot.db" "$work/r2"; echo
timed "ballot snapshot restore (ballot's own image)" restore_ballot "$work/ballot.image" "$work/r3"; echo
timed "etcdctl snapshot restore (etcd's file)" restore_etcd "$work/etcd.db" "$work/r4"; echo
timed "etcdctl snapshot restore (ballot's file)" restore_etcd "$work/ballot.db" "$work/r5"; echo
