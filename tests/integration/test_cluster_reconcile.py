"""`multiplane ipam reconcile` and `multiplane ipam show` against both real stores (a 3-member etcd, the API server).

The plugin runs as test_cluster_ipam runs it (a process per call, a `nodeName` and `dataDir`
per simulated node); the command runs as the installed console script. Nodes and pods live in
the in-repo API server (for the etcd store too: the reconciler asks the Kubernetes API whether
holders exist). Grace periods are a second or two, so every "not before the grace" is real time.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from multiplane.ipam.cluster import reconcile
from multiplane.k8s.client import KubeClient, load_kubeconfig
from tests import cni
from tests.integration.test_cluster_ipam import (  # noqa: F401 - fixtures shared with the plugin's tests
    Backend,
    Node,
    _inside,
    _ipam,
    api_server,
    backend,
    etcd_cluster,
    net,
)
from tests.k8s_server import K8sServer

GRACE = 1.5


class Env:
    """One test's world: the backend, the API server with its nodes and pods, a config file, a state file."""

    def __init__(self, store: Backend, api: K8sServer, tmp_path: Path, network: str) -> None:
        self.backend, self.api, self.tmp = store, api, tmp_path
        self.kubeconfig = str(api.kubeconfig(tmp_path / "mp-kc-nodes"))
        self.ipam = _ipam(store, network, range="10.78.0.0/26")  # blocks of /29
        self.pool = f"{network}-10.78.0.0-26"
        self.nodes: dict[str, Node] = {}
        self.config = tmp_path / "mp-net.conf"
        self.state = str(tmp_path / "mp-reconcile.json")

    def node(self, name: str) -> Node:
        if name not in self.nodes:
            self.api.add_node(name)
            self.nodes[name] = Node(self.tmp, name, self.ipam)
            self.config.write_text(json.dumps(self.nodes[name].conf))
        return self.nodes[name]

    def ipam_cmd(self, *args: str) -> subprocess.CompletedProcess[str]:
        extra = ["--kubeconfig", self.kubeconfig] if self.backend.name == "etcd" else []
        if args[0] == "show":
            extra = []
        cmd = [cni.OURS_MULTIPLANE, "ipam", *args, "--config", str(self.config), *extra]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)

    def reconcile(self, *flags: str, grace: float = GRACE) -> list[dict[str, Any]]:
        proc = self.ipam_cmd("reconcile", "--grace", str(grace), "--state", self.state, "--json", *flags)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)["actions"]

    def blocks(self) -> dict[str, str]:
        return {b: o["node"] for b, o in self.backend.reader().blocks(self.pool).items()}

    def unclaimed_ip(self, k: int = 0) -> str:
        """An address in a block nobody claimed (a requested address there becomes a single claim)."""
        held = self.blocks()
        free = [i for i in range(8) if f"10.78.0.{8 * i}/29" not in held]
        return f"10.78.0.{8 * free[k // 4] + 2 + k % 4}"

    def ips(self) -> dict[str, dict[str, Any]]:
        return self.backend.reader().ips(self.pool)


@pytest.fixture
def env(backend: Backend, api_server: K8sServer, tmp_path: Path, net: str) -> Env:  # noqa: F811 - fixtures
    return Env(backend, api_server, tmp_path, net)


def _freed(actions: list[dict[str, Any]]) -> set[str]:
    return {a["key"] for a in actions if a["outcome"] == "freed"}


def test_a_node_deleted_for_good_is_freed_only_after_the_grace(env: Env) -> None:
    """Its blocks and its pod-less single claim go after two sightings >= grace apart; the other node keeps all."""
    a, b = env.node("mp-n-gone"), env.node("mp-n-stays")
    a.add("mp-c-a1")
    b.add("mp-c-b1")
    single = env.unclaimed_ip()
    a.add("mp-c-a2", args=f"IP={single}")  # a single claim (outside every block), no pod recorded
    blocks_a = {blk for blk, n in env.blocks().items() if n == "mp-n-gone"}
    blocks_b = {blk for blk, n in env.blocks().items() if n == "mp-n-stays"}
    assert blocks_a and blocks_b and single in env.ips()

    env.api.delete_node("mp-n-gone")
    assert env.reconcile() == []  # first sighting
    assert env.reconcile() == []  # seen twice, but not yet `grace` apart
    assert {blk for blk, n in env.blocks().items() if n == "mp-n-gone"} == blocks_a
    time.sleep(GRACE + 0.1)
    # with only what rbac-ipam-reconciler.yaml grants (the test server checks nodes and custom resources)
    env.api.access = {(v, r, "") for r in ("ipblocks", "ipclaims") for v in ("get", "list", "delete")}
    env.api.access |= {("get", "nodes", ""), ("get", "pods", "")}
    try:
        actions = env.reconcile()
    finally:
        env.api.access = None
    assert _freed(actions) == blocks_a | {single}
    assert env.blocks() == dict.fromkeys(blocks_b, "mp-n-stays")
    assert env.ips() == {}
    assert json.loads(Path(env.state).read_text())["missing"] == {}  # nothing left to watch


def test_an_alive_pod_keeps_its_address_and_a_gone_pod_loses_it(env: Env) -> None:
    """Single claims with a pod: kept while the pod exists (its node gone or not), freed after the grace when it is gone."""
    a, b = env.node("mp-n-lost"), env.node("mp-n-up")
    env.api.add_pod("mp-ns", "mp-alive", node="mp-n-lost")
    alive, dead = env.unclaimed_ip(0), env.unclaimed_ip(1)
    a.add("mp-c-alive", args=f"IgnoreUnknown=1;K8S_POD_NAMESPACE=mp-ns;K8S_POD_NAME=mp-alive;IP={alive}")
    b.add("mp-c-dead", args=f"IgnoreUnknown=1;K8S_POD_NAMESPACE=mp-ns;K8S_POD_NAME=mp-dead;IP={dead}")  # no such pod
    assert env.ips()[alive]["pod"] == "mp-ns/mp-alive"
    env.api.delete_node("mp-n-lost")  # the alive pod's node is gone; the pod object stays

    assert env.reconcile() == []
    time.sleep(GRACE + 0.1)
    assert _freed(env.reconcile()) == {dead}
    assert set(env.ips()) == {alive}
    time.sleep(GRACE + 0.1)
    assert env.reconcile() == []  # still alive: never due
    assert set(env.ips()) == {alive}


def test_an_unanswered_lookup_frees_nothing(env: Env) -> None:
    """A 403 on nodes (no RBAC for the reconciler): the run fails, nothing is freed, no sighting is recorded."""
    a = env.node("mp-n-unknown")
    a.add("mp-c-u1")
    before = env.blocks()
    env.api.delete_node("mp-n-unknown")
    env.api.access = {(v, r, "") for r in ("ipblocks", "ipclaims") for v in ("get", "list", "delete")}
    try:
        for _ in range(2):
            proc = env.ipam_cmd("reconcile", "--grace", "0", "--state", env.state)
            assert proc.returncode == 1 and "nodes" in proc.stderr, proc.stderr
    finally:
        env.api.access = None
    assert env.blocks() == before
    assert not Path(env.state).exists()


def test_a_node_back_before_the_grace_keeps_everything(env: Env) -> None:
    """Missing, then back: the sighting is forgotten, so a later absence starts the grace from zero."""
    a = env.node("mp-n-flaky")
    a.add("mp-c-f1")
    before = env.blocks()
    assert set(before.values()) == {"mp-n-flaky"}
    env.api.delete_node("mp-n-flaky")
    assert env.reconcile() == []
    env.api.add_node("mp-n-flaky")  # re-registered
    time.sleep(GRACE + 0.1)
    assert env.reconcile() == []
    env.api.delete_node("mp-n-flaky")  # gone again: a new first sighting, not the old one
    assert env.reconcile() == []
    assert env.blocks() == before
    assert a.add("mp-c-f2")  # and the node still allocates from its block


def test_a_block_claimed_anew_meanwhile_is_not_released(env: Env, tmp_path: Path) -> None:
    """Between the reconciler's list and its release another node takes the block: the compare-and-delete refuses."""
    a = env.node("mp-n-old")
    a.add("mp-c-o1")
    (block,) = env.blocks()
    env.api.delete_node("mp-n-old")
    env.api.add_node("mp-n-new")
    reader = env.backend.reader()

    class Racing:
        """The real store; after its list, the old owner's block goes to mp-n-new (a release and a claim)."""

        def __init__(self, store: Any) -> None:
            self.store = store

        def blocks(self, pool: str) -> dict[str, dict[str, Any]]:
            listed = self.store.blocks(pool)
            assert self.store.release_block(pool, block, "mp-n-old")
            assert self.store.claim_block(pool, block, {"node": "mp-n-new"}) == {"node": "mp-n-new"}
            return listed

        def __getattr__(self, name: str) -> Any:
            return getattr(self.store, name)

    lookup = reconcile.Lookup(KubeClient(load_kubeconfig(env.kubeconfig)))
    try:
        marks = {"node/mp-n-old": time.time() - 10}
        actions, _ = reconcile.reconcile_once([(Racing(reader), [env.pool])], lookup, marks, GRACE, time.time())
    finally:
        lookup.client.close()
    assert [(a.key, a.outcome) for a in actions] == [(block, "not freed (claimed anew)")]
    assert env.blocks() == {block: "mp-n-new"}
    assert reader.release_block(env.pool, block, "mp-n-new")


def test_without_a_state_file_one_run_waits_the_grace_and_dry_run_changes_nothing(env: Env) -> None:
    a = env.node("mp-n-once")
    a.add("mp-c-1")
    (block,) = env.blocks()
    env.api.delete_node("mp-n-once")
    dry = env.ipam_cmd("reconcile", "--grace", "0", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert env.blocks() == {block: "mp-n-once"}
    started = time.monotonic()
    proc = env.ipam_cmd("reconcile", "--grace", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started >= 1.0
    assert _freed(json.loads(proc.stdout)["actions"]) == {block}
    assert env.blocks() == {}


def test_show_lists_what_the_plugin_allocated(env: Env) -> None:
    a, b = env.node("mp-n-s1"), env.node("mp-n-s2")
    ip_a = a.add("mp-c-s1")
    ip_b = b.add("mp-c-s2")
    pinned = env.unclaimed_ip()
    b.add("mp-c-s3", args=f"IgnoreUnknown=1;K8S_POD_NAMESPACE=mp-ns;K8S_POD_NAME=mp-pinned;IP={pinned}")
    proc = env.ipam_cmd("show", "--json")
    assert proc.returncode == 0, proc.stderr
    (pool,) = json.loads(proc.stdout)["pools"]
    assert pool["pool"] == env.pool and pool["blockPrefix"] == 29
    by_node = {blk["node"]: blk["block"] for blk in pool["blocks"]}
    assert set(by_node) == {"mp-n-s1", "mp-n-s2"}
    assert _inside(ip_a, by_node["mp-n-s1"]) and _inside(ip_b, by_node["mp-n-s2"])
    assert pool["addresses"] == [
        {"ip": pinned, "node": "mp-n-s2", "pod": "mp-ns/mp-pinned", "container": "mp-c-s3", "ifname": "net1"}
    ]
    # /26 without network and broadcast: 62 usable in 8 blocks; two blocks of 8 (the first without .0 and .64's ends)
    usable_in_blocks = sum(
        len([i for i in range(8) if 0 < int(blk.split(".")[3].split("/")[0]) + i < 63]) for blk in by_node.values()
    )
    assert pool["total"] == {"blocks": 8, "addresses": 62}
    assert pool["free"] == {"blocks": 6, "addresses": 62 - usable_in_blocks - 1}
    text = env.ipam_cmd("show", env.pool)
    assert text.returncode == 0, text.stderr
    assert "mp-ns/mp-pinned" in text.stdout and by_node["mp-n-s1"] in text.stdout
    # the same from a NetworkAttachmentDefinition manifest (YAML, the config in spec.config)
    conf = env.config.read_text()
    nad = {"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition", "metadata": {"name": "mp-nad"}}
    env.config.write_text(yaml.safe_dump({**nad, "spec": {"config": conf}}))
    from_nad = env.ipam_cmd("show", "--json")
    assert from_nad.returncode == 0, from_nad.stderr
    assert json.loads(from_nad.stdout)["pools"] == [pool]
    missing = env.ipam_cmd("show", "mp-no-such-pool")
    assert missing.returncode == 1 and "no pool" in missing.stderr


def test_a_nad_pasted_as_it_is_is_read_with_the_operators_credentials(env: Env) -> None:
    """A NAD names the nodes' kubeconfig, which the operator's machine (or the CronJob's pod) does not have:
    --kubeconfig replaces it for the Kubernetes store too; --in-cluster outside a pod is refused, naming why."""
    a = env.node("mp-n-p1")
    ip = a.add("mp-c-p1")
    section = {**a.conf["ipam"]}
    if env.backend.name == "kube":
        section["kubernetes"] = {"kubeconfig": "/nonexistent/mp-node.kubeconfig"}
    nad = {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "mp-pasted"},
        "spec": {"config": json.dumps({**a.conf, "ipam": section})},
    }
    env.config.write_text(yaml.safe_dump(nad))
    cmd = [cni.OURS_MULTIPLANE, "ipam", "show", "--json", "--config", str(env.config)]
    plain = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    with_flag = subprocess.run([*cmd, "--kubeconfig", env.kubeconfig], capture_output=True, text=True, timeout=30)
    assert with_flag.returncode == 0, with_flag.stderr
    (pool,) = json.loads(with_flag.stdout)["pools"]
    assert [blk["node"] for blk in pool["blocks"]] == ["mp-n-p1"] and _inside(ip, pool["blocks"][0]["block"])
    if env.backend.name == "kube":
        assert plain.returncode == 1 and "/nonexistent/mp-node.kubeconfig" in plain.stderr, plain.stderr
    else:  # an etcd section keeps its store; the flag only names the API
        assert plain.returncode == 0 and json.loads(plain.stdout)["pools"] == [pool]
    outside = subprocess.run(
        [*cmd, "--in-cluster"], capture_output=True, text=True, timeout=30, env={"PATH": os.environ["PATH"]}
    )
    assert outside.returncode == 1 and "--in-cluster" in outside.stderr and "not in a pod" in outside.stderr
