#!/usr/bin/env python3
"""`make binary`: build the runtime tree and dist/multiplane, the self-contained file that carries it.

The tree (build/runtime/tree) is everything multiplane needs, and nothing of the node:

    ld-linux-x86-64.so.2  lib/            the dynamic loader and every C library (from this Debian)
    python3.11            python3.11._pth Debian's interpreter; the ._pth file makes it isolated
                                          (no site, no PYTHON* variables) and names its path
    lib/python3.11/       stdlib as sourceless .pyc, lib-dynload extension modules
    site-packages/        multiplane, pyroute2, yaml, pydantic, prometheus_client as sourceless .pyc
    boot.py               sets argv from the launcher's and calls multiplane.cli.main
    launcher              the static launcher (packaging/runtime/launcher.c) without payload
    VERSION  MANIFEST     the multiplane version; sha256, mode and size of every file

dist/multiplane is the launcher followed by the tree as payload (multiplane.runtime.payload).
Run with the project venv's interpreter: it is Debian's 3.11, the same bytecode as the tree's.
"""

from __future__ import annotations

import os
import py_compile
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "src"))

from multiplane import __version__  # noqa: E402
from multiplane.runtime import payload  # noqa: E402

INTERPRETER = "/usr/bin/python3.11"
LOADER = "/lib64/ld-linux-x86-64.so.2"
STDLIB = "/usr/lib/python3.11"
# Parts of the standard library no code path of multiplane imports (tests, GUIs, tooling).
STDLIB_SKIP = {
    "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data", "site-packages",
    "dist-packages", "venv", "__pycache__", "config-3.11-x86_64-linux-gnu", "turtle.py", "sqlite3", "dbm",
    "curses",
}  # fmt: skip
DYNLOAD_SKIP = re.compile(
    r"^(_test|_ctypes_test|_xxtest|xxlimited|_tkinter|_curses|_dbm|_sqlite3|readline|nis|ossaudiodev|audioop)"
)
# Besides multiplane, from the venv's site-packages: what CNI calls use (pyroute2, PyYAML),
# pydantic with its dependencies for `multiplane validate`, and prometheus_client (pure Python,
# no dependencies) for the node daemon's /metrics. The last two are never imported by a CNI call
# (tests/unit/test_import_budget.py). etcd3gw and its dependencies (requests and its four, and
# futurist, debtcollector, wrapt, pbr, which etcd3gw imports at its own import) serve the etcd
# store of cluster-wide IPAM, imported on its first request only (docs/decisions/0011).
PACKAGES = (
    "pyroute2", "yaml", "_yaml",
    "pydantic", "pydantic_core", "annotated_types", "typing_inspection", "typing_extensions",
    "prometheus_client",
    "etcd3gw", "requests", "urllib3", "idna", "charset_normalizer", "certifi",
    "futurist", "debtcollector", "wrapt", "pbr",
    # debtcollector reads its own version from its metadata when it is imported: its dist-info too
    *[d for d in os.listdir(sysconfig.get_paths()["purelib"]) if re.fullmatch(r"debtcollector-[^-]+\.dist-info", d)],
)  # fmt: skip
if not any(name.startswith("debtcollector-") for name in PACKAGES):
    raise SystemExit("build_runtime: debtcollector's dist-info is missing from the venv (make setup installs it)")
PTH = "lib/python3.11\nlib/python3.11/lib-dynload\nsite-packages\n"
BOOT = '''"""Started by the launcher: argv[1] is the name the runtime executed, then its arguments."""
import sys

sys.argv = sys.argv[1:]
sys.frozen = True
from multiplane.cli import main

raise SystemExit(main())
'''


def _pyc(source: str, target: str, shown: str) -> None:
    os.makedirs(os.path.dirname(target), exist_ok=True)
    py_compile.compile(
        source, cfile=target, dfile=shown, doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
    )


def _copy_python_tree(src: str, dst: str, skip: set[str] | None = None, shown: str = "") -> None:
    """Every module under `src` into `dst`: .py as sourceless .pyc, other files (extensions, data) as they are.

    `shown` prefixes the file names recorded in the bytecode (tracebacks, profiles): the
    package's name, so a frame reads `multiplane/plugins/meta/plugin.py`.
    """
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(
            d for d in dirs if d not in (skip or set()) and d != "__pycache__" and not d.endswith(".dist-info")
        )
        rel = os.path.relpath(root, src)
        for name in sorted(files):
            if rel == "." and skip and name in skip:
                continue
            path = os.path.join(root, name)
            out = os.path.normpath(os.path.join(dst, rel, name))
            if name.endswith(".py"):
                _pyc(path, out + "c", os.path.normpath(os.path.join(shown, rel, name)))
            elif not name.endswith((".pyc", ".pyi", ".typed", ".exe")):
                os.makedirs(os.path.dirname(out), exist_ok=True)
                shutil.copy2(path, out)


def _needed_libraries(binaries: list[str]) -> set[str]:
    found: set[str] = set()
    for binary in binaries:
        out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            m = re.match(r"\s*(\S+) => (/\S+)", line)
            if m and not m.group(1).startswith("ld-linux"):
                found.add(m.group(2))
    return found


def build_launcher(out: str) -> str:
    """The static launcher; it knows the personalities (its first hop to the daemon serves only those)."""
    from multiplane.plugins import REGISTRY

    if not all(re.fullmatch(r"[a-z0-9-]+", name) for name in REGISTRY):
        raise SystemExit(f"build_runtime: a personality the launcher cannot quote: {sorted(REGISTRY)}")
    names = "".join(f'"{name}",' for name in REGISTRY)
    subprocess.run(
        [
            "gcc",
            "-static",
            "-O2",
            "-s",
            "-Wall",
            "-Wextra",
            "-Werror",
            f"-DMP_PERSONALITIES={names}",
            "-o",
            out,
            os.path.join(ROOT, "packaging/runtime/launcher.c"),
        ],
        check=True,
    )
    return out


def build_tree(tree: str, launcher: str) -> None:
    shutil.rmtree(tree, ignore_errors=True)
    os.makedirs(os.path.join(tree, "lib"))
    shutil.copy2(INTERPRETER, os.path.join(tree, "python3.11"))
    shutil.copy2(LOADER, os.path.join(tree, "ld-linux-x86-64.so.2"))
    with open(os.path.join(tree, "python3.11._pth"), "w") as fh:
        fh.write(PTH)
    with open(os.path.join(tree, "boot.py"), "w") as fh:
        fh.write(BOOT)
    with open(os.path.join(tree, "VERSION"), "w") as fh:
        fh.write(__version__ + "\n")
    shutil.copy2(launcher, os.path.join(tree, "launcher"))

    stdlib = os.path.join(tree, "lib/python3.11")
    _copy_python_tree(STDLIB, stdlib, STDLIB_SKIP | {"lib-dynload"})
    dynload = os.path.join(stdlib, "lib-dynload")
    os.makedirs(dynload)
    for name in sorted(os.listdir(os.path.join(STDLIB, "lib-dynload"))):
        if not DYNLOAD_SKIP.match(name):
            shutil.copy2(os.path.join(STDLIB, "lib-dynload", name), dynload)

    site = os.path.join(tree, "site-packages")
    _copy_python_tree(os.path.join(ROOT, "src/multiplane"), os.path.join(site, "multiplane"), shown="multiplane")
    venv_site = sysconfig.get_paths()["purelib"]
    for name in PACKAGES:
        src = os.path.join(venv_site, name)
        if os.path.isdir(src):
            _copy_python_tree(src, os.path.join(site, name), shown=name)
        for entry in os.listdir(
            venv_site
        ):  # single-file modules: extensions (_yaml.cpython-311-….so), typing_extensions.py
            if entry.startswith(name + ".") and entry.endswith(".so"):
                shutil.copy2(os.path.join(venv_site, entry), site)
            elif entry == name + ".py":
                _pyc(os.path.join(venv_site, entry), os.path.join(site, name + ".pyc"), entry)

    binaries = [os.path.join(tree, "python3.11")]
    for root, _dirs, files in os.walk(tree):
        binaries += [os.path.join(root, f) for f in files if f.endswith(".so")]
    for lib in sorted(_needed_libraries(binaries)):
        shutil.copy2(os.path.realpath(lib), os.path.join(tree, "lib", os.path.basename(lib)))


def entries_of(tree: str) -> list[payload.Entry]:
    out = []
    for root, _dirs, files in os.walk(tree):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                data = fh.read()
            rel = os.path.relpath(path, tree)
            if rel not in (payload.MANIFEST, ".lock", ".complete"):
                out.append(payload.Entry(rel, os.stat(path).st_mode & 0o777, data))
    return out


def main() -> int:
    work = os.path.join(ROOT, "build", "runtime")
    os.makedirs(work, exist_ok=True)
    launcher = build_launcher(os.path.join(work, "launcher"))
    tree = os.path.join(work, "tree")
    build_tree(tree, launcher)
    entries = entries_of(tree)
    text = payload.manifest(entries)
    with open(os.path.join(tree, payload.MANIFEST), "wb") as fh:
        fh.write(text)
    entries.append(payload.Entry(payload.MANIFEST, 0o644, text))
    build = payload.build_id(__version__, text)
    with open(launcher, "rb") as fh:
        blob = payload.write(fh.read(), entries, build)
    dist = os.path.join(ROOT, "dist")
    os.makedirs(dist, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dist, prefix=".multiplane.")
    with os.fdopen(fd, "wb") as fh:
        fh.write(blob)
    os.chmod(tmp, 0o755)
    os.replace(tmp, os.path.join(dist, "multiplane"))
    size = sum(len(e.data) for e in entries)
    print(
        f"dist/multiplane: {len(blob) / 2**20:.1f} MiB, build {build}, tree {size / 2**20:.1f} MiB in {len(entries)} files"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
