"""The daemon's health and Prometheus metrics, served over HTTP on `metricsAddress`.

`Metrics` holds the daemon's metrics in a registry of its own (never prometheus_client's
global one, so two daemons in one test process do not share counts):

    multiplane_requests_total{command,result}        requests answered; result is ok, error or
                                                     rejected (the queue was full, or the request
                                                     waited past its deadline and never ran)
    multiplane_request_duration_seconds{command}     time a request ran (rejected ones are not in it)
    multiplane_requests_in_flight                    requests running now
    multiplane_requests_queued                       requests waiting for a worker now
    multiplane_cache_synced{cache}                   1 once the cache's first list is complete, else 0
    multiplane_cache_age_seconds{cache}              seconds since the cache last heard from the API
                                                     server (a list, an event or a bookmark); +Inf
                                                     when it never has
    multiplane_cache_objects{cache}                  objects the cache holds
    multiplane_cache_relists_total{cache}            lists after the first (410 Gone, reconnects)
    multiplane_cache_lookups_total{cache,outcome}    lookups served from the cache (hit) or not (miss)
    multiplane_api_errors_total{kind}                failed API requests: unreachable, unauthorized,
                                                     forbidden, not_found, conflict, gone, throttled,
                                                     server_error, other
    multiplane_ipam_background_total{task,result}    rounds of cluster-wide IPAM's background work
                                                     (daemon/ipam.py): task replay, claim-ahead or
                                                     reconcile; result ok or error
    multiplane_ipam_reconciler_freed_total           blocks and single claims the reconciler freed
    process_*, python_info, python_gc_*              prometheus_client's standard collectors

`command` is the CNI command (ADD, DEL, CHECK, STATUS, GC, VERSION); anything else counts as
`other`, so a client sending nonsense cannot grow the label set. The cache families are
read from the `cache_state` callable at scrape time (a collector, not a thread): one dict
per cache name with `synced`, `last_event` (a `time.monotonic()` value or None), `objects`,
`relists` and `last_error` (not exported: an error text is no label value). It is called from
the HTTP server's threads, so it must be safe to call from any thread. If it raises, the
scrape still answers, without the cache families, and the traceback is logged.

`StatusServer` serves `GET /healthz` (200 with `health()`'s dict as JSON when healthy, else
503 with the same dict) and `GET /metrics` (the text exposition format), HEAD of both, and
404 for anything else. It logs no requests; an exception in `health()` or a collector
answers 500 and its traceback goes to the process logger in charge when `start()` ran.
The address is `host:port` with an IP literal: `127.0.0.1:9091`, `[::1]:9091`,
`0.0.0.0:9091`, or `:9091` for every interface (IPv6 and IPv4 when the node has IPv6).
"""

from __future__ import annotations

import errno
import ipaddress
import json
import math
import re
import socket
import socketserver
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from multiplane import logs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    from prometheus_client.metrics_core import Metric

__all__ = ["API_ERROR_KINDS", "BUCKETS", "COMMANDS", "RESULTS", "Metrics", "StatusServer", "parse_address"]

COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")
RESULTS = ("ok", "error", "rejected")
IPAM_TASKS = ("replay", "claim-ahead", "reconcile")
# A built-in ADD takes a few milliseconds, one with API requests and exec'd delegates tens to
# hundreds, a call stuck on a slow API server seconds; runtimes give up after a minute or two.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
API_ERROR_KINDS = (
    "unreachable", "unauthorized", "forbidden", "not_found", "conflict", "gone", "throttled", "server_error", "other",
)  # fmt: skip
_STATUS_KINDS = {
    0: "unreachable",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    410: "gone",
    429: "throttled",
}


def api_error_kind(status: int) -> str:
    """The `kind` label of an API error with HTTP status `status` (0: no answer at all)."""
    if status in _STATUS_KINDS:
        return _STATUS_KINDS[status]
    if 500 <= status <= 599:
        return "server_error"
    return "other"


class Metrics:
    """The daemon's metrics (see the module docstring); every method is safe to call from any thread."""

    def __init__(self, cache_state: Callable[[], dict[str, dict]] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "multiplane_requests",
            "CNI requests answered, by command and result (rejected: queue full or deadline passed while queued).",
            ("command", "result"),
            registry=self.registry,
        )
        self.duration = Histogram(
            "multiplane_request_duration_seconds",
            "Time CNI requests ran, by command (rejected requests are not counted).",
            ("command",),
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge("multiplane_requests_in_flight", "CNI requests running now.", registry=self.registry)
        self.queued = Gauge("multiplane_requests_queued", "CNI requests waiting for a worker.", registry=self.registry)
        self.api_errors = Counter(
            "multiplane_api_errors", "Failed Kubernetes API requests, by kind.", ("kind",), registry=self.registry
        )
        self.cache_lookups = Counter(
            "multiplane_cache_lookups",
            "Lookups in the daemon's caches, by cache and outcome (hit, or miss: a live GET instead).",
            ("cache", "outcome"),
            registry=self.registry,
        )
        self.ipam_rounds = Counter(
            "multiplane_ipam_background",
            "Rounds of cluster-wide IPAM's background work, by task (replay, claim-ahead, reconcile) and result.",
            ("task", "result"),
            registry=self.registry,
        )
        self.ipam_freed_total = Counter(
            "multiplane_ipam_reconciler_freed",
            "Blocks and single claims the reconciler freed (holders gone past the grace).",
            registry=self.registry,
        )
        # Every series a dashboard or an alert names exists from the start, at 0.
        for task in IPAM_TASKS:
            for result in ("ok", "error"):
                self.ipam_rounds.labels(task, result)
        for command in COMMANDS:
            for result in RESULTS:
                self.requests.labels(command, result)
        for kind in API_ERROR_KINDS:
            self.api_errors.labels(kind)
        self.registry.register(_CacheCollector(cache_state))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def request_started(self) -> None:
        """A request left the queue and runs now (pair it with `request_finished`, result ok or error)."""
        self.in_flight.inc()

    def request_queued(self, delta: int) -> None:
        """`delta` requests joined the queue (negative: left it, to run or to be rejected)."""
        self.queued.inc(delta)

    def request_finished(self, command: str, result: str, seconds: float) -> None:
        """A request was answered.

        `ok` and `error` end a request `request_started` counted: it leaves the in-flight
        gauge and `seconds` (the time it ran) goes to the histogram. `rejected` is a request
        that never started (queue full, or its deadline passed while it waited): it is only
        counted. Any other result is a bug of the caller: ValueError.
        """
        if result not in RESULTS:
            raise ValueError(f"request result must be one of {', '.join(RESULTS)}, not {result!r}")
        label = command if command in COMMANDS else "other"
        self.requests.labels(label, result).inc()
        if result != "rejected":
            self.in_flight.dec()
            self.duration.labels(label).observe(seconds)

    def api_error(self, status: int) -> None:
        """Count one failed API request by its HTTP status (0: no answer: refused, reset, timed out)."""
        self.api_errors.labels(api_error_kind(status)).inc()

    def cache_lookup(self, cache: str, hit: bool) -> None:
        """Count one lookup in `cache`: served from it (`hit`) or not."""
        self.cache_lookups.labels(cache, "hit" if hit else "miss").inc()

    def ipam_round(self, task: str, result: str) -> None:
        """One round of a cluster-wide IPAM background task (daemon/ipam.py), `ok` or `error`."""
        self.ipam_rounds.labels(task, result).inc()

    def ipam_freed(self, count: int) -> None:
        """The reconciler freed `count` claims."""
        self.ipam_freed_total.inc(count)

    def render(self) -> tuple[bytes, str]:
        """(exposition text, its content type): what GET /metrics answers."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _CacheCollector:
    """The multiplane_cache_* gauges and relist counter, read from the provider at each scrape."""

    def __init__(self, cache_state: Callable[[], dict[str, dict]] | None) -> None:
        self.cache_state = cache_state

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily, CounterMetricFamily]:
        return (
            GaugeMetricFamily(
                "multiplane_cache_synced",
                "Whether the cache's first list is complete (1) or not (0).",
                labels=["cache"],
            ),
            GaugeMetricFamily(
                "multiplane_cache_age_seconds",
                "Seconds since the cache last heard from the API server (list, event or bookmark); +Inf: never.",
                labels=["cache"],
            ),
            GaugeMetricFamily("multiplane_cache_objects", "Objects in the cache.", labels=["cache"]),
            CounterMetricFamily(
                "multiplane_cache_relists",
                "Lists of the cache after its first (410 Gone, reconnects).",
                labels=["cache"],
            ),
        )

    def describe(self) -> Iterator[Metric]:
        """The families without samples, so the registry can refuse a clashing name."""
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        synced, age, objects, relists = self._families()
        try:
            state = self.cache_state() if self.cache_state is not None else {}
            now = time.monotonic()
            for name in sorted(state):
                cache = state[name]
                last = cache.get("last_event")
                synced.add_metric([name], 1.0 if cache.get("synced") else 0.0)
                age.add_metric([name], math.inf if last is None else max(now - last, 0.0))
                objects.add_metric([name], float(cache.get("objects", 0)))
                relists.add_metric([name], float(cache.get("relists", 0)))
        except Exception:  # noqa: BLE001 - a bug in the provider must not take the request metrics down with it
            logs.get().bug("metrics: reading the caches' state")
            synced, age, objects, relists = self._families()
        yield from (synced, age, objects, relists)


# ---- the HTTP server ----------------------------------------------------------------------------

_PORT = re.compile(r"[0-9]{1,5}")


def parse_address(address: str) -> tuple[socket.AddressFamily, str, int]:
    """(family, host, port) of a `host:port` listen address; ValueError, naming the address, when malformed.

    The host is an IPv4 literal, an IPv6 literal in brackets, or nothing (every interface:
    host "" with AF_INET6, which StatusServer binds dual-stack, or IPv4 only without IPv6).
    """
    if not isinstance(address, str):
        raise ValueError(f"listen address must be a string host:port, not {type(address).__name__}")
    shown = f"listen address {address!r}"
    host, sep, port = address.rpartition(":")
    if not sep:
        raise ValueError(f"{shown} has no port: use host:port, [ipv6]:port or :port")
    if not _PORT.fullmatch(port) or int(port) > 65535:
        raise ValueError(f"{shown}: the port must be a number 0..65535, not {port!r}")
    if host == "":
        return socket.AF_INET6, "", int(port)
    if host.startswith("[") and host.endswith("]"):
        try:
            ip6 = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{shown}: {host[1:-1]!r} in brackets is not an IPv6 address") from None
        return socket.AF_INET6, str(ip6), int(port)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{shown}: the host must be an IP address (such as 127.0.0.1), not {host!r}") from None
    if ip.version == 6:
        raise ValueError(f"{shown}: an IPv6 address goes in brackets, as in [::1]:9091")
    return socket.AF_INET, str(ip), int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    log: logs.Logger
    metrics: Metrics
    health: Callable[[], tuple[bool, dict]]

    def server_bind(self) -> None:
        # HTTPServer's own server_bind looks the host's name up in DNS (getfqdn): slow or
        # stuck on a node whose resolver is not up yet, and we never use the name.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Reached for what escapes the handler: a client gone mid-answer (nothing to say),
        # anything else is a bug. socketserver's default prints to stderr.
        if isinstance(sys.exc_info()[1], OSError):
            return
        with logs.using(self.log):
            self.log.bug(f"status server: request from {client_address}")


class _Server4(_Server):
    address_family = socket.AF_INET


class _Server6(_Server):
    address_family = socket.AF_INET6


class _DualStackServer(_Server6):
    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # a client that sends nothing holds a thread this long at most
    server_version = "multiplane"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log: Prometheus and the kubelet ask every few seconds

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        with logs.using(self.server.log):
            status, ctype, data = self._route(urllib.parse.urlsplit(self.path).path)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _route(self, path: str) -> tuple[int, str, bytes]:
        try:
            if path == "/metrics":
                data, ctype = self.server.metrics.render()
                return 200, ctype, data
            if path == "/healthz":
                healthy, details = self.server.health()
                text = json.dumps(details, sort_keys=True, default=str) + "\n"
                return (200 if healthy else 503), "application/json", text.encode()
            return 404, "text/plain; charset=utf-8", b"not found: try /healthz or /metrics\n"
        except Exception as exc:  # noqa: BLE001 - a bug behind one endpoint answers 500; the server keeps serving
            self.server.log.bug(f"status server: GET {path}")
            text = json.dumps({"error": f"{exc.__class__.__name__}: {exc}"}) + "\n"
            return 500, "application/json", text.encode()


class StatusServer:
    """/healthz and /metrics on `address` (see the module docstring), served by threads of its own.

    The address is checked here (ValueError); it is bound by `start()` (OSError when taken).
    """

    def __init__(self, address: str, metrics: Metrics, health: Callable[[], tuple[bool, dict]]) -> None:
        self._family, self._host, self._port = parse_address(address)
        self._configured = address
        self.metrics = metrics
        self.health = health
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """The bound `host:port` once started (the real port when 0 was asked), else the configured address."""
        if self._server is None:
            return self._configured
        host, port = self._server.socket.getsockname()[:2]
        return f"[{host}]:{port}" if self._server.address_family == socket.AF_INET6 else f"{host}:{port}"

    def _bind(self) -> _Server:
        if self._family == socket.AF_INET:
            return _Server4((self._host, self._port), _Handler)
        if self._host:
            return _Server6((self._host, self._port), _Handler)
        try:
            return _DualStackServer(("::", self._port), _Handler)
        except OSError as exc:
            if exc.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                raise
            return _Server4(("0.0.0.0", self._port), _Handler)  # a node without IPv6

    def start(self) -> None:
        """Bind and serve in a daemon thread; RuntimeError if already serving."""
        if self._server is not None:
            raise RuntimeError(f"status server already serving on {self.address}")
        server = self._bind()
        server.log = logs.get()
        server.metrics = self.metrics
        server.health = self.health
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="multiplane-status", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket (the port is free when this returns); idempotent."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()
        self._server = self._thread = None
