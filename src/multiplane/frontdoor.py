"""What the front door that runs a call (the one-shot process, or the node daemon) lends it.

A CNI command is a function of its request; a few things belong to whoever runs it rather
than to the request, and the meta-plugin and the delegate runner ask for them here:

* `exec_root`: the directory external plugins run against (chroot), "" for the process's own
  root. The daemon sets it from `chrootDir` when it runs in a container with the node's `/`
  mounted somewhere, so the node's dynamically linked plugins find their libraries.
* `bin_dirs`: directories searched for external plugins before the request's own
  (`binDir`, then `CNI_PATH`): the daemon's `cniBinDir`.
* `kube_source(kubeconfig, env)`: the Kubernetes source a call reads pods and NADs from and
  writes network-status to. The one-shot front door has none to lend (the call builds its own
  client from `kubeconfig` or the in-cluster environment); the daemon lends its watch-cached
  source over a kept-alive connection to the calls that would talk to a cluster one-shot
  (a `kubeconfig` in their config, or KUBERNETES_SERVICE_HOST in their environment).
* `cluster_env()`: the environment in which a call looks for the in-cluster service account
  (`KUBERNETES_SERVICE_HOST`). The one-shot process's own; in the daemon, none: whether the
  daemon talks to a cluster is its own configuration's choice, and the daemon's environment
  never leaks into a request.
* `cluster_config(kubeconfig)`: the API cluster-wide IPAM's Kubernetes store talks to. One-shot:
  the `kubeconfig` file when the section names one, else the service account named by
  `cluster_env()`. In the daemon with a cluster: always the daemon's own (its identity serves
  every call that would talk to a cluster, as `kube_source` does; a Whereabouts NAD's
  kubeconfig would carry Whereabouts' rights, not these); without one, as one-shot.
* `node_name()`: the node's name for cluster-wide IPAM when its config has no `nodeName`: the
  host name one-shot; the daemon's `nodeName` (the kubelet's, in the DaemonSet) in the daemon.
* `look_after(conf)`: cluster-wide IPAM hands the configuration of each call to the front
  door; the one-shot process ignores it, the daemon's housekeeping replays that node's
  journal, claims blocks ahead of need and reconciles its pools (daemon/ipam.py).
* `note`: how the call got here, for its log ("" or e.g. why the daemon was not used).
* `delegate_env`: variables added to every external plugin's environment. The daemon adds
  MULTIPLANE_DAEMON=off: a delegate that itself runs a multiplane program (the reference
  bridge with IPAM `multiplane-host-local`) must not queue behind the worker that waits for it.
* `close_later(obj)`: close something slow to close (a packet socket) now, or off the
  request's path in the daemon.

Held in a context variable like the process logger (multiplane.logs): the daemon installs one
per request on its worker thread; with none installed, a call gets the one-shot defaults.
"""

from __future__ import annotations

import os
from contextvars import ContextVar

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from contextvars import Token
    from typing import Any

__all__ = ["FrontDoor", "current", "serving"]


class FrontDoor:
    """The one-shot defaults; the daemon passes its own values (or a subclass for `kube_source`)."""

    name = "process"
    # Added to the environment of every external plugin a call executes (see the daemon's).
    delegate_env: Mapping[str, str] = {}

    def __init__(self, exec_root: str = "", bin_dirs: tuple[str, ...] = (), note: str = "") -> None:
        self.exec_root = exec_root
        self.bin_dirs = bin_dirs
        self.note = note

    def kube_source(self, kubeconfig: str, env: Mapping[str, str]) -> Any | None:
        """A ready source for the call's Kubernetes reads and writes, or None: the call builds its own."""
        return None

    def cluster_env(self) -> Mapping[str, str]:
        """The environment that may name an in-cluster API server (KUBERNETES_SERVICE_HOST)."""
        return os.environ

    def cluster_config(self, kubeconfig: str = "") -> Any | None:
        """The KubeConfig of `kubeconfig` (a file) or, when "", of the in-cluster service account; None: no cluster."""
        from multiplane.k8s.client import in_cluster_config, load_kubeconfig

        if kubeconfig:
            return load_kubeconfig(kubeconfig)
        return in_cluster_config(dict(self.cluster_env()))

    def node_name(self) -> str:
        """This node's name for a call that does not set one: the host name, lower-cased (kubelet's default)."""
        import socket

        return socket.gethostname().strip().lower()

    def look_after(self, conf: Any) -> None:
        """A cluster-wide IPAM configuration this node used (the daemon keeps its background work going)."""

    def close_later(self, closeable: Any) -> None:
        """Close something whose close is slow but whose result nobody waits for.

        Closing an AF_PACKET socket waits for an RCU grace period in the kernel (8–16 ms
        here). A one-shot process closes at once (its exit would wait as long); the daemon
        hands it to a closer thread, off the request's path.
        """
        closeable.close()


_DEFAULT = FrontDoor()
_current: ContextVar[FrontDoor | None] = ContextVar("multiplane_frontdoor", default=None)


def current() -> FrontDoor:
    """The front door running this call (the one-shot defaults unless one was installed)."""
    front = _current.get()
    return front if front is not None else _DEFAULT


class serving:  # used as a context manager, like logs.using
    """`with serving(front):` makes `front` the one this call's code sees; the previous one comes back on exit."""

    def __init__(self, front: FrontDoor) -> None:
        self.front = front
        self._token: Token[FrontDoor | None] | None = None

    def __enter__(self) -> FrontDoor:
        self._token = _current.set(self.front)
        return self.front

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None
