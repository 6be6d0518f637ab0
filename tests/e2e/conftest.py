"""Fixtures shared by the end-to-end tests (real container runtimes calling the built dist/multiplane)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.images import busybox_oci_tar

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / "dist" / "multiplane"
PAUSE_IMAGE = "localhost/mp-pause:latest"


@pytest.fixture(scope="session")
def multiplane_binary() -> Path:
    """The built single binary; missing is a failure (`make test` builds it first), never a skip."""
    if not os.access(BINARY, os.X_OK):
        pytest.fail(f"{BINARY} is missing: run `make binary` (make test does)")
    return BINARY


@pytest.fixture(scope="session")
def pause_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An OCI image-layout tarball of busybox running `sleep 100000`, named localhost/mp-pause:latest."""
    try:
        return busybox_oci_tar(tmp_path_factory.mktemp("mp-image") / "mp-pause.tar", name=PAUSE_IMAGE)
    except FileNotFoundError as exc:
        pytest.fail(str(exc))
