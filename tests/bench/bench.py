#!/usr/bin/env python3
"""`make bench` (root): multiplane against Debian's Go plugins, in one run; writes docs/benchmarks.md.

Not a test (pytest never imports this file): it measures. Every latency sample is one real
runtime operation, a fresh process as a container runtime starts it, reported as median and
p90 over BENCH_RUNS samples (default 30) after two warm-up rounds, with ratios ours / Go.

 a) the reference chain: Debian's macvlan + host-local in a conflist, through the libcni driver;
 b) the same attachment with type `multiplane-macvlan` (dist/multiplane through a link,
    host-local in-process), through the driver; also the Python entry point;
 c) the meta-plugin (dist/multiplane as `multiplane`): the cluster network (Debian's bridge +
    host-local) plus 1 and plus 4 macvlan networks chosen by annotation (local NAD files,
    CNI_ARGS MULTIPLANE_NETWORKS), through the driver;
 d) what a node without a meta-plugin pays for the same pod: the bridge conflist, then one
    reference macvlan conflist per network, each a driver call into the same pod (eth0,
    net1, ...), summed per pod;
 e) host-local alone, exec'd directly: Go, dist/multiplane-host-local, the Python entry point;
 f) process start-up (VERSION) and its layers: Go, the interpreter, the Python entry point,
    the PyInstaller file before staticx, dist/multiplane;
 g) peak memory (max RSS) of one meta ADD with one extra network, exec'd directly by a
    wrapper that reads its children's ru_maxrss;
 h) where the time goes: `-X importtime` and a cProfile of one meta ADD (Python entry point),
    and the kernel's own cost of creating and deleting a macvlan.

Scenarios of a section are interleaved round by round, so a burst of background load hits
all of them alike. Every namespace, link and directory is named mp-*; addresses are 10.x;
everything is removed at the end, after a failure too (the bridge included), and
net.ipv4.ip_forward is put back as it was.
"""

from __future__ import annotations

import collections
import io
import json
import os
import platform
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.integration.meta_helpers import IP_FORWARD, MetaNode, macvlan_conf  # noqa: E402
from tests.topology import Topology, ip, ip_json  # noqa: E402

N = max(1, int(os.environ.get("BENCH_RUNS", "30")))
WARMUP = 2
PY_BIN = Path(sys.executable).parent  # the venv's console scripts: the Python entry point
DIST = ROOT / "dist" / "multiplane"
FROZEN = ROOT / "build" / "pyinstaller" / "dist" / "multiplane"  # PyInstaller's file before staticx
REF = Path("/usr/lib/cni")
DRIVER_SRC = ROOT / "tests" / "cnidriver" / "main.go"
DOC = ROOT / "docs" / "benchmarks.md"
NAMES = ("multiplane", "multiplane-macvlan", "multiplane-host-local")
SYS_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
POD_NAMESPACE, POD_NAME = "mp-app", "mp-web"
POD_ARGS = f"IgnoreUnknown=1;K8S_POD_NAMESPACE={POD_NAMESPACE};K8S_POD_NAME={POD_NAME}"
SECONDARY = [f"mp-net{i}" for i in range(1, 5)]
KNOWN = {"go_add": 10.7, "go_del": 19.6, "multus_add": 40.0, "multus_del": 68.0}


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


def cni_env(command: str, **more: str) -> dict[str, str]:
    """A runtime's environment for one plugin: PATH and CNI_*, nothing else (no TMPDIR, as kubelet's runtimes)."""
    env = {"PATH": SYS_PATH, "CNI_COMMAND": command}
    env.update({f"CNI_{k.upper()}": v for k, v in more.items()})
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


# ----------------------------------------------------------------------------- runtime operations


class Call:
    """One driver invocation: `cnidriver add|del <net> <pod netns>` with this NETCONFPATH, CNI_PATH and ifname."""

    def __init__(self, net: str, netconf: Path, cni_path: str, ifname: str = "eth0", args: str = POD_ARGS) -> None:
        self.net, self.netconf, self.cni_path, self.ifname, self.args = net, netconf, cni_path, ifname, args


class Scenario:
    """A pod's networking as a runtime does it: ADD = the calls in order, DEL = in reverse; times summed."""

    def __init__(self, key: str, label: str, calls: list[Call], expect: list[str]) -> None:
        self.key, self.label, self.calls, self.expect = key, label, calls, sorted(["lo", *expect])
        self.add: list[float] = []
        self.dele: list[float] = []

    @property
    def result(self) -> dict[str, tuple[float, float]]:
        return {"ADD": stats(self.add), "DEL": stats(self.dele)}


class Runtime:
    def __init__(self, driver: str, cache: Path, pod: str) -> None:
        self.driver, self.cache, self.pod = driver, str(cache), pod
        self.netns = f"/var/run/netns/{pod}"

    def drive(self, command: str, call: Call, cid: str) -> float:
        env = {
            "PATH": SYS_PATH,
            "NETCONFPATH": str(call.netconf),
            "CNI_PATH": call.cni_path,
            "CNI_ARGS": call.args,
            "CNI_CACHE_DIR": self.cache,
            "CNI_CONTAINERID": cid,
            "CNI_IFNAME": call.ifname,
        }
        elapsed, proc = timed([self.driver, command, call.net, self.netns], env)
        checked(f"cnidriver {command} {call.net} (CNI_PATH {call.cni_path})", proc)
        return elapsed

    def measure(self, scenarios: list[Scenario], rounds: int = N) -> None:
        """ADD then DEL of each scenario per round, the order rotated each round; the first round checks the pod."""
        for i in range(WARMUP + rounds):
            shift = i % len(scenarios)
            for s in scenarios[shift:] + scenarios[:shift]:
                cid = f"mp-{s.key}-{i}"
                t_add = sum(self.drive("add", c, cid) for c in s.calls)
                if i == 0 and pod_links(self.pod) != s.expect:
                    raise BenchError(f"{s.label}: pod has {pod_links(self.pod)} after ADD, expected {s.expect}")
                t_del = sum(self.drive("del", c, cid) for c in reversed(s.calls))
                if i == 0 and pod_links(self.pod) != ["lo"]:
                    raise BenchError(f"{s.label}: pod has {pod_links(self.pod)} after DEL")
                if i >= WARMUP:
                    s.add.append(t_add)
                    s.dele.append(t_del)


def conflist(name: str, plugin: dict[str, Any]) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": name, "plugins": [plugin]}


def write_json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


# ----------------------------------------------------------------------------- direct execs


def host_local(bins: dict[str, str], tmp: Path) -> dict[str, dict[str, tuple[float, float]]]:
    """ADD xN, DEL xN, VERSION xN for each host-local, interleaved; /16 pool, data dir on local disk."""
    samples: dict[str, dict[str, list[float]]] = {k: {"ADD": [], "DEL": [], "VERSION": []} for k in bins}
    confs = {
        k: json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "mp-bench-hl",
                "type": "host-local",
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(tmp / f"hl-{k}"),
                    "ranges": [[{"subnet": "10.99.0.0/16"}]],
                },
            }
        ).encode()
        for k in bins
    }
    for command in ("ADD", "DEL", "VERSION"):
        for i in range(WARMUP + N):
            for k, binary in bins.items():
                if command == "VERSION":
                    env, stdin = cni_env("VERSION"), b'{"cniVersion":"1.0.0"}'
                else:
                    env = cni_env(
                        command, containerid=f"mp-hl-{i}", netns="/var/run/netns/mp-none", ifname="eth0", path=str(REF)
                    )
                    stdin = confs[k]
                elapsed, proc = timed([binary], env, stdin)
                checked(f"{binary} {command}", proc)
                if i >= WARMUP:
                    samples[k][command].append(elapsed)
    return {k: {c: stats(v) for c, v in per.items()} for k, per in samples.items()}


def startup(rows: dict[str, list[str]]) -> dict[str, tuple[float, float]]:
    """VERSION (or `-c pass`) of each argv, interleaved."""
    samples: dict[str, list[float]] = {k: [] for k in rows}
    for i in range(WARMUP + N):
        for k, argv in rows.items():
            elapsed, proc = timed(argv, cni_env("VERSION"), b'{"cniVersion":"1.0.0"}')
            checked(f"{argv} VERSION", proc)
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


# ----------------------------------------------------------------------------- analysis helpers


def import_table(stderr: str) -> tuple[list[tuple[str, float, float]], dict[str, float], float]:
    """`-X importtime` lines: (module, self ms, cumulative ms) rows, self ms per top-level package, total ms."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line[len("import time:") :].split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue
        rows.append((parts[2].strip(), int(parts[0]) / 1000, int(parts[1]) / 1000))
    per_package: dict[str, float] = collections.defaultdict(float)
    for name, self_ms, _ in rows:
        per_package[name.split(".")[0]] += self_ms
    return rows, dict(per_package), sum(r[1] for r in rows)


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


def _in_group(func: tuple[str, int, str], markers: tuple[str, ...]) -> bool:
    return func[2] != "<module>" and any(m in func[0] for m in markers)


def profile_table(path: str, top: int = 15) -> dict[str, Any]:
    """Top functions by cumulative time (import machinery left out), and time per phase of the ADD.

    A phase's time is the cumulative time of its functions when called from outside the
    phase (so nested calls count once); imports made lazily inside a phase count there too.
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
    phases = [("imports (every module, the lazy ones included)", imports)]
    for label, markers in PHASES:
        spent = 0.0
        for func, (*_stat, callers) in table.items():
            if _in_group(func, markers):
                spent += sum(c[3] for caller, c in callers.items() if not _in_group(caller, markers))
        phases.append((label, spent * 1000))
    return {"rows": rows[:top], "total": st.total_tt * 1000, "phases": phases}  # type: ignore[attr-defined]


def archive_facts() -> dict[str, str]:
    """What one start unpacks: staticx's archive (ELF section) and PyInstaller's binaries and data."""
    facts: dict[str, str] = {}
    try:
        from elftools.elf.elffile import ELFFile

        with open(DIST, "rb") as fh:
            section = next(s for s in ELFFile(fh).iter_sections() if s.name == ".staticx.archive")
            data = section.data()
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
        facts["staticx"] = f"{len(members)} files, {sum(m.size for m in members) / 2**20:.1f} MiB"
    except Exception as exc:  # the numbers are context, not the benchmark
        facts["staticx"] = f"unknown ({exc.__class__.__name__})"
    try:
        from PyInstaller.archive.readers import CArchiveReader

        toc = CArchiveReader(str(FROZEN)).toc
        unpacked = [e for e in toc.values() if e[-1] in ("b", "x", "d", "Z")]
        facts["pyinstaller"] = f"{len(unpacked)} files, {sum(e[2] for e in unpacked) / 2**20:.1f} MiB"
        largest = sorted(((e[2], n) for n, e in toc.items() if e[-1] in ("b", "x")), reverse=True)[:3]
        facts["pyinstaller_largest"] = ", ".join(f"{n} {s / 2**20:.1f} MiB" for s, n in largest)
    except Exception as exc:
        facts["pyinstaller"] = f"unknown ({exc.__class__.__name__})"
        facts["pyinstaller_largest"] = "unknown"
    return facts


def machine() -> dict[str, str]:
    def dpkg(pkg: str) -> str:
        proc = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True, check=False)
        return proc.stdout.strip() or "?"

    model = "?"
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    size = DIST.stat().st_size
    return {
        "cpus": f"{os.cpu_count()} × {model}",
        "kernel": platform.release(),
        "debian": Path("/etc/debian_version").read_text().strip(),
        "python": f"{platform.python_version()} (the project virtualenv on Debian's /usr/bin/python3; dist/multiplane embeds the same interpreter)",
        "binary": f"dist/multiplane {size:,} bytes ({size / 2**20:.1f} MiB)",
        "plugins": dpkg("containernetworking-plugins"),
        "libcni": dpkg("golang-github-appc-cni-dev"),
        "go": dpkg("golang-go"),
        "load": Path("/proc/loadavg").read_text().split()[0],
    }


# ----------------------------------------------------------------------------- the run


def run(tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    print(f"building the libcni driver ({DRIVER_SRC.relative_to(ROOT)}) ...", flush=True)
    driver = build_driver(tmp / "mp-go")
    bin_dist = link_dir(tmp / "mp-bin-dist", DIST)
    bin_py = link_dir(tmp / "mp-bin-py", None)
    bin_frozen = link_dir(tmp / "mp-bin-frozen", FROZEN) if FROZEN.exists() else None
    path_dist, path_py, path_ref = f"{bin_dist}:{REF}", f"{bin_py}:{REF}", str(REF)

    topo = Topology(tmp / "mp-topo", pods=1)
    node: MetaNode | None = None
    kernel_link = f"mp-k{topo.tag}"
    try:
        pod = topo.pods[0]
        rt = Runtime(driver, tmp / "mp-cache", pod)

        # a) b): one macvlan + host-local attachment
        print(f"macvlan + host-local through the driver, {N} runs each ...", flush=True)
        mv = []
        for key, label, ptype, cni_path in (
            ("go", "Go macvlan + host-local", "macvlan", path_ref),
            ("dist", "multiplane-macvlan (dist/multiplane)", "multiplane-macvlan", path_dist),
            ("py", "multiplane-macvlan (Python entry point)", "multiplane-macvlan", path_py),
        ):
            netd = tmp / f"mp-netd-mv-{key}"
            write_json(
                netd / "10-mv.conflist",
                conflist(
                    "mp-mv", macvlan_conf("mp-mv", topo.master, "10.70.0.0/24", str(tmp / f"mp-ipam-mv-{key}"), ptype)
                ),
            )
            mv.append(Scenario(f"mv-{key}", label, [Call("mp-mv", netd, cni_path)], ["eth0"]))
        rt.measure(mv)
        out["mv"] = mv

        # c) d): a pod with the cluster network and 1 or 4 secondary networks
        node = MetaNode(tmp / "mp-node", driver, bin_dist)
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
        meta = []
        for k in (1, 4):
            nets = SECONDARY[:k]
            ifs = ["eth0", *[f"net{j}" for j in range(1, k + 1)]]
            args = f"{POD_ARGS};MULTIPLANE_NETWORKS={','.join(nets)}"
            ref_calls = [Call("mp-cluster", ref_netd, path_ref)] + [
                Call(n, ref_netd, path_ref, ifname=f"net{j}") for j, n in enumerate(nets, 1)
            ]
            meta.append(Scenario(f"go{k}", f"Go bridge + {k} × macvlan, one driver call each", ref_calls, ifs))
            meta.append(
                Scenario(
                    f"meta{k}",
                    f"multiplane + {k} (dist/multiplane)",
                    [Call("mp-multi", node.net_d, path_dist, args=args)],
                    ifs,
                )
            )
            if k == 1:
                meta.append(
                    Scenario(
                        f"metapy{k}",
                        f"multiplane + {k} (Python entry point)",
                        [Call("mp-multi", node.net_d, path_py, args=args)],
                        ifs,
                    )
                )
        print(f"meta-plugin pods (cluster + 1, cluster + 4) through the driver, {N} runs each ...", flush=True)
        rt.measure(meta)
        out["meta"] = meta

        # e) host-local alone
        print(f"host-local alone, {N} runs each ...", flush=True)
        out["hl"] = host_local(
            {
                "go": str(REF / "host-local"),
                "dist": str(bin_dist / "multiplane-host-local"),
                "py": str(bin_py / "multiplane-host-local"),
            },
            tmp,
        )

        # f) start-up
        print(f"process start-up, {N} runs each ...", flush=True)
        rows = {
            "go": [str(REF / "host-local")],
            "interp": [sys.executable, "-c", "pass"],
            "py": [str(bin_py / "multiplane")],
        }
        if bin_frozen is not None:
            rows["frozen"] = [str(bin_frozen / "multiplane")]
        rows["dist"] = [str(bin_dist / "multiplane")]
        out["start"] = startup(rows)

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
        out["kernel"] = {"show": stats(kshow[WARMUP:]), "add": stats(kadd[WARMUP:]), "del": stats(kdel[WARMUP:])}

        # g) peak memory; h) importtime and profile: the meta-plugin exec'd directly, as libcni would
        print("peak memory, import times and a profile of one meta ADD ...", flush=True)
        plugin = json.loads((node.net_d / "00-multiplane.conflist").read_text())["plugins"][0]
        meta_conf = json.dumps({"cniVersion": "1.0.0", "name": "mp-multi", **plugin}).encode()
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

        rss: dict[str, list[int]] = {"dist": [], "py": [], "bridge": [], "macvlan": []}
        for i in range(5):
            for key, argv, cni_path in (
                ("dist", [str(bin_dist / "multiplane")], path_dist),
                ("py", [str(bin_py / "multiplane")], path_py),
            ):
                cid = f"mp-rss-{key}-{i}"
                rss[key].append(max_rss(argv, meta_env("ADD", cid, cni_path), meta_conf))
                direct_del(argv, cid, cni_path, meta_conf)
            cid = f"mp-rss-go-{i}"
            rss["bridge"].append(max_rss([str(REF / "bridge")], meta_env("ADD", cid, path_ref), ref_conf["bridge"]))
            env = meta_env("ADD", cid, path_ref, CNI_IFNAME="net1")
            rss["macvlan"].append(max_rss([str(REF / "macvlan")], env, ref_conf["macvlan"]))
            _, proc = timed(
                [str(REF / "macvlan")], {**meta_env("DEL", cid, path_ref), "CNI_IFNAME": "net1"}, ref_conf["macvlan"]
            )
            checked("macvlan DEL", proc)
            direct_del([str(REF / "bridge")], cid, path_ref, ref_conf["bridge"])
        out["rss"] = {k: (int(statistics.median(v)), max(v)) for k, v in rss.items()}

        py_meta = [str(bin_py / "multiplane")]
        _, proc = timed(py_meta, meta_env("ADD", "mp-imp", path_py, PYTHONPROFILEIMPORTTIME="1"), meta_conf)
        checked("meta ADD with -X importtime", proc)
        out["imports"] = import_table(proc.stderr.decode(errors="replace"))
        direct_del(py_meta, "mp-imp", path_py, meta_conf)

        prof = tmp / "mp-meta-add.prof"
        argv = [sys.executable, "-m", "cProfile", "-o", str(prof), str(bin_py / "multiplane")]
        wall, proc = timed(argv, meta_env("ADD", "mp-prof", path_py), meta_conf)
        checked("meta ADD under cProfile", proc)
        if not json.loads(proc.stdout).get("interfaces"):
            raise BenchError(f"profiled ADD returned no result: {proc.stdout!r}")
        out["profile"] = {**profile_table(str(prof)), "wall": wall}
        direct_del(py_meta, "mp-prof", path_py, meta_conf)
    finally:
        ip("link", "del", kernel_link, check=False)
        if node is not None:
            node.close()
        topo.close()
    return out


# ----------------------------------------------------------------------------- the report


def report(out: dict[str, Any], mach: dict[str, str], facts: dict[str, str], seconds: float) -> str:
    mv = {s.key: s.result for s in out["mv"]}
    meta = {s.key: s.result for s in out["meta"]}
    labels = {s.key: s.label for s in out["mv"] + out["meta"]}
    hl, start, kern, rss = out["hl"], out["start"], out["kernel"], out["rss"]
    imp_rows, imp_pkg, imp_total = out["imports"]
    prof = out["profile"]
    prof_rows, prof_total, prof_wall = prof["rows"], prof["total"], prof["wall"]
    cumulative = {n: c for n, _s, c in imp_rows}

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
    mv_table = "\n".join(head + pair_rows(mv, "mv-go", ["mv-go", "mv-dist", "mv-py"]))
    meta_table = "\n".join(
        head + pair_rows(meta, "go1", ["go1", "meta1", "metapy1"]) + pair_rows(meta, "go4", ["go4", "meta4"])
    )
    m1 = meta["meta1"]
    multus = (
        f"| Multus thin + 1 (known figure, with an API server) | ≈ {KNOWN['multus_add']:.0f} | ≈ {KNOWN['multus_del']:.0f} | "
        f"multiplane + 1 is {m1['ADD'][0] / KNOWN['multus_add']:.1f}x | {m1['DEL'][0] / KNOWN['multus_del']:.1f}x |"
    )
    meta_table += "\n" + multus

    hl_names = {"go": "Go host-local", "dist": "dist/multiplane-host-local", "py": "Python entry point"}
    hl_lines = [
        "| operation | "
        + " | ".join(f"{hl_names[k]} median / p90 (ms)" for k in hl_names)
        + " | dist / Go | Python / Go |"
    ]
    hl_lines.append("|---|---|---|---|---|---|")
    for op in ("ADD", "DEL", "VERSION"):
        g, d, p = hl["go"][op], hl["dist"][op], hl["py"][op]
        hl_lines.append(f"| {op} | {fmt(g)} | {fmt(d)} | {fmt(p)} | {ratio(d, g)} | {ratio(p, g)} |")

    start_names = {
        "go": "Go host-local VERSION",
        "interp": "the interpreter alone (`python -c pass`)",
        "py": "Python entry point `multiplane` VERSION",
        "frozen": "PyInstaller onefile, before staticx, VERSION",
        "dist": "dist/multiplane VERSION",
    }
    st_lines = ["| process | median / p90 (ms) | / Go |", "|---|---|---|"]
    for k in start_names:
        if k in start:
            st_lines.append(f"| {start_names[k]} | {fmt(start[k])} | {ratio(start[k], start['go'])} |")

    g = start["go"][0]
    interp, py, dist = start["interp"][0], start["py"][0], start["dist"][0]
    frozen = start.get("frozen", (None, None))[0]
    if frozen is not None:
        layers = [
            ("staticx: unpack its archive to /var, load through its own ld.so", dist - frozen),
            (
                "PyInstaller: unpack libpython and friends to /var/lib/cni/multiplane/run, bootloader, frozen importer",
                frozen - py,
            ),
        ]
    else:
        layers = [("staticx + PyInstaller unpacking (the PyInstaller-only file was not found)", dist - py)]
    layers += [
        ("interpreter start-up (`python -c pass`)", interp),
        ("our imports and the VERSION answer (entry point − bare interpreter)", py - interp),
    ]
    layer_lines = ["| layer | ms (difference of medians) |", "|---|---|"] + [f"| {w} | {v:.1f} |" for w, v in layers]
    meta_work = meta["metapy1"]["ADD"][0] - py
    bridge_go = meta["go1"]["ADD"][0]

    pkg_lines = ["| package | self ms |", "|---|---|"] + [
        f"| `{p}` | {ms:.1f} |" for p, ms in sorted(imp_pkg.items(), key=lambda kv: kv[1], reverse=True)[:8]
    ]
    imp_lines = ["| module | self ms | cumulative ms |", "|---|---|---|"] + [
        f"| `{n}` | {s:.1f} | {c:.1f} |" for n, s, c in sorted(imp_rows, key=lambda r: r[2], reverse=True)[:15]
    ]
    phase_lines = ["| phase of the ADD | ms under cProfile |", "|---|---|"] + [
        f"| {w} | {v:.1f} |" for w, v in prof["phases"]
    ]
    notes = []
    if "multiplane.k8s.client" in cumulative:
        notes.append(
            f"* `multiplane.k8s.client` is imported although this node reads local files (the local pod"
            f" and NAD lookups import it for its `NotFound` exception): {cumulative['multiplane.k8s.client']:.0f} ms cumulative, as it"
            " pulls in `http.client`, `email` and `ssl`."
        )
    if "yaml" in cumulative:
        notes.append(f"* `yaml` (the local NAD manifests): {cumulative['yaml']:.0f} ms cumulative.")
    if "pyroute2" in imp_pkg:
        notes.append(
            f"* pyroute2's netlink message classes (never the whole package): {imp_pkg['pyroute2']:.0f} ms of own import time."
        )
    prof_lines = ["| function | calls | own ms | cumulative ms |", "|---|---|---|---|"] + [
        f"| `{n}` | {nc} | {tt:.1f} | {ct:.1f} |" for n, nc, tt, ct in prof_rows
    ]
    rss_lines = [
        "| process tree | max RSS median (max) over 5 ADDs, MiB |",
        "|---|---|",
        f"| multiplane + 1, dist/multiplane | {rss['dist'][0] / 1024:.1f} ({rss['dist'][1] / 1024:.1f}) |",
        f"| multiplane + 1, Python entry point | {rss['py'][0] / 1024:.1f} ({rss['py'][1] / 1024:.1f}) |",
        f"| Go bridge ADD (cluster network) | {rss['bridge'][0] / 1024:.1f} ({rss['bridge'][1] / 1024:.1f}) |",
        f"| Go macvlan ADD (+ its host-local) | {rss['macvlan'][0] / 1024:.1f} ({rss['macvlan'][1] / 1024:.1f}) |",
    ]

    summary = [
        "| pair | ADD ours / Go | DEL ours / Go |",
        "|---|---|---|",
        f"| one macvlan attachment: dist/multiplane vs Go macvlan + host-local | {ratio(mv['mv-dist']['ADD'], mv['mv-go']['ADD'])} | {ratio(mv['mv-dist']['DEL'], mv['mv-go']['DEL'])} |",
        f"| pod + 1 network: multiplane (dist) vs Go plugins one after another | {ratio(meta['meta1']['ADD'], meta['go1']['ADD'])} | {ratio(meta['meta1']['DEL'], meta['go1']['DEL'])} |",
        f"| pod + 4 networks: multiplane (dist) vs Go plugins one after another | {ratio(meta['meta4']['ADD'], meta['go4']['ADD'])} | {ratio(meta['meta4']['DEL'], meta['go4']['DEL'])} |",
        f"| pod + 1 network: multiplane (dist) vs Multus thin (known figure) | {m1['ADD'][0] / KNOWN['multus_add']:.1f}x | {m1['DEL'][0] / KNOWN['multus_del']:.1f}x |",
        f"| host-local ADD / DEL: dist vs Go | {ratio(hl['dist']['ADD'], hl['go']['ADD'])} | {ratio(hl['dist']['DEL'], hl['go']['DEL'])} |",
        f"| start-up (VERSION): dist vs Go host-local | {ratio(start['dist'], start['go'])} | – |",
    ]

    return f"""# Benchmarks

Produced by `make bench` (`tests/bench/bench.py`, as root, {seconds:.0f} s for the whole run); the numbers are
from the last run. Each latency sample is one real runtime operation: a fresh process tree
started by the libcni runtime driver `tests/cnidriver` (Debian's libcni {mach["libcni"]}), or, for
host-local and start-up, the plugin exec'd directly with `CNI_*` in the environment and the
config on stdin, as a runtime does. No `TMPDIR` is set, as under kubelet's runtimes, so the
static binary unpacks into /var. {N} samples per row after {WARMUP} warm-up rounds; the rows of
a table were measured interleaved (round by round), so background load hits them alike.
The reference Go binaries are Debian's containernetworking-plugins {mach["plugins"]}.

Machine: {mach["cpus"]}; kernel {mach["kernel"]}; Debian {mach["debian"]}; Python {mach["python"]};
Go {mach["go"]}; {mach["binary"]}; load average at start {mach["load"]}.

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

multiplane: one driver call; it execs Debian's bridge for `eth0` and runs the macvlan
networks (`net1`…) in-process, selected by `MULTIPLANE_NETWORKS` from local NAD files, and
writes its delegate cache and network-status file. Go: what a node without a meta-plugin
pays, the bridge conflist and then one reference macvlan conflist per network, each a
separate driver call into the same pod (DEL in reverse), summed per pod.

{meta_table}

## 3. host-local alone (exec'd directly; one range, /16 pool, data dir on local disk)

{chr(10).join(hl_lines)}

## 4. Process start-up

{chr(10).join(st_lines)}

What one start of dist/multiplane unpacks: staticx's archive, {facts["staticx"]} (the
PyInstaller file plus the C libraries); then PyInstaller's binaries and data, {facts["pyinstaller"]}
(largest: {facts["pyinstaller_largest"]}). Both are written, used once and deleted on every call.

## 5. Peak memory of one ADD

Measured by a wrapper that execs the plugin directly (env + stdin, as libcni would) and
reads `getrusage(RUSAGE_CHILDREN).ru_maxrss`: the largest single process of the tree (for
dist/multiplane that is the Python process under the staticx loader and the PyInstaller
bootloader, which add a few MiB of their own processes; the Go bridge it execs for
`eth0` peaks at about {rss["bridge"][0] / 1024:.0f} MiB).

{chr(10).join(rss_lines)}

## 6. Where the time goes

Start-up of dist/multiplane, layer by layer (differences of the medians in section 4):

{chr(10).join(layer_lines)}

In plain words: a Go plugin is one static executable the kernel maps and runs, about
{g:.0f} ms to answer VERSION. Our file is a staticx bundle: its loader first copies its archive
({facts["staticx"]}) into a fresh directory under /var and starts the real program through
the bundled ld.so; that program is PyInstaller's bootloader, which again writes libpython,
libcrypto and the extension modules ({facts["pyinstaller"]}) into a fresh directory, starts
a second process with the embedded interpreter, imports our code from its archive, and
deletes everything on exit. Only then does the CNI work start. The interpreter itself costs
about {interp:.0f} ms and our imports for VERSION about {max(py - interp, 0):.0f} ms; {dist - py:.0f} ms of the {dist:.0f} ms
start-up ({100 * (dist - py) / dist:.0f}%) is the two unpacking layers, paid again by every ADD, DEL and CHECK.

Beyond start-up, a meta ADD with one network (Python entry point) spends about
{meta_work:.0f} ms: importing the meta-plugin and pyroute2's netlink message classes, reading
the config and the NAD, exec'ing Debian's bridge (the whole Go bridge + macvlan pod costs
{bridge_go:.0f} ms through the driver), the netlink work in the pod namespace for the
macvlan (create in the root namespace, move, rename, address, routes, up), host-local's
flock and fsync'ed writes, and the fsync'ed delegate cache and status files. DEL is
dominated by the same start-up plus the kernel: `ip link del` of one macvlan takes
{kern["del"][0]:.1f} ms (median; `ip link add` {kern["add"][0]:.1f} ms, `ip link show lo` {kern["show"][0]:.1f} ms, so ip's
own start is included), for Go and for us alike, once per macvlan network (a pod with
4 networks pays it 4 times, one after another), and the pod's veth on the bridge is torn
down the same way.

### Imports of one meta ADD (`-X importtime`, Python entry point)

Total import time {imp_total:.0f} ms (sum of self times). By top-level package:

{chr(10).join(pkg_lines)}

{chr(10).join(notes)}

The 15 most expensive imports by cumulative time (nested entries are included in their parents):

{chr(10).join(imp_lines)}

### Profile of one meta ADD (cProfile, Python entry point, top 15 by cumulative time)

{prof_total:.0f} ms of profiled time in a {prof_wall:.0f} ms run (cProfile slows Python code down; the
exec'd bridge and the kernel count as time spent waiting in the calling function). By phase
(a phase's functions when called from outside it; lazy imports inside a phase count there
and under imports):

{chr(10).join(phase_lines)}

Top 15 functions by cumulative time (the import machinery's own frames are left out; their
total is the imports row above):

{chr(10).join(prof_lines)}
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
    began = time.monotonic()
    forward = Path(IP_FORWARD).read_text()
    mach = machine()
    facts = archive_facts()
    tmp = Path(tempfile.mkdtemp(prefix="mp-bench-"))
    try:
        out = run(tmp)
    finally:
        for _ in range(5):  # a plugin orphaned by a killed driver may still be writing
            shutil.rmtree(tmp, ignore_errors=True)
            if not tmp.exists():
                break
            time.sleep(0.5)
        if Path(IP_FORWARD).read_text() != forward:
            Path(IP_FORWARD).write_text(forward)
    seconds = time.monotonic() - began
    body = report(out, mach, facts, seconds)
    DOC.write_text(body, encoding="utf-8")
    print(body)
    print(f"wrote {DOC.relative_to(ROOT)} in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
