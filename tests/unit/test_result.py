"""multiplane.spec.result: reading every result version and writing each version's shape (cni-spec.md §4)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multiplane.errors import CniError, DecodingFailure
from multiplane.spec.result import DNS, Interface, IPConfig, Result, Route

ALL_VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
RICH_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
IP_VERSION_SHAPES = ["0.3.0", "0.3.1", "0.4.0"]


def ipi(text: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    return ipaddress.ip_interface(text)


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


FULL_DNS = {"nameservers": ["10.1.2.1"], "domain": "example.com", "search": ["a.example"], "options": ["ndots:5"]}
IFACE_10 = {"name": "eth0", "mac": "0a:58:0a:01:02:03", "sandbox": "/var/run/netns/t"}
IFACE_11 = {**IFACE_10, "mtu": 1400, "socketPath": "/run/vhost.sock", "pciID": "0000:04:00.5"}
ROUTE_10 = {"dst": "0.0.0.0/0", "gw": "10.1.2.1"}
ROUTE_11 = {**ROUTE_10, "mtu": 1400, "advmss": 1360, "priority": 100, "table": 100, "scope": 0}


def rich() -> Result:
    """Two IPv4 addresses, one IPv6, a route per family plus one more IPv4 route, and every 1.1-only field."""
    return Result(
        "1.1.0",
        interfaces=[
            Interface(
                "eth0",
                mac="0a:58:0a:01:02:03",
                sandbox="/var/run/netns/t",
                mtu=1400,
                socket_path="/run/vhost.sock",
                pci_id="0000:04:00.5",
            )
        ],
        ips=[
            IPConfig(ipi("10.1.2.3/24"), ip("10.1.2.1"), interface=0),
            IPConfig(ipi("10.1.3.3/24"), None, interface=0),
            IPConfig(ipi("fd00::3/64"), ip("fd00::1"), interface=0),
        ],
        routes=[
            Route(ipi("0.0.0.0/0"), ip("10.1.2.1"), mtu=1400, advmss=1360, priority=100, table=100, scope=0),
            Route(ipi("::/0")),
            Route(ipi("192.168.0.0/16")),
        ],
        dns=DNS(**FULL_DNS),
    )


# ---- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_parse_020_shape(version: str) -> None:
    """0.1.0/0.2.0 results read ip4 then ip6 into `ips`, their routes into `routes`, and dns."""
    raw = {
        "cniVersion": version,
        "ip4": {"ip": "10.1.2.4/29", "gateway": "10.1.2.1", "routes": [{"dst": "0.0.0.0/0"}]},
        "ip6": {"ip": "fd00:5::5/64", "gateway": "fd00:5::1", "routes": [{"dst": "::/0", "gw": "fd00:5::1"}]},
        "dns": FULL_DNS,
    }
    assert Result.parse(raw, "1.0.0") == Result(
        version,
        ips=[IPConfig(ipi("10.1.2.4/29"), ip("10.1.2.1")), IPConfig(ipi("fd00:5::5/64"), ip("fd00:5::1"))],
        routes=[Route(ipi("0.0.0.0/0")), Route(ipi("::/0"), ip("fd00:5::1"))],
        dns=DNS(**FULL_DNS),
    )


def test_parse_020_ipv6_only() -> None:
    """A 0.2.0 result with only ip6 reads one IPv6 address."""
    result = Result.parse({"cniVersion": "0.2.0", "ip6": {"ip": "fd00::2/64"}}, "")
    assert result.ips == [IPConfig(ipi("fd00::2/64"))]


@pytest.mark.parametrize("version", IP_VERSION_SHAPES)
def test_parse_03x_04_shape(version: str) -> None:
    """0.3.x/0.4.0 results read interfaces, ips (ignoring `version`) with their index, routes and dns."""
    raw = {
        "cniVersion": version,
        "interfaces": [{"name": "eth0", "mac": "0a:58:0a:01:02:03", "sandbox": "/var/run/netns/t"}],
        "ips": [
            {"version": "4", "interface": 0, "address": "10.1.2.3/24", "gateway": "10.1.2.1"},
            {"version": "6", "address": "fd00::3/64"},
        ],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.2.1"}],
        "dns": {"nameservers": ["10.1.2.1"]},
    }
    assert Result.parse(raw, "1.0.0") == Result(
        version,
        interfaces=[Interface("eth0", mac="0a:58:0a:01:02:03", sandbox="/var/run/netns/t")],
        ips=[IPConfig(ipi("10.1.2.3/24"), ip("10.1.2.1"), 0), IPConfig(ipi("fd00::3/64"))],
        routes=[Route(ipi("0.0.0.0/0"), ip("10.1.2.1"))],
        dns=DNS(["10.1.2.1"]),
    )


def test_parse_100_shape() -> None:
    """A 1.0.0 result (no `version` in ips) is read, here the verified host-local output."""
    raw = {
        "cniVersion": "1.0.0",
        "ips": [{"address": "10.1.2.2/29", "gateway": "10.1.2.1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {},
    }
    assert Result.parse(raw, "") == Result(
        "1.0.0", ips=[IPConfig(ipi("10.1.2.2/29"), ip("10.1.2.1"))], routes=[Route(ipi("0.0.0.0/0"))]
    )


def test_parse_110_extras() -> None:
    """A 1.1.0 result keeps interface mtu/socketPath/pciID and route mtu/advmss/priority/table/scope."""
    raw = {
        "cniVersion": "1.1.0",
        "interfaces": [IFACE_11],
        "ips": [
            {"interface": 0, "address": "10.1.2.3/24", "gateway": "10.1.2.1"},
            {"interface": 0, "address": "10.1.3.3/24"},
            {"interface": 0, "address": "fd00::3/64", "gateway": "fd00::1"},
        ],
        "routes": [
            ROUTE_11,
            {"dst": "::/0"},
            {"dst": "192.168.0.0/16"},
        ],
        "dns": FULL_DNS,
    }
    assert Result.parse(raw, "") == rich()


@pytest.mark.parametrize("index", [-1, None, "0", True])
def test_parse_odd_interface_index(index: object) -> None:
    """A missing, -1 or non-integer `interface` index from an old plugin reads as no index."""
    item: dict[str, Any] = {"address": "10.1.2.3/24"}
    if index is not None:
        item["interface"] = index
    assert Result.parse({"cniVersion": "1.0.0", "ips": [item]}, "").ips[0].interface is None


@pytest.mark.parametrize(("default", "expected"), [("0.4.0", "0.4.0"), ("1.1.0", "1.1.0")])
def test_parse_missing_version_takes_default(default: str, expected: str) -> None:
    """A result without cniVersion is read in the caller's default version."""
    result = Result.parse({"ips": [{"address": "10.1.2.3/24"}]}, default)
    assert result.cni_version == expected
    assert result.ips == [IPConfig(ipi("10.1.2.3/24"))]


def test_parse_missing_version_and_default_is_010() -> None:
    """With no cniVersion and an empty default, the result is read as 0.1.0 (ip4/ip6 shape)."""
    result = Result.parse({"ip4": {"ip": "10.1.2.3/24"}}, "")
    assert result.cni_version == "0.1.0"
    assert result.ips == [IPConfig(ipi("10.1.2.3/24"))]


@pytest.mark.parametrize(
    "raw",
    [
        [],
        "x",
        {"cniVersion": "9.9.9"},
        {"cniVersion": 1},
        {"cniVersion": "1.0.0", "ips": [{"address": "10.1.2.3"}]},
        {"cniVersion": "1.0.0", "ips": [{"address": "10.1.2.3/33"}]},
        {"cniVersion": "1.0.0", "ips": [{"address": "fe80::1%eth0/64"}]},
        {"cniVersion": "1.0.0", "ips": [{"address": 5}]},
        {"cniVersion": "1.0.0", "ips": [{"address": "10.1.2.3/24", "gateway": "x"}]},
        {"cniVersion": "1.0.0", "ips": [1]},
        {"cniVersion": "1.0.0", "interfaces": [{"name": 5}]},
        {"cniVersion": "1.0.0", "routes": [{"gw": "10.1.2.1"}]},
        {"cniVersion": "1.0.0", "routes": ["x"]},
        {"cniVersion": "0.2.0", "ip4": {"ip": None}},
        {"cniVersion": "0.2.0", "ip4": {"ip": "10.1.2.3/24", "routes": [{"dst": "nope"}]}},
    ],
)
def test_parse_bad_result_is_code_6(raw: object) -> None:
    """Anything unreadable in a result (version, address, gateway, route, entry type) is DecodingFailure."""
    with pytest.raises(DecodingFailure) as info:
        Result.parse(raw, "1.0.0")
    assert info.value.code == 6


@pytest.mark.parametrize(
    "raw",
    [
        {"cniVersion": "1.0.0", "ips": [{"address": "::ffff:10.1.2.3/120"}]},
        {"cniVersion": "1.0.0", "routes": [{"dst": "::ffff:0.0.0.0/96"}]},
        {"cniVersion": "0.2.0", "ip6": {"ip": "::ffff:10.1.2.3/64"}},
    ],
)
def test_parse_v4_mapped_cidr_is_read_or_code_6(raw: dict[str, Any]) -> None:
    """A v4-mapped IPv6 CIDR (valid for Go) is read, or rejected with code 6, never raised as a bare ValueError."""
    try:
        Result.parse(raw, "")
    except DecodingFailure:
        pass


# ---- writing each version -------------------------------------------------------------------

EXPECTED_11 = {
    "cniVersion": "1.1.0",
    "interfaces": [IFACE_11],
    "ips": [
        {"interface": 0, "address": "10.1.2.3/24", "gateway": "10.1.2.1"},
        {"interface": 0, "address": "10.1.3.3/24"},
        {"interface": 0, "address": "fd00::3/64", "gateway": "fd00::1"},
    ],
    "routes": [
        ROUTE_11,
        {"dst": "::/0"},
        {"dst": "192.168.0.0/16"},
    ],
    "dns": FULL_DNS,
}

EXPECTED_10 = {
    "cniVersion": "1.0.0",
    "interfaces": [IFACE_10],
    "ips": EXPECTED_11["ips"],
    "routes": [ROUTE_10, {"dst": "::/0"}, {"dst": "192.168.0.0/16"}],
    "dns": FULL_DNS,
}


def expected_04(version: str) -> dict[str, Any]:
    return {
        **EXPECTED_10,
        "cniVersion": version,
        "ips": [
            {"version": "4", "interface": 0, "address": "10.1.2.3/24", "gateway": "10.1.2.1"},
            {"version": "4", "interface": 0, "address": "10.1.3.3/24"},
            {"version": "6", "interface": 0, "address": "fd00::3/64", "gateway": "fd00::1"},
        ],
    }


def expected_02(version: str) -> dict[str, Any]:
    return {
        "cniVersion": version,
        "ip4": {
            "ip": "10.1.2.3/24",
            "gateway": "10.1.2.1",
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.2.1"}, {"dst": "192.168.0.0/16"}],
        },
        "ip6": {"ip": "fd00::3/64", "gateway": "fd00::1", "routes": [{"dst": "::/0"}]},
        "dns": FULL_DNS,
    }


def test_to_110_keeps_everything() -> None:
    """1.1.0 output keeps the 1.1-only interface and route fields."""
    assert rich().to_dict("1.1.0") == EXPECTED_11


def test_to_100_drops_11_fields() -> None:
    """1.0.0 output drops interface mtu/socketPath/pciID and route mtu/advmss/priority/table/scope."""
    assert rich().to_dict("1.0.0") == EXPECTED_10


@pytest.mark.parametrize("version", IP_VERSION_SHAPES)
def test_to_03x_04_adds_ip_version(version: str) -> None:
    """0.3.x/0.4.0 output adds ips[].version from the address family and keeps only name/mac/sandbox, dst/gw."""
    assert rich().to_dict(version) == expected_04(version)


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_to_020_first_of_each_family(version: str) -> None:
    """0.1.0/0.2.0 output takes the first IPv4 and first IPv6, with routes split by dst family."""
    assert rich().to_dict(version) == expected_02(version)


def test_to_020_picks_first_of_each_family_regardless_of_order() -> None:
    """The first IPv4 and the first IPv6 are chosen even when families interleave."""
    result = Result(
        "1.0.0",
        ips=[
            IPConfig(ipi("fd00::a/64")),
            IPConfig(ipi("10.0.0.1/24"), ip("10.0.0.254")),
            IPConfig(ipi("fd00::b/64"), ip("fd00::1")),
            IPConfig(ipi("10.0.0.2/24")),
        ],
    )
    assert result.to_dict("0.2.0") == {
        "cniVersion": "0.2.0",
        "ip4": {"ip": "10.0.0.1/24", "gateway": "10.0.0.254"},
        "ip6": {"ip": "fd00::a/64"},
    }


def test_to_020_drops_routes_of_missing_family() -> None:
    """A route whose dst family has no address is dropped in 0.2.0 output."""
    result = Result(
        "1.0.0",
        ips=[IPConfig(ipi("fd00::2/64"))],
        routes=[Route(ipi("0.0.0.0/0"), ip("10.0.0.1")), Route(ipi("fd01::/64"), ip("fd00::1"), priority=5)],
    )
    assert result.to_dict("0.2.0") == {
        "cniVersion": "0.2.0",
        "ip6": {"ip": "fd00::2/64", "routes": [{"dst": "fd01::/64", "gw": "fd00::1"}]},
    }


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_to_020_without_ip_fails(version: str) -> None:
    """An L2-only result cannot be written as 0.1.0/0.2.0: `cannot convert: no valid IP addresses`."""
    result = Result("1.1.0", interfaces=[Interface("eth0", mac="0a:58:0a:01:02:03")], routes=[Route(ipi("0.0.0.0/0"))])
    with pytest.raises(CniError) as info:
        result.to_dict(version)
    assert info.value.msg == "cannot convert: no valid IP addresses"


@pytest.mark.parametrize("version", RICH_VERSIONS)
def test_l2_only_result_is_fine_from_030(version: str) -> None:
    """An L2-only result is written in 0.3.0 and later with its interface and no `ips`."""
    out = Result("1.1.0", interfaces=[Interface("eth0")]).to_dict(version)
    assert out == {"cniVersion": version, "interfaces": [{"name": "eth0"}]}


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_empty_collections_omitted(version: str) -> None:
    """Empty dns, interfaces and routes are left out rather than written empty."""
    out = Result("1.1.0", ips=[IPConfig(ipi("10.1.2.3/24"))]).to_dict(version)
    assert "dns" not in out
    assert "interfaces" not in out
    assert "routes" not in out
    assert "routes" not in out.get("ip4", {})


def test_partial_dns_written_as_given() -> None:
    """Only the DNS keys that have values are written."""
    out = Result("1.0.0", ips=[IPConfig(ipi("10.1.2.3/24"))], dns=DNS(search=["x"])).to_dict("1.0.0")
    assert out["dns"] == {"search": ["x"]}


def test_ipam_style_result_has_no_interface_index() -> None:
    """An IPAM result (no interface index) writes no `interface` key, as host-local's verified output shows."""
    result = Result("1.0.0", ips=[IPConfig(ipi("10.1.2.3/29"), ip("10.1.2.1"))], routes=[Route(ipi("0.0.0.0/0"))])
    assert result.to_dict("0.4.0") == {
        "cniVersion": "0.4.0",
        "ips": [{"version": "4", "address": "10.1.2.3/29", "gateway": "10.1.2.1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
    }


def test_zero_scope_and_table_kept_in_110() -> None:
    """Route scope 0 and table 0 are explicit values in 1.1.0 (Go *int), so both are written."""
    route = Route(ipi("10.0.0.0/8"), scope=0, table=0)
    assert route.to_dict("1.1.0") == {"dst": "10.0.0.0/8", "scope": 0, "table": 0}


def test_old_result_up_converts() -> None:
    """A 0.2.0 result written as 1.0.0 lists ip4 then ip6, merges their routes and has no interfaces."""
    raw = {
        "cniVersion": "0.2.0",
        "ip4": {"ip": "10.1.2.4/29", "gateway": "10.1.2.1", "routes": [{"dst": "0.0.0.0/0"}]},
        "ip6": {"ip": "fd00:5::5/64", "routes": [{"dst": "::/0"}]},
    }
    assert Result.parse(raw, "").to_dict("1.0.0") == {
        "cniVersion": "1.0.0",
        "ips": [{"address": "10.1.2.4/29", "gateway": "10.1.2.1"}, {"address": "fd00:5::5/64"}],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
    }


# ---- round trips ----------------------------------------------------------------------------

_V4 = st.ip_addresses(v=4)
# v4-mapped IPv6 addresses read back as IPv4 (Go net.ParseIP does the same), so they cannot round-trip.
_V6 = st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None)


@st.composite
def _interface_cidr(draw: st.DrawFn) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    addr = draw(st.one_of(_V4, _V6))
    plen = draw(st.integers(min_value=0, max_value=addr.max_prefixlen))
    return ipaddress.ip_interface(f"{addr}/{plen}")


_OPT_POS = st.one_of(st.none(), st.integers(min_value=1, max_value=65535))
_NAME = st.from_regex(r"[a-z][a-z0-9]{0,14}", fullmatch=True)
_MAC = st.from_regex(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", fullmatch=True)


@st.composite
def results(draw: st.DrawFn) -> Result:
    """Random results with at least one IP; optional fields avoid values Go's omitempty would drop."""
    interfaces = draw(
        st.lists(
            st.builds(
                Interface,
                _NAME,
                mac=st.one_of(st.just(""), _MAC),
                sandbox=st.sampled_from(["", "/var/run/netns/t"]),
                mtu=_OPT_POS,
                socket_path=st.sampled_from(["", "/run/s.sock"]),
                pci_id=st.sampled_from(["", "0000:04:00.5"]),
            ),
            max_size=2,
        )
    )
    index = st.one_of(st.none(), st.integers(min_value=0, max_value=len(interfaces) - 1)) if interfaces else st.none()
    ips = draw(
        st.lists(
            st.builds(IPConfig, _interface_cidr(), st.one_of(st.none(), _V4, _V6), index),
            min_size=1,
            max_size=4,
        )
    )
    routes = draw(
        st.lists(
            st.builds(
                Route,
                _interface_cidr(),
                st.one_of(st.none(), _V4, _V6),
                mtu=_OPT_POS,
                advmss=_OPT_POS,
                priority=_OPT_POS,
                table=_OPT_POS,
                scope=st.one_of(st.none(), st.integers(min_value=0, max_value=255)),
            ),
            max_size=3,
        )
    )
    words = st.lists(st.from_regex(r"[a-z0-9.:]{1,10}", fullmatch=True), max_size=2)
    dns = draw(st.builds(DNS, words, st.sampled_from(["", "example.com"]), words, words))
    return Result("1.1.0", interfaces, ips, routes, dns)


@given(results(), st.sampled_from(RICH_VERSIONS))
def test_round_trip_keeps_addresses(result: Result, version: str) -> None:
    """For every version from 0.3.0 on, parse(to_dict(v)) keeps addresses, gateways, indexes, routes and dns."""
    back = Result.parse(result.to_dict(version), "")
    assert back.cni_version == version
    assert [(i.address, i.gateway, i.interface) for i in back.ips] == [
        (i.address, i.gateway, i.interface) for i in result.ips
    ]
    assert [(r.dst, r.gw) for r in back.routes] == [(r.dst, r.gw) for r in result.routes]
    assert [(i.name, i.mac, i.sandbox) for i in back.interfaces] == [
        (i.name, i.mac, i.sandbox) for i in result.interfaces
    ]
    assert back.dns == result.dns


@given(results())
def test_round_trip_110_is_lossless(result: Result) -> None:
    """A 1.1.0 result survives to_dict/parse unchanged, 1.1-only fields included."""
    assert Result.parse(result.to_dict("1.1.0"), "") == result


@given(results(), st.sampled_from(["0.1.0", "0.2.0"]))
def test_round_trip_020_keeps_first_of_each_family(result: Result, version: str) -> None:
    """Written as 0.1.0/0.2.0 and read back, a result holds the first IPv4 then the first IPv6 and their gateways."""
    firsts: dict[int, IPConfig] = {}
    for item in result.ips:
        firsts.setdefault(item.family, item)
    back = Result.parse(result.to_dict(version), "")
    expected = [firsts[f] for f in (4, 6) if f in firsts]
    assert [(i.address, i.gateway) for i in back.ips] == [(i.address, i.gateway) for i in expected]
    # Routes are regrouped under ip4 then ip6; a route whose family has no address is dropped.
    kept = [(r.dst, r.gw) for f in (4, 6) if f in firsts for r in result.routes if r.dst.version == f]
    assert [(r.dst, r.gw) for r in back.routes] == kept


# ---- the one encoder (issue 11) ---------------------------------------------------------------


def test_go_json_writes_lone_surrogates_as_replacement_escapes() -> None:
    """Lone surrogates (from `\\ud800` escapes or surrogateescape'd env bytes) come out as `\\ufffd`, as Go writes
    invalid UTF-8; the text always encodes as UTF-8."""
    from multiplane.errors import go_json

    text = go_json({"k\ud800": ["\udcff", "ok \U0001f600"]}, indent=None)
    assert text == '{"k\\ufffd":["\\ufffd","ok \U0001f600"]}'
    text.encode()


def test_go_json_refuses_non_finite_numbers() -> None:
    """NaN/Infinity are not JSON: the encoder raises (skel turns that into an error object) instead of writing them."""
    from multiplane.errors import go_json

    with pytest.raises(ValueError):
        go_json({"mtu": float("inf")})
