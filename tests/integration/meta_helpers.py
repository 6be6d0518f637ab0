"""A node for the meta-plugin's root tests: a CNI config dir, state dirs, NAD/pod manifests and the libcni driver.

`MetaNode` writes `00-multiplane.conflist` (type `multiplane`) and the cluster network
`10-cluster.conflist` (Debian's `bridge` + `host-local`, bridge `mp-br<tag>`, a free
10.244.x.0/24) into its own NETCONFPATH and runs the driver as a runtime would. Every
host-local `dataDir` lives under `MetaNode.ipam`, so leftovers are easy to find.
`close()` removes the bridge and restores `net.ipv4.ip_forward` (the bridge plugin turns it on).

`FrontDoorWorld` is the spy World of tests/unit/test_meta_runner.py with its calls made as a
runtime makes them: the `multiplane` program, through the test's front door.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from multiplane.errors import DelegateError
from tests import cni
from tests.cni import Invocation
from tests.topology import BINARY, ip, ip_json
from tests.unit.test_meta_runner import World

NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
STATUS_ANNOTATION = "k8s.v1.cni.cncf.io/network-status"
META_NAME = "mp-multi"
CLUSTER_NAME = "mp-cluster"
REF_MACVLAN = "/usr/lib/cni/macvlan"
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


def free_cluster_octet() -> int:
    """A third octet N for 10.244.N.0/24 that no root-namespace route uses (other suites may run beside us)."""
    used = {str(r.get("dst", "")) for r in ip_json("-4", "route", "show", "table", "all")}
    choices = [n for n in range(100, 250) if f"10.244.{n}.0/24" not in used]
    return random.choice(choices)


def ip_files(directory: str | os.PathLike[str]) -> list[str]:
    """host-local reservation files (named after an IP address) anywhere under `directory`."""
    found = []
    for root, _dirs, files in os.walk(directory):
        for name in files:
            try:
                ipaddress.ip_address(name)
            except ValueError:
                continue
            found.append(os.path.join(root, name))
    return sorted(found)


def links_by_name(netns: str | None) -> dict[str, dict[str, Any]]:
    """`ip -d addr show` of a namespace (None: the root one), keyed by interface name."""
    return {link["ifname"]: link for link in ip_json(*(["-n", netns] if netns else []), "-d", "addr", "show")}


def kind(link: dict[str, Any]) -> str:
    return str((link.get("linkinfo") or {}).get("info_kind", ""))


def addrs(link: dict[str, Any], family: str = "inet") -> list[str]:
    """Global addresses of one link as `a.b.c.d/len`."""
    return [
        f"{a['local']}/{a['prefixlen']}"
        for a in link.get("addr_info", [])
        if a["family"] == family and a.get("scope") == "global"
    ]


def macvlan_conf(
    name: str, master: str, subnet: str, data_dir: str, plugin_type: str = "macvlan", **ipam: Any
) -> dict[str, Any]:
    """A NAD config: macvlan (bridge mode) on `master` with host-local from .10 to .29 of a /24."""
    net = ipaddress.ip_network(subnet)
    return {
        "cniVersion": "1.0.0",
        "name": name,
        "type": plugin_type,
        "master": master,
        "mode": "bridge",
        "ipam": {
            "type": "host-local",
            "dataDir": data_dir,
            "ranges": [[{"subnet": subnet, "rangeStart": str(net[10]), "rangeEnd": str(net[29])}]],
            **ipam,
        },
    }


def nad_document(name: str, config: Any, namespace: str | None = None) -> dict[str, Any]:
    """A NetworkAttachmentDefinition object; `config` is the CNI config (a dict is serialised, a str kept)."""
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": meta,
        "spec": {"config": config if isinstance(config, str) else json.dumps(config)},
    }


class MetaNode:
    """One node's CNI configuration and state, all under `workdir`; see the module docstring."""

    def __init__(
        self,
        workdir: Path,
        driver: str,
        bin_dir: Path,
        *,
        prefix: Sequence[str] = (),
        netns: str | None = None,
    ) -> None:
        """`prefix` wraps every driver run (`ip netns exec <node> …`); `netns` holds the bridge (None: root)."""
        self.tag = uuid.uuid4().hex[:6]
        self.workdir = workdir
        self.driver = driver
        self.bin_dir = bin_dir
        self.prefix = list(prefix)
        self.netns = netns
        # The front door of this node's calls; None: the test's (tests.cni.FRONT_DOOR_ENV).
        self.front_env: dict[str, str] | None = None
        self.net_d = workdir / "net.d"
        self.cni_dir = workdir / "cni"
        self.cache = workdir / "cache"
        self.nads = workdir / "nads"
        self.pods = workdir / "pods"
        self.ipam = workdir / "ipam"
        self.log = workdir / "multiplane.log"
        for d in (self.net_d, self.nads, self.pods, self.ipam):
            d.mkdir(parents=True, exist_ok=True)
        self.bridge = f"mp-br{self.tag}"
        octet = free_cluster_octet()
        self.cluster_net = ipaddress.ip_network(f"10.244.{octet}.0/24")
        self.cluster_gw = str(self.cluster_net[1])
        self._forward = Path(IP_FORWARD).read_text() if netns is None else None
        self.cluster_path = self.net_d / "10-cluster.conflist"
        self.cluster_path.write_text(json.dumps(self.cluster_conflist()))
        self.write_meta()

    # ---- configuration ----

    def cluster_conflist(self) -> dict[str, Any]:
        return {
            "cniVersion": "1.0.0",
            "name": CLUSTER_NAME,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(self.ipam),
                        "ranges": [[{"subnet": str(self.cluster_net), "gateway": self.cluster_gw}]],
                        # an explicit gw: the reference bridge's CHECK trips over gateway-less routes
                        "routes": [{"dst": "0.0.0.0/0", "gw": self.cluster_gw}],
                    },
                }
            ],
        }

    def write_meta(self, **extra: Any) -> dict[str, Any]:
        plugin = {
            "type": "multiplane",
            "clusterNetwork": str(self.cluster_path),
            "confDir": str(self.net_d),
            "cniDir": str(self.cni_dir),
            "binDir": str(self.bin_dir),
            "localNADDir": str(self.nads),
            "localPodDir": str(self.pods),
            "logFile": str(self.log),
            "logLevel": "verbose",
            "logToStderr": False,
            **extra,
        }
        conf = {"cniVersion": "1.0.0", "name": META_NAME, "plugins": [plugin]}
        (self.net_d / "00-multiplane.conflist").write_text(json.dumps(conf))
        return conf

    def add_nad(self, name: str, config: dict[str, Any] | str, namespace: str | None = None) -> Path:
        """A NetworkAttachmentDefinition manifest in localNADDir (no namespace: it serves every namespace)."""
        doc = nad_document(name, config, namespace)
        path = self.nads / f"{namespace or '_'}-{name}.yaml"
        path.write_text(yaml.safe_dump(doc))
        return path

    def add_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> Path:
        """A Pod manifest `<localPodDir>/<ns>/<name>.yaml` carrying `annotations`."""
        meta = {"name": name, "namespace": namespace, "annotations": annotations}
        doc = {"apiVersion": "v1", "kind": "Pod", "metadata": meta}
        path = self.pods / namespace / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(doc))
        return path

    # ---- the runtime ----

    def run(
        self,
        command: str,
        pod_netns: str,
        container_id: str,
        *,
        namespace: str = "mp-app",
        name: str = "mp-web",
        networks: str | None = None,
        args: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Invocation:
        """`cnidriver <command> mp-multi /var/run/netns/<pod_netns>` with the node's NETCONFPATH and cache."""
        if args is None:
            args = f"IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name}"
            if networks is not None:
                args += f";MULTIPLANE_NETWORKS={networks}"
        full = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "NETCONFPATH": str(self.net_d),
            "CNI_PATH": f"{self.bin_dir}:/usr/lib/cni",
            "CNI_ARGS": args,
            "CNI_CACHE_DIR": str(self.cache),
            "CNI_CONTAINERID": container_id,
            "CNI_IFNAME": "eth0",
            **(cni.FRONT_DOOR_ENV if self.front_env is None else self.front_env),
            **(env or {}),
        }
        argv = [*self.prefix, self.driver, command, META_NAME, f"/var/run/netns/{pod_netns}"]
        proc = subprocess.run(argv, env=full, capture_output=True, text=True, timeout=120, check=False)
        return Invocation(proc.returncode, proc.stdout, proc.stderr)

    # ---- what is on disk ----

    def cache_file(self, container_id: str) -> Path:
        return self.cni_dir / container_id

    def status_file(self, container_id: str) -> Path:
        return self.cni_dir / "status" / f"{container_id}.json"

    def state_files(self) -> list[str]:
        """Every file multiplane keeps in cniDir (the delegate caches and status files)."""
        out = []
        for root, _dirs, files in os.walk(self.cni_dir):
            out += [os.path.relpath(os.path.join(root, f), self.cni_dir) for f in files]
        return sorted(out)

    def _links(self) -> list[dict[str, Any]]:
        return ip_json(*(["-n", self.netns] if self.netns else []), "link", "show")

    def bridge_exists(self) -> bool:
        return any(link["ifname"] == self.bridge for link in self._links())

    def bridge_ports(self) -> list[str]:
        """Links enslaved to the cluster bridge (the host ends of pod veths)."""
        return [link["ifname"] for link in self._links() if link.get("master") == self.bridge]

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def close(self) -> None:
        """Delete the bridge the reference plugin made; put ip_forward back as it was."""
        ip(*(["-n", self.netns] if self.netns else []), "link", "del", self.bridge, check=False)
        if self._forward is not None and Path(IP_FORWARD).read_text() != self._forward:
            Path(IP_FORWARD).write_text(self._forward)


class FrontDoorWorld(World):
    """World whose `run` execs the `multiplane` program (tests.cni.run, so through the test's front door).

    Same contract as World.run: ADD's stdout, or None when the command prints nothing; a CNI
    error on stdout is raised as a CniError carrying its code, msg and details (`fails`
    returns it). `last` is the last Invocation (its stderr is what the runtime would see);
    `front_env`, when set, replaces the test's front door for this World's calls.
    """

    def __init__(self, root: Path, spies: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(root, spies, *args, **kwargs)
        self.last: Invocation | None = None
        self.front_env: dict[str, str] | None = None
        self.program: str | list[str] = BINARY or cni.OURS_MULTIPLANE  # a list: a command line instead

    def invoke(self, command: str, conf: dict[str, Any] | None = None, **kw: Any) -> Invocation:
        """One call, whatever its outcome (`kw` as for World.env)."""
        stdin = json.dumps(conf if conf is not None else self.meta).encode()
        self.last = cni.run(
            self.program,
            command,
            stdin,
            container_id=None,
            netns=None,
            ifname=None,
            args=None,
            path=None,
            base_env=self.env(command, **kw),
            env=self.front_env,
        )
        return self.last

    def run(self, command: str, conf: dict[str, Any] | None = None, **kw: Any) -> str | None:
        inv = self.invoke(command, conf, **kw)
        if inv.returncode != 0:
            err = inv.error()
            raise DelegateError(err["code"], err["msg"], err.get("details", ""))
        return inv.stdout or None
