#!/usr/bin/env python3
"""`make bench` (root): multiplane against Debian's Go plugins, in one run; writes docs/benchmarks.md.

Not a test (pytest never imports this file): it measures. Every latency sample is one real
runtime operation, a fresh process as a container runtime starts it, reported as median and
p90 over MP_BENCH_SAMPLES samples (default 30; the older name BENCH_RUNS is still read) after
two warm-up rounds, with ratios ours / Go. A quick run to see that everything works:
`MP_BENCH_SAMPLES=3 MP_BENCH_BURST_ROUNDS=1 MP_BENCH_DOC=/tmp/bench.md make bench` (MP_BENCH_DOC:
where the report goes instead of docs/benchmarks.md, which only a full run should write).

multiplane is measured in its two shipped forms, side by side:
 - the installed runtime: `multiplane install --root <tmp>/mp-root` lays the runtime tree
   down once as <root>/opt/cni/bin/.multiplane/<build> (+ `current`), and
   <root>/opt/cni/bin/multiplane is the bare static launcher (multiplane-macvlan and
   multiplane-host-local link to it): nothing is unpacked or written on a call;
 - the self-contained file dist/multiplane (a copy taken at the start, which the install above
   also comes from, linked under our three names): it unpacks its tree once per build into
   $MULTIPLANE_UNPACK_DIR, which the bench points into its own temporary directory; its rows
   run with the tree already unpacked (warm), except the "cold" start-up row, whose unpack
   directory is removed before each sample;
and, for reference, the Python entry points of the project venv.

 a) the reference chain: Debian's macvlan + host-local in a conflist, through the libcni driver;
 b) the same attachment with type `multiplane-macvlan` (host-local in-process), through the
    driver: installed runtime, self-contained file, Python entry point;
 c) the meta-plugin `multiplane`: the cluster network (Debian's bridge + host-local) plus 1
    and plus 4 macvlan networks chosen by annotation (local NAD files, CNI_ARGS
    MULTIPLANE_NETWORKS), through the driver, no daemon: installed runtime, self-contained
    file (and the Python entry point for + 1);
 d) what a node without a meta-plugin pays for the same pod: the bridge conflist, then one
    reference macvlan conflist per network, each a driver call into the same pod (eth0,
    net1, ...), summed per pod;
 e) host-local alone, exec'd directly: Go, installed, self-contained, Python entry point;
 f) process start-up (VERSION) and its layers: Go host-local; the tree's loader and
    interpreter alone (`<tree>/ld-linux-x86-64.so.2 --inhibit-cache --library-path <tree>/lib
    <tree>/python3.11 -c pass`); the tree's boot.py without the launcher; the installed
    runtime; the self-contained file warm and cold;
 g) peak memory (max RSS) of one meta ADD with one extra network, exec'd directly by a
    wrapper that reads its children's ru_maxrss;
 h) the goals of issue 9, each a ratio of medians measured interleaved in this run:
    installed VERSION within 8x Go host-local VERSION (f), installed host-local ADD within
    8x Go host-local ADD (e), the ADD of a pod with the cluster network + 1 macvlan network
    within 4x the Go plugins called one after another (c vs d);
 i) where the time goes: `-X importtime` of VERSION, host-local ADD and a meta ADD inside the
    installed tree's interpreter (the launcher's argv plus `-X importtime`), a cProfile of one
    meta ADD (Python entry point), the kernel's own cost of creating and deleting a macvlan and of
    closing an AF_PACKET socket;
 j) the node daemon (issue 10): the installed launcher runs `multiplane daemon` with the thick
    DaemonSet's daemon.json (packaging/k8s/daemonset-thick.yaml; socket and metricsAddress in
    the bench's own directory and on a free loopback port, no chrootDir: it runs on the host),
    no cluster (local NAD files, as in c). The pods of c are also run through it
    (MULTIPLANE_SOCKET, MULTIPLANE_DAEMON=require: a call the daemon does not serve fails),
    interleaved with c and d; CPU per pod ADD and DEL: the driver calls' children (getrusage
    RUSAGE_CHILDREN before and after each call) plus, for the daemon rows, the daemon's own and
    its waited-for children's CPU (/proc/<pid>/stat utime+stime+cutime+cstime before and after
    each pod's calls); a burst of MP_BENCH_BURST pods (default 50) started at once, each its
    own netns and driver call(s), through the daemon, the one-shot installed runtime and the Go
    plugins, MP_BENCH_BURST_ROUNDS rounds (default 3), then all their DELs at once; the
    daemon's VmRSS/VmHWM at each stage; the daemon's own per-request time from its log
    (logLevel verbose, as the DaemonSet sets it) and its request counts from /metrics; and a
    cProfile of the daemon's workers (the venv's interpreter, Server._run wrapped per request);
 k) the goals of issue 10 (j against d, in this run): a pod + 1 through the daemon within
    1.5x, a pod + 4 within 1.0x, CPU per pod ADD (client + daemon) within 2x, and a burst
    with no error;
 l) cluster-wide IPAM (issue 13): the installed runtime's `multiplane-cluster-ipam` (the link
    `multiplane install` makes for every personality; the bench makes it if the install did
    not) exec'd directly against a three-member etcd the bench starts with
    tests/etcd_cluster.py, on two paths: one-shot (no daemon: the whole plugin in the exec'd
    process) and through a node daemon of this section's own (the installed launcher's
    `multiplane daemon`, the thick DaemonSet's daemon.json without chrootDir, its own socket
    and metrics port in the bench's directory; the same link exec'd with MULTIPLANE_SOCKET and
    MULTIPLANE_DAEMON=require is the per-call client, so a call the daemon does not serve fails
    the run, and its /metrics count is checked). Daemon and etcd are stopped after this
    section, failure or not. Rows: ADD (and DEL) on a warm node, an address from a block it
    owns, and a node's first ADD, which claims a block, each one-shot and through the daemon,
    interleaved with Debian's Go host-local and the installed multiplane-host-local; CPU per
    ADD (RUSAGE_CHILDREN of the exec, plus the daemon's /proc stat for the daemon rows); the
    daemon's own time per request from its log; etcd writes (its revision's delta) over 100
    one-shot ADDs of a node that already owns a block, with the default blockSize and with
    blockSize /32 (every ADD claims: a per-allocation design);
 m) the goals of issue 13 (l, in this run): warm ADD through the node daemon within 1.5x Go
    host-local ADD (the one-shot ratio is reported beside it), under 10 etcd writes per 100 ADDs.

MP_BENCH_ONLY=cipam runs the install and section l alone (no driver, no pods; about 30 s with
the default samples) and prints issue 13's goals and section 11; it writes a report only where
MP_BENCH_DOC says, never over docs/benchmarks.md (a full run's): `MP_BENCH_ONLY=cipam make bench`,
or `MP_BENCH_ONLY=cipam MP_BENCH_SAMPLES=5 .venv/bin/python tests/bench/bench.py` (root, after
`make binary`).

Scenarios of a section are interleaved round by round, so a burst of background load hits
all of them alike. Every namespace, link and directory is named mp-*; addresses are 10.x;
everything (the installed root, both unpack directories, the daemons' sockets and logs
included) lives in the bench's own temporary directory and is removed at the end, after a
failure too (the bridge included; the daemons are stopped first), and net.ipv4.ip_forward is
put back as it was. The one-shot rows run with MULTIPLANE_SOCKET naming a socket that does
not exist in the bench's directory: they pay the client's look for a daemon, as a node
without one does, and a daemon someone else runs on this machine can never serve them.
"""

from __future__ import annotations

import base64
import collections
import ipaddress
import json
import os
import platform
import pstats
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.integration.meta_helpers import IP_FORWARD, MetaNode, macvlan_conf  # noqa: E402
from tests.topology import Topology, ip, ip_json  # noqa: E402

N = max(1, int(os.environ.get("MP_BENCH_SAMPLES") or os.environ.get("BENCH_RUNS") or "30"))
WARMUP = 2
# pods started at once in a burst; at most 200, as the cluster network is a /24
BURST = min(200, max(1, int(os.environ.get("MP_BENCH_BURST") or "50")))
BURST_ROUNDS = max(1, int(os.environ.get("MP_BENCH_BURST_ROUNDS") or "3"))
PROFILE_RUNS = 10  # profiled pod ADDs (and DELs) through the daemon, after 2 unprofiled
IMPORT_RUNS = 5  # -X importtime runs per command; medians per module
PY_BIN = Path(sys.executable).parent  # the venv's console scripts: the Python entry point
DIST = ROOT / "dist" / "multiplane"
REF = Path("/usr/lib/cni")
REF_PATH = str(REF)
DRIVER_SRC = ROOT / "tests" / "cnidriver" / "main.go"
DOC = Path(os.environ.get("MP_BENCH_DOC") or ROOT / "docs" / "benchmarks.md")  # a quick run may write elsewhere
ONLY = os.environ.get("MP_BENCH_ONLY", "")  # "cipam": the install and section l alone (see the docstring)
NAMES = ("multiplane", "multiplane-macvlan", "multiplane-host-local")
SYS_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
POD_NAMESPACE, POD_NAME = "mp-app", "mp-web"
POD_ARGS = f"IgnoreUnknown=1;K8S_POD_NAMESPACE={POD_NAMESPACE};K8S_POD_NAME={POD_NAME}"
SECONDARY = [f"mp-net{i}" for i in range(1, 5)]
VERSION_STDIN = b'{"cniVersion":"1.0.0"}'
KNOWN = {"go_add": 10.7, "go_del": 19.6, "multus_add": 40.0, "multus_del": 68.0}
MULTUS_THICK = "1.6–1.7x"  # Multus thick, pod + 1 network, against the Go plugins: issue 10's figure for this machine
DAEMONSET = ROOT / "packaging" / "k8s" / "daemonset-thick.yaml"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# multiplane's forms: how the rows call them
FORMS = {"inst": "installed runtime", "dist": "dist/multiplane, self-contained", "py": "Python entry point"}
# issue 9's goals: (key, what, limit); the ratios are computed in report() from this run's medians
GOALS = (
    ("version", "start-up: installed runtime `multiplane` VERSION vs Debian's Go `host-local` VERSION", 8.0),
    ("hl-add", "host-local ADD: installed `multiplane-host-local` vs Debian's Go `host-local`", 8.0),
    (
        "pod1",
        "pod ADD, cluster network + 1 macvlan network, no daemon: installed `multiplane` vs the Go plugins"
        " one after another (bridge, then macvlan + host-local)",
        4.0,
    ),
)
# issue 10's latency goals: (key, what, limit); CPU and burst goals are built in daemon_goals()
DAEMON_GOALS = (
    (
        "1",
        "pod ADD, cluster network + 1 macvlan network, through the daemon: installed client + daemon vs the Go"
        " plugins one after another",
        1.5,
    ),
    ("4", "pod ADD, cluster network + 4 macvlan networks, through the daemon: the same", 1.0),
)
CPU_LIMIT = 2.0
# issue 13: cluster-wide IPAM, exec'd directly against the bench's own 3-member etcd, one-shot and through a daemon
CIPAM = "multiplane-cluster-ipam"
CIPAM_LIMIT = 1.5  # warm ADD through the node daemon (installed link as the client) vs Debian's Go host-local ADD
CIPAM_ADDS = 100  # ADDs per store-traffic run (the issue's "per 100 ADDs")
CIPAM_WRITES_LIMIT = 10  # store writes per 100 ADDs on a node that owns a block: under this
CIPAM_PER_ALLOC = 100  # what a design writing every allocation costs per 100 ADDs (the issue's figure)


class BenchError(RuntimeError):
    pass


_stop: list[int] = []


def _terminate(signum: int, _frame: Any) -> None:
    """Stop after the running operation: killing a driver mid-ADD would orphan its plugins."""
    _stop.append(signum)


# ----------------------------------------------------------------------------- statistics


def stats(samples: list[float]) -> tuple[float, float]:
    """(median, p90) with the nearest-rank p90."""
    ordered = sorted(samples)
    rank = max(0, -(-9 * len(ordered) // 10) - 1)
    return statistics.median(ordered), ordered[rank]


def fmt(pair: tuple[float, float]) -> str:
    return f"{pair[0]:.1f} / {pair[1]:.1f}"


def ratio(ours: tuple[float, float], ref: tuple[float, float]) -> str:
    return f"{ours[0] / ref[0]:.1f}x"


# ----------------------------------------------------------------------------- processes


def build_driver(root: Path) -> str:
    """tests/cnidriver, built as the `cnidriver` fixture builds it."""
    from tests.cnidriver.build import BuildError
    from tests.cnidriver.build import build_driver as build

    try:
        return build(root)
    except BuildError as exc:
        raise BenchError(str(exc)) from exc


def link_dir(directory: Path, target: Path | None) -> Path:
    """A CNI bin dir with our three names linked to `target` (None: the venv's console scripts)."""
    directory.mkdir(parents=True)
    for name in NAMES:
        (directory / name).symlink_to(target if target is not None else PY_BIN / name)
    return directory


def cni_env(command: str, extra: dict[str, str] | None = None, **more: str) -> dict[str, str]:
    """A runtime's environment for one plugin: PATH and CNI_* (and `extra`), no TMPDIR, as kubelet's runtimes."""
    env = {"PATH": SYS_PATH, "CNI_COMMAND": command}
    env.update({f"CNI_{k.upper()}": v for k, v in more.items()})
    env.update(extra or {})
    return env


def timed(argv: list[str], env: dict[str, str], stdin: bytes = b"") -> tuple[float, subprocess.CompletedProcess[bytes]]:
    start = time.perf_counter()
    proc = subprocess.run(argv, input=stdin, env=env, capture_output=True, timeout=120, check=False)
    elapsed = (time.perf_counter() - start) * 1000
    if _stop:
        raise SystemExit(f"interrupted by signal {_stop[0]}; cleaning up")
    return elapsed, proc


def checked(what: str, proc: subprocess.CompletedProcess[bytes]) -> None:
    if proc.returncode != 0:
        raise BenchError(
            f"{what} failed (rc {proc.returncode}):\n{proc.stdout.decode(errors='replace')}\n{proc.stderr.decode(errors='replace')}"
        )


def pod_links(netns: str) -> list[str]:
    return sorted(link["ifname"] for link in ip_json("-n", netns, "link", "show"))


# ----------------------------------------------------------------------------- the two forms


class Installed:
    """The runtime as `multiplane install` lays it down in the bench's own root."""

    def __init__(self, source: Path, root: Path, env: dict[str, str]) -> None:
        """Install from the self-contained `source` into `root` (a primary .conf is written first); `env` for the run."""
        self.root = root
        self.bin_dir = root / "opt" / "cni" / "bin"
        primary = {"cniVersion": "1.0.0", "name": "mp-primary", "type": "bridge", "bridge": "mp-br-unused"}
        write_json(root / "etc" / "cni" / "net.d" / "10-mp-primary.conf", primary)
        argv = [str(source), "install", "--root", str(root), "--no-kubeconfig", "--wait-seconds", "2"]
        _, proc = timed(argv, {"PATH": SYS_PATH, **env})
        checked(f"{source} install", proc)
        self.tree = Path(os.path.realpath(self.bin_dir / ".multiplane" / "current"))
        self.build = self.tree.name
        for name in NAMES:
            if not os.access(self.bin_dir / name, os.X_OK):
                raise BenchError(f"install left no {self.bin_dir / name}:\n{proc.stderr.decode(errors='replace')}")
        if not (self.tree / "boot.py").is_file():
            raise BenchError(f"install left no runtime tree at {self.tree}")
        from multiplane.runtime import payload

        found = payload.trailer_of(str(source))
        if found is None or found[2] != self.build:
            raise BenchError(f"installed build {self.build} is not the build of {source} ({found})")

    def argv(self, *args: str) -> list[str]:
        """The tree's interpreter started as the launcher starts it (its loader, its libraries), with `args`."""
        t = self.tree
        return [
            str(t / "ld-linux-x86-64.so.2"),
            "--inhibit-cache",
            "--library-path",
            str(t / "lib"),
            str(t / "python3.11"),
            *args,
        ]

    def boot(self, name: str, *options: str) -> list[str]:
        """What the launcher runs for the CNI name `name` (`options` go to the interpreter, before boot.py)."""
        return self.argv(*options, str(self.tree / "boot.py"), str(self.bin_dir / name))


def snapshot(directory: Path) -> dict[str, tuple[int, int, int]]:
    """(mode, size, mtime) of everything under `directory`: to show that calls write nothing there."""
    found = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            found[os.path.relpath(path, directory)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return found


def runtime_facts(inst: Installed, source: Path) -> dict[str, str]:
    """The self-contained file's size, what the tree holds (its MANIFEST), the launcher's size, the tree's Python."""
    from multiplane.runtime import payload

    files = payload.parse_manifest((inst.tree / payload.MANIFEST).read_bytes())
    sizes = sorted(((size, path) for path, (_d, _m, size) in files.items()), reverse=True)
    proc = subprocess.run(
        inst.argv("-c", "import sys; print(sys.version.split()[0])"), capture_output=True, text=True, check=False
    )
    size = source.stat().st_size
    return {
        "binary": f"dist/multiplane {size:,} bytes ({size / 2**20:.1f} MiB)",
        "build": inst.build,
        "tree": f"{len(files)} files, {sum(s for s, _ in sizes) / 2**20:.1f} MiB",
        "largest": ", ".join(f"{Path(p).name} {s / 2**20:.1f} MiB" for s, p in sizes[:3]),
        "launcher": f"{(inst.bin_dir / 'multiplane').stat().st_size / 2**10:.0f} KiB",
        "tree_python": proc.stdout.strip() or "?",
    }


# ----------------------------------------------------------------------------- runtime operations


class Call:
    """One driver invocation: `cnidriver add|del <net> <pod netns>` with this NETCONFPATH, CNI_PATH and ifname.

    `env` is added to the driver's environment (libcni passes it on to the plugin): the
    daemon rows' MULTIPLANE_SOCKET and MULTIPLANE_DAEMON=require.
    """

    def __init__(
        self,
        net: str,
        netconf: Path,
        cni_path: str,
        ifname: str = "eth0",
        args: str = POD_ARGS,
        env: dict[str, str] | None = None,
    ) -> None:
        self.net, self.netconf, self.cni_path, self.ifname, self.args = net, netconf, cni_path, ifname, args
        self.env = env or {}


class Scenario:
    """A pod's networking as a runtime does it: ADD = the calls in order, DEL = in reverse; times summed.

    Per sample also the CPU of the pod's ADD and DEL: `*_cpu` the driver calls' process trees
    (RUSAGE_CHILDREN before and after each call, summed), `*_dcpu` the daemon's (its own and
    its waited-for children's, /proc/<pid>/stat before and after the pod's calls), when the
    calls go through `daemon`.
    """

    def __init__(
        self, key: str, label: str, calls: list[Call], expect: list[str], daemon: Daemon | None = None
    ) -> None:
        self.key, self.label, self.calls, self.expect = key, label, calls, sorted(["lo", *expect])
        self.daemon = daemon
        self.add: list[float] = []
        self.dele: list[float] = []
        self.add_cpu: list[float] = []
        self.del_cpu: list[float] = []
        self.add_dcpu: list[float] = []
        self.del_dcpu: list[float] = []
        self.cids: list[str] = []  # the sampled pods' container ids (the daemon's log names them)

    @property
    def result(self) -> dict[str, tuple[float, float]]:
        return {"ADD": stats(self.add), "DEL": stats(self.dele)}

    def cpu(self, command: str) -> tuple[float, float]:
        """(driver calls' trees, daemon) CPU ms per pod: the sums over the samples divided by their number."""
        own, daemon = (self.add_cpu, self.add_dcpu) if command == "ADD" else (self.del_cpu, self.del_dcpu)
        return sum(own) / len(own), (sum(daemon) / len(daemon) if daemon else 0.0)


def children_cpu() -> float:
    """CPU ms (user + system) of every child this process has waited for, their waited-for children included."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


class Runtime:
    def __init__(self, driver: str, cache: Path, pod: str, env: dict[str, str]) -> None:
        """`env` is added to every driver run (libcni passes its environment on to the plugins)."""
        self.driver, self.cache, self.pod, self.env = driver, str(cache), pod, env
        self.netns = f"/var/run/netns/{pod}"

    def environ(self, call: Call, cid: str) -> dict[str, str]:
        return {
            "PATH": SYS_PATH,
            "NETCONFPATH": str(call.netconf),
            "CNI_PATH": call.cni_path,
            "CNI_ARGS": call.args,
            "CNI_CACHE_DIR": self.cache,
            "CNI_CONTAINERID": cid,
            "CNI_IFNAME": call.ifname,
            **self.env,
            **call.env,
        }

    def drive(self, command: str, call: Call, cid: str) -> tuple[float, float]:
        """(wall ms, CPU ms of the driver's process tree) of one driver call."""
        before = children_cpu()
        elapsed, proc = timed([self.driver, command, call.net, self.netns], self.environ(call, cid))
        cpu = children_cpu() - before
        checked(f"cnidriver {command} {call.net} (CNI_PATH {call.cni_path})", proc)
        return elapsed, cpu

    def _pod(self, s: Scenario, command: str, cid: str) -> tuple[float, float, float]:
        """(wall ms, driver trees' CPU ms, daemon CPU ms) of one pod's ADD (calls in order) or DEL (reversed)."""
        calls = s.calls if command == "add" else list(reversed(s.calls))
        before = s.daemon.cpu() if s.daemon is not None else 0.0
        done = [self.drive(command, c, cid) for c in calls]
        daemon = s.daemon.cpu() - before if s.daemon is not None else 0.0
        return sum(t for t, _ in done), sum(c for _, c in done), daemon

    def measure(
        self, scenarios: list[Scenario], rounds: int = N, after_warmup: Callable[[], None] | None = None
    ) -> None:
        """ADD then DEL of each scenario per round, the order rotated each round; the first round checks the pod."""
        for i in range(WARMUP + rounds):
            if i == WARMUP and after_warmup is not None:
                after_warmup()
            shift = i % len(scenarios)
            for s in scenarios[shift:] + scenarios[:shift]:
                cid = f"mp-{s.key}-{i}"
                t_add, c_add, d_add = self._pod(s, "add", cid)
                if i == 0 and pod_links(self.pod) != s.expect:
                    raise BenchError(f"{s.label}: pod has {pod_links(self.pod)} after ADD, expected {s.expect}")
                t_del, c_del, d_del = self._pod(s, "del", cid)
                if i == 0 and pod_links(self.pod) != ["lo"]:
                    raise BenchError(f"{s.label}: pod has {pod_links(self.pod)} after DEL")
                if i >= WARMUP:
                    s.add.append(t_add)
                    s.dele.append(t_del)
                    s.add_cpu.append(c_add)
                    s.del_cpu.append(c_del)
                    if s.daemon is not None:
                        s.add_dcpu.append(d_add)
                        s.del_dcpu.append(d_del)
                    s.cids.append(cid)


def burst_args(i: int, network: str) -> str:
    """CNI_ARGS of the i-th pod of a burst: its own name, one network."""
    return f"IgnoreUnknown=1;K8S_POD_NAMESPACE={POD_NAMESPACE};K8S_POD_NAME=mp-burst-{i};MULTIPLANE_NETWORKS={network}"


def conflist(name: str, plugin: dict[str, Any]) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": name, "plugins": [plugin]}


def write_json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


# ----------------------------------------------------------------------------- direct execs


def host_local_conf(data_dir: Path, subnet: str = "10.99.0.0/16") -> bytes:
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "mp-bench-hl",
            "type": "host-local",
            "ipam": {"type": "host-local", "dataDir": str(data_dir), "ranges": [[{"subnet": subnet}]]},
        }
    ).encode()


def host_local(bins: dict[str, str], tmp: Path, extra: dict[str, str]) -> dict[str, dict[str, tuple[float, float]]]:
    """ADD xN, DEL xN, VERSION xN for each host-local, interleaved; /16 pool, data dir on local disk."""
    samples: dict[str, dict[str, list[float]]] = {k: {"ADD": [], "DEL": [], "VERSION": []} for k in bins}
    confs = {k: host_local_conf(tmp / f"mp-hl-{k}") for k in bins}
    for command in ("ADD", "DEL", "VERSION"):
        for i in range(WARMUP + N):
            for k, binary in bins.items():
                if command == "VERSION":
                    env, stdin = cni_env("VERSION", extra), VERSION_STDIN
                else:
                    env = cni_env(
                        command,
                        extra,
                        containerid=f"mp-hl-{i}",
                        netns="/var/run/netns/mp-none",
                        ifname="eth0",
                        path=str(REF),
                    )
                    stdin = confs[k]
                elapsed, proc = timed([binary], env, stdin)
                checked(f"{binary} {command}", proc)
                if i >= WARMUP:
                    samples[k][command].append(elapsed)
    return {k: {c: stats(v) for c, v in per.items()} for k, per in samples.items()}


def etcd_revision(endpoints: list[str]) -> int:
    """etcd's revision (a linearizable read of one key): every successful put, delete or writing txn moves it by one."""
    body = json.dumps({"key": base64.b64encode(b"mp-revision-probe").decode()}).encode()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never the environment's proxies
    for endpoint in endpoints:
        try:
            with opener.open(urllib.request.Request(f"{endpoint}/v3/kv/range", data=body), timeout=5) as resp:
                return int(json.load(resp)["header"]["revision"])
        except (OSError, ValueError, KeyError):
            continue
    raise BenchError(f"no etcd member of {endpoints} answered a range request")


def cipam_conf(
    data_dir: Path, node: str, endpoints: list[str], subnet: str, network: str, block: int | None = None
) -> bytes:
    """A `multiplane-cluster-ipam` config for one simulated node: its nodeName and dataDir, the etcd store."""
    ipam: dict[str, Any] = {
        "type": CIPAM,
        "range": subnet,
        "network_name": network,
        "nodeName": node,
        "dataDir": str(data_dir),
        "etcd": {"endpoints": endpoints},
    }
    if block is not None:
        ipam["blockSize"] = block
    return json.dumps({"cniVersion": "1.0.0", "name": "mp-bench-cipam", "type": "mp-bench-main", "ipam": ipam}).encode()


def owned_blocks(data_dir: Path) -> list[str]:
    """The blocks a node's record (`<dataDir>/state.json`) says it owns, every pool."""
    try:
        state = json.loads((data_dir / "state.json").read_text())
    except FileNotFoundError:
        return []
    return sorted(b for pool in state.get("pools", {}).values() for b in pool.get("blocks", {}))


def _ipam_call(
    command: str, binary: str, cid: str, stdin: bytes, extra: dict[str, str]
) -> tuple[float, float, subprocess.CompletedProcess[bytes]]:
    """(wall ms, CPU ms of its process tree, the process) of one IPAM call exec'd directly, as a main plugin execs it.

    The CPU is RUSAGE_CHILDREN after minus before: the exec'd process and what it waited for
    (through the daemon: the per-call client alone; the daemon's own CPU is read from its /proc).
    """
    env = cni_env(command, extra, containerid=cid, netns="/var/run/netns/mp-none", ifname="eth0", path=str(REF))
    before = children_cpu()
    elapsed, proc = timed([binary], env, stdin)
    cpu = children_cpu() - before
    checked(f"{binary} {command} {cid}{' (through the daemon)' if 'MULTIPLANE_DAEMON' in extra else ''}", proc)
    return elapsed, cpu, proc


def _ipam_add(binary: str, cid: str, stdin: bytes, extra: dict[str, str]) -> tuple[float, str]:
    """(wall ms, the address) of one IPAM ADD exec'd directly, as a runtime's main plugin would exec it."""
    elapsed, _cpu, proc = _ipam_call("ADD", binary, cid, stdin, extra)
    return elapsed, _address(proc)


def _ipam_del(binary: str, cid: str, stdin: bytes, extra: dict[str, str]) -> float:
    return _ipam_call("DEL", binary, cid, stdin, extra)[0]


def _address(proc: subprocess.CompletedProcess[bytes]) -> str:
    return str(json.loads(proc.stdout)["ips"][0]["address"].split("/")[0])


def cipam_daemon_settings() -> dict[str, Any]:
    """The thick DaemonSet's daemon.json for a daemon on the host: no chrootDir, metrics on a free loopback port."""
    settings = daemonset_config()
    settings.pop("chrootDir", None)
    settings["metricsAddress"] = f"127.0.0.1:{free_port()}"
    settings["logLevel"] = "verbose"  # its line per request: how long each request ran in it
    return settings


def cluster_ipam(bin_dir: Path, tmp: Path, extra: dict[str, str]) -> dict[str, Any]:
    """Issue 13's rows against a 3-member etcd and through a node daemon, both started here and stopped here,
    failure or not (the daemon first, then etcd)."""
    from tests.etcd_cluster import EtcdCluster, EtcdError

    try:
        cluster = EtcdCluster(size=3).start()  # stops what it started when it fails
    except EtcdError as exc:
        raise BenchError(f"the bench's etcd cluster did not start: {exc}") from exc
    daemon: Daemon | None = None
    try:
        print("  starting a node daemon of its own for the cluster IPAM rows ...", flush=True)
        settings = cipam_daemon_settings()
        daemon = Daemon([str(bin_dir / "multiplane")], tmp, "mp-cipam-daemon", settings)
        found = _cluster_ipam_rows(cluster.endpoints, bin_dir, tmp, extra, daemon)
        found["daemon"] = _cipam_daemon_facts(daemon, found.pop("daemon_cids"))
        # every daemon row's call went through it (MULTIPLANE_DAEMON=require fails any other): its count says so
        expected = {("ADD", "ok"): 1 + 2 * (WARMUP + N), ("DEL", "ok"): WARMUP + N}  # + the daemon's warm node's prime
        counted = {key: n for key, n in found["daemon"]["counts"].items() if n}
        if counted != expected:
            raise BenchError(f"the cluster IPAM daemon counted {counted}, expected {expected}")
        found["daemon"]["counts"] = counted
        return found
    finally:
        if daemon is not None:
            daemon.stop()
        cluster.stop()


def _cipam_daemon_facts(daemon: Daemon, cids: dict[str, list[str]]) -> dict[str, Any]:
    """What the daemon says about the rows' calls: its /metrics counts, its log's time per request, then its exit."""
    counts = daemon.counts()
    served = daemon.served()
    ran: dict[str, list[float]] = {}
    for key, keyed in cids.items():
        command = "DEL" if key.endswith("-del") else "ADD"
        ran[key] = [served[(command, cid[:12])][1] for cid in keyed if (command, cid[:12]) in served]
    rss = daemon.memory()
    rc = daemon.stop()
    errors = [line for line in daemon.log_text().splitlines() if "[error]" in line or "[panic]" in line]
    if rc != 0:
        raise BenchError(f"the cluster IPAM rows' daemon exited with {rc}:\n{daemon.log_text()[-3000:]}")
    return {
        "counts": counts,
        "ran": {k: stats(v) for k, v in ran.items() if v},
        "logged": {k: len(v) for k, v in ran.items()},
        "rss": rss,
        "log_errors": errors,
        "settings": daemon.settings,
    }


# the rows of section 11's latency table, in the order they are sampled in a round (rotated each round)
CIPAM_ROWS = ("go", "hl", "warm", "claim", "dwarm", "dclaim")


def _cluster_ipam_rows(
    endpoints: list[str], bin_dir: Path, tmp: Path, extra: dict[str, str], daemon: Daemon
) -> dict[str, Any]:
    """(a) warm ADD/DEL vs Go and installed host-local, (b) ADD of a fresh node (claims a block), both one-shot
    and through `daemon` (the installed link as its client, MULTIPLANE_DAEMON=require), interleaved, with
    the CPU of each ADD; (c) etcd writes over 100 ADDs of a node that owns a block: default blockSize, and /32."""
    cipam, hl_inst, go = str(bin_dir / CIPAM), str(bin_dir / "multiplane-host-local"), str(REF / "host-local")
    base = tmp / "mp-cipam"
    # each warm node its own pool and record: one for the one-shot calls, one for the daemon's
    warm_dirs = {"warm": base / "warm", "dwarm": base / "dwarm"}
    warm_confs = {
        "warm": cipam_conf(warm_dirs["warm"], "mp-node-warm", endpoints, "10.96.0.0/16", "mp-bench-warm"),
        "dwarm": cipam_conf(warm_dirs["dwarm"], "mp-node-dwarm", endpoints, "10.91.0.0/16", "mp-bench-dwarm"),
    }
    claim_nets = {"claim": ("10.94.0.0/16", "mp-bench-claim"), "dclaim": ("10.90.0.0/16", "mp-bench-dclaim")}
    hl_confs = {"go": host_local_conf(base / "hl-go", "10.95.0.0/16"), "hl": host_local_conf(base / "hl-inst", "10.95.0.0/16")}  # fmt: skip
    bins = {"go": go, "hl": hl_inst, "warm": cipam, "claim": cipam, "dwarm": cipam, "dclaim": cipam}
    # the daemon rows: the same link, its client told to use this daemon and nothing else
    envs = {k: {**extra, **daemon.env} if k.startswith("d") else extra for k in CIPAM_ROWS}
    # each warm node's first ADD claims a block; that address stays held, so the block is never empty
    prime_writes: dict[str, int] = {}
    warm_blocks: dict[str, list[str]] = {}
    for k, conf in warm_confs.items():
        rev = etcd_revision(endpoints)
        _ipam_add(cipam, f"mp-ci-prime-{k}", conf, envs[k])
        prime_writes[k] = etcd_revision(endpoints) - rev
        warm_blocks[k] = owned_blocks(warm_dirs[k])
        if len(warm_blocks[k]) != 1:
            raise BenchError(f"the {k} node owns {warm_blocks[k]} after its first ADD, expected one block")
    samples: dict[str, dict[str, list[float]]] = {k: {"ADD": [], "DEL": []} for k in CIPAM_ROWS}
    cpu: dict[str, list[float]] = {k: [] for k in CIPAM_ROWS}  # ADD: the call's process tree
    dcpu: dict[str, list[float]] = {k: [] for k in CIPAM_ROWS if k.startswith("d")}  # ADD: the daemon's
    warm_writes = dict.fromkeys(warm_confs, 0)
    claim_writes: dict[str, list[int]] = {k: [] for k in claim_nets}
    claim_blocks: dict[str, list[int]] = {k: [] for k in claim_nets}
    daemon_cids: dict[str, list[str]] = {"dwarm": [], "dwarm-del": [], "dclaim": []}
    keys = list(CIPAM_ROWS)
    for i in range(WARMUP + N):
        shift = i % len(keys)
        for k in keys[shift:] + keys[:shift]:
            cid = f"mp-c{CIPAM_ROWS.index(k)}-{i}"  # short: the daemon's log names a container by 12 characters
            through = k in dcpu
            if k in claim_nets:  # a node's first ADD on this network: nothing owned, it claims a block
                subnet, network = claim_nets[k]
                node_dir = base / f"{k}-{i}"
                conf = cipam_conf(node_dir, f"mp-node-{k}{i}", endpoints, subnet, network)
                rev = etcd_revision(endpoints)
                before = daemon.cpu() if through else 0.0
                t_add, c_add, _proc = _ipam_call("ADD", bins[k], cid, conf, envs[k])
                d_add = daemon.cpu() - before if through else 0.0
                if i >= WARMUP:
                    claim_writes[k].append(etcd_revision(endpoints) - rev)
                    claim_blocks[k].append(len(owned_blocks(node_dir)))
                    samples[k]["ADD"].append(t_add)
                    cpu[k].append(c_add)
                    if through:
                        dcpu[k].append(d_add)
                        daemon_cids[k].append(cid)
                continue
            stdin = warm_confs[k] if k in warm_confs else hl_confs[k]
            rev = etcd_revision(endpoints) if k in warm_confs else 0
            before = daemon.cpu() if through else 0.0
            t_add, c_add, proc = _ipam_call("ADD", bins[k], cid, stdin, envs[k])
            d_add = daemon.cpu() - before if through else 0.0
            t_del = _ipam_call("DEL", bins[k], cid, stdin, envs[k])[0]
            if k in warm_confs:
                warm_writes[k] += etcd_revision(endpoints) - rev
                addr = _address(proc)
                if not any(ipaddress.ip_address(addr) in ipaddress.ip_network(b) for b in warm_blocks[k]):
                    raise BenchError(f"warm ADD {cid} got {addr}, outside the node's block {warm_blocks[k]}")
            if i >= WARMUP:
                samples[k]["ADD"].append(t_add)
                samples[k]["DEL"].append(t_del)
                cpu[k].append(c_add)
                if through:
                    dcpu[k].append(d_add)
                    daemon_cids[k].append(cid)
                    daemon_cids[f"{k}-del"].append(cid)
    for k, blocks in warm_blocks.items():
        if owned_blocks(warm_dirs[k]) != blocks:
            raise BenchError(f"the {k} node's blocks changed during its rows: {blocks} -> {owned_blocks(warm_dirs[k])}")
    # store traffic: a node that owns a block (its first ADD claimed it), then CIPAM_ADDS ADDs, no DEL
    traffic: dict[str, dict[str, Any]] = {}
    for key, subnet, block in (("blocks", "10.93.0.0/24", None), ("per-alloc", "10.92.0.0/24", 32)):
        node_dir = base / f"traffic-{key}"
        conf = cipam_conf(node_dir, f"mp-node-{key}", endpoints, subnet, f"mp-bench-{key}", block)
        _ipam_add(cipam, f"mp-ct-{key}-prime", conf, extra)
        first = owned_blocks(node_dir)
        rev = etcd_revision(endpoints)
        times, addrs = [], set()
        for j in range(CIPAM_ADDS):
            t_add, addr = _ipam_add(cipam, f"mp-ct-{key}-{j}", conf, extra)
            times.append(t_add)
            addrs.add(addr)
        writes = etcd_revision(endpoints) - rev
        if len(addrs) != CIPAM_ADDS:
            raise BenchError(f"{key}: {CIPAM_ADDS} ADDs handed out {len(addrs)} distinct addresses")
        traffic[key] = {
            "writes": writes,
            "blocks_before": len(first),
            "blocks_after": len(owned_blocks(node_dir)),
            "add": stats(times),
        }
    return {
        "rows": {k: {c: stats(v) for c, v in per.items() if v} for k, per in samples.items()},
        "cpu": {k: sum(v) / len(v) for k, v in cpu.items()},
        "dcpu": {k: sum(v) / len(v) for k, v in dcpu.items()},
        "prime_writes": prime_writes,
        "warm_block": warm_blocks["warm"][0],
        "dwarm_block": warm_blocks["dwarm"][0],
        "warm_writes": warm_writes,
        "claim_writes": {k: (min(v), statistics.median(v), max(v)) for k, v in claim_writes.items()},
        "claim_blocks": {k: (min(v), max(v)) for k, v in claim_blocks.items()},
        "traffic": traffic,
        "daemon_cids": daemon_cids,
    }


class Start:
    """One start-up row: argv and extra environment for a VERSION call, and what to do before each sample."""

    def __init__(
        self,
        argv: list[str],
        extra: dict[str, str],
        before: Callable[[], None] | None = None,
        check: Path | None = None,
    ) -> None:
        """`check`: a path that must exist after the first sample (the tree a cold call unpacked)."""
        self.argv, self.extra, self.before, self.check = argv, extra, before, check


def startup(rows: dict[str, Start]) -> dict[str, tuple[float, float]]:
    """VERSION (or `-c pass`) of each row, interleaved."""
    samples: dict[str, list[float]] = {k: [] for k in rows}
    for i in range(WARMUP + N):
        for k, row in rows.items():
            if row.before is not None:
                row.before()
            elapsed, proc = timed(row.argv, cni_env("VERSION", row.extra), VERSION_STDIN)
            checked(f"{row.argv} VERSION", proc)
            if i == 0 and row.check is not None and not row.check.exists():
                raise BenchError(f"{k}: {row.check} does not exist after the call: it ran from somewhere else")
            if i >= WARMUP:
                samples[k].append(elapsed)
    return {k: stats(v) for k, v in samples.items()}


_RSS_WRAPPER = """
import json, resource, subprocess, sys
spec = json.load(sys.stdin)
proc = subprocess.run(spec["argv"], input=spec["stdin"].encode(), env=spec["env"], capture_output=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": proc.returncode, "out": proc.stdout.decode(errors="replace"),
                  "err": proc.stderr.decode(errors="replace"), "maxrss_kb": usage.ru_maxrss}))
"""


def max_rss(argv: list[str], env: dict[str, str], stdin: bytes) -> int:
    """Max RSS (KiB) of the largest process in the tree `argv` starts, from a fresh wrapper's RUSAGE_CHILDREN."""
    spec = json.dumps({"argv": argv, "env": env, "stdin": stdin.decode()})
    proc = subprocess.run(
        [sys.executable, "-S", "-c", _RSS_WRAPPER], input=spec.encode(), capture_output=True, timeout=120, check=True
    )
    got = json.loads(proc.stdout)
    if got["rc"] != 0:
        raise BenchError(f"{argv} failed under the RSS wrapper:\n{got['out']}\n{got['err']}")
    return int(got["maxrss_kb"])


# ----------------------------------------------------------------------------- the node daemon


def daemonset_config() -> dict[str, Any]:
    """The daemon.json of the thick DaemonSet's ConfigMap (packaging/k8s/daemonset-thick.yaml), as shipped."""
    import yaml

    for doc in yaml.safe_load_all(DAEMONSET.read_text()):
        data = doc.get("data") if isinstance(doc, dict) and doc.get("kind") == "ConfigMap" else None
        if isinstance(data, dict) and "daemon.json" in data:
            return dict(json.loads(data["daemon.json"]))
    raise BenchError(f"{DAEMONSET} has no ConfigMap with a daemon.json")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on now (for the daemon's metricsAddress)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The daemon's line per request at logLevel verbose (container ids are cut to 12 characters):
# "daemon: ADD of container mp-d1-3 (pod mp-app/mp-web) (multiplane): ok in 25.6 ms (waited 0.1 ms)"
_SERVED = re.compile(r"daemon: (\S+) of container (\S+) .*: (ok|error) in ([0-9.]+) ms \(waited ([0-9.]+) ms\)$")


class Daemon:
    """One `multiplane daemon`: `argv` + `daemon --config <bench dir>/<name>.json`, stderr (its log) to <name>.log.

    Started in its own session with only PATH in its environment and "/" as its working
    directory, so a ^C at the terminal reaches the bench alone, which stops the daemon after
    the DELs it still has to make. `env` is what a call needs to go through it, and only
    through it (MULTIPLANE_DAEMON=require: the client fails the call rather than run it itself).
    """

    def __init__(self, argv: list[str], tmp: Path, name: str, settings: dict[str, Any]) -> None:
        self.name = name
        self.socket = tmp / f"{name}.sock"
        self.log = tmp / f"{name}.log"
        self.settings = {**settings, "socket": str(self.socket)}
        self.config = write_json(tmp / f"{name}.json", self.settings)
        self.argv = [*argv, "daemon", "--config", str(self.config)]
        self.env = {"MULTIPLANE_SOCKET": str(self.socket), "MULTIPLANE_DAEMON": "require"}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env={"PATH": SYS_PATH},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd="/",
                start_new_session=True,
            )
        self.pid = self.proc.pid
        try:
            self._wait_serving()
        except BaseException:
            self.stop()
            raise

    def _wait_serving(self) -> None:
        deadline = time.monotonic() + 60
        while " serving " not in self.log_text():  # its start line, written once it listens
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited ({self.proc.returncode}) before serving:\n{self.log_text()}")
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name} did not start serving within 60 s:\n{self.log_text()}")
            time.sleep(0.02)
        if not self.socket.is_socket():
            raise BenchError(f"{self.name} says it serves, but {self.socket} is not a socket")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def _proc_file(self, what: str) -> str:
        try:
            return Path(f"/proc/{self.pid}/{what}").read_text()
        except OSError as exc:
            raise BenchError(f"{self.name} (pid {self.pid}) is gone ({exc}):\n{self.log_text()[-3000:]}") from None

    def cpu(self) -> float:
        """CPU ms so far: utime + stime (every thread) + cutime + cstime (the delegates it spawned and waited for)."""
        fields = self._proc_file("stat").rsplit(")", 1)[1].split()  # fields[0] is field 3, state
        return sum(int(v) for v in fields[11:15]) * 1000 / CLK_TCK

    def memory(self) -> dict[str, int]:
        """VmRSS and VmHWM (KiB) and Threads from /proc/<pid>/status."""
        found = {}
        for line in self._proc_file("status").splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                found[key] = int(value.split()[0])
        return found

    def counts(self) -> dict[tuple[str, str], int]:
        """multiplane_requests_total of its /metrics: (command, result) → requests answered."""
        address = self.settings.get("metricsAddress")
        if not address:
            return {}
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        counts = {}
        for m in re.finditer(r"^multiplane_requests_total\{([^}]*)\} (\S+)$", text, re.M):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            counts[(labels.get("command", "?"), labels.get("result", "?"))] = int(float(m.group(2)))
        return counts

    def served(self) -> dict[tuple[str, str], tuple[str, float, float]]:
        """(command, container id cut to 12) → (result, ms run, ms waited for a worker), from its log."""
        found = {}
        for line in self.log_text().splitlines():
            m = _SERVED.search(line)
            if m:
                found[(m.group(1), m.group(2))] = (m.group(3), float(m.group(4)), float(m.group(5)))
        return found

    def stop(self) -> int:
        """SIGTERM, then wait while it finishes what it took (SIGKILL after 60 s); its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


# Run by the venv's interpreter: `multiplane daemon` with every request's Server._run under its own
# cProfile.Profile (cProfile alone sees only the main thread, and requests run on worker threads).
# Requests of containers named mp-pw-* are the warm-up, not profiled. At exit the profiles are
# merged per CNI command into <out>.<COMMAND>.
_PROFILED_DAEMON = """
import cProfile, pstats, sys, threading
from multiplane.daemon import server
from multiplane.cli import main

out = sys.argv[1]
profiles, lock = {}, threading.Lock()
run = server.Server._run

def profiled(self, req):
    if req.env.get("CNI_CONTAINERID", "").startswith("mp-pw-"):
        return run(self, req)
    prof = cProfile.Profile()
    prof.enable()
    try:
        return run(self, req)
    finally:
        prof.disable()
        with lock:
            profiles.setdefault(req.command, []).append(prof)

server.Server._run = profiled
status = main(["multiplane", *sys.argv[2:]])
for command, profs in profiles.items():
    merged = pstats.Stats(profs[0])
    for prof in profs[1:]:
        merged.add(prof)
    merged.dump_stats(f"{out}.{command}")
sys.exit(status)
"""


def burst(rt: Runtime, pods: list[tuple[str, str, list[Call]]], command: str, daemon: Daemon | None) -> dict[str, Any]:
    """Every pod's calls at once: one thread per pod (netns, container id, calls), released together by a barrier.

    Each thread runs its pod's driver calls one after another (DEL: in reverse; an ADD stops at
    its first failed call). wall: first start to last end, s; pods: each pod's own time, ms;
    errors: one text per failed call; cpu: the driver calls' process trees (RUSAGE_CHILDREN
    over the whole burst) and the daemon's (its /proc stat over the burst), ms per pod.
    """
    barrier = threading.Barrier(len(pods))
    spans: list[tuple[float, float]] = [(0.0, 0.0)] * len(pods)
    errors: list[str] = []
    lock = threading.Lock()

    def one(k: int) -> None:
        netns, cid, calls = pods[k]
        start = time.perf_counter()
        try:
            barrier.wait(timeout=120)
            start = time.perf_counter()
            for call in calls if command == "add" else list(reversed(calls)):
                argv = [rt.driver, command, call.net, f"/var/run/netns/{netns}"]
                proc = subprocess.run(argv, env=rt.environ(call, cid), capture_output=True, timeout=300, check=False)
                if proc.returncode != 0:
                    text = (proc.stdout + proc.stderr).decode(errors="replace").strip()
                    with lock:
                        errors.append(f"{cid} {command} {call.net}: exit {proc.returncode}: {text[:500]}")
                    if command == "add":
                        break
        except Exception as exc:  # noqa: BLE001 - a burst counts what failed; the thread must not die silently
            with lock:
                errors.append(f"{cid} {command}: {type(exc).__name__}: {exc}")
        spans[k] = (start, time.perf_counter())

    threads = [threading.Thread(target=one, args=(k,), name=f"mp-burst-{k}") for k in range(len(pods))]
    cpu, dcpu = children_cpu(), daemon.cpu() if daemon is not None else 0.0
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu, dcpu = children_cpu() - cpu, (daemon.cpu() - dcpu if daemon is not None else 0.0)
    if _stop:
        raise SystemExit(f"interrupted by signal {_stop[0]}; cleaning up")
    return {
        "wall": max(e for _, e in spans) - min(s for s, _ in spans),
        "pods": [(e - s) * 1000 for s, e in spans],
        "errors": errors,
        "cpu": cpu / len(pods),
        "dcpu": dcpu / len(pods),
    }


# ----------------------------------------------------------------------------- analysis helpers


def _import_lines(stderr: str) -> dict[str, tuple[float, float]]:
    """module -> (self ms, cumulative ms) from one run's `-X importtime` lines."""
    rows = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line[len("import time:") :].split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue
        rows[parts[2].strip()] = (int(parts[0]) / 1000, int(parts[1]) / 1000)
    return rows


def import_table(stderrs: list[str], walls: list[float]) -> dict[str, Any]:
    """Several runs of one command under `-X importtime`: medians per module, per top-level package and in total.

    rows: (module, self ms, cumulative ms); packages: top-level package -> self ms; total: the
    sum of self times; modules: how many were imported; wall: the runs' median wall time.
    """
    runs = [_import_lines(text) for text in stderrs]
    if not runs or not runs[0]:
        raise BenchError("no `-X importtime` lines on stderr")
    rows = []
    for name in runs[0]:
        seen = [r[name] for r in runs if name in r]
        rows.append((name, statistics.median(s for s, _ in seen), statistics.median(c for _, c in seen)))
    packages: dict[str, list[float]] = collections.defaultdict(list)
    for run_rows in runs:
        per: dict[str, float] = collections.defaultdict(float)
        for name, (self_ms, _) in run_rows.items():
            per[name.split(".")[0]] += self_ms
        for pkg, ms in per.items():
            packages[pkg].append(ms)
    return {
        "rows": rows,
        "packages": {pkg: statistics.median(v) for pkg, v in packages.items()},
        "total": statistics.median(sum(s for s, _ in r.values()) for r in runs),
        "modules": int(statistics.median(len(r) for r in runs)),
        "wall": statistics.median(walls),
    }


def short_path(path: str) -> str:
    for marker in ("site-packages/", "/src/", "python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


PHASES = (
    ("the Debian bridge exec'd for eth0 (its whole run, waited for)", ("multiplane/delegate/exec.py",)),
    ("macvlan netlink work (create, move, rename, addresses, routes, up)", ("multiplane/netlink/",)),
    ("host-local IPAM (flock, fsync'ed reservation files)", ("multiplane/ipam/", "multiplane/plugins/host_local.py")),
    (
        "NADs and the pod's selection from local files (YAML)",
        ("multiplane/plugins/meta/networks.py", "multiplane/plugins/meta/selection.py"),
    ),
    (
        "delegate cache and network-status files",
        ("multiplane/plugins/meta/cache.py", "multiplane/plugins/meta/status.py"),
    ),
)
# The daemon's requests (its profile): the same, the address announcement of macvlan apart.
ANNOUNCE = "multiplane/netlink/announce.py"
DAEMON_PHASES = (
    ("the Debian bridge for eth0: spawned, its whole run waited for", ("multiplane/delegate/exec.py",)),
    (
        "macvlan: announcing the address (one gratuitous ARP sent on an AF_PACKET socket, and that socket's close)",
        (ANNOUNCE,),
    ),
    (
        "macvlan: the other netlink work (ADD: create, move, rename, addresses, routes, up; DEL: delete)",
        ("multiplane/netlink/",),
    ),
    *PHASES[2:],
)


def _phase_of(func: tuple[str, int, str], phases: tuple[tuple[str, tuple[str, ...]], ...]) -> int | None:
    """The phase a function belongs to: the one with the longest marker in its file name (None: no phase)."""
    if func[2] == "<module>":
        return None
    best, length = None, 0
    for i, (_label, markers) in enumerate(phases):
        for marker in markers:
            if marker in func[0] and len(marker) > length:
                best, length = i, len(marker)
    return best


def profile_table(path: str, top: int = 15, phases: tuple[tuple[str, tuple[str, ...]], ...] = PHASES) -> dict[str, Any]:
    """Top functions by cumulative time (import machinery left out), and time per phase of the call.

    A phase's time is the cumulative time of its functions when called from outside every
    phase (so nested calls count once, in the outermost phase); imports made lazily inside a
    phase count there too.
    """
    st = pstats.Stats(path)
    table = st.stats  # type: ignore[attr-defined]
    rows = []
    imports = 0.0
    for func, (_cc, nc, tt, ct, _callers) in table.items():
        filename, line, name = func
        if filename.startswith("<frozen importlib"):
            if name == "_find_and_load":
                imports = ct * 1000  # cProfile counts a recursive function's outermost frame only
            continue
        if name in ("<built-in method builtins.exec>", "<built-in method builtins.__import__>") or (
            name == "<module>" and line == 1 and "/mp-bin-py/" in filename
        ):
            continue
        label = name if filename == "~" else f"{short_path(filename)}:{line}({name})"
        rows.append((label, nc, tt * 1000, ct * 1000))
    rows.sort(key=lambda r: r[3], reverse=True)
    found = [("imports (every module, the lazy ones included)", imports)]
    spent = [0.0] * len(phases)
    for func, (*_stat, callers) in table.items():
        phase = _phase_of(func, phases)
        if phase is not None:
            spent[phase] += sum(c[3] for caller, c in callers.items() if _phase_of(caller, phases) is None)
    found += [(label, ms * 1000) for (label, _markers), ms in zip(phases, spent)]
    return {"rows": rows[:top], "all": rows, "total": st.total_tt * 1000, "phases": found}  # type: ignore[attr-defined]


def machine(tmp: Path) -> dict[str, str]:
    def dpkg(pkg: str) -> str:
        proc = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True, check=False)
        return proc.stdout.strip() or "?"

    model = "?"
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    same_fs = os.stat(tmp).st_dev == os.stat("/var/lib").st_dev
    return {
        "cpus": f"{os.cpu_count()} × {model}",
        "kernel": platform.release(),
        "debian": Path("/etc/debian_version").read_text().strip(),
        "python": platform.python_version(),
        "plugins": dpkg("containernetworking-plugins"),
        "libcni": dpkg("golang-github-appc-cni-dev"),
        "go": dpkg("golang-go"),
        "etcd": dpkg("etcd-server"),
        "load": Path("/proc/loadavg").read_text().split()[0],
        "tmp": str(tmp),
        "tmp_fs": "the same file system as /var/lib" if same_fs else "a different file system from /var/lib",
    }


# ----------------------------------------------------------------------------- the run


def install(tmp: Path) -> tuple[Path, Installed, dict[str, str], Path, Path, dict[str, str]]:
    """Our own copy of dist/multiplane, installed into <tmp>/mp-root, its cluster IPAM link checked (made if missing).

    Returns (the copy, the install, the one-shot calls' extra environment, the warm and the cold
    unpack directories, how the `multiplane-cluster-ipam` link came to be).
    """
    # our own copy: other builds may replace dist/multiplane while the bench runs
    dist = tmp / "mp-dist" / "multiplane"
    dist.parent.mkdir()
    shutil.copy2(DIST, dist)
    warm_dir, cold_dir = tmp / "mp-unpack", tmp / "mp-unpack-cold"
    # Every run gets both. Only the self-contained file reads MULTIPLANE_UNPACK_DIR. The socket does
    # not exist: a one-shot call looks for a daemon as on a node without one, and never finds one
    # that someone else runs on this machine. The daemon rows' calls name their daemon's socket.
    unpack = {"MULTIPLANE_UNPACK_DIR": str(warm_dir), "MULTIPLANE_SOCKET": str(tmp / "mp-no-daemon.sock")}
    print("installing the runtime into the bench's own root (dist/multiplane install --root) ...", flush=True)
    inst = Installed(dist, tmp / "mp-root", unpack)
    # issue 13's rows exec `<bin>/multiplane-cluster-ipam`: the installer links every personality of
    # plugins.REGISTRY; should this build's not, the bench links it itself (and the report says so)
    cipam_link = inst.bin_dir / CIPAM
    cipam_linked = "install" if os.path.islink(cipam_link) or cipam_link.exists() else "bench"
    if cipam_linked == "bench":
        cipam_link.symlink_to("multiplane")
    cipam_target = os.readlink(cipam_link) if os.path.islink(cipam_link) else "(a file, not a link)"
    return dist, inst, unpack, warm_dir, cold_dir, {"linked": cipam_linked, "target": cipam_target}


def run_cipam(tmp: Path) -> dict[str, Any]:
    """MP_BENCH_ONLY=cipam: the install, then section l alone (no driver, no pods, no other daemon)."""
    dist, inst, unpack, _warm, _cold, cipam_link = install(tmp)
    print(f"cluster IPAM against a 3-member etcd, {N} runs each, then 2 x {CIPAM_ADDS} ADDs ...", flush=True)
    return {"facts": runtime_facts(inst, dist), "cipam": {**cluster_ipam(inst.bin_dir, tmp, unpack), **cipam_link}}


def run(tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    print(f"building the libcni driver ({DRIVER_SRC.relative_to(ROOT)}) ...", flush=True)
    driver = build_driver(tmp / "mp-go")
    dist, inst, unpack, warm_dir, cold_dir, cipam_link = install(tmp)
    out["facts"] = runtime_facts(inst, dist)
    untouched = snapshot(inst.bin_dir)
    bins = {"inst": inst.bin_dir, "dist": link_dir(tmp / "mp-bin-dist", dist), "py": link_dir(tmp / "mp-bin-py", None)}
    paths = {"go": str(REF), **{k: f"{b}:{REF}" for k, b in bins.items()}}

    topo = Topology(tmp / "mp-topo", pods=1)
    node: MetaNode | None = None
    daemons: list[Daemon] = []
    kernel_link = f"mp-k{topo.tag}"
    try:
        pod = topo.pods[0]
        rt = Runtime(driver, tmp / "mp-cache", pod, unpack)

        # a) b): one macvlan + host-local attachment
        print(f"macvlan + host-local through the driver, {N} runs each ...", flush=True)
        mv = []
        for key, label, ptype in (
            ("go", "Go macvlan + host-local", "macvlan"),
            *((k, f"multiplane-macvlan ({FORMS[k]})", "multiplane-macvlan") for k in FORMS),
        ):
            netd = tmp / f"mp-netd-mv-{key}"
            write_json(
                netd / "10-mv.conflist",
                conflist(
                    "mp-mv", macvlan_conf("mp-mv", topo.master, "10.70.0.0/24", str(tmp / f"mp-ipam-mv-{key}"), ptype)
                ),
            )
            mv.append(Scenario(f"mv-{key}", label, [Call("mp-mv", netd, paths[key])], ["eth0"]))
        rt.measure(mv)
        out["mv"] = mv

        # c) d): a pod with the cluster network and 1 or 4 secondary networks
        node = MetaNode(tmp / "mp-node", driver, bins["dist"])
        node.write_meta(logLevel="error")
        subnets = {name: f"10.{66 + i}.0.0/24" for i, name in enumerate(SECONDARY)}
        ref_netd = tmp / "mp-netd-ref"
        write_json(ref_netd / "10-cluster.conflist", node.cluster_conflist())
        for name, subnet in subnets.items():
            node.add_nad(name, macvlan_conf(name, topo.master, subnet, str(node.ipam)))
            write_json(
                ref_netd / f"20-{name}.conflist",
                conflist(name, macvlan_conf(name, topo.master, subnet, str(tmp / "mp-ipam-ref"))),
            )
        # the same meta config for each form, binDir naming that form's own bin dir
        meta_netd: dict[str, Path] = {}
        meta_plugin: dict[str, dict[str, Any]] = {}
        for form, bin_dir in bins.items():
            conf = json.loads((node.net_d / "00-multiplane.conflist").read_text())
            conf["plugins"][0]["binDir"] = str(bin_dir)
            meta_netd[form] = tmp / f"mp-netd-meta-{form}"
            write_json(meta_netd[form] / "00-multiplane.conflist", conf)
            meta_plugin[form] = conf["plugins"][0]
        # j) the node daemon: the installed launcher, the DaemonSet's daemon.json (socket and metrics
        # address here, no chrootDir: this daemon runs on the host, not in a container)
        settings = daemonset_config()
        shipped = dict(settings)
        settings.pop("chrootDir", None)
        settings["metricsAddress"] = f"127.0.0.1:{free_port()}"
        settings["logLevel"] = "verbose"  # its line per request says how long the request ran and waited
        print("starting the node daemon (the installed runtime's `multiplane daemon`) ...", flush=True)
        daemon = Daemon([str(inst.bin_dir / "multiplane")], tmp, "mp-bench", settings)
        daemons.append(daemon)
        memory: dict[str, dict[str, Any]] = {}

        def checkpoint(key: str) -> None:
            """The daemon's memory now, then the requests its /metrics counted so far."""
            memory[key] = {**daemon.memory(), "counts": daemon.counts()}

        checkpoint("start")
        out["daemon"] = {
            "shipped": shipped,
            "settings": daemon.settings,
            "argv": " ".join(daemon.argv),
            "memory": memory,
            "pid_cmdline": Path(f"/proc/{daemon.pid}/cmdline")
            .read_bytes()
            .split(b"\0")[0]
            .decode()
            .replace(str(inst.tree), "<tree>"),
            "tmp": str(tmp),
        }

        meta = []
        for k in (1, 4):
            nets = SECONDARY[:k]
            ifs = ["eth0", *[f"net{j}" for j in range(1, k + 1)]]
            args = f"{POD_ARGS};MULTIPLANE_NETWORKS={','.join(nets)}"
            ref_calls = [Call("mp-cluster", ref_netd, paths["go"])] + [
                Call(n, ref_netd, paths["go"], ifname=f"net{j}") for j, n in enumerate(nets, 1)
            ]
            meta.append(Scenario(f"go{k}", f"Go bridge + {k} × macvlan, one driver call each", ref_calls, ifs))
            for form in ("inst", "dist", "py") if k == 1 else ("inst", "dist"):
                call = Call("mp-multi", meta_netd[form], paths[form], args=args)
                meta.append(Scenario(f"meta{k}-{form}", f"multiplane + {k} ({FORMS[form]})", [call], ifs))
            call = Call("mp-multi", meta_netd["inst"], paths["inst"], args=args, env=daemon.env)
            meta.append(
                Scenario(f"d{k}", f"multiplane + {k} (installed runtime, through the daemon)", [call], ifs, daemon)
            )
        print(f"meta-plugin pods (cluster + 1, cluster + 4) through the driver, {N} runs each ...", flush=True)
        rt.measure(meta, after_warmup=lambda: checkpoint("warm"))
        out["meta"] = meta
        checkpoint("rows")

        # the driver's own CPU and start: asked for a network no config names, it fails before any plugin
        none_cpu, none_wall = [], []
        for _ in range(WARMUP + N):
            before = children_cpu()
            wall, proc = timed(
                [driver, "add", "mp-none", rt.netns], rt.environ(Call("mp-none", ref_netd, REF_PATH), "mp-none")
            )
            if proc.returncode == 0:
                raise BenchError("the driver added a network that no config names")
            none_cpu.append(children_cpu() - before)
            none_wall.append(wall)
        out["driver_alone"] = {"cpu": statistics.mean(none_cpu[WARMUP:]), "wall": stats(none_wall[WARMUP:])}

        # j) the burst: BURST pods (cluster + 1 network) started at once, each in its own netns,
        # through the daemon, the one-shot installed runtime and the Go plugins, rounds interleaved
        burst_net = "mp-burst"
        burst_conf = macvlan_conf(burst_net, topo.master, "10.72.0.0/16", str(node.ipam))
        burst_conf["ipam"]["ranges"] = [[{"subnet": "10.72.0.0/16"}]]  # an address for every pod of a burst
        node.add_nad(burst_net, burst_conf)
        ref_burst = json.loads(json.dumps(burst_conf))
        ref_burst["ipam"]["dataDir"] = str(tmp / "mp-ipam-ref")
        write_json(ref_netd / f"20-{burst_net}.conflist", conflist(burst_net, ref_burst))
        burst_ns = [topo.add_pod() for _ in range(BURST)]
        burst_calls: dict[str, Callable[[int], list[Call]]] = {
            "daemon": lambda i: [
                Call("mp-multi", meta_netd["inst"], paths["inst"], args=burst_args(i, burst_net), env=daemon.env)
            ],
            "inst": lambda i: [Call("mp-multi", meta_netd["inst"], paths["inst"], args=burst_args(i, burst_net))],
            "go": lambda i: [
                Call("mp-cluster", ref_netd, paths["go"]),
                Call(burst_net, ref_netd, paths["go"], ifname="net1"),
            ],
        }
        bursts: dict[str, list[dict[str, Any]]] = {form: [] for form in burst_calls}
        print(f"bursts of {BURST} pods at once, {BURST_ROUNDS} round(s) ...", flush=True)
        forms = list(burst_calls)
        for r in range(BURST_ROUNDS):
            for form in forms[r % len(forms) :] + forms[: r % len(forms)]:
                pods = [(ns, f"mp-b{form[0]}{r}-{i}", burst_calls[form](i)) for i, ns in enumerate(burst_ns)]
                user = daemon if form == "daemon" else None
                time.sleep(1)  # the previous burst's links are gone; let the kernel's deferred work settle
                added = burst(rt, pods, "add", user)
                for ns, cid, _calls in pods:
                    failed = any(e.startswith(f"{cid} ") for e in added["errors"])
                    if not failed and pod_links(ns) != ["eth0", "lo", "net1"]:
                        added["errors"].append(f"{cid}: the pod has {pod_links(ns)} after its ADD")
                if form == "daemon" and "burst" not in memory:
                    checkpoint("burst")
                time.sleep(1)
                deleted = burst(rt, pods, "del", user)
                for ns, cid, _calls in pods:
                    if pod_links(ns) != ["lo"]:
                        deleted["errors"].append(f"{cid}: the pod has {pod_links(ns)} after its DEL")
                bursts[form].append({"add": added, "del": deleted})
                print(
                    f"  {form}: ADD {added['wall']:.2f} s ({len(added['errors'])} errors, one pod's median"
                    f" {statistics.median(added['pods']):.0f} ms), DEL {deleted['wall']:.2f} s"
                    f" ({len(deleted['errors'])} errors)",
                    flush=True,
                )
        out["burst"] = bursts
        checkpoint("end")
        out["daemon"]["served"] = daemon.served()
        out["daemon"]["expected"] = {
            "ADD": (WARMUP + N) * 2 + BURST * BURST_ROUNDS,
            "DEL": (WARMUP + N) * 2 + BURST * BURST_ROUNDS,
        }
        out["daemon"]["rc"] = daemon.stop()
        out["daemon"]["socket_left"] = daemon.socket.exists()
        out["daemon"]["log_errors"] = [
            line for line in daemon.log_text().splitlines() if "[error]" in line or "[panic]" in line
        ]

        # where a daemon pod's time goes: the same daemon code in the venv's interpreter, each
        # request under cProfile; the calls come from the installed client as in the rows above
        print(f"a profile of the daemon's workers ({PROFILE_RUNS} pod ADDs and DELs) ...", flush=True)
        wrapper = tmp / "mp-profiled-daemon.py"
        wrapper.write_text(_PROFILED_DAEMON)
        prof_out = tmp / "mp-daemon.prof"
        prof_settings = {k: v for k, v in settings.items() if k != "metricsAddress"}
        profiled = Daemon([sys.executable, str(wrapper), str(prof_out)], tmp, "mp-profiled", prof_settings)
        daemons.append(profiled)
        args = f"{POD_ARGS};MULTIPLANE_NETWORKS={SECONDARY[0]}"
        call = Call("mp-multi", meta_netd["inst"], paths["inst"], args=args, env=profiled.env)
        for i in range(WARMUP + PROFILE_RUNS):
            cid = f"mp-pw-{i}" if i < WARMUP else f"mp-pp-{i}"
            rt.drive("add", call, cid)
            rt.drive("del", call, cid)
        rc = profiled.stop()
        if rc != 0:
            raise BenchError(f"the profiled daemon exited with {rc}:\n{profiled.log_text()[-3000:]}")
        out["daemon"]["profile"] = {
            command: profile_table(f"{prof_out}.{command}", phases=DAEMON_PHASES) for command in ("ADD", "DEL")
        }

        # e) host-local alone
        print(f"host-local alone, {N} runs each ...", flush=True)
        hl_bins = {"go": str(REF / "host-local")}
        hl_bins.update({k: str(b / "multiplane-host-local") for k, b in bins.items()})
        out["hl"] = host_local(hl_bins, tmp, unpack)

        # l) cluster-wide IPAM (issue 13): the installed runtime against the bench's own 3-member etcd
        print(f"cluster IPAM against a 3-member etcd, {N} runs each, then 2 x {CIPAM_ADDS} ADDs ...", flush=True)
        out["cipam"] = {**cluster_ipam(inst.bin_dir, tmp, unpack), **cipam_link}

        # f) start-up and its layers
        print(f"process start-up, {N} runs each ...", flush=True)
        out["start"] = startup(
            {
                "go": Start([str(REF / "host-local")], unpack),
                "interp": Start(inst.argv("-c", "pass"), unpack),
                "boot": Start(inst.boot("multiplane"), unpack),
                "inst": Start([str(inst.bin_dir / "multiplane")], unpack),
                "warm": Start([str(bins["dist"] / "multiplane")], unpack, check=warm_dir / inst.build),
                "cold": Start(
                    [str(bins["dist"] / "multiplane")],
                    {"MULTIPLANE_UNPACK_DIR": str(cold_dir)},
                    before=lambda: shutil.rmtree(cold_dir, ignore_errors=True),
                    check=cold_dir / inst.build,
                ),
            }
        )

        # kernel: create and delete one macvlan with ip(8), against ip's own start-up
        kadd, kdel, kshow = [], [], []
        for _ in range(WARMUP + max(3, N // 2)):
            kshow.append(timed(["ip", "link", "show", "lo"], {"PATH": SYS_PATH})[0])
            t, proc = timed(
                ["ip", "link", "add", kernel_link, "link", topo.master, "type", "macvlan", "mode", "bridge"],
                {"PATH": SYS_PATH},
            )
            checked("ip link add macvlan", proc)
            kadd.append(t)
            t, proc = timed(["ip", "link", "del", kernel_link], {"PATH": SYS_PATH})
            checked("ip link del macvlan", proc)
            kdel.append(t)
        # kernel: closing an AF_PACKET socket bound to a link (what macvlan's address announcement
        # does after its one frame; nothing is sent here), timed in this process
        kclose = []
        for _ in range(WARMUP + max(3, N // 2)):
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            try:
                sock.bind((topo.master, 0))
            finally:
                started = time.perf_counter()
                sock.close()
                kclose.append((time.perf_counter() - started) * 1000)
        out["kernel"] = {
            "show": stats(kshow[WARMUP:]),
            "add": stats(kadd[WARMUP:]),
            "del": stats(kdel[WARMUP:]),
            "packet_close": stats(kclose[WARMUP:]),
            # does the reference macvlan announce too? Go binaries carry their packages' paths
            "go_arping": b"arping" in (REF / "macvlan").read_bytes(),
        }

        # g) peak memory; i) importtime and profile: the meta-plugin exec'd directly, as libcni would
        print("peak memory, import times and a profile of one meta ADD ...", flush=True)
        meta_conf = {
            form: json.dumps({"cniVersion": "1.0.0", "name": "mp-multi", **plugin}).encode()
            for form, plugin in meta_plugin.items()
        }
        ref_conf = {
            "bridge": json.dumps(
                {"cniVersion": "1.0.0", "name": "mp-cluster", **node.cluster_conflist()["plugins"][0]}
            ).encode(),
            "macvlan": json.dumps(
                {
                    "cniVersion": "1.0.0",
                    **macvlan_conf("mp-net1", topo.master, subnets["mp-net1"], str(tmp / "mp-ipam-ref")),
                }
            ).encode(),
        }
        netns = rt.netns

        def meta_env(command: str, cid: str, cni_path: str, **extra: str) -> dict[str, str]:
            env = cni_env(
                command,
                unpack,
                containerid=cid,
                netns=netns,
                ifname="eth0",
                path=cni_path,
                args=f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-net1",
            )
            env.update(extra)
            return env

        def direct_del(argv: list[str], cid: str, cni_path: str, stdin: bytes, **more: str) -> None:
            _, proc = timed(argv, {**meta_env("DEL", cid, cni_path), **more}, stdin)
            checked(f"{argv[0]} DEL", proc)
            if pod_links(pod) != ["lo"]:
                raise BenchError(f"pod not empty after DEL: {pod_links(pod)}")

        rss: dict[str, list[int]] = {"inst": [], "dist": [], "py": [], "bridge": [], "macvlan": []}
        for i in range(5):
            for form, bin_dir in bins.items():
                argv = [str(bin_dir / "multiplane")]
                cid = f"mp-rss-{form}-{i}"
                rss[form].append(max_rss(argv, meta_env("ADD", cid, paths[form]), meta_conf[form]))
                direct_del(argv, cid, paths[form], meta_conf[form])
            cid = f"mp-rss-go-{i}"
            rss["bridge"].append(max_rss([str(REF / "bridge")], meta_env("ADD", cid, paths["go"]), ref_conf["bridge"]))
            env = meta_env("ADD", cid, paths["go"], CNI_IFNAME="net1")
            rss["macvlan"].append(max_rss([str(REF / "macvlan")], env, ref_conf["macvlan"]))
            _, proc = timed(
                [str(REF / "macvlan")], {**meta_env("DEL", cid, paths["go"]), "CNI_IFNAME": "net1"}, ref_conf["macvlan"]
            )
            checked("macvlan DEL", proc)
            direct_del([str(REF / "bridge")], cid, paths["go"], ref_conf["bridge"])
        out["rss"] = {k: (int(statistics.median(v)), max(v)) for k, v in rss.items()}

        # i) -X importtime inside the installed tree's interpreter, argv as the launcher builds it
        hl_conf = host_local_conf(tmp / "mp-hl-imports", "10.98.0.0/16")
        stderrs: dict[str, list[str]] = {"version": [], "hl-add": [], "meta-add": []}
        walls: dict[str, list[float]] = {k: [] for k in stderrs}
        for i in range(IMPORT_RUNS):
            wall, proc = timed(inst.boot("multiplane", "-X", "importtime"), cni_env("VERSION"), VERSION_STDIN)
            checked("VERSION with -X importtime", proc)
            stderrs["version"].append(proc.stderr.decode(errors="replace"))
            walls["version"].append(wall)
            env = cni_env(
                "ADD",
                unpack,
                containerid=f"mp-imp-hl-{i}",
                netns="/var/run/netns/mp-none",
                ifname="eth0",
                path=paths["inst"],
            )
            wall, proc = timed(inst.boot("multiplane-host-local", "-X", "importtime"), env, hl_conf)
            checked("host-local ADD with -X importtime", proc)
            stderrs["hl-add"].append(proc.stderr.decode(errors="replace"))
            walls["hl-add"].append(wall)
            cid = f"mp-imp-{i}"
            argv = inst.boot("multiplane", "-X", "importtime")
            wall, proc = timed(argv, meta_env("ADD", cid, paths["inst"]), meta_conf["inst"])
            checked("meta ADD with -X importtime", proc)
            if not json.loads(proc.stdout).get("interfaces"):
                raise BenchError(f"meta ADD under -X importtime returned no result: {proc.stdout!r}")
            stderrs["meta-add"].append(proc.stderr.decode(errors="replace"))
            walls["meta-add"].append(wall)
            direct_del([str(inst.bin_dir / "multiplane")], cid, paths["inst"], meta_conf["inst"])
        out["imports"] = {k: import_table(stderrs[k], walls[k]) for k in stderrs}

        prof = tmp / "mp-meta-add.prof"
        argv = [sys.executable, "-m", "cProfile", "-o", str(prof), str(bins["py"] / "multiplane")]
        wall, proc = timed(argv, meta_env("ADD", "mp-prof", paths["py"]), meta_conf["py"])
        checked("meta ADD under cProfile", proc)
        if not json.loads(proc.stdout).get("interfaces"):
            raise BenchError(f"profiled ADD returned no result: {proc.stdout!r}")
        out["profile"] = {**profile_table(str(prof)), "wall": wall}
        direct_del([str(bins["py"] / "multiplane")], "mp-prof", paths["py"], meta_conf["py"])

        after = snapshot(inst.bin_dir)
        out["changed"] = sorted(p for p in set(untouched) | set(after) if untouched.get(p) != after.get(p))
    finally:
        for started in daemons:
            started.stop()
        ip("link", "del", kernel_link, check=False)
        if node is not None:
            node.close()
        topo.close()
    return out


# ----------------------------------------------------------------------------- the report


def goal_rows(out: dict[str, Any]) -> list[tuple[str, float, float, float]]:
    """(what, ours median ms, reference median ms, limit) for each of issue 9's goals, from this run."""
    meta = {s.key: s.result for s in out["meta"]}
    measured = {
        "version": (out["start"]["inst"][0], out["start"]["go"][0]),
        "hl-add": (out["hl"]["inst"]["ADD"][0], out["hl"]["go"]["ADD"][0]),
        "pod1": (meta["meta1-inst"]["ADD"][0], meta["go1"]["ADD"][0]),
    }
    return [(what, *measured[key], limit) for key, what, limit in GOALS]


def daemon_goals(out: dict[str, Any]) -> list[tuple[str, str, str, str, str, bool]]:
    """(what, ours, reference, ratio, limit, met) for each of issue 10's goals, from this run."""
    meta = {s.key: s for s in out["meta"]}
    rows = []
    for k, what, limit in DAEMON_GOALS:
        ours, ref = meta[f"d{k}"].result["ADD"][0], meta[f"go{k}"].result["ADD"][0]
        rows.append(
            (what, f"{ours:.1f} ms", f"{ref:.1f} ms", f"{ours / ref:.2f}x", f"{limit:.1f}x", ours / ref <= limit)
        )
    for k in (1, 4):
        client, daemon = meta[f"d{k}"].cpu("ADD")
        ref = meta[f"go{k}"].cpu("ADD")[0]
        ours = client + daemon
        rows.append(
            (
                f"CPU per pod ADD, cluster network + {k}: client (its driver call's process tree) + daemon vs the Go"
                " plugins (their driver calls' process trees)",
                f"{ours:.1f} ms",
                f"{ref:.1f} ms",
                f"{ours / ref:.2f}x",
                f"{CPU_LIMIT:.0f}x",
                ours / ref <= CPU_LIMIT,
            )
        )
    d, i = out["burst"]["daemon"], out["burst"]["inst"]
    d_err = sum(len(r["add"]["errors"]) + len(r["del"]["errors"]) for r in d)
    i_err = sum(len(r["add"]["errors"]) + len(r["del"]["errors"]) for r in i)
    d_wall = statistics.median(r["add"]["wall"] for r in d)
    i_wall = statistics.median(r["add"]["wall"] for r in i)
    rows.append(
        (
            f"{BURST} pod ADDs started at once through the daemon (then their DELs at once): no error; wall time",
            f"{d_err} errors; ADD {d_wall:.2f} s",
            f"one-shot: {i_err} errors; ADD {i_wall:.2f} s",
            f"{d_wall / i_wall:.2f}x",
            "no error",
            d_err == 0,
        )
    )
    return rows


def cipam_goals(out: dict[str, Any]) -> list[tuple[str, str, str, str, str, bool]]:
    """(what, ours, reference, ratio, limit, met) for each of issue 13's goals, from this run.

    The latency goal judges the daemon path (the installed link as the per-call client, the
    request served by the node daemon); the one-shot path's ratio is context (cipam_report).
    """
    c = out["cipam"]
    warm, go = c["rows"]["dwarm"]["ADD"][0], c["rows"]["go"]["ADD"][0]
    ours, per_alloc = c["traffic"]["blocks"]["writes"], c["traffic"]["per-alloc"]["writes"]
    return [
        (
            f"cluster IPAM ADD on a warm node (an address from a block it owns), THROUGH THE NODE DAEMON: the installed"
            f" `{CIPAM}` link as the per-call client (MULTIPLANE_DAEMON=require) + the daemon vs Debian's Go"
            " `host-local` ADD (exec'd directly)",
            f"{warm:.1f} ms",
            f"{go:.1f} ms",
            f"{warm / go:.2f}x",
            f"{CIPAM_LIMIT:.1f}x",
            warm / go <= CIPAM_LIMIT,
        ),
        (
            f"etcd writes per {CIPAM_ADDS} ADDs on a node that already owns a block (default blockSize, a /24 range;"
            " one-shot calls) vs a design that writes every allocation (measured: the same with blockSize /32; the"
            f" issue's figure: at least {CIPAM_PER_ALLOC})",
            f"{ours} writes",
            f"{per_alloc} writes",
            f"{ours / per_alloc:.2f}x" if per_alloc else "–",
            f"under {CIPAM_WRITES_LIMIT} writes",
            ours < CIPAM_WRITES_LIMIT,
        ),
    ]


def cipam_report(out: dict[str, Any]) -> dict[str, str]:
    """Section 11's tables and issue 13's goal table."""
    c = out["cipam"]
    rows, traffic = c["rows"], c["traffic"]
    go = rows["go"]
    labels = {
        "go": "Debian's Go `host-local` (reference), exec'd directly",
        "hl": "installed `multiplane-host-local`, one-shot (exec'd directly, no daemon)",
        "warm": f"installed `{CIPAM}`, one-shot (exec'd directly, no daemon), warm node: an address from its block"
        f" `{c['warm_block']}`",
        "dwarm": f"installed `{CIPAM}` THROUGH THE NODE DAEMON (the link as client, MULTIPLANE_DAEMON=require),"
        f" warm node: an address from its block `{c['dwarm_block']}`",
        "claim": f"installed `{CIPAM}`, one-shot, a node's first ADD on the network: claims a block in etcd",
        "dclaim": f"installed `{CIPAM}` THROUGH THE NODE DAEMON, a node's first ADD on the network: claims a block"
        " in etcd",
    }
    lines = [
        "| what | ADD median / p90 (ms) | DEL median / p90 (ms) | ADD / Go | DEL / Go |",
        "|---|---|---|---|---|",
    ]
    for key, label in labels.items():
        r = rows[key]
        dele = r.get("DEL")
        lines.append(
            f"| {label} | {fmt(r['ADD'])} | {fmt(dele) if dele else '–'} | "
            f"{'1.0x (reference)' if key == 'go' else ratio(r['ADD'], go['ADD'])} | "
            f"{'1.0x (reference)' if key == 'go' else (ratio(dele, go['DEL']) if dele else '–')} |"
        )
    cpu_lines = [
        "| what | the call's process tree, ms | the daemon, ms | total, ms | total / Go |",
        "|---|---|---|---|---|",
    ]
    go_cpu = c["cpu"]["go"]
    for key, label in labels.items():
        own, daemon = c["cpu"][key], c["dcpu"].get(key)
        total = own + (daemon or 0.0)
        cpu_lines.append(
            f"| {label} | {own:.1f} | {f'{daemon:.1f}' if daemon is not None else '–'} | {total:.1f} |"
            f" {'1.0x (reference)' if key == 'go' else f'{total / go_cpu:.2f}x' if go_cpu else '–'} |"
        )
    d = c["daemon"]
    ran_names = {
        "dwarm": "warm ADD",
        "dwarm-del": "warm DEL",
        "dclaim": "first ADD (claims a block)",
    }
    ran_lines = [
        "| request through the daemon | whole call (the client's exec), median ms | ran in the daemon (its log),"
        " median / p90 ms | calls found in its log |",
        "|---|---|---|---|",
    ]
    for key, name in ran_names.items():
        row = key.removesuffix("-del")
        whole = rows[row]["DEL" if key.endswith("-del") else "ADD"][0]
        ran = d["ran"].get(key)
        ran_lines.append(f"| {name} | {whole:.1f} | {fmt(ran) if ran else '–'} | {d['logged'].get(key, 0)} |")
    names = {
        "blocks": "blocks of the default size (/28 for IPv4: 16 addresses)",
        "per-alloc": "blockSize /32: one address per block, so every ADD claims in etcd (a per-allocation design)",
    }
    traffic_lines = [
        f"| node's blocks | etcd writes over {CIPAM_ADDS} ADDs | per ADD | blocks owned before → after |"
        f" ADD median / p90 (ms) over the {CIPAM_ADDS} |",
        "|---|---|---|---|---|",
    ]
    for key, label in names.items():
        t = traffic[key]
        traffic_lines.append(
            f"| {label} | {t['writes']} | {t['writes'] / CIPAM_ADDS:.2f} | {t['blocks_before']} → {t['blocks_after']} |"
            f" {fmt(t['add'])} |"
        )
    goal_lines = [
        "| goal | ours | reference | ratio | limit | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for what, ours_text, ref_text, rat, limit_text, met in cipam_goals(out):
        goal_lines.append(
            f"| {what} | {ours_text} | {ref_text} | {rat} | {limit_text} | {'met' if met else '**not met**'} |"
        )
    return {
        "latency": "\n".join(lines),
        "cpu": "\n".join(cpu_lines),
        "ran": "\n".join(ran_lines),
        "traffic": "\n".join(traffic_lines),
        "goals": "\n".join(goal_lines),
    }


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def _served_rows(out: dict[str, Any], key: str, command: str) -> list[tuple[float, float, float]]:
    """(driver call ms, ran in the daemon ms, waited ms) of each sample of scenario `key` that the daemon logged."""
    s = next(s for s in out["meta"] if s.key == key)
    served = out["daemon"]["served"]
    walls = s.add if command == "ADD" else s.dele
    rows = []
    for cid, wall in zip(s.cids, walls):
        entry = served.get((command, cid[:12]))
        if entry is not None and entry[0] == "ok":
            rows.append((wall, entry[1], entry[2]))
    return rows


def daemon_report(out: dict[str, Any]) -> dict[str, str]:
    """The daemon's parts of the report: goals, CPU, burst, memory, where the time goes."""
    meta = {s.key: s for s in out["meta"]}
    dmn = out["daemon"]
    parts: dict[str, str] = {}

    goal_lines = [
        "| goal | ours | reference | ratio | limit | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for what, ours, ref, rat, limit, met in daemon_goals(out):
        goal_lines.append(f"| {what} | {ours} | {ref} | {rat} | {limit} | {'met' if met else '**not met**'} |")
    parts["goals"] = "\n".join(goal_lines)

    # CPU per pod
    cpu_lines = [
        "| pod | ADD: driver calls' trees, ms | ADD: daemon, ms | ADD total, ms | ADD / Go "
        "| DEL: driver calls' trees, ms | DEL: daemon, ms | DEL total, ms | DEL / Go |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for k in (1, 4):
        ref = {c: sum(meta[f"go{k}"].cpu(c)) for c in ("ADD", "DEL")}
        for key in (f"go{k}", f"meta{k}-inst", f"d{k}"):
            s = meta[key]
            cells = []
            for c in ("ADD", "DEL"):
                own, daemon = s.cpu(c)
                shown = f"{daemon:.1f}" if s.daemon is not None else "–"
                cells.append(f"{own:.1f} | {shown} | {own + daemon:.1f} | {(own + daemon) / ref[c]:.2f}x")
            cpu_lines.append(f"| {s.label} | {' | '.join(cells)} |")
    parts["cpu"] = "\n".join(cpu_lines)

    # the burst
    names = {
        "daemon": "through the daemon (installed client)",
        "inst": "one-shot installed runtime, no daemon",
        "go": "Go plugins, each pod's two driver calls one after another",
    }
    burst_lines = [
        "| pods started at once | ADD wall time, s: median (max) | ADD errors | one pod's ADD, ms: median / max "
        "| DEL wall time, s: median (max) | DEL errors | CPU per pod ADD, ms (driver calls + daemon) |",
        "|---|---|---|---|---|---|---|",
    ]
    error_texts: list[str] = []
    for form, label in names.items():
        rounds = out["burst"][form]
        add_walls = [r["add"]["wall"] for r in rounds]
        del_walls = [r["del"]["wall"] for r in rounds]
        pods = [ms for r in rounds for ms in r["add"]["pods"]]
        add_err = sum(len(r["add"]["errors"]) for r in rounds)
        del_err = sum(len(r["del"]["errors"]) for r in rounds)
        cpu = statistics.mean(r["add"]["cpu"] + r["add"]["dcpu"] for r in rounds)
        burst_lines.append(
            f"| {BURST}, {label} | {statistics.median(add_walls):.2f} ({max(add_walls):.2f}) | {add_err} "
            f"| {statistics.median(pods):.0f} / {max(pods):.0f} "
            f"| {statistics.median(del_walls):.2f} ({max(del_walls):.2f}) | {del_err} | {cpu:.1f} |"
        )
        error_texts += [f"{form}: {e}" for r in rounds for e in r["add"]["errors"] + r["del"]["errors"]]
    burst_text = "\n".join(burst_lines)
    in_daemon = [v for (c, cid), v in dmn["served"].items() if c == "ADD" and cid.startswith("mp-bd") and v[0] == "ok"]
    if in_daemon:
        ran = [v[1] for v in in_daemon]
        waited = [v[2] for v in in_daemon]
        burst_text += (
            f"\n\nInside the daemon (its log, the {len(in_daemon)} burst ADDs it answered ok): a request ran"
            f" {statistics.median(ran):.0f} ms (median; max {max(ran):.0f} ms) on one of its"
            f" {dmn['settings'].get('maxConcurrency', 8)} workers and waited for a free one"
            f" {statistics.median(waited):.0f} ms (median; max {max(waited):.0f} ms)."
        )
    if error_texts:
        burst_text += "\n\nThe first errors:\n\n" + "\n".join(f"* `{e[:300]}`" for e in error_texts[:5])
    parts["burst"] = burst_text

    # memory
    moments = {
        "start": "after start: listening, no request yet",
        "warm": f"after warm-up: section 2's {WARMUP} warm-up rounds",
        "rows": f"after section 2's {N} sampled rounds",
        "burst": f"after its first {BURST}-pod burst's ADDs ({BURST} pods attached)",
        "end": f"after all bursts ({BURST_ROUNDS} through it) and their DELs",
    }
    mem_lines = [
        "| moment | VmRSS, MiB | VmHWM (peak so far), MiB | threads | requests answered so far (ADD / DEL) |",
        "|---|---|---|---|---|",
    ]
    for key, label in moments.items():
        m = dmn["memory"].get(key)
        if m is None:
            continue
        counts = m["counts"]
        answered = [sum(v for (c, _r), v in counts.items() if c == command) for command in ("ADD", "DEL")]
        mem_lines.append(
            f"| {label} | {_mib(m['VmRSS'])} | {_mib(m['VmHWM'])} | {m['Threads']} | {answered[0]} / {answered[1]} |"
        )
    final = dmn["memory"]["end"]["counts"]
    by_result = "; ".join(
        f"{command}: " + ", ".join(f"{r} {final.get((command, r), 0)}" for r in ("ok", "error", "rejected"))
        for command in ("ADD", "DEL")
    )
    expected = dmn["expected"]
    same = all(final.get((c, "ok"), 0) == expected[c] for c in ("ADD", "DEL"))
    check = (
        f"Its `/metrics` counted, at the end, {by_result}; the bench made {expected['ADD']} ADDs and"
        f" {expected['DEL']} DELs through it"
        + (", so every one was answered ok" if same else ": **the counts do not match**")
        + f". After SIGTERM it exited with status {dmn['rc']}"
        + (" and removed its socket." if not dmn["socket_left"] else ", **leaving its socket file behind**.")
    )
    errors = dmn["log_errors"]
    check += f" Its log has {len(errors)} error line(s)" + (f"; the first: `{errors[0][:300]}`." if errors else ".")
    parts["memory"] = "\n".join(mem_lines) + "\n\n" + check

    # where a daemon pod's time goes
    split_lines = [
        "| call through the daemon | driver call (section 2), ms | the request ran in the daemon, ms "
        "| waited for a worker, ms | outside the daemon, ms |",
        "|---|---|---|---|---|",
    ]
    logged = 0
    for k in (1, 4):
        for command in ("ADD", "DEL"):
            rows = _served_rows(out, f"d{k}", command)
            logged += len(rows)
            if not rows:
                split_lines.append(f"| pod + {k} {command} | – | (not in its log) | – | – |")
                continue
            split_lines.append(
                f"| pod + {k} {command} | {statistics.median(r[0] for r in rows):.1f} "
                f"| {statistics.median(r[1] for r in rows):.1f} | {statistics.median(r[2] for r in rows):.1f} "
                f"| {statistics.median(r[0] - r[1] - r[2] for r in rows):.1f} |"
            )
    parts["split"] = "\n".join(split_lines)
    parts["split_logged"] = str(logged)

    prof = dmn["profile"]
    phase_lines = ["| phase of the request | ADD, ms per request | DEL, ms per request |", "|---|---|---|"]
    totals = {}
    for command in ("ADD", "DEL"):
        run_ms = [
            ct
            for label, _nc, _tt, ct in prof[command]["all"]
            if "multiplane/daemon/server.py" in label and label.endswith("(_run)")
        ]
        totals[command] = (run_ms[0] if run_ms else 0.0) / PROFILE_RUNS
    accounted = {"ADD": 0.0, "DEL": 0.0}
    for (label, add_ms), (_l, del_ms) in zip(prof["ADD"]["phases"], prof["DEL"]["phases"]):
        accounted["ADD"] += add_ms / PROFILE_RUNS
        accounted["DEL"] += del_ms / PROFILE_RUNS
        phase_lines.append(f"| {label} | {add_ms / PROFILE_RUNS:.1f} | {del_ms / PROFILE_RUNS:.1f} |")
    phase_lines.append(
        "| the rest: reading the request's config, the plan, the pod's state checks, the result, the answer"
        f" | {totals['ADD'] - accounted['ADD']:.1f} | {totals['DEL'] - accounted['DEL']:.1f} |"
    )
    phase_lines.append(f"| **the whole request** (`Server._run`) | **{totals['ADD']:.1f}** | **{totals['DEL']:.1f}** |")
    parts["phases"] = "\n".join(phase_lines)
    top = ["| function | calls | own ms per ADD | cumulative ms per ADD |", "|---|---|---|---|"] + [
        f"| `{n}` | {nc} | {tt / PROFILE_RUNS:.1f} | {ct / PROFILE_RUNS:.1f} |" for n, nc, tt, ct in prof["ADD"]["rows"]
    ]
    parts["top"] = "\n".join(top)
    return parts


def import_section(imports: dict[str, Any]) -> str:
    """The `-X importtime` tables: one summary line per command, top modules by cumulative time of each."""
    titles = {
        "version": ("`multiplane` VERSION", 8),
        "hl-add": ("`multiplane-host-local` ADD", 10),
        "meta-add": ("`multiplane` ADD, cluster network + 1 macvlan network", 15),
    }
    lines = [
        "| command | modules imported | import time, ms (sum of self times) | wall time under importtime, ms |",
        "|---|---|---|---|",
    ]
    for key, (title, _top) in titles.items():
        t = imports[key]
        lines.append(f"| {title} | {t['modules']} | {t['total']:.1f} | {t['wall']:.1f} |")
    parts = ["\n".join(lines)]
    for key, (title, top) in titles.items():
        t = imports[key]
        rows = sorted(t["rows"], key=lambda r: r[2], reverse=True)[:top]
        table = ["| module | self ms | cumulative ms |", "|---|---|---|"]
        table += [f"| `{n}` | {s:.1f} | {c:.1f} |" for n, s, c in rows]
        parts.append(f"{title}: the {top} most expensive imports by cumulative time\n\n" + "\n".join(table))
    meta = imports["meta-add"]
    pkg = ["| package | self ms |", "|---|---|"] + [
        f"| `{p}` | {ms:.1f} |" for p, ms in sorted(meta["packages"].items(), key=lambda kv: kv[1], reverse=True)[:8]
    ]
    parts.append("The meta ADD's import time by top-level package (self times):\n\n" + "\n".join(pkg))
    cumulative = {n: c for n, _s, c in meta["rows"]}
    notes = []
    if "multiplane.k8s.client" in cumulative:
        notes.append(
            "* `multiplane.k8s.client` is imported although this node reads local files:"
            f" {cumulative['multiplane.k8s.client']:.0f} ms cumulative."
        )
    if "yaml" in cumulative:
        notes.append(f"* `yaml` (the local NAD manifests): {cumulative['yaml']:.0f} ms cumulative.")
    pyroute2 = [n for n, _s, _c in meta["rows"] if n.split(".")[0] == "pyroute2"]
    if pyroute2:
        notes.append(
            f"* pyroute2: {len(pyroute2)} modules, {meta['packages']['pyroute2']:.0f} ms of own import time"
            f" (`pyroute2.iproute` {'imported' if 'pyroute2.iproute' in pyroute2 else 'not imported'})."
        )
    for key, (title, _top) in titles.items():
        if key != "meta-add" and "pyroute2" in imports[key]["packages"]:
            notes.append(f"* {title} imports pyroute2 ({imports[key]['packages']['pyroute2']:.0f} ms).")
    if notes:
        parts.append("\n".join(notes))
    return "\n\n".join(parts)


def cipam_goals_text(out: dict[str, Any]) -> str:
    """The report's "Goals (issue 13)" part: the goal table and the one-shot path's ratios for context."""
    ci, cr = out["cipam"], cipam_report(out)
    rows = ci["rows"]
    go = rows["go"]["ADD"][0]
    one_shot = rows["warm"]["ADD"][0]
    vs_hl = one_shot / rows["hl"]["ADD"][0]
    vs_hl_note = (
        ": the one-shot path's distance to Go is mostly the process start-up of section 4 that every one-shot"
        " multiplane plugin pays, not the cluster IPAM's own work"
        if vs_hl <= 1.2
        else ""
    )
    return f"""## Goals (issue 13: cluster-wide IPAM)

Section 11. The latency goal judges the daemon path: the installed `{CIPAM}` link exec'd as a
main plugin execs its IPAM plugin, its per-call client handing the call to a node daemon
(`MULTIPLANE_DAEMON=require`, so a call the daemon did not serve fails the run). The ratio is
of two medians measured interleaved in this run, and the verdict compares the unrounded ratio
with the limit; the writes are etcd's revision moved by {CIPAM_ADDS} ADDs of one node, counted
on the etcd side.

{cr["goals"]}

For context, from the same rounds: the one-shot warm ADD (no daemon, the whole plugin in a
fresh process) is {one_shot:.1f} ms, {one_shot / go:.2f}x Go host-local, and {vs_hl:.2f}x the installed
`multiplane-host-local` ADD{vs_hl_note}; through the daemon it is {rows["dwarm"]["ADD"][0]:.1f} ms."""


def cipam_section(out: dict[str, Any], mach: dict[str, str]) -> str:
    """Section 11 of the report: cluster-wide IPAM, one-shot and through the node daemon."""
    ci, cr = out["cipam"], cipam_report(out)
    if ci["linked"] == "install":
        ci_link = (
            f"`multiplane install` created `opt/cni/bin/{CIPAM}` (a link to\n`{ci['target']}`),"
            " as it does for every personality of `plugins.REGISTRY`"
        )
    else:
        ci_link = (
            f"`multiplane install` created no `opt/cni/bin/{CIPAM}`: the bench\nlinked it to the launcher"
            f" (`{ci['target']}`) itself, in its own root, before any call"
        )

    def writes(key: str) -> str:
        lo, med, hi = ci["claim_writes"][key]
        return f"{lo}" if lo == hi else f"{lo}–{hi} (median {med:g})"

    def blocks(key: str) -> str:
        lo, hi = ci["claim_blocks"][key]
        return f"{lo}" if lo == hi else f"{lo}–{hi}"

    d = ci["daemon"]
    settings = json.dumps({k: v for k, v in d["settings"].items() if k not in ("socket", "metricsAddress")})
    rss = d["rss"]
    log_errors = (
        f"{len(d['log_errors'])} error lines in its log (first: `{d['log_errors'][0]}`)"
        if d["log_errors"]
        else "no error line in its log"
    )
    counts = ", ".join(f"{c} {r}: {n}" for (c, r), n in sorted(d["counts"].items()))
    return f"""## 11. Cluster-wide IPAM: `{CIPAM}` (issue 13)

The store is a real etcd: three members of Debian's etcd-server ({mach["etcd"]}) on loopback,
started by the bench for this section with `tests/etcd_cluster.py` (data dirs on /dev/shm,
heartbeat 50 ms, election timeout 500 ms) and stopped right after it, a failure included.
{ci_link}.

Every sample is that link exec'd directly (the launcher → the installed tree), a fresh
process with `CNI_*` in the environment and the config on stdin, as a main plugin execs its
IPAM plugin; the config names the etcd members (`etcd.endpoints`), a `nodeName` and a
`dataDir` (in the bench's directory) of one simulated node, a `range` and a `network_name`
(each row its own pool), `blockSize` left at its default unless said. The host-local rows
are section 3's configuration (a /16, data dir in the bench's directory). Each row takes one
of two paths:

* **one-shot**: `MULTIPLANE_SOCKET` names a socket that does not exist, so the process finds
  no daemon and runs the whole plugin itself (Python's start, the imports, the allocation);
* **through the node daemon**: a daemon of this section's own, started by the bench before
  the rows and stopped (SIGTERM) after them: the installed launcher's `multiplane daemon`
  with the thick DaemonSet's daemon.json without `chrootDir` (`{settings}`), its socket in
  the bench's directory and `/metrics` on a free loopback port, no cluster. The same link
  is exec'd with `MULTIPLANE_SOCKET=<that socket>` and `MULTIPLANE_DAEMON=require`: the
  process is the per-call client (the launcher, the interpreter and five small modules), it
  sends the environment and the config to the daemon, which runs the same plugin on a worker
  thread (its etcd client and imports already loaded after the first claim), and prints the
  answer. A call the daemon does not serve fails the run; its `/metrics` counted
  {counts} (the {WARMUP + N} rounds and the daemon's warm node's first ADD), {log_errors},
  VmRSS {rss.get("VmRSS", 0) / 1024:.1f} MiB (VmHWM {rss.get("VmHWM", 0) / 1024:.1f} MiB) at the end.

The nodes of the rows:

* **warm node**: a node whose first ADD (before the samples) claimed one block and keeps that
  address held, so the block is never empty; the one-shot rows' node owns `{ci["warm_block"]}`
  of 10.96.0.0/16 ({ci["prime_writes"]["warm"]} etcd write), the daemon rows' node (a node of its own,
  its own pool and record) owns `{ci["dwarm_block"]}` of 10.91.0.0/16 ({ci["prime_writes"]["dwarm"]} etcd write).
  Each sample is an ADD then a DEL of a new container id: the address always comes from that
  block (checked after every ADD: inside the block, and the node's record still owns only
  that block at the end). etcd's revision moved by {ci["warm_writes"]["warm"]} (one-shot) and
  {ci["warm_writes"]["dwarm"]} (through the daemon) over all {WARMUP + N} warm ADD/DEL pairs (warm-up
  included): no store write.
* **a node's first ADD** (block claim): each sample is a new node (its own `nodeName`, an empty
  `dataDir`) on 10.94.0.0/16 (one-shot) or 10.90.0.0/16 (through the daemon): it lists the
  pool's blocks in etcd, claims one in a transaction, lists the blocks again (the overlap
  check of decision 0010) and the single claims, writes its record, then allocates. etcd
  writes per such ADD (revision before and after it): {writes("claim")} one-shot,
  {writes("dclaim")} through the daemon; blocks each node owns afterwards: {blocks("claim")} and
  {blocks("dclaim")}. No goal (the issue asks only to report it).

Go host-local, the installed `multiplane-host-local`, both warm nodes and both kinds of
first-ADD nodes were measured interleaved, round by round, the order rotated each round; {N}
samples after {WARMUP} warm-up rounds; host-local's and the warm nodes' ADD and DEL are both timed.

{cr["latency"]}

**CPU per ADD** (user + system), the same samples: "the call's process tree" is the bench's
`getrusage(RUSAGE_CHILDREN)` after minus before each exec (the plugin's process, or through
the daemon the per-call client's, and what it waited for); "the daemon" is the daemon's
`/proc/<pid>/stat` utime + stime + cutime + cstime after minus before the call, in clock
ticks of 1/{CLK_TCK} s, so each sample is a whole number of ticks and only the mean over the
{N} samples is finer. Means over the samples.

{cr["cpu"]}

**Where a call through the daemon spends its time**: the daemon's own line per request
(`logLevel` verbose: "ok in … ms") against the whole exec measured by the bench; the
difference is the client's start (launcher, interpreter, its imports), the socket exchange
and the exit.

{cr["ran"]}

**Store traffic per {CIPAM_ADDS} ADDs** (one-shot calls). One node on a /24 of its own: its first ADD claims its
first block (not counted: the node then "already owns a block"); then etcd's revision is read,
{CIPAM_ADDS} ADDs run one after another (new container ids, no DEL), and the revision is read
again. Each read is a linearizable range request to a member (`/v3/kv/range` of etcd's JSON
gateway), and etcd moves its revision by exactly one for every put, delete or transaction
that writes, and by none for reads, so the difference is the number of writes those ADDs
made (nothing else writes to this etcd). The {CIPAM_ADDS} addresses are checked distinct. The
per-allocation design is not a figure assumed but measured: the same plugin with
`blockSize` 32, so a block is a single address and every ADD must claim one in etcd, the
store traffic of a design that writes every allocation (the issue's reference: at least
{CIPAM_PER_ALLOC} per {CIPAM_ADDS} ADDs). The ADD latency over the {CIPAM_ADDS} is shown too:
with the default blocks most ADDs are warm and a few claim.

{cr["traffic"]}"""


def cipam_only_report(out: dict[str, Any], mach: dict[str, str], seconds: float) -> str:
    """MP_BENCH_ONLY=cipam: issue 13's goals and section 11 alone."""
    return f"""# Benchmarks: cluster-wide IPAM only (MP_BENCH_ONLY=cipam)

A partial run of `tests/bench/bench.py` ({seconds:.0f} s): the install and section l alone. {N} samples
per row after {WARMUP} warm-up rounds. Machine: {mach["cpus"]}; kernel {mach["kernel"]}; load average
{mach["load"]} at the start, {mach["load_end"]} at the end. The runtime: {out["facts"]["binary"]}, build
{out["facts"]["build"]}.

{cipam_goals_text(out)}

{cipam_section(out, mach)}
"""


def report(out: dict[str, Any], mach: dict[str, str], seconds: float) -> str:
    mv = {s.key: s.result for s in out["mv"]}
    meta = {s.key: s.result for s in out["meta"]}
    labels = {s.key: s.label for s in out["mv"] + out["meta"]}
    hl, start, kern, rss, facts = out["hl"], out["start"], out["kernel"], out["rss"], out["facts"]
    prof = out["profile"]
    prof_rows, prof_total, prof_wall = prof["rows"], prof["total"], prof["wall"]
    ci = out["cipam"]

    def pair_rows(results: dict[str, dict[str, tuple[float, float]]], ref: str, keys: list[str]) -> list[str]:
        lines = []
        for key in keys:
            r = results[key]
            if key == ref:
                ra, rd = "1.0x (reference)", "1.0x (reference)"
            else:
                ra, rd = ratio(r["ADD"], results[ref]["ADD"]), ratio(r["DEL"], results[ref]["DEL"])
            lines.append(f"| {labels[key]} | {fmt(r['ADD'])} | {fmt(r['DEL'])} | {ra} | {rd} |")
        return lines

    head = [
        "| what | ADD median / p90 (ms) | DEL median / p90 (ms) | ADD ours / Go | DEL ours / Go |",
        "|---|---|---|---|---|",
    ]
    mv_table = "\n".join(head + pair_rows(mv, "mv-go", ["mv-go", "mv-inst", "mv-dist", "mv-py"]))
    meta_table = "\n".join(
        head
        + pair_rows(meta, "go1", ["go1", "meta1-inst", "meta1-dist", "meta1-py", "d1"])
        + pair_rows(meta, "go4", ["go4", "meta4-inst", "meta4-dist", "d4"])
    )
    m1 = meta["meta1-inst"]
    meta_table += (
        f"\n| Multus thin + 1 (known figure, with an API server) | ≈ {KNOWN['multus_add']:.0f} | ≈ {KNOWN['multus_del']:.0f} | "
        f"multiplane + 1 (installed) is {m1['ADD'][0] / KNOWN['multus_add']:.1f}x | {m1['DEL'][0] / KNOWN['multus_del']:.1f}x |"
    )

    hl_names = {"go": "Go host-local", **{k: FORMS[k] for k in FORMS}}
    hl_lines = [
        "| operation | "
        + " | ".join(f"{hl_names[k]} median / p90 (ms)" for k in hl_names)
        + " | installed / Go | self-contained / Go | Python / Go |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for op in ("ADD", "DEL", "VERSION"):
        g, i, d, p = hl["go"][op], hl["inst"][op], hl["dist"][op], hl["py"][op]
        hl_lines.append(
            f"| {op} | {fmt(g)} | {fmt(i)} | {fmt(d)} | {fmt(p)} | {ratio(i, g)} | {ratio(d, g)} | {ratio(p, g)} |"
        )

    start_names = {
        "go": "Go host-local VERSION",
        "interp": "the tree's loader + interpreter, nothing of ours (`<tree>/ld-linux-x86-64.so.2 … python3.11 -c pass`)",
        "boot": "the tree's interpreter running `boot.py multiplane` directly (no launcher), VERSION",
        "inst": "installed runtime: `<bin>/multiplane` VERSION (launcher → `.multiplane/current`)",
        "warm": "dist/multiplane VERSION, tree already unpacked",
        "cold": "dist/multiplane VERSION, first call after a new build (unpack directory removed before each sample)",
    }
    st_lines = ["| process | median / p90 (ms) | / Go |", "|---|---|---|"]
    for k, label in start_names.items():
        st_lines.append(f"| {label} | {fmt(start[k])} | {ratio(start[k], start['go'])} |")

    g = start["go"][0]
    interp, boot, inst, warm, cold = (start[k][0] for k in ("interp", "boot", "inst", "warm", "cold"))
    layers = [
        ("the tree's dynamic loader, C libraries and interpreter start-up (`-c pass`)", interp),
        ("multiplane's imports and the VERSION answer (`boot.py` − bare interpreter)", boot - interp),
        (
            "the launcher: find `.multiplane/current` beside itself, shared lock, exec (installed − `boot.py`)",
            inst - boot,
        ),
        (
            "self-contained file, tree unpacked: find the unpack directory, sweep it, lock (warm − installed)",
            warm - inst,
        ),
        (
            f"self-contained file, first call after a new build: unpack {facts['tree']}, syncfs, rename (cold − warm)",
            cold - warm,
        ),
    ]
    layer_lines = ["| layer | ms (difference of medians) |", "|---|---|"] + [f"| {w} | {v:.1f} |" for w, v in layers]

    goal_lines = [
        "| goal | ours median (ms) | reference median (ms) | ratio | limit | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for what, ours, ref, limit in goal_rows(out):
        verdict = "met" if ours / ref <= limit else "**not met**"
        goal_lines.append(f"| {what} | {ours:.1f} | {ref:.1f} | {ours / ref:.2f}x | {limit:.0f}x | {verdict} |")

    phase_lines = ["| phase of the ADD | ms under cProfile |", "|---|---|"] + [
        f"| {w} | {v:.1f} |" for w, v in prof["phases"]
    ]
    prof_lines = ["| function | calls | own ms | cumulative ms |", "|---|---|---|---|"] + [
        f"| `{n}` | {nc} | {tt:.1f} | {ct:.1f} |" for n, nc, tt, ct in prof_rows
    ]

    def mib(key: str) -> str:
        return f"{rss[key][0] / 1024:.1f} ({rss[key][1] / 1024:.1f})"

    rss_lines = [
        "| process tree | max RSS median (max) over 5 ADDs, MiB |",
        "|---|---|",
        f"| multiplane + 1, installed runtime | {mib('inst')} |",
        f"| multiplane + 1, dist/multiplane (tree already unpacked) | {mib('dist')} |",
        f"| multiplane + 1, Python entry point | {mib('py')} |",
        f"| Go bridge ADD (cluster network) | {mib('bridge')} |",
        f"| Go macvlan ADD (+ its host-local) | {mib('macvlan')} |",
    ]

    def pair(a: dict[str, tuple[float, float]], b: dict[str, tuple[float, float]]) -> str:
        return f"{ratio(a['ADD'], b['ADD'])} | {ratio(a['DEL'], b['DEL'])}"

    summary = [
        "| pair | ADD ours / Go | DEL ours / Go |",
        "|---|---|---|",
        f"| one macvlan attachment: installed vs Go macvlan + host-local | {pair(mv['mv-inst'], mv['mv-go'])} |",
        f"| one macvlan attachment: dist/multiplane vs Go macvlan + host-local | {pair(mv['mv-dist'], mv['mv-go'])} |",
        f"| pod + 1 network: installed multiplane vs Go plugins one after another | {pair(meta['meta1-inst'], meta['go1'])} |",
        f"| pod + 1 network: dist/multiplane vs Go plugins one after another | {pair(meta['meta1-dist'], meta['go1'])} |",
        f"| pod + 4 networks: installed multiplane vs Go plugins one after another | {pair(meta['meta4-inst'], meta['go4'])} |",
        f"| pod + 4 networks: dist/multiplane vs Go plugins one after another | {pair(meta['meta4-dist'], meta['go4'])} |",
        f"| pod + 1 network: installed multiplane vs Multus thin (known figure) | {m1['ADD'][0] / KNOWN['multus_add']:.1f}x | {m1['DEL'][0] / KNOWN['multus_del']:.1f}x |",
        f"| pod + 1 network: through the daemon vs Go plugins one after another (Multus thick: {MULTUS_THICK} ADD) | {pair(meta['d1'], meta['go1'])} |",
        f"| pod + 4 networks: through the daemon vs Go plugins one after another | {pair(meta['d4'], meta['go4'])} |",
        f"| host-local alone: installed vs Go | {pair(hl['inst'], hl['go'])} |",
        f"| cluster IPAM, warm node (address from an owned block): installed `{CIPAM}` one-shot vs Go host-local"
        f" | {pair(ci['rows']['warm'], ci['rows']['go'])} |",
        f"| cluster IPAM, warm node: installed `{CIPAM}` through the node daemon vs Go host-local"
        f" | {pair(ci['rows']['dwarm'], ci['rows']['go'])} |",
        f"| host-local alone: dist/multiplane vs Go | {pair(hl['dist'], hl['go'])} |",
        f"| start-up (VERSION): installed vs Go host-local | {ratio(start['inst'], start['go'])} | – |",
        f"| start-up (VERSION): dist/multiplane, tree unpacked, vs Go host-local | {ratio(start['warm'], start['go'])} | – |",
        f"| start-up (VERSION): dist/multiplane, first call after a new build, vs Go host-local | {ratio(start['cold'], start['go'])} | – |",
    ]

    changed = out["changed"]
    if changed:
        written = f"changed after the bench's calls: {', '.join(changed[:5])}"
    else:
        written = "unchanged after every call of this run (mode, size and mtime of each entry compared)"
    meta_work = meta["meta1-inst"]["ADD"][0] - inst
    imports = import_section(out["imports"])
    dr = daemon_report(out)
    dmn = out["daemon"]
    changed_keys = sorted(
        k for k in set(dmn["shipped"]) | set(dmn["settings"]) if dmn["shipped"].get(k) != dmn["settings"].get(k)
    )
    shipped_json = json.dumps(dmn["shipped"])
    used_json = json.dumps(dmn["settings"]).replace(dmn["tmp"], "<bench dir>")
    log_note = " (the DaemonSet's own)" if "logLevel" not in changed_keys else " (the DaemonSet's is not)"
    driver_alone = out["driver_alone"]
    d1 = next(s for s in out["meta"] if s.key == "d1")
    d1_cpu = d1.cpu("ADD")
    packet_close = kern["packet_close"]
    if kern["go_arping"]:
        go_announce = "Debian's Go macvlan announces too (its binary holds arping code)."
    else:
        go_announce = "Debian's Go macvlan sends no such frame (its binary holds no arping code)."
    add_phases = {label: ms / PROFILE_RUNS for label, ms in dmn["profile"]["ADD"]["phases"]}
    announce_ms = next(ms for label, ms in add_phases.items() if label.startswith("macvlan: announcing"))
    bridge_ms = next(ms for label, ms in add_phases.items() if label.startswith("the Debian bridge"))
    return f"""# Benchmarks

Produced by `make bench` (`tests/bench/bench.py`, as root, {seconds:.0f} s for the whole run); the numbers are
from the last run. Each latency sample is one real runtime operation: a fresh process tree
started by the libcni runtime driver `tests/cnidriver` (Debian's libcni {mach["libcni"]}), or, for
host-local and start-up, the plugin exec'd directly with `CNI_*` in the environment and the
config on stdin, as a runtime does (no `TMPDIR`, as under kubelet's runtimes). {N} samples per
row after {WARMUP} warm-up rounds; the rows of a table were measured interleaved (round by round),
so background load hits them alike. The reference Go binaries are Debian's
containernetworking-plugins {mach["plugins"]}.

multiplane is measured in its shipped forms:

* **installed runtime**: `dist/multiplane install --root <bench dir>/mp-root --no-kubeconfig`
  (run from the copy described below) laid the tree down once as `opt/cni/bin/.multiplane/{facts["build"]}/` (+ the `current` link);
  `opt/cni/bin/multiplane` is the bare static launcher ({facts["launcher"]}), and
  `multiplane-macvlan` and `multiplane-host-local` link to it. Its CNI bin dir was {written}.
* **self-contained file**: `dist/multiplane`, copied into the bench's own directory at the
  start (so a rebuild meanwhile cannot change it), under our three names through links; the
  installed runtime above was installed from that copy. It unpacks its tree once per build
  into `$MULTIPLANE_UNPACK_DIR`, here the bench's own directory ({mach["tmp_fs"]},
  where it unpacks by default); every row of it except "cold" in section 4 runs with that
  tree already unpacked (the install and the warm-up rounds unpack it).
* **through the node daemon**: the installed launcher runs the daemon,
  `opt/cni/bin/multiplane daemon --config <bench dir>/mp-bench.json`, started once before
  section 2 and stopped (SIGTERM) after section 8; the daemon's process is
  `{dmn["pid_cmdline"]}` (the launcher execs the tree's loader in place, as for a CNI call). Its
  config is the thick DaemonSet's daemon.json (`packaging/k8s/daemonset-thick.yaml`:
  `{shipped_json}`) with {", ".join(f"`{k}`" for k in changed_keys)} changed or left out:
  `{used_json}`. The socket and the metrics address are in the bench's own directory and on
  a free loopback port; there is no `chrootDir`: this daemon runs on the host, not in a
  container, so it spawns the node's plugins directly (in the DaemonSet each external
  delegate is also started through the launcher's `--exec-in-root`, not measured here);
  `logLevel` is `verbose`{log_note}: its line per request gives section 10's split. No
  cluster (no kubeconfig, no KUBERNETES_SERVICE_HOST): requests read local NAD files, as the
  one-shot rows do. Its calls are the installed runtime's with
  `MULTIPLANE_SOCKET=<bench dir>/mp-bench.sock` and `MULTIPLANE_DAEMON=require` in the
  driver's environment (libcni passes it on): the per-call client fails such a call rather
  than run it in-process, so every daemon row went through the daemon, and its `/metrics`
  counted them (section 9). The one-shot rows run with `MULTIPLANE_SOCKET` naming a socket
  that does not exist: they look for a daemon as on a node without one.

The tree: {facts["tree"]} (largest: {facts["largest"]}); Debian's Python {facts["tree_python"]}, isolated.
The "Python entry point" rows are the project virtualenv's console scripts, for reference.

Machine: {mach["cpus"]}; kernel {mach["kernel"]}; Debian {mach["debian"]}; Python {mach["python"]}
(the virtualenv, on Debian's /usr/bin/python3); Go {mach["go"]}; {facts["binary"]};
load average {mach["load"]} at the start, {mach["load_end"]} at the end.

## Goals (issue 9: installed runtime, no unpacking on any CNI call)

Each ratio is of two medians measured interleaved in this run (sections 2, 3 and 4), and the
verdict compares the unrounded ratio with the limit.

{chr(10).join(goal_lines)}

## Goals (issue 10: the node daemon)

The latency ratios are of two medians measured interleaved in this run (section 2); the CPU
ratios of two means over the same pods (section 7), and the verdict compares the unrounded
ratio with the limit. The burst is section 8: its verdict counts the failed calls and wrong
pods of every round through the daemon, ADDs and DELs; its ratio is the daemon's median ADD
wall time over the one-shot runtime's. Multus thick measured {MULTUS_THICK} for the
first row on this machine (issue 10).

{dr["goals"]}

{cipam_goals_text(out)}

## Summary (medians, ours / Go)

{chr(10).join(summary)}

For context, known figures measured earlier on this kind of machine (2 cores, hyperfine):
the Go chain through libcni ADD ≈ {KNOWN["go_add"]:.0f} ms, DEL ≈ {KNOWN["go_del"]:.0f} ms; Multus thin with one
secondary network ≈ {KNOWN["multus_add"]:.0f} ms ADD and {KNOWN["multus_del"]:.0f} ms DEL (with an API server; ours
reads local NAD files here, so it does no HTTP).

## 1. One macvlan + host-local attachment (one conflist, one driver call)

The reference macvlan executes the host-local binary (two process starts per ADD); ours runs
host-local inside the macvlan process (one start). ADD then DEL in the same pod namespace.

{mv_table}

## 2. A pod: cluster network (bridge + host-local) plus 1 or 4 macvlan networks

multiplane: one driver call, no daemon; it execs Debian's bridge for `eth0` and runs the
macvlan networks (`net1`…) in-process, selected by `MULTIPLANE_NETWORKS` from local NAD
files, and writes its delegate cache and network-status file. Go: what a node without a
meta-plugin pays, the bridge conflist and then one reference macvlan conflist per network,
each a separate driver call into the same pod (DEL in reverse), summed per pod. "Through
the daemon": the same driver call to the installed runtime with the daemon's socket and
`MULTIPLANE_DAEMON=require`; the launcher starts the per-call client, which sends the
environment and stdin to the daemon and prints its answer; the daemon runs the same engine
on a worker thread (it spawns Debian's bridge, runs macvlan in-process) with the request's
environment. All rows of this table, the daemon's included, were measured interleaved.

{meta_table}

## 3. host-local alone (exec'd directly; one range, /16 pool, data dir on local disk)

{chr(10).join(hl_lines)}

## 4. Process start-up

`<tree>` is the installed tree, `opt/cni/bin/.multiplane/{facts["build"]}`; its interpreter is
started as the launcher starts it (`<tree>/ld-linux-x86-64.so.2 --inhibit-cache --library-path
<tree>/lib <tree>/python3.11 …`). The cold row's unpack directory (in the bench's own
directory) is removed before each of its samples, so every sample unpacks the whole tree.

{chr(10).join(st_lines)}

## 5. Peak memory of one ADD

Measured by a wrapper that execs the plugin directly (env + stdin, as libcni would) and
reads `getrusage(RUSAGE_CHILDREN).ru_maxrss`: the largest single process of the tree. The
launcher execs the tree's loader in its own process (no second process), so for both forms
that is the Python process; the Go bridge it execs for `eth0` peaks at about
{rss["bridge"][0] / 1024:.0f} MiB.

{chr(10).join(rss_lines)}

## 6. Where the time goes

Start-up, layer by layer (differences of the medians in section 4):

{chr(10).join(layer_lines)}

In plain words: a Go plugin is one static executable the kernel maps and runs, about
{g:.1f} ms to answer VERSION. The installed runtime is a static launcher that finds
`.multiplane/current` beside itself, takes a shared lock on that tree and execs the tree's
loader on the tree's interpreter: {inst:.1f} ms for VERSION, of which loading the interpreter and its
C libraries is about {interp:.1f} ms, our imports and the answer about {boot - interp:.1f} ms and the launcher
about {inst - boot:.1f} ms. Nothing is unpacked or written on the way. The self-contained file with its
tree already unpacked takes {warm:.1f} ms; the first call after a new build unpacks the whole tree
({facts["tree"]}) and syncs the file system before it runs: {cold:.1f} ms, once per build.

Beyond start-up, a meta ADD with one network (installed runtime, through the driver) takes
{meta["meta1-inst"]["ADD"][0]:.0f} ms, {meta_work:.0f} ms more than the installed VERSION: the driver's own start, importing the
meta-plugin and pyroute2's netlink message classes, reading the config and the NAD,
exec'ing Debian's bridge (the whole Go bridge + macvlan pod costs {meta["go1"]["ADD"][0]:.0f} ms through the
driver), the netlink work in the pod namespace for the macvlan (create in the root
namespace, move, rename, address, routes, up), host-local's flock and fsync'ed writes, and
the fsync'ed delegate cache and status files. DEL is dominated by the same start-up plus the
kernel: `ip link del` of one macvlan takes {kern["del"][0]:.1f} ms (median; `ip link add`
{kern["add"][0]:.1f} ms, `ip link show lo` {kern["show"][0]:.1f} ms, so ip's own start is included), for Go and
for us alike, once per macvlan network (a pod with 4 networks pays it 4 times, one after
another), and the pod's veth on the bridge is torn down the same way.

### Imports inside the installed runtime (`-X importtime`)

Each command run {IMPORT_RUNS} times in the installed tree's interpreter with the launcher's argv plus
`-X importtime` (`<tree>/ld-linux-x86-64.so.2 --inhibit-cache --library-path <tree>/lib
<tree>/python3.11 -X importtime <tree>/boot.py <name>`), exec'd directly with the CNI
environment and config; medians per module over the runs. Import time is the sum of self
times, the interpreter's own start-up imports included; nested entries are included in their
parents' cumulative times.

{imports}

### Profile of one meta ADD (cProfile, Python entry point, top 15 by cumulative time)

Profiled with the virtualenv's interpreter (the tree's modules carry no source paths to
group by). {prof_total:.0f} ms of profiled time in a {prof_wall:.0f} ms run (cProfile slows Python code
down; the exec'd bridge and the kernel count as time spent waiting in the calling function).
By phase (a phase's functions when called from outside every phase; lazy imports inside a
phase count there and under imports):

{chr(10).join(phase_lines)}

Top 15 functions by cumulative time (the import machinery's own frames are left out; their
total is the imports row above):

{chr(10).join(prof_lines)}

## 7. CPU per pod (user + system)

For each of section 2's {N} sampled pods: "driver calls' trees" is the bench's
`getrusage(RUSAGE_CHILDREN)` (user + system) after minus before each driver call, summed over
the pod's calls: the driver, the plugin processes it started and everything they waited for
(for the daemon rows: the driver and the per-call client). "Daemon" is the daemon's
`/proc/<pid>/stat` after minus before the pod's calls: utime + stime (all its threads) +
cutime + cstime (the delegates it spawned and waited for: Debian's bridge and the host-local
that bridge runs), in clock ticks of 1/{CLK_TCK} s, so each pod's figure is a whole number of
ticks and only their mean is finer. Each figure is the sum over the {N} pods divided by {N}. Every
driver call's own CPU is in its side's figure: a driver asked for a network no config names
(it fails before any plugin) uses {driver_alone["cpu"]:.1f} ms of CPU ({driver_alone["wall"][0]:.1f} ms wall),
which a Go pod + k pays 1 + k times and a multiplane pod once; a runtime that runs libcni
in its own process pays neither.

{dr["cpu"]}

## 8. A burst: {BURST} pods at once

{BURST} pods, each in its own network namespace, each with the cluster network and one macvlan
network (NAD `mp-burst`, host-local on a /16 so every pod gets an address). One thread of the
bench per pod; a barrier releases all of them together, and each runs its pod's driver calls
as in section 2: through the daemon, one call (`MULTIPLANE_DAEMON=require`); one-shot, one
call to the installed runtime; Go, the bridge conflist and then the macvlan conflist. The
wall time runs from the first thread's start to the last one's end; "one pod's ADD" is each
thread's own time. Afterwards every pod's links are checked (`lo`, `eth0`, `net1`), then all
DELs are started the same way and every pod is checked empty. An error is a driver call
that failed or a pod with other links. {BURST_ROUNDS} round(s), the three in rotated order, a
1 s pause before each burst; CPU per pod: RUSAGE_CHILDREN over the whole burst plus the
daemon's /proc stat over the burst, divided by {BURST}, the mean over the rounds. The daemon runs
{dmn["settings"].get("maxConcurrency", 8)} workers and queues up to {dmn["settings"].get("maxQueued", 128)} requests.

{dr["burst"]}

## 9. The daemon's memory

VmRSS and VmHWM (the peak resident size since the process started) from `/proc/<pid>/status`
of the daemon, read at each moment below; the requests answered so far are its `/metrics`
counter `multiplane_requests_total`, read right after.

{dr["memory"]}

## 10. Where a daemon pod's time goes

For each sampled call of section 2's daemon rows: the driver call's wall time, and the
daemon's own line for that request in its log ("ok in … ms (waited … ms)": the time the
request ran on a worker, the time it waited for one); "outside the daemon" is the wall time
minus both: the driver's start and its libcni work, the launcher and interpreter start of the per-call
client (the installed runtime answers VERSION in {inst:.1f} ms, section 4), the client's
connect, send and wait, and the reply's way back. Medians over the {N} samples of each row
({dr["split_logged"]} calls found in the log).

{dr["split"]}

Inside the daemon: the project's daemon code (the source tree the runtime was built from)
started by the virtualenv's interpreter (with the source paths cProfile groups by) through a wrapper that runs every request's `Server._run`
under its own cProfile profiler (cProfile alone sees only the main thread; requests run on
worker threads), the daemon.json of above without `metricsAddress`. The installed runtime's
client sent it {WARMUP} unprofiled pods, then {PROFILE_RUNS} profiled pod + 1 ADDs and DELs (the pod
of section 2); ms per request under cProfile (which slows Python code down; an exec'd
plugin and the kernel count as time spent waiting in the calling function). A phase is its
functions' time when called from outside every phase.

{dr["phases"]}

The address announcement is one gratuitous ARP frame per IPv4 address, sent on an AF_PACKET
socket in the pod's namespace; closing that socket is most of its time: closing an AF_PACKET
socket bound to a link takes {packet_close[0]:.1f} ms in the kernel on this machine (median
of {max(3, N // 2)}, the bench's own socket on the master link; p90 {packet_close[1]:.1f} ms), for a plugin in a
daemon and in its own process alike. {go_announce}
So a pod + 1 ADD through the daemon spends about {bridge_ms:.0f} ms (under cProfile) waiting for Debian's bridge and
about {announce_ms:.0f} ms announcing the macvlan's address; its CPU is {d1_cpu[0]:.1f} ms in the driver
call's tree (driver + client) and {d1_cpu[1]:.1f} ms in the daemon (section 7).

Top 15 functions of the profiled ADDs by cumulative time (ms per ADD; the import machinery's
own frames left out):

{dr["top"]}

{cipam_section(out, mach)}
"""


def main() -> int:
    if os.geteuid() != 0:
        print("make bench needs root (it builds network namespaces)", file=sys.stderr)
        return 1
    if not DIST.exists():
        print(f"{DIST} is missing: run `make binary` (make bench depends on it)", file=sys.stderr)
        return 1
    missing = [n for n in NAMES if not (PY_BIN / n).exists()]
    if missing:
        print(
            f"the Python entry points {missing} are missing next to {sys.executable}: run with the project venv",
            file=sys.stderr,
        )
        return 1
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, _terminate)
    if ONLY not in ("", "cipam"):
        print(f"MP_BENCH_ONLY={ONLY!r}: the only section that runs alone is `cipam` (section l)", file=sys.stderr)
        return 1
    began = time.monotonic()
    forward = Path(IP_FORWARD).read_text()
    tmp = Path(tempfile.mkdtemp(prefix="mp-bench-"))
    try:
        mach = machine(tmp)
        out = run_cipam(tmp) if ONLY == "cipam" else run(tmp)
    finally:
        for _ in range(5):  # a plugin orphaned by a killed driver may still be writing
            shutil.rmtree(tmp, ignore_errors=True)
            if not tmp.exists():
                break
            time.sleep(0.5)
        if Path(IP_FORWARD).read_text() != forward:
            Path(IP_FORWARD).write_text(forward)
    mach["load_end"] = Path("/proc/loadavg").read_text().split()[0]
    seconds = time.monotonic() - began
    if ONLY == "cipam":  # a partial report: never over docs/benchmarks.md, which only a full run writes
        body = cipam_only_report(out, mach, seconds)
        print(body)
        if os.environ.get("MP_BENCH_DOC"):
            DOC.write_text(body, encoding="utf-8")
            print(f"wrote {DOC} in {seconds:.0f} s")
        for what, ours_text, ref_text, rat, limit_text, met in cipam_goals(out):
            print(f"goal {'met' if met else 'NOT MET'}: {what}: {ours_text} vs {ref_text}, {rat} (limit {limit_text})")
        return 0
    body = report(out, mach, seconds)
    DOC.write_text(body, encoding="utf-8")
    print(body)
    print(f"wrote {DOC} in {seconds:.0f} s")
    for what, ours, ref, limit in goal_rows(out):
        print(f"goal {'met' if ours / ref <= limit else 'NOT MET'}: {what}: {ours / ref:.2f}x (limit {limit:.0f}x)")
    for what, ours_text, ref_text, rat, limit_text, met in daemon_goals(out) + cipam_goals(out):
        print(f"goal {'met' if met else 'NOT MET'}: {what}: {ours_text} vs {ref_text}, {rat} (limit {limit_text})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
