"""The meta-plugin's ADD end to end through `skel.dispatch`, with spy delegates and a real (empty) pod netns.

ADD checks in CNI_NETNS that no delegate's interface name is taken, so these tests need a
network namespace (root). The delegates are the /bin/sh spies of tests/unit/test_meta_runner.py.
Vector ids: cni-spec.md §9.5 (T76–T78), multus.md §10 (cases 44, 46, 49, 51, 53, 55).

The calls are made as a runtime makes them, by the `multiplane` program (FrontDoorWorld), and
every test runs through both front doors (the one-shot process and the node daemon; see
tests/integration/conftest.py) with the same assertions.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from multiplane.plugins.meta.selection import NETWORK_STATUS_ANNOTATION, NETWORKS_ANNOTATION
from tests import cni
from tests.daemon_harness import FrontDoor
from tests.integration.meta_helpers import FrontDoorWorld
from tests.k8s_server import K8sServer
from tests.topology import scratch_netns
from tests.unit.test_meta_runner import Spies, World, spy_result

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("via_front_door")]

POD_ARGS = "K8S_POD_NAMESPACE=test;K8S_POD_NAME=mp-pod;K8S_POD_INFRA_CONTAINER_ID=mp-c1"
DELEGATE_ARGS = (
    "IgnoreUnknown=true;K8S_POD_NAMESPACE=test;K8S_POD_NAME=mp-pod;K8S_POD_INFRA_CONTAINER_ID=mp-c1;K8S_POD_UID="
)


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh, empty named network namespace; removed afterwards."""
    with scratch_netns("mp-meta-") as name:
        yield name


@pytest.fixture
def world(tmp_path: Path) -> World:
    return FrontDoorWorld(tmp_path, Spies(tmp_path))


@pytest.fixture
def api(via_front_door: FrontDoor, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[K8sServer]:
    """The in-repo API server; under the daemon-cluster front door, the calls go to a daemon watching it."""
    with K8sServer() as server, via_front_door.cluster_daemon(server.kubeconfig(tmp_path / "mp-kc-daemon")) as env:
        monkeypatch.setattr(cni, "FRONT_DOOR_ENV", env)
        yield server


def path_of(netns: str) -> str:
    return f"/var/run/netns/{netns}"


def add(world: World, netns: str, args: str, conf: dict[str, Any] | None = None) -> dict[str, Any]:
    out = world.run("ADD", conf, netns=path_of(netns), args=args)
    assert out is not None
    result: dict[str, Any] = json.loads(out)
    return result


def status_file(world: World, cid: str = "mp-c1") -> Path:
    return world.cni_dir / "status" / f"{cid}.json"


# ---- a successful ADD (T76, cases 44, 51, 55) -------------------------------------------------------


def test_t76_add_runs_cluster_then_selected_network(world: World, netns: str) -> None:
    """T76: spy1 (cluster) runs on eth0, then spy2 (NAD mp-net1) on net1, both in CNI_NETNS with Multus-ordered CNI_ARGS."""
    add(world, netns, f"{POD_ARGS};K8S_POD_UID=mp-uid;BLAHBLAH=foo=bar;MULTIPLANE_NETWORKS=mp-net1")
    calls = world.spies.calls()
    assert [(c.name, c.command, c.ifname) for c in calls] == [("mp-spy1", "ADD", "eth0"), ("mp-spy2", "ADD", "net1")]
    for c in calls:
        assert c.env["CNI_ARGS"] == (
            "IgnoreUnknown=true;K8S_POD_NAMESPACE=test;K8S_POD_NAME=mp-pod;"
            "K8S_POD_INFRA_CONTAINER_ID=mp-c1;K8S_POD_UID=mp-uid;BLAHBLAH=foo=bar"
        )
        assert (c.env["CNI_NETNS"], c.env["CNI_CONTAINERID"]) == (path_of(netns), "mp-c1")
        assert c.env["CNI_PATH"] == f"{world.spies.bin}:/mp-cni-path"
    assert (calls[0].stdin["name"], calls[1].stdin["name"]) == ("mp-cluster", "mp-net1")


def test_t76_result_is_the_cluster_networks_in_the_meta_version(world: World, netns: str) -> None:
    """T76: the ADD result is spy1's 0.4.0 result converted to the meta's 1.0.0 (no `version` keys); spy2's is not merged in."""
    got = add(world, netns, f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-net1")
    assert got == {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "c2:11:22:33:44:66", "sandbox": path_of(netns)}],
        "ips": [{"interface": 0, "address": "10.88.0.5/16", "gateway": "10.88.0.1"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.88.0.1"}],
    }


def test_add_writes_cache_with_results_and_the_status_file(world: World, netns: str) -> None:
    """After ADD the cache holds both delegates with their results, and cniDir/status/<cid>.json holds the network-status list."""
    add(world, netns, f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-net1")
    record = json.loads(world.cache_path().read_text())
    assert record["kind"] == "multiplaneCacheV1"
    assert (record["containerID"], record["netns"], record["ifname"]) == ("mp-c1", path_of(netns), "eth0")
    assert [(d["name"], d["ifname"], d["master"]) for d in record["delegates"]] == [
        ("mp-cluster", "eth0", True),
        ("test/mp-net1", "net1", False),
    ]
    assert [d["result"]["ips"][0]["address"] for d in record["delegates"]] == ["10.88.0.5/16", "10.99.0.7/24"]
    assert [d["cniArgs"] for d in record["delegates"]] == [DELEGATE_ARGS] * 2
    assert json.loads(status_file(world).read_text()) == [
        {
            "name": "mp-cluster",
            "interface": "eth0",
            "ips": ["10.88.0.5"],
            "mac": "c2:11:22:33:44:66",
            "default": True,
            "dns": {},
            "gateway": ["10.88.0.1"],
        },
        {"name": "test/mp-net1", "interface": "net1", "ips": ["10.99.0.7"], "mac": "c2:11:22:33:44:66", "dns": {}},
    ]


def test_pod_without_selection_gets_only_the_cluster_network(world: World, netns: str) -> None:
    """A pod that selects nothing gets just eth0 from the cluster network, and a one-entry status."""
    add(world, netns, POD_ARGS)
    assert world.spies.seen() == [("mp-spy1", "ADD", "eth0")]
    assert [e["name"] for e in json.loads(status_file(world).read_text())] == ["mp-cluster"]


def test_case51_two_selections_run_in_order(world: World, netns: str) -> None:
    """Case 51: `mp-net1,mp-net2` runs eth0, then net1, then net2."""
    world.spies.add("mp-spy3", {"cniVersion": "1.0.0", "ips": [{"address": "10.99.1.7/24"}]})
    world.add_nad("mp-net2", {"cniVersion": "1.0.0", "name": "mp-net2", "type": "mp-spy3"})
    add(world, netns, f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-net1,mp-net2")
    assert world.spies.seen() == [("mp-spy1", "ADD", "eth0"), ("mp-spy2", "ADD", "net1"), ("mp-spy3", "ADD", "net2")]


def test_case49_capability_args_per_selection_and_runtime_args_to_cluster_only(world: World, netns: str) -> None:
    """Case 49 plus our difference: net1 gets exactly its selection's values; the runtime's hostPorts reach only the cluster network."""
    world.add_nad(
        "mp-net1",
        {
            "cniVersion": "1.0.0",
            "name": "mp-net1",
            "type": "mp-spy2",
            "capabilities": {"mac": True, "ips": True, "bandwidth": True, "portMappings": True},
            "args": {"cni": {"args0": "val0"}},
        },
    )
    (world.conf_dir / "10-cluster.conf").write_text(
        json.dumps(
            {"cniVersion": "0.4.0", "name": "mp-cluster", "type": "mp-spy1", "capabilities": {"portMappings": True}}
        )
    )
    world.spies.add("mp-spy2", spy_result("10.99.0.50/24"))  # honours the requested address
    host_ports = [{"hostPort": 30080, "containerPort": 80, "protocol": "tcp"}]
    conf = {**world.meta, "capabilities": {"portMappings": True}, "runtimeConfig": {"portMappings": host_ports}}
    element = {
        "name": "mp-net1",
        "mac": "c2:11:22:33:44:66",
        "ips": ["10.99.0.50"],
        "bandwidth": {"ingressRate": 2048, "ingressBurst": 1600, "egressRate": 4096, "egressBurst": 1600},
        "portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 8000, "containerPort": 8001, "protocol": "udp"},
        ],
        "cni-args": {"args1": "val1"},
    }
    add(world, netns, f"{POD_ARGS};MULTIPLANE_NETWORKS={json.dumps([element])}", conf)
    cluster, net1 = world.spies.calls()
    assert cluster.stdin["runtimeConfig"] == {"portMappings": host_ports}
    assert net1.stdin["runtimeConfig"] == {
        "ips": ["10.99.0.50"],
        "mac": "c2:11:22:33:44:66",
        "bandwidth": element["bandwidth"],
        "portMappings": element["portMappings"],
    }
    assert net1.stdin["args"] == {"cni": {"args0": "val0", "args1": "val1"}}
    assert net1.env["CNI_ARGS"] == f"{DELEGATE_ARGS};IP=10.99.0.50;MAC=c2:11:22:33:44:66"
    assert cluster.env["CNI_ARGS"] == DELEGATE_ARGS


def test_chained_meta_merges_its_prev_result(world: World, netns: str) -> None:
    """A meta-plugin given prevResult returns prev's interfaces first and the cluster network's after, re-indexed."""
    prev = {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "mp-host0"}],
        "ips": [{"address": "10.5.0.2/24", "interface": 0}],
    }
    got = add(world, netns, POD_ARGS, {**world.meta, "prevResult": prev})
    assert [i["name"] for i in got["interfaces"]] == ["mp-host0", "eth0"]
    assert [(ip["address"], ip["interface"]) for ip in got["ips"]] == [("10.5.0.2/24", 0), ("10.88.0.5/16", 1)]


# ---- ADD refused before anything runs -------------------------------------------------------------------


def test_taken_interface_name_fails_add_before_any_delegate(world: World, netns: str) -> None:
    """If net1 already exists in the pod netns, ADD fails with code 4 naming it; no delegate runs and no cache is left."""
    subprocess.run(["ip", "-n", netns, "link", "add", "net1", "type", "veth", "peer", "name", "mp-peer1"], check=True)
    err = world.fails("ADD", netns=path_of(netns), args=f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-net1")
    assert err.error_code == 4
    assert err.msg == f'interface "net1" for network "test/mp-net1" already exists in netns "{path_of(netns)}"'
    assert world.spies.calls() == [] and not world.cache_path().exists()


# ---- ADD failure and rollback (T77, case 46) ---------------------------------------------------------


def test_case46_failed_delegate_rolls_back_everything_in_reverse(world: World, netns: str) -> None:
    """Case 46/T77: spy2 failing ADD gives DEL to spy2 then spy1; the error names the network and keeps spy2's code 11."""
    world.spies.fail("mp-spy2", "ADD", 11, "expected plugin failure", "mp detail")
    err = world.fails("ADD", netns=path_of(netns), args=f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-net1")
    assert err.error_code == 11
    assert (
        err.msg
        == '[test/mp-pod:test/mp-net1]: error adding container to network "test/mp-net1": expected plugin failure'
    )
    assert err.details == "mp detail"
    calls = world.spies.calls()
    assert [(c.name, c.command, c.ifname) for c in calls] == [
        ("mp-spy1", "ADD", "eth0"),
        ("mp-spy2", "ADD", "net1"),
        ("mp-spy2", "DEL", "net1"),
        ("mp-spy1", "DEL", "eth0"),
    ]
    assert "prevResult" not in calls[2].stdin
    assert calls[3].stdin["prevResult"]["ips"][0]["address"] == "10.88.0.5/16"


def test_failed_add_drops_the_cache_and_writes_no_status(world: World, netns: str) -> None:
    """Unlike Multus (which leaves the cache for the runtime's DEL), a fully rolled-back ADD leaves no cache and no status file."""
    world.spies.fail("mp-spy2", "ADD")
    world.fails("ADD", netns=path_of(netns), args=f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-net1")
    assert not world.cache_path().exists()
    assert not status_file(world).exists()


def test_failed_rollback_keeps_the_cache_and_the_original_error(world: World, netns: str) -> None:
    """If a rollback DEL fails too, the ADD error is still the original one and the cache stays for the runtime's DEL."""
    world.spies.fail("mp-spy2", "ADD", 11, "expected plugin failure")
    world.spies.fail("mp-spy1", "DEL", 5, "rollback trouble")
    err = world.fails("ADD", netns=path_of(netns), args=f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-net1")
    assert err.error_code == 11 and err.msg.endswith("expected plugin failure")
    assert world.cache_path().exists()


def test_failed_delegates_own_del_failing_still_drops_the_cache(world: World, netns: str) -> None:
    """The failed delegate's own rollback DEL may fail for the same reason its ADD did: that alone does not keep the cache."""
    world.spies.fail("mp-spy2", "ADD", 11, "expected plugin failure")
    world.spies.fail("mp-spy2", "DEL", 11, "still broken")
    err = world.fails("ADD", netns=path_of(netns), args=f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-net1")
    assert err.msg.endswith("expected plugin failure")
    assert ("mp-spy1", "DEL", "eth0") in world.spies.seen()
    assert not world.cache_path().exists()


def test_cluster_network_failure_is_named_too(world: World, netns: str) -> None:
    """A failing cluster network is reported with its own name and code; only it gets the rollback DEL."""
    world.spies.fail("mp-spy1", "ADD", 7, "bad master")
    err = world.fails("ADD", netns=path_of(netns), args=f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-net1")
    assert err.error_code == 7
    assert err.msg == '[test/mp-pod:mp-cluster]: error adding container to network "mp-cluster": bad master'
    assert world.spies.seen() == [("mp-spy1", "ADD", "eth0"), ("mp-spy1", "DEL", "eth0")]


def test_status_file_failure_after_all_delegates_rolls_back(world: World, netns: str) -> None:
    """If the network-status file cannot be written after every delegate succeeded, ADD fails and undoes them all in reverse."""
    world.cni_dir.mkdir()
    (world.cni_dir / "status").write_text("a file where the status directory should be")
    err = world.fails("ADD", netns=path_of(netns), args=f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-net1")
    assert err.msg.startswith(f"cannot write the network-status file in {world.cni_dir / 'status'}")
    assert world.spies.seen() == [
        ("mp-spy1", "ADD", "eth0"),
        ("mp-spy2", "ADD", "net1"),
        ("mp-spy2", "DEL", "net1"),
        ("mp-spy1", "DEL", "eth0"),
    ]


# ---- DEL and CHECK after a real ADD (case 53, T61) ----------------------------------------------------


def test_case53_del_from_cache_after_the_nad_is_deleted(world: World, netns: str) -> None:
    """Case 53: after ADD, deleting the NAD file does not matter: DEL calls spy2 then spy1 from the cache, with their results."""
    add(world, netns, f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-net1")
    (world.nad_dir / "mp-net1.yaml").unlink()
    world.spies.reset()
    assert world.run("DEL", netns=path_of(netns), args=f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-net1") is None
    calls = world.spies.calls()
    assert [(c.name, c.command, c.ifname) for c in calls] == [("mp-spy2", "DEL", "net1"), ("mp-spy1", "DEL", "eth0")]
    assert [c.stdin["prevResult"]["ips"][0]["address"] for c in calls] == ["10.99.0.7/24", "10.88.0.5/16"]
    assert all(c.env["CNI_ARGS"] == DELEGATE_ARGS for c in calls)
    assert not world.cache_path().exists() and not status_file(world).exists()


def test_t61_check_after_add_uses_each_cached_result(world: World, netns: str) -> None:
    """CHECK after ADD runs spy1 (eth0) and spy2 (net1), each with its own ADD result as prevResult."""
    add(world, netns, f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-net1")
    world.spies.reset()
    assert world.run("CHECK", netns=path_of(netns), args=POD_ARGS) is None
    calls = world.spies.calls()
    assert [(c.name, c.command, c.ifname) for c in calls] == [
        ("mp-spy1", "CHECK", "eth0"),
        ("mp-spy2", "CHECK", "net1"),
    ]
    assert [c.stdin["prevResult"]["ips"][0]["address"] for c in calls] == ["10.88.0.5/16", "10.99.0.7/24"]


# ---- the built-in host-local as a NAD (IP= for one requested IP) ----------------------------------------


def test_builtin_host_local_nad_gets_the_one_requested_ip(world: World, netns: str, tmp_path: Path) -> None:
    """A host-local NAD (run in-process) honours one requested IP via `IP=`; its zero-interface result still has a status entry; DEL frees it."""
    data = tmp_path / "mp-hl-data"
    world.add_nad(
        "mp-hl",
        {
            "cniVersion": "1.0.0",
            "name": "mp-hl",
            "type": "host-local",
            "ipam": {"subnet": "10.77.0.0/24", "dataDir": str(data)},
        },
    )
    add(world, netns, POD_ARGS + ';MULTIPLANE_NETWORKS=[{"name":"mp-hl","ips":["10.77.0.50"]}]')
    assert (data / "mp-hl" / "10.77.0.50").read_text().split() == ["mp-c1", "net1"]
    assert not (world.spies.bin / "host-local").exists()
    entries = json.loads(status_file(world).read_text())
    assert entries[1] == {"name": "test/mp-hl", "ips": ["10.77.0.50"], "dns": {}}
    world.run("DEL", netns=path_of(netns), args=POD_ARGS)
    assert not (data / "mp-hl" / "10.77.0.50").exists()


# ---- with the Kubernetes API ------------------------------------------------------------------------------


@pytest.mark.kube_api
def test_add_writes_network_status_to_the_pod_and_del_works_after_pod_and_nad_are_gone(
    world: World, netns: str, tmp_path: Path, api: K8sServer
) -> None:
    """With an API server: ADD reads the pod's annotation and NAD, PATCHes network-status equal to the status file; DEL works after both are deleted."""
    api.add_pod("test", "mp-pod", annotations={NETWORKS_ANNOTATION: "mp-net1"}, uid="mp-uid-7")
    api.add_nad("test", "mp-net1", {"cniVersion": "1.0.0", "name": "mp-net1", "type": "mp-spy2"})
    conf = {**world.meta, "kubeconfig": api.kubeconfig(tmp_path / "mp-kc")}
    add(world, netns, POD_ARGS, conf)
    written = api.pod("test", "mp-pod")["metadata"]["annotations"][NETWORK_STATUS_ANNOTATION]
    assert written == status_file(world).read_text()
    assert [e["name"] for e in json.loads(written)] == ["mp-cluster", "test/mp-net1"]
    api.delete_pod("test", "mp-pod")
    api.delete_nad("test", "mp-net1")
    world.spies.reset()
    assert world.run("DEL", conf, netns=path_of(netns), args=POD_ARGS) is None
    assert world.spies.seen() == [("mp-spy2", "DEL", "net1"), ("mp-spy1", "DEL", "eth0")]


# ---- issue 11: static pods, requested IPs, the status file, hostile pod references ------------------------


@pytest.mark.kube_api
def test_static_pod_with_a_mirror_uid_is_attached(world: World, netns: str, tmp_path: Path, api: K8sServer) -> None:
    """Issue 11 #4: a static pod's API object is its mirror (another UID): ADD goes on and network-status is written."""
    mirror = {
        "kubernetes.io/config.source": "file",
        "kubernetes.io/config.mirror": "abc",
        NETWORKS_ANNOTATION: "mp-net1",
    }
    api.add_pod("test", "mp-pod", annotations=mirror, uid="mp-mirror-uid")
    api.add_nad("test", "mp-net1", {"cniVersion": "1.0.0", "name": "mp-net1", "type": "mp-spy2"})
    conf = {**world.meta, "kubeconfig": api.kubeconfig(tmp_path / "mp-kc")}
    add(world, netns, f"{POD_ARGS};K8S_POD_UID=mp-static-uid", conf)
    written = api.pod("test", "mp-pod")["metadata"]["annotations"][NETWORK_STATUS_ANNOTATION]
    assert [e["name"] for e in json.loads(written)] == ["mp-cluster", "test/mp-net1"]
    assert all("K8S_POD_UID=mp-static-uid" in c.env["CNI_ARGS"] for c in world.spies.calls())


@pytest.mark.kube_api
def test_uid_mismatch_of_an_api_pod_still_fails(world: World, netns: str, tmp_path: Path, api: K8sServer) -> None:
    """Only static pods are exempt: `config.source: api` with another UID is still a replaced pod (ADD fails)."""
    api.add_pod("test", "mp-pod", annotations={"kubernetes.io/config.source": "api"}, uid="mp-other")
    conf = {**world.meta, "kubeconfig": api.kubeconfig(tmp_path / "mp-kc")}
    err = world.fails("ADD", conf, netns=path_of(netns), args=f"{POD_ARGS};K8S_POD_UID=mp-static-uid")
    assert 'expected pod UID "mp-static-uid" but got "mp-other"' in err.msg
    assert world.spies.calls() == []


def test_requested_ip_ignored_by_the_network_fails_and_rolls_back(world: World, netns: str) -> None:
    """Issue 11 #9: the pod asked for 10.99.0.50; the network assigned 10.99.0.7: ADD fails (7) saying so, all undone."""
    err = world.fails(
        "ADD", netns=path_of(netns), args=POD_ARGS + ';MULTIPLANE_NETWORKS=[{"name":"mp-net1","ips":["10.99.0.50/24"]}]'
    )
    assert err.error_code == 7
    assert "asked for 10.99.0.50/24 but the network assigned 10.99.0.7/24" in err.msg
    assert world.spies.seen() == [
        ("mp-spy1", "ADD", "eth0"),
        ("mp-spy2", "ADD", "net1"),
        ("mp-spy2", "DEL", "net1"),
        ("mp-spy1", "DEL", "eth0"),
    ]
    assert not world.cache_path().exists()


def test_status_file_is_0600_and_replaces_a_planted_link(world: World, netns: str, tmp_path: Path) -> None:
    """Issue 11 #7: under umask 000 the status file is 0600, and a symlink at its path is replaced, not written through."""
    import os
    import stat

    victim = tmp_path / "mp-victim"
    victim.write_text("precious")
    (world.cni_dir / "status").mkdir(parents=True)
    status_file(world).symlink_to(victim)
    old = os.umask(0)
    try:
        add(world, netns, f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-net1")
    finally:
        os.umask(old)
    assert victim.read_text() == "precious"
    assert not status_file(world).is_symlink()
    assert stat.S_IMODE(status_file(world).stat().st_mode) == 0o600
    assert [e["name"] for e in json.loads(status_file(world).read_text())] == ["mp-cluster", "test/mp-net1"]


def test_linked_status_directory_is_refused_and_rolled_back(world: World, netns: str, tmp_path: Path) -> None:
    """A status directory planted as a link is not written into: ADD fails and undoes its delegates."""
    elsewhere = tmp_path / "mp-elsewhere"
    elsewhere.mkdir()
    world.cni_dir.mkdir()
    (world.cni_dir / "status").symlink_to(elsewhere)
    err = world.fails("ADD", netns=path_of(netns), args=f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-net1")
    assert "network-status file" in err.msg
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize(
    "args", ["K8S_POD_NAMESPACE=../x;K8S_POD_NAME=mp-pod", "K8S_POD_NAMESPACE=test;K8S_POD_NAME=../../mp-pod"]
)
def test_pod_reference_cannot_escape_the_pod_directory(world: World, netns: str, args: str) -> None:
    """Issue 11 #7: K8S_POD_NAMESPACE=../x (or a name with `/`) never reads a manifest outside localPodDir: code 4."""
    outside = world.pod_dir.parent / "x"
    outside.mkdir()
    (outside / "mp-pod.yaml").write_text(f"metadata:\n  annotations:\n    {NETWORKS_ANNOTATION}: mp-net1\n")
    err = world.fails("ADD", netns=path_of(netns), args=args)
    assert err.error_code == 4 and "K8S_POD_" in err.msg
    assert world.spies.calls() == []
