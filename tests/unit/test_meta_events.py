"""Kubernetes Events on the pod when ADD fails, and the client call that posts them (no root needed).

ADD's failures before anything is attached (a NAD that does not exist, a netns that does not
exist) run without a network namespace; the Events of a successful ADD, and the RBAC check
over a whole ADD/DEL, are in tests/integration/test_meta_events_add.py. The API server is
the in-repo one (tests/k8s_server.py): real HTTP, Events stored and returned with a name,
uid and resourceVersion.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from multiplane.k8s.client import KubeClient, load_kubeconfig
from multiplane.plugins.meta import call as meta_call
from multiplane.plugins.meta.selection import NETWORKS_ANNOTATION
from tests.k8s_server import K8sServer
from tests.unit.test_meta_runner import Spies, World

POD_ARGS = "K8S_POD_NAMESPACE=test;K8S_POD_NAME=mp-pod;K8S_POD_INFRA_CONTAINER_ID=mp-c1"


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path, Spies(tmp_path))


@pytest.fixture
def api() -> Any:
    with K8sServer() as server:
        yield server


def log_of(world: World) -> Path:
    return world.root / "mp-meta.log"


def kube_conf(world: World, api: K8sServer, **extra: Any) -> dict[str, Any]:
    return {**world.meta, "kubeconfig": api.kubeconfig(world.root / "mp-kc"), "logFile": str(log_of(world)), **extra}


def _pod_selecting(api: K8sServer, networks: str) -> dict[str, Any]:
    return api.add_pod("test", "mp-pod", annotations={NETWORKS_ANNOTATION: networks}, uid="mp-uid-1", node="mp-node-7")


# ---- Warning events on failure ----------------------------------------------------------------


def test_missing_nad_posts_a_no_network_found_warning(world: World, api: K8sServer) -> None:
    """A selected NAD that does not exist: ADD fails (code 7) and the pod gets Warning NoNetworkFound naming it."""
    pod = _pod_selecting(api, "mp-gone")
    err = world.fails("ADD", kube_conf(world, api), args=POD_ARGS)
    assert err.error_code == 7
    (event,) = api.events("test")
    assert (event["type"], event["reason"]) == ("Warning", "NoNetworkFound")
    assert "cannot find a network-attachment-definition (mp-gone) in namespace (test)" in event["message"]
    assert event["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "namespace": "test",
        "name": "mp-pod",
        "uid": "mp-uid-1",
        "resourceVersion": pod["metadata"]["resourceVersion"],
    }
    assert event["source"] == {"component": "multiplane", "host": "mp-node-7"}
    assert (event["reportingComponent"], event["reportingInstance"]) == ("multiplane", "mp-node-7")
    assert event["count"] == 1 and event["firstTimestamp"] == event["lastTimestamp"]
    assert event["metadata"]["name"].startswith("mp-pod.") and event["metadata"]["uid"]
    (post,) = api.requests_for("POST")
    assert post.path == "/api/v1/namespaces/test/events" and post.status == 201


def test_other_add_failures_post_add_failed(world: World, api: K8sServer) -> None:
    """A failure that is not a missing network (here: the pod's netns is gone) is Warning AddFailed with the error text."""
    _pod_selecting(api, "mp-net1")
    api.add_nad("test", "mp-net1", {"cniVersion": "1.0.0", "name": "mp-net1", "type": "mp-spy2"})
    err = world.fails("ADD", kube_conf(world, api), netns="/var/run/netns/mp-absent", args=POD_ARGS)
    (event,) = api.events("test")
    assert (event["type"], event["reason"]) == ("Warning", "AddFailed")
    assert err.msg in event["message"] and "mp-absent" in event["message"]


def test_events_false_posts_nothing(world: World, api: K8sServer) -> None:
    """`"events": false` in 00-multiplane.conf: the same failure posts no Event (and makes no POST at all)."""
    _pod_selecting(api, "mp-gone")
    world.fails("ADD", kube_conf(world, api, events=False), args=POD_ARGS)
    assert api.events() == [] and api.requests_for("POST") == []


def test_events_must_be_a_boolean(world: World, api: K8sServer) -> None:
    """`"events": "no"` is a config error (code 7), like every other mistyped key."""
    err = world.fails("ADD", kube_conf(world, api, events="no"), args=POD_ARGS)
    assert err.error_code == 7 and "events must be true or false, got string" in err.msg


def test_a_failing_event_post_does_not_change_the_add_error(world: World, api: K8sServer) -> None:
    """Events forbidden (403): the ADD error is the real one, and the log says why no Event was posted."""
    _pod_selecting(api, "mp-gone")
    api.fail_next(1, 403, method="POST")
    err = world.fails("ADD", kube_conf(world, api), args=POD_ARGS)
    assert err.error_code == 7 and err.msg.startswith("cannot find a network-attachment-definition (mp-gone)")
    assert api.events() == []
    text = log_of(world).read_text()
    assert "cannot post the NoNetworkFound event (Kubernetes API error 403" in text
    assert "create` on `events`" in text


def test_a_hanging_event_post_is_bounded(world: World, api: K8sServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """An API server that never answers the POST holds ADD for the Event timeout, not longer."""
    monkeypatch.setattr(meta_call, "EVENT_TIMEOUT", 0.5)
    release = threading.Event()

    def hang(req: Any) -> None:
        if req.method == "POST":
            release.wait(10)

    api.on_request = hang
    _pod_selecting(api, "mp-gone")
    started = time.monotonic()
    try:
        err = world.fails("ADD", kube_conf(world, api), args=POD_ARGS)
    finally:
        release.set()
    assert time.monotonic() - started < 3
    assert err.error_code == 7
    assert "cannot post the NoNetworkFound event" in log_of(world).read_text()


def test_no_event_for_a_pod_the_api_does_not_have(world: World, api: K8sServer) -> None:
    """A pod missing from the API fails ADD; there is no object to attach an Event to, so none is posted."""
    world.fails("ADD", kube_conf(world, api), args=POD_ARGS)
    assert api.requests_for("POST") == []


def test_no_event_without_a_cluster(world: World) -> None:
    """Without a cluster (local NAD files) a failed ADD posts nothing and still fails normally."""
    err = world.fails(
        "ADD", {**world.meta, "logFile": str(log_of(world))}, args=f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-gone"
    )
    assert err.error_code == 7
    assert "cannot post" not in log_of(world).read_text()


# ---- the client call -------------------------------------------------------------------------


def test_create_event_posts_once_and_returns_the_stored_object(tmp_path: Path) -> None:
    """KubeClient.create_event: one POST to the namespace's events (no retry on 5xx), the created Event back."""
    with K8sServer() as api:
        client = KubeClient(load_kubeconfig(api.kubeconfig(tmp_path / "mp-kc")))
        body = {"metadata": {"generateName": "mp-pod."}, "involvedObject": {"kind": "Pod", "namespace": "test"}}
        created = client.create_event("test", body)
        assert created["metadata"]["name"].startswith("mp-pod.") and created["metadata"]["resourceVersion"]
        api.fail_next(1, 503, method="POST")
        with pytest.raises(Exception, match="Kubernetes API error 503"):
            client.create_event("test", body)
        assert len(api.requests_for("POST")) == 2  # the 503 was not retried
        assert len(api.events("test")) == 1


def test_create_event_refuses_an_invalid_namespace(tmp_path: Path) -> None:
    """A namespace that is not a DNS label never reaches the URL."""
    with K8sServer() as api:
        client = KubeClient(load_kubeconfig(api.kubeconfig(tmp_path / "mp-kc")))
        with pytest.raises(Exception, match="invalid Kubernetes namespace"):
            client.create_event("../x", {})
        assert api.requests == []
