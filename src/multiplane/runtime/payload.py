"""The runtime tree inside the self-contained file, and its manifest: one format, read and written here.

The self-contained `dist/multiplane` is the static launcher (packaging/runtime/launcher.c),
then the payload, then a 48-byte trailer:

    trailer  = b"MPRUNTM1" | u64 payload offset | u64 payload size | 24-byte build id (ASCII, space-padded)
    payload  = entry* | b"E"
    entry    = b"F" | u16 path length | path (relative, no "..") | u32 mode | u64 size | data

Integers are little endian. The launcher reads the same format in C. Every tree carries
`MANIFEST`: one line per file, `<sha256> <mode, octal> <size> <path>`, sorted by path; the
build id is `<version>-<first 12 hex digits of the MANIFEST's sha256>`, so two builds with
the same files share an id and any difference changes it.
"""

from __future__ import annotations

import hashlib
import os
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "MAGIC",
    "MANIFEST",
    "TRAILER",
    "Entry",
    "build_id",
    "manifest",
    "parse_manifest",
    "read",
    "trailer_of",
    "write",
]

MAGIC = b"MPRUNTM1"
TRAILER = 48
MANIFEST = "MANIFEST"
_ID_SIZE = 24


class PayloadError(Exception):
    """The file has no payload, or a damaged one."""


class Entry:
    """One file of a tree: its relative path, mode and content."""

    __slots__ = ("path", "mode", "data")

    def __init__(self, path: str, mode: int, data: bytes) -> None:
        self.path, self.mode, self.data = path, mode, data


def _safe(path: str) -> bool:
    parts = path.split("/")
    return bool(path) and not path.startswith("/") and all(p not in ("", ".", "..") for p in parts)


def manifest(entries: list[Entry]) -> bytes:
    """The MANIFEST text of these entries (MANIFEST itself excluded)."""
    lines = []
    for e in sorted(entries, key=lambda e: e.path):
        if e.path != MANIFEST:
            lines.append(f"{hashlib.sha256(e.data).hexdigest()} {e.mode:o} {len(e.data)} {e.path}\n")
    return "".join(lines).encode()


def parse_manifest(text: bytes) -> dict[str, tuple[str, int, int]]:
    """path → (sha256, mode, size); PayloadError on a malformed line."""
    out = {}
    for line in text.decode("utf-8").splitlines():
        try:
            digest, mode, size, path = line.split(" ", 3)
            out[path] = (digest, int(mode, 8), int(size))
        except ValueError as exc:
            raise PayloadError(f"malformed MANIFEST line {line!r}") from exc
    return out


def build_id(version: str, manifest_text: bytes) -> str:
    digest = hashlib.sha256(manifest_text).hexdigest()[:12]
    return f"{version[: _ID_SIZE - 13]}-{digest}"


def write(launcher: bytes, entries: list[Entry], build: str) -> bytes:
    """The self-contained file: launcher, payload, trailer."""
    body = bytearray()
    for e in sorted(entries, key=lambda e: e.path):
        if not _safe(e.path):
            raise PayloadError(f"unsafe path in a payload: {e.path!r}")
        path = e.path.encode()
        body += b"F" + struct.pack("<H", len(path)) + path + struct.pack("<IQ", e.mode, len(e.data)) + e.data
    body += b"E"
    ident = build.encode("ascii").ljust(_ID_SIZE, b" ")
    if len(ident) != _ID_SIZE:
        raise PayloadError(f"build id {build!r} is longer than {_ID_SIZE} characters")
    trailer = MAGIC + struct.pack("<QQ", len(launcher), len(body)) + ident
    return bytes(launcher) + bytes(body) + trailer


def trailer_of(path: str) -> tuple[int, int, str] | None:
    """(payload offset, size, build id) of a self-contained file; None if it has no payload."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size < TRAILER:
            return None
        fh.seek(size - TRAILER)
        tail = fh.read(TRAILER)
    if tail[:8] != MAGIC:
        return None
    offset, length = struct.unpack("<QQ", tail[8:24])
    if offset + length > size - TRAILER:
        raise PayloadError(f"{path}: the payload runs past the end of the file")
    return offset, length, tail[24:].decode("ascii", "replace").strip()


def read(path: str) -> tuple[bytes, str, Iterator[Entry]]:
    """(launcher bytes, build id, the entries) of a self-contained file; PayloadError if it is not one."""
    found = trailer_of(path)
    if found is None:
        raise PayloadError(f"{path} is not a self-contained multiplane file (no payload)")
    offset, length, build = found
    with open(path, "rb") as fh:
        launcher = fh.read(offset)
        body = fh.read(length)

    def entries() -> Iterator[Entry]:
        pos = 0
        while True:
            kind = body[pos : pos + 1]
            if kind == b"E":
                return
            if kind != b"F":
                raise PayloadError(f"{path}: damaged payload at byte {offset + pos}")
            (plen,) = struct.unpack_from("<H", body, pos + 1)
            name = body[pos + 3 : pos + 3 + plen].decode()
            mode, size = struct.unpack_from("<IQ", body, pos + 3 + plen)
            start = pos + 3 + plen + 12
            if not _safe(name) or start + size > len(body):
                raise PayloadError(f"{path}: damaged payload entry {name!r}")
            yield Entry(name, mode, body[start : start + size])
            pos = start + size

    return launcher, build, entries()
