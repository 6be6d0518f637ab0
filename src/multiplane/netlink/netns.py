"""Network namespaces: opened (never created) and entered only inside a scope that restores.

`open_netns(path)` checks the path like the Go `ns.GetNS` (statfs magic NSFS or PROC) and
returns an fd. `entered(fd)` moves the calling thread into that namespace for the body of a
`with` block and always moves it back; sockets created inside stay bound to the namespace,
and /proc/sys/net opened inside shows the namespace's sysctls. If moving back fails the
process cannot safely continue, so it aborts instead of running on in the wrong namespace.
"""

from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager
from functools import cache

from multiplane.errors import CniError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["NetnsNotFound", "NotANetns", "entered", "open_netns", "write_sysctl"]

CLONE_NEWNET = 0x40000000
_NSFS_MAGIC = 0x6E736673
_PROC_MAGIC = 0x9FA0


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


class NetnsNotFound(CniError):
    """The netns path does not exist (DEL treats this as success)."""


class NotANetns(CniError):
    """The path exists but is not a network namespace."""


class _Statfs(ctypes.Structure):
    # struct statfs on 64-bit Linux starts with `__fsword_t f_type`; the rest is padding here.
    _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 120)]


def open_netns(path: str) -> int:
    """An O_RDONLY fd of the netns at `path`; NetnsNotFound / NotANetns with Go's texts."""
    buf = _Statfs()
    if _libc().statfs(path.encode(), ctypes.byref(buf)) != 0:
        err = ctypes.get_errno()
        text = os.strerror(err).lower()
        if err == 2:
            raise NetnsNotFound(f'failed to open netns "{path}": failed to Statfs "{path}": {text}')
        raise NotANetns(f'failed to open netns "{path}": failed to Statfs "{path}": {text}')
    if buf.f_type not in (_NSFS_MAGIC, _PROC_MAGIC):
        raise NotANetns(f'failed to open netns "{path}": unknown FS magic on "{path}": {buf.f_type:x}')
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NetnsNotFound(f'failed to open netns "{path}": {exc.strerror.lower()}') from exc
    except OSError as exc:
        raise NotANetns(f'failed to open netns "{path}": {(exc.strerror or str(exc)).lower()}') from exc


def _setns(fd: int) -> None:
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextmanager
def entered(fd: int | None) -> Iterator[None]:
    """Run the body with this thread in netns `fd` (None: stay where we are)."""
    if fd is None:
        yield
        return
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            _setns(fd)
        except OSError as exc:
            raise CniError(f"failed to enter network namespace: {exc.strerror}") from exc
        try:
            yield
        finally:
            try:
                _setns(home)
            except OSError:  # pragma: no cover - the kernel refusing our own namespace
                os.write(2, b"multiplane: cannot return to the original network namespace; aborting\n")
                os.abort()
    finally:
        os.close(home)


def write_sysctl(key: str, value: str) -> None:
    """Write /proc/sys/<key> in the netns the thread is in ("net/ipv4/conf/net1/arp_notify")."""
    with open(f"/proc/sys/{key}", "w", encoding="ascii") as fh:
        fh.write(value)


def read_sysctl(key: str) -> str:
    with open(f"/proc/sys/{key}", encoding="ascii") as fh:
        return fh.read().strip()
