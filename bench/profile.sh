#!/usr/bin/env bash
# A flame graph of ballot's three members under a named `ballot bench` workload:
#
#   bench/profile.sh [--seconds N] WORKLOAD [BENCH FLAGS...]
#   bench/profile.sh put --conns 8 --clients 64 --key-space 100000
#
# Starts `ballot dev` (release build) on a scratch data dir, runs the workload for N + 6 seconds
# (default N = 5), and records the members with `perf record --call-graph dwarf` for N seconds
# in the middle. Writes target/profile/WORKLOAD.svg (all threads; open it in a browser),
# target/profile/WORKLOAD.folded (folded stacks, one line per stack) and prints each thread
# kind's share of the samples and the heaviest functions of the Raft thread. Needs perf
# (Debian's linux-perf) and inferno (cargo install inferno), which it installs when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=5
if [ "${1:-}" = --seconds ]; then seconds=$2; shift 2; fi
workload=${1:?usage: bench/profile.sh [--seconds N] WORKLOAD [BENCH FLAGS...]}
shift
command -v perf >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null; }
command -v inferno-flamegraph >/dev/null 2>&1 || cargo install inferno --locked -q
cargo build --release --bin ballot -q
ballot=target/release/ballot
out=target/profile
mkdir -p "$out"
work=$(mktemp -d /var/tmp/ballot-profile.XXXXXX)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
endpoints=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379
"$ballot" dev --data-dir "$work/data" > "$work/dev.log" 2>&1 &
server=$!
for _ in $(seq 100); do
  "$ballot" --endpoints "$endpoints" put /profile/ready 1 >/dev/null 2>&1 && break
  sleep 0.2
done
pids=$(pgrep -f "ballot serve --name n[123] --data-dir $work" | paste -sd,)
[ -n "$pids" ] || { echo "the members did not start"; cat "$work/dev.log"; exit 1; }

"$ballot" bench --endpoints "$endpoints" "$workload" --duration $((seconds + 6)) "$@" > "$work/bench.txt" 2>/dev/null &
bench=$!
sleep 3
perf record -q -F 199 --call-graph dwarf,32768 -p "$pids" -o "$work/perf.data" -- sleep "$seconds" 2>/dev/null
wait "$bench"
cat "$work/bench.txt"

perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf > "$out/$workload.folded"
inferno-flamegraph --title "ballot: $workload $*" < "$out/$workload.folded" > "$out/$workload.svg"
python3 - "$out/$workload.folded" <<'PY'
import collections, re, sys
threads, raft = collections.Counter(), collections.Counter()
total = 0
for line in open(sys.argv[1]):
    stack, count = line.rstrip().rsplit(" ", 1)
    frames = stack.split(";")
    count = int(count)
    total += count
    thread = re.sub(r"-?[0-9/]+$", "", frames[0])
    threads[thread] += count
    if thread == "raft":
        for name in set(re.sub(r"^(.*?)(::\{\{closure\}\})*$", r"\1", f) for f in frames[1:]):
            if re.match(r"<?(ballot_|redb::)", name):
                raft[name] += count
print("\nshare of the members' samples by thread:")
for thread, n in threads.most_common(6):
    print(f"  {100 * n / total:5.1f}%  {thread}")
print("\nthe Raft thread's heaviest functions of ballot and redb, inclusive, as a share of all samples:")
for name, n in raft.most_common(22):
    print(f"  {100 * n / total:5.1f}%  {name[:110]}")
PY
echo
echo "flame graph: $out/$workload.svg (folded stacks: $out/$workload.folded)"
