"""Reading the input: files, directories and stdin as JSON or YAML documents, and the line of every path.

It also says where things are (`Where`, JSON paths spelled as the document spells its keys);
it decides nothing about what a document is (kinds.py) or whether it is right.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = [
    "Document",
    "DocumentError",
    "Loc",
    "Where",
    "expand",
    "go_key",
    "json_lines",
    "load_json",
    "lookup",
    "metadata_names",
    "read_input",
    "render_path",
    "spell",
    "split_documents",
]

Loc = tuple[Any, ...]

JSON_SUFFIXES = (".json", ".conf", ".conflist")
YAML_SUFFIXES = (".yaml", ".yml")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# ---- paths and where they are -------------------------------------------------------------------------


def render_path(loc: Iterable[Any]) -> str:
    """A JSONPath: `$.spec.config.ipam.ranges[0][0].subnet`, `$.metadata.annotations['k8s.v1.cni.cncf.io/networks']`."""
    out = "$"
    for seg in loc:
        if isinstance(seg, int):
            out += f"[{seg}]"
        elif _PLAIN_KEY.fullmatch(str(seg)):
            out += f".{seg}"
        else:
            out += "[" + repr(str(seg)) + "]"
    return out


def go_key(node: dict[Any, Any], name: str) -> str | None:
    """The key of `node` Go's decoder reads for `name`: the last one equal to it ignoring case (None if none)."""
    found = None
    for key in node:
        if isinstance(key, str) and key.lower() == name.lower():
            found = key
    return found


def spell(loc: Loc, original: Any) -> Loc:
    """`loc` with each key spelled as the document spells it (the models fold keys' case, as Go does)."""
    out: list[Any] = []
    node = original
    for seg in loc:
        if isinstance(node, dict) and isinstance(seg, str):
            actual = go_key(node, seg)
            out.append(actual if actual is not None else seg)
            node = node.get(actual) if actual is not None else None
        elif isinstance(node, list) and isinstance(seg, int) and 0 <= seg < len(node):
            out.append(seg)
            node = node[seg]
        else:
            out.append(seg)
            node = None
    return tuple(out)


def lookup(lines: dict[Loc, int], loc: Loc) -> int | None:
    """The line of `loc`, or of its nearest ancestor that has one."""
    for n in range(len(loc), -1, -1):
        found = lines.get(tuple(loc[:n]))
        if found is not None:
            return found
    return None


class Where:
    """A document's file, its index in the file, and how to find the line of a path in it.

    `lines` maps paths to 1-based lines, `blocks` the literal block scalars (`config: |`) to the
    line of their `|`; `line` replaces the lookup (a document inside a string).
    """

    __slots__ = ("file", "doc", "lines", "blocks", "_line")

    def __init__(
        self,
        file: str,
        doc: int,
        lines: dict[Loc, int] | None = None,
        blocks: dict[Loc, int] | None = None,
        line: Callable[[Loc], int | None] | None = None,
    ) -> None:
        self.file, self.doc = file, doc
        self.lines, self.blocks = lines, blocks or {}
        self._line = line

    def line(self, loc: Loc) -> int | None:
        if self._line is not None:
            return self._line(loc)
        return lookup(self.lines, loc) if self.lines is not None else None


def metadata_names(obj: dict[str, Any]) -> tuple[str, str]:
    """A Kubernetes object's metadata.name and metadata.namespace ("" where absent or not strings)."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    name = meta.get("name") if isinstance(meta.get("name"), str) else ""
    namespace = meta.get("namespace") if isinstance(meta.get("namespace"), str) else ""
    return name, namespace


# ---- reading documents --------------------------------------------------------------------------------


class DocumentError(Exception):
    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message, self.line = message, line


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text} is out of range")
    return value


def load_json(text: str) -> Any:
    """JSON as the plugins read it (Go's decoder): no NaN/Infinity, no number beyond float64."""
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite)


def _node_lines(node: Any, lines: dict[Loc, int], blocks: dict[Loc, int], loc: Loc = ()) -> None:
    """The 1-based line of every path below `node`; `blocks`: literal block scalars (`|`) by path."""
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is None:
                continue
            if key_node.tag == "tag:yaml.org,2002:int" and key.isdigit():
                key = int(key)
            child = (*loc, key)
            lines[child] = key_node.start_mark.line + 1
            if isinstance(value_node, yaml.ScalarNode) and value_node.style == "|":
                blocks[child] = value_node.start_mark.line + 1
            _node_lines(value_node, lines, blocks, child)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _node_lines(item, lines, blocks, (*loc, index))


def json_lines(text: str) -> dict[Loc, int]:
    """Best effort: JSON read as YAML gives the line of each path (an empty map if it cannot)."""
    lines: dict[Loc, int] = {}
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines
    if node is not None:
        _node_lines(node, lines, {})
    return lines


class Document:
    __slots__ = ("data", "lines", "blocks", "index")

    def __init__(self, data: Any, lines: dict[Loc, int], blocks: dict[Loc, int], index: int) -> None:
        self.data, self.lines, self.blocks, self.index = data, lines, blocks, index


def split_documents(name: str, text: str) -> tuple[list[Document], DocumentError | None]:
    """Every document of a file (empty ones dropped) and the error that stopped reading, if any."""
    lowered = name.lower()
    as_json = lowered.endswith(JSON_SUFFIXES) or (
        not lowered.endswith(YAML_SUFFIXES) and text.lstrip()[:1] in ("{", "[")
    )
    return _json_document(text) if as_json else _yaml_documents(text)


def _json_document(text: str) -> tuple[list[Document], DocumentError | None]:
    try:
        data = load_json(text)
    except json.JSONDecodeError as exc:
        return [], DocumentError(f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", exc.lineno)
    except (ValueError, RecursionError) as exc:
        return [], DocumentError(f"invalid JSON: {exc}", None)
    return [Document(data, json_lines(text), {}, 0)], None


def _yaml_documents(text: str) -> tuple[list[Document], DocumentError | None]:
    docs: list[Document] = []
    loader = yaml.SafeLoader(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            data = loader.construct_document(node)
            if data is not None:
                lines: dict[Loc, int] = {}
                blocks: dict[Loc, int] = {}
                _node_lines(node, lines, blocks)
                docs.append(Document(data, lines, blocks, index))
            index += 1
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        return docs, DocumentError(f"invalid YAML: {problem}", mark.line + 1 if mark is not None else None)
    except RecursionError:
        return docs, DocumentError("invalid YAML: nested too deeply", None)
    finally:
        loader.dispose()
    return docs, None


# ---- files ----------------------------------------------------------------------------------------------


def expand(files: list[str]) -> list[str]:
    """A directory stands for its *.yaml, *.yml, *.json, *.conf and *.conflist files, in name order."""
    out: list[str] = []
    for arg in files:
        if arg != "-" and os.path.isdir(arg):
            names = sorted(n for n in os.listdir(arg) if n.endswith(JSON_SUFFIXES + YAML_SUFFIXES))
            out += [os.path.join(arg, n) for n in names if os.path.isfile(os.path.join(arg, n))]
        else:
            out.append(arg)
    return out


def read_input(arg: str, stdin_text: list[str]) -> tuple[str, str]:
    """(the name to show, the text) of a file, or of stdin for '-' (read once, kept in `stdin_text`).

    Raises OSError or UnicodeDecodeError for a file that cannot be read as UTF-8.
    """
    if arg == "-":
        if not stdin_text:
            stdin_text.append(sys.stdin.read() if sys.stdin is not None else "")
        return "<stdin>", stdin_text[0]
    with open(arg, encoding="utf-8") as fh:
        return arg, fh.read()
