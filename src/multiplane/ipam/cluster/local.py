"""This node's crash-safe record of cluster-wide IPAM: owned blocks, addresses, and the pending-release journal.

Everything lives in one file, `<dataDir>/state.json`, replaced atomically
(multiplane.fsutil.write_atomic: temporary file, fsync, rename, fsync of the directory),
so a crash leaves the old record or the new one, and one ADD of a dual-stack pod changes
both pools at once. Every reader and writer holds flock(LOCK_EX) on `<dataDir>/lock`, as
host-local does on its own lock (polling with a deadline: TryAgainLater (11) when another
call holds it too long; a lock that is a symbolic link or not a regular file is refused
with IOFailure (5)).

    {"version": 1,
     "pools": {"10.1.2.0-24": {
         "blocks": {"10.1.2.16/28": {"foreign": ["10.1.2.20"]}},   # owned; foreign = claimed singly by others
         "addresses": {"10.1.2.17": {"container": "...", "ifname": "net1", "pod": "ns/name", "single": false}},
         "last": "10.1.2.17"}},
     "pending": [{"op": "release_block", "pool": "...", "block": "10.1.2.32/28"},
                 {"op": "release_ip", "pool": "...", "ip": "10.1.2.99", "container": "...", "ifname": "net1"}]}

Store traffic happens outside the lock; the record is changed only around it, in an order
that keeps the store the authority for ownership:
* claim a block: store.claim_block first, then `add_block` (a crash in between leaves a
  block the store says is ours and the record does not know: `adopt` takes it back);
* release a block: `retire_empty_blocks` moves it from owned to the journal first (no
  address is handed out from it any more), then store.release_block, then `confirm`;
  a block in the journal is never claimed again by this node until confirmed, so a late
  replay can never release a block in use;
* after every read of the store's blocks, `check_ownership` drops blocks the store no
  longer gives this node (freed by the reconciler while the node was away) and adopts lost ones;
* a requested address outside blocks: store.claim_ip first, then `record_single`; DEL
  puts it in the journal (`release`), then store.release_ip, then `confirm`.
When the store is down the journal keeps the releases and `pending()` replays them later.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import stat
from contextlib import contextmanager

from multiplane.errors import IOFailure, TryAgainLater
from multiplane.fsutil import flock_within, sweep_temporaries, write_atomic
from multiplane.ipam.cluster.blocks import block_str, ip_str, next_address, overlapping, parse_block, releasable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any

    from multiplane.ipam.cluster.blocks import Block, Range

__all__ = ["LocalState", "PoolRecord", "Record"]

STATE = "state.json"
_LOCK_TIMEOUT = 30.0


def _ip_int(text: str) -> int:
    return int(ipaddress.ip_address(text))


class PoolRecord:
    """One pool on this node: owned blocks (→ foreign single claims inside), addresses, round-robin cursor."""

    __slots__ = ("blocks", "addresses", "last")

    def __init__(self, raw: dict[str, Any] | None = None) -> None:
        raw = raw or {}
        self.blocks: dict[str, set[str]] = {b: set(v.get("foreign", [])) for b, v in raw.get("blocks", {}).items()}
        self.addresses: dict[str, dict[str, Any]] = dict(raw.get("addresses", {}))
        self.last: str | None = raw.get("last")

    def to_json(self) -> dict[str, Any]:
        return {
            "blocks": {b: {"foreign": sorted(f)} for b, f in sorted(self.blocks.items())},
            "addresses": dict(sorted(self.addresses.items())),
            "last": self.last,
        }

    def owned(self) -> list[Block]:
        return [parse_block(b) for b in self.blocks]

    def taken(self) -> set[int]:
        """Addresses the owner must not hand out: ours, and those claimed singly by others."""
        out = {_ip_int(ip) for ip in self.addresses}
        for foreign in self.blocks.values():
            out.update(_ip_int(ip) for ip in foreign)
        return out


class Record:
    """The whole record while the lock is held; changes are written when `LocalState.locked()` exits."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.pools: dict[str, PoolRecord] = {n: PoolRecord(p) for n, p in raw.get("pools", {}).items()}
        self.pending: list[dict[str, str]] = list(raw.get("pending", []))

    def to_json(self) -> dict[str, Any]:
        pools = {n: p.to_json() for n, p in sorted(self.pools.items()) if p.blocks or p.addresses or p.last}
        return {"version": 1, "pools": pools, "pending": self.pending}

    def pool(self, name: str) -> PoolRecord:
        return self.pools.setdefault(name, PoolRecord())

    # ---- blocks ---------------------------------------------------------------------------

    def pending_blocks(self, pool: str) -> set[Block]:
        """Blocks whose release is not confirmed: this node must not claim them again yet."""
        return {parse_block(e["block"]) for e in self.pending if e["op"] == "release_block" and e["pool"] == pool}

    def add_block(self, pool: str, block: Block, foreign: Iterable[str] = ()) -> None:
        """Own `block` (after the store said so); `foreign`: addresses inside it claimed singly by others."""
        key = block_str(block)
        if block in self.pending_blocks(pool):
            raise ValueError(f"block {key} of {pool} has a release pending: it cannot be owned again yet")
        self.pool(pool).blocks.setdefault(key, set()).update(foreign)

    def set_foreign(self, pool: str, claims: Iterable[str]) -> None:
        """Refresh the foreign sets of every owned block from a fresh read of the store's single claims."""
        rec = self.pool(pool)
        mine = {ip for ip, a in rec.addresses.items() if a.get("single")}
        claims = [ip for ip in claims if ip not in mine]
        for key in rec.blocks:
            block = parse_block(key)
            inside = set()
            for ip in claims:
                value = _ip_int(ip)
                if block[1] <= value <= block[1] + (1 << ((32 if block[0] == 4 else 128) - block[2])) - 1:
                    inside.add(ip)
            rec.blocks[key] = inside

    def adopt(self, pool: str, store_blocks: dict[str, dict[str, Any]], node: str) -> list[str]:
        """Own the blocks the store says `node` holds that the record lost (a crash after the claim).

        A block that overlaps another node's block (configurations that disagree on blockSize,
        and a crash between the claim and the list after it) is not taken back: its release is
        journalled instead, as the claim's own path would have done (decision 0010, I1.1).
        """
        rec = self.pool(pool)
        pending = {block_str(b) for b in self.pending_blocks(pool)}
        others = [parse_block(k) for k, o in store_blocks.items() if o.get("node") != node]
        adopted = []
        for key, owner in store_blocks.items():
            if owner.get("node") == node and key not in rec.blocks and key not in pending:
                if overlapping(parse_block(key), others):
                    self.pending.append({"op": "release_block", "pool": pool, "block": key})
                    continue
                rec.blocks[key] = set()
                adopted.append(key)
        return adopted

    def check_ownership(self, pool: str, store_blocks: dict[str, dict[str, Any]], node: str) -> dict[str, list[str]]:
        """Align the owned blocks with a fresh read of the store's blocks; what changed, by kind.

        "adopted": the store says `node` holds them and the record did not know (see `adopt`);
        "lost": the store says another node holds them (the reconciler freed this node's
        blocks while it was away): no longer owned here; "missing": nobody holds them in the
        store: no longer owned here either, until claimed again (claim_block, then add_block).
        Addresses already recorded stay recorded (DEL and GC release them); only new
        allocations stop. Never unsafe with a stale read: it can only drop ownership, and
        `adopt` takes back what the store still says is ours.
        """
        rec = self.pool(pool)
        changes: dict[str, list[str]] = {"adopted": self.adopt(pool, store_blocks, node), "lost": [], "missing": []}
        for key in list(rec.blocks):
            owner = store_blocks.get(key)
            if owner is None:
                changes["missing"].append(key)
            elif owner.get("node") != node:
                changes["lost"].append(key)
            else:
                continue
            del rec.blocks[key]
        return changes

    def retire_empty_blocks(self, pool: str, rng: Range, keep_below: int = 1) -> list[str]:
        """Stop owning empty blocks (one spare kept, see blocks.releasable) and journal their release."""
        rec = self.pool(pool)
        used = {_ip_int(ip) for ip, a in rec.addresses.items() if not a.get("single")}
        retired = []
        for block in releasable(rng, rec.owned(), used, keep_below):
            key = block_str(block)
            del rec.blocks[key]
            self.pending.append({"op": "release_block", "pool": pool, "block": key})
            retired.append(key)
        return retired

    # ---- addresses ------------------------------------------------------------------------

    def held_by(self, container: str, ifname: str) -> list[tuple[str, str]]:
        out = []
        for name, rec in sorted(self.pools.items()):
            for ip, holder in sorted(rec.addresses.items()):
                if holder.get("container") == container and holder.get("ifname") == ifname:
                    out.append((name, ip))
        return out

    def allocate(
        self,
        pool: str,
        rng: Range,
        container: str,
        ifname: str,
        pod: str = "",
        requested: int | None = None,
    ) -> str | None:
        """Hand out the next free address of the owned blocks (or `requested`, which must lie in one); None if none.

        None means: claim a block (or, for `requested`, that it is not in an owned block or is taken).
        """
        rec = self.pool(pool)
        taken = rec.taken()
        if requested is not None:
            inside = any(b[1] <= requested <= b[1] + (1 << (rng.bits - b[2])) - 1 for b in rec.owned())
            if not inside or requested in taken or not rng.usable(requested):
                return None
            value: int | None = requested
        else:
            last = None if rec.last is None else _ip_int(rec.last)
            value = next_address(rng, rec.owned(), taken, last)
            if value is None:
                return None
        ip = ip_str(rng.version, value)
        rec.addresses[ip] = {"container": container, "ifname": ifname, "pod": pod, "single": False}
        if requested is None:
            rec.last = ip
        return ip

    def record_single(self, pool: str, ip: str, container: str, ifname: str, pod: str = "") -> None:
        """Note an address claimed singly in the store for this attachment."""
        self.pool(pool).addresses[ip] = {"container": container, "ifname": ifname, "pod": pod, "single": True}

    def release(self, container: str, ifname: str) -> list[tuple[str, str]]:
        """Free every address of (container, ifname); single claims go to the journal for store.release_ip."""
        released = []
        for pool, ip in self.held_by(container, ifname):
            holder = self.pools[pool].addresses.pop(ip)
            if holder.get("single"):
                self.pending.append(
                    {"op": "release_ip", "pool": pool, "ip": ip, "container": container, "ifname": ifname}
                )
            released.append((pool, ip))
        return released

    def attachments(self) -> set[tuple[str, str]]:
        """Every (container, ifname) holding an address here (GC compares it with the valid attachments)."""
        return {(a["container"], a["ifname"]) for rec in self.pools.values() for a in rec.addresses.values()}

    def confirm(self, entry: dict[str, str]) -> bool:
        """The store did what a journal entry asked: drop it. False if it was not there."""
        try:
            self.pending.remove(entry)
        except ValueError:
            return False
        return True


class LocalState:
    """The record under `<data_dir>`; use `with state.locked() as record:` for every read and change."""

    def __init__(self, data_dir: str, lock_timeout: float = _LOCK_TIMEOUT) -> None:
        self.dir = data_dir
        self.path = os.path.join(data_dir, STATE)
        self.lock_timeout = lock_timeout

    def _open_lock(self, name: str) -> int:
        """Open (create) the lock file `<dir>/<name>`: never through a symbolic link, only a regular file."""
        path = os.path.join(self.dir, name)
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_CREAT | os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise IOFailure(f"{path} is a symbolic link: refusing to use it as cluster-ipam's lock") from exc
            raise IOFailure(f"open {path}: {exc.strerror}") from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise IOFailure(f"{path} is not a regular file: refusing to use it as cluster-ipam's lock")
        return fd

    def _lock(self) -> int:
        fd = self._open_lock("lock")
        if not flock_within(fd, self.lock_timeout):
            os.close(fd)
            raise TryAgainLater(f"timed out waiting for the lock on {self.dir}")
        return fd

    @contextmanager
    def _held(self, name: str, wait: float) -> Iterator[bool]:
        """Hold `<dir>/<name>` (True), or yield False if another holder kept it for `wait` seconds."""
        fd = self._open_lock(name)
        try:
            yield flock_within(fd, wait)
        finally:
            os.close(fd)

    def _read(self) -> dict[str, Any]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise IOFailure(f"open {self.path}: {exc.strerror}") from exc
        try:
            with os.fdopen(fd, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise IOFailure(f"read {self.path}: {exc.strerror}") from exc
        try:
            raw = json.loads(data)
        except ValueError as exc:
            raise IOFailure(
                f"{self.path} is not valid JSON ({exc}); it is written atomically, so the disk is at fault"
            ) from exc
        if not isinstance(raw, dict) or raw.get("version") != 1:
            raise IOFailure(f"{self.path}: unknown format")
        return raw

    @contextmanager
    def locked(self) -> Iterator[Record]:
        """Hold the lock, load the record, yield it; write it back (atomically) if it changed and no exception escaped."""
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise IOFailure(f"mkdir {self.dir}: {exc.strerror}") from exc
        fd = self._lock()
        try:
            sweep_temporaries(self.dir, [STATE], older_than=0)  # we hold the lock: any temporary file is a crash's
            raw = self._read()
            record = Record(raw)
            before = json.dumps(record.to_json(), sort_keys=True)
            yield record
            after = record.to_json()
            if json.dumps(after, sort_keys=True) != before:
                try:
                    write_atomic(self.path, json.dumps(after, indent=1, sort_keys=True).encode(), 0o600)
                except OSError as exc:
                    raise IOFailure(f"write {self.path}: {exc.strerror}") from exc
        finally:
            os.close(fd)

    @contextmanager
    def claiming(self) -> Iterator[None]:
        """Hold `<dir>/claim.lock` while this node claims a block (waiting up to the lock timeout: TryAgainLater).

        Concurrent ADDs that all find the node's blocks full would each claim a block (the
        claim happens outside the record's lock, which must not wait for the store): eight
        ADDs on a fresh node claimed three to five blocks where one was enough. Whoever holds
        this lock first claims; the others, once they hold it, try the record again first.
        """
        with self._held("claim.lock", self.lock_timeout) as held:
            if not held:
                raise TryAgainLater(f"timed out waiting for another block claim on {self.dir}")
            yield

    @contextmanager
    def replaying(self, wait: float) -> Iterator[bool]:
        """Hold `<dir>/replay.lock` while the journal is sent to the store; yields False if another
        call of this node kept it for `wait` seconds (that call is sending the journal now).

        One sender at a time, and the sender copies the journal only once it holds this lock:
        otherwise a second sender holding an old copy could send a release the first one had
        already sent and confirmed, after this node claimed the same block (or the same
        container the same address) again, and free what is in use. The record's own lock is
        not held meanwhile: store requests can be slow, and allocation must not wait for them.
        """
        with self._held("replay.lock", wait) as held:
            yield held

    def pending(self) -> list[dict[str, str]]:
        """The journal's entries to replay (a copy)."""
        with self.locked() as record:
            return [dict(e) for e in record.pending]
