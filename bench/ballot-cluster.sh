#!/usr/bin/env bash
# Starts a 3-member ballot cluster on loopback with `ballot dev`'s ports (clients 2379, 22379,
# 32379; peers one above; ZooKeeper 2181, 22181, 32181), data under $2, as separate processes
# (unlike `ballot dev`, a member that dies leaves the others running: for failover timings);
# runs until killed. $1 is the ballot binary.
set -euo pipefail
ballot=${1:?ballot binary}
dir=${2:?data directory}
mkdir -p "$dir"
cluster="n1=http://127.0.0.1:2380,n2=http://127.0.0.1:22380,n3=http://127.0.0.1:32380"
pids=()
for i in 1 2 3; do
  case $i in 1) c=2379 z=2181 ;; 2) c=22379 z=22181 ;; 3) c=32379 z=32181 ;; esac
  p=$((c + 1))
  "$ballot" serve --name "n$i" --data-dir "$dir/n$i" \
    --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
    --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
    --initial-cluster "$cluster" --listen-zk-urls "127.0.0.1:$z" \
    > "$dir/n$i.log" 2>&1 &
  pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
wait
