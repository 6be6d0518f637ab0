"""Cluster-wide IPAM groundwork: the pure block allocator (properties) and this node's local record (real files).

The property tests simulate several nodes sharing one pool through an in-memory "store"
(dicts of blocks and single claims) and check the invariants of decision 0010: no
address is handed out twice, every address is usable (inside the range, outside
`exclude`, not network/broadcast/gateway/.0), blocks are aligned and disjoint, a node
asks for a new block only when its blocks are full, and requested addresses follow the
claim-then-check rule in every interleaving with a racing block claim.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import multiprocessing
import os
import signal
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from multiplane.errors import IOFailure
from multiplane.ipam.cluster import blocks as bl
from multiplane.ipam.cluster.local import LocalState

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BASE = int(ipaddress.IPv4Address("10.20.0.0"))


def last_of(block: bl.Block) -> int:
    return block[1] + (1 << (32 - block[2])) - 1


@st.composite
def ranges(draw) -> tuple[bl.Range, int]:
    """An IPv4 range of 10.20.x (prefix /22../31) with bounds, excludes and maybe a gateway; and a block prefix."""
    prefix = draw(st.integers(22, 31))
    size = 1 << (32 - prefix)
    network = BASE + draw(st.integers(0, (1 << 10) // size - 1)) * size if prefix >= 22 else BASE
    start = network + draw(st.integers(0, size // 2))
    end = max(start, network + size - 1 - draw(st.integers(0, size // 2)))
    excludes = []
    for _ in range(draw(st.integers(0, 3))):
        ex_prefix = draw(st.integers(prefix, 32))
        ex_size = 1 << (32 - ex_prefix)
        ex = network + draw(st.integers(0, size // ex_size - 1)) * ex_size
        excludes.append(f"{ipaddress.IPv4Address(ex)}/{ex_prefix}")
    gateway = None
    if draw(st.booleans()):
        gateway = str(ipaddress.IPv4Address(network + draw(st.integers(0, size - 1))))
    rng = bl.Range.make(
        f"{ipaddress.IPv4Address(network)}/{prefix}",
        str(ipaddress.IPv4Address(start)),
        str(ipaddress.IPv4Address(end)),
        excludes,
        gateway,
    )
    return rng, draw(st.integers(prefix, 32))


def brute_usable(rng: bl.Range) -> set[int]:
    """The usable addresses, computed from the definition (not from next_usable)."""
    out = set()
    host_bits = 32 - rng.prefix
    for v in range(rng.first, rng.last + 1):
        if host_bits >= 2 and v in (rng.network, rng.network + (1 << host_bits) - 1):
            continue
        if any(lo <= v <= hi for lo, hi in rng.excludes) or v == rng.gateway or v & 0xFF == 0:
            continue
        out.add(v)
    return out


# ---- the pure allocator --------------------------------------------------------------------


@FAST
@given(ranges())
def test_blocks_are_aligned_disjoint_and_cover_every_usable_address(case):
    rng, prefix = case
    found = list(bl.blocks(rng, prefix))
    size = 1 << (32 - prefix)
    usable = brute_usable(rng)
    assert rng.size() == len(usable)
    covered = set()
    for block in found:
        assert block[1] % size == 0 and block[2] == prefix
        assert bl.parse_block(bl.block_str(block)) == block
        inside = {v for v in usable if block[1] <= v <= last_of(block)}
        assert inside, "a block without a usable address is never offered"
        assert not covered & inside
        covered |= inside
    assert covered == usable
    assert found == sorted(found)


class Sim:
    """Nodes sharing a pool through dicts that play the store (claims are compare-and-set)."""

    def __init__(self, rng: bl.Range, prefix: int) -> None:
        self.rng, self.prefix = rng, prefix
        self.store_blocks: dict[bl.Block, str] = {}
        self.store_ips: dict[int, str] = {}
        self.owned: dict[str, set[bl.Block]] = {}
        self.used: dict[str, set[int]] = {}
        self.last: dict[str, int | None] = {}
        self.foreign: dict[str, set[int]] = {}

    def allocate(self, node: str) -> int | None:
        owned = self.owned.setdefault(node, set())
        used = self.used.setdefault(node, set())
        taken = used | self.foreign.setdefault(node, set())
        value = bl.next_address(self.rng, owned, taken, self.last.get(node))
        if value is None:
            # only now a block claim: every owned block must be full
            for block in owned:
                assert not [v for v in brute_usable(self.rng) if block[1] <= v <= last_of(block) and v not in taken]
            for block in bl.free_blocks(self.rng, self.prefix, node, set(self.store_blocks)):
                if block in self.store_blocks:  # lost the race
                    continue
                self.store_blocks[block] = node  # claim, then read the single claims
                owned.add(block)
                self.foreign[node] |= {ip for ip in self.store_ips if block[1] <= ip <= last_of(block)}
                break
            else:
                return None
            return self.allocate(node)
        used.add(value)
        self.last[node] = value
        return value

    def request(self, node: str, value: int) -> bool:
        verdict, block, _owner = bl.admit_request(self.rng, value, node, self.store_blocks)
        if verdict == "local":
            taken = self.used[node] | self.foreign[node]
            if value in taken:
                return False
            self.used[node].add(value)
            return True
        if verdict != "claim" or value in self.store_ips:
            return False
        self.store_ips[value] = node  # claim, then read the blocks
        if bl.admit_request(self.rng, value, node, self.store_blocks)[0] != "claim":
            del self.store_ips[value]
            return False
        return True

    def release_empty(self, node: str) -> None:
        for block in bl.releasable(self.rng, self.owned[node], self.used[node]):
            self.owned[node].discard(block)
            del self.store_blocks[block]

    def held(self) -> list[int]:
        out = list(self.store_ips)
        for used in self.used.values():
            out += list(used)
        return out


@FAST
@given(ranges(), st.lists(st.tuples(st.integers(0, 3), st.integers(0, 9), st.integers(0, 1 << 12)), max_size=120))
def test_nodes_never_hand_out_an_address_twice(case, ops):
    rng, prefix = case
    sim = Sim(rng, prefix)
    usable = brute_usable(rng)
    nodes = [f"mp-node-{i}" for i in range(4)]
    for node in nodes:
        sim.owned[node], sim.used[node], sim.foreign[node] = set(), set(), set()
    for who, kind, arg in ops:
        node = nodes[who]
        if kind <= 5:
            value = sim.allocate(node)
            if value is None:
                # a node fails only when every block is held and its own are full
                assert all(b in sim.store_blocks for b in bl.blocks(rng, prefix))
        elif kind == 6:
            sim.request(node, rng.first + arg % max(1, rng.last - rng.first + 1))
        elif kind == 7 and sim.used[node]:
            sim.used[node].discard(sorted(sim.used[node])[arg % len(sim.used[node])])
        elif kind == 8:
            sim.release_empty(node)
        held = sim.held()
        assert len(held) == len(set(held)), "an address is held twice"
        assert set(held) <= usable
        for n in nodes:
            for v in sim.used[n]:
                mine = [b for b in sim.owned[n] if b[1] <= v <= last_of(b)]
                assert mine or v in sim.store_ips, "a block address is only handed out by its owner"
        owned = [b for n in nodes for b in sim.owned[n]]
        assert len(owned) == len(set(owned)) and sorted(owned) == sorted(sim.store_blocks)


@FAST
@given(ranges(), st.lists(st.integers(0, 1 << 12), max_size=20))
def test_round_robin_does_not_reuse_the_last_address_while_another_is_free(case, frees):
    rng, prefix = case
    owned = list(bl.blocks(rng, prefix))[:3]
    taken: set[int] = set()
    last = None
    for _ in range(40):
        value = bl.next_address(rng, owned, taken, last)
        if value is None:
            break
        assert value not in taken and rng.usable(value)
        taken.add(value)
        if frees and len(taken) > 1:
            freed = sorted(taken)[frees.pop() % len(taken)]
            taken.discard(freed)
            again = bl.next_address(rng, owned, taken, value)
            free_now = [v for b in owned for v in range(b[1], last_of(b) + 1) if rng.usable(v) and v not in taken]
            assert again != value or free_now == [value]
        last = value


@FAST
@given(ranges(), st.sampled_from(["mp-node-a", "mp-node-b", "mp-node-c"]), st.integers(0, 31))
def test_free_blocks_skip_every_claimed_block_of_any_size(case, node, other_prefix):
    rng, prefix = case
    all_blocks = list(bl.blocks(rng, prefix))
    claimed = set(all_blocks[::3])
    if all_blocks:
        claimed.add(bl.block_of(rng, all_blocks[-1][1], max(rng.prefix, min(32, other_prefix))))
    free = list(bl.free_blocks(rng, prefix, node, claimed))
    assert free == list(bl.free_blocks(rng, prefix, node, claimed)), "deterministic"
    assert len(free) == len(set(free))
    for block in free:
        assert block not in claimed and not bl.overlapping(block, claimed)
    expected = [b for b in all_blocks if b not in claimed and not bl.overlapping(b, claimed)]
    assert sorted(free) == expected


def test_node_offsets_spread_racing_nodes():
    rng = bl.Range.make("10.21.0.0/16")
    firsts = {next(bl.free_blocks(rng, 28, f"mp-node-{i}", set())) for i in range(8)}
    assert len(firsts) >= 6


def test_a_full_slash_16_is_walked_quickly():
    rng = bl.Range.make("10.24.0.0/16")
    claimed = set(bl.blocks(rng, 28))
    started = time.monotonic()
    assert list(bl.free_blocks(rng, 28, "mp-node-a", claimed)) == []
    assert time.monotonic() - started < 2.0
    claimed.discard((4, int(ipaddress.IPv4Address("10.24.7.16")), 28))
    assert list(bl.free_blocks(rng, 28, "mp-node-a", claimed)) == [(4, int(ipaddress.IPv4Address("10.24.7.16")), 28)]


def test_ipv6_slash_64_is_lazy():
    rng = bl.Range.make("fd00:21::/64")
    first = next(bl.free_blocks(rng, 120, "mp-node-a", set()))
    assert first[2] == 120 and rng.usable(first[1] + 1)
    assert next(bl.blocks(rng, 120)) == (6, int(ipaddress.IPv6Address("fd00:21::")), 120)


@FAST
@given(ranges(), st.data())
def test_releasable_blocks_are_empty_and_one_spare_is_kept(case, data):
    rng, prefix = case
    owned = list(bl.blocks(rng, prefix))[:4]
    usable = sorted(v for b in owned for v in range(b[1], last_of(b) + 1) if rng.usable(v))
    used = set(data.draw(st.lists(st.sampled_from(usable), max_size=8))) if usable else set()
    keep_below = data.draw(st.sampled_from([1, bl.low_mark(prefix, rng.version)]))
    out = bl.releasable(rng, owned, used, keep_below)
    for block in out:
        assert not [v for v in used if block[1] <= v <= last_of(block)]
    kept = [b for b in owned if b not in out]
    empty = [b for b in owned if not [v for v in used if b[1] <= v <= last_of(b)]]
    free_kept = sum(1 for b in kept for v in range(b[1], last_of(b) + 1) if rng.usable(v) and v not in used)
    busy_free = sum(
        1 for b in owned if b not in empty for v in range(b[1], last_of(b) + 1) if rng.usable(v) and v not in used
    )
    if empty:
        # at most one empty block stays, and it stays exactly when the busy blocks are short of free addresses
        assert len([b for b in kept if b in empty]) == (1 if busy_free < keep_below else 0)
    assert free_kept >= min(keep_below, busy_free + (1 if empty else 0)) or not owned


@FAST
@given(ranges(), st.data())
def test_free_count_counts_usable_untaken_addresses_up_to_enough(case, data):
    rng, prefix = case
    owned = list(bl.blocks(rng, prefix))[:3]
    usable = sorted(v for b in owned for v in range(b[1], last_of(b) + 1) if rng.usable(v))
    taken = set(data.draw(st.lists(st.sampled_from(usable), max_size=10))) if usable else set()
    enough = data.draw(st.integers(1, 40))
    assert bl.free_count(rng, owned, taken, enough) == min(enough, len([v for v in usable if v not in taken]))


def test_requested_address_rule_in_every_interleaving_with_a_block_claim():
    """Node A claims block B then reads the single claims; node B claims address a in B then reads the blocks.

    In every interleaving of these four steps, a is never both handed out by A and kept by B.
    """
    rng = bl.Range.make("10.22.0.0/24")
    block = bl.block_of(rng, int(ipaddress.IPv4Address("10.22.0.20")), 28)
    a = int(ipaddress.IPv4Address("10.22.0.20"))
    steps_a, steps_b = ["claim_block", "read_ips"], ["claim_ip", "read_blocks"]
    for order in set(itertools.permutations(steps_a + steps_b)):
        if order.index("claim_block") > order.index("read_ips") or order.index("claim_ip") > order.index("read_blocks"):
            continue
        store_blocks: dict[bl.Block, str] = {}
        store_ips: dict[int, str] = {}
        foreign: set[int] = set()
        b_keeps = None
        for step in order:
            if step == "claim_block":
                store_blocks[block] = "mp-node-a"
            elif step == "read_ips":
                foreign = {ip for ip in store_ips if block[1] <= ip <= last_of(block)}
            elif step == "claim_ip":
                verdict = bl.admit_request(rng, a, "mp-node-b", store_blocks)[0]
                if verdict == "claim":
                    store_ips[a] = "mp-node-b"
                else:
                    b_keeps = False
            elif b_keeps is None and a in store_ips:
                b_keeps = bl.admit_request(rng, a, "mp-node-b", store_blocks)[0] == "claim"
                if not b_keeps:
                    del store_ips[a]
        a_may_use = a not in foreign
        assert not (a_may_use and b_keeps), order


def test_admit_request_verdicts():
    rng = bl.Range.make("10.23.0.0/24", excludes=["10.23.0.64/26"], gateway="10.23.0.1")
    mine = (4, int(ipaddress.IPv4Address("10.23.0.16")), 28)
    theirs = (4, int(ipaddress.IPv4Address("10.23.0.32")), 28)
    holders = {mine: "mp-node-a", theirs: "mp-node-b"}

    def verdict(ip: str) -> str:
        return bl.admit_request(rng, int(ipaddress.IPv4Address(ip)), "mp-node-a", holders)[0]

    assert verdict("10.23.0.17") == "local"
    assert verdict("10.23.0.33") == "refused"
    assert verdict("10.23.0.50") == "claim"
    assert verdict("10.23.0.70") == "unusable"  # excluded
    assert verdict("10.23.0.1") == "unusable"  # gateway
    assert verdict("10.23.0.255") == "unusable"  # broadcast


# ---- the local record (real files) ---------------------------------------------------------

RNG = bl.Range.make("10.30.0.0/24")
B0 = (4, int(ipaddress.IPv4Address("10.30.0.0")), 28)
B1 = (4, int(ipaddress.IPv4Address("10.30.0.16")), 28)
POOL = "10.30.0.0-24"


def test_allocate_release_round_trip_and_file_format(tmp_path):
    state = LocalState(str(tmp_path))
    with state.locked() as rec:
        assert rec.allocate(POOL, RNG, "mp-c1", "net1", "ns/mp-pod") is None  # no block yet
        rec.add_block(POOL, B0, foreign=["10.30.0.2"])
        assert rec.allocate(POOL, RNG, "mp-c1", "net1", "ns/mp-pod") == "10.30.0.1"
        assert rec.allocate(POOL, RNG, "mp-c2", "net1") == "10.30.0.3"  # .2 is claimed singly elsewhere
        rec.record_single(POOL, "10.30.0.200", "mp-c2", "net2")
    raw = json.loads((tmp_path / "state.json").read_text())
    assert raw["pools"][POOL]["blocks"] == {"10.30.0.0/28": {"foreign": ["10.30.0.2"]}}
    assert raw["pools"][POOL]["addresses"]["10.30.0.1"] == {
        "container": "mp-c1",
        "ifname": "net1",
        "pod": "ns/mp-pod",
        "single": False,
    }
    assert oct(os.stat(tmp_path / "state.json").st_mode & 0o777) == "0o600"
    with state.locked() as rec:
        assert rec.held_by("mp-c2", "net1") == [(POOL, "10.30.0.3")]
        assert rec.release("mp-c2", "net2") == [(POOL, "10.30.0.200")]
        assert rec.pending == [
            {"op": "release_ip", "pool": POOL, "ip": "10.30.0.200", "container": "mp-c2", "ifname": "net2"}
        ]
        assert rec.release("mp-c2", "net1") == [(POOL, "10.30.0.3")]
        # round-robin: .3 was last, so .4 comes before .3 again
        assert rec.allocate(POOL, RNG, "mp-c3", "net1") == "10.30.0.4"
    assert state.pending()[0]["ip"] == "10.30.0.200"
    with state.locked() as rec:
        assert rec.confirm(rec.pending[0]) and not rec.confirm({"op": "x"})
    assert state.pending() == []


def test_requested_address_inside_an_owned_block(tmp_path):
    with LocalState(str(tmp_path)).locked() as rec:
        rec.add_block(POOL, B1)
        ip = int(ipaddress.IPv4Address("10.30.0.20"))
        assert rec.allocate(POOL, RNG, "mp-c1", "net1", requested=ip) == "10.30.0.20"
        assert rec.allocate(POOL, RNG, "mp-c2", "net1", requested=ip) is None  # taken
        assert rec.allocate(POOL, RNG, "mp-c2", "net1", requested=int(ipaddress.IPv4Address("10.30.0.40"))) is None


def test_empty_blocks_are_journalled_and_not_owned_again_until_confirmed(tmp_path):
    state = LocalState(str(tmp_path))
    with state.locked() as rec:
        rec.add_block(POOL, B0)
        rec.add_block(POOL, B1)
        rec.allocate(POOL, RNG, "mp-c1", "net1")
        assert rec.retire_empty_blocks(POOL, RNG) == ["10.30.0.16/28"]  # B0 has a free address: no spare needed
        with pytest.raises(ValueError, match="release pending"):
            rec.add_block(POOL, B1)
        assert rec.adopt(POOL, {"10.30.0.16/28": {"node": "mp-n"}, "10.30.0.32/28": {"node": "mp-n"}}, "mp-n") == [
            "10.30.0.32/28"
        ]
        assert rec.pending_blocks(POOL) == {B1}
        rec.release("mp-c1", "net1")
        # both owned blocks are empty now: the lowest stays as the spare, the other goes
        assert rec.retire_empty_blocks(POOL, RNG) == ["10.30.0.32/28"]
        assert list(rec.pools[POOL].blocks) == ["10.30.0.0/28"]
    with state.locked() as rec:
        for entry in list(rec.pending):
            rec.confirm(entry)
        rec.add_block(POOL, B1)
        rec.set_foreign(POOL, ["10.30.0.17", "10.30.0.99"])
        assert rec.pools[POOL].blocks["10.30.0.16/28"] == {"10.30.0.17"}
        assert rec.attachments() == set()


def test_ownership_follows_a_fresh_read_of_the_store(tmp_path):
    b2 = "10.30.0.32/28"
    with LocalState(str(tmp_path)).locked() as rec:
        rec.add_block(POOL, B0)
        rec.add_block(POOL, B1)
        assert rec.allocate(POOL, RNG, "mp-c1", "net1") == "10.30.0.1"
        store = {"10.30.0.0/28": {"node": "mp-other"}, b2: {"node": "mp-n"}}
        assert rec.check_ownership(POOL, store, "mp-n") == {
            "adopted": [b2],
            "lost": ["10.30.0.0/28"],
            "missing": ["10.30.0.16/28"],
        }
        assert list(rec.pools[POOL].blocks) == [b2]
        assert rec.held_by("mp-c1", "net1") == [(POOL, "10.30.0.1")]  # kept for DEL
        assert rec.allocate(POOL, RNG, "mp-c2", "net1") == "10.30.0.32"


def test_a_failed_transaction_writes_nothing(tmp_path):
    state = LocalState(str(tmp_path))
    with pytest.raises(RuntimeError), state.locked() as rec:
        rec.add_block(POOL, B0)
        raise RuntimeError("mp-boom")
    assert not (tmp_path / "state.json").exists()


def test_lock_link_and_garbage_are_refused(tmp_path):
    (tmp_path / "elsewhere").write_text("")
    os.symlink(tmp_path / "elsewhere", tmp_path / "lock")
    with pytest.raises(IOFailure, match="symbolic link"), LocalState(str(tmp_path)).locked():
        pass
    os.unlink(tmp_path / "lock")
    (tmp_path / "state.json").write_text("{half")
    with pytest.raises(IOFailure, match="not valid JSON"), LocalState(str(tmp_path)).locked():
        pass


def _worker(data_dir: str, name: str, count: int, out) -> None:
    got = []
    state = LocalState(data_dir)
    for i in range(count):
        with state.locked() as rec:
            got.append(rec.allocate(POOL, RNG, f"{name}-{i}", "net1"))
    out.put(got)


def test_parallel_processes_never_get_the_same_address(tmp_path):
    with LocalState(str(tmp_path)).locked() as rec:
        rec.add_block(POOL, (4, int(ipaddress.IPv4Address("10.30.0.0")), 25))
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), f"mp-p{i}", 25, out)) for i in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    got = [ip for r in results for ip in r]
    assert None not in got
    assert len(got) == len(set(got)) == 100


def _churn(data_dir: str) -> None:
    state = LocalState(data_dir)
    i = 0
    while True:
        with state.locked() as rec:
            if rec.allocate(POOL, RNG, f"mp-c{i}", "net1") is None:
                rec.release(f"mp-c{i - 10}", "net1")
        i += 1


def test_killing_a_writer_midway_leaves_a_readable_record(tmp_path):
    with LocalState(str(tmp_path)).locked() as rec:
        rec.add_block(POOL, B0)
    ctx = multiprocessing.get_context("fork")
    for delay in (0.05, 0.13, 0.21):
        proc = ctx.Process(target=_churn, args=(str(tmp_path),))
        proc.start()
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        with LocalState(str(tmp_path)).locked() as rec:
            addresses = rec.pools[POOL].addresses
            assert set(addresses) <= {f"10.30.0.{i}" for i in range(1, 16)}
        assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_adopt_never_takes_back_a_block_that_overlaps_another_nodes(tmp_path):
    """A crash between a claim and the list after it, with configs that disagree on blockSize: the store says the
    /28 is ours, but another node holds a /29 inside it. It is journalled for release, not owned again."""
    state = LocalState(str(tmp_path))
    listed = {
        "10.30.0.32/28": {"node": "mp-n"},
        "10.30.0.40/29": {"node": "mp-other"},
        "10.30.0.48/28": {"node": "mp-n"},
    }
    with state.locked() as rec:
        assert rec.adopt(POOL, listed, "mp-n") == ["10.30.0.48/28"]
        assert "10.30.0.32/28" not in rec.pools[POOL].blocks
        assert {e["block"] for e in rec.pending if e["op"] == "release_block"} == {"10.30.0.32/28"}


def test_one_journal_sender_at_a_time_and_a_late_one_gives_up_after_its_wait(tmp_path):
    """LocalState.replaying: while one call sends the journal, another waits up to `wait` and then leaves it to
    the first (yields False); it gets the lock as soon as the first is done. Held across processes too (flock)."""
    state = LocalState(str(tmp_path))
    with state.replaying(wait=0) as first:
        assert first is True
        started = time.monotonic()
        with state.replaying(wait=0.3) as second:
            assert second is False
        assert 0.3 <= time.monotonic() - started < 2
        script = (
            "import sys; from multiplane.ipam.cluster.local import LocalState\n"
            "with LocalState(sys.argv[1]).replaying(wait=0) as mine: print(mine)\n"
        )
        import subprocess
        import sys

        other = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True
        )
        assert other.stdout.strip() == "False"
    with state.replaying(wait=0) as again:
        assert again is True


def test_the_daemons_rounds_create_no_record_where_there_is_none(tmp_path):
    """replay_journal and claim_ahead (the node daemon's rounds) leave a dataDir that does not exist alone."""
    from multiplane.ipam.cluster.config import load
    from multiplane.plugins.cluster_ipam import claim_ahead, replay_journal

    data_dir = tmp_path / "mp-gone"
    ipam = {"type": "multiplane-cluster-ipam", "range": "10.31.0.0/24", "nodeName": "mp-n", "dataDir": str(data_dir)}
    conf = load(
        {"cniVersion": "1.1.0", "name": "mp-net", "ipam": {**ipam, "etcd": {"endpoints": ["http://127.0.0.1:9"]}}},
        "mp-net",
        "1.1.0",
    )
    assert replay_journal(conf) == [] and claim_ahead(conf) == []
    assert not data_dir.exists()
