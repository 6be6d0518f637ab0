"""CNI spec versions: the supported list, parsing, comparison and per-command gates (pure)."""

from __future__ import annotations

from multiplane.errors import DecodingFailure

__all__ = [
    "CURRENT",
    "SUPPORTED",
    "at_least",
    "has_check",
    "has_gc_status",
    "has_ip_version",
    "has_multiple_ips",
    "parse",
]

SUPPORTED: tuple[str, ...] = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
CURRENT = "1.1.0"


def parse(version: str) -> tuple[int, int, int]:
    """Parse "X[.Y[.Z]]" like Go's version.ParseVersion; DecodingFailure (code 6) on garbage."""
    parts = version.split(".")
    if not 1 <= len(parts) <= 3:
        raise DecodingFailure(f"invalid version {version!r}: only major, minor and micro are allowed")
    nums: list[int] = []
    for part in parts:
        if not part.isdigit() or not part.isascii():
            raise DecodingFailure(f"failed to convert version {version!r}: {part!r} is not a number")
        nums.append(int(part))
    while len(nums) < 3:
        nums.append(0)
    return nums[0], nums[1], nums[2]


def at_least(version: str, minimum: str) -> bool:
    """version >= minimum; raises DecodingFailure when either does not parse."""
    return parse(version) >= parse(minimum)


def has_check(version: str) -> bool:
    return at_least(version, "0.4.0")


def has_gc_status(version: str) -> bool:
    return at_least(version, "1.1.0")


def has_ip_version(version: str) -> bool:
    """0.3.x and 0.4.0 results carry `ips[].version`."""
    return version in ("0.3.0", "0.3.1", "0.4.0")


def has_multiple_ips(version: str) -> bool:
    try:
        return at_least(version, "0.3.0")
    except DecodingFailure:
        return False
