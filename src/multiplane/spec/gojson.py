"""Read JSON and addresses the way the Go reference plugins do (pure, no I/O).

Go's encoding/json matches object keys to struct fields case-insensitively (the last
matching key wins), ignores unknown keys and treats `null` as "leave the zero value".
net.ParseIP / net.ParseCIDR are stricter than Python's ipaddress (no zones, no netmask
notation). These helpers give one place for those rules and for the error texts.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re

from multiplane.errors import DecodingFailure, InvalidConfig

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "IPAddress",
    "IPInterface",
    "field",
    "json_type",
    "load_object",
    "parse_cidr",
    "parse_ip",
    "parse_ip_maybe_cidr",
    "parse_mac",
    "want",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def _reject_constant(name: str) -> float:
    raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (math.inf, -math.inf):
        # Go: strconv.ParseFloat fails and the decoder reports the number.
        raise ValueError(f"json: cannot unmarshal number {text} into Go value of type float64")
    return value


# Only a \u escape can put a lone surrogate or a NUL into a decoded string: raw surrogates are
# not UTF-8 and raw control characters are not allowed in JSON strings.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:[dD][89a-fA-F]|0000)")
_SURROGATES = re.compile("[\ud800-\udfff]")


def _go_string(text: str, where: str) -> str:
    if "\0" in text:
        raise InvalidConfig(f"invalid network config: NUL character in a string at {where or '.'}")
    return _SURROGATES.sub("\ufffd", text)


def _go_strings(value: Any) -> Any:
    """Every string of a decoded document, Go's way: lone surrogates → U+FFFD; a NUL → InvalidConfig.

    Iterative, so a document nested as deep as the decoder allows cannot exhaust the stack.
    """
    if isinstance(value, str):
        return _go_string(value, "")
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            items = list(node.items())
            node.clear()
            for raw_key, item in items:
                key = _go_string(raw_key, where)
                path = f"{where}.{key}"
                if isinstance(item, str):
                    item = _go_string(item, path)
                elif isinstance(item, (dict, list)):
                    stack.append((item, path))
                node[key] = item
        elif isinstance(node, list):
            for index, item in enumerate(node):
                path = f"{where}[{index}]"
                if isinstance(item, str):
                    node[index] = _go_string(item, path)
                elif isinstance(item, (dict, list)):
                    stack.append((item, path))
    return value


def load_object(data: bytes) -> dict[str, Any] | None:
    """Decode stdin JSON; DecodingFailure (6) unless it is an object (or null, as Go allows).

    Go's rules where Python's decoder differs: the input must be UTF-8 (Python would also
    take UTF-16 and UTF-32), nesting too deep to decode is a decoding failure, a number
    beyond float64 is refused rather than read as infinity, and a `\\ud800`-style escape
    that is not half of a surrogate pair decodes to U+FFFD, so no string we hand on is
    unencodable. Unlike Go, a NUL character (`\\u0000`) anywhere in the document is an
    invalid configuration (7): it could only end in a failed open or exec further on.
    """
    try:
        text = data.decode("utf-8")
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError as exc:
        raise DecodingFailure("error unmarshall network config: exceeded max depth") from exc
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        detail = "unexpected end of JSON input" if not data.strip() else str(exc)
        raise DecodingFailure(f"error unmarshall network config: {detail}") from exc
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DecodingFailure(
            f"error unmarshall network config: json: cannot unmarshal {json_type(value)} into Go value of type types.NetConf"
        )
    if _SUSPECT_ESCAPE.search(text):
        value = _go_strings(value)
    return value


def json_type(value: object) -> str:
    """The JSON type name Go uses in unmarshal errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def field(obj: dict[str, Any], name: str) -> Any:
    """Value of `name` in `obj`, matched case-insensitively like Go; None when absent or null.

    Keys that are not strings (possible in YAML, never in JSON) match nothing.
    """
    lowered = name.lower()
    if name in obj and not any(isinstance(k, str) and k != name and k.lower() == lowered for k in obj):
        return obj[name]
    found = None
    for key, value in obj.items():
        if isinstance(key, str) and key.lower() == lowered:
            found = value
    return found


_GO_TYPES = {str: "string", list: "array", dict: "object", int: "number", bool: "bool"}


def want(value: Any, kind: type, where: str, go_type: str) -> Any:
    """Check a decoded value's JSON type; InvalidConfig with Go's unmarshal text otherwise."""
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not ok:
        raise InvalidConfig(f"json: cannot unmarshal {json_type(value)} into Go struct field {where} of type {go_type}")
    return value


def parse_ip(text: str) -> IPAddress | None:
    """net.ParseIP: a bare IPv4 or IPv6 address, no zone, no prefix; None if invalid.

    IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are IPv4, as in Go.
    """
    if not text or "%" in text or "/" in text or not text.isascii():
        return None
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def parse_cidr(text: str) -> tuple[IPAddress, int, int]:
    """net.ParseCIDR, keeping host bits: (ip, prefix length, address bits).

    Raises ValueError("invalid CIDR address: <text>") like Go. A v4-mapped address keeps
    the 128-bit mask, which host-local later reports as a version mismatch.
    """
    ip_text, sep, plen = text.partition("/")
    addr = parse_ip(ip_text) if sep else None
    if addr is None or not plen.isdigit() or not plen.isascii():
        raise ValueError(f"invalid CIDR address: {text}")
    bits = 128 if ":" in ip_text else 32
    if int(plen) > bits:
        raise ValueError(f"invalid CIDR address: {text}")
    return addr, int(plen), bits


def parse_ip_maybe_cidr(text: str) -> IPAddress | None:
    """The plugins' ip.ParseIP: "a.b.c.d" or "a.b.c.d/len" (the prefix is dropped); None if invalid."""
    if "/" in text:
        try:
            return parse_cidr(text)[0]
        except ValueError:
            return None
    return parse_ip(text)


_HEX = frozenset("0123456789abcdefABCDEF")


def parse_mac(text: str) -> str:
    """Go's net.ParseMAC for 6-byte addresses (aa:bb…, aa-bb…, aabb.ccdd.eeff) → "aa:bb:cc:dd:ee:ff"."""
    parts: list[str] = []
    if len(text) == 17 and text[2] in ":-":
        parts = text.split(text[2])
    elif len(text) == 14 and text[4] == "." and text[9] == ".":
        parts = [g[i : i + 2] for g in text.split(".") for i in (0, 2)]
    if len(parts) != 6 or not all(len(p) == 2 and set(p) <= _HEX for p in parts):
        raise ValueError(f"address {text}: invalid MAC address")
    return ":".join(p.lower() for p in parts)
