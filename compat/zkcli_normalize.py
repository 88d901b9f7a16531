"""Normalizes zkCli's output for the differential check (compat/zookeeper.sh): zxids become
their rank among the zxids printed, times and session ids are masked, and watch events (printed
by zkCli's event thread, so at no fixed place) are moved to the end, sorted."""

import re
import sys

lines = sys.stdin.read().splitlines()
zxids = sorted({int(m.group(1), 16) for line in lines for m in [re.match(r"[cmp]Zxid = 0x([0-9a-f]+)$", line)] if m})
rank = {zxid: i for i, zxid in enumerate(zxids)}
kept, events = [], []
for line in lines:
    if line.startswith(("WATCHER::", "SLF4J:", "Connecting to ")) or not line.strip():
        continue
    if line.startswith("WatchedEvent"):
        if "type:None" not in line:
            events.append(line)
        continue
    if re.match(r"[cm]time = ", line):
        continue
    m = re.match(r"([cmp]Zxid) = 0x([0-9a-f]+)$", line)
    if m:
        line = f"{m.group(1)} = #{rank[int(m.group(2), 16)]}"
    line = re.sub(r"ephemeralOwner = 0x[0-9a-f]*[1-9a-f][0-9a-f]*$", "ephemeralOwner = SESSION", line)
    kept.append(line)
print("\n".join(kept + sorted(events)))
