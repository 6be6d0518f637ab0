"""The request configuration: the keys every plugin reads, parsed once (pure).

The raw stdin bytes travel beside the parsed object, so delegates get exactly what we got.
"""

from __future__ import annotations

from multiplane.errors import DecodingFailure, InvalidConfig
from multiplane.spec.args import valid_name
from multiplane.spec.gojson import field, json_type, load_object

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["NetConf", "capability_enabled", "runtime_config"]


class NetConf:
    """Header of a request config: `cni_version` is "0.1.0" when the key is absent or empty."""

    __slots__ = ("raw", "stdin", "name", "type", "cni_version")

    def __init__(self, raw: dict[str, Any], stdin: bytes, name: str, type: str, cni_version: str) -> None:
        self.raw, self.stdin, self.name, self.type, self.cni_version = raw, stdin, name, type, cni_version

    @classmethod
    def parse(cls, stdin: bytes) -> NetConf:
        """Decode and check the header like skel's validateConfig: 6 for bad JSON, 7 for the name."""
        obj = load_object(stdin) or {}
        for key in ("cniVersion", "name", "type"):
            value = field(obj, key)
            if value is not None and not isinstance(value, str):
                raise DecodingFailure(
                    "error unmarshall network config: json: cannot unmarshal "
                    f"{json_type(value)} into Go struct field NetConf.{key} of type string"
                )
        name = field(obj, "name") or ""
        if not name:
            raise InvalidConfig("missing network name")
        if not valid_name(name):
            raise InvalidConfig("invalid characters found in network name", name)
        return cls(obj, stdin, name, field(obj, "type") or "", field(obj, "cniVersion") or "0.1.0")

    def get(self, key: str) -> Any:
        return field(self.raw, key)


def runtime_config(conf: NetConf) -> dict[str, Any]:
    value = conf.get("runtimeConfig")
    return value if isinstance(value, dict) else {}


def capability_enabled(conf: NetConf, name: str) -> bool:
    caps = conf.get("capabilities")
    return isinstance(caps, dict) and caps.get(name) is True
