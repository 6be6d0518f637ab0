"""containerd's CRI plugin runs the installed multiplane: the path kubelet drives, end to end.

Each test is one node: a private containerd (tests/e2e/containerd_harness.py) whose CNI
``bin_dir`` holds dist/multiplane under its three names beside Debian's bridge, host-local,
loopback and macvlan, and whose ``conf_dir`` holds only ``00-multiplane.conflist``. The
meta-plugin's cluster network is a bridge conflist (a free 10.244.N.0/24); its kubeconfig
points at the in-repo Kubernetes API server (TLS + token), which serves the pod and the
NetworkAttachmentDefinition. A CRI client sends RunPodSandbox / StopPodSandbox /
RemovePodSandbox as kubelet would; containerd execs the plugin with go-cni/libcni.

The NAD is a macvlan (type ``macvlan``: multiplane's in-process macvlan) on a veth whose
other end is a LAN host namespace holding 10.77.0.1/24.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cri_api.v1 import api_pb2 as cri

from tests.e2e.containerd_harness import Containerd, ContainerdError, cni_bin_dir, netns_path_of
from tests.integration.meta_helpers import (
    CLUSTER_NAME,
    IP_FORWARD,
    META_NAME,
    NETWORKS_ANNOTATION,
    STATUS_ANNOTATION,
    addrs,
    free_cluster_octet,
    ip_files,
    kind,
    macvlan_conf,
)
from tests.k8s_server import K8sServer
from tests.topology import Topology, ip, ip_json, ns_exec

pytestmark = pytest.mark.root

NS = "mp-e2e"
TOKEN = "mp-e2e-token"
LAN_IP = "10.77.0.1"
MACVLAN_SUBNET = "10.77.0.0/24"


@dataclass
class Node:
    tmp: Path
    topo: Topology
    api: K8sServer
    ctd: Containerd
    bridge: str
    cluster_net: ipaddress.IPv4Network
    ipam: Path
    cni_dir: Path
    log: Path

    @property
    def cluster_gw(self) -> str:
        return str(self.cluster_net[1])

    def state_files(self) -> list[str]:
        """Every file multiplane keeps in its cniDir (delegate caches, status files)."""
        out = []
        for root, _dirs, files in os.walk(self.cni_dir):
            out += [os.path.relpath(os.path.join(root, f), self.cni_dir) for f in files]
        return sorted(out)

    def bridge_ports(self) -> list[str]:
        return [link["ifname"] for link in ip_json("link", "show") if link.get("master") == self.bridge]

    def our_root_links(self) -> list[str]:
        """Root-namespace links hanging off our master (macvlans) or our bridge (pod veth ends)."""
        return [
            link["ifname"]
            for link in ip_json("link", "show")
            if link.get("link") == self.topo.master or link.get("master") == self.bridge
        ]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(no multiplane log)"

    def pod_links(self, netns: str) -> dict[str, dict[str, Any]]:
        proc = self.ctd.netns_exec(netns, "ip", "-j", "-d", "addr", "show")
        assert proc.returncode == 0, proc.stderr
        return {link["ifname"]: link for link in json.loads(proc.stdout)}

    def pod_ping(self, netns: str, target: str, iface: str) -> bool:
        for _ in range(3):  # the first echo can be lost while neighbours resolve
            if self.ctd.netns_exec(netns, "busybox", "ping", "-c", "1", "-W", "2", "-I", iface, target).returncode == 0:
                return True
        return False

    def lan_ping(self, target: str) -> bool:
        return any(
            ns_exec(self.topo.lan, "busybox", "ping", "-c", "1", "-W", "2", target).returncode == 0 for _ in range(3)
        )

    def assert_nothing_left(self) -> None:
        """No sandbox, shim, container, netns, address reservation, cache (ours or libcni's), bridge port, link."""
        ctd = self.ctd
        assert ctd.cri is not None
        assert ctd.cri.list_pod_sandbox() == []
        assert ctd.workload_processes() == [], "shim or container processes are left"
        assert ctd.netns_mounts() == []
        assert not ctd.netns_dir.exists() or list(ctd.netns_dir.iterdir()) == []
        assert ip_files(self.ipam) == [], self.log_text()
        assert self.state_files() == [], self.log_text()
        assert not ctd.libcni_cache.exists() or list(ctd.libcni_cache.iterdir()) == []
        assert self.our_root_links() == []


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path)
    return [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith(prefix)
    ]


@pytest.fixture
def node(tmp_path: Path, pause_image: str, multiplane_binary: Path) -> Iterator[Node]:
    """A node: LAN topology, API server, CNI bin/conf dirs, and a started containerd with the pause image."""
    forward = Path(IP_FORWARD).read_text()
    tag = uuid.uuid4().hex[:6]
    bridge = f"mp-br{tag}"
    cluster_net = ipaddress.ip_network(f"10.244.{free_cluster_octet()}.0/24")
    ipam, cni_dir, net_d, conf_dir = (tmp_path / d for d in ("mp-ipam", "mp-cni", "mp-net.d", "mp-cri-net.d"))
    for d in (ipam, net_d, conf_dir):
        d.mkdir()
    log = tmp_path / "mp-multiplane.log"
    topo = api = ctd = None
    try:
        topo = Topology(tmp_path / "mp-topo", pods=0, lan_addrs=(f"{LAN_IP}/24",))
        api = K8sServer(tls=True, token=TOKEN)
        kubeconfig = api.kubeconfig(tmp_path / "mp-kubeconfig", token=TOKEN)
        cluster = net_d / "10-cluster.conflist"
        cluster.write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": CLUSTER_NAME,
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": bridge,
                            "isGateway": True,
                            "ipam": {
                                "type": "host-local",
                                "dataDir": str(ipam),
                                "ranges": [[{"subnet": str(cluster_net), "gateway": str(cluster_net[1])}]],
                                "routes": [{"dst": "0.0.0.0/0", "gw": str(cluster_net[1])}],
                            },
                        }
                    ],
                }
            )
        )
        bin_dir = cni_bin_dir(tmp_path / "mp-cni-bin", multiplane_binary)
        meta = {
            "type": "multiplane",
            "clusterNetwork": str(cluster),
            "confDir": str(net_d),
            "cniDir": str(cni_dir),
            "binDir": str(bin_dir),
            "kubeconfig": kubeconfig,
            "logFile": str(log),
            "logLevel": "verbose",
            "logToStderr": False,
        }
        (conf_dir / "00-multiplane.conflist").write_text(
            json.dumps({"cniVersion": "1.0.0", "name": META_NAME, "plugins": [meta]})
        )
        ctd = Containerd(tmp_path / "mp-containerd", cni_bin_dir=bin_dir, cni_conf_dir=conf_dir, tag=tag)
        try:
            ctd.start()
            ctd.import_image(pause_image)
        except ContainerdError as exc:
            pytest.fail(f"containerd cannot run on this machine: {exc}")
        yield Node(tmp_path, topo, api, ctd, bridge, cluster_net, ipam, cni_dir, log)
    finally:
        problems: list[str] = []

        def step(what: str, fn: Callable[[], object]) -> None:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - every clean-up step runs; failures are reported together
                problems.append(f"{what}: {exc!r}")

        if ctd is not None:
            step("stopping containerd", ctd.close)
            problems += [f"containerd's tear-down had to force: {f}" for f in ctd.forced]
            step("processes", lambda: problems.extend(f"process {p} survived" for p in ctd.our_processes()))
            if ctd.log.exists():  # kept for a failed run; the rest of containerd's dirs is big
                step("containerd log", lambda: shutil.copy(ctd.log, tmp_path / "mp-containerd.log"))
        if api is not None:
            step("API server", api.stop)
        if topo is not None:
            step("topology", topo.close)
        step("bridge", lambda: ip("link", "del", bridge, check=False))
        if Path(IP_FORWARD).read_text() != forward:
            step("ip_forward", lambda: Path(IP_FORWARD).write_text(forward))
        problems += [f"mount left: {m}" for m in _mounts_under(tmp_path)]
        shutil.rmtree(tmp_path / "mp-containerd", ignore_errors=True)
        assert problems == [], "tear-down: " + "; ".join(problems)


# --------------------------------------------------------------------------- the pod gets eth0 and net1


def test_run_pod_sandbox_attaches_cluster_and_macvlan_reports_status_and_remove_leaves_nothing(node: Node) -> None:
    """RunPodSandbox for a pod the API server annotates with `mp-fast`: containerd runs multiplane, the sandbox
    has eth0 (bridge) and net1 (macvlan), the pod's network-status reaches the API server, traffic flows on both;
    StopPodSandbox and RemovePodSandbox (containerd's second DEL has no netns) leave nothing behind."""
    ctd, api = node.ctd, node.api
    assert ctd.cri is not None
    api.add_nad(NS, "mp-fast", macvlan_conf("mp-fast", node.topo.master, MACVLAN_SUBNET, str(node.ipam)))
    uid = str(uuid.uuid4())
    annotations = {NETWORKS_ANNOTATION: "mp-fast"}
    api.add_pod(NS, "mp-web", annotations=annotations, uid=uid)

    start = time.monotonic()
    try:
        sid = ctd.cri.run_pod_sandbox("mp-web", NS, uid, annotations=annotations, cgroup_parent=ctd.cgroup_parent)
    except grpc.RpcError as exc:
        pytest.fail(
            f"RunPodSandbox failed: {exc.details()}\n--- multiplane log:\n{node.log_text()}\n--- containerd:\n{ctd.log_tail()}"
        )
    ran_in = time.monotonic() - start

    status, info = ctd.cri.pod_sandbox_status(sid)
    assert status.state == cri.SANDBOX_READY
    assert (status.metadata.name, status.metadata.namespace, status.metadata.uid) == ("mp-web", NS, uid)
    netns = netns_path_of(info)
    assert netns.startswith(str(ctd.netns_dir)), netns

    # The sandbox's network namespace: eth0 from the bridge, net1 from the in-process macvlan.
    links = node.pod_links(netns)
    assert sorted(links) == ["eth0", "lo", "net1"], links
    assert (kind(links["eth0"]), kind(links["net1"])) == ("veth", "macvlan")
    assert links["net1"]["linkinfo"]["info_data"]["mode"] == "bridge"
    eth0, net1 = addrs(links["eth0"]), addrs(links["net1"])
    assert len(eth0) == 1 and ipaddress.ip_interface(eth0[0]).ip in node.cluster_net, eth0
    assert net1 == ["10.77.0.10/24"]
    assert node.bridge_ports() != []
    # The CRI's pod IP is the cluster network's address (the meta-plugin returns eth0's result).
    assert status.network.ip == eth0[0].split("/")[0]

    # The API server received the network-status (a merge PATCH of pods/status), both interfaces in it.
    patches = api.requests_for("PATCH", f"/namespaces/{NS}/pods/mp-web/status")
    assert patches and all(r.status == 200 for r in patches), patches
    pod = api.pod(NS, "mp-web")
    reported = json.loads(pod["metadata"]["annotations"][STATUS_ANNOTATION])
    assert [(e["name"], e["interface"], e["ips"]) for e in reported] == [
        (CLUSTER_NAME, "eth0", [eth0[0].split("/")[0]]),
        (f"{NS}/mp-fast", "net1", ["10.77.0.10"]),
    ]
    assert [e.get("default", False) for e in reported] == [True, False]
    assert [e["mac"] for e in reported] == [links["eth0"]["address"], links["net1"]["address"]]
    assert pod["metadata"]["annotations"][NETWORKS_ANNOTATION] == "mp-fast"  # the rest of the pod is kept
    # multiplane's own records: the delegate cache and the status file, keyed by the sandbox id.
    assert node.state_files() == sorted([sid, f"status/{sid}.json"])
    assert json.loads((node.cni_dir / "status" / f"{sid}.json").read_text()) == reported

    # Traffic: net1 reaches the LAN host and back; eth0 reaches the bridge gateway.
    assert node.pod_ping(netns, LAN_IP, "net1")
    assert node.lan_ping("10.77.0.10")
    assert node.pod_ping(netns, node.cluster_gw, "eth0")

    # StopPodSandbox: containerd's DEL (with the netns and prevResult), then the netns goes.
    ctd.cri.stop_pod_sandbox(sid)
    status, _ = ctd.cri.pod_sandbox_status(sid)
    assert status.state == cri.SANDBOX_NOTREADY
    assert ip_files(node.ipam) == [], node.log_text()
    assert node.bridge_ports() == []
    assert ctd.netns_mounts() == []
    assert node.state_files() == [], node.log_text()

    # RemovePodSandbox: a second DEL with CNI_NETNS="" and no prevResult; it must succeed.
    ctd.cri.remove_pod_sandbox(sid)
    node.assert_nothing_left()
    assert ran_in < 30, f"RunPodSandbox took {ran_in:.1f} s"


# --------------------------------------------------------------------------- a missing NAD


def test_missing_nad_fails_run_pod_sandbox_with_our_error_and_leaks_nothing(node: Node) -> None:
    """A pod selecting a NAD that does not exist: RunPodSandbox fails, the CRI error carries multiplane's message,
    containerd's clean-up DEL succeeds, and no sandbox, process, netns, address or cache is left."""
    ctd, api = node.ctd, node.api
    assert ctd.cri is not None
    uid = str(uuid.uuid4())
    annotations = {NETWORKS_ANNOTATION: "mp-missing"}
    api.add_pod(NS, "mp-lost", annotations=annotations, uid=uid)

    with pytest.raises(grpc.RpcError) as failed:
        ctd.cri.run_pod_sandbox("mp-lost", NS, uid, annotations=annotations, cgroup_parent=ctd.cgroup_parent)
    message = failed.value.details() or ""
    assert "cannot find a network-attachment-definition (mp-missing) in namespace (mp-e2e)" in message, message
    assert 'plugin type="multiplane"' in message, message  # the text went through go-cni, not a containerd error

    # containerd ran its clean-up DEL after the failed ADD (multiplane, without a cache, read the pod again).
    assert len(api.requests_for("GET", "/pods/mp-lost")) >= 2, [(r.method, r.path) for r in api.requests]
    node.assert_nothing_left()
    assert STATUS_ANNOTATION not in api.pod(NS, "mp-lost")["metadata"].get("annotations", {})
    assert api.requests_for("PATCH") == [] and api.requests_for("PUT") == []
