"""`multiplane install` / `multiplane uninstall`: put the runtime and its config on a node, or take them away.

Standard library only: it runs in the DaemonSet's init container from the self-contained
file, and by hand on nodes without a cluster. The runtime tree is laid down once per build
beside the CNI binaries and switched to atomically (multiplane.runtime.layout); the names
in the CNI bin dir are the small static launcher. Every file is replaced atomically
(temporary file, fsync, rename), so a runtime executing the old binary never meets
"text file busy" (multus #1221) and never reads a half-written or empty config (multus
#1155). The generated `00-multiplane.conf` never wraps itself (multus #1108): files named
`00-multiplane*` are never taken as the primary network, and a meta-plugin's config (ours,
or Multus's `multus` / `multus-shim`) is refused at once. While any Multus config is in the
config dir, Multus owns the node and install refuses; `--replace-multus` renames Multus's
config aside once ours is written (docs/decisions/0007-installing-next-to-multus.md).

Paths: `--root` prefixes every path given on the command line (a test root); `--host-prefix`
is where the node's root is mounted in the container (`/host`) and is stripped from the
paths written into files, because the runtime reads them on the node.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time

from multiplane.fsutil import fsync_dir, replace_with, sweep_temporaries, tmp_name, unlink_quietly, write_all
from multiplane.spec.gojson import field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    Say = Callable[[str], None]

__all__ = [
    "InstallError",
    "MetaPluginConfig",
    "MultusOwnsNode",
    "Options",
    "WrapsItself",
    "build_parser",
    "install",
    "main",
    "refresh_token",
    "uninstall",
]

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
CONF_NAME = "00-multiplane.conf"
NETWORK_NAME = "multiplane-cni-network"
BINARY = "multiplane"
KUBECONFIG_DIR = "multiplane.d"
KUBECONFIG_NAME = "multiplane.kubeconfig"
TOKEN_NAME = "token"
# The first line of every kubeconfig we write: uninstall removes only files carrying it.
KUBECONFIG_MARKER = "# written by multiplane install; removed by multiplane uninstall\n"
LOG_LEVELS = ("debug", "verbose", "error", "panic")
MULTUS_TYPES = ("multus", "multus-shim")
# What --replace-multus appends to Multus's config: a name no runtime reads (libcni reads
# .conf, .conflist and .json), in the same dir so the rename is atomic.
MULTUS_ASIDE = ".multiplane-bak"
MIGRATION_DOC = "docs/migrating-from-multus.md"


class InstallError(Exception):
    """The installation cannot go on; the message says what is wrong and what to do."""


class MetaPluginConfig(InstallError):
    """A meta-plugin's config stands where the cluster network must be: waiting will not help."""


class WrapsItself(MetaPluginConfig):
    """The candidate primary network is multiplane itself (multus #1108)."""


class MultusOwnsNode(MetaPluginConfig):
    """Multus's config is in the CNI config dir: both meta-plugins must never serve one node."""


class Options:
    """What to install where; paths are as given on the command line (before `root`)."""

    def __init__(
        self,
        *,
        source: str = "",
        cni_bin_dir: str = "/opt/cni/bin",
        cni_conf_dir: str = "/etc/cni/net.d",
        root: str = "",
        host_prefix: str = "",
        kubeconfig_out: str = "",
        kubeconfig: str = "",
        write_kubeconfig: bool = True,
        sa_dir: str = SERVICE_ACCOUNT_DIR,
        api_server: str = "",
        wait_seconds: float = 600.0,
        cni_version: str = "",
        meta: dict[str, object] | None = None,
        primary: str = "",
        replace_multus: bool = False,
    ) -> None:
        self.source = source
        self.cni_bin_dir = cni_bin_dir
        self.cni_conf_dir = cni_conf_dir
        self.root = root
        self.host_prefix = host_prefix.rstrip("/")
        self.kubeconfig_out = kubeconfig_out or os.path.join(cni_conf_dir, KUBECONFIG_DIR, KUBECONFIG_NAME)
        self.kubeconfig = kubeconfig
        self.write_kubeconfig = write_kubeconfig and not kubeconfig
        self.sa_dir = sa_dir
        self.api_server = api_server
        self.wait_seconds = wait_seconds
        self.cni_version = cni_version
        self.meta = dict(meta or {})
        self.primary = primary
        self.replace_multus = replace_multus

    def real(self, path: str) -> str:
        """Where `path` is on this machine's file system (under `root`)."""
        path = os.path.abspath(path)
        return os.path.join(self.root, path.lstrip("/")) if self.root else path

    def host(self, path: str) -> str:
        """How the node's runtime sees `path`: without the host prefix."""
        path = os.path.abspath(path)
        if not self.host_prefix:
            return path
        if path == self.host_prefix or path.startswith(self.host_prefix + "/"):
            return path[len(self.host_prefix) :] or "/"
        raise InstallError(f"{path} is not under --host-prefix {self.host_prefix}: the node could not find it there")

    @property
    def token_path(self) -> str:
        return os.path.join(os.path.dirname(self.kubeconfig_out), TOKEN_NAME)

    def plugin_links(self) -> list[str]:
        from multiplane.plugins import REGISTRY

        return sorted(name for name in REGISTRY if name != BINARY)


# ---- atomic file operations (multiplane.fsutil) ----------------------------------------------


def write_atomic(path: str, data: bytes, mode: int) -> bool:
    """Replace `path` with `data` unless it already holds exactly that; True when it was written."""
    if not data:
        raise InstallError(f"refusing to write an empty {path}")
    try:
        with open(path, "rb") as fh:
            same = fh.read() == data
        if same:
            if os.stat(path).st_mode & 0o7777 != mode:
                os.chmod(path, mode)
            return False
    except FileNotFoundError:
        pass
    replace_with(path, mode, lambda fd: write_all(fd, data))
    return True


def _link(target: str, path: str) -> bool:
    """Make `path` a symlink to `target` by renaming a new link over it; False if it already is one."""
    if os.path.islink(path) and os.readlink(path) == target:
        return False
    tmp = tmp_name(path)
    unlink_quietly(tmp)
    os.symlink(target, tmp)
    try:
        os.replace(tmp, path)
    except OSError:
        unlink_quietly(tmp)
        raise
    fsync_dir(os.path.dirname(path))
    return True


# ---- the primary network ------------------------------------------------------------------------

# The files libcni loads from a config dir (so containerd and CRI-O): a Multus config with
# any of these names is one the runtime could call.
RUNTIME_SUFFIXES = (".conf", ".conflist", ".json")


def _candidates(conf_dir: str) -> list[str]:
    """CNI config files a runtime would consider, in its (lexical) order, without our own."""
    try:
        names = sorted(os.listdir(conf_dir))
    except FileNotFoundError:
        return []
    return [
        n
        for n in names
        if n.endswith((".conf", ".conflist"))
        and not n.startswith((".", "00-multiplane"))
        and os.path.isfile(os.path.join(conf_dir, n))
    ]


def _stanzas(doc: dict[str, object]) -> list[dict[str, object]]:
    """The config itself and every plugin object of its list."""
    plugins = field(doc, "plugins")
    return [doc] + ([p for p in plugins if isinstance(p, dict)] if isinstance(plugins, list) else [])


def _multus_type(doc: dict[str, object]) -> str:
    """`multus` or `multus-shim` when the config (or any plugin of its list) is Multus; "" otherwise."""
    for stanza in _stanzas(doc):
        kind = field(stanza, "type")
        if kind in MULTUS_TYPES:
            return str(kind)
    return ""


def _multus_wraps(doc: dict[str, object]) -> str:
    """What a Multus config names as the cluster network: its `clusterNetwork`, else the name of `delegates[0]`."""
    for stanza in _stanzas(doc):
        cluster = field(stanza, "clusterNetwork")
        if isinstance(cluster, str) and cluster:
            return cluster
        delegates = field(stanza, "delegates")
        if isinstance(delegates, list) and delegates and isinstance(delegates[0], dict):
            name = field(delegates[0], "name")
            if isinstance(name, str) and name:
                return name
    return ""


def _described(wraps: str) -> str:
    return wraps if "/" in wraps else f'the network "{wraps}"'


def _wraps_this(wraps: str, shown: str, doc: dict[str, object]) -> bool:
    """Whether what Multus wrapped is this file: same file name (Multus's path is often under /host), or same name."""
    if "/" in wraps:
        return os.path.basename(wraps) == os.path.basename(shown)
    return wraps in (field(doc, "name"), os.path.basename(shown))


class _Multus:
    """A Multus config found in the CNI config dir."""

    __slots__ = ("kind", "name", "wraps")

    def __init__(self, name: str, kind: str, wraps: str) -> None:
        self.name, self.kind, self.wraps = name, kind, wraps


def _multus_configs(conf_dir: str) -> list[_Multus]:
    """Every Multus config in `conf_dir` that the runtime could load; unreadable files are not known to be Multus's."""
    try:
        names = sorted(os.listdir(conf_dir))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        path = os.path.join(conf_dir, name)
        if not name.endswith(RUNTIME_SUFFIXES) or not os.path.isfile(path):
            continue
        try:
            with open(path, "rb") as fh:
                doc = json.loads(fh.read())
        except (OSError, ValueError):
            continue
        kind = _multus_type(doc) if isinstance(doc, dict) else ""
        if kind:
            found.append(_Multus(name, kind, _multus_wraps(doc)))
    return found


def _owned_by_multus(found: list[_Multus], shown_dir: str) -> str:
    """The refusal on a node Multus owns: which files, why, and what to do."""
    parts = []
    for m in found:
        part = f"{os.path.join(shown_dir, m.name)} is a Multus configuration (type {m.kind})"
        parts.append(part + (f"; it wraps {_described(m.wraps)}" if m.wraps else ""))
    return (
        "; ".join(parts) + ". Multus owns this node: wrapping it, or running beside it, would make both meta-plugins "
        "attach the networks of k8s.v1.cni.cncf.io/networks (pods get them twice, or fail on net1). Take Multus off "
        "this node first (its DaemonSet), then run install again with --replace-multus (it moves Multus's "
        "configuration aside once 00-multiplane.conf is written) and with --primary naming the cluster network "
        f"Multus wrapped, unless that is the first other file; see {MIGRATION_DOC}"
    )


def _parse_primary(path: str, flag: str = "") -> dict[str, object]:
    """The primary config as a JSON object with `type` or `plugins`; InstallError naming the file otherwise.

    A meta-plugin's config raises MetaPluginConfig (waiting will not help); `flag` is the
    --primary value when the operator named the file.
    """
    name = os.path.basename(path)
    try:
        with open(path, "rb") as fh:
            doc = json.loads(fh.read())
    except OSError as exc:
        raise InstallError(f"cannot read {name}: {exc.strerror}") from exc
    except ValueError as exc:
        raise InstallError(f"{name} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InstallError(f"{name} is not a CNI configuration: not a JSON object")
    plugins = doc.get("plugins")
    if isinstance(plugins, list) and plugins and all(isinstance(p, dict) for p in plugins):
        types = [p.get("type") for p in plugins]
    elif isinstance(doc.get("type"), str) and doc["type"]:
        types = [doc["type"]]
    else:
        raise InstallError(f"{name} is not a CNI configuration: it has neither `type` nor a list of `plugins`")
    if BINARY in types or any(field(stanza, "type") == BINARY for stanza in _stanzas(doc)):
        raise WrapsItself(f"{name} already uses the multiplane plugin: refusing to wrap multiplane in itself")
    kind = _multus_type(doc)
    if kind and flag:
        wraps = _multus_wraps(doc)
        instead = f" ({_described(wraps)})" if wraps else ""
        raise MultusOwnsNode(
            f"--primary {flag} names a Multus configuration (type {kind}), not the cluster network: name the "
            f"network Multus wraps{instead} instead; see {MIGRATION_DOC}"
        )
    if kind:  # a Multus config that appeared after the look at the whole dir
        raise MultusOwnsNode(_owned_by_multus([_Multus(name, kind, _multus_wraps(doc))], ""))
    return doc


def _capabilities(doc: dict[str, object]) -> dict[str, bool]:
    """Every capability enabled in the config or in any plugin of its list (what the runtime must send us)."""
    stanzas = [doc] + [p for p in doc.get("plugins") or [] if isinstance(p, dict)]
    found: set[str] = set()
    for stanza in stanzas:
        caps = stanza.get("capabilities")
        if isinstance(caps, dict):
            found.update(k for k, v in caps.items() if v is True)
    return {k: True for k in sorted(found)}


def _named_primary(opts: Options) -> str:
    """The path --primary names (a file name in the CNI config dir, or a path under it), as given paths are."""
    conf_dir = os.path.abspath(opts.cni_conf_dir)
    path = os.path.normpath(os.path.join(conf_dir, opts.primary))
    if not path.startswith(conf_dir.rstrip("/") + "/"):
        raise InstallError(
            f"--primary {opts.primary} is not in the CNI config dir {opts.cni_conf_dir}: "
            "give the file name of the cluster network's configuration there"
        )
    if os.path.isdir(opts.real(path)):
        raise InstallError(f"--primary {opts.primary} is a directory: name the cluster network's configuration file")
    return path


def _look(opts: Options, named: str) -> tuple[str, dict[str, object], list[_Multus]] | None:
    """One look at the config dir: (primary path as given, its content, Multus configs); None if no candidate yet."""
    conf_dir = opts.real(opts.cni_conf_dir)
    multus = _multus_configs(conf_dir)
    doc, problem = None, None
    if named and os.path.exists(opts.real(named)):
        try:
            doc = _parse_primary(opts.real(named), flag=opts.primary)
        except MetaPluginConfig:
            raise
        except InstallError as exc:  # maybe half-written: waited for, but Multus's refusal comes first
            problem = exc
    if multus and not opts.replace_multus:
        raise MultusOwnsNode(_owned_by_multus(multus, opts.cni_conf_dir))
    if named:
        if problem is not None:
            raise problem
        if doc is None:
            raise InstallError(f"{os.path.relpath(named, opts.cni_conf_dir)} (named by --primary) does not exist")
        return named, doc, multus
    replaced = {m.name for m in multus}
    names = [n for n in _candidates(conf_dir) if n not in replaced]
    if not names:
        return None
    return os.path.join(opts.cni_conf_dir, names[0]), _parse_primary(os.path.join(conf_dir, names[0])), multus


def wait_for_primary(opts: Options, say: Say, poll: float = 1.0) -> tuple[str, dict[str, object], list[_Multus]]:
    """The cluster network to wrap (its path as given, its content) and the Multus configs to move aside.

    --primary names the file; otherwise it is the first other config in lexical order (Multus's
    own left out when --replace-multus moves them aside). A meta-plugin's config where the
    cluster network must be, or a Multus config without --replace-multus, fails at once. A
    missing or unparsable primary is waited on (its writer may not be done); when the time is
    up, InstallError says which file is wrong or that none appeared.
    """
    named = _named_primary(opts) if opts.primary else ""
    deadline = time.monotonic() + opts.wait_seconds
    waiting_said = ""
    while True:
        problem = ""
        try:
            found = _look(opts, named)
        except MetaPluginConfig:
            raise
        except InstallError as exc:
            found, problem = None, str(exc)
        if found is not None:
            return found
        what = f"waiting for the node's primary CNI configuration in {opts.cni_conf_dir}"
        if time.monotonic() >= deadline:
            reason = problem or "no .conf or .conflist file other than 00-multiplane*"
            raise InstallError(f"timed out after {opts.wait_seconds:g} s {what}: {reason}")
        message = f"{what} ..." + (f" ({problem})" if problem else "")
        if message != waiting_said:
            say(message)
            waiting_said = message
        time.sleep(max(0.0, min(poll, deadline - time.monotonic())))


def _check_multus_wrapped(opts: Options, shown: str, doc: dict[str, object], multus: list[_Multus], say: Say) -> None:
    """Multus configs being replaced name the network they wrapped: the lexical choice must be that one."""
    for m in multus:
        if not m.wraps or _wraps_this(m.wraps, shown, doc):
            continue
        where = os.path.join(opts.cni_conf_dir, m.name)
        if opts.primary:
            say(f"warning: {where} wraps {_described(m.wraps)}; wrapping {shown}, as --primary says")
            continue
        raise InstallError(
            f"{where} wraps {_described(m.wraps)}, but the first other configuration is {shown}: "
            f"name the cluster network with --primary; see {MIGRATION_DOC}"
        )


def _refuse_early(opts: Options) -> None:
    """The refusals that waiting cannot fix, before anything is written; the rest waits in wait_for_primary."""
    named = _named_primary(opts) if opts.primary else ""
    try:
        found = _look(opts, named)
    except MetaPluginConfig:
        raise
    except InstallError:
        return
    if found is not None:
        _check_multus_wrapped(opts, *found, say=lambda _message: None)


def _move_multus_aside(opts: Options, multus: list[_Multus], say: Say) -> None:
    """Rename each Multus config to `<name>.multiplane-bak` in the same dir (atomic; no runtime reads that name)."""
    conf_dir = opts.real(opts.cni_conf_dir)
    for m in multus:
        path = os.path.join(conf_dir, m.name)
        try:
            os.replace(path, path + MULTUS_ASIDE)
        except FileNotFoundError:
            continue  # gone meanwhile: thick Multus deletes its config when its daemon stops
        fsync_dir(conf_dir)
        shown = os.path.join(opts.cni_conf_dir, m.name)
        say(f"moved aside: {shown} -> {shown}{MULTUS_ASIDE} (Multus's configuration; multiplane owns this node)")


def meta_config(opts: Options, primary_path: str, primary: dict[str, object], kubeconfig: str) -> dict[str, object]:
    """The content of 00-multiplane.conf for this primary network (paths as the node sees them)."""
    version = opts.cni_version or primary.get("cniVersion")
    if not isinstance(version, str) or not version:
        raise InstallError(
            f"{os.path.basename(primary_path)} has no cniVersion: give the version to use with --cni-version"
        )
    conf: dict[str, object] = {
        "cniVersion": version,
        "name": NETWORK_NAME,
        "type": BINARY,
        "clusterNetwork": opts.host(primary_path),
        "capabilities": _capabilities(primary),
    }
    if kubeconfig:
        conf["kubeconfig"] = kubeconfig
    meta = dict(opts.meta)
    meta.setdefault("binDir", opts.host(opts.cni_bin_dir))
    for key in (
        "confDir",
        "cniDir",
        "binDir",
        "namespaceIsolation",
        "globalNamespaces",
        "defaultNetworks",
        "systemNamespaces",
        "multusNamespace",
    ):
        if key in meta:
            conf[key] = meta[key]
    for key in ("readinessindicatorfile", "logFile", "logLevel"):
        if meta.get(key):
            conf[key] = meta[key]
    return conf


# ---- kubeconfig ---------------------------------------------------------------------------------


def _q(value: str) -> str:
    """A YAML scalar: a JSON string is a valid double-quoted YAML scalar."""
    return json.dumps(value)


def kubeconfig_text(server: str, ca_data: bytes, token_file: str) -> str:
    """A kubeconfig for the service account: the CA inline, the token read from `token_file` on each call."""
    ca = base64.b64encode(ca_data).decode()
    return (
        KUBECONFIG_MARKER
        + "apiVersion: v1\n"
        + "kind: Config\n"
        + "clusters:\n"
        + "- name: local\n"
        + "  cluster:\n"
        + f"    server: {_q(server)}\n"
        + f"    certificate-authority-data: {_q(ca)}\n"
        + "users:\n"
        + "- name: multiplane\n"
        + "  user:\n"
        + f"    tokenFile: {_q(token_file)}\n"
        + "contexts:\n"
        + "- name: multiplane-context\n"
        + "  context:\n"
        + "    cluster: local\n"
        + "    user: multiplane\n"
        + "current-context: multiplane-context\n"
    )


def _api_server(opts: Options, env: dict[str, str]) -> str:
    if opts.api_server:
        return opts.api_server
    host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        return ""
    return f"https://{'[' + host + ']' if ':' in host and not host.startswith('[') else host}:{port}"


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise InstallError(f"cannot read the {what} {path}: {exc.strerror}") from exc
    if not data.strip():
        raise InstallError(f"the {what} {path} is empty")
    return data


def _copy_token(opts: Options) -> bool:
    token = _read(opts.real(os.path.join(opts.sa_dir, TOKEN_NAME)), "service account token")
    return write_atomic(opts.real(opts.token_path), token, 0o600)


def _write_kubeconfig(opts: Options, env: dict[str, str], say: Say) -> str:
    """Write the service account's kubeconfig and token copy; the kubeconfig path for the config, or ""."""
    if opts.kubeconfig:
        say(f"not writing a kubeconfig: the config will use {opts.kubeconfig}")
        return opts.kubeconfig
    if not opts.write_kubeconfig:
        say("not writing a kubeconfig (--no-kubeconfig): the meta-plugin will read networks from local files")
        return ""
    server = _api_server(opts, env)
    if not server:
        say(
            "not in a cluster (KUBERNETES_SERVICE_HOST/PORT are not set): no kubeconfig; "
            "the meta-plugin will read networks from local files"
        )
        return ""
    ca = _read(opts.real(os.path.join(opts.sa_dir, "ca.crt")), "cluster CA certificate")
    text = kubeconfig_text(server, ca, opts.host(opts.token_path))
    os.makedirs(opts.real(os.path.dirname(opts.kubeconfig_out)), mode=0o700, exist_ok=True)
    changed = _copy_token(opts)
    changed = write_atomic(opts.real(opts.kubeconfig_out), text.encode(), 0o600) or changed
    say(f"{'wrote' if changed else 'unchanged'}: {opts.kubeconfig_out} (server {server})")
    return opts.host(opts.kubeconfig_out)


# ---- the commands -------------------------------------------------------------------------------


def _owned(opts: Options) -> list[tuple[str, list[str]]]:
    """(directory, file names) of everything install writes, for sweeping temporaries."""
    return [
        (opts.real(opts.cni_bin_dir), [BINARY, *opts.plugin_links()]),
        (opts.real(opts.cni_conf_dir), [CONF_NAME]),
        (opts.real(os.path.dirname(opts.kubeconfig_out)), [os.path.basename(opts.kubeconfig_out), TOKEN_NAME]),
    ]


def install(opts: Options, env: dict[str, str] | None = None, say: Say | None = None) -> None:
    """Install binary, links, kubeconfig, then (last, so the runtime finds everything) 00-multiplane.conf.

    Raises InstallError (with the reason and what to do) and OSError (file system failures).
    """
    env = dict(os.environ) if env is None else env
    say = say or _stderr
    for path in (opts.cni_bin_dir, opts.cni_conf_dir):
        opts.host(path)  # a bad --host-prefix fails before anything is written
    _refuse_early(opts)  # so does a bad --primary, or a node that Multus owns
    from multiplane.runtime import layout

    if opts.source and not os.path.isfile(opts.real(opts.source)):
        raise InstallError(f"the file to install, {opts.real(opts.source)}, does not exist")
    try:
        launcher, build, entries = layout.source(opts.real(opts.source) if opts.source else None)
    except layout.RuntimeError_ as exc:
        raise InstallError(str(exc)) from exc
    bin_dir, conf_dir = opts.real(opts.cni_bin_dir), opts.real(opts.cni_conf_dir)
    os.makedirs(bin_dir, exist_ok=True)
    os.makedirs(conf_dir, exist_ok=True)
    for directory, names in _owned(opts):
        sweep_temporaries(directory, names, older_than=3600)  # younger ones may be another install's

    runtime = os.path.join(opts.cni_bin_dir, layout.RUNTIME_DIR)
    try:
        changed = layout.lay_down(bin_dir, build, entries)
    except layout.RuntimeError_ as exc:
        raise InstallError(str(exc)) from exc
    say(f"{'installed' if changed else 'unchanged'}: {runtime}/{build}")
    changed = layout.switch(bin_dir, build)
    say(f"{'switched' if changed else 'unchanged'}: {runtime}/current -> {build}")
    changed = write_atomic(os.path.join(bin_dir, BINARY), launcher, 0o755)
    say(f"{'installed' if changed else 'unchanged'}: {os.path.join(opts.cni_bin_dir, BINARY)} (launcher)")
    for name in opts.plugin_links():
        changed = _link(BINARY, os.path.join(bin_dir, name))
        say(f"{'linked' if changed else 'unchanged'}: {os.path.join(opts.cni_bin_dir, name)} -> {BINARY}")

    removed, busy = layout.sweep(bin_dir, keep=[build])
    for name in removed:
        say(f"removed: {runtime}/{name} (no call runs it any more)")
    for name in busy:
        say(f"kept: {runtime}/{name} (calls still run it; the next install removes it)")

    kubeconfig = _write_kubeconfig(opts, env, say)

    shown, primary, multus = wait_for_primary(opts, say)
    _check_multus_wrapped(opts, shown, primary, multus, say)
    name = os.path.basename(shown)
    in_dir = os.path.dirname(shown) == os.path.abspath(opts.cni_conf_dir)
    if in_dir and name.endswith(RUNTIME_SUFFIXES) and name < CONF_NAME:
        say(f"warning: {shown} sorts before {CONF_NAME}: the runtime takes the first file and will not call multiplane")
    data = (json.dumps(meta_config(opts, shown, primary, kubeconfig), indent=2) + "\n").encode()
    changed = write_atomic(os.path.join(conf_dir, CONF_NAME), data, 0o644)
    say(
        f"{'wrote' if changed else 'unchanged'}: {os.path.join(opts.cni_conf_dir, CONF_NAME)} (cluster network {shown})"
    )
    _move_multus_aside(opts, multus, say)  # only now: the runtime always has a meta-plugin config to take


def uninstall(opts: Options, say: Say | None = None) -> None:
    """Remove what install wrote (config first, so the runtime stops calling us); the rest is left alone."""
    say = say or _stderr
    conf_dir, bin_dir = opts.real(opts.cni_conf_dir), opts.real(opts.cni_bin_dir)

    def remove(real: str, shown: str) -> None:
        try:
            os.unlink(real)
        except FileNotFoundError:
            return
        say(f"removed: {shown}")

    remove(os.path.join(conf_dir, CONF_NAME), os.path.join(opts.cni_conf_dir, CONF_NAME))
    try:
        aside = sorted(n for n in os.listdir(conf_dir) if n.endswith(MULTUS_ASIDE))
    except FileNotFoundError:
        aside = []
    for name in aside:  # bringing Multus back is the operator's step: its daemon may be gone
        say(
            f"kept: {os.path.join(opts.cni_conf_dir, name)} (Multus's configuration, moved aside by "
            f"install --replace-multus; to go back to Multus see {MIGRATION_DOC})"
        )
    for directory, names in _owned(opts):
        sweep_temporaries(directory, names, older_than=0)
    kubeconfig = opts.real(opts.kubeconfig_out)
    try:
        with open(kubeconfig, encoding="utf-8", errors="replace") as fh:
            ours = fh.readline() == KUBECONFIG_MARKER
    except FileNotFoundError:
        ours = True
    if ours:
        remove(kubeconfig, opts.kubeconfig_out)
        remove(opts.real(opts.token_path), opts.token_path)
        directory = os.path.dirname(kubeconfig)
        if os.path.basename(directory) == KUBECONFIG_DIR:
            try:
                os.rmdir(directory)
                say(f"removed: {os.path.dirname(opts.kubeconfig_out)}")
            except FileNotFoundError:
                pass
            except OSError:
                say(f"kept {os.path.dirname(opts.kubeconfig_out)}: it holds files multiplane did not write")
    else:
        say(f"kept {opts.kubeconfig_out}: multiplane install did not write it")
    for name in opts.plugin_links():
        remove(os.path.join(bin_dir, name), os.path.join(opts.cni_bin_dir, name))
    remove(os.path.join(bin_dir, BINARY), os.path.join(opts.cni_bin_dir, BINARY))
    from multiplane.runtime import layout

    runtime = os.path.join(opts.cni_bin_dir, layout.RUNTIME_DIR)
    if os.path.isdir(os.path.join(bin_dir, layout.RUNTIME_DIR)):
        forced = layout.remove_all(bin_dir)
        for name in forced:
            say(f"removed: {runtime}/{name} while calls still ran it (they waited 30 s)")
        say(f"removed: {runtime}")


def refresh_token(opts: Options, interval: float = 60.0, iterations: int | None = None, say: Say | None = None) -> None:
    """Keep the token copy next to the kubeconfig equal to the service account's (bound tokens rotate).

    Runs forever unless `iterations` is given (tests). Does nothing while no kubeconfig
    exists, so an uninstalled node is not repopulated. Errors are reported once and retried.
    """
    say = say or _stderr
    last, done = "", 0
    while iterations is None or done < iterations:
        if done:
            time.sleep(interval)
        done += 1
        state, changed = "", False
        if not os.path.exists(opts.real(opts.kubeconfig_out)):
            state = f"no kubeconfig at {opts.kubeconfig_out}: nothing to refresh"
        else:
            try:
                changed = _copy_token(opts)
            except (InstallError, OSError) as exc:
                state = f"error: cannot refresh {opts.token_path}: {exc}"
        if changed:
            say(f"refreshed: {opts.token_path}")
        elif state and state != last:
            say(state)
        last = state


def _stderr(message: str) -> None:
    sys.stderr.write(f"multiplane: {message}\n")
    sys.stderr.flush()


# ---- command line -------------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cni-bin-dir", default="/opt/cni/bin", help="the runtime's CNI bin dir (default %(default)s)")
    parser.add_argument(
        "--cni-conf-dir", default="/etc/cni/net.d", help="the runtime's CNI config dir (default %(default)s)"
    )
    parser.add_argument(
        "--kubeconfig-out",
        default="",
        help=f"the kubeconfig to write (default <cni-conf-dir>/{KUBECONFIG_DIR}/{KUBECONFIG_NAME}); "
        f"the token copy goes next to it as {TOKEN_NAME}",
    )
    parser.add_argument("--root", default="", help="interpret every path given here under this directory (tests)")
    parser.add_argument(
        "--host-prefix",
        default="",
        help="where the node's / is mounted in this container (e.g. /host); stripped from paths written into files",
    )


def build_parser() -> argparse.ArgumentParser:
    """The `install` / `uninstall` command line."""
    parser = argparse.ArgumentParser(prog="multiplane", description="Install multiplane on this node, or remove it.")
    commands = parser.add_subparsers(dest="command", required=True)
    inst = commands.add_parser("install", help="copy the binary, create the plugin links, write the configs")
    _common(inst)
    inst.add_argument(
        "--source", default="", help="the self-contained multiplane file to install (default: the running one)"
    )
    inst.add_argument(
        "--sa-dir", default=SERVICE_ACCOUNT_DIR, help="the service account's token and ca.crt (default %(default)s)"
    )
    inst.add_argument("--api-server", default="", help="API server URL (default https://$KUBERNETES_SERVICE_HOST:PORT)")
    inst.add_argument("--no-kubeconfig", action="store_true", help="write no kubeconfig (the plugin reads local files)")
    inst.add_argument("--kubeconfig", default="", help="reference this existing kubeconfig (a node path) instead")
    inst.add_argument(
        "--wait-seconds",
        type=float,
        default=600.0,
        help="how long to wait for the primary CNI config (default %(default)g)",
    )
    inst.add_argument(
        "--primary",
        default="",
        metavar="FILE",
        help="the cluster network's config to wrap: a file name in --cni-conf-dir or a path under it "
        "(default: the first other .conf/.conflist in lexical order)",
    )
    inst.add_argument(
        "--replace-multus",
        action="store_true",
        help="on a node Multus owned (stop Multus there first): once 00-multiplane.conf is written, rename "
        f"Multus's config to <name>{MULTUS_ASIDE}, which no runtime reads",
    )
    inst.add_argument("--cni-version", default="", help="cniVersion of 00-multiplane.conf (default: the primary's)")
    inst.add_argument("--multiplane-conf-dir", help="the config key confDir")
    inst.add_argument("--multiplane-cni-dir", help="the config key cniDir")
    inst.add_argument("--multiplane-bin-dir", help="the config key binDir (default: the node's view of --cni-bin-dir)")
    inst.add_argument("--namespace-isolation", action="store_true", help="the config key namespaceIsolation")
    inst.add_argument("--global-namespaces", help="the config key globalNamespaces (comma-separated)")
    inst.add_argument(
        "--default-networks",
        help="the config key defaultNetworks (comma-separated: NAD names in --multus-namespace, or absolute paths)",
    )
    inst.add_argument("--system-namespaces", help="the config key systemNamespaces (comma-separated)")
    inst.add_argument("--multus-namespace", help="the config key multusNamespace")
    inst.add_argument("--readiness-indicator-file", help="the config key readinessindicatorfile")
    inst.add_argument("--log-file", help="the config key logFile")
    inst.add_argument("--log-level", choices=LOG_LEVELS, help="the config key logLevel")
    inst.add_argument(
        "--refresh-token-only",
        action="store_true",
        help="only keep the token copy next to the kubeconfig fresh, forever (the DaemonSet's main container)",
    )
    inst.add_argument(
        "--refresh-interval", type=float, default=60.0, help="seconds between token checks (default %(default)g)"
    )
    inst.add_argument("--max-iterations", type=int, default=None, help=argparse.SUPPRESS)  # test hook
    _common(commands.add_parser("uninstall", help="remove what install wrote"))
    return parser


def options_from(args: argparse.Namespace) -> Options:
    meta: dict[str, object] = {}
    for flag, key in (
        ("multiplane_conf_dir", "confDir"),
        ("multiplane_cni_dir", "cniDir"),
        ("multiplane_bin_dir", "binDir"),
        ("global_namespaces", "globalNamespaces"),
        ("readiness_indicator_file", "readinessindicatorfile"),
        ("log_file", "logFile"),
        ("log_level", "logLevel"),
    ):
        if getattr(args, flag, None) is not None:
            meta[key] = getattr(args, flag)
    if getattr(args, "namespace_isolation", False):
        meta["namespaceIsolation"] = True
    for flag, key in (("default_networks", "defaultNetworks"), ("system_namespaces", "systemNamespaces")):
        value = getattr(args, flag, None)
        if value is not None:  # lists in the config, comma-separated on the command line ("" = empty list)
            meta[key] = [item.strip() for item in value.split(",") if item.strip()]
    if getattr(args, "multus_namespace", None):
        meta["multusNamespace"] = args.multus_namespace
    return Options(
        source=getattr(args, "source", ""),
        cni_bin_dir=args.cni_bin_dir,
        cni_conf_dir=args.cni_conf_dir,
        root=args.root,
        host_prefix=args.host_prefix,
        kubeconfig_out=args.kubeconfig_out,
        kubeconfig=getattr(args, "kubeconfig", ""),
        write_kubeconfig=not getattr(args, "no_kubeconfig", False),
        sa_dir=getattr(args, "sa_dir", SERVICE_ACCOUNT_DIR),
        api_server=getattr(args, "api_server", ""),
        wait_seconds=getattr(args, "wait_seconds", 600.0),
        cni_version=getattr(args, "cni_version", ""),
        meta=meta,
        primary=getattr(args, "primary", ""),
        replace_multus=getattr(args, "replace_multus", False),
    )


def main(argv: list[str]) -> int:
    """`multiplane install|uninstall [flags]` (argv without the program name); returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    opts = options_from(args)
    try:
        if args.command == "uninstall":
            uninstall(opts)
        elif args.refresh_token_only:
            refresh_token(opts, args.refresh_interval, args.max_iterations)
        else:
            install(opts)
    except InstallError as exc:
        _stderr(f"error: {exc}")
        return 1
    except OSError as exc:
        _stderr(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
