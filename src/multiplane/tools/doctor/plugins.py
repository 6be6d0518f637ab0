"""The `plugins.*` checks: every delegate type the configuration can reach is an executable in a bin dir.

Built-in types run in-process and need no binary; the IPAM of an external plugin is executed by that plugin.
"""

from __future__ import annotations

import os
import stat

from multiplane.installer import CONF_NAME
from multiplane.spec.gojson import field
from multiplane.tools.doctor.model import FAIL, OK, WARNING, listing

TYPE_CHECKING = False
if TYPE_CHECKING:
    from multiplane.tools.doctor.model import Network
    from multiplane.tools.doctor.node import Doctor

__all__ = ["check_plugins", "plugin_users"]


def plugin_users(networks: list[Network]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """({type that needs a binary: its users}, {type that runs in-process: its users}), IPAM types included."""
    from multiplane.plugins.delegation import BUILTINS

    needed: dict[str, list[str]] = {}
    inproc: dict[str, list[str]] = {}
    for net in networks:
        for plugin in net.config.plugins:
            kind = str(field(plugin, "type"))
            builtin = kind in BUILTINS
            table = inproc if builtin else needed
            table.setdefault(kind, []).append(net.label)
            ipam = field(plugin, "ipam")
            ipam_type = field(ipam, "type") if isinstance(ipam, dict) else None
            if not isinstance(ipam_type, str) or not ipam_type:
                continue
            # A built-in runs its IPAM through us (in-process for built-in types); an
            # external plugin executes its IPAM binary itself, from CNI_PATH.
            table = inproc if builtin and ipam_type in BUILTINS else needed
            table.setdefault(ipam_type, []).append(f"{net.label} as IPAM of {kind}")
    return needed, inproc


def check_plugins(doctor: Doctor) -> None:
    """One check per type that needs a binary (in binDir or the CNI bin dir), one listing the in-process ones."""
    meta = doctor.meta
    if meta is None:
        doctor.add("plugins.delegates", WARNING, f"not checked: no usable {CONF_NAME}", "see the config checks")
        return
    needed, inproc = plugin_users(doctor.networks)
    dirs = list(dict.fromkeys([meta.bin_dir, doctor.bin_dir]))
    for kind in sorted(needed):
        _check_binary(doctor, kind, sorted(set(needed[kind])), dirs)
    if inproc:
        doctor.add("plugins.in-process", OK, f"in-process, no binary needed: {', '.join(sorted(inproc))}")
    if not needed and not inproc:
        doctor.add("plugins.delegates", OK, "no delegate network is known to check")


def _check_binary(doctor: Doctor, kind: str, users: list[str], dirs: list[str]) -> None:
    """The first regular file named `kind` in `dirs` (node paths) is executable; or there is none."""
    using = f"used by {listing(users)}"
    for directory in dirs:
        path = os.path.join(directory, kind)
        try:
            st = os.stat(doctor.real(path))
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        if not st.st_mode & 0o111:
            doctor.add(
                f"plugins.{kind}",
                FAIL,
                f"{path} is not executable ({using}): these networks fail",
                f"chmod 0755 {path}",
            )
        else:
            doctor.add(f"plugins.{kind}", OK, f"{path} ({using})")
        return
    doctor.add(
        f"plugins.{kind}",
        FAIL,
        f"plugin {kind!r} is not in {' or '.join(dirs)} ({using}): these networks fail",
        f"install the {kind} CNI plugin into {dirs[-1]} (e.g. Debian's containernetworking-plugins "
        "or the vendor's DaemonSet)",
    )
