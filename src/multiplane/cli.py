"""The one entry point: chooses a personality from argv[0] or a subcommand, then runs skel.

    multiplane-host-local            (argv[0], e.g. a link in /opt/cni/bin)  → host-local IPAM
    multiplane host-local            (subcommand)                            → host-local IPAM
    multiplane --version                                                     → version text
    multiplane install | uninstall [flags]                                   → node installer

This module reads sys.argv and decides the exit status; a CNI call's environment is read
here once and handed to skel as a dict. (The meta-plugin also looks at the process's own
KUBERNETES_SERVICE_HOST for the in-cluster config, and `install` at its environment.)
Plugin modules are imported only for the personality that runs.
"""

from __future__ import annotations

import os
import sys

from multiplane import __version__

__all__ = ["main"]

_USAGE = """\
usage: multiplane --version
       multiplane                   the meta-plugin, as a runtime runs it (CNI_* set, config on stdin)
       multiplane <plugin>          run a built-in CNI plugin (reads CNI_* and stdin)
       <link named multiplane-<plugin>>  the same, chosen by the program name
       multiplane install [flags]   put the binary, plugin links and 00-multiplane.conf on this node
       multiplane uninstall [flags] remove them again (`multiplane install --help` lists the flags)
       multiplane validate [FILE|-] check NADs, network configs, conflists and selection annotations
       multiplane daemon [flags]    serve CNI calls on a unix socket (thick mode; `multiplane daemon --help`)
       multiplane doctor [--json]   check this node: configs, plugins, master NICs, the API and RBAC, the runtime
       multiplane ipam show [RANGE] --config FILE | ipam reconcile --config FILE [flags]  cluster-wide IPAM's store
plugins: {plugins}
"""


def _invoked_name(argv0: str) -> str:
    """The name we were started by (the personality): the launcher passes the runtime's argv[0] on."""
    return os.path.basename(argv0)


def _read_stdin() -> bytes:
    stdin = sys.stdin
    if stdin is None or stdin.isatty():
        return b""
    return stdin.buffer.read()


def _write_all(fd: int, data: bytes) -> None:
    while data:  # a pipe may take less than all of it at once
        data = data[os.write(fd, data) :]


def _run_plugin(personality: str) -> int:
    """A CNI call: to the node daemon when one answers (client.py), else run here."""
    command = os.environ.get("CNI_COMMAND", "")
    try:
        stdin = _read_stdin() if command else b""
    except OSError as exc:
        from multiplane.errors import IOFailure

        _write_all(1, IOFailure(f"error reading from stdin: {exc}").to_json("1.1.0").encode())
        return 1
    note = ""
    if command and command != "VERSION":
        from multiplane import client

        outcome = client.forward(personality, stdin, command)
        if isinstance(outcome, client.Answer):
            if outcome.stderr:
                try:
                    _write_all(2, outcome.stderr)
                except OSError:
                    pass  # no stderr: the answer on stdout is what counts
            _write_all(1, outcome.stdout)
            return outcome.status
        if isinstance(outcome, client.Failed):
            from multiplane.errors import CniError, TryAgainLater
            from multiplane.skel import _error_version

            error = TryAgainLater(outcome.msg) if outcome.code == TryAgainLater.code else CniError(outcome.msg)
            _write_all(1, error.to_json(_error_version(stdin)).encode())
            return 1
        note = outcome.note
        if outcome.loud:
            try:
                _write_all(2, f"multiplane: {note}\n".encode("utf-8", "backslashreplace"))
            except OSError:
                pass
    return _run_here(personality, stdin, note)


def _run_here(personality: str, stdin: bytes, note: str = "") -> int:
    """Run the call in this process, with `note` (how it got here) for the call's log."""
    from multiplane import frontdoor
    from multiplane.invoke import run_call

    status, data = run_call(personality, dict(os.environ), stdin, sys.stderr, frontdoor.FrontDoor(note=note))
    _write_all(1, data)
    return status


def _not_available(what: str) -> int:
    """A runtime called a personality this build does not have: answer in CNI terms."""
    from multiplane.errors import InvalidConfig

    os.write(1, InvalidConfig(f"{what} is not available in multiplane {__version__}").to_json("1.1.0").encode())
    return 1


def main(argv: list[str] | None = None) -> int:
    """Dispatch on the program name, then on the first argument; returns the exit status."""
    from multiplane.plugins import ALIASES, REGISTRY

    argv = list(sys.argv if argv is None else argv)
    prog = _invoked_name(argv[0]) if argv else "multiplane"
    if prog in REGISTRY and prog != "multiplane":
        return _run_plugin(prog)
    rest = argv[1:]
    if rest and rest[0] in ("install", "uninstall"):
        from multiplane.installer import main as installer_main

        return installer_main(rest)
    if rest and rest[0] == "daemon":
        from multiplane.daemon.run import main as daemon_main

        return daemon_main(rest[1:])
    if rest and rest[0] == "ipam":
        from multiplane.tools.ipam import main as ipam_main

        return ipam_main(rest[1:])
    if rest and rest[0] in ("validate", "doctor"):
        # Operator tools: they may import what serves them best (pydantic), never on a CNI call.
        if rest[0] == "validate":
            from multiplane.tools.validate import main as tool_main
        else:
            from multiplane.tools.doctor import main as tool_main
        return tool_main(rest[1:])
    if rest and rest[0] == "--version":
        sys.stdout.write(f"multiplane {__version__}\n")
        return 0
    if rest and (rest[0] in ALIASES or rest[0] in REGISTRY):
        return _run_plugin(ALIASES.get(rest[0], rest[0]))
    if os.environ.get("CNI_COMMAND"):
        # A runtime calls the binary with no arguments: that is the meta-plugin.
        return _run_plugin("multiplane") if not rest else _not_available(f"plugin {rest[0]!r}")
    sys.stderr.write(_USAGE.format(plugins=", ".join(sorted(ALIASES))))
    return 0 if rest[:1] in (["-h"], ["--help"]) else 2
