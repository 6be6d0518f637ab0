"""Shared test set-up: the `root` marker gate, the reference binaries, and CNI invocation helpers."""

from __future__ import annotations

import os
import shutil

import pytest

REFERENCE_DIR = "/usr/lib/cni"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("root") and os.geteuid() != 0:
            # Never a silent skip: a root test that cannot run is a failure the operator sees.
            item.add_marker(pytest.mark.usefixtures("_require_root"))


@pytest.fixture(autouse=True)
def _no_in_cluster_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test finds a real cluster through this process's environment (the meta-plugin would use it)."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)


@pytest.fixture
def _require_root() -> None:
    pytest.fail("this test needs root: run the suite with `make test` as root")


@pytest.fixture(scope="session")
def reference_host_local() -> str:
    """Path of Debian's reference host-local; a missing binary is an error, not a skip."""
    path = os.path.join(REFERENCE_DIR, "host-local")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: install Debian's containernetworking-plugins (make setup does)")
    return path


@pytest.fixture(scope="session")
def ip_tool() -> str:
    path = shutil.which("ip")
    if path is None:
        pytest.fail("iproute2 `ip` is missing: make setup installs it")
    return path


@pytest.fixture(scope="session")
def cnidriver(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The libcni runtime driver (tests/cnidriver), built from source with Debian's Go and libcni."""
    from tests.cnidriver.build import BuildError, build_driver

    try:
        return build_driver(tmp_path_factory.mktemp("mp-go"))
    except BuildError as exc:
        pytest.fail(str(exc))
