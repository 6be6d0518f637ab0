"""An in-repo Kubernetes API server for tests: real HTTP(S) on 127.0.0.1, an in-memory store, fault injection.

Not a call-recording mock: clients talk real HTTP/1.1 (optionally TLS with a CA and server
certificate generated at start by the `openssl` command-line tool) to a
`http.server.ThreadingHTTPServer` and get the JSON shapes the real API server sends:

* ``GET  /api/v1/namespaces/{ns}/pods/{name}``                      → a ``v1 Pod``
* ``PUT  /api/v1/namespaces/{ns}/pods/{name}/status``               → optimistic concurrency on
  ``metadata.resourceVersion`` (stale → 409 ``Status`` reason Conflict), ``metadata.uid`` precondition;
  replaces ``metadata.annotations``, ``metadata.labels`` and ``status`` (the spec is kept, as for pods/status)
* ``PATCH /api/v1/namespaces/{ns}/pods/{name}/status`` with ``Content-Type: application/merge-patch+json``
  → the JSON merge patch (RFC 7386) applied to the pod; of the result, ``metadata.annotations``,
  ``metadata.labels`` and ``status`` are kept (the spec is not patched, as for pods/status). A
  ``metadata.uid`` or ``metadata.resourceVersion`` in the patch is a precondition: another value
  than the pod's → 409 Conflict (the uid's message is the API server's "Precondition failed: UID
  in precondition: X, UID in object meta: Y"). resourceVersion bumped, a MODIFIED watch event,
  the updated pod answered; any other patch type → 415
* ``GET  /apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions/{name}`` → a NAD
* ``POST /api/v1/namespaces/{ns}/events`` → 201 and the stored core v1 ``Event`` (name from
  ``metadata.name`` or ``generateName`` + 5 characters, uid, resourceVersion, creationTimestamp);
  ``involvedObject.namespace`` must be the URL's (422 Invalid); ``GET`` of the same path lists them
  (`events()` returns copies)
* ``GET  /api/v1/pods``, ``/api/v1/namespaces/{ns}/pods``            → a ``PodList``; ``fieldSelector``
  ``spec.nodeName``, ``metadata.name``, ``metadata.namespace`` (``=``/``==``); 403 when `access` lacks list pods
* ``GET  /apis/k8s.cni.cncf.io/v1[/namespaces/{ns}]/network-attachment-definitions`` → a
  ``NetworkAttachmentDefinitionList`` (``fieldSelector`` ``metadata.name``/``metadata.namespace``)
* the same collection paths with ``?watch=true&resourceVersion=N`` → a chunked stream of JSON lines
  ``{"type": "ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK", "object": …}``: the events after N from a
  bounded history (`history` events), filtered by ``fieldSelector`` (on the event's object);
  ``resourceVersion`` "" or "0" starts with the current objects as ADDED; ``allowWatchBookmarks=true``
  adds a BOOKMARK every `bookmark_interval` seconds; N older than the history keeps →
  one ``ERROR`` event whose object is a 410 ``Status`` (reason Expired), as the API server answers
  a watch; the stream ends after ``timeoutSeconds`` (default `watch_timeout`) or when the server stops
* custom resources of the CRDs given to `add_crds()` (a manifest such as packaging/k8s/crd-ipam.yaml),
  cluster-scoped or namespaced as each CRD says, at ``/apis/{group}/{version}[/namespaces/{ns}]/{plural}``:
  ``POST`` creates (201; the name taken → 409 ``Status`` reason AlreadyExists; objects are checked
  against the version's openAPIV3Schema (422 Invalid) and pruned of fields it does not know, labels
  checked as the API server checks them), ``GET`` of the collection lists (a ``<Kind>List`` with
  ``metadata.resourceVersion``; ``labelSelector`` with ``=``, ``==``, ``!=``, ``key``, ``!key``;
  ``fieldSelector`` ``metadata.name``), ``GET`` of a name reads, ``PUT`` replaces (the body's
  ``metadata.resourceVersion`` is required (422) and must be the current one, else 409 Conflict
  "the object has been modified"; a ``metadata.uid`` other than the object's → 409), ``DELETE``
  deletes (200 and the object), honouring ``DeleteOptions.preconditions`` ``uid`` and
  ``resourceVersion`` (a mismatch → 409 Conflict "Precondition failed: UID in precondition: …",
  nothing deleted); `access` applies (403). No watch of custom resources (405). Tests play another
  writer with `put_custom_object` / `delete_custom_object` and read with `custom_objects`
* ``GET  /api/v1/nodes/{name}`` → a ``v1 Node`` (404 when there is none), ``GET /api/v1/nodes`` → a
  ``NodeList``, ``POST /api/v1/nodes`` creates (409 AlreadyExists), ``DELETE /api/v1/nodes/{name}``;
  tests add and remove nodes with `add_node` / `delete_node` (minimal shape: metadata, a Ready condition);
  `access` applies (403)
* ``POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews``   → ``status.allowed`` from `access`, a set of
  allowed ``(verb, resource, subresource)`` (None, the default: everything is allowed)
* anything missing → 404 ``Status`` (reason NotFound, the API server's message and ``details``)
* bearer-token authentication (401 ``Status``), optional client certificates (TLS).

Like the real API server, empty ``metadata.annotations`` is omitted from the Pod JSON.

Tests inject faults (`fail_next`, `conflict_next`, `delay`, `stop`/`start`; `idle_timeout` closes
idle keep-alive connections, `close_connections` answers ``Connection: close``, `chunked_responses`
sends every body chunked; `drop_watches` cuts every open watch connection without ending its
stream, `expire_history` forgets the watch history so a watch from an older resourceVersion gets
410 Expired) and inspect what reached the server (`requests`, each with the number of
its connection; `connections`, how many were accepted; `watches()`, the watch streams open).
Use it as a context manager::

    with K8sServer(tls=True, token="s3cret") as api:
        api.add_pod("default", "web", annotations={"a": "b"})
        path = api.kubeconfig(tmp_path / "kubeconfig", token="s3cret")
"""

from __future__ import annotations

import base64
import collections
import copy
import functools
import http.server
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from collections.abc import Iterator
from typing import Any, Callable

__all__ = ["CertAuthority", "K8sServer", "Request", "default_pki", "merge_patch", "status_object"]

NAD_GROUP = "k8s.cni.cncf.io"
NAD_RESOURCE = "network-attachment-definitions"

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Gone",
    411: "BadRequest",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}

_POD = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)(/status)?$")
_NAD = re.compile(rf"^/apis/{re.escape(NAD_GROUP)}/v1/namespaces/([^/]+)/{NAD_RESOURCE}/([^/]+)$")
_EVENTS = re.compile(r"^/api/v1/namespaces/([^/]+)/events$")
_POD_LIST = re.compile(r"^/api/v1(?:/namespaces/([^/]+))?/pods$")
_NODE = re.compile(r"^/api/v1/nodes(?:/([^/]+))?$")
_NAD_LIST = re.compile(rf"^/apis/{re.escape(NAD_GROUP)}/v1(?:/namespaces/([^/]+))?/{NAD_RESOURCE}$")
_ACCESS_REVIEW = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
_CUSTOM = re.compile(r"^/apis/([^/]+)/([^/]+)(?:/namespaces/([^/]+))?/([^/]+)(?:/([^/]+))?$")


def status_object(
    code: int, message: str, reason: str | None = None, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A `meta/v1 Status` failure object as the API server sends it."""
    obj: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason if reason is not None else _REASONS.get(code, ""),
        "code": code,
    }
    if details:
        obj["details"] = details
    return obj


# ---- certificates (openssl CLI: the `cryptography` package is not a dependency) ---------------

_OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = {sans}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        raise RuntimeError(
            "the `openssl` command-line tool is needed to make test certificates: "
            "install Debian's `openssl` package (it belongs in the Makefile's APT_PACKAGES)"
        )
    return path


def _run_openssl(args: list[str], cwd: str) -> None:
    proc = subprocess.run([_openssl(), *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


class CertAuthority:
    """A throw-away CA (EC P-256) that issues server and client certificates; everything is PEM bytes in memory."""

    __test__ = False  # not a pytest class

    def __init__(self, cn: str = "multiplane test CA") -> None:
        self._serial = int(time.time() * 1000) & 0xFFFFFFFF
        self._lock = threading.Lock()
        with tempfile.TemporaryDirectory(prefix="mp-pki-") as tmp:
            cnf = os.path.join(tmp, "openssl.cnf")
            Path(cnf).write_text(_OPENSSL_CNF.format(sans="DNS:localhost"))
            _run_openssl(
                ["req", "-x509", "-config", cnf, "-extensions", "v3_ca", "-newkey", "ec",
                 "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
                 "-days", "3", "-subj", f"/CN={cn}"],
                tmp,
            )  # fmt: skip
            self.cert_pem = Path(tmp, "ca.crt").read_bytes()
            self.key_pem = Path(tmp, "ca.key").read_bytes()

    def issue(
        self, cn: str, kind: str = "client", sans: tuple[str, ...] = ("IP:127.0.0.1", "IP:::1", "DNS:localhost")
    ) -> tuple[bytes, bytes]:
        """A new (certificate PEM, key PEM) signed by this CA; `kind` is "server" (with `sans`) or "client"."""
        if kind not in ("server", "client"):
            raise ValueError(f"kind must be 'server' or 'client', not {kind!r}")
        with self._lock:
            self._serial += 1
            serial = self._serial
        with tempfile.TemporaryDirectory(prefix="mp-pki-") as tmp:
            cnf = os.path.join(tmp, "openssl.cnf")
            Path(cnf).write_text(_OPENSSL_CNF.format(sans=",".join(sans) or "DNS:localhost"))
            Path(tmp, "ca.crt").write_bytes(self.cert_pem)
            fd = os.open(os.path.join(tmp, "ca.key"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(self.key_pem)
            _run_openssl(
                ["req", "-new", "-config", cnf, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", f"/CN={cn}"],
                tmp,
            )  # fmt: skip
            _run_openssl(
                ["x509", "-req", "-in", "leaf.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial", str(serial),
                 "-days", "2", "-out", "leaf.crt", "-extfile", cnf, "-extensions", f"v3_{kind}"],
                tmp,
            )  # fmt: skip
            return Path(tmp, "leaf.crt").read_bytes(), Path(tmp, "leaf.key").read_bytes()


class _Pki:
    __slots__ = ("ca", "server_cert_pem", "server_key_pem", "client_cert_pem", "client_key_pem")

    def __init__(self) -> None:
        self.ca = CertAuthority()
        self.server_cert_pem, self.server_key_pem = self.ca.issue("localhost", "server")
        self.client_cert_pem, self.client_key_pem = self.ca.issue("mp-client", "client")


@functools.lru_cache(maxsize=1)
def default_pki() -> _Pki:
    """The process-wide CA + server certificate (127.0.0.1, ::1, localhost) + client certificate (CN mp-client)."""
    return _Pki()


# ---- requests as seen by the server ----------------------------------------------------------


class Request:
    """One request that reached the server: method, path (prefix stripped), query, headers, parsed body, answer."""

    __slots__ = ("method", "path", "query", "headers", "body", "raw_body", "status", "user", "time", "conn")

    def __init__(self, method: str, path: str, query: str, headers: dict[str, str], raw_body: bytes) -> None:
        self.method, self.path, self.query, self.headers, self.raw_body = method, path, query, headers, raw_body
        try:
            self.body: Any = json.loads(raw_body) if raw_body else None
        except ValueError:
            self.body = raw_body
        self.status = 0  # the HTTP status answered (0: none, e.g. the connection was cut)
        self.user = ""  # "token", "cert:<CN>" or "" (anonymous)
        self.time = time.monotonic()
        self.conn = 0  # the number of the connection it came on (1, 2, ... in order of acceptance)

    @property
    def token(self) -> str | None:
        """The bearer token sent, if any."""
        auth = self.headers.get("authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path} -> {self.status}>"


# ---- the HTTP layer --------------------------------------------------------------------------


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = False  # joined by server_close(): no thread outlives stop()
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], api: K8sServer, ctx: ssl.SSLContext | None) -> None:
        self.api, self.ssl_ctx = api, ctx
        self.live: set[socket.socket] = set()
        self.live_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); skip it.
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_ctx is not None:
                # No I/O here: the handshake runs in the connection's own thread (_Handler.setup).
                sock = self.ssl_ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        except BaseException:
            sock.close()
            raise
        with self.live_lock:
            self.live.add(sock)
        return sock, addr

    def shutdown_request(self, request: Any) -> None:
        with self.live_lock:
            self.live.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):  # a client that went away is normal; anything else is a server bug
            self.api.errors.append(f"{type(exc).__name__}: {exc}")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "multiplane-test-apiserver"
    server: _HTTPServer

    def setup(self) -> None:
        api = self.server.api
        with api._lock:
            api.connections += 1
            self.conn_id = api.connections
        self.request.settimeout(api.idle_timeout)  # idle keep-alive connections; stop() cuts them anyway
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()  # a failure (bad client certificate, ...) closes the connection
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # the base class's name
        pass

    def _serve(self) -> None:
        api = self.server.api
        length = self.headers.get("Content-Length")
        raw = self.rfile.read(int(length)) if length else b""
        split = urllib.parse.urlsplit(self.path)
        path = split.path
        prefixed = True
        if api.path_prefix:
            prefixed = path == api.path_prefix or path.startswith(api.path_prefix + "/")
            path = path[len(api.path_prefix) :] if prefixed else path
        req = Request(self.command, path, split.query, {k.lower(): v for k, v in self.headers.items()}, raw)
        req.conn = self.conn_id
        if isinstance(self.request, ssl.SSLSocket):
            cert = self.request.getpeercert()
            if cert:
                cn = next((v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"), "")
                req.user = f"cert:{cn}"
        if req.token is not None and api.token is not None and req.token == api.token:
            req.user = "token"
        code, obj, headers = api._handle(req, prefixed, self.server)
        if code == 0:  # stopped while delayed: drop the connection without an answer
            self.close_connection = True
            return
        req.status = code
        if isinstance(obj, _Watch):
            self._stream(obj)
            return
        body = json.dumps(obj).encode()
        chunked = api.chunked_responses
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        if api.close_connections:
            self.send_header("Connection", "close")
            self.close_connection = True
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if chunked:  # in three chunks (the last may be empty before the terminator)
            step = len(body) // 3 + 1
            for i in range(0, len(body), step):
                self._chunk(body[i : i + step])
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(body)
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _stream(self, watch: _Watch) -> None:
        """A watch: 200, then one chunk per event (a JSON line), then the terminator; the connection closes."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        api = self.server.api
        with api._lock:
            api._open_watches += 1
        try:
            for event in api._watch_events(watch):
                self._chunk(json.dumps(event).encode() + b"\n")
                self.wfile.flush()
        finally:
            with api._lock:
                api._open_watches -= 1
        if watch.dropped:  # as a connection lost mid-stream: no terminating chunk, the socket just closes
            return
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = _serve


class _Watch:
    """What a watch request asked for; streamed by _Handler._stream from K8sServer._watch_events."""

    __slots__ = ("resource", "namespace", "wanted", "rv", "timeout", "bookmarks", "stopping", "epoch", "dropped")

    def __init__(
        self,
        resource: str,
        namespace: str,
        wanted: list[tuple[str, str]],
        rv: int | None,
        timeout: float,
        bookmarks: bool,
        stopping: threading.Event,
        epoch: int = 0,
    ) -> None:
        self.resource, self.namespace, self.wanted, self.rv = resource, namespace, wanted, rv
        self.timeout, self.bookmarks, self.stopping = timeout, bookmarks, stopping
        self.epoch = epoch  # K8sServer._watch_epoch when it began: drop_watches() moves that on
        self.dropped = False  # cut by drop_watches(): the stream ends without its last chunk


_KINDS = {
    "pods": ("v1", "Pod"),
    "nodes": ("v1", "Node"),
    NAD_RESOURCE: (f"{NAD_GROUP}/v1", "NetworkAttachmentDefinition"),
}


# ---- custom resources (CustomResourceDefinitions given to the server) -------------------------


class _Crd:
    """One served version of a CustomResourceDefinition: where its objects live and their schema."""

    __slots__ = ("group", "version", "plural", "kind", "list_kind", "namespaced", "schema")

    def __init__(self, doc: dict[str, Any], version: dict[str, Any]) -> None:
        spec = doc["spec"]
        self.group, self.version = spec["group"], version["name"]
        self.plural, self.kind = spec["names"]["plural"], spec["names"]["kind"]
        self.list_kind = spec["names"].get("listKind") or f"{self.kind}List"
        self.namespaced = spec["scope"] == "Namespaced"
        self.schema: dict[str, Any] = (version.get("schema") or {}).get("openAPIV3Schema") or {}

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}"


def _check_schema(schema: dict[str, Any], value: Any, path: str, errors: list[str]) -> Any:
    """`value` pruned of the fields `schema` does not know (as the API server prunes); type errors in `errors`.

    A subset of OpenAPI v3 as structural CRD schemas use it: type, properties, required,
    minLength, maxLength, enum, items, x-kubernetes-preserve-unknown-fields.
    """
    kind = schema.get("type")
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
    }
    if kind in checks and not checks[kind](value):
        errors.append(f'{path}: Invalid value: "{type(value).__name__}": {path} in body must be of type {kind}')
        return value
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: Unsupported value: {json.dumps(value)}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(
                f"{path}: Invalid value: {json.dumps(value)}: {path} in body should be at least {schema['minLength']} chars long"
            )
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: Too long: may not be longer than {schema['maxLength']}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_check_schema(schema["items"], v, f"{path}[{i}]", errors) for i, v in enumerate(value)]
    if not isinstance(value, dict) or kind != "object":
        return value
    for key in schema.get("required", []):
        if key not in value:
            errors.append(f"{path}.{key}: Required value")
    properties = schema.get("properties")
    if properties is None or schema.get("x-kubernetes-preserve-unknown-fields"):
        return value
    kept = {}
    for key, item in value.items():
        if key in properties:
            kept[key] = _check_schema(properties[key], item, f"{path}.{key}", errors)
    return kept


_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _label_errors(labels: Any) -> list[str]:
    """What the API server says of invalid labels (keys: qualified names; values: 63 characters of [-A-Za-z0-9_.])."""
    if not isinstance(labels, dict):
        return ["metadata.labels: Invalid value: must be a map of strings"]
    errors = []
    for key, value in labels.items():
        if not isinstance(key, str) or not _LABEL_KEY.match(key) or len(key.rpartition("/")[2]) > 63:
            errors.append(f'metadata.labels: Invalid value: "{key}": name part must consist of alphanumeric characters')
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            errors.append(
                f'metadata.labels: Invalid value: "{value}": a valid label must be an empty string or consist of '
                "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
                " (and be at most 63 characters)"
            )
    return errors


def _label_selector(text: str) -> list[tuple[str, str, str]] | None:
    """The terms of a label selector: (key, op, value) with op "=", "!=", "exists", "!exists"; None if invalid."""
    terms: list[tuple[str, str, str]] = []
    for raw in text.split(","):
        term = raw.strip()
        if not term:
            continue
        if "!=" in term:
            key, value = term.split("!=", 1)
            op = "!="
        elif "=" in term:
            key, value = term.replace("==", "=", 1).split("=", 1)
            op = "="
        elif term.startswith("!"):
            key, value, op = term[1:], "", "!exists"
        else:
            key, value, op = term, "", "exists"
        key, value = key.strip(), value.strip()
        if not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value) or len(value) > 63:
            return None
        terms.append((key, op, value))
    return terms


def _selected(obj: dict[str, Any], terms: list[tuple[str, str, str]]) -> bool:
    labels = obj["metadata"].get("labels") or {}
    for key, op, value in terms:
        if op == "=" and labels.get(key) != value:
            return False
        if op == "!=" and labels.get(key) == value:
            return False
        if op == "exists" and key not in labels:
            return False
        if op == "!exists" and key in labels:
            return False
    return True


# ---- the API server ---------------------------------------------------------------------------


class K8sServer:
    """A Kubernetes API server on 127.0.0.1 (random free port); see the module docstring.

    token: the accepted bearer token (None: no token authentication; a verified client
    certificate is always accepted). tls: serve HTTPS with a CA and server certificate made
    at start (`ca_pem`). require_client_cert: the TLS handshake demands a client certificate
    signed by the CA. path_prefix: the API is served under this path (as behind a proxy).
    """

    __test__ = False

    def __init__(
        self,
        *,
        tls: bool = False,
        token: str | None = None,
        require_client_cert: bool = False,
        path_prefix: str = "",
        pki: _Pki | None = None,
        history: int = 1000,
    ) -> None:
        if require_client_cert and not tls:
            raise ValueError("require_client_cert needs tls=True")
        self.tls = tls
        self.token = token
        self.require_client_cert = require_client_cert
        self.path_prefix = path_prefix.rstrip("/")
        self.pki = (pki or default_pki()) if tls else None
        self.requests: list[Request] = []
        self.errors: list[str] = []  # unexpected exceptions in the server (not client disconnects)
        self.on_request: Callable[[Request], None] | None = None  # called for each request before it is served
        self.port = 0
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)  # notified on every watched change and on stop
        # Watch history: (resourceVersion, type, resource, object); `_dropped_rv` is the newest one forgotten.
        self._history: collections.deque[tuple[int, str, str, dict[str, Any]]] = collections.deque(maxlen=history)
        self.connections = 0  # TCP connections accepted
        self.idle_timeout = 10.0  # seconds an idle keep-alive connection is kept open
        self.close_connections = False  # answer every request with `Connection: close` and close
        self.chunked_responses = False  # send every (non-watch) body with Transfer-Encoding: chunked
        self.bookmark_interval = 1.0  # seconds between BOOKMARK events (when the watch allows them)
        self.watch_timeout = 30.0  # seconds a watch lasts without timeoutSeconds
        self._pods: dict[tuple[str, str], dict[str, Any]] = {}
        self._nads: dict[tuple[str, str], dict[str, Any]] = {}
        self._nodes: dict[str, dict[str, Any]] = {}
        self._events: list[dict[str, Any]] = []
        self._crds: dict[tuple[str, str, str], _Crd] = {}  # (group, version, plural) → what add_crds() serves
        self._custom: dict[tuple[str, str, str, str], dict[str, Any]] = {}  # (group, plural, ns, name) → object
        self._rv = 1000
        self._dropped_rv = self._rv
        self._watch_epoch = 0  # moved on by drop_watches(): watches of an older epoch end
        self._open_watches = 0  # watch streams being served
        self._fail: list[list[Any]] = []  # [remaining, status, method]
        self._conflicts = 0
        # What SelfSubjectAccessReview allows: (verb, resource, subresource); None allows everything.
        self.access: set[tuple[str, str, str]] | None = None
        self._delay = 0.0
        self._delay_left: int | None = None
        self._ssl_ctx = self._make_ssl_context() if tls else None
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.start()

    # ---- life cycle ----

    def _make_ssl_context(self) -> ssl.SSLContext:
        assert self.pki is not None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory(prefix="mp-apiserver-") as tmp:
            cert, key = os.path.join(tmp, "server.crt"), os.path.join(tmp, "server.key")
            Path(cert).write_bytes(self.pki.server_cert_pem)
            Path(key).write_bytes(self.pki.server_key_pem)
            ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(cadata=self.pki.ca.cert_pem.decode())
        ctx.verify_mode = ssl.CERT_REQUIRED if self.require_client_cert else ssl.CERT_OPTIONAL
        return ctx

    def start(self) -> None:
        """Listen (again, on the same port after `stop`)."""
        with self._lock:
            if self._httpd is not None:
                return
            self._stopping = threading.Event()
            httpd = _HTTPServer(("127.0.0.1", self.port), self, self._ssl_ctx)
            self.port = httpd.server_address[1]
            self._httpd = httpd
            self._thread = threading.Thread(
                target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, name=f"mp-apiserver-{self.port}"
            )
            self._thread.start()

    def stop(self) -> None:
        """Close the listening socket (connections are then refused) and every open connection; join all threads."""
        with self._lock:
            httpd, thread, self._httpd, self._thread = self._httpd, self._thread, None, None
            self._stopping.set()  # wakes delayed requests
            self._changed.notify_all()  # and ends watches
        if httpd is None:
            return
        httpd.shutdown()
        assert thread is not None
        thread.join()
        with httpd.live_lock:
            live = list(httpd.live)
        for sock in live:
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the TCP socket under any TLS layer
            except OSError:
                pass
        httpd.server_close()  # closes the listener and joins the connection threads

    close = stop

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def __enter__(self) -> K8sServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- addresses and credentials ----

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{self.path_prefix}"

    @property
    def ca_pem(self) -> bytes:
        if self.pki is None:
            raise ValueError("a plain-HTTP server has no CA")
        return self.pki.ca.cert_pem

    def kubeconfig(
        self,
        path: str | os.PathLike[str],
        *,
        token: str | None = None,
        token_file: str | None = None,
        use_tls: bool | None = None,
        ca: str | None = "data",
        ca_pem: bytes | None = None,
        insecure: bool = False,
        client_cert: str | None = None,
        client_cert_pem: tuple[bytes, bytes] | None = None,
        fmt: str = "yaml",
        server: str | None = None,
        relative: bool = False,
    ) -> str:
        """Write a kubeconfig for this server (one cluster/user/context, current-context set); return its path.

        token / token_file: the user's `token` / `tokenFile` (written as given). use_tls: must
        match the server (None: the server's scheme). ca: "data" (certificate-authority-data),
        "file" (a `<name>.ca.crt` file beside it, `certificate-authority`) or None; ca_pem
        replaces the server's CA (a wrong CA). insecure: insecure-skip-tls-verify. client_cert:
        "data" / "file" / None, with the default client certificate or client_cert_pem
        (cert, key). fmt: "yaml" or "json". server: another URL. relative: file references
        relative to the kubeconfig's directory.
        """
        path = os.fspath(path)
        if use_tls is not None and use_tls != self.tls:
            raise ValueError(f"use_tls={use_tls} but this server speaks {self.scheme}")
        if fmt not in ("yaml", "json"):
            raise ValueError(f"fmt must be 'yaml' or 'json', not {fmt!r}")
        base = os.path.dirname(os.path.abspath(path))
        stem = os.path.basename(path)

        def write(suffix: str, data: bytes) -> str:
            file = os.path.join(base, f"{stem}.{suffix}")
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return os.path.basename(file) if relative else file

        cluster: dict[str, Any] = {"server": server or self.url}
        if insecure:
            cluster["insecure-skip-tls-verify"] = True
        ca_bytes = ca_pem if ca_pem is not None else (self.pki.ca.cert_pem if self.pki else None)
        if ca is not None and ca_bytes is not None:
            if ca == "data":
                cluster["certificate-authority-data"] = base64.b64encode(ca_bytes).decode()
            elif ca == "file":
                cluster["certificate-authority"] = write("ca.crt", ca_bytes)
            else:
                raise ValueError(f"ca must be 'data', 'file' or None, not {ca!r}")
        user: dict[str, Any] = {}
        if token is not None:
            user["token"] = token
        if token_file is not None:
            user["tokenFile"] = token_file
        if client_cert is not None:
            if client_cert_pem is None:
                pki = self.pki or default_pki()
                client_cert_pem = (pki.client_cert_pem, pki.client_key_pem)
            cert, key = client_cert_pem
            if client_cert == "data":
                user["client-certificate-data"] = base64.b64encode(cert).decode()
                user["client-key-data"] = base64.b64encode(key).decode()
            elif client_cert == "file":
                user["client-certificate"] = write("client.crt", cert)
                user["client-key"] = write("client.key", key)
            else:
                raise ValueError(f"client_cert must be 'data', 'file' or None, not {client_cert!r}")
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "mp-test", "cluster": cluster}],
            "users": [{"name": "mp-user", "user": user}],
            "contexts": [
                {"name": "mp-test", "context": {"cluster": "mp-test", "user": "mp-user", "namespace": "default"}}
            ],
            "current-context": "mp-test",
            "preferences": {},
        }
        if fmt == "json":
            text = json.dumps(doc, indent=2)
        else:
            import yaml

            text = yaml.safe_dump(doc, sort_keys=False)
        Path(path).write_text(text)
        return path

    # ---- the store ----

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def add_pod(
        self,
        namespace: str,
        name: str,
        annotations: dict[str, str] | None = None,
        uid: str | None = None,
        *,
        labels: dict[str, str] | None = None,
        node: str = "mp-node",
    ) -> dict[str, Any]:
        """Create (or replace, with a new uid unless given) a running Pod; return a copy of it."""
        with self._lock:
            meta: dict[str, Any] = {
                "name": name,
                "namespace": namespace,
                "uid": uid or str(uuid.uuid4()),
                "resourceVersion": self._next_rv(),
                "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            if labels:
                meta["labels"] = dict(labels)
            if annotations:
                meta["annotations"] = dict(annotations)
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": meta,
                "spec": {"containers": [{"name": "app", "image": "busybox"}], "nodeName": node},
                "status": {"phase": "Running", "podIP": "10.244.0.10"},
            }
            self._replace("pods", self._pods, (namespace, name), pod)
            return copy.deepcopy(pod)

    def update_pod(
        self, namespace: str, name: str, *, annotations: dict[str, str | None] | None = None
    ) -> dict[str, Any]:
        """Another writer: merge `annotations` into the pod (None deletes a key), bump resourceVersion."""
        with self._lock:
            pod = self._pods[(namespace, name)]
            current = dict(pod["metadata"].get("annotations") or {})
            for key, value in (annotations or {}).items():
                if value is None:
                    current.pop(key, None)
                else:
                    current[key] = value
            self._set_annotations(pod, current)
            pod["metadata"]["resourceVersion"] = self._next_rv()
            self._record("MODIFIED", "pods", pod)
            return copy.deepcopy(pod)

    def _new_node(self, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": name,
            "uid": str(uuid.uuid4()),
            "resourceVersion": self._next_rv(),
            "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "labels": {"kubernetes.io/hostname": name, **(labels or {})},
        }
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": meta,
            "spec": {},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]},
        }

    def add_node(self, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
        """Create (or replace, with a new uid) a Ready Node; return a copy of it."""
        with self._lock:
            node = self._new_node(name, labels)
            self._replace("nodes", self._nodes, name, node)
            return copy.deepcopy(node)

    def delete_node(self, name: str) -> None:
        with self._lock:
            self._delete("nodes", self._nodes, name)

    def _node_route(self, name: str, req: Request) -> tuple[int, Any, dict[str, str]]:
        verbs = {"GET": "get" if name else "list", "POST": "create", "DELETE": "delete"}
        verb = verbs.get(req.method, "")
        if verb and not self._allowed(verb, "nodes"):
            msg = f'nodes is forbidden: User "system:serviceaccount:kube-system:multiplane" cannot {verb} resource "nodes" in API group "" at the cluster scope'
            return 403, status_object(403, msg, details={"kind": "nodes"}), {}
        if not name:
            if req.method == "GET":
                items = [copy.deepcopy(n) for _, n in sorted(self._nodes.items())]
                meta = {"resourceVersion": str(self._rv)}
                return 200, {"kind": "NodeList", "apiVersion": "v1", "metadata": meta, "items": items}, {}
            if req.method != "POST":
                return self._not_allowed(req)
            body = req.body
            meta = body.get("metadata") if isinstance(body, dict) else None
            name = meta.get("name") if isinstance(meta, dict) else None
            if not isinstance(name, str) or not name:
                return 422, status_object(422, "Node is invalid: metadata.name: Required value: name is required"), {}
            if name in self._nodes:
                details = {"name": name, "kind": "nodes"}
                return 409, status_object(409, f'nodes "{name}" already exists', "AlreadyExists", details), {}
            node = self._new_node(name, meta.get("labels"))
            self._replace("nodes", self._nodes, name, node)
            return 201, copy.deepcopy(node), {}
        if name not in self._nodes:
            return self._not_found("nodes", "", name)
        if req.method == "GET":
            return 200, copy.deepcopy(self._nodes[name]), {}
        if req.method == "DELETE":
            gone = copy.deepcopy(self._nodes[name])
            self._delete("nodes", self._nodes, name)
            return 200, gone, {}
        return self._not_allowed(req)

    def delete_pod(self, namespace: str, name: str) -> None:
        with self._lock:
            self._delete("pods", self._pods, (namespace, name))

    def pod(self, namespace: str, name: str) -> dict[str, Any]:
        """A copy of the stored Pod (KeyError if there is none)."""
        with self._lock:
            return copy.deepcopy(self._pods[(namespace, name)])

    def add_nad(self, namespace: str, name: str, config: str | dict[str, Any] | None = None) -> dict[str, Any]:
        """Create a NetworkAttachmentDefinition; a dict config is serialised to JSON, None leaves spec empty."""
        with self._lock:
            spec: dict[str, Any] = {}
            if config is not None:
                spec["config"] = config if isinstance(config, str) else json.dumps(config)
            nad = {
                "apiVersion": f"{NAD_GROUP}/v1",
                "kind": "NetworkAttachmentDefinition",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "uid": str(uuid.uuid4()),
                    "resourceVersion": self._next_rv(),
                    "generation": 1,
                    "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                },
                "spec": spec,
            }
            self._replace(NAD_RESOURCE, self._nads, (namespace, name), nad)
            return copy.deepcopy(nad)

    def delete_nad(self, namespace: str, name: str) -> None:
        with self._lock:
            self._delete(NAD_RESOURCE, self._nads, (namespace, name))

    def update_nad(self, namespace: str, name: str, config: str | dict[str, Any]) -> dict[str, Any]:
        """Another writer: replace the NAD's spec.config, bump resourceVersion and generation."""
        with self._lock:
            nad = self._nads[(namespace, name)]
            nad["spec"]["config"] = config if isinstance(config, str) else json.dumps(config)
            nad["metadata"]["generation"] += 1
            nad["metadata"]["resourceVersion"] = self._next_rv()
            self._record("MODIFIED", NAD_RESOURCE, nad)
            return copy.deepcopy(nad)

    def nad(self, namespace: str, name: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._nads[(namespace, name)])

    def events(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Copies of the Events created (in `namespace`, if given), in order."""
        with self._lock:
            return [copy.deepcopy(e) for e in self._events if namespace in (None, e["metadata"]["namespace"])]

    # ---- custom resources ----

    def add_crds(self, source: str | os.PathLike[str] | list[dict[str, Any]]) -> list[str]:
        """Serve the custom resources of CustomResourceDefinitions: a manifest file, or its parsed documents.

        Every served version answers at its REST paths (cluster-scoped or namespaced as the CRD
        says); objects are checked against the version's openAPIV3Schema and pruned of unknown
        fields, as the API server does. Returns the CRDs' names (`<plural>.<group>`).
        """
        if isinstance(source, list):
            docs = source
        else:
            import yaml

            docs = [d for d in yaml.safe_load_all(Path(source).read_text()) if d]
        names = []
        with self._lock:
            for doc in docs:
                if doc.get("kind") != "CustomResourceDefinition":
                    continue
                for version in doc["spec"]["versions"]:
                    if version.get("served", True):
                        crd = _Crd(doc, version)
                        self._crds[(crd.group, crd.version, crd.plural)] = crd
                names.append(doc["metadata"]["name"])
        return names

    def _crd(self, plural: str) -> _Crd:
        found = [crd for crd in self._crds.values() if crd.plural == plural or crd.qualified == plural]
        if not found:
            raise KeyError(f"no CRD serves {plural!r}: call add_crds() first")
        return found[0]

    def custom_objects(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Copies of the stored custom resources of `plural` (in `namespace`, if given), by name."""
        with self._lock:
            crd = self._crd(plural)
            return [
                copy.deepcopy(obj) for (group, res, ns, _name), obj in sorted(self._custom.items())
                if (group, res) == (crd.group, crd.plural) and namespace in (None, ns)
            ]  # fmt: skip

    def custom_object(self, plural: str, name: str, namespace: str = "") -> dict[str, Any]:
        """A copy of one stored custom resource (KeyError if there is none)."""
        with self._lock:
            crd = self._crd(plural)
            return copy.deepcopy(self._custom[(crd.group, crd.plural, namespace, name)])

    def put_custom_object(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Another writer: store `obj` (a new object, with a new uid, if none of its name exists; else replaced).

        No schema check: tests may store what a buggy writer would. resourceVersion bumped.
        """
        with self._lock:
            crd = self._crd(plural)
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            key = (crd.group, crd.plural, meta.get("namespace", "") if crd.namespaced else "", meta["name"])
            old = self._custom.get(key)
            obj.setdefault("apiVersion", crd.api_version)
            obj.setdefault("kind", crd.kind)
            meta["uid"] = (
                old["metadata"]["uid"] if old and not meta.get("uid") else meta.get("uid") or str(uuid.uuid4())
            )
            meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            meta.setdefault("generation", 1)
            meta["resourceVersion"] = self._next_rv()
            self._custom[key] = obj
            return copy.deepcopy(obj)

    def delete_custom_object(self, plural: str, name: str, namespace: str = "") -> None:
        """Another writer: delete one custom resource (KeyError if there is none)."""
        with self._lock:
            crd = self._crd(plural)
            del self._custom[(crd.group, crd.plural, namespace, name)]
            self._next_rv()

    def _custom_resource(self, crd: _Crd, ns: str, name: str, req: Request) -> tuple[int, Any, dict[str, str]]:
        """GET/PUT/DELETE one custom resource, or GET (list)/POST (create) its collection."""
        all_namespaces = crd.namespaced and not ns and not name and req.method == "GET"  # a list of every namespace
        if crd.namespaced != bool(ns) and not all_namespaces:
            return 404, status_object(404, "the server could not find the requested resource"), {}
        watch = self._query(req, "watch") in ("true", "1")
        verbs = {("GET", True): "get", ("PUT", True): "update", ("DELETE", True): "delete",
                 ("GET", False): "watch" if watch else "list", ("POST", False): "create"}  # fmt: skip
        verb = verbs.get((req.method, bool(name)))
        if verb is None or verb == "watch":
            return self._not_allowed(req)
        if not self._allowed(verb, crd.plural):
            scope = f'in the namespace "{ns}"' if ns else "at the cluster scope"
            named = f'{crd.qualified} "{name}"' if name else crd.qualified
            msg = (
                f'{named} is forbidden: User "system:serviceaccount:kube-system:multiplane" cannot {verb} '
                f'resource "{crd.plural}" in API group "{crd.group}" {scope}'
            )
            return 403, status_object(403, msg, details={"name": name, "group": crd.group, "kind": crd.plural}), {}
        key = (crd.group, crd.plural, ns, name)
        if verb == "list":
            return self._list_custom(crd, ns, req)
        if verb == "create":
            return self._create_custom(crd, ns, req)
        current = self._custom.get(key)
        if current is None:
            return self._not_found(crd.plural, crd.group, name)
        if verb == "get":
            return 200, copy.deepcopy(current), {}
        details = {"name": name, "group": crd.group, "kind": crd.plural}
        if verb == "delete":
            options = req.body if isinstance(req.body, dict) else {}
            pre = options.get("preconditions") or {}
            meta = current["metadata"]
            for field, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
                if pre.get(field) and pre[field] != meta[field]:
                    msg = (
                        f'Operation cannot be fulfilled on {crd.qualified} "{name}": Precondition failed: '
                        f"{label} in precondition: {pre[field]}, {label} in object meta: {meta[field]}"
                    )
                    return 409, status_object(409, msg, details=details), {}
            del self._custom[key]
            gone = copy.deepcopy(current)
            gone["metadata"]["resourceVersion"] = self._next_rv()
            return 200, gone, {}
        return self._update_custom(crd, current, name, req)

    def _admit(self, crd: _Crd, body: Any, name: str) -> tuple[dict[str, Any] | None, tuple[int, Any, dict[str, str]]]:
        """The object as it would be stored (schema-pruned), or None and the error answer."""
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            return None, (400, status_object(400, "the body of the request was in an unknown format"), {})
        if body.get("apiVersion") != crd.api_version or body.get("kind") != crd.kind:
            msg = (
                f"the API version in the data ({body.get('apiVersion')}) and kind ({body.get('kind')}) do not match "
                f"the expected {crd.api_version}, {crd.kind}"
            )
            return None, (400, status_object(400, msg, "BadRequest"), {})
        errors = _label_errors(body.get("metadata", {}).get("labels") or {})
        pruned = _check_schema(crd.schema, body, "", errors) if crd.schema else copy.deepcopy(body)
        if errors:
            causes = ", ".join(e.lstrip(".") for e in errors)
            msg = (
                f'{crd.kind}.{crd.group} "{name}" is invalid: {causes}'
                if name
                else f"{crd.kind}.{crd.group} is invalid: {causes}"
            )
            details = {"name": name, "group": crd.group, "kind": crd.kind}
            return None, (422, status_object(422, msg, details=details), {})
        obj = copy.deepcopy(pruned)
        obj["apiVersion"], obj["kind"] = crd.api_version, crd.kind
        obj["metadata"] = copy.deepcopy(body.get("metadata") or {})
        return obj, (0, None, {})

    def _create_custom(self, crd: _Crd, ns: str, req: Request) -> tuple[int, Any, dict[str, str]]:
        body = req.body
        meta = body.get("metadata") if isinstance(body, dict) else None
        name = (meta.get("name") or "") if isinstance(meta, dict) else ""
        if isinstance(meta, dict) and not name and meta.get("generateName"):
            name = meta["generateName"] + uuid.uuid4().hex[:5]
        if not name or len(name) > 253 or not _NAME.match(name):
            msg = (
                f'{crd.kind}.{crd.group} "{name}" is invalid: metadata.name: Invalid value: "{name}": a lowercase '
                "RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start "
                "and end with an alphanumeric character"
            )
            return 422, status_object(422, msg, details={"name": name, "group": crd.group, "kind": crd.kind}), {}
        obj, error = self._admit(crd, body, name)
        if obj is None:
            return error
        if (crd.group, crd.plural, ns, name) in self._custom:
            msg = f'{crd.qualified} "{name}" already exists'
            details = {"name": name, "group": crd.group, "kind": crd.plural}
            return 409, status_object(409, msg, "AlreadyExists", details), {}
        meta = {k: v for k, v in obj["metadata"].items() if k in ("labels", "annotations", "finalizers")}
        meta["name"] = name
        if ns:
            meta["namespace"] = ns
        meta["uid"] = str(uuid.uuid4())
        meta["resourceVersion"] = self._next_rv()
        meta["generation"] = 1
        meta["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        obj["metadata"] = meta
        self._custom[(crd.group, crd.plural, ns, name)] = obj
        return 201, copy.deepcopy(obj), {}

    def _update_custom(
        self, crd: _Crd, current: dict[str, Any], name: str, req: Request
    ) -> tuple[int, Any, dict[str, str]]:
        obj, error = self._admit(crd, req.body, name)
        if obj is None:
            return error
        meta, old = obj["metadata"], current["metadata"]
        details = {"name": name, "group": crd.group, "kind": crd.plural}
        if meta.get("name", name) != name:
            msg = f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            return 400, status_object(400, msg), {}
        if not meta.get("resourceVersion"):
            msg = (
                f'{crd.kind}.{crd.group} "{name}" is invalid: metadata.resourceVersion: Invalid value: 0x0: '
                "must be specified for an update"
            )
            return 422, status_object(422, msg, details={"name": name, "group": crd.group, "kind": crd.kind}), {}
        if meta.get("uid") and meta["uid"] != old["uid"]:
            msg = (
                f'Operation cannot be fulfilled on {crd.qualified} "{name}": Precondition failed: '
                f"UID in precondition: {meta['uid']}, UID in object meta: {old['uid']}"
            )
            return 409, status_object(409, msg, details=details), {}
        if meta["resourceVersion"] != old["resourceVersion"]:
            msg = (
                f'Operation cannot be fulfilled on {crd.qualified} "{name}": the object has been modified; '
                "please apply your changes to the latest version and try again"
            )
            return 409, status_object(409, msg, details=details), {}
        kept = {k: v for k, v in old.items() if k not in ("labels", "annotations", "resourceVersion", "generation")}
        for field in ("labels", "annotations"):
            if meta.get(field):
                kept[field] = meta[field]
        kept["generation"] = old.get("generation", 1) + (1 if obj.get("spec") != current.get("spec") else 0)
        kept["resourceVersion"] = self._next_rv()
        obj["metadata"] = kept
        self._custom[(crd.group, crd.plural, old.get("namespace", ""), name)] = obj
        return 200, copy.deepcopy(obj), {}

    def _list_custom(self, crd: _Crd, ns: str, req: Request) -> tuple[int, Any, dict[str, str]]:
        text = self._query(req, "labelSelector")
        terms = _label_selector(text)
        if terms is None:
            return 400, status_object(400, f"unable to parse requirement: invalid label selector: {text!r}"), {}
        wanted: list[tuple[str, str]] = []
        for term in self._query(req, "fieldSelector").split(","):
            if not term:
                continue
            key, _, value = term.replace("==", "=").partition("=")
            if key not in ("metadata.name", "metadata.namespace"):
                return (
                    400,
                    status_object(
                        400, f'"{key}" is not a known field selector: only "metadata.name", "metadata.namespace"'
                    ),
                    {},
                )
            wanted.append((key, value))
        items = [
            copy.deepcopy(obj) for (group, res, obj_ns, _name), obj in sorted(self._custom.items())
            if (group, res) == (crd.group, crd.plural) and ns in ("", obj_ns)
            and self._matches(obj, "", wanted) and _selected(obj, terms)
        ]  # fmt: skip
        meta = {"resourceVersion": str(self._rv), "continue": ""}
        return 200, {"apiVersion": crd.api_version, "kind": crd.list_kind, "metadata": meta, "items": items}, {}

    # ---- watch history (called with the lock held) ----

    def _record(self, kind: str, resource: str, obj: dict[str, Any]) -> None:
        if len(self._history) == self._history.maxlen:
            self._dropped_rv = self._history[0][0]
        self._history.append((int(obj["metadata"]["resourceVersion"]), kind, resource, copy.deepcopy(obj)))
        self._changed.notify_all()

    def _replace(self, resource: str, store: dict[Any, dict[str, Any]], key: Any, obj: dict[str, Any]) -> None:
        """Store a new object; one that replaces another of the same name is a DELETED then an ADDED."""
        if key in store:
            self._delete(resource, store, key)
            obj["metadata"]["resourceVersion"] = self._next_rv()
        store[key] = obj
        self._record("ADDED", resource, obj)

    def _delete(self, resource: str, store: dict[Any, dict[str, Any]], key: Any) -> None:
        gone = store.pop(key)
        gone["metadata"]["resourceVersion"] = self._next_rv()  # as the API server: the deletion has its own
        self._record("DELETED", resource, gone)

    @staticmethod
    def _set_annotations(pod: dict[str, Any], annotations: dict[str, Any]) -> None:
        if annotations:
            pod["metadata"]["annotations"] = annotations
        else:
            pod["metadata"].pop("annotations", None)

    # ---- fault injection ----

    def fail_next(self, n: int, status: int = 503, *, method: str | None = None) -> None:
        """The next `n` requests (of `method`, if given) are answered with `status` and a Status object."""
        with self._lock:
            self._fail.append([n, status, method])

    def conflict_next(self, n: int) -> None:
        """The next `n` PUTs of a pod's status answer 409 Conflict even with a current resourceVersion."""
        with self._lock:
            self._conflicts += n

    def drop_watches(self) -> None:
        """Cut every open watch connection, as a restarting API server or a broken network would.

        Each stream ends without its terminating chunk and the connection closes; the server
        keeps serving, so clients watch again (from the last resourceVersion they saw) at once.
        """
        with self._lock:
            self._watch_epoch += 1
            self._changed.notify_all()

    def expire_history(self) -> None:
        """Forget every recorded watch event: a watch from a resourceVersion older than the current one gets 410.

        As after an etcd compaction: a client must list again; a watch from the current
        resourceVersion (a fresh list's) still works. Open, caught-up watches go on.
        """
        with self._lock:
            self._history.clear()
            self._dropped_rv = self._rv
            self._changed.notify_all()

    def watches(self) -> int:
        """How many watch streams are being served right now."""
        with self._lock:
            return self._open_watches

    def delay(self, seconds: float, n: int | None = None) -> None:
        """Hold each of the next `n` requests (None: all, until `delay(0)`) for `seconds` before answering."""
        with self._lock:
            self._delay, self._delay_left = seconds, n

    def reset_faults(self) -> None:
        with self._lock:
            self._fail.clear()
            self._conflicts = 0
            self._delay, self._delay_left = 0.0, None

    def requests_for(self, method: str | None = None, path: str | None = None) -> list[Request]:
        """The recorded requests, filtered by method and/or path suffix."""
        with self._lock:
            return [
                r for r in self.requests
                if (method is None or r.method == method) and (path is None or r.path.endswith(path))
            ]  # fmt: skip

    # ---- serving (called from the connection threads) ----

    def _handle(self, req: Request, prefixed: bool, httpd: _HTTPServer) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.requests.append(req)
            stopping = self._stopping
        hook = self.on_request
        if hook is not None:
            hook(req)
        with self._lock:
            wait = 0.0
            if self._delay > 0 and (self._delay_left is None or self._delay_left > 0):
                wait = self._delay
                if self._delay_left is not None:
                    self._delay_left -= 1
        if wait and stopping.wait(wait):
            return 0, None, {}
        with self._lock:
            self._fail[:] = [r for r in self._fail if r[0] > 0]
            for rule in self._fail:
                if rule[0] > 0 and (rule[2] is None or rule[2] == req.method):
                    rule[0] -= 1
                    status = rule[1]
                    headers = {"Retry-After": "1"} if status == 429 else {}
                    msg = "injected failure" if status != 429 else "Too many requests, please try again later."
                    return status, status_object(status, msg), headers
        if self.token is not None and not req.user:
            return 401, status_object(401, "Unauthorized"), {}
        if not prefixed:
            return 404, status_object(404, "the server could not find the requested resource"), {}
        with self._lock:
            return self._route(req)

    def _route(self, req: Request) -> tuple[int, Any, dict[str, str]]:
        if req.path == _ACCESS_REVIEW:
            return self._access_review(req)
        m = _POD_LIST.match(req.path)
        if m:
            return self._list_pods(urllib.parse.unquote(m.group(1) or ""), req)
        m = _NODE.match(req.path)
        if m:
            return self._node_route(urllib.parse.unquote(m.group(1) or ""), req)
        m = _NAD_LIST.match(req.path)
        if m:
            return self._collection(NAD_RESOURCE, urllib.parse.unquote(m.group(1) or ""), req)
        m = _POD.match(req.path)
        if m:
            ns, name = urllib.parse.unquote(m.group(1)), urllib.parse.unquote(m.group(2))
            if m.group(3):
                if req.method == "PATCH":
                    return self._patch_pod_status(ns, name, req)
                if req.method != "PUT":
                    return self._not_allowed(req)
                return self._put_pod_status(ns, name, req)
            if req.method != "GET":
                return self._not_allowed(req)
            pod = self._pods.get((ns, name))
            if pod is None:
                return self._not_found("pods", "", name)
            return 200, copy.deepcopy(pod), {}
        m = _NAD.match(req.path)
        if m:
            ns, name = urllib.parse.unquote(m.group(1)), urllib.parse.unquote(m.group(2))
            if req.method != "GET":
                return self._not_allowed(req)
            nad = self._nads.get((ns, name))
            if nad is None:
                return self._not_found(NAD_RESOURCE, NAD_GROUP, name)
            return 200, copy.deepcopy(nad), {}
        m = _EVENTS.match(req.path)
        if m:
            ns = urllib.parse.unquote(m.group(1))
            if req.method == "POST":
                return self._create_event(ns, req)
            if req.method != "GET":
                return self._not_allowed(req)
            items = [copy.deepcopy(e) for e in self._events if e["metadata"]["namespace"] == ns]
            return 200, {"kind": "EventList", "apiVersion": "v1", "metadata": {}, "items": items}, {}
        m = _CUSTOM.match(req.path)
        if m and (m.group(1), m.group(2), m.group(4)) in self._crds:
            crd = self._crds[(m.group(1), m.group(2), m.group(4))]
            ns, name = urllib.parse.unquote(m.group(3) or ""), urllib.parse.unquote(m.group(5) or "")
            return self._custom_resource(crd, ns, name, req)
        return 404, status_object(404, "the server could not find the requested resource"), {}

    def _create_event(self, ns: str, req: Request) -> tuple[int, Any, dict[str, str]]:
        body = req.body
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            return 400, status_object(400, "the body of the request was in an unknown format"), {}
        event = copy.deepcopy(body)
        meta = event.setdefault("metadata", {})
        if meta.setdefault("namespace", ns) != ns:
            msg = "the namespace of the provided object does not match the namespace sent on the request"
            return 400, status_object(400, msg), {}
        involved = event.get("involvedObject")
        if not isinstance(involved, dict) or involved.get("namespace", ns) != ns:
            got = involved.get("namespace") if isinstance(involved, dict) else None
            msg = f'Event "{meta.get("name", "")}" is invalid: involvedObject.namespace: Invalid value: "{got}": does not match event.namespace'
            return 422, status_object(422, msg), {}
        if not meta.get("name"):
            if not meta.get("generateName"):
                msg = "Event is invalid: metadata.name: Required value: name or generateName is required"
                return 422, status_object(422, msg), {}
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if any(e["metadata"]["namespace"] == ns and e["metadata"]["name"] == meta["name"] for e in self._events):
            return 409, status_object(409, f'events "{meta["name"]}" already exists', "AlreadyExists"), {}
        meta["uid"] = str(uuid.uuid4())
        meta["resourceVersion"] = self._next_rv()
        meta["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        event.setdefault("apiVersion", "v1")
        event.setdefault("kind", "Event")
        self._events.append(event)
        return 201, copy.deepcopy(event), {}

    @staticmethod
    def _not_found(resource: str, group: str, name: str) -> tuple[int, Any, dict[str, str]]:
        qualified = f"{resource}.{group}" if group else resource
        details: dict[str, Any] = {"name": name, "kind": resource}
        if group:
            details = {"name": name, "group": group, "kind": resource}
        return 404, status_object(404, f'{qualified} "{name}" not found', details=details), {}

    @staticmethod
    def _not_allowed(req: Request) -> tuple[int, Any, dict[str, str]]:
        msg = f"the server does not allow this method on the requested resource ({req.method})"
        return 405, status_object(405, msg), {}

    def _allowed(self, verb: str, resource: str, subresource: str = "") -> bool:
        return self.access is None or (verb, resource, subresource) in self.access

    def _access_review(self, req: Request) -> tuple[int, Any, dict[str, str]]:
        """SelfSubjectAccessReview: the review back with `status.allowed` (201, as the API server answers)."""
        if req.method != "POST":
            return self._not_allowed(req)
        body = req.body
        spec = body.get("spec") if isinstance(body, dict) else None
        attrs = spec.get("resourceAttributes") if isinstance(spec, dict) else None
        if not isinstance(attrs, dict) or not attrs.get("verb") or not attrs.get("resource"):
            msg = "SelfSubjectAccessReview.authorization.k8s.io is invalid: spec.resourceAttributes: Required value"
            return 422, status_object(422, msg), {}
        allowed = self._allowed(attrs["verb"], attrs["resource"], attrs.get("subresource") or "")
        review = copy.deepcopy(body)
        review.setdefault("metadata", {})
        review["status"] = {"allowed": allowed, "reason": "RBAC: allowed by the test server" if allowed else ""}
        return 201, review, {}

    def _list_pods(self, ns: str, req: Request) -> tuple[int, Any, dict[str, str]]:
        """A PodList (or a watch) of every pod (or one namespace's) matching the `fieldSelector` of the query."""
        if req.method != "GET":
            return self._not_allowed(req)
        verb = "watch" if self._query(req, "watch") in ("true", "1") else "list"
        if not self._allowed(verb, "pods"):
            scope = f'in the namespace "{ns}"' if ns else "at the cluster scope"
            msg = f'pods is forbidden: User "system:serviceaccount:kube-system:multiplane" cannot {verb} resource "pods" in API group "" {scope}'
            return 403, status_object(403, msg, details={"kind": "pods"}), {}
        return self._collection("pods", ns, req)

    @staticmethod
    def _query(req: Request, key: str) -> str:
        return urllib.parse.parse_qs(req.query).get(key, [""])[0]

    @staticmethod
    def _matches(obj: dict[str, Any], ns: str, wanted: list[tuple[str, str]]) -> bool:
        if ns and obj["metadata"]["namespace"] != ns:
            return False
        for key, value in wanted:
            part, _, name = key.partition(".")
            if str(obj.get(part, {}).get(name, "")) != value:
                return False
        return True

    def _collection(self, resource: str, ns: str, req: Request) -> tuple[int, Any, dict[str, str]]:
        """List (a `<Kind>List` with metadata.resourceVersion) or, with watch=true, watch a collection."""
        if req.method != "GET":
            return self._not_allowed(req)
        fields = ("spec.nodeName", "metadata.name", "metadata.namespace") if resource == "pods" else ()
        fields += ("metadata.name", "metadata.namespace")
        wanted: list[tuple[str, str]] = []
        for term in self._query(req, "fieldSelector").split(","):
            if not term:
                continue
            key, _, value = term.replace("==", "=").partition("=")
            if key not in fields:
                return 400, status_object(400, f"field label not supported: {key}"), {}
            wanted.append((key, value))
        api_version, kind = _KINDS[resource]
        if self._query(req, "watch") in ("true", "1"):
            rv_text = self._query(req, "resourceVersion")
            if rv_text not in ("", "0") and not rv_text.isdigit():
                return 400, status_object(400, f"invalid resource version: {rv_text}"), {}
            timeout_text = self._query(req, "timeoutSeconds")
            timeout = float(timeout_text) if timeout_text.isdigit() else self.watch_timeout
            bookmarks = self._query(req, "allowWatchBookmarks") == "true"
            rv = int(rv_text) if rv_text not in ("", "0") else None
            watch = _Watch(resource, ns, wanted, rv, timeout, bookmarks, self._stopping, self._watch_epoch)
            return 200, watch, {}
        store = self._pods if resource == "pods" else self._nads
        items = [copy.deepcopy(obj) for _key, obj in sorted(store.items()) if self._matches(obj, ns, wanted)]
        meta = {"resourceVersion": str(self._rv)}
        return 200, {"kind": f"{kind}List", "apiVersion": api_version, "metadata": meta, "items": items}, {}

    def _watch_events(self, watch: _Watch) -> Iterator[dict[str, Any]]:
        """The events of a watch, as they happen, until its timeout or the server stops (runs unlocked between)."""
        api_version, kind = _KINDS[watch.resource]
        deadline = time.monotonic() + watch.timeout
        with self._lock:
            if watch.rv is None:  # "any": the current state first
                store = self._pods if watch.resource == "pods" else self._nads
                initial = [
                    {"type": "ADDED", "object": copy.deepcopy(obj)}
                    for _key, obj in sorted(store.items())
                    if self._matches(obj, watch.namespace, watch.wanted)
                ]
                last = self._rv
            else:
                initial, last = [], watch.rv
        yield from initial
        next_bookmark = time.monotonic() + self.bookmark_interval
        while True:
            expired = ""
            with self._changed:
                while True:
                    if watch.stopping.is_set():
                        return
                    if watch.epoch != self._watch_epoch:
                        watch.dropped = True
                        return
                    if last < self._dropped_rv:
                        expired = f"too old resource version: {last} ({self._dropped_rv + 1})"
                        break
                    events = [
                        {"type": typ, "object": copy.deepcopy(obj)}
                        for rv, typ, resource, obj in self._history
                        if rv > last and resource == watch.resource
                        and self._matches(obj, watch.namespace, watch.wanted)
                    ]  # fmt: skip
                    now = time.monotonic()
                    if events or now >= deadline or (watch.bookmarks and now >= next_bookmark):
                        break
                    wake = min(deadline, next_bookmark) if watch.bookmarks else deadline
                    self._changed.wait(wake - now)
                last = self._rv  # every change up to here is in the history (recorded under this lock)
            if expired:  # as the API server answers a watch: 200, then one ERROR event with a 410 Status
                yield {"type": "ERROR", "object": status_object(410, expired, "Expired")}
                return
            yield from events
            if events:
                continue
            if time.monotonic() >= deadline:
                return
            bookmark = {"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": str(last)}}
            yield {"type": "BOOKMARK", "object": bookmark}
            next_bookmark = time.monotonic() + self.bookmark_interval

    def _put_pod_status(self, ns: str, name: str, req: Request) -> tuple[int, Any, dict[str, str]]:
        pod = self._pods.get((ns, name))
        if pod is None:
            return self._not_found("pods", "", name)
        body = req.body
        if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
            return 400, status_object(400, "the body of the request was in an unknown format"), {}
        meta = body["metadata"]
        if meta.get("name", name) != name or meta.get("namespace", ns) != ns:
            return 400, status_object(400, "the name of the object does not match the name on the URL"), {}
        details = {"name": name, "kind": "pods"}
        conflict = (
            f'Operation cannot be fulfilled on pods "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again"
        )
        if self._conflicts > 0:
            self._conflicts -= 1
            return 409, status_object(409, conflict, details=details), {}
        if meta.get("uid") and meta["uid"] != pod["metadata"]["uid"]:
            msg = (
                f'Operation cannot be fulfilled on pods "{name}": Precondition failed: '
                f"UID in precondition: {meta['uid']}, UID in object meta: {pod['metadata']['uid']}"
            )
            return 409, status_object(409, msg, details=details), {}
        rv = meta.get("resourceVersion")
        if rv and rv != pod["metadata"]["resourceVersion"]:
            return 409, status_object(409, conflict, details=details), {}
        annotations = meta.get("annotations") or {}
        if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
            return 400, status_object(400, "metadata.annotations: values must be strings"), {}
        self._set_annotations(pod, dict(annotations))
        if isinstance(meta.get("labels"), dict):
            pod["metadata"]["labels"] = dict(meta["labels"])
        if isinstance(body.get("status"), dict):
            pod["status"] = copy.deepcopy(body["status"])
        pod["metadata"]["resourceVersion"] = self._next_rv()
        self._record("MODIFIED", "pods", pod)
        return 200, copy.deepcopy(pod), {}

    def _patch_pod_status(self, ns: str, name: str, req: Request) -> tuple[int, Any, dict[str, str]]:
        """A JSON merge patch of pods/status; see the module docstring."""
        content_type = req.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/merge-patch+json":
            msg = (
                "the body of the request was in an unknown format - accepted media types include: "
                "application/merge-patch+json (the only one this test server applies)"
            )
            return 415, status_object(415, msg), {}
        pod = self._pods.get((ns, name))
        if pod is None:
            return self._not_found("pods", "", name)
        patch = req.body
        if not isinstance(patch, dict) or not isinstance(patch.get("metadata", {}), dict):
            return 400, status_object(400, "error decoding patch: the patch is not a JSON object"), {}
        details = {"name": name, "kind": "pods"}
        wanted = patch.get("metadata", {})
        current = pod["metadata"]
        if wanted.get("uid") is not None and wanted["uid"] != current["uid"]:
            msg = (
                f'Operation cannot be fulfilled on pods "{name}": StorageError: invalid object, Code: 4, '
                f"Key: /registry/pods/{ns}/{name}, ResourceVersion: 0, AdditionalErrorMsg: "
                f"Precondition failed: UID in precondition: {wanted['uid']}, UID in object meta: {current['uid']}"
            )
            return 409, status_object(409, msg, details=details), {}
        if wanted.get("resourceVersion") is not None and wanted["resourceVersion"] != current["resourceVersion"]:
            msg = (
                f'Operation cannot be fulfilled on pods "{name}": the object has been modified; '
                "please apply your changes to the latest version and try again"
            )
            return 409, status_object(409, msg, details=details), {}
        patched = merge_patch(pod, patch)
        meta = patched.get("metadata")
        if not isinstance(meta, dict) or meta.get("name") != name or meta.get("namespace") != ns:
            return 400, status_object(400, "the name of the object does not match the name on the URL"), {}
        for field in ("annotations", "labels"):
            values = meta.get(field) or {}
            if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
                msg = f'Pod "{name}" is invalid: metadata.{field}: Invalid value: values must be strings'
                return 422, status_object(422, msg, details=details), {}
        self._set_annotations(pod, dict(meta.get("annotations") or {}))
        if meta.get("labels"):
            current["labels"] = dict(meta["labels"])
        else:
            current.pop("labels", None)
        if isinstance(patched.get("status"), dict):
            pod["status"] = copy.deepcopy(patched["status"])
        current["resourceVersion"] = self._next_rv()
        self._record("MODIFIED", "pods", pod)
        return 200, copy.deepcopy(pod), {}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: `target` with the JSON merge patch `patch` applied, as a new value.

    An object patch merges key by key (null removes the key); any other patch replaces the
    target. Neither argument is changed; the result shares the parts the patch leaves alone.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
