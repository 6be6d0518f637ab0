"""Checking how pods select networks: a pod's (or template's) annotations, each value in text or JSON form.

The selections found are remembered (`Chosen`) for crosscheck.py to hold against the NADs.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from multiplane.k8s.names import is_label, is_subdomain
from multiplane.plugins.meta import selection as sel
from multiplane.spec.gojson import json_type, parse_mac
from multiplane.tools.validate.schemas import SELECTIONS, Pod
from multiplane.tools.validate.views import Chosen, PodView

if TYPE_CHECKING:
    from multiplane.tools.validate.documents import Loc, Where
    from multiplane.tools.validate.report import Run
    from multiplane.tools.validate.schemas import NetworkSelection

__all__ = ["check_default_network", "check_pod", "check_selection"]


def check_pod(run: Run, where: Where, root: Loc, pod: Any, namespace: str) -> None:
    """A pod's networks and default-network annotations; its selections are remembered in `run.pods`."""
    try:
        Pod.model_validate(pod)
    except ValidationError as exc:
        run.pydantic(where, root, exc, pod)
        return
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    namespace = namespace or run.namespace
    base = (*root, "metadata", "annotations")
    chosen = check_selection(
        run, where, (*base, sel.NETWORKS_ANNOTATION), annotations.get(sel.NETWORKS_ANNOTATION, ""), namespace
    )
    default = annotations.get(sel.DEFAULT_NETWORK_ANNOTATION, "")
    if default:
        check_default_network(run, where, (*base, sel.DEFAULT_NETWORK_ANNOTATION), default, namespace)
    if chosen is not None:
        run.pods.append(PodView(where, root, namespace, chosen))


def check_default_network(run: Run, where: Where, loc: Loc, value: str, pod_namespace: str) -> None:
    """A v1.multus-cni.io/default-network value: exactly one network, allowed by namespace isolation."""
    found = check_selection(run, where, loc, value, run.meta.namespace)
    if found is None:
        return
    if len(found) != 1:
        run.error(where, loc, f"must name exactly one network, names {len(found)}")
        return
    target = found[0].namespace
    if run.meta.isolation and target not in (pod_namespace, run.meta.namespace, *run.meta.global_namespaces):
        run.error(where, loc, f"namespace isolation: a pod in {pod_namespace} may not use a network in {target}")


def check_selection(run: Run, where: Where, loc: Loc, value: Any, namespace: str) -> list[Chosen] | None:
    """The networks annotation value (text or JSON form); None when it is refused."""
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        return []
    if any(ch in text for ch in '[{"'):
        return _selection_json(run, where, loc, text, namespace)
    return _selection_text(run, where, loc, text, namespace)


def _selection_json(run: Run, where: Where, loc: Loc, text: str, namespace: str) -> list[Chosen] | None:
    try:
        data = json.loads(text)
    except RecursionError:
        run.error(where, loc, "the selection annotation is nested too deeply")
        return None
    except ValueError as exc:
        run.error(where, loc, f"invalid JSON: {exc}")
        return None
    if not isinstance(data, list):
        run.error(where, loc, f"the JSON form must be a list of selections, got {json_type(data)}")
        return None
    try:
        items = SELECTIONS.validate_python(data)
    except ValidationError as exc:
        run.pydantic(where, loc, exc, data)
        return None
    return [_chosen((*loc, index), item, namespace) for index, item in enumerate(items)]


def _chosen(loc: Loc, item: NetworkSelection, namespace: str) -> Chosen:
    """A selection of the JSON form, with the capability values the plan gives its plugins."""
    interface = item.interface or item.interfaceRequest or ""
    mac = parse_mac(item.mac) if item.mac else ""
    chosen = Chosen(loc, item.name, item.namespace or namespace, interface, list(item.ips or []), mac)
    for key, value in (
        ("ips", chosen.ips),
        ("mac", mac),
        ("infinibandGUID", item.infiniband_guid),
        ("portMappings", item.portMappings),
        ("bandwidth", item.bandwidth),
        ("deviceID", item.deviceID),
    ):
        if value or (key in ("portMappings", "bandwidth") and value is not None):
            chosen.caps[key] = value
    chosen.cni_args = item.cni_args
    return chosen


def _selection_text(run: Run, where: Where, loc: Loc, text: str, namespace: str) -> list[Chosen] | None:
    out: list[Chosen] = []
    failed = False
    for index, raw in enumerate(text.split(",")):
        item = raw.strip()
        if not item:
            continue
        item_loc = (*loc, index)
        problem = _text_item_problem(item)
        if problem:
            run.error(where, item_loc, problem)
            failed = True
            continue
        ns, _, rest = item.rpartition("/")
        name, _, interface = rest.partition("@")
        out.append(Chosen(item_loc, name, ns or namespace, interface, [], ""))
    return None if failed else out


def _text_item_problem(item: str) -> str:
    """Why one item of the text form is refused ("" when it is fine), in selection.parse's order."""
    if item.count("/") > 1:
        return f"invalid network {item!r}: more than one '/'"
    if item.count("@") > 1:
        return f"invalid network {item!r}: more than one '@'"
    namespace, name = "", item
    if "/" in item:
        namespace, name = item.split("/")
        if namespace and not is_label(namespace):
            return f"namespace {namespace!r} in {item!r} is not a valid DNS-1123 label"
    if "@" in name:
        name, ifname = name.split("@")
        if len(ifname) > 15:
            return f"interface name too long: {ifname!r} in {item!r} (at most 15 characters)"
        if any(ch.isspace() or ch == "/" for ch in ifname):
            return f"interface name {ifname!r} in {item!r} contains whitespace or '/'"
    if not is_subdomain(name):
        return f"network name {name!r} in {item!r} is not a valid DNS-1123 subdomain"
    return ""
