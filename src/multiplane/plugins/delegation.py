"""Run a delegated plugin: built-in types as Python calls, every other type by exec from the search path.

Used by macvlan for its IPAM and by the meta-plugin for every delegate. Built-in types
(`macvlan`, `host-local` and their `multiplane-` names, and `multiplane-cluster-ipam`) go through the same skel code path
the standalone binaries use (same environment checks, version gates and errors), so one
pod attachment costs one process start; host-local's on-disk state is the reference's, so
running ours for `host-local` is invisible to the node. Anything else is found in the
search path and executed as the spec says (delegate/exec.py).

A built-in logs through the process logger (multiplane.logs), so in-process it writes to
the meta-plugin's log. A Python exception escaping a built-in is a bug: its traceback goes
to that log and the caller gets the CNI error skel gives for it standalone (code 999,
`internal error: <type>: <text>`).
"""

from __future__ import annotations

import json

from multiplane.errors import CniError
from multiplane.spec.result import Result

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from multiplane.skel import Request

__all__ = ["BUILTINS", "ipam", "run"]

BUILTINS = {
    "macvlan": "multiplane-macvlan",
    "host-local": "multiplane-host-local",
    "multiplane-macvlan": "multiplane-macvlan",
    "multiplane-host-local": "multiplane-host-local",
    "multiplane-cluster-ipam": "multiplane-cluster-ipam",  # has no reference twin: only the multiplane name
}
_METHODS = {"DEL": "delete", "CHECK": "check", "GC": "gc", "STATUS": "status"}


def run(
    plugin_type: str, command: str, stdin: bytes, env: Mapping[str, str], paths: Sequence[str], version: str
) -> Result | None:
    """Run `plugin_type` for `command` with exactly these stdin bytes; the parsed result for ADD."""
    child = dict(env)
    child["CNI_COMMAND"] = command
    child["CNI_PATH"] = ":".join(paths)
    builtin = BUILTINS.get(plugin_type)
    if builtin is not None:
        from multiplane import skel
        from multiplane.plugins import REGISTRY

        try:
            out = skel.dispatch(REGISTRY[builtin], child, stdin)
        except CniError:
            raise
        except Exception as exc:  # a bug: traceback to the log, skel's answer to the caller
            from multiplane import logs

            raise logs.internal_error(exc, f"{builtin} {command} (in-process)") from exc
        return Result.parse(json.loads(out), version) if command == "ADD" and out else None
    from multiplane import frontdoor
    from multiplane.delegate.exec import ExecDelegator

    front = frontdoor.current()
    child.update(front.delegate_env)  # in the daemon: a delegate's own multiplane call runs in its process
    delegator = ExecDelegator(paths, root=front.exec_root) if front.exec_root else ExecDelegator(paths)
    if command == "ADD":
        return delegator.add(plugin_type, stdin, child, version)
    getattr(delegator, _METHODS[command])(plugin_type, stdin, child)
    return None


def ipam(req: Request, plugin_type: str, command: str) -> Result | None:
    """A main plugin's IPAM call: the request's own stdin and environment, only the command changed."""
    return run(plugin_type, command, req.conf.stdin, req.args.env, req.args.path, req.conf.cni_version)
