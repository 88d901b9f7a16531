#!/usr/bin/env bash
# Starts an etcd cluster of $2 members (default 3, at most 5) on loopback with ballot dev's ports
# (clients 2379, 22379, 32379, 42379, 52379), durability on (etcd's defaults: fsync on every
# commit), data under $1; runs until killed.
set -euo pipefail
dir=${1:?data directory}
n=${2:-3}
mkdir -p "$dir"
port() { if [ "$1" = 1 ]; then echo 2379; else echo $(( ($1 - 1) * 10000 + 12379 )); fi; }
cluster=""
for i in $(seq "$n"); do cluster="$cluster${cluster:+,}e$i=http://127.0.0.1:$(( $(port "$i") + 1 ))"; done
pids=()
for i in $(seq "$n"); do
  c=$(port "$i")
  p=$((c + 1))
  etcd --name "e$i" --data-dir "$dir/e$i" \
    --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
    --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
    --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token bench \
    > "$dir/e$i.log" 2>&1 &
  pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
wait
