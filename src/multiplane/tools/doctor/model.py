"""What a doctor run reports: the three statuses, the groups in output order, one `Check` per finding.

Also the small values the checks pass around: a `Network` pods can reach, and `Unknown`.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from multiplane.plugins.meta.networks import NetworkConfig

__all__ = ["FAIL", "GROUPS", "OK", "WARNING", "Check", "Network", "Unknown", "listing"]

# ok; warning: it works, but not as intended; fail: pods on this node would fail (exit status 1).
OK, WARNING, FAIL = "ok", "warning", "fail"
# Output order and titles of the groups.
GROUPS = {
    "config": "CNI configuration",
    "plugins": "delegate plugins (CNI bin dir)",
    "networks": "networks of this node's pods (master NICs)",
    "api": "Kubernetes API and RBAC",
    "readiness": "readiness indicator file",
    "runtime": "installed runtime",
    "daemon": "node daemon (thick mode)",
}


class Check:
    """One finding: `id` is `<group>.<what>` (stable, for scripts), `action` is empty when ok."""

    __slots__ = ("id", "group", "status", "finding", "action")

    def __init__(self, check_id: str, status: str, finding: str, action: str = "") -> None:
        if status not in (OK, WARNING, FAIL):
            raise ValueError(f"unknown status {status!r}")
        self.id, self.status, self.finding, self.action = check_id, status, finding, action
        self.group = check_id.split(".", 1)[0]

    def as_dict(self) -> dict[str, str]:
        return {
            "id": self.id,
            "group": self.group,
            "status": self.status,
            "finding": self.finding,
            "action": self.action,
        }

    def __repr__(self) -> str:
        return f"<Check {self.id} {self.status}: {self.finding}>"


class Network:
    """A delegate network the configuration can reach: what to call it, its config, who uses it."""

    __slots__ = ("label", "config", "users")

    def __init__(self, label: str, config: NetworkConfig, users: list[str] | None = None) -> None:
        self.label, self.config, self.users = label, config, users or []


class Unknown(Exception):
    """A fact the doctor cannot learn (the API is down): the check is a warning, not a verdict."""


def listing(items: list[str], most: int = 3) -> str:
    """The first `most` items for a finding: `a, b, c and 2 more`."""
    shown = ", ".join(items[:most])
    if len(items) > most:
        shown += f" and {len(items) - most} more"
    return shown
