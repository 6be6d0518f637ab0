"""Thick mode for real: the image built with podman, the DaemonSet's containers run by podman as the manifest says.

packaging/k8s/daemonset-thick.yaml is read as data and each container is translated into
`podman run` flags by `PodmanPod`: the command, args (with Kubernetes' `$(VAR)` expansion),
env (values and `spec.nodeName`), volume mounts (hostPath, emptyDir, configMap; readOnly and
mountPropagation), security context, memory limit, host network and host PID. A key the
translation does not know fails the test, so a manifest change that podman cannot mirror is
noticed here rather than on a cluster.

The node is a temporary directory (`mp-thick-*` in /tmp) standing in for the node's dirs:
every hostPath is bind-mounted from `<tmp>/node/<path>`, with three exceptions:

* `/`, the node's root for the delegates (chrootDir), is the real root, read-write as the
  manifest mounts it. That is what a node has: its own loader and libraries, the cluster
  network's plugins (Debian's dynamically linked /usr/lib/cni/bridge here), its /proc.
* `/run/netns` and `/var/run/netns` are the node's netns dir, which here is the private tmpfs
  of the podman harness's mount namespace (tests/e2e/podman_harness.py): podman and the libcni
  driver both run in that namespace, which is "the node" for this test. It is made a shared
  mount before the daemon starts, as `ip netns add` and the runtimes make it on a node, so the
  pods' namespaces pinned later reach the daemon through HostToContainer propagation.

The daemon's metrics port is the one free port the test picks; the ConfigMap's
`metricsAddress` and both probes are rewritten together, after checking that they agree.

Two clusters, one test each: none ("local-files": NADs and pods from the node's local files,
as `multiplane install` sets up outside a cluster) and the in-repo API server
(tests/k8s_server.py, TLS and a token: "api-server"), given to the pods as the kubelet would:
KUBERNETES_SERVICE_HOST/PORT in every container and the service account's token and CA
mounted at /var/run/secrets/kubernetes.io/serviceaccount.

What is proved: `podman build` of packaging/Containerfile works offline (FROM scratch);
the install init container lays the runtime, the links and 00-multiplane.conf down (and,
with a cluster, the kubeconfig and token copy for calls that fall back in-process); the
daemon container becomes ready on the readiness probe's own URL (with a cluster, once its
caches of this node's pods and of every NAD have synced over real HTTPS); pods added by
the libcni driver through the installed `<node>/opt/cni/bin/multiplane` with
MULTIPLANE_DAEMON=require (no in-process fallback: a success is the daemon's) get eth0 from
the cluster network (the reference bridge and host-local, run by the daemon against the
node's root) and net1 (the built-in macvlan on a veth master, in-process in the daemon),
for a netns pinned under /var/run/netns after the daemon started and for a /proc/<pid>/ns/net
of a process running as another user (the hostPID case); with a cluster, network-status
lands on the pod through the API and every request the daemon made is one rbac.yaml grants;
/metrics counts the requests; a burst of `MP_THICK_PODS` pods (default 20; 50 for the numbers
in docs/install.md, printed with `-s`) is added and deleted at once within the manifest's
memory limit (podman enforces it); the daemon stops on SIGTERM within
terminationGracePeriodSeconds and removes its socket. Nothing named mp-* is left:
containers, image, netns, links, dirs.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.podman_harness import Podman
from tests.integration.meta_helpers import addrs, free_cluster_octet, ip_files, kind, nad_document
from tests.k8s_server import K8sServer, Request
from tests.topology import ip, ip_json

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist" / "multiplane"
CONTAINERFILE = ROOT / "packaging" / "Containerfile"
MANIFEST = ROOT / "packaging" / "k8s" / "daemonset-thick.yaml"
RBAC = ROOT / "packaging" / "k8s" / "rbac.yaml"
PODS = int(os.environ.get("MP_THICK_PODS", "20"))
NODE_NAME = "mp-node-1"
NAMESPACE = "mp-app"
NETWORKS = "k8s.v1.cni.cncf.io/networks"
STATUS = "k8s.v1.cni.cncf.io/network-status"
TOKEN = "mp-thick-token"
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# With a cluster: objects the caches hold besides the test's own, for the memory at rest (a full
# node has up to 110 pods, the kubelet's default; other nodes' pods are not this node's cache's).
CACHED_PODS, OTHER_PODS, CACHED_NADS = 110, 300, 100
META_NAME = "multiplane-cni-network"  # the name `multiplane install` gives 00-multiplane.conf
# Host paths that are not moved under the temporary node (see the module docstring).
REAL_HOST_PATHS = ("/", "/run/netns", "/var/run/netns")
# Pod-spec and container keys the translation understands; anything else fails the test.
POD_KEYS = {
    "serviceAccountName",
    "hostNetwork",
    "hostPID",
    "priorityClassName",
    "nodeSelector",
    "tolerations",
    "terminationGracePeriodSeconds",
    "initContainers",
    "containers",
    "volumes",
}
CONTAINER_KEYS = {
    "name",
    "image",
    "imagePullPolicy",
    "command",
    "args",
    "env",
    "securityContext",
    "resources",
    "volumeMounts",
    "readinessProbe",
    "livenessProbe",
}
PROPAGATION = {None: "rprivate", "None": "rprivate", "HostToContainer": "rslave", "Bidirectional": "rshared"}
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9, "": 1}


# ---- the manifest, read as data --------------------------------------------------------------


def manifest_objects(path: Path | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """The manifest's objects by (kind, name)."""
    docs = [d for d in yaml.safe_load_all((path or MANIFEST).read_text()) if d is not None]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def daemonset(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    (ds,) = [obj for (k, _), obj in objects.items() if k == "DaemonSet"]
    return ds


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity ("96Mi", "1G", "512") in bytes."""
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|k|M|G|)", str(quantity))
    assert match, f"memory quantity {quantity!r} is not one this test reads"
    return int(match.group(1)) * _UNITS[match.group(2)]


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion of `$(VAR)` in command and args ($$ escapes; unknown names stay)."""

    def one(m: re.Match[str]) -> str:
        if m.group(0).startswith("$$"):
            return m.group(0)[1:]
        return env.get(m.group(1), m.group(0))

    return re.sub(r"\$?\$\(([A-Za-z_][A-Za-z0-9_]*)\)", one, text)


def metrics_address(objects: dict[tuple[str, str], dict[str, Any]]) -> tuple[dict[str, Any], str, int]:
    """(the daemon's JSON config, metrics host, metrics port) from the ConfigMap the daemon container mounts."""
    ds = daemonset(objects)
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    daemon = next(c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == "daemon")
    (config_flag,) = [a for a in daemon["args"] if a.startswith("--config=")]
    config_path = config_flag.split("=", 1)[1]
    mount = next(m for m in daemon["volumeMounts"] if config_path.startswith(m["mountPath"].rstrip("/") + "/"))
    cm_name = volumes[mount["name"]]["configMap"]["name"]
    data = objects[("ConfigMap", cm_name)]["data"]
    config = json.loads(data[config_path[len(mount["mountPath"].rstrip("/")) + 1 :]])
    host, _, port = config["metricsAddress"].rpartition(":")
    return config, host, int(port)


# ---- the node: dirs, namespaces, the network -------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_lan_octet() -> int:
    """N for a LAN 10.77.N.0/24 that no route of the root namespace uses."""
    used = {str(r.get("dst", "")) for r in ip_json("-4", "route", "show", "table", "all")}
    return random.choice([n for n in range(10, 250) if f"10.77.{n}.0/24" not in used])


class ThickNode:
    """The temporary node, the podman harness that is its runtime, and the network the pods attach to."""

    def __init__(self, workdir: Path, driver: str, api: K8sServer | None = None) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.workdir = workdir
        self.driver = driver
        self.api = api  # None: no cluster (NADs and pods from the node's local files)
        self.sa_dir = workdir / "serviceaccount"  # what the kubelet mounts into a pod (with a cluster)
        self.node = workdir / "node"
        self.pod_dir = workdir / "pod"
        self.cluster_ipam = workdir / "cluster-ipam"
        self.libcni_cache = workdir / "libcni"
        self.image = f"localhost/mp-thick-{self.tag}:0.1.0"
        self.master = f"mp-m{self.tag}"
        self.peer = f"mp-p{self.tag}"
        self.lan = f"mp-lan{self.tag}"
        self.bridge = f"mp-br{self.tag}"
        self.cluster_net = ipaddress.ip_network(f"10.244.{free_cluster_octet()}.0/24")
        self.lan_net = ipaddress.ip_network(f"10.77.{free_lan_octet()}.0/24")
        self.lan_peer = str(self.lan_net[1])
        self.netns: list[str] = []  # in the harness's mount namespace
        self.holders: list[subprocess.Popen[bytes]] = []  # processes whose /proc/<pid>/ns/net are pods
        self.containers: list[str] = []
        self.podman = Podman(workdir / "podman", DIST, tag=self.tag)
        self.port = free_port()

    # ---- life cycle ----

    def start(self) -> None:
        for d in (self.node, self.pod_dir, self.cluster_ipam, self.libcni_cache):
            d.mkdir(parents=True)
        if self.api is not None:
            self.sa_dir.mkdir()
            (self.sa_dir / "token").write_text(TOKEN)
            (self.sa_dir / "ca.crt").write_bytes(self.api.ca_pem)
            (self.sa_dir / "namespace").write_text("kube-system")
        self.podman.start()
        self.in_node("mount", "--make-shared", "/run/netns")
        ip("link", "add", self.master, "type", "veth", "peer", "name", self.peer)
        self.add_netns(self.lan)
        self.in_node("ip", "link", "set", self.peer, "netns", self.lan)
        ip("link", "set", self.master, "up")
        self.in_netns(self.lan, "ip", "link", "set", self.peer, "up")
        self.in_netns(self.lan, "ip", "addr", "add", f"{self.lan_peer}/24", "dev", self.peer)

    def close(self) -> list[str]:
        """Remove everything this node made, even after a failure; return what is still there afterwards."""
        left: list[str] = []
        holder = self.podman.holder
        if holder is not None and holder.poll() is None:
            for name in self.containers:
                self.podman.podman("rm", "-f", "-t", "0", name, check=False, timeout=60)
            self.podman.podman("rmi", "-f", self.image, check=False, timeout=60)
            names = self.podman.podman("ps", "-a", "--format", "{{.Names}}", check=False).stdout.split()
            left += [f"container {n}" for n in names]
            images = self.podman.podman("images", "--format", "{{.Repository}}:{{.Tag}}", check=False).stdout
            left += [f"image {i}" for i in images.split() if i == self.image]
            for ns in reversed(self.netns):
                self.in_node("ip", "netns", "del", ns, check=False)
            listed = self.in_node("ip", "netns", "list", check=False).stdout
            left += [f"netns {line.split()[0]}" for line in listed.splitlines() if self.tag in line]
        for proc in self.holders:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)
        left += [f"podman harness: {what}" for what in self.podman.close()]
        for link in (self.master, self.bridge):  # the master is ours, the bridge the reference plugin's
            ip("link", "del", link, check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self.workdir.exists():
            left.append(f"dir {self.workdir}")
        deadline = time.monotonic() + 5  # a deleted namespace's links go a moment later (the kernel's cleanup)
        while True:
            links = [entry["ifname"] for entry in ip_json("link", "show") if self.tag in entry["ifname"]]
            if not links or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        left += [f"link {name}" for name in links]
        return left

    # ---- the node's mount namespace (the podman harness's) ----

    def node_prefix(self) -> list[str]:
        assert self.podman.holder is not None
        return ["nsenter", f"--mount=/proc/{self.podman.holder.pid}/ns/mnt", "--"]

    def in_node(self, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*self.node_prefix(), *argv], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} (in the node's mount namespace): {proc.stderr.strip()}")
        return proc

    def add_netns(self, name: str) -> str:
        """A network namespace pinned at the node's /run/netns/<name>; returns the path a runtime would pass."""
        self.in_node("ip", "netns", "add", name)
        self.netns.append(name)
        self.in_netns(name, "ip", "link", "set", "lo", "up")
        return f"/var/run/netns/{name}"

    def in_netns(self, name: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.in_node("ip", "netns", "exec", name, *argv, check=check)

    def add_process_netns(self) -> tuple[str, int]:
        """A pod whose netns is named by a process (/proc/<pid>/ns/net), running as uid 65535 like a pause image."""
        proc = subprocess.Popen(
            ["unshare", "--net", "--", "setpriv", "--reuid=65535", "--regid=65535", "--clear-groups", "sleep", "600"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.holders.append(proc)
        deadline = time.monotonic() + 10
        while os.stat(f"/proc/{proc.pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino or not _uid_is(
            proc.pid, 65535
        ):
            assert proc.poll() is None, f"the netns process ended: {proc.stderr.read() if proc.stderr else ''}"
            assert time.monotonic() < deadline, "the netns process did not start"
            time.sleep(0.02)
        return f"/proc/{proc.pid}/ns/net", proc.pid

    # ---- hostPath → the temporary node ----

    def host_path(self, path: str) -> Path:
        if path.rstrip("/") in REAL_HOST_PATHS or path == "/":
            return Path(path)
        return self.node / path.lstrip("/")

    # ---- the node's CNI files ----

    def write_cluster_network(self) -> Path:
        """The primary network install wraps: Debian's bridge + host-local (dataDir under the test's dir)."""
        conf = {
            "cniVersion": "1.0.0",
            "name": f"mp-cluster-{self.tag}",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": False,  # no gateway: the host's ip_forward is left alone
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(self.cluster_ipam),
                        "ranges": [[{"subnet": str(self.cluster_net)}]],
                    },
                }
            ],
        }
        path = self.node / "etc/cni/net.d/10-mp-cluster.conflist"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(conf))
        return path

    def write_nad(self) -> str:
        """A macvlan NAD on the veth master, in the default local NAD dir (no cluster): built-in macvlan + host-local."""
        name = f"mp-mv-{self.tag}"
        config = {
            "cniVersion": "1.0.0",
            "name": name,
            "type": "macvlan",
            "master": self.master,
            "mode": "bridge",
            "ipam": {  # default dataDir: /var/lib/cni/networks, the daemon's mount of the node's /var/lib/cni
                "type": "host-local",
                "ranges": [[{"subnet": str(self.lan_net), "rangeStart": str(self.lan_net[10])}]],
            },
        }
        if self.api is not None:
            self.api.add_nad(NAMESPACE, name, config)
            return name
        path = self.node / "etc/cni/multiplane/nads" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(nad_document(name, config)))
        return name

    def write_pod(self, name: str, networks: str) -> None:
        if self.api is not None:
            self.api.add_pod(NAMESPACE, name, {NETWORKS: networks}, node=NODE_NAME)
            return
        doc = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": NAMESPACE,
                "annotations": {NETWORKS: networks},
            },
        }
        path = self.node / "etc/cni/multiplane/pods" / NAMESPACE / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(doc))

    # ---- the runtime's calls ----

    def cni(self, command: str, netns: str, container_id: str, pod: str) -> subprocess.CompletedProcess[str]:
        """The libcni driver in the node's mount namespace, through the installed multiplane; the daemon or nothing."""
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "NETCONFPATH": str(self.node / "etc/cni/net.d"),
            "CNI_PATH": f"{self.node / 'opt/cni/bin'}:/usr/lib/cni",
            "CNI_CACHE_DIR": str(self.libcni_cache),
            "CNI_CONTAINERID": container_id,
            "CNI_IFNAME": "eth0",
            "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE={NAMESPACE};K8S_POD_NAME={pod}",
            "MULTIPLANE_SOCKET": str(self.node / "run/multiplane/multiplane.sock"),
            "MULTIPLANE_DAEMON": "require",  # no in-process fallback: a success is the daemon's
        }
        return subprocess.run(
            [*self.node_prefix(), self.driver, command, META_NAME, netns],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def links_in(self, netns: str) -> dict[str, dict[str, Any]]:
        """`ip -d addr` of a pod's namespace (a /run/netns path or /proc/<pid>/ns/net), by name."""
        proc = self.in_node("nsenter", f"--net={netns}", "ip", "-j", "-d", "addr", "show")
        return {link["ifname"]: link for link in json.loads(proc.stdout or "[]")}

    def ping_from(self, netns: str, target: str) -> bool:
        proc = self.in_node("nsenter", f"--net={netns}", "busybox", "ping", "-c", "1", "-W", "2", target, check=False)
        return proc.returncode == 0


def _uid_is(pid: int, uid: int) -> bool:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1]) == uid
    except OSError:
        return False
    return False


# ---- Kubernetes → podman ---------------------------------------------------------------------


class PodmanPod:
    """The DaemonSet's pod template as `podman run` arguments, on a ThickNode (see the module docstring)."""

    def __init__(self, node: ThickNode, objects: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.node = node
        self.objects = objects
        self.ds = daemonset(objects)
        self.spec = self.ds["spec"]["template"]["spec"]
        unknown = set(self.spec) - POD_KEYS
        assert not unknown, f"the pod spec uses keys this test cannot run with podman: {sorted(unknown)}"
        self.volumes = {v["name"]: v for v in self.spec["volumes"]}
        self.config, self.metrics_host, self.metrics_port = metrics_address(objects)

    def container(self, name: str) -> dict[str, Any]:
        for c in [*self.spec.get("initContainers", []), *self.spec["containers"]]:
            if c["name"] == name:
                return c
        raise AssertionError(f"the DaemonSet has no container {name}")

    def _env(self, c: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.node.api is not None:  # the kubelet's service environment: the API server's address
            env["KUBERNETES_SERVICE_HOST"] = "127.0.0.1"
            env["KUBERNETES_SERVICE_PORT"] = str(self.node.api.port)
        field_values = {"spec.nodeName": NODE_NAME, "metadata.namespace": self.ds["metadata"]["namespace"]}
        for item in c.get("env", []):
            if "value" in item:
                env[item["name"]] = expand(str(item["value"]), env)
            else:
                path = item["valueFrom"]["fieldRef"]["fieldPath"]
                assert path in field_values, f"env {item['name']}: fieldRef {path} is not one this test provides"
                env[item["name"]] = field_values[path]
        return env

    def _volume_source(self, volume: dict[str, Any]) -> Path:
        if "hostPath" in volume:
            where = self.node.host_path(volume["hostPath"]["path"])
            kind_ = volume["hostPath"].get("type", "")
            if kind_ == "DirectoryOrCreate":
                where.mkdir(parents=True, exist_ok=True)
            else:
                assert kind_ == "Directory", f"hostPath type {kind_!r} is not one this test mirrors"
            assert where.is_dir(), f"hostPath {volume['hostPath']['path']} ({where}) is not a directory"
            return where
        if "emptyDir" in volume:
            assert volume["emptyDir"] == {}, f"emptyDir options {volume['emptyDir']} are not mirrored"
            where = self.node.pod_dir / volume["name"]
            where.mkdir(exist_ok=True)
            return where
        if "configMap" in volume:
            cm = self.objects[("ConfigMap", volume["configMap"]["name"])]
            assert set(volume["configMap"]) == {"name"}, "configMap items/modes are not mirrored"
            where = self.node.pod_dir / f"configmap-{volume['name']}"
            where.mkdir(exist_ok=True)
            for key, text in cm["data"].items():
                if key == "daemon.json":  # the one rewrite: the metrics port (see the module docstring)
                    config = json.loads(text)
                    config["metricsAddress"] = f"{self.metrics_host}:{self.node.port}"
                    text = json.dumps(config)
                (where / key).write_text(text)
            return where
        raise AssertionError(f"volume {volume['name']}: a kind this test cannot mirror: {sorted(volume)}")

    def run_args(self, name: str, *, detach: bool) -> list[str]:
        """`podman run …` for one container of the pod."""
        c = self.container(name)
        unknown = set(c) - CONTAINER_KEYS
        assert not unknown, f"container {name} uses keys this test cannot run with podman: {sorted(unknown)}"
        node = self.node
        podman_name = node.podman.new_name(name)
        node.containers.append(podman_name)
        args = ["run", "--name", podman_name, "--cgroup-parent", node.podman.cgroup_parent, "--pull", "never"]
        args += ["-d"] if detach else ["--rm"]
        assert self.spec.get("hostNetwork") is True, "the daemon serves the node's network: hostNetwork"
        args += ["--network", "host"]
        if self.spec.get("hostPID"):
            args += ["--pid", "host"]
        security = dict(c.get("securityContext", {}))
        if security.pop("privileged", False):
            args.append("--privileged")
        caps = security.pop("capabilities", {})
        args += [f"--cap-add={cap}" for cap in caps.get("add", [])]
        args += [f"--cap-drop={cap}" for cap in caps.get("drop", [])]
        if security.pop("readOnlyRootFilesystem", False):
            args.append("--read-only")
        if "runAsUser" in security:
            args += ["--user", str(security.pop("runAsUser"))]
        assert not security, f"securityContext keys not mirrored: {sorted(security)}"
        limits = c.get("resources", {}).get("limits", {})
        if "memory" in limits:
            args += ["--memory", str(memory_bytes(limits["memory"]))]
        if "cpu" in limits:
            cpu = str(limits["cpu"])
            args += ["--cpus", str(int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu))]
        env = self._env(c)
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        if self.node.api is not None and self.spec.get("automountServiceAccountToken", True):
            args += ["-v", f"{self.node.sa_dir}:{SERVICE_ACCOUNT_DIR}:ro"]  # the kubelet's token volume
        for mount in c.get("volumeMounts", []):
            assert set(mount) <= {"name", "mountPath", "readOnly", "mountPropagation"}, mount
            source = self._volume_source(self.volumes[mount["name"]])
            opts = ["ro" if mount.get("readOnly") else "rw", PROPAGATION[mount.get("mountPropagation")]]
            args += ["-v", f"{source}:{mount['mountPath']}:{','.join(opts)}"]
        args += ["--entrypoint", json.dumps([expand(a, env) for a in c["command"]])]
        args.append(node.image)
        args += [expand(a, env) for a in c.get("args", [])]
        return args

    def probe_url(self, name: str, probe: str) -> str:
        get = self.container(name)[probe]["httpGet"]
        assert (get["host"], int(get["port"])) == (self.metrics_host, self.metrics_port), (
            f"{name}'s {probe} asks {get['host']}:{get['port']}, the daemon listens on "
            f"{self.metrics_host}:{self.metrics_port}"
        )
        return f"http://{get['host']}:{self.node.port}{get['path']}"


# ---- helpers ---------------------------------------------------------------------------------


def http_get(url: str, timeout: float = 3) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def counter(metrics: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text `metrics` (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in metrics.splitlines():
        if line.startswith(f"{name}{{") or line.startswith(f"{name} "):
            sample, _, value = line.rpartition(" ")
            got = sample[len(name) :].strip("{}")
            if ",".join(sorted(got.split(","))) == want or (not want and not got):
                return float(value)
    return 0.0


def cgroup_file(pid: int, controller: str, name: str) -> Path:
    """A file of `pid`'s cgroup in a v1 hierarchy (the test machines' hybrid layout), e.g. memory.max_usage_in_bytes."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path("/sys/fs/cgroup", controllers, path.lstrip("/"), name)
    raise AssertionError(f"process {pid} is in no {controller} cgroup")


def usage(pid: int) -> dict[str, float]:
    """The daemon's memory and CPU: its process (RSS now, peak RSS) and its container's cgroup.

    The process's own CPU is `cpu_self`. The cgroup counts what the kubelet and the memory limit count: the delegates the daemon
    starts (their CPU, cpuacct.usage) and page cache (memory.usage_in_bytes and its peak);
    the working set is the usage less inactive file pages, as the kubelet computes it.
    """
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    stat = {
        k: int(v)
        for k, v in (line.split() for line in cgroup_file(pid, "memory", "memory.stat").read_text().splitlines())
    }
    cg_usage = int(cgroup_file(pid, "memory", "memory.usage_in_bytes").read_text())
    ticks = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13]  # utime, stime
    return {
        "cpu_self": sum(int(t) for t in ticks) / os.sysconf("SC_CLK_TCK"),
        "rss": int(status["VmRSS"].split()[0]) / 1024,
        "peak_rss": int(status["VmHWM"].split()[0]) / 1024,
        "cg_working_set": (cg_usage - stat.get("total_inactive_file", 0)) / 2**20,
        "cg_peak": int(cgroup_file(pid, "memory", "memory.max_usage_in_bytes").read_text()) / 2**20,
        "cpu": int(cgroup_file(pid, "cpuacct", "cpuacct.usage").read_text()) / 1e9,
        "time": time.monotonic(),
    }


def wait_ready(node: ThickNode, name: str, url: str, timeout: float = 60) -> float:
    """Poll the readiness probe's URL until 200; fails with the container's log if it exits or times out."""
    started = time.monotonic()
    while True:
        status, body = http_get(url)
        if status == 200:
            return time.monotonic() - started
        state = node.podman.podman("inspect", "--format", "{{.State.Status}}", name, check=False).stdout.strip()
        if state != "running" or time.monotonic() - started > timeout:
            log = node.podman.podman("logs", name, check=False)
            pytest.fail(f"{name} not ready ({state}, last answer {status} {body!r}):\n{log.stdout}{log.stderr}")
        time.sleep(0.2)


# ---- the test --------------------------------------------------------------------------------


def rbac_verbs(requests: list[Request]) -> dict[tuple[str, str], set[str]]:
    """(API group, resource[/subresource]) → verbs, as the API server's authorizer sees each request."""
    needed: dict[tuple[str, str], set[str]] = {}
    for r in requests:
        m = re.fullmatch(r"/(?:api/v1|apis/([^/]+)/v1)(?:/namespaces/[^/]+)?/([^/]+)(?:/([^/]+))?(?:/([^/]+))?", r.path)
        assert m, r.path
        group, resource, name, sub = m.group(1) or "", m.group(2), m.group(3), m.group(4)
        verb = {"GET": "get" if name else "list", "PUT": "update", "POST": "create", "PATCH": "patch"}[r.method]
        if verb == "list" and "watch=true" in r.query:
            verb = "watch"
        needed.setdefault((group, f"{resource}/{sub}" if sub else resource), set()).add(verb)
    return needed


def rbac_granted() -> dict[tuple[str, str], set[str]]:
    """What packaging/k8s/rbac.yaml's ClusterRole grants the service account the DaemonSet runs as."""
    (role,) = [d for d in yaml.safe_load_all(RBAC.read_text()) if d and d["kind"] == "ClusterRole"]
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


@pytest.fixture(params=["local-files", "api-server"])
def thick_node(request: pytest.FixtureRequest, cnidriver: str) -> Iterator[ThickNode]:
    """A temporary node; with "api-server", the in-repo API server (TLS, a token) is its cluster."""
    if not os.access(DIST, os.X_OK):
        pytest.fail(f"{DIST} is missing: run `make binary` (make test does)")
    api = K8sServer(tls=True, token=TOKEN) if request.param == "api-server" else None
    node = ThickNode(Path(tempfile.mkdtemp(prefix="mp-thick-", dir="/tmp")), cnidriver, api)
    try:
        node.start()
        yield node
    finally:
        left = node.close()
        if api is not None:
            api.stop()
    assert not left, f"left behind (removed now): {left}"


def test_thick_daemonset_serves_libcni_calls_from_the_built_image(thick_node: ThickNode) -> None:
    """Build the image, run the manifest's containers with podman on a temporary node, attach pods through the daemon."""
    node = thick_node
    api = node.api
    objects = manifest_objects()
    pod = PodmanPod(node, objects)

    # The image, built offline from the real Containerfile (FROM scratch) and dist/multiplane.
    context = node.workdir / "context"
    (context / "dist").mkdir(parents=True)
    shutil.copy2(DIST, context / "dist" / "multiplane")
    node.podman.podman("build", "-f", str(CONTAINERFILE), "-t", node.image, str(context), timeout=120)
    images = {c["image"] for c in [*pod.spec["initContainers"], *pod.spec["containers"]]}
    assert len(images) == 1, f"the pod's containers run different images: {images}"

    # The install init container lays the runtime, the links and 00-multiplane.conf down.
    node.write_cluster_network()
    init = node.podman.podman(*pod.run_args("install", detach=False), timeout=120, check=False)
    assert init.returncode == 0, f"install failed:\n{init.stderr}{init.stdout}"
    bin_dir = node.node / "opt/cni/bin"
    assert (bin_dir / "multiplane").is_file() and (bin_dir / ".multiplane/current").is_symlink()
    assert os.readlink(bin_dir / "multiplane-macvlan") == "multiplane"
    conf = json.loads((node.node / "etc/cni/net.d/00-multiplane.conf").read_text())
    assert conf["type"] == "multiplane" and conf["name"] == META_NAME
    assert conf["clusterNetwork"] == "/etc/cni/net.d/10-mp-cluster.conflist"  # a node path, not the container's
    if api is not None:  # for calls that fall back in-process: the node's kubeconfig and token copy
        assert conf["kubeconfig"] == "/etc/cni/net.d/multiplane.d/multiplane.kubeconfig"
        assert (node.node / "etc/cni/net.d/multiplane.d/token").read_text() == TOKEN
        for i in range(CACHED_PODS):
            api.add_pod("mp-full", f"mp-other-{i}", {NETWORKS: "mp-none"}, node=NODE_NAME)
        for i in range(OTHER_PODS):
            api.add_pod("mp-full", f"mp-elsewhere-{i}", node="mp-node-2")
        for i in range(CACHED_NADS):
            api.add_nad("mp-full", f"mp-nad-{i}", {"cniVersion": "1.0.0", "name": f"mp-nad-{i}", "type": "bridge"})
    else:
        assert "kubeconfig" not in conf

    # The daemon (and the token refresher) start; the daemon gets ready on its probe's URL.
    started = time.monotonic()
    node.podman.podman(*pod.run_args("daemon", detach=True), timeout=60)
    daemon = node.containers[-1]
    node.podman.podman(*pod.run_args("token-refresh", detach=True), timeout=60)
    refresher = node.containers[-1]
    wait_ready(node, daemon, pod.probe_url("daemon", "readinessProbe"))
    ready_after = time.monotonic() - started
    status, text = http_get(pod.probe_url("daemon", "readinessProbe"))
    health = json.loads(text)
    assert status == 200 and health["serving"] is True, health
    if api is not None:  # ready only once both caches synced; the pods cache holds this node's pods only
        counts = sorted(c["objects"] for c in health["caches"].values() if c["synced"])
        assert counts == sorted([CACHED_PODS, CACHED_NADS]), health
    else:
        assert health["caches"] == {}, health
    assert http_get(pod.probe_url("daemon", "livenessProbe"))[0] == 200
    socket_path = node.node / "run/multiplane/multiplane.sock"
    assert socket_path.is_socket()
    daemon_pid = int(node.podman.podman("inspect", "--format", "{{.State.Pid}}", daemon).stdout)
    limit_file = cgroup_file(daemon_pid, "memory", "memory.limit_in_bytes")
    assert int(limit_file.read_text()) == memory_bytes(pod.container("daemon")["resources"]["limits"]["memory"])
    ready = usage(daemon_pid)
    time.sleep(2)  # at rest: what the daemon costs between calls (its caches' watches, the probes)
    at_rest = usage(daemon_pid)

    # Pods: the runtime's netns under /var/run/netns (pinned after the daemon started), and a
    # process's /proc/<pid>/ns/net owned by uid 65535 (hostPID, and the capability to open it).
    nad = node.write_nad()
    pinned = node.add_netns(f"mp-pa{node.tag}")
    by_pid, holder_pid = node.add_process_netns()
    for i, netns in enumerate((pinned, by_pid)):
        name = f"mp-web-{i}"
        node.write_pod(name, nad)
        added = node.cni("add", netns, f"mp-ctr-{i}-{node.tag}", name)
        log = node.podman.podman("logs", daemon, check=False)
        assert added.returncode == 0, f"ADD {netns}: {added.stderr}{added.stdout}\ndaemon:\n{log.stderr}"
        links = node.links_in(netns)
        assert set(links) == {"lo", "eth0", "net1"}, sorted(links)
        (eth0,) = addrs(links["eth0"])
        assert ipaddress.ip_interface(eth0).network == node.cluster_net
        assert kind(links["net1"]) == "macvlan"
        (net1,) = addrs(links["net1"])
        assert ipaddress.ip_interface(net1).network == node.lan_net
        assert node.ping_from(netns, node.lan_peer), f"net1 of {netns} does not reach the LAN peer"
        checked = node.cni("check", netns, f"mp-ctr-{i}-{node.tag}", name)
        assert checked.returncode == 0, checked.stderr
        if api is not None:  # the daemon wrote network-status through the API
            entries = json.loads(api.pod(NAMESPACE, name)["metadata"]["annotations"][STATUS])
            assert [(e.get("interface"), e.get("ips")) for e in entries[1:]] == [("net1", [net1.split("/")[0]])]
    assert Path(f"/proc/{holder_pid}").exists()  # the pod's process lived through it all
    reservations = ip_files(node.node / "var/lib/cni/networks" / nad)
    assert len(reservations) == 2, reservations  # the built-in host-local wrote on the node's /var/lib/cni
    assert len(ip_files(node.cluster_ipam)) == 2  # the reference host-local ran against the node's root
    metrics = http_get(f"http://127.0.0.1:{node.port}/metrics")[1]
    assert counter(metrics, "multiplane_requests_total", command="ADD", result="ok") == 2
    assert counter(metrics, "multiplane_requests_total", command="CHECK", result="ok") == 2

    # A burst: PODS pods added at once, then deleted at once.
    burst = [(node.add_netns(f"mp-b{i}{node.tag}"), f"mp-b{i}-{node.tag}", f"mp-burst-{i}") for i in range(PODS)]
    for _, _, name in burst:
        node.write_pod(name, nad)
    before = usage(daemon_pid)
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(PODS) as pool:
        results = list(pool.map(lambda p: node.cni("add", *p), burst))
    burst_wall = time.monotonic() - t0
    failed = [(p[0], r.stderr or r.stdout) for p, r in zip(burst, results) if r.returncode != 0]
    assert not failed, f"{len(failed)} of {PODS} ADDs failed: {failed[:3]}"
    after = usage(daemon_pid)
    with concurrent.futures.ThreadPoolExecutor(PODS) as pool:
        results = list(pool.map(lambda p: node.cni("del", *p), burst))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results if r.returncode][:3]
    for i, netns in enumerate((pinned, by_pid)):
        deleted = node.cni("del", netns, f"mp-ctr-{i}-{node.tag}", f"mp-web-{i}")
        assert deleted.returncode == 0, deleted.stderr
        assert set(node.links_in(netns)) == {"lo"}
    assert ip_files(node.node / "var/lib/cni/networks" / nad) == []
    assert ip_files(node.cluster_ipam) == []
    state = [p for p in (node.node / "var/lib/cni/multiplane").rglob("*") if p.is_file()]
    assert state == [], state
    metrics = http_get(f"http://127.0.0.1:{node.port}/metrics")[1]
    assert counter(metrics, "multiplane_requests_total", command="ADD", result="ok") == 2 + PODS
    assert counter(metrics, "multiplane_requests_total", command="DEL", result="ok") == 2 + PODS
    if api is not None:  # every request the daemon made is one the shared service account's role grants
        needed, granted = rbac_verbs(api.requests), rbac_granted()
        missing = {k: v - granted.get(k, set()) for k, v in needed.items() if v - granted.get(k, set())}
        assert not missing, f"rbac.yaml does not grant what the daemon did: {missing}"
        assert {"list", "watch"} <= needed[("", "pods")], needed  # the caches ran from the container
    final = usage(daemon_pid)
    limit = memory_bytes(pod.container("daemon")["resources"]["limits"]["memory"]) / 2**20
    request = memory_bytes(pod.container("daemon")["resources"]["requests"]["memory"]) / 2**20
    refresher_pid = int(node.podman.podman("inspect", "--format", "{{.State.Pid}}", refresher).stdout)
    burst_cpu = after["cpu"] - before["cpu"]
    report = (
        f"[{'API server, caches of ' + str(CACHED_PODS) + ' pods and ' + str(CACHED_NADS) + ' NADs' if api else 'no cluster'}] "
        f"daemon ready {ready_after:.1f}s after start; RSS at rest {at_rest['rss']:.0f} MiB, "
        f"after {PODS} pod ADDs at once {after['rss']:.0f} MiB, after their DELs {final['rss']:.0f} MiB, "
        f"peak {final['peak_rss']:.0f} MiB; container working set at rest {at_rest['cg_working_set']:.0f} MiB, "
        f"peak usage (page cache included) {final['cg_peak']:.0f} MiB; CPU of the burst's ADDs (daemon and "
        f"delegates) {burst_cpu:.2f}s in {burst_wall:.1f}s, {burst_cpu / PODS * 1000:.0f} ms per pod "
        f"({(after['cpu_self'] - before['cpu_self']) / PODS * 1000:.0f} ms in the daemon itself); "
        f"CPU at rest {(at_rest['cpu'] - ready['cpu']) * 1000:.0f} ms in {at_rest['time'] - ready['time']:.1f}s; "
        f"token-refresh RSS {usage(refresher_pid)['rss']:.0f} MiB"
    )
    print(report)
    assert at_rest["rss"] < request, f"the daemon's memory request is below its RSS at rest: {report}"
    assert final["peak_rss"] < limit / 2, f"the daemon's peak RSS leaves less than half its limit free: {report}"

    # Stopping: SIGTERM, the socket goes first, the daemon exits 0 within the grace period.
    grace = int(pod.spec["terminationGracePeriodSeconds"])
    t0 = time.monotonic()
    node.podman.podman("stop", "-t", str(grace), daemon, timeout=grace + 30)
    stopped_after = time.monotonic() - t0
    exit_code = node.podman.podman("inspect", "--format", "{{.State.ExitCode}}", daemon).stdout.strip()
    assert exit_code == "0", f"the daemon exited {exit_code} on SIGTERM"
    assert stopped_after < 10, f"the daemon took {stopped_after:.1f}s to stop (grace {grace}s)"
    assert not socket_path.exists()
    assert node.podman.podman("inspect", "--format", "{{.State.Status}}", refresher).stdout.strip() == "running"
    assert time.monotonic() - started < 120
