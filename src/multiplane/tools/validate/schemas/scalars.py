"""The scalar types the models share: CIDRs, addresses, paths, names, versions, and keys read leniently.

Each validator uses the CNI path's own helper (Go's ParseIP/ParseCIDR in spec/gojson.py, the
Kubernetes name rules in k8s/names.py), so a value means the same thing to both readers.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

from multiplane.k8s.names import is_label, is_subdomain
from multiplane.spec import version as versions
from multiplane.spec.args import valid_name
from multiplane.spec.gojson import parse_cidr, parse_ip, parse_ip_maybe_cidr
from multiplane.tools.validate.schemas.errors import fail, quote

__all__ = [
    "AbsPath",
    "Cidr",
    "CniVersion",
    "GoInt",
    "IpAddress",
    "IpMaybeCidr",
    "IpOrEmpty",
    "Label",
    "NetworkName",
    "NetworkRef",
    "Subdomain",
    "falsy_none",
    "label",
    "loose",
    "subdomain",
]


def _integral(value: Any) -> Any:
    """1500.0 is 1500, as macvlan's reader takes it (a bool stays a bool and is refused)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def falsy_none(value: Any) -> Any:
    """Keys the CNI path reads with `if obj.get(key):` treat every falsy value as absent."""
    return None if not value else value


def _cidr(value: str) -> str:
    try:
        parse_cidr(value)
    except ValueError:
        fail(f"not a CIDR (address/prefix length): {quote(value)}")
    return value


def _ip_or_empty(value: str) -> str:
    if value and parse_ip(value) is None:
        fail(f"not an IP address: {quote(value)}")
    return value


def _ip(value: str) -> str:
    if parse_ip(value) is None:
        fail(f"not an IP address: {quote(value)}")
    return value


def _ip_maybe_cidr(value: str) -> str:
    if value == "":
        fail("an empty string is not an IP address")
    if parse_ip_maybe_cidr(value) is None:
        fail(f"not an IP address (with or without /prefix): {quote(value)}")
    return value


def _abs_path(value: str) -> str:
    """ "" means the default; anything else must be absolute, without `..` and NUL."""
    if value and (not value.startswith("/") or ".." in value.split("/") or "\0" in value):
        fail(f"{quote(value)} must be an absolute path without '..'")
    return value


def _network_ref(value: str) -> str:
    """clusterNetwork/defaultNetworks: a name, or (with a '/') a path that must be absolute."""
    if "/" in value:
        _abs_path(value)
    return value


def _network_name(value: str) -> str:
    if not value:
        fail("missing network name")
    if not valid_name(value):
        fail(
            f"invalid characters found in network name {quote(value)} "
            "(letters, digits, '_', '.', '-'; starting with a letter or digit)"
        )
    return value


def _cni_version(value: str) -> str:
    if value and value not in versions.SUPPORTED:
        fail(f"unsupported cniVersion {quote(value)} (supported: {', '.join(versions.SUPPORTED)})")
    return value


def subdomain(value: str) -> str:
    """A DNS-1123 subdomain, or a located error."""
    if not is_subdomain(value):
        fail(f"{quote(value)} is not a valid DNS-1123 subdomain (lower case letters, digits, '-', '.')")
    return value


def label(value: str) -> str:
    """A DNS-1123 label, or a located error."""
    if not is_label(value):
        fail(f"{quote(value)} is not a valid DNS-1123 label (lower case letters, digits, '-'; at most 63)")
    return value


GoInt = Annotated[int, BeforeValidator(_integral)]
Cidr = Annotated[str, AfterValidator(_cidr), Field(description="a CIDR, e.g. 10.1.2.0/24 or 2001:db8::/64")]
IpOrEmpty = Annotated[str, AfterValidator(_ip_or_empty), Field(description="an IP address; empty means unset")]
IpAddress = Annotated[str, AfterValidator(_ip), Field(description="an IP address")]
IpMaybeCidr = Annotated[
    str, AfterValidator(_ip_maybe_cidr), Field(description="an IP address, optionally with /prefix (dropped)")
]
AbsPath = Annotated[
    str, AfterValidator(_abs_path), Field(description="an absolute path without '..'; empty means the default")
]
NetworkRef = Annotated[
    str, AfterValidator(_network_ref), Field(description="a NAD or CNI network name, or an absolute path")
]
NetworkName = Annotated[
    str,
    AfterValidator(_network_name),
    Field(description="the CNI network name", json_schema_extra={"pattern": r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$"}),
]
CniVersion = Annotated[
    str,
    AfterValidator(_cni_version),
    Field(description="the CNI spec version; empty or absent means 0.1.0", examples=["1.0.0"]),
    WithJsonSchema({"type": "string", "enum": ["", *versions.SUPPORTED]}),
]
# Patterns and lengths are for editors only (json_schema_extra): the validators above decide, with their own texts.
Subdomain = Annotated[
    str,
    AfterValidator(subdomain),
    Field(
        json_schema_extra={
            "maxLength": 253,
            "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        }
    ),
]
Label = Annotated[
    str,
    AfterValidator(label),
    Field(json_schema_extra={"maxLength": 63, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}),
]


def loose(schema: dict[str, Any]) -> Any:
    """A key the CNI path reads leniently (or not at all): any value validates; editors see `schema`.

    `multiplane validate` warns about such values where the CNI path ignores them.
    """
    return Annotated[Any, WithJsonSchema(schema)]
