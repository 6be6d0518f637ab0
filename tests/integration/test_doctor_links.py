"""`multiplane doctor`'s master-NIC checks against real links (root): a network namespace of the test's own.

The node root is laid down by the installer without a cluster, so the NADs are local files;
doctor runs through the real entry point inside the namespace (`ip netns exec`), where the
test made veth pairs named mp-…: one left down, one up with MTU 1400 carrying the default
route. Nothing is created outside that namespace, and removing it removes every link.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from multiplane.tools import doctor
from tests.unit.test_doctor import NODE, DoctorNode, by_status, check

pytestmark = pytest.mark.root

UP_MTU = 1400


def ip(*argv: str) -> None:
    proc = subprocess.run(["ip", *argv], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(argv)}: {proc.stderr.strip()}")


@pytest.fixture
def netns() -> Iterator[str]:
    """A namespace with mp-dn0 (down), mp-up0 (up, MTU 1400, default route) and their peers."""
    name = f"mp-doctor-{uuid.uuid4().hex[:8]}"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "add", "mp-dn0", "type", "veth", "peer", "name", "mp-dn1")
        ip("-n", name, "link", "add", "mp-up0", "mtu", str(UP_MTU), "type", "veth", "peer", "name", "mp-up1")
        ip("-n", name, "link", "set", "mp-up1", "up")
        ip("-n", name, "link", "set", "mp-up0", "up")
        ip("-n", name, "address", "add", "10.99.0.1/24", "dev", "mp-up0")
        ip("-n", name, "route", "add", "default", "via", "10.99.0.254", "dev", "mp-up0")
        yield name
    finally:
        ip("netns", "delete", name)


@pytest.fixture
def node(tmp_path: Path) -> DoctorNode:
    return DoctorNode(tmp_path / "mp-root", None).build()


def local_nad(node: DoctorNode, name: str, config: dict[str, Any]) -> None:
    doc = {"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition", "metadata": {"name": name}}
    doc["spec"] = {"config": json.dumps({"cniVersion": "0.4.0", "ipam": {"type": "host-local"}} | config)}
    node.write(f"/etc/cni/multiplane/nads/{name}.yaml", json.dumps(doc))


def doctor_in(netns: str, node: DoctorNode) -> tuple[int, dict[str, Any]]:
    exe = os.path.join(os.path.dirname(sys.executable), "multiplane")
    argv = ["ip", "netns", "exec", netns, exe, "doctor", "--root", str(node.root), "--node-name", NODE, "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_master_up_with_enough_mtu_passes(netns: str, node: DoctorNode) -> None:
    """A real master that is up with MTU ≥ the NAD's: every check ok, exit 0."""
    local_nad(node, "mp-up-mv", {"type": "macvlan", "master": "mp-up0", "mtu": UP_MTU})
    status, doc = doctor_in(netns, node)
    assert status == 0
    assert {c["status"] for c in doc["checks"]} == {doctor.OK}, json.dumps(doc["checks"], indent=1)
    assert check(doc, "networks.master.mp-up0")["finding"] == f"mp-up0: up, MTU {UP_MTU} (used by NAD mp-up-mv)"


def test_master_down_fails(netns: str, node: DoctorNode) -> None:
    local_nad(node, "mp-up-mv", {"type": "macvlan", "master": "mp-up0"})
    local_nad(node, "mp-dn-mv", {"type": "macvlan", "master": "mp-dn0"})
    status, doc = doctor_in(netns, node)
    assert status == 1
    assert by_status(doc, doctor.FAIL) == {"networks.master.mp-dn0"}
    assert "mp-dn0 is down: pods on NAD mp-dn-mv fail" in check(doc, "networks.master.mp-dn0")["finding"]
    assert check(doc, "networks.master.mp-up0")["status"] == doctor.OK


def test_master_mtu_below_the_nads_fails(netns: str, node: DoctorNode) -> None:
    local_nad(node, "mp-up-mv", {"type": "macvlan", "master": "mp-up0", "mtu": UP_MTU + 100})
    status, doc = doctor_in(netns, node)
    assert status == 1
    assert by_status(doc, doctor.FAIL) == {"networks.master.mp-up0"}
    assert f"MTU {UP_MTU}, below the mtu {UP_MTU + 100}" in check(doc, "networks.master.mp-up0")["finding"]


def test_no_master_means_the_default_route_interface(netns: str, node: DoctorNode) -> None:
    """Without `master` the plugin takes the default-route interface; doctor checks that one, once."""
    local_nad(node, "mp-implicit", {"type": "ipvlan"})
    local_nad(node, "mp-explicit", {"type": "macvlan", "master": "mp-up0"})
    status, doc = doctor_in(netns, node)
    assert status == 0
    finding = check(doc, "networks.master.mp-up0")["finding"]
    assert finding.startswith("mp-up0 (the default-route interface): up")
    assert "NAD mp-explicit, NAD mp-implicit" in finding
    ip("-n", netns, "route", "delete", "default")
    status, doc = doctor_in(netns, node)
    assert status == 1
    assert by_status(doc, doctor.FAIL) == {"networks.master.default-route"}
    assert "NAD mp-implicit name no master" in check(doc, "networks.master.default-route")["finding"]
