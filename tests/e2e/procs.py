"""Process and cgroup helpers shared by the e2e runtime harnesses (containerd, podman).

Leftovers are found by what the harness owns (its mount namespace, its cgroup parent),
never by process name, so a host's own containerd or podman is never touched.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

__all__ = ["alive", "cgroup_dirs", "cgroup_pids", "kill_and_wait", "ns_inode", "pids", "remove_cgroups"]

CGROUP_ROOT = "/sys/fs/cgroup"


def pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def ns_inode(pid: int, kind: str = "mnt") -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def kill_and_wait(pids: Iterable[int], timeout: float = 10) -> None:
    pids = [p for p in pids if p != os.getpid()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)


def cgroup_dirs(parent: str) -> list[Path]:
    """`parent` in every mounted cgroup hierarchy (the v1 controllers and the v2 mount), where it exists."""
    rel = parent.strip("/")
    if not rel or not os.path.isdir(CGROUP_ROOT):
        return []
    candidates = [Path(CGROUP_ROOT) / rel] + [Path(CGROUP_ROOT) / h / rel for h in sorted(os.listdir(CGROUP_ROOT))]
    return [c for c in candidates if c.is_dir() and (c / "cgroup.procs").exists()]


def cgroup_pids(parent: str) -> set[int]:
    found: set[int] = set()
    for top in cgroup_dirs(parent):
        for root, _dirs, _files in os.walk(top):
            try:
                found |= {int(x) for x in Path(root, "cgroup.procs").read_text().split()}
            except OSError:
                continue
    return found


def remove_cgroups(parent: str) -> list[str]:
    """rmdir `parent` and its children (deepest first) in every hierarchy; return what could not be removed."""
    failed = []
    for top in cgroup_dirs(parent):
        for root, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
            for _ in range(50):  # a cgroup is busy for a moment after its last task exits
                try:
                    os.rmdir(root)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                failed.append(root)
    return failed
