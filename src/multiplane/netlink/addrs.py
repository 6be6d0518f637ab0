"""Addresses and routes of a container interface: the reference `ipam.ConfigureIface` semantics.

`configure_iface` adds every address of the result (link still down; IPv4 with a broadcast
address, as Go's netlink library adds one), enables IPv6 on `lo` and the interface when an
IPv6 address is present, brings the link up, waits for IPv6 duplicate address detection
when an IPv6 gateway is in use (failing on DADFAILED), then adds the routes with
NLM_F_CREATE and no EXCL, protocol "boot", filling a missing gateway from the first address
gateway of the route's family. Route mtu/advmss are not applied (neither does the reference).
Sysctls are written with the thread inside the namespace (see `netns.entered`).
"""

from __future__ import annotations

import time

from multiplane._record import Record
from multiplane.errors import CniError
from multiplane.netlink import links
from multiplane.netlink.netns import entered, read_sysctl, write_sysctl
from multiplane.netlink.rtnl import NLM_F_CREATE, NLM_F_EXCL, RTM_GETADDR, RTM_GETROUTE, RTM_NEWADDR, RTM_NEWROUTE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from multiplane.netlink.rtnl import Rtnl
    from multiplane.spec.gojson import IPAddress
    from multiplane.spec.result import IPConfig, Route

__all__ = ["Address", "KernelRoute", "addresses", "configure_iface", "routes", "set_notify_sysctls"]

_AF = {4: 2, 6: 10}
_IFA_F_DADFAILED, _IFA_F_TENTATIVE = 0x08, 0x40
_RTPROT_BOOT, _RT_TABLE_MAIN, _RTN_UNICAST = 3, 254, 1
_DAD_TIMEOUT = 5.0


class Address(Record):
    __slots__ = ("address", "prefixlen", "flags")

    def __init__(self, address: str, prefixlen: int, flags: int) -> None:
        self.address, self.prefixlen, self.flags = address, prefixlen, flags


class KernelRoute(Record):
    __slots__ = ("dst", "dst_len", "gateway", "oif", "table", "priority", "scope", "family")

    def __init__(
        self, dst: str, dst_len: int, gateway: str, oif: int, table: int, priority: int, scope: int, family: int
    ) -> None:
        self.dst, self.dst_len, self.gateway, self.oif = dst, dst_len, gateway, oif
        self.table, self.priority, self.scope, self.family = table, priority, scope, family


def set_notify_sysctls(netns_fd: int | None, ifname: str) -> None:
    """arp_notify / ndisc_notify = 1: the kernel announces addresses when the link comes up."""
    with entered(netns_fd):
        for key in (f"net/ipv4/conf/{ifname}/arp_notify", f"net/ipv6/conf/{ifname}/ndisc_notify"):
            try:
                write_sysctl(key, "1")
            except OSError:
                pass  # as the reference: an interface without IPv6 has no ndisc_notify


def _enable_ipv6(netns_fd: int | None, ifname: str) -> None:
    with entered(netns_fd):
        for name in ("lo", ifname):
            key = f"net/ipv6/conf/{name}/disable_ipv6"
            try:
                if read_sysctl(key) != "0":
                    write_sysctl(key, "0")
            except OSError as exc:
                raise CniError(f'failed to enable IPv6 for interface "{name}": {exc.strerror}') from exc
        try:
            write_sysctl(f"net/ipv6/conf/{ifname}/keep_addr_on_down", "1")
        except OSError:
            pass


def _add_address(rtnl: Rtnl, index: int, ifname: str, ip: IPConfig) -> None:
    addr = ip.address
    msg = rtnl.msgs.ifaddrmsg()
    msg["family"] = _AF[addr.version]
    msg["prefixlen"] = addr.network.prefixlen
    msg["index"] = index
    attrs: list[Any] = [("IFA_LOCAL", str(addr.ip)), ("IFA_ADDRESS", str(addr.ip))]
    if addr.version == 4 and addr.network.prefixlen < 31:
        attrs.append(("IFA_BROADCAST", str(addr.network.broadcast_address)))
    msg["attrs"] = attrs
    rtnl.request(msg, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, f'failed to add IP addr {addr} to "{ifname}"')


def _add_route(rtnl: Rtnl, index: int, ifname: str, route: Route, gw: IPAddress | None) -> None:
    msg = rtnl.msgs.rtmsg()
    msg["family"] = _AF[route.dst.version]
    msg["dst_len"] = route.dst.network.prefixlen
    msg["proto"] = _RTPROT_BOOT
    msg["type"] = _RTN_UNICAST
    msg["scope"] = route.scope if route.scope is not None else 0
    table = route.table if route.table else _RT_TABLE_MAIN
    msg["table"] = table if table < 256 else 252  # RT_TABLE_COMPAT; the real id goes in RTA_TABLE
    attrs: list[Any] = [("RTA_OIF", index), ("RTA_TABLE", table)]
    if route.dst.network.prefixlen:
        attrs.append(("RTA_DST", str(route.dst.ip)))
    if gw is not None:
        attrs.append(("RTA_GATEWAY", str(gw)))
    if route.priority:
        attrs.append(("RTA_PRIORITY", route.priority))
    msg["attrs"] = attrs
    via = f" via {gw}" if gw is not None else ""
    rtnl.request(msg, RTM_NEWROUTE, NLM_F_CREATE, f"failed to add route '{route.dst}{via} dev {ifname}'")


def addresses(rtnl: Rtnl, index: int) -> list[Address]:
    msg = rtnl.msgs.ifaddrmsg()
    out = []
    for item in rtnl.dump(msg, RTM_GETADDR, rtnl.msgs.ifaddrmsg):
        if item["index"] != index:
            continue
        flags = item.get_attr("IFA_FLAGS")
        out.append(
            Address(
                item.get_attr("IFA_ADDRESS") or item.get_attr("IFA_LOCAL"),
                item["prefixlen"],
                flags if flags is not None else item["flags"],
            )
        )
    return out


def routes(rtnl: Rtnl) -> list[KernelRoute]:
    """All IPv4 and IPv6 routes of the namespace (every table)."""
    out = []
    for family in (2, 10):
        msg = rtnl.msgs.rtmsg()
        msg["family"] = family
        for item in rtnl.dump(msg, RTM_GETROUTE, rtnl.msgs.rtmsg):
            out.append(
                KernelRoute(
                    item.get_attr("RTA_DST") or "",
                    item["dst_len"],
                    item.get_attr("RTA_GATEWAY") or "",
                    item.get_attr("RTA_OIF") or 0,
                    item.get_attr("RTA_TABLE") or item["table"],
                    item.get_attr("RTA_PRIORITY") or 0,
                    item["scope"],
                    family,
                )
            )
    return out


def _settle(rtnl: Rtnl, link: links.Link) -> None:
    """Wait for IPv6 DAD: fail at once on DADFAILED, or after 5 s of tentative addresses on an up link."""
    deadline = time.monotonic() + _DAD_TIMEOUT
    while True:
        pending = []
        for addr in addresses(rtnl, link.index):
            if ":" not in addr.address:
                continue
            if addr.flags & _IFA_F_DADFAILED:
                raise CniError(f'failed to settle addresses for "{link.name}": address {addr.address} failed DAD')
            if addr.flags & _IFA_F_TENTATIVE:
                pending.append(addr.address)
        if not pending:
            return
        if time.monotonic() > deadline:
            current = links.get_link(rtnl, index=link.index)
            if current is not None and current.operstate != "UP":
                return  # no carrier: DAD cannot finish, as the reference (v1.9) accepts
            raise CniError(f'failed to settle addresses for "{link.name}": still tentative: {", ".join(pending)}')
        time.sleep(0.05)


def configure_iface(
    rtnl: Rtnl, netns_fd: int | None, link: links.Link, ips: list[IPConfig], route_list: list[Route]
) -> bool:
    """Apply addresses and routes to `link` and bring it up; True if IPv6 DAD was waited for."""
    if any(ip.address.version == 6 for ip in ips):
        _enable_ipv6(netns_fd, link.name)
    v4gw = next((ip.gateway for ip in ips if ip.gateway is not None and ip.gateway.version == 4), None)
    v6gw = next((ip.gateway for ip in ips if ip.gateway is not None and ip.gateway.version == 6), None)
    for ip in ips:
        _add_address(rtnl, link.index, link.name, ip)
    links.set_up(rtnl, link.index, link.name)
    waited = v6gw is not None
    if waited:
        _settle(rtnl, link)
    for route in route_list:
        gw = route.gw if route.gw is not None else (v4gw if route.dst.version == 4 else v6gw)
        _add_route(rtnl, link.index, link.name, route, gw)
    return waited


def default_routes(rtnl: Rtnl, index: int, family: int) -> list[KernelRoute]:
    """Main-table default routes of `family` (4 or 6) that leave through link `index`."""
    fam = _AF[family]
    return [
        r for r in routes(rtnl) if r.family == fam and r.dst_len == 0 and r.oif == index and r.table == _RT_TABLE_MAIN
    ]


def delete_default_routes(rtnl: Rtnl, index: int, family: int) -> None:
    """Remove every main-table default route of `family` on link `index`."""
    from multiplane.netlink.rtnl import RTM_DELROUTE

    for route in default_routes(rtnl, index, family):
        msg = rtnl.msgs.rtmsg()
        msg["family"] = _AF[family]
        msg["dst_len"] = 0
        msg["table"] = _RT_TABLE_MAIN
        attrs: list[Any] = [("RTA_OIF", index), ("RTA_TABLE", _RT_TABLE_MAIN)]
        if route.gateway:
            attrs.append(("RTA_GATEWAY", route.gateway))
        if route.priority:
            attrs.append(("RTA_PRIORITY", route.priority))
        msg["attrs"] = attrs
        rtnl.request(msg, RTM_DELROUTE, 0, "failed to delete default route")


def add_default_route(rtnl: Rtnl, index: int, ifname: str, gateway: IPAddress) -> None:
    """`default via <gateway> dev <ifname>`; an identical route already there is fine."""
    import errno
    import ipaddress

    from multiplane.netlink.rtnl import NetlinkError
    from multiplane.spec.result import Route

    dst = ipaddress.ip_interface("0.0.0.0/0" if gateway.version == 4 else "::/0")
    try:
        _add_route(rtnl, index, ifname, Route(dst, gateway), gateway)
    except NetlinkError as exc:
        if exc.errno != errno.EEXIST:
            raise
