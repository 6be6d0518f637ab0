"""Run an external CNI plugin as a runtime does (libcni pkg/invoke), and read its answer.

* The binary is the file named `type` in the first `CNI_PATH` directory that has it as a
  regular file (symlinks followed); a name with a path separator is refused.
* It gets our environment with only `CNI_COMMAND` set to the verb, and the stdin bytes we
  were given, byte for byte (spec §4: IPAM plugins see the whole config).
* "text file busy" at exec (a binary being replaced) is retried 5 times, 1 s apart.
* A plugin that runs past the timeout is killed; its error is "try again later" (11).
* Its stderr is copied to ours. At `debug` the process log (multiplane.logs) gets the
  binary's path, its exit status, how long it ran and what it wrote to stderr. Its answer is parsed with libcni's rules: exit 0 means
  success (ADD must print a result; a missing cniVersion means the config's); non-zero
  means the error object on stdout, or else the stderr text, keeping the plugin's code.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
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

__all__ = ["DEFAULT_TIMEOUT", "ExecDelegator", "find_plugin", "parse_error", "parse_result", "valid_plugin_type"]

DEFAULT_TIMEOUT = 60.0
_TXTBSY_TRIES = 5


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


def find_plugin(plugin_type: str, paths: Sequence[str]) -> str:
    """Path of the plugin binary; InvalidConfig (7) for a bad name, PluginNotFound if it is not there.

    The name is checked before any directory is searched. A search directory that cannot be
    a path (a NUL, text that is not UTF-8) is skipped like a missing one.
    """
    if not valid_plugin_type(plugin_type):
        raise InvalidConfig(f"invalid plugin name: '{printable(str(plugin_type))}'")
    if not paths:
        raise CniError("no paths provided")
    for directory in paths:
        candidate = os.path.join(directory, plugin_type)
        try:
            if stat.S_ISREG(os.stat(candidate).st_mode):
                return candidate
        except (OSError, ValueError):
            continue
    raise PluginNotFound(f'failed to find plugin "{plugin_type}" in path [{" ".join(paths)}]')


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


class ExecDelegator:
    """Runs plugins found in `paths` (binDir entries first, then CNI_PATH)."""

    def __init__(self, paths: Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> None:
        self.paths = tuple(paths)
        self.timeout = timeout

    def _exec(self, plugin_type: str, command: str, stdin: bytes, env: Mapping[str, str]) -> bytes:
        binary = find_plugin(plugin_type, self.paths)
        log = logs.get()
        log.debug(f"exec {binary} ({command}, CNI_IFNAME={env.get('CNI_IFNAME', '')})")
        started = time.monotonic()
        child_env = dict(env)
        child_env["CNI_COMMAND"] = command
        for attempt in range(_TXTBSY_TRIES):
            try:
                proc = subprocess.run(
                    [binary], input=stdin, env=child_env, capture_output=True, timeout=self.timeout, check=False
                )
                break
            except OSError as exc:
                if exc.errno != errno.ETXTBSY or attempt == _TXTBSY_TRIES - 1:
                    raise CniError(f'failed to execute plugin "{binary}": {exc.strerror or exc}') from exc
                time.sleep(1)
            except ValueError as exc:
                # An environment exec cannot carry: a NUL, or text that is not UTF-8 in a name or value.
                raise InvalidEnvironment(f'cannot execute plugin "{plugin_type}": {exc}') from exc
            except subprocess.TimeoutExpired as exc:
                raise TryAgainLater(f'plugin "{plugin_type}" ({command}) timed out after {self.timeout:g}s') from exc
        if log.enabled("debug"):
            took = (time.monotonic() - started) * 1000
            said = f"; its stderr: {proc.stderr[:4096].decode('utf-8', 'replace').strip()}" if proc.stderr else ""
            log.debug(f"exec {binary} ({command}) exited {proc.returncode} after {took:.1f} ms{said}")
        if proc.stderr:
            logs.stderr_write(proc.stderr)  # the call's stderr: ours, or the daemon client's
        if proc.returncode != 0:
            raise parse_error(proc.returncode, proc.stdout, proc.stderr)
        return proc.stdout

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
