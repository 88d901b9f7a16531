#!/usr/bin/env bash
# ZooKeeper clients against ballot, with ZooKeeper 3.8 (Debian's `zookeeper`) as the reference,
# both as 3-member clusters on this machine:
# - the differential check (compat/zk_diff.py): one script of operations through kazoo to both,
#   transcripts compared after normalizing zxids, times and session ids;
# - zkCli.sh: the same commands (compat/zkcli_script.txt) to both, outputs compared the same way;
# - kazoo 2.11's own test suite against both: every test that passes against ZooKeeper must
#   pass against ballot (those that stop servers or need TLS, SASL or reconfig are left out).
# Installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source compat/lib.sh
ballot=${BALLOT_BIN:-${CARGO_TARGET_DIR:-target}/debug/ballot}
[ -x "$ballot" ] || cargo build --bin ballot

zkcli=/usr/share/zookeeper/bin/zkCli.sh
if [ ! -x "$zkcli" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zookeeper >/dev/null
fi
venv=${BALLOT_ZK_VENV:-target/zk-venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import kazoo, pytest, jks, objgraph, pytest_timeout' 2>/dev/null; then
  python3 -m venv "$venv" 2>/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; python3 -m venv "$venv"; }
  # kazoo's test harness imports pyjks and pyOpenSSL (whose 26.2 dropped an API it uses).
  "$venv/bin/pip" install -q kazoo==2.11.0 pytest==8.4.2 pytest-timeout==2.4.0 objgraph==3.5.0 pyjks "pyopenssl<26.2"
fi
# Absolute, and still the venv's link (not the interpreter it points to).
python="$(cd "$venv/bin" && pwd)/python"

scratch
# ballot: a dev cluster (ZooKeeper ports 2181, 22181, 32181).
"$ballot" dev --nodes 3 --data-dir "$work/ballot" > "$work/ballot.out" 2>&1 &
pids+=($!)
ballot_hosts=127.0.0.1:2181,127.0.0.1:22181,127.0.0.1:32181
# ZooKeeper 3.8: three servers, configured as kazoo's own harness configures them.
mapfile -t zk_ports < <(ports 9)
zk_hosts=""
for n in 1 2 3; do
  dir="$work/zk$n"
  mkdir -p "$dir/data"
  echo "$n" > "$dir/data/myid"
  client=${zk_ports[$(( (n - 1) * 3 ))]}
  cat > "$dir/zoo.cfg" <<CFG
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPort=$client
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=*
reconfigEnabled=true
localSessionsEnabled=false
extendedTypesEnabled=true
server.1=127.0.0.1:${zk_ports[1]}:${zk_ports[2]}
server.2=127.0.0.1:${zk_ports[4]}:${zk_ports[5]}
server.3=127.0.0.1:${zk_ports[7]}:${zk_ports[8]}
CFG
  zk_hosts="$zk_hosts${zk_hosts:+,}127.0.0.1:$client"
  java -Xmx256m -cp /usr/share/java/zookeeper.jar:/usr/share/java/slf4j-nop.jar -Dfile.encoding=UTF-8 \
    -Dzookeeper.DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU= \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" > "$dir/out.log" 2>&1 &
  pids+=($!)
done

# Both ready: every server answers `srvr` as a leader or follower.
ready() { "$python" compat/zk_ready.py "$1"; }
for _ in $(seq 300); do
  ready "$zk_hosts" && ready "$ballot_hosts" && break
  sleep 0.2
done
ready "$zk_hosts" || { tail -n 20 "$work"/zk*/out.log; echo "ZooKeeper did not start"; exit 1; }
ready "$ballot_hosts" || { cat "$work/ballot.out"; echo "ballot did not start"; exit 1; }

echo "== the differential check: one script through kazoo to ZooKeeper 3.8 and to ballot"
"$python" compat/zk_diff.py "$zk_hosts" "$ballot_hosts"

echo "== zkCli.sh: the same commands to ZooKeeper 3.8 and to ballot"
zkcli_run() { # hosts, name
  local chroot=zkcli$RANDOM
  printf 'create /%s\nquit\n' "$chroot" | timeout 60 "$zkcli" -server "${1%%,*}" > /dev/null 2>&1
  timeout 120 "$zkcli" -server "${1%%,*}/$chroot" < compat/zkcli_script.txt 2>&1 | grep -v '^\s*at ' \
    | "$python" compat/zkcli_normalize.py > "$work/zkcli-$2.txt"
}
zkcli_run "$zk_hosts" zookeeper
zkcli_run "$ballot_hosts" ballot
if ! diff -u "$work/zkcli-zookeeper.txt" "$work/zkcli-ballot.txt"; then
  echo "zkCli.sh answers differently"; exit 1
fi
echo "ok   zkCli.sh: $(wc -l < "$work/zkcli-ballot.txt") lines of output alike"

echo "== kazoo 2.11's test suite against ZooKeeper 3.8 and against ballot"
site=$("$python" -c 'import kazoo, os; print(os.path.dirname(os.path.dirname(kazoo.__file__)))')
# Left out: tests that stop and start servers, and those needing TLS, SASL or reconfiguration.
deselect="not test_request_queuing and not test_update_host_list and not test_read_only and not TestSSLClient and not TestReconfig and not test_sasl"
suite() { # hosts, name
  (cd "$site" && env -u CI ZOOKEEPER_VERSION=3.8.0 KAZOO_TEST_HOSTS="$1" PYTHONPATH="$OLDPWD/compat" \
    timeout 1200 "$python" -m pytest -p kz_external -o addopts="" -o log_cli=false -q -p no:cacheprovider \
    --timeout=180 --junitxml="$work/kazoo-$2.xml" kazoo/tests -k "$deselect" > "$work/kazoo-$2.log" 2>&1) || true
  tail -n 1 "$work/kazoo-$2.log" | sed "s/^/$2: /"
}
suite "$zk_hosts" zookeeper
suite "$ballot_hosts" ballot
"$python" - "$work/kazoo-zookeeper.xml" "$work/kazoo-ballot.xml" <<'PY'
import sys
import xml.etree.ElementTree as ET
def outcomes(path):
    result = {}
    for case in ET.parse(path).iter("testcase"):
        name = case.get("classname") + "::" + case.get("name")
        kinds = {child.tag for child in case}
        result[name] = "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
    return result
zookeeper, ballot = outcomes(sys.argv[1]), outcomes(sys.argv[2])
for name, (zk, ours) in sorted((n, (zookeeper[n], ballot.get(n, "missing"))) for n in zookeeper):
    if zk == "passed" and ours != "passed":
        print(f"FAIL {name}: passes against ZooKeeper, {ours} against ballot")
counts = lambda result, kind: sum(1 for outcome in result.values() if outcome == kind)
for kind in ("passed", "failed", "skipped"):
    print(f"  {kind:8} zookeeper {counts(zookeeper, kind):4}   ballot {counts(ballot, kind):4}")
regressions = [n for n in zookeeper if zookeeper[n] == "passed" and ballot.get(n) != "passed"]
sys.exit(1 if regressions or counts(zookeeper, "passed") == 0 else 0)
PY
echo "ok   kazoo: every test that passes against ZooKeeper 3.8 passes against ballot"
