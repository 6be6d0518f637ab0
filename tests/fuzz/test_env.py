"""Fuzz the CNI_* environment and CNI_ARGS of every personality, in-process through skel.run.

Values are bytes as execve delivers them (decoded the way Python fills os.environ: UTF-8
with surrogateescape), plus what only an in-process caller can hand over (a NUL). Each
variable is left out, empty, a working value, or hostile. The config on stdin is the
personality's working one, so the environment is what decides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import Node, fuzz_settings, run_case_env
from tests.fuzz.harness import PERSONALITIES, fs_env
from tests.fuzz.strategies import CNI_ARGS_TEXT, COMMAND, ENV_BYTES, HOSTILE_TEXT, dumps

VARIABLES = ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH", "CNI_ARGS")


def env_value(good: Any) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.just(good),
        st.just(good),
        st.none(),
        st.just(""),
        ENV_BYTES,
        HOSTILE_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")).filter(lambda b: b"\0" not in b),
        st.sampled_from(("a\0b", "\0")),  # in-process only: a forwarded request could carry one
    )


@st.composite
def environment(draw: st.DrawFn, node: Node) -> dict[str, Any]:
    base = node.env(draw(COMMAND))
    for name in draw(st.lists(st.sampled_from(VARIABLES), min_size=1, max_size=3, unique=True)):
        base[name] = draw(env_value(base[name]))
    if draw(st.booleans()):
        base["CNI_COMMAND"] = draw(env_value(base["CNI_COMMAND"]))
    return base


@fuzz_settings(600)
@given(personality=st.sampled_from(PERSONALITIES), data=st.data())
def test_cni_environment(fuzz_root: Path, personality: str, data: st.DataObject) -> None:
    """Any CNI_* environment gets one answer: a precise code 4 for what is wrong, never `internal error`."""
    with Node(fuzz_root) as node:
        env = data.draw(environment(node), label="env")
        run_case_env(node, personality, fs_env(env), dumps(node.conf(personality)))


@fuzz_settings(500)
@given(personality=st.sampled_from(PERSONALITIES), command=st.sampled_from(("ADD", "DEL", "CHECK")), args=CNI_ARGS_TEXT)
def test_cni_args(fuzz_root: Path, personality: str, command: str, args: str) -> None:
    """Any CNI_ARGS text: the strict parser (host-local, macvlan) or Multus's loose one (meta) answers cleanly."""
    with Node(fuzz_root) as node:
        env = fs_env(node.env(command, CNI_ARGS=args))
        run_case_env(node, personality, env, dumps(node.conf(personality)))
