"""Fuzz the meta-plugin's pod annotations, with no cluster: from CNI_ARGS and from a pod manifest.

`k8s.v1.cni.cncf.io/networks` (text and JSON forms) and `v1.multus-cni.io/default-network`
reach the meta-plugin as `MULTIPLANE_NETWORKS=` / `MULTIPLANE_DEFAULT_NETWORK=` in
CNI_ARGS, as a Pod manifest (JSON or YAML) in `localPodDir`, or as the runtime's
`io.kubernetes.cri.pod-annotations`. The node's networks are host-local only (the cluster
network and two NADs; one NAD names a plugin that is not installed, one is not JSON), so
an ADD can succeed in a real, empty network namespace without making any link.

Beyond the harness's oracle, every case is followed by a DEL, as a runtime does after
any ADD: it must succeed (unless it is refused exactly like the call before it, for an
environment refused up front), and afterwards no reservation, no cache or status file and
no link but `lo` may remain.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import Node, fuzz_settings, leftovers, run_case_env
from tests.fuzz.harness import OracleFailure, fs_env
from tests.fuzz.strategies import HOSTILE_TEXT, HOSTILE_VALUE, ODD, dumps
from tests.topology import ip_json, scratch_netns

pytestmark = pytest.mark.root

NETWORKS = "k8s.v1.cni.cncf.io/networks"
DEFAULT = "v1.multus-cni.io/default-network"
NAMES = (*Node.NADS, Node.CLUSTER, "mp-fz-none", "MP-UPPER", "a" * 254)
NAMESPACES = (Node.NAMESPACE, "default", "kube-system", "", "-bad", "a" * 64)
IFNAMES = ("net1", "net2", "eth0", "eth1", "", "lo", "a" * 15, "a" * 16, "a b", "a/b", "net1\0")


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    """One empty pod namespace for the module (host-local delegates make no link in it)."""
    with scratch_netns("mp-fz", lo_up=True) as name:
        yield name


def text_item() -> st.SearchStrategy[str]:
    name = st.one_of(st.sampled_from(NAMES), HOSTILE_TEXT)
    namespace = st.one_of(st.none(), st.sampled_from(NAMESPACES), HOSTILE_TEXT)
    ifname = st.one_of(st.none(), st.sampled_from(IFNAMES), HOSTILE_TEXT)
    return st.builds(
        lambda ns, n, i: (f"{ns}/" if ns is not None else "") + n + (f"@{i}" if i is not None else ""),
        namespace,
        name,
        ifname,
    )


SELECTION_KEYS = {
    "name": st.one_of(st.sampled_from(NAMES), HOSTILE_VALUE),
    "namespace": st.one_of(st.sampled_from(NAMESPACES), HOSTILE_VALUE),
    "interface": st.one_of(st.sampled_from(IFNAMES), HOSTILE_VALUE),
    "interfaceRequest": st.one_of(st.sampled_from(IFNAMES), HOSTILE_VALUE),
    "ips": st.one_of(
        st.lists(st.sampled_from(("10.250.1.3", "10.250.1.3/29", "10.250.9.9", "fd00:fa::3", "x", "")), max_size=3),
        HOSTILE_VALUE,
    ),
    "mac": st.one_of(st.sampled_from(("0a:58:0a:01:02:03", "0A-58-0A-01-02-03", "zz", "")), HOSTILE_VALUE),
    "infiniband-guid": st.one_of(st.just("00:11:22:33:44:55:66:77"), HOSTILE_VALUE),
    "default-route": st.one_of(st.lists(st.sampled_from(("10.250.1.1", "fd00:fa::1", "x")), max_size=2), ODD),
    "portMappings": st.one_of(st.just([{"hostPort": 8080, "containerPort": 80}]), ODD),
    "bandwidth": st.one_of(st.just({"ingressRate": 1000}), ODD),
    "cni-args": st.one_of(st.just({"a": "b"}), st.dictionaries(HOSTILE_TEXT, ODD, max_size=3), ODD),
    "deviceID": st.one_of(st.just("0000:00:01.0"), HOSTILE_VALUE),
}


@st.composite
def json_selection(draw: st.DrawFn) -> Any:
    keys = draw(st.lists(st.sampled_from(sorted(SELECTION_KEYS)), max_size=5, unique=True))
    obj = {"name": draw(st.sampled_from(NAMES))} if draw(st.booleans()) else {}
    for key in keys:
        obj[key] = draw(SELECTION_KEYS[key])
    return obj


def networks_value() -> st.SearchStrategy[Any]:
    """The networks annotation: text form, JSON form (as text, possibly broken), or anything at all."""
    return st.one_of(
        st.lists(text_item(), max_size=4).map(",".join),
        st.lists(json_selection(), max_size=3).map(lambda items: dumps(items).decode()),
        st.lists(json_selection(), max_size=3).map(lambda items: dumps(items).decode()[:-1]),
        st.sampled_from(("", " ", ",", "[]", "{}", "null", '"x"', "[" * 3000, '[{"name":' * 500)),
        HOSTILE_TEXT,
    )


def default_value() -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(NAMES), text_item(), HOSTILE_TEXT)


@st.composite
def delivery(draw: st.DrawFn, node: Node) -> tuple[dict[str, Any], dict[str, Any]]:
    """Where the annotations come from; returns (extra CNI_* env, extra config keys), writing any manifest."""
    annotations: dict[str, Any] = {}
    if draw(st.booleans()):
        annotations[NETWORKS] = draw(networks_value())
    if draw(st.integers(0, 3)) == 0:
        annotations[DEFAULT] = draw(default_value())
    route = draw(st.sampled_from(("args", "args", "manifest", "manifest", "runtime")))
    args = f"IgnoreUnknown=1;K8S_POD_NAMESPACE={node.NAMESPACE};K8S_POD_NAME={node.POD}"
    env: dict[str, Any] = {"CNI_ARGS": args}
    conf: dict[str, Any] = {}
    if route == "args":
        for key, arg in ((NETWORKS, "MULTIPLANE_NETWORKS"), (DEFAULT, "MULTIPLANE_DEFAULT_NETWORK")):
            if key in annotations:
                value = annotations[key]
                env["CNI_ARGS"] += f";{arg}={value if isinstance(value, str) else json.dumps(value)}"
    elif route == "manifest":
        if draw(st.integers(0, 4)) == 0:
            annotations[draw(HOSTILE_TEXT)] = draw(HOSTILE_VALUE)  # odd extra annotations, odd value types
            if draw(st.booleans()) and annotations.get(NETWORKS) is not None:
                annotations[NETWORKS] = draw(ODD)
        form = draw(st.sampled_from(("json", "yaml", "broken")))
        if form == "json":
            node.add_pod(annotations, text=dumps(draw_manifest(draw, node, annotations)).decode())
        elif form == "yaml":
            node.add_pod(annotations, text=_yaml(draw_manifest(draw, node, annotations)), ext=".yaml")
        else:
            node.add_pod(annotations, text=draw(st.sampled_from(("{", "- [", ": :", "\0", "a: *x"))), ext=".yaml")
    else:
        conf["capabilities"] = {"io.kubernetes.cri.pod-annotations": True}
        conf["runtimeConfig"] = {"io.kubernetes.cri.pod-annotations": draw(st.one_of(st.just(annotations), ODD))}
    return env, conf


def draw_manifest(draw: st.DrawFn, node: Node, annotations: dict[str, Any]) -> Any:
    """A Pod manifest carrying `annotations`, or one whose shape is wrong (a list, odd metadata or annotations)."""
    meta: dict[str, Any] = {"name": node.POD, "namespace": node.NAMESPACE, "annotations": annotations}
    shape = draw(st.integers(0, 4))
    if shape == 0:
        return [meta]
    if shape == 1:
        return {"kind": "Pod", "metadata": draw(ODD)}
    if shape == 2:
        return {"kind": "Pod", "metadata": {**meta, "annotations": draw(ODD)}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta}


def _yaml(doc: Any) -> str:
    try:
        return yaml.safe_dump(doc, allow_unicode=False)
    except yaml.YAMLError:
        return "{"


def links_in(netns: str) -> list[str]:
    return sorted(link["ifname"] for link in ip_json("-n", netns, "link", "show"))


@fuzz_settings(250)
@given(data=st.data(), command=st.sampled_from(("ADD", "ADD", "ADD", "CHECK", "DEL")))
def test_pod_annotations(fuzz_root: Path, netns: str, data: st.DataObject, command: str) -> None:
    """Any annotations, from any of the three places: one answer, then a DEL that leaves nothing behind."""
    with Node(fuzz_root) as node:
        env_extra, conf_extra = data.draw(delivery(node), label="delivery")
        conf = {**node.conf("multiplane"), **conf_extra}
        stdin = dumps(conf)
        env = fs_env(node.env(command, netns=f"/var/run/netns/{netns}", **env_extra))
        answer = run_case_env(node, "multiplane", env, stdin)
        undo = run_case_env(node, "multiplane", {**env, "CNI_COMMAND": "DEL"}, stdin)
        left = leftovers(node)
        links = links_in(netns)
        # A DEL refused exactly like the call before it (an environment refused up front) did nothing either.
        refused_alike = answer.status == 1 and undo.document == answer.document
        if (undo.status != 0 and not refused_alike) or left or links != ["lo"]:
            raise OracleFailure(
                f"DEL after {command} (exit {answer.status}) did not clean up: exit {undo.status} {undo.stdout}\n"
                f"left: {left}\nlinks: {links}\n{command} said: {answer.stdout[:2000]}"
            )
