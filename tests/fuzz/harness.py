"""Run one fuzz case and judge it: the oracle every case of tests/fuzz must pass.

A case is (personality, environment, stdin) run against a fresh `Sandbox`: a temp root
holding an empty working directory (`cwd`) and the state directories the config names
(`state/…`). The oracle (`Verdict.check`):

* stdout is exactly one JSON object that encodes as UTF-8: a result (exit 0), or an error
  object with an integer `code` and a string `msg` (exit 1); a successful DEL, CHECK, GC
  or STATUS prints nothing, and so does a call without CNI_COMMAND (exit 0, or 2 for
  `multiplane`'s usage);
* `internal error` (code 999 with that text, reserved for bugs) never appears, nor a
  Python traceback on stdout or stderr;
* nothing is written outside the state directories the config names: the working
  directory stays empty, every new or changed path under the sandbox lies inside a
  named absolute state directory, and no default state directory of the host
  (/var/lib/cni/…, /etc/cni/multiplane) gains an entry carrying the fuzz prefix.

`run_inprocess` calls `multiplane.skel.run` with a real env dict (values decoded from
bytes like os.environ) and real stdin bytes; `run_process` runs a real entry point.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import event

from multiplane import skel
from multiplane.plugins import REGISTRY

PREFIX = "mp-fz"
PERSONALITIES = ("multiplane", "multiplane-macvlan", "multiplane-host-local")
# Where the plugins keep state when a config names nothing: none of it may ever be touched.
HOST_DEFAULT_DIRS = ("/var/lib/cni/networks", "/var/lib/cni/multiplane", "/etc/cni/multiplane", "/var/lib/cni")
# Keys naming state a plugin may write (matched case-insensitively, at the top or under ipam).
STATE_KEYS = ("dataDir", "cniDir", "logFile")
_SURROGATES = re.compile("[\ud800-\udfff]")


class Sandbox:
    """A temp root: `cwd` (must stay empty), `state/` (what configs name), `ro/` (read-only inputs)."""

    def __init__(self, parent: Path) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-", dir=parent))
        self.cwd = self.root / "cwd"
        self.state = self.root / "state"
        self.ro = self.root / "ro"
        for d in (self.cwd, self.state, self.ro):
            d.mkdir()
        self.netns_file = self.ro / "not-a-netns"
        self.netns_file.write_text("")

    def path(self, *parts: str) -> str:
        return str(self.state.joinpath(*parts))

    def snapshot(self) -> dict[str, tuple[int, int, int]]:
        """Every path under the root with (mode, size, mtime_ns); links not followed."""
        out: dict[str, tuple[int, int, int]] = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames + filenames:
                full = os.path.join(dirpath, name)
                try:
                    st = os.lstat(full)
                except FileNotFoundError:
                    continue
                out[full] = (st.st_mode, st.st_size, st.st_mtime_ns)
        return out

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def host_default_entries() -> set[str]:
    """Entries of the host's default state directories that carry the fuzz prefix (there must be none)."""
    found = set()
    for d in HOST_DEFAULT_DIRS:
        try:
            names = os.listdir(d)
        except OSError:
            continue
        found |= {os.path.join(d, n) for n in names if n.startswith(PREFIX)}
    return found


def named_state_dirs(stdin: bytes, cwd: Path) -> list[str]:
    """The absolute state paths a config names (top level and `ipam`), for the write check.

    Relative paths are left out on purpose: state relative to a runtime's working directory
    is a defect, and the empty-cwd check reports it. A log file brings its siblings
    (logs.py): `<logFile>.lock` and the rotated `<stem>-<time><ext>[.gz]`, given as the
    prefix pattern `<stem>-*`. Lone surrogates read as U+FFFD, as the plugins decode them.
    """
    try:
        obj = json.loads(stdin)
    except (ValueError, RecursionError):
        return []
    if not isinstance(obj, dict):
        return []
    out = []
    scopes = [obj] + [v for k, v in obj.items() if k.lower() == "ipam" and isinstance(v, dict)]
    for scope in scopes:
        for key, value in scope.items():
            if key.lower() in {k.lower() for k in STATE_KEYS} and isinstance(value, str) and value.startswith("/"):
                with contextlib.suppress(ValueError):
                    path = os.path.normpath(os.path.join(cwd, _SURROGATES.sub("\ufffd", value)))
                    out.append(path)
                    if key.lower() == "logfile":
                        out += [path + ".lock", os.path.splitext(path)[0] + "-*"]
    return out


def _within(path: str, allowed: str) -> bool:
    if allowed.endswith("*"):
        return path.startswith(allowed[:-1])
    return path == allowed or path.startswith(allowed.rstrip("/") + "/")


@dataclass
class Answer:
    command: str
    status: int
    stdout: str
    stderr: str
    where: str = ""
    document: Any = field(default=None, repr=False)


class OracleFailure(AssertionError):
    pass


def _fail(answer: Answer, why: str, extra: str = "") -> None:
    raise OracleFailure(
        f"{why} [{answer.where}, CNI_COMMAND={answer.command!r}, exit {answer.status}]\n"
        f"stdout: {answer.stdout[:2000]!r}\nstderr: {answer.stderr[-3000:]!r}{extra}"
    )


def check_answer(answer: Answer) -> Any:
    """The stdout/stderr half of the oracle; returns the JSON document (None for an empty success)."""
    if "Traceback (most recent call last)" in answer.stdout + answer.stderr:
        _fail(answer, "a Python traceback was printed")
    try:
        answer.stdout.encode()
    except UnicodeEncodeError:
        _fail(answer, "stdout is not UTF-8 text")
    if answer.command == "":
        # No CNI_COMMAND: text for a human on stderr, nothing on stdout: skel's about text (exit 0),
        # or `multiplane`'s usage (exit 2) when the program itself is run without arguments.
        if answer.status not in (0, 2) or answer.stdout:
            _fail(answer, "without CNI_COMMAND nothing may go to stdout (exit 0, or 2 for usage)")
        return None
    if answer.status not in (0, 1):
        _fail(answer, "exit status is neither 0 nor 1")
    if answer.status == 0 and answer.command in ("DEL", "CHECK", "GC", "STATUS") and answer.stdout == "":
        return None
    text = answer.stdout.strip()
    try:
        doc, end = json.JSONDecoder().raw_decode(text)
    except ValueError:
        _fail(answer, "stdout is not one JSON document")
    if text[end:].strip():
        _fail(answer, "more than one JSON document on stdout")
    if not isinstance(doc, dict):
        _fail(answer, "stdout is JSON but not an object")
    if answer.status == 1:
        code, msg = doc.get("code"), doc.get("msg")
        if not isinstance(code, int) or isinstance(code, bool) or not isinstance(msg, str):
            _fail(answer, "an error object needs an integer code and a string msg")
        if "internal error" in msg or "internal error" in str(doc.get("details", "")):
            _fail(answer, "`internal error` (a bug) was reported")
    elif answer.command in ("DEL", "CHECK", "GC", "STATUS"):
        _fail(answer, f"a successful {answer.command} must print nothing")
    answer.document = doc
    return doc


def check_writes(
    sandbox: Sandbox, before: dict[str, tuple[int, int, int]], allowed: list[str], answer: Answer, host_before: set[str]
) -> None:
    """The filesystem half of the oracle (see the module docstring)."""
    leftovers = sorted(os.listdir(sandbox.cwd))
    if leftovers:
        _fail(answer, "the working directory is no longer empty", f"\nin cwd: {leftovers}")
    after = sandbox.snapshot()
    changed = [p for p, meta in after.items() if before.get(p) != meta]
    outside = [p for p in changed if not any(_within(p, a) for a in allowed)]
    # A directory holding a named state dir changes its mtime when the plugin creates that dir.
    outside = [p for p in outside if not any(a.startswith(p.rstrip("/") + "/") for a in allowed)]
    if outside:
        _fail(answer, "wrote outside the state directories the config names", f"\npaths: {outside}\nallowed: {allowed}")
    host_after = host_default_entries()
    if host_after - host_before:
        _fail(answer, "wrote into the host's default state directories", f"\n{sorted(host_after - host_before)}")


def fs_env(raw: dict[str, bytes | str | None]) -> dict[str, str]:
    """An environment as Python presents os.environ: bytes decoded as UTF-8 with surrogateescape."""
    out = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for key, value in raw.items():
        if value is None:
            continue
        out[key] = os.fsdecode(value) if isinstance(value, bytes) else value
    return out


def run_inprocess(personality: str, env: dict[str, str], stdin: bytes, sandbox: Sandbox, where: str = "") -> Answer:
    """skel.run in this process, with cwd in the sandbox and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(sandbox.cwd), contextlib.redirect_stderr(err):
        status = skel.run(REGISTRY[personality], env, stdin, out, err, name=personality)
    return Answer(env.get("CNI_COMMAND", ""), status, out.getvalue(), err.getvalue(), where or personality)


def run_process(argv: list[str], env: dict[bytes, bytes], stdin: bytes, sandbox: Sandbox, where: str = "") -> Answer:
    """A real entry point as a runtime runs it: bytes environment, stdin, cwd in the sandbox."""
    proc = subprocess.run(argv, input=stdin, env=env, cwd=sandbox.cwd, capture_output=True, timeout=120, check=False)
    try:
        stdout = proc.stdout.decode("utf-8")
    except UnicodeDecodeError:
        stdout = proc.stdout.decode("utf-8", "surrogateescape")  # fails check_answer's UTF-8 test
    command = os.fsdecode(env.get(b"CNI_COMMAND", b""))
    return Answer(command, proc.returncode, stdout, proc.stderr.decode("utf-8", "replace"), where or argv[0])


def judge(sandbox: Sandbox, run: Any, stdin: bytes, also_allowed: tuple[str, ...] = ()) -> Answer:
    """Run `run()` (returns an Answer) and apply the whole oracle around it.

    `also_allowed`: state directories named elsewhere than stdin (a delegate's dataDir in a NAD).
    """
    before = sandbox.snapshot()
    host_before = host_default_entries()
    answer = run()
    doc = check_answer(answer)
    code = doc.get("code") if isinstance(doc, dict) and answer.status else answer.status
    event(f"{answer.where} {answer.command[:8]!r} -> {code}")
    allowed = named_state_dirs(stdin, sandbox.cwd) + list(also_allowed)
    check_writes(sandbox, before, allowed, answer, host_before)
    return answer
