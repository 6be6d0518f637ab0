"""Checking a NetworkAttachmentDefinition: the object, then its network (spec.config, or a file in confDir).

Lines inside a literal block (`config: |`) are exact; elsewhere they are the line of `config:`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from multiplane.errors import CniError
from multiplane.spec.gojson import field, json_type
from multiplane.tools.validate.documents import Where, json_lines, load_json, lookup, metadata_names
from multiplane.tools.validate.networks import check_network
from multiplane.tools.validate.schemas import NAD_API_VERSION, NetworkAttachmentDefinition
from multiplane.tools.validate.views import Nad

if TYPE_CHECKING:
    from multiplane.tools.validate.documents import Loc
    from multiplane.tools.validate.report import Run
    from multiplane.tools.validate.views import PluginView

__all__ = ["check_nad"]


def check_nad(run: Run, where: Where, root: Loc, nad: dict[str, Any]) -> None:
    """A NAD and the network it names; remembered in `run.nads` unless its spec.config is unreadable."""
    try:
        NetworkAttachmentDefinition.model_validate(nad)
    except ValidationError as exc:
        run.pydantic(where, root, exc, nad)
    if nad.get("apiVersion") != NAD_API_VERSION:
        run.warning(
            where,
            (*root, "apiVersion"),
            f"should be {NAD_API_VERSION}: the API server knows no other (local NAD files ignore it)",
        )
    name, namespace = metadata_names(nad)
    spec = nad.get("spec")
    raw = spec.get("config") if isinstance(spec, dict) else None
    info = Nad(where, root, namespace, name)
    if spec and not isinstance(spec, dict):
        run.nads.append(info)  # the model said so; there is no config to look for
        return
    cfg_loc = (*root, "spec", "config")
    if raw is not None and not isinstance(raw, str) and not raw:
        run.warning(where, cfg_loc, f"read as empty: spec.config should be a string, got {json_type(raw)}")
    if isinstance(raw, str) and raw.strip():
        cfg_where = _embedded(where, cfg_loc, raw)
        obj = _parse_config(run, where, cfg_where, cfg_loc, raw)
        if obj is None:
            return
        if name and not field(obj, "name"):
            obj["name"] = name  # as nad_config does: the NAD's name is the network's
        info.plugins = check_network(run, cfg_where, cfg_loc, obj) or []
    elif (raw is None or isinstance(raw, str) or not raw) and name:
        info.plugins = _from_conf_dir(run, where, cfg_loc, name) or []
    info.ok = bool(info.plugins)
    run.nads.append(info)


def _parse_config(run: Run, where: Where, cfg_where: Where, cfg_loc: Loc, raw: str) -> dict[str, Any] | None:
    """spec.config's JSON object, or None after an error."""
    try:
        obj = load_json(raw)
    except json.JSONDecodeError as exc:
        run.error(
            where,
            cfg_loc,
            f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno} of spec.config)",
            line=cfg_where.line((*cfg_loc, "\0line", exc.lineno)),
        )
        return None
    except (ValueError, RecursionError) as exc:
        run.error(where, cfg_loc, f"invalid JSON: {exc}")
        return None
    if not isinstance(obj, dict):
        run.error(where, cfg_loc, f"a CNI configuration must be a JSON object, got {json_type(obj)}")
        return None
    return obj


def _embedded(where: Where, cfg_loc: Loc, text: str) -> Where:
    """Lines inside spec.config: exact for a literal block (`config: |`), else the line of `config:`."""
    start = where.blocks.get(cfg_loc)
    inner = json_lines(text) if start is not None else {}

    def line(loc: Loc) -> int | None:
        if start is not None and loc[: len(cfg_loc)] == cfg_loc:
            sub = loc[len(cfg_loc) :]
            if sub[:1] == ("\0line",):
                return start + sub[1]
            found = lookup(inner, sub)
            if found is not None:
                return start + found
        return where.line(loc)

    return Where(where.file, where.doc, line=line)


def _from_conf_dir(run: Run, where: Where, cfg_loc: Loc, name: str) -> list[PluginView] | None:
    """An empty spec.config: the CNI file named like the NAD in confDir, found as the meta-plugin finds it."""
    from multiplane.plugins.meta.networks import conf_files, load_file

    directory = run.conf_dir
    try:
        paths = conf_files(directory)
    except CniError as exc:
        run.error(where, cfg_loc, f"empty, and confDir cannot be read: {exc.msg}")
        return None
    for path in paths:
        try:
            net = load_file(path)
        except CniError as exc:
            run.error(where, cfg_loc, f"empty; looking for {name!r} in {directory} stops at a broken file: {exc.msg}")
            return None
        if net.name == name:
            file_where = Where(path, 0, json_lines(net.raw.decode()))
            return check_network(run, file_where, (), net.obj)
    run.error(
        where,
        cfg_loc,
        f"empty, and no CNI file named {name!r} is in {directory} (run on the node, or pass --conf-dir)",
    )
    return None
