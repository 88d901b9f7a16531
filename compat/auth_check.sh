#!/usr/bin/env bash
# Authentication and access control with etcdctl 3.4 and python etcd3 0.12.0: users, roles and
# permissions set up as an operator does, then `--user` reads and writes with the successes and
# refusals etcd gives. Turns authentication off again at the end.
set -euo pipefail
endpoints=$1
python=$2
e() { ETCDCTL_API=3 etcdctl --endpoints="$endpoints" --command-timeout=10s "$@"; }
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# The last line of a command's output and its exit status, for refusals (etcdctl logs a
# warning line before its error).
refused() { local out; out=$("$@" 2>&1) && echo "succeeded: $out" || echo "$out" | tail -1; }

expect "user add root" "User root created" "$(e user add root:rootpw)"
expect "role add" "Role reader created" "$(e role add reader)"
expect "role grant-permission --prefix" "Role reader updated" "$(e role grant-permission reader --prefix read /auth/a/)"
expect "role add writer" "Role writer created" "$(e role add writer)"
expect "role grant-permission write" "Role writer updated" "$(e role grant-permission writer write /auth/w)"
expect "user add" "User alice created" "$(e user add alice:alicepw)"
expect "user grant-role" "Role reader is granted to user alice" "$(e user grant-role alice reader)"
e user grant-role alice writer >/dev/null
e put /auth/a/x 1 >/dev/null
e put /auth/b/x 2 >/dev/null
# etcdctl's `auth enable` adds the root role and grants it to root if need be (the server
# refuses to enable authentication before that), then enables.
expect "auth enable" "Authentication Enabled" "$(e auth enable 2>/dev/null)"

expect "get without a user" "Error: etcdserver: user name is empty" "$(refused e get /auth/a/x)"
expect "get with a wrong password" "Error: etcdserver: authentication failed, invalid user ID or password" \
  "$(refused e --user alice:nope get /auth/a/x)"
expect "alice reads /auth/a/" "$(printf '/auth/a/x\n1')" "$(e --user alice:alicepw get /auth/a/x)"
expect "alice reads the prefix" "1" "$(e --user alice:alicepw get --prefix /auth/a/ --print-value-only)"
expect "alice may not write /auth/a/x" "Error: etcdserver: permission denied" "$(refused e --user alice:alicepw put /auth/a/x 3)"
expect "alice may not read /auth/b/x" "Error: etcdserver: permission denied" "$(refused e --user alice:alicepw get /auth/b/x)"
expect "alice writes /auth/w" "OK" "$(e --user alice:alicepw put /auth/w 4)"
txn_out=$(printf 'value("/auth/a/x") = "1"\n\nput /auth/w 5\n\nput /auth/b/x 6\n\n' | refused e --user alice:alicepw txn)
expect "a txn with a forbidden key in its else branch" "Error: etcdserver: permission denied" "$txn_out"
expect "alice may not list users" "Error: etcdserver: permission denied" "$(refused e --user alice:alicepw user list)"
expect "root lists users" "$(printf 'alice\nroot')" "$(e --user root:rootpw user list)"
expect "root reads anything" "2" "$(e --user root:rootpw get /auth/b/x --print-value-only)"
expect "role get" "$(printf 'Role reader\nKV Read:\n\t[/auth/a/, /auth/a0) (prefix /auth/a/)\nKV Write:')" \
  "$(e --user root:rootpw role get reader)"
expect "user get" "$(printf 'User: alice\nRoles: reader writer')" "$(e --user root:rootpw user get alice)"
expect "role revoke-permission" "Permission of range [/auth/a/, /auth/a0) is revoked from role reader" \
  "$(e --user root:rootpw role revoke-permission reader /auth/a/ /auth/a0)"
expect "the revoked read is refused" "Error: etcdserver: permission denied" "$(refused e --user alice:alicepw get /auth/a/x)"
expect "root cannot be deleted" "Error: etcdserver: invalid auth management" "$(refused e --user root:rootpw user delete root)"
expect "passwd" "Password updated" "$(e --user root:rootpw user passwd alice --interactive=false <<< 'alicepw2')"
expect "the new password works" "OK" "$(e --user alice:alicepw2 put /auth/w 7)"

echo "== python etcd3 with a user and password"
"$python" - "${endpoints%%,*}" <<'PY'
import sys
import etcd3
import grpc
host, port = sys.argv[1].split(":")


def client(user, password):
    etcd = etcd3.client(host=host, port=int(port), user=user, password=password, timeout=10)
    # etcd3 sends its token both as call credentials and as `token` metadata; recent grpcio
    # refuses call credentials on a plain-text channel (a client-side rule), so the check keeps
    # the metadata, which is what the server reads.
    etcd.call_credentials = None
    return etcd


alice = client("alice", "alicepw2")
alice.put("/auth/w", "py")
try:
    alice.get("/auth/b/x")
    raise SystemExit("FAIL alice read /auth/b/x")
except grpc.RpcError as error:
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error
try:
    client("alice", "wrong")
    raise SystemExit("FAIL a wrong password was accepted")
except grpc.RpcError as error:
    assert "authentication failed" in error.details(), error
root = client("root", "rootpw")
assert root.get("/auth/b/x")[0] == b"2"
assert root.get("/auth/w")[0] == b"py", "alice's write is there"
print("ok   python etcd3 authenticates, writes, is refused, and root reads")
PY
checks=$((checks + 1))

expect "auth disable" "Authentication Disabled" "$(e --user root:rootpw auth disable)"
expect "open again" "2" "$(e get /auth/b/x --print-value-only)"
echo "auth: $checks checks passed"
