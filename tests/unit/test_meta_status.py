"""The network-status annotation (multiplane.plugins.meta.status).

Scenario numbers are those of /work/shared/research/multus.md §10 (cases 59–63, from the NAD
client's CreateNetworkStatus tests) and the shape of §3.1–3.2, adapted to `entries()`:
addresses without prefix, `dns` always present, `gateway` from default routes.
"""

from __future__ import annotations

import json
from typing import Any

from multiplane.plugins.meta.status import entries, render
from multiplane.spec.result import Result


def result(
    interfaces: list[dict[str, Any]] | None = None,
    ips: list[dict[str, Any]] | None = None,
    routes: list[dict[str, Any]] | None = None,
    dns: dict[str, Any] | None = None,
    version: str = "1.0.0",
) -> Result:
    raw: dict[str, Any] = {"cniVersion": version}
    if interfaces is not None:
        raw["interfaces"] = interfaces
    if ips is not None:
        raw["ips"] = ips
    if routes is not None:
        raw["routes"] = routes
    if dns is not None:
        raw["dns"] = dns
    return Result.parse(raw, version)


NET1 = {"name": "net1", "mac": "c2:11:22:33:44:66", "mtu": 9000, "sandbox": "/var/run/netns/mp-pod"}
IPS59 = [{"address": "10.1.1.3/24", "interface": 0}, {"address": "fd00:1::1/64", "interface": 0}]


# ---- case 59: one interface ------------------------------------------------------------------------


def test_case59_single_interface_entry() -> None:
    """Case 59: one sandbox interface gives name, interface, plain IPs, mac, mtu and an empty dns; no gateway, no default."""
    assert entries("test/net1", result([NET1], IPS59), default=False) == [
        {
            "name": "test/net1",
            "interface": "net1",
            "ips": ["10.1.1.3", "fd00:1::1"],
            "mac": "c2:11:22:33:44:66",
            "mtu": 9000,
            "dns": {},
        }
    ]


def test_case59_default_route_gateway_is_listed() -> None:
    """Case 59: a 0.0.0.0/0 route via 10.10.10.10 gives `gateway: ["10.10.10.10"]`."""
    (entry,) = entries("test/net1", result([NET1], IPS59, [{"dst": "0.0.0.0/0", "gw": "10.10.10.10"}]), default=False)
    assert entry["gateway"] == ["10.10.10.10"]


def test_case59_two_default_routes_list_both_gateways() -> None:
    """Case 59: a second default route (here IPv6) adds its gateway too, in route order."""
    routes = [{"dst": "0.0.0.0/0", "gw": "10.10.10.10"}, {"dst": "::/0", "gw": "fd00:1::fe"}]
    (entry,) = entries("test/net1", result([NET1], IPS59, routes), default=False)
    assert entry["gateway"] == ["10.10.10.10", "fd00:1::fe"]


def test_case59_non_default_route_gives_no_gateway() -> None:
    """Case 59: a 10.10.10.0/24 route is not a default route, so there is no gateway key."""
    (entry,) = entries("test/net1", result([NET1], IPS59, [{"dst": "10.10.10.0/24", "gw": "10.1.1.1"}]), default=False)
    assert "gateway" not in entry


def test_gw_less_default_route_takes_the_address_gateway() -> None:
    """A default route without gw (as the seed's host-local config gives) reports the address's gateway of that family."""
    ips = [
        {"address": "10.1.1.3/24", "gateway": "10.1.1.1", "interface": 0},
        {"address": "fd00:1::3/64", "gateway": "fd00:1::1"},
    ]
    (entry,) = entries("test/net1", result([NET1], ips, [{"dst": "0.0.0.0/0"}]), default=False)
    assert entry["gateway"] == ["10.1.1.1"]


def test_gw_less_default_route_of_one_family_beside_an_explicit_one_of_the_other() -> None:
    """Dual stack with `0.0.0.0/0 via 10.1.1.1` and a gw-less `::/0`: both gateways are listed (ConfigureIface fills gw per route)."""
    ips = [
        {"address": "10.1.1.3/24", "gateway": "10.1.1.1", "interface": 0},
        {"address": "fd00:1::3/64", "gateway": "fd00:1::1", "interface": 0},
    ]
    routes = [{"dst": "0.0.0.0/0", "gw": "10.1.1.1"}, {"dst": "::/0"}]
    (entry,) = entries("test/net1", result([NET1], ips, routes), default=False)
    assert entry["gateway"] == ["10.1.1.1", "fd00:1::1"]


def test_address_gateway_without_a_default_route_is_not_a_gateway() -> None:
    """An address gateway alone (no default route in the result) does not appear as a gateway."""
    ips = [{"address": "10.1.1.3/24", "gateway": "10.1.1.1"}]
    (entry,) = entries("test/net1", result([NET1], ips), default=True)
    assert "gateway" not in entry


def test_mtu_and_mac_are_omitted_when_unknown() -> None:
    """An interface without mac or mtu gives an entry without those keys."""
    (entry,) = entries("n", result([{"name": "net1", "sandbox": "/x"}], [{"address": "10.1.1.3/24"}]), default=False)
    assert "mac" not in entry and "mtu" not in entry
    assert entry["ips"] == ["10.1.1.3"]


def test_dns_is_always_present_and_carries_the_result_dns() -> None:
    """`dns` is always an object; a result's DNS settings appear in it."""
    dns = {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]}
    (entry,) = entries("n", result([NET1], IPS59, dns=dns), default=False)
    assert entry["dns"] == dns


# ---- case 60–62: several interfaces ----------------------------------------------------------------


def test_case60_one_entry_per_sandbox_interface_with_indexed_ips() -> None:
    """Case 60: [foo (host side), example0, example1] with IPs indexed 1, 1, 2 → two entries; foo is excluded; default on example0."""
    interfaces = [{"name": "foo"}, {"name": "example0", "sandbox": "/x"}, {"name": "example1", "sandbox": "/x"}]
    ips = [
        {"address": "10.1.1.1/24", "interface": 1},
        {"address": "10.1.1.2/24", "interface": 1},
        {"address": "10.1.1.3/24", "interface": 2},
    ]
    out = entries("mp-default", result(interfaces, ips), default=True)
    assert out == [
        {"name": "mp-default", "interface": "example0", "ips": ["10.1.1.1", "10.1.1.2"], "default": True, "dns": {}},
        {"name": "mp-default", "interface": "example1", "ips": ["10.1.1.3"], "dns": {}},
    ]


def test_case60_not_default_means_no_default_key_anywhere() -> None:
    """For a secondary network the default key is absent on every entry."""
    interfaces = [{"name": "example0", "sandbox": "/x"}, {"name": "example1", "sandbox": "/x"}]
    out = entries("test/net1", result(interfaces, [{"address": "10.1.1.3/24", "interface": 1}]), default=False)
    assert all("default" not in e for e in out)


def test_case61_unindexed_ip_goes_to_the_only_sandbox_interface() -> None:
    """Case 61: [eth0 (sandbox), foo] with an IP without index → one entry, eth0 with that IP."""
    out = entries(
        "n", result([{"name": "eth0", "sandbox": "/x"}, {"name": "foo"}], [{"address": "10.1.1.5/24"}]), default=False
    )
    assert [(e["interface"], e.get("ips")) for e in out] == [("eth0", ["10.1.1.5"])]


def test_case61_unindexed_ip_goes_to_the_last_sandbox_interface() -> None:
    """Case 61: [foo, eth0 (sandbox), eth1 (sandbox)] with an un-indexed IP → eth0 gets none, eth1 gets it."""
    interfaces = [{"name": "foo"}, {"name": "eth0", "sandbox": "/x"}, {"name": "eth1", "sandbox": "/x"}]
    out = entries("n", result(interfaces, [{"address": "10.1.1.5/24"}]), default=False)
    assert [(e["interface"], e.get("ips")) for e in out] == [("eth0", None), ("eth1", ["10.1.1.5"])]


def test_case62_default_flag_only_on_the_first_sandbox_interface() -> None:
    """Unlike Multus case 62 (default on the interface with a gateway IP), the master's first sandbox interface is default."""
    interfaces = [{"name": "eth0", "sandbox": "/x"}, {"name": "other-primary", "sandbox": "/x"}]
    ips = [
        {"address": "10.1.1.2/24", "interface": 0},
        {"address": "10.2.2.2/24", "gateway": "10.2.2.1", "interface": 1},
    ]
    out = entries("mp-default", result(interfaces, ips, [{"dst": "0.0.0.0/0", "gw": "10.2.2.1"}]), default=True)
    assert [(e["interface"], e.get("default", False)) for e in out] == [("eth0", True), ("other-primary", False)]


def test_gateway_goes_to_the_interface_whose_address_has_it() -> None:
    """With several sandbox interfaces, a default-route gateway is listed only on the interface whose IP carries it."""
    interfaces = [{"name": "eth0", "sandbox": "/x"}, {"name": "eth1", "sandbox": "/x"}]
    ips = [
        {"address": "10.1.1.2/24", "gateway": "10.1.1.1", "interface": 0},
        {"address": "10.2.2.2/24", "interface": 1},
    ]
    out = entries("n", result(interfaces, ips, [{"dst": "0.0.0.0/0", "gw": "10.1.1.1"}]), default=False)
    assert [e.get("gateway") for e in out] == [["10.1.1.1"], None]


# ---- case 63 and zero interfaces ------------------------------------------------------------------


def test_case63_interface_without_sandbox_gives_one_entry_without_interface() -> None:
    """Case 63: a single host-side interface `foo` and two IPs → one entry with all IPs and default, and no interface key."""
    out = entries(
        "mp-default", result([{"name": "foo"}], [{"address": "10.1.1.1/24"}, {"address": "10.1.1.2/24"}]), default=True
    )
    assert out == [{"name": "mp-default", "ips": ["10.1.1.1", "10.1.1.2"], "default": True, "dns": {}}]


def test_zero_interfaces_still_give_one_entry() -> None:
    """Unlike Multus (which drops the attachment), a result with only addresses still gets one entry."""
    out = entries(
        "test/net1",
        result(None, [{"address": "10.1.1.9/24", "gateway": "10.1.1.1"}], [{"dst": "0.0.0.0/0"}]),
        default=False,
    )
    assert out == [{"name": "test/net1", "ips": ["10.1.1.9"], "dns": {}, "gateway": ["10.1.1.1"]}]


def test_empty_result_still_gives_one_entry() -> None:
    """A completely empty result (e.g. a plugin that reports nothing) still lists the attachment by name."""
    assert entries("test/net1", result(), default=True) == [{"name": "test/net1", "default": True, "dns": {}}]


def test_converted_020_result_gives_one_entry() -> None:
    """A 0.2.0 result (no interfaces) converted up still gives one entry with its address and gateway."""
    res = Result.parse(
        {"cniVersion": "0.2.0", "ip4": {"ip": "10.1.1.7/24", "gateway": "10.1.1.1", "routes": [{"dst": "0.0.0.0/0"}]}},
        "0.2.0",
    )
    assert entries("n", res, default=False) == [{"name": "n", "ips": ["10.1.1.7"], "dns": {}, "gateway": ["10.1.1.1"]}]


# ---- render -----------------------------------------------------------------------------------------


def test_render_is_a_json_list_of_the_entries() -> None:
    """render() gives a JSON list that parses back to the entries, in order."""
    all_entries = entries("mp-default", result([NET1], IPS59), default=True) + entries(
        "test/net1", result(), default=False
    )
    text = render(all_entries)
    assert json.loads(text) == all_entries
    assert text.startswith("[{") and text.endswith("}]")


def test_render_indents_entries_like_multus() -> None:
    """Each entry is pretty-printed with 4-space indent, joined by commas inside brackets."""
    text = render([{"name": "a", "dns": {}}, {"name": "b", "dns": {}}])
    assert text == '[{\n    "name": "a",\n    "dns": {}\n},{\n    "name": "b",\n    "dns": {}\n}]'


def test_render_of_nothing_is_an_empty_list() -> None:
    """No entries render as `[]`."""
    assert render([]) == "[]"
