"""GC's keep-list (CNI 1.1): the attachments a runtime says are still valid.

`valid_attachments(conf)` reads `cni.dev/valid-attachments`, else the legacy
`cni.dev/attachments`, as a set of (containerID, ifname). null is an empty list (libcni's
GCArgs{ValidAttachments: nil}); an entry that is not an object with string containerID and
ifname is skipped; containerID is trimmed of white space, as the reference plugins read it.
None when neither key is there: each plugin decides what that means (host-local and
cluster-wide IPAM release everything, the meta-plugin refuses).
"""

from __future__ import annotations

from multiplane.spec.gojson import field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["valid_attachments"]


def valid_attachments(conf: dict[str, Any]) -> set[tuple[str, str]] | None:
    if "cni.dev/valid-attachments" in conf:
        raw = conf["cni.dev/valid-attachments"]
    elif "cni.dev/attachments" in conf:
        raw = conf["cni.dev/attachments"]
    else:
        return None
    keep: set[tuple[str, str]] = set()
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict):
            cid, ifname = field(item, "containerID"), field(item, "ifname")
            if isinstance(cid, str) and isinstance(ifname, str):
                keep.add((cid.strip(), ifname))
    return keep
