"""Running delegate networks like libcni (multiplane.plugins.meta.runner.Invoker), and the meta-plugin's
DEL/CHECK/GC/STATUS and early ADD failures end to end through `skel.dispatch` (no root needed).

The delegates are real executables: small /bin/sh spies in a tmp bin dir that record their
environment and stdin and print a canned answer (no mocks). Vector ids are those of
/work/shared/research/cni-spec.md §9.4/§9.5 (T59–T80) and multus.md §10 (cases 39–58).
ADD paths that need a pod network namespace are in tests/integration/test_meta_spy.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from multiplane import skel
from multiplane.errors import CniError, InvalidConfig
from multiplane.plugins import REGISTRY
from multiplane.plugins.meta import cache
from multiplane.plugins.meta.networks import NetworkConfig
from multiplane.plugins.meta.plan import Delegate
from multiplane.plugins.delegation import BUILTINS
from multiplane.plugins.meta.runner import Invoker
from multiplane.spec.result import Result
from tests.k8s_server import K8sServer

# ---- spy plugins ----------------------------------------------------------------------------------

_SPY = """#!/bin/sh
# multiplane test spy: record the call, then answer as told by the control files.
n=$(ls '{log}' | wc -l)
d='{log}'/$(printf %05d "$n")
mkdir "$d"
printf %s '{name}' > "$d/name"
env > "$d/env"
cat > "$d/stdin"
ctl='{ctl}/{name}'
if [ -f "$ctl.$CNI_COMMAND.out" ]; then
    cat "$ctl.$CNI_COMMAND.out"
    exit "$(cat "$ctl.$CNI_COMMAND.rc")"
fi
if [ "$CNI_COMMAND" = ADD ] && [ -f "$ctl.result" ]; then
    sed -e "s|@IFNAME@|$CNI_IFNAME|g" -e "s|@NETNS@|$CNI_NETNS|g" "$ctl.result"
fi
exit 0
"""


class Call:
    """One recorded spy invocation."""

    def __init__(self, directory: Path) -> None:
        self.name = (directory / "name").read_text()
        self.env = dict(line.split("=", 1) for line in (directory / "env").read_text().splitlines() if "=" in line)
        self.raw = (directory / "stdin").read_bytes()
        self.stdin: dict[str, Any] = json.loads(self.raw)
        self.command = self.env["CNI_COMMAND"]
        self.ifname = self.env.get("CNI_IFNAME", "")

    def __repr__(self) -> str:
        return f"Call({self.name} {self.command} {self.ifname})"


class Spies:
    """Spy executables in `bin` (nothing else is there); calls are kept in order."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "mp-spybin"
        self.log = root / "mp-spylog"
        self.ctl = root / "mp-spyctl"
        for d in (self.bin, self.log, self.ctl):
            d.mkdir()

    def add(self, name: str, result: dict[str, Any] | None = None) -> None:
        """Install spy `name`; on ADD it prints `result` (@IFNAME@/@NETNS@ replaced)."""
        path = self.bin / name
        path.write_text(_SPY.format(log=self.log, ctl=self.ctl, name=name))
        path.chmod(0o755)
        if result is not None:
            (self.ctl / f"{name}.result").write_text(json.dumps(result))

    def fail(
        self, name: str, command: str, code: int = 11, msg: str = "expected plugin failure", details: str = ""
    ) -> None:
        """From now on `name` fails `command` with a CNI error object."""
        err = {"cniVersion": "1.0.0", "code": code, "msg": msg}
        if details:
            err["details"] = details
        (self.ctl / f"{name}.{command}.out").write_text(json.dumps(err))
        (self.ctl / f"{name}.{command}.rc").write_text("1")

    def calls(self) -> list[Call]:
        return [Call(d) for d in sorted(self.log.iterdir())]

    def seen(self) -> list[tuple[str, str, str]]:
        """(spy, command, CNI_IFNAME) of every call, in order."""
        return [(c.name, c.command, c.ifname) for c in self.calls()]

    def reset(self) -> None:
        for d in self.log.iterdir():
            for f in d.iterdir():
                f.unlink()
            d.rmdir()


def spy_result(ip: str, version: str = "1.0.0", gateway: str | None = None) -> dict[str, Any]:
    """A one-interface result on CNI_IFNAME in CNI_NETNS with one IPv4 address (and a default route via gateway)."""
    ipc: dict[str, Any] = {"address": ip, "interface": 0}
    if version in ("0.3.0", "0.3.1", "0.4.0"):
        ipc["version"] = "4"
    if gateway:
        ipc["gateway"] = gateway
    out: dict[str, Any] = {
        "cniVersion": version,
        "interfaces": [{"name": "@IFNAME@", "mac": "c2:11:22:33:44:66", "sandbox": "@NETNS@"}],
        "ips": [ipc],
    }
    if gateway:
        out["routes"] = [{"dst": "0.0.0.0/0", "gw": gateway}]
    return out


@pytest.fixture
def spies(tmp_path: Path) -> Spies:
    return Spies(tmp_path)


def net(obj: dict[str, Any]) -> NetworkConfig:
    return NetworkConfig.parse(json.dumps(obj).encode(), "test")


def env(spies: Spies, **extra: str) -> dict[str, str]:
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CNI_CONTAINERID": "mp-c1",
        "CNI_NETNS": "/var/run/netns/mp-none",
        "CNI_IFNAME": "net1",
        "CNI_ARGS": "IgnoreUnknown=true;K8S_POD_NAMESPACE=test",
        "CNI_PATH": "/mp-should-be-replaced",
        "MP_MARK": "kept",
    }
    base.update(extra)
    return base


SPYNET = {
    "cniVersion": "1.0.0",
    "name": "mp-spynet",
    "plugins": [
        {"type": "mp-spy1", "capabilities": {"portMappings": True, "mac": False}, "custom": {"b": 1, "a": 2}},
        {"type": "mp-spy2", "capabilities": {"mac": True}, "runtimeConfig": {"preset": 1}},
    ],
}
CAP_ARGS = {
    "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
    "mac": "c2:11:22:33:44:66",
    "bandwidth": {"ingressRate": 2048, "ingressBurst": 1600},
}


# ---- capability args (T59) --------------------------------------------------------------------------


def test_t59_runtime_config_only_for_declared_and_supplied_capabilities(spies: Spies) -> None:
    """T59: spy1 gets runtimeConfig {portMappings} and keeps capabilities; spy2 gets {mac}, its `preset` replaced; bandwidth goes nowhere."""
    spies.add("mp-spy1", spy_result("10.1.0.2/24"))
    spies.add("mp-spy2", spy_result("10.1.0.3/24"))
    Invoker([str(spies.bin)]).add(net(SPYNET), env(spies), CAP_ARGS, None)
    first, second = spies.calls()
    assert first.raw == (
        b'{"capabilities":{"mac":false,"portMappings":true},"cniVersion":"1.0.0","custom":{"a":2,"b":1},'
        b'"name":"mp-spynet","runtimeConfig":{"portMappings":[{"containerPort":80,"hostPort":8080,"protocol":"tcp"}]},'
        b'"type":"mp-spy1"}'
    )
    assert second.stdin["runtimeConfig"] == {"mac": "c2:11:22:33:44:66"}
    assert second.stdin["capabilities"] == {"mac": True}


def test_author_runtime_config_stays_when_no_capability_matches(spies: Spies) -> None:
    """A plugin whose declared capabilities were not supplied gets no injected runtimeConfig; its own is left alone."""
    spies.add("mp-spy1", spy_result("10.1.0.2/24"))
    conf = net(
        {
            "cniVersion": "1.0.0",
            "name": "mp-n",
            "type": "mp-spy1",
            "capabilities": {"ips": True},
            "runtimeConfig": {"preset": 1},
        }
    )
    Invoker([str(spies.bin)]).add(conf, env(spies), {"mac": "c2:11:22:33:44:66"}, None)
    assert spies.calls()[0].stdin["runtimeConfig"] == {"preset": 1}


def test_no_capabilities_means_no_runtime_config(spies: Spies) -> None:
    """A plugin that declares nothing gets no runtimeConfig even when every capability arg is supplied."""
    spies.add("mp-spy1", spy_result("10.1.0.2/24"))
    Invoker([str(spies.bin)]).add(
        net({"cniVersion": "1.0.0", "name": "mp-n", "type": "mp-spy1"}), env(spies), CAP_ARGS, None
    )
    assert "runtimeConfig" not in spies.calls()[0].stdin


# ---- ADD chaining (T60, T62–T64) --------------------------------------------------------------------


def test_t60_conflist_add_chains_prev_result_and_injects_name_and_version(spies: Spies) -> None:
    """T60: spy1 has no prevResult, spy2's prevResult is spy1's result; both get the list's name and cniVersion; spy2's result is returned."""
    spies.add("mp-spy1", spy_result("10.1.0.2/24"))
    spies.add("mp-spy2", spy_result("10.1.0.3/24"))
    conf = net(
        {
            "cniVersion": "1.0.0",
            "name": "mp-spynet",
            "plugins": [{"type": "mp-spy1", "name": "ignored", "cniVersion": "0.3.1"}, {"type": "mp-spy2"}],
        }
    )
    got = Invoker([str(spies.bin)]).add(conf, env(spies, CNI_NETNS="/var/run/netns/mp-x"), {}, None)
    first, second = spies.calls()
    assert "prevResult" not in first.stdin
    assert second.stdin["prevResult"] == {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "net1", "mac": "c2:11:22:33:44:66", "sandbox": "/var/run/netns/mp-x"}],
        "ips": [{"interface": 0, "address": "10.1.0.2/24"}],
    }
    assert [(c.stdin["name"], c.stdin["cniVersion"]) for c in (first, second)] == [("mp-spynet", "1.0.0")] * 2
    assert [str(ip.address) for ip in got.ips] == ["10.1.0.3/24"]


def test_prev_result_is_converted_to_the_list_version(spies: Spies) -> None:
    """A 0.3.1 answer from spy1 reaches spy2 converted to the list's 0.4.0, and the returned result is in 0.4.0 too."""
    spies.add("mp-spy1", spy_result("10.1.0.2/24", version="0.3.1"))
    spies.add("mp-spy2", {"ips": [{"address": "10.1.0.3/24"}]})
    conf = net({"cniVersion": "0.4.0", "name": "mp-spynet", "plugins": [{"type": "mp-spy1"}, {"type": "mp-spy2"}]})
    got = Invoker([str(spies.bin)]).add(conf, env(spies), {}, None)
    prev = spies.calls()[1].stdin["prevResult"]
    assert prev["cniVersion"] == "0.4.0" and prev["ips"][0]["version"] == "4"
    assert got.cni_version == "0.4.0"


def test_t63_result_without_version_is_the_config_version(spies: Spies) -> None:
    """T63: `{"ips":[...]}` without cniVersion is accepted as a result in the config's version."""
    spies.add("mp-spy1", {"ips": [{"address": "10.1.0.2/24"}]})
    got = Invoker([str(spies.bin)]).add(
        net({"cniVersion": "1.0.0", "name": "mp-n", "type": "mp-spy1"}), env(spies), {}, None
    )
    assert got.cni_version == "1.0.0" and str(got.ips[0].address) == "10.1.0.2/24"


def test_t62_empty_add_output_is_an_unmarshal_error(spies: Spies) -> None:
    """T62: a delegate that prints nothing on ADD fails with libcni's unmarshal text."""
    spies.add("mp-spy1")
    with pytest.raises(CniError, match="failed to unmarshal raw result: unexpected end of JSON input"):
        Invoker([str(spies.bin)]).add(
            net({"cniVersion": "1.0.0", "name": "mp-n", "type": "mp-spy1"}), env(spies), {}, None
        )


def test_t64_delegate_error_code_is_kept_and_the_chain_stops(spies: Spies) -> None:
    """T64: spy1 failing with code 11 raises code 11 with its msg and details; spy2 never runs."""
    spies.add("mp-spy1", spy_result("10.1.0.2/24"))
    spies.add("mp-spy2", spy_result("10.1.0.3/24"))
    spies.fail("mp-spy1", "ADD", 11, "try again", "lock busy")
    conf = net({"cniVersion": "1.0.0", "name": "mp-spynet", "plugins": [{"type": "mp-spy1"}, {"type": "mp-spy2"}]})
    with pytest.raises(CniError) as info:
        Invoker([str(spies.bin)]).add(conf, env(spies), {}, None)
    assert (info.value.error_code, info.value.msg, info.value.details) == (11, "try again", "lock busy")
    assert spies.seen() == [("mp-spy1", "ADD", "net1")]


def test_delegate_env_has_command_and_cni_path_and_keeps_the_rest(spies: Spies) -> None:
    """Each delegate gets CNI_COMMAND and CNI_PATH (binDir then CNI_PATH, joined) set, everything else as given."""
    spies.add("mp-spy1", spy_result("10.1.0.2/24"))
    invoker = Invoker([str(spies.bin), "/mp-other"])
    invoker.add(
        net({"cniVersion": "1.0.0", "name": "mp-n", "type": "mp-spy1"}), env(spies, CNI_COMMAND="DEL"), {}, None
    )
    seen = spies.calls()[0].env
    assert seen["CNI_COMMAND"] == "ADD"
    assert seen["CNI_PATH"] == f"{spies.bin}:/mp-other"
    assert (seen["CNI_CONTAINERID"], seen["CNI_IFNAME"], seen["CNI_NETNS"]) == (
        "mp-c1",
        "net1",
        "/var/run/netns/mp-none",
    )
    assert (seen["CNI_ARGS"], seen["MP_MARK"]) == ("IgnoreUnknown=true;K8S_POD_NAMESPACE=test", "kept")


def test_missing_plugin_names_the_search_path(spies: Spies) -> None:
    """A type found in no directory fails with libcni's text listing binDir and CNI_PATH."""
    with pytest.raises(CniError) as info:
        Invoker([str(spies.bin), "/mp-other"]).add(
            net({"cniVersion": "1.0.0", "name": "mp-n", "type": "mp-nope"}), env(spies), {}, None
        )
    assert info.value.msg == f'failed to find plugin "mp-nope" in path [{spies.bin} /mp-other]'


# ---- cni-args (cases 39–41) ------------------------------------------------------------------------


def test_case39_cni_args_into_a_conf_without_args(spies: Spies) -> None:
    """Case 39: cni-args {"args1":"val1"} appear as args.cni.args1 in the delegate's stdin."""
    spies.add("mp-spy1", spy_result("10.1.0.2/24"))
    Invoker([str(spies.bin)]).add(
        net({"cniVersion": "1.0.0", "name": "mp-n", "type": "mp-spy1"}), env(spies), {}, {"args1": "val1"}
    )
    assert spies.calls()[0].stdin["args"] == {"cni": {"args1": "val1"}}


def test_case40_cni_args_override_the_confs_own(spies: Spies) -> None:
    """Case 40: annotation cni-args override the NAD's args.cni key by key; other args keys stay."""
    spies.add("mp-spy1", spy_result("10.1.0.2/24"))
    conf = net(
        {
            "cniVersion": "1.0.0",
            "name": "mp-n",
            "type": "mp-spy1",
            "args": {"cni": {"args0": "val0", "args1": "val1"}, "mp-other": {"x": 1}},
        }
    )
    Invoker([str(spies.bin)]).add(conf, env(spies), {}, {"args1": "val1a"})
    assert spies.calls()[0].stdin["args"] == {"cni": {"args0": "val0", "args1": "val1a"}, "mp-other": {"x": 1}}


def test_case41_cni_args_reach_every_plugin_of_a_conflist(spies: Spies) -> None:
    """Case 41: for a conflist every plugin gets args.cni from the selection."""
    spies.add("mp-spy1", spy_result("10.1.0.2/24"))
    spies.add("mp-spy2", spy_result("10.1.0.3/24"))
    conf = net({"cniVersion": "1.0.0", "name": "mp-n", "plugins": [{"type": "mp-spy1"}, {"type": "mp-spy2"}]})
    Invoker([str(spies.bin)]).add(conf, env(spies), {}, {"args1": "val1"})
    assert [c.stdin["args"] for c in spies.calls()] == [{"cni": {"args1": "val1"}}] * 2


def test_no_cni_args_leaves_args_alone(spies: Spies) -> None:
    """Without cni-args the conf's own args pass through unchanged (and none are added)."""
    spies.add("mp-spy1", spy_result("10.1.0.2/24"))
    spies.add("mp-spy2", spy_result("10.1.0.3/24"))
    conf = net(
        {
            "cniVersion": "1.0.0",
            "name": "mp-n",
            "plugins": [{"type": "mp-spy1", "args": {"cni": {"a": "b"}}}, {"type": "mp-spy2"}],
        }
    )
    Invoker([str(spies.bin)]).add(conf, env(spies), {}, None)
    first, second = spies.calls()
    assert first.stdin["args"] == {"cni": {"a": "b"}} and "args" not in second.stdin


# ---- DEL and CHECK (T61) ----------------------------------------------------------------------------


def cached(ip: str = "10.1.0.9/24", version: str = "1.0.0") -> Result:
    return Result.parse(
        {
            "cniVersion": version,
            "interfaces": [{"name": "net1", "sandbox": "/x"}],
            "ips": [{"address": ip, "interface": 0}],
        },
        version,
    )


LIST2 = {"cniVersion": "1.0.0", "name": "mp-spynet", "plugins": [{"type": "mp-spy1"}, {"type": "mp-spy2"}]}


def test_t61_del_runs_in_reverse_with_the_cached_result(spies: Spies) -> None:
    """T61: DEL runs spy2 then spy1, both with prevResult = the cached result, CNI_NETNS passed as given (even empty)."""
    spies.add("mp-spy1")
    spies.add("mp-spy2")
    Invoker([str(spies.bin)]).delete(net(LIST2), env(spies, CNI_NETNS=""), CAP_ARGS, None, cached())
    calls = spies.calls()
    assert [(c.name, c.command) for c in calls] == [("mp-spy2", "DEL"), ("mp-spy1", "DEL")]
    assert all(c.stdin["prevResult"] == cached().to_dict("1.0.0") for c in calls)
    assert all(c.env["CNI_NETNS"] == "" for c in calls)


def test_t61_del_without_cache_has_no_prev_result(spies: Spies) -> None:
    """T61: a DEL with no cached result (a second DEL) sends no prevResult key."""
    spies.add("mp-spy1")
    spies.add("mp-spy2")
    Invoker([str(spies.bin)]).delete(net(LIST2), env(spies), {}, None, None)
    assert [("prevResult" in c.stdin) for c in spies.calls()] == [False, False]


def test_del_before_0_4_0_sends_no_prev_result(spies: Spies) -> None:
    """A 0.3.1 list gets no prevResult on DEL even when a result is cached (libcni adds it from 0.4.0)."""
    spies.add("mp-spy1")
    spies.add("mp-spy2")
    Invoker([str(spies.bin)]).delete(
        net({**LIST2, "cniVersion": "0.3.1"}), env(spies), {}, None, cached(version="0.3.1")
    )
    calls = spies.calls()
    assert [c.name for c in calls] == ["mp-spy2", "mp-spy1"]
    assert not any("prevResult" in c.stdin for c in calls)


def test_del_carries_capability_args_and_cni_args(spies: Spies) -> None:
    """DEL gets the same runtimeConfig and args.cni as ADD did, so plugins can find what they set up."""
    spies.add("mp-spy1")
    conf = net({"cniVersion": "1.0.0", "name": "mp-n", "type": "mp-spy1", "capabilities": {"mac": True}})
    Invoker([str(spies.bin)]).delete(conf, env(spies), CAP_ARGS, {"args1": "v"}, None)
    stdin = spies.calls()[0].stdin
    assert stdin["runtimeConfig"] == {"mac": "c2:11:22:33:44:66"} and stdin["args"] == {"cni": {"args1": "v"}}


def test_del_stops_at_the_first_failing_plugin_of_a_list(spies: Spies) -> None:
    """A DEL error from spy2 is raised with its code (libcni stops the list there)."""
    spies.add("mp-spy1")
    spies.add("mp-spy2")
    spies.fail("mp-spy2", "DEL", 5, "io trouble")
    with pytest.raises(CniError) as info:
        Invoker([str(spies.bin)]).delete(net(LIST2), env(spies), {}, None, None)
    assert info.value.error_code == 5
    assert spies.seen() == [("mp-spy2", "DEL", "net1")]


def test_t61_check_runs_in_order_with_the_cached_result(spies: Spies) -> None:
    """T61: CHECK runs spy1 then spy2, both with prevResult = the cached result."""
    spies.add("mp-spy1")
    spies.add("mp-spy2")
    Invoker([str(spies.bin)]).check(net(LIST2), env(spies), {}, None, cached())
    calls = spies.calls()
    assert [(c.name, c.command) for c in calls] == [("mp-spy1", "CHECK"), ("mp-spy2", "CHECK")]
    assert all(c.stdin["prevResult"] == cached().to_dict("1.0.0") for c in calls)


@pytest.mark.parametrize(
    "conf",
    [
        {**LIST2, "cniVersion": "0.3.1"},
        {**LIST2, "disableCheck": True},
        {**LIST2, "disableCheck": "TRUE"},
        {"cniVersion": "0.3.0", "name": "mp-n", "type": "mp-spy1"},
    ],
)
def test_check_is_skipped_below_0_4_0_and_for_disable_check(spies: Spies, conf: dict[str, Any]) -> None:
    """CHECK runs nothing for a list below 0.4.0 or with disableCheck (true or "TRUE")."""
    spies.add("mp-spy1")
    spies.add("mp-spy2")
    Invoker([str(spies.bin)]).check(net(conf), env(spies), {}, None, cached(version="0.3.0"))
    assert spies.calls() == []


def test_check_runs_with_disable_check_false(spies: Spies) -> None:
    """`disableCheck: false` does not disable CHECK."""
    spies.add("mp-spy1")
    spies.add("mp-spy2")
    Invoker([str(spies.bin)]).check(net({**LIST2, "disableCheck": False}), env(spies), {}, None, cached())
    assert len(spies.calls()) == 2


def test_check_failure_keeps_the_code(spies: Spies) -> None:
    """A CHECK failure of a delegate is raised with that delegate's code."""
    spies.add("mp-spy1")
    spies.fail("mp-spy1", "CHECK", 51, "limited")
    with pytest.raises(CniError) as info:
        Invoker([str(spies.bin)]).check(
            net({**LIST2, "plugins": [{"type": "mp-spy1"}]}), env(spies), {}, None, cached()
        )
    assert info.value.error_code == 51


# ---- GC and STATUS (T69, T70, T73) -------------------------------------------------------------------


VALID = [{"containerID": "mp-c1", "ifname": "net1"}]


def test_t69_gc_sends_both_keys_to_every_plugin(spies: Spies) -> None:
    """T69: a 1.1.0 list gets GC on every plugin with cni.dev/valid-attachments and cni.dev/attachments, and no runtimeConfig."""
    spies.add("mp-spy1")
    spies.add("mp-spy2")
    conf = net(
        {
            "cniVersion": "1.1.0",
            "name": "mp-spynet",
            "plugins": [{"type": "mp-spy1", "capabilities": {"mac": True}}, {"type": "mp-spy2"}],
        }
    )
    assert Invoker([str(spies.bin)]).gc(conf, env(spies), VALID) == []
    calls = spies.calls()
    assert [(c.name, c.command) for c in calls] == [("mp-spy1", "GC"), ("mp-spy2", "GC")]
    for c in calls:
        assert c.stdin["cni.dev/valid-attachments"] == VALID and c.stdin["cni.dev/attachments"] == VALID
        assert (c.stdin["name"], c.stdin["cniVersion"]) == ("mp-spynet", "1.1.0")
        assert "runtimeConfig" not in c.stdin and "prevResult" not in c.stdin


@pytest.mark.parametrize(
    "conf", [{**LIST2, "cniVersion": "1.0.0"}, {**LIST2, "cniVersion": "1.1.0", "disableGC": True}]
)
def test_t70_gc_skipped_below_1_1_0_and_for_disable_gc(spies: Spies, conf: dict[str, Any]) -> None:
    """T70: no plugin runs for GC on a list below 1.1.0 or with disableGC."""
    spies.add("mp-spy1")
    spies.add("mp-spy2")
    assert Invoker([str(spies.bin)]).gc(net(conf), env(spies), VALID) == []
    assert spies.calls() == []


def test_gc_tries_every_plugin_and_collects_errors(spies: Spies) -> None:
    """A GC error from spy1 is collected (naming the list) and spy2 still gets its GC."""
    spies.add("mp-spy1")
    spies.add("mp-spy2")
    spies.fail("mp-spy1", "GC", 11, "busy")
    errors = Invoker([str(spies.bin)]).gc(net({**LIST2, "cniVersion": "1.1.0"}), env(spies), VALID)
    assert errors == ["mp-spynet: busy"]
    assert [c.name for c in spies.calls()] == ["mp-spy1", "mp-spy2"]


def test_t73_status_stops_at_the_first_error_and_keeps_code_50(spies: Spies) -> None:
    """T73: on a 3-plugin 1.1.0 list where plugin 2 answers code 50, plugins 1 and 2 run, 3 does not, and code 50 is raised."""
    for name in ("mp-spy1", "mp-spy2", "mp-spy3"):
        spies.add(name)
    spies.fail("mp-spy2", "STATUS", 50, "not ready")
    conf = net(
        {
            "cniVersion": "1.1.0",
            "name": "mp-s",
            "plugins": [{"type": "mp-spy1"}, {"type": "mp-spy2"}, {"type": "mp-spy3"}],
        }
    )
    with pytest.raises(CniError) as info:
        Invoker([str(spies.bin)]).status(conf, env(spies))
    assert (info.value.error_code, info.value.msg) == (50, "not ready")
    assert [(c.name, c.command) for c in spies.calls()] == [("mp-spy1", "STATUS"), ("mp-spy2", "STATUS")]
    assert "runtimeConfig" not in spies.calls()[0].stdin


def test_status_is_skipped_below_1_1_0(spies: Spies) -> None:
    """STATUS asks nothing of a list below 1.1.0."""
    spies.add("mp-spy1")
    spies.add("mp-spy2")
    Invoker([str(spies.bin)]).status(net(LIST2), env(spies))
    assert spies.calls() == []


# ---- built-in plugins run in-process ---------------------------------------------------------------


def host_local(data_dir: Path, plugin_type: str = "host-local", **ipam: Any) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "mp-hl",
        "type": plugin_type,
        "ipam": {"type": "host-local", "subnet": "10.77.0.0/24", "dataDir": str(data_dir), **ipam},
    }


@pytest.mark.parametrize("plugin_type", ["host-local", "multiplane-host-local"])
def test_builtin_host_local_runs_in_process(spies: Spies, tmp_path: Path, plugin_type: str) -> None:
    """With no host-local binary anywhere on CNI_PATH (only the spy dir), a host-local delegate still allocates into dataDir."""
    data = tmp_path / "mp-hl-data"
    assert sorted(p.name for p in spies.bin.iterdir()) == []
    invoker = Invoker([str(spies.bin)])
    got = invoker.add(net(host_local(data, plugin_type)), env(spies), {}, None)
    assert [str(ip.address) for ip in got.ips] == ["10.77.0.2/24"]
    assert (data / "mp-hl" / "10.77.0.2").read_text().split() == ["mp-c1", "net1"]
    invoker.delete(net(host_local(data, plugin_type)), env(spies), {}, None, got)
    assert not (data / "mp-hl" / "10.77.0.2").exists()
    assert BUILTINS[plugin_type] == "multiplane-host-local"


def test_builtin_after_an_exec_plugin_in_one_list(spies: Spies, tmp_path: Path) -> None:
    """A conflist mixing an exec'd spy and the in-process host-local chains: the spy's result goes on, host-local's comes back."""
    spies.add("mp-spy1", spy_result("10.1.0.2/24"))
    data = tmp_path / "mp-hl-data"
    hl = host_local(data)
    conf = net(
        {
            "cniVersion": "1.0.0",
            "name": "mp-mixed",
            "plugins": [{"type": "mp-spy1"}, {"type": "host-local", "ipam": hl["ipam"]}],
        }
    )
    got = Invoker([str(spies.bin)]).add(conf, env(spies), {}, None)
    assert [str(ip.address) for ip in got.ips] == ["10.77.0.2/24"]
    assert (data / "mp-mixed" / "10.77.0.2").exists()
    assert [c.name for c in spies.calls()] == ["mp-spy1"]


def test_builtin_gets_capability_args_it_declares(spies: Spies, tmp_path: Path) -> None:
    """The in-process host-local gets `runtimeConfig.ips` through the same capability filter, so it allocates the asked IP."""
    conf = {**host_local(tmp_path / "mp-hl-data"), "capabilities": {"ips": True}}
    got = Invoker([str(spies.bin)]).add(net(conf), env(spies), {"ips": ["10.77.0.42/24"]}, None)
    assert [str(ip.address) for ip in got.ips] == ["10.77.0.42/24"]


def test_builtin_errors_keep_their_code(spies: Spies, tmp_path: Path) -> None:
    """An in-process host-local config error is raised as code 7, as the standalone binary reports it."""
    conf = host_local(tmp_path / "mp-hl-data")
    del conf["ipam"]["subnet"]
    with pytest.raises(InvalidConfig, match="no IP ranges specified"):
        Invoker([str(spies.bin)]).add(net(conf), env(spies), {}, None)


# =============================================================================================
# The meta-plugin end to end through skel.dispatch (no network namespace needed)
# =============================================================================================


class World:
    """A meta config over spies: cluster network `mp-cluster` (spy1, a confDir file) and NAD `mp-net1` (spy2)."""

    def __init__(self, root: Path, spies: Spies, cluster_version: str = "0.4.0", nad_version: str = "1.0.0") -> None:
        self.root, self.spies = root, spies
        self.conf_dir = root / "mp-confdir"
        self.cni_dir = root / "mp-cnidir"
        self.nad_dir = root / "mp-nads"
        self.pod_dir = root / "mp-pods"
        for d in (self.conf_dir, self.nad_dir, self.pod_dir):
            d.mkdir()
        spies.add("mp-spy1", spy_result("10.88.0.5/16", cluster_version, gateway="10.88.0.1"))
        spies.add("mp-spy2", spy_result("10.99.0.7/24", nad_version))
        (self.conf_dir / "10-cluster.conf").write_text(
            json.dumps({"cniVersion": cluster_version, "name": "mp-cluster", "type": "mp-spy1"})
        )
        self.add_nad("mp-net1", {"cniVersion": nad_version, "name": "mp-net1", "type": "mp-spy2"})
        self.meta: dict[str, Any] = {
            "cniVersion": "1.0.0",
            "name": "mp-meta",
            "type": "multiplane",
            "clusterNetwork": "mp-cluster",
            "confDir": str(self.conf_dir),
            "cniDir": str(self.cni_dir),
            "binDir": str(spies.bin),
            "localNADDir": str(self.nad_dir),
            "localPodDir": str(self.pod_dir),
            "logToStderr": False,
        }

    def add_nad(self, name: str, config: dict[str, Any]) -> None:
        doc = {
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name},
            "spec": {"config": json.dumps(config)},
        }
        (self.nad_dir / f"{name}.yaml").write_text(yaml.safe_dump(doc))

    def env(
        self, command: str, cid: str = "mp-c1", netns: str = "/var/run/netns/mp-none", args: str = "", **extra: str
    ) -> dict[str, str]:
        out = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": netns,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": "/mp-cni-path",
            "CNI_ARGS": args,
        }
        out.update(extra)
        return out

    def run(self, command: str, conf: dict[str, Any] | None = None, **kw: Any) -> str | None:
        stdin = json.dumps(conf if conf is not None else self.meta).encode()
        return skel.dispatch(REGISTRY["multiplane"], self.env(command, **kw), stdin)

    def fails(self, command: str, conf: dict[str, Any] | None = None, **kw: Any) -> CniError:
        with pytest.raises(CniError) as info:
            self.run(command, conf, **kw)
        return info.value

    def cache_path(self, cid: str = "mp-c1") -> Path:
        return self.cni_dir / cid

    def seed_cache(
        self,
        cid: str,
        nets: list[tuple[str, dict[str, Any], str, Result | None]],
        netns: str = "/var/run/netns/mp-gone",
    ) -> None:
        """Write the cache an ADD would have written: (display name, config, ifname, result) per delegate."""
        delegates = []
        for i, (name, config, ifname, res) in enumerate(nets):
            d = Delegate(name, net(config), master=i == 0)
            d.ifname, d.result = ifname, res
            d.cni_args = f"IgnoreUnknown=true;K8S_POD_NAMESPACE=test;K8S_POD_NAME=mp-pod;K8S_POD_INFRA_CONTAINER_ID=;K8S_POD_UID=;MP_D={i}"
            delegates.append(d.to_cache())
        cache.save(
            str(self.cni_dir), cid, {"containerID": cid, "netns": netns, "ifname": "eth0", "delegates": delegates}
        )


POD_ARGS = "K8S_POD_NAMESPACE=test;K8S_POD_NAME=mp-pod;K8S_POD_INFRA_CONTAINER_ID=mp-c1"


@pytest.fixture
def world(tmp_path: Path, spies: Spies) -> World:
    return World(tmp_path, spies)


# ---- ADD failures before anything is attached --------------------------------------------------------


def test_add_with_missing_netns_is_code_4_and_runs_nothing(world: World) -> None:
    """ADD into a netns path that does not exist fails with code 4 before any delegate runs or a cache is written."""
    err = world.fails("ADD", netns="/var/run/netns/mp-does-not-exist", args=f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-net1")
    assert err.error_code == 4
    assert "mp-does-not-exist" in err.msg
    assert world.spies.calls() == []
    assert not world.cache_path().exists()


def test_add_with_isolation_violation_runs_nothing(world: World) -> None:
    """A namespace-isolation violation in the selection fails ADD with code 7 before any delegate runs."""
    conf = {**world.meta, "namespaceIsolation": True}
    err = world.fails("ADD", conf, args=f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-secret/mp-net1")
    assert err.error_code == 7 and "namespace isolation enabled" in err.msg
    assert world.spies.calls() == [] and not world.cache_path().exists()


def test_add_with_missing_nad_names_it(world: World) -> None:
    """Case 13 through the plugin: a selection of an unknown NAD fails ADD with code 7 naming it; nothing runs."""
    err = world.fails("ADD", args=f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-gone")
    assert err.error_code == 7
    assert err.msg.startswith("cannot find a network-attachment-definition (mp-gone) in namespace (test)")
    assert world.spies.calls() == []


def test_add_for_pod_missing_from_the_api_fails(world: World, tmp_path: Path) -> None:
    """Unlike Multus case 56 (empty success), ADD for a pod the API server does not know fails and runs no delegate."""
    with K8sServer() as api:
        conf = {**world.meta, "kubeconfig": api.kubeconfig(tmp_path / "mp-kc")}
        err = world.fails("ADD", conf, args="K8S_POD_NAMESPACE=test;K8S_POD_NAME=missing-pod")
    assert err.msg == 'pod "test/missing-pod" not found in the Kubernetes API'
    assert world.spies.calls() == [] and not world.cache_path().exists()


def test_case54_add_with_uid_mismatch_fails(world: World, tmp_path: Path) -> None:
    """Case 54: K8S_POD_UID=foobar while the API pod has another UID fails ADD with Multus's text."""
    with K8sServer() as api:
        api.add_pod("test", "mp-pod", uid="mp-real-uid")
        conf = {**world.meta, "kubeconfig": api.kubeconfig(tmp_path / "mp-kc")}
        err = world.fails("ADD", conf, args="K8S_POD_NAMESPACE=test;K8S_POD_NAME=mp-pod;K8S_POD_UID=foobar")
    assert 'expected pod UID "foobar" but got "mp-real-uid" from Kube API' in err.msg
    assert world.spies.calls() == []


# ---- DEL ---------------------------------------------------------------------------------------------


def test_t78_del_without_cache_or_usable_config_succeeds(world: World) -> None:
    """T78: with no cache and a cluster network that cannot be resolved, DEL succeeds and calls nothing."""
    assert world.run("DEL", {**world.meta, "clusterNetwork": "mp-nowhere"}, args=POD_ARGS) is None
    assert world.spies.calls() == []


def test_case53_del_without_cache_rebuilds_from_config_and_pod(world: World) -> None:
    """Case 53 (second half): with the cache gone but the pod's selection readable, DEL still calls every delegate, in reverse."""
    world.run("DEL", args=f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-net1")
    assert world.spies.seen() == [("mp-spy2", "DEL", "net1"), ("mp-spy1", "DEL", "eth0")]
    assert not any("prevResult" in c.stdin for c in world.spies.calls())


def test_del_without_cache_still_deletes_the_cluster_network_when_a_nad_is_gone(world: World) -> None:
    """With no cache and the pod's NAD deleted, DEL still tears down the cluster network (Multus tolerates NAD errors here)."""
    world.run("DEL", args=f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-net1,mp-deleted")
    assert ("mp-spy1", "DEL", "eth0") in world.spies.seen()


def test_del_without_cache_ignores_failures_of_the_rebuilt_plan(world: World) -> None:
    """Without a cache the rebuilt plan is a guess: a delegate DEL failing is logged, the others still run, and DEL succeeds."""
    world.spies.fail("mp-spy2", "DEL", 5, "nothing to release")
    assert world.run("DEL", args=f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-net1") is None
    assert world.spies.seen() == [("mp-spy2", "DEL", "net1"), ("mp-spy1", "DEL", "eth0")]


def _reserve(data_dir: Path, network: str, ip: str, owner: str) -> Path:
    """A host-local reservation file as the reference writes it ("<id>\\r\\n<ifname>")."""
    (data_dir / network).mkdir(parents=True, exist_ok=True)
    path = data_dir / network / ip
    path.write_bytes(owner.encode())
    return path


def _host_local_nad(world: World, name: str, data_dir: Path) -> None:
    world.add_nad(
        name,
        {
            "cniVersion": "1.0.0",
            "name": name,
            "type": "mp-spy2",
            "ipam": {"type": "host-local", "dataDir": str(data_dir), "subnet": "10.99.0.0/24"},
        },
    )


def test_del_without_cache_or_selection_releases_the_containers_addresses(world: World) -> None:
    """Issue 11 #6: selection unknown, cache gone: host-local addresses of this container in known networks are freed.

    Another container's address, and this container's address in a network the node's
    multiplane does not know (another runtime's), stay.
    """
    data = world.root / "mp-ipam"
    _host_local_nad(world, "mp-net2", data)
    ours = _reserve(data, "mp-net2", "10.99.0.7", "mp-c1\r\nnet1")
    legacy = _reserve(data, "mp-net2", "10.99.0.8", "mp-c1")
    theirs = _reserve(data, "mp-net2", "10.99.0.9", "mp-c2\r\nnet1")
    foreign = _reserve(data, "mp-podman-net", "10.98.0.2", "mp-c1\r\neth1")
    log = world.root / "mp-meta.log"
    assert world.run("DEL", {**world.meta, "logFile": str(log)}, args=POD_ARGS) is None
    assert not ours.exists() and not legacy.exists()
    assert theirs.exists() and foreign.exists()
    assert "mp-net2/10.99.0.7" in log.read_text()


def test_del_with_the_api_down_releases_addresses_of_networks_known_from_other_caches(
    world: World, tmp_path: Path
) -> None:
    """Issue 11 #6 with a cluster: the API is unreachable, the NAD is known only from another pod's cache."""
    data = world.root / "mp-ipam"
    nad = {
        "cniVersion": "1.0.0",
        "name": "mp-api-net",
        "type": "mp-spy2",
        "ipam": {"type": "host-local", "dataDir": str(data), "subnet": "10.97.0.0/24"},
    }
    world.seed_cache(
        "mp-c2",
        [
            ("mp-cluster", {"cniVersion": "0.4.0", "name": "mp-cluster", "type": "mp-spy1"}, "eth0", None),
            ("test/mp-api-net", nad, "net1", None),
        ],
    )
    ours = _reserve(data, "mp-api-net", "10.97.0.5", "mp-c1\r\nnet1")
    theirs = _reserve(data, "mp-api-net", "10.97.0.6", "mp-c2\r\nnet1")
    with K8sServer() as api:
        kubeconfig = api.kubeconfig(tmp_path / "mp-kc")
    conf = {**world.meta, "kubeconfig": kubeconfig}  # the server is gone now
    assert world.run("DEL", conf, args=POD_ARGS) is None
    assert not ours.exists() and theirs.exists()
    assert ("mp-spy1", "DEL", "eth0") in world.spies.seen()


def test_del_sweep_does_not_follow_a_linked_network_directory(world: World) -> None:
    """A network directory planted as a symlink is not swept: nothing outside the data dir is touched."""
    data = world.root / "mp-ipam"
    outside = world.root / "mp-outside"
    _reserve(outside, "x", "10.99.0.7", "mp-c1\r\nnet1")
    data.mkdir()
    (data / "mp-net2").symlink_to(outside / "x")
    _host_local_nad(world, "mp-net2", data)
    assert world.run("DEL", args=POD_ARGS) is None
    assert (outside / "x" / "10.99.0.7").exists()


def test_del_from_cache_in_reverse_with_cached_results_and_args(world: World) -> None:
    """DEL uses only the cache: reverse order, each delegate's ifname, CNI_ARGS and cached result; cache and status file go."""
    r1, r2 = cached("10.88.0.5/16", "0.4.0"), cached("10.99.0.7/24")
    world.seed_cache(
        "mp-c1",
        [
            ("mp-cluster", {"cniVersion": "0.4.0", "name": "mp-cluster", "type": "mp-spy1"}, "eth0", r1),
            ("test/mp-net1", {"cniVersion": "1.0.0", "name": "mp-net1", "type": "mp-spy2"}, "net1", r2),
        ],
    )
    (world.cni_dir / "status").mkdir()
    (world.cni_dir / "status" / "mp-c1.json").write_text("[]")
    world.run("DEL", {**world.meta, "clusterNetwork": "mp-nowhere"}, args="")
    calls = world.spies.calls()
    assert [(c.name, c.command, c.ifname) for c in calls] == [("mp-spy2", "DEL", "net1"), ("mp-spy1", "DEL", "eth0")]
    assert calls[0].stdin["prevResult"] == r2.to_dict("1.0.0")
    assert calls[1].stdin["prevResult"] == r1.to_dict("0.4.0")
    assert [c.env["CNI_ARGS"].rsplit(";", 1)[1] for c in calls] == ["MP_D=1", "MP_D=0"]
    assert not world.cache_path().exists()
    assert not (world.cni_dir / "status" / "mp-c1.json").exists()


def _two_spies_cached(world: World) -> None:
    world.seed_cache(
        "mp-c1",
        [
            ("mp-cluster", {"cniVersion": "0.4.0", "name": "mp-cluster", "type": "mp-spy1"}, "eth0", None),
            ("test/mp-net1", {"cniVersion": "1.0.0", "name": "mp-net1", "type": "mp-spy2"}, "net1", None),
        ],
    )


def test_del_goes_past_failures_and_drops_the_cache_by_default(world: World) -> None:
    """A failing delegate DEL does not stop the others; the error names it; the cache goes (retryDeleteOnError off)."""
    _two_spies_cached(world)
    world.spies.fail("mp-spy2", "DEL", 5, "cannot release")
    err = world.fails("DEL")
    assert err.msg == "failed to delete some attachments: test/mp-net1 (net1): cannot release"
    assert [c.name for c in world.spies.calls()] == ["mp-spy2", "mp-spy1"]
    assert not world.cache_path().exists()


def test_a_delegate_that_never_deletes_cannot_pin_the_sandbox(world: World) -> None:
    """Issue 11 #5: with the default, the runtime's retried DEL succeeds although the delegate still fails."""
    _two_spies_cached(world)
    world.spies.fail("mp-spy2", "DEL", 5, "cannot release")
    world.fails("DEL")
    world.spies.reset()
    assert world.run("DEL", args=POD_ARGS) is None  # no cache: best effort from the configuration
    assert ("mp-spy1", "DEL", "eth0") in world.spies.seen()


def test_retry_delete_on_error_keeps_the_cache_for_the_retry(world: World) -> None:
    """retryDeleteOnError: true keeps the cache after a failed DEL, and the retry runs from it again."""
    _two_spies_cached(world)
    conf = {**world.meta, "retryDeleteOnError": True}
    world.spies.fail("mp-spy2", "DEL", 5, "cannot release")
    world.fails("DEL", conf)
    assert world.cache_path().exists()
    world.spies.reset()
    world.fails("DEL", conf)
    assert world.spies.seen() == [("mp-spy2", "DEL", "net1"), ("mp-spy1", "DEL", "eth0")]


def test_retry_delete_on_error_drops_the_cache_when_a_plugin_binary_is_gone(world: World) -> None:
    """Multus's exception to retryDeleteOnError: a delegate whose binary is missing can never succeed."""
    world.seed_cache(
        "mp-c1",
        [
            ("mp-cluster", {"cniVersion": "0.4.0", "name": "mp-cluster", "type": "mp-spy1"}, "eth0", None),
            ("test/mp-gone", {"cniVersion": "1.0.0", "name": "mp-gone", "type": "mp-removed-plugin"}, "net1", None),
        ],
    )
    err = world.fails("DEL", {**world.meta, "retryDeleteOnError": True})
    assert 'failed to find plugin "mp-removed-plugin"' in err.msg
    assert not world.cache_path().exists()


def test_retry_delete_on_error_must_be_a_bool(world: World) -> None:
    """A non-boolean retryDeleteOnError is a config error (7)."""
    assert world.fails("DEL", {**world.meta, "retryDeleteOnError": "yes"}).code == 7


@pytest.mark.parametrize(
    "damage",
    ["truncate", "empty", "garble", "not-ours", "other-container", "symlink", "directory", "bad-delegate"],
)
def test_del_with_an_unusable_cache_deletes_from_the_configuration(world: World, damage: str) -> None:
    """Issue 11 #1: a corrupt, emptied, replaced or linked cache no longer pins DEL: it rebuilds, succeeds, logs."""
    log = world.root / "mp-meta.log"
    conf = {**world.meta, "logFile": str(log), "logLevel": "error"}
    _two_spies_cached(world)
    path = world.cache_path()
    good = path.read_bytes()
    victim = world.root / "mp-victim"
    victim.write_bytes(good)
    path.unlink()
    if damage == "truncate":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garble":
        path.write_bytes(bytes(b ^ 0x5A for b in good))
    elif damage == "not-ours":
        path.write_text(json.dumps({"kind": "somethingElse", "delegates": []}))
    elif damage == "other-container":
        path.write_bytes(good.replace(b'"containerID": "mp-c1"', b'"containerID": "mp-c9"'))
    elif damage == "symlink":
        path.symlink_to(victim)
    elif damage == "directory":
        path.mkdir()
    else:
        path.write_text(json.dumps({"kind": cache.KIND, "containerID": "mp-c1", "delegates": [{"config": 5}]}))
    assert world.run("DEL", conf, args=f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-net1") is None
    assert world.spies.seen() == [("mp-spy2", "DEL", "net1"), ("mp-spy1", "DEL", "eth0")]
    assert "unusable" in log.read_text()
    assert victim.read_bytes() == good  # a link's target is never read as ours, written or removed
    if damage != "directory":
        assert not os.path.lexists(path)


def test_del_with_missing_readiness_file_still_deletes(world: World, tmp_path: Path) -> None:
    """DEL does not wait for the readiness indicator file; it only logs and deletes."""
    conf = {**world.meta, "readinessindicatorfile": str(tmp_path / "mp-not-ready")}
    world.run("DEL", conf, args=POD_ARGS)
    assert world.spies.seen() == [("mp-spy1", "DEL", "eth0")]


# ---- CHECK -------------------------------------------------------------------------------------------


def test_check_without_cache_is_an_error(world: World) -> None:
    """CHECK of a container the meta-plugin has no record of fails."""
    assert "no attachments are recorded for container mp-c1" in world.fails("CHECK").msg


def test_check_uses_each_cached_result_in_order(world: World) -> None:
    """CHECK runs every cached delegate in order on its ifname with its own cached result as prevResult."""
    r1, r2 = cached("10.88.0.5/16", "0.4.0"), cached("10.99.0.7/24")
    world.seed_cache(
        "mp-c1",
        [
            ("mp-cluster", {"cniVersion": "0.4.0", "name": "mp-cluster", "type": "mp-spy1"}, "eth0", r1),
            ("test/mp-net1", {"cniVersion": "1.0.0", "name": "mp-net1", "type": "mp-spy2"}, "net1", r2),
        ],
    )
    world.run("CHECK")
    calls = world.spies.calls()
    assert [(c.name, c.command, c.ifname) for c in calls] == [
        ("mp-spy1", "CHECK", "eth0"),
        ("mp-spy2", "CHECK", "net1"),
    ]
    assert [c.stdin["prevResult"] for c in calls] == [r1.to_dict("0.4.0"), r2.to_dict("1.0.0")]


def test_check_failure_names_the_network_and_keeps_the_code(world: World) -> None:
    """A delegate CHECK failure is reported as an error naming the network, with the delegate's code."""
    world.seed_cache(
        "mp-c1",
        [
            (
                "mp-cluster",
                {"cniVersion": "0.4.0", "name": "mp-cluster", "type": "mp-spy1"},
                "eth0",
                cached(version="0.4.0"),
            ),
            ("test/mp-net1", {"cniVersion": "1.0.0", "name": "mp-net1", "type": "mp-spy2"}, "net1", cached()),
        ],
    )
    world.spies.fail("mp-spy2", "CHECK", 11, "address missing")
    err = world.fails("CHECK", args=POD_ARGS)
    assert err.error_code == 11
    assert err.msg == '[test/mp-pod:test/mp-net1]: error checking network "test/mp-net1": address missing'


def test_check_of_an_unfinished_attachment_is_an_error(world: World) -> None:
    """A cached delegate without a result (ADD never finished) makes CHECK fail naming it."""
    world.seed_cache(
        "mp-c1", [("mp-cluster", {"cniVersion": "0.4.0", "name": "mp-cluster", "type": "mp-spy1"}, "eth0", None)]
    )
    assert world.fails("CHECK").msg == "the attachment of mp-cluster (eth0) never completed"


# ---- GC (T80) ----------------------------------------------------------------------------------------


CLUSTER_11 = {"cniVersion": "1.1.0", "name": "mp-cluster", "type": "mp-spy1"}
NET1_11 = {"cniVersion": "1.1.0", "name": "mp-net1", "type": "mp-spy2"}


def gc_conf(world: World, valid: list[dict[str, str]] | None, key: str = "cni.dev/valid-attachments") -> dict[str, Any]:
    conf = {**world.meta, "cniVersion": "1.1.0"}
    if valid is not None:
        conf[key] = valid
    return conf


def test_gc_without_valid_attachments_is_refused(world: World) -> None:
    """Unlike host-local (absent = nothing valid), meta GC without any cni.dev key is code 7 and deletes nothing."""
    world.seed_cache("mp-c1", [("mp-cluster", CLUSTER_11, "eth0", None)])
    err = world.fails("GC", gc_conf(world, None))
    assert err.error_code == 7 and "cni.dev/valid-attachments" in err.msg
    assert world.spies.calls() == [] and world.cache_path().exists()


def test_t80_gc_translates_valid_attachments_and_deletes_stale_ones(world: World) -> None:
    """T80: valid [(c1,eth0)] keeps c1's eth0 and net1; c2's delegates get DEL (reverse, c2's ids) and its cache goes; each list gets GC with its own valid set."""
    for cid in ("mp-c1", "mp-c2"):
        world.seed_cache(
            cid,
            [("mp-cluster", CLUSTER_11, "eth0", None), ("test/mp-net1", NET1_11, "net1", None)],
            netns=f"/var/run/netns/{cid}",
        )
    world.run("GC", gc_conf(world, [{"containerID": "mp-c1", "ifname": "eth0"}]))
    calls = world.spies.calls()
    dels = [(c.name, c.ifname, c.env["CNI_CONTAINERID"], c.env["CNI_NETNS"]) for c in calls if c.command == "DEL"]
    assert dels == [
        ("mp-spy2", "net1", "mp-c2", "/var/run/netns/mp-c2"),
        ("mp-spy1", "eth0", "mp-c2", "/var/run/netns/mp-c2"),
    ]
    gcs = {c.name: c.stdin["cni.dev/valid-attachments"] for c in calls if c.command == "GC"}
    assert gcs == {
        "mp-spy1": [{"containerID": "mp-c1", "ifname": "eth0"}],
        "mp-spy2": [{"containerID": "mp-c1", "ifname": "net1"}],
    }
    assert [c.command for c in calls] == ["DEL", "DEL", "GC", "GC"]
    assert world.cache_path("mp-c1").exists() and not world.cache_path("mp-c2").exists()


def test_gc_accepts_the_legacy_attachments_key(world: World) -> None:
    """Only `cni.dev/attachments` given: it is read as the valid set, so nothing valid is deleted."""
    world.seed_cache("mp-c1", [("mp-cluster", CLUSTER_11, "eth0", None)])
    world.run("GC", gc_conf(world, [{"containerID": "mp-c1", "ifname": "eth0"}], key="cni.dev/attachments"))
    assert [c.command for c in world.spies.calls()] == ["GC"]
    assert world.cache_path().exists()


def test_gc_keeps_the_cache_of_a_stale_container_whose_del_failed(world: World) -> None:
    """If a stale attachment's DEL fails, GC reports it and keeps that container's cache for the next round."""
    world.seed_cache("mp-c2", [("mp-cluster", CLUSTER_11, "eth0", None)])
    world.spies.fail("mp-spy1", "DEL", 5, "busy")
    err = world.fails("GC", gc_conf(world, []))
    assert "stale mp-c2 mp-cluster: busy" in err.msg
    assert world.cache_path("mp-c2").exists()


def test_gc_forwards_to_networks_even_when_nothing_is_valid(world: World) -> None:
    """When every cached attachment is stale, the delegate networks still get GC (with an empty valid set) after the DELs."""
    world.seed_cache("mp-c2", [("mp-cluster", CLUSTER_11, "eth0", None), ("test/mp-net1", NET1_11, "net1", None)])
    world.run("GC", gc_conf(world, []))
    gcs = {c.name: c.stdin["cni.dev/valid-attachments"] for c in world.spies.calls() if c.command == "GC"}
    assert gcs == {"mp-spy1": [], "mp-spy2": []}


def test_gc_reports_a_corrupt_cache_and_goes_on(world: World) -> None:
    """A corrupt cache file of one container is reported by GC; the other containers are still handled."""
    world.seed_cache("mp-c2", [("mp-cluster", CLUSTER_11, "eth0", None)])
    world.cni_dir.joinpath("mp-c9").write_text("{bad")
    err = world.fails("GC", gc_conf(world, []))
    assert str(world.cni_dir / "mp-c9") in err.msg
    assert ("mp-spy1", "DEL", "eth0") in world.spies.seen()


# ---- STATUS (T79, case 57) ---------------------------------------------------------------------------


def test_case57_status_asks_only_the_cluster_network(world: World) -> None:
    """Case 57: STATUS with a 1.1.0 cluster network and a defaultNetwork calls STATUS once, on the cluster network."""
    (world.conf_dir / "10-cluster.conf").write_text(json.dumps(CLUSTER_11))
    (world.conf_dir / "20-extra.conf").write_text(
        json.dumps({"cniVersion": "1.1.0", "name": "mp-extra", "type": "mp-spy2"})
    )
    assert world.run("STATUS", {**world.meta, "cniVersion": "1.1.0", "defaultNetworks": ["mp-extra"]}) is None
    assert [(c.name, c.command) for c in world.spies.calls()] == [("mp-spy1", "STATUS")]


def test_t79_status_passes_code_51_through(world: World) -> None:
    """T79: the cluster network's STATUS code 51 is the meta's answer."""
    (world.conf_dir / "10-cluster.conf").write_text(json.dumps(CLUSTER_11))
    world.spies.fail("mp-spy1", "STATUS", 51, "limited")
    err = world.fails("STATUS", {**world.meta, "cniVersion": "1.1.0"})
    assert (err.error_code, err.msg) == (51, "limited")


def test_status_without_readiness_file_is_code_50(world: World, tmp_path: Path) -> None:
    """STATUS with a configured but missing readinessindicatorfile answers 50 at once with Multus's text; no delegate is asked."""
    path = tmp_path / "mp-not-ready"
    err = world.fails("STATUS", {**world.meta, "cniVersion": "1.1.0", "readinessindicatorfile": str(path)})
    assert err.error_code == 50
    assert (
        err.msg
        == f"have you checked that your default network is ready? still waiting for readinessindicatorfile @ {path}"
    )
    assert world.spies.calls() == []
    path.write_text("")
    (world.conf_dir / "10-cluster.conf").write_text(json.dumps(CLUSTER_11))
    assert world.run("STATUS", {**world.meta, "cniVersion": "1.1.0", "readinessindicatorfile": str(path)}) is None


@pytest.mark.parametrize(
    "manifest", ['{"metadata": 1}', '{"metadata": {"annotations": 1}}', '{"metadata": {"annotations": {"a": 1}}}']
)
def test_a_malformed_pod_manifest_is_a_config_error_and_del_goes_on(world: World, manifest: str) -> None:
    """A pod manifest that is not a Pod's shape fails ADD with code 7 naming it; DEL still succeeds (never pinned)."""
    (world.pod_dir / "test").mkdir()
    (world.pod_dir / "test" / "mp-pod.json").write_text(manifest)
    err = world.fails("ADD", args=POD_ARGS)
    assert err.error_code == 7 and "mp-pod.json" in err.msg
    assert world.run("DEL", args=POD_ARGS) is None
    assert ("mp-spy1", "DEL", "eth0") in world.spies.seen()


def test_del_removes_the_temporaries_a_killed_writer_left(world: World) -> None:
    """A writer SIGKILLed between its temporary file and the rename leaves `.<id>.<pid>.tmp`: DEL of that container
    removes its own (cache and status file), never another container's."""
    (world.cni_dir / "status").mkdir(parents=True)
    ours = [world.cni_dir / ".mp-c1.12345.tmp", world.cni_dir / "status" / ".mp-c1.json.12345.tmp"]
    theirs = [world.cni_dir / ".mp-c2.12345.tmp", world.cni_dir / "status" / ".mp-c2.json.12345.tmp"]
    for path in ours + theirs:
        path.write_text("{half")
    assert world.run("DEL", args=POD_ARGS) is None
    assert [p.exists() for p in ours] == [False, False]
    assert [p.exists() for p in theirs] == [True, True]


def test_del_without_cache_keeps_interface_names_when_an_earlier_nad_is_gone(world: World) -> None:
    """The rebuilt plan of a pod with mp-gone,mp-net1 gives mp-net1 net2, the name ADD gave it (not net1)."""
    assert world.run("DEL", args=f"{POD_ARGS};MULTIPLANE_NETWORKS=mp-gone,mp-net1") is None
    assert world.spies.seen() == [("mp-spy2", "DEL", "net2"), ("mp-spy1", "DEL", "eth0")]


def test_gc_leaves_networks_alone_when_a_valid_container_has_no_cache(world: World) -> None:
    """A valid container without a multiplane cache (attached by Multus before a migration) could have addresses on
    any network: stale multiplane containers are still deleted, but no delegate network gets GC this time."""
    for cid in ("mp-c1", "mp-c2"):
        world.seed_cache(cid, [("mp-cluster", CLUSTER_11, "eth0", None), ("test/mp-net1", NET1_11, "net1", None)])
    valid = [{"containerID": "mp-c1", "ifname": "eth0"}, {"containerID": "mp-multus-pod", "ifname": "eth0"}]
    log = world.root / "mp-gc.log"
    world.run("GC", {**gc_conf(world, valid), "logFile": str(log), "logLevel": "error"})
    assert [c.command for c in world.spies.calls()] == ["DEL", "DEL"]  # mp-c2's teardown, no GC
    assert not world.cache_path("mp-c2").exists()
    assert "no delegate cache for valid container(s) mp-multus-pod" in log.read_text()


def test_del_with_a_cni_dir_that_is_a_file_succeeds(world: World) -> None:
    """A cniDir that is a regular file (finding F4) does not make DEL's cleanup raise: best effort, success."""
    world.cni_dir.write_text("not a directory")
    assert world.run("DEL", args=POD_ARGS) is None
