"""Across documents: a pod's interface names, namespace isolation, each selection against its NAD.

Runs after every document was read (the pools' overlaps are warnings.py's); it adds diagnostics only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from multiplane.spec.gojson import parse_ip_maybe_cidr
from multiplane.tools.validate.documents import render_path
from multiplane.tools.validate.plugin_config import effective, plugin_problems
from multiplane.tools.validate.schemas import MACVLAN_TYPES
from multiplane.tools.validate.warnings import overlaps

if TYPE_CHECKING:
    from multiplane.tools.validate.report import Run
    from multiplane.tools.validate.views import Chosen, Nad, PodView

__all__ = ["cross_check"]

# IPAM types that read a single requested address from CNI_ARGS `IP=`.
READS_IP_ARG = ("host-local", "multiplane-host-local", "static")


def cross_check(run: Run) -> None:
    """Everything that needs more than one document, once they all are checked."""
    overlaps(run)
    for pod in run.pods:
        _pod_interfaces(run, pod)
        for chosen in pod.selections:
            if run.meta.isolation and chosen.namespace not in (pod.namespace, *run.meta.global_namespaces):
                run.error(
                    pod.where,
                    chosen.loc,
                    f"namespace isolation: a pod in {pod.namespace} may not select {chosen.key}",
                )
            for nad in run.nads:
                if nad.ok and nad.name == chosen.name and nad.namespace in ("", chosen.namespace):
                    _selection_meets_nad(run, pod, chosen, nad)


def _pod_interfaces(run: Run, pod: PodView) -> None:
    """Interface names as the plan gives them: eth0, then net<position> unless the selection names one."""
    defaults = 0 if pod.namespace in run.meta.system_namespaces else run.meta.default_networks
    seen = {"eth0": "the cluster network"}
    for index in range(1, 1 + defaults):
        seen[f"net{index}"] = f"defaultNetworks[{index - 1}]"
    for index, chosen in enumerate(pod.selections, start=1 + defaults):
        ifname = chosen.interface or f"net{index}"
        if ifname in seen:
            run.error(
                pod.where,
                chosen.loc,
                f'interface name "{ifname}" is used by both {seen[ifname]} and "{chosen.key}" '
                "(counting eth0 for the cluster network and net<N> by position)",
            )
        seen.setdefault(ifname, f'"{chosen.key}"')


def _selection_meets_nad(run: Run, pod: PodView, chosen: Chosen, nad: Nad) -> None:
    """What the NAD's plugins make of this selection's values: config, requested addresses, MAC."""
    for plugin in nad.plugins:  # the config each plugin gets with this selection's values
        eff = effective(plugin.plugin, plugin.net_name, plugin.net_version, chosen.caps, chosen.cni_args)
        for rel, message in plugin_problems(eff)[0]:
            run.error(
                pod.where,
                chosen.loc,
                f"{nad.label} refuses the config it gets with this selection: {render_path(rel)}: {message}",
            )
    if not _ips_capability(run, pod, chosen, nad):
        return
    _requested_addresses(run, pod, chosen, nad)
    if chosen.mac and int(chosen.mac[:2], 16) & 1 and any(p.type in MACVLAN_TYPES for p in nad.plugins):
        run.error(pod.where, (*chosen.loc, "mac"), f"{chosen.mac} is a multicast address; macvlan refuses it")


def _ips_capability(run: Run, pod: PodView, chosen: Chosen, nad: Nad) -> bool:
    """Requested addresses need a plugin declaring "ips" (one may go as IP= instead); False when the ADD fails."""
    ips_loc = (*chosen.loc, "ips")
    declares = any(p.declares("ips") for p in nad.plugins)
    if len(chosen.ips) >= 2 and not declares:
        run.error(
            pod.where,
            ips_loc,
            f'{len(chosen.ips)} addresses requested, but no plugin of {nad.label} declares the "ips" capability: '
            'the ADD fails; add "capabilities": {"ips": true} to the plugin that assigns addresses',
        )
        return False
    if len(chosen.ips) == 1 and not declares and not any(p.ipam_type in READS_IP_ARG for p in nad.plugins):
        run.warning(
            pod.where,
            ips_loc,
            f'no plugin of {nad.label} declares the "ips" capability, so the address reaches it only as IP= '
            "in CNI_ARGS, which its IPAM may ignore (the ADD then fails)",
        )
    return True


def _requested_addresses(run: Run, pod: PodView, chosen: Chosen, nad: Nad) -> None:
    """Each address that reaches host-local must be in one of its ranges and not a gateway."""
    ips_loc = (*chosen.loc, "ips")
    declares = any(p.declares("ips") for p in nad.plugins)
    delivered = chosen.ips if declares or len(chosen.ips) == 1 else []
    for text in delivered:
        addr = parse_ip_maybe_cidr(text)
        for plugin in nad.plugins:
            if not plugin.sets or addr is None:
                continue
            if addr in plugin.gateways:
                run.error(pod.where, ips_loc, f"{addr} is a gateway of {nad.label}: host-local never hands it out")
            elif not any(rset.contains(addr) for _, rset in plugin.sets):
                run.error(
                    pod.where,
                    ips_loc,
                    f"{addr} is outside every range of {nad.label}: host-local fails the ADD "
                    f"(failed to allocate all requested IPs: {addr})",
                )
