#!/usr/bin/env python3
"""`make demo`: multiplane-macvlan and multiplane-host-local beside the reference plugins, on a real kernel.

Run as root. It builds a throw-away topology (every name starts with `mp-demo`):
a veth pair stands in for the node NIC, one end stays in the host as the macvlan master,
the other end lives in a "LAN host" namespace; two "pod" namespaces get a macvlan each.
Pods 1 and 2 are attached by multiplane-macvlan (host-local runs inside it), pod 3 by
Debian's macvlan + host-local; all three take addresses from one shared pool.
Everything is removed at the end, even on failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

BIN_DIR = os.path.dirname(sys.executable)
OURS = {name: os.path.join(BIN_DIR, name) for name in ("multiplane-macvlan", "multiplane-host-local")}
REF_DIR = "/usr/lib/cni"
MASTER, PEER, LAN, PODS = "mp-demo-nic", "mp-demo-peer", "mp-demo-lan", ("mp-demo-pod1", "mp-demo-pod2", "mp-demo-pod3")


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def sh(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise SystemExit(f"command failed: {' '.join(argv)}\n{proc.stderr}")
    return proc.stdout


def cni(command: str, conf: dict, netns: str, container: str, cni_path: str) -> subprocess.CompletedProcess[str]:
    """Run the plugin named by the config's `type`, found in CNI_PATH, as a runtime does."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_NETNS": f"/var/run/netns/{netns}",
        "CNI_IFNAME": "net1",
        "CNI_PATH": cni_path,
    }
    candidates = [os.path.join(d, conf["type"]) for d in cni_path.split(":")]
    binary = next(c for c in candidates if os.path.exists(c))
    return subprocess.run([binary], input=json.dumps(conf), env=env, capture_output=True, text=True, check=False)


def cleanup(workdir: str) -> None:
    for ns in (LAN, *PODS):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    subprocess.run(["ip", "link", "del", MASTER], capture_output=True, check=False)
    shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    if os.geteuid() != 0:
        print("the demo needs root (it creates network namespaces)", file=sys.stderr)
        return 1
    for tool in ("ip", "busybox"):
        if shutil.which(tool) is None:
            print(f"missing {tool}: run `make setup` first", file=sys.stderr)
            return 1
    workdir = tempfile.mkdtemp(prefix="mp-demo-")
    try:
        return run(workdir)
    finally:
        say("Cleaning up: namespaces, links and the demo data directory are removed")
        cleanup(workdir)
        leftovers = [line for line in sh("ip", "-o", "link").splitlines() if "mp-demo" in line]
        print("leftover links:", leftovers or "none")


def run(workdir: str) -> int:
    cni_bin = os.path.join(workdir, "bin")
    os.makedirs(cni_bin)
    # A CNI plugin is found by its file name; these links are how a node installs them.
    for name, target in OURS.items():
        os.symlink(target, os.path.join(cni_bin, name))
    cni_path = f"{cni_bin}:{REF_DIR}"
    data_dir = os.path.join(workdir, "ipam")

    say("Building the test network: a veth pair plays the node NIC and a LAN host at 10.77.0.1")
    sh("ip", "link", "add", MASTER, "type", "veth", "peer", "name", PEER)
    for ns in (LAN, *PODS):
        sh("ip", "netns", "add", ns)
    sh("ip", "link", "set", PEER, "netns", LAN)
    sh("ip", "link", "set", MASTER, "up")
    sh("ip", "-n", LAN, "link", "set", PEER, "up")
    sh("ip", "-n", LAN, "addr", "add", "10.77.0.1/24", "dev", PEER)

    conf = {
        "cniVersion": "1.0.0",
        "name": "mp-demo-net",
        "type": "multiplane-macvlan",
        "master": MASTER,
        "mode": "bridge",
        "ipam": {
            "type": "host-local",
            "dataDir": data_dir,
            "subnet": "10.77.0.0/24",
            "rangeStart": "10.77.0.200",
            "rangeEnd": "10.77.0.216",
            "gateway": "10.77.0.1",
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    }
    say("The network config: multiplane-macvlan with host-local IPAM (run inside multiplane, same files as Debian's)")
    print(json.dumps(conf, indent=2))

    ref_conf = dict(conf, type="macvlan")
    attachments = [
        (PODS[0], conf, "multiplane-macvlan"),
        (PODS[1], conf, "multiplane-macvlan"),
        (PODS[2], ref_conf, "Debian's macvlan and host-local"),
    ]
    addresses = []
    for i, (pod, pod_conf, who) in enumerate(attachments, start=1):
        say(f"ADD: attaching {pod} with {who}")
        proc = cni("ADD", pod_conf, pod, f"mp-demo-ctr{i}", cni_path)
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr)
            return 1
        result = json.loads(proc.stdout)
        addresses.append(result["ips"][0]["address"].split("/")[0])
        print("result ips:", [ip["address"] for ip in result["ips"]])
        print(sh("ip", "-n", pod, "-br", "addr", "show", "net1").strip())
        print(sh("ip", "-n", pod, "route").strip())

    pool = os.path.join(data_dir, "mp-demo-net")
    say(f"One pool, two implementations: {pool} (one file per address: container id CRLF ifname)")
    for name in sorted(os.listdir(pool)):
        with open(os.path.join(pool, name), "rb") as fh:
            print(f"  {name:20} {fh.read()!r}")

    say("Traffic over macvlan: pod1 pings the LAN host, pod3 pings pod1 (bridge mode switches them in the kernel)")
    print(sh("ip", "netns", "exec", PODS[0], "busybox", "ping", "-c", "2", "-W", "2", "10.77.0.1").strip())
    print(sh("ip", "netns", "exec", PODS[2], "busybox", "ping", "-c", "2", "-W", "2", addresses[0]).strip())

    say("DEL: detaching the pods releases their addresses, whoever allocated them")
    for i, (pod, pod_conf, _who) in enumerate(attachments, start=1):
        proc = cni("DEL", pod_conf, pod, f"mp-demo-ctr{i}", cni_path)
        print(f"DEL {pod}: exit {proc.returncode}")
    print("files left in the pool:", sorted(os.listdir(pool)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
