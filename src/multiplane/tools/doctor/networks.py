"""The networks this node's pods use (`networks.pods`, `networks.pod.*`, `networks.nad.*`), for the later checks.

With the API: the pods on this node and the NADs their annotations select; without it: every local NAD file.
"""

from __future__ import annotations

from multiplane.errors import CniError
from multiplane.tools.doctor import lookup
from multiplane.tools.doctor.configs import check_default_networks
from multiplane.tools.doctor.model import FAIL, OK, WARNING, Network, listing

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from multiplane.k8s.client import KubeClient
    from multiplane.plugins.meta.networks import NetworkConfig
    from multiplane.plugins.meta.selection import Selection
    from multiplane.tools.doctor.node import Doctor

__all__ = ["collect_networks"]


def collect_networks(doctor: Doctor) -> None:
    """Into `doctor.networks`: the defaultNetworks, then the NADs of this node's pods (or every local NAD)."""
    if doctor.meta is None:
        return
    check_default_networks(doctor)
    if doctor.client is not None:
        _pod_networks(doctor, doctor.client)
    elif doctor.api == "down":
        doctor.add(
            "networks.pods",
            WARNING,
            f"not checked: the API is unreachable, so the pods on node {doctor.node} are unknown",
            "see the API check",
        )
    else:
        _local_networks(doctor)


def _local_networks(doctor: Doctor) -> None:
    """No kubeconfig: every NAD in localNADDir may be selected by a pod."""
    from multiplane.plugins.meta.networks import load_nad_manifests, nad_config

    conf = doctor.conf
    nad_dir = conf.local_nad_dir
    nads = list(load_nad_manifests(doctor.real(nad_dir)))
    doctor.add("networks.pods", OK, f"no kubeconfig: checking every NAD in {nad_dir} ({len(nads)})")
    for doc in nads:
        name = str((doc.get("metadata") or {}).get("name") or "?")
        try:
            net = nad_config(doc, doctor.real(conf.conf_dir))
        except CniError as exc:
            doctor.add(
                f"networks.nad.{name}",
                FAIL,
                f"local NAD {name} is not usable: {exc}: pods selecting it fail",
                f"fix its manifest in {nad_dir}",
            )
            continue
        doctor.networks.append(Network(f"NAD {name}", net))


def _pod_networks(doctor: Doctor, client: KubeClient) -> None:
    """The pods on this node (fieldSelector=spec.nodeName), and each NAD they select."""
    pods = _list_pods(doctor, client)
    if pods is None:
        return
    users, by_default_annotation = _selections(doctor, pods)
    nads = [f"{ns}/{name}" for ns, name in sorted(users)]
    doctor.add(
        "networks.pods",
        OK,
        f"{len(pods)} pod{'' if len(pods) == 1 else 's'} on node {doctor.node}; "
        f"the NADs they select: {listing(nads, 5) if nads else 'none'}",
    )
    for (ns, name), who in sorted(users.items()):
        _pod_nad(doctor, ns, name, who, (ns, name) in by_default_annotation)


def _list_pods(doctor: Doctor, client: KubeClient) -> list[Any] | None:
    """The pods the API lists on this node; None, and a warning, if it does not answer."""
    import urllib.parse

    from multiplane.k8s.errors import ApiError

    query = urllib.parse.urlencode({"fieldSelector": f"spec.nodeName={doctor.node}"})
    try:
        data = client.request("GET", f"/api/v1/pods?{query}", f"pods on node {doctor.node}")
    except ApiError as exc:
        action = (
            "grant `list` on pods to the plugin's service account (packaging/k8s/rbac.yaml), "
            "or run doctor with --kubeconfig of a user who may list pods"
            if exc.status == 403
            else "see the API check"
        )
        doctor.add("networks.pods", WARNING, f"cannot list the pods on node {doctor.node}: {exc}", action)
        return None
    pods = data.get("items") if isinstance(data, dict) else None
    return pods if isinstance(pods, list) else []


def _selections(doctor: Doctor, pods: list[Any]) -> tuple[dict[tuple[str, str], list[str]], set[tuple[str, str]]]:
    """({(namespace, name) of a selected network: the pods selecting it}, the ones a default-network annotation names)."""
    users: dict[tuple[str, str], list[str]] = {}
    by_default_annotation: set[tuple[str, str]] = set()
    for pod in pods:
        meta = pod.get("metadata") if isinstance(pod, dict) else None
        if not isinstance(meta, dict):
            continue
        ns, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "?")
        annotations = meta.get("annotations")
        if not isinstance(annotations, dict):
            annotations = {}
        chosen, default = _pod_selections(doctor, ns, name, annotations)
        for item in chosen + default:
            users.setdefault((item.namespace, item.name), []).append(f"{ns}/{name}")
        for item in default:
            by_default_annotation.add((item.namespace, item.name))
    return users, by_default_annotation


def _pod_selections(
    doctor: Doctor, ns: str, name: str, annotations: dict[str, Any]
) -> tuple[list[Selection], list[Selection]]:
    """(networks, default network) of one pod's annotations, parsed as the plugin parses them."""
    from multiplane.plugins.meta import selection

    chosen: list[Selection] = []
    default: list[Selection] = []
    try:
        chosen = selection.parse(str(annotations.get(selection.NETWORKS_ANNOTATION) or ""), ns)
        value = str(annotations.get(selection.DEFAULT_NETWORK_ANNOTATION) or "")
        default = selection.parse(value, doctor.conf.namespace)
    except CniError as exc:
        doctor.add(
            f"networks.pod.{ns}/{name}",
            WARNING,
            f"pod {ns}/{name} has an annotation the plugin refuses: {exc}",
            "fix the pod's annotation (`multiplane validate` checks one)",
        )
    return chosen, default


def _pod_nad(doctor: Doctor, ns: str, name: str, who: list[str], may_be_file: bool) -> None:
    """One network pods select; `may_be_file`: named by the default-network annotation, which may name a CNI file."""
    check_id = f"networks.nad.{ns}/{name}"
    used_by = f"used by {listing(who)}"
    try:
        net = _selected_config(doctor, ns, name, may_be_file)
    except CniError as exc:
        doctor.add(
            check_id,
            WARNING,
            f"NAD {ns}/{name} ({used_by}) is not usable: {exc}",
            "fix the NAD (`multiplane validate` checks one)",
        )
        return
    if net is None:
        doctor.add(
            check_id,
            WARNING,
            f"NAD {ns}/{name} ({used_by}) does not exist: those pods cannot be created again",
            f"create the NAD {ns}/{name} or change the pods' annotations",
        )
        return
    doctor.networks.append(Network(f"NAD {ns}/{name}", net, who))


def _selected_config(doctor: Doctor, ns: str, name: str, may_be_file: bool) -> NetworkConfig | None:
    """The config of a selected network: its NAD's, else (`may_be_file`) the CNI file so named; None: neither."""
    from multiplane.plugins.meta.networks import conf_by_name, nad_config

    conf_dir = doctor.real(doctor.conf.conf_dir)
    nad = lookup.nad(doctor, ns, name)
    if nad is not None:
        return nad_config(nad, conf_dir)
    if may_be_file:
        return conf_by_name(conf_dir, name)
    return None
