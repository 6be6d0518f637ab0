"""The `runtime.*` checks: the launcher in the CNI bin dir, the tree `.multiplane/current` names, the plugin links.

A tree must be complete and match its MANIFEST (`multiplane.runtime.layout.verify`). The node daemon is not checked yet.
"""

from __future__ import annotations

import os
import stat

from multiplane.installer import BINARY, CONF_NAME
from multiplane.tools.doctor.model import FAIL, OK, WARNING, listing

TYPE_CHECKING = False
if TYPE_CHECKING:
    from multiplane.tools.doctor.node import Doctor

__all__ = ["check_runtime"]


def check_runtime(doctor: Doctor) -> None:
    """runtime.launcher, runtime.tree (for a launcher without a payload), runtime.links (once there is a launcher)."""
    bin_dir = doctor.real(doctor.bin_dir)
    launcher = os.path.join(bin_dir, BINARY)
    if _check_launcher(doctor, launcher):
        _check_tree(doctor, bin_dir, launcher)
    if os.path.isfile(launcher):
        _check_links(doctor, bin_dir)


def _check_launcher(doctor: Doctor, launcher: str) -> bool:
    """Whether the bin dir holds a launcher that starts `.multiplane/current` (else runtime.launcher says what)."""
    from multiplane.runtime import payload

    shown = os.path.join(doctor.bin_dir, BINARY)
    try:
        st = os.stat(launcher)
    except OSError:
        doctor.add(
            "runtime.launcher",
            FAIL,
            f"{shown} is missing: the runtime cannot run the plugin of {CONF_NAME}, every pod fails",
            "run `multiplane install` (the DaemonSet's init container does)",
        )
        return False
    if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
        doctor.add(
            "runtime.launcher", FAIL, f"{shown} is not an executable file: every pod fails", f"chmod 0755 {shown}"
        )
        return False
    try:
        trailer = payload.trailer_of(launcher)
    except (OSError, payload.PayloadError) as exc:
        doctor.add("runtime.launcher", FAIL, f"{shown} is damaged: {exc}", "run `multiplane install` again")
        return False
    if trailer is not None:
        doctor.add(
            "runtime.launcher",
            WARNING,
            f"{shown} is the self-contained file (build {trailer[2]}): it works, "
            "and unpacks its runtime once per build into /var/lib/cni/multiplane/run",
            f"lay the runtime down beside it: `{shown} install` (or the DaemonSet), see docs/binary.md",
        )
        return False
    return True


def _check_tree(doctor: Doctor, bin_dir: str, launcher: str) -> None:
    """runtime.launcher (the one of the current build?), then runtime.tree: `current` names a complete tree."""
    from multiplane.runtime import layout

    current_shown = os.path.join(doctor.bin_dir, layout.RUNTIME_DIR, layout.CURRENT)
    build = layout.current(bin_dir)
    tree = os.path.realpath(os.path.join(bin_dir, layout.RUNTIME_DIR, layout.CURRENT)) if build is not None else ""
    _compare_launcher(doctor, launcher, tree, build)
    if build is None:
        doctor.add(
            "runtime.tree",
            FAIL,
            f"{current_shown} is missing: the launcher has no runtime to start, every pod fails",
            "run `multiplane install`",
        )
        return
    if not os.path.isdir(tree):
        doctor.add(
            "runtime.tree",
            FAIL,
            f"{current_shown} points at {build}, which does not exist: every pod fails",
            "run `multiplane install`",
        )
        return
    count, problems = layout.verify(tree, os.path.basename(tree))
    if problems:
        doctor.add(
            "runtime.tree",
            FAIL,
            f"the runtime tree {build} does not match its MANIFEST: {listing(problems)}: "
            "calls run modified files or do not start",
            "install the runtime again: `multiplane uninstall` then `multiplane install` "
            "(install leaves an existing complete tree of the same build alone), and find what changed it",
        )
    else:
        doctor.add("runtime.tree", OK, f"{current_shown} -> {build}: complete, {count} files match the MANIFEST")


def _compare_launcher(doctor: Doctor, launcher: str, tree: str, build: str | None) -> None:
    """The launcher in the bin dir should be the one of the build `current` names."""
    shown = os.path.join(doctor.bin_dir, BINARY)
    try:
        with open(os.path.join(tree, "launcher"), "rb") as fh:
            expected = fh.read()
        with open(launcher, "rb") as fh:
            same = fh.read() == expected
    except OSError:
        doctor.add("runtime.launcher", OK, f"{shown} is the launcher (it starts .multiplane/current)")
        return  # no tree, or one without its launcher copy: the tree check says so
    if same:
        doctor.add("runtime.launcher", OK, f"{shown} is the launcher of build {build}")
    else:
        doctor.add(
            "runtime.launcher",
            WARNING,
            f"{shown} is not the launcher of build {build} (an older or newer one)",
            "run `multiplane install` again so both come from one build",
        )


def _check_links(doctor: Doctor, bin_dir: str) -> None:
    """Every other personality in the bin dir is the launcher (cnitool and runtimes may call them directly)."""
    from multiplane.plugins import REGISTRY

    launcher = os.path.join(bin_dir, BINARY)
    names = [name for name in sorted(REGISTRY) if name != BINARY]
    missing = []
    for name in names:
        try:
            if os.path.samefile(os.path.join(bin_dir, name), launcher):
                continue
        except OSError:
            pass
        missing.append(name)
    if missing:
        doctor.add(
            "runtime.links",
            WARNING,
            f"{', '.join(missing)} in {doctor.bin_dir} missing or not the launcher: "
            "the meta-plugin does not need them; a runtime or cnitool calling them directly fails",
            "run `multiplane install` (it creates the links)",
        )
    else:
        doctor.add("runtime.links", OK, f"{', '.join(names)} -> {BINARY}")
