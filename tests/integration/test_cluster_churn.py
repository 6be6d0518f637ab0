"""Churn and faults of `multiplane-cluster-ipam` on simulated nodes against a real 3-member etcd (issue 13).

A node is a host name in a UTS namespace of its own (`tests/cluster_nodes.py`: every call is
`unshare --uts sh -c 'hostname mp-nodeN; exec multiplane-cluster-ipam'`, and the configs carry
no `nodeName`, so the plugin's default, the host name, tells the nodes apart), with its own
`dataDir` and its own network namespace (mp-churn-*) as CNI_NETNS of its pods.

After every batch of calls the invariants are checked on everything there is to read: the ADD
results the test holds, every node's state.json (read under the plugin's lock) and the store's
blocks and single claims: no address held by two (container, interface), each recorded address
inside a block its node owns in the store, no two store blocks overlapping.

Seeded: MP_CHURN_SEED replays a run's choices (each failure message names its seed; the
interleaving of concurrent processes is not replayed). MP_CHURN_OPS sets the number of random
DEL/ADD operations of the churn (default 100 in `make test`).
"""

from __future__ import annotations

import ipaddress
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from multiplane.ipam.cluster.etcd import EtcdStore
from tests.cluster_nodes import UtsNode
from tests.etcd_cluster import EtcdCluster, EtcdError

pytestmark = pytest.mark.root

OPS = int(os.environ.get("MP_CHURN_OPS", "100"))
PER_NODE = 4  # concurrent calls per node (bounded: 2 cores); 4 nodes -> up to 16 plugin processes at once


def _seed() -> int:
    env = os.environ.get("MP_CHURN_SEED")
    return int(env) if env else random.SystemRandom().randrange(2**32)


@pytest.fixture(scope="module")
def etcd_cluster() -> Iterator[EtcdCluster]:
    try:
        cluster = EtcdCluster(size=3).start()
    except EtcdError as exc:
        pytest.fail(str(exc))
    pids = cluster.pids()
    try:
        yield cluster
    finally:
        cluster.stop()
        assert [pid for pid in pids if os.path.exists(f"/proc/{pid}")] == []


@pytest.fixture
def etcd(etcd_cluster: EtcdCluster) -> Iterator[EtcdCluster]:
    down = [i for i, m in enumerate(etcd_cluster.members) if m.proc is None]
    if down:
        etcd_cluster.restart(*down)
    etcd_cluster.wait_healthy(timeout=20)
    yield etcd_cluster
    down = [i for i, m in enumerate(etcd_cluster.members) if m.proc is None]
    if down:  # a test that failed with the store down: the next one needs it up
        etcd_cluster.restart(*down)


class Cluster:
    """Four UTS nodes on one pool, the test's view of what each holds, and the invariant checks."""

    def __init__(self, base: str, etcd: EtcdCluster, rng_range: str, seed: int, **ipam: Any) -> None:
        self.net = f"mp-{uuid.uuid4().hex[:8]}"
        self.pool = f"{self.net}-{rng_range.replace('/', '-')}"
        self.seed = seed
        self.etcd = etcd
        conf = {"range": rng_range, "network_name": self.net, "etcd": {"endpoints": etcd.endpoints}, **ipam}
        tag = uuid.uuid4().hex[:6]
        self.nodes = [UtsNode(base, f"mp-node{i}", conf, f"mp-churn-{tag}-{i}") for i in range(1, 5)]
        self.held: dict[tuple[str, str], str] = {}  # (node, container) -> address, from ADD results
        self.lock = threading.Lock()
        self.reader = EtcdStore(etcd.endpoints)
        self.counter = 0

    def ctx(self) -> str:
        return f"seed={self.seed} (MP_CHURN_SEED={self.seed} replays the choices), pool {self.pool}"

    def cid(self, node: UtsNode) -> str:
        with self.lock:
            self.counter += 1
            return f"mp-{node.name}-c{self.counter}"

    def add(self, node: UtsNode, cid: str) -> str:
        inv = node.call("ADD", cid)
        assert inv.ok, f"{node.name} ADD {cid}: {inv.stdout} {inv.stderr} [{self.ctx()}]"
        (ipc,) = inv.json["ips"]
        ip = ipc["address"].split("/")[0]
        with self.lock:
            self.held[(node.name, cid)] = ip
        return ip

    def delete(self, node: UtsNode, cid: str) -> None:
        inv = node.call("DEL", cid)
        assert inv.ok, f"{node.name} DEL {cid}: {inv.stdout} {inv.stderr} [{self.ctx()}]"
        with self.lock:
            self.held.pop((node.name, cid), None)

    def mine(self, node: UtsNode) -> list[str]:
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

    def records(self) -> dict[str, dict[str, Any]]:
        return {n.name: n.record() for n in self.nodes}

    def check(self, store: bool = True, exact: bool = True, ownership: bool = True) -> dict[str, dict[str, Any]]:
        """The invariants; `store`: read the store too (it is up); `exact`: records hold exactly `held`;
        `ownership`: each recorded block is the node's in the store (only between batches: a block is
        claimed in the store before it is recorded, and dropped from the record before it is released)."""
        ctx = self.ctx()
        with self.lock:
            held = dict(self.held)
        ips = list(held.values())
        dup = {ip for ip in ips if ips.count(ip) > 1}
        assert not dup, f"ADD results hand out {sorted(dup)} twice [{ctx}]"
        records = self.records()
        seen: dict[str, tuple[str, str, str]] = {}
        for name, state in records.items():
            rec = state["pools"].get(self.pool, {"blocks": {}, "addresses": {}})
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
        if store:
            blocks = self.reader.blocks(self.pool)
            nets = sorted((ipaddress.ip_network(b), o["node"]) for b, o in blocks.items())
            for i, (a, na) in enumerate(nets):
                for b, nb in nets[i + 1 :]:
                    assert not a.overlaps(b), f"store blocks {a} ({na}) and {b} ({nb}) overlap [{ctx}]"
            for name, state in records.items():
                rec = state["pools"].get(self.pool, {"blocks": {}})
                for b in rec["blocks"] if ownership else ():
                    owner = blocks.get(b, {}).get("node")
                    assert owner == name, f"{name} records block {b}, the store says {owner} owns it [{ctx}]"
            assert self.reader.ips(self.pool) == {}, ctx
        return records

    def close(self) -> None:
        self.reader.close()


@pytest.fixture
def make_cluster(tmp_path: Any, etcd: EtcdCluster) -> Iterator[Any]:
    made: list[Cluster] = []

    def make(rng_range: str, seed: int, **ipam: Any) -> Cluster:
        c = Cluster(str(tmp_path), etcd, rng_range, seed, **ipam)
        made.append(c)
        for n in c.nodes:
            n.setup()
        return c

    yield make
    for c in made:
        for n in c.nodes:
            n.teardown()
        c.close()
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    assert not [line for line in left.splitlines() if line.startswith("mp-churn-")], left


def _all_released(c: Cluster) -> dict[str, dict[str, dict[str, Any]]]:
    """After every DEL: no address anywhere, no journal, each node at most its spare block; the store's blocks."""
    records = c.check()
    for name, state in records.items():
        rec = state["pools"].get(c.pool, {"blocks": {}, "addresses": {}})
        assert rec["addresses"] == {}, (name, rec, c.ctx())
        assert state["pending"] == [], (name, state["pending"], c.ctx())
        assert len(rec["blocks"]) <= 1, f"{name} keeps {sorted(rec['blocks'])}: more than one spare [{c.ctx()}]"
    return c.reader.blocks(c.pool)


def test_four_uts_nodes_fifty_concurrent_adds_then_churn_with_an_etcd_member_killed(make_cluster: Any) -> None:
    """4 nodes x 50 ADDs (4 at a time per node, all nodes at once) on one /22, then MP_CHURN_OPS random DEL/ADD in
    batches of 8 concurrent calls with the invariants checked after each batch; an etcd member (the leader) is
    SIGKILLed a third of the way and restarted at two thirds: no ADD fails, no address twice; after all DELs
    nothing is held and the store keeps only each node's spare."""
    seed = _seed()
    rng = random.Random(seed)
    c: Cluster = make_cluster("10.80.0.0/22", seed)
    calls = [(n, "ADD", c.cid(n)) for k in range(50) for n in c.nodes]
    c.run(calls)
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
        _churn(c, rng)
    finally:
        stop.set()
        watcher.join()
    if failures:
        raise failures[0]
    assert checks[0] > 0

    c.run([(n, "DEL", cid) for n in c.nodes for cid in c.mine(n)])
    left = _all_released(c)
    records = c.records()
    assert sorted(left) == sorted(b for r in records.values() for b in r["pools"].get(c.pool, {"blocks": {}})["blocks"])


def _churn(c: Cluster, rng: random.Random) -> None:
    """MP_CHURN_OPS random DEL/ADD in batches of 8 concurrent calls, the leader SIGKILLed at 1/3, back at 2/3."""
    killed = -1
    done = 0
    while done < OPS:
        if killed < 0 and done >= OPS // 3:
            killed = c.etcd.leader()
            c.etcd.kill(killed)
        if killed >= 0 and done >= 2 * OPS // 3:
            c.etcd.restart(killed)
            killed = -2
        batch: list[tuple[UtsNode, str, str]] = []
        taken: set[tuple[str, str]] = set()
        for _ in range(min(8, OPS - done)):
            node = rng.choice(c.nodes)
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
    assert killed == -2, "the etcd member was never killed and restarted"


def test_whole_store_down_owned_blocks_serve_claims_fail_11_dels_replayed(make_cluster: Any) -> None:
    """/29 blocks: each node holds 10 pods (2 blocks); every etcd member killed; the DELs succeed and journal the
    emptied block; ADDs continue from the spare until it is full, then code 11 naming the pool and the store; the
    store back, a DEL replays the journal: the store then holds no claim of a released block."""
    seed = _seed()
    c: Cluster = make_cluster("10.81.0.0/24", seed, blockSize=29)
    c.run([(n, "ADD", c.cid(n)) for k in range(10) for n in c.nodes])
    records = c.check()
    before = {name: set(r["pools"][c.pool]["blocks"]) for name, r in records.items()}
    assert all(len(b) >= 2 for b in before.values()), (before, c.ctx())

    for i in range(c.etcd.size):
        c.etcd.kill(i)
    c.run([(n, "DEL", cid) for n in c.nodes for cid in c.mine(n)])
    records = c.check(store=False)
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
    records = c.check(store=False)
    for name, err in errors.items():
        rec = records[name]["pools"][c.pool]
        assert len(rec["addresses"]) >= 6, (name, rec, c.ctx())  # served from the owned spare, no store
        assert err["code"] == 11, (name, err)
        assert f"pool {c.pool} needs a new block" in err["msg"] and "unreachable" in err["msg"], err
        assert "etcd at" in err["msg"], err

    c.etcd.restart(*range(c.etcd.size))
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
    c.run([(n, "DEL", cid) for n in c.nodes for cid in c.mine(n)])
    _all_released(c)


def test_sigkill_of_the_plugin_at_random_moments_then_del_leaves_nothing_held(make_cluster: Any) -> None:
    """Each node runs a seeded ADD/DEL sequence; 40 % of the calls are SIGKILLed after a random 0-150 ms and the
    container is then DELeted again (a runtime's retry), which must succeed. After each step the node's record
    holds exactly the addresses of its completed ADDs; at the end, after every DEL, no address is held anywhere
    and no journal is left.

    What a SIGKILL can leave that only a later read (or the reconciler) frees: a block the store gives the node
    that its record does not know (killed between the claim and the record). The test asserts that such blocks
    belong only to nodes that had an ADD killed, are the node's own in the store, and hold no recorded address:
    decision 0010 has the node `adopt` them at its next read of the pool's blocks."""
    seed = _seed()
    c: Cluster = make_cluster("10.82.0.0/24", seed, blockSize=29)
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
    c.run([(n, "DEL", cid) for n in c.nodes for cid in c.mine(n)])
    left = _all_released(c)
    records = c.records()
    print(f"SIGKILLs landed: {landed}; store blocks {sorted(left.items())} [{c.ctx()}]")
    for name, state in records.items():
        recorded = set(state["pools"].get(c.pool, {"blocks": {}})["blocks"])
        orphans = {b for b, o in left.items() if o["node"] == name} - recorded
        assert not orphans or killed_adds[name] > 0, (name, orphans, c.ctx())
    assert {o["node"] for o in left.values()} <= {n.name for n in c.nodes}, (left, c.ctx())


def test_sigkill_during_block_claims_leaves_blocks_the_node_adopts_and_gives_back(make_cluster: Any) -> None:
    """blockSize 32 on a /26: every ADD claims a block in the store, so a SIGKILL at a random moment (0-300 ms)
    often lands between the claim and the record. Each node then DELs the container again; the store may now
    give the node blocks its record does not know (nobody allocates from them); one such block per node is also
    claimed directly in the store, so the case is there in every run. Three completed ADDs per node
    make it read the pool's blocks (its own are full): it adopts them; after every DEL the store holds exactly
    the blocks the records hold, at most one spare per node: nothing is held by nobody, without a reconciler."""
    seed = _seed()
    c: Cluster = make_cluster("10.83.0.0/26", seed, blockSize=32)
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
        key = next(k for k in (f"10.83.0.{i}/32" for i in range(62, 1, -1)) if k not in taken)
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
    c.run([(n, "DEL", cid) for n in c.nodes for cid in c.mine(n)])
    left = _all_released(c)
    records = c.records()
    for name, state in records.items():
        mine = {b for b, o in left.items() if o["node"] == name}
        assert mine == set(state["pools"].get(c.pool, {"blocks": {}})["blocks"]), (name, mine, c.ctx())
    print(f"blocks orphaned by SIGKILL, then adopted: {orphaned} [{c.ctx()}]")
