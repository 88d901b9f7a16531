#!/usr/bin/env bash
# Patroni on ballot: three Patroni members, each with its PostgreSQL on loopback, keep one
# primary through elections held in ballot (3 members), through etcd's JSON gateway, which is
# all Patroni's etcd3 backend speaks. Checked, with the time of each step printed:
#   bootstrap to one primary and two streaming replicas;
#   kill -9 of the primary's Patroni and PostgreSQL: a new primary that takes writes and has
#     the rows written before;
#   the killed member rejoins as a replica;
#   kill -9 of the store's leader: the primary stays the primary (the lease on its leader key
#     outlives the store's election) and takes writes;
#   `patronictl switchover` moves the primary;
#   and at no time do two members say they are the primary (each member's REST API is asked,
#     every 200 ms, throughout).
# `compat/patroni.sh etcd` runs the same against etcd 3.4 (BENCHMARKS.md has both sets of times).
set -euo pipefail
cd "$(dirname "$0")/.."
source compat/lib.sh
target=${1:-ballot}
ballot=$(realpath "${BALLOT_BIN:-${CARGO_TARGET_DIR:-target}/debug/ballot}")
if ! command -v patroni >/dev/null 2>&1 || [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq patroni postgresql >/dev/null
fi
if [ "$target" = etcd ] && ! command -v etcd >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi
bin_dir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)

work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  pkill -9 -f "patroni $work/" 2>/dev/null || true
  pkill -9 -f "$work/pg" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
on_failure() {
  for log in "$work"/*.log; do echo "--- $log"; tail -n 15 "$log"; done
}
started=$(date +%s.%N)
elapsed() { python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$(date +%s.%N)"; }
step_at=$started
timed() { # prints the time since the previous step
  echo "time: $1: $(elapsed "$step_at") s"
  step_at=$(date +%s.%N)
}

# Twelve distinct ports: client and peer for the store's members, REST API and PostgreSQL for
# Patroni's.
mapfile -t free < <(ports 12)
# The store: three members of ballot, or of etcd 3.4.
clients=()
cluster=""
for i in 1 2 3; do
  c=${free[$((2 * i - 2))]} p=${free[$((2 * i - 1))]}
  clients+=("$c")
  cluster="$cluster${cluster:+,}s$i=http://127.0.0.1:$p"
  eval "peer$i=$p"
done
start_store() { # member number
  local c=${clients[$(($1 - 1))]} p; p=$(eval echo "\$peer$1")
  local flags=(--name "s$1" --data-dir "$work/s$1" --listen-client-urls "http://127.0.0.1:$c"
    --advertise-client-urls "http://127.0.0.1:$c" --listen-peer-urls "http://127.0.0.1:$p"
    --initial-advertise-peer-urls "http://127.0.0.1:$p" --initial-cluster "$cluster")
  if [ "$target" = etcd ]; then etcd "${flags[@]}" >> "$work/s$1.log" 2>&1 &
  else "$ballot" serve "${flags[@]}" >> "$work/s$1.log" 2>&1 &
  fi
  eval "store$1=$!"
  pids+=("$!")
}
for i in 1 2 3; do start_store "$i"; done
hosts="127.0.0.1:${clients[0]},127.0.0.1:${clients[1]},127.0.0.1:${clients[2]}"
for _ in $(seq 100); do curl -sf "http://127.0.0.1:${clients[0]}/health" >/dev/null && break; sleep 0.1; done
echo "$target: $hosts"

# Three Patroni members (as the postgres user: PostgreSQL refuses to run as root).
rest=(); pg=()
for i in 1 2 3; do
  r=${free[$((4 + 2 * i))]} q=${free[$((5 + 2 * i))]}
  rest+=("$r"); pg+=("$q")
  cat > "$work/pg$i.yml" <<CONFIG
scope: ballot-compat
name: pg$i
restapi: {listen: 127.0.0.1:$r, connect_address: 127.0.0.1:$r}
etcd3: {hosts: "$hosts", protocol: http}
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 4
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      parameters: {wal_level: replica, hot_standby: "on", max_wal_senders: 10, max_replication_slots: 10, wal_log_hints: "on"}
  initdb: [{encoding: UTF8}]
  pg_hba: [host replication replicator 127.0.0.1/32 md5, host all all 127.0.0.1/32 md5]
postgresql:
  listen: 127.0.0.1:$q
  connect_address: 127.0.0.1:$q
  data_dir: $work/pg$i/data
  bin_dir: $bin_dir
  pgpass: $work/pg$i/pgpass
  authentication:
    replication: {username: replicator, password: replicator-pass}
    superuser: {username: postgres, password: postgres-pass}
    rewind: {username: rewinder, password: rewinder-pass}
  parameters: {unix_socket_directories: "$work/pg$i", shared_buffers: 16MB}
CONFIG
  mkdir -p "$work/pg$i"
  chown -R postgres:postgres "$work/pg$i" "$work/pg$i.yml"
done
start_patroni() { # member number
  runuser -u postgres -- patroni "$work/pg$1.yml" > "$work/pg$1.log" 2>&1 &
  pids+=("$!")
}
for i in 1 2 3; do start_patroni "$i"; done

role_of() { # member number: primary, replica, or down (its REST API's own view)
  local r=${rest[$(($1 - 1))]}
  if curl -sf -o /dev/null "http://127.0.0.1:$r/primary"; then echo primary
  elif curl -sf -o /dev/null "http://127.0.0.1:$r/replica"; then echo replica
  else echo down
  fi
}
roles() { echo "$(role_of 1) $(role_of 2) $(role_of 3)"; }
primary() { for i in 1 2 3; do [ "$(role_of "$i")" = primary ] && { echo "$i"; return; }; done; echo 0; }
# The watchdog of the whole run: two primaries at once is the failure Patroni exists to prevent.
(
  while true; do
    r=$(roles)
    count=$(echo "$r" | tr ' ' '\n' | grep -c primary || true)
    if [ "$count" -gt 1 ]; then echo "TWO PRIMARIES: $r" >> "$work/split-brain"; fi
    sleep 0.2
  done
) &
watcher=$!
pids+=("$watcher")

wait_for() { # description, command that must print what is expected, expected, seconds
  local value=""
  for _ in $(seq $(($4 * 5))); do
    value=$(eval "$2" 2>/dev/null || true)
    [ "$value" = "$3" ] && break
    sleep 0.2
  done
  expect "$1" "$3" "$value"
}
replicas_streaming() { # the primary's count of streaming replicas
  local p; p=$(primary)
  [ "$p" = 0 ] && { echo 0; return; }
  sql "$p" "select count(*) from pg_stat_replication where state = 'streaming'"
}
sql() { # member number, statement: the first column of the answer
  PGPASSWORD=postgres-pass psql -h 127.0.0.1 -p "${pg[$(($1 - 1))]}" -U postgres -d postgres -tAc "$2"
}

echo "-- bootstrap"
wait_for "one primary" 'roles | tr " " "\n" | grep -c primary' 1 90
wait_for "two replicas streaming" replicas_streaming 2 90
timed "bootstrap to a primary and two streaming replicas"
first=$(primary)
sql "$first" "create table ledger (id int primary key, note text)" >/dev/null
sql "$first" "insert into ledger select g, 'before the failover' from generate_series(1, 100) g" >/dev/null
expect "rows written on the primary" 100 "$(sql "$first" "select count(*) from ledger")"
# Replication is asynchronous: rows the replicas have not replayed may be lost in a failover,
# by PostgreSQL's design, not the store's. Wait until both have them.
for i in 1 2 3; do
  [ "$i" = "$first" ] && continue
  wait_for "pg$i has replayed the rows" "sql $i 'select count(*) from ledger'" 100 30
done

echo "-- kill -9 of the primary's Patroni and PostgreSQL (pg$first)"
step_at=$(date +%s.%N)
# runuser's child is Patroni itself: kill it by its configuration file, then PostgreSQL.
pkill -9 -f "patroni $work/pg$first.yml" || true
pkill -9 -f "$work/pg$first/data" || true
wait_for "a new primary among the others" 'p=$(primary); [ "$p" != 0 ] && [ "$p" != "$first" ] && echo yes' yes 90
timed "kill -9 of the primary to a new primary"
second=$(primary)
sql "$second" "insert into ledger values (101, 'after the failover')" >/dev/null
expect "the new primary takes writes and has the rows from before" 101 "$(sql "$second" "select count(*) from ledger")"

echo "-- the killed member rejoins"
step_at=$(date +%s.%N)
start_patroni "$first"
wait_for "pg$first rejoins as a replica" "role_of $first" replica 120
wait_for "two replicas streaming again" replicas_streaming 2 120
timed "restart of the killed member to a streaming replica"
wait_for "the rejoined replica has every row" "sql $first 'select count(*) from ledger'" 101 60

echo "-- kill -9 of the store's leader"
store_leader() { # the member number of the store's leader, asked through the JSON gateway
  local i answer
  for i in 1 2 3; do
    answer=$(curl -sf -m 2 -X POST -d '{}' "http://127.0.0.1:${clients[$((i - 1))]}/v3/maintenance/status") || continue
    python3 -c 'import json, sys; d = json.loads(sys.argv[1]); sys.exit(d["header"]["member_id"] != d["leader"])' "$answer" \
      && { echo "$i"; return; }
  done
  echo 0
}
holder=$(primary)
dead=$(store_leader)
[ "$dead" != 0 ] || expect "the store has a leader" "a member" "none"
kill -9 "$(eval echo "\$store$dead")"
step_at=$(date +%s.%N)
wait_for "the store elects a new leader" 'l=$(store_leader); [ "$l" != 0 ] && echo yes' yes 30
timed "kill -9 of the store's leader to a new store leader"
# Longer than Patroni's ttl (10 s): the leader key's lease must outlive the store's election.
for _ in $(seq 15); do
  sleep 1
  [ "$(primary)" = "$holder" ] || break
done
expect "pg$holder stays the primary through the store's leader change" "$holder" "$(primary)"
sql "$holder" "insert into ledger values (102, 'after the store lost its leader')" >/dev/null
expect "the primary takes writes" 102 "$(sql "$holder" "select count(*) from ledger")"
start_store "$dead"
wait_for "the killed store member serves again" "curl -sf -o /dev/null -w '%{http_code}' http://127.0.0.1:${clients[$((dead - 1))]}/health" 200 60

echo "-- switchover"
candidate=$first
step_at=$(date +%s.%N)
runuser -u postgres -- patronictl -c "$work/pg1.yml" switchover --master "pg$second" --candidate "pg$candidate" --force > "$work/switchover.log" 2>&1 \
  || runuser -u postgres -- patronictl -c "$work/pg1.yml" switchover --leader "pg$second" --candidate "pg$candidate" --force >> "$work/switchover.log" 2>&1
wait_for "pg$candidate is the primary" primary "$candidate" 60
timed "patronictl switchover to the new primary"
sql "$candidate" "insert into ledger values (103, 'after the switchover')" >/dev/null
wait_for "replicas streaming after the switchover" replicas_streaming 2 120

kill "$watcher" 2>/dev/null || true
expect "never two primaries at once" "" "$(cat "$work/split-brain" 2>/dev/null || true)"
echo "time: whole run: $(elapsed "$started") s"
echo "patroni on $target: $checks checks passed"
