"""multiplane-macvlan on the wire: pods reach the LAN host and each other, and announce their addresses.

Every test that calls the plugin runs through both front doors (the one-shot process and the
node daemon; see tests/integration/conftest.py) with the same assertions.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
from typing import Any

import pytest

from tests.topology import Topology, ip_json, ns_exec, ping, scapy_in

pytestmark = pytest.mark.root
through_front_doors = pytest.mark.usefixtures("via_front_door")

MACVLAN = "multiplane-macvlan"
LAN_V4, LAN_V6 = "10.66.0.1", "fd00:66::1"
V4_RANGE = {"subnet": "10.66.0.0/24", "rangeStart": "10.66.0.10", "rangeEnd": "10.66.0.29", "gateway": LAN_V4}
V6_RANGE = {"subnet": "fd00:66::/64", "rangeStart": "fd00:66::10", "rangeEnd": "fd00:66::29", "gateway": LAN_V6}
SNIFF_TIMEOUT = 15.0


def _conf(topo: Topology, mode: str = "bridge", v6: bool = False) -> dict[str, Any]:
    ranges = [[dict(V4_RANGE)]] + ([[dict(V6_RANGE)]] if v6 else [])
    routes = [{"dst": "0.0.0.0/0"}] + ([{"dst": "::/0"}] if v6 else [])
    return {
        "cniVersion": "1.0.0",
        "name": "mp-net",
        "type": MACVLAN,
        "master": topo.master,
        "mode": mode,
        "ipam": {"type": "multiplane-host-local", "dataDir": topo.data_dir, "ranges": ranges, "routes": routes},
    }


def _add(topo: Topology, pod: str, conf: dict[str, Any]) -> tuple[dict[str, str], str]:
    """ADD for `pod` (its own container id); returns ({family: address}, mac)."""
    inv = topo.cni(MACVLAN, "ADD", conf, pod, container_id=f"mp-ctr-{pod}")
    assert inv.ok, f"ADD failed: {inv.stdout} {inv.stderr}"
    result = inv.json
    addrs = {("6" if ":" in ipc["address"] else "4"): ipc["address"].split("/")[0] for ipc in result["ips"]}
    return addrs, result["interfaces"][0]["mac"]


def _no_ping(ns: str, target: str) -> bool:
    """True when one echo request from `ns` gets no reply within a second."""
    return ns_exec(ns, "busybox", "ping", "-c", "1", "-W", "1", target).returncode != 0


class _Sniffer:
    """scapy sniffing on the LAN host's interface in a background process, started before the action under test."""

    def __init__(self, topo: Topology, layer: str, stop_expr: str, fields: dict[str, str]) -> None:
        record = "{" + ", ".join(f"{name!r}: str({expr})" for name, expr in fields.items()) + "}"
        prog = "\n".join(
            [
                "import json",
                "from scapy.all import *",
                "conf.verb = 0",
                f"pkts = sniff(iface={topo.peer!r}, lfilter=lambda p: {layer} in p,",
                f"             stop_filter=lambda p: {stop_expr}, timeout={SNIFF_TIMEOUT},",
                "             started_callback=lambda: print('ready', flush=True))",
                "for p in pkts:",
                f"    print(json.dumps({record}), flush=True)",
            ]
        )
        argv = ["ip", "netns", "exec", topo.lan, sys.executable, "-c", prog]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def __enter__(self) -> _Sniffer:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if ready else ""
        if line.strip() != "ready":
            self.proc.kill()
            _out, err = self.proc.communicate()
            raise AssertionError(f"sniffer did not start: {line!r} {err}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        self.proc.wait()

    def frames(self) -> list[dict[str, str]]:
        """Wait for the sniffer to stop (match or timeout) and return what it saw."""
        out, err = self.proc.communicate(timeout=SNIFF_TIMEOUT + 15)
        assert self.proc.returncode == 0, err
        return [json.loads(line) for line in out.splitlines() if line.strip()]


@through_front_doors
def test_pod_and_lan_host_reach_each_other(topo: Topology) -> None:
    """A pod pings the LAN host and the LAN host pings the pod's address over the macvlan."""
    addrs, _mac = _add(topo, topo.pods[0], _conf(topo))
    assert ping(topo.pods[0], LAN_V4)
    assert ping(topo.lan, addrs["4"])


@through_front_doors
def test_lan_arp_request_is_answered_with_the_pod_mac(topo: Topology) -> None:
    """An ARP request from the LAN host for the pod's address is answered with the pod's MAC."""
    addrs, mac = _add(topo, topo.pods[0], _conf(topo))
    code = (
        f"r = srp1(Ether(dst='ff:ff:ff:ff:ff:ff')/ARP(pdst={addrs['4']!r}), iface={topo.peer!r}, timeout=2)\n"
        "print(r[ARP].op, r[ARP].psrc, r[ARP].hwsrc) if r is not None and ARP in r else print('none')\n"
    )
    assert scapy_in(topo.lan, code).split() == ["2", addrs["4"], mac]


@through_front_doors
def test_bridge_mode_pods_reach_each_other(topo: Topology) -> None:
    """Two pods on the same master in bridge mode ping each other both ways."""
    conf = _conf(topo, "bridge")
    a, _ = _add(topo, topo.pods[0], conf)
    b, _ = _add(topo, topo.pods[1], conf)
    assert a["4"] != b["4"]
    assert ping(topo.pods[0], b["4"])
    assert ping(topo.pods[1], a["4"])


@through_front_doors
def test_private_mode_isolates_pods_but_not_the_lan(topo: Topology) -> None:
    """In private mode two pods on the same master cannot reach each other, yet each reaches the LAN host."""
    conf = _conf(topo, "private")
    a, _ = _add(topo, topo.pods[0], conf)
    b, _ = _add(topo, topo.pods[1], conf)
    assert ping(topo.pods[0], LAN_V4)
    assert ping(topo.pods[1], LAN_V4)
    assert _no_ping(topo.pods[0], b["4"])
    assert _no_ping(topo.pods[1], a["4"])


@through_front_doors
def test_gratuitous_arp_is_seen_on_the_lan(topo: Topology) -> None:
    """After ADD the LAN host sees a gratuitous ARP (sender = target = pod address) from the pod's MAC."""
    fields = {"psrc": "p[ARP].psrc", "pdst": "p[ARP].pdst", "hwsrc": "p[ARP].hwsrc", "dst": "p[Ether].dst"}
    with _Sniffer(topo, "ARP", "p[ARP].psrc == p[ARP].pdst", fields) as sniffer:
        addrs, mac = _add(topo, topo.pods[0], _conf(topo))
        frames = sniffer.frames()
    wanted = {"psrc": addrs["4"], "pdst": addrs["4"], "hwsrc": mac, "dst": "ff:ff:ff:ff:ff:ff"}
    assert wanted in frames, frames


@through_front_doors
def test_unsolicited_neighbour_advertisement_is_seen_on_the_lan(topo: Topology) -> None:
    """After a dual-stack ADD the LAN host sees an unsolicited NA for the pod's global address from the pod's MAC."""
    peer_mac = ip_json("-n", topo.lan, "link", "show", topo.peer)[0]["address"]
    fields = {
        "tgt": "p[ICMPv6ND_NA].tgt",
        "src": "p[Ether].src",
        "solicited": "p[ICMPv6ND_NA].S",
        "override": "p[ICMPv6ND_NA].O",
        "lladdr": "p[ICMPv6NDOptDstLLAddr].lladdr if ICMPv6NDOptDstLLAddr in p else ''",
    }
    stop = f"p[Ether].src != {peer_mac!r} and not p[ICMPv6ND_NA].tgt.startswith('fe80')"
    with _Sniffer(topo, "ICMPv6ND_NA", stop, fields) as sniffer:
        addrs, mac = _add(topo, topo.pods[0], _conf(topo, v6=True))
        frames = sniffer.frames()
    wanted = {"tgt": addrs["6"], "src": mac, "solicited": "0", "override": "1", "lladdr": mac}
    assert wanted in frames, frames


def test_own_announcements_without_kernel_help(topo: Topology) -> None:
    """announce() itself puts a valid gratuitous ARP and a checksum-correct unsolicited NA on the wire.

    No CNI call, so no front door: announce() runs in this test's process.

    The interface here has arp_notify/ndisc_notify off and no addresses, so the kernel sends
    nothing: every frame seen comes from our own AF_PACKET socket in the pod's namespace.
    """
    import ipaddress
    import os

    from multiplane.netlink.announce import announce
    from multiplane.netlink.netns import open_netns

    pod, name, mac = topo.pods[0], f"mp-an{topo.tag}", "02:00:0a:42:00:4d"
    ns_exec(pod, "true")
    add = ["ip", "link", "add", "link", topo.master, "name", name, "address", mac, "type", "macvlan", "mode", "bridge"]
    subprocess.run(add, check=True)
    subprocess.run(["ip", "link", "set", name, "netns", pod], check=True)
    subprocess.run(["ip", "-n", pod, "link", "set", name, "up"], check=True)
    v4, v6 = ipaddress.ip_address("10.66.0.77"), ipaddress.ip_address("fd00:66::77")
    fields = {
        "kind": "'arp' if ARP in p else 'na'",
        "src": "p[Ether].src",
        "who": "p[ARP].psrc + '>' + p[ARP].pdst if ARP in p else p[ICMPv6ND_NA].tgt",
        # A correct ICMPv6 checksum makes the one's-complement sum over pseudo-header + message zero.
        "ok": "True if ARP in p else in6_chksum(58, p[IPv6], raw(p[ICMPv6ND_NA])) == 0",
    }
    fd = open_netns(topo.netns_path(pod))
    try:
        with _Sniffer(topo, "Ether", f"ICMPv6ND_NA in p and p[Ether].src == {mac!r}", fields) as sniffer:
            announce(fd, name, mac, [v4, v6], ipv6_settled=True)
            frames = [f for f in sniffer.frames() if f["src"] == mac]
    finally:
        os.close(fd)
    assert {"kind": "arp", "src": mac, "who": "10.66.0.77>10.66.0.77", "ok": "True"} in frames, frames
    assert {"kind": "na", "src": mac, "who": "fd00:66::77", "ok": "True"} in frames, frames
