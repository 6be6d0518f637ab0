"""Run one CNI command for a plugin: the only code that writes to stdout.

`run(plugin, env, stdin, stdout, stderr)` follows containernetworking/cni pkg/skel:
environment checks, stdin decoding, the per-command version gates, then the handler.
Every failure becomes one error JSON object on stdout and exit status 1; a Python
exception never escapes as a traceback on stdout.
"""

from __future__ import annotations

import sys

from multiplane.errors import CniError, IncompatibleVersion, InvalidEnvironment, go_json, go_string
from multiplane.spec import version as versions
from multiplane.spec.args import CmdArgs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Protocol, TextIO

    from multiplane.spec.netconf import NetConf
    from multiplane.spec.result import Result

    class Plugin(Protocol):
        """A CNI plugin: a name for the about text and one handler per command."""

        name: str

        def add(self, req: Request) -> Result: ...
        def check(self, req: Request) -> None: ...
        def delete(self, req: Request) -> None: ...
        def gc(self, req: Request) -> None: ...
        def status(self, req: Request) -> None: ...


__all__ = ["Request", "dispatch", "run", "top_level"]


class Request:
    """What a handler gets: the validated environment and the parsed request config."""

    __slots__ = ("args", "conf")

    def __init__(self, args: CmdArgs, conf: NetConf) -> None:
        self.args = args
        self.conf = conf


def _about(name: str) -> str:
    from multiplane import __version__

    return f"CNI {name} plugin {__version__}\nCNI protocol versions supported: {', '.join(versions.SUPPORTED)}\n"


class _ScanContext:
    """What `_json.make_scanner` reads from a JSONDecoder: strict strings, no hooks, plain numbers."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict[str, str] = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        raise ValueError(f"{name} is not JSON")


def top_level(stdin: bytes) -> dict | None:
    """stdin's JSON object, or None when stdin is not one JSON object; for a quick look at one key.

    Decoded with the json package's own C scanner, not the package: `import json` loads `re`
    and `enum` (~5 ms here), more than the rest of a VERSION call. Like Go's decoder, bytes
    that are not UTF-8 become U+FFFD. tests/unit/test_version_path.py checks it against json.loads.
    (The VERSION reply and the daemon client's `daemonSocket` look use it; a command's real
    parse is NetConf.parse.)
    """
    from _json import make_scanner

    text = stdin.decode("utf-8", "replace")
    start = len(text) - len(text.lstrip(" \t\n\r"))
    try:
        obj, end = make_scanner(_ScanContext())(text, start)
    except Exception:  # noqa: BLE001 - StopIteration, JSONDecodeError, RecursionError: not a JSON document
        return None
    if text[end:].strip(" \t\n\r") or not isinstance(obj, dict):
        return None
    return obj


def _requested_version(stdin: bytes) -> str:
    """The caller's cniVersion in a VERSION request, "" if there is none or stdin is not a JSON object."""
    obj = top_level(stdin)
    version = obj.get("cniVersion") if obj is not None else None
    return version if isinstance(version, str) else ""


def _version_reply(stdin: bytes) -> str:
    """VERSION echoes the caller's cniVersion (spec §2.5); garbage stdin still gets an answer.

    The reply is what `go_json(…, indent=None)` would write, then a newline (Go's json.Encoder).
    """
    requested = _requested_version(stdin) or versions.CURRENT
    supported = ",".join(f'"{v}"' for v in versions.SUPPORTED)
    return f'{{"cniVersion":{go_string(requested)},"supportedVersions":[{supported}]}}\n'


def _gate(command: str, conf_version: str) -> None:
    """The per-command version gate of skel (codes 1 and 6, reference texts)."""
    minimum = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}.get(command)
    if minimum is not None:
        if not versions.at_least(conf_version, minimum):
            raise IncompatibleVersion(f"config version does not allow {command}")
        if not any(versions.at_least(v, conf_version) for v in versions.SUPPORTED):
            raise IncompatibleVersion(f"plugin version does not allow {command}")
    if conf_version not in versions.SUPPORTED:
        quoted = " ".join(f'"{v}"' for v in versions.SUPPORTED)
        raise IncompatibleVersion(
            "incompatible CNI versions", f'config is "{conf_version}", plugin supports [{quoted}]'
        )


def _error_version(stdin: bytes) -> str:
    """The cniVersion to put in an error: the request's when readable, else our newest."""
    ver = _requested_version(stdin)
    return ver if ver in versions.SUPPORTED else versions.CURRENT


def _resolve(plugin: Plugin | Callable[[], Plugin]) -> Plugin:
    return plugin() if callable(plugin) else plugin


def dispatch(plugin: Plugin | Callable[[], Plugin], env: Mapping[str, str], stdin: bytes) -> str | None:
    """Run the command; returns what goes to stdout on success. Raises CniError.

    `plugin` may be a factory: it is called only for commands that need the plugin, so
    VERSION never imports a plugin's modules.
    """
    args = CmdArgs.from_env(env, stdin)
    if args.command == "VERSION":
        return _version_reply(stdin)
    from multiplane.spec.netconf import NetConf

    conf = NetConf.parse(stdin)
    if args.command not in ("ADD", "CHECK", "DEL", "GC", "STATUS"):
        raise InvalidEnvironment(f"unknown CNI_COMMAND: {args.command}")
    _gate(args.command, conf.cni_version)
    req = Request(args, conf)
    plugin = _resolve(plugin)
    if args.command == "ADD":
        result = plugin.add(req)
        return go_json(result.to_dict(conf.cni_version))
    handler = {"CHECK": plugin.check, "DEL": plugin.delete, "GC": plugin.gc, "STATUS": plugin.status}[args.command]
    handler(req)
    return None


# What stdout gets when even an error object cannot be produced (a bug): ASCII, built at import.
# (Spelled out rather than built by to_json at import: that would load the json package on
# every call, VERSION included; tests/unit/test_version_path.py checks they are equal.)
_LAST_RESORT = (
    '{\n    "cniVersion": "' + versions.CURRENT + '",\n    "code": 999,\n'
    '    "msg": "internal error: the answer could not be encoded (see stderr)",\n    "details": ""\n}'
)


def _tell(stderr: TextIO | None, text: str) -> None:
    """Write to stderr if there is one; a broken stderr must not cost the runtime its answer."""
    try:
        if stderr is not None:
            stderr.write(text)
            stderr.flush()
    except (OSError, ValueError):
        pass


def _emit(stdout: TextIO, text: str, stderr: TextIO | None) -> bool:
    """Write one answer; False (and nothing written) when it is not valid UTF-8 text."""
    try:
        text.encode()
    except UnicodeEncodeError:
        import traceback

        _tell(stderr, traceback.format_exc())
        return False
    stdout.write(text)
    stdout.flush()
    return True


def _error_text(exc: CniError, stdin: bytes, stderr: TextIO | None) -> str:
    try:
        return exc.to_json(_error_version(stdin))
    except Exception:  # noqa: BLE001 - an error that cannot be serialised is a bug; still answer
        import traceback

        _tell(stderr, traceback.format_exc())
        return _LAST_RESORT


def run(
    plugin: Plugin | Callable[[], Plugin],
    env: Mapping[str, str],
    stdin: bytes,
    stdout: TextIO,
    stderr: TextIO | None = sys.stderr,
    name: str = "",
) -> int:
    """Run one CNI invocation; write the result or one error object to stdout; return the exit status.

    Whatever happens, stdout gets exactly one JSON object that encodes as UTF-8: the result,
    the CniError raised, `internal error: …` (code 999, traceback on stderr) for any other
    exception, and a fixed internal error when even that cannot be serialised.
    """
    if not env.get("CNI_COMMAND"):
        # skel prints an "about" text for humans who run the binary by hand.
        _tell(stderr, _about(name or _resolve(plugin).name))
        return 0
    try:
        out = dispatch(plugin, env, stdin)
    except CniError as exc:
        error = exc
    except Exception as exc:  # noqa: BLE001 - the last line of defence must still speak CNI
        import traceback

        _tell(stderr, traceback.format_exc())
        try:
            error = CniError(f"internal error: {exc.__class__.__name__}: {exc}")
        except Exception:  # noqa: BLE001 - an exception whose text cannot be read
            error = CniError(f"internal error: {exc.__class__.__name__}")
    else:
        if out is None or _emit(stdout, out, stderr):
            return 0
        error = CniError("internal error: the result could not be encoded as UTF-8 (see stderr)")
    if not _emit(stdout, _error_text(error, stdin, stderr), stderr):
        stdout.write(_LAST_RESORT)
        stdout.flush()
    return 1
