"""host-local configuration: the `ipam` section plus the keys it reads from the whole config.

Mirrors `LoadIPAMConfig` of the reference plugin: range-set order is runtimeConfig.ipRanges,
then the legacy top-level range, then `ranges` (the index names `last_reserved_ip.<i>`);
requested IPs come from CNI_ARGS `IP=`, then `args.cni.ips`, then `runtimeConfig.ips`.
All errors are InvalidConfig (7) with the reference texts, except CNI_ARGS errors (4).
A gateway outside its subnet is accepted, as the reference accepts it, and noted in
`IpamConf.warnings` for the plugin to log.
"""

from __future__ import annotations

import os
import stat

from multiplane.errors import DecodingFailure, InvalidConfig
from multiplane.ipam.ranges import Range, RangeError, RangeSet, gateways
from multiplane.spec import version as versions
from multiplane.spec.args import parse_cni_args
from multiplane.spec.gojson import field as get, parse_cidr, parse_ip, parse_ip_maybe_cidr, want
from multiplane.spec.result import DNS, Route

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from multiplane.spec.gojson import IPAddress

__all__ = ["DEFAULT_DATA_DIR", "IpamConf", "load", "parse_resolv_conf"]

DEFAULT_DATA_DIR = "/var/lib/cni/networks"


class IpamConf:
    """The parsed host-local settings of one request.

    `gateways`: every configured gateway (defaults included), never handed out from any set.
    `warnings`: one text per range whose gateway lies outside its subnet ("range set <i>: ...").
    """

    __slots__ = ("name", "cni_version", "ranges", "routes", "data_dir", "resolv_conf", "requested")
    __slots__ += ("gateways", "warnings")

    def __init__(
        self,
        name: str,
        cni_version: str,
        ranges: list[RangeSet],
        routes: list[Route],
        data_dir: str,
        resolv_conf: str,
        requested: list[IPAddress],
    ) -> None:
        self.name, self.cni_version, self.ranges, self.routes = name, cni_version, ranges, routes
        self.data_dir, self.resolv_conf, self.requested = data_dir, resolv_conf, requested
        self.gateways = gateways(ranges)
        self.warnings: list[str] = []
        for i, rset in enumerate(ranges):
            for rng in rset:
                if not rng.gateway_in_subnet:
                    self.warnings.append(f"range set {i}: gateway {rng.gateway} is outside subnet {rng.subnet_str()}")


def _ip_field(value: Any, where: str) -> IPAddress | None:
    """net.IP from JSON: "" means unset; anything unparseable is `invalid IP address: X`."""
    if value is None:
        return None
    want(value, str, where, "net.IP")
    if value == "":
        return None
    addr = parse_ip(value)
    if addr is None:
        raise InvalidConfig(f"invalid IP address: {value}")
    return addr


def _range(raw: Any, where: str) -> Range:
    """One range; `where` is Go's "<Struct>.<json path>" used in its type-error texts."""
    rng = Range(subnet_ip=None)
    if raw is None:
        return rng  # Go leaves a zero Range: "IP <nil> not v4 nor v6" when canonicalised
    raw = want(raw, dict, where, "allocator.Range")
    subnet = get(raw, "subnet")
    if subnet is not None:
        want(subnet, str, f"{where}.subnet", "string")
        try:
            rng.subnet_ip, rng.prefix, rng.mask_bits = parse_cidr(subnet)
        except ValueError as exc:
            raise InvalidConfig(str(exc)) from exc
    rng.range_start = _ip_field(get(raw, "rangeStart"), f"{where}.rangeStart")
    rng.range_end = _ip_field(get(raw, "rangeEnd"), f"{where}.rangeEnd")
    rng.gateway = _ip_field(get(raw, "gateway"), f"{where}.gateway")
    return rng


def _range_sets(raw: Any, where: str) -> list[RangeSet]:
    if raw is None:
        return []
    want(raw, list, where, "[]allocator.RangeSet")
    sets = []
    for item in raw:
        if item is None:
            sets.append(RangeSet())
            continue
        want(item, list, where, "allocator.RangeSet")
        sets.append(RangeSet(_range(r, f"Range.{where.split('.', 1)[1]}") for r in item))
    return sets


def _ip_list(raw: Any, where: str) -> list[IPAddress]:
    if raw is None:
        return []
    want(raw, list, where, "[]*ip.IP")
    out = []
    for item in raw:
        want(item, str, where, "*ip.IP")
        if item == "":
            raise InvalidConfig("cannot understand ip: IP <nil> not v4 nor v6")
        addr = parse_ip_maybe_cidr(item)
        if addr is None:
            raise InvalidConfig(f"invalid IP address {item}")
        out.append(addr)
    return out


def _routes(raw: Any) -> list[Route]:
    if raw is None:
        return []
    want(raw, list, "IPAMConfig.ipam.routes", "[]*types.Route")
    routes = []
    for item in raw:
        want(item, dict, "IPAMConfig.ipam.routes", "types.route")
        dst, gw = get(item, "dst"), get(item, "gw")
        want(dst, str, "IPAMConfig.ipam.routes", "string")
        if gw is not None:
            want(gw, str, "IPAMConfig.ipam.routes.gw", "net.IP")
        try:
            routes.append(Route.parse(item))
        except DecodingFailure as exc:
            raise InvalidConfig(exc.msg) from exc
    return routes


def _parse_ip_arg(text: str) -> IPAddress | None:
    if text == "":
        return None
    addr = parse_ip_maybe_cidr(text)
    if addr is None:
        raise ValueError(f"invalid IP address {text}")
    return addr


def _check_data_dir(path: str) -> None:
    # Safer than the reference: a relative dataDir (resolved against the runtime's cwd) or
    # one with ".." can put reservations anywhere on the node.
    if not os.path.isabs(path) or ".." in path.split("/"):
        raise InvalidConfig(f"invalid dataDir {path!r}: must be an absolute path without '..'")


def load(conf: dict[str, Any], name: str, cni_version: str, cni_args: str) -> IpamConf:
    """Parse and validate; InvalidConfig (7) or InvalidEnvironment (4, CNI_ARGS) on bad input."""
    ipam = get(conf, "ipam")
    if ipam is None:
        raise InvalidConfig("IPAM config missing 'ipam' key")
    want(ipam, dict, "IPAMConfig.ipam", "allocator.IPAMConfig")

    requested: list[IPAddress] = []
    if cni_args:
        ip_arg = parse_cni_args(cni_args, {"IP": _parse_ip_arg}).get("IP")
        if ip_arg is not None:
            requested.append(ip_arg)
    args = get(conf, "args")
    if args is not None:
        want(args, dict, "Net.args", 'struct { A *allocator.IPAMArgs "json:\\"cni\\"" }')
        cni = get(args, "cni")
        if cni is not None:
            want(cni, dict, ".args.cni", "allocator.IPAMArgs")
            requested += _ip_list(get(cni, "ips"), "IPAMArgs.args.cni.ips")
    runtime = get(conf, "runtimeConfig")
    runtime_ranges: list[RangeSet] = []
    if runtime is not None:
        want(runtime, dict, "Net.runtimeConfig", "struct")
        requested += _ip_list(get(runtime, "ips"), ".runtimeConfig.ips")
        runtime_ranges = _range_sets(get(runtime, "ipRanges"), ".runtimeConfig.ipRanges")

    ranges: list[RangeSet] = list(runtime_ranges)
    if get(ipam, "subnet") is not None:
        ranges.append(RangeSet([_range(ipam, "IPAMConfig.ipam")]))
    ranges += _range_sets(get(ipam, "ranges"), "IPAMConfig.ipam.ranges")
    if not ranges:
        raise InvalidConfig("no IP ranges specified")

    counts = {4: 0, 6: 0}
    for i, rset in enumerate(ranges):
        try:
            rset.canonicalize()
        except RangeError as exc:
            raise InvalidConfig(f"invalid range set {i}: {exc}") from exc
        counts[rset.version] += 1
    if (counts[4] > 1 or counts[6] > 1) and not versions.has_multiple_ips(cni_version):
        written = get(conf, "cniVersion")  # the reference prints the version as written, even ""
        shown = "" if written == "" else cni_version
        raise InvalidConfig(f"CNI version {shown} does not support more than 1 address per family")
    for i, first in enumerate(ranges[:-1]):
        for j, second in enumerate(ranges[i + 1 :], start=i + 1):
            if first.overlaps(second):
                raise InvalidConfig(f"range set {i} overlaps with {j}")

    routes = _routes(get(ipam, "routes"))

    data_dir = get(ipam, "dataDir")
    if data_dir is not None:
        want(data_dir, str, "IPAMConfig.ipam.dataDir", "string")
    data_dir = data_dir or DEFAULT_DATA_DIR
    _check_data_dir(data_dir)
    resolv = get(ipam, "resolvConf")
    if resolv is not None:
        want(resolv, str, "IPAMConfig.ipam.resolvConf", "string")
    return IpamConf(name, cni_version, ranges, routes, data_dir, resolv or "", requested)


_RESOLV_MAX = 1 << 20


def parse_resolv_conf(path: str) -> DNS:
    """resolv.conf → DNS like the reference: nameserver, domain (last wins), search, options."""
    # A regular file of sane size only: /dev/zero would exhaust memory, a FIFO would hang the call.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise InvalidConfig(f"open {path}: not a regular file")
            data = os.read(fd, _RESOLV_MAX + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise InvalidConfig(f"open {path}: {(exc.strerror or str(exc)).lower()}") from exc
    if len(data) > _RESOLV_MAX:
        raise InvalidConfig(f"open {path}: larger than {_RESOLV_MAX} bytes, not a resolv.conf")
    lines = data.decode("utf-8", "replace").splitlines()
    dns = DNS()
    for line in lines:
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        fields = line.split()
        if len(fields) < 2:
            continue
        if fields[0] == "nameserver":
            dns.nameservers.append(fields[1])
        elif fields[0] == "domain":
            dns.domain = fields[1]
        elif fields[0] == "search":
            dns.search.extend(fields[1:])
        elif fields[0] == "options":
            dns.options.extend(fields[1:])
    return dns
