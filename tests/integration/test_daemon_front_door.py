"""The node daemon as a front door (issue 10), side by side with the one-shot process (root: real namespaces).

* A pod ADD, CHECK and DEL through the daemon leave the same kernel state, files and log as
  through the one-shot process (both rounds on one node, one after the other).
* The daemon's own environment never reaches a request: delegates and IPAM see the
  request's environment, exactly as they do under the one-shot process.
* What a request writes on stderr reaches the caller.
* The call's log names the path it took: "served by the multiplane daemon", or the
  fallback's note saying why not (and a loud one on stderr when a daemon should have answered).
* A daemon with a cluster serves a call's pod and NAD from its caches.
* Regressions of two daemon-only failures found while parametrizing the suites: a delegate
  that runs a multiplane program called back into the daemon and waited for the worker its
  own call held; a call whose stderr exceeded the wire's 16 MiB field was answered "try
  again" although the daemon had done the work.

Every daemon here is a real `multiplane daemon` process (tests/daemon_harness.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import cni
from tests.cni import Invocation, snapshot
from tests.daemon_harness import Daemon
from multiplane.plugins.meta.selection import NETWORKS_ANNOTATION
from tests.integration.meta_helpers import (
    REF_MACVLAN,
    FrontDoorWorld,
    MetaNode,
    ip_files,
    links_by_name,
    macvlan_conf,
)
from tests.k8s_server import K8sServer
from tests.topology import Topology, ip, ip_json, scratch_netns
from tests.unit.test_meta_runner import Spies, spy_result

pytestmark = pytest.mark.root

APP = "mp-app"
POD_ARGS = "K8S_POD_NAMESPACE=test;K8S_POD_NAME=mp-pod;K8S_POD_INFRA_CONTAINER_ID=mp-c1"
EXTERNAL = "mp-refmacvlan"  # the reference macvlan under a type name multiplane does not run in-process
MAC = re.compile(r"\b[0-9a-f]{2}(?::[0-9a-f]{2}){5}\b")
HOST_VETH = re.compile(r"\bveth[0-9a-f]{8}\b")
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ", re.MULTILINE)
MILLIS = re.compile(r"\b\d+\.\d+ ms\b")


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    """One daemon for this module's tests (tests that need another start their own)."""
    with Daemon() as d:
        yield d


def _absent(tmp_path: Path) -> dict[str, str]:
    """The one-shot front door: a socket path where no daemon is (the client looks, then runs in-process)."""
    return {"MULTIPLANE_SOCKET": str(tmp_path / "mp-absent.sock"), "MULTIPLANE_DAEMON": "auto"}


def _same_text(text: str) -> str:
    """Text with what differs between two identical rounds replaced: MACs, host veth names, times, durations."""
    text = MAC.sub("<mac>", text)
    text = HOST_VETH.sub("<veth>", text)
    text = STAMP.sub("", text)
    return MILLIS.sub("<ms>", text)


# --------------------------------------------------------------------------- 1. the same pod, both doors


@dataclass
class Round:
    """One pod's ADD, CHECK and DEL through one front door, and what each left."""

    add: Invocation
    check: Invocation
    delete: Invocation
    after_add: dict[str, Any]
    after_del: dict[str, Any]
    log: list[str]


def _kernel(pod: str) -> dict[str, Any]:
    """The pod's links (kind, macvlan mode, MTU, state, global addresses) and its routes but the kernel's local table."""
    links = {}
    for name, link in links_by_name(pod).items():
        info = link.get("linkinfo") or {}
        links[name] = {
            "kind": info.get("info_kind", ""),
            "mode": (info.get("info_data") or {}).get("mode"),
            "mtu": link["mtu"],
            "up": "UP" in link["flags"],
            "operstate": link["operstate"],
            "addresses": sorted(
                f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if a.get("scope") == "global"
            ),
        }
    routes = []
    for family in ("-4", "-6"):
        for route in ip_json("-n", pod, family, "route", "show", "table", "all"):
            if route.get("table") != "local":
                route.pop("flags", None)
                routes.append(route)
    routes.sort(key=lambda r: json.dumps(r, sort_keys=True))
    return {"links": links, "routes": routes}


def _disk(node: MetaNode) -> dict[str, Any]:
    """Every file the node's plugins keep: host-local's, multiplane's cache and status, libcni's result cache."""
    files = {}
    for where in (node.ipam, node.cni_dir, node.cache):
        for rel, data in snapshot(str(where)).items():
            files[f"{where.name}/{rel}"] = _same_text(data.decode())
    return files


def _round(node: MetaNode, pod: str, cid: str, front_env: dict[str, str]) -> Round:
    node.front_env = front_env
    networks = "mp-fast,mp-ext"
    add = node.run("add", pod, cid, networks=networks)
    assert add.ok, f"ADD: {add.stdout} {add.stderr}"
    after_add = {"kernel": _kernel(pod), "disk": _disk(node), "bridge_ports": len(node.bridge_ports())}
    check = node.run("check", pod, cid, networks=networks)
    delete = node.run("del", pod, cid, networks=networks)
    after_del = {"kernel": _kernel(pod), "disk": _disk(node), "bridge_ports": len(node.bridge_ports())}
    log = _same_text(node.log_text()).splitlines()
    # The next round starts from the same disk: no allocation cursor, no log.
    for entry in node.ipam.iterdir():
        shutil.rmtree(entry)
    node.log.unlink()
    return Round(add, check, delete, after_add, after_del, log)


def test_a_pod_through_the_daemon_leaves_what_the_one_shot_process_leaves(
    topo: Topology, cnidriver: str, tmp_path: Path, daemon: Daemon
) -> None:
    """eth0 (the exec'd reference bridge), net1 (the in-process macvlan) and net2 (an exec'd external macvlan):
    ADD, CHECK and DEL print the same, and leave the same links, addresses, routes, host-local files, cache,
    network-status file and libcni cache through the daemon as through the one-shot process; the meta log
    differs only in the line naming the front door."""
    node = MetaNode(tmp_path / "mp-node", cnidriver, topo.bin_dir)
    try:
        (topo.bin_dir / EXTERNAL).symlink_to(REF_MACVLAN)
        ip("-n", topo.lan, "addr", "add", "10.67.0.1/24", "dev", topo.peer)
        node.add_nad("mp-fast", macvlan_conf("mp-fast", topo.master, "10.66.0.0/24", str(node.ipam)), APP)
        node.add_nad("mp-ext", macvlan_conf("mp-ext", topo.master, "10.67.0.0/24", str(node.ipam), EXTERNAL), APP)
        pod, cid = topo.pods[0], f"mp-ctr-{node.tag}"

        daemon.mark()
        one_shot = _round(node, pod, cid, _absent(tmp_path))
        assert daemon.log_since_mark() == ""  # the one-shot round never reached the daemon
        served = _round(node, pod, cid, daemon.env)
    finally:
        node.close()

    # The daemon served the meta-plugin's three calls (its delegates are exec'd or in-process, never forwarded).
    requests = re.findall(r"daemon: (ADD|CHECK|DEL) of container (\S+) .*\((multiplane[-\w]*)\): ok", daemon.log_text())
    assert requests == [(command, cid[:12], "multiplane") for command in ("ADD", "CHECK", "DEL")]

    for inv in (one_shot.add, one_shot.check, one_shot.delete, served.add, served.check, served.delete):
        assert inv.ok, inv.stdout + inv.stderr
    assert _same_text(served.add.stdout) == _same_text(one_shot.add.stdout)
    assert (served.check.stdout, served.delete.stdout) == (one_shot.check.stdout, one_shot.delete.stdout) == ("", "")
    assert (served.add.stderr, served.check.stderr, served.delete.stderr) == (
        one_shot.add.stderr,
        one_shot.check.stderr,
        one_shot.delete.stderr,
    )

    # The state is real (three planes attached, files written), and the same through both doors.
    assert sorted(one_shot.after_add["kernel"]["links"]) == ["eth0", "lo", "net1", "net2"]
    assert {"cni/" + cid, f"cni/status/{cid}.json"} <= set(one_shot.after_add["disk"])
    assert served.after_add == one_shot.after_add
    assert served.after_del == one_shot.after_del
    assert sorted(one_shot.after_del["kernel"]["links"]) == ["lo"]
    assert one_shot.after_del["bridge_ports"] == 0

    # The meta log: the same lines, but for the front door's note on each command.
    note = re.compile(r": (ADD|CHECK|DEL) of container \S+: (in-process \(no daemon socket at .*\)|served by .*)$")
    assert len([line for line in one_shot.log if "in-process (no daemon socket at" in line]) == 3
    assert len([line for line in served.log if line.endswith(": served by the multiplane daemon")]) == 3
    assert [line for line in served.log if not note.search(line)] == [
        line for line in one_shot.log if not note.search(line)
    ]


# --------------------------------------------------------------------------- 2. the daemon's environment


LEAKY = {"MP_LEAK": "1", "CNI_PATH": "/nonexistent", "CNI_ARGS": "MP_LEAK=1", "MULTIPLANE_NETWORKS": "mp-leak"}
SHELL_VARIABLES = ("PWD", "SHLVL", "OLDPWD", "_")  # what /bin/sh itself sets: the working directory differs


def _seen(spies: Spies, drop: tuple[str, ...]) -> list[tuple[str, str, dict[str, str]]]:
    """(spy, command, environment) of every call, without what the shell adds and the variables in `drop`."""
    ignored = SHELL_VARIABLES + drop
    return [(c.name, c.command, {k: v for k, v in c.env.items() if k not in ignored}) for c in spies.calls()]


def test_the_daemons_environment_never_reaches_a_request(tmp_path: Path) -> None:
    """A daemon started with MP_LEAK=1, CNI_PATH=/nonexistent, CNI_ARGS and MULTIPLANE_NETWORKS in its own
    environment: the meta-plugin's delegates and macvlan's IPAM see exactly the environment they see under the
    one-shot process (the request's, with MP_REQUEST=mine), and nothing of the daemon's."""
    world = FrontDoorWorld(tmp_path, Spies(tmp_path))
    mv = {"cniVersion": "1.0.0", "name": "mp-mv", "type": "macvlan", "master": "mp-none", "ipam": {"type": "mp-spy2"}}
    seen = {}
    with Daemon(extra_env=LEAKY) as daemon, scratch_netns("mp-fd-") as ns:
        environ = Path(f"/proc/{daemon.pid}/environ").read_bytes().split(b"\0")
        assert b"MP_LEAK=1" in environ and b"CNI_PATH=/nonexistent" in environ  # the daemon does carry them
        for door, env in (("process", _absent(tmp_path)), ("daemon", daemon.env)):
            world.front_env = env
            netns = f"/var/run/netns/{ns}"
            world.run("ADD", netns=netns, args=f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-net1", MP_REQUEST="mine")
            world.run("DEL", netns=netns, args=POD_ARGS, MP_REQUEST="mine")
            # The standalone macvlan too: its DEL runs the IPAM its config names, found in the request's CNI_PATH.
            inv = cni.run(
                os.path.join(cni.BIN_DIR, "multiplane-macvlan"),
                "DEL",
                mv,
                netns="",
                path=str(world.spies.bin),
                env={**env, "MP_REQUEST": "mine"},
            )
            assert inv.ok, inv.stdout + inv.stderr
            seen[door] = _seen(world.spies, drop=tuple(env))
            world.spies.reset()
    assert [(name, command) for name, command, _ in seen["daemon"]] == [
        ("mp-spy1", "ADD"),
        ("mp-spy2", "ADD"),
        ("mp-spy2", "DEL"),
        ("mp-spy1", "DEL"),
        ("mp-spy2", "DEL"),
    ]
    for _name, _command, env in seen["daemon"]:
        assert env["MP_REQUEST"] == "mine"
        assert "MP_LEAK" not in env and "MULTIPLANE_NETWORKS" not in env, env
        assert "/nonexistent" not in env["CNI_PATH"] and "MP_LEAK" not in env.get("CNI_ARGS", ""), env
    assert seen["daemon"] == seen["process"]


# --------------------------------------------------------------------------- 3. stderr

NOISY = """#!/bin/sh
echo "mp-noisy says $CNI_COMMAND on stderr" >&2
exec "$(dirname "$0")/mp-spy2"
"""


def _stderr_round(world: FrontDoorWorld, netns: str, data_dir: Path) -> list[str]:
    """What the caller's stderr shows for: a delegate that writes to stderr, a failed ADD whose meta-plugin logs
    to stderr, and a standalone host-local's warning (an off-subnet gateway)."""
    seen = []
    args = f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-noisy"
    world.run("ADD", netns=netns, args=args)
    seen.append(world.last.stderr if world.last else "")
    world.run("DEL", netns=netns, args=args)
    world.spies.fail("mp-spy2", "ADD", 11, "mp-expected-failure")
    err = world.fails("ADD", {**world.meta, "logToStderr": True}, netns=netns, args=args)
    assert err.error_code == 11
    seen.append(world.last.stderr if world.last else "")
    ipam = {"type": "host-local", "subnet": "10.66.0.0/24", "gateway": "10.67.0.1", "dataDir": str(data_dir)}
    conf = {"cniVersion": "1.0.0", "name": "mp-hl", "type": "x", "ipam": ipam}
    inv = cni.run(cni.OURS_HOST_LOCAL, "ADD", conf, env=world.front_env)
    assert inv.ok, inv.stdout + inv.stderr
    seen.append(inv.stderr)
    return [_same_text(text) for text in seen]


def test_a_requests_stderr_reaches_the_caller(tmp_path: Path, daemon: Daemon) -> None:
    """A delegate's own stderr, the meta-plugin's error log (logToStderr) and a standalone plugin's warning are
    on the caller's stderr through the daemon, exactly as through the one-shot process."""
    rounds = {}
    with scratch_netns("mp-fd-") as ns:
        for door, env in (("process", _absent(tmp_path)), ("daemon", daemon.env)):
            root = tmp_path / door
            root.mkdir()
            world = FrontDoorWorld(root, Spies(root))
            (world.spies.bin / "mp-noisy").write_text(NOISY)
            (world.spies.bin / "mp-noisy").chmod(0o755)
            world.add_nad("mp-noisy", {"cniVersion": "1.0.0", "name": "mp-noisy", "type": "mp-noisy"})
            world.front_env = env
            rounds[door] = _stderr_round(world, f"/var/run/netns/{ns}", tmp_path / "mp-hl-data")
            shutil.rmtree(tmp_path / "mp-hl-data")
    noisy, failed, warning = rounds["daemon"]
    assert noisy == "mp-noisy says ADD on stderr\n"
    assert "mp-noisy says ADD on stderr" in failed
    assert "mp-noisy says DEL on stderr" in failed  # the rollback's
    assert 'error adding container to network "test/mp-noisy": mp-expected-failure' in failed
    assert "[warning] host-local: range set 0: gateway 10.67.0.1 is outside subnet 10.66.0.0/24" in warning
    assert rounds["daemon"] == [
        text.replace(str(tmp_path / "process"), str(tmp_path / "daemon")) for text in rounds["process"]
    ]


# --------------------------------------------------------------------------- 4. which door, in the call's log


def _listened_by_nobody(path: Path) -> str:
    """A unix socket file nobody listens on (bound, never listened): connecting is refused."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()
    return str(path)


@dataclass
class Door:
    """How a call is set up (its variables and meta config keys), and what its log must say about the path taken."""

    id: str
    env: Callable[[Daemon, Path], dict[str, str]]
    conf: Callable[[Daemon, Path], dict[str, Any]]
    note: Callable[[Daemon, Path], str]
    loud: bool = False  # the note is on the caller's stderr too (a daemon should have answered)

    @property
    def served(self) -> bool:
        return self.note.__name__ == "_served"


def _served(_d: Daemon, _t: Path) -> str:
    return "served by the multiplane daemon"


def _no_conf(_d: Daemon, _t: Path) -> dict[str, Any]:
    return {}


DOORS = [
    Door("daemon", lambda d, _t: d.env, _no_conf, _served),
    Door(
        "daemonSocket-key",
        lambda _d, t: {"MULTIPLANE_SOCKET": str(t / "mp-absent.sock"), "MULTIPLANE_DAEMON": "require"},
        lambda d, _t: {"daemonSocket": d.socket},
        _served,
    ),
    Door(
        "no-socket",
        lambda _d, t: _absent(t),
        _no_conf,
        lambda _d, t: f"in-process (no daemon socket at {t / 'mp-absent.sock'})",
    ),
    Door(
        "nobody-listens",
        lambda _d, t: {"MULTIPLANE_SOCKET": str(t / "mp-stale.sock")},
        _no_conf,
        lambda _d, t: f"in-process (nobody listens on the daemon socket {t / 'mp-stale.sock'})",
        loud=True,
    ),
    Door(
        "switched-off",
        lambda d, _t: {"MULTIPLANE_SOCKET": d.socket, "MULTIPLANE_DAEMON": "off"},
        _no_conf,
        lambda _d, _t: "in-process (the daemon is switched off)",
    ),
    Door(
        "daemonSocket-empty",
        lambda d, _t: {"MULTIPLANE_SOCKET": d.socket},
        lambda _d, _t: {"daemonSocket": ""},
        lambda _d, _t: "in-process (the daemon is switched off)",
    ),
]


@pytest.mark.parametrize("door", DOORS, ids=[d.id for d in DOORS])
def test_the_calls_log_names_the_path_it_took(tmp_path: Path, daemon: Daemon, door: Door) -> None:
    """At logLevel verbose the meta-plugin's logFile says, for each command, whether the daemon served it or why
    it ran in-process; the note is on stderr too when a daemon socket is there but does not answer."""
    _listened_by_nobody(tmp_path / "mp-stale.sock")
    world = FrontDoorWorld(tmp_path, Spies(tmp_path))
    world.front_env = door.env(daemon, tmp_path)
    log = tmp_path / "mp-meta.log"
    conf = {**world.meta, "logFile": str(log), "logLevel": "verbose", **door.conf(daemon, tmp_path)}
    note = door.note(daemon, tmp_path)
    daemon.mark()
    with scratch_netns("mp-fd-") as ns:
        for command in ("ADD", "DEL"):
            world.run(command, conf, netns=f"/var/run/netns/{ns}", args=f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-net1")
            assert world.last is not None
            assert (f"multiplane: {note}" in world.last.stderr) == door.loud, world.last.stderr
    assert [line.split("] ", 1)[1] for line in log.read_text().splitlines() if "of container mp-c1: " in line] == [
        f"test/mp-pod: ADD of container mp-c1: {note}",
        f"test/mp-pod: DEL of container mp-c1: {note}",
    ]
    assert world.spies.seen() == [
        ("mp-spy1", "ADD", "eth0"),
        ("mp-spy2", "ADD", "net1"),
        ("mp-spy2", "DEL", "net1"),
        ("mp-spy1", "DEL", "eth0"),
    ]
    served = re.findall(r"daemon: (\w+) of container mp-c1 ", daemon.log_since_mark())
    assert served == (["ADD", "DEL"] if door.served else [])


def test_a_killed_daemon_leaves_a_socket_the_next_call_falls_back_from(tmp_path: Path) -> None:
    """A daemon SIGKILLed (its socket file left, nobody listening): the next call runs in-process, says so on
    stderr and in its log, and succeeds; with MULTIPLANE_DAEMON=require it fails with code 11 instead."""
    crashed = Daemon().start()
    try:
        assert crashed.proc is not None
        crashed.proc.kill()
        crashed.proc.wait()
        assert os.path.exists(crashed.socket)
        world = FrontDoorWorld(tmp_path, Spies(tmp_path))
        log = tmp_path / "mp-meta.log"
        conf = {**world.meta, "logFile": str(log), "logLevel": "verbose"}
        note = f"in-process (nobody listens on the daemon socket {crashed.socket})"
        with scratch_netns("mp-fd-") as ns:
            netns = f"/var/run/netns/{ns}"
            world.front_env = {"MULTIPLANE_SOCKET": crashed.socket, "MULTIPLANE_DAEMON": "require"}
            err = world.fails("ADD", conf, netns=netns, args=POD_ARGS)
            assert err.error_code == 11
            assert err.msg == f"MULTIPLANE_DAEMON=require and the daemon did not serve the call: {note}"
            assert world.spies.calls() == [] and not world.cache_path().exists()
            world.front_env = {"MULTIPLANE_SOCKET": crashed.socket}
            out = world.run("ADD", conf, netns=netns, args=POD_ARGS)
            assert out is not None and json.loads(out)["ips"][0]["address"] == "10.88.0.5/16"
            assert world.last is not None and f"multiplane: {note}" in world.last.stderr
            assert world.run("DEL", conf, netns=netns, args=POD_ARGS) is None
        assert f"ADD of container mp-c1: {note}" in log.read_text()
        assert world.spies.seen() == [("mp-spy1", "ADD", "eth0"), ("mp-spy1", "DEL", "eth0")]
    finally:
        crashed.kill()


# --------------------------------------------------------------------------- 5. a daemon with a cluster


def test_a_daemon_with_a_cluster_reads_the_pod_and_nad_from_its_caches(tmp_path: Path) -> None:
    """A daemon watching an API server (caches synced): a pod ADD reads the pod and its NAD from the caches (the
    API server sees no GET, only the network-status PATCH and the Events), the NAD is the API's (not the local
    file of the same name), and the request's own kubeconfig (as `multiplane install` writes one) is never read:
    here it does not even exist. A request configured for local files only keeps reading them."""
    with K8sServer() as api, scratch_netns("mp-fd-") as ns:
        api.add_pod("test", "mp-pod", annotations={NETWORKS_ANNOTATION: "mp-net1"}, uid="mp-uid-1", node="mp-node-3")
        api.add_nad("test", "mp-net1", {"cniVersion": "1.0.0", "name": "mp-net1", "type": "mp-spy3"})
        kubeconfig = api.kubeconfig(tmp_path / "mp-kc-daemon")
        with Daemon(kubeconfig=kubeconfig, node_name="mp-node-3", metrics_address="127.0.0.1:0") as daemon:
            daemon.wait_healthy()
            world = FrontDoorWorld(tmp_path, Spies(tmp_path))  # its local NAD mp-net1 is of type mp-spy2
            world.spies.add("mp-spy3", spy_result("10.99.3.7/24"))
            world.front_env = daemon.env
            netns, args = f"/var/run/netns/{ns}", f"{POD_ARGS};K8S_POD_UID=mp-uid-1"
            watched = len(api.requests)
            # The cluster network by path, as `multiplane install` writes it (a name is looked up as a NAD
            # first, and a NAD the cache does not have is asked for live).
            conf = {
                **world.meta,
                "clusterNetwork": str(world.conf_dir / "10-cluster.conf"),
                "kubeconfig": str(tmp_path / "mp-kc-never-read"),
            }
            world.run("ADD", conf, netns=netns, args=args)
            world.run("DEL", conf, netns=netns, args=args)
            made = [(r.method, r.path.rsplit("/namespaces/", 1)[-1]) for r in api.requests[watched:]]
            local = {k: v for k, v in conf.items() if k != "kubeconfig"}
            local_args = f"{args};MULTIPLANE_NETWORKS=mp-net1"  # no local pod file: select by CNI_ARGS
            world.run("ADD", local, netns=netns, args=local_args)
            world.run("DEL", local, netns=netns, args=local_args)
            after_local = len(api.requests)
            hits = daemon.metric("multiplane_cache_lookups_total", cache="pods", outcome="hit")
            nad_hits = daemon.metric(
                "multiplane_cache_lookups_total", cache="networkattachmentdefinitions", outcome="hit"
            )
    assert world.spies.seen() == [
        ("mp-spy1", "ADD", "eth0"),
        ("mp-spy3", "ADD", "net1"),
        ("mp-spy3", "DEL", "net1"),
        ("mp-spy1", "DEL", "eth0"),
        ("mp-spy1", "ADD", "eth0"),
        ("mp-spy2", "ADD", "net1"),  # the local NAD of the same name
        ("mp-spy2", "DEL", "net1"),
        ("mp-spy1", "DEL", "eth0"),
    ]
    assert after_local == watched + len(made)  # the local-files request made no API request at all
    assert [m for m in made if m[0] not in ("PATCH", "POST")] == []  # nothing read live
    assert made.count(("PATCH", "test/pods/mp-pod/status")) == 1
    assert {m for m in made if m[0] == "POST"} == {("POST", "test/events")}
    assert hits >= 1 and nad_hits >= 1, made


# --------------------------------------------------------------------------- 6. daemon-only failures (regressions)


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc), children before grandchildren."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, level = [], [pid]
    while level:
        level = [child for child, parent in parents.items() if parent in level]
        found += level
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_a_delegate_that_runs_multiplane_does_not_wait_for_the_worker_it_holds(
    topo: Topology, cnidriver: str, tmp_path: Path
) -> None:
    """The cluster network is the reference bridge with IPAM multiplane-host-local (our IPAM under a reference
    plugin, as test_host_local_chain runs it). Through a daemon with one worker, ADD, CHECK and DEL finish
    promptly: the delegate's own multiplane call must not queue behind the worker its caller holds (it did, and
    with the default 8 workers eight such pods at once hung)."""
    node = MetaNode(tmp_path / "mp-node", cnidriver, topo.bin_dir)
    config = tmp_path / "mp-daemon.json"
    config.write_text(json.dumps({"maxConcurrency": 1}))
    pod, cid = topo.pods[0], f"mp-ctr-{node.tag}"
    try:
        with Daemon(config=str(config)) as daemon, ThreadPoolExecutor(1) as pool:
            cluster = node.cluster_conflist()
            cluster["plugins"][0]["ipam"]["type"] = "multiplane-host-local"
            node.cluster_path.write_text(json.dumps(cluster))
            node.front_env = daemon.env
            for command in ("add", "check", "del"):
                call = pool.submit(node.run, command, pod, cid)
                try:
                    inv = call.result(timeout=5)
                except TimeoutError:
                    # Free the worker: kill the delegates' calls back into the daemon until the driver returns
                    # (the bridge then fails, the ADD rolls back); the daemon must still stop cleanly.
                    while not call.done():
                        for child in _descendants(daemon.pid):
                            if "multiplane-host-local" in _cmdline(child):
                                os.kill(child, signal.SIGKILL)
                        time.sleep(0.1)
                    raise AssertionError(f"{command} did not finish within 5 s: {call.result().stderr}") from None
                assert inv.ok, inv.stdout + inv.stderr
            assert ip_files(node.ipam) == [] and node.bridge_ports() == []
    finally:
        node.front_env = {"MULTIPLANE_DAEMON": "off"}
        node.run("del", pod, cid)
        node.close()


LOUD = """#!/bin/sh
head -c {size} /dev/zero | tr '\\0' x >&2
exec "$(dirname "$0")/mp-spy2"
"""


def test_a_call_with_more_stderr_than_the_wire_carries_still_gets_its_answer(tmp_path: Path, daemon: Daemon) -> None:
    """A delegate writes 17 MiB to stderr and succeeds: through the one-shot process ADD succeeds with the whole
    stderr; through the daemon it succeeds too, with its stderr cut short (the wire carries 16 MiB a field: the
    client used to refuse the answer and report code 11 for an ADD the daemon had done)."""
    size = 17 << 20
    world = FrontDoorWorld(tmp_path, Spies(tmp_path))
    (world.spies.bin / "mp-loud").write_text(LOUD.format(size=size))
    (world.spies.bin / "mp-loud").chmod(0o755)
    world.add_nad("mp-loud", {"cniVersion": "1.0.0", "name": "mp-loud", "type": "mp-loud"})
    outcome = {}
    with scratch_netns("mp-fd-") as ns:
        netns, args = f"/var/run/netns/{ns}", f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-loud"
        for door, env in (("process", _absent(tmp_path)), ("daemon", daemon.env)):
            world.front_env = env
            inv = world.invoke("ADD", netns=netns, args=args)
            outcome[door] = (inv.returncode, inv.stdout, len(inv.stderr))
            world.front_env = {"MULTIPLANE_DAEMON": "off"}
            world.run("DEL", netns=netns, args=args)
    assert outcome["process"][0] == 0 and outcome["process"][2] >= size
    assert outcome["daemon"][:2] == outcome["process"][:2], outcome["daemon"][1]
    assert 0 < outcome["daemon"][2] < size
