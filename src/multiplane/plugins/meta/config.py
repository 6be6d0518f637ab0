"""The meta-plugin's own configuration (`00-multiplane.conf`), read like Multus reads `00-multus.conf`.

Keys match case-insensitively (Go's decoder); unknown keys are ignored. Either
`clusterNetwork` or a non-empty `delegates` is required (code 7 otherwise); `delegates` is
ignored when `clusterNetwork` is set. Every path setting (and a `clusterNetwork` or
`defaultNetworks` entry given as a path) must be absolute, without `..` and without NUL:
a relative path would resolve against whatever directory the runtime runs us in.
"""

from __future__ import annotations

from multiplane.errors import InvalidConfig
from multiplane.spec.gojson import field, json_type

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from multiplane.spec.netconf import NetConf

__all__ = ["MetaConf"]

_DEFAULTS = {
    "confDir": "/etc/cni/multiplane/net.d",
    "cniDir": "/var/lib/cni/multiplane",
    "binDir": "/opt/cni/bin",
    "localNADDir": "/etc/cni/multiplane/nads",
    "localPodDir": "/etc/cni/multiplane/pods",
}


def _get(raw: dict[str, Any], key: str, kind: type, what: str) -> Any:
    value = field(raw, key)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise InvalidConfig(f"invalid multiplane config: {key} must be {what}, got {json_type(value)}")
    return value


def _path(raw: dict[str, Any], key: str, default: str = "") -> str:
    """An absolute path setting (code 7 for a relative one, `..`, or a NUL byte)."""
    value = _get(raw, key, str, "a path") or default
    if value:
        check_path(value, key)
    return value


def check_path(value: str, key: str) -> None:
    if not value.startswith("/") or ".." in value.split("/") or "\0" in value:
        raise InvalidConfig(f"invalid multiplane config: {key} {value!r} must be an absolute path without '..'")


class MetaConf:
    """Parsed `00-multiplane.conf`. `delegates` holds the inline delegate objects when used."""

    __slots__ = (
        "cni_version",
        "name",
        "cluster_network",
        "default_networks",
        "delegates",
        "kubeconfig",
        "conf_dir",
        "cni_dir",
        "bin_dir",
        "system_namespaces",
        "namespace",
        "namespace_isolation",
        "global_namespaces",
        "readiness_file",
        "log_file",
        "log_level",
        "log_to_stderr",
        "capabilities",
        "local_nad_dir",
        "local_pod_dir",
        "runtime_config",
        "retry_delete_on_error",
    )

    def __init__(self, conf: NetConf) -> None:
        raw = conf.raw
        self.cni_version, self.name = conf.cni_version, conf.name
        self.cluster_network: str = _get(raw, "clusterNetwork", str, "a string") or ""
        self.default_networks: list[str] = _get(raw, "defaultNetworks", list, "a list of names") or []
        self.delegates: list[dict[str, Any]] = []
        if not self.cluster_network:
            self.delegates = _get(raw, "delegates", list, "a list of CNI configurations") or []
            for i, item in enumerate(self.delegates):
                plugins = field(item, "plugins") if isinstance(item, dict) else None
                first = plugins[0] if isinstance(plugins, list) and plugins else None
                if not isinstance(item, dict) or not (
                    field(item, "type") or (isinstance(first, dict) and field(first, "type"))
                ):
                    raise InvalidConfig(f"delegate {i} must have the 'type' or 'plugins' field")
            if not self.delegates:
                raise InvalidConfig("at least one delegate/clusterNetwork must be specified")
        if "/" in self.cluster_network:
            check_path(self.cluster_network, "clusterNetwork")
        for entry in self.default_networks:
            if not isinstance(entry, str):
                raise InvalidConfig(
                    f"invalid multiplane config: defaultNetworks entries must be strings, got {json_type(entry)}"
                )
            if "/" in entry:
                check_path(entry, "defaultNetworks")
        self.kubeconfig: str = _path(raw, "kubeconfig")
        self.conf_dir: str = _path(raw, "confDir", _DEFAULTS["confDir"])
        self.cni_dir: str = _path(raw, "cniDir", _DEFAULTS["cniDir"])
        self.bin_dir: str = _path(raw, "binDir", _DEFAULTS["binDir"])
        self.local_nad_dir: str = _path(raw, "localNADDir", _DEFAULTS["localNADDir"])
        self.local_pod_dir: str = _path(raw, "localPodDir", _DEFAULTS["localPodDir"])
        system = _get(raw, "systemNamespaces", list, "a list of namespaces")
        self.system_namespaces: list[str] = system if system is not None else ["kube-system"]
        self.namespace: str = (
            _get(raw, "multusNamespace", str, "a namespace")
            or _get(raw, "namespace", str, "a namespace")
            or "kube-system"
        )
        self.namespace_isolation: bool = bool(_get(raw, "namespaceIsolation", bool, "true or false"))
        globals_text = _get(raw, "globalNamespaces", str, "a comma-separated list") or ""
        self.global_namespaces = [n.strip() for n in globals_text.split(",") if n.strip()] or ["default"]
        self.readiness_file: str = _path(raw, "readinessindicatorfile")
        self.log_file: str = _path(raw, "logFile")
        self.log_level: str = (_get(raw, "logLevel", str, "a level") or "error").lower()
        to_stderr = _get(raw, "logToStderr", bool, "true or false")
        self.log_to_stderr: bool = True if to_stderr is None else to_stderr
        self.capabilities: dict[str, Any] = _get(raw, "capabilities", dict, "an object") or {}
        self.runtime_config: dict[str, Any] = _get(raw, "runtimeConfig", dict, "an object") or {}
        # Multus's key and default: a failed DEL drops the cache, so the runtime's retry is best effort.
        self.retry_delete_on_error: bool = bool(_get(raw, "retryDeleteOnError", bool, "true or false"))
