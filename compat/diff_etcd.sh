#!/usr/bin/env bash
# The differential checks: etcd 3.4 (Debian's etcd-server) and ballot, one fresh member each,
# side by side; the same requests to both, the answers compared. gRPC through every service
# (examples/diff_etcd.rs), then the JSON gateway (compat/diff_gateway.py). Known differences,
# with their reasons, are in docs/etcd-differences.md; any other fails the check.
set -euo pipefail
cd "$(dirname "$0")/.."
source compat/lib.sh
ballot=$(realpath "${BALLOT_BIN:-${CARGO_TARGET_DIR:-target}/debug/ballot}")
if ! command -v etcd >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi
cargo build -q --example diff_etcd
diff_etcd="${CARGO_TARGET_DIR:-target}/debug/examples/diff_etcd"
scratch
start_both() { # starts a fresh etcd and a fresh ballot; sets etcd_url and ballot_url
  local ec ep bc bp
  read -r -d "" ec ep bc bp < <(ports 4) || true
  rm -rf "$work/etcd" "$work/ballot"
  etcd --name e --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$ec" \
    --advertise-client-urls "http://127.0.0.1:$ec" --listen-peer-urls "http://127.0.0.1:$ep" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ep" --initial-cluster "e=http://127.0.0.1:$ep" \
    > "$work/etcd.log" 2>&1 &
  pids+=("$!")
  "$ballot" serve --name b --data-dir "$work/ballot" --listen-client-urls "http://127.0.0.1:$bc" \
    --advertise-client-urls "http://127.0.0.1:$bc" --listen-peer-urls "http://127.0.0.1:$bp" \
    --initial-advertise-peer-urls "http://127.0.0.1:$bp" --initial-cluster "b=http://127.0.0.1:$bp" \
    > "$work/ballot.log" 2>&1 &
  pids+=("$!")
  etcd_url="http://127.0.0.1:$ec"; ballot_url="http://127.0.0.1:$bc"
  for _ in $(seq 100); do
    curl -sf "$etcd_url/health" >/dev/null && curl -sf "$ballot_url/health" >/dev/null && return 0
    sleep 0.1
  done
  tail -n 20 "$work"/*.log
  echo "etcd or ballot did not start"
  return 1
}
stop_both() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}
echo "-- gRPC: every service"
start_both
"$diff_etcd" "$etcd_url" "$ballot_url" docs/etcd-differences.md
stop_both
echo "-- the JSON gateway"
start_both
python3 compat/diff_gateway.py "$etcd_url" "$ballot_url" docs/etcd-differences.md
