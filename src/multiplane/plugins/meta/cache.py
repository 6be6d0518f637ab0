"""The per-container delegate cache `<cniDir>/<containerID>`: what ADD attached, so DEL can undo it.

Written atomically (temporary file, fsync, rename) before any delegate runs, and again
with each delegate's result once ADD succeeded. DEL and CHECK use it instead of the
cluster: it survives the pod, the NAD and the API server going away. Format (JSON):

    {"kind": "multiplaneCacheV1", "containerID": "...", "netns": "...", "ifname": "eth0",
     "pod": {"namespace": "...", "name": "...", "uid": "..."},
     "delegates": [{"name": "ns/nad", "config": "<the delegate's CNI JSON>", "ifname": "net1",
                    "master": false, "cniArgs": "IgnoreUnknown=true;...", "capArgs": {...},
                    "argsCni": {...} | null, "result": {...} | null}, ...]}
"""

from __future__ import annotations

import json
import os

from multiplane.errors import CniError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["KIND", "list_containers", "load", "path_for", "remove", "save"]

KIND = "multiplaneCacheV1"


def path_for(cni_dir: str, container_id: str) -> str:
    return os.path.join(cni_dir, container_id)


def save(cni_dir: str, container_id: str, data: dict[str, Any]) -> None:
    """Replace the cache file so a reader sees the old or the new content, never half."""
    try:
        os.makedirs(cni_dir, mode=0o700, exist_ok=True)
        final = path_for(cni_dir, container_id)
        tmp = os.path.join(cni_dir, f".{container_id}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, json.dumps({"kind": KIND, **data}).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except OSError as exc:
        raise CniError(f"cannot write the delegate cache in {cni_dir}: {exc.strerror}") from exc


def load(cni_dir: str, container_id: str) -> dict[str, Any] | None:
    """The cache of a container, None if there is none; an unreadable cache is an error naming the file."""
    path = path_for(cni_dir, container_id)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CniError(f"cannot read the delegate cache {path}: {exc.strerror}") from exc
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise CniError(f"the delegate cache {path} is corrupt ({exc}); remove it after cleaning up by hand") from exc
    if not isinstance(data, dict) or data.get("kind") != KIND or not isinstance(data.get("delegates"), list):
        raise CniError(f"the delegate cache {path} is not a multiplane cache")
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
