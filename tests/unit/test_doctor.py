"""`multiplane doctor` (multiplane.tools.doctor) against temporary node roots: no privileges needed.

Each node is laid down by the real installer (`multiplane install --root`) from a small
self-contained file, against the in-repo API server (tests/k8s_server.py): a primary
conflist (bridge + host-local, portmap), fake delegate binaries, a readiness file, NADs and
pods on this node and on another one. The healthy node passes every check; each failing
node breaks one thing and must fail exactly the check about it. Master NICs here are `lo`
(present, up) or names that do not exist; a NIC that is down needs root
(tests/integration/test_doctor_links.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from multiplane import installer
from multiplane.runtime import payload
from multiplane.tools import doctor
from tests.k8s_server import K8sServer

CONF_DIR = "/etc/cni/net.d"
BIN_DIR = "/opt/cni/bin"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SOURCE = "/build/multiplane"
READY = "/run/mp-doctor/ready"
TOKEN = "mp-doctor-token"
NODE = "mp-doctor-node"
OTHER_NODE = "mp-doctor-other"
PRIMARY = {
    "cniVersion": "0.4.0",
    "name": "mp-cbr",
    "plugins": [
        {"type": "bridge", "bridge": "mp-cni0", "ipam": {"type": "host-local", "subnet": "10.244.0.0/24"}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}
PRIMARY_FILE = f"{CONF_DIR}/10-mp-bridge.conflist"
DELEGATE_BINARIES = ("bridge", "host-local", "portmap", "ipvlan")
MACVLAN_NAD = {"cniVersion": "0.4.0", "type": "macvlan", "master": "lo", "mtu": 1500, "ipam": {"type": "host-local"}}
IPVLAN_NAD = {"cniVersion": "0.4.0", "type": "ipvlan", "master": "lo", "ipam": {"type": "host-local"}}
# Used only by a pod on another node: a check that looked at it would fail (no plugin, no NIC).
ELSEWHERE_NAD = {"cniVersion": "0.4.0", "type": "mp-absent-plugin", "master": "mp-absent0"}
ALL_RIGHTS = {("get", "pods", ""), ("get", "network-attachment-definitions", ""), ("patch", "pods", "status")}
ALL_RIGHTS |= {("create", "events", ""), ("list", "pods", "")}
HEALTHY_IDS = {
    "config.multiplane",
    "daemon.socket",
    "config.order",
    "config.primary",
    "config.multus",
    "plugins.bridge",
    "plugins.host-local",
    "plugins.portmap",
    "plugins.ipvlan",
    "plugins.in-process",
    "networks.pods",
    "networks.master.lo",
    "api.reach",
    "api.rbac.get-pods",
    "api.rbac.get-network-attachment-definitions",
    "api.rbac.patch-pods-status",
    "api.rbac.create-events",
    "readiness.file",
    "runtime.launcher",
    "runtime.tree",
    "runtime.links",
}


def self_contained(tag: str) -> bytes:
    """A small self-contained file (launcher + payload) like `make binary`'s, with a tree of four files."""
    entries = [
        payload.Entry("boot.py", 0o644, f"print('{tag}')\n".encode()),
        payload.Entry("lib/libmp.so", 0o755, f"mp-lib-{tag}".encode()),
        payload.Entry("launcher", 0o755, b"\x7fELF mp-doctor launcher\n"),
        payload.Entry("VERSION", 0o644, f"{tag}\n".encode()),
    ]
    text = payload.manifest(entries)
    entries.append(payload.Entry(payload.MANIFEST, 0o644, text))
    return payload.write(b"\x7fELF mp-doctor launcher\n", entries, payload.build_id(tag, text))


class DoctorNode:
    """A node under a temporary root, installed by `multiplane install`, and doctor run against it."""

    def __init__(self, root: Path, api: K8sServer | None) -> None:
        self.root, self.api = root, api

    def path(self, logical: str) -> Path:
        return self.root / logical.lstrip("/")

    def write(self, logical: str, data: bytes | str, mode: int = 0o644) -> Path:
        path = self.path(logical)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        path.chmod(mode)
        return path

    def build(self, **meta: Any) -> DoctorNode:
        """Source file, service account, primary conflist, delegate binaries, readiness file; then install."""
        self.write(SOURCE, self_contained("v1"), 0o755)
        self.write(f"{SA_DIR}/token", TOKEN)
        self.write(f"{SA_DIR}/ca.crt", "-----BEGIN CERTIFICATE-----\nmp-test\n-----END CERTIFICATE-----\n")
        self.write(PRIMARY_FILE, json.dumps(PRIMARY))
        for name in DELEGATE_BINARIES:
            self.write(f"{BIN_DIR}/{name}", f"#!/bin/sh\n# mp fake {name}\n", 0o755)
        self.write(READY, "")
        meta.setdefault("readinessindicatorfile", READY)
        opts = installer.Options(
            root=str(self.root),
            source=SOURCE,
            wait_seconds=0,
            api_server=self.api.url if self.api else "",
            write_kubeconfig=self.api is not None,
            meta=meta,
        )
        installer.install(opts, env={}, say=lambda _message: None)
        return self

    def tree(self) -> Path:
        current = self.path(f"{BIN_DIR}/.multiplane/current")
        return current.parent / os.readlink(current)

    def doctor(self, *extra: str) -> tuple[int, dict[str, Any]]:
        """Run `multiplane doctor --json` in-process: (exit status, the JSON document)."""
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = doctor.main(["--root", str(self.root), "--node-name", NODE, "--json", *extra])
        return status, json.loads(out.getvalue())


def by_status(doc: dict[str, Any], status: str) -> set[str]:
    return {c["id"] for c in doc["checks"] if c["status"] == status}


def check(doc: dict[str, Any], check_id: str) -> dict[str, Any]:
    found = [c for c in doc["checks"] if c["id"] == check_id]
    assert len(found) == 1, f"{check_id} in {[c['id'] for c in doc['checks']]}"
    return found[0]


@pytest.fixture
def api() -> Iterator[K8sServer]:
    """The API with this node's pod (two NADs on `lo`) and another node's pod whose NAD could not work here."""
    with K8sServer(token=TOKEN) as server:
        server.add_nad("default", "mp-lo-mv", MACVLAN_NAD)
        server.add_nad("default", "mp-lo-ipvlan", IPVLAN_NAD)
        server.add_nad("default", "mp-elsewhere", ELSEWHERE_NAD)
        networks = json.dumps([{"name": "mp-lo-mv"}, {"name": "mp-lo-ipvlan", "interface": "ipv0"}])
        server.add_pod("default", "web", {"k8s.v1.cni.cncf.io/networks": networks}, node=NODE)
        server.add_pod("default", "plain", node=NODE)
        server.add_pod("default", "far", {"k8s.v1.cni.cncf.io/networks": "mp-elsewhere"}, node=OTHER_NODE)
        server.access = set(ALL_RIGHTS)
        yield server


@pytest.fixture
def node(tmp_path: Path, api: K8sServer) -> DoctorNode:
    return DoctorNode(tmp_path / "mp-root", api).build()


def assert_fails_only(doc: dict[str, Any], status: int, *check_ids: str) -> None:
    """Exactly these checks fail (and the exit status says so)."""
    assert by_status(doc, doctor.FAIL) == set(check_ids), json.dumps(doc["checks"], indent=1)
    assert status == 1
    assert doc["status"] == doctor.FAIL
    for check_id in check_ids:
        assert check(doc, check_id)["action"], f"{check_id} says what to do"


# ---- the healthy node ---------------------------------------------------------------------------


def test_healthy_node_passes_every_check(node: DoctorNode) -> None:
    """Every check of an installed node with its API, plugins, NICs and runtime in order is ok; exit 0."""
    status, doc = node.doctor()
    assert status == 0
    assert {c["status"] for c in doc["checks"]} == {doctor.OK}, json.dumps(doc["checks"], indent=1)
    assert {c["id"] for c in doc["checks"]} == HEALTHY_IDS
    assert doc["status"] == doctor.OK
    # The pod on the other node is not this node's business: its NAD is never fetched.
    assert not node.api.requests_for("GET", "/mp-elsewhere")
    assert "2 pods on node mp-doctor-node" in check(doc, "networks.pods")["finding"]
    assert "NAD default/mp-lo-ipvlan" in check(doc, "plugins.ipvlan")["finding"]
    assert check(doc, "plugins.in-process")["finding"].endswith("host-local, macvlan")


def test_healthy_node_without_a_cluster_checks_local_nads(tmp_path: Path) -> None:
    """No kubeconfig: the API is not used and every local NAD file is checked instead."""
    node = DoctorNode(tmp_path / "mp-root", None).build()
    nad = {"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition"}
    nad |= {"metadata": {"name": "mp-local-mv"}, "spec": {"config": json.dumps(IPVLAN_NAD)}}
    node.write("/etc/cni/multiplane/nads/mp.yaml", json.dumps(nad))
    status, doc = node.doctor()
    assert status == 0
    assert {c["status"] for c in doc["checks"]} == {doctor.OK}, json.dumps(doc["checks"], indent=1)
    assert "no kubeconfig" in check(doc, "api.reach")["finding"]
    assert not [c for c in doc["checks"] if c["id"].startswith("api.rbac.")]
    assert "NAD mp-local-mv" in check(doc, "plugins.ipvlan")["finding"]
    assert check(doc, "networks.master.lo")["status"] == doctor.OK


# ---- one failing node per check -----------------------------------------------------------------


def test_missing_primary_config_fails(node: DoctorNode) -> None:
    """The file clusterNetwork names is gone: every pod would fail."""
    node.path(PRIMARY_FILE).unlink()
    status, doc = node.doctor()
    assert_fails_only(doc, status, "config.primary")
    assert "10-mp-bridge.conflist" in check(doc, "config.primary")["finding"]
    assert str(node.root) not in json.dumps(doc), "findings show node paths, not the test root"


def test_missing_multiplane_conf_fails(node: DoctorNode) -> None:
    node.path(f"{CONF_DIR}/00-multiplane.conf").unlink()
    status, doc = node.doctor()
    assert_fails_only(doc, status, "config.multiplane")
    assert "10-mp-bridge.conflist directly" in check(doc, "config.multiplane")["finding"]


def test_primary_that_is_a_meta_plugin_fails(node: DoctorNode) -> None:
    node.write(PRIMARY_FILE, json.dumps({"cniVersion": "0.4.0", "name": "mp-x", "type": "multus"}))
    status, doc = node.doctor()
    # The file is also a Multus config on the node.
    assert_fails_only(doc, status, "config.primary", "config.multus")
    assert "meta-plugin (multus)" in check(doc, "config.primary")["finding"]


def test_config_sorting_before_ours_fails(node: DoctorNode) -> None:
    node.write(f"{CONF_DIR}/00-mp-aaa.conf", json.dumps({"cniVersion": "0.4.0", "name": "mp-a", "type": "bridge"}))
    status, doc = node.doctor()
    assert_fails_only(doc, status, "config.order")
    assert check(doc, "config.order")["finding"].startswith("00-mp-aaa.conf sorts before 00-multiplane.conf")


def test_multus_config_on_the_node_fails(node: DoctorNode) -> None:
    """A Multus config anywhere in the config dir fails, even after ours: both would attach networks."""
    multus = {"cniVersion": "0.3.1", "name": "multus-cni-network", "type": "multus-shim"}
    node.write(f"{CONF_DIR}/05-mp-multus.conf", json.dumps(multus))
    status, doc = node.doctor()
    assert_fails_only(doc, status, "config.multus")
    assert "05-mp-multus.conf (multus-shim)" in check(doc, "config.multus")["finding"]


@pytest.mark.parametrize(
    ("binary", "user"),
    [
        ("ipvlan", "NAD default/mp-lo-ipvlan"),  # a NAD a pod on this node uses
        ("portmap", "cluster network mp-cbr"),  # the cluster network's chain
        (
            "host-local",
            "cluster network mp-cbr as IPAM of bridge",
        ),  # IPAM of an external plugin: it execs host-local itself
    ],
)
def test_missing_delegate_binary_fails(node: DoctorNode, binary: str, user: str) -> None:
    node.path(f"{BIN_DIR}/{binary}").unlink()
    status, doc = node.doctor()
    assert_fails_only(doc, status, f"plugins.{binary}")
    assert user in check(doc, f"plugins.{binary}")["finding"]


def test_delegate_binary_not_executable_fails(node: DoctorNode) -> None:
    node.path(f"{BIN_DIR}/bridge").chmod(0o644)
    status, doc = node.doctor()
    assert_fails_only(doc, status, "plugins.bridge")
    assert "not executable" in check(doc, "plugins.bridge")["finding"]


def test_missing_master_nic_fails(node: DoctorNode) -> None:
    node.api.add_nad("default", "mp-lo-mv", MACVLAN_NAD | {"master": "mp-absent0"})
    status, doc = node.doctor()
    assert_fails_only(doc, status, "networks.master.mp-absent0")
    finding = check(doc, "networks.master.mp-absent0")["finding"]
    assert "does not exist" in finding and "NAD default/mp-lo-mv" in finding


def test_master_mtu_below_the_nads_fails(node: DoctorNode) -> None:
    lo_mtu = int(Path("/sys/class/net/lo/mtu").read_text())
    node.api.add_nad("default", "mp-lo-mv", MACVLAN_NAD | {"mtu": lo_mtu + 1})
    status, doc = node.doctor()
    assert_fails_only(doc, status, "networks.master.lo")
    assert f"MTU {lo_mtu}, below the mtu {lo_mtu + 1}" in check(doc, "networks.master.lo")["finding"]


@pytest.mark.parametrize("how", ["stopped", "wrong token"])
def test_api_unreachable_fails(node: DoctorNode, how: str) -> None:
    """Without the API every ADD fails; what depends on the API is reported as not checked."""
    if how == "stopped":
        node.api.stop()
    else:
        node.write(f"{CONF_DIR}/multiplane.d/token", "mp-wrong-token")
    status, doc = node.doctor()
    assert_fails_only(doc, status, "api.reach")
    assert not [c for c in doc["checks"] if c["id"].startswith("api.rbac.")]
    assert check(doc, "networks.pods")["status"] == doctor.WARNING
    expected = "cannot reach the Kubernetes API" if how == "stopped" else "error 401"
    assert expected in check(doc, "api.reach")["finding"]


@pytest.mark.parametrize(
    "right", [("get", "pods", ""), ("get", "network-attachment-definitions", ""), ("patch", "pods", "status")]
)
def test_rbac_right_denied_fails(node: DoctorNode, right: tuple[str, str, str]) -> None:
    node.api.access = ALL_RIGHTS - {right}
    status, doc = node.doctor()
    check_id = "api.rbac." + "-".join(part for part in right if part)
    assert_fails_only(doc, status, check_id)
    assert check(doc, check_id)["finding"].startswith("may not ")
    reviews = node.api.requests_for("POST", "/selfsubjectaccessreviews")
    assert {(r.body["spec"]["resourceAttributes"]["verb"], r.status) for r in reviews} >= {(right[0], 201)}


def test_events_right_denied_is_a_warning(node: DoctorNode) -> None:
    """Pods start without events: a warning, exit status 0."""
    node.api.access = ALL_RIGHTS - {("create", "events", "")}
    status, doc = node.doctor()
    assert status == 0
    assert by_status(doc, doctor.FAIL) == set()
    assert by_status(doc, doctor.WARNING) == {"api.rbac.create-events"}


def test_listing_pods_forbidden_is_a_warning(node: DoctorNode) -> None:
    node.api.access = ALL_RIGHTS - {("list", "pods", "")}
    status, doc = node.doctor()
    assert status == 0
    assert by_status(doc, doctor.WARNING) == {"networks.pods"}
    assert "403" in check(doc, "networks.pods")["finding"]


def test_pod_problems_are_warnings(node: DoctorNode) -> None:
    """A running pod with an annotation the plugin refuses, or naming a NAD that is gone: warnings, exit 0."""
    node.api.add_pod("default", "mp-bad", {"k8s.v1.cni.cncf.io/networks": "a/b/c"}, node=NODE)
    node.api.add_pod("default", "mp-orphan", {"k8s.v1.cni.cncf.io/networks": "mp-gone"}, node=NODE)
    status, doc = node.doctor()
    assert status == 0
    assert by_status(doc, doctor.WARNING) == {"networks.pod.default/mp-bad", "networks.nad.default/mp-gone"}
    assert "used by default/mp-orphan" in check(doc, "networks.nad.default/mp-gone")["finding"]
    assert "4 pods on node" in check(doc, "networks.pods")["finding"]


def test_missing_readiness_file_fails(node: DoctorNode) -> None:
    node.path(READY).unlink()
    status, doc = node.doctor()
    assert_fails_only(doc, status, "readiness.file")
    assert READY in check(doc, "readiness.file")["finding"]


def test_tampered_runtime_tree_fails(node: DoctorNode) -> None:
    (node.tree() / "lib/libmp.so").write_bytes(b"mp-tampered")
    status, doc = node.doctor()
    assert_fails_only(doc, status, "runtime.tree")
    assert "lib/libmp.so changed (sha256)" in check(doc, "runtime.tree")["finding"]


def test_tampered_manifest_fails(node: DoctorNode) -> None:
    """A file changed together with its MANIFEST line no longer matches the build id."""
    tree = node.tree()
    (tree / "lib/libmp.so").write_bytes(b"mp-tampered")
    manifest = payload.manifest(
        [payload.Entry(p, 0o755 if p in ("lib/libmp.so", "launcher") else 0o644, (tree / p).read_bytes())
         for p in ("boot.py", "lib/libmp.so", "launcher", "VERSION")]
    )  # fmt: skip
    (tree / "MANIFEST").chmod(0o644)
    (tree / "MANIFEST").write_bytes(manifest)
    status, doc = node.doctor()
    assert_fails_only(doc, status, "runtime.tree")
    assert "MANIFEST and VERSION give build" in check(doc, "runtime.tree")["finding"]


def test_missing_runtime_tree_fails(node: DoctorNode) -> None:
    node.path(f"{BIN_DIR}/.multiplane/current").unlink()
    status, doc = node.doctor()
    assert_fails_only(doc, status, "runtime.tree")


def test_self_contained_file_in_the_bin_dir_is_a_warning(node: DoctorNode) -> None:
    """The self-contained file copied by hand works (it unpacks once per build): a warning, exit 0."""
    launcher = node.path(f"{BIN_DIR}/multiplane")
    launcher.unlink()
    launcher.write_bytes(self_contained("v2"))
    launcher.chmod(0o755)
    status, doc = node.doctor()
    assert status == 0
    assert by_status(doc, doctor.WARNING) == {"runtime.launcher"}
    assert "self-contained file" in check(doc, "runtime.launcher")["finding"]
    assert "runtime.tree" not in {c["id"] for c in doc["checks"]}


def test_launcher_of_another_build_is_a_warning(node: DoctorNode) -> None:
    launcher = node.path(f"{BIN_DIR}/multiplane")
    launcher.unlink()
    launcher.write_bytes(b"\x7fELF mp-doctor launcher of another build\n")
    launcher.chmod(0o755)
    status, doc = node.doctor()
    assert status == 0
    assert by_status(doc, doctor.WARNING) == {"runtime.launcher"}
    assert "not the launcher of build" in check(doc, "runtime.launcher")["finding"]


def test_empty_node_fails(tmp_path: Path) -> None:
    """Nothing installed, no CNI config dir: both say so, and nothing else is pretended."""
    status, doc = DoctorNode(tmp_path / "mp-root", None).doctor()
    assert_fails_only(doc, status, "config.dir", "runtime.launcher")
    assert by_status(doc, doctor.OK) == set()


# ---- output -------------------------------------------------------------------------------------


def test_json_shape(node: DoctorNode) -> None:
    node.path(READY).unlink()
    _status, doc = node.doctor()
    assert set(doc) == {"node", "cniConfDir", "cniBinDir", "status", "counts", "checks"}
    assert (doc["node"], doc["cniConfDir"], doc["cniBinDir"]) == (NODE, CONF_DIR, BIN_DIR)
    assert doc["counts"] == {s: len(by_status(doc, s)) for s in (doctor.OK, doctor.WARNING, doctor.FAIL)}
    assert sum(doc["counts"].values()) == len(doc["checks"])
    ids = [c["id"] for c in doc["checks"]]
    assert len(ids) == len(set(ids))
    groups = list(doctor.GROUPS)
    assert [groups.index(c["group"]) for c in doc["checks"]] == sorted(groups.index(c["group"]) for c in doc["checks"])
    for c in doc["checks"]:
        assert set(c) == {"id", "group", "status", "finding", "action"}
        assert c["id"].startswith(c["group"] + ".")
        assert c["finding"] and "\n" not in c["finding"]
        assert bool(c["action"]) == (c["status"] != doctor.OK)


def test_human_output(node: DoctorNode) -> None:
    node.path(READY).unlink()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = doctor.main(["--root", str(node.root), "--node-name", NODE])
    text = out.getvalue()
    assert status == 1
    assert text.startswith(f"multiplane doctor: node {NODE} ({CONF_DIR}, {BIN_DIR})\n")
    assert f"\nreadiness indicator file\n  FAIL  {READY} is missing" in text
    assert "\n        -> check that the cluster network's own agent runs" in text
    assert "\n  ok    wraps /etc/cni/net.d/10-mp-bridge.conflist" in text
    assert text.endswith("1 failed, 0 warnings, 20 ok: pods on this node would fail\n")


def test_usage_error() -> None:
    with contextlib.redirect_stderr(io.StringIO()):
        assert doctor.main(["--no-such-flag"]) == 2


# ---- the real entry point -----------------------------------------------------------------------


def test_entry_point(node: DoctorNode) -> None:
    """`.venv/bin/multiplane doctor --root … --json` in a subprocess: 0 on the healthy node, 1 once it breaks."""
    exe = os.path.join(os.path.dirname(sys.executable), "multiplane")
    argv = [exe, "doctor", "--root", str(node.root), "--node-name", NODE, "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["status"] == doctor.OK
    node.path(f"{BIN_DIR}/ipvlan").unlink()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert by_status(json.loads(proc.stdout), doctor.FAIL) == {"plugins.ipvlan"}
