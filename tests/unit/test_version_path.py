"""VERSION's fast path: the same answers as the json package, without importing it (or `re`).

A runtime's VERSION call is pure start-up cost, so skel reads the request with the json
package's C scanner and writes the reply with `go_string`; container ids are checked
without `re`. These tests hold the fast path to the slow one's answers, and record the
import budget of a VERSION call.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from multiplane import skel
from multiplane.errors import go_json, go_string
from multiplane.spec import version as versions
from multiplane.spec.args import valid_name

SRC = Path(__file__).resolve().parents[2] / "src"
_SPEC_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")


def _slow_requested(stdin: bytes) -> str:
    """The old reading: json.loads, then a string cniVersion; "" when anything is off."""
    try:
        obj = json.loads(stdin.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return ""
    version = obj.get("cniVersion") if isinstance(obj, dict) else None
    return version if isinstance(version, str) else ""


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=400)
@given(
    version=st.text(),
    extra=st.dictionaries(st.text(max_size=6), json_values, max_size=3),
    pad=st.sampled_from(["", " ", "\n\t "]),
)
def test_requested_version_matches_json_loads_on_objects(version: str, extra: dict[str, object], pad: str) -> None:
    """For any JSON object (any cniVersion text, surrogates included), the fast read equals json.loads'."""
    doc = pad + json.dumps({**extra, "cniVersion": version}) + pad
    assert skel._requested_version(doc.encode("utf-8", "surrogatepass")) == _slow_requested(
        doc.encode("utf-8", "surrogatepass")
    )


@settings(max_examples=400)
@given(raw=st.binary(max_size=40) | st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_requested_version_matches_json_loads_on_garbage(raw: bytes) -> None:
    """On arbitrary bytes the fast read agrees with json.loads' reading (usually: nothing requested)."""
    assert skel._requested_version(raw) == _slow_requested(raw)


def test_requested_version_edge_cases() -> None:
    """Trailing data, NaN, nesting and non-objects give nothing; a valid object gives its version."""
    assert skel._requested_version(b'{"cniVersion":"0.4.0"}') == "0.4.0"
    assert skel._requested_version(b' {"cniVersion":"0.4.0"} x') == ""
    assert skel._requested_version(b'{"cniVersion":"0.4.0","n":NaN}') == ""
    assert skel._requested_version(b"[" * 5000) == ""
    assert skel._requested_version(b'"0.4.0"') == ""
    assert skel._requested_version(b'{"cniVersion":4}') == ""


@given(st.text())
def test_go_string_is_go_json_of_a_string(text: str) -> None:
    """go_string writes exactly what go_json writes for the same string (HTML escapes, U+FFFD for surrogates)."""
    assert go_string(text) == go_json(text, indent=None)


def test_version_reply_is_go_json_plus_newline() -> None:
    """The reply is byte for byte go_json(…, indent=None) + a newline, as before the fast path."""
    for stdin in (b'{"cniVersion":"0.4.0"}', b"", b'{"cniVersion":"<&\\ud800>"}'):
        want = go_json(
            {
                "cniVersion": skel._requested_version(stdin) or versions.CURRENT,
                "supportedVersions": list(versions.SUPPORTED),
            },
            indent=None,
        )
        assert skel._version_reply(stdin) == want + "\n"


@given(st.text(max_size=12))
def test_valid_name_matches_the_spec_regex(name: str) -> None:
    """The regex-free check accepts exactly what the spec's regex accepts."""
    assert valid_name(name) == (_SPEC_NAME.fullmatch(name) is not None)


def test_version_call_imports_neither_json_nor_re() -> None:
    """Import budget of a VERSION call: no json, re, enum or ipaddress; only these multiplane modules."""
    from tests.unit.test_import_budget import call

    loaded, stdout = call("multiplane-host-local", {"CNI_COMMAND": "VERSION"}, b'{"cniVersion":"0.3.1"}')
    assert stdout.startswith(b'{"cniVersion":"0.3.1"')
    assert sorted(loaded & {"json", "re", "enum", "ipaddress", "typing", "dataclasses"}) == []
    ours = sorted(m for m in loaded if m.startswith("multiplane"))
    assert ours == [
        "multiplane",
        "multiplane.cli",
        "multiplane.errors",
        "multiplane.frontdoor",
        "multiplane.invoke",
        "multiplane.plugins",
        "multiplane.skel",
        "multiplane.spec",
        "multiplane.spec.args",
        "multiplane.spec.version",
    ]


def test_last_resort_answer_is_the_error_object_to_json_would_write() -> None:
    """skel's spelled-out last-resort answer is exactly CniError(...).to_json(CURRENT)."""
    from multiplane.errors import CniError

    msg = "internal error: the answer could not be encoded (see stderr)"
    assert skel._LAST_RESORT == CniError(msg).to_json(versions.CURRENT)
    assert skel._LAST_RESORT.isascii()
