"""The JSON Schemas exported from the models for editors (docs/schemas/*.json), and writing them.

A file's `$id` is its own name, so the files refer to each other wherever they are served from.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema

from multiplane.tools.validate.schemas.kubernetes import NetworkAttachmentDefinition
from multiplane.tools.validate.schemas.meta import MultiplaneConfig
from multiplane.tools.validate.schemas.network import NetworkConfigList, Plugin
from multiplane.tools.validate.schemas.selection import Selections

__all__ = ["SCHEMAS", "json_schemas", "render_schema", "write_schemas"]

# file name → (the type, title, description)
SCHEMAS: dict[str, tuple[Any, str, str]] = {
    "network-attachment-definition.schema.json": (
        NetworkAttachmentDefinition,
        "NetworkAttachmentDefinition",
        "A k8s.cni.cncf.io/v1 NetworkAttachmentDefinition as multiplane reads it; spec.config holds "
        "cni-config.schema.json as JSON text.",
    ),
    "cni-config.schema.json": (
        Annotated[Union[NetworkConfigList, Plugin], Field()],
        "CNI network configuration",
        "One plugin's configuration or a conflist, as multiplane runs it (macvlan, bridge, host-local "
        "IPAM, the meta-plugin; other plugins by their header). Keys are matched case-insensitively by "
        "the plugins; this schema uses their canonical spelling.",
    ),
    "multiplane-config.schema.json": (
        MultiplaneConfig,
        "00-multiplane.conf",
        "The meta-plugin's configuration (docs/meta-plugin.md).",
    ),
    "network-selection.schema.json": (
        Selections,
        "k8s.v1.cni.cncf.io/networks (JSON form)",
        "The JSON form of the pod annotation selecting networks; the text form is "
        "`[<namespace>/]<name>[@<interface>]`, comma-separated.",
    ),
}


class _Generator(GenerateJsonSchema):
    """No generated per-field titles ("Cniversion"): the key is the title; descriptions say the rest."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _finish(name: str, body: dict[str, Any]) -> dict[str, Any]:
    """What pydantic cannot say: a NAD's spec.config is cni-config.schema.json as JSON text.

    (A plugin's `name` stays optional: a NAD's config takes the NAD's name, and a conflist
    gives its own to its plugins; validate requires it where nothing supplies it.)
    """
    if name == "network-attachment-definition.schema.json":
        body["$defs"]["NadSpec"]["properties"]["config"]["contentSchema"] = {"$ref": "cni-config.schema.json"}
    return body


def json_schemas() -> dict[str, dict[str, Any]]:
    """Every exported schema by file name (what docs/schemas/ must hold)."""
    out: dict[str, dict[str, Any]] = {}
    for name, (kind, title, description) in SCHEMAS.items():
        body = TypeAdapter(kind).json_schema(mode="validation", schema_generator=_Generator)
        body.pop("title", None)
        body.pop("description", None)
        out[name] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": name,  # relative: the files refer to each other wherever they are served from
            "title": title,
            "description": description,
            **_finish(name, body),
        }
    return out


def render_schema(schema: dict[str, Any]) -> str:
    """The text of a schema file: 2-space JSON, keys in model order, one trailing newline."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write_schemas(directory: str) -> list[str]:
    """Write every schema file into `directory` (made if missing); the paths written. OSError if it cannot."""
    os.makedirs(directory, exist_ok=True)
    written = []
    for name, schema in json_schemas().items():
        path = os.path.join(directory, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(render_schema(schema))
        written.append(path)
    return written
