"""The installed runtime (issue 9, "no unpacking on any CNI call") against real processes and the real kernel.

`multiplane install` lays the runtime tree down as `<bin>/.multiplane/<build>` and puts the
bare launcher at `<bin>/multiplane`; the launcher runs `.multiplane/current` and writes
nothing. The self-contained `dist/multiplane` unpacks its tree once per build. Proved here:

* the installed runtime on its own tmpfs with /tmp noexec drives every personality through
  libcni, and 50 further calls create, change or remove no file;
* calls killed at random moments (installed and self-contained, the unpack itself included)
  leave no temporary tree, link or reservation behind;
* upgrade and downgrade while 20 calls are in flight: every call succeeds, and only the
  current build remains once nothing runs the old one;
* an empty environment, and a chroot holding only the bin dir, /proc and /var;
* the self-contained file refuses cleanly when no place to unpack is usable.

Every test uses a copy of dist/multiplane taken once per module (a rebuild meanwhile changes
nothing here), its own install root and unpack directory, `mp-` names and 10.x addresses.
Random kill delays come from a seeded RNG: the seed is in every failure message, and
`MP_RUNTIME_SEED` replays it; `MP_RUNTIME_KILLS` sets the calls per kill loop (default 100).
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from multiplane.runtime import payload
from tests.cni import Invocation, run
from tests.integration.meta_helpers import addrs, free_cluster_octet, ip_files, kind
from tests.topology import ip, scratch_netns

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist" / "multiplane"
NAMES = ("multiplane", "multiplane-macvlan", "multiplane-host-local")
KILLS = int(os.environ.get("MP_RUNTIME_KILLS", "100"))
SEED = int(os.environ.get("MP_RUNTIME_SEED", "0")) or random.SystemRandom().randrange(1, 2**31)
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
VERSION_CONF = b'{"cniVersion":"1.0.0"}'
LOADER = "ld-linux-x86-64.so.2"


# ---- helpers -----------------------------------------------------------------------------------


def cni(
    binary: str | Sequence[str],
    command: str,
    conf: dict[str, Any] | bytes,
    *,
    container_id: str = "mp-c",
    ifname: str = "eth0",
    netns: str = "/run/netns/mp-none",
    path: str = "/nonexistent",
    env: dict[str, str] | None = None,
) -> Invocation:
    """One call with only the CNI_* variables (and `env`) set: no PATH, no HOME, as a runtime may."""
    argv = [binary] if isinstance(binary, str) else list(binary)
    if command == "VERSION":
        return run(argv, command, conf, container_id=None, netns=None, ifname=None, path=None, env=env, base_env={})
    return run(
        argv, command, conf, container_id=container_id, netns=netns, ifname=ifname, path=path, env=env, base_env={}
    )


def listing(top: str, skip: Sequence[str] = ()) -> dict[str, tuple[int, int, int, int]]:
    """relative path → (inode, size, mtime, ctime) of `top` and everything below it, except the `skip` subtrees."""
    out = {}

    def record(path: str) -> None:
        st = os.lstat(path)
        out[os.path.relpath(path, top)] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    record(top)
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in skip]
        for name in dirs + files:
            if os.path.join(root, name) not in skip:
                record(os.path.join(root, name))
    return out


def changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Paths created, removed or changed between two listings."""
    return sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))


def install(
    source: Path | str, root: Path, unpack: Path | None, prefix: Sequence[str] = (), shown_root: str = ""
) -> subprocess.CompletedProcess[str]:
    """`<source> install --root <root>` as the DaemonSet runs it (a primary config is written first).

    `unpack` is the self-contained file's MULTIPLANE_UNPACK_DIR (None: its default places);
    `prefix` runs it elsewhere (nsenter), where the root is `shown_root`.
    """
    net_d = root / "etc" / "cni" / "net.d"
    net_d.mkdir(parents=True, exist_ok=True)
    primary = net_d / "10-mp-primary.conf"
    if not primary.exists():
        primary.write_text(json.dumps({"cniVersion": "1.0.0", "name": "mp-primary", "type": "bridge"}))
    argv = [*prefix, str(source), "install", "--root", shown_root or str(root), "--no-kubeconfig"]
    env = {"PATH": SYSTEM_PATH}
    if unpack is not None:
        env["MULTIPLANE_UNPACK_DIR"] = str(unpack)
    proc = subprocess.run([*argv, "--wait-seconds", "2"], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def tree_of(pid: int) -> str:
    """The runtime tree a running call executes (its /proc/<pid>/exe is the tree's loader)."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:  # ended meanwhile
        return ""
    if os.path.basename(exe) != LOADER:
        return ""
    return os.path.basename(os.path.dirname(exe))


def leftovers(directory: Path) -> list[str]:
    """Unpacks or installs in progress, trees being removed, temporary files: anything named as transient."""
    found = []
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            if ".tmp" in name or name.startswith((".gone-", ".mp-")):
                found.append(os.path.join(root, name))
    return sorted(found)


class MountNs:
    """A private mount namespace, set up by a shell script and kept alive by `sleep`; calls enter it with nsenter.

    The test reaches the namespace's files through `/proc/<pid>/root`, which shows them as the
    namespace sees them. Closing kills the sleeper: the namespace and its mounts go with it.
    """

    def __init__(self, setup: str) -> None:
        # a bounded sleep: should the test process die without closing, the namespace still ends
        script = f"set -e\n{setup}\necho ready\nexec sleep 900\n"
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            _out, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"setting up the mount namespace failed: {err}")
        self.pid = self.proc.pid
        self.prefix = ["/usr/bin/nsenter", f"--mount=/proc/{self.pid}/ns/mnt", "--"]

    def host(self, path: str) -> Path:
        """Where the namespace's `path` is for the test process."""
        return Path(f"/proc/{self.pid}/root{path}")

    def run(self, *argv: str, env: dict[str, str] | None = None, timeout: float = 60) -> str:
        proc = subprocess.run(
            [*self.prefix, *argv],
            env=env or {"PATH": SYSTEM_PATH},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert proc.returncode == 0, f"{' '.join(argv)}: {proc.stdout}{proc.stderr}"
        return proc.stdout

    def mounts(self) -> dict[str, tuple[str, set[str]]]:
        """mount point → (file system type, options), the last mount at each point."""
        out = {}
        for line in Path(f"/proc/{self.pid}/mountinfo").read_text().splitlines():
            fields = line.split()
            sep = fields.index("-")
            out[fields[4]] = (fields[sep + 1], set(fields[5].split(",")))
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)  # reaps it and closes its pipes


class Veth:
    """A veth pair in the root namespace, both ends up: `master` is what macvlans hang off."""

    def __init__(self, tag: str) -> None:
        self.master, self.peer = f"mp-rm{tag}", f"mp-rp{tag}"
        ip("link", "add", self.master, "type", "veth", "peer", "name", self.peer)
        ip("link", "set", self.peer, "up")
        ip("link", "set", self.master, "up")
        self.index = json.loads(ip("-j", "link", "show", self.master))[0]["ifindex"]

    def close(self) -> None:
        ip("link", "del", self.master, check=False)


@pytest.fixture
def netns() -> Iterator[str]:
    """A pod namespace of the root mount namespace: `mp-rt<tag>`, only lo (up)."""
    with scratch_netns("mp-rt", lo_up=True) as name:
        yield name


@pytest.fixture
def veth() -> Iterator[Veth]:
    pair = Veth(uuid.uuid4().hex[:6])
    try:
        yield pair
    finally:
        pair.close()


def link_names(netns: str) -> list[str]:
    return sorted(link["ifname"] for link in json.loads(ip("-n", netns, "-j", "link", "show") or "[]"))


# ---- the file under test -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of dist/multiplane (a missing file is a failure: `make test` builds it first)."""
    if not os.access(DIST, os.X_OK):
        pytest.fail(f"{DIST} is missing: run `make binary` (make test does)")
    copy = tmp_path_factory.mktemp("mp-src") / "multiplane"
    shutil.copy2(DIST, copy)
    if payload.trailer_of(str(copy)) is None:
        pytest.fail(f"{DIST} carries no runtime payload: rebuild it with packaging/build_runtime.py")
    return copy


@pytest.fixture(scope="module")
def build(source: Path) -> str:
    found = payload.trailer_of(str(source))
    assert found is not None
    return found[2]


@pytest.fixture(scope="module")
def installed(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A node root with the runtime installed from `source`; the CNI bin dir."""
    root = tmp_path_factory.mktemp("mp-node")
    install(source, root, tmp_path_factory.mktemp("mp-unpack"))
    return root / "opt" / "cni" / "bin"


# ---- 1. the installed runtime on its own tmpfs writes nothing -----------------------------------

TOOLS, NODE = "/tmp/mp-tools", "/tmp/mp-root"
BIN = f"{NODE}/opt/cni/bin"
# /tmp noexec; /var, /run and /dev/shm fresh, so whatever a call writes in any of them is ours to
# see and nothing another process on the machine does there shows up. The node root lives on
# the noexec /tmp; its CNI bin dir is a tmpfs of its own, the tools (dist copy, driver) another.
ISOLATED = f"""
mount -t tmpfs -o noexec,nosuid,nodev,mode=1777 mp-tmp /tmp
mount -t tmpfs -o mode=755 mp-var /var
mkdir -p /var/lib && mkdir -m 1777 /var/tmp && ln -s /run /var/run
mount -t tmpfs -o mode=755 mp-run /run
mount -t tmpfs -o nosuid,nodev,mode=1777 mp-shm /dev/shm
mkdir -p {TOOLS} {BIN}
mount -t tmpfs -o mode=755 mp-tools {TOOLS}
mount -t tmpfs -o mode=755 mp-cni-bin {BIN}
"""
WATCHED = ("/tmp", "/var", "/run", "/dev/shm")
UNPACK_PLACES = (
    "/var/lib/cni/multiplane",
    "/run/multiplane",
    "/var/tmp/multiplane",
    "/tmp/multiplane",
    "/dev/shm/multiplane",
)


def test_installed_runtime_on_its_own_tmpfs_writes_nothing(source: Path, build: str, cnidriver: str) -> None:
    """In a mount namespace with /tmp noexec and fresh /var, /run, /dev/shm, a node root whose CNI bin dir
    is a tmpfs of its own: install there, then drive every personality through libcni with the
    kernel state checked (the reference bridge with multiplane-host-local as its IPAM, multiplane-macvlan
    on a veth master, the meta-plugin with a local NAD: ADD, CHECK, DEL each). Then 50 calls
    (20 VERSION through the three names, 15 host-local ADD + 15 DEL) and compare listings (inode,
    size, mtime, ctime) of /tmp (holding the node root), /var, /run and /dev/shm before and after:
    the VERSION calls change nothing at all; the ADD/DEL calls change nothing outside the dataDir
    they were given. The libcni driver and its cache dir take no part in the 50 calls.
    """
    tag = uuid.uuid4().hex[:6]
    bridge, pod = f"mp-rb{tag}", f"mp-rpod{tag}"
    forward = IP_FORWARD.read_text()
    pair = Veth(tag)
    try:
        ns = MountNs(ISOLATED)
    except BaseException:
        pair.close()
        raise
    try:
        mounts = ns.mounts()
        assert "noexec" in mounts["/tmp"][1]
        assert mounts[BIN][0] == "tmpfs" and "noexec" not in mounts[BIN][1]
        shutil.copy2(source, ns.host(f"{TOOLS}/multiplane"))
        shutil.copy2(cnidriver, ns.host(f"{TOOLS}/cnidriver"))
        # The self-contained file running the install unpacks into the tools tmpfs, none of the default
        # places: a call that unpacked (or wrote anything there) would show.
        out = install(f"{TOOLS}/multiplane", ns.host(NODE), Path(f"{TOOLS}/unpack"), ns.prefix, NODE)
        assert "installed: /opt/cni/bin/multiplane (launcher)" in out.stderr
        assert os.readlink(ns.host(f"{BIN}/.multiplane/current")) == build
        assert os.listdir(ns.host(f"{TOOLS}/unpack")) == [build]

        ns.run("ip", "netns", "add", pod)
        ns.run("ip", "-n", pod, "link", "set", "lo", "up")
        ns_pod = f"/run/netns/{pod}"
        nets, data = f"{NODE}/etc/mp-nets", f"{NODE}/var/lib/cni/networks"
        ns.host(nets).mkdir(parents=True)
        ns.host(f"{NODE}/nads").mkdir()
        cluster = ipaddress.ip_network(f"10.244.{free_cluster_octet()}.0/24")
        bridge_conf = {
            "cniVersion": "1.0.0",
            "name": "mp-rt-bridge",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": True,
                    "ipam": {
                        "type": "multiplane-host-local",
                        "dataDir": data,
                        "ranges": [[{"subnet": str(cluster), "gateway": str(cluster[1])}]],
                        "routes": [{"dst": "0.0.0.0/0", "gw": str(cluster[1])}],
                    },
                }
            ],
        }
        ns.host(f"{nets}/10-bridge.conflist").write_text(json.dumps(bridge_conf))

        def macvlan(name: str, subnet: str, mode: str) -> dict[str, Any]:
            return {
                "cniVersion": "1.0.0",
                "name": name,
                "type": "multiplane-macvlan",
                "master": pair.master,
                "mode": mode,
                "ipam": {"type": "multiplane-host-local", "dataDir": data, "ranges": [[{"subnet": subnet}]]},
            }

        standalone = macvlan("mp-rt-macvlan", "10.246.0.0/24", "bridge")
        ns.host(f"{nets}/20-macvlan.conflist").write_text(
            json.dumps({"cniVersion": "1.0.0", "name": "mp-rt-macvlan", "plugins": [standalone]})
        )
        nad = {
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": "mp-rt-nad"},
            "spec": {"config": json.dumps(macvlan("mp-rt-nad", "10.247.0.0/24", "private"))},
        }
        ns.host(f"{NODE}/nads/mp-rt-nad.json").write_text(json.dumps(nad))
        meta = {
            "type": "multiplane",
            "clusterNetwork": f"{nets}/10-bridge.conflist",
            "cniDir": f"{NODE}/var/lib/cni/multiplane",
            "binDir": BIN,
            "localNADDir": f"{NODE}/nads",
        }
        ns.host(f"{nets}/30-meta.conflist").write_text(
            json.dumps({"cniVersion": "1.0.0", "name": "mp-rt-meta", "plugins": [meta]})
        )

        def drive(command: str, network: str, container: str, ifname: str, args: str = "") -> str:
            env = {
                "PATH": SYSTEM_PATH,
                "NETCONFPATH": nets,
                "CNI_PATH": f"{BIN}:/usr/lib/cni",
                "CNI_CACHE_DIR": f"{NODE}/var/lib/cni/cache",
                "CNI_CONTAINERID": container,
                "CNI_IFNAME": ifname,
                "CNI_ARGS": args or "IgnoreUnknown=1;K8S_POD_NAMESPACE=mp-app;K8S_POD_NAME=mp-web",
            }
            return ns.run(f"{TOOLS}/cnidriver", command, network, ns_pod, env=env)

        def pod_links() -> dict[str, dict[str, Any]]:
            return {link["ifname"]: link for link in json.loads(ns.run("ip", "-n", pod, "-j", "-d", "addr", "show"))}

        def nothing_left() -> None:
            assert sorted(pod_links()) == ["lo"]
            assert ip_files(ns.host(data)) == []

        # the reference bridge, with multiplane-host-local as its IPAM
        result = json.loads(drive("add", "mp-rt-bridge", "mp-a", "eth0"))
        assert [i["address"] for i in result["ips"]] == [f"{cluster[2]}/24"]
        eth0 = pod_links()["eth0"]
        assert (kind(eth0), addrs(eth0)) == ("veth", [f"{cluster[2]}/24"])
        routes = json.loads(ns.run("ip", "-n", pod, "-j", "route", "show"))
        assert any(r.get("dst") == "default" and r.get("gateway") == str(cluster[1]) for r in routes), routes
        assert addrs(json.loads(ip("-j", "addr", "show", bridge))[0]) == [f"{cluster[1]}/24"]
        assert [os.path.basename(f) for f in ip_files(ns.host(data))] == [str(cluster[2])]
        drive("check", "mp-rt-bridge", "mp-a", "eth0")
        drive("del", "mp-rt-bridge", "mp-a", "eth0")
        nothing_left()

        # multiplane-macvlan on the veth master, multiplane-host-local in-process
        result = json.loads(drive("add", "mp-rt-macvlan", "mp-b", "net1"))
        assert [i["address"] for i in result["ips"]] == ["10.246.0.2/24"]
        net1 = pod_links()["net1"]
        assert kind(net1) == "macvlan" and net1["linkinfo"]["info_data"]["mode"] == "bridge"
        assert net1["link_index"] == pair.index and addrs(net1) == ["10.246.0.2/24"]
        drive("check", "mp-rt-macvlan", "mp-b", "net1")
        drive("del", "mp-rt-macvlan", "mp-b", "net1")
        nothing_left()

        # the meta-plugin: eth0 from the cluster network (exec'd bridge), net1 from the local NAD (in-process)
        args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=mp-app;K8S_POD_NAME=mp-web;MULTIPLANE_NETWORKS=mp-rt-nad"
        result = json.loads(drive("add", "mp-rt-meta", "mp-c", "eth0", args))
        # the cluster network's result; host-local goes round-robin from the last address it gave
        assert [i["address"] for i in result["ips"]] == [f"{cluster[3]}/24"]
        links = pod_links()
        assert (kind(links["eth0"]), addrs(links["eth0"])) == ("veth", [f"{cluster[3]}/24"])
        assert kind(links["net1"]) == "macvlan" and links["net1"]["linkinfo"]["info_data"]["mode"] == "private"
        assert addrs(links["net1"]) == ["10.247.0.2/24"]
        drive("check", "mp-rt-meta", "mp-c", "eth0", args)
        drive("del", "mp-rt-meta", "mp-c", "eth0", args)
        nothing_left()
        state = ns.host(f"{NODE}/var/lib/cni/multiplane")
        assert [p for p in state.rglob("*") if p.is_file()] == []
        assert [p for p in UNPACK_PLACES if ns.host(p).exists()] == []  # no call unpacked anything

        # 50 calls: 20 VERSION, then 15 host-local ADD + 15 DEL
        calls = f"{NODE}/var/lib/cni/mp-50"
        hl = {
            "cniVersion": "1.0.0",
            "name": "mp-rt-50",
            "type": "multiplane-host-local",
            "ipam": {"type": "multiplane-host-local", "dataDir": calls, "subnet": "10.248.0.0/24"},
        }
        hl_bin = [*ns.prefix, f"{BIN}/multiplane-host-local"]
        for command in ("ADD", "DEL"):  # the network's directory and lock exist before the listings
            assert cni(hl_bin, command, hl, container_id="mp-warm").ok
        tops = [ns.host(top).as_posix() for top in WATCHED]
        before = {top: listing(top) for top in tops}
        for i in range(20):
            proc = cni([*ns.prefix, f"{BIN}/{NAMES[i % 3]}"], "VERSION", VERSION_CONF)
            assert proc.ok and json.loads(proc.stdout)["cniVersion"] == "1.0.0", proc.stderr
        after = {top: listing(top) for top in tops}
        assert {top: changed(before[top], after[top]) for top in tops} == {top: [] for top in tops}

        skip = [ns.host(calls).as_posix()]
        before = {top: listing(top, skip) for top in tops}
        for i in range(15):
            add = cni(hl_bin, "ADD", hl, container_id=f"mp-50-{i}")
            assert add.ok, add.stdout + add.stderr
            assert ip_files(ns.host(calls)), "the ADD reserved nothing"
            assert cni(hl_bin, "DEL", hl, container_id=f"mp-50-{i}").ok
        after = {top: listing(top, skip) for top in tops}
        assert {top: changed(before[top], after[top]) for top in tops} == {top: [] for top in tops}
        assert ip_files(ns.host(calls)) == []
    finally:
        subprocess.run([*ns.prefix, "ip", "netns", "del", pod], capture_output=True, check=False)
        ns.close()
        pair.close()
        ip("link", "del", bridge, check=False)
        if IP_FORWARD.read_text() != forward:
            IP_FORWARD.write_text(forward)


# ---- 2. killed calls leave nothing behind -------------------------------------------------------


def start_and_kill(argv: list[str], env: dict[str, str], stdin: bytes, delay: float) -> int:
    """Start one call in its own process group, SIGKILL the group after `delay` s; its exit status."""
    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write(stdin)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    time.sleep(delay)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return proc.wait(timeout=30)


def timed(argv: list[str], env: dict[str, str], stdin: bytes) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    started = time.monotonic()
    proc = subprocess.run(argv, env=env, input=stdin, capture_output=True, timeout=60, check=False)
    return time.monotonic() - started, proc


@pytest.mark.parametrize("form", ["installed", "self-contained"])
def test_killed_calls_leave_nothing_behind(
    form: str, source: Path, build: str, installed: Path, netns: str, veth: Veth, tmp_path: Path
) -> None:
    """MP_RUNTIME_KILLS (100) calls, alternately host-local ADD and macvlan ADD (veth master, our netns),
    each in its own process group, SIGKILLed after a random delay over the call's measured duration,
    each followed by a DEL of the same attachment, which must succeed. The self-contained form unpacks
    into a directory of the test's own; every tenth call there finds no tree and is killed while it
    unpacks. Afterwards one more ADD/DEL of each kind succeeds, and nothing is left: no unpack in
    progress or being removed, no change at all in the install tree, only lo in the netns, no
    reservation or temporary file in the dataDir.
    """
    print(f"replay with MP_RUNTIME_SEED={SEED}")  # pytest shows it with a failure
    unpack = tmp_path / "mp-unpack"
    data = tmp_path / "mp-data"
    if form == "installed":
        bin_dir = installed
        extra: dict[str, str] = {}
    else:
        bin_dir = tmp_path / "mp-bin"
        bin_dir.mkdir()
        for name in NAMES:
            (bin_dir / name).symlink_to(source)
        extra = {"MULTIPLANE_UNPACK_DIR": str(unpack)}
    confs = {
        "host-local": {
            "cniVersion": "1.0.0",
            "name": "mp-rk-hl",
            "type": "multiplane-host-local",
            "ipam": {"type": "multiplane-host-local", "dataDir": str(data), "subnet": "10.212.0.0/24"},
        },
        "macvlan": {
            "cniVersion": "1.0.0",
            "name": "mp-rk-mv",
            "type": "multiplane-macvlan",
            "master": veth.master,
            "ipam": {"type": "multiplane-host-local", "dataDir": str(data), "subnet": "10.213.0.0/24"},
        },
    }

    def call(kind_: str, command: str, container: str) -> tuple[list[str], dict[str, str], bytes]:
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container,
            "CNI_NETNS": f"/run/netns/{netns}",
            "CNI_IFNAME": "net1",
            "CNI_PATH": str(bin_dir),
            **extra,
        }
        return [str(bin_dir / f"multiplane-{kind_}")], env, json.dumps(confs[kind_]).encode()

    def delete(kind_: str, container: str, why: str) -> None:
        argv, env, stdin = call(kind_, "DEL", container)
        proc = subprocess.run(argv, env=env, input=stdin, capture_output=True, timeout=60, check=False)
        assert proc.returncode == 0, f"seed {SEED}: DEL after {why} failed: {proc.stdout!r} {proc.stderr!r}"

    argv, env, _ = call("host-local", "VERSION", "mp-warm")
    assert subprocess.run(argv, env=env, input=VERSION_CONF, capture_output=True, check=False).returncode == 0
    spans: dict[str, float] = {}
    for kind_ in ("host-local", "macvlan"):
        for i in range(3):
            took, proc = timed(*call(kind_, "ADD", f"mp-measure{i}"))
            assert proc.returncode == 0, proc.stdout + proc.stderr
            spans[kind_] = max(spans.get(kind_, 0.0), took)
            delete(kind_, f"mp-measure{i}", "a measured ADD")
    if form == "self-contained":
        shutil.rmtree(unpack / build)
        took, proc = timed(*call("host-local", "ADD", "mp-measure-unpack"))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        spans["unpack"] = took
        delete("host-local", "mp-measure-unpack", "a measured unpack")
    tree_before = listing(str(bin_dir))

    rng = random.Random(f"{SEED}-{form}")
    killed, interrupted, log = 0, 0, []
    for i in range(KILLS):
        kind_ = ("host-local", "macvlan")[i % 2]
        unpacking = form == "self-contained" and i % 10 == 0
        if unpacking:
            shutil.rmtree(unpack / build)
        delay = rng.uniform(0, 1.2 * spans["unpack" if unpacking else kind_])
        status = start_and_kill(*call(kind_, "ADD", f"mp-k{i}"), delay)
        killed += status == -signal.SIGKILL
        if unpacking:  # the call left its unpack in progress behind: the DEL below must sweep it
            interrupted += any(".tmp-" in name for name in os.listdir(unpack))
        log.append(f"#{i} {kind_}{' unpacking' if unpacking else ''} after {delay * 1000:.1f} ms: {status}")
        delete(kind_, f"mp-k{i}", log[-1])

    for kind_ in ("host-local", "macvlan"):
        argv, env, stdin = call(kind_, "ADD", "mp-final")
        proc = subprocess.run(argv, env=env, input=stdin, capture_output=True, timeout=60, check=False)
        assert proc.returncode == 0, f"seed {SEED}: {proc.stdout!r} {proc.stderr!r}"
        delete(kind_, "mp-final", "the final ADD")
    where = f"seed {SEED}, spans {spans}, calls: {'; '.join(log[-10:])}"
    assert killed >= KILLS // 4, f"only {killed} of {KILLS} calls were killed before they ended ({where})"
    if form == "self-contained" and KILLS >= 50:
        assert interrupted > 0, f"no call was killed while it unpacked ({where})"
    if form == "self-contained":
        assert sorted(os.listdir(unpack)) == [build], where
    assert changed(tree_before, listing(str(bin_dir))) == [], where
    assert leftovers(bin_dir) == [], where
    assert link_names(netns) == ["lo"], where
    assert ip_files(data) == [], where
    assert leftovers(data) == [], where


def test_concurrent_first_calls_unpack_once(source: Path, build: str, tmp_path: Path) -> None:
    """20 calls started together on an empty unpack directory all succeed and leave exactly one tree."""
    unpack = tmp_path / "mp-unpack"
    env = {"CNI_COMMAND": "VERSION", "MULTIPLANE_UNPACK_DIR": str(unpack)}

    def version(_: int) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([str(source)], env=env, input=VERSION_CONF, capture_output=True, timeout=60, check=False)

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(version, range(20)))
    assert [r.returncode for r in results] == [0] * 20, [r.stderr for r in results if r.returncode]
    assert sorted(os.listdir(unpack)) == [build]
    assert {".complete", ".lock", "MANIFEST"} <= set(os.listdir(unpack / build))


# ---- 3. upgrade and downgrade with calls in flight ----------------------------------------------


def second_build(source: Path, out: Path) -> str:
    """A copy of `source` whose VERSION file differs, with its MANIFEST and build id remade; its build id.

    Its launcher differs too (zero bytes after the ELF image, which the kernel never loads), so
    installing it replaces <bin>/multiplane as well, as an upgrade with a changed launcher does.
    """
    launcher, _build, entries = payload.read(str(source))
    launcher += bytes(16)
    files = [e for e in entries if e.path != payload.MANIFEST]
    next(e for e in files if e.path == "launcher").data = launcher  # what `install` lays down from the tree
    version = next(e for e in files if e.path == "VERSION")
    version.data = version.data.strip() + b"-mp2\n"
    text = payload.manifest(files)
    files.append(payload.Entry(payload.MANIFEST, 0o644, text))
    build = payload.build_id(version.data.decode().strip(), text)
    out.write_bytes(payload.write(launcher, files, build))
    out.chmod(0o755)
    return build


def test_upgrade_and_downgrade_with_calls_in_flight(
    source: Path, build: str, netns: str, veth: Veth, tmp_path: Path
) -> None:
    """20 calls (host-local and macvlan ADDs through the installed names) are held in flight by the test
    holding their network's host-local lock; v2 is installed meanwhile, while VERSION calls keep
    starting. The old build stays (calls run it), a call started after the switch runs v2, every call
    succeeds once the lock is released. The same again from v2 back to v1. Each old build is removed
    by the next install once no call runs it: at the end only v1 and `current` are left.
    """
    v2_file = tmp_path / "mp-v2"
    v2 = second_build(source, v2_file)
    assert v2 != build
    root, unpack, data = tmp_path / "mp-node", tmp_path / "mp-unpack", tmp_path / "mp-data"
    install(source, root, unpack)
    bin_dir = root / "opt" / "cni" / "bin"
    runtime = bin_dir / ".multiplane"
    hl = {
        "cniVersion": "1.0.0",
        "name": "mp-up",
        "type": "multiplane-host-local",
        "ipam": {"type": "multiplane-host-local", "dataDir": str(data), "subnet": "10.214.0.0/24"},
    }
    mv = {**hl, "type": "multiplane-macvlan", "master": veth.master}

    def env(command: str, i: int) -> dict[str, str]:
        return {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": f"mp-up{i}",
            "CNI_NETNS": f"/run/netns/{netns}",
            "CNI_IFNAME": f"net{i}",
            "CNI_PATH": str(bin_dir),
        }

    (tmp_path / "mp-hl.json").write_text(json.dumps(hl))
    (tmp_path / "mp-mv.json").write_text(json.dumps(mv))

    def start(i: int) -> subprocess.Popen[bytes]:
        """ADD number `i`: host-local (even) or macvlan (odd), through its installed name."""
        name, conf = ("multiplane-host-local", "mp-hl.json") if i % 2 == 0 else ("multiplane-macvlan", "mp-mv.json")
        with open(tmp_path / conf, "rb") as stdin:
            return subprocess.Popen(
                [str(bin_dir / name)], env=env("ADD", i), stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )

    def running(proc: subprocess.Popen[bytes], want: str) -> None:
        deadline = time.monotonic() + 10
        while tree_of(proc.pid) != want:
            assert proc.poll() is None, f"a held call ended early: {proc.stderr.read() if proc.stderr else ''}"
            assert time.monotonic() < deadline, f"call {proc.pid} runs {tree_of(proc.pid)!r}, not {want}"
            time.sleep(0.01)

    def versions_meanwhile(stop: threading.Event, outcomes: list[str]) -> None:
        i = 0
        while not stop.is_set():
            proc = cni(str(bin_dir / NAMES[i % 3]), "VERSION", VERSION_CONF)
            outcomes.append("" if proc.ok else proc.stdout + proc.stderr)
            i += 1

    def switch_under_load(first: int, old: str, new_file: Path, new: str) -> list[str]:
        """Hold 20 calls on `old`, install `new` from `new_file`, start one more; the addresses all got."""
        lock_path = data / "mp-up" / "lock"
        lock = os.open(lock_path, os.O_RDONLY)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            procs = [start(first + i) for i in range(20)]
            for proc in procs:
                running(proc, old)
            time.sleep(0.3)
            assert [p.poll() for p in procs] == [None] * 20  # all in flight, waiting for the lock
            stop, outcomes = threading.Event(), []
            thread = threading.Thread(target=versions_meanwhile, args=(stop, outcomes))
            thread.start()
            try:
                out = install(new_file, root, unpack)
            finally:
                stop.set()
                thread.join()
            assert outcomes and [o for o in outcomes if o] == []  # VERSION calls started during the install
            assert f"kept: /opt/cni/bin/.multiplane/{old}" in out.stderr, out.stderr
            assert "installed: /opt/cni/bin/multiplane (launcher)" in out.stderr, out.stderr
            assert os.readlink(runtime / "current") == new
            assert (runtime / old / ".complete").exists()  # calls still run it
            late = start(first + 20)
            procs.append(late)
            running(late, new)
        finally:
            os.close(lock)  # releases the flock: the held calls go on
            outputs = [proc.communicate(timeout=60) for proc in procs]
        got = []
        for proc, (out_, err) in zip(procs, outputs):
            assert proc.returncode == 0, out_ + err
            got += [ip_["address"] for ip_ in json.loads(out_)["ips"]]
        return got

    def delete(i: int) -> Invocation:
        name, conf = ("multiplane-host-local", hl) if i % 2 == 0 else ("multiplane-macvlan", mv)
        return cni(
            str(bin_dir / name), "DEL", conf, container_id=f"mp-up{i}", ifname=f"net{i}", netns=f"/run/netns/{netns}"
        )

    for i in (0, 1):  # the network's directory and lock
        proc = cni(str(bin_dir / "multiplane-host-local"), "ADD", hl, container_id=f"mp-up{i}", ifname=f"net{i}")
        assert proc.ok, proc.stdout + proc.stderr
        assert delete(i).ok
    first = switch_under_load(0, build, v2_file, v2)
    install(v2_file, root, unpack)  # nothing runs v1 any more: removed
    assert sorted(os.listdir(runtime)) == sorted(["current", v2])
    second = switch_under_load(21, v2, source, build)
    install(source, root, unpack)
    assert sorted(os.listdir(runtime)) == sorted(["current", build])
    assert len(set(first + second)) == 42
    # (links die with the netns fixture, reservations with tmp_path, should anything above fail)
    failed = [proc.stdout + proc.stderr for proc in map(delete, range(42)) if not proc.ok]
    assert failed == []
    assert link_names(netns) == ["lo"]
    assert ip_files(data) == []


def test_a_call_whose_launcher_was_just_replaced_still_runs(installed: Path, source: Path, tmp_path: Path) -> None:
    """An install that renames a new launcher over the old one while a call is starting leaves that call's
    /proc/self/exe reading "<bin>/multiplane (deleted)". Executed from a descriptor after its file was
    unlinked (fexecve), both forms still answer: the launcher reads itself through /proc/self/exe,
    and the installed one still finds `.multiplane/current` beside the name it had.
    """
    for original, where in ((installed / "multiplane", installed), (source, tmp_path)):
        doomed = where / "mp-replaced"
        shutil.copy2(original, doomed)
        fd = os.open(doomed, os.O_RDONLY)
        try:
            os.unlink(doomed)
            proc = subprocess.run(
                ["multiplane"],
                executable=f"/proc/self/fd/{fd}",
                pass_fds=(fd,),
                env={"CNI_COMMAND": "VERSION", "MULTIPLANE_UNPACK_DIR": str(tmp_path / "mp-unpack")},
                input=VERSION_CONF,
                capture_output=True,
                timeout=60,
                check=False,
            )
        finally:
            os.close(fd)
        assert proc.returncode == 0, f"{original}: {proc.stdout!r} {proc.stderr!r}"
        assert json.loads(proc.stdout)["cniVersion"] == "1.0.0"


# ---- 4. an empty environment, and a chroot of only the bin dir, /proc and /var -----------------


def test_empty_environment(installed: Path, tmp_path: Path) -> None:
    """With no variable but CNI_* (no PATH, no HOME, nothing), VERSION and a host-local ADD work."""
    proc = subprocess.run([str(installed / "multiplane")], env={}, input=b"", capture_output=True, check=False)
    assert proc.stdout == b"" and b"multiplane" in proc.stderr  # run as a plain program: it says what it is
    version = cni(str(installed / "multiplane-host-local"), "VERSION", VERSION_CONF)
    assert version.ok and json.loads(version.stdout)["cniVersion"] == "1.0.0", version.stderr
    conf = {
        "cniVersion": "1.0.0",
        "name": "mp-env",
        "type": "x",
        "ipam": {"type": "host-local", "dataDir": str(tmp_path / "mp-data"), "subnet": "10.215.0.0/24"},
    }
    add = cni(str(installed / "multiplane-host-local"), "ADD", conf)
    assert add.ok, add.stdout + add.stderr
    assert add.json["ips"][0]["address"] == "10.215.0.2/24"
    assert cni(str(installed / "multiplane-host-local"), "DEL", conf).ok


def test_chroot_with_only_the_bin_dir_proc_and_var(installed: Path, tmp_path: Path) -> None:
    """chroot into a root holding only the installed CNI bin dir (bound read-only, so a write would fail),
    /proc and /var, and run the installed names directly with `env -i`: VERSION works (also before
    /proc is mounted: the launcher then finds itself through argv[0]), and host-local ADD, CHECK
    and DEL work with the dataDir under /var.
    """
    root, out = tmp_path / "mp-chroot", tmp_path / "mp-out"
    for d in ("opt/cni/bin", "proc", "var"):
        (root / d).mkdir(parents=True)
    out.mkdir()
    conf = {
        "cniVersion": "1.0.0",
        "name": "mp-chroot",
        "type": "x",
        "ipam": {"type": "host-local", "dataDir": "/var/lib/cni/networks", "subnet": "10.216.0.0/24"},
    }
    (out / "conf").write_text(json.dumps(conf))
    (out / "version").write_bytes(VERSION_CONF)
    chroot = f"/usr/sbin/chroot {root}"
    cni_env = "CNI_CONTAINERID=mp-c CNI_NETNS=/x CNI_IFNAME=eth0 CNI_PATH=/opt/cni/bin"
    script = f"""set -e
mount --bind {installed} {root}/opt/cni/bin
mount -o remount,bind,ro {root}/opt/cni/bin
/usr/bin/env -i CNI_COMMAND=VERSION {chroot} /opt/cni/bin/multiplane < {out}/version > {out}/noproc
mount -t proc proc {root}/proc
for command in ADD CHECK DEL; do
  /usr/bin/env -i CNI_COMMAND=$command {cni_env} {chroot} /opt/cni/bin/multiplane-host-local < {out}/conf > {out}/$command
  ls {root}/var/lib/cni/networks/mp-chroot > {out}/$command-files
done
/usr/bin/env -i CNI_COMMAND=VERSION {chroot} /opt/cni/bin/multiplane-macvlan < {out}/version > {out}/VERSION
if touch {root}/opt/cni/bin/mp-probe 2>/dev/null; then echo "the bin dir is writable"; exit 1; fi
"""
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script],
        env={},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    noproc = json.loads((out / "noproc").read_text())
    assert noproc["cniVersion"] == "1.0.0" and "1.1.0" in noproc["supportedVersions"]
    assert json.loads((out / "ADD").read_text())["ips"][0]["address"] == "10.216.0.2/24"
    assert "10.216.0.2" in (out / "ADD-files").read_text().split()
    assert (out / "CHECK").read_text() == (out / "DEL").read_text() == ""
    assert (out / "DEL-files").read_text().split() == ["last_reserved_ip.0", "lock"]
    assert json.loads((out / "VERSION").read_text()) == noproc
    assert sorted(os.listdir(root)) == ["opt", "proc", "var"]


# ---- 5. the self-contained file refuses cleanly when it has nowhere to unpack ------------------


def test_self_contained_refuses_when_no_place_is_usable(source: Path) -> None:
    """With /var read-only, /run, /tmp and /dev/shm noexec and MULTIPLANE_UNPACK_DIR unset, the file exits
    non-zero, stderr names every place it tried with the reason, and as a CNI plugin its stdout is one
    CNI error object (code 999); as a plain program its stdout stays empty. A MULTIPLANE_UNPACK_DIR
    on a noexec mount is tried first and refused the same way.
    """
    script = f"""set -e
mount -t tmpfs -o mode=755 mp-var /var
cp {source} /var/multiplane
mount -o remount,ro /var
mount -t tmpfs -o noexec mp-run /run
mount -t tmpfs -o noexec mp-tmp /tmp
mount -t tmpfs -o noexec mp-shm /dev/shm
echo '{{}}' | /usr/bin/env -i CNI_COMMAND=ADD CNI_CONTAINERID=mp-c CNI_NETNS=/x CNI_IFNAME=eth0 CNI_PATH=/x \\
  /var/multiplane > /run/out 2> /run/err && exit 3
/usr/bin/env -i /var/multiplane --version > /run/plain-out 2> /run/plain-err && exit 4
echo '{{}}' | /usr/bin/env -i CNI_COMMAND=VERSION MULTIPLANE_UNPACK_DIR=/tmp/mp-own /var/multiplane \\
  > /run/own-out 2> /run/own-err && exit 5
for f in out err plain-out plain-err own-out own-err; do printf '%s\\0' "$(cat /run/$f)"; done
"""
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script],
        env={"PATH": SYSTEM_PATH},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out, err, plain_out, plain_err, own_out, own_err = proc.stdout.split("\0")[:6]
    error = json.loads(out)
    assert error["code"] == 999 and error["cniVersion"]
    assert error["msg"].startswith("cannot unpack the runtime; tried: ")
    tried = {
        "/var/lib/cni/multiplane/run": "Read-only file system",
        "/run/multiplane": "mounted noexec",
        "/var/tmp/multiplane": "Read-only file system",
        "/tmp/multiplane": "mounted noexec",
        "/dev/shm/multiplane": "mounted noexec",
    }
    listed = ", ".join(f"{place} ({why})" for place, why in tried.items())
    assert err == f"multiplane: cannot unpack the runtime; tried: {listed}", err
    assert error["msg"] == err.removeprefix("multiplane: ")
    assert plain_out == "" and plain_err == err
    assert own_err.startswith("multiplane: cannot unpack the runtime; tried: /tmp/mp-own (mounted noexec), "), own_err
    assert json.loads(own_out)["code"] == 999
