"""Logging for the meta-plugin: stderr and/or a file, never stdout (stdout belongs to the CNI result).

Levels, most to least verbose: debug, verbose, error, panic (Multus's names). A line is
`<UTC time> [<level>] <message>`; the file is appended to, so several plugin processes
can share it.
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["Logger"]

_LEVELS = {"debug": 0, "verbose": 1, "error": 2, "panic": 3}


class Logger:
    def __init__(self, level: str = "error", path: str = "", to_stderr: bool = True) -> None:
        self.threshold = _LEVELS.get(level.lower(), _LEVELS["error"])
        self.path = path
        self.to_stderr = to_stderr

    def _write(self, level: str, message: str) -> None:
        if _LEVELS[level] < self.threshold:
            return
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} [{level}] {message}\n"
        # Messages quote what a hostile node sent (lone surrogates, bytes that are not UTF-8):
        # escape what UTF-8 cannot carry, so writing never raises.
        data = line.encode("utf-8", "backslashreplace")
        if self.to_stderr and sys.stderr is not None:
            try:
                sys.stderr.write(data.decode("utf-8"))
                sys.stderr.flush()
            except (OSError, ValueError):
                pass  # logging must never break a CNI call
        if self.path:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)
            except (OSError, ValueError):
                pass  # logging must never break a CNI call (ValueError: a NUL in the path)

    def debug(self, message: str) -> None:
        self._write("debug", message)

    def verbose(self, message: str) -> None:
        self._write("verbose", message)

    def error(self, message: str) -> None:
        self._write("error", message)
