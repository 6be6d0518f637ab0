"""Cluster-wide IPAM's Kubernetes API store (multiplane.ipam.cluster.kube) against the in-repo API server.

Real HTTP to tests/k8s_server.py serving the CRDs of packaging/k8s/crd-ipam.yaml (schema
checks and pruning included): claims race from threads, releases meet other writers
between their read and their delete (the server's on_request hook plays them), the API goes
away. The name encoding is checked with hypothesis, the CRD and the RBAC role against what
the store really sends.
"""

from __future__ import annotations

import ipaddress
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from multiplane.ipam.cluster.kube import (
    BLOCKS,
    CLAIMS,
    GROUP,
    NODE_LABEL,
    POOL_LABEL,
    VERSION,
    KubeStore,
    label_value,
    object_name,
)
from multiplane.ipam.cluster.store import StoreError, StoreUnavailable
from multiplane.k8s.client import AlreadyExists, Conflict, KubeClient, KubeConfig, NotFound, custom_path
from multiplane.k8s.names import is_subdomain
from tests.k8s_server import K8sServer, Request

K8S = Path(__file__).resolve().parents[2] / "packaging" / "k8s"
CRD = K8S / "crd-ipam.yaml"
RBAC = {"kubernetes": K8S / "rbac-ipam.yaml", "openshift": K8S / "openshift" / "rbac-ipam.yaml"}
POOL = "mp-net"
HOLDER = {"node": "mp-node-a", "container": "mp-c1", "ifname": "net1", "pod": "mp-ns/mp-pod"}
LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"


@pytest.fixture
def api() -> Iterator[K8sServer]:
    server = K8sServer()
    server.add_crds(CRD)
    try:
        yield server
    finally:
        server.stop()
        assert server.errors == [], server.errors


def store(api: K8sServer, timeout: float = 2.0, retry_budget: float = 1.0) -> KubeStore:
    return KubeStore(KubeClient(KubeConfig(api.url), timeout=timeout, retry_budget=retry_budget))


def blocks_stored(api: K8sServer) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in api.custom_objects(BLOCKS)}


# ---- blocks: claim and release ------------------------------------------------------------------


def test_claim_block_creates_one_ipblock(api: K8sServer) -> None:
    """A claim is one POST of an IPBlock named for pool and block, spec {pool, cidr, node, claimed}, labelled."""
    s = store(api)
    got = s.claim_block(POOL, "10.1.0.16/28", {"node": "mp-node-a"})
    assert got == {"node": "mp-node-a"}  # exactly the owner, as the etcd store answers
    (obj,) = api.custom_objects(BLOCKS)
    time.strptime(obj["spec"].pop("claimed"), "%Y-%m-%dT%H:%M:%SZ")
    assert obj["metadata"]["name"] == "mp-net.v4-10-1-0-16-28" == object_name(POOL, "10.1.0.16/28")
    assert obj["kind"] == "IPBlock" and obj["apiVersion"] == f"{GROUP}/{VERSION}"
    assert obj["spec"] == {"pool": POOL, "cidr": "10.1.0.16/28", **got}
    assert obj["metadata"]["labels"] == {POOL_LABEL: POOL, NODE_LABEL: "mp-node-a"}
    assert [(r.method, r.status) for r in api.requests] == [("POST", 201)]
    assert s.writes == 1


def test_reclaim_by_the_same_node_is_idempotent(api: K8sServer) -> None:
    """Claiming a block the node already holds (a retry after a crash) gives back its record: 409, GET, no change."""
    a = store(api)
    first = a.claim_block(POOL, "10.1.0.0/28", {"node": "mp-node-a"})
    again = store(api).claim_block(POOL, "10.1.0.0/28", {"node": "mp-node-a"})
    assert again == first
    assert [(r.method, r.status) for r in api.requests] == [("POST", 201), ("POST", 409), ("GET", 200)]
    assert len(api.custom_objects(BLOCKS)) == 1


def test_another_node_loses_the_claim(api: K8sServer) -> None:
    """A block another node holds is not taken: the answer is the holder's record, the object is untouched."""
    store(api).claim_block(POOL, "10.1.0.0/28", {"node": "mp-node-a"})
    before = api.custom_objects(BLOCKS)
    lost = store(api).claim_block(POOL, "10.1.0.0/28", {"node": "mp-node-b"})
    assert lost["node"] == "mp-node-a"
    assert api.custom_objects(BLOCKS) == before


def test_release_deletes_with_the_read_uid_and_resource_version(api: K8sServer) -> None:
    """The holder's release: GET, then DELETE with preconditions {uid, resourceVersion} of what it read; once."""
    s = store(api)
    s.claim_block(POOL, "10.1.0.0/28", {"node": "mp-node-a"})
    (obj,) = api.custom_objects(BLOCKS)
    assert s.release_block(POOL, "10.1.0.0/28", "mp-node-a") is True
    assert api.custom_objects(BLOCKS) == []
    (delete,) = api.requests_for("DELETE")
    assert delete.body["preconditions"] == {
        "uid": obj["metadata"]["uid"],
        "resourceVersion": obj["metadata"]["resourceVersion"],
    }
    assert s.release_block(POOL, "10.1.0.0/28", "mp-node-a") is False  # nothing left to release
    assert s.writes == 2  # one create, one delete


def test_release_by_a_non_owner_is_refused(api: K8sServer) -> None:
    """Another node cannot release a block it does not hold: False, no DELETE sent, the claim stays."""
    store(api).claim_block(POOL, "10.1.0.0/28", {"node": "mp-node-a"})
    other = store(api)
    assert other.release_block(POOL, "10.1.0.0/28", "mp-node-b") is False
    assert api.requests_for("DELETE") == [] and other.writes == 0
    assert len(api.custom_objects(BLOCKS)) == 1


def test_stale_release_is_refused(api: K8sServer) -> None:
    """Between our GET and our DELETE the block is released and claimed by another node (same name, new uid):
    the DELETE's preconditions fail (409), the re-read shows the new holder, nothing is deleted."""
    s = store(api)
    s.claim_block(POOL, "10.1.0.0/28", {"node": "mp-node-a"})
    name = object_name(POOL, "10.1.0.0/28")
    theirs = api.custom_object(BLOCKS, name)
    theirs["metadata"].pop("uid")
    theirs["spec"]["node"] = "mp-node-b"

    def replace(req: Request) -> None:
        if req.method == "DELETE" and not api.requests_for("DELETE")[:-1]:
            api.delete_custom_object(BLOCKS, name)
            api.put_custom_object(BLOCKS, theirs)

    api.on_request = replace
    assert s.release_block(POOL, "10.1.0.0/28", "mp-node-a") is False
    assert [(r.method, r.status) for r in api.requests[1:]] == [("GET", 200), ("DELETE", 409), ("GET", 200)]
    assert api.custom_object(BLOCKS, name)["spec"]["node"] == "mp-node-b"


def test_release_reads_again_when_its_own_claim_changed(api: K8sServer) -> None:
    """A 409 on the DELETE because the object changed (same holder, new resourceVersion): read again, delete."""
    s = store(api)
    s.claim_block(POOL, "10.1.0.0/28", {"node": "mp-node-a"})
    name = object_name(POOL, "10.1.0.0/28")

    def touch(req: Request) -> None:
        if req.method == "DELETE" and len(api.requests_for("DELETE")) == 1:
            api.put_custom_object(BLOCKS, api.custom_object(BLOCKS, name))  # same uid, new resourceVersion

    api.on_request = touch
    assert s.release_block(POOL, "10.1.0.0/28", "mp-node-a") is True
    assert [r.status for r in api.requests_for("DELETE")] == [409, 200]
    assert api.custom_objects(BLOCKS) == []


def test_claim_retries_when_the_holder_vanishes_before_the_read(api: K8sServer) -> None:
    """409 AlreadyExists, then the holder releases before our GET (404): the claim is tried again and won."""
    store(api).claim_block(POOL, "10.1.0.0/28", {"node": "mp-node-b"})
    name = object_name(POOL, "10.1.0.0/28")

    def release(req: Request) -> None:
        if req.method == "GET" and not req.query and len(api.requests_for("GET")) == 1:
            api.delete_custom_object(BLOCKS, name)

    api.on_request = release
    s = store(api)
    assert s.claim_block(POOL, "10.1.0.0/28", {"node": "mp-node-a"})["node"] == "mp-node-a"
    assert [(r.method, r.status) for r in api.requests[1:]] == [("POST", 409), ("GET", 404), ("POST", 201)]
    assert s.writes == 2


def test_a_create_applied_but_not_answered_is_ours(api: K8sServer) -> None:
    """The server stores our IPBlock but answers 503 (the answer lost): the client sends the POST again, gets 409
    AlreadyExists, and the GET shows our own claim: won, one object, one write counted."""

    def apply_then_fail(req: Request) -> None:
        if req.method == "POST" and len(api.requests_for("POST")) == 1:
            api.put_custom_object(BLOCKS, req.body)
            api.fail_next(1, 503)

    api.on_request = apply_then_fail
    s = store(api)
    assert s.claim_block(POOL, "10.1.0.0/28", {"node": "mp-node-a"}) == {"node": "mp-node-a"}
    assert [(r.method, r.status) for r in api.requests] == [("POST", 503), ("POST", 409), ("GET", 200)]
    assert len(api.custom_objects(BLOCKS)) == 1 and s.writes == 1


def test_two_stores_racing_never_both_win(api: K8sServer) -> None:
    """Four nodes (threads, a client each) claim the same 24 blocks in random orders at once: every block has
    exactly one holder, the one the store shows, and every node's answer names that holder."""
    cidrs = [str(n) for n in list(ipaddress.ip_network("10.2.0.0/24").subnets(new_prefix=29))[:24]]
    nodes = [f"mp-node-{i}" for i in range(4)]
    answers: dict[str, dict[str, str]] = {n: {} for n in nodes}
    failures: list[BaseException] = []
    start = threading.Barrier(len(nodes))

    def run(node: str) -> None:
        s = store(api, timeout=5.0)
        order = cidrs[:]
        random.Random(node).shuffle(order)
        try:
            start.wait()
            for cidr in order:
                answers[node][cidr] = s.claim_block(POOL, cidr, {"node": node})["node"]
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread's assertion
            failures.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=run, args=(n,), name=f"mp-racer-{n}") for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert failures == []
    held = store(api).blocks(POOL)
    assert sorted(held) == sorted(cidrs)
    for cidr in cidrs:
        winners = [n for n in nodes if answers[n][cidr] == n]
        assert winners == [held[cidr]["node"]], (cidr, winners)
        assert {answers[n][cidr] for n in nodes} == {held[cidr]["node"]}
    assert len(api.requests_for("POST")) == len(nodes) * len(cidrs)


# ---- single addresses ---------------------------------------------------------------------------


def test_claim_ip_is_idempotent_for_the_same_interface_only(api: K8sServer) -> None:
    """An IPClaim holds {node, container, ifname, pod}; the same interface claims again, another one loses."""
    s = store(api)
    got = s.claim_ip(POOL, "10.1.0.5", HOLDER)
    assert got == HOLDER
    assert s.claim_ip(POOL, "10.1.0.5", HOLDER) == got
    lost = s.claim_ip(POOL, "10.1.0.5", {**HOLDER, "container": "mp-c2"})
    assert lost == got
    (obj,) = api.custom_objects(CLAIMS)
    assert obj["metadata"]["name"] == "mp-net.v4-10-1-0-5"
    assert obj["spec"] == {"pool": POOL, "ip": "10.1.0.5", "claimed": obj["spec"]["claimed"], **got}
    assert s.ips(POOL) == {"10.1.0.5": got}


def test_release_ip_only_by_its_container_and_interface(api: K8sServer) -> None:
    """Another container, or another interface of the same container, cannot release the address; its own can."""
    s = store(api)
    s.claim_ip(POOL, "fd00::5", HOLDER)
    assert s.release_ip(POOL, "fd00::5", "mp-c2", "net1") is False
    assert s.release_ip(POOL, "fd00::5", "mp-c1", "net2") is False
    assert len(api.custom_objects(CLAIMS)) == 1
    assert s.release_ip(POOL, "fd00:0::5", "mp-c1", "net1") is True  # any spelling of the address
    assert api.custom_objects(CLAIMS) == []


def test_pod_is_optional_and_unknown_owner_fields_are_refused(api: K8sServer) -> None:
    """A holder without pod is stored without it; an owner field the CRD cannot keep is an error, not silently lost."""
    s = store(api)
    got = s.claim_ip(POOL, "10.1.0.6", {k: v for k, v in HOLDER.items() if k != "pod"})
    assert "pod" not in got
    with pytest.raises(StoreError, match="cannot keep: rack"):
        s.claim_block(POOL, "10.1.0.0/28", {"node": "mp-node-a", "rack": "r1"})
    with pytest.raises(StoreError, match="cannot keep: claimed"):  # the store's own field
        s.claim_block(POOL, "10.1.0.0/28", {"node": "mp-node-a", "claimed": "2026-01-01T00:00:00Z"})
    with pytest.raises(StoreError, match="non-empty 'ifname'"):
        s.claim_ip(POOL, "10.1.0.7", {"node": "mp-node-a", "container": "mp-c1"})
    with pytest.raises(StoreError, match="not a CIDR|neither a block"):
        s.claim_block(POOL, "10.1.0.1/28", {"node": "mp-node-a"})  # host bits set
    assert s.writes == 1


# ---- listing ------------------------------------------------------------------------------------


def test_blocks_and_ips_list_only_their_pool(api: K8sServer) -> None:
    """blocks()/ips() list by the pool label and keep only the pool's objects, whatever the pool's name."""
    long_pool = "Macvlan Net/" + "x" * 80  # no label value: shortened with a hash
    s = store(api)
    s.claim_block(POOL, "10.1.0.0/28", {"node": "mp-node-a"})
    s.claim_block(long_pool, "10.1.0.0/28", {"node": "mp-node-b"})
    s.claim_block(long_pool, "fd00::/120", {"node": "mp-node-b"})
    s.claim_ip(long_pool, "10.1.0.100", HOLDER)
    # A foreign object that shares the long pool's label value but is of another pool is not its claim.
    foreign = api.custom_objects(BLOCKS)[0]
    foreign["metadata"]["name"] = "mp-foreign"
    foreign["metadata"].pop("uid")
    foreign["spec"]["pool"] = "mp-other"
    foreign["metadata"]["labels"][POOL_LABEL] = label_value(long_pool)
    api.put_custom_object(BLOCKS, foreign)
    assert {k: v["node"] for k, v in s.blocks(POOL).items()} == {"10.1.0.0/28": "mp-node-a"}
    assert {k: v["node"] for k, v in s.blocks(long_pool).items()} == {
        "10.1.0.0/28": "mp-node-b",
        "fd00::/120": "mp-node-b",
    }
    assert list(s.ips(long_pool)) == ["10.1.0.100"] and s.ips(POOL) == {}
    lists = [r for r in api.requests_for("GET") if "labelSelector" in r.query]
    assert lists and all(r.status == 200 for r in lists)
    # Linearizable lists (store.py): no resourceVersion, which would let the API server answer from its cache.
    assert all("resourceVersion" not in r.query for r in lists)


def test_a_foreign_object_under_our_name_is_an_error(api: K8sServer) -> None:
    """An object with a claim's name but another pool or key in its spec is not taken for a holder: StoreError."""
    name = object_name(POOL, "10.1.0.0/28")
    api.put_custom_object(
        BLOCKS,
        {
            "metadata": {"name": name, "labels": {POOL_LABEL: POOL}},
            "spec": {"pool": POOL, "cidr": "10.9.0.0/28", "node": "mp-node-z"},
        },
    )
    s = store(api)
    with pytest.raises(StoreError, match="not the claim of 10.1.0.0/28"):
        s.claim_block(POOL, "10.1.0.0/28", {"node": "mp-node-a"})
    with pytest.raises(StoreError, match="under another name"):
        s.blocks(POOL)
    with pytest.raises(StoreError):
        s.release_block(POOL, "10.1.0.0/28", "mp-node-z")
    assert api.requests_for("DELETE") == []


# ---- failures -----------------------------------------------------------------------------------


def test_api_down_is_store_unavailable_quickly(api: K8sServer) -> None:
    """With the API server gone every call raises StoreUnavailable (code 11) within the client's budget."""
    s = store(api, timeout=0.5, retry_budget=0.5)
    s.claim_block(POOL, "10.1.0.0/28", {"node": "mp-node-a"})
    api.stop()
    calls = [
        lambda: s.claim_block(POOL, "10.1.0.16/28", {"node": "mp-node-a"}),
        lambda: s.release_block(POOL, "10.1.0.0/28", "mp-node-a"),
        lambda: s.blocks(POOL),
        lambda: s.claim_ip(POOL, "10.1.0.5", HOLDER),
        lambda: s.ips(POOL),
    ]
    for call in calls:
        began = time.monotonic()
        with pytest.raises(StoreUnavailable) as info:
            call()
        assert time.monotonic() - began < 2.0
        assert info.value.code == 11 and "cannot reach the Kubernetes API" in info.value.msg


def test_overload_is_unavailable_and_forbidden_is_an_error(api: K8sServer) -> None:
    """503 until the retry budget is spent → StoreUnavailable; 403 (RBAC) → StoreError naming the resource."""
    s = store(api, retry_budget=0.3)
    api.fail_next(100, 503)
    with pytest.raises(StoreUnavailable):
        s.blocks(POOL)
    api.reset_faults()
    api.access = {("get", BLOCKS, ""), ("list", BLOCKS, "")}
    with pytest.raises(StoreError) as info:
        s.claim_block(POOL, "10.1.0.0/28", {"node": "mp-node-a"})
    assert not isinstance(info.value, StoreUnavailable)
    assert info.value.code != 11 and "403" in info.value.msg and "cannot create resource" in info.value.details


# ---- the client's custom-resource calls against the server's semantics -------------------------


def test_client_custom_resource_calls(api: K8sServer) -> None:
    """create → AlreadyExists on a taken name; PUT needs the current resourceVersion (Conflict when stale);
    DELETE honours uid/resourceVersion preconditions; the schema prunes unknown fields and refuses missing ones."""
    client = KubeClient(KubeConfig(api.url), retry_budget=0.0)
    collection = custom_path(GROUP, VERSION, BLOCKS)
    path = custom_path(GROUP, VERSION, BLOCKS, "mp-x")
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "IPBlock",
        "metadata": {"name": "mp-x", "labels": {POOL_LABEL: POOL}},
        "spec": {"pool": POOL, "cidr": "10.3.0.0/28", "node": "mp-node-a", "color": "red"},
    }
    created = client.create_object(collection, body)
    assert "color" not in created["spec"] and created["metadata"]["generation"] == 1
    with pytest.raises(AlreadyExists, match="409") as exists:
        client.create_object(collection, body)
    assert exists.value.details == f'{BLOCKS}.{GROUP} "mp-x" already exists'
    invalid = {**body, "metadata": {"name": "mp-y"}, "spec": {"pool": POOL, "cidr": "10.3.0.16/28"}}
    with pytest.raises(Exception, match="422") as bad:
        client.create_object(collection, invalid)
    assert "spec.node: Required value" in bad.value.details  # type: ignore[attr-defined]
    changed = {**created, "spec": {**created["spec"], "node": "mp-node-b"}}
    updated = client.replace_object(path, changed)
    assert updated["metadata"]["generation"] == 2 and updated["spec"]["node"] == "mp-node-b"
    with pytest.raises(Conflict) as stale:
        client.replace_object(path, changed)  # created's resourceVersion: stale now
    assert "the object has been modified" in stale.value.details
    with pytest.raises(Conflict, match="409") as wrong:
        client.delete_object(path, uid="mp-not-the-uid")
    assert "Precondition failed: UID in precondition: mp-not-the-uid" in wrong.value.details
    with pytest.raises(Conflict) as old:
        client.delete_object(path, resource_version=created["metadata"]["resourceVersion"])
    assert "ResourceVersion in precondition" in old.value.details
    items, rv = client.list_objects(collection, label_selector=f"{POOL_LABEL}={POOL}")
    assert [i["metadata"]["name"] for i in items] == ["mp-x"] and int(rv) >= int(updated["metadata"]["resourceVersion"])
    assert client.list_objects(collection, label_selector=f"{POOL_LABEL}!={POOL}")[0] == []
    client.delete_object(path, uid=updated["metadata"]["uid"], resource_version=updated["metadata"]["resourceVersion"])
    with pytest.raises(NotFound, match=f'{BLOCKS}.{GROUP} "mp-x" not found'):
        client.get_object(path)
    client.close()


# ---- the name encoding --------------------------------------------------------------------------

_v4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
_v6 = st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1))
_networks = st.one_of(
    st.tuples(_v4, st.integers(0, 32)).map(lambda t: ipaddress.ip_network(f"{t[0]}/{t[1]}", strict=False)),
    st.tuples(_v6, st.integers(0, 128)).map(lambda t: ipaddress.ip_network(f"{t[0]}/{t[1]}", strict=False)),
)
_keys = st.one_of(_networks.map(str), st.one_of(_v4, _v6).map(str))
# Pools: DNS labels (the plain form), anything at all (the hashed form), and near misses of both.
_pools = st.one_of(
    st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True),
    st.text(min_size=1, max_size=300),
    st.from_regex(r"[a-z0-9.-]{1,70}", fullmatch=True),
    st.sampled_from(["10.0.0.0/24", "10.0.0.10-10.0.0.20", "MyNet", "a" * 64, "pool", "v4-1-2-3-4"]),
)


@settings(max_examples=400, deadline=None)
@given(_pools, _keys)
def test_object_names_are_dns_subdomains(pool: str, key: str) -> None:
    """Every (pool, block or address) gives a valid object name (DNS-1123 subdomain, at most 253 characters)."""
    name = object_name(pool, key)
    assert is_subdomain(name) and len(name) <= 110


@settings(max_examples=400, deadline=None)
@given(_pools, _keys, _pools, _keys)
def test_object_names_are_injective(pool1: str, key1: str, pool2: str, key2: str) -> None:
    """Two different (pool, key) pairs never share a name; the same pair, however the key is spelled, always does."""
    same = pool1 == pool2 and ipaddress.ip_interface(key1) == ipaddress.ip_interface(key2)
    same = same and ("/" in key1) == ("/" in key2)
    assert (object_name(pool1, key1) == object_name(pool2, key2)) == same


@settings(max_examples=300, deadline=None)
@given(_pools, _keys)
def test_plain_names_decode_back(pool: str, key: str) -> None:
    """A pool that is a DNS label stays readable: the name is `<pool>.<address part>` and decodes back."""
    name = object_name(pool, key)
    if name.count(".") != 1:
        assert name.count(".") == 2 and name.split(".")[0] != pool  # the hashed form
        return
    head, _, part = name.partition(".")
    assert head == pool
    family, *fields = part.split("-")
    if family == "v4":
        address = ipaddress.IPv4Address(".".join(fields[:4]))
        rest = fields[4:]
    else:
        assert family == "v6"
        address = ipaddress.IPv6Address(":".join(fields[:8]))
        rest = fields[8:]
    decoded = f"{address}/{rest[0]}" if rest else str(address)
    assert decoded == (str(ipaddress.ip_network(key)) if "/" in key else str(ipaddress.ip_address(key)))


def test_name_examples() -> None:
    """The documented examples (decision 0012)."""
    assert object_name("macvlan-conf", "10.0.0.16/28") == "macvlan-conf.v4-10-0-0-16-28"
    assert object_name("macvlan-conf", "fd00::10/124") == "macvlan-conf.v6-fd00-0-0-0-0-0-0-10-124"
    assert object_name("macvlan-conf", "::") == "macvlan-conf.v6-0-0-0-0-0-0-0-0"
    hashed = object_name("10.0.0.0/24", "10.0.0.5")
    assert hashed.startswith("10-0-0-0-24.") and hashed.endswith(".v4-10-0-0-5") and hashed.count(".") == 2


@settings(max_examples=400, deadline=None)
@given(_pools, _pools)
def test_label_values_are_valid_and_injective(a: str, b: str) -> None:
    """label_value is always a valid label value and tells pools apart (up to the hash)."""
    import re

    assert len(label_value(a)) <= 63 and re.fullmatch(LABEL_VALUE, label_value(a))
    assert (label_value(a) == label_value(b)) == (a == b)


# ---- the CRD and the RBAC role against the requests the store makes ----------------------------


def _exercise(api: K8sServer) -> KubeStore:
    """Every kind of request the store makes: claims won, lost and repeated, lists, releases won and refused."""
    a, b = store(api), store(api)
    a.claim_block(POOL, "10.1.0.0/28", {"node": "mp-node-a"})
    a.claim_block(POOL, "10.1.0.0/28", {"node": "mp-node-a"})
    b.claim_block(POOL, "10.1.0.0/28", {"node": "mp-node-b"})
    a.claim_ip(POOL, "10.1.0.200", HOLDER)
    a.blocks(POOL)
    a.ips(POOL)
    b.release_block(POOL, "10.1.0.0/28", "mp-node-b")
    a.release_block(POOL, "10.1.0.0/28", "mp-node-a")
    a.release_ip(POOL, "10.1.0.200", HOLDER["container"], HOLDER["ifname"])
    return a


def _needed(requests: list[Request]) -> dict[tuple[str, str], set[str]]:
    """(API group, resource) → verbs, as the API server's authorizer sees each request."""
    needed: dict[tuple[str, str], set[str]] = {}
    for r in requests:
        parts = r.path.strip("/").split("/")
        assert parts[0] == "apis" and "namespaces" not in parts  # cluster-scoped custom resources only
        group, resource, name = parts[1], parts[3], parts[4] if len(parts) > 4 else ""
        verb = {"GET": "get" if name else "list", "PUT": "update", "POST": "create", "DELETE": "delete"}[r.method]
        needed.setdefault((group, resource), set()).add(verb)
    return needed


def _granted(path: Path) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc["kind"] == "ClusterRole":
            for rule in doc["rules"]:
                assert "resourceNames" not in rule and "nonResourceURLs" not in rule
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


@pytest.mark.parametrize("variant", RBAC)
def test_rbac_grants_exactly_what_the_store_uses(api: K8sServer, variant: str) -> None:
    """The store's requests need exactly the verbs rbac-ipam.yaml grants on the custom resources; with only those
    allowed, nothing is 403. (Its one other rule, get on nodes, is the daemon's reconciler's.)"""
    granted = _granted(RBAC[variant])
    assert granted.pop(("", "nodes")) == {"get"}
    api.access = {(verb, resource, "") for (_group, resource), verbs in granted.items() for verb in verbs}
    _exercise(api)
    assert {r.status for r in api.requests} <= {200, 201, 404, 409}, api.requests
    assert {r.status for r in api.requests} >= {200, 201, 409}  # the run covered what it claims
    assert _needed(api.requests) == granted


def test_crd_schema_keeps_every_field_the_store_writes(api: K8sServer) -> None:
    """Statically: each field of each object the store POSTs is a property of its CRD's schema (nothing would be
    pruned), the required ones are always written, and group, version, plural and kind are the store's."""
    _exercise(api)
    crds = {d["spec"]["names"]["plural"]: d for d in yaml.safe_load_all(CRD.read_text()) if d}
    assert set(crds) == {BLOCKS, CLAIMS}
    posts = api.requests_for("POST")
    assert {p.path.rsplit("/", 1)[1] for p in posts} == {BLOCKS, CLAIMS}
    for post in posts:
        crd = crds[post.path.rsplit("/", 1)[1]]
        assert crd["spec"]["group"] == GROUP and crd["spec"]["scope"] == "Cluster"
        (version,) = crd["spec"]["versions"]
        assert version["name"] == VERSION
        assert post.body["kind"] == crd["spec"]["names"]["kind"]
        schema = version["schema"]["openAPIV3Schema"]
        assert set(post.body) <= set(schema["properties"])
        spec_schema = schema["properties"]["spec"]
        assert set(post.body["spec"]) <= set(spec_schema["properties"]), post.body["spec"]
        assert set(spec_schema["required"]) <= set(post.body["spec"])
        for field, value in post.body["spec"].items():
            assert spec_schema["properties"][field]["type"] == "string" and isinstance(value, str)
            assert len(value) <= spec_schema["properties"][field].get("maxLength", 10**9)
    # And the server, which prunes by that schema, stored what was sent.
    for obj in api.custom_objects(BLOCKS) + api.custom_objects(CLAIMS):
        sent = next(p.body for p in posts if p.body["metadata"]["name"] == obj["metadata"]["name"])
        assert obj["spec"] == sent["spec"]
