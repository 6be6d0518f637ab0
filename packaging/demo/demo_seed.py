#!/usr/bin/env python3
"""`make demo`: the seed scenario on one machine, no cluster, with the real dist/multiplane.

Everything happens inside namespaces this script creates and removes (names start with
`mp-demo`): a "node" network namespace whose NIC `ens33` is one end of a veth pair, a "LAN
host" namespace on the other end at the seed's gateway 192.168.174.2, and two pod
namespaces. The container runtime is a small libcni program (tests/cnidriver, built here
with Debian's Go and libcni), run inside the node namespace exactly as containerd would
run plugins. The cluster network is Debian's `bridge` plugin; the extra network is the
seed's `macvlan-conf` NAD and annotation, read unchanged from cni/.

Part two (demo_cluster.py, run after part one succeeded): three nodes on one LAN sharing the
seed's range through `multiplane-cluster-ipam`, with etcd as the store.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BINARY = os.path.join(ROOT, "dist", "multiplane")
NODE, LAN, PODS = "mp-demo-node", "mp-demo-lan", ("mp-demo-pod1", "mp-demo-pod2")
GATEWAY = "192.168.174.2"


def say(step: str, text: str) -> None:
    print(f"\n\033[1m== {step}\033[0m\n   {text}", flush=True)


def sh(*argv: str, check: bool = True, **kw: object) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if check and proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def build_driver(workdir: str) -> str:
    sys.path.insert(0, ROOT)
    from tests.cnidriver.build import build_driver as build

    return build(Path(workdir) / "go")


class Node:
    """The node: CNI config dir, plugin dir, state (an overlay over /var/lib, so the host's stays untouched)."""

    def __init__(
        self,
        workdir: str,
        driver: str,
        *,
        netns: str = NODE,
        hostname: str = "",
        pod_dir: str = os.path.join(ROOT, "cni", "pods"),
        pod_subnet: str = "10.244.0.0/24",
    ) -> None:
        """`hostname`: run each CNI call in a UTS namespace of its own with this host name (the node's name)."""
        self.workdir, self.driver, self.netns, self.hostname, self.pod_dir = workdir, driver, netns, hostname, pod_dir
        self.net_d, self.bin, self.upper, self.work = (
            os.path.join(workdir, d) for d in ("net.d", "bin", "upper", "work")
        )
        for d in (self.net_d, self.bin, self.upper, self.work):
            os.makedirs(d)
        for name in ("multiplane", "multiplane-macvlan", "multiplane-host-local", "multiplane-cluster-ipam"):
            os.symlink(BINARY, os.path.join(self.bin, name))
        cluster = {
            "cniVersion": "1.0.0",
            "name": "cluster",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "mp-demo-cbr0",
                    "isGateway": True,
                    "ipMasq": False,
                    "ipam": {"type": "host-local", "subnet": pod_subnet, "routes": [{"dst": "10.244.0.0/16"}]},
                }
            ],
        }
        with open(os.path.join(self.net_d, "10-cluster.conflist"), "w") as fh:
            json.dump(cluster, fh, indent=2)
        self.use_nads(os.path.join(ROOT, "cni", "nads"))

    def use_nads(self, nad_dir: str) -> None:
        """(Re)write the runtime's config 00-multiplane.conflist: multiplane, reading its NADs from `nad_dir`."""
        meta = {
            "cniVersion": "1.0.0",
            "name": "multiplane-cni-network",
            "plugins": [
                {
                    "type": "multiplane",
                    "clusterNetwork": os.path.join(self.net_d, "10-cluster.conflist"),
                    "binDir": self.bin,
                    "localNADDir": nad_dir,
                    "localPodDir": self.pod_dir,
                    "logLevel": "error",
                }
            ],
        }
        with open(os.path.join(self.net_d, "00-multiplane.conflist"), "w") as fh:
            json.dump(meta, fh, indent=2)

    def cni(self, command: str, pod_ns: str, pod_name: str) -> subprocess.CompletedProcess[str]:
        mount = f"mount -t overlay overlay -o lowerdir=/var/lib,upperdir={self.upper},workdir={self.work} /var/lib"
        unshare = ["unshare", "--mount", "--propagation", "private"]
        if self.hostname:  # the node's name, as the plugins see it (cluster-wide IPAM's default nodeName)
            mount += f" && hostname {self.hostname}"
            unshare.append("--uts")
        script = f'{mount} && exec "$@"'
        argv = ["ip", "netns", "exec", self.netns, *unshare, "sh", "-c", script, "sh"]
        argv += [self.driver, command, "multiplane-cni-network", f"/var/run/netns/{pod_ns}"]
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "NETCONFPATH": self.net_d,
            "CNI_PATH": f"{self.bin}:/usr/lib/cni",
            "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod_name}",
            "CNI_CONTAINERID": f"mp-demo-{pod_name}",
        }
        return subprocess.run(argv, env=env, capture_output=True, text=True, check=False)

    def state(self, *parts: str) -> str:
        return os.path.join(self.upper, *parts)


def cleanup() -> None:
    for ns in (*PODS, LAN, NODE):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def run(workdir: str) -> int:
    say("Set-up", "Building the libcni runtime driver (Debian's Go and libcni), the stand-in for containerd.")
    driver = build_driver(workdir)

    say(
        "The node",
        "A network namespace plays the node. Its NIC is `ens33`, one end of a veth pair whose other end is a LAN host at 192.168.174.2 (the seed's gateway).",
    )
    for ns in (NODE, LAN, *PODS):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", NODE, "link", "add", "ens33", "type", "veth", "peer", "name", "mp-demo-lan0")
    sh("ip", "-n", NODE, "link", "set", "mp-demo-lan0", "netns", LAN)
    sh("ip", "-n", NODE, "link", "set", "ens33", "up")
    sh("ip", "-n", LAN, "link", "set", "mp-demo-lan0", "up")
    sh("ip", "-n", LAN, "addr", "add", f"{GATEWAY}/24", "dev", "mp-demo-lan0")
    node = Node(workdir, driver)

    say(
        "Configuration",
        "The runtime's CNI config is 00-multiplane.conflist: multiplane, with the reference bridge plugin as cluster network. The NAD is cni/nads/macvlan.yaml, unchanged from the seed:",
    )
    with open(os.path.join(ROOT, "cni", "nads", "macvlan.yaml")) as fh:
        print("   " + fh.read().replace("\n", "\n   "))

    addresses = {}
    for i, pod in enumerate(PODS, start=1):
        name = f"web-{i}"
        say(
            f"Pod {name}",
            f"The runtime calls /opt/cni/bin/multiplane (here: dist/multiplane) for pod default/{name}; its annotation asks for macvlan-conf.",
        )
        started = time.monotonic()
        proc = node.cni("add", pod, name)
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr)
            return 1
        print(f"   ADD took {1000 * (time.monotonic() - started):.0f} ms; interfaces in the pod:")
        print("   " + sh("ip", "-n", pod, "-br", "addr").strip().replace("\n", "\n   "))
        print("   routes:\n   " + sh("ip", "-n", pod, "route").strip().replace("\n", "\n   "))
        with open(node.state("cni", "multiplane", "status", f"mp-demo-{name}.json")) as fh:
            status = json.load(fh)
        print("   network-status (what would be written to the pod's k8s.v1.cni.cncf.io/network-status):")
        print("   " + json.dumps(status, indent=2).replace("\n", "\n   "))
        addresses[pod] = next(e["ips"][0] for e in status if e["interface"] == "net1")

    say("Traffic", "net1 is on the LAN: the pods reach the LAN host and each other over macvlan (bridge mode).")
    p1, p2 = PODS
    for src, dst, what in (
        (p1, GATEWAY, "pod web-1 -> LAN host"),
        (p2, addresses[p1], "pod web-2 -> pod web-1"),
        (LAN, addresses[p2], "LAN host -> pod web-2"),
    ):
        ok = (
            subprocess.run(
                ["ip", "netns", "exec", src, "busybox", "ping", "-c", "2", "-W", "2", dst],
                capture_output=True,
                check=False,
            ).returncode
            == 0
        )
        print(f"   {what} ({dst}): {'reachable' if ok else 'NOT reachable'}")
        if not ok:
            return 1

    say("Teardown", "The runtime deletes both pods (DEL); multiplane undoes every attachment from its cache.")
    for i, pod in enumerate(PODS, start=1):
        proc = node.cni("del", pod, f"web-{i}")
        print(f"   DEL web-{i}: {'ok' if proc.returncode == 0 else proc.stderr}")
    left_links = [ln for pod in PODS for ln in sh("ip", "-n", pod, "-o", "link").splitlines() if "lo:" not in ln]
    pool = node.state("cni", "networks", "macvlan-conf")
    reservations = [f for f in os.listdir(pool) if f[0].isdigit()] if os.path.isdir(pool) else []
    cache_dir = node.state("cni", "multiplane")
    cached = [f for f in os.listdir(cache_dir) if f.startswith("mp-demo")] if os.path.isdir(cache_dir) else []
    print(f"   links left in the pods: {left_links or 'none'}")
    print(f"   macvlan-conf addresses still reserved: {reservations or 'none'}")
    print(f"   multiplane cache entries left: {cached or 'none'}")
    return 0 if not (left_links or reservations or cached) else 1


def ready_to_run() -> bool:
    """Root and a built binary, or say which is missing (both parts of the demo start with this)."""
    if os.geteuid() != 0:
        print("the demo needs root (it creates network namespaces)", file=sys.stderr)
        return False
    if not os.access(BINARY, os.X_OK):
        print(f"{BINARY} is missing: run `make binary`", file=sys.stderr)
        return False
    return True


def play(body: Callable[[str], int]) -> int:
    """Run `body(workdir)` in a fresh mp-demo-* directory (removed after), then say how it went and how long it took."""
    if not ready_to_run():
        return 1
    workdir = tempfile.mkdtemp(prefix="mp-demo-")
    started = time.monotonic()
    try:
        status = body(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    say(
        "Done",
        f"{'Success' if status == 0 else 'FAILED'} in {time.monotonic() - started:.1f} s; "
        "the demo namespaces, files and etcd are gone.",
    )
    return status


def both_parts(workdir: str) -> int:
    try:
        status = run(workdir)
    finally:
        cleanup()
    if status != 0:
        return status
    import demo_cluster  # part two: three nodes sharing the seed's range through cluster-wide IPAM

    try:
        return demo_cluster.run(os.path.join(workdir, "cluster"), os.path.join(workdir, "go", "cnidriver"))
    finally:
        demo_cluster.cleanup()


def main() -> int:
    return play(both_parts)


if __name__ == "__main__":
    raise SystemExit(main())
