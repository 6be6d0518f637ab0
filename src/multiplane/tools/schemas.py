"""pydantic models (v2) of what operators write for multiplane, and the JSON Schemas exported from them.

Only the operator tools import this module (`multiplane validate`; later the daemon may). The
per-call CNI path decodes with its own fast readers (spec/netconf.py, plugins/meta/config.py,
plugins/meta/selection.py, plugins/meta/networks.py, plugins/macvlan.py, ipam/config.py) and
never imports pydantic. tests/unit/test_validate.py runs a table of good and bad documents
through both and requires them to accept and reject the same ones.

The models read documents the way the CNI path does:
* keys of CNI objects match case-insensitively, the last spelling winning, as Go's decoder
  does (`GoObject`); Kubernetes objects and the selection annotation are case-sensitive;
* in CNI objects `null` is the same as an absent key;
* types are strict: "1500" is not a number and 1 is not `true`; an integral float (1500.0)
  is an integer, as in the macvlan reader;
* unknown keys are kept and ignored.

Formats reuse the CNI path's helpers (Go's ParseIP/ParseCIDR in spec/gojson.py, the
Kubernetes name rules in k8s/names.py, host-local's range arithmetic in ipam/ranges.py), so
an address, a name or a range means the same thing to both. A check that needs more than one
field raises `PydanticCustomError("multiplane", …)`; its context may carry `at`, the path of
the offending key below the object, which `multiplane validate` appends to the error's path.

Unions are chosen by a callable discriminator; the tags (`<macvlan>`, `<host-local>`, …) show
up in `loc` and are dropped from the paths shown to users (`is_tag`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, NoReturn, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import PydanticCustomError

from multiplane.errors import DecodingFailure
from multiplane.ipam import ranges
from multiplane.k8s.names import is_label, is_subdomain
from multiplane.spec import version as versions
from multiplane.spec.args import valid_name
from multiplane.spec.gojson import field, parse_cidr, parse_ip, parse_ip_maybe_cidr, parse_mac
from multiplane.spec.result import parse_interface_cidr

__all__ = [
    "BridgePlugin",
    "GenericPlugin",
    "HOST_LOCAL_TYPES",
    "HostLocalConf",
    "HostLocalIpam",
    "MACVLAN_MODES",
    "MACVLAN_TYPES",
    "MacvlanPlugin",
    "MultiplaneConfig",
    "NetworkAttachmentDefinition",
    "NetworkSelection",
    "Pod",
    "PLUGIN",
    "SCHEMAS",
    "SELECTIONS",
    "delegate_has_type",
    "is_tag",
    "json_schemas",
    "render_schema",
]

MACVLAN_TYPES = ("macvlan", "multiplane-macvlan")
HOST_LOCAL_TYPES = ("host-local", "multiplane-host-local")
# The modes the kernel knows (multiplane.netlink.links.MACVLAN_MODES; a test keeps them equal).
MACVLAN_MODES = ("bridge", "private", "vepa", "passthru")
# "" (and an absent mode) means bridge.
MacvlanMode = Literal["bridge", "private", "vepa", "passthru", ""]
NAD_API_VERSION = "k8s.cni.cncf.io/v1"


def _fail(message: str, at: tuple[str | int, ...] = ()) -> NoReturn:
    """A located error: `message` as is (no template expansion), `at` relative to the current object."""
    context: dict[str, Any] = {"message": message}
    if at:
        context["at"] = list(at)
    raise PydanticCustomError("multiplane", "{message}", context)


def _q(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def is_tag(segment: object) -> bool:
    """A union tag in an error's loc (not a key of the document)."""
    return isinstance(segment, str) and segment.startswith("<") and segment.endswith(">")


# ---- scalar types ---------------------------------------------------------------------------------


def _integral(value: Any) -> Any:
    """1500.0 is 1500, as macvlan's reader takes it (a bool stays a bool and is refused)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _falsy_none(value: Any) -> Any:
    """Keys the CNI path reads with `if obj.get(key):` treat every falsy value as absent."""
    return None if not value else value


def _cidr(value: str) -> str:
    try:
        parse_cidr(value)
    except ValueError:
        _fail(f"not a CIDR (address/prefix length): {_q(value)}")
    return value


def _ip_or_empty(value: str) -> str:
    if value and parse_ip(value) is None:
        _fail(f"not an IP address: {_q(value)}")
    return value


def _ip(value: str) -> str:
    if parse_ip(value) is None:
        _fail(f"not an IP address: {_q(value)}")
    return value


def _ip_maybe_cidr(value: str) -> str:
    if value == "":
        _fail("an empty string is not an IP address")
    if parse_ip_maybe_cidr(value) is None:
        _fail(f"not an IP address (with or without /prefix): {_q(value)}")
    return value


def _route_dst(value: str) -> str:
    try:
        parse_interface_cidr(value, "dst")
    except DecodingFailure:
        _fail(f"not a CIDR (address/prefix length): {_q(value)}")
    return value


def _abs_path(value: str) -> str:
    """ "" means the default; anything else must be absolute, without `..` and NUL."""
    if value and (not value.startswith("/") or ".." in value.split("/") or "\0" in value):
        _fail(f"{_q(value)} must be an absolute path without '..'")
    return value


def _network_ref(value: str) -> str:
    """clusterNetwork/defaultNetworks: a name, or (with a '/') a path that must be absolute."""
    if "/" in value:
        _abs_path(value)
    return value


def _network_name(value: str) -> str:
    if not value:
        _fail("missing network name")
    if not valid_name(value):
        _fail(
            f"invalid characters found in network name {_q(value)} "
            "(letters, digits, '_', '.', '-'; starting with a letter or digit)"
        )
    return value


def _cni_version(value: str) -> str:
    if value and value not in versions.SUPPORTED:
        _fail(f"unsupported cniVersion {_q(value)} (supported: {', '.join(versions.SUPPORTED)})")
    return value


def _plugin_type(value: str) -> str:
    if not value or not value.isprintable() or any(c in value for c in "/\\"):
        _fail(f"invalid plugin type {_q(value)}: a plugin binary name (printable, no '/' or '\\')")
    return value


def _subdomain(value: str) -> str:
    if not is_subdomain(value):
        _fail(f"{_q(value)} is not a valid DNS-1123 subdomain (lower case letters, digits, '-', '.')")
    return value


def _label(value: str) -> str:
    if not is_label(value):
        _fail(f"{_q(value)} is not a valid DNS-1123 label (lower case letters, digits, '-'; at most 63)")
    return value


def _label_or_empty(value: str) -> str:
    return _label(value) if value else value


def _selection_name(value: str) -> str:
    if not value:
        _fail("a selection has no name")
    return _subdomain(value)


def _ifname(value: str) -> str:
    if len(value) > 15:
        _fail(f"interface name too long: {_q(value)} (at most 15 characters)")
    if any(ch.isspace() or ch == "/" for ch in value):
        _fail(f"interface name {_q(value)} contains whitespace or '/'")
    return value


def _mac(value: str) -> str:
    try:
        parse_mac(value)
    except ValueError:
        _fail(f"not a MAC address: {_q(value)} (aa:bb:cc:dd:ee:ff, aa-bb-…, aabb.ccdd.eeff)")
    return value


def _guid(value: str) -> str:
    """An InfiniBand GUID: a MAC, or 8 or 20 colon-separated hex bytes (as selection.py reads it)."""
    parts = value.split(":")
    if len(parts) in (8, 20) and all(len(p) == 2 for p in parts):
        try:
            bytes.fromhex("".join(parts))
            return value
        except ValueError:
            pass
    try:
        parse_mac(value)
    except ValueError:
        _fail(f"not an InfiniBand GUID: {_q(value)}")
    return value


def _string_schema(description: str, **extra: Any) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "description": description, **extra})


GoInt = Annotated[int, BeforeValidator(_integral)]
Cidr = Annotated[str, AfterValidator(_cidr), Field(description="a CIDR, e.g. 10.1.2.0/24 or 2001:db8::/64")]
IpOrEmpty = Annotated[str, AfterValidator(_ip_or_empty), Field(description="an IP address; empty means unset")]
IpAddress = Annotated[str, AfterValidator(_ip), Field(description="an IP address")]
IpMaybeCidr = Annotated[
    str, AfterValidator(_ip_maybe_cidr), Field(description="an IP address, optionally with /prefix (dropped)")
]
AbsPath = Annotated[
    str, AfterValidator(_abs_path), Field(description="an absolute path without '..'; empty means the default")
]
NetworkRef = Annotated[
    str, AfterValidator(_network_ref), Field(description="a NAD or CNI network name, or an absolute path")
]
NetworkName = Annotated[
    str,
    AfterValidator(_network_name),
    Field(description="the CNI network name", json_schema_extra={"pattern": r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$"}),
]
CniVersion = Annotated[
    str,
    AfterValidator(_cni_version),
    Field(description="the CNI spec version; empty or absent means 0.1.0", examples=["1.0.0"]),
    WithJsonSchema({"type": "string", "enum": ["", *versions.SUPPORTED]}),
]
# Patterns and lengths are for editors only (json_schema_extra): the validators above decide, with their own texts.
Subdomain = Annotated[
    str,
    AfterValidator(_subdomain),
    Field(
        json_schema_extra={
            "maxLength": 253,
            "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        }
    ),
]
Label = Annotated[
    str,
    AfterValidator(_label),
    Field(json_schema_extra={"maxLength": 63, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}),
]
IfName = Annotated[str, AfterValidator(_ifname), Field(json_schema_extra={"maxLength": 15, "pattern": r"^[^\s/]*$"})]


def _loose(schema: dict[str, Any]) -> Any:
    """A key the CNI path reads leniently (or not at all): any value validates; editors see `schema`.

    `multiplane validate` warns about such values where the CNI path ignores them.
    """
    return Annotated[Any, WithJsonSchema(schema)]


LooseCapabilities = _loose({"type": "object", "additionalProperties": {"type": "boolean"}})
LooseIpam = _loose({"type": "object", "properties": {"type": {"type": "string"}}})
LooseDelegates = _loose({"type": "array", "items": {"type": "object"}, "minItems": 1})
LooseNadApiVersion = _loose({"const": NAD_API_VERSION})
LooseString = _loose({"type": "string"})
LooseAny = _loose({})
LooseLogOptions = _loose(
    {
        "type": "object",
        "description": "log rotation, as Multus's logOptions (lumberjack)",
        "properties": {
            "maxSize": {"type": "number", "description": "megabytes; 0: 100"},
            "maxBackups": {"type": "number", "description": "0: keep all"},
            "maxAge": {"type": "number", "description": "days; 0: keep all"},
            "compress": {"type": "boolean"},
        },
    }
)
StringList = Annotated[list[Any], WithJsonSchema({"type": "array", "items": {"type": "string"}})]
NullableStrings = Annotated[list[str | None], WithJsonSchema({"type": "array", "items": {"type": "string"}})]


# ---- Go-decoded CNI objects -------------------------------------------------------------------------


class GoObject(BaseModel):
    """A JSON object decoded like Go's encoding/json decodes into a struct (see the module docstring)."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _go_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data  # the model reports "must be an object"
        names = {(f.alias or name).lower(): (f.alias or name) for name, f in cls.model_fields.items()}
        folded: dict[Any, Any] = {}
        for key, value in data.items():
            canonical = names.get(key.lower()) if isinstance(key, str) else None
            if canonical is None:
                folded[key] = value
            else:
                folded.pop(canonical, None)  # the last spelling wins, wherever it stands
                folded[canonical] = value
        folded = {k: v for k, v in folded.items() if not (v is None and isinstance(k, str) and k.lower() in names)}
        return cls._adjust(folded)

    @classmethod
    def _adjust(cls, data: dict[Any, Any]) -> dict[Any, Any]:
        """Hook for keys the CNI path reads only in some cases (drop them when it does not)."""
        return data


class Route(GoObject):
    """A route returned by IPAM (types.Route); a missing `gw` is the interface's gateway."""

    dst: Annotated[str, AfterValidator(_route_dst), Field(description="destination CIDR")]
    gw: IpOrEmpty | None = None


class Dns(GoObject):
    """types.DNS (macvlan returns it as the result's `dns`). null entries are skipped, as macvlan does."""

    nameservers: NullableStrings | None = None
    domain: str | None = None
    search: NullableStrings | None = None
    options: NullableStrings | None = None


def _canonical(
    subnet: str | None, start: str | None, end: str | None, gateway: str | None, subnet_key: str = "subnet"
) -> ranges.Range:
    """host-local's Range, canonicalized; a located error with the reference text otherwise."""
    if subnet is None:
        _fail("required: the range's subnet", (subnet_key,))
    ip, prefix, bits = parse_cidr(subnet)  # the field validator already accepted it

    def addr(text: str | None) -> Any:
        return parse_ip(text) if text else None

    rng = ranges.Range(ip, prefix, bits, addr(start), addr(end), addr(gateway))
    try:
        rng.canonicalize()
    except ranges.RangeError as exc:
        text = str(exc)
        key = (
            "rangeStart" if text.startswith("RangeStart") else "rangeEnd" if text.startswith("RangeEnd") else subnet_key
        )
        _fail(text, (key,))
    return rng


class Range(GoObject):
    """One host-local pool: a subnet, an inclusive [rangeStart, rangeEnd] and a gateway (never handed out)."""

    subnet: Cidr | None = None
    rangeStart: IpOrEmpty | None = None
    rangeEnd: IpOrEmpty | None = None
    gateway: IpOrEmpty | None = None
    _canon: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _range(self) -> Range:
        self._canon = _canonical(self.subnet, self.rangeStart, self.rangeEnd, self.gateway)
        return self


def _range_set(items: list[Range]) -> list[Range]:
    rset = ranges.RangeSet(r._canon for r in items)
    try:
        rset.canonicalize()
    except ranges.RangeError as exc:
        _fail(str(exc))
    return items


RangeSet = Annotated[
    list[Range], AfterValidator(_range_set), Field(description="ranges of one family; one address each")
]


class HostLocalIpam(GoObject):
    """The `ipam` object of host-local (and multiplane-host-local)."""

    type: Literal["host-local", "multiplane-host-local"]
    subnet: Cidr | None = Field(None, description="legacy single range (with rangeStart, rangeEnd, gateway)")
    rangeStart: IpOrEmpty | None = None
    rangeEnd: IpOrEmpty | None = None
    gateway: IpOrEmpty | None = None
    ranges: list[RangeSet] | None = Field(None, description="range sets; one address is allocated from each")
    routes: list[Route] | None = None
    dataDir: AbsPath | None = Field(None, description="default /var/lib/cni/networks")
    resolvConf: str | None = Field(None, description="a resolv.conf on the node, read at ADD")
    _legacy: Any = PrivateAttr(default=None)

    @classmethod
    def _adjust(cls, data: dict[Any, Any]) -> dict[Any, Any]:
        # host-local reads rangeStart, rangeEnd and gateway at the top of ipam only with `subnet`.
        if "subnet" not in data:
            for key in ("rangeStart", "rangeEnd", "gateway"):
                data.pop(key, None)
        return data

    @model_validator(mode="after")
    def _legacy_range(self) -> HostLocalIpam:
        if self.subnet is not None:
            self._legacy = _canonical(self.subnet, self.rangeStart, self.rangeEnd, self.gateway)
        return self


class _Ips(GoObject):
    ips: list[IpMaybeCidr] | None = None


class HostLocalRuntime(GoObject):
    """`runtimeConfig` as host-local reads it: capability `ips` and `ipRanges`."""

    ips: list[IpMaybeCidr] | None = None
    ipRanges: list[RangeSet] | None = None


class HostLocalArgs(GoObject):
    cni: _Ips | None = None


class HostLocalConf(GoObject):
    """The whole config as host-local reads it: `ipam` plus runtimeConfig, args and cniVersion.

    After validation, `sets` holds every range set in host-local's order (runtimeConfig.ipRanges,
    the legacy top-level range, `ranges`) with its path, canonicalized.
    """

    cniVersion: Any = None
    ipam: HostLocalIpam
    runtimeConfig: HostLocalRuntime | None = None
    args: HostLocalArgs | None = None
    _sets: list[tuple[tuple[str | int, ...], ranges.RangeSet]] = PrivateAttr(default_factory=list)

    @property
    def sets(self) -> list[tuple[tuple[str | int, ...], ranges.RangeSet]]:
        return self._sets

    @model_validator(mode="after")
    def _all_sets(self) -> HostLocalConf:
        found: list[tuple[tuple[str | int, ...], ranges.RangeSet]] = []
        runtime = self.runtimeConfig.ipRanges if self.runtimeConfig is not None else None
        for i, rset in enumerate(runtime or []):
            found.append((("runtimeConfig", "ipRanges", i), ranges.RangeSet(r._canon for r in rset)))
        if self.ipam._legacy is not None:
            found.append((("ipam",), ranges.RangeSet([self.ipam._legacy])))
        for i, rset in enumerate(self.ipam.ranges or []):
            found.append((("ipam", "ranges", i), ranges.RangeSet(r._canon for r in rset)))
        if not found:
            _fail("no IP ranges specified: set ipam.ranges (or ipam.subnet)", ("ipam",))
        version = self.cniVersion if isinstance(self.cniVersion, str) and self.cniVersion else "0.1.0"
        counts = {4: 0, 6: 0}
        for _, rset in found:
            counts[rset.version] += 1
        if (counts[4] > 1 or counts[6] > 1) and version in versions.SUPPORTED:
            if not versions.has_multiple_ips(version):
                _fail(f"CNI version {version} does not support more than 1 address per family", ("ipam",))
        for i, (_, first) in enumerate(found[:-1]):
            for j, (at, second) in enumerate(found[i + 1 :], start=i + 1):
                if first.overlaps(second):
                    _fail(f"range set {i} overlaps with {j}", at)
        self._sets = found
        return self


class OtherIpam(GoObject):
    """An IPAM plugin run from CNI_PATH (static, dhcp, whereabouts, …); only `type` is read here."""

    type: Annotated[str, WithJsonSchema({"type": "string", "not": {"enum": list(HOST_LOCAL_TYPES)}})] | None = None


def _ipam_tag(value: Any) -> str:
    is_host_local = isinstance(value, dict) and field(value, "type") in HOST_LOCAL_TYPES
    return "<host-local>" if is_host_local else "<ipam>"


Ipam = Annotated[
    Union[Annotated[HostLocalIpam, Tag("<host-local>")], Annotated[OtherIpam, Tag("<ipam>")]],
    Discriminator(_ipam_tag),
]


class PluginHeader(GoObject):
    """What every plugin's config carries.

    In a conflist the list's `name` and `cniVersion` are given to each plugin, so a plugin
    object there has neither; `multiplane validate` always checks a plugin with the values it
    will receive, and a top-level config without a name is refused where it is read.
    """

    cniVersion: CniVersion | None = None
    name: NetworkName | None = None
    type: str
    capabilities: LooseCapabilities = None


class GenericPlugin(PluginHeader):
    """A plugin multiplane executes from binDir/CNI_PATH; only the header (and a host-local IPAM) is checked."""

    type: Annotated[
        str,
        AfterValidator(_plugin_type),
        WithJsonSchema({"type": "string", "not": {"enum": ["macvlan", "multiplane-macvlan", "bridge", "multiplane"]}}),
    ]
    ipam: LooseIpam = None  # not read by multiplane; a host-local IPAM is checked as HostLocalConf


class MacvlanRuntime(GoObject):
    mac: str | None = None


class MacvlanPlugin(PluginHeader):
    """macvlan (docs/macvlan.md), run in-process by multiplane under `macvlan` and `multiplane-macvlan`."""

    type: Literal["macvlan", "multiplane-macvlan"]
    master: str | None = Field(None, description="the parent NIC; default: the interface of the default route")
    mode: MacvlanMode | None = Field(None, description="default bridge")
    mtu: GoInt | None = Field(None, description="0..the master's MTU; 0 or absent: the master's")
    mac: str | None = None
    linkInContainer: bool | None = None
    ipam: Ipam | None = None
    dns: Dns | None = None
    runtimeConfig: MacvlanRuntime | None = None

    @model_validator(mode="after")
    def _macvlan(self) -> MacvlanPlugin:
        if self.mtu is not None and self.mtu < 0:
            _fail(f"invalid MTU {self.mtu}: must be between 0 and the master's MTU", ("mtu",))
        chosen, at = self.mac or "", ("mac",)
        if self.runtimeConfig is not None and self.runtimeConfig.mac:
            chosen, at = self.runtimeConfig.mac, ("runtimeConfig", "mac")
        if chosen:
            try:
                mac = parse_mac(chosen)
            except ValueError:
                _fail(f"not a MAC address: {_q(chosen)}", at)
            if int(mac[:2], 16) & 1:
                _fail(f"{mac} is a multicast address; an interface needs a unicast one", at)
        ipam_type = self.ipam.type if self.ipam is not None else None
        version = self.cniVersion or "0.1.0"
        if not ipam_type and version in versions.SUPPORTED and not versions.has_multiple_ips(version):
            _fail(f"cniVersion {version} cannot describe an interface without addresses: add ipam", ("ipam",))
        return self


class BridgePlugin(PluginHeader):
    """The reference bridge plugin, executed from CNI_PATH: its keys are typed as its Go struct types them.

    Integers are Go ints here (1500.0 is refused, unlike macvlan's reader), and `capabilities`
    is decoded as map[string]bool.
    """

    type: Literal["bridge"]
    capabilities: dict[str, bool] | None = None
    bridge: str | None = Field(None, description="default cni0")
    isGateway: bool | None = None
    isDefaultGateway: bool | None = Field(None, description="true adds a default route via the bridge")
    forceAddress: bool | None = None
    ipMasq: bool | None = None
    mtu: int | None = None
    hairpinMode: bool | None = None
    promiscMode: bool | None = None
    vlan: int | None = None
    vlanTrunk: list[dict[str, Any]] | None = None
    preserveDefaultVlan: bool | None = None
    macspoofchk: bool | None = None
    enabledad: bool | None = None
    disableContainerInterface: bool | None = None
    ipam: Ipam | None = None
    dns: Dns | None = None


# ---- the meta-plugin's own configuration -------------------------------------------------------------


def delegate_has_type(item: Any) -> bool:
    """An inline delegate the meta-plugin accepts: an object with a `type`, or whose first plugin has one."""
    plugins = field(item, "plugins") if isinstance(item, dict) else None
    first = plugins[0] if isinstance(plugins, list) and plugins else None
    return isinstance(item, dict) and bool(field(item, "type") or (isinstance(first, dict) and field(first, "type")))


class MultiplaneConfig(PluginHeader):
    """`00-multiplane.conf` (docs/meta-plugin.md). Unknown keys are ignored."""

    type: Literal["multiplane"]
    clusterNetwork: NetworkRef | None = None
    delegates: LooseDelegates = None
    defaultNetworks: list[NetworkRef] | None = None
    kubeconfig: AbsPath | None = None
    confDir: AbsPath | None = None
    cniDir: AbsPath | None = None
    binDir: AbsPath | None = None
    localNADDir: AbsPath | None = None
    localPodDir: AbsPath | None = None
    readinessindicatorfile: AbsPath | None = None
    logFile: AbsPath | None = None
    systemNamespaces: StringList | None = None
    multusNamespace: str | None = None
    namespace: str | None = None
    namespaceIsolation: bool | None = None
    globalNamespaces: str | None = Field(None, description="comma-separated")
    logLevel: str | None = Field(None, examples=["error", "verbose", "debug", "panic"])
    logToStderr: bool | None = None
    capabilities: dict[str, Any] | None = None
    runtimeConfig: dict[str, Any] | None = None
    retryDeleteOnError: bool | None = None
    events: bool | None = Field(None, description="false: post no Kubernetes Events on pods")
    logOptions: LooseLogOptions = None  # read leniently: a wrong value is logged and its default used

    @classmethod
    def _adjust(cls, data: dict[Any, Any]) -> dict[Any, Any]:
        if data.get("multusNamespace"):
            data.pop("namespace", None)  # read only when multusNamespace is empty
        return data

    @model_validator(mode="after")
    def _delegates(self) -> MultiplaneConfig:
        if self.name is None:
            _fail("missing network name", ("name",))
        if self.clusterNetwork:
            return self  # delegates are not read
        delegates = self.delegates
        if delegates is None:
            _fail("at least one delegate/clusterNetwork must be specified")
        if not isinstance(delegates, list):
            _fail("must be a list of CNI configurations", ("delegates",))
        if not delegates:
            _fail("at least one delegate/clusterNetwork must be specified", ("delegates",))
        for i, item in enumerate(delegates):
            if not delegate_has_type(item):
                _fail("a delegate must have the 'type' or 'plugins' field", ("delegates", i))
        return self


def _plugin_tag(value: Any) -> str:
    kind = field(value, "type") if isinstance(value, dict) else None
    if kind in MACVLAN_TYPES:
        return "<macvlan>"
    if kind == "bridge":
        return "<bridge>"
    if kind == "multiplane":
        return "<multiplane>"
    return "<plugin>"


Plugin = Annotated[
    Union[
        Annotated[MacvlanPlugin, Tag("<macvlan>")],
        Annotated[BridgePlugin, Tag("<bridge>")],
        Annotated[MultiplaneConfig, Tag("<multiplane>")],
        Annotated[GenericPlugin, Tag("<plugin>")],
    ],
    Discriminator(_plugin_tag),
]
PLUGIN: TypeAdapter[Any] = TypeAdapter(Plugin)


class NetworkConfigList(GoObject):
    """A conflist: plugins run in order, each given the list's `name` and `cniVersion`."""

    model_config = ConfigDict(json_schema_extra={"not": {"required": ["type"]}})

    cniVersion: CniVersion | None = None
    name: NetworkName
    plugins: Annotated[list[Plugin], Field(min_length=1)]
    disableCheck: LooseAny = None
    disableGC: LooseAny = None


# ---- Kubernetes objects --------------------------------------------------------------------------


class K8sObject(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class NadMetadata(K8sObject):
    name: Subdomain
    namespace: Label | None = Field(None, description="absent: the current namespace (local files: every namespace)")


class NadSpec(K8sObject):
    config: Annotated[
        str | None,
        BeforeValidator(_falsy_none),
        WithJsonSchema(
            {
                "type": "string",
                "description": "the CNI configuration (one plugin or a conflist) as JSON text; "
                "empty: the file of the NAD's name in confDir",
                "contentMediaType": "application/json",
            }
        ),
    ] = None


class NetworkAttachmentDefinition(K8sObject):
    """k8s.cni.cncf.io/v1 NetworkAttachmentDefinition."""

    apiVersion: LooseNadApiVersion = None
    kind: Literal["NetworkAttachmentDefinition"]
    metadata: NadMetadata
    spec: Annotated[NadSpec | None, BeforeValidator(_falsy_none)] = None


class PodMetadata(K8sObject):
    name: LooseString = None
    namespace: Label | None = None
    annotations: dict[str, str] | None = None


class Pod(K8sObject):
    """The part of a Pod (or a pod template) multiplane reads: its annotations."""

    metadata: PodMetadata | None = None


# ---- the selection annotation --------------------------------------------------------------------


class NetworkSelection(K8sObject):
    """One element of the JSON form of `k8s.v1.cni.cncf.io/networks` (keys are case-sensitive)."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)

    name: Annotated[str, AfterValidator(_selection_name), Field(description="the NAD's name")]
    namespace: Annotated[str, AfterValidator(_label_or_empty)] | None = None
    interface: IfName | None = None
    interfaceRequest: IfName | None = None
    ips: list[IpMaybeCidr] | None = None
    mac: Annotated[Annotated[str, AfterValidator(_mac)] | None, BeforeValidator(_falsy_none)] = None
    infiniband_guid: Annotated[Annotated[str, AfterValidator(_guid)] | None, BeforeValidator(_falsy_none)] = Field(
        None, alias="infiniband-guid"
    )
    default_route: list[IpAddress] | None = Field(None, alias="default-route")
    portMappings: list[Any] | None = None
    bandwidth: dict[str, Any] | None = None
    cni_args: dict[str, Any] | None = Field(None, alias="cni-args")
    deviceID: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _interface_request(cls, data: Any) -> Any:
        # `interfaceRequest` is read only when `interface` is empty.
        if isinstance(data, dict) and data.get("interface") and "interfaceRequest" in data:
            data = {k: v for k, v in data.items() if k != "interfaceRequest"}
        return data


def _one_gateway_per_family(items: list[NetworkSelection]) -> list[NetworkSelection]:
    counts = {4: 0, 6: 0}
    for item in items:
        for gw in item.default_route or []:
            counts[parse_ip(gw).version] += 1  # type: ignore[union-attr]
    if counts[4] > 1 or counts[6] > 1:
        _fail("at most one IPv4 and one IPv6 default-route gateway in a pod (multiplane does not support ECMP)")
    return items


Selections = Annotated[list[NetworkSelection], AfterValidator(_one_gateway_per_family)]
SELECTIONS: TypeAdapter[Any] = TypeAdapter(Selections)


# ---- JSON Schema export ----------------------------------------------------------------------------


# file name → (the type, title, description)
SCHEMAS: dict[str, tuple[Any, str, str]] = {
    "network-attachment-definition.schema.json": (
        NetworkAttachmentDefinition,
        "NetworkAttachmentDefinition",
        "A k8s.cni.cncf.io/v1 NetworkAttachmentDefinition as multiplane reads it; spec.config holds "
        "cni-config.schema.json as JSON text.",
    ),
    "cni-config.schema.json": (
        Annotated[Union[NetworkConfigList, Plugin], Field()],
        "CNI network configuration",
        "One plugin's configuration or a conflist, as multiplane runs it (macvlan, bridge, host-local "
        "IPAM, the meta-plugin; other plugins by their header). Keys are matched case-insensitively by "
        "the plugins; this schema uses their canonical spelling.",
    ),
    "multiplane-config.schema.json": (
        MultiplaneConfig,
        "00-multiplane.conf",
        "The meta-plugin's configuration (docs/meta-plugin.md).",
    ),
    "network-selection.schema.json": (
        Selections,
        "k8s.v1.cni.cncf.io/networks (JSON form)",
        "The JSON form of the pod annotation selecting networks; the text form is "
        "`[<namespace>/]<name>[@<interface>]`, comma-separated.",
    ),
}


class _Generator(GenerateJsonSchema):
    """No generated per-field titles ("Cniversion"): the key is the title; descriptions say the rest."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _finish(name: str, body: dict[str, Any]) -> dict[str, Any]:
    """What pydantic cannot say: a NAD's spec.config is cni-config.schema.json as JSON text.

    (A plugin's `name` stays optional: a NAD's config takes the NAD's name, and a conflist
    gives its own to its plugins; validate requires it where nothing supplies it.)
    """
    if name == "network-attachment-definition.schema.json":
        body["$defs"]["NadSpec"]["properties"]["config"]["contentSchema"] = {"$ref": "cni-config.schema.json"}
    return body


def json_schemas() -> dict[str, dict[str, Any]]:
    """Every exported schema by file name (what docs/schemas/ must hold)."""
    out: dict[str, dict[str, Any]] = {}
    for name, (kind, title, description) in SCHEMAS.items():
        body = TypeAdapter(kind).json_schema(mode="validation", schema_generator=_Generator)
        body.pop("title", None)
        body.pop("description", None)
        out[name] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": name,  # relative: the files refer to each other wherever they are served from
            "title": title,
            "description": description,
            **_finish(name, body),
        }
    return out


def render_schema(schema: dict[str, Any]) -> str:
    """The text of a schema file: 2-space JSON, keys in model order, one trailing newline."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
