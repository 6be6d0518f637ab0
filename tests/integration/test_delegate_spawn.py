"""Delegates run inside a root (the daemon's chrootDir): a dynamically linked plugin of the "host" works there.

A fake host root is built under the test's directory: Debian's host-local (a dynamically
linked Go binary) and dash, each with the loader and libraries `ldd` names, at the paths
`ldd` names, plus a file no other root has. `ExecDelegator(root=...)` runs them there,
through coreutils' chroot (a venv: this test process) and through the runtime tree's static
launcher (`launcher --exec-in-root`, compiled here from packaging/runtime/launcher.c with the
build's own flags), so the launcher tested is always the one in the source.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from multiplane.delegate.exec import ExecDelegator
from multiplane.errors import CniError, PluginNotFound

pytestmark = pytest.mark.root

ROOT_DIR = Path(__file__).resolve().parents[2]
BIN = "/opt/mp-cni/bin"  # the plugins' directory inside the fake root; no real root has it
MARK = "only in the fake root"


def _copy_with_libraries(binary: str, root: Path, inside: str) -> None:
    """`binary` to `inside` under `root`, and its loader and libraries to the paths ldd names."""
    target = root / inside.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, target)
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libraries = re.findall(r"(?:=> )?(/\S+) \(0x", out)
    assert libraries, f"{binary} is not dynamically linked:\n{out}"
    for library in libraries:
        copy = root / library.lstrip("/")
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(library), copy)


def _sh_plugin(root: Path, name: str, body: str) -> Path:
    path = root / BIN.lstrip("/") / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


@pytest.fixture
def fakeroot(tmp_path: Path) -> Path:
    """A minimal host root: host-local and /bin/sh with their libraries, a marker file, an empty /tmp."""
    root = tmp_path / "mp-hostroot"
    _copy_with_libraries("/usr/lib/cni/host-local", root, f"{BIN}/host-local")
    _copy_with_libraries("/bin/sh", root, "/bin/sh")
    (root / "mp-only-here").write_text(MARK + "\n")
    (root / "tmp").mkdir()
    # In-root answers: the marker, the directory it starts in, one variable, and the exact environment.
    _sh_plugin(
        root,
        "mp-spy",
        "read -r mark < /mp-only-here\n"
        'printf \'{"cniVersion":"1.0.0","dns":{"domain":"%s","search":["%s","%s"]}}\' "$mark" "$(pwd -P)" "$MP_MARK"\n',
    )
    return root


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The launcher built from source by the build's own function (static, -Wall -Werror), as `<tree>/launcher`."""
    spec = importlib.util.spec_from_file_location("mp_build_runtime", ROOT_DIR / "packaging/build_runtime.py")
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    tree = tmp_path_factory.mktemp("mp-tree")
    return str(build.build_launcher(str(tree / "launcher")))


@pytest.fixture
def frozen(launcher: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """This process as if it ran from the runtime tree that holds `launcher` (what boot.py sets)."""
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", os.path.join(os.path.dirname(launcher), "python3.11"))
    return launcher


def _host_local_conf(data_dir: str) -> bytes:
    conf = {
        "cniVersion": "1.0.0",
        "name": "mp-rootnet",
        "type": "macvlan",
        "ipam": {"type": "host-local", "dataDir": data_dir, "ranges": [[{"subnet": "10.43.0.0/29"}]]},
    }
    return json.dumps(conf).encode()


ENV = {"CNI_CONTAINERID": "mp-c1", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0", "CNI_PATH": BIN}


@pytest.mark.parametrize("helper", ["chroot", "launcher"])
def test_dynamically_linked_host_local_runs_inside_the_root(
    helper: str, fakeroot: Path, request: pytest.FixtureRequest
) -> None:
    """Debian's host-local, with the fake root's loader and libc, allocates into the fake root's dataDir."""
    if helper == "launcher":
        request.getfixturevalue("frozen")
    data_dir = f"/var/lib/mp-data-{uuid.uuid4().hex[:8]}"
    stdin = _host_local_conf(data_dir)
    delegator = ExecDelegator([BIN], root=str(fakeroot))
    try:
        result = delegator.add("host-local", stdin, ENV, "1.0.0")
        assert not os.path.exists(data_dir)  # nothing in our own root
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)  # a plugin run outside the root would have made it
    assert [str(ip.address) for ip in result.ips] == ["10.43.0.2/29"]
    assert (fakeroot / data_dir.lstrip("/") / "mp-rootnet" / "10.43.0.2").read_bytes() == b"mp-c1\r\neth0"
    delegator.delete("host-local", stdin, ENV)
    assert not (fakeroot / data_dir.lstrip("/") / "mp-rootnet" / "10.43.0.2").exists()


@pytest.mark.parametrize("helper", ["chroot", "launcher"])
def test_plugin_sees_the_roots_files_from_its_top_with_the_given_environment(
    helper: str, fakeroot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Inside the root: its marker file is readable, the plugin starts at its "/", and gets the request's variables."""
    if helper == "launcher":
        request.getfixturevalue("frozen")
    monkeypatch.chdir(tmp_path)  # our own directory is not where the plugin starts
    result = ExecDelegator([BIN], root=str(fakeroot)).add("mp-spy", b"{}", {"MP_MARK": "x y"}, "1.0.0")
    assert result.dns is not None
    assert (result.dns.domain, result.dns.search) == (MARK, ["/", "x y"])


def test_plugin_only_in_our_root_is_not_found_in_the_host_root(fakeroot: Path) -> None:
    """With a root, the search is in it: the reference bridge in our /usr/lib/cni does not count."""
    assert os.access("/usr/lib/cni/bridge", os.X_OK)
    with pytest.raises(PluginNotFound) as info:
        ExecDelegator(["/usr/lib/cni", BIN], root=str(fakeroot)).add("bridge", b"{}", ENV, "1.0.0")
    assert info.value.msg == f'failed to find plugin "bridge" in path [/usr/lib/cni {BIN}] under root {fakeroot}'
    # …and the converse: the fake root's plugins are not ours.
    with pytest.raises(PluginNotFound):
        ExecDelegator([BIN]).add("mp-spy", b"{}", ENV, "1.0.0")


@pytest.mark.parametrize(
    ("helper", "says"),
    [("chroot", "failed to run command"), ("launcher", f"exec {BIN}/mp-broken: No such file or directory")],
)
def test_plugin_the_helper_cannot_start_names_root_and_path(
    helper: str, says: str, fakeroot: Path, request: pytest.FixtureRequest
) -> None:
    """A plugin whose interpreter the root lacks: the helper's reason, with root and path, not a plugin's answer."""
    if helper == "launcher":
        request.getfixturevalue("frozen")
    broken = fakeroot / BIN.lstrip("/") / "mp-broken"
    broken.write_text("#!/usr/bin/mp-no-such-interpreter\n")
    broken.chmod(0o755)
    with pytest.raises(CniError) as info:
        ExecDelegator([BIN], root=str(fakeroot)).delete("mp-broken", b"{}", ENV)
    assert info.value.msg.startswith(f'failed to execute plugin "{BIN}/mp-broken" in root {fakeroot}: ')
    assert says in info.value.msg


def test_missing_launcher_is_reported_as_such(fakeroot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A runtime tree without its launcher: the error says which helper could not start."""
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "mp-empty-tree" / "python3.11"))
    with pytest.raises(CniError) as info:
        ExecDelegator([BIN], root=str(fakeroot)).delete("mp-spy", b"{}", ENV)
    helper = tmp_path / "mp-empty-tree" / "launcher"
    assert info.value.msg == (
        f'failed to execute plugin "{BIN}/mp-spy" in root {fakeroot}: cannot start {helper}: No such file or directory'
    )


@pytest.mark.parametrize("helper", ["chroot", "launcher"])
def test_text_file_busy_inside_the_root_is_retried(helper: str, fakeroot: Path, request: pytest.FixtureRequest) -> None:
    """ETXTBSY reported by the helper (the exec happens in it) is retried like posix_spawn's own."""
    if helper == "launcher":
        request.getfixturevalue("frozen")
    path = fakeroot / BIN.lstrip("/") / "mp-busy"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o755)
    os.write(fd, b'#!/bin/sh\necho \'{"cniVersion":"1.0.0","ips":[{"address":"10.9.0.6/24"}]}\'\n')
    os.fchmod(fd, stat.S_IRWXU)
    closer = threading.Timer(1.2, os.close, args=(fd,))
    closer.start()
    try:
        result = ExecDelegator([BIN], root=str(fakeroot)).add("mp-busy", b"{}", ENV, "1.0.0")
    finally:
        closer.join()
    assert str(result.ips[0].address) == "10.9.0.6/24"


# ---- the launcher's hidden mode, run directly --------------------------------------------------


def test_launcher_exec_in_root_runs_the_program_there(launcher: str, fakeroot: Path, tmp_path: Path) -> None:
    """`launcher --exec-in-root ROOT PATH`: PATH runs inside ROOT, from its "/", argv [PATH], the environment kept."""
    _sh_plugin(
        fakeroot, "mp-argv", 'read -r mark < /mp-only-here\necho "$0|$#|$(pwd -P)|$mark|$MP_MARK|${HOME-unset}"\n'
    )
    proc = subprocess.run(
        [launcher, "--exec-in-root", str(fakeroot), f"{BIN}/mp-argv"],
        env={"MP_MARK": "kept"},
        cwd=tmp_path,
        capture_output=True,
        check=False,
    )
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert proc.stdout.decode() == f"{BIN}/mp-argv|0|/|{MARK}|kept|unset\n"


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["{root}/mp-none", "/bin/sh"], "chroot {root}/mp-none: No such file or directory"),
        (["{root}", "/bin/mp-none"], "exec /bin/mp-none: No such file or directory"),
        (["{root}", "/mp-only-here"], "exec /mp-only-here: Permission denied"),
        (["{root}"], "usage: launcher --exec-in-root ROOT PATH"),
        (["{root}", "/bin/sh", "extra"], "usage: launcher --exec-in-root ROOT PATH"),
    ],
    ids=["no-root", "no-program", "not-executable", "too-few", "too-many"],
)
def test_launcher_exec_in_root_failures_exit_127_with_a_reason(
    launcher: str, fakeroot: Path, argv: list[str], said: str
) -> None:
    """Every failure of the mode is one line on stderr, prefixed for exec.py to recognise, exit 127, nothing on stdout."""
    args = [a.format(root=fakeroot) for a in argv]
    proc = subprocess.run([launcher, "--exec-in-root", *args], env={}, capture_output=True, check=False)
    assert (proc.returncode, proc.stdout) == (127, b"")
    assert proc.stderr.decode() == f"multiplane: exec-in-root: {said.format(root=fakeroot)}\n"
