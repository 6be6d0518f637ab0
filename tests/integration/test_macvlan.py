"""multiplane-macvlan in real network namespaces: the kernel state every command leaves behind.

Every test runs through both front doors (the one-shot process and the node daemon; see
tests/integration/conftest.py) with the same assertions.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.cni import Invocation, run
from tests.daemon_harness import FrontDoor
from tests.topology import Topology, ip, ip_json, ns_exec

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("via_front_door")]

MACVLAN = "multiplane-macvlan"
NET = "mp-net"
POD_ARGS = "IgnoreUnknown=1;K8S_POD_NAME=mp"
V4_RANGE = {"subnet": "10.66.0.0/24", "rangeStart": "10.66.0.10", "rangeEnd": "10.66.0.29", "gateway": "10.66.0.1"}
V6_RANGE = {"subnet": "fd00:66::/64", "rangeStart": "fd00:66::10", "rangeEnd": "fd00:66::29", "gateway": "fd00:66::1"}
DNS = {"nameservers": ["10.66.0.53"], "domain": "mp.example", "search": ["mp.example"], "options": ["ndots:2"]}


# --- helpers ---------------------------------------------------------------------------------


def _conf(
    topo: Topology, version: str = "1.0.0", *, ipam: bool = True, v6: bool = False, **extra: Any
) -> dict[str, Any]:
    """A macvlan config on the topology's master; host-local IPAM on 10.66.0.0/24 (and fd00:66::/64)."""
    conf: dict[str, Any] = {"cniVersion": version, "name": NET, "type": MACVLAN, "master": topo.master}
    if ipam:
        ranges = [[dict(V4_RANGE)]] + ([[dict(V6_RANGE)]] if v6 else [])
        routes = [{"dst": "0.0.0.0/0"}] + ([{"dst": "::/0"}] if v6 else [])
        conf["ipam"] = {"type": "multiplane-host-local", "dataDir": topo.data_dir, "ranges": ranges, "routes": routes}
    else:
        conf["ipam"] = {}
    conf.update(extra)
    return conf


def _add(topo: Topology, conf: dict[str, Any], pod: str | None = None, **kw: Any) -> dict[str, Any]:
    inv = topo.cni(MACVLAN, "ADD", conf, pod or topo.pods[0], **kw)
    assert inv.ok, f"ADD failed: {inv.stdout} {inv.stderr}"
    result: dict[str, Any] = inv.json
    return result


def _link(ns: str | None, ifname: str = "net1") -> dict[str, Any] | None:
    """`ip -d -j link` of `ifname` in `ns` (None: the root namespace), or None when absent."""
    for link in ip_json(*(["-n", ns] if ns else []), "-d", "link", "show"):
        if link["ifname"] == ifname:
            return dict(link)
    return None


def _ifindex(ns: str | None, ifname: str) -> int:
    link = _link(ns, ifname)
    assert link is not None, f"{ifname} missing"
    return int(link["ifindex"])


def _addr_info(ns: str, ifname: str = "net1") -> list[dict[str, Any]]:
    return list(ip_json("-n", ns, "addr", "show", "dev", ifname)[0]["addr_info"])


def _routes(ns: str, family: str = "-4") -> list[dict[str, Any]]:
    return list(ip_json("-n", ns, family, "route", "show"))


def _sysctl(ns: str, key: str) -> str:
    proc = ns_exec(ns, "cat", f"/proc/sys/{key}")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _reservations(topo: Topology) -> dict[str, str]:
    """host-local's reservation files of our network: address → owner text."""
    directory = Path(topo.data_dir) / NET
    if not directory.is_dir():
        return {}
    out = {}
    for entry in directory.iterdir():
        try:
            ipaddress.ip_address(entry.name)
        except ValueError:
            continue
        out[entry.name] = entry.read_bytes().decode()
    return out


def _tmp_links(topo: Topology) -> list[str]:
    """Links left under the plugin's temporary name (mpv…) in the root or any pod namespace."""
    names = [link["ifname"] for link in topo.links(None)]
    for pod in topo.pods:
        names += [link["ifname"] for link in topo.links(pod)]
    return [name for name in names if name.startswith("mpv")]


def _assert_nothing_created(topo: Topology, pod: str) -> None:
    assert _link(pod) is None
    assert _tmp_links(topo) == []
    assert _reservations(topo) == {}


def _error(inv: Invocation, code: int, text: str) -> dict[str, Any]:
    err = inv.error()
    assert err["code"] == code, err
    assert text in err["msg"], err
    return err


@contextmanager
def _private_host(topo: Topology, default_route: bool = True) -> Iterator[tuple[str, str]]:
    """A namespace standing in for the node: a veth pair, the second end carrying the default route."""
    ns, first, second = f"mp-h{topo.tag}", f"mp-da{topo.tag}", f"mp-db{topo.tag}"
    try:
        ip("netns", "add", ns)
        ip("-n", ns, "link", "add", first, "type", "veth", "peer", "name", second)
        for name in (first, second):
            ip("-n", ns, "link", "set", name, "up")
        ip("-n", ns, "addr", "add", "10.67.0.2/24", "dev", first)
        ip("-n", ns, "addr", "add", "10.67.1.2/24", "dev", second)
        if default_route:
            ip("-n", ns, "route", "add", "default", "via", "10.67.1.1", "dev", second)
        yield ns, second
    finally:
        ip("netns", "del", ns, check=False)


def _in(ns: str) -> list[str]:
    return ["ip", "netns", "exec", ns]


def _run_in(
    topo: Topology, host_ns: str, command: str, conf: dict[str, Any], pod: str, front_env: dict[str, str]
) -> Invocation:
    """Run the plugin with `host_ns` as its own (the node's) network namespace, through `front_env`.

    A daemon serves the network namespace it runs in (the node's): under the daemon front door
    the caller passes the variables of a daemon started in `host_ns` (FrontDoor.own_daemon).
    """
    return run(
        ["ip", "netns", "exec", host_ns, str(topo.bin_dir / MACVLAN)],
        command,
        conf,
        container_id="mp-ctr",
        netns=topo.netns_path(pod),
        ifname="net1",
        args=POD_ARGS,
        path=topo.cni_path,
        env=front_env,
    )


# --- ADD: L3 ---------------------------------------------------------------------------------


def test_add_l3_result_shape(topo: Topology) -> None:
    """An L3 ADD reports the pod interface, its address on interface 0, the IPAM routes and the config's dns."""
    result = _add(topo, _conf(topo, dns=DNS))
    assert result["cniVersion"] == "1.0.0"
    assert len(result["interfaces"]) == 1
    iface = result["interfaces"][0]
    assert iface["name"] == "net1"
    assert iface["sandbox"] == topo.netns_path(topo.pods[0])
    assert iface["mac"] == iface["mac"].lower() and len(iface["mac"].split(":")) == 6
    assert result["ips"] == [{"interface": 0, "address": "10.66.0.10/24", "gateway": "10.66.0.1"}]
    assert result["routes"] == [{"dst": "0.0.0.0/0"}]
    assert result["dns"] == DNS


def test_add_l3_link_is_a_bridge_macvlan_of_the_master(topo: Topology) -> None:
    """The pod link is an up macvlan in bridge mode whose parent is the master and whose MAC is the result's."""
    result = _add(topo, _conf(topo))
    link = _link(topo.pods[0])
    assert link is not None
    assert link["linkinfo"]["info_kind"] == "macvlan"
    assert link["linkinfo"]["info_data"]["mode"] == "bridge"
    # The parent lives in another namespace, so ip shows its index and a netns id.
    assert link["link_index"] == _ifindex(None, topo.master)
    assert "link_netnsid" in link
    assert "UP" in link["flags"]
    assert link["operstate"] == "UP"
    assert link["address"] == result["interfaces"][0]["mac"]


def test_add_l3_configures_address_route_and_arp_notify(topo: Topology) -> None:
    """ADD puts the address (with broadcast) and the default route via the gateway on the link, and sets arp_notify."""
    _add(topo, _conf(topo))
    pod = topo.pods[0]
    v4 = [a for a in _addr_info(pod) if a["family"] == "inet"]
    assert [(a["local"], a["prefixlen"], a.get("broadcast")) for a in v4] == [("10.66.0.10", 24, "10.66.0.255")]
    defaults = [r for r in _routes(pod) if r["dst"] == "default"]
    assert [(r.get("gateway"), r["dev"]) for r in defaults] == [("10.66.0.1", "net1")]
    assert _sysctl(pod, "net/ipv4/conf/net1/arp_notify") == "1"


def test_add_l3_records_reservation_and_leaves_no_tmp_link(topo: Topology) -> None:
    """ADD writes the host-local reservation for this attachment and leaves no temporary-named link anywhere."""
    _add(topo, _conf(topo))
    assert _reservations(topo) == {"10.66.0.10": "mp-ctr\r\nnet1"}
    assert _tmp_links(topo) == []


def test_add_when_ifname_taken_fails_and_keeps_the_first_attachment(topo: Topology) -> None:
    """A second ADD for an ifname already in the pod fails (code 4) and leaves the first link and reservation alone."""
    first = _add(topo, _conf(topo), container_id="mp-ctr-a")
    inv = topo.cni(MACVLAN, "ADD", _conf(topo), topo.pods[0], container_id="mp-ctr-b")
    _error(inv, 4, 'interface "net1" already exists')
    link = _link(topo.pods[0])
    assert link is not None and link["address"] == first["interfaces"][0]["mac"]
    assert _reservations(topo) == {"10.66.0.10": "mp-ctr-a\r\nnet1"}
    assert _tmp_links(topo) == []


def test_add_with_exhausted_pool_removes_the_link(topo: Topology) -> None:
    """When IPAM has no address left, ADD passes its error on and leaves no link in the pod."""
    conf = _conf(topo)
    conf["ipam"]["ranges"] = [[{**V4_RANGE, "rangeEnd": "10.66.0.10"}]]
    _add(topo, conf, topo.pods[0], container_id="mp-ctr-a")
    inv = topo.cni(MACVLAN, "ADD", conf, topo.pods[1], container_id="mp-ctr-b")
    assert "no IP addresses available" in inv.error()["msg"]
    assert _link(topo.pods[1]) is None
    assert _tmp_links(topo) == []
    assert _reservations(topo) == {"10.66.0.10": "mp-ctr-a\r\nnet1"}


def test_add_failing_after_ipam_releases_the_address_and_removes_the_link(topo: Topology) -> None:
    """A route that cannot be added (off-link gateway) fails ADD, and both the reservation and the link are undone."""
    conf = _conf(topo)
    conf["ipam"]["routes"] = [{"dst": "10.99.0.0/16", "gw": "10.77.0.1"}]
    inv = topo.cni(MACVLAN, "ADD", conf, topo.pods[0])
    err = inv.error()
    assert "10.99.0.0/16" in err["msg"] and "unreachable" in err["msg"], err
    _assert_nothing_created(topo, topo.pods[0])


# --- modes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["bridge", "private", "vepa"])
def test_mode_is_applied(topo: Topology, mode: str) -> None:
    """Each configured macvlan mode is what the kernel reports for the pod link."""
    _add(topo, _conf(topo, ipam=False, mode=mode))
    link = _link(topo.pods[0])
    assert link is not None and link["linkinfo"]["info_data"]["mode"] == mode


def test_passthru_on_a_master_without_macvlans(topo: Topology) -> None:
    """passthru mode works on a master that has no other macvlan."""
    _add(topo, _conf(topo, ipam=False, mode="passthru"))
    link = _link(topo.pods[0])
    assert link is not None and link["linkinfo"]["info_data"]["mode"] == "passthru"
    assert "UP" in link["flags"]


def test_passthru_on_a_master_with_a_macvlan_fails_cleanly(topo: Topology) -> None:
    """passthru on a master that already has a macvlan is refused by the kernel and leaves nothing in the pod."""
    _add(topo, _conf(topo, ipam=False), topo.pods[0])
    inv = topo.cni(MACVLAN, "ADD", _conf(topo, mode="passthru"), topo.pods[1], container_id="mp-ctr-b")
    err = inv.error()
    assert "failed to create macvlan" in err["msg"], err
    _assert_nothing_created(topo, topo.pods[1])


def test_unknown_mode_is_rejected(topo: Topology) -> None:
    """An unknown mode is a config error (code 7) and creates nothing."""
    inv = topo.cni(MACVLAN, "ADD", _conf(topo, mode="foo"), topo.pods[0])
    _error(inv, 7, 'unknown macvlan mode: "foo"')
    _assert_nothing_created(topo, topo.pods[0])


# --- MTU -------------------------------------------------------------------------------------


def test_mtu_is_applied(topo: Topology) -> None:
    """A configured mtu below the master's is set on the pod link and reported in a 1.1.0 result."""
    result = _add(topo, _conf(topo, "1.1.0", ipam=False, mtu=1400))
    link = _link(topo.pods[0])
    assert link is not None and link["mtu"] == 1400
    assert result["interfaces"][0]["mtu"] == 1400


@pytest.mark.parametrize("mtu", [9000, -1])
def test_mtu_out_of_range_is_rejected(topo: Topology, mtu: int) -> None:
    """An mtu above the master's (or negative) is a config error (code 7) and creates nothing."""
    inv = topo.cni(MACVLAN, "ADD", _conf(topo, mtu=mtu), topo.pods[0])
    _error(inv, 7, f"invalid MTU {mtu}")
    _assert_nothing_created(topo, topo.pods[0])


# --- MAC -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conf_mac", "arg_mac", "runtime_mac", "expected"),
    [
        ("02:aa:bb:cc:dd:01", None, None, "02:aa:bb:cc:dd:01"),
        ("02:aa:bb:cc:dd:01", "02:aa:bb:cc:dd:02", None, "02:aa:bb:cc:dd:02"),
        ("02:aa:bb:cc:dd:01", "02:aa:bb:cc:dd:02", "02:aa:bb:cc:dd:03", "02:aa:bb:cc:dd:03"),
        (None, "02-aa-bb-cc-dd-05", None, "02:aa:bb:cc:dd:05"),
    ],
    ids=["conf", "args-over-conf", "runtime-over-args", "dash-form"],
)
def test_mac_precedence(
    topo: Topology, conf_mac: str | None, arg_mac: str | None, runtime_mac: str | None, expected: str
) -> None:
    """The MAC is conf `mac` < CNI_ARGS MAC= < runtimeConfig.mac, normalised, on both the link and the result."""
    conf = _conf(topo)
    if conf_mac:
        conf["mac"] = conf_mac
    if runtime_mac:
        conf["capabilities"] = {"mac": True}
        conf["runtimeConfig"] = {"mac": runtime_mac}
    args = POD_ARGS + (f";MAC={arg_mac}" if arg_mac else "")
    result = _add(topo, conf, args=args)
    assert result["interfaces"][0]["mac"] == expected
    link = _link(topo.pods[0])
    assert link is not None and link["address"] == expected


def test_multicast_mac_is_rejected(topo: Topology) -> None:
    """A multicast MAC is a config error (code 7) and creates nothing."""
    inv = topo.cni(MACVLAN, "ADD", _conf(topo), topo.pods[0], args=POD_ARGS + ";MAC=01:00:5e:00:00:01")
    _error(inv, 7, "01:00:5e:00:00:01")
    _assert_nothing_created(topo, topo.pods[0])


# --- master selection ------------------------------------------------------------------------


def test_master_omitted_uses_the_default_route_interface(topo: Topology, via_front_door: FrontDoor) -> None:
    """Without `master`, the macvlan hangs off the interface of the node's default route."""
    conf = _conf(topo, ipam=False)
    del conf["master"]
    with _private_host(topo) as (host, default_dev), via_front_door.own_daemon(prefix=_in(host)) as env:
        inv = _run_in(topo, host, "ADD", conf, topo.pods[0], env)
        assert inv.ok, inv.stdout + inv.stderr
        link = _link(topo.pods[0])
        assert link is not None and link["linkinfo"]["info_kind"] == "macvlan"
        assert link["link_index"] == _ifindex(host, default_dev)


def test_master_omitted_without_default_route_is_a_config_error(topo: Topology, via_front_door: FrontDoor) -> None:
    """Without `master` and without a default route on the node, ADD fails with code 7 and creates nothing."""
    conf = _conf(topo, ipam=False)
    del conf["master"]
    with _private_host(topo, default_route=False) as (host, _dev), via_front_door.own_daemon(prefix=_in(host)) as env:
        inv = _run_in(topo, host, "ADD", conf, topo.pods[0], env)
        _error(inv, 7, "no default route interface found")
        assert _link(topo.pods[0]) is None


def test_missing_master_is_a_config_error(topo: Topology) -> None:
    """A master that does not exist is a config error (code 7) naming it, and creates nothing."""
    inv = topo.cni(MACVLAN, "ADD", _conf(topo, master="mp-nope0"), topo.pods[0])
    _error(inv, 7, 'failed to find master interface "mp-nope0"')
    _assert_nothing_created(topo, topo.pods[0])


def test_link_in_container_uses_a_master_inside_the_pod(topo: Topology) -> None:
    """With linkInContainer, the macvlan is created on a master that lives in the pod namespace."""
    pod = topo.pods[0]
    inner, outer = f"mp-ca{topo.tag}", f"mp-cb{topo.tag}"
    try:
        ip("link", "add", inner, "type", "veth", "peer", "name", outer)
        ip("link", "set", inner, "netns", pod)
        ip("-n", pod, "link", "set", inner, "up")
        ip("link", "set", outer, "up")
        result = _add(topo, _conf(topo, master=inner, linkInContainer=True))
        link = _link(pod)
        assert link is not None and link["linkinfo"]["info_kind"] == "macvlan"
        # A parent in the same namespace is shown by name, with no netns id.
        assert link.get("link") == inner and "link_netnsid" not in link
        assert result["ips"][0]["address"] == "10.66.0.10/24"
    finally:
        ip("link", "del", outer, check=False)


def test_link_in_container_does_not_look_on_the_host(topo: Topology) -> None:
    """With linkInContainer, a master that exists only on the host is not found (code 7)."""
    inv = topo.cni(MACVLAN, "ADD", _conf(topo, linkInContainer=True), topo.pods[0])
    _error(inv, 7, f'failed to find master interface "{topo.master}"')
    _assert_nothing_created(topo, topo.pods[0])


# --- L2 only ---------------------------------------------------------------------------------


def test_l2_only_creates_an_up_link_without_addresses(topo: Topology) -> None:
    """Without IPAM, ADD creates an up macvlan with no IPv4 address and reports no ips."""
    result = _add(topo, _conf(topo, ipam=False))
    assert [i["name"] for i in result["interfaces"]] == ["net1"]
    assert "ips" not in result
    link = _link(topo.pods[0])
    assert link is not None and "UP" in link["flags"]
    assert [a for a in _addr_info(topo.pods[0]) if a["family"] == "inet"] == []


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_l2_only_with_pre_0_3_version_fails_without_leftovers(topo: Topology, version: str) -> None:
    """A pre-0.3.0 result cannot describe an L2 attachment, so ADD fails and leaves no link in the pod."""
    inv = topo.cni(MACVLAN, "ADD", _conf(topo, version, ipam=False), topo.pods[0])
    err = inv.error()
    assert "cannot convert: no valid IP addresses" in err["msg"], err
    assert topo.links(topo.pods[0]) and [link["ifname"] for link in topo.links(topo.pods[0])] == ["lo"]
    assert _tmp_links(topo) == []


# --- dual stack ------------------------------------------------------------------------------


def test_dual_stack_configures_ipv6(topo: Topology) -> None:
    """A dual-stack ADD enables IPv6 on the link, whose global address has finished DAD, with a v6 default route."""
    pod = topo.pods[0]
    for key in ("all", "default"):
        assert ns_exec(pod, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1").returncode == 0
    result = _add(topo, _conf(topo, v6=True))
    assert [i["address"] for i in result["ips"]] == ["10.66.0.10/24", "fd00:66::10/64"]
    assert all(i["interface"] == 0 for i in result["ips"])
    v6 = [a for a in _addr_info(pod) if a["family"] == "inet6" and a["scope"] == "global"]
    assert [(a["local"], a["prefixlen"]) for a in v6] == [("fd00:66::10", 64)]
    assert not v6[0].get("tentative") and not v6[0].get("dadfailed")
    defaults = [r for r in _routes(pod, "-6") if r["dst"] == "default"]
    assert [(r.get("gateway"), r["dev"]) for r in defaults] == [("fd00:66::1", "net1")]
    assert _sysctl(pod, "net/ipv6/conf/net1/disable_ipv6") == "0"
    assert _sysctl(pod, "net/ipv6/conf/lo/disable_ipv6") == "0"


# --- chaining and versions -------------------------------------------------------------------


def test_add_appends_to_prev_result(topo: Topology) -> None:
    """ADD with a prevResult keeps its interfaces and ips and adds ours, with our IP pointing at index 1."""
    pod_path = topo.netns_path(topo.pods[0])
    prev = {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": pod_path}],
        "ips": [{"interface": 0, "address": "10.70.0.5/24", "gateway": "10.70.0.1"}],
    }
    result = _add(topo, _conf(topo, prevResult=prev))
    assert [i["name"] for i in result["interfaces"]] == ["eth0", "net1"]
    assert result["interfaces"][0] == prev["interfaces"][0]
    assert result["interfaces"][1]["sandbox"] == pod_path
    assert result["ips"] == [
        {"interface": 0, "address": "10.70.0.5/24", "gateway": "10.70.0.1"},
        {"interface": 1, "address": "10.66.0.10/24", "gateway": "10.66.0.1"},
    ]
    # prevResult's address belongs to another interface: it is not put on ours.
    assert [a["local"] for a in _addr_info(topo.pods[0]) if a["family"] == "inet"] == ["10.66.0.10"]


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_add_and_del_for_every_version(topo: Topology, version: str) -> None:
    """ADD and DEL succeed for every cniVersion from 0.3.0 on, with the result shape of that version."""
    conf = _conf(topo, version)
    result = _add(topo, conf)
    assert result["cniVersion"] == version
    assert [i["name"] for i in result["interfaces"]] == ["net1"]
    ip0 = result["ips"][0]
    assert (ip0["address"], ip0["gateway"], ip0["interface"]) == ("10.66.0.10/24", "10.66.0.1", 0)
    if version.startswith("0."):
        assert ip0["version"] == "4"
    else:
        assert "version" not in ip0
    inv = topo.cni(MACVLAN, "DEL", conf, topo.pods[0])
    assert inv.ok and inv.stdout == "", inv.stdout + inv.stderr
    _assert_nothing_created(topo, topo.pods[0])


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_add_and_del_l3_for_legacy_versions(topo: Topology, version: str) -> None:
    """An L3 ADD with cniVersion 0.1.0/0.2.0 reports the address as ip4 and DEL undoes it."""
    conf = _conf(topo, version)
    result = _add(topo, conf)
    assert result["cniVersion"] == version
    assert "interfaces" not in result and "ips" not in result
    assert result["ip4"] == {"ip": "10.66.0.10/24", "gateway": "10.66.0.1", "routes": [{"dst": "0.0.0.0/0"}]}
    assert _link(topo.pods[0]) is not None
    inv = topo.cni(MACVLAN, "DEL", conf, topo.pods[0])
    assert inv.ok and inv.stdout == "", inv.stdout + inv.stderr
    _assert_nothing_created(topo, topo.pods[0])


# --- CHECK -----------------------------------------------------------------------------------


def _check_conf(conf: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    return {**conf, "prevResult": result}


def test_check_passes_right_after_add(topo: Topology) -> None:
    """CHECK with the ADD result as prevResult succeeds on an untouched attachment."""
    conf = _conf(topo, v6=True)
    result = _add(topo, conf)
    inv = topo.cni(MACVLAN, "CHECK", _check_conf(conf, result), topo.pods[0])
    assert inv.ok and inv.stdout == "", inv.stdout + inv.stderr


def test_check_passes_for_an_l2_only_attachment(topo: Topology) -> None:
    """CHECK of an attachment without IPAM succeeds with its ADD result as prevResult."""
    conf = _conf(topo, ipam=False)
    result = _add(topo, conf)
    inv = topo.cni(MACVLAN, "CHECK", _check_conf(conf, result), topo.pods[0])
    assert inv.ok and inv.stdout == "", inv.stdout + inv.stderr


def _drop_address(topo: Topology, conf: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    ip("-n", topo.pods[0], "addr", "del", "10.66.0.10/24", "dev", "net1")
    return _check_conf(conf, result)


def _drop_route(topo: Topology, conf: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    ip("-n", topo.pods[0], "route", "del", "default")
    return _check_conf(conf, result)


def _change_mtu(topo: Topology, conf: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    ip("-n", topo.pods[0], "link", "set", "net1", "mtu", "1400")
    return _check_conf(conf, result)


def _other_mode(topo: Topology, conf: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    return _check_conf({**conf, "mode": "vepa"}, result)


def _other_mac(topo: Topology, conf: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    changed = json.loads(json.dumps(result))
    changed["interfaces"][0]["mac"] = "02:00:00:00:00:99"
    return _check_conf(conf, changed)


def _no_prev_result(topo: Topology, conf: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    return dict(conf)


def _drop_reservation(topo: Topology, conf: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    os.unlink(Path(topo.data_dir) / NET / "10.66.0.10")
    return _check_conf(conf, result)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (_drop_address, "failed to match addr 10.66.0.10/24 on interface net1"),
        (_drop_route, "expected route 0.0.0.0/0"),
        (_change_mtu, 'interface "net1" has MTU 1400, expected 1500'),
        (_other_mode, "container macvlan mode bridge does not match expected value: vepa"),
        (_other_mac, "MAC 02:00:00:00:00:99 doesn't match container MAC"),
        (_no_prev_result, "required prevResult missing"),
        (_drop_reservation, "Failed to find address added by container mp-ctr"),
    ],
    ids=[
        "address-removed",
        "route-removed",
        "mtu-changed",
        "mode-differs",
        "mac-differs",
        "no-prevresult",
        "ipam-file-removed",
    ],
)
def test_check_detects_tampering(
    topo: Topology, tamper: Callable[[Topology, dict[str, Any], dict[str, Any]], dict[str, Any]], message: str
) -> None:
    """CHECK fails with a message naming the difference once the attachment no longer matches config and prevResult."""
    conf = _conf(topo)
    result = _add(topo, conf)
    assert topo.cni(MACVLAN, "CHECK", _check_conf(conf, result), topo.pods[0]).ok
    inv = topo.cni(MACVLAN, "CHECK", tamper(topo, conf, result), topo.pods[0])
    err = inv.error()
    assert message in err["msg"], err


@pytest.mark.parametrize("ipam", [False, True], ids=["l2-only", "l3-without-routes"])
def test_check_fails_when_the_link_is_set_down(topo: Topology, ipam: bool) -> None:
    """CHECK fails naming the interface once it is administratively down, even with no route to vanish with it."""
    conf = _conf(topo, ipam=ipam)
    if ipam:
        conf["ipam"]["routes"] = []
    result = _add(topo, conf)
    assert topo.cni(MACVLAN, "CHECK", _check_conf(conf, result), topo.pods[0]).ok
    ip("-n", topo.pods[0], "link", "set", "net1", "down")
    err = topo.cni(MACVLAN, "CHECK", _check_conf(conf, result), topo.pods[0]).error()
    assert err["msg"] == 'interface "net1" is down', err


def test_check_names_the_link_down_rather_than_the_routes_it_took_along(topo: Topology) -> None:
    """With a default route, setting the link down also drops the route: CHECK reports the link, the cause."""
    conf = _conf(topo)
    result = _add(topo, conf)
    ip("-n", topo.pods[0], "link", "set", "net1", "down")
    err = topo.cni(MACVLAN, "CHECK", _check_conf(conf, result), topo.pods[0]).error()
    assert err["msg"] == 'interface "net1" is down', err


def test_check_fails_when_the_link_has_no_carrier(topo: Topology) -> None:
    """The pod link admin-up but operationally down (its master lost carrier) fails CHECK naming link and master."""
    conf = _conf(topo, ipam=False)
    result = _add(topo, conf)
    ip("-n", topo.lan, "link", "set", topo.peer, "down")  # the master's cable is pulled
    # The kernel hands the carrier loss on to the macvlan asynchronously (linkwatch, up to a second later).
    deadline = time.monotonic() + 5
    link = _link(topo.pods[0])
    while link is not None and link["operstate"] != "DOWN" and time.monotonic() < deadline:
        time.sleep(0.05)
        link = _link(topo.pods[0])
    assert link is not None and "UP" in link["flags"] and link["operstate"] == "DOWN"
    err = topo.cni(MACVLAN, "CHECK", _check_conf(conf, result), topo.pods[0]).error()
    master = _link(None, topo.master)
    assert master is not None and "NO-CARRIER" in master["flags"]
    assert err["msg"] == (
        f'interface "net1" is not operational (operstate DOWN); master "{topo.master}" has operstate '
        f"{master['operstate']}"
    ), err


# --- DEL -------------------------------------------------------------------------------------


def test_del_removes_link_and_reservation_and_repeats(topo: Topology) -> None:
    """DEL removes the pod link and the reservation, and a second DEL succeeds with empty output."""
    conf = _conf(topo)
    _add(topo, conf)
    for _ in range(2):
        inv = topo.cni(MACVLAN, "DEL", conf, topo.pods[0])
        assert inv.ok and inv.stdout == "", inv.stdout + inv.stderr
        _assert_nothing_created(topo, topo.pods[0])


def test_del_without_netns_releases_the_reservation(topo: Topology) -> None:
    """DEL with an empty CNI_NETNS succeeds and still releases the IPAM reservation."""
    conf = _conf(topo)
    _add(topo, conf)
    inv = topo.cni(MACVLAN, "DEL", conf, topo.pods[0], netns="")
    assert inv.ok and inv.stdout == "", inv.stdout + inv.stderr
    assert _reservations(topo) == {}


def test_del_after_netns_deleted_releases_the_reservation(topo: Topology) -> None:
    """DEL after the pod namespace is gone succeeds and releases the IPAM reservation."""
    conf = _conf(topo)
    _add(topo, conf)
    ip("netns", "del", topo.pods[0])
    assert not os.path.exists(topo.netns_path(topo.pods[0]))
    inv = topo.cni(MACVLAN, "DEL", conf, topo.pods[0])
    assert inv.ok and inv.stdout == "", inv.stdout + inv.stderr
    assert _reservations(topo) == {}


def test_del_after_master_deleted_releases_the_reservation(topo: Topology) -> None:
    """DEL succeeds after the master is gone (the kernel took the pod link with it) and releases the reservation."""
    conf = _conf(topo)
    _add(topo, conf)
    ip("link", "del", topo.master)
    assert _link(topo.pods[0]) is None
    inv = topo.cni(MACVLAN, "DEL", conf, topo.pods[0])
    assert inv.ok and inv.stdout == "", inv.stdout + inv.stderr
    assert _reservations(topo) == {}


def test_del_with_a_path_that_is_not_a_netns_fails(topo: Topology, tmp_path: Path) -> None:
    """DEL with a CNI_NETNS that exists but is not a network namespace is an error naming the path."""
    conf = _conf(topo)
    _add(topo, conf)
    bogus = tmp_path / "mp-not-a-netns"
    bogus.write_text("")
    inv = topo.cni(MACVLAN, "DEL", conf, topo.pods[0], netns=str(bogus))
    err = inv.error()
    assert str(bogus) in err["msg"], err


# --- STATUS and GC ---------------------------------------------------------------------------


def test_status_ok_with_present_master(topo: Topology) -> None:
    """STATUS (1.1.0) succeeds when the master exists."""
    inv = topo.cni(MACVLAN, "STATUS", _conf(topo, "1.1.0"), topo.pods[0])
    assert inv.ok and inv.stdout == "", inv.stdout + inv.stderr


def test_status_reports_missing_master_as_unavailable(topo: Topology) -> None:
    """STATUS (1.1.0) fails with code 50 when the master does not exist."""
    inv = topo.cni(MACVLAN, "STATUS", _conf(topo, "1.1.0", master="mp-nope0"), topo.pods[0])
    _error(inv, 50, "mp-nope0")


def test_gc_releases_reservations_of_invalid_attachments(topo: Topology) -> None:
    """GC (1.1.0) forwards to host-local: reservations of attachments not in cni.dev/valid-attachments disappear."""
    conf = _conf(topo, "1.1.0")
    _add(topo, conf, topo.pods[0], container_id="mp-ctr-a")
    _add(topo, conf, topo.pods[1], container_id="mp-ctr-b")
    assert sorted(_reservations(topo).values()) == ["mp-ctr-a\r\nnet1", "mp-ctr-b\r\nnet1"]
    gc_conf = {**conf, "cni.dev/valid-attachments": [{"containerID": "mp-ctr-a", "ifname": "net1"}]}
    plugin = str(topo.bin_dir / MACVLAN)
    inv = run(plugin, "GC", gc_conf, container_id=None, netns=None, ifname=None, path=topo.cni_path)
    assert inv.ok and inv.stdout == "", inv.stdout + inv.stderr
    assert list(_reservations(topo).values()) == ["mp-ctr-a\r\nnet1"]
