"""`multiplane install` / `uninstall` (multiplane.installer) in a temporary root: no privileges needed.

Every path the installer is given is interpreted under `--root`; the fake node has a
primary CNI config, a service account directory and a few files that are not ours.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from multiplane import installer
from multiplane.installer import InstallError, Options, WrapsItself
from multiplane.k8s.client import load_kubeconfig
from multiplane.plugins.meta.config import MetaConf
from multiplane.runtime import payload
from multiplane.spec.netconf import NetConf

CONF_DIR = "/etc/cni/net.d"
BIN_DIR = "/opt/cni/bin"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SOURCE = "/build/multiplane"
CA = b"-----BEGIN CERTIFICATE-----\nmp-test-ca\n-----END CERTIFICATE-----\n"
TOKEN = b"mp-token-1"
IN_CLUSTER = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
PRIMARY = {"cniVersion": "0.3.1", "name": "mp-cbr", "type": "bridge", "bridge": "mp-cni0"}
LINKS = ("multiplane-host-local", "multiplane-macvlan")
RUNTIME = f"{BIN_DIR}/.multiplane"


def self_contained(launcher: bytes, tag: str, *, damage: bool = False) -> tuple[bytes, str]:
    """A small self-contained file (launcher + payload) whose tree holds `boot.py` and a library; its build id."""
    entries = [
        payload.Entry("boot.py", 0o644, f"print('{tag}')\n".encode()),
        payload.Entry("lib/libmp.so", 0o755, f"mp-lib-{tag}".encode()),
        payload.Entry("VERSION", 0o644, f"{tag}\n".encode()),
    ]
    text = payload.manifest(entries)
    build = payload.build_id(tag, text)
    if damage:
        entries[1] = payload.Entry("lib/libmp.so", 0o755, b"mp-tampered")
    entries.append(payload.Entry(payload.MANIFEST, 0o644, text))
    return payload.write(launcher, entries, build), build


class Node:
    """A fake node under a temporary root, and helpers to run the installer against it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.messages: list[str] = []

    def path(self, logical: str) -> Path:
        return self.root / logical.lstrip("/")

    def write(self, logical: str, data: bytes | str, mode: int = 0o644) -> Path:
        path = self.path(logical)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        path.chmod(mode)
        return path

    def primary(self, name: str = "10-mp-bridge.conf", doc: Any = None) -> Path:
        return self.write(f"{CONF_DIR}/{name}", json.dumps(PRIMARY if doc is None else doc))

    def opts(self, **kw: Any) -> Options:
        kw.setdefault("source", SOURCE)
        kw.setdefault("wait_seconds", 0)
        return Options(root=str(self.root), **kw)

    def install(self, env: dict[str, str] | None = None, **kw: Any) -> None:
        installer.install(self.opts(**kw), env=IN_CLUSTER if env is None else env, say=self.messages.append)

    def uninstall(self, **kw: Any) -> None:
        installer.uninstall(self.opts(**kw), say=self.messages.append)

    def conf(self) -> dict[str, Any]:
        return json.loads(self.path(f"{CONF_DIR}/00-multiplane.conf").read_bytes())

    def snapshot(self, times: bool = True) -> dict[str, tuple[int, int, int, bytes | str]]:
        """Every entry under the root: (inode, mtime_ns, mode, content or link target); directories without times."""
        found: dict[str, tuple[int, int, int, bytes | str]] = {}
        for path in sorted(self.root.rglob("*")):
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                content: bytes | str = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                content = path.read_bytes()
            else:
                content = "<dir>"
            stamp = (st.st_ino, st.st_mtime_ns) if times and content != "<dir>" else (0, 0)
            found[str(path.relative_to(self.root))] = (*stamp, st.st_mode, content)
        return found

    def main(self, *args: str) -> int:
        return installer.main([args[0], "--root", str(self.root), *args[1:]])


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Node:
    """A node with the binary to install, a primary config and a service account directory; in a cluster."""
    for key, value in IN_CLUSTER.items():
        monkeypatch.setenv(key, value)
    n = Node(tmp_path / "mp-root")
    n.write(SOURCE, self_contained(b"\x7fELF mp-launcher v1\n", "v1")[0], 0o755)
    n.write(f"{SA_DIR}/token", TOKEN)
    n.write(f"{SA_DIR}/ca.crt", CA)
    n.write(f"{BIN_DIR}/bridge", b"mp-reference-bridge", 0o755)
    n.primary()
    return n


def tmp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# ---- the binary and the links -------------------------------------------------------------------


def test_install_writes_runtime_launcher_links_config_and_kubeconfig(node: Node) -> None:
    """One install lays the runtime tree down, points `current` at it, puts the launcher (0755), both plugin links,
    the kubeconfig and 00-multiplane.conf in place."""
    node.install()
    build = self_contained(b"", "v1")[1]
    launcher = node.path(f"{BIN_DIR}/multiplane")
    assert launcher.read_bytes() == b"\x7fELF mp-launcher v1\n"
    assert stat.S_IMODE(launcher.stat().st_mode) == 0o755
    assert os.readlink(node.path(f"{RUNTIME}/current")) == build
    tree = node.path(f"{RUNTIME}/{build}")
    assert (tree / "boot.py").read_bytes() == b"print('v1')\n"
    assert stat.S_IMODE((tree / "lib" / "libmp.so").stat().st_mode) == 0o755
    assert (tree / ".complete").is_file() and (tree / ".lock").is_file()
    for name in LINKS:
        link = node.path(f"{BIN_DIR}/{name}")
        assert link.is_symlink() and os.readlink(link) == "multiplane"
        assert link.resolve() == launcher.resolve()
    assert node.conf()["type"] == "multiplane"
    assert node.path(f"{CONF_DIR}/multiplane.d/multiplane.kubeconfig").is_file()
    assert tmp_files(node.path(BIN_DIR)) == [] and tmp_files(node.path(CONF_DIR)) == []


def _hold(node: Node, build: str) -> int:
    """Hold the tree's shared lock, as the launcher does for a running call."""
    import fcntl

    fd = os.open(node.path(f"{RUNTIME}/{build}/.lock"), os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def test_upgrade_switches_current_and_keeps_the_old_tree_while_a_call_runs_it(node: Node) -> None:
    """An upgrade lays v2 beside v1 and switches `current`; v1 stays while a call holds it and goes at the next install."""
    node.install()
    v1 = os.readlink(node.path(f"{RUNTIME}/current"))
    held = _hold(node, v1)
    try:
        node.write(SOURCE, self_contained(b"\x7fELF mp-launcher v2\n", "v2")[0], 0o755)
        node.install()
        v2 = os.readlink(node.path(f"{RUNTIME}/current"))
        assert v2 != v1
        assert node.path(f"{RUNTIME}/{v1}/boot.py").is_file()  # still running: kept
        assert any(m.startswith(f"kept: {RUNTIME}/{v1}") for m in node.messages)
    finally:
        os.close(held)
    node.install()
    assert sorted(os.listdir(node.path(RUNTIME))) == sorted(["current", v2])
    assert node.path(f"{BIN_DIR}/multiplane").read_bytes() == b"\x7fELF mp-launcher v2\n"


def test_downgrade_is_the_same_switch(node: Node) -> None:
    """Installing v1 again after v2 points `current` back at a freshly laid v1 and removes the unused v2."""
    v1_file = node.path(SOURCE).read_bytes()
    node.install()
    node.write(SOURCE, self_contained(b"\x7fELF mp-launcher v2\n", "v2")[0], 0o755)
    node.install()
    node.write(SOURCE, v1_file, 0o755)
    node.install()
    build = self_contained(b"", "v1")[1]
    assert sorted(os.listdir(node.path(RUNTIME))) == sorted(["current", build])
    assert os.readlink(node.path(f"{RUNTIME}/current")) == build


def test_a_tree_that_does_not_match_its_manifest_is_refused(node: Node) -> None:
    """A payload file whose content differs from the build's MANIFEST is not installed; `current` stays."""
    node.install()
    before = os.readlink(node.path(f"{RUNTIME}/current"))
    damaged, build = self_contained(b"\x7fELF mp-launcher v3\n", "v3", damage=True)
    node.write(SOURCE, damaged, 0o755)
    with pytest.raises(InstallError, match="lib/libmp.so does not match the build's MANIFEST"):
        node.install()
    assert os.readlink(node.path(f"{RUNTIME}/current")) == before
    assert sorted(os.listdir(node.path(RUNTIME))) == sorted(["current", before])
    assert node.path(f"{BIN_DIR}/multiplane").read_bytes() == b"\x7fELF mp-launcher v1\n"


def test_launcher_is_replaced_by_rename_not_rewritten(node: Node) -> None:
    """An upgrade gives the launcher a new inode; a reader holding the old file still reads the old bytes."""
    node.install()
    target = node.path(f"{BIN_DIR}/multiplane")
    old_inode = target.stat().st_ino
    with open(target, "rb") as held:
        node.write(SOURCE, self_contained(b"\x7fELF mp-launcher v2 (longer)\n", "v2")[0], 0o755)
        node.install()
        assert target.stat().st_ino != old_inode
        assert held.read() == b"\x7fELF mp-launcher v1\n"
    assert target.read_bytes() == b"\x7fELF mp-launcher v2 (longer)\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert tmp_files(node.path(BIN_DIR)) == []


def test_running_launcher_is_replaced_without_text_file_busy(node: Node) -> None:
    """While the installed launcher runs (writing to it fails with ETXTBSY), install still replaces it."""
    node.write(SOURCE, self_contained(Path("/bin/sleep").read_bytes(), "v1")[0], 0o755)
    node.install()
    target = node.path(f"{BIN_DIR}/multiplane")
    proc = subprocess.Popen([str(target), "30"])
    try:
        time.sleep(0.2)
        with pytest.raises(OSError) as busy:
            open(target, "r+b")  # what `cp` onto the file does: the kernel refuses
        assert busy.value.errno == 26  # ETXTBSY
        node.write(SOURCE, self_contained(Path("/bin/true").read_bytes(), "v2")[0], 0o755)
        node.install()
        assert target.read_bytes() == Path("/bin/true").read_bytes()
        assert subprocess.run([str(target)], check=False).returncode == 0
        assert proc.poll() is None  # the old program runs on, undisturbed
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_install_leaves_nothing_the_next_one_keeps(node: Node) -> None:
    """A tree half laid down by an install that died (its pid gone) is removed by the next install."""
    node.install()
    exited = subprocess.Popen(["true"])
    exited.wait()  # its pid names a process that is gone
    half = node.path(f"{RUNTIME}/v9-000000000000.tmp-{exited.pid}")
    (half / "lib").mkdir(parents=True)
    (half / "lib" / "x").write_bytes(b"half")
    node.install()
    assert not half.exists()


def test_leftover_temporaries_are_swept(node: Node) -> None:
    """A temporary file from an interrupted install is removed once old; a fresh one (a parallel install) is kept."""
    stale = node.write(f"{BIN_DIR}/.multiplane.4242.tmp", b"mp-half-copied")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    fresh = node.write(f"{CONF_DIR}/.00-multiplane.conf.4243.tmp", b"{")
    foreign = node.write(f"{BIN_DIR}/.mp-other.4244.tmp", b"not ours")
    os.utime(foreign, (time.time() - 7200, time.time() - 7200))
    node.install()
    assert not stale.exists()
    assert fresh.exists() and foreign.exists()
    node.uninstall()
    assert not fresh.exists() and foreign.exists()


def test_links_are_replaced_atomically(node: Node) -> None:
    """A plugin name holding an old copy or a link elsewhere becomes a link to `multiplane`."""
    node.write(f"{BIN_DIR}/multiplane-macvlan", b"mp-old-copy", 0o755)
    os.symlink("mp-elsewhere", node.path(f"{BIN_DIR}/multiplane-host-local"))
    node.install()
    for name in LINKS:
        assert os.readlink(node.path(f"{BIN_DIR}/{name}")) == "multiplane"
    assert node.path(f"{BIN_DIR}/bridge").read_bytes() == b"mp-reference-bridge"
    assert tmp_files(node.path(BIN_DIR)) == []


def test_second_install_changes_nothing(node: Node) -> None:
    """Installing twice leaves every file, link and directory as the first install made it (inode and mtime)."""
    node.install()
    before = node.snapshot()
    node.messages.clear()
    time.sleep(0.01)
    node.install()
    assert node.snapshot() == before
    assert all(m.startswith(("unchanged", "waiting")) for m in node.messages), node.messages


def test_the_installed_launcher_is_not_a_source(node: Node) -> None:
    """The launcher in the bin dir carries no runtime: naming it as --source is refused, nothing changes."""
    node.install()
    before = node.snapshot()
    with pytest.raises(InstallError, match="not a self-contained multiplane file"):
        node.install(source=f"{BIN_DIR}/multiplane")
    assert node.snapshot() == before


def test_missing_source_is_an_error(node: Node) -> None:
    """A --source that does not exist is refused before anything is written."""
    with pytest.raises(InstallError, match="does not exist"):
        node.install(source="/build/mp-missing")
    assert not node.path(f"{BIN_DIR}/multiplane").exists()


def test_source_is_required_when_not_frozen(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    """From Python sources (not the runtime), install without --source fails and asks for it."""
    assert node.main("install", "--wait-seconds", "0") == 1
    assert "--source" in capsys.readouterr().err


# ---- choosing the primary network ---------------------------------------------------------------


def test_primary_is_the_first_other_config_in_lexical_order(node: Node) -> None:
    """Own files (00-multiplane*), hidden files, other extensions and directories are passed over."""
    node.primary("20-mp-later.conflist", {"cniVersion": "1.0.0", "name": "mp-l", "plugins": [{"type": "ptp"}]})
    node.primary("05-mp-first.conf", {"cniVersion": "0.4.0", "name": "mp-f", "type": "ptp"})
    node.write(f"{CONF_DIR}/00-multiplane.conflist", '{"cniVersion": "1.0.0", "name": "x", "type": "multiplane"}')
    node.write(f"{CONF_DIR}/00-multiplane-old.conf", '{"cniVersion": "1.0.0", "name": "x", "type": "multiplane"}')
    node.write(f"{CONF_DIR}/.01-mp-hidden.conf", json.dumps(PRIMARY))
    node.write(f"{CONF_DIR}/02-mp-notes.json", json.dumps(PRIMARY))
    node.path(f"{CONF_DIR}/03-mp-dir.conf").mkdir()
    node.install()
    conf = node.conf()
    assert conf["clusterNetwork"] == f"{CONF_DIR}/05-mp-first.conf"
    assert conf["cniVersion"] == "0.4.0"


def test_own_config_is_never_wrapped(node: Node) -> None:
    """With only 00-multiplane.conf present (a re-install after the primary vanished), install waits, never wraps it."""
    node.install()
    node.path(f"{CONF_DIR}/10-mp-bridge.conf").unlink()
    before = node.path(f"{CONF_DIR}/00-multiplane.conf").read_bytes()
    with pytest.raises(InstallError, match="no .conf or .conflist file other than 00-multiplane"):
        node.install()
    assert node.path(f"{CONF_DIR}/00-multiplane.conf").read_bytes() == before


def test_config_of_type_multiplane_is_refused_at_once(node: Node) -> None:
    """A primary candidate that is itself a multiplane config fails immediately instead of waiting."""
    node.primary("05-mp-renamed.conf", {"cniVersion": "1.0.0", "name": "mp-x", "type": "multiplane"})
    started = time.monotonic()
    with pytest.raises(WrapsItself, match="05-mp-renamed.conf"):
        node.install(wait_seconds=30)
    assert time.monotonic() - started < 5
    assert not node.path(f"{CONF_DIR}/00-multiplane.conf").exists()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"cniVersion": "1.0.0", "name": "mp-x"}', "neither `type` nor a list of `plugins`"),
        ('{"cniVersion": "1.0.0", "name": "mp-x", "plugins": []}', "neither `type` nor a list of `plugins`"),
    ],
)
def test_invalid_first_file_is_an_error_naming_it(node: Node, content: str, reason: str) -> None:
    """The first candidate must be a CNI config: otherwise install fails naming it (a later valid file is not taken)."""
    node.write(f"{CONF_DIR}/05-mp-bad.conf", content)
    with pytest.raises(InstallError) as info:
        node.install()
    assert "05-mp-bad.conf" in str(info.value) and reason in str(info.value)
    assert not node.path(f"{CONF_DIR}/00-multiplane.conf").exists()


def test_capabilities_are_the_union_of_enabled_ones(node: Node) -> None:
    """capabilities lists every capability set to true at the top or in any plugin of the primary conflist."""
    node.path(f"{CONF_DIR}/10-mp-bridge.conf").unlink()
    node.primary(
        "10-mp-chain.conflist",
        {
            "cniVersion": "1.0.0",
            "name": "mp-chain",
            "capabilities": {"mp-top": True, "mp-off": False},
            "plugins": [
                {"type": "bridge", "capabilities": {"portMappings": True}},
                {"type": "portmap", "capabilities": {"portMappings": True, "bandwidth": False}},
                {"type": "tuning", "capabilities": {"io.kubernetes.cri.pod-annotations": True}},
                {"type": "bandwidth", "capabilities": "not-a-map"},
            ],
        },
    )
    node.install()
    assert node.conf()["capabilities"] == {
        "io.kubernetes.cri.pod-annotations": True,
        "mp-top": True,
        "portMappings": True,
    }


def test_primary_sorting_first_gives_a_warning(node: Node) -> None:
    """A primary that sorts before 00-multiplane.conf is used, with a warning that the runtime will prefer it."""
    node.path(f"{CONF_DIR}/10-mp-bridge.conf").unlink()
    node.primary("00-aaa-mp.conf")
    node.install()
    assert any(m.startswith("warning: ") and "00-aaa-mp.conf sorts before" in m for m in node.messages)


def test_missing_cni_version_asks_for_the_flag(node: Node) -> None:
    """A primary without cniVersion fails with a pointer to --cni-version, which then fixes it."""
    node.primary(doc={"name": "mp-cbr", "type": "bridge"})
    with pytest.raises(InstallError, match="--cni-version"):
        node.install()
    node.install(cni_version="0.3.1")
    assert node.conf()["cniVersion"] == "0.3.1"


# ---- waiting ------------------------------------------------------------------------------------


def test_waits_for_the_primary_then_succeeds(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    """Without a primary, install says it is waiting, and finishes once the primary appears."""
    node.path(f"{CONF_DIR}/10-mp-bridge.conf").unlink()
    timer = threading.Timer(1.5, node.primary)
    timer.start()
    try:
        started = time.monotonic()
        rc = node.main("install", "--source", SOURCE, "--wait-seconds", "20")
    finally:
        timer.join()
    assert rc == 0
    assert 1.4 < time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert f"waiting for the node's primary CNI configuration in {CONF_DIR} ..." in err
    assert node.conf()["clusterNetwork"] == f"{CONF_DIR}/10-mp-bridge.conf"


def test_a_half_written_primary_is_waited_for(node: Node) -> None:
    """A first file that is not yet valid JSON is named while waiting, and used once its writer finishes."""
    node.path(f"{CONF_DIR}/10-mp-bridge.conf").write_text('{"cniVersion": "0.3.1", "na')
    timer = threading.Timer(1.5, node.primary)
    timer.start()
    try:
        node.install(wait_seconds=20)
    finally:
        timer.join()
    assert any(m.startswith("waiting for") and "10-mp-bridge.conf is not valid JSON" in m for m in node.messages)
    assert node.conf()["clusterNetwork"] == f"{CONF_DIR}/10-mp-bridge.conf"


def test_timeout_fails_with_the_message_and_writes_no_config(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    """When no primary appears in time, install exits 1 saying what it waited for; no 00-multiplane.conf exists."""
    node.path(f"{CONF_DIR}/10-mp-bridge.conf").unlink()
    started = time.monotonic()
    assert node.main("install", "--source", SOURCE, "--wait-seconds", "1.5") == 1
    assert 1.4 < time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert f"error: timed out after 1.5 s waiting for the node's primary CNI configuration in {CONF_DIR}" in err
    assert [p.name for p in node.path(CONF_DIR).iterdir()] == ["multiplane.d"]


def test_a_failed_write_leaves_the_old_config_whole(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """If writing the new config fails half-way, the previous 00-multiplane.conf stays and no temp file is left."""
    node.install()
    before = node.path(f"{CONF_DIR}/00-multiplane.conf").read_bytes()
    node.primary(doc=dict(PRIMARY, cniVersion="1.0.0"))

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(installer.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        node.install()
    assert node.path(f"{CONF_DIR}/00-multiplane.conf").read_bytes() == before
    assert tmp_files(node.path(CONF_DIR)) == []


def test_never_writes_an_empty_file(tmp_path: Path) -> None:
    """write_atomic refuses empty content instead of producing a 0-byte config (multus #1155)."""
    target = tmp_path / "mp-00.conf"
    with pytest.raises(InstallError, match="empty"):
        installer.write_atomic(str(target), b"", 0o644)
    assert not target.exists()


# ---- the generated config -----------------------------------------------------------------------


def test_config_content_and_options(node: Node) -> None:
    """00-multiplane.conf carries the primary's version, the primary's path, the kubeconfig and every option flag."""
    rc = node.main(
        "install",
        "--source",
        SOURCE,
        "--wait-seconds",
        "0",
        "--multiplane-conf-dir",
        "/etc/cni/multiplane/net.d",
        "--multiplane-cni-dir",
        "/var/lib/cni/multiplane",
        "--namespace-isolation",
        "--global-namespaces",
        "default,mp-shared",
        "--readiness-indicator-file",
        "/run/mp-ready",
        "--log-file",
        "/var/log/mp.log",
        "--log-level",
        "verbose",
    )
    assert rc == 0
    assert node.conf() == {
        "cniVersion": "0.3.1",
        "name": "multiplane-cni-network",
        "type": "multiplane",
        "clusterNetwork": f"{CONF_DIR}/10-mp-bridge.conf",
        "capabilities": {},
        "confDir": "/etc/cni/multiplane/net.d",
        "cniDir": "/var/lib/cni/multiplane",
        "binDir": BIN_DIR,
        "namespaceIsolation": True,
        "globalNamespaces": "default,mp-shared",
        "readinessindicatorfile": "/run/mp-ready",
        "logFile": "/var/log/mp.log",
        "logLevel": "verbose",
        "kubeconfig": f"{CONF_DIR}/multiplane.d/multiplane.kubeconfig",
    }
    assert stat.S_IMODE(node.path(f"{CONF_DIR}/00-multiplane.conf").stat().st_mode) == 0o644


def test_generated_config_is_accepted_by_the_meta_plugin(node: Node) -> None:
    """The meta-plugin's own parser reads the generated config back with the same values."""
    node.install(meta={"namespaceIsolation": True, "globalNamespaces": "default,mp-x", "logLevel": "debug"})
    conf = MetaConf(NetConf.parse(node.path(f"{CONF_DIR}/00-multiplane.conf").read_bytes()))
    assert conf.cluster_network == f"{CONF_DIR}/10-mp-bridge.conf"
    assert conf.kubeconfig == f"{CONF_DIR}/multiplane.d/multiplane.kubeconfig"
    assert conf.bin_dir == BIN_DIR
    assert conf.namespace_isolation is True
    assert conf.log_level == "debug"


def test_host_prefix_is_stripped_from_written_paths(node: Node) -> None:
    """In the DaemonSet (/host mounts) files land under /host, but the configs name the node's own paths."""
    node.write(f"/host{CONF_DIR}/10-mp-bridge.conf", json.dumps(PRIMARY))
    node.install(cni_bin_dir=f"/host{BIN_DIR}", cni_conf_dir=f"/host{CONF_DIR}", host_prefix="/host")
    conf = json.loads(node.path(f"/host{CONF_DIR}/00-multiplane.conf").read_bytes())
    assert conf["clusterNetwork"] == f"{CONF_DIR}/10-mp-bridge.conf"
    assert conf["kubeconfig"] == f"{CONF_DIR}/multiplane.d/multiplane.kubeconfig"
    assert conf["binDir"] == BIN_DIR
    kube = load_kubeconfig(str(node.path(f"/host{CONF_DIR}/multiplane.d/multiplane.kubeconfig")))
    assert kube.token_file == f"{CONF_DIR}/multiplane.d/token"
    assert node.path(f"/host{BIN_DIR}/multiplane").is_file()
    current = node.path(f"/host{RUNTIME}/current")
    assert not os.readlink(current).startswith("/")  # relative: it resolves the same on the node


def test_path_outside_the_host_prefix_is_refused(node: Node) -> None:
    """A dir not under --host-prefix would be invisible to the node: install refuses before writing anything."""
    with pytest.raises(InstallError, match="not under --host-prefix /host"):
        node.install(cni_conf_dir=CONF_DIR, cni_bin_dir=f"/host{BIN_DIR}", host_prefix="/host")
    assert not node.path(f"/host{BIN_DIR}").exists()


# ---- the kubeconfig -----------------------------------------------------------------------------


def test_kubeconfig_names_server_ca_and_token_copy(node: Node) -> None:
    """The kubeconfig (0600) parses with our client: server from the env, CA inline, tokenFile the 0600 copy."""
    node.install()
    path = node.path(f"{CONF_DIR}/multiplane.d/multiplane.kubeconfig")
    kube = load_kubeconfig(str(path))
    assert kube.server == "https://10.96.0.1:443"
    assert kube.ca_data == CA
    assert kube.token_file == f"{CONF_DIR}/multiplane.d/token"
    token = node.path(f"{CONF_DIR}/multiplane.d/token")
    assert token.read_bytes() == TOKEN
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert node.conf()["kubeconfig"] == f"{CONF_DIR}/multiplane.d/multiplane.kubeconfig"


def test_kubeconfig_server_with_ipv6_address(node: Node) -> None:
    """An IPv6 KUBERNETES_SERVICE_HOST is bracketed in the server URL."""
    node.install(env={"KUBERNETES_SERVICE_HOST": "fd00:10:96::1", "KUBERNETES_SERVICE_PORT": "6443"})
    kube = load_kubeconfig(str(node.path(f"{CONF_DIR}/multiplane.d/multiplane.kubeconfig")))
    assert kube.server == "https://[fd00:10:96::1]:6443"


def test_api_server_flag_overrides_the_service_address(node: Node) -> None:
    """--api-server replaces the service IP (for nodes where it is not routable before kube-proxy runs)."""
    node.install(api_server="https://192.0.2.10:6443")
    kube = load_kubeconfig(str(node.path(f"{CONF_DIR}/multiplane.d/multiplane.kubeconfig")))
    assert kube.server == "https://192.0.2.10:6443"


def test_no_cluster_means_no_kubeconfig(node: Node) -> None:
    """Without KUBERNETES_SERVICE_HOST/PORT, install says so and writes no kubeconfig and no kubeconfig key."""
    node.install(env={})
    assert not node.path(f"{CONF_DIR}/multiplane.d").exists()
    assert "kubeconfig" not in node.conf()
    assert any(m.startswith("not in a cluster") for m in node.messages)


def test_no_kubeconfig_flag_skips_it(node: Node) -> None:
    """--no-kubeconfig skips the kubeconfig even in a cluster."""
    node.install(write_kubeconfig=False)
    assert not node.path(f"{CONF_DIR}/multiplane.d").exists()
    assert "kubeconfig" not in node.conf()


def test_existing_kubeconfig_is_referenced_not_written(node: Node) -> None:
    """--kubeconfig puts that node path into the config and writes no kubeconfig of its own."""
    node.install(kubeconfig="/etc/kubernetes/mp-admin.conf")
    assert node.conf()["kubeconfig"] == "/etc/kubernetes/mp-admin.conf"
    assert not node.path(f"{CONF_DIR}/multiplane.d").exists()


def test_missing_ca_is_an_error(node: Node) -> None:
    """In a cluster, a service account directory without ca.crt fails and names the file."""
    node.path(f"{SA_DIR}/ca.crt").unlink()
    with pytest.raises(InstallError, match="ca.crt"):
        node.install()
    assert not node.path(f"{CONF_DIR}/00-multiplane.conf").exists()


def test_refresh_token_only_copies_a_rotated_token(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    """--refresh-token-only replaces the token copy (atomically, 0600) when the service account's changes."""
    node.install()
    copy = node.path(f"{CONF_DIR}/multiplane.d/token")
    inode = copy.stat().st_ino
    node.write(f"{SA_DIR}/token", b"mp-token-2")
    args = ("install", "--refresh-token-only", "--refresh-interval", "0", "--max-iterations", "3")
    assert node.main(*args) == 0
    assert copy.read_bytes() == b"mp-token-2"
    assert copy.stat().st_ino != inode
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    err = capsys.readouterr().err
    assert err.count(f"refreshed: {CONF_DIR}/multiplane.d/token") == 1


def test_refresh_does_nothing_without_a_kubeconfig(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    """After uninstall (no kubeconfig), the refresher writes nothing and says why, once."""
    args = ("install", "--refresh-token-only", "--refresh-interval", "0", "--max-iterations", "3")
    assert node.main(*args) == 0
    assert not node.path(f"{CONF_DIR}/multiplane.d").exists()
    assert capsys.readouterr().err.count("nothing to refresh") == 1


def test_refresh_reports_a_missing_token_and_keeps_going(node: Node) -> None:
    """A missing service-account token is reported once; the loop continues and recovers when it returns."""
    node.install()
    node.path(f"{SA_DIR}/token").unlink()
    messages: list[str] = []
    installer.refresh_token(node.opts(), interval=0, iterations=3, say=messages.append)
    assert len(messages) == 1 and messages[0].startswith("error: cannot refresh")
    node.write(f"{SA_DIR}/token", b"mp-token-3")
    installer.refresh_token(node.opts(), interval=0, iterations=1, say=messages.append)
    assert node.path(f"{CONF_DIR}/multiplane.d/token").read_bytes() == b"mp-token-3"


# ---- uninstall ----------------------------------------------------------------------------------


def test_uninstall_removes_exactly_what_install_made(node: Node) -> None:
    """After install then uninstall the tree is as before; a second uninstall succeeds and changes nothing."""
    node.write(f"{CONF_DIR}/99-mp-other.conflist", '{"cniVersion": "1.0.0", "name": "o", "plugins": []}')
    before = node.snapshot()
    node.install()
    node.uninstall()
    assert node.snapshot() == before
    node.uninstall()
    assert node.snapshot() == before


def test_uninstall_keeps_a_kubeconfig_it_did_not_write(node: Node) -> None:
    """A file at --kubeconfig-out without our marker line (someone else's kubeconfig) is kept."""
    foreign = node.write("/etc/kubernetes/mp-admin.conf", "apiVersion: v1\nkind: Config\n")
    node.install(write_kubeconfig=False)
    node.uninstall(kubeconfig_out="/etc/kubernetes/mp-admin.conf")
    assert foreign.read_text() == "apiVersion: v1\nkind: Config\n"
    assert any(m.startswith("kept /etc/kubernetes/mp-admin.conf") for m in node.messages)


def test_uninstall_keeps_foreign_files_in_the_kubeconfig_dir(node: Node) -> None:
    """multiplane.d is removed only when empty: a file someone else put there survives."""
    node.install()
    foreign = node.write(f"{CONF_DIR}/multiplane.d/mp-notes.txt", "mine")
    node.uninstall()
    assert foreign.read_text() == "mine"
    assert sorted(p.name for p in foreign.parent.iterdir()) == ["mp-notes.txt"]


# ---- command line -------------------------------------------------------------------------------


def test_unknown_flag_is_a_usage_error(node: Node) -> None:
    """An unknown flag exits 2, as argparse usage errors do, without installing anything."""
    assert node.main("install", "--mp-no-such-flag") == 2
    assert not node.path(f"{BIN_DIR}/multiplane").exists()


def test_cli_dispatches_install_and_uninstall(node: Node) -> None:
    """`multiplane install …` and `multiplane uninstall …` reach the installer through the real entry point."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "KUBERNETES_"))}
    base = [sys.executable, "-m", "multiplane"]
    root = ["--root", str(node.root)]
    proc = subprocess.run(
        [*base, "install", *root, "--source", SOURCE, "--wait-seconds", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "wrote: /etc/cni/net.d/00-multiplane.conf" in proc.stderr
    proc = subprocess.run([*base, "uninstall", *root], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert not node.path(f"{CONF_DIR}/00-multiplane.conf").exists()
    assert not node.path(f"{BIN_DIR}/multiplane").exists()


def test_usage_mentions_install() -> None:
    """The entry point's usage text lists install and uninstall."""
    proc = subprocess.run([sys.executable, "-m", "multiplane", "--help"], capture_output=True, text=True, check=False)
    assert "multiplane install" in proc.stderr and "multiplane uninstall" in proc.stderr


def test_install_help_lists_the_flags() -> None:
    """`multiplane install --help` exits 0 and documents the main flags."""
    proc = subprocess.run(
        [sys.executable, "-m", "multiplane", "install", "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0
    for flag in ("--cni-bin-dir", "--cni-conf-dir", "--host-prefix", "--wait-seconds", "--refresh-token-only"):
        assert flag in proc.stdout


def test_parser_flags_match_options(node: Node) -> None:
    """Options built from parsed flags equal the defaults of Options, so the two front ends agree."""
    args = installer.build_parser().parse_args(["install"])
    opts = installer.options_from(args)
    default = Options()
    for attr in ("cni_bin_dir", "cni_conf_dir", "kubeconfig_out", "sa_dir", "wait_seconds", "write_kubeconfig"):
        assert getattr(opts, attr) == getattr(default, attr)


# ---- a node that Multus owns (issue 12) ---------------------------------------------------------

FLANNEL = {
    "cniVersion": "0.3.1",
    "name": "cbr0",
    "plugins": [
        {"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}
MULTUS_THIN = {
    "cniVersion": "0.3.1",
    "name": "multus-cni-network",
    "type": "multus",
    "capabilities": {"portMappings": True},
    "kubeconfig": f"{CONF_DIR}/multus.d/multus.kubeconfig",
    "delegates": [FLANNEL],
}
MULTUS_THICK = {
    "cniVersion": "0.3.1",
    "name": "multus-cni-network",
    "type": "multus-shim",
    "capabilities": {"portMappings": True},
    "clusterNetwork": f"/host{CONF_DIR}/10-flannel.conflist",
    "daemonSocketDir": "/run/multus",
}
MULTUS_LIST = {
    "cniVersion": "1.0.0",
    "name": "multus-cni-network",
    "plugins": [{"type": "multus-shim", "clusterNetwork": f"/host{CONF_DIR}/10-flannel.conflist"}],
}


def _refused_quickly(node: Node, **kw: Any) -> str:
    """Install fails at once (not after waiting 30 s), before writing anything of its own; the error text."""
    started = time.monotonic()
    with pytest.raises(InstallError) as info:
        node.install(wait_seconds=30, **kw)
    assert time.monotonic() - started < 5
    assert not node.path(f"{CONF_DIR}/00-multiplane.conf").exists()
    assert not node.path(f"{BIN_DIR}/multiplane").exists()
    return str(info.value)


@pytest.mark.parametrize(
    ("name", "doc", "kind"),
    [
        ("00-multus.conf", MULTUS_THIN, "multus"),
        ("00-multus.conf", MULTUS_THICK, "multus-shim"),
        ("00-multus.conflist", MULTUS_LIST, "multus-shim"),
    ],
)
def test_a_multus_config_is_refused_with_what_to_do(node: Node, name: str, doc: dict[str, Any], kind: str) -> None:
    """A Multus config (thin, thick, or a conflist with a multus-shim plugin) is never wrapped: install fails at once,
    names the file, says Multus owns the node, and points to --primary, --replace-multus and the migration page."""
    node.primary(name, doc)
    text = _refused_quickly(node)
    assert f"{name} is a Multus configuration (type {kind})" in text
    assert "Multus owns this node" in text
    for pointer in ("--primary", "--replace-multus", "docs/migrating-from-multus.md"):
        assert pointer in text, text


def test_a_multus_config_that_sorts_later_is_refused_too(node: Node) -> None:
    """A Multus config anywhere in the dir (70-multus.conf after the primary) means Multus owns the node, even with
    --primary naming the real primary: both meta-plugins must never serve one node."""
    node.primary("70-multus.conf", dict(MULTUS_THIN, delegates=[PRIMARY]))
    text = _refused_quickly(node)
    assert "70-multus.conf is a Multus configuration (type multus)" in text
    assert 'it wraps the network "mp-cbr"' in text
    text = _refused_quickly(node, primary="10-mp-bridge.conf")
    assert "Multus owns this node" in text
    node.write(f"{CONF_DIR}/20-mp-half.conf", '{"cniVersion": "0.3.1", "na')  # a named primary still being written
    text = _refused_quickly(node, primary="20-mp-half.conf")
    assert "Multus owns this node" in text


def test_a_renamed_multiplane_config_is_still_wraps_itself(node: Node) -> None:
    """The multiplane case keeps its own error (a subclass of the meta-plugin refusal)."""
    node.primary("05-mp-renamed.conflist", {"cniVersion": "1.0.0", "name": "mp-x", "plugins": [{"type": "multiplane"}]})
    with pytest.raises(WrapsItself, match="05-mp-renamed.conflist already uses the multiplane plugin"):
        node.install()


# ---- --primary ----------------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["20-mp-named.conflist", f"{CONF_DIR}/20-mp-named.conflist"])
def test_primary_flag_wraps_the_named_file_not_the_first(node: Node, given: str) -> None:
    """--primary (a name in the config dir, or a path under it) is wrapped even though another file sorts first."""
    node.primary("05-mp-first.conf", {"cniVersion": "0.4.0", "name": "mp-f", "type": "ptp"})
    named = {"cniVersion": "1.0.0", "name": "mp-n", "plugins": [{"type": "ptp", "capabilities": {"mp-cap": True}}]}
    node.primary("20-mp-named.conflist", named)
    node.install(primary=given)
    conf = node.conf()
    assert conf["clusterNetwork"] == f"{CONF_DIR}/20-mp-named.conflist"
    assert conf["cniVersion"] == "1.0.0"
    assert conf["capabilities"] == {"mp-cap": True}
    assert not any(m.startswith("warning:") for m in node.messages), node.messages


def test_primary_flag_may_name_a_file_in_a_subdirectory(node: Node) -> None:
    """A primary kept in a subdirectory (which the runtime does not read) can be wrapped; no ordering warning."""
    node.write(f"{CONF_DIR}/mp-sub/00-mp-primary.conf", json.dumps(PRIMARY))
    node.install(primary="mp-sub/00-mp-primary.conf")
    assert node.conf()["clusterNetwork"] == f"{CONF_DIR}/mp-sub/00-mp-primary.conf"
    assert not any(m.startswith("warning:") for m in node.messages), node.messages


def test_primary_flag_from_the_command_line_and_host_prefix(node: Node) -> None:
    """`--primary NAME` works through the parser, and the written path is the node's (host prefix stripped)."""
    node.write(f"/host{CONF_DIR}/10-mp-bridge.conf", json.dumps(PRIMARY))
    node.write(f"/host{CONF_DIR}/05-mp-first.conf", json.dumps(dict(PRIMARY, name="mp-f")))
    args = ("--source", SOURCE, "--wait-seconds", "0", "--host-prefix", "/host")
    dirs = ("--cni-conf-dir", f"/host{CONF_DIR}", "--cni-bin-dir", f"/host{BIN_DIR}")
    assert node.main("install", *args, *dirs, "--primary", "10-mp-bridge.conf") == 0
    conf = json.loads(node.path(f"/host{CONF_DIR}/00-multiplane.conf").read_bytes())
    assert conf["clusterNetwork"] == f"{CONF_DIR}/10-mp-bridge.conf"


def test_primary_flag_sorting_first_still_warns(node: Node) -> None:
    """A named primary that sorts before 00-multiplane.conf is wrapped, with the warning that the runtime prefers it."""
    node.primary("00-aaa-mp.conf")
    node.install(primary="00-aaa-mp.conf")
    assert node.conf()["clusterNetwork"] == f"{CONF_DIR}/00-aaa-mp.conf"
    assert any(m.startswith("warning: ") and "00-aaa-mp.conf sorts before" in m for m in node.messages)


def test_primary_flag_naming_a_missing_file_is_refused(node: Node) -> None:
    """A --primary that does not exist is waited for, then refused by name (no other file is taken instead)."""
    with pytest.raises(InstallError) as info:
        node.install(primary="20-mp-missing.conflist")
    text = str(info.value)
    assert "timed out" in text and "20-mp-missing.conflist (named by --primary) does not exist" in text
    assert not node.path(f"{CONF_DIR}/00-multiplane.conf").exists()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "is not valid JSON"),
        ('{"cniVersion": "1.0.0", "name": "mp-x"}', "neither `type` nor a list of `plugins`"),
    ],
)
def test_primary_flag_naming_a_non_cni_file_is_refused(node: Node, content: str, reason: str) -> None:
    """A --primary that is not a CNI config is refused, naming the file and what is wrong."""
    node.write(f"{CONF_DIR}/20-mp-bad.conf", content)
    with pytest.raises(InstallError) as info:
        node.install(primary="20-mp-bad.conf")
    assert "20-mp-bad.conf" in str(info.value) and reason in str(info.value)
    assert not node.path(f"{CONF_DIR}/00-multiplane.conf").exists()


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (MULTUS_THIN, "names a Multus configuration (type multus), not the cluster network"),
        (MULTUS_LIST, "names a Multus configuration (type multus-shim), not the cluster network"),
        ({"cniVersion": "1.0.0", "name": "mp-x", "type": "multiplane"}, "already uses the multiplane plugin"),
    ],
)
def test_primary_flag_naming_a_meta_plugin_is_refused(node: Node, doc: dict[str, Any], expected: str) -> None:
    """--primary must name the cluster network itself, never a meta-plugin's config: refused at once."""
    node.write(f"{CONF_DIR}/mp-sub/mp-meta.conf", json.dumps(doc))
    text = _refused_quickly(node, primary="mp-sub/mp-meta.conf")
    assert "mp-meta.conf" in text and expected in text


@pytest.mark.parametrize("given", ["../mp-elsewhere.conf", "/etc/mp-elsewhere.conf", CONF_DIR, "mp-sub"])
def test_primary_flag_outside_the_config_dir_or_not_a_file_is_refused(node: Node, given: str) -> None:
    """--primary must be a file under the CNI config dir (the runtime's paths are the node's)."""
    node.write("/etc/mp-elsewhere.conf", json.dumps(PRIMARY))
    node.path(f"{CONF_DIR}/mp-sub").mkdir()
    with pytest.raises(InstallError, match="--primary"):
        node.install(primary=given, wait_seconds=30)
    assert not node.path(f"{CONF_DIR}/00-multiplane.conf").exists()


# ---- --replace-multus ---------------------------------------------------------------------------


def test_replace_multus_moves_its_config_aside_after_ours_is_written(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --replace-multus, 00-multiplane.conf is in place before Multus's config is renamed (the runtime always has
    a meta-plugin config to take); the config keeps its bytes as `<name>.multiplane-bak`, which no runtime reads."""
    node.path(f"{CONF_DIR}/10-mp-bridge.conf").unlink()
    node.primary("10-flannel.conflist", FLANNEL)
    multus = node.primary("00-multus.conf", MULTUS_THICK)
    original = multus.read_bytes()
    renames: list[str] = []
    real_replace = os.replace

    def watching(src: Any, dst: Any) -> None:
        if str(src).endswith("/00-multus.conf"):
            renames.append(str(dst))
            assert node.path(f"{CONF_DIR}/00-multiplane.conf").is_file()
        real_replace(src, dst)

    monkeypatch.setattr(installer.os, "replace", watching)
    node.install(replace_multus=True)
    assert renames == [str(node.path(f"{CONF_DIR}/00-multus.conf.multiplane-bak"))]
    assert not multus.exists()
    assert node.path(f"{CONF_DIR}/00-multus.conf.multiplane-bak").read_bytes() == original
    assert node.conf()["clusterNetwork"] == f"{CONF_DIR}/10-flannel.conflist"
    assert node.conf()["capabilities"] == {"portMappings": True}
    assert any(m.startswith(f"moved aside: {CONF_DIR}/00-multus.conf -> ") for m in node.messages), node.messages
    node.messages.clear()
    node.install(replace_multus=True)  # nothing left to move: idempotent
    assert not any(m.startswith("moved aside") for m in node.messages)


def test_replace_multus_refuses_a_primary_multus_did_not_wrap(node: Node) -> None:
    """Without --primary, the first other file must be the network Multus wrapped; otherwise install asks for
    --primary. With --primary naming another network, install goes ahead and warns."""
    node.primary("20-mp-calico.conflist", {"cniVersion": "0.3.1", "name": "mp-k8s-pod-network", "type": "calico"})
    node.primary("00-multus.conf", dict(MULTUS_THICK, clusterNetwork=f"/host{CONF_DIR}/20-mp-calico.conflist"))
    text = _refused_quickly(node, replace_multus=True)
    assert "00-multus.conf wraps /host/etc/cni/net.d/20-mp-calico.conflist" in text
    assert "10-mp-bridge.conf" in text and "--primary" in text
    node.install(replace_multus=True, primary="20-mp-calico.conflist")
    assert node.conf()["clusterNetwork"] == f"{CONF_DIR}/20-mp-calico.conflist"
    assert not node.path(f"{CONF_DIR}/00-multus.conf").exists()
    node.primary("00-multus.conf", MULTUS_THICK)  # Multus came back and wraps flannel; we are told to wrap the bridge
    node.install(replace_multus=True, primary="10-mp-bridge.conf")
    assert any(m.startswith("warning: ") and "10-flannel.conflist" in m for m in node.messages), node.messages


def test_replace_multus_accepts_the_network_multus_wrapped(node: Node) -> None:
    """Thin Multus names its primary inline (delegates[0].name): the first other file with that name is accepted."""
    node.primary("00-multus.conf", dict(MULTUS_THIN, delegates=[PRIMARY]))
    node.install(replace_multus=True)
    assert node.conf()["clusterNetwork"] == f"{CONF_DIR}/10-mp-bridge.conf"
    assert node.path(f"{CONF_DIR}/00-multus.conf.multiplane-bak").is_file()


def test_uninstall_keeps_multus_config_moved_aside_and_says_so(node: Node) -> None:
    """uninstall does not bring Multus's config back (its daemon may be gone): it names the kept file."""
    node.primary("00-multus.conf", dict(MULTUS_THIN, delegates=[PRIMARY]))
    node.install(replace_multus=True)
    node.uninstall()
    assert node.path(f"{CONF_DIR}/00-multus.conf.multiplane-bak").is_file()
    assert not node.path(f"{CONF_DIR}/00-multus.conf").exists()
    assert any(m.startswith(f"kept: {CONF_DIR}/00-multus.conf.multiplane-bak") for m in node.messages), node.messages


# ---- the migration page, run as written ---------------------------------------------------------

MIGRATION_DOC = Path(__file__).resolve().parents[2] / "docs" / "migrating-from-multus.md"
SANDBOX_1 = "a1" * 32
SANDBOX_2 = "b2" * 32


def doc_block(name: str) -> str:
    """The fenced block that follows `<!-- test: NAME -->` in the migration page."""
    text = MIGRATION_DOC.read_text()
    marker = f"<!-- test: {name} -->"
    assert text.count(marker) == 1, f"the migration page has no single block marked {marker}"
    lines = text.split(marker, 1)[1].lstrip("\n").split("\n")
    fence = lines[0]
    assert fence.lstrip().startswith("```"), f"{marker} is not followed by a fenced block"
    indent = fence[: len(fence) - len(fence.lstrip())]  # a block inside a list item is indented
    body = []
    for line in lines[1:]:
        if line.strip() == "```":
            return "\n".join(body) + "\n"
        body.append(line.removeprefix(indent))
    raise AssertionError(f"the block after {marker} is not closed")


class MultusNode:
    """A node Multus installed (thin or thick) under a temporary root, and the doc's blocks run against it with `sh`."""

    def __init__(self, node: Node, tmp_path: Path, mode: str) -> None:
        self.node = node
        self.mode = mode
        node.path(f"{CONF_DIR}/10-mp-bridge.conf").unlink()
        node.primary("10-flannel.conflist", FLANNEL)
        for name in ("flannel", "portmap", "host-local"):
            node.write(f"{BIN_DIR}/{name}", f"mp-reference-{name}", 0o755)
        if mode.startswith("thin"):
            node.primary("00-multus.conf", MULTUS_THIN)
            node.write(f"{CONF_DIR}/multus.d/multus.kubeconfig", "apiVersion: v1\nkind: Config\n# mp-multus-token\n")
            node.write(f"{BIN_DIR}/multus", b"mp-multus-thin", 0o755)
        else:
            if mode == "thick":  # "thick-stopped": the daemon deleted its config when it stopped
                node.primary("00-multus.conf", MULTUS_THICK)
            node.write(f"{BIN_DIR}/multus-shim", b"mp-multus-shim", 0o755)
        for sandbox in (SANDBOX_1, SANDBOX_2):
            node.write(f"/var/lib/cni/multus/{sandbox}", json.dumps([{"name": "mp-delegate"}]), 0o600)
            node.write(f"/var/lib/cni/multus/results/cbr0-{sandbox}-eth0", "{}", 0o600)
            node.write(f"/var/lib/cni/results/multus-cni-network-{sandbox}-eth0", "{}", 0o600)
        self.original = {
            p: node.path(p).read_bytes()
            for p in (f"{CONF_DIR}/00-multus.conf", f"{CONF_DIR}/multus.d/multus.kubeconfig")
            if node.path(p).exists()
        }
        tools = tmp_path / "mp-tools"
        tools.mkdir()
        self.running = tmp_path / "mp-running-sandboxes"
        self.running.write_text("")
        wrapper = tools / "multiplane"
        wrapper.write_text(
            "#!/bin/sh\n"
            "# the self-contained file's `install` finds its own runtime; from sources it is named with --source\n"
            'cmd=$1; shift\nif [ "$cmd" = install ]; then set -- --source "$MP_SOURCE" "$@"; fi\n'
            'exec "$MP_PYTHON" -m multiplane "$cmd" "$@"\n'
        )
        crictl = tools / "crictl"
        crictl.write_text(
            '#!/bin/sh\n[ "$*" = "pods --state ready -q --no-trunc" ] || { echo "mp: unexpected crictl $*" >&2; exit 2; }\n'
            'cat "$MP_RUNNING"\n'
        )
        for tool in (wrapper, crictl):
            tool.chmod(0o755)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "KUBERNETES_", "MULTIPLANE"))}
        self.env.update(
            PATH=f"{tools}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            CNI_CONF_DIR=str(node.path(CONF_DIR)),
            CNI_BIN_DIR=str(node.path(BIN_DIR)),
            CNI_STATE_DIR=str(node.path("/var/lib/cni")),
            MULTIPLANE=str(wrapper),
            MP_SOURCE=str(node.path(SOURCE)),
            MP_PYTHON=sys.executable,
            MP_RUNNING=str(self.running),
        )

    def primary_in_conf(self) -> str:
        """The clusterNetwork 00-multiplane.conf should name: the init container runs under --root, the page's
        steps with the temporary dirs themselves."""
        logical = f"{CONF_DIR}/10-flannel.conflist"
        return logical if self.mode == "thin-daemonset" else str(self.node.path(logical))

    def run(self, block: str, **env: str) -> subprocess.CompletedProcess[str]:
        if block == "switch" and self.mode == "thin-daemonset":
            # the DaemonSet's init container installs, with the flags the page adds to it; the block only tidies up
            flags = [f for f in doc_block("daemonset-args").split() if f.startswith("--")]
            args = installer.build_parser().parse_args(["install", *flags])
            opts = self.node.opts(primary=args.primary, replace_multus=args.replace_multus)
            installer.install(opts, env={}, say=self.node.messages.append)
            env.setdefault("MULTIPLANE", "")
        return subprocess.run(
            ["sh", "-c", doc_block(block)],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def names(self, logical: str) -> list[str]:
        path = self.node.path(logical)
        return sorted(os.listdir(path)) if path.is_dir() else []


@pytest.fixture(params=["thin", "thick", "thick-stopped", "thin-daemonset"])
def multus_node(node: Node, tmp_path: Path, request: pytest.FixtureRequest) -> MultusNode:
    return MultusNode(node, tmp_path, request.param)


def test_migration_page_switch_then_finish(multus_node: MultusNode) -> None:
    """The page's node steps, run as written: multiplane wraps flannel, Multus's files are kept out of the runtime's
    sight for a rollback; `finish` waits for Multus's pods to be gone, then removes Multus's state for good."""
    m, node = multus_node, multus_node.node
    proc = m.run("switch")
    assert proc.returncode == 0, proc.stderr
    assert node.conf()["clusterNetwork"] == m.primary_in_conf()
    assert node.conf()["capabilities"] == {"portMappings": True}
    assert m.names(CONF_DIR) == ["00-multiplane.conf", "10-flannel.conflist"]  # no kubeconfig: not in a cluster
    assert "multus" not in " ".join(m.names(BIN_DIR))
    assert {"flannel", "portmap", "host-local", "multiplane"} <= set(m.names(BIN_DIR))
    backup = "/var/lib/cni/multus-backup"
    if m.mode.startswith("thin"):
        assert m.names(f"{backup}/bin") == ["multus"]
        assert m.names(f"{backup}/net.d") == ["00-multus.conf", "multus.d"]
    elif m.mode == "thick":
        assert m.names(f"{backup}/bin") == ["multus-shim"]
        assert m.names(f"{backup}/net.d") == ["00-multus.conf"]
    for logical, data in m.original.items():
        assert node.path(f"{backup}/net.d/{logical.removeprefix(CONF_DIR + '/')}").read_bytes() == data
    assert m.names("/var/lib/cni/multus") == sorted([SANDBOX_1, SANDBOX_2, "results"])  # kept for a rollback

    m.running.write_text(f"{'c3' * 32}\n{SANDBOX_2}\n")  # a pod Multus attached still runs
    proc = m.run("finish")
    assert proc.returncode != 0
    assert SANDBOX_2 in proc.stderr
    assert node.path("/var/lib/cni/multus").is_dir() and node.path(backup).is_dir()

    m.running.write_text(f"{'c3' * 32}\n")
    proc = m.run("finish")
    assert proc.returncode == 0, proc.stderr
    assert not node.path("/var/lib/cni/multus").exists()
    assert not node.path(backup).exists()
    assert m.names("/var/lib/cni/results") == []
    assert node.conf()["type"] == "multiplane"
    assert m.run("switch").returncode == 0  # running the steps again on a migrated node changes nothing that matters
    assert node.conf()["clusterNetwork"] == m.primary_in_conf()
    assert not node.path(backup).exists()


def test_migration_page_switch_then_rollback(multus_node: MultusNode) -> None:
    """The page's rollback, run as written after its switch: multiplane is gone, Multus's files are back as they were."""
    m, node = multus_node, multus_node.node
    before = {p: node.path(p).read_bytes() for p in m.original}
    proc = m.run("switch")
    assert proc.returncode == 0, proc.stderr
    proc = m.run("rollback")
    assert proc.returncode == 0, proc.stderr
    assert not node.path(f"{CONF_DIR}/00-multiplane.conf").exists()
    assert not node.path(f"{BIN_DIR}/multiplane").exists()
    assert not node.path("/var/lib/cni/multus-backup").exists()
    for logical, data in before.items():
        assert node.path(logical).read_bytes() == data
    shim = "multus" if m.mode.startswith("thin") else "multus-shim"
    assert node.path(f"{BIN_DIR}/{shim}").is_file()
    expected = ["10-flannel.conflist"] + (["00-multus.conf"] if m.mode != "thick-stopped" else [])
    expected += ["multus.d"] if m.mode.startswith("thin") else []
    assert m.names(CONF_DIR) == sorted(expected)
    assert [p.name for p in node.path(CONF_DIR).iterdir() if p.name.endswith(".tmp")] == []


def test_migration_page_daemonset_args_are_installer_flags() -> None:
    """Every flag the page adds to the DaemonSet's init container is one the installer's parser accepts."""
    block = doc_block("daemonset-args")
    flags = [line.strip().removeprefix("- ") for line in block.splitlines() if line.strip().startswith("- --")]
    assert any(f.startswith("--primary=") for f in flags) and "--replace-multus" in flags
    args = installer.build_parser().parse_args(["install", *flags])
    assert args.primary and args.replace_multus


def test_multus_keys_without_an_own_flag_before_are_carried_as_flags(node: Node) -> None:
    """--default-networks, --system-namespaces and --multus-namespace land in 00-multiplane.conf, as lists where the
    meta-plugin reads lists, and the meta-plugin's parser accepts the result."""
    rc = node.main(
        "install",
        "--source",
        SOURCE,
        "--wait-seconds",
        "0",
        "--default-networks",
        "mp-sidecar, /etc/cni/net.d/mp-mon.conf",
        "--system-namespaces",
        "kube-system,mp-infra",
        "--multus-namespace",
        "mp-net",
    )
    assert rc == 0
    conf = node.conf()
    assert conf["defaultNetworks"] == ["mp-sidecar", "/etc/cni/net.d/mp-mon.conf"]
    assert conf["systemNamespaces"] == ["kube-system", "mp-infra"]
    assert conf["multusNamespace"] == "mp-net"
    parsed = MetaConf(NetConf.parse(node.path(f"{CONF_DIR}/00-multiplane.conf").read_bytes()))
    assert (parsed.default_networks, parsed.system_namespaces, parsed.namespace) == (
        ["mp-sidecar", "/etc/cni/net.d/mp-mon.conf"],
        ["kube-system", "mp-infra"],
        "mp-net",
    )


def test_an_empty_system_namespaces_flag_is_an_empty_list(node: Node) -> None:
    """--system-namespaces "" gives every namespace the default networks (an empty list, not the default)."""
    assert node.main("install", "--source", SOURCE, "--wait-seconds", "0", "--system-namespaces", "") == 0
    assert node.conf()["systemNamespaces"] == []
