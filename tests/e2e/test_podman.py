"""podman 4.3 (CNI backend, runc) runs the built dist/multiplane: the way a podman user would attach containers.

Each test gets a LAN (a veth master in the root namespace, its peer in a LAN host namespace
holding 10.66.0.1, 10.67.0.1 and 10.68.0.1) and a private podman (tests/e2e/podman_harness.py)
whose cni_plugin_dirs start with links to dist/multiplane under its three names. Containers
are a busybox image made by tests/e2e/images.py and loaded with `podman load`. Assertions
are on what the container sees (`ip`, `ping`), on the kernel (the link podman's container
got, read through its network namespace), on podman's own view (`podman inspect`), and on
disk (host-local reservations, the meta-plugin's cache and network-status files, libcni's
result cache); after every container exits nothing may remain, and the harness fails the
test if it had to force anything away.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.images import busybox_oci_tar
from tests.e2e.podman_harness import Podman, PodmanError, Running
from tests.topology import Topology, ip_json

pytestmark = pytest.mark.root

IMAGE = "localhost/mp-bb:latest"
LAN = ("10.66.0.1", "10.67.0.1", "10.68.0.1")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def image_tar(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A busybox OCI archive (sh, sleep, ip, ping) that `podman load` names localhost/mp-bb:latest."""
    try:
        return busybox_oci_tar(tmp_path_factory.mktemp("mp-podman-image") / "mp-bb.tar", cmd=("/bin/sh",), name=IMAGE)
    except FileNotFoundError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def lan(tmp_path: Path) -> Iterator[Topology]:
    t = Topology(tmp_path / "mp-topo", pods=0, lan_addrs=tuple(f"{a}/24" for a in LAN))
    try:
        yield t
    finally:
        t.close()


@pytest.fixture
def podman(lan: Topology, multiplane_binary: Path, image_tar: str, tmp_path: Path) -> Iterator[Podman]:
    """A private podman whose plugins are dist/multiplane; fails (never skips) when podman cannot run here."""
    p = Podman(tmp_path / "mp-podman", multiplane_binary)
    try:
        p.start()
    except PodmanError as exc:
        pytest.fail(f"podman cannot run on this machine: {exc}")
    try:
        assert p.load_image(image_tar) == IMAGE
        yield p
    finally:
        forced = p.close()
    assert forced == [], f"the podman harness had to force its clean-up: {forced}"


# --------------------------------------------------------------------------- helpers


def macvlan(
    name: str | None,
    master: str,
    ipam_dir: Path,
    ranges: list[list[dict[str, str]]],
    *,
    plugin_type: str = "multiplane-macvlan",
    ips_capability: bool = True,
) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "type": plugin_type,
        "master": master,
        "mode": "bridge",
        "ipam": {"type": "host-local", "dataDir": str(ipam_dir), "ranges": ranges},
    }
    if name:
        conf["name"] = name
    if ips_capability:
        conf["capabilities"] = {"ips": True}
    return conf


def pool(prefix: str, start: int = 10, end: int = 50) -> list[dict[str, str]]:
    return [{"subnet": f"{prefix}.0/24", "rangeStart": f"{prefix}.{start}", "rangeEnd": f"{prefix}.{end}"}]


def conflist(name: str, *plugins: dict[str, Any]) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": name, "plugins": list(plugins)}


def reservations(ipam_dir: Path) -> list[str]:
    """host-local's reservation files (`<net>/<ip>`) under a dataDir."""
    out = []
    for f in sorted(ipam_dir.rglob("*")) if ipam_dir.exists() else []:
        try:
            ipaddress.ip_address(f.name)
        except ValueError:
            continue
        out.append(f"{f.parent.name}/{f.name}")
    return out


def pings(*targets: str) -> str:
    """Shell for the container: ping each target (up to 3 tries while neighbours resolve), print PING-OK."""
    return "; ".join(
        f"for i in 1 2 3; do ping -c1 -W2 {t} >/dev/null 2>&1 && {{ echo PING-OK {t}; break; }}; done" for t in targets
    )


def inet(output: str) -> dict[str, list[str]]:
    """`ip -4 -o addr` lines → {ifname: [address/prefix, …]}."""
    out: dict[str, list[str]] = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[2] == "inet":
            out.setdefault(parts[1], []).append(parts[3])
    return out


def container_links(r: Running) -> dict[str, dict[str, Any]]:
    """The container's links as the kernel reports them (`ip -d -j link` in its network namespace)."""
    proc = subprocess.run(
        ["nsenter", f"--net=/proc/{r.pid}/ns/net", "ip", "-d", "-j", "link", "show"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {link["ifname"]: link for link in json.loads(proc.stdout)}


def assert_macvlan_on(link: dict[str, Any], master: str) -> None:
    info = link.get("linkinfo", {})
    assert info.get("info_kind") == "macvlan", link
    assert info.get("info_data", {}).get("mode") == "bridge", link
    master_index = ip_json("link", "show", master)[0]["ifindex"]
    assert link.get("link_index") == master_index, f"eth0 is not a child of {master}: {link}"


def assert_clean(p: Podman, ipam_dir: Path, state_dir: Path | None = None) -> None:
    """After the containers exited: no container, netns, reservation, libcni cache or meta-plugin state."""
    assert p.containers() == []
    assert p.netns_files() == []
    assert reservations(ipam_dir) == []
    cache = p.libcni_cache
    assert not cache.exists() or list(cache.iterdir()) == []
    if state_dir is not None and state_dir.exists():
        left = [str(f.relative_to(state_dir)) for f in state_dir.rglob("*") if f.is_file()]
        assert left == [], f"meta-plugin state left: {left}"


def run_ok(proc: subprocess.CompletedProcess[str], what: str) -> str:
    assert proc.returncode == 0, f"{what} failed (rc {proc.returncode}):\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc.stdout


# --------------------------------------------------------------------------- multiplane-macvlan


def test_macvlan_network_gives_the_container_a_lan_interface(podman: Podman, lan: Topology, tmp_path: Path) -> None:
    """`podman run --network <multiplane-macvlan conflist>`: eth0 is a bridge-mode macvlan of the master with
    host-local's first address, the LAN host answers, and nothing is left once the container exits."""
    ipam = tmp_path / "mp-ipam"
    net = podman.add_network(conflist("mp-pmv", macvlan(None, lan.master, ipam, [pool("10.66.0")])))
    listed = run_ok(podman.podman("network", "ls", "--format", "{{.Name}} {{.Driver}}"), "network ls")
    assert "mp-pmv multiplane-macvlan" in listed.splitlines()

    with podman.running(IMAGE, f"ip -4 -o addr show eth0; {pings(LAN[0])}", network=net) as r:
        assert inet(r.output) == {"eth0": ["10.66.0.10/24"]}, r.output
        assert f"PING-OK {LAN[0]}" in r.output, r.output
        links = container_links(r)
        assert sorted(links) == ["eth0", "lo"]
        assert_macvlan_on(links["eth0"], lan.master)
        assert reservations(ipam) == ["mp-pmv/10.66.0.10"]
        inspect = json.loads(run_ok(podman.podman("container", "inspect", r.name), "inspect"))[0]
        assert inspect["NetworkSettings"]["Networks"]["mp-pmv"]["IPAddress"] == "10.66.0.10"
        assert inspect["NetworkSettings"]["Networks"]["mp-pmv"]["MacAddress"] == links["eth0"]["address"]
        assert r.finish() == 0, r.stderr

    assert_clean(podman, ipam)


def test_ip_flag_reaches_host_local(podman: Podman, lan: Topology, tmp_path: Path) -> None:
    """`--ip` (podman passes one address as CNI_ARGS IP=): the container has exactly that address, host-local's
    reservation file names the container while it runs, and is gone once it exits."""
    ipam = tmp_path / "mp-ipam"
    net = podman.add_network(conflist("mp-pip", macvlan(None, lan.master, ipam, [pool("10.66.0")])))

    with podman.running(
        IMAGE, f"ip -4 -o addr show eth0; {pings(LAN[0])}", network=net, options=["--ip", "10.66.0.33"]
    ) as r:
        assert inet(r.output) == {"eth0": ["10.66.0.33/24"]}, r.output
        assert f"PING-OK {LAN[0]}" in r.output, r.output
        assert reservations(ipam) == ["mp-pip/10.66.0.33"]
        owner = (ipam / "mp-pip" / "10.66.0.33").read_text().split()
        assert owner == [r.id, "eth0"]
        assert r.finish() == 0, r.stderr

    assert_clean(podman, ipam)


def test_network_ip_options_arrive_as_runtime_config_ips(podman: Podman, lan: Topology, tmp_path: Path) -> None:
    """Two addresses (`--network net:ip=A,ip=B`) reach host-local through runtimeConfig.ips (capability `ips`):
    eth0 holds both, one per range set, and both LAN addresses answer."""
    ipam = tmp_path / "mp-ipam"
    net = podman.add_network(conflist("mp-pips", macvlan(None, lan.master, ipam, [pool("10.66.0"), pool("10.67.0")])))
    proc = podman.run(
        IMAGE, f"ip -4 -o addr show eth0; {pings(LAN[0], LAN[1])}", network=f"{net}:ip=10.66.0.34,ip=10.67.0.34"
    )
    out = run_ok(proc, "podman run")
    assert inet(out) == {"eth0": ["10.66.0.34/24", "10.67.0.34/24"]}, out
    assert f"PING-OK {LAN[0]}" in out and f"PING-OK {LAN[1]}" in out, out
    assert_clean(podman, ipam)


def test_a_failed_add_is_reported_by_podman_and_leaves_nothing(podman: Podman, lan: Topology, tmp_path: Path) -> None:
    """A master that does not exist: `podman run` fails with multiplane-macvlan's message, and no container,
    namespace or reservation remains."""
    ipam = tmp_path / "mp-ipam"
    missing = f"mp-no{podman.tag}"
    net = podman.add_network(conflist("mp-pbad", macvlan(None, missing, ipam, [pool("10.66.0")])))
    proc = podman.run(IMAGE, "true", network=net)
    assert proc.returncode != 0, proc.stdout
    assert f'failed to find master interface "{missing}"' in proc.stderr, proc.stderr
    assert_clean(podman, ipam)


# --------------------------------------------------------------------------- the meta-plugin


class MetaNet:
    """A podman network of type `multiplane`: cluster network mp-cluster (10.66), default network mp-second
    (10.67, a CNI file in confDir), NAD mp-third (10.68) in localNADDir, pod manifests in localPodDir."""

    def __init__(self, podman: Podman, lan: Topology, root: Path, *, name: str = "mp-pmeta", **extra: Any) -> None:
        self.ipam = root / "mp-ipam"
        self.conf_dir = root / "mp-confd"
        self.state = root / "mp-state"
        self.nad_dir = root / "mp-nads"
        self.pod_dir = root / "mp-pods"
        for d in (self.conf_dir, self.nad_dir, self.pod_dir):
            d.mkdir(parents=True)
        self.cluster_file = self.conf_dir / "10-mp-cluster.conflist"
        self.cluster_file.write_text(
            json.dumps(conflist("mp-cluster", macvlan(None, lan.master, self.ipam, [pool("10.66.0")])))
        )
        second = macvlan("mp-second", lan.master, self.ipam, [pool("10.67.0")], ips_capability=False)
        (self.conf_dir / "20-mp-second.conf").write_text(json.dumps(second))
        third = macvlan(None, lan.master, self.ipam, [pool("10.68.0")], ips_capability=False)
        (self.nad_dir / "mp-third.yaml").write_text(
            textwrap.dedent(
                f"""\
                apiVersion: k8s.cni.cncf.io/v1
                kind: NetworkAttachmentDefinition
                metadata:
                  name: mp-third
                spec:
                  config: '{json.dumps(third)}'
                """
            )
        )
        meta: dict[str, Any] = {
            "type": "multiplane",
            "clusterNetwork": str(self.cluster_file),
            "defaultNetworks": ["mp-second"],
            "confDir": str(self.conf_dir),
            "cniDir": str(self.state),
            "localNADDir": str(self.nad_dir),
            "localPodDir": str(self.pod_dir),
            "logFile": str(root / "mp-multiplane.log"),
            "logLevel": "verbose",
            **extra,
        }
        self.name = podman.add_network(conflist(name, meta))

    def annotate(self, namespace: str, pod: str, networks: str) -> None:
        (self.pod_dir / namespace).mkdir(exist_ok=True)
        (self.pod_dir / namespace / f"{pod}.yaml").write_text(
            textwrap.dedent(
                f"""\
                apiVersion: v1
                kind: Pod
                metadata:
                  name: {pod}
                  namespace: {namespace}
                  annotations:
                    k8s.v1.cni.cncf.io/networks: {networks}
                """
            )
        )


def test_meta_plugin_gives_eth0_and_the_default_network(podman: Podman, lan: Topology, tmp_path: Path) -> None:
    """A `multiplane` network: every container gets the cluster network as eth0 and the default network as
    net1 (both macvlans of the master), both carry traffic, podman sees the cluster network's address, the
    network-status names both, and the delegate cache and status are gone after the container exits."""
    m = MetaNet(podman, lan, tmp_path)
    with podman.running(IMAGE, f"ip -4 -o addr; {pings(LAN[0], LAN[1])}", network=m.name) as r:
        addrs = inet(r.output)
        assert addrs == {"lo": ["127.0.0.1/8"], "eth0": ["10.66.0.10/24"], "net1": ["10.67.0.10/24"]}, r.output
        assert f"PING-OK {LAN[0]}" in r.output and f"PING-OK {LAN[1]}" in r.output, r.output
        links = container_links(r)
        assert sorted(links) == ["eth0", "lo", "net1"]
        assert_macvlan_on(links["eth0"], lan.master)
        assert_macvlan_on(links["net1"], lan.master)
        assert reservations(m.ipam) == ["mp-cluster/10.66.0.10", "mp-second/10.67.0.10"]

        inspect = json.loads(run_ok(podman.podman("container", "inspect", r.name), "inspect"))[0]
        assert inspect["NetworkSettings"]["Networks"][m.name]["IPAddress"] == "10.66.0.10"

        cache = json.loads((m.state / r.id).read_text())
        assert [(d["name"], d["ifname"]) for d in cache["delegates"]] == [("mp-cluster", "eth0"), ("mp-second", "net1")]
        status = json.loads((m.state / "status" / f"{r.id}.json").read_text())
        assert [(e["name"], e["interface"], e["ips"]) for e in status] == [
            ("mp-cluster", "eth0", ["10.66.0.10"]),
            ("mp-second", "net1", ["10.67.0.10"]),
        ]
        assert [e["mac"] for e in status] == [links["eth0"]["address"], links["net1"]["address"]]
        assert r.finish() == 0, r.stderr

    assert_clean(podman, m.ipam, m.state)


def test_meta_plugin_reads_the_pod_manifest_named_by_podman_cni_args(
    podman: Podman, lan: Topology, tmp_path: Path
) -> None:
    """podman passes K8S_POD_NAME=<container name> and hands its own CNI_ARGS on: with K8S_POD_NAMESPACE there,
    the local pod manifest's networks annotation adds mp-third (with its own interface name) after net1."""
    m = MetaNet(podman, lan, tmp_path)
    name = podman.new_name("web")
    m.annotate("mp-ns", name, '\'[{"name": "mp-third", "interface": "lan3"}]\'')
    proc = podman.run(
        IMAGE,
        f"ip -4 -o addr; {pings(LAN[0], LAN[1], LAN[2])}",
        network=m.name,
        name=name,
        cni_args="K8S_POD_NAMESPACE=mp-ns",
    )
    out = run_ok(proc, "podman run")
    assert inet(out) == {
        "lo": ["127.0.0.1/8"],
        "eth0": ["10.66.0.10/24"],
        "net1": ["10.67.0.10/24"],
        "lan3": ["10.68.0.10/24"],
    }, out
    assert all(f"PING-OK {a}" in out for a in LAN), out
    status_log = (tmp_path / "mp-multiplane.log").read_text()
    assert '"name": "mp-ns/mp-third"' in status_log
    assert_clean(podman, m.ipam, m.state)


@pytest.mark.parametrize("flag", ["--ip", "--mac-address"])
def test_meta_plugin_runtime_ip_and_mac_go_to_the_cluster_network_only(
    podman: Podman, lan: Topology, tmp_path: Path, flag: str
) -> None:
    """`--ip` / `--mac-address` on a `multiplane` network (podman sends them as CNI_ARGS IP= / MAC=) are the
    cluster network's (eth0); the default network (net1) gets its own pool's address and its own MAC."""
    m = MetaNet(podman, lan, tmp_path, name="mp-pmetaip", capabilities={"ips": True, "mac": True})
    value = "10.66.0.40" if flag == "--ip" else "02:66:00:00:00:21"
    proc = podman.run(IMAGE, "ip -4 -o addr; ip -o link", network=m.name, options=[flag, value])
    out = run_ok(proc, "podman run")
    want = {"lo": ["127.0.0.1/8"], "eth0": ["10.66.0.10/24"], "net1": ["10.67.0.10/24"]}
    if flag == "--ip":
        want["eth0"] = ["10.66.0.40/24"]
    assert inet(out) == want, out
    macs = {
        line.split(":")[1].strip().split("@")[0]: line.split("link/ether ")[1].split()[0]
        for line in out.splitlines()
        if "link/ether " in line
    }
    if flag == "--mac-address":
        assert macs["eth0"] == value, out
    assert macs["net1"] != macs["eth0"], out
    assert_clean(podman, m.ipam, m.state)


def test_meta_plugin_failure_rolls_back_through_podman(podman: Podman, lan: Topology, tmp_path: Path) -> None:
    """The default network cannot attach (its master is missing): `podman run` fails naming that network, and
    the cluster network attached before it is undone (no reservation, cache or status remains)."""
    m = MetaNet(podman, lan, tmp_path)
    missing = f"mp-no{podman.tag}"
    bad = macvlan("mp-second", missing, m.ipam, [pool("10.67.0")], ips_capability=False)
    (m.conf_dir / "20-mp-second.conf").write_text(json.dumps(bad))
    proc = podman.run(IMAGE, "true", network=m.name)
    assert proc.returncode != 0, proc.stdout
    assert 'error adding container to network "mp-second"' in proc.stderr, proc.stderr
    assert f'failed to find master interface "{missing}"' in proc.stderr, proc.stderr
    assert_clean(podman, m.ipam, m.state)
