"""The `daemon.socket` check: is there a node daemon, and does it listen where the calls look for it?

The socket is the config's `daemonSocket`, else the default (the runtime's $MULTIPLANE_SOCKET
cannot be seen from here). Doctor only connects and closes (the daemon takes a connection
that sends nothing as a probe); it sends no call.
"""

from __future__ import annotations

import os
import socket
import stat

from multiplane.tools.doctor.model import OK, WARNING

TYPE_CHECKING = False
if TYPE_CHECKING:
    from multiplane.tools.doctor.node import Doctor

__all__ = ["DEFAULT_SOCKET", "check_daemon"]

DEFAULT_SOCKET = "/run/multiplane/multiplane.sock"  # = multiplane.client.DEFAULT_SOCKET (a test checks)
_LOGS = "look at the daemon's log (`kubectl -n kube-system logs ds/multiplane -c daemon`)"


def check_daemon(doctor: Doctor) -> None:
    """No socket: thin mode (ok). A daemon listening: ok. A socket nobody listens on: every call falls back (warning)."""
    if doctor.meta_raw is None:
        return  # no usable 00-multiplane.conf: no call runs at all, there is nothing to say about the daemon
    configured = doctor.meta_raw.get("daemonSocket")
    if configured == "":
        doctor.add("daemon.socket", OK, 'daemonSocket is "": calls never use a daemon and run in-process')
        return
    path = configured if isinstance(configured, str) and configured else DEFAULT_SOCKET
    real = doctor.real(path)
    try:
        mode = os.lstat(real).st_mode
    except FileNotFoundError:
        doctor.add("daemon.socket", OK, f"no daemon socket at {path}: calls run in-process (thin mode)")
        return
    except OSError as exc:
        doctor.add("daemon.socket", WARNING, f"cannot look at {path}: {exc.strerror}", _LOGS)
        return
    if not stat.S_ISSOCK(mode):
        doctor.add(
            "daemon.socket",
            WARNING,
            f"{path} is not a socket: every call tries it, then runs in-process and says so on stderr",
            f"remove {path}, or point daemonSocket elsewhere",
        )
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(real)
    except OSError as exc:
        doctor.add(
            "daemon.socket",
            WARNING,
            f"nobody answers on the daemon socket {path} ({exc.strerror or exc}): every call waits for it, "
            "then runs in-process and says so on stderr",
            f"{_LOGS}; a daemon that is gone for good leaves its socket: restart it, or remove the socket",
        )
        return
    finally:
        probe.close()
    doctor.add("daemon.socket", OK, f"a daemon listens on {path}: calls go to it")
