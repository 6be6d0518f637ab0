"""The CNI invocation: CNI_* environment validated per command as skel does, and CNI_ARGS.

The order of checks and the error texts follow containernetworking/cni `pkg/skel` and
`pkg/types.LoadArgs`, so a runtime sees the same errors from us as from a Go plugin.
"""

from __future__ import annotations

from multiplane.errors import InvalidEnvironment

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

__all__ = [
    "COMMANDS",
    "CmdArgs",
    "parse_bool",
    "parse_cni_args",
    "printable",
    "validate_container_id",
    "validate_env_value",
    "validate_ifname",
    "valid_name",
]

COMMANDS = ("ADD", "CHECK", "DEL", "GC", "STATUS", "VERSION")

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_MAX_IFNAME = 15

# (variable, commands that require it); the order is skel's and fixes the order of the
# "required env variables [...] missing" list.
_ENV_TABLE: tuple[tuple[str, frozenset[str]], ...] = (
    ("CNI_COMMAND", frozenset(COMMANDS)),
    ("CNI_CONTAINERID", frozenset({"ADD", "CHECK", "DEL"})),
    ("CNI_NETNS", frozenset({"ADD", "CHECK"})),
    ("CNI_IFNAME", frozenset({"ADD", "CHECK", "DEL"})),
    ("CNI_ARGS", frozenset()),
    ("CNI_PATH", frozenset({"ADD", "CHECK", "DEL", "GC", "STATUS"})),
)


def valid_name(name: str) -> bool:
    r"""The spec's `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$` for network names and container ids.

    Checked without `re`: importing it costs a VERSION call ~4 ms, more than the call's work.
    """
    return bool(name) and name[0].isascii() and name[0].isalnum() and all(c in _NAME_CHARS for c in name)


def validate_container_id(value: str) -> None:
    if not valid_name(value):
        raise InvalidEnvironment("invalid characters in containerID", value)


def _is_utf8(value: str) -> bool:
    """False for text holding a lone surrogate: non-UTF-8 bytes of the environment (surrogateescape)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def printable(value: str) -> str:
    """`value` for a message: the bytes it came from, anything not UTF-8 or not printable as an escape."""
    try:
        text = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        text = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def validate_env_value(name: str, value: str) -> None:
    """A CNI_* value must be UTF-8 text without NUL; InvalidEnvironment (4) otherwise.

    Python hands non-UTF-8 bytes of the environment over as lone surrogates (surrogateescape);
    Go would pass them on as bytes and fail later, somewhere less clear. A NUL cannot come from
    a real environment, but a daemon forwarding a request could carry one.
    """
    if "\0" in value:
        raise InvalidEnvironment(f"{name} contains a NUL character", printable(value))
    if not _is_utf8(value):
        raise InvalidEnvironment(f"{name} is not valid UTF-8", printable(value))


def validate_ifname(value: str) -> None:
    """utils.ValidateInterfaceName: non-empty, ≤ 15 bytes, not . or .., no / : or whitespace.

    Also UTF-8 text without NUL (Go counts the bytes and lets the kernel refuse the rest).
    """
    if not value:
        raise InvalidEnvironment("interface name is empty")
    if not _is_utf8(value):
        raise InvalidEnvironment("interface name is not valid UTF-8", printable(value))
    if "\0" in value:
        raise InvalidEnvironment("interface name contains a NUL character", printable(value))
    if len(value.encode()) > _MAX_IFNAME:
        raise InvalidEnvironment(
            "interface name is too long", f"interface name should be less than {_MAX_IFNAME + 1} characters"
        )
    if value in (".", ".."):
        raise InvalidEnvironment("interface name is . or ..")
    if any(ch in "/:" or ch.isspace() for ch in value):
        raise InvalidEnvironment("interface name contains / or : or whitespace characters")


_VALIDATORS: dict[str, Callable[[str], None]] = {
    "CNI_CONTAINERID": validate_container_id,
    "CNI_IFNAME": validate_ifname,
}


class CmdArgs:
    """One invocation: the validated CNI_* variables, the raw stdin and the whole environment."""

    __slots__ = ("command", "container_id", "netns", "ifname", "args", "path", "stdin", "env")

    def __init__(
        self,
        command: str,
        container_id: str,
        netns: str,
        ifname: str,
        args: str,
        path: tuple[str, ...],
        stdin: bytes,
        env: Mapping[str, str],
    ) -> None:
        self.command, self.container_id, self.netns, self.ifname = command, container_id, netns, ifname
        self.args, self.path, self.stdin, self.env = args, path, stdin, env

    @classmethod
    def from_env(cls, env: Mapping[str, str], stdin: bytes = b"") -> CmdArgs:
        """Validate the environment for its command; InvalidEnvironment (4) names what is wrong.

        An empty value counts as missing, as in skel and libcni (which sends "" for unused ones).
        """
        command = env.get("CNI_COMMAND", "")
        missing: list[str] = []
        values: dict[str, str] = {}
        for name, required_for in _ENV_TABLE:
            value = env.get(name, "")
            values[name] = value
            if not value:
                if command in required_for or name == "CNI_COMMAND":
                    missing.append(name)
                continue
            if command != "VERSION":  # VERSION reads none of them; libcni sends dummies
                validate_env_value(name, value)
            if command in required_for and name in _VALIDATORS:
                _VALIDATORS[name](value)
        if missing:
            raise InvalidEnvironment(f"required env variables [{','.join(missing)}] missing")
        return cls(
            command=command,
            container_id=values["CNI_CONTAINERID"],
            netns=values["CNI_NETNS"],
            ifname=values["CNI_IFNAME"],
            args=values["CNI_ARGS"],
            path=tuple(p for p in values["CNI_PATH"].split(":") if p),
            stdin=stdin,
            env=env,
        )


def _go_quote(text: str) -> str:
    """Go's %q for a string (close enough: JSON escaping of printable ASCII matches)."""
    out = []
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif 0x20 <= ord(ch) < 0x7F or (ord(ch) > 0x7F and ch.isprintable()):
            out.append(ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        else:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
    return '"' + "".join(out) + '"'


def parse_bool(text: str) -> bool:
    """types.UnmarshallableBool: 1/true/0/false in any case."""
    lowered = text.lower()
    if lowered in ("1", "true"):
        return True
    if lowered in ("0", "false"):
        return False
    raise ValueError(f"boolean unmarshal error: invalid input {lowered}")


def parse_cni_args(text: str, known: Mapping[str, Callable[[str], Any]]) -> dict[str, Any]:
    """Strict CNI_ARGS parsing, as types.LoadArgs does it.

    `known` maps each accepted key (case-sensitive) to a value parser raising ValueError.
    `IgnoreUnknown` is always known. Unknown keys fail unless IgnoreUnknown is true; a
    known key with a bad value fails even then. The last occurrence of a key wins.
    Errors are InvalidEnvironment (4) with the reference texts.
    """
    parsers: dict[str, Callable[[str], Any]] = {"IgnoreUnknown": parse_bool, **known}
    values: dict[str, Any] = {}
    unknown: list[str] = []
    # Pair by pair, left to right, so the first problem is the one reported (as in Go).
    for pair in text.split(";") if text else ():
        parts = pair.split("=")
        if len(parts) != 2:
            raise InvalidEnvironment(f"ARGS: invalid pair {_go_quote(pair)}")
        key, raw = parts
        parser = parsers.get(key)
        if parser is None:
            unknown.append(f"{key}={raw}")
            continue
        try:
            values[key] = parser(raw)
        except ValueError as exc:
            raise InvalidEnvironment(f"ARGS: error parsing value of pair {_go_quote(f'{key}={raw}')}: {exc}") from exc
    if unknown and not values.get("IgnoreUnknown", False):
        raise InvalidEnvironment(f"ARGS: unknown args [{' '.join(_go_quote(u) for u in unknown)}]")
    return values
