"""A real `multiplane daemon` process for tests: started on a socket under a fresh /tmp/mp-* dir, stopped by SIGTERM.

    with Daemon() as daemon:                     # waits until it serves (its "serving" line)
        run(binary, "ADD", conf, env=daemon.env)  # MULTIPLANE_SOCKET=<sock>, MULTIPLANE_DAEMON=require
    # stop(): SIGTERM, exit status 0 and no socket file left, or AssertionError with the log

`env` carries MULTIPLANE_DAEMON=require, so a call the daemon does not serve fails (code 11)
instead of passing through the in-process fallback: a test can never pass by accident.

The daemon is the venv's `multiplane` console script (or $MULTIPLANE_BINARY, the built file,
when tests/packaging re-runs a suite through it), with an environment of its own (PATH and
`extra_env` only: no KUBERNETES_SERVICE_HOST, nothing of the test process). `prefix` runs it
somewhere else (`ip netns exec <node>` …: it must exec the daemon, so that SIGTERM reaches
it). `inject` is Python run in the daemon before `multiplane.cli.main` (a fault for a test:
then the daemon is `python -c`, the package imported from the venv).

Its stderr (the daemon's own log; verbose by default: one line per request) is collected
into a file: `log_text()` and `log_since_mark()` read it, and tests/integration/conftest.py
adds what the daemons of a failed test wrote to the failure report (`active()`).

With `metrics_address` ("127.0.0.1:0" takes a free port), `wait_healthy()` waits for
/healthz (with a cluster: both caches synced) and `metric()` reads one sample of /metrics.

`FrontDoor` is what tests/integration/conftest.py's `front_door` fixture gives a test: the
one-shot process or a daemon, the variables a call needs for it, `own_daemon()` for calls
that need a daemon of their own under the daemon front door, and `cluster_daemon()` for a
daemon watching the test's API server under the daemon-cluster front door.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

BIN_DIR = os.path.dirname(sys.executable)
START_TIMEOUT = 30.0
STOP_TIMEOUT = 40.0  # the daemon lets requests already taken finish for up to 30 s
SERVING = "daemon: multiplane "  # the start of the info line logged just before it accepts

_ACTIVE: list[Daemon] = []  # started since the last begin_test(): their logs go into a failure report


def daemon_argv() -> list[str]:
    """The command that is `multiplane daemon` here: the built file under tests/packaging, else the console script."""
    binary = os.environ.get("MULTIPLANE_BINARY", "")
    return [binary or os.path.join(BIN_DIR, "multiplane"), "daemon"]


class DaemonError(AssertionError):
    """The daemon did not start, died, or did not stop cleanly; the message carries its log."""


class Daemon:
    """One daemon process; see the module docstring."""

    def __init__(
        self,
        *,
        kubeconfig: str | None = None,
        node_name: str | None = None,
        metrics_address: str | None = None,
        log_level: str = "verbose",
        config: str | None = None,
        extra_env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
        inject: str = "",
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="mp-d", dir="/tmp"))
        self.socket = str(self.dir / "mp.sock")
        self.log_path = self.dir / "mp-daemon.log"
        args = ["--socket", self.socket, "--log-level", log_level]
        for flag, value in (
            ("--config", config),
            ("--kubeconfig", kubeconfig),
            ("--node-name", node_name),
            ("--metrics-address", metrics_address),
        ):
            if value is not None:
                args += [flag, value]
        if inject:
            code = f"{inject}\nimport sys\nfrom multiplane.cli import main\nsys.exit(main(['multiplane', 'daemon', *sys.argv[1:]]))\n"
            command = [sys.executable, "-c", code]
        else:
            command = daemon_argv()
        self.argv = [*prefix, *command, *args]
        self.daemon_env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), **(extra_env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self._mark = 0
        self._final_log: str | None = None

    # ---- what a test uses ----------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """The variables a call needs to go through this daemon, and only through it."""
        return {"MULTIPLANE_SOCKET": self.socket, "MULTIPLANE_DAEMON": "require"}

    @property
    def metrics_url(self) -> str:
        """http://host:port of /healthz and /metrics (the bound port, as the daemon logged it at start)."""
        found = re.search(r"/healthz and /metrics on (\S+?)(?:;|\s|$)", self.log_text())
        if found is None:
            raise DaemonError(f"the daemon serves no /healthz (start it with metrics_address):\n{self.log_text()}")
        return f"http://{found.group(1)}"

    def healthy(self) -> bool:
        """/healthz answers 200: the socket listens and, with a cluster, both caches have synced."""
        try:
            with urllib.request.urlopen(self.metrics_url + "/healthz", timeout=2) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> Daemon:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            self.check_alive()
            if time.monotonic() > deadline:
                raise DaemonError(f"/healthz not healthy within {timeout:g} s:\n{self.log_text()}")
            time.sleep(0.02)
        return self

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of /metrics (0 when absent)."""
        with urllib.request.urlopen(self.metrics_url + "/metrics", timeout=5) as reply:
            text = reply.read().decode()
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            head, _, value = line.rpartition(" ")
            sample, _, rest = head.partition("{")
            if sample == name and ",".join(sorted(rest.rstrip("}").split(","))) == want:
                return float(value)
        return 0.0

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise DaemonError("the daemon was never started")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        if self._final_log is not None:
            return self._final_log
        try:
            return self.log_path.read_bytes().decode("utf-8", "backslashreplace")
        except FileNotFoundError:
            return ""

    def mark(self) -> None:
        """Remember where the log is now: `log_since_mark()` shows only what came after."""
        self._mark = len(self.log_text())

    def log_since_mark(self) -> str:
        return self.log_text()[self._mark :]

    def check_alive(self) -> None:
        """Fail (with the log) if the daemon has exited."""
        if not self.alive():
            raise DaemonError(f"the daemon exited (status {self.proc and self.proc.returncode}):\n{self.log_text()}")

    # ---- life cycle ----------------------------------------------------------------------------

    def start(self) -> Daemon:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.daemon_env,
                cwd=str(self.dir),
            )
        _ACTIVE.append(self)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if SERVING in self.log_text() and os.path.exists(self.socket):
                return self
            if self.proc.poll() is not None:
                text = self.log_text()
                self._cleanup()
                raise DaemonError(f"the daemon exited at start (status {self.proc.returncode}):\n{text}")
            time.sleep(0.01)
        self.kill()
        raise DaemonError(f"the daemon did not serve {self.socket} within {START_TIMEOUT:g} s:\n{self.log_text()}")

    def stop(self) -> None:
        """SIGTERM; then the daemon must exit 0 and leave no socket file (DaemonError with its log otherwise)."""
        if self.proc is None or self._final_log is not None:
            return
        problems = []
        if self.proc.poll() is not None:
            problems.append(f"it had already exited with status {self.proc.returncode}")
        else:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problems.append(f"it did not exit within {STOP_TIMEOUT:g} s of SIGTERM (killed)")
            else:
                if self.proc.returncode != 0:
                    problems.append(f"it exited with status {self.proc.returncode} after SIGTERM")
        if os.path.lexists(self.socket):
            problems.append(f"it left its socket file {self.socket}")
        text = self.log_text()
        self._cleanup()
        if problems:
            raise DaemonError("the multiplane daemon did not stop cleanly: " + "; ".join(problems) + f"\nlog:\n{text}")

    def kill(self) -> None:
        """SIGKILL (a crash, for fault tests): nothing is checked; the stale socket file goes with the dir."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._final_log is None:
            self._final_log = self.log_text()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.stop()
            return
        try:  # the test already failed: still stop, but do not hide its error behind ours
            self.stop()
        except DaemonError as error:
            sys.stderr.write(f"{error}\n")


def begin_test() -> None:
    """A new test starts: forget daemons that are gone, and mark the logs of those still serving."""
    _ACTIVE[:] = [d for d in _ACTIVE if d.alive()]
    for daemon in _ACTIVE:
        daemon.mark()


def active() -> list[Daemon]:
    """The daemons that served (or died) during the current test."""
    return list(_ACTIVE)


@atexit.register
def _no_daemon_outlives_the_tests() -> None:
    """A daemon some test forgot to stop (a bug in the test) is killed with the test process."""
    for daemon in _ACTIVE:
        if daemon.alive():
            daemon.kill()


@dataclass
class FrontDoor:
    """One way into the engine: its name, the variables a call needs, and its daemon (None: the one-shot process).

    `cluster`: the daemon front door with a Kubernetes cluster of its own (`--kubeconfig`, watch
    caches). A daemon watches one API server, so a test's calls go to the daemon that
    `cluster_daemon(kubeconfig)` starts for the test's API server; the module's daemon (no
    cluster) serves the calls made before.
    """

    name: str
    env: dict[str, str]
    daemon: Daemon | None = None
    cluster: bool = False
    cluster_daemons: int = 0  # started by cluster_daemon(): a test of the cluster front door must start one

    @property
    def is_daemon(self) -> bool:
        return self.daemon is not None

    @contextmanager
    def own_daemon(self, **settings: Any) -> Iterator[dict[str, str]]:
        """The variables for calls that need a daemon of their own (in another netns, with a fault injected …).

        Under the daemon front door: a fresh daemon with `settings` (Daemon's keywords), stopped
        and checked at the end. Under the process front door: this front door's own variables.
        """
        if self.daemon is None:
            yield dict(self.env)
            return
        with Daemon(**settings) as own:
            yield own.env

    @contextmanager
    def cluster_daemon(self, kubeconfig: str, node_name: str = "mp-node") -> Iterator[dict[str, str]]:
        """Under the `cluster` front door: a daemon of its own watching `kubeconfig`'s API server (caches
        synced before the first call), and its variables; otherwise this front door's own variables."""
        if not self.cluster:
            yield dict(self.env)
            return
        self.cluster_daemons += 1
        with Daemon(kubeconfig=kubeconfig, node_name=node_name, metrics_address="127.0.0.1:0") as own:
            own.wait_healthy()
            yield own.env
