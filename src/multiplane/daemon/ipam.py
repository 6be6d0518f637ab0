"""Cluster-wide IPAM's background work in the node daemon (docs/cluster-ipam.md, decision 0013).

One thread, `mp-ipam`, every `ipamInterval` seconds, for each cluster-wide IPAM configuration
a call of this daemon used (`look_after`, called by the plugin through the front door):

* **replays the journal**: releases a DEL or GC could not send while the store was down reach
  the store soon after it is back, not only at the node's next call of the plugin;
* **claims a block ahead of need**: when the node's owned blocks of a pool have fewer free
  addresses than half a block, it claims the next one now, so the ADD that would have needed
  it is served locally (and still succeeds if the store goes down meanwhile).

And every `ipamReconcileInterval` seconds (with up to a fifth of it added at random, so the
nodes of a cluster do not look at once), when the daemon has a cluster: **reconciles** the
pools of those configurations and of every NetworkAttachmentDefinition in its cache that uses
`multiplane-cluster-ipam` (ipam/cluster/reconcile.py: frees the blocks of nodes and the single
claims of pods that are gone, after `ipamReconcileGrace` seconds and two sightings). The
sightings live in memory: a restarted daemon starts its grace periods again, which only
delays a release. Every node's daemon reconciles; the releases are the store's
compare-and-delete, so two daemons freeing the same block cannot free anything else.

The same functions as the CNI calls run here (plugins/cluster_ipam.py `replay_journal` and
`claim_ahead` and `open_stores`, reconcile.py `reconcile_once`): one engine.
A failure is logged once when it starts and once when it is over, never per round.
"""

from __future__ import annotations

import random
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from multiplane import logs
    from multiplane.daemon.metrics import Metrics
    from multiplane.ipam.cluster.config import ClusterIpamConf

__all__ = ["Housekeeper", "nad_configs"]

MAX_CONFIGS = 1024  # configurations remembered (the oldest is forgotten first)


def _key(conf: ClusterIpamConf) -> tuple[Any, ...]:
    from multiplane.ipam.cluster.config import store_key

    pools = tuple((p.name, p.range.subnet_str(), p.range.first, p.range.last, p.block_prefix) for p in conf.pools)
    return (conf.data_dir, conf.node_name, store_key(conf), pools)


def nad_configs(nads: list[dict[str, Any]], log: logs.Logger | None = None) -> list[ClusterIpamConf]:
    """The cluster-wide IPAM sections of NetworkAttachmentDefinitions, parsed by the plugin's own parser."""
    from multiplane.errors import CniError
    from multiplane.ipam.cluster.config import load
    from multiplane.ipam.cluster.config import find_sections

    out: list[ClusterIpamConf] = []
    for nad in nads:
        try:
            sections = find_sections(nad)
            out.extend(load({"ipam": s}, "ipam", "1.1.0") for s in sections)
        except CniError as exc:
            if log is not None:
                meta = nad.get("metadata", {}) if isinstance(nad, dict) else {}
                log.debug(f"ipam: NAD {meta.get('namespace')}/{meta.get('name')} is not reconciled: {exc.msg}")
    return out


class Housekeeper:
    """The `mp-ipam` thread; `look_after(conf)` from any worker, `start()`, `stop()`."""

    def __init__(
        self,
        interval: float,
        reconcile_interval: float,
        grace: float,
        log: logs.Logger,
        metrics: Metrics | None = None,
        kube_client: Callable[[], Any] | None = None,
        nads: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.interval, self.reconcile_interval, self.grace = interval, reconcile_interval, grace
        self.log, self.metrics = log, metrics
        self._kube_client, self._nads = kube_client, nads
        self._confs: dict[tuple[Any, ...], ClusterIpamConf] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._problems: dict[tuple[Any, ...], str] = {}  # what is failing now, by task (logged once)
        self._marks: dict[tuple[Any, ...], dict[str, float]] = {}  # the reconciler's sightings, per store
        self.front: Any = None  # the daemon's front door, set once it exists (it holds this housekeeper)

    @property
    def reconciling(self) -> bool:
        return self.reconcile_interval > 0 and self._kube_client is not None

    def look_after(self, conf: ClusterIpamConf) -> None:
        key = _key(conf)
        with self._lock:
            self._confs.pop(key, None)
            self._confs[key] = conf  # the newest last
            while len(self._confs) > MAX_CONFIGS:
                del self._confs[next(iter(self._confs))]

    def configs(self) -> list[ClusterIpamConf]:
        with self._lock:
            return list(self._confs.values())

    def start(self) -> None:
        if self.interval <= 0 and not self.reconciling:
            return
        self._thread = threading.Thread(target=self._run, name="mp-ipam", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # ---- the loop ----

    def _next_reconcile(self, now: float) -> float:
        return now + self.reconcile_interval * (1 + random.random() / 5)

    def _run(self) -> None:
        """The thread: the daemon's front door (its cluster, its node name) and its logger are the
        ones the plugin's code sees, as in a request."""
        from multiplane import frontdoor, logs

        with logs.using(self.log):
            if self.front is None:
                self._loop()
                return
            with frontdoor.serving(self.front):
                self._loop()

    def _loop(self) -> None:
        tick = self.interval if self.interval > 0 else self.reconcile_interval
        if self.reconciling:
            tick = min(tick, self.reconcile_interval)
        reconcile_at = self._next_reconcile(time.monotonic())
        while not self._stop.wait(tick):
            try:
                if self.interval > 0:
                    self.tend()
                if self.reconciling and time.monotonic() >= reconcile_at:
                    reconcile_at = self._next_reconcile(time.monotonic())
                    self.reconcile()
            except Exception as exc:  # noqa: BLE001 - a bug: logged, and the next round runs anyway
                import traceback

                self.log.error(f"ipam background round failed: {exc!r}\n{traceback.format_exc()}")

    def _outcome(self, key: tuple[Any, ...], task: str, problem: str, done: str = "") -> None:
        """Log a problem when it starts (or changes) and once when it is over; count the round."""
        before = self._problems.get(key)
        if problem:
            if problem != before:
                self.log.warning(f"ipam {task}: {problem}")
            self._problems[key] = problem
        else:
            if before is not None:
                self.log.info(f"ipam {task}: working again")
                del self._problems[key]
            if done:
                self.log.info(f"ipam {task}: {done}")
        if self.metrics is not None:
            self.metrics.ipam_round(task, "error" if problem else "ok")

    def tend(self) -> None:
        """One round of journal replays and claims ahead over every configuration looked after."""
        from multiplane.errors import CniError
        from multiplane.plugins.cluster_ipam import claim_ahead, replay_journal

        for conf in self.configs():
            if self._stop.is_set():
                return
            key = _key(conf)
            where = f"{conf.data_dir} ({', '.join(p.name for p in conf.pools)})"
            try:
                problems = replay_journal(conf)
                self._outcome(("replay", *key), "replay", "; ".join(problems) and f"{where}: {'; '.join(problems)}")
            except CniError as exc:
                self._outcome(("replay", *key), "replay", f"{where}: {exc.msg}")
            try:
                claimed = claim_ahead(conf)
                done = f"node {conf.node_name} claimed a block ahead of need in {', '.join(claimed)}" if claimed else ""
                self._outcome(("claim", *key), "claim-ahead", "", done)
            except CniError as exc:
                self._outcome(("claim", *key), "claim-ahead", f"{where}: {exc.msg}")

    def reconcile(self) -> None:
        """One look of the reconciler at every pool this node knows of (its calls' and the NADs')."""
        from multiplane.errors import CniError
        from multiplane.ipam.cluster.reconcile import Lookup, reconcile_once
        from multiplane.ipam.cluster.config import store_key
        from multiplane.plugins.cluster_ipam import open_stores

        assert self._kube_client is not None
        confs = self.configs()
        if self._nads is not None:
            confs += nad_configs(self._nads(), self.log)
        grouped: dict[tuple[Any, ...], list[ClusterIpamConf]] = {}
        for conf in confs:
            # Under the daemon every Kubernetes store is the daemon's cluster, whatever file a section names.
            key = store_key(conf) if conf.etcd is not None else ("kube", "")
            grouped.setdefault(key, []).append(conf)
        client = self._kube_client()
        try:
            for skey, group in grouped.items():
                key = ("reconcile", *skey)
                try:
                    opened = open_stores(group)
                except CniError as exc:
                    self._outcome(key, "reconcile", f"store {skey}: {exc.msg}")
                    continue
                try:
                    stores = [(store, [p.name for p in pools]) for store, pools in opened]
                    actions, marks = reconcile_once(
                        stores, Lookup(client), self._marks.get(skey, {}), self.grace, time.time()
                    )
                    self._marks[skey] = marks
                    freed = [a for a in actions if a.outcome == "freed"]
                    for action in actions:
                        self.log.info(f"ipam reconcile: {action}")
                    self._outcome(key, "reconcile", "", "")
                    if self.metrics is not None and freed:
                        self.metrics.ipam_freed(len(freed))
                except CniError as exc:
                    self._outcome(key, "reconcile", exc.msg)
                finally:
                    for store, _ in opened:
                        store.close()
        finally:
            client.close()
