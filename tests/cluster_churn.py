"""Churn and faults of `multiplane-cluster-ipam` on simulated nodes, whatever the store: one checker, one scenario set.

    c = Cluster(base, {"etcd": {...}} or {"kubernetes": {...}}, reader, "10.80.0.0/22", seed, "mp-churn")
    c.run([(node, "ADD", c.cid(node)), ...])    # concurrent calls, PER_NODE at a time per node
    c.check()                                   # the invariants on results, records and the store
    churn(c, rng, fault=..., repair=...)         # seeded DEL/ADD batches, a fault from 1/3 to 2/3

The test modules (test_cluster_churn.py: a 3-member etcd; test_cluster_churn_kube.py: the
Kubernetes API test server with the CRDs) give the store's IPAM keys, a reader of the same
store class the plugin uses, and the fault; the scenarios below are shared. The meta-plugin's
churn (test_cluster_churn_meta.py) has nodes of another kind and calls `check_invariants`.

Nodes are `tests/cluster_nodes.py` UtsNodes: host names in UTS namespaces of their own (the
configs carry no `nodeName`), each with its own `dataDir` and network namespace.

Seeded: MP_CHURN_SEED replays a run's choices (each failure message names its seed; the
interleaving of concurrent processes is not replayed). MP_CHURN_OPS sets the number of random
DEL/ADD operations of the churn (default 100 in `make test`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests import cni
from tests.cluster_nodes import UtsNode

OPS = int(os.environ.get("MP_CHURN_OPS", "100"))
PER_NODE = 4  # concurrent calls per node (bounded: 2 cores); 4 nodes -> up to 16 plugin processes at once


def seed() -> int:
    env = os.environ.get("MP_CHURN_SEED")
    return int(env) if env else random.SystemRandom().randrange(2**32)


def check_invariants(
    pool: str,
    held: dict[tuple[str, str], str],
    records: dict[str, dict[str, Any]],
    ctx: str,
    *,
    exact: bool = True,
    store_blocks: dict[str, dict[str, Any]] | None = None,
    store_ips: dict[str, dict[str, Any]] | None = None,
    ownership: bool = True,
) -> None:
    """The invariants of one pool over everything there is to read.

    held: (node, container) -> address, from ADD results; records: node -> its state.json (read
    under the plugin's lock). No address in two results or two records; each recorded address
    inside a block its node records, and the address its ADD answered; `exact`: each record
    holds exactly its node's results. With the store read (`store_blocks`, `store_ips`): no two
    blocks overlap, no single claim is left, and (`ownership`) each recorded block is its
    node's in the store (only between batches: a block is claimed in the store before it is
    recorded, and dropped from the record before it is released)."""
    ips = list(held.values())
    dup = {ip for ip in ips if ips.count(ip) > 1}
    assert not dup, f"ADD results hand out {sorted(dup)} twice [{ctx}]"
    seen: dict[str, tuple[str, str, str]] = {}
    for name, state in records.items():
        rec = state["pools"].get(pool, {"blocks": {}, "addresses": {}})
        owned = [ipaddress.ip_network(b) for b in rec["blocks"]]
        for ip, holder in rec["addresses"].items():
            who = (name, holder["container"], holder["ifname"])
            assert ip not in seen, f"{ip} held by {seen[ip]} and {who} [{ctx}]"
            seen[ip] = who
            assert any(ipaddress.ip_address(ip) in b for b in owned), f"{who} holds {ip} outside {owned} [{ctx}]"
            if (name, holder["container"]) in held:
                assert held[(name, holder["container"])] == ip, (who, ip, held[(name, holder["container"])], ctx)
        if exact:
            want = {ip for (n, _), ip in held.items() if n == name}
            assert set(rec["addresses"]) == want, (
                f"{name}: record {sorted(rec['addresses'])} != results {sorted(want)} [{ctx}]"
            )
    if store_blocks is not None:
        nets = sorted((ipaddress.ip_network(b), o["node"]) for b, o in store_blocks.items())
        for i, (a, na) in enumerate(nets):
            for b, nb in nets[i + 1 :]:
                assert not a.overlaps(b), f"store blocks {a} ({na}) and {b} ({nb}) overlap [{ctx}]"
        for name, state in records.items():
            rec = state["pools"].get(pool, {"blocks": {}})
            for b in rec["blocks"] if ownership else ():
                owner = store_blocks.get(b, {}).get("node")
                assert owner == name, f"{name} records block {b}, the store says {owner} owns it [{ctx}]"
    if store_ips is not None:
        assert store_ips == {}, f"single claims left: {store_ips} [{ctx}]"


class Cluster:
    """Four UTS nodes on one pool, the test's view of what each holds, and the invariant checks.

    store_ipam: the IPAM keys that choose the store; reader: a Store of the same store (the
    plugin's own class) to read blocks and single claims; netns_prefix: the nodes' network
    namespaces are <prefix>-<tag>-<i>. `store_up` False: checks do not read the store (it is
    down); `unavailable_ok`: an ADD may fail with code 11 (a new block needed, the store down)."""

    def __init__(
        self,
        base: str,
        store_ipam: dict[str, Any],
        reader: Any,
        rng_range: str,
        seed: int,
        netns_prefix: str,
        **ipam: Any,
    ) -> None:
        self.net = f"mp-{uuid.uuid4().hex[:8]}"
        self.pool = f"{self.net}-{rng_range.replace('/', '-')}"
        self.range = ipaddress.ip_network(rng_range)
        self.seed = seed
        conf = {"range": rng_range, "network_name": self.net, **store_ipam, **ipam}
        tag = uuid.uuid4().hex[:6]
        self.nodes = [UtsNode(base, f"mp-node{i}", conf, f"{netns_prefix}-{tag}-{i}") for i in range(1, 5)]
        self.held: dict[tuple[str, str], str] = {}  # (node, container) -> address, from ADD results
        self.lock = threading.Lock()
        self.store_lock = threading.Lock()  # held by a check reading the store, and to take the store down
        self.reader = reader
        self.counter = 0
        self.store_up = True
        self.unavailable_ok = False
        self.unavailable: list[dict[str, Any]] = []  # the code-11 errors that `unavailable_ok` let pass
        self.served_while_down = 0  # ADDs that succeeded while the store was down (from owned blocks)
        self.dead: set[str] = set()  # nodes killed for good: no longer called, no longer checked

    def ctx(self) -> str:
        return f"seed={self.seed} (MP_CHURN_SEED={self.seed} replays the choices), pool {self.pool}"

    def live(self) -> list[UtsNode]:
        return [n for n in self.nodes if n.name not in self.dead]

    def cid(self, node: UtsNode) -> str:
        with self.lock:
            self.counter += 1
            return f"mp-{node.name}-c{self.counter}"

    def add(self, node: UtsNode, cid: str) -> str | None:
        inv = node.call("ADD", cid)
        if not inv.ok and self.unavailable_ok:
            err = inv.error()
            if err["code"] == 11:
                assert f"pool {self.pool} needs a new block" in err["msg"] and "unreachable" in err["msg"], err
                with self.lock:
                    self.unavailable.append(err)
                return None
        assert inv.ok, f"{node.name} ADD {cid}: {inv.stdout} {inv.stderr} [{self.ctx()}]"
        (ipc,) = inv.json["ips"]
        ip = ipc["address"].split("/")[0]
        with self.lock:
            self.held[(node.name, cid)] = ip
            self.served_while_down += not self.store_up
        return ip

    def delete(self, node: UtsNode, cid: str) -> None:
        inv = node.call("DEL", cid)
        assert inv.ok, f"{node.name} DEL {cid}: {inv.stdout} {inv.stderr} [{self.ctx()}]"
        with self.lock:
            self.held.pop((node.name, cid), None)

    def mine(self, node: UtsNode) -> list[str]:
        with self.lock:
            return sorted(c for n, c in self.held if n == node.name)

    def run(self, calls: list[tuple[UtsNode, str, str]]) -> None:
        """Run (node, command, container) calls, PER_NODE at a time per node; re-raise the first failure."""
        pools = {n.name: ThreadPoolExecutor(PER_NODE) for n in self.nodes}
        try:
            futures = [pools[n.name].submit(self.add if cmd == "ADD" else self.delete, n, cid) for n, cmd, cid in calls]
            for f in futures:
                f.result()
        finally:
            for p in pools.values():
                p.shutdown(wait=True)

    def del_all(self) -> None:
        self.run([(n, "DEL", cid) for n in self.live() for cid in self.mine(n)])

    def records(self) -> dict[str, dict[str, Any]]:
        return {n.name: n.record() for n in self.live()}

    def check(self, store: bool = True, exact: bool = True, ownership: bool = True) -> dict[str, dict[str, Any]]:
        """check_invariants on the live nodes; `store`: read the store too (if it is up)."""
        with self.lock:
            held = {k: ip for k, ip in self.held.items() if k[0] not in self.dead}
        records = self.records()
        with self.store_lock:
            blocks = ips = None
            if store and self.store_up:
                blocks, ips = self.reader.blocks(self.pool), self.reader.ips(self.pool)
        check_invariants(
            self.pool, held, records, self.ctx(), exact=exact, store_blocks=blocks, store_ips=ips, ownership=ownership
        )
        return records

    def set_store(self, up: bool, action: Callable[[], Any]) -> None:
        """Take the store down or bring it up (`action`) between two checks' reads of it."""
        with self.store_lock:
            if not up:
                self.store_up = False
            action()
            if up:
                self.store_up = True

    def setup(self) -> None:
        for n in self.nodes:
            n.setup()

    def teardown(self) -> None:
        for n in self.nodes:
            n.teardown()


def cluster_factory(
    base: str, store_ipam: dict[str, Any], reader: Any, netns_prefix: str
) -> Iterator[Callable[..., Cluster]]:
    """The body of a test module's `make_cluster` fixture: its nodes' namespaces removed after, and checked gone."""
    made: list[Cluster] = []

    def make(rng_range: str, seed: int, **ipam: Any) -> Cluster:
        c = Cluster(base, store_ipam, reader, rng_range, seed, netns_prefix, **ipam)
        made.append(c)
        c.setup()
        return c

    try:
        yield make
    finally:
        for c in made:
            c.teardown()
        mine = {n.netns for c in made for n in c.nodes}
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
        left = [line for line in listed.splitlines() if line.split()[0] in mine]
        assert not left, left


def all_released(c: Cluster) -> dict[str, dict[str, Any]]:
    """After every DEL: no address anywhere, no journal, each node at most its spare block; the store's blocks,
    which are exactly the blocks the live nodes record (nothing held by nobody)."""
    records = c.check()
    for name, state in records.items():
        rec = state["pools"].get(c.pool, {"blocks": {}, "addresses": {}})
        assert rec["addresses"] == {}, (name, rec, c.ctx())
        assert state["pending"] == [], (name, state["pending"], c.ctx())
        assert len(rec["blocks"]) <= 1, f"{name} keeps {sorted(rec['blocks'])}: more than one spare [{c.ctx()}]"
    left = c.reader.blocks(c.pool)
    recorded = sorted(b for r in records.values() for b in r["pools"].get(c.pool, {"blocks": {}})["blocks"])
    assert sorted(left) == recorded, (left, recorded, c.ctx())
    return left


# ---- the scenarios ----


def fifty_adds_then_churn(
    c: Cluster, rng: random.Random, fault: Callable[[], None], repair: Callable[[], None]
) -> None:
    """4 nodes x 50 ADDs (PER_NODE at a time per node, all nodes at once), then OPS random DEL/ADD in batches of 8
    concurrent calls with the invariants checked after each batch and by a watcher while calls run; `fault` at a
    third of the way, `repair` at two thirds; after all DELs nothing is held and the store keeps only each
    node's spare."""
    c.run([(n, "ADD", c.cid(n)) for k in range(50) for n in c.nodes])
    assert len(c.held) == 200
    records = c.check()
    assert {len(r["pools"][c.pool]["addresses"]) for r in records.values()} == {50}
    owners = {o["node"] for o in c.reader.blocks(c.pool).values()}
    assert owners == {f"mp-node{i}" for i in range(1, 5)}, owners  # each UTS namespace's host name is its node

    stop = threading.Event()
    failures: list[BaseException] = []
    checks = [0]

    def watch() -> None:  # while calls run: no address in two records or two results, no overlapping blocks
        while not stop.is_set():
            try:
                c.check(exact=False, ownership=False)
                checks[0] += 1
            except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
                failures.append(exc)
                return
            stop.wait(0.3)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        churn(c, rng, fault, repair)
    finally:
        stop.set()
        watcher.join()
    if failures:
        raise failures[0]
    assert checks[0] > 0
    c.del_all()
    all_released(c)


def churn(c: Cluster, rng: random.Random, fault: Callable[[], None], repair: Callable[[], None]) -> None:
    """OPS random DEL/ADD in batches of 8 concurrent calls, `fault` at 1/3, `repair` at 2/3, checks after each."""
    state = "before"
    done = 0
    while done < OPS:
        if state == "before" and done >= OPS // 3:
            fault()
            state = "fault"
        if state == "fault" and done >= 2 * OPS // 3:
            repair()
            state = "repaired"
        batch: list[tuple[UtsNode, str, str]] = []
        taken: set[tuple[str, str]] = set()
        for _ in range(min(8, OPS - done)):
            node = rng.choice(c.live())
            candidates = [cid for cid in c.mine(node) if (node.name, cid) not in taken]
            if candidates and rng.random() < 0.5:
                cid = rng.choice(candidates)
                taken.add((node.name, cid))
                batch.append((node, "DEL", cid))
            else:
                batch.append((node, "ADD", c.cid(node)))
        c.run(batch)
        done += len(batch)
        c.check()
    assert state == "repaired", "the fault was never made and repaired"


def store_down_owned_blocks_serve(
    c: Cluster, down: Callable[[], None], up: Callable[[], None], where: str, pods: int = 10
) -> None:
    """/29 blocks: each node holds `pods` pods (2 blocks); the store down (`down`); the DELs succeed and journal
    the emptied block; ADDs continue from the spare until it is full, then code 11 naming the pool and the store
    (`where` is in the message); the store back (`up`), a DEL replays the journal: the store then holds no claim
    of a released block, then a new block each, then everything given back."""
    c.run([(n, "ADD", c.cid(n)) for k in range(pods) for n in c.nodes])
    records = c.check()
    before = {name: set(r["pools"][c.pool]["blocks"]) for name, r in records.items()}
    assert all(len(b) >= 2 for b in before.values()), (before, c.ctx())

    c.set_store(False, down)
    c.del_all()
    records = c.check()
    released: dict[str, set[str]] = {}
    for name, state in records.items():
        rec = state["pools"][c.pool]
        assert rec["addresses"] == {}
        assert len(rec["blocks"]) == 1, (name, rec["blocks"], c.ctx())  # the spare
        released[name] = {e["block"] for e in state["pending"] if e["op"] == "release_block"}
        assert released[name] == before[name] - set(rec["blocks"]), (name, state["pending"], c.ctx())

    def fill(node: UtsNode) -> dict[str, Any]:
        for _ in range(9):  # a /29 has at most 8 usable addresses
            cid = c.cid(node)
            inv = node.call("ADD", cid)
            if not inv.ok:
                return inv.error()
            (ipc,) = inv.json["ips"]
            with c.lock:
                c.held[(node.name, cid)] = ipc["address"].split("/")[0]
        raise AssertionError(f"{node.name}: 9 ADDs from one /29 with the store down [{c.ctx()}]")

    with ThreadPoolExecutor(4) as pool:
        errors = dict(zip([n.name for n in c.nodes], pool.map(fill, c.nodes), strict=True))
    records = c.check()
    for name, err in errors.items():
        rec = records[name]["pools"][c.pool]
        assert len(rec["addresses"]) >= 6, (name, rec, c.ctx())  # served from the owned spare, no store
        assert err["code"] == 11, (name, err)
        assert f"pool {c.pool} needs a new block" in err["msg"] and "unreachable" in err["msg"], err
        assert where in err["msg"], err

    c.set_store(True, up)
    store_blocks = c.reader.blocks(c.pool)
    for name, blocks in released.items():  # not yet replayed: the store still has them
        assert blocks <= {b for b, o in store_blocks.items() if o["node"] == name}, (name, blocks, c.ctx())
    for n in c.nodes:
        c.delete(n, "mp-replay-trigger")  # a DEL of nothing: it replays the journal
    records = c.check()
    store_blocks = c.reader.blocks(c.pool)
    for name, state in records.items():
        assert state["pending"] == [], (name, state["pending"], c.ctx())
        assert not released[name] & set(store_blocks), (name, released[name], c.ctx())
        mine = {b for b, o in store_blocks.items() if o["node"] == name}
        assert mine == set(state["pools"][c.pool]["blocks"]), (name, mine, c.ctx())

    c.run([(n, "ADD", c.cid(n)) for n in c.nodes])  # a new block each, now that the store is back
    c.check()
    c.del_all()
    all_released(c)


def sigkill_at_random_moments(c: Cluster, seed: int) -> None:
    """Each node runs a seeded ADD/DEL sequence; 40 % of the calls are SIGKILLed after a random 0-150 ms and the
    container is then DELeted again (a runtime's retry), which must succeed. After each step the node's record
    holds exactly the addresses of its completed ADDs; at the end, after every DEL, no address is held anywhere
    and no journal is left.

    What a SIGKILL can leave that only a later read (or the reconciler) frees: a block the store gives the node
    that its record does not know (killed between the claim and the record). Such blocks must belong only to
    nodes that had an ADD killed, be the node's own in the store, and hold no recorded address: decision 0010
    has the node `adopt` them at its next read of the pool's blocks."""
    killed_adds: dict[str, int] = {n.name: 0 for n in c.nodes}
    landed = {"ADD": 0, "DEL": 0}  # SIGKILLs that reached a running plugin
    steps = max(12, OPS // 6)

    def walk(node: UtsNode, rng: random.Random) -> None:
        for _ in range(steps):
            mine = c.mine(node)
            if mine and rng.random() < 0.4:
                cmd, cid = "DEL", rng.choice(mine)
            else:
                cmd, cid = "ADD", c.cid(node)
            if rng.random() < 0.4:
                proc = node.spawn(cmd, cid)
                time.sleep(rng.uniform(0, 0.15))
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    with c.lock:
                        landed[cmd] += 1
                        if cmd == "ADD":
                            killed_adds[node.name] += 1
                proc.wait(timeout=30)
                c.delete(node, cid)  # the runtime's DEL after a failed or lost call
            elif cmd == "ADD":
                c.add(node, cid)
            else:
                c.delete(node, cid)
            rec = node.record()["pools"].get(c.pool, {"addresses": {}})
            with c.lock:
                want = {ip for (n, _), ip in c.held.items() if n == node.name}
            assert set(rec["addresses"]) == want, (node.name, sorted(rec["addresses"]), sorted(want), c.ctx())

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(walk, n, random.Random(f"{seed}-{n.name}")) for n in c.nodes]
        for f in futures:
            f.result()
    c.check()
    assert landed["ADD"] + landed["DEL"] >= 3, (landed, c.ctx())
    c.del_all()
    records = c.check()
    left = c.reader.blocks(c.pool)
    print(f"SIGKILLs landed: {landed}; store blocks {sorted(left.items())} [{c.ctx()}]")
    for name, state in records.items():
        rec = state["pools"].get(c.pool, {"blocks": {}, "addresses": {}})
        assert rec["addresses"] == {} and state["pending"] == [], (name, state, c.ctx())
        recorded = set(rec["blocks"])
        assert len(recorded) <= 1, (name, recorded, c.ctx())
        orphans = {b for b, o in left.items() if o["node"] == name} - recorded
        assert not orphans or killed_adds[name] > 0, (name, orphans, c.ctx())
    assert {o["node"] for o in left.values()} <= {n.name for n in c.nodes}, (left, c.ctx())


def sigkill_during_block_claims(c: Cluster, seed: int) -> None:
    """blockSize 32: every ADD claims a block in the store, so a SIGKILL at a random moment (0-300 ms) often lands
    between the claim and the record. Each node then DELs the container again; the store may now give the node
    blocks its record does not know (nobody allocates from them); one such block per node is also claimed
    directly in the store (the highest address nobody holds), so the case is there in every run. Three
    completed ADDs per node make it read the pool's blocks (its own are full): it adopts them; after every DEL
    the store holds exactly the blocks the records hold, at most one spare per node: nothing is held by nobody,
    without a reconciler."""
    orphaned: dict[str, set[str]] = {}

    def walk(node: UtsNode, rng: random.Random) -> None:
        for _ in range(10):
            cid = c.cid(node)
            proc = node.spawn("ADD", cid)
            time.sleep(rng.uniform(0, 0.3))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            c.delete(node, cid)

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(walk, n, random.Random(f"{seed}-{n.name}")) for n in c.nodes]
        for f in futures:
            f.result()
    for n in c.nodes:  # and one for sure each: what a kill right after the claim leaves
        taken = c.reader.blocks(c.pool)
        key = next(f"{ip}/32" for ip in reversed(list(c.range.hosts())[1:]) if f"{ip}/32" not in taken)
        assert c.reader.claim_block(c.pool, key, {"node": n.name}) == {"node": n.name}
    records = c.check()
    store_blocks = c.reader.blocks(c.pool)
    for name, state in records.items():
        recorded = set(state["pools"].get(c.pool, {"blocks": {}})["blocks"])
        orphaned[name] = {b for b, o in store_blocks.items() if o["node"] == name} - recorded
    c.run([(n, "ADD", c.cid(n)) for k in range(3) for n in c.nodes])
    records = c.check()
    for name, state in records.items():
        recorded = set(state["pools"][c.pool]["blocks"])
        assert orphaned[name] and orphaned[name] <= recorded, (name, orphaned[name], recorded, c.ctx())
    c.del_all()
    all_released(c)
    print(f"blocks orphaned by SIGKILL, then adopted: {orphaned} [{c.ctx()}]")


def reconcile(config: str, grace: float, state: str, *extra: str) -> list[dict[str, Any]]:
    """`multiplane ipam reconcile --json` as an operator runs it (the installed console script): its actions."""
    cmd = [cni.OURS_MULTIPLANE, "ipam", "reconcile", "--config", config, "--grace", str(grace)]
    proc = subprocess.run(
        [*cmd, "--state", state, "--json", *extra], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return list(json.loads(proc.stdout)["actions"])
