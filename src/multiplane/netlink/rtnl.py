"""A synchronous rtnetlink socket bound to one network namespace.

Requests carry NLM_F_ACK and wait for their own acknowledgement; dumps are collected up to
NLMSG_DONE and retried (5 times) when the kernel flags them as interrupted, as the Go
`netlinksafe` package does. Kernel errors become `NetlinkError` with the errno, so callers
match on `errno`, never on text.
"""

from __future__ import annotations

import errno as errnos
import os
import socket
import struct

from multiplane.errors import CniError
from multiplane.netlink import pyroute2_messages
from multiplane.netlink.netns import entered

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "NLM_F_CREATE",
    "NLM_F_EXCL",
    "NLM_F_REPLACE",
    "NetlinkError",
    "RTM_DELADDR",
    "RTM_DELLINK",
    "RTM_GETADDR",
    "RTM_GETLINK",
    "RTM_GETROUTE",
    "RTM_NEWADDR",
    "RTM_NEWLINK",
    "RTM_NEWROUTE",
    "RTM_SETLINK",
    "Rtnl",
]

NETLINK_ROUTE = 0
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP_INTR = 0x1, 0x2, 0x4, 0x10
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
_HEADER = struct.Struct("=IHHII")
_DUMP_RETRIES = 5


class NetlinkError(CniError):
    """The kernel refused a request; `errno` says why."""

    def __init__(self, err: int, what: str = "") -> None:
        text = os.strerror(err).lower()
        super().__init__(f"{what}: {text}" if what else text)
        self.errno = err


class Rtnl:
    """One NETLINK_ROUTE socket, created inside netns `netns_fd` (None: the current one)."""

    def __init__(self, netns_fd: int | None = None) -> None:
        self.msgs = pyroute2_messages()
        with entered(netns_fd):
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, 0))
        self.seq = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def _send(self, msg: Any, msg_type: int, flags: int) -> int:
        self.seq += 1
        msg["header"]["type"] = msg_type
        msg["header"]["flags"] = flags
        msg["header"]["sequence_number"] = self.seq
        msg["header"]["pid"] = 0
        msg.encode()
        self.sock.send(msg.data)
        return self.seq

    def _replies(self, seq: int) -> Any:
        """Yield (type, flags, payload bytes) of the messages answering `seq`."""
        while True:
            data = self.sock.recv(1 << 20)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, msg_type, flags, msg_seq, _pid = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size:
                    return
                chunk = data[offset : offset + length]
                offset += (length + 3) & ~3
                if msg_seq != seq:
                    continue
                yield msg_type, flags, chunk

    def request(self, msg: Any, msg_type: int, flags: int = 0, what: str = "") -> None:
        """Send one change request and wait for its ack; NetlinkError on a kernel error."""
        seq = self._send(msg, msg_type, NLM_F_REQUEST | NLM_F_ACK | flags)
        for reply_type, _flags, chunk in self._replies(seq):
            if reply_type == NLMSG_ERROR:
                (err,) = struct.unpack_from("=i", chunk, _HEADER.size)
                if err:
                    raise NetlinkError(-err, what)
                return

    def get(self, msg: Any, msg_type: int, decode_as: Any, what: str = "") -> Any:
        """A single GET (e.g. a link by name): the decoded answer, or NetlinkError."""
        seq = self._send(msg, msg_type, NLM_F_REQUEST)
        for reply_type, _flags, chunk in self._replies(seq):
            if reply_type == NLMSG_ERROR:
                (err,) = struct.unpack_from("=i", chunk, _HEADER.size)
                raise NetlinkError(-err if err else errnos.EIO, what)
            obj = decode_as(chunk)
            obj.decode()
            return obj
        raise NetlinkError(errnos.EIO, what)

    def dump(self, msg: Any, msg_type: int, decode_as: Any) -> list[Any]:
        """All objects of a GET dump, decoded with the pyroute2 class `decode_as`."""
        for _attempt in range(_DUMP_RETRIES):
            out, interrupted = [], False
            seq = self._send(msg, msg_type, NLM_F_REQUEST | NLM_F_DUMP)
            for reply_type, flags, chunk in self._replies(seq):
                if flags & NLM_F_DUMP_INTR:
                    interrupted = True
                if reply_type == NLMSG_DONE:
                    break
                if reply_type == NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", chunk, _HEADER.size)
                    raise NetlinkError(-err, "dump")
                obj = decode_as(chunk)
                obj.decode()
                out.append(obj)
            if not interrupted:
                return out
        raise NetlinkError(errnos.EINTR, "netlink dump kept being interrupted")
