"""Container images for the runtime tests, made from Debian's static busybox: no registry, no podman, no network.

`busybox_oci_tar` writes an OCI image-layout tarball (`oci-layout`, `index.json`,
`blobs/sha256/…`) holding one uncompressed layer: `/bin/busybox` plus `sh`, `sleep`, `ip`,
`ping` links to it, `/etc/passwd` and `/etc/group` for root, and empty mount points. The
image config runs `cmd`. Every timestamp, owner and ordering is fixed, so the same inputs
give the same bytes (and the same image digest).

Both runtimes import it without a registry:

* containerd: ``ctr -n k8s.io images import <tar>`` (the name comes from the
  ``io.containerd.image.name`` annotation);
* podman: ``podman load -i <tar>`` (libimage reads the same annotation first).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["BUSYBOX", "busybox_oci_tar", "oci_arch"]

BUSYBOX = "/bin/busybox"  # Debian's busybox-static
APPLETS = ("sh", "sleep", "ip", "ping")
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
EPOCH = 0  # mtime of every tar entry
CREATED = "1970-01-01T00:00:00Z"

_ARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def oci_arch() -> str:
    """This machine's architecture in OCI/Go spelling (amd64, arm64, …)."""
    machine = platform.machine()
    return _ARCH.get(machine, machine)


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _info(name: str, kind: bytes, mode: int, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.linkname = linkname
    info.mtime = EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _tar(entries: Sequence[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _layer(busybox: bytes, applets: Sequence[str]) -> bytes:
    files = {
        "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n",
        "etc/group": b"root:x:0:\n",
    }
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for d in ("bin", "dev", "etc", "proc", "root", "run", "sys", "tmp"):
        entries.append((_info(f"{d}/", tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755), None))
    entries.append((_info("bin/busybox", tarfile.REGTYPE, 0o755, len(busybox)), busybox))
    for applet in sorted(set(applets)):
        entries.append((_info(f"bin/{applet}", tarfile.SYMTYPE, 0o777, linkname="busybox"), None))
    for name, data in sorted(files.items()):
        entries.append((_info(name, tarfile.REGTYPE, 0o644, len(data)), data))
    entries.sort(key=lambda e: e[0].name)
    return _tar(entries)


def _blob(blobs: dict[str, bytes], data: bytes, media_type: str) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def busybox_oci_tar(
    path: str | os.PathLike[str],
    cmd: Sequence[str] = ("/bin/sleep", "100000"),
    name: str = "localhost/mp-pause:latest",
    *,
    applets: Sequence[str] = APPLETS,
    busybox: str = BUSYBOX,
) -> str:
    """Write the OCI image-layout tarball for a busybox image named `name` running `cmd` to `path`; return the path.

    Deterministic: identical arguments (and the same busybox binary) give identical bytes.
    """
    if not os.access(busybox, os.R_OK):
        raise FileNotFoundError(f"{busybox} is missing: install Debian's busybox-static")
    blobs: dict[str, bytes] = {}
    layer = _layer(Path(busybox).read_bytes(), applets)
    layer_desc = _blob(blobs, layer, MEDIA_LAYER)
    config = {
        "architecture": oci_arch(),
        "os": "linux",
        "created": CREATED,
        "config": {"Cmd": list(cmd), "Env": ["PATH=/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},  # uncompressed: diff id = digest
        "history": [{"created": CREATED, "created_by": "multiplane tests/e2e/images.py (busybox-static)"}],
    }
    config_desc = _blob(blobs, _canonical(config), MEDIA_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config_desc, "layers": [layer_desc]}
    manifest_desc = _blob(blobs, _canonical(manifest), MEDIA_MANIFEST)
    manifest_desc["annotations"] = {
        "io.containerd.image.name": name,  # containerd's import and podman's load both read this first
        "org.opencontainers.image.ref.name": name,
    }
    manifest_desc["platform"] = {"architecture": oci_arch(), "os": "linux"}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [manifest_desc]}

    entries: list[tuple[tarfile.TarInfo, bytes | None]] = [
        (_info("blobs/", tarfile.DIRTYPE, 0o755), None),
        (_info("blobs/sha256/", tarfile.DIRTYPE, 0o755), None),
    ]
    for digest in sorted(blobs):
        data = blobs[digest]
        entries.append((_info(f"blobs/sha256/{digest.split(':', 1)[1]}", tarfile.REGTYPE, 0o644, len(data)), data))
    for fname, data in (("index.json", _canonical(index)), ("oci-layout", _canonical({"imageLayoutVersion": "1.0.0"}))):
        entries.append((_info(fname, tarfile.REGTYPE, 0o644, len(data)), data))
    out = os.fspath(path)
    tmp = f"{out}.tmp"
    Path(tmp).write_bytes(_tar(entries))
    os.replace(tmp, out)
    return out
