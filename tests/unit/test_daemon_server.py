"""The daemon's socket, queue and workers, and the per-call client against them (real sockets, real calls).

The server runs in a thread of the test process (daemon.server.Server, exactly what
`multiplane daemon` runs); the client is the real `multiplane` entry point in a fresh
interpreter, as a runtime runs it. The calls are host-local (in-process) and macvlan DELs
whose IPAM is a script in a CNI_PATH the test makes (to hold a worker for a while).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from multiplane import logs, wire
from multiplane.daemon.config import DEFAULT_SOCKET, ConfigError, DaemonConfig, load
from multiplane.daemon.server import DaemonFrontDoor, Server, SocketBusy
from tests.cni import OURS_HOST_LOCAL, run

SRC = Path(__file__).resolve().parents[2] / "src"


class Running:
    """A Server on a socket under tmp, serving in a thread until stop()."""

    def __init__(self, tmp: Path, **settings: object) -> None:
        self.socket = str(tmp / "mp-d.sock")
        self.log_path = tmp / "mp-daemon.log"
        self.cfg = DaemonConfig(
            {"socket": self.socket, "logFile": str(self.log_path), "logLevel": "verbose", **settings}
        )
        self.log = logs.Logger(self.cfg.log_level, self.cfg.log_file, to_stderr=False)
        self.server = Server(self.cfg, DaemonFrontDoor(self.cfg, None), self.log)
        self.stop_event = threading.Event()
        self.server.bind()
        self.thread = threading.Thread(target=self.server.serve, args=(self.stop_event, 10.0), daemon=True)
        self.thread.start()
        assert self.server.serving.wait(5)

    def env(self, **extra: str) -> dict[str, str]:
        return {"MULTIPLANE_SOCKET": self.socket, "MULTIPLANE_DAEMON": "require", **extra}

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(15)
        assert not self.thread.is_alive()
        self.log.close()


@pytest.fixture
def daemon(tmp_path: Path):
    running = Running(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def host_local_conf(tmp: Path, subnet: str = "10.61.0.0/24", **extra: object) -> dict[str, object]:
    return {
        "cniVersion": "1.0.0",
        "name": "mp-dnet",
        "type": "x",
        "ipam": {"type": "host-local", "subnet": subnet, "dataDir": str(tmp / "mp-data")},
        **extra,
    }


def slow_ipam(tmp: Path, seconds: float) -> str:
    """A CNI_PATH dir whose `mp-slow` IPAM plugin sleeps, then succeeds; returns the dir."""
    bin_dir = tmp / "mp-bin"
    bin_dir.mkdir(exist_ok=True)
    plugin = bin_dir / "mp-slow"
    plugin.write_text(f"#!/bin/sh\nsleep {seconds}\necho '{{}}'\n")
    plugin.chmod(0o755)
    return str(bin_dir)


def macvlan_del_conf() -> dict[str, object]:
    # macvlan DEL runs its IPAM's DEL first; with CNI_NETNS gone there is nothing else to do.
    return {
        "cniVersion": "1.0.0",
        "name": "mp-slow",
        "type": "macvlan",
        "master": "mp-none",
        "ipam": {"type": "mp-slow"},
    }


def add_env(**extra: str) -> dict[str, str]:
    """A host-local ADD's CNI_* variables (the config's dataDir is what matters), plus `extra`."""
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "mp-c1", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0", "CNI_PATH": "/x"}
    return {**env, **extra}


def call_in_client(
    code: str, env: dict[str, str], stdin: bytes, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    """Run the real entry point in a fresh interpreter after `code` (e.g. shorter client timeouts)."""
    script = f"import sys\nfrom multiplane import client\n{code}\nfrom multiplane.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run(
        [sys.executable, "-S", "-c", script, *env.pop("_ARGV", "multiplane").split()],
        input=stdin,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(SRC), **env},
        capture_output=True,
        timeout=timeout,
        check=False,
    )


# ---- configuration ----------------------------------------------------------------------------


def test_config_defaults_and_flags_over_the_file(tmp_path: Path) -> None:
    cfg = DaemonConfig()
    assert (cfg.socket, cfg.max_concurrency, cfg.max_queued, cfg.metrics_address) == (DEFAULT_SOCKET, 8, 128, "")
    assert cfg.node_name == socket.gethostname().lower()
    path = tmp_path / "mp-daemon.json"
    path.write_text(json.dumps({"socket": "/run/mp-a.sock", "nodeName": "mp-node", "maxConcurrency": 3}))
    cfg = load(str(path), {"socket": "/run/mp-b.sock", "nodeName": None})
    assert (cfg.socket, cfg.node_name, cfg.max_concurrency) == ("/run/mp-b.sock", "mp-node", 3)


def test_the_client_and_the_daemon_agree_on_the_default_socket() -> None:
    from multiplane import client

    assert client.DEFAULT_SOCKET == DEFAULT_SOCKET


@pytest.mark.parametrize(
    ("values", "said"),
    [
        ({"sockett": "/x"}, "unknown key 'sockett'"),
        ({"socket": "relative.sock"}, "socket must be an absolute path"),
        ({"chrootDir": "/host/../etc"}, "chrootDir must be an absolute path without '..'"),
        ({"maxConcurrency": 0}, "maxConcurrency must be 1..1024"),
        ({"maxConcurrency": "8"}, "maxConcurrency must be an integer"),
        ({"maxQueued": True}, "maxQueued must be an integer"),
        ({"queueTimeout": -1}, "queueTimeout must be a number of seconds"),
        ({"logLevel": "loud"}, "logLevel must be one of"),
        ({"socket": "/" + "s" * 120}, "longer than a unix socket allows"),
    ],
)
def test_config_refuses_what_it_cannot_honour(values: dict[str, object], said: str) -> None:
    with pytest.raises(ConfigError, match=said.replace("(", r"\(").replace(".", r"\.")):
        DaemonConfig(values)


def test_config_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mp-bad.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="mp-bad.json is not JSON"):
        load(str(path))
    with pytest.raises(ConfigError, match="cannot read"):
        load(str(tmp_path / "mp-missing.json"))


def test_daemon_command_refuses_a_bad_config_with_status_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "multiplane", "daemon", "--socket", "relative.sock"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "socket must be an absolute path" in proc.stderr


# ---- the wire ---------------------------------------------------------------------------------


def test_wire_round_trip_keeps_bytes_that_are_not_utf8() -> None:
    environ = {b"CNI_ARGS": b"K8S_POD_NAME=\xff\xfe", b"EMPTY": b"", b"EQ": b"a=b=c"}
    frame = wire.request(b"multiplane", wire.encode_environ(environ), b"\x00\xffstdin")
    left = bytearray(frame)

    def recv(n: int) -> bytes:
        out = bytes(left[:n])
        del left[:n]
        return out

    name, env_block, stdin = wire.read_request(recv)
    assert (name, stdin) == (b"multiplane", b"\x00\xffstdin")
    env = wire.decode_environ(env_block)
    assert {os.fsencode(k): os.fsencode(v) for k, v in env.items()} == environ
    with pytest.raises(wire.WireError, match="bad magic"):
        wire.read_request(lambda n: b"XXXX"[:n])


# ---- serving ----------------------------------------------------------------------------------


def test_socket_is_root_only_and_one_daemon_per_socket(daemon: Running, tmp_path: Path) -> None:
    st = os.stat(daemon.socket)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    second = Server(daemon.cfg, DaemonFrontDoor(daemon.cfg, None), daemon.log)
    with pytest.raises(SocketBusy, match="another multiplane daemon serves"):
        second.bind()
    assert os.path.exists(daemon.socket)  # the loser did not remove the winner's socket


def test_a_stale_socket_is_replaced_and_a_non_socket_refused(tmp_path: Path) -> None:
    path = tmp_path / "mp-d.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on: a daemon that died
    running = Running(tmp_path)
    try:
        out = run(OURS_HOST_LOCAL, "ADD", host_local_conf(tmp_path), env=running.env())
        assert out.ok, out.stdout + out.stderr
    finally:
        running.stop()
    assert not path.exists()  # removed on stop
    path.write_text("not a socket")
    cfg = DaemonConfig({"socket": str(path)})
    from multiplane.errors import InvalidConfig

    with pytest.raises(InvalidConfig, match="is not a socket"):
        Server(cfg, DaemonFrontDoor(cfg, None), logs.Logger()).bind()
    assert path.read_text() == "not a socket"


def test_the_daemon_answers_exactly_what_the_one_shot_process_answers(daemon: Running, tmp_path: Path) -> None:
    """Same request, two data dirs: byte-identical stdout, status and on-disk state."""
    answers = []
    for where, env in (("mp-a", daemon.env()), ("mp-b", {"MULTIPLANE_DAEMON": "off"})):
        conf = host_local_conf(tmp_path / where)
        (tmp_path / where).mkdir()
        added = run(OURS_HOST_LOCAL, "ADD", conf, container_id="mp-c1", env=env)
        bad = run(OURS_HOST_LOCAL, "ADD", {**conf, "cniVersion": "9.9.9"}, container_id="mp-c2", env=env)
        files = sorted(p.name for p in (tmp_path / where / "mp-data" / "mp-dnet").iterdir())
        deleted = run(OURS_HOST_LOCAL, "DEL", conf, container_id="mp-c1", env=env)
        answers.append((added.returncode, added.stdout, bad.returncode, bad.stdout, files, deleted.returncode))
    assert answers[0] == answers[1]
    assert answers[0][0] == 0 and answers[0][2] == 1 and "10.61.0.2" in answers[0][4]
    assert "ADD of container mp-c1 (multiplane-host-local): ok" in daemon.log_text()


def test_the_request_environment_is_the_callers_not_the_daemons(daemon: Running, tmp_path: Path) -> None:
    """CNI_PATH and the rest come from the request: the daemon (this test process) has none of them."""
    bin_dir = tmp_path / "mp-bin"
    bin_dir.mkdir()
    dump = tmp_path / "mp-env.json"
    plugin = bin_dir / "mp-envdump"
    plugin.write_text(f"#!/bin/sh\nenv > {dump}\necho '{{}}'\n")
    plugin.chmod(0o755)
    os.environ["MP_DAEMON_ONLY"] = "1"
    try:
        conf = {**macvlan_del_conf(), "ipam": {"type": "mp-envdump"}}
        out = run(
            [sys.executable, "-m", "multiplane", "macvlan"],
            "DEL",
            conf,
            netns="/var/run/netns/mp-gone",
            path=str(bin_dir),
            env={**daemon.env(), "MP_REQUEST_ONLY": "2", "PYTHONPATH": str(SRC)},
        )
    finally:
        del os.environ["MP_DAEMON_ONLY"]
    assert out.ok, out.stdout + out.stderr
    seen = dict(line.split("=", 1) for line in dump.read_text().splitlines() if "=" in line)
    assert seen["MP_REQUEST_ONLY"] == "2" and "MP_DAEMON_ONLY" not in seen
    assert seen["CNI_PATH"] == str(bin_dir) and seen["CNI_COMMAND"] == "DEL"


def test_stderr_of_the_request_reaches_the_caller(daemon: Running, tmp_path: Path) -> None:
    bin_dir = tmp_path / "mp-bin"
    bin_dir.mkdir()
    plugin = bin_dir / "mp-talk"
    plugin.write_text("#!/bin/sh\necho 'mp-said-this' >&2\necho '{}'\n")
    plugin.chmod(0o755)
    conf = {**macvlan_del_conf(), "ipam": {"type": "mp-talk"}}
    out = run(
        OURS_HOST_LOCAL.replace("host-local", "macvlan"),
        "DEL",
        conf,
        netns="/var/run/netns/mp-gone",
        path=str(bin_dir),
        env=daemon.env(),
    )
    assert out.ok, out.stdout + out.stderr
    assert "mp-said-this" in out.stderr


def test_a_full_queue_is_refused_at_once_with_code_11(tmp_path: Path) -> None:
    running = Running(tmp_path, maxConcurrency=1, maxQueued=1)
    try:
        path = slow_ipam(tmp_path, 1.5)
        slow = [
            threading.Thread(
                target=run,
                args=(OURS_HOST_LOCAL.replace("host-local", "macvlan"), "DEL", macvlan_del_conf()),
                kwargs={
                    "netns": "/var/run/netns/mp-gone",
                    "path": path,
                    "env": running.env(),
                    "container_id": f"mp-s{i}",
                },
            )
            for i in range(2)
        ]
        for t in slow:
            t.start()
            time.sleep(0.3)  # the first runs, the second waits in the queue
        started = time.monotonic()
        out = run(OURS_HOST_LOCAL, "ADD", host_local_conf(tmp_path), env=running.env())
        took = time.monotonic() - started
        for t in slow:
            t.join()
    finally:
        running.stop()
    err = out.error()
    assert err["code"] == 11 and "daemon is busy" in err["msg"]
    assert took < 1.0  # refused at once, not after a wait
    assert not (tmp_path / "mp-data").exists()  # nothing was run


def test_a_request_that_waited_past_queue_timeout_is_refused_unrun(tmp_path: Path) -> None:
    running = Running(tmp_path, maxConcurrency=1, queueTimeout=0.3)
    try:
        path = slow_ipam(tmp_path, 1.0)
        first = threading.Thread(
            target=run,
            args=(OURS_HOST_LOCAL.replace("host-local", "macvlan"), "DEL", macvlan_del_conf()),
            kwargs={"netns": "/var/run/netns/mp-gone", "path": path, "env": running.env()},
        )
        first.start()
        time.sleep(0.3)
        out = run(OURS_HOST_LOCAL, "ADD", host_local_conf(tmp_path), env=running.env())
        first.join()
    finally:
        running.stop()
    err = out.error()
    assert err["code"] == 11 and "queueTimeout" in err["msg"]
    assert not (tmp_path / "mp-data").exists()


def test_no_daemon_means_in_process_and_require_means_code_11(tmp_path: Path) -> None:
    gone = str(tmp_path / "mp-nobody.sock")
    out = run(OURS_HOST_LOCAL, "ADD", host_local_conf(tmp_path), env={"MULTIPLANE_SOCKET": gone})
    assert out.ok and out.stderr == ""  # no daemon installed: the normal thin mode, quietly
    out = run(
        OURS_HOST_LOCAL,
        "ADD",
        host_local_conf(tmp_path),
        container_id="mp-c2",
        env={"MULTIPLANE_SOCKET": gone, "MULTIPLANE_DAEMON": "require"},
    )
    err = out.error()
    assert err["code"] == 11 and f"no daemon socket at {gone}" in err["msg"]


def test_a_socket_nobody_listens_on_falls_back_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "mp-dead.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()
    out = run(OURS_HOST_LOCAL, "ADD", host_local_conf(tmp_path), env={"MULTIPLANE_SOCKET": str(path)})
    assert out.ok, out.stdout
    assert f"nobody listens on the daemon socket {path}" in out.stderr


def test_daemon_socket_in_the_config_wins_and_empty_switches_it_off(daemon: Running, tmp_path: Path) -> None:
    conf = host_local_conf(tmp_path, daemonSocket=daemon.socket)
    out = run(
        OURS_HOST_LOCAL,
        "ADD",
        conf,
        env={"MULTIPLANE_SOCKET": str(tmp_path / "mp-other.sock"), "MULTIPLANE_DAEMON": "require"},
    )
    assert out.ok, out.stdout
    out = run(OURS_HOST_LOCAL, "ADD", {**conf, "daemonSocket": ""}, container_id="mp-c2", env=daemon.env())
    assert out.error()["code"] == 11 and "switched off" in out.error()["msg"]
    assert daemon.log_text().count("(multiplane-host-local): ok") == 1


def test_version_never_asks_the_daemon(tmp_path: Path) -> None:
    out = run(
        OURS_HOST_LOCAL,
        "VERSION",
        {"cniVersion": "1.0.0"},
        env={"MULTIPLANE_SOCKET": str(tmp_path / "mp-x.sock"), "MULTIPLANE_DAEMON": "require"},
    )
    assert out.ok and json.loads(out.stdout)["cniVersion"] == "1.0.0"


def test_a_client_that_gave_up_before_the_daemon_took_it_is_never_run(tmp_path: Path) -> None:
    """A daemon that takes the call late (stuck acceptor): the client falls back, the daemon drops it."""
    path = str(tmp_path / "mp-late.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(8)
    env = add_env(MULTIPLANE_SOCKET=path)
    proc = call_in_client(
        "client.PICKUP_TIMEOUT = 0.5",
        {**env, "_ARGV": "multiplane-host-local"},
        json.dumps(host_local_conf(tmp_path)).encode(),
    )
    conn, _ = listener.accept()  # only now: the client gave up long ago
    conn.settimeout(2)
    name, _, _ = wire.read_request(conn.recv)
    with pytest.raises(BrokenPipeError):  # the commitment b"A" cannot be made any more
        conn.sendall(wire.ACCEPTED)
    conn.close()
    listener.close()
    assert name == b"multiplane-host-local"
    assert proc.returncode == 0, proc.stdout + proc.stderr  # it ran in-process instead
    assert b"did not take the call within 0.5s" in proc.stderr


def test_a_call_taken_just_before_the_deadline_is_not_run_twice(tmp_path: Path) -> None:
    """b"A" arrived but the client had stopped waiting: ADD answers 11 (the runtime retries), it does not run here too."""
    path = str(tmp_path / "mp-late.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(8)
    taken = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        wire.read_request(conn.recv)
        conn.sendall(wire.ACCEPTED)  # taken, then the daemon hangs
        taken.set()
        time.sleep(2)
        conn.close()

    t = threading.Thread(target=serve)
    t.start()
    env = add_env(MULTIPLANE_SOCKET=path, _ARGV="multiplane-host-local")
    proc = call_in_client("client.ANSWER_TIMEOUT = 0.5", env, json.dumps(host_local_conf(tmp_path)).encode())
    t.join()
    listener.close()
    assert taken.is_set()
    err = json.loads(proc.stdout)
    assert proc.returncode == 1 and err["code"] == 11 and "took the ADD but did not answer" in err["msg"]
    assert not (tmp_path / "mp-data").exists()  # not run in-process as well


def test_a_daemon_that_dies_during_a_del_leaves_the_del_to_the_client(tmp_path: Path) -> None:
    """DEL is safe to repeat: the connection breaking after b"A" makes the client run it itself."""
    path = str(tmp_path / "mp-dying.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(8)

    def serve() -> None:
        conn, _ = listener.accept()
        wire.read_request(conn.recv)
        conn.sendall(wire.ACCEPTED)
        conn.close()  # died mid-call

    t = threading.Thread(target=serve)
    t.start()
    conf = host_local_conf(tmp_path)
    run(OURS_HOST_LOCAL, "ADD", conf, container_id="mp-c1", env={"MULTIPLANE_DAEMON": "off"})
    out = run(OURS_HOST_LOCAL, "DEL", conf, container_id="mp-c1", env={"MULTIPLANE_SOCKET": path})
    t.join()
    listener.close()
    assert out.ok, out.stdout + out.stderr
    assert "took the DEL but did not answer" in out.stderr
    assert not (tmp_path / "mp-data" / "mp-dnet" / "10.61.0.2").exists()


def test_the_client_loads_almost_nothing_when_the_daemon_answers(daemon: Running, tmp_path: Path) -> None:
    """Per-call client budget: the daemon does the work, so no json, re, engine or plugin module is loaded."""
    from tests.unit.test_import_budget import call

    conf = host_local_conf(tmp_path)
    env = add_env(**daemon.env())
    loaded, stdout = call("multiplane-host-local", env, json.dumps(conf).encode())
    assert b"10.61.0.2" in stdout
    ours = sorted(m for m in loaded if m.startswith("multiplane"))
    assert ours == ["multiplane", "multiplane.cli", "multiplane.client", "multiplane.plugins", "multiplane.wire"]
    assert sorted(loaded & {"json", "re", "enum", "socket", "selectors", "ipaddress", "typing", "contextvars"}) == []


def test_slow_closes_happen_off_the_request_path(tmp_path: Path) -> None:
    """A packet socket's close waits for the kernel (RCU); the daemon's front door closes it on another thread."""
    from multiplane.frontdoor import FrontDoor

    closed = threading.Event()

    class Slow:
        def close(self) -> None:
            time.sleep(0.3)
            closed.set()

    cfg = DaemonConfig({"socket": str(tmp_path / "mp-d.sock")})
    started = time.monotonic()
    DaemonFrontDoor(cfg, None).close_later(Slow())
    assert time.monotonic() - started < 0.1
    assert closed.wait(5)
    closed.clear()
    started = time.monotonic()
    FrontDoor().close_later(Slow())  # the one-shot process closes at once
    assert closed.is_set() and time.monotonic() - started >= 0.3
