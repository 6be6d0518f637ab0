"""doctor's `daemon.socket` check against real sockets under a temporary root, and a real daemon taking the probe quietly."""

from __future__ import annotations

import socket
from pathlib import Path

from multiplane import client
from multiplane.tools.doctor.daemon import DEFAULT_SOCKET, check_daemon
from multiplane.tools.doctor.model import OK, WARNING
from multiplane.tools.doctor.node import Doctor
from tests.unit.test_daemon_server import Running


def checked(root: Path, raw: dict[str, object]) -> tuple[str, str]:
    doctor = Doctor(root=str(root))
    doctor.meta_raw = raw
    check_daemon(doctor)
    (only,) = doctor.checks
    assert only.id == "daemon.socket"
    return only.status, only.finding


def test_the_default_is_the_clients() -> None:
    assert DEFAULT_SOCKET == client.DEFAULT_SOCKET


def test_no_socket_is_thin_mode(tmp_path: Path) -> None:
    assert checked(tmp_path, {}) == (OK, f"no daemon socket at {DEFAULT_SOCKET}: calls run in-process (thin mode)")


def test_switched_off_in_the_config(tmp_path: Path) -> None:
    status, finding = checked(tmp_path, {"daemonSocket": ""})
    assert status == OK and "never use a daemon" in finding


def test_a_stale_socket_and_a_plain_file_are_warnings(tmp_path: Path) -> None:
    path = tmp_path / "run/mp-d/mp.sock"
    path.parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    status, finding = checked(tmp_path, {"daemonSocket": "/run/mp-d/mp.sock"})
    assert status == WARNING and "nobody answers on the daemon socket /run/mp-d/mp.sock" in finding
    assert str(tmp_path) not in finding  # node paths, not paths under --root
    path.unlink()
    path.write_text("")
    status, finding = checked(tmp_path, {"daemonSocket": "/run/mp-d/mp.sock"})
    assert status == WARNING and "is not a socket" in finding


def test_a_running_daemon_is_ok_and_takes_the_probe_quietly(tmp_path: Path) -> None:
    node = tmp_path / "mp-root"
    (node / "run").mkdir(parents=True)
    daemon = Running(node / "run", logLevel="verbose")
    try:
        status, finding = checked(node, {"daemonSocket": "/run/mp-d.sock"})
    finally:
        daemon.stop()
    assert (status, finding) == (OK, "a daemon listens on /run/mp-d.sock: calls go to it")
    assert "[error]" not in daemon.log_text()
