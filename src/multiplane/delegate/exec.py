"""Run an external CNI plugin as a runtime does (libcni pkg/invoke), and read its answer.

* The binary is the file named `type` in the first `CNI_PATH` directory that has it as a
  regular file (symlinks followed); a name with a path separator is refused.
* It gets exactly the environment we were given, with `CNI_COMMAND` set to the verb (never
  the process's own: the daemon passes each request's), and the stdin bytes we were given,
  byte for byte (spec §4: IPAM plugins see the whole config).
* It is started with `os.posix_spawn` (glibc: clone(CLONE_VM|CLONE_VFORK), no copy of our
  memory, safe in a process with threads; decision 0008) and gets descriptors 0, 1 and 2
  only: pipes for stdin, stdout and stderr, every other descriptor closed (close-on-exec,
  and any inheritable one closed in the child). Its signal mask is empty and SIGPIPE and
  SIGXFSZ, which Python ignores, are back at their defaults. It starts in our working
  directory, as libcni's child starts in the runtime's (the daemon's is "/").
* With a `root` (the node daemon in a container, the host's "/" mounted at, say,
  /hostroot) the plugin is looked up under the root, symlinks resolved as inside it, and
  run inside it: a helper (`root_helper`) chroots to the root, changes to its "/" and
  execs the plugin there, so a dynamically linked plugin gets the host's loader and
  libraries, as Multus thick's chrootDir does.
* "text file busy" at exec (a binary being replaced) is retried 5 times, 1 s apart.
* A plugin that runs past the timeout is killed (SIGKILL) and reaped; its error is "try
  again later" (11). The timeout covers the whole call: stdin fed, stdout and stderr read
  to their ends (as libcni waits for them), exit. The child is always reaped, whatever
  happens in between.
* Its stderr is copied to ours. At `debug` the process log (multiplane.logs) gets the
  binary's path, its exit status, how long it ran and what it wrote to stderr. Its answer is parsed with libcni's rules: exit 0 means
  success (ADD must print a result; a missing cniVersion means the config's); non-zero
  means the error object on stdout, or else the stderr text, keeping the plugin's code.
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import stat
import sys
import time

from multiplane import logs
from multiplane.errors import (
    CniError,
    DelegateError,
    InvalidConfig,
    InvalidEnvironment,
    PluginNotFound,
    TryAgainLater,
)
from multiplane.spec.args import printable
from multiplane.spec.result import Result

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "DEFAULT_TIMEOUT",
    "ExecDelegator",
    "find_plugin",
    "parse_error",
    "parse_result",
    "root_helper",
    "valid_plugin_type",
]

DEFAULT_TIMEOUT = 60.0
_TXTBSY_TRIES = 5
_MAX_LINKS = 40  # symlinks followed in one lookup under a root, as Linux's MAXSYMLINKS
# What Python ignores and a plugin must not inherit ignored (subprocess's restore_signals).
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)
# How the helpers that run a plugin inside a root say that they, not the plugin, failed.
_HELPER_SAYS = (b"multiplane: exec-in-root: ", b"chroot: ")
_HELPER_STATUS = (125, 126, 127)  # the launcher: 127; coreutils' chroot: 125 (chroot), 126/127 (exec)


def valid_plugin_type(plugin_type: object) -> bool:
    """A plugin type names one file: non-empty printable text without a path separator.

    `isprintable` also refuses NUL, control characters and lone surrogates (the
    surrogateescape form of bytes that are not UTF-8), none of which can name a binary
    a runtime would install; "." and ".." are not files.
    """
    return (
        isinstance(plugin_type, str)
        and plugin_type not in ("", ".", "..")
        and "/" not in plugin_type
        and "\\" not in plugin_type
        and plugin_type.isprintable()
    )


def _in_root(root: str, path: str) -> str:
    """Where `path`, an absolute path as seen inside `root`, is from here: symlinks resolved inside the root.

    An absolute link target starts again at the root, `..` stops at it, as they would for a
    process chrooted there (a host's /opt/cni/bin often holds links to /usr/lib/cni or
    /opt/…). A component that is missing or not a link is kept; the caller's stat says what
    it is. More than 40 links is ELOOP.
    """
    done = ""  # the resolved part, inside the root ("" is its "/")
    todo = [part for part in reversed(path.split("/")) if part]
    links = 0
    while todo:
        part = todo.pop()
        if part == ".":
            continue
        if part == "..":
            done = done.rpartition("/")[0]
            continue
        here = f"{done}/{part}"
        try:
            target = os.readlink(root + here)
        except OSError:  # not a link (EINVAL), or not there: the final stat decides
            done = here
            continue
        links += 1
        if links > _MAX_LINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
        if target.startswith("/"):
            done = ""
        todo.extend(part for part in reversed(target.split("/")) if part)
    return root + (done or "/")


def find_plugin(plugin_type: str, paths: Sequence[str], root: str = "") -> str:
    """Path of the plugin binary; InvalidConfig (7) for a bad name, PluginNotFound if it is not there.

    The name is checked before any directory is searched. A search directory that cannot be
    a path (a NUL, text that is not UTF-8) is skipped like a missing one. With a `root`
    each directory is looked for inside it (`_in_root`) and the answer is the path inside
    the root, made absolute (a relative directory is taken from the root's "/", where the
    helper starts the plugin).
    """
    if not valid_plugin_type(plugin_type):
        raise InvalidConfig(f"invalid plugin name: '{printable(str(plugin_type))}'")
    if not paths:
        raise CniError("no paths provided")
    for directory in paths:
        candidate = os.path.join("/", directory, plugin_type) if root else os.path.join(directory, plugin_type)
        try:
            where = _in_root(root, candidate) if root else candidate
            if stat.S_ISREG(os.stat(where).st_mode):
                return candidate
        except (OSError, ValueError):
            continue
    under = f" under root {root}" if root else ""
    raise PluginNotFound(f'failed to find plugin "{plugin_type}" in path [{" ".join(paths)}]{under}')


def parse_error(returncode: int, stdout: bytes, stderr: bytes) -> DelegateError:
    """The error a failed plugin reported, as libcni reads it (code 0 = unparseable)."""
    text = stdout.decode("utf-8", "replace")
    if stdout.strip():
        try:
            obj = json.loads(stdout)
        except (ValueError, RecursionError) as exc:
            return DelegateError(0, f'netplugin failed but error parsing its diagnostic message "{text}": {exc}')
        if isinstance(obj, dict) and isinstance(obj.get("code"), int):
            return DelegateError(obj["code"], str(obj.get("msg", "")), str(obj.get("details") or ""))
        return DelegateError(0, f'netplugin failed but error parsing its diagnostic message "{text}"')
    if stderr.strip():
        return DelegateError(0, f'netplugin failed: "{stderr.decode("utf-8", "replace")}"')
    return DelegateError(0, f"netplugin failed with no error message: exit status {returncode}")


def parse_result(stdout: bytes, conf_version: str) -> Result:
    """An ADD answer; a result without cniVersion is taken to be in the config's version."""
    try:
        obj = json.loads(stdout)
    except (ValueError, RecursionError) as exc:
        detail = "unexpected end of JSON input" if not stdout.strip() else str(exc)
        raise CniError(f"failed to unmarshal raw result: {detail}") from exc
    return Result.parse(obj, conf_version)


def root_helper() -> tuple[str, list[str]]:
    """How to start a program inside a root: (file to execute, argv to which ROOT and PATH are added).

    Either helper does chroot(ROOT), chdir("/"), then execs PATH with argv [PATH] and the
    environment it was given, and, when it fails itself, writes one line on stderr and
    exits 125-127 (see `_HELPER_SAYS`). In the runtime tree (boot.py sets `sys.frozen`; the
    tree is the interpreter's directory) it is the tree's static launcher,
    `<tree>/launcher --exec-in-root ROOT PATH`: static, so it runs in any container, and
    the daemon's image needs nothing else. Elsewhere (a venv, the tests) coreutils'
    `/usr/sbin/chroot ROOT PATH`, which does the same.
    """
    if getattr(sys, "frozen", False):
        launcher = os.path.join(os.path.dirname(sys.executable), "launcher")
        return launcher, [launcher, "--exec-in-root"]
    return "/usr/sbin/chroot", ["chroot"]


def _helper_failure(status: int, stdout: bytes, stderr: bytes) -> str | None:
    """The reason the root helper gave when it, not the plugin, failed; None when the plugin ran.

    The helper's own failure is its exit status (125-127), nothing on stdout and its prefix
    on stderr: a plugin that failed answers on stdout or in its own words.
    """
    if status not in _HELPER_STATUS or stdout.strip():
        return None
    for prefix in _HELPER_SAYS:
        if stderr.startswith(prefix):
            return stderr[len(prefix) :].decode("utf-8", "replace").strip()
    return None


class _TimedOut(Exception):
    """The plugin ran past its deadline (it has been killed and reaped)."""


def _pipe(open_fds: list[int]) -> tuple[int, int]:
    """A close-on-exec pipe, both ends above 2, recorded in `open_fds` as soon as it exists.

    Above 2 because the child's dup2 onto 0, 1 and 2 would otherwise overwrite an end it
    still needs: that happens only when one of our own 0-2 is closed.
    """
    spare: list[int] = []
    try:
        read_end, write_end = os.pipe()
        while read_end < 3 or write_end < 3:
            spare += (read_end, write_end)
            read_end, write_end = os.pipe()
    finally:
        for fd in spare:
            os.close(fd)
    open_fds += (read_end, write_end)
    return read_end, write_end


def _close(fd: int, open_fds: list[int]) -> None:
    open_fds.remove(fd)
    os.close(fd)


def _inheritable_fds() -> list[int]:
    """Our descriptors above 2 that are not close-on-exec: the child closes them before exec.

    Python opens everything close-on-exec (PEP 446), but not all of the process is Python's:
    the runtime's launcher keeps the tree's lock open across its exec into us on purpose, and
    code may call `os.set_inheritable`. posix_spawn closes nothing by itself, so each one
    becomes a close action. A descriptor made inheritable by another thread between this
    listing and the spawn would still get through; nothing in multiplane does that. Without
    /proc there is nothing to list, and close-on-exec is all there is.
    """
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return []
    found = []
    for name in names:
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    found.append(fd)
            except OSError:  # the listing's own descriptor, or one another thread closed since
                continue
    return found


def _exchange(
    in_w: int, out_r: int, err_r: int, stdin: bytes, deadline: float, open_fds: list[int]
) -> tuple[bytes, bytes]:
    """Feed `stdin` and read stdout and stderr to their ends, all three at once, until the deadline.

    At once, because a plugin may fill one pipe (64 KiB) before it reads or writes another.
    One poll() loop on this thread; poll, not select, since a daemon's descriptors can be
    past 1024. A plugin that exits without reading all of its stdin is not an error (libcni
    ignores EPIPE there too).
    """
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    poller = select.poll()
    for fd in chunks:
        poller.register(fd, select.POLLIN)
    left = memoryview(stdin)
    if left:
        os.set_blocking(in_w, False)
        poller.register(in_w, select.POLLOUT)
    else:
        _close(in_w, open_fds)
    busy = len(chunks) + (1 if left else 0)
    while busy:
        wait = deadline - time.monotonic()
        if wait <= 0:
            raise _TimedOut
        for fd, _event in poller.poll(wait * 1000):
            if fd == in_w:
                try:
                    left = left[os.write(fd, left) :]
                except BlockingIOError:
                    continue
                except BrokenPipeError:
                    left = left[:0]
                if left:
                    continue
            else:
                data = os.read(fd, 1 << 16)
                if data:
                    chunks[fd].append(data)
                    continue
            poller.unregister(fd)
            _close(fd, open_fds)
            busy -= 1
    return b"".join(chunks[out_r]), b"".join(chunks[err_r])


def _wait(pid: int, deadline: float) -> int:
    """The exit status (negative: the signal) of a child whose pipes have all closed, by the deadline.

    Closed pipes mostly mean an exit a moment away; a plugin that closed them and runs on is
    checked with growing pauses (0.5 to 50 ms) until it exits or the deadline passes.
    """
    pause = 0.0005
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return 0  # reaped by someone else (SIGCHLD ignored): nothing to know, as subprocess says
        if done:
            return os.waitstatus_to_exitcode(status)
        wait = deadline - time.monotonic()
        if wait <= 0:
            raise _TimedOut
        time.sleep(min(pause, wait))
        pause = min(pause * 2, 0.05)


def _kill(pid: int) -> None:
    """SIGKILL a child that has not been reaped, and reap it (never a zombie left behind)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass  # reaped by someone else (SIGCHLD ignored)


def _spawn(
    path: str, argv: Sequence[str], env: Mapping[str, str], stdin: bytes, timeout: float
) -> tuple[int, bytes, bytes]:
    """Run `path` with `argv` and exactly `env` to its end: (exit status, stdout, stderr).

    The child is started with posix_spawn: pipes as 0, 1 and 2, every inheritable
    descriptor above 2 closed, an empty signal mask, SIGPIPE and SIGXFSZ at their defaults,
    our working directory. Raises OSError or ValueError from posix_spawn (nothing was
    started: glibc reports exec's errno, ETXTBSY included), `_TimedOut` past the timeout.
    Whatever is raised, even from a signal handler, the pipes are closed and the child is
    killed and reaped.
    """
    deadline = time.monotonic() + timeout
    open_fds: list[int] = []
    pid = 0
    try:
        in_r, in_w = _pipe(open_fds)
        out_r, out_w = _pipe(open_fds)
        err_r, err_w = _pipe(open_fds)
        actions: list[tuple[int, ...]] = [
            (os.POSIX_SPAWN_DUP2, in_r, 0),
            (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_DUP2, err_w, 2),
        ]
        actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds()]
        pid = os.posix_spawn(path, list(argv), env, file_actions=actions, setsigmask=(), setsigdef=_DEFAULT_SIGNALS)
        for fd in (in_r, out_w, err_w):
            _close(fd, open_fds)
        stdout, stderr = _exchange(in_w, out_r, err_r, stdin, deadline, open_fds)
        status = _wait(pid, deadline)
        pid = 0
        return status, stdout, stderr
    finally:
        for fd in open_fds:
            os.close(fd)
        if pid:
            _kill(pid)


class ExecDelegator:
    """Runs plugins found in `paths` (binDir entries first, then CNI_PATH), inside `root` if one is given.

    `root` is where the host's "/" is (the daemon in a container: "/hostroot"); "" or "/"
    runs plugins in our own root.
    """

    def __init__(self, paths: Sequence[str], timeout: float = DEFAULT_TIMEOUT, root: str = "") -> None:
        if root and not root.startswith("/"):
            raise ValueError(f"the root plugins run in must be an absolute path, not {root!r}")
        self.paths = tuple(paths)
        self.timeout = timeout
        self.root = "" if not root or os.path.normpath(root) == "/" else os.path.normpath(root)

    def _exec(self, plugin_type: str, command: str, stdin: bytes, env: Mapping[str, str]) -> bytes:
        binary = find_plugin(plugin_type, self.paths, self.root)
        where = f" in root {self.root}" if self.root else ""
        log = logs.get()
        log.debug(f"exec {binary}{where} ({command}, CNI_IFNAME={env.get('CNI_IFNAME', '')})")
        started = time.monotonic()
        child_env = dict(env)
        child_env["CNI_COMMAND"] = command
        if self.root:
            path, argv = root_helper()
            argv = [*argv, self.root, binary]
        else:
            path, argv = binary, [binary]
        for attempt in range(_TXTBSY_TRIES):
            last = attempt == _TXTBSY_TRIES - 1
            try:
                returncode, stdout, stderr = _spawn(path, argv, child_env, stdin, self.timeout)
            except OSError as exc:
                if exc.errno == errno.ETXTBSY and not last:
                    time.sleep(1)
                    continue
                helper = f"cannot start {path}: " if self.root else ""  # with a root, what failed is the helper
                raise CniError(f'failed to execute plugin "{binary}"{where}: {helper}{exc.strerror or exc}') from exc
            except ValueError as exc:
                # An environment exec cannot carry: a NUL, or text that is not UTF-8 in a name or value.
                raise InvalidEnvironment(f'cannot execute plugin "{plugin_type}": {exc}') from exc
            except _TimedOut as exc:
                raise TryAgainLater(f'plugin "{plugin_type}" ({command}) timed out after {self.timeout:g}s') from exc
            failure = _helper_failure(returncode, stdout, stderr) if self.root else None
            if failure is None:
                break
            if os.strerror(errno.ETXTBSY) not in failure or last:
                raise CniError(f'failed to execute plugin "{binary}"{where}: {failure}')
            time.sleep(1)
        if log.enabled("debug"):
            took = (time.monotonic() - started) * 1000
            said = f"; its stderr: {stderr[:4096].decode('utf-8', 'replace').strip()}" if stderr else ""
            log.debug(f"exec {binary}{where} ({command}) exited {returncode} after {took:.1f} ms{said}")
        if stderr:
            logs.stderr_write(stderr)  # the call's stderr: ours, or the daemon client's
        if returncode != 0:
            raise parse_error(returncode, stdout, stderr)
        return stdout

    def add(self, plugin_type: str, stdin: bytes, env: Mapping[str, str], conf_version: str) -> Result:
        return parse_result(self._exec(plugin_type, "ADD", stdin, env), conf_version)

    def delete(self, plugin_type: str, stdin: bytes, env: Mapping[str, str]) -> None:
        self._exec(plugin_type, "DEL", stdin, env)

    def check(self, plugin_type: str, stdin: bytes, env: Mapping[str, str]) -> None:
        self._exec(plugin_type, "CHECK", stdin, env)

    def gc(self, plugin_type: str, stdin: bytes, env: Mapping[str, str]) -> None:
        self._exec(plugin_type, "GC", stdin, env)

    def status(self, plugin_type: str, stdin: bytes, env: Mapping[str, str]) -> None:
        self._exec(plugin_type, "STATUS", stdin, env)
