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
    import subprocess

    go = shutil.which("go")
    if go is None or not os.path.isdir("/usr/share/gocode/src/github.com/containernetworking/cni/libcni"):
        pytest.fail(
            "Go or Debian's libcni sources are missing: make setup installs golang-go and golang-github-appc-cni-dev"
        )
    root = tmp_path_factory.mktemp("mp-go")
    src = root / "src" / "cnidriver"
    src.mkdir(parents=True)
    shutil.copy(os.path.join(os.path.dirname(__file__), "cnidriver", "main.go"), src / "main.go")
    out = root / "cnidriver"
    env = dict(
        os.environ,
        GO111MODULE="off",
        GOPATH=f"{root}:/usr/share/gocode",
        GOPROXY="off",
        GOCACHE=str(root / "cache"),
        GOFLAGS="",
    )
    proc = subprocess.run([go, "build", "-o", str(out), "."], cwd=src, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"building the libcni driver failed:\n{proc.stderr}")
    return str(out)
