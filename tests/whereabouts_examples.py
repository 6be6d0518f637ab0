"""Whereabouts' documented configuration examples, as data, shared by the unit and integration tests.

Every configuration example of the Whereabouts documentation (repository
k8snetworkplumbingwg/whereabouts: README.md at 047a49b4, doc/extended-configuration.md at
01dc7c17, doc/developer_notes.md, doc/sample_config.json and the doc/proposals that show a
configuration), reproduced as documented: the configs are data, kept with their source
(file and section). A NetworkAttachmentDefinition's `spec.config` is given as its network
config. What Whereabouts documents for each is checked by tests/unit/test_cluster_config.py
(parsing) and tests/integration/test_cluster_whereabouts_examples.py (allocation).

Left out, and why:

* README.md, "Running whereabouts CNI in a local kind cluster": the same NAD as
  "An example configuration using a NetworkAttachmentDefinition".
* doc/proposals/dualstack.md, "Alternative Design" (`secondary_range`): a rejected
  alternative; Whereabouts never read the key.
* doc/persistent-ips.md (IPAMClaim objects) and doc/architecture.md: no IPAM configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["BY_ID", "EXAMPLES", "Example"]


@dataclass(frozen=True)
class Example:
    """One documented example: `id` is "<file>#<section anchor>", the pytest id of its tests."""

    id: str
    conf: dict[str, Any]
    # Whereabouts' flat file (/etc/cni/net.d/whereabouts.d/whereabouts.conf) that goes with it, if any.
    flat_file: dict[str, Any] = field(default_factory=dict)

    @property
    def ipam(self) -> dict[str, Any]:
        return self.conf["ipam"]


def _macvlan(ipam: dict[str, Any], cni_version: str = "0.3.0") -> dict[str, Any]:
    """The network config every README example wraps its `ipam` section in."""
    return {
        "cniVersion": cni_version,
        "name": "whereaboutsexample",
        "type": "macvlan",
        "master": "eth0",
        "mode": "bridge",
        "ipam": {"type": "whereabouts", **ipam},
    }


_README_EXCLUDE = {"range": "192.168.2.225/28", "exclude": ["192.168.2.229/30", "192.168.2.236/32"]}

EXAMPLES: list[Example] = [
    Example("README.md#example-ipam-config", _macvlan(_README_EXCLUDE)),
    Example(
        "README.md#an-example-configuration-using-a-networkattachmentdefinition",
        _macvlan({"range": "192.168.2.225/28"}),
    ),
    Example("README.md#example-ipv6-config", _macvlan({"range": "2001::0/116", "gateway": "2001::f:1"})),
    Example(
        "README.md#example-ipam-config-for-assigning-multiple-ip-addresses",
        _macvlan({"ipRanges": [{"range": "192.168.10.1/24"}, {"range": "176.168.10.1/16"}]}),
    ),
    # the same section, second block: "in combination with basic `range` field"
    Example(
        "README.md#example-ipam-config-for-assigning-multiple-ip-addresses(with-range)",
        _macvlan({"ipRanges": [{"range": "192.168.10.1/24"}, {"range": "176.168.10.1/16"}], "range": "abcd::1/64"}),
    ),
    Example(
        "README.md#example-dualstack-config",
        _macvlan({"ipRanges": [{"range": "192.168.10.1/24"}, {"range": "abcd::1/64"}]}),
    ),
    # "Range end syntax" documents the value only (`range: "192.168.2.225-192.168.2.230/28"`);
    # it is placed in the README's example network config.
    Example("README.md#range-end-syntax", _macvlan({"range": "192.168.2.225-192.168.2.230/28"})),
    # The introduction's prose example: in 192.168.2.0/24 with 192.168.2.0/28 excluded,
    # the first address assigned is 192.168.2.16 (and Whereabouts assigns the lowest free one).
    Example("README.md#introduction", _macvlan({"range": "192.168.2.0/24", "exclude": ["192.168.2.0/28"]})),
    Example(
        "doc/extended-configuration.md#example-etcd-datastore-configuration",
        _macvlan(
            {
                "etcd_host": "example-etcd-cluster-client.cluster.local:2379",
                **_README_EXCLUDE,
                "log_file": "/tmp/whereabouts.log",
                "log_level": "debug",
                "gateway": "192.168.2.1",
            }
        ),
    ),
    Example(
        "doc/extended-configuration.md#example-flat-file-configuration",
        _macvlan({"range": "192.168.2.225/28"}),
        flat_file={
            "datastore": "kubernetes",
            "kubernetes": {"kubeconfig": "/etc/cni/net.d/whereabouts.d/whereabouts.kubeconfig"},
            "log_file": "/tmp/whereabouts.log",
            "log_level": "debug",
        },
    ),
    Example(
        "doc/developer_notes.md#running-in-kube",
        _macvlan(
            {
                "range": "192.168.2.225/28",
                "etcd_host": "10.107.83.18:2379",
                "log_file": "/tmp/whereabouts.log",
                "log_level": "debug",
                "gateway": "192.168.2.1",
            }
        ),
    ),
    Example(
        "doc/sample_config.json",
        {
            "cniVersion": "0.3.1",
            "name": "mynet",
            "type": "ipvlan",
            "master": "foo0",
            "ipam": {
                "type": "whereabouts",
                "range": "192.168.1.0/24",
                "routes": [
                    {"dst": "0.0.0.0/0"},
                    {"dst": "192.168.0.0/16", "gw": "10.10.5.1"},
                    {"dst": "3ffe:ffff:0:01ff::1/64"},
                ],
                "dns": {"nameservers": ["8.8.8.8"], "domain": "example.com", "search": ["example.com"]},
            },
        },
    ),
    # The proposal's example config; the key it introduced (PR 256) is `network_name`.
    Example("doc/proposals/named-networks.md#design", _macvlan({"range": "192.168.2.225/28"})),
    # "New IPAM Config" column (its trailing comma after the IPv6 range, not JSON, dropped).
    Example(
        "doc/proposals/dualstack.md#changes-in-ipam-config",
        _macvlan({"ipRanges": [dict(_README_EXCLUDE), {"range": "2001::0/116"}]}),
    ),
    Example(
        "doc/proposals/fast_ipam_by_node.md#changes-in-ipam-config",
        _macvlan({"range": "192.168.2.225/8", "fast_ipam": True, "node_slice_size": "/22"}),
    ),
]

BY_ID: dict[str, Example] = {example.id: example for example in EXAMPLES}
