"""host-local IPAM: ADD/DEL/CHECK/GC/STATUS over the shared on-disk store.

Behaviour follows containernetworking/plugins host-local (see docs/host-local.md), with
these deliberate differences, all safer:
* a failed ADD releases only what that ADD reserved (the reference releases every address
  of the container/ifname, including one from an earlier successful ADD);
* the whole ADD runs under one lock, so it is atomic across range sets;
* config errors are code 7 and CNI_ARGS errors code 4 (the reference wraps both in 999);
* a relative or ".."-containing dataDir is rejected;
* a gateway outside its subnet is accepted like the reference, with a warning in the log
  (stderr standalone; the meta-plugin's log when it runs us in-process),
  and no configured gateway is ever handed out, even one inside another range's pool;
* symbolic links in the state directory are never followed (see ipam/disk.py): a linked
  network directory or lock is refused with code 5, a linked `<ip>` is taken, not ours;
* only files named like an address are read as reservations (no recursive walk);
* a reservation whose cursor cannot be written is given back, not leaked;
* CHECK also compares the reservations with `prevResult`;
* GC and STATUS are implemented (the reference has neither).
"""

from __future__ import annotations

from multiplane.errors import CniError, NotAvailable
from multiplane.ipam import config as ipam_config
from multiplane.ipam.allocator import allocate, capacity
from multiplane.ipam.disk import DiskStore
from multiplane.spec.result import DNS, Result

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from multiplane.skel import Request
    from multiplane.spec.gojson import IPAddress

__all__ = ["HostLocal"]


def _load(req: Request) -> ipam_config.IpamConf:
    conf = ipam_config.load(req.conf.raw, req.conf.name, req.conf.cni_version, req.args.args)
    if conf.warnings:
        # One line per call, never on stdout: the reference accepts these silently.
        from multiplane import logs  # only a call with something to say pays for it

        logs.get().warning(f"host-local: {'; '.join(conf.warnings)} (accepted as an on-link gateway; never handed out)")
    return conf


def _valid_attachments(conf: dict[str, Any]) -> set[tuple[str, str]]:
    """The GC keep-list (spec/gc.py). Neither key (what `cnitool gc` sends after deleting every
    cached attachment) is read as empty, and logged: libcni's stated intent is "everything
    should be GC'ed"."""
    from multiplane.spec.gc import valid_attachments

    keep = valid_attachments(conf)
    if keep is None:
        from multiplane import logs

        logs.get().warning("host-local GC: no cni.dev/valid-attachments given; releasing every allocation")
        return set()
    return keep


class HostLocal:
    """The host-local IPAM plugin (CNI personality `multiplane-host-local`)."""

    name = "multiplane-host-local"

    def add(self, req: Request) -> Result:
        conf = _load(req)
        dns = ipam_config.parse_resolv_conf(conf.resolv_conf) if conf.resolv_conf else DNS()
        store = DiskStore(conf.data_dir, conf.name)
        cid, ifname = req.args.container_id, req.args.ifname
        result = Result(req.conf.cni_version, routes=list(conf.routes), dns=dns)
        with store.locked():
            reserved: list[IPAddress] = []
            try:
                pending = list(dict.fromkeys(conf.requested))
                for idx, rset in enumerate(conf.ranges):
                    requested = next((ip for ip in pending if rset.contains(ip)), None)
                    if requested is not None:
                        pending.remove(requested)
                    try:
                        ipc = allocate(store, rset, idx, cid, ifname, requested, conf.gateways)
                    except CniError as exc:
                        raise CniError(f"failed to allocate for range {idx}: {exc.msg}") from exc
                    reserved.append(ipc.address.ip)
                    result.ips.append(ipc)
                if pending:
                    raise CniError(f"failed to allocate all requested IPs: {' '.join(str(ip) for ip in pending)}")
            except BaseException:
                for addr in reserved:
                    store.release(addr)
                raise
        return result

    def delete(self, req: Request) -> None:
        conf = _load(req)
        with DiskStore(conf.data_dir, conf.name).locked() as store:
            store.release_by_owner(req.args.container_id, req.args.ifname)

    def check(self, req: Request) -> None:
        conf = _load(req)
        cid, ifname = req.args.container_id, req.args.ifname
        with DiskStore(conf.data_dir, conf.name).locked() as store:
            held = store.find_by_owner(cid, ifname)
            if not held:
                raise CniError(f"host-local: Failed to find address added by container {cid}")
            # Stronger than the reference: every prevResult address from our pools must
            # still be reserved for this attachment.
            for addr in Result.addresses_of(req.conf.get("prevResult"), req.conf.cni_version):
                if any(rset.contains(addr) for rset in conf.ranges) and addr not in held:
                    raise CniError(f"host-local: address {addr} from prevResult is not reserved for container {cid}")

    def gc(self, req: Request) -> None:
        conf = _load(req)
        keep = _valid_attachments(req.conf.raw)
        keep_ids = {cid for cid, _ in keep}
        errors: list[str] = []
        with DiskStore(conf.data_dir, conf.name).locked() as store:
            for addr, content in list(store.allocations()):
                cid, sep, ifname = content.partition("\r\n")
                valid = (cid, ifname) in keep if sep else cid in keep_ids
                if not valid:
                    try:
                        store.release(addr)
                    except OSError as exc:
                        errors.append(f"release {addr}: {exc}")
        if errors:
            raise CniError("; ".join(errors))

    def status(self, req: Request) -> None:
        conf = _load(req)
        store = DiskStore(conf.data_dir, conf.name)
        taken = store.occupied()  # read-only: creates nothing; links count as taken
        for idx, rset in enumerate(conf.ranges):
            used = 0
            for addr in taken:
                rng = rset.range_for(addr)
                if rng is not None and int(addr) != rng.gw and addr not in conf.gateways:
                    used += 1
            if used >= capacity(rset, conf.gateways):
                raise NotAvailable(f"no free addresses in range set {idx} ({rset})")
