"""Churn and faults of `multiplane-cluster-ipam` on simulated nodes through the Kubernetes API store (issue 13).

The same nodes, scenarios and invariant checker as test_cluster_churn.py (`tests/cluster_churn.py`:
4 UTS nodes with host names mp-node1..4, network namespaces mp-ck-*), with the store the
in-repo API server (`tests/k8s_server.py`) serving the IPBlock and IPClaim CRDs of
packaging/k8s/crd-ipam.yaml; the plugin finds it through `kubernetes.kubeconfig`, and the test
reads it back through the plugin's own `KubeStore`.

The fault "the API server down" is the server stopped (its listening socket closed, open
connections cut: connections are refused) and started again on the same port
(`K8sServer.stop`/`start`), as an API server restart looks to its clients; its objects live in
the test process and survive it, as etcd's would.

Seeded: MP_CHURN_SEED replays a run's choices; MP_CHURN_OPS sets the number of random DEL/ADD
operations of the churn (default 100).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from multiplane.ipam.cluster.kube import KubeStore
from multiplane.k8s.client import KubeClient, load_kubeconfig
from tests import cluster_churn
from tests.cluster_churn import Cluster
from tests.integration.test_cluster_ipam import api_server  # noqa: F401 - the module's API server with the CRDs
from tests.k8s_server import K8sServer

pytestmark = pytest.mark.root

GRACE = 2.0  # seconds: the reconciler's grace in the node-killed-for-good test


@pytest.fixture
def api(api_server: K8sServer) -> Iterator[K8sServer]:  # noqa: F811 - the fixture imported above
    api_server.start()  # a test that failed with the server stopped: the next one needs it up
    api_server.reset_faults()
    yield api_server
    api_server.start()


@pytest.fixture
def kubeconfig(api: K8sServer, tmp_path: Path) -> str:
    return str(api.kubeconfig(tmp_path / "mp-ck-kubeconfig"))


@pytest.fixture
def make_cluster(tmp_path: Path, kubeconfig: str) -> Iterator[Any]:
    reader = KubeStore(KubeClient(load_kubeconfig(kubeconfig)))
    try:
        yield from cluster_churn.cluster_factory(
            str(tmp_path), {"kubernetes": {"kubeconfig": kubeconfig}}, reader, "mp-ck"
        )
    finally:
        reader.close()


def _objects(api: K8sServer, c: Cluster) -> dict[str, dict[str, str]]:
    """The pool's IPBlock and IPClaim objects as the server holds them (not through the plugin's client): key: node."""
    out: dict[str, dict[str, str]] = {"ipblocks": {}, "ipclaims": {}}
    for plural, field in (("ipblocks", "cidr"), ("ipclaims", "ip")):
        for obj in api.custom_objects(plural):
            if obj["spec"]["pool"] == c.pool:
                out[plural][obj["spec"][field]] = obj["spec"]["node"]
    return out


def test_four_uts_nodes_fifty_concurrent_adds_then_churn_with_the_api_server_stopped(
    make_cluster: Any, api: K8sServer
) -> None:
    """4 nodes x 50 ADDs on one /22 (/28 blocks), then MP_CHURN_OPS random DEL/ADD in batches of 8 concurrent calls,
    checked after each batch and by a watcher meanwhile; the API server is stopped a third of the way and started
    again at two thirds. While it is down, an ADD may fail only with code 11 naming the pool that needs a block
    (every other ADD is served from owned blocks) and every DEL succeeds; after all DELs nothing is held, no
    journal is left, and the server's IPBlock objects are exactly the nodes' spares, with no IPClaim."""
    seed = cluster_churn.seed()
    c: Cluster = make_cluster("10.84.0.0/22", seed)

    def stop() -> None:
        c.set_store(False, api.stop)
        c.unavailable_ok = True

    def start() -> None:
        c.set_store(True, api.start)
        c.unavailable_ok = False

    cluster_churn.fifty_adds_then_churn(c, random.Random(seed), stop, start)
    objects = _objects(api, c)
    assert objects["ipclaims"] == {}, objects
    assert objects["ipblocks"] == {b: o["node"] for b, o in c.reader.blocks(c.pool).items()}, objects
    assert len(objects["ipblocks"]) <= 4, objects
    assert c.served_while_down > 0, f"no ADD ran while the API server was down [{c.ctx()}]"
    print(f"while the API server was down: {c.served_while_down} ADDs served, {len(c.unavailable)} refused (11)")


def test_api_server_stopped_owned_blocks_serve_claims_fail_11_dels_replayed(make_cluster: Any, api: K8sServer) -> None:
    """cluster_churn.store_down_owned_blocks_serve with the API server stopped and started again on its port: the
    code-11 message names the Kubernetes API at the server's URL."""
    c: Cluster = make_cluster("10.85.0.0/24", cluster_churn.seed(), blockSize=29)
    cluster_churn.store_down_owned_blocks_serve(c, api.stop, api.start, f"the Kubernetes API at {api.url}")
    assert _objects(api, c)["ipclaims"] == {}


def test_sigkill_of_the_plugin_at_random_moments_then_del_leaves_nothing_held(make_cluster: Any) -> None:
    """cluster_churn.sigkill_at_random_moments on a /24 with /29 blocks, through the API server."""
    seed = cluster_churn.seed()
    cluster_churn.sigkill_at_random_moments(make_cluster("10.86.0.0/24", seed, blockSize=29), seed)


def test_sigkill_during_block_claims_leaves_blocks_the_node_adopts_and_gives_back(make_cluster: Any) -> None:
    """cluster_churn.sigkill_during_block_claims: blockSize 32 on a /26, every ADD creates an IPBlock object."""
    seed = cluster_churn.seed()
    cluster_churn.sigkill_during_block_claims(make_cluster("10.87.0.0/26", seed, blockSize=32), seed)


def test_a_node_killed_for_good_is_freed_by_reconcile_after_the_grace_and_live_nodes_keep_theirs(
    make_cluster: Any, api: K8sServer, tmp_path: Path
) -> None:
    """4 nodes with Node objects hold 12 pods each (/29 blocks: 2 or more blocks each); mp-node4 dies for good (its Node
    object deleted while it holds its blocks; it makes no call again). While the three live nodes keep churning
    (claiming and releasing blocks), `multiplane ipam reconcile --grace 2 --state F` runs: the first look and a
    second before the grace free nothing; after the grace it frees exactly mp-node4's blocks and touches no
    live node's block. The live nodes' records then match the store, and after their DELs nothing is held."""
    seed = cluster_churn.seed()
    rng = random.Random(seed)
    c: Cluster = make_cluster("10.88.0.0/24", seed, blockSize=29)
    for n in c.nodes:
        api.add_node(n.name)
    try:
        c.run([(n, "ADD", c.cid(n)) for k in range(12) for n in c.nodes])
        c.check()
        dead = c.nodes[3]
        dead_blocks = {b for b, o in c.reader.blocks(c.pool).items() if o["node"] == dead.name}
        assert len(dead_blocks) >= 2, (dead_blocks, c.ctx())
        config = tmp_path / "mp-ck-net.conf"
        config.write_text(json.dumps(dead.conf))
        state = str(tmp_path / "mp-ck-reconcile.json")

        api.delete_node(dead.name)
        c.dead.add(dead.name)
        stop = threading.Event()
        failures: list[BaseException] = []
        rounds = [0]

        def churn_live() -> None:  # the live nodes go on: blocks claimed and released meanwhile
            try:
                while not stop.is_set():
                    rounds[0] += 1
                    batch = []
                    for node in c.live():
                        mine = c.mine(node)
                        if mine and rng.random() < 0.5:
                            batch.append((node, "DEL", rng.choice(mine)))
                        else:
                            batch.append((node, "ADD", c.cid(node)))
                    c.run(batch)
            except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
                failures.append(exc)

        churner = threading.Thread(target=churn_live)
        churner.start()
        try:
            first = time.monotonic()
            assert cluster_churn.reconcile(str(config), GRACE, state) == []  # first sighting
            assert cluster_churn.reconcile(str(config), GRACE, state) == []  # again, before the grace
            assert time.monotonic() - first < GRACE, "the second look came after the grace: the test proves nothing"
            still = {b for b, o in c.reader.blocks(c.pool).items() if o["node"] == dead.name}
            assert still == dead_blocks, (still, dead_blocks, c.ctx())
            time.sleep(GRACE + 0.2)
            actions = cluster_churn.reconcile(str(config), GRACE, state)
        finally:
            stop.set()
            churner.join()
        if failures:
            raise failures[0]
        assert rounds[0] > 1, "the live nodes did not churn while the reconciler ran"
        freed = {a["key"] for a in actions if a["outcome"] == "freed"}
        assert freed == dead_blocks, (actions, c.ctx())
        assert all(a["holder"].get("node") == dead.name for a in actions), (actions, c.ctx())
        left = c.reader.blocks(c.pool)
        assert not {b for b, o in left.items() if o["node"] == dead.name}, (left, c.ctx())
        c.check()  # the live nodes: every recorded block still theirs in the store, no address twice
        assert dead.name not in _objects(api, c)["ipblocks"].values(), c.ctx()
        c.del_all()
        cluster_churn.all_released(c)
    finally:
        for n in c.live():
            api.delete_node(n.name)
