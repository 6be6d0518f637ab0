"""Churn of the seed's NAD with `multiplane-cluster-ipam`, through the meta-plugin on simulated nodes (issue 13).

The seed's NetworkAttachmentDefinition (cni/nads/macvlan.yaml, read from the repository: macvlan
on `ens33`, bridge mode, 192.168.174.0/24, gateway .2, a route without `gw`) with its
`ipam.type` changed to `multiplane-cluster-ipam`, and only what that needs besides:

* host-local's `subnet` stays as it is (the plugin reads host-local's range names); the range
  is the seed's whole /24 (`rangeStart` .200 and `rangeEnd` .216 dropped), with the default
  /28 blocks (16 slots). Not the seed's 17 addresses: there the default blocks are /31, 9
  slots (.216/31 with one usable address), too few for five nodes (a fifth joins during the
  churn) holding up to 4 pods each plus a spare, so a "range is full" there would be the
  test's sizing, not the code under test (`make demo` runs the seed's exact range, with only
  the type changed, on three nodes with one pod each);
* `kubernetes.kubeconfig`: the store;
* `dataDir`: every simulated node shares this host's file system, so each node's NAD names its
  own (on real nodes the default is per node anyway).

The store is the in-repo Kubernetes API server with the IPBlock/IPClaim CRDs, not etcd: a NAD
lives in the Kubernetes API, so that is the store a seed cluster has without running one more
service; etcd's churn is test_cluster_churn.py. The server listens on the test's loopback;
each node reaches it at the same URL through `LoopbackPort` (tests/cluster_nodes.py).

Four nodes, and a fifth that joins during the churn. Each node is a network namespace
mp-cm-<tag>-nodeN whose `ens33` is a veth onto one LAN bridge in mp-cm-<tag>-lan; the runtime
(the libcni driver) and the meta-plugin it execs run inside that namespace and inside a UTS
namespace whose host name is the node's name
(mp-cm-nodeN; the NAD has no `nodeName`, so the plugin's default tells the nodes apart). The
meta-plugin runs in-process (MULTIPLANE_DAEMON=off: a daemon would live in the host's
namespaces), with the cluster network (Debian's bridge + host-local) as eth0 and the seed's
macvlan as net1. Pods are network namespaces of their own.

Checked on the kernel and everything else there is to read: each pod's net1 is a macvlan
holding exactly the address its network-status entry reports, which is the address the node's
state.json records for the container; no address twice across all pods of all nodes
(`tests/cluster_churn.check_invariants`, the checker of the other churn tests, with the store's
blocks and single claims); a pod on node 1 pings a pod on node 2 across the LAN; after all
DELs nothing is left: no links in the pods, no macvlan or bridge port in the nodes, no address
in the records, no journal, no single claim, the store's blocks exactly the nodes' spares, no
meta-plugin cache or status file, nothing in libcni's cache. From a third to two thirds of the
churn the API server is stopped (`K8sServer.stop`, started again on its port), and a fifth node
joins meanwhile: ADDs that need a block (at least the new node's first) fail saying the store
is unreachable, leave nothing in the pod, and the runtime's DEL succeeds; ADDs from owned
blocks go on; what DELs journalled meanwhile is replayed by later DELs; the new node gets a
block once the server is back.

Seeded: MP_CHURN_SEED replays the choices; MP_CHURN_OPS scales the churn (default: 28 operations, 7 batches).
"""

from __future__ import annotations

import json
import os
import random
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from multiplane.ipam.cluster.kube import KubeStore
from multiplane.k8s.client import KubeClient, load_kubeconfig
from tests import cluster_churn, cni
from tests.cluster_nodes import LoopbackPort, read_record
from tests.integration.meta_helpers import MetaNode, addrs, ip_files, kind, links_by_name
from tests.integration.test_cluster_ipam import CRDS
from tests.k8s_server import K8sServer
from tests.topology import BINARY, ip, ip_json, ping

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
SEED_NAD = REPO / "cni" / "nads" / "macvlan.yaml"
POOL = "192.168.174.0-24"  # the seed's subnet; no network_name in the seed
NODES = 4
MAX_PODS = 4  # per node: at most 16 pods in the /24 at once
OPS = max(24, cluster_churn.OPS // 4)
APP = "mp-app"


def seed_nad(kubeconfig: str, data_dir: str) -> tuple[str, dict[str, Any]]:
    """The seed NAD's name and config, with cluster-wide IPAM (see the module docstring for each change)."""
    doc = yaml.safe_load(SEED_NAD.read_text())
    conf = json.loads(doc["spec"]["config"])
    ipam = conf["ipam"]
    assert ipam["type"] == "host-local" and conf["master"] == "ens33", conf  # the seed as we know it
    new = {k: v for k, v in ipam.items() if k not in ("rangeStart", "rangeEnd")}
    new.update({"type": "multiplane-cluster-ipam", "kubernetes": {"kubeconfig": kubeconfig}, "dataDir": data_dir})
    return doc["metadata"]["name"], {**conf, "ipam": new}


class Node:
    """One simulated node: its namespace, its runtime (MetaNode) run inside it and its UTS namespace."""

    def __init__(self, world: World, i: int, cnidriver: str) -> None:
        self.name = f"mp-cm-node{i}"
        self.netns = f"mp-cm-{world.tag}-node{i}"
        ip("netns", "add", self.netns)
        world.made.append(self.netns)
        ip("-n", self.netns, "link", "set", "lo", "up")
        peer = f"mp-cm{world.tag}{i}"
        ip("-n", world.lan, "link", "add", peer, "type", "veth", "peer", "name", "ens33", "netns", self.netns)
        ip("-n", world.lan, "link", "set", peer, "master", "mp-cmbr", "up")
        ip("-n", self.netns, "link", "set", "ens33", "up")
        self.port = LoopbackPort(self.netns, world.api.port)
        in_node = ["ip", "netns", "exec", self.netns, "unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"']
        self.data_dir = str(world.tmp / f"mp-cm-ipam-{i}")
        self.meta = MetaNode(
            world.tmp / self.name, cnidriver, world.bin_dir, prefix=[*in_node, self.name], netns=self.netns
        )
        self.meta.front_env = {"MULTIPLANE_DAEMON": "off"}
        self.nad, conf = seed_nad(world.kubeconfig, self.data_dir)
        self.meta.add_nad(self.nad, conf)
        self.pods: dict[str, str] = {}  # container -> pod netns

    def close(self) -> None:
        self.meta.close()
        self.port.close()


class World:
    """The LAN, the nodes, the pods, the API server; what the results said; the checks."""

    def __init__(self, tmp: Path, api: K8sServer, seed: int) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.tmp, self.api, self.seed = tmp, api, seed
        self.made: list[str] = []  # namespaces, removed in reverse
        self.nodes: list[Node] = []
        self.held: dict[tuple[str, str], str] = {}  # (node, container) -> net1's address, from network-status
        self.lock = threading.Lock()
        self.counter = 0
        self.store_up = True  # False: the API server is stopped; checks do not read it
        self.served_while_down = 0
        self.refused: list[str] = []  # ADDs refused (the store unreachable) while it was stopped
        self.kubeconfig = str(api.kubeconfig(tmp / "mp-cm-kubeconfig"))
        self.reader = KubeStore(KubeClient(load_kubeconfig(self.kubeconfig)))
        self.lan = f"mp-cm-{self.tag}-lan"
        self.bin_dir = tmp / "mp-cm-bin"

    def setup(self, cnidriver: str) -> None:
        """The bin dir, the LAN and the nodes (close() removes whatever was made, even halfway)."""
        self.bin_dir.mkdir()  # as /opt/cni/bin: links to the one binary
        for name in ("multiplane", "multiplane-macvlan", "multiplane-host-local", "multiplane-cluster-ipam"):
            (self.bin_dir / name).symlink_to(BINARY or f"{cni.BIN_DIR}/{name}")
        ip("netns", "add", self.lan)
        self.made.append(self.lan)
        ip("-n", self.lan, "link", "add", "mp-cmbr", "type", "bridge")
        ip("-n", self.lan, "link", "set", "mp-cmbr", "up")
        self.cnidriver = cnidriver
        for _ in range(NODES):
            self.join()

    def join(self) -> Node:
        """One more node on the LAN (its namespaces, its runtime, the NAD)."""
        node = Node(self, len(self.nodes) + 1, self.cnidriver)
        self.nodes.append(node)
        return node

    def ctx(self) -> str:
        return f"seed={self.seed} (MP_CHURN_SEED={self.seed} replays the choices)"

    def add(self, node: Node) -> None:
        with self.lock:
            self.counter += 1
            cid = f"mp-cm-{self.tag}-c{self.counter}"
        pod = f"mp-cm-{self.tag}-p{self.counter}"
        ip("netns", "add", pod)
        with self.lock:
            self.made.append(pod)
        ip("-n", pod, "link", "set", "lo", "up")
        inv = node.meta.run("add", pod, cid, namespace=APP, name=cid, networks=node.nad)
        if not inv.ok and not self.store_up:
            self.refused_while_down(node, cid, pod, inv)
            return
        assert inv.ok, f"{node.name} ADD {cid}: {inv.stdout} {inv.stderr} {node.meta.log_text()[-3000:]} [{self.ctx()}]"
        status = json.loads(node.meta.status_file(cid).read_text())
        (net1,) = [e for e in status if e["interface"] == "net1"]
        assert net1["name"] == f"{APP}/{node.nad}" and net1["gateway"] == ["192.168.174.2"], net1
        (address,) = net1["ips"]
        with self.lock:
            node.pods[cid] = pod
            self.held[(node.name, cid)] = address
            self.served_while_down += not self.store_up

    def refused_while_down(self, node: Node, cid: str, pod: str, inv: Any) -> None:
        """An ADD the store's absence failed: saying so, nothing left in the pod, and the runtime's DEL succeeds."""
        msg = inv.stderr  # libcni reports the plugin's message, not its code
        assert "needs a new block" in msg and "the Kubernetes API at" in msg and "is unreachable" in msg, msg
        assert sorted(links_by_name(pod)) == ["lo"], (pod, links_by_name(pod), self.ctx())
        assert not node.meta.status_file(cid).exists(), cid
        again = node.meta.run("del", pod, cid, namespace=APP, name=cid, networks=node.nad)
        assert again.ok, f"{node.name} DEL after the failed ADD {cid}: {again.stdout} {again.stderr}"
        assert not node.meta.cache_file(cid).exists(), cid
        ip("netns", "del", pod)
        with self.lock:
            self.refused.append(msg)

    def delete(self, node: Node, cid: str) -> None:
        pod = node.pods[cid]
        inv = node.meta.run("del", pod, cid, namespace=APP, name=cid, networks=node.nad)
        assert inv.ok, f"{node.name} DEL {cid}: {inv.stdout} {inv.stderr} [{self.ctx()}]"
        assert sorted(links_by_name(pod)) == ["lo"], (pod, links_by_name(pod), self.ctx())
        ip("netns", "del", pod)
        with self.lock:
            del node.pods[cid]
            del self.held[(node.name, cid)]

    def run(self, calls: list[tuple[Node, str, str]]) -> None:
        """(node, "ADD"/"DEL", container) calls, all at once; re-raise the first failure."""
        with ThreadPoolExecutor(max(1, len(calls))) as pool:
            futures = [
                pool.submit(self.add, n) if cmd == "ADD" else pool.submit(self.delete, n, cid) for n, cmd, cid in calls
            ]
            for f in futures:
                f.result()

    def check(self) -> None:
        """The kernel's view against the results, then check_invariants on results, records and the store."""
        for node in self.nodes:
            for cid, pod in node.pods.items():
                links = links_by_name(pod)
                assert kind(links["net1"]) == "macvlan", (pod, links["net1"])
                want = self.held[(node.name, cid)]
                assert addrs(links["net1"]) == [f"{want}/24"], (node.name, cid, addrs(links["net1"]), want, self.ctx())
        records = {n.name: read_record(n.data_dir) for n in self.nodes}
        blocks = self.reader.blocks(POOL) if self.store_up else None
        ips = self.reader.ips(POOL) if self.store_up else None
        cluster_churn.check_invariants(POOL, dict(self.held), records, self.ctx(), store_blocks=blocks, store_ips=ips)

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        self.reader.close()
        for ns in reversed(self.made):
            ip("netns", "del", ns, check=False)


@pytest.fixture
def world(tmp_path: Path, cnidriver: str) -> Iterator[World]:
    with K8sServer() as api:
        api.add_crds(str(CRDS))
        w = World(tmp_path, api, cluster_churn.seed())
        try:
            w.setup(cnidriver)
            yield w
        finally:
            w.close()
    left = [line for line in ip("netns", "list").splitlines() if line.startswith(f"mp-cm-{w.tag}-")]
    assert not left, left


def test_seed_nad_with_cluster_ipam_through_the_meta_plugin_on_four_nodes_churn_then_nothing_left(
    world: World,
) -> None:
    """4 nodes x 4 concurrent pod ADDs (16 at once) through the meta-plugin, then seeded churn (one call per node
    per batch, the 4 at once), checked after every batch; the API server is stopped from a third to two thirds
    of the churn: ADDs from owned blocks go on, the others fail with code 11 leaving nothing in the pod, and the
    runtime's DEL then succeeds; a pod on node 1 pings one on node 2 over net1; after every DEL nothing is left
    on any node, in any record (no journal: what DELs journalled while the server was down was replayed) or in
    the store but each node's spare block."""
    w = world
    rng = random.Random(w.seed)
    w.run([(n, "ADD", "") for n in w.nodes for _ in range(MAX_PODS)])
    w.check()
    owners = {o["node"] for o in w.reader.blocks(POOL).values()}
    assert owners == {n.name for n in w.nodes}, owners  # each node's UTS host name is its node name
    print(
        f"after {len(w.held)} ADDs: {sorted(w.held.items())}; blocks {sorted(w.reader.blocks(POOL).items())} [{w.ctx()}]"
    )
    a, b = w.nodes[0], w.nodes[1]
    pod_a, pod_b = next(iter(a.pods.values())), next(iter(b.pods.values()))
    ip_b = w.held[(b.name, next(iter(b.pods)))]
    assert ping(pod_a, ip_b), f"{pod_a} on {a.name} cannot ping {ip_b} ({pod_b} on {b.name}) [{w.ctx()}]"

    done = 0
    while done < OPS:
        if w.store_up and OPS // 3 <= done < 2 * OPS // 3:
            w.store_up = False
            w.api.stop()
            w.join()  # a node that joins while the API server is down: it owns no block, its first ADD must fail
        elif not w.store_up and done >= 2 * OPS // 3:
            w.api.start()
            w.store_up = True
        batch: list[tuple[Node, str, str]] = []
        for node in w.nodes:
            if node.pods and (len(node.pods) >= MAX_PODS or rng.random() < 0.5):
                batch.append((node, "DEL", rng.choice(sorted(node.pods))))
            else:
                batch.append((node, "ADD", ""))
        w.run(batch)
        done += len(batch)
        w.check()

    assert w.store_up and w.served_while_down > 0 and w.refused, (w.served_while_down, w.refused, w.ctx())
    late = w.nodes[-1].name  # joined while the server was down; an empty node ADDs in every batch, so since
    assert late in {o["node"] for o in w.reader.blocks(POOL).values()}, (late, w.ctx())  # it got a block
    print(f"while the API server was down: {w.served_while_down} ADDs served, {len(w.refused)} refused")

    w.run([(n, "DEL", cid) for n in w.nodes for cid in sorted(n.pods)])
    w.check()
    left = w.reader.blocks(POOL)
    spares = {}
    for node in w.nodes:
        state = read_record(node.data_dir)
        rec = state["pools"].get(POOL, {"blocks": {}, "addresses": {}})
        assert rec["addresses"] == {} and len(rec["blocks"]) <= 1, (node.name, rec, w.ctx())
        assert state["pending"] == [], (node.name, state["pending"], w.ctx())  # journalled while down: replayed
        assert [f for _, _, fs in os.walk(node.meta.cache) for f in fs] == [], node.name  # libcni's cache
        spares.update(dict.fromkeys(rec["blocks"], node.name))
        assert node.meta.state_files() == [], (node.name, node.meta.state_files())
        assert ip_files(node.meta.ipam) == [], node.name
        assert node.meta.bridge_ports() == [], node.name
        links = ip_json("-n", node.netns, "-d", "link", "show")
        assert sorted(link["ifname"] for link in links) == sorted(["lo", "ens33", node.meta.bridge]), links
    assert {k: o["node"] for k, o in left.items()} == spares, (left, spares, w.ctx())
    assert w.api.errors == []
