"""Links: look up, create a macvlan straight into a namespace, rename, bring up, delete."""

from __future__ import annotations

import errno

from multiplane._record import Record
from multiplane.netlink.rtnl import (
    NLM_F_CREATE,
    NLM_F_EXCL,
    RTM_DELLINK,
    RTM_GETLINK,
    RTM_GETROUTE,
    RTM_NEWLINK,
    RTM_SETLINK,
    NetlinkError,
    Rtnl,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "MACVLAN_MODES",
    "Link",
    "create_macvlan",
    "default_route_interface",
    "delete_link",
    "get_link",
    "rename_link",
    "set_up",
]

MACVLAN_MODES = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8}
_MODE_NAMES = {v: k for k, v in MACVLAN_MODES.items()}
_IFF_UP = 0x1
_AF_INET, _AF_INET6 = 2, 10
_RT_TABLE_MAIN = 254


class Link(Record):
    """What we need to know about an interface."""

    __slots__ = ("index", "name", "kind", "mode", "mtu", "mac", "up", "operstate", "parent")

    def __init__(
        self,
        index: int,
        name: str,
        kind: str,
        mode: str,
        mtu: int,
        mac: str,
        up: bool,
        operstate: str,
        parent: int,
    ) -> None:
        self.index, self.name, self.kind, self.mode, self.mtu = index, name, kind, mode, mtu
        self.mac, self.up, self.operstate, self.parent = mac, up, operstate, parent


def _link_from(msg: Any) -> Link:
    info = msg.get_attr("IFLA_LINKINFO")
    kind, mode = "", ""
    if info is not None:
        kind = info.get_attr("IFLA_INFO_KIND") or ""
        data = info.get_attr("IFLA_INFO_DATA")
        if kind == "macvlan" and data is not None and not isinstance(data, (str, bytes)):
            raw_mode = data.get_attr("IFLA_MACVLAN_MODE")
            mode = raw_mode if isinstance(raw_mode, str) else _MODE_NAMES.get(raw_mode or 0, str(raw_mode))
    return Link(
        index=msg["index"],
        name=msg.get_attr("IFLA_IFNAME") or "",
        kind=kind,
        mode=mode,
        mtu=msg.get_attr("IFLA_MTU") or 0,
        mac=(msg.get_attr("IFLA_ADDRESS") or "").lower(),
        up=bool(msg["flags"] & _IFF_UP),
        operstate=msg.get_attr("IFLA_OPERSTATE") or "",
        parent=msg.get_attr("IFLA_LINK") or 0,
    )


def get_link(rtnl: Rtnl, name: str = "", index: int = 0) -> Link | None:
    """The link with this name (or index) in the socket's namespace; None if there is none."""
    msg = rtnl.msgs.ifinfmsg()
    msg["index"] = index
    if name:
        msg["attrs"] = [("IFLA_IFNAME", name)]
    try:
        return _link_from(rtnl.get(msg, RTM_GETLINK, rtnl.msgs.ifinfmsg, f"failed to look up {name or index}"))
    except NetlinkError as exc:
        if exc.errno in (errno.ENODEV, errno.ENOENT):
            return None
        raise


def create_macvlan(
    rtnl: Rtnl, name: str, master: int, mode: str, target_netns_fd: int, mtu: int = 0, mac: str = ""
) -> None:
    """One RTM_NEWLINK: a macvlan on `master`, created directly inside the target namespace."""
    attrs: list[Any] = [
        ("IFLA_IFNAME", name),
        ("IFLA_LINK", master),
        ("IFLA_NET_NS_FD", target_netns_fd),
        (
            "IFLA_LINKINFO",
            {
                "attrs": [
                    ("IFLA_INFO_KIND", "macvlan"),
                    ("IFLA_INFO_DATA", {"attrs": [("IFLA_MACVLAN_MODE", MACVLAN_MODES[mode])]}),
                ]
            },
        ),
    ]
    if mtu:
        attrs.append(("IFLA_MTU", mtu))
    if mac:
        attrs.append(("IFLA_ADDRESS", mac))
    msg = rtnl.msgs.ifinfmsg()
    msg["attrs"] = attrs
    rtnl.request(msg, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, "failed to create macvlan")


def rename_link(rtnl: Rtnl, index: int, name: str) -> None:
    msg = rtnl.msgs.ifinfmsg()
    msg["index"] = index
    msg["attrs"] = [("IFLA_IFNAME", name)]
    rtnl.request(msg, RTM_SETLINK, 0, f'failed to rename macvlan to "{name}"')


def set_up(rtnl: Rtnl, index: int, name: str) -> None:
    msg = rtnl.msgs.ifinfmsg()
    msg["index"] = index
    msg["flags"] = _IFF_UP
    msg["change"] = _IFF_UP
    rtnl.request(msg, RTM_SETLINK, 0, f'failed to set "{name}" UP')


def delete_link(rtnl: Rtnl, index: int) -> bool:
    """Delete by index; False when it was already gone."""
    msg = rtnl.msgs.ifinfmsg()
    msg["index"] = index
    try:
        rtnl.request(msg, RTM_DELLINK, 0, "failed to delete link")
    except NetlinkError as exc:
        if exc.errno in (errno.ENODEV, errno.ENOENT):
            return False
        raise
    return True


def default_route_interface(rtnl: Rtnl) -> str | None:
    """The device of the first main-table default route, IPv4 before IPv6 (the reference's rule)."""
    for family in (_AF_INET, _AF_INET6):
        msg = rtnl.msgs.rtmsg()
        msg["family"] = family
        for route in rtnl.dump(msg, RTM_GETROUTE, rtnl.msgs.rtmsg):
            table = route.get_attr("RTA_TABLE") or route["table"]
            if table != _RT_TABLE_MAIN or route["dst_len"] != 0 or route["type"] != 1:
                continue
            oif = route.get_attr("RTA_OIF")
            if oif is None:
                multipath = route.get_attr("RTA_MULTIPATH")
                oif = multipath[0]["oif"] if multipath else None
            if oif:
                link = get_link(rtnl, index=oif)
                if link is not None:
                    return link.name
    return None
