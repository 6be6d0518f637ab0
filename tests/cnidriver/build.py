"""Build tests/cnidriver (the libcni runtime driver) with Debian's Go and libcni, offline, in GOPATH mode.

Used by the pytest fixture `cnidriver`, by `make bench` and by `make demo`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_name("main.go")
LIBCNI = "/usr/share/gocode/src/github.com/containernetworking/cni/libcni"


class BuildError(RuntimeError):
    """Go or libcni is missing, or the build failed; the message says which."""


def build_driver(root: Path) -> str:
    """Compile the driver under `root` (a fresh directory) and return the binary's path."""
    go = shutil.which("go")
    if go is None or not os.path.isdir(LIBCNI):
        raise BuildError(
            "Go or Debian's libcni sources are missing: make setup installs golang-go and golang-github-appc-cni-dev"
        )
    src = root / "src" / "cnidriver"
    src.mkdir(parents=True)
    shutil.copy(SOURCE, src / "main.go")
    out = root / "cnidriver"
    env = dict(os.environ, GO111MODULE="off", GOPATH=f"{root}:/usr/share/gocode", GOPROXY="off", GOFLAGS="")
    env["GOCACHE"] = str(root / "cache")
    proc = subprocess.run(
        [go, "build", "-o", str(out), "."], cwd=src, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise BuildError(f"building the libcni driver failed:\n{proc.stderr}")
    return str(out)
