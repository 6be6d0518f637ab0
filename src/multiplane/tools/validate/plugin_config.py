"""The config a plugin receives from the meta-plugin, and what the plugin's own readers refuse in it.

Pure: no diagnostics are recorded here; the callers say where a problem is.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from multiplane.spec.gojson import field
from multiplane.tools.validate.schemas import HOST_LOCAL_TYPES, PLUGIN, HostLocalConf, error_loc, message
from multiplane.tools.validate.views import ipam_type

if TYPE_CHECKING:
    from collections.abc import Callable

    from multiplane.tools.validate.documents import Loc

__all__ = ["effective", "nul_paths", "plugin_problems"]

NUL_IN_CONFIG = "a NUL character (\\u0000): the plugins refuse the whole config"


def effective(
    plugin: dict[str, Any],
    name: Any,
    version: Any,
    caps: dict[str, Any] | None = None,
    cni_args: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The config a plugin receives from the meta-plugin: plugins/meta/runner.py `_stdin`, step by step.

    The list's name and cniVersion; no other spelling of prevResult/runtimeConfig; the
    capability values the plugin declares as `runtimeConfig` (replacing the stored one); a
    selection's `cni-args` merged into `args.cni`. The runner re-encodes it with sorted keys,
    at every level, so when a key is spelled twice ("mode" and "Mode") the spelling that
    sorts last wins, whatever the document's order.
    """
    eff = dict(plugin)
    eff["name"], eff["cniVersion"] = name, version
    for key in [k for k in eff if isinstance(k, str) and k.lower() in ("prevresult", "runtimeconfig")]:
        if key not in ("prevResult", "runtimeConfig"):
            eff.pop(key)
    declared = field(eff, "capabilities")
    if isinstance(declared, dict) and caps:
        runtime = {k: caps[k] for k, on in declared.items() if on is True and k in caps}
        if runtime:
            eff["runtimeConfig"] = runtime
    if cni_args:
        args = eff.get("args") if isinstance(eff.get("args"), dict) else {}
        inner = args.get("cni") if isinstance(args.get("cni"), dict) else {}
        eff["args"] = {**args, "cni": {**inner, **cni_args}}
    return json.loads(json.dumps(eff, sort_keys=True))


def nul_paths(value: Any) -> list[Loc]:
    """Where a string (key or value) holds NUL: the plugins' decoder refuses the whole config for it."""
    found: list[Loc] = []
    stack: list[tuple[Any, Loc]] = [(value, ())]
    while stack:
        node, at = stack.pop()
        if isinstance(node, str):
            if "\0" in node:
                found.append(at)
        elif isinstance(node, dict):
            for key, item in node.items():
                if isinstance(key, str) and "\0" in key:
                    found.append((*at, key))
                stack.append((item, (*at, key)))
        elif isinstance(node, list):
            stack.extend((item, (*at, i)) for i, item in enumerate(node))
    return sorted(found, key=str)


def plugin_problems(eff: dict[str, Any]) -> tuple[list[tuple[Loc, str]], list[Any]]:
    """What the readers of this config refuse: the plugin's model, and host-local's when it is the IPAM.

    Returns the errors (path below the plugin, message) and the validated models.
    """
    problems = [(at, NUL_IN_CONFIG) for at in nul_paths(eff)]
    readers: list[Callable[[Any], Any]] = [PLUGIN.validate_python]
    if ipam_type(eff) in HOST_LOCAL_TYPES and field(eff, "type") != "multiplane":  # the meta-plugin runs no IPAM
        readers.append(HostLocalConf.model_validate)
    models: list[Any] = []
    for read in readers:
        try:
            models.append(read(eff))
        except ValidationError as exc:
            problems += [(error_loc(err), message(err)) for err in exc.errors(include_url=False)]
    return problems, models
