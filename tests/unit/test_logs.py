"""The process logger: odd text (lone surrogates, bytes that were not UTF-8) never makes logging raise."""

from __future__ import annotations

import gzip
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from multiplane import logs
from multiplane.logs import MB, Logger


def test_lone_surrogates_are_escaped_in_the_file_and_on_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A message quoting hostile input is written with backslash escapes (before issue 11: UnicodeEncodeError)."""
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    path = tmp_path / "mp.log"
    Logger("debug", str(path)).error("pod \udcff and \ud800")
    assert path.read_bytes().endswith(b"[error] pod \\udcff and \\ud800\n")
    assert stderr.getvalue().endswith("[error] pod \\udcff and \\ud800\n")
    stderr.getvalue().encode()


@pytest.mark.parametrize("path", ["/tmp/mp-\0.log", "/tmp/mp-\ud800/x.log"], ids=["nul", "surrogate"])
def test_a_log_path_that_cannot_be_opened_is_ignored(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A logFile that is no path at all is skipped like an unwritable one: logging never breaks a CNI call."""
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    Logger("debug", path, to_stderr=False).error("x")


def test_no_stderr_at_all_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process started with fd 2 closed has sys.stderr None; logging goes on quietly."""
    monkeypatch.setattr(sys, "stderr", None)
    Logger("debug").error("x")


# ---- levels and the unknown-level warning (issue 12) --------------------------------------------


def test_unknown_level_warns_once_on_stderr_and_in_the_file_then_uses_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """logLevel "loud" is reported once (file and stderr, even with logToStderr off); error lines pass, verbose do not."""
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    path = tmp_path / "mp.log"
    log = Logger("loud", str(path), to_stderr=False)
    log.verbose("mp-hidden")
    log.error("mp-shown")
    text = path.read_text()
    assert text.count("unknown logLevel 'loud'") == 1 and "using error" in text
    assert stderr.getvalue().count("unknown logLevel 'loud'") == 1
    assert "[warning]" in text and "mp-shown" in text and "mp-hidden" not in text
    assert log.level == "error"


@pytest.mark.parametrize("level", ["DEBUG", "Verbose", "error", "panic"])
def test_known_levels_in_any_case_do_not_warn(level: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Multus's four levels, matched case-insensitively, are taken without a word."""
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    assert Logger(level, to_stderr=False).level == level.lower()
    assert stderr.getvalue() == ""


def test_debug_level_writes_debug_lines_and_panic_level_only_panics(tmp_path: Path) -> None:
    """`debug` lets every line through; `panic` only panics (a bug's traceback), not errors or warnings."""
    path = tmp_path / "mp.log"
    debug = Logger("debug", str(path), to_stderr=False)
    debug.debug("mp-d")
    assert "[debug] mp-d" in path.read_text()
    quiet = Logger("panic", str(path), to_stderr=False)
    quiet.error("mp-e")
    quiet.warning("mp-w")
    quiet.panic("mp-p")
    text = path.read_text()
    assert "mp-e" not in text and "mp-w" not in text and "[panic] mp-p" in text


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"maxSize": "big"}, "logOptions.maxSize must be a number, not 'big'; using 100"),
        ({"compress": 1}, "logOptions.compress must be true or false, not 1; using true"),
        ([1], "logOptions must be an object, not list"),
    ],
)
def test_bad_log_options_warn_and_keep_the_default(
    options: Any, complaint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A logOptions value of the wrong type is reported and its default kept: logging never fails a CNI call."""
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    log = Logger("error", "", to_stderr=False, options=options)
    assert complaint in stderr.getvalue()
    assert (log.max_bytes, log.max_backups, log.compress) == (100 * MB, 5, True)


def test_options_follow_lumberjack_zero_semantics() -> None:
    """maxSize 0 is the 100 MB default; maxBackups 0 and maxAge 0 turn their limits off; keys match in any case."""
    log = Logger(options={"MaxSize": 0, "maxbackups": 0, "maxAge": 0, "Compress": False})
    assert (log.max_bytes, log.max_backups, log.max_age, log.compress) == (100 * MB, 0, 0, False)
    defaults = Logger()
    assert (defaults.max_bytes, defaults.max_backups, defaults.max_age, defaults.compress) == (
        100 * MB,
        5,
        5 * 86400,
        True,
    )


# ---- rotation (Multus's logOptions, lumberjack names) -------------------------------------------

TINY = 200 / MB  # maxSize in MB: rotate after ~200 bytes
STAMPED = re.compile(r"^mp-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}\.log(\.gz)?$")


def _fill(log: Logger, lines: int, tag: str = "x") -> None:
    for i in range(lines):
        log.error(f"{tag}-{i:04d} " + "." * 60)


def _backups(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in ("mp.log", "mp.log.lock"))


def _all_lines(directory: Path) -> list[str]:
    lines = []
    for p in directory.iterdir():
        if p.name == "mp.log.lock":
            continue
        data = gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes()
        lines += data.decode().splitlines()
    return lines


def test_rotation_keeps_max_backups_uncompressed(tmp_path: Path) -> None:
    """maxSize ~200 bytes, maxBackups 2, compress off: mp.log plus exactly two `mp-<UTC time>.log` files."""
    log = Logger(
        "error",
        str(tmp_path / "mp.log"),
        to_stderr=False,
        options={"maxSize": TINY, "maxBackups": 2, "compress": False},
    )
    _fill(log, 40)
    names = _backups(tmp_path)
    assert len(names) == 2, names
    assert all(STAMPED.match(n) and not n.endswith(".gz") for n in names), names
    assert (tmp_path / "mp.log").stat().st_size < 400
    # The newest lines survive: the last one written is in mp.log or the newest backup.
    assert any("x-0039" in line for line in _all_lines(tmp_path))
    assert not any("x-0000" in line for line in _all_lines(tmp_path))


def test_rotation_compresses_backups(tmp_path: Path) -> None:
    """compress on: every rotated file is `mp-<time>.log.gz`, gzip data holding whole log lines."""
    log = Logger("error", str(tmp_path / "mp.log"), to_stderr=False, options={"maxSize": TINY, "maxBackups": 3})
    _fill(log, 40)
    names = _backups(tmp_path)
    assert len(names) == 3 and all(n.endswith(".log.gz") and STAMPED.match(n) for n in names), names
    for name in names:
        for line in gzip.decompress((tmp_path / name).read_bytes()).decode().splitlines():
            assert re.match(r"^\S+Z \[error\] x-\d{4} \.{60}$", line), line


def test_rotation_removes_backups_older_than_max_age(tmp_path: Path) -> None:
    """maxAge 1 day: a backup whose name says 2001 goes at the next rotation; one from an hour ago stays."""
    old = tmp_path / "mp-2001-01-01T00-00-00.000.log.gz"
    old.write_bytes(gzip.compress(b"old\n"))
    recent_name = time.strftime("mp-%Y-%m-%dT%H-%M-%S.000.log.gz", time.gmtime(time.time() - 3600))
    (tmp_path / recent_name).write_bytes(gzip.compress(b"recent\n"))
    unrelated = tmp_path / "mp-notes.log"
    unrelated.write_text("not a backup")
    log = Logger(
        "error", str(tmp_path / "mp.log"), to_stderr=False, options={"maxSize": TINY, "maxAge": 1, "maxBackups": 0}
    )
    _fill(log, 5)
    assert not old.exists()
    assert (tmp_path / recent_name).exists() and unrelated.exists()
    assert len(_backups(tmp_path)) >= 3  # recent + unrelated + at least one new


def test_no_rotation_below_max_size(tmp_path: Path) -> None:
    """Below maxSize nothing is renamed: one file, every line in it."""
    log = Logger("error", str(tmp_path / "mp.log"), to_stderr=False, options={"maxSize": 1})
    _fill(log, 40)
    assert _backups(tmp_path) == []
    assert len((tmp_path / "mp.log").read_text().splitlines()) == 40


_WRITER = """
import sys
from multiplane.logs import Logger
log = Logger("error", sys.argv[1], to_stderr=False, options={"maxSize": float(sys.argv[3]), "maxBackups": 0})
for i in range(int(sys.argv[2])):
    log.error(f"w{sys.argv[4]}-{i:04d} " + "." * 60)
"""


def test_concurrent_writers_lose_no_line_across_rotations(tmp_path: Path) -> None:
    """Four processes append at once while the file rotates (and compresses) many times: every line is kept, whole, once."""
    path = tmp_path / "mp.log"
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), "300", str(2000 / MB), str(w)]) for w in range(4)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    lines = _all_lines(tmp_path)
    assert len(_backups(tmp_path)) > 5
    payload = sorted(line.split("] ", 1)[1] for line in lines)
    assert payload == sorted(f"w{w}-{i:04d} " + "." * 60 for w in range(4) for i in range(300))


def test_a_log_that_is_not_a_regular_file_is_never_rotated(tmp_path: Path) -> None:
    """logFile naming a device (here a link to /dev/null) is written to, never renamed, and gets no lock file."""
    path = tmp_path / "mp.log"
    path.symlink_to("/dev/null")
    log = Logger("error", str(path), to_stderr=False, options={"maxSize": TINY})
    _fill(log, 10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mp.log"]
    assert path.is_symlink()


# ---- the process logger -----------------------------------------------------------------------


def test_process_logger_is_scoped_and_restored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`using` installs a logger for a block (nested ones too) and puts the previous one back; reset forgets it."""
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    standalone = logs.get()
    assert (standalone.path, standalone.to_stderr, standalone.level) == ("", True, "error")
    outer, inner = Logger(path=str(tmp_path / "a")), Logger(path=str(tmp_path / "b"))
    with logs.using(outer):
        assert logs.get() is outer
        with logs.using(inner):
            assert logs.get() is inner
        assert logs.get() is outer
    assert logs.get() is standalone
    with pytest.raises(ZeroDivisionError), logs.using(outer):
        1 / 0  # noqa: B018
    assert logs.get() is standalone
    logs.reset()
    assert logs.get() is not standalone


def test_internal_error_logs_the_traceback_and_answers_like_skel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-CNI exception: traceback in the installed logger's file at `panic`; the CNI error skel would give (999)."""
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    path = tmp_path / "mp.log"
    with logs.using(Logger("panic", str(path), to_stderr=False)):
        try:
            {}["mp-missing"]
        except KeyError as exc:
            err = logs.internal_error(exc, "mp-where")
    assert (err.error_code, err.msg) == (999, "internal error: KeyError: 'mp-missing'")
    text = path.read_text()
    assert "[panic] mp-where: internal error:\nTraceback (most recent call last):" in text
    assert "KeyError: 'mp-missing'" in text
    assert stderr.getvalue() == ""


def test_a_traceback_reaches_stderr_when_there_is_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even with logToStderr off, a bug's traceback is not lost when no logFile is set."""
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    with logs.using(Logger("error", "", to_stderr=False)):
        try:
            raise RuntimeError("mp-bug")
        except RuntimeError as exc:
            logs.internal_error(exc, "mp-where")
    assert "RuntimeError: mp-bug" in stderr.getvalue() and "Traceback" in stderr.getvalue()


def test_a_logger_holds_no_descriptor_after_close(tmp_path: Path) -> None:
    """The lock file's descriptor is released by close() (a long-lived process makes a logger per request)."""
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        log = Logger("error", str(tmp_path / "mp.log"), to_stderr=False)
        log.error("x")
        log.close()
    assert len(os.listdir("/proc/self/fd")) == before


def test_another_thread_does_not_see_this_threads_logger(tmp_path: Path) -> None:
    """The installed logger is per thread (a daemon's worker threads each run their own call)."""
    import threading

    seen: list[Logger] = []
    mine = Logger(path=str(tmp_path / "mp.log"))
    with logs.using(mine):
        worker = threading.Thread(target=lambda: seen.append(logs.get()))
        worker.start()
        worker.join()
        assert logs.get() is mine
    assert seen and seen[0] is not mine and seen[0].path == ""


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 10**400, -(10**400)])
def test_numbers_no_size_can_be_are_refused_not_raised(value: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """NaN, Infinity (Python's JSON reads them) or a 400-digit maxSize/maxAge: reported, defaults kept, nothing raised."""
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    log = Logger(options={"maxSize": value, "maxAge": value, "maxBackups": value})
    assert (log.max_bytes, log.max_backups, log.max_age) == (100 * MB, 5, 5 * 86400)
    assert stderr.getvalue().count("must be a number") == 3
