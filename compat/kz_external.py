"""pytest plugin: point kazoo's KazooTestHarness at an already-running server.
Enable with PYTHONPATH=<dir> pytest -p kz_external, and KAZOO_TEST_HOSTS=host:port[,host:port...]."""
import os
import pytest
import kazoo.testing.harness as _h

class _Srv:
    running = True
    def __init__(self, addr):
        self.address = addr
        self.host, port = addr.rsplit(":", 1)
        self.client_port = int(port)
    @property
    def secure_address(self):
        pytest.skip("external server: no TLS port")
    def run(self):
        pass
    def stop(self):
        pytest.skip("external server: cannot stop/start servers")
    reset = destroy = stop
    def get_logs(self, num_lines=100):
        return []

class _Cluster:
    def __init__(self, hosts):
        self._servers = [_Srv(h.strip()) for h in hosts.split(",") if h.strip()]
    def __iter__(self):
        return iter(self._servers)
    def __getitem__(self, k):
        return self._servers[k]
    def start(self): pass
    def stop(self): pass
    def terminate(self): pass
    def reset(self): pass
    def get_logs(self): return []
    def get_ssl_client_configuration(self):
        pytest.skip("external server: no TLS")

_HOSTS = os.environ.get("KAZOO_TEST_HOSTS")
if _HOSTS:
    _CLUSTER = _Cluster(_HOSTS)
    _h.get_global_cluster = lambda: _CLUSTER
