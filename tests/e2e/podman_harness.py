"""Podman 4.3 with its CNI network backend as a test runtime, run entirely from private directories (root only).

`Podman` writes its own ``containers.conf`` and ``storage.conf`` (passed through
``CONTAINERS_CONF`` / ``CONTAINERS_STORAGE_CONF``, so no global file is read or written):
the CNI backend, ``cni_plugin_dirs`` = a directory holding the plugin under test under its
three names, then Debian's ``/usr/lib/cni``; ``network_config_dir`` = a directory the test
fills with conflists; runc (crun refuses the hybrid cgroup layout of the test machines);
cgroupfs; the file events logger; ulimits the machines allow (no CAP_SYS_RESOURCE:
nofile 20000, nproc 32768); storage (overlay) and every state directory under the work
directory (the runroot under the private ``/run``, see below).

Podman still writes a few host paths that have no setting (``/var/lib/containers/cache``,
libcni's ``/var/lib/cni/results``, runc's ``/run/runc``, the pod network namespaces under
``/run/netns``). So every podman command runs inside one private mount namespace, held
open by a ``sleep`` started with ``unshare --mount --propagation private``, where ``/var``
and ``/run`` are overlays whose upper layers live in the work directory and ``/run/netns``
is a private tmpfs. Everything podman mounts (those overlays, the container root
filesystems, the network namespaces) exists only in that namespace and goes away with it.
The network (the macvlan master, the LAN) is the host's: mount namespaces do not touch it.

Podman hands its own ``CNI_ARGS`` environment variable on to the plugins (c/common
libnetwork/cni appends it after ``IgnoreUnknown=1;K8S_POD_NAME=<container name>``), so a
test can pass pod keys with ``cni_args=``. Containers run with ``--cgroup-parent
/mp-podman-<tag>``.

`Podman.close()` removes every container through podman (which runs the CNI DEL), kills
any podman, conmon, runc or container process that survived (found by our mount namespace
and our cgroup parent; never by name), removes the cgroups and the storage, and returns
what it had to force, so a test can fail on it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.e2e import procs

__all__ = ["PLUGIN_NAMES", "TOOLS", "Podman", "PodmanError", "Running", "missing_tools"]

REFERENCE_DIR = "/usr/lib/cni"
PLUGIN_NAMES = ("multiplane", "multiplane-macvlan", "multiplane-host-local")
TOOLS = ("podman", "runc", "conmon", "unshare", "nsenter")
ULIMITS = ("nofile=20000:20000", "nproc=32768:32768")
# Host paths podman (or runc, libcni) writes when nothing redirects them; all land in our overlays.
HOST_PATHS = ("/var/lib/containers", "/var/lib/cni/results", "/run/libpod", "/run/containers", "/run/runc")


class PodmanError(RuntimeError):
    pass


def missing_tools() -> list[str]:
    """The programs this harness needs that are not installed (Debian: podman, runc, conmon, util-linux)."""
    return [t for t in TOOLS if shutil.which(t) is None]


# ---- processes, namespaces, cgroups -------------------------------------------------------------


def _describe(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmd = "?"
    return f"{pid} {cmd[:120]}"


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` in *our* (the host's) mount namespace."""
    prefix = str(path)
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4].replace("\\040", " ")
            if target == prefix or target.startswith(prefix + "/"):
                out.append(target)
    return out


def _host_netns() -> set[str]:
    try:
        return {n for n in os.listdir("/run/netns") if n.startswith("netns-")}
    except OSError:
        return set()


# ---- a container kept running while the test looks at it ------------------------------------------


class Running:
    """A `podman run --rm` in the background whose script waits for the test's go-ahead (see Podman.running)."""

    def __init__(self, proc: subprocess.Popen[str], name: str, sync: Path) -> None:
        self.proc, self.name, self.sync = proc, name, sync
        self.output = ""  # what the script wrote to /mp-sync/out before waiting
        self.id = ""
        self.pid = 0
        self.stdout = self.stderr = ""
        self.returncode: int | None = None

    def finish(self, timeout: float = 60) -> int:
        """Let the script end, wait for `podman run --rm` (and so the CNI DEL) to finish; return its exit code."""
        (self.sync / "go").touch()
        self.stdout, self.stderr = self.proc.communicate(timeout=timeout)
        self.returncode = self.proc.returncode
        return self.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            (self.sync / "go").touch()
            try:
                self.proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()
        self.returncode = self.proc.returncode


# ---- podman -------------------------------------------------------------------------------------


class Podman:
    """One private podman; see the module docstring. Use as a context manager or call start()/close()."""

    def __init__(
        self,
        workdir: Path,
        binary: str | os.PathLike[str],
        *,
        storage_driver: str = "overlay",
        tag: str | None = None,
    ) -> None:
        self.tag = tag or uuid.uuid4().hex[:6]
        self.workdir = workdir
        self.binary = os.path.abspath(binary)
        self.storage_driver = storage_driver
        self.bin_dir = workdir / "cni-bin"
        self.net_dir = workdir / "net.d"
        self.conf = workdir / "containers.conf"
        self.storage_conf = workdir / "storage.conf"
        self.graphroot = workdir / "storage"
        # Inside our namespace /run is an overlay whose upper layer is in workdir, so this lands there too. It must
        # be short: with a runroot of ~80 characters (a pytest tmp_path) every `podman run --rm` hangs for 20 s
        # after the container exits before podman removes it (conmon's exit handling); ~30 characters are fine.
        self.runroot = Path(f"/run/mp-podman-{self.tag}")
        self.tmp_dir = workdir / "libpod-tmp"
        self.events_log = workdir / "events.log"
        self.overlays = {"/var": workdir / "var", "/run": workdir / "run"}
        self.cgroup_parent = f"/mp-podman-{self.tag}"
        self.holder: subprocess.Popen[bytes] | None = None
        self.mnt_ns: int | None = None
        self.forced: list[str] = []  # what close() had to remove or kill
        self._names = 0
        self._host_before: dict[str, bool] = {}
        self._netns_before: set[str] = set()

    # ---- configuration ----

    def containers_conf(self) -> str:
        def arr(items: Sequence[str]) -> str:
            return "[" + ", ".join(json.dumps(i) for i in items) + "]"

        return f"""\
[containers]
log_driver = "k8s-file"
# no CAP_SYS_RESOURCE on the test machines: podman's default rlimits (nofile 1048576) would fail in runc
default_ulimits = {arr(ULIMITS)}

[network]
network_backend = "cni"
cni_plugin_dirs = {arr([str(self.bin_dir), REFERENCE_DIR])}
network_config_dir = "{self.net_dir}"
default_network = "mp-podman-{self.tag}"
default_subnet = "10.89.250.0/24"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{self.events_log}"
# crun 1.8 refuses hybrid cgroups ("drop all controllers from cgroupv2"); runc works
runtime = "runc"
tmp_dir = "{self.tmp_dir}"
image_copy_tmp_dir = "{self.workdir / "image-tmp"}"
volume_path = "{self.workdir / "volumes"}"
"""

    def storage_conf_text(self) -> str:
        return f"""\
[storage]
driver = "{self.storage_driver}"
graphroot = "{self.graphroot}"
runroot = "{self.runroot}"
"""

    def env(self, cni_args: str | None = None) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CONTAINERS_", "CNI_", "REGISTRY_AUTH"))
            and k not in ("XDG_RUNTIME_DIR", "XDG_CONFIG_HOME")
        }
        env["CONTAINERS_CONF"] = str(self.conf)
        env["CONTAINERS_STORAGE_CONF"] = str(self.storage_conf)
        if cni_args is not None:
            env["CNI_ARGS"] = cni_args  # podman appends these pairs to every plugin's CNI_ARGS
        return env

    # ---- life cycle ----

    def __enter__(self) -> Podman:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        missing = missing_tools()
        if missing:
            raise PodmanError(f"missing {', '.join(missing)}: install Debian's podman, runc and util-linux")
        if not os.access(self.binary, os.X_OK):
            raise PodmanError(f"{self.binary} is missing: run `make binary`")
        self._host_before = {p: os.path.lexists(p) for p in (*HOST_PATHS, str(self.runroot))}
        self._netns_before = _host_netns()
        try:
            for d in (
                self.bin_dir,
                self.net_dir,
                self.graphroot,
                self.tmp_dir,
                self.workdir / "image-tmp",
            ):
                d.mkdir(parents=True, exist_ok=True)
            for name in PLUGIN_NAMES:
                (self.bin_dir / name).symlink_to(self.binary)
            self.conf.write_text(self.containers_conf())
            self.storage_conf.write_text(self.storage_conf_text())
            self._start_namespace()
            self.check()
        except Exception:
            self.close()
            raise

    def _start_namespace(self) -> None:
        own = procs.ns_inode(os.getpid())
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sleep", "infinity"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while True:
            ns = procs.ns_inode(self.holder.pid)
            if ns is not None and ns != own:
                self.mnt_ns = ns
                break
            if self.holder.poll() is not None:
                err = self.holder.stderr.read().decode(errors="replace") if self.holder.stderr else ""
                raise PodmanError(f"unshare --mount failed (rc {self.holder.returncode}): {err.strip()}")
            if time.monotonic() > deadline:
                raise PodmanError("the private mount namespace did not appear within 10 s")
            time.sleep(0.01)
        script = ["set -e"]
        for target, base in self.overlays.items():
            for sub in ("upper", "work"):
                (base / sub).mkdir(parents=True, exist_ok=True)
            script.append(
                f"mount -t overlay -o lowerdir={target},upperdir={base}/upper,workdir={base}/work mp-podman {target}"
            )
        script.append("mkdir -p /run/netns && mount -t tmpfs -o mode=0755 mp-podman-netns /run/netns")
        proc = subprocess.run(
            [*self._enter(), "sh", "-c", "\n".join(script)], capture_output=True, text=True, timeout=30, check=False
        )
        if proc.returncode != 0:
            raise PodmanError(f"cannot set up the private mounts: {proc.stderr.strip()}")

    def _enter(self) -> list[str]:
        assert self.holder is not None
        return ["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", "--"]

    def check(self) -> dict[str, Any]:
        """`podman info`: it must start, and use the CNI backend, runc and cgroupfs; returns the info."""
        proc = self.podman("info", "--format", "json", check=False, timeout=60)
        if proc.returncode != 0:
            raise PodmanError(f"podman cannot start here: {proc.stderr.strip() or proc.stdout.strip()}")
        info = json.loads(proc.stdout)
        host = info.get("host", {})
        got = (host.get("networkBackend"), host.get("ociRuntime", {}).get("name"), host.get("cgroupManager"))
        if got != ("cni", "runc", "cgroupfs"):
            raise PodmanError(f"podman ignored its configuration: backend/runtime/cgroups = {got}")
        return info

    # ---- commands ----

    def command(self, *args: str) -> list[str]:
        return [*self._enter(), "podman", *args]

    def podman(
        self, *args: str, timeout: float = 60, check: bool = True, cni_args: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run one podman command in our namespace; `check` raises PodmanError with its stderr on failure."""
        try:
            proc = subprocess.run(
                self.command(*args),
                capture_output=True,
                text=True,
                timeout=timeout,
                env=self.env(cni_args),
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PodmanError(f"podman {' '.join(args)}: no answer within {timeout} s") from exc
        if check and proc.returncode != 0:
            raise PodmanError(f"podman {' '.join(args)} failed (rc {proc.returncode}):\n{proc.stderr}{proc.stdout}")
        return proc

    def load_image(self, tarball: str | os.PathLike[str]) -> str:
        """`podman load` an OCI image-layout tarball (tests/e2e/images.py); returns the loaded name."""
        out = self.podman("load", "-i", os.fspath(tarball), timeout=120).stdout
        for line in out.splitlines():
            if line.startswith("Loaded image"):
                return line.split(":", 1)[1].strip()
        raise PodmanError(f"podman load named no image: {out}")

    def add_network(self, conflist: dict[str, Any]) -> str:
        """Write a conflist into network_config_dir (podman reads it on every command); returns its name."""
        name = str(conflist["name"])
        (self.net_dir / f"{name}.conflist").write_text(json.dumps(conflist, indent=2))
        return name

    def new_name(self, what: str = "c") -> str:
        self._names += 1
        return f"mp-{what}{self._names}-{self.tag}"

    def run_args(self, image: str, script: str, *, network: str, name: str, options: Sequence[str] = ()) -> list[str]:
        return [
            "run",
            "--rm",
            "--name",
            name,
            "--cgroup-parent",
            self.cgroup_parent,
            "--cap-add",
            "NET_RAW",  # busybox ping; Debian's containers.conf drops it
            "--network",
            network,
            *options,
            image,
            "sh",
            "-c",
            script,
        ]

    def run(
        self,
        image: str,
        script: str,
        *,
        network: str,
        options: Sequence[str] = (),
        cni_args: str | None = None,
        name: str | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """`podman run --rm … sh -c script` in the foreground; returns the completed process (not checked)."""
        args = self.run_args(image, script, network=network, name=name or self.new_name(), options=options)
        return self.podman(*args, timeout=timeout, check=False, cni_args=cni_args)

    @contextmanager
    def running(
        self,
        image: str,
        script: str,
        *,
        network: str,
        options: Sequence[str] = (),
        cni_args: str | None = None,
        name: str | None = None,
        timeout: float = 60,
    ) -> Iterator[Running]:
        """Start `podman run --rm` whose container runs `script` with stdout going to Running.output, then waits.

        Yields once the script has run (the container, its network and reservations are up);
        `Running.finish()` lets it exit. Leaving the block without finish() ends it too.
        """
        name = name or self.new_name()
        sync = self.workdir / "sync" / name
        sync.mkdir(parents=True)
        wrapped = f"( {script} ) > /mp-sync/out.tmp 2>&1; mv /mp-sync/out.tmp /mp-sync/out; " + (
            "while [ ! -e /mp-sync/go ]; do sleep 0.05; done"
        )
        args = self.run_args(image, wrapped, network=network, name=name, options=[*options, "-v", f"{sync}:/mp-sync"])
        proc = subprocess.Popen(
            self.command(*args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(cni_args),
        )
        r = Running(proc, name, sync)
        try:
            deadline = time.monotonic() + timeout
            while not (sync / "out").exists():
                if proc.poll() is not None:
                    out, err = proc.communicate()
                    raise PodmanError(f"podman run {name} ended early (rc {proc.returncode}):\n{err}{out}")
                if time.monotonic() > deadline:
                    raise PodmanError(f"podman run {name}: the container did not start within {timeout} s")
                time.sleep(0.05)
            r.output = (sync / "out").read_text()
            info = json.loads(self.podman("container", "inspect", name).stdout)[0]
            r.id, r.pid = info["Id"], int(info["State"]["Pid"])
            yield r
        finally:
            r.kill()

    # ---- what is there ----

    def containers(self) -> list[str]:
        return self.podman("ps", "-a", "-q").stdout.split()

    def netns_files(self) -> list[str]:
        """Network namespaces podman has made (in our namespace's private /run/netns)."""
        proc = subprocess.run([*self._enter(), "ls", "-A", "/run/netns"], capture_output=True, text=True, check=True)
        return proc.stdout.split()

    @property
    def libcni_cache(self) -> Path:
        """libcni's result cache as podman's CNI calls see it (/var/lib/cni/results, in our overlay)."""
        return self.overlays["/var"] / "upper" / "lib" / "cni" / "results"

    def processes(self) -> list[int]:
        """Every live process we started: in our mount namespace (podman, conmon) or our cgroup (containers)."""
        pids = set(procs.cgroup_pids(self.cgroup_parent))
        if self.mnt_ns is not None:
            pids |= {p for p in procs.pids() if procs.ns_inode(p) == self.mnt_ns}
        return sorted(p for p in pids if procs.alive(p) and p != os.getpid())

    # ---- teardown ----

    def close(self) -> list[str]:
        """Remove everything; return (and keep in self.forced) what had to be forced. Safe to call twice."""
        holder = self.holder
        if holder is not None and holder.poll() is None:
            try:
                left = self.containers()
                if left:
                    self.forced.append(f"containers still there: {left}")
                    self.podman("rm", "-a", "-f", "-t", "0", timeout=90, check=False)
            except PodmanError as exc:
                self.forced.append(f"podman cleanup failed: {exc}")
        # conmon and the `podman container cleanup` it starts can outlive `podman run --rm` by a moment
        deadline = time.monotonic() + 10
        while True:
            stray = [p for p in self.processes() if holder is None or p != holder.pid]
            if not stray or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if stray:
            self.forced.append("killed: " + "; ".join(_describe(p) for p in stray))
            procs.kill_and_wait(stray)
        if holder is not None:
            if holder.poll() is None:
                holder.kill()
            holder.communicate(timeout=10)
            self.holder = None
            self.mnt_ns = None  # freed now; its inode number may be reused by someone else's namespace
        late = self.processes()  # anything that escaped both the namespace and the cgroup scan
        if late:
            self.forced.append("killed late: " + "; ".join(_describe(p) for p in late))
            procs.kill_and_wait(late)
        failed = procs.remove_cgroups(self.cgroup_parent)
        if failed:
            self.forced.append(f"cgroups not removable: {failed}")
        for ns in sorted(_host_netns() - self._netns_before):
            self.forced.append(f"host netns /run/netns/{ns}")
            subprocess.run(["umount", "-l", f"/run/netns/{ns}"], capture_output=True, check=False)
            Path("/run/netns", ns).unlink(missing_ok=True)
        for path, existed in self._host_before.items():
            if not existed and os.path.lexists(path):
                self.forced.append(f"host path created: {path}")
                shutil.rmtree(path, ignore_errors=True)
        mounts = _mounts_under(self.workdir)
        if mounts:
            self.forced.append(f"mounts on the host: {mounts}")
            for m in sorted(mounts, key=len, reverse=True):
                subprocess.run(["umount", "-l", m], capture_output=True, check=False)
        for d in (self.graphroot, self.tmp_dir, *self.overlays.values()):
            shutil.rmtree(d, ignore_errors=True)
        return self.forced
