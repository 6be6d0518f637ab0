"""host-local allocation policy: one address per range set, round-robin (no I/O of its own).

Why round-robin: an address freed by a pod that just died may still sit in a neighbour's
ARP cache or a connection table. Starting after the last address handed out
(`last_reserved_ip.<set>`) delays its reuse as long as the pool allows. The walk goes
last+1 … rangeEnd, then the next range's rangeStart (wrapping over the set), skips each
range's own gateway, and tries the last-reserved address itself last. The cursor moves on
every successful reservation and is never rolled back, exactly like the reference
`RangeIter`, so both implementations agree on the next address when they share a store.

Gateways: the reference skips only each range's own gateway. Since a gateway may lie
outside its subnet (accepted like the reference), it may fall into another range's pool;
the plugin passes every configured gateway as `skip`, so no gateway is ever handed out or
given on request (a deliberate difference only when a gateway lies in another range).
"""

from __future__ import annotations

import ipaddress

from multiplane.errors import CniError
from multiplane.ipam.ranges import Range, RangeSet
from multiplane.spec.result import IPConfig

__all__ = ["allocate", "capacity", "walk"]


TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Protocol

    from multiplane.spec.gojson import IPAddress

    class Store(Protocol):
        """What allocation needs from a store (DiskStore, or a fake in unit tests)."""

        def reserve(self, container_id: str, ifname: str, addr: IPAddress, range_id: int) -> bool: ...
        def last_reserved(self, range_id: int) -> IPAddress | None: ...
        def held_by(self, container_id: str, ifname: str) -> list[IPAddress]: ...


def _addr(version: int, value: int) -> IPAddress:
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


def walk(
    rset: RangeSet, last: IPAddress | None, skip: frozenset[IPAddress] = frozenset()
) -> Iterator[tuple[IPAddress, Range]]:
    """Candidates in reference order: after `last` if the set holds it, else from the start.

    Each range's own gateway and every address in `skip` are left out.
    """
    idx, cur, start = 0, None, None
    if last is not None and rset.contains(last):
        idx = next(i for i, r in enumerate(rset) if r.contains(last))
        cur = int(last)
    while True:
        rng = rset[idx]
        if cur is None:
            cur = start = rng.start
        else:
            if cur == rng.end:
                idx = (idx + 1) % len(rset)
                rng = rset[idx]
                cur = rng.start
            else:
                cur += 1
            if start is None:
                start = cur
            elif cur == start:
                return
        if cur != rng.gw:
            addr = _addr(rng.version, cur)
            if addr not in skip:
                yield addr, rng


def capacity(rset: RangeSet, skip: frozenset[IPAddress] = frozenset()) -> int:
    """How many addresses `walk` can hand out from `rset` (STATUS)."""
    own = sum(rng.size() for rng in rset)
    others = 0
    for gateway in skip:
        rng = rset.range_for(gateway)
        if rng is not None and int(gateway) != rng.gw:
            others += 1
    return own - others


def _ip_config(addr: IPAddress, rng: Range) -> IPConfig:
    return IPConfig(ipaddress.ip_interface(f"{addr}/{rng.prefix}"), rng.gateway_ip)


def allocate(
    store: Store,
    rset: RangeSet,
    range_id: int,
    container_id: str,
    ifname: str,
    requested: IPAddress | None,
    skip: frozenset[IPAddress] = frozenset(),
) -> IPConfig:
    """Reserve one address of `rset` for (id, ifname); CniError with the reference texts.

    `skip`: addresses never handed out, not even on request (every configured gateway).
    """
    if requested is not None:
        rng = rset.range_for(requested)
        if rng is None:
            raise CniError(f"{requested} not in range set {rset}")
        if int(requested) == rng.gw:
            raise CniError(f"requested ip {requested} is subnet's gateway")
        if requested in skip:
            raise CniError(f"requested ip {requested} is a configured gateway")
        if not store.reserve(container_id, ifname, requested, range_id):
            raise CniError(f"requested IP address {requested} is not available in range set {rset}")
        return _ip_config(requested, rng)
    for held in store.held_by(container_id, ifname):
        if rset.contains(held):
            raise CniError(f"{held} has been allocated to {container_id}, duplicate allocation is not allowed")
    for addr, rng in walk(rset, store.last_reserved(range_id), skip):
        if store.reserve(container_id, ifname, addr, range_id):
            return _ip_config(addr, rng)
    raise CniError(f"no IP addresses available in range set: {rset}")
