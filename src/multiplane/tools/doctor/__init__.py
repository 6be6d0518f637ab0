"""`multiplane doctor`: check one node for what would make its pods fail, and say what to do (docs/doctor.md).

This module owns the command line; `node.Doctor` runs the checks, one module per group, and writes nothing anywhere.
"""

from __future__ import annotations

import argparse
import json
import sys

from multiplane.tools.doctor.model import FAIL, GROUPS, OK, WARNING, Check
from multiplane.tools.doctor.node import Doctor
from multiplane.tools.doctor.output import human, report

__all__ = ["FAIL", "GROUPS", "OK", "WARNING", "Check", "Doctor", "build_parser", "human", "main", "report"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multiplane doctor",
        description="Check this node for what would make pods fail: configs, plugins, master NICs, "
        "the API and RBAC, the readiness file, the installed runtime. Exit status 1 when a check fails.",
    )
    parser.add_argument(
        "--cni-conf-dir", default="/etc/cni/net.d", help="the runtime's CNI config dir (default %(default)s)"
    )
    parser.add_argument("--cni-bin-dir", default="/opt/cni/bin", help="the runtime's CNI bin dir (default %(default)s)")
    parser.add_argument("--root", default="", help="read every node path under this directory (tests, /host)")
    parser.add_argument("--node-name", default="", help="this node's name in the API (default: the hostname)")
    parser.add_argument(
        "--kubeconfig", default="", help="use this kubeconfig instead of the one 00-multiplane.conf names"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    return parser


def main(argv: list[str]) -> int:
    """`multiplane doctor [flags]` (argv without "doctor"): 1 when a check fails, 0 otherwise, 2 for usage."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    doctor = Doctor(
        conf_dir=args.cni_conf_dir,
        bin_dir=args.cni_bin_dir,
        root=args.root,
        node=args.node_name,
        kubeconfig=args.kubeconfig,
    )
    checks = doctor.run()
    doc = report(checks, doctor.node, doctor.conf_dir, doctor.bin_dir)
    sys.stdout.write(json.dumps(doc, indent=2) + "\n" if args.json else human(doc))
    sys.stdout.flush()
    return 1 if doc["status"] == FAIL else 0
