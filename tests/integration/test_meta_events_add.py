"""Diagnostics of a real ADD (root: a pod netns): Events on the pod, RBAC = the requests made, the log of in-process built-ins.

The meta-plugin is the `multiplane` program (FrontDoorWorld) with the spy delegates of
tests/unit/test_meta_runner.py (exec'd) and, for the built-ins, a macvlan on a throw-away
veth master with host-local IPAM (in-process). The API server is the in-repo one, which
records every request and stores the Events it is sent. Every test runs through both front
doors (the one-shot process and the node daemon; see tests/integration/conftest.py) with the
same assertions; a bug injected into the in-process host-local is injected into the daemon.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from multiplane.plugins.meta.selection import NETWORK_STATUS_ANNOTATION, NETWORKS_ANNOTATION
from tests import cni
from tests.daemon_harness import FrontDoor
from tests.integration.meta_helpers import FrontDoorWorld
from tests.k8s_server import K8sServer, Request
from tests.topology import Topology, scratch_netns
from tests.unit.test_meta_runner import Spies, World

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("via_front_door")]

PACKAGING = Path(__file__).resolve().parents[2] / "packaging" / "k8s"
POD_ARGS = "K8S_POD_NAMESPACE=test;K8S_POD_NAME=mp-pod;K8S_POD_INFRA_CONTAINER_ID=mp-c1"


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh, empty network namespace, by path; removed afterwards."""
    with scratch_netns("mp-ev-") as name:
        yield f"/var/run/netns/{name}"


@pytest.fixture
def world(tmp_path: Path) -> FrontDoorWorld:
    return FrontDoorWorld(tmp_path, Spies(tmp_path))


@pytest.fixture
def api(via_front_door: FrontDoor, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[K8sServer]:
    """The in-repo API server; under the daemon-cluster front door, the calls go to a daemon watching it (node
    mp-node-7, where add_pod puts the pod)."""
    with K8sServer() as server:
        kubeconfig = server.kubeconfig(tmp_path / "mp-kc-daemon")
        with via_front_door.cluster_daemon(kubeconfig, node_name="mp-node-7") as env:
            monkeypatch.setattr(cni, "FRONT_DOOR_ENV", env)
            yield server


def log_of(world: World) -> Path:
    return world.root / "mp-meta.log"


def kube_conf(world: World, api: K8sServer, **extra: Any) -> dict[str, Any]:
    return {**world.meta, "kubeconfig": api.kubeconfig(world.root / "mp-kc"), "logFile": str(log_of(world)), **extra}


def add_pod(api: K8sServer, networks: str = "mp-net1") -> None:
    api.add_pod("test", "mp-pod", annotations={NETWORKS_ANNOTATION: networks}, uid="mp-uid-1", node="mp-node-7")
    api.add_nad("test", "mp-net1", {"cniVersion": "1.0.0", "name": "mp-net1", "type": "mp-spy2"})


# ---- Events of a successful and a failed ADD ---------------------------------------------------


@pytest.mark.kube_api
def test_successful_add_posts_added_interface_per_attachment(world: World, api: K8sServer, netns: str) -> None:
    """Multus's Normal AddedInterface for eth0 and net1, in attachment order, with Multus's message."""
    add_pod(api)
    world.run("ADD", kube_conf(world, api), netns=netns, args=POD_ARGS)
    events = api.events("test")
    assert [(e["type"], e["reason"], e["message"]) for e in events] == [
        ("Normal", "AddedInterface", "Add eth0 [10.88.0.5/16] from mp-cluster"),
        ("Normal", "AddedInterface", "Add net1 [10.99.0.7/24] from test/mp-net1"),
    ]
    for e in events:
        assert e["involvedObject"]["uid"] == "mp-uid-1" and e["source"] == {
            "component": "multiplane",
            "host": "mp-node-7",
        }


@pytest.mark.kube_api
def test_failed_delegate_posts_add_failed_naming_the_network(world: World, api: K8sServer, netns: str) -> None:
    """net1's plugin fails: no AddedInterface (everything was rolled back), one Warning AddFailed naming test/mp-net1 and the error."""
    add_pod(api)
    world.spies.fail("mp-spy2", "ADD", 11, "mp-no-more-addresses")
    world.fails("ADD", kube_conf(world, api), netns=netns, args=POD_ARGS)
    (event,) = api.events("test")
    assert (event["type"], event["reason"]) == ("Warning", "AddFailed")
    assert 'error adding container to network "test/mp-net1"' in event["message"]
    assert "mp-no-more-addresses" in event["message"]


@pytest.mark.kube_api
def test_events_false_posts_nothing_on_success(world: World, api: K8sServer, netns: str) -> None:
    """`"events": false`: a successful ADD posts no Event."""
    add_pod(api)
    world.run("ADD", kube_conf(world, api, events=False), netns=netns, args=POD_ARGS)
    assert api.events() == [] and api.requests_for("POST") == []


@pytest.mark.kube_api
def test_event_post_failures_do_not_fail_the_add(world: World, api: K8sServer, netns: str) -> None:
    """Every Event POST answered 500: ADD still succeeds with its result; the first failure stops further posts."""
    add_pod(api)
    api.fail_next(10, 500, method="POST")
    out = world.run("ADD", kube_conf(world, api), netns=netns, args=POD_ARGS)
    assert out is not None and json.loads(out)["ips"][0]["address"] == "10.88.0.5/16"
    assert api.events() == [] and len(api.requests_for("POST")) == 1
    assert NETWORK_STATUS_ANNOTATION in api.pod("test", "mp-pod")["metadata"]["annotations"]
    assert "cannot post the AddedInterface event (Kubernetes API error 500" in log_of(world).read_text()


# ---- RBAC: the manifests grant exactly what the client uses -------------------------------------


def _needed(requests: list[Request]) -> dict[tuple[str, str], set[str]]:
    """(API group, resource[/subresource]) → verbs, as the API server's authorizer sees each request."""
    needed: dict[tuple[str, str], set[str]] = {}
    for r in requests:
        parts = r.path.strip("/").split("/")
        group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
        if rest[0] == "namespaces":  # namespaced; otherwise a collection of every namespace (the caches)
            rest = rest[2:]
        resource, name, sub = rest[0], rest[1] if len(rest) > 1 else "", rest[2] if len(rest) > 2 else ""
        verb = {"GET": "get" if name else "list", "PUT": "update", "POST": "create", "PATCH": "patch"}[r.method]
        if "watch=true" in r.query:
            verb = "watch"
        needed.setdefault((group, f"{resource}/{sub}" if sub else resource), set()).add(verb)
    return needed


def _granted(rbac: Path) -> dict[tuple[str, str], set[str]]:
    role = next(d for d in yaml.safe_load_all(rbac.read_text()) if d and d.get("kind") == "ClusterRole")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def _run_daemon_caches(api: K8sServer, kubeconfig: Path) -> None:
    """The node daemon's caches (same service account as the plugin): list, then watch, pods and NADs; stopped."""
    from multiplane.daemon.caches import Caches
    from multiplane.k8s.client import KubeClient, load_kubeconfig

    path = api.kubeconfig(kubeconfig)
    caches = Caches(lambda: KubeClient(load_kubeconfig(path), timeout=2.0), "mp-node")
    caches.start()
    try:
        assert caches.wait_synced(10.0)
        deadline = time.monotonic() + 10.0
        while api.watches() < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert api.watches() == 2
    finally:
        assert caches.stop(timeout=5.0)


# Not kube_api: through a daemon with a cluster, the calls' reads come from its caches, so they use fewer verbs
# than granted; the caches' own list + watch are covered by _run_daemon_caches.
@pytest.mark.parametrize(
    "rbac", [PACKAGING / "rbac.yaml", PACKAGING / "openshift" / "rbac.yaml"], ids=["k8s", "openshift"]
)
def test_rbac_grants_exactly_what_add_and_del_use(world: World, api: K8sServer, netns: str, rbac: Path) -> None:
    """A full ADD (pod, NADs, network-status, Events), a failed ADD (NoNetworkFound), DEL, and the node daemon's
    caches (list + watch of pods and NADs): every verb used is granted, nothing more."""
    add_pod(api)
    conf = kube_conf(world, api)
    world.run("ADD", conf, netns=netns, args=POD_ARGS)
    world.run("DEL", conf, netns=netns, args=POD_ARGS)
    world.run("DEL", conf, netns=netns, args=POD_ARGS, cid="mp-c9")  # no cache: rebuilt from the API
    api.update_pod("test", "mp-pod", annotations={NETWORKS_ANNOTATION: "mp-gone"})
    world.fails("ADD", conf, netns=netns, args=POD_ARGS, cid="mp-c2")
    _run_daemon_caches(api, world.root / "mp-kc-daemon")
    assert {r.status for r in api.requests} <= {200, 201, 404}, api.requests
    needed = _needed(api.requests)
    assert ("", "events") in needed and ("", "pods/status") in needed  # the run covered what it claims
    assert needed[("", "pods")] >= {"list", "watch"}  # and the caches' requests
    assert needed == _granted(rbac)


# ---- in-process built-ins: their messages, debug lines and bugs go to logFile -------------------


@pytest.fixture
def topo(tmp_path: Path) -> Iterator[Topology]:
    t = Topology(tmp_path / "mp-topo", pods=1)
    try:
        yield t
    finally:
        t.close()


def macvlan_nad(world: World, topo: Topology) -> None:
    """NAD mp-mv: macvlan on the topology's master; host-local with a gateway outside its subnet (a warning)."""
    world.add_nad(
        "mp-mv",
        {
            "cniVersion": "1.0.0",
            "name": "mp-mv",
            "type": "macvlan",
            "master": topo.master,
            "ipam": {
                "type": "host-local",
                "subnet": "10.66.0.0/24",
                "rangeStart": "10.66.0.50",
                "rangeEnd": "10.66.0.60",
                "gateway": "10.67.0.1",
                "dataDir": str(world.root / "mp-ipam"),
            },
        },
    )


def test_in_process_macvlan_and_host_local_log_into_the_meta_log(world: FrontDoorWorld, topo: Topology) -> None:
    """ADD at debug with an in-process macvlan + host-local: host-local's warning and both in-process calls are in logFile, not on stderr."""
    macvlan_nad(world, topo)
    netns = topo.netns_path(topo.pods[0])
    conf = {**world.meta, "logFile": str(log_of(world)), "logLevel": "debug"}
    world.run("ADD", conf, netns=netns, args=f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-mv")
    text = log_of(world).read_text()
    assert "[warning] host-local: range set 0: gateway 10.67.0.1 is outside subnet 10.66.0.0/24" in text
    assert re.search(r"delegate mp-mv \(net1\): macvlan ADD in-process: ok after \d+\.\d ms: result \{", text)
    assert "plan [1] test/mp-mv (CNI name 'mp-mv', cniVersion 1.0.0): type macvlan, ifname net1" in text
    assert world.last is not None and world.last.stderr == ""
    world.run("DEL", conf, netns=netns, args=POD_ARGS)
    assert re.search(r"delegate mp-mv \(net1\): macvlan DEL in-process: ok after", log_of(world).read_text())


# Run before multiplane.cli.main, in the one-shot process or in the daemon: host-local's allocator has a bug.
_BROKEN_HOST_LOCAL = """\
from multiplane.plugins import host_local

def broken(*args, **kwargs):
    raise AttributeError("mp-injected")

host_local.allocate = broken
"""


def test_a_bug_in_in_process_host_local_during_add_is_logged_and_rolled_back(
    world: FrontDoorWorld, topo: Topology, via_front_door: FrontDoor
) -> None:
    """host-local raising a Python error inside macvlan's ADD: traceback in logFile, code 999 on stdout, no net1 left."""
    macvlan_nad(world, topo)
    pod = topo.pods[0]
    conf = {**world.meta, "logFile": str(log_of(world))}
    with via_front_door.own_daemon(inject=_BROKEN_HOST_LOCAL) as env:
        if via_front_door.is_daemon:
            world.front_env = env
        else:
            main = "import sys\nfrom multiplane.cli import main\nsys.exit(main(['multiplane']))\n"
            world.program = [sys.executable, "-c", _BROKEN_HOST_LOCAL + main]
        inv = world.invoke("ADD", conf, netns=topo.netns_path(pod), args=f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-mv")
    assert inv.returncode == 1
    answer = json.loads(inv.stdout)
    assert answer["code"] == 999 and "internal error: AttributeError: mp-injected" in answer["msg"]
    text = log_of(world).read_text()
    assert "[panic] multiplane-host-local ADD (in-process): internal error:\nTraceback (most recent call last):" in text
    assert "AttributeError: mp-injected" in text
    assert [link["ifname"] for link in topo.links(pod) if link["ifname"] != "lo"] == []
