"""The `multiplane` entry point, run as a real process: personalities, usage, and what start-up imports."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

import multiplane
from tests.cni import OURS_HOST_LOCAL, OURS_MULTIPLANE
from tests.cni import run as run_binary

# Heavy or slow-to-import modules a CNI call must not pay for (cni-spec.md §1.1: keep start-up fast).
FORBIDDEN = ("pyroute2", "pydantic", "dataclasses", "typing", "inspect")


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without CNI_* variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update(extra)
    return env


def run(argv: list[str], stdin: bytes = b"", **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, input=stdin.decode(), env=clean_env(**env), capture_output=True, text=True, timeout=60, check=False
    )


def forbidden_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in FORBIDDEN)


# ---- command line -----------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [[OURS_MULTIPLANE, "--version"], [sys.executable, "-m", "multiplane", "--version"]])
def test_version_flag(argv: list[str]) -> None:
    """`multiplane --version` (and `python -m multiplane --version`) prints `multiplane <version>` and exits 0."""
    proc = run(argv)
    assert proc.returncode == 0
    assert proc.stdout == f"multiplane {multiplane.__version__}\n"


def test_no_arguments_prints_usage() -> None:
    """`multiplane` without arguments or CNI_COMMAND prints usage on stderr, nothing on stdout, and exits 2."""
    proc = run([OURS_MULTIPLANE])
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("usage: multiplane")
    assert "host-local" in proc.stderr


def test_help_prints_usage_and_succeeds() -> None:
    """`multiplane --help` prints usage on stderr and exits 0."""
    proc = run([OURS_MULTIPLANE, "--help"])
    assert (proc.returncode, proc.stdout) == (0, "")
    assert proc.stderr.startswith("usage: multiplane")


@pytest.mark.parametrize("requested", ["0.3.1", "1.1.0"])
def test_subcommand_matches_link_name(requested: str) -> None:
    """`multiplane host-local` answers VERSION exactly like `multiplane-host-local`."""
    stdin = {"cniVersion": requested}
    via_sub = run_binary([OURS_MULTIPLANE, "host-local"], "VERSION", stdin)
    via_link = run_binary(OURS_HOST_LOCAL, "VERSION", stdin)
    assert via_sub.returncode == via_link.returncode == 0
    assert via_sub.json == via_link.json
    assert via_sub.json["cniVersion"] == requested


def test_subcommand_runs_full_skel_checks() -> None:
    """`multiplane host-local` applies the same environment checks as the linked name."""
    inv = run_binary([OURS_MULTIPLANE, "host-local"], "ADD", {"cniVersion": "1.0.0", "name": "n"}, ifname="a/b")
    assert (inv.returncode, inv.error()["code"]) == (1, 4)


@pytest.mark.parametrize("argv_tail", [[], ["multiplane-nope"], ["nope"]])
def test_unavailable_personality_is_cni_error(argv_tail: list[str]) -> None:
    """A runtime calling `multiplane` without a built-in personality gets a code 7 error object, not a traceback."""
    inv = run_binary([OURS_MULTIPLANE, *argv_tail], "ADD", {"cniVersion": "1.0.0", "name": "n", "type": "multiplane"})
    err = inv.error()
    assert inv.returncode == 1
    assert err["code"] == 7
    assert set(err) == {"cniVersion", "code", "msg", "details"}
    assert "Traceback" not in inv.stdout + inv.stderr


# ---- import cost --------------------------------------------------------------------------------


def test_core_modules_import_nothing_heavy() -> None:
    """Importing cli, skel and host-local loads none of pyroute2, pydantic, dataclasses, typing or inspect."""
    code = (
        "import multiplane.cli, multiplane.skel, multiplane.plugins.host_local, sys, json;"
        "print(json.dumps(sorted(sys.modules)))"
    )
    proc = run([sys.executable, "-X", "importtime", "-c", code])
    assert proc.returncode == 0, proc.stderr
    timed = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    loaded = set(json.loads(proc.stdout))
    # Both views must have seen the modules under test, or the checks below prove nothing.
    assert {"multiplane.skel", "multiplane.plugins.host_local"} <= timed
    assert {"multiplane.skel", "multiplane.plugins.host_local"} <= loaded
    assert forbidden_in(timed) == []
    assert forbidden_in(loaded) == []


@pytest.mark.parametrize("personality", ["multiplane-host-local", "multiplane-macvlan"])
@pytest.mark.parametrize(
    ("command", "stdin"),
    [("VERSION", b'{"cniVersion":"0.4.0"}'), ("ADD", b'{"cniVersion":"1.0.0","name":"n"}')],
)
def test_cni_call_imports_no_pyroute2_or_pydantic(personality: str, command: str, stdin: bytes) -> None:
    """VERSION (and an ADD failing its env checks) imports neither pyroute2 nor pydantic, nor even the plugin module."""
    code = (
        "import json, os, sys\n"
        "from multiplane.cli import main\n"
        f"status = main([{personality!r}])\n"
        "os.write(2, ('\\nMODULES ' + json.dumps(sorted(sys.modules)) + '\\n').encode())\n"
        "sys.exit(status)\n"
    )
    proc = run([sys.executable, "-c", code], stdin, CNI_COMMAND=command)
    marker = [line for line in proc.stderr.splitlines() if line.startswith("MODULES ")]
    assert len(marker) == 1, proc.stderr
    loaded = set(json.loads(marker[0].removeprefix("MODULES ")))
    assert "multiplane.skel" in loaded
    assert not any(m.startswith("multiplane.plugins.") for m in loaded), sorted(loaded)
    assert sorted(m for m in loaded if m.split(".")[0] in ("pyroute2", "pydantic")) == []
    reply = json.loads(proc.stdout)
    if command == "VERSION":
        assert (proc.returncode, reply["cniVersion"]) == (0, "0.4.0")
    else:
        assert (proc.returncode, reply["code"]) == (1, 4)


# ---- hostile input through the real entry point (issue 11) -------------------------------------


def run_bytes(argv: list[str], stdin: bytes, env: dict[bytes, bytes]) -> subprocess.CompletedProcess[bytes]:
    """Run with an environment given as bytes, so values that are not UTF-8 reach the process as they are."""
    full = {k.encode(): v.encode() for k, v in clean_env().items()}
    full.update(env)
    return subprocess.run(argv, input=stdin, env=full, capture_output=True, timeout=60, check=False)  # type: ignore[arg-type]


def one_error(proc: subprocess.CompletedProcess[bytes]) -> dict[str, object]:
    """stdout is exactly one UTF-8 JSON error object; stderr holds no traceback."""
    assert proc.returncode == 1, proc
    obj = json.loads(proc.stdout.decode("utf-8"))
    assert isinstance(obj, dict) and isinstance(obj["code"], int) and isinstance(obj["msg"], str), obj
    assert b"Traceback" not in proc.stderr, proc.stderr.decode(errors="replace")
    return obj


CNI_ENV = {
    b"CNI_COMMAND": b"ADD",
    b"CNI_CONTAINERID": b"ctr1",
    b"CNI_NETNS": b"/var/run/netns/mp-none",
    b"CNI_IFNAME": b"eth0",
    b"CNI_PATH": b"/usr/lib/cni",
}


@pytest.mark.parametrize("binary", [OURS_HOST_LOCAL, OURS_MULTIPLANE])
@pytest.mark.parametrize(
    ("stdin", "code"),
    [
        (b'{"cniVersion": "\\ud800", "name": "n", "type": "x"}', 1),
        (b'{"cniVersion": "1.0.0", "name": "n\\udfff", "type": "x"}', 7),
        (b'{"cniVersion": "1.0.0", "name": "n", "type": "x\\u0000"}', 7),
        (b"[" * 3000, 6),
        (b'{"a":' * 3000, 6),
    ],
    ids=["surrogate-version", "surrogate-name", "nul-type", "deep-array", "deep-object"],
)
def test_hostile_stdin_gets_one_error_object(binary: str, stdin: bytes, code: int) -> None:
    """Before issue 11 a lone surrogate echoed into the error made the process print nothing and a traceback."""
    assert one_error(run_bytes([binary], stdin, CNI_ENV))["code"] == code


@pytest.mark.parametrize("binary", [OURS_HOST_LOCAL, OURS_MULTIPLANE])
@pytest.mark.parametrize(
    "variable", [b"CNI_COMMAND", b"CNI_CONTAINERID", b"CNI_NETNS", b"CNI_IFNAME", b"CNI_ARGS", b"CNI_PATH"]
)
def test_non_utf8_environment_gets_code_4(binary: str, variable: bytes) -> None:
    """Bytes that are not UTF-8 in any CNI_* variable: code 4 naming it, not `internal error`."""
    stdin = b'{"cniVersion": "1.0.0", "name": "n", "type": "x"}'
    err = one_error(run_bytes([binary], stdin, {**CNI_ENV, variable: b"e\xff\xfe"}))
    assert (err["code"], err["msg"]) == (4, f"{variable.decode()} is not valid UTF-8")
    assert err["details"] == "e\\xff\\xfe"


@pytest.fixture
def cni_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    """An in-process `main` as a runtime calls it: CNI_COMMAND set, a config on stdin."""
    from multiplane import cli

    monkeypatch.setenv("CNI_COMMAND", "ADD")
    monkeypatch.setattr(cli, "_read_stdin", lambda: b'{"cniVersion":"1.0.0","name":"n","type":"x"}')


@pytest.mark.usefixtures("cni_stdin")
def test_main_answers_even_when_skel_raises(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    """The net under skel: an exception escaping it still gives the runtime one 999 object, traceback on stderr."""
    from multiplane import cli, skel

    def explode(*args: object, **kwargs: object) -> int:
        raise RuntimeError("mp-boom")

    monkeypatch.setattr(skel, "run", explode)
    assert cli.main(["multiplane-host-local"]) == 1
    out, err = capfd.readouterr()
    obj = json.loads(out)
    assert obj["code"] == 999 and obj["msg"].startswith("internal error:")
    assert "mp-boom" in err


@pytest.mark.usefixtures("cni_stdin")
def test_main_answers_even_when_the_answer_cannot_be_encoded(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Should skel ever write text UTF-8 cannot carry, cli replaces it with one 999 object instead of crashing."""
    from multiplane import cli, skel

    def unencodable(plugin: object, env: object, stdin: object, out: io.StringIO, *args: object, **kw: object) -> int:
        out.write('{"msg": "\ud800"}')
        return 0

    monkeypatch.setattr(skel, "run", unencodable)
    assert cli.main(["multiplane-host-local"]) == 1
    out, err = capfd.readouterr()
    assert json.loads(out)["code"] == 999
    assert "UnicodeEncodeError" in err
