"""The network selection annotation `k8s.v1.cni.cncf.io/networks` (pure; multi-net spec v1.3).

Two forms, as Multus reads them:
* text: a comma list of `[<namespace>/]<name>[@<ifname>]`, each item trimmed;
* JSON (chosen when the value contains `[`, `{` or `"`): a list of selection objects with
  `name`, `namespace`, `interface`, `ips`, `mac`, `infiniband-guid`, `default-route`,
  `portMappings`, `bandwidth`, `cni-args`, `deviceID` (unknown keys ignored).
In both forms a network name must be a DNS-1123 subdomain and a namespace a DNS-1123 label
(k8s/names.py), so nothing else can reach an API path or a file path; an interface name
at most 15 characters without whitespace or `/`. A missing namespace is the pod's (or, for the default-network
annotation, the meta-plugin's namespace). Errors are InvalidConfig (7) naming the item.
"""

from __future__ import annotations

import json

from multiplane.errors import InvalidConfig
from multiplane.k8s.names import is_label, is_subdomain
from multiplane.spec.gojson import parse_ip, parse_ip_maybe_cidr, parse_mac

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["NETWORKS_ANNOTATION", "DEFAULT_NETWORK_ANNOTATION", "NETWORK_STATUS_ANNOTATION", "Selection", "parse"]

NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
DEFAULT_NETWORK_ANNOTATION = "v1.multus-cni.io/default-network"
NETWORK_STATUS_ANNOTATION = "k8s.v1.cni.cncf.io/network-status"

_PREFIX = "parsePodNetworkAnnotation"


class Selection:
    """One requested attachment."""

    __slots__ = (
        "name",
        "namespace",
        "interface",
        "ips",
        "mac",
        "infiniband_guid",
        "default_route",
        "port_mappings",
        "bandwidth",
        "cni_args",
        "device_id",
    )

    def __init__(self, name: str, namespace: str, interface: str = "") -> None:
        self.name, self.namespace, self.interface = name, namespace, interface
        self.ips: list[str] = []
        self.mac = ""
        self.infiniband_guid = ""
        self.default_route: list[str] | None = None  # None: key absent; []: present and empty
        self.port_mappings: list[Any] | None = None
        self.bandwidth: dict[str, Any] | None = None
        self.cni_args: dict[str, Any] | None = None
        self.device_id = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def __repr__(self) -> str:
        return f"Selection({self.key}@{self.interface or '-'})"


def _check_ifname(ifname: str, item: str) -> None:
    if len(ifname) > 15:
        raise InvalidConfig(f"{_PREFIX}: interface name too long: {ifname!r} in {item!r} (at most 15 characters)")
    if any(ch.isspace() or ch == "/" for ch in ifname):
        raise InvalidConfig(f"{_PREFIX}: interface name {ifname!r} in {item!r} contains whitespace or '/'")


def _check_label(value: str, what: str, item: object) -> None:
    """A namespace must be a DNS-1123 label, a network name a DNS-1123 subdomain."""
    if what == "namespace":
        if not is_label(value):
            raise InvalidConfig(f"{_PREFIX}: namespace {value!r} in {item!r} is not a valid DNS-1123 label")
    elif not is_subdomain(value):
        raise InvalidConfig(f"{_PREFIX}: {what} {value!r} in {item!r} is not a valid DNS-1123 subdomain")


def _parse_text(text: str, default_namespace: str) -> list[Selection]:
    out = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        namespace, name, ifname = default_namespace, item, ""
        if item.count("/") > 1:
            raise InvalidConfig(f"{_PREFIX}: invalid network name {item!r}: more than one '/'")
        if item.count("@") > 1:
            raise InvalidConfig(f"{_PREFIX}: invalid network name {item!r}: more than one '@'")
        if "/" in name:
            namespace, name = name.split("/")
            if namespace:  # "/net1": an empty namespace means the pod's, as in Multus
                _check_label(namespace, "namespace", item)
        if "@" in name:
            name, ifname = name.split("@")
            _check_ifname(ifname, item)
        _check_label(name, "network name", item)
        out.append(Selection(name, namespace or default_namespace, ifname))
    return out


def _str(value: Any, key: str, item: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidConfig(f"{_PREFIX}: {key!r} must be a string in {json.dumps(item)}")
    return value


def _mac(value: str, key: str) -> str:
    try:
        return parse_mac(value)
    except ValueError as exc:
        # infiniband GUIDs are 8-byte; accept colon-separated hex of 8 or 20 bytes like Go's ParseMAC
        parts = value.split(":")
        if key != "mac" and len(parts) in (8, 20) and all(len(p) == 2 for p in parts):
            try:
                bytes.fromhex("".join(parts))
                return value.lower()
            except ValueError:
                pass
        raise InvalidConfig(f"{_PREFIX}: failed to parse {key} {value!r}: {exc}") from exc


def _from_json(obj: Any, default_namespace: str) -> Selection:
    if not isinstance(obj, dict):
        raise InvalidConfig(f"{_PREFIX}: each selection must be an object, got {json.dumps(obj)}")
    name = _str(obj.get("name"), "name", obj)
    if not name:
        raise InvalidConfig(f"{_PREFIX}: a selection has no name: {json.dumps(obj)}")
    _check_label(name, "network name", name)
    namespace = _str(obj.get("namespace"), "namespace", obj)
    if namespace:
        _check_label(namespace, "namespace", name)
    namespace = namespace or default_namespace
    interface = _str(obj.get("interface"), "interface", obj) or _str(
        obj.get("interfaceRequest"), "interfaceRequest", obj
    )
    sel = Selection(name, namespace, interface)
    if interface:
        _check_ifname(interface, name)
    ips = obj.get("ips")
    if ips is not None:
        if not isinstance(ips, list) or not all(isinstance(i, str) for i in ips):
            raise InvalidConfig(f"{_PREFIX}: 'ips' must be a list of strings in {json.dumps(obj)}")
        for ip in ips:
            if parse_ip_maybe_cidr(ip) is None:
                raise InvalidConfig(f"{_PREFIX}: failed to parse IP address {ip!r} of network {name!r}")
        sel.ips = list(ips)
    if obj.get("mac"):
        sel.mac = _mac(_str(obj.get("mac"), "mac", obj), "mac")
    if obj.get("infiniband-guid"):
        sel.infiniband_guid = _mac(_str(obj.get("infiniband-guid"), "infiniband-guid", obj), "infiniband-guid")
    if "default-route" in obj:
        routes = obj["default-route"]
        if routes is None:
            routes = []
        if not isinstance(routes, list) or not all(isinstance(r, str) and parse_ip(r) is not None for r in routes):
            raise InvalidConfig(f"{_PREFIX}: 'default-route' must be a list of IP addresses in {json.dumps(obj)}")
        sel.default_route = list(routes)
    if obj.get("portMappings") is not None:
        if not isinstance(obj["portMappings"], list):
            raise InvalidConfig(f"{_PREFIX}: 'portMappings' must be a list in {json.dumps(obj)}")
        sel.port_mappings = obj["portMappings"]
    if obj.get("bandwidth") is not None:
        if not isinstance(obj["bandwidth"], dict):
            raise InvalidConfig(f"{_PREFIX}: 'bandwidth' must be an object in {json.dumps(obj)}")
        sel.bandwidth = obj["bandwidth"]
    if obj.get("cni-args") is not None:
        if not isinstance(obj["cni-args"], dict):
            raise InvalidConfig(f"{_PREFIX}: 'cni-args' must be an object in {json.dumps(obj)}")
        sel.cni_args = obj["cni-args"]
    sel.device_id = _str(obj.get("deviceID"), "deviceID", obj)
    return sel


def parse(value: str, default_namespace: str) -> list[Selection]:
    """All selections of one annotation value; [] for an empty value. InvalidConfig on any error."""
    text = value.strip()
    if not text:
        return []
    if any(ch in text for ch in '[{"'):
        try:
            data = json.loads(text)
        except RecursionError:
            raise InvalidConfig(f"{_PREFIX}: the selection annotation is nested too deeply") from None
        except ValueError as exc:
            raise InvalidConfig(
                f"{_PREFIX}: failed to parse pod Network Attachment Selection Annotation JSON format: {exc}"
            ) from exc
        if not isinstance(data, list):
            raise InvalidConfig(f"{_PREFIX}: the JSON form must be a list of selections, got {type(data).__name__}")
        selections = [_from_json(obj, default_namespace) for obj in data]
    else:
        selections = _parse_text(text, default_namespace)
    gateways = {4: 0, 6: 0}
    for sel in selections:
        for gw in sel.default_route or []:
            addr = parse_ip(gw)
            if addr is not None:
                gateways[addr.version] += 1
    if gateways[4] > 1 or gateways[6] > 1:
        raise InvalidConfig("multiplane does not support ECMP for default-route: at most one IPv4 and one IPv6 gateway")
    return selections
