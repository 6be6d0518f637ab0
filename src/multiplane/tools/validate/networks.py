"""Checking a CNI configuration (one plugin or a conflist): each plugin with the config it will receive.

The plugin's own traps (second default routes, pools holding node addresses) are warnings.py's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from multiplane.spec.gojson import field, json_type
from multiplane.tools.validate.documents import spell
from multiplane.tools.validate.plugin_config import effective, plugin_problems
from multiplane.tools.validate.schemas import HostLocalConf
from multiplane.tools.validate.views import PluginView
from multiplane.tools.validate.warnings import plugin_warnings

if TYPE_CHECKING:
    from multiplane.tools.validate.documents import Loc, Where
    from multiplane.tools.validate.report import Run

__all__ = ["check_network"]


def check_network(run: Run, where: Where, root: Loc, obj: Any) -> list[PluginView] | None:
    """One plugin or a conflist, each plugin checked with the config multiplane will hand it.

    Returns the plugins' views, or None when the network is refused (the errors are in `run`).
    """
    if not isinstance(obj, dict):
        run.error(where, root, f"a CNI configuration must be a JSON object, got {json_type(obj)}")
        return None
    members = _members(run, where, root, obj)
    if members is None:
        return None
    is_list = not field(obj, "type")
    name = field(obj, "name") or ""
    version = field(obj, "cniVersion") or "0.1.0"
    views: list[PluginView] = []
    failed = False
    for loc, plugin in members:
        eff = effective(plugin, name, version)
        view, ok = _check_plugin(run, where, root, loc, obj, plugin, eff, is_list)
        failed = failed or not ok
        views.append(view)
    return None if failed else views


def _members(run: Run, where: Where, root: Loc, obj: dict[str, Any]) -> list[tuple[Loc, dict[str, Any]]] | None:
    """The plugins of a network with their paths: the object itself, or a conflist's objects; None if neither."""
    plugins = field(obj, "plugins")
    if field(obj, "type"):
        return [(root, obj)]
    if isinstance(plugins, list) and plugins and isinstance(plugins[0], dict) and field(plugins[0], "type"):
        key = spell(("plugins",), obj)[0]
        members: list[tuple[Loc, dict[str, Any]]] = []
        for index, plugin in enumerate(plugins):
            if isinstance(plugin, dict):
                members.append(((*root, key, index), plugin))
            else:
                run.warning(
                    where,
                    (*root, key, index),
                    f"ignored: a plugin must be an object, got {json_type(plugin)} (libcni refuses the whole list)",
                )
        return members
    if isinstance(plugins, list) and plugins:
        first = (*root, *spell(("plugins",), obj), 0)
        if not isinstance(plugins[0], dict):
            run.error(where, first, f"must be a plugin object, got {json_type(plugins[0])}")
        else:
            run.error(where, (*first, "type"), "required: the first plugin needs a type")
    else:
        run.error(where, root, "must have a 'type' (one plugin) or a non-empty 'plugins' list (a conflist)")
    return None


def _check_plugin(
    run: Run,
    where: Where,
    root: Loc,
    loc: Loc,
    obj: dict[str, Any],
    plugin: dict[str, Any],
    eff: dict[str, Any],
    is_list: bool,
) -> tuple[PluginView, bool]:
    """One plugin: its readers' errors at the paths the document spells, else its view and its warnings."""
    view = PluginView(loc, eff, plugin, field(obj, "name") or "", field(obj, "cniVersion") or "0.1.0")
    problems, models = plugin_problems(eff)
    for rel, message in problems:
        if is_list and rel[:1] in (("name",), ("cniVersion",)):
            full = root + spell(rel, obj)  # the list's own name and cniVersion
        else:
            full = loc + spell(rel, eff)
        run.error(where, full, message)
    if problems:
        return view, False
    for model in models:
        if isinstance(model, HostLocalConf):
            view.sets = model.sets
            view.gateways = _gateways(model)
    plugin_warnings(run, where, loc, eff, view)  # what the plugin reads, not the document's order
    return view, True


def _gateways(conf: HostLocalConf) -> set[Any]:
    """The gateways of every range host-local will use (it never hands them out)."""
    found: set[Any] = set()
    for _, rset in conf.sets:
        for rng in rset:
            if rng.gateway_ip is not None:
                found.add(rng.gateway_ip)
    return found
