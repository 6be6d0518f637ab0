"""`Doctor`: one run on one node: its paths (under `--root`), what earlier checks learnt, the order of the checks.

Findings show node paths: `add` takes the `--root` prefix out of every finding and action.
"""

from __future__ import annotations

import os
import socket
import sys

from multiplane.tools.doctor import api, configs, daemon, networks, nics, plugins, readiness, runtime
from multiplane.tools.doctor.model import GROUPS, WARNING, Check

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from multiplane.k8s.client import KubeClient
    from multiplane.plugins.meta.config import MetaConf
    from multiplane.tools.doctor.model import Network

__all__ = ["Doctor"]

# (group, step), in the order they run. The API comes before the primary (which a NAD may
# name); the networks are collected before the plugins and master NICs they use are checked.
STEPS: tuple[tuple[str, Callable[[Doctor], None]], ...] = (
    ("config", configs.check_config),
    ("config", configs.check_multus),
    ("api", api.check_api),
    ("config", configs.check_primary),
    ("networks", networks.collect_networks),
    ("plugins", plugins.check_plugins),
    ("networks", nics.check_masters),
    ("readiness", readiness.check_readiness),
    ("runtime", runtime.check_runtime),
    ("daemon", daemon.check_daemon),
)


class Doctor:
    """Runs the checks of one node; `run()` returns them in output order."""

    def __init__(
        self,
        *,
        conf_dir: str = "/etc/cni/net.d",
        bin_dir: str = "/opt/cni/bin",
        root: str = "",
        node: str = "",
        kubeconfig: str = "",
    ) -> None:
        self.conf_dir, self.bin_dir = os.path.abspath(conf_dir), os.path.abspath(bin_dir)
        self.root = os.path.abspath(root) if root else ""
        self.node = node or socket.gethostname().lower()  # the kubelet's default node name
        self.kubeconfig = kubeconfig
        self.checks: list[Check] = []
        self.meta: MetaConf | None = None
        self.meta_raw: dict[str, object] | None = None  # 00-multiplane.conf as JSON (keys MetaConf does not keep)
        self.client: KubeClient | None = None
        self.api = "none"  # "none": no kubeconfig (local files); "up"; "down"
        self.networks: list[Network] = []

    def real(self, path: str) -> str:
        """Where the node path `path` is on this machine (under --root)."""
        path = os.path.abspath(path)
        return os.path.join(self.root, path.lstrip("/")) if self.root else path

    def unroot(self, text: str) -> str:
        """`text` with node paths instead of paths under --root."""
        return text.replace(self.root + "/", "/") if self.root else text

    def add(self, check_id: str, status: str, finding: str, action: str = "") -> Check:
        one_line = " ".join(self.unroot(finding).split("\n"))
        check = Check(check_id, status, one_line, self.unroot(action))
        self.checks.append(check)
        return check

    @property
    def conf(self) -> MetaConf:
        """The parsed 00-multiplane.conf, for the steps that run only once it parsed."""
        if self.meta is None:
            raise RuntimeError("00-multiplane.conf has not been parsed")
        return self.meta

    def run(self) -> list[Check]:
        for group, step in STEPS:
            try:
                step(self)
            except Exception as exc:  # noqa: BLE001 - a bug in one check must not hide the others
                import traceback

                traceback.print_exc(file=sys.stderr)
                self.add(
                    f"{group}.internal",
                    WARNING,
                    f"not checked: internal error in {step.__name__}: {type(exc).__name__}: {exc}",
                    "report this with the traceback printed on stderr",
                )
        order = list(GROUPS)
        return sorted(self.checks, key=lambda c: order.index(c.group))
