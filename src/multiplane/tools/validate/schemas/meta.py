"""`00-multiplane.conf`: the meta-plugin's own configuration (docs/meta-plugin.md).

Its inline delegates are checked as CNI configurations by validate, not by this model.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema, model_validator

from multiplane.spec.gojson import field
from multiplane.tools.validate.schemas.errors import fail
from multiplane.tools.validate.schemas.plugins import PluginHeader
from multiplane.tools.validate.schemas.scalars import AbsPath, NetworkRef, loose

__all__ = ["MultiplaneConfig", "delegate_has_type"]

LooseDelegates = loose({"type": "array", "items": {"type": "object"}, "minItems": 1})
LooseLogOptions = loose(
    {
        "type": "object",
        "description": "log rotation, as Multus's logOptions (lumberjack)",
        "properties": {
            "maxSize": {"type": "number", "description": "megabytes; 0: 100"},
            "maxBackups": {"type": "number", "description": "0: keep all"},
            "maxAge": {"type": "number", "description": "days; 0: keep all"},
            "compress": {"type": "boolean"},
        },
    }
)
StringList = Annotated[list[Any], WithJsonSchema({"type": "array", "items": {"type": "string"}})]


def delegate_has_type(item: Any) -> bool:
    """An inline delegate the meta-plugin accepts: an object with a `type`, or whose first plugin has one."""
    plugins = field(item, "plugins") if isinstance(item, dict) else None
    first = plugins[0] if isinstance(plugins, list) and plugins else None
    return isinstance(item, dict) and bool(field(item, "type") or (isinstance(first, dict) and field(first, "type")))


class MultiplaneConfig(PluginHeader):
    """`00-multiplane.conf` (docs/meta-plugin.md). Unknown keys are ignored."""

    type: Literal["multiplane"]
    clusterNetwork: NetworkRef | None = None
    delegates: LooseDelegates = None
    defaultNetworks: list[NetworkRef] | None = None
    kubeconfig: AbsPath | None = None
    confDir: AbsPath | None = None
    cniDir: AbsPath | None = None
    binDir: AbsPath | None = None
    localNADDir: AbsPath | None = None
    localPodDir: AbsPath | None = None
    readinessindicatorfile: AbsPath | None = None
    logFile: AbsPath | None = None
    systemNamespaces: StringList | None = None
    multusNamespace: str | None = None
    namespace: str | None = None
    namespaceIsolation: bool | None = None
    globalNamespaces: str | None = Field(None, description="comma-separated")
    logLevel: str | None = Field(None, examples=["error", "verbose", "debug", "panic"])
    logToStderr: bool | None = None
    capabilities: dict[str, Any] | None = None
    runtimeConfig: dict[str, Any] | None = None
    retryDeleteOnError: bool | None = None
    events: bool | None = Field(None, description="false: post no Kubernetes Events on pods")
    daemonSocket: str | None = Field(
        None, description='the node daemon\'s unix socket (docs/daemon.md); "" = never use a daemon'
    )
    logOptions: LooseLogOptions = None  # read leniently: a wrong value is logged and its default used

    @classmethod
    def _adjust(cls, data: dict[Any, Any]) -> dict[Any, Any]:
        if data.get("multusNamespace"):
            data.pop("namespace", None)  # read only when multusNamespace is empty
        return data

    @model_validator(mode="after")
    def _delegates(self) -> MultiplaneConfig:
        if self.name is None:
            fail("missing network name", ("name",))
        if self.clusterNetwork:
            return self  # delegates are not read
        delegates = self.delegates
        if delegates is None:
            fail("at least one delegate/clusterNetwork must be specified")
        if not isinstance(delegates, list):
            fail("must be a list of CNI configurations", ("delegates",))
        if not delegates:
            fail("at least one delegate/clusterNetwork must be specified", ("delegates",))
        for i, item in enumerate(delegates):
            if not delegate_has_type(item):
                fail("a delegate must have the 'type' or 'plugins' field", ("delegates", i))
        return self
