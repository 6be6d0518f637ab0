"""Differential tests: `multiplane-host-local` against Debian's reference `/usr/lib/cni/host-local` (1.1.1).

Every scenario runs on both binaries, each with its own fresh dataDir, and `Pair.step` asserts the
runtime-visible outcome and the on-disk state are the same (see conftest.py for exactly what is
compared). Scenario ids refer to docs in /work/shared/research: `T01`–`T63` are reference-plugins.md
§4.1/§4.5, `S13`–`S45` are the cni-spec.md §9.1/§9.2 vectors (T13–T45 there).

Deliberate differences are tested in their own functions, each naming the difference in its
docstring and asserting OUR behaviour (and what the reference does, to show the difference is real):
(a) a configured gateway inside another range's pool is never handed out (a gateway outside its
subnet is otherwise accepted like the reference, issue 11), (b) failed ADD releases only its own
reservations, (c) relative or '..' dataDir, (d) deterministic choice among requested IPs, (e) error
codes (OUR_CODE in conftest), (f) symbolic links in the state directory are never followed,
plus 0600 file modes and cniVersion 1.1.0 / GC / STATUS, which the 1.1.1 reference lacks, and the
two further differences declared in docs/host-local.md: reservations are read only from files
named like an address (no recursive walk), and CHECK compares with prevResult.

Tests at the end ("reference behaviour we do not match yet") expect the reference's behaviour in
places where we differ without that difference being declared deliberate; they fail until src/ is
fixed or the difference is declared.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from tests.cni import OURS_HOST_LOCAL, normalise, run, snapshot
from tests.differential.conftest import NET, Pair, assert_same, hl, ranges

VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0")
HL29 = {"ranges": [[{"subnet": "10.1.2.0/29", "gateway": "10.1.2.1"}]], "routes": [{"dst": "0.0.0.0/0"}]}


def ips_of(inv: Any) -> list[str]:
    return [ip["address"] for ip in json.loads(inv.stdout)["ips"]]


def files(pair: Pair, side: str = "ours", network: str = NET) -> dict[str, bytes]:
    """Reservation files of one network (lock and last_reserved_ip.* left out)."""
    prefix = f"{network}/"
    return {
        k[len(prefix) :]: v
        for k, v in snapshot(pair.dirs[side]).items()
        if k.startswith(prefix) and k[len(prefix) :] != "lock" and not k[len(prefix) :].startswith("last_reserved_ip.")
    }


# ---------------------------------------------------------------------------------------------
# reference-plugins.md §4.1: host_local_test.go end-to-end
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_T01_dual_stack_add_check_del(pair: Pair, tmp_path: Any, version: str) -> None:
    resolv = tmp_path / "mp-resolv.conf"
    resolv.write_text("nameserver 10.0.2.3\n")
    conf = hl(
        {
            "ranges": [[{"subnet": "10.1.2.0/24"}, {"subnet": "10.2.2.0/24"}], [{"subnet": "2001:db8:1::0/64"}]],
            "routes": [
                {"dst": "0.0.0.0/0"},
                {"dst": "::/0"},
                {"dst": "10.168.0.0/16", "gw": "10.1.1.1"},
                {"dst": "2001:db8:2::0/64", "gw": "2001:db8:3::1"},
            ],
            "resolvConf": str(resolv),
        },
        version=version,
    )
    out = pair.step("ADD", conf, container_id="dummy")
    for side in ("ref", "ours"):
        assert ('"version":' in out[side].stdout) == (version in ("0.3.0", "0.3.1", "0.4.0")), side
    res = json.loads(out["ours"].stdout)
    if version in ("0.1.0", "0.2.0"):
        assert res["ip4"]["ip"] == "10.1.2.2/24" and res["ip6"]["ip"] == "2001:db8:1::2/64"
    else:
        assert [(i["address"], i["gateway"]) for i in res["ips"]] == [
            ("10.1.2.2/24", "10.1.2.1"),
            ("2001:db8:1::2/64", "2001:db8:1::1"),
        ]
        assert len(res["routes"]) == 4
    assert res["dns"] == {"nameservers": ["10.0.2.3"]}
    assert files(pair) == {"10.1.2.2": b"dummy\r\neth0", "2001:db8:1::2": b"dummy\r\neth0"}
    assert pair.read("ours", f"{NET}/last_reserved_ip.0") == b"10.1.2.2"
    assert pair.read("ours", f"{NET}/last_reserved_ip.1") == b"2001:db8:1::2"
    if version in ("0.4.0", "1.0.0"):
        pair.step("CHECK", conf, container_id="dummy")
    pair.step("DEL", conf, container_id="dummy")
    assert files(pair) == {}


def test_T02_per_interface(pair: Pair) -> None:
    net0 = hl(ranges("10.1.2.0/24"), name="mynet0")
    net1 = hl(ranges("10.2.2.0/24"), name="mynet1")
    pair.step("ADD", net0, container_id="dummy", ifname="eth0")
    pair.step("ADD", net1, container_id="dummy", ifname="eth1")
    assert files(pair, network="mynet0") == {"10.1.2.2": b"dummy\r\neth0"}
    assert files(pair, network="mynet1") == {"10.2.2.2": b"dummy\r\neth1"}
    pair.step("DEL", net0, container_id="dummy", ifname="eth0")
    assert files(pair, network="mynet0") == {}
    assert files(pair, network="mynet1") == {"10.2.2.2": b"dummy\r\neth1"}


def test_T03_duplicate_add(pair: Pair) -> None:
    conf = hl(ranges("10.1.2.0/24"))
    assert ips_of(pair.step("ADD", conf, container_id="dummy")["ours"]) == ["10.1.2.2/24"]
    err = pair.step("ADD", conf, container_id="dummy")["ours"].error()
    assert err["msg"] == (
        "failed to allocate for range 0: 10.1.2.2 has been allocated to dummy, duplicate allocation is not allowed"
    )
    assert ips_of(pair.step("ADD", conf, container_id="dummy1")["ours"]) == ["10.1.2.3/24"]
    pair.step("ADD", conf, container_id="dummy")
    pair.step("DEL", conf, container_id="dummy")
    assert files(pair) == {"10.1.2.3": b"dummy1\r\neth0"}
    pair.step("DEL", conf, container_id="dummy1")
    assert files(pair) == {}


def test_T04_legacy_id_only_file_is_released(pair: Pair) -> None:
    conf = hl(ranges("10.1.2.0/24"))
    pair.step("ADD", conf, container_id="dummy")
    pair.write(f"{NET}/10.1.2.2", "dummy")
    pair.step("CHECK", conf, container_id="dummy")
    pair.step("DEL", conf, container_id="dummy")
    assert files(pair) == {}


def test_T05_del_unknown_id_with_legacy_subnet_config(pair: Pair) -> None:
    conf = hl({"subnet": "10.1.2.0/24"})
    pair.step("DEL", conf, container_id="nobody")
    # DEL creates the network directory and the lock, like the reference
    assert snapshot(pair.dirs["ours"]) == {f"{NET}/lock": b""}


def test_T06_whitespace_container_id_rejected_by_skel(pair: Pair) -> None:
    out = pair.step("ADD", hl(ranges("10.1.2.0/24")), container_id="   dummy\n ")
    assert out["ours"].error()["code"] == 4
    assert out["ours"].error()["msg"] == "invalid characters in containerID"


def test_T07_first_allocation_logs_nothing(pair: Pair) -> None:
    out = pair.step("ADD", hl(ranges("10.1.2.0/24")))
    for side in ("ref", "ours"):
        assert "Error retrieving last reserved ip" not in out[side].stderr, side


def test_T08_requested_ip_from_args(pair: Pair) -> None:
    out = pair.step("ADD", hl(ranges("10.1.2.0/24"), args={"cni": {"ips": ["10.1.2.88"]}}))
    assert ips_of(out["ours"]) == ["10.1.2.88/24"]


@pytest.mark.parametrize("version", VERSIONS)
def test_T09_requested_ips_across_sets(pair: Pair, version: str) -> None:
    conf = hl(ranges("10.1.2.0/24", "10.1.3.0/24"), version=version, args={"cni": {"ips": ["10.1.2.88", "10.1.3.77"]}})
    if version in ("0.1.0", "0.2.0"):
        out = pair.step("ADD", conf, code_key="config: too many sets for 0.x")
        assert out["ours"].error()["msg"] == f"CNI version {version} does not support more than 1 address per family"
        assert snapshot(pair.dirs["ours"]) == {}
    else:
        assert ips_of(pair.step("ADD", conf)["ours"]) == ["10.1.2.88/24", "10.1.3.77/24"]


def test_T10_requested_ips_in_multi_range_set_and_v6(pair: Pair) -> None:
    conf = hl(
        ranges(["10.16.1.0/24", "10.1.2.0/24"], "2001:db8:1::/48"),
        args={"cni": {"ips": ["10.1.2.88", "2001:db8:1::999"]}},
    )
    assert ips_of(pair.step("ADD", conf)["ours"]) == ["10.1.2.88/24", "2001:db8:1::999/48"]


@pytest.mark.parametrize("version", VERSIONS)
def test_T11_two_requested_ips_for_one_set_deliberate_difference_d(pair: Pair, version: str) -> None:
    """Deliberate difference (d): the reference picks one of several requested IPs that fit a range set
    at random (Go map order), so the IP it reports as left over is random; ours takes the first in
    request order, so `10.1.2.88` goes to set 0 and `10.1.2.77` is reported. Only the message prefix
    and the names of the files left behind are compared with the reference."""
    conf = hl(ranges("10.1.2.0/24", "10.1.3.0/24"), version=version, args={"cni": {"ips": ["10.1.2.88", "10.1.2.77"]}})
    out = pair.raw("ADD", conf)
    if version in ("0.1.0", "0.2.0"):
        assert_same(out["ref"], out["ours"], "config: too many sets for 0.x")
        return
    ref, ours = out["ref"].error(), out["ours"].error()
    prefix = "failed to allocate all requested IPs: 10.1.2."
    assert ref["msg"].startswith(prefix) and ref["msg"][len(prefix) :] in ("88", "77")
    assert ours["msg"] == "failed to allocate all requested IPs: 10.1.2.77"
    assert ours["code"] == ref["code"] == 999
    snaps = pair.snapshots()
    assert (
        sorted(snaps["ours"])
        == sorted(snaps["ref"])
        == [
            f"{NET}/last_reserved_ip.0",
            f"{NET}/last_reserved_ip.1",
            f"{NET}/lock",
        ]
    )
    assert snaps["ours"][f"{NET}/last_reserved_ip.0"] == b"10.1.2.88"
    assert snaps["ref"][f"{NET}/last_reserved_ip.0"] in (b"10.1.2.88", b"10.1.2.77")
    assert snaps["ours"][f"{NET}/last_reserved_ip.1"] == snaps["ref"][f"{NET}/last_reserved_ip.1"] == b"10.1.3.2"
    pair.assert_our_modes()


# ---------------------------------------------------------------------------------------------
# reference-plugins.md §4.5: extras verified on the 1.1.1 binary
# ---------------------------------------------------------------------------------------------


def test_T48_requested_gateway(pair: Pair) -> None:
    out = pair.step("ADD", hl(ranges("10.1.2.0/24")), args="IP=10.1.2.1")
    assert out["ours"].error()["msg"] == "failed to allocate for range 0: requested ip 10.1.2.1 is subnet's gateway"


def test_T49_network_and_broadcast_requests_advance_other_sets(pair: Pair) -> None:
    conf = hl(ranges("10.1.2.0/24", "10.1.3.0/24"))
    out = pair.step("ADD", conf, args="IP=10.1.2.0")
    assert out["ours"].error()["msg"] == "failed to allocate all requested IPs: 10.1.2.0"
    assert files(pair) == {}
    assert pair.read("ours", f"{NET}/last_reserved_ip.0") == b"10.1.2.2"
    assert pair.read("ours", f"{NET}/last_reserved_ip.1") == b"10.1.3.2"
    out = pair.step("ADD", conf, args="IP=10.1.2.255")
    assert out["ours"].error()["msg"] == "failed to allocate all requested IPs: 10.1.2.255"
    assert pair.read("ours", f"{NET}/last_reserved_ip.0") == b"10.1.2.3"
    assert ips_of(pair.step("ADD", conf)["ours"]) == ["10.1.2.4/24", "10.1.3.4/24"]


def test_T50_requested_outside_and_taken(pair: Pair) -> None:
    conf = hl(ranges("10.1.2.0/24"))
    out = pair.step("ADD", conf, args="IP=10.1.9.50")
    assert out["ours"].error()["msg"] == "failed to allocate all requested IPs: 10.1.9.50"
    pair.step("ADD", conf, container_id="c2", args="IP=10.1.2.50")
    out = pair.step("ADD", conf, container_id="c3", args="IP=10.1.2.50")
    assert out["ours"].error()["msg"] == (
        "failed to allocate for range 0: requested IP address 10.1.2.50 is not available in range set "
        "10.1.2.1-10.1.2.254"
    )


@pytest.mark.parametrize(
    ("cni_args", "code_key"),
    [
        ("ip=10.1.2.5", "args: unknown key"),
        ("K8S_POD_NAME=x;IP=10.1.2.11", "args: unknown key"),
        ("IgnoreUnknown=true;K8S_POD_NAME=x;IP=10.1.3.11", None),
        ("IgnoreUnknown=TRUE;K8S_POD_NAME=x", None),
        ("IP=10.1.2.10;", "args: invalid pair"),
        ("IP=10.1.2.10=1", "args: invalid pair"),
        ("IgnoreUnknown=yes", "args: bad bool"),
        ("IgnoreUnknown=1;IP=bogus", "args: bad value"),
        ("IP=10.1.2.5;IP=10.1.2.6", None),
        ("IP=10.1.2.7/16", None),
        ("IP=", None),
        ("=", "args: unknown key"),
    ],
)
def test_T51_cni_args(pair: Pair, cni_args: str, code_key: str | None) -> None:
    """CNI_ARGS parsing (types.LoadArgs). Deliberate difference (e): our CNI_ARGS errors are code 4."""
    pair.step("ADD", hl(ranges(["10.1.2.0/24", "10.1.3.0/24"])), args=cni_args, code_key=code_key)


@pytest.mark.parametrize("command", ["DEL", "CHECK"])
def test_T51_cni_args_errors_fail_del_and_check(pair: Pair, command: str) -> None:
    """Deliberate difference (e): code 4 for CNI_ARGS errors, on DEL and CHECK too."""
    out = pair.step(command, hl(ranges("10.1.2.0/24")), args="IP=bogus", code_key="args: bad value")
    assert out["ours"].error()["msg"] == 'ARGS: error parsing value of pair "IP=bogus": invalid IP address bogus'


@pytest.mark.parametrize("version", ["0.2.0", "0.4.0", "1.0.0"])
@pytest.mark.parametrize(
    "ipam",
    [
        pytest.param({"ranges": [[{"subnet": "10.0.0.0/24", "gateway": "10.200.0.1"}]]}, id="ranges"),
        pytest.param({"subnet": "10.0.0.0/24", "gateway": "10.0.1.1"}, id="legacy-range"),
        pytest.param({"ranges": [[{"subnet": "10.0.0.0/24", "gateway": "fd00::1"}]]}, id="other-family"),
        pytest.param({"ranges": [[{"subnet": "fd00:1::/64", "gateway": "fe80::1"}]]}, id="ipv6-link-local"),
    ],
)
def test_T52_gateway_outside_subnet_accepted(pair: Pair, ipam: dict[str, Any], version: str) -> None:
    """Issue 11 (was deliberate difference (a)): a gateway outside its subnet (point-to-point and
    on-link set-ups) is accepted like the reference: same results and files through ADD, CHECK and
    DEL; the subnet's first address is handed out, as there. Ours also writes one warning line to
    stderr per invocation and nothing else (stdout is the result only)."""
    conf = hl({**ipam, "routes": [{"dst": "0.0.0.0/0"}]}, version=version)
    first = pair.step("ADD", conf, container_id="c1")
    second = pair.step("ADD", conf, container_id="c2")
    for out in (first, second):
        err = out["ours"].stderr
        assert err.count("\n") == 1 and err.endswith("\n"), err
        assert "warning" in err and " is outside subnet " in err, err
    addresses = [ip["address"] for ip in _ips(json.loads(first["ours"].stdout))]
    assert addresses[0].split("/")[0] in ("10.0.0.1", "fd00:1::1")
    if version != "0.2.0":
        pair.step("CHECK", conf, container_id="c1")
    pair.step("DEL", conf, container_id="c1")
    pair.step("DEL", conf, container_id="c2")


def _ips(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The addresses of a result in any version (0.2.0 has ip4/ip6, later ones `ips`)."""
    if "ips" in result:
        return list(result["ips"])
    return [{"address": result[k]["ip"]} for k in ("ip4", "ip6") if k in result]


def test_T52_gateway_in_another_ranges_pool_never_handed_out_deliberate_difference_a(pair: Pair) -> None:
    """Deliberate difference (a), now narrower: range 0's gateway 10.0.1.2 lies inside range 1's pool.
    The reference skips only each range's own gateway and hands 10.0.1.2 to the third pod; ours never
    hands out a configured gateway, so the set holds two addresses, not three."""
    conf = hl({"ranges": [[{"subnet": "10.0.0.0/30", "gateway": "10.0.1.2"}, {"subnet": "10.0.1.0/30"}]]})
    pair.step("ADD", conf, container_id="c1")
    pair.step("ADD", conf, container_id="c2")
    out = pair.raw("ADD", conf, container_id="c3")
    assert json.loads(out["ref"].stdout)["ips"] == [{"address": "10.0.1.2/30", "gateway": "10.0.1.1"}]
    assert out["ours"].error()["msg"] == (
        "failed to allocate for range 0: no IP addresses available in range set: 10.0.0.1-10.0.0.2,10.0.1.1-10.0.1.2"
    )
    out = pair.raw("ADD", conf, container_id="c4", args="IP=10.0.1.2")
    assert out["ours"].error()["msg"] == "failed to allocate for range 0: requested ip 10.0.1.2 is a configured gateway"
    assert sorted(files(pair)) == ["10.0.0.1", "10.0.0.2"]


def test_T53_explicit_bounds_hand_out_network_and_broadcast(pair: Pair) -> None:
    conf = hl(
        {
            "ranges": [
                [{"subnet": "10.13.0.0/29", "gateway": "10.13.0.3", "rangeStart": "10.13.0.0", "rangeEnd": "10.13.0.7"}]
            ]
        }
    )
    got = [ips_of(pair.step("ADD", conf, container_id=f"c{i}")["ours"])[0] for i in range(7)]
    assert got == [f"10.13.0.{i}/29" for i in (0, 1, 2, 4, 5, 6, 7)]
    out = pair.step("ADD", conf, container_id="c7")
    assert out["ours"].error()["msg"] == (
        "failed to allocate for range 0: no IP addresses available in range set: 10.13.0.0-10.13.0.7"
    )


def test_T54_exhaustion_and_reuse_after_del(pair: Pair) -> None:
    conf = hl(ranges("10.0.0.0/29"))
    got = [ips_of(pair.step("ADD", conf, container_id=f"c{i}")["ours"])[0] for i in range(1, 6)]
    assert got == [f"10.0.0.{i}/29" for i in range(2, 7)]
    out = pair.step("ADD", conf, container_id="c6")
    assert out["ours"].error()["msg"] == (
        "failed to allocate for range 0: no IP addresses available in range set: 10.0.0.1-10.0.0.6"
    )
    pair.step("DEL", conf, container_id="c2")
    assert ips_of(pair.step("ADD", conf, container_id="c7")["ours"]) == ["10.0.0.3/29"]


def test_T55_failed_add_releases_only_its_own_deliberate_difference_b(pair: Pair) -> None:
    """Deliberate difference (b): a failed ADD releases only what that ADD reserved. The reference's
    ReleaseByID removes every file of the container/ifname, including the two addresses of the
    earlier successful ADD. Messages and the round-robin cursor still agree."""
    conf = hl(ranges("10.0.0.0/24", "10.0.1.0/24"))
    assert ips_of(pair.step("ADD", conf, container_id="c1")["ours"]) == ["10.0.0.2/24", "10.0.1.2/24"]
    out = pair.raw("ADD", conf, container_id="c1", args="IP=10.0.0.50")
    ref, ours = out["ref"].error(), out["ours"].error()
    msg = "failed to allocate for range 1: 10.0.1.2 has been allocated to c1, duplicate allocation is not allowed"
    assert ref["msg"] == ours["msg"] == msg
    assert ref["code"] == ours["code"] == 999
    assert files(pair, "ref") == {}
    assert files(pair, "ours") == {"10.0.0.2": b"c1\r\neth0", "10.0.1.2": b"c1\r\neth0"}
    for side in ("ref", "ours"):
        assert pair.read(side, f"{NET}/last_reserved_ip.0") == b"10.0.0.50", side
    pair.assert_our_modes()


def test_T56_requested_ip_bypasses_duplicate_check(pair: Pair) -> None:
    conf = hl(ranges("10.7.0.0/24"))
    pair.step("ADD", conf, container_id="d1")
    assert ips_of(pair.step("ADD", conf, container_id="d1", args="IP=10.7.0.77")["ours"]) == ["10.7.0.77/24"]
    assert files(pair) == {"10.7.0.2": b"d1\r\neth0", "10.7.0.77": b"d1\r\neth0"}
    pair.step("ADD", conf, container_id="d1")  # the duplicate error names the first file
    pair.step("CHECK", conf, container_id="d1")
    pair.step("DEL", conf, container_id="d1")
    assert files(pair) == {}


def test_T57_ipv6_small_subnet_and_canonical_names(pair: Pair) -> None:
    conf = hl(ranges("2001:db8:1::/126"))
    got = [ips_of(pair.step("ADD", conf, container_id=f"c{i}")["ours"])[0] for i in range(2)]
    assert got == ["2001:db8:1::2/126", "2001:db8:1::3/126"]
    out = pair.step("ADD", conf, container_id="c2")
    assert out["ours"].error()["msg"] == (
        "failed to allocate for range 0: no IP addresses available in range set: 2001:db8:1::1-2001:db8:1::3"
    )
    conf64 = hl(ranges("2001:db8:1::/64"), name="v6net")
    pair.step("ADD", conf64, container_id="c9", args="IP=2001:DB8:1::FFFF")
    assert files(pair, network="v6net") == {"2001:db8:1::ffff": b"c9\r\neth0"}
    assert pair.read("ours", "v6net/last_reserved_ip.0") == b"2001:db8:1::ffff"
    out = pair.step("ADD", conf64, container_id="c10", args="IP=2001:db8:1:0:0:0:0:ffff")
    assert out["ours"].error()["msg"] == (
        "failed to allocate for range 0: requested IP address 2001:db8:1::ffff is not available in range set "
        "2001:db8:1::1-2001:db8:1:0:ffff:ffff:ffff:ffff"
    )


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_T58_legacy_result_shape(pair: Pair, tmp_path: Any, version: str) -> None:
    resolv = tmp_path / "mp-resolv.conf"
    resolv.write_text("nameserver 10.0.2.3\nsearch example.net\n")
    conf = hl(
        {
            **ranges("10.1.2.0/24", "fd00:1::/64"),
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}, {"dst": "10.9.0.0/16", "gw": "10.1.2.9"}],
            "resolvConf": str(resolv),
        },
        version=version,
    )
    out = pair.step("ADD", conf)
    res = json.loads(out["ours"].stdout)
    assert res["cniVersion"] == version
    assert res["ip4"] == {
        "ip": "10.1.2.2/24",
        "gateway": "10.1.2.1",
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.9.0.0/16", "gw": "10.1.2.9"}],
    }
    assert res["ip6"] == {"ip": "fd00:1::2/64", "gateway": "fd00:1::1", "routes": [{"dst": "::/0"}]}
    assert res["dns"] == {"nameservers": ["10.0.2.3"], "search": ["example.net"]}


def test_T59_range_set_order_runtime_legacy_ranges(pair: Pair) -> None:
    conf = hl(
        {"subnet": "10.10.0.0/24", **ranges("10.11.0.0/24")},
        runtimeConfig={"irrelevant": "a", "ipRanges": [[{"subnet": "10.12.0.0/24"}]]},
    )
    assert ips_of(pair.step("ADD", conf)["ours"]) == ["10.12.0.2/24", "10.10.0.2/24", "10.11.0.2/24"]
    for idx, addr in enumerate((b"10.12.0.2", b"10.10.0.2", b"10.11.0.2")):
        assert pair.read("ours", f"{NET}/last_reserved_ip.{idx}") == addr


def test_T60_check_unknown_and_check_version_gate(pair: Pair) -> None:
    conf = hl(ranges("10.1.2.0/24"))
    out = pair.step("CHECK", conf, container_id="cX")
    assert out["ours"].error()["msg"] == "host-local: Failed to find address added by container cX"
    out = pair.step("CHECK", hl(ranges("10.1.2.0/24"), version="0.3.1"))
    assert (out["ours"].error()["code"], out["ours"].error()["msg"]) == (1, "config version does not allow CHECK")


@pytest.mark.parametrize(
    ("ipam", "top", "code_key", "msg"),
    [
        (None, {}, "config: no ipam", "IPAM config missing 'ipam' key"),
        ({}, {}, "config: no ranges", "no IP ranges specified"),
        ({"ranges": []}, {}, "config: no ranges", "no IP ranges specified"),
        ({"rangeStart": "10.0.0.5"}, {}, "config: no ranges", "no IP ranges specified"),
        ({"ranges": [[]]}, {}, "config: invalid range set", "invalid range set 0: empty range set"),
        ({"ranges": [None]}, {}, "config: invalid range set", "invalid range set 0: empty range set"),
        (
            {"ranges": [[{"rangeStart": "10.0.0.5"}]]},
            {},
            "config: invalid range set",
            "invalid range set 0: IP <nil> not v4 nor v6",
        ),
        ({"ranges": [[{"subnet": "foo"}]]}, {}, "config: bad CIDR", "invalid CIDR address: foo"),
        ({"subnet": "10.0.0.0/33"}, {}, "config: bad CIDR", "invalid CIDR address: 10.0.0.0/33"),
        (
            {"ranges": [[{"subnet": "10.0.0.0/24", "gateway": "bogus"}]]},
            {},
            "config: bad IP",
            "invalid IP address: bogus",
        ),
        (
            {"ranges": [[{"subnet": "10.0.0.0/31"}]]},
            {},
            "config: invalid range set",
            "invalid range set 0: Network 10.0.0.0/31 too small to allocate from",
        ),
        (
            {"ranges": [[{"subnet": "fd00::/127"}]]},
            {},
            "config: invalid range set",
            "invalid range set 0: Network fd00::/127 too small to allocate from",
        ),
        (
            {"ranges": [[{"subnet": "::ffff:10.0.0.0/120"}]]},
            {},
            "config: invalid range set",
            "invalid range set 0: IPNet IP and Mask version mismatch",
        ),
        (
            {"ranges": [[{"subnet": "10.0.2.12/24"}]]},
            {},
            "config: invalid range set",
            (
                "invalid range set 0: Network has host bits set. "
                "For a subnet mask of length 24 the network address is 10.0.2.0"
            ),
        ),
        (
            {"ranges": [[{"subnet": "10.0.2.0/24", "rangeStart": "10.0.3.0"}]]},
            {},
            "config: invalid range set",
            "invalid range set 0: RangeStart 10.0.3.0 not in network 10.0.2.0/24",
        ),
        (
            {"ranges": [[{"subnet": "10.0.2.0/24", "rangeEnd": "10.0.4.0"}]]},
            {},
            "config: invalid range set",
            "invalid range set 0: RangeEnd 10.0.4.0 not in network 10.0.2.0/24",
        ),
        (
            {"ranges": [[{"subnet": "10.0.2.0/24", "rangeStart": "10.0.2.50", "rangeEnd": "10.0.2.40"}]]},
            {},
            "config: invalid range set",
            "invalid range set 0: RangeStart 10.0.2.50 not in network 10.0.2.0/24",
        ),
        (
            {"ranges": [[{"subnet": "10.0.2.0/24", "rangeStart": "fd00::1"}]]},
            {},
            "config: invalid range set",
            "invalid range set 0: RangeStart fd00::1 not in network 10.0.2.0/24",
        ),
        (
            {"ranges": [[{"subnet": "10.1.0.0/22"}, {"subnet": "10.1.2.0/24"}]]},
            {},
            "config: invalid range set",
            "invalid range set 0: subnets 10.1.0.1-10.1.3.254 and 10.1.2.1-10.1.2.254 overlap",
        ),
        (
            {"ranges": [[{"subnet": "10.1.0.0/22"}, {"subnet": "2001:db8:5::/64"}]]},
            {},
            "config: invalid range set",
            "invalid range set 0: mixed address families",
        ),
        (
            ranges(["10.1.2.0/24", "10.2.2.0/24"], ["10.1.4.0/24", "10.1.6.0/24", "10.1.8.0/24", "10.1.2.0/24"]),
            {},
            "config: range sets overlap",
            "range set 0 overlaps with 1",
        ),
        (
            ranges("10.0.0.0/24"),
            {"runtimeConfig": {"ipRanges": [[{"subnet": "10.0.0.0/24"}]]}},
            "config: range sets overlap",
            "range set 0 overlaps with 1",
        ),
        (
            ranges("10.0.0.0/24"),
            {"args": {"cni": {"ips": ["bogus"]}}},
            "config: bad requested IP",
            "invalid IP address bogus",
        ),
        (
            ranges("10.0.0.0/24"),
            {"runtimeConfig": {"ips": ["10.0.0.300"]}},
            "config: bad requested IP",
            "invalid IP address 10.0.0.300",
        ),
        (
            ranges("10.0.0.0/24"),
            {"runtimeConfig": {"ips": ["010.0.0.9"]}},
            "config: bad requested IP",
            "invalid IP address 010.0.0.9",
        ),
        (
            {"ranges": "x"},
            {},
            "config: JSON type",
            "json: cannot unmarshal string into Go struct field IPAMConfig.ipam.ranges of type []allocator.RangeSet",
        ),
        (
            {"ranges": ["x"]},
            {},
            "config: JSON type",
            "json: cannot unmarshal string into Go struct field IPAMConfig.ipam.ranges of type allocator.RangeSet",
        ),
        (
            {**ranges("10.0.0.0/24"), "routes": "x"},
            {},
            "config: JSON type",
            "json: cannot unmarshal string into Go struct field IPAMConfig.ipam.routes of type []*types.Route",
        ),
        ({**ranges("10.0.0.0/24"), "routes": [{"dst": "foo"}]}, {}, "config: bad CIDR", "invalid CIDR address: foo"),
        (
            {**ranges("10.0.0.0/24"), "routes": [{"dst": "10.0.0.0/8", "gw": "bogus"}]},
            {},
            "config: bad IP",
            "invalid IP address: bogus",
        ),
        (
            {**ranges("10.0.0.0/24"), "dataDir": 5},
            {},
            "config: JSON type",
            "json: cannot unmarshal number into Go struct field IPAMConfig.ipam.dataDir of type string",
        ),
        (
            {**ranges("10.0.0.0/24"), "resolvConf": 5},
            {},
            "config: JSON type",
            "json: cannot unmarshal number into Go struct field IPAMConfig.ipam.resolvConf of type string",
        ),
        (
            ranges("10.0.0.0/24"),
            {"args": {"cni": {"ips": "x"}}},
            "config: JSON type",
            "json: cannot unmarshal string into Go struct field IPAMArgs.args.cni.ips of type []*ip.IP",
        ),
    ],
)
def test_T61_config_errors(pair: Pair, ipam: Any, top: dict[str, Any], code_key: str, msg: str) -> None:
    """Config errors (T42–T45 of §4.4 and T61). Deliberate difference (e): ours are code 7, the
    reference's 999. Nothing is written to disk by either."""
    for command in ("ADD", "DEL"):
        out = pair.step(command, hl(ipam, **top), code_key=code_key)
        assert out["ours"].error()["msg"] == msg
        assert snapshot(pair.dirs["ours"]) == {}


def test_T61_resolv_conf_missing(pair: Pair, tmp_path: Any) -> None:
    """Deliberate difference (e): a missing resolvConf is a config error, code 7 (reference 999)."""
    missing = tmp_path / "mp-no-such-resolv.conf"
    out = pair.step(
        "ADD", hl({**ranges("10.0.0.0/24"), "resolvConf": str(missing)}), code_key="config: resolvConf missing"
    )
    assert out["ours"].error()["msg"] == f"open {missing}: no such file or directory"


def test_T63_output_bytes(pair: Pair) -> None:
    """1.1.1 output layout (MarshalIndent, 4 spaces, struct key order, no trailing newline); we omit
    only the empty `dns` object, as plugins ≥ v1.6 do."""
    out = pair.step("ADD", hl(HL29))
    ref = json.loads(out["ref"].stdout)
    assert out["ref"].stdout.endswith("}") and not out["ours"].stdout.endswith("\n")
    assert out["ours"].stdout == json.dumps(normalise(ref), indent=4)


# ---------------------------------------------------------------------------------------------
# cni-spec.md §9.1 (host-local relevant) and §9.2 vectors T22–T42 (S22–S42 here)
# ---------------------------------------------------------------------------------------------


def test_S13_incompatible_version(pair: Pair) -> None:
    """Same code 1 and message; the supported-version list in `details` differs because we also
    support 1.1.0 (the reference 1.1.1 stops at 1.0.0)."""
    out = pair.raw("ADD", hl(HL29, version="9.9.9"))
    ref, ours = out["ref"].error(), out["ours"].error()
    assert (ours["code"], ours["msg"]) == (ref["code"], ref["msg"]) == (1, "incompatible CNI versions")
    assert ref["details"] == 'config is "9.9.9", plugin supports ["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0"]'
    assert (
        ours["details"]
        == 'config is "9.9.9", plugin supports ["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0" "1.1.0"]'
    )


def test_S14_missing_cni_version_means_0_1_0(pair: Pair) -> None:
    out = pair.step("ADD", hl(HL29, version=None))
    assert json.loads(out["ours"].stdout) == {
        "cniVersion": "0.1.0",
        "ip4": {"ip": "10.1.2.2/29", "gateway": "10.1.2.1", "routes": [{"dst": "0.0.0.0/0"}]},
    }


def test_S22_to_S32_basic_lifecycle(pair: Pair) -> None:
    conf = hl(HL29, type="macvlan", dns={"nameservers": ["10.1.2.1"]})
    # S22: no interfaces, no ips[].interface, top-level dns not echoed
    out = pair.step("ADD", conf)
    assert json.loads(out["ours"].stdout) == {
        "cniVersion": "1.0.0",
        "ips": [{"address": "10.1.2.2/29", "gateway": "10.1.2.1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
    }
    assert snapshot(pair.dirs["ours"]) == {
        f"{NET}/10.1.2.2": b"ctr1\r\neth0",
        f"{NET}/last_reserved_ip.0": b"10.1.2.2",
        f"{NET}/lock": b"",
    }
    # S23: duplicate
    pair.step("ADD", conf)
    # S24 / S25 / S26: other versions
    out = pair.step("ADD", {**conf, "cniVersion": "0.4.0"}, container_id="ctr2")
    assert json.loads(out["ours"].stdout)["ips"] == [{"version": "4", "address": "10.1.2.3/29", "gateway": "10.1.2.1"}]
    out = pair.step("ADD", {**conf, "cniVersion": "0.2.0"}, container_id="ctr3")
    assert json.loads(out["ours"].stdout)["ip4"]["ip"] == "10.1.2.4/29"
    out = pair.step("ADD", {**conf, "cniVersion": "0.3.1"}, container_id="ctr4")
    assert json.loads(out["ours"].stdout)["cniVersion"] == "0.3.1"
    # S27: exhaustion
    pair.step("ADD", conf, container_id="ctr5")
    out = pair.step("ADD", conf, container_id="ctr6")
    assert out["ours"].error()["msg"] == (
        "failed to allocate for range 0: no IP addresses available in range set: 10.1.2.1-10.1.2.6"
    )
    # S28: CHECK
    assert pair.step("CHECK", conf)["ours"].stdout == ""
    # S29: DEL twice
    pair.step("DEL", conf)
    pair.step("DEL", conf)
    assert "10.1.2.2" not in files(pair)
    # S32: CHECK after DEL
    out = pair.step("CHECK", conf)
    assert out["ours"].error()["msg"] == "host-local: Failed to find address added by container ctr1"


def test_S30_S31_del_environment(pair: Pair) -> None:
    conf = hl(HL29)
    pair.step("ADD", conf)
    pair.step("DEL", conf, netns=None)
    pair.step("ADD", conf)
    pair.step("DEL", conf, netns="")
    assert files(pair) == {}
    out = pair.step("DEL", conf, ifname=None)
    assert (out["ours"].error()["code"], out["ours"].error()["msg"]) == (
        4,
        "required env variables [CNI_IFNAME] missing",
    )


def test_S33_to_S37_cni_args(pair: Pair) -> None:
    """Deliberate difference (e): CNI_ARGS errors are code 4 (reference 999)."""
    conf = hl(HL29)
    assert ips_of(pair.step("ADD", conf, container_id="ctr7", args="IP=10.1.2.3")["ours"]) == ["10.1.2.3/29"]
    out = pair.step("ADD", conf, container_id="ctr9", args="FOO=bar", code_key="args: unknown key")
    assert out["ours"].error()["msg"] == 'ARGS: unknown args ["FOO=bar"]'
    pair.step(
        "ADD",
        conf,
        container_id="ctr8",
        args=(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p1;K8S_POD_INFRA_CONTAINER_ID=ctr8;K8S_POD_UID=u-1"
        ),
    )
    out = pair.step("ADD", conf, container_id="ctr9", args="IgnoreUnknown=1;", code_key="args: invalid pair")
    assert out["ours"].error()["msg"] == 'ARGS: invalid pair ""'
    out = pair.step("ADD", conf, container_id="ctr9", args="ignoreunknown=1;FOO=bar", code_key="args: unknown key")
    assert out["ours"].error()["msg"] == 'ARGS: unknown args ["ignoreunknown=1" "FOO=bar"]'


def test_S38_to_S41_net2(pair: Pair) -> None:
    net2 = {
        "ranges": [
            [{"subnet": "10.5.0.0/24", "rangeStart": "10.5.0.10", "rangeEnd": "10.5.0.20"}],
            [{"subnet": "fd00:5::/64"}],
        ]
    }
    out = pair.step("ADD", hl(net2, runtimeConfig={"ips": ["10.5.0.15/24"]}), container_id="n1")
    assert json.loads(out["ours"].stdout)["ips"] == [
        {"address": "10.5.0.15/24", "gateway": "10.5.0.1"},
        {"address": "fd00:5::2/64", "gateway": "fd00:5::1"},
    ]
    out = pair.step("ADD", hl(net2, args={"cni": {"ips": ["10.5.0.16"]}}), container_id="n2")
    assert ips_of(out["ours"])[0] == "10.5.0.16/24"
    out = pair.step("ADD", hl(net2), container_id="n3", args="IP=10.9.9.9")
    assert out["ours"].error()["msg"] == "failed to allocate all requested IPs: 10.9.9.9"
    assert all(content != b"n3\r\neth0" for content in files(pair).values())
    out = pair.step("ADD", hl(net2, version="0.2.0"), container_id="n4")
    res = json.loads(out["ours"].stdout)
    assert res["ip4"]["gateway"] == "10.5.0.1" and res["ip6"]["gateway"] == "fd00:5::1"
    assert res["ip4"]["ip"].startswith("10.5.0.") and res["ip6"]["ip"].startswith("fd00:5::")


def test_S42_no_ipam(pair: Pair) -> None:
    """Deliberate difference (e): code 7 (reference 999)."""
    out = pair.step("ADD", hl(None), code_key="config: no ipam")
    assert out["ours"].error()["msg"] == "IPAM config missing 'ipam' key"


# ---------------------------------------------------------------------------------------------
# On-disk interoperability: state written by one is read correctly by the other (same dataDir)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "expected"), [(b"10.1.2.4", "10.1.2.5/24"), (b"10.1.2.4\n", "10.1.2.2/24")])
def test_last_reserved_ip_read_untrimmed(pair: Pair, content: bytes, expected: str) -> None:
    pair.write(f"{NET}/last_reserved_ip.0", content)
    assert ips_of(pair.step("ADD", hl(ranges("10.1.2.0/24")))["ours"]) == [expected]


def test_lf_only_and_padded_contents(pair: Pair) -> None:
    """LF-only content never matches; surrounding whitespace is trimmed before comparing."""
    conf = hl(ranges("10.1.2.0/24"))
    pair.write(f"{NET}/10.1.2.9", "yy\neth0")
    pair.write(f"{NET}/10.1.2.10", "  zz\r\neth0\n\n")
    pair.step("CHECK", conf, container_id="yy")
    pair.step("DEL", conf, container_id="yy")
    pair.step("CHECK", conf, container_id="zz")
    pair.step("ADD", conf, container_id="zz")
    pair.step("DEL", conf, container_id="zz")
    assert files(pair) == {"10.1.2.9": b"yy\neth0"}


def test_del_and_check_on_fresh_dir_create_dir_and_lock(pair: Pair) -> None:
    conf = hl(ranges("10.1.2.0/24"))
    pair.step("CHECK", conf)
    assert snapshot(pair.dirs["ours"]) == {f"{NET}/lock": b""}
    pair.step("DEL", conf)


def test_del_other_ifname_untouched(pair: Pair) -> None:
    conf = hl(ranges("10.1.2.0/24"))
    pair.step("ADD", conf, container_id="c1", ifname="eth0")
    pair.step("ADD", conf, container_id="c1", ifname="net1")
    pair.step("DEL", conf, container_id="c1", ifname="eth0")
    assert files(pair) == {"10.1.2.3": b"c1\r\nnet1"}
    pair.step("CHECK", conf, container_id="c1", ifname="eth0")
    pair.step("CHECK", conf, container_id="c1", ifname="net1")


@pytest.mark.parametrize("first", ["ref", "ours"])
def test_shared_data_dir_alternating(tmp_path: Any, reference_host_local: str, first: str) -> None:
    """One dataDir, the two binaries taking turns: each honours the other's reservations and cursor."""
    data = tmp_path / "mp-shared"
    conf = hl(ranges("10.1.2.0/29"))
    conf["ipam"]["dataDir"] = str(data)
    bins = {"ref": reference_host_local, "ours": OURS_HOST_LOCAL}
    order = [first, "ours" if first == "ref" else "ref"] * 3
    got = []
    for i, side in enumerate(order[:5]):
        inv = run(bins[side], "ADD", conf, container_id=f"c{i}")
        assert inv.ok, inv.stdout
        got.append(ips_of(inv)[0])
    assert got == [f"10.1.2.{i}/29" for i in range(2, 7)]
    err = run(bins[order[5]], "ADD", conf, container_id="c5").error()
    assert err["msg"] == "failed to allocate for range 0: no IP addresses available in range set: 10.1.2.1-10.1.2.6"
    for i, side in enumerate(order[:5]):
        other = "ours" if side == "ref" else "ref"
        assert run(bins[other], "CHECK", conf, container_id=f"c{i}").ok
        assert run(bins[side], "DEL", conf, container_id=f"c{i}").ok
    assert sorted(os.listdir(data / NET)) == ["last_reserved_ip.0", "lock"]


# ---------------------------------------------------------------------------------------------
# Deliberate differences (c) and versions/verbs the reference 1.1.1 does not have
# ---------------------------------------------------------------------------------------------


def test_relative_data_dir_deliberate_difference_c(pair: Pair, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deliberate difference (c): a relative dataDir is rejected with code 7 and nothing is created.
    The reference resolves it against its working directory and writes there."""
    cwd = tmp_path / "mp-cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    conf = hl(ranges("10.1.2.0/24"))
    conf["ipam"]["dataDir"] = "mp-rel"
    out = {side: run(pair.binaries[side], "ADD", conf) for side in ("ref", "ours")}
    assert out["ref"].ok
    assert snapshot(str(cwd)) == {
        f"mp-rel/{NET}/10.1.2.2": b"ctr1\r\neth0",
        f"mp-rel/{NET}/last_reserved_ip.0": b"10.1.2.2",
        f"mp-rel/{NET}/lock": b"",
    }
    err = out["ours"].error()
    assert err["code"] == 7 and "dataDir" in err["msg"]
    for command in ("DEL", "CHECK"):
        err = run(OURS_HOST_LOCAL, command, conf).error()
        assert err["code"] == 7 and "dataDir" in err["msg"]
    assert len(snapshot(str(cwd))) == 3  # ours added nothing


@pytest.mark.parametrize("suffix", ["mp-a/../mp-b", "mp-a/..", "mp-a/./../mp-c"])
def test_dotdot_data_dir_deliberate_difference_c(pair: Pair, tmp_path: Any, suffix: str) -> None:
    """Deliberate difference (c): a dataDir containing '..' is rejected with code 7, nothing written.
    The reference follows it."""
    (tmp_path / "mp-a").mkdir()
    conf = hl(ranges("10.1.2.0/24"))
    conf["ipam"]["dataDir"] = f"{tmp_path}/{suffix}"
    before = snapshot(str(tmp_path))
    err = run(OURS_HOST_LOCAL, "ADD", conf).error()
    assert err["code"] == 7 and "dataDir" in err["msg"]
    assert snapshot(str(tmp_path)) == before
    assert run(pair.binaries["ref"], "ADD", conf).ok


def test_cni_version_1_1_0_only_ours(pair: Pair) -> None:
    """We support cniVersion 1.1.0; the reference 1.1.1 answers code 1 (incompatible versions)."""
    conf = hl(HL29, version="1.1.0")
    out = pair.raw("ADD", conf)
    assert out["ref"].error()["code"] == 1
    res = json.loads(out["ours"].stdout)
    assert res["cniVersion"] == "1.1.0"
    assert res["ips"] == [{"address": "10.1.2.2/29", "gateway": "10.1.2.1"}]
    assert run(OURS_HOST_LOCAL, "CHECK", pair.conf_for("ours", conf)).ok


@pytest.mark.parametrize("verb", ["GC", "STATUS"])
def test_gc_status_only_ours(pair: Pair, verb: str) -> None:
    """We implement GC and STATUS (1.1.0); the reference 1.1.1 says `unknown CNI_COMMAND` (code 4).
    With a 1.0.0 config ours applies skel's version gate (code 1)."""
    conf = hl(HL29, version="1.0.0")
    out = pair.raw(verb, conf)
    assert (out["ref"].error()["code"], out["ref"].error()["msg"]) == (4, f"unknown CNI_COMMAND: {verb}")
    assert (out["ours"].error()["code"], out["ours"].error()["msg"]) == (1, f"config version does not allow {verb}")
    ours11 = run(OURS_HOST_LOCAL, verb, pair.conf_for("ours", hl(HL29, version="1.1.0")))
    assert ours11.ok and ours11.stdout == ""


# ---------------------------------------------------------------------------------------------
# Deliberate differences declared in docs/host-local.md ("Differences from the reference"),
# though not in host_local.py's module docstring: reservations are read only from files named
# like an address, and CHECK also compares with prevResult.
# ---------------------------------------------------------------------------------------------


def test_reservations_only_in_address_named_files_subdirectory(pair: Pair) -> None:
    """Deliberate difference (docs/host-local.md, "reading reservations"): the reference walks the
    network directory recursively and reads every file, so a matching file in a sub-directory
    satisfies CHECK, trips the duplicate check and is removed by DEL. Ours ignores it."""
    conf = hl(ranges("10.1.2.0/24"))
    pair.write(f"{NET}/sub/10.1.2.9", "c1\r\neth0")
    out = pair.raw("CHECK", conf, container_id="c1")
    assert out["ref"].ok
    assert out["ours"].error()["msg"] == "host-local: Failed to find address added by container c1"
    out = pair.raw("ADD", conf, container_id="c1")
    assert out["ref"].error()["msg"] == (
        "failed to allocate for range 0: 10.1.2.9 has been allocated to c1, duplicate allocation is not allowed"
    )
    assert ips_of(out["ours"]) == ["10.1.2.2/24"]
    out = pair.raw("DEL", conf, container_id="c1")
    assert out["ref"].ok and out["ours"].ok
    snaps = pair.snapshots()
    assert f"{NET}/sub/10.1.2.9" not in snaps["ref"]
    assert snaps["ours"][f"{NET}/sub/10.1.2.9"] == b"c1\r\neth0"
    assert f"{NET}/10.1.2.2" not in snaps["ours"]
    pair.assert_our_modes()


def test_reservations_only_in_address_named_files_other_names(pair: Pair) -> None:
    """Deliberate difference (docs/host-local.md, "reading reservations"): the reference matches any
    file by content (`notes`) for CHECK/DEL, and any name net.ParseIP accepts (`FD00::9`) for the
    duplicate check. Ours reads only files named by an address in canonical form, as both write them."""
    conf = hl(ranges("fd00::/64"))
    pair.write(f"{NET}/FD00::9", "c1\r\neth0")
    pair.write(f"{NET}/notes", "c2\r\neth0")
    out = pair.raw("ADD", conf, container_id="c1")
    assert out["ref"].error()["msg"] == (
        "failed to allocate for range 0: fd00::9 has been allocated to c1, duplicate allocation is not allowed"
    )
    assert ips_of(out["ours"]) == ["fd00::2/64"]
    out = pair.raw("CHECK", conf, container_id="c2")
    assert out["ref"].ok
    assert out["ours"].error()["msg"] == "host-local: Failed to find address added by container c2"
    out = pair.raw("DEL", conf, container_id="c2")
    assert out["ref"].ok and out["ours"].ok
    assert f"{NET}/notes" not in pair.snapshots()["ref"]
    assert pair.read("ours", f"{NET}/notes") == b"c2\r\neth0"
    pair.assert_our_modes()


def test_ip_like_container_id_never_matches_cursor(pair: Pair) -> None:
    """Deliberate difference (docs/host-local.md, "reading reservations"): DEL's legacy fallback in the
    reference compares every file with the bare container ID, so container `10.1.2.2` deletes
    `last_reserved_ip.0` (which holds `10.1.2.2`). Ours keeps the cursor."""
    conf = hl(ranges("10.1.2.0/24"))
    pair.step("ADD", conf, container_id="c1")
    out = pair.raw("DEL", conf, container_id="10.1.2.2")
    assert out["ref"].ok and out["ours"].ok
    snaps = pair.snapshots()
    assert f"{NET}/last_reserved_ip.0" not in snaps["ref"]
    assert snaps["ours"] == {
        f"{NET}/10.1.2.2": b"c1\r\neth0",
        f"{NET}/last_reserved_ip.0": b"10.1.2.2",
        f"{NET}/lock": b"",
    }


def test_check_compares_prev_result(pair: Pair) -> None:
    """Deliberate difference (docs/host-local.md, "CHECK"): the reference never reads prevResult. Ours
    fails when a prevResult address inside our ranges is not reserved for the attachment (999), or
    when prevResult cannot be decoded (6). Addresses outside our ranges are not ours to check."""
    conf = hl(ranges("10.1.2.0/24"))
    pair.step("ADD", conf, container_id="c1")
    good = {"cniVersion": "1.0.0", "ips": [{"address": "10.1.2.2/24", "gateway": "10.1.2.1"}]}
    pair.step("CHECK", {**conf, "prevResult": good}, container_id="c1")
    foreign = {"cniVersion": "1.0.0", "ips": [{"address": "10.9.2.77/24"}]}
    pair.step("CHECK", {**conf, "prevResult": foreign}, container_id="c1")
    stale = {"cniVersion": "1.0.0", "ips": [{"address": "10.1.2.77/24"}]}
    out = pair.raw("CHECK", {**conf, "prevResult": stale}, container_id="c1")
    assert out["ref"].ok
    err = out["ours"].error()
    assert (err["code"], err["msg"]) == (
        999,
        "host-local: address 10.1.2.77 from prevResult is not reserved for container c1",
    )
    malformed = {"cniVersion": "1.0.0", "ips": [{"address": "bogus"}]}
    out = pair.raw("CHECK", {**conf, "prevResult": malformed}, container_id="c1")
    assert out["ref"].ok
    assert (out["ours"].error()["code"], out["ours"].error()["msg"]) == (6, "invalid CIDR address: bogus")
    pair.assert_same_state()


# ---------------------------------------------------------------------------------------------
# Deliberate difference (f), issue 11: symbolic links inside `<dataDir>/<network>/` are never
# followed. The reference reads and writes through them; ours refuses a linked network directory
# or lock (code 5), replaces a linked cursor, and treats a linked `<ip>` as taken but not ours.
# ---------------------------------------------------------------------------------------------


def _outside(tmp_path: Any) -> dict[str, str]:
    """Per side, a directory outside the dataDir that a planted link points into."""
    out = {}
    for side in ("ref", "ours"):
        out[side] = str(tmp_path / f"mp-outside-{side}")
        os.makedirs(out[side])
    return out


def test_symlinked_network_dir_refused_deliberate_difference_f(pair: Pair, tmp_path: Any) -> None:
    outside = _outside(tmp_path)
    for side in ("ref", "ours"):
        os.symlink(outside[side], pair.net_dir(side))
    conf = hl(ranges("10.1.2.0/24"))
    out = pair.raw("ADD", conf)
    assert ips_of(out["ref"]) == ["10.1.2.2/24"]
    assert sorted(os.listdir(outside["ref"])) == ["10.1.2.2", "last_reserved_ip.0", "lock"]
    for command in ("ADD", "DEL", "CHECK"):
        err = pair.raw(command, conf)["ours"].error()
        assert (err["code"], err["msg"]) == (
            5,
            f"{pair.net_dir('ours')} is a symbolic link: refusing to use it as host-local state",
        ), command
    assert os.listdir(outside["ours"]) == []


def test_symlinked_lock_refused_deliberate_difference_f(pair: Pair, tmp_path: Any) -> None:
    outside = _outside(tmp_path)
    for side in ("ref", "ours"):
        os.makedirs(pair.net_dir(side))
        os.symlink(os.path.join(outside[side], "mp-lock"), os.path.join(pair.net_dir(side), "lock"))
    out = pair.raw("ADD", hl(ranges("10.1.2.0/24")))
    assert out["ref"].ok
    assert os.listdir(outside["ref"]) == ["mp-lock"], "the reference creates the link's target"
    err = out["ours"].error()
    assert (err["code"], err["msg"]) == (
        5,
        f"{pair.net_dir('ours')}/lock is a symbolic link: refusing to use it as host-local's lock",
    )
    assert os.listdir(outside["ours"]) == []
    assert os.listdir(pair.net_dir("ours")) == ["lock"]


def test_symlinked_cursor_neither_read_nor_written_through_deliberate_difference_f(pair: Pair, tmp_path: Any) -> None:
    """The reference starts after the address the link's target names and then overwrites the target;
    ours starts from the beginning (the link is not a cursor of ours) and replaces the link."""
    outside = _outside(tmp_path)
    for side in ("ref", "ours"):
        os.makedirs(pair.net_dir(side))
        with open(os.path.join(outside[side], "mp-cursor"), "wb") as fh:
            fh.write(b"10.1.2.7")
        os.symlink(os.path.join(outside[side], "mp-cursor"), os.path.join(pair.net_dir(side), "last_reserved_ip.0"))
    out = pair.raw("ADD", hl(ranges("10.1.2.0/24")))
    assert ips_of(out["ref"]) == ["10.1.2.8/24"]
    assert ips_of(out["ours"]) == ["10.1.2.2/24"]
    with open(os.path.join(outside["ref"], "mp-cursor"), "rb") as fh:
        assert fh.read() == b"10.1.2.8", "the reference writes through the link"
    with open(os.path.join(outside["ours"], "mp-cursor"), "rb") as fh:
        assert fh.read() == b"10.1.2.7"
    assert not os.path.islink(os.path.join(pair.net_dir("ours"), "last_reserved_ip.0"))
    assert pair.read("ours", f"{NET}/last_reserved_ip.0") == b"10.1.2.2"


def test_symlinked_reservation_taken_but_not_ours_deliberate_difference_f(pair: Pair, tmp_path: Any) -> None:
    outside = _outside(tmp_path)
    links = {}
    for side in ("ref", "ours"):
        os.makedirs(pair.net_dir(side))
        with open(os.path.join(outside[side], "mp-owner"), "wb") as fh:
            fh.write(b"c1\r\neth0")
        links[side] = os.path.join(pair.net_dir(side), "10.1.2.2")
        os.symlink(os.path.join(outside[side], "mp-owner"), links[side])
    conf = hl(ranges("10.1.2.0/24"))
    # another container: both see the linked address as taken
    out = pair.raw("ADD", conf, container_id="c2")
    assert_same(out["ref"], out["ours"])
    assert ips_of(out["ours"]) == ["10.1.2.3/24"]
    out = pair.raw("CHECK", conf, container_id="c1")
    assert out["ref"].ok, "the reference reads the owner through the link"
    assert out["ours"].error()["msg"] == "host-local: Failed to find address added by container c1"
    out = pair.raw("ADD", conf, container_id="c1")
    assert out["ref"].error()["msg"] == (
        "failed to allocate for range 0: 10.1.2.2 has been allocated to c1, duplicate allocation is not allowed"
    )
    assert ips_of(out["ours"]) == ["10.1.2.4/24"]
    out = pair.raw("DEL", conf, container_id="c1")
    assert out["ref"].ok and out["ours"].ok
    assert not os.path.lexists(links["ref"]), "the reference releases the link"
    assert os.path.islink(links["ours"])
    for side in ("ref", "ours"):
        with open(os.path.join(outside[side], "mp-owner"), "rb") as fh:
            assert fh.read() == b"c1\r\neth0", side


# ---------------------------------------------------------------------------------------------
# Reference behaviour we do not match yet (NOT declared deliberate): these expect the reference.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ipam", "top"),
    [
        pytest.param({"subnet": 5}, {}, id="legacy-subnet-number"),
        pytest.param({"ranges": [[{"subnet": 5}]]}, {}, id="range-subnet-number"),
        pytest.param({"ranges": [[{"subnet": "10.0.0.0/24", "gateway": 5}]]}, {}, id="range-gateway-number"),
        pytest.param({"ranges": [[None]]}, {}, id="range-null"),
        pytest.param({**ranges("10.0.0.0/24"), "routes": [{"dst": 5}]}, {}, id="route-dst-number"),
        pytest.param({**ranges("10.0.0.0/24"), "routes": [5]}, {}, id="route-number"),
        pytest.param(ranges("10.0.0.0/24"), {"args": {"cni": {"ips": [5]}}}, id="args-ips-number"),
        pytest.param(ranges("10.0.0.0/24"), {"args": {"cni": {"ips": [""]}}}, id="args-ips-empty-string"),
        pytest.param(ranges("10.0.0.0/24"), {"args": {"cni": "x"}}, id="args-cni-string"),
        pytest.param(ranges("10.0.0.0/24"), {"args": "x"}, id="args-string"),
        pytest.param(ranges("10.0.0.0/24"), {"runtimeConfig": {"ipRanges": "x"}}, id="runtime-ipranges-string"),
        pytest.param(ranges("10.0.0.0/24", "10.0.1.0/24"), {"cniVersion": ""}, id="empty-version-two-v4-sets"),
    ],
)
def test_config_error_text_matches_reference(pair: Pair, ipam: Any, top: dict[str, Any]) -> None:
    """Go's encoding/json error texts (struct `Range`, inner type `string`, `*ip.IP`, `types.route`),
    `null` range = zero Range, wrongly-typed `args` rejected, and the raw empty cniVersion in the
    0.x family message. Code: 7 for ours (deliberate difference (e))."""
    conf = hl(ipam, **top)
    pair.step("ADD", conf, code_key="config: JSON type")


@pytest.mark.parametrize(
    "route",
    [
        pytest.param({"DST": "10.0.0.5/8", "GW": "10.0.0.1"}, id="upper-case-keys"),
        pytest.param({"Dst": "10.9.0.0/16"}, id="mixed-case-key"),
        pytest.param({"dst": "::ffff:10.0.0.0/104"}, id="v4-mapped-dst"),
    ],
)
def test_routes_decoded_like_go(pair: Pair, route: dict[str, Any]) -> None:
    """Route keys match case-insensitively (Go encoding/json): ours rejects `DST`/`Dst` with `route
    dst: expected a CIDR string, got None`. A v4-mapped IPv6 CIDR is accepted and echoed as
    `10.0.0.0/8` (ours crashed on it before commit e3d893c; kept as a regression test)."""
    pair.step("ADD", hl({**ranges("10.0.0.0/24"), "routes": [route]}))


def test_duplicate_check_counts_legacy_files_too(pair: Pair) -> None:
    """Reference GetByID matches `id\\r\\nifname` OR the legacy `id` in one walk, so a legacy file of the
    container in set 0 fails set 0 even when a new-style file exists elsewhere. Ours falls back to
    legacy files only when no new-style file matches, so it allocates in set 0 and fails in set 1."""
    conf = hl(ranges("10.1.2.0/24", "10.1.3.0/24"))
    pair.write(f"{NET}/10.1.2.9", "c1")
    pair.write(f"{NET}/10.1.3.9", "c1\r\neth0")
    pair.step("ADD", conf, container_id="c1")


def test_mkdir_error_names_the_failing_component(pair: Pair) -> None:
    """Like Go's MkdirAll, the error names the path component that failed (`mkdir <dir>/mp-file: not a directory`)."""
    for side in ("ref", "ours"):
        with open(os.path.join(pair.dirs[side], "mp-file"), "wb"):
            pass
        if side == "ours":
            os.chmod(os.path.join(pair.dirs[side], "mp-file"), 0o600)
    conf = hl(ranges("10.1.2.0/24"))
    conf["ipam"]["dataDir"] += "/mp-file/sub"
    out = pair.raw("ADD", conf)
    for side in ("ref", "ours"):
        assert out[side].error()["msg"] == f"mkdir {pair.dirs[side]}/mp-file: not a directory", side


def test_cursor_write_failure(pair: Pair) -> None:
    """DELIBERATE DIFFERENCE: when `last_reserved_ip.0` cannot be written (here: it is a directory)
    both report `failed to allocate for range 0: open <path>: is a directory`, but the reference
    keeps the address file it cannot account for (a leaked reservation) while ours gives it back."""
    for side in ("ref", "ours"):
        os.makedirs(os.path.join(pair.net_dir(side), "last_reserved_ip.0"))
    out = pair.raw("ADD", hl(ranges("10.1.2.0/24")))
    for side in ("ref", "ours"):
        assert out[side].error()["msg"] == (
            f"failed to allocate for range 0: open {pair.net_dir(side)}/last_reserved_ip.0: is a directory"
        ), side
    assert os.path.exists(os.path.join(pair.net_dir("ref"), "10.1.2.2"))
    ours = sorted(os.listdir(pair.net_dir("ours")))
    assert ours == ["last_reserved_ip.0", "lock"], ours
