"""The differential check of etcd's JSON gateway: the same HTTP requests to etcd 3.4 and to
ballot (one fresh member each), the answers compared after normalizing what differs by nature
(member and cluster ids, raft terms, lease ids, sizes, versions). Status codes, bodies and, for
the streaming calls, every object of the stream are compared.

    python3 diff_gateway.py ETCD_URL BALLOT_URL DIFFERENCES_FILE

Known differences are the "- `step`: why" lines of the differences file; any other fails.
"""

import base64
import http.client
import json
import re
import sys
import time
import urllib.parse

ID_FIELDS = {"ID", "id", "member_id", "memberID", "leader", "lease"}
DROPPED_FIELDS = {
    "cluster_id", "raft_term", "raftTerm", "raftIndex", "raftAppliedIndex", "dbSize", "dbSizeInUse",
    "version", "token", "peerURLs", "clientURLs", "name", "blob", "etcdserver", "etcdcluster",
}


def b64(text):
    return base64.b64encode(text.encode()).decode()


class Side:
    def __init__(self, url):
        parsed = urllib.parse.urlparse(url)
        self.host, self.port = parsed.hostname, parsed.port
        self.ids = {}
        self.lease = None
        self.token = None

    def normalize(self, value):
        if isinstance(value, dict):
            out = {}
            for field, item in value.items():
                if field in DROPPED_FIELDS:
                    continue
                if field in ID_FIELDS and not isinstance(item, (dict, list)):
                    out[field] = "<id %d>" % self.ids.setdefault(str(item), len(self.ids) + 1)
                else:
                    out[field] = self.normalize(item)
            return out
        if isinstance(value, (list, tuple)):
            return [self.normalize(item) for item in value]
        return value

    def call(self, method, path, body=None, headers=None):
        """Status, content type and parsed body of one request (a stream's objects as a list)."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        sent = {} if headers is None else dict(headers)
        if self.token:
            sent["Authorization"] = self.token
        data = None if body is None else (body if isinstance(body, str) else json.dumps(body))
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        raw = response.read()
        connection.close()
        return response.status, parse(raw)

    def stream(self, path, body, writes=(), seconds=1.5):
        """The objects of a chunked answer read for `seconds`, with `writes` made meanwhile."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=seconds)
        connection.request("POST", path, body=json.dumps(body))
        response = connection.getresponse()
        chunked = response.getheader("transfer-encoding") == "chunked"
        for key, value in writes:
            time.sleep(0.2)
            self.call("POST", "/v3/kv/put", {"key": b64(key), "value": b64(value)})
        raw = b""
        deadline = time.time() + seconds
        try:
            while time.time() < deadline:
                piece = response.read1(65536) if hasattr(response, "read1") else response.read(1)
                if not piece:
                    break
                raw += piece
        except (TimeoutError, OSError):
            pass
        connection.close()
        return response.status, chunked, parse(raw)


def parse(raw):
    """A body as JSON values: one, or a list when it holds several (a stream)."""
    text = raw.decode(errors="replace").strip()
    if not text:
        return None
    decoder, at, values = json.JSONDecoder(), 0, []
    while at < len(text):
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            break
        try:
            value, at = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            return {"not json": text[:200]}
        values.append(value)
    return values[0] if len(values) == 1 else values


class Check:
    def __init__(self, etcd_url, ballot_url, differences):
        self.etcd, self.ballot = Side(etcd_url), Side(ballot_url)
        self.known = {}
        for line in open(differences, encoding="utf-8"):
            match = re.match(r"- `([^`]+)`:\s*(.*)", line)
            if match:
                self.known[match.group(1)] = match.group(2)
        self.steps, self.known_seen, self.unexplained = 0, set(), []

    def step(self, name, action):
        etcd = self.etcd.normalize(action(self.etcd))
        ballot = self.ballot.normalize(action(self.ballot))
        self.steps += 1
        if etcd == ballot:
            print("same  " + name)
        elif name in self.known:
            print("known %s: %s" % (name, self.known[name]))
            self.known_seen.add(name)
        else:
            print("DIFF  %s\n  etcd:   %s\n  ballot: %s" % (name, json.dumps(etcd), json.dumps(ballot)))
            self.unexplained.append(name)


def post(path, body=None, raw=None):
    return lambda side: side.call("POST", path, raw if raw is not None else body)


def main():
    check = Check(*sys.argv[1:4])
    step = check.step
    step("gateway: GET /version", lambda side: side.call("GET", "/version")[0])
    step("gateway: put", post("/v3/kv/put", {"key": b64("a"), "value": b64("1")}))
    step("gateway: put under /v3beta", post("/v3beta/kv/put", {"key": b64("a"), "value": b64("2")}))
    step("gateway: put with prev_kv (camelCase name)", post("/v3/kv/put", {"key": b64("a"), "value": b64("3"), "prevKv": True}))
    step("gateway: range", post("/v3/kv/range", {"key": b64("a")}))
    step("gateway: range with a string revision", post("/v3/kv/range", {"key": b64("a"), "revision": "2"}))
    step("gateway: range of a missing key", post("/v3/kv/range", {"key": b64("none")}))
    step("gateway: range with no key (an empty body)", post("/v3/kv/range", raw=""))
    step("gateway: range with unknown fields", post("/v3/kv/range", {"key": b64("a"), "unknown": 1}))
    step("gateway: range with a malformed body", post("/v3/kv/range", raw='{"key":'))
    step("gateway: range with a number for bytes", post("/v3/kv/range", {"key": 1}))
    step("gateway: txn create-if-absent (Patroni's)", post("/v3/kv/txn", {
        "compare": [{"target": "CREATE", "create_revision": 0, "key": b64("leader")}],
        "success": [{"request_put": {"key": b64("leader"), "value": b64("n1")}}]}))
    step("gateway: the same txn again (fails)", post("/v3/kv/txn", {
        "compare": [{"target": "CREATE", "create_revision": 0, "key": b64("leader")}],
        "success": [{"request_put": {"key": b64("leader"), "value": b64("n2")}}]}))
    step("gateway: txn compare-and-delete by mod revision", post("/v3/kv/txn", {
        "compare": [{"target": "MOD", "mod_revision": "5", "key": b64("leader")}],
        "success": [{"request_delete_range": {"key": b64("leader")}}]}))
    step("gateway: deleterange", post("/v3/kv/deleterange", {"key": b64("a"), "prev_kv": True}))
    step("gateway: compaction of a future revision", post("/v3/kv/compaction", {"revision": "100"}))

    def grant(side):
        status, body = side.call("POST", "/v3/lease/grant", {"TTL": 30})
        side.lease = body.get("ID") if isinstance(body, dict) else None
        return status, body
    step("gateway: lease grant", grant)
    step("gateway: put on the lease (its id as a string)",
         lambda side: side.call("POST", "/v3/kv/put", {"key": b64("l"), "value": b64("v"), "lease": side.lease}))
    step("gateway: put on an unknown lease", post("/v3/kv/put", {"key": b64("l"), "value": b64("v"), "lease": "12345"}))
    step("gateway: lease timetolive with keys",
         lambda side: side.call("POST", "/v3/lease/timetolive", {"ID": side.lease, "keys": True}))
    step("gateway: kv/lease/timetolive of an unknown lease", post("/v3/kv/lease/timetolive", {"ID": "12345"}))
    step("gateway: lease leases", post("/v3/lease/leases", {}))
    step("gateway: lease keepalive (one request: one answer, then the end)",
         lambda side: side.stream("/v3/lease/keepalive", {"ID": side.lease}))
    step("gateway: lease keepalive of an unknown lease", lambda side: side.stream("/v3/lease/keepalive", {"ID": "12345"}))
    step("gateway: watch (created, then a put and a delete)",
         lambda side: side.stream("/v3/watch", {"create_request": {"key": b64("w")}}, writes=[("w", "1")]))
    step("gateway: watch from a compacted revision",
         lambda side: (side.call("POST", "/v3/kv/compaction", {"revision": "3"}),
                       side.stream("/v3/watch", {"create_request": {"key": b64("a"), "start_revision": "1"}}, seconds=1)))
    step("gateway: kv/lease/revoke", lambda side: side.call("POST", "/v3/kv/lease/revoke", {"ID": side.lease}))
    step("gateway: lease revoke of an unknown lease", post("/v3/lease/revoke", {"ID": "12345"}))
    step("gateway: member list", post("/v3/cluster/member/list", {}))
    step("gateway: member remove of an unknown member", post("/v3/cluster/member/remove", {"ID": "1234"}))
    step("gateway: maintenance status", post("/v3/maintenance/status", {}))
    step("gateway: maintenance alarm list", post("/v3/maintenance/alarm", {"action": "GET"}))
    step("gateway: maintenance hash", lambda side: (lambda answer: (answer[0], {k: v for k, v in answer[1].items() if k != "hash"}))(
        side.call("POST", "/v3/maintenance/hash", {})))
    step("gateway: maintenance transfer-leadership to an unknown member",
         post("/v3/maintenance/transfer-leadership", {"targetID": "1234"}))
    step("gateway: lock with an unknown lease", post("/v3/lock/lock", {"name": b64("l"), "lease": "12345"}))
    step("gateway: election leader of an election with none", post("/v3/election/leader", {"name": b64("e")}))
    step("gateway: auth authenticate while auth is off", post("/v3/auth/authenticate", {"name": "root", "password": "x"}))
    step("gateway: auth user add, role add, user list", lambda side: (
        side.call("POST", "/v3/auth/user/add", {"name": "root", "password": "pw"}),
        side.call("POST", "/v3/auth/role/add", {"name": "r"}),
        side.call("POST", "/v3/auth/user/grant", {"user": "root", "role": "root"}),
        side.call("POST", "/v3/auth/user/list", {})))
    step("gateway: auth enable", post("/v3/auth/enable", {}))
    step("gateway: range without a token", post("/v3/kv/range", {"key": b64("a")}))
    step("gateway: range with a bad token", lambda side: side.call("POST", "/v3/kv/range", {"key": b64("a")},
                                                                    {"Authorization": "bad.1"}))

    def login(side):
        status, body = side.call("POST", "/v3/auth/authenticate", {"name": "root", "password": "pw"})
        side.token = body.get("token") if isinstance(body, dict) else None
        return status, body
    step("gateway: authenticate root", login)
    step("gateway: range with the token in Authorization", post("/v3/kv/range", {"key": b64("leader")}))
    step("gateway: auth disable", post("/v3/auth/disable", {}))
    step("gateway: an unknown path under /v3", post("/v3/kv/nothing", {}))
    step("gateway: GET on a POST route", lambda side: side.call("GET", "/v3/kv/range")[0])
    step("gateway: /v3alpha is not served", lambda side: side.call("POST", "/v3alpha/kv/range", {})[0])

    stale = sorted(name for name in check.known if name.startswith("gateway:") and name not in check.known_seen)
    for name in stale:
        print("note: `%s` is listed as a known difference but now answers the same (or is not a step)" % name)
    print("%d steps: %d the same, %d known differences, %d unexplained" % (
        check.steps, check.steps - len(check.known_seen) - len(check.unexplained), len(check.known_seen),
        len(check.unexplained)))
    sys.exit(1 if check.unexplained else 0)


if __name__ == "__main__":
    main()
