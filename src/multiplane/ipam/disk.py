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

Symbolic links inside the network directory are never followed (the reference follows
them, so a planted link redirects its writes anywhere on the node). The directory itself
is opened once with O_NOFOLLOW and every name is resolved relative to that descriptor, so
it cannot be swapped for a link midway:
* a network directory or a `lock` that is a link (or a lock that is not a regular file)
  is refused with IOFailure (5) before anything is created or written through it;
* files are opened with O_NOFOLLOW (and O_NONBLOCK, so a FIFO cannot hang us); temporary
  files are created with O_EXCL; link(2) and rename(2) never write through a link at the
  target name, so a linked `last_reserved_ip.<i>` is replaced, never written through;
* a link (or anything but a regular file) named like an address is not a reservation of
  ours: nobody can reserve that address while the name exists (`occupied()`, STATUS), but
  DEL, GC, CHECK and `release_container` neither read nor remove it; an operator does;
* a linked `last_reserved_ip.<i>` is not read: allocation starts from the range start.
The data directory above the network directories may be a link (an operator's choice).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Collection, Iterator
from contextlib import contextmanager

from multiplane.errors import CniError, InvalidConfig, IOFailure, TryAgainLater
from multiplane.fsutil import flock_within
from multiplane.spec.gojson import IPAddress, parse_ip

__all__ = ["DiskStore", "LAST_RESERVED_PREFIX", "release_container"]

LAST_RESERVED_PREFIX = "last_reserved_ip."
_TMP_PREFIX = ".mp-"
_LOCK_TIMEOUT = 30.0
# Never through a link; never block on a FIFO (O_NONBLOCK does nothing for regular files).
_O_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


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
    """Reservations of one network. Use every method inside `with store.locked():`.

    Outside `locked()` the read-only methods open the directory for the one call (STATUS).
    """

    def __init__(self, data_dir: str, network: str, lock_timeout: float = _LOCK_TIMEOUT) -> None:
        if not network or "/" in network or network in (".", ".."):
            raise InvalidConfig(f"invalid network name {network!r} for a data directory")
        self.dir = os.path.join(data_dir, network)
        self.lock_timeout = lock_timeout
        self._dfd: int | None = None  # the network directory while locked()

    def _refuse_link(self) -> None:
        if os.path.islink(self.dir):
            raise IOFailure(f"{self.dir} is a symbolic link: refusing to use it as host-local state")

    def _open_dir(self) -> int | None:
        """A descriptor of the network directory, never through a link; None if there is none."""
        try:
            return os.open(self.dir, _O_DIR)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._refuse_link()  # O_DIRECTORY|O_NOFOLLOW on a link fails with ENOTDIR
            raise CniError(f"open {self.dir}: {_strerror(exc)}") from exc

    @contextmanager
    def _directory(self) -> Iterator[int | None]:
        """The locked directory's descriptor, or one opened for this call."""
        if self._dfd is not None:
            yield self._dfd
            return
        dfd = self._open_dir()
        try:
            yield dfd
        finally:
            if dfd is not None:
                os.close(dfd)

    def _fd(self) -> int:
        if self._dfd is None:
            raise RuntimeError("DiskStore: writing needs `with store.locked():`")
        return self._dfd

    @contextmanager
    def locked(self) -> Iterator[DiskStore]:
        """Create the directory (0755) and the lock file (0750) as the reference does, then flock.

        TryAgainLater (11) if another process holds the lock longer than the timeout; IOFailure
        (5) if the directory or the lock is a symbolic link, or the lock is not a regular file.
        """
        self._refuse_link()  # first, so a link gets this error rather than MkdirAll's "file exists"
        _mkdir_all(self.dir)
        dfd = self._open_dir()
        if dfd is None:
            raise CniError(f"open {self.dir}: no such file or directory")
        try:
            fd = self._open_lock(dfd)
            try:
                if not flock_within(fd, self.lock_timeout):
                    raise TryAgainLater(f"timed out waiting for the lock on {self.dir}")
                self._dfd = dfd
                self._remove_stale_tmp()
                yield self
            finally:
                self._dfd = None
                os.close(fd)  # closing releases the flock
        finally:
            os.close(dfd)

    def _open_lock(self, dfd: int) -> int:
        path = f"{self.dir}/lock"
        try:
            fd = os.open("lock", os.O_CREAT | _O_READ, 0o750, dir_fd=dfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise IOFailure(f"{path} is a symbolic link: refusing to use it as host-local's lock") from exc
            raise CniError(f"open {path}: {_strerror(exc)}") from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise IOFailure(f"{path} is not a regular file: refusing to use it as host-local's lock")
        return fd

    # ---- reading ----------------------------------------------------------------------

    def _address_names(self, dfd: int) -> list[tuple[IPAddress, str]]:
        """Names in canonical address form, sorted; whatever kind of file they are."""
        out = []
        for name in sorted(os.listdir(dfd)):
            addr = parse_ip(name)
            if addr is not None and str(addr) == name:
                out.append((addr, name))
        return out

    def occupied(self) -> list[IPAddress]:
        """Every address whose name exists, links and other non-files included: none can be reserved."""
        with self._directory() as dfd:
            if dfd is None:
                return []
            return [addr for addr, _ in self._address_names(dfd)]

    def allocations(self) -> list[tuple[IPAddress, str]]:
        """(address, trimmed file content) for every reservation: regular files only, links not followed."""
        with self._directory() as dfd:
            if dfd is None:
                return []
            out = []
            for addr, name in self._address_names(dfd):
                data = _read_regular(name, dfd)
                if data is not None:
                    out.append((addr, data.decode("utf-8", "replace").strip()))
            return out

    @staticmethod
    def owner_key(container_id: str, ifname: str) -> str:
        return f"{container_id.strip()}\r\n{ifname}"

    def find_by_owner(self, container_id: str, ifname: str) -> list[IPAddress]:
        """Addresses held by (id, ifname), or failing that legacy id-only files (release, CHECK)."""
        key, legacy = self.owner_key(container_id, ifname), container_id.strip()
        held = self.allocations()
        return [a for a, c in held if c == key] or [a for a, c in held if c == legacy]

    def held_by(self, container_id: str, ifname: str) -> list[IPAddress]:
        """Addresses held by (id, ifname) and legacy id-only files together (the duplicate check)."""
        owners = {self.owner_key(container_id, ifname), container_id.strip()}
        return [addr for addr, content in self.allocations() if content in owners]

    def last_reserved(self, range_id: int) -> IPAddress | None:
        """The round-robin cursor; read untrimmed like Go's net.ParseIP(content). A link is not read."""
        name = f"{LAST_RESERVED_PREFIX}{range_id}"
        try:
            with self._directory() as dfd:
                if dfd is None:
                    return None
                fd = os.open(name, _O_READ, dir_fd=dfd)
            try:
                text = _read_all(fd).decode("ascii", "replace")
            finally:
                os.close(fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            reason = "a symbolic link, not followed" if exc.errno == errno.ELOOP else exc
            os.write(2, f"Error retrieving last reserved ip: {self.dir}/{name}: {reason}\n".encode())
            return None
        return parse_ip(text)

    # ---- writing ----------------------------------------------------------------------

    def _write_tmp(self, final_name: str, data: bytes) -> str:
        """A new temporary file beside `final_name`; O_EXCL|O_NOFOLLOW, so a planted name is replaced."""
        dfd = self._fd()
        tmp = f"{_TMP_PREFIX}{final_name}.{os.getpid()}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(tmp, flags, 0o600, dir_fd=dfd)
        except FileExistsError:
            os.unlink(tmp, dir_fd=dfd)  # not a live writer's: we hold the lock
            fd = os.open(tmp, flags, 0o600, dir_fd=dfd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            os.close(fd)
            os.unlink(tmp, dir_fd=dfd)
            raise
        os.close(fd)
        return tmp

    def reserve(self, container_id: str, ifname: str, addr: IPAddress, range_id: int) -> bool:
        """Claim `addr` for (id, ifname); False if the name exists. Moves the cursor on success."""
        dfd = self._fd()
        path = os.path.join(self.dir, str(addr))
        try:
            tmp = self._write_tmp(str(addr), self.owner_key(container_id, ifname).encode())
        except OSError as exc:
            raise CniError(f"open {path}: {_strerror(exc)}") from exc
        try:
            # link(2) fails with EEXIST on any existing name, a link included; it never follows one.
            os.link(tmp, str(addr), src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
        except FileExistsError:
            return False
        except OSError as exc:
            raise CniError(f"open {path}: {_strerror(exc)}") from exc
        finally:
            os.unlink(tmp, dir_fd=dfd)
        cursor_name = f"{LAST_RESERVED_PREFIX}{range_id}"
        try:
            cursor = self._write_tmp(cursor_name, str(addr).encode())
            try:
                # rename(2) replaces a link at the target instead of writing through it
                os.replace(cursor, cursor_name, src_dir_fd=dfd, dst_dir_fd=dfd)
            except OSError:
                os.unlink(cursor, dir_fd=dfd)
                raise
        except OSError as exc:
            # Unlike the reference, which keeps the reservation it cannot account for, give it back.
            self.release(addr)
            raise CniError(f"open {self.dir}/{cursor_name}: {_strerror(exc)}") from exc
        return True

    def release(self, addr: IPAddress) -> None:
        try:
            os.unlink(str(addr), dir_fd=self._fd())
        except FileNotFoundError:
            pass

    def release_by_owner(self, container_id: str, ifname: str) -> list[IPAddress]:
        """Remove every reservation of (id, ifname) (or, failing that, of legacy id-only files)."""
        released = self.find_by_owner(container_id, ifname)
        for addr in released:
            self.release(addr)
        return released

    def release_container(self, container_id: str) -> list[IPAddress]:
        """Remove every reservation of `container_id`: any ifname, and legacy id-only files."""
        cid = container_id.strip()
        released = []
        for addr, content in self.allocations():
            owner, _sep, _ifname = content.partition("\r\n")
            if owner == cid:
                self.release(addr)
                released.append(addr)
        return released

    def _remove_stale_tmp(self) -> None:
        # We hold the lock, so no live writer owns a temporary file: it is a crash leftover.
        dfd = self._fd()
        for name in os.listdir(dfd):
            if name.startswith(_TMP_PREFIX):
                try:
                    os.unlink(name, dir_fd=dfd)
                except OSError as exc:
                    if exc.errno != errno.ENOENT:
                        raise


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _read_regular(name: str, dfd: int) -> bytes | None:
    """The content of a regular file; None for a link, a FIFO, a directory, or a file that is gone."""
    try:
        fd = os.open(name, _O_READ, dir_fd=dfd)
    except OSError:
        return None  # ELOOP (a link), ENOENT (released meanwhile), EACCES: not a reservation we can read
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return _read_all(fd)
    except OSError:
        return None
    finally:
        os.close(fd)


def release_container(
    data_dir: str,
    container_id: str,
    lock_timeout: float = _LOCK_TIMEOUT,
    networks: Collection[str] | None = None,
) -> list[tuple[str, str]]:
    """Remove every host-local reservation of `container_id` in every network under `data_dir` (or in `networks`).

    For the meta-plugin's DEL when it knows neither the networks nor the interfaces (its
    cache is unreadable and the API is down). Each directory directly under `data_dir` is a
    network; links and anything that is not a directory are skipped, and a missing
    `data_dir` gives []. In each network, under `DiskStore.locked()` (the same flock the
    reference takes, creating the directory's `lock` if it is missing, as every host-local
    call does), every reservation file whose owner is `container_id` is removed: any
    ifname, and legacy files holding only the id. Owners are compared exactly, after
    trimming as host-local writes them; links are never followed nor removed. Returns the
    (network, address) pairs removed, in directory order.

    A network that fails (a link as its lock: IOFailure; a lock held too long:
    TryAgainLater) does not stop the others; after all were tried, the first failure is
    raised, its message naming every failed network, so the caller's DEL fails and is
    retried. Removal is idempotent: a retry returns only what is still there.
    `networks` limits the sweep to those network names (the meta-plugin passes the ones it
    knows, so a network only another runtime uses is left alone).

    ValueError if `container_id` is blank (it would match every empty file).
    """
    if not container_id.strip():
        raise ValueError("release_container: the container id must not be empty")
    try:
        entries = sorted(os.scandir(data_dir), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise IOFailure(f"open {data_dir}: {_strerror(exc)}") from exc
    released: list[tuple[str, str]] = []
    failures: list[CniError] = []
    for entry in entries:
        if entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
            continue
        if networks is not None and entry.name not in networks:
            continue
        try:
            with DiskStore(data_dir, entry.name, lock_timeout).locked() as store:
                for addr in store.release_container(container_id):
                    released.append((entry.name, str(addr)))
        except CniError as exc:
            failures.append(exc)
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise type(failures[0])("; ".join(exc.msg for exc in failures)) from failures[0]
    return released
