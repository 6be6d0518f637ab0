"""A real etcd cluster on loopback for the tests: Debian's etcd-server (3.4, /usr/bin/etcd), three members by default.

    with EtcdCluster() as cluster:        # started and healthy, or an error with the members' logs
        cluster.endpoints                 # ["http://127.0.0.1:<port>", …], one per member
        cluster.kill(0)                   # SIGKILL member 0 (its data dir stays)
        cluster.restart(0)                # start it again on the same ports and data; wait healthy
        cluster.restart(0, 1, 2)          # several at once (after a full outage: they need each other)
    # every member stopped, the mp-etcd-* directory removed, even when the block raised

With `tls=True` the members serve clients on https only and require a client certificate
signed by a CA made for the cluster (`certs`: ca.pem, client.pem, client.key; peers stay on
http). Each member has its data dir under one temporary directory named mp-etcd-* (on /dev/shm when
there is one: etcd fsyncs every write, and tmpfs makes that free), free loopback ports picked
by the kernel, and fast election settings (heartbeat 50 ms, election timeout 500 ms) so a lost
leader is replaced within about a second. Health is etcd's own /health endpoint of each member
(true only when the member sees a leader and can serve a quorum read). Members run in their
own session, so a signal to the test runner's group does not reach them; `stop()` kills them
by their process ids only.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request

ETCD = "/usr/bin/etcd"
INSTALL_HINT = "install Debian's etcd-server and etcd-client (make setup does)"


class EtcdError(RuntimeError):
    """The cluster could not be started or did not become healthy (the message carries the logs' tails)."""


def free_ports(n: int) -> list[int]:
    """`n` distinct loopback ports that were free a moment ago (held together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def make_tls(directory: str) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl: their paths."""
    os.makedirs(directory, exist_ok=True)
    paths = {name: os.path.join(directory, name) for name in ("ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key")}  # fmt: skip

    def openssl(*args: str) -> None:
        proc = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise EtcdError(f"openssl {args[0]} failed: {proc.stderr.strip()}")

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        paths["ca.key"],
        "-out",
        paths["ca.pem"],
        "-days",
        "2",
        "-subj",
        "/CN=mp-etcd-ca",
    )
    # etcd 3.4's JSON gateway dials the member's own gRPC server with the server certificate as its
    # client certificate: with --client-cert-auth the server certificate must allow clientAuth too.
    for role, usage in (("server", "serverAuth,clientAuth"), ("client", "clientAuth")):
        csr, ext = os.path.join(directory, f"{role}.csr"), os.path.join(directory, f"{role}.ext")
        with open(ext, "w", encoding="ascii") as fh:
            fh.write(f"subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n")
        openssl("req", *ec, "-keyout", paths[f"{role}.key"], "-out", csr, "-subj", f"/CN=mp-etcd-{role}")
        openssl(
            "x509", "-req", "-in", csr, "-CA", paths["ca.pem"], "-CAkey", paths["ca.key"], "-CAcreateserial",
            "-out", paths[f"{role}.pem"], "-days", "2", "-extfile", ext,
        )  # fmt: skip
    return paths


def _open(url: str, context: ssl.SSLContext | None, timeout: float, data: bytes | None = None) -> bytes:
    """GET (or POST `data` to) a member's URL directly: never through the environment's proxies."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    with urllib.request.build_opener(*handlers).open(req, timeout=timeout) as resp:
        return resp.read()


class Member:
    """One etcd member: its name, URLs, data dir, log file and process (None while down)."""

    def __init__(self, name: str, client_port: int, peer_port: int, base: str, scheme: str = "http") -> None:
        self.name = name
        self.client_url = f"{scheme}://127.0.0.1:{client_port}"
        self.peer_url = f"http://127.0.0.1:{peer_port}"
        self.data_dir = os.path.join(base, name)
        self.log_path = os.path.join(base, f"{name}.log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.context: ssl.SSLContext | None = None  # with TLS: trusts the test CA, presents the client certificate

    def healthy(self, timeout: float = 0.5) -> bool:
        try:
            return json.loads(_open(self.client_url + "/health", self.context, timeout)).get("health") == "true"
        except (OSError, ValueError):
            return False

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return "".join(fh.readlines()[-lines:])
        except OSError:
            return "(no log)"


class EtcdCluster:
    """`size` etcd members on loopback; see the module docstring."""

    def __init__(self, size: int = 3, token: str = "", tls: bool = False) -> None:
        if not os.access(ETCD, os.X_OK):
            raise EtcdError(f"{ETCD} is missing: {INSTALL_HINT}")
        self.size = size
        self.tls = tls
        self.certs: dict[str, str] = {}  # with TLS: ca.pem, server.pem/.key, client.pem/.key
        self.token = token or f"mp-etcd-{os.getpid()}-{time.monotonic_ns()}"
        self.base = ""
        self.members: list[Member] = []

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self.base = tempfile.mkdtemp(prefix="mp-etcd-", dir=shm)
        try:
            ports = free_ports(2 * self.size)
            scheme = "https" if self.tls else "http"
            self.members = [
                Member(f"mp-m{i}", ports[2 * i], ports[2 * i + 1], self.base, scheme) for i in range(self.size)
            ]
            if self.tls:
                self.certs = make_tls(os.path.join(self.base, "tls"))
                context = ssl.create_default_context(cafile=self.certs["ca.pem"])
                context.load_cert_chain(self.certs["client.pem"], self.certs["client.key"])
                for m in self.members:
                    m.context = context
            for i in range(self.size):
                self._spawn(i)
            self.wait_healthy(timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _command(self, m: Member) -> list[str]:
        initial = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        return [
            ETCD,
            "--name", m.name,
            "--data-dir", m.data_dir,
            "--listen-client-urls", m.client_url,
            "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url,
            "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", initial,
            "--initial-cluster-token", self.token,
            "--initial-cluster-state", "new",  # ignored when the data dir already has a member (a restart)
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
            "--logger", "zap",
            "--log-level", "warn",
        ] + (
            [
                "--cert-file", self.certs["server.pem"],
                "--key-file", self.certs["server.key"],
                "--trusted-ca-file", self.certs["ca.pem"],
                "--client-cert-auth",
            ]
            if self.tls
            else []
        )  # fmt: skip

    def _spawn(self, i: int) -> None:
        m = self.members[i]
        with open(m.log_path, "ab") as log:
            m.proc = subprocess.Popen(
                self._command(m),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={"PATH": "/usr/bin:/bin"},
            )

    def wait_healthy(self, indexes: list[int] | None = None, timeout: float = 30.0) -> None:
        """Until every given member (default: every running one) reports healthy; EtcdError with logs if not."""
        wanted = [i for i in (range(self.size) if indexes is None else indexes) if self.members[i].proc is not None]
        deadline = time.monotonic() + timeout
        pending = list(wanted)
        while pending:
            for i in list(pending):
                proc = self.members[i].proc
                if proc is not None and proc.poll() is not None:
                    raise EtcdError(f"etcd member {i} exited with {proc.returncode}:\n{self.members[i].log_tail()}")
                if self.members[i].healthy():
                    pending.remove(i)
            if pending and time.monotonic() > deadline:
                logs = "\n".join(f"--- {self.members[i].name}\n{self.members[i].log_tail()}" for i in pending)
                raise EtcdError(f"etcd members {pending} not healthy after {timeout:.0f} s:\n{logs}")
            if pending:
                time.sleep(0.05)

    def kill(self, i: int) -> None:
        """SIGKILL member `i` and reap it; its data dir stays for `restart`."""
        proc = self.members[i].proc
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        self.members[i].proc = None

    def restart(self, *indexes: int, timeout: float = 30.0) -> None:
        """Start these members again (same ports, same data) and wait until they are healthy.

        Members that cannot make a quorum on their own (all of them were down) must be restarted
        in one call: each waits for the others.
        """
        for i in indexes:
            self.kill(i)
            self._spawn(i)
        self.wait_healthy(list(indexes), timeout=timeout)

    def pause(self, i: int) -> None:
        """SIGSTOP member `i`: it still accepts connections (the kernel does) but answers nothing."""
        proc = self.members[i].proc
        if proc is not None:
            os.kill(proc.pid, signal.SIGSTOP)

    def resume(self, i: int) -> None:
        proc = self.members[i].proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)

    def leader(self) -> int:
        """The index of the member the running members call their leader (from /v3/maintenance/status)."""
        ids: dict[int, int] = {}
        leader = 0
        for i, m in enumerate(self.members):
            if m.proc is None:
                continue
            try:
                status = json.loads(_open(m.client_url + "/v3/maintenance/status", m.context, 2, b"{}"))
            except (OSError, ValueError):
                continue
            ids[int(status["header"]["member_id"])] = i
            leader = int(status.get("leader", 0))
        if leader not in ids:
            raise EtcdError(f"no running member is the leader ({leader}); members {ids}")
        return ids[leader]

    def stop(self) -> None:
        """Stop every member (SIGTERM, then SIGKILL after 1 s) and remove the data directory."""
        for m in self.members:
            if m.proc is not None and m.proc.poll() is None:
                os.kill(m.proc.pid, signal.SIGCONT)  # a paused member would never see the SIGTERM
                m.proc.terminate()
        deadline = time.monotonic() + 1  # members stopping together may wait on each other: no more
        for m in self.members:
            if m.proc is None:
                continue
            try:
                m.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.kill(m.proc.pid, signal.SIGKILL)
                m.proc.wait(timeout=10)
            m.proc = None
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = ""

    def pids(self) -> list[int]:
        return [m.proc.pid for m in self.members if m.proc is not None]

    def __enter__(self) -> EtcdCluster:
        return self.start() if not self.base else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
