#!/usr/bin/env bash
# Browser checks in headless Chromium through WebDriver (Debian's chromium and chromium-driver,
# selenium in a venv; installs what is missing): the reports of a short `ballot torture` run
# and of a `ballot sim` seed open from disk and their plots are drawn; the web console of a
# real 3-member cluster shows its members, keys put through etcdctl, znodes made by zkCli.sh,
# confirmed operations, forged requests refused, what a logged-in reader may see, and a new
# leader after a kill. Screenshots are kept in target/browser-artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
ballot=${BALLOT_BIN:-${CARGO_TARGET_DIR:-target}/debug/ballot}
[ -x "$ballot" ] || cargo build --bin ballot

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1 \
  || [ ! -x /usr/share/zookeeper/bin/zkCli.sh ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver etcd-client zookeeper >/dev/null
fi
venv=${BALLOT_BROWSER_VENV:-target/browser-venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import selenium' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q selenium==4.51.0
fi

artifacts=${CARGO_TARGET_DIR:-target}/browser-artifacts
rm -rf "$artifacts"
mkdir -p "$artifacts"
echo "== a short torture run and a simulated seed, with their reports"
"$ballot" torture --nodes 3 --nemesis kill,partition --workload register --duration 8 --seed 3 \
  --out "$artifacts/torture" | tail -n 3
"$ballot" sim --seed 11 --report "$artifacts/sim" | tail -n 1
echo "== the reports in Chromium: every operation's marker, the fault bands and the throughput drawn"
"$venv/bin/python" browser/report_check.py "$artifacts/torture" "$artifacts/sim"
echo "== the web console of a 3-member cluster: members, live keys, a new leader after a kill"
"$venv/bin/python" browser/console_check.py "$ballot" "$artifacts"
