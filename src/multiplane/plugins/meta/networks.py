"""Where delegate networks come from: NetworkAttachmentDefinitions, CNI files, and the pod.

Two sources with one interface:
* `KubeSource`: the Kubernetes API (kubeconfig or in-cluster service account);
* `LocalSource`: no cluster. NADs are YAML/JSON manifests in `localNADDir` (a manifest
  without a namespace serves every namespace, so the seed's `macvlan.yaml` works as is);
  the pod's annotations come from `<localPodDir>/<namespace>/<name>.yaml|json` (a Pod
  manifest), the runtime (`runtimeConfig["io.kubernetes.cri.pod-annotations"]`, which
  containerd sends when the capability is declared) and `CNI_ARGS`
  (`MULTIPLANE_NETWORKS=<selection>`, `MULTIPLANE_DEFAULT_NETWORK=<name>`), later ones winning.

`resolve_network` turns a clusterNetwork/defaultNetworks value into a delegate config the
way Multus does; `nad_config` turns a NAD into one (empty `spec.config` → the file of that
name in `confDir`; a config without `name` gets the NAD's name).
"""

from __future__ import annotations

import json
import os

from multiplane.errors import InvalidConfig
from multiplane.spec.gojson import field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from multiplane.k8s.client import KubeClient

__all__ = [
    "KubeSource",
    "LocalSource",
    "NetworkConfig",
    "annotations_of",
    "conf_files",
    "load_file",
    "load_nad_manifests",
    "nad_config",
    "resolve_network",
]

_CONF_SUFFIXES = (".conf", ".json", ".conflist")


class NetworkConfig:
    """A delegate's CNI configuration: a single plugin (`plugins` None) or a conflist."""

    __slots__ = ("raw", "obj", "name", "cni_version", "plugins", "is_list")

    def __init__(self, raw: bytes, obj: dict[str, Any], where: str) -> None:
        self.raw, self.obj = raw, obj
        self.name = field(obj, "name") or ""
        self.cni_version = field(obj, "cniVersion") or "0.1.0"
        plugins = field(obj, "plugins")
        if field(obj, "type"):
            self.is_list, self.plugins = False, [obj]
        elif isinstance(plugins, list) and plugins and isinstance(plugins[0], dict) and field(plugins[0], "type"):
            self.is_list, self.plugins = True, [p for p in plugins if isinstance(p, dict)]
        else:
            raise InvalidConfig(f"{where}: delegate must have the 'type' or 'plugins' field")
        for plugin in self.plugins:
            ptype = field(plugin, "type")
            if not isinstance(ptype, str) or not ptype or not ptype.isprintable() or any(c in ptype for c in "/\\"):
                raise InvalidConfig(f"{where}: invalid plugin type {ptype!r}")

    @classmethod
    def parse(cls, raw: bytes, where: str, default_name: str = "") -> NetworkConfig:
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            raise InvalidConfig(f"{where}: error parsing configuration: {exc}") from exc
        if not isinstance(obj, dict):
            raise InvalidConfig(f"{where}: a CNI configuration must be a JSON object")
        if default_name and not field(obj, "name"):
            obj["name"] = default_name
            raw = json.dumps(obj).encode()
        return cls(raw, obj, where)


def conf_files(directory: str) -> list[str]:
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise InvalidConfig(f"cannot read {directory}: {exc.strerror}") from exc
    return [os.path.join(directory, n) for n in names if n.endswith(_CONF_SUFFIXES)]


def load_file(path: str) -> NetworkConfig:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise InvalidConfig(f"error loading CNI config file {path}: {exc.strerror}") from exc
    return NetworkConfig.parse(raw, f"error loading CNI config file {path}")


def conf_by_name(conf_dir: str, name: str) -> NetworkConfig | None:
    """The first .conf/.json/.conflist in `conf_dir` (lexical order) whose `name` is `name`."""
    for path in conf_files(conf_dir):
        net = load_file(path)
        if net.name == name:
            return net
    return None


def nad_config(nad: dict[str, Any], conf_dir: str) -> NetworkConfig:
    """A NAD's delegate config; InvalidConfig naming the NAD for any shape that is not a NAD's."""
    meta = nad.get("metadata") or {}
    if not isinstance(meta, dict):
        raise InvalidConfig("network-attachment-definition: metadata must be an object")
    name, namespace = meta.get("name", ""), meta.get("namespace", "")
    where = (
        f'network-attachment-definition "{namespace}/{name}"'
        if namespace
        else f'network-attachment-definition "{name}"'
    )
    spec = nad.get("spec") or {}
    if not isinstance(spec, dict):
        raise InvalidConfig(f"{where}: spec must be an object")
    config = spec.get("config") or ""
    if not isinstance(config, str):
        raise InvalidConfig(f"{where}: spec.config must be a string holding CNI JSON")
    if not config.strip():
        found = conf_by_name(conf_dir, name)
        if found is None:
            raise InvalidConfig(f"{where} has no spec.config and no CNI file named {name!r} is in {conf_dir}")
        return found
    return NetworkConfig.parse(config.encode(), where, default_name=name)


class KubeSource:
    """Pods and NADs read live from the API server, network-status written to it (one request each).

    The node daemon's CachedSource (multiplane.daemon.caches) serves the same interface from its
    watch caches, falling back to these live reads.
    """

    kind = "kubernetes"

    def __init__(self, client: KubeClient) -> None:
        self.client = client

    def pod(self, namespace: str, name: str, uid: str = "") -> dict[str, Any] | None:
        """The pod as the API server has it now; `uid` (the runtime's K8S_POD_UID) is not used by a live read."""
        return self.client.get_pod(namespace, name)

    def nad(self, namespace: str, name: str) -> dict[str, Any]:
        return self.client.get_nad(namespace, name)

    def write_status(self, namespace: str, name: str, uid: str, value: str) -> str:
        from multiplane.plugins.meta.selection import NETWORK_STATUS_ANNOTATION

        self.client.set_pod_annotation(namespace, name, NETWORK_STATUS_ANNOTATION, value, uid)
        return f'pods "{namespace}/{name}"'


def annotations_of(obj: Any, where: str) -> dict[str, str]:
    """A Pod object's annotations, checked: InvalidConfig naming `where` if the shape is not a Pod's."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise InvalidConfig(f"{where}: metadata must be an object")
    annotations = meta.get("annotations")
    if annotations is None:
        return {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise InvalidConfig(f"{where}: metadata.annotations must map strings to strings")
    return dict(annotations)


def _load_manifests(path: str) -> list[Any]:
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    if path.endswith(".json"):
        return [json.loads(text)]
    import yaml

    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def load_nad_manifests(nad_dir: str, strict: bool = False) -> Iterator[dict[str, Any]]:
    """Every NetworkAttachmentDefinition in the manifests of `nad_dir` (.yaml/.yml/.json, lexical order).

    `strict`: a manifest that cannot be parsed is an InvalidConfig naming it; otherwise skipped.
    """
    try:
        files = sorted(os.listdir(nad_dir)) if nad_dir else []
    except OSError:
        files = []
    for entry in files:
        if not entry.endswith((".yaml", ".yml", ".json")):
            continue
        path = os.path.join(nad_dir, entry)
        try:
            docs = _load_manifests(path)
        except Exception as exc:  # yaml raises many types; any parse error is a config error
            if strict:
                raise InvalidConfig(f"cannot read NetworkAttachmentDefinition manifest {path}: {exc}") from exc
            continue
        for doc in docs:
            if not isinstance(doc, dict) or doc.get("kind") != "NetworkAttachmentDefinition":
                continue
            if not isinstance(doc.get("metadata") or {}, dict):
                if strict:
                    raise InvalidConfig(f"NetworkAttachmentDefinition manifest {path}: metadata must be an object")
                continue
            yield doc


class LocalSource:
    """NADs and pod annotations from files and the call itself; no cluster needed."""

    kind = "local"

    def __init__(self, nad_dir: str, pod_dir: str, args: dict[str, str], runtime_annotations: dict[str, str]) -> None:
        self.nad_dir, self.pod_dir = nad_dir, pod_dir
        self.args, self.runtime_annotations = args, runtime_annotations

    def pod(self, namespace: str, name: str, uid: str = "") -> dict[str, Any] | None:
        """A pod object holding the annotations of the manifest, the runtime and CNI_ARGS; `uid` is not used."""
        from multiplane.plugins.meta.selection import DEFAULT_NETWORK_ANNOTATION, NETWORKS_ANNOTATION

        pod: dict[str, Any] = {"metadata": {"name": name, "namespace": namespace, "annotations": {}}}
        for ext in (".yaml", ".yml", ".json"):
            path = os.path.join(self.pod_dir, namespace, name + ext)
            if os.path.isfile(path):
                try:
                    docs = _load_manifests(path)
                except Exception as exc:  # any parse error is a config error here
                    raise InvalidConfig(f"cannot read pod manifest {path}: {exc}") from exc
                if docs:
                    pod["metadata"]["annotations"].update(annotations_of(docs[0], f"pod manifest {path}"))
                break
        annotations = pod["metadata"]["annotations"]
        annotations.update(annotations_of({"metadata": {"annotations": self.runtime_annotations}}, "runtimeConfig"))
        if "MULTIPLANE_NETWORKS" in self.args:
            annotations[NETWORKS_ANNOTATION] = self.args["MULTIPLANE_NETWORKS"]
        if "MULTIPLANE_DEFAULT_NETWORK" in self.args:
            annotations[DEFAULT_NETWORK_ANNOTATION] = self.args["MULTIPLANE_DEFAULT_NETWORK"]
        return pod

    def nad(self, namespace: str, name: str) -> dict[str, Any]:
        for doc in load_nad_manifests(self.nad_dir, strict=True):
            meta = doc.get("metadata") or {}
            if meta.get("name") == name and meta.get("namespace", namespace) == namespace:
                return doc
        from multiplane.k8s.errors import NotFound

        raise NotFound(
            f'network-attachment-definitions.k8s.cni.cncf.io "{namespace}/{name}" not found',
            404,
            f"searched {self.nad_dir}",
        )

    def write_status(self, namespace: str, name: str, uid: str, value: str) -> str:
        return "log"


def resolve_network(value: str, namespace: str, source: Any, conf_dir: str) -> tuple[str, NetworkConfig]:
    """clusterNetwork/defaultNetworks value → (display name, config), in Multus's order."""
    if "/" not in value:
        from multiplane.k8s.errors import NotFound

        try:
            nad = source.nad(namespace, value)
        except NotFound:
            nad = None
        if nad is not None:
            return f"{namespace}/{value}", nad_config(nad, conf_dir)
        found = conf_by_name(conf_dir, value)
        if found is None:
            raise InvalidConfig(
                f'cannot find network "{value}": no NetworkAttachmentDefinition "{namespace}/{value}" '
                f"and no CNI file with that name in {conf_dir}"
            )
        return found.name or value, found
    if os.path.isdir(value):
        files = [p for p in conf_files(value) if not os.path.basename(p).startswith("00-multiplane")]
        if not files:
            raise InvalidConfig(f"no CNI configuration (.conf/.conflist) found in directory {value}")
        net = load_file(files[0])
        return net.name, net
    if os.path.isfile(value):
        net = load_file(value)
        return net.name, net
    raise InvalidConfig(f"cannot find network {value!r}: no such file or directory")
