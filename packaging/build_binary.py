#!/usr/bin/env python3
"""`make binary`: build dist/multiplane, one static file that answers to every multiplane name.

1. PyInstaller (onefile, packaging/pyinstaller/multiplane.spec) from the project venv, which
   is built on Debian's /usr/bin/python3 (staticx refuses pyenv interpreters). The archive
   is stored uncompressed and unpacks into RUNTIME_TMPDIR, not /tmp.
2. staticx --no-compress bundles the interpreter's glibc and every shared library, so the
   file runs on any x86-64 Linux, old node OSes and an empty chroot included.
3. staticx's own loader unpacks into $TMPDIR, else /tmp, which hardened nodes mount noexec.
   We rewrite that built-in default to /var (same length, in the loader part only, before
   the archive section), so without TMPDIR it unpacks into /var/staticx-XXXXXX and removes
   it when the program exits. The check below fails the build if staticx changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BIN = os.path.dirname(sys.executable)
RUNTIME_TMPDIR = "/var/lib/cni/multiplane/run"
STATICX_DEFAULT, STATICX_REPLACEMENT = b"/tmp\x00", b"/var\x00"


def run(*argv: str) -> None:
    print("+", " ".join(argv), flush=True)
    subprocess.run(argv, check=True, cwd=ROOT, env=dict(os.environ, MULTIPLANE_RUNTIME_TMPDIR=RUNTIME_TMPDIR))


def patch_staticx_tmpdir(path: str) -> None:
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as fh:
        archive = next(s for s in ELFFile(fh).iter_sections() if s.name == ".staticx.archive")
        limit = archive["sh_offset"]
    with open(path, "rb") as fh:
        data = bytearray(fh.read())
    hits = [i for i in range(limit) if data[i : i + len(STATICX_DEFAULT)] == STATICX_DEFAULT]
    if len(hits) != 1:
        raise SystemExit(f"staticx loader: expected one built-in {STATICX_DEFAULT!r}, found {len(hits)}; check staticx")
    data[hits[0] : hits[0] + len(STATICX_REPLACEMENT)] = STATICX_REPLACEMENT
    with open(path, "wb") as fh:
        fh.write(data)


def main() -> int:
    dist, work = os.path.join(ROOT, "dist"), os.path.join(ROOT, "build", "pyinstaller")
    frozen = os.path.join(work, "dist", "multiplane")
    run(
        os.path.join(BIN, "pyinstaller"),
        "--noconfirm",
        "--log-level=WARN",
        "--distpath",
        os.path.join(work, "dist"),
        "--workpath",
        os.path.join(work, "work"),
        "packaging/pyinstaller/multiplane.spec",
    )
    os.makedirs(dist, exist_ok=True)
    tmp = os.path.join(dist, ".multiplane.tmp")
    run(os.path.join(BIN, "staticx"), "--no-compress", frozen, tmp)
    patch_staticx_tmpdir(tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, os.path.join(dist, "multiplane"))
    size = os.path.getsize(os.path.join(dist, "multiplane"))
    print(f"dist/multiplane: {size} bytes ({size / 2**20:.1f} MiB)")
    shutil.rmtree(os.path.join(work, "work"), ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
