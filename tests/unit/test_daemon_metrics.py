"""The daemon's metrics and its /healthz + /metrics server, over real HTTP on loopback.

Every scrape goes through a StatusServer on 127.0.0.1 port 0 and is parsed with
prometheus_client's own parser, so a test sees what Prometheus would.
"""

from __future__ import annotations

import http.client
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from multiplane import logs
from multiplane.daemon.metrics import BUCKETS, Metrics, StatusServer, api_error_kind, parse_address

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def get(address: str, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request to a StatusServer."""
    host, port = split(address)
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def scrape(address: str) -> Samples:
    """Every sample of GET /metrics: (name, sorted labels) → value."""
    status, headers, body = get(address, "/metrics")
    assert status == 200, body
    assert headers["content-type"] == prometheus_client.CONTENT_TYPE_LATEST
    out: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def names(samples: Samples) -> set[str]:
    return {name for name, _labels in samples}


@pytest.fixture
def serve() -> Iterator[Callable[..., StatusServer]]:
    """Start StatusServers on 127.0.0.1:0 (or a given address); all are stopped at the end."""
    started: list[StatusServer] = []

    def start(
        metrics: Metrics | None = None,
        health: Callable[[], tuple[bool, dict]] = lambda: (True, {"status": "ok"}),
        address: str = "127.0.0.1:0",
    ) -> StatusServer:
        server = StatusServer(address, metrics or Metrics(), health)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# ---- request metrics --------------------------------------------------------------------------


def test_requests_counted_by_command_and_result(serve: Callable[..., StatusServer]) -> None:
    """ok and error run (histogram, in flight); rejected is only counted; every command x result starts at 0."""
    metrics = Metrics()
    server = serve(metrics)
    before = scrape(server.address)
    assert value(before, "multiplane_requests_total", command="CHECK", result="rejected") == 0
    assert ("multiplane_request_duration_seconds_count", (("command", "ADD"),)) not in before

    for seconds in (0.003, 0.04, 0.7):
        metrics.request_started()
        metrics.request_finished("ADD", "ok", seconds)
    metrics.request_started()
    metrics.request_finished("DEL", "error", 2.0)
    metrics.request_finished("ADD", "rejected", 60.0)
    metrics.request_finished("ADD", "rejected", 61.0)

    after = scrape(server.address)
    assert value(after, "multiplane_requests_total", command="ADD", result="ok") == 3
    assert value(after, "multiplane_requests_total", command="ADD", result="rejected") == 2
    assert value(after, "multiplane_requests_total", command="DEL", result="error") == 1
    assert value(after, "multiplane_requests_total", command="DEL", result="ok") == 0
    assert value(after, "multiplane_request_duration_seconds_count", command="ADD") == 3
    assert value(after, "multiplane_request_duration_seconds_sum", command="ADD") == pytest.approx(0.743)
    assert value(after, "multiplane_request_duration_seconds_bucket", command="ADD", le="0.005") == 1
    assert value(after, "multiplane_request_duration_seconds_bucket", command="ADD", le="0.05") == 2
    assert value(after, "multiplane_request_duration_seconds_bucket", command="ADD", le="0.5") == 2
    assert value(after, "multiplane_request_duration_seconds_bucket", command="ADD", le="1.0") == 3
    assert value(after, "multiplane_request_duration_seconds_bucket", command="ADD", le="60.0") == 3
    assert value(after, "multiplane_request_duration_seconds_count", command="DEL") == 1
    assert value(after, "multiplane_requests_in_flight") == 0


def test_histogram_buckets_span_5ms_to_60s(serve: Callable[..., StatusServer]) -> None:
    """The exposition's buckets are BUCKETS, 5 ms to 60 s, then +Inf."""
    metrics = Metrics()
    metrics.request_started()
    metrics.request_finished("VERSION", "ok", 0.001)
    samples = scrape(serve(metrics).address)
    les = [
        float(dict(labels)["le"])
        for name, labels in samples
        if name == "multiplane_request_duration_seconds_bucket" and dict(labels)["command"] == "VERSION"
    ]
    assert sorted(les) == [*BUCKETS, math.inf]
    assert BUCKETS[0] == 0.005 and BUCKETS[-1] == 60.0


def test_unknown_command_is_other_and_unknown_result_is_refused() -> None:
    """A client's odd CNI_COMMAND cannot add label values; a result outside ok/error/rejected is a bug."""
    metrics = Metrics()
    metrics.request_finished("FROBNICATE", "rejected", 0)
    metrics.request_finished("", "rejected", 0)
    assert value(_parse(metrics.render()[0]), "multiplane_requests_total", command="other", result="rejected") == 2
    with pytest.raises(ValueError, match="ok, error, rejected"):
        metrics.request_finished("ADD", "timeout", 1.0)
    text = metrics.render()[0].decode()
    assert "FROBNICATE" not in text


def test_in_flight_and_queued_gauges(serve: Callable[..., StatusServer]) -> None:
    """The gauges follow started/finished and the queue's deltas, both ways."""
    metrics = Metrics()
    server = serve(metrics)
    metrics.request_queued(3)
    metrics.request_queued(-1)
    metrics.request_started()
    metrics.request_started()
    samples = scrape(server.address)
    assert value(samples, "multiplane_requests_queued") == 2
    assert value(samples, "multiplane_requests_in_flight") == 2
    metrics.request_queued(-2)
    metrics.request_finished("ADD", "ok", 0.1)
    samples = scrape(server.address)
    assert value(samples, "multiplane_requests_queued") == 0
    assert value(samples, "multiplane_requests_in_flight") == 1


# ---- caches and the API ------------------------------------------------------------------------


def test_cache_collector_reads_the_provider_at_scrape_time(serve: Callable[..., StatusServer]) -> None:
    """Each scrape shows the provider's state of that moment: sync, age, objects, relists; never heard = +Inf."""
    calls = []
    state: dict[str, dict[str, Any]] = {
        "nads": {"synced": False, "last_event": None, "objects": 0, "relists": 0, "last_error": "connecting"},
    }

    def provider() -> dict[str, dict[str, Any]]:
        calls.append(1)
        return state

    metrics = Metrics(cache_state=provider)
    assert calls == []  # nothing is read before a scrape
    server = serve(metrics)

    first = scrape(server.address)
    assert value(first, "multiplane_cache_synced", cache="nads") == 0
    assert value(first, "multiplane_cache_age_seconds", cache="nads") == math.inf
    assert value(first, "multiplane_cache_objects", cache="nads") == 0

    state["nads"] = {"synced": True, "last_event": time.monotonic() - 30, "objects": 7, "relists": 2, "last_error": ""}
    state["pods"] = {"synced": True, "last_event": time.monotonic(), "objects": 110, "relists": 0, "last_error": ""}
    second = scrape(server.address)
    assert value(second, "multiplane_cache_synced", cache="nads") == 1
    assert 30 <= value(second, "multiplane_cache_age_seconds", cache="nads") < 40
    assert 0 <= value(second, "multiplane_cache_age_seconds", cache="pods") < 10
    assert value(second, "multiplane_cache_objects", cache="nads") == 7
    assert value(second, "multiplane_cache_objects", cache="pods") == 110
    assert value(second, "multiplane_cache_relists_total", cache="nads") == 2

    del state["pods"]
    third = scrape(server.address)
    assert ("multiplane_cache_objects", (("cache", "pods"),)) not in third
    assert len(calls) == 3


def test_cache_provider_failure_keeps_the_scrape(serve: Callable[..., StatusServer], tmp_path: Path) -> None:
    """A provider that raises costs the cache samples of that scrape only; its traceback is logged, stderr stays quiet."""
    broken = [True]

    def provider() -> dict[str, dict[str, Any]]:
        if broken[0]:
            raise KeyError("mp-boom")
        return {"nads": {"synced": True, "last_event": time.monotonic(), "objects": 1, "relists": 0, "last_error": ""}}

    metrics = Metrics(cache_state=provider)
    log = tmp_path / "mp-daemon.log"
    with logs.using(logs.Logger("error", str(log), to_stderr=False)):
        server = serve(metrics)
    samples = scrape(server.address)
    assert "multiplane_requests_total" in names(samples)
    assert not {n for n in names(samples) if n.startswith("multiplane_cache_") and "lookups" not in n}
    assert "KeyError: 'mp-boom'" in log.read_text()
    broken[0] = False
    assert value(scrape(server.address), "multiplane_cache_synced", cache="nads") == 1


def test_no_provider_means_no_cache_samples(serve: Callable[..., StatusServer]) -> None:
    """Without a provider the cache families are declared but empty."""
    text = get(serve(Metrics()).address, "/metrics")[2].decode()
    assert "# TYPE multiplane_cache_synced gauge" in text
    assert "multiplane_cache_synced{" not in text


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (0, "unreachable"),
        (401, "unauthorized"),
        (403, "forbidden"),
        (404, "not_found"),
        (409, "conflict"),
        (410, "gone"),
        (429, "throttled"),
        (500, "server_error"),
        (503, "server_error"),
        (504, "server_error"),
        (599, "server_error"),
        (400, "other"),
        (422, "other"),
        (302, "other"),
        (600, "other"),
        (200, "other"),
    ],
)
def test_api_error_kinds(status: int, kind: str) -> None:
    """An HTTP status maps to its kind, and api_error counts exactly that kind."""
    assert api_error_kind(status) == kind
    metrics = Metrics()
    metrics.api_error(status)
    samples = {
        dict(labels)["kind"]: v
        for (name, labels), v in _parse(metrics.render()[0]).items()
        if name == "multiplane_api_errors_total"
    }
    assert samples == {k: (1.0 if k == kind else 0.0) for k in samples}
    assert len(samples) == 9


def test_cache_lookups_by_outcome() -> None:
    """Hits and misses are counted per cache."""
    metrics = Metrics()
    for hit in (True, True, False):
        metrics.cache_lookup("nads", hit)
    metrics.cache_lookup("pods", False)
    samples = _parse(metrics.render()[0])
    assert value(samples, "multiplane_cache_lookups_total", cache="nads", outcome="hit") == 2
    assert value(samples, "multiplane_cache_lookups_total", cache="nads", outcome="miss") == 1
    assert value(samples, "multiplane_cache_lookups_total", cache="pods", outcome="miss") == 1


def test_each_metrics_has_its_own_registry() -> None:
    """Two Metrics do not share counts, and prometheus_client's global registry holds none of ours."""
    one, two = Metrics(), Metrics()
    one.api_error(410)
    assert value(_parse(one.render()[0]), "multiplane_api_errors_total", kind="gone") == 1
    assert value(_parse(two.render()[0]), "multiplane_api_errors_total", kind="gone") == 0
    assert b"multiplane_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY)
    assert "process_resident_memory_bytes" in names(_parse(one.render()[0]))


def _parse(text: bytes) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


# ---- the HTTP server ---------------------------------------------------------------------------


def test_healthz_follows_health(serve: Callable[..., StatusServer]) -> None:
    """200 with the JSON of health() while healthy, 503 with it when not, switching back and forth."""
    healthy = [True]

    def health() -> tuple[bool, dict]:
        return healthy[0], {"caches": {"nads": healthy[0]}, "socket": "/run/mp.sock"}

    server = serve(health=health)
    status, headers, body = get(server.address, "/healthz")
    assert (status, json.loads(body)) == (200, {"caches": {"nads": True}, "socket": "/run/mp.sock"})
    assert headers["content-type"] == "application/json"
    healthy[0] = False
    status, _headers, body = get(server.address, "/healthz")
    assert (status, json.loads(body)) == (503, {"caches": {"nads": False}, "socket": "/run/mp.sock"})
    healthy[0] = True
    assert get(server.address, "/healthz")[0] == 200


def test_head_answers_headers_without_a_body(serve: Callable[..., StatusServer]) -> None:
    """HEAD of either endpoint: the GET's status and Content-Length, no body."""
    server = serve(health=lambda: (False, {"why": "not synced"}))
    for path, status in (("/healthz", 503), ("/nope", 404)):
        got, headers, body = get(server.address, path, "HEAD")
        assert (got, body) == (status, b"")
        assert int(headers["content-length"]) == len(get(server.address, path)[2]) > 0
    got, headers, body = get(server.address, "/metrics", "HEAD")  # process_* change between two scrapes
    assert (got, body, headers["content-type"]) == (200, b"", prometheus_client.CONTENT_TYPE_LATEST)
    assert int(headers["content-length"]) > 1000


def test_other_paths_404_and_other_methods_501(serve: Callable[..., StatusServer]) -> None:
    """Only /healthz and /metrics exist (a query string is ignored); POST is not served."""
    server = serve()
    assert get(server.address, "/")[0] == 404
    assert get(server.address, "/metrics/x")[0] == 404
    assert get(server.address, "/healthz?verbose=1")[0] == 200
    assert get(server.address, "/metrics", "POST")[0] == 501


def test_a_failing_endpoint_answers_500_and_the_server_lives_on(
    serve: Callable[..., StatusServer], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """health() raising answers 500 with the error, logs the traceback, writes nothing to stderr; /metrics still works."""

    def health() -> tuple[bool, dict]:
        raise RuntimeError("mp-health-bug")

    log = tmp_path / "mp-daemon.log"
    with logs.using(logs.Logger("error", str(log), to_stderr=False)):
        server = serve(health=health)
    for _ in range(3):
        status, _headers, body = get(server.address, "/healthz")
        assert status == 500
        assert json.loads(body) == {"error": "RuntimeError: mp-health-bug"}
    assert get(server.address, "/metrics")[0] == 200
    assert log.read_text().count("RuntimeError: mp-health-bug") >= 3
    assert capfd.readouterr().err == ""


def test_requests_are_not_logged(serve: Callable[..., StatusServer], capfd: pytest.CaptureFixture[str]) -> None:
    """No access log on stderr, not even for 404s, 501s or garbage."""
    server = serve()
    get(server.address, "/healthz")
    get(server.address, "/missing")
    get(server.address, "/", "DELETE")
    with socket.create_connection(split(server.address), timeout=5) as sock:
        sock.sendall(b"\x00\x01 garbage\r\n\r\n")
        sock.recv(1024)
    assert capfd.readouterr().err == ""


def test_a_silent_client_does_not_block_others(serve: Callable[..., StatusServer]) -> None:
    """A connection that never sends a request holds one thread, not the server."""
    server = serve()
    with socket.create_connection(split(server.address), timeout=5):
        started = time.monotonic()
        assert get(server.address, "/healthz")[0] == 200
        assert time.monotonic() - started < 2


def test_concurrent_scrapes(serve: Callable[..., StatusServer]) -> None:
    """Scrapes from several threads while requests are counted all succeed."""
    metrics = Metrics(cache_state=lambda: {"nads": {"synced": True, "last_event": time.monotonic()}})
    server = serve(metrics)
    errors: list[BaseException] = []

    def scraper() -> None:
        try:
            for _ in range(10):
                scrape(server.address)
        except BaseException as exc:  # noqa: BLE001 - collected and reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=scraper) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(200):
        metrics.request_started()
        metrics.request_finished("ADD", "ok", 0.01)
    for t in threads:
        t.join()
    assert errors == []
    assert value(scrape(server.address), "multiplane_requests_total", command="ADD", result="ok") == 200


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("", "no port"),
        ("9091", "no port"),
        ("127.0.0.1", "no port"),
        ("127.0.0.1:", "port must be a number"),
        ("127.0.0.1:abc", "port must be a number"),
        ("127.0.0.1:-1", "port must be a number"),
        ("127.0.0.1: 80", "port must be a number"),
        ("127.0.0.1:65536", "port must be a number"),
        ("127.0.0.1:123456", "port must be a number"),
        ("::1:9091", "in brackets"),
        ("[::1]", "port must be a number"),
        ("[127.0.0.1]:9091", "is not an IPv6 address"),
        ("[nothere]:9091", "is not an IPv6 address"),
        ("300.1.1.1:9091", "must be an IP address"),
        ("localhost:9091", "must be an IP address"),
        ("http://127.0.0.1:9091", "must be an IP address"),
    ],
)
def test_malformed_addresses_are_refused_at_construction(address: str, message: str) -> None:
    """A bad metricsAddress is a ValueError naming it, before anything is bound."""
    with pytest.raises(ValueError, match=message) as info:
        StatusServer(address, Metrics(), lambda: (True, {}))
    assert repr(address) in str(info.value)


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("127.0.0.1:9091", (socket.AF_INET, "127.0.0.1", 9091)),
        ("0.0.0.0:9091", (socket.AF_INET, "0.0.0.0", 9091)),
        ("[::1]:9091", (socket.AF_INET6, "::1", 9091)),
        ("[::]:0", (socket.AF_INET6, "::", 0)),
        (":9091", (socket.AF_INET6, "", 9091)),
        ("10.0.0.1:65535", (socket.AF_INET, "10.0.0.1", 65535)),
    ],
)
def test_address_forms(address: str, parsed: tuple[socket.AddressFamily, str, int]) -> None:
    """IPv4, bracketed IPv6 and the all-interfaces form parse to (family, host, port)."""
    assert parse_address(address) == parsed


def test_ipv6_loopback_and_all_interfaces(serve: Callable[..., StatusServer]) -> None:
    """[::1]:0 serves on ::1; :0 serves on both 127.0.0.1 and ::1 (dual stack)."""
    six = serve(address="[::1]:0")
    assert six.address.startswith("[::1]:")
    assert get(six.address, "/healthz")[0] == 200
    both = serve(address=":0")
    port = split(both.address)[1]
    assert get(f"127.0.0.1:{port}", "/healthz")[0] == 200
    assert get(f"[::1]:{port}", "/healthz")[0] == 200


def test_address_is_the_bound_one() -> None:
    """Before start: the configured address; once started: the real port; after stop: the configured one again."""
    server = StatusServer("127.0.0.1:0", Metrics(), lambda: (True, {}))
    assert server.address == "127.0.0.1:0"
    server.start()
    try:
        host, port = split(server.address)
        assert host == "127.0.0.1" and port > 0
        with pytest.raises(RuntimeError, match="already serving"):
            server.start()
    finally:
        server.stop()
    assert server.address == "127.0.0.1:0"
    server.stop()  # twice is fine


def test_stop_frees_the_port() -> None:
    """After stop() nothing answers on the port and another server can listen on it at once."""
    metrics = Metrics()
    first = StatusServer("127.0.0.1:0", metrics, lambda: (True, {}))
    first.start()
    address = first.address
    assert get(address, "/metrics")[0] == 200
    first.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(split(address), timeout=5).close()
    second = StatusServer(address, metrics, lambda: (True, {"again": True}))
    second.start()
    try:
        assert second.address == address
        assert json.loads(get(address, "/healthz")[2]) == {"again": True}
    finally:
        second.stop()


def test_a_taken_port_fails_at_start() -> None:
    """Binding happens in start(): a port in use is an OSError there, not at construction."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        address = "127.0.0.1:%d" % holder.getsockname()[1]
        server = StatusServer(address, Metrics(), lambda: (True, {}))
        with pytest.raises(OSError):
            server.start()
        server.stop()
