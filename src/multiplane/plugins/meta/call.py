"""One meta-plugin invocation: its config, logger, pod, network source, delegate invoker and Events.

`Call` is built from the request and carries what every command needs; reading the pod
(with the UID check and its static-pod exemption) and posting Events live here too.
"""

from __future__ import annotations

import os
import time

from multiplane import frontdoor
from multiplane.errors import CniError, InvalidConfig, NotAvailable
from multiplane.logs import Logger
from multiplane.plugins.meta.config import MetaConf
from multiplane.plugins.meta.plan import Delegate, PodRef
from multiplane.plugins.meta.runner import Invoker
from multiplane.spec.gojson import field, json_type

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from multiplane.skel import Request

__all__ = ["CONFIG_MIRROR", "CONFIG_SOURCE", "Call", "loose_pairs"]

READINESS_WAIT = 45.0
EVENT_TIMEOUT = 2.0  # seconds per step of one Event post; a slow API server must not hold the pod
EVENT_COMPONENT = "multiplane"
CONFIG_SOURCE = "kubernetes.io/config.source"
CONFIG_MIRROR = "kubernetes.io/config.mirror"


def loose_pairs(text: str) -> list[tuple[str, str]]:
    """CNI_ARGS as Multus reads it: split on ';', then on the first '='; malformed pairs skipped."""
    out = []
    for pair in text.split(";") if text else ():
        key, sep, value = pair.partition("=")
        if sep and key:
            out.append((key, value))
    return out


class Call:
    """Everything one invocation needs: config, logger, pod, source, invoker."""

    def __init__(self, req: Request) -> None:
        self.req = req
        self.conf = MetaConf(req.conf)
        raw = req.conf.raw
        self.log = Logger(self.conf.log_level, self.conf.log_file, self.conf.log_to_stderr, field(raw, "logOptions"))
        events = field(raw, "events")
        if events is not None and not isinstance(events, bool):
            raise InvalidConfig(f"invalid multiplane config: events must be true or false, got {json_type(events)}")
        self.events = events is not False
        self.pod = PodRef(loose_pairs(req.args.args))
        self.front = frontdoor.current()
        paths: list[str] = []
        for p in (*self.front.bin_dirs, self.conf.bin_dir, *req.args.path):
            if p not in paths:
                paths.append(p)
        self.invoker = Invoker(paths)
        self._source: Any = None
        # The pod as the API server knows it (for Events): set by read_pod from a KubeSource.
        self.api_pod: dict[str, Any] | None = None

    @property
    def source(self) -> Any:
        if self._source is None:
            from multiplane.plugins.meta.networks import KubeSource, LocalSource

            lent = self.front.kube_source(self.conf.kubeconfig, self.req.args.env)
            if lent is not None:  # the daemon's watch-cached source
                self._source = lent
                return lent
            cfg = None
            if self.conf.kubeconfig or self.front.cluster_env().get("KUBERNETES_SERVICE_HOST"):
                # Only a cluster pays for the client and ssl (~10 ms of imports).
                from multiplane.k8s.client import KubeClient, in_cluster_config, load_kubeconfig

                cfg = (
                    load_kubeconfig(self.conf.kubeconfig)
                    if self.conf.kubeconfig
                    else in_cluster_config(dict(self.front.cluster_env()))
                )
            if cfg is not None:
                from multiplane.k8s.client import KubeClient

                self._source = KubeSource(KubeClient(cfg))
            else:
                runtime = self.conf.runtime_config.get("io.kubernetes.cri.pod-annotations")
                self._source = LocalSource(
                    self.conf.local_nad_dir,
                    self.conf.local_pod_dir,
                    dict(loose_pairs(self.req.args.args)),
                    runtime if isinstance(runtime, dict) else {},
                )
        return self._source

    def env(self, d: Delegate) -> dict[str, str]:
        env = dict(self.req.args.env)
        env["CNI_IFNAME"], env["CNI_ARGS"] = d.ifname, d.cni_args
        return env

    def wait_ready(self, wait: bool) -> None:
        path = self.conf.readiness_file
        if not path:
            return
        deadline = time.monotonic() + (READINESS_WAIT if wait else 0)
        while not os.path.exists(path):
            if time.monotonic() >= deadline:
                raise NotAvailable(
                    f"have you checked that your default network is ready? still waiting for readinessindicatorfile @ {path}"
                )
            time.sleep(1)

    def read_pod(self) -> None:
        """Fill pod annotations from the source; verify the UID the runtime gave."""
        if not self.pod.known:
            return
        from multiplane.k8s.errors import NotFound

        try:
            obj = self.source.pod(self.pod.namespace, self.pod.name, self.pod.uid)
        except NotFound as exc:
            raise CniError(
                f'pod "{self.pod.namespace}/{self.pod.name}" not found in the Kubernetes API', exc.details
            ) from exc
        from multiplane.plugins.meta.networks import annotations_of

        annotations = annotations_of(obj, f'pod "{self.pod.namespace}/{self.pod.name}"')
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        uid = str(meta.get("uid") or "") if isinstance(meta, dict) else ""
        if self.pod.uid and uid and uid != self.pod.uid:
            if not _is_static(annotations):
                raise CniError(f'expected pod UID "{self.pod.uid}" but got "{uid}" from Kube API')
            # A static pod: the API holds its mirror, whose UID is not the one kubelet runs.
            self.log.verbose(f"{self.pod.label()}: static pod, mirror UID {uid} accepted")
        self.pod.uid = self.pod.uid or uid
        self.pod.api_uid = uid
        self.pod.annotations = annotations
        if getattr(self.source, "kind", "") == "kubernetes" and isinstance(obj, dict):
            self.api_pod = obj

    def event(self, kind: str, reason: str, message: str) -> None:
        """Post an Event on the pod (best effort); nothing when events are off or the pod is not from the API."""
        if not self.events or self.api_pod is None:
            return
        meta = self.api_pod.get("metadata") or {}
        spec = self.api_pod.get("spec")
        node = spec.get("nodeName") if isinstance(spec, dict) else None
        node = node if isinstance(node, str) else ""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        involved = {"apiVersion": "v1", "kind": "Pod", "namespace": self.pod.namespace, "name": self.pod.name}
        if self.pod.api_uid:
            involved["uid"] = self.pod.api_uid
        if isinstance(meta.get("resourceVersion"), str):
            involved["resourceVersion"] = meta["resourceVersion"]
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            # client-go's name for an event: <object>.<time in ns, hex>
            "metadata": {"name": f"{self.pod.name}.{time.time_ns():x}", "namespace": self.pod.namespace},
            "involvedObject": involved,
            "type": kind,
            "reason": reason,
            "message": message if len(message) <= 1024 else message[:1021] + "...",
            "source": {"component": EVENT_COMPONENT, **({"host": node} if node else {})},
            "reportingComponent": EVENT_COMPONENT,
            "reportingInstance": node,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.source.client.create_event(self.pod.namespace, body, timeout=EVENT_TIMEOUT)
        except CniError as exc:  # ApiError, or a name the client refuses
            self.events = False  # one failure is enough: the next post would wait as long
            self.log.error(
                f"{self.pod.label()}: cannot post the {reason} event ({exc}{': ' + exc.details if exc.details else ''}); "
                "further events of this call are skipped (does the service account have `create` on `events`?)"
            )
        except Exception:  # noqa: BLE001 - a bug in posting an Event must not fail the ADD
            self.events = False
            self.log.bug(f"{self.pod.label()}: posting the {reason} event")
        else:
            self.log.debug(f"{self.pod.label()}: event {kind} {reason}: {message}")


def _is_static(annotations: dict[str, str]) -> bool:
    """Multus's test: the pod came from a file or URL (`config.source` not `api`), or it is a mirror."""
    return annotations.get(CONFIG_SOURCE, "api") != "api" or CONFIG_MIRROR in annotations
