"""The meta-plugin logs what it did and what failed to its logFile (never to stdout)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from multiplane import skel
from multiplane.errors import CniError
from multiplane.plugins import REGISTRY


def _env(command: str) -> dict[str, str]:
    return {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "mp-log1",
        "CNI_NETNS": "/var/run/netns/mp-none",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/usr/lib/cni",
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=mp-ns;K8S_POD_NAME=mp-pod",
    }


def _conf(tmp_path: Path, **extra: object) -> bytes:
    conf = {
        "cniVersion": "1.0.0",
        "name": "mp-meta",
        "type": "multiplane",
        "clusterNetwork": str(tmp_path / "mp-missing.conflist"),
        "cniDir": str(tmp_path / "mp-state"),
        "localNADDir": str(tmp_path / "mp-nads"),
        "localPodDir": str(tmp_path / "mp-pods"),
        "logFile": str(tmp_path / "mp.log"),
        "logToStderr": False,
        **extra,
    }
    return json.dumps(conf).encode()


def test_failed_add_is_logged_with_the_pod_and_the_reason(tmp_path: Path) -> None:
    """A failing ADD writes one error line naming the pod, the container and the reason to logFile."""
    with pytest.raises(CniError) as info:
        skel.dispatch(REGISTRY["multiplane"], _env("ADD"), _conf(tmp_path))
    log = (tmp_path / "mp.log").read_text()
    assert "[error] mp-ns/mp-pod: ADD of container mp-log1 failed:" in log
    assert info.value.msg in log


def test_del_is_logged_at_verbose_level(tmp_path: Path) -> None:
    """A DEL logs how many attachments it removed when logLevel is verbose, and nothing at the default level."""
    skel.dispatch(REGISTRY["multiplane"], _env("DEL"), _conf(tmp_path, logLevel="verbose"))
    assert "deleted 0 attachment(s) of container mp-log1" in (tmp_path / "mp.log").read_text()
    os.unlink(tmp_path / "mp.log")
    skel.dispatch(REGISTRY["multiplane"], _env("DEL"), _conf(tmp_path))
    assert not (tmp_path / "mp.log").exists() or "deleted" not in (tmp_path / "mp.log").read_text()
