"""The differential check of the ZooKeeper front end: one scripted sequence of operations
(errors, versions, sequence numbers, ACLs, watches fired, multi results) sent through kazoo to
ZooKeeper 3.8 and to ballot, each under a fresh chroot, and the two transcripts compared after
normalizing what may differ: zxids become their rank among the zxids the run saw (ZooKeeper
spends a zxid on a failed write, ballot does not), times are dropped, and session ids become
the name of the session that owns them.

usage: zk_diff.py ZOOKEEPER_HOSTS BALLOT_HOSTS
"""

import json
import sys
import threading
import uuid

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.security import make_digest_acl, make_acl


def run(hosts):
    """The transcript of the script against `hosts`: a list of [step, answer]."""
    root = "/diff" + uuid.uuid4().hex
    setup = KazooClient(hosts=hosts)
    setup.start(timeout=15)
    setup.ensure_path(root)
    setup.stop()
    setup.close()
    a = KazooClient(hosts=hosts + root, timeout=10)
    b = KazooClient(hosts=hosts + root, timeout=10)
    a.start(timeout=15)
    b.start(timeout=15)
    sessions = {a.client_id[0]: "A", b.client_id[0]: "B"}
    out = []
    events = []
    lock = threading.Lock()

    def watcher(name):
        def record(event):
            with lock:
                events.append([name, event.type, event.path])
        return record

    def step(name, call):
        try:
            answer = call()
        except KazooException as error:
            answer = {"error": type(error).__name__}
        except ValueError as error:
            answer = {"client refused": str(error)}
        out.append([name, answer])

    def settle():
        # Events arrive on kazoo's thread: a sync on both sessions flushes what is due.
        a.sync("/")
        b.sync("/")
        with lock:
            taken = sorted(events)
            events.clear()
        return taken

    step("create /n", lambda: a.create("/n", b"one"))
    step("create /n again", lambda: a.create("/n", b"two"))
    step("create below a missing parent", lambda: a.create("/missing/x", b""))
    step("create with makepath", lambda: a.create("/deep/er/node", b"d", makepath=True))
    step("create without data", lambda: a.create("/empty"))
    step("get empty", lambda: a.get("/empty"))
    step("sequential 1", lambda: a.create("/n/s-", b"", sequence=True))
    step("sequential 2", lambda: b.create("/n/s-", b"", sequence=True))
    step("plain child", lambda: a.create("/n/plain", b""))
    step("sequential 3 after a plain child", lambda: a.create("/n/s-", b"", sequence=True))
    step("sequential with a trailing slash", lambda: a.create("/n/", b"", sequence=True))
    step("ephemeral", lambda: a.create("/n/e", b"eph", ephemeral=True))
    step("child of an ephemeral", lambda: a.create("/n/e/x", b""))
    step("ephemeral sequential", lambda: b.create("/n/es-", b"", ephemeral=True, sequence=True))
    step("children of /n", lambda: sorted(b.get_children("/n")))
    step("stat of /n", lambda: b.exists("/n"))
    step("get /n", lambda: b.get("/n"))
    step("get ephemeral", lambda: b.get("/n/e"))
    step("exists missing", lambda: b.exists("/nope"))
    step("get missing", lambda: b.get("/nope"))
    step("children of missing", lambda: b.get_children("/nope"))
    step("set version 0", lambda: a.set("/n", b"v1", version=0))
    step("set version 0 again", lambda: a.set("/n", b"v2", version=0))
    step("set any version", lambda: a.set("/n", b"v2"))
    step("set missing", lambda: a.set("/nope", b""))
    step("delete non-empty", lambda: a.delete("/n"))
    step("delete wrong version", lambda: a.delete("/n/plain", version=5))
    step("delete", lambda: a.delete("/n/plain", version=0))
    step("delete missing", lambda: a.delete("/n/plain"))
    step("bad path with a dot", lambda: a.create("/n/./x", b""))
    step("bad path with a trailing slash", lambda: a.create("/n/x/", b""))

    # Multi.
    def txn(build):
        t = a.transaction()
        build(t)
        return t.commit()
    step("multi ok", lambda: txn(lambda t: (t.create("/t1", b"a"), t.check("/n", 2), t.set_data("/n", b"v3"), t.delete("/empty"))))
    step("multi failing in the middle", lambda: txn(lambda t: (t.create("/t2", b""), t.check("/n", 99), t.create("/t3", b""))))
    step("after the failed multi", lambda: [a.exists("/t2"), a.exists("/t3")])
    step("multi sequential", lambda: txn(lambda t: (t.create("/n/q-", b"", sequence=True), t.create("/n/q-", b"", sequence=True))))
    step("multi create then child", lambda: txn(lambda t: (t.create("/t4", b""), t.create("/t4/c", b""))))
    step("multi delete missing", lambda: txn(lambda t: (t.delete("/t4/c"), t.delete("/nope"))))

    # ACLs.
    digest = make_digest_acl("alice", "secret", all=True)
    read_only = make_acl("world", "anyone", read=True)
    step("create with a digest ACL", lambda: a.create("/secure", b"s", acl=[digest]))
    # b's member may not have the create yet (ZooKeeper reads are not linearizable across
    # sessions): a sync first, as after a's close below.
    step("read it without auth", lambda: (b.sync("/secure"), b.get("/secure"))[1])
    step("its ACL without auth", lambda: b.get_acls("/secure")[0])
    step("children of it without auth", lambda: b.get_children("/secure"))
    step("exists needs no permission", lambda: b.exists("/secure") is not None)
    step("auth", lambda: b.add_auth("digest", "alice:secret"))
    step("read it with auth", lambda: b.get("/secure"))
    step("its ACL with auth", lambda: b.get_acls("/secure")[0])
    step("set a read-only ACL", lambda: b.set_acls("/secure", [read_only]))
    step("write under a read-only ACL", lambda: b.set("/secure", b"x"))
    step("set an ACL at a wrong version", lambda: a.set_acls("/n", [read_only], version=3))
    step("an invalid ACL", lambda: a.create("/bad", b"", acl=[make_acl("digest", "nocolon", all=True)]))
    step("an auth ACL with no auth", lambda: a.create("/bad", b"", acl=[make_acl("auth", "", all=True)]))
    step("an auth ACL with auth", lambda: (b.create("/mine", b"", acl=[make_acl("auth", "", all=True)]), b.get_acls("/mine")[0]))
    step("a duplicate ACL entry", lambda: (a.create("/dup", b"", acl=[read_only, read_only]), a.get_acls("/dup")[0]))

    # Watches: one-shot data, child and existence watches, each fired once.
    step("watch data", lambda: a.get("/n", watch=watcher("a data /n")))
    step("watch children", lambda: sorted(a.get_children("/n", watch=watcher("a children /n"))))
    step("watch existence", lambda: a.exists("/later", watch=watcher("a exists /later")))
    step("watch a node to delete", lambda: a.get("/t1", watch=watcher("a data /t1")))
    step("b sets /n", lambda: b.set("/n", b"w1"))
    step("b sets /n again (no watch left)", lambda: b.set("/n", b"w2"))
    step("b creates a child of /n", lambda: b.create("/n/w", b""))
    step("b creates /later", lambda: b.create("/later", b""))
    step("b deletes /t1", lambda: b.delete("/t1"))
    step("events fired", settle)
    step("watch children then delete the parent", lambda: (a.create("/gone", b""), a.get_children("/gone", watch=watcher("a children /gone"))))
    step("b deletes /gone", lambda: b.delete("/gone"))
    step("events fired on delete", settle)

    # A session's end deletes its ephemerals and fires their watches.
    step("watch a's ephemeral", lambda: b.exists("/n/e", watch=watcher("b exists /n/e")))
    a.stop()
    a.close()
    # b may be served by another member than a was: as in a ZooKeeper ensemble, only a sync
    # makes b's server catch up with a write it did not see (here, a's closeSession).
    step("after a closed: children of /n", lambda: (b.sync("/n"), sorted(b.get_children("/n")))[1])
    step("events fired when a closed", settle)
    b.stop()
    b.close()
    return normalize(out, sessions)


def normalize(out, sessions):
    """Turns zxids into ranks, drops times and names sessions (see the module's doc)."""
    zxids = set()

    def collect(value):
        if hasattr(value, "czxid"):
            zxids.update([value.czxid, value.mzxid, value.pzxid])
        elif isinstance(value, (list, tuple)):
            for item in value:
                collect(item)
    for _, answer in out:
        collect(answer)
    rank = {zxid: i for i, zxid in enumerate(sorted(zxids))}

    def convert(value):
        if hasattr(value, "czxid"):
            return {
                "czxid": rank[value.czxid], "mzxid": rank[value.mzxid], "pzxid": rank[value.pzxid],
                "version": value.version, "cversion": value.cversion, "aversion": value.aversion,
                "ephemeralOwner": sessions.get(value.ephemeralOwner, value.ephemeralOwner),
                "dataLength": value.dataLength, "numChildren": value.numChildren,
                "ctime<=mtime": value.ctime <= value.mtime,
            }
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        if isinstance(value, (list, tuple)):
            return [convert(item) for item in value]
        if isinstance(value, Exception):
            return {"error": type(value).__name__}
        if hasattr(value, "perms") and hasattr(value, "id"):
            return {"perms": value.perms, "scheme": value.id.scheme, "id": value.id.id}
        return value
    return [[name, convert(answer)] for name, answer in out]


def main():
    zookeeper, ballot = sys.argv[1], sys.argv[2]
    expected = run(zookeeper)
    got = run(ballot)
    differences = 0
    for (name, want), (_, have) in zip(expected, got):
        if want != have:
            differences += 1
            print(f"DIFF {name}\n  zookeeper: {json.dumps(want)}\n  ballot:    {json.dumps(have)}")
    print(f"{len(expected)} steps compared, {differences} differences")
    sys.exit(1 if differences or len(expected) != len(got) else 0)


if __name__ == "__main__":
    main()
