"""Cluster-wide IPAM (`multiplane-cluster-ipam`): one range shared by every node, blocks owned per node.

The design and its invariants are docs/decisions/0010-cluster-ipam.md; this module wires
its parts (ipam/cluster: config, blocks, local, and the etcd or Kubernetes store) into the
CNI commands, and follows the decision's steps to the letter:

* ADD: replay the pending-release journal (best effort: a store that is down is noticed in
  the log, not in the answer; after a failed replay ADDs skip it for REPLAY_PAUSE seconds,
  so an ADD from an owned block does not wait for an unreachable store); then per pool,
  under the local lock, the next address of an owned block. Only when every owned block is full: list the pool's blocks (adopting
  blocks the store says are ours, dropping those it gives to nobody or to another node),
  claim a free one, **then list again** and back off if another node holds an overlapping
  block, list the single claims and keep them out of the block (`foreign`), then allocate.
  A requested address (`IP=` in CNI_ARGS, `args.cni.ips`, `runtimeConfig.ips`) follows
  `blocks.admit_request`: inside an owned block it is taken locally; inside another
  node's block refused; inside none **claimed, then checked** against a fresh list.
* DEL: release this container's interface locally, journal the single claims, retire
  empty blocks (journal first, then the store); the store being down leaves the releases
  journalled and DEL succeeds.
* GC (CNI 1.1): release every address of this configuration's pools whose
  (container, ifname) is not in `cni.dev/valid-attachments`, then as DEL.
* CHECK: the interface still holds addresses of these pools, and every address of
  `prevResult` inside them.
* STATUS: ok when the local record can be locked and read. The store is not asked: a node
  keeps allocating from its blocks while the store is down (invariant I2), so an
  unreachable store does not make the plugin unavailable.

The store is built lazily, on the first call that needs it: an ADD served from an owned
block imports no store client and opens no connection. etcd when the
configuration names it (`etcd` or the flat `etcd_host`), else the Kubernetes API
(`kubernetes.kubeconfig`, else the pod's service account).
"""

from __future__ import annotations

import ipaddress
import os
import time

from multiplane import frontdoor
from multiplane.errors import CniError, InvalidConfig
from multiplane.ipam.cluster import config as cluster_config
from multiplane.ipam.cluster.config import store_key
from multiplane.ipam.cluster.blocks import (
    admit_request,
    block_str,
    free_blocks,
    free_count,
    low_mark,
    overlapping,
    parse_block,
)
from multiplane.ipam.cluster.local import LocalState
from multiplane.ipam.cluster.store import StoreError, StoreUnavailable
from multiplane.spec.gc import valid_attachments
from multiplane.spec.result import IPConfig, Result

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from multiplane.ipam.cluster.blocks import Block
    from multiplane.ipam.cluster.config import ClusterIpamConf, PoolConf
    from multiplane.ipam.cluster.local import Record
    from multiplane.ipam.cluster.store import Store
    from multiplane.skel import Request

__all__ = ["ClusterIpam", "claim_ahead", "open_stores", "replay_journal"]

REPLAY_PAUSE = 30.0  # seconds an ADD skips the journal's replay after a replay failed (DEL and GC always try)
REPLAY_WAIT = 10.0  # seconds DEL and GC wait for another call of the node that is sending the journal (ADD: none)
_REPLAY_FAILED = "replay-failed"  # in dataDir; its mtime is when
_ROUNDS = 8  # allocate / claim-a-block rounds before giving up (other processes of this node take addresses too)


def _note_replay(data_dir: str, failed: bool) -> None:
    """Remember (by a file's mtime) that the last replay could not reach the store; forget it once one worked."""
    path = os.path.join(data_dir, _REPLAY_FAILED)
    try:
        if failed:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                os.utime(fd)
            finally:
                os.close(fd)
        elif os.path.lexists(path):
            os.unlink(path)
    except OSError as exc:  # only an optimisation: never fail a call for it
        _log().warning(f"cluster-ipam: {path}: {exc.strerror}")


def _log() -> Any:
    from multiplane import logs

    return logs.get()


class _Stores:
    """The store of one call, built on first use; `where` names it for error messages."""

    def __init__(self, conf: ClusterIpamConf) -> None:
        self.conf = conf
        self._store: Store | None = None
        if conf.etcd is not None:
            self.where = f"etcd at {', '.join(conf.etcd.endpoints)}"
        elif conf.kubeconfig:
            self.where = f"the Kubernetes API of {conf.kubeconfig}"
        else:
            self.where = "the Kubernetes API (in-cluster service account)"

    def get(self) -> Store:
        if self._store is None:
            self._store = self._open()
        return self._store

    def _open(self) -> Store:
        etcd = self.conf.etcd
        if etcd is not None:
            if etcd.username or etcd.password:
                raise InvalidConfig(
                    "ipam.etcd: username/password authentication is not supported; use TLS certificates"
                )
            from multiplane.ipam.cluster.etcd import EtcdStore

            return EtcdStore(etcd.endpoints, cert=etcd.cert_file, key=etcd.key_file, ca=etcd.ca_file)
        from multiplane.ipam.cluster.kube import KubeStore
        from multiplane.k8s.client import KubeClient

        cfg = frontdoor.current().cluster_config(self.conf.kubeconfig)
        if cfg is None:
            raise InvalidConfig(
                "cluster IPAM needs a store: set ipam.etcd, or ipam.kubernetes.kubeconfig, or run under "
                "a node daemon that has a cluster, or where KUBERNETES_SERVICE_HOST/PORT name the API (in-cluster)"
            )
        self.where = f"the Kubernetes API at {cfg.server}"
        return KubeStore(KubeClient(cfg))

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def _pod(cni_args: str) -> str:
    """ "namespace/name" from K8S_POD_NAMESPACE/K8S_POD_NAME in CNI_ARGS (for people and the reconciler), else ""."""
    pairs = dict(p.split("=", 1) for p in cni_args.split(";") if "=" in p)
    ns, name = pairs.get("K8S_POD_NAMESPACE", ""), pairs.get("K8S_POD_NAME", "")
    return f"{ns}/{name}" if ns and name else ""


def _holders(store_blocks: dict[str, dict[str, Any]]) -> dict[Block, str]:
    return {parse_block(key): str(owner.get("node", "")) for key, owner in store_blocks.items()}


class _Call:
    """One ADD/DEL/GC (or one round of the daemon's housekeeping): the configuration, the local
    record, the lazily built store."""

    def __init__(self, conf: ClusterIpamConf, cid: str = "", ifname: str = "", pod: str = "") -> None:
        self.conf = conf
        self.state = LocalState(conf.data_dir)
        self.stores = _Stores(conf)
        self.node = conf.node_name
        self.cid, self.ifname, self.pod = cid, ifname, pod

    @classmethod
    def of(cls, req: Request) -> _Call:
        conf = cluster_config.load(req.conf.raw, req.conf.name, req.conf.cni_version, req.args.args)
        return cls(conf, req.args.container_id, req.args.ifname, _pod(req.args.args))

    # ---- the journal ----

    def replay(self, wait: float = REPLAY_WAIT) -> list[str] | None:
        """Send the journal's releases to the store; best effort. What could not be sent, as texts (for the log).

        One sender per node at a time (LocalState.replaying): a call that finds another one
        sending for `wait` seconds leaves the journal to it (None).
        """
        with self.state.replaying(wait) as mine:
            if not mine:
                return None
            return self._send_journal()

    def _send_journal(self) -> list[str]:
        with self.state.locked() as record:
            entries = [dict(e) for e in record.pending]
        if not entries:
            return []
        try:
            store = self.stores.get()
        except CniError as exc:
            return [f"{len(entries)} release(s) stay journalled: {exc}"]
        for entry in entries:
            try:
                if entry["op"] == "release_block":
                    store.release_block(entry["pool"], entry["block"], self.node)
                else:
                    store.release_ip(entry["pool"], entry["ip"], entry["container"], entry["ifname"])
            except StoreError as exc:
                return [f"releases stay journalled ({self.stores.where}): {exc.msg}"]
            # Released, or no longer ours (the store is the authority either way): drop the entry.
            with self.state.locked() as record:
                record.confirm(entry)
        return []

    def _journal(self, entry: dict[str, str]) -> None:
        with self.state.locked() as record:
            record.pending.append(entry)

    def _replay_logged(self, what: str, wait: float = REPLAY_WAIT) -> None:
        problems = self.replay(wait)
        if problems is None:
            return  # another call of this node is sending the journal
        for problem in problems:
            _log().warning(f"cluster-ipam {what}: {problem}")
        _note_replay(self.conf.data_dir, failed=bool(problems))

    def _replay_first(self) -> None:
        """ADD's replay: skipped for REPLAY_PAUSE seconds after one failed, so that while the store is
        down an ADD served from an owned block does not wait for it (the Kubernetes client retries
        an unreachable API for its whole retry budget). DEL and GC always try."""
        try:
            failed_at = os.stat(os.path.join(self.conf.data_dir, _REPLAY_FAILED)).st_mtime
        except OSError:
            failed_at = 0.0
        if time.time() - failed_at >= REPLAY_PAUSE:
            self._replay_logged("ADD", wait=0)

    # ---- ADD ----

    def _need_store(self, pool: PoolConf, why: str) -> Store:
        try:
            return self.stores.get()
        except StoreUnavailable as exc:
            raise self._unavailable(pool, why, exc) from exc

    def _unavailable(self, pool: PoolConf, why: str, exc: StoreUnavailable) -> StoreUnavailable:
        return StoreUnavailable(
            f"cluster-ipam: pool {pool.name} {why}, but the store ({self.stores.where}) is unreachable: {exc.msg}"
        )

    def _auto(self, pool: PoolConf) -> str:
        """The next address of an owned block, claiming a block when they are all full."""
        rng = pool.range
        for _ in range(_ROUNDS):
            with self.state.locked() as record:
                ip = record.allocate(pool.name, rng, self.cid, self.ifname, self.pod)
                if ip is not None:
                    return ip
            with self.state.claiming():  # one claim at a time on this node: the others then find its block
                with self.state.locked() as record:
                    ip = record.allocate(pool.name, rng, self.cid, self.ifname, self.pod)
                    if ip is not None:
                        return ip
                    avoid = record.pending_blocks(pool.name)
                try:
                    if not self._claim_block(pool, avoid):
                        raise CniError(
                            f"cluster-ipam: no free block left in pool {pool.name} ({rng}): the range is full"
                        )
                except StoreUnavailable as exc:
                    raise self._unavailable(pool, "needs a new block (its owned blocks are full)", exc) from exc
        raise CniError(f"cluster-ipam: pool {pool.name}: no address after {_ROUNDS} block claims (heavy contention)")

    def _claim_block(self, pool: PoolConf, avoid: set[Block]) -> bool:
        """Claim one free block of `pool` (claim, then list; back off on overlap); False if none is free.

        True also when the list only gave back blocks the record had lost (adopted): the caller
        tries to allocate again either way.
        """
        store = self._need_store(pool, "needs a new block (its owned blocks are full)")
        listed = store.blocks(pool.name)
        singles = store.ips(pool.name)
        with self.state.locked() as record:
            changes = record.check_ownership(pool.name, listed, self.node)
            if changes["adopted"]:
                record.set_foreign(pool.name, singles)
        for kind in ("adopted", "lost", "missing"):
            if changes[kind]:
                _log().warning(
                    f"cluster-ipam: pool {pool.name}: blocks {kind} after reading the store: {changes[kind]}"
                )
        if changes["adopted"]:
            return True
        claimed = [parse_block(key) for key in listed]
        for candidate in free_blocks(pool.range, pool.block_prefix, self.node, claimed, avoid):
            key = block_str(candidate)
            holder = store.claim_block(pool.name, key, {"node": self.node})
            if holder.get("node") != self.node:
                continue  # another node won this one: move on to the next candidate
            after = store.blocks(pool.name)
            others = [b for b, owner in _holders(after).items() if owner != self.node]
            if overlapping(candidate, others):
                # Not used, given back through the journal: `adopt` never takes a journalled block,
                # so a release the store does not take now cannot turn into ownership later.
                self._journal({"op": "release_block", "pool": pool.name, "block": key})
                self._replay_logged("ADD", wait=0)
                continue
            singles = store.ips(pool.name)
            with self.state.locked() as record:
                record.add_block(pool.name, candidate)
                record.set_foreign(pool.name, singles)
            _log().info(f"cluster-ipam: node {self.node} claimed block {key} of pool {pool.name}")
            return True
        return False

    def _requested(self, pool: PoolConf, addr: Any) -> str:
        """A requested address by decision 0010's rule; CniError when it cannot be had."""
        rng, value, ip = pool.range, int(addr), str(addr)
        with self.state.locked() as record:
            rec = record.pool(pool.name)
            decision, _block, owner = admit_request(rng, value, self.node, dict.fromkeys(rec.owned(), self.node))
            if decision == "local":
                return self._take_local(record, pool, value)
        if decision == "unusable":
            raise CniError(f"cluster-ipam: requested IP address {ip} cannot be handed out in pool {pool.name} ({rng})")
        why = f"needs the store for requested address {ip}"
        try:
            store = self._need_store(pool, why)
            decision, block, owner = admit_request(rng, value, self.node, _holders(store.blocks(pool.name)))
            if decision == "refused" and block is not None:
                raise CniError(
                    f"cluster-ipam: requested IP address {ip} lies in block {block_str(block)} of node {owner}"
                )
            if decision == "local":
                raise CniError(
                    f"cluster-ipam: requested IP address {ip} lies in a block this node is claiming; try again"
                )
            holder = {"node": self.node, "container": self.cid, "ifname": self.ifname, "pod": self.pod}
            got = store.claim_ip(pool.name, ip, holder)
            if got.get("container") != self.cid or got.get("ifname") != self.ifname:
                raise CniError(
                    f"cluster-ipam: requested IP address {ip} is held by {got.get('pod') or got.get('container')} "
                    f"on node {got.get('node')}"
                )
            # Claimed: from here on, a failure gives the claim back through the journal.
            entry = {"op": "release_ip", "pool": pool.name, "ip": ip, "container": self.cid, "ifname": self.ifname}
            try:
                decision, block, owner = admit_request(rng, value, self.node, _holders(store.blocks(pool.name)))
            except StoreError:
                self._journal(entry)
                raise
            if decision != "claim":
                self._journal(entry)
                self._replay_logged("ADD", wait=0)
                raise CniError(f"cluster-ipam: requested IP address {ip} was taken into a block of node {owner}")
        except StoreUnavailable as exc:
            raise self._unavailable(pool, why, exc) from exc
        with self.state.locked() as record:
            record.record_single(pool.name, ip, self.cid, self.ifname, self.pod)
        return ip

    def _take_local(self, record: Record, pool: PoolConf, value: int) -> str:
        ip = record.allocate(pool.name, pool.range, self.cid, self.ifname, self.pod, requested=value)
        if ip is None:
            raise CniError(f"cluster-ipam: requested IP address {ipaddress.ip_address(value)} is in use")
        return ip

    def add(self) -> Result:
        self._replay_first()
        conf = self.conf
        with self.state.locked() as record:
            held = record.held_by(self.cid, self.ifname)
        mine = {p.name for p in conf.pools}
        for pool_name, ip in held:
            if pool_name in mine:
                raise CniError(f"{ip} has been allocated to {self.cid}, duplicate allocation is not allowed")
        requested = list(dict.fromkeys(conf.requested))
        result = Result(conf.cni_version, routes=list(conf.routes), dns=conf.dns)
        done: list[tuple[str, str]] = []
        try:
            for pool in conf.pools:
                rng = pool.range
                want = next(
                    (a for a in requested if a.version == rng.version and rng.first <= int(a) <= rng.last), None
                )
                if want is not None:
                    requested.remove(want)
                    ip = self._requested(pool, want)
                else:
                    ip = self._auto(pool)
                done.append((pool.name, ip))
                iface = ipaddress.ip_interface(f"{ip}/{rng.prefix}")
                result.ips.append(IPConfig(iface, pool.gateway))
            if requested:
                raise CniError(
                    f"cluster-ipam: requested IP addresses not in any range: {' '.join(str(a) for a in requested)}"
                )
        except BaseException:
            self._undo(done)
            raise
        finally:
            self.stores.close()
        return result

    def _undo(self, done: list[tuple[str, str]]) -> None:
        """A failed ADD gives back what it took (single claims through the journal, best effort)."""
        if not done:
            return
        with self.state.locked() as record:
            for pool_name, ip in done:
                holder = record.pool(pool_name).addresses.pop(ip, None)
                if holder is not None and holder.get("single"):
                    record.pending.append(
                        {"op": "release_ip", "pool": pool_name, "ip": ip, "container": self.cid, "ifname": self.ifname}
                    )
        self._replay_logged("ADD rollback")

    # ---- DEL and GC ----

    def _retire(self, record: Record) -> None:
        for pool in self.conf.pools:
            record.retire_empty_blocks(pool.name, pool.range, low_mark(pool.block_prefix, pool.range.version))

    def delete(self) -> None:
        with self.state.locked() as record:
            mine = {p.name for p in self.conf.pools}
            for pool_name, ip in record.held_by(self.cid, self.ifname):
                if pool_name in mine:
                    holder = record.pools[pool_name].addresses.pop(ip)
                    if holder.get("single"):
                        record.pending.append(
                            {
                                "op": "release_ip",
                                "pool": pool_name,
                                "ip": ip,
                                "container": self.cid,
                                "ifname": self.ifname,
                            }
                        )
            self._retire(record)
        try:
            self._replay_logged("DEL")
        finally:
            self.stores.close()

    def gc(self, raw: dict[str, Any]) -> None:
        keep = valid_attachments(raw) or set()  # neither key: nothing is kept
        with self.state.locked() as record:
            for pool in self.conf.pools:
                addresses = record.pool(pool.name).addresses
                for ip, holder in list(addresses.items()):
                    cid, ifname = holder.get("container", ""), holder.get("ifname", "")
                    if (cid, ifname) in keep:
                        continue
                    del addresses[ip]
                    if holder.get("single"):
                        record.pending.append(
                            {"op": "release_ip", "pool": pool.name, "ip": ip, "container": cid, "ifname": ifname}
                        )
            self._retire(record)
        try:
            self._replay_logged("GC")
        finally:
            self.stores.close()


def open_stores(confs: list[ClusterIpamConf], only: str = "") -> list[tuple[Store, list[PoolConf]]]:
    """One store per distinct store configuration, with its pools (each once); `only` keeps one range."""
    grouped: dict[tuple[str, ...], tuple[ClusterIpamConf, list[PoolConf]]] = {}
    for conf in confs:
        _, pools = grouped.setdefault(store_key(conf), (conf, []))
        for pool in conf.pools:
            if only and only not in (pool.name, pool.range.subnet_str()):
                continue
            if all(p.name != pool.name for p in pools):
                pools.append(pool)
    if only and not any(pools for _, pools in grouped.values()):
        names = sorted({p.name for c in confs for p in c.pools})
        raise InvalidConfig(f"ipam: no pool {only!r} in the configuration (its pools: {', '.join(names)})")
    return [(_Stores(conf).get(), pools) for conf, pools in grouped.values() if pools]


# ---- the node daemon's housekeeping (daemon/ipam.py calls these between CNI calls) ----


def replay_journal(conf: ClusterIpamConf) -> list[str]:
    """Send this node's journalled releases of `conf`'s store now; what could not be sent, as texts.

    The same replay an ADD, DEL or GC starts with; the daemon runs it on a timer, so a release
    made while the store was down reaches the store soon after it is back, without waiting for
    the node's next call of this plugin.
    """
    if not os.path.isdir(conf.data_dir):
        return []  # no record here (never used on this node, or removed): nothing to send, nothing to create
    call = _Call(conf)
    try:
        problems = call.replay(wait=0)
        if problems is None:
            return []  # a CNI call of this node is sending it now
        _note_replay(conf.data_dir, failed=bool(problems))
        return problems
    finally:
        call.stores.close()


def claim_ahead(conf: ClusterIpamConf) -> list[str]:
    """Claim a block for each pool of `conf` whose owned blocks are running out; the blocks' pools.

    Running out: this node owns blocks of the pool and they have fewer free addresses than
    `low_mark` (half a block). A pool the node owns no block of is left alone: its first block
    is claimed by the ADD that needs it. DEL keeps one empty block under the same condition
    (`retire_empty_blocks`), so a block claimed ahead is not released by the next DEL.
    StoreError (StoreUnavailable when the store is down) reaches the caller.
    """
    if not os.path.isdir(conf.data_dir):
        return []  # no record here: no block owned, nothing to claim ahead
    call = _Call(conf)
    claimed: list[str] = []
    try:
        for pool in conf.pools:
            mark = low_mark(pool.block_prefix, pool.range.version)
            with call.state.claiming():
                with call.state.locked() as record:
                    rec = record.pool(pool.name)
                    owned = rec.owned()
                    if not owned or free_count(pool.range, owned, rec.taken(), mark) >= mark:
                        continue
                    avoid = record.pending_blocks(pool.name)
                if call._claim_block(pool, avoid):
                    claimed.append(pool.name)
    finally:
        call.stores.close()
    return claimed


class ClusterIpam:
    """The cluster-wide IPAM plugin (CNI personality `multiplane-cluster-ipam`)."""

    name = "multiplane-cluster-ipam"

    def add(self, req: Request) -> Result:
        call = _Call.of(req)
        try:
            return call.add()
        finally:
            frontdoor.current().look_after(call.conf)

    def delete(self, req: Request) -> None:
        call = _Call.of(req)
        try:
            call.delete()
        finally:
            frontdoor.current().look_after(call.conf)

    def gc(self, req: Request) -> None:
        call = _Call.of(req)
        try:
            call.gc(req.conf.raw)
        finally:
            frontdoor.current().look_after(call.conf)

    def check(self, req: Request) -> None:
        conf = cluster_config.load(req.conf.raw, req.conf.name, req.conf.cni_version, req.args.args)
        cid, ifname = req.args.container_id, req.args.ifname
        mine = {p.name for p in conf.pools}
        with LocalState(conf.data_dir).locked() as record:
            held = {ipaddress.ip_address(ip) for pool, ip in record.held_by(cid, ifname) if pool in mine}
        if not held:
            raise CniError(f"cluster-ipam: Failed to find address added by container {cid}")
        for addr in Result.addresses_of(req.conf.get("prevResult"), req.conf.cni_version):
            inside = any(
                p.range.version == addr.version and p.range.first <= int(addr) <= p.range.last for p in conf.pools
            )
            if inside and addr not in held:
                raise CniError(f"cluster-ipam: address {addr} from prevResult is not held by container {cid}")

    def status(self, req: Request) -> None:
        conf = cluster_config.load(req.conf.raw, req.conf.name, req.conf.cni_version, req.args.args)
        with LocalState(conf.data_dir).locked():
            pass  # the lock taken and the record read (IOFailure, TryAgainLater otherwise)
