"""The JSON form of the `k8s.v1.cni.cncf.io/networks` annotation: each selection, and the whole list.

Keys are case-sensitive here, as the meta-plugin's selection reader takes them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, TypeAdapter, model_validator

from multiplane.spec.gojson import parse_ip, parse_mac
from multiplane.tools.validate.schemas.base import K8sObject
from multiplane.tools.validate.schemas.errors import fail, quote
from multiplane.tools.validate.schemas.scalars import IpAddress, IpMaybeCidr, falsy_none, label, subdomain

__all__ = ["SELECTIONS", "NetworkSelection", "Selections"]


def _label_or_empty(value: str) -> str:
    return label(value) if value else value


def _selection_name(value: str) -> str:
    if not value:
        fail("a selection has no name")
    return subdomain(value)


def _ifname(value: str) -> str:
    if len(value) > 15:
        fail(f"interface name too long: {quote(value)} (at most 15 characters)")
    if any(ch.isspace() or ch == "/" for ch in value):
        fail(f"interface name {quote(value)} contains whitespace or '/'")
    return value


def _mac(value: str) -> str:
    try:
        parse_mac(value)
    except ValueError:
        fail(f"not a MAC address: {quote(value)} (aa:bb:cc:dd:ee:ff, aa-bb-…, aabb.ccdd.eeff)")
    return value


def _guid(value: str) -> str:
    """An InfiniBand GUID: a MAC, or 8 or 20 colon-separated hex bytes (as selection.py reads it)."""
    parts = value.split(":")
    if len(parts) in (8, 20) and all(len(p) == 2 for p in parts):
        try:
            bytes.fromhex("".join(parts))
            return value
        except ValueError:
            pass
    try:
        parse_mac(value)
    except ValueError:
        fail(f"not an InfiniBand GUID: {quote(value)}")
    return value


IfName = Annotated[str, AfterValidator(_ifname), Field(json_schema_extra={"maxLength": 15, "pattern": r"^[^\s/]*$"})]


class NetworkSelection(K8sObject):
    """One element of the JSON form of `k8s.v1.cni.cncf.io/networks` (keys are case-sensitive)."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)

    name: Annotated[str, AfterValidator(_selection_name), Field(description="the NAD's name")]
    namespace: Annotated[str, AfterValidator(_label_or_empty)] | None = None
    interface: IfName | None = None
    interfaceRequest: IfName | None = None
    ips: list[IpMaybeCidr] | None = None
    mac: Annotated[Annotated[str, AfterValidator(_mac)] | None, BeforeValidator(falsy_none)] = None
    infiniband_guid: Annotated[Annotated[str, AfterValidator(_guid)] | None, BeforeValidator(falsy_none)] = Field(
        None, alias="infiniband-guid"
    )
    default_route: list[IpAddress] | None = Field(None, alias="default-route")
    portMappings: list[Any] | None = None
    bandwidth: dict[str, Any] | None = None
    cni_args: dict[str, Any] | None = Field(None, alias="cni-args")
    deviceID: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _interface_request(cls, data: Any) -> Any:
        # `interfaceRequest` is read only when `interface` is empty.
        if isinstance(data, dict) and data.get("interface") and "interfaceRequest" in data:
            data = {k: v for k, v in data.items() if k != "interfaceRequest"}
        return data


def _one_gateway_per_family(items: list[NetworkSelection]) -> list[NetworkSelection]:
    counts = {4: 0, 6: 0}
    for item in items:
        for gw in item.default_route or []:
            counts[parse_ip(gw).version] += 1  # type: ignore[union-attr]
    if counts[4] > 1 or counts[6] > 1:
        fail("at most one IPv4 and one IPv6 default-route gateway in a pod (multiplane does not support ECMP)")
    return items


Selections = Annotated[list[NetworkSelection], AfterValidator(_one_gateway_per_family)]
SELECTIONS: TypeAdapter[Any] = TypeAdapter(Selections)
