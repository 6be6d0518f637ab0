"""The network selection annotation parser (multiplane.plugins.meta.selection).

Scenario numbers are those of /work/shared/research/multus.md §10 (cases 1–12, 45) and the
field table of §2.2. Pods are in namespace `test` unless stated.
"""

from __future__ import annotations

import json

import pytest

from multiplane.errors import InvalidConfig
from multiplane.plugins.meta.selection import (
    DEFAULT_NETWORK_ANNOTATION,
    NETWORK_STATUS_ANNOTATION,
    NETWORKS_ANNOTATION,
    Selection,
    parse,
)

JSON_PREFIX = "parsePodNetworkAnnotation: failed to parse pod Network Attachment Selection Annotation JSON format: "


def keys(selections: list[Selection]) -> list[tuple[str, str, str]]:
    return [(s.namespace, s.name, s.interface) for s in selections]


def invalid(value: str, namespace: str = "test") -> InvalidConfig:
    with pytest.raises(InvalidConfig) as info:
        parse(value, namespace)
    assert info.value.code == 7
    return info.value


# ---- annotation names ---------------------------------------------------------------------------


def test_annotation_keys_are_the_multus_ones() -> None:
    """The three annotation keys are spelled exactly as Multus and the NAD spec spell them."""
    assert NETWORKS_ANNOTATION == "k8s.v1.cni.cncf.io/networks"
    assert DEFAULT_NETWORK_ANNOTATION == "v1.multus-cni.io/default-network"
    assert NETWORK_STATUS_ANNOTATION == "k8s.v1.cni.cncf.io/network-status"


# ---- text form (cases 1–7) ----------------------------------------------------------------------


def test_case1_comma_list_gives_one_selection_per_name_in_order() -> None:
    """Case 1: `net1,net2` selects net1 then net2 in the pod's namespace, neither with an interface."""
    assert keys(parse("net1,net2", "test")) == [("test", "net1", ""), ("test", "net2", "")]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("net1", ("test", "net1", "")),
        ("default/net1", ("default", "net1", "")),
        ("net1@my_interface", ("test", "net1", "my_interface")),
        ("default/net1@my_interface", ("default", "net1", "my_interface")),
    ],
)
def test_case2_text_forms_parse(value: str, expected: tuple[str, str, str]) -> None:
    """Case 2: name, ns/name, name@if and ns/name@if all parse (an underscore in the ifname is fine)."""
    assert keys(parse(value, "test")) == [expected]


def test_case3_more_than_one_slash_is_an_error() -> None:
    """Case 3: an item with two '/' is rejected and the error names the item."""
    err = invalid("root@someIP/root@someOtherIP/root@thirdIP")
    assert "root@someIP/root@someOtherIP/root@thirdIP" in err.msg
    assert err.msg.startswith("parsePodNetworkAnnotation: ")


def test_case4_more_than_one_at_is_an_error() -> None:
    """Case 4: an item with more than one '@' is rejected."""
    err = invalid("root@someIP/root@someOtherIP@garbagevalue")
    assert "more than one '@'" in err.msg


def test_case5_namespace_must_be_a_dns1123_label() -> None:
    """Case 5: a namespace that is not a DNS-1123 label (here `root@someIP`, or upper case) is rejected."""
    invalid("root@someIP/root@someOtherIP")
    err = invalid("Kube_System/net1")
    assert "namespace 'Kube_System'" in err.msg and "DNS-1123" in err.msg


def test_network_name_must_be_a_dns1123_label() -> None:
    """A network name with upper case or a leading dash is rejected in the text form."""
    assert "network name 'Net1'" in invalid("Net1").msg
    invalid("-net1")


def test_case6_whitespace_in_ifname_is_an_error() -> None:
    """Case 6: `default/net1@myIfc Name` is rejected because the interface name has a space."""
    err = invalid("default/net1@myIfc Name")
    assert "'myIfc Name'" in err.msg and "whitespace" in err.msg


def test_case7_ifname_longer_than_15_characters_is_an_error() -> None:
    """Case 7: an interface name of 16+ characters is rejected; exactly 15 is accepted."""
    err = invalid("default/net1@very_long_interface_name")
    assert "too long" in err.msg
    assert keys(parse("net1@abcdefghijklmno", "test")) == [("test", "net1", "abcdefghijklmno")]


def test_items_are_trimmed_and_empty_items_skipped() -> None:
    """Whitespace around items and around the whole value is trimmed; empty items between commas are skipped."""
    assert keys(parse("  net1 ,\tother/net2@eth9 ,, ", "test")) == [("test", "net1", ""), ("other", "net2", "eth9")]


def test_empty_namespace_before_slash_means_the_pod_namespace() -> None:
    """`/net1` (empty namespace) takes the default namespace, as Multus allows an empty namespace."""
    assert keys(parse("/net1", "test")) == [("test", "net1", "")]


def test_same_network_twice_gives_two_selections() -> None:
    """The same network may be listed twice; each is a separate attachment."""
    assert keys(parse("net-a,net-a", "test")) == [("test", "net-a", ""), ("test", "net-a", "")]


def test_default_namespace_is_the_one_given() -> None:
    """A missing namespace is the one the caller passes (the multus namespace for the default-network annotation)."""
    assert keys(parse("net1", "kube-system")) == [("kube-system", "net1", "")]
    assert parse("ns1/net1", "kube-system")[0].key == "ns1/net1"


# ---- empty values (case 12) -----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "   ", "\n\t", ",", " , ,", "[]", " [ ] "])
def test_case12_empty_annotation_selects_nothing(value: str) -> None:
    """Case 12: an empty (or all-blank, or empty-list) annotation means no extra networks, not an error."""
    assert parse(value, "test") == []


# ---- JSON form (cases 8–11) -----------------------------------------------------------------------


def test_case8_bad_json_has_the_multus_error_prefix() -> None:
    """Case 8: `[adsfasdfasdfasf]` fails with Multus's `parsePodNetworkAnnotation: failed to parse ... JSON format: ` prefix."""
    err = invalid("[adsfasdfasdfasf]")
    assert err.msg.startswith(JSON_PREFIX)
    assert len(err.msg) > len(JSON_PREFIX)


@pytest.mark.parametrize("value", ['{"name":"a"}', '"net1"', '[{"name":"a"}'])
def test_json_must_be_a_list(value: str) -> None:
    """Anything with `[`, `{` or `"` is JSON and must be a list: a bare object or string fails."""
    err = invalid(value)
    assert err.msg.startswith("parsePodNetworkAnnotation: ")


def test_case9_json_list_with_namespaces_and_unknown_keys() -> None:
    """Case 9: three elements parse; net3 is looked up in other-ns; the obsolete ipRequest/macRequest keys are ignored."""
    value = json.dumps(
        [
            {"name": "net1"},
            {"name": "net2", "ipRequest": "10.1.2.3", "macRequest": "aa:bb:cc:dd:ee:ff"},
            {"name": "net3", "namespace": "other-ns"},
        ]
    )
    out = parse(value, "test")
    assert keys(out) == [("test", "net1", ""), ("test", "net2", ""), ("other-ns", "net3", "")]
    assert out[1].ips == [] and out[1].mac == ""


def test_case10_default_route_is_recorded_on_its_element() -> None:
    """Case 10: `default-route` is kept on the element that asked for it; other elements have None."""
    out = parse('[{"name":"net1"},{"name":"net2","default-route":["10.2.2.2"]},{"name":"net3"}]', "test")
    assert [s.default_route for s in out] == [None, ["10.2.2.2"], None]


def test_case11_interface_key_is_the_interface_request() -> None:
    """Case 11: `interface` becomes the requested ifname and the namespace defaults to the pod's."""
    out = parse('[{"name":"test-net-attach-def","interface":"test1"}]', "fakeNamespace1")
    assert keys(out) == [("fakeNamespace1", "test-net-attach-def", "test1")]


def test_interface_request_is_the_deprecated_alias() -> None:
    """`interfaceRequest` is used only when `interface` is empty or absent."""
    assert parse('[{"name":"n","interfaceRequest":"old0"}]', "test")[0].interface == "old0"
    assert parse('[{"name":"n","interface":"new0","interfaceRequest":"old0"}]', "test")[0].interface == "new0"
    assert parse('[{"name":"n","interface":"","interfaceRequest":"old0"}]', "test")[0].interface == "old0"


def test_json_interface_name_is_checked_too() -> None:
    """A JSON `interface` longer than 15 characters is rejected at parse time (Multus defers this to ADD)."""
    err = invalid('[{"name":"n","interface":"abcdefghijklmnop"}]')
    assert "too long" in err.msg


def test_json_empty_namespace_is_the_default() -> None:
    """`"namespace": ""` means the pod's namespace."""
    assert parse('[{"name":"n","namespace":""}]', "test")[0].namespace == "test"


@pytest.mark.parametrize("value", ['[{"namespace":"a"}]', '[{"name":""}]', '[{"name":null}]'])
def test_json_element_needs_a_name(value: str) -> None:
    """A JSON element without a name is an error that quotes the element."""
    assert "has no name" in invalid(value).msg


@pytest.mark.parametrize("value", ['[{"name":5}]', '[{"name":"n","namespace":["a"]}]', '[{"name":"n","interface":1}]'])
def test_json_string_fields_must_be_strings(value: str) -> None:
    """name, namespace and interface of the wrong JSON type are rejected."""
    assert "must be a string" in invalid(value).msg


def test_json_element_must_be_an_object() -> None:
    """A list element that is not an object (e.g. a bare name) is rejected."""
    assert "must be an object" in invalid('["net1"]').msg


# ---- JSON fields (§2.2, case 42) ------------------------------------------------------------------


def test_all_fields_are_copied() -> None:
    """Case 42: interface, mac, infiniband-guid, ips, bandwidth, portMappings, cni-args and deviceID are all kept."""
    element = {
        "name": "net1",
        "interface": "testIF1",
        "mac": "c2:11:22:33:44:66",
        "infiniband-guid": "24:8a:07:03:00:8d:ae:2e",
        "ips": ["10.0.0.1/24"],
        "bandwidth": {"ingressRate": 2048, "ingressBurst": 1600, "egressRate": 4096, "egressBurst": 1600},
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
        "cni-args": {"args1": "val1"},
        "deviceID": "0000:00:00.0",
    }
    (s,) = parse(json.dumps([element]), "test")
    assert s.interface == "testIF1"
    assert s.mac == "c2:11:22:33:44:66"
    assert s.infiniband_guid == "24:8a:07:03:00:8d:ae:2e"
    assert s.ips == ["10.0.0.1/24"]
    assert s.bandwidth == element["bandwidth"]
    assert s.port_mappings == element["portMappings"]
    assert s.cni_args == {"args1": "val1"}
    assert s.device_id == "0000:00:00.0"
    assert s.default_route is None


def test_defaults_when_fields_are_absent() -> None:
    """An element with only a name has no requests at all (None for the optional objects)."""
    (s,) = parse('[{"name":"net1"}]', "test")
    assert (s.ips, s.mac, s.infiniband_guid, s.device_id) == ([], "", "", "")
    assert (s.port_mappings, s.bandwidth, s.cni_args, s.default_route) == (None, None, None, None)


@pytest.mark.parametrize("ips", [["10.0.0.1"], ["10.0.0.1/24", "fd00:10::5"], ["fd00:10::5/64"]])
def test_ips_accept_addresses_and_cidrs(ips: list[str]) -> None:
    """`ips` entries may be plain addresses or CIDRs of either family; they are kept as written."""
    assert parse(json.dumps([{"name": "n", "ips": ips}]), "test")[0].ips == ips


@pytest.mark.parametrize("bad", [["10.0.0.300"], ["10.0.0.1", "nope"], ["10.0.0.1/33"], "10.0.0.1", [5]])
def test_invalid_ips_reject_the_whole_annotation(bad: object) -> None:
    """One unparseable `ips` entry (or a non-list) rejects the whole annotation."""
    value = json.dumps([{"name": "ok"}, {"name": "n", "ips": bad}])
    err = invalid(value)
    assert "failed to parse IP address" in err.msg or "'ips' must be a list of strings" in err.msg


@pytest.mark.parametrize(
    ("written", "normalised"),
    [
        ("C2:11:22:33:44:66", "c2:11:22:33:44:66"),
        ("c2-11-22-33-44-66", "c2:11:22:33:44:66"),
        ("c211.2233.4466", "c2:11:22:33:44:66"),
    ],
)
def test_mac_is_normalised(written: str, normalised: str) -> None:
    """`mac` in any of Go's ParseMAC 6-byte spellings becomes lower-case colon form."""
    assert parse(json.dumps([{"name": "n", "mac": written}]), "test")[0].mac == normalised


@pytest.mark.parametrize("bad", ["c2:11:22:33:44", "zz:11:22:33:44:66", "c2:11:22:33:44:66:77:88"])
def test_invalid_mac_is_an_error(bad: str) -> None:
    """A `mac` that is not a 6-byte hardware address is rejected with the key named."""
    assert "failed to parse mac" in invalid(json.dumps([{"name": "n", "mac": bad}])).msg


@pytest.mark.parametrize(
    ("guid", "stored"),
    [
        ("24:8A:07:03:00:8D:AE:2E", "24:8a:07:03:00:8d:ae:2e"),
        (":".join(["0A"] * 20), ":".join(["0a"] * 20)),
        ("c2:11:22:33:44:66", "c2:11:22:33:44:66"),
    ],
)
def test_infiniband_guid_accepts_8_and_20_byte_forms(guid: str, stored: str) -> None:
    """`infiniband-guid` accepts the 8- and 20-byte forms (and 6-byte) like ParseMAC, lower-cased."""
    assert parse(json.dumps([{"name": "n", "infiniband-guid": guid}]), "test")[0].infiniband_guid == stored


@pytest.mark.parametrize("bad", ["24:8a:07:03:00:8d:ae", "gg:8a:07:03:00:8d:ae:2e", "not-a-guid"])
def test_invalid_infiniband_guid_is_an_error(bad: str) -> None:
    """A malformed `infiniband-guid` is rejected with the key named."""
    assert "failed to parse infiniband-guid" in invalid(json.dumps([{"name": "n", "infiniband-guid": bad}])).msg


def test_default_route_empty_list_is_present_but_empty() -> None:
    """Case 45: `"default-route": []` is recorded as an empty list (not None), and null counts as empty too."""
    assert parse('[{"name":"n","default-route":[]}]', "test")[0].default_route == []
    assert parse('[{"name":"n","default-route":null}]', "test")[0].default_route == []


def test_default_route_one_gateway_per_family_is_fine() -> None:
    """One IPv4 and one IPv6 gateway, even on different elements, are allowed."""
    out = parse('[{"name":"a","default-route":["10.1.1.1"]},{"name":"b","default-route":["fd00:1::1"]}]', "test")
    assert [s.default_route for s in out] == [["10.1.1.1"], ["fd00:1::1"]]
    assert parse('[{"name":"a","default-route":["10.1.1.1","fd00:1::1"]}]', "test")[0].default_route == [
        "10.1.1.1",
        "fd00:1::1",
    ]


@pytest.mark.parametrize(
    "value",
    [
        '[{"name":"a","default-route":["10.1.1.1"]},{"name":"b","default-route":["10.2.2.2"]}]',
        '[{"name":"a","default-route":["10.1.1.1","10.2.2.2"]}]',
        '[{"name":"a","default-route":["fd00:1::1"]},{"name":"b","default-route":["fd00:2::1"]}]',
    ],
)
def test_two_gateways_of_one_family_is_the_ecmp_error(value: str) -> None:
    """Case 45 (code): two IPv4 (or two IPv6) default-route gateways across the annotation are refused (no ECMP)."""
    assert "does not support ECMP for default-route" in invalid(value).msg


@pytest.mark.parametrize("bad", ['["10.1.1.300"]', '["10.1.1.0/24"]', '"10.1.1.1"', "[1]"])
def test_default_route_must_be_a_list_of_addresses(bad: str) -> None:
    """A default-route that is not a list of bare IP addresses rejects the annotation."""
    assert "'default-route' must be a list of IP addresses" in invalid(f'[{{"name":"n","default-route":{bad}}}]').msg


def test_port_mappings_bandwidth_and_cni_args_need_the_right_json_type() -> None:
    """portMappings must be a list, bandwidth and cni-args objects; null means absent."""
    assert "'portMappings' must be a list" in invalid('[{"name":"n","portMappings":{}}]').msg
    assert "'bandwidth' must be an object" in invalid('[{"name":"n","bandwidth":[]}]').msg
    assert "'cni-args' must be an object" in invalid('[{"name":"n","cni-args":"a=b"}]').msg
    (s,) = parse('[{"name":"n","portMappings":null,"bandwidth":null,"cni-args":null}]', "test")
    assert (s.port_mappings, s.bandwidth, s.cni_args) == (None, None, None)


def test_json_is_chosen_by_a_quote_bracket_or_brace_anywhere() -> None:
    """Surrounding whitespace does not stop JSON detection, and the JSON value is parsed as a list."""
    assert keys(parse('  \n[ {"name": "net1", "interface": "if1"} ]\n', "test")) == [("test", "net1", "if1")]


def test_selection_key_and_repr() -> None:
    """A selection's key is `<namespace>/<name>`, which becomes the delegate name in network-status."""
    s = parse("ns1/net1@if9", "test")[0]
    assert s.key == "ns1/net1"
    assert repr(s) == "Selection(ns1/net1@if9)"


# ---- names reach API paths only validated (issue 11 #2b) ------------------------------------------


@pytest.mark.parametrize(
    "element",
    [
        {"name": "x/../../../other/network-attachment-definitions/secret"},
        {"name": "../x"},
        {"name": "net1", "namespace": "../kube-system"},
        {"name": "net1", "namespace": "a/b"},
        {"name": "Net1"},
        {"name": "net1\u0000"},
        {"name": "net1", "namespace": "x" * 64},
    ],
)
def test_json_form_validates_names_and_namespaces(element: dict[str, str]) -> None:
    """The JSON form refuses a name that is not a DNS-1123 subdomain or a namespace that is not a label (code 7)."""
    err = invalid(json.dumps([element]))
    assert "DNS-1123" in err.msg


def test_dotted_nad_names_are_subdomains() -> None:
    """NAD names are subdomains: dots are fine in both forms."""
    assert keys(parse("macvlan.conf", "test")) == [("test", "macvlan.conf", "")]
    assert keys(parse('[{"name":"macvlan.conf"}]', "test")) == [("test", "macvlan.conf", "")]


def test_deeply_nested_json_is_a_config_error() -> None:
    """Issue 11 #8: `[` repeated 3,000 times is code 7, not a RecursionError."""
    err = invalid("[" * 3000)
    assert err.code == 7
    err = invalid('[{"name":' * 3000)
    assert err.code == 7
