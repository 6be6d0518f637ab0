"""A small Kubernetes API client on the standard library: the four calls the meta-plugin needs.

* GET  /api/v1/namespaces/{ns}/pods/{name}
* GET  /apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions/{name}
* PUT  /api/v1/namespaces/{ns}/pods/{name}/status   (network-status annotation, retried on 409)
* POST /api/v1/namespaces/{ns}/events               (a pod's Events; one try, short timeout)

packaging/k8s/rbac.yaml grants exactly these (tests/integration/test_meta_events.py checks it).

Why not a client library: each CNI call is a fresh process; lightkube (~118 ms of
imports here) and kubernetes (~198 ms) cost more than the rest of an ADD, and we need
four requests. See docs/decisions/0004. Credentials come from a kubeconfig (token, tokenFile,
client certificate, CA, insecure-skip-tls-verify; YAML or JSON) or the in-cluster service
account, whose token file is read on every request so a rotated token is picked up; a 401
re-reads it once more. Every request has a timeout; GETs are retried on connection errors,
429 and 5xx within a bounded budget. Errors name the API object.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
import tempfile
import time
import urllib.parse

from multiplane.errors import InvalidConfig
from multiplane.k8s.errors import ApiError, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ApiError", "KubeClient", "KubeConfig", "NotFound", "in_cluster_config", "load_kubeconfig"]

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
NAD_PATH = "/apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions/{name}"


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


class KubeClient:
    """Synchronous, one connection per request (a CNI process makes a handful)."""

    def __init__(self, cfg: KubeConfig, timeout: float = 5.0, retry_budget: float = 3.0) -> None:
        self.cfg = cfg
        self.timeout = timeout
        self.retry_budget = retry_budget
        url = urllib.parse.urlsplit(cfg.server)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise InvalidConfig(f"invalid Kubernetes API server URL {cfg.server!r}")
        self.scheme, self.host, self.port = url.scheme, url.hostname, url.port or (443 if url.scheme == "https" else 80)
        self.prefix = url.path.rstrip("/")
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

    def _connect(self, timeout: float | None = None) -> http.client.HTTPConnection:
        timeout = self.timeout if timeout is None else timeout
        if self._ssl is not None:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self.host, self.port, timeout=timeout, context=self._ssl
            )
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        conn.connect()
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _once(self, method: str, path: str, body: bytes | None, timeout: float | None = None) -> tuple[int, Any]:
        headers = {"Accept": "application/json", "User-Agent": "multiplane"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        token = self.cfg.bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn = self._connect(timeout)
        try:
            conn.request(method, self.prefix + path, body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = {"message": raw.decode("utf-8", "replace")[:200]}
        return resp.status, data

    def request(
        self, method: str, path: str, what: str, body: Any = None, retry: bool = True, timeout: float | None = None
    ) -> Any:
        """One API call; retried (GETs) on connection errors, 429 and 5xx; ApiError/NotFound naming `what`.

        `timeout`: seconds for each connection and read (default: the client's).
        """
        payload = json.dumps(body).encode() if body is not None else None
        deadline = time.monotonic() + self.retry_budget
        pause, reauthed = 0.1, False
        while True:
            try:
                status, data = self._once(method, path, payload, timeout)
            except ssl.SSLError as exc:
                # A certificate problem does not go away by retrying: fail now.
                raise ApiError(
                    f"TLS error talking to the Kubernetes API at {self.cfg.server} for {what}", 0, str(exc)
                ) from exc
            except (OSError, http.client.HTTPException) as exc:
                status, data = 0, {"message": f"{type(exc).__name__}: {exc}"}
            if status == 401 and not reauthed:
                reauthed = True  # a rotated service-account token: read it again and retry once
                continue
            if 200 <= status < 300:
                return data
            transient = status == 0 or status == 429 or status >= 500
            if not (retry and transient) or time.monotonic() + pause > deadline:
                message = (data or {}).get("message", "") if isinstance(data, dict) else ""
                if status == 404:
                    raise NotFound(f"{what} not found", 404, message)
                if status == 0:
                    raise ApiError(f"cannot reach the Kubernetes API at {self.cfg.server} for {what}", 0, message)
                raise ApiError(f"Kubernetes API error {status} for {what}", status, message)
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
        """GET the pod, set one annotation, PUT pods/status; retried on 409 (someone else wrote first)."""
        what = f'pods "{namespace}/{name}"'
        path = f"/api/v1/namespaces/{_segment(namespace, name)}/pods/{_segment(name, namespace, subdomain=True)}/status"
        for attempt in range(tries):
            pod = self.get_pod(namespace, name)
            meta = pod.setdefault("metadata", {})
            if uid and meta.get("uid") and meta["uid"] != uid:
                raise ApiError(f'{what} was replaced (expected UID "{uid}", found "{meta["uid"]}")', 409)
            annotations = meta.get("annotations") or {}
            annotations[key] = value
            meta["annotations"] = annotations
            try:
                # Safe to retry on 5xx: the body carries resourceVersion, so a write that did
                # land makes the retry a 409, and the loop re-reads the pod.
                self.request("PUT", path, f"{what} status", body=pod)
                return
            except ApiError as exc:
                if exc.status != 409 or attempt == tries - 1:
                    raise

    def create_event(self, namespace: str, event: dict[str, Any], timeout: float = 2.0) -> dict[str, Any]:
        """POST a core v1 Event into `namespace`: one try (Events are best effort), `timeout` seconds at most per step."""
        path = f"/api/v1/namespaces/{_segment(namespace, 'events')}/events"
        return self.request(
            "POST", path, f'events in namespace "{namespace}"', body=event, retry=False, timeout=timeout
        )


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
