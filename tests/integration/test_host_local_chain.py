"""multiplane-host-local as the IPAM of the reference macvlan plugin, in real network namespaces.

The reference macvlan execs our host-local with the runtime's environment, so every test runs
through both front doors (the one-shot process and the node daemon; see
tests/integration/conftest.py) with the same assertions.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cni import OURS_HOST_LOCAL, run

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("via_front_door")]

REF_MACVLAN = "/usr/lib/cni/macvlan"


def _ip(*argv: str) -> str:
    return subprocess.run(["ip", *argv], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A veth pair (one end the macvlan master, the other a LAN host namespace) and two pod namespaces."""
    tag = uuid.uuid4().hex[:6]
    names = {
        "master": f"mp-m{tag}",
        "peer": f"mp-p{tag}",
        "lan": f"mp-lan{tag}",
        "pod1": f"mp-pa{tag}",
        "pod2": f"mp-pb{tag}",
    }
    try:
        _ip("link", "add", names["master"], "type", "veth", "peer", "name", names["peer"])
        for ns in ("lan", "pod1", "pod2"):
            _ip("netns", "add", names[ns])
        _ip("link", "set", names["peer"], "netns", names["lan"])
        _ip("link", "set", names["master"], "up")
        _ip("-n", names["lan"], "link", "set", names["peer"], "up")
        _ip("-n", names["lan"], "addr", "add", "10.88.0.1/24", "dev", names["peer"])
        bindir = tmp_path / "mp-bin"
        bindir.mkdir()
        (bindir / "multiplane-host-local").symlink_to(OURS_HOST_LOCAL)
        names["cni_path"] = f"{bindir}:/usr/lib/cni"
        names["data"] = str(tmp_path / "mp-data")
        yield names
    finally:
        for ns in ("lan", "pod1", "pod2"):
            subprocess.run(["ip", "netns", "del", names[ns]], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", names["master"]], capture_output=True, check=False)


def _conf(topo: dict[str, str], ipam_type: str) -> dict[str, object]:
    return {
        "cniVersion": "1.0.0",
        "name": "mp-chain",
        "type": "macvlan",
        "master": topo["master"],
        "ipam": {
            "type": ipam_type,
            "dataDir": topo["data"],
            "subnet": "10.88.0.0/24",
            "rangeStart": "10.88.0.200",
            "rangeEnd": "10.88.0.216",
            "gateway": "10.88.0.1",
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    }


def _macvlan(topo: dict[str, str], command: str, conf: dict[str, object], pod: str, cid: str) -> object:
    return run(
        REF_MACVLAN,
        command,
        conf,
        container_id=cid,
        netns=f"/var/run/netns/{topo[pod]}",
        ifname="net1",
        path=topo["cni_path"],
        args="IgnoreUnknown=1;K8S_POD_NAME=p",
    )


def test_reference_macvlan_gets_its_address_from_multiplane_host_local(topology: dict[str, str]) -> None:
    """ADD through the reference macvlan puts our allocated address, gateway route and state in place; traffic flows."""
    conf = _conf(topology, "multiplane-host-local")
    add = _macvlan(topology, "ADD", conf, "pod1", "mp-c1")
    assert add.ok, add.stdout + add.stderr
    result = add.json
    assert result["ips"][0]["address"] == "10.88.0.200/24"
    assert result["ips"][0]["gateway"] == "10.88.0.1"
    links = json.loads(_ip("-n", topology["pod1"], "-j", "addr", "show", "net1"))
    assert any(a["local"] == "10.88.0.200" and a["prefixlen"] == 24 for a in links[0]["addr_info"])
    routes = json.loads(_ip("-n", topology["pod1"], "-j", "route", "show", "default"))
    assert routes and routes[0]["gateway"] == "10.88.0.1" and routes[0]["dev"] == "net1"
    pool = Path(topology["data"]) / "mp-chain"
    assert (pool / "10.88.0.200").read_bytes() == b"mp-c1\r\nnet1"
    ping = subprocess.run(
        ["ip", "netns", "exec", topology["pod1"], "busybox", "ping", "-c", "1", "-W", "2", "10.88.0.1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ping.returncode == 0, ping.stdout + ping.stderr

    check = _macvlan(topology, "CHECK", dict(conf, prevResult=result), "pod1", "mp-c1")
    assert check.ok, check.stdout
    delete = _macvlan(topology, "DEL", conf, "pod1", "mp-c1")
    assert delete.ok, delete.stdout
    assert not (pool / "10.88.0.200").exists()
    assert "net1" not in _ip("-n", topology["pod1"], "-o", "link")


def test_mixed_allocators_in_one_pool_never_collide(topology: dict[str, str]) -> None:
    """Pods attached alternately through the reference and our IPAM get distinct addresses and reach each other."""
    ours, ref = _conf(topology, "multiplane-host-local"), _conf(topology, "host-local")
    first = _macvlan(topology, "ADD", ours, "pod1", "mp-c1")
    second = _macvlan(topology, "ADD", ref, "pod2", "mp-c2")
    assert first.ok and second.ok, first.stdout + second.stdout
    a1 = first.json["ips"][0]["address"].split("/")[0]
    a2 = second.json["ips"][0]["address"].split("/")[0]
    assert (a1, a2) == ("10.88.0.200", "10.88.0.201")
    ping = subprocess.run(
        ["ip", "netns", "exec", topology["pod2"], "busybox", "ping", "-c", "1", "-W", "2", a1],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ping.returncode == 0, ping.stdout
    # Each implementation releases the other's allocation: the state is truly shared.
    assert _macvlan(topology, "DEL", ref, "pod1", "mp-c1").ok
    assert _macvlan(topology, "DEL", ours, "pod2", "mp-c2").ok
    assert sorted(os.listdir(Path(topology["data"]) / "mp-chain")) == ["last_reserved_ip.0", "lock"]


def test_failed_ipam_leaves_no_reservation(topology: dict[str, str]) -> None:
    """A bad IPAM config fails the chain with our error text and writes nothing to the data directory."""
    conf = _conf(topology, "multiplane-host-local")
    conf["ipam"]["rangeStart"] = "192.168.0.1"  # type: ignore[index]
    add = _macvlan(topology, "ADD", conf, "pod1", "mp-c1")
    err = add.error()
    assert err["code"] == 7
    assert "RangeStart 192.168.0.1 not in network 10.88.0.0/24" in err["msg"]
    assert not Path(topology["data"]).exists()
