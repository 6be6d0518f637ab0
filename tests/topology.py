"""A throw-away L2 test network in real namespaces (root only); everything is named mp-*.

    root netns:  <master>  (veth end, UP, no address)  ── the "node NIC" macvlans hang off
                     │
    lan netns:   <peer>    (the other veth end, addresses such as 10.x.0.1/24) ── a LAN host
    pod netns:   pod0, pod1, … (empty; plugins put interfaces there)

`Topology.close()` removes every namespace and link it made, even after a failed test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.cni import BIN_DIR, Invocation, run

PLUGIN_NAMES = ("multiplane", "multiplane-macvlan", "multiplane-host-local")
# tests/packaging sets this to run the integration scenarios against the built dist/multiplane.
BINARY = os.environ.get("MULTIPLANE_BINARY", "")


def ip(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(["ip", *argv], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


@contextmanager
def scratch_netns(prefix: str, lo_up: bool = False) -> Iterator[str]:
    """A fresh named network namespace `<prefix><random>` (prefix starts with mp-); deleted afterwards."""
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    ip("netns", "add", name)
    try:
        if lo_up:
            ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        ip("netns", "del", name, check=False)


def ip_json(*argv: str) -> Any:
    return json.loads(ip("-j", *argv) or "[]")


def ns_exec(ns: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=timeout, check=False
    )


def ping(ns: str, target: str, count: int = 1) -> bool:
    """busybox ping from inside `ns` (iputils is not installed on the test machines)."""
    return ns_exec(ns, "busybox", "ping", "-c", str(count), "-W", "2", target).returncode == 0


def scapy_in(ns: str, code: str, timeout: float = 30) -> str:
    """Run a scapy snippet inside `ns` (a fresh interpreter, so the netns applies); returns stdout."""
    prog = "from scapy.all import *\nconf.verb = 0\n" + code
    proc = ns_exec(ns, sys.executable, "-c", prog, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"scapy in {ns} failed: {proc.stderr}")
    return proc.stdout


class Topology:
    def __init__(self, workdir: Path, pods: int = 2, lan_addrs: tuple[str, ...] = ("10.66.0.1/24",)) -> None:
        tag = uuid.uuid4().hex[:6]
        self.tag = tag
        self.master = f"mp-m{tag}"
        self.peer = f"mp-p{tag}"
        self.lan = f"mp-lan{tag}"
        self.pods = [f"mp-pod{i}{tag}" for i in range(pods)]
        self.workdir = workdir
        self.data_dir = str(workdir / "mp-ipam")
        self.bin_dir = workdir / "mp-bin"
        self._made: list[str] = []
        try:
            self.bin_dir.mkdir(parents=True, exist_ok=True)
            for name in PLUGIN_NAMES:
                link = self.bin_dir / name
                if not link.exists():
                    link.symlink_to(BINARY or os.path.join(BIN_DIR, name))
            ip("link", "add", self.master, "type", "veth", "peer", "name", self.peer)
            for ns in (self.lan, *self.pods):
                ip("netns", "add", ns)
                self._made.append(ns)
                ip("-n", ns, "link", "set", "lo", "up")
            ip("link", "set", self.peer, "netns", self.lan)
            ip("link", "set", self.master, "up")
            ip("-n", self.lan, "link", "set", self.peer, "up")
            for addr in lan_addrs:
                ip("-n", self.lan, "addr", "add", addr, "dev", self.peer, *(["nodad"] if ":" in addr else []))
        except Exception:
            self.close()
            raise

    @property
    def cni_path(self) -> str:
        return f"{self.bin_dir}:/usr/lib/cni"

    def netns_path(self, ns: str) -> str:
        return f"/var/run/netns/{ns}"

    def add_pod(self) -> str:
        ns = f"mp-pod{len(self.pods)}{self.tag}"
        ip("netns", "add", ns)
        self._made.append(ns)
        ip("-n", ns, "link", "set", "lo", "up")
        self.pods.append(ns)
        return ns

    def cni(
        self,
        binary: str,
        command: str,
        conf: dict[str, Any],
        pod: str,
        *,
        container_id: str = "mp-ctr",
        ifname: str = "net1",
        args: str | None = "IgnoreUnknown=1;K8S_POD_NAME=mp",
        netns: str | None = None,
    ) -> Invocation:
        """Invoke a plugin binary (a path, or a name looked up in our bin dir) for `pod`."""
        path = binary if os.path.isabs(binary) else str(self.bin_dir / binary)
        return run(
            path,
            command,
            conf,
            container_id=container_id,
            netns=self.netns_path(pod) if netns is None else netns,
            ifname=ifname,
            args=args,
            path=self.cni_path,
        )

    def links(self, ns: str | None) -> list[dict[str, Any]]:
        return ip_json(*(["-n", ns] if ns else []), "-d", "link", "show")

    def close(self) -> None:
        for ns in self._made:
            ip("netns", "del", ns, check=False)
        ip("link", "del", self.master, check=False)
