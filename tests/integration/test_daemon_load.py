"""The node daemon under load and faults, with a cluster: the in-repo API server, watch caches, real pods.

Each pod is a network namespace the test makes; the runtime is the libcni driver; the cluster
network is Debian's bridge (exec'd by the daemon), the pod's second network a macvlan NAD
read from the API (the daemon's NAD cache), network-status PATCHed on the API's pod.

* 100 pod ADDs at once on this machine's 2 cores: no error, every pod wired, then 100 DELs.
* The daemon restarted in the middle of a burst (SIGTERM, then a new daemon on the same
  socket): every call is answered once (the old daemon's, the fallback's or the new one's),
  no address is handed out twice, the new daemon's caches sync and serve.
* The API server down: DEL from the cache works; back on the same port: the watches resume
  (a NAD created afterwards reaches the cache and an ADD uses it without a GET).
* ADD/DEL cycles with the daemon's memory flat: MP_SOAK_CYCLES (150 here; `make soak` runs
  1,000) — the RSS after warm-up and at the end are printed and written to
  $MP_SOAK_REPORT when set.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import Daemon
from tests.integration.meta_helpers import MetaNode, ip_files, links_by_name
from tests.k8s_server import K8sServer
from tests.topology import Topology

pytestmark = pytest.mark.root

NETWORKS = "k8s.v1.cni.cncf.io/networks"
STATUS = "k8s.v1.cni.cncf.io/network-status"
APP = "mp-app"
NODE = "mp-node"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nad_config(name: str, master: str, data_dir: Path, subnet: str = "10.67.0.0/24") -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": name,
        "type": "macvlan",
        "master": master,
        "mode": "bridge",
        "ipam": {
            "type": "host-local",
            "dataDir": str(data_dir),
            "ranges": [
                [
                    {
                        "subnet": subnet,
                        "rangeStart": subnet.replace("0/24", "10"),
                        "rangeEnd": subnet.replace("0/24", "250"),
                    }
                ]
            ],
        },
    }


class Cluster:
    """An API server with a node, a daemon watching it, pods registered on demand."""

    def __init__(self, tmp: Path, topo: Topology, cnidriver: str, stack: ExitStack, **daemon: Any) -> None:
        self.tmp, self.topo = tmp, topo
        self.api = K8sServer(tls=True, token="mp-token")
        stack.callback(self.api.stop)
        self.node = MetaNode(tmp / "mp-node", cnidriver, topo.bin_dir)
        stack.callback(self.node.close)
        self.node.front_env = {}  # each call says which front door it takes
        self.node.write_meta(kubeconfig=self.api.kubeconfig(tmp / "mp-kc-node", token="mp-token"))
        self.nad_dir = tmp / "mp-nad-ipam"
        self.api.add_nad(APP, "mp-fast", nad_config("mp-fast", topo.master, self.nad_dir))
        self.metrics = f"127.0.0.1:{free_port()}"
        self.daemon_args = {
            "kubeconfig": self.api.kubeconfig(tmp / "mp-kc-daemon", token="mp-token"),
            "node_name": NODE,
            "metrics_address": self.metrics,
            **daemon,
        }
        self.daemon = stack.enter_context(Daemon(**self.daemon_args))
        self.wait_healthy()
        self.uids: dict[str, str] = {}

    def wait_healthy(self, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://{self.metrics}/healthz", timeout=2) as resp:
                    return json.loads(resp.read())
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"the daemon never became healthy:\n{self.daemon.log_text()}") from None
                time.sleep(0.1)

    def metric(self, name: str, **labels: str) -> float:
        with urllib.request.urlopen(f"http://{self.metrics}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        total = 0.0
        for line in text.splitlines():
            m = re.match(rf"^{name}(\{{[^}}]*\}})? (\S+)$", line)
            if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
                total += float(m.group(2))
        return total

    def pod(self, i: int, networks: str = "mp-fast") -> str:
        """Register pod mp-p<i> (on this node) and return its CNI_ARGS, as containerd sends them."""
        name = f"mp-p{i}"
        self.uids[name] = self.api.add_pod(APP, name, annotations={NETWORKS: networks}, node=NODE)["metadata"]["uid"]
        return f"IgnoreUnknown=1;K8S_POD_NAMESPACE={APP};K8S_POD_NAME={name};K8S_POD_UID={self.uids[name]}"

    def run(self, command: str, i: int, args: str, env: dict[str, str] | None = None) -> Any:
        return self.node.run(command, self.topo.pods[i], f"mp-ctr{i}", args=args, env=env)

    def assert_wired(self, count: int) -> None:
        """Pods 0..count-1 have eth0 + net1, and no net1 address or status is held twice."""
        seen: set[str] = set()
        for i in range(count):
            assert sorted(links_by_name(self.topo.pods[i])) == ["eth0", "lo", "net1"], i
            entries = json.loads(self.api.pod(APP, f"mp-p{i}")["metadata"]["annotations"][STATUS])
            net1 = [e for e in entries if e.get("interface") == "net1"][0]
            (address,) = net1["ips"]
            assert address not in seen, f"{address} handed out twice"
            seen.add(address)
        assert len(ip_files(self.nad_dir)) == count  # one reservation per pod, none twice

    def assert_nothing_left(self, count: int) -> None:
        for i in range(count):
            assert sorted(links_by_name(self.topo.pods[i])) == ["lo"], i
        assert ip_files(self.nad_dir) == [] and ip_files(self.node.ipam) == []


@pytest.fixture
def many(tmp_path: Path) -> Iterator[Topology]:
    t = Topology(tmp_path, pods=100)
    try:
        yield t
    finally:
        t.close()


def _ok(inv: Any, what: str) -> None:
    assert inv.returncode == 0, f"{what}: {inv.stdout} {inv.stderr}"


def test_100_pod_adds_at_once_then_100_dels(many: Topology, cnidriver: str, tmp_path: Path) -> None:
    """100 pods at once through one daemon with its default settings: all wired, none fails, all removed."""
    with ExitStack() as stack:
        c = Cluster(tmp_path, many, cnidriver, stack)
        args = [c.pod(i) for i in range(100)]
        with ThreadPoolExecutor(100) as pool:
            started = time.monotonic()
            added = list(pool.map(lambda i: c.run("add", i, args[i], env=c.daemon.env), range(100)))
            took = time.monotonic() - started
        for i, inv in enumerate(added):
            _ok(inv, f"ADD of pod {i}")
        c.assert_wired(100)
        assert c.metric("multiplane_requests_total", command="ADD", result="ok") == 100
        assert c.metric("multiplane_requests_total", result="rejected") == 0
        with ThreadPoolExecutor(100) as pool:
            deleted = list(pool.map(lambda i: c.run("del", i, args[i], env=c.daemon.env), range(100)))
        for i, inv in enumerate(deleted):
            _ok(inv, f"DEL of pod {i}")
        c.assert_nothing_left(100)
        print(f"100 pod ADDs at once through the daemon: {took:.2f} s")


def test_a_restart_in_the_middle_of_a_burst_loses_no_call_and_runs_none_twice(
    topo: Topology, cnidriver: str, tmp_path: Path
) -> None:
    """30 ADDs; the daemon gets SIGTERM after the first few and a new one starts on the same socket.

    Calls go through the client in its default mode (the fallback allowed): each is answered
    exactly once, by the old daemon (taken before the stop), in-process (no daemon listening)
    or by the new daemon, and every pod ends with one net1 address of its own."""
    pods = 30
    for _ in range(pods - len(topo.pods)):
        topo.add_pod()
    with ExitStack() as stack:
        c = Cluster(tmp_path, topo, cnidriver, stack)
        args = [c.pod(i) for i in range(pods)]
        auto = {"MULTIPLANE_SOCKET": c.daemon.socket}
        with ThreadPoolExecutor(10) as pool:
            futures = [pool.submit(c.run, "add", i, args[i], auto) for i in range(pods)]
            while sum(f.done() for f in futures) < 5:
                time.sleep(0.02)
            c.daemon.stop()  # drains what it took; meanwhile new calls run in-process
            second = stack.enter_context(Daemon(**c.daemon_args))
            added = [f.result() for f in futures]
        for i, inv in enumerate(added):
            _ok(inv, f"ADD of pod {i}")
        c.assert_wired(pods)
        health = c.wait_healthy()
        assert health["caches"]["pods"]["synced"] and health["caches"]["networkattachmentdefinitions"]["synced"]
        hits_before = c.metric("multiplane_cache_lookups_total", outcome="hit")
        for i in range(pods):
            _ok(c.run("del", i, args[i], env=second.env), f"DEL of pod {i}")
        c.assert_nothing_left(pods)
        served = c.metric("multiplane_requests_total", command="DEL", result="ok")
        assert served == pods  # the new daemon served every DEL
        assert c.metric("multiplane_cache_lookups_total", outcome="hit") >= hits_before
        old_log = c.daemon.log_text()
        assert "daemon: stopped" in old_log


def test_api_down_del_from_cache_then_back_and_watches_resume(topo: Topology, cnidriver: str, tmp_path: Path) -> None:
    with ExitStack() as stack:
        c = Cluster(tmp_path, topo, cnidriver, stack)
        args0 = c.pod(0)
        _ok(c.run("add", 0, args0, env=c.daemon.env), "ADD")
        c.api.stop()
        _ok(c.run("del", 0, args0, env=c.daemon.env), "DEL with the API server down")
        assert sorted(links_by_name(topo.pods[0])) == ["lo"]
        failed = c.run("add", 1, "IgnoreUnknown=1;K8S_POD_NAMESPACE=mp-app;K8S_POD_NAME=mp-p1", env=c.daemon.env)
        assert failed.returncode != 0  # the pod is unknown and the API unreachable: a clear failure
        assert c.metric("multiplane_api_errors_total", kind="unreachable") > 0
        c.api.start()  # the same port: the daemon's watches reconnect and relist
        c.api.add_nad(APP, "mp-late", nad_config("mp-late", topo.master, c.nad_dir, "10.68.0.0/24"))
        args1 = c.pod(1, networks="mp-late")
        deadline = time.monotonic() + 20
        while c.metric("multiplane_cache_objects", cache="networkattachmentdefinitions") < 2:
            assert time.monotonic() < deadline, c.daemon.log_text()
            time.sleep(0.1)
        c.api.requests.clear()
        _ok(c.run("add", 1, args1, env=c.daemon.env), "ADD after the API server came back")
        nad_gets = [
            r for r in c.api.requests if r.method == "GET" and "network-attachment-definitions/mp-late" in r.path
        ]
        assert nad_gets == []  # the NAD came from the resumed watch, not a GET
        assert sorted(links_by_name(topo.pods[1])) == ["eth0", "lo", "net1"]
        _ok(c.run("del", 1, args1, env=c.daemon.env), "DEL")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_add_del_cycles_keep_the_daemons_memory_flat(topo: Topology, cnidriver: str, tmp_path: Path) -> None:
    cycles = int(os.environ.get("MP_SOAK_CYCLES", "150"))
    warm = min(50, cycles // 3)
    with ExitStack() as stack:
        c = Cluster(tmp_path, topo, cnidriver, stack)
        args = c.pod(0)
        samples: list[tuple[int, int]] = []
        started = time.monotonic()
        for n in range(1, cycles + 1):
            _ok(c.run("add", 0, args, env=c.daemon.env), f"ADD #{n}")
            _ok(c.run("del", 0, args, env=c.daemon.env), f"DEL #{n}")
            if n == warm or n % 25 == 0 or n == cycles:
                samples.append((n, _rss_kib(c.daemon.pid)))
        took = time.monotonic() - started
        c.assert_nothing_left(1)
    at_warm = dict(samples)[warm]
    after = [rss for n, rss in samples if n >= warm]
    growth = max(after) - at_warm
    report = (
        f"{cycles} pod ADD/DEL cycles through the daemon in {took:.0f} s: VmRSS {at_warm / 1024:.1f} MiB after "
        f"{warm} cycles, {samples[-1][1] / 1024:.1f} MiB at the end, at most {max(after) / 1024:.1f} MiB "
        f"(samples: {', '.join(f'{n}:{rss // 1024}' for n, rss in samples)} MiB)"
    )
    print(report)
    if os.environ.get("MP_SOAK_REPORT"):
        Path(os.environ["MP_SOAK_REPORT"]).write_text(report + "\n")
    assert growth < 3 * 1024, report  # flat: a leak of 3 KiB per cycle would show within 1,000 cycles
