"""multiplane-macvlan against Debian's reference macvlan (plugins 1.1.1): same config, same outcome.

Each scenario runs the reference and ours with the same container id and ifname, each in
its own pod namespace and its own host-local dataDir. The two attachments are made one
after the other (ADD, snapshot, CHECK, DEL, snapshot; then the other plugin), because both
hang off the same master: a second live copy of an address would fail IPv6 DAD, and a
second copy of a fixed MAC is refused by the kernel.

Compared: the result (MAC, sandbox and an empty `dns` normalised away), the pod's link
(kind, mode, MTU, parent, up), its global addresses, its routes in every table but `local`
(dst, gateway, dev, table, protocol, scope, metric: identical, so nothing is ignored),
the notify/IPv6 sysctls, the host-local files, and the state after DEL.

Known reference differences, deliberately not compared (pinned by
`test_known_differences_from_reference_1_1_1`): 1.1.1 creates the macvlan with txqueuelen 0
(no `qlen`), ours keeps the kernel default 1000; 1.1.1 leaves `ndisc_notify` 0 and
`keep_addr_on_down` 0, ours sets both to 1 (as HEAD does); and the reference sends no
gratuitous ARP / unsolicited NA of its own (only the kernel's arp_notify one), ours sends one
more per address.

Ours runs through both front doors (the one-shot process and the node daemon; see
tests/integration/conftest.py): every comparison is made once per front door.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cni import Invocation, snapshot
from tests.daemon_harness import FrontDoor
from tests.topology import Topology, ip_json, ns_exec

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("via_front_door")]

REF = "/usr/lib/cni/macvlan"
OURS = "multiplane-macvlan"
CID = "mp-ctr-diff"
IFNAME = "net1"
DEFAULT_ARGS = "IgnoreUnknown=1;K8S_POD_NAME=mp"
FIXED_MAC = "02:66:00:00:00:42"

SYSCTLS = (
    "net/ipv4/conf/net1/arp_notify",
    "net/ipv6/conf/net1/disable_ipv6",
    "net/ipv6/conf/lo/disable_ipv6",
)


@dataclass
class Scenario:
    """One configuration run through both plugins."""

    id: str
    version: str
    ipam: Callable[[str], dict[str, Any]]
    mode: str | None = None
    mtu: int | None = None
    args: str = DEFAULT_ARGS
    dns: dict[str, Any] | None = None


@dataclass
class Side:
    """What one plugin produced: the ADD result and the kernel and disk state around it."""

    add: Invocation
    sandbox: str
    kernel: dict[str, Any]
    link_mac: str
    sysctls: dict[str, str]
    files: dict[str, bytes]
    check: Invocation | None
    delete: Invocation
    links_after_del: list[str]
    files_after_del: dict[str, bytes]
    extras: dict[str, Any]


def _legacy_subnet(data_dir: str) -> dict[str, Any]:
    return {"type": "host-local", "dataDir": data_dir, "subnet": "10.66.0.0/24", "routes": [{"dst": "0.0.0.0/0"}]}


def _seed_style(data_dir: str) -> dict[str, Any]:
    return {
        "type": "host-local",
        "dataDir": data_dir,
        "subnet": "10.66.0.0/24",
        "rangeStart": "10.66.0.200",
        "rangeEnd": "10.66.0.216",
        "gateway": "10.66.0.1",
        "routes": [{"dst": "0.0.0.0/0"}],
    }


def _ranges_routes(data_dir: str) -> dict[str, Any]:
    return {
        "type": "host-local",
        "dataDir": data_dir,
        "ranges": [
            [{"subnet": "10.66.0.0/24", "rangeStart": "10.66.0.50", "rangeEnd": "10.66.0.60", "gateway": "10.66.0.1"}]
        ],
        "routes": [
            {"dst": "0.0.0.0/0"},
            {"dst": "10.77.0.0/16", "gw": "10.66.0.254"},
            {"dst": "10.78.1.0/24"},
        ],
    }


def _dual_stack(data_dir: str) -> dict[str, Any]:
    return {
        "type": "host-local",
        "dataDir": data_dir,
        "ranges": [
            [{"subnet": "10.66.0.0/24", "rangeStart": "10.66.0.70", "rangeEnd": "10.66.0.80", "gateway": "10.66.0.1"}],
            [
                {
                    "subnet": "fd00:66::/64",
                    "rangeStart": "fd00:66::70",
                    "rangeEnd": "fd00:66::80",
                    "gateway": "fd00:66::1",
                }
            ],
        ],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}, {"dst": "fd00:77::/48", "gw": "fd00:66::fe"}],
    }


def _l2_only(_data_dir: str) -> dict[str, Any]:
    return {}


SCENARIOS = [
    Scenario("legacy-subnet", "1.0.0", _legacy_subnet),
    Scenario("legacy-seed-style", "1.0.0", _seed_style),
    Scenario(
        "ranges-routes-dns", "1.0.0", _ranges_routes, dns={"nameservers": ["10.66.0.53"], "search": ["mp.example"]}
    ),
    Scenario("dual-stack", "1.0.0", _dual_stack),
    Scenario("l2-only", "1.0.0", _l2_only),
    Scenario("mode-bridge-mtu1400", "1.0.0", _seed_style, mode="bridge", mtu=1400),
    Scenario("mode-private-mtu1400", "1.0.0", _seed_style, mode="private", mtu=1400),
    Scenario("mode-vepa-mtu1400", "1.0.0", _seed_style, mode="vepa", mtu=1400),
    Scenario("mac-from-cni-args", "1.0.0", _seed_style, args=f"IgnoreUnknown=1;MAC={FIXED_MAC}"),
    Scenario("v0.3.0", "0.3.0", _ranges_routes),
    Scenario("v0.3.1", "0.3.1", _ranges_routes),
    Scenario("v0.4.0", "0.4.0", _ranges_routes),
    Scenario("v0.4.0-l2-only", "0.4.0", _l2_only),
    Scenario("v0.2.0-l3", "0.2.0", _seed_style),
]


def _conf(topo: Topology, sc: Scenario, data_dir: str) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "cniVersion": sc.version,
        "name": "mp-diffnet",
        "type": "macvlan",
        "master": topo.master,
        "ipam": sc.ipam(data_dir),
    }
    if sc.mode is not None:
        conf["mode"] = sc.mode
    if sc.mtu is not None:
        conf["mtu"] = sc.mtu
    if sc.dns is not None:
        conf["dns"] = sc.dns
    return conf


def _kernel_state(pod: str) -> tuple[dict[str, Any], str]:
    """The pod's CNI link, its global addresses and its non-local routes, in comparable form; plus its MAC."""
    (link,) = ip_json("-n", pod, "-d", "link", "show", "dev", IFNAME)
    info = link.get("linkinfo", {})
    (addr_link,) = ip_json("-n", pod, "addr", "show", "dev", IFNAME)
    addresses = sorted(
        (
            {k: a.get(k) for k in ("family", "local", "prefixlen", "broadcast", "scope")}
            | {"tentative": bool(a.get("tentative")), "dadfailed": bool(a.get("dadfailed"))}
            for a in addr_link.get("addr_info", [])
            if a.get("scope") == "global"
        ),
        key=lambda a: json.dumps(a, sort_keys=True),
    )
    routes = []
    for family in ("-4", "-6"):
        for route in ip_json("-n", pod, "-d", family, "route", "show", "table", "all"):
            if route.get("table") == "local":
                continue  # kernel-made, a function of the addresses (and of the MAC for fe80::)
            route.pop("flags", None)
            routes.append(route)
    routes.sort(key=lambda r: json.dumps(r, sort_keys=True))
    state = {
        "ifname": link["ifname"],
        "kind": info.get("info_kind"),
        "mode": info.get("info_data", {}).get("mode"),
        "mtu": link["mtu"],
        "parent_ifindex": link.get("link_index"),
        "up": "UP" in link["flags"],
        "operstate": link["operstate"],
        "addresses": addresses,
        "routes": routes,
    }
    return state, link["address"]


def _sysctls(pod: str, keys: tuple[str, ...]) -> dict[str, str]:
    proc = ns_exec(pod, "cat", *(f"/proc/sys/{k}" for k in keys))
    assert proc.returncode == 0, proc.stderr
    return dict(zip(keys, proc.stdout.split(), strict=True))


def _has_check(version: str) -> bool:
    return tuple(int(p) for p in version.split(".")) >= (0, 4, 0)


def _run_side(topo: Topology, binary: str, sc: Scenario, pod: str, data_dir: str) -> Side:
    """ADD, record everything, CHECK, DEL, record again."""
    conf = _conf(topo, sc, data_dir)
    add = topo.cni(binary, "ADD", conf, pod, container_id=CID, ifname=IFNAME, args=sc.args)
    assert add.ok, f"{binary} ADD failed: {add.stdout} {add.stderr}"
    kernel, mac = _kernel_state(pod)
    sysctls = _sysctls(pod, SYSCTLS)
    extras = {
        "txqlen": ip_json("-n", pod, "link", "show", "dev", IFNAME)[0].get("txqlen", 0),
        **_sysctls(pod, ("net/ipv6/conf/net1/ndisc_notify", "net/ipv6/conf/net1/keep_addr_on_down")),
    }
    files = snapshot(data_dir)
    check = None
    if _has_check(sc.version):
        check = topo.cni(
            binary, "CHECK", conf | {"prevResult": add.json}, pod, container_id=CID, ifname=IFNAME, args=sc.args
        )
    delete = topo.cni(binary, "DEL", conf, pod, container_id=CID, ifname=IFNAME, args=sc.args)
    return Side(
        add=add,
        sandbox=topo.netns_path(pod),
        kernel=kernel,
        link_mac=mac,
        sysctls=sysctls,
        files=files,
        check=check,
        delete=delete,
        links_after_del=[link["ifname"] for link in topo.links(pod)],
        files_after_del=snapshot(data_dir),
        extras=extras,
    )


def _normalised(side: Side) -> Any:
    """The ADD result with the per-run values checked and replaced: MAC, sandbox, empty dns."""
    result = side.add.json
    for iface in result.get("interfaces", []):
        assert iface["mac"] == side.link_mac, (iface, side.link_mac)
        assert iface["sandbox"] == side.sandbox, (iface, side.sandbox)
        iface["mac"], iface["sandbox"] = "<mac>", "<sandbox>"
    if result.get("dns") == {}:
        del result["dns"]
    return result


class Runs:
    """Each scenario run once through both plugins (fresh pods and dataDirs), shared by the tests below."""

    def __init__(self, topo: Topology, workdir: Path) -> None:
        self.topo, self.workdir = topo, workdir
        self.done: dict[str, tuple[Side, Side]] = {}

    def __call__(self, sc: Scenario) -> tuple[Side, Side]:
        if sc.id not in self.done:
            ref_pod, ours_pod = self.topo.add_pod(), self.topo.add_pod()
            ref = _run_side(self.topo, REF, sc, ref_pod, str(self.workdir / f"mp-ref-{sc.id}"))
            ours = _run_side(self.topo, OURS, sc, ours_pod, str(self.workdir / f"mp-ours-{sc.id}"))
            self.done[sc.id] = (ref, ours)
        return self.done[sc.id]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, front_door: FrontDoor) -> Iterator[Runs]:
    """A topology shared by the tests of one front door (same LAN as the `topo` fixture); every namespace
    removed at the end. The scenarios run lazily, inside the tests, so through that front door."""
    workdir = tmp_path_factory.mktemp(f"mp-diff-{front_door.name}")
    topo = Topology(workdir, pods=0, lan_addrs=("10.66.0.1/24", "fd00:66::1/64"))
    try:
        yield Runs(topo, workdir)
    finally:
        topo.close()


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_add_result_matches_reference(runs: Runs, sc: Scenario) -> None:
    """ADD prints the same result as the reference once MAC, sandbox and an empty dns are normalised."""
    ref, ours = runs(sc)
    assert _normalised(ours) == _normalised(ref)
    if sc.version in ("0.1.0", "0.2.0"):
        assert "ip4" in ours.add.json and "interfaces" not in ours.add.json
    if "MAC=" in sc.args:
        assert ref.link_mac == ours.link_mac == FIXED_MAC
        assert ref.add.json["interfaces"][0]["mac"] == ours.add.json["interfaces"][0]["mac"] == FIXED_MAC


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_kernel_state_matches_reference(runs: Runs, sc: Scenario) -> None:
    """The pod's macvlan, its global addresses, routes and notify/IPv6 sysctls equal the reference's."""
    ref, ours = runs(sc)
    assert ours.kernel == ref.kernel
    assert ours.sysctls == ref.sysctls
    master = ip_json("link", "show", "dev", runs.topo.master)[0]
    assert ours.kernel["kind"] == "macvlan" and ours.kernel["up"]
    assert ours.kernel["parent_ifindex"] == master["ifindex"]
    assert ours.kernel["mode"] == (sc.mode or "bridge")
    assert ours.kernel["mtu"] == (sc.mtu or master["mtu"])
    assert not any(a["tentative"] or a["dadfailed"] for a in ours.kernel["addresses"] if a["family"] == "inet6")


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_host_local_files_match_reference(runs: Runs, sc: Scenario) -> None:
    """The host-local dataDir holds the same file names with the same contents after ADD."""
    ref, ours = runs(sc)
    assert ours.files == ref.files
    if sc.ipam is not _l2_only:
        assert any(content == f"{CID}\r\n{IFNAME}".encode() for content in ours.files.values())


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_del_leaves_same_state_as_reference(runs: Runs, sc: Scenario) -> None:
    """DEL through either plugin succeeds silently and leaves only `lo` in the pod and no reservation on disk."""
    ref, ours = runs(sc)
    for side in (ref, ours):
        assert side.delete.ok and side.delete.stdout == "", side.delete.stdout
        assert side.links_after_del == ["lo"]
    assert ours.files_after_del == ref.files_after_del
    assert all(name.endswith("lock") or "last_reserved_ip" in name for name in ours.files_after_del)


def _gatewayless_prefix_route(sc: Scenario) -> bool:
    """A non-default route without `gw`: ADD fills in the range gateway, which 1.1.1's CHECK then fails to match."""
    routes = sc.ipam("/unused").get("routes", [])
    return any(r["dst"] not in ("0.0.0.0/0", "::/0") and "gw" not in r for r in routes)


CHECK_SCENARIOS = [s for s in SCENARIOS if _has_check(s.version) and not _gatewayless_prefix_route(s)]
REF_CHECK_BUG = [s for s in SCENARIOS if _has_check(s.version) and _gatewayless_prefix_route(s)]


@pytest.mark.parametrize("sc", CHECK_SCENARIOS, ids=[s.id for s in CHECK_SCENARIOS])
def test_check_passes_on_both_for_untouched_attachment(runs: Runs, sc: Scenario) -> None:
    """CHECK with the ADD result as prevResult succeeds silently on both plugins when nothing was changed."""
    ref, ours = runs(sc)
    for side in (ref, ours):
        assert side.check is not None
        assert side.check.ok and side.check.stdout == "", side.check.stdout + side.check.stderr


@pytest.mark.parametrize("sc", REF_CHECK_BUG, ids=[s.id for s in REF_CHECK_BUG])
def test_check_of_gatewayless_prefix_route_fails_only_on_reference(runs: Runs, sc: Scenario) -> None:
    """Difference: 1.1.1 CHECK wants 10.78.1.0/24 without gateway, though its ADD routed it via the range gateway."""
    ref, ours = runs(sc)
    assert ours.check is not None and ours.check.ok and ours.check.stdout == "", ours.check.stdout
    assert ref.check is not None
    err = ref.check.error()
    assert err["msg"] == "Expected Route {Dst:{IP:10.78.1.0 Mask:ffffff00} GW:<nil>} not found in routing table"
    assert "10.78.1.0/24 via 10.66.0.1" in " ".join(f"{r['dst']} via {r.get('gateway')}" for r in ref.kernel["routes"])


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1"])
def test_check_below_0_4_0_is_refused_like_reference(topo: Topology, tmp_path: Path, version: str) -> None:
    """CHECK on a pre-0.4.0 config fails on both with code 1 'config version does not allow CHECK'."""
    errors = []
    for binary, pod in ((REF, topo.pods[0]), (OURS, topo.pods[1])):
        conf = _conf(topo, Scenario("x", version, _l2_only), str(tmp_path / "mp-unused"))
        inv = topo.cni(binary, "CHECK", conf | {"prevResult": {"cniVersion": version}}, pod, container_id=CID)
        err = inv.error()
        errors.append((err["code"], err["msg"]))
    assert errors[0] == errors[1] == (1, "config version does not allow CHECK")


def test_known_differences_from_reference_1_1_1(runs: Runs) -> None:
    """Pins the deliberate differences: txqueuelen 0 vs kernel default, ndisc_notify and keep_addr_on_down 0 vs 1."""
    sc = next(s for s in SCENARIOS if s.id == "dual-stack")
    ref, ours = runs(sc)
    assert ref.extras["txqlen"] == 0
    assert ours.extras["txqlen"] == 1000
    assert ref.extras["net/ipv6/conf/net1/ndisc_notify"] == "0"
    assert ours.extras["net/ipv6/conf/net1/ndisc_notify"] == "1"
    assert ref.extras["net/ipv6/conf/net1/keep_addr_on_down"] == "0"
    assert ours.extras["net/ipv6/conf/net1/keep_addr_on_down"] == "1"
