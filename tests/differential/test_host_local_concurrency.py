"""Concurrency: the reference host-local and ours allocating from ONE dataDir at the same time.

Both take flock(LOCK_EX) on `<dataDir>/<network>/lock` and create reservations exclusively, so
however the invocations interleave no address may be handed out twice, every reported address must
be on disk with its owner, and DEL must clean up reservations made by either binary
(reference-plugins.md §2.7, T62). The last test runs `disk.release_container` (the meta-plugin's
DEL when its cache is unreadable and the API is down) while both binaries allocate beside it.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from multiplane.ipam import disk
from tests.cni import OURS_HOST_LOCAL, Invocation, run, snapshot

NET = "mp-conc"


def _conf(data_dir: str, rng: dict[str, str], name: str = NET) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": name,
        "type": "macvlan",
        "ipam": {"type": "host-local", "dataDir": data_dir, "ranges": [[rng]]},
    }


def _parallel(calls: list[tuple[str, str, str]], conf: dict[str, Any], workers: int) -> list[Invocation]:
    """calls: (binary, command, container id); all submitted at once, results in submission order."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run, binary, command, conf, container_id=cid) for binary, command, cid in calls]
        return [f.result() for f in futures]


def _binaries(reference: str, n: int) -> list[str]:
    # interleaved so both binaries are in flight at the same time from the very start
    return [reference if i % 2 == 0 else OURS_HOST_LOCAL for i in range(n)]


def _temp_files(net_dir: str) -> list[str]:
    return [name for name in os.listdir(net_dir) if name.startswith(".mp-")]


def test_64_parallel_adds_and_dels_mixed_binaries(tmp_path: Any, reference_host_local: str) -> None:
    data_dir = str(tmp_path / "mp-shared")
    net_dir = os.path.join(data_dir, NET)
    conf = _conf(data_dir, {"subnet": "10.60.0.0/25"})
    bins = _binaries(reference_host_local, 64)
    cids = [f"mp-c{i:02d}" for i in range(64)]

    adds = _parallel([(b, "ADD", cid) for b, cid in zip(bins, cids)], conf, workers=64)
    failures = [(cid, inv.stdout) for cid, inv in zip(cids, adds) if not inv.ok]
    assert failures == []
    addresses: dict[str, str] = {}
    for cid, inv in zip(cids, adds):
        result = json.loads(inv.stdout)
        assert len(result["ips"]) == 1, inv.stdout
        assert result["ips"][0]["gateway"] == "10.60.0.1"
        address, prefix = result["ips"][0]["address"].split("/")
        assert prefix == "25"
        addresses[cid] = address
    assert len(set(addresses.values())) == 64, "an address was handed out twice"
    assert set(addresses.values()) <= {f"10.60.0.{i}" for i in range(2, 127)}

    state = snapshot(net_dir)
    for cid, address in addresses.items():
        assert state.get(address) == f"{cid}\r\neth0".encode(), address
    reservations = {name for name in state if name != "lock" and not name.startswith("last_reserved_ip.")}
    assert reservations == set(addresses.values()), "files on disk that no result reported"
    assert state["lock"] == b""
    assert state["last_reserved_ip.0"].decode() in addresses.values()
    assert _temp_files(net_dir) == []

    # DEL: mixed again, and crossed over (a reservation made by one binary released by the other)
    dels = _parallel([(b, "DEL", cid) for b, cid in zip(reversed(bins), cids)], conf, workers=64)
    assert [(cid, inv.returncode, inv.stdout) for cid, inv in zip(cids, dels) if not inv.ok or inv.stdout] == []
    assert sorted(os.listdir(net_dir)) == ["last_reserved_ip.0", "lock"]

    # everyone's CHECK now fails, through either binary
    for binary in (reference_host_local, OURS_HOST_LOCAL):
        err = run(binary, "CHECK", conf, container_id=cids[0]).error()
        assert err["msg"] == f"host-local: Failed to find address added by container {cids[0]}"


def test_contention_20_adds_into_8_addresses(tmp_path: Any, reference_host_local: str) -> None:
    data_dir = str(tmp_path / "mp-shared")
    net_dir = os.path.join(data_dir, NET)
    # 10.61.0.2 … 10.61.0.9: eight addresses; the gateway (.1) lies outside the range
    conf = _conf(data_dir, {"subnet": "10.61.0.0/28", "rangeStart": "10.61.0.2", "rangeEnd": "10.61.0.9"})
    bins = _binaries(reference_host_local, 20)
    cids = [f"mp-k{i:02d}" for i in range(20)]

    adds = _parallel([(b, "ADD", cid) for b, cid in zip(bins, cids)], conf, workers=20)
    won = {cid: json.loads(inv.stdout)["ips"][0]["address"] for cid, inv in zip(cids, adds) if inv.ok}
    lost = [inv for inv in adds if not inv.ok]
    assert len(won) == 8
    assert sorted(won.values()) == sorted(f"10.61.0.{i}/28" for i in range(2, 10))
    assert len(lost) == 12
    for inv in lost:
        err = inv.error()
        assert err["code"] == 999
        assert err["msg"] == (
            "failed to allocate for range 0: no IP addresses available in range set: 10.61.0.2-10.61.0.9"
        ), inv.stdout

    state = snapshot(net_dir)
    for cid, address in won.items():
        assert state[address.split("/")[0]] == f"{cid}\r\neth0".encode()
    assert sorted(state) == sorted([a.split("/")[0] for a in won.values()] + ["last_reserved_ip.0", "lock"])
    assert _temp_files(net_dir) == []

    # losers hold nothing; DEL for everyone (winners and losers) leaves only lock and cursor
    dels = _parallel([(b, "DEL", cid) for b, cid in zip(bins, cids)], conf, workers=20)
    assert all(inv.ok and inv.stdout == "" for inv in dels)
    assert sorted(os.listdir(net_dir)) == ["last_reserved_ip.0", "lock"]


def test_T62_70_adds_into_a_26(tmp_path: Any, reference_host_local: str) -> None:
    """T62 with both binaries: 70 concurrent ADDs into a /26 give the 61 addresses .2–.62 exactly once
    and 9 exhaustion errors; the directory holds 61 reservations, the cursor and the lock."""
    data_dir = str(tmp_path / "mp-shared")
    net_dir = os.path.join(data_dir, NET)
    conf = _conf(data_dir, {"subnet": "10.62.0.0/26"})
    bins = _binaries(reference_host_local, 70)
    adds = _parallel([(b, "ADD", f"mp-t{i:02d}") for i, b in enumerate(bins)], conf, workers=70)
    got = [json.loads(inv.stdout)["ips"][0]["address"] for inv in adds if inv.ok]
    assert sorted(got) == sorted(f"10.62.0.{i}/26" for i in range(2, 63))
    errors = [inv.error()["msg"] for inv in adds if not inv.ok]
    assert (
        errors == ["failed to allocate for range 0: no IP addresses available in range set: 10.62.0.1-10.62.0.62"] * 9
    )
    assert len(os.listdir(net_dir)) == 63


def test_release_container_beside_concurrent_adds(tmp_path: Any, reference_host_local: str) -> None:
    """Issue 11: release_container removes every reservation of one container in every network (any
    ifname, legacy id-only files) under each network's flock, while 24 ADDs of other containers
    (both binaries, two networks) run at the same time; nothing of anyone else is touched."""
    data_dir = str(tmp_path / "mp-shared")
    confs = {
        "mp-rel-a": _conf(data_dir, {"subnet": "10.70.0.0/24"}, name="mp-rel-a"),
        "mp-rel-b": _conf(data_dir, {"subnet": "10.71.0.0/24"}, name="mp-rel-b"),
    }
    victim: set[tuple[str, str]] = set()
    for net, ifname in (("mp-rel-a", "eth0"), ("mp-rel-a", "net1"), ("mp-rel-b", "eth0")):
        inv = run(reference_host_local, "ADD", confs[net], container_id="mp-victim", ifname=ifname)
        victim.add((net, json.loads(inv.stdout)["ips"][0]["address"].split("/")[0]))
    with open(os.path.join(data_dir, "mp-rel-b", "10.71.0.200"), "wb") as fh:
        fh.write(b"mp-victim")  # legacy id-only
    victim.add(("mp-rel-b", "10.71.0.200"))
    decoy = run(reference_host_local, "ADD", confs["mp-rel-a"], container_id="mp-victim2").json["ips"][0]
    assert len(victim) == 4

    bins = _binaries(reference_host_local, 24)
    nets = ["mp-rel-a" if i % 2 else "mp-rel-b" for i in range(24)]
    with ThreadPoolExecutor(max_workers=27) as pool:
        adds = []
        releases = []
        for i, (binary, net) in enumerate(zip(bins, nets)):
            adds.append(pool.submit(run, binary, "ADD", confs[net], container_id=f"mp-o{i:02d}"))
            if i % 8 == 4:
                releases.append(pool.submit(disk.release_container, data_dir, "mp-victim"))
        added = [f.result() for f in adds]
        released = [pair for f in releases for pair in f.result()]

    assert sorted(released) == sorted(victim), "each reservation released exactly once, by one of the calls"
    assert [inv.stdout for inv in added if not inv.ok] == []
    for net in confs:
        state = snapshot(os.path.join(data_dir, net))
        owners = {name: content for name, content in state.items() if name[0].isdigit()}
        assert not any(content.split(b"\r\n")[0] == b"mp-victim" for content in owners.values()), owners
        for i, inv in enumerate(added):
            if nets[i] == net:
                address = json.loads(inv.stdout)["ips"][0]["address"].split("/")[0]
                assert owners.pop(address) == f"mp-o{i:02d}\r\neth0".encode()
        if net == "mp-rel-a":
            assert owners.pop(decoy["address"].split("/")[0]) == b"mp-victim2\r\neth0"
        assert owners == {}, f"{net}: unexpected reservations"
        assert _temp_files(os.path.join(data_dir, net)) == []
