"""macvlan main plugin: a macvlan of the node NIC inside the pod, addressed by IPAM.

Behaviour follows containernetworking/plugins macvlan (see docs/macvlan.md) and is safer:
everything is checked before anything is created (interface name free, master present and
up, MTU, MAC, a version that can express the result), and a failed ADD undoes every step
in reverse: no link in either namespace, no IP reservation. Addresses are announced on the
wire (gratuitous ARP / unsolicited NA). CHECK verifies master, mode, MTU, MAC, link state,
addresses and routes; DEL releases IPAM first, removes the link (and the temporary-named link
a killed ADD may have left, see `temporary_name`) and treats anything already gone as success.
"""

from __future__ import annotations

import os
import zlib

from multiplane import logs
from multiplane.errors import CniError, InvalidConfig, InvalidEnvironment, NotAvailable, TryAgainLater
from multiplane.netlink import addrs, announce, links
from multiplane.netlink.netns import NetnsNotFound, NotANetns, open_netns
from multiplane.netlink.rtnl import NetlinkError, Rtnl
from multiplane.plugins import delegation
from multiplane.spec import version as versions
from multiplane.spec.args import parse_cni_args
from multiplane.spec.gojson import field, json_type, parse_mac
from multiplane.spec.result import DNS, Interface, IPConfig, Result

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from multiplane.skel import Request

__all__ = ["Macvlan", "MacvlanConf"]


def _typed(conf: dict[str, Any], key: str, kind: type, go_type: str, where: str = "NetConf.") -> Any:
    """conf[key] (Go-style key match) checked against a JSON type; Go's text when it is wrong."""
    value = field(conf, key)
    if value is None:
        return None
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidConfig(
            f"failed to load netconf: json: cannot unmarshal {json_type(value)} "
            f"into Go struct field {where}{key} of type {go_type}"
        )
    return value


def _dns(raw: dict[str, Any]) -> DNS:
    value = _typed(raw, "dns", dict, "types.DNS")
    if value is None:
        return DNS()
    for key in ("nameservers", "search", "options"):
        for item in _typed(value, key, list, "[]string", "DNS.dns.") or ():
            _typed({key: item}, key, str, "string", "DNS.dns.")
    _typed(value, "domain", str, "string", "DNS.dns.")
    return DNS.parse(value)


class MacvlanConf:
    """The macvlan keys of a request, validated (InvalidConfig / InvalidEnvironment)."""

    __slots__ = ("master", "mode", "mtu", "mac", "link_in_container", "ipam_type", "dns")

    def __init__(self, req: Request, strict: bool = True) -> None:
        raw = req.conf.raw
        self.master: str = _typed(raw, "master", str, "string") or ""
        self.mode: str = _typed(raw, "mode", str, "string") or "bridge"
        self.mtu: int = _typed(raw, "mtu", int, "int") or 0
        self.link_in_container: bool = bool(_typed(raw, "linkInContainer", bool, "bool"))
        ipam = _typed(raw, "ipam", dict, "types.IPAM") or {}
        self.ipam_type: str = _typed(ipam, "type", str, "string", "IPAM.ipam.") or ""
        self.dns = _dns(raw)
        self.mac = ""
        if not strict:
            return
        if self.mode not in links.MACVLAN_MODES:
            raise InvalidConfig(f'unknown macvlan mode: "{self.mode}"')
        # Reference precedence: config `mac` < CNI_ARGS MAC= < runtimeConfig.mac.
        candidates = [_typed(raw, "mac", str, "string") or ""]
        candidates.append(parse_cni_args(req.args.args, {"MAC": str}).get("MAC", ""))
        runtime = _typed(raw, "runtimeConfig", dict, "struct") or {}
        candidates.append(_typed(runtime, "mac", str, "string", ".runtimeConfig.") or "")
        chosen = next((m for m in reversed(candidates) if m), "")
        if chosen:
            try:
                self.mac = parse_mac(chosen)
            except ValueError as exc:
                raise InvalidConfig(f"invalid args {chosen} for MAC addr: {exc}") from exc
            if int(self.mac[:2], 16) & 1:
                raise InvalidConfig(f"invalid MAC {self.mac}: a multicast address cannot be a unicast interface's")


def _open_pod_netns(path: str) -> int:
    try:
        return open_netns(path)
    except (NetnsNotFound, NotANetns) as exc:
        raise InvalidEnvironment(exc.msg, "CNI_NETNS must name an existing network namespace") from exc


def _master(conf: MacvlanConf, rtnl: Rtnl) -> links.Link:
    name = conf.master or links.default_route_interface(rtnl)
    if not name:
        raise InvalidConfig("no default route interface found", "set `master` in the network config")
    master = links.get_link(rtnl, name)
    if master is None:
        where = "the pod's" if conf.link_in_container else "the host's"
        raise InvalidConfig(f'failed to find master interface "{name}"', f"no such link in {where} network namespace")
    return master


def temporary_name(container_id: str, ifname: str) -> str:
    """The name ADD creates the macvlan under before renaming it to `ifname`: `mpv` + 8 hex digits.

    The link is created directly in the pod's namespace under this name and then renamed, so a
    process killed between the two steps leaves it there. The name is derived from the attachment
    (CRC-32 of "<container id>\\0<ifname>" as 8 hex digits), not drawn at random, so that DEL,
    which receives the same container id and ifname, can find exactly this leftover and nothing
    else. The alternatives are worse: a random name marked as ours (an ifalias) cannot be set in
    the creating RTM_NEWLINK, so a kill could still leave an unmarked link; removing every `mpv…`
    link in the pod would also take another attachment's link while its own ADD is running.
    DEL removes a link of this name only if it is a macvlan (nothing else is made by us), and a
    retried ADD replaces it. Two attachments of one pod would have to share the 32-bit CRC for
    either to touch the other's link (a CRC cannot collide for ids differing in one 32-bit
    window, such as net1/net2). CRC-32 rather than a SHA: zlib is built in, hashlib loads
    OpenSSL (~2 ms per call), and nothing here is adversarial.
    """
    key = f"{container_id}\0{ifname}".encode()
    return f"mpv{zlib.crc32(key):08x}"


def _remove_leftover(pod: Rtnl, name: str) -> bool:
    """Delete the macvlan a killed ADD left under `name`; False if there is none (or it is not a macvlan)."""
    link = links.get_link(pod, name)
    if link is None or link.kind != "macvlan":
        return False
    return links.delete_link(pod, link.index)


class _Undo:
    """Undo steps, run last-in first-out unless `keep()` is called (the ExitStack idea, with logging)."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Callable[[], object]]] = []

    def push(self, what: str, step: Callable[[], object]) -> None:
        self.steps.append((what, step))

    def keep(self) -> None:
        self.steps.clear()

    def __enter__(self) -> _Undo:
        return self

    def __exit__(self, *exc: object) -> None:
        for what, step in reversed(self.steps):
            try:
                step()
            except CniError as err:  # keep undoing; the original error is what matters
                logs.get().error(f"multiplane-macvlan: rollback step {what!r} failed: {err}")
            except Exception:  # noqa: BLE001 - a bug: logged with its traceback, and undoing goes on
                logs.get().bug(f"multiplane-macvlan: rollback step {what!r}")


class Macvlan:
    """The macvlan plugin (CNI personality `multiplane-macvlan`)."""

    name = "multiplane-macvlan"

    def add(self, req: Request) -> Result:
        conf = MacvlanConf(req)
        version = req.conf.cni_version
        if not conf.ipam_type and not versions.has_multiple_ips(version):
            raise CniError(
                "cannot convert: no valid IP addresses", f"cniVersion {version} cannot describe an L2-only attachment"
            )
        prev = field(req.conf.raw, "prevResult")
        result = Result.parse(prev, version) if isinstance(prev, dict) else Result(version)
        ifname, fd = req.args.ifname, _open_pod_netns(req.args.netns)
        try:
            with Rtnl() as host, Rtnl(fd) as pod, _Undo() as undo:
                master = _master(conf, pod if conf.link_in_container else host)
                if not master.up:
                    raise TryAgainLater(f'master interface "{master.name}" is down')
                if not 0 <= conf.mtu <= master.mtu:
                    raise InvalidConfig(f"invalid MTU {conf.mtu}, must be [0, master MTU({master.mtu})]")
                if links.get_link(pod, ifname) is not None:
                    raise InvalidEnvironment(f'interface "{ifname}" already exists in netns "{req.args.netns}"')
                tmp = temporary_name(req.args.container_id, ifname)
                stale = links.get_link(pod, tmp)
                if stale is not None and stale.kind != "macvlan":
                    raise InvalidEnvironment(
                        f'interface "{tmp}" (the temporary name for "{ifname}") already exists in netns '
                        f'"{req.args.netns}" and is not a macvlan'
                    )
                if stale is not None:  # a killed ADD of this same attachment left it: replace it
                    links.delete_link(pod, stale.index)
                link = self._create(conf, master, host, pod, fd, tmp, ifname, undo)
                index = len(result.interfaces)
                result.interfaces.append(Interface(ifname, link.mac, req.args.netns, link.mtu))
                if conf.ipam_type:
                    ipam_result = delegation.ipam(req, conf.ipam_type, "ADD")
                    undo.push("ipam DEL", lambda: delegation.ipam(req, conf.ipam_type, "DEL"))
                    if ipam_result is None or not ipam_result.ips:
                        raise CniError("IPAM plugin returned missing IP config")
                    ips = [IPConfig(ip.address, ip.gateway, index) for ip in ipam_result.ips]
                    addrs.set_notify_sysctls(fd, ifname)
                    settled = addrs.configure_iface(pod, fd, link, ips, ipam_result.routes)
                    result.ips += ips
                    result.routes += ipam_result.routes
                    self._announce(fd, ifname, link.mac, ips, settled)
                else:
                    links.set_up(pod, link.index, ifname)
                if not conf.dns.empty():
                    result.dns = conf.dns
                result.to_dict(version)  # fails now, while we can still roll back, if it cannot be expressed
                undo.keep()
        finally:
            os.close(fd)
        return result

    @staticmethod
    def _create(
        conf: MacvlanConf, master: links.Link, host: Rtnl, pod: Rtnl, fd: int, tmp: str, ifname: str, undo: _Undo
    ) -> links.Link:
        """Create under `tmp` (see `temporary_name`) directly in the pod netns, then rename (kernel name clashes)."""
        creator = pod if conf.link_in_container else host
        try:
            links.create_macvlan(creator, tmp, master.index, conf.mode, fd, conf.mtu, conf.mac)
        except NetlinkError as exc:
            raise CniError(exc.msg) from exc
        link = links.get_link(pod, tmp)
        if link is None:
            raise CniError(f'failed to refetch macvlan "{tmp}"')
        undo.push("delete link", lambda: links.delete_link(pod, link.index))
        links.rename_link(pod, link.index, ifname)
        link.name = ifname
        return link

    @staticmethod
    def _announce(fd: int, ifname: str, mac: str, ips: list[IPConfig], settled: bool) -> None:
        try:
            announce.announce(fd, ifname, mac, [ip.address.ip for ip in ips], settled)
        except OSError as exc:  # the attachment works; a lost announcement only delays learning
            logs.get().warning(f"multiplane-macvlan: could not announce addresses on {ifname}: {exc}")

    def delete(self, req: Request) -> None:
        conf = MacvlanConf(req, strict=False)
        errors: list[str] = []
        if conf.ipam_type:
            try:
                delegation.ipam(req, conf.ipam_type, "DEL")
            except CniError as exc:
                errors.append(str(exc))
        if req.args.netns:
            try:
                fd = open_netns(req.args.netns)
            except NetnsNotFound:
                fd = -1  # the pod is gone, and its macvlan with it
            except NotANetns as exc:
                errors.append(exc.msg)
                fd = -1
            if fd >= 0:
                try:
                    with Rtnl(fd) as pod:
                        link = links.get_link(pod, req.args.ifname)
                        if link is not None:
                            links.delete_link(pod, link.index)
                        # An ADD killed between creating the link and renaming it left it under this name.
                        _remove_leftover(pod, temporary_name(req.args.container_id, req.args.ifname))
                except CniError as exc:
                    errors.append(str(exc))
                finally:
                    os.close(fd)
        if errors:
            raise CniError("; ".join(errors))

    def check(self, req: Request) -> None:
        from multiplane.plugins.macvlan_check import check

        conf = MacvlanConf(req)
        fd = _open_pod_netns(req.args.netns)
        try:
            if conf.ipam_type:
                delegation.ipam(req, conf.ipam_type, "CHECK")
            with Rtnl() as host, Rtnl(fd) as pod:
                master = _master(conf, pod if conf.link_in_container else host)
                check(req, conf, master, pod)
        finally:
            os.close(fd)

    def status(self, req: Request) -> None:
        conf = MacvlanConf(req)
        if not conf.link_in_container:
            with Rtnl() as host:
                try:
                    _master(conf, host)
                except InvalidConfig as exc:
                    raise NotAvailable(exc.msg, exc.details) from exc
        if conf.ipam_type:
            delegation.ipam(req, conf.ipam_type, "STATUS")

    def gc(self, req: Request) -> None:
        conf = MacvlanConf(req, strict=False)
        if conf.ipam_type:
            delegation.ipam(req, conf.ipam_type, "GC")
