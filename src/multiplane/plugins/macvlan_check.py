"""macvlan CHECK: compare the pod's interface with the configuration and with prevResult.

Stronger than the reference, which checks only mode, MAC, addresses and connected routes:
we also check that the link hangs off the configured master, its MTU, that it is up (admin
and operational state), and every route of prevResult (with its gateway, or the gateway ADD
would have used). Each mismatch is one error that names what differs.
"""

from __future__ import annotations

from multiplane.errors import CniError
from multiplane.netlink import addrs, links
from multiplane.spec.gojson import field
from multiplane.spec.result import Result

TYPE_CHECKING = False
if TYPE_CHECKING:
    from multiplane.netlink.rtnl import Rtnl
    from multiplane.plugins.macvlan import MacvlanConf
    from multiplane.skel import Request

__all__ = ["check"]

# RFC 2863 states the kernel counts as running (netif_oper_up): UNKNOWN is what drivers without
# carrier reporting show.
_OPERATIONAL = ("UP", "UNKNOWN")


def check(req: Request, conf: MacvlanConf, master: links.Link, pod: Rtnl) -> None:
    """Raise CniError naming the first difference between the kernel, the config and prevResult."""
    raw_prev = field(req.conf.raw, "prevResult")
    if not isinstance(raw_prev, dict):
        raise CniError("required prevResult missing")
    prev = Result.parse(raw_prev, req.conf.cni_version)
    ifname, netns = req.args.ifname, req.args.netns
    index = next((i for i, iface in enumerate(prev.interfaces) if iface.name == ifname), None)
    if index is None:
        raise CniError(f'interface "{ifname}" is not in prevResult')
    expected = prev.interfaces[index]
    if expected.sandbox != netns:
        raise CniError(f"sandbox in prevResult {expected.sandbox} doesn't match configured netns: {netns}")
    link = links.get_link(pod, ifname)
    if link is None:
        raise CniError(f'container interface "{ifname}" not found in netns "{netns}"')
    if link.kind != "macvlan":
        raise CniError(f'container interface "{ifname}" is a {link.kind or "device"} link, not macvlan')
    if link.mode != conf.mode:
        raise CniError(f"container macvlan mode {link.mode} does not match expected value: {conf.mode}")
    if link.parent != master.index:
        raise CniError(f'container interface "{ifname}" is not a macvlan of master "{master.name}"')
    want_mtu = conf.mtu or master.mtu
    if link.mtu != want_mtu:
        raise CniError(f'interface "{ifname}" has MTU {link.mtu}, expected {want_mtu}')
    if expected.mac and expected.mac.lower() != link.mac:
        raise CniError(f"interface {ifname} MAC {expected.mac} doesn't match container MAC: {link.mac}")
    # Before addresses and routes: taking a link down also removes its routes (and IPv6
    # addresses), and the down link is the cause to report, not what went with it.
    if not link.up:
        raise CniError(f'interface "{ifname}" is down')
    if link.operstate not in _OPERATIONAL:
        msg = f'interface "{ifname}" is not operational (operstate {link.operstate})'
        if not master.up or master.operstate not in _OPERATIONAL:
            msg += f'; master "{master.name}" has operstate {master.operstate}'
        raise CniError(msg)

    ours = [ip for ip in prev.ips if ip.interface == index or (ip.interface is None and len(prev.interfaces) == 1)]
    present = {(a.address, a.prefixlen) for a in addrs.addresses(pod, link.index)}
    for ip in ours:
        if (str(ip.address.ip), ip.address.network.prefixlen) not in present:
            raise CniError(f"failed to match addr {ip.address} on interface {ifname}")

    v4gw = next((ip.gateway for ip in ours if ip.gateway is not None and ip.gateway.version == 4), None)
    v6gw = next((ip.gateway for ip in ours if ip.gateway is not None and ip.gateway.version == 6), None)
    kernel = addrs.routes(pod)
    for route in prev.routes:
        family = 2 if route.dst.version == 4 else 10
        gw = route.gw if route.gw is not None else (v4gw if route.dst.version == 4 else v6gw)
        dst_len = route.dst.network.prefixlen
        dst = str(route.dst.ip) if dst_len else ""
        matches = [
            r
            for r in kernel
            if r.family == family
            and r.dst_len == dst_len
            and (r.dst or "") == (dst if dst_len else "")
            and (route.table is None or r.table == route.table)
        ]
        if not matches:
            raise CniError(f"expected route {route.dst} not found in routing table")
        if gw is not None and not any(r.gateway == str(gw) for r in matches):
            raise CniError(
                f"expected route {route.dst} via {gw} not found (found via {matches[0].gateway or 'no gateway'})"
            )
