"""In-process tests of the host-local IPAM modules (ranges, config, allocator, DiskStore) and of the
plugin's GC/STATUS, which the reference 1.1.1 binary cannot run.

Scenario ids are those of /work/shared/research/reference-plugins.md §4.2–§4.4 (T12–T47) and
cni-spec.md §9.2 (GC/STATUS vectors T43–T45, written S43–S45 here). Addresses are translated to
10.x / 2001:db8::/32 / fd00::/8; the expected texts follow the reference's formats.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import stat
import threading
from typing import Any

import pytest

from multiplane.errors import CniError, InvalidConfig, InvalidEnvironment, IOFailure, NotAvailable, TryAgainLater
from multiplane.ipam import config as ipam_config, disk
from multiplane.ipam.allocator import allocate, walk
from multiplane.ipam.disk import DiskStore
from multiplane.ipam.ranges import Range, RangeError, RangeSet
from multiplane.plugins.host_local import HostLocal
from multiplane.skel import dispatch
from multiplane.spec.gojson import parse_cidr, parse_ip

A = ipaddress.ip_address


def mk(subnet: str, start: str | None = None, end: str | None = None, gw: str | None = None) -> Range:
    ip, prefix, bits = parse_cidr(subnet)
    return Range(
        ip,
        prefix,
        bits,
        parse_ip(start) if start else None,
        parse_ip(end) if end else None,
        parse_ip(gw) if gw else None,
    )


def canon(*ranges: Range) -> RangeSet:
    rset = RangeSet(ranges)
    rset.canonicalize()
    return rset


def rs(*subnets: str) -> RangeSet:
    return canon(*(mk(s) for s in subnets))


def bounds(rng: Range) -> tuple[str, str, str]:
    return str(rng.start_ip), str(rng.end_ip), str(rng.gateway_ip)


# =============================================================================================
# Ranges and range sets (T22–T36)
# =============================================================================================


class TestRange:
    def test_T22_defaults_v4(self) -> None:
        rng = mk("10.0.2.0/24")
        rng.canonicalize()
        assert bounds(rng) == ("10.0.2.1", "10.0.2.254", "10.0.2.1")
        assert str(rng) == "10.0.2.1-10.0.2.254"

    def test_T23_defaults_v4_25(self) -> None:
        rng = mk("10.0.2.0/25")
        rng.canonicalize()
        assert bounds(rng) == ("10.0.2.1", "10.0.2.126", "10.0.2.1")

    def test_defaults_v4_30(self) -> None:
        rng = mk("10.0.2.0/30")
        rng.canonicalize()
        assert bounds(rng) == ("10.0.2.1", "10.0.2.2", "10.0.2.1")
        assert rng.size() == 1

    @pytest.mark.parametrize(
        ("subnet", "network"),
        [
            ("10.0.2.12/24", "10.0.2.0"),  # T24
            ("2001:DB8:1::24:19ff:fee1:c44a/64", "2001:db8:1::"),  # T25
            ("2001:DB8:24:19ff::/63", "2001:db8:24:19fe::"),  # T26
            ("10.168.127.0/23", "10.168.126.0"),  # T27
        ],
    )
    def test_T24_T27_host_bits(self, subnet: str, network: str) -> None:
        rng = mk(subnet)
        prefix = subnet.rsplit("/", 1)[1]
        with pytest.raises(RangeError) as exc:
            rng.canonicalize()
        assert str(exc.value) == (
            f"Network has host bits set. For a subnet mask of length {prefix} the network address is {network}"
        )

    def test_T28_defaults_v6(self) -> None:
        rng = mk("2001:DB8:1::/64")
        rng.canonicalize()
        # Go's net.IP.String, like RFC 5952, never shortens a single zero field with "::"
        assert bounds(rng) == ("2001:db8:1::1", "2001:db8:1:0:ffff:ffff:ffff:ffff", "2001:db8:1::1")

    @pytest.mark.parametrize("subnet", ["10.0.2.0/31", "10.0.2.0/32", "fd00::/127", "fd00::/128"])
    def test_T29_too_small(self, subnet: str) -> None:
        with pytest.raises(RangeError) as exc:
            mk(subnet).canonicalize()
        assert str(exc.value) == f"Network {subnet} too small to allocate from"

    @pytest.mark.parametrize(
        ("start", "end", "msg"),
        [
            ("10.0.3.0", None, "RangeStart 10.0.3.0 not in network 10.0.2.0/24"),
            (None, "10.0.4.0", "RangeEnd 10.0.4.0 not in network 10.0.2.0/24"),
            ("10.0.2.50", "10.0.2.40", "RangeStart 10.0.2.50 not in network 10.0.2.0/24"),
            ("fd00::1", None, "RangeStart fd00::1 not in network 10.0.2.0/24"),
        ],
    )
    def test_T30_bounds_outside(self, start: str | None, end: str | None, msg: str) -> None:
        with pytest.raises(RangeError) as exc:
            mk("10.0.2.0/24", start, end).canonicalize()
        assert str(exc.value) == msg

    def test_T31_explicit_values_kept(self) -> None:
        rng = mk("10.0.2.0/24", "10.0.2.40", "10.0.2.50", "10.0.2.254")
        rng.canonicalize()
        assert bounds(rng) == ("10.0.2.40", "10.0.2.50", "10.0.2.254")
        assert isinstance(rng.start_ip, ipaddress.IPv4Address)

    def test_v4_mapped_bounds_are_v4(self) -> None:
        rng = mk("10.0.2.0/24", "::ffff:10.0.2.40")
        rng.canonicalize()
        assert rng.start_ip == A("10.0.2.40")

    @pytest.mark.parametrize(
        ("subnet", "start", "end", "probes"),
        [
            (
                "10.0.2.0/24",
                "10.0.2.40",
                "10.0.2.50",
                {"10.0.3.0": False, "10.0.2.39": False, "10.0.2.40": True, "10.0.2.50": True, "10.0.2.51": False},
            ),
            (
                "2001:db8:1::/64",
                "2001:db8:1::40",
                "2001:db8:1::50",
                {
                    "2001:db8:2::": False,
                    "2001:db8:1::39": False,
                    "2001:db8:1::40": True,
                    "2001:db8:1::50": True,
                    "2001:db8:1::51": False,
                },
            ),
        ],
    )
    def test_T32_contains(self, subnet: str, start: str, end: str, probes: dict[str, bool]) -> None:
        rng = mk(subnet, start, end)
        rng.canonicalize()
        assert {ip: rng.contains(A(ip)) for ip in probes} == probes
        assert not rng.contains(A("10.0.2.45") if ":" in subnet else A("2001:db8::45"))

    @pytest.mark.parametrize(
        ("a", "b", "expected"),
        [
            (mk("10.0.0.0/24"), mk("10.0.1.0/24"), False),
            (mk("10.0.0.0/24"), mk("fd00::/24"), False),
            (mk("10.0.0.0/24"), mk("10.0.0.0/24"), True),
            (mk("10.0.0.0/20"), mk("10.0.2.0/24"), True),
            (mk("10.0.0.0/24", end="10.0.0.127"), mk("10.0.0.0/24", start="10.0.0.128"), False),
            (mk("10.0.0.0/24", end="10.0.0.127"), mk("10.0.0.0/24", start="10.0.0.127"), True),
        ],
    )
    def test_T33_overlaps_symmetric(self, a: Range, b: Range, expected: bool) -> None:
        a.canonicalize()
        b.canonicalize()
        assert a.overlaps(b) is expected
        assert b.overlaps(a) is expected

    def test_subnet_missing(self) -> None:
        with pytest.raises(RangeError, match=r"^IP <nil> not v4 nor v6$"):
            Range(None).canonicalize()

    def test_version_mismatch(self) -> None:
        with pytest.raises(RangeError, match=r"^IPNet IP and Mask version mismatch$"):
            mk("::ffff:10.0.0.0/120").canonicalize()

    def test_gateway_outside_subnet_accepted_like_the_reference(self) -> None:
        """Issue 11: a gateway outside its subnet (point-to-point, on-link) is kept as given, and the
        pool keeps its defaults, so .1 is in it, as in the reference."""
        rng = mk("10.0.0.0/24", gw="10.200.0.1")
        rng.canonicalize()
        assert bounds(rng) == ("10.0.0.1", "10.0.0.254", "10.200.0.1")
        assert rng.size() == 254
        assert rng.gateway_in_subnet is False
        other_family = mk("10.0.0.0/24", gw="fd00::1")
        other_family.canonicalize()
        assert str(other_family.gateway_ip) == "fd00::1"
        assert other_family.gateway_in_subnet is False
        inside = mk("10.0.0.0/24", gw="10.0.0.9")
        inside.canonicalize()
        assert inside.gateway_in_subnet is True

    def test_size(self) -> None:
        rng = mk("10.13.0.0/29", "10.13.0.0", "10.13.0.7", "10.13.0.3")
        rng.canonicalize()
        assert rng.size() == 7


class TestRangeSet:
    def test_T34_contains_and_range_for(self) -> None:
        rset = rs("10.168.0.0/24", "10.16.1.0/24")
        assert rset.contains(A("10.168.0.55"))
        assert rset.range_for(A("10.168.0.55")) is rset[0]
        assert rset.range_for(A("10.16.1.9")) is rset[1]
        assert not rset.contains(A("10.168.99.99"))
        assert str(rset) == "10.168.0.1-10.168.0.254,10.16.1.1-10.16.1.254"
        with pytest.raises(CniError) as exc:
            allocate(FakeStore(), rset, 0, "c", "eth0", A("10.168.99.99"))
        assert exc.value.msg == "10.168.99.99 not in range set 10.168.0.1-10.168.0.254,10.16.1.1-10.16.1.254"

    def test_T35_overlapping_subnets_in_one_set(self) -> None:
        with pytest.raises(RangeError) as exc:
            rs("10.168.0.0/20", "10.168.2.0/24")
        assert str(exc.value) == "subnets 10.168.0.1-10.168.15.254 and 10.168.2.1-10.168.2.254 overlap"

    def test_T36_sets_overlap_both_ways(self) -> None:
        a, b = rs("10.168.0.0/20"), rs("10.168.2.0/24")
        assert a.overlaps(b) and b.overlaps(a)
        assert not rs("10.1.0.0/24").overlaps(rs("10.2.0.0/24"))

    def test_empty_and_mixed(self) -> None:
        with pytest.raises(RangeError, match=r"^empty range set$"):
            RangeSet().canonicalize()
        with pytest.raises(RangeError, match=r"^mixed address families$"):
            rs("10.1.0.0/22", "2001:db8:5::/64")

    def test_version(self) -> None:
        assert rs("10.1.0.0/24").version == 4
        assert rs("fd00::/64").version == 6


# =============================================================================================
# Config (T37–T47)
# =============================================================================================


def conf(ipam: dict[str, Any] | None, **top: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"cniVersion": "0.3.1", "name": "mynet", "type": "macvlan", **top}
    if ipam is not None:
        out["ipam"] = {"type": "host-local", "dataDir": "/var/lib/mp-never-written", **ipam}
    return out


def load(c: dict[str, Any], args: str = "", version: str = "0.3.1") -> ipam_config.IpamConf:
    return ipam_config.load(c, c.get("name", "mynet"), version, args)


def set_bounds(cfg: ipam_config.IpamConf) -> list[list[tuple[str, str, str, str]]]:
    return [[(*bounds(r), r.subnet_str()) for r in rset] for rset in cfg.ranges]


class TestConfig:
    def test_T37_old_style(self) -> None:
        cfg = load(
            conf({"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.9", "rangeEnd": "10.1.2.20", "gateway": "10.1.2.30"})
        )
        assert (cfg.name, cfg.cni_version) == ("mynet", "0.3.1")
        assert set_bounds(cfg) == [[("10.1.2.9", "10.1.2.20", "10.1.2.30", "10.1.2.0/24")]]
        assert cfg.data_dir == "/var/lib/mp-never-written"
        assert cfg.requested == [] and cfg.routes == [] and cfg.resolv_conf == ""

    def test_T38_new_style(self) -> None:
        cfg = load(
            conf(
                {
                    "ranges": [
                        [
                            {
                                "subnet": "10.1.2.0/24",
                                "rangeStart": "10.1.2.9",
                                "rangeEnd": "10.1.2.20",
                                "gateway": "10.1.2.30",
                            },
                            {"subnet": "10.1.4.0/24"},
                        ],
                        [
                            {
                                "subnet": "10.11.2.0/24",
                                "rangeStart": "10.11.2.9",
                                "rangeEnd": "10.11.2.20",
                                "gateway": "10.11.2.30",
                            }
                        ],
                    ]
                }
            )
        )
        assert set_bounds(cfg) == [
            [
                ("10.1.2.9", "10.1.2.20", "10.1.2.30", "10.1.2.0/24"),
                ("10.1.4.1", "10.1.4.254", "10.1.4.1", "10.1.4.0/24"),
            ],
            [("10.11.2.9", "10.11.2.20", "10.11.2.30", "10.11.2.0/24")],
        ]

    def test_T39_mixed_order(self) -> None:
        cfg = load(
            conf(
                {"subnet": "10.1.2.0/24", "ranges": [[{"subnet": "10.11.2.0/24"}]]},
                runtimeConfig={"irrelevant": "a", "ipRanges": [[{"subnet": "10.12.3.0/24"}]]},
            )
        )
        assert [rset[0].subnet_str() for rset in cfg.ranges] == ["10.12.3.0/24", "10.1.2.0/24", "10.11.2.0/24"]

    def test_case_insensitive_keys(self) -> None:
        c = {
            "cniVersion": "0.3.1",
            "name": "mynet",
            "IPAM": {"Ranges": [[{"SUBNET": "10.1.2.0/24", "Gateway": "10.1.2.5"}]]},
        }
        c["RuntimeConfig"] = {"IPs": ["10.1.2.9"]}
        cfg = load(c)
        assert set_bounds(cfg) == [[("10.1.2.1", "10.1.2.254", "10.1.2.5", "10.1.2.0/24")]]
        assert cfg.requested == [A("10.1.2.9")]

    @pytest.mark.parametrize(("args", "expected"), [("IP=10.1.2.10", "10.1.2.10"), ("IP=10.1.2.11/24", "10.1.2.11")])
    def test_T40_cni_args_ip(self, args: str, expected: str) -> None:
        assert load(conf({"subnet": "10.1.2.0/24"}), args).requested == [A(expected)]

    @pytest.mark.parametrize("suffix", ["", "/24"])
    def test_T41_args_ips_order(self, suffix: str) -> None:
        ips = ["10.1.2.11", "10.11.11.11", "2001:db8:1::11"]
        c = conf(
            {"subnet": "10.1.2.0/24"},
            args={"cni": {"ips": [ip + (suffix if "." in ip else "/64" if suffix else "") for ip in ips]}},
        )
        c["runtimeConfig"] = {"ips": ["10.1.2.99"]}
        cfg = load(c, "IP=10.1.2.10")
        assert cfg.requested == [A(x) for x in ["10.1.2.10", *ips, "10.1.2.99"]]

    def test_T42_range_sets_overlap(self) -> None:
        c = conf(
            {
                "ranges": [
                    [{"subnet": s} for s in ("10.1.2.0/24", "10.2.2.0/24")],
                    [{"subnet": s} for s in ("10.1.4.0/24", "10.1.6.0/24", "10.1.8.0/24", "10.1.2.0/24")],
                ]
            }
        )
        with pytest.raises(InvalidConfig, match=r"^range set 0 overlaps with 1$"):
            load(c)

    def test_T43_subnets_overlap_in_set(self) -> None:
        c = conf({"ranges": [[{"subnet": "10.1.0.0/22"}, {"subnet": "10.1.2.0/24"}]]})
        with pytest.raises(InvalidConfig) as exc:
            load(c)
        assert exc.value.msg == "invalid range set 0: subnets 10.1.0.1-10.1.3.254 and 10.1.2.1-10.1.2.254 overlap"
        assert exc.value.code == 7

    def test_T44_mixed_families(self) -> None:
        with pytest.raises(InvalidConfig, match=r"^invalid range set 0: mixed address families$"):
            load(conf({"ranges": [[{"subnet": "10.1.0.0/22"}, {"subnet": "2001:db8:5::/64"}]]}))

    @pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
    def test_T45_one_set_per_family_before_0_3(self, version: str) -> None:
        two_v4 = conf({"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "10.11.2.0/24"}]]})
        with pytest.raises(
            InvalidConfig, match=rf"^CNI version {version} does not support more than 1 address per family$"
        ):
            load(two_v4, version=version)
        v4_v6 = conf({"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "2001:db8:1::/64"}]]})
        assert len(load(v4_v6, version=version).ranges) == 2
        assert len(load(two_v4, version="0.3.0").ranges) == 2

    def test_T46_runtime_config_ips(self) -> None:
        c = conf({"subnet": "10.168.0.0/24"}, runtimeConfig={"ips": ["10.168.0.1", "10.168.0.5/24", "2001:db8::1/64"]})
        assert load(c).requested == [A("10.168.0.1"), A("10.168.0.5"), A("2001:db8::1")]

    @pytest.mark.parametrize(
        ("ipam", "top", "msg"),
        [
            (None, {}, "IPAM config missing 'ipam' key"),
            ({}, {}, "no IP ranges specified"),
            ({"ranges": []}, {}, "no IP ranges specified"),
            ({"rangeStart": "10.0.0.5"}, {}, "no IP ranges specified"),
            ({"ranges": [[]]}, {}, "invalid range set 0: empty range set"),
            ({"ranges": [[{"rangeStart": "10.0.0.5"}]]}, {}, "invalid range set 0: IP <nil> not v4 nor v6"),
            ({"subnet": "foo"}, {}, "invalid CIDR address: foo"),
            ({"subnet": "10.0.0.0/24", "gateway": "bogus"}, {}, "invalid IP address: bogus"),
            ({"subnet": "10.0.0.0/24"}, {"runtimeConfig": {"ips": ["10.0.0.300"]}}, "invalid IP address 10.0.0.300"),
            ({"subnet": "10.0.0.0/24", "dataDir": "relative/dir"}, {}, None),
            ({"subnet": "10.0.0.0/24", "dataDir": "/var/lib/../tmp"}, {}, None),
        ],
    )
    def test_config_errors_are_code_7(self, ipam: dict[str, Any] | None, top: dict[str, Any], msg: str | None) -> None:
        c = conf(ipam, **top)
        with pytest.raises(InvalidConfig) as exc:
            load(c)
        assert exc.value.code == 7
        if msg is None:
            assert "dataDir" in exc.value.msg
        else:
            assert exc.value.msg == msg

    @pytest.mark.parametrize(
        ("args", "msg"),
        [
            ("FOO=bar", 'ARGS: unknown args ["FOO=bar"]'),
            ("IP=10.0.0.5;", 'ARGS: invalid pair ""'),
            ("IgnoreUnknown=1;IP=bogus", 'ARGS: error parsing value of pair "IP=bogus": invalid IP address bogus'),
        ],
    )
    def test_cni_args_errors_are_code_4(self, args: str, msg: str) -> None:
        with pytest.raises(InvalidEnvironment) as exc:
            load(conf({"subnet": "10.0.0.0/24"}), args)
        assert (exc.value.code, exc.value.msg) == (4, msg)

    def test_gateway_outside_subnet_accepted_with_a_warning(self) -> None:
        """Issue 11: a gateway outside its subnet is accepted like the reference (it was code 7); the
        config carries one warning per such range, and every configured gateway is in `gateways`."""
        cfg = load(
            conf(
                {
                    "subnet": "10.0.0.0/24",
                    "gateway": "10.0.1.1",
                    "ranges": [[{"subnet": "fd00::/64", "gateway": "fe80::1"}], [{"subnet": "10.9.0.0/24"}]],
                }
            )
        )
        assert set_bounds(cfg) == [
            [("10.0.0.1", "10.0.0.254", "10.0.1.1", "10.0.0.0/24")],
            [("fd00::1", "fd00::ffff:ffff:ffff:ffff", "fe80::1", "fd00::/64")],
            [("10.9.0.1", "10.9.0.254", "10.9.0.1", "10.9.0.0/24")],
        ]
        assert cfg.warnings == [
            "range set 0: gateway 10.0.1.1 is outside subnet 10.0.0.0/24",
            "range set 1: gateway fe80::1 is outside subnet fd00::/64",
        ]
        assert cfg.gateways == frozenset({A("10.0.1.1"), A("fe80::1"), A("10.9.0.1")})
        assert load(conf({"subnet": "10.0.0.0/24"})).warnings == []

    def test_default_data_dir_and_routes(self) -> None:
        c = conf({"subnet": "10.0.0.0/24", "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.9.0.0/16", "gw": "10.0.0.9"}]})
        del c["ipam"]["dataDir"]
        cfg = load(c)
        assert cfg.data_dir == ipam_config.DEFAULT_DATA_DIR == "/var/lib/cni/networks"
        assert [(str(r.dst), str(r.gw) if r.gw else None) for r in cfg.routes] == [
            ("0.0.0.0/0", None),
            ("10.9.0.0/16", "10.0.0.9"),
        ]


class TestResolvConf:
    def test_T47_sample(self, tmp_path: Any) -> None:
        path = tmp_path / "mp-resolv.conf"
        path.write_text(
            "nameserver 10.0.2.0\n"
            "nameserver 10.0.2.2\n"
            "domain example.com\n"
            ";nameserver comment\n"
            "#nameserver comment\n"
            "search example.net example.org\n"
            "search example.gov\n"
            "options one two three\n"
            "options four\n"
        )
        dns = ipam_config.parse_resolv_conf(str(path))
        assert dns.nameservers == ["10.0.2.0", "10.0.2.2"]
        assert dns.domain == "example.com"
        assert dns.search == ["example.net", "example.org", "example.gov"]
        assert dns.options == ["one", "two", "three", "four"]

    def test_T47_indented_and_oddities(self, tmp_path: Any) -> None:
        path = tmp_path / "mp-resolv.conf"
        path.write_text(
            "   nameserver 10.0.2.0\n\tnameserver 10.0.2.1   extra\n\nnameserver\nsortlist 10.0.0.0\n"
            "domain a.example\ndomain b.example\n ; nameserver 10.0.9.9\n"
        )
        dns = ipam_config.parse_resolv_conf(str(path))
        assert dns.nameservers == ["10.0.2.0", "10.0.2.1"]
        assert dns.domain == "b.example"
        assert dns.search == [] and dns.options == []

    def test_missing_file(self, tmp_path: Any) -> None:
        missing = tmp_path / "mp-nope"
        with pytest.raises(InvalidConfig) as exc:
            ipam_config.parse_resolv_conf(str(missing))
        assert exc.value.msg == f"open {missing}: no such file or directory"

    def test_not_a_regular_file_is_refused_without_reading(self, tmp_path: Any) -> None:
        """/dev/zero (endless) and a FIFO (would block) are refused at once: code 7, no read."""
        fifo = tmp_path / "mp-fifo"
        os.mkfifo(fifo)
        for path in ("/dev/zero", str(fifo)):
            with pytest.raises(InvalidConfig, match="not a regular file"):
                ipam_config.parse_resolv_conf(path)

    def test_an_enormous_file_is_refused(self, tmp_path: Any) -> None:
        """A resolvConf over 1 MiB is not a resolv.conf: code 7 rather than reading it all."""
        big = tmp_path / "mp-big"
        big.write_bytes(b"# x\n" * (300 * 1024))
        with pytest.raises(InvalidConfig, match="larger than"):
            ipam_config.parse_resolv_conf(str(big))


# =============================================================================================
# Allocator (T12–T21) with an in-memory store
# =============================================================================================


class FakeStore:
    """What `allocate` needs from a store, in memory: owners by address and the per-set cursor."""

    def __init__(self, taken: tuple[str, ...] = (), last: str | None = None, range_id: int = 0) -> None:
        self.owners: dict[Any, str] = {A(ip): "other\r\neth0" for ip in taken}
        self.last: dict[int, Any] = {range_id: A(last)} if last else {}
        self.reserve_calls: list[str] = []

    def reserve(self, container_id: str, ifname: str, addr: Any, range_id: int) -> bool:
        self.reserve_calls.append(str(addr))
        if addr in self.owners:
            return False
        self.owners[addr] = f"{container_id.strip()}\r\n{ifname}"
        self.last[range_id] = addr
        return True

    def last_reserved(self, range_id: int) -> Any:
        return self.last.get(range_id)

    def held_by(self, container_id: str, ifname: str) -> list[Any]:
        keys = {f"{container_id.strip()}\r\n{ifname}", container_id.strip()}
        return sorted((a for a, o in self.owners.items() if o in keys), key=str)

    def release(self, addr: Any) -> None:
        self.owners.pop(addr, None)


def mkalloc() -> RangeSet:
    return rs("10.168.1.0/29")


def strs(it: Any) -> list[str]:
    return [str(addr) for addr, _rng in it]


class TestAllocator:
    def test_T12_fresh_iterator(self) -> None:
        assert strs(walk(mkalloc(), None)) == [f"10.168.1.{i}" for i in (2, 3, 4, 5, 6)]

    def test_T13_last_at_end_wraps(self) -> None:
        store = FakeStore()
        rset = mkalloc()
        assert store.reserve("c", "eth0", A("10.168.1.6"), 0)
        store.release(A("10.168.1.6"))
        assert strs(walk(rset, store.last_reserved(0))) == [f"10.168.1.{i}" for i in (2, 3, 4, 5, 6)]

    def test_T14_last_in_middle(self) -> None:
        store = FakeStore()
        assert store.reserve("c", "eth0", A("10.168.1.3"), 0)
        store.release(A("10.168.1.3"))
        assert strs(walk(mkalloc(), store.last_reserved(0))) == [f"10.168.1.{i}" for i in (4, 5, 6, 2, 3)]

    @pytest.mark.parametrize(
        ("subnets", "last", "taken", "expected"),
        [
            (["10.0.0.0/29"], None, (), "10.0.0.2"),
            (["2001:db8:1::/64"], None, (), "2001:db8:1::2"),
            (["10.0.0.0/30"], None, (), "10.0.0.2"),
            (["10.0.0.0/29"], None, ("10.0.0.2",), "10.0.0.3"),
            (["10.0.0.0/29"], "10.0.0.5", (), "10.0.0.6"),
            (["10.0.0.0/29"], "10.0.0.3", ("10.0.0.4", "10.0.0.5"), "10.0.0.6"),
            (["10.0.0.0/29"], "10.0.0.5", ("10.0.0.6",), "10.0.0.2"),
            (["10.0.0.0/29"], "10.0.0.128", ("10.0.0.2",), "10.0.0.3"),
            (["10.0.0.0/29"], "10.0.0.3", ("10.0.0.2", "10.0.0.4", "10.0.0.5", "10.0.0.6"), "10.0.0.3"),
            (["10.0.0.0/30", "10.0.1.0/30"], None, (), "10.0.0.2"),
            (["10.0.0.0/30", "10.0.1.0/30"], "10.0.0.2", (), "10.0.1.2"),
            (["10.0.0.0/30", "10.0.1.0/30", "10.0.2.0/30"], "10.0.2.2", (), "10.0.0.2"),
        ],
    )
    def test_T15_round_robin_table(
        self, subnets: list[str], last: str | None, taken: tuple[str, ...], expected: str
    ) -> None:
        rset = rs(*subnets)
        store = FakeStore(taken, last)
        ipc = allocate(store, rset, 0, "ID", "eth0", None)
        assert str(ipc.address.ip) == expected
        assert ipc.address.network.prefixlen == rset.range_for(A(expected)).prefix
        assert store.last_reserved(0) == A(expected)
        assert store.held_by("ID", "eth0") == [A(expected)]

    def test_T16_exhaust_29(self) -> None:
        store, rset = FakeStore(), mkalloc()
        got = [str(allocate(store, rset, 0, f"c{i}", "eth0", None).address) for i in range(5)]
        assert got == [f"10.168.1.{i}/29" for i in (2, 3, 4, 5, 6)]
        with pytest.raises(CniError) as exc:
            allocate(store, rset, 0, "c5", "eth0", None)
        assert exc.value.msg == "no IP addresses available in range set: 10.168.1.1-10.168.1.6"
        assert "10.168.1.7" not in store.reserve_calls and "10.168.1.1" not in store.reserve_calls

    def test_T17_round_robin_not_reuse(self) -> None:
        store, rset = FakeStore(), mkalloc()
        first = allocate(store, rset, 0, "c", "eth0", None)
        assert str(first.address) == "10.168.1.2/29"
        assert str(first.gateway) == "10.168.1.1"
        store.release(first.address.ip)
        assert str(allocate(store, rset, 0, "c", "eth0", None).address) == "10.168.1.3/29"

    def test_T18_requested_twice(self) -> None:
        store, rset = FakeStore(), mkalloc()
        assert str(allocate(store, rset, 0, "c1", "eth0", A("10.168.1.5")).address) == "10.168.1.5/29"
        with pytest.raises(CniError) as exc:
            allocate(store, rset, 0, "c2", "eth0", A("10.168.1.5"))
        assert exc.value.msg == "requested IP address 10.168.1.5 is not available in range set 10.168.1.1-10.168.1.6"

    def test_T19_requested_outside_bounds(self) -> None:
        with pytest.raises(CniError, match=r"^10\.168\.1\.5 not in range set 10\.168\.1\.1-10\.168\.1\.4$"):
            allocate(FakeStore(), canon(mk("10.168.1.0/29", end="10.168.1.4")), 0, "c", "eth0", A("10.168.1.5"))
        with pytest.raises(CniError, match=r"^10\.168\.1\.2 not in range set 10\.168\.1\.3-10\.168\.1\.6$"):
            allocate(FakeStore(), canon(mk("10.168.1.0/29", start="10.168.1.3")), 0, "c", "eth0", A("10.168.1.2"))

    def test_requested_gateway_and_duplicate_bypass(self) -> None:
        store, rset = FakeStore(), mkalloc()
        with pytest.raises(CniError, match=r"^requested ip 10\.168\.1\.1 is subnet's gateway$"):
            allocate(store, rset, 0, "c", "eth0", A("10.168.1.1"))
        allocate(store, rset, 0, "c", "eth0", None)
        # T56: a requested IP skips the duplicate check
        assert str(allocate(store, rset, 0, "c", "eth0", A("10.168.1.5")).address) == "10.168.1.5/29"
        with pytest.raises(CniError) as exc:
            allocate(store, rset, 0, "c", "eth0", None)
        assert exc.value.msg == "10.168.1.2 has been allocated to c, duplicate allocation is not allowed"

    def test_duplicate_only_within_the_set(self) -> None:
        store = FakeStore()
        allocate(store, rs("10.1.0.0/24"), 0, "c", "eth0", None)
        assert str(allocate(store, rs("10.2.0.0/24"), 1, "c", "eth0", None).address) == "10.2.0.2/24"
        assert str(allocate(store, rs("10.1.0.0/24"), 0, "c", "net1", None).address) == "10.1.0.3/24"

    @pytest.mark.parametrize(
        ("subnets", "taken"),
        [
            (["10.0.0.0/30"], ("10.0.0.2",)),
            (["10.0.0.0/29"], tuple(f"10.0.0.{i}" for i in range(2, 7))),
            (["10.0.0.0/30", "10.0.1.0/30"], ("10.0.0.2", "10.0.1.2")),
        ],
    )
    def test_T20_exhaustion(self, subnets: list[str], taken: tuple[str, ...]) -> None:
        rset = rs(*subnets)
        with pytest.raises(CniError) as exc:
            allocate(FakeStore(taken), rset, 0, "c", "eth0", None)
        assert exc.value.msg == f"no IP addresses available in range set: {rset}"

    def test_T21_wrap_between_ranges(self) -> None:
        """The upstream fixture: ranges .0–.3 with a gateway outside the subnets."""
        rset = canon(
            mk("10.168.1.0/30", "10.168.1.0", "10.168.1.3", "10.99.0.1"),
            mk("10.168.2.0/30", "10.168.2.0", "10.168.2.3", "10.99.0.1"),
        )
        store = FakeStore()
        assert store.reserve("c", "eth0", A("10.168.1.3"), 0)
        assert strs(walk(rset, store.last_reserved(0)))[0] == "10.168.2.0"
        assert strs(walk(rset, None))[0] == "10.168.1.0"
        assert len(strs(walk(rset, None))) == 8

    def test_T53_gateway_inside_explicit_range_skipped(self) -> None:
        rset = canon(mk("10.13.0.0/29", "10.13.0.0", "10.13.0.7", "10.13.0.3"))
        assert strs(walk(rset, None)) == [f"10.13.0.{i}" for i in (0, 1, 2, 4, 5, 6, 7)]

    def test_gateway_skipped_only_in_its_own_range(self) -> None:
        rset = canon(mk("10.0.0.0/29", gw="10.0.0.1"), mk("10.0.1.0/29", "10.0.1.1", gw="10.0.1.6"))
        assert strs(walk(rset, None)) == [
            "10.0.0.2",
            "10.0.0.3",
            "10.0.0.4",
            "10.0.0.5",
            "10.0.0.6",
            "10.0.1.1",
            "10.0.1.2",
            "10.0.1.3",
            "10.0.1.4",
            "10.0.1.5",
        ]

    def test_no_configured_gateway_is_handed_out(self) -> None:
        """Issue 11: a gateway outside its own subnet may lie in another range's pool. The reference
        skips only a range's own gateway (and would hand out 10.0.1.2 here); with `skip` (the plugin
        passes every configured gateway) no gateway is ever handed out or given on request."""
        rset = canon(mk("10.0.0.0/30", gw="10.0.1.2"), mk("10.0.1.0/30"))
        skip = frozenset({A("10.0.1.2"), A("10.0.1.1")})
        assert strs(walk(rset, None)) == ["10.0.0.1", "10.0.0.2", "10.0.1.2"]
        assert strs(walk(rset, None, skip)) == ["10.0.0.1", "10.0.0.2"]
        assert strs(walk(rset, A("10.0.0.2"), skip)) == ["10.0.0.1", "10.0.0.2"]
        store = FakeStore()
        got = [str(allocate(store, rset, 0, f"c{i}", "eth0", None, skip).address) for i in range(2)]
        assert got == ["10.0.0.1/30", "10.0.0.2/30"]
        with pytest.raises(CniError) as exc:
            allocate(store, rset, 0, "c2", "eth0", None, skip)
        assert exc.value.msg == "no IP addresses available in range set: 10.0.0.1-10.0.0.2,10.0.1.1-10.0.1.2"
        with pytest.raises(CniError, match=r"^requested ip 10\.0\.1\.2 is a configured gateway$"):
            allocate(FakeStore(), rset, 0, "c", "eth0", A("10.0.1.2"), skip)
        with pytest.raises(CniError, match=r"^requested ip 10\.0\.1\.1 is subnet's gateway$"):
            allocate(FakeStore(), rset, 0, "c", "eth0", A("10.0.1.1"), skip)

    def test_in_pool_gateway_still_skipped_with_outside_gateways_elsewhere(self) -> None:
        """Accepting outside gateways must not stop the skip of a gateway inside its own pool."""
        rset = canon(mk("10.0.0.0/29", gw="10.0.0.3"), mk("10.0.1.0/30", gw="192.168.0.1"))
        assert strs(walk(rset, None, frozenset({A("10.0.0.3"), A("192.168.0.1")}))) == [
            "10.0.0.1",
            "10.0.0.2",
            "10.0.0.4",
            "10.0.0.5",
            "10.0.0.6",
            "10.0.1.1",
            "10.0.1.2",
        ]

    def test_whitespace_container_id_trimmed(self) -> None:
        store = FakeStore()
        allocate(store, mkalloc(), 0, "   dummy\n ", "eth0", None)
        assert store.held_by("dummy", "eth0") == [A("10.168.1.2")]


# =============================================================================================
# DiskStore on a real directory
# =============================================================================================


def mode(path: Any) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


class TestDiskStore:
    def test_layout_and_modes(self, tmp_path: Any) -> None:
        store = DiskStore(str(tmp_path / "mp-data"), "net")
        net = tmp_path / "mp-data" / "net"
        with store.locked():
            assert store.reserve("c1", "eth0", A("10.1.2.2"), 0)
            assert store.reserve("c1", "eth0", A("2001:db8:1::2"), 1)
        assert sorted(os.listdir(net)) == [
            "10.1.2.2",
            "2001:db8:1::2",
            "last_reserved_ip.0",
            "last_reserved_ip.1",
            "lock",
        ]
        assert (net / "10.1.2.2").read_bytes() == b"c1\r\neth0"
        assert (net / "last_reserved_ip.0").read_bytes() == b"10.1.2.2"
        assert (net / "last_reserved_ip.1").read_bytes() == b"2001:db8:1::2"
        assert (net / "lock").read_bytes() == b""
        assert mode(net / "lock") == 0o750
        for name in ("10.1.2.2", "2001:db8:1::2", "last_reserved_ip.0", "last_reserved_ip.1"):
            assert mode(net / name) == 0o600, name
        assert stat.S_IMODE(os.stat(net).st_mode) == 0o755 & ~_umask()

    def test_reserve_taken_and_cursor(self, tmp_path: Any) -> None:
        store = DiskStore(str(tmp_path), "mp-net")
        with store.locked():
            assert store.reserve("c1", "eth0", A("10.1.2.5"), 0)
            assert not store.reserve("c2", "eth0", A("10.1.2.5"), 0)
            assert store.last_reserved(0) == A("10.1.2.5")
            assert store.last_reserved(1) is None
        assert (tmp_path / "mp-net" / "10.1.2.5").read_bytes() == b"c1\r\neth0"
        assert [n for n in os.listdir(tmp_path / "mp-net") if n.startswith(".mp-")] == []

    def test_whitespace_id_trimmed(self, tmp_path: Any) -> None:
        """T06 at library level: the stored ID is trimmed, and DEL finds it again."""
        store = DiskStore(str(tmp_path), "mp-net")
        with store.locked():
            assert store.reserve("   dummy\n ", "eth0", A("10.1.2.2"), 0)
            assert store.find_by_owner("   dummy\n ", "eth0") == [A("10.1.2.2")]
            assert store.release_by_owner("dummy", "eth0") == [A("10.1.2.2")]
        assert (tmp_path / "mp-net" / "10.1.2.2").exists() is False
        assert (tmp_path / "mp-net" / "last_reserved_ip.0").read_bytes() == b"10.1.2.2"

    def test_last_reserved_untrimmed(self, tmp_path: Any) -> None:
        store = DiskStore(str(tmp_path), "mp-net")
        with store.locked():
            (tmp_path / "mp-net" / "last_reserved_ip.0").write_bytes(b"10.1.2.4\n")
            (tmp_path / "mp-net" / "last_reserved_ip.1").write_bytes(b"2001:DB8::4")
            (tmp_path / "mp-net" / "last_reserved_ip.2").write_bytes(b"garbage")
            assert store.last_reserved(0) is None
            assert store.last_reserved(1) == A("2001:db8::4")
            assert store.last_reserved(2) is None

    def test_find_release_legacy_and_other_ifname(self, tmp_path: Any) -> None:
        net = tmp_path / "mp-net"
        store = DiskStore(str(tmp_path), "mp-net")
        with store.locked():
            (net / "10.1.2.9").write_bytes(b"old")
            (net / "10.1.2.10").write_bytes(b"yy\neth0")
            (net / "10.1.2.11").write_bytes(b" zz\r\neth0 \n")
            assert store.reserve("c1", "eth0", A("10.1.2.2"), 0)
            assert store.reserve("c1", "net1", A("10.1.2.3"), 0)
            assert store.find_by_owner("old", "eth0") == [A("10.1.2.9")]
            assert store.find_by_owner("yy", "eth0") == []
            assert store.find_by_owner("zz", "eth0") == [A("10.1.2.11")]
            assert store.release_by_owner("c1", "eth0") == [A("10.1.2.2")]
            assert store.release_by_owner("nobody", "eth0") == []
            assert store.release_by_owner("old", "whatever") == [A("10.1.2.9")]
        assert sorted(os.listdir(net)) == ["10.1.2.10", "10.1.2.11", "10.1.2.3", "last_reserved_ip.0", "lock"]

    def test_allocations_lists_reservation_files_only(self, tmp_path: Any) -> None:
        store = DiskStore(str(tmp_path), "mp-net")
        with store.locked():
            store.reserve("a", "eth0", A("10.1.2.2"), 0)
            store.reserve("b", "eth0", A("fd00::2"), 1)
        assert sorted((str(a), c) for a, c in store.allocations()) == [
            ("10.1.2.2", "a\r\neth0"),
            ("fd00::2", "b\r\neth0"),
        ]

    def test_stale_temp_files_removed_under_lock(self, tmp_path: Any) -> None:
        net = tmp_path / "mp-net"
        net.mkdir()
        (net / ".mp-10.1.2.2.99999").write_bytes(b"c1\r\neth0")
        with DiskStore(str(tmp_path), "mp-net").locked():
            pass
        assert sorted(os.listdir(net)) == ["lock"]

    def test_lock_is_exclusive_flock(self, tmp_path: Any) -> None:
        """Interop with the Go binary relies on flock(LOCK_EX) on `<dir>/lock`."""
        store = DiskStore(str(tmp_path), "mp-net", lock_timeout=0.2)
        with store.locked():
            pass
        fd = os.open(tmp_path / "mp-net" / "lock", os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with pytest.raises(TryAgainLater) as exc, store.locked():
                pytest.fail("lock taken while another holder has it")
            assert exc.value.code == 11
        finally:
            os.close(fd)
        with store.locked(), pytest.raises(BlockingIOError):
            fd = os.open(tmp_path / "mp-net" / "lock", os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(fd)

    @pytest.mark.parametrize("network", ["", ".", "..", "a/b"])
    def test_bad_network_names(self, tmp_path: Any, network: str) -> None:
        with pytest.raises(InvalidConfig):
            DiskStore(str(tmp_path), network)

    def test_mkdir_failure_is_a_cni_error(self, tmp_path: Any) -> None:
        (tmp_path / "mp-file").write_bytes(b"")
        with pytest.raises(CniError) as exc, DiskStore(str(tmp_path / "mp-file"), "net").locked():
            pass
        assert exc.value.msg.startswith("mkdir ") and exc.value.msg.endswith(": not a directory")


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


# =============================================================================================
# The plugin in-process: GC (S43, S44) and STATUS (S45) — cniVersion 1.1.0, ours only
# =============================================================================================


class Plugin:
    """Drive HostLocal through skel.dispatch in-process, on a dataDir under tmp_path."""

    def __init__(self, data_dir: str, ranges: list[list[dict[str, str]]]) -> None:
        self.data_dir = data_dir
        self.ranges = ranges
        self.net = os.path.join(data_dir, "gcnet")

    def conf(self, version: str = "1.1.0", **extra: Any) -> bytes:
        c = {
            "cniVersion": version,
            "name": "gcnet",
            "type": "macvlan",
            "ipam": {"type": "host-local", "dataDir": self.data_dir, "ranges": self.ranges},
            **extra,
        }
        return json.dumps(c).encode()

    def call(
        self, command: str, cid: str = "", ifname: str = "eth0", version: str = "1.1.0", **extra: Any
    ) -> str | None:
        env = {"CNI_COMMAND": command, "CNI_PATH": "/usr/lib/cni"}
        if command in ("ADD", "DEL", "CHECK"):
            env.update({"CNI_CONTAINERID": cid, "CNI_NETNS": "/var/run/netns/mp-none", "CNI_IFNAME": ifname})
        return dispatch(HostLocal(), env, self.conf(version, **extra))

    def files(self) -> list[str]:
        return sorted(os.listdir(self.net))


@pytest.fixture
def plugin(tmp_path: Any) -> Plugin:
    return Plugin(str(tmp_path / "mp-data"), [[{"subnet": "10.4.0.0/29"}], [{"subnet": "fd00:4::/125"}]])


class TestGC:
    def test_S43_keeps_valid_attachments(self, plugin: Plugin) -> None:
        plugin.call("ADD", "a")
        plugin.call("ADD", "b")
        plugin.call("ADD", "a", "net1")
        assert plugin.call("GC", **{"cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}]}) is None
        assert plugin.files() == ["10.4.0.2", "fd00:4::2", "last_reserved_ip.0", "last_reserved_ip.1", "lock"]
        plugin.call("CHECK", "a")
        with pytest.raises(CniError, match="Failed to find address added by container b"):
            plugin.call("CHECK", "b")

    def test_S44_null_means_empty(self, plugin: Plugin) -> None:
        plugin.call("ADD", "a")
        plugin.call(
            "GC", **{"cni.dev/valid-attachments": None, "cni.dev/attachments": [{"containerID": "a", "ifname": "eth0"}]}
        )
        assert plugin.files() == ["last_reserved_ip.0", "last_reserved_ip.1", "lock"]

    def test_S44_legacy_attachments_key(self, plugin: Plugin) -> None:
        plugin.call("ADD", "a")
        plugin.call("ADD", "b")
        plugin.call("GC", **{"cni.dev/attachments": [{"containerID": "b", "ifname": "eth0"}]})
        assert [f for f in plugin.files() if f[0] in "1f"] == ["10.4.0.3", "fd00:4::3"]

    def test_no_key_releases_everything(self, plugin: Plugin) -> None:
        plugin.call("ADD", "a")
        plugin.call("GC")
        assert plugin.files() == ["last_reserved_ip.0", "last_reserved_ip.1", "lock"]

    def test_legacy_id_only_file_kept_by_id(self, plugin: Plugin) -> None:
        plugin.call("ADD", "a")
        with open(os.path.join(plugin.net, "10.4.0.6"), "w") as fh:
            fh.write("a")
        with open(os.path.join(plugin.net, "10.4.0.5"), "w") as fh:
            fh.write("zz")
        plugin.call("GC", **{"cni.dev/valid-attachments": [{"containerID": "a", "ifname": "net9"}]})
        assert plugin.files() == ["10.4.0.6", "last_reserved_ip.0", "last_reserved_ip.1", "lock"]

    def test_gc_needs_1_1_0(self, plugin: Plugin) -> None:
        with pytest.raises(CniError) as exc:
            plugin.call("GC", version="1.0.0")
        assert (exc.value.error_code, exc.value.msg) == (1, "config version does not allow GC")


class TestStatus:
    def test_S45_full_pool_is_code_50(self, tmp_path: Any) -> None:
        plugin = Plugin(str(tmp_path / "mp-data"), [[{"subnet": "10.4.0.0/30"}]])
        assert plugin.call("STATUS") is None
        assert not os.path.exists(plugin.net), "STATUS must not create state"
        plugin.call("ADD", "a")
        with pytest.raises(NotAvailable) as exc:
            plugin.call("STATUS")
        assert exc.value.error_code == 50
        plugin.call("DEL", "a")
        assert plugin.call("STATUS") is None

    def test_S45_any_full_set(self, plugin: Plugin) -> None:
        for i in range(5):
            plugin.call("ADD", f"c{i}")
        with pytest.raises(CniError) as exc:
            plugin.call("STATUS")
        assert exc.value.error_code == 50
        plugin.call("DEL", "c3")
        assert plugin.call("STATUS") is None

    def test_status_ignores_foreign_files_and_gateway(self, tmp_path: Any) -> None:
        plugin = Plugin(str(tmp_path / "mp-data"), [[{"subnet": "10.4.0.0/30"}]])
        os.makedirs(plugin.net)
        for name in ("10.4.0.1", "10.9.0.2", "last_reserved_ip.0"):
            with open(os.path.join(plugin.net, name), "w") as fh:
                fh.write("x\r\neth0")
        assert plugin.call("STATUS") is None

    def test_status_needs_1_1_0(self, plugin: Plugin) -> None:
        with pytest.raises(CniError) as exc:
            plugin.call("STATUS", version="0.4.0")
        assert (exc.value.error_code, exc.value.msg) == (1, "config version does not allow STATUS")


# =============================================================================================
# Issue 11: gateway outside its subnet, through the plugin in-process
# =============================================================================================


class TestGatewayOutsideSubnet:
    def test_accepted_with_one_warning_line_and_never_handed_out(
        self, tmp_path: Any, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Range 0's gateway 10.4.1.2 lies in range 1's pool: ADD returns it as the gateway (as the
        reference does) but never hands it out, and STATUS counts the pool without it."""
        plugin = Plugin(
            str(tmp_path / "mp-data"), [[{"subnet": "10.4.0.0/30", "gateway": "10.4.1.2"}, {"subnet": "10.4.1.0/30"}]]
        )
        out = plugin.call("ADD", "a")
        assert out is not None
        assert json.loads(out)["ips"] == [{"address": "10.4.0.1/30", "gateway": "10.4.1.2"}]
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.endswith("\n"), err
        assert "warning" in err and "range set 0: gateway 10.4.1.2 is outside subnet 10.4.0.0/30" in err
        plugin.call("ADD", "b")
        with pytest.raises(CniError) as exc:
            plugin.call("ADD", "c")
        assert exc.value.msg == (
            "failed to allocate for range 0: no IP addresses available in range set: 10.4.0.1-10.4.0.2,10.4.1.1-10.4.1.2"
        )
        with pytest.raises(NotAvailable):
            plugin.call("STATUS")
        plugin.call("DEL", "b")
        assert plugin.call("STATUS") is None
        assert plugin.files() == ["10.4.0.1", "last_reserved_ip.0", "lock"]

    def test_no_warning_for_gateways_inside(self, plugin: Plugin, capsys: pytest.CaptureFixture[str]) -> None:
        plugin.call("ADD", "a")
        assert capsys.readouterr().err == ""


# =============================================================================================
# Issue 11: symbolic links inside the state directory are never followed
# =============================================================================================


@pytest.fixture
def outside(tmp_path: Any) -> Any:
    """A directory outside the dataDir that a planted link points into; must stay untouched."""
    path = tmp_path / "mp-outside"
    path.mkdir()
    return path


def _without_blocking_on_fifo(call: Any, fifo: Any) -> Any:
    """call() in a thread; its return value or exception. If it blocks opening `fifo` (a reader
    waiting for a writer), unblock it so the test process can finish, and fail."""
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append(call())
        except Exception as exc:  # noqa: BLE001 - handed back to the test
            outcome.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(5)
    if worker.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(5)
        pytest.fail(f"blocked opening the FIFO {fifo}")
    return outcome[0]


class TestSymlinks:
    def test_network_dir_symlink_refused(self, tmp_path: Any, outside: Any) -> None:
        data = tmp_path / "mp-data"
        data.mkdir()
        (data / "mp-net").symlink_to(outside)
        store = DiskStore(str(data), "mp-net")
        with pytest.raises(IOFailure) as exc, store.locked():
            pytest.fail("locked a symlinked network directory")
        assert exc.value.code == 5
        assert exc.value.msg == f"{data}/mp-net is a symbolic link: refusing to use it as host-local state"
        with pytest.raises(IOFailure):
            list(store.allocations())
        assert os.listdir(outside) == []

    def test_dangling_network_dir_symlink_refused(self, tmp_path: Any) -> None:
        data = tmp_path / "mp-data"
        data.mkdir()
        (data / "mp-net").symlink_to(tmp_path / "mp-nowhere")
        with pytest.raises(IOFailure), DiskStore(str(data), "mp-net").locked():
            pytest.fail("locked a symlinked network directory")
        assert not os.path.lexists(tmp_path / "mp-nowhere")

    @pytest.mark.parametrize("exists", [True, False])
    def test_lock_symlink_refused(self, tmp_path: Any, outside: Any, exists: bool) -> None:
        net = tmp_path / "mp-net"
        net.mkdir()
        target = outside / "mp-lock"
        if exists:
            target.write_bytes(b"mp-precious")
        (net / "lock").symlink_to(target)
        with pytest.raises(IOFailure) as exc, DiskStore(str(tmp_path), "mp-net").locked():
            pytest.fail("locked through a symlinked lock")
        assert exc.value.msg == f"{net}/lock is a symbolic link: refusing to use it as host-local's lock"
        assert os.listdir(outside) == (["mp-lock"] if exists else [])
        if exists:
            assert target.read_bytes() == b"mp-precious"

    def test_lock_that_is_a_fifo_refused(self, tmp_path: Any) -> None:
        net = tmp_path / "mp-net"
        net.mkdir()
        os.mkfifo(net / "lock")

        def lock() -> None:
            with DiskStore(str(tmp_path), "mp-net").locked():
                pass

        outcome = _without_blocking_on_fifo(lock, net / "lock")
        assert isinstance(outcome, IOFailure)
        assert outcome.msg == f"{net}/lock is not a regular file: refusing to use it as host-local's lock"

    def test_cursor_symlink_neither_read_nor_written_through(self, tmp_path: Any, outside: Any) -> None:
        net = tmp_path / "mp-net"
        net.mkdir()
        target = outside / "mp-cursor"
        target.write_bytes(b"10.1.2.7")
        (net / "last_reserved_ip.0").symlink_to(target)
        store = DiskStore(str(tmp_path), "mp-net")
        with store.locked():
            assert store.last_reserved(0) is None
            assert store.reserve("c1", "eth0", A("10.1.2.2"), 0)
        assert target.read_bytes() == b"10.1.2.7"
        assert not os.path.islink(net / "last_reserved_ip.0")
        assert (net / "last_reserved_ip.0").read_bytes() == b"10.1.2.2"

    def test_reservation_symlink_is_taken_and_never_followed(self, tmp_path: Any, outside: Any) -> None:
        net = tmp_path / "mp-net"
        net.mkdir()
        target = outside / "mp-owner"
        target.write_bytes(b"c1\r\neth0")
        (net / "10.1.2.2").symlink_to(target)
        (net / "10.1.2.3").symlink_to(outside / "mp-dangling")
        store = DiskStore(str(tmp_path), "mp-net")
        with store.locked():
            assert list(store.allocations()) == []
            assert store.occupied() == [A("10.1.2.2"), A("10.1.2.3")]
            assert store.find_by_owner("c1", "eth0") == []
            assert store.held_by("c1", "eth0") == []
            assert store.release_by_owner("c1", "eth0") == []
            assert not store.reserve("c2", "eth0", A("10.1.2.2"), 0)
            assert not store.reserve("c2", "eth0", A("10.1.2.3"), 0)
        assert os.path.islink(net / "10.1.2.2") and os.path.islink(net / "10.1.2.3")
        assert sorted(os.listdir(outside)) == ["mp-owner"]
        assert target.read_bytes() == b"c1\r\neth0"

    def test_reservation_fifo_does_not_block(self, tmp_path: Any) -> None:
        net = tmp_path / "mp-net"
        net.mkdir()
        os.mkfifo(net / "10.1.2.2")
        store = DiskStore(str(tmp_path), "mp-net")
        outcome = _without_blocking_on_fifo(lambda: list(store.allocations()), net / "10.1.2.2")
        assert outcome == []
        assert store.occupied() == [A("10.1.2.2")]

    @pytest.mark.parametrize("name", [".mp-10.1.2.2.{pid}", ".mp-last_reserved_ip.0.{pid}"])
    def test_planted_temporary_symlink_not_written_through(self, tmp_path: Any, outside: Any, name: str) -> None:
        net = tmp_path / "mp-net"
        target = outside / "mp-target"
        target.write_bytes(b"mp-precious")
        store = DiskStore(str(tmp_path), "mp-net")
        with store.locked():
            (net / name.format(pid=os.getpid())).symlink_to(target)
            assert store.reserve("c1", "eth0", A("10.1.2.2"), 0)
        assert target.read_bytes() == b"mp-precious"
        assert sorted(os.listdir(net)) == ["10.1.2.2", "last_reserved_ip.0", "lock"]
        assert (net / "10.1.2.2").read_bytes() == b"c1\r\neth0"
        assert (net / "last_reserved_ip.0").read_bytes() == b"10.1.2.2"

    def test_plugin_refuses_symlinked_network_dir(self, tmp_path: Any, outside: Any) -> None:
        plugin = Plugin(str(tmp_path / "mp-data"), [[{"subnet": "10.4.0.0/29"}]])
        os.makedirs(plugin.data_dir)
        os.symlink(outside, plugin.net)
        for command in ("ADD", "DEL", "CHECK", "GC", "STATUS"):
            with pytest.raises(IOFailure) as exc:
                plugin.call(command, "a")
            assert exc.value.code == 5, command
        assert os.listdir(outside) == []

    def test_status_counts_and_gc_keeps_symlinked_reservations(self, tmp_path: Any, outside: Any) -> None:
        """A link named like an address is taken (nobody can create that name) but is not ours:
        STATUS counts it, GC and DEL leave it, and its target is never read."""
        plugin = Plugin(str(tmp_path / "mp-data"), [[{"subnet": "10.4.0.0/30"}]])
        plugin.call("ADD", "a")
        os.symlink(outside / "mp-dangling", os.path.join(plugin.net, "10.4.0.1"))
        with pytest.raises(NotAvailable):
            plugin.call("STATUS")
        (outside / "mp-owner").write_bytes(b"b\r\neth0")
        os.unlink(os.path.join(plugin.net, "10.4.0.1"))
        os.symlink(outside / "mp-owner", os.path.join(plugin.net, "10.4.0.1"))
        plugin.call("DEL", "b")
        plugin.call("GC", **{"cni.dev/valid-attachments": []})
        assert plugin.files() == ["10.4.0.1", "last_reserved_ip.0", "lock"]
        assert os.path.islink(os.path.join(plugin.net, "10.4.0.1"))
        assert (outside / "mp-owner").read_bytes() == b"b\r\neth0"


# =============================================================================================
# Issue 11: disk.release_container (the meta-plugin's DEL without cache and API)
# =============================================================================================


class TestReleaseContainer:
    @staticmethod
    def put(path: Any, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def test_removes_every_reservation_of_the_container_only(self, tmp_path: Any, outside: Any) -> None:
        data = tmp_path / "mp-data"
        mine = {
            ("mp-net1", "10.1.0.2"): b"mp-c1\r\neth0",
            ("mp-net1", "10.1.0.3"): b"mp-c1\r\nnet1",
            ("mp-net1", "fd00::3"): b"mp-c1",  # legacy id-only
            ("mp-net2", "10.2.0.9"): b" mp-c1\r\neth0\n",  # trimmed, as DEL trims it
        }
        theirs = {
            ("mp-net1", "10.1.0.4"): b"mp-c10\r\neth0",
            ("mp-net1", "10.1.0.5"): b"mp-c\r\neth0",
            ("mp-net1", "10.1.0.6"): b"xmp-c1\r\neth0",
            ("mp-net1", "10.1.0.7"): b"mp-c1\neth0",  # LF only: not the reference's format, DEL keeps it too
            ("mp-net2", "10.2.0.2"): b"mp-c2\r\nmp-c1",
            ("mp-net2", "10.2.0.3"): b"mp-c1 \r\neth0",  # DEL does not match it either
            ("mp-net2", "last_reserved_ip.0"): b"mp-c1",
            ("mp-net2", "mp-notes"): b"mp-c1\r\neth0",
        }
        for (net, name), content in {**mine, **theirs}.items():
            self.put(data / net / name, content)
        self.put(data / "mp-file", b"mp-c1\r\neth0")
        self.put(outside / "10.3.0.2", b"mp-c1\r\neth0")
        (data / "mp-link").symlink_to(outside)
        (data / "mp-net3").mkdir()

        released = disk.release_container(str(data), "mp-c1")

        assert sorted(released) == sorted((net, name) for net, name in mine)
        for (net, name), content in theirs.items():
            assert (data / net / name).read_bytes() == content, name
        for net, name in mine:
            assert not os.path.lexists(data / net / name), name
        # the lock is created (0750) like DiskStore.locked() does, also in a network with nothing to release
        for net in ("mp-net1", "mp-net2", "mp-net3"):
            assert mode(data / net / "lock") == 0o750, net
        assert sorted(os.listdir(outside)) == ["10.3.0.2"]
        assert (data / "mp-file").read_bytes() == b"mp-c1\r\neth0"
        assert disk.release_container(str(data), "mp-c1") == []

    def test_missing_data_dir(self, tmp_path: Any) -> None:
        assert disk.release_container(str(tmp_path / "mp-missing"), "mp-c1") == []
        assert not os.path.exists(tmp_path / "mp-missing")

    def test_never_follows_links(self, tmp_path: Any, outside: Any) -> None:
        data = tmp_path / "mp-data"
        self.put(outside / "mp-owner", b"mp-c1\r\neth0")
        (data / "mp-net").mkdir(parents=True)
        (data / "mp-net" / "10.1.0.2").symlink_to(outside / "mp-owner")
        assert disk.release_container(str(data), "mp-c1") == []
        assert os.path.islink(data / "mp-net" / "10.1.0.2")

    def test_takes_the_network_lock(self, tmp_path: Any) -> None:
        data = tmp_path / "mp-data"
        self.put(data / "mp-net" / "10.1.0.2", b"mp-c1\r\neth0")
        with DiskStore(str(data), "mp-net").locked():
            worker = threading.Thread(target=disk.release_container, args=(str(data), "mp-c1"))
            worker.start()
            worker.join(0.5)
            assert worker.is_alive(), "release_container did not wait for the lock"
            assert (data / "mp-net" / "10.1.0.2").exists()
        worker.join(10)
        assert not worker.is_alive()
        assert not (data / "mp-net" / "10.1.0.2").exists()

    def test_bad_network_does_not_stop_the_others(self, tmp_path: Any, outside: Any) -> None:
        data = tmp_path / "mp-data"
        self.put(data / "mp-a" / "10.1.0.2", b"mp-c1\r\neth0")
        (data / "mp-b").mkdir()
        (data / "mp-b" / "lock").symlink_to(outside / "mp-lock")
        self.put(data / "mp-c" / "10.3.0.2", b"mp-c1\r\neth0")
        with pytest.raises(IOFailure) as exc:
            disk.release_container(str(data), "mp-c1")
        assert exc.value.msg == f"{data}/mp-b/lock is a symbolic link: refusing to use it as host-local's lock"
        assert not (data / "mp-a" / "10.1.0.2").exists()
        assert not (data / "mp-c" / "10.3.0.2").exists()
        assert os.listdir(outside) == []

    def test_empty_container_id_rejected(self, tmp_path: Any) -> None:
        with pytest.raises(ValueError, match="container id"):
            disk.release_container(str(tmp_path), "  ")
