"""Cluster-wide IPAM's store on the Kubernetes API: one custom resource per claim (decision 0012).

* A claimed block is an `IPBlock` (ipam.multiplane.io/v1alpha1, cluster-scoped), spec
  {pool, cidr, node, claimed}; a singly claimed address an `IPClaim`, spec {pool, ip, node,
  container, ifname, pod, claimed}. packaging/k8s/crd-ipam.yaml defines both.
* spec.claimed is the time the store created the claim (for people and the reconciler; the
  API server's creationTimestamp says the same, as claims are never updated); the records the
  store answers leave it out, so they are exactly the owner fields the claim was given.
* The object's name is the key: `object_name(pool, block or address)`, a DNS-1123 subdomain.
  So a claim is one create: 201 → ours; 409 AlreadyExists → read it: the same owner (a retry
  after a crash, or a create whose answer was lost) → ours, else another holder won. Two
  nodes can never both create one name: the API server (etcd underneath) is the arbiter.
* A release reads the object, checks it is the caller's, and deletes it with the uid and
  resourceVersion it read as preconditions: 409 Conflict means somebody else deleted and
  re-created it (or changed it) since; the object is read again and the check made anew.
* `blocks(pool)` / `ips(pool)` list with the label selector ipam.multiplane.io/pool=<value>
  (`label_value(pool)`), and keep the objects whose spec.pool is the pool: a label value is
  limited to 63 characters of [-A-Za-z0-9_.], so a long or unusual pool name is shortened
  with a hash and two pools could (improbably) share one value; the spec decides. The list
  carries no resourceVersion, so the API server reads etcd with a quorum read: linearizable,
  as store.py requires (resourceVersion=0 would be answered from its watch cache).
* An object under our name that is not a well-formed claim of that key (someone's kubectl, a
  hash collision) raises StoreError: nothing is handed out on a guess.
* The API unreachable, or answering 5xx/429 until the client's retry budget is spent, raises
  StoreUnavailable (code 11, try again later); any other refusal (403: RBAC) StoreError.

`writes` counts the create and delete calls made (each once, whatever the client's own
retries did): the store traffic `make bench` reports. One KubeStore per thread (the client
is not thread-safe).

Name encoding (`object_name`): `<pool>.<address part>` when the pool is a DNS-1123 label
(the usual network_name: "macvlan-conf"), else `<slug>.<hash>.<address part>` where slug is
the pool in lower case with every other character run turned into "-" (at most 40
characters, "pool" when nothing is left) and hash the first 20 hex digits (80 bits) of the
SHA-256 of the pool's UTF-8. The address part: "v4-" and the four octets joined by "-", or
"v6-" and the eight groups in hex without leading zeros (never "::"), then "-<prefix length>"
for a block: 10.0.0.16/28 → v4-10-0-0-16-28, fd00::10/124 → v6-fd00-0-0-0-0-0-0-10-124.
The two forms have one and two dots, the address part has none and decodes back: the
encoding is injective (the hashed form up to the hash). Names are at most 110 characters.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import time

from multiplane.ipam.cluster.store import StoreError, StoreUnavailable
from multiplane.k8s.client import AlreadyExists, ApiError, Conflict, KubeClient, NotFound, custom_path
from multiplane.k8s.names import is_label

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "BLOCKS",
    "CLAIMS",
    "GROUP",
    "NODE_LABEL",
    "POOL_LABEL",
    "VERSION",
    "KubeStore",
    "label_value",
    "object_name",
]

GROUP = "ipam.multiplane.io"
VERSION = "v1alpha1"
BLOCKS = "ipblocks"  # kind IPBlock
CLAIMS = "ipclaims"  # kind IPClaim
POOL_LABEL = f"{GROUP}/pool"
NODE_LABEL = f"{GROUP}/node"
_KIND = {BLOCKS: "IPBlock", CLAIMS: "IPClaim"}
_TRIES = 4  # create/read or read/delete rounds before giving up on an object that keeps changing

# ---- names and labels ----------------------------------------------------------------------------

_SLUG_MAX = 40
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_HASHED_VALUE = re.compile(r"[a-z0-9-]*\.[0-9a-f]{20}")


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def _slug(text: str) -> str:
    """`text` in lower case, runs of anything but [a-z0-9] as one "-", trimmed: a DNS-1123 label ("pool" if empty)."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:_SLUG_MAX].strip("-")
    return slug or "pool"


def _address_part(
    key: ipaddress.IPv4Network | ipaddress.IPv6Network | ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> str:
    if isinstance(key, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return f"{_address_part(key.network_address)}-{key.prefixlen}"
    if isinstance(key, ipaddress.IPv4Address):
        return "v4-" + str(key).replace(".", "-")
    value = int(key)
    groups = [(value >> (16 * (7 - i))) & 0xFFFF for i in range(8)]
    return "v6-" + "-".join(f"{g:x}" for g in groups)


def object_name(pool: str, key: str) -> str:
    """The name of the object that claims `key` (a block "10.0.0.16/28" or an address "10.0.0.5") in `pool`.

    Raises StoreError for a key that is neither a network (host bits zero) nor an address.
    """
    parsed = _parse_key(key)
    part = _address_part(parsed)
    if is_label(pool):
        return f"{pool}.{part}"
    return f"{_slug(pool)}.{_hash(pool)}.{part}"


def label_value(text: str) -> str:
    """`text` as a label value (63 characters of [-A-Za-z0-9_.], alphanumeric at both ends).

    Itself when it is one and does not look like a shortened value; else `<slug>.<hash>`
    (61 characters at most). Distinct texts get distinct values up to the 80-bit hash.
    """
    if len(text) <= 63 and _LABEL_VALUE.fullmatch(text) and not _HASHED_VALUE.fullmatch(text):
        return text
    return f"{_slug(text)}.{_hash(text)}"


def _parse_key(
    key: str,
) -> ipaddress.IPv4Network | ipaddress.IPv6Network | ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        if "/" in key:
            return ipaddress.ip_network(key, strict=True)
        return ipaddress.ip_address(key)
    except ValueError as exc:
        raise StoreError(f"cluster IPAM store: {key!r} is neither a block (CIDR) nor an address: {exc}") from exc


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ---- the store -----------------------------------------------------------------------------------

_BLOCK_OWNER = ("node",)
_IP_HOLDER = ("node", "container", "ifname")
_IP_OPTIONAL = ("pod",)


class KubeStore:
    """The Store (store.py) on custom resources of the Kubernetes API; see the module docstring."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self.writes = 0

    # ---- blocks ----

    def claim_block(self, pool: str, block: str, owner: dict[str, Any]) -> dict[str, Any]:
        cidr = str(_parse_key(block))
        if "/" not in block:
            raise StoreError(f"cluster IPAM store: block {block!r} is not a CIDR")
        spec = {"pool": pool, "cidr": cidr, **_fields(owner, _BLOCK_OWNER, (), "block owner")}
        return self._claim(BLOCKS, pool, cidr, spec)

    def release_block(self, pool: str, block: str, node: str) -> bool:
        cidr = str(_parse_key(block))
        return self._release(BLOCKS, pool, cidr, {"node": node})

    def blocks(self, pool: str) -> dict[str, dict[str, Any]]:
        return self._list(BLOCKS, pool)

    # ---- single addresses ----

    def claim_ip(self, pool: str, ip: str, holder: dict[str, Any]) -> dict[str, Any]:
        address = str(_parse_key(ip))
        if "/" in ip:
            raise StoreError(f"cluster IPAM store: {ip!r} is not a single address")
        spec = {"pool": pool, "ip": address, **_fields(holder, _IP_HOLDER, _IP_OPTIONAL, "address holder")}
        return self._claim(CLAIMS, pool, address, spec)

    def release_ip(self, pool: str, ip: str, container: str, ifname: str) -> bool:
        address = str(_parse_key(ip))
        return self._release(CLAIMS, pool, address, {"container": container, "ifname": ifname})

    def ips(self, pool: str) -> dict[str, dict[str, Any]]:
        return self._list(CLAIMS, pool)

    def close(self) -> None:
        self.client.close()

    # ---- the work ----

    def _claim(self, plural: str, pool: str, key: str, spec: dict[str, Any]) -> dict[str, Any]:
        name = object_name(pool, key)
        spec["claimed"] = _now()
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": _KIND[plural],
            "metadata": {
                "name": name,
                "labels": {POOL_LABEL: label_value(pool), NODE_LABEL: label_value(spec["node"])},
            },
            "spec": spec,
        }
        collection = custom_path(GROUP, VERSION, plural)
        for _ in range(_TRIES):
            self.writes += 1
            try:
                created = _call(self.client.create_object, collection, body)
                return _record(plural, created, pool, key)
            except AlreadyExists:
                pass
            try:
                held = _call(self.client.get_object, custom_path(GROUP, VERSION, plural, name))
            except NotFound:
                continue  # released between our create and our read: try again
            # Ours already when `same` match (a retry after a crash, a create whose answer was lost);
            # else the holder that won: the caller compares, as for the etcd store.
            return _record(plural, held, pool, key)
        raise StoreUnavailable(f"cluster IPAM store: {_KIND[plural]} {name} keeps changing; try again")

    def _release(self, plural: str, pool: str, key: str, mine: dict[str, str]) -> bool:
        path = custom_path(GROUP, VERSION, plural, object_name(pool, key))
        for _ in range(_TRIES):
            try:
                held = _call(self.client.get_object, path)
            except NotFound:
                return False
            record = _record(plural, held, pool, key)
            if any(record.get(f) != v for f, v in mine.items()):
                return False  # another holder's: not ours to release
            meta = held["metadata"]
            self.writes += 1
            try:
                _call(self.client.delete_object, path, str(meta.get("uid", "")), str(meta.get("resourceVersion", "")))
                return True
            except NotFound:
                return True  # gone: a retried DELETE of ours, or deleted meanwhile; either way not held by us
            except Conflict:
                continue  # changed since we read it (deleted and re-created?): read again
        raise StoreUnavailable(f"cluster IPAM store: the claim of {key} in {pool!r} keeps changing; try again")

    def _list(self, plural: str, pool: str) -> dict[str, dict[str, Any]]:
        items, _rv = _call(
            self.client.list_objects, custom_path(GROUP, VERSION, plural), "", f"{POOL_LABEL}={label_value(pool)}"
        )
        found: dict[str, dict[str, Any]] = {}
        field = "cidr" if plural == BLOCKS else "ip"
        for item in items:
            spec = item.get("spec")
            if not isinstance(spec, dict) or spec.get("pool") != pool:
                continue  # another pool whose label value is the same (shortened names)
            key = spec.get(field)
            if not isinstance(key, str):
                raise StoreError(f"cluster IPAM store: {_KIND[plural]} {_name(item)!r} has no spec.{field}")
            record = _record(plural, item, pool, key)
            found[str(_parse_key(key))] = record
        return found


def _fields(given: dict[str, Any], required: tuple[str, ...], optional: tuple[str, ...], what: str) -> dict[str, str]:
    """The owner fields the object stores; a missing, empty, non-string or unknown field is a StoreError."""
    unknown = sorted(set(given) - set(required) - set(optional))
    if unknown:
        raise StoreError(f"cluster IPAM store: {what} has fields the store cannot keep: {', '.join(unknown)}")
    fields: dict[str, str] = {}
    for key in required:
        value = given.get(key)
        if not isinstance(value, str) or not value:
            raise StoreError(f"cluster IPAM store: {what} needs a non-empty {key!r}")
        fields[key] = value
    for key in optional:
        value = given.get(key, "")
        if not isinstance(value, str):
            raise StoreError(f"cluster IPAM store: {what}'s {key!r} must be a string")
        if value:
            fields[key] = value
    return fields


def _name(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata")
    return str(meta.get("name", "")) if isinstance(meta, dict) else ""


def _record(plural: str, obj: dict[str, Any], pool: str, key: str) -> dict[str, Any]:
    """The owner record of a claim object (its spec without pool, key and claimed), checked to be the claim of `key`.

    So a claim we won answers exactly the owner it was given (as the etcd store does), and
    `record == owner` means ours for either store.
    """
    spec = obj.get("spec")
    field = "cidr" if plural == BLOCKS else "ip"
    name = _name(obj)
    if not isinstance(spec, dict) or spec.get("pool") != pool or spec.get(field) != key:
        raise StoreError(
            f"cluster IPAM store: {_KIND[plural]} {name!r} is not the claim of {key} in pool {pool!r} "
            f"(its spec: {spec!r}): a foreign object under our name, or a name collision"
        )
    if name != object_name(pool, key):
        raise StoreError(f"cluster IPAM store: {_KIND[plural]} {name!r} claims {key} in {pool!r} under another name")
    required = _BLOCK_OWNER if plural == BLOCKS else _IP_HOLDER
    record: dict[str, Any] = {}
    for field_name, value in spec.items():
        if field_name not in ("pool", field, "claimed"):
            record[field_name] = value
    for field_name in required:
        if not isinstance(record.get(field_name), str) or not record[field_name]:
            raise StoreError(f"cluster IPAM store: {_KIND[plural]} {name!r} has no spec.{field_name}")
    return record


def _call(method: Any, *args: Any) -> Any:
    """One client call; its failures as the Store's: unreachable or overloaded → StoreUnavailable."""
    try:
        return method(*args)
    except (NotFound, AlreadyExists, Conflict):
        raise
    except ApiError as exc:
        if exc.status == 0 or exc.status == 429 or exc.status >= 500:
            raise StoreUnavailable(f"cluster IPAM store: {exc.msg}", exc.details) from exc
        raise StoreError(f"cluster IPAM store: {exc.msg}", exc.details) from exc
