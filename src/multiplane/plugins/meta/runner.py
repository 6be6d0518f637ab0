"""Run one delegate network the way a runtime (libcni) runs a network list.

For each plugin object of the network: stdin = the object with the list's `name` and
`cniVersion`, `runtimeConfig` built from the capability args the plugin declares (and only
those), `args.cni` merged from the selection's `cni-args`, and `prevResult`: on ADD the
previous plugin's result (none for the first), on CHECK/DEL the cached final result
(0.4.0+). DEL runs the plugins in reverse. GC and STATUS only for lists at 1.1.0+, with
`cni.dev/valid-attachments` (and the legacy `cni.dev/attachments`) on GC.

Built-in types (`macvlan`, `host-local` and their `multiplane-` names) run in this process
through the same skel code path the standalone binaries use (same checks, same errors);
everything else is executed from binDir + CNI_PATH. At `debug` each call is logged with
the network, interface, type, command, where it ran (`in-process` or `exec <path>`), how
long it took and its result or error.
"""

from __future__ import annotations

import json
import time

from multiplane import logs
from multiplane.errors import CniError
from multiplane.plugins import delegation
from multiplane.spec import version as versions
from multiplane.spec.gojson import field
from multiplane.spec.result import Result

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from multiplane.plugins.meta.networks import NetworkConfig

__all__ = ["Invoker"]


def _stdin(
    plugin: dict[str, Any],
    net: NetworkConfig,
    prev: Result | None,
    cap_args: Mapping[str, Any],
    cni_args: Mapping[str, Any] | None,
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    obj = dict(plugin)
    obj["name"], obj["cniVersion"] = net.name, net.cni_version
    for key in [
        k for k in obj if k.lower() in ("prevresult", "runtimeconfig") and k not in ("prevResult", "runtimeConfig")
    ]:
        obj.pop(key)
    if prev is not None:
        obj["prevResult"] = prev.to_dict(net.cni_version)
    caps = field(obj, "capabilities")
    if isinstance(caps, dict):
        runtime = {k: cap_args[k] for k, on in caps.items() if on is True and k in cap_args}
        if runtime:
            obj["runtimeConfig"] = runtime  # replaces, as libcni does
    if cni_args:
        args = obj.get("args") if isinstance(obj.get("args"), dict) else {}
        inner = args.get("cni") if isinstance(args.get("cni"), dict) else {}
        obj["args"] = {**args, "cni": {**inner, **cni_args}}
    if extra:
        obj.update(extra)
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class Invoker:
    """Runs plugins for one meta call: `paths` is binDir followed by CNI_PATH."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def run(
        self, plugin_type: str, command: str, stdin: bytes, env: Mapping[str, str], version: str, network: str = ""
    ) -> Result | None:
        """One plugin call; at `debug` the log gets type, command, where it ran, duration and outcome."""
        log = logs.get()
        if not log.enabled("debug"):
            return delegation.run(plugin_type, command, stdin, env, self.paths, version)
        where = self.where(plugin_type)
        what = f"delegate {network or '?'} ({env.get('CNI_IFNAME', '')}): {plugin_type} {command} {where}"
        started = time.monotonic()
        try:
            result = delegation.run(plugin_type, command, stdin, env, self.paths, version)
        except Exception as exc:
            log.debug(f"{what}: failed after {_ms(started)}: {exc}")
            raise
        log.debug(f"{what}: ok after {_ms(started)}{_shown(result, version)}")
        return result

    def where(self, plugin_type: str) -> str:
        """`in-process` for a built-in, else `exec <path>` (or why there is none)."""
        if plugin_type in delegation.BUILTINS:
            return "in-process"
        from multiplane.delegate.exec import find_plugin

        try:
            return f"exec {find_plugin(plugin_type, self.paths)}"
        except CniError as exc:
            return f"exec ({exc.msg})"

    def add(
        self,
        net: NetworkConfig,
        env: Mapping[str, str],
        cap_args: Mapping[str, Any],
        cni_args: Mapping[str, Any] | None,
    ) -> Result:
        prev: Result | None = None
        for plugin in net.plugins:
            stdin = _stdin(plugin, net, prev, cap_args, cni_args)
            prev = self.run(field(plugin, "type"), "ADD", stdin, env, net.cni_version, net.name)
        if prev is None:  # runtime check, not an assert: asserts vanish under -O
            raise CniError(f'network "{net.name}": ADD gave no result')
        return prev

    def delete(
        self,
        net: NetworkConfig,
        env: Mapping[str, str],
        cap_args: Mapping[str, Any],
        cni_args: Mapping[str, Any] | None,
        cached: Result | None,
    ) -> None:
        prev = cached if cached is not None and versions.has_check(_safe(net.cni_version)) else None
        for plugin in reversed(net.plugins):
            stdin = _stdin(plugin, net, prev, cap_args, cni_args)
            self.run(field(plugin, "type"), "DEL", stdin, env, net.cni_version, net.name)

    def check(
        self,
        net: NetworkConfig,
        env: Mapping[str, str],
        cap_args: Mapping[str, Any],
        cni_args: Mapping[str, Any] | None,
        cached: Result,
    ) -> None:
        if not versions.has_check(_safe(net.cni_version)) or str(field(net.obj, "disableCheck")).lower() == "true":
            return
        for plugin in net.plugins:
            stdin = _stdin(plugin, net, cached, cap_args, cni_args)
            self.run(field(plugin, "type"), "CHECK", stdin, env, net.cni_version, net.name)

    def gc(self, net: NetworkConfig, env: Mapping[str, str], valid: list[dict[str, str]]) -> list[str]:
        """GC every plugin of a 1.1.0+ list; returns the errors (all plugins are tried)."""
        if not versions.has_gc_status(_safe(net.cni_version)) or str(field(net.obj, "disableGC")).lower() == "true":
            return []
        errors = []
        keys = {"cni.dev/valid-attachments": valid, "cni.dev/attachments": valid}
        for plugin in net.plugins:
            try:
                stdin = _stdin(plugin, net, None, {}, None, keys)
                self.run(field(plugin, "type"), "GC", stdin, env, net.cni_version, net.name)
            except Exception as exc:  # noqa: BLE001 - collect and go on, as libcni does
                errors.append(f"{net.name}: {exc}")
        return errors

    def status(self, net: NetworkConfig, env: Mapping[str, str]) -> None:
        if not versions.has_gc_status(_safe(net.cni_version)):
            return
        for plugin in net.plugins:
            stdin = _stdin(plugin, net, None, {}, None)
            self.run(field(plugin, "type"), "STATUS", stdin, env, net.cni_version, net.name)


def _shown(result: Result | None, version: str) -> str:
    if result is None:
        return ""
    try:
        return f": result {json.dumps(result.to_dict(version), sort_keys=True)}"
    except Exception as exc:  # noqa: BLE001 - a debug line must not fail the call; the caller will see it
        return f": a result that cannot be shown ({exc})"


def _ms(started: float) -> str:
    return f"{(time.monotonic() - started) * 1000:.1f} ms"


def _safe(version: str) -> str:
    try:
        versions.parse(version)
    except Exception:  # noqa: BLE001 - an unparseable version gates nothing in
        return "0.0.0"
    return version
