"""Fixtures for tests that build real namespaces (root)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.topology import Topology


@pytest.fixture
def topo(tmp_path: Path) -> Iterator[Topology]:
    """A veth master, a LAN host namespace (10.66.0.1/24, fd00:66::1/64) and two pod namespaces."""
    t = Topology(tmp_path, pods=2, lan_addrs=("10.66.0.1/24", "fd00:66::1/64"))
    try:
        yield t
    finally:
        t.close()
