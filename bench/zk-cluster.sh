#!/usr/bin/env bash
# Starts a 3-server ZooKeeper 3.8 ensemble (Debian's `zookeeper`) on loopback with ballot dev's
# ZooKeeper ports (clients 2181, 22181, 32181), durability on (ZooKeeper's defaults: forceSync,
# tickTime 2000), the heap zkServer.sh gives (1000 MB), data under $1; runs until killed.
set -euo pipefail
dir=${1:?data directory}
mkdir -p "$dir"
pids=()
for i in 1 2 3; do
  case $i in 1) c=2181 ;; 2) c=22181 ;; 3) c=32181 ;; esac
  mkdir -p "$dir/z$i/data"
  echo "$i" > "$dir/z$i/data/myid"
  cat > "$dir/z$i/zoo.cfg" <<CFG
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$dir/z$i/data
clientPort=$c
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=*
server.1=127.0.0.1:2888:3888
server.2=127.0.0.1:22888:23888
server.3=127.0.0.1:32888:33888
CFG
  java -Xmx1000m -cp /usr/share/java/zookeeper.jar:/usr/share/java/slf4j-nop.jar \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/z$i/zoo.cfg" > "$dir/z$i.log" 2>&1 &
  pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
wait
