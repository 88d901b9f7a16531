"""Drives the web console of a real 3-member cluster in headless Chromium through WebDriver:
the cluster view shows three members and one leader; a put through etcdctl appears in the keys
view without a reload, and its value and history show; a lease's countdown moves and a lock's
holder and waiter show with the fencing token; the metrics charts draw a load as it runs;
killing the leader shows another leader within seconds. Screenshots of each view at 1280x800 and in a narrow window go to
ARTIFACTS.

Usage: console_check.py BALLOT_BINARY ARTIFACTS
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from chromium import browser
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
        ports = free_ports(6)
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
                 "--initial-cluster", initial, "--heartbeat-interval", "50", "--election-timeout", "500"],
                stdout=log, stderr=subprocess.STDOUT))

    def endpoints(self):
        return ",".join(url.removeprefix("http://") for i, url in enumerate(self.clients) if self.processes[i])

    def etcdctl(self, *args):
        done = subprocess.run(["etcdctl", f"--endpoints={self.endpoints()}", *args], check=True, capture_output=True,
                              env={**os.environ, "ETCDCTL_API": "3"}, text=True)
        return done.stdout

    def etcdctl_background(self, *args):
        return subprocess.Popen(["etcdctl", f"--endpoints={self.endpoints()}", *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env={**os.environ, "ETCDCTL_API": "3"})

    def kill(self, i):
        self.processes[i].send_signal(signal.SIGKILL)
        self.processes[i].wait()
        self.processes[i] = None

    def stop(self):
        for process in self.processes:
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


def main():
    ballot, artifacts = sys.argv[1], Path(sys.argv[2])
    artifacts.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ballot-console-"))
    cluster = Cluster(ballot, work)
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
            # The page's own member leads: move the page to another member first.
            driver.get(cluster.clients[0] + "/ui#cluster")
            wait("a leader", lambda: any(m["role"] == "leader" for m in members(driver)))
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
