"""containerd's CRI plugin as a test runtime: a private daemon, a pause image from busybox, a small CRI client.

`Containerd` starts Debian's containerd (1.6) with its own socket, root and state under a
work directory. containerd 1.6 has no setting for two host paths it writes (the shim
sockets under ``/run/containerd/s/`` and libcni's result cache ``/var/lib/cni/results``), so
the daemon runs in a private mount namespace (``unshare --mount --propagation private``)
where ``/run`` and ``/var/lib`` are overlays whose upper layers live in the work directory.
Everything it mounts (the overlays, the pod network namespaces, the snapshots) exists only
in that namespace and goes away with it. A small Python parent (`REAPER`) holds that namespace
and is the child subreaper of containerd's shims: a shim daemonizes, and when it exits after
RemovePodSandbox it is reaped at once instead of lingering as a zombie under PID 1.

The CRI plugin uses one ``bin_dir`` (`cni_bin_dir` fills it: the plugin under test and
Debian's plugins, `loopback` included: go-cni always runs it) and one ``conf_dir``. It runs
the CNI plugins itself, with go-cni/libcni: the code path kubelet drives.

`Containerd.close()` removes every sandbox through the CRI, stops the daemon, kills any
shim or container process that survived (found by our socket address, our mount
namespace, our cgroup parent), removes the cgroups, and reports what it had to force, so a
test can fail on it. It never touches a process it did not start.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from cri_api.v1 import api_pb2 as cri
from cri_api.v1 import api_pb2_grpc as cri_grpc

from tests.e2e import procs

__all__ = ["CNI_TOOLS", "Containerd", "ContainerdError", "CriClient", "cni_bin_dir", "missing_tools"]

REFERENCE_DIR = "/usr/lib/cni"
CNI_TOOLS = ("containerd", "containerd-shim-runc-v2", "ctr", "runc", "unshare", "nsenter")
CRI_PLUGIN = "io.containerd.grpc.v1.cri"


# The namespace holder: forks the daemon, forwards SIGTERM/SIGINT to it, reaps every orphan
# (containerd's shims reparent here: PR_SET_CHILD_SUBREAPER), exits when no child is left.
REAPER = """\
import ctypes, os, signal, sys
if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
    sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed: errno %d" % ctypes.get_errno())
child = os.fork()
if child == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
def forward(sig, _frame):
    try:
        os.kill(child, sig)
    except ProcessLookupError:
        pass
signal.signal(signal.SIGTERM, forward)
signal.signal(signal.SIGINT, forward)
code = 0
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        break
    if pid == child:
        code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


class ContainerdError(RuntimeError):
    pass


def missing_tools() -> list[str]:
    """The programs this harness needs that are not installed (Debian: containerd, runc, util-linux)."""
    return [t for t in CNI_TOOLS if shutil.which(t) is None]


def cni_bin_dir(
    path: Path,
    binary: str | os.PathLike[str],
    names: Sequence[str] = ("multiplane", "multiplane-macvlan", "multiplane-host-local"),
    reference: Sequence[str] = ("bridge", "host-local", "loopback", "macvlan"),
) -> Path:
    """The CRI's one CNI bin dir: `binary` linked under `names`, Debian's `reference` plugins linked beside."""
    path.mkdir(parents=True, exist_ok=True)
    for name in names:
        (path / name).symlink_to(os.path.abspath(binary))
    for name in reference:
        src = os.path.join(REFERENCE_DIR, name)
        if not os.access(src, os.X_OK):
            raise ContainerdError(f"{src} is missing: install Debian's containernetworking-plugins")
        (path / name).symlink_to(src)
    return path


# ---- processes, namespaces, cgroups -------------------------------------------------------------


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


# ---- the CRI client -------------------------------------------------------------------------------


class CriClient:
    """RuntimeService over containerd's unix socket (CRI v1): the pod sandbox calls a kubelet makes."""

    def __init__(self, socket_path: str, timeout: float = 90) -> None:
        self.timeout = timeout
        self.channel = grpc.insecure_channel(f"unix://{socket_path}")
        self.runtime = cri_grpc.RuntimeServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def version(self, timeout: float | None = None) -> cri.VersionResponse:
        return self.runtime.Version(cri.VersionRequest(version="v1"), timeout=timeout or self.timeout)

    def run_pod_sandbox(
        self,
        name: str,
        namespace: str,
        uid: str,
        *,
        annotations: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        cgroup_parent: str = "",
        log_directory: str = "",
        attempt: int = 0,
    ) -> str:
        """RunPodSandbox (the CNI ADD happens inside it); returns the sandbox id, raises grpc.RpcError."""
        config = cri.PodSandboxConfig(
            metadata=cri.PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=attempt),
            hostname=name,
            log_directory=log_directory,
            labels=labels or {},
            annotations=annotations or {},
            linux=cri.LinuxPodSandboxConfig(
                cgroup_parent=cgroup_parent,
                security_context=cri.LinuxSandboxSecurityContext(
                    namespace_options=cri.NamespaceOption(network=cri.POD, pid=cri.CONTAINER, ipc=cri.POD)
                ),
            ),
        )
        resp = self.runtime.RunPodSandbox(cri.RunPodSandboxRequest(config=config), timeout=self.timeout)
        return resp.pod_sandbox_id

    def stop_pod_sandbox(self, sandbox_id: str) -> None:
        self.runtime.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=self.timeout)

    def remove_pod_sandbox(self, sandbox_id: str) -> None:
        self.runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=self.timeout)

    def pod_sandbox_status(self, sandbox_id: str, verbose: bool = True) -> tuple[cri.PodSandboxStatus, dict[str, Any]]:
        """The sandbox's status and (verbose) containerd's `info` JSON: pid, runtimeSpec, netns path, …"""
        resp = self.runtime.PodSandboxStatus(
            cri.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=verbose), timeout=self.timeout
        )
        info = json.loads(resp.info["info"]) if "info" in resp.info else {}
        return resp.status, info

    def list_pod_sandbox(self) -> list[cri.PodSandbox]:
        return list(self.runtime.ListPodSandbox(cri.ListPodSandboxRequest(), timeout=self.timeout).items)


def netns_path_of(info: dict[str, Any]) -> str:
    """The sandbox's network namespace path from PodSandboxStatus(verbose)'s info (its OCI spec)."""
    for ns in info.get("runtimeSpec", {}).get("linux", {}).get("namespaces", []):
        if ns.get("type") == "network" and ns.get("path"):
            return str(ns["path"])
    raise ContainerdError(f"no network namespace path in the sandbox info: {json.dumps(info)[:2000]}")


# ---- the daemon ---------------------------------------------------------------------------------


class Containerd:
    """One private containerd; see the module docstring. Use as a context manager or call start()/close()."""

    def __init__(
        self,
        workdir: Path,
        *,
        cni_bin_dir: Path,
        cni_conf_dir: Path,
        sandbox_image: str = "localhost/mp-pause:latest",
        tag: str | None = None,
    ) -> None:
        self.tag = tag or uuid.uuid4().hex[:6]
        self.workdir = workdir
        self.cni_bin_dir = cni_bin_dir
        self.cni_conf_dir = cni_conf_dir
        self.sandbox_image = sandbox_image
        self.root = workdir / "root"
        self.state = workdir / "state"
        self.socket = str(workdir / "containerd.sock")
        self.config = workdir / "config.toml"
        self.log = workdir / "containerd.log"
        self.overlays = {"/run": workdir / "run", "/var/lib": workdir / "varlib"}
        self.cgroup_parent = f"/mp-e2e-{self.tag}"
        self.proc: subprocess.Popen[bytes] | None = None  # the reaper, which holds our mount namespace
        self.pid = 0  # the reaper's pid: /proc/<pid>/ns/mnt is our mount namespace
        self.daemon_pid = 0  # containerd's own pid
        self.mnt_ns: int | None = None
        self.cri: CriClient | None = None
        self.forced: list[str] = []  # what close() had to kill or could not remove
        self.removed_at_close: list[str] = []  # sandboxes a (failed) test left, removed through the CRI

    # ---- configuration ----

    def config_toml(self) -> str:
        cri_table = f'plugins."{CRI_PLUGIN}"'
        return f"""\
version = 2
root = "{self.root}"
state = "{self.state}"
# snapshotters we do not use; aufs would even try `modprobe aufs`
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[debug]
  level = "debug"

[plugins."io.containerd.internal.v1.opt"]
  path = "{self.workdir / "opt"}"

[{cri_table}]
  sandbox_image = "{self.sandbox_image}"
  # no CAP_SYS_RESOURCE on the test machines: the sandbox's oom_score_adj -998 would fail
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # pod netns under <state>/{CRI_PLUGIN}/netns/cni-<uuid> (in our mount namespace), not /var/run/netns
  netns_mounts_under_state_dir = true
  [{cri_table}.cni]
    bin_dir = "{self.cni_bin_dir}"
    conf_dir = "{self.cni_conf_dir}"
    max_conf_num = 1
  [{cri_table}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri_table}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri_table}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{shutil.which("runc") or "runc"}"
"""

    @property
    def netns_dir(self) -> Path:
        return self.state / CRI_PLUGIN / "netns"

    @property
    def libcni_cache(self) -> Path:
        """libcni's result cache as containerd's CNI calls see it (/var/lib/cni/results, in our overlay)."""
        return self.overlays["/var/lib"] / "upper" / "cni" / "results"

    # ---- life cycle ----

    def __enter__(self) -> Containerd:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no containerd log)"

    def start(self, timeout: float = 60) -> None:
        """Start the daemon and wait until the CRI answers Version; ContainerdError (with the log) otherwise."""
        missing = missing_tools()
        if missing:
            raise ContainerdError(f"missing programs {missing}: install Debian's containerd and runc (apt)")
        for d in (self.root, self.state, self.workdir / "opt"):
            d.mkdir(parents=True, exist_ok=True)
        mounts = []
        for target, base in self.overlays.items():
            (base / "upper").mkdir(parents=True, exist_ok=True)
            (base / "work").mkdir(parents=True, exist_ok=True)
            mounts.append(
                f"mount -t overlay mp-e2e -o lowerdir={target},upperdir={base}/upper,workdir={base}/work {target}"
            )
        self.config.write_text(self.config_toml())
        script = " && ".join([*mounts, f'exec containerd --config "{self.config}"'])
        with open(self.log, "ab") as log:
            # unshare without --fork execs: the Popen pid is the reaper's, in the new mount namespace.
            self.proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", REAPER, "sh", "-c", script],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = self.proc.pid
        self.cri = CriClient(self.socket)
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            if self.proc.poll() is not None:
                raise ContainerdError(
                    f"containerd exited with {self.proc.returncode} while starting:\n{self.log_tail()}"
                )
            if os.path.exists(self.socket):
                try:
                    v = self.cri.version(timeout=2)
                    self.mnt_ns = procs.ns_inode(self.pid)
                    children = _children(self.pid)  # the reaper's one child is sh, which exec'd containerd
                    self.daemon_pid = next((c for c in children if _cmdline(c)[:1] == ["containerd"]), 0)
                    if not self.daemon_pid:
                        raise ContainerdError(f"containerd answers, but is not the reaper's child: {children}")
                    if v.runtime_api_version != "v1":
                        raise ContainerdError(f"containerd speaks CRI {v.runtime_api_version}, not v1")
                    return
                except grpc.RpcError as exc:
                    last = f"{exc.code()}: {exc.details()}"
            if time.monotonic() > deadline:
                raise ContainerdError(
                    f"containerd's CRI did not answer within {timeout:.0f} s ({last}):\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def _in_mount_ns(self, argv: Sequence[str]) -> list[str]:
        return ["nsenter", f"--mount=/proc/{self.pid}/ns/mnt", "--", *argv]

    def run(self, argv: Sequence[str], *, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command in containerd's mount namespace (where its mounts and the pod netns files are)."""
        proc = subprocess.run(self._in_mount_ns(argv), capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise ContainerdError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def ctr(self, *args: str, timeout: float = 120) -> str:
        return self.run(["ctr", "--address", self.socket, "-n", "k8s.io", *args], timeout=timeout).stdout

    def import_image(self, tar: str | os.PathLike[str]) -> None:
        """`ctr -n k8s.io images import`; the CRI then sees the image (its sandbox_image needs no pull)."""
        self.ctr("images", "import", os.fspath(tar))
        names = self.ctr("images", "ls", "-q").split()
        if self.sandbox_image not in names:
            raise ContainerdError(f"after import, {self.sandbox_image} is not among containerd's images: {names}")

    def netns_exec(self, netns: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run `argv` in the pod network namespace at `netns` (a path in containerd's mount namespace)."""
        return self.run(["nsenter", f"--net={netns}", "--", *argv], timeout=timeout, check=False)

    def netns_mounts(self) -> list[str]:
        """Pod netns mounts alive in containerd's mount namespace."""
        try:
            text = Path(f"/proc/{self.pid}/mountinfo").read_text()
        except OSError:
            return []
        return [line.split()[4] for line in text.splitlines() if line.split()[4].startswith(str(self.netns_dir))]

    # ---- tear-down ----

    def remove_all_sandboxes(self) -> list[str]:
        """Stop and remove every sandbox through the CRI (as kubelet would); return the ids that were left."""
        if self.cri is None or self.proc is None or self.proc.poll() is not None:
            return []
        left = []
        try:
            sandboxes = self.cri.list_pod_sandbox()
        except grpc.RpcError as exc:
            self.forced.append(f"ListPodSandbox failed: {exc.details()}")
            return []
        for sb in sandboxes:
            left.append(sb.id)
            for call in (self.cri.stop_pod_sandbox, self.cri.remove_pod_sandbox):
                try:
                    call(sb.id)
                except grpc.RpcError as exc:
                    self.forced.append(f"{call.__name__}({sb.id}): {exc.details()}")
        return left

    def workload_processes(self) -> list[int]:
        """Shims and container processes of ours that are alive (everything but the daemon and the reaper)."""
        return [p for p in self.our_processes() if p not in (self.pid, self.daemon_pid)]

    def our_processes(self) -> list[int]:
        """Processes we started that are still alive: in our mount namespace, our shims, our containers."""
        found = set(procs.cgroup_pids(self.cgroup_parent))
        for pid in procs.pids():
            if pid == os.getpid():
                continue
            if self.mnt_ns is not None and procs.ns_inode(pid) == self.mnt_ns:
                found.add(pid)
                continue
            argv = _cmdline(pid)
            if argv and "containerd-shim" in os.path.basename(argv[0]) and self.socket in argv:
                found.add(pid)
        return sorted(p for p in found if procs.alive(p))

    def close(self) -> None:
        """Remove sandboxes, stop containerd, kill what survived, drop the cgroups; `forced` lists the trouble.

        Safe to call more than once, and after a failed start().
        """
        self.removed_at_close = self.remove_all_sandboxes()
        if self.cri is not None:
            self.cri.close()
            self.cri = None
        if self.proc is not None and self.proc.poll() is None:
            # The reaper forwards SIGTERM to containerd and exits once containerd and every shim are gone.
            self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            while self.daemon_pid and procs.alive(self.daemon_pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                pass  # shims or containers outlived the daemon: killed below
        stray = [p for p in self.our_processes() if p != self.pid]
        if stray:
            self.forced.append(
                "processes left after containerd stopped (killed): "
                + "; ".join(f"{p} {' '.join(_cmdline(p))[:120]}" for p in stray)
            )
            procs.kill_and_wait(stray)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)  # it reaps what was just killed, then exits
            except subprocess.TimeoutExpired:
                self.forced.append("the namespace holder did not exit (killed)")
                self.proc.kill()
                self.proc.wait(timeout=10)
        failed = procs.remove_cgroups(self.cgroup_parent)
        if failed:
            self.forced.append(f"cgroups that could not be removed: {failed}")
