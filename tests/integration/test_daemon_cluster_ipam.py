"""Cluster-wide IPAM's background work in the node daemon (src/multiplane/daemon/ipam.py).

Real parts only: a `multiplane daemon` process (tests/daemon_harness.py), the installed
`multiplane-cluster-ipam` link as the client of each call (MULTIPLANE_DAEMON=require: a call
the daemon does not serve fails instead of passing in-process), test_cluster_ipam.py's real
three-member etcd (Debian's etcd-server), and the in-repo API server with the CRDs, Nodes,
Pods and a NAD for the reconciler. Each test works in a pool of its own (`network_name` mp-<random>).

* the journal: a DEL while the store is down leaves its release journalled; once the store is
  back the daemon sends it without any further CNI call;
* a block ahead of need: once a node's blocks run low, the daemon claims the next one, so the
  ADDs after it are served while the store is down (one-shot, the same ADD would fail, 11);
* the reconciler: the blocks of a node whose Node object is gone are freed by the daemon's
  reconciler, not before the grace; a live node's block and an alive pod's address are kept;
  the pools come from a NAD in the daemon's cache (the daemon itself never used them), and the
  API grants only what rbac.yaml and rbac-ipam.yaml do.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from multiplane.ipam.cluster.etcd import EtcdStore
from multiplane.ipam.cluster.kube import KubeStore
from multiplane.k8s.client import KubeClient, load_kubeconfig
from tests import cni
from tests.daemon_harness import Daemon
from tests.etcd_cluster import EtcdCluster
from tests.integration.test_cluster_ipam import Node, etcd_cluster  # noqa: F401 - etcd_cluster: a fixture
from tests.k8s_server import K8sServer

BIN = os.path.join(cni.BIN_DIR, "multiplane-cluster-ipam")
CRDS = Path(__file__).resolve().parents[2] / "packaging" / "k8s" / "crd-ipam.yaml"
ONE_SHOT = {"MULTIPLANE_DAEMON": "off"}


def wait_for(what: str, check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def etcd_up(etcd_cluster: EtcdCluster) -> Iterator[EtcdCluster]:  # noqa: F811 - the imported fixture
    """test_cluster_ipam.py's three members, all up; whatever a test took down comes back after it."""
    up(etcd_cluster)
    yield etcd_cluster
    up(etcd_cluster)


def up(cluster: EtcdCluster) -> None:
    down = [i for i, m in enumerate(cluster.members) if m.proc is None]
    if down:
        cluster.restart(*down)
    cluster.wait_healthy(timeout=20)


def down(cluster: EtcdCluster) -> None:
    for i in range(cluster.size):
        cluster.kill(i)


def daemon_config(tmp_path: Path, **keys: Any) -> str:
    path = tmp_path / "mp-daemon.json"
    path.write_text(json.dumps(keys))
    return str(path)


def test_the_daemon_replays_the_journal_once_the_store_is_back(tmp_path: Path, etcd_up: EtcdCluster) -> None:
    net = f"mp-{uuid.uuid4().hex[:8]}"
    pool = f"{net}-10.41.0.0-24"
    with Daemon(config=daemon_config(tmp_path, ipamInterval=0.3)) as daemon:
        node = Node(
            tmp_path,
            "mp-dn1",
            {"range": "10.41.0.0/24", "network_name": net, "etcd": {"endpoints": etcd_up.endpoints}},
            daemon.env,
        )
        reader = EtcdStore(etcd_up.endpoints)
        try:
            assert node.add("mp-c1", args="IgnoreUnknown=1;IP=10.41.0.200") == "10.41.0.200"
            assert set(reader.ips(pool)) == {"10.41.0.200"}  # a single claim in the store
            down(etcd_up)
            daemon.mark()
            node.delete("mp-c1")  # the store is down: the release stays in the journal
            assert [e["op"] for e in node.state()["pending"]] == ["release_ip"]
            time.sleep(1.5)  # several rounds fail while the store is down: logged once, not per round
            failing = daemon.log_since_mark().count("ipam replay:")
            assert failing == 1, daemon.log_since_mark()
            assert node.state()["pending"] != []
            up(etcd_up)
            # no CNI call from here on: the daemon's own round sends the release
            wait_for("the journal to be sent", lambda: node.state()["pending"] == [])
            assert reader.ips(pool) == {}
            assert "ipam replay: working again" in daemon.log_since_mark()
        finally:
            reader.close()


def test_the_daemon_claims_a_block_ahead_and_later_adds_need_no_store(tmp_path: Path, etcd_up: EtcdCluster) -> None:
    net = f"mp-{uuid.uuid4().hex[:8]}"
    pool = f"{net}-10.42.0.0-24"
    ipam = {"range": "10.42.0.0/24", "network_name": net, "blockSize": 29, "etcd": {"endpoints": etcd_up.endpoints}}
    reader = EtcdStore(etcd_up.endpoints)
    try:
        # One-shot first, as the contrast: a full block with the store down fails the next ADD (11).
        alone = Node(tmp_path, "mp-dn-alone", ipam, ONE_SHOT)
        for i in range(8):  # a /29 away from .0: 8 usable addresses
            alone.add(f"mp-a{i}")
        down(etcd_up)
        inv = alone.call("ADD", "mp-a8")
        assert not inv.ok and inv.json["code"] == 11, inv.stdout
        up(etcd_up)
        for i in range(8):
            alone.delete(f"mp-a{i}")

        with Daemon(config=daemon_config(tmp_path, ipamInterval=0.3)) as daemon:
            node = Node(tmp_path, "mp-dn2", ipam, daemon.env)
            first = [node.add(f"mp-c{i}") for i in range(5)]  # 3 of 8 left: under half a block
            mine = lambda: [b for b, o in reader.blocks(pool).items() if o["node"] == "mp-dn2"]  # noqa: E731
            wait_for("a second block claimed ahead", lambda: len(mine()) == 2)
            assert len(node.state()["pools"][pool]["blocks"]) == 2
            assert "claimed a block ahead of need" in daemon.log_text()
            down(etcd_up)
            later = [node.add(f"mp-c{i}") for i in range(5, 16)]  # 3 + 8: served with the store down
            got = first + later
            assert len(set(got)) == 16
            up(etcd_up)
            for i in range(16):
                node.delete(f"mp-c{i}")
            wait_for("the journal to be empty", lambda: node.state()["pending"] == [])
            assert len(mine()) <= 1  # one spare block at most is kept
    finally:
        reader.close()


def granted(manifest: str) -> set[tuple[str, str, str]]:
    """(verb, resource, subresource) of every rule of the manifest's ClusterRoles."""
    out = set()
    for doc in yaml.safe_load_all((CRDS.parent / manifest).read_text()):
        if doc and doc["kind"] == "ClusterRole":
            for rule in doc["rules"]:
                for resource in rule["resources"]:
                    name, _, sub = resource.partition("/")
                    out |= {(verb, name, sub) for verb in rule["verbs"]}
    return out


@pytest.fixture
def api() -> Iterator[K8sServer]:
    with K8sServer() as server:
        server.add_crds(str(CRDS))
        yield server


def test_the_daemons_reconciler_frees_a_gone_nodes_blocks_after_the_grace(tmp_path: Path, api: K8sServer) -> None:
    net = f"mp-{uuid.uuid4().hex[:8]}"
    pool = f"{net}-10.43.0.0-24"
    kubeconfig = api.kubeconfig(tmp_path / "mp-kubeconfig")
    for name in ("mp-dlive", "mp-dgone", "mp-dself"):
        api.add_node(name)
    # The NAD is how the daemon knows the pool: the daemon never runs a call of it here.
    section = {"type": "multiplane-cluster-ipam", "range": "10.43.0.0/24", "network_name": net}
    api.add_nad("default", "mp-cluster-net", {"cniVersion": "1.0.0", "name": net, "type": "macvlan", "ipam": section})
    ipam = {"range": "10.43.0.0/24", "network_name": net, "kubernetes": {"kubeconfig": kubeconfig}}
    live = Node(tmp_path, "mp-dlive", ipam, ONE_SHOT)
    gone = Node(tmp_path, "mp-dgone", ipam, ONE_SHOT)
    live.add("mp-l1")
    gone.add("mp-g1")
    api.add_pod("default", "mp-alive", node="mp-dgone")
    assert gone.add("mp-g2", args="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=mp-alive;IP=10.43.0.250")
    reader = KubeStore(KubeClient(load_kubeconfig(kubeconfig)))
    owners = lambda: sorted(o["node"] for o in reader.blocks(pool).values())  # noqa: E731
    try:
        assert owners() == ["mp-dgone", "mp-dlive"]
        api.delete_node("mp-dgone")
        # From here on only what the manifests grant the nodes' service account (the test server checks
        # nodes, pods' list and watch, and the custom resources).
        api.access = granted("rbac.yaml") | granted("rbac-ipam.yaml")
        grace = 3.0
        config = daemon_config(tmp_path, ipamInterval=0, ipamReconcileInterval=0.4, ipamReconcileGrace=grace)
        with Daemon(config=config, kubeconfig=kubeconfig, node_name="mp-dself", metrics_address="127.0.0.1:0") as d:
            started = time.monotonic()
            d.wait_healthy()
            time.sleep(max(0.0, started + grace * 0.6 - time.monotonic()))
            assert owners() == ["mp-dgone", "mp-dlive"], "freed before the grace"
            wait_for("the gone node's block to be freed", lambda: owners() == ["mp-dlive"], timeout=grace + 10)
            assert time.monotonic() - started >= grace
            assert set(reader.ips(pool)) == {"10.43.0.250"}  # its pod is alive: kept, though its node is gone
            assert "freed: block" in d.log_text()
            assert d.metric("multiplane_ipam_reconciler_freed_total") == 1
            assert d.metric("multiplane_ipam_background_total", task="reconcile", result="ok") >= 2
            api.delete_pod("default", "mp-alive")
            wait_for("the gone pod's address to be freed", lambda: reader.ips(pool) == {}, timeout=grace + 10)
            assert owners() == ["mp-dlive"]
    finally:
        reader.close()


@pytest.mark.parametrize("kubeconfig", ["", "/nonexistent/mp-whereabouts.kubeconfig"])
def test_under_the_daemon_a_section_without_store_or_node_uses_the_daemons(
    tmp_path: Path, api: K8sServer, kubeconfig: str
) -> None:
    """No `nodeName`, no `etcd`, and no `kubernetes.kubeconfig` (or one of a file this node does not have, as a NAD
    moved over from Whereabouts names): one-shot that is code 7 (no store to use, or the file cannot be read);
    through the daemon, the block is claimed in the daemon's cluster, with the daemon's identity, under the
    daemon's `nodeName` (not the host name)."""
    net = f"mp-{uuid.uuid4().hex[:8]}"
    pool = f"{net}-10.44.0.0-24"
    conf = {
        "cniVersion": "1.1.0",
        "name": "mp-net",
        "type": "mp-main-plugin",
        "ipam": {"type": "multiplane-cluster-ipam", "range": "10.44.0.0/24", "network_name": net},
    }
    conf["ipam"]["dataDir"] = str(tmp_path / "mp-node-data")
    if kubeconfig:
        conf["ipam"]["kubernetes"] = {"kubeconfig": kubeconfig}
    alone = cni.run(BIN, "ADD", conf, container_id="mp-c0", ifname="net1", env={**ONE_SHOT, "PATH": "/usr/bin:/bin"})
    assert not alone.ok and alone.json["code"] == 7, alone.stdout
    assert (kubeconfig or "needs a store") in alone.json["msg"], alone.stdout
    kubeconfig = api.kubeconfig(tmp_path / "mp-kubeconfig")
    with Daemon(kubeconfig=kubeconfig, node_name="mp-kubelet-name") as daemon:
        inv = cni.run(BIN, "ADD", conf, container_id="mp-c1", ifname="net1", env=daemon.env)
        assert inv.ok, inv.stdout + inv.stderr
        reader = KubeStore(KubeClient(load_kubeconfig(kubeconfig)))
        try:
            assert [o["node"] for o in reader.blocks(pool).values()] == ["mp-kubelet-name"]
        finally:
            reader.close()
        assert cni.run(BIN, "DEL", conf, container_id="mp-c1", ifname="net1", env=daemon.env).ok
