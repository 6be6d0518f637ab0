"""The etcd store of cluster-wide IPAM (multiplane.ipam.cluster.etcd) against a real three-member etcd cluster.

The cluster (tests/etcd_cluster.py: Debian's etcd 3.4 on loopback, no root needed) is started
once for the module; the `etcd` fixture brings every member back up before each test, since
some tests kill or pause members. Each test works in a pool of its own. "Nodes" are stores
with different node names, in threads of this process or in separate processes.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from multiplane.errors import InvalidConfig
from multiplane.ipam.cluster.etcd import EtcdStore
from multiplane.ipam.cluster.store import StoreError, StoreUnavailable
from tests.etcd_cluster import EtcdCluster, EtcdError

SRC = Path(__file__).resolve().parents[2] / "src"
MakeStore = Callable[..., EtcdStore]


@pytest.fixture(scope="module")
def cluster() -> Iterator[EtcdCluster]:
    try:
        c = EtcdCluster(size=3).start()
    except EtcdError as exc:
        pytest.fail(str(exc))
    base = c.base
    try:
        yield c
    finally:
        pids = [m.proc.pid for m in c.members if m.proc is not None]
        c.stop()
        # Our own world only: the members we started are gone, and so is their directory.
        assert [pid for pid in pids if os.path.exists(f"/proc/{pid}")] == []
        assert not os.path.exists(base)


@pytest.fixture
def etcd(cluster: EtcdCluster) -> EtcdCluster:
    """The module's cluster with every member running and healthy."""
    for i in range(cluster.size):
        cluster.resume(i)
    down = [i for i, m in enumerate(cluster.members) if m.proc is None]
    if down:
        cluster.restart(*down)
    cluster.wait_healthy(timeout=20)
    return cluster


@pytest.fixture
def pool() -> str:
    return f"mp-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_store(etcd: EtcdCluster) -> Iterator[MakeStore]:
    """Stores on the cluster (every endpoint unless given), closed after the test."""
    made: list[EtcdStore] = []

    def make(endpoints: list[str] | None = None, **kwargs: object) -> EtcdStore:
        store = EtcdStore(list(endpoints or etcd.endpoints), **kwargs)  # type: ignore[arg-type]
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def owner(node: str) -> dict[str, str]:
    return {"node": node}


def holder(node: str, container: str, ifname: str = "eth0") -> dict[str, str]:
    return {"node": node, "container": container, "ifname": ifname, "pod": f"default/{container}"}


# ---- claim and release ---------------------------------------------------------------------------


def test_block_claim_is_first_come(make_store: MakeStore, pool: str) -> None:
    """The first node gets the block; the second is answered the first's record and the store keeps it."""
    a, b = make_store(), make_store()
    assert a.claim_block(pool, "10.9.0.0/28", {"node": "n1", "since": 1}) == {"node": "n1", "since": 1}
    assert b.claim_block(pool, "10.9.0.0/28", owner("n2")) == {"node": "n1", "since": 1}
    assert b.blocks(pool) == {"10.9.0.0/28": {"node": "n1", "since": 1}}
    assert a.blocks(pool + "-other") == {}


def test_block_reclaim_is_idempotent(make_store: MakeStore, pool: str) -> None:
    """A node claiming its own block again (after a crash) gets its stored record back, unchanged."""
    a = make_store()
    a.claim_block(pool, "10.9.1.0/28", {"node": "n1", "since": 1})
    again = make_store().claim_block(pool, "10.9.1.0/28", {"node": "n1", "since": 2})
    assert again == {"node": "n1", "since": 1}
    assert a.blocks(pool) == {"10.9.1.0/28": {"node": "n1", "since": 1}}


def test_block_release_only_by_its_owner(make_store: MakeStore, pool: str) -> None:
    """A non-owner's release is refused and changes nothing; the owner's removes it once; then anyone may claim."""
    a, b = make_store(), make_store()
    a.claim_block(pool, "10.9.2.0/28", owner("n1"))
    assert b.release_block(pool, "10.9.2.0/28", "n2") is False
    assert a.blocks(pool) == {"10.9.2.0/28": owner("n1")}
    assert a.release_block(pool, "10.9.2.0/28", "n1") is True
    assert a.release_block(pool, "10.9.2.0/28", "n1") is False
    assert a.blocks(pool) == {}
    assert b.claim_block(pool, "10.9.2.0/28", owner("n2")) == owner("n2")


def test_ip_claims_belong_to_a_container_interface(make_store: MakeStore, pool: str) -> None:
    """An address is held by container+ifname: the same pair re-claims it, another pair loses, only the pair releases."""
    a, b = make_store(), make_store()
    assert a.claim_ip(pool, "10.9.3.7", holder("n1", "c1")) == holder("n1", "c1")
    assert a.claim_ip(pool, "10.9.3.7", holder("n1", "c1")) == holder("n1", "c1")
    assert b.claim_ip(pool, "10.9.3.7", holder("n2", "c2")) == holder("n1", "c1")
    assert b.claim_ip(pool, "10.9.3.7", holder("n1", "c1", "net1")) == holder("n1", "c1")
    assert b.claim_ip(pool, "fd00:9::7", holder("n2", "c2")) == holder("n2", "c2")
    assert b.release_ip(pool, "10.9.3.7", "c2", "eth0") is False
    assert b.release_ip(pool, "10.9.3.7", "c1", "net1") is False
    assert a.ips(pool) == {"10.9.3.7": holder("n1", "c1"), "fd00:9::7": holder("n2", "c2")}
    assert a.release_ip(pool, "10.9.3.7", "c1", "eth0") is True
    assert a.ips(pool) == {"fd00:9::7": holder("n2", "c2")}
    assert a.blocks(pool) == {}


def test_pools_and_prefixes_do_not_mix(make_store: MakeStore, pool: str) -> None:
    """A pool named like a path, a pool that is another's prefix, and another key prefix are all separate."""
    a = make_store()
    other = make_store(prefix="/mp-other/")
    a.claim_block(pool, "10.9.4.0/28", owner("n1"))
    a.claim_block(pool + "/x", "10.9.4.16/28", owner("n1"))
    a.claim_block(pool + "x", "10.9.4.32/28", owner("n1"))
    a.claim_block(pool, "fd00:9::/124", owner("n1"))
    assert a.blocks(pool) == {"10.9.4.0/28": owner("n1"), "fd00:9::/124": owner("n1")}
    assert a.blocks(pool + "/x") == {"10.9.4.16/28": owner("n1")}
    assert other.blocks(pool) == {}
    assert other.claim_block(pool, "10.9.4.0/28", owner("n2")) == owner("n2")


def test_malformed_record_is_a_store_error(etcd: EtcdCluster, make_store: MakeStore, pool: str) -> None:
    """A key that does not hold a JSON object is reported with its name, not taken as free or as anyone's."""
    key = f"/multiplane/ipam/{pool}/blocks/10.9.5.0-28"
    body = json.dumps({"key": base64.b64encode(key.encode()).decode(), "value": base64.b64encode(b"junk").decode()})
    req = urllib.request.Request(etcd.endpoints[0] + "/v3/kv/put", data=body.encode(), method="POST")
    urllib.request.urlopen(req, timeout=5).close()
    store = make_store()
    with pytest.raises(StoreError, match=key):
        store.blocks(pool)
    with pytest.raises(StoreError, match=key):
        store.claim_block(pool, "10.9.5.0/28", owner("n1"))


def test_write_counting(make_store: MakeStore, pool: str) -> None:
    """`writes` counts each transaction sent (won, lost or refused); reads count nothing."""
    a, b = make_store(), make_store()
    a.claim_block(pool, "10.9.6.0/28", owner("n1"))
    assert a.writes == 1
    a.claim_block(pool, "10.9.6.0/28", owner("n1"))  # idempotent, still a transaction
    b.claim_block(pool, "10.9.6.0/28", owner("n2"))  # lost
    assert (a.writes, b.writes) == (2, 1)
    a.blocks(pool), a.ips(pool)
    assert a.writes == 2
    assert b.release_block(pool, "10.9.6.0/28", "n2") is False  # refused after a read: no transaction
    assert b.writes == 1
    assert a.release_block(pool, "10.9.6.0/28", "n1") is True  # a read, then one transaction
    assert a.writes == 3
    a.claim_ip(pool, "10.9.6.1", holder("n1", "c1"))
    a.release_ip(pool, "10.9.6.1", "c1", "eth0")
    assert a.writes == 5


# ---- races ----------------------------------------------------------------------------------------

BLOCKS = [f"10.10.{i}.0/28" for i in range(24)]


def test_threads_racing_never_both_win(make_store: MakeStore, pool: str) -> None:
    """Four nodes (stores) in four threads claim the same blocks and addresses at once: each has exactly one winner."""
    nodes = ["n1", "n2", "n3", "n4"]
    stores = {n: make_store() for n in nodes}
    ips = [f"10.11.0.{i}" for i in range(1, 25)]
    won: dict[str, list[str]] = {n: [] for n in nodes}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(nodes))

    def race(node: str) -> None:
        k = nodes.index(node) * 6
        try:
            store = stores[node]
            store.blocks(pool)  # connect before the start
            barrier.wait()
            for block in BLOCKS[k:] + BLOCKS[:k]:
                if store.claim_block(pool, block, owner(node))["node"] == node:
                    won[node].append(block)
            for ip in ips[k:] + ips[:k]:
                if store.claim_ip(pool, ip, holder(node, f"c-{node}"))["node"] == node:
                    won[node].append(ip)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread's assertion
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(n,)) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    every = [x for n in nodes for x in won[n]]
    assert sorted(every) == sorted(BLOCKS + ips)  # no claim won twice, none lost by everyone
    seen = stores["n1"]
    assert {b: r["node"] for b, r in seen.blocks(pool).items()} == {b: n for n in nodes for b in won[n] if "/" in b}
    assert {ip: r["node"] for ip, r in seen.ips(pool).items()} == {
        ip: n for n in nodes for ip in won[n] if "/" not in ip
    }
    assert sum(1 for n in nodes if won[n]) > 1, "one node won everything: no contention was tested"


RACER = r"""
import json, sys, time
from multiplane.ipam.cluster.etcd import EtcdStore

endpoints, pool, node, start, blocks = json.loads(sys.argv[1])
store = EtcdStore(endpoints, timeout=10)
store.blocks(pool)  # imports and connections before the start
while time.time() < start:
    time.sleep(0.001)
won = [b for b in blocks if store.claim_block(pool, b, {"node": node})["node"] == node]
print(json.dumps({"won": won, "writes": store.writes}))
"""


def test_processes_racing_never_both_win(etcd: EtcdCluster, make_store: MakeStore, pool: str) -> None:
    """Four node processes claim the same blocks from the same instant: every block has exactly one owner."""
    nodes = ["p1", "p2", "p3", "p4"]
    start = time.time() + 1.5
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{SRC}:{sysconfig.get_paths()['purelib']}"}
    procs = {}
    for k, node in enumerate(nodes):
        order = BLOCKS[k * 6 :] + BLOCKS[: k * 6]
        arg = json.dumps([etcd.endpoints[k % 3 :] + etcd.endpoints[: k % 3], pool, node, start, order])
        procs[node] = subprocess.Popen(
            [sys.executable, "-S", "-c", RACER, arg], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    results = {}
    for node, proc in procs.items():
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err.decode()
        results[node] = json.loads(out)
    every = [b for r in results.values() for b in r["won"]]
    assert sorted(every) == sorted(BLOCKS)
    assert all(r["writes"] == len(BLOCKS) for r in results.values())  # one transaction per claim, no retries
    stored = make_store().blocks(pool)
    assert {b: rec["node"] for b, rec in stored.items()} == {b: n for n, r in results.items() for b in r["won"]}


# ---- failures -------------------------------------------------------------------------------------


def test_leader_killed_midway_claims_continue(etcd: EtcdCluster, make_store: MakeStore, pool: str) -> None:
    """The member a store talks to, which is also the leader, is killed during a run of claims: none fails."""
    lead = etcd.leader()
    order = [lead] + [i for i in range(etcd.size) if i != lead]
    store = make_store([etcd.endpoints[i] for i in order])
    results: list[dict[str, object]] = []
    errors: list[BaseException] = []

    def work() -> None:
        for n in range(50):
            try:
                results.append(store.claim_block(pool, f"10.12.{n}.0/28", owner("n1")))
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread's assertion
                errors.append(exc)
            time.sleep(0.01)

    t = threading.Thread(target=work)
    t.start()
    deadline = time.monotonic() + 10
    while len(results) < 10 and not errors and time.monotonic() < deadline:
        time.sleep(0.01)
    etcd.kill(lead)
    t.join(30)
    assert errors == []
    assert results == [owner("n1")] * 50
    assert len(make_store().blocks(pool)) == 50

    # The member comes back with what happened while it was down, and serves alone.
    etcd.restart(lead)
    assert len(make_store([etcd.endpoints[lead]]).blocks(pool)) == 50


def test_hung_member_costs_one_attempt(etcd: EtcdCluster, make_store: MakeStore, pool: str) -> None:
    """A member that accepts connections but never answers (SIGSTOP) costs one attempt, not the whole timeout."""
    hung = (etcd.leader() + 1) % etcd.size  # not the leader: no election in the way
    order = [hung] + [i for i in range(etcd.size) if i != hung]
    store = make_store([etcd.endpoints[i] for i in order], timeout=6.0)
    etcd.pause(hung)
    try:
        t0 = time.monotonic()
        assert store.claim_block(pool, "10.13.0.0/28", owner("n1")) == owner("n1")
        elapsed = time.monotonic() - t0
    finally:
        etcd.resume(hung)
    assert 1.5 <= elapsed < 3.5  # one attempt of max(1 s, 6 s / 3 endpoints), then the next member
    assert store.endpoints[0] == etcd.endpoints[hung]


def test_all_members_down_fails_fast_then_recovers(etcd: EtcdCluster, make_store: MakeStore, pool: str) -> None:
    """With every member down a claim is StoreUnavailable (11) within a second, naming each endpoint; then it works again."""
    store = make_store(timeout=5.0)
    store.claim_block(pool, "10.14.0.0/28", owner("n1"))
    for i in range(etcd.size):
        etcd.kill(i)
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        store.claim_block(pool, "10.14.1.0/28", owner("n1"))
    assert time.monotonic() - t0 < 1.0
    assert info.value.code == 11
    text = str(info.value)
    assert text.startswith("etcd is unavailable: cannot claim ")
    assert all(text.count(url) == 2 for url in etcd.endpoints), text  # in the list, and with its reason
    assert "Connection refused" in text
    with pytest.raises(StoreUnavailable):
        store.blocks(pool)

    etcd.restart(*range(etcd.size))
    assert store.claim_block(pool, "10.14.1.0/28", owner("n1")) == owner("n1")
    assert set(store.blocks(pool)) == {"10.14.0.0/28", "10.14.1.0/28"}


def test_quorum_lost_is_unavailable_within_the_timeout(etcd: EtcdCluster, make_store: MakeStore, pool: str) -> None:
    """One member left of three answers but cannot commit: a claim fails as StoreUnavailable within `timeout`, never as taken."""
    keep = etcd.leader()
    for i in range(etcd.size):
        if i != keep:
            etcd.kill(i)
    store = make_store([etcd.endpoints[keep]], timeout=2.0)
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable):
        store.claim_block(pool, "10.15.0.0/28", owner("n1"))
    assert time.monotonic() - t0 < 4.0
    etcd.restart(*[i for i in range(etcd.size) if i != keep])
    assert store.claim_block(pool, "10.15.0.0/28", owner("n1")) == owner("n1")


# ---- configuration and cost -----------------------------------------------------------------------


def test_configuration_errors_and_endpoint_forms() -> None:
    """Endpoints without a scheme are http (https with TLS files); bad endpoints and half a key pair are InvalidConfig."""
    assert EtcdStore(["10.0.0.1:2379", "http://h:1", "[fd00::1]:2379"]).endpoints == [
        "http://10.0.0.1:2379",
        "http://h:1",
        "http://[fd00::1]:2379",
    ]
    assert EtcdStore(["10.0.0.1"], ca="/x/ca.pem").endpoints == ["https://10.0.0.1:2379"]
    for bad in ([], ["ftp://h:1"], ["http://h:x"], ["http://h:1/path"], ["http://:1"]):
        with pytest.raises(InvalidConfig):
            EtcdStore(bad)
    with pytest.raises(InvalidConfig, match="key"):
        EtcdStore(["h:1"], cert="/x/cert.pem")
    with pytest.raises(ValueError):
        EtcdStore(["h:1"]).claim_block("p", "10.0.0.0/28", {"since": 1})


def test_store_loads_no_http_stack_before_its_first_request() -> None:
    """Importing the module and building a store loads neither etcd3gw nor requests: only a request does."""
    code = (
        "import sys\n"
        "from multiplane.ipam.cluster.etcd import EtcdStore\n"
        "s = EtcdStore(['127.0.0.1:1'])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('etcd3gw', 'requests', 'urllib3')))\n"
        "try:\n    s.blocks('p')\nexcept Exception as e:\n    print(type(e).__name__)\n"
        "print('etcd3gw' in sys.modules)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{SRC}:{sysconfig.get_paths()['purelib']}"}
    out = subprocess.run([sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "StoreUnavailable", "True"]


TREE = SRC.parent / "build" / "runtime" / "tree"


def test_runtime_tree_carries_the_client(etcd: EtcdCluster, pool: str) -> None:
    """The runtime tree `make binary` builds (isolated Python, sourceless .pyc) claims a block through etcd3gw."""
    python = TREE / "python3.11"
    if not python.exists():
        pytest.fail(f"{python} is missing: run `make binary` first (make test does)")
    code = (
        "import json, sys\n"
        "from multiplane.ipam.cluster.etcd import EtcdStore\n"
        "store = EtcdStore(json.loads(sys.argv[1]))\n"
        "print(json.dumps(store.claim_block(sys.argv[2], '10.16.0.0/28', {'node': 'tree'})))\n"
        "print(sys.modules['etcd3gw'].__file__)\n"
    )
    loader = TREE / "ld-linux-x86-64.so.2"
    proc = subprocess.run(
        [str(loader), "--library-path", str(TREE / "lib"), str(python), "-c", code, json.dumps(etcd.endpoints), pool],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    claimed, where = proc.stdout.splitlines()
    assert json.loads(claimed) == owner("tree")
    assert where.startswith(str(TREE / "site-packages" / "etcd3gw"))


def test_tls_with_client_certificates(monkeypatch: pytest.MonkeyPatch, pool: str) -> None:
    """A member that requires client certificates: the right files claim; a missing or untrusted one fails clearly, at once."""
    # What `requests` would take from the environment over the store's own settings: ignored.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with EtcdCluster(size=1, tls=True) as tls:
        certs = tls.certs
        assert tls.endpoints[0].startswith("https://")
        good = EtcdStore(tls.endpoints, ca=certs["ca.pem"], cert=certs["client.pem"], key=certs["client.key"])
        bare = tls.endpoints[0].removeprefix("https://")  # no scheme: https, since TLS files are given
        again = EtcdStore([bare], ca=certs["ca.pem"], cert=certs["client.pem"], key=certs["client.key"])
        try:
            assert good.claim_block(pool, "10.17.0.0/28", owner("n1")) == owner("n1")
            assert again.claim_block(pool, "10.17.0.0/28", owner("n2")) == owner("n1")
        finally:
            good.close()
            again.close()
        for kwargs in ({"ca": certs["ca.pem"]}, {"cert": certs["client.pem"], "key": certs["client.key"]}):
            t0 = time.monotonic()
            with pytest.raises(StoreError, match="TLS failed") as info:
                EtcdStore(tls.endpoints, **kwargs).blocks(pool)
            assert not isinstance(info.value, StoreUnavailable)  # waiting would not help
            assert time.monotonic() - t0 < 1.0
        with pytest.raises(InvalidConfig, match="TLS files"):
            EtcdStore(tls.endpoints, ca="/nonexistent/mp-ca.pem").blocks(pool)
