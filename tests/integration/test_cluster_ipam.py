"""The `multiplane-cluster-ipam` plugin as a runtime runs it, against both stores: a real 3-member etcd and the API server.

Every call is a fresh process of the installed console script (tests/cni.py `run`), with
CNI_* in the environment and the network config on stdin. A "node" is a `nodeName` with a
`dataDir` of its own; nodes run concurrently in separate processes. Each test works in a
pool of its own (`network_name` mp-<random>). The store is read back by the test through
the same store classes the plugin uses; store traffic is counted on the server side (etcd's
revision, which every successful write moves by one; the test API server's request log).
No root needed except for the macvlan test (real namespaces, marked `root`).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from multiplane.ipam.cluster.etcd import EtcdStore
from multiplane.ipam.cluster.kube import KubeStore
from multiplane.k8s.client import KubeClient, load_kubeconfig
from tests import cni
from tests.etcd_cluster import EtcdCluster, EtcdError
from tests.integration.meta_helpers import MetaNode, addrs, links_by_name
from tests.k8s_server import K8sServer
from tests.topology import Topology

BIN = os.path.join(cni.BIN_DIR, "multiplane-cluster-ipam")
CRDS = Path(__file__).resolve().parents[2] / "packaging" / "k8s" / "crd-ipam.yaml"
ENV = {"MULTIPLANE_DAEMON": "off"}  # the call runs in its own process, whatever daemon this host has


@pytest.fixture(scope="module")
def etcd_cluster() -> Iterator[EtcdCluster]:
    try:
        cluster = EtcdCluster(size=3).start()
    except EtcdError as exc:
        pytest.fail(str(exc))
    pids = [m.proc.pid for m in cluster.members if m.proc is not None]
    try:
        yield cluster
    finally:
        cluster.stop()
        assert [pid for pid in pids if os.path.exists(f"/proc/{pid}")] == []


@pytest.fixture(scope="module")
def api_server() -> Iterator[K8sServer]:
    with K8sServer() as api:
        api.add_crds(str(CRDS))
        yield api


class Backend(ABC):
    """One store as the tests see it: the IPAM keys that choose it, a reader, its write count, down and up."""

    name = ""

    @abstractmethod
    def ipam(self) -> dict[str, Any]: ...

    @abstractmethod
    def reader(self) -> Any: ...

    @abstractmethod
    def writes(self) -> int: ...

    @abstractmethod
    def down(self) -> None: ...

    @abstractmethod
    def up(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...


class EtcdBackend(Backend):
    name = "etcd"

    def __init__(self, cluster: EtcdCluster) -> None:
        self.cluster = cluster
        self._reader: EtcdStore | None = None

    def ipam(self) -> dict[str, Any]:
        return {"etcd": {"endpoints": self.cluster.endpoints}}

    def reader(self) -> EtcdStore:
        if self._reader is None:
            self._reader = EtcdStore(self.cluster.endpoints)
        return self._reader

    def writes(self) -> int:
        """etcd's revision: every successful put or delete (a txn that writes) moves it by one."""
        body = json.dumps({"key": base64.b64encode(b"mp-revision-probe").decode()}).encode()
        for endpoint in self.cluster.endpoints:
            try:
                with urllib.request.urlopen(f"{endpoint}/v3/kv/range", data=body, timeout=2) as resp:
                    return int(json.load(resp)["header"]["revision"])
            except OSError:
                continue
        raise AssertionError("no etcd member answered")

    def down(self) -> None:
        for i in range(self.cluster.size):
            self.cluster.kill(i)

    def up(self) -> None:
        self.cluster.restart(*range(self.cluster.size))

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()


class KubeBackend(Backend):
    name = "kube"

    def __init__(self, api: K8sServer, kubeconfig: str) -> None:
        self.api, self.kubeconfig = api, kubeconfig
        self._reader: KubeStore | None = None

    def ipam(self) -> dict[str, Any]:
        return {"kubernetes": {"kubeconfig": self.kubeconfig}}

    def reader(self) -> KubeStore:
        if self._reader is None:
            self._reader = KubeStore(KubeClient(load_kubeconfig(self.kubeconfig)))
        return self._reader

    def writes(self) -> int:
        """Creates and deletes of claims that reached the API server."""
        return sum(
            1
            for r in list(self.api.requests)
            if r.method in ("POST", "DELETE") and ("/ipblocks" in r.path or "/ipclaims" in r.path)
        )

    def down(self) -> None:
        self.api.stop()

    def up(self) -> None:
        self.api.start()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()


@pytest.fixture(params=["etcd", "kube"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made: Backend
    if request.param == "etcd":
        cluster: EtcdCluster = request.getfixturevalue("etcd_cluster")
        down = [i for i, m in enumerate(cluster.members) if m.proc is None]
        if down:
            cluster.restart(*down)
        cluster.wait_healthy(timeout=20)
        made = EtcdBackend(cluster)
    else:
        api: K8sServer = request.getfixturevalue("api_server")
        api.start()
        made = KubeBackend(api, api.kubeconfig(tmp_path / "mp-kubeconfig"))
    try:
        yield made
    finally:
        if made.name == "kube":
            made.up()  # a test that stopped the API server and failed before starting it again
        made.close()


class Node:
    """One simulated node: its name, its own dataDir, and the config every call of it sends; `env`: one-shot
    (ENV), or a daemon's (tests/integration/test_daemon_cluster_ipam.py)."""

    def __init__(self, tmp_path: Path, name: str, ipam: dict[str, Any], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.env = ENV if env is None else env
        self.data_dir = str(tmp_path / name)
        self.conf = {
            "cniVersion": "1.1.0",
            "name": "mp-net",
            "type": "mp-main-plugin",
            "ipam": {"type": "multiplane-cluster-ipam", "nodeName": name, "dataDir": self.data_dir, **ipam},
        }

    def call(
        self, command: str, cid: str, conf: dict[str, Any] | None = None, args: str | None = None
    ) -> cni.Invocation:
        return cni.run(BIN, command, conf or self.conf, container_id=cid, ifname="net1", args=args, env=self.env)

    def add(self, cid: str, args: str | None = None) -> str:
        inv = self.call("ADD", cid, args=args)
        assert inv.ok, f"{self.name} ADD {cid}: {inv.stdout} {inv.stderr}"
        (ipc,) = inv.json["ips"]
        return ipc["address"].split("/")[0]

    def delete(self, cid: str) -> None:
        inv = self.call("DEL", cid)
        assert inv.ok, f"{self.name} DEL {cid}: {inv.stdout} {inv.stderr}"

    def state(self) -> dict[str, Any]:
        try:
            return json.loads(Path(self.data_dir, "state.json").read_text())
        except FileNotFoundError:
            return {"pools": {}, "pending": []}

    def pool(self, pool: str) -> dict[str, Any]:
        return self.state()["pools"].get(pool, {"blocks": {}, "addresses": {}})


def _ipam(backend: Backend, net: str, **keys: Any) -> dict[str, Any]:
    return {"network_name": net, **backend.ipam(), **keys}


def _inside(ip: str, block: str) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(block)


@pytest.fixture
def net() -> str:
    return f"mp-{uuid.uuid4().hex[:8]}"


def test_four_nodes_share_a_small_range_and_give_it_all_back(backend: Backend, tmp_path: Path, net: str) -> None:
    """4 nodes x 2 concurrent workers, 24 ADDs on one /26 (8 blocks of /29): no address twice (results, records, store).

    Every address lies in a block its node owns in the store, blocks are disjoint; after every
    DEL no address is held anywhere and each node keeps at most its one spare block (decision
    0010, I4), which is all the store still holds for the pool.
    """
    ipam = _ipam(backend, net, range="10.77.0.0/26")  # the default blockSize shrinks to /29 (8 slots)
    pool = f"{net}-10.77.0.0-26"
    nodes = [Node(tmp_path, f"mp-node-{i}", ipam) for i in range(4)]
    got: dict[tuple[str, str], str] = {}
    errors: list[str] = []
    lock = threading.Lock()

    def worker(node: Node, w: int) -> None:
        for k in range(3):
            cid = f"mp-{node.name}-{w}-{k}"
            try:
                ip = node.add(cid)
            except AssertionError as exc:
                errors.append(str(exc))
                continue
            with lock:
                got[(node.name, cid)] = ip

    threads = [threading.Thread(target=worker, args=(n, w)) for n in nodes for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ips = list(got.values())
    assert len(ips) == 24 and len(set(ips)) == 24, sorted(ips)

    store = backend.reader()
    store_blocks = store.blocks(pool)
    assert store.ips(pool) == {}
    nets = [ipaddress.ip_network(b) for b in store_blocks]
    for i, a in enumerate(nets):
        for b in nets[i + 1 :]:
            assert not a.overlaps(b), (a, b)
    recorded: list[str] = []
    for node in nodes:
        rec = node.pool(pool)
        owned = set(rec["blocks"])
        assert owned == {b for b, o in store_blocks.items() if o["node"] == node.name}
        for ip, holder in rec["addresses"].items():
            assert got[(node.name, holder["container"])] == ip
            assert any(_inside(ip, b) for b in owned), (node.name, ip, owned)
        recorded += list(rec["addresses"])
    assert sorted(recorded) == sorted(ips)

    def delete(node: Node) -> None:
        for name, cid in list(got):
            if name == node.name:
                inv = node.call("DEL", cid)
                if not inv.ok:
                    errors.append(f"DEL {cid}: {inv.stdout} {inv.stderr}")

    threads = [threading.Thread(target=delete, args=(n,)) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    left = store.blocks(pool)
    for node in nodes:
        state = node.state()
        rec = state["pools"].get(pool, {"blocks": {}, "addresses": {}})
        assert rec["addresses"] == {}
        assert state["pending"] == []
        assert len(rec["blocks"]) <= 1  # the spare
        assert set(rec["blocks"]) == {b for b, o in left.items() if o["node"] == node.name}
    assert store.ips(pool) == {}


def test_a_hundred_adds_on_a_node_that_owns_a_block_make_under_ten_writes(
    backend: Backend, tmp_path: Path, net: str
) -> None:
    """A /24 with the default blockSize (/28): after the first block, 100 ADDs claim at most 7 more (issue 13's goal)."""
    node = Node(tmp_path, "mp-node-t", _ipam(backend, net, range="10.78.0.0/24"))
    node.add("mp-warm")
    before = backend.writes()
    ips = {node.add(f"mp-c{i}") for i in range(100)}
    writes = backend.writes() - before
    assert len(ips) == 100
    assert 0 < writes < 10, writes
    assert len(node.pool(f"{net}-10.78.0.0-24")["blocks"]) == writes + 1


def test_concurrent_adds_on_a_fresh_node_claim_one_block(backend: Backend, tmp_path: Path, net: str) -> None:
    """Eight ADDs at once on a node that owns no block: one of them claims a block, the others wait for it and
    take addresses from it (LocalState.claiming), instead of each claiming a block of its own."""
    node = Node(tmp_path, "mp-node-herd", _ipam(backend, net, range="10.79.0.0/24"))
    with ThreadPoolExecutor(8) as pool:  # a failed ADD re-raises here
        results = list(pool.map(lambda i: node.add(f"mp-h{i}"), range(8)))
    assert len(set(results)) == 8
    blocks = node.pool(f"{net}-10.79.0.0-24")["blocks"]
    assert len(blocks) == 1, blocks
    assert {o["node"] for o in backend.reader().blocks(f"{net}-10.79.0.0-24").values()} == {"mp-node-herd"}
    assert len(backend.reader().blocks(f"{net}-10.79.0.0-24")) == 1


def test_store_down_owned_blocks_serve_new_block_fails_11_del_is_replayed(
    backend: Backend, tmp_path: Path, net: str
) -> None:
    """With /31 blocks: the store down, ADDs continue from owned blocks, the next block is code 11 naming pool and
    store; DEL succeeds and journals the block release; ADDs from owned blocks do not wait for the replay while
    the store is down, and the next DEL replays it once the store is back."""
    ipam = _ipam(backend, net, range="10.79.0.0/24", range_start="10.79.0.10", range_end="10.79.0.201", blockSize=31)
    pool = f"{net}-10.79.0.0-24"
    node = Node(tmp_path, "mp-node-d", ipam)
    for i in range(3):
        node.add(f"mp-c{i}")
    owned = set(node.pool(pool)["blocks"])
    assert len(owned) == 2
    backend.down()
    try:
        node.add("mp-c3")  # the second block's free address: no store needed
        inv = node.call("ADD", "mp-c4")
        err = inv.error()
        assert err["code"] == 11, err
        assert pool in err["msg"] and "unreachable" in err["msg"], err
        assert ("etcd at" if backend.name == "etcd" else "Kubernetes API") in err["msg"], err
        assert set(node.pool(pool)["blocks"]) == owned
        for i in range(4):
            inv = node.call("DEL", f"mp-c{i}")
            assert inv.ok, inv.stdout
        state = node.state()
        assert state["pools"][pool]["addresses"] == {}
        assert [e["op"] for e in state["pending"]] == ["release_block"]
        journalled = state["pending"][0]["block"]
        assert journalled in owned
        # the journal's replay just failed: the next ADD, served from the spare, does not wait for the store
        started = time.monotonic()
        node.add("mp-c5")
        assert time.monotonic() - started < 1.5
    finally:
        backend.up()
    if backend.name == "etcd":
        backend.cluster.wait_healthy(timeout=20)  # type: ignore[attr-defined]
    assert journalled in backend.reader().blocks(pool)
    inv = node.call("DEL", "mp-c5")  # a DEL always replays the journal
    assert inv.ok, inv.stdout
    assert node.state()["pending"] == []
    assert set(backend.reader().blocks(pool)) == owned - {journalled}


def test_requested_address_check_gc_status(backend: Backend, tmp_path: Path, net: str) -> None:
    """IP= outside every block is claimed singly (and refused to another node); CHECK; GC keeps only valid attachments."""
    ipam = _ipam(backend, net, range="10.80.0.0/24", gateway="10.80.0.1", routes=[{"dst": "10.81.0.0/16"}])
    pool = f"{net}-10.80.0.0-24"
    a, b = Node(tmp_path, "mp-node-a", ipam), Node(tmp_path, "mp-node-b", ipam)
    inv = a.call("ADD", "mp-auto")
    assert inv.ok, inv.stdout
    assert inv.json["ips"][0]["gateway"] == "10.80.0.1"
    assert inv.json["routes"] == [{"dst": "10.81.0.0/16"}]
    block = next(iter(a.pool(pool)["blocks"]))
    # a requested address in no block: one single claim in the store
    outside = next(
        str(ip)
        for ip in ipaddress.ip_network("10.80.0.0/24").hosts()
        if int(ip) & 0xFF > 1 and not _inside(str(ip), block)
    )
    assert a.add("mp-pinned", args=f"IgnoreUnknown=1;IP={outside}") == outside
    holder = backend.reader().ips(pool)[outside]
    assert (holder["node"], holder["container"], holder["ifname"]) == ("mp-node-a", "mp-pinned", "net1")
    # the same address for another node's pod: refused; inside node a's block: refused, naming the owner
    assert b.call("ADD", "mp-b1", args=f"IgnoreUnknown=1;IP={outside}").error()["code"] == 999
    inside = str(ipaddress.ip_network(block)[5])
    err = b.call("ADD", "mp-b2", args=f"IgnoreUnknown=1;IP={inside}").error()
    assert "mp-node-a" in err["msg"], err
    assert b.pool(pool)["addresses"] == {}

    assert a.call("CHECK", "mp-pinned").ok
    assert not a.call("CHECK", "mp-unknown").ok
    status = a.call("STATUS", "")
    assert status.ok, status.stdout

    gc = dict(a.conf, **{"cni.dev/valid-attachments": [{"containerID": "mp-auto", "ifname": "net1"}]})
    assert a.call("GC", "", conf=gc).ok
    assert [h["container"] for h in a.pool(pool)["addresses"].values()] == ["mp-auto"]
    assert backend.reader().ips(pool) == {}  # the single claim went back to the store
    assert a.call("DEL", "mp-auto").ok
    assert a.pool(pool)["addresses"] == {}


@pytest.mark.root
def test_macvlan_runs_cluster_ipam_in_process_for_two_nodes(
    backend: Backend, tmp_path: Path, net: str, topo: Topology
) -> None:
    """multiplane-macvlan with `ipam.type` multiplane-cluster-ipam (a built-in: no IPAM process, none in CNI_PATH):
    two pods of two nodes on one LAN get different addresses of the shared range, on their links; DEL gives them back."""
    pool = f"{net}-10.66.0.0-24"
    assert not [d for d in topo.cni_path.split(":") if os.path.exists(os.path.join(d, "multiplane-cluster-ipam"))]
    a, b = (Node(tmp_path, f"mp-node-{n}", _ipam(backend, net, range="10.66.0.0/24")) for n in "ab")
    seen = []
    for node, pod in ((a, topo.pods[0]), (b, topo.pods[1])):
        conf = {"cniVersion": "1.0.0", "name": "mp-net", "type": "multiplane-macvlan", "master": topo.master}
        conf["ipam"] = node.conf["ipam"]
        inv = topo.cni("multiplane-macvlan", "ADD", conf, pod, container_id=f"mp-{node.name}")
        assert inv.ok, f"{inv.stdout} {inv.stderr}"
        (ipc,) = inv.json["ips"]
        assert ipc["address"] in addrs(links_by_name(pod)["net1"]), ipc
        assert list(node.pool(pool)["addresses"]) == [ipc["address"].split("/")[0]]
        seen.append(ipc["address"])
        node.conf = conf  # for the DEL below
    assert len(set(seen)) == 2
    for node, pod in ((a, topo.pods[0]), (b, topo.pods[1])):
        assert topo.cni("multiplane-macvlan", "DEL", node.conf, pod, container_id=f"mp-{node.name}").ok
        assert node.pool(pool)["addresses"] == {}
        assert "net1" not in links_by_name(pod)


def test_a_claim_that_overlaps_another_nodes_block_is_given_back(
    api_server: K8sServer, tmp_path: Path, net: str
) -> None:
    """Claim, then list (decision 0010, I1.1), with configurations that disagree on blockSize: while node b
    creates its /29, another node's /28 over it appears; b must not use its /29, gives it back, and takes a
    block outside the /28. (Kubernetes store: the API server's request hook plays the other node.)"""
    from multiplane.ipam.cluster.kube import BLOCKS, GROUP, NODE_LABEL, POOL_LABEL, label_value, object_name

    api_server.start()
    pool = f"{net}-10.82.0.0-24"
    b = Node(tmp_path, "mp-node-b", _ipam(KubeBackend(api_server, ""), net, range="10.82.0.0/24", blockSize=29))
    b.conf["ipam"]["kubernetes"] = {"kubeconfig": api_server.kubeconfig(tmp_path / "mp-kubeconfig")}
    raced: list[str] = []

    def other_node_first(req: Any) -> None:
        if raced or req.method != "POST" or not req.path.endswith("/ipblocks"):
            return
        cidr = json.loads(req.raw_body)["spec"]["cidr"]
        wide = str(ipaddress.ip_network(cidr).supernet(new_prefix=28))
        raced.append(wide)
        labels = {POOL_LABEL: label_value(pool), NODE_LABEL: label_value("mp-other")}
        meta = {"name": object_name(pool, wide), "labels": labels}
        spec = {"pool": pool, "cidr": wide, "node": "mp-other", "claimed": "2026-01-01T00:00:00Z"}
        api_server.put_custom_object(BLOCKS, {"apiVersion": f"{GROUP}/v1alpha1", "metadata": meta, "spec": spec})

    api_server.on_request = other_node_first
    try:
        ip = b.add("mp-c1")
    finally:
        api_server.on_request = None
    (wide,) = raced
    assert not _inside(ip, wide)
    state = b.state()
    assert state["pending"] == []
    (owned,) = state["pools"][pool]["blocks"]
    assert not ipaddress.ip_network(owned).overlaps(ipaddress.ip_network(wide))
    store = KubeStore(KubeClient(load_kubeconfig(b.conf["ipam"]["kubernetes"]["kubeconfig"])))
    try:
        assert store.blocks(pool) == {wide: {"node": "mp-other"}, owned: {"node": "mp-node-b"}}
    finally:
        store.close()


def test_a_requested_address_claimed_while_a_block_over_it_appears_is_given_back(
    api_server: K8sServer, tmp_path: Path, net: str
) -> None:
    """Claim, then check (decision 0010, I1.3): node a claims IP=10.83.0.50 singly; meanwhile another node's
    block over it is created. a must refuse the address and release its claim."""
    from multiplane.ipam.cluster.kube import BLOCKS, GROUP, NODE_LABEL, POOL_LABEL, label_value, object_name

    api_server.start()
    pool = f"{net}-10.83.0.0-24"
    kubeconfig = api_server.kubeconfig(tmp_path / "mp-kubeconfig")
    a = Node(tmp_path, "mp-node-a", _ipam(KubeBackend(api_server, kubeconfig), net, range="10.83.0.0/24"))
    wide = "10.83.0.48/28"

    def other_node_block(req: Any) -> None:
        if req.method == "POST" and req.path.endswith("/ipclaims"):
            labels = {POOL_LABEL: label_value(pool), NODE_LABEL: label_value("mp-other")}
            meta = {"name": object_name(pool, wide), "labels": labels}
            spec = {"pool": pool, "cidr": wide, "node": "mp-other", "claimed": "2026-01-01T00:00:00Z"}
            api_server.put_custom_object(BLOCKS, {"apiVersion": f"{GROUP}/v1alpha1", "metadata": meta, "spec": spec})

    api_server.on_request = other_node_block
    try:
        err = a.call("ADD", "mp-c1", args="IgnoreUnknown=1;IP=10.83.0.50").error()
    finally:
        api_server.on_request = None
    assert "mp-other" in err["msg"], err
    store = KubeBackend(api_server, kubeconfig)
    try:
        assert store.reader().ips(pool) == {}
    finally:
        store.close()
    assert a.state()["pending"] == []
    assert a.pool(pool)["addresses"] == {}


_IMPORTS_PROBE = """
import io, json, os, sys
from multiplane import frontdoor
from multiplane.invoke import run_call
env = dict(os.environ, CNI_COMMAND="ADD", CNI_CONTAINERID=sys.argv[1], CNI_NETNS="/var/run/netns/mp-none",
           CNI_IFNAME="net1", CNI_PATH="/usr/lib/cni")
status, out = run_call("multiplane-cluster-ipam", env, sys.stdin.buffer.read(), sys.stderr, frontdoor.FrontDoor())
loaded = [m for m in ("etcd3gw", "requests", "multiplane.ipam.cluster.etcd", "multiplane.ipam.cluster.kube",
                      "multiplane.k8s.client") if m in sys.modules]
print(json.dumps({"status": status, "out": out.decode(), "loaded": loaded}))
"""


def test_an_add_from_an_owned_block_loads_no_store_client(backend: Backend, tmp_path: Path, net: str) -> None:
    """The warm path (decision 0011): no etcd3gw/requests, no store module, no Kubernetes client."""
    node = Node(tmp_path, "mp-node-w", _ipam(backend, net, range="10.84.0.0/24"))
    node.add("mp-warm")  # claims the block

    def probe(cid: str) -> dict[str, Any]:
        proc = subprocess.run(
            [sys.executable, "-c", _IMPORTS_PROBE, cid],
            input=json.dumps(node.conf).encode(),
            capture_output=True,
            check=True,
            timeout=30,
            env=dict(os.environ, **ENV),
        )
        report: dict[str, Any] = json.loads(proc.stdout)
        assert report["status"] == 0, report
        return report

    assert probe("mp-c1")["loaded"] == []
    # the probe sees a store client when one is used: an ADD that must claim (a fresh node)
    node.data_dir = str(tmp_path / "mp-node-fresh")
    node.conf["ipam"]["dataDir"] = node.data_dir
    assert probe("mp-c2")["loaded"] != []


@pytest.mark.root
def test_the_meta_plugin_attaches_pods_of_two_nodes_from_one_shared_range(
    backend: Backend, tmp_path: Path, net: str, topo: Topology, cnidriver: str
) -> None:
    """A NAD of multiplane-macvlan with `ipam.type` multiplane-cluster-ipam, through the meta-plugin on two
    nodes (libcni driver, local NAD files): different addresses of the shared range on net1; DEL frees them."""
    pool = f"{net}-10.66.0.0-24"
    nodes = []
    try:
        for n, pod in enumerate(topo.pods[:2]):
            meta = MetaNode(tmp_path / f"mp-meta-{n}", cnidriver, topo.bin_dir)
            nodes.append(meta)
            ipam = Node(tmp_path, f"mp-node-{n}", _ipam(backend, net, range="10.66.0.0/24")).conf["ipam"]
            conf = {"cniVersion": "1.0.0", "name": "mp-shared", "type": "multiplane-macvlan", "master": topo.master}
            meta.add_nad("mp-shared", {**conf, "mode": "bridge", "ipam": ipam}, "mp-app")
            add = meta.run("add", pod, f"mp-ctr-{n}", networks="mp-shared")
            assert add.ok, f"{add.stdout} {add.stderr} {meta.log_text()}"
        seen = []
        for n, pod in enumerate(topo.pods[:2]):
            (addr,) = addrs(links_by_name(pod)["net1"])
            assert ipaddress.ip_interface(addr).network == ipaddress.ip_network("10.66.0.0/24")
            held = Node(tmp_path, f"mp-node-{n}", {}).pool(pool)["addresses"]
            assert list(held) == [addr.split("/")[0]]
            seen.append(addr)
        assert len(set(seen)) == 2
        for n, pod in enumerate(topo.pods[:2]):
            inv = nodes[n].run("del", pod, f"mp-ctr-{n}", networks="mp-shared")
            assert inv.ok, f"{inv.stdout} {inv.stderr}"
            assert "net1" not in links_by_name(pod)
            assert Node(tmp_path, f"mp-node-{n}", {}).pool(pool)["addresses"] == {}
    finally:
        for meta in nodes:
            meta.close()
