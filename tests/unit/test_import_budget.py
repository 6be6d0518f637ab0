"""Import budgets of the per-call front doors (VERSION's is in test_version_path.py).

Each call runs in a fresh interpreter with `-S` and PYTHONPATH=src, as the runtime tree runs
it (no `site`, whose own imports would hide ours), and reports `sys.modules` at exit.
Speed itself is measured by `make bench`; these budgets say what a call may load.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
# Never on a CNI call: the operator tools' pydantic, pyroute2's heavy parts, asyncio, a YAML
# parser or an HTTP stack where the call has no use for them.
NEVER = {"pydantic", "multiplane.tools", "asyncio", "pyroute2.iproute", "pyroute2.ndb", "pyroute2.ipdb", "ctypes"}
# ...nor the etcd client and its HTTP stack (cluster-wide IPAM's store, only when a block is claimed).
NEVER |= {"etcd3gw", "requests", "urllib3", "multiplane.ipam.cluster"}


def modules_after(personality: str, env: dict[str, str], stdin: bytes) -> set[str]:
    """The modules loaded by one call (which must succeed)."""
    return call(personality, env, stdin)[0]


def call(personality: str, env: dict[str, str], stdin: bytes) -> tuple[set[str], bytes]:
    """(modules loaded, stdout) of one successful call in a fresh `-S` interpreter."""
    code = (
        "import os, sys\n"
        "from multiplane.cli import main\n"
        f"status = main([{personality!r}])\n"
        "os.write(2, ('\\nMODULES ' + ','.join(sorted(sys.modules)) + '\\n').encode())\n"
        "sys.exit(status)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-S", "-c", code],
        input=stdin,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(SRC), **env},
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = [ln for ln in proc.stderr.decode().splitlines() if ln.startswith("MODULES ")][0]
    return set(line.removeprefix("MODULES ").split(",")), proc.stdout


def _top(modules: set[str]) -> set[str]:
    return {m for m in modules if any(m == n or m.startswith(n + ".") for n in NEVER)}


def test_host_local_add_budget(tmp_path: Path) -> None:
    """A host-local ADD loads no pyroute2, YAML, HTTP/TLS stack, logging, typing or pydantic; these multiplane modules only."""
    conf = {
        "cniVersion": "1.0.0",
        "name": "mp-budget",
        "type": "x",
        "ipam": {"type": "host-local", "dataDir": str(tmp_path / "mp-data"), "subnet": "10.40.0.0/24"},
    }
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "mp-c1", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0", "CNI_PATH": "/x"}
    loaded = modules_after("multiplane-host-local", env, json.dumps(conf).encode())
    assert _top(loaded) == set()
    heavy = {"pyroute2", "yaml", "http.client", "ssl", "email", "logging", "typing", "dataclasses", "inspect"}
    assert sorted(loaded & heavy) == []
    ours = sorted(m for m in loaded if m.startswith("multiplane"))
    assert ours == [
        "multiplane",
        "multiplane._record",
        "multiplane.cli",
        "multiplane.client",
        "multiplane.errors",
        "multiplane.frontdoor",
        "multiplane.fsutil",  # flock_within: the one bounded lock wait (os only)
        "multiplane.invoke",
        "multiplane.ipam",
        "multiplane.ipam.allocator",
        "multiplane.ipam.config",
        "multiplane.ipam.disk",
        "multiplane.ipam.ranges",
        "multiplane.plugins",
        "multiplane.plugins.host_local",
        "multiplane.skel",
        "multiplane.spec",
        "multiplane.spec.args",
        "multiplane.spec.gojson",
        "multiplane.spec.netconf",
        "multiplane.spec.result",
        "multiplane.spec.version",
        "multiplane.wire",
    ]


def local_meta_conf(tmp_path: Path) -> dict[str, object]:
    """The meta-plugin with local files only, its cluster network `mp-c` in tmp_path/mp-net.d."""
    return {
        "cniVersion": "1.0.0",
        "name": "mp-meta",
        "type": "multiplane",
        "clusterNetwork": "mp-c",
        "confDir": str(tmp_path / "mp-net.d"),
        "cniDir": str(tmp_path / "mp-cni"),
        "binDir": str(tmp_path),
        "localNADDir": str(tmp_path / "mp-nads"),
        "localPodDir": str(tmp_path / "mp-pods"),
        "logToStderr": False,
    }


def test_meta_del_without_cache_budget_local(tmp_path: Path) -> None:
    """The meta-plugin with local files (DEL, no cache: plan, host-local sweep) loads no HTTP/TLS stack and no pydantic."""
    (tmp_path / "mp-net.d").mkdir()
    (tmp_path / "mp-net.d" / "10-c.conf").write_text(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "mp-c",
                "type": "mp-none",
                "ipam": {"type": "host-local", "dataDir": str(tmp_path / "d"), "subnet": "10.41.0.0/24"},
            }
        )
    )
    conf = local_meta_conf(tmp_path)
    env = {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "mp-c1", "CNI_IFNAME": "eth0", "CNI_PATH": str(tmp_path)}
    loaded = modules_after("multiplane", env, json.dumps(conf).encode())
    assert _top(loaded) == set()
    assert sorted(loaded & {"http.client", "ssl", "email", "yaml", "multiplane.k8s.client"}) == []


# The daemon's packages and cluster-wide IPAM's etcd client: the runtime tree carries them
# (packaging/build_runtime.py), so a call could load them there; the calls above run without
# site-packages, where they cannot.
DAEMON_ONLY = ("prometheus_client", "multiplane.daemon", "etcd3gw", "requests", "urllib3", "multiplane.ipam.cluster")


def test_no_call_loads_the_daemon_or_prometheus_client(tmp_path: Path) -> None:
    """With the venv's packages importable, as the tree's are, host-local ADD and a meta DEL load neither."""
    import sysconfig

    path = f"{SRC}:{sysconfig.get_paths()['purelib']}"
    probe = [sys.executable, "-S", "-c", "import sys, multiplane.daemon.metrics; print(sorted(sys.modules))"]
    seen = subprocess.run(probe, env={"PYTHONPATH": path}, capture_output=True, text=True, check=True).stdout
    assert "'prometheus_client'" in seen  # the check below can see it

    host_local = {
        "cniVersion": "1.0.0",
        "name": "mp-budget",
        "type": "x",
        "ipam": {"type": "host-local", "dataDir": str(tmp_path / "mp-data"), "subnet": "10.42.0.0/24"},
    }
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "mp-c2", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0", "CNI_PATH": "/x"}
    calls = [("multiplane-host-local", env, host_local)]
    meta = local_meta_conf(tmp_path)
    (tmp_path / "mp-net.d").mkdir()
    (tmp_path / "mp-net.d" / "10-c.conf").write_text(json.dumps({**host_local, "name": "mp-c", "type": "mp-none"}))
    env = {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "mp-c2", "CNI_IFNAME": "eth0", "CNI_PATH": str(tmp_path)}
    calls.append(("multiplane", env, meta))
    for personality, env, conf in calls:
        loaded = modules_after(personality, {**env, "PYTHONPATH": path}, json.dumps(conf).encode())
        assert sorted(m for m in loaded if m.startswith(DAEMON_ONLY)) == [], personality
