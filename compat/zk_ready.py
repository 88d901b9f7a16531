"""Exits 0 when every ZooKeeper server in HOSTS (host:port,…) serves: its `srvr` answer says it
is a leader or a follower. Used by compat/zookeeper.sh and bench/compare-zookeeper.sh."""

import socket
import sys

for host in sys.argv[1].split(","):
    address, port = host.rsplit(":", 1)
    try:
        with socket.create_connection((address, int(port)), timeout=1) as s:
            s.sendall(b"srvr")
            text = s.makefile().read()
    except OSError:
        sys.exit(1)
    if "Mode: leader" not in text and "Mode: follower" not in text:
        sys.exit(1)
