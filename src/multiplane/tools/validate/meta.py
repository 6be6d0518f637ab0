"""Checking `00-multiplane.conf`: the model, what the meta-plugin ignores, and its inline delegates.

What a pod check needs from it (namespaces, defaultNetworks) is views.MetaContext.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from multiplane.spec.gojson import field, json_type
from multiplane.tools.validate.documents import spell
from multiplane.tools.validate.networks import check_network
from multiplane.tools.validate.plugin_config import nul_paths
from multiplane.tools.validate.schemas import MultiplaneConfig, delegate_has_type

if TYPE_CHECKING:
    from multiplane.tools.validate.documents import Loc, Where
    from multiplane.tools.validate.report import Run

__all__ = ["check_meta"]


def check_meta(run: Run, where: Where, root: Loc, obj: dict[str, Any]) -> None:
    """The meta-plugin's configuration, and each inline delegate it will run (unless clusterNetwork replaces them)."""
    for at in nul_paths(obj):
        run.error(where, root + at, "a NUL character (\\u0000): the runtime's call would be refused")
    try:
        MultiplaneConfig.model_validate(obj)
    except ValidationError as exc:
        run.pydantic(where, root, exc, obj)
    _log_options(run, where, root, obj)
    _log_level(run, where, root, obj)
    cluster = field(obj, "clusterNetwork")
    delegates = field(obj, "delegates")
    if cluster and delegates is not None:
        run.warning(where, root + spell(("delegates",), obj), "ignored: clusterNetwork is set")
    if field(obj, "multusNamespace") and field(obj, "namespace") is not None:
        run.warning(where, root + spell(("namespace",), obj), "ignored: multusNamespace is set")
    if not cluster and isinstance(delegates, list):
        for index, item in enumerate(delegates):
            if delegate_has_type(item):
                check_network(run, where, (*root, *spell(("delegates",), obj), index), item)


def _log_options(run: Run, where: Where, root: Loc, obj: dict[str, Any]) -> None:
    """logOptions values the logger replaces by their defaults."""
    from multiplane.logs import DEFAULT_OPTIONS

    options = field(obj, "logOptions")
    options_loc = root + spell(("logOptions",), obj)
    if options is not None and not isinstance(options, dict):
        run.warning(where, options_loc, f"ignored: must be an object, got {json_type(options)}")
    for key, default in DEFAULT_OPTIONS.items() if isinstance(options, dict) else ():
        value = field(options, key)
        if value is None:
            continue
        if isinstance(default, bool):
            ok, kind = isinstance(value, bool), "true or false"
        else:
            ok, kind = _sane_number(value), "a number below 1e15"
        if not ok:
            run.warning(where, options_loc + spell((key,), options), f"must be {kind}: logs with {key} {default}")


def _log_level(run: Run, where: Where, root: Loc, obj: dict[str, Any]) -> None:
    from multiplane.logs import LEVELS

    level = field(obj, "logLevel")
    if isinstance(level, str) and level and level.lower() not in LEVELS:
        run.warning(
            where,
            root + spell(("logLevel",), obj),
            f"unknown level {level!r}: logs at error (use one of {', '.join(LEVELS)})",
        )


def _sane_number(value: Any) -> bool:
    """What the logger takes for a size or an age: a number, not a bool, that logs._finite accepts (below 1e15)."""
    from multiplane.logs import _finite

    return isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value)
