"""The shared store of cluster-wide IPAM: who owns which block of a pool, and which single addresses are claimed.

A pool is one address range set shared by every node (a NAD's `network_name`, or its range).
A block is a small aligned CIDR of the pool (`blockSize`), owned by one node at a time: the
node allocates inside its blocks on its own (crash-safe on disk) and writes to the store only
to claim or release a whole block. Addresses a pod asks for by name (`ips`, `IP=`) are
claimed one by one. Two implementations: etcd v3 (etcd.py, transactions) and the Kubernetes
API (kube.py, custom resources with create conflicts and resourceVersion preconditions).

Every write is a compare-and-set in the store, so two nodes can never both believe they own
a block or an address: `claim_*` succeeds only if the key is absent or already held by the
same owner (idempotent after a crash between the store's write and the caller's record);
`release_*` removes a key only if the given owner still holds it.

`blocks()` and `ips()` must be linearizable reads: a list sees every write acknowledged before
it began. Cluster-wide IPAM's rule for requested addresses (decision 0010) is "claim, then
list" on both sides, which proves nothing otherwise. etcd: a range request without
`serializable`; the Kubernetes API: a list without `resourceVersion` (never `resourceVersion=0`,
which the API server answers from its watch cache).
"""

from __future__ import annotations

from multiplane.errors import CniError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    class Store(Protocol):
        """What cluster-wide IPAM needs from a shared store; every method may raise StoreUnavailable."""

        writes: int  # successful and failed write requests sent so far (the bench's store traffic)

        def claim_block(self, pool: str, block: str, owner: dict[str, Any]) -> dict[str, Any]:
            """Take `block` ("10.0.0.0/28") of `pool` for `owner` ({"node": …}); the holder after the
            attempt: `owner`'s record when we got it (or already had it), another node's when it lost."""
            ...

        def release_block(self, pool: str, block: str, node: str) -> bool:
            """Remove the block's claim if `node` holds it; True if it was removed."""
            ...

        def blocks(self, pool: str) -> dict[str, dict[str, Any]]:
            """Every claimed block of `pool`: block → its owner record."""
            ...

        def claim_ip(self, pool: str, ip: str, holder: dict[str, Any]) -> dict[str, Any]:
            """Take single address `ip` for `holder` ({"node", "container", "ifname", "pod"}); the holder after."""
            ...

        def release_ip(self, pool: str, ip: str, container: str, ifname: str) -> bool:
            """Remove the address's claim if this container's interface holds it; True if removed."""
            ...

        def ips(self, pool: str) -> dict[str, dict[str, Any]]:
            """Every singly claimed address of `pool`: ip → its holder record."""
            ...

        def close(self) -> None: ...


__all__ = ["StoreError", "StoreUnavailable"]


class StoreError(CniError):
    """The store answered, but not as expected (a malformed record, a refused request)."""


class StoreUnavailable(StoreError):
    """The store cannot be reached (all endpoints down, timeouts): try again later (code 11)."""

    code = 11
