"""The installed runtime beside the CNI binaries: lay a build down, switch to it atomically, remove unused ones.

    <cni bin dir>/multiplane                  the static launcher (no payload); multiplane-* link to it
    <cni bin dir>/.multiplane/current         -> <build id>, relative; replaced by rename(2)
    <cni bin dir>/.multiplane/<build id>/     one complete tree per build, never changed once complete:
                                              the files of its MANIFEST, `.lock`, `.complete`
    <cni bin dir>/.multiplane/<id>.tmp-<pid>  a tree being laid down
    <cni bin dir>/.multiplane/.gone-<pid>-…   a tree being removed

The CNI bin dir is the one directory every node keeps executable, and the launcher finds the
tree from its own location, so nothing is unpacked on a call. Every process that runs a tree
holds a shared flock on its `.lock` for its whole life; a tree is removed only by whoever
gets that lock exclusively, so a call in flight keeps its version until it exits, while new
calls start the new one (upgrade and downgrade are the same operation). Each file of a new
tree is checked against the build's MANIFEST (sha256, size, mode) before the tree is
marked complete. Nothing here ever opens an existing executable for writing, so no call
can see "text file busy".
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import stat
import sys

from multiplane.fsutil import fsync_dir, unlink_quietly
from multiplane.runtime import payload

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "RUNTIME_DIR",
    "RuntimeError_",
    "current",
    "lay_down",
    "remove_all",
    "running_tree",
    "source",
    "sweep",
    "switch",
    "verify",
]

RUNTIME_DIR = ".multiplane"
CURRENT = "current"


class RuntimeError_(Exception):  # not the builtin RuntimeError
    """The runtime cannot be laid down (a damaged source, a failed check); the message says which."""


def running_tree() -> str | None:
    """The tree this process runs from (started by the launcher), else None (a Python checkout)."""
    if not getattr(sys, "frozen", False):
        return None
    tree = os.path.dirname(os.path.abspath(sys.executable))
    return tree if os.path.isfile(os.path.join(tree, payload.MANIFEST)) else None


def _tree_entries(tree: str) -> tuple[bytes, str, list[payload.Entry]]:
    with open(os.path.join(tree, payload.MANIFEST), "rb") as fh:
        text = fh.read()
    with open(os.path.join(tree, "VERSION"), encoding="ascii") as fh:
        version = fh.read().strip()
    entries = [payload.Entry(payload.MANIFEST, 0o644, text)]
    for path, (_digest, mode, _size) in sorted(payload.parse_manifest(text).items()):
        with open(os.path.join(tree, path), "rb") as fh:
            entries.append(payload.Entry(path, mode, fh.read()))
    with open(os.path.join(tree, "launcher"), "rb") as fh:
        launcher = fh.read()
    return launcher, payload.build_id(version, text), entries


def source(path: str | None) -> tuple[bytes, str, list[payload.Entry]]:
    """(launcher, build id, files) from a self-contained file, or from the tree this process runs from."""
    if path:
        try:
            launcher, build, entries = payload.read(path)
            return launcher, build, list(entries)
        except (OSError, payload.PayloadError) as exc:
            raise RuntimeError_(f"cannot read the runtime from {path}: {exc}") from exc
    tree = running_tree()
    if tree is None:
        raise RuntimeError_(
            "this multiplane runs from Python sources, not from its runtime: "
            "give the self-contained file to install with --source PATH (e.g. --source dist/multiplane)"
        )
    return _tree_entries(tree)


def _write_tree(directory: str, entries: Iterable[payload.Entry]) -> None:
    """Write every entry, then check the set against the MANIFEST among them."""
    written: dict[str, tuple[str, int, int]] = {}
    manifest_text = b""
    for e in entries:
        target = os.path.join(directory, e.path)
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(e.data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, e.mode & 0o7777)
            os.fsync(fd)
        finally:
            os.close(fd)
        written[e.path] = (hashlib.sha256(e.data).hexdigest(), e.mode & 0o7777, len(e.data))
        if e.path == payload.MANIFEST:
            manifest_text = e.data
    if not manifest_text:
        raise RuntimeError_("the runtime has no MANIFEST")
    expected = payload.parse_manifest(manifest_text)
    del written[payload.MANIFEST]
    for path, want in expected.items():
        got = written.get(path)
        if got != want:
            raise RuntimeError_(f"runtime file {path} does not match the build's MANIFEST (got {got}, want {want})")
    extra = sorted(set(written) - set(expected))
    if extra:
        raise RuntimeError_(f"runtime files not in the build's MANIFEST: {', '.join(extra[:5])}")


def _begin(tmp: str) -> int:
    """Make `tmp` and hold its `.lock` exclusively; the descriptor.

    Another install's sweep opens `.lock` and tries LOCK_EX|LOCK_NB; if that falls between our
    open and our flock, it wins, renames the directory away and removes it, and our flock then
    returns on a lock file no longer in `tmp`. The lock counts only if `tmp/.lock` is still the
    file we hold; otherwise start again.
    """
    path = os.path.join(tmp, ".lock")
    for _attempt in range(5):
        shutil.rmtree(tmp, ignore_errors=True)
        os.mkdir(tmp, 0o755)
        try:
            lock = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            continue  # swept before the lock file existed
        fcntl.flock(lock, fcntl.LOCK_EX)
        held = os.fstat(lock)
        try:
            named = os.stat(path)
        except FileNotFoundError:
            named = None
        if named is not None and (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino):
            return lock
        os.close(lock)
    raise RuntimeError_(f"{tmp} kept being removed by another install while being laid down")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify(tree: str, build: str | None = None) -> tuple[int, list[str]]:
    """(files in the MANIFEST, what is wrong) for one runtime tree; `build` also checks the tree's id.

    Wrong: a missing `.complete` or `.lock` (the launcher refuses the tree), an unreadable
    MANIFEST, a MANIFEST and VERSION that give another build id, and every file that is
    missing, not a regular file, or differs in size, sha256 or mode.
    """
    problems = []
    for marker in (".complete", ".lock"):
        if not os.path.isfile(os.path.join(tree, marker)):
            problems.append(f"{marker} is missing (the launcher refuses the tree)")
    try:
        with open(os.path.join(tree, payload.MANIFEST), "rb") as fh:
            text = fh.read()
        expected = payload.parse_manifest(text)
    except (OSError, UnicodeDecodeError, payload.PayloadError) as exc:
        return 0, [*problems, f"MANIFEST cannot be read: {exc}"]
    if build is not None:
        try:
            with open(os.path.join(tree, "VERSION"), encoding="ascii") as fh:
                version = fh.read().strip()
        except (OSError, UnicodeDecodeError):
            version = ""
        if payload.build_id(version, text) != build:
            problems.append(f"MANIFEST and VERSION give build {payload.build_id(version, text)}, not {build}")
    for path, (digest, mode, size) in sorted(expected.items()):
        full = os.path.join(tree, path)
        try:
            st = os.lstat(full)
        except OSError:
            problems.append(f"{path} is missing")
            continue
        if not stat.S_ISREG(st.st_mode):
            problems.append(f"{path} is not a regular file")
        elif st.st_size != size or _sha256(full) != digest:
            problems.append(f"{path} changed (sha256)")
        elif st.st_mode & 0o7777 != mode:
            problems.append(f"{path} has mode {st.st_mode & 0o7777:o}, not {mode:o}")
    return len(expected), problems


def lay_down(bin_dir: str, build: str, entries: Iterable[payload.Entry]) -> bool:
    """Make `<bin_dir>/.multiplane/<build>` a complete, checked tree; False if it already was one."""
    base = os.path.join(bin_dir, RUNTIME_DIR)
    final = os.path.join(base, build)
    if os.path.isfile(os.path.join(final, ".complete")):
        if not verify(final)[1]:
            return False
        # A tree of this build that no longer matches its MANIFEST (edited, damaged): moved
        # aside and laid down again; calls still running it keep their open files.
        gone = os.path.join(base, f".gone-{os.getpid()}-{build}")
        os.rename(final, gone)
        shutil.rmtree(gone, ignore_errors=True)
    os.makedirs(base, mode=0o755, exist_ok=True)
    tmp = os.path.join(base, f"{build}.tmp-{os.getpid()}")
    lock = _begin(tmp)
    try:
        try:
            _write_tree(tmp, entries)
            with open(os.path.join(tmp, ".complete"), "w") as fh:
                fh.write(build + "\n")
            fsync_dir(tmp)
            if os.path.isfile(os.path.join(final, ".complete")):  # another install of this build won
                shutil.rmtree(tmp, ignore_errors=True)
                return False
            if os.path.isdir(final):  # a leftover without .complete (never run): out of the way
                _remove_if_unused(base, build)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        os.close(lock)
    fsync_dir(base)
    return True


def current(bin_dir: str) -> str | None:
    """The build `current` points at, None if there is none."""
    try:
        return os.readlink(os.path.join(bin_dir, RUNTIME_DIR, CURRENT))
    except FileNotFoundError:
        return None


def switch(bin_dir: str, build: str) -> bool:
    """Point `current` at `build` with one rename; False if it already did."""
    base = os.path.join(bin_dir, RUNTIME_DIR)
    if current(bin_dir) == build:
        return False
    if not os.path.isfile(os.path.join(base, build, ".complete")):
        raise RuntimeError_(f"refusing to switch to {build}: it is not a complete tree")
    tmp = os.path.join(base, f".{CURRENT}.{os.getpid()}.tmp")
    unlink_quietly(tmp)
    os.symlink(build, tmp)
    try:
        os.replace(tmp, os.path.join(base, CURRENT))
    except OSError:
        unlink_quietly(tmp)
        raise
    fsync_dir(base)
    return True


def _pid_gone(text: str) -> bool:
    try:
        os.kill(int(text), 0)
    except ProcessLookupError:
        return True
    except (ValueError, PermissionError):
        return False
    return False


def _remove_if_unused(base: str, name: str) -> bool:
    """Remove `<base>/<name>` unless a process holds its lock; True if it went."""
    directory = os.path.join(base, name)
    try:
        fd = os.open(os.path.join(directory, ".lock"), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = -1
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            return False
        fd = -1
    try:
        if fd >= 0:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
        elif ".tmp-" in name and not _pid_gone(name.rsplit(".tmp-", 1)[1]):
            return False  # being laid down; its lock is not there yet
        gone = os.path.join(base, f".gone-{os.getpid()}-{name}")
        try:
            os.rename(directory, gone)
        except FileNotFoundError:
            return True
        shutil.rmtree(gone, ignore_errors=True)
        return True
    finally:
        if fd >= 0:
            os.close(fd)


def sweep(bin_dir: str, keep: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """Remove trees nobody runs (other than `keep` and `current`), leftovers of killed installs: (removed, in use)."""
    base = os.path.join(bin_dir, RUNTIME_DIR)
    try:
        names = sorted(os.listdir(base))
    except FileNotFoundError:
        return [], []
    spare = {CURRENT, current(bin_dir), *keep}
    removed, busy = [], []
    for name in names:
        if name in spare or (name.startswith(".") and not name.startswith(".gone-")):
            continue
        if name.startswith(".gone-"):
            if _pid_gone(name.split("-", 2)[1]):
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)
            continue
        if os.path.islink(os.path.join(base, name)) or not os.path.isdir(os.path.join(base, name)):
            continue
        (removed if _remove_if_unused(base, name) else busy).append(name)
    return removed, busy


def remove_all(bin_dir: str, wait: float = 30.0) -> list[str]:
    """Uninstall: `current` first (new calls stop), then every tree once its last call ended (or `wait` passed)."""
    import time

    base = os.path.join(bin_dir, RUNTIME_DIR)
    unlink_quietly(os.path.join(base, CURRENT))
    deadline = time.monotonic() + wait
    while True:
        _removed, busy = sweep(bin_dir)
        if not busy or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    for name in busy:  # still running after the wait: removed anyway, as uninstall promises
        shutil.rmtree(os.path.join(base, name), ignore_errors=True)
    try:
        os.rmdir(base)
    except OSError:
        pass
    return busy
