"""One plugin's configuration: the header every plugin carries, macvlan, bridge, and any other plugin.

The meta-plugin's own configuration is in meta.py; the union of them all in network.py.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator

from multiplane.spec import version as versions
from multiplane.spec.gojson import parse_mac
from multiplane.tools.validate.schemas.base import GoObject
from multiplane.tools.validate.schemas.errors import fail, quote
from multiplane.tools.validate.schemas.ipam import Ipam
from multiplane.tools.validate.schemas.scalars import CniVersion, GoInt, NetworkName, loose

__all__ = [
    "MACVLAN_MODES",
    "MACVLAN_TYPES",
    "BridgePlugin",
    "Dns",
    "GenericPlugin",
    "MacvlanPlugin",
    "PluginHeader",
]

MACVLAN_TYPES = ("macvlan", "multiplane-macvlan")
# The modes the kernel knows (multiplane.netlink.links.MACVLAN_MODES; a test keeps them equal).
MACVLAN_MODES = ("bridge", "private", "vepa", "passthru")
# "" (and an absent mode) means bridge.
MacvlanMode = Literal["bridge", "private", "vepa", "passthru", ""]

LooseCapabilities = loose({"type": "object", "additionalProperties": {"type": "boolean"}})
LooseIpam = loose({"type": "object", "properties": {"type": {"type": "string"}}})
NullableStrings = Annotated[list[str | None], WithJsonSchema({"type": "array", "items": {"type": "string"}})]


def _plugin_type(value: str) -> str:
    if not value or not value.isprintable() or any(c in value for c in "/\\"):
        fail(f"invalid plugin type {quote(value)}: a plugin binary name (printable, no '/' or '\\')")
    return value


class Dns(GoObject):
    """types.DNS (macvlan returns it as the result's `dns`). null entries are skipped, as macvlan does."""

    nameservers: NullableStrings | None = None
    domain: str | None = None
    search: NullableStrings | None = None
    options: NullableStrings | None = None


class PluginHeader(GoObject):
    """What every plugin's config carries.

    In a conflist the list's `name` and `cniVersion` are given to each plugin, so a plugin
    object there has neither; `multiplane validate` always checks a plugin with the values it
    will receive, and a top-level config without a name is refused where it is read.
    """

    cniVersion: CniVersion | None = None
    name: NetworkName | None = None
    type: str
    capabilities: LooseCapabilities = None


class GenericPlugin(PluginHeader):
    """A plugin multiplane executes from binDir/CNI_PATH; only the header (and a host-local IPAM) is checked."""

    type: Annotated[
        str,
        AfterValidator(_plugin_type),
        WithJsonSchema({"type": "string", "not": {"enum": ["macvlan", "multiplane-macvlan", "bridge", "multiplane"]}}),
    ]
    ipam: LooseIpam = None  # not read by multiplane; a host-local IPAM is checked as HostLocalConf


class MacvlanRuntime(GoObject):
    mac: str | None = None


class MacvlanPlugin(PluginHeader):
    """macvlan (docs/macvlan.md), run in-process by multiplane under `macvlan` and `multiplane-macvlan`."""

    type: Literal["macvlan", "multiplane-macvlan"]
    master: str | None = Field(None, description="the parent NIC; default: the interface of the default route")
    mode: MacvlanMode | None = Field(None, description="default bridge")
    mtu: GoInt | None = Field(None, description="0..the master's MTU; 0 or absent: the master's")
    mac: str | None = None
    linkInContainer: bool | None = None
    ipam: Ipam | None = None
    dns: Dns | None = None
    runtimeConfig: MacvlanRuntime | None = None

    @model_validator(mode="after")
    def _macvlan(self) -> MacvlanPlugin:
        if self.mtu is not None and self.mtu < 0:
            fail(f"invalid MTU {self.mtu}: must be between 0 and the master's MTU", ("mtu",))
        self._check_mac()
        ipam_type = self.ipam.type if self.ipam is not None else None
        version = self.cniVersion or "0.1.0"
        if not ipam_type and version in versions.SUPPORTED and not versions.has_multiple_ips(version):
            fail(f"cniVersion {version} cannot describe an interface without addresses: add ipam", ("ipam",))
        return self

    def _check_mac(self) -> None:
        """The MAC macvlan will set (runtimeConfig.mac before `mac`) must be a unicast address."""
        chosen, at = self.mac or "", ("mac",)
        if self.runtimeConfig is not None and self.runtimeConfig.mac:
            chosen, at = self.runtimeConfig.mac, ("runtimeConfig", "mac")
        if not chosen:
            return
        try:
            mac = parse_mac(chosen)
        except ValueError:
            fail(f"not a MAC address: {quote(chosen)}", at)
        if int(mac[:2], 16) & 1:
            fail(f"{mac} is a multicast address; an interface needs a unicast one", at)


class BridgePlugin(PluginHeader):
    """The reference bridge plugin, executed from CNI_PATH: its keys are typed as its Go struct types them.

    Integers are Go ints here (1500.0 is refused, unlike macvlan's reader), and `capabilities`
    is decoded as map[string]bool.
    """

    type: Literal["bridge"]
    capabilities: dict[str, bool] | None = None
    bridge: str | None = Field(None, description="default cni0")
    isGateway: bool | None = None
    isDefaultGateway: bool | None = Field(None, description="true adds a default route via the bridge")
    forceAddress: bool | None = None
    ipMasq: bool | None = None
    mtu: int | None = None
    hairpinMode: bool | None = None
    promiscMode: bool | None = None
    vlan: int | None = None
    vlanTrunk: list[dict[str, Any]] | None = None
    preserveDefaultVlan: bool | None = None
    macspoofchk: bool | None = None
    enabledad: bool | None = None
    disableContainerInterface: bool | None = None
    ipam: Ipam | None = None
    dns: Dns | None = None
