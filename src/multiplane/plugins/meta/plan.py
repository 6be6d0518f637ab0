"""Which delegates a pod gets, in order, with their interface names and per-attachment values.

Order: the cluster network (or inline `delegates[0]`; replaced by the pod's
`v1.multus-cni.io/default-network`), then `defaultNetworks` (not for pods in
`systemNamespaces`) and further inline delegates, then every network of
`k8s.v1.cni.cncf.io/networks`. The cluster network gets `CNI_IFNAME`; the others the
interface the selection names, else `net<position>`.

Per-attachment values reach a delegate as libcni would hand them over: `ips`, `mac`,
`portMappings`, `bandwidth`, `infinibandGUID`, `deviceID` as capability args (a plugin only
sees those its config declares), `IP=`/`MAC=` in CNI_ARGS (IP only when one address is
requested: host-local cannot read Multus's comma-joined list), `cni-args` merged into
`args.cni`. The runtime's own capability args (pod hostPorts, …) go to the cluster network
only, as the multi-network spec asks.
"""

from __future__ import annotations

import json

from multiplane.errors import InvalidConfig
from multiplane.plugins.meta import selection as sel
from multiplane.plugins.meta.networks import NetworkConfig, nad_config, resolve_network
from multiplane.spec.gojson import field, parse_ip_maybe_cidr

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from multiplane.plugins.meta.config import MetaConf
    from multiplane.spec.result import Result

__all__ = ["Delegate", "KNOWN_CAPABILITIES", "PodRef", "cni_args_for", "plan", "requested_ips_missing"]

KNOWN_CAPABILITIES = ("portMappings", "bandwidth", "ips", "mac", "infinibandGUID", "deviceID", "CNIDeviceInfoFile")


class PodRef:
    """The pod of this call, from CNI_ARGS (K8S_POD_*), and its annotations once read."""

    __slots__ = ("namespace", "name", "uid", "api_uid", "infra", "annotations", "other_args")

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        args = dict(pairs)
        self.namespace = args.get("K8S_POD_NAMESPACE", "")
        self.name = args.get("K8S_POD_NAME", "")
        self.uid = args.get("K8S_POD_UID", "")
        self.api_uid = ""  # the API object's UID once read (a static pod's mirror has its own)
        self.infra = args.get("K8S_POD_INFRA_CONTAINER_ID", "")
        own = {"IgnoreUnknown", "K8S_POD_NAMESPACE", "K8S_POD_NAME", "K8S_POD_UID", "K8S_POD_INFRA_CONTAINER_ID"}
        self.other_args = [(k, v) for k, v in pairs if k not in own and not k.startswith("MULTIPLANE_")]
        if not self.namespace and ("MULTIPLANE_NETWORKS" in args or "MULTIPLANE_DEFAULT_NETWORK" in args):
            # podman sends K8S_POD_NAME (the container) but no namespace: selections given in
            # CNI_ARGS still apply, in the "default" namespace.
            self.namespace, self.name = "default", self.name or "-"
        self.annotations: dict[str, str] = {}

    @property
    def known(self) -> bool:
        return bool(self.namespace and self.name)

    def problem(self) -> str:
        """Why K8S_POD_NAMESPACE/K8S_POD_NAME cannot name a pod ("" when they can, or are absent).

        The namespace must be a DNS-1123 label. The name is only kept from reaching a path
        (no `/`, NUL, leading `.`): podman sends its container name, which need not be a
        DNS name; the API client refuses a name that is not a subdomain on its own.
        """
        from multiplane.k8s.names import is_label

        if self.namespace and not is_label(self.namespace):
            return f"K8S_POD_NAMESPACE {self.namespace!r} is not a valid namespace (DNS-1123 label)"
        if self.name and ("/" in self.name or "\0" in self.name or self.name.startswith(".")):
            return f"K8S_POD_NAME {self.name!r} is not a valid pod name"
        return ""

    def label(self) -> str:
        return f"{self.namespace}/{self.name}" + (f":{self.uid}" if self.uid else "") if self.known else "-"


class Delegate:
    __slots__ = ("name", "net", "ifname", "master", "cap_args", "args_cni", "cni_args", "default_route", "result")

    def __init__(self, name: str, net: NetworkConfig, master: bool = False) -> None:
        self.name, self.net, self.master = name, net, master
        self.ifname = ""
        self.cap_args: dict[str, Any] = {}
        self.args_cni: dict[str, Any] | None = None
        self.cni_args = ""
        self.default_route: list[str] | None = None
        self.result: Result | None = None

    def to_cache(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "config": self.net.raw.decode(),
            "ifname": self.ifname,
            "master": self.master,
            "cniArgs": self.cni_args,
            "capArgs": self.cap_args,
            "argsCni": self.args_cni,
            "result": self.result.to_dict(self.net.cni_version) if self.result is not None else None,
        }

    @classmethod
    def from_cache(cls, item: dict[str, Any]) -> Delegate:
        from multiplane.spec.result import Result

        net = NetworkConfig.parse(str(item.get("config", "")).encode(), f"cached delegate {item.get('name')!r}")
        d = cls(str(item.get("name", "")), net, bool(item.get("master")))
        d.ifname = str(item.get("ifname", ""))
        d.cni_args = str(item.get("cniArgs", ""))
        d.cap_args = item.get("capArgs") or {}
        d.args_cni = item.get("argsCni")
        raw = item.get("result")
        d.result = Result.parse(raw, net.cni_version) if isinstance(raw, dict) else None
        return d


def cni_args_for(pod: PodRef, extra: list[tuple[str, str]], master: bool = False) -> str:
    """CNI_ARGS for a delegate: IgnoreUnknown and the K8S_* keys first, as Multus orders them.

    The runtime's own `IP=`/`MAC=` (podman's --ip, --mac-address) are for the pod's primary
    interface: only the cluster network gets them; a secondary network gets its selection's.
    """
    other = pod.other_args if master else [(k, v) for k, v in pod.other_args if k not in ("IP", "MAC")]
    pairs = [
        ("IgnoreUnknown", "true"),
        ("K8S_POD_NAMESPACE", pod.namespace),
        ("K8S_POD_NAME", pod.name),
        ("K8S_POD_INFRA_CONTAINER_ID", pod.infra),
        ("K8S_POD_UID", pod.uid),
        *other,
        *extra,
    ]
    return ";".join(f"{k}={v}" for k, v in pairs)


def _from_selection(delegate: Delegate, s: sel.Selection) -> list[tuple[str, str]]:
    caps: dict[str, Any] = {}
    extra: list[tuple[str, str]] = []
    if s.ips:
        caps["ips"] = list(s.ips)
        if len(s.ips) == 1:
            extra.append(("IP", s.ips[0]))
    if s.mac:
        caps["mac"] = s.mac
        extra.append(("MAC", s.mac))
    if s.infiniband_guid:
        caps["infinibandGUID"] = s.infiniband_guid
    if s.port_mappings is not None:
        caps["portMappings"] = s.port_mappings
    if s.bandwidth is not None:
        caps["bandwidth"] = s.bandwidth
    if s.device_id:
        caps["deviceID"] = s.device_id
    delegate.cap_args = caps
    delegate.args_cni = s.cni_args
    delegate.default_route = s.default_route
    return extra


def _check_isolation(conf: MetaConf, pod: PodRef, target: str, annotation: str, *also: str) -> None:
    """namespaceIsolation: a pod's annotations may name its own namespace, a global one, or `also`."""
    if not conf.namespace_isolation or target == pod.namespace or target in conf.global_namespaces or target in also:
        return
    where = "" if annotation == sel.NETWORKS_ANNOTATION else f" in {annotation}"
    raise InvalidConfig(
        "namespace isolation enabled, annotation violates permission, "
        f"pod is in namespace {pod.namespace} but refers to target namespace {target}{where}"
    )


def _check_ip_request(d: Delegate, s: sel.Selection) -> None:
    """Several `ips` reach a delegate only as the `ips` capability: without it they would be dropped.

    One address also travels as `IP=` in CNI_ARGS (host-local reads it); whether the delegate
    honoured it is checked against its result after ADD (`requested_ips_missing`).
    """
    if len(s.ips) < 2:
        return
    if any(
        isinstance(field(p, "capabilities"), dict) and field(p, "capabilities").get("ips") is True
        for p in d.net.plugins
    ):
        return
    raise InvalidConfig(
        f'network "{s.key}" was asked for IP addresses {", ".join(s.ips)}, but none of its plugins declares '
        'the "ips" capability, so they cannot be passed on',
        'add "capabilities": {"ips": true} to the plugin that assigns addresses (host-local and static support it)',
    )


def requested_ips_missing(d: Delegate) -> list[str]:
    """The addresses the pod asked for on this attachment that its result does not carry."""
    wanted = d.cap_args.get("ips") or []
    if not wanted or d.result is None:
        return []
    got = {str(ip.address.ip) for ip in d.result.ips}
    missing = []
    for text in wanted:
        addr = parse_ip_maybe_cidr(str(text))
        if addr is None or str(addr) not in got:
            missing.append(str(text))
    return missing


def _selected(conf: MetaConf, pod: PodRef, source: Any, s: sel.Selection) -> Delegate:
    """The delegate of one selection: isolation, the NAD, requested IPs, CNI_ARGS (InvalidConfig on any error)."""
    from multiplane.k8s.errors import NotFound

    _check_isolation(conf, pod, s.namespace, sel.NETWORKS_ANNOTATION)
    try:
        nad = source.nad(s.namespace, s.name)
    except NotFound as exc:
        raise InvalidConfig(
            f"cannot find a network-attachment-definition ({s.name}) in namespace ({s.namespace}): {exc.msg}",
            exc.details,
        ) from exc
    d = Delegate(s.key, nad_config(nad, conf.conf_dir))
    _check_ip_request(d, s)
    d.cni_args = cni_args_for(pod, _from_selection(d, s))
    return d


def plan(conf: MetaConf, source: Any, pod: PodRef, ifname: str, tolerant: bool = False) -> list[Delegate]:
    """The delegates for this pod, in attachment order; InvalidConfig/NotFound name what is wrong.

    `tolerant` (DEL without a cache): networks other than the cluster network that cannot be
    resolved are left out instead of failing the whole plan.
    """
    from multiplane.errors import CniError

    def attempt(step: Any) -> Any:
        try:
            return step()
        except CniError:
            if not tolerant:
                raise
            return None

    delegates: list[Delegate] = []
    if conf.cluster_network:
        name, net = resolve_network(conf.cluster_network, conf.namespace, source, conf.conf_dir)
        delegates.append(Delegate(name, net, master=True))
    else:
        for i, item in enumerate(conf.delegates):
            net = NetworkConfig.parse(json.dumps(item).encode(), f"delegate {i}")
            delegates.append(Delegate(net.name or f"delegate{i}", net, master=i == 0))
    default_override = pod.annotations.get(sel.DEFAULT_NETWORK_ANNOTATION, "")
    if default_override:
        chosen = sel.parse(default_override, conf.namespace)
        if len(chosen) != 1:
            raise InvalidConfig(f"{sel.DEFAULT_NETWORK_ANNOTATION} must name exactly one network")
        # Isolation covers this annotation too; the meta-plugin's own namespace (where
        # clusterNetwork lives, and the annotation's default) stays allowed, as do the global ones.
        _check_isolation(conf, pod, chosen[0].namespace, sel.DEFAULT_NETWORK_ANNOTATION, conf.namespace)
        name, net = resolve_network(chosen[0].name, chosen[0].namespace, source, conf.conf_dir)
        delegates[0] = Delegate(name, net, master=True)
    # Every attachment after the first is named net<its position>; in a tolerant plan a network
    # that cannot be resolved any more still takes its position, so the others keep the names
    # ADD gave them.
    for index, d in enumerate(delegates[1:], start=1):  # further inline delegates
        d.ifname = f"net{index}"
    position = len(delegates)
    if not (pod.known and pod.namespace in conf.system_namespaces):
        for value in conf.default_networks:
            found = attempt(lambda value=value: resolve_network(value, conf.namespace, source, conf.conf_dir))
            if found is not None:
                delegates.append(Delegate(*found))
                delegates[-1].ifname = f"net{position}"
            position += 1
    delegates[0].cap_args = {k: v for k, v in conf.runtime_config.items() if k in KNOWN_CAPABILITIES}
    delegates[0].cni_args = cni_args_for(pod, [], master=True)
    for d in delegates[1:]:
        d.cni_args = cni_args_for(pod, [])

    selections = attempt(
        lambda: sel.parse(pod.annotations.get(sel.NETWORKS_ANNOTATION, ""), pod.namespace or "default")
    )
    for s in selections or []:
        d = attempt(lambda s=s: _selected(conf, pod, source, s))
        if d is not None:
            d.ifname = s.interface or f"net{position}"
            delegates.append(d)
        position += 1

    seen: dict[str, str] = {}
    kept: list[Delegate] = []
    for d in delegates:
        if d.master:
            d.ifname = ifname
        if d.ifname in seen:
            if tolerant:  # a guess that clashes with a surer one is dropped, not fatal
                continue
            raise InvalidConfig(f'interface name "{d.ifname}" is used by both "{seen[d.ifname]}" and "{d.name}"')
        seen[d.ifname] = d.name
        kept.append(d)
    return kept
