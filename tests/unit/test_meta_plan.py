"""Which delegates a pod gets (multiplane.plugins.meta.plan) and where their configs come from (networks).

Scenario numbers are those of /work/shared/research/multus.md §10 (cases 1, 13–28, 44, 49, 55)
with the naming rules of §2.3. NAD lookups run against both sources: `LocalSource` (YAML
manifests in a tmp dir) and `KubeSource` talking real HTTP to tests/k8s_server.K8sServer.
Pods are in namespace `test` unless stated.
"""

from __future__ import annotations

import ipaddress
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from multiplane.errors import InvalidConfig
from multiplane.ipam import config as ipam_config
from multiplane.k8s.client import KubeClient, NotFound, load_kubeconfig
from multiplane.plugins.meta.config import MetaConf
from multiplane.plugins.meta.networks import KubeSource, LocalSource, NetworkConfig, nad_config, resolve_network
from multiplane.plugins.meta.plan import KNOWN_CAPABILITIES, Delegate, PodRef, cni_args_for, plan
from multiplane.plugins.meta.selection import DEFAULT_NETWORK_ANNOTATION, NETWORKS_ANNOTATION
from multiplane.spec.netconf import NetConf
from tests.k8s_server import K8sServer

# The seed's NAD, byte for byte as /work/shared/research/seed-scenario.md shows it.
SEED_NAD = """\
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata:
  name: macvlan-conf
spec:
  config: '{ "cniVersion": "0.3.0", "type": "macvlan", "master": "ens33", "mode": "bridge",
             "ipam": { "type": "host-local", "subnet": "192.168.174.0/24",
                       "rangeStart": "192.168.174.200", "rangeEnd": "192.168.174.216",
                       "routes": [ { "dst": "0.0.0.0/0" } ], "gateway": "192.168.174.2" } }'
"""


# ---- the two NAD sources --------------------------------------------------------------------------


class LocalWorld:
    """NADs as YAML manifests in a directory, read by LocalSource."""

    kind = "local"

    def __init__(self, tmp: Path) -> None:
        self.nad_dir = tmp / "mp-nads"
        self.pod_dir = tmp / "mp-pods"
        self.nad_dir.mkdir()
        self.pod_dir.mkdir()

    def add_nad(self, namespace: str, name: str, config: str | dict[str, Any] | None = None) -> None:
        doc: dict[str, Any] = {
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": namespace},
        }
        if config is not None:
            doc["spec"] = {"config": config if isinstance(config, str) else json.dumps(config)}
        (self.nad_dir / f"{namespace}.{name}.yaml").write_text(yaml.safe_dump(doc))

    def delete_nad(self, namespace: str, name: str) -> None:
        (self.nad_dir / f"{namespace}.{name}.yaml").unlink()

    def source(self) -> Any:
        return LocalSource(str(self.nad_dir), str(self.pod_dir), {}, {})


class KubeWorld:
    """NADs in the in-repo API server, read by KubeSource over HTTP."""

    kind = "kube"

    def __init__(self, api: K8sServer, tmp: Path) -> None:
        self.api = api
        self.kubeconfig = api.kubeconfig(tmp / "mp-kubeconfig")

    def add_nad(self, namespace: str, name: str, config: str | dict[str, Any] | None = None) -> None:
        self.api.add_nad(namespace, name, config)

    def delete_nad(self, namespace: str, name: str) -> None:
        self.api.delete_nad(namespace, name)

    def source(self) -> Any:
        return KubeSource(KubeClient(load_kubeconfig(self.kubeconfig)))


@pytest.fixture(params=["local", "kube"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalWorld | KubeWorld]:
    if request.param == "local":
        yield LocalWorld(tmp_path)
        return
    with K8sServer() as api:
        yield KubeWorld(api, tmp_path)


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    d = tmp_path / "mp-confdir"
    d.mkdir()
    return d


def write_conf(directory: Path, filename: str, obj: dict[str, Any] | str) -> Path:
    path = directory / filename
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def meta(conf_dir: Path, **extra: Any) -> MetaConf:
    obj: dict[str, Any] = {"cniVersion": "1.0.0", "name": "mp-meta", "type": "multiplane", "confDir": str(conf_dir)}
    obj.update(extra)
    return MetaConf(NetConf.parse(json.dumps(obj).encode()))


def pod(
    namespace: str = "test", name: str = "mp-pod", annotations: dict[str, str] | None = None, **args: str
) -> PodRef:
    pairs = [("K8S_POD_NAMESPACE", namespace), ("K8S_POD_NAME", name), *args.items()]
    ref = PodRef(pairs)
    ref.annotations = dict(annotations or {})
    return ref


def networks(value: str, namespace: str = "test", **args: str) -> PodRef:
    return pod(namespace, annotations={NETWORKS_ANNOTATION: value}, **args)


def summary(delegates: list[Delegate]) -> list[tuple[str, str, str, bool]]:
    """(display name, CNI name, ifname, master) per delegate."""
    return [(d.name, d.net.name, d.ifname, d.master) for d in delegates]


def types(delegates: list[Delegate]) -> list[str]:
    return [d.net.plugins[0]["type"] for d in delegates]


def plan_error(conf: MetaConf, source: Any, ref: PodRef) -> InvalidConfig:
    with pytest.raises(InvalidConfig) as info:
        plan(conf, source, ref, "eth0")
    assert info.value.code == 7
    return info.value


CLUSTER = {"cniVersion": "1.0.0", "name": "mp-cluster", "type": "mp-spy1"}


@pytest.fixture
def cluster_conf(conf_dir: Path) -> MetaConf:
    """A meta config whose cluster network is a file path in confDir."""
    path = write_conf(conf_dir, "10-cluster.conf", CLUSTER)
    return meta(conf_dir, clusterNetwork=str(path))


# ---- NAD resolution (cases 1, 13–17) --------------------------------------------------------------


def test_case1_annotated_nads_follow_the_cluster_network(world: Any, cluster_conf: MetaConf) -> None:
    """Case 1: `net1,net2` gives the cluster network then test/net1 and test/net2; the unused net3 is ignored."""
    world.add_nad("test", "net1", {"cniVersion": "1.0.0", "name": "net1", "type": "mynet"})
    world.add_nad("test", "net2", {"cniVersion": "1.0.0", "name": "net2", "type": "mynet2"})
    world.add_nad("test", "net3", {"cniVersion": "1.0.0", "name": "net3", "type": "mynet3"})
    out = plan(cluster_conf, world.source(), networks("net1,net2"), "eth0")
    assert summary(out) == [
        ("mp-cluster", "mp-cluster", "eth0", True),
        ("test/net1", "net1", "net1", False),
        ("test/net2", "net2", "net2", False),
    ]
    assert types(out) == ["mp-spy1", "mynet", "mynet2"]


def test_case13_missing_nad_is_an_error_naming_it(world: Any, cluster_conf: MetaConf) -> None:
    """Case 13: with only net3 defined, `net1,net2` fails naming net1 and its namespace."""
    world.add_nad("test", "net3", {"type": "mynet"})
    err = plan_error(cluster_conf, world.source(), networks("net1,net2"))
    assert err.msg == (
        "cannot find a network-attachment-definition (net1) in namespace (test): "
        'network-attachment-definitions.k8s.cni.cncf.io "test/net1" not found'
    )


def test_nad_is_looked_up_in_the_selected_namespace(world: Any, cluster_conf: MetaConf) -> None:
    """Case 9: `other-ns/net3` is fetched from other-ns, not the pod's namespace."""
    world.add_nad("test", "net3", {"type": "wrong"})
    world.add_nad("other-ns", "net3", {"type": "right"})
    out = plan(cluster_conf, world.source(), networks('[{"name":"net3","namespace":"other-ns"}]'), "eth0")
    assert out[1].name == "other-ns/net3"
    assert types(out)[1] == "right"


def test_case14_nad_config_without_name_gets_the_nad_name(world: Any, cluster_conf: MetaConf) -> None:
    """Case 14: spec.config `{"type":"mynet"}` becomes a delegate whose CNI name (also in its bytes) is the NAD name."""
    world.add_nad("test", "net1", '{"type":"mynet"}')
    out = plan(cluster_conf, world.source(), networks("net1"), "eth0")
    assert out[1].net.name == "net1"
    assert json.loads(out[1].net.raw)["name"] == "net1"
    assert out[1].name == "test/net1"


def test_nad_config_keeps_its_own_name_and_bytes(world: Any, cluster_conf: MetaConf) -> None:
    """A NAD config with its own `name` keeps it (it keys host-local's pool), and its bytes are unchanged."""
    config = '{"cniVersion":"0.4.0",  "name":"mp-shared-pool","type":"mynet"}'
    world.add_nad("test", "net1", config)
    out = plan(cluster_conf, world.source(), networks("net1"), "eth0")
    assert out[1].net.name == "mp-shared-pool"
    assert out[1].net.raw == config.encode()
    assert out[1].net.cni_version == "0.4.0"
    assert out[1].name == "test/net1"


def test_nad_conflist_is_a_list_delegate(world: Any, cluster_conf: MetaConf) -> None:
    """A NAD whose config has `plugins` is a conflist delegate with every plugin kept."""
    world.add_nad("test", "net1", {"cniVersion": "1.0.0", "plugins": [{"type": "mp-a"}, {"type": "mp-b"}]})
    out = plan(cluster_conf, world.source(), networks("net1"), "eth0")
    assert out[1].net.is_list
    assert [p["type"] for p in out[1].net.plugins] == ["mp-a", "mp-b"]
    assert out[1].net.name == "net1"


@pytest.mark.parametrize(
    "config",
    ['{"name":"x"}', '{"plugins":[]}', '{"plugins":[{"name":"x"}]}', "[1,2]", "{not json", '{"type":"../bin/sh"}'],
)
def test_unusable_nad_config_is_an_error(world: Any, cluster_conf: MetaConf, config: str) -> None:
    """A NAD config that is not JSON, has no type/plugins[0].type, or a type with a path, is code 7 naming the NAD."""
    world.add_nad("test", "net1", config)
    err = plan_error(cluster_conf, world.source(), networks("net1"))
    assert "network-attachment-definition" in err.msg and "net1" in err.msg


def test_case15_empty_spec_resolves_from_conf_dir_by_name(world: Any, conf_dir: Path, cluster_conf: MetaConf) -> None:
    """Case 15: NADs with an empty spec take the confDir file whose `name` is the NAD name."""
    write_conf(conf_dir, "10-net1.conf", {"cniVersion": "1.0.0", "name": "net1", "type": "mp-from-file1"})
    write_conf(conf_dir, "20-net2.conf", {"cniVersion": "1.0.0", "name": "net2", "type": "mp-from-file2"})
    world.add_nad("test", "net1")
    world.add_nad("test", "net2")
    out = plan(cluster_conf, world.source(), networks("net1,net2"), "eth0")
    assert types(out) == ["mp-spy1", "mp-from-file1", "mp-from-file2"]
    assert [d.name for d in out[1:]] == ["test/net1", "test/net2"]


def test_case16_unparseable_conf_file_is_an_error_naming_it(world: Any, conf_dir: Path, cluster_conf: MetaConf) -> None:
    """Case 16: a garbage `20-net2.conf` scanned while looking for net2 fails with the file's path."""
    write_conf(conf_dir, "10-net1.conf", {"cniVersion": "1.0.0", "name": "net1", "type": "mynet"})
    bad = write_conf(conf_dir, "20-net2.conf", "asdfasdfasfdasfd")
    world.add_nad("test", "net1")
    world.add_nad("test", "net2")
    err = plan_error(cluster_conf, world.source(), networks("net1,net2"))
    assert err.msg.startswith(f"error loading CNI config file {bad}: error parsing configuration: ")


def test_case17_empty_spec_with_missing_conf_dir_is_an_error(world: Any, tmp_path: Path) -> None:
    """Case 17: an empty-spec NAD with confDir pointing nowhere is an error naming the NAD and the directory."""
    cluster = write_conf(tmp_path, "mp-cluster.conf", CLUSTER)
    conf = meta(tmp_path / "mp-no-such-dir", clusterNetwork=str(cluster))
    world.add_nad("test", "net1")
    err = plan_error(conf, world.source(), networks("net1"))
    assert "net1" in err.msg and str(tmp_path / "mp-no-such-dir") in err.msg


def test_conf_dir_scan_is_lexical_and_takes_conf_json_and_conflist(conf_dir: Path) -> None:
    """The first .conf/.json/.conflist by file name with a matching name wins; other suffixes are not read."""
    write_conf(conf_dir, "05-net1.txt", "garbage that would fail to parse")
    write_conf(conf_dir, "30-net1.conf", {"name": "net1", "type": "mp-late"})
    write_conf(conf_dir, "20-net1.conflist", {"name": "net1", "plugins": [{"type": "mp-list"}]})
    write_conf(conf_dir, "10-other.json", {"name": "other", "type": "mp-json"})
    nad = {"metadata": {"name": "net1", "namespace": "test"}, "spec": {}}
    assert nad_config(nad, str(conf_dir)).plugins[0]["type"] == "mp-list"
    nad = {"metadata": {"name": "other", "namespace": "test"}}
    assert nad_config(nad, str(conf_dir)).plugins[0]["type"] == "mp-json"


def test_conf_file_without_type_or_plugins_is_an_error(conf_dir: Path) -> None:
    """A scanned .conf without `type` or `plugins` is an error naming the file."""
    bad = write_conf(conf_dir, "10-net1.conf", {"name": "net1"})
    with pytest.raises(InvalidConfig) as info:
        nad_config({"metadata": {"name": "net1"}, "spec": {"config": ""}}, str(conf_dir))
    assert str(bad) in info.value.msg and "'type' or 'plugins'" in info.value.msg


def test_spec_config_must_be_a_string(conf_dir: Path) -> None:
    """A NAD whose spec.config is an object instead of a JSON string is refused."""
    with pytest.raises(InvalidConfig, match="spec.config must be a string"):
        nad_config({"metadata": {"name": "n", "namespace": "test"}, "spec": {"config": {"type": "x"}}}, str(conf_dir))


# ---- clusterNetwork and defaultNetworks (cases 18–24) -----------------------------------------------


def test_case18_cluster_network_by_nad_name_in_the_multus_namespace(world: Any, conf_dir: Path) -> None:
    """Case 18: `clusterNetwork: mp-crd1` is the NAD kube-system/mp-crd1, master, on CNI_IFNAME."""
    world.add_nad("kube-system", "mp-crd1", {"type": "mynet"})
    out = plan(meta(conf_dir, clusterNetwork="mp-crd1"), world.source(), pod(), "eth0")
    assert summary(out) == [("kube-system/mp-crd1", "mp-crd1", "eth0", True)]
    assert types(out) == ["mynet"]


def test_cluster_network_nad_follows_multus_namespace(world: Any, conf_dir: Path) -> None:
    """clusterNetwork NADs are looked up in multusNamespace, not in the pod's namespace."""
    world.add_nad("test", "mp-crd1", {"type": "wrong"})
    world.add_nad("mp-system", "mp-crd1", {"type": "right"})
    out = plan(meta(conf_dir, clusterNetwork="mp-crd1", multusNamespace="mp-system"), world.source(), pod(), "eth0")
    assert out[0].name == "mp-system/mp-crd1"
    assert types(out) == ["right"]


def test_case19_default_networks_follow_the_cluster_network_in_order(world: Any, conf_dir: Path) -> None:
    """Case 19: defaultNetworks [mp-crd2, mp-crd3] come after mp-crd1, as net1 and net2."""
    for name in ("mp-crd1", "mp-crd2", "mp-crd3"):
        world.add_nad("kube-system", name, {"type": f"t-{name}"})
    conf = meta(conf_dir, clusterNetwork="mp-crd1", defaultNetworks=["mp-crd2", "mp-crd3"])
    assert summary(plan(conf, world.source(), pod(), "eth0")) == [
        ("kube-system/mp-crd1", "mp-crd1", "eth0", True),
        ("kube-system/mp-crd2", "mp-crd2", "net1", False),
        ("kube-system/mp-crd3", "mp-crd3", "net2", False),
    ]


def test_case20_default_networks_are_skipped_for_system_namespaces(world: Any, conf_dir: Path) -> None:
    """Case 20: a pod in kube-system (a system namespace) gets only the cluster network."""
    world.add_nad("kube-system", "mp-crd1", {"type": "mynet"})
    world.add_nad("kube-system", "mp-crd2", {"type": "mynet2"})
    conf = meta(conf_dir, clusterNetwork="mp-crd1", defaultNetworks=["mp-crd2"])
    assert [d.name for d in plan(conf, world.source(), pod("kube-system"), "eth0")] == ["kube-system/mp-crd1"]
    conf = meta(conf_dir, clusterNetwork="mp-crd1", defaultNetworks=["mp-crd2"], systemNamespaces=["mp-sys"])
    assert len(plan(conf, world.source(), pod("mp-sys"), "eth0")) == 1
    assert len(plan(conf, world.source(), pod("kube-system"), "eth0")) == 2


def test_case21_cluster_network_by_file_name_in_conf_dir(world: Any, conf_dir: Path) -> None:
    """Case 21: with no NAD of that name, a confDir file whose `name` matches is used; its CNI name is the display name."""
    write_conf(conf_dir, "50-file.conf", {"cniVersion": "0.4.0", "name": "mp-file1", "type": "mp-filetype"})
    out = plan(meta(conf_dir, clusterNetwork="mp-file1"), world.source(), pod(), "eth0")
    assert summary(out) == [("mp-file1", "mp-file1", "eth0", True)]
    assert types(out) == ["mp-filetype"]


def test_cluster_network_nad_wins_over_a_file_of_the_same_name(world: Any, conf_dir: Path) -> None:
    """A NAD is tried before the confDir file of the same name."""
    write_conf(conf_dir, "50-file.conf", {"name": "mp-crd1", "type": "mp-filetype"})
    world.add_nad("kube-system", "mp-crd1", {"type": "mp-nadtype"})
    assert types(plan(meta(conf_dir, clusterNetwork="mp-crd1"), world.source(), pod(), "eth0")) == ["mp-nadtype"]


def test_case22_cluster_network_directory_takes_the_first_conf(tmp_path: Path, conf_dir: Path) -> None:
    """Case 22: a directory path gives its lexically first .conf/.conflist; our own 00-multiplane* file is skipped."""
    net_d = tmp_path / "mp-netd"
    net_d.mkdir()
    write_conf(net_d, "00-multiplane.conflist", {"name": "mp-meta", "plugins": [{"type": "multiplane"}]})
    write_conf(net_d, "20-net2.conf", {"name": "net2", "type": "mynet2"})
    write_conf(net_d, "10-net1.conf", {"name": "net1", "type": "mynet"})
    source = LocalSource(str(tmp_path / "mp-nads"), str(tmp_path / "mp-pods"), {}, {})
    out = plan(meta(conf_dir, clusterNetwork=str(net_d)), source, pod(), "eth0")
    assert summary(out) == [("net1", "net1", "eth0", True)]


def test_case22_empty_cluster_network_directory_is_an_error(tmp_path: Path, conf_dir: Path) -> None:
    """A cluster-network directory with no CNI file is an error naming the directory."""
    net_d = tmp_path / "mp-empty"
    net_d.mkdir()
    with pytest.raises(InvalidConfig, match="no CNI configuration"):
        resolve_network(str(net_d), "kube-system", None, str(conf_dir))


def test_case23_cluster_network_file_path(tmp_path: Path, conf_dir: Path) -> None:
    """Case 23: a path to 10-net1.conf is loaded directly, whatever confDir holds."""
    path = write_conf(tmp_path, "10-net1.conf", {"name": "net1", "type": "mynet"})
    name, net = resolve_network(str(path), "kube-system", None, str(conf_dir))
    assert (name, net.name, net.plugins[0]["type"]) == ("net1", "net1", "mynet")


def test_case23_cluster_network_conflist_file(tmp_path: Path, conf_dir: Path) -> None:
    """A path to a .conflist loads a list delegate."""
    path = write_conf(
        tmp_path, "10-list.conflist", {"cniVersion": "1.0.0", "name": "mp-l", "plugins": [{"type": "a"}, {"type": "b"}]}
    )
    _name, net = resolve_network(str(path), "kube-system", None, str(conf_dir))
    assert net.is_list and len(net.plugins) == 2


def test_case24_cluster_network_not_found_is_an_error(world: Any, conf_dir: Path) -> None:
    """Case 24: no NAD and no file of that name is an error naming the network, the NAD it tried and confDir."""
    err = plan_error(meta(conf_dir, clusterNetwork="mp-crd1"), world.source(), pod())
    assert err.msg == (
        'cannot find network "mp-crd1": no NetworkAttachmentDefinition "kube-system/mp-crd1" '
        f"and no CNI file with that name in {conf_dir}"
    )


def test_cluster_network_missing_path_is_an_error(tmp_path: Path, conf_dir: Path) -> None:
    """A clusterNetwork path that does not exist is an error naming it."""
    missing = str(tmp_path / "mp-nothing" / "10-x.conf")
    with pytest.raises(InvalidConfig, match="no such file or directory"):
        resolve_network(missing, "kube-system", None, str(conf_dir))


def test_missing_default_network_is_an_error(world: Any, conf_dir: Path) -> None:
    """An unresolvable defaultNetworks entry fails the plan like the cluster network would."""
    world.add_nad("kube-system", "mp-crd1", {"type": "mynet"})
    err = plan_error(meta(conf_dir, clusterNetwork="mp-crd1", defaultNetworks=["mp-gone"]), world.source(), pod())
    assert 'cannot find network "mp-gone"' in err.msg


# ---- inline delegates (cases 33–34) ---------------------------------------------------------------


def test_inline_delegates_first_is_master_others_numbered(conf_dir: Path, tmp_path: Path) -> None:
    """Case 33: inline delegates run in order; [0] is master on CNI_IFNAME, [1] is net1; a missing name is `delegate<i>`."""
    conf = meta(conf_dir, delegates=[{"name": "weave1", "type": "weave-net"}, {"type": "foobar"}])
    source = LocalSource(str(tmp_path / "mp-nads"), str(tmp_path / "mp-pods"), {}, {})
    assert summary(plan(conf, source, pod(), "eth0")) == [
        ("weave1", "weave1", "eth0", True),
        ("delegate1", "", "net1", False),
    ]


# ---- the default-network annotation (cases 25–26) ---------------------------------------------------


def test_case25_default_network_annotation_replaces_the_cluster_network(world: Any, conf_dir: Path) -> None:
    """Case 25: `default-network: net1` (looked up in kube-system) replaces clusterNetwork net2 as delegate 0; nothing is added."""
    world.add_nad("kube-system", "net1", {"type": "mynet1"})
    world.add_nad("kube-system", "net2", {"type": "mynet2"})
    ref = pod(annotations={DEFAULT_NETWORK_ANNOTATION: "net1"})
    out = plan(meta(conf_dir, clusterNetwork="net2"), world.source(), ref, "eth0")
    assert summary(out) == [("kube-system/net1", "net1", "eth0", True)]
    assert types(out) == ["mynet1"]


def test_case26_default_network_annotation_replaces_inline_delegate_0(world: Any, conf_dir: Path) -> None:
    """Case 26: the override also replaces an inline `delegates[0]`, leaving the others."""
    world.add_nad("kube-system", "net1", {"type": "mynet1"})
    conf = meta(conf_dir, delegates=[{"name": "net2", "type": "mynet2"}, {"name": "mp-x", "type": "mp-x"}])
    out = plan(conf, world.source(), pod(annotations={DEFAULT_NETWORK_ANNOTATION: "net1"}), "eth0")
    assert summary(out) == [("kube-system/net1", "net1", "eth0", True), ("mp-x", "mp-x", "net1", False)]


def test_default_network_annotation_with_two_entries_is_an_error(world: Any, cluster_conf: MetaConf) -> None:
    """More than one entry in the default-network annotation is refused."""
    err = plan_error(cluster_conf, world.source(), pod(annotations={DEFAULT_NETWORK_ANNOTATION: "net1,net2"}))
    assert "must name exactly one network" in err.msg


def test_default_network_annotation_is_subject_to_namespace_isolation(
    world: Any, conf_dir: Path, cluster_conf: MetaConf
) -> None:
    """Issue 11 #2a: under isolation the default-network override may not name another pod namespace's NAD."""
    world.add_nad("other", "net1", {"type": "mynet1"})
    conf = meta(conf_dir, clusterNetwork=cluster_conf.cluster_network, namespaceIsolation=True)
    err = plan_error(conf, world.source(), pod(annotations={DEFAULT_NETWORK_ANNOTATION: "other/net1"}))
    assert err.code == 7
    assert "refers to target namespace other in v1.multus-cni.io/default-network" in err.msg


@pytest.mark.parametrize("target", ["kube-system/net1", "net1", "default/net1", "test/net1"])
def test_default_network_under_isolation_allows_own_multus_and_global_namespaces(
    world: Any, conf_dir: Path, cluster_conf: MetaConf, target: str
) -> None:
    """The pod's namespace, the meta-plugin's namespace (the annotation's default) and globalNamespaces stay allowed."""
    for ns in ("kube-system", "default", "test"):
        world.add_nad(ns, "net1", {"type": "mynet1"})
    conf = meta(conf_dir, clusterNetwork=cluster_conf.cluster_network, namespaceIsolation=True)
    out = plan(conf, world.source(), pod(annotations={DEFAULT_NETWORK_ANNOTATION: target}), "eth0")
    assert out[0].name.endswith("/net1") and out[0].master


# ---- namespace isolation (cases 27–28) ------------------------------------------------------------


def test_case27_isolation_refuses_another_namespace(world: Any, conf_dir: Path, cluster_conf: MetaConf) -> None:
    """Case 27: with isolation, a pod in test referring to kube-system/net1 gets Multus's error text (code 7)."""
    world.add_nad("kube-system", "net1", {"type": "mynet"})
    conf = meta(conf_dir, clusterNetwork=cluster_conf.cluster_network, namespaceIsolation=True)
    err = plan_error(conf, world.source(), networks("kube-system/net1"))
    assert err.msg == (
        "namespace isolation enabled, annotation violates permission, "
        "pod is in namespace test but refers to target namespace kube-system"
    )


def test_case28_global_namespaces_are_allowed(world: Any, conf_dir: Path, cluster_conf: MetaConf) -> None:
    """Case 28: globalNamespaces "kube-system,donkey-kong" lets the same reference through."""
    world.add_nad("kube-system", "net1", {"type": "mynet"})
    conf = meta(
        conf_dir,
        clusterNetwork=cluster_conf.cluster_network,
        namespaceIsolation=True,
        globalNamespaces="kube-system,donkey-kong",
    )
    assert plan(conf, world.source(), networks("kube-system/net1"), "eth0")[1].name == "kube-system/net1"


def test_isolation_allows_own_and_default_namespace(world: Any, conf_dir: Path, cluster_conf: MetaConf) -> None:
    """With isolation and the default global list, the pod's own namespace and `default` are allowed."""
    world.add_nad("test", "net1", {"type": "mynet"})
    world.add_nad("default", "net2", {"type": "mynet"})
    conf = meta(conf_dir, clusterNetwork=cluster_conf.cluster_network, namespaceIsolation=True)
    out = plan(conf, world.source(), networks("net1,default/net2"), "eth0")
    assert [d.name for d in out[1:]] == ["test/net1", "default/net2"]


def test_isolation_does_not_apply_to_cluster_and_default_networks(world: Any, conf_dir: Path) -> None:
    """clusterNetwork and defaultNetworks live in kube-system and are allowed even with isolation on."""
    world.add_nad("kube-system", "mp-crd1", {"type": "a"})
    world.add_nad("kube-system", "mp-crd2", {"type": "b"})
    conf = meta(conf_dir, clusterNetwork="mp-crd1", defaultNetworks=["mp-crd2"], namespaceIsolation=True)
    assert len(plan(conf, world.source(), pod(), "eth0")) == 2


def test_isolation_is_checked_before_the_nad_is_fetched(world: Any, conf_dir: Path, cluster_conf: MetaConf) -> None:
    """A forbidden reference is refused even when the NAD does not exist (no lookup leaks its existence)."""
    conf = meta(conf_dir, clusterNetwork=cluster_conf.cluster_network, namespaceIsolation=True)
    assert "namespace isolation enabled" in plan_error(conf, world.source(), networks("mp-secret/net9")).msg


# ---- interface naming (§2.3) ----------------------------------------------------------------------


def test_numbering_counts_default_networks(world: Any, conf_dir: Path) -> None:
    """With clusterNetwork plus 2 defaultNetworks, the first annotation network is net3."""
    for name in ("mp-crd1", "mp-crd2", "mp-crd3"):
        world.add_nad("kube-system", name, {"type": "x"})
    world.add_nad("test", "net-a", {"type": "y"})
    conf = meta(conf_dir, clusterNetwork="mp-crd1", defaultNetworks=["mp-crd2", "mp-crd3"])
    assert [d.ifname for d in plan(conf, world.source(), networks("net-a"), "eth0")] == ["eth0", "net1", "net2", "net3"]


def test_explicit_name_does_not_shift_numbering(world: Any, cluster_conf: MetaConf) -> None:
    """`a@foo,b` gives foo then net2: the position, not a counter of automatic names, picks the number."""
    world.add_nad("test", "a", {"type": "x"})
    world.add_nad("test", "b", {"type": "x"})
    assert [d.ifname for d in plan(cluster_conf, world.source(), networks("a@foo,b"), "eth0")] == [
        "eth0",
        "foo",
        "net2",
    ]


def test_cluster_network_uses_cni_ifname(world: Any, cluster_conf: MetaConf) -> None:
    """The master gets whatever CNI_IFNAME the runtime passed."""
    world.add_nad("test", "a", {"type": "x"})
    assert [d.ifname for d in plan(cluster_conf, world.source(), networks("a"), "mp-e0")] == ["mp-e0", "net1"]


def test_explicit_net2_clashes_with_automatic_net2(world: Any, cluster_conf: MetaConf) -> None:
    """`a@net2,b`: b's automatic net2 collides with a's explicit net2 and the plan fails naming both."""
    world.add_nad("test", "a", {"type": "x"})
    world.add_nad("test", "b", {"type": "x"})
    err = plan_error(cluster_conf, world.source(), networks("a@net2,b"))
    assert err.msg == 'interface name "net2" is used by both "test/a" and "test/b"'


def test_explicit_cni_ifname_on_a_secondary_clashes_with_the_master(world: Any, cluster_conf: MetaConf) -> None:
    """A secondary asking for eth0 collides with the cluster network's eth0."""
    world.add_nad("test", "a", {"type": "x"})
    assert 'interface name "eth0"' in plan_error(cluster_conf, world.source(), networks("a@eth0")).msg


def test_same_nad_twice_gets_two_interfaces(world: Any, cluster_conf: MetaConf) -> None:
    """Listing a NAD twice attaches it twice, as net1 and net2."""
    world.add_nad("test", "net-a", {"type": "x"})
    out = plan(cluster_conf, world.source(), networks("net-a,net-a"), "eth0")
    assert summary(out)[1:] == [("test/net-a", "net-a", "net1", False), ("test/net-a", "net-a", "net2", False)]


def test_json_interface_request_is_used(world: Any, cluster_conf: MetaConf) -> None:
    """Case 11: the JSON `interface` key names the delegate's interface."""
    world.add_nad("test", "net1", {"type": "x"})
    assert (
        plan(cluster_conf, world.source(), networks('[{"name":"net1","interface":"test1"}]'), "eth0")[1].ifname
        == "test1"
    )


# ---- CNI_ARGS (cases 44, 55) ----------------------------------------------------------------------


MULTUS_44 = [
    ("K8S_POD_NAME", "dummy"),
    ("K8S_POD_NAMESPACE", "namespacedummy"),
    ("K8S_POD_INFRA_CONTAINER_ID", "123456789"),
    ("K8S_POD_UID", "aaaaa"),
    ("BLAHBLAH", "foo=bar"),
]


def test_case44_cni_args_in_multus_order() -> None:
    """Case 44: IgnoreUnknown and the K8S_* keys come first in Multus's order, then other pairs; `foo=bar` survives."""
    assert cni_args_for(PodRef(MULTUS_44), []) == (
        "IgnoreUnknown=true;K8S_POD_NAMESPACE=namespacedummy;K8S_POD_NAME=dummy;"
        "K8S_POD_INFRA_CONTAINER_ID=123456789;K8S_POD_UID=aaaaa;BLAHBLAH=foo=bar"
    )


def test_case44_every_delegate_gets_the_same_args(world: Any, conf_dir: Path) -> None:
    """The cluster network, defaultNetworks and annotation networks all get the Multus-ordered CNI_ARGS."""
    world.add_nad("kube-system", "mp-crd1", {"type": "x"})
    world.add_nad("kube-system", "mp-crd2", {"type": "x"})
    world.add_nad("namespacedummy", "net1", {"type": "x"})
    ref = PodRef(MULTUS_44)
    ref.annotations = {NETWORKS_ANNOTATION: "net1"}
    out = plan(meta(conf_dir, clusterNetwork="mp-crd1", defaultNetworks=["mp-crd2"]), world.source(), ref, "eth0")
    expected = cni_args_for(PodRef(MULTUS_44), [])
    assert [d.cni_args for d in out] == [expected] * 3


def test_case55_missing_uid_and_infra_are_empty_values() -> None:
    """Case 55: without a UID or infra container id the keys are still sent, empty."""
    ref = PodRef([("K8S_POD_NAMESPACE", "test"), ("K8S_POD_NAME", "mp-pod")])
    assert cni_args_for(ref, []) == (
        "IgnoreUnknown=true;K8S_POD_NAMESPACE=test;K8S_POD_NAME=mp-pod;K8S_POD_INFRA_CONTAINER_ID=;K8S_POD_UID="
    )
    assert cni_args_for(PodRef([]), []) == (
        "IgnoreUnknown=true;K8S_POD_NAMESPACE=;K8S_POD_NAME=;K8S_POD_INFRA_CONTAINER_ID=;K8S_POD_UID="
    )


def test_own_keys_are_not_forwarded_twice_and_multiplane_keys_not_at_all() -> None:
    """The runtime's IgnoreUnknown is not repeated, MULTIPLANE_* selection keys stay with us, other pairs keep their order."""
    ref = PodRef(
        [
            ("IgnoreUnknown", "1"),
            ("MP_FIRST", "1"),
            ("K8S_POD_NAMESPACE", "test"),
            ("MULTIPLANE_NETWORKS", "net1"),
            ("MULTIPLANE_DEFAULT_NETWORK", "net2"),
            ("K8S_POD_NAME", "mp-pod"),
            ("MP_SECOND", ""),
        ]
    )
    assert cni_args_for(ref, [("IP", "10.0.0.1")]) == (
        "IgnoreUnknown=true;K8S_POD_NAMESPACE=test;K8S_POD_NAME=mp-pod;K8S_POD_INFRA_CONTAINER_ID=;K8S_POD_UID=;"
        "MP_FIRST=1;MP_SECOND=;IP=10.0.0.1"
    )


def test_pod_ref_knows_its_pod_only_with_namespace_and_name() -> None:
    """A pod is known only with both K8S_POD_NAMESPACE and K8S_POD_NAME; its label carries the UID when given."""
    assert not PodRef([("K8S_POD_NAME", "p")]).known
    assert PodRef([]).label() == "-"
    assert PodRef([("K8S_POD_NAMESPACE", "test"), ("K8S_POD_NAME", "p")]).label() == "test/p"
    assert PodRef([("K8S_POD_NAMESPACE", "test"), ("K8S_POD_NAME", "p"), ("K8S_POD_UID", "u1")]).label() == "test/p:u1"


# ---- per-attachment values (cases 42, 43, 49) -------------------------------------------------------


CASE49 = {
    "name": "net1",
    "mac": "c2:11:22:33:44:66",
    "ips": ["10.0.0.1"],
    "bandwidth": {"ingressRate": 2048, "ingressBurst": 1600, "egressRate": 4096, "egressBurst": 1600},
    "portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 8000, "containerPort": 8001, "protocol": "udp"},
    ],
}


def test_case49_selection_values_become_the_delegates_capability_args(world: Any, cluster_conf: MetaConf) -> None:
    """Case 49: net1's capability args are exactly ips, mac, bandwidth and portMappings from its selection element."""
    world.add_nad(
        "test",
        "net1",
        {"type": "x", "capabilities": {"mac": True, "ips": True, "bandwidth": True, "portMappings": True}},
    )
    out = plan(cluster_conf, world.source(), networks(json.dumps([CASE49])), "eth0")
    assert out[1].cap_args == {
        "ips": ["10.0.0.1"],
        "mac": "c2:11:22:33:44:66",
        "bandwidth": CASE49["bandwidth"],
        "portMappings": CASE49["portMappings"],
    }
    assert out[0].cap_args == {}


def test_runtime_capability_args_go_to_the_cluster_network_only(
    world: Any, conf_dir: Path, cluster_conf: MetaConf
) -> None:
    """Unlike Multus (which leaks them to every delegate), the runtime's runtimeConfig reaches only the cluster network."""
    world.add_nad("kube-system", "mp-crd2", {"type": "x", "capabilities": {"portMappings": True}})
    world.add_nad("test", "net1", {"type": "x", "capabilities": {"portMappings": True}})
    host_ports = [{"hostPort": 30080, "containerPort": 80, "protocol": "tcp"}]
    conf = meta(
        conf_dir,
        clusterNetwork=cluster_conf.cluster_network,
        defaultNetworks=["mp-crd2"],
        runtimeConfig={
            "portMappings": host_ports,
            "io.kubernetes.cri.pod-annotations": {NETWORKS_ANNOTATION: "net1"},
            "cgroupPath": "/kubepods/mp",
        },
    )
    out = plan(conf, world.source(), networks("net1"), "eth0")
    assert out[0].cap_args == {"portMappings": host_ports}
    assert [d.cap_args for d in out[1:]] == [{}, {}]


def test_known_capabilities_are_multus_forwarded_set() -> None:
    """The runtime keys forwarded to the cluster network are Multus's seven; anything else is dropped."""
    assert set(KNOWN_CAPABILITIES) == {
        "portMappings",
        "bandwidth",
        "ips",
        "mac",
        "infinibandGUID",
        "deviceID",
        "CNIDeviceInfoFile",
    }


def test_one_ip_is_also_sent_as_ip_arg_with_mac(world: Any, cluster_conf: MetaConf) -> None:
    """One requested IP is also `IP=` in CNI_ARGS and a mac is `MAC=`, after the K8S_* keys; the cluster network gets neither."""
    world.add_nad("test", "net1", {"type": "x"})
    out = plan(cluster_conf, world.source(), networks(json.dumps([CASE49])), "eth0")
    assert out[1].cni_args.endswith(";K8S_POD_UID=;IP=10.0.0.1;MAC=c2:11:22:33:44:66")
    assert "IP=" not in out[0].cni_args and "MAC=" not in out[0].cni_args


def test_two_ips_without_the_ips_capability_are_refused(world: Any, cluster_conf: MetaConf) -> None:
    """Issue 11 #9: two IPs can only travel as the `ips` capability; a NAD whose plugins lack it fails the plan (7)."""
    world.add_nad("test", "net1", {"type": "x", "ipam": {"type": "host-local"}})
    err = plan_error(cluster_conf, world.source(), networks('[{"name":"net1","ips":["10.0.0.1/24","10.0.0.2/24"]}]'))
    assert err.code == 7 and '"ips" capability' in err.msg and "10.0.0.1/24, 10.0.0.2/24" in err.msg


def test_two_ips_are_not_sent_as_ip_arg(world: Any, cluster_conf: MetaConf) -> None:
    """Unlike Multus's comma-joined `IP=a,b` (host-local cannot read it), two IPs go only in the `ips` capability."""
    world.add_nad("test", "net1", {"type": "x", "capabilities": {"ips": True}})
    out = plan(
        cluster_conf, world.source(), networks('[{"name":"net1","ips":["10.0.0.1/24","fd00:10::1/64"]}]'), "eth0"
    )
    assert "IP=" not in out[1].cni_args
    assert out[1].cap_args == {"ips": ["10.0.0.1/24", "fd00:10::1/64"]}


def test_guid_device_id_cni_args_and_default_route_reach_the_delegate(world: Any, cluster_conf: MetaConf) -> None:
    """infiniband-guid and deviceID become capability args; cni-args and default-route are kept on the delegate."""
    world.add_nad("test", "net1", {"type": "x"})
    element = {
        "name": "net1",
        "infiniband-guid": "24:8a:07:03:00:8d:ae:2e",
        "deviceID": "0000:00:00.0",
        "cni-args": {"args1": "val1"},
        "default-route": ["10.0.0.254"],
    }
    out = plan(cluster_conf, world.source(), networks(json.dumps([element])), "eth0")
    assert out[1].cap_args == {"infinibandGUID": "24:8a:07:03:00:8d:ae:2e", "deviceID": "0000:00:00.0"}
    assert out[1].args_cni == {"args1": "val1"}
    assert out[1].default_route == ["10.0.0.254"]
    assert (out[0].args_cni, out[0].default_route) == (None, None)


# ---- LocalSource ----------------------------------------------------------------------------------


def test_seed_nad_parses_unchanged_for_any_namespace(tmp_path: Path) -> None:
    """The seed's macvlan-conf manifest (no namespace) serves every namespace and keeps its 0.3.0 config."""
    nads = tmp_path / "mp-nads"
    nads.mkdir()
    (nads / "macvlan.yaml").write_text(SEED_NAD)
    source = LocalSource(str(nads), str(tmp_path / "mp-pods"), {}, {})
    for namespace in ("test", "default", "mp-other"):
        nad = source.nad(namespace, "macvlan-conf")
        net = nad_config(nad, str(tmp_path))
        assert (net.name, net.cni_version, net.is_list) == ("macvlan-conf", "0.3.0", False)
        obj = json.loads(net.raw)
        assert (obj["type"], obj["master"], obj["mode"]) == ("macvlan", "ens33", "bridge")
        assert obj["ipam"]["routes"] == [{"dst": "0.0.0.0/0"}]


def test_seed_nad_yields_the_legacy_host_local_form(tmp_path: Path) -> None:
    """The seed's ipam (subnet/rangeStart/rangeEnd/gateway at the top, a route without gw) loads as one host-local range."""
    nads = tmp_path / "mp-nads"
    nads.mkdir()
    (nads / "macvlan.yaml").write_text(SEED_NAD)
    net = nad_config(LocalSource(str(nads), "", {}, {}).nad("test", "macvlan-conf"), str(tmp_path))
    ipam = ipam_config.load(json.loads(net.raw), net.name, net.cni_version, "")
    assert len(ipam.ranges) == 1 and len(ipam.ranges[0]) == 1
    rng = ipam.ranges[0][0]
    a = ipaddress.ip_address
    assert (rng.range_start, rng.range_end, rng.gateway) == (
        a("192.168.174.200"),
        a("192.168.174.216"),
        a("192.168.174.2"),
    )
    assert (str(rng.subnet_ip), rng.prefix) == ("192.168.174.0", 24)
    assert [(str(r.dst), r.gw) for r in ipam.routes] == [("0.0.0.0/0", None)]


def test_seed_nad_selected_by_annotation_becomes_net1(tmp_path: Path, conf_dir: Path) -> None:
    """The seed flow: `networks: macvlan-conf` on a pod in any namespace gives eth0 (cluster) and net1 (macvlan)."""
    nads = tmp_path / "mp-nads"
    nads.mkdir()
    (nads / "macvlan.yaml").write_text(SEED_NAD)
    cluster = write_conf(conf_dir, "10-cluster.conf", CLUSTER)
    source = LocalSource(str(nads), str(tmp_path / "mp-pods"), {}, {})
    out = plan(meta(conf_dir, clusterNetwork=str(cluster)), source, networks("macvlan-conf", "mp-app"), "eth0")
    assert summary(out) == [
        ("mp-cluster", "mp-cluster", "eth0", True),
        ("mp-app/macvlan-conf", "macvlan-conf", "net1", False),
    ]


def test_local_nad_with_a_namespace_serves_only_that_namespace(tmp_path: Path) -> None:
    """A manifest with metadata.namespace is not found from another namespace (NotFound naming the dir)."""
    world = LocalWorld(tmp_path)
    world.add_nad("ns-a", "net1", {"type": "x"})
    source = world.source()
    assert source.nad("ns-a", "net1")["metadata"]["namespace"] == "ns-a"
    with pytest.raises(NotFound) as info:
        source.nad("ns-b", "net1")
    assert info.value.msg == 'network-attachment-definitions.k8s.cni.cncf.io "ns-b/net1" not found'
    assert str(world.nad_dir) in info.value.details


def test_local_nads_from_multi_document_yaml_and_json(tmp_path: Path) -> None:
    """Multi-document YAML and .json manifests are read; documents of other kinds and other suffixes are ignored."""
    nads = tmp_path / "mp-nads"
    nads.mkdir()
    (nads / "a.yaml").write_text(
        textwrap.dedent(
            """\
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: net1}
            ---
            apiVersion: k8s.cni.cncf.io/v1
            kind: NetworkAttachmentDefinition
            metadata: {name: net1}
            spec: {config: '{"type":"from-yaml"}'}
            """
        )
    )
    (nads / "b.json").write_text(
        json.dumps(
            {
                "kind": "NetworkAttachmentDefinition",
                "metadata": {"name": "net2"},
                "spec": {"config": '{"type":"from-json"}'},
            }
        )
    )
    (nads / "c.txt").write_text(json.dumps({"kind": "NetworkAttachmentDefinition", "metadata": {"name": "net3"}}))
    source = LocalSource(str(nads), "", {}, {})
    assert source.nad("test", "net1")["spec"]["config"] == '{"type":"from-yaml"}'
    assert source.nad("test", "net2")["spec"]["config"] == '{"type":"from-json"}'
    with pytest.raises(NotFound):
        source.nad("test", "net3")


def test_local_broken_manifest_is_an_error_naming_it(tmp_path: Path) -> None:
    """An unparseable manifest in the NAD directory is code 7 naming the file."""
    nads = tmp_path / "mp-nads"
    nads.mkdir()
    (nads / "bad.yaml").write_text("kind: [unclosed\n")
    with pytest.raises(InvalidConfig) as info:
        LocalSource(str(nads), "", {}, {}).nad("test", "net1")
    assert str(nads / "bad.yaml") in info.value.msg


def test_local_pod_annotations_from_manifest_runtime_and_cni_args(tmp_path: Path) -> None:
    """Pod annotations come from the pod manifest, then the runtime's pod-annotations, then CNI_ARGS; later ones win."""
    pods = tmp_path / "mp-pods" / "test"
    pods.mkdir(parents=True)
    (pods / "mp-pod.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": "mp-pod",
                    "annotations": {
                        NETWORKS_ANNOTATION: "from-file",
                        "mp/other": "kept",
                        DEFAULT_NETWORK_ANNOTATION: "dn-file",
                    },
                },
            }
        )
    )
    runtime = {NETWORKS_ANNOTATION: "from-runtime", "mp/runtime": "r"}
    source = LocalSource("", str(tmp_path / "mp-pods"), {}, runtime)
    annotations = source.pod("test", "mp-pod")["metadata"]["annotations"]
    assert annotations[NETWORKS_ANNOTATION] == "from-runtime"
    assert (annotations["mp/other"], annotations["mp/runtime"], annotations[DEFAULT_NETWORK_ANNOTATION]) == (
        "kept",
        "r",
        "dn-file",
    )
    args = {"MULTIPLANE_NETWORKS": "from-args", "MULTIPLANE_DEFAULT_NETWORK": "dn-args"}
    annotations = LocalSource("", str(tmp_path / "mp-pods"), args, runtime).pod("test", "mp-pod")["metadata"][
        "annotations"
    ]
    assert (annotations[NETWORKS_ANNOTATION], annotations[DEFAULT_NETWORK_ANNOTATION]) == ("from-args", "dn-args")


def test_local_pod_without_manifest_is_an_empty_pod(tmp_path: Path) -> None:
    """A pod with no manifest is not an error: it has no annotations (unless CNI_ARGS select networks)."""
    source = LocalSource("", str(tmp_path), {}, {})
    assert source.pod("test", "mp-none") == {"metadata": {"name": "mp-none", "namespace": "test", "annotations": {}}}


def test_local_broken_pod_manifest_is_an_error(tmp_path: Path) -> None:
    """An unparseable pod manifest is code 7 naming the file."""
    pods = tmp_path / "test"
    pods.mkdir()
    (pods / "mp-pod.json").write_text("{broken")
    with pytest.raises(InvalidConfig) as info:
        LocalSource("", str(tmp_path), {}, {}).pod("test", "mp-pod")
    assert str(pods / "mp-pod.json") in info.value.msg


def test_kube_source_reads_pods_and_nads_over_http(tmp_path: Path) -> None:
    """KubeSource returns the API server's Pod and NAD objects, and a missing NAD is NotFound naming it."""
    with K8sServer() as api:
        api.add_pod("test", "mp-pod", annotations={NETWORKS_ANNOTATION: "net1"}, uid="mp-uid-1")
        api.add_nad("test", "net1", {"type": "x"})
        source = KubeSource(KubeClient(load_kubeconfig(api.kubeconfig(tmp_path / "mp-kc"))))
        got = source.pod("test", "mp-pod")
        assert got["metadata"]["uid"] == "mp-uid-1"
        assert got["metadata"]["annotations"] == {NETWORKS_ANNOTATION: "net1"}
        assert nad_config(source.nad("test", "net1"), str(tmp_path)).name == "net1"
        with pytest.raises(NotFound) as info:
            source.nad("test", "net2")
        assert info.value.msg == 'network-attachment-definitions.k8s.cni.cncf.io "test/net2" not found'


def test_network_config_parse_rejects_non_objects() -> None:
    """A delegate config that is a JSON list is refused with the place named."""
    with pytest.raises(InvalidConfig, match="mp-where: a CNI configuration must be a JSON object"):
        NetworkConfig.parse(b"[]", "mp-where")


def test_network_config_without_cni_version_is_0_1_0() -> None:
    """A config without cniVersion is treated as 0.1.0, as a plugin would read it."""
    assert NetworkConfig.parse(b'{"name":"n","type":"x"}', "w").cni_version == "0.1.0"
