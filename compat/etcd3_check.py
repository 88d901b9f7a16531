"""Checks ballot with the python etcd3 client (0.12.0), including the chapter's own examples:
service registration with a lease and keep-alive, discovery by prefix, a prefix watch callback,
and a compare-and-set transaction on a counter. Every check asserts the result."""

import json
import sys
import threading
import time

import etcd3

host, port = sys.argv[1], int(sys.argv[2])
etcd = etcd3.client(host=host, port=port, timeout=10)
checks = 0


def check(name, condition, detail=""):
    global checks
    if not condition:
        print(f"FAIL {name} {detail}")
        sys.exit(1)
    checks += 1
    print(f"ok   {name}")


# Plain key-value.
etcd.put("/compat/py/a", "1")
value, meta = etcd.get("/compat/py/a")
check("put/get", value == b"1" and meta.key == b"/compat/py/a" and meta.version == 1, repr((value, meta)))
etcd.put("/compat/py/b", "2")
found = sorted((m.key, v) for v, m in etcd.get_prefix("/compat/py/"))
check("get_prefix", found == [(b"/compat/py/a", b"1"), (b"/compat/py/b", b"2")], repr(found))
check("delete", etcd.delete("/compat/py/a") is True and etcd.get("/compat/py/a") == (None, None))
check("delete missing", etcd.delete("/compat/py/missing") is False)
etcd.delete_prefix("/compat/py/")
check("delete_prefix", list(etcd.get_prefix("/compat/py/")) == [])

# The chapter's service registration: a lease, a key on it, keep-alive.
events = []
seen = threading.Event()


def on_service_change(response):
    # etcd3 0.12 hands the callback a response holding events.
    for event in getattr(response, "events", [response]):
        events.append(event)
    seen.set()


prefix = "/services/web/"
watch_id = etcd.add_watch_prefix_callback(prefix, on_service_change)
lease = etcd.lease(ttl=5)
key = f"{prefix}instance-1"
etcd.put(key, json.dumps({"address": "127.0.0.1:8080", "registered_at": time.time()}), lease=lease)
instances = [json.loads(v.decode()) for v, _ in etcd.get_prefix(prefix)]
check("discover by prefix", instances and instances[0]["address"] == "127.0.0.1:8080", repr(instances))
check("watch callback sees the registration", seen.wait(5) and isinstance(events[0], etcd3.events.PutEvent))
ttl_before = lease.remaining_ttl
time.sleep(2)
lease.refresh()
check("keep-alive renews the lease", lease.remaining_ttl >= ttl_before - 1 and lease.granted_ttl == 5, repr((ttl_before, lease.remaining_ttl)))
check("lease lists its keys", [k for k in lease.keys] == [key.encode()], repr(lease.keys))
seen.clear()
lease.revoke()
deadline = time.time() + 5
while time.time() < deadline and not any(isinstance(e, etcd3.events.DeleteEvent) for e in events):
    seen.wait(0.2)
check("revoking the lease deletes the key (watch sees it)", any(isinstance(e, etcd3.events.DeleteEvent) for e in events))
check("the key is gone", etcd.get(key) == (None, None))
etcd.cancel_watch(watch_id)

# A lease left to expire takes its key with it.
short = etcd.lease(ttl=2)
etcd.put("/compat/py/ephemeral", "x", lease=short)
time.sleep(4.5)
check("an expired lease deletes its key", etcd.get("/compat/py/ephemeral") == (None, None))

# The chapter's compare-and-set on a counter.
etcd.put("/counter", b"5")
succeeded, responses = etcd.transaction(
    compare=[etcd.transactions.value("/counter") == b"5"],
    success=[etcd.transactions.put("/counter", b"6")],
    failure=[etcd.transactions.get("/counter")],
)
check("cas succeeds on the expected value", succeeded and etcd.get("/counter")[0] == b"6")
succeeded, responses = etcd.transaction(
    compare=[etcd.transactions.value("/counter") == b"5"],
    success=[etcd.transactions.put("/counter", b"7")],
    failure=[etcd.transactions.get("/counter")],
)
check("cas fails on a stale value and runs the failure branch", not succeeded and responses[0][0][0] == b"6", repr(responses))

# Locks (built by the client on txn and leases).
lock = etcd.lock("compat-lock", ttl=10)
check("lock acquired", lock.acquire(timeout=5) and lock.is_acquired())
other = etcd.lock("compat-lock", ttl=10)
check("a second holder waits", other.acquire(timeout=1) is False)
lock.release()
check("released lock can be taken", other.acquire(timeout=5))
other.release()

# A watch from a compacted revision fails with the compaction; a watch again from the compact
# revision, on the same client (one watch stream), then works. (It used to fail again: the
# compaction came inside the created answer, and a watch id was handed out twice.)
etcd.put("/compat/compacted", b"1")
compact_at = etcd.put("/compat/compacted", b"2").header.revision
etcd.compact(compact_at)
try:
    events, cancel = etcd.watch("/compat/compacted", start_revision=1)
    next(events)
    compaction_seen = False
except etcd3.exceptions.RevisionCompactedError as error:
    compaction_seen = error.compacted_revision == compact_at
check("watch from a compacted revision reports the compaction", compaction_seen)
events, cancel = etcd.watch("/compat/compacted", start_revision=compact_at)
etcd.put("/compat/compacted", b"3")
first = next(events)
check("the same client watches again from the compact revision", first.value == b"2", repr(first))
cancel()
etcd.delete("/compat/compacted")

# Cluster and status.
members = list(etcd.members)
check("member list", len(members) >= 1 and all(m.client_urls for m in members), repr(members))
status = etcd.status()
check("status names a leader", status.leader is not None and status.db_size > 0, repr(status))

print(f"python etcd3: {checks} checks passed")
