"""The bytes between the per-call client and the node daemon (one unix-socket connection per call).

    request   b"MPD1"  name  environ  stdin           each field: 4-byte big-endian length + bytes
              name     the personality the runtime executed ("multiplane", "multiplane-macvlan", …)
              environ  the client's environment as the kernel gave it: b"KEY=VALUE\\0" repeated
              stdin    the network config, byte for byte
    answer    b"A"                                     the daemon took the request (it will run it)
              b"R"  status  stdout  stderr             status: 4 bytes; stdout/stderr: length + bytes

A busy daemon answers b"R" at once, without b"A" (nothing was run). The client prints stdout
and stderr as they are and exits with `status`: the runtime sees what the one-shot process
would have written. Only builtins here: the client imports this on every call.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ACCEPTED", "MAGIC", "MAX_FIELD", "REPLY", "WireError", "answer", "decode_environ", "read_exact", "request"]

MAGIC = b"MPD1"
ACCEPTED = b"A"
REPLY = b"R"
MAX_FIELD = 16 << 20  # no CNI config, environment or answer comes near 16 MiB


class WireError(Exception):
    """The other side sent something that is not this protocol, or closed mid-message."""


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def request(name: bytes, environ: bytes, stdin: bytes) -> bytes:
    return MAGIC + _field(name) + _field(environ) + _field(stdin)


def answer(status: int, stdout: bytes, stderr: bytes) -> bytes:
    return REPLY + (status & 0xFFFFFFFF).to_bytes(4, "big") + _field(stdout) + _field(stderr)


def read_exact(recv: Callable[[int], bytes], n: int) -> bytes:
    """Exactly n bytes from `recv` (a socket's recv); WireError when the peer closes first."""
    parts = []
    while n > 0:
        chunk = recv(min(n, 1 << 20))
        if not chunk:
            raise WireError("the connection closed in the middle of a message")
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def read_field(recv: Callable[[int], bytes]) -> bytes:
    size = int.from_bytes(read_exact(recv, 4), "big")
    if size > MAX_FIELD:
        raise WireError(f"a field of {size} bytes is larger than {MAX_FIELD}")
    return read_exact(recv, size)


def read_request(recv: Callable[[int], bytes]) -> tuple[bytes, bytes, bytes]:
    """(name, environ, stdin) of a request; WireError for anything else."""
    if read_exact(recv, len(MAGIC)) != MAGIC:
        raise WireError("not a multiplane request (bad magic)")
    return read_field(recv), read_field(recv), read_field(recv)


def read_answer(recv: Callable[[int], bytes]) -> tuple[int, bytes, bytes]:
    """(status, stdout, stderr) of an answer whose b"R" has been read."""
    status = int.from_bytes(read_exact(recv, 4), "big")
    return status, read_field(recv), read_field(recv)


def encode_environ(environ: dict[bytes, bytes]) -> bytes:
    return b"".join(key + b"=" + value + b"\0" for key, value in environ.items())


def decode_environ(block: bytes) -> dict[str, str]:
    """The environment as os.environ would show it (undecodable bytes as surrogate escapes)."""
    env: dict[str, str] = {}
    for entry in block.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep and key:
            env[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
    return env
