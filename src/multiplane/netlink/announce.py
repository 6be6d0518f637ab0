"""Announce a new address on the wire: gratuitous ARP (IPv4), unsolicited neighbour advertisement (IPv6).

A pod's address may have belonged to another MAC a moment ago (round-robin IPAM reuses
addresses, pods move between nodes); LAN hosts and switches learn the new owner from these
frames instead of waiting for their caches to expire. The kernel also announces when
arp_notify/ndisc_notify are set, but only on some events; we send one frame ourselves so the
announcement does not depend on kernel version or timing. Frames go out through an
AF_PACKET socket created inside the pod's namespace.
"""

from __future__ import annotations

import socket
import struct

from multiplane import frontdoor
from multiplane.netlink.netns import entered

TYPE_CHECKING = False
if TYPE_CHECKING:
    from multiplane.spec.gojson import IPAddress

__all__ = ["announce", "gratuitous_arp", "unsolicited_na"]

_ETH_P_ARP, _ETH_P_IPV6 = 0x0806, 0x86DD


def _mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def gratuitous_arp(mac: str, ip: IPAddress) -> bytes:
    """An Ethernet broadcast ARP request whose sender and target are both `ip`."""
    src = _mac_bytes(mac)
    eth = b"\xff" * 6 + src + struct.pack("!H", _ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + src + ip.packed + b"\x00" * 6 + ip.packed
    return eth + arp


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def unsolicited_na(mac: str, ip: IPAddress) -> bytes:
    """An unsolicited neighbour advertisement (override flag) for `ip` to all nodes (ff02::1)."""
    src = _mac_bytes(mac)
    all_nodes = bytes.fromhex("ff020000000000000000000000000001")
    eth = b"\x33\x33\x00\x00\x00\x01" + src + struct.pack("!H", _ETH_P_IPV6)
    option = struct.pack("!BB", 2, 1) + src  # target link-layer address
    body = struct.pack("!I", 0x20000000) + ip.packed + option  # flags: O (override)
    length = 4 + len(body)
    pseudo = ip.packed + all_nodes + struct.pack("!I", length) + b"\x00\x00\x00\x3a"
    csum = _checksum(pseudo + struct.pack("!BBH", 136, 0, 0) + body)
    icmp = struct.pack("!BBH", 136, 0, csum) + body
    ipv6 = struct.pack("!IHBB", 0x60000000, length, 58, 255) + ip.packed + all_nodes
    return eth + ipv6 + icmp


def announce(netns_fd: int | None, ifname: str, mac: str, ips: list[IPAddress], ipv6_settled: bool) -> None:
    """Send one announcement per address. IPv6 only once DAD is done (RFC 4861 forbids tentative NAs);
    otherwise the kernel's ndisc_notify announces it when DAD completes."""
    frames = [gratuitous_arp(mac, ip) for ip in ips if ip.version == 4]
    if ipv6_settled:
        frames += [unsolicited_na(mac, ip) for ip in ips if ip.version == 6]
    if not frames:
        return
    with entered(netns_fd):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        sock.bind((ifname, 0))
        for frame in frames:
            sock.send(frame)
    finally:
        # The kernel's close of a packet socket waits for an RCU grace period (8-16 ms);
        # the daemon does it off the request's path (frontdoor.close_later).
        frontdoor.current().close_later(sock)
