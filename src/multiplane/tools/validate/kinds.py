"""What a document is (the first rule that matches), and the check it gets.

1. a mapping with a string `kind`: a Kubernetes object. `NetworkAttachmentDefinition`: its
   `spec.config` is a CNI configuration, checked as the meta-plugin will run it. `Pod`: its
   `k8s.v1.cni.cncf.io/networks` and `v1.multus-cni.io/default-network` annotations. A pod
   template's annotations in Deployment, StatefulSet, DaemonSet, ReplicaSet, Job,
   ReplicationController, DeploymentConfig (spec.template) and CronJob
   (spec.jobTemplate.spec.template). `List` (or any `…List`): each of its `items`. Another
   kind of the k8s.cni.cncf.io group is an error; any other kind is skipped.
2. a mapping whose `type` is `multiplane`: the meta-plugin's own configuration.
3. a mapping with `type` or `plugins`: a CNI configuration (one plugin, or a conflist).
4. anything else is an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from multiplane.spec.gojson import field, json_type
from multiplane.tools.validate.documents import metadata_names
from multiplane.tools.validate.meta import check_meta
from multiplane.tools.validate.nad import check_nad
from multiplane.tools.validate.networks import check_network
from multiplane.tools.validate.selections import check_pod

if TYPE_CHECKING:
    from multiplane.tools.validate.documents import Loc, Where
    from multiplane.tools.validate.report import Run

__all__ = ["NAD_KIND", "POD_TEMPLATE_KINDS", "check_document"]

NAD_KIND = "NetworkAttachmentDefinition"
POD_TEMPLATE_KINDS = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "DeploymentConfig": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


def check_document(run: Run, where: Where, root: Loc, data: Any) -> None:
    """Tell what `data` is and check it as that; an error when it is none of them."""
    if not isinstance(data, dict):
        run.error(where, root, f"expected an object (a NAD, a Pod, a CNI configuration), got {json_type(data)}")
        return
    kind = data.get("kind")
    if isinstance(kind, str) and kind:
        _check_kubernetes(run, where, root, data, kind)
    elif field(data, "type") == "multiplane":
        run.note(where, root, "multiplane config", str(field(data, "name") or ""))
        check_meta(run, where, root, data)
    elif field(data, "type") or field(data, "plugins") is not None:
        run.note(where, root, "CNI config", str(field(data, "name") or ""))
        check_network(run, where, root, data)
    else:
        run.error(
            where,
            root,
            "cannot tell what this is: a Kubernetes object needs `kind`, a CNI configuration `type` or `plugins`",
        )


def _check_kubernetes(run: Run, where: Where, root: Loc, data: dict[str, Any], kind: str) -> None:
    name, namespace = metadata_names(data)
    label = f"{namespace}/{name}" if namespace else name
    if kind == NAD_KIND:
        run.note(where, root, kind, label)
        check_nad(run, where, root, data)
    elif kind == "Pod":
        run.note(where, root, kind, label)
        check_pod(run, where, root, data, namespace)
    elif kind in POD_TEMPLATE_KINDS:
        path = POD_TEMPLATE_KINDS[kind]
        template = _below(data, path)
        if template is None:
            return
        run.note(where, root + path, f"{kind} pod template", label)
        check_pod(run, where, root + path, template, namespace)
    elif kind.endswith("List") and isinstance(data.get("items"), list):
        for index, item in enumerate(data["items"]):
            check_document(run, where, (*root, "items", index), item)
    elif str(data.get("apiVersion", "")).startswith("k8s.cni.cncf.io/"):
        run.error(where, (*root, "kind"), f"unknown kind {kind!r} in k8s.cni.cncf.io (expected {NAD_KIND})")


def _below(data: Any, path: tuple[str, ...]) -> Any:
    """The value at `path` (None where a step is missing or not an object)."""
    node = data
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node
