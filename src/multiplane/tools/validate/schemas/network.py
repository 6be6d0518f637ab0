"""A CNI configuration as a whole: one plugin, chosen by its `type`, or a conflist of them.

`PLUGIN` validates one plugin's config; the tags (`<macvlan>`, …) it puts in `loc` are not keys.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import ConfigDict, Discriminator, Field, Tag, TypeAdapter

from multiplane.spec.gojson import field
from multiplane.tools.validate.schemas.base import GoObject
from multiplane.tools.validate.schemas.meta import MultiplaneConfig
from multiplane.tools.validate.schemas.plugins import MACVLAN_TYPES, BridgePlugin, GenericPlugin, MacvlanPlugin
from multiplane.tools.validate.schemas.scalars import CniVersion, NetworkName, loose

__all__ = ["PLUGIN", "NetworkConfigList", "Plugin"]

LooseAny = loose({})


def _plugin_tag(value: Any) -> str:
    kind = field(value, "type") if isinstance(value, dict) else None
    if kind in MACVLAN_TYPES:
        return "<macvlan>"
    if kind == "bridge":
        return "<bridge>"
    if kind == "multiplane":
        return "<multiplane>"
    return "<plugin>"


Plugin = Annotated[
    Union[
        Annotated[MacvlanPlugin, Tag("<macvlan>")],
        Annotated[BridgePlugin, Tag("<bridge>")],
        Annotated[MultiplaneConfig, Tag("<multiplane>")],
        Annotated[GenericPlugin, Tag("<plugin>")],
    ],
    Discriminator(_plugin_tag),
]
PLUGIN: TypeAdapter[Any] = TypeAdapter(Plugin)


class NetworkConfigList(GoObject):
    """A conflist: plugins run in order, each given the list's `name` and `cniVersion`."""

    model_config = ConfigDict(json_schema_extra={"not": {"required": ["type"]}})

    cniVersion: CniVersion | None = None
    name: NetworkName
    plugins: Annotated[list[Plugin], Field(min_length=1)]
    disableCheck: LooseAny = None
    disableGC: LooseAny = None
