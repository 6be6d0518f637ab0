"""Hostile values for the fuzz suite: what a compromised or broken node can put in front of a plugin.

Everything here is data; `tests/fuzz/harness.py` runs it. Configs are built as Python
objects and serialised with `dumps`, which writes lone surrogates as `\\ud800` escapes (as
a hostile JSON writer would) and splices in `Raw` JSON text that Python cannot build as an
object (nesting deeper than its own recursion limit).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

# ---- text ------------------------------------------------------------------------------------

# Any code point: lone surrogates, NUL and control characters included (hypothesis leaves
# category Cs out by default).
ANY_CHAR = st.characters(exclude_categories=())
ANY_TEXT = st.text(alphabet=ANY_CHAR, max_size=24)

SPECIAL_TEXT = (
    "",
    " ",
    ".",
    "..",
    "/",
    "../..",
    "../../etc/passwd",
    "a/b",
    "a\\b",
    "\0",
    "a\0b",
    "\ud800",
    "\udfff",
    "\udc80x",
    "x\ud83d",
    "\U0001f600",
    "é",
    "\u2028",
    "\t",
    "\n",
    "eth0",
    "net1",
    "lo",
    "-",
    "=",
    ";",
    ",",
    "@",
    "a@b@c",
    "ns/name@net1",
    "IgnoreUnknown=1",
    "<script>",
    "&amp;",
    "%s%n",
    "${HOME}",
    "10.0.0.1",
    "10.0.0.1/24",
    "::1",
    "fe80::1%eth0",
    "0a:58:0a:01:02:03",
    "1.1.0",
    "0.4.0",
    "99.0.0",
    "1.0",
    "1",
    "true",
    "null",
)

LONG_TEXT = st.sampled_from((300, 5_000, 70_000)).map(lambda n: "a" * n)

HOSTILE_TEXT = st.one_of(
    st.sampled_from(SPECIAL_TEXT),
    ANY_TEXT,
    st.text(alphabet=st.sampled_from("ab0-._/@,;=:\\ \0\ud800é"), max_size=20),
    LONG_TEXT,
)


class Raw:
    """JSON text to splice into a document as is (deep nesting Python itself cannot serialise)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:40]!r}{'…' if len(self.text) > 40 else ''}, {len(self.text)} chars)"


def nested(depth: int, kind: str) -> Raw:
    opener, closer = ("[", "]") if kind == "array" else ('{"a":', "}")
    return Raw(opener * depth + "1" + closer * depth)


DEEP = st.builds(nested, st.sampled_from((50, 400, 900, 990, 1_500, 5_000)), st.sampled_from(("array", "object")))

SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from((0, -1, 1, 15, 16, 65535, 65536, 2**31, 2**63, 2**64)),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from((Raw("1e999"), Raw("-1e999"), Raw("1" * 5000), Raw("0.1e-400"))),
)

ODD = st.recursive(
    st.one_of(SCALAR, HOSTILE_TEXT),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.one_of(HOSTILE_TEXT, st.just("type")), inner, max_size=3)
    ),
    max_leaves=6,
)
"""Any JSON value, hostile text and odd numbers included; used where a field expects something specific."""

HOSTILE_VALUE = st.one_of(ODD, DEEP)


def dumps(obj: Any) -> bytes:
    """JSON with `Raw` pieces spliced in; lone surrogates come out as `\\udXXX` escapes."""
    pieces: list[str] = []

    def swap(value: Any) -> Any:
        if isinstance(value, Raw):
            pieces.append(value.text)
            return f"@@mp-raw-{len(pieces) - 1}@@"
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    text = json.dumps(swap(obj))
    for index, piece in enumerate(pieces):
        text = text.replace(f'"@@mp-raw-{index}@@"', piece, 1)
    return text.encode()


# ---- whole documents on stdin -----------------------------------------------------------------

GARBAGE_STDIN = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        (
            b"",
            b" ",
            b"null",
            b"[]",
            b"{}",
            b"{",
            b'"x"',
            b"1e999",
            b"NaN",
            b"[" * 3000,
            b'{"a":' * 3000,
            b"[" * 100_000,
            b"\xef\xbb\xbf{}",
            '{"name": "n"}'.encode("utf-16"),
            b'{"name": "n", "cniVersion": "1.0.0", "type": "x", "a": "\xff\xfe"}',
            b'{"name": "n", "cniVersion": "1.0.0", "type": "x", "a": "\xed\xa0\x80"}',
            b'{"name": "n", "cniVersion": "1.0.0", "type": "x", "a": "\x00"}',
            b'{"name": "n", "cniVersion": "1.0.0", "type": "x", "a": 1, "a": {"b": [' + b"1," * 200_000 + b"1]}}",
            b'{"name": "n", "cniVersion": "1.0.0", "type": "x", "big": "' + b"x" * 2_000_000 + b'"}',
        )
    ),
)

# ---- the environment --------------------------------------------------------------------------

COMMANDS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")
COMMAND = st.one_of(st.sampled_from(COMMANDS), st.sampled_from(("add", "NOPE", "ADD ", "")))

# Bytes as a runtime's execve hands them over (never a NUL); the harness decodes them the way
# Python decodes os.environ (UTF-8, surrogateescape).
ENV_BYTES = st.one_of(
    st.binary(max_size=24).map(lambda b: b.replace(b"\0", b"")),
    st.sampled_from(
        (
            b"\xff",
            b"eth\xff",
            b"\xc3",
            b"\xed\xa0\x80",
            b"\xe2\x80\xa8",
            b"a" * 16,
            b"a" * 5000,
            b"/",
            b"..",
            b"a:b",
            b"a b",
            b"eth0\n",
            b"-x",
        )
    ),
)

POD_ARGS = ("K8S_POD_NAMESPACE", "K8S_POD_NAME", "K8S_POD_UID", "K8S_POD_INFRA_CONTAINER_ID")
ARG_KEYS = ("IgnoreUnknown", "IP", "MAC", *POD_ARGS, "MULTIPLANE_NETWORKS", "MULTIPLANE_DEFAULT_NETWORK", "FOO")


def _pair(key: str, value: str, sep: str) -> str:
    return f"{key}{sep}{value}"


CNI_ARGS_TEXT = st.one_of(
    st.lists(
        st.builds(
            _pair,
            st.one_of(st.sampled_from(ARG_KEYS), HOSTILE_TEXT),
            st.one_of(st.sampled_from(("1", "true", "yes", "", "10.0.0.5", "mp-app", "mp-web")), HOSTILE_TEXT),
            st.sampled_from(("=", "=", "=", "==", "")),
        ),
        max_size=6,
    ).map(";".join),
    HOSTILE_TEXT,
)
