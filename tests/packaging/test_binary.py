"""The built dist/multiplane itself: static, every name, hostile start-up conditions, concurrency, real scenarios.

`make test` builds it first (`make binary`); a missing binary is a failure, not a skip.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / "dist" / "multiplane"
NAMES = ("multiplane", "multiplane-macvlan", "multiplane-host-local")
VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


@pytest.fixture(scope="module")
def binary() -> Path:
    if not os.access(BINARY, os.X_OK):
        pytest.fail(f"{BINARY} is missing: run `make binary` (make test does)")
    return BINARY


UNPACK_BASES = ("/var/lib/cni/multiplane/run", "/run/multiplane", "/var/tmp/multiplane", "/tmp/multiplane")


def _unpack_leftovers() -> set[str]:
    """Unpacks in progress or being removed (`*.tmp-<pid>`, `.gone-*`) in the places the file unpacks to."""
    found = set()
    for base in UNPACK_BASES:
        try:
            names = os.listdir(base)
        except FileNotFoundError:
            continue
        found |= {f"{base}/{n}" for n in names if ".tmp-" in n or n.startswith(".gone-")}
    return found


@pytest.fixture
def chroot(binary: Path, tmp_path: Path) -> Path:
    """A root holding only the binary (under its three names: symlinks) and a static busybox."""
    root = tmp_path / "mp-root"
    for d in ("bin", "proc", "dev", "tmp", "var", "data", "run/netns", "etc"):
        (root / d).mkdir(parents=True)
    shutil.copy(binary, root / "bin" / "multiplane")
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    for name in NAMES[1:]:
        (root / "bin" / name).symlink_to("multiplane")
    return root


def _in_chroot(root: Path, script: str, stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a busybox shell script inside `root`, in a private mount namespace with /proc and the host's netns dir."""
    outer = (
        f"mount -t proc proc {root}/proc && mount --rbind /run/netns {root}/run/netns 2>/dev/null; "
        f'exec chroot {root} /bin/busybox env -i PATH=/bin /bin/busybox sh -c "$0"'
    )
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", outer, script],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_binary_is_static(binary: Path) -> None:
    """The file needs no dynamic loader or shared library from the node: no PT_INTERP, no DT_NEEDED."""
    from elftools.elf.elffile import ELFFile

    with open(binary, "rb") as fh:
        elf = ELFFile(fh)
        assert not [seg for seg in elf.iter_segments() if seg["p_type"] == "PT_INTERP"]
        dynamic = elf.get_section_by_name(".dynamic")
        needed = [tag.needed for tag in dynamic.iter_tags() if tag.entry.d_tag == "DT_NEEDED"] if dynamic else []
        assert needed == []
    ldd = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    assert "not a dynamic executable" in ldd.stdout + ldd.stderr or "statically linked" in ldd.stdout + ldd.stderr


def test_version_flag_in_an_empty_chroot(chroot: Path) -> None:
    """In a root with nothing but the binary and busybox, `multiplane --version` works."""
    proc = _in_chroot(chroot, "/bin/multiplane --version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("multiplane ")


@pytest.mark.parametrize("name", NAMES)
def test_every_name_answers_version_in_the_chroot(chroot: Path, name: str) -> None:
    """VERSION through each link answers with every supported version and echoes the caller's."""
    proc = _in_chroot(chroot, f"CNI_COMMAND=VERSION /bin/{name}", stdin='{"cniVersion":"0.4.0"}')
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"cniVersion": "0.4.0", "supportedVersions": VERSIONS}


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("multiplane-host-local", "multiplane-host-local"),
        ("multiplane macvlan", "multiplane-macvlan"),
        ("multiplane-macvlan", "multiplane-macvlan"),
    ],
)
def test_personality_by_link_and_by_subcommand(chroot: Path, how: str, expected: str) -> None:
    """Run without CNI_COMMAND, each name prints its own about text: argv[0] survives the static loader."""
    proc = _in_chroot(chroot, f"/bin/{how}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith(f"CNI {expected} plugin"), proc.stderr


def test_hard_link_name_is_honoured(chroot: Path) -> None:
    """A hard link named multiplane-host-local is host-local, like a symlink."""
    (chroot / "bin" / "multiplane-host-local").unlink()
    os.link(chroot / "bin" / "multiplane", chroot / "bin" / "multiplane-host-local")
    proc = _in_chroot(chroot, "/bin/multiplane-host-local")
    assert proc.stderr.startswith("CNI multiplane-host-local plugin"), proc.stderr


def test_host_local_add_check_del_in_the_chroot(chroot: Path) -> None:
    """host-local ADD, CHECK and DEL run inside the chroot with an empty environment and write the reference format."""
    conf = json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "mp-pk",
            "type": "x",
            "ipam": {"type": "host-local", "dataDir": "/data", "subnet": "10.9.0.0/24"},
        }
    )
    env = "CNI_CONTAINERID=c1 CNI_NETNS=/x CNI_IFNAME=eth0 CNI_PATH=/bin"
    add = _in_chroot(chroot, f"{env} CNI_COMMAND=ADD /bin/multiplane-host-local", stdin=conf)
    assert add.returncode == 0, add.stdout + add.stderr
    assert json.loads(add.stdout)["ips"][0]["address"] == "10.9.0.2/24"
    assert (chroot / "data" / "mp-pk" / "10.9.0.2").read_bytes() == b"c1\r\neth0"
    assert _in_chroot(chroot, f"{env} CNI_COMMAND=CHECK /bin/multiplane-host-local", stdin=conf).returncode == 0
    assert _in_chroot(chroot, f"{env} CNI_COMMAND=DEL /bin/multiplane-host-local", stdin=conf).returncode == 0
    assert not (chroot / "data" / "mp-pk" / "10.9.0.2").exists()


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"mp-pk{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_macvlan_and_meta_run_from_the_chroot(chroot: Path, netns: str) -> None:
    """The meta-plugin, its in-process macvlan and host-local all work from the chroot against the host kernel."""
    master = f"mp-pkm{os.getpid()}"
    subprocess.run(["ip", "link", "add", master, "type", "veth", "peer", "name", f"{master}p"], check=True)
    try:
        subprocess.run(["ip", "link", "set", master, "up"], check=True)
        (chroot / "etc" / "net.d").mkdir()
        cluster = {
            "cniVersion": "1.0.0",
            "name": "mp-cl",
            "type": "macvlan",
            "master": master,
            "ipam": {"type": "host-local", "dataDir": "/data", "subnet": "10.31.0.0/24"},
        }
        (chroot / "etc" / "net.d" / "10-cl.conf").write_text(json.dumps(cluster))
        (chroot / "etc" / "nads").mkdir()
        nad = {
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": "mp-second"},
            "spec": {
                "config": json.dumps(
                    {
                        **cluster,
                        "name": "mp-second",
                        "mode": "private",
                        "ipam": {**cluster["ipam"], "subnet": "10.32.0.0/24"},
                    }
                )
            },
        }
        (chroot / "etc" / "nads" / "n.json").write_text(json.dumps(nad))
        meta = {
            "cniVersion": "1.0.0",
            "name": "mp-meta",
            "type": "multiplane",
            "clusterNetwork": "/etc/net.d/10-cl.conf",
            "cniDir": "/data/cni",
            "binDir": "/bin",
            "localNADDir": "/etc/nads",
        }
        env = (
            f"CNI_CONTAINERID=c1 CNI_NETNS=/run/netns/{netns} CNI_IFNAME=eth0 CNI_PATH=/bin "
            "CNI_ARGS='IgnoreUnknown=1;K8S_POD_NAMESPACE=mp;K8S_POD_NAME=p;MULTIPLANE_NETWORKS=mp-second'"
        )
        add = _in_chroot(chroot, f"{env} CNI_COMMAND=ADD /bin/multiplane", stdin=json.dumps(meta))
        assert add.returncode == 0, add.stdout + add.stderr
        links = {
            link["ifname"]: link
            for link in json.loads(
                subprocess.run(
                    ["ip", "-n", netns, "-j", "-d", "addr"], capture_output=True, text=True, check=True
                ).stdout
            )
        }
        assert links["eth0"]["linkinfo"]["info_data"]["mode"] == "bridge"
        assert links["net1"]["linkinfo"]["info_data"]["mode"] == "private"
        assert [a["local"] for a in links["net1"]["addr_info"] if a["family"] == "inet"] == ["10.32.0.2"]
        delete = _in_chroot(chroot, f"{env} CNI_COMMAND=DEL /bin/multiplane", stdin=json.dumps(meta))
        assert delete.returncode == 0, delete.stdout + delete.stderr
        remaining = subprocess.run(["ip", "-n", netns, "-o", "link"], capture_output=True, text=True, check=True).stdout
        assert "eth0" not in remaining and "net1" not in remaining
    finally:
        subprocess.run(["ip", "link", "del", master], check=False)


def test_runs_with_noexec_tmp_and_no_tmpdir(binary: Path) -> None:
    """With /tmp mounted noexec and an empty environment the file still starts, and leaves no unpack in progress."""
    # The binary must itself live outside /tmp (the checkout may be under /tmp): use our state dir.
    home = Path(f"/var/lib/cni/multiplane/mp-test-{os.getpid()}")
    home.mkdir(parents=True)
    try:
        shutil.copy(binary, home / "multiplane")
        before = _unpack_leftovers()
        script = f'mount -t tmpfs -o noexec tmpfs /tmp && echo "{{}}" | env -i CNI_COMMAND=VERSION {home}/multiplane'
        proc = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["supportedVersions"] == VERSIONS
        assert _unpack_leftovers() <= before
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_fifty_concurrent_invocations(binary: Path, tmp_path: Path) -> None:
    """50 simultaneous host-local ADDs through the binary all succeed with distinct addresses and leave no unpack dirs."""
    link_dir = tmp_path / "mp-bin"
    link_dir.mkdir()
    (link_dir / "multiplane-host-local").symlink_to(binary)
    conf = json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "mp-conc",
            "type": "x",
            "ipam": {"type": "host-local", "dataDir": str(tmp_path / "mp-data"), "subnet": "10.33.0.0/24"},
        }
    ).encode()
    before = _unpack_leftovers()

    def add(i: int) -> subprocess.CompletedProcess[bytes]:
        env = {
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": f"c{i}",
            "CNI_NETNS": "/x",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(link_dir),
        }
        return subprocess.run(
            [str(link_dir / "multiplane-host-local")],
            input=conf,
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(add, range(50)))
    assert all(r.returncode == 0 for r in results), [r.stdout for r in results if r.returncode]
    addresses = {json.loads(r.stdout)["ips"][0]["address"] for r in results}
    assert len(addresses) == 50
    assert _unpack_leftovers() <= before


def test_integration_scenarios_through_the_binary(binary: Path) -> None:
    """The macvlan and meta-plugin integration suites pass with every plugin link pointing at dist/multiplane."""
    suites = [
        "tests/integration/test_macvlan.py",
        "tests/integration/test_macvlan_failures.py",
        "tests/integration/test_meta.py",
    ]
    env = dict(os.environ, MULTIPLANE_BINARY=str(binary))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *suites],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_the_readme_demo_runs_and_cleans_up(binary: Path) -> None:
    """`make demo`'s script plays the seed scenario successfully, well within 3 minutes, and leaves no namespace.

    Part two (three nodes, cluster-wide IPAM over etcd): host-local gives two nodes' pods the same address; the
    cluster IPAM gives the three nodes' pods three addresses of the seed's range, each inside a block that
    `multiplane ipam show` lists for that pod's node; the pods ping each other across nodes; after DEL no
    node's record holds an address; etcd is stopped and its data gone.
    """
    import ipaddress
    import re
    import time

    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "packaging" / "demo" / "demo_seed.py")],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert time.monotonic() - started < 180
    assert "pod web-2 -> pod web-1 (192.168.174.200): reachable" in proc.stdout
    assert "mp-demo" not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout

    part_two = proc.stdout[proc.stdout.index("Part two: three nodes") :]
    twice = re.search(r"host-local: web-1 on mp-demo-node1 got ([\d.]+), web-2 on mp-demo-node2 got ([\d.]+)", part_two)
    assert twice is not None and twice.group(1) == twice.group(2), part_two
    added = {node: ip for _pod, node, ip in re.findall(r"ADD (web-\d) on (mp-demo-node\d): net1 ([\d.]+)", part_two)}
    assert sorted(added) == ["mp-demo-node1", "mp-demo-node2", "mp-demo-node3"], part_two
    assert len(set(added.values())) == 3, added
    seed_range = (ipaddress.ip_address("192.168.174.200"), ipaddress.ip_address("192.168.174.216"))
    assert all(seed_range[0] <= ipaddress.ip_address(ip) <= seed_range[1] for ip in added.values()), added
    pinged = re.findall(r"-> pod web-\d \((mp-demo-node\d), ([\d.]+)\): reachable", part_two)
    assert sorted(pinged) == sorted(added.items()), part_two
    shown = part_two[part_two.index("Who holds what") : part_two.index("Teardown")]
    blocks = re.findall(r"block\s+(\S+)\s+node (mp-demo-node\d)", shown)
    for node, ip in added.items():
        owned = [ipaddress.ip_network(b) for b, owner in blocks if owner == node]
        assert any(ipaddress.ip_address(ip) in b for b in owned), (node, ip, shown)
    for node in added:
        assert f"{node}'s record holds: no address" in part_two, part_two
    assert not [d for d in os.listdir("/dev/shm") if d.startswith("mp-demo-etcd-")]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                assert b"mp-demo-etcd-" not in fh.read(), f"etcd {pid} still runs"
        except OSError:
            continue


def test_binary_installs_itself_into_a_node_root(binary: Path, tmp_path: Path) -> None:
    """`multiplane install` from the self-contained file lays its runtime down, installs the launcher, links its
    names and wraps the primary config; uninstall removes all of it."""
    root = tmp_path / "mp-node"
    (root / "etc" / "cni" / "net.d").mkdir(parents=True)
    (root / "opt" / "cni" / "bin").mkdir(parents=True)
    primary = {
        "cniVersion": "0.4.0",
        "name": "mp-flannel",
        "plugins": [{"type": "flannel", "capabilities": {"portMappings": True}}],
    }
    (root / "etc" / "cni" / "net.d" / "10-flannel.conflist").write_text(json.dumps(primary))
    env = {"PATH": "/usr/bin:/bin"}
    args = [str(binary), "install", "--root", str(root), "--no-kubeconfig", "--wait-seconds", "2"]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from multiplane.runtime import payload

    launcher, build, entries = payload.read(str(binary))
    installed = root / "opt" / "cni" / "bin" / "multiplane"
    assert installed.read_bytes() == launcher  # the launcher only: the tree is laid down beside it
    runtime = root / "opt" / "cni" / "bin" / ".multiplane"
    assert os.readlink(runtime / "current") == build
    tree = runtime / build
    assert sorted(os.listdir(runtime)) == sorted(["current", build])
    for e in entries:
        assert (tree / e.path).read_bytes() == e.data, e.path
    for name in NAMES[1:]:
        assert os.path.realpath(root / "opt" / "cni" / "bin" / name) == str(installed)
    conf = json.loads((root / "etc" / "cni" / "net.d" / "00-multiplane.conf").read_text())
    assert (conf["type"], conf["cniVersion"], conf["clusterNetwork"]) == (
        "multiplane",
        "0.4.0",
        "/etc/cni/net.d/10-flannel.conflist",
    )
    assert conf["capabilities"] == {"portMappings": True}
    out = subprocess.run([str(installed), "--version"], capture_output=True, text=True, check=False)
    assert out.stdout.startswith("multiplane ")
    proc = subprocess.run(
        [str(binary), "uninstall", "--root", str(root)], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(root / "opt" / "cni" / "bin")) == []
    assert sorted(os.listdir(root / "etc" / "cni" / "net.d")) == ["10-flannel.conflist"]
