"""DEL's parts that work without a usable delegate cache, and the state files DEL removes.

With a cache, DEL is plugin.py's loop; without one (missing, damaged, a link), `delete_uncached`
rebuilds the plan from what is still known (configuration, pod, the network-status file),
deletes it, releases the container's host-local addresses (sweep.py) and logs what it could
not clean. Nothing here raises: DEL must never be pinned.
"""

from __future__ import annotations

import errno
import json
import os

from multiplane.errors import CniError
from multiplane.fsutil import sweep_temporaries
from multiplane.plugins.meta import cache
from multiplane.plugins.meta.plan import Delegate, plan
from multiplane.plugins.meta.selection import NETWORKS_ANNOTATION

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from multiplane.plugins.meta.call import Call

__all__ = ["delete_all", "delete_uncached", "forget", "from_cache", "rebuild", "selection_from_status", "status_path"]


def from_cache(call: Call) -> list[Delegate] | None:
    """The cached delegates; None when there is no cache or it cannot be used (logged loudly)."""
    try:
        cached = cache.load(call.conf.cni_dir, call.req.args.container_id)
        if cached is None:
            return None
        return [Delegate.from_cache(item) for item in cached["delegates"]]
    except (CniError, AttributeError, TypeError, ValueError) as exc:
        call.log.error(
            f"{call.pod.label()}: the delegate cache of container {call.req.args.container_id} is unusable "
            f"({exc}); deleting from the configuration instead and releasing every address it holds"
        )
        return None


def delete_all(call: Call, delegates: list[Delegate]) -> list[tuple[Delegate, Exception]]:
    failures = []
    for d in reversed(delegates):
        try:
            call.invoker.delete(d.net, call.env(d), d.cap_args, d.args_cni, d.result)
        except Exception as exc:  # noqa: BLE001 - DEL goes on past failures and reports them together
            if not isinstance(exc, CniError):
                call.log.bug(f"{call.pod.label()}: DEL of {d.name} ({d.ifname})")
            failures.append((d, exc))
    return failures


def delete_uncached(call: Call) -> None:
    """Best effort: the rebuilt plan, then the host-local sweep; failures are logged, DEL succeeds."""
    from multiplane.plugins.meta import sweep

    cid = call.req.args.container_id
    delegates = rebuild(call)
    failures = delete_all(call, delegates)
    networks = sweep.known_networks(call.conf, [d.net for d in delegates])
    released, problems = sweep.release_container(networks, cid)
    problems += [f"{d.name} ({d.ifname}): {exc}" for d, exc in failures]
    if released:
        call.log.error(f"{call.pod.label()}: DEL without cache released addresses of {cid}: {', '.join(released)}")
    if problems:
        call.log.error(
            f"{call.pod.label()}: best-effort DEL of {cid} without cache could not clean: " + "; ".join(problems)
        )
    call.log.verbose(
        f"{call.pod.label()}: deleted {len(delegates)} attachment(s) of container {cid} "
        "(no usable cache: rebuilt from the configuration)"
    )
    forget(call)


def forget(call: Call) -> None:
    """Drop the cache (a planted link is unlinked, never followed) and the status file."""
    cid = call.req.args.container_id
    remove_file(call, "cache", lambda: cache.path_for(call.conf.cni_dir, cid))
    remove_file(call, "network-status", lambda: status_path(call.conf.cni_dir, cid))
    # A writer killed between its temporary file and the rename leaves `.<name>.<pid>.tmp`;
    # only this container's own are removed (the runtime never runs its ADD and DEL at once).
    sweep_temporaries(call.conf.cni_dir, [cid], older_than=0)
    status_dir = os.path.join(call.conf.cni_dir, "status")
    if not os.path.islink(status_dir):
        sweep_temporaries(status_dir, [f"{cid}.json"], older_than=0)


def rebuild(call: Call) -> list[Delegate]:
    """No cache: what the configuration and pod say now, best effort; nothing known → nothing to do."""
    from multiplane.plugins.meta.networks import LocalSource

    try:
        source = call.source
        call.read_pod()
    except CniError as exc:  # a bad pod object is a CniError too (annotations_of)
        call.log.verbose(f"{call.pod.label()}: DEL without cache, pod unreadable ({exc})")
        call.pod.annotations = {}
        source = LocalSource("", "", {}, {})  # files only: the cluster network may still resolve
    if NETWORKS_ANNOTATION not in call.pod.annotations:
        recorded = selection_from_status(call)
        if recorded:
            call.log.verbose(f"{call.pod.label()}: DEL without cache: networks from the status file: {recorded}")
            call.pod.annotations[NETWORKS_ANNOTATION] = recorded
            if isinstance(source, LocalSource) and not source.nad_dir:
                source = LocalSource(call.conf.local_nad_dir, "", {}, {})
    try:
        return plan(call.conf, source, call.pod, call.req.args.ifname, tolerant=True)
    except CniError as exc:
        call.log.error(f"{call.pod.label()}: DEL without cache and no usable configuration ({exc}); nothing to delete")
    except Exception:  # noqa: BLE001 - a bug must not pin the sandbox: log it, release what the sweep finds
        call.log.bug(f"{call.pod.label()}: DEL without cache: rebuilding the plan failed")
    return []


def selection_from_status(call: Call) -> str:
    """The secondary networks ADD recorded in the network-status file, as a JSON selection ("" if none).

    The status file outlives a damaged cache: it names each attached NAD ("ns/name") and its
    interface, so DEL can still find links and addresses the configuration alone cannot.
    """
    try:
        fd = os.open(status_path(call.conf.cni_dir, call.req.args.container_id), os.O_RDONLY | os.O_NOFOLLOW)
        try:
            raw = os.read(fd, 1 << 20)
        finally:
            os.close(fd)
        entries = json.loads(raw)
    except (OSError, ValueError, RecursionError):
        return ""
    defaults = {v if "/" in v else f"{call.conf.namespace}/{v}" for v in call.conf.default_networks}
    picked: dict[str, dict[str, str]] = {}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("default") or not isinstance(entry.get("name"), str):
            continue
        namespace, _sep, name = entry["name"].partition("/")
        if not name or entry["name"] in defaults or entry["name"] in picked:
            continue
        item = {"namespace": namespace, "name": name}
        if isinstance(entry.get("interface"), str):
            item["interface"] = entry["interface"]
        picked[entry["name"]] = item
    return json.dumps(list(picked.values())) if picked else ""


def remove_file(call: Call, what: str, path: Callable[[], str]) -> None:
    """Unlink a state file (a link is removed, never followed); a failure is logged, DEL goes on."""
    try:
        os.unlink(path())
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as exc:  # a directory planted there, a linked status dir, a read-only mount
        call.log.error(f"{call.pod.label()}: cannot remove the {what} file of {call.req.args.container_id}: {exc}")


def status_path(cni_dir: str, container_id: str, create: bool = False) -> str:
    """`<cniDir>/status/<id>.json`; the directory must be ours (a real directory, not a link)."""
    status_dir = os.path.join(cni_dir, "status")
    if create:
        os.makedirs(status_dir, mode=0o700, exist_ok=True)
    if os.path.islink(status_dir):
        raise OSError(errno.ELOOP, f"{status_dir} is a symbolic link")
    return os.path.join(status_dir, f"{container_id}.json")
