#!/usr/bin/env bash
# Compatibility checks with real etcd clients against a `ballot dev` cluster: etcdctl 3.4
# (Debian's etcd-client) and python etcd3 0.12.0 in a venv, users and roles included.
# Installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ballot=${BALLOT_BIN:-${CARGO_TARGET_DIR:-target}/debug/ballot}
[ -x "$ballot" ] || cargo build --bin ballot

if ! command -v etcdctl >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-client >/dev/null
fi
venv=${BALLOT_COMPAT_VENV:-target/compat-venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import etcd3' 2>/dev/null; then
  python3 -m venv "$venv" 2>/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; python3 -m venv "$venv"; }
  # tenacity pinned: etcd3 0.12's lock retry calls tenacity's wait() with the old signature.
  "$venv/bin/pip" install -q etcd3==0.12.0 protobuf==3.20.3 tenacity==6.3.1
fi

work=$(mktemp -d)
"$ballot" dev --nodes 3 --data-dir "$work/dev" > "$work/dev.out" 2>&1 &
dev=$!
cleanup() { kill -TERM "$dev" 2>/dev/null || true; wait "$dev" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
endpoints=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379
for _ in $(seq 100); do
  grep -q '^leader:' "$work/dev.out" && break
  sleep 0.1
done
grep -q '^leader:' "$work/dev.out" || { cat "$work/dev.out"; echo "the dev cluster elected no leader"; exit 1; }

echo "== etcdctl $(etcdctl version | head -1)"
BALLOT_BIN="$ballot" compat/etcdctl_check.sh "$endpoints"
echo "== python etcd3 0.12.0"
"$venv/bin/python" compat/etcd3_check.py 127.0.0.1 22379
echo "== authentication and access control (etcdctl and python etcd3)"
compat/auth_check.sh "$endpoints" "$venv/bin/python"
echo "== TLS: the README's secured member with etcdctl and python etcd3"
# Absolute paths (the check runs in a directory of its own); the venv's python must stay the
# venv's link, not the interpreter it points to.
absolute() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
compat/tls_check.sh "$(absolute "$ballot")" "$(absolute "$venv/bin/python")"
echo "== moving between etcd and ballot by snapshot (etcd 3.4 server)"
kill -TERM "$dev" 2>/dev/null || true; wait "$dev" 2>/dev/null || true
BALLOT_BIN="$ballot" compat/etcd_migration.sh
echo "== etcd's metrics: the mixin's alert rules in Prometheus against a ballot cluster"
BALLOT_BIN="$ballot" compat/metrics_check.sh
echo "== the differential check: the same requests to etcd 3.4 and to ballot (gRPC and the JSON gateway)"
BALLOT_BIN="$ballot" compat/diff_etcd.sh
echo "== Patroni on ballot: three PostgreSQL members kept by elections in ballot (3 members)"
BALLOT_BIN="$ballot" compat/patroni.sh
echo "== ZooKeeper: kazoo's suite, zkCli.sh and the differential check against ZooKeeper 3.8"
BALLOT_BIN="$ballot" compat/zookeeper.sh
