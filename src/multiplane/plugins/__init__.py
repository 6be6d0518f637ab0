"""The static registry of built-in plugins: personality name → factory (no entry points: nothing to discover at start-up).

Each factory imports its plugin module lazily, so choosing a personality loads only what it needs.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from multiplane.skel import Plugin

__all__ = ["REGISTRY", "ALIASES"]


def _host_local() -> Plugin:
    from multiplane.plugins.host_local import HostLocal

    return HostLocal()


def _cluster_ipam() -> Plugin:
    from multiplane.plugins.cluster_ipam import ClusterIpam

    return ClusterIpam()


def _macvlan() -> Plugin:
    from multiplane.plugins.macvlan import Macvlan

    return Macvlan()


def _meta() -> Plugin:
    from multiplane.plugins.meta.plugin import Meta

    return Meta()


REGISTRY: dict[str, Callable[[], Plugin]] = {
    "multiplane": _meta,
    "multiplane-host-local": _host_local,
    "multiplane-cluster-ipam": _cluster_ipam,
    "multiplane-macvlan": _macvlan,
}

# Subcommand spellings (`multiplane host-local …`) for the same personalities.
ALIASES: dict[str, str] = {name.removeprefix("multiplane-"): name for name in REGISTRY}
