"""multiplane.daemon.caches against the in-repo API server (tests/k8s_server.py) over real HTTP(S).

The caches list and watch; the server's request log shows which lookups were answered from
a cache (no GET reached the server) and which fell back to a live GET.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from multiplane.daemon.caches import NAD_CACHE, POD_CACHE, CachedSource, Caches
from multiplane.k8s.client import KubeClient, NotFound, load_kubeconfig
from tests.k8s_server import K8sServer, Request

NODE = "mp-node"  # the test server's default node for add_pod
OTHER = "mp-other"
NS = "mp-ns"
LAN = {"cniVersion": "1.0.0", "type": "macvlan", "master": "eth0"}


def eventually(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what or check}")
        time.sleep(0.02)


def _cache_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("mp-cache-")]


@pytest.fixture(params=["http", "https"])
def api(request: pytest.FixtureRequest) -> Iterator[K8sServer]:
    server = K8sServer(tls=request.param == "https")
    server.bookmark_interval = 0.3
    try:
        yield server
    finally:
        server.stop()
        assert server.errors == [], server.errors


class Harness:
    """Caches against one server, with a client factory that counts the clients it made."""

    def __init__(self, api: K8sServer, tmp_path: Path, **kw: Any) -> None:
        self.api = api
        self.kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
        self.made = 0
        self.heard: list[int] = []
        kw.setdefault("on_api_error", self.heard.append)
        self.caches = Caches(self.client, NODE, **kw)

    def client(self) -> KubeClient:
        self.made += 1
        return KubeClient(load_kubeconfig(self.kubeconfig), timeout=2.0, retry_budget=0.3)

    def state(self, cache: str = POD_CACHE) -> dict[str, Any]:
        return self.caches.state()[cache]

    def watches(self, path: str) -> list[Request]:
        return [r for r in self.api.requests if r.path == path and "watch=true" in r.query]

    def lists(self, path: str) -> list[Request]:
        return [r for r in self.api.requests if r.path == path and "watch=true" not in r.query]


@pytest.fixture
def harness(api: K8sServer, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(api, tmp_path)
    try:
        yield h
    finally:
        assert h.caches.stop(timeout=5.0)
        assert _cache_threads() == []


def _names(h: Harness) -> set[str]:
    return {name for (_ns, name) in h.caches._caches[POD_CACHE].objects}


# ---- sync and events --------------------------------------------------------------------------


def test_initial_sync_holds_this_nodes_pods_and_every_nad(harness: Harness) -> None:
    """Before the first list nothing is answered; after it, this node's pods and all NADs are, nothing else."""
    api, caches = harness.api, harness.caches
    mine = api.add_pod(NS, "mp-mine", {"a": "1"})
    api.add_pod(NS, "mp-theirs", node=OTHER)
    api.add_nad(NS, "mp-lan", LAN)
    api.add_nad("mp-ns2", "mp-wan", None)
    assert caches.pod(NS, "mp-mine") is None and caches.state()[POD_CACHE]["synced"] is False
    assert caches.state()[POD_CACHE]["last_event"] is None
    caches.start()
    assert caches.wait_synced(10.0)
    assert caches.pod(NS, "mp-mine") == mine
    assert caches.pod(NS, "mp-theirs") is None
    assert caches.nad(NS, "mp-lan") == api.nad(NS, "mp-lan")
    assert caches.nad("mp-ns2", "mp-wan") == api.nad("mp-ns2", "mp-wan")
    state = caches.state()
    assert set(state) == {POD_CACHE, NAD_CACHE}
    assert state[POD_CACHE]["objects"] == 1 and state[NAD_CACHE]["objects"] == 2
    for one in state.values():
        assert one["synced"] is True and one["relists"] == 0 and one["last_error"] == ""
        assert int(one["resource_version"]) >= int(mine["metadata"]["resourceVersion"])
        assert one["last_event"] is not None and one["last_event"] <= time.monotonic()
    (pod_list,) = harness.lists("/api/v1/pods")
    assert "fieldSelector=spec.nodeName%3Dmp-node" in pod_list.query
    assert harness.made == 2  # a client per thread


def test_added_modified_deleted_reach_the_cache(harness: Harness) -> None:
    """Changes after the sync arrive by watch: new pods and NADs, new annotations and configs, deletions."""
    api, caches = harness.api, harness.caches
    api.add_nad(NS, "mp-lan", LAN)
    caches.start()
    assert caches.wait_synced(10.0)
    api.add_pod(NS, "mp-web", {"k": "1"})
    api.add_pod(NS, "mp-far", node=OTHER)
    eventually(lambda: caches.pod(NS, "mp-web"), what="ADDED pod")
    api.update_pod(NS, "mp-web", annotations={"k": "2"})
    eventually(lambda: (caches.pod(NS, "mp-web") or {}).get("metadata", {}).get("annotations") == {"k": "2"})
    api.update_nad(NS, "mp-lan", {**LAN, "mtu": 1400})
    eventually(lambda: '"mtu": 1400' in (caches.nad(NS, "mp-lan") or {}).get("spec", {}).get("config", ""))
    api.add_nad(NS, "mp-new", None)
    eventually(lambda: caches.nad(NS, "mp-new"), what="ADDED NAD")
    api.delete_pod(NS, "mp-web")
    api.delete_nad(NS, "mp-lan")
    eventually(lambda: caches.pod(NS, "mp-web") is None and caches.nad(NS, "mp-lan") is None, what="DELETED")
    assert caches.pod(NS, "mp-far") is None
    assert harness.state()["objects"] == 0 and harness.state(NAD_CACHE)["objects"] == 1
    assert caches.pod(NS, "mp-web") is None
    assert harness.state()["relists"] == 0 and len(harness.lists("/api/v1/pods")) == 1


def test_bookmarks_move_the_resource_version_on(harness: Harness) -> None:
    """A change on another node never reaches this node's watch, but the bookmarks carry its resourceVersion."""
    api, caches = harness.api, harness.caches
    caches.start()
    assert caches.wait_synced(10.0)
    before = harness.state()["last_event"]
    far = api.add_pod(NS, "mp-far", node=OTHER)
    rv = int(far["metadata"]["resourceVersion"])
    eventually(lambda: int(harness.state()["resource_version"]) >= rv, what="a bookmark")
    assert harness.state()["last_event"] > before and harness.state()["objects"] == 0


def test_a_pod_with_another_uid_is_a_miss(harness: Harness) -> None:
    """The cached pod is answered only for its own uid (or none asked); a recreated pod's old uid gets None."""
    api, caches = harness.api, harness.caches
    api.add_pod(NS, "mp-web", uid="mp-uid-1")
    caches.start()
    assert caches.wait_synced(10.0)
    assert caches.pod(NS, "mp-web", "mp-uid-1")["metadata"]["uid"] == "mp-uid-1"
    assert caches.pod(NS, "mp-web")["metadata"]["uid"] == "mp-uid-1"
    assert caches.pod(NS, "mp-web", "mp-uid-2") is None
    api.add_pod(NS, "mp-web", uid="mp-uid-2")  # replaced: DELETED then ADDED
    eventually(lambda: caches.pod(NS, "mp-web", "mp-uid-2"), what="the new pod")
    assert caches.pod(NS, "mp-web", "mp-uid-1") is None


def test_lookups_return_the_callers_own_copy(harness: Harness) -> None:
    """Changing a returned object changes nothing in the cache."""
    api, caches = harness.api, harness.caches
    api.add_pod(NS, "mp-web", {"k": "1"})
    api.add_nad(NS, "mp-lan", LAN)
    caches.start()
    assert caches.wait_synced(10.0)
    pod, nad = caches.pod(NS, "mp-web"), caches.nad(NS, "mp-lan")
    pod["metadata"]["annotations"]["k"] = "changed"
    nad["spec"]["config"] = "changed"
    assert caches.pod(NS, "mp-web")["metadata"]["annotations"] == {"k": "1"}
    assert caches.nad(NS, "mp-lan") == api.nad(NS, "mp-lan")


# ---- failures ---------------------------------------------------------------------------------


def test_unsynced_pods_cache_answers_none_and_reports_the_error(api: K8sServer, tmp_path: Path) -> None:
    """Listing pods forbidden (403): that cache never syncs, answers None and records the error; the NADs one works."""
    api.access = {("get", "pods", ""), ("get", "network-attachment-definitions", "")}  # no list/watch pods
    api.add_pod(NS, "mp-web")
    api.add_nad(NS, "mp-lan", LAN)
    h = Harness(api, tmp_path)
    h.caches.start()
    try:
        eventually(lambda: h.caches.nad(NS, "mp-lan"), what="the NAD cache")
        assert h.caches.wait_synced(0.5) is False
        eventually(lambda: h.state()["errors"] >= 2, what="failed lists, retried")
        state = h.state()
        assert state["synced"] is False and state["objects"] == 0 and state["last_event"] is None
        assert "403" in state["last_error"] and "forbidden" in state["last_error"]
        assert h.caches.pod(NS, "mp-web") is None
        assert set(h.heard) == {403}
        # Backing off: after the first failures, the retries slow down (0.5 s, then 1 s, ...).
        listed = [r.time for r in h.lists("/api/v1/pods")]
        assert all(b - a >= 0.45 for a, b in zip(listed, listed[1:], strict=False)), listed
    finally:
        assert h.caches.stop(timeout=5.0)


def test_410_on_a_watch_relists_and_objects_deleted_meanwhile_vanish(harness: Harness) -> None:
    """A watch from a version the server no longer has gets 410; the relist drops deleted pods and adds new ones."""
    api, caches = harness.api, harness.caches
    api.add_pod(NS, "mp-a")
    api.add_pod(NS, "mp-b")
    caches.start()
    assert caches.wait_synced(10.0)
    held, release = threading.Event(), threading.Event()

    def hold_next_pods_watch(req: Request) -> None:
        if req.path == "/api/v1/pods" and "watch=true" in req.query and not held.is_set():
            held.set()
            release.wait(10.0)

    api.on_request = hold_next_pods_watch
    try:
        api.drop_watches()  # the cache watches again from its last version; that request waits here
        assert held.wait(10.0)
        api.delete_pod(NS, "mp-a")
        api.add_pod(NS, "mp-c")
        api.expire_history()
    finally:
        release.set()
    eventually(lambda: _names(harness) == {"mp-b", "mp-c"}, what="the relist")
    state = harness.state()
    assert state["relists"] == 1 and state["last_error"] == ""  # a 410 is routine, not an error
    watched = [r for r in harness.watches("/api/v1/pods")]
    assert len(watched) >= 2 and "resourceVersion=" in watched[1].query
    assert caches.pod(NS, "mp-a") is None and caches.pod(NS, "mp-c") is not None
    assert 410 in harness.heard


def test_dropped_watch_connections_resume_from_the_last_version(harness: Harness) -> None:
    """Cut watch connections (no relist): the caches watch again from where they were and see later changes."""
    api, caches = harness.api, harness.caches
    api.add_pod(NS, "mp-a")
    caches.start()
    assert caches.wait_synced(10.0)
    eventually(lambda: api.watches() == 2, what="both watches open")
    seen = harness.state()["resource_version"]
    api.drop_watches()
    api.add_pod(NS, "mp-b")
    api.add_nad(NS, "mp-lan", LAN)
    eventually(lambda: caches.pod(NS, "mp-b") and caches.nad(NS, "mp-lan"), what="changes after the drop")
    state = caches.state()
    assert state[POD_CACHE]["relists"] == 0 and state[NAD_CACHE]["relists"] == 0
    assert len(harness.lists("/api/v1/pods")) == 1
    rewatch = harness.watches("/api/v1/pods")[1]
    assert int(rewatch.query.split("resourceVersion=")[1].split("&")[0]) >= int(seen)


def test_api_down_then_back_serves_the_last_objects_then_catches_up(harness: Harness) -> None:
    """While the API server is down the last known objects are served and the error is recorded; once it is back
    the caches list again: pods deleted meanwhile vanish, new ones and changed NADs appear."""
    api, caches = harness.api, harness.caches
    api.add_pod(NS, "mp-a")
    api.add_pod(NS, "mp-b")
    api.add_nad(NS, "mp-lan", LAN)
    caches.start()
    assert caches.wait_synced(10.0)
    api.stop()
    api.delete_pod(NS, "mp-a")
    api.add_pod(NS, "mp-c")
    api.update_nad(NS, "mp-lan", {**LAN, "mtu": 1400})
    eventually(lambda: "cannot reach" in harness.state()["last_error"], what="the outage recorded")
    eventually(lambda: "cannot reach" in harness.state(NAD_CACHE)["last_error"], what="the outage recorded")
    assert harness.state()["synced"] is True
    assert caches.pod(NS, "mp-a") is not None and caches.pod(NS, "mp-c") is None  # the last known objects
    assert 0 in harness.heard
    time.sleep(1.0)  # a few failed attempts: the back-off grows
    api.start()
    eventually(lambda: _names(harness) == {"mp-b", "mp-c"}, what="the pods after the outage")
    eventually(lambda: "1400" in caches.nad(NS, "mp-lan")["spec"]["config"], what="the NAD after the outage")
    eventually(lambda: harness.state(NAD_CACHE)["last_error"] == "", what="the NAD cache recovered")
    for one in caches.state().values():
        assert one["relists"] >= 1 and one["last_error"] == "" and one["errors"] >= 1
    api.add_pod(NS, "mp-d")  # and the watches run again
    eventually(lambda: caches.pod(NS, "mp-d"), what="a change after the outage")


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_stop_ends_blocked_watches_within_its_timeout(tls: bool, tmp_path: Path) -> None:
    """Watches blocked reading (no events, no bookmarks, 300 s timeout) end when stop() aborts their clients."""
    with K8sServer(tls=tls) as api:
        api.bookmark_interval = 1000.0
        h = Harness(api, tmp_path)
        h.caches.start()
        assert h.caches.wait_synced(10.0)
        eventually(lambda: api.watches() == 2, what="both watches open")
        time.sleep(0.2)  # both threads are in a read by now
        start = time.monotonic()
        assert h.caches.stop(timeout=3.0) is True
        assert time.monotonic() - start < 2.0
        assert _cache_threads() == []
        assert h.heard == []  # stopping is no API error
        assert h.caches.pod(NS, "mp-x") is None and h.state()["synced"] is True  # still readable


def test_stop_while_the_api_is_down_is_prompt(api: K8sServer, tmp_path: Path) -> None:
    """Threads retrying and backing off against a stopped server end promptly too."""
    api.stop()
    h = Harness(api, tmp_path)
    h.caches.start()
    eventually(lambda: h.state()["errors"] >= 1 and h.state(NAD_CACHE)["errors"] >= 1, what="failed lists")
    start = time.monotonic()
    assert h.caches.stop(timeout=3.0) is True
    assert time.monotonic() - start < 2.0 and _cache_threads() == []


def test_start_once_and_a_node_name_is_required(api: K8sServer, tmp_path: Path) -> None:
    """A second start() is refused; a Caches without a node name is refused (it would watch unscheduled pods)."""
    h = Harness(api, tmp_path)
    h.caches.start()
    try:
        with pytest.raises(RuntimeError):
            h.caches.start()
    finally:
        assert h.caches.stop()
    with pytest.raises(ValueError, match="node"):
        Caches(h.client, "")


# ---- CachedSource -----------------------------------------------------------------------------


def test_cached_source_hits_make_no_request_and_misses_read_live(harness: Harness) -> None:
    """Hits are answered without a request to the server; an unknown pod, another uid or a missing NAD read live."""
    api, caches = harness.api, harness.caches
    api.add_pod(NS, "mp-web", {"k": "1"}, uid="mp-uid-1")
    api.add_pod(NS, "mp-far", node=OTHER)
    api.add_nad(NS, "mp-lan", LAN)
    caches.start()
    assert caches.wait_synced(10.0)
    eventually(lambda: api.watches() == 2, what="both watches open")
    lookups: list[tuple[str, bool]] = []
    with KubeClient(load_kubeconfig(harness.kubeconfig), timeout=2.0) as client:
        source = CachedSource(client, caches, on_lookup=lambda cache, hit: lookups.append((cache, hit)))
        assert source.kind == "kubernetes"
        sent = len(api.requests)
        assert source.pod(NS, "mp-web", "mp-uid-1")["metadata"]["annotations"] == {"k": "1"}
        assert source.nad(NS, "mp-lan")["metadata"]["name"] == "mp-lan"
        assert len(api.requests) == sent  # both from the caches

        assert source.pod(NS, "mp-far")["spec"]["nodeName"] == OTHER  # not this node's: live
        assert source.pod(NS, "mp-web", "mp-uid-0")["metadata"]["uid"] == "mp-uid-1"  # uid differs: live
        with pytest.raises(NotFound):
            source.nad(NS, "mp-none")
        live = [(r.method, r.path) for r in api.requests[sent:] if "watch=true" not in r.query]
        assert live == [
            ("GET", f"/api/v1/namespaces/{NS}/pods/mp-far"),
            ("GET", f"/api/v1/namespaces/{NS}/pods/mp-web"),
            ("GET", f"/apis/k8s.cni.cncf.io/v1/namespaces/{NS}/network-attachment-definitions/mp-none"),
        ]
        assert (source.hits, source.misses) == (2, 3)
        assert lookups == [
            (POD_CACHE, True),
            (NAD_CACHE, True),
            (POD_CACHE, False),
            (POD_CACHE, False),
            (NAD_CACHE, False),
        ]

        source.write_status(NS, "mp-web", "mp-uid-1", "[]")  # writes go to the API, and come back by watch
        eventually(
            lambda: "k8s.v1.cni.cncf.io/network-status" in source.caches.pod(NS, "mp-web")["metadata"]["annotations"]
        )


def test_cached_source_before_the_sync_reads_live(api: K8sServer, tmp_path: Path) -> None:
    """Caches not started (or not synced yet): every lookup is a live GET."""
    api.add_pod(NS, "mp-web")
    api.add_nad(NS, "mp-lan", LAN)
    h = Harness(api, tmp_path)
    with KubeClient(load_kubeconfig(h.kubeconfig), timeout=2.0) as client:
        source = CachedSource(client, h.caches)
        assert source.pod(NS, "mp-web")["metadata"]["name"] == "mp-web"
        assert source.nad(NS, "mp-lan")["metadata"]["name"] == "mp-lan"
    assert [r.method for r in api.requests] == ["GET", "GET"] and (source.hits, source.misses) == (0, 2)


def test_the_daemon_log_hears_an_outage_once_and_its_end(api: K8sServer, tmp_path: Path) -> None:
    """With a logger, a failure is logged when it differs from the one before (not once per retry), and the
    first list after it says listing works again."""
    from multiplane.logs import Logger

    log_path = tmp_path / "mp-daemon.log"
    log = Logger("error", str(log_path), to_stderr=False)
    h = Harness(api, tmp_path, log=log)
    try:
        h.caches.start()
        assert h.caches.wait_synced(10.0)
        api.stop()
        eventually(lambda: h.state()["errors"] >= 3, what="several failed attempts")
        api.start()
        for name in (POD_CACHE, NAD_CACHE):
            eventually(lambda n=name: f"caches: {n}: listing works again" in log_path.read_text(), what=f"{name} back")
    finally:
        assert h.caches.stop(timeout=5.0)
        log.close()
    lines = log_path.read_text().splitlines()
    down = [ln.split("] ", 1)[1] for ln in lines if "caches: pods:" in ln and "serving the last known" in ln]
    # a line per different failure (the watch breaking, the list refused), not one per retry
    assert 1 <= len(down) < h.state()["errors"], lines
    assert all(a != b for a, b in zip(down, down[1:])), down
    assert not any("shutting down" in ln for ln in lines), lines  # stopping is not a failure
    assert any("caches: pods: listing works again" in ln for ln in lines), lines
