"""multiplane.k8s.client against a real HTTP(S) API server (tests/k8s_server.py): shapes, retries, auth, TLS."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from multiplane.errors import CniError, InvalidConfig
from multiplane.k8s.client import ApiError, KubeClient, KubeConfig, NotFound, in_cluster_config, load_kubeconfig
from tests.k8s_server import CertAuthority, K8sServer, Request, default_pki

NS = "test"
NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"
POD_PATH = f"/api/v1/namespaces/{NS}/pods/web"
STATUS_PATH = POD_PATH + "/status"


def _finish(api: K8sServer) -> None:
    api.stop()
    assert api.errors == [], api.errors
    leftover = [t.name for t in threading.enumerate() if t.name.startswith("mp-apiserver")]
    assert leftover == []


@pytest.fixture(params=["http", "https"])
def api(request: pytest.FixtureRequest) -> Iterator[K8sServer]:
    server = K8sServer(tls=request.param == "https")
    try:
        yield server
    finally:
        _finish(server)


@pytest.fixture
def tls_api() -> Iterator[K8sServer]:
    server = K8sServer(tls=True, token="s3cret")
    try:
        yield server
    finally:
        _finish(server)


def _client(
    api: K8sServer, tmp_path: Path, *, timeout: float = 2.0, retry_budget: float = 1.0, **kubeconfig: Any
) -> KubeClient:
    path = api.kubeconfig(tmp_path / "kubeconfig", **kubeconfig)
    return KubeClient(load_kubeconfig(path), timeout=timeout, retry_budget=retry_budget)


def _methods(api: K8sServer) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in api.requests]


# ---- shapes ---------------------------------------------------------------------------------


def test_get_pod_returns_the_pod_object(api: K8sServer, tmp_path: Path) -> None:
    """get_pod returns the API server's v1 Pod with its metadata, annotations, spec and status."""
    created = api.add_pod(NS, "web", {"a": "1"}, uid="uid-1")
    pod = _client(api, tmp_path).get_pod(NS, "web")
    assert pod["apiVersion"] == "v1" and pod["kind"] == "Pod"
    assert pod["metadata"]["name"] == "web" and pod["metadata"]["namespace"] == NS
    assert pod["metadata"]["uid"] == "uid-1"
    assert pod["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert pod["metadata"]["annotations"] == {"a": "1"}
    assert pod["spec"] == created["spec"] and pod["status"]["phase"] == "Running"
    assert _methods(api) == [("GET", POD_PATH)]
    assert api.requests[0].headers["accept"] == "application/json"


def test_get_nad_returns_config_as_a_json_string(api: K8sServer, tmp_path: Path) -> None:
    """get_nad returns the NetworkAttachmentDefinition whose spec.config is the CNI config as a JSON string."""
    config = {"cniVersion": "1.0.0", "type": "macvlan", "master": "eth0", "ipam": {"type": "host-local"}}
    api.add_nad(NS, "lan", config)
    nad = _client(api, tmp_path).get_nad(NS, "lan")
    assert nad["apiVersion"] == "k8s.cni.cncf.io/v1" and nad["kind"] == "NetworkAttachmentDefinition"
    assert nad["metadata"]["name"] == "lan" and nad["metadata"]["namespace"] == NS
    assert isinstance(nad["spec"]["config"], str) and json.loads(nad["spec"]["config"]) == config
    assert _methods(api) == [("GET", f"/apis/k8s.cni.cncf.io/v1/namespaces/{NS}/network-attachment-definitions/lan")]


def test_get_nad_with_an_empty_spec(tmp_path: Path) -> None:
    """A NAD without a config comes back with an empty spec, and a string config comes back byte for byte."""
    with K8sServer() as api:
        api.add_nad(NS, "empty", None)
        api.add_nad(NS, "raw", '{ "type": "macvlan" }')
        client = _client(api, tmp_path)
        assert client.get_nad(NS, "empty")["spec"] == {}
        assert client.get_nad(NS, "raw")["spec"]["config"] == '{ "type": "macvlan" }'


def test_missing_pod_raises_not_found_naming_the_object(api: K8sServer, tmp_path: Path) -> None:
    """A missing pod raises NotFound (404) naming namespace/name, the server's message as details, without a retry."""
    with pytest.raises(NotFound) as info:
        _client(api, tmp_path).get_pod(NS, "missing")
    assert info.value.status == 404
    assert info.value.msg == f'pods "{NS}/missing" not found'
    assert info.value.details == 'pods "missing" not found'
    assert len(api.requests) == 1


def test_missing_nad_raises_not_found_naming_the_object(api: K8sServer, tmp_path: Path) -> None:
    """A missing NAD raises NotFound naming the fully qualified resource and namespace/name."""
    with pytest.raises(NotFound) as info:
        _client(api, tmp_path).get_nad(NS, "nope")
    assert info.value.status == 404
    assert info.value.msg == f'network-attachment-definitions.k8s.cni.cncf.io "{NS}/nope" not found'
    assert info.value.details == 'network-attachment-definitions.k8s.cni.cncf.io "nope" not found'


def test_path_prefix_of_the_server_url_is_kept(tmp_path: Path) -> None:
    """A server URL with a path (an API behind a proxy) prefixes every request path."""
    with K8sServer(path_prefix="/k8s/clusters/c-1") as api:
        api.add_pod(NS, "web")
        assert _client(api, tmp_path).get_pod(NS, "web")["metadata"]["name"] == "web"
        assert _methods(api) == [("GET", POD_PATH)]


# ---- set_pod_annotation: one JSON merge patch of pods/status --------------------------------------

MERGE_PATCH = "application/merge-patch+json"


def test_set_pod_annotation_is_one_merge_patch_that_keeps_the_other_annotations(api: K8sServer, tmp_path: Path) -> None:
    """One PATCH of pods/status (merge patch, just the uid and the one annotation); the other annotations stay."""
    before = api.add_pod(NS, "web", {"keep": "me", "k8s.v1.cni.cncf.io/networks": "lan"}, uid="uid-1")
    _client(api, tmp_path).set_pod_annotation(NS, "web", NETWORK_STATUS, '[{"name":"lan"}]', uid="uid-1")
    after = api.pod(NS, "web")
    assert after["metadata"]["annotations"] == {
        "keep": "me",
        "k8s.v1.cni.cncf.io/networks": "lan",
        NETWORK_STATUS: '[{"name":"lan"}]',
    }
    assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    assert after["spec"] == before["spec"] and after["status"] == before["status"]
    assert _methods(api) == [("PATCH", STATUS_PATH)]
    patch = api.requests[0]
    assert patch.status == 200 and patch.headers["content-type"] == MERGE_PATCH
    assert patch.body == {"metadata": {"uid": "uid-1", "annotations": {NETWORK_STATUS: '[{"name":"lan"}]'}}}


def test_set_pod_annotation_without_a_uid_patches_only_the_annotation(tmp_path: Path) -> None:
    """Without an expected uid (a static pod's mirror) the patch names no uid, and writes."""
    with K8sServer() as api:
        api.add_pod(NS, "web")
        _client(api, tmp_path).set_pod_annotation(NS, "web", NETWORK_STATUS, "[]")
        assert api.requests[0].body == {"metadata": {"annotations": {NETWORK_STATUS: "[]"}}}
        assert api.pod(NS, "web")["metadata"]["annotations"] == {NETWORK_STATUS: "[]"}


def test_set_pod_annotation_on_a_pod_without_annotations(tmp_path: Path) -> None:
    """A pod whose JSON has no annotations field gets an annotations map with just the new key."""
    with K8sServer() as api:
        api.add_pod(NS, "web")
        assert "annotations" not in api.pod(NS, "web")["metadata"]
        _client(api, tmp_path).set_pod_annotation(NS, "web", NETWORK_STATUS, "[]")
        assert api.pod(NS, "web")["metadata"]["annotations"] == {NETWORK_STATUS: "[]"}


def test_set_pod_annotation_overwrites_an_existing_value(tmp_path: Path) -> None:
    """Setting an annotation that exists replaces its value."""
    with K8sServer() as api:
        api.add_pod(NS, "web", {NETWORK_STATUS: "old"})
        _client(api, tmp_path).set_pod_annotation(NS, "web", NETWORK_STATUS, "new")
        assert api.pod(NS, "web")["metadata"]["annotations"] == {NETWORK_STATUS: "new"}


def test_set_pod_annotation_keeps_a_concurrent_writers_annotations(tmp_path: Path) -> None:
    """Another writer just before the patch (a newer resourceVersion) causes no conflict, and both writes stay."""
    with K8sServer() as api:
        api.add_pod(NS, "web", {"keep": "me"})

        def other_writer(req: Request) -> None:  # runs before the PATCH is served
            if req.method == "PATCH":
                api.update_pod(NS, "web", annotations={"other": "writer"})

        api.on_request = other_writer
        _client(api, tmp_path).set_pod_annotation(NS, "web", NETWORK_STATUS, "v")
        assert api.pod(NS, "web")["metadata"]["annotations"] == {"keep": "me", "other": "writer", NETWORK_STATUS: "v"}
        assert [r.status for r in api.requests] == [200]


def test_set_pod_annotation_twice_is_the_same_pod(tmp_path: Path) -> None:
    """The patch is idempotent (why repeating it is safe): applied twice, the annotations are as after once."""
    with K8sServer() as api:
        api.add_pod(NS, "web", {"keep": "me"}, uid="uid-1")
        with _client(api, tmp_path) as client:
            client.set_pod_annotation(NS, "web", NETWORK_STATUS, "v", uid="uid-1")
            once = api.pod(NS, "web")["metadata"]["annotations"]
            client.set_pod_annotation(NS, "web", NETWORK_STATUS, "v", uid="uid-1")
        assert api.pod(NS, "web")["metadata"]["annotations"] == once == {"keep": "me", NETWORK_STATUS: "v"}


def test_set_pod_annotation_refuses_a_replaced_pod(api: K8sServer, tmp_path: Path) -> None:
    """A pod of the same name with another uid (recreated) makes the uid precondition fail: one 409, nothing written."""
    api.add_pod(NS, "web", {"keep": "me"}, uid="uid-new")
    with pytest.raises(ApiError) as info:
        _client(api, tmp_path).set_pod_annotation(NS, "web", NETWORK_STATUS, "v", uid="uid-old")
    assert info.value.status == 409
    assert info.value.msg == f'pods "{NS}/web" was replaced (expected UID "uid-old", found "uid-new")'
    assert "Precondition failed: UID in precondition: uid-old, UID in object meta: uid-new" in info.value.details
    assert [(r.method, r.status) for r in api.requests] == [("PATCH", 409)]
    assert api.pod(NS, "web")["metadata"]["annotations"] == {"keep": "me"}


def test_set_pod_annotation_with_the_matching_uid_writes(tmp_path: Path) -> None:
    """The expected UID matching the pod's lets the write through."""
    with K8sServer() as api:
        api.add_pod(NS, "web", uid="uid-1")
        _client(api, tmp_path).set_pod_annotation(NS, "web", NETWORK_STATUS, "v", uid="uid-1")
        assert api.pod(NS, "web")["metadata"]["annotations"] == {NETWORK_STATUS: "v"}


def test_set_pod_annotation_notices_a_pod_replaced_just_before_the_patch(tmp_path: Path) -> None:
    """A pod recreated between the caller's read and the patch is refused by the server: the old uid no longer matches."""
    with K8sServer() as api:
        api.add_pod(NS, "web", uid="uid-1")

        def recreate(req: Request) -> None:  # runs before the PATCH is served
            if req.method == "PATCH":
                api.add_pod(NS, "web", uid="uid-2")

        api.on_request = recreate
        with pytest.raises(ApiError, match="was replaced") as info:
            _client(api, tmp_path).set_pod_annotation(NS, "web", NETWORK_STATUS, "v", uid="uid-1")
        assert '"uid-2"' in info.value.msg
        assert "annotations" not in api.pod(NS, "web")["metadata"]


def test_set_pod_annotation_on_a_missing_pod_raises_not_found(tmp_path: Path) -> None:
    """Annotating a pod that does not exist raises NotFound naming it, after one PATCH answered 404."""
    with K8sServer() as api:
        with pytest.raises(NotFound) as info:
            _client(api, tmp_path).set_pod_annotation(NS, "ghost", NETWORK_STATUS, "v", uid="uid-1")
        assert info.value.msg == f'pods "{NS}/ghost" not found' and info.value.status == 404
        assert [(r.method, r.status) for r in api.requests] == [("PATCH", 404)]


def test_patch_is_retried_on_a_server_error(tmp_path: Path) -> None:
    """A 503 to the status PATCH is retried (a merge patch is idempotent) and the annotation lands."""
    with K8sServer() as api:
        api.add_pod(NS, "web")
        api.fail_next(1, 503, method="PATCH")
        _client(api, tmp_path).set_pod_annotation(NS, "web", NETWORK_STATUS, "v")
        assert api.pod(NS, "web")["metadata"]["annotations"][NETWORK_STATUS] == "v"
        assert [(r.method, r.status) for r in api.requests] == [("PATCH", 503), ("PATCH", 200)]


def test_patch_gives_up_after_the_retry_budget(tmp_path: Path) -> None:
    """A status PATCH that keeps failing with 503 ends as an ApiError 503 naming the pod's status."""
    with K8sServer() as api:
        api.add_pod(NS, "web")
        api.fail_next(100, 503, method="PATCH")
        with pytest.raises(ApiError) as info:
            _client(api, tmp_path).set_pod_annotation(NS, "web", NETWORK_STATUS, "v")
        assert info.value.status == 503 and f'pods "{NS}/web" status' in info.value.msg


def test_stale_resource_version_conflict_passes_the_server_message(tmp_path: Path) -> None:
    """A PUT with a stale resourceVersion gets the API server's 409 Conflict, its message kept as details."""
    with K8sServer() as api:
        stale = api.add_pod(NS, "web")
        api.update_pod(NS, "web", annotations={"x": "y"})
        with pytest.raises(ApiError) as info:
            _client(api, tmp_path).request("PUT", STATUS_PATH, "the pod", body=stale, retry=False)
        assert info.value.status == 409
        assert info.value.details == (
            'Operation cannot be fulfilled on pods "web": the object has been modified; '
            "please apply your changes to the latest version and try again"
        )


def test_merge_patch_semantics_of_the_test_server(tmp_path: Path) -> None:
    """The test server applies RFC 7386: null removes a key, a resourceVersion is a precondition, other types are 415."""
    with K8sServer() as api:
        pod = api.add_pod(NS, "web", {"a": "1", "b": "2"}, labels={"app": "web"})
        with _client(api, tmp_path, retry_budget=0.0) as client:
            patch = {"metadata": {"annotations": {"a": None, "c": "3"}, "labels": {"tier": "x"}}, "spec": {"x": 1}}
            answer = client.request("PATCH", STATUS_PATH, "the pod", body=patch, content_type=MERGE_PATCH)
            assert answer["metadata"]["annotations"] == {"b": "2", "c": "3"}
            assert answer["metadata"]["labels"] == {"app": "web", "tier": "x"}
            assert answer["spec"] == pod["spec"]  # pods/status does not touch the spec
            assert answer == api.pod(NS, "web")
            stale = {"metadata": {"resourceVersion": pod["metadata"]["resourceVersion"], "annotations": {"d": "4"}}}
            with pytest.raises(ApiError) as info:
                client.request("PATCH", STATUS_PATH, "the pod", body=stale, content_type=MERGE_PATCH)
            assert info.value.status == 409 and "the object has been modified" in info.value.details
            with pytest.raises(ApiError) as info:
                client.request("PATCH", STATUS_PATH, "the pod", body=patch)  # application/json is no patch type
            assert info.value.status == 415
        assert "d" not in api.pod(NS, "web")["metadata"]["annotations"]


# ---- retries and the budget -------------------------------------------------------------------


@pytest.mark.parametrize("status", [503, 500, 502, 429])
def test_get_retries_transient_errors_then_succeeds(status: int, tmp_path: Path) -> None:
    """Two transient answers (5xx, 429) to a GET are retried and the third answer is returned."""
    with K8sServer() as api:
        api.add_pod(NS, "web")
        api.fail_next(2, status)
        assert _client(api, tmp_path).get_pod(NS, "web")["metadata"]["name"] == "web"
        assert [r.status for r in api.requests] == [status, status, 200]


def test_persistent_503_gives_up_within_the_budget(tmp_path: Path) -> None:
    """A GET answered 503 forever raises ApiError 503 naming the pod once the retry budget is spent, not later."""
    with K8sServer() as api:
        api.add_pod(NS, "web")
        api.fail_next(10_000, 503)
        budget = 0.5
        client = _client(api, tmp_path, retry_budget=budget)
        start = time.monotonic()
        with pytest.raises(ApiError) as info:
            client.get_pod(NS, "web")
        elapsed = time.monotonic() - start
        assert info.value.status == 503 and info.value.msg == f'Kubernetes API error 503 for pods "{NS}/web"'
        assert info.value.details == "injected failure"
        assert elapsed < budget + 0.3
        assert len(api.requests) >= 3  # retried with back-off, not given up at once


@pytest.mark.parametrize("status", [400, 403, 405])
def test_client_errors_are_not_retried(status: int, tmp_path: Path) -> None:
    """A 4xx other than 401/404/409/429 is an ApiError with that status after a single request."""
    with K8sServer() as api:
        api.add_pod(NS, "web")
        api.fail_next(1, status)
        with pytest.raises(ApiError) as info:
            _client(api, tmp_path).get_pod(NS, "web")
        assert info.value.status == status
        assert len(api.requests) == 1


def test_stopped_server_raises_cannot_reach(tmp_path: Path) -> None:
    """With nothing listening the client raises ApiError (status 0) 'cannot reach' naming the URL, within the budget."""
    with K8sServer() as api:
        client = _client(api, tmp_path, retry_budget=0.3)
        api.stop()
        start = time.monotonic()
        with pytest.raises(ApiError) as info:
            client.get_pod(NS, "web")
        assert time.monotonic() - start < 0.3 + 0.3
        assert info.value.status == 0
        assert info.value.msg == f'cannot reach the Kubernetes API at {api.url} for pods "{NS}/web"'
        assert "ConnectionRefusedError" in info.value.details


def test_get_retries_until_the_server_is_back(tmp_path: Path) -> None:
    """Connection refused is retried, so a server that comes back within the budget answers the GET."""
    with K8sServer() as api:
        api.add_pod(NS, "web")
        client = _client(api, tmp_path, retry_budget=3.0)
        api.stop()
        timer = threading.Timer(0.3, api.start)
        timer.start()
        try:
            assert client.get_pod(NS, "web")["metadata"]["name"] == "web"
        finally:
            timer.join()
        assert len(api.requests) == 1


def test_request_timeout_is_enforced(api: K8sServer, tmp_path: Path) -> None:
    """A server slower than the timeout yields ApiError 'cannot reach' (timed out) within budget + one timeout."""
    api.add_pod(NS, "web")
    api.delay(5.0)
    timeout, budget = 0.25, 0.4
    client = _client(api, tmp_path, timeout=timeout, retry_budget=budget)
    start = time.monotonic()
    with pytest.raises(ApiError) as info:
        client.get_pod(NS, "web")
    elapsed = time.monotonic() - start
    assert info.value.status == 0 and "timed out" in info.value.details
    assert timeout <= elapsed < budget + timeout + 0.3
    assert 1 <= len(api.requests) <= int(budget / timeout) + 2


def test_a_slow_answer_within_the_timeout_succeeds(tmp_path: Path) -> None:
    """A delay shorter than the timeout is waited for, in one request."""
    with K8sServer() as api:
        api.add_pod(NS, "web")
        api.delay(0.2)
        assert _client(api, tmp_path, timeout=2.0).get_pod(NS, "web")["metadata"]["name"] == "web"
        assert len(api.requests) == 1


# ---- authentication ---------------------------------------------------------------------------


def test_bearer_token_is_sent(tls_api: K8sServer, tmp_path: Path) -> None:
    """The kubeconfig token goes out as `Authorization: Bearer` and the server accepts it."""
    tls_api.add_pod(NS, "web")
    _client(tls_api, tmp_path, token="s3cret").get_pod(NS, "web")
    assert [(r.token, r.user, r.status) for r in tls_api.requests] == [("s3cret", "token", 200)]


def test_wrong_token_fails_with_401_after_one_retry(tls_api: K8sServer, tmp_path: Path) -> None:
    """A rejected token is retried once (to re-read it) and then raised as ApiError 401."""
    tls_api.add_pod(NS, "web")
    with pytest.raises(ApiError) as info:
        _client(tls_api, tmp_path, token="wrong").get_pod(NS, "web")
    assert info.value.status == 401 and info.value.details == "Unauthorized"
    assert [r.status for r in tls_api.requests] == [401, 401]


def test_no_credentials_fail_with_401(tls_api: K8sServer, tmp_path: Path) -> None:
    """Without any credentials the request is unauthenticated and fails with ApiError 401."""
    with pytest.raises(ApiError) as info:
        _client(tls_api, tmp_path).get_pod(NS, "web")
    assert info.value.status == 401
    assert all("authorization" not in r.headers for r in tls_api.requests)


def test_rotated_token_file_is_reread_after_a_401(tls_api: K8sServer, tmp_path: Path) -> None:
    """A 401 makes the client read the token file again, and the rotated token succeeds."""
    tls_api.add_pod(NS, "web")
    token_file = tmp_path / "token"
    token_file.write_text("old-token\n")
    client = _client(tls_api, tmp_path, token_file=str(token_file))

    def rotate(req: Request) -> None:
        if req.token == "old-token":
            token_file.write_text("s3cret\n")  # the kubelet rotated the projected token

    tls_api.on_request = rotate
    assert client.get_pod(NS, "web")["metadata"]["name"] == "web"
    assert [(r.token, r.status) for r in tls_api.requests] == [("old-token", 401), ("s3cret", 200)]


def test_token_file_is_read_for_every_request(tls_api: K8sServer, tmp_path: Path) -> None:
    """A token rotated between two calls is used by the second call without a 401 first."""
    tls_api.add_pod(NS, "web")
    token_file = tmp_path / "token"
    token_file.write_text("s3cret")
    client = _client(tls_api, tmp_path, token_file=str(token_file))
    client.get_pod(NS, "web")
    tls_api.token = "rotated"
    token_file.write_text("rotated")
    client.get_pod(NS, "web")
    assert [(r.token, r.status) for r in tls_api.requests] == [("s3cret", 200), ("rotated", 200)]


def test_unreadable_token_file_raises_api_error(tls_api: K8sServer, tmp_path: Path) -> None:
    """A missing token file is an ApiError naming the file, and nothing is sent."""
    client = _client(tls_api, tmp_path, token_file=str(tmp_path / "absent"))
    with pytest.raises(ApiError, match="cannot read service account token .*absent"):
        client.get_pod(NS, "web")
    assert tls_api.requests == []


# ---- kubeconfig and TLS ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_kubeconfig_yaml_and_json(fmt: str, tls_api: K8sServer, tmp_path: Path) -> None:
    """A kubeconfig in YAML or JSON with CA data and a token reaches the HTTPS server."""
    tls_api.add_pod(NS, "web")
    path = tls_api.kubeconfig(tmp_path / f"kubeconfig.{fmt}", token="s3cret", fmt=fmt)
    assert Path(path).read_text().lstrip().startswith("{") == (fmt == "json")
    cfg = load_kubeconfig(path)
    assert cfg.server == tls_api.url and cfg.token == "s3cret" and cfg.ca_data == tls_api.ca_pem
    assert KubeClient(cfg, timeout=2.0).get_pod(NS, "web")["metadata"]["name"] == "web"


def test_kubeconfig_relative_file_references(
    tls_api: K8sServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """certificate-authority and tokenFile given relative to the kubeconfig are found from any working directory."""
    tls_api.add_pod(NS, "web")
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    (conf_dir / "token").write_text("s3cret")
    path = tls_api.kubeconfig(conf_dir / "kubeconfig", ca="file", token_file="token", relative=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_kubeconfig(path)
    assert cfg.ca_file == str(conf_dir / "kubeconfig.ca.crt") and cfg.token_file == str(conf_dir / "token")
    assert KubeClient(cfg, timeout=2.0).get_pod(NS, "web")["metadata"]["name"] == "web"


def test_kubeconfig_current_context_is_used(tmp_path: Path) -> None:
    """Of several contexts the current-context picks the cluster and user."""
    doc = {
        "clusters": [
            {"name": "a", "cluster": {"server": "https://a.example:6443"}},
            {"name": "b", "cluster": {"server": "http://b.example/"}},
        ],
        "users": [{"name": "ua", "user": {"token": "ta"}}, {"name": "ub", "user": {"token": "tb"}}],
        "contexts": [
            {"name": "ca", "context": {"cluster": "a", "user": "ua"}},
            {"name": "cb", "context": {"cluster": "b", "user": "ub"}},
        ],
        "current-context": "cb",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(doc))
    cfg = load_kubeconfig(str(path))
    assert (cfg.server, cfg.token) == ("http://b.example", "tb")


@pytest.mark.parametrize("form", ["data", "file"])
def test_kubeconfig_client_certificate(form: str, tmp_path: Path) -> None:
    """A client certificate (inline data or files) authenticates to a server that requires one."""
    with K8sServer(tls=True, require_client_cert=True, token="unused") as api:
        api.add_pod(NS, "web")
        client = _client(api, tmp_path, client_cert=form)
        assert client.get_pod(NS, "web")["metadata"]["name"] == "web"
        assert [(r.user, r.token) for r in api.requests] == [("cert:mp-client", None)]
        assert api.errors == []


def test_server_requiring_a_client_certificate_refuses_a_client_without_one(tmp_path: Path) -> None:
    """Without a client certificate the TLS handshake is refused and the client raises ApiError, not a crash."""
    with K8sServer(tls=True, require_client_cert=True) as api:
        with pytest.raises(ApiError) as info:
            _client(api, tmp_path, retry_budget=0.2).get_pod(NS, "web")
        assert info.value.status == 0
        assert api.requests == []


def test_client_certificate_from_another_ca_is_refused(tmp_path: Path) -> None:
    """A client certificate not signed by the server's CA is refused with an ApiError."""
    other = CertAuthority("some other CA").issue("intruder", "client")
    with K8sServer(tls=True, require_client_cert=True) as api:
        with pytest.raises(ApiError) as info:
            _client(api, tmp_path, retry_budget=0.2, client_cert="data", client_cert_pem=other).get_pod(NS, "web")
        assert info.value.status == 0
        assert api.requests == []


def test_insecure_skip_tls_verify_needs_no_ca(tls_api: K8sServer, tmp_path: Path) -> None:
    """insecure-skip-tls-verify without any CA talks to the self-signed server."""
    tls_api.add_pod(NS, "web")
    client = _client(tls_api, tmp_path, ca=None, insecure=True, token="s3cret")
    assert client.cfg.insecure and not client.cfg.ca_data
    assert client.get_pod(NS, "web")["metadata"]["name"] == "web"


def test_wrong_ca_is_an_api_error_and_nothing_reaches_the_server(tls_api: K8sServer, tmp_path: Path) -> None:
    """A CA that did not sign the server's certificate fails verification as an ApiError within the budget."""
    wrong = CertAuthority("wrong CA").cert_pem
    client = _client(tls_api, tmp_path, ca_pem=wrong, token="s3cret", retry_budget=0.2)
    start = time.monotonic()
    with pytest.raises(ApiError) as info:
        client.get_pod(NS, "web")
    assert time.monotonic() - start < 0.2 + 0.5
    assert info.value.status == 0 and "CERTIFICATE_VERIFY_FAILED" in info.value.details
    assert tls_api.requests == []


def test_system_trust_store_does_not_trust_the_test_ca(tls_api: K8sServer, tmp_path: Path) -> None:
    """Without CA data the system trust store is used, which rejects the self-signed server, as an ApiError."""
    with pytest.raises(ApiError) as info:
        _client(tls_api, tmp_path, ca=None, token="s3cret", retry_budget=0.1).get_pod(NS, "web")
    assert "CERTIFICATE_VERIFY_FAILED" in info.value.details


def test_https_client_to_a_plain_http_server_is_an_api_error(tmp_path: Path) -> None:
    """Speaking TLS to a plain-HTTP port fails as an ApiError (status 0), not an exception from ssl."""
    with K8sServer() as api:
        cfg = KubeConfig(api.url.replace("http://", "https://"))
        cfg.ca_data = default_pki().ca.cert_pem
        with pytest.raises(ApiError) as info:
            KubeClient(cfg, timeout=1.0, retry_budget=0.1).get_pod(NS, "web")
        assert info.value.status == 0


def test_invalid_server_url_is_invalid_config() -> None:
    """A server URL that is not http(s) is rejected as InvalidConfig when the client is made."""
    with pytest.raises(InvalidConfig, match="invalid Kubernetes API server URL"):
        KubeClient(KubeConfig("ftp://127.0.0.1:1"))


def test_kubeconfig_without_a_server_is_invalid_config(tmp_path: Path) -> None:
    """A cluster entry without a server is InvalidConfig naming the file."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        "clusters: [{name: c, cluster: {}}]\ncontexts: [{name: x, context: {cluster: c}}]\ncurrent-context: x\n"
    )
    with pytest.raises(InvalidConfig, match="has no server"):
        load_kubeconfig(str(path))


def test_missing_kubeconfig_is_invalid_config(tmp_path: Path) -> None:
    """An unreadable kubeconfig path is InvalidConfig naming the path."""
    with pytest.raises(InvalidConfig, match="cannot read kubeconfig .*absent"):
        load_kubeconfig(str(tmp_path / "absent"))


# ---- bugs: configuration errors that escape as raw exceptions (CNI "internal error", code 999) ----


def test_malformed_json_kubeconfig_is_invalid_config(tmp_path: Path) -> None:
    """A truncated JSON kubeconfig is InvalidConfig, as a malformed YAML one is (BUG: json.JSONDecodeError escapes)."""
    path = tmp_path / "kubeconfig"
    path.write_text('{"clusters": [')
    with pytest.raises(InvalidConfig):
        load_kubeconfig(str(path))


def test_flow_style_yaml_kubeconfig_is_accepted(tmp_path: Path) -> None:
    """A YAML kubeconfig written in flow style (starts with `{`, not JSON) loads (BUG: parsed as JSON and rejected)."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        "{clusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}],\n"
        " contexts: [{name: x, context: {cluster: c}}]}\n"
    )
    assert load_kubeconfig(str(path)).server == "http://127.0.0.1:1"


def test_invalid_base64_certificate_data_is_invalid_config(tmp_path: Path) -> None:
    """certificate-authority-data that is not base64 is InvalidConfig (BUG: binascii.Error escapes)."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', certificate-authority-data: '!!not base64'}}]\n"
        "contexts: [{name: x, context: {cluster: c}}]\n"
    )
    with pytest.raises(InvalidConfig):
        load_kubeconfig(str(path))


@pytest.mark.parametrize("problem", ["missing CA file", "CA data not PEM", "missing client certificate file"])
def test_unusable_tls_material_is_a_cni_error(problem: str, tmp_path: Path) -> None:
    """An unreadable or malformed CA or client certificate is a CniError (BUG: raw OSError/ssl.SSLError escape)."""
    cfg = KubeConfig("https://127.0.0.1:1")
    if problem == "missing CA file":
        cfg.ca_file = str(tmp_path / "absent-ca.crt")
    elif problem == "CA data not PEM":
        cfg.ca_data = b"this is not a certificate"
    else:
        cfg.ca_data = default_pki().ca.cert_pem
        cfg.cert_file, cfg.key_file = str(tmp_path / "absent.crt"), str(tmp_path / "absent.key")
    with pytest.raises(CniError):
        KubeClient(cfg)


# ---- in-cluster configuration -----------------------------------------------------------------


def test_in_cluster_config_talks_to_the_server(tls_api: K8sServer, tmp_path: Path) -> None:
    """KUBERNETES_SERVICE_HOST/PORT and the service-account dir (ca.crt, token) reach the HTTPS server."""
    tls_api.add_pod(NS, "web")
    sa_dir = tmp_path / "serviceaccount"
    sa_dir.mkdir()
    (sa_dir / "ca.crt").write_bytes(tls_api.ca_pem)
    (sa_dir / "token").write_text("s3cret")
    (sa_dir / "namespace").write_text(NS)
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(tls_api.port)}
    cfg = in_cluster_config(env, sa_dir=str(sa_dir))
    assert cfg is not None
    assert cfg.server == tls_api.url
    assert (cfg.ca_file, cfg.token_file) == (str(sa_dir / "ca.crt"), str(sa_dir / "token"))
    assert KubeClient(cfg, timeout=2.0).get_pod(NS, "web")["metadata"]["name"] == "web"
    assert tls_api.requests[0].user == "token"


def test_in_cluster_config_brackets_an_ipv6_host() -> None:
    """An IPv6 service host is written in brackets in the server URL."""
    env = {"KUBERNETES_SERVICE_HOST": "fd00:10:96::1", "KUBERNETES_SERVICE_PORT": "443"}
    cfg = in_cluster_config(env, sa_dir="/sa")
    assert cfg is not None and cfg.server == "https://[fd00:10:96::1]:443"
    cfg.ca_file = ""  # /sa/ca.crt does not exist; only the URL parsing is under test
    client = KubeClient(cfg)
    assert (client.scheme, client.host, client.port) == ("https", "fd00:10:96::1", 443)


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"KUBERNETES_SERVICE_HOST": "10.96.0.1"},
        {"KUBERNETES_SERVICE_PORT": "443"},
        {"KUBERNETES_SERVICE_HOST": "", "KUBERNETES_SERVICE_PORT": "443"},
    ],
)
def test_in_cluster_config_is_none_outside_a_cluster(env: dict[str, str]) -> None:
    """Without both KUBERNETES_SERVICE_HOST and _PORT there is no in-cluster configuration."""
    assert in_cluster_config(env, sa_dir="/nonexistent") is None


def test_in_cluster_config_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no env argument the process environment is used."""
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    cfg = in_cluster_config(sa_dir="/sa")
    assert cfg is not None and cfg.server == "https://10.96.0.1:443" and cfg.token_file == "/sa/token"


def test_kubeconfig_ca_data_round_trips(tls_api: K8sServer, tmp_path: Path) -> None:
    """certificate-authority-data is base64 of the PEM CA in the kubeconfig, decoded by load_kubeconfig."""
    path = tls_api.kubeconfig(tmp_path / "kubeconfig", token="s3cret")
    text = Path(path).read_text()
    assert base64.b64encode(tls_api.ca_pem).decode() in text
    assert load_kubeconfig(path).ca_data.startswith(b"-----BEGIN CERTIFICATE-----")


# ---- paths are built from validated segments only (issue 11 #2b) ------------------------------------


@pytest.mark.parametrize(
    ("namespace", "name"),
    [
        ("x", "a/../../../other/network-attachment-definitions/secret"),
        ("..", "net1"),
        ("kube-system/pods", "net1"),
        ("default", "net1?watch=true"),
        ("default", "Net1"),
        ("default", ""),
    ],
)
def test_names_that_are_not_kubernetes_names_never_reach_the_server(
    api: K8sServer, tmp_path: Path, namespace: str, name: str
) -> None:
    """get_nad/get_pod/set_pod_annotation refuse a namespace or name that cannot name an object (7); no request is sent."""
    client = _client(api, tmp_path)
    for call in (client.get_nad, client.get_pod, lambda ns, n: client.set_pod_annotation(ns, n, "k", "v")):
        with pytest.raises(InvalidConfig, match="DNS-1123"):
            call(namespace, name)
    assert api.requests == []


def test_dotted_names_are_valid_segments(api: K8sServer, tmp_path: Path) -> None:
    """A NAD name with dots (a DNS subdomain) is requested as one path segment."""
    api.add_nad("default", "macvlan.conf", {"cniVersion": "1.0.0", "type": "x"})
    assert _client(api, tmp_path).get_nad("default", "macvlan.conf")["metadata"]["name"] == "macvlan.conf"


# ---- keep-alive: one connection per client (issue 10 groundwork) ------------------------------------


def _pod_add_calls(client: KubeClient) -> None:
    """The requests a pod ADD makes: GET pod, GET NAD, PATCH status."""
    client.get_pod(NS, "web")
    client.get_nad(NS, "lan")
    client.set_pod_annotation(NS, "web", NETWORK_STATUS, "[]")


def test_keep_alive_reuses_one_connection_for_a_pod_add(api: K8sServer, tmp_path: Path) -> None:
    """The three requests of a pod ADD travel over one connection: the server accepts exactly one."""
    api.add_pod(NS, "web")
    api.add_nad(NS, "lan", {"cniVersion": "1.0.0", "type": "macvlan"})
    with _client(api, tmp_path) as client:
        _pod_add_calls(client)
    assert [(r.method, r.status) for r in api.requests] == [("GET", 200), ("GET", 200), ("PATCH", 200)]
    assert api.connections == 1
    assert {r.conn for r in api.requests} == {1}


def test_server_closing_idle_connections_is_handled(api: K8sServer, tmp_path: Path) -> None:
    """A connection the server closed while idle is replaced transparently, for a GET and for the status PATCH."""
    api.add_pod(NS, "web")
    api.add_nad(NS, "lan", None)
    api.idle_timeout = 0.1
    with _client(api, tmp_path) as client:
        client.get_pod(NS, "web")
        time.sleep(0.4)  # the server has closed the idle connection by now
        client.get_nad(NS, "lan")
        time.sleep(0.4)
        client.set_pod_annotation(NS, "web", NETWORK_STATUS, "[]")
    assert [(r.method, r.status) for r in api.requests] == [("GET", 200), ("GET", 200), ("PATCH", 200)]
    assert api.connections == 3  # one per idle gap
    assert api.pod(NS, "web")["metadata"]["annotations"] == {NETWORK_STATUS: "[]"}


def test_stale_connection_unnoticed_before_sending_is_retried_once(
    api: K8sServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reused connection that fails before any response byte (closed under the client) is retried on a new one."""
    from multiplane.k8s import client as client_module

    api.add_pod(NS, "web")
    with _client(api, tmp_path, retry_budget=0.0) as client:  # no budget: only the stale retry may help
        client.get_pod(NS, "web")
        assert client._conn is not None
        # Miss the pre-send check (a close racing with the send): the send or the read fails instead.
        monkeypatch.setattr(client_module._Connection, "idle_and_open", lambda self: True)
        api.stop()
        api.start()  # the old connection was cut by stop()
        assert client.get_pod(NS, "web")["metadata"]["name"] == "web"
    assert [r.status for r in api.requests] == [200, 200]
    assert api.connections == 2


def test_connection_close_is_honoured(api: K8sServer, tmp_path: Path) -> None:
    """A server answering `Connection: close` gets a new connection for every request, and all succeed."""
    api.add_pod(NS, "web")
    api.add_nad(NS, "lan", None)
    api.close_connections = True
    with _client(api, tmp_path) as client:
        _pod_add_calls(client)
        assert client._conn is None
    assert api.connections == 3 and sorted(r.conn for r in api.requests) == [1, 2, 3]


def test_chunked_response_bodies(api: K8sServer, tmp_path: Path) -> None:
    """Bodies sent with Transfer-Encoding: chunked are decoded, and the connection is still reused."""
    api.add_pod(NS, "web", {"a": "1"})
    api.add_nad(NS, "lan", {"cniVersion": "1.0.0", "type": "macvlan"})
    api.chunked_responses = True
    with _client(api, tmp_path) as client:
        assert client.get_pod(NS, "web")["metadata"]["annotations"] == {"a": "1"}
        assert json.loads(client.get_nad(NS, "lan")["spec"]["config"])["type"] == "macvlan"
        with pytest.raises(NotFound):
            client.get_pod(NS, "missing")
    assert api.connections == 1


def test_timed_out_request_does_not_poison_the_connection(tmp_path: Path) -> None:
    """After a timed-out request the late answer is never read as the next one's: a new connection is used."""
    with K8sServer() as api:
        api.add_pod(NS, "web")
        api.add_pod(NS, "other")
        with _client(api, tmp_path, timeout=0.3, retry_budget=0.0) as client:
            api.delay(0.6, n=1)
            with pytest.raises(ApiError, match="cannot reach"):
                client.get_pod(NS, "web")
            assert client.get_pod(NS, "other")["metadata"]["name"] == "other"
        assert api.connections == 2


def test_importing_the_client_loads_no_http_client_or_email() -> None:
    """multiplane.k8s.client speaks HTTP on socket + ssl: http.client and email (~12 ms) are never imported."""
    import subprocess
    import sys

    code = "import sys, multiplane.k8s.client; print(sorted(m for m in sys.modules if m.split('.')[0] in ('http', 'email')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---- list and watch ---------------------------------------------------------------------------


def _events(client: KubeClient, path: str, rv: str, until: int, **kw: Any) -> list[tuple[str, str, str]]:
    """(type, name, resourceVersion) of the watch's events other than bookmarks, `until` of them."""
    seen = []
    for kind, obj in client.watch(path, rv, **kw):
        if kind != "BOOKMARK":
            seen.append((kind, obj["metadata"]["name"], obj["metadata"]["resourceVersion"]))
        if len(seen) == until:
            break
    return seen


def test_list_returns_items_and_the_resource_version(api: K8sServer, tmp_path: Path) -> None:
    """list_objects gives a PodList's / NAD list's items and its metadata.resourceVersion, field selector applied."""
    from multiplane.k8s.client import NADS_PATH, PODS_PATH

    api.add_pod(NS, "a", node="n1")
    api.add_pod(NS, "b", node="n2")
    api.add_nad(NS, "lan", None)
    with _client(api, tmp_path) as client:
        items, rv = client.list_objects(PODS_PATH)
        assert [p["metadata"]["name"] for p in items] == ["a", "b"] and rv == str(api._rv)
        items, _ = client.list_objects(PODS_PATH, field_selector="spec.nodeName=n2")
        assert [p["metadata"]["name"] for p in items] == ["b"]
        nads, nad_rv = client.list_objects(NADS_PATH)
        assert [n["metadata"]["name"] for n in nads] == ["lan"] and nad_rv == rv
    assert "fieldSelector=spec.nodeName%3Dn2" in api.requests[1].query
    assert api.connections == 1


def test_watch_sees_added_modified_deleted_in_order(api: K8sServer, tmp_path: Path) -> None:
    """After a list, the watch from its resourceVersion yields ADDED, MODIFIED, DELETED with rising versions."""
    from multiplane.k8s.client import PODS_PATH

    api.add_pod(NS, "old")
    with _client(api, tmp_path) as client:
        items, rv = client.list_objects(PODS_PATH)
        assert [p["metadata"]["name"] for p in items] == ["old"]

        def writer() -> None:
            time.sleep(0.2)
            api.add_pod(NS, "web")
            api.update_pod(NS, "web", annotations={"x": "y"})
            api.delete_pod(NS, "web")

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            seen = _events(client, PODS_PATH, rv, 3, timeout=5)
        finally:
            thread.join()
    assert [(kind, name) for kind, name, _ in seen] == [("ADDED", "web"), ("MODIFIED", "web"), ("DELETED", "web")]
    versions = [int(v) for _, _, v in seen]
    assert versions == sorted(versions) and versions[0] > int(rv)
    watch = api.requests[-1]
    assert "watch=true" in watch.query and f"resourceVersion={rv}" in watch.query
    assert "allowWatchBookmarks=true" in watch.query


def test_watch_of_nads_and_the_stream_ends_at_its_timeout(api: K8sServer, tmp_path: Path) -> None:
    """A NAD watch sees changes made before it started (from the list's version), and ends after timeoutSeconds."""
    from multiplane.k8s.client import NADS_PATH

    api.bookmark_interval = 0.2
    with _client(api, tmp_path) as client:
        _, rv = client.list_objects(NADS_PATH)
        api.add_nad(NS, "lan", None)
        api.update_nad(NS, "lan", {"type": "macvlan"})
        start = time.monotonic()
        events = list(client.watch(NADS_PATH, rv, timeout=1))
        assert 0.9 < time.monotonic() - start < 3.0
    kinds = [kind for kind, _ in events]
    assert kinds[:2] == ["ADDED", "MODIFIED"] and set(kinds[2:]) == {"BOOKMARK"}
    assert events[-1][1]["metadata"]["resourceVersion"] == api.nad(NS, "lan")["metadata"]["resourceVersion"]
    assert events[-1][1]["kind"] == "NetworkAttachmentDefinition"


def test_watch_with_a_field_selector_sees_only_this_nodes_pods(api: K8sServer, tmp_path: Path) -> None:
    """fieldSelector spec.nodeName=<node> keeps other nodes' pods out of the watch."""
    from multiplane.k8s.client import PODS_PATH

    with _client(api, tmp_path) as client:
        _, rv = client.list_objects(PODS_PATH, field_selector="spec.nodeName=mine")
        api.add_pod(NS, "theirs-1", node="other")
        api.add_pod(NS, "mine-1", node="mine")
        api.add_pod(NS, "theirs-2", node="other")
        api.delete_pod(NS, "mine-1")
        seen = _events(client, PODS_PATH, rv, 2, timeout=3, field_selector="spec.nodeName=mine")
    assert [(kind, name) for kind, name, _ in seen] == [("ADDED", "mine-1"), ("DELETED", "mine-1")]
    assert "fieldSelector=spec.nodeName%3Dmine" in api.requests[-1].query


def test_watch_from_a_too_old_resource_version_raises_gone(tmp_path: Path) -> None:
    """A resourceVersion older than the server's history ends the watch with Gone (410 Expired): relist."""
    from multiplane.k8s.client import PODS_PATH, Gone

    with K8sServer(history=3) as api:
        with _client(api, tmp_path) as client:
            _, rv = client.list_objects(PODS_PATH)
            for i in range(5):
                api.add_pod(NS, f"p{i}")
            with pytest.raises(Gone) as info:
                list(client.watch(PODS_PATH, rv, timeout=2))
            assert info.value.status == 410 and "too old resource version" in info.value.details
            _, fresh = client.list_objects(PODS_PATH)  # the relist's version is watchable
            api.add_pod(NS, "after")
            assert _events(client, PODS_PATH, fresh, 1, timeout=2)[0][:2] == ("ADDED", "after")


def test_watch_answered_with_http_410_raises_gone(tmp_path: Path) -> None:
    """A watch request answered 410 outright (a proxy, an older server) is Gone too; so is a list."""
    from multiplane.k8s.client import PODS_PATH, Gone

    with K8sServer() as api:
        with _client(api, tmp_path) as client:
            api.fail_next(1, 410)
            with pytest.raises(Gone):
                list(client.watch(PODS_PATH, "1001", timeout=2))
            api.fail_next(1, 410)
            with pytest.raises(Gone):
                client.list_objects(PODS_PATH)


def test_watch_ends_when_the_server_stops(api: K8sServer, tmp_path: Path) -> None:
    """Stopping the server ends the watch iterator (the caller watches again) instead of hanging or crashing."""
    from multiplane.k8s.client import PODS_PATH

    with _client(api, tmp_path) as client:
        _, rv = client.list_objects(PODS_PATH)
        api.add_pod(NS, "web")
        stream = client.watch(PODS_PATH, rv, timeout=30)
        assert next(stream)[0] == "ADDED"
        start = time.monotonic()
        timer = threading.Timer(0.2, api.stop)
        timer.start()
        try:
            assert [kind for kind, _ in stream if kind != "BOOKMARK"] == []
            assert time.monotonic() - start < 5.0
        finally:
            timer.join()


def test_watch_from_zero_starts_with_the_current_objects(api: K8sServer, tmp_path: Path) -> None:
    """resourceVersion "0" (any) begins with every current object as ADDED, then live changes."""
    from multiplane.k8s.client import PODS_PATH

    api.add_pod(NS, "a")
    api.add_pod(NS, "b")
    with _client(api, tmp_path) as client:
        stream = client.watch(PODS_PATH, "0", timeout=3)
        first = [next(stream), next(stream)]
        api.update_pod(NS, "a", annotations={"k": "v"})
        third = next(kv for kv in stream if kv[0] != "BOOKMARK")
        stream.close()
    assert [(k, o["metadata"]["name"]) for k, o in first] == [("ADDED", "a"), ("ADDED", "b")]
    assert (third[0], third[1]["metadata"]["name"]) == ("MODIFIED", "a")


def test_watch_rereads_the_token_after_a_401(tls_api: K8sServer, tmp_path: Path) -> None:
    """A watch refused with 401 re-reads the token file once, like every other request."""
    from multiplane.k8s.client import PODS_PATH

    token_file = tmp_path / "token"
    token_file.write_text("old-token")

    def rotate(req: Request) -> None:
        if req.token == "old-token":
            token_file.write_text("s3cret")

    tls_api.on_request = rotate
    with _client(tls_api, tmp_path, token_file=str(token_file)) as client:
        tls_api.add_pod(NS, "web")
        assert next(iter(client.watch(PODS_PATH, "0", timeout=2)))[0] == "ADDED"
    assert [r.status for r in tls_api.requests] == [401, 200]


# ---- on_error (the daemon's API error metrics) and abort (the daemon's shutdown) --------------------


def _hooked(api: K8sServer, tmp_path: Path, **kw: Any) -> tuple[KubeClient, list[int]]:
    """A client whose on_error hook records the statuses it hears."""
    heard: list[int] = []
    path = api.kubeconfig(tmp_path / "kubeconfig", **kw)
    client = KubeClient(load_kubeconfig(path), timeout=2.0, retry_budget=1.0, on_error=heard.append)
    return client, heard


def test_on_error_hears_every_failed_attempt(api: K8sServer, tmp_path: Path) -> None:
    """Each failed attempt is reported with its status, retried ones included; successes are not reported."""
    api.add_pod(NS, "web")
    client, heard = _hooked(api, tmp_path)
    with client:
        api.fail_next(2, 503)
        client.get_pod(NS, "web")
        assert heard == [503, 503]
        with pytest.raises(NotFound):
            client.get_pod(NS, "missing")
        assert heard == [503, 503, 404]
        api.fail_next(1, 409, method="PATCH")
        with pytest.raises(ApiError):
            client.set_pod_annotation(NS, "web", NETWORK_STATUS, "v")
        assert heard == [503, 503, 404, 409]


def test_on_error_hears_zero_when_nothing_answers(tmp_path: Path) -> None:
    """A refused connection is status 0, once per attempt within the retry budget."""
    with K8sServer() as api:
        client, heard = _hooked(api, tmp_path)
        api.stop()
        with pytest.raises(ApiError, match="cannot reach"):
            client.get_pod(NS, "web")
    assert len(heard) >= 2 and set(heard) == {0}


def test_on_error_hears_the_401_that_a_reread_token_cures(tls_api: K8sServer, tmp_path: Path) -> None:
    """A 401 followed by a successful retry with the re-read token is still one failed attempt."""
    token_file = tmp_path / "token"
    token_file.write_text("old-token")

    def rotate(req: Request) -> None:
        if req.token == "old-token":
            token_file.write_text("s3cret")

    tls_api.on_request = rotate
    tls_api.add_pod(NS, "web")
    client, heard = _hooked(tls_api, tmp_path, token_file=str(token_file))
    with client:
        client.get_pod(NS, "web")
    assert heard == [401]


def test_on_error_hears_failed_watches(tmp_path: Path) -> None:
    """A watch refused when opened, and a watch that ends with a 410 ERROR event, are reported with their status."""
    from multiplane.k8s.client import PODS_PATH, Gone

    with K8sServer(history=2) as api:
        client, heard = _hooked(api, tmp_path)
        with client:
            api.fail_next(1, 500)
            with pytest.raises(ApiError):
                list(client.watch(PODS_PATH, "1000", timeout=2))
            assert heard == [500]
            _, rv = client.list_objects(PODS_PATH)
            for i in range(4):
                api.add_pod(NS, f"mp-p{i}")
            with pytest.raises(Gone):
                list(client.watch(PODS_PATH, rv, timeout=2))
        assert heard == [500, 410]


def test_a_raising_on_error_hook_never_breaks_a_request(api: K8sServer, tmp_path: Path) -> None:
    """The hook's own exception is swallowed: the retry still succeeds and a 404 is still NotFound."""
    calls: list[int] = []

    def broken(status: int) -> None:
        calls.append(status)
        raise RuntimeError("mp-broken-hook")

    api.add_pod(NS, "web")
    path = api.kubeconfig(tmp_path / "kubeconfig")
    with KubeClient(load_kubeconfig(path), timeout=2.0, retry_budget=1.0, on_error=broken) as client:
        api.fail_next(1, 503)
        assert client.get_pod(NS, "web")["metadata"]["name"] == "web"
        with pytest.raises(NotFound):
            client.get_pod(NS, "missing")
    assert calls == [503, 404]


def test_abort_from_another_thread_ends_a_blocked_watch_at_once(api: K8sServer, tmp_path: Path) -> None:
    """A watch waiting for events (30 s timeout) ends within a second of abort(); later calls fail at once, unheard."""
    from multiplane.k8s.client import PODS_PATH

    client, heard = _hooked(api, tmp_path)
    _, rv = client.list_objects(PODS_PATH)
    stream = client.watch(PODS_PATH, rv, timeout=30)
    api.add_pod(NS, "web")
    assert next(stream)[0] == "ADDED"
    timer = threading.Timer(0.3, client.abort)
    start = time.monotonic()
    timer.start()
    try:
        assert [kind for kind, _ in stream if kind != "BOOKMARK"] == []
        assert time.monotonic() - start < 1.5
    finally:
        timer.join()
    sent = len(api.requests)
    with pytest.raises(ApiError, match="aborted") as info:
        client.get_pod(NS, "web")
    assert info.value.status == 0
    with pytest.raises(ApiError, match="aborted"):
        list(client.watch(PODS_PATH, rv, timeout=30))
    assert len(api.requests) == sent and heard == []


def test_abort_ends_a_request_waiting_for_its_answer(tmp_path: Path) -> None:
    """A GET whose answer is held 5 s fails with status 0 soon after abort(), without retrying."""
    with K8sServer() as api:
        api.add_pod(NS, "web")
        client, heard = _hooked(api, tmp_path)
        client.retry_budget = 10.0
        api.delay(5.0)
        timer = threading.Timer(0.3, client.abort)
        start = time.monotonic()
        timer.start()
        try:
            with pytest.raises(ApiError) as info:
                client.get_pod(NS, "web")
            assert time.monotonic() - start < 1.5
        finally:
            timer.join()
        assert info.value.status == 0 and heard == []
        assert len(api.requests) == 1


def test_tls_connects_racing_a_server_restart_leave_no_unclosed_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clients connecting over TLS while the server stops and starts (connections reset mid-connect) close every socket.

    Wrapping an already connected socket that the server has just reset can fail inside ssl
    without closing the SSLSocket it made; the client wraps before connecting instead.
    """
    import gc

    leaked: list[str] = []
    monkeypatch.setattr("sys.unraisablehook", lambda u: leaked.append(repr(u.exc_value)))
    with K8sServer(tls=True) as api:
        path = api.kubeconfig(tmp_path / "kubeconfig")
        done = threading.Event()

        def hammer() -> None:
            client = KubeClient(load_kubeconfig(path), timeout=1.0, retry_budget=0.0)
            while not done.is_set():
                try:
                    client.get_pod(NS, "web")
                except ApiError:
                    pass
                client.close()

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            for _ in range(60):
                time.sleep(0.02)
                api.stop()
                time.sleep(0.01)
                api.start()
        finally:
            done.set()
            for thread in threads:
                thread.join()
    gc.collect()
    assert leaked == []
    assert len({r.conn for r in api.requests}) > 10  # the clients did get through between restarts
