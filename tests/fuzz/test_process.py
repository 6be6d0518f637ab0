"""A sample of the fuzz cases through the real entry points, so cli's encoding and exit path are covered.

The venv's console scripts (`multiplane`, `multiplane-macvlan`, `multiplane-host-local`)
and the built `dist/multiplane` (through links named like the personalities) run as a
runtime runs them: a fresh process, the environment as bytes (values that are not UTF-8
included; execve cannot carry a NUL), the config on stdin, the working directory an empty
sandbox directory. Same oracle as in-process (tests/fuzz/harness.py).

dist/multiplane is what `make test` builds first; run by hand without it (or with one older
than the sources), the binary half is skipped with the reason, never silently.
MP_FUZZ_BINARY names another build to sample instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.cni import BIN_DIR
from tests.fuzz.conftest import Node, fuzz_settings
from tests.fuzz.harness import PERSONALITIES, judge, run_process
from tests.fuzz.strategies import COMMAND, ENV_BYTES, GARBAGE_STDIN, HOSTILE_TEXT, dumps
from tests.fuzz.test_stdin import mutated_config

ROOT = Path(__file__).resolve().parents[2]
# MP_FUZZ_BINARY: another build to sample (then taken as it is, without the staleness check).
DIST = Path(os.environ.get("MP_FUZZ_BINARY") or ROOT / "dist" / "multiplane")
VARIABLES = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH", "CNI_ARGS")


def _dist_problem() -> str:
    if not os.access(DIST, os.X_OK):
        return f"{DIST} is missing: `make binary` builds it (make test does)"
    if os.environ.get("MP_FUZZ_BINARY"):
        return ""
    built = DIST.stat().st_mtime
    newer = [p for p in (ROOT / "src").rglob("*.py") if p.stat().st_mtime > built]
    if newer:
        return f"{DIST} is older than {newer[0].relative_to(ROOT)}: `make binary` rebuilds it"
    return ""


@pytest.fixture(scope="module")
def dist_links(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Links named like the personalities to dist/multiplane, and a private unpack directory for it."""
    problem = _dist_problem()
    if problem:  # a sample of the file a node runs is part of the suite: a stale or missing build fails it
        pytest.fail(problem)
    bin_dir = tmp_path_factory.mktemp("mp-fz-dist")
    for name in PERSONALITIES:
        (bin_dir / name).symlink_to(DIST)
    unpack = tmp_path_factory.mktemp("mp-fz-unpack")
    return {"bin": bin_dir, "env": {b"MULTIPLANE_UNPACK_DIR": str(unpack).encode()}}


def bytes_env(node: Node, command: str, overrides: dict[str, bytes | None]) -> dict[bytes, bytes]:
    env: dict[bytes, bytes] = {b"PATH": b"/usr/sbin:/usr/bin:/sbin:/bin"}
    for key, value in node.env(command).items():
        env[key.encode()] = value.encode()
    for key, value in overrides.items():
        if value is None:
            env.pop(key.encode(), None)
        else:
            env[key.encode()] = value
    return env


@st.composite
def process_case(draw: st.DrawFn, node: Node) -> tuple[str, dict[bytes, bytes], bytes]:
    personality = draw(st.sampled_from(PERSONALITIES))
    command = draw(COMMAND)
    overrides: dict[str, bytes | None] = {}
    for name in draw(st.lists(st.sampled_from(VARIABLES), max_size=2, unique=True)):
        overrides[name] = draw(
            st.one_of(
                st.none(),
                ENV_BYTES,
                HOSTILE_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass").replace(b"\0", b"")),
            )
        )
    stdin = draw(st.one_of(GARBAGE_STDIN, mutated_config(node, personality).map(dumps)))
    return personality, bytes_env(node, command, overrides), stdin


@fuzz_settings(150, share=0.02)
@given(data=st.data())
def test_venv_entry_points(fuzz_root: Path, data: st.DataObject) -> None:
    """The console scripts of the venv: one UTF-8 JSON object on stdout, whatever the bytes."""
    with Node(fuzz_root) as node:
        personality, env, stdin = data.draw(process_case(node), label="case")
        argv = [os.path.join(BIN_DIR, personality)]
        judge(node.sb, lambda: run_process(argv, env, stdin, node.sb, personality), stdin, (node.ipam,))


@fuzz_settings(100, share=0.02)
@given(data=st.data())
def test_binary_entry_points(fuzz_root: Path, dist_links: dict[str, Any], data: st.DataObject) -> None:
    """dist/multiplane under each personality's name: the same oracle for the file a node runs."""
    with Node(fuzz_root) as node:
        personality, env, stdin = data.draw(process_case(node), label="case")
        argv = [str(dist_links["bin"] / personality)]
        full = {**env, **dist_links["env"]}
        judge(node.sb, lambda: run_process(argv, full, stdin, node.sb, f"dist:{personality}"), stdin, (node.ipam,))
