"""What `multiplane doctor` prints: the JSON document of `--json`, and the text made from it."""

from __future__ import annotations

from multiplane.tools.doctor.model import FAIL, GROUPS, OK, WARNING

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from multiplane.tools.doctor.model import Check

__all__ = ["human", "report"]

_LABELS = {OK: "ok", WARNING: "WARN", FAIL: "FAIL"}
_VERDICTS = {
    FAIL: "pods on this node would fail",
    WARNING: "pods can run; see the warnings",
    OK: "nothing found that would make pods fail",
}


def report(checks: list[Check], node: str, conf_dir: str, bin_dir: str) -> dict[str, Any]:
    """The JSON document of `--json`; its `status` is the worst status of the checks."""
    counts = {OK: 0, WARNING: 0, FAIL: 0}
    for check in checks:
        counts[check.status] += 1
    status = OK
    for worse in (WARNING, FAIL):
        if counts[worse]:
            status = worse
    return {
        "node": node,
        "cniConfDir": conf_dir,
        "cniBinDir": bin_dir,
        "status": status,
        "counts": counts,
        "checks": [c.as_dict() for c in checks],
    }


def human(doc: dict[str, Any]) -> str:
    """The text output: a line per check under its group's title, `->` what to do, then the counts."""
    lines = [f"multiplane doctor: node {doc['node']} ({doc['cniConfDir']}, {doc['cniBinDir']})"]
    group = ""
    for check in doc["checks"]:
        if check["group"] != group:
            group = check["group"]
            lines += ["", GROUPS.get(group, group)]
        lines.append(f"  {_LABELS[check['status']]:<5} {check['finding']}")
        if check["action"]:
            lines.append(f"        -> {check['action']}")
    counts = doc["counts"]
    verdict = _VERDICTS[doc["status"]]
    lines += ["", f"{counts[FAIL]} failed, {counts[WARNING]} warnings, {counts[OK]} ok: {verdict}"]
    return "\n".join(lines) + "\n"
