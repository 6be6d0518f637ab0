"""The `ipam` object: host-local's pools, routes and runtime ranges, checked with its own arithmetic.

Range checks reuse host-local's code (ipam/ranges.py), so a pool means the same to both readers;
another IPAM is checked by its type only.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, Discriminator, Field, PrivateAttr, Tag, WithJsonSchema, model_validator

from multiplane.errors import DecodingFailure
from multiplane.ipam import ranges
from multiplane.spec import version as versions
from multiplane.spec.gojson import field, parse_cidr, parse_ip
from multiplane.spec.result import parse_interface_cidr
from multiplane.tools.validate.schemas.base import GoObject
from multiplane.tools.validate.schemas.errors import fail, quote
from multiplane.tools.validate.schemas.scalars import AbsPath, Cidr, IpMaybeCidr, IpOrEmpty

__all__ = ["HOST_LOCAL_TYPES", "HostLocalConf", "HostLocalIpam", "Ipam", "OtherIpam", "Range", "Route"]

HOST_LOCAL_TYPES = ("host-local", "multiplane-host-local")

SetsByPath = list[tuple[tuple[str | int, ...], ranges.RangeSet]]


def _route_dst(value: str) -> str:
    try:
        parse_interface_cidr(value, "dst")
    except DecodingFailure:
        fail(f"not a CIDR (address/prefix length): {quote(value)}")
    return value


class Route(GoObject):
    """A route returned by IPAM (types.Route); a missing `gw` is the interface's gateway."""

    dst: Annotated[str, AfterValidator(_route_dst), Field(description="destination CIDR")]
    gw: IpOrEmpty | None = None


def _canonical(
    subnet: str | None, start: str | None, end: str | None, gateway: str | None, subnet_key: str = "subnet"
) -> ranges.Range:
    """host-local's Range, canonicalized; a located error with the reference text otherwise."""
    if subnet is None:
        fail("required: the range's subnet", (subnet_key,))
    ip, prefix, bits = parse_cidr(subnet)  # the field validator already accepted it

    def addr(text: str | None) -> Any:
        return parse_ip(text) if text else None

    rng = ranges.Range(ip, prefix, bits, addr(start), addr(end), addr(gateway))
    try:
        rng.canonicalize()
    except ranges.RangeError as exc:
        text = str(exc)
        key = subnet_key
        if text.startswith("RangeStart"):
            key = "rangeStart"
        elif text.startswith("RangeEnd"):
            key = "rangeEnd"
        fail(text, (key,))
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
        fail(str(exc))
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
    _sets: SetsByPath = PrivateAttr(default_factory=list)

    @property
    def sets(self) -> SetsByPath:
        return self._sets

    def _ordered_sets(self) -> SetsByPath:
        """Every range set with its path, in host-local's order."""
        found: SetsByPath = []
        runtime = self.runtimeConfig.ipRanges if self.runtimeConfig is not None else None
        for i, rset in enumerate(runtime or []):
            found.append((("runtimeConfig", "ipRanges", i), ranges.RangeSet(r._canon for r in rset)))
        if self.ipam._legacy is not None:
            found.append((("ipam",), ranges.RangeSet([self.ipam._legacy])))
        for i, rset in enumerate(self.ipam.ranges or []):
            found.append((("ipam", "ranges", i), ranges.RangeSet(r._canon for r in rset)))
        return found

    @model_validator(mode="after")
    def _all_sets(self) -> HostLocalConf:
        found = self._ordered_sets()
        if not found:
            fail("no IP ranges specified: set ipam.ranges (or ipam.subnet)", ("ipam",))
        version = self.cniVersion if isinstance(self.cniVersion, str) and self.cniVersion else "0.1.0"
        counts = {4: 0, 6: 0}
        for _, rset in found:
            counts[rset.version] += 1
        if (counts[4] > 1 or counts[6] > 1) and version in versions.SUPPORTED:
            if not versions.has_multiple_ips(version):
                fail(f"CNI version {version} does not support more than 1 address per family", ("ipam",))
        for i, (_, first) in enumerate(found[:-1]):
            for j, (at, second) in enumerate(found[i + 1 :], start=i + 1):
                if first.overlaps(second):
                    fail(f"range set {i} overlaps with {j}", at)
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
