"""Every Whereabouts documentation example parses and ALLOCATES as Whereabouts documents it (issue 13).

The examples are the shared data of tests/whereabouts_examples.py (one test id each, named
"<file>#<section>" of k8snetworkplumbingwg/whereabouts). Each runs through the installed
`multiplane-cluster-ipam` personality, one process per call as a runtime runs it, against a
fresh in-repo Kubernetes API server serving packaging/k8s/crd-ipam.yaml, and is checked
against what Whereabouts documents for it (its README, docs and, where the docs are silent,
its code: pkg/allocate/allocate.go and cmd/whereabouts.go).

What the test changes in an example before running it, and only this:

* `ipam.type` becomes `multiplane-cluster-ipam` (the one change a NAD moving over makes);
* the store: `etcd_host` (and the other flat `etcd_*` keys) are dropped and
  `kubernetes.kubeconfig` points at the test's API server, whatever the example named;
* a Whereabouts flat file that goes with an example is inlined into `ipam` (we do not read
  Whereabouts' flat file: docs/cluster-ipam.md);
* `log_file` (accepted and ignored) is pointed into the test's directory, so nothing is
  ever written to the example's /tmp/whereabouts.log;
* `nodeName` and `dataDir` (ours) give the call a node of its own under the test's directory.

Whereabouts' semantics the checks use (README "Core Parameters", pkg/allocate): a range's
usable addresses are its subnet minus the network and the last address (except /31, /32),
clipped to `range_start`/`range_end`, minus each `exclude` CIDR whole; IPv4 addresses ending
in .0 are never assigned (README introduction); the result has one address per range, in
the order `range` then `ipRanges`, each with the range's prefix length and the configured
`gateway`; `routes` and `dns` are copied into the result (cmd/whereabouts.go). Whereabouts
does not keep the gateway out of a range (pkg/allocate hands it out like any address); ours
never hands it out. Every example's gateway lies outside its range, which each test asserts,
so the two agree on every example here.

One documented behaviour is deliberately not Whereabouts': Whereabouts hands out the
lowest free address of the range, ours the addresses of the node's own blocks (decision
0010, docs/cluster-ipam.md), so the README introduction's "the first address is
192.168.2.16" is checked as what ours documents instead (every usable address is handed
out, the first from the node's first block), and the difference is named in the test.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import cni
from tests.k8s_server import K8sServer
from tests.whereabouts_examples import EXAMPLES, Example

BIN = os.path.join(cni.BIN_DIR, "multiplane-cluster-ipam")
CRDS = Path(__file__).resolve().parents[2] / "packaging" / "k8s" / "crd-ipam.yaml"
ENV = {"MULTIPLANE_DAEMON": "off"}  # each call is its own process, whatever daemon this host runs
NODE = "mp-wa-node"  # in a /24 of 16 /28 slots its first block is slot 10, so "lowest first" differences show


@pytest.fixture
def api() -> Iterator[K8sServer]:
    """A fresh API server per test: several examples share 192.168.2.224/28 and must not share its pool."""
    with K8sServer() as server:
        server.add_crds(str(CRDS))
        yield server


@dataclass
class Ctx:
    """What a check may need beyond its node: to run more configs of the example on the same store."""

    api: K8sServer
    example: Example
    tmp_path: Path


class Node:
    """One example as one node runs it: its rewritten network config, and ADD/DEL calls."""

    def __init__(self, example: Example, api: K8sServer, tmp_path: Path, node: str = NODE, **ipam: Any) -> None:
        kubeconfig = str(api.kubeconfig(tmp_path / "mp-wa-kubeconfig"))
        self.data_dir = tmp_path / f"mp-wa-data-{node}"
        self.conf = copy.deepcopy(example.conf)
        section = self.conf["ipam"]
        section.update(copy.deepcopy(example.flat_file))
        section["type"] = "multiplane-cluster-ipam"
        for key in [k for k in section if k.startswith("etcd_")]:
            del section[key]
        section["kubernetes"] = {"kubeconfig": kubeconfig}
        if "log_file" in section:
            section["log_file"] = str(tmp_path / "mp-wa-whereabouts.log")
        section.update({"nodeName": node, "dataDir": str(self.data_dir), **ipam})

    def call(self, command: str, cid: str) -> cni.Invocation:
        return cni.run(BIN, command, self.conf, container_id=cid, ifname="net1", env=ENV)

    def add(self, cid: str) -> dict[str, Any]:
        inv = self.call("ADD", cid)
        assert inv.ok, f"ADD {cid}: {inv.stdout} {inv.stderr}"
        result = inv.json
        assert result["cniVersion"] == self.conf["cniVersion"]
        return result

    def delete(self, cid: str) -> None:
        inv = self.call("DEL", cid)
        assert inv.ok, f"DEL {cid}: {inv.stdout} {inv.stderr}"

    def blocks(self, pool: str) -> list[str]:
        state = json.loads((self.data_dir / "state.json").read_text())
        return sorted(state["pools"][pool]["blocks"])


# ---- Whereabouts' documented semantics, computed here (not by our allocator) --------------


def documented_usable(
    range_text: str, start: str | None = None, end: str | None = None, exclude: tuple[str, ...] = ()
) -> list[str]:
    """The addresses Whereabouts hands out for a range, in its (lowest first) order; small ranges only."""
    cidr = range_text
    range_start, dash, range_end = range_text.rpartition("-")
    if dash:  # "<start>-<end>/<prefix>": the subnet of <end>, from <start> to <end>
        cidr = range_end
        start, end = range_start, range_end.partition("/")[0]
    net = ipaddress.ip_network(cidr, strict=False)
    lo, hi = int(net.network_address), int(net.broadcast_address)
    if net.max_prefixlen - net.prefixlen > 1:  # network and last address out, except /31, /32 (/127, /128)
        lo, hi = lo + 1, hi - 1
    if start is not None:
        lo = max(lo, int(ipaddress.ip_address(start)))
    if end is not None:
        hi = min(hi, int(ipaddress.ip_address(end)))
    gone = [ipaddress.ip_network(e, strict=False) for e in exclude]
    out = []
    for value in range(lo, hi + 1):
        addr = ipaddress.ip_address(value)
        if any(addr in e for e in gone) or (addr.version == 4 and value & 0xFF == 0):
            continue
        out.append(str(addr))
    return out


def address(ipc: dict[str, Any]) -> str:
    return ipc["address"].partition("/")[0]


def assert_ip(ipc: dict[str, Any], cidr: str, gateway: str | None = None) -> str:
    """One result entry: inside `cidr` with its prefix length, version set (0.3.x), the gateway as configured."""
    net = ipaddress.ip_network(cidr)
    iface = ipaddress.ip_interface(ipc["address"])
    assert iface.ip in net and iface.network.prefixlen == net.prefixlen, (ipc, cidr)
    assert ipc.get("version") == str(net.version), ipc
    assert ipc.get("gateway") == gateway, ipc
    return str(iface.ip)


def outside(gateway: str, cidr: str) -> bool:
    return ipaddress.ip_address(gateway) not in ipaddress.ip_network(cidr, strict=False)


def exhaust(
    node: Node, expected: list[str], cidr: str, gateway: str | None = None, index: int = 0
) -> list[dict[str, Any]]:
    """ADD until the range is full: exactly `expected` comes out, once each; DEL frees an address for the next ADD.

    Returns the results in the order they were handed out. `index`: which result entry is
    the range being filled (the others must still be handed out while it has room).
    """
    results = [node.add(f"mp-wa-{i}") for i in range(len(expected))]
    order = [assert_ip(r["ips"][index], cidr, gateway) for r in results]
    assert sorted(order, key=ipaddress.ip_address) == expected
    full = node.call("ADD", "mp-wa-full")
    assert "full" in full.error()["msg"], full.stdout
    node.delete("mp-wa-0")
    assert address(node.add("mp-wa-again")["ips"][index]) == order[0]
    return results


# ---- one check per example ------------------------------------------------------------------


def check_readme_example_ipam_config(node: Node, _: Ctx) -> None:
    """Inside 192.168.2.224/28 without network and broadcast; 192.168.2.229/30 (.228-.231) and .236 never."""
    expected = documented_usable("192.168.2.225/28", exclude=("192.168.2.229/30", "192.168.2.236/32"))
    assert expected == [f"192.168.2.{i}" for i in (225, 226, 227, 232, 233, 234, 235, 237, 238)]
    exhaust(node, expected, "192.168.2.224/28")


def check_range_225_28(node: Node, _: Ctx, gateway: str | None = None) -> None:
    """`range: 192.168.2.225/28` alone: .225 to .238 (network .224 and broadcast .239 never)."""
    expected = documented_usable("192.168.2.225/28")
    assert expected == [f"192.168.2.{i}" for i in range(225, 239)]
    exhaust(node, expected, "192.168.2.224/28", gateway)


def check_readme_ipv6(node: Node, _: Ctx) -> None:
    """2001::/116 (4094 addresses: not exhausted): distinct, never 2001:: or 2001::fff, gateway 2001::f:1 returned."""
    assert outside("2001::f:1", "2001::0/116")
    seen = [assert_ip(node.add(f"mp-wa-{i}")["ips"][0], "2001::/116", "2001::f:1") for i in range(12)]
    assert len(set(seen)) == len(seen)
    assert not {"2001::", "2001::fff"} & set(seen)
    node.delete("mp-wa-3")  # freed; whatever the next ADD gets, it is none of the addresses still held
    assert address(node.add("mp-wa-again")["ips"][0]) not in set(seen) - {seen[3]}


def check_multiple(node: Node, cidrs: tuple[str, ...]) -> None:
    """One address per range, in the order `range` then `ipRanges`, each with its range's prefix."""
    seen: list[tuple[str, ...]] = []
    for i in range(4):
        ips = node.add(f"mp-wa-{i}")["ips"]
        assert len(ips) == len(cidrs)
        seen.append(tuple(assert_ip(ipc, cidr) for ipc, cidr in zip(ips, cidrs, strict=True)))
    for k in range(len(cidrs)):
        assert len({row[k] for row in seen}) == len(seen)


def check_range_end_syntax(node: Node, _: Ctx) -> None:
    """`192.168.2.225-192.168.2.230/28`: exactly .225 to .230, with the /28's prefix."""
    expected = documented_usable("192.168.2.225-192.168.2.230/28")
    assert expected == [f"192.168.2.{i}" for i in range(225, 231)]
    exhaust(node, expected, "192.168.2.224/28")


def check_readme_introduction(node: Node, _: Ctx) -> None:
    """192.168.2.0/24 minus 192.168.2.0/28: .16 to .254 all handed out, .0-.15 never; Whereabouts: lowest first."""
    expected = documented_usable("192.168.2.0/24", exclude=("192.168.2.0/28",))
    assert expected[0] == "192.168.2.16" and len(expected) == 239
    first = address(node.add("mp-wa-first")["ips"][0])
    (block,) = node.blocks("192.168.2.0-24")
    # Deliberately not Whereabouts' lowest-first (README: .16 first): the node's own block first.
    assert ipaddress.ip_address(first) in ipaddress.ip_network(block), (first, block)
    node.delete("mp-wa-first")
    exhaust(node, expected, "192.168.2.0/24")


def check_etcd_example(node: Node, _: Ctx) -> None:
    """The README exclusion example with gateway 192.168.2.1 (outside the /28: returned, excludes nothing)."""
    assert outside("192.168.2.1", "192.168.2.225/28")
    expected = documented_usable("192.168.2.225/28", exclude=("192.168.2.229/30", "192.168.2.236/32"))
    exhaust(node, expected, "192.168.2.224/28", "192.168.2.1")


def check_developer_notes(node: Node, ctx: Ctx) -> None:
    """`range: 192.168.2.225/28` with gateway 192.168.2.1 (outside the /28: returned, excludes nothing)."""
    assert outside("192.168.2.1", "192.168.2.225/28")
    check_range_225_28(node, ctx, "192.168.2.1")


def check_sample_config(node: Node, _: Ctx) -> None:
    """routes copied (Go's form: a route's host bits are kept), dns copied (Whereabouts' cmdAdd)."""
    results = [node.add(f"mp-wa-{i}") for i in range(3)]
    addrs = [assert_ip(r["ips"][0], "192.168.1.0/24") for r in results]
    assert len(set(addrs)) == 3
    routes = [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.10.5.1"}, {"dst": "3ffe:ffff:0:1ff::1/64"}]
    assert all(r["routes"] == routes for r in results)
    dns = {"nameservers": ["8.8.8.8"], "domain": "example.com", "search": ["example.com"]}
    assert all(r.get("dns") == dns for r in results), results[0].get("dns")


def check_named_networks(node: Node, ctx: Ctx) -> None:
    """`network_name` separates two networks on one subnet (each a pool of its own); without it they share."""
    first = Node(ctx.example, ctx.api, ctx.tmp_path, network_name="mp-wa-net-a")
    second = Node(ctx.example, ctx.api, ctx.tmp_path, network_name="mp-wa-net-b")
    a = assert_ip(first.add("mp-wa-a0")["ips"][0], "192.168.2.224/28")
    b = assert_ip(second.add("mp-wa-b0")["ips"][0], "192.168.2.224/28")
    assert a == b  # separate pools, same node: the same first address
    expected = documented_usable("192.168.2.225/28")
    for net, other in ((first, "a"), (second, "b")):
        got = [a] + [assert_ip(net.add(f"mp-wa-{other}{i}")["ips"][0], "192.168.2.224/28") for i in range(1, 14)]
        assert sorted(got, key=ipaddress.ip_address) == expected
        assert "full" in net.call("ADD", f"mp-wa-{other}-full").error()["msg"]
    # Without network_name, two NADs (other `name`s) on the range share one pool (the proposal's problem).
    other_conf = copy.deepcopy(node.conf)
    other_conf["name"] = "mp-wa-other"
    x = assert_ip(node.add("mp-wa-x")["ips"][0], "192.168.2.224/28")
    inv = cni.run(BIN, "ADD", other_conf, container_id="mp-wa-y", ifname="net1", env=ENV)
    assert inv.ok, inv.stdout + inv.stderr
    assert address(inv.json["ips"][0]) != x


def check_dualstack_proposal(node: Node, _: Ctx) -> None:
    """ipRanges [the README exclusion example, 2001::0/116]: one IPv4 + one IPv6 per ADD until the IPv4 range is full."""
    expected = documented_usable("192.168.2.225/28", exclude=("192.168.2.229/30", "192.168.2.236/32"))
    results = exhaust(node, expected, "192.168.2.224/28", index=0)
    assert all(len(r["ips"]) == 2 for r in results)
    v6 = [assert_ip(r["ips"][1], "2001::/116") for r in results]
    assert len(set(v6)) == len(v6) and not {"2001::", "2001::fff"} & set(v6)


def check_fast_ipam(node: Node, _: Ctx) -> None:
    """`192.168.2.225/8` is 192.0.0.0/8 (prefix 8); Whereabouts: the node allocates from its own /22 slice."""
    got = [assert_ip(node.add(f"mp-wa-{i}")["ips"][0], "192.0.0.0/8") for i in range(3)]
    assert len(set(got)) == 3
    blocks = node.blocks("192.0.0.0-8")
    assert blocks and all(b.endswith("/22") for b in blocks), blocks  # node_slice_size is the block size


CHECKS: dict[str, Callable[[Node, Ctx], None]] = {
    "README.md#example-ipam-config": check_readme_example_ipam_config,
    "README.md#an-example-configuration-using-a-networkattachmentdefinition": check_range_225_28,
    "README.md#example-ipv6-config": check_readme_ipv6,
    "README.md#example-ipam-config-for-assigning-multiple-ip-addresses": lambda n, _: check_multiple(
        n, ("192.168.10.0/24", "176.168.0.0/16")
    ),
    "README.md#example-ipam-config-for-assigning-multiple-ip-addresses(with-range)": lambda n, _: check_multiple(
        n, ("abcd::/64", "192.168.10.0/24", "176.168.0.0/16")
    ),
    "README.md#example-dualstack-config": lambda n, _: check_multiple(n, ("192.168.10.0/24", "abcd::/64")),
    "README.md#range-end-syntax": check_range_end_syntax,
    "README.md#introduction": check_readme_introduction,
    "doc/extended-configuration.md#example-etcd-datastore-configuration": check_etcd_example,
    "doc/extended-configuration.md#example-flat-file-configuration": check_range_225_28,
    "doc/developer_notes.md#running-in-kube": check_developer_notes,
    "doc/sample_config.json": check_sample_config,
    "doc/proposals/named-networks.md#design": check_named_networks,
    "doc/proposals/dualstack.md#changes-in-ipam-config": check_dualstack_proposal,
    "doc/proposals/fast_ipam_by_node.md#changes-in-ipam-config": check_fast_ipam,
}


def test_every_example_has_a_check() -> None:
    assert sorted(CHECKS) == sorted(e.id for e in EXAMPLES)


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_example_allocates_as_documented(example: Example, api: K8sServer, tmp_path: Path) -> None:
    CHECKS[example.id](Node(example, api, tmp_path), Ctx(api, example, tmp_path))
    assert api.errors == []
