"""Churn and faults of `multiplane-cluster-ipam` on simulated nodes against a real 3-member etcd (issue 13).

A node is a host name in a UTS namespace of its own (`tests/cluster_nodes.py`: every call is
`unshare --uts sh -c 'hostname mp-nodeN; exec multiplane-cluster-ipam'`, and the configs carry
no `nodeName`, so the plugin's default, the host name, tells the nodes apart), with its own
`dataDir` and its own network namespace (mp-churn-*) as CNI_NETNS of its pods.

The scenarios and the one invariant checker are shared with the Kubernetes API store's churn
(`tests/cluster_churn.py`, test_cluster_churn_kube.py): after every batch of calls the
invariants are checked on everything there is to read: the ADD results the test holds, every
node's state.json (read under the plugin's lock) and the store's blocks and single claims: no
address held by two (container, interface), each recorded address inside a block its node
owns in the store, no two store blocks overlapping.

Seeded: MP_CHURN_SEED replays a run's choices; MP_CHURN_OPS sets the number of random DEL/ADD
operations of the churn (default 100 in `make test`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from multiplane.ipam.cluster.etcd import EtcdStore
from tests import cluster_churn
from tests.cluster_churn import Cluster
from tests.etcd_cluster import EtcdCluster
from tests.integration.test_cluster_ipam import etcd_cluster  # noqa: F401 - the module's 3-member etcd

pytestmark = pytest.mark.root


@pytest.fixture
def etcd(etcd_cluster: EtcdCluster) -> Iterator[EtcdCluster]:  # noqa: F811 - the fixture imported above
    down = [i for i, m in enumerate(etcd_cluster.members) if m.proc is None]
    if down:
        etcd_cluster.restart(*down)
    etcd_cluster.wait_healthy(timeout=20)
    yield etcd_cluster
    down = [i for i, m in enumerate(etcd_cluster.members) if m.proc is None]
    if down:  # a test that failed with the store down: the next one needs it up
        etcd_cluster.restart(*down)


@pytest.fixture
def make_cluster(tmp_path: Any, etcd: EtcdCluster) -> Iterator[Any]:
    reader = EtcdStore(etcd.endpoints)
    try:
        yield from cluster_churn.cluster_factory(
            str(tmp_path), {"etcd": {"endpoints": etcd.endpoints}}, reader, "mp-churn"
        )
    finally:
        reader.close()


def test_four_uts_nodes_fifty_concurrent_adds_then_churn_with_an_etcd_member_killed(
    make_cluster: Any, etcd: EtcdCluster
) -> None:
    """4 nodes x 50 ADDs (4 at a time per node, all nodes at once) on one /22, then MP_CHURN_OPS random DEL/ADD in
    batches of 8 concurrent calls with the invariants checked after each batch; an etcd member (the leader) is
    SIGKILLed a third of the way and restarted at two thirds: no ADD fails, no address twice; after all DELs
    nothing is held and the store keeps only each node's spare."""
    seed = cluster_churn.seed()
    c: Cluster = make_cluster("10.80.0.0/22", seed)
    killed: list[int] = []

    def kill_leader() -> None:
        killed.append(etcd.leader())
        etcd.kill(killed[0])

    cluster_churn.fifty_adds_then_churn(c, random.Random(seed), kill_leader, lambda: etcd.restart(killed[0]))


def test_whole_store_down_owned_blocks_serve_claims_fail_11_dels_replayed(make_cluster: Any, etcd: EtcdCluster) -> None:
    """/29 blocks: each node holds 10 pods (2 blocks); every etcd member killed; the DELs succeed and journal the
    emptied block; ADDs continue from the spare until it is full, then code 11 naming the pool and the store; the
    store back, a DEL replays the journal: the store then holds no claim of a released block."""
    c: Cluster = make_cluster("10.81.0.0/24", cluster_churn.seed(), blockSize=29)

    def down() -> None:
        for i in range(etcd.size):
            etcd.kill(i)

    cluster_churn.store_down_owned_blocks_serve(c, down, lambda: etcd.restart(*range(etcd.size)), "etcd at")


def test_sigkill_of_the_plugin_at_random_moments_then_del_leaves_nothing_held(make_cluster: Any) -> None:
    """cluster_churn.sigkill_at_random_moments on a /24 with /29 blocks."""
    seed = cluster_churn.seed()
    cluster_churn.sigkill_at_random_moments(make_cluster("10.82.0.0/24", seed, blockSize=29), seed)


def test_sigkill_during_block_claims_leaves_blocks_the_node_adopts_and_gives_back(make_cluster: Any) -> None:
    """cluster_churn.sigkill_during_block_claims: blockSize 32 on a /26, so every ADD claims a block."""
    seed = cluster_churn.seed()
    cluster_churn.sigkill_during_block_claims(make_cluster("10.83.0.0/26", seed, blockSize=32), seed)
