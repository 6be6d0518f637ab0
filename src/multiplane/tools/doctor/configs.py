"""The `config.*` checks: 00-multiplane.conf is valid and read first, no Multus beside it, its networks load.

Files are considered as libcni lists them for containerd and CRI-O: `.conf`, `.conflist`, `.json`, lexical.
"""

from __future__ import annotations

import json
import os
import stat

from multiplane.errors import CniError, InvalidConfig
from multiplane.installer import BINARY, CONF_NAME, MULTUS_TYPES, RUNTIME_SUFFIXES
from multiplane.spec.gojson import field
from multiplane.tools.doctor import lookup
from multiplane.tools.doctor.model import FAIL, OK, WARNING, Network, Unknown, listing

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from multiplane.plugins.meta.config import MetaConf
    from multiplane.plugins.meta.networks import NetworkConfig
    from multiplane.spec.netconf import NetConf
    from multiplane.tools.doctor.node import Doctor

__all__ = ["check_config", "check_default_networks", "check_multus", "check_primary", "plugin_types", "runtime_files"]

META_TYPES = frozenset({"multiplane", "multus", "multus-shim"})


def runtime_files(conf_dir: str) -> list[str]:
    """The names a runtime reads in `conf_dir`, in its order (the first one is used)."""
    names = []
    for name in sorted(os.listdir(conf_dir)):
        if not name.endswith(RUNTIME_SUFFIXES):
            continue
        try:
            if stat.S_ISDIR(os.lstat(os.path.join(conf_dir, name)).st_mode):
                continue  # libcni skips directories only (lstat: a link to one is kept)
        except OSError:
            continue
        names.append(name)
    return names


def plugin_types(doc: Any) -> list[str]:
    """The plugin types of a CNI config or conflist (empty when it is neither)."""
    if not isinstance(doc, dict):
        return []
    plugins = field(doc, "plugins")
    if not isinstance(plugins, list):
        kind = field(doc, "type")
        return [kind] if isinstance(kind, str) and kind else []
    types = []
    for plugin in plugins:
        if isinstance(plugin, dict) and field(plugin, "type"):
            types.append(str(field(plugin, "type")))
    return types


# ---- config.dir, config.multiplane, config.order ----


def check_config(doctor: Doctor) -> None:
    """The config dir exists, and its first file is a valid 00-multiplane.conf (which sets `doctor.meta`)."""
    conf_dir = doctor.real(doctor.conf_dir)
    if not os.path.isdir(conf_dir):
        doctor.add(
            "config.dir",
            FAIL,
            f"{doctor.conf_dir} does not exist: the runtime has no network configuration",
            "install the node's primary network plugin, then run `multiplane install`",
        )
        return
    names = runtime_files(conf_dir)
    if CONF_NAME not in names:
        what = f"the runtime calls {names[0]} directly" if names else "the runtime has no network configuration"
        doctor.add(
            "config.multiplane",
            FAIL,
            f"no {CONF_NAME} in {doctor.conf_dir}: {what}, so pods get no secondary networks",
            "run `multiplane install` on this node (the DaemonSet's init container does)",
        )
        return
    conf = _parse_meta(doctor, os.path.join(conf_dir, CONF_NAME))
    if conf is None:
        return
    where = f"clusterNetwork {doctor.conf.cluster_network}" if doctor.conf.cluster_network else "inline delegates"
    doctor.add("config.multiplane", OK, f"{CONF_NAME} is valid (cniVersion {conf.cni_version}, {where})")
    if names[0] != CONF_NAME:
        doctor.add(
            "config.order",
            FAIL,
            f"{names[0]} sorts before {CONF_NAME} in {doctor.conf_dir}: the runtime uses it and never calls multiplane",
            f"remove or rename {names[0]} so that {CONF_NAME} is the first .conf/.conflist/.json file",
        )
    else:
        doctor.add("config.order", OK, f"{CONF_NAME} is the first of {len(names)} configuration files")


def _parse_meta(doctor: Doctor, path: str) -> NetConf | None:
    """00-multiplane.conf parsed as the plugin parses it (into `doctor.meta`); None, and a failed check, if it cannot be."""
    from multiplane.plugins.meta.config import MetaConf
    from multiplane.spec.netconf import NetConf

    try:
        with open(path, "rb") as fh:
            conf = NetConf.parse(fh.read())
        if conf.type != BINARY:
            raise InvalidConfig(f"its type is {conf.type!r}, not {BINARY!r}")
        doctor.meta = MetaConf(conf)
        doctor.meta_raw = conf.raw
    except OSError as exc:
        doctor.add("config.multiplane", FAIL, f"cannot read {CONF_NAME}: {exc.strerror}", "run `multiplane install`")
        return None
    except CniError as exc:
        doctor.add(
            "config.multiplane",
            FAIL,
            f"{CONF_NAME} is not valid: {exc}: every pod fails",
            "run `multiplane install` again (or fix the key named; docs/meta-plugin.md lists them)",
        )
        return None
    return conf


# ---- config.multus ----


def check_multus(doctor: Doctor) -> None:
    """No configuration of type multus/multus-shim, and no file named *multus*, anywhere in the config dir."""
    conf_dir = doctor.real(doctor.conf_dir)
    if not os.path.isdir(conf_dir):
        return
    found = []
    for name in runtime_files(conf_dir):
        try:
            with open(os.path.join(conf_dir, name), "rb") as fh:
                types = plugin_types(json.loads(fh.read()))
        except (OSError, ValueError):
            types = []
        multus = sorted(set(types).intersection(MULTUS_TYPES))
        if multus:
            found.append(f"{name} ({', '.join(multus)})")
        elif "multus" in name.lower():
            found.append(name)
    if found:
        doctor.add(
            "config.multus",
            FAIL,
            f"Multus configuration in {doctor.conf_dir}: {listing(found)}: Multus and multiplane would both attach networks",
            "remove Multus first (its DaemonSet, then its files in the CNI config and bin dirs), then run `multiplane install`",
        )
    else:
        doctor.add("config.multus", OK, f"no Multus configuration in {doctor.conf_dir}")


# ---- config.primary ----


def check_primary(doctor: Doctor) -> None:
    """clusterNetwork (or delegates[0]) loads and is not a meta-plugin; it becomes the first network to check."""
    meta = doctor.meta
    if meta is None:
        return
    primary = _cluster_network(doctor, meta) if meta.cluster_network else _first_delegate(doctor, meta)
    if primary is None:
        return
    shown, net = primary
    types = [str(field(p, "type")) for p in net.plugins]
    wrapped = sorted(set(types) & META_TYPES)
    if wrapped:
        doctor.add(
            "config.primary",
            FAIL,
            f"the cluster network {shown} is a meta-plugin ({', '.join(wrapped)}): it would attach networks again",
            "point clusterNetwork at the primary network's own configuration: remove Multus, then run `multiplane install`",
        )
        return
    doctor.add("config.primary", OK, f"wraps {shown}: network {net.name or '-'} ({', '.join(types)})")
    doctor.networks.append(Network(f"cluster network {net.name or shown}", net))


def _cluster_network(doctor: Doctor, meta: MetaConf) -> tuple[str, NetworkConfig] | None:
    """clusterNetwork resolved as the plugin resolves it; None, and a check, if it cannot be."""
    try:
        return lookup.resolve(doctor, meta.cluster_network, meta.namespace)
    except Unknown as exc:
        doctor.add("config.primary", WARNING, f"not checked: {exc}", "see the API check")
    except (CniError, OSError) as exc:
        doctor.add(
            "config.primary",
            FAIL,
            f"the cluster network (clusterNetwork {meta.cluster_network}) cannot be loaded: {exc}: every pod fails",
            "restore the primary network's configuration (its plugin writes it), "
            "or run `multiplane install` again to wrap the current one",
        )
    return None


def _first_delegate(doctor: Doctor, meta: MetaConf) -> tuple[str, NetworkConfig] | None:
    """delegates[0] as a network config; None, and a failed check, if it is not one."""
    from multiplane.plugins.meta.networks import NetworkConfig

    first = meta.delegates[0]
    try:
        return "delegates[0]", NetworkConfig(json.dumps(first).encode(), first, "delegates[0]")
    except CniError as exc:
        doctor.add("config.primary", FAIL, f"the cluster network is not usable: {exc}: every pod fails")
        return None


# ---- config.default-networks ----


def check_default_networks(doctor: Doctor) -> None:
    """Every defaultNetworks entry resolves; each one becomes a network to check."""
    meta = doctor.conf
    failed = []
    for value in meta.default_networks:
        try:
            shown, net = lookup.resolve(doctor, value, meta.namespace)
        except Unknown as exc:
            doctor.add("config.default-networks", WARNING, f"not checked: {exc}", "see the API check")
            failed.append(value)
            continue
        except (CniError, OSError) as exc:
            failed.append(value)
            doctor.add(
                "config.default-networks",
                FAIL,
                f"defaultNetworks entry {value!r} cannot be loaded: {exc}: "
                f"every pod outside {', '.join(meta.system_namespaces) or 'the system namespaces'} fails",
                "create the NAD or CNI file it names, or remove it from defaultNetworks",
            )
            continue
        doctor.networks.append(Network(f"default network {shown}", net))
    if meta.default_networks and not failed:
        doctor.add("config.default-networks", OK, f"defaultNetworks resolve: {', '.join(meta.default_networks)}")
