#!/usr/bin/env python3
"""ballot agent against serf, real processes on loopback, same machine, same run.

N ballot agents and N serf agents (both at their LAN defaults: 1 s probes, 500 ms probe
timeout, suspicion multiplier 4) form two fleets. After a quiet minute for CPU and memory,
the same faults hit both at once: kill -9 of five members, SIGSTOP of five others for a few
seconds, and 20% loss (iptables, if present) on the datagrams to five more. Every agent runs an
event handler that stamps each failure it declares, so the times are each observer's own.

Prints a markdown table: time until every survivor lists each killed member as failed (mean
and worst over the killed), false failures of the paused and the lossy members (declarations
by anyone), CPU per agent (percent of one core, quiet and under faults), RSS per agent.

usage: bench/agents_vs_serf.py BALLOT_BINARY [N] [PAUSE_SECONDS]
BALLOT_AGENT_ENV="NAME=VALUE ..." sets variables for the ballot agents only (for example
MIMALLOC_ARENA_EAGER_COMMIT=0, which keeps the allocator from committing an arena ahead).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BALLOT = os.path.abspath(sys.argv[1])
N = int(sys.argv[2]) if len(sys.argv) > 2 else 50
PAUSE = float(sys.argv[3]) if len(sys.argv) > 3 else 4.0
KILLED = range(5, 10)
PAUSED = range(10, 15)
LOSSY = range(15, 20)
WORK = tempfile.mkdtemp(prefix="agents-vs-serf-")
SERF = shutil.which("serf")
TICKS = os.sysconf("SC_CLK_TCK")


def handler(system, name):
    """A handler that appends `time observer event member…` lines to one file per system."""
    log = os.path.join(WORK, f"{system}-events.log")
    if system == "ballot":
        return f'echo "$(date +%s.%N) {name} $BALLOT_AGENT_EVENT $(cat | tr "\\n" " ")" >> {log}'
    script = os.path.join(WORK, "serf-handler.sh")
    if not os.path.exists(script):
        with open(script, "w") as out:
            out.write(f'#!/bin/sh\nmembers=$(cut -f1 | tr "\\n" " ")\necho "$(date +%s.%N) $1 $SERF_EVENT $members" >> {log}\n')
        os.chmod(script, 0o755)
    return f"{script} {name}"


def start(system, i, base):
    name = f"{system[0]}{i:02d}"
    gossip, rpc = base + 2 * i, base + 2 * i + 1
    seed = f"127.0.0.1:{base}"
    log = open(os.path.join(WORK, f"{name}.log"), "w")
    if system == "ballot":
        args = [BALLOT, "agent", "--node", name, "--bind", f"127.0.0.1:{gossip}", "--rpc-addr", f"127.0.0.1:{rpc}",
                "--event-handler", handler(system, name)]
        if i > 0:
            args += ["--join", seed]
    else:
        args = [SERF, "agent", f"-node={name}", f"-bind=127.0.0.1:{gossip}", f"-rpc-addr=127.0.0.1:{rpc}",
                f"-event-handler={handler(system, name)}", "-log-level=err"]
        if i > 0:
            args += [f"-retry-join={seed}"]
    env = dict(os.environ)
    if system == "ballot":
        env.update(pair.split("=", 1) for pair in os.environ.get("BALLOT_AGENT_ENV", "").split())
    return {"name": name, "gossip": gossip, "rpc": rpc, "proc": subprocess.Popen(args, stdout=log, stderr=log, env=env)}


def alive_count(system, agent):
    if system == "ballot":
        out = subprocess.run([BALLOT, "agent", "members", "--json", "--rpc-addr", f"127.0.0.1:{agent['rpc']}"],
                             capture_output=True, text=True).stdout
        try:
            return sum(1 for m in json.loads(out) if m["status"] == "alive")
        except ValueError:
            return 0
    out = subprocess.run([SERF, "members", f"-rpc-addr=127.0.0.1:{agent['rpc']}", "-status=alive"],
                         capture_output=True, text=True).stdout
    return len([line for line in out.splitlines() if line.strip()])


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def usage(fleet, seconds):
    """Mean CPU (percent of a core) per agent over `seconds`."""
    live = [a for a in fleet if a["proc"].poll() is None]
    before = {a["name"]: cpu_seconds(a["proc"].pid) for a in live}
    time.sleep(seconds)
    used = [cpu_seconds(a["proc"].pid) - before[a["name"]] for a in live if a["proc"].poll() is None]
    return 100 * sum(used) / len(used) / seconds


def iptables(action, port):
    return subprocess.run(["iptables", action, "INPUT", "-i", "lo", "-p", "udp", "--dport", str(port), "-m", "statistic",
                           "--mode", "random", "--probability", "0.2", "-j", "DROP"], capture_output=True).returncode == 0


def main():
    if SERF is None:
        sys.exit("serf is not installed (apt-get install serf)")
    fleets = {"ballot": [], "serf": []}
    bases = {"ballot": 24000, "serf": 26000}
    try:
        for system in fleets:
            fleets[system] = [start(system, i, bases[system]) for i in range(N)]
        deadline = time.time() + 90
        for system, fleet in fleets.items():
            while not all(alive_count(system, a) == N for a in fleet[:: max(1, N // 10)]):
                if time.time() > deadline:
                    sys.exit(f"{system}: the fleet did not form within 90 s (see {WORK})")
                time.sleep(1)
        time.sleep(5)
        quiet = {system: usage(fleet, 20) for system, fleet in fleets.items()}
        rss = {system: sum(rss_mib(a["proc"].pid) for a in fleet) / len(fleet) for system, fleet in fleets.items()}
        lossy = all(iptables("-A", fleet[i]["gossip"]) for fleet in fleets.values() for i in LOSSY)
        t0 = time.time()
        for fleet in fleets.values():
            for i in KILLED:
                fleet[i]["proc"].kill()
            for i in PAUSED:
                fleet[i]["proc"].send_signal(signal.SIGSTOP)
        time.sleep(PAUSE)
        for fleet in fleets.values():
            for i in PAUSED:
                fleet[i]["proc"].send_signal(signal.SIGCONT)
        faulty = {system: usage(fleet, 30) for system, fleet in fleets.items()}
        if lossy:
            for fleet in fleets.values():
                for i in LOSSY:
                    iptables("-D", fleet[i]["gossip"])
        rows = []
        for system, fleet in fleets.items():
            names = lambda rng: {fleet[i]["name"] for i in rng}
            killed, paused, lossy_names = names(KILLED), names(PAUSED), names(LOSSY)
            survivors = {a["name"] for a in fleet} - killed
            failed = {}
            path = os.path.join(WORK, f"{system}-events.log")
            lines = open(path).read().splitlines() if os.path.exists(path) else []
            for line in lines:
                parts = line.split()
                if len(parts) < 4 or parts[2] != "member-failed":
                    continue
                stamp, observer = float(parts[0]), parts[1]
                for member in parts[3:]:
                    if stamp >= t0:
                        failed.setdefault(member, {}).setdefault(observer, stamp - t0)
            known = []
            for member in killed:
                seen = failed.get(member, {})
                known.append(max(seen.values()) if set(seen) >= survivors else None)
            done = [k for k in known if k is not None]
            false_paused = sum(len(failed.get(m, {})) for m in paused)
            false_lossy = sum(len(failed.get(m, {})) for m in lossy_names)
            rows.append((system, done, len(known) - len(done), false_paused, false_lossy, quiet[system], faulty[system], rss[system]))
        print(f"{N} agents each; {len(KILLED)} killed, {len(PAUSED)} paused {PAUSE:.0f} s, "
              f"{len(LOSSY)} with 20% inbound loss{'' if lossy else ' (skipped: no iptables)'}; events in {WORK}")
        print()
        print("| agent | killed known to every survivor (mean / worst) | never known to all | false failures of the paused | of the lossy | CPU per agent, quiet | under faults | RSS per agent |")
        print("|---|---|---|---|---|---|---|---|")
        for system, done, missing, false_paused, false_lossy, cpu_quiet, cpu_faulty, rss_mean in rows:
            timing = f"{sum(done) / len(done):.1f} s / {max(done):.1f} s" if done else "–"
            print(f"| {system} | {timing} | {missing} | {false_paused} | {false_lossy} | {cpu_quiet:.2f}% | {cpu_faulty:.2f}% | {rss_mean:.1f} MiB |")
    finally:
        for fleet in fleets.values():
            for agent in fleet:
                agent["proc"].send_signal(signal.SIGCONT) if agent["proc"].poll() is None else None
                agent["proc"].kill()
        for fleet in fleets.values():
            for i in LOSSY:
                if i < len(fleet):
                    iptables("-D", fleet[i]["gossip"])


main()
