"""The `readiness.file` check: the `readinessindicatorfile` of 00-multiplane.conf, when one is set, is present."""

from __future__ import annotations

import os

from multiplane.tools.doctor.model import FAIL, OK

TYPE_CHECKING = False
if TYPE_CHECKING:
    from multiplane.tools.doctor.node import Doctor

__all__ = ["check_readiness"]


def check_readiness(doctor: Doctor) -> None:
    """Missing, ADD, GC and STATUS wait for it and then fail; nothing to check without a valid 00-multiplane.conf."""
    meta = doctor.meta
    if meta is None:
        return
    path = meta.readiness_file
    if not path:
        doctor.add(
            "readiness.file", OK, "no readinessindicatorfile configured: ADD does not wait for the cluster network"
        )
    elif os.path.exists(doctor.real(path)):
        doctor.add("readiness.file", OK, f"{path} is present")
    else:
        doctor.add(
            "readiness.file",
            FAIL,
            f"{path} is missing: ADD, GC and STATUS wait 45 s for it, then fail",
            "check that the cluster network's own agent runs on this node (it writes this file when ready), "
            "or fix readinessindicatorfile (`multiplane install --readiness-indicator-file`)",
        )
