#!/usr/bin/env python3
"""`make bench` (root): latency of our plugins against Debian's Go binaries; writes docs/benchmarks.md.

Not a test: it measures. Each sample is one process start, as a runtime pays it.
Reported: median and p90 over N runs, and the ratio ours / Go.
* host-local alone: ADD, DEL, VERSION;
* macvlan + host-local in a real namespace on a veth master: ADD and DEL (the reference
  execs host-local as a second process; ours runs it in-process).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from tests.topology import Topology  # noqa: E402

BIN_DIR = os.path.dirname(sys.executable)
OURS = os.path.join(BIN_DIR, "multiplane-host-local")
REF = "/usr/lib/cni/host-local"
N = int(os.environ.get("BENCH_RUNS", "40"))
DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "benchmarks.md")


def _env(command: str, cid: str, netns: str = "/var/run/netns/mp-bench", path: str = "/usr/lib/cni") -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": path,
    }


def _time(argv: list[str], command: str, cid: str, stdin: bytes, **env: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, input=stdin, env=_env(command, cid, **env), capture_output=True, check=False)
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} {command} failed: {proc.stdout!r} {proc.stderr!r}")
    return elapsed


def _stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]


def measure(binary: str, data_dir: str) -> dict[str, tuple[float, float]]:
    conf = json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "mp-bench",
            "type": "macvlan",
            "ipam": {"type": "host-local", "dataDir": data_dir, "ranges": [[{"subnet": "10.99.0.0/16"}]]},
        }
    ).encode()
    adds, dels, versions = [], [], []
    for i in range(N):
        adds.append(_time([binary], "ADD", f"mp-bench-{i}", conf))
    for i in range(N):
        dels.append(_time([binary], "DEL", f"mp-bench-{i}", conf))
    for _ in range(N):
        versions.append(_time([binary], "VERSION", "", b'{"cniVersion":"1.0.0"}'))
    return {"ADD": _stats(adds), "DEL": _stats(dels), "VERSION": _stats(versions)}


def measure_macvlan(topo: Topology, binary: str, data_dir: str) -> dict[str, tuple[float, float]]:
    conf = json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "mp-bench-mv",
            "type": os.path.basename(binary),
            "master": topo.master,
            "ipam": {"type": "host-local", "dataDir": data_dir, "ranges": [[{"subnet": "10.99.0.0/16"}]]},
        }
    ).encode()
    netns = topo.netns_path(topo.pods[0])
    adds, dels = [], []
    for i in range(N):
        adds.append(_time([binary], "ADD", f"mp-bench-{i}", conf, netns=netns, path=topo.cni_path))
        dels.append(_time([binary], "DEL", f"mp-bench-{i}", conf, netns=netns, path=topo.cni_path))
    return {"ADD": _stats(adds), "DEL": _stats(dels)}


def _table(ref: dict[str, tuple[float, float]], ours: dict[str, tuple[float, float]], what: str) -> str:
    lines = [
        f"| operation | Go {what} median / p90 (ms) | multiplane median / p90 (ms) | ratio (median) |",
        "|---|---|---|---|",
    ]
    for op in ref:
        (rm, rp), (om, op90) = ref[op], ours[op]
        lines.append(f"| {op} | {rm:.1f} / {rp:.1f} | {om:.1f} / {op90:.1f} | {om / rm:.1f}x |")
    return "\n".join(lines)


def import_profile() -> str:
    """The ten most expensive imports of one ADD's code path (`python -X importtime`)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-c",
            "import multiplane.cli, multiplane.skel, multiplane.plugins.host_local",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in proc.stderr.splitlines()[1:]:
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[1].isdigit():
            rows.append((int(parts[1]), parts[2].strip()))
    top = sorted(rows, reverse=True)[:10]
    return "\n".join(f"| `{name.strip()}` | {us / 1000:.1f} |" for us, name in top)


def main() -> int:
    if os.geteuid() != 0:
        print("make bench needs root (it builds network namespaces)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="mp-bench-") as tmp:
        hl = _table(measure(REF, os.path.join(tmp, "ref")), measure(OURS, os.path.join(tmp, "ours")), "host-local")
        topo = Topology(Path(tmp), pods=1)
        try:
            mv = _table(
                measure_macvlan(topo, "/usr/lib/cni/macvlan", os.path.join(tmp, "ref-mv")),
                measure_macvlan(topo, os.path.join(BIN_DIR, "multiplane-macvlan"), os.path.join(tmp, "ours-mv")),
                "macvlan + host-local",
            )
        finally:
            topo.close()
    print(hl, mv, sep="\n\n")
    machine = f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}"
    body = f"""# Benchmarks

Produced by `make bench` (`tests/bench/bench.py`, as root); numbers from the last run.
Each sample is a fresh process, as a container runtime starts it; {N} runs per row.
The Go binaries are Debian's containernetworking-plugins 1.1.1. Ours run from the project
virtualenv (Debian's /usr/bin/python3); the single-file binary comes with a later issue.

Machine: {machine}

## host-local IPAM (one range, /16 pool, data dir on local disk)

{hl}

## macvlan + host-local (veth master, one pod namespace, ADD then DEL each round)

The reference macvlan executes the host-local binary (two process starts per ADD); ours
runs host-local inside the macvlan process (one start).

{mv}

## Where our time goes

Python start-up is about 8–10 ms. host-local loads nothing heavy (no pyroute2, no
pydantic, no dataclasses/typing at run time); its largest imports (cumulative ms,
`python -X importtime`):

| module | ms |
|---|---|
{import_profile()}

macvlan adds pyroute2's message classes (about 35 ms; the full `import pyroute2` would be
about 130 ms, see decisions/0003), one setns pair per namespace socket, and the netlink
round trips. The kernel's own cost dominates DEL: deleting a macvlan takes 10–30 ms
(RCU teardown), for both implementations. The rest of an ADD is reading the config,
taking the flock and two fsync'ed atomic writes.
"""
    with open(DOC, "w", encoding="utf-8") as fh:
        fh.write(body)
    print(f"wrote {os.path.normpath(DOC)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
