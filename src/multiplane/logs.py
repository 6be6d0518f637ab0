"""One logger for the process: stderr and/or a file, never stdout (stdout belongs to the CNI result).

Levels, most to least verbose: `debug`, `verbose`, `error`, `panic` (Multus's names; `logLevel`
matches them case-insensitively). A `warning` line shows wherever `error` lines do; a bug's
traceback is logged at `panic`, so it shows at every level. An unknown `logLevel` is
reported once (in the file and on stderr) and `error` is used. A line is
`<UTC time> [<level>] <message>`.

The process logger: `get()` is what every module logs through. Standalone (a built-in run
as its own binary) it is a stderr logger at `error`. The meta-plugin builds a `Logger` from
its config and installs it for the length of one command with `using(logger)`, so the
built-ins it runs in-process (macvlan, host-local) write to its `logFile` too; leaving the
`with` block puts back whatever was there (nothing leaks from one call, or test, to the
next); `reset()` drops any installed logger.

The file: every line is appended with O_APPEND by a fresh open, so several plugin
processes can share it. With Multus's `logOptions` it is rotated the lumberjack way once
it has grown past `maxSize` MB: renamed to `<stem>-<UTC yyyy-mm-ddThh-mm-ss.mmm><ext>`
(`multiplane.log` → `multiplane-2024-05-01T10-20-30.123.log`), gzipped to `….log.gz` when
`compress` is on; rotated files beyond the newest `maxBackups`, or older than `maxAge` days
(by the time in their name), are removed (0 turns either limit off, as in lumberjack).
Defaults are Multus's: maxSize 100, maxBackups 5, maxAge 5, compress true. Writers hold a
shared flock on `<logFile>.lock` around open+write; the rotation takes it exclusively
around the rename, so no line lands in a file being compressed or removed, and two
processes never rotate the same file twice. gzip is imported only when compressing.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from contextvars import ContextVar

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from contextvars import Token
    from typing import Any, TextIO

    from multiplane.errors import CniError

__all__ = ["LEVELS", "Logger", "get", "internal_error", "reset", "stderr", "stderr_to", "stderr_write", "using"]

LEVELS = ("debug", "verbose", "error", "panic")
_RANK = {"debug": 0, "verbose": 1, "warning": 2, "error": 2, "panic": 3, "info": 4}  # info: always written
MB = 1024 * 1024
DEFAULT_OPTIONS: dict[str, Any] = {"maxSize": 100, "maxBackups": 5, "maxAge": 5, "compress": True}
_STAMP = "%Y-%m-%dT%H-%M-%S"  # lumberjack's backup time format, milliseconds appended


def _finite(value: float) -> bool:
    """A number a size or an age can be (JSON from Python may carry NaN, Infinity or a 400-digit integer)."""
    try:
        return abs(float(value)) < 1e15
    except OverflowError:
        return False


def _option(options: Mapping[str, Any], key: str) -> Any:
    """options[key], keys matched case-insensitively (Go's decoder); None when absent."""
    if key in options:
        return options[key]
    for k, v in options.items():
        if isinstance(k, str) and k.lower() == key.lower():
            return v
    return None


class Logger:
    """Log lines to stderr (`to_stderr`) and/or `path`; see the module docstring for levels and rotation.

    `options` is the meta-plugin's `logOptions` object as read from JSON; a value of the wrong
    type is reported (a warning) and its default used: logging never fails a CNI call.
    """

    def __init__(
        self, level: str = "error", path: str = "", to_stderr: bool = True, options: Mapping[str, Any] | None = None
    ) -> None:
        self.path = path
        self.to_stderr = to_stderr
        self._lock_fd: int | None = None
        complaints = []
        name = level.lower() if isinstance(level, str) else ""
        if name not in LEVELS:
            complaints.append(f"unknown logLevel {level!r} (use one of {', '.join(LEVELS)}); using error")
            name = "error"
        self.level = name
        self.threshold = _RANK[name]
        settings = dict(DEFAULT_OPTIONS)
        if options is not None and not isinstance(options, dict):
            complaints.append(f"logOptions must be an object, not {type(options).__name__}; using the defaults")
            options = None
        for key, default in DEFAULT_OPTIONS.items():
            value = _option(options or {}, key)
            if value is None:
                continue
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            else:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value)
            if ok:
                settings[key] = value
            else:
                shown = str(default).lower() if isinstance(default, bool) else default
                kind = "true or false" if isinstance(default, bool) else "a number"
                complaints.append(f"logOptions.{key} must be {kind}, not {value!r}; using {shown}")
        # lumberjack: maxSize 0 means its default (100 MB); maxBackups/maxAge 0 mean no limit.
        self.max_bytes = int(settings["maxSize"] * MB) if settings["maxSize"] > 0 else 100 * MB
        self.max_backups = max(int(settings["maxBackups"]), 0)
        self.max_age = max(float(settings["maxAge"]), 0.0) * 86400
        self.compress = bool(settings["compress"])
        for text in complaints:
            self._write("warning", text, force_stderr=True)

    # ---- writing ----

    def enabled(self, level: str) -> bool:
        """Whether a line at `level` would be written (to skip building costly debug text)."""
        return _RANK[level] >= self.threshold

    def _write(self, level: str, message: str, force_stderr: bool = False) -> None:
        if _RANK[level] < self.threshold:
            return
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} [{level}] {message}\n"
        # Messages quote what a hostile node sent (lone surrogates, bytes that are not UTF-8):
        # escape what UTF-8 cannot carry, so writing never raises.
        data = line.encode("utf-8", "backslashreplace")
        # A panic (a bug's traceback) is never lost: stderr too when there is no file.
        if self.to_stderr or force_stderr or (level == "panic" and not self.path):
            stderr_write(data)
        if self.path:
            try:
                self._append(data)
            except (OSError, ValueError):
                pass  # logging must never break a CNI call (ValueError: a NUL in the path)

    def debug(self, message: str) -> None:
        self._write("debug", message)

    def verbose(self, message: str) -> None:
        self._write("verbose", message)

    def warning(self, message: str) -> None:
        self._write("warning", message)

    def error(self, message: str) -> None:
        self._write("error", message)

    def panic(self, message: str) -> None:
        self._write("panic", message)

    def info(self, message: str) -> None:
        """A line written at every level (the daemon's start and stop); not a level one can choose."""
        self._write("info", message)

    def bug(self, where: str) -> None:
        """Log the exception being handled, with its traceback, at `panic`: it is a bug, not a CNI error."""
        import traceback

        self.panic(f"{where}: internal error:\n{traceback.format_exc().rstrip()}")

    # ---- the file and its rotation ----

    def _lock(self) -> int:
        """The fd of `<path>.lock` (opened once per logger); -1 when there is none (no rotation then).

        A log that is not a regular file (`/dev/stderr`, a FIFO) gets no lock file beside it
        and is never rotated.
        """
        if self._lock_fd is None:
            self._lock_fd = -1
            try:
                if stat.S_ISREG(os.stat(self.path).st_mode):
                    self._lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:
                try:
                    self._lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                except (OSError, ValueError):
                    pass
            except (OSError, ValueError):
                pass
        return self._lock_fd

    def close(self) -> None:
        """Release the lock file's descriptor (also done when the logger is collected)."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None and fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        try:
            self.close()
        except (AttributeError, OSError):
            pass

    def _append(self, data: bytes) -> None:
        import fcntl

        lock = self._lock()
        if lock >= 0:
            fcntl.flock(lock, fcntl.LOCK_SH)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, data)
                st = os.fstat(fd)
            finally:
                os.close(fd)
        finally:
            if lock >= 0:
                fcntl.flock(lock, fcntl.LOCK_UN)
        if lock >= 0 and st.st_size >= self.max_bytes and stat.S_ISREG(st.st_mode):
            self._rotate(lock, st)

    def _rotate(self, lock: int, seen: os.stat_result) -> None:
        """Rename the full file to a timestamped backup (unless another process just did), then mill."""
        import fcntl

        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            try:
                now = os.stat(self.path)
            except FileNotFoundError:
                return
            if (now.st_dev, now.st_ino) != (seen.st_dev, seen.st_ino) or now.st_size < self.max_bytes:
                return  # another writer rotated it first
            stem, ext = self._stem_ext()
            when = time.time()
            while True:
                backup = f"{stem}-{self._stamp(when)}{ext}"
                if not os.path.lexists(backup) and not os.path.lexists(backup + ".gz"):
                    break
                when += 0.001
            os.rename(self.path, backup)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
        # No writer holds the renamed file (they write under the shared lock): it is quiet now.
        self._mill()

    @staticmethod
    def _stamp(when: float) -> str:
        return time.strftime(_STAMP, time.gmtime(when)) + f".{int(when * 1000) % 1000:03d}"

    def _stem_ext(self) -> tuple[str, str]:
        directory, name = os.path.split(self.path)
        base, ext = os.path.splitext(name)
        return os.path.join(directory, base), ext

    def backups(self) -> list[tuple[float, str]]:
        """(time in the name, path) of every rotated file of this log, newest first."""
        import calendar

        stem, ext = self._stem_ext()
        directory, prefix = os.path.split(stem + "-")
        found = []
        try:
            names = os.listdir(directory or ".")
        except OSError:
            return []
        for entry in names:
            rest = entry[len(prefix) :] if entry.startswith(prefix) else ""
            rest = rest.removesuffix(".gz")
            if not rest or not rest.endswith(ext):
                continue
            stamp = rest[: len(rest) - len(ext)] if ext else rest
            secs, dot, millis = stamp.rpartition(".")
            if not dot or len(millis) != 3 or not millis.isdigit():
                continue
            try:
                when = calendar.timegm(time.strptime(secs, _STAMP)) + int(millis) / 1000
            except ValueError:
                continue
            found.append((when, os.path.join(directory, entry)))
        found.sort(reverse=True)
        return found

    def _mill(self) -> None:
        """Remove backups beyond maxBackups or older than maxAge; gzip the rest when compress is on."""
        keep = []
        cutoff = time.time() - self.max_age if self.max_age else None
        for count, (when, path) in enumerate(self.backups()):
            if (self.max_backups and count >= self.max_backups) or (cutoff is not None and when < cutoff):
                try:
                    os.unlink(path)
                except OSError:
                    pass  # another process removed it first
            else:
                keep.append(path)
        if self.compress:
            for path in keep:
                if not path.endswith(".gz"):
                    _gzip(path)


def _gzip(path: str) -> None:
    """`path` → `path.gz` (written aside, then renamed); the original is removed. Skipped if another process is at it."""
    import fcntl
    import gzip
    import shutil

    try:
        src = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        try:
            fcntl.flock(src, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # another process is compressing it
        st = os.fstat(src)
        try:
            still = os.stat(path)
        except FileNotFoundError:
            return  # done (or removed) by another process while we waited
        if (still.st_dev, still.st_ino) != (st.st_dev, st.st_ino):
            return
        tmp = f"{path}.gz.{os.getpid()}.tmp"
        try:
            with os.fdopen(os.dup(src), "rb") as fin, gzip.open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            os.chmod(tmp, st.st_mode & 0o777)
            os.rename(tmp, path + ".gz")
            os.unlink(path)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    finally:
        os.close(src)


# ---- the process logger ---------------------------------------------------------------------

# A context variable rather than a plain global: a thread starts with none installed, so a
# daemon serving calls on worker threads gives each call its own logger (contextvars: ~0.2 ms).
_current: ContextVar[Logger | None] = ContextVar("multiplane_logger", default=None)
_standalone: Logger | None = None


def get() -> Logger:
    """The logger in charge: the one installed by `using`, else the standalone stderr logger."""
    global _standalone
    current = _current.get()
    if current is not None:
        return current
    if _standalone is None:
        _standalone = Logger("error", "", True)
    return _standalone


class using:  # used as a context manager, like a function
    """`with using(logger):` makes `logger` the process logger; the previous one comes back on exit."""

    def __init__(self, logger: Logger) -> None:
        self.logger = logger
        self._token: Token[Logger | None] | None = None

    def __enter__(self) -> Logger:
        self._token = _current.set(self.logger)
        return self.logger

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None


# The call's stderr: the process's own for a one-shot call; in the daemon, a buffer per request
# whose text the client writes to its stderr, so a runtime sees the same stderr either way.
_stderr: ContextVar[TextIO | None] = ContextVar("multiplane_stderr", default=None)


def stderr() -> TextIO | None:
    """Where this call's stderr text goes: the stream installed by `stderr_to`, else sys.stderr."""
    current = _stderr.get()
    return current if current is not None else sys.stderr


def stderr_write(data: bytes) -> None:
    """Write bytes to this call's stderr (decoded with U+FFFD for a text-only stream); never raises."""
    stream = stderr()
    if stream is None:
        return
    try:
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            stream.flush()
            buffer.write(data)
            buffer.flush()
        else:
            stream.write(data.decode("utf-8", "replace"))
            stream.flush()
    except (OSError, ValueError):
        pass  # a closed or broken stderr: the call's answer matters more


class stderr_to:  # used as a context manager, like `using`
    """`with stderr_to(stream):` sends this call's stderr (log lines, delegates' stderr) to `stream`."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._token: Token[TextIO | None] | None = None

    def __enter__(self) -> TextIO:
        self._token = _stderr.set(self.stream)
        return self.stream

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _stderr.reset(self._token)
            self._token = None


def reset() -> None:
    """Forget any installed logger and the standalone one (tests)."""
    global _standalone
    _current.set(None)
    _standalone = None


def internal_error(exc: BaseException, where: str) -> CniError:
    """A non-CNI exception is a bug: its traceback goes to the process log; the CNI error skel would answer.

    Call it from an `except` block. The text is skel's (`internal error: <type>: <text>`),
    so a built-in run in-process fails exactly as its standalone binary would.
    """
    from multiplane.errors import CniError

    get().bug(where)
    try:
        return CniError(f"internal error: {exc.__class__.__name__}: {exc}")
    except Exception:  # noqa: BLE001 - an exception whose text cannot be read
        return CniError(f"internal error: {exc.__class__.__name__}")
