"""The `networks.master*` checks: each master NIC the node's networks use exists, is up, and has the MTU they need.

The master is `master` of macvlan, ipvlan or any plugin with that key; without one, the default-route interface.
"""

from __future__ import annotations

from multiplane.errors import CniError
from multiplane.spec.gojson import field
from multiplane.tools.doctor.model import FAIL, OK, WARNING, listing

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from multiplane.tools.doctor.model import Network
    from multiplane.tools.doctor.node import Doctor

__all__ = ["check_masters"]

MASTER_TYPES = frozenset({"macvlan", "multiplane-macvlan", "ipvlan"})


def master_uses(networks: list[Network]) -> list[tuple[str, str, int]]:
    """(network, master as configured or "" for the default-route interface, the mtu it needs or 0) per plugin."""
    uses = []
    for net in networks:
        for plugin in net.config.plugins:
            if field(plugin, "type") not in MASTER_TYPES and field(plugin, "master") is None:
                continue
            if field(plugin, "linkInContainer") is True:
                continue  # the master is in the pod's namespace, not on the node
            master = field(plugin, "master")
            mtu = field(plugin, "mtu")
            needed = mtu if isinstance(mtu, int) and not isinstance(mtu, bool) else 0
            uses.append((net.label, master if isinstance(master, str) else "", needed))
    return uses


def check_masters(doctor: Doctor) -> None:
    """One check per master NIC of `doctor.networks`, grouped by NIC; read in this network namespace."""
    uses = master_uses(doctor.networks)
    if not uses:
        if doctor.networks:
            doctor.add("networks.masters", OK, "no network of this node has a master NIC")
        return
    from multiplane.netlink import links
    from multiplane.netlink.rtnl import Rtnl

    try:
        rtnl = Rtnl()
    except (CniError, OSError) as exc:
        doctor.add("networks.masters", WARNING, f"cannot read the node's links: {exc}", "run doctor on the node")
        return
    with rtnl:
        default = None
        if any(master == "" for _label, master, _mtu in uses):
            default = links.default_route_interface(rtnl)
        by_name: dict[str, list[tuple[str, int]]] = {}  # master NIC: (network, mtu) of each use
        implicit: set[str] = set()  # names reached as the default-route interface
        orphans = []
        for label, master, mtu in uses:
            name = master or default
            if not name:
                orphans.append(label)
                continue
            if not master:
                implicit.add(name)
            by_name.setdefault(name, []).append((label, mtu))
        if orphans:
            doctor.add(
                "networks.master.default-route",
                FAIL,
                f"no default route, and {listing(sorted(set(orphans)))} name no master: their pods fail",
                "set `master` in those networks' configs",
            )
        for name, users in sorted(by_name.items()):
            shown = f"{name} (the default-route interface)" if name in implicit else name
            _check_master(doctor, links.get_link(rtnl, name), name, shown, users)


def _check_master(doctor: Doctor, link: Any, name: str, shown: str, users: list[tuple[str, int]]) -> None:
    """One master NIC (`link` None: there is none) and the (network, mtu) of every use of it."""
    check_id = f"networks.master.{name}"
    labels = listing(sorted({label for label, _ in users}))
    if link is None:
        doctor.add(
            check_id,
            FAIL,
            f"master NIC {shown} does not exist on this node: pods on {labels} fail",
            f"create {name} on this node or change `master` in those networks",
        )
        return
    if not link.up:
        doctor.add(
            check_id,
            FAIL,
            f"master NIC {shown} is down: pods on {labels} fail",
            f"bring it up (`ip link set {name} up`) and make that persistent in the node's network configuration",
        )
        return
    needed = max(mtu for _, mtu in users)
    if needed > link.mtu:
        too_big = set()
        for label, mtu in users:
            if mtu > link.mtu:
                too_big.add(label)
        doctor.add(
            check_id,
            FAIL,
            f"master NIC {shown} has MTU {link.mtu}, below the mtu {needed} of {listing(sorted(too_big))}: their pods fail",
            f"raise the MTU of {name} to {needed} or lower `mtu` in those networks",
        )
        return
    doctor.add(check_id, OK, f"{shown}: up, MTU {link.mtu} (used by {labels})")
