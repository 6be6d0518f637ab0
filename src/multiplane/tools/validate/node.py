"""This host's own addresses, read from /proc (what `--node-address` defaults to), for the pool warnings.

Read-only and best effort: a /proc that cannot tell gives no addresses, never an error.
"""

from __future__ import annotations

import ipaddress
import os

from multiplane.spec.gojson import parse_ip

__all__ = ["node_addresses", "parse_fib_trie", "parse_if_inet6"]


def parse_fib_trie(text: str) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses this host owns, from /proc/net/fib_trie (each `|-- a.b.c.d` followed by `/32 host LOCAL`)."""
    found: list[ipaddress.IPv4Address] = []
    last = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|--"):
            last = stripped[3:].strip()
        elif stripped.startswith("/32 host LOCAL") and last:
            addr = parse_ip(last)
            if isinstance(addr, ipaddress.IPv4Address) and not addr.is_loopback and addr not in found:
                found.append(addr)
    return found


def parse_if_inet6(text: str) -> list[ipaddress.IPv6Address]:
    """IPv6 addresses of this host's interfaces, from /proc/net/if_inet6 (no loopback, no link-local)."""
    found: list[ipaddress.IPv6Address] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 6 or len(parts[0]) != 32:
            continue
        try:
            addr = ipaddress.IPv6Address(int(parts[0], 16))
        except ValueError:
            continue
        if not (addr.is_loopback or addr.is_link_local) and addr not in found:
            found.append(addr)
    return found


def node_addresses(proc: str = "/proc") -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """This host's addresses (what `--node-address` defaults to); [] where /proc cannot tell."""
    out: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for name, parse in (("net/fib_trie", parse_fib_trie), ("net/if_inet6", parse_if_inet6)):
        try:
            with open(os.path.join(proc, name), encoding="ascii", errors="replace") as fh:
                out.extend(parse(fh.read()))
        except OSError:
            continue
    return out
