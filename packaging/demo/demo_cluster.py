#!/usr/bin/env python3
"""`make demo`, part two: the seed's network on three nodes, with cluster-wide IPAM.

Three network namespaces play three nodes (mp-demo-node1..3). Each node's NIC `ens33` is a
veth end onto one LAN bridge in the LAN host's namespace, at the seed's gateway
192.168.174.2; the nodes have LAN addresses of their own (.11-.13) to reach the store. Each
node has its own CNI state (an overlay over /var/lib) and runs its CNI calls in a UTS
namespace with its own host name, which `multiplane-cluster-ipam` takes as its nodeName.

The store is etcd (Debian's etcd-server, three members) started on the LAN host: a node's
plugin runs in the node's network namespace, so the store must be reachable over the LAN,
not on the machine's loopback. It is stopped and its data removed at the end, even on failure.

The NAD is the seed's `macvlan-conf` from cni/nads with `ipam.type` changed to
`multiplane-cluster-ipam` and the store added. Run alone (after `make binary`, as root):
`.venv/bin/python packaging/demo/demo_cluster.py`; `demo_seed.py` runs it after part one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import yaml
from demo_seed import BINARY, GATEWAY, ROOT, Node, build_driver, play, say, sh

NODES = ("mp-demo-node1", "mp-demo-node2", "mp-demo-node3")
LAN = "mp-demo-lan-c"
BRIDGE = "mp-demo-br0"
PODS = {node: f"{node}-web" for node in NODES}  # the pod network namespace of each node's pod
POD_NAMES = {node: f"web-{i}" for i, node in enumerate(NODES, start=1)}
NODE_ADDRESSES = {node: f"192.168.174.{10 + i}" for i, node in enumerate(NODES, start=1)}
ETCD = "/usr/bin/etcd"
ETCD_MEMBERS = 3
ETCD_PORT = 2379  # member i: client port 2379 + 2i on the LAN host, peer port 2380 + 2i on its loopback
SEED_NAD = os.path.join(ROOT, "cni", "nads", "macvlan.yaml")
STATE = ("cni", "multiplane", "cluster-ipam", "state.json")  # the plugin's record, under each node's /var/lib


HEALTH_PROBE = """
import json, sys, time, urllib.request
deadline, pending = time.monotonic() + float(sys.argv[1]), list(sys.argv[2:])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
while pending and time.monotonic() < deadline:
    for url in list(pending):
        try:
            if json.loads(opener.open(url + "/health", timeout=0.5).read()).get("health") == "true":
                pending.remove(url)
        except (OSError, ValueError):
            pass
    time.sleep(0.05 if pending else 0)
print(" ".join(pending))
sys.exit(1 if pending else 0)
"""


def indent(text: str) -> str:
    return "   " + text.strip().replace("\n", "\n   ")


class LanEtcd:
    """etcd members on the LAN host (its namespace): clients at 192.168.174.2, peers on its loopback."""

    def __init__(self) -> None:
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # etcd fsyncs every write: tmpfs is free
        self.base = tempfile.mkdtemp(prefix="mp-demo-etcd-", dir=shm)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.endpoints = [f"http://{GATEWAY}:{ETCD_PORT + 2 * i}" for i in range(ETCD_MEMBERS)]
        self.peers = [f"http://127.0.0.1:{ETCD_PORT + 1 + 2 * i}" for i in range(ETCD_MEMBERS)]

    def start(self, timeout: float = 20.0) -> None:
        initial = ",".join(f"mp-demo-m{i}={peer}" for i, peer in enumerate(self.peers))
        for i, (client, peer) in enumerate(zip(self.endpoints, self.peers, strict=True)):
            argv = ["ip", "netns", "exec", LAN, ETCD, "--name", f"mp-demo-m{i}"]
            argv += ["--data-dir", os.path.join(self.base, f"m{i}")]
            argv += ["--listen-client-urls", client, "--advertise-client-urls", client]
            argv += ["--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer]
            argv += ["--initial-cluster", initial, "--initial-cluster-token", os.path.basename(self.base)]
            argv += ["--heartbeat-interval", "50", "--election-timeout", "500", "--log-level", "warn"]
            with open(os.path.join(self.base, f"m{i}.log"), "wb") as log:
                # `ip netns exec` execs etcd itself: the pid is the member's (for stop()).
                self.procs.append(
                    subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
                )
        # Health is etcd's /health of every member, asked from the LAN host's namespace (one process polls all).
        probe = [sys.executable, "-c", HEALTH_PROBE, str(timeout), *self.endpoints]
        waiting = subprocess.Popen(["ip", "netns", "exec", LAN, *probe], stdout=subprocess.PIPE, text=True)
        while waiting.poll() is None:
            for i, proc in enumerate(self.procs):
                if proc.poll() is not None:
                    waiting.kill()
                    waiting.wait()
                    raise SystemExit(f"etcd member {i} exited ({proc.returncode}):\n{self.log_tail(i)}")
            time.sleep(0.05)
        if waiting.returncode != 0:
            logs = "\n".join(self.log_tail(i) for i in range(ETCD_MEMBERS))
            raise SystemExit(
                f"etcd not healthy after {timeout:.0f} s: {waiting.stdout.read() if waiting.stdout else ''}\n{logs}"
            )

    def log_tail(self, i: int) -> str:
        with open(os.path.join(self.base, f"m{i}.log"), errors="replace") as fh:
            return "".join(fh.readlines()[-10:])

    def stop(self) -> None:
        """Stop every member (SIGTERM, SIGKILL after 2 s) and remove the data."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 2
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs = []
        shutil.rmtree(self.base, ignore_errors=True)


def seed_config() -> dict[str, Any]:
    with open(SEED_NAD) as fh:
        nad = yaml.safe_load(fh)
    return json.loads(nad["spec"]["config"])


def write_nad(path: str, config: dict[str, Any]) -> None:
    """A NAD manifest shaped like the seed's: `macvlan-conf`, its config as a JSON string."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(
            "apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\nmetadata:\n  name: macvlan-conf\n"
            f"spec:\n  config: '{json.dumps(config)}'\n"
        )


def write_pods(pod_dir: str) -> None:
    """web-1..3: the seed's pod manifest (cni/pods/default/web-1.yaml), one per node, same annotation."""
    with open(os.path.join(ROOT, "cni", "pods", "default", "web-1.yaml")) as fh:
        template = fh.read()
    os.makedirs(os.path.join(pod_dir, "default"))
    for name in POD_NAMES.values():
        with open(os.path.join(pod_dir, "default", f"{name}.yaml"), "w") as fh:
            fh.write(template.replace("web-1", name))


def ipam_show(nad_file: str) -> subprocess.CompletedProcess[str]:
    """`multiplane ipam show --config <NAD>` as an operator on node 1 runs it (the store is on the LAN)."""
    argv = ["ip", "netns", "exec", NODES[0], BINARY, "ipam", "show", "--config", nad_file]
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def net1_address(node: Node, pod: str) -> str:
    with open(node.state("cni", "multiplane", "status", f"mp-demo-{pod}.json")) as fh:
        status = json.load(fh)
    return next(e["ips"][0] for e in status if e["interface"] == "net1")


def ping(src: str, dst: str) -> bool:
    argv = ["ip", "netns", "exec", src, "busybox", "ping", "-c", "1", "-W", "2", dst]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def held(node: Node) -> list[str]:
    """The addresses a node's record still holds (its state.json in the node's own /var/lib)."""
    try:
        with open(node.state(*STATE)) as fh:
            record = json.load(fh)
    except FileNotFoundError:
        return []
    return sorted(ip for pool in record.get("pools", {}).values() for ip in pool.get("addresses", {}))


def cleanup() -> None:
    for ns in (*PODS.values(), *NODES, LAN):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def build_lan() -> None:
    sh("ip", "netns", "add", LAN)
    sh("ip", "-n", LAN, "link", "set", "lo", "up")
    sh("ip", "-n", LAN, "link", "add", BRIDGE, "type", "bridge")
    sh("ip", "-n", LAN, "link", "set", BRIDGE, "up")
    sh("ip", "-n", LAN, "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
    for i, node in enumerate(NODES, start=1):
        port = f"mp-demo-n{i}"
        for ns in (node, PODS[node]):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", node, "link", "add", "ens33", "type", "veth", "peer", "name", port)
        sh("ip", "-n", node, "link", "set", port, "netns", LAN)
        sh("ip", "-n", node, "addr", "add", f"{NODE_ADDRESSES[node]}/24", "dev", "ens33")
        sh("ip", "-n", node, "link", "set", "ens33", "up")
        sh("ip", "-n", LAN, "link", "set", port, "master", BRIDGE, "up")


def add(node: Node, name: str, pod_ns: str) -> str | None:
    """ADD the pod; its net1 address, or None after printing why not."""
    proc = node.cni("add", pod_ns, name)
    if proc.returncode != 0:
        print(indent(f"ADD {name} on {node.hostname} failed:\n{proc.stdout}{proc.stderr}"))
        return None
    return net1_address(node, name)


def run(workdir: str, driver: str) -> int:
    say(
        "Part two: three nodes",
        "Three network namespaces play three nodes (host names mp-demo-node1..3, each CNI call in a UTS namespace"
        " with the node's name, each node its own /var/lib). Their NICs `ens33` hang on one LAN bridge whose host"
        " is 192.168.174.2; the nodes have LAN addresses .11-.13.",
    )
    started = time.monotonic()
    build_lan()
    pod_dir = os.path.join(workdir, "pods")
    write_pods(pod_dir)
    nodes = {}
    for i, name in enumerate(NODES, start=1):
        nodes[name] = Node(
            os.path.join(workdir, name),
            driver,
            netns=name,
            hostname=name,
            pod_dir=pod_dir,
            pod_subnet=f"10.244.{i}.0/24",
        )

    say("host-local on two nodes", "First the seed's NAD unchanged (host-local IPAM keeps its state per node):")
    twice = {}
    for name in NODES[:2]:
        address = add(nodes[name], POD_NAMES[name], PODS[name])
        if address is None:
            return 1
        twice[name] = address
    same = len(set(twice.values())) == 1
    print(
        f"   host-local: {POD_NAMES[NODES[0]]} on {NODES[0]} got {twice[NODES[0]]}, "
        f"{POD_NAMES[NODES[1]]} on {NODES[1]} got {twice[NODES[1]]}"
        + (": the same address twice on one LAN." if same else ".")
    )
    for name in NODES[:2]:
        if nodes[name].cni("del", PODS[name], POD_NAMES[name]).returncode != 0:
            print(f"   DEL {POD_NAMES[name]} on {name} failed")
            return 1

    say(
        "The store",
        f"etcd ({ETCD_MEMBERS} members of Debian's etcd-server) on the LAN host, where every node reaches it.",
    )
    etcd = LanEtcd()
    etcd_started = time.monotonic()
    try:
        etcd.start()
        print(f"   etcd at {', '.join(etcd.endpoints)}: healthy after {time.monotonic() - etcd_started:.1f} s")
        status = with_store(workdir, nodes, etcd)
    finally:
        etcd.stop()
    print(f"   part two took {time.monotonic() - started:.1f} s; etcd is stopped and its data removed.")
    return status


def with_store(workdir: str, nodes: dict[str, Node], etcd: LanEtcd) -> int:
    config = seed_config()
    ipam = dict(config["ipam"])
    ipam["type"] = "multiplane-cluster-ipam"
    ipam["etcd"] = {"endpoints": etcd.endpoints}
    nad_dir = os.path.join(workdir, "nads")
    nad_file = os.path.join(nad_dir, "macvlan.yaml")
    write_nad(nad_file, {**config, "ipam": ipam})
    say(
        "Cluster-wide IPAM",
        "The seed's NAD again, its ipam changed as follows (nodeName is not set: each node's host name is its name):",
    )
    print(f"   ipam.type   {config['ipam']['type']} -> multiplane-cluster-ipam")
    print(f"   ipam.etcd   added: {json.dumps(ipam['etcd'])}")
    print(
        "   unchanged: macvlan on ens33 in bridge mode, host-local's subnet/rangeStart/rangeEnd (.200-.216),"
        " the gateway .2, the route."
    )
    for node in nodes.values():
        node.use_nads(nad_dir)

    addresses = {}
    for name, node in nodes.items():
        started = time.monotonic()
        address = add(node, POD_NAMES[name], PODS[name])
        if address is None:
            return 1
        addresses[name] = address
        print(f"   ADD {POD_NAMES[name]} on {name}: net1 {address} ({1000 * (time.monotonic() - started):.0f} ms)")
    print(indent(f"pod {POD_NAMES[NODES[0]]} on {NODES[0]}:\n" + sh("ip", "-n", PODS[NODES[0]], "-br", "addr")))
    distinct = len(set(addresses.values())) == len(addresses)
    print(f"   {'every node gave its pod a different address' if distinct else 'ADDRESSES REPEAT'}")

    say("Traffic", "The pods reach each other across nodes over the LAN (macvlan on each node's ens33).")
    pings = 0
    ring = list(NODES)
    for src, dst in zip(ring, ring[1:] + ring[:1], strict=True):
        ok = ping(PODS[src], addresses[dst].split("/")[0])
        pings += ok
        print(
            f"   pod {POD_NAMES[src]} ({src}) -> pod {POD_NAMES[dst]} ({dst}, {addresses[dst]}): "
            f"{'reachable' if ok else 'NOT reachable'}"
        )

    say("Who holds what", f"`multiplane ipam show --config {os.path.basename(nad_file)}` (run on {NODES[0]}):")
    shown = ipam_show(nad_file)
    print(indent(shown.stdout + shown.stderr))
    blocks = re.search(r"blocks /(\d+)\n\s+free: \d+ of (\d+) blocks, \d+ of (\d+) addresses", shown.stdout)
    if blocks:
        prefix, slots, size = blocks.groups()
        print(
            f"   The plugin cut the seed's {size} addresses into {slots} blocks of /{prefix} (its default /28, made smaller"
            f" until the range has at least 8 blocks): room for {slots} nodes, so blockSize need not be set."
        )

    say("Teardown", "DEL of every pod gives its address back to its node's blocks.")
    deleted = 0
    for name, node in nodes.items():
        proc = node.cni("del", PODS[name], POD_NAMES[name])
        deleted += proc.returncode == 0
        print(f"   DEL {POD_NAMES[name]} on {name}: {'ok' if proc.returncode == 0 else proc.stderr.strip()}")
    left = {name: held(node) for name, node in nodes.items()}
    for name, ips in left.items():
        print(f"   {name}'s record holds: {', '.join(ips) or 'no address'}")
    shown_after = ipam_show(nad_file)
    print("   ipam show again (each node keeps one empty block as a spare, so churn does not claim a block per pod):")
    print(indent(shown_after.stdout + shown_after.stderr))
    held_total = sum(len(ips) for ips in left.values())
    print(
        "   cluster-ipam summary: "
        + " ".join(f"{name}={addresses[name]}" for name in NODES)
        + f" distinct={'yes' if distinct else 'no'} pings={pings}/{len(NODES)} held-after-del={held_total}"
    )
    ok = distinct and pings == deleted == len(NODES) and held_total == 0 and shown.returncode == 0
    return 0 if ok and shown_after.returncode == 0 else 1


def alone(workdir: str) -> int:
    try:
        return run(workdir, build_driver(workdir))
    finally:
        cleanup()


def main() -> int:
    return play(alone)


if __name__ == "__main__":
    raise SystemExit(main())
