"""What the checks remember of each document for the checks across documents: networks, plugins, pools, pods.

Plain records; the checks fill them (networks.py, nad.py, selections.py) and read them (crosscheck.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from multiplane.spec.gojson import field

if TYPE_CHECKING:
    from multiplane.ipam.ranges import Range, RangeSet
    from multiplane.tools.validate.documents import Loc, Where

__all__ = ["Chosen", "MetaContext", "Nad", "PluginView", "PodView", "Pool", "ipam_type"]


def ipam_type(plugin: dict[str, Any]) -> Any:
    """The `type` of a plugin's `ipam` object (None without one)."""
    ipam = field(plugin, "ipam")
    return field(ipam, "type") if isinstance(ipam, dict) else None


class Pool:
    """One host-local range of a network, for overlap checks between networks."""

    __slots__ = ("where", "loc", "network", "data_dir", "link", "rng", "label")

    def __init__(self, where: Where, loc: Loc, network: str, data_dir: str, link: str, rng: Range, label: str) -> None:
        self.where, self.loc, self.network, self.data_dir, self.link = where, loc, network, data_dir, link
        self.rng, self.label = rng, label


class PluginView:
    """A plugin of a checked network: its effective config and, when it uses host-local, its range sets."""

    __slots__ = ("loc", "eff", "plugin", "net_name", "net_version", "ipam_type", "sets", "gateways")

    def __init__(self, loc: Loc, eff: dict[str, Any], plugin: dict[str, Any], net_name: Any, net_version: Any) -> None:
        self.loc, self.eff, self.plugin, self.net_name, self.net_version = loc, eff, plugin, net_name, net_version
        kind = ipam_type(eff)
        self.ipam_type = kind if isinstance(kind, str) else ""
        self.sets: list[tuple[Loc, RangeSet]] = []
        self.gateways: set[Any] = set()

    @property
    def type(self) -> Any:
        return field(self.eff, "type")

    def declares(self, capability: str) -> bool:
        caps = field(self.eff, "capabilities")
        return isinstance(caps, dict) and caps.get(capability) is True


class Nad:
    """A checked NetworkAttachmentDefinition; `ok` when its config was valid and has plugins."""

    __slots__ = ("where", "loc", "namespace", "name", "plugins", "ok")

    def __init__(self, where: Where, loc: Loc, namespace: str, name: str) -> None:
        self.where, self.loc, self.namespace, self.name = where, loc, namespace, name
        self.plugins: list[PluginView] = []
        self.ok = False

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


class Chosen:
    """One selection of a pod, with where it was written."""

    __slots__ = ("loc", "name", "namespace", "interface", "ips", "mac", "caps", "cni_args")

    def __init__(self, loc: Loc, name: str, namespace: str, interface: str, ips: list[str], mac: str) -> None:
        self.loc, self.name, self.namespace, self.interface = loc, name, namespace, interface
        self.ips, self.mac = ips, mac
        self.caps: dict[str, Any] = {}  # capability values, as plan._from_selection builds them
        self.cni_args: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class PodView:
    """A pod (or a pod template, or a bare annotation) and the networks it selects."""

    __slots__ = ("where", "loc", "namespace", "selections")

    def __init__(self, where: Where, loc: Loc, namespace: str, selections: list[Chosen]) -> None:
        self.where, self.loc, self.namespace, self.selections = where, loc, namespace, selections


class MetaContext:
    """What the pod checks need from a multiplane config given in the same run (defaults otherwise)."""

    def __init__(self) -> None:
        self.namespace = "kube-system"
        self.default_networks = 0
        self.system_namespaces: list[Any] = ["kube-system"]
        self.isolation = False
        self.global_namespaces = ["default"]
        self.conf_dir = ""

    @classmethod
    def from_config(cls, obj: dict[str, Any]) -> MetaContext:
        ctx = cls()

        def text(key: str) -> str:
            value = field(obj, key)
            return value if isinstance(value, str) else ""

        ctx.namespace = text("multusNamespace") or text("namespace") or "kube-system"
        networks = field(obj, "defaultNetworks")
        ctx.default_networks = len(networks) if isinstance(networks, list) else 0
        system = field(obj, "systemNamespaces")
        ctx.system_namespaces = system if isinstance(system, list) else ["kube-system"]
        ctx.isolation = field(obj, "namespaceIsolation") is True
        ctx.global_namespaces = [n.strip() for n in text("globalNamespaces").split(",") if n.strip()] or ["default"]
        ctx.conf_dir = text("confDir")
        return ctx
