"""The pure block allocator of cluster-wide IPAM: ranges, blocks and the choice of addresses (no I/O).

Addresses are ints here (`version` tells the family); `ip_str`/`block_str` render them.

A range follows Whereabouts' meaning: its subnet minus the network address and the last
address (IPv4 broadcast; Whereabouts drops the last IPv6 address too), except /31 and /32
(/127, /128) where every address is usable; clipped to `range_start`/`range_end`; minus
every `exclude` CIDR (whole CIDRs, host bits ignored), minus the gateway, and minus IPv4
addresses ending in `.0` (Whereabouts' README promises it for old equipment).

A block is an aligned CIDR of `block_prefix` bits on the grid of address zero, so every
node computes the same blocks for the same prefix, whatever its range bounds are. Only
blocks holding at least one usable address are ever offered. The invariants the property
tests check: blocks are aligned and pairwise disjoint; every address handed out is usable
and inside a block this node owns; it is neither in use nor claimed singly by anyone.

Requested addresses (`ips`, `IP=`) follow `admit_request`: an address inside a block this
node owns is allocated locally (no store write); inside a block another node owns it is
refused; inside no block it is claimed singly in the store and then checked against the
blocks (see docs/decisions/0010-cluster-ipam.md for the proof that no address is handed
out twice).
"""

from __future__ import annotations

import hashlib
import ipaddress

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Iterator, Mapping

__all__ = [
    "Block",
    "Range",
    "admit_request",
    "block_of",
    "block_str",
    "blocks",
    "free_blocks",
    "free_count",
    "ip_str",
    "low_mark",
    "next_address",
    "overlapping",
    "parse_block",
    "releasable",
]

Block = tuple[int, int, int]  # (version, network as int, prefix length)


def ip_str(version: int, value: int) -> str:
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))


def block_str(block: Block) -> str:
    version, network, prefix = block
    return f"{ip_str(version, network)}/{prefix}"


def parse_block(text: str) -> Block:
    """Text "10.0.0.16/28" → (4, int, 28); ValueError for anything but a network address with its prefix."""
    net = ipaddress.ip_network(text, strict=True)
    return (net.version, int(net.network_address), net.prefixlen)


def _bits(version: int) -> int:
    return 32 if version == 4 else 128


def _last(block: Block) -> int:
    version, network, prefix = block
    return network | ((1 << (_bits(version) - prefix)) - 1)


class Range:
    """One allocatable range; all bounds inclusive ints. Build it with `Range.make` (config.py does)."""

    __slots__ = ("version", "network", "prefix", "first", "last", "excludes", "gateway")

    def __init__(
        self,
        version: int,
        network: int,
        prefix: int,
        first: int,
        last: int,
        excludes: tuple[tuple[int, int], ...] = (),
        gateway: int | None = None,
    ) -> None:
        self.version, self.network, self.prefix = version, network, prefix
        self.first, self.last = first, last
        self.excludes = tuple(sorted(excludes))
        self.gateway = gateway

    @classmethod
    def make(
        cls,
        subnet: str,
        start: str | None = None,
        end: str | None = None,
        excludes: Iterable[str] = (),
        gateway: str | None = None,
    ) -> Range:
        """From texts (for tests and callers holding strings); bounds are clipped to the usable part."""
        net = ipaddress.ip_network(subnet, strict=False)
        version, bits = net.version, _bits(net.version)
        lo, hi = int(net.network_address), int(net.broadcast_address)
        if bits - net.prefixlen >= 2:
            lo, hi = lo + 1, hi - 1
        if start is not None:
            lo = max(lo, int(ipaddress.ip_address(start)))
        if end is not None:
            hi = min(hi, int(ipaddress.ip_address(end)))
        spans = []
        for text in excludes:
            ex = ipaddress.ip_network(text, strict=False)
            if ex.version == version:
                spans.append((int(ex.network_address), int(ex.broadcast_address)))
        gw = None
        if gateway is not None:
            addr = ipaddress.ip_address(gateway)
            gw = int(addr) if addr.version == version else None
        return cls(version, int(net.network_address), net.prefixlen, lo, hi, tuple(spans), gw)

    @property
    def bits(self) -> int:
        return _bits(self.version)

    def subnet_str(self) -> str:
        return f"{ip_str(self.version, self.network)}/{self.prefix}"

    def __repr__(self) -> str:
        return f"Range({self.subnet_str()} {ip_str(self.version, self.first)}-{ip_str(self.version, self.last)})"

    def next_usable(self, value: int, limit: int) -> int | None:
        """The first usable address in [value, limit], jumping over excluded CIDRs; None if there is none."""
        value = max(value, self.first)
        limit = min(limit, self.last)
        while value <= limit:
            for lo, hi in self.excludes:
                if lo <= value <= hi:
                    value = hi + 1
                    break
            else:
                if value == self.gateway or (self.version == 4 and value & 0xFF == 0):
                    value += 1
                    continue
                return value
        return None

    def usable(self, value: int) -> bool:
        return self.next_usable(value, value) == value

    def size(self) -> int:
        """How many usable addresses the range holds (walks the excludes, not the addresses)."""
        count = 0
        value = self.first
        while True:
            found = self.next_usable(value, self.last)
            if found is None:
                return count
            # count a run of addresses up to the next exclude, gateway or .0 in one step
            stop = self.last
            for lo, _hi in self.excludes:
                if lo > found:
                    stop = min(stop, lo - 1)
            if self.gateway is not None and self.gateway > found:
                stop = min(stop, self.gateway - 1)
            if self.version == 4:
                stop = min(stop, (found | 0xFF))
            count += stop - found + 1
            value = stop + 1


def block_of(rng: Range, value: int, block_prefix: int) -> Block:
    """The block of `block_prefix` bits that holds address `value`."""
    host = rng.bits - block_prefix
    return (rng.version, (value >> host) << host, block_prefix)


def _has_usable(rng: Range, block: Block) -> bool:
    return rng.next_usable(block[1], _last(block)) is not None


def _slots(rng: Range, block_prefix: int) -> tuple[int, int]:
    """Index of the first block slot touching the range, and how many slots there are."""
    host = rng.bits - block_prefix
    first, last = rng.first >> host, rng.last >> host
    return first, last - first + 1


def blocks(rng: Range, block_prefix: int) -> Iterator[Block]:
    """Every block with a usable address, in address order (lazily: an IPv6 /64 has very many)."""
    host = rng.bits - block_prefix
    start, count = _slots(rng, block_prefix)
    for index in range(start, start + count):
        block = (rng.version, index << host, block_prefix)
        if _has_usable(rng, block):
            yield block


def node_offset(node: str, count: int) -> int:
    """A stable, node-specific starting slot, so racing nodes mostly try different blocks first."""
    digest = hashlib.sha256(node.encode()).digest()
    return int.from_bytes(digest[:16], "big") % count if count else 0


def overlapping(block: Block, claimed: Iterable[Block]) -> list[Block]:
    """The claimed blocks (of any prefix, same family) sharing an address with `block`, itself excluded."""
    lo, hi = block[1], _last(block)
    out = []
    for other in claimed:
        if other != block and other[0] == block[0] and other[1] <= hi and _last(other) >= lo:
            out.append(other)
    return out


def free_blocks(
    rng: Range,
    block_prefix: int,
    node: str,
    claimed: Collection[Block],
    avoid: Collection[Block] = (),
) -> Iterator[Block]:
    """Blocks no one holds, starting at this node's hash offset and wrapping around (lazily).

    `claimed`: every block of the pool in the store (any owner, any prefix); a candidate
    overlapping one of them is skipped. `avoid`: blocks this node must not take now (its
    own releases still pending in the journal).
    """
    host = rng.bits - block_prefix
    start, count = _slots(rng, block_prefix)
    offset = node_offset(node, count)
    same = {b for b in claimed if b[2] == block_prefix}
    other_sizes = [b for b in claimed if b[2] != block_prefix]  # only when configurations disagree
    for step in range(count):
        index = start + (offset + step) % count
        block = (rng.version, index << host, block_prefix)
        if block in same or block in avoid or not _has_usable(rng, block):
            continue
        if other_sizes and overlapping(block, other_sizes):
            continue
        yield block


def next_address(
    rng: Range,
    owned: Iterable[Block],
    taken: Collection[int],
    last: int | None = None,
) -> int | None:
    """The next free usable address in this node's blocks, round-robin after `last`; None: a new block is needed.

    `taken`: addresses in use on this node plus addresses claimed singly by anyone (the
    owner must skip those). The walk goes through the owned blocks in address order,
    starting just after `last` (or at the lowest block when `last` is in none of them),
    wraps once, and tries `last` itself at the very end, like host-local, so a freed
    address is reused as late as possible.
    """
    spans = sorted((b[1], _last(b)) for b in owned if b[0] == rng.version)
    if not spans:
        return None
    begin = 0
    cursor = None
    if last is not None:
        for i, (lo, hi) in enumerate(spans):
            if lo <= last <= hi:
                begin, cursor = i, last + 1
                break
    order = spans[begin:] + spans[:begin]
    if cursor is not None:
        # the first block is walked from the cursor to its end, then again from its start up to the cursor
        lo, hi = order[0]
        walk = [(cursor, hi), *order[1:], (lo, cursor - 1)]
    else:
        walk = order
    for lo, hi in walk:
        value = lo
        while value <= hi:
            found = rng.next_usable(value, hi)
            if found is None:
                break
            if found not in taken:
                return found
            value = found + 1
    return None


def low_mark(block_prefix: int, version: int) -> int:
    """Free addresses below which a node wants a spare block: half a block's addresses, at least 1.

    The node daemon claims a block ahead of need when its owned blocks have fewer free
    addresses than this, and `releasable` keeps one empty block under the same condition,
    so the two never undo each other (decision 0010).
    """
    return max(1, (1 << (_bits(version) - block_prefix)) // 2)


def free_count(rng: Range, owned: Iterable[Block], taken: Collection[int], enough: int) -> int:
    """Free usable addresses in the owned blocks of this range's family, counted up to `enough` (then it stops)."""
    count = 0
    for block in sorted(b for b in owned if b[0] == rng.version):
        value, hi = block[1], _last(block)
        while value <= hi:
            found = rng.next_usable(value, hi)
            if found is None:
                break
            if found not in taken:
                count += 1
                if count >= enough:
                    return count
            value = found + 1
    return count


def releasable(rng: Range, owned: Iterable[Block], used: Collection[int], keep_below: int = 1) -> list[Block]:
    """Owned blocks of this range's family with no address in use, keeping one spare.

    One empty block is kept when the other owned blocks have fewer than `keep_below` free
    addresses (1: when they are full; the plugin passes `low_mark`), so a node at steady
    churn does not release and re-claim the same block (two writes) on every pod.
    `used` counts only this node's addresses: singly claimed ones do not keep a block.
    """
    mine = sorted(b for b in owned if b[0] == rng.version)
    empty, busy = [], []
    for block in mine:
        lo, hi = block[1], _last(block)
        (busy if any(lo <= v <= hi for v in used) else empty).append(block)
    if not empty:
        return []
    spare_needed = free_count(rng, busy, used, keep_below) < keep_below
    return empty[1:] if spare_needed else empty


def admit_request(
    rng: Range,
    value: int,
    node: str,
    holders: Mapping[Block, str],
) -> tuple[str, Block | None, str | None]:
    """How a requested address may be taken (the rule of decision 0010).

    ("local", block, None): inside a block this node owns, allocate it locally (no store write);
    ("refused", block, owner): inside a block another node owns;
    ("claim", None, None): inside no block: claim it in the store, then list the blocks and
    ask again; anything but "claim" the second time means release the claim and refuse;
    ("unusable", None, None): outside the range, excluded, network/last, gateway or `.0`.

    `holders`: block → owning node for every block of the pool this node knows of (its own,
    and those just read from the store), of any prefix.
    """
    if not rng.usable(value):
        return ("unusable", None, None)
    for block, owner in holders.items():
        if block[0] == rng.version and block[1] <= value <= _last(block):
            if owner == node:
                return ("local", block, None)
            return ("refused", block, owner)
    return ("claim", None, None)
