"""The Kubernetes and OpenShift manifests in packaging/k8s, and packaging/Containerfile, read as data.

They cannot be applied here (no cluster), so these tests check what `kubectl apply` and
the node would trip over: required fields, names that refer to each other, RBAC that
matches the API calls of multiplane.k8s.client, and DaemonSet arguments that the
installer's own parser accepts, with paths that the mounts really provide. The thick-mode
DaemonSets (daemonset-thick.yaml) are checked the same way against the daemon's own parser
and config loader; tests/packaging/test_thick_image.py runs them with podman.
"""

from __future__ import annotations

import argparse
import inspect
import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import multiplane
from multiplane import client, installer
from multiplane.daemon import config as daemon_conf
from multiplane.daemon import metrics as daemon_metrics
from multiplane.daemon import run as daemon_run
from multiplane.daemon.server import Server
from multiplane.k8s.client import NAD_PATH
from multiplane.plugins.meta.config import MetaConf
from multiplane.spec.netconf import NetConf
from multiplane.tools import ipam as ipam_tool

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
K8S = PACKAGING / "k8s"
OPENSHIFT = K8S / "openshift"
IMAGE = "multiplane:0.1.0"
BINARY_IN_IMAGE = "/usr/local/bin/multiplane"
VARIANTS = {"kubernetes": K8S, "openshift": OPENSHIFT}
THIN, THICK = "daemonset.yaml", "daemonset-thick.yaml"
# Every DaemonSet: the checks that hold for thin and thick mode alike run over all four.
DAEMONSETS = {f"{variant}/{name}": path / name for variant, path in VARIANTS.items() for name in (THIN, THICK)}
# What the plugin's calls use (tests/integration/test_meta_events_add.py records them from a real ADD/DEL
# and from the node daemon's caches, which run under the same service account).
EXPECTED_RULES = {
    ("", "pods"): {"get", "list", "watch"},  # list + watch: the daemon's cache of this node's pods
    ("", "pods/status"): {"patch"},  # network-status: one JSON merge patch
    ("k8s.cni.cncf.io", "network-attachment-definitions"): {"get", "list", "watch"},  # list + watch: its NAD cache
    ("", "events"): {"create"},
}
# Cluster-wide IPAM's store on the Kubernetes API (multiplane.ipam.cluster.kube), a role of its own in
# rbac-ipam.yaml: tests/unit/test_cluster_kube.py records the store's requests and checks the same.
EXPECTED_IPAM_RULES = {
    ("ipam.multiplane.io", "ipblocks"): {"create", "get", "list", "delete"},
    ("ipam.multiplane.io", "ipclaims"): {"create", "get", "list", "delete"},
    ("", "nodes"): {"get"},  # the node daemon's reconciler (tests/integration/test_daemon_cluster_ipam.py)
}


def load(path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} holds no document"
    return docs


def one(path: Path, kind: str) -> dict[str, Any]:
    found = [d for d in load(path) if d.get("kind") == kind]
    assert len(found) == 1, f"{path}: expected one {kind}, found {len(found)}"
    return found[0]


def containers(ds: dict[str, Any]) -> list[dict[str, Any]]:
    spec = ds["spec"]["template"]["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def install_parser() -> argparse.ArgumentParser:
    """The `install` sub-parser of the installer's command line."""
    parser = installer.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["install"]


def parse_install(args: list[str]) -> argparse.Namespace:
    """The installer's own parsing of a container's args; a flag it does not know fails the test."""
    assert args[0] == "install", args
    known = set(install_parser()._option_string_actions)
    for token in args[1:]:
        if token.startswith("--"):
            assert token.split("=", 1)[0] in known, f"the installer has no flag {token}"
    try:
        return installer.build_parser().parse_args(args)
    except SystemExit as exc:  # argparse reports and exits on a bad value
        pytest.fail(f"the installer rejects {args}: exit {exc.code}")


def mounted_host_path(ds: dict[str, Any], container: dict[str, Any], path: str) -> str:
    """The node path that `path` inside `container` is, through its hostPath mounts; fails if not mounted."""
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    best = None
    for mount in container.get("volumeMounts", []):
        mp = mount["mountPath"].rstrip("/")
        if (path == mp or path.startswith(mp + "/")) and (best is None or len(mp) > len(best["mountPath"])):
            best = mount
    assert best is not None, f"{container['name']}: {path} is on no volume mount"
    volume = volumes[best["name"]]
    assert "hostPath" in volume, f"{path} is mounted from {best['name']}, which is not a hostPath"
    return volume["hostPath"]["path"].rstrip("/") + path[len(best["mountPath"].rstrip("/")) :]


# ---- every file ---------------------------------------------------------------------------------


ALL_MANIFESTS = sorted(K8S.rglob("*.yaml"))


def test_manifests_are_found() -> None:
    """The manifests this suite is about exist."""
    names = {str(p.relative_to(K8S)) for p in ALL_MANIFESTS}
    assert {"crd.yaml", "rbac.yaml", "daemonset.yaml", "daemonset-thick.yaml"} <= names
    assert {"openshift/scc.yaml", "openshift/daemonset.yaml", "openshift/rbac.yaml"} <= names
    assert {"crd-ipam.yaml", "rbac-ipam.yaml", "openshift/rbac-ipam.yaml"} <= names
    assert "openshift/daemonset-thick.yaml" in names
    assert {"cronjob-ipam-reconcile.yaml", "openshift/cronjob-ipam-reconcile.yaml"} <= names


@pytest.mark.parametrize("path", ALL_MANIFESTS, ids=lambda p: str(p.relative_to(K8S)))
def test_every_document_has_the_required_fields(path: Path) -> None:
    """Each YAML document parses and has apiVersion, kind and metadata.name, and the app label."""
    for doc in load(path):
        assert isinstance(doc.get("apiVersion"), str) and doc["apiVersion"]
        assert isinstance(doc.get("kind"), str) and doc["kind"]
        assert isinstance(doc["metadata"].get("name"), str) and doc["metadata"]["name"]
        if doc["kind"] != "CustomResourceDefinition":
            assert doc["metadata"].get("labels", {}).get("app") == "multiplane"


@pytest.mark.parametrize(
    ("path", "kinds"),
    [
        (K8S / "crd.yaml", ["CustomResourceDefinition"]),
        (K8S / "rbac.yaml", ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"]),
        (K8S / "crd-ipam.yaml", ["CustomResourceDefinition", "CustomResourceDefinition"]),
        (K8S / "rbac-ipam.yaml", ["ClusterRole", "ClusterRoleBinding"]),
        (OPENSHIFT / "rbac-ipam.yaml", ["ClusterRole", "ClusterRoleBinding"]),
        (K8S / "daemonset.yaml", ["DaemonSet"]),
        (K8S / "daemonset-thick.yaml", ["ConfigMap", "DaemonSet"]),
        (OPENSHIFT / "namespace.yaml", ["Namespace"]),
        (OPENSHIFT / "rbac.yaml", ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"]),
        (OPENSHIFT / "scc.yaml", ["SecurityContextConstraints"]),
        (OPENSHIFT / "daemonset.yaml", ["DaemonSet"]),
        (OPENSHIFT / "daemonset-thick.yaml", ["SecurityContextConstraints", "ConfigMap", "DaemonSet"]),
        (OPENSHIFT / "crd-v1beta1.yaml", ["CustomResourceDefinition"]),
        (K8S / "cronjob-ipam-reconcile.yaml", ["ConfigMap", "CronJob"]),
        (OPENSHIFT / "cronjob-ipam-reconcile.yaml", ["ConfigMap", "CronJob"]),
    ],
    ids=lambda v: str(v.relative_to(K8S)) if isinstance(v, Path) else "-".join(v),
)
def test_files_hold_the_expected_kinds(path: Path, kinds: list[str]) -> None:
    """Each manifest holds exactly the objects its name promises, with the expected API versions."""
    docs = load(path)
    assert [d["kind"] for d in docs] == kinds
    versions = {
        "CustomResourceDefinition": ("apiextensions.k8s.io/v1", "apiextensions.k8s.io/v1beta1"),
        "ServiceAccount": ("v1",),
        "Namespace": ("v1",),
        "ConfigMap": ("v1",),
        "ClusterRole": ("rbac.authorization.k8s.io/v1",),
        "ClusterRoleBinding": ("rbac.authorization.k8s.io/v1",),
        "DaemonSet": ("apps/v1",),
        "SecurityContextConstraints": ("security.openshift.io/v1",),
        "CronJob": ("batch/v1", "batch/v1beta1"),  # v1beta1: OpenShift 3.11 (Kubernetes 1.11)
    }
    for doc in docs:
        assert doc["apiVersion"] in versions[doc["kind"]]


# ---- the CRD ------------------------------------------------------------------------------------


def client_nad_route() -> tuple[str, str, str]:
    """(group, version, plural) of the path multiplane.k8s.client requests NADs at."""
    match = re.fullmatch(r"/apis/([^/]+)/([^/]+)/namespaces/\{ns\}/([^/]+)/\{name\}", NAD_PATH)
    assert match, NAD_PATH
    return match.group(1), match.group(2), match.group(3)


def test_crd_matches_what_the_client_requests() -> None:
    """The CRD serves the group, version and plural the meta-plugin's client GETs, namespaced, with spec.config."""
    crd = one(K8S / "crd.yaml", "CustomResourceDefinition")
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    group, version, plural = client_nad_route()
    spec = crd["spec"]
    assert (spec["group"], spec["names"]["plural"]) == (group, plural)
    assert crd["metadata"]["name"] == f"{plural}.{group}"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "NetworkAttachmentDefinition"
    assert set(spec["names"]["shortNames"]) == {"net-attach-def", "nad"}
    (served,) = spec["versions"]
    assert (served["name"], served["served"], served["storage"]) == (version, True, True)
    schema = served["schema"]["openAPIV3Schema"]
    assert schema["properties"]["spec"]["properties"]["config"]["type"] == "string"


def test_legacy_crd_matches_the_current_one() -> None:
    """The v1beta1 CRD for old clusters (OpenShift 3.11) defines the same resource."""
    old = one(OPENSHIFT / "crd-v1beta1.yaml", "CustomResourceDefinition")
    new = one(K8S / "crd.yaml", "CustomResourceDefinition")
    assert old["metadata"]["name"] == new["metadata"]["name"]
    assert (old["spec"]["group"], old["spec"]["version"], old["spec"]["scope"]) == (
        new["spec"]["group"],
        new["spec"]["versions"][0]["name"],
        new["spec"]["scope"],
    )
    assert old["spec"]["names"] == new["spec"]["names"]
    assert old["spec"]["validation"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["config"] == {
        "type": "string"
    }


# ---- RBAC ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_cluster_role_grants_exactly_the_calls_we_make(variant: str) -> None:
    """The ClusterRole allows get/list/watch pods and NADs, patch pods/status, create events, and nothing else."""
    role = one(VARIANTS[variant] / "rbac.yaml", "ClusterRole")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == EXPECTED_RULES
    group, _, plural = client_nad_route()
    assert (group, plural) in granted


@pytest.mark.parametrize("variant", VARIANTS)
def test_binding_ties_the_role_to_the_service_account(variant: str) -> None:
    """The ClusterRoleBinding names the ClusterRole and the ServiceAccount of the same file."""
    path = VARIANTS[variant] / "rbac.yaml"
    sa, role, binding = one(path, "ServiceAccount"), one(path, "ClusterRole"), one(path, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": sa["metadata"]["namespace"]}
    ]


# ---- cluster-wide IPAM: its CRDs and its role ------------------------------------------------------


def _structural(schema: dict[str, Any], where: str) -> None:
    """A structural schema (apiextensions.k8s.io/v1 requires one): every node has a type, objects list properties."""
    assert isinstance(schema.get("type"), str), f"{where}: no type"
    for name, sub in schema.get("properties", {}).items():
        _structural(sub, f"{where}.{name}")
    if schema["type"] == "array":
        _structural(schema["items"], f"{where}[]")


def test_ipam_crds_are_what_the_store_requests() -> None:
    """crd-ipam.yaml defines, cluster-scoped and structural, the two resources kube.py reads and writes, with the
    spec fields it stores (required where it always writes them) and printer columns that exist."""
    from multiplane.ipam.cluster import kube

    crds = {d["spec"]["names"]["plural"]: d for d in load(K8S / "crd-ipam.yaml")}
    assert set(crds) == {kube.BLOCKS, kube.CLAIMS}
    fields = {
        kube.BLOCKS: ("IPBlock", {"pool", "cidr", "node"}, {"claimed"}),
        kube.CLAIMS: ("IPClaim", {"pool", "ip", "node", "container", "ifname"}, {"pod", "claimed"}),
    }
    for plural, crd in crds.items():
        kind, required, optional = fields[plural]
        spec = crd["spec"]
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
        assert crd["metadata"]["name"] == f"{plural}.{kube.GROUP}" and spec["group"] == kube.GROUP
        assert spec["scope"] == "Cluster" and spec["names"]["kind"] == kind
        assert spec["names"]["singular"] == plural[:-1] and spec["names"]["listKind"] == f"{kind}List"
        (version,) = spec["versions"]
        assert (version["name"], version["served"], version["storage"]) == (kube.VERSION, True, True)
        schema = version["schema"]["openAPIV3Schema"]
        _structural(schema, plural)
        assert "x-kubernetes-preserve-unknown-fields" not in str(schema)
        spec_schema = schema["properties"]["spec"]
        assert set(spec_schema["properties"]) == required | optional
        assert set(spec_schema["required"]) == required
        assert all(p["type"] == "string" for p in spec_schema["properties"].values())
        assert spec_schema["properties"]["claimed"]["format"] == "date-time"
        for column in version["additionalPrinterColumns"]:
            path = column["jsonPath"]
            assert path == ".metadata.creationTimestamp" or path.removeprefix(".spec.") in spec_schema["properties"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_ipam_role_grants_exactly_the_store_verbs(variant: str) -> None:
    """rbac-ipam.yaml's ClusterRole allows create/get/list/delete of IPBlocks and IPClaims (no update, patch or
    watch: claims are never changed) and get of Nodes (the daemon's reconciler), nothing else, and binds it to
    rbac.yaml's service account."""
    path = VARIANTS[variant] / "rbac-ipam.yaml"
    role, binding = one(path, "ClusterRole"), one(path, "ClusterRoleBinding")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == EXPECTED_IPAM_RULES
    assert role["metadata"]["name"] != one(VARIANTS[variant] / "rbac.yaml", "ClusterRole")["metadata"]["name"]
    sa = one(VARIANTS[variant] / "rbac.yaml", "ServiceAccount")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": sa["metadata"]["namespace"]}
    ]


# ---- the DaemonSets -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", DAEMONSETS)
def test_daemonset_selector_matches_template_labels(name: str) -> None:
    """The DaemonSet's selector selects its own pod template."""
    ds = one(DAEMONSETS[name], "DaemonSet")
    labels = ds["spec"]["template"]["metadata"]["labels"]
    selector = ds["spec"]["selector"]["matchLabels"]
    assert selector and all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("name", DAEMONSETS)
def test_daemonset_runs_as_the_rbac_service_account(name: str) -> None:
    """The pod's service account is the one rbac.yaml creates, in the DaemonSet's namespace."""
    ds = one(DAEMONSETS[name], "DaemonSet")
    sa = one(DAEMONSETS[name].parent / "rbac.yaml", "ServiceAccount")
    assert ds["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    assert ds["metadata"]["namespace"] == sa["metadata"]["namespace"]


@pytest.mark.parametrize("name", DAEMONSETS)
def test_daemonset_runs_on_every_node_in_the_host_network(name: str) -> None:
    """hostNetwork, a toleration for every taint, and privileged containers."""
    ds = one(DAEMONSETS[name], "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True
    assert {"operator": "Exists"} in spec["tolerations"]
    for c in containers(ds):
        assert c["securityContext"]["privileged"] is True


def test_image_is_the_same_everywhere() -> None:
    """Every container of every DaemonSet runs multiplane:0.1.0 with imagePullPolicy IfNotPresent (offline use)."""
    seen = []
    for path in DAEMONSETS.values():
        for c in containers(one(path, "DaemonSet")):
            seen.append((c["image"], c["imagePullPolicy"], c["command"]))
    assert seen and set(map(repr, seen)) == {repr((IMAGE, "IfNotPresent", [BINARY_IN_IMAGE]))}
    assert IMAGE.split(":")[1] == multiplane.__version__


@pytest.mark.parametrize("variant", VARIANTS)
def test_init_container_installs_with_flags_the_installer_knows(variant: str) -> None:
    """The init container runs `multiplane install` from the image's binary, with flags the parser accepts."""
    ds = one(VARIANTS[variant] / "daemonset.yaml", "DaemonSet")
    (init,) = ds["spec"]["template"]["spec"]["initContainers"]
    args = parse_install(init["args"])
    assert args.command == "install" and not args.refresh_token_only
    assert args.source == BINARY_IN_IMAGE
    assert args.no_kubeconfig is False  # the pod has a service account: the plugin uses the API


@pytest.mark.parametrize("variant", VARIANTS)
def test_main_container_refreshes_the_token(variant: str) -> None:
    """The long-running container is `multiplane install --refresh-token-only` with the init container's dirs."""
    ds = one(VARIANTS[variant] / "daemonset.yaml", "DaemonSet")
    (init,) = ds["spec"]["template"]["spec"]["initContainers"]
    (main,) = ds["spec"]["template"]["spec"]["containers"]
    args, init_args = parse_install(main["args"]), parse_install(init["args"])
    assert args.refresh_token_only is True
    opts, init_opts = installer.options_from(args), installer.options_from(init_args)
    assert opts.kubeconfig_out == init_opts.kubeconfig_out
    assert opts.sa_dir == init_opts.sa_dir == installer.SERVICE_ACCOUNT_DIR
    # The token copy it writes must land where the node-side kubeconfig says it is.
    assert mounted_host_path(ds, main, opts.token_path) == init_opts.host(init_opts.token_path)


@pytest.mark.parametrize("variant", VARIANTS)
def test_installer_paths_are_the_mounted_node_dirs(variant: str) -> None:
    """Every dir passed to `install` is a hostPath mount, and stripping --host-prefix gives that node path."""
    ds = one(VARIANTS[variant] / "daemonset.yaml", "DaemonSet")
    for c in containers(ds):
        args = parse_install(c["args"])
        opts = installer.options_from(args)
        paths = [opts.cni_conf_dir, opts.kubeconfig_out]
        if not args.refresh_token_only:
            paths.append(opts.cni_bin_dir)
        for path in paths:
            assert mounted_host_path(ds, c, path) == opts.host(path), f"{c['name']}: {path}"


@pytest.mark.parametrize("name", DAEMONSETS)
def test_state_dir_is_mounted_at_the_same_path(name: str) -> None:
    """cniDir (delegate cache, status files, the binary's runtime dir) is the node's own path in every container."""
    ds = one(DAEMONSETS[name], "DaemonSet")
    (init,) = ds["spec"]["template"]["spec"]["initContainers"]
    cni_dir = parse_install(init["args"]).multiplane_cni_dir
    assert cni_dir == "/var/lib/cni/multiplane"
    for c in containers(ds):
        assert mounted_host_path(ds, c, cni_dir) == cni_dir


@pytest.mark.parametrize("name", DAEMONSETS)
def test_the_image_has_a_writable_tmp(name: str) -> None:
    """The image is FROM scratch (no /tmp, no /var): every container unpacks its runtime into an emptyDir on /tmp."""
    ds = one(DAEMONSETS[name], "DaemonSet")
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    for c in containers(ds):
        tmp = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert len(tmp) == 1 and "emptyDir" in volumes[tmp[0]["name"]]
        assert {"name": "MULTIPLANE_UNPACK_DIR", "value": "/tmp/multiplane"} in c["env"]


@pytest.mark.parametrize("name", [THIN, THICK])
def test_variants_run_the_same_containers(name: str) -> None:
    """Both variants run the same commands and mounts; they differ in namespace and scheduling only."""
    k8s = one(K8S / name, "DaemonSet")["spec"]["template"]["spec"]
    osh = one(OPENSHIFT / name, "DaemonSet")["spec"]["template"]["spec"]
    for key in ("initContainers", "containers", "volumes", "hostNetwork", "terminationGracePeriodSeconds"):
        assert k8s[key] == osh[key], key
    assert k8s.get("hostPID") == osh.get("hostPID")
    if name == THICK:
        assert one(K8S / name, "ConfigMap")["data"] == one(OPENSHIFT / name, "ConfigMap")["data"]
        assert (
            one(K8S / name, "DaemonSet")["spec"]["updateStrategy"]
            == one(OPENSHIFT / name, "DaemonSet")["spec"]["updateStrategy"]
        )


# ---- OpenShift ----------------------------------------------------------------------------------


def test_openshift_uses_the_openshift_sdn_dirs() -> None:
    """The OpenShift DaemonSet installs into openshift-sdn's /opt/cni/bin and /etc/cni/net.d on the node."""
    ds = one(OPENSHIFT / "daemonset.yaml", "DaemonSet")
    (init,) = ds["spec"]["template"]["spec"]["initContainers"]
    opts = installer.options_from(parse_install(init["args"]))
    assert mounted_host_path(ds, init, opts.cni_bin_dir) == opts.host(opts.cni_bin_dir) == "/opt/cni/bin"
    assert mounted_host_path(ds, init, opts.cni_conf_dir) == opts.host(opts.cni_conf_dir) == "/etc/cni/net.d"


def test_openshift_namespace_exists_and_schedules_everywhere() -> None:
    """The DaemonSet's project is created by namespace.yaml, with an empty project node selector."""
    ns = one(OPENSHIFT / "namespace.yaml", "Namespace")
    ds = one(OPENSHIFT / "daemonset.yaml", "DaemonSet")
    assert ds["metadata"]["namespace"] == ns["metadata"]["name"]
    assert ns["metadata"]["annotations"]["openshift.io/node-selector"] == ""


def test_scc_admits_the_service_account_and_what_the_pod_needs() -> None:
    """The SCC names the DaemonSet's service account and allows hostPath, hostNetwork, privileged and its volumes."""
    scc = one(OPENSHIFT / "scc.yaml", "SecurityContextConstraints")
    ds = one(OPENSHIFT / "daemonset.yaml", "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    assert f"system:serviceaccount:{ds['metadata']['namespace']}:{spec['serviceAccountName']}" in scc["users"]
    assert scc["allowHostDirVolumePlugin"] is True
    assert scc["allowHostNetwork"] is True
    assert scc["allowPrivilegedContainer"] is True
    used = {next(k for k in v if k != "name") for v in spec["volumes"]} | {"projected"}  # + the SA token
    assert used <= set(scc["volumes"])


# ---- the image ----------------------------------------------------------------------------------


def test_containerfile_copies_the_binary_the_daemonset_runs() -> None:
    """packaging/Containerfile is FROM scratch and puts dist/multiplane where the DaemonSet's command expects it."""
    lines = [
        line.split()
        for line in (PACKAGING / "Containerfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == ["FROM", "scratch"]
    assert ["COPY", "dist/multiplane", BINARY_IN_IMAGE] in lines


def fake_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A root where /host is the node's /: a primary config, a service account and a small image binary in place."""
    root = tmp_path / "mp-node"
    (root / "etc/cni/net.d").mkdir(parents=True)
    (root / "etc/cni/net.d/80-openshift-network.conf").write_text(
        '{"cniVersion": "0.3.1", "name": "openshift.1", "type": "openshift-sdn"}'
    )
    for name, data in (("token", "mp-token"), ("ca.crt", "mp-ca")):
        (root / installer.SERVICE_ACCOUNT_DIR.lstrip("/")).mkdir(parents=True, exist_ok=True)
        (root / installer.SERVICE_ACCOUNT_DIR.lstrip("/") / name).write_text(data)
    (root / BINARY_IN_IMAGE.lstrip("/")).parent.mkdir(parents=True)
    from multiplane.runtime import payload

    files = [payload.Entry("boot.py", 0o644, b"mp-boot")]
    text = payload.manifest(files)
    image_file = payload.write(b"mp-launcher", [*files, payload.Entry(payload.MANIFEST, 0o644, text)], "mp-1")
    (root / BINARY_IN_IMAGE.lstrip("/")).write_bytes(image_file)
    os.symlink(".", root / "host")  # the hostPath mounts: /host/<path> is the node's /<path>
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    return root


@pytest.mark.parametrize("variant", VARIANTS)
def test_daemonset_commands_work_on_a_fake_node(variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both containers' exact args, run under a fake root where /host is the node's /, leave a config whose paths exist."""
    root = fake_node(tmp_path, monkeypatch)
    ds = one(VARIANTS[variant] / "daemonset.yaml", "DaemonSet")
    (init,) = ds["spec"]["template"]["spec"]["initContainers"]
    (main,) = ds["spec"]["template"]["spec"]["containers"]
    assert installer.main([*init["args"], "--root", str(root), "--wait-seconds", "0"]) == 0
    conf = json.loads((root / "etc/cni/net.d/00-multiplane.conf").read_text())
    for key in ("clusterNetwork", "kubeconfig"):
        assert (root / conf[key].lstrip("/")).is_file(), key
    assert (root / conf["binDir"].lstrip("/") / "multiplane").read_bytes() == b"mp-launcher"
    assert (root / conf["binDir"].lstrip("/") / ".multiplane/current/boot.py").read_bytes() == b"mp-boot"
    kube = (root / conf["kubeconfig"].lstrip("/")).read_text()
    token_file = json.loads(kube.split("tokenFile: ", 1)[1].splitlines()[0])
    assert (root / token_file.lstrip("/")).read_text() == "mp-token"

    (root / installer.SERVICE_ACCOUNT_DIR.lstrip("/") / "token").write_text("mp-token-rotated")
    assert installer.main([*main["args"], "--root", str(root), "--max-iterations", "1"]) == 0
    assert (root / token_file.lstrip("/")).read_text() == "mp-token-rotated"


# ---- thick mode: the node daemon ----------------------------------------------------------------


def thick(variant: str) -> dict[str, Any]:
    return one(VARIANTS[variant] / THICK, "DaemonSet")


def daemon_container(ds: dict[str, Any]) -> dict[str, Any]:
    (daemon,) = [c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == "daemon"]
    return daemon


def daemon_args(ds: dict[str, Any]) -> argparse.Namespace:
    """The daemon container's args through `multiplane daemon`'s own parser; a flag it does not know fails."""
    c = daemon_container(ds)
    assert c["command"] == [BINARY_IN_IMAGE] and c["args"][0] == "daemon", (c["command"], c["args"])
    parser = daemon_run._parser()
    known = set(parser._option_string_actions)
    for token in c["args"][1:]:
        assert token.startswith("--") and token.split("=", 1)[0] in known, f"`multiplane daemon` has no flag {token}"
    try:
        return parser.parse_args(c["args"][1:])
    except SystemExit as exc:
        pytest.fail(f"`multiplane daemon` rejects {c['args']}: exit {exc.code}")


def mounted_volume(ds: dict[str, Any], container: dict[str, Any], path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the volume mount, the volume) that `path` inside `container` is on: the longest mountPath that holds it."""
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    holding = [
        m
        for m in container.get("volumeMounts", [])
        if path == m["mountPath"].rstrip("/") or path.startswith(m["mountPath"].rstrip("/") + "/")
    ]
    assert holding, f"{container['name']}: {path} is on no volume mount"
    mount = max(holding, key=lambda m: len(m["mountPath"]))
    return mount, volumes[mount["name"]]


def daemon_config(variant: str) -> daemon_conf.DaemonConfig:
    """The daemon's config as `multiplane daemon` loads it: the --config file, from the ConfigMap the container mounts."""
    ds = thick(variant)
    path = daemon_args(ds).config
    mount, volume = mounted_volume(ds, daemon_container(ds), path)
    assert mount.get("readOnly") is True
    cm = one(VARIANTS[variant] / THICK, "ConfigMap")
    assert volume["configMap"]["name"] == cm["metadata"]["name"]
    assert cm["metadata"]["namespace"] == ds["metadata"]["namespace"]
    key = path[len(mount["mountPath"].rstrip("/")) + 1 :]
    try:
        data = json.loads(cm["data"][key])
        return daemon_conf.DaemonConfig(data)  # the daemon's own checks: unknown keys, types, ranges
    except daemon_conf.ConfigError as exc:
        pytest.fail(f"the daemon refuses its ConfigMap: {exc}")


@pytest.mark.parametrize("variant", VARIANTS)
def test_thick_installs_and_refreshes_like_thin_mode(variant: str) -> None:
    """The thick pod's install init container and token refresher are thin mode's, on the same volumes.

    So the thin-mode checks above (installer flags, mounted dirs, the token copy) hold for
    them, and the node gets the same runtime, links and 00-multiplane.conf: the launcher the
    runtime runs is the per-call client that forwards to the daemon.
    """
    thin_spec = one(VARIANTS[variant] / THIN, "DaemonSet")["spec"]["template"]["spec"]
    thick_spec = thick(variant)["spec"]["template"]["spec"]
    assert thick_spec["initContainers"] == thin_spec["initContainers"]
    (refresher,) = [c for c in thick_spec["containers"] if c["name"] == "token-refresh"]
    assert [refresher] == thin_spec["containers"]
    thin_volumes = {v["name"]: v for v in thin_spec["volumes"]}
    thick_volumes = {v["name"]: v for v in thick_spec["volumes"]}
    used = {m["name"] for c in [*thick_spec["initContainers"], refresher] for m in c["volumeMounts"]}
    assert {n: thick_volumes[n] for n in used} == {n: thin_volumes[n] for n in used}
    assert [c["name"] for c in thick_spec["containers"]] == ["daemon", "token-refresh"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_thick_daemon_flags_and_config_are_what_the_daemon_accepts(variant: str) -> None:
    """`multiplane daemon` with the manifest's args parses, and its ConfigMap passes the daemon's own config checks."""
    ds = thick(variant)
    args = daemon_args(ds)
    assert args.config and args.nodeName == "$(NODE_NAME)"
    env = {e["name"]: e for e in daemon_container(ds)["env"]}
    # Kubernetes expands $(NODE_NAME) from the container's env: the kubelet's node name, which the
    # pods cache's field selector (spec.nodeName) must match; the host name may differ from it.
    assert env["NODE_NAME"] == {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
    cfg = daemon_config(variant)
    assert cfg.kubeconfig == ""  # in a pod: the service account (in-cluster config)
    assert args.kubeconfig is None and args.socket is None and args.metricsAddress is None


@pytest.mark.parametrize("variant", VARIANTS)
def test_thick_socket_is_where_the_node_client_looks(variant: str) -> None:
    """The daemon listens where the installed client connects: the default path, a hostPath at the same node path."""
    ds = thick(variant)
    cfg = daemon_config(variant)
    conf = b'{"cniVersion": "0.3.1", "name": "multiplane-cni-network", "type": "multiplane"}'  # install writes no daemonSocket
    assert cfg.socket == client.socket_path(conf, {}) == client.DEFAULT_SOCKET == daemon_conf.DEFAULT_SOCKET
    mount, volume = mounted_volume(ds, daemon_container(ds), os.path.dirname(cfg.socket))
    assert volume["hostPath"]["path"] == mount["mountPath"] == os.path.dirname(cfg.socket)
    assert not mount.get("readOnly")


@pytest.mark.parametrize("variant", VARIANTS)
def test_thick_probes_reach_the_metrics_address(variant: str) -> None:
    """Readiness on /healthz and liveness on /metrics, both on the metricsAddress the ConfigMap gives the daemon.

    With hostNetwork the pod's IP is the node's, and the kubelet probes the pod IP unless told
    otherwise: a daemon on 127.0.0.1 needs `host: 127.0.0.1` in the probes.
    """
    ds = thick(variant)
    cfg = daemon_config(variant)
    _, host, port = daemon_metrics.parse_address(cfg.metrics_address)
    assert ipaddress.ip_address(host).is_loopback  # /metrics is not offered off the node by default
    c = daemon_container(ds)
    for probe, path in (("readinessProbe", "/healthz"), ("livenessProbe", "/metrics")):
        get = c[probe]["httpGet"]
        assert (get["host"], int(get["port"]), get["path"]) == (host, port, path), probe
        assert get.get("scheme", "HTTP") == "HTTP"
    # The liveness probe must not restart a daemon that waits for an API server: it allows a minute.
    live = c["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] >= 60


@pytest.mark.parametrize("variant", VARIANTS)
def test_thick_pod_shares_the_nodes_namespaces(variant: str) -> None:
    """hostNetwork (interfaces are made in the node's namespace), hostPID (/proc/<pid>/ns/net paths), privileged daemon."""
    spec = thick(variant)["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True and spec["hostPID"] is True
    assert daemon_container(thick(variant))["securityContext"] == {"privileged": True}


@pytest.mark.parametrize("variant", VARIANTS)
def test_thick_daemon_sees_netns_and_the_node_root(variant: str) -> None:
    """/run/netns and /var/run/netns from the node with HostToContainer; the node's / read-write at chrootDir."""
    ds = thick(variant)
    c = daemon_container(ds)
    for path in ("/run/netns", "/var/run/netns"):
        mount, volume = mounted_volume(ds, c, path)
        assert mount["mountPath"] == volume["hostPath"]["path"] == path
        assert mount.get("mountPropagation") == "HostToContainer", path  # namespaces pinned after the daemon started
    cfg = daemon_config(variant)
    assert cfg.chroot_dir
    mount, volume = mounted_volume(ds, c, cfg.chroot_dir)
    assert mount["mountPath"] == cfg.chroot_dir and volume["hostPath"]["path"] == "/"
    assert mount.get("mountPropagation") == "HostToContainer"
    assert not mount.get("readOnly")  # plugins keep state on the node (host-local, flannel, iptables' lock)


@pytest.mark.parametrize("variant", VARIANTS)
def test_thick_daemon_sees_the_node_paths_a_call_names(
    variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every node path in the 00-multiplane.conf that install writes (and the defaults it leaves) is the same path in the daemon.

    A call's config is the node's file; the daemon opens clusterNetwork, confDir, cniDir,
    the NAD dirs, the kubeconfig and host-local's default dataDir itself, so each must be a
    hostPath mount of that very path (cniDir and /var/lib/cni/networks writable).
    """
    root = fake_node(tmp_path, monkeypatch)
    ds = thick(variant)
    (init,) = ds["spec"]["template"]["spec"]["initContainers"]
    assert installer.main([*init["args"], "--root", str(root), "--wait-seconds", "0"]) == 0
    meta = MetaConf(NetConf.parse((root / "etc/cni/net.d/00-multiplane.conf").read_bytes()))
    c = daemon_container(ds)
    read = {
        "clusterNetwork": meta.cluster_network,
        "kubeconfig": meta.kubeconfig,
        "confDir": meta.conf_dir,
        "localNADDir": meta.local_nad_dir,
        "localPodDir": meta.local_pod_dir,
    }
    written = {"cniDir": meta.cni_dir, "host-local dataDir": "/var/lib/cni/networks"}
    for key, path in {**read, **written}.items():
        assert path.startswith("/"), (key, path)
        assert mounted_host_path(ds, c, path) == path, f"{key} {path} is another path in the daemon container"
    for key, path in written.items():
        mount, _ = mounted_volume(ds, c, path)
        assert not mount.get("readOnly"), f"{key} {path} is read-only in the daemon container"


@pytest.mark.parametrize("variant", VARIANTS)
def test_thick_rollout_drains_before_it_is_killed(variant: str) -> None:
    """One node at a time without surge (two daemons cannot share the socket), and time to drain before SIGKILL."""
    ds = thick(variant)
    strategy = ds["spec"]["updateStrategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"] == {"maxUnavailable": 1}
    drain = inspect.signature(Server.serve).parameters["grace"].default
    assert ds["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= drain + 10


def quantity(text: str) -> float:
    """A Kubernetes quantity in bytes or cores ("96Mi", "50m", "1")."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "m": 1e-3, "": 1}
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|m|)", str(text))
    assert match, text
    return int(match.group(1)) * units[match.group(2)]


@pytest.mark.parametrize("variant", VARIANTS)
def test_thick_resources_are_bounded(variant: str) -> None:
    """Every container requests CPU and memory and has a memory limit above its request; no CPU limit on the daemon."""
    for c in containers(thick(variant)):
        res = c["resources"]
        assert set(res["requests"]) == {"cpu", "memory"} and set(res["limits"]) == {"memory"}, c["name"]
        assert quantity(res["limits"]["memory"]) >= quantity(res["requests"]["memory"]), c["name"]


def test_thick_scc_admits_the_thick_pod() -> None:
    """The OpenShift thick SCC names the service account and allows host PID, host network, privileged, the volumes."""
    scc = one(OPENSHIFT / THICK, "SecurityContextConstraints")
    ds = thick("openshift")
    spec = ds["spec"]["template"]["spec"]
    assert scc["users"] == [f"system:serviceaccount:{ds['metadata']['namespace']}:{spec['serviceAccountName']}"]
    assert scc["allowHostPID"] is True and scc["allowHostNetwork"] is True
    assert scc["allowPrivilegedContainer"] is True and scc["allowHostDirVolumePlugin"] is True
    used = {next(k for k in v if k != "name") for v in spec["volumes"]} | {"projected"}  # + the SA token
    assert used <= set(scc["volumes"])
    # The rest as strict as scc.yaml's, which the thin pod keeps matching.
    base = one(OPENSHIFT / "scc.yaml", "SecurityContextConstraints")
    differs = {k for k in base if k not in ("metadata", "allowHostPID") and base[k] != scc.get(k)}
    assert differs == set(), differs


@pytest.mark.parametrize("variant", VARIANTS)
def test_thick_service_account_may_list_and_watch_for_the_caches(variant: str) -> None:
    """The shared service account's role grants what the daemon's caches do: list + watch pods and NADs."""
    role = one(VARIANTS[variant] / "rbac.yaml", "ClusterRole")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    group, _, plural = client_nad_route()
    for key in (("", "pods"), (group, plural)):
        assert {"list", "watch"} <= granted.get(key, set()), key


# The reconciler (`multiplane ipam reconcile`, multiplane.ipam.cluster.reconcile): its own service account and
# role in rbac-ipam-reconciler.yaml; tests/integration/test_cluster_reconcile.py runs it with only these allowed.
EXPECTED_RECONCILER_RULES = {
    ("", "nodes"): {"get"},
    ("", "pods"): {"get"},
    ("ipam.multiplane.io", "ipblocks"): {"get", "list", "delete"},
    ("ipam.multiplane.io", "ipclaims"): {"get", "list", "delete"},
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_ipam_reconciler_role_is_its_own_and_grants_exactly_its_calls(variant: str) -> None:
    """rbac-ipam-reconciler.yaml: a service account, a ClusterRole with get on nodes and pods and get/list/delete of
    the claims (never create), bound to that account only; the nodes' roles gain nothing."""
    path = VARIANTS[variant] / "rbac-ipam-reconciler.yaml"
    assert [d["kind"] for d in load(path)] == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"]
    sa, role, binding = one(path, "ServiceAccount"), one(path, "ClusterRole"), one(path, "ClusterRoleBinding")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == EXPECTED_RECONCILER_RULES
    others = {one(VARIANTS[variant] / n, "ClusterRole")["metadata"]["name"] for n in ("rbac.yaml", "rbac-ipam.yaml")}
    assert role["metadata"]["name"] not in others
    nodes_sa = one(VARIANTS[variant] / "rbac.yaml", "ServiceAccount")
    assert sa["metadata"]["name"] != nodes_sa["metadata"]["name"]
    assert sa["metadata"]["namespace"] == nodes_sa["metadata"]["namespace"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": sa["metadata"]["namespace"]}
    ]


# ---- the reconciler's CronJob -------------------------------------------------------------------


CRONJOB = "cronjob-ipam-reconcile.yaml"
# what OpenShift's default `restricted` SCC admits (3.11 and 4.x): the CronJob's pod runs under it
RESTRICTED_SCC_VOLUMES = {"configMap", "downwardAPI", "emptyDir", "persistentVolumeClaim", "projected", "secret"}


def cronjob(variant: str) -> dict[str, Any]:
    return one(VARIANTS[variant] / CRONJOB, "CronJob")


def job_pod(cj: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of the CronJob's jobs."""
    return dict(cj["spec"]["jobTemplate"]["spec"]["template"]["spec"])


def reconcile_container(cj: dict[str, Any]) -> dict[str, Any]:
    (c,) = job_pod(cj)["containers"]
    return dict(c)


def reconcile_args(cj: dict[str, Any]) -> argparse.Namespace:
    """The container's args through `multiplane ipam`'s own parser; a flag `ipam reconcile` does not know fails."""
    c = reconcile_container(cj)
    assert c["command"] == [BINARY_IN_IMAGE] and c["args"][:2] == ["ipam", "reconcile"], (c["command"], c["args"])
    parser = ipam_tool._parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    known = set(sub.choices["reconcile"]._option_string_actions)
    for token in c["args"][2:]:
        assert token.startswith("--") and token.split("=", 1)[0] in known, f"`ipam reconcile` has no flag {token}"
    try:
        return parser.parse_args(c["args"][1:])
    except SystemExit as exc:
        pytest.fail(f"`multiplane ipam` rejects {c['args']}: exit {exc.code}")


def minutes_between_runs(schedule: str) -> int:
    """The shortest gap, in minutes, between two runs of a schedule that runs every hour ("M * * * *", "*/N ...")."""
    minute, *rest = schedule.split()
    assert rest == ["*", "*", "*", "*"], f"a schedule this test can read runs every hour: {schedule!r}"
    if minute.startswith("*/"):
        step = int(minute[2:])
        assert 60 % step == 0, schedule  # else the gap across the hour is shorter
        return step
    runs = sorted(int(m) for m in minute.split(","))
    return min(b - a for a, b in zip(runs, [*runs[1:], runs[0] + 60], strict=True))


@pytest.mark.parametrize("variant", VARIANTS)
def test_reconcile_cronjob_runs_the_reconciler_with_flags_it_accepts(variant: str) -> None:
    """`multiplane ipam reconcile` from the DaemonSets' image, with flags its parser accepts: the in-cluster API for the
    lookups and the store (--in-cluster), no --state (the pod may run on any node: look, wait the grace, look),
    changes for real."""
    cj = cronjob(variant)
    c = reconcile_container(cj)
    assert (c["image"], c["imagePullPolicy"]) == (IMAGE, "IfNotPresent")
    args = reconcile_args(cj)
    assert args.command == "reconcile"
    assert args.state == "" and args.kubeconfig == "" and args.in_cluster and not args.dry_run
    assert args.grace >= 300, "a node re-created by kubelet must not lose its blocks"


@pytest.mark.parametrize("variant", VARIANTS)
def test_reconcile_cronjob_never_overlaps_and_outlives_the_grace(variant: str) -> None:
    """Forbid; a run's deadline exceeds the grace it may wait (plus time for its looks); runs do not queue up."""
    cj = cronjob(variant)
    spec, job = cj["spec"], cj["spec"]["jobTemplate"]["spec"]
    grace = reconcile_args(cj).grace
    assert spec["concurrencyPolicy"] == "Forbid"
    deadline = job["activeDeadlineSeconds"]
    assert deadline >= grace + 300, (deadline, grace)
    assert minutes_between_runs(spec["schedule"]) * 60 > deadline
    assert 0 < spec["startingDeadlineSeconds"] < minutes_between_runs(spec["schedule"]) * 60
    # one pod per run: a failed run is a failed Job with its log, and the deadline bounds that one pod
    assert job["backoffLimit"] == 0 and job_pod(cj)["restartPolicy"] == "Never"


@pytest.mark.parametrize("variant", VARIANTS)
def test_reconcile_cronjob_runs_as_the_reconciler_account(variant: str) -> None:
    """The service account of rbac-ipam-reconciler.yaml, in its namespace; the ConfigMap beside the CronJob."""
    sa = one(VARIANTS[variant] / "rbac-ipam-reconciler.yaml", "ServiceAccount")
    cj = cronjob(variant)
    assert job_pod(cj)["serviceAccountName"] == sa["metadata"]["name"] == "multiplane-ipam-reconciler"
    assert cj["metadata"]["namespace"] == sa["metadata"]["namespace"]
    assert one(VARIANTS[variant] / CRONJOB, "ConfigMap")["metadata"]["namespace"] == sa["metadata"]["namespace"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_reconcile_cronjob_config_is_what_the_reconciler_reads(variant: str, tmp_path: Path) -> None:
    """--config is a key of the ConfigMap mounted in the pod, and the reconciler's own loader finds cluster IPAM
    sections in it whose store is the Kubernetes API (which --in-cluster points at this pod's service account)."""
    cj = cronjob(variant)
    pod, c = job_pod(cj), reconcile_container(cj)
    path = reconcile_args(cj).config
    mounts = [m for m in c["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/")]
    assert len(mounts) == 1, f"--config {path} is on no single volume mount"
    volume = next(v for v in pod["volumes"] if v["name"] == mounts[0]["name"])
    configmap = one(VARIANTS[variant] / CRONJOB, "ConfigMap")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    key = path[len(mounts[0]["mountPath"].rstrip("/")) + 1 :]
    assert key in configmap["data"], f"the ConfigMap has no key {key}"
    copy = tmp_path / key
    copy.write_text(configmap["data"][key])
    confs = ipam_tool.load_confs(str(copy))
    assert confs
    for conf in confs:
        assert conf.etcd is None, "an etcd store needs its client certificates mounted, which this pod does not do"
        assert conf.pools


@pytest.mark.parametrize("variant", VARIANTS)
def test_reconcile_cronjob_needs_no_privilege(variant: str) -> None:
    """No host namespace, no hostPath, no capability, read-only root, not root; the runtime unpacks into /tmp, an
    emptyDir, as in the DaemonSets; on OpenShift the restricted SCC admits the pod (it picks the user)."""
    cj = cronjob(variant)
    pod, c = job_pod(cj), reconcile_container(cj)
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(key), key
    kinds = {next(k for k in v if k != "name") for v in pod["volumes"]}
    assert kinds <= RESTRICTED_SCC_VOLUMES, kinds
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]} and not sc.get("privileged")
    assert pod["securityContext"]["runAsNonRoot"] is True
    if variant == "openshift":  # MustRunAsRange: a fixed user outside the project's range is refused
        assert "runAsUser" not in pod["securityContext"] and "runAsUser" not in sc
    else:  # the image (FROM scratch) names no user, so runAsNonRoot needs one
        assert pod["securityContext"]["runAsUser"] > 0
    volumes = {v["name"]: v for v in pod["volumes"]}
    tmp = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(tmp) == 1 and "emptyDir" in volumes[tmp[0]["name"]]
    assert {"name": "MULTIPLANE_UNPACK_DIR", "value": "/tmp/multiplane"} in c["env"]
    assert all(m.get("readOnly") for m in c["volumeMounts"] if m["mountPath"] != "/tmp")


def test_reconcile_cronjob_variants_run_the_same_container() -> None:
    """Both variants run the same container, volumes and ConfigMap, on the same schedule; OpenShift 3.11 serves
    CronJob as batch/v1beta1 only."""
    k8s, osh = cronjob("kubernetes"), cronjob("openshift")
    assert (k8s["apiVersion"], osh["apiVersion"]) == ("batch/v1", "batch/v1beta1")
    assert reconcile_container(k8s) == reconcile_container(osh)
    assert job_pod(k8s)["volumes"] == job_pod(osh)["volumes"]
    assert {k: v for k, v in k8s["spec"].items() if k != "jobTemplate"} == {
        k: v for k, v in osh["spec"].items() if k != "jobTemplate"
    }
    assert (
        k8s["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"]
        == (osh["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"])
    )
    assert one(K8S / CRONJOB, "ConfigMap")["data"] == one(OPENSHIFT / CRONJOB, "ConfigMap")["data"]
