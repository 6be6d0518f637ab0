"""DEL without a usable cache: give back the host-local addresses the container still holds.

Without the delegate cache (missing, corrupt, or a link), the plan rebuilt from today's
configuration can miss networks: the API server is down, the pod or a NAD is gone. The
addresses host-local handed out are still on disk, each file naming its container id, so
DEL releases them directly. It looks only in host-local networks this node knows a
multiplane delegate by (the rebuilt plan, the cluster network and `defaultNetworks`,
every config file in `confDir`, every local NAD manifest, and the networks recorded in
other containers' caches), never in a network only some other runtime uses: a podman
container's other network, or a plain `host-local` chain, keeps its addresses. Container
ids are unique on a node, so every reservation of this id in those networks is ours.
"""

from __future__ import annotations

import os

from multiplane.errors import CniError
from multiplane.spec.gojson import field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from multiplane.plugins.meta.config import MetaConf
    from multiplane.plugins.meta.networks import NetworkConfig

__all__ = ["host_local_networks", "known_networks", "release_container"]

_HOST_LOCAL = ("host-local", "multiplane-host-local")


def host_local_networks(net: NetworkConfig) -> Iterator[tuple[str, str]]:
    """(dataDir, network name) of every host-local IPAM in a delegate config."""
    from multiplane.ipam.config import DEFAULT_DATA_DIR

    for plugin in net.plugins:
        ipam = field(plugin, "ipam")
        if not isinstance(ipam, dict) or field(ipam, "type") not in _HOST_LOCAL:
            continue
        data_dir = field(ipam, "dataDir") or DEFAULT_DATA_DIR
        if isinstance(data_dir, str) and data_dir.startswith("/") and ".." not in data_dir.split("/") and net.name:
            yield data_dir, str(net.name)


def _quietly(load: Iterable[NetworkConfig] | None) -> list[NetworkConfig]:
    try:
        return list(load or [])
    except (CniError, OSError, ValueError):
        return []


def _conf_dir_nets(conf: MetaConf) -> Iterator[NetworkConfig]:
    from multiplane.plugins.meta.networks import conf_files, load_file

    paths = list(conf_files(conf.conf_dir))
    for value in [conf.cluster_network, *conf.default_networks]:
        if value.startswith("/"):
            paths += conf_files(value) if os.path.isdir(value) else [value]
    for path in paths:
        try:
            yield load_file(path)
        except CniError:
            continue


def _local_nads(conf: MetaConf) -> Iterator[NetworkConfig]:
    from multiplane.plugins.meta.networks import load_nad_manifests, nad_config

    for nad in load_nad_manifests(conf.local_nad_dir):
        try:
            yield nad_config(nad, conf.conf_dir)
        except CniError:
            continue


def _cached_nets(conf: MetaConf) -> Iterator[NetworkConfig]:
    from multiplane.plugins.meta import cache
    from multiplane.plugins.meta.networks import NetworkConfig

    for cid in cache.list_containers(conf.cni_dir):
        try:
            data = cache.load(conf.cni_dir, cid) or {}
        except CniError:
            continue
        for item in data.get("delegates", []):
            try:
                yield NetworkConfig.parse(str(item.get("config", "")).encode(), "cache")
            except (CniError, AttributeError):
                continue


def known_networks(conf: MetaConf, planned: Iterable[NetworkConfig]) -> set[tuple[str, str]]:
    """Every (dataDir, network) this node's multiplane configuration can attach with host-local."""
    found: set[tuple[str, str]] = set()
    sources = (list(planned), _quietly(_conf_dir_nets(conf)), _quietly(_local_nads(conf)), _quietly(_cached_nets(conf)))
    for nets in sources:
        for net in nets:
            found.update(host_local_networks(net))
    return found


def release_container(networks: Iterable[tuple[str, str]], container_id: str) -> tuple[list[str], list[str]]:
    """Release every reservation of `container_id` in these (dataDir, network) pairs: (released "net/ip", problems)."""
    from multiplane.ipam import disk

    by_dir: dict[str, set[str]] = {}
    for data_dir, name in networks:
        by_dir.setdefault(data_dir, set()).add(name)
    released: list[str] = []
    problems: list[str] = []
    for data_dir, names in sorted(by_dir.items()):
        try:
            pairs = disk.release_container(data_dir, container_id, networks=names)
        except CniError as exc:  # every network was tried; the failed ones are named
            problems.append(f"{data_dir}: {exc}")
            continue
        released += [f"{name}/{addr}" for name, addr in pairs]
    return released, problems
