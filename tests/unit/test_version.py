"""multiplane.spec.version: the supported list, parsing like Go's version.ParseVersion, and the gates."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multiplane.errors import DecodingFailure
from multiplane.spec import version


def test_supported_list_and_current() -> None:
    """All seven spec versions are supported, in order, and 1.1.0 is the newest."""
    assert version.SUPPORTED == ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
    assert version.CURRENT == "1.1.0"


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("0.1.0", (0, 1, 0)), ("1.1.0", (1, 1, 0)), ("1", (1, 0, 0)), ("0.4", (0, 4, 0)), ("10.20.30", (10, 20, 30))],
)
def test_parse(text: str, parsed: tuple[int, int, int]) -> None:
    """One to three dot-separated numbers parse, missing parts being 0."""
    assert version.parse(text) == parsed


@pytest.mark.parametrize(
    "text", ["adsf", "1.0.0.0", "1..0", "v1.0.0", "1.0.x", "1.0.", ".1", "1.0.0 ", "\u0661.\u0660.\u0660", "1,0"]
)
def test_parse_garbage_is_code_6(text: str) -> None:
    """A version that does not parse raises DecodingFailure (code 6)."""
    with pytest.raises(DecodingFailure) as info:
        version.parse(text)
    assert info.value.code == 6


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("0.4.0", "0.4.0", True),
        ("1.0.0", "0.4.0", True),
        ("0.3.1", "0.4.0", False),
        ("0.10.0", "0.4.0", True),  # numeric, not string, comparison
        ("0.4.0", "0.10.0", False),
        ("1.1", "1.1.0", True),
        ("1", "1.0.1", False),
    ],
)
def test_at_least(a: str, b: str, expected: bool) -> None:
    """at_least compares versions numerically part by part."""
    assert version.at_least(a, b) is expected


@pytest.mark.parametrize(("a", "b"), [("adsf", "0.4.0"), ("0.4.0", "x.y")])
def test_at_least_garbage_is_code_6(a: str, b: str) -> None:
    """at_least raises DecodingFailure when either side does not parse."""
    with pytest.raises(DecodingFailure):
        version.at_least(a, b)


@pytest.mark.parametrize(
    ("text", "check", "gc_status", "ip_version"),
    [
        ("0.1.0", False, False, False),
        ("0.2.0", False, False, False),
        ("0.3.0", False, False, True),
        ("0.3.1", False, False, True),
        ("0.4.0", True, False, True),
        ("1.0.0", True, False, False),
        ("1.1.0", True, True, False),
        ("2.0.0", True, True, False),
    ],
)
def test_capability_predicates(text: str, check: bool, gc_status: bool, ip_version: bool) -> None:
    """CHECK starts at 0.4.0, GC/STATUS at 1.1.0, and only 0.3.x/0.4.0 results carry ips[].version."""
    assert version.has_check(text) is check
    assert version.has_gc_status(text) is gc_status
    assert version.has_ip_version(text) is ip_version


@pytest.mark.parametrize("predicate", [version.has_check, version.has_gc_status])
def test_predicates_reject_garbage(predicate: Callable[[str], bool]) -> None:
    """The gate predicates raise DecodingFailure (code 6) on an unparseable version."""
    with pytest.raises(DecodingFailure):
        predicate("adsf")


@pytest.mark.parametrize(("text", "expected"), [("0.2.0", False), ("0.3.0", True), ("1.1.0", True), ("adsf", False)])
def test_has_multiple_ips(text: str, expected: bool) -> None:
    """Results from 0.3.0 on hold a list of IPs; garbage is treated as the old shape."""
    assert version.has_multiple_ips(text) is expected


_PART = st.integers(min_value=0, max_value=10_000)


@given(st.tuples(_PART, _PART, _PART), st.tuples(_PART, _PART, _PART))
def test_at_least_matches_tuple_order(a: tuple[int, int, int], b: tuple[int, int, int]) -> None:
    """For any two versions, at_least agrees with comparing (major, minor, micro) tuples."""
    text_a, text_b = ".".join(map(str, a)), ".".join(map(str, b))
    assert version.parse(text_a) == a
    assert version.at_least(text_a, text_b) is (a >= b)
