"""The daemon's configuration: a JSON file, then command-line flags over it.

    multiplane daemon [--config PATH] [--socket PATH] [--kubeconfig PATH] [--node-name NAME]

Keys of the file (all optional; docs/daemon.md is the reference):

    socket          unix socket path the per-call client connects to   /run/multiplane/multiplane.sock
    kubeconfig      the daemon's credentials; "" = the in-cluster service account when
                    KUBERNETES_SERVICE_HOST is set, else no cluster (local NAD files, as one-shot)
    nodeName        this node's name (the pods cache watches spec.nodeName=<it>)   the host name
    cniBinDir       searched for external plugins before a request's binDir and CNI_PATH   ""
    chrootDir       external plugins run chrooted here (the node's / in the container)   ""
    maxConcurrency  requests run at once (worker threads)                               8
    maxQueued       requests that may wait for a worker; more are refused with code 11  128
    queueTimeout    seconds a request may wait for a worker before it is refused (11)  60
    metricsAddress  host:port for /healthz and /metrics; "" = off                      ""
    logFile         the daemon's own log ("" = stderr)                                  ""
    logLevel        debug, verbose, error, panic                                        "error"
    ipamInterval    seconds between rounds of cluster-wide IPAM's journal replay and
                    block claims ahead of need (daemon/ipam.py); 0 = off                10
    ipamReconcileInterval  seconds between the reconciler's looks (with a cluster); 0 = off  300
    ipamReconcileGrace     seconds a node or pod must be seen gone before its claims are freed  600

A request's own config (`logFile`, `logLevel`, `kubeconfig`, …) still governs that request;
these keys are the daemon's. Unknown keys are refused: a typo must not silently keep a default.
"""

from __future__ import annotations

import json
import os
import socket

from multiplane.logs import LEVELS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = ["DEFAULT_SOCKET", "ConfigError", "DaemonConfig", "load"]

DEFAULT_SOCKET = "/run/multiplane/multiplane.sock"


class ConfigError(ValueError):
    """The daemon cannot start with this configuration (the text says which key and why)."""


class DaemonConfig:
    """Resolved settings; see the module docstring for each key."""

    # JSON key → (attribute, type, default)
    KEYS: dict[str, tuple[str, type, Any]] = {
        "socket": ("socket", str, DEFAULT_SOCKET),
        "kubeconfig": ("kubeconfig", str, ""),
        "nodeName": ("node_name", str, ""),
        "cniBinDir": ("cni_bin_dir", str, ""),
        "chrootDir": ("chroot_dir", str, ""),
        "maxConcurrency": ("max_concurrency", int, 8),
        "maxQueued": ("max_queued", int, 128),
        "queueTimeout": ("queue_timeout", float, 60.0),
        "metricsAddress": ("metrics_address", str, ""),
        "logFile": ("log_file", str, ""),
        "logLevel": ("log_level", str, "error"),
        "ipamInterval": ("ipam_interval", float, 10.0),
        "ipamReconcileInterval": ("ipam_reconcile_interval", float, 300.0),
        "ipamReconcileGrace": ("ipam_reconcile_grace", float, 600.0),
    }

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        values = dict(values or {})
        for key in values:
            if key not in self.KEYS:
                raise ConfigError(f"unknown key {key!r} (known: {', '.join(self.KEYS)})")
        for key, (attr, kind, default) in self.KEYS.items():
            value = values.get(key, default)
            setattr(self, attr, _typed(key, value, kind))
        self.socket: str
        self.kubeconfig: str
        self.node_name: str
        self.cni_bin_dir: str
        self.chroot_dir: str
        self.max_concurrency: int
        self.max_queued: int
        self.queue_timeout: float
        self.metrics_address: str
        self.log_file: str
        self.log_level: str
        self.ipam_interval: float
        self.ipam_reconcile_interval: float
        self.ipam_reconcile_grace: float
        self._check()
        if not self.node_name:
            # kubelet's default node name: the host name, lower-cased.
            self.node_name = socket.gethostname().lower()

    def _check(self) -> None:
        for key in ("socket", "kubeconfig", "cniBinDir", "chrootDir", "logFile"):
            value = getattr(self, self.KEYS[key][0])
            if value and (not os.path.isabs(value) or ".." in value.split("/")):
                raise ConfigError(f"{key} must be an absolute path without '..', got {value!r}")
        if not self.socket:
            raise ConfigError("socket must name a path")
        if len(os.fsencode(self.socket)) > 107:
            raise ConfigError(f"socket path is longer than a unix socket allows (107 bytes): {self.socket!r}")
        if not 1 <= self.max_concurrency <= 1024:
            raise ConfigError(f"maxConcurrency must be 1..1024, got {self.max_concurrency}")
        if not 0 <= self.max_queued <= 100000:
            raise ConfigError(f"maxQueued must be 0..100000, got {self.max_queued}")
        if not 0 < self.queue_timeout <= 3600:
            raise ConfigError(f"queueTimeout must be a number of seconds in (0, 3600], got {self.queue_timeout}")
        for key in ("ipamInterval", "ipamReconcileInterval"):
            value = getattr(self, self.KEYS[key][0])
            if not 0 <= value <= 86400:
                raise ConfigError(f"{key} must be 0 (off) or a number of seconds up to 86400, got {value}")
        if not 0 <= self.ipam_reconcile_grace <= 30 * 86400:
            raise ConfigError(f"ipamReconcileGrace must be 0..2592000 seconds, got {self.ipam_reconcile_grace}")
        if self.log_level.lower() not in LEVELS:
            raise ConfigError(f"logLevel must be one of {', '.join(LEVELS)}, got {self.log_level!r}")
        self.log_level = self.log_level.lower()

    def to_dict(self) -> dict[str, Any]:
        """The effective settings under their JSON keys (the daemon logs them at start)."""
        return {key: getattr(self, attr) for key, (attr, _, _) in self.KEYS.items()}


def _typed(key: str, value: Any, kind: type) -> Any:
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {json.dumps(value)}")
        return float(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {json.dumps(value)}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a string, got {json.dumps(value)}")
    return value


def load(path: str = "", overrides: Mapping[str, Any] | None = None) -> DaemonConfig:
    """The file at `path` (if any) with `overrides` (flags, by JSON key) on top."""
    values: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as fh:
                data = json.loads(fh.read())
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
        except (ValueError, RecursionError) as exc:
            raise ConfigError(f"{path} is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a JSON object")
        values.update(data)
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    try:
        return DaemonConfig(values)
    except ConfigError as exc:
        raise ConfigError(f"{path + ': ' if path else ''}{exc}") from None
