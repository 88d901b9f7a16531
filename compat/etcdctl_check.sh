#!/usr/bin/env bash
# Checks ballot with etcdctl (v3 API): each check compares the output with what etcd prints.
set -euo pipefail
endpoints=$1
e() { ETCDCTL_API=3 etcdctl --endpoints="$endpoints" --command-timeout=10s "$@"; }
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

expect "put" "OK" "$(e put /compat/a 1)"
e put /compat/b 2 >/dev/null
expect "get" "$(printf '/compat/a\n1')" "$(e get /compat/a)"
expect "get --prefix" "$(printf '/compat/a\n1\n/compat/b\n2')" "$(e get --prefix /compat/)"
expect "get --print-value-only" "2" "$(e get /compat/b --print-value-only)"
expect "get -w json count" "2" "$(e get --prefix /compat/ -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')"
expect "serializable get" "1" "$(e get /compat/a --consistency=s --print-value-only)"
expect "del" "1" "$(e del /compat/a)"
expect "del --prefix" "1" "$(e del --prefix /compat/)"

e put /compat/counter 5 >/dev/null
txn_out=$(printf 'value("/compat/counter") = "5"\n\nput /compat/counter 6\n\nget /compat/counter\n\n' | e txn)
expect "txn success" "$(printf 'SUCCESS\n\nOK')" "$txn_out"
txn_out=$(printf 'value("/compat/counter") = "5"\n\nput /compat/counter 7\n\nget /compat/counter\n\n' | e txn)
expect "txn failure branch" "$(printf 'FAILURE\n\n/compat/counter\n6')" "$txn_out"

rev=$(e put /compat/w 1 -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
e put /compat/w 2 >/dev/null
e del /compat/w >/dev/null
expect "watch from a revision" "$(printf 'PUT\n/compat/w\n1\nPUT\n/compat/w\n2\nDELETE\n/compat/w\n')" \
  "$(timeout 3 etcdctl --endpoints="$endpoints" watch --rev "$rev" /compat/w || true)"

lease=$(e lease grant 30 | awk '{print $2}')
e put /compat/leased v --lease="$lease" >/dev/null
expect "lease timetolive --keys" "1" "$(e lease timetolive "$lease" --keys -w json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["keys"]))')"
expect "lease keep-alive --once" "lease $lease keepalived with TTL(30)" "$(e lease keep-alive --once "$lease")"
expect "lease list" "1" "$(e lease list | grep -c "$lease")"
expect "lease revoke" "lease $lease revoked" "$(e lease revoke "$lease")"
expect "revoked lease took its key" "" "$(e get /compat/leased)"

expect "lock runs the command holding the lock" "held" "$(e lock compat-lock echo held)"
(e elect compat-election leader-1 >/dev/null &)
sleep 1
expect "elect --listen sees the leader" "leader-1" "$(timeout 2 etcdctl --endpoints="$endpoints" elect --listen compat-election | sed -n 2p || true)"
pkill -f "elect compat-election" || true

members=$(e member list | wc -l)
[ "$members" -ge 1 ] && expect "member list" "ok" "ok"
expect "endpoint health" "true" "$(e endpoint health -w json | python3 -c 'import json,sys; print(str(all(h["health"] for h in json.load(sys.stdin))).lower())')"
expect "endpoint status has one leader" "1" "$(e endpoint status -w json | python3 -c 'import json,sys; s=json.load(sys.stdin); print(len({x["Status"]["leader"] for x in s}))')"
expect "alarm list is empty" "" "$(e alarm list)"
rev=$(e put /compat/c 1 -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
expect "compaction" "compacted revision $rev" "$(e compaction "$rev")"
# --cluster: every member's client URLs from the member list (every member lists every one),
# dialled as URLs (etcdctl 3.4 then sends "http://host:port" as the HTTP/2 :authority).
# Compared at one revision above the compact one (at it, etcd answers "compacted", and so does
# ballot); a follower may take a moment to apply it.
rev=$(e put /compat/c 2 -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
first=${endpoints%%,*}
for _ in $(seq 50); do
  hashes=$(ETCDCTL_API=3 etcdctl --endpoints="$first" endpoint hashkv --cluster --rev="$rev" -w json 2>/dev/null | python3 -c 'import json,sys; h=json.load(sys.stdin); print(len(h), len({x["HashKV"]["hash"] for x in h}))' || true)
  [ "$hashes" = "3 1" ] && break
  sleep 0.1
done
expect "hashkv --cluster: three members agree" "3 1" "$hashes"
expect "endpoint status --cluster reaches three members" "3" "$(ETCDCTL_API=3 etcdctl --endpoints="$first" endpoint status --cluster -w json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')"
for endpoint in ${endpoints//,/ }; do
  expect "member list through $endpoint names every client URL" "3" "$(ETCDCTL_API=3 etcdctl --endpoints="$endpoint" member list -w json | python3 -c 'import json,sys; print(sum(1 for m in json.load(sys.stdin)["members"] if m.get("clientURLs")))')"
done

first=${endpoints%%,*}
expect "defrag" "Finished defragmenting etcd member[$first]" "$(ETCDCTL_API=3 etcdctl --endpoints="$first" --command-timeout=60s defrag 2>&1 | tail -n 1)"
expect "serves after defrag" "$(printf '/compat/c\n2')" "$(e get /compat/c)"

snapshot_dir=$(mktemp -d)
expect "snapshot save (checksum verified by etcdctl)" "Snapshot saved at $snapshot_dir/snap.db" "$(ETCDCTL_API=3 etcdctl --endpoints="${endpoints%%,*}" snapshot save "$snapshot_dir/snap.db" 2>&1 | tail -n 1)"
expect "snapshot status (etcd's format: bbolt integrity check, revision)" "true" \
  "$(ETCDCTL_API=3 etcdctl snapshot status "$snapshot_dir/snap.db" -w json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(str(d["revision"] > 0 and d["totalKey"] > 0).lower())')"
rm -rf "$snapshot_dir"

# move-leader: etcdctl finds the leader among the endpoints and asks it to hand over.
status_json=$(e endpoint status -w json)
target=$(printf '%s' "$status_json" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(next(format(x["Status"]["header"]["member_id"], "x") for x in s if x["Status"]["leader"] != x["Status"]["header"]["member_id"]))')
moved=$(e move-leader "$target" 2>&1 | tail -n 1)
expect "move-leader" "to $target" "$(printf '%s' "$moved" | grep -o "to $target\$" || printf '%s' "$moved")"
for _ in $(seq 50); do
  leader=$(e endpoint status -w json | python3 -c 'import json,sys; print(format(json.load(sys.stdin)[0]["Status"]["leader"], "x"))')
  [ "$leader" = "$target" ] && break
  sleep 0.1
done
expect "move-leader: the named member leads" "$target" "$leader"

# Membership: add a learner, start it (it joins), promote it once it caught up (retried for up
# to a minute: a loaded machine slows the join), remove it
# (it stops by itself).
ballot=${BALLOT_BIN:-target/debug/ballot}
member_dir=$(mktemp -d)
added=$(e member add m4 --learner --peer-urls=http://127.0.0.1:42380)
expect "member add --learner" "added to cluster" "$(printf '%s' "$added" | head -n 1 | grep -o 'added to cluster')"
expect "member add prints the state to start with" 'ETCD_INITIAL_CLUSTER_STATE="existing"' "$(printf '%s' "$added" | tail -n 1)"
new_id=$(printf '%s' "$added" | head -n 1 | awk '{print $2}')
expect "member list shows the unstarted learner" "unstarted true" "$(e member list | grep "$new_id" | awk -F', ' '{print $2, $6}')"
"$ballot" serve --name m4 --data-dir "$member_dir/m4" \
  --listen-client-urls http://127.0.0.1:42379 --advertise-client-urls http://127.0.0.1:42379 \
  --listen-peer-urls http://127.0.0.1:42380 --initial-advertise-peer-urls http://127.0.0.1:42380 \
  --initial-cluster "existing=http://127.0.0.1:2380,m4=http://127.0.0.1:42380" --initial-cluster-state existing \
  > "$member_dir/m4.log" 2>&1 &
m4=$!
trap 'kill "$m4" 2>/dev/null || true' EXIT
promoted=""
for _ in $(seq 300); do
  # etcdctl prints ids with %16x: a shorter id is padded with spaces.
  promoted=$(e member promote "$new_id" 2>&1 | tr -s ' ' || true)
  printf '%s' "$promoted" | grep -q promoted && break
  sleep 0.2
done
if ! printf '%s' "$promoted" | grep -q promoted; then
  printf 'last answer to member promote: %s\n--- m4.log (tail)\n' "$promoted"; tail -n 30 "$member_dir/m4.log"
fi
expect "member promote" "Member $new_id promoted in cluster" "$(printf '%s' "$promoted" | grep -o "Member $new_id promoted in cluster")"
for _ in $(seq 50); do # the new member publishes its name once it has joined
  listed=$(e member list | grep "$new_id" | awk -F', ' '{print $2, $3, $6}')
  [ "$listed" = "started m4 false" ] && break
  sleep 0.1
done
expect "member list after promotion" "started m4 false" "$listed"
expect "member remove" "Member $new_id removed from cluster" "$(e member remove "$new_id" | tr -s ' ' | grep -o "Member $new_id removed from cluster")"
for _ in $(seq 100); do
  kill -0 "$m4" 2>/dev/null || break
  sleep 0.1
done
expect "the removed member stopped" "stopped" "$(kill -0 "$m4" 2>/dev/null && echo running || echo stopped)"
expect "member list after removal" "3" "$(e member list | wc -l)"
kill "$m4" 2>/dev/null || true
rm -rf "$member_dir"

echo "etcdctl: $checks checks passed"
