"""Crash-safe file writes shared by the installer, the meta-plugin's cache and its status file; and a bounded flock.

A file is replaced by writing a temporary sibling (`.<name>.<pid>.tmp`, created with
O_EXCL|O_NOFOLLOW, so a planted link is never followed), fsyncing it, setting its mode
explicitly (the umask must not decide it) and renaming it over the target. rename(2)
replaces a symlink at the target rather than writing through it, and a reader or a
running program sees the old file or the new one, never half of one (multus #1087).
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "flock_within",
    "fsync_dir",
    "replace_with",
    "sweep_temporaries",
    "tmp_name",
    "unlink_quietly",
    "write_all",
    "write_atomic",
]


def fsync_dir(directory: str) -> None:
    """Make a rename in `directory` durable."""
    fd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tmp_name(path: str) -> str:
    return os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")


def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def replace_with(path: str, mode: int, fill: Callable[[int], None], durable: bool = True) -> None:
    """Write a temporary file next to `path` with `fill(fd)`, fsync it and rename it onto `path`.

    Raises OSError; the temporary file is gone whatever happens (BaseException included, so
    an interrupted call leaves nothing but the old file).
    """
    tmp = tmp_name(path)
    unlink_quietly(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        try:
            fill(fd)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        unlink_quietly(tmp)
        raise
    if durable:
        fsync_dir(os.path.dirname(path))


def write_atomic(path: str, data: bytes, mode: int = 0o600, durable: bool = True) -> None:
    """Replace `path` with `data` (see the module docstring). Raises OSError."""
    replace_with(path, mode, lambda fd: write_all(fd, data), durable)


def sweep_temporaries(directory: str, names: list[str], older_than: float) -> None:
    """Delete `.<name>.<pid>.tmp` files an interrupted writer left, once older than `older_than` seconds."""
    try:
        entries = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return
    now = time.time()
    for entry in entries:
        for name in names:
            middle = entry[len(name) + 2 : -4] if entry.startswith(f".{name}.") and entry.endswith(".tmp") else ""
            if middle.isdigit():
                path = os.path.join(directory, entry)
                try:
                    if now - os.lstat(path).st_mtime >= older_than:
                        os.unlink(path)
                except FileNotFoundError:
                    pass


def flock_within(fd: int, seconds: float) -> bool:
    """Take flock(LOCK_EX) on `fd`, polling (0.5 ms doubling to 20 ms) for up to `seconds`; False if it stayed held."""
    import fcntl

    deadline = time.monotonic() + seconds
    pause = 0.0005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
