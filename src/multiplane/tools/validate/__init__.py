"""`multiplane validate [FILE|-]…`: check what operators write before a pod trips over it.

This module is the command: its arguments, the run over every input, and the output (text or --json).

Every error and warning carries the JSON path of what it is about, e.g.
`$.spec.config.ipam.ranges[0][0].subnet: not a CIDR …`. The checks are the pydantic models of
multiplane.tools.validate.schemas, which accept and reject what the CNI path accepts and
rejects (a test keeps the two in step), plus warnings for set-ups that work but hurt
(docs/validate.md). What a document is, is decided by kinds.py.

A file named *.json, *.conf or *.conflist is JSON; *.yaml or *.yml is YAML (several documents
allowed); any other file, and stdin (`-`), is JSON when it starts with `{` or `[`, else YAML.
A directory stands for its files with those suffixes.
`--annotation` and `--default-network` check a bare annotation value.

Only operators run this: it imports pydantic and yaml, and nothing on a CNI call imports it.
The modules: documents (reading, lines, paths), kinds (what a document is), nad, networks,
plugin_config, meta, selections (the checks), warnings and crosscheck (the traps, and pods
against NADs), views and report (what a run remembers and reports), node (this host's
addresses), schemas (the models and their JSON Schemas).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from multiplane.spec.gojson import field, parse_ip
from multiplane.tools.validate.crosscheck import cross_check
from multiplane.tools.validate.documents import (
    Document,
    DocumentError,
    Where,
    expand,
    read_input,
    render_path,
    spell,
    split_documents,
)
from multiplane.tools.validate.kinds import check_document
from multiplane.tools.validate.node import node_addresses, parse_fib_trie, parse_if_inet6
from multiplane.tools.validate.report import DEFAULT_CONF_DIR, Diagnostic, Run
from multiplane.tools.validate.schemas import write_schemas
from multiplane.tools.validate.selections import check_default_network, check_selection
from multiplane.tools.validate.views import MetaContext, PodView

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "Diagnostic",
    "Run",
    "main",
    "node_addresses",
    "parse_fib_trie",
    "parse_if_inet6",
    "render_path",
    "run",
    "spell",
]


def main(argv: list[str]) -> int:
    """`multiplane validate …` (argv without the word validate); returns the exit status.

    0: valid (warnings allowed, unless --strict); 1: errors; 2: usage, or an input that cannot be read.
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's usage errors (2) and --help (0)
        return int(exc.code or 0)
    if args.export_schemas:
        for path in write_schemas(args.export_schemas):
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
        result = run(args, lambda arg: read_input(arg, stdin_text))
    except (OSError, UnicodeDecodeError) as exc:
        sys.stderr.write(f"multiplane validate: cannot read {getattr(exc, 'filename', None) or 'input'}: {exc}\n")
        return 2
    failed = result.errors > 0 or (args.strict and result.warnings > 0)
    if args.json:
        _print_json(result, failed)
    else:
        _print_text(result, len(args.annotation) + len(args.default_network))
    return 1 if failed else 0


def _non_string_key(node: Any, loc: tuple[Any, ...] = ()) -> tuple[tuple[Any, ...], Any] | None:
    """(where, key) of the first mapping key that is not a string, None if every key is one."""
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                return loc, key
            found = _non_string_key(value, (*loc, key))
            if found is not None:
                return found
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found = _non_string_key(value, (*loc, index))
            if found is not None:
                return found
    return None


def run(args: argparse.Namespace, read: Callable[[str], tuple[str, str]]) -> Run:
    """Check everything the arguments name; raises OSError/UnicodeDecodeError for an unreadable file."""
    addrs: list[Any] = [parse_ip(a) for a in args.node_address]
    if not addrs and not args.no_node_addresses:
        addrs = node_addresses()
    result = Run(addrs, args.conf_dir, args.namespace)
    loaded: list[tuple[str, list[Document], DocumentError | None]] = []
    for arg in expand(args.files):
        name, text = read(arg)
        docs, problem = split_documents(name, text)
        loaded.append((name, docs, problem))
    metas = _multiplane_configs(loaded)
    if len(metas) == 1:
        result.meta = MetaContext.from_config(metas[0])
    for name, docs, problem in loaded:
        if problem is not None:
            result.error(Where(name, len(docs)), (), problem.message, line=problem.line)
        if not docs and problem is None:
            result.warning(Where(name, 0), (), "no document to check")
        for doc in docs:
            where = Where(name, doc.index, doc.lines, doc.blocks)
            odd = _non_string_key(doc.data)
            if odd is not None:  # YAML allows `1: a`; no CNI or Kubernetes document does
                result.error(where, odd[0], f"the key {odd[1]!r} is not a string")
                continue
            check_document(result, where, (), doc.data)
    for index, value in enumerate(args.annotation):
        where = Where("<annotation>", index)
        chosen = check_selection(result, where, (), value, args.namespace)
        if chosen is not None:
            result.pods.append(PodView(where, (), args.namespace, chosen))
    for index, value in enumerate(args.default_network):
        check_default_network(result, Where("<default-network>", index), (), value, args.namespace)
    cross_check(result)
    return result


def _multiplane_configs(loaded: list[tuple[str, list[Document], DocumentError | None]]) -> list[dict[str, Any]]:
    """The multiplane configs among the documents (the pod checks use the one given, if only one is)."""
    found = []
    for _, docs, _ in loaded:
        for doc in docs:
            if isinstance(doc.data, dict) and field(doc.data, "type") == "multiplane":
                found.append(doc.data)
    return found


def _print_json(result: Run, failed: bool) -> None:
    report = {
        "valid": not failed,
        "errors": result.errors,
        "warnings": result.warnings,
        "documents": result.documents,
        "diagnostics": [d.to_dict() for d in result.diagnostics],
    }
    sys.stdout.write(json.dumps(report, indent=2) + "\n")


def _print_text(result: Run, values: int) -> None:
    """The diagnostics on stdout, a summary on stderr; `values`: the bare annotation values checked."""
    for diagnostic in result.diagnostics:
        sys.stdout.write(diagnostic.human() + "\n")
    checked = len(result.documents) + values
    sys.stderr.write(
        f"multiplane validate: {checked} checked, {result.errors} error(s), {result.warnings} warning(s)\n"
    )


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
    _add_value_options(parser)
    _add_context_options(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    parser.add_argument("--strict", action="store_true", help="warnings count as errors (exit 1)")
    parser.add_argument(
        "--export-schemas", metavar="DIR", help="write the JSON Schemas (docs/schemas/*.json) into DIR and exit"
    )
    return parser


def _add_value_options(parser: argparse.ArgumentParser) -> None:
    """Bare annotation values to check, and the namespace they are read in."""
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


def _add_context_options(parser: argparse.ArgumentParser) -> None:
    """What the checks know of the node: its addresses and its confDir."""
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
