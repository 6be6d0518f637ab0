"""Configuration of `multiplane-cluster-ipam`: Whereabouts' keys with Whereabouts' meaning, plus ours.

Whereabouts keys (its README and pkg/config): `range` as a CIDR ("10.1.2.0/24"; host bits
are ignored, so "192.168.2.225/28" is the /28 at .224) or as "<start>-<end>/<prefix>"
("10.1.2.5-10.1.2.25/24": the subnet of the end, from start to end); `range_start`,
`range_end` (inside the subnet; a bound on the network or last address is moved to the
first or last usable one, as Whereabouts does); `exclude` (CIDRs, whole CIDRs removed);
`gateway` (returned, and never handed out); `routes`; `ipRanges` (a list of
{range, range_start, range_end, exclude}, placed after `range`, for several ranges and dual
stack); `network_name`; `kubernetes.kubeconfig`; and for etcd the flat `etcd_host`
(comma-separated), `etcd_cert_file`, `etcd_key_file`, `etcd_ca_cert_file`,
`etcd_username`, `etcd_password`. IPv4 parts with leading zeros ("00192.00168.1.5") are
read as decimal, like Whereabouts' sloppy parser. Other Whereabouts keys (`log_file`,
`log_level`, `datastore`, `configuration_path`, `enable_overlapping_ranges`, leader
election, `reconciler_cron_expression`) are accepted and ignored.

host-local's names for one range are read too, so the seed's NAD (or any host-local NAD)
moves over by changing `type` alone: `subnet`, `rangeStart`, `rangeEnd`, `gateway` as
`range`, `range_start`, `range_end`, `gateway`; and `ranges` (host-local's range sets) as
`ipRanges`, each set holding exactly one range (a set of several alternatives has no
meaning here: refused, 7), with its own `gateway`. A configuration that mixes both names is
refused (7). `dns` is copied into the result (as Whereabouts, after the static plugin, does).
Whereabouts' `node_slice_size` ("/22": a node's share of the range) is read as `blockSize`
when that is not set.

Ours: `nodeName` (default: the host name, lower-cased, as kubelet's default node name),
`blockSize` (prefix length of a block; also per `ipRanges` entry), `etcd`
({"endpoints": [...], "certFile", "keyFile", "caFile", "username", "password"}; chooses
the etcd store, else the Kubernetes API), `dataDir` (default
/var/lib/cni/multiplane/cluster-ipam).

Deliberate differences: Whereabouts silently ignores an unparseable or out-of-subnet
`range_start`/`range_end`, an `exclude` that is neither a CIDR nor an address (a bare
address excludes itself, as /32 or /128), and overlapping ranges; here each is
InvalidConfig (7) naming the key, since in a shared pool a typo widens what every node
hands out. IPv6 ranges wider than /65 are fully addressable (Whereabouts: only the first
/65). The gateway is never handed out (Whereabouts' allocator does not skip it). The
gateway goes only on the addresses of its own family. Addresses are not handed out lowest
first across the range: each node hands out the addresses of its own blocks (decision
0010), so which address a pod gets depends on its node. Whereabouts' static `addresses`
are not read.

Pools: one per range, named "<subnet address>-<prefix>" ("10.1.2.0-24",
"fd00::-64"), prefixed "<network_name>-" when set. The name depends on the subnet only,
so two configurations over one subnet (even with other bounds) share one pool and can
never hand out an address twice; `network_name` separates networks that reuse a subnet on
different LANs, as in Whereabouts.

Default `blockSize`: /28 for IPv4 (16 addresses: 100 ADDs claim ~7 blocks, under the
10-writes goal) and /120 for IPv6 (256: IPv6 ranges are large), made smaller until the
range spans at least 8 block slots, so a small range (the seed's 17 addresses) is still
shared by several nodes. Configurations sharing a pool should agree on it (set it
explicitly); if they do not, the allocator's overlap check keeps it safe, only slower.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re

from multiplane.errors import DecodingFailure, InvalidConfig
from multiplane.ipam.cluster.blocks import Range, ip_str
from multiplane.spec import version as versions
from multiplane.spec.args import parse_cni_args
from multiplane.spec.gojson import field as get, parse_ip, parse_ip_maybe_cidr
from multiplane.spec.result import DNS, Route

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from multiplane.spec.gojson import IPAddress

__all__ = [
    "DEFAULT_BLOCK_PREFIX",
    "DEFAULT_DATA_DIR",
    "TYPE",
    "ClusterIpamConf",
    "EtcdConf",
    "PoolConf",
    "find_sections",
    "load",
    "store_key",
]

TYPE = "multiplane-cluster-ipam"
DEFAULT_DATA_DIR = "/var/lib/cni/multiplane/cluster-ipam"
DEFAULT_BLOCK_PREFIX = {4: 28, 6: 120}
_MIN_BLOCK_SLOTS = 8
_SLOPPY_V4 = re.compile(r"^\d+(\.\d+){3}$")


class EtcdConf:
    """Where the etcd store is: endpoints with a scheme, and optional TLS files and basic auth."""

    __slots__ = ("endpoints", "cert_file", "key_file", "ca_file", "username", "password")

    def __init__(
        self,
        endpoints: list[str],
        cert_file: str = "",
        key_file: str = "",
        ca_file: str = "",
        username: str = "",
        password: str = "",
    ) -> None:
        self.endpoints, self.cert_file, self.key_file, self.ca_file = endpoints, cert_file, key_file, ca_file
        self.username, self.password = username, password


class PoolConf:
    """One range of the configuration and the pool it allocates from."""

    __slots__ = ("name", "range", "block_prefix", "gateway")

    def __init__(self, name: str, rng: Range, block_prefix: int, gateway: IPAddress | None) -> None:
        self.name, self.range, self.block_prefix, self.gateway = name, rng, block_prefix, gateway


class ClusterIpamConf:
    """The parsed settings of one request. `pools` in result order: `range` first, then `ipRanges`."""

    __slots__ = ("name", "cni_version", "pools", "routes", "network_name", "node_name", "data_dir")
    __slots__ += ("kubeconfig", "etcd", "requested", "dns")

    def __init__(self, name: str, cni_version: str) -> None:
        self.name, self.cni_version = name, cni_version
        self.pools: list[PoolConf] = []
        self.routes: list[Route] = []
        self.network_name = ""
        self.node_name = ""
        self.data_dir = DEFAULT_DATA_DIR
        self.kubeconfig = ""
        self.etcd: EtcdConf | None = None
        self.requested: list[IPAddress] = []
        self.dns = DNS()


# ---- small typed readers ----------------------------------------------------------------


def _str(raw: dict[str, Any], key: str, where: str) -> str:
    value = get(raw, key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidConfig(f"{where}.{key}: expected a string, got {value!r}")
    return value.strip()


def _sloppy_ip(text: str) -> IPAddress | None:
    """An address as Whereabouts reads it: IPv4 parts may carry leading zeros (decimal)."""
    text = text.strip()
    if _SLOPPY_V4.match(text):
        parts = [int(p) for p in text.split(".")]
        if any(p > 255 for p in parts):
            return None
        text = ".".join(str(p) for p in parts)
    return parse_ip(text)


def _sloppy_cidr(text: str) -> tuple[IPAddress, int] | None:
    """(address with host bits, prefix length) or None."""
    ip_text, sep, plen = text.strip().partition("/")
    addr = _sloppy_ip(ip_text) if sep else None
    if addr is None or not plen.isascii() or not plen.isdigit():
        return None
    prefix = int(plen)
    if prefix > (32 if addr.version == 4 else 128):
        return None
    return addr, prefix


def _ip_key(raw: dict[str, Any], key: str, where: str) -> IPAddress | None:
    text = _str(raw, key, where)
    if not text:
        return None
    addr = _sloppy_ip(text)
    if addr is None:
        raise InvalidConfig(f"{where}.{key}: invalid IP address {text!r}")
    return addr


def _block_size(raw: dict[str, Any], where: str, key: str = "blockSize") -> int | None:
    value = get(raw, key)
    if value is None:
        return None
    if isinstance(value, str) and value.lstrip("/").isdigit():
        return int(value.lstrip("/"))
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise InvalidConfig(f'{where}.{key}: expected a prefix length such as 28 or "/28", got {value!r}')


# ---- host-local's names ------------------------------------------------------------------

_HOST_LOCAL = {"subnet": "range", "rangeStart": "range_start", "rangeEnd": "range_end"}


def _from_host_local(ipam: dict[str, Any]) -> dict[str, Any]:
    """`ipam` with host-local's range keys renamed to Whereabouts' (see the module docstring)."""
    used = [k for k in (*_HOST_LOCAL, "ranges") if get(ipam, k) is not None]
    if not used:
        return ipam
    theirs = [k for k in ("range", "range_start", "range_end", "ipRanges") if get(ipam, k) is not None]
    if theirs:
        raise InvalidConfig(
            f"ipam: host-local's {', '.join(used)} and Whereabouts' {', '.join(theirs)} in one configuration; "
            "use one set of names"
        )
    out = {k: v for k, v in ipam.items() if k not in (*_HOST_LOCAL, "ranges")}
    for old, new in _HOST_LOCAL.items():
        if get(ipam, old) is not None:
            out[new] = get(ipam, old)
    sets = get(ipam, "ranges")
    if sets is not None:
        if not isinstance(sets, list):
            raise InvalidConfig(f"ipam.ranges: expected a list of range sets, got {sets!r}")
        converted = []
        for i, rangeset in enumerate(sets):
            if not isinstance(rangeset, list) or len(rangeset) != 1 or not isinstance(rangeset[0], dict):
                raise InvalidConfig(
                    f"ipam.ranges[{i}]: expected a range set of exactly one range "
                    f"(one address per set; alternatives within a set are not supported), got {rangeset!r}"
                )
            item = {_HOST_LOCAL.get(k, k): v for k, v in rangeset[0].items()}
            converted.append(item)
        out["ipRanges"] = converted
    return out


# ---- ranges -----------------------------------------------------------------------------


def _range(raw: dict[str, Any], where: str, default_block: int | None) -> tuple[Range, int]:
    text = _str(raw, "range", where)
    if not text:
        raise InvalidConfig(f"{where}.range: missing (a CIDR such as 10.1.2.0/24, or 10.1.2.5-10.1.2.25/24)")
    start = _ip_key(raw, "range_start", where)
    end = _ip_key(raw, "range_end", where)
    first_text, dash, cidr_text = text.partition("-")
    if dash:
        range_start = _sloppy_ip(first_text)
        if range_start is None:
            raise InvalidConfig(f"{where}.range: invalid range start IP {first_text.strip()!r} in {text!r}")
        parsed = _sloppy_cidr(cidr_text)
        if parsed is None:
            raise InvalidConfig(f"{where}.range: invalid CIDR {cidr_text.strip()!r} in {text!r}")
        range_end = parsed[0]
        for key, given, implied in (("range_start", start, range_start), ("range_end", end, range_end)):
            if given is not None and given != implied:
                raise InvalidConfig(f"{where}.{key}: {given} contradicts range {text!r}, which implies {implied}")
        start, end = range_start, range_end
    else:
        parsed = _sloppy_cidr(text)
        if parsed is None:
            raise InvalidConfig(f"{where}.range: invalid CIDR {text!r}")
    addr, prefix = parsed
    net = ipaddress.ip_network(f"{addr}/{prefix}", strict=False)
    for key, bound in (("range_start", start), ("range_end", end)):
        if bound is not None and (bound.version != net.version or bound not in net):
            raise InvalidConfig(f"{where}.{key}: {bound} is not in range {net}")
    if start is not None and end is not None and int(end) < int(start):
        raise InvalidConfig(f"{where}.range_end: {end} is before range_start {start}")
    excludes = []
    raw_ex = get(raw, "exclude")
    if raw_ex is not None:
        if not isinstance(raw_ex, list):
            raise InvalidConfig(f"{where}.exclude: expected a list of CIDRs, got {raw_ex!r}")
        for i, item in enumerate(raw_ex):
            cidr = _sloppy_cidr(item) if isinstance(item, str) else None
            if cidr is None and isinstance(item, str) and "/" not in item:
                single = _sloppy_ip(item)  # a bare address: itself alone
                cidr = None if single is None else (single, 32 if single.version == 4 else 128)
            if cidr is None:
                raise InvalidConfig(f"{where}.exclude[{i}]: invalid CIDR {item!r}")
            if cidr[0].version != net.version:
                raise InvalidConfig(f"{where}.exclude[{i}]: {item} is not of the range's family (IPv{net.version})")
            excludes.append(f"{cidr[0]}/{cidr[1]}")
    rng = Range.make(
        str(net),
        None if start is None else str(start),
        None if end is None else str(end),
        excludes,
    )
    if rng.first > rng.last or rng.next_usable(rng.first, rng.last) is None:
        raise InvalidConfig(f"{where}.range: {text!r} leaves no address to hand out")
    block = _block_size(raw, where) or default_block
    bits = rng.bits
    if block is None:
        block = DEFAULT_BLOCK_PREFIX[rng.version]
        while block < bits and ((rng.last >> (bits - block)) - (rng.first >> (bits - block)) + 1) < _MIN_BLOCK_SLOTS:
            block += 1
        block = max(block, net.prefixlen)
    elif not net.prefixlen <= block <= bits:
        raise InvalidConfig(
            f"{where}.blockSize: /{block} must lie between the range's prefix /{net.prefixlen} and /{bits}"
            + (" (set blockSize per ipRanges entry for dual stack)" if block < net.prefixlen else "")
        )
    return rng, block


def _pool_name(network_name: str, rng: Range) -> str:
    base = f"{ip_str(rng.version, rng.network)}-{rng.prefix}"
    return f"{network_name}-{base}" if network_name else base


# ---- the rest ---------------------------------------------------------------------------


def _etcd(ipam: dict[str, Any]) -> EtcdConf | None:
    raw = get(ipam, "etcd")
    where = "ipam.etcd"
    if raw is not None:
        if not isinstance(raw, dict):
            raise InvalidConfig(f"{where}: expected an object with endpoints, got {raw!r}")
        endpoints = get(raw, "endpoints")
        if isinstance(endpoints, str):
            endpoints = [endpoints]
        if (
            not isinstance(endpoints, list)
            or not endpoints
            or not all(isinstance(e, str) and e.strip() for e in endpoints)
        ):
            raise InvalidConfig(f"{where}.endpoints: expected a non-empty list of host:port or URLs, got {endpoints!r}")
        conf = EtcdConf(
            [e.strip() for e in endpoints],
            _str(raw, "certFile", where),
            _str(raw, "keyFile", where),
            _str(raw, "caFile", where),
            _str(raw, "username", where),
            _str(raw, "password", where),
        )
    else:
        host = _str(ipam, "etcd_host", "ipam")
        if not host:
            return None
        where = "ipam"
        conf = EtcdConf(
            [h.strip() for h in host.split(",") if h.strip()],
            _str(ipam, "etcd_cert_file", where),
            _str(ipam, "etcd_key_file", where),
            _str(ipam, "etcd_ca_cert_file", where),
            _str(ipam, "etcd_username", where),
            _str(ipam, "etcd_password", where),
        )
    if bool(conf.cert_file) != bool(conf.key_file):
        raise InvalidConfig(f"{where}: a client certificate needs both its cert and key file")
    secure = bool(conf.cert_file or conf.ca_file)
    conf.endpoints = [e if "://" in e else f"{'https' if secure else 'http'}://{e}" for e in conf.endpoints]
    for endpoint in conf.endpoints:
        if not endpoint.startswith(("http://", "https://")):
            raise InvalidConfig(f"{where}: endpoint {endpoint!r} must be http:// or https://")
    return conf


def _routes(ipam: dict[str, Any]) -> list[Route]:
    raw = get(ipam, "routes")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidConfig(f"ipam.routes: expected a list, got {raw!r}")
    routes = []
    for i, item in enumerate(raw):
        try:
            routes.append(Route.parse(item, f"ipam.routes[{i}]"))
        except DecodingFailure as exc:
            raise InvalidConfig(exc.msg) from exc
    return routes


def _ip_args(text: str) -> list[IPAddress]:
    out = []
    for item in text.split(","):
        addr = parse_ip_maybe_cidr(item.strip())
        if addr is None:
            raise ValueError(f"invalid IP address {item.strip()}")
        out.append(addr)
    return out


def _requested(conf: dict[str, Any], cni_args: str) -> list[IPAddress]:
    """CNI_ARGS `IP=` (comma-separated, as Whereabouts reads it), then `args.cni.ips`, then `runtimeConfig.ips`."""
    found: list[IPAddress] = []
    if cni_args:
        found += parse_cni_args(cni_args, {"IP": _ip_args}).get("IP", [])
    lists = []
    args = get(conf, "args")
    if isinstance(args, dict) and isinstance(get(args, "cni"), dict):
        lists.append(("args.cni.ips", get(get(args, "cni"), "ips")))
    runtime = get(conf, "runtimeConfig")
    if isinstance(runtime, dict):
        lists.append(("runtimeConfig.ips", get(runtime, "ips")))
    for where, items in lists:
        if items is None:
            continue
        if not isinstance(items, list):
            raise InvalidConfig(f"{where}: expected a list of addresses, got {items!r}")
        for item in items:
            addr = parse_ip_maybe_cidr(item) if isinstance(item, str) else None
            if addr is None:
                raise InvalidConfig(f"{where}: invalid IP address {item!r}")
            found.append(addr)
    return found


def _default_node_name() -> str:
    """The front door's node name: the node daemon's `nodeName` (the kubelet's, from the downward
    API in the DaemonSet), else the host name, lower-cased (kubelet's default node name)."""
    from multiplane import frontdoor

    return frontdoor.current().node_name()


def load(conf: dict[str, Any], name: str, cni_version: str, cni_args: str = "") -> ClusterIpamConf:
    """Parse and validate the whole network config; InvalidConfig (7), or InvalidEnvironment (4) for CNI_ARGS."""
    ipam = get(conf, "ipam")
    if ipam is None:
        raise InvalidConfig("IPAM config missing 'ipam' key")
    if not isinstance(ipam, dict):
        raise InvalidConfig(f"ipam: expected an object, got {ipam!r}")
    out = ClusterIpamConf(name, cni_version)
    out.network_name = _str(ipam, "network_name", "ipam")
    default_block = _block_size(ipam, "ipam")
    if default_block is None:
        default_block = _block_size(ipam, "ipam", "node_slice_size")

    ipam = _from_host_local(ipam)
    entries: list[tuple[dict[str, Any], str]] = []
    if _str(ipam, "range", "ipam"):
        entries.append((ipam, "ipam"))
    ip_ranges = get(ipam, "ipRanges")
    if ip_ranges is not None:
        if not isinstance(ip_ranges, list):
            raise InvalidConfig(f"ipam.ipRanges: expected a list of ranges, got {ip_ranges!r}")
        for i, item in enumerate(ip_ranges):
            if not isinstance(item, dict):
                raise InvalidConfig(f"ipam.ipRanges[{i}]: expected an object with range, got {item!r}")
            entries.append((item, f"ipam.ipRanges[{i}]"))
    if not entries:
        raise InvalidConfig("ipam.range: missing (or give ipam.ipRanges)")

    gateway = _ip_key(ipam, "gateway", "ipam")
    counts = {4: 0, 6: 0}
    for raw, where in entries:
        rng, block = _range(raw, where, default_block)
        own = _ip_key(raw, "gateway", where) if raw is not ipam else None
        gw = own if own is not None else gateway
        gw = gw if gw is not None and gw.version == rng.version else None
        if gw is not None and rng.first <= int(gw) <= rng.last:
            rng.gateway = int(gw)
        for other in out.pools:
            o = other.range
            if o.version == rng.version and o.first <= rng.last and rng.first <= o.last:
                raise InvalidConfig(f"{where}.range: overlaps range {o.subnet_str()} of the same configuration")
        out.pools.append(PoolConf(_pool_name(out.network_name, rng), rng, block, gw))
        counts[rng.version] += 1
    if (counts[4] > 1 or counts[6] > 1) and not versions.has_multiple_ips(cni_version):
        raise InvalidConfig(f"CNI version {cni_version} does not support more than 1 address per family")

    out.routes = _routes(ipam)
    dns = get(ipam, "dns")
    if dns is not None and not isinstance(dns, dict):
        raise InvalidConfig(f"ipam.dns: expected an object, got {dns!r}")
    out.dns = DNS.parse(dns)
    node = get(ipam, "nodeName")
    if node is not None and (not isinstance(node, str) or not node.strip()):
        raise InvalidConfig(f"ipam.nodeName: expected a non-empty string, got {node!r}")
    out.node_name = (node or "").strip() or _default_node_name()
    if not out.node_name:
        raise InvalidConfig("ipam.nodeName: the host name is empty; set nodeName")
    data_dir = _str(ipam, "dataDir", "ipam") or DEFAULT_DATA_DIR
    if not os.path.isabs(data_dir) or ".." in data_dir.split("/"):
        raise InvalidConfig(f"ipam.dataDir: {data_dir!r} must be an absolute path without '..'")
    out.data_dir = data_dir
    kube = get(ipam, "kubernetes")
    if kube is not None:
        if not isinstance(kube, dict):
            raise InvalidConfig(f"ipam.kubernetes: expected an object, got {kube!r}")
        out.kubeconfig = _str(kube, "kubeconfig", "ipam.kubernetes")
    out.etcd = _etcd(ipam)
    out.requested = _requested(conf, cni_args)
    return out


def find_sections(doc: Any) -> list[dict[str, Any]]:
    """Every IPAM section of type multiplane-cluster-ipam in `doc`, NADs' spec.config included, in document order."""
    found: list[dict[str, Any]] = []
    if isinstance(doc, dict):
        if doc.get("type") == TYPE:
            return [doc]
        spec = doc.get("spec")
        if doc.get("kind") == "NetworkAttachmentDefinition" and isinstance(spec, dict):
            config = spec.get("config")
            if isinstance(config, str):
                try:
                    return find_sections(json.loads(config))
                except ValueError as exc:
                    raise InvalidConfig(f"ipam: a NAD's spec.config is not JSON: {exc}") from exc
        for value in doc.values():
            found.extend(find_sections(value))
    elif isinstance(doc, list):
        for item in doc:
            found.extend(find_sections(item))
    return found


def store_key(conf: ClusterIpamConf) -> tuple[str, ...]:
    """Which store a configuration uses: ("etcd", endpoints...) or ("kube", kubeconfig)."""
    if conf.etcd is not None:
        return ("etcd", *conf.etcd.endpoints)
    return ("kube", conf.kubeconfig)
