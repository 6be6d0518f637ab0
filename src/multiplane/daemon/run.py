"""`multiplane daemon`: build the daemon from its configuration and serve until SIGTERM or SIGINT.

    multiplane daemon [--config PATH] [--socket PATH] [--kubeconfig PATH] [--node-name NAME]
                      [--metrics-address HOST:PORT] [--log-level LEVEL]

The cluster: `kubeconfig` when given, else the in-cluster service account when the daemon
runs in a pod (KUBERNETES_SERVICE_HOST), else none (requests read local NAD files or their
own `kubeconfig`, exactly as the one-shot process does). With a cluster, the NADs and this
node's pods are watched (caches.py) and every worker thread has its own kept-alive client.
/healthz is healthy once the socket listens and, with a cluster, both caches have synced.
On SIGTERM the socket is removed first (new calls fall back to in-process), then the
requests already taken finish.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from multiplane import __version__, logs
from multiplane.daemon.config import ConfigError, load

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="multiplane daemon", description="Serve CNI calls on a unix socket (thick mode).")
    p.add_argument("--config", default="", help="the daemon's JSON config file (docs/daemon.md)")
    p.add_argument("--socket", help="unix socket path (default /run/multiplane/multiplane.sock)")
    p.add_argument("--kubeconfig", help="the daemon's kubeconfig (default: in-cluster service account, if any)")
    p.add_argument("--node-name", dest="nodeName", help="this node's name (default: the host name)")
    p.add_argument("--metrics-address", dest="metricsAddress", help="host:port for /healthz and /metrics")
    p.add_argument("--log-level", dest="logLevel", help="debug, verbose, error or panic")
    return p


class _Cluster:
    """The daemon's Kubernetes side: caches shared by all workers, one client per worker thread."""

    def __init__(self, kube_cfg: Any, node_name: str, metrics: Any, log: logs.Logger) -> None:
        from multiplane.daemon.caches import Caches
        from multiplane.k8s.client import KubeClient

        self.kube_cfg = kube_cfg
        self._metrics = metrics
        self._local = threading.local()
        on_error = metrics.api_error if metrics is not None else None
        self.make_client = lambda: KubeClient(kube_cfg, on_error=on_error)
        self.caches = Caches(self.make_client, node_name, on_api_error=on_error, log=log)

    def source(self) -> Any:
        """This worker thread's source (its own client, the shared caches)."""
        src = getattr(self._local, "source", None)
        if src is None:
            from multiplane.daemon.caches import CachedSource

            src = CachedSource(self.make_client(), self.caches)
            if self._metrics is not None:
                src.on_lookup = self._metrics.cache_lookup
            self._local.source = src
        return src


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k != "config" and v is not None}
    try:
        cfg = load(args.config, overrides)
    except ConfigError as exc:
        sys.stderr.write(f"multiplane daemon: {exc}\n")
        return 2
    log = logs.Logger(cfg.log_level, cfg.log_file, to_stderr=not cfg.log_file)
    os.umask(0o022)  # files the calls create get the modes a runtime's plugins would give them
    os.chdir("/")

    from multiplane.daemon.metrics import Metrics, StatusServer
    from multiplane.daemon.server import DaemonFrontDoor, Server, SocketBusy
    from multiplane.errors import CniError
    from multiplane.k8s.client import in_cluster_config, load_kubeconfig

    try:
        kube_cfg = load_kubeconfig(cfg.kubeconfig) if cfg.kubeconfig else in_cluster_config()
    except CniError as exc:
        log.error(f"daemon: cannot use kubeconfig {cfg.kubeconfig}: {exc}")
        return 1
    cluster: _Cluster | None = None
    metrics = Metrics(cache_state=lambda: cluster.caches.state() if cluster is not None else {})
    if kube_cfg is not None:
        cluster = _Cluster(kube_cfg, cfg.node_name, metrics, log)
    from multiplane.daemon.ipam import Housekeeper

    housekeeper = Housekeeper(
        cfg.ipam_interval,
        cfg.ipam_reconcile_interval,
        cfg.ipam_reconcile_grace,
        log,
        metrics,
        kube_client=cluster.make_client if cluster is not None else None,
        nads=cluster.caches.nads if cluster is not None else None,
    )
    front = DaemonFrontDoor(cfg, cluster.source if cluster is not None else None, kube_cfg, housekeeper)
    housekeeper.front = front
    server = Server(cfg, front, log, metrics)
    try:
        server.bind()
    except (SocketBusy, OSError, CniError) as exc:
        log.error(f"daemon: cannot listen on {cfg.socket}: {exc}")
        return 1

    def health() -> tuple[bool, dict[str, Any]]:
        running, waiting = server.load()
        caches = cluster.caches.state() if cluster is not None else {}
        ok = server.serving.is_set() and all(c.get("synced") for c in caches.values())
        shown = {name: {"synced": bool(c.get("synced")), "objects": c.get("objects", 0)} for name, c in caches.items()}
        return ok, {"serving": server.serving.is_set(), "running": running, "waiting": waiting, "caches": shown}

    status = None
    if cfg.metrics_address:
        try:
            status = StatusServer(cfg.metrics_address, metrics, health)
            status.start()
        except (OSError, ValueError) as exc:
            log.error(f"daemon: cannot serve /healthz and /metrics on {cfg.metrics_address}: {exc}")
            server.close()
            return 1
    if cluster is not None:
        cluster.caches.start()
    housekeeper.start()
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    where = cluster.kube_cfg.server if cluster is not None else "none (local NAD files or each call's kubeconfig)"
    log.info(
        f"daemon: multiplane {__version__} serving {cfg.socket} on node {cfg.node_name}; cluster: {where}; "
        f"{cfg.max_concurrency} workers, {cfg.max_queued} queued at most"
        + (f"; /healthz and /metrics on {status.address}" if status is not None else "")
    )
    try:
        server.serve(stop)
    finally:
        housekeeper.stop()
        if cluster is not None:
            cluster.caches.stop()
        if status is not None:
            status.stop()
        log.info("daemon: stopped")
        log.close()
    return 0
