"""multiplane-cluster-ipam configuration: Whereabouts' documented examples parse as Whereabouts documents them.

The documented examples come from tests/whereabouts_examples.py (shared with the integration
test that runs the plugin on them, tests/integration/test_cluster_whereabouts_examples.py);
the rows of `test_whereabouts_config_tests_bounds` re-express Whereabouts' pkg/config tests.
Each test says what Whereabouts documents and checks our reading gives the same pool of
addresses.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest

from multiplane.errors import InvalidConfig, InvalidEnvironment
from multiplane.ipam.cluster import config as cfg
from multiplane.ipam.cluster.blocks import block_of, next_address
from tests.whereabouts_examples import BY_ID, EXAMPLES


def load(ipam: dict, cni_version: str = "0.3.0", cni_args: str = "", **top) -> cfg.ClusterIpamConf:
    conf = {"cniVersion": cni_version, "name": "mp-net", "type": "macvlan", "ipam": ipam, **top}
    return cfg.load(conf, "mp-net", cni_version, cni_args)


def example(example_id: str) -> cfg.ClusterIpamConf:
    """A documented example's network config, as Whereabouts' README shows it, parsed."""
    conf = BY_ID[example_id].conf
    return cfg.load(conf, conf["name"], conf["cniVersion"])


def usable(pool: cfg.PoolConf) -> list[str]:
    """Every address the pool hands out, in order (small ranges only)."""
    rng = pool.range
    return [str(ipaddress.ip_address(v)) for v in range(rng.first, rng.last + 1) if rng.usable(v)]


def first_handed_out(pool: cfg.PoolConf) -> str:
    """What an allocator owning every block hands out first (Whereabouts: the lowest free address)."""
    rng = pool.range
    owned = {block_of(rng, v, pool.block_prefix) for v in range(rng.first, min(rng.last, rng.first + 4096) + 1)}
    return str(ipaddress.ip_address(next_address(rng, owned, set())))


# ---- Whereabouts' documented examples ----------------------------------------------------


@pytest.mark.parametrize("example_id", [e.id for e in EXAMPLES])
def test_every_documented_example_parses_into_one_pool_per_range(example_id):
    """Every example of the shared list parses as shown (Whereabouts' `type` kept): one pool per range, in order."""
    ipam = BY_ID[example_id].ipam
    ranges = ([ipam["range"]] if "range" in ipam else []) + [r["range"] for r in ipam.get("ipRanges", [])]
    conf = example(example_id)
    assert len(conf.pools) == len(ranges) >= 1
    for pool, text in zip(conf.pools, ranges, strict=True):
        cidr = text.rpartition("-")[2] if "-" in text else text
        assert pool.range.subnet_str() == str(ipaddress.ip_network(cidr, strict=False))


def test_readme_main_example_excludes_network_broadcast_and_the_exclude_list():
    """README: range 192.168.2.225/28 allocates inside .224/28 without network and broadcast;
    exclude 192.168.2.229/30 (the whole /30, .228-.231) and 192.168.2.236/32."""
    conf = example("README.md#example-ipam-config")
    (pool,) = conf.pools
    assert pool.range.subnet_str() == "192.168.2.224/28"
    assert usable(pool) == [f"192.168.2.{i}" for i in (225, 226, 227, 232, 233, 234, 235, 237, 238)]
    assert pool.name == "192.168.2.224-28"
    assert conf.etcd is None and conf.kubeconfig == ""


def test_readme_exclude_first_sixteen_then_first_assigned_is_dot_16():
    """README: in 192.168.2.0/24 with 192.168.2.0/28 excluded, the first address assigned is .16."""
    (pool,) = example("README.md#introduction").pools
    assert pool.block_prefix == 28
    assert first_handed_out(pool) == "192.168.2.16"


def test_readme_nad_example_and_flat_file_style_config_need_no_store_keys():
    """The NAD example has only `range` (the kubeconfig comes from a flat file there): we parse it,
    and use the Kubernetes API found the usual way."""
    for example_id in (
        "README.md#an-example-configuration-using-a-networkattachmentdefinition",
        "doc/extended-configuration.md#example-flat-file-configuration",
        "doc/proposals/named-networks.md#design",
    ):
        conf = example(example_id)
        assert [p.range.subnet_str() for p in conf.pools] == ["192.168.2.224/28"]
        assert conf.kubeconfig == "" and conf.etcd is None


def test_readme_ipv6_example_keeps_the_gateway_and_never_hands_it_out():
    """README: range 2001::0/116 with gateway 2001::f:1 (which lies outside the /116: returned only)."""
    conf = example("README.md#example-ipv6-config")
    (pool,) = conf.pools
    assert str(pool.gateway) == "2001::f:1"
    assert pool.range.gateway is None
    assert pool.range.usable(int(ipaddress.ip_address("2001::1")))
    (inside,) = load({"range": "2001::0/116", "gateway": "2001::1"}).pools
    assert not inside.range.usable(int(ipaddress.ip_address("2001::1")))
    assert first_handed_out(inside) == "2001::2"
    assert not pool.range.usable(int(ipaddress.ip_address("2001::")))  # network address
    assert not pool.range.usable(int(ipaddress.ip_address("2001::fff")))  # last address, as Whereabouts
    assert pool.name == "2001::-116"


def test_readme_ip_ranges_multiple_addresses_and_range_comes_first():
    conf = example("README.md#example-ipam-config-for-assigning-multiple-ip-addresses(with-range)")
    assert [p.range.subnet_str() for p in conf.pools] == ["abcd::/64", "192.168.10.0/24", "176.168.0.0/16"]
    assert [p.block_prefix for p in conf.pools] == [120, 28, 28]


def test_readme_dual_stack():
    conf = example("README.md#example-dualstack-config")
    assert [p.range.version for p in conf.pools] == [4, 6]
    assert first_handed_out(conf.pools[0]) == "192.168.10.1"


def test_readme_range_end_syntax():
    (pool,) = example("README.md#range-end-syntax").pools
    assert usable(pool) == [f"192.168.2.{i}" for i in range(225, 231)]


def test_extended_configuration_etcd_example_maps_etcd_host_and_ignores_logging_keys():
    conf = example("doc/extended-configuration.md#example-etcd-datastore-configuration")
    assert conf.etcd is not None
    assert conf.etcd.endpoints == ["http://example-etcd-cluster-client.cluster.local:2379"]
    # a gateway outside the range is returned, and excludes nothing
    assert str(conf.pools[0].gateway) == "192.168.2.1"
    assert len(usable(conf.pools[0])) == 9


@pytest.mark.parametrize(
    ("ipam", "subnet", "first", "last"),
    [
        ({"range": "192.168.1.5-192.168.1.25/24"}, "192.168.1.0/24", "192.168.1.5", "192.168.1.25"),
        ({"range": "00192.00168.1.5-000000192.168.1.25/24"}, "192.168.1.0/24", "192.168.1.5", "192.168.1.25"),
        ({"range": "00192.00168.1.0/24"}, "192.168.1.0/24", "192.168.1.1", "192.168.1.254"),
        ({"range": "00192.00168.1.0/24", "range_start": "00192.00168.1.44"}, "192.168.1.0/24", "192.168.1.44", None),
        (
            {"range": "00192.00168.1.0/24", "range_start": "00192.00168.1.44", "range_end": "00192.00168.01.209"},
            "192.168.1.0/24",
            "192.168.1.44",
            "192.168.1.209",
        ),
        ({"range": "192.168.2.230/24", "range_start": "192.168.2.223"}, "192.168.2.0/24", "192.168.2.223", None),
        # a bound on the network address is moved to the first usable one, as Whereabouts does
        ({"range": "10.3.0.0/24", "range_start": "10.3.0.0"}, "10.3.0.0/24", "10.3.0.1", "10.3.0.254"),
        ({"range": "10.3.0.8/31"}, "10.3.0.8/31", "10.3.0.8", "10.3.0.9"),
        ({"range": "10.3.0.8/32"}, "10.3.0.8/32", "10.3.0.8", "10.3.0.8"),
    ],
)
def test_whereabouts_config_tests_bounds(ipam, subnet, first, last):
    (pool,) = load({"type": "whereabouts", **ipam}).pools
    rng = pool.range
    assert rng.subnet_str() == subnet
    assert str(ipaddress.ip_address(rng.first)) == first
    if last is not None:
        assert str(ipaddress.ip_address(rng.last)) == last


def test_ipv4_addresses_ending_in_dot_zero_are_never_handed_out():
    (pool,) = load({"range": "10.4.0.0/16"}).pools
    assert not pool.range.usable(int(ipaddress.ip_address("10.4.1.0")))
    assert pool.range.usable(int(ipaddress.ip_address("10.4.1.255")))


# ---- ours ----------------------------------------------------------------------------------


def test_pool_name_depends_on_the_subnet_and_network_name_only():
    a = load({"range": "10.5.0.10-10.5.0.50/24"}).pools[0].name
    b = load({"range": "10.5.0.0/24", "range_start": "10.5.0.100"}).pools[0].name
    assert a == b == "10.5.0.0-24"
    assert load({"range": "10.5.0.0/24", "network_name": "mp-lan"}).pools[0].name == "mp-lan-10.5.0.0-24"


@pytest.mark.parametrize(
    ("ipam", "block"),
    [
        ({"range": "10.6.0.0/24"}, 28),
        ({"range": "10.6.0.0/16"}, 28),
        ({"range": "10.6.0.200-10.6.0.216/24"}, 31),  # the seed's 17 addresses: still 9 block slots
        ({"range": "10.6.0.0/27"}, 30),
        ({"range": "fd00::/64"}, 120),
        ({"range": "10.6.0.0/24", "blockSize": 26}, 26),
        ({"range": "10.6.0.0/24", "blockSize": "/27"}, 27),
        ({"ipRanges": [{"range": "10.6.0.0/24", "blockSize": 29}, {"range": "fd00::/64", "blockSize": 124}]}, 29),
    ],
)
def test_block_size_defaults_and_settings(ipam, block):
    assert load(ipam).pools[0].block_prefix == block


def test_node_name_defaults_to_the_lower_cased_host_name(monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "MP-Node-7")
    assert load({"range": "10.7.0.0/24"}).node_name == "mp-node-7"
    assert load({"range": "10.7.0.0/24", "nodeName": "mp-n2"}).node_name == "mp-n2"


def test_node_name_defaults_to_the_daemons_node_name_under_the_daemon(monkeypatch):
    from multiplane import frontdoor
    from multiplane.daemon.config import DaemonConfig
    from multiplane.daemon.server import DaemonFrontDoor

    monkeypatch.setattr(socket, "gethostname", lambda: "mp-host-name")
    front = DaemonFrontDoor(DaemonConfig({"nodeName": "mp-kubelet-name"}), None)
    with frontdoor.serving(front):
        assert load({"range": "10.7.0.0/24"}).node_name == "mp-kubelet-name"
        assert load({"range": "10.7.0.0/24", "nodeName": "mp-n2"}).node_name == "mp-n2"
    assert load({"range": "10.7.0.0/24"}).node_name == "mp-host-name"


def test_etcd_object_with_tls_files_and_defaults():
    conf = load(
        {
            "range": "10.8.0.0/24",
            "etcd": {
                "endpoints": ["10.8.1.1:2379", "https://10.8.1.2:2379"],
                "certFile": "/etc/mp/etcd.crt",
                "keyFile": "/etc/mp/etcd.key",
                "caFile": "/etc/mp/ca.crt",
            },
            "kubernetes": {"kubeconfig": "/etc/mp/kubeconfig"},
            "dataDir": "/run/mp-cluster-ipam",
        }
    )
    assert conf.etcd.endpoints == ["https://10.8.1.1:2379", "https://10.8.1.2:2379"]
    assert (conf.etcd.cert_file, conf.etcd.key_file, conf.etcd.ca_file) == (
        "/etc/mp/etcd.crt",
        "/etc/mp/etcd.key",
        "/etc/mp/ca.crt",
    )
    assert conf.kubeconfig == "/etc/mp/kubeconfig"
    assert conf.data_dir == "/run/mp-cluster-ipam"
    assert load({"range": "10.8.0.0/24"}).data_dir == cfg.DEFAULT_DATA_DIR


def test_requested_addresses_from_cni_args_args_and_runtime_config():
    conf = load(
        {"range": "10.9.0.0/24"},
        cni_version="1.0.0",
        cni_args="IgnoreUnknown=1;IP=10.9.0.5/24,10.9.0.6;K8S_POD_NAME=mp-pod",
        args={"cni": {"ips": ["10.9.0.7"]}},
        runtimeConfig={"ips": ["10.9.0.8/24"]},
    )
    assert [str(a) for a in conf.requested] == ["10.9.0.5", "10.9.0.6", "10.9.0.7", "10.9.0.8"]
    with pytest.raises(InvalidEnvironment):
        load({"range": "10.9.0.0/24"}, cni_args="IP=mp-not-an-ip")


@pytest.mark.parametrize(
    ("ipam", "text"),
    [
        ({}, "ipam.range: missing"),
        ({"range": "10.10.0.0/33"}, "ipam.range: invalid CIDR"),
        ({"range": "mp"}, "ipam.range: invalid CIDR"),
        ({"range": "192.168.1.5-192.168.2.25/28"}, "ipam.range_start: 192.168.1.5 is not in range 192.168.2.16/28"),
        ({"range": "10.10.0.x-10.10.0.9/24"}, "ipam.range: invalid range start IP"),
        ({"range": "10.10.0.0/24", "range_start": "10.11.0.1"}, "ipam.range_start: 10.11.0.1 is not in range"),
        ({"range": "10.10.0.0/24", "range_start": "mp"}, "ipam.range_start: invalid IP address"),
        (
            {"range": "10.10.0.0/24", "range_start": "10.10.0.9", "range_end": "10.10.0.3"},
            "ipam.range_end: 10.10.0.3 is before",
        ),
        ({"range": "10.10.0.5-10.10.0.9/24", "range_start": "10.10.0.6"}, "ipam.range_start: 10.10.0.6 contradicts"),
        ({"range": "10.10.0.0/24", "exclude": ["10.10.0.7/33"]}, "ipam.exclude[0]: invalid CIDR"),
        ({"range": "10.10.0.0/24", "exclude": "10.10.0.0/28"}, "ipam.exclude: expected a list"),
        (
            {"range": "10.10.0.0/24", "exclude": ["fd00::/120"]},
            "ipam.exclude[0]: fd00::/120 is not of the range's family",
        ),
        ({"range": "10.10.0.0/30", "exclude": ["10.10.0.0/30"]}, "leaves no address"),
        ({"range": "10.10.0.0/24", "blockSize": 20}, "ipam.blockSize: /20 must lie between"),
        ({"range": "10.10.0.0/24", "blockSize": 33}, "ipam.blockSize: /33 must lie between"),
        ({"range": "10.10.0.0/24", "blockSize": True}, "ipam.blockSize: expected a prefix length"),
        (
            {"ipRanges": [{"range": "10.10.0.0/24"}, {"range": "fd00::/64"}], "blockSize": 28},
            "ipam.ipRanges[1].blockSize",
        ),
        ({"ipRanges": {"range": "10.10.0.0/24"}}, "ipam.ipRanges: expected a list"),
        ({"ipRanges": ["10.10.0.0/24"]}, "ipam.ipRanges[0]: expected an object"),
        ({"ipRanges": [{"range": "10.10.0.0/24"}, {"range": "10.10.0.128/25"}]}, "ipam.ipRanges[1].range: overlaps"),
        ({"range": "10.10.0.0/24", "gateway": "mp"}, "ipam.gateway: invalid IP address"),
        ({"range": "10.10.0.0/24", "etcd": {"endpoints": []}}, "ipam.etcd.endpoints"),
        ({"range": "10.10.0.0/24", "etcd": {"endpoints": ["a:1"], "certFile": "/c"}}, "both its cert and key"),
        ({"range": "10.10.0.0/24", "etcd": {"endpoints": ["unix://x"]}}, "must be http:// or https://"),
        ({"range": "10.10.0.0/24", "dataDir": "var/lib"}, "ipam.dataDir"),
        ({"range": "10.10.0.0/24", "dataDir": "/var/../etc"}, "ipam.dataDir"),
        ({"range": "10.10.0.0/24", "nodeName": ""}, "ipam.nodeName"),
        ({"range": "10.10.0.0/24", "nodeName": 7}, "ipam.nodeName"),
        ({"range": "10.10.0.0/24", "kubernetes": "/k"}, "ipam.kubernetes"),
        ({"range": "10.10.0.0/24", "routes": [{"dst": "mp"}]}, "invalid CIDR"),
        ({"range": 7}, "ipam.range: expected a string"),
    ],
)
def test_invalid_configs_name_the_key(ipam, text):
    with pytest.raises(InvalidConfig) as info:
        load(ipam)
    assert info.value.code == 7
    assert text in info.value.msg


def test_old_cni_versions_allow_one_address_per_family():
    with pytest.raises(InvalidConfig, match="does not support more than 1 address per family"):
        load({"ipRanges": [{"range": "10.12.0.0/24"}, {"range": "10.13.0.0/24"}]}, cni_version="0.2.0")


def test_missing_ipam_and_routes_returned():
    with pytest.raises(InvalidConfig, match="missing 'ipam'"):
        cfg.load({"name": "mp"}, "mp", "1.0.0")
    conf = load({"range": "10.14.0.0/24", "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.0.0.0/8", "gw": "10.14.0.1"}]})
    assert [str(r.dst) for r in conf.routes] == ["0.0.0.0/0", "10.0.0.0/8"]


# ---- host-local's names, dns, node_slice_size, a bare address in exclude ----


def _seed_nad_ipam() -> dict:
    """The seed's macvlan-conf NAD's IPAM section (cni/nads), with only its type changed."""
    import json
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[2] / "cni" / "nads" / "macvlan.yaml"
    nad = yaml.safe_load(path.read_text())
    ipam = json.loads(nad["spec"]["config"])["ipam"]
    assert ipam["type"] == "host-local" and "subnet" in ipam
    return {**ipam, "type": "multiplane-cluster-ipam"}


def test_the_seed_nad_moves_over_by_changing_its_type_alone():
    conf = load(_seed_nad_ipam(), "1.0.0")
    (pool,) = conf.pools
    rng = pool.range
    assert pool.name == "192.168.174.0-24"
    assert (str(ipaddress.ip_address(rng.first)), str(ipaddress.ip_address(rng.last))) == (
        "192.168.174.200",
        "192.168.174.216",
    )
    assert str(pool.gateway) == "192.168.174.2"
    assert [str(r.dst) for r in conf.routes] == ["0.0.0.0/0"]


def test_host_local_range_sets_become_ip_ranges_each_with_its_gateway():
    conf = load(
        {
            "ranges": [
                [{"subnet": "10.9.0.0/24", "rangeStart": "10.9.0.10", "gateway": "10.9.0.1"}],
                [{"subnet": "fd00:9::/64", "gateway": "fd00:9::1"}],
            ]
        },
        "1.0.0",
    )
    assert [p.name for p in conf.pools] == ["10.9.0.0-24", "fd00:9::-64"]
    assert [str(p.gateway) for p in conf.pools] == ["10.9.0.1", "fd00:9::1"]
    assert str(ipaddress.ip_address(conf.pools[0].range.first)) == "10.9.0.10"


@pytest.mark.parametrize(
    "ipam, words",
    [
        ({"ranges": [[{"subnet": "10.9.0.0/25"}, {"subnet": "10.9.0.128/25"}]]}, "exactly one range"),
        ({"ranges": {"subnet": "10.9.0.0/24"}}, "list of range sets"),
        ({"subnet": "10.9.0.0/24", "range": "10.9.0.0/24"}, "one set of names"),
        ({"rangeStart": "10.9.0.5", "ipRanges": [{"range": "10.9.0.0/24"}]}, "one set of names"),
    ],
)
def test_host_local_names_refused_when_ambiguous(ipam, words):
    with pytest.raises(InvalidConfig, match=words):
        load(ipam, "1.0.0")


def test_dns_is_read_for_the_result():
    conf = load({"range": "10.9.0.0/24", "dns": {"nameservers": ["10.9.0.53"], "search": ["mp.example"]}})
    assert conf.dns.nameservers == ["10.9.0.53"] and conf.dns.search == ["mp.example"]
    with pytest.raises(InvalidConfig, match="ipam.dns"):
        load({"range": "10.9.0.0/24", "dns": ["10.9.0.53"]})


def test_node_slice_size_is_the_block_size_unless_block_size_is_set():
    assert load({"range": "10.0.0.0/8", "node_slice_size": "/22"}).pools[0].block_prefix == 22
    assert load({"range": "10.0.0.0/8", "node_slice_size": "/22", "blockSize": 26}).pools[0].block_prefix == 26


def test_a_bare_address_in_exclude_excludes_itself():
    rng = load({"range": "10.9.0.0/29", "exclude": ["10.9.0.3", "10.9.0.5/32"]}).pools[0].range
    assert [v & 0xFF for v in range(rng.first, rng.last + 1) if rng.usable(v)] == [1, 2, 4, 6]
    with pytest.raises(InvalidConfig, match=r"exclude\[0\]"):
        load({"range": "10.9.0.0/29", "exclude": ["10.9.0.300"]})
