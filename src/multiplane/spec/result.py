"""CNI results: one internal model (the 1.1.0 shape) and libcni's conversions to every version.

Parsing accepts any supported version (0.1.0 … 1.1.0); `Result.to_dict(version)` writes the
shape that version defines (§4 of the spec), with libcni's rules:
* 0.1/0.2 carry at most one IPv4 and one IPv6 config (`ip4`/`ip6`), routes split by family;
  no IP at all cannot be expressed and fails with "cannot convert: no valid IP addresses";
* 0.3.x/0.4.0 add `ips[].version` and know only name/mac/sandbox and dst/gw;
* 1.0.0 drops `version`; 1.1.0 adds interface mtu/socketPath/pciID and route extras.
Empty collections are omitted, as Go's omitempty does.
"""

from __future__ import annotations

import ipaddress

from multiplane._record import Record

from multiplane.errors import CniError, DecodingFailure
from multiplane.spec import version as versions
from multiplane.spec.gojson import field, parse_cidr, parse_ip

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from multiplane.spec.gojson import IPAddress, IPInterface

__all__ = ["DNS", "IPConfig", "Interface", "Result", "Route", "parse_interface_cidr"]


def parse_interface_cidr(text: object, what: str) -> IPInterface:
    """An address with prefix, host bits kept ("10.1.2.3/24"), as types.ParseCIDR reads it."""
    if not isinstance(text, str):
        raise DecodingFailure(f"{what}: expected a CIDR string, got {text!r}")
    try:
        addr, plen, bits = parse_cidr(text)
    except ValueError as exc:
        raise DecodingFailure(str(exc)) from exc
    if addr.version == 4 and bits == 128:
        # An IPv4-mapped IPv6 prefix (::ffff:a.b.c.d/120) is the IPv4 prefix /24, as Go reads it.
        if plen < 96:
            raise DecodingFailure(f"invalid CIDR address: {text}")
        plen -= 96
    return ipaddress.ip_interface(f"{addr}/{plen}")


def _parse_gw(value: object, what: str) -> IPAddress | None:
    if value in (None, ""):
        return None
    addr = parse_ip(value) if isinstance(value, str) else None
    if addr is None:
        raise DecodingFailure(f"invalid IP address: {value}", what)
    return addr


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Interface(Record):
    __slots__ = ("name", "mac", "sandbox", "mtu", "socket_path", "pci_id")

    def __init__(
        self,
        name: str,
        mac: str = "",
        sandbox: str = "",
        mtu: int | None = None,
        socket_path: str = "",
        pci_id: str = "",
    ) -> None:
        self.name, self.mac, self.sandbox, self.mtu = name, mac, sandbox, mtu
        self.socket_path, self.pci_id = socket_path, pci_id

    def to_dict(self, version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.mac:
            out["mac"] = self.mac
        if version == "1.1.0":
            if self.mtu:
                out["mtu"] = self.mtu
        if self.sandbox:
            out["sandbox"] = self.sandbox
        if version == "1.1.0":
            if self.socket_path:
                out["socketPath"] = self.socket_path
            if self.pci_id:
                out["pciID"] = self.pci_id
        return out


class IPConfig(Record):
    __slots__ = ("address", "gateway", "interface")

    def __init__(self, address: IPInterface, gateway: IPAddress | None = None, interface: int | None = None) -> None:
        self.address, self.gateway, self.interface = address, gateway, interface

    @property
    def family(self) -> int:
        return self.address.version


class Route(Record):
    __slots__ = ("dst", "gw", "mtu", "advmss", "priority", "table", "scope")

    def __init__(
        self,
        dst: IPInterface,
        gw: IPAddress | None = None,
        mtu: int | None = None,
        advmss: int | None = None,
        priority: int | None = None,
        table: int | None = None,
        scope: int | None = None,
    ) -> None:
        self.dst, self.gw, self.mtu, self.advmss = dst, gw, mtu, advmss
        self.priority, self.table, self.scope = priority, table, scope

    @classmethod
    def parse(cls, raw: object, what: str = "route") -> Route:
        """A route object; keys match case-insensitively, as Go's decoder does."""
        if not isinstance(raw, dict):
            raise DecodingFailure(f"{what}: expected an object, got {raw!r}")
        return cls(
            dst=parse_interface_cidr(field(raw, "dst"), f"{what} dst"),
            gw=_parse_gw(field(raw, "gw"), f"{what} gw"),
            mtu=_opt_int(field(raw, "mtu")),
            advmss=_opt_int(field(raw, "advmss")),
            priority=_opt_int(field(raw, "priority")),
            table=_opt_int(field(raw, "table")),
            scope=_opt_int(field(raw, "scope")),
        )

    def to_dict(self, version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"dst": str(self.dst)}
        if self.gw is not None:
            out["gw"] = str(self.gw)
        if version == "1.1.0":
            for key in ("mtu", "advmss", "priority", "table", "scope"):
                value = getattr(self, key)
                # Go: table and scope are *int (an explicit 0 is kept), the others plain omitempty ints.
                if value is not None and (value or key in ("table", "scope")):
                    out[key] = value
        return out


class DNS(Record):
    __slots__ = ("nameservers", "domain", "search", "options")

    def __init__(
        self,
        nameservers: list[str] | None = None,
        domain: str = "",
        search: list[str] | None = None,
        options: list[str] | None = None,
    ) -> None:
        self.nameservers = nameservers or []
        self.domain = domain
        self.search = search or []
        self.options = options or []

    @classmethod
    def parse(cls, raw: object) -> DNS:
        if not isinstance(raw, dict):
            return cls()

        def strings(key: str) -> list[str]:
            value = raw.get(key)
            return [str(v) for v in value] if isinstance(value, list) else []

        domain = raw.get("domain")
        return cls(
            strings("nameservers"), domain if isinstance(domain, str) else "", strings("search"), strings("options")
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.nameservers:
            out["nameservers"] = list(self.nameservers)
        if self.domain:
            out["domain"] = self.domain
        if self.search:
            out["search"] = list(self.search)
        if self.options:
            out["options"] = list(self.options)
        return out

    def empty(self) -> bool:
        return not self.to_dict()


class Result(Record):
    """An ADD result in the internal (1.1.0) shape; `cni_version` is the version it was made in."""

    __slots__ = ("cni_version", "interfaces", "ips", "routes", "dns")

    def __init__(
        self,
        cni_version: str,
        interfaces: list[Interface] | None = None,
        ips: list[IPConfig] | None = None,
        routes: list[Route] | None = None,
        dns: DNS | None = None,
    ) -> None:
        self.cni_version = cni_version
        self.interfaces = interfaces or []
        self.ips = ips or []
        self.routes = routes or []
        self.dns = dns or DNS()

    # ---- parsing -------------------------------------------------------------------

    @classmethod
    def addresses_of(cls, prev: object, default_version: str) -> list[IPAddress]:
        """The addresses of a CHECK's `prevResult` (none when it is absent or not an object; DecodingFailure if bad)."""
        if not isinstance(prev, dict):
            return []
        return [ipc.address.ip for ipc in cls.parse(prev, default_version).ips]

    @classmethod
    def parse(cls, raw: object, default_version: str) -> Result:
        """Read a result of any supported version; a missing cniVersion means `default_version`."""
        if not isinstance(raw, dict):
            raise DecodingFailure(f"failed to parse result: expected a JSON object, got {type(raw).__name__}")
        ver = raw.get("cniVersion") or default_version or "0.1.0"
        if not isinstance(ver, str) or ver not in versions.SUPPORTED:
            raise DecodingFailure(f"unsupported CNI result version {ver!r}")
        if ver in ("0.1.0", "0.2.0"):
            return cls._parse_020(raw, ver)
        interfaces = []
        for item in raw.get("interfaces") or []:
            if not isinstance(item, dict) or not isinstance(item.get("name", ""), str):
                raise DecodingFailure(f"failed to parse result interface: {item!r}")
            interfaces.append(
                Interface(
                    name=item.get("name", ""),
                    mac=str(item.get("mac") or ""),
                    sandbox=str(item.get("sandbox") or ""),
                    mtu=_opt_int(item.get("mtu")),
                    socket_path=str(item.get("socketPath") or ""),
                    pci_id=str(item.get("pciID") or ""),
                )
            )
        ips = []
        for item in raw.get("ips") or []:
            if not isinstance(item, dict):
                raise DecodingFailure(f"failed to parse result ip: {item!r}")
            index = item.get("interface")
            ips.append(
                IPConfig(
                    address=parse_interface_cidr(item.get("address"), "ips address"),
                    gateway=_parse_gw(item.get("gateway"), "ips gateway"),
                    interface=index if isinstance(index, int) and not isinstance(index, bool) and index >= 0 else None,
                )
            )
        routes = [Route.parse(r) for r in raw.get("routes") or []]
        return cls(ver, interfaces, ips, routes, DNS.parse(raw.get("dns")))

    @classmethod
    def _parse_020(cls, raw: dict[str, Any], ver: str) -> Result:
        result = cls(ver, dns=DNS.parse(raw.get("dns")))
        for key in ("ip4", "ip6"):
            conf = raw.get(key)
            if not isinstance(conf, dict):
                continue
            result.ips.append(
                IPConfig(
                    parse_interface_cidr(conf.get("ip"), f"{key} ip"), _parse_gw(conf.get("gateway"), f"{key} gateway")
                )
            )
            result.routes.extend(Route.parse(r) for r in conf.get("routes") or [])
        return result

    # ---- writing -------------------------------------------------------------------

    def to_dict(self, version: str) -> dict[str, Any]:
        """The result in `version`'s shape; CniError when that version cannot express it."""
        if version in ("0.1.0", "0.2.0"):
            return self._to_020(version)
        out: dict[str, Any] = {"cniVersion": version}
        if self.interfaces:
            out["interfaces"] = [i.to_dict(version) for i in self.interfaces]
        if self.ips:
            out["ips"] = []
            for ip in self.ips:
                item: dict[str, Any] = {}
                if versions.has_ip_version(version):
                    item["version"] = str(ip.family)
                if ip.interface is not None:
                    item["interface"] = ip.interface
                item["address"] = str(ip.address)
                if ip.gateway is not None:
                    item["gateway"] = str(ip.gateway)
                out["ips"].append(item)
        if self.routes:
            out["routes"] = [r.to_dict(version) for r in self.routes]
        if not self.dns.empty():
            out["dns"] = self.dns.to_dict()
        return out

    def _to_020(self, version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": version}
        confs: dict[int, dict[str, Any]] = {}
        for ip in self.ips:
            if ip.family in confs:
                continue
            conf: dict[str, Any] = {"ip": str(ip.address)}
            if ip.gateway is not None:
                conf["gateway"] = str(ip.gateway)
            confs[ip.family] = conf
        if not confs:
            raise CniError("cannot convert: no valid IP addresses")
        for route in self.routes:
            target = confs.get(route.dst.version)
            if target is not None:
                target.setdefault("routes", []).append(route.to_dict(version))
        if 4 in confs:
            out["ip4"] = confs[4]
        if 6 in confs:
            out["ip6"] = confs[6]
        if not self.dns.empty():
            out["dns"] = self.dns.to_dict()
        return out
