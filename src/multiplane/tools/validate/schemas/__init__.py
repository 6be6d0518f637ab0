"""pydantic models (v2) of what operators write for multiplane, and the JSON Schemas exported from them.

Only the operator tools import this package (`multiplane validate`; later the daemon may).

The per-call CNI path decodes with its own fast readers (spec/netconf.py, plugins/meta/config.py,
plugins/meta/selection.py, plugins/meta/networks.py, plugins/macvlan.py, ipam/config.py) and
never imports pydantic. tests/unit/test_validate.py runs a table of good and bad documents
through both and requires them to accept and reject the same ones.

The models read documents the way the CNI path does:
* keys of CNI objects match case-insensitively, the last spelling winning, as Go's decoder
  does (`GoObject`); Kubernetes objects and the selection annotation are case-sensitive;
* in CNI objects `null` is the same as an absent key;
* types are strict: "1500" is not a number and 1 is not `true`; an integral float (1500.0)
  is an integer, as in the macvlan reader;
* unknown keys are kept and ignored.

Formats reuse the CNI path's helpers (Go's ParseIP/ParseCIDR in spec/gojson.py, the
Kubernetes name rules in k8s/names.py, host-local's range arithmetic in ipam/ranges.py), so
an address, a name or a range means the same thing to both. A check that needs more than one
field raises a located error (errors.py), which `multiplane validate` appends to the error's path.

Unions are chosen by a callable discriminator; the tags (`<macvlan>`, `<host-local>`, …) show
up in `loc` and are dropped from the paths shown to users (`is_tag`).

Modules: errors (located errors), scalars (shared field types), base (how objects are read),
ipam, plugins, meta (00-multiplane.conf), network (a config or a conflist), kubernetes (NAD,
Pod), selection (the networks annotation), export (the JSON Schema files).
"""

from __future__ import annotations

from multiplane.tools.validate.schemas.errors import error_loc, is_tag, message
from multiplane.tools.validate.schemas.export import SCHEMAS, json_schemas, render_schema, write_schemas
from multiplane.tools.validate.schemas.ipam import HOST_LOCAL_TYPES, HostLocalConf, HostLocalIpam
from multiplane.tools.validate.schemas.kubernetes import NAD_API_VERSION, NetworkAttachmentDefinition, Pod
from multiplane.tools.validate.schemas.meta import MultiplaneConfig, delegate_has_type
from multiplane.tools.validate.schemas.network import PLUGIN, NetworkConfigList
from multiplane.tools.validate.schemas.plugins import (
    MACVLAN_MODES,
    MACVLAN_TYPES,
    BridgePlugin,
    GenericPlugin,
    MacvlanPlugin,
)
from multiplane.tools.validate.schemas.selection import SELECTIONS, NetworkSelection

__all__ = [
    "HOST_LOCAL_TYPES",
    "MACVLAN_MODES",
    "MACVLAN_TYPES",
    "NAD_API_VERSION",
    "PLUGIN",
    "SCHEMAS",
    "SELECTIONS",
    "BridgePlugin",
    "GenericPlugin",
    "HostLocalConf",
    "HostLocalIpam",
    "MacvlanPlugin",
    "MultiplaneConfig",
    "NetworkAttachmentDefinition",
    "NetworkConfigList",
    "NetworkSelection",
    "Pod",
    "delegate_has_type",
    "error_loc",
    "is_tag",
    "json_schemas",
    "message",
    "render_schema",
    "write_schemas",
]
