"""Traps of a valid network: second default routes, node addresses or routers in pools, overlapping pools.

Each is a warning (the set-up works, but hurts); pods against the NADs they select are crosscheck.py's.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from multiplane.spec.gojson import field, parse_ip
from multiplane.tools.validate.documents import render_path, spell
from multiplane.tools.validate.schemas import HOST_LOCAL_TYPES, MACVLAN_TYPES
from multiplane.tools.validate.views import Pool

if TYPE_CHECKING:
    from multiplane.ipam.ranges import Range
    from multiplane.tools.validate.documents import Loc, Where
    from multiplane.tools.validate.report import Run
    from multiplane.tools.validate.views import PluginView

__all__ = ["SECOND_DEFAULT", "overlaps", "plugin_warnings"]

SECOND_DEFAULT = (
    "a default route: a pod selecting this network gets a second default route beside the cluster "
    "network's, so traffic to other subnets may leave through this interface (Multus does the same, "
    "silently). Route only the subnets reached this way, or make it deliberate with the selection's "
    '"default-route"'
)


def plugin_warnings(run: Run, where: Where, loc: Loc, plugin: dict[str, Any], view: PluginView) -> None:
    """What a valid plugin config will do that hurts, or ignores; records its pools for `overlaps`."""
    _capabilities(run, where, loc, plugin)
    ipam = field(plugin, "ipam")
    if view.type == "bridge" and field(plugin, "isDefaultGateway") is True:
        run.warning(where, loc + spell(("isDefaultGateway",), plugin), SECOND_DEFAULT)
    if not isinstance(ipam, dict):
        return
    ipam_loc = loc + spell(("ipam",), plugin)
    if view.ipam_type in HOST_LOCAL_TYPES and field(ipam, "subnet") is None:
        for key in ("rangeStart", "rangeEnd", "gateway"):
            if field(ipam, key) is not None:
                run.warning(where, ipam_loc + spell((key,), ipam), "ignored: read only together with ipam.subnet")
    _routes(run, where, loc, plugin, ipam, ipam_loc, view)
    _pools(run, where, loc, plugin, ipam, view)


def _capabilities(run: Run, where: Where, loc: Loc, plugin: dict[str, Any]) -> None:
    caps = field(plugin, "capabilities")
    caps_loc = loc + spell(("capabilities",), plugin)
    if caps is not None and not isinstance(caps, dict):
        run.warning(where, caps_loc, "ignored: must be an object of true/false")
    elif isinstance(caps, dict):
        for key, value in caps.items():
            if not isinstance(value, bool):
                run.warning(where, (*caps_loc, key), "only true enables a capability")


def _routes(
    run: Run, where: Where, loc: Loc, plugin: dict[str, Any], ipam: dict[str, Any], ipam_loc: Loc, view: PluginView
) -> None:
    """A route to 0.0.0.0/0 or ::/0 is a second default route; a router inside a pool may be handed out."""
    routes = field(ipam, "routes")
    routes_loc = (*ipam_loc, *spell(("routes",), ipam))
    for index, route in enumerate(routes if isinstance(routes, list) else []):
        if not isinstance(route, dict):
            continue
        net = _cidr_of(field(route, "dst"))
        if net is not None and net.prefixlen == 0:
            run.warning(where, (*routes_loc, index, *spell(("dst",), route)), SECOND_DEFAULT)
        gw = field(route, "gw")
        addr = parse_ip(gw) if isinstance(gw, str) else None
        if addr is None or not view.sets or addr in view.gateways:
            continue
        for set_loc, rset in view.sets:
            rng = rset.range_for(addr)
            if rng is not None:
                run.warning(
                    where,
                    (*routes_loc, index, *spell(("gw",), route)),
                    f"{addr} lies in the pool {rng} ({render_path(loc + spell(set_loc, plugin))}) and is not "
                    "a configured gateway: host-local may give the router's address to a pod; make it the "
                    "range's gateway or move the pool",
                )


def _pools(run: Run, where: Where, loc: Loc, plugin: dict[str, Any], ipam: dict[str, Any], view: PluginView) -> None:
    """Each pool against this node's addresses; on a known link, remembered for `overlaps`."""
    link = _link_of(view)
    for set_loc, rset in view.sets:
        for index, rng in enumerate(rset):
            rng_loc = loc + spell(set_loc if set_loc == ("ipam",) else (*set_loc, index), plugin)
            _node_addresses(run, where, rng_loc, rng, ipam, view)
            if link:
                data_dir = field(ipam, "dataDir") or "/var/lib/cni/networks"
                network = str(field(view.eff, "name"))
                run.pools.append(Pool(where, rng_loc, network, str(data_dir), link, rng, render_path(rng_loc)))


def _node_addresses(run: Run, where: Where, rng_loc: Loc, rng: Range, ipam: dict[str, Any], view: PluginView) -> None:
    for addr in run.node_addrs:
        if rng.contains(addr) and addr != rng.gateway_ip:
            run.warning(
                where,
                rng_loc,
                f"the pool {rng} contains this node's address {addr}: host-local may give it to a pod "
                "(an address conflict on the LAN); start the pool after it or end it before",
            )
        elif view.type in MACVLAN_TYPES and addr == rng.gateway_ip and field(ipam, "routes"):
            run.warning(
                where,
                rng_loc,
                f"the gateway {addr} is this node's own address: a pod cannot reach its node over "
                "macvlan (no hairpin between a macvlan and its master), so routed traffic is lost",
            )


def overlaps(run: Run) -> None:
    """Pools of different networks on one link that overlap: host-local keeps addresses apart only within one."""
    for i, first in enumerate(run.pools):
        for second in run.pools[i + 1 :]:
            if first.link != second.link or (first.network, first.data_dir) == (second.network, second.data_dir):
                continue
            if not first.rng.overlaps(second.rng):
                continue
            for this, other in ((first, second), (second, first)):
                run.warning(
                    this.where,
                    this.loc,
                    f"the pool {this.rng} overlaps the pool {other.rng} of network {other.network!r} "
                    f"({_place(other)} {other.label}) on the same link {this.link}: host-local keeps them "
                    "apart only within one network, so two pods can get the same address",
                )


def _place(pool: Pool) -> str:
    """`file:line` of a pool (`file` when the line is unknown)."""
    line = pool.where.line(pool.loc)
    return f"{pool.where.file}:{line}" if line else pool.where.file


def _cidr_of(text: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    if not isinstance(text, str):
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _link_of(view: PluginView) -> str:
    """The L2 segment a plugin attaches to (for overlap checks): macvlan/ipvlan master, bridge name."""
    kind = view.type
    if kind in (*MACVLAN_TYPES, "ipvlan"):
        master = field(view.eff, "master")
        return f"master {master}" if isinstance(master, str) and master else "the default route's interface"
    if kind == "bridge":
        bridge = field(view.eff, "bridge")
        return f"bridge {bridge if isinstance(bridge, str) and bridge else 'cni0'}"
    return ""
