"""host-local's on-disk store, byte-compatible with the reference plugin.

Layout of `<dataDir>/<network name>/` (shared with containernetworking/plugins host-local):

    <ip>                   one file per reserved address (e.g. `10.1.2.3`, `2001:db8::2`),
                           holding "<containerID>\\r\\n<ifname>" with no trailing newline;
                           a legacy file holds only "<containerID>"
    last_reserved_ip.<i>   the last address handed out from range set <i>, bare, no newline
    lock                   empty; every reader and writer holds flock(LOCK_EX) on it

Both implementations take the same flock, and reservations are exclusive creations, so
the Go binary and ours can allocate from one directory at once without handing out an
address twice. Unlike the reference, every write is atomic: the content is written and
fsynced in a temporary file first, then linked (reservations: link(2) fails if the name
exists) or renamed (last_reserved_ip) into place, so a crash never leaves a half-written
file. Temporary files start with `.mp-`; one left by a crash is removed under the lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager

from multiplane.errors import CniError, InvalidConfig, TryAgainLater
from multiplane.spec.gojson import IPAddress, parse_ip

__all__ = ["DiskStore", "LAST_RESERVED_PREFIX"]

LAST_RESERVED_PREFIX = "last_reserved_ip."
_TMP_PREFIX = ".mp-"
_LOCK_TIMEOUT = 30.0


def _strerror(exc: OSError) -> str:
    """The errno text as Go prints it ("no such file or directory")."""
    return (exc.strerror or str(exc)).lower()


def _mkdir_all(path: str) -> None:
    """os.MkdirAll with mode 0755: an error names the component that failed, as Go's does."""
    try:
        if stat.S_ISDIR(os.stat(path).st_mode):
            return
        raise CniError(f"mkdir {path}: not a directory")
    except OSError:
        pass
    parent = os.path.dirname(path.rstrip("/"))
    if parent and parent != path:
        _mkdir_all(parent)
    try:
        os.mkdir(path, 0o755)
    except OSError as exc:
        if os.path.isdir(path):
            return
        raise CniError(f"mkdir {path}: {_strerror(exc)}") from exc


class DiskStore:
    """Reservations of one network. Use every method inside `with store.locked():`."""

    def __init__(self, data_dir: str, network: str, lock_timeout: float = _LOCK_TIMEOUT) -> None:
        if not network or "/" in network or network in (".", ".."):
            raise InvalidConfig(f"invalid network name {network!r} for a data directory")
        self.dir = os.path.join(data_dir, network)
        self.lock_timeout = lock_timeout

    @contextmanager
    def locked(self) -> Iterator[DiskStore]:
        """Create the directory (0755) and the lock file (0750) as the reference does, then flock.

        TryAgainLater (11) if another process holds the lock longer than the timeout.
        """
        _mkdir_all(self.dir)
        try:
            fd = os.open(os.path.join(self.dir, "lock"), os.O_CREAT | os.O_RDONLY | os.O_CLOEXEC, 0o750)
        except OSError as exc:
            raise CniError(f"open {self.dir}/lock: {_strerror(exc)}") from exc
        try:
            deadline = time.monotonic() + self.lock_timeout
            pause = 0.0005
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TryAgainLater(f"timed out waiting for the lock on {self.dir}") from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.02)
            self._remove_stale_tmp()
            yield self
        finally:
            os.close(fd)  # closing releases the flock

    # ---- reading ----------------------------------------------------------------------

    def allocations(self) -> Iterator[tuple[IPAddress, str]]:
        """(address, trimmed file content) for every reservation file."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return
        for name in sorted(names):
            addr = parse_ip(name)
            if addr is None or str(addr) != name:
                continue
            try:
                with open(os.path.join(self.dir, name), "rb") as fh:
                    content = fh.read().decode("utf-8", "replace").strip()
            except (IsADirectoryError, FileNotFoundError, PermissionError):
                continue
            yield addr, content

    @staticmethod
    def owner_key(container_id: str, ifname: str) -> str:
        return f"{container_id.strip()}\r\n{ifname}"

    def find_by_owner(self, container_id: str, ifname: str) -> list[IPAddress]:
        """Addresses held by (id, ifname), or failing that legacy id-only files (release, CHECK)."""
        key, legacy = self.owner_key(container_id, ifname), container_id.strip()
        held = list(self.allocations())
        return [a for a, c in held if c == key] or [a for a, c in held if c == legacy]

    def held_by(self, container_id: str, ifname: str) -> list[IPAddress]:
        """Addresses held by (id, ifname) and legacy id-only files together (the duplicate check)."""
        owners = {self.owner_key(container_id, ifname), container_id.strip()}
        return [addr for addr, content in self.allocations() if content in owners]

    def last_reserved(self, range_id: int) -> IPAddress | None:
        """The round-robin cursor; read untrimmed like Go's net.ParseIP(content)."""
        try:
            with open(os.path.join(self.dir, f"{LAST_RESERVED_PREFIX}{range_id}"), "rb") as fh:
                text = fh.read().decode("ascii", "replace")
        except FileNotFoundError:
            return None
        except OSError as exc:
            os.write(2, f"Error retrieving last reserved ip: {exc}\n".encode())
            return None
        return parse_ip(text)

    # ---- writing ----------------------------------------------------------------------

    def _write_tmp(self, final_name: str, data: bytes) -> str:
        tmp = os.path.join(self.dir, f"{_TMP_PREFIX}{final_name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        except OSError:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        return tmp

    def reserve(self, container_id: str, ifname: str, addr: IPAddress, range_id: int) -> bool:
        """Claim `addr` for (id, ifname); False if someone holds it. Moves the cursor on success."""
        path = os.path.join(self.dir, str(addr))
        try:
            tmp = self._write_tmp(str(addr), self.owner_key(container_id, ifname).encode())
        except OSError as exc:
            raise CniError(f"open {path}: {_strerror(exc)}") from exc
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            raise CniError(f"open {path}: {_strerror(exc)}") from exc
        finally:
            os.unlink(tmp)
        cursor_path = os.path.join(self.dir, f"{LAST_RESERVED_PREFIX}{range_id}")
        try:
            cursor = self._write_tmp(f"{LAST_RESERVED_PREFIX}{range_id}", str(addr).encode())
            try:
                os.replace(cursor, cursor_path)
            except OSError:
                os.unlink(cursor)
                raise
        except OSError as exc:
            # Unlike the reference, which keeps the reservation it cannot account for, give it back.
            self.release(addr)
            raise CniError(f"open {cursor_path}: {_strerror(exc)}") from exc
        return True

    def release(self, addr: IPAddress) -> None:
        try:
            os.unlink(os.path.join(self.dir, str(addr)))
        except FileNotFoundError:
            pass

    def release_by_owner(self, container_id: str, ifname: str) -> list[IPAddress]:
        """Remove every reservation of (id, ifname) (or, failing that, of legacy id-only files)."""
        released = self.find_by_owner(container_id, ifname)
        for addr in released:
            self.release(addr)
        return released

    def _remove_stale_tmp(self) -> None:
        # We hold the lock, so no live writer owns a temporary file: it is a crash leftover.
        try:
            names = os.listdir(self.dir)
        except OSError:
            return
        for name in names:
            if name.startswith(_TMP_PREFIX):
                try:
                    os.unlink(os.path.join(self.dir, name))
                except OSError as exc:
                    if exc.errno != errno.ENOENT:
                        raise
