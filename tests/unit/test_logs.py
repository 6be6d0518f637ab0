"""The process logger: odd text (lone surrogates, bytes that were not UTF-8) never makes logging raise."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from multiplane.logs import Logger


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
