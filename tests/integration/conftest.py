"""Fixtures for tests that build real namespaces (root), and the two front doors a CNI call can take.

Front doors (issue 10): a suite marked `pytest.mark.usefixtures("via_front_door")` runs every
test twice, `[process]` and `[daemon]`, with the same assertions:

* process: the one-shot path a node without a daemon takes: MULTIPLANE_SOCKET names a path
  where no daemon listens, so the client finds none and runs the call in-process.
* daemon: a real `multiplane daemon` (tests/daemon_harness.py) started once per module, and
  MULTIPLANE_DAEMON=require: a call it does not serve fails with code 11, never falls back.
  It has no cluster of its own: a call reads local NAD files or builds a client from its own
  config's `kubeconfig`, as the one-shot process does.
* daemon-cluster, for tests marked `kube_api` (they talk to the in-repo API server) as well:
  the daemon with a cluster of its own (`--kubeconfig` at the test's API server, watch caches
  synced before the first call), which serves the pod and NADs of every call from its caches
  and writes network-status with its own client (FrontDoor.cluster_daemon, used by the
  suites' `api` fixtures).

`via_front_door` puts the front door's variables into tests.cni.FRONT_DOOR_ENV, which every
helper that runs a plugin or a runtime adds to the call's environment. After a daemon test
the daemon must still be alive; when a test fails, the report carries what the daemons
that served it logged meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import cni, daemon_harness
from tests.daemon_harness import Daemon, FrontDoor
from tests.topology import Topology


@pytest.fixture
def topo(tmp_path: Path) -> Iterator[Topology]:
    """A veth master, a LAN host namespace (10.66.0.1/24, fd00:66::1/64) and two pod namespaces."""
    t = Topology(tmp_path, pods=2, lan_addrs=("10.66.0.1/24", "fd00:66::1/64"))
    try:
        yield t
    finally:
        t.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "kube_api: the test's calls read a Kubernetes API server; they also run through a daemon watching it",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "front_door" in metafunc.fixturenames:
        doors = ["process", "daemon"]
        if metafunc.definition.get_closest_marker("kube_api"):
            doors.append("daemon-cluster")
        metafunc.parametrize("front_door", doors, indirect=True, scope="module")


@pytest.fixture(scope="module")
def front_door(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FrontDoor]:
    """The front door of this module's calls; the daemon serves the whole module, then must stop cleanly."""
    if request.param == "process":
        absent = tmp_path_factory.mktemp("mp-nodaemon") / "mp.sock"
        yield FrontDoor("process", {"MULTIPLANE_SOCKET": str(absent), "MULTIPLANE_DAEMON": "auto"})
        return
    with Daemon() as daemon:
        yield FrontDoor(request.param, daemon.env, daemon, cluster=request.param == "daemon-cluster")


@pytest.fixture
def via_front_door(front_door: FrontDoor, monkeypatch: pytest.MonkeyPatch) -> Iterator[FrontDoor]:
    """This test's calls go through `front_door` (see the module docstring)."""
    monkeypatch.setattr(cni, "FRONT_DOOR_ENV", dict(front_door.env))
    started = front_door.cluster_daemons
    yield front_door
    if front_door.daemon is not None:
        front_door.daemon.check_alive()
    if front_door.cluster and front_door.cluster_daemons == started:
        pytest.fail("a kube_api test ran under the daemon-cluster front door without FrontDoor.cluster_daemon()")


@pytest.fixture(autouse=True)
def _daemon_logs() -> None:
    """Each test's failure report shows only what the daemons logged during that test."""
    daemon_harness.begin_test()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for daemon in daemon_harness.active():
            report.sections.append((f"multiplane daemon log ({daemon.socket})", daemon.log_since_mark() or "(empty)"))
