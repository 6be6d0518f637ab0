"""Run a delegated plugin: built-in types as Python calls, every other type by exec from CNI_PATH.

Built-in IPAM (`host-local`, `multiplane-host-local`) runs in-process with the same request
(stdin bytes, environment, only the command changed), so one pod attachment costs one
process start. Its on-disk state is the reference's, so choosing ours for `host-local` is
invisible to the node. Anything else is found in CNI_PATH and exec'd as the spec says.
"""

from __future__ import annotations

from multiplane.skel import Request
from multiplane.spec.args import CmdArgs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from multiplane.spec.result import Result

__all__ = ["BUILTIN_IPAM", "ipam"]

BUILTIN_IPAM = frozenset({"host-local", "multiplane-host-local"})


def _with_command(req: Request, command: str) -> Request:
    a = req.args
    env = dict(a.env)
    env["CNI_COMMAND"] = command
    return Request(CmdArgs(command, a.container_id, a.netns, a.ifname, a.args, a.path, a.stdin, env), req.conf)


def ipam(req: Request, plugin_type: str, command: str) -> Result | None:
    """Run IPAM `plugin_type` for `command` on this request; the result for ADD, else None."""
    if plugin_type in BUILTIN_IPAM:
        from multiplane.plugins.host_local import HostLocal

        plugin = HostLocal()
        sub = _with_command(req, command)
        if command == "ADD":
            return plugin.add(sub)
        {"DEL": plugin.delete, "CHECK": plugin.check, "GC": plugin.gc, "STATUS": plugin.status}[command](sub)
        return None
    from multiplane.delegate.exec import ExecDelegator

    delegator = ExecDelegator(req.args.path)
    env = req.args.env
    if command == "ADD":
        return delegator.add(plugin_type, req.conf.stdin, env, req.conf.cni_version)
    {"DEL": delegator.delete, "CHECK": delegator.check, "GC": delegator.gc, "STATUS": delegator.status}[command](
        plugin_type, req.conf.stdin, env
    )
    return None
