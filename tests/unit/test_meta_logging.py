"""The meta-plugin logs what it did and what failed to its logFile (never to stdout)."""

from __future__ import annotations

import io
import json
import os
import re
import sys
from pathlib import Path

import pytest

from multiplane import logs, skel
from multiplane.errors import CniError
from multiplane.plugins import REGISTRY
from tests.unit.test_meta_runner import Spies, World


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


# ---- issue 12: one logger, debug, tracebacks, unknown level, rotation ---------------------------


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path, Spies(tmp_path))


POD_ARGS = "K8S_POD_NAMESPACE=test;K8S_POD_NAME=mp-pod;K8S_POD_INFRA_CONTAINER_ID=mp-c1"
# A host-local network whose gateway is outside its subnet: host-local accepts it with a warning.
OFF_SUBNET = {
    "cniVersion": "1.0.0",
    "name": "mp-hl",
    "type": "host-local",
    "ipam": {"type": "host-local", "subnet": "10.77.0.0/24", "gateway": "10.78.0.1"},
}


def _seed_host_local(world: World) -> None:
    hl = {**OFF_SUBNET, "ipam": {**OFF_SUBNET["ipam"], "dataDir": str(world.root / "mp-hl-data")}}
    world.seed_cache(
        "mp-c1",
        [
            ("mp-cluster", {"cniVersion": "0.4.0", "name": "mp-cluster", "type": "mp-spy1"}, "eth0", None),
            ("test/mp-hl", hl, "net1", None),
        ],
    )


def test_in_process_builtin_messages_reach_the_log_file(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """host-local run in-process by the meta-plugin warns into logFile, not onto stderr (logToStderr off)."""
    _seed_host_local(world)
    log = world.root / "mp-meta.log"
    assert world.run("DEL", {**world.meta, "logFile": str(log)}, args=POD_ARGS) is None
    text = log.read_text()
    assert "[warning] host-local: range set 0: gateway 10.78.0.1 is outside subnet 10.77.0.0/24" in text
    assert capsys.readouterr().err == ""
    assert logs.get().path == ""  # the meta-plugin's logger is not left installed


def test_standalone_builtin_still_warns_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same host-local run as its own binary (skel.run, no meta-plugin) writes the warning to stderr."""
    conf = {**OFF_SUBNET, "ipam": {**OFF_SUBNET["ipam"], "dataDir": str(tmp_path / "mp-hl-data")}}
    env = {**_env("DEL"), "CNI_IFNAME": "net1"}
    out = io.StringIO()
    assert skel.run(REGISTRY["multiplane-host-local"], env, json.dumps(conf).encode(), out, sys.stderr) == 0
    assert "[warning] host-local: range set 0: gateway 10.78.0.1 is outside subnet" in capsys.readouterr().err


def test_debug_shows_the_plan(world: World) -> None:
    """logLevel debug: each delegate of the plan (name, types, ifname, master) is logged, even when ADD then fails."""
    log = world.root / "mp-meta.log"
    conf = {**world.meta, "logFile": str(log), "logLevel": "debug"}
    world.fails("ADD", conf, netns="/var/run/netns/mp-absent", args=f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-net1")
    text = log.read_text()
    assert "[debug] test/mp-pod: plan of 2 delegate(s)" in text
    assert "plan [0] mp-cluster (CNI name 'mp-cluster', cniVersion 0.4.0): type mp-spy1, ifname eth0, master" in text
    assert "plan [1] test/mp-net1 (CNI name 'mp-net1', cniVersion 1.0.0): type mp-spy2, ifname net1\n" in text
    assert re.search(r"\[debug\] test/mp-pod: ADD of container mp-c1: failed after \d+\.\d ms", text)


def test_debug_shows_each_delegate_call_where_it_ran_and_how_long(world: World) -> None:
    """DEL at debug: each call's network, type, command, `in-process` or `exec <path>`, duration and outcome; the total."""
    _seed_host_local(world)
    log = world.root / "mp-meta.log"
    world.run("DEL", {**world.meta, "logFile": str(log), "logLevel": "debug"}, args=POD_ARGS)
    text = log.read_text()
    spy = world.spies.bin / "mp-spy1"
    assert re.search(r"delegate mp-hl \(net1\): host-local DEL in-process: ok after \d+\.\d ms", text)
    assert re.search(
        rf"delegate mp-cluster \(eth0\): mp-spy1 DEL exec {re.escape(str(spy))}: ok after \d+\.\d ms", text
    )
    assert re.search(rf"exec {re.escape(str(spy))} \(DEL\) exited 0 after \d+\.\d ms", text)
    assert re.search(r"test/mp-pod: DEL of container mp-c1: done after \d+\.\d ms", text)


def test_debug_shows_a_delegate_error(world: World) -> None:
    """A failing delegate call is logged at debug with its error text."""
    _seed_host_local(world)
    world.spies.fail("mp-spy1", "DEL", 11, "mp-spy-broke")
    log = world.root / "mp-meta.log"
    world.fails("DEL", {**world.meta, "logFile": str(log), "logLevel": "debug"}, args=POD_ARGS)
    assert re.search(
        r"delegate mp-cluster \(eth0\): mp-spy1 DEL exec \S+: failed after \d+\.\d ms: mp-spy-broke", log.read_text()
    )


def test_nothing_at_debug_is_written_at_the_default_level(world: World) -> None:
    """At the default level (error) a clean DEL writes nothing at all."""
    _seed_host_local(world)
    log = world.root / "mp-meta.log"
    world.run("DEL", {**world.meta, "logFile": str(log)}, args=POD_ARGS)
    assert "[debug]" not in log.read_text()


def test_a_bug_in_an_in_process_builtin_leaves_a_traceback_in_the_log(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Python error inside in-process host-local: traceback in logFile, the DEL answers a CNI error on stdout."""
    from multiplane.plugins.host_local import HostLocal

    def broken(self: object, req: object) -> None:
        raise ZeroDivisionError("mp-injected")

    monkeypatch.setattr(HostLocal, "delete", broken)
    _seed_host_local(world)
    log = world.root / "mp-meta.log"
    out = io.StringIO()
    stdin = json.dumps({**world.meta, "logFile": str(log)}).encode()
    assert skel.run(REGISTRY["multiplane"], world.env("DEL", args=POD_ARGS), stdin, out, io.StringIO()) == 1
    answer = json.loads(out.getvalue())
    assert "internal error: ZeroDivisionError: mp-injected" in answer["msg"]
    text = log.read_text()
    assert "[panic] multiplane-host-local DEL (in-process): internal error:\nTraceback (most recent call last):" in text
    assert 'raise ZeroDivisionError("mp-injected")' in text


def test_a_bug_in_the_meta_plugin_leaves_a_traceback_in_the_log(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Python error in the meta-plugin itself: traceback in logFile (not only on stderr), code 999 on stdout."""
    from multiplane.plugins.meta import plugin as meta_plugin

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("mp-injected")

    monkeypatch.setattr(meta_plugin, "plan", broken)
    log = world.root / "mp-meta.log"
    out, err = io.StringIO(), io.StringIO()
    stdin = json.dumps({**world.meta, "logFile": str(log)}).encode()
    assert skel.run(REGISTRY["multiplane"], world.env("ADD", args=POD_ARGS), stdin, out, err) == 1
    answer = json.loads(out.getvalue())
    assert (answer["code"], answer["msg"]) == (999, "internal error: KeyError: 'mp-injected'")
    text = log.read_text()
    assert "[panic] test/mp-pod: ADD of container mp-c1: internal error:\nTraceback" in text
    assert "KeyError: 'mp-injected'" in text
    assert "[error] test/mp-pod: ADD of container mp-c1 failed: internal error: KeyError" in text
    assert "Traceback" not in err.getvalue()  # logToStderr is off: it went where the operator asked


def test_unknown_log_level_warns_once_and_falls_back_to_error(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """logLevel "chatty": one warning in logFile and one on stderr (logToStderr off), then `error` behaviour."""
    log = world.root / "mp-meta.log"
    world.run("DEL", {**world.meta, "logFile": str(log), "logLevel": "chatty"}, args=POD_ARGS)
    text = log.read_text()
    assert text.count("[warning] unknown logLevel 'chatty'") == 1
    assert capsys.readouterr().err.count("unknown logLevel 'chatty'") == 1
    assert "deleted" not in text  # a verbose line: not shown at error


def test_log_options_rotate_the_meta_plugins_log(world: World) -> None:
    """logOptions from 00-multiplane.conf reach the logger: a tiny maxSize at debug rotates into gzipped backups."""
    _seed_host_local(world)
    log = world.root / "mp-meta.log"
    conf = {
        **world.meta,
        "logFile": str(log),
        "logLevel": "debug",
        "logOptions": {"maxSize": 0.0005, "maxBackups": 2, "maxAge": 1, "compress": True},
    }
    for _ in range(3):
        world.run("DEL", conf, args=POD_ARGS)
        _seed_host_local(world)
    backups = sorted(p.name for p in world.root.iterdir() if re.match(r"mp-meta-.*\.log\.gz$", p.name))
    assert len(backups) == 2, backups
