#!/usr/bin/env bash
# TLS with real clients: the README's "Securing a cluster" example, run as written (OpenSSL
# certificates, a member with mutual TLS for clients and peers, a certificate user), then
# python etcd3 0.12.0 over TLS with a user and password.
set -euo pipefail
ballot=$1
python=$2
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
work=$(mktemp -d)
member=
cleanup() { [ -n "$member" ] && kill "$member" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
on_failure() { tail -20 "$work/m1.log"; }
for tool in openssl curl; do
  command -v "$tool" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null; }
done
{
  openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=ballot CA" -keyout ca-key.pem -out ca.pem
  openssl req -newkey rsa:2048 -nodes -subj "/CN=member" -keyout member-key.pem -out member.csr \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost"
  openssl x509 -req -in member.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 365 -copy_extensions copy -out member.pem
  openssl req -newkey rsa:2048 -nodes -subj "/CN=app" -keyout app-key.pem -out app.csr -addext "extendedKeyUsage=clientAuth"
  openssl x509 -req -in app.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 365 -copy_extensions copy -out app.pem
} > openssl.log 2>&1
read -r -d "" port peer_port < <(ports 2) || true
"$ballot" serve --name m1 --data-dir m1.ballot \
  --listen-client-urls "https://127.0.0.1:$port" --advertise-client-urls "https://127.0.0.1:$port" \
  --cert-file member.pem --key-file member-key.pem --trusted-ca-file ca.pem --client-cert-auth \
  --listen-peer-urls "https://127.0.0.1:$peer_port" --initial-advertise-peer-urls "https://127.0.0.1:$peer_port" \
  --initial-cluster "m1=https://127.0.0.1:$peer_port" \
  --peer-cert-file member.pem --peer-key-file member-key.pem --peer-trusted-ca-file ca.pem --peer-client-cert-auth \
  > m1.log 2>&1 &
member=$!
e() { ETCDCTL_API=3 etcdctl --endpoints="https://127.0.0.1:$port" --cacert ca.pem --cert app.pem --key app-key.pem --command-timeout=10s "$@"; }
for _ in $(seq 100); do
  e endpoint health >/dev/null 2>&1 && break
  sleep 0.1
done
expect "etcdctl over mutual TLS" "OK" "$(e put /config/db-url postgres://10.0.0.5/app)"
expect "no client certificate: refused" "refused" \
  "$(ETCDCTL_API=3 etcdctl --endpoints="https://127.0.0.1:$port" --cacert ca.pem --dial-timeout=2s --command-timeout=3s get /x >/dev/null 2>&1 && echo accepted || echo refused)"
expect "a plain-text client is told" "Error: rpc error: code = Unavailable desc = ballot: this endpoint requires TLS: connect with https:// and the cluster's CA certificate" \
  "$(ETCDCTL_API=3 etcdctl --endpoints="http://127.0.0.1:$port" --command-timeout=3s get /x 2>&1 | tail -1)"
expect "curl over plain HTTP is told" "ballot: this endpoint requires TLS: connect with https:// and the cluster's CA certificate" \
  "$(curl -s "http://127.0.0.1:$port/")"
e user add root:rootpw >/dev/null
e role add config-reader >/dev/null
e role grant-permission config-reader --prefix read /config/ >/dev/null
expect "a user without a password" "User app created" "$(e user add app --no-password)"
e user grant-role app config-reader >/dev/null
expect "auth enable" "Authentication Enabled" "$(e auth enable 2>/dev/null)"
expect "the certificate's user reads" "postgres://10.0.0.5/app" "$(e get /config/db-url --print-value-only)"
expect "the certificate's user may not write" "Error: etcdserver: permission denied" "$(e put /config/db-url x 2>&1 | tail -1)"
expect "a token comes before the certificate" "OK" "$(e --user root:rootpw put /config/db-url y)"
"$python" - "$port" <<'PY'
import sys
import etcd3
import grpc
port = int(sys.argv[1])
tls = dict(ca_cert="ca.pem", cert_cert="app.pem", cert_key="app-key.pem")
root = etcd3.client(host="127.0.0.1", port=port, user="root", password="rootpw", timeout=10, **tls)
assert root.get("/config/db-url")[0] == b"y", root.get("/config/db-url")
root.put("/config/other", "z")
try:
    etcd3.client(host="127.0.0.1", port=port, user="root", password="wrong", timeout=10, **tls)
    raise SystemExit("FAIL a wrong password was accepted")
except grpc.RpcError as error:
    assert "authentication failed" in error.details(), error
print("ok   python etcd3 over TLS with a user and password")
PY
checks=$((checks + 1))

# ballot's own client commands with etcdctl's flags: the certificate, then a user on top.
b() { "$ballot" --endpoints "127.0.0.1:$port" --cacert ca.pem --cert app.pem --key app-key.pem "$@"; }
r() { b --user root:rootpw "$@"; }
expect "ballot get as the certificate's user" "$(printf '/config/db-url\ny')" "$(b get /config/db-url)"
expect "ballot put as the certificate's user is refused" "error: etcdserver: permission denied" "$(b put /config/db-url x 2>&1)"
expect "ballot put as root (name:password)" "OK" "$(r put /config/from-ballot 1 | cut -c1-2)"
expect "ballot get with --user and --password" "1" "$(b --user root --password rootpw get /config/from-ballot | tail -1)"
expect "ballot reads the password from standard input when it is not a terminal" "1" \
  "$(echo rootpw | b --user root get /config/from-ballot | tail -1)"
expect "a wrong password" "error: logging in as root: etcdserver: authentication failed, invalid user ID or password" \
  "$(b --user root:nope get /x 2>&1)"
expect "ballot status over TLS" "yes" "$(r status | awk 'NR == 2 { print $3 }')"
expect "ballot member list over TLS" "https://127.0.0.1:$port" "$(r member list | awk -F', ' '{ print $5 }')"
lease=$(r lease grant 30 | awk '{ print $2 }')
expect "ballot lease revoke" "lease $lease revoked" "$(r lease revoke "$lease")"
expect "ballot lock runs the command with a fencing token" "yes" \
  "$(r lock tls-lock -- sh -c '[ "$BALLOT_LOCK_TOKEN" -gt 0 ] && echo yes')"
expect "ballot txn" "SUCCESS" "$(printf 'value("/config/from-ballot") = "1"\n\nput /config/from-ballot 2\n\n' | r txn | head -1)"
"$ballot" --endpoints "127.0.0.1:$port" --cacert ca.pem --cert app.pem --key app-key.pem --user root:rootpw \
  watch /config/ --prefix > watch.out 2>&1 &
watcher=$!
sleep 1
r put /config/watched 3 >/dev/null
for _ in $(seq 50); do grep -q /config/watched watch.out && break; sleep 0.1; done
kill "$watcher" 2>/dev/null; wait "$watcher" 2>/dev/null || true
expect "ballot watch over TLS" "$(printf 'PUT\n/config/watched\n3')" "$(cat watch.out)"
timeout -s INT 3 "$ballot" --endpoints "127.0.0.1:$port" --cacert ca.pem --cert app.pem --key app-key.pem \
  --user root:rootpw elect tls-election v > elect.out 2>&1 || true
expect "ballot elect over TLS" "leading" "$(cut -d' ' -f1 elect.out)"
expect "ballot snapshot save over TLS" "Snapshot" "$(r snapshot save tls.db | cut -d' ' -f1)"
expect "ballot bench over TLS as root" "ops 200, errors: none" \
  "$(r bench put --total 200 2>/dev/null | awk '/^ops/ { printf "ops %s, ", $2 } /^errors/ { print }')"
# torture on a secured cluster: members serving member.pem (it carries IP 127.0.0.1 and no
# usage limits, so the clients present it too), authentication on, the workload as a user.
"$ballot" --cacert ca.pem --cert member.pem --key member-key.pem --user app2:app2pw \
  torture --duration 10 --nemesis kill,pause,partition --seed 11 --out torture > torture.out 2>&1 || { cat torture.out; exit 1; }
expect "ballot torture with TLS and auth" "(TLS, auth as app2)
linearizable: true" "$(grep -o '(TLS, auth as app2)' torture.out; grep -o '^linearizable: true' torture.out)"
echo "tls: $checks checks passed"
