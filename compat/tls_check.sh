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
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
peer_port=$(free_port)
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
echo "tls: $checks checks passed"
