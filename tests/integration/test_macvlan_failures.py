"""multiplane-macvlan ADD failure paths: the CNI error object, and nothing left behind.

Every case asserts the error (exactly one JSON object on stdout with cniVersion, code, msg
and details; no Python traceback on stderr), then that the failed ADD leaked nothing: the
pod namespace has exactly the links (and addresses) it had before, no temporary `mpv`+8 hex
link and no CNI_IFNAME; the root namespace has no new link; `ip netns list` has no new
namespace; the host-local dataDir holds no new reservation.

The reference (1.1.1) cleans up worse (reference-plugins.md §1.4 "Cleanup on failure"): after
an IPAM failure, a failed route or a result it cannot convert, its macvlan stays in the pod.
`test_reference_leaks_the_link_where_we_leave_none` shows that difference side by side.

An ADD that is killed cannot clean up; the last section checks that the runtime's DEL does,
from the state a kill leaves (made by hand, and by SIGKILLing a real ADD stopped at each step).

Every test runs through both front doors (the one-shot process and the node daemon; see
tests/integration/conftest.py) with the same assertions. A killed ADD is, under the daemon,
a daemon killed in the middle of that ADD: the client then answers code 11 (try again).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import cni
from tests.cni import Invocation, run
from tests.daemon_harness import Daemon, FrontDoor
from tests.topology import Topology, ip, ip_json

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("via_front_door")]

REF = "/usr/lib/cni/macvlan"
REF_HOST_LOCAL = "/usr/lib/cni/host-local"
OURS = "multiplane-macvlan"
IFNAME = "net1"
CID = "mp-ctr"
TMP_NAME = re.compile(r"mpv[0-9a-f]{8}")
MISSING_NETNS = "/var/run/netns/mp-nosuch"


# --------------------------------------------------------------------------- helpers


def _conf(topo: Topology, data_dir: str, **overrides: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": "mp-failnet",
        "type": "macvlan",
        "master": topo.master,
        "ipam": {
            "type": "host-local",
            "dataDir": data_dir,
            "subnet": "10.66.0.0/24",
            "rangeStart": "10.66.0.10",
            "rangeEnd": "10.66.0.20",
            "gateway": "10.66.0.1",
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    }
    conf.update(overrides)
    return conf


def _cni_error(inv: Invocation) -> dict[str, Any]:
    """The error object: non-zero exit, exactly one JSON object with the four keys, no traceback."""
    assert inv.returncode != 0, f"expected failure, got: {inv.stdout}"
    assert "Traceback (most recent call last)" not in inv.stderr, inv.stderr
    obj = json.loads(inv.stdout)  # raises on anything but exactly one JSON value
    assert isinstance(obj, dict), inv.stdout
    assert set(obj) == {"cniVersion", "code", "msg", "details"}, obj
    return obj


def _pod_links(pod: str) -> list[tuple[Any, ...]]:
    """Every link of the pod with what identifies and configures it (index, name, kind, MAC, flags, MTU, addresses)."""
    out = []
    for link in ip_json("-n", pod, "-d", "addr", "show"):
        addrs = sorted(f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []))
        kind = link.get("linkinfo", {}).get("info_kind", "")
        out.append(
            (
                link["ifindex"],
                link["ifname"],
                kind,
                link.get("address"),
                tuple(link["flags"]),
                link["mtu"],
                tuple(addrs),
            )
        )
    return sorted(out)


def _root_links(topo: Topology) -> set[str]:
    """Root-namespace links hanging off this test's master: where a leaked host-side macvlan would be."""
    return {link["ifname"] for link in ip_json("-d", "link", "show") if link.get("link") == topo.master}


def _netns_names(topo: Topology) -> set[str]:
    """Namespaces this test could have caused: its own (tagged) and the missing one it names (never created)."""
    return {ns["name"] for ns in ip_json("netns", "list") if topo.tag in ns["name"] or ns["name"] == "mp-nosuch"}


def _reservations(data_dir: str) -> dict[str, bytes]:
    """host-local reservation files (everything but `lock` and `last_reserved_ip.*`) → contents."""
    out: dict[str, bytes] = {}
    for path in Path(data_dir).rglob("*"):
        if path.is_file() and path.name != "lock" and not path.name.startswith("last_reserved_ip."):
            out[str(path.relative_to(data_dir))] = path.read_bytes()
    return out


@dataclass
class World:
    """What a failed ADD must not change."""

    pods: dict[str, list[tuple[Any, ...]]]
    root: set[str]
    netns: set[str]
    reservations: dict[str, bytes]
    data_dir: str = field(repr=False)

    @classmethod
    def take(cls, topo: Topology, data_dir: str, pods: list[str] | None = None) -> World:
        return cls(
            pods={p: _pod_links(p) for p in (pods if pods is not None else topo.pods)},
            root=_root_links(topo),
            netns=_netns_names(topo),
            reservations=_reservations(data_dir),
            data_dir=data_dir,
        )

    def assert_unchanged(self, topo: Topology) -> None:
        after = World.take(topo, self.data_dir, list(self.pods))
        for pod, links in after.pods.items():
            names = [link[1] for link in links]
            assert not [n for n in names if TMP_NAME.fullmatch(n)], f"temporary link left in {pod}: {names}"
            assert links == self.pods[pod], f"links of {pod} changed: {self.pods[pod]} -> {links}"
        new_root = after.root - self.root
        assert not new_root, f"new links on the master in the root netns: {new_root}"
        new_ns = after.netns - self.netns
        assert not new_ns, f"new network namespaces: {new_ns}"
        assert after.reservations == self.reservations, "host-local reservations changed"


def _add(topo: Topology, conf: dict[str, Any], pod: str, **kw: Any) -> Invocation:
    return topo.cni(OURS, "ADD", conf, pod, **kw)


def _fill_pool(topo: Topology, host_local: str, conf: dict[str, Any], cids: list[str]) -> None:
    """Reserve addresses for other containers by running host-local directly (no link involved)."""
    for cid in cids:
        inv = run(
            host_local,
            "ADD",
            conf,
            container_id=cid,
            netns="/var/run/netns/mp-unused",
            ifname=IFNAME,
            path=topo.cni_path,
        )
        assert inv.ok, inv.stdout


def _fs_magic(path: Path) -> str:
    return subprocess.run(
        ["stat", "-f", "-c", "%t", str(path)], capture_output=True, text=True, check=True
    ).stdout.strip()


# --------------------------------------------------------------------------- table of simple cases


@dataclass
class Case:
    """One ADD that must fail before or after creating anything, with its expected code and message."""

    id: str
    code: int
    msg: Callable[[Topology, Path], str]
    conf: Callable[[Topology, str], dict[str, Any]]
    env: Callable[[Topology, Path], dict[str, Any]] = lambda _t, _p: {}
    setup: Callable[[Topology, Path], None] = lambda _t, _p: None


def _regular_file(tmp_path: Path) -> Path:
    return tmp_path / "mp-not-a-netns"


def _set_master_down(topo: Topology) -> None:
    ip("link", "set", topo.master, "down")


def _make_regular_file(_topo: Topology, tmp_path: Path) -> None:
    _regular_file(tmp_path).write_text("not a namespace\n")


CASES = [
    Case(
        "master-missing",
        7,
        lambda _t, _p: 'failed to find master interface "mp-nosuch"',
        lambda t, d: _conf(t, d, master="mp-nosuch"),
    ),
    Case(
        "master-down",
        11,
        lambda t, _p: f'master interface "{t.master}" is down',
        _conf,
        setup=lambda t, _p: _set_master_down(t),
    ),
    Case(
        "ipam-unknown-type",
        999,
        lambda t, _p: f'failed to find plugin "mp-nosuchipam" in path [{t.bin_dir} /usr/lib/cni]',
        lambda t, d: _conf(t, d, ipam={"type": "mp-nosuchipam"}),
    ),
    Case(
        "ipam-range-start-outside-subnet",
        7,
        lambda _t, _p: "invalid range set 0: RangeStart 10.67.0.1 not in network 10.66.0.0/24",
        lambda t, d: _conf(
            t, d, ipam={"type": "host-local", "dataDir": d, "subnet": "10.66.0.0/24", "rangeStart": "10.67.0.1"}
        ),
    ),
    Case(
        "mtu-above-master",
        7,
        lambda _t, _p: "invalid MTU 9000, must be [0, master MTU(1500)]",
        lambda t, d: _conf(t, d, mtu=9000),
    ),
    Case(
        # The reference's text names the master MTU for a negative value too (error-codes decision 0002:
        # codes change, reference texts do not).
        "mtu-negative",
        7,
        lambda _t, _p: "invalid MTU -1, must be [0, master MTU(1500)]",
        lambda t, d: _conf(t, d, mtu=-1),
    ),
    Case(
        "mtu-string",
        7,
        lambda _t, _p: (
            "failed to load netconf: json: cannot unmarshal string into Go struct field NetConf.mtu of type int"
        ),
        lambda t, d: _conf(t, d, mtu="1500"),
    ),
    Case(
        "netns-missing",
        4,
        lambda _t, _p: (
            f'failed to open netns "{MISSING_NETNS}": failed to Statfs "{MISSING_NETNS}": no such file or directory'
        ),
        _conf,
        env=lambda _t, _p: {"netns": MISSING_NETNS},
    ),
    Case(
        "netns-regular-file",
        4,
        lambda _t, p: (
            f'failed to open netns "{_regular_file(p)}": '
            f'unknown FS magic on "{_regular_file(p)}": {_fs_magic(_regular_file(p))}'
        ),
        _conf,
        env=lambda _t, p: {"netns": str(_regular_file(p))},
        setup=_make_regular_file,
    ),
    Case(
        "v0.2.0-l2-only",
        999,
        lambda _t, _p: "cannot convert: no valid IP addresses",
        lambda t, d: _conf(t, d, cniVersion="0.2.0", ipam={}),
    ),
    Case(
        "version-unsupported",
        1,
        lambda _t, _p: "incompatible CNI versions",
        lambda t, d: _conf(t, d, cniVersion="9.9.9"),
    ),
    Case(
        "cni-args-unknown-key",
        4,
        lambda _t, _p: 'ARGS: unknown args ["FOO=1"]',
        _conf,
        env=lambda _t, _p: {"args": "FOO=1"},
    ),
    Case(
        "cni-args-bad-mac",
        7,
        lambda _t, _p: "invalid args zz for MAC addr: address zz: invalid MAC address",
        _conf,
        env=lambda _t, _p: {"args": "IgnoreUnknown=1;MAC=zz"},
    ),
    Case(
        "cni-args-multicast-mac",
        7,
        lambda _t, _p: "invalid MAC 01:00:5e:00:00:01: a multicast address cannot be a unicast interface's",
        _conf,
        env=lambda _t, _p: {"args": "IgnoreUnknown=1;MAC=01:00:5e:00:00:01"},
    ),
    Case(
        "ipam-type-not-a-string",
        7,
        lambda _t, _p: (
            "failed to load netconf: json: cannot unmarshal number into Go struct field IPAM.ipam.type of type string"
        ),
        lambda t, d: _conf(t, d, ipam={"type": 5}),
    ),
    Case(
        "runtime-config-mac-not-a-string",
        7,
        lambda _t, _p: (
            "failed to load netconf: json: cannot unmarshal number "
            "into Go struct field .runtimeConfig.mac of type string"
        ),
        lambda t, d: _conf(t, d, runtimeConfig={"mac": 5}),
    ),
    Case(
        "dns-not-an-object",
        7,
        lambda _t, _p: (
            "failed to load netconf: json: cannot unmarshal string into Go struct field NetConf.dns of type types.DNS"
        ),
        lambda t, d: _conf(t, d, dns="10.66.0.53"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_add_fails_with_code_and_message_and_leaks_nothing(topo: Topology, tmp_path: Path, case: Case) -> None:
    """A bad master, MTU, netns, version, CNI_ARGS or IPAM config fails with its code and text and changes nothing."""
    data_dir = str(tmp_path / "mp-ipam")
    case.setup(topo, tmp_path)
    before = World.take(topo, data_dir)
    err = _cni_error(_add(topo, case.conf(topo, data_dir), topo.pods[0], **case.env(topo, tmp_path)))
    assert (err["code"], err["msg"]) == (case.code, case.msg(topo, tmp_path)), err
    before.assert_unchanged(topo)
    assert not os.path.exists(MISSING_NETNS)


def test_unsupported_version_names_supported_ones(topo: Topology, tmp_path: Path) -> None:
    """cniVersion 9.9.9 is refused with code 1 and details listing every version we support."""
    err = _cni_error(_add(topo, _conf(topo, str(tmp_path / "mp-ipam"), cniVersion="9.9.9"), topo.pods[0]))
    assert err["code"] == 1
    assert err["details"] == (
        'config is "9.9.9", plugin supports ["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0" "1.1.0"]'
    )


# --------------------------------------------------------------------------- interface name taken


def test_ifname_taken_by_a_veth_is_refused_and_left_alone(topo: Topology, tmp_path: Path) -> None:
    """ADD when a veth already holds CNI_IFNAME in the pod fails with code 4 and leaves that veth as it was."""
    pod = topo.pods[0]
    ip("-n", pod, "link", "add", IFNAME, "type", "veth", "peer", "name", "mp-vpeer")
    ip("-n", pod, "addr", "add", "10.66.9.2/24", "dev", IFNAME)
    data_dir = str(tmp_path / "mp-ipam")
    before = World.take(topo, data_dir)
    err = _cni_error(_add(topo, _conf(topo, data_dir), pod))
    assert (err["code"], err["msg"]) == (4, f'interface "{IFNAME}" already exists in netns "{topo.netns_path(pod)}"')
    before.assert_unchanged(topo)
    (veth,) = ip_json("-n", pod, "-d", "link", "show", "dev", IFNAME)
    assert veth["linkinfo"]["info_kind"] == "veth"
    assert not Path(data_dir).exists()  # IPAM never ran


def test_second_add_with_same_ifname_keeps_first_attachment(topo: Topology, tmp_path: Path) -> None:
    """A second ADD for our own ifname fails with code 4; the first link and reservation stay, no second one."""
    pod, data_dir = topo.pods[0], str(tmp_path / "mp-ipam")
    first = _add(topo, _conf(topo, data_dir), pod, container_id="mp-first")
    assert first.ok, first.stdout
    first_mac = first.json["interfaces"][0]["mac"]
    before = World.take(topo, data_dir)
    assert list(before.reservations.values()) == [f"mp-first\r\n{IFNAME}".encode()]
    err = _cni_error(_add(topo, _conf(topo, data_dir), pod, container_id="mp-second"))
    assert (err["code"], err["msg"]) == (4, f'interface "{IFNAME}" already exists in netns "{topo.netns_path(pod)}"')
    before.assert_unchanged(topo)
    (link,) = ip_json("-n", pod, "addr", "show", "dev", IFNAME)
    assert link["address"] == first_mac
    assert any(a["local"] == "10.66.0.10" for a in link["addr_info"])


# --------------------------------------------------------------------------- IPAM failures


def test_exhausted_pool_fails_and_removes_the_link(topo: Topology, tmp_path: Path) -> None:
    """With both range addresses held by other containers, ADD fails with host-local's text and leaves nothing."""
    data_dir = str(tmp_path / "mp-ipam")
    ipam = {
        "type": "host-local",
        "dataDir": data_dir,
        "subnet": "10.66.0.0/29",
        "rangeStart": "10.66.0.2",
        "rangeEnd": "10.66.0.3",
    }
    conf = _conf(topo, data_dir, ipam=ipam)
    _fill_pool(topo, topo.bin_dir.joinpath("multiplane-host-local").as_posix(), conf, ["mp-other1", "mp-other2"])
    before = World.take(topo, data_dir)
    assert len(before.reservations) == 2
    err = _cni_error(_add(topo, conf, topo.pods[0]))
    assert (err["code"], err["msg"]) == (
        999,
        "failed to allocate for range 0: no IP addresses available in range set: 10.66.0.2-10.66.0.3",
    )
    before.assert_unchanged(topo)


def test_second_family_exhausted_releases_the_first(topo: Topology, tmp_path: Path) -> None:
    """Dual-stack ADD whose IPv6 range is full fails and keeps no IPv4 reservation either."""
    data_dir = str(tmp_path / "mp-ipam")
    ipam = {
        "type": "host-local",
        "dataDir": data_dir,
        "ranges": [
            [{"subnet": "10.66.0.0/24", "rangeStart": "10.66.0.10", "rangeEnd": "10.66.0.20"}],
            [{"subnet": "fd00:66::/64", "rangeStart": "fd00:66::10", "rangeEnd": "fd00:66::10"}],
        ],
    }
    conf = _conf(topo, data_dir, ipam=ipam)
    _fill_pool(topo, topo.bin_dir.joinpath("multiplane-host-local").as_posix(), conf, ["mp-other"])
    before = World.take(topo, data_dir)
    err = _cni_error(_add(topo, conf, topo.pods[0]))
    assert (err["code"], err["msg"]) == (
        999,
        "failed to allocate for range 1: no IP addresses available in range set: fd00:66::10-fd00:66::10",
    )
    before.assert_unchanged(topo)


# --------------------------------------------------------------------------- failures after IPAM succeeded


def test_unreachable_route_gateway_rolls_back_ipam_and_link(topo: Topology, tmp_path: Path) -> None:
    """A route via an off-link gateway fails after IPAM reserved 10.66.0.10; reservation released, link removed."""
    data_dir = str(tmp_path / "mp-ipam")
    ipam = {
        "type": "host-local",
        "dataDir": data_dir,
        "subnet": "10.66.0.0/24",
        "rangeStart": "10.66.0.10",
        "rangeEnd": "10.66.0.20",
        "routes": [{"dst": "10.99.0.0/16", "gw": "10.98.0.1"}],
    }
    before = World.take(topo, data_dir)
    err = _cni_error(_add(topo, _conf(topo, data_dir, ipam=ipam), topo.pods[0]))
    assert (err["code"], err["msg"]) == (
        999,
        "failed to add route '10.99.0.0/16 via 10.98.0.1 dev net1': network is unreachable",
    )
    before.assert_unchanged(topo)
    # IPAM did run (its cursor moved), so the missing reservation file was released, not never made.
    assert (Path(data_dir) / "mp-failnet" / "last_reserved_ip.0").read_text() == "10.66.0.10"


def test_ipv6_dad_failure_rolls_back_both_reservations_and_link(topo: Topology, tmp_path: Path) -> None:
    """An IPv6 address the LAN host already owns fails DAD; ADD fails and releases both families' reservations."""
    ip("-n", topo.lan, "addr", "add", "fd00:66::5/64", "dev", topo.peer, "nodad")
    data_dir = str(tmp_path / "mp-ipam")
    ipam = {
        "type": "host-local",
        "dataDir": data_dir,
        "ranges": [
            [{"subnet": "10.66.0.0/24", "rangeStart": "10.66.0.30", "rangeEnd": "10.66.0.30"}],
            [{"subnet": "fd00:66::/64", "rangeStart": "fd00:66::5", "rangeEnd": "fd00:66::5", "gateway": "fd00:66::1"}],
        ],
        "routes": [{"dst": "::/0"}],
    }
    before = World.take(topo, data_dir)
    err = _cni_error(_add(topo, _conf(topo, data_dir, ipam=ipam), topo.pods[0]))
    assert (err["code"], err["msg"]) == (999, 'failed to settle addresses for "net1": address fd00:66::5 failed DAD')
    before.assert_unchanged(topo)
    assert (Path(data_dir) / "mp-failnet" / "last_reserved_ip.1").read_text() == "fd00:66::5"


def test_passthru_on_master_with_a_macvlan_is_refused_by_kernel(topo: Topology, tmp_path: Path) -> None:
    """passthru on a master already carrying a macvlan fails with the kernel's EINVAL; only the first one remains."""
    first_pod, pod = topo.pods
    data_dir = str(tmp_path / "mp-ipam")
    first = _add(topo, _conf(topo, data_dir, ipam={}), first_pod, container_id="mp-first")
    assert first.ok, first.stdout
    before = World.take(topo, data_dir)
    err = _cni_error(_add(topo, _conf(topo, data_dir, mode="passthru", ipam={}), pod))
    assert (err["code"], err["msg"]) == (999, "failed to create macvlan: invalid argument")
    before.assert_unchanged(topo)
    assert [link[1] for link in before.pods[first_pod]] == ["lo", IFNAME]


# --------------------------------------------------------------------------- against the reference


@dataclass
class LeakCase:
    """A failure where the reference 1.1.1 leaves its macvlan in the pod."""

    id: str
    conf: Callable[[Topology, str], dict[str, Any]]
    fill: bool = False
    ref_up: bool = False


def _exhausted(t: Topology, d: str) -> dict[str, Any]:
    ipam = {
        "type": "host-local",
        "dataDir": d,
        "subnet": "10.66.0.0/29",
        "rangeStart": "10.66.0.2",
        "rangeEnd": "10.66.0.3",
    }
    return _conf(t, d, ipam=ipam)


def _offlink(t: Topology, d: str) -> dict[str, Any]:
    ipam = {
        "type": "host-local",
        "dataDir": d,
        "subnet": "10.66.0.0/24",
        "routes": [{"dst": "10.99.0.0/16", "gw": "10.98.0.1"}],
    }
    return _conf(t, d, ipam=ipam)


LEAK_CASES = [
    LeakCase("ipam-unknown-type", lambda t, d: _conf(t, d, ipam={"type": "mp-nosuchipam"})),
    LeakCase("ipam-exhausted", _exhausted, fill=True),
    LeakCase("route-gateway-off-link", _offlink, ref_up=True),
    LeakCase("v0.2.0-l2-only", lambda t, d: _conf(t, d, cniVersion="0.2.0", ipam={}), ref_up=True),
]


@pytest.mark.parametrize("case", LEAK_CASES, ids=[c.id for c in LEAK_CASES])
def test_reference_leaks_the_link_where_we_leave_none(topo: Topology, tmp_path: Path, case: LeakCase) -> None:
    """Difference: after this failure the reference's macvlan stays in the pod (§1.4), ours is gone; no IP is kept."""
    outcome = {}
    for binary, host_local, pod in ((REF, REF_HOST_LOCAL, topo.pods[0]), (OURS, None, topo.pods[1])):
        data_dir = str(tmp_path / f"mp-ipam-{'ref' if binary == REF else 'ours'}")
        conf = case.conf(topo, data_dir)
        if case.fill:
            _fill_pool(
                topo, host_local or str(topo.bin_dir / "multiplane-host-local"), conf, ["mp-other1", "mp-other2"]
            )
        before = World.take(topo, data_dir, [pod])
        err = (
            _cni_error(topo.cni(binary, "ADD", conf, pod))
            if binary == OURS
            else topo.cni(binary, "ADD", conf, pod).error()
        )
        outcome[binary] = (before, err, pod, data_dir)

    ref_before, ref_err, ref_pod, ref_dir = outcome[REF]
    ours_before, ours_err, _pod, _dir = outcome[OURS]
    if case.id == "route-gateway-off-link":
        # Same failure, different rendering of the destination (Go prints net.IPNet as {ip mask}).
        assert (
            ref_err["msg"]
            == "failed to add route '{10.99.0.0 ffff0000} via 10.98.0.1 dev net1': network is unreachable"
        )
        assert ours_err["msg"] == "failed to add route '10.99.0.0/16 via 10.98.0.1 dev net1': network is unreachable"
    else:
        assert ours_err["msg"] == ref_err["msg"]
    assert ours_err["code"] == ref_err["code"] == 999

    ours_before.assert_unchanged(topo)
    (leaked,) = ip_json("-n", ref_pod, "-d", "link", "show", "dev", IFNAME)
    assert leaked["linkinfo"]["info_kind"] == "macvlan"
    assert ("UP" in leaked["flags"]) == case.ref_up
    assert _reservations(ref_dir) == ref_before.reservations  # the reference does release (or never took) the IP


# --------------------------------------------------------------------------- a killed ADD, then DEL

# A runtime whose ADD dies (SIGKILL, OOM, node reboot of the runtime only) calls DEL for the same
# container id and ifname. ADD creates the macvlan under a temporary name derived from exactly those
# two (docs/macvlan.md), so DEL can find the link a kill left between create and rename.


def _tmp_name(container_id: str, ifname: str) -> str:
    """The documented temporary name: `mpv` + CRC-32 of "<container id>\\0<ifname>" as 8 hex digits."""
    return "mpv" + format(zlib.crc32(f"{container_id}\0{ifname}".encode()), "08x")


def _create_like_the_plugin(topo: Topology, pod: str, name: str) -> None:
    """One RTM_NEWLINK, as ADD sends it: a bridge macvlan of the master created directly inside the pod."""
    ip("link", "add", name, "link", topo.master, "netns", pod, "type", "macvlan", "mode", "bridge")


def _names(pod: str) -> list[str]:
    return sorted(link["ifname"] for link in ip_json("-n", pod, "link", "show"))


def _del(topo: Topology, conf: dict[str, Any], pod: str, **kw: Any) -> None:
    inv = topo.cni(OURS, "DEL", conf, pod, **kw)
    assert inv.ok and inv.stdout == "", inv.stdout + inv.stderr


def test_del_removes_the_temporary_link_a_killed_add_left(topo: Topology, tmp_path: Path) -> None:
    """A macvlan under this attachment's temporary name (ADD killed before the rename) is removed by DEL."""
    pod, data_dir = topo.pods[0], str(tmp_path / "mp-ipam")
    before = World.take(topo, data_dir)
    _create_like_the_plugin(topo, pod, _tmp_name(CID, IFNAME))
    _del(topo, _conf(topo, data_dir), pod, container_id=CID, ifname=IFNAME)
    before.assert_unchanged(topo)
    _del(topo, _conf(topo, data_dir), pod, container_id=CID, ifname=IFNAME)  # and a repeated DEL still succeeds


def test_del_leaves_temporary_links_that_are_not_this_attachments(topo: Topology, tmp_path: Path) -> None:
    """DEL removes only its own leftover: another attachment's temporary macvlans and a veth holding our
    temporary name (not a macvlan, so not made by us) stay, untouched."""
    pod, data_dir = topo.pods[0], str(tmp_path / "mp-ipam")
    other_ctr, other_if, ours = _tmp_name("mp-other", IFNAME), _tmp_name(CID, "net2"), _tmp_name(CID, IFNAME)
    _create_like_the_plugin(topo, pod, other_ctr)
    _create_like_the_plugin(topo, pod, other_if)
    ip("-n", pod, "link", "add", ours, "type", "veth", "peer", "name", "mp-vpeer")
    before = _pod_links(pod)
    _del(topo, _conf(topo, data_dir), pod, container_id=CID, ifname=IFNAME)
    assert _pod_links(pod) == before
    assert _names(pod) == sorted(["lo", other_ctr, other_if, ours, "mp-vpeer"])


def test_add_after_a_killed_add_replaces_its_temporary_link(topo: Topology, tmp_path: Path) -> None:
    """A retried ADD (no DEL in between) removes the leftover of the killed one and succeeds; DEL then leaves nothing."""
    pod, data_dir = topo.pods[0], str(tmp_path / "mp-ipam")
    before = World.take(topo, data_dir)
    _create_like_the_plugin(topo, pod, _tmp_name(CID, IFNAME))
    inv = _add(topo, _conf(topo, data_dir), pod, container_id=CID)
    assert inv.ok, inv.stdout + inv.stderr
    assert _names(pod) == ["lo", IFNAME]
    _del(topo, _conf(topo, data_dir), pod, container_id=CID)
    before.assert_unchanged(topo)


def test_add_refuses_a_foreign_link_holding_the_temporary_name(topo: Topology, tmp_path: Path) -> None:
    """A link that is not a macvlan under our temporary name is not ours to remove: ADD fails (code 4), keeps it."""
    pod, data_dir = topo.pods[0], str(tmp_path / "mp-ipam")
    tmp = _tmp_name(CID, IFNAME)
    ip("-n", pod, "link", "add", tmp, "type", "veth", "peer", "name", "mp-vpeer")
    before = World.take(topo, data_dir)
    err = _cni_error(_add(topo, _conf(topo, data_dir), pod, container_id=CID))
    assert (err["code"], err["msg"]) == (
        4,
        f'interface "{tmp}" (the temporary name for "{IFNAME}") already exists in netns "{topo.netns_path(pod)}" '
        "and is not a macvlan",
    )
    assert _pod_links(pod) == before.pods[pod]
    assert not Path(data_dir).exists()  # IPAM never ran


# The faults: the real plugin (argv[0] multiplane-macvlan, the installed package), or the daemon
# that serves it, halts right after one step returns, so the test can SIGKILL it at exactly that
# point. The one-shot process stops itself (SIGSTOP). In the daemon, a process-directed SIGSTOP
# may be taken by another thread while the worker runs on a little (and renames the link): there
# the worker thread blocks for good instead, after creating $MP_STOP_MARK.
_STOP_AFTER = """\
import os, signal, threading
from multiplane.netlink import links
from multiplane.plugins import delegation

def halt():
    mark = os.environ.get("MP_STOP_MARK")
    if not mark:
        os.kill(os.getpid(), signal.SIGSTOP)
        return
    open(mark, "w").close()
    threading.Event().wait()

def stop_after(module, name, when=lambda *a: True):
    real = getattr(module, name)
    def step(*args, **kwargs):
        out = real(*args, **kwargs)
        if when(*args):
            halt()
        return out
    setattr(module, name, step)

point = os.environ["MP_STOP_AFTER"]
if point == "create":
    stop_after(links, "create_macvlan")
elif point == "rename":
    stop_after(links, "rename_link")
elif point == "ipam":
    stop_after(delegation, "ipam", lambda _req, _type, command: command == "ADD")
"""
_STOPPER = (
    _STOP_AFTER
    + """\
import sys
from multiplane.cli import main
sys.exit(main(["multiplane-macvlan"]))
"""
)


@dataclass
class Stopped:
    """An ADD halted after a step: `victim` is what gets SIGKILLed (the plugin process, or the daemon running it)."""

    victim: subprocess.Popen[bytes]
    answer: Invocation | None = None  # under the daemon: what the runtime's call printed once the daemon died


def _wait_halted(proc: subprocess.Popen[bytes], mark: Path | None, point: str, what: Callable[[], str]) -> None:
    """Return once `proc` is stopped (or, with `mark`, once the mark exists); fail if it exits first or after 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if mark is not None:
            if mark.exists():
                return
            if proc.poll() is not None:
                raise AssertionError(f"the daemon exited before {point}: {what()}")
            time.sleep(0.01)
            continue
        pid, status = os.waitpid(proc.pid, os.WUNTRACED | os.WNOHANG)
        if pid == 0:
            time.sleep(0.01)
            continue
        if os.WIFSTOPPED(status):
            return
        proc.returncode = os.waitstatus_to_exitcode(status)
        raise AssertionError(f"ADD ended before {point}: {what()}")
    proc.kill()
    proc.wait()
    raise AssertionError(f"ADD did not reach {point} within 30 s: {what()}")


@contextmanager
def _halted_add(
    topo: Topology, conf: dict[str, Any], pod: str, point: str, tmp_path: Path, front: FrontDoor
) -> Iterator[Stopped]:
    """Start ADD with the plugin process (or, under the daemon front door, the worker of a daemon of its own)
    halting after `point`; on leaving, SIGKILL the process (the daemon) and, under the daemon, collect the
    runtime call's answer."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": CID,
        "CNI_NETNS": topo.netns_path(pod),
        "CNI_IFNAME": IFNAME,
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=mp",
        "CNI_PATH": topo.cni_path,
    }
    err_path = tmp_path / "mp-stopper.err"
    daemon, mark = None, None
    if front.is_daemon:
        mark = tmp_path / "mp-halted"
        daemon = Daemon(inject=_STOP_AFTER, extra_env={"MP_STOP_AFTER": point, "MP_STOP_MARK": str(mark)}).start()
        argv, env = [str(topo.bin_dir / OURS)], {**env, **daemon.env}
    else:
        script = tmp_path / "mp-stopper.py"
        script.write_text(_STOPPER)
        argv, env = [sys.executable, str(script)], {**env, **cni.FRONT_DOOR_ENV, "MP_STOP_AFTER": point}
    try:
        with err_path.open("wb") as err:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE if daemon else subprocess.DEVNULL,
                stderr=err,
                env=env,
            )
    except BaseException:
        if daemon is not None:
            daemon.kill()
        raise
    victim = proc if daemon is None else daemon.proc
    assert victim is not None
    stopped = Stopped(victim)
    try:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(conf).encode())
        proc.stdin.close()
        _wait_halted(victim, mark, point, lambda: err_path.read_text() + (daemon.log_text() if daemon else ""))
        yield stopped
    finally:
        victim.kill()
        victim.wait()
        if daemon is not None:
            assert proc.stdout is not None
            with proc.stdout:
                out = proc.stdout.read()  # the client returns once the daemon's death closes the connection
            stopped.answer = Invocation(proc.wait(60), out.decode(), err_path.read_text())
            daemon.kill()  # the stale socket and the log go with its directory


@pytest.mark.parametrize("point", ["create", "rename", "ipam"])
def test_del_after_add_killed_mid_way_leaves_nothing(
    topo: Topology, tmp_path: Path, point: str, via_front_door: FrontDoor
) -> None:
    """ADD SIGKILLed right after creating the link (temporary name), after renaming it, or after IPAM reserved
    an address: DEL for the same container id and ifname removes the link and the reservation."""
    pod, data_dir = topo.pods[0], str(tmp_path / "mp-ipam")
    conf = _conf(topo, data_dir)
    before = World.take(topo, data_dir)
    with _halted_add(topo, conf, pod, point, tmp_path, via_front_door) as stopped:
        (left,) = (name for name in _names(pod) if name != "lo")
        assert TMP_NAME.fullmatch(left) if point == "create" else left == IFNAME, left
        reserved = _reservations(data_dir)
        assert list(reserved.values()) == ([f"{CID}\r\n{IFNAME}".encode()] if point == "ipam" else [])
    assert stopped.victim.returncode == -signal.SIGKILL
    if stopped.answer is not None:
        # The runtime's call: the daemon took the ADD and died; the client says so (try again), nothing more.
        err = _cni_error(stopped.answer)
        assert err["code"] == 11 and "took the ADD but did not answer" in err["msg"], err
    assert _names(pod) == sorted(["lo", left])  # what the kill left behind
    _del(topo, conf, pod, container_id=CID, ifname=IFNAME)
    before.assert_unchanged(topo)
    if point == "create":
        assert left == _tmp_name(CID, IFNAME)  # the plugin uses the documented name
