"""`multiplane doctor`: check one node for what would make its pods fail, and say what to do.

Every check ends in one status, a one-line finding and (unless it is ok) what to do:

* ``ok``;
* ``warning``: it works, but not as intended (a self-contained file in the bin dir, a NAD
  that a running pod names and that no longer exists, a right the plugin can do without);
* ``fail``: pods on this node would fail (the exit status is then 1).

The checks, by group (docs/doctor.md explains each one):

* config: the CNI config dir exists; `00-multiplane.conf` is there, valid, and the first
  file the runtime reads (libcni's order: `.conf`, `.conflist`, `.json`, lexical); it wraps
  a primary network that exists, is valid and is not a meta-plugin; `defaultNetworks`
  resolve; no Multus configuration is on the node (both would attach networks);
* plugins: every delegate type the configuration can reach (the cluster network, default
  networks, the NADs of this node's pods, or every local NAD file without a cluster; the
  IPAM types too) is an executable file in `binDir` or the CNI bin dir. `macvlan`,
  `host-local` and `multiplane-*` run in-process and need no binary, but the IPAM of an
  external plugin is executed by that plugin, so `bridge` + `host-local` needs both files;
* networks: the pods on this node (API: `fieldSelector=spec.nodeName=<node>`), the NADs
  their annotations name, and the master NIC of each (`macvlan`, `ipvlan`, or any plugin
  with a `master` key; no `master`: the default-route interface): it exists, is up, and its
  MTU is at least the NAD's `mtu`;
* api: the kubeconfig named in `00-multiplane.conf` (or `--kubeconfig`) reaches the API, and
  SelfSubjectAccessReview says the plugin may get pods, get NADs, update pods/status and
  create events;
* readiness: the `readinessindicatorfile`, when configured, is present;
* runtime: the launcher in the CNI bin dir, `.multiplane/current` → a complete tree whose
  files match its MANIFEST (sha256, size, mode) and whose MANIFEST matches its build id;
  the plugin links. The node daemon is not checked: it does not exist yet.

Paths: `--root` reads every node path (the flags, and the paths written in
`00-multiplane.conf` and in its kubeconfig) under a directory, as `install --root` does;
findings show node paths. `--kubeconfig` is an operator's file, read as given. Nothing is
written anywhere; the API only sees GETs and SelfSubjectAccessReviews (which store nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import stat
import sys

from multiplane.errors import CniError, InvalidConfig
from multiplane.installer import BINARY, CONF_NAME
from multiplane.spec.gojson import field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from multiplane.k8s.client import KubeClient
    from multiplane.plugins.meta.config import MetaConf
    from multiplane.plugins.meta.networks import NetworkConfig

__all__ = ["FAIL", "OK", "WARNING", "Check", "Doctor", "build_parser", "main", "report"]

OK, WARNING, FAIL = "ok", "warning", "fail"
# Output order and titles of the groups.
GROUPS = {
    "config": "CNI configuration",
    "plugins": "delegate plugins (CNI bin dir)",
    "networks": "networks of this node's pods (master NICs)",
    "api": "Kubernetes API and RBAC",
    "readiness": "readiness indicator file",
    "runtime": "installed runtime",
}
# The files a runtime considers, as libcni's ConfFiles lists them for containerd and CRI-O.
RUNTIME_SUFFIXES = (".conf", ".conflist", ".json")
META_TYPES = frozenset({"multiplane", "multus", "multus-shim"})
MULTUS_TYPES = frozenset({"multus", "multus-shim"})
MASTER_TYPES = frozenset({"macvlan", "multiplane-macvlan", "ipvlan"})
ACCESS_REVIEW = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
# (verb, API group, resource, subresource, status when denied, what breaks)
RIGHTS = (
    ("get", "", "pods", "", FAIL, "the plugin cannot read pods: every ADD fails"),
    (
        "get",
        "k8s.cni.cncf.io",
        "network-attachment-definitions",
        "",
        FAIL,
        "the plugin cannot read NADs: every pod that selects a network fails",
    ),
    (
        "update",
        "",
        "pods",
        "status",
        FAIL,
        "the plugin cannot write network-status: every ADD is rolled back and fails",
    ),
    ("create", "", "events", "", WARNING, "the plugin cannot record events on pods (pods still start)"),
)


class Check:
    """One finding: `id` is `<group>.<what>` (stable, for scripts), `action` is empty when ok."""

    __slots__ = ("id", "group", "status", "finding", "action")

    def __init__(self, check_id: str, status: str, finding: str, action: str = "") -> None:
        if status not in (OK, WARNING, FAIL):
            raise ValueError(f"unknown status {status!r}")
        self.id, self.status, self.finding, self.action = check_id, status, finding, action
        self.group = check_id.split(".", 1)[0]

    def as_dict(self) -> dict[str, str]:
        return {
            "id": self.id,
            "group": self.group,
            "status": self.status,
            "finding": self.finding,
            "action": self.action,
        }

    def __repr__(self) -> str:
        return f"<Check {self.id} {self.status}: {self.finding}>"


class _Network:
    """A delegate network the configuration can reach: what to call it, its config, who uses it."""

    __slots__ = ("label", "config", "users")

    def __init__(self, label: str, config: NetworkConfig, users: list[str] | None = None) -> None:
        self.label, self.config, self.users = label, config, users or []


class _Unknown(Exception):
    """A fact the doctor cannot learn (the API is down): the check is a warning, not a verdict."""


def _runtime_files(conf_dir: str) -> list[str]:
    """The names a runtime reads in `conf_dir`, in its order (the first one is used)."""
    names = []
    for name in sorted(os.listdir(conf_dir)):
        if not name.endswith(RUNTIME_SUFFIXES):
            continue
        try:
            if stat.S_ISDIR(os.lstat(os.path.join(conf_dir, name)).st_mode):
                continue  # libcni skips directories only (lstat: a link to one is kept)
        except OSError:
            continue
        names.append(name)
    return names


def _types(doc: Any) -> list[str]:
    """The plugin types of a CNI config or conflist (empty when it is neither)."""
    if not isinstance(doc, dict):
        return []
    plugins = field(doc, "plugins")
    if isinstance(plugins, list):
        return [str(field(p, "type")) for p in plugins if isinstance(p, dict) and field(p, "type")]
    kind = field(doc, "type")
    return [kind] if isinstance(kind, str) and kind else []


def _listing(items: list[str], most: int = 3) -> str:
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


class Doctor:
    """Runs the checks of one node; `run()` returns them in output order."""

    def __init__(
        self,
        *,
        conf_dir: str = "/etc/cni/net.d",
        bin_dir: str = "/opt/cni/bin",
        root: str = "",
        node: str = "",
        kubeconfig: str = "",
    ) -> None:
        self.conf_dir, self.bin_dir = os.path.abspath(conf_dir), os.path.abspath(bin_dir)
        self.root = os.path.abspath(root) if root else ""
        self.node = node or socket.gethostname().lower()  # the kubelet's default node name
        self.kubeconfig = kubeconfig
        self.checks: list[Check] = []
        self.meta: MetaConf | None = None
        self.client: KubeClient | None = None
        self.api = "none"  # "none": no kubeconfig (local files); "up"; "down"
        self.networks: list[_Network] = []

    # ---- paths ----

    def real(self, path: str) -> str:
        """Where the node path `path` is on this machine (under --root)."""
        path = os.path.abspath(path)
        return os.path.join(self.root, path.lstrip("/")) if self.root else path

    def _unroot(self, text: str) -> str:
        return text.replace(self.root + "/", "/") if self.root else text

    def add(self, check_id: str, status: str, finding: str, action: str = "") -> Check:
        one_line = " ".join(self._unroot(finding).split("\n"))
        check = Check(check_id, status, one_line, self._unroot(action))
        self.checks.append(check)
        return check

    @property
    def conf(self) -> MetaConf:
        """The parsed 00-multiplane.conf, for the steps that run only once it parsed."""
        if self.meta is None:
            raise RuntimeError("00-multiplane.conf has not been parsed")
        return self.meta

    # ---- the run ----

    def run(self) -> list[Check]:
        steps = [
            ("config", self.check_config),
            ("config", self.check_multus),
            ("api", self.check_api),
            ("config", self.check_primary),
            ("networks", self.collect_networks),
            ("plugins", self.check_plugins),
            ("networks", self.check_masters),
            ("readiness", self.check_readiness),
            ("runtime", self.check_runtime),
        ]
        for group, step in steps:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - a bug in one check must not hide the others
                import traceback

                traceback.print_exc(file=sys.stderr)
                self.add(
                    f"{group}.internal",
                    WARNING,
                    f"not checked: internal error in {step.__name__}: {type(exc).__name__}: {exc}",
                    "report this with the traceback printed on stderr",
                )
        order = list(GROUPS)
        return sorted(self.checks, key=lambda c: order.index(c.group))

    # ---- config ----

    def check_config(self) -> None:
        from multiplane.plugins.meta.config import MetaConf
        from multiplane.spec.netconf import NetConf

        conf_dir = self.real(self.conf_dir)
        if not os.path.isdir(conf_dir):
            self.add(
                "config.dir",
                FAIL,
                f"{self.conf_dir} does not exist: the runtime has no network configuration",
                "install the node's primary network plugin, then run `multiplane install`",
            )
            return
        names = _runtime_files(conf_dir)
        if CONF_NAME not in names:
            what = f"the runtime calls {names[0]} directly" if names else "the runtime has no network configuration"
            self.add(
                "config.multiplane",
                FAIL,
                f"no {CONF_NAME} in {self.conf_dir}: {what}, so pods get no secondary networks",
                "run `multiplane install` on this node (the DaemonSet's init container does)",
            )
            return
        path = os.path.join(conf_dir, CONF_NAME)
        try:
            with open(path, "rb") as fh:
                conf = NetConf.parse(fh.read())
            if conf.type != BINARY:
                raise InvalidConfig(f"its type is {conf.type!r}, not {BINARY!r}")
            self.meta = MetaConf(conf)
        except OSError as exc:
            self.add("config.multiplane", FAIL, f"cannot read {CONF_NAME}: {exc.strerror}", "run `multiplane install`")
            return
        except CniError as exc:
            self.add(
                "config.multiplane",
                FAIL,
                f"{CONF_NAME} is not valid: {exc}: every pod fails",
                "run `multiplane install` again (or fix the key named; docs/meta-plugin.md lists them)",
            )
            return
        where = f"clusterNetwork {self.meta.cluster_network}" if self.meta.cluster_network else "inline delegates"
        self.add("config.multiplane", OK, f"{CONF_NAME} is valid (cniVersion {conf.cni_version}, {where})")
        if names[0] != CONF_NAME:
            self.add(
                "config.order",
                FAIL,
                f"{names[0]} sorts before {CONF_NAME} in {self.conf_dir}: the runtime uses it and never calls multiplane",
                f"remove or rename {names[0]} so that {CONF_NAME} is the first .conf/.conflist/.json file",
            )
        else:
            self.add("config.order", OK, f"{CONF_NAME} is the first of {len(names)} configuration files")

    def check_multus(self) -> None:
        conf_dir = self.real(self.conf_dir)
        if not os.path.isdir(conf_dir):
            return
        found = []
        for name in _runtime_files(conf_dir):
            try:
                with open(os.path.join(conf_dir, name), "rb") as fh:
                    types = _types(json.loads(fh.read()))
            except (OSError, ValueError):
                types = []
            multus = sorted(set(types) & MULTUS_TYPES)
            if multus:
                found.append(f"{name} ({', '.join(multus)})")
            elif "multus" in name.lower():
                found.append(name)
        if found:
            self.add(
                "config.multus",
                FAIL,
                f"Multus configuration in {self.conf_dir}: {_listing(found)}: Multus and multiplane would both attach networks",
                "remove Multus first (its DaemonSet, then its files in the CNI config and bin dirs), then run `multiplane install`",
            )
        else:
            self.add("config.multus", OK, f"no Multus configuration in {self.conf_dir}")

    def _nad(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The NAD as the plugin would read it (API or local files); None if there is none."""
        from multiplane.k8s.errors import NotFound
        from multiplane.plugins.meta.networks import load_nad_manifests

        if self.client is not None:
            try:
                return self.client.get_nad(namespace, name)
            except NotFound:
                return None
        if self.api == "down":
            raise _Unknown(f'cannot look NAD "{namespace}/{name}" up: the API is unreachable')
        for doc in load_nad_manifests(self.real(self.conf.local_nad_dir), strict=True):
            meta = doc.get("metadata") or {}
            if meta.get("name") == name and meta.get("namespace", namespace) == namespace:
                return doc
        return None

    def _resolve(self, value: str, namespace: str) -> tuple[str, NetworkConfig]:
        """A clusterNetwork/defaultNetworks value → (what to call it, config), as the plugin resolves it."""
        from multiplane.plugins.meta.networks import conf_by_name, conf_files, load_file, nad_config

        conf = self.conf
        conf_dir = self.real(conf.conf_dir)
        if "/" not in value:
            nad = self._nad(namespace, value)
            if nad is not None:
                return f"NAD {namespace}/{value}", nad_config(nad, conf_dir)
            found = conf_by_name(conf_dir, value)
            if found is None:
                raise InvalidConfig(f'no NAD "{namespace}/{value}" and no CNI file named {value!r} in {conf.conf_dir}')
            return f"{value!r} in {conf.conf_dir}", found
        real = self.real(value)
        if os.path.isdir(real):
            files = [p for p in conf_files(real) if not os.path.basename(p).startswith("00-multiplane")]
            if not files:
                raise InvalidConfig(f"no CNI configuration in the directory {value}")
            return self._unroot(files[0]), load_file(files[0])
        if os.path.isfile(real):
            return value, load_file(real)
        raise InvalidConfig(f"{value}: no such file or directory")

    def check_primary(self) -> None:
        from multiplane.plugins.meta.networks import NetworkConfig

        meta = self.meta
        if meta is None:
            return
        if meta.cluster_network:
            try:
                shown, net = self._resolve(meta.cluster_network, meta.namespace)
            except _Unknown as exc:
                self.add("config.primary", WARNING, f"not checked: {exc}", "see the API check")
                return
            except (CniError, OSError) as exc:
                self.add(
                    "config.primary",
                    FAIL,
                    f"the cluster network (clusterNetwork {meta.cluster_network}) cannot be loaded: {exc}: every pod fails",
                    "restore the primary network's configuration (its plugin writes it), "
                    "or run `multiplane install` again to wrap the current one",
                )
                return
        else:
            first = meta.delegates[0]
            try:
                shown, net = "delegates[0]", NetworkConfig(json.dumps(first).encode(), first, "delegates[0]")
            except CniError as exc:
                self.add("config.primary", FAIL, f"the cluster network is not usable: {exc}: every pod fails")
                return
        types = [str(field(p, "type")) for p in net.plugins]
        wrapped = sorted(set(types) & META_TYPES)
        if wrapped:
            self.add(
                "config.primary",
                FAIL,
                f"the cluster network {shown} is a meta-plugin ({', '.join(wrapped)}): it would attach networks again",
                "point clusterNetwork at the primary network's own configuration: remove Multus, then run `multiplane install`",
            )
            return
        self.add("config.primary", OK, f"wraps {shown}: network {net.name or '-'} ({', '.join(types)})")
        self.networks.append(_Network(f"cluster network {net.name or shown}", net))

    # ---- api ----

    def check_api(self) -> None:
        from multiplane.k8s.client import KubeClient, load_kubeconfig

        if self.kubeconfig:
            path, shown, rooted = self.kubeconfig, self.kubeconfig, False
        elif self.meta is None:
            self.add(
                "api.reach", WARNING, f"not checked: no usable {CONF_NAME} names a kubeconfig", "see the config checks"
            )
            return
        elif not self.meta.kubeconfig:
            self.add(
                "api.reach",
                OK,
                f"no kubeconfig in {CONF_NAME}: the plugin reads NADs from {self.meta.local_nad_dir} "
                f"and pods from {self.meta.local_pod_dir}, not from the API",
            )
            return
        else:
            path, shown, rooted = self.real(self.meta.kubeconfig), self.meta.kubeconfig, True
        try:
            cfg = load_kubeconfig(path)
            if rooted:  # the files it names are node paths too
                for attr in ("ca_file", "cert_file", "key_file", "token_file"):
                    value = getattr(cfg, attr)
                    if value and not (self.root and value.startswith(self.root + "/")):
                        setattr(cfg, attr, self.real(value))
            client = KubeClient(cfg, timeout=5.0, retry_budget=1.0)
        except CniError as exc:
            self.api = "down"
            self.add(
                "api.reach",
                FAIL,
                f"cannot use the kubeconfig {shown}: {exc}: every ADD fails",
                "run `multiplane install` again (it writes the kubeconfig), or fix the file",
            )
            return
        self._check_rights(client, cfg.server, shown)

    def _review(self, client: KubeClient, verb: str, group: str, resource: str, sub: str) -> tuple[bool, str]:
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"verb": verb, "group": group, "resource": resource, "subresource": sub}},
        }
        data = client.request("POST", ACCESS_REVIEW, "selfsubjectaccessreviews.authorization.k8s.io", body=body)
        status = data.get("status") if isinstance(data, dict) else None
        if not isinstance(status, dict):
            return False, "the review came back without a status"
        return status.get("allowed") is True, str(status.get("reason") or "")

    def _check_rights(self, client: KubeClient, server: str, shown: str) -> None:
        from multiplane.k8s.errors import ApiError

        reached = False
        for verb, group, resource, sub, denied, breaks in RIGHTS:
            right = f"{verb} {resource}" + (f"/{sub}" if sub else "")
            check_id = f"api.rbac.{verb}-{resource}" + (f"-{sub}" if sub else "")
            try:
                allowed, reason = self._review(client, verb, group, resource, sub)
            except ApiError as exc:
                if not reached and (exc.status in (0, 401) or exc.status >= 500):
                    self.api = "down"
                    action = (
                        "the token is wrong or expired: check that the DaemonSet's token-refresh container runs "
                        "(it keeps the token copy next to the kubeconfig fresh)"
                        if exc.status == 401
                        else f"check that this node reaches {server} (routes, firewall, the API server itself)"
                    )
                    self.add("api.reach", FAIL, f"{exc} (credentials from {shown}): every ADD fails", action)
                    return
                if not reached:
                    reached = True
                    self.add("api.reach", OK, f"{server} answers (credentials from {shown})")
                self.add(check_id, WARNING, f"cannot ask whether the plugin may {right}: {exc}", "check RBAC by hand")
                continue
            if not reached:
                reached = True
                self.api, self.client = "up", client
                self.add("api.reach", OK, f"{server} answers (credentials from {shown})")
            if allowed:
                self.add(check_id, OK, f"may {right}")
            else:
                why = f" ({reason})" if reason else ""
                self.add(
                    check_id,
                    denied,
                    f"may not {right}{why}: {breaks}",
                    f"apply packaging/k8s/rbac.yaml (its ClusterRole must allow {verb} on {resource}"
                    + (f"/{sub}" if sub else "")
                    + (f" in API group {group}" if group else "")
                    + ")",
                )
        self.api, self.client = "up", client

    # ---- the networks pods use ----

    def collect_networks(self) -> None:
        meta = self.meta
        if meta is None:
            return
        failed = []
        for value in meta.default_networks:
            try:
                shown, net = self._resolve(value, meta.namespace)
            except _Unknown as exc:
                self.add("config.default-networks", WARNING, f"not checked: {exc}", "see the API check")
                failed.append(value)
                continue
            except (CniError, OSError) as exc:
                failed.append(value)
                self.add(
                    "config.default-networks",
                    FAIL,
                    f"defaultNetworks entry {value!r} cannot be loaded: {exc}: "
                    f"every pod outside {', '.join(meta.system_namespaces) or 'the system namespaces'} fails",
                    "create the NAD or CNI file it names, or remove it from defaultNetworks",
                )
                continue
            self.networks.append(_Network(f"default network {shown}", net))
        if meta.default_networks and not failed:
            self.add("config.default-networks", OK, f"defaultNetworks resolve: {', '.join(meta.default_networks)}")
        if self.client is not None:
            self._pod_networks()
        elif self.api == "down":
            self.add(
                "networks.pods",
                WARNING,
                f"not checked: the API is unreachable, so the pods on node {self.node} are unknown",
                "see the API check",
            )
        else:
            self._local_networks()

    def _local_networks(self) -> None:
        from multiplane.plugins.meta.networks import load_nad_manifests, nad_config

        conf = self.conf
        nad_dir = conf.local_nad_dir
        nads = list(load_nad_manifests(self.real(nad_dir)))
        self.add("networks.pods", OK, f"no kubeconfig: checking every NAD in {nad_dir} ({len(nads)})")
        for doc in nads:
            name = str((doc.get("metadata") or {}).get("name") or "?")
            try:
                net = nad_config(doc, self.real(conf.conf_dir))
            except CniError as exc:
                self.add(
                    f"networks.nad.{name}",
                    FAIL,
                    f"local NAD {name} is not usable: {exc}: pods selecting it fail",
                    f"fix its manifest in {nad_dir}",
                )
                continue
            self.networks.append(_Network(f"NAD {name}", net))

    def _pod_networks(self) -> None:
        import urllib.parse

        from multiplane.k8s.errors import ApiError
        from multiplane.plugins.meta import selection

        conf, client = self.conf, self.client
        if client is None:
            raise RuntimeError("_pod_networks runs only with a client")
        query = urllib.parse.urlencode({"fieldSelector": f"spec.nodeName={self.node}"})
        try:
            data = client.request("GET", f"/api/v1/pods?{query}", f"pods on node {self.node}")
        except ApiError as exc:
            action = (
                "grant `list` on pods to the plugin's service account (packaging/k8s/rbac.yaml), "
                "or run doctor with --kubeconfig of a user who may list pods"
                if exc.status == 403
                else "see the API check"
            )
            self.add("networks.pods", WARNING, f"cannot list the pods on node {self.node}: {exc}", action)
            return
        pods = data.get("items") if isinstance(data, dict) else None
        users: dict[tuple[str, str], list[str]] = {}
        by_default_annotation: set[tuple[str, str]] = set()
        for pod in pods if isinstance(pods, list) else []:
            meta = pod.get("metadata") if isinstance(pod, dict) else None
            if not isinstance(meta, dict):
                continue
            ns, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "?")
            annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
            chosen, default = [], []
            try:
                chosen = selection.parse(str(annotations.get(selection.NETWORKS_ANNOTATION) or ""), ns)
                value = str(annotations.get(selection.DEFAULT_NETWORK_ANNOTATION) or "")
                default = selection.parse(value, conf.namespace)
            except CniError as exc:
                self.add(
                    f"networks.pod.{ns}/{name}",
                    WARNING,
                    f"pod {ns}/{name} has an annotation the plugin refuses: {exc}",
                    "fix the pod's annotation (`multiplane validate` checks one)",
                )
            for item in chosen + default:
                users.setdefault((item.namespace, item.name), []).append(f"{ns}/{name}")
            by_default_annotation.update((item.namespace, item.name) for item in default)
        count = len(pods) if isinstance(pods, list) else 0
        nads = [f"{ns}/{name}" for ns, name in sorted(users)]
        self.add(
            "networks.pods",
            OK,
            f"{count} pod{'' if count == 1 else 's'} on node {self.node}; "
            f"the NADs they select: {_listing(nads, 5) if nads else 'none'}",
        )
        for (ns, name), who in sorted(users.items()):
            self._pod_nad(ns, name, who, (ns, name) in by_default_annotation)

    def _pod_nad(self, ns: str, name: str, who: list[str], may_be_file: bool) -> None:
        """One network pods select; `may_be_file`: named by the default-network annotation, which may name a CNI file."""
        from multiplane.plugins.meta.networks import conf_by_name, nad_config

        conf_dir = self.real(self.conf.conf_dir)
        used_by = f"used by {_listing(who)}"
        try:
            nad = self._nad(ns, name)
            if nad is not None:
                net = nad_config(nad, conf_dir)
            else:
                found = conf_by_name(conf_dir, name) if may_be_file else None
                if found is None:
                    self.add(
                        f"networks.nad.{ns}/{name}",
                        WARNING,
                        f"NAD {ns}/{name} ({used_by}) does not exist: those pods cannot be created again",
                        f"create the NAD {ns}/{name} or change the pods' annotations",
                    )
                    return
                net = found
        except CniError as exc:
            self.add(
                f"networks.nad.{ns}/{name}",
                WARNING,
                f"NAD {ns}/{name} ({used_by}) is not usable: {exc}",
                "fix the NAD (`multiplane validate` checks one)",
            )
            return
        self.networks.append(_Network(f"NAD {ns}/{name}", net, who))

    def check_masters(self) -> None:
        uses: list[tuple[str, str, int]] = []  # (network, master as configured, its mtu)
        for net in self.networks:
            for plugin in net.config.plugins:
                if field(plugin, "type") not in MASTER_TYPES and field(plugin, "master") is None:
                    continue
                if field(plugin, "linkInContainer") is True:
                    continue  # the master is in the pod's namespace, not on the node
                master = field(plugin, "master")
                mtu = field(plugin, "mtu")
                needed = mtu if isinstance(mtu, int) and not isinstance(mtu, bool) else 0
                uses.append((net.label, master if isinstance(master, str) else "", needed))
        if not uses:
            if self.networks:
                self.add("networks.masters", OK, "no network of this node has a master NIC")
            return
        from multiplane.netlink import links
        from multiplane.netlink.rtnl import Rtnl

        try:
            rtnl = Rtnl()
        except (CniError, OSError) as exc:
            self.add("networks.masters", WARNING, f"cannot read the node's links: {exc}", "run doctor on the node")
            return
        with rtnl:
            default = links.default_route_interface(rtnl) if any(not m for _, m, _ in uses) else None
            by_name: dict[str, list[tuple[str, int]]] = {}
            implicit: set[str] = set()  # names reached as the default-route interface
            orphans = []
            for label, master, mtu in uses:
                name = master or default
                if not name:
                    orphans.append(label)
                    continue
                if not master:
                    implicit.add(name)
                by_name.setdefault(name, []).append((label, mtu))
            if orphans:
                self.add(
                    "networks.master.default-route",
                    FAIL,
                    f"no default route, and {_listing(sorted(set(orphans)))} name no master: their pods fail",
                    "set `master` in those networks' configs",
                )
            for name, users in sorted(by_name.items()):
                shown = f"{name} (the default-route interface)" if name in implicit else name
                self._check_master(links.get_link(rtnl, name), name, shown, users)

    def _check_master(self, link: Any, name: str, shown: str, users: list[tuple[str, int]]) -> None:
        labels = _listing(sorted({label for label, _ in users}))
        if link is None:
            self.add(
                f"networks.master.{name}",
                FAIL,
                f"master NIC {shown} does not exist on this node: pods on {labels} fail",
                f"create {name} on this node or change `master` in those networks",
            )
            return
        if not link.up:
            self.add(
                f"networks.master.{name}",
                FAIL,
                f"master NIC {shown} is down: pods on {labels} fail",
                f"bring it up (`ip link set {name} up`) and make that persistent in the node's network configuration",
            )
            return
        needed = max(mtu for _, mtu in users)
        if needed > link.mtu:
            big = _listing(sorted({label for label, mtu in users if mtu > link.mtu}))
            self.add(
                f"networks.master.{name}",
                FAIL,
                f"master NIC {shown} has MTU {link.mtu}, below the mtu {needed} of {big}: their pods fail",
                f"raise the MTU of {name} to {needed} or lower `mtu` in those networks",
            )
            return
        self.add(f"networks.master.{name}", OK, f"{shown}: up, MTU {link.mtu} (used by {labels})")

    # ---- plugins ----

    def check_plugins(self) -> None:
        from multiplane.plugins.delegation import BUILTINS

        meta = self.meta
        if meta is None:
            self.add("plugins.delegates", WARNING, f"not checked: no usable {CONF_NAME}", "see the config checks")
            return
        needed: dict[str, list[str]] = {}
        inproc: dict[str, list[str]] = {}
        for net in self.networks:
            for plugin in net.config.plugins:
                kind = str(field(plugin, "type"))
                builtin = kind in BUILTINS
                (inproc if builtin else needed).setdefault(kind, []).append(net.label)
                ipam = field(plugin, "ipam")
                ipam_type = field(ipam, "type") if isinstance(ipam, dict) else None
                if isinstance(ipam_type, str) and ipam_type:
                    # A built-in runs its IPAM through us (in-process for built-in types); an
                    # external plugin executes its IPAM binary itself, from CNI_PATH.
                    table = inproc if builtin and ipam_type in BUILTINS else needed
                    table.setdefault(ipam_type, []).append(f"{net.label} as IPAM of {kind}")
        dirs = list(dict.fromkeys([meta.bin_dir, self.bin_dir]))
        for kind in sorted(needed):
            self._check_binary(kind, sorted(set(needed[kind])), dirs)
        if inproc:
            self.add("plugins.in-process", OK, f"in-process, no binary needed: {', '.join(sorted(inproc))}")
        if not needed and not inproc:
            self.add("plugins.delegates", OK, "no delegate network is known to check")

    def _check_binary(self, kind: str, users: list[str], dirs: list[str]) -> None:
        using = f"used by {_listing(users)}"
        for directory in dirs:
            path = os.path.join(directory, kind)
            try:
                st = os.stat(self.real(path))
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            if not st.st_mode & 0o111:
                self.add(
                    f"plugins.{kind}",
                    FAIL,
                    f"{path} is not executable ({using}): these networks fail",
                    f"chmod 0755 {path}",
                )
            else:
                self.add(f"plugins.{kind}", OK, f"{path} ({using})")
            return
        self.add(
            f"plugins.{kind}",
            FAIL,
            f"plugin {kind!r} is not in {' or '.join(dirs)} ({using}): these networks fail",
            f"install the {kind} CNI plugin into {dirs[-1]} (e.g. Debian's containernetworking-plugins "
            "or the vendor's DaemonSet)",
        )

    # ---- readiness ----

    def check_readiness(self) -> None:
        meta = self.meta
        if meta is None:
            return
        path = meta.readiness_file
        if not path:
            self.add(
                "readiness.file", OK, "no readinessindicatorfile configured: ADD does not wait for the cluster network"
            )
        elif os.path.exists(self.real(path)):
            self.add("readiness.file", OK, f"{path} is present")
        else:
            self.add(
                "readiness.file",
                FAIL,
                f"{path} is missing: ADD, GC and STATUS wait 45 s for it, then fail",
                "check that the cluster network's own agent runs on this node (it writes this file when ready), "
                "or fix readinessindicatorfile (`multiplane install --readiness-indicator-file`)",
            )

    # ---- runtime ----

    def check_runtime(self) -> None:
        bin_dir = self.real(self.bin_dir)
        self._check_launcher_and_tree(bin_dir)
        if os.path.isfile(os.path.join(bin_dir, BINARY)):
            self._check_links(bin_dir)

    def _check_launcher_and_tree(self, bin_dir: str) -> None:
        from multiplane.runtime import layout, payload

        shown = os.path.join(self.bin_dir, BINARY)
        launcher = os.path.join(bin_dir, BINARY)
        try:
            st = os.stat(launcher)
        except OSError:
            self.add(
                "runtime.launcher",
                FAIL,
                f"{shown} is missing: the runtime cannot run the plugin of {CONF_NAME}, every pod fails",
                "run `multiplane install` (the DaemonSet's init container does)",
            )
            return
        if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
            self.add(
                "runtime.launcher", FAIL, f"{shown} is not an executable file: every pod fails", f"chmod 0755 {shown}"
            )
            return
        try:
            trailer = payload.trailer_of(launcher)
        except (OSError, payload.PayloadError) as exc:
            self.add("runtime.launcher", FAIL, f"{shown} is damaged: {exc}", "run `multiplane install` again")
            return
        if trailer is not None:
            self.add(
                "runtime.launcher",
                WARNING,
                f"{shown} is the self-contained file (build {trailer[2]}): it works, "
                "and unpacks its runtime once per build into /var/lib/cni/multiplane/run",
                f"lay the runtime down beside it: `{shown} install` (or the DaemonSet), see docs/binary.md",
            )
            return
        current = os.path.join(bin_dir, layout.RUNTIME_DIR, "current")
        current_shown = os.path.join(self.bin_dir, layout.RUNTIME_DIR, "current")
        build = layout.current(bin_dir)
        tree = os.path.realpath(current) if build is not None else ""
        self._compare_launcher(launcher, shown, tree, build)
        if build is None:
            self.add(
                "runtime.tree",
                FAIL,
                f"{current_shown} is missing: the launcher has no runtime to start, every pod fails",
                "run `multiplane install`",
            )
            return
        if not os.path.isdir(tree):
            self.add(
                "runtime.tree",
                FAIL,
                f"{current_shown} points at {build}, which does not exist: every pod fails",
                "run `multiplane install`",
            )
            return
        from multiplane.runtime.layout import verify

        count, problems = verify(tree, os.path.basename(tree))
        if problems:
            self.add(
                "runtime.tree",
                FAIL,
                f"the runtime tree {build} does not match its MANIFEST: {_listing(problems)}: "
                "calls run modified files or do not start",
                "install the runtime again: `multiplane uninstall` then `multiplane install` "
                "(install leaves an existing complete tree of the same build alone), and find what changed it",
            )
        else:
            self.add("runtime.tree", OK, f"{current_shown} -> {build}: complete, {count} files match the MANIFEST")

    def _compare_launcher(self, launcher: str, shown: str, tree: str, build: str | None) -> None:
        """The launcher in the bin dir should be the one of the build `current` names."""
        try:
            with open(os.path.join(tree, "launcher"), "rb") as fh:
                expected = fh.read()
            with open(launcher, "rb") as fh:
                same = fh.read() == expected
        except OSError:
            self.add("runtime.launcher", OK, f"{shown} is the launcher (it starts .multiplane/current)")
            return  # no tree, or one without its launcher copy: the tree check says so
        if same:
            self.add("runtime.launcher", OK, f"{shown} is the launcher of build {build}")
        else:
            self.add(
                "runtime.launcher",
                WARNING,
                f"{shown} is not the launcher of build {build} (an older or newer one)",
                "run `multiplane install` again so both come from one build",
            )

    def _check_links(self, bin_dir: str) -> None:
        from multiplane.plugins import REGISTRY

        launcher = os.path.join(bin_dir, BINARY)
        missing = []
        for name in sorted(n for n in REGISTRY if n != BINARY):
            try:
                if os.path.samefile(os.path.join(bin_dir, name), launcher):
                    continue
            except OSError:
                pass
            missing.append(name)
        if missing:
            self.add(
                "runtime.links",
                WARNING,
                f"{', '.join(missing)} in {self.bin_dir} missing or not the launcher: "
                "the meta-plugin does not need them; a runtime or cnitool calling them directly fails",
                "run `multiplane install` (it creates the links)",
            )
        else:
            self.add("runtime.links", OK, f"{', '.join(n for n in sorted(REGISTRY) if n != BINARY)} -> {BINARY}")


# ---- output -------------------------------------------------------------------------------------


def report(checks: list[Check], node: str, conf_dir: str, bin_dir: str) -> dict[str, Any]:
    """The JSON document of `--json`."""
    counts = {OK: 0, WARNING: 0, FAIL: 0}
    for check in checks:
        counts[check.status] += 1
    status = FAIL if counts[FAIL] else WARNING if counts[WARNING] else OK
    return {
        "node": node,
        "cniConfDir": conf_dir,
        "cniBinDir": bin_dir,
        "status": status,
        "counts": counts,
        "checks": [c.as_dict() for c in checks],
    }


_LABELS = {OK: "ok", WARNING: "WARN", FAIL: "FAIL"}


def human(doc: dict[str, Any]) -> str:
    lines = [f"multiplane doctor: node {doc['node']} ({doc['cniConfDir']}, {doc['cniBinDir']})"]
    group = ""
    for check in doc["checks"]:
        if check["group"] != group:
            group = check["group"]
            lines += ["", GROUPS.get(group, group)]
        lines.append(f"  {_LABELS[check['status']]:<5} {check['finding']}")
        if check["action"]:
            lines.append(f"        -> {check['action']}")
    counts = doc["counts"]
    verdict = {
        FAIL: "pods on this node would fail",
        WARNING: "pods can run; see the warnings",
        OK: "nothing found that would make pods fail",
    }[doc["status"]]
    lines += ["", f"{counts[FAIL]} failed, {counts[WARNING]} warnings, {counts[OK]} ok: {verdict}"]
    return "\n".join(lines) + "\n"


# ---- command line -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multiplane doctor",
        description="Check this node for what would make pods fail: configs, plugins, master NICs, "
        "the API and RBAC, the readiness file, the installed runtime. Exit status 1 when a check fails.",
    )
    parser.add_argument(
        "--cni-conf-dir", default="/etc/cni/net.d", help="the runtime's CNI config dir (default %(default)s)"
    )
    parser.add_argument("--cni-bin-dir", default="/opt/cni/bin", help="the runtime's CNI bin dir (default %(default)s)")
    parser.add_argument("--root", default="", help="read every node path under this directory (tests, /host)")
    parser.add_argument("--node-name", default="", help="this node's name in the API (default: the hostname)")
    parser.add_argument(
        "--kubeconfig", default="", help="use this kubeconfig instead of the one 00-multiplane.conf names"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    return parser


def main(argv: list[str]) -> int:
    """`multiplane doctor [flags]` (argv without "doctor"): 1 when a check fails, 0 otherwise, 2 for usage."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    doctor = Doctor(
        conf_dir=args.cni_conf_dir,
        bin_dir=args.cni_bin_dir,
        root=args.root,
        node=args.node_name,
        kubeconfig=args.kubeconfig,
    )
    checks = doctor.run()
    doc = report(checks, doctor.node, doctor.conf_dir, doctor.bin_dir)
    sys.stdout.write(json.dumps(doc, indent=2) + "\n" if args.json else human(doc))
    sys.stdout.flush()
    return 1 if doc["status"] == FAIL else 0
