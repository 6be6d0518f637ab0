"""The installed runtime's layout (multiplane.runtime.layout) on a temporary bin dir: no root needed."""

from __future__ import annotations

import os
from pathlib import Path

from multiplane.runtime import layout, payload


def _entries(tag: str) -> tuple[str, list[payload.Entry]]:
    files = [payload.Entry("boot.py", 0o644, f"# {tag}\n".encode()), payload.Entry("lib/libmp.so", 0o755, tag.encode())]
    text = payload.manifest(files)
    return payload.build_id(tag, text), [*files, payload.Entry(payload.MANIFEST, 0o644, text)]


def test_a_tampered_tree_of_the_same_build_is_laid_down_again(tmp_path: Path) -> None:
    """lay_down of a build whose tree no longer matches its MANIFEST repairs it; a matching tree is left alone."""
    build, entries = _entries("v1")
    assert layout.lay_down(str(tmp_path), build, entries) is True
    tree = tmp_path / layout.RUNTIME_DIR / build
    inode = (tree / "boot.py").stat().st_ino
    assert layout.lay_down(str(tmp_path), build, entries) is False
    assert (tree / "boot.py").stat().st_ino == inode
    (tree / "lib" / "libmp.so").write_bytes(b"mp-tampered")
    assert layout.verify(str(tree)) == (2, ["lib/libmp.so changed (sha256)"])
    assert layout.lay_down(str(tmp_path), build, entries) is True
    assert (tree / "lib" / "libmp.so").read_bytes() == b"v1"
    assert layout.verify(str(tree)) == (2, [])
    assert sorted(os.listdir(tmp_path / layout.RUNTIME_DIR)) == [build]


def test_verify_names_missing_files_and_modes(tmp_path: Path) -> None:
    """A missing file and a changed mode are differences too."""
    build, entries = _entries("v1")
    layout.lay_down(str(tmp_path), build, entries)
    tree = tmp_path / layout.RUNTIME_DIR / build
    (tree / "boot.py").unlink()
    (tree / "lib" / "libmp.so").chmod(0o700)
    assert layout.verify(str(tree))[1] == ["boot.py is missing", "lib/libmp.so has mode 700, not 755"]
