#!/usr/bin/env bash
# etcd's metrics on ballot: the alert rules of etcd's published mixin (compat/etcd-mixin), checked
# with promtool and evaluated by Prometheus against a running 3-member ballot cluster. Every
# metric the rules read must have data, every rule must evaluate without error, and etcdNoLeader
# must fire once a minority member is cut off from its peers.
set -euo pipefail
cd "$(dirname "$0")/.."
source compat/lib.sh
ballot=$(realpath "${BALLOT_BIN:-${CARGO_TARGET_DIR:-target}/debug/ballot}")
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
fi
echo "-- promtool: the mixin's rules and their unit tests"
promtool check rules compat/etcd-mixin/alerts.yaml >/dev/null
expect "promtool test rules" "SUCCESS" "$(promtool test rules compat/etcd-mixin/alerts.test.yaml 2>&1 | grep -o SUCCESS)"

scratch
read -r -d "" c1 c2 c3 p1 p2 p3 proxy3 prom < <(ports 8) || true
# Member 3's peers reach it through a proxy: stopping the proxy cuts it off (it still reaches
# them, and they still scrape as up).
python3 compat/tcp_proxy.py "$proxy3" "$p3" & proxy_pid=$!; pids+=("$proxy_pid")
cluster="n1=http://127.0.0.1:$p1,n2=http://127.0.0.1:$p2,n3=http://127.0.0.1:$proxy3"
start_member() { # name client peer advertised-peer
  "$ballot" serve --name "$1" --data-dir "$work/$1" --listen-client-urls "http://127.0.0.1:$2" \
    --advertise-client-urls "http://127.0.0.1:$2" --listen-peer-urls "http://127.0.0.1:$3" \
    --initial-advertise-peer-urls "http://127.0.0.1:$4" --initial-cluster "$cluster" \
    > "$work/$1.log" 2>&1 &
  pids+=("$!")
}
start_member n1 "$c1" "$p1" "$p1"
start_member n2 "$c2" "$p2" "$p2"
start_member n3 "$c3" "$p3" "$proxy3"
for _ in $(seq 100); do
  healthy=0
  for c in "$c1" "$c2" "$c3"; do curl -sf "http://127.0.0.1:$c/health" >/dev/null && healthy=$((healthy + 1)); done
  [ "$healthy" = 3 ] && break
  sleep 0.2
done
on_failure() { tail -n 20 "$work"/*.log; }
expect "members healthy" 3 "$healthy"

cat > "$work/prometheus.yml" <<CONFIG
global: {scrape_interval: 2s, evaluation_interval: 2s}
rule_files: [$PWD/compat/etcd-mixin/alerts.yaml]
scrape_configs:
  - job_name: etcd
    static_configs: [{targets: ['127.0.0.1:$c1', '127.0.0.1:$c2', '127.0.0.1:$c3']}]
CONFIG
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom" \
  --web.listen-address="127.0.0.1:$prom" > "$work/prometheus.log" 2>&1 & pids+=("$!")
api="http://127.0.0.1:$prom/api/v1"
# Traffic, so histograms and counters move: writes, reads, a watch, a lease.
export ETCDCTL_API=3
endpoints="127.0.0.1:$c1,127.0.0.1:$c2,127.0.0.1:$c3"
for i in $(seq 60); do etcdctl --endpoints "$endpoints" put "k$i" "v$i" >/dev/null; done
etcdctl --endpoints "$endpoints" get k --prefix >/dev/null
timeout 3 etcdctl --endpoints "$endpoints" watch k1 >/dev/null 2>&1 || true
etcdctl --endpoints "$endpoints" lease grant 30 >/dev/null
sleep 12

query() { curl -sf --get "$api/query" --data-urlencode "query=$1"; }
has_data() { query "$1" | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["data"]["result"] else 1)'; }
echo "-- every metric the rules read has data from every member (or, for the leader's own, from one)"
for metric in etcd_server_has_leader etcd_server_leader_changes_seen_total etcd_server_proposals_failed_total \
  etcd_network_peer_sent_failures_total etcd_disk_wal_fsync_duration_seconds_bucket \
  etcd_disk_backend_commit_duration_seconds_bucket etcd_mvcc_db_total_size_in_bytes \
  etcd_mvcc_db_total_size_in_use_in_bytes etcd_server_quota_backend_bytes grpc_server_handled_total \
  grpc_server_handling_seconds_bucket; do
  count=$(query "count(count by (instance) ($metric{job=\"etcd\"}))" | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)')
  expect "$metric on 3 members" 3 "$count"
done
expect "etcd_network_peer_round_trip_time_seconds_bucket (the leader's)" 0 \
  "$(has_data 'etcd_network_peer_round_trip_time_seconds_bucket{job="etcd"}'; echo $?)"
echo "-- every rule evaluates without error"
rules=$(curl -sf "$api/rules")
summary=$(echo "$rules" | python3 -c '
import json, sys
rules = [r for g in json.load(sys.stdin)["data"]["groups"] for r in g["rules"]]
bad = [r["name"] + ": " + r.get("lastError", "") for r in rules if r.get("health") != "ok"]
print(len(rules), "rules;", "; ".join(bad) if bad else "all ok")')
expect "rule health" "15 rules; all ok" "$summary"

echo "-- member 3 cut off from its peers: etcdNoLeader fires for it (for: 1m)"
kill "$proxy_pid"
fired=""
for _ in $(seq 120); do
  fired=$(curl -sf "$api/alerts" | python3 -c '
import json, sys
alerts = json.load(sys.stdin)["data"]["alerts"]
print(" ".join(a["labels"]["instance"] for a in alerts if a["labels"]["alertname"] == "etcdNoLeader" and a["state"] == "firing"))')
  [ -n "$fired" ] && break
  sleep 2
done
expect "etcdNoLeader firing for" "127.0.0.1:$c3" "$fired"
echo "metrics: $checks checks passed"
