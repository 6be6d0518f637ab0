"""Simulated nodes for cluster-wide IPAM: each call of the plugin runs in a UTS namespace of the node's own.

    node = UtsNode(base_dir, "mp-node1", conf)   # conf without nodeName: the plugin takes the host name
    node.setup()                                 # its dataDir and its network namespace (ip netns add mp-…)
    inv = node.call("ADD", "mp-c1")              # unshare --uts sh -c 'hostname mp-node1; exec <plugin>'
    proc = node.spawn("DEL", "mp-c1")            # the same, not waited for (the pid is the plugin's: for SIGKILL)
    node.record()                                # its state.json, read under the plugin's own lock (LocalState)
    node.teardown()                              # removes the network namespace

`unshare --uts` (util-linux) execs `sh` in the new namespace without forking, and `sh` execs
the plugin, so the process the test holds is the plugin itself. Root is needed (unshare, ip netns).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from typing import Any

from multiplane.ipam.cluster.local import LocalState
from tests import cni

BIN = os.path.join(cni.BIN_DIR, "multiplane-cluster-ipam")


class UtsNode:
    def __init__(self, base_dir: str, hostname: str, ipam: dict[str, Any], netns: str) -> None:
        self.name = hostname
        self.data_dir = os.path.join(base_dir, hostname)
        self.netns = netns
        self.conf = {
            "cniVersion": "1.1.0",
            "name": "mp-net",
            "type": "mp-main-plugin",
            "ipam": {"type": "multiplane-cluster-ipam", "dataDir": self.data_dir, **ipam},
        }

    @property
    def netns_path(self) -> str:
        return f"/var/run/netns/{self.netns}"

    def setup(self) -> None:
        subprocess.run(["ip", "netns", "add", self.netns], check=True, capture_output=True)

    def teardown(self) -> None:
        subprocess.run(["ip", "netns", "del", self.netns], check=False, capture_output=True)

    def argv(self) -> list[str]:
        return ["unshare", "--uts", "sh", "-c", f"hostname {shlex.quote(self.name)} && exec {shlex.quote(BIN)}"]

    def env(self, command: str, cid: str, ifname: str = "net1") -> dict[str, str]:
        return {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "MULTIPLANE_DAEMON": "off",
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": self.netns_path,
            "CNI_IFNAME": ifname,
            "CNI_PATH": "/usr/lib/cni",
        }

    def call(self, command: str, cid: str, timeout: float = 60) -> cni.Invocation:
        proc = subprocess.run(
            self.argv(),
            input=json.dumps(self.conf).encode(),
            env=self.env(command, cid),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        return cni.Invocation(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    def spawn(self, command: str, cid: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            self.argv(),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self.env(command, cid),
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(self.conf).encode())
        proc.stdin.close()
        return proc

    def record(self) -> dict[str, Any]:
        """state.json as the plugin sees it (under its lock), {"pools": {}, "pending": []} before the first call."""
        if not os.path.isdir(self.data_dir):
            return {"pools": {}, "pending": []}
        with LocalState(self.data_dir).locked() as record:
            raw = record.to_json()
        return {"pools": raw.get("pools", {}), "pending": raw.get("pending", [])}
