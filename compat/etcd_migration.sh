#!/usr/bin/env bash
# Moving between etcd and ballot with snapshots, both ways, against Debian's etcd 3.4:
#   etcd (keys, deletes, a txn, leases, a compaction, users and roles) -> etcdctl snapshot save
#     -> ballot snapshot restore -> ballot serves the same answers and the same HashKV;
#   ballot (more writes) -> etcdctl snapshot save -> etcdctl snapshot status
#     -> etcdctl snapshot restore -> etcd serves the same answers and the same HashKV.
# Loopback ports picked by the kernel (compat/lib.sh port): etcd, then ballot, then etcd again.
set -euo pipefail
cd "$(dirname "$0")/.."
ballot=${BALLOT_BIN:-${CARGO_TARGET_DIR:-target}/debug/ballot}
[ -x "$ballot" ] || cargo build --bin ballot
if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >/dev/null
fi
export ETCDCTL_API=3

source compat/lib.sh
scratch
read -r -d "" etcd1 etcd1_peer b1 b1_peer etcd2 etcd2_peer < <(ports 6) || true
at() { etcdctl --endpoints="127.0.0.1:$1" --command-timeout=10s "${@:2}"; }
wait_up() { # port, log of the process that should answer there
  for _ in $(seq 300); do at "$1" endpoint health >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "nothing answers on 127.0.0.1:$1 after 30 s; the end of $2:"; tail -n 30 "$2"; exit 1
}
start_etcd() { # name, client port, peer port
  etcd --name "$1" --data-dir "$work/$1" --listen-client-urls "http://127.0.0.1:$2" \
    --advertise-client-urls "http://127.0.0.1:$2" --listen-peer-urls "http://127.0.0.1:$3" \
    --initial-advertise-peer-urls "http://127.0.0.1:$3" --initial-cluster "$1=http://127.0.0.1:$3" \
    > "$work/$1.log" 2>&1 &
  pids+=($!)
  wait_up "$2" "$work/$1.log"
}
# The key-values of the whole key space (or at a revision), without the header that names the
# cluster and member.
kvs() { at "$1" get "" --prefix -w json "${@:2}" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps(d.get("kvs", []), sort_keys=True))'; }
# A lease's granted TTL and its keys, sorted (etcd lists them in no fixed order).
lease_keys() { at "$1" lease timetolive "$2" --keys -w json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["granted-ttl"], sorted(d.get("keys") or []))'; }
hashkv() { at "$1" endpoint hashkv -w json | python3 -c 'import json,sys; h=json.load(sys.stdin)[0]["HashKV"]; print(h["hash"], h.get("compact_revision", 0))'; }

echo "== etcd $(etcd --version | head -1 | awk '{print $3}') -> ballot"
start_etcd e1 $etcd1 $etcd1_peer
for i in $(seq 1 40); do at $etcd1 put "/m/$i" "value-$i" >/dev/null; done
for i in $(seq 1 10); do at $etcd1 put "/m/$i" "again-$i" >/dev/null; done
at $etcd1 del /m/2 >/dev/null
at $etcd1 del --prefix /m/3 >/dev/null
lease=$(at $etcd1 lease grant 900 | awk '{print $2}')
at $etcd1 put /leased/a x --lease="$lease" >/dev/null
at $etcd1 put /leased/b y --lease="$lease" >/dev/null
printf 'value("/m/1") = "again-1"\n\nput /t/1 one\nput /t/2 two\ndel /m/4\n\n\n' | at $etcd1 txn >/dev/null
compact_at=$(at $etcd1 get /m/5 -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"] - 5)')
at $etcd1 compaction "$compact_at" >/dev/null
at $etcd1 put /after/compaction z >/dev/null
# Users and roles with etcd's bcrypt hashes (authentication left off on etcd).
at $etcd1 user add root:rootpw >/dev/null
at $etcd1 user grant-role root root >/dev/null
at $etcd1 role add ro >/dev/null
at $etcd1 role grant-permission ro --prefix read /m/ >/dev/null
at $etcd1 user add carol:carolpw >/dev/null
at $etcd1 user grant-role carol ro >/dev/null
at $etcd1 snapshot save "$work/etcd.db" >/dev/null 2>&1
expect "etcdctl snapshot save from etcd" "true" "$([ -s "$work/etcd.db" ] && echo true)"

"$ballot" snapshot restore "$work/etcd.db" --name b1 --data-dir "$work/b1" \
  --initial-cluster b1=http://127.0.0.1:$b1_peer --initial-advertise-peer-urls http://127.0.0.1:$b1_peer > "$work/restore.out" 2>&1
expect "ballot snapshot restore of etcd's snapshot" "etcd format" "$(grep -o 'etcd format' "$work/restore.out")"
"$ballot" serve --name b1 --data-dir "$work/b1" --initial-cluster b1=http://127.0.0.1:$b1_peer \
  --initial-advertise-peer-urls http://127.0.0.1:$b1_peer --listen-peer-urls http://127.0.0.1:$b1_peer \
  --listen-client-urls http://127.0.0.1:$b1 --advertise-client-urls http://127.0.0.1:$b1 > "$work/b1.log" 2>&1 &
pids+=($!)
wait_up $b1 "$work/b1.log"
expect "the same key-values (values, revisions, versions, leases)" "$(kvs $etcd1)" "$(kvs $b1)"
expect "the same key-values at an older revision" "$(kvs $etcd1 --rev "$((compact_at + 2))")" "$(kvs $b1 --rev "$((compact_at + 2))")"
expect "the same revision" "$(at $etcd1 get /x -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')" \
  "$(at $b1 get /x -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')"
expect "the same compaction" "$(at $etcd1 get /m/1 --rev 1 2>&1 | tail -1)" "$(at $b1 get /m/1 --rev 1 2>&1 | tail -1)"
expect "the same HashKV" "$(hashkv $etcd1)" "$(hashkv $b1)"
expect "the lease and its keys" "$(lease_keys $etcd1 "$lease")" "$(lease_keys $b1 "$lease")"
expect "the same users" "$(at $etcd1 user list)" "$(at $b1 user list)"
expect "the same role" "$(at $etcd1 role get ro)" "$(at $b1 role get ro)"
expect "auth enable on ballot" "Authentication Enabled" "$(at $b1 auth enable)"
expect "etcd's password hash logs carol in on ballot" "again-1" "$(at $b1 --user carol:carolpw get /m/1 --print-value-only)"
expect "carol's role is enforced" "Error: etcdserver: permission denied" "$(at $b1 --user carol:carolpw put /m/1 x 2>&1 | tail -1)"
expect "auth disable" "Authentication Disabled" "$(at $b1 --user root:rootpw auth disable)"

echo "== ballot -> etcd"
at $b1 put /from/ballot 1 >/dev/null
at $b1 del /m/5 >/dev/null
printf '\n\nput /t/3 three\nput /t/4 four\n\n\n' | at $b1 txn >/dev/null
at $b1 snapshot save "$work/ballot.db" >/dev/null 2>&1
status=$(etcdctl snapshot status "$work/ballot.db" -w json)
expect "etcdctl snapshot status accepts ballot's snapshot" \
  "$(at $b1 get /x -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')" \
  "$(echo "$status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["revision"])')"
etcdctl snapshot restore "$work/ballot.db" --name e2 --data-dir "$work/e2" \
  --initial-cluster e2=http://127.0.0.1:$etcd2_peer --initial-advertise-peer-urls http://127.0.0.1:$etcd2_peer > "$work/e2-restore.log" 2>&1
start_etcd e2 $etcd2 $etcd2_peer
expect "etcd serves ballot's key-values" "$(kvs $b1)" "$(kvs $etcd2)"
expect "etcd serves ballot's history" "$(kvs $b1 --rev "$((compact_at + 3))")" "$(kvs $etcd2 --rev "$((compact_at + 3))")"
expect "the same HashKV" "$(hashkv $b1)" "$(hashkv $etcd2)"
expect "the lease and its keys" "$(lease_keys $b1 "$lease")" "$(lease_keys $etcd2 "$lease")"
expect "etcd takes writes after the restore" "OK" "$(at $etcd2 put /after/restore 1)"
expect "etcd has ballot's users" "$(at $b1 user list)" "$(at $etcd2 user list)"
at $etcd2 auth enable >/dev/null
expect "carol logs in on etcd" "again-1" "$(at $etcd2 --user carol:carolpw get /m/1 --print-value-only)"

echo "migration: $checks checks passed"
