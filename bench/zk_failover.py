"""Two timings of a ZooKeeper service, the same way for ZooKeeper and for ballot (run by
bench/compare-zookeeper.sh with kazoo):

- expiry: a client with a 4 s session creates an ephemeral node and is killed (no
  closeSession); another client's exists watch times how long until the node is deleted;
- reconnection: a client's member is killed (kill -9); time until the client, moving to
  another member with its session, completes a request.

usage: zk_failover.py HOSTS PORT=PID[,PORT=PID...]   (prints one JSON object; run it under a
timeout: a cluster that never recovers would hold kazoo's calls)
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

from kazoo.client import KazooClient

hosts = sys.argv[1]
pids = {int(port): int(pid) for port, pid in (pair.split("=") for pair in sys.argv[2].split(","))}

# Expiry: a child process holds the ephemeral node, then dies without closing its session.
path = "/failover-" + uuid.uuid4().hex
child = subprocess.Popen(
    [sys.executable, "-c", f"""
import sys, time
from kazoo.client import KazooClient
zk = KazooClient(hosts={hosts!r}, timeout=4.0)
zk.start(timeout=15)
zk.create({path!r}, b"", ephemeral=True)
print("ready", flush=True)
time.sleep(600)
"""],
    stdout=subprocess.PIPE, text=True)
assert child.stdout.readline().strip() == "ready"
watcher = KazooClient(hosts=hosts, timeout=10.0)
watcher.start(timeout=15)
deleted = threading.Event()
assert watcher.exists(path, watch=lambda event: deleted.set()) is not None
killed = time.monotonic()
child.send_signal(signal.SIGKILL)
child.wait()
deleted.wait(60)
expiry = time.monotonic() - killed if deleted.is_set() else None
watcher.stop()
watcher.close()

# Reconnection: kill the member the client is connected to.
client = KazooClient(hosts=hosts, timeout=10.0)
client.start(timeout=15)
client.exists("/")
port = client._connection._socket.getpeername()[1]
killed = time.monotonic()
os.kill(pids[port], signal.SIGKILL)
reconnected = None
while time.monotonic() - killed < 60:
    try:
        client.exists_async("/").get(timeout=1)
        if client._connection._socket is not None and client._connection._socket.getpeername()[1] != port:
            reconnected = time.monotonic() - killed
            break
    except Exception:
        pass
    time.sleep(0.01)
client.stop()
client.close()
print(json.dumps({"expiry_s": expiry, "reconnect_s": reconnected}))
