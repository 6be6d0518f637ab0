"""A small Kubernetes API client on the standard library: the calls the meta-plugin and the node daemon need.

* GET  /api/v1/namespaces/{ns}/pods/{name}
* GET  /apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions/{name}
* PATCH /api/v1/namespaces/{ns}/pods/{name}/status  (network-status annotation: one JSON merge patch,
  the pod's uid as its precondition)
* POST /api/v1/namespaces/{ns}/events               (a pod's Events; one try, short timeout)
* list and watch of a collection (PODS_PATH with fieldSelector spec.nodeName=<node>, NADS_PATH),
  for the daemon's caches; not used by the per-call plugin
* custom resources by path (`custom_path`): GET, list (labelSelector), POST (409 AlreadyExists),
  PUT with the object's resourceVersion (409 Conflict when stale), DELETE with preconditions
  (uid, resourceVersion: 409 Conflict on a mismatch); cluster-wide IPAM's store (ipam/cluster/kube.py)

packaging/k8s/rbac.yaml grants these requests (tests/integration/test_meta_events_add.py checks it
against the requests of a real ADD/DEL and of the daemon's caches); packaging/k8s/rbac-ipam.yaml
those of cluster-wide IPAM's store (tests/unit/test_cluster_kube.py).

Why not a client library: each CNI call is a fresh process; lightkube (~118 ms of
imports here) and kubernetes (~198 ms) cost more than the rest of an ADD, and we need
a handful of requests. HTTP/1.1 is spoken directly on socket + ssl: http.client would import the
email package (~12 ms) for nothing. See docs/decisions/0004. Credentials come from a
kubeconfig (token, tokenFile, client certificate, CA, insecure-skip-tls-verify; YAML or
JSON) or the in-cluster service account, whose token file is read on every request so a
rotated token is picked up; a 401 re-reads it once more. A client keeps one connection
alive across its requests. Every request has a timeout; requests are retried on connection
errors, 429 and 5xx within a bounded budget. Errors name the API object. An optional
`on_error` hook hears the HTTP status of every failed attempt (the daemon's metrics).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import time
import urllib.parse

from multiplane.errors import InvalidConfig
from multiplane.k8s.errors import AlreadyExists, ApiError, Conflict, Gone, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

__all__ = [
    "NADS_PATH",
    "PODS_PATH",
    "AlreadyExists",
    "ApiError",
    "Conflict",
    "Gone",
    "KubeClient",
    "KubeConfig",
    "NotFound",
    "custom_path",
    "in_cluster_config",
    "load_kubeconfig",
]

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
NAD_PATH = "/apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions/{name}"
PODS_PATH = "/api/v1/pods"  # every namespace's pods: list/watch with fieldSelector spec.nodeName=<node>
NADS_PATH = "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions"  # every namespace's NADs


class KubeConfig:
    """Where the API server is and how to authenticate."""

    __slots__ = (
        "server",
        "ca_file",
        "ca_data",
        "cert_file",
        "key_file",
        "cert_data",
        "key_data",
        "token",
        "token_file",
        "insecure",
    )

    def __init__(self, server: str) -> None:
        self.server = server.rstrip("/")
        self.ca_file = self.cert_file = self.key_file = self.token = self.token_file = ""
        self.ca_data = self.cert_data = self.key_data = b""
        self.insecure = False

    def bearer(self) -> str:
        if self.token_file:
            try:
                with open(self.token_file, encoding="utf-8") as fh:
                    return fh.read().strip()
            except OSError as exc:
                raise ApiError(f"cannot read service account token {self.token_file}: {exc.strerror}") from exc
        return self.token


def _load_document(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise InvalidConfig(f"cannot read kubeconfig {path}: {exc.strerror}") from exc
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            pass  # flow-style YAML also starts with "{"
    import yaml  # only kubeconfigs written as YAML pay for it

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidConfig(f"cannot parse kubeconfig {path}: {exc}") from exc


def _named(items: Any, name: str, key: str) -> dict[str, Any]:
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name and isinstance(item.get(key), dict):
            return item[key]
    raise InvalidConfig(f"kubeconfig has no {key} named {name!r}")


def load_kubeconfig(path: str) -> KubeConfig:
    """The current context of a kubeconfig file; relative file references are relative to it."""
    doc = _load_document(path)
    if not isinstance(doc, dict):
        raise InvalidConfig(f"kubeconfig {path} is not a mapping")
    base = os.path.dirname(os.path.abspath(path))
    contexts = doc.get("contexts") or []
    current = doc.get("current-context") or (contexts[0]["name"] if contexts and isinstance(contexts[0], dict) else "")
    context = _named(contexts, current, "context")
    cluster = _named(doc.get("clusters"), context.get("cluster", ""), "cluster")
    user = _named(doc.get("users"), context.get("user", ""), "user") if context.get("user") else {}
    if not cluster.get("server"):
        raise InvalidConfig(f"kubeconfig {path}: cluster {context.get('cluster')!r} has no server")

    def rel(value: str) -> str:
        return value if not value or os.path.isabs(value) else os.path.join(base, value)

    def b64(value: Any, key: str) -> bytes:
        try:
            import base64  # only kubeconfigs with inline data pay for it

            return base64.b64decode(value or "", validate=True)
        except (ValueError, TypeError) as exc:
            raise InvalidConfig(f"kubeconfig {path}: {key} is not valid base64") from exc

    cfg = KubeConfig(str(cluster["server"]))
    cfg.insecure = bool(cluster.get("insecure-skip-tls-verify"))
    cfg.ca_file = rel(cluster.get("certificate-authority", ""))
    cfg.ca_data = b64(cluster.get("certificate-authority-data"), "certificate-authority-data")
    cfg.cert_file = rel(user.get("client-certificate", ""))
    cfg.key_file = rel(user.get("client-key", ""))
    cfg.cert_data = b64(user.get("client-certificate-data"), "client-certificate-data")
    cfg.key_data = b64(user.get("client-key-data"), "client-key-data")
    cfg.token = user.get("token", "") or ""
    cfg.token_file = rel(user.get("tokenFile", ""))
    return cfg


def in_cluster_config(env: dict[str, str] | None = None, sa_dir: str = SERVICE_ACCOUNT_DIR) -> KubeConfig | None:
    """The pod's service account, when KUBERNETES_SERVICE_HOST/PORT are set; None otherwise."""
    env = dict(os.environ) if env is None else env
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        return None
    cfg = KubeConfig(f"https://{'[' + host + ']' if ':' in host else host}:{port}")
    cfg.ca_file = os.path.join(sa_dir, "ca.crt")
    cfg.token_file = os.path.join(sa_dir, "token")
    return cfg


class RemoteDisconnected(ConnectionResetError):
    """The server closed the connection before a complete response."""


class BadHttpResponse(Exception):
    """The server's bytes are not an HTTP/1.1 response this client understands."""


_MAX_LINE = 65536
_MAX_HEADERS = 100


class _Connection:
    """One HTTP/1.1 connection: a socket (TLS or not) and its read buffer.

    `received` says whether any byte arrived since `begin()`: a request that failed before
    that may be sent again on a fresh connection (see KubeClient._exchange).
    """

    __slots__ = ("sock", "buf", "received", "registry")

    def __init__(self, sock: socket.socket, registry: set[_Connection] | None = None) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.received = False
        self.registry = registry  # the client's open connections (KubeClient.abort); left on close
        if registry is not None:
            registry.add(self)

    def begin(self, timeout: float) -> None:
        self.sock.settimeout(timeout)
        self.received = False

    def idle_and_open(self) -> bool:
        """Before reuse: False when the server closed the idle connection (or sent something unasked)."""
        if self.buf:
            return False
        try:
            self.sock.setblocking(False)
            try:
                self.sock.recv(1)
            finally:
                self.sock.setblocking(True)
        except (BlockingIOError, ssl.SSLWantReadError):
            return True  # nothing to read: still open (a TLS 1.3 session ticket may have been consumed)
        except OSError:
            return False
        return False  # b"": closed by the server; any byte: a protocol violation

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise RemoteDisconnected("the server closed the connection")
        self.received = True
        self.buf += data

    def readline(self) -> bytes:
        start = 0
        while True:
            i = self.buf.find(b"\n", start)
            if i >= 0:
                line = bytes(self.buf[: i + 1])
                del self.buf[: i + 1]
                return line
            if len(self.buf) > _MAX_LINE:
                raise BadHttpResponse("header line too long")
            start = len(self.buf)
            self._fill()

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_some(self) -> bytes:
        if not self.buf:
            self._fill()
        data = bytes(self.buf)
        self.buf.clear()
        return data

    def shutdown(self) -> None:
        """Shut the TCP connection (under any TLS layer) down: a read blocked in another thread returns."""
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
        except OSError:
            pass  # already closed or never connected

    def close(self) -> None:
        if self.registry is not None:
            self.registry.discard(self)
        try:
            self.sock.close()
        except OSError:
            pass


class _Response:
    """The status line and headers of a response; the body is read from `conn` with `pieces()`."""

    __slots__ = ("status", "headers", "conn", "keep_alive", "_bodyless")

    def __init__(self, conn: _Connection, method: str) -> None:
        self.conn = conn
        while True:
            line = conn.readline()
            parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
                raise BadHttpResponse(f"bad status line {line[:80]!r}")
            self.status = int(parts[1])
            self.headers: dict[str, str] = {}
            for _ in range(_MAX_HEADERS + 1):
                raw = conn.readline()
                if raw in (b"\r\n", b"\n"):
                    break
                name, sep, value = raw.decode("latin-1").partition(":")
                if not sep:
                    raise BadHttpResponse(f"bad header line {raw[:80]!r}")
                key = name.strip().lower()
                value = value.strip()
                self.headers[key] = f"{self.headers[key]}, {value}" if key in self.headers else value
            else:
                raise BadHttpResponse("too many headers")
            if not 100 <= self.status < 200:
                break  # a 1xx (100 Continue, 103 Early Hints) is followed by the real answer
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if parts[0] == "HTTP/1.0":
            self.keep_alive = "keep-alive" in tokens
        else:
            self.keep_alive = "close" not in tokens
        self._bodyless = method == "HEAD" or self.status in (204, 304)
        if not self._bodyless and not self._chunked and "content-length" not in self.headers:
            self.keep_alive = False  # the body runs to the end of the connection

    @property
    def _chunked(self) -> bool:
        return "chunked" in self.headers.get("transfer-encoding", "").lower()

    def pieces(self) -> Iterator[bytes]:
        """The body as it arrives: chunk by chunk (chunked), or by Content-Length, or to the end of the connection."""
        conn = self.conn
        if self._bodyless:
            return
        if self._chunked:
            while True:
                size_line = conn.readline().split(b";", 1)[0].strip()
                try:
                    size = int(size_line, 16)
                except ValueError:
                    raise BadHttpResponse(f"bad chunk size {size_line[:20]!r}") from None
                if size == 0:
                    while conn.readline() not in (b"\r\n", b"\n"):
                        pass  # trailers: none used
                    return
                data = conn.read(size)
                if conn.read(2) != b"\r\n":
                    raise BadHttpResponse("chunk not followed by CRLF")
                yield data
        length = self.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise BadHttpResponse(f"bad Content-Length {length[:20]!r}")
            left = int(length)
            while left > 0:
                data = conn.read_some()
                if len(data) > left:  # more than the body: keep it for the next response
                    conn.buf[:0] = data[left:]
                    data = data[:left]
                left -= len(data)
                yield data
            return
        while True:
            try:
                yield conn.read_some()
            except RemoteDisconnected:
                return

    def read(self) -> bytes:
        return b"".join(self.pieces())


class KubeClient:
    """Synchronous HTTP/1.1 over one kept-alive connection; not thread-safe (one client per thread).

    The connection is opened by the first request and reused by the next ones (a pod ADD
    makes three: GET pod, GET NAD, PATCH status); a response with `Connection: close`
    (or a body that runs to the end of the connection) closes it, and any error drops it.
    A connection the server closed while idle is noticed before reuse; if a request on a
    reused connection still fails before any byte of the response arrived, it is sent once
    more on a fresh connection (not counted against the retry budget). That is safe for the
    GETs, and for the status PATCH too: a merge patch that sets an annotation to a value
    gives the same pod however often it is applied. For a POSTed Event, a server that
    applied it and died before answering could end with a duplicate Event, which is
    harmless (Events are best effort). Once a response byte has arrived nothing is repeated
    at this level. Watches use a connection of their own.

    `on_error`, when given, is called with the HTTP status of every failed attempt (0: no
    answer: connection refused or cut, timeout, TLS failure) of `request` and of opening a
    watch, and of a watch that ends in an error; a 401 that a re-read token then cures and
    an attempt that a retry then cures are reported too. A hook that raises is ignored.
    Only `abort` may be called from another thread.
    """

    def __init__(
        self,
        cfg: KubeConfig,
        timeout: float = 5.0,
        retry_budget: float = 3.0,
        *,
        on_error: Callable[[int], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.timeout = timeout
        self.retry_budget = retry_budget
        self.on_error = on_error
        self._conn: _Connection | None = None
        self._open: set[_Connection] = set()  # every connection not yet closed (kept-alive, in use, watches)
        self._aborted = False
        url = urllib.parse.urlsplit(cfg.server)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise InvalidConfig(f"invalid Kubernetes API server URL {cfg.server!r}")
        self.scheme, self.host, self.port = url.scheme, url.hostname, url.port or (443 if url.scheme == "https" else 80)
        self.prefix = url.path.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = 443 if url.scheme == "https" else 80
        self._host_header = host if self.port == default_port else f"{host}:{self.port}"
        try:
            self._ssl: ssl.SSLContext | None = self._ssl_context() if url.scheme == "https" else None
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise InvalidConfig(f"unusable TLS settings for {cfg.server}: {exc}") from exc

    def _ssl_context(self) -> ssl.SSLContext:
        cfg = self.cfg
        ctx = ssl.create_default_context(
            cafile=cfg.ca_file or None, cadata=cfg.ca_data.decode() if cfg.ca_data else None
        )
        if cfg.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if cfg.cert_file or cfg.cert_data:
            if cfg.cert_data:
                import tempfile  # only inline client certificates pay for it

                with tempfile.TemporaryDirectory(prefix="mp-kube-") as tmp:
                    cert, key = os.path.join(tmp, "cert"), os.path.join(tmp, "key")
                    for path, data in ((cert, cfg.cert_data), (key, cfg.key_data)):
                        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                        with os.fdopen(fd, "wb") as fh:
                            fh.write(data)
                    ctx.load_cert_chain(cert, key)
            else:
                ctx.load_cert_chain(cfg.cert_file, cfg.key_file or None)
        return ctx

    # ---- the connection -----------------------------------------------------------------

    def close(self) -> None:
        """Close the kept-alive connection (the next request opens a new one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def abort(self) -> None:
        """End this client's work for good; the one method safe to call from another thread.

        Every open connection is shut down, so a request or watch blocked reading in the
        thread that owns the client returns at once (a watch ends as if the server had closed
        it; a request fails with ApiError, status 0); from then on every request and watch
        fails at once with ApiError (status 0) without retrying, and `on_error` hears nothing.
        Only a TCP connect or TLS handshake already under way runs on, bounded by `timeout`.
        """
        self._aborted = True
        for conn in list(self._open):  # list(): one step under the GIL while the owner adds or drops
            conn.shutdown()

    def _tls_error(self, what: str, exc: ssl.SSLError) -> ApiError:
        """A TLS failure (a certificate problem does not go away by retrying), counted for on_error."""
        self._check_aborted(what)
        self._failed(0)
        return ApiError(f"TLS error talking to the Kubernetes API at {self.cfg.server} for {what}", 0, str(exc))

    def _check_aborted(self, what: str) -> None:
        if self._aborted:
            raise ApiError(f"{what}: the client was aborted (shutting down)", 0)

    def _failed(self, status: int) -> None:
        """Tell the on_error hook about one failed attempt; a hook that raises must not break the request."""
        hook = self.on_error
        if hook is None or self._aborted:
            return
        try:
            hook(status)
        except Exception:  # noqa: BLE001 - a metrics hook's own bug is not the request's failure
            pass

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        conn = getattr(self, "_conn", None)
        if conn is not None:
            conn.close()

    def _connect(self, timeout: float) -> _Connection:
        if self._ssl is None:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except BaseException:
                sock.close()
                raise
        else:
            sock = self._tls_connect(self._ssl, timeout)
        conn = _Connection(sock, self._open)
        if self._aborted:  # abort() ran while connecting: it could not see this connection
            conn.close()
            raise ConnectionAbortedError("the client was aborted")
        return conn

    def _tls_connect(self, ctx: ssl.SSLContext, timeout: float) -> ssl.SSLSocket:
        """A TLS connection, handshake done: each address of the host in turn, as socket.create_connection does.

        The socket is wrapped before it connects (the ssl module's documented client pattern):
        wrapping an already connected socket that the server resets at that moment (an API
        server stopping while we connect) can fail inside ssl without closing the SSLSocket it
        made, which then lingers until garbage collection.
        """
        last: OSError | None = None
        for family, kind, proto, _name, addr in socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM):
            raw = socket.socket(family, kind, proto)
            try:
                raw.settimeout(timeout)
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock = ctx.wrap_socket(raw, server_hostname=self.host)
            except BaseException:
                raw.close()
                raise
            try:
                sock.connect(addr)  # TCP connect, then the handshake
                return sock
            except ssl.SSLError:
                sock.close()
                raise  # the server answered: another address would not change its certificate
            except OSError as exc:
                sock.close()
                last = exc
            except BaseException:
                sock.close()
                raise
        raise last if last is not None else OSError(f"no address for {self.host}")

    def _head(self, method: str, path: str, body: bytes | None, content_type: str = "application/json") -> bytes:
        """Request line and headers; the bearer token is read here, for every request (rotation)."""
        lines = [
            f"{method} {self.prefix}{path} HTTP/1.1",
            f"Host: {self._host_header}",
            "Accept: application/json",
            "User-Agent: multiplane",
        ]
        if body is not None:
            lines.append(f"Content-Type: {content_type}")
            lines.append(f"Content-Length: {len(body)}")
        elif method in ("POST", "PUT", "PATCH"):
            lines.append("Content-Length: 0")
        token = self.cfg.bearer()
        if token:
            lines.append(f"Authorization: Bearer {token}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _exchange(
        self, method: str, path: str, body: bytes | None, timeout: float, content_type: str = "application/json"
    ) -> _Response:
        """Send one request on the kept-alive connection (or a new one) and read the response head.

        The caller reads the body and then calls `_done(response)`. A reused connection that
        fails before any response byte is replaced by a fresh one, once (see the class docstring).
        """
        data = self._head(method, path, body, content_type) + (body or b"")
        conn, self._conn = self._conn, None
        if conn is not None and not conn.idle_and_open():
            conn.close()
            conn = None
        while True:
            reused = conn is not None
            if conn is None:
                conn = self._connect(timeout)
            try:
                conn.begin(timeout)
                conn.sock.sendall(data)
                return _Response(conn, method)
            except (OSError, BadHttpResponse) as exc:
                conn.close()
                stale = reused and not conn.received and isinstance(exc, OSError) and not isinstance(exc, TimeoutError)
                if not stale:
                    raise
                conn = None
            except BaseException:
                conn.close()
                raise

    def _done(self, resp: _Response) -> None:
        """The body has been read: keep the connection for the next request, or close it."""
        if resp.keep_alive and self._conn is None:
            self._conn = resp.conn
        else:
            resp.conn.close()

    def _once(
        self, method: str, path: str, body: bytes | None, timeout: float | None, content_type: str
    ) -> tuple[int, Any]:
        resp = self._exchange(method, path, body, self.timeout if timeout is None else timeout, content_type)
        try:
            raw = resp.read()
        except BaseException:
            resp.conn.close()
            raise
        self._done(resp)
        return resp.status, _decode(raw)

    def request(
        self,
        method: str,
        path: str,
        what: str,
        body: Any = None,
        retry: bool = True,
        timeout: float | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """One API call; retried on connection errors, 429 and 5xx (unless `retry` is false); errors name `what`.

        Failures raise ApiError, NotFound (404) or Gone (410).
        `timeout`: seconds for each connection and read (default: the client's).
        `content_type`: of the JSON `body` (a PATCH names its patch format here).
        """
        payload = json.dumps(body).encode() if body is not None else None
        deadline = time.monotonic() + self.retry_budget
        pause, reauthed = 0.1, False
        while True:
            self._check_aborted(what)
            try:
                status, data = self._once(method, path, payload, timeout, content_type)
            except ssl.SSLError as exc:
                # A certificate problem does not go away by retrying: fail now.
                raise self._tls_error(what, exc) from exc
            except (OSError, BadHttpResponse) as exc:
                status, data = 0, {"message": f"{type(exc).__name__}: {exc}"}
            if 200 <= status < 300:
                return data
            self._check_aborted(what)
            self._failed(status)
            if status == 401 and not reauthed:
                reauthed = True  # a rotated service-account token: read it again and retry once
                continue
            transient = status == 0 or status == 429 or status >= 500
            if not (retry and transient) or time.monotonic() + pause > deadline:
                raise _error(status, data, what, self.cfg.server)
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    # ---- the calls --------------------------------------------------------------------

    def get_pod(self, namespace: str, name: str) -> dict[str, Any]:
        path = f"/api/v1/namespaces/{_segment(namespace, name)}/pods/{_segment(name, namespace, subdomain=True)}"
        return self.request("GET", path, f'pods "{namespace}/{name}"')

    def get_nad(self, namespace: str, name: str) -> dict[str, Any]:
        path = NAD_PATH.format(ns=_segment(namespace, name), name=_segment(name, namespace, subdomain=True))
        return self.request("GET", path, f'network-attachment-definitions.k8s.cni.cncf.io "{namespace}/{name}"')

    def set_pod_annotation(
        self, namespace: str, name: str, key: str, value: str, uid: str = "", tries: int = 5
    ) -> None:
        """Set one annotation of a pod in one request: a JSON merge patch (RFC 7386) of pods/status.

        The patch is `{"metadata": {"uid": uid, "annotations": {key: value}}}` (no uid when
        `uid` is empty): the pod's other annotations, labels, spec and status stay as they
        are, and nothing is read first. The uid is a precondition the API server checks (the
        patch would change metadata.uid, which it refuses): a pod deleted and created again
        under the same name answers 409 and is raised as ApiError `pods "ns/name" was
        replaced (expected UID ..., found ...)`, with nothing written. A missing pod raises
        NotFound. The patch carries no resourceVersion, so another writer cannot make it
        conflict, and applying it twice gives the same pod: it is retried like a GET (5xx,
        429, connection errors within the budget). `tries` is kept for callers of the former
        read-modify-write and is not used: there is nothing to re-read.
        """
        what = f'pods "{namespace}/{name}"'
        path = f"/api/v1/namespaces/{_segment(namespace, name)}/pods/{_segment(name, namespace, subdomain=True)}/status"
        meta: dict[str, Any] = {"uid": uid} if uid else {}
        meta["annotations"] = {key: value}
        try:
            self.request(
                "PATCH", path, f"{what} status", body={"metadata": meta}, content_type="application/merge-patch+json"
            )
        except NotFound as exc:
            raise NotFound(f"{what} not found", 404, exc.details) from exc
        except ApiError as exc:
            marker = "UID in object meta:"
            if not uid or exc.status != 409 or "UID in precondition" not in exc.details:
                raise
            found = exc.details.rpartition(marker)[2].strip() if marker in exc.details else ""
            seen = f', found "{found}"' if found else ""
            raise ApiError(f'{what} was replaced (expected UID "{uid}"{seen})', 409, exc.details) from exc

    def create_event(self, namespace: str, event: dict[str, Any], timeout: float = 2.0) -> dict[str, Any]:
        """POST a core v1 Event into `namespace`: one try (Events are best effort), `timeout` seconds at most per step."""
        path = f"/api/v1/namespaces/{_segment(namespace, 'events')}/events"
        return self.request(
            "POST", path, f'events in namespace "{namespace}"', body=event, retry=False, timeout=timeout
        )

    # ---- custom resources (cluster-wide IPAM's store) -----------------------------------------
    #
    # `path` comes from custom_path(). Every call is retried like any request (connection
    # errors, 429, 5xx, within the budget), so a write the server applied but whose answer was
    # lost is sent again: a repeated create answers AlreadyExists, a repeated PUT or a DELETE
    # with a resourceVersion precondition answers Conflict, a repeated DELETE NotFound. The
    # caller reads the object again and decides, as it must for any other writer's change.

    def get_object(self, path: str) -> dict[str, Any]:
        """GET one object; NotFound when there is none."""
        return self.request("GET", path, _what(path))

    def create_object(self, collection: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST `body` (with metadata.name) into `collection`: the stored object; AlreadyExists if the name is taken."""
        name = (body.get("metadata") or {}).get("name", "") if isinstance(body, dict) else ""
        return self.request("POST", collection, _what(f"{collection}/{name}"), body=body)

    def replace_object(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT `body`, whose metadata.resourceVersion is the version it was read at: the updated object.

        Conflict when the object changed since (a stale resourceVersion) or its uid is not
        the body's; NotFound when it is gone.
        """
        return self.request("PUT", path, _what(path), body=body)

    def delete_object(self, path: str, uid: str = "", resource_version: str = "") -> Any:
        """DELETE one object, only if it still has this `uid` and `resource_version` (each when given).

        The preconditions travel in the DeleteOptions body; a mismatch raises Conflict and
        nothing is deleted. NotFound when it is gone. The answer (the deleted object or a
        Status) is returned as the server sent it.
        """
        preconditions: dict[str, str] = {}
        if uid:
            preconditions["uid"] = uid
        if resource_version:
            preconditions["resourceVersion"] = resource_version
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if preconditions:
            body["preconditions"] = preconditions
        return self.request("DELETE", path, _what(path), body=body)

    # ---- list and watch (for caches: the node daemon) ------------------------------------

    def list_objects(
        self, path: str, field_selector: str = "", label_selector: str = ""
    ) -> tuple[list[dict[str, Any]], str]:
        """GET a collection (e.g. PODS_PATH, NADS_PATH): its items and the list's resourceVersion to watch from.

        `field_selector` ("spec.nodeName=node-1") and `label_selector` ("app=x,tier!=db") are
        URL-encoded into the query. Retried like any GET; a 410 raises Gone.
        """
        query = {"fieldSelector": field_selector} if field_selector else {}
        if label_selector:
            query["labelSelector"] = label_selector
        data = self.request("GET", _with_query(path, query), f"list {path}")
        meta = data.get("metadata") if isinstance(data, dict) else None
        items = data.get("items") if isinstance(data, dict) else None
        if not isinstance(meta, dict) or not isinstance(items, list):
            raise ApiError(f"list {path}: the answer is not a list object")
        return [item for item in items if isinstance(item, dict)], str(meta.get("resourceVersion") or "")

    def watch(
        self, path: str, resource_version: str, timeout: float = 300.0, field_selector: str = ""
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Watch a collection from `resource_version`: (type, object) for ADDED, MODIFIED, DELETED and BOOKMARK.

        The request asks for bookmarks and for the server to end the stream after `timeout`
        seconds (timeoutSeconds); reads wait that long plus the client's timeout. The iterator
        ends when the server ends the stream or closes the connection; the caller then watches
        again from the last resourceVersion it saw. A too-old resourceVersion raises Gone (an
        HTTP 410, or the ERROR event with a 410 Status the API server sends): list again.
        Other failures raise ApiError. The watch has its own connection, closed when the
        iterator ends or is closed.
        """
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(max(1, int(timeout))),
        }
        if field_selector:
            query["fieldSelector"] = field_selector
        target = _with_query(path, query)
        what = f"watch {path}"
        resp = self._open_watch(target, what)
        conn = resp.conn
        try:
            conn.sock.settimeout(timeout + self.timeout)
            pending = b""
            for piece in _stream(resp, what, self.cfg.server):
                pending += piece
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield _watch_event(line, what)
            if pending.strip():
                yield _watch_event(pending, what)
        except ApiError as exc:
            self._failed(exc.status)  # an ERROR event (410 Expired, ...) or a stream that broke off (0)
            raise
        finally:
            conn.close()

    def _open_watch(self, target: str, what: str) -> _Response:
        """Send the watch request on a new connection; the 200 response, or the error as ApiError/Gone."""
        reauthed = False
        while True:
            self._check_aborted(what)
            try:
                resp = self._start(target)
            except ssl.SSLError as exc:
                raise self._tls_error(what, exc) from exc
            except (OSError, BadHttpResponse) as exc:
                self._check_aborted(what)
                self._failed(0)
                raise _error(0, {"message": f"{type(exc).__name__}: {exc}"}, what, self.cfg.server) from exc
            if resp.status == 200:
                return resp
            try:
                data = _decode(resp.read())
            except (OSError, BadHttpResponse):
                data = None
            finally:
                resp.conn.close()
            self._check_aborted(what)
            self._failed(resp.status)
            if resp.status == 401 and not reauthed:
                reauthed = True  # a rotated service-account token: read it again and retry once
                continue
            raise _error(resp.status, data, what, self.cfg.server)

    def _start(self, target: str) -> _Response:
        conn = self._connect(self.timeout)
        try:
            conn.begin(self.timeout)
            conn.sock.sendall(self._head("GET", target, None))
            return _Response(conn, "GET")
        except BaseException:
            conn.close()
            raise


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return {"message": raw.decode("utf-8", "replace")[:200]}


def _error(status: int, data: Any, what: str, server: str) -> ApiError:
    """The ApiError for an answer (status 0: none) whose body is `data`."""
    message = (data or {}).get("message", "") if isinstance(data, dict) else ""
    if status == 404:
        return NotFound(f"{what} not found", 404, message)
    if status == 410:
        return Gone(f"{what}: the resourceVersion is too old (410 Gone)", 410, message)
    if status == 409:  # the message stays as before; the class says which 409 it is
        reason = data.get("reason") if isinstance(data, dict) else None
        cls = AlreadyExists if reason == "AlreadyExists" else Conflict
        return cls(f"Kubernetes API error 409 for {what}", 409, message)
    if status == 0:
        return ApiError(f"cannot reach the Kubernetes API at {server} for {what}", 0, message)
    return ApiError(f"Kubernetes API error {status} for {what}", status, message)


def custom_path(group: str, version: str, plural: str, name: str = "", namespace: str = "") -> str:
    """The API path of a custom resource collection (no `name`) or object, cluster-scoped unless `namespace`.

    `name` must be a DNS-1123 subdomain and `namespace` a label (InvalidConfig otherwise);
    `group`, `version` and `plural` are the code's own constants.
    """
    path = f"/apis/{group}/{version}"
    if namespace:
        path += f"/namespaces/{_segment(namespace, name or plural)}"
    path += f"/{plural}"
    if name:
        path += f"/{_segment(name, namespace or plural, subdomain=True)}"
    return path


def _what(path: str) -> str:
    """How an error names a custom resource object: `ipblocks.ipam.example.io "name"` (kubectl's way)."""
    parts = path.strip("/").split("/")
    if len(parts) < 4 or parts[0] != "apis":
        return path
    group, rest = parts[1], parts[3:]
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    qualified = f"{rest[0]}.{group}"
    name = urllib.parse.unquote(rest[1]) if len(rest) > 1 else ""
    if not name:
        return f"{qualified} in namespace {namespace!r}" if namespace else qualified
    return f'{qualified} "{namespace}/{name}"' if namespace else f'{qualified} "{name}"'


def _with_query(path: str, query: dict[str, str]) -> str:
    if not query:
        return path
    return path + ("&" if "?" in path else "?") + urllib.parse.urlencode(query)


def _stream(resp: _Response, what: str, server: str) -> Iterator[bytes]:
    """The body of a watch: its pieces until the server ends it or closes the connection."""
    pieces = resp.pieces()
    while True:
        try:
            piece = next(pieces)
        except StopIteration:
            return
        except (RemoteDisconnected, ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return  # the server closed the watch (stopped, restarted): watch again
        except TimeoutError as exc:
            raise ApiError(f"{what} stalled (no event or bookmark within the timeout)", 0, str(exc)) from exc
        except (OSError, BadHttpResponse) as exc:
            raise ApiError(f"{what} broke off at {server}", 0, f"{type(exc).__name__}: {exc}") from exc
        yield piece


def _watch_event(line: bytes, what: str) -> tuple[str, dict[str, Any]]:
    try:
        event = json.loads(line)
    except ValueError:
        raise ApiError(f"{what}: an event is not JSON", 0, line[:200].decode("utf-8", "replace")) from None
    kind = event.get("type") if isinstance(event, dict) else None
    obj = event.get("object") if isinstance(event, dict) else None
    if not isinstance(kind, str) or not isinstance(obj, dict):
        raise ApiError(f"{what}: an event without type and object", 0, line[:200].decode("utf-8", "replace"))
    if kind == "ERROR":
        code = obj.get("code")
        raise _error(code if isinstance(code, int) and code > 0 else 500, obj, what, "")
    return kind, obj


def _segment(value: str, other: str, subdomain: bool = False) -> str:
    """One path segment of an API URL: a validated namespace (label) or object name (subdomain).

    A value that cannot name a Kubernetes object never reaches the URL (a `/` or `..` would
    address another resource); InvalidConfig names it.
    """
    from multiplane.k8s.names import is_label, is_subdomain

    if not (is_subdomain(value) if subdomain else is_label(value)):
        what = "name" if subdomain else "namespace"
        raise InvalidConfig(
            f"invalid Kubernetes {what} {value!r} (with {other!r}): not a DNS-1123 {'subdomain' if subdomain else 'label'}"
        )
    return urllib.parse.quote(value, safe="")
