"""host-local address ranges and range sets, with the reference plugin's defaults (pure).

A Range is a subnet with an inclusive [rangeStart, rangeEnd] pool and a gateway. The
defaults and checks follow containernetworking/plugins `backend/allocator/range.go`:
gateway = network+1, rangeStart = network+1 (the gateway is skipped by the iterator),
rangeEnd = broadcast-1 for IPv4 and the last address for IPv6. A gateway outside its
subnet (even of the other family) is accepted as the reference accepts it: point-to-point
and on-link set-ups use one; `gateway_in_subnet` tells the caller so it can warn.
Addresses are kept as (version, int) pairs internally; `ip()` renders them.
"""

from __future__ import annotations

import ipaddress

TYPE_CHECKING = False
if TYPE_CHECKING:
    from multiplane.spec.gojson import IPAddress

__all__ = ["Range", "RangeError", "RangeSet", "gateways", "ip_str"]


class RangeError(ValueError):
    """A range or range set that cannot be used; the text is the reference plugin's."""


def ip_str(version: int, value: int) -> str:
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))


def _ip(version: int, value: int) -> IPAddress:
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


class Range:
    """One pool, as configured; `canonicalize()` fills version/network/start/end/gw (ints)."""

    __slots__ = ("subnet_ip", "prefix", "mask_bits", "range_start", "range_end", "gateway")
    __slots__ += ("version", "network", "start", "end", "gw")

    def __init__(
        self,
        subnet_ip: IPAddress | None,
        prefix: int = 0,
        mask_bits: int = 0,
        range_start: IPAddress | None = None,
        range_end: IPAddress | None = None,
        gateway: IPAddress | None = None,
    ) -> None:
        self.subnet_ip, self.prefix, self.mask_bits = subnet_ip, prefix, mask_bits
        self.range_start, self.range_end, self.gateway = range_start, range_end, gateway
        self.version = self.network = self.start = self.end = self.gw = 0

    @property
    def bits(self) -> int:
        return 32 if self.version == 4 else 128

    @property
    def last(self) -> int:
        """The last address of the subnet (the IPv4 broadcast)."""
        return self.network | ((1 << (self.bits - self.prefix)) - 1)

    def subnet_str(self) -> str:
        return f"{self.subnet_ip}/{self.prefix}"

    def in_subnet(self, addr: IPAddress) -> bool:
        return addr.version == self.version and (int(addr) >> (self.bits - self.prefix)) == (
            self.network >> (self.bits - self.prefix)
        )

    @property
    def gateway_in_subnet(self) -> bool:
        """False for a configured gateway outside the subnet (after `canonicalize()`)."""
        return self.gateway is None or self.in_subnet(self.gateway)

    def canonicalize(self) -> None:
        """Validate and fill in the defaults; RangeError with the reference text otherwise."""
        if self.subnet_ip is None:
            raise RangeError("IP <nil> not v4 nor v6")
        self.version = self.subnet_ip.version
        if self.prefix > self.mask_bits - 2:
            raise RangeError(f"Network {self.subnet_str()} too small to allocate from")
        if self.mask_bits != self.bits:
            raise RangeError("IPNet IP and Mask version mismatch")
        host_bits = self.bits - self.prefix
        self.network = (int(self.subnet_ip) >> host_bits) << host_bits
        if self.network != int(self.subnet_ip):
            raise RangeError(
                f"Network has host bits set. For a subnet mask of length {self.prefix} "
                f"the network address is {ip_str(self.version, self.network)}"
            )
        if self.gateway is None:
            self.gw = self.network + 1
        else:
            # -1: a gateway of the other family can never equal a candidate address
            self.gw = int(self.gateway) if self.gateway.version == self.version else -1
        # Like the reference, a bound is checked against whatever bounds are already known.
        self.start, self.end = -1, -1
        if self.range_end is not None and self.range_end.version == self.version:
            self.end = int(self.range_end)
        if self.range_start is not None:
            if not self.contains(self.range_start):
                raise RangeError(f"RangeStart {self.range_start} not in network {self.subnet_str()}")
            self.start = int(self.range_start)
        else:
            self.start = self.network + 1
        if self.range_end is not None:
            self.end = -1
            if not self.contains(self.range_end):
                raise RangeError(f"RangeEnd {self.range_end} not in network {self.subnet_str()}")
            self.end = int(self.range_end)
        else:
            self.end = self.last - 1 if self.version == 4 else self.last

    def contains(self, addr: IPAddress) -> bool:
        """Same family, inside the subnet, and inside whichever bounds are set."""
        if not self.in_subnet(addr):
            return False
        value = int(addr)
        if self.start >= 0 and value < self.start:
            return False
        return not (self.end >= 0 and value > self.end)

    def overlaps(self, other: Range) -> bool:
        if self.version != other.version:
            return False
        return (
            self.contains(other.start_ip)
            or self.contains(other.end_ip)
            or other.contains(self.start_ip)
            or other.contains(self.end_ip)
        )

    @property
    def start_ip(self) -> IPAddress:
        return _ip(self.version, self.start)

    @property
    def end_ip(self) -> IPAddress:
        return _ip(self.version, self.end)

    @property
    def gateway_ip(self) -> IPAddress | None:
        return _ip(self.version, self.gw) if self.gw >= 0 else self.gateway

    def size(self) -> int:
        """Addresses the iterator can hand out (the pool minus its own gateway)."""
        return self.end - self.start + 1 - (1 if self.start <= self.gw <= self.end else 0)

    def __str__(self) -> str:
        return f"{self.start_ip}-{self.end_ip}"


class RangeSet(list[Range]):
    """Ranges of one family forming one pool; one address is allocated per set."""

    def canonicalize(self) -> None:
        if not self:
            raise RangeError("empty range set")
        for i, rng in enumerate(self):
            rng.canonicalize()
            if i and rng.version != self[0].version:
                raise RangeError("mixed address families")
        for i, first in enumerate(self[:-1]):
            for second in self[i + 1 :]:
                if first.overlaps(second):
                    raise RangeError(f"subnets {first} and {second} overlap")

    @property
    def version(self) -> int:
        return self[0].version

    def range_for(self, addr: IPAddress) -> Range | None:
        for rng in self:
            if rng.contains(addr):
                return rng
        return None

    def contains(self, addr: IPAddress) -> bool:
        return self.range_for(addr) is not None

    def overlaps(self, other: RangeSet) -> bool:
        return any(a.overlaps(b) for a in self for b in other)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self)


def gateways(sets: list[RangeSet]) -> frozenset[IPAddress]:
    """Every gateway of canonicalized range sets, defaults included: addresses never handed out."""
    found: set[IPAddress] = set()
    for rset in sets:
        for rng in rset:
            gateway = rng.gateway_ip
            if gateway is not None:
                found.add(gateway)
    return frozenset(found)
