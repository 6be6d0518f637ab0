"""The meta-plugin (`multiplane`) under a real runtime: Debian's libcni driving it in real namespaces.

Each test is one node: `00-multiplane.conflist` and the cluster network (the reference
`bridge` + `host-local`) in a private NETCONFPATH, NADs and pod manifests in local dirs
(or the in-repo Kubernetes API server), and `cnidriver add|check|del` as the runtime.
Assertions are on the kernel (links, kinds, addresses, routes, traffic) and on disk
(host-local reservations, the delegate cache, the network-status file).

Every test runs through both front doors (the one-shot process and the node daemon; see
tests/integration/conftest.py) with the same assertions: the driver's environment carries
the front door's variables, and libcni hands them to the `multiplane` program it execs.
"""

from __future__ import annotations

import json
import shutil
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import cni
from tests.cni import BIN_DIR, normalise
from tests.daemon_harness import FrontDoor
from tests.integration.meta_helpers import (
    CLUSTER_NAME,
    NETWORKS_ANNOTATION,
    REF_MACVLAN,
    STATUS_ANNOTATION,
    MetaNode,
    addrs,
    ip_files,
    kind,
    links_by_name,
    macvlan_conf,
)
from tests.topology import BINARY, Topology, ip, ip_json, ns_exec

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("via_front_door")]

APP = "mp-app"
POD = "mp-web"
LAN1, LAN2 = "10.66.0.1", "10.67.0.1"
EXTERNAL = "mp-refmacvlan"  # the reference macvlan under a type name multiplane does not run in-process


@pytest.fixture
def node(topo: Topology, cnidriver: str, tmp_path: Path) -> Iterator[MetaNode]:
    """A node whose runtime is the libcni driver in the root namespace, with `topo`'s plugin links as binDir."""
    n = MetaNode(tmp_path / "mp-node", cnidriver, topo.bin_dir)
    try:
        yield n
    finally:
        n.close()
        shutil.rmtree(n.workdir, ignore_errors=True)
        (topo.bin_dir / EXTERNAL).unlink(missing_ok=True)


def _ping(ns: str, target: str, iface: str | None = None) -> bool:
    argv = ["busybox", "ping", "-c", "1", "-W", "2", *(["-I", iface] if iface else []), target]
    for _ in range(3):  # the first echo can be lost while neighbours resolve
        if ns_exec(ns, *argv).returncode == 0:
            return True
    return False


def _ok(inv: Any, what: str) -> None:
    assert inv.ok, f"{what} failed (rc {inv.returncode}):\nstdout: {inv.stdout}\nstderr: {inv.stderr}"


def _assert_nothing_left(node: MetaNode, pod: str, *, allow_links: tuple[str, ...] = ()) -> None:
    """The pod has only loopback (and `allow_links`), no reservation, no cache/status file, no bridge port."""
    assert sorted(links_by_name(pod)) == sorted(["lo", *allow_links])
    assert ip_files(node.ipam) == []
    assert node.state_files() == []
    assert node.bridge_ports() == []


def _macvlans_on(master: str) -> set[str]:
    """Root-namespace links whose parent is this test's master (a host-side macvlan leaked by a failed ADD)."""
    return {link["ifname"] for link in ip_json("-d", "link", "show") if link.get("link") == master}


def _external_macvlan(topo: Topology) -> None:
    link = topo.bin_dir / EXTERNAL
    if not link.exists():
        link.symlink_to(REF_MACVLAN)


# --------------------------------------------------------------------------- 1. three planes


def test_cluster_builtin_and_external_networks_attach_carry_traffic_and_detach(topo: Topology, node: MetaNode) -> None:
    """A pod gets eth0 from the reference bridge, net1 from the in-process macvlan and net2 from an exec'd
    external macvlan, each carries traffic, CHECK passes, and DEL leaves nothing behind."""
    ip("-n", topo.lan, "addr", "add", f"{LAN2}/24", "dev", topo.peer)
    _external_macvlan(topo)
    node.add_nad("mp-fast", macvlan_conf("mp-fast", topo.master, "10.66.0.0/24", str(node.ipam)), APP)
    node.add_nad("mp-ext", macvlan_conf("mp-ext", topo.master, "10.67.0.0/24", str(node.ipam), EXTERNAL), APP)
    pod, cid = topo.pods[0], f"mp-ctr-{node.tag}"

    add = node.run("add", pod, cid, networks="mp-fast,mp-ext")
    _ok(add, "ADD")

    links = links_by_name(pod)
    assert sorted(links) == ["eth0", "lo", "net1", "net2"]
    assert (kind(links["eth0"]), kind(links["net1"]), kind(links["net2"])) == ("veth", "macvlan", "macvlan")
    assert links["net1"]["linkinfo"]["info_data"]["mode"] == "bridge"
    eth0, net1, net2 = addrs(links["eth0"]), addrs(links["net1"]), addrs(links["net2"])
    assert eth0 == [f"{node.cluster_net[2]}/24"]
    assert net1 == ["10.66.0.10/24"]
    assert net2 == ["10.67.0.10/24"]
    assert node.bridge_ports() != []

    # The runtime sees the cluster network's result, exactly as cached for eth0.
    result = add.json
    assert result["cniVersion"] == "1.0.0"
    assert [i["address"] for i in result["ips"]] == eth0
    names = [i["name"] for i in result["interfaces"]]
    assert "eth0" in names and node.bridge in names and "net1" not in names and "net2" not in names
    cache = json.loads(node.cache_file(cid).read_text())
    assert [d["ifname"] for d in cache["delegates"]] == ["eth0", "net1", "net2"]
    assert normalise(cache["delegates"][0]["result"]) == normalise(result)

    status = json.loads(node.status_file(cid).read_text())
    assert [(e["name"], e["interface"], e["ips"]) for e in status] == [
        (CLUSTER_NAME, "eth0", [eth0[0].split("/")[0]]),
        (f"{APP}/mp-fast", "net1", ["10.66.0.10"]),
        (f"{APP}/mp-ext", "net2", ["10.67.0.10"]),
    ]
    assert [e.get("default", False) for e in status] == [True, False, False]
    assert [e["mac"] for e in status] == [links[i]["address"] for i in ("eth0", "net1", "net2")]
    assert status[0]["gateway"] == [node.cluster_gw]

    assert _ping(pod, node.cluster_gw, "eth0")
    assert _ping(pod, LAN1, "net1")
    assert _ping(pod, LAN2, "net2")
    assert _ping(topo.lan, "10.66.0.10")
    assert _ping(topo.lan, "10.67.0.10")

    _ok(node.run("check", pod, cid, networks="mp-fast,mp-ext"), "CHECK")

    _ok(node.run("del", pod, cid, networks="mp-fast,mp-ext"), "DEL")
    _assert_nothing_left(node, pod)
    assert list((node.cache / "results").glob("*")) == []  # libcni's own result cache


def test_check_names_a_vanished_attachment_and_del_still_cleans_up(topo: Topology, node: MetaNode) -> None:
    """When net2 and then net1 vanish from the pod, CHECK fails naming that network, and DEL still succeeds and
    releases every address."""
    ip("-n", topo.lan, "addr", "add", f"{LAN2}/24", "dev", topo.peer)
    _external_macvlan(topo)
    node.add_nad("mp-fast", macvlan_conf("mp-fast", topo.master, "10.66.0.0/24", str(node.ipam)), APP)
    node.add_nad("mp-ext", macvlan_conf("mp-ext", topo.master, "10.67.0.0/24", str(node.ipam), EXTERNAL), APP)
    pod, cid = topo.pods[0], f"mp-ctr-{node.tag}"
    _ok(node.run("add", pod, cid, networks="mp-fast,mp-ext"), "ADD")

    ip("-n", pod, "link", "del", "net2")
    check = node.run("check", pod, cid, networks="mp-fast,mp-ext")
    assert not check.ok
    assert f'network "{APP}/mp-ext"' in check.stderr
    ip("-n", pod, "link", "del", "net1")
    check = node.run("check", pod, cid, networks="mp-fast,mp-ext")
    assert not check.ok
    assert f'network "{APP}/mp-fast"' in check.stderr

    _ok(node.run("del", pod, cid, networks="mp-fast,mp-ext"), "DEL")
    _assert_nothing_left(node, pod)


# --------------------------------------------------------------------------- 2. the seed scenario

SEED_NAD = textwrap.dedent(
    """\
    apiVersion: k8s.cni.cncf.io/v1
    kind: NetworkAttachmentDefinition
    metadata:
      name: macvlan-conf
    spec:
      config: '{ "cniVersion": "0.3.0", "type": "macvlan", "master": "ens33", "mode": "bridge",
                 "ipam": { "type": "host-local", "subnet": "192.168.174.0/24",
                           "rangeStart": "192.168.174.200", "rangeEnd": "192.168.174.216",
                           "routes": [ { "dst": "0.0.0.0/0" } ], "gateway": "192.168.174.2" } }'
    """
)


def _overlaid_var_lib(upper: Path, work: Path) -> list[str]:
    """A command prefix: a private mount namespace whose /var/lib is an overlay writing into `upper`."""
    overlay = f"lowerdir=/var/lib,upperdir={upper},workdir={work}"
    mount = f'mount -t overlay overlay -o {overlay} /var/lib && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, "sh"]


@pytest.fixture
def seed_node(cnidriver: str, tmp_path: Path, via_front_door: FrontDoor) -> Iterator[tuple[MetaNode, str, str, Path]]:
    """A private node namespace with an `ens33` NIC whose LAN peer holds 192.168.174.2, and a pod namespace.

    The driver runs inside the node namespace (as a runtime on a real node does) and in a private mount
    namespace whose /var/lib is an overlay: the seed NAD has no dataDir, so host-local writes
    /var/lib/cni/networks, which must land in our upper dir and not on the host. Under the daemon front
    door the daemon is the node's: it runs in the node namespace with that overlay (the driver gets an
    overlay of its own, so nothing of it reaches the host either).
    """
    t = uuid.uuid4().hex[:6]
    node_ns, lan_ns, pod_ns = f"mp-node{t}", f"mp-seedlan{t}", f"mp-seedpod{t}"
    made: list[str] = []
    names = ("mp-bin", "mp-varlib", "mp-varlib-work", "mp-node", "mp-drvlib", "mp-drvlib-work")
    dirs = [tmp_path / d for d in names]
    bin_dir, upper, work, node_dir, driver_upper, driver_work = dirs
    n: MetaNode | None = None
    try:
        for ns in (node_ns, lan_ns, pod_ns):
            ip("netns", "add", ns)
            made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", node_ns, "link", "add", "ens33", "type", "veth", "peer", "name", f"mp-s{t}")
        ip("-n", node_ns, "link", "set", f"mp-s{t}", "netns", lan_ns)
        ip("-n", node_ns, "link", "set", "ens33", "up")
        ip("-n", lan_ns, "link", "set", f"mp-s{t}", "up")
        ip("-n", lan_ns, "addr", "add", "192.168.174.2/24", "dev", f"mp-s{t}")
        for d in (bin_dir, upper, work, driver_upper, driver_work):
            d.mkdir()
        for name in ("multiplane", "multiplane-macvlan", "multiplane-host-local"):
            (bin_dir / name).symlink_to(BINARY or f"{BIN_DIR}/{name}")
        in_node = ["ip", "netns", "exec", node_ns]
        with via_front_door.own_daemon(prefix=[*in_node, *_overlaid_var_lib(upper, work)]) as env:
            driver_var_lib = (driver_upper, driver_work) if via_front_door.is_daemon else (upper, work)
            n = MetaNode(
                node_dir, cnidriver, bin_dir, prefix=[*in_node, *_overlaid_var_lib(*driver_var_lib)], netns=node_ns
            )
            n.front_env = env
            yield n, pod_ns, lan_ns, upper
            assert ip_files(driver_upper) == []  # the driver's overlay: nothing went there
    finally:
        if n is not None:
            n.close()
        for ns in reversed(made):
            ip("netns", "del", ns, check=False)
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


def test_seed_scenario_unchanged_gives_net1_on_the_lan(seed_node: tuple[MetaNode, str, str, Path]) -> None:
    """The seed's NAD and annotation must work unchanged, so this test keeps the seed's `ens33` and
    192.168.174.0/24 and confines them to its own node, LAN and pod namespaces, where the host never sees them."""
    node, pod, lan, varlib = seed_node
    (node.nads / "macvlan.yaml").write_text(SEED_NAD)
    node.add_pod("mp-seed", POD, {NETWORKS_ANNOTATION: "macvlan-conf"})
    cid = f"mp-ctr-{node.tag}"

    add = node.run("add", pod, cid, namespace="mp-seed")
    _ok(add, "ADD")

    links = links_by_name(pod)
    assert sorted(links) == ["eth0", "lo", "net1"]
    assert kind(links["net1"]) == "macvlan"
    assert addrs(links["net1"]) == ["192.168.174.200/24"]
    defaults = [r for r in ip_json("-n", pod, "-4", "route", "show", "default") if r.get("dev") == "net1"]
    assert [r.get("gateway") for r in defaults] == ["192.168.174.2"]
    status = json.loads(node.status_file(cid).read_text())
    assert status[1]["name"] == "mp-seed/macvlan-conf"
    assert status[1]["ips"] == ["192.168.174.200"]
    assert status[1]["gateway"] == ["192.168.174.2"]
    assert ip_files(varlib) == [str(varlib / "cni" / "networks" / "macvlan-conf" / "192.168.174.200")]
    assert not Path("/var/lib/cni/networks/macvlan-conf").exists()  # the host's /var/lib is untouched

    assert _ping(pod, "192.168.174.2", "net1")
    assert _ping(lan, "192.168.174.200")
    # A route without "gw" trips the reference macvlan's CHECK (real-clients.md gotcha A1); ours must pass.
    _ok(node.run("check", pod, cid, namespace="mp-seed"), "CHECK")

    _ok(node.run("del", pod, cid, namespace="mp-seed"), "DEL")
    _assert_nothing_left(node, pod)
    assert ip_files(varlib) == []


# --------------------------------------------------------------------------- 3. failure in the middle


FAILURES = {
    # the master NIC does not exist: the delegate fails before it allocates anything
    "bad-master": {},
    # a route via an off-link gateway: the delegate fails after its link and address exist
    "bad-route": {"routes": [{"dst": "10.99.0.0/16", "gw": "10.68.5.1"}]},
}


def _failing_nads(topo: Topology, node: MetaNode, failing_type: str, failure: str) -> None:
    """NAD mp-good (built-in macvlan) and NAD mp-bad of `failing_type` that fails in the way `failure` names."""
    node.add_nad("mp-good", macvlan_conf("mp-good", topo.master, "10.66.0.0/24", str(node.ipam)), APP)
    bad = macvlan_conf("mp-bad", topo.master, "10.67.0.0/24", str(node.ipam), failing_type)
    if failure == "bad-master":
        bad["master"] = f"mp-nosuch{node.tag}"
    else:
        bad["ipam"]["routes"] = FAILURES[failure]["routes"]
    node.add_nad("mp-bad", bad, APP)


@pytest.mark.parametrize("failing_type", ["macvlan", EXTERNAL], ids=["builtin", "external"])
@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_delegate_failing_in_the_middle_rolls_everything_back(
    topo: Topology, node: MetaNode, failing_type: str, failure: str
) -> None:
    """When the second selected network fails, ADD fails naming it and nothing of any of the three networks is left."""
    _external_macvlan(topo)
    _failing_nads(topo, node, failing_type, failure)
    pod, cid = topo.pods[0], f"mp-ctr-{node.tag}"
    before_root = _macvlans_on(topo.master)

    add = node.run("add", pod, cid, networks="mp-good,mp-bad")

    assert not add.ok
    assert f'error adding container to network "{APP}/mp-bad"' in add.stderr
    if failing_type == "macvlan" and failure == "bad-master":
        assert f"mp-nosuch{node.tag}" in add.stderr  # the reference only says "Link not found"
    _assert_nothing_left(node, pod)
    assert _macvlans_on(topo.master) <= before_root  # nothing of ours hangs off the master in the root netns


@pytest.mark.parametrize("failing_type", ["macvlan", EXTERNAL], ids=["builtin", "external"])
@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_runtime_del_after_a_failed_add_succeeds(
    topo: Topology, node: MetaNode, failing_type: str, failure: str
) -> None:
    """The DEL a runtime sends after a failed ADD succeeds and leaves nothing (containerd retries a failing DEL
    forever and keeps the sandbox NOTREADY)."""
    _external_macvlan(topo)
    _failing_nads(topo, node, failing_type, failure)
    pod, cid = topo.pods[0], f"mp-ctr-{node.tag}"
    assert not node.run("add", pod, cid, networks="mp-good,mp-bad").ok

    _ok(node.run("del", pod, cid, networks="mp-good,mp-bad"), "DEL after failed ADD")
    _assert_nothing_left(node, pod)


# --------------------------------------------------------------------------- 4. Kubernetes API server


@pytest.fixture
def api(via_front_door: FrontDoor, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """The in-repo Kubernetes API server over HTTPS with a bearer token; under the daemon-cluster front door,
    the calls go to a daemon watching it."""
    from tests.k8s_server import K8sServer

    server = K8sServer(tls=True, token="mp-token")
    try:
        kubeconfig = server.kubeconfig(tmp_path / "mp-kc-daemon", token="mp-token")
        with via_front_door.cluster_daemon(kubeconfig) as env:
            monkeypatch.setattr(cni, "FRONT_DOOR_ENV", env)
            yield server
    finally:
        server.stop()


def _kube_node(node: MetaNode, api: Any, topo: Topology) -> str:
    """Point the node at the API server, which serves pod mp-app/mp-web selecting NAD mp-fast; returns CNI_ARGS."""
    kubeconfig = api.kubeconfig(node.workdir / "mp-kubeconfig", token="mp-token")
    node.write_meta(kubeconfig=kubeconfig)
    api.add_nad(APP, "mp-fast", macvlan_conf("mp-fast", topo.master, "10.66.0.0/24", str(node.ipam)))
    uid = api.add_pod(APP, POD, annotations={NETWORKS_ANNOTATION: "mp-fast"})["metadata"]["uid"]
    # containerd's four keys
    return (
        f"IgnoreUnknown=1;K8S_POD_NAMESPACE={APP};K8S_POD_NAME={POD};"
        f"K8S_POD_INFRA_CONTAINER_ID=mp-ctr-{node.tag};K8S_POD_UID={uid}"
    )


@pytest.mark.kube_api
def test_del_works_from_the_cache_with_the_api_server_down(topo: Topology, node: MetaNode, api: Any) -> None:
    """ADD reads the pod and NAD from the API server and PATCHes network-status on pods/status, and DEL with the
    API server stopped still removes everything."""
    args = _kube_node(node, api, topo)
    pod, cid = topo.pods[0], f"mp-ctr-{node.tag}"

    _ok(node.run("add", pod, cid, args=args), "ADD")

    assert sorted(links_by_name(pod)) == ["eth0", "lo", "net1"]
    assert api.requests_for("PATCH", f"/pods/{POD}/status")
    stored = api.pod(APP, POD)["metadata"]["annotations"][STATUS_ANNOTATION]
    entries = json.loads(stored)
    assert [(e["name"], e["interface"], e.get("default", False)) for e in entries] == [
        (CLUSTER_NAME, "eth0", True),
        (f"{APP}/mp-fast", "net1", False),
    ]
    assert entries[1]["ips"] == ["10.66.0.10"]
    assert stored == node.status_file(cid).read_text()
    assert api.errors == []

    api.stop()
    _ok(node.run("del", pod, cid, args=args), "DEL with the API server down")
    _assert_nothing_left(node, pod)
    # containerd's second DEL finds no cache and cannot read the pod: still a success.
    second = node.run("del", pod, cid, args=args, env={"CNI_DRIVER_EMPTY_NETNS": "1"})
    _ok(second, "second DEL with the API server down")
    _assert_nothing_left(node, pod)


@pytest.mark.kube_api
def test_del_works_after_the_nad_was_deleted(topo: Topology, node: MetaNode, api: Any) -> None:
    """DEL removes the attachment of a NAD that was deleted from the API server after ADD."""
    args = _kube_node(node, api, topo)
    pod, cid = topo.pods[0], f"mp-ctr-{node.tag}"
    _ok(node.run("add", pod, cid, args=args), "ADD")
    assert ip_files(node.ipam) != []

    api.delete_nad(APP, "mp-fast")
    _ok(node.run("del", pod, cid, args=args), "DEL after NAD deletion")
    _assert_nothing_left(node, pod)


# --------------------------------------------------------------------------- 5. namespace isolation


def test_namespace_isolation_refuses_a_foreign_nad_until_it_is_global(topo: Topology, node: MetaNode) -> None:
    """With namespaceIsolation a pod in mp-a selecting mp-b/mp-somenad fails before anything is created, and
    works once mp-b is in globalNamespaces."""
    node.add_nad("mp-somenad", macvlan_conf("mp-somenad", topo.master, "10.66.0.0/24", str(node.ipam)), "mp-b")
    pod, cid = topo.pods[0], f"mp-ctr-{node.tag}"
    node.write_meta(namespaceIsolation=True)

    add = node.run("add", pod, cid, namespace="mp-a", networks="mp-b/mp-somenad")

    assert not add.ok
    assert (
        "namespace isolation enabled, annotation violates permission, "
        "pod is in namespace mp-a but refers to target namespace mp-b"
    ) in add.stderr
    _assert_nothing_left(node, pod)
    assert not node.bridge_exists()

    node.write_meta(namespaceIsolation=True, globalNamespaces="mp-b")
    _ok(node.run("add", pod, cid, namespace="mp-a", networks="mp-b/mp-somenad"), "ADD with mp-b global")
    assert sorted(links_by_name(pod)) == ["eth0", "lo", "net1"]
    _ok(node.run("del", pod, cid, namespace="mp-a", networks="mp-b/mp-somenad"), "DEL")
    _assert_nothing_left(node, pod)


# --------------------------------------------------------------------------- 6. repeated and unknown DEL


def test_containerd_second_del_with_empty_netns_succeeds(topo: Topology, node: MetaNode) -> None:
    """After a normal DEL, containerd's second DEL (CNI_NETNS empty, no cached result) succeeds and changes nothing."""
    node.add_nad("mp-fast", macvlan_conf("mp-fast", topo.master, "10.66.0.0/24", str(node.ipam)), APP)
    pod, cid = topo.pods[0], f"mp-ctr-{node.tag}"
    _ok(node.run("add", pod, cid, networks="mp-fast"), "ADD")
    _ok(node.run("del", pod, cid, networks="mp-fast"), "DEL")
    _assert_nothing_left(node, pod)

    _ok(node.run("del", pod, cid, networks="mp-fast", env={"CNI_DRIVER_EMPTY_NETNS": "1"}), "second DEL")
    _assert_nothing_left(node, pod)


@pytest.mark.parametrize("empty_netns", [False, True], ids=["netns", "empty-netns"])
def test_del_of_an_unknown_container_succeeds(topo: Topology, node: MetaNode, empty_netns: bool) -> None:
    """DEL for a container that was never added succeeds and creates nothing."""
    node.add_nad("mp-fast", macvlan_conf("mp-fast", topo.master, "10.66.0.0/24", str(node.ipam)), APP)
    pod = topo.pods[0]
    env = {"CNI_DRIVER_EMPTY_NETNS": "1"} if empty_netns else {}

    unknown = node.run("del", pod, f"mp-ctr-unknown-{node.tag}", networks="mp-fast", env=env)
    _ok(unknown, "DEL of an unknown container")
    _assert_nothing_left(node, pod)
    assert not node.bridge_exists()


# --------------------------------------------------------------------------- 7. interface name clash


def test_interface_name_already_in_the_pod_fails_before_anything_is_created(topo: Topology, node: MetaNode) -> None:
    """A link named net1 already in the pod makes ADD fail before any network (eth0 included) is attached, and
    that link is kept."""
    node.add_nad("mp-fast", macvlan_conf("mp-fast", topo.master, "10.66.0.0/24", str(node.ipam)), APP)
    pod, cid = topo.pods[0], f"mp-ctr-{node.tag}"
    ip("-n", pod, "link", "add", "net1", "type", "veth", "peer", "name", f"mp-c{node.tag}")

    add = node.run("add", pod, cid, networks="mp-fast")

    assert not add.ok
    assert 'interface "net1"' in add.stderr and "already exists" in add.stderr
    links = links_by_name(pod)
    assert kind(links["net1"]) == "veth"
    _assert_nothing_left(node, pod, allow_links=("net1", f"mp-c{node.tag}"))
    assert not node.bridge_exists()


def test_default_route_selection_moves_the_default_route_to_the_attachment(topo: Topology, node: MetaNode) -> None:
    """`default-route` on a selection leaves the pod exactly one default route, via that attachment, and
    network-status reports the gateway on that interface only (Multus semantics)."""
    node.add_nad("mp-fast", macvlan_conf("mp-fast", topo.master, "10.66.0.0/24", str(node.ipam)), APP)
    pod, cid = topo.pods[0], f"mp-ctr-{node.tag}"
    networks = json.dumps([{"name": "mp-fast", "default-route": [LAN1]}])
    add = node.run(
        "add",
        pod,
        cid,
        args=f"IgnoreUnknown=1;K8S_POD_NAMESPACE={APP};K8S_POD_NAME={POD};MULTIPLANE_NETWORKS={networks}",
    )
    _ok(add, "ADD")
    defaults = ip_json("-n", pod, "-4", "route", "show", "default")
    assert [(r.get("gateway"), r.get("dev")) for r in defaults] == [(LAN1, "net1")], defaults
    assert _ping(pod, LAN1)
    entries = json.loads(node.status_file(cid).read_text())
    gateways = {e["interface"]: e.get("gateway") for e in entries}
    assert gateways == {"eth0": None, "net1": [LAN1]}, entries
    _ok(node.run("del", pod, cid, args=f"IgnoreUnknown=1;K8S_POD_NAMESPACE={APP};K8S_POD_NAME={POD}"), "DEL")
    _assert_nothing_left(node, pod)


# --------------------------------------------------------------------------- issue 11: DEL can always finish


@pytest.mark.parametrize("damage", ["truncate", "empty", "garble", "symlink"])
def test_del_with_a_damaged_cache_removes_everything(
    topo: Topology, node: MetaNode, tmp_path: Path, damage: str
) -> None:
    """A pod's cache truncated, emptied, garbled or replaced by a link: DEL (selection unknown) still succeeds and
    removes the pod's links, the host veth and every reservation, and leaves the link's target alone."""
    node.add_nad("mp-fast", macvlan_conf("mp-fast", topo.master, "10.66.0.0/24", str(node.ipam)), APP)
    pod, cid = topo.pods[0], f"mp-ctr-{node.tag}"
    _ok(node.run("add", pod, cid, networks="mp-fast"), "ADD")
    assert len(ip_files(node.ipam)) == 2
    path = node.cache_file(cid)
    good = path.read_bytes()
    victim = tmp_path / "mp-victim"
    victim.write_text("not a cache")
    if damage == "truncate":
        path.write_bytes(good[: len(good) // 3])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garble":
        path.write_bytes(bytes(b ^ 0x33 for b in good))
    else:
        path.unlink()
        path.symlink_to(victim)

    # The runtime no longer says which networks the pod had; the status file still does.
    _ok(node.run("del", pod, cid), "DEL")
    _assert_nothing_left(node, pod)
    assert victim.read_text() == "not a cache"
    assert "unusable" in node.log_text()
    _ok(node.run("del", pod, cid), "second DEL")


def test_del_without_cache_and_selection_releases_secondary_addresses(topo: Topology, node: MetaNode) -> None:
    """Cache and status file gone, the pod's selection unknown (API down, pod deleted): DEL still frees the macvlan
    network's address (the macvlan itself goes with the pod's netns)."""
    node.add_nad("mp-fast", macvlan_conf("mp-fast", topo.master, "10.66.0.0/24", str(node.ipam)), APP)
    pod, cid = topo.pods[0], f"mp-ctr-{node.tag}"
    _ok(node.run("add", pod, cid, networks="mp-fast"), "ADD")
    node.cache_file(cid).unlink()
    node.status_file(cid).unlink()
    _ok(node.run("del", pod, cid), "DEL")
    assert ip_files(node.ipam) == []
    assert "mp-fast/10.66.0.10" in node.log_text()
    assert node.bridge_ports() == []
