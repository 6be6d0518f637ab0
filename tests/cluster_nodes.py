"""Simulated nodes for cluster-wide IPAM: each call of the plugin runs in a UTS namespace of the node's own.

    node = UtsNode(base_dir, "mp-node1", conf)   # conf without nodeName: the plugin takes the host name
    node.setup()                                 # its dataDir and its network namespace (ip netns add mp-…)
    inv = node.call("ADD", "mp-c1")              # unshare --uts sh -c 'hostname mp-node1; exec <plugin>'
    proc = node.spawn("DEL", "mp-c1")            # the same, not waited for (the pid is the plugin's: for SIGKILL)
    node.record()                                # its state.json, read under the plugin's own lock (read_record)
    node.teardown()                              # removes the network namespace

`unshare --uts` (util-linux) execs `sh` in the new namespace without forking, and `sh` execs
the plugin, so the process the test holds is the plugin itself. Root is needed (unshare, ip netns).

`LoopbackPort(netns, port)` makes a store on the test's loopback reachable from inside a node's
network namespace (test_cluster_churn_meta.py runs whole nodes inside namespaces).
"""

from __future__ import annotations

import ctypes
import json
import os
import shlex
import socket
import subprocess
import threading
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
        return read_record(self.data_dir)


def read_record(data_dir: str) -> dict[str, Any]:
    """A node's state.json as the plugin sees it (under its lock), {"pools": {}, "pending": []} before the first call."""
    if not os.path.isdir(data_dir):
        return {"pools": {}, "pending": []}
    with LocalState(data_dir).locked() as record:
        raw = record.to_json()
    return {"pools": raw.get("pools", {}), "pending": raw.get("pending", [])}


_CLONE_NEWNET = 0x40000000


class LoopbackPort:
    """127.0.0.1:<port> of the test's network namespace, reachable at the same address inside another one.

    A store that listens on the test's loopback (the in-repo API server, etcd) is out of reach
    of a plugin running inside a node's network namespace. This makes its listening socket
    inside `netns` (a short-lived thread enters it with setns(2); the socket stays there) and
    relays each connection from a thread of the test's own namespace to the real port: the
    store's traffic crosses a real TCP connection on each side, and a stopped store is a
    connection closed at once. The namespace's `lo` must be up."""

    def __init__(self, netns: str, port: int) -> None:
        self.port = port
        self._conns: list[list[socket.socket]] = []  # [inner, outer, + one marker per finished direction]
        self._lock = threading.Lock()
        made: list[Any] = []

        def make() -> None:
            try:
                fd = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
                try:
                    if ctypes.CDLL(None, use_errno=True).setns(fd, _CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), f"setns into {netns}")
                finally:
                    os.close(fd)
                made.append(socket.create_server(("127.0.0.1", port)))
            except OSError as exc:
                made.append(exc)

        maker = threading.Thread(target=make)  # ends in `netns`; the test's threads never leave theirs
        maker.start()
        maker.join()
        if isinstance(made[0], OSError):
            raise made[0]
        self._server: socket.socket = made[0]
        self._server.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                inner, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            inner.settimeout(None)
            try:
                outer = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            except OSError:
                inner.close()  # the store is down: the client sees its connection closed
                continue
            outer.settimeout(None)
            pair = [inner, outer]
            with self._lock:
                self._conns.append(pair)
            for src, dst in ((inner, outer), (outer, inner)):
                threading.Thread(target=self._pump, args=(src, dst, pair), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, pair: list[socket.socket]) -> None:
        """Copy one direction; the second of a pair's two pumps to finish closes both sockets."""
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        with self._lock:
            pair.append(src)  # a marker: this direction is done
            if len(pair) == 4:
                self._conns.remove(pair)
                for s in pair[:2]:
                    s.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._server.close()
        with self._lock:
            for pair in self._conns:
                for s in pair[:2]:
                    s.close()
            self._conns.clear()
