"""The per-call client: hand a CNI call to the node daemon, or say why it cannot so the caller runs it in-process.

`forward(name, stdin)` is what the runtime's `multiplane` process does first for every CNI
command but VERSION (answered locally, it needs nothing). It imports only `_socket` and
`multiplane.wire` (the daemon's own modules, json and the engine stay unloaded).

The static launcher runs the regular case of this module before any Python starts (its
"first hop", packaging/runtime/launcher.c; decision 0014): connect, send, b"A", the answer,
printed. It decides nothing else: for anything else it starts Python as always, with stdin's
bytes given back as fd 0 and, once it had a connection, the socket passed on in
MULTIPLANE_CLIENT_FD with how far it got in MULTIPLANE_CLIENT_STATE ("unsent ERRNO",
"sent DEADLINE", "accepted DEADLINE [FD of the answer bytes it read]"). `forward` removes
both variables first and goes on from that point with the logic below, as if it had made
the connection itself. Without them it connects itself (the launcher had no connection, or
left the call to Python: a `daemonSocket` in the config, a name or arguments it does not
handle).

Which socket: the network config's `daemonSocket` (a path; "" means never use a daemon),
else $MULTIPLANE_SOCKET, else /run/multiplane/multiplane.sock. $MULTIPLANE_DAEMON is `auto`
(the default), `off` (never use the daemon) or `require` (no in-process fallback: code 11
when there is no daemon; for tests and for operators who want to know).

What happens, in order, and what the caller gets:

* no socket file, or nobody listening (refused), or no connection within CONNECT_TIMEOUT:
  Fallback; the daemon never saw the call. (Not installed, not started yet, crashed.)
* connected: the request goes out, then the daemon's first byte within PICKUP_TIMEOUT:
  - b"A": the daemon took the call; its answer follows within ANSWER_TIMEOUT: Answer.
    If the connection breaks or the time runs out after b"A", the daemon may have done part
    of the work: DEL, CHECK, GC and STATUS are safe to run again and Fall back; ADD gets
    Failed (code 11, "try again later"), so the runtime DELs and retries, as after any
    failed ADD.
  - b"R" without b"A": the daemon refused it (busy): Answer (the refusal is a CNI error).
  - the connection closes: the daemon died before taking it: Fallback.
  - nothing in PICKUP_TIMEOUT (a hung daemon): the client shuts its reading side down. The
    kernel then refuses the daemon's later b"A" (EPIPE), so a daemon that wakes up drops the
    call instead of running it. A b"A" already queued before the shutdown means the daemon
    did take it: Failed (11). Otherwise: Fallback. The call is never run twice at once.
"""

from __future__ import annotations

import os

from multiplane import wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import _socket

__all__ = [
    "ANSWER_TIMEOUT",
    "CONNECT_TIMEOUT",
    "DEFAULT_SOCKET",
    "PICKUP_TIMEOUT",
    "Answer",
    "Failed",
    "Fallback",
    "forward",
]

DEFAULT_SOCKET = "/run/multiplane/multiplane.sock"  # = multiplane.daemon.config.DEFAULT_SOCKET (a test checks)
CONNECT_TIMEOUT = 1.0
PICKUP_TIMEOUT = 5.0
ANSWER_TIMEOUT = 300.0
_REPEATABLE = ("DEL", "CHECK", "GC", "STATUS")


class Answer:
    """The daemon answered: write these bytes and exit with this status."""

    __slots__ = ("status", "stderr", "stdout")

    def __init__(self, status: int, stdout: bytes, stderr: bytes) -> None:
        self.status, self.stdout, self.stderr = status, stdout, stderr


class Fallback:
    """Run the call in-process; `note` says why (for the call's log), `loud` when it is worth a warning."""

    __slots__ = ("loud", "note")

    def __init__(self, note: str, loud: bool = False) -> None:
        self.note, self.loud = note, loud


class Failed:
    """Answer the runtime with a CNI error of `code` (11: try again later) and `msg`."""

    __slots__ = ("code", "msg")

    def __init__(self, msg: str, code: int = 11) -> None:
        self.msg, self.code = msg, code


def socket_path(stdin: bytes, environ: Mapping[str, str]) -> str:
    """The daemon socket for this call ("" = do not use a daemon); see the module docstring."""
    if environ.get("MULTIPLANE_DAEMON", "auto") == "off":
        return ""
    if b"daemonSocket" in stdin:  # skip the scan for the usual config without the key
        from multiplane.skel import top_level

        conf = top_level(stdin)
        value = conf.get("daemonSocket") if conf is not None else None
        if isinstance(value, str):
            return value
    return environ.get("MULTIPLANE_SOCKET") or DEFAULT_SOCKET


def forward(name: str, stdin: bytes, command: str) -> Answer | Fallback | Failed:
    """Send the call to the daemon, or go on from where the launcher left it; see the module docstring."""
    handed = _handed_over()  # first: the launcher's descriptors and variables reach nothing else
    path = socket_path(stdin, os.environ)
    required = os.environ.get("MULTIPLANE_DAEMON", "auto") == "require"
    if handed is not None:
        outcome = _resume(*handed, path or DEFAULT_SOCKET, command)
    elif path:
        outcome = _forward(path, name, stdin, command)
    else:
        outcome = Fallback("in-process (the daemon is switched off)")
    if required and isinstance(outcome, Fallback):
        return Failed(f"MULTIPLANE_DAEMON=require and the daemon did not serve the call: {outcome.note}")
    return outcome


def _forward(path: str, name: str, stdin: bytes, command: str) -> Answer | Fallback | Failed:
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(path)
        except FileNotFoundError:
            return Fallback(f"in-process (no daemon socket at {path})")
        except ConnectionRefusedError:
            return Fallback(f"in-process (nobody listens on the daemon socket {path})", loud=True)
        except OSError as exc:  # a timeout, a path that is not a socket, permissions
            return Fallback(f"in-process (cannot connect to the daemon at {path}: {_text(exc)})", loud=True)
        return _exchange(sock, path, name, stdin, command)
    finally:
        sock.close()


def _exchange(sock: _socket.socket, path: str, name: str, stdin: bytes, command: str) -> Answer | Fallback | Failed:
    sock.settimeout(PICKUP_TIMEOUT)
    try:
        sock.sendall(wire.request(os.fsencode(name), wire.encode_environ(dict(os.environb)), stdin))
    except TimeoutError:
        return _give_up(sock, path, command)
    except OSError as exc:  # reset or broken pipe: the daemon went away before taking the call
        return _dropped(path, _text(exc))
    return _pickup(sock, path, command, PICKUP_TIMEOUT)


def _pickup(sock: _socket.socket, path: str, command: str, timeout: float) -> Answer | Fallback | Failed:
    """The request is out: the daemon's first byte says whether it took the call."""
    sock.settimeout(timeout)
    try:
        first = sock.recv(1)
    except TimeoutError:
        return _give_up(sock, path, command)
    except OSError as exc:
        return _dropped(path, _text(exc))
    if first == b"":
        return Fallback(f"in-process (the daemon at {path} closed the connection before taking the call)", loud=True)
    if first == wire.ACCEPTED:
        return _answer(sock, path, command, ANSWER_TIMEOUT, b"")
    if first == wire.REPLY:  # refused (busy) before taking it
        try:
            return Answer(*wire.read_answer(sock.recv))
        except (OSError, wire.WireError) as exc:
            return Fallback(f"in-process (the daemon at {path} refused the call, then broke off: {_text(exc)})", True)
    return Failed(f"the daemon at {path} does not speak this client's protocol (first byte {first!r})", 999)


def _answer(sock: _socket.socket, path: str, command: str, timeout: float, read: bytes) -> Answer | Fallback | Failed:
    """The daemon took the call (b"A"): its answer, of which `read` (bytes the launcher read) is the start."""
    sock.settimeout(timeout)
    recv = _after(read, sock.recv) if read else sock.recv
    try:
        first = wire.read_exact(recv, 1)
        if first != wire.REPLY:
            raise wire.WireError(f"unexpected byte {first!r}")
        return Answer(*wire.read_answer(recv))
    except (OSError, wire.WireError) as exc:
        why = "no answer within %gs" % ANSWER_TIMEOUT if isinstance(exc, TimeoutError) else _text(exc)
        return _lost(path, command, why)


def _after(read: bytes, recv: Callable[[int], bytes]) -> Callable[[int], bytes]:
    """A recv that returns `read` first, then what `recv` returns."""
    left = [read]

    def more(n: int) -> bytes:
        if not left[0]:
            return recv(n)
        chunk, left[0] = left[0][:n], left[0][n:]
        return chunk

    return more


def _dropped(path: str, why: str) -> Fallback:
    return Fallback(f"in-process (the daemon at {path} dropped the connection: {why})", loud=True)


# ---- going on from where the launcher left the call ----------------------------------------


def _handed_over() -> tuple[int, list[str], int] | None:
    """(socket, state words, descriptor of answer bytes already read or -1) from the launcher, or None.

    Removes MULTIPLANE_CLIENT_FD and MULTIPLANE_CLIENT_STATE from the environment and makes
    the descriptors non-inheritable before anything else runs: no delegate, no daemon request
    and no in-process call sees them.
    """
    fd_text = os.environ.pop("MULTIPLANE_CLIENT_FD", None)
    state = os.environ.pop("MULTIPLANE_CLIENT_STATE", None)
    if fd_text is None:
        return None
    words = (state or "").split()
    try:
        fds = [int(fd_text), int(words[2]) if words[:1] == ["accepted"] and len(words) > 2 else -1]
    except ValueError:
        return None  # not the launcher's (it writes numbers): nothing of ours to take over
    for fd in fds:
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass  # not open: the resume reports it
    return fds[0], words, fds[1]


def _resume(fd: int, state: list[str], read_fd: int, path: str, command: str) -> Answer | Fallback | Failed:
    """Go on with the launcher's connection from `state` (see packaging/runtime/launcher.c), as if this process had made it."""
    import _socket

    read = b""
    try:
        if read_fd >= 0:
            read = _drain(read_fd)
        sock = _socket.socket(fileno=fd)
    except OSError as exc:
        if fd > 2:
            try:
                os.close(fd)
            except OSError:
                pass
        return Failed(
            f"the launcher handed over a connection to the daemon at {path} that is unusable: {_text(exc)}", 999
        )
    try:
        kind, number = (state + ["", ""])[:2]
        if kind == "unsent" and number.isdigit():
            import errno

            if int(number) == errno.ETIMEDOUT:
                return _give_up(sock, path, command)
            return _dropped(path, os.strerror(int(number)))
        if kind in ("sent", "accepted") and number.lstrip("-").isdigit():
            import time

            # At least 1 ms: a timeout of 0 would make the socket non-blocking instead.
            left = max((int(number) - time.monotonic_ns()) / 1e9, 0.001)
            if kind == "sent":
                return _pickup(sock, path, command, left)
            return _answer(sock, path, command, left, read)
        return Failed(
            f"the launcher handed over a connection to the daemon at {path} in an unknown state {state!r}", 999
        )
    finally:
        sock.close()


def _drain(fd: int) -> bytes:
    """All bytes of a descriptor, which is then closed."""
    try:
        parts = []
        while chunk := os.read(fd, 1 << 20):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def _give_up(sock: _socket.socket, path: str, command: str) -> Fallback | Failed:
    """The daemon did not take the call in time: make sure it never will, unless it already has."""
    import _socket

    try:
        sock.shutdown(_socket.SHUT_RD)  # from now on the daemon's b"A" fails with EPIPE
        sock.setblocking(False)
        taken = sock.recv(1) == wire.ACCEPTED
    except OSError:  # nothing queued (EAGAIN), or the connection is already gone
        taken = False
    if taken:
        return _lost(path, command, f"it took the call only after {PICKUP_TIMEOUT:g}s")
    return Fallback(f"in-process (the daemon at {path} did not take the call within {PICKUP_TIMEOUT:g}s)", loud=True)


def _lost(path: str, command: str, why: str) -> Fallback | Failed:
    """The daemon took the call but no answer came: repeatable commands run here; ADD is for the runtime to retry."""
    if command in _REPEATABLE:
        return Fallback(f"in-process (the daemon at {path} took the {command} but did not answer: {why})", loud=True)
    return Failed(
        f"the multiplane daemon at {path} took the {command} but did not answer ({why}); "
        "the runtime's retry (DEL, then ADD) cleans up and runs it again"
    )


def _text(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
