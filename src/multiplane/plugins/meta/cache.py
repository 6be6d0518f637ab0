"""The per-container delegate cache `<cniDir>/<containerID>`: what ADD attached, so DEL can undo it.

Written atomically (multiplane.fsutil: temporary file, fsync, rename, mode 0600) before any
delegate runs, and again with each delegate's result once ADD succeeded. DEL and CHECK use it instead of the
cluster: it survives the pod, the NAD and the API server going away. Format (JSON):

    {"kind": "multiplaneCacheV1", "containerID": "...", "netns": "...", "ifname": "eth0",
     "pod": {"namespace": "...", "name": "...", "uid": "..."},
     "delegates": [{"name": "ns/nad", "config": "<the delegate's CNI JSON>", "ifname": "net1",
                    "master": false, "cniArgs": "IgnoreUnknown=true;...", "capArgs": {...},
                    "argsCni": {...} | null, "result": {...} | null}, ...]}
"""

from __future__ import annotations

import errno
import json
import os
import stat

from multiplane.errors import CniError
from multiplane.fsutil import write_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["KIND", "CacheUnreadable", "list_containers", "load", "path_for", "remove", "save"]

KIND = "multiplaneCacheV1"
_MAX_SIZE = 4 << 20  # a pod's plan is a few KiB; anything this large was not written by us


def path_for(cni_dir: str, container_id: str) -> str:
    return os.path.join(cni_dir, container_id)


class CacheUnreadable(CniError):
    """The cache file exists but cannot be used (unreadable, corrupt, a link, not ours): DEL rebuilds instead."""


def save(cni_dir: str, container_id: str, data: dict[str, Any]) -> None:
    """Replace the cache file so a reader sees the old or the new content, never half (mode 0600)."""
    try:
        os.makedirs(cni_dir, mode=0o700, exist_ok=True)
        write_atomic(path_for(cni_dir, container_id), json.dumps({"kind": KIND, **data}).encode())
    except OSError as exc:
        raise CniError(f"cannot write the delegate cache in {cni_dir}: {exc.strerror}") from exc


def load(cni_dir: str, container_id: str) -> dict[str, Any] | None:
    """The cache of a container, None if there is none; CacheUnreadable names a file that cannot be used.

    The file is opened without following links: a symlink planted at the cache path is not
    our cache, whatever it points to.
    """
    path = path_for(cni_dir, container_id)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        reason = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        raise CacheUnreadable(f"cannot read the delegate cache {path}: {reason}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CacheUnreadable(f"the delegate cache {path} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            raw = fh.read(_MAX_SIZE + 1)
    except OSError as exc:
        raise CacheUnreadable(f"cannot read the delegate cache {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if len(raw) > _MAX_SIZE:
        raise CacheUnreadable(f"the delegate cache {path} is larger than {_MAX_SIZE} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise CacheUnreadable(f"the delegate cache {path} is corrupt ({exc})") from exc
    if not isinstance(data, dict) or data.get("kind") != KIND or not isinstance(data.get("delegates"), list):
        raise CacheUnreadable(f"the delegate cache {path} is not a multiplane cache")
    if data.get("containerID", container_id) != container_id:
        raise CacheUnreadable(f"the delegate cache {path} belongs to container {data.get('containerID')!r}")
    return data


def remove(cni_dir: str, container_id: str) -> None:
    try:
        os.unlink(path_for(cni_dir, container_id))
    except FileNotFoundError:
        pass


def list_containers(cni_dir: str) -> list[str]:
    try:
        names = os.listdir(cni_dir)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if not n.startswith(".") and os.path.isfile(os.path.join(cni_dir, n)))
