"""The `k8s.v1.cni.cncf.io/network-status` annotation, in the shape Multus writes.

One entry per sandbox interface of each delegate's result: `name` (the delegate name,
`<ns>/<nad>` for NAD networks), `interface`, `ips` (addresses without prefix length),
`mac`, `mtu` (when known), `default` (true for the cluster network), `dns` (always
present) and `gateway` (the gateways of default routes). A result without interfaces
still gets one entry with its addresses, so no attachment is missing from the list.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from multiplane.spec.result import Result

__all__ = ["entries", "render"]


def _gateways(result: Result) -> list[str]:
    """Gateways of the default routes; a default route without `gw` uses the first address
    gateway of its family, as ConfigureIface installs it."""
    out: list[str] = []
    for route in result.routes:
        if route.dst.network.prefixlen != 0:
            continue
        gw = route.gw
        if gw is None:
            gw = next(
                (ip.gateway for ip in result.ips if ip.gateway is not None and ip.gateway.version == route.dst.version),
                None,
            )
        if gw is not None and str(gw) not in out:
            out.append(str(gw))
    return out


def entries(name: str, result: Result, default: bool) -> list[dict[str, Any]]:
    """The status entries of one delegate's result."""
    dns = result.dns.to_dict()
    gateways = _gateways(result)
    sandboxed = [i for i, iface in enumerate(result.interfaces) if iface.sandbox]
    if not sandboxed:
        entry: dict[str, Any] = {"name": name}  # host-side interfaces are not the pod's: no "interface"
        ips = [str(ip.address.ip) for ip in result.ips]
        if ips:
            entry["ips"] = ips
        if default:
            entry["default"] = True
        entry["dns"] = dns
        if gateways:
            entry["gateway"] = gateways
        return [entry]
    out = []
    for index in sandboxed:
        iface = result.interfaces[index]
        own = [ip for ip in result.ips if ip.interface == index or (ip.interface is None and index == sandboxed[-1])]
        entry = {"name": name, "interface": iface.name}
        if own:
            entry["ips"] = [str(ip.address.ip) for ip in own]
        if iface.mac:
            entry["mac"] = iface.mac
        if iface.mtu:
            entry["mtu"] = iface.mtu
        if default and index == sandboxed[0]:
            entry["default"] = True
        entry["dns"] = dns
        own_gw = [g for g in gateways if any(ip.gateway is not None and str(ip.gateway) == g for ip in own)] or (
            gateways if len(sandboxed) == 1 else []
        )
        if own_gw:
            entry["gateway"] = own_gw
        out.append(entry)
    return out


def render(all_entries: list[dict[str, Any]]) -> str:
    """The annotation value: a JSON list, each entry indented as Multus prints it."""
    return "[" + ",".join(json.dumps(e, indent=4) for e in all_entries) + "]"
