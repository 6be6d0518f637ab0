"""The reconciler of cluster-wide IPAM: frees the claims that nobody else can free (decision 0010, I5).

What it frees, in each pool of the configuration:

* a block whose owner node has no Node object (GET /api/v1/nodes/<name> answers 404);
* a single claim whose recorded pod ("namespace/name") has no Pod object, whatever its node;
* a single claim without a recorded pod whose node has no Node object.

Never an address whose pod is alive: a single claim whose pod exists is kept, even when its
node is gone (a pod of that namespace/name counts as alive: errs on the side of keeping).
Blocks of a node that exists are never touched (the node frees its own empty blocks, and its
GC the addresses of pods gone without DEL).

The grace period. A holder (a node, or a pod) must be seen missing by two looks at least
`grace` seconds apart, and by the look just before the release, before anything of it is
freed. A look that sees it present forgets the earlier sighting, so a node that is only
temporarily unknown (re-registering, its Node object deleted and re-created) starts again from
zero. Any answer of the API other than the object or 404 (unreachable, 403, 5xx) stops the
run before it releases anything: unknown is never taken for missing. The claims' own age
is not used: etcd claims record none, and how old a claim is says nothing about how long its
node has been gone.

Where the first sighting is kept: with a state file (`--state`), a run records when it first
saw each holder missing and releases what an earlier run already saw missing at least
`grace` ago (a CronJob with a volume; a run in between that sees the holder present clears
the record, so runs should come more often than `grace`). Without one, a single run looks, waits `grace`, and looks again (a CronJob with
no volume: `activeDeadlineSeconds` must allow for the wait).

Releases are the store's compare-and-delete (`release_block` with the recorded owner node,
`release_ip` with the recorded container and interface): a block or address that another
node or container claimed meanwhile is never taken from it.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse

from multiplane.errors import CniError
from multiplane.k8s.client import ApiError, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from multiplane.ipam.cluster.store import Store
    from multiplane.k8s.client import KubeClient

__all__ = ["DEFAULT_GRACE", "Action", "Lookup", "ReconcileError", "reconcile_once"]

DEFAULT_GRACE = 600.0  # seconds (decision 0010, I5: 10 minutes)


class ReconcileError(CniError):
    """The run could not decide (the API did not answer as expected); nothing more is released."""


class Lookup:
    """Whether nodes and pods exist, asked of the Kubernetes API; answers are cached per run unless `fresh`."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self._cache: dict[str, bool] = {}

    def _exists(self, key: str, path: str, fresh: bool) -> bool:
        if not fresh and key in self._cache:
            return self._cache[key]
        try:
            self.client.get_object(path)
            found = True
        except NotFound:
            found = False
        except ApiError as exc:
            raise ReconcileError(f"ipam reconcile: cannot tell whether {key} exists: {exc.msg}") from exc
        self._cache[key] = found
        return found

    def node(self, name: str, fresh: bool = False) -> bool:
        return self._exists(f"node/{name}", f"/api/v1/nodes/{urllib.parse.quote(name, safe='')}", fresh)

    def pod(self, pod: str, fresh: bool = False) -> bool:
        ns, _, name = pod.partition("/")
        if not ns or not name:
            return True  # not a pod we can look up: keep it
        path = f"/api/v1/namespaces/{urllib.parse.quote(ns, safe='')}/pods/{urllib.parse.quote(name, safe='')}"
        return self._exists(f"pod/{pod}", path, fresh)


class Action:
    """One claim the run freed (or would free, or kept though due): what, whose, and the outcome."""

    __slots__ = ("pool", "kind", "key", "holder", "outcome")

    def __init__(self, pool: str, kind: str, key: str, holder: dict[str, Any], outcome: str) -> None:
        self.pool, self.kind, self.key, self.holder, self.outcome = pool, kind, key, holder, outcome

    def to_json(self) -> dict[str, Any]:
        return {"pool": self.pool, "kind": self.kind, "key": self.key, "holder": self.holder, "outcome": self.outcome}

    def __str__(self) -> str:
        who = ", ".join(f"{k}={v}" for k, v in sorted(self.holder.items()))
        return f"{self.outcome}: {self.kind} {self.key} of pool {self.pool} ({who})"


def _ip_holder(record: dict[str, Any]) -> str:
    """The holder whose absence frees a single claim: its pod when recorded, else its node."""
    pod = record.get("pod")
    if isinstance(pod, str) and pod:
        return f"pod/{pod}"
    return f"node/{record.get('node', '')}"


def reconcile_once(
    stores: Iterable[tuple[Store, list[str]]],
    lookup: Lookup,
    marks: dict[str, float],
    grace: float,
    now: float,
    dry_run: bool = False,
) -> tuple[list[Action], dict[str, float]]:
    """One look at every pool; returns what was done and the new marks (holder → first seen missing).

    `marks` are the sightings of earlier looks. Every lookup is made before any release, so
    an API failure (ReconcileError) releases nothing; each release asks the API once more.
    """
    claims: list[tuple[Store, str, str, str, dict[str, Any], str]] = []  # store, pool, kind, key, record, holder
    for store, pools in stores:
        for pool in pools:
            for block, owner in sorted(store.blocks(pool).items()):
                claims.append((store, pool, "block", block, owner, f"node/{owner.get('node', '')}"))
            for ip, holder in sorted(store.ips(pool).items()):
                claims.append((store, pool, "address", ip, holder, _ip_holder(holder)))

    def exists(holder: str, fresh: bool = False) -> bool:
        kind, _, name = holder.partition("/")
        return lookup.node(name, fresh) if kind == "node" else lookup.pod(name, fresh)

    missing = {holder for *_, holder in claims if not exists(holder)}
    new_marks = {holder: marks.get(holder, now) for holder in missing}
    actions: list[Action] = []
    freed: set[tuple[str, str, str]] = set()
    for store, pool, kind, key, record, holder in claims:
        if holder not in missing or holder not in marks or now - marks[holder] < grace:
            continue
        if dry_run:
            actions.append(Action(pool, kind, key, record, "would free"))
            continue
        if exists(holder, fresh=True):  # back just now: keep, and forget the sighting
            new_marks.pop(holder, None)
            actions.append(Action(pool, kind, key, record, "kept (back)"))
            continue
        if kind == "block":
            done = store.release_block(pool, key, str(record.get("node", "")))
        else:
            done = store.release_ip(pool, key, str(record.get("container", "")), str(record.get("ifname", "")))
        actions.append(Action(pool, kind, key, record, "freed" if done else "not freed (claimed anew)"))
        if done:
            freed.add((pool, kind, key))
    holding = {holder for _, pool, kind, key, _, holder in claims if (pool, kind, key) not in freed}
    return actions, {h: t for h, t in new_marks.items() if h in holding}


def load_marks(path: str) -> dict[str, float]:
    """The sightings a state file holds; none when it does not exist yet."""
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ReconcileError(f"ipam reconcile: cannot read state file {path}: {exc}") from exc
    missing = raw.get("missing") if isinstance(raw, dict) else None
    if not isinstance(missing, dict):
        raise ReconcileError(f"ipam reconcile: state file {path} has no 'missing' object")
    return {str(k): float(v) for k, v in missing.items() if isinstance(v, (int, float))}


def save_marks(path: str, marks: dict[str, float]) -> None:
    """Write the sightings atomically (a temporary file renamed over the old one)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"version": 1, "missing": marks}, fh, sort_keys=True, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def run(
    stores: list[tuple[Store, list[str]]],
    lookup: Lookup,
    grace: float,
    state: str = "",
    dry_run: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Action]:
    """A whole reconcile: with a state file one look; without, look, wait `grace`, look again."""
    if state:
        marks = load_marks(state)
        actions, marks = reconcile_once(stores, lookup, marks, grace, time.time(), dry_run)
        if not dry_run:
            save_marks(state, marks)
        return actions
    _, marks = reconcile_once(stores, lookup, {}, grace, time.time(), dry_run=True)
    if not marks:
        return []
    sleep(grace)
    fresh = Lookup(lookup.client)
    actions, _ = reconcile_once(stores, fresh, marks, grace, time.time(), dry_run)
    return actions
