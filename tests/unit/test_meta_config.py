"""The meta-plugin's own configuration (multiplane.plugins.meta.config.MetaConf).

Scenario numbers are those of /work/shared/research/multus.md §10 (cases 29–37) and the
option table of §1.2.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from multiplane.errors import CniError, DecodingFailure, InvalidConfig
from multiplane.plugins.meta.config import MetaConf
from multiplane.spec.netconf import NetConf


def meta(**extra: Any) -> MetaConf:
    obj: dict[str, Any] = {"cniVersion": "1.0.0", "name": "mp-meta", "type": "multiplane"}
    obj.update(extra)
    return MetaConf(NetConf.parse(json.dumps(obj).encode()))


def invalid(**extra: Any) -> InvalidConfig:
    with pytest.raises(InvalidConfig) as info:
        meta(**extra)
    assert info.value.code == 7
    return info.value


# ---- required keys (cases 31–34) ------------------------------------------------------------------


def test_case31_no_delegates_and_no_cluster_network_is_code_7() -> None:
    """Case 31: without delegates or clusterNetwork the config is refused with Multus's text (code 7)."""
    assert invalid().msg == "at least one delegate/clusterNetwork must be specified"


def test_case31_kubeconfig_alone_is_not_enough() -> None:
    """Case 31: a kubeconfig does not stand in for the cluster network."""
    assert "at least one delegate/clusterNetwork" in invalid(kubeconfig="/etc/mp-none/kubeconfig").msg


def test_empty_delegates_list_is_refused() -> None:
    """`delegates: []` is the same as no delegates."""
    assert "at least one delegate/clusterNetwork" in invalid(delegates=[]).msg


def test_empty_cluster_network_string_counts_as_absent() -> None:
    """`clusterNetwork: ""` does not satisfy the requirement."""
    assert "at least one delegate/clusterNetwork" in invalid(clusterNetwork="").msg


@pytest.mark.parametrize("bad", [{"_not_type": "weave-net"}, {"name": "x", "plugins": []}, "weave-net", {"type": ""}])
def test_case32_delegate_without_type_or_plugins_is_an_error(bad: object) -> None:
    """Case 32: a delegate with neither `type` nor a non-empty `plugins` (or not an object) is refused, naming its index."""
    err = invalid(delegates=[{"type": "weave-net"}, bad])
    assert err.msg == "delegate 1 must have the 'type' or 'plugins' field"


def test_case32_conflist_delegate_whose_first_plugin_has_no_type_is_an_error() -> None:
    """Case 32 (§1.1): a `plugins` delegate is valid only if its first plugin has a `type`; otherwise the config is refused."""
    err = invalid(delegates=[{"name": "weave-list", "plugins": [{"_not_type": "weave"}]}])
    assert "'type' or 'plugins'" in err.msg


def test_case33_two_inline_delegates_are_kept_in_order() -> None:
    """Case 33: two inline delegates are both kept, in order, and no cluster network is set."""
    conf = meta(delegates=[{"type": "weave-net"}, {"type": "foobar"}])
    assert [d["type"] for d in conf.delegates] == ["weave-net", "foobar"]
    assert conf.cluster_network == ""


def test_case34_conflist_delegate_is_accepted() -> None:
    """Case 34: a delegate with `plugins` (a conflist) is accepted as written."""
    conf = meta(delegates=[{"name": "weave-list", "plugins": [{"type": "weave"}]}])
    assert conf.delegates == [{"name": "weave-list", "plugins": [{"type": "weave"}]}]


def test_delegates_are_ignored_when_cluster_network_is_set() -> None:
    """With clusterNetwork set, `delegates` is not even parsed (an invalid one does not matter)."""
    conf = meta(clusterNetwork="mp-cluster", delegates=[{"_not_type": 1}])
    assert conf.cluster_network == "mp-cluster"
    assert conf.delegates == []


def test_delegates_of_the_wrong_type_are_refused() -> None:
    """`delegates` that is not a list is a typed error naming the key."""
    assert invalid(delegates={"type": "x"}).msg == (
        "invalid multiplane config: delegates must be a list of CNI configurations, got object"
    )


# ---- namespaces (cases 29–30) ---------------------------------------------------------------------


def test_case29_isolation_without_global_namespaces_defaults_to_default() -> None:
    """Case 29: namespaceIsolation with no globalNamespaces allows just ["default"]."""
    conf = meta(clusterNetwork="c", namespaceIsolation=True)
    assert conf.namespace_isolation is True
    assert conf.global_namespaces == ["default"]


def test_case30_global_namespaces_are_split_and_trimmed() -> None:
    """Case 30: `" foo,bar ,default"` becomes ["foo", "bar", "default"]."""
    assert meta(clusterNetwork="c", globalNamespaces=" foo,bar ,default").global_namespaces == ["foo", "bar", "default"]


def test_global_namespaces_replace_the_default() -> None:
    """A set globalNamespaces replaces ["default"], so `default` must be listed again to stay global."""
    assert meta(clusterNetwork="c", globalNamespaces="kube-system,donkey-kong").global_namespaces == [
        "kube-system",
        "donkey-kong",
    ]


def test_namespace_isolation_is_off_by_default() -> None:
    """namespaceIsolation defaults to false."""
    assert meta(clusterNetwork="c").namespace_isolation is False


def test_namespace_isolation_must_be_a_bool() -> None:
    """A string "true" is not a bool (Go's decoder would refuse it too)."""
    assert (
        "namespaceIsolation must be true or false, got string"
        in invalid(clusterNetwork="c", namespaceIsolation="true").msg
    )


# ---- readiness, logging, runtimeConfig (cases 35–36) ------------------------------------------------


def test_case36_readiness_indicator_file_default_and_value() -> None:
    """Case 36: without readinessindicatorfile it is ""; a given path is kept."""
    assert meta(clusterNetwork="c").readiness_file == ""
    assert meta(clusterNetwork="c", readinessindicatorfile="/etc/cni/net.d/foo").readiness_file == "/etc/cni/net.d/foo"


def test_case35_runtime_config_and_log_settings_are_retained() -> None:
    """Case 35: runtimeConfig.portMappings (1 entry), logLevel and logFile are kept."""
    conf = meta(
        delegates=[{"type": "weave-net"}],
        runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
        logLevel="debug",
        logFile="/var/log/mp-multiplane.log",
        logOptions={"maxAge": 5, "maxSize": 100, "maxBackups": 5, "compress": True},
    )
    assert len(conf.runtime_config["portMappings"]) == 1
    assert conf.log_level == "debug"
    assert conf.log_file == "/var/log/mp-multiplane.log"


def test_logging_defaults() -> None:
    """Without log keys: level `error` (Multus: panic), no file, and stderr on."""
    conf = meta(clusterNetwork="c")
    assert (conf.log_level, conf.log_file, conf.log_to_stderr) == ("error", "", True)
    assert meta(clusterNetwork="c", logToStderr=False).log_to_stderr is False


def test_capabilities_are_kept() -> None:
    """The meta's own `capabilities` map is kept as written (the runtime reads it)."""
    caps = {"portMappings": True, "io.kubernetes.cri.pod-annotations": True}
    assert meta(clusterNetwork="c", capabilities=caps).capabilities == caps


# ---- case-insensitive keys (§1.1) -----------------------------------------------------------------


def test_keys_match_case_insensitively() -> None:
    """Go's decoder matches keys case-insensitively: ClusterNetwork, LogLevel, ReadinessIndicatorFile all work."""
    conf = meta(
        ClusterNetwork="mp-cluster",
        LogLevel="Verbose",
        ReadinessIndicatorFile="/run/mp-ready",
        CONFDIR="/etc/mp-conf",
        NamespaceIsolation=True,
        GlobalNamespaces="a, b",
        DefaultNetworks=["mp-extra"],
    )
    assert conf.cluster_network == "mp-cluster"
    assert conf.log_level == "verbose"
    assert conf.readiness_file == "/run/mp-ready"
    assert conf.conf_dir == "/etc/mp-conf"
    assert conf.namespace_isolation is True
    assert conf.global_namespaces == ["a", "b"]
    assert conf.default_networks == ["mp-extra"]


def test_unknown_keys_are_ignored() -> None:
    """Unknown keys (including the obsolete defaultnetworkfile) are ignored silently."""
    conf = meta(clusterNetwork="c", defaultnetworkfile="/x", defaultnetworkwaitseconds=3, somethingElse={"a": 1})
    assert conf.cluster_network == "c"


# ---- defaults and aliases (§1.2) ------------------------------------------------------------------


def test_path_and_namespace_defaults() -> None:
    """Defaults: confDir, cniDir, binDir, systemNamespaces ["kube-system"], namespace kube-system, no defaultNetworks."""
    conf = meta(clusterNetwork="c")
    assert conf.conf_dir == "/etc/cni/multiplane/net.d"
    assert conf.cni_dir == "/var/lib/cni/multiplane"
    assert conf.bin_dir == "/opt/cni/bin"
    assert conf.system_namespaces == ["kube-system"]
    assert conf.namespace == "kube-system"
    assert conf.default_networks == []
    assert conf.kubeconfig == ""


def test_paths_are_taken_as_given() -> None:
    """confDir, cniDir, binDir and kubeconfig are used as written."""
    conf = meta(clusterNetwork="c", confDir="/mp/conf", cniDir="/mp/cni", binDir="/mp/bin", kubeconfig="/mp/kc")
    assert (conf.conf_dir, conf.cni_dir, conf.bin_dir, conf.kubeconfig) == ("/mp/conf", "/mp/cni", "/mp/bin", "/mp/kc")


def test_system_namespaces_can_be_emptied() -> None:
    """An explicit `systemNamespaces: []` means no system namespaces (not the default)."""
    assert meta(clusterNetwork="c", systemNamespaces=[]).system_namespaces == []
    assert meta(clusterNetwork="c", systemNamespaces=["mp-sys"]).system_namespaces == ["mp-sys"]


def test_multus_namespace_and_its_namespace_alias() -> None:
    """`multusNamespace` sets the namespace of cluster/default networks; `namespace` is an alias; multusNamespace wins."""
    assert meta(clusterNetwork="c", multusNamespace="mp-a").namespace == "mp-a"
    assert meta(clusterNetwork="c", namespace="mp-b").namespace == "mp-b"
    assert meta(clusterNetwork="c", multusNamespace="mp-a", namespace="mp-b").namespace == "mp-a"


@pytest.mark.parametrize(
    ("key", "value", "text"),
    [
        ("clusterNetwork", 5, "clusterNetwork must be a string, got number"),
        ("defaultNetworks", "a,b", "defaultNetworks must be a list of names, got string"),
        ("systemNamespaces", "kube-system", "systemNamespaces must be a list of namespaces, got string"),
        ("globalNamespaces", ["a"], "globalNamespaces must be a comma-separated list, got array"),
        ("logToStderr", "yes", "logToStderr must be true or false, got string"),
        ("capabilities", [], "capabilities must be an object, got array"),
        ("cniDir", True, "cniDir must be a path, got bool"),
    ],
)
def test_keys_of_the_wrong_json_type_are_refused(key: str, value: object, text: str) -> None:
    """A key of the wrong JSON type is code 7 naming the key and the type found."""
    extra = {"clusterNetwork": "c", key: value}
    assert invalid(**extra).msg == f"invalid multiplane config: {text}"


# ---- bad JSON (case 37) ---------------------------------------------------------------------------


def test_case37_invalid_json_is_refused_before_the_config_is_read() -> None:
    """Case 37: a config with a missing brace fails to decode (code 6), so no MetaConf is ever built."""
    with pytest.raises(DecodingFailure) as info:
        MetaConf(NetConf.parse(b'{"cniVersion":"1.0.0","name":"mp-meta","type":"multiplane","clusterNetwork":"c"'))
    assert info.value.code == 6
    assert isinstance(info.value, CniError)


def test_version_and_name_come_from_the_request() -> None:
    """cniVersion and name are the request's own."""
    conf = meta(clusterNetwork="c", cniVersion="0.4.0", name="mp-other")
    assert (conf.cni_version, conf.name) == ("0.4.0", "mp-other")


# ---- path settings (issue 11 #7) --------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["cniDir", "confDir", "binDir", "logFile", "localNADDir", "localPodDir", "kubeconfig", "readinessindicatorfile"],
)
@pytest.mark.parametrize("value", ["mp-relative", "./mp-cache", "/var/lib/../../tmp/mp-x", "/var/lib/mp\u0000x"])
def test_path_settings_must_be_absolute_without_dotdot(key: str, value: str) -> None:
    """A relative path (it would resolve against the runtime's cwd), `..` or a NUL is refused with code 7, naming the key."""
    err = invalid(clusterNetwork="mp-cluster", **{key: value})
    assert key in err.msg
    assert "absolute path" in err.msg or "NUL" in err.msg


@pytest.mark.parametrize("key", ["clusterNetwork", "defaultNetworks"])
def test_network_paths_must_be_absolute(key: str) -> None:
    """A clusterNetwork or defaultNetworks entry given as a path must be absolute without `..`; a bare name is a name."""
    value = "mp-dir/../10-x.conf"
    extra: dict[str, Any] = {key: [value] if key == "defaultNetworks" else value}
    if key == "defaultNetworks":
        extra["clusterNetwork"] = "mp-cluster"
    assert key in invalid(**extra).msg
    assert meta(clusterNetwork="mp-cluster", defaultNetworks=["mp-name"]).default_networks == ["mp-name"]


def test_default_networks_entries_must_be_strings() -> None:
    """A non-string defaultNetworks entry is code 7, not a Python error later."""
    assert "defaultNetworks" in invalid(clusterNetwork="mp-cluster", defaultNetworks=[5]).msg


def test_absolute_paths_are_kept() -> None:
    """Absolute paths pass unchanged."""
    conf = meta(clusterNetwork="/etc/cni/net.d/10-x.conf", cniDir="/var/lib/mp-x", logFile="/var/log/mp.log")
    assert (conf.cluster_network, conf.cni_dir, conf.log_file) == (
        "/etc/cni/net.d/10-x.conf",
        "/var/lib/mp-x",
        "/var/log/mp.log",
    )


def test_retry_delete_on_error_defaults_to_false() -> None:
    """retryDeleteOnError is off unless set, as in Multus."""
    assert meta(clusterNetwork="x").retry_delete_on_error is False
    assert meta(clusterNetwork="x", retryDeleteOnError=True).retry_delete_on_error is True
