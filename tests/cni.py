"""Run CNI plugins the way a runtime does: a fresh process, CNI_* in the environment, config on stdin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

BIN_DIR = os.path.dirname(sys.executable)
# The installed console script: dispatch happens on argv[0], exactly as for a link in /opt/cni/bin.
OURS_HOST_LOCAL = os.path.join(BIN_DIR, "multiplane-host-local")
OURS_MULTIPLANE = os.path.join(BIN_DIR, "multiplane")
REF_HOST_LOCAL = "/usr/lib/cni/host-local"

# How a call reaches the engine: variables every call made here (and by the integration suites'
# runtimes: MetaNode, the spy World) carries. Empty: none (the default socket if a daemon serves
# it, else in-process). tests/integration/conftest.py sets them per test for the front door
# under test: a socket where no daemon is (the one-shot process), or a daemon with
# MULTIPLANE_DAEMON=require.
FRONT_DOOR_ENV: dict[str, str] = {}


@dataclass
class Invocation:
    returncode: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def error(self) -> dict[str, Any]:
        """The CNI error object; fails the test if the plugin did not report one."""
        assert self.returncode != 0, f"expected failure, got success: {self.stdout}"
        obj = json.loads(self.stdout)
        assert isinstance(obj, dict) and "code" in obj and "msg" in obj, self.stdout
        return obj


def run(
    binary: str | list[str],
    command: str,
    conf: dict[str, Any] | bytes | str | None,
    *,
    container_id: str | None = "ctr1",
    netns: str | None = "/var/run/netns/mp-none",
    ifname: str | None = "eth0",
    args: str | None = None,
    path: str | None = "/usr/lib/cni",
    env: dict[str, str] | None = None,
    base_env: dict[str, str] | None = None,
    timeout: float = 60,
) -> Invocation:
    """Invoke `binary` once. A None value leaves that CNI_* variable unset.

    The environment: `base_env` (default: PATH only), FRONT_DOOR_ENV, the CNI_* values, then `env`.
    """
    full = dict(base_env if base_env is not None else {"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    full.update(FRONT_DOOR_ENV)
    for key, value in (
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", container_id),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", ifname),
        ("CNI_ARGS", args),
        ("CNI_PATH", path),
    ):
        if value is not None:
            full[key] = value
    full.update(env or {})
    if conf is None:
        stdin = b""
    elif isinstance(conf, bytes):
        stdin = conf
    elif isinstance(conf, str):
        stdin = conf.encode()
    else:
        stdin = json.dumps(conf).encode()
    argv = [binary] if isinstance(binary, str) else list(binary)
    proc = subprocess.run(argv, input=stdin, env=full, capture_output=True, timeout=timeout, check=False)
    return Invocation(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def normalise(result: Any) -> Any:
    """Compare results semantically: drop empty `dns` objects and empty collections."""
    if isinstance(result, dict):
        return {k: normalise(v) for k, v in result.items() if v not in ({}, [], None)}
    if isinstance(result, list):
        return [normalise(v) for v in result]
    return result


def snapshot(directory: str) -> dict[str, bytes]:
    """Every file under `directory` (relative path → bytes), for comparing on-disk state."""
    out: dict[str, bytes] = {}
    for root, _dirs, files in os.walk(directory):
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as fh:
                out[os.path.relpath(full, directory)] = fh.read()
    return out
