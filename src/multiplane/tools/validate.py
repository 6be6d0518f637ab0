"""`multiplane validate [FILE|-]…`: check what operators write before a pod trips over it.

Every error and warning carries the JSON path of what it is about, e.g.
`$.spec.config.ipam.ranges[0][0].subnet: not a CIDR …`. The checks are the pydantic models of
multiplane.tools.schemas, which accept and reject what the CNI path accepts and rejects (a
test keeps the two in step), plus warnings for set-ups that work but hurt (docs/validate.md).

What a document is (the first rule that matches):
1. a mapping with a string `kind`: a Kubernetes object. `NetworkAttachmentDefinition`: its
   `spec.config` is a CNI configuration, checked as the meta-plugin will run it. `Pod`: its
   `k8s.v1.cni.cncf.io/networks` and `v1.multus-cni.io/default-network` annotations. A pod
   template's annotations in Deployment, StatefulSet, DaemonSet, ReplicaSet, Job,
   ReplicationController, DeploymentConfig (spec.template) and CronJob
   (spec.jobTemplate.spec.template). `List` (or any `…List`): each of its `items`. Another
   kind of the k8s.cni.cncf.io group is an error; any other kind is skipped.
2. a mapping whose `type` is `multiplane`: the meta-plugin's own configuration.
3. a mapping with `type` or `plugins`: a CNI configuration (one plugin, or a conflist).
4. anything else is an error.
A file named *.json, *.conf or *.conflist is JSON; *.yaml or *.yml is YAML (several documents
allowed); any other file, and stdin (`-`), is JSON when it starts with `{` or `[`, else YAML.
A directory stands for its files with those suffixes.
`--annotation` and `--default-network` check a bare annotation value.

Only operators run this: it imports pydantic and yaml, and nothing on a CNI call imports it.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import re
import sys
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from multiplane.errors import CniError
from multiplane.k8s.names import is_label, is_subdomain
from multiplane.plugins.meta import selection as sel
from multiplane.spec.gojson import field, json_type, parse_ip, parse_ip_maybe_cidr, parse_mac
from multiplane.tools import schemas

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from multiplane.ipam.ranges import Range, RangeSet

__all__ = ["Diagnostic", "Run", "main", "node_addresses", "parse_fib_trie", "parse_if_inet6"]

Loc = tuple[Any, ...]

NAD_KIND = "NetworkAttachmentDefinition"
POD_TEMPLATE_KINDS = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "DeploymentConfig": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}
DEFAULT_CONF_DIR = "/etc/cni/multiplane/net.d"
# IPAM types that read a single requested address from CNI_ARGS `IP=`.
READS_IP_ARG = ("host-local", "multiplane-host-local", "static")
_JSON_SUFFIXES = (".json", ".conf", ".conflist")
_YAML_SUFFIXES = (".yaml", ".yml")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# ---- diagnostics and where they point ----------------------------------------------------------------


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


def spell(loc: Loc, original: Any) -> Loc:
    """`loc` with each key spelled as the document spells it (the models fold keys' case, as Go does)."""
    out: list[Any] = []
    node = original
    for seg in loc:
        if isinstance(node, dict) and isinstance(seg, str):
            actual = seg if seg in node else None
            if actual is None or any(k != seg and isinstance(k, str) and k.lower() == seg.lower() for k in node):
                for key in node:  # Go's rule: the last key that matches, ignoring case
                    if isinstance(key, str) and key.lower() == seg.lower():
                        actual = key
            out.append(actual if actual is not None else seg)
            node = node.get(actual) if actual is not None else None
        elif isinstance(node, list) and isinstance(seg, int) and 0 <= seg < len(node):
            out.append(seg)
            node = node[seg]
        else:
            out.append(seg)
            node = None
    return tuple(out)


class Diagnostic:
    __slots__ = ("severity", "file", "line", "path", "message", "document")

    def __init__(self, severity: str, file: str, line: int | None, path: str, message: str, document: int) -> None:
        self.severity, self.file, self.line, self.path = severity, file, line, path
        self.message, self.document = message, document

    def human(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.severity}: {self.path}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "file": self.file,
            "line": self.line,
            "document": self.document,
            "path": self.path,
            "message": self.message,
        }


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
        return _lookup(self.lines, loc) if self.lines is not None else None


def _lookup(lines: dict[Loc, int], loc: Loc) -> int | None:
    for n in range(len(loc), -1, -1):
        found = lines.get(tuple(loc[:n]))
        if found is not None:
            return found
    return None


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
    as_json = lowered.endswith(_JSON_SUFFIXES) or (
        not lowered.endswith(_YAML_SUFFIXES) and text.lstrip()[:1] in ("{", "[")
    )
    if as_json:
        try:
            data = load_json(text)
        except json.JSONDecodeError as exc:
            return [], DocumentError(f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", exc.lineno)
        except (ValueError, RecursionError) as exc:
            return [], DocumentError(f"invalid JSON: {exc}", None)
        return [Document(data, json_lines(text), {}, 0)], None
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


# ---- the node's own addresses ----------------------------------------------------------------------


def parse_fib_trie(text: str) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses this host owns, from /proc/net/fib_trie (each `|-- a.b.c.d` followed by `/32 host LOCAL`)."""
    found: list[ipaddress.IPv4Address] = []
    last = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|--"):
            last = stripped[3:].strip()
        elif stripped.startswith("/32 host LOCAL") and last:
            addr = parse_ip(last)
            if isinstance(addr, ipaddress.IPv4Address) and not addr.is_loopback and addr not in found:
                found.append(addr)
    return found


def parse_if_inet6(text: str) -> list[ipaddress.IPv6Address]:
    """IPv6 addresses of this host's interfaces, from /proc/net/if_inet6 (no loopback, no link-local)."""
    found: list[ipaddress.IPv6Address] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 6 or len(parts[0]) != 32:
            continue
        try:
            addr = ipaddress.IPv6Address(int(parts[0], 16))
        except ValueError:
            continue
        if not (addr.is_loopback or addr.is_link_local) and addr not in found:
            found.append(addr)
    return found


def node_addresses(proc: str = "/proc") -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """This host's addresses (what `--node-address` defaults to); [] where /proc cannot tell."""
    out: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for name, parse in (("net/fib_trie", parse_fib_trie), ("net/if_inet6", parse_if_inet6)):
        try:
            with open(os.path.join(proc, name), encoding="ascii", errors="replace") as fh:
                out.extend(parse(fh.read()))
        except OSError:
            continue
    return out


# ---- what the checks remember for the cross-document pass -------------------------------------------------


class Pool:
    """One host-local range of a network, for overlap checks between networks."""

    __slots__ = ("where", "loc", "network", "data_dir", "link", "rng", "label")

    def __init__(self, where: Where, loc: Loc, network: str, data_dir: str, link: str, rng: Range, label: str) -> None:
        self.where, self.loc, self.network, self.data_dir, self.link = where, loc, network, data_dir, link
        self.rng, self.label = rng, label


class PluginView:
    """A plugin of a checked network: its effective config and, when it uses host-local, its range sets."""

    __slots__ = ("loc", "eff", "plugin", "net_name", "net_version", "ipam_type", "sets", "gateways")

    def __init__(self, loc: Loc, eff: dict[str, Any], plugin: dict[str, Any], net_name: Any, net_version: Any) -> None:
        self.loc, self.eff, self.plugin, self.net_name, self.net_version = loc, eff, plugin, net_name, net_version
        ipam = field(eff, "ipam")
        kind = field(ipam, "type") if isinstance(ipam, dict) else None
        self.ipam_type = kind if isinstance(kind, str) else ""
        self.sets: list[tuple[Loc, RangeSet]] = []
        self.gateways: set[Any] = set()

    @property
    def type(self) -> Any:
        return field(self.eff, "type")

    def declares(self, capability: str) -> bool:
        caps = field(self.eff, "capabilities")
        return isinstance(caps, dict) and caps.get(capability) is True


class Nad:
    __slots__ = ("where", "loc", "namespace", "name", "plugins", "ok")

    def __init__(self, where: Where, loc: Loc, namespace: str, name: str) -> None:
        self.where, self.loc, self.namespace, self.name = where, loc, namespace, name
        self.plugins: list[PluginView] = []
        self.ok = False

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


class Chosen:
    """One selection of a pod, with where it was written."""

    __slots__ = ("loc", "name", "namespace", "interface", "ips", "mac", "caps", "cni_args")

    def __init__(self, loc: Loc, name: str, namespace: str, interface: str, ips: list[str], mac: str) -> None:
        self.loc, self.name, self.namespace, self.interface = loc, name, namespace, interface
        self.ips, self.mac = ips, mac
        self.caps: dict[str, Any] = {}  # capability values, as plan._from_selection builds them
        self.cni_args: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class PodView:
    __slots__ = ("where", "loc", "namespace", "selections")

    def __init__(self, where: Where, loc: Loc, namespace: str, selections: list[Chosen]) -> None:
        self.where, self.loc, self.namespace, self.selections = where, loc, namespace, selections


class MetaContext:
    """What the pod checks need from a multiplane config given in the same run (defaults otherwise)."""

    def __init__(self) -> None:
        self.namespace = "kube-system"
        self.default_networks = 0
        self.system_namespaces: list[Any] = ["kube-system"]
        self.isolation = False
        self.global_namespaces = ["default"]
        self.conf_dir = ""

    @classmethod
    def from_config(cls, obj: dict[str, Any]) -> MetaContext:
        ctx = cls()

        def text(key: str) -> str:
            value = field(obj, key)
            return value if isinstance(value, str) else ""

        ctx.namespace = text("multusNamespace") or text("namespace") or "kube-system"
        networks = field(obj, "defaultNetworks")
        ctx.default_networks = len(networks) if isinstance(networks, list) else 0
        system = field(obj, "systemNamespaces")
        ctx.system_namespaces = system if isinstance(system, list) else ["kube-system"]
        ctx.isolation = field(obj, "namespaceIsolation") is True
        ctx.global_namespaces = [n.strip() for n in text("globalNamespaces").split(",") if n.strip()] or ["default"]
        ctx.conf_dir = text("confDir")
        return ctx


# ---- one run --------------------------------------------------------------------------------------------


def _message(err: dict[str, Any]) -> str:
    """A pydantic error in the words of the rest of multiplane."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "multiplane":
        return str(ctx["message"])
    if kind == "missing":
        return "required"
    words = {
        "string_type": "a string",
        "int_type": "an integer",
        "int_from_float": "an integer",
        "float_type": "a number",
        "bool_type": "true or false",
        "list_type": "a list",
        "dict_type": "an object",
        "model_type": "an object",
        "model_attributes_type": "an object",
    }.get(kind)
    if words is not None:
        return f"must be {words}, got {json_type(value)}"
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", '"')
        return f"must be {expected}, got {json.dumps(value, default=str)}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return str(err["msg"])


def _error_loc(err: dict[str, Any]) -> Loc:
    loc = tuple(seg for seg in err["loc"] if not schemas.is_tag(seg))
    at = (err.get("ctx") or {}).get("at")
    return loc + tuple(at) if at else loc


class Run:
    """Diagnostics and what the cross-document checks need, for one `multiplane validate`."""

    def __init__(
        self,
        node_addrs: list[Any] | None = None,
        conf_dir: str = "",
        namespace: str = "default",
    ) -> None:
        self.diagnostics: list[Diagnostic] = []
        self._seen: set[tuple[str, int, str, str, str]] = set()
        self.node_addrs = node_addrs or []
        self.conf_dir_flag = conf_dir
        self.namespace = namespace
        self.meta = MetaContext()
        self.nads: list[Nad] = []
        self.pods: list[PodView] = []
        self.pools: list[Pool] = []
        self.documents: list[dict[str, Any]] = []

    @property
    def conf_dir(self) -> str:
        return self.conf_dir_flag or self.meta.conf_dir or DEFAULT_CONF_DIR

    @property
    def errors(self) -> int:
        return sum(1 for d in self.diagnostics if d.severity == "error")

    @property
    def warnings(self) -> int:
        return sum(1 for d in self.diagnostics if d.severity == "warning")

    def add(self, severity: str, where: Where, loc: Loc, message: str, line: int | None = None) -> None:
        path = render_path(loc)
        key = (where.file, where.doc, path, message, severity)
        if key in self._seen:
            return
        self._seen.add(key)
        self.diagnostics.append(
            Diagnostic(severity, where.file, line if line is not None else where.line(loc), path, message, where.doc)
        )

    def error(self, where: Where, loc: Loc, message: str, line: int | None = None) -> None:
        self.add("error", where, loc, message, line)

    def warning(self, where: Where, loc: Loc, message: str, line: int | None = None) -> None:
        self.add("warning", where, loc, message, line)

    def pydantic(self, where: Where, root: Loc, exc: ValidationError, original: Any) -> None:
        for err in exc.errors(include_url=False):
            self.error(where, root + spell(_error_loc(err), original), _message(err))

    # ---- documents ----

    def check_document(self, where: Where, root: Loc, data: Any) -> None:
        if not isinstance(data, dict):
            self.error(where, root, f"expected an object (a NAD, a Pod, a CNI configuration), got {json_type(data)}")
            return
        kind = data.get("kind")
        if isinstance(kind, str) and kind:
            self._check_kubernetes(where, root, data, kind)
        elif field(data, "type") == "multiplane":
            self.note(where, root, "multiplane config", str(field(data, "name") or ""))
            self.check_meta(where, root, data)
        elif field(data, "type") or field(data, "plugins") is not None:
            self.note(where, root, "CNI config", str(field(data, "name") or ""))
            self.check_network(where, root, data)
        else:
            self.error(
                where,
                root,
                "cannot tell what this is: a Kubernetes object needs `kind`, a CNI configuration `type` or `plugins`",
            )

    def note(self, where: Where, root: Loc, kind: str, name: str) -> None:
        self.documents.append(
            {
                "file": where.file,
                "document": where.doc,
                "line": where.line(root),
                "path": render_path(root),
                "kind": kind,
                "name": name,
            }
        )

    def _check_kubernetes(self, where: Where, root: Loc, data: dict[str, Any], kind: str) -> None:
        meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
        name = meta.get("name") if isinstance(meta.get("name"), str) else ""
        namespace = meta.get("namespace") if isinstance(meta.get("namespace"), str) else ""
        label = f"{namespace}/{name}" if namespace else name
        if kind == NAD_KIND:
            self.note(where, root, kind, label)
            self.check_nad(where, root, data)
        elif kind == "Pod":
            self.note(where, root, kind, label)
            self.check_pod(where, root, data, namespace)
        elif kind in POD_TEMPLATE_KINDS:
            node: Any = data
            path = POD_TEMPLATE_KINDS[kind]
            for key in path:
                node = node.get(key) if isinstance(node, dict) else None
            if node is None:
                return
            self.note(where, root + path, f"{kind} pod template", label)
            self.check_pod(where, root + path, node, namespace)
        elif kind.endswith("List") and isinstance(data.get("items"), list):
            for index, item in enumerate(data["items"]):
                self.check_document(where, (*root, "items", index), item)
        elif str(data.get("apiVersion", "")).startswith("k8s.cni.cncf.io/"):
            self.error(where, (*root, "kind"), f"unknown kind {kind!r} in k8s.cni.cncf.io (expected {NAD_KIND})")

    # ---- NetworkAttachmentDefinition ----

    def check_nad(self, where: Where, root: Loc, nad: dict[str, Any]) -> None:
        try:
            schemas.NetworkAttachmentDefinition.model_validate(nad)
        except ValidationError as exc:
            self.pydantic(where, root, exc, nad)
        if nad.get("apiVersion") != schemas.NAD_API_VERSION:
            self.warning(
                where,
                (*root, "apiVersion"),
                f"should be {schemas.NAD_API_VERSION}: the API server knows no other (local NAD files ignore it)",
            )
        meta = nad.get("metadata") if isinstance(nad.get("metadata"), dict) else {}
        name = meta.get("name") if isinstance(meta.get("name"), str) else ""
        namespace = meta.get("namespace") if isinstance(meta.get("namespace"), str) else ""
        spec = nad.get("spec")
        raw = spec.get("config") if isinstance(spec, dict) else None
        info = Nad(where, root, namespace, name)
        if spec and not isinstance(spec, dict):
            self.nads.append(info)  # the model said so; there is no config to look for
            return
        cfg_loc = (*root, "spec", "config")
        if raw is not None and not isinstance(raw, str) and not raw:
            self.warning(where, cfg_loc, f"read as empty: spec.config should be a string, got {json_type(raw)}")
        if isinstance(raw, str) and raw.strip():
            cfg_where = self._embedded(where, cfg_loc, raw)
            try:
                obj = load_json(raw)
            except json.JSONDecodeError as exc:
                self.error(
                    where,
                    cfg_loc,
                    f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno} of spec.config)",
                    line=cfg_where.line((*cfg_loc, "\0line", exc.lineno)),
                )
                return
            except (ValueError, RecursionError) as exc:
                self.error(where, cfg_loc, f"invalid JSON: {exc}")
                return
            if not isinstance(obj, dict):
                self.error(where, cfg_loc, f"a CNI configuration must be a JSON object, got {json_type(obj)}")
                return
            if name and not field(obj, "name"):
                obj["name"] = name  # as nad_config does: the NAD's name is the network's
            info.plugins = self.check_network(cfg_where, cfg_loc, obj) or []
        elif (raw is None or isinstance(raw, str) or not raw) and name:
            info.plugins = self._from_conf_dir(where, cfg_loc, name) or []
        info.ok = bool(info.plugins)
        self.nads.append(info)

    def _embedded(self, where: Where, cfg_loc: Loc, text: str) -> Where:
        """Lines inside spec.config: exact for a literal block (`config: |`), else the line of `config:`."""
        start = where.blocks.get(cfg_loc)
        inner = json_lines(text) if start is not None else {}

        def line(loc: Loc) -> int | None:
            if start is not None and loc[: len(cfg_loc)] == cfg_loc:
                sub = loc[len(cfg_loc) :]
                if sub[:1] == ("\0line",):
                    return start + sub[1]
                found = _lookup(inner, sub)
                if found is not None:
                    return start + found
            return where.line(loc)

        return Where(where.file, where.doc, line=line)

    def _from_conf_dir(self, where: Where, cfg_loc: Loc, name: str) -> list[PluginView] | None:
        """An empty spec.config: the CNI file named like the NAD in confDir, found as the meta-plugin finds it."""
        from multiplane.plugins.meta.networks import conf_files, load_file

        directory = self.conf_dir
        try:
            paths = conf_files(directory)
        except CniError as exc:
            self.error(where, cfg_loc, f"empty, and confDir cannot be read: {exc.msg}")
            return None
        for path in paths:
            try:
                net = load_file(path)
            except CniError as exc:
                self.error(
                    where, cfg_loc, f"empty; looking for {name!r} in {directory} stops at a broken file: {exc.msg}"
                )
                return None
            if net.name == name:
                file_where = Where(path, 0, json_lines(net.raw.decode()))
                return self.check_network(file_where, (), net.obj)
        self.error(
            where,
            cfg_loc,
            f"empty, and no CNI file named {name!r} is in {directory} (run on the node, or pass --conf-dir)",
        )
        return None

    # ---- CNI configurations ----

    def check_network(self, where: Where, root: Loc, obj: Any) -> list[PluginView] | None:
        """One plugin or a conflist, each plugin checked with the config multiplane will hand it."""
        if not isinstance(obj, dict):
            self.error(where, root, f"a CNI configuration must be a JSON object, got {json_type(obj)}")
            return None
        plugins = field(obj, "plugins")
        members: list[tuple[Loc, dict[str, Any]]] = []
        is_list = False
        if field(obj, "type"):
            members.append((root, obj))
        elif isinstance(plugins, list) and plugins and isinstance(plugins[0], dict) and field(plugins[0], "type"):
            is_list = True
            key = spell(("plugins",), obj)[0]
            for index, plugin in enumerate(plugins):
                if isinstance(plugin, dict):
                    members.append(((*root, key, index), plugin))
                else:
                    self.warning(
                        where,
                        (*root, key, index),
                        f"ignored: a plugin must be an object, got {json_type(plugin)} (libcni refuses the whole list)",
                    )
        else:
            if isinstance(plugins, list) and plugins:
                first = (*root, *spell(("plugins",), obj), 0)
                if not isinstance(plugins[0], dict):
                    self.error(where, first, f"must be a plugin object, got {json_type(plugins[0])}")
                else:
                    self.error(where, (*first, "type"), "required: the first plugin needs a type")
            else:
                self.error(where, root, "must have a 'type' (one plugin) or a non-empty 'plugins' list (a conflist)")
            return None
        name = field(obj, "name") or ""
        version = field(obj, "cniVersion") or "0.1.0"
        views: list[PluginView] = []
        failed = False
        for loc, plugin in members:
            eff = _effective(plugin, name, version)
            view, ok = self._check_plugin(where, root, loc, obj, plugin, eff, is_list)
            failed = failed or not ok
            views.append(view)
        return None if failed else views

    def _check_plugin(
        self,
        where: Where,
        root: Loc,
        loc: Loc,
        obj: dict[str, Any],
        plugin: dict[str, Any],
        eff: dict[str, Any],
        is_list: bool,
    ) -> tuple[PluginView, bool]:
        view = PluginView(loc, eff, plugin, field(obj, "name") or "", field(obj, "cniVersion") or "0.1.0")
        problems, models = _plugin_problems(eff)
        for rel, message in problems:
            if is_list and rel[:1] in (("name",), ("cniVersion",)):
                full = root + spell(rel, obj)  # the list's own name and cniVersion
            else:
                full = loc + spell(rel, eff)
            self.error(where, full, message)
        if problems:
            return view, False
        for model in models:
            if isinstance(model, schemas.HostLocalConf):
                view.sets = model.sets
                view.gateways = {g for _, rset in model.sets for r in rset for g in [r.gateway_ip] if g is not None}
        self._plugin_warnings(where, loc, eff, view)  # what the plugin reads, not the document's order
        return view, True

    def _plugin_warnings(self, where: Where, loc: Loc, plugin: dict[str, Any], view: PluginView) -> None:
        caps = field(plugin, "capabilities")
        if caps is not None and not isinstance(caps, dict):
            self.warning(where, loc + spell(("capabilities",), plugin), "ignored: must be an object of true/false")
        elif isinstance(caps, dict):
            for key, value in caps.items():
                if not isinstance(value, bool):
                    self.warning(
                        where, (*loc, *spell(("capabilities",), plugin), key), "only true enables a capability"
                    )
        ipam = field(plugin, "ipam")
        if view.type == "bridge" and field(plugin, "isDefaultGateway") is True:
            self.warning(where, loc + spell(("isDefaultGateway",), plugin), _SECOND_DEFAULT)
        if not isinstance(ipam, dict):
            return
        ipam_loc = loc + spell(("ipam",), plugin)
        if view.ipam_type in schemas.HOST_LOCAL_TYPES and field(ipam, "subnet") is None:
            for key in ("rangeStart", "rangeEnd", "gateway"):
                if field(ipam, key) is not None:
                    self.warning(where, ipam_loc + spell((key,), ipam), "ignored: read only together with ipam.subnet")
        routes = field(ipam, "routes")
        for index, route in enumerate(routes if isinstance(routes, list) else []):
            dst = field(route, "dst") if isinstance(route, dict) else None
            where_dst = (*ipam_loc, *spell(("routes",), ipam), index, *spell(("dst",), route))
            net = _cidr_of(dst)
            if net is not None and net.prefixlen == 0:
                self.warning(where, where_dst, _SECOND_DEFAULT)
            gw = (
                parse_ip(field(route, "gw"))
                if isinstance(route, dict) and isinstance(field(route, "gw"), str)
                else None
            )
            if gw is not None and view.sets and gw not in view.gateways:
                for set_loc, rset in view.sets:
                    rng = rset.range_for(gw)
                    if rng is not None:
                        self.warning(
                            where,
                            (*ipam_loc, *spell(("routes",), ipam), index, *spell(("gw",), route)),
                            f"{gw} lies in the pool {rng} ({render_path(_under(loc, plugin, set_loc))}) and is not "
                            "a configured gateway: host-local may give the router's address to a pod; make it the "
                            "range's gateway or move the pool",
                        )
        for set_loc, rset in view.sets:
            for index, rng in enumerate(rset):
                rng_loc = _under(loc, plugin, set_loc if set_loc == ("ipam",) else (*set_loc, index))
                for addr in self.node_addrs:
                    if rng.contains(addr) and addr != rng.gateway_ip:
                        self.warning(
                            where,
                            rng_loc,
                            f"the pool {rng} contains this node's address {addr}: host-local may give it to a pod "
                            "(an address conflict on the LAN); start the pool after it or end it before",
                        )
                    elif view.type in schemas.MACVLAN_TYPES and addr == rng.gateway_ip and field(ipam, "routes"):
                        self.warning(
                            where,
                            rng_loc,
                            f"the gateway {addr} is this node's own address: a pod cannot reach its node over "
                            "macvlan (no hairpin between a macvlan and its master), so routed traffic is lost",
                        )
                link = _link_of(view)
                if link:
                    data_dir = field(ipam, "dataDir") or "/var/lib/cni/networks"
                    self.pools.append(
                        Pool(
                            where, rng_loc, str(field(view.eff, "name")), str(data_dir), link, rng, render_path(rng_loc)
                        )
                    )

    # ---- the meta-plugin's configuration ----

    def check_meta(self, where: Where, root: Loc, obj: dict[str, Any]) -> None:
        for at in _nul_paths(obj):
            self.error(where, root + at, "a NUL character (\\u0000): the runtime's call would be refused")
        try:
            schemas.MultiplaneConfig.model_validate(obj)
        except ValidationError as exc:
            self.pydantic(where, root, exc, obj)
        from multiplane.logs import DEFAULT_OPTIONS, LEVELS

        options = field(obj, "logOptions")
        options_loc = root + spell(("logOptions",), obj)
        if options is not None and not isinstance(options, dict):
            self.warning(where, options_loc, f"ignored: must be an object, got {json_type(options)}")
        for key, default in DEFAULT_OPTIONS.items() if isinstance(options, dict) else ():
            value = field(options, key)
            if value is None:
                continue
            if isinstance(default, bool):
                ok, kind = isinstance(value, bool), "true or false"
            else:
                ok, kind = _sane_number(value), "a number below 1e15"
            if not ok:
                self.warning(where, options_loc + spell((key,), options), f"must be {kind}: logs with {key} {default}")
        level = field(obj, "logLevel")
        if isinstance(level, str) and level and level.lower() not in LEVELS:
            self.warning(
                where,
                root + spell(("logLevel",), obj),
                f"unknown level {level!r}: logs at error (use one of {', '.join(LEVELS)})",
            )
        cluster = field(obj, "clusterNetwork")
        delegates = field(obj, "delegates")
        if cluster and delegates is not None:
            self.warning(where, root + spell(("delegates",), obj), "ignored: clusterNetwork is set")
        if field(obj, "multusNamespace") and field(obj, "namespace") is not None:
            self.warning(where, root + spell(("namespace",), obj), "ignored: multusNamespace is set")
        if not cluster and isinstance(delegates, list):
            for index, item in enumerate(delegates):
                if schemas.delegate_has_type(item):
                    self.check_network(where, (*root, *spell(("delegates",), obj), index), item)

    # ---- pods and selections ----

    def check_pod(self, where: Where, root: Loc, pod: Any, namespace: str) -> None:
        try:
            schemas.Pod.model_validate(pod)
        except ValidationError as exc:
            self.pydantic(where, root, exc, pod)
            return
        meta = pod.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        namespace = namespace or self.namespace
        base = (*root, "metadata", "annotations")
        chosen = self.check_selection(
            where, (*base, sel.NETWORKS_ANNOTATION), annotations.get(sel.NETWORKS_ANNOTATION, ""), namespace
        )
        default = annotations.get(sel.DEFAULT_NETWORK_ANNOTATION, "")
        if default:
            self.check_default_network(where, (*base, sel.DEFAULT_NETWORK_ANNOTATION), default, namespace)
        if chosen is not None:
            self.pods.append(PodView(where, root, namespace, chosen))

    def check_default_network(self, where: Where, loc: Loc, value: str, pod_namespace: str) -> None:
        found = self.check_selection(where, loc, value, self.meta.namespace)
        if found is None:
            return
        if len(found) != 1:
            self.error(where, loc, f"must name exactly one network, names {len(found)}")
            return
        target = found[0].namespace
        if self.meta.isolation and target not in (pod_namespace, self.meta.namespace, *self.meta.global_namespaces):
            self.error(where, loc, f"namespace isolation: a pod in {pod_namespace} may not use a network in {target}")

    def check_selection(self, where: Where, loc: Loc, value: Any, namespace: str) -> list[Chosen] | None:
        """The networks annotation value (text or JSON form); None when it is refused."""
        text = value.strip() if isinstance(value, str) else ""
        if not text:
            return []
        if any(ch in text for ch in '[{"'):
            return self._selection_json(where, loc, text, namespace)
        return self._selection_text(where, loc, text, namespace)

    def _selection_json(self, where: Where, loc: Loc, text: str, namespace: str) -> list[Chosen] | None:
        try:
            data = json.loads(text)
        except RecursionError:
            self.error(where, loc, "the selection annotation is nested too deeply")
            return None
        except ValueError as exc:
            self.error(where, loc, f"invalid JSON: {exc}")
            return None
        if not isinstance(data, list):
            self.error(where, loc, f"the JSON form must be a list of selections, got {json_type(data)}")
            return None
        try:
            items = schemas.SELECTIONS.validate_python(data)
        except ValidationError as exc:
            self.pydantic(where, loc, exc, data)
            return None
        out = []
        for index, item in enumerate(items):
            interface = item.interface or item.interfaceRequest or ""
            mac = parse_mac(item.mac) if item.mac else ""
            chosen = Chosen((*loc, index), item.name, item.namespace or namespace, interface, list(item.ips or []), mac)
            for key, value in (
                ("ips", chosen.ips),
                ("mac", mac),
                ("infinibandGUID", item.infiniband_guid),
                ("portMappings", item.portMappings),
                ("bandwidth", item.bandwidth),
                ("deviceID", item.deviceID),
            ):
                if value or (key in ("portMappings", "bandwidth") and value is not None):
                    chosen.caps[key] = value
            chosen.cni_args = item.cni_args
            out.append(chosen)
        return out

    def _selection_text(self, where: Where, loc: Loc, text: str, namespace: str) -> list[Chosen] | None:
        out: list[Chosen] = []
        failed = False
        for index, raw in enumerate(text.split(",")):
            item = raw.strip()
            if not item:
                continue
            item_loc = (*loc, index)
            problem = _text_item_problem(item)
            if problem:
                self.error(where, item_loc, problem)
                failed = True
                continue
            ns, _, rest = item.rpartition("/")
            name, _, interface = rest.partition("@")
            out.append(Chosen(item_loc, name, ns or namespace, interface, [], ""))
        return None if failed else out

    # ---- across documents ----

    def cross_check(self) -> None:
        self._overlaps()
        for pod in self.pods:
            self._pod_interfaces(pod)
            for chosen in pod.selections:
                if self.meta.isolation and chosen.namespace not in (pod.namespace, *self.meta.global_namespaces):
                    self.error(
                        pod.where,
                        chosen.loc,
                        f"namespace isolation: a pod in {pod.namespace} may not select {chosen.key}",
                    )
                for nad in self.nads:
                    if nad.ok and nad.name == chosen.name and nad.namespace in ("", chosen.namespace):
                        self._selection_meets_nad(pod, chosen, nad)

    def _pod_interfaces(self, pod: PodView) -> None:
        """Interface names as the plan gives them: eth0, then net<position> unless the selection names one."""
        defaults = 0 if pod.namespace in self.meta.system_namespaces else self.meta.default_networks
        seen = {"eth0": "the cluster network"}
        for index in range(1, 1 + defaults):
            seen[f"net{index}"] = f"defaultNetworks[{index - 1}]"
        for index, chosen in enumerate(pod.selections, start=1 + defaults):
            ifname = chosen.interface or f"net{index}"
            if ifname in seen:
                self.error(
                    pod.where,
                    chosen.loc,
                    f'interface name "{ifname}" is used by both {seen[ifname]} and "{chosen.key}" '
                    "(counting eth0 for the cluster network and net<N> by position)",
                )
            seen.setdefault(ifname, f'"{chosen.key}"')

    def _selection_meets_nad(self, pod: PodView, chosen: Chosen, nad: Nad) -> None:
        for plugin in nad.plugins:  # the config each plugin gets with this selection's values
            eff = _effective(plugin.plugin, plugin.net_name, plugin.net_version, chosen.caps, chosen.cni_args)
            for rel, message in _plugin_problems(eff)[0]:
                self.error(
                    pod.where,
                    chosen.loc,
                    f"{nad.label} refuses the config it gets with this selection: {render_path(rel)}: {message}",
                )
        ips_loc = (*chosen.loc, "ips")
        declares = any(p.declares("ips") for p in nad.plugins)
        if len(chosen.ips) >= 2 and not declares:
            self.error(
                pod.where,
                ips_loc,
                f'{len(chosen.ips)} addresses requested, but no plugin of {nad.label} declares the "ips" capability: '
                'the ADD fails; add "capabilities": {"ips": true} to the plugin that assigns addresses',
            )
            return
        if len(chosen.ips) == 1 and not declares and not any(p.ipam_type in READS_IP_ARG for p in nad.plugins):
            self.warning(
                pod.where,
                ips_loc,
                f'no plugin of {nad.label} declares the "ips" capability, so the address reaches it only as IP= '
                "in CNI_ARGS, which its IPAM may ignore (the ADD then fails)",
            )
        delivered = chosen.ips if declares or len(chosen.ips) == 1 else []
        for text in delivered:
            addr = parse_ip_maybe_cidr(text)
            for plugin in nad.plugins:
                if not plugin.sets or addr is None:
                    continue
                if addr in plugin.gateways:
                    self.error(pod.where, ips_loc, f"{addr} is a gateway of {nad.label}: host-local never hands it out")
                elif not any(rset.contains(addr) for _, rset in plugin.sets):
                    self.error(
                        pod.where,
                        ips_loc,
                        f"{addr} is outside every range of {nad.label}: host-local fails the ADD "
                        f"(failed to allocate all requested IPs: {addr})",
                    )
        if chosen.mac and int(chosen.mac[:2], 16) & 1 and any(p.type in schemas.MACVLAN_TYPES for p in nad.plugins):
            self.error(pod.where, (*chosen.loc, "mac"), f"{chosen.mac} is a multicast address; macvlan refuses it")

    def _overlaps(self) -> None:
        for i, first in enumerate(self.pools):
            for second in self.pools[i + 1 :]:
                if first.link != second.link or (first.network, first.data_dir) == (second.network, second.data_dir):
                    continue
                if first.rng.overlaps(second.rng):
                    for this, other in ((first, second), (second, first)):
                        where_other = f"{other.where.file}" + (
                            f":{other.where.line(other.loc)}" if other.where.line(other.loc) else ""
                        )
                        self.warning(
                            this.where,
                            this.loc,
                            f"the pool {this.rng} overlaps the pool {other.rng} of network {other.network!r} "
                            f"({where_other} {other.label}) on the same link {this.link}: host-local keeps them "
                            "apart only within one network, so two pods can get the same address",
                        )


_SECOND_DEFAULT = (
    "a default route: a pod selecting this network gets a second default route beside the cluster "
    "network's, so traffic to other subnets may leave through this interface (Multus does the same, "
    "silently). Route only the subnets reached this way, or make it deliberate with the selection's "
    '"default-route"'
)


def _text_item_problem(item: str) -> str:
    """Why one item of the text form is refused ("" when it is fine), in selection.parse's order."""
    if item.count("/") > 1:
        return f"invalid network {item!r}: more than one '/'"
    if item.count("@") > 1:
        return f"invalid network {item!r}: more than one '@'"
    namespace, name = "", item
    if "/" in item:
        namespace, name = item.split("/")
        if namespace and not is_label(namespace):
            return f"namespace {namespace!r} in {item!r} is not a valid DNS-1123 label"
    if "@" in name:
        name, ifname = name.split("@")
        if len(ifname) > 15:
            return f"interface name too long: {ifname!r} in {item!r} (at most 15 characters)"
        if any(ch.isspace() or ch == "/" for ch in ifname):
            return f"interface name {ifname!r} in {item!r} contains whitespace or '/'"
    if not is_subdomain(name):
        return f"network name {name!r} in {item!r} is not a valid DNS-1123 subdomain"
    return ""


def _effective(
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


def _nul_paths(value: Any) -> list[Loc]:
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


def _plugin_problems(eff: dict[str, Any]) -> tuple[list[tuple[Loc, str]], list[Any]]:
    """What the readers of this config refuse: the plugin's model, and host-local's when it is the IPAM.

    Returns the errors (path below the plugin, message) and the validated models.
    """
    problems = [(at, "a NUL character (\\u0000): the plugins refuse the whole config") for at in _nul_paths(eff)]
    ipam = field(eff, "ipam")
    ipam_type = field(ipam, "type") if isinstance(ipam, dict) else None
    readers: list[Any] = [schemas.PLUGIN]
    if ipam_type in schemas.HOST_LOCAL_TYPES and field(eff, "type") != "multiplane":  # the meta-plugin runs no IPAM
        readers.append(schemas.HostLocalConf)
    models: list[Any] = []
    for reader in readers:
        try:
            models.append(reader.validate_python(eff) if reader is schemas.PLUGIN else reader.model_validate(eff))
        except ValidationError as exc:
            problems += [(_error_loc(err), _message(err)) for err in exc.errors(include_url=False)]
    return problems, models


def _sane_number(value: Any) -> bool:
    """What the logger takes for a size or an age (logs._finite): a number, not a bool, below 1e15."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return abs(float(value)) < 1e15
    except OverflowError:
        return False


def _cidr_of(text: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    if not isinstance(text, str):
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _under(loc: Loc, plugin: dict[str, Any], rel: Loc) -> Loc:
    return loc + spell(rel, plugin)


def _link_of(view: PluginView) -> str:
    """The L2 segment a plugin attaches to (for overlap checks): macvlan/ipvlan master, bridge name."""
    kind = view.type
    if kind in (*schemas.MACVLAN_TYPES, "ipvlan"):
        master = field(view.eff, "master")
        return f"master {master}" if isinstance(master, str) and master else "the default route's interface"
    if kind == "bridge":
        bridge = field(view.eff, "bridge")
        return f"bridge {bridge if isinstance(bridge, str) and bridge else 'cni0'}"
    return ""


# ---- the command -------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multiplane validate",
        description="Check NetworkAttachmentDefinitions, CNI configs and conflists, 00-multiplane.conf and the "
        "pod annotations that select networks. Exit status: 0 valid (warnings allowed), 1 errors, 2 usage.",
        epilog="See docs/validate.md.",
    )
    parser.add_argument(
        "files", nargs="*", metavar="FILE", help="YAML or JSON files, directories of them; '-' reads stdin"
    )
    parser.add_argument(
        "--annotation",
        action="append",
        default=[],
        metavar="VALUE",
        help="a k8s.v1.cni.cncf.io/networks value to check (repeatable)",
    )
    parser.add_argument(
        "--default-network",
        action="append",
        default=[],
        metavar="VALUE",
        help="a v1.multus-cni.io/default-network value to check (repeatable)",
    )
    parser.add_argument(
        "--namespace",
        default="default",
        help="the namespace of pods without metadata.namespace and of --annotation (default: default)",
    )
    parser.add_argument(
        "--node-address",
        action="append",
        default=[],
        metavar="ADDR",
        help="this node's address, for the pool checks (repeatable; default: read from /proc)",
    )
    parser.add_argument(
        "--no-node-addresses",
        action="store_true",
        help="do not read this host's addresses (only --node-address counts)",
    )
    parser.add_argument(
        "--conf-dir",
        default="",
        metavar="DIR",
        help="confDir for NADs with an empty spec.config (default: the given multiplane config's, "
        f"else {DEFAULT_CONF_DIR})",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    parser.add_argument("--strict", action="store_true", help="warnings count as errors (exit 1)")
    parser.add_argument(
        "--export-schemas", metavar="DIR", help="write the JSON Schemas (docs/schemas/*.json) into DIR and exit"
    )
    return parser


def export_schemas(directory: str) -> list[str]:
    os.makedirs(directory, exist_ok=True)
    written = []
    for name, schema in schemas.json_schemas().items():
        path = os.path.join(directory, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(schemas.render_schema(schema))
        written.append(path)
    return written


def _read(arg: str, stdin_text: list[str]) -> tuple[str, str]:
    if arg == "-":
        if not stdin_text:
            stdin_text.append(sys.stdin.read() if sys.stdin is not None else "")
        return "<stdin>", stdin_text[0]
    with open(arg, encoding="utf-8") as fh:
        return arg, fh.read()


def _expand(files: list[str]) -> list[str]:
    """A directory stands for its *.yaml, *.yml, *.json, *.conf and *.conflist files, in name order."""
    out: list[str] = []
    for arg in files:
        if arg != "-" and os.path.isdir(arg):
            names = sorted(n for n in os.listdir(arg) if n.endswith(_JSON_SUFFIXES + _YAML_SUFFIXES))
            out += [os.path.join(arg, n) for n in names if os.path.isfile(os.path.join(arg, n))]
        else:
            out.append(arg)
    return out


def run(args: argparse.Namespace, read: Callable[[str], tuple[str, str]]) -> Run:
    """Check everything the arguments name; raises OSError/UnicodeDecodeError for an unreadable file."""
    addrs: list[Any] = [parse_ip(a) for a in args.node_address]
    if not addrs and not args.no_node_addresses:
        addrs = node_addresses()
    result = Run(addrs, args.conf_dir, args.namespace)
    loaded: list[tuple[str, list[Document], DocumentError | None]] = []
    for arg in _expand(args.files):
        name, text = read(arg)
        docs, problem = split_documents(name, text)
        loaded.append((name, docs, problem))
    metas = [
        d.data
        for _, docs, _ in loaded
        for d in docs
        if isinstance(d.data, dict) and field(d.data, "type") == "multiplane"
    ]
    if len(metas) == 1:
        result.meta = MetaContext.from_config(metas[0])
    for name, docs, problem in loaded:
        if problem is not None:
            result.error(Where(name, len(docs)), (), problem.message, line=problem.line)
        if not docs and problem is None:
            result.warning(Where(name, 0), (), "no document to check")
        for doc in docs:
            where = Where(name, doc.index, doc.lines, doc.blocks)
            result.check_document(where, (), doc.data)
    for index, value in enumerate(args.annotation):
        where = Where("<annotation>", index)
        chosen = result.check_selection(where, (), value, args.namespace)
        if chosen is not None:
            result.pods.append(PodView(where, (), args.namespace, chosen))
    for index, value in enumerate(args.default_network):
        result.check_default_network(Where("<default-network>", index), (), value, args.namespace)
    result.cross_check()
    return result


def main(argv: list[str]) -> int:
    """`multiplane validate …` (argv without the word validate); returns the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's usage errors (2) and --help (0)
        return int(exc.code or 0)
    if args.export_schemas:
        for path in export_schemas(args.export_schemas):
            sys.stdout.write(path + "\n")
        return 0
    if not args.files and not args.annotation and not args.default_network:
        parser.print_usage(sys.stderr)
        sys.stderr.write("multiplane validate: give a FILE, '-' for stdin, or --annotation VALUE\n")
        return 2
    bad = [a for a in args.node_address if parse_ip(a) is None]
    if bad:
        sys.stderr.write(f"multiplane validate: --node-address {bad[0]!r} is not an IP address\n")
        return 2
    stdin_text: list[str] = []
    try:
        result = run(args, lambda arg: _read(arg, stdin_text))
    except (OSError, UnicodeDecodeError) as exc:
        sys.stderr.write(f"multiplane validate: cannot read {getattr(exc, 'filename', None) or 'input'}: {exc}\n")
        return 2
    failed = result.errors > 0 or (args.strict and result.warnings > 0)
    if args.json:
        sys.stdout.write(
            json.dumps(
                {
                    "valid": not failed,
                    "errors": result.errors,
                    "warnings": result.warnings,
                    "documents": result.documents,
                    "diagnostics": [d.to_dict() for d in result.diagnostics],
                },
                indent=2,
            )
            + "\n"
        )
    else:
        for diagnostic in result.diagnostics:
            sys.stdout.write(diagnostic.human() + "\n")
        checked = len(result.documents) + len(args.annotation) + len(args.default_network)
        sys.stderr.write(
            f"multiplane validate: {checked} checked, {result.errors} error(s), {result.warnings} warning(s)\n"
        )
    return 1 if failed else 0
