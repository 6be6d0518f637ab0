"""Fuzz the request configuration on stdin of every personality, in-process through skel.run.

Two kinds of stdin: whole documents that are barely JSON (bytes, deep nesting, huge, BOMs,
UTF-16, bad UTF-8, NULs), and each personality's own working config with one to four
fields replaced, removed or added, the replacements drawn from hostile values (lone
surrogates, NULs, long strings, numbers where text belongs, deep nesting, `..`, absolute
and relative paths). The network namespace is never a real one, so no link is ever made;
host-local may really allocate, in the sandbox.

Beyond the harness's oracle: an ADD that fails leaves no reservation and no cache file,
and a host-local ADD that succeeds is undone by DEL with the same request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import Node, fuzz_settings, run_case_env
from tests.fuzz.harness import PERSONALITIES, Answer, OracleFailure, fs_env
from tests.fuzz.strategies import COMMANDS, GARBAGE_STDIN, HOSTILE_TEXT, HOSTILE_VALUE, dumps
from tests.integration.meta_helpers import ip_files

COMMON_KEYS = ("cniVersion", "name", "type", "args", "runtimeConfig", "prevResult", "capabilities", "dns")
KEYS = {
    "multiplane-host-local": COMMON_KEYS,
    "multiplane-macvlan": (*COMMON_KEYS, "master", "mode", "mtu", "mac", "linkInContainer"),
    "multiplane": (
        *COMMON_KEYS,
        "clusterNetwork",
        "defaultNetworks",
        "delegates",
        "systemNamespaces",
        "multusNamespace",
        "namespace",
        "namespaceIsolation",
        "globalNamespaces",
        "logLevel",
        "logToStderr",
        "retryDeleteOnError",
    ),
}
IPAM_KEYS = ("type", "subnet", "rangeStart", "rangeEnd", "gateway", "ranges", "routes", "resolvConf")
# Keys naming state the plugin writes: only sandbox, unwritable or relative paths (never a host path).
STATE_KEYS = {"multiplane": ("cniDir", "logFile"), "ipam": ("dataDir",)}
# Keys naming what the plugin only reads.
READ_KEYS = {"multiplane": ("confDir", "binDir", "localNADDir", "localPodDir", "kubeconfig", "clusterNetwork")}
VERSIONS = ("0.1.0", "0.2.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0", "", "2.0.0", "1.0", "x", "\ud800")


def state_paths(node: Node) -> st.SearchStrategy[Any]:
    """Values for a state-path key: in the sandbox, through `..`, relative (the cwd check catches use), unwritable.

    Never "" or null: those select the host's default directory, by design.
    """
    sb = node.sb
    return st.one_of(
        st.sampled_from(
            (
                sb.path("s1"),
                sb.path("ipam"),
                sb.path("x", "..", "s2"),
                sb.path("s3") + "/",
                sb.path("s4", "deep", "deeper"),
                str(sb.netns_file),
                str(sb.netns_file) + "/x",
                "rel",
                "./rel",
                "/proc/mp-fz-x",
                "/dev/null/mp-fz",
                "/sys/mp-fz-x",
            )
        ),
        HOSTILE_TEXT.filter(lambda t: t != "" and not t.startswith("/") and ".." not in t),
        st.one_of(st.integers(), st.booleans(), st.lists(st.just(sb.path("s5")), max_size=2)),
    )


def read_paths(node: Node) -> st.SearchStrategy[Any]:
    sb = node.sb
    return st.one_of(
        st.sampled_from(
            (
                sb.path("net.d"),
                sb.path("nads"),
                sb.path("pods"),
                sb.path("nads", f"{node.NADS[0]}.json"),
                sb.path("net.d", "10-cluster.conf"),
                sb.path("missing"),
                str(sb.netns_file),
                "/",
                "/etc/passwd",
                "/proc/self/status",
                "relative/dir",
                Node.CLUSTER,
                Node.NADS[3],
            )
        ),
        HOSTILE_VALUE,
    )


@st.composite
def mutated_config(draw: st.DrawFn, node: Node, personality: str) -> dict[str, Any]:
    conf = node.conf(personality, draw(st.sampled_from(VERSIONS[:6])))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(("set", "set", "set", "ipam", "state", "read", "del", "add", "version")))
        if op == "set":
            conf[draw(st.sampled_from(KEYS[personality]))] = draw(HOSTILE_VALUE)
        elif op == "ipam" and isinstance(conf.get("ipam"), dict):
            conf["ipam"][draw(st.sampled_from(IPAM_KEYS))] = draw(HOSTILE_VALUE)
        elif op == "state":
            if personality == "multiplane":
                conf[draw(st.sampled_from(STATE_KEYS["multiplane"]))] = draw(state_paths(node))
            elif isinstance(conf.get("ipam"), dict):
                conf["ipam"]["dataDir"] = draw(state_paths(node))
        elif op == "read" and personality == "multiplane":
            conf[draw(st.sampled_from(READ_KEYS["multiplane"]))] = draw(read_paths(node))
        elif op == "del":
            key = draw(st.sampled_from(KEYS[personality]))
            conf.pop(key, None)
        elif op == "add":
            conf[draw(HOSTILE_TEXT.filter(lambda k: k.lower() not in ("datadir", "cnidir", "logfile")))] = draw(
                HOSTILE_VALUE
            )
        elif op == "version":
            conf["cniVersion"] = draw(st.one_of(st.sampled_from(VERSIONS), HOSTILE_VALUE))
    if draw(st.booleans()):
        conf["cni.dev/valid-attachments"] = draw(
            st.one_of(st.just([{"containerID": "mp-fz-c1", "ifname": "eth0"}]), HOSTILE_VALUE)
        )
    return conf


def run_case(node: Node, personality: str, command: str, stdin: bytes) -> Answer:
    return run_case_env(node, personality, fs_env(node.env(command)), stdin)


@fuzz_settings(150)
@given(
    personality=st.sampled_from(PERSONALITIES),
    command=st.sampled_from(COMMANDS),
    stdin=GARBAGE_STDIN,
)
def test_garbage_stdin(fuzz_root: Path, personality: str, command: str, stdin: bytes) -> None:
    """Whatever bytes arrive on stdin, every personality answers with one error object (or VERSION's answer)."""
    with Node(fuzz_root) as node:
        run_case(node, personality, command, stdin)


def _mutated_case(fuzz_root: Path, personality: str, data: st.DataObject) -> None:
    with Node(fuzz_root) as node:
        conf = data.draw(mutated_config(node, personality), label="config")
        command = data.draw(st.sampled_from(COMMANDS), label="command")
        stdin = dumps(conf)
        answer = run_case(node, personality, command, stdin)
        if personality == "multiplane-host-local" and command == "ADD" and answer.status == 0:
            undo = run_case(node, personality, "DEL", stdin)
            if undo.status != 0 or ip_files(node.sb.state):
                raise OracleFailure(
                    f"DEL did not undo a successful ADD: exit {undo.status} {undo.stdout}\n"
                    f"left: {ip_files(node.sb.state)}\nconfig: {stdin[:3000]!r}"
                )


@fuzz_settings(500)
@given(data=st.data())
def test_host_local_config(fuzz_root: Path, data: st.DataObject) -> None:
    """multiplane-host-local with its working config made hostile in one to four places."""
    _mutated_case(fuzz_root, "multiplane-host-local", data)


@fuzz_settings(400)
@given(data=st.data())
def test_macvlan_config(fuzz_root: Path, data: st.DataObject) -> None:
    """multiplane-macvlan with its working config made hostile (the namespace is never real)."""
    _mutated_case(fuzz_root, "multiplane-macvlan", data)


@fuzz_settings(500)
@given(data=st.data())
def test_meta_config(fuzz_root: Path, data: st.DataObject) -> None:
    """The meta-plugin with 00-multiplane.conf made hostile: paths, delegates, namespaces, logging."""
    _mutated_case(fuzz_root, "multiplane", data)
