"""The daemon's socket, queue and workers: each request is one `cli.run_call`, as in the one-shot process.

One acceptor thread reads each request (wire.py), then either refuses it at once (the queue
holds `maxQueued` already: code 11, nothing run) or answers b"A" and queues it. Writing that
b"A" is the commitment: a client that gave up before it shut its reading side, the write fails
(EPIPE) and the request is dropped unrun (client.py explains the other half). `maxConcurrency`
worker threads take requests in order. A request that waited longer than `queueTimeout` is
answered with code 11 unrun; one whose client has gone (connection closed) is dropped unrun.
Otherwise it runs with its own environment and stdin, in a fresh context (no logger, stderr
or front door of an earlier request), its stderr text collected and sent back with the answer.
Memory stays bounded: the queue, the workers and the caches are all bounded.
"""

from __future__ import annotations

import contextvars
import fcntl
import io
import os
import queue
import socket
import stat
import threading
import time

from multiplane import logs, wire
from multiplane.errors import CniError, InvalidConfig, TryAgainLater
from multiplane.frontdoor import FrontDoor

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from multiplane.daemon.config import DaemonConfig
    from multiplane.daemon.ipam import Housekeeper
    from multiplane.daemon.metrics import Metrics

__all__ = ["DaemonFrontDoor", "Server", "SocketBusy"]

READ_TIMEOUT = 2.0  # seconds for a connected client to send its whole request
WRITE_TIMEOUT = 10.0  # seconds for a client to take the answer
_SENTINEL = None


class SocketBusy(RuntimeError):
    """Another daemon holds the socket's lock."""


class DaemonFrontDoor(FrontDoor):
    """What the daemon lends every call: chrootDir, cniBinDir and its Kubernetes source (or none)."""

    name = "daemon"
    # A delegate that runs a multiplane program (the reference bridge with IPAM
    # multiplane-host-local) must not call back into the daemon: it would wait for a worker
    # that its own caller holds. Its call runs in the delegate's process instead.
    delegate_env = {"MULTIPLANE_DAEMON": "off"}

    def __init__(
        self,
        cfg: DaemonConfig,
        kube: Callable[[], object] | None,
        kube_cfg: object | None = None,
        housekeeper: Housekeeper | None = None,
    ) -> None:
        super().__init__(
            exec_root=cfg.chroot_dir,
            bin_dirs=(cfg.cni_bin_dir,) if cfg.cni_bin_dir else (),
            note="served by the multiplane daemon",
        )
        self._kube = kube
        self._kube_cfg = kube_cfg
        self._housekeeper = housekeeper
        self._node_name = cfg.node_name
        self._closing: queue.SimpleQueue[Any] = queue.SimpleQueue()
        threading.Thread(target=self._closer, name="mp-closer", daemon=True).start()

    def close_later(self, closeable: Any) -> None:
        self._closing.put(closeable)

    def _closer(self) -> None:
        while True:
            closeable = self._closing.get()
            try:
                closeable.close()
            except OSError:
                pass  # nothing waits for this close; a failure changes nothing for any call

    def kube_source(self, kubeconfig: str, env: Mapping[str, str]) -> object | None:
        # The daemon's own identity serves every call that would read a cluster one-shot (as
        # Multus thick does); a call configured for local NAD files keeps reading them. With no
        # cluster of its own, a call's `kubeconfig` still builds a client per call.
        if self._kube is None or not (kubeconfig or env.get("KUBERNETES_SERVICE_HOST")):
            return None
        return self._kube()

    def cluster_env(self) -> dict[str, str]:
        return {}  # never the daemon's environment: the daemon decided about the cluster itself

    def cluster_config(self, kubeconfig: str = "") -> object | None:
        if self._kube_cfg is not None:
            return self._kube_cfg  # the daemon's identity serves every call that would talk to a cluster
        return super().cluster_config(kubeconfig) if kubeconfig else None  # no cluster: a call's own file, as one-shot

    def node_name(self) -> str:
        return self._node_name

    def look_after(self, conf: object) -> None:
        if self._housekeeper is not None:
            self._housekeeper.look_after(conf)  # type: ignore[arg-type]


class _Request:
    __slots__ = ("command", "conn", "env", "name", "queued_at", "stdin")

    def __init__(self, conn: socket.socket, name: str, env: dict[str, str], stdin: bytes) -> None:
        self.conn, self.name, self.env, self.stdin = conn, name, env, stdin
        self.command = env.get("CNI_COMMAND", "")
        self.queued_at = time.monotonic()


class Server:
    """Listen on `cfg.socket`; `serve(stop)` runs until `stop` is set, then finishes what was taken."""

    def __init__(self, cfg: DaemonConfig, front: FrontDoor, log: logs.Logger, metrics: Metrics | None = None) -> None:
        self.cfg = cfg
        self.front = front
        self.log = log
        self.metrics = metrics
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._workers: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._lock_fd: int | None = None
        self._inode: tuple[int, int] | None = None
        self._busy = 0
        self._busy_lock = threading.Lock()
        self.serving = threading.Event()

    # ---- the socket --------------------------------------------------------------------------

    def bind(self) -> None:
        """Take the socket's lock, replace a stale socket file, listen (0600, root only)."""
        path = self.cfg.socket
        directory = os.path.dirname(path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise SocketBusy(f"another multiplane daemon serves {path} (it holds {path}.lock)") from None
        self._lock_fd = lock_fd
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(st.st_mode):
                raise InvalidConfig(f"{path} exists and is not a socket; not replacing it")
            os.unlink(path)  # left by a daemon that died: we hold the lock, so nobody serves it
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is born 0600: no window in which others may connect
        try:
            listener.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        listener.listen(1024)
        listener.settimeout(0.5)
        st = os.stat(path)
        self._inode = (st.st_dev, st.st_ino)
        self._listener = listener

    def close(self) -> None:
        """Stop listening and remove the socket file (if it is still ours) and release the lock."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            try:
                st = os.stat(self.cfg.socket)
                if (st.st_dev, st.st_ino) == self._inode:
                    os.unlink(self.cfg.socket)
            except OSError:
                pass
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ---- serving -----------------------------------------------------------------------------

    def serve(self, stop: threading.Event, grace: float = 30.0) -> None:
        """Accept until `stop` is set; then stop listening and let the workers finish (at most `grace` s)."""
        if self._listener is None:
            self.bind()
        for i in range(self.cfg.max_concurrency):
            worker = threading.Thread(target=self._work, name=f"mp-worker-{i}", daemon=True)
            worker.start()
            self._workers.append(worker)
        self.serving.set()
        try:
            while not stop.is_set():
                try:
                    conn, _ = self._listener.accept()  # type: ignore[union-attr]
                except TimeoutError:
                    continue
                except OSError as exc:
                    if stop.is_set():
                        break
                    self.log.error(f"daemon: accept failed: {exc}")
                    time.sleep(0.1)
                    continue
                self._take(conn)
        finally:
            self.serving.clear()
            self.close()
            for _ in self._workers:
                self._queue.put(_SENTINEL)
            deadline = time.monotonic() + grace
            for worker in self._workers:
                worker.join(max(0.0, deadline - time.monotonic()))

    def _take(self, conn: socket.socket) -> None:
        """Read one request, then refuse it or answer b"A" and queue it."""
        try:
            conn.settimeout(READ_TIMEOUT)
            first = conn.recv(1)
            if not first:  # connected and closed: a probe (`multiplane doctor`), not a call
                self.log.debug("daemon: a connection closed without a request (a probe)")
                conn.close()
                return
            pending = [first]

            def recv(n: int) -> bytes:
                return pending.pop() if pending else conn.recv(n)

            name, environ, stdin = wire.read_request(recv)
        except (OSError, wire.WireError) as exc:
            self.log.error(f"daemon: dropped a connection that sent no complete request ({exc})")
            conn.close()
            return
        env = wire.decode_environ(environ)
        req = _Request(conn, name.decode("utf-8", "surrogateescape"), env, stdin)
        queued = self._queue.qsize()
        if queued >= self.cfg.max_queued:
            self._refuse(req, f"the multiplane daemon is busy: {queued} requests are waiting for a worker")
            return
        try:
            conn.settimeout(WRITE_TIMEOUT)
            conn.sendall(wire.ACCEPTED)
        except OSError:
            # The client gave up waiting (and shut its side): it runs the call itself.
            self.log.verbose(f"daemon: {req.command} of {_who(env)}: the client left before the daemon took it")
            conn.close()
            return
        self._queue.put(req)
        if self.metrics is not None:
            self.metrics.request_queued(1)

    def _refuse(self, req: _Request, why: str) -> None:
        self.log.error(f"daemon: {req.command} of {_who(req.env)} refused: {why}")
        self._answer(req, 1, TryAgainLater(why).to_json(_version(req.stdin)).encode(), b"")
        if self.metrics is not None:
            self.metrics.request_finished(req.command or "?", "rejected", 0.0)

    def _answer(self, req: _Request, status: int, stdout: bytes, stderr: bytes) -> None:
        try:
            req.conn.settimeout(WRITE_TIMEOUT)
            req.conn.sendall(wire.answer(status, stdout, stderr))
        except OSError as exc:
            self.log.error(f"daemon: {req.command} of {_who(req.env)}: the answer could not be sent ({exc})")
        finally:
            req.conn.close()

    def _work(self) -> None:
        while True:
            req = self._queue.get()
            if req is _SENTINEL:
                return
            if self.metrics is not None:
                self.metrics.request_queued(-1)
            try:
                self._run(req)
            except Exception:  # noqa: BLE001 - a worker must survive anything one request does
                self.log.bug(f"daemon: serving {req.command} of {_who(req.env)}")
                req.conn.close()

    def _run(self, req: _Request) -> None:
        waited = time.monotonic() - req.queued_at
        if waited > self.cfg.queue_timeout:
            self._refuse(
                req, f"the request waited {waited:.1f}s for a worker (queueTimeout {self.cfg.queue_timeout:g}s)"
            )
            return
        if _gone(req.conn):
            self.log.error(
                f"daemon: {req.command} of {_who(req.env)}: the client left before a worker was free; not run"
            )
            req.conn.close()
            return
        from multiplane.invoke import run_call
        from multiplane.plugins import REGISTRY

        if req.name not in REGISTRY:
            error = InvalidConfig(f"unknown plugin {req.name!r}: the daemon runs {', '.join(sorted(REGISTRY))}")
            self._answer(req, 1, error.to_json(_version(req.stdin)).encode(), b"")
            return
        stderr = io.StringIO()

        def call() -> tuple[int, bytes]:
            with logs.stderr_to(stderr):
                return run_call(req.name, req.env, req.stdin, stderr, self.front)

        with self._busy_lock:
            self._busy += 1
        if self.metrics is not None:
            self.metrics.request_started()
        started = time.monotonic()
        result = "error"
        try:
            # A fresh context: no logger, stderr or front door of an earlier request leaks in.
            status, stdout = contextvars.Context().run(call)
            result = "ok" if status == 0 else "error"
        finally:
            took = time.monotonic() - started
            with self._busy_lock:
                self._busy -= 1
            if self.metrics is not None:
                self.metrics.request_finished(req.command or "?", result, took)
        self.log.verbose(
            f"daemon: {req.command} of {_who(req.env)} ({req.name}): {result} in {took * 1000:.1f} ms"
            f" (waited {waited * 1000:.1f} ms)"
        )
        self._answer(req, *_fit(status, stdout, stderr.getvalue().encode("utf-8", "backslashreplace"), req))

    def load(self) -> tuple[int, int]:
        """(requests running, requests waiting)."""
        return self._busy, self._queue.qsize()


STDERR_LIMIT = 1 << 20  # a call's stderr sent back: its first and last 512 KiB at most


def _fit(status: int, stdout: bytes, stderr: bytes, req: _Request) -> tuple[int, bytes, bytes]:
    """The answer cut to what the wire carries: stderr shortened in the middle (with a note);
    an answer too large for the wire (never a CNI result) becomes an error, not a lost call."""
    if len(stderr) > STDERR_LIMIT:
        half = STDERR_LIMIT // 2
        dropped = len(stderr) - 2 * half
        stderr = (
            stderr[:half] + f"\n[multiplane daemon: {dropped} bytes of stderr left out]\n".encode() + stderr[-half:]
        )
    if len(stdout) > wire.MAX_FIELD:
        error = CniError(f"the answer of {len(stdout)} bytes is larger than the daemon sends ({wire.MAX_FIELD})")
        return 1, error.to_json(_version(req.stdin)).encode(), stderr
    return status, stdout, stderr


def _gone(conn: socket.socket) -> bool:
    """Whether the client closed its end (it gave up): a zero-byte peek."""
    try:
        conn.settimeout(0)  # with a timeout set, recv would first wait for data
        return conn.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _who(env: dict[str, str]) -> str:
    container = env.get("CNI_CONTAINERID", "")[:12] or "-"
    pod = ""
    for pair in env.get("CNI_ARGS", "").split(";"):
        key, _, value = pair.partition("=")
        if key in ("K8S_POD_NAMESPACE", "K8S_POD_NAME"):
            pod = f"{pod}/{value}" if pod else value
    return f"container {container}" + (f" (pod {pod})" if pod else "")


def _version(stdin: bytes) -> str:
    from multiplane.skel import _error_version

    return _error_version(stdin)
