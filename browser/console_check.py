"""Drives the web console of a real 3-member cluster in headless Chromium through WebDriver:
the cluster view shows three members and one leader; a put through etcdctl appears in the keys
view without a reload, and its value and history show; a lease's countdown moves and a lock's
holder and waiter show with the fencing token; the metrics charts draw a load as it runs;
operations ask for confirmation and run (compact, a put from the keys view); a request forged
by a page of another origin is refused; with authentication on, the console asks for a login, a
read-only user sees keys but no operation or edit buttons, and root sees the operations;
killing the leader shows another leader within seconds. Screenshots of each view at 1280x800
and in a narrow window go to ARTIFACTS.

Usage: console_check.py BALLOT_BINARY ARTIFACTS
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import HTTPServer, SimpleHTTPRequestHandler
from pathlib import Path

from chromium import browser

ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"
from selenium.webdriver.common.by import By


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class Cluster:
    def __init__(self, ballot, work):
        ports = free_ports(11)
        # The third member serves ZooKeeper's protocol too (the view reads the tree from any),
        # and shows the fleet of the first of two gossip agents.
        self.zk = f"127.0.0.1:{ports[6]}"
        self.agents = [(f"127.0.0.1:{ports[7 + 2 * i]}", f"127.0.0.1:{ports[8 + 2 * i]}") for i in range(2)]
        self.clients = [f"http://127.0.0.1:{ports[2 * i]}" for i in range(3)]
        peers = [f"http://127.0.0.1:{ports[2 * i + 1]}" for i in range(3)]
        initial = ",".join(f"c{i + 1}={peers[i]}" for i in range(3))
        self.processes = []
        for i in range(3):
            log = open(work / f"c{i + 1}.log", "w")
            self.processes.append(subprocess.Popen(
                [ballot, "serve", "--name", f"c{i + 1}", "--data-dir", str(work / f"c{i + 1}"),
                 "--listen-client-urls", self.clients[i], "--advertise-client-urls", self.clients[i],
                 "--listen-peer-urls", peers[i], "--initial-advertise-peer-urls", peers[i],
                 "--initial-cluster", initial, "--heartbeat-interval", "50", "--election-timeout", "500"]
                + (["--listen-zk-urls", self.zk, "--ui-agent", self.agents[0][1]] if i == 2 else []),
                stdout=log, stderr=subprocess.STDOUT))

    def start_agents(self, ballot, work):
        """Two gossip agents, the second joining through the first."""
        self.agent_processes = []
        for i, (gossip, rpc) in enumerate(self.agents):
            join = ["--join", self.agents[0][0]] if i else []
            log = open(work / f"agent{i + 1}.log", "w")
            self.agent_processes.append(subprocess.Popen(
                [ballot, "agent", "--node", f"agent{i + 1}", "--bind", gossip, "--rpc-addr", rpc,
                 "--tag", f"role={'db' if i == 0 else 'web'}", *join], stdout=log, stderr=subprocess.STDOUT))

    def endpoints(self):
        return ",".join(url.removeprefix("http://") for i, url in enumerate(self.clients) if self.processes[i])

    def etcdctl(self, *args):
        done = subprocess.run(["etcdctl", f"--endpoints={self.endpoints()}", *args], check=True, capture_output=True,
                              env={**os.environ, "ETCDCTL_API": "3"}, text=True)
        return done.stdout

    def get(self, key, *auth):
        return self.etcdctl(*auth, "get", "--print-value-only", key).strip()

    def etcdctl_background(self, *args):
        return subprocess.Popen(["etcdctl", f"--endpoints={self.endpoints()}", *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env={**os.environ, "ETCDCTL_API": "3"})

    def kill(self, i):
        self.processes[i].send_signal(signal.SIGKILL)
        self.processes[i].wait()
        self.processes[i] = None

    def stop(self):
        for process in self.processes + getattr(self, "agent_processes", []):
            if process:
                process.kill()
                process.wait()


def wait(what, check, within=15):
    deadline = time.time() + within
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {within} s")


def text(driver, selector):
    """An element's text, read by script: the views redraw as they go live, so an element found
    a moment ago may be gone."""
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.innerText : null", selector)


def click(driver, selector):
    driver.execute_script("document.querySelector(arguments[0]).click()", selector)


def members(driver):
    return driver.execute_script(
        "return [...document.querySelectorAll('#members .member')].map(m => "
        "({id: m.dataset.id, role: m.querySelector('.badge').textContent}))")


def screenshots(driver, artifacts, name):
    for width, height, size in ((1280, 800, "wide"), (420, 900, "narrow")):
        driver.set_window_size(width, height)
        time.sleep(0.3)
        overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{name} at {width}x{height}: the page is {overflow}px wider than the window"
        driver.save_screenshot(str(artifacts / f"console-{name}-{size}.png"))
    driver.set_window_size(1280, 800)


def confirm(driver):
    """Answers the console's confirmation dialog with Confirm."""
    wait("a confirmation dialog", lambda: driver.execute_script("return document.getElementById('confirm').open"))
    click(driver, "#confirm-yes")


def forged_page(work, target):
    """Serves, from another origin, a page that posts to the console's put action the two
    ways a forger can without reading anything: a form (text/plain, so the body is JSON) and a
    no-cors fetch. Returns the page's URL and the server."""
    page = work / "forged" / "index.html"
    page.parent.mkdir()
    page.write_text(f"""<!doctype html><body>
<form id="f" method="POST" action="{target}/ui/act/put" enctype="text/plain" target="sink">
<input name='{{"key": "forged/form", "value": "x", "pad": "' value='"}}'></form>
<iframe name="sink"></iframe>
<script>
fetch("{target}/ui/act/put", {{ method: "POST", mode: "no-cors", body: '{{"key": "forged/fetch", "value": "x"}}' }})
  .finally(() => {{ document.getElementById("f").submit(); setTimeout(() => document.title = "sent", 1500); }});
</script></body>""")
    handler = lambda *a: SimpleHTTPRequestHandler(*a, directory=str(page.parent))
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/index.html", server


def log_in(driver, url, user, password, artifacts=None):
    driver.get("about:blank")  # a fresh page load, not a move within the page
    driver.get(url)
    wait("the login dialog", lambda: driver.execute_script("return document.getElementById('login').open"))
    if artifacts:
        screenshots(driver, artifacts, "login")
    driver.find_element(By.ID, "login-user").send_keys(user)
    driver.find_element(By.ID, "login-password").send_keys(password)
    click(driver, "#login-submit")
    try:
        wait(f"logged in as {user}", lambda: user in (text(driver, "#who") or ""))
    except AssertionError:
        state = driver.execute_script("return [document.getElementById('login').open, "
                                      "document.getElementById('login-user').value, document.getElementById('login-password').value]")
        raise AssertionError(f"not logged in as {user}: dialog {state}, who {text(driver, '#who')!r}, "
                             f"login error {text(driver, '#login-error')!r}, error {text(driver, '#error')!r}, "
                             f"browser log {driver.get_log('browser')[-5:]}, requests "
                             f"{driver.execute_script('return performance.getEntriesByType(`resource`).slice(-8).map(e => [e.name, e.responseStatus, e.duration])')}")


def main():
    ballot, artifacts = sys.argv[1], Path(sys.argv[2])
    artifacts.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ballot-console-"))
    cluster = Cluster(ballot, work)
    cluster.start_agents(ballot, work)
    driver = browser()
    try:
        driver.set_window_size(1280, 800)
        # Serve the page from the third member, then find the leader and kill another: the page
        # must show the change. (If the serving member itself were killed, its stream would end.)
        driver.get(cluster.clients[2] + "/ui")
        driver.execute_script("window.loadedMark = 'still the same page'")
        wait("three members, one leader", lambda: len(members(driver)) == 3
             and sum(m["role"] == "leader" for m in members(driver)) == 1)
        screenshots(driver, artifacts, "cluster")

        driver.get(cluster.clients[2] + "/ui#keys")
        driver.execute_script("window.loadedMark = 'still the same page'")
        wait("the keys view", lambda: text(driver, "#key-count"))
        cluster.etcdctl("put", "/console/greeting", "hello")
        cluster.etcdctl("put", "/console/config", '{"replicas": 3, "zone": "a"}')
        selector = '#tree .key[data-key="/console/greeting"]'
        wait("the put shows without a reload", lambda: driver.find_elements(By.CSS_SELECTOR, selector))
        assert driver.execute_script("return window.loadedMark") == "still the same page", "the page reloaded"
        click(driver, selector)
        wait("the value", lambda: text(driver, "#value") == "hello")
        cluster.etcdctl("put", "/console/greeting", "hello again")
        wait("the new value, live", lambda: text(driver, "#value") == "hello again")
        wait("a history of two versions",
             lambda: driver.execute_script("return document.querySelectorAll('#detail tbody tr').length") == 2)
        click(driver, '#tree .key[data-key="/console/config"]')
        wait("the JSON value", lambda: "replicas" in (text(driver, "#value") or ""))
        click(driver, '#detail button[data-mode="json"]')
        wait("pretty-printed", lambda: '\n  "replicas": 3' in (text(driver, "#value") or ""))
        screenshots(driver, artifacts, "keys")

        # "lease 694d7a1b2c3d4e5f granted with TTL(30s)"
        lease = cluster.etcdctl("lease", "grant", "30").split()[1]
        lease = format(int(lease, 16), "x")  # etcdctl pads ids to 16 digits; the console does not
        cluster.etcdctl("put", "--lease", lease, "/console/session", "alive")
        holder = cluster.etcdctl_background("lock", "jobs/nightly", "sleep", "60")
        time.sleep(1)
        waiter = cluster.etcdctl_background("lock", "jobs/nightly", "sleep", "1")
        try:
            driver.get(cluster.clients[2] + "/ui#leases")
            row = f'#leases tr.lease[data-id="{lease}"]'
            wait("the lease", lambda: text(driver, row))
            assert "/console/session" in text(driver, row), text(driver, row)
            ttl = lambda: int(text(driver, row + " .ttl"))
            first = ttl()
            wait("the countdown moves", lambda: ttl() <= first - 2, within=6)
            driver.find_element(By.ID, "lock-name").send_keys("jobs/nightly")
            wait("the lock's holder and waiter",
                 lambda: len(driver.find_elements(By.CSS_SELECTOR, "#holders tr.holder")) == 1
                 and len(driver.find_elements(By.CSS_SELECTOR, "#holders tr.waiter")) == 1)
            token = text(driver, "#holders tr.holder td:nth-child(3)")
            assert token.isdigit() and int(token) > 0, f"fencing token {token!r}"
            holder_lease = text(driver, "#holders tr.holder td:nth-child(4)")
            listed = driver.execute_script("return [...document.querySelectorAll('#leases tr.lease')].map(r => r.dataset.id)")
            assert holder_lease in listed, f"the holder's lease {holder_lease!r} is not among the leases {listed}"
            screenshots(driver, artifacts, "leases")
        finally:
            holder.kill()
            waiter.kill()

        driver.get(cluster.clients[2] + "/ui#metrics")
        # The view shows the serving member's own figures: the load goes through it.
        serving = cluster.clients[2].removeprefix("http://")
        load = subprocess.Popen([ballot, "bench", "put", "--endpoints", serving, "--clients", "4",
                                 "--total", "50000", "--duration", "20"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            points = lambda metric: driver.execute_script(
                "return document.querySelector(`.chart[data-metric='${arguments[0]}'] polyline`)"
                ".getAttribute('points').split(' ').filter(Boolean).length", metric)
            figure = lambda selector: float((text(driver, selector) or "0").split()[-1].replace("–", "0"))
            wait("writes/s drawn under load", lambda: points("writes_per_s") >= 8
                 and figure('.chart[data-metric="writes_per_s"] .peak') > 0, within=30)
            wait("fsync latency drawn", lambda: figure('.chart[data-metric="fsync_ms"] .peak') > 0)
            screenshots(driver, artifacts, "metrics")
        finally:
            load.kill()
            load.wait()

        # Operations, authentication off: each asks first; Cancel does nothing, Confirm runs it.
        driver.get(cluster.clients[2] + "/ui#operations")
        wait("the operations view", lambda: len(driver.find_elements(By.CSS_SELECTOR, "#op-members tr")) == 3)
        revision = int(cluster.etcdctl("put", "/console/compact-me", "1", "-w", "json").split('"revision":')[1].split(",")[0])
        driver.find_element(By.ID, "compact-revision").send_keys(str(revision))
        click(driver, "#compact")
        wait("a confirmation dialog", lambda: driver.execute_script("return document.getElementById('confirm').open"))
        screenshots(driver, artifacts, "operations-confirm")
        click(driver, "#confirm-no")
        time.sleep(0.5)
        assert (text(driver, "#outcome") or "") == "", f"cancelled, yet: {text(driver, '#outcome')}"
        click(driver, "#compact")
        confirm(driver)
        wait("compacted", lambda: (text(driver, "#outcome") or "").endswith("done"))
        old = subprocess.run(["etcdctl", f"--endpoints={cluster.endpoints()}", "get", "/console/greeting",
                              f"--rev={revision - 1}"], capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"})
        assert "compacted" in old.stderr, f"a read below the compaction: {old.stdout} {old.stderr}"

        # A member added (a learner that never starts) and removed again, each confirmed; the
        # cluster view's membership timeline shows both.
        spare = free_ports(1)[0]
        driver.find_element(By.ID, "add-peer-url").send_keys(f"http://127.0.0.1:{spare}")
        click(driver, "#add-member")
        confirm(driver)
        wait("four members", lambda: len(driver.find_elements(By.CSS_SELECTOR, "#op-members tr")) == 4)
        screenshots(driver, artifacts, "operations")
        added = driver.execute_script(
            "return [...document.querySelectorAll('#op-members tr')].find(r => r.cells[1].textContent === 'unreachable').dataset.id")
        click(driver, f'#op-members tr[data-id="{added}"] button[data-op="member-remove"]')
        confirm(driver)
        wait("three members again", lambda: len(driver.find_elements(By.CSS_SELECTOR, "#op-members tr")) == 3)
        timeline = lambda: text(driver, "#membership") or ""
        wait("the membership timeline", lambda: "added as a learner" in timeline() and "removed" in timeline())

        # A put from the keys view, confirmed.
        driver.get(cluster.clients[2] + "/ui#keys")
        wait("the keys view", lambda: text(driver, "#key-count"))
        driver.execute_script("document.getElementById('new-key').open = true")
        driver.find_element(By.ID, "new-key-name").send_keys("/console/from-the-page")
        driver.find_element(By.ID, "new-key-value").send_keys("written in the console")
        click(driver, "#new-key-put")
        confirm(driver)
        wait("the console's put", lambda: cluster.get("/console/from-the-page") == "written in the console")
        wait("its key in the tree", lambda: driver.find_elements(By.CSS_SELECTOR, '#tree .key[data-key="/console/from-the-page"]'))

        # A page of another origin tries to act without the session: refused.
        url, server = forged_page(work, cluster.clients[2])
        try:
            driver.get(url)
            wait("the forged requests sent", lambda: driver.title == "sent")
        finally:
            server.shutdown()
        time.sleep(0.5)
        assert cluster.get("forged/form") == "" and cluster.get("forged/fetch") == "", "a forged request wrote"
        print("console: forged cross-origin requests (a form and a fetch) refused")

        # ZooKeeper: nodes made through zkCli.sh show in the tree; its session and ephemeral node
        # show, and go when it quits, without a reload.
        zkcli = subprocess.Popen([ZKCLI, "-server", cluster.zk], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, text=True)
        try:
            zkcli.stdin.write("create /app hello-zk\ncreate /app/config replicas=3\ncreate -e /app/leader c3\n")
            zkcli.stdin.flush()
            driver.get(cluster.clients[2] + "/ui#zookeeper")
            wait("the /app node", lambda: driver.find_elements(By.CSS_SELECTOR, '#zk-children li[data-path="/app"]'), within=40)
            click(driver, '#zk-children li[data-path="/app"]')
            wait("its children", lambda: driver.find_elements(By.CSS_SELECTOR, '#zk-children li[data-path="/app/leader"]'))
            wait("its data", lambda: text(driver, "#zk-data") == "hello-zk")
            click(driver, '#zk-children li[data-path="/app/leader"]')
            wait("the ephemeral owner", lambda: (text(driver, "#zk-owner") or "none").startswith("0x"))
            owner = text(driver, "#zk-owner")
            row = f'#zk-sessions tr.session[data-id="{owner}"]'
            try:
                wait("its session with the ephemeral node", lambda: "/app/leader" in (text(driver, row) or ""))
            except AssertionError:
                raise AssertionError(f"owner {owner!r}; sessions: {text(driver, '#zk-sessions')!r}; error {text(driver, '#error')!r}")
            screenshots(driver, artifacts, "zookeeper")
            zkcli.stdin.write("quit\n")
            zkcli.stdin.flush()
            zkcli.wait(timeout=30)
            wait("the session and its node gone", lambda: not driver.find_elements(By.CSS_SELECTOR, row)
                 and "no such node" in (text(driver, "#zk-node") or ""))
            print("console: zkCli.sh's nodes, session and ephemeral node shown, and gone with the session")
        finally:
            zkcli.kill()

        # Gossip agents: the fleet of the agent beside the member; a killed agent goes suspect,
        # then failed.
        driver.get(cluster.clients[2] + "/ui#agents")
        status = lambda name: text(driver, f'#agents tr.agent[data-name="{name}"] .status')
        wait("two agents alive", lambda: status("agent1") == "alive" and status("agent2") == "alive", within=30)
        screenshots(driver, artifacts, "agents")
        killed = time.time()
        cluster.agent_processes[1].kill()
        wait("the killed agent suspected", lambda: status("agent2") in ("suspect", "failed"), within=30)
        print(f"console: a killed agent shown {status('agent2')} {time.time() - killed:.1f} s after its kill -9")

        # Authentication on: a reader logs in and sees keys, no operations and no edit buttons.
        for command in (["user", "add", "root:rootpw"], ["user", "grant-role", "root", "root"],
                        ["role", "add", "reader"], ["role", "grant-permission", "reader", "--prefix=true", "read", "/"],
                        ["user", "add", "viewer:viewerpw"], ["user", "grant-role", "viewer", "reader"],
                        ["auth", "enable"]):
            cluster.etcdctl(*command)
        log_in(driver, cluster.clients[2] + "/ui#keys", "viewer", "viewerpw", artifacts)
        # The reader may read /…, not every key: it browses its prefix.
        driver.find_element(By.ID, "prefix").send_keys("/console/")
        wait("the keys, read as viewer", lambda: driver.find_elements(By.CSS_SELECTOR, '#tree .key[data-key="/console/greeting"]'))
        click(driver, '#tree .key[data-key="/console/greeting"]')
        wait("the value, read as viewer", lambda: text(driver, "#value") == "hello again")
        hidden = driver.execute_script("""return {
            operations: document.getElementById('nav-operations').hidden,
            newKey: document.getElementById('new-key').hidden,
            edit: !document.getElementById('edit-put'),
            buttons: document.querySelectorAll('#op-members button').length }""")
        assert hidden == {"operations": True, "newKey": True, "edit": True, "buttons": 0}, hidden
        screenshots(driver, artifacts, "keys-read-only")
        driver.get(cluster.clients[2] + "/ui#operations")
        time.sleep(1)
        assert not driver.find_elements(By.CSS_SELECTOR, "#op-members button"), "operation buttons shown to a reader"
        click(driver, "#logout")
        log_in(driver, cluster.clients[2] + "/ui#operations", "root", "rootpw")
        wait("the operations, as root", lambda: len(driver.find_elements(By.CSS_SELECTOR, "#op-members tr")) == 3)
        print("console: a reader sees keys and no operation; root sees the operations")

        driver.get(cluster.clients[2] + "/ui#cluster")
        wait("a leader", lambda: any(m["role"] == "leader" for m in members(driver)))
        leader_id = next(m["id"] for m in members(driver) if m["role"] == "leader")
        leader = next(i for i, m in enumerate(members(driver)) if m["id"] == leader_id)
        # Members are listed by id; map the leader back to its process by its client URL.
        url = driver.execute_script(
            "return document.querySelector(`#members .member[data-id='${arguments[0]}'] .mono`).textContent",
            leader_id)
        process = next(i for i, client in enumerate(cluster.clients) if client in url)
        if process == 2:
            # The page's own member leads: move the page to another member first (a new origin:
            # not logged in there, and the cluster view needs no login).
            driver.get(cluster.clients[0] + "/ui#cluster")
            wait("a leader", lambda: any(m["role"] == "leader" for m in members(driver)))
            wait("the login dialog", lambda: driver.execute_script("return document.getElementById('login').open"))
            click(driver, '#login-form button[value="cancel"]')
        killed = time.time()
        cluster.kill(process)
        wait("another leader", lambda: any(m["role"] == "leader" and m["id"] != leader_id for m in members(driver)))
        took = time.time() - killed
        wait("the killed member shown unreachable",
             lambda: any(m["id"] == leader_id and m["role"] == "unreachable" for m in members(driver)))
        print(f"console: new leader shown {took:.1f} s after the kill -9 of member {leader}")
        screenshots(driver, artifacts, "failover")
        print(f"console: every check passed; screenshots in {artifacts}")
    finally:
        driver.quit()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
