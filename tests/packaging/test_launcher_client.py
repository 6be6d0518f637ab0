"""The launcher's first hop to the node daemon (decision 0014) against a socket server in the test and a real daemon.

The built launcher (a copy of dist/multiplane, linked under every personality's name) serves
the regular case of src/multiplane/client.py itself and hands every other case to it. Proved
here:

* the request it sends is byte for byte `wire.request(name, environ, stdin)` computed here,
  and the one the Python client sends for the same call; the answer's stdout, stderr and
  status reach the runtime unchanged, and no interpreter starts for it;
* each hand-over ends as client.py decides: a daemon that closes before b"A" (in-process,
  saying why), b"A" then nothing (ADD: code 11; DEL: in-process), no pickup in 5 s (give up,
  the daemon's late b"A" fails), a refusal before b"A" (printed), MULTIPLANE_DAEMON=require
  without a daemon (code 11), =off (no connection), a config with `daemonSocket` (Python's
  connection, to that socket);
* a real daemon serves a call through the launcher;
* the constants the C copies from client.py and wire.py are theirs, and client.forward's
  resume removes the launcher's variables and closes its descriptors before anything else.

Calls run without root: the in-process fallback is host-local ADD/DEL on a dataDir under
tmp_path. The no-pickup case waits out PICKUP_TIMEOUT (5 s).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from multiplane import client, wire
from multiplane.plugins import REGISTRY
from multiplane.runtime import payload
from tests.daemon_harness import Daemon

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist" / "multiplane"
LAUNCHER_C = ROOT / "packaging" / "runtime" / "launcher.c"
HL = "multiplane-host-local"


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of dist/multiplane linked under every personality, unpacking into its own directory."""
    if not os.access(DIST, os.X_OK):
        pytest.fail(f"{DIST} is missing: run `make binary` (make test does)")
    bins = tmp_path_factory.mktemp("mp-bin")
    shutil.copy2(DIST, bins / "multiplane")
    if payload.trailer_of(str(bins / "multiplane")) is None:
        pytest.fail(f"{DIST} carries no runtime payload")
    for name in REGISTRY:
        if name != "multiplane":
            (bins / name).symlink_to("multiplane")
    return bins


@pytest.fixture(scope="module")
def unpack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mp-unpack")


class Server:
    """A unix-socket server standing in for the daemon: records each request's bytes, then `behave(conn)`."""

    def __init__(self, path: Path, behave: Callable[[socket.socket], None]) -> None:
        self.path, self.behave = str(path), behave
        self.requests: list[bytes] = []
        self.errors: list[BaseException] = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                got = bytearray()

                def recv(n: int, conn: socket.socket = conn, got: bytearray = got) -> bytes:
                    chunk = conn.recv(n)
                    got.extend(chunk)
                    return chunk

                try:
                    wire.read_request(recv)
                    self.requests.append(bytes(got))
                    self.behave(conn)
                except Exception as exc:  # noqa: BLE001 - the test reports what the server met
                    self.errors.append(exc)

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (a close alone would not)
        self.listener.close()
        self.thread.join(10)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(behave: Callable[[socket.socket], None], name: str = "mp.sock") -> Server:
        servers.append(Server(tmp_path / name, behave))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def hl_conf(tmp_path: Path, **extra: object) -> bytes:
    conf = {
        "cniVersion": "1.0.0",
        "name": "mp-first-hop",
        "type": "x",
        "ipam": {"type": "host-local", "dataDir": str(tmp_path / "mp-data"), "subnet": "10.41.0.0/24"},
        **extra,
    }
    return json.dumps(conf).encode()


def call_env(unpack_dir: Path, command: str = "ADD", **extra: str) -> dict[str, str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "MULTIPLANE_UNPACK_DIR": str(unpack_dir),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "mp-c1",
        "CNI_NETNS": "/x",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/x",
    }
    return {**env, **extra}


def run(argv: list[str], env: dict[str, str] | dict[bytes, bytes], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, input=stdin, env=env, capture_output=True, timeout=60, check=False)


def answer_with(status: int, stdout: bytes, stderr: bytes, taken: bool = True) -> Callable[[socket.socket], None]:
    def behave(conn: socket.socket) -> None:
        conn.sendall((wire.ACCEPTED if taken else b"") + wire.answer(status, stdout, stderr))

    return behave


# ---- the regular case: the launcher alone ----------------------------------------------------


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_the_request_is_wire_request_and_the_answer_passes_unchanged(
    name: str, bin_dir: Path, unpack_dir: Path, serve: Callable[..., Server], tmp_path: Path
) -> None:
    """Byte for byte wire.request(name, environ, stdin); stderr, stdout and the status as the daemon gave them."""
    server = serve(answer_with(3, b'{"mp": "out\xff"}', b"mp-err\x00text"))
    env = {os.fsencode(k): os.fsencode(v) for k, v in call_env(unpack_dir, MULTIPLANE_SOCKET=server.path).items()}
    env[b"LC_ALL"] = b"C.UTF-8"  # no locale coercion by Python (the next test covers it)
    env[b"MP_NOT_UTF8"] = b"\xff\xfe="
    env[b"MP_EMPTY"] = b""
    stdin = hl_conf(tmp_path) + b"\x00\xff"
    fresh = tmp_path / "mp-fresh-unpack"  # the runtime would be unpacked here: it is not even looked for
    env[b"MULTIPLANE_UNPACK_DIR"] = os.fsencode(fresh)
    proc = run([str(bin_dir / name)], env, stdin)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, b'{"mp": "out\xff"}', b"mp-err\x00text")
    assert server.errors == []
    assert server.requests == [wire.request(name.encode(), wire.encode_environ(env), stdin)]
    assert not fresh.exists()


@pytest.mark.parametrize(
    "locale",
    [
        {},
        {"LANG": "C"},
        {"LC_CTYPE": "POSIX", "MP_AFTER": "1"},
        {"LANG": "C.UTF-8"},
        {"LANG": "mp_NOWHERE.UTF-8"},
        {"LC_ALL": "C"},
        {"LC_ALL": "", "LC_CTYPE": "C"},
    ],
)
def test_the_python_client_sends_the_same_bytes(
    locale: dict[str, str], bin_dir: Path, unpack_dir: Path, serve: Callable[..., Server], tmp_path: Path
) -> None:
    """The same call through the subcommand (left to Python by the launcher) sends exactly the launcher's request.

    Python's start-up puts LC_CTYPE=C.UTF-8 into os.environ in the C locale (PEP 538); the
    launcher's environment block must show the same, in the same place.
    """
    server = serve(answer_with(0, b"{}", b""))
    env = {**call_env(unpack_dir, MULTIPLANE_SOCKET=server.path), **locale}
    stdin = hl_conf(tmp_path)
    assert run([str(bin_dir / HL)], env, stdin).returncode == 0
    # argv[0] "multiplane-host-local" with an argument: the launcher leaves it to Python, whose
    # personality is argv[0]'s (cli.main), so name, environment and stdin are the same.
    assert run([str(bin_dir / HL), "host-local"], env, stdin).returncode == 0
    assert server.errors == []
    assert len(server.requests) == 2
    assert server.requests[0] == server.requests[1]
    if not locale or locale == {"LANG": "C"}:  # the case that needs the launcher to know: it happened
        assert b"\0LC_CTYPE=C.UTF-8\0" in server.requests[0]


def test_constants_copied_into_the_launcher_are_the_clients() -> None:
    text = LAUNCHER_C.read_text()

    def define(name: str) -> str:
        found = re.search(rf"^#define {name} (.+)$", text, re.M)
        assert found, name
        return found.group(1).strip()

    assert define("DEFAULT_SOCKET") == json.dumps(client.DEFAULT_SOCKET)
    assert int(define("CONNECT_TIMEOUT_MS")) == client.CONNECT_TIMEOUT * 1000
    assert int(define("PICKUP_TIMEOUT_MS")) == client.PICKUP_TIMEOUT * 1000
    assert int(define("ANSWER_TIMEOUT_MS")) == client.ANSWER_TIMEOUT * 1000
    assert define("MAX_FIELD") == "((size_t)16 << 20)" and wire.MAX_FIELD == 16 << 20
    assert define("WIRE_MAGIC") == json.dumps(wire.MAGIC.decode())
    assert (wire.ACCEPTED, wire.REPLY) == (b"A", b"R")
    assert "'A'" in text and "'R'" in text


# ---- hand-overs: the Python client decides ---------------------------------------------------


def ips(stdout: bytes) -> list[str]:
    return [ip["address"] for ip in json.loads(stdout)["ips"]]


def test_closed_before_taking_it_runs_in_process(
    bin_dir: Path, unpack_dir: Path, serve: Callable[..., Server], tmp_path: Path
) -> None:
    server = serve(lambda conn: None)  # reads the request, closes
    proc = run([str(bin_dir / HL)], call_env(unpack_dir, MULTIPLANE_SOCKET=server.path), hl_conf(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ips(proc.stdout) == ["10.41.0.2/24"]
    assert b"closed the connection before taking the call" in proc.stderr
    assert len(server.requests) == 1  # the Python client went on with the launcher's connection


@pytest.mark.parametrize("sent", [b"", b"R\x00\x00", wire.REPLY + bytes(4) + (100).to_bytes(4, "big") + b"{}"])
def test_taken_then_lost_add_is_code_11(
    sent: bytes, bin_dir: Path, unpack_dir: Path, serve: Callable[..., Server], tmp_path: Path
) -> None:
    """b"A", then nothing, part of the answer header, or part of stdout: the answer bytes the launcher read go to Python too."""
    server = serve(lambda conn: conn.sendall(wire.ACCEPTED + sent))
    proc = run([str(bin_dir / HL)], call_env(unpack_dir, MULTIPLANE_SOCKET=server.path), hl_conf(tmp_path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    error = json.loads(proc.stdout)
    assert error["code"] == 11
    assert "took the ADD but did not answer (the connection closed in the middle of a message)" in error["msg"]
    assert not (tmp_path / "mp-data").exists()  # nothing ran here
    assert len(server.requests) == 1


def test_taken_then_lost_del_runs_in_process(
    bin_dir: Path, unpack_dir: Path, serve: Callable[..., Server], tmp_path: Path
) -> None:
    add = run([str(bin_dir / HL)], call_env(unpack_dir, MULTIPLANE_DAEMON="off"), hl_conf(tmp_path))
    assert add.returncode == 0, add.stdout + add.stderr
    reserved = tmp_path / "mp-data" / "mp-first-hop" / "10.41.0.2"
    assert reserved.exists()
    server = serve(lambda conn: conn.sendall(wire.ACCEPTED))
    proc = run([str(bin_dir / HL)], call_env(unpack_dir, "DEL", MULTIPLANE_SOCKET=server.path), hl_conf(tmp_path))
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr
    assert b"took the DEL but did not answer" in proc.stderr
    assert not reserved.exists()


def test_no_pickup_gives_up_and_the_late_a_is_refused(
    bin_dir: Path, unpack_dir: Path, serve: Callable[..., Server], tmp_path: Path
) -> None:
    late: list[BaseException | None] = []
    tried = threading.Event()

    def hang(conn: socket.socket) -> None:
        time.sleep(client.PICKUP_TIMEOUT + 0.3)
        try:
            conn.sendall(wire.ACCEPTED)
            late.append(None)
        except OSError as exc:
            late.append(exc)
        tried.set()

    server = serve(hang)
    started = time.monotonic()
    proc = run([str(bin_dir / HL)], call_env(unpack_dir, MULTIPLANE_SOCKET=server.path), hl_conf(tmp_path))
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ips(proc.stdout) == ["10.41.0.2/24"]
    assert b"did not take the call within 5s" in proc.stderr
    assert client.PICKUP_TIMEOUT <= took < client.PICKUP_TIMEOUT + 3  # one pickup timeout, not two
    assert tried.wait(5)
    assert len(late) == 1 and isinstance(late[0], BrokenPipeError)


def test_refused_before_taking_it_is_printed(
    bin_dir: Path, unpack_dir: Path, serve: Callable[..., Server], tmp_path: Path
) -> None:
    busy = b'{"cniVersion": "1.0.0", "code": 11, "msg": "mp busy"}'
    server = serve(answer_with(1, busy, b"mp-refused\n", taken=False))
    proc = run([str(bin_dir / HL)], call_env(unpack_dir, MULTIPLANE_SOCKET=server.path), hl_conf(tmp_path))
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, busy, b"mp-refused\n")
    assert not (tmp_path / "mp-data").exists()


def test_require_without_a_daemon_is_code_11(bin_dir: Path, unpack_dir: Path, tmp_path: Path) -> None:
    env = call_env(unpack_dir, MULTIPLANE_SOCKET=str(tmp_path / "mp-none.sock"), MULTIPLANE_DAEMON="require")
    proc = run([str(bin_dir / HL)], env, hl_conf(tmp_path))
    assert proc.returncode == 1
    error = json.loads(proc.stdout)
    assert error["code"] == 11 and "no daemon socket at" in error["msg"]


def test_off_never_connects(bin_dir: Path, unpack_dir: Path, serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve(answer_with(0, b"{}", b""))
    env = call_env(unpack_dir, MULTIPLANE_SOCKET=server.path, MULTIPLANE_DAEMON="off")
    proc = run([str(bin_dir / HL)], env, hl_conf(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert ips(proc.stdout) == ["10.41.0.2/24"]
    time.sleep(0.2)
    assert server.requests == []


def test_daemon_socket_in_the_config_is_pythons(
    bin_dir: Path, unpack_dir: Path, serve: Callable[..., Server], tmp_path: Path
) -> None:
    """The launcher does not parse JSON: a config naming `daemonSocket` goes to Python, which uses that socket."""
    env_server = serve(answer_with(0, b'{"from": "env"}', b""), "mp-env.sock")
    conf_server = serve(answer_with(0, b'{"from": "conf"}', b""), "mp-conf.sock")
    stdin = hl_conf(tmp_path, daemonSocket=conf_server.path)
    proc = run([str(bin_dir / HL)], call_env(unpack_dir, MULTIPLANE_SOCKET=env_server.path), stdin)
    assert (proc.returncode, proc.stdout) == (0, b'{"from": "conf"}'), proc.stderr
    assert env_server.requests == []
    assert len(conf_server.requests) == 1
    assert conf_server.requests[0].endswith(wire._field(stdin))


def test_stdin_larger_than_the_wire_allows_reaches_python_whole(
    bin_dir: Path, unpack_dir: Path, serve: Callable[..., Server], tmp_path: Path
) -> None:
    """More than MAX_FIELD bytes: no first hop, and Python reads every byte (its error names the size it saw)."""
    server = serve(answer_with(0, b"{}", b""))
    stdin = hl_conf(tmp_path)[:-1] + b', "mp-pad": "' + b"x" * wire.MAX_FIELD + b'"}'
    env = call_env(unpack_dir, MULTIPLANE_SOCKET=server.path)
    proc = run([str(bin_dir / HL)], env, stdin)
    # The Python client sends it; the server's read_request refuses a field over MAX_FIELD.
    assert server.requests == []
    assert len(server.errors) == 1 and f"a field of {len(stdin)} bytes" in str(server.errors[0])
    assert proc.returncode in (0, 1)


# ---- a real daemon ---------------------------------------------------------------------------


def test_a_real_daemon_serves_the_launcher(
    bin_dir: Path, unpack_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MULTIPLANE_BINARY", str(bin_dir / "multiplane"))
    with Daemon(extra_env={"MULTIPLANE_UNPACK_DIR": str(unpack_dir)}) as daemon:
        fresh = tmp_path / "mp-fresh-unpack"  # the calls never start the runtime: they do not unpack it
        env = call_env(fresh, **daemon.env)
        add = run([str(bin_dir / HL)], env, hl_conf(tmp_path))
        assert add.returncode == 0, add.stdout + add.stderr
        assert ips(add.stdout) == ["10.41.0.2/24"]
        delete = run([str(bin_dir / HL)], {**env, "CNI_COMMAND": "DEL"}, hl_conf(tmp_path))
        assert delete.returncode == 0, delete.stdout + delete.stderr
        log = daemon.log_text()
    assert not fresh.exists()
    assert re.search(r"daemon: ADD of .*\(multiplane-host-local\): ", log), log
    assert re.search(r"daemon: DEL of .*\(multiplane-host-local\): ", log), log


# ---- the Python side of a hand-over -----------------------------------------------------------


def test_resume_removes_the_launchers_variables_and_closes_its_descriptors(monkeypatch: pytest.MonkeyPatch) -> None:
    """client.forward pops MULTIPLANE_CLIENT_FD/STATE before anything else and closes both descriptors it was given."""
    ours, daemons = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    read_r, read_w = os.pipe()
    os.write(read_w, wire.REPLY + bytes(4))
    os.close(read_w)
    fd = ours.detach()
    os.set_inheritable(fd, True)
    os.set_inheritable(read_r, True)
    daemons.close()  # after b"A" and 5 bytes of the answer: the daemon went away
    monkeypatch.setenv("MULTIPLANE_CLIENT_FD", str(fd))
    monkeypatch.setenv("MULTIPLANE_CLIENT_STATE", f"accepted {time.monotonic_ns() + 10**9} {read_r}")
    monkeypatch.setenv("MULTIPLANE_SOCKET", "/run/mp-resume.sock")
    seen: list[dict[str, str]] = []
    real_lost = client._lost

    def lost(path: str, command: str, why: str) -> client.Fallback | client.Failed:
        seen.append(dict(os.environ))
        return real_lost(path, command, why)

    monkeypatch.setattr(client, "_lost", lost)
    outcome = client.forward("multiplane-host-local", b"{}", "DEL")
    assert isinstance(outcome, client.Fallback)
    assert "the daemon at /run/mp-resume.sock took the DEL but did not answer" in outcome.note
    assert "MULTIPLANE_CLIENT_FD" not in os.environ and "MULTIPLANE_CLIENT_STATE" not in os.environ
    assert seen and "MULTIPLANE_CLIENT_FD" not in seen[0]
    for closed in (fd, read_r):
        with pytest.raises(OSError):
            os.fstat(closed)


SPY = """#!/bin/sh
env > {out}/env
ls -l /proc/$$/fd > {out}/fds
cat > /dev/null
"""


@pytest.mark.parametrize("sent", [None, wire.ACCEPTED + b"R\x00"], ids=["closed-before-A", "A-then-part-of-answer"])
def test_a_delegate_after_a_hand_over_sees_neither_the_variables_nor_the_descriptors(
    sent: bytes | None, bin_dir: Path, unpack_dir: Path, serve: Callable[..., Server], tmp_path: Path
) -> None:
    """macvlan's DEL, run in-process after the hand-over, execs its IPAM: no MULTIPLANE_CLIENT_*, no socket, no memfd."""
    spy_bin, out = tmp_path / "mp-spybin", tmp_path / "mp-spyout"
    spy_bin.mkdir()
    out.mkdir()
    (spy_bin / "mp-spy").write_text(SPY.format(out=out))
    (spy_bin / "mp-spy").chmod(0o755)
    server = serve(lambda conn: conn.sendall(sent) if sent else None)
    conf = {"cniVersion": "1.0.0", "name": "mp-mv", "type": "macvlan", "master": "mp-none", "ipam": {"type": "mp-spy"}}
    env = call_env(unpack_dir, "DEL", MULTIPLANE_SOCKET=server.path, CNI_PATH=str(spy_bin), CNI_NETNS="")
    proc = run([str(bin_dir / "multiplane-macvlan")], env, json.dumps(conf).encode())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert b"in-process (the daemon at" in proc.stderr  # the Python client went on with the launcher's connection
    assert len(server.requests) == 1
    seen = (out / "env").read_text()
    assert "CNI_COMMAND=DEL" in seen
    assert "MULTIPLANE_CLIENT" not in seen
    fds = (out / "fds").read_text()
    assert "socket:" not in fds and "memfd:" not in fds, fds
