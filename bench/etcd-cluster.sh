#!/usr/bin/env bash
# Starts a 3-member etcd cluster on loopback with ballot dev's ports (clients 2379, 22379, 32379),
# durability on (etcd's defaults: fsync on every commit), data under $1; runs until killed.
set -euo pipefail
dir=${1:?data directory}
mkdir -p "$dir"
cluster="e1=http://127.0.0.1:2380,e2=http://127.0.0.1:22380,e3=http://127.0.0.1:32380"
pids=()
for i in 1 2 3; do
  case $i in 1) c=2379 ;; 2) c=22379 ;; 3) c=32379 ;; esac
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
