"""The meta-plugin (`multiplane`): attach the cluster network and every selected network, and report.

ADD: read the pod (API or local files) → plan the delegates → refuse interface names that
clash → cache the plan → run each delegate (built-ins in-process, others by exec); on the
first failure undo the attached ones in reverse, the failed one included → apply
`default-route` → cache the results → write network-status → return the cluster network's
result in our cniVersion. DEL works from the cache (pod, NAD and API server not needed),
in reverse, past failures. CHECK checks every delegate against its cached result. GC
translates the runtime's valid attachments to delegate attachments. STATUS reports the
readiness file and the cluster network.

Diagnostics: each command installs its logger (`logFile`, `logLevel`, `logToStderr`,
`logOptions`) as the process logger, so in-process built-ins log there too; `debug` shows
the plan, every delegate call and the total time. A Python exception is a bug: its
traceback is logged (level `panic`) and the runtime gets `internal error: …` (code 999).
For a pod read from the Kubernetes API, ADD posts Events on it (unless `"events": false`):
Normal `AddedInterface` per attachment once all are in place (Multus's text,
`Add net1 [10.1.1.3/24] from ns/nad`), Warning `NoNetworkFound` or `AddFailed` when it fails.
Events are best effort: one try each, a short timeout, and the first failure stops the rest.
"""

from __future__ import annotations

import errno
import json
import os
import time

from multiplane import logs
from multiplane.errors import CniError, DelegateError, InvalidConfig, InvalidEnvironment, NotAvailable, PluginNotFound
from multiplane.fsutil import sweep_temporaries, write_atomic
from multiplane.logs import Logger
from multiplane.plugins.meta import cache, status
from multiplane.plugins.meta.config import MetaConf
from multiplane.plugins.meta.plan import Delegate, PodRef, plan, requested_ips_missing
from multiplane.plugins.meta.runner import Invoker
from multiplane.plugins.meta.selection import NETWORKS_ANNOTATION
from multiplane.spec.gojson import field, json_type
from multiplane.spec.result import Result

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from multiplane.skel import Request

__all__ = ["Meta"]

READINESS_WAIT = 45.0
EVENT_TIMEOUT = 2.0  # seconds per step of one Event post; a slow API server must not hold the pod
EVENT_COMPONENT = "multiplane"
CONFIG_SOURCE = "kubernetes.io/config.source"
CONFIG_MIRROR = "kubernetes.io/config.mirror"


def _loose_pairs(text: str) -> list[tuple[str, str]]:
    """CNI_ARGS as Multus reads it: split on ';', then on the first '='; malformed pairs skipped."""
    out = []
    for pair in text.split(";") if text else ():
        key, sep, value = pair.partition("=")
        if sep and key:
            out.append((key, value))
    return out


class _Call:
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
        self.pod = PodRef(_loose_pairs(req.args.args))
        paths = [self.conf.bin_dir, *[p for p in req.args.path if p != self.conf.bin_dir]]
        self.invoker = Invoker(paths)
        self._source: Any = None
        # The pod as the API server knows it (for Events): set by read_pod from a KubeSource.
        self.api_pod: dict[str, Any] | None = None

    @property
    def source(self) -> Any:
        if self._source is None:
            from multiplane.plugins.meta.networks import KubeSource, LocalSource

            cfg = None
            if self.conf.kubeconfig or os.environ.get("KUBERNETES_SERVICE_HOST"):
                # Only a cluster pays for http.client and ssl (~20 ms of imports).
                from multiplane.k8s.client import KubeClient, in_cluster_config, load_kubeconfig

                cfg = load_kubeconfig(self.conf.kubeconfig) if self.conf.kubeconfig else in_cluster_config()
            if cfg is not None:
                from multiplane.k8s.client import KubeClient

                self._source = KubeSource(KubeClient(cfg))
            else:
                runtime = self.conf.runtime_config.get("io.kubernetes.cri.pod-annotations")
                self._source = LocalSource(
                    self.conf.local_nad_dir,
                    self.conf.local_pod_dir,
                    dict(_loose_pairs(self.req.args.args)),
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
            obj = self.source.pod(self.pod.namespace, self.pod.name)
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


def _check_names_free(netns: str, delegates: list[Delegate]) -> None:
    from multiplane.netlink import links
    from multiplane.netlink.netns import NetnsNotFound, NotANetns, open_netns
    from multiplane.netlink.rtnl import Rtnl

    try:
        fd = open_netns(netns)
    except (NetnsNotFound, NotANetns) as exc:
        raise InvalidEnvironment(exc.msg, "CNI_NETNS must name an existing network namespace") from exc
    try:
        with Rtnl(fd) as pod:
            for d in delegates:
                if links.get_link(pod, d.ifname) is not None:
                    raise InvalidEnvironment(
                        f'interface "{d.ifname}" for network "{d.name}" already exists in netns "{netns}"'
                    )
    finally:
        os.close(fd)


def _apply_default_route(netns: str, delegates: list[Delegate], d: Delegate, result: Result) -> None:
    """Multus `default-route`: once any selection has the key, a pod's default routes are exactly the requested ones.

    Every attachment loses its default routes (both families), and the requesting one gets
    `default via <gw> dev <ifname>` for each gateway it asked for; the result is edited to match.
    """
    if all(x.default_route is None for x in delegates) or not (result.interfaces or result.ips):
        return
    from ipaddress import ip_address, ip_interface

    from multiplane.netlink import addrs, links
    from multiplane.netlink.netns import open_netns
    from multiplane.netlink.rtnl import Rtnl
    from multiplane.spec.result import Route

    wanted = [ip_address(g) for g in d.default_route or []]
    fd = open_netns(netns)
    try:
        with Rtnl(fd) as pod:
            link = links.get_link(pod, d.ifname)
            if link is None:
                return
            for family in (4, 6):
                addrs.delete_default_routes(pod, link.index, family)
            result.routes = [r for r in result.routes if r.dst.network.prefixlen != 0]
            for gw in wanted:
                addrs.add_default_route(pod, link.index, d.ifname, gw)
                result.routes.append(Route(ip_interface("0.0.0.0/0" if gw.version == 4 else "::/0"), gw))
    finally:
        os.close(fd)


class Meta:
    """The meta-plugin personality `multiplane`."""

    name = "multiplane"

    @staticmethod
    def _command(
        call: _Call, command: str, body: Callable[[], Any], on_error: Callable[[CniError], None] | None = None
    ) -> Any:
        """Run one command with `call.log` as the process logger; a non-CNI exception becomes code 999, traceback logged."""
        args = call.req.args
        what = f"{call.pod.label()}: {command} of container {args.container_id}"
        started = time.monotonic()
        outcome = "failed"
        with logs.using(call.log):
            call.log.debug(f"{what} (netns {args.netns or '-'}, ifname {args.ifname or '-'}, CNI_ARGS {args.args!r})")
            try:
                out = body()
                outcome = "done"
            except CniError as exc:
                if on_error is not None:
                    on_error(exc)
                raise
            except Exception as exc:  # a bug: logged with its traceback, answered as code 999
                error = logs.internal_error(exc, what)
                if on_error is not None:
                    on_error(error)
                raise error from exc
            finally:
                call.log.debug(f"{what}: {outcome} after {(time.monotonic() - started) * 1000:.1f} ms")
                call.log.close()
        return out

    def add(self, req: Request) -> Result:
        call = _Call(req)

        def failed(exc: CniError) -> None:
            # The runtime shows this too, but node logs (and the pod's Events) are where operators look first.
            call.log.error(f"{call.pod.label()}: ADD of container {req.args.container_id} failed: {exc}")
            call.event("Warning", _failure_reason(exc), _failure_message(exc))

        result: Result = self._command(call, "ADD", lambda: self._add(call), failed)
        return result

    def _add(self, call: _Call) -> Result:
        req = call.req
        problem = call.pod.problem()
        if problem:
            raise InvalidEnvironment(problem, "CNI_ARGS")
        call.wait_ready(wait=True)
        call.read_pod()
        delegates = plan(call.conf, call.source, call.pod, req.args.ifname)
        _log_plan(call, delegates)
        _check_names_free(req.args.netns, delegates)
        cid = req.args.container_id
        record: dict[str, Any] = {
            "containerID": cid,
            "netns": req.args.netns,
            "ifname": req.args.ifname,
            "pod": {"namespace": call.pod.namespace, "name": call.pod.name, "uid": call.pod.uid},
        }
        cache.save(call.conf.cni_dir, cid, {**record, "delegates": [d.to_cache() for d in delegates]})
        for index, d in enumerate(delegates):
            try:
                d.result = call.invoker.add(d.net, call.env(d), d.cap_args, d.args_cni)
                missing = requested_ips_missing(d)
                if missing:
                    raise InvalidConfig(
                        f"the pod asked for {', '.join(missing)} but the network assigned "
                        f"{', '.join(str(ip.address) for ip in d.result.ips) or 'nothing'}",
                        'its IPAM ignores requested addresses: use host-local or static with the "ips" capability',
                    )
                _apply_default_route(req.args.netns, delegates, d, d.result)
            except Exception as exc:
                if not isinstance(exc, CniError):
                    call.log.bug(f"{call.pod.label()}: ADD of {d.name} ({d.ifname})")
                self._rollback(call, delegates[: index + 1])
                raise _named_error(call.pod, d, exc) from exc
            call.log.verbose(f"{call.pod.label()}: added {d.ifname} from {d.name}")
        try:
            cache.save(call.conf.cni_dir, cid, {**record, "delegates": [d.to_cache() for d in delegates]})
            self._report(call, delegates)
        except CniError:
            self._rollback(call, delegates)
            raise
        master = next(d for d in delegates if d.master)
        assert master.result is not None
        for d in delegates:  # once every attachment is in place: a rolled-back ADD announces nothing
            assert d.result is not None
            ips = " ".join(str(ip.address) for ip in d.result.ips)
            call.event("Normal", "AddedInterface", f"Add {d.ifname} [{ips}] from {d.name}")
        return _merge_prev(req, master.result)

    def _rollback(self, call: _Call, attached: list[Delegate]) -> None:
        """Undo in reverse (the failed one included, it may be half-done); drop the cache if all went.

        The failed delegate's own DEL may fail for the reason its ADD did (the reference macvlan
        looks its missing master up again): that is logged, not kept, or every later DEL
        would repeat it and the sandbox could never be removed.
        """
        clean = True
        for d in reversed(attached):
            try:
                call.invoker.delete(d.net, call.env(d), d.cap_args, d.args_cni, d.result)
            except Exception as exc:  # noqa: BLE001 - keep undoing; the ADD error is what the runtime sees
                if not isinstance(exc, CniError):
                    call.log.bug(f"{call.pod.label()}: rollback of {d.name} ({d.ifname})")
                failed_one = d is attached[-1] and d.result is None
                clean = clean and failed_one
                call.log.error(f"{call.pod.label()}: rollback of {d.name} ({d.ifname}) failed: {exc}")
        if clean:
            cache.remove(call.conf.cni_dir, call.req.args.container_id)

    def _report(self, call: _Call, delegates: list[Delegate]) -> None:
        """network-status: to the pod (API) first; then the status file, so a failed write leaves none."""
        entries = []
        for d in delegates:
            assert d.result is not None
            entries += status.entries(d.name, d.result, d.master)
        value = status.render(entries)
        call.log.verbose(f"{call.pod.label()}: network-status {value}")
        if call.pod.known:
            from multiplane.k8s.errors import NotFound

            try:
                call.source.write_status(call.pod.namespace, call.pod.name, call.pod.api_uid or call.pod.uid, value)
            except NotFound:
                call.log.error(f"{call.pod.label()}: pod disappeared before network-status was written")
        try:
            write_atomic(_status_path(call.conf.cni_dir, call.req.args.container_id, create=True), value.encode())
        except OSError as exc:
            raise CniError(
                f"cannot write the network-status file in {call.conf.cni_dir}/status: {exc.strerror}"
            ) from exc

    def delete(self, req: Request) -> None:
        """Undo every attachment; never pinned by a broken cache, a lost API server or a failing delegate.

        With a readable cache, its delegates are deleted in reverse; their errors are reported,
        and the cache is dropped anyway unless `retryDeleteOnError` asks to keep it for the
        runtime's retry (a delegate whose binary is gone drops it regardless: no retry can help).
        Without one (missing, corrupt, a link), the plan is rebuilt from what is known now, and
        every host-local reservation of this container in the networks the node knows is
        released (sweep.py); what fails is logged, and DEL succeeds.
        """
        call = _Call(req)
        self._command(call, "DEL", lambda: self._delete(call))

    def _delete(self, call: _Call) -> None:
        cid = call.req.args.container_id
        problem = call.pod.problem()
        if problem:
            call.log.error(f"DEL of container {cid}: {problem}; the pod is ignored")
            call.pod.namespace = call.pod.name = ""
        if call.conf.readiness_file and not os.path.exists(call.conf.readiness_file):
            call.log.error(
                f"{call.pod.label()}: readiness indicator file {call.conf.readiness_file} is missing; deleting anyway"
            )
        delegates = self._from_cache(call)
        if delegates is None:
            self._delete_uncached(call)
            return
        failures = self._delete_all(call, delegates)
        call.log.verbose(f"{call.pod.label()}: deleted {len(delegates)} attachment(s) of container {cid}")
        if failures:
            keep = call.conf.retry_delete_on_error and not all(isinstance(e, PluginNotFound) for _d, e in failures)
            if not keep:
                self._forget(call)
            text = "; ".join(f"{d.name} ({d.ifname}): {exc}" for d, exc in failures)
            kept = "kept for a retry (retryDeleteOnError)" if keep else "removed; a retried DEL is best effort"
            call.log.error(f"{call.pod.label()}: DEL of container {cid} failed: {text}; the cache is {kept}")
            raise CniError(f"failed to delete some attachments: {text}")
        self._forget(call)

    def _from_cache(self, call: _Call) -> list[Delegate] | None:
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

    def _delete_all(self, call: _Call, delegates: list[Delegate]) -> list[tuple[Delegate, Exception]]:
        failures = []
        for d in reversed(delegates):
            try:
                call.invoker.delete(d.net, call.env(d), d.cap_args, d.args_cni, d.result)
            except Exception as exc:  # noqa: BLE001 - DEL goes on past failures and reports them together
                if not isinstance(exc, CniError):
                    call.log.bug(f"{call.pod.label()}: DEL of {d.name} ({d.ifname})")
                failures.append((d, exc))
        return failures

    def _delete_uncached(self, call: _Call) -> None:
        """Best effort: the rebuilt plan, then the host-local sweep; failures are logged, DEL succeeds."""
        from multiplane.plugins.meta import sweep

        cid = call.req.args.container_id
        delegates = self._rebuild(call)
        failures = self._delete_all(call, delegates)
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
        self._forget(call)

    def _forget(self, call: _Call) -> None:
        """Drop the cache (a planted link is unlinked, never followed) and the status file."""
        cid = call.req.args.container_id
        _remove_file(call, "cache", lambda: cache.path_for(call.conf.cni_dir, cid))
        _remove_file(call, "network-status", lambda: _status_path(call.conf.cni_dir, cid))
        # A writer killed between its temporary file and the rename leaves `.<name>.<pid>.tmp`;
        # only this container's own are removed (the runtime never runs its ADD and DEL at once).
        sweep_temporaries(call.conf.cni_dir, [cid], older_than=0)
        status_dir = os.path.join(call.conf.cni_dir, "status")
        if not os.path.islink(status_dir):
            sweep_temporaries(status_dir, [f"{cid}.json"], older_than=0)

    def _rebuild(self, call: _Call) -> list[Delegate]:
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
            recorded = _selection_from_status(call)
            if recorded:
                call.log.verbose(f"{call.pod.label()}: DEL without cache: networks from the status file: {recorded}")
                call.pod.annotations[NETWORKS_ANNOTATION] = recorded
                if isinstance(source, LocalSource) and not source.nad_dir:
                    source = LocalSource(call.conf.local_nad_dir, "", {}, {})
        try:
            return plan(call.conf, source, call.pod, call.req.args.ifname, tolerant=True)
        except CniError as exc:
            call.log.error(
                f"{call.pod.label()}: DEL without cache and no usable configuration ({exc}); nothing to delete"
            )
        except Exception:  # noqa: BLE001 - a bug must not pin the sandbox: log it, release what the sweep finds
            call.log.bug(f"{call.pod.label()}: DEL without cache: rebuilding the plan failed")
        return []

    def check(self, req: Request) -> None:
        call = _Call(req)
        self._command(call, "CHECK", lambda: self._check(call))

    def _check(self, call: _Call) -> None:
        req = call.req
        cached = cache.load(call.conf.cni_dir, req.args.container_id)
        if cached is None:
            raise CniError(f"no attachments are recorded for container {req.args.container_id}")
        for item in cached["delegates"]:
            d = Delegate.from_cache(item)
            if d.result is None:
                raise CniError(f"the attachment of {d.name} ({d.ifname}) never completed")
            try:
                call.invoker.check(d.net, call.env(d), d.cap_args, d.args_cni, d.result)
            except CniError as exc:
                raise _named_error(call.pod, d, exc, "checking") from exc

    def gc(self, req: Request) -> None:
        call = _Call(req)
        self._command(call, "GC", lambda: self._gc(call))

    def _gc(self, call: _Call) -> None:
        req = call.req
        call.wait_ready(wait=True)
        valid = _valid_attachments(req.conf.raw)
        per_network: dict[bytes, tuple[Any, list[dict[str, str]]]] = {}
        errors = []
        for cid in cache.list_containers(call.conf.cni_dir):
            try:
                cached = cache.load(call.conf.cni_dir, cid)
            except CniError as exc:
                errors.append(str(exc))
                continue
            if cached is None:
                continue
            delegates = [Delegate.from_cache(item) for item in cached["delegates"]]
            for d in delegates:  # every network we know of gets GC, even if nothing on it stays valid
                per_network.setdefault(d.net.raw, (d.net, []))
            if (cid, cached.get("ifname", "")) in valid:
                for d in delegates:
                    per_network[d.net.raw][1].append({"containerID": cid, "ifname": d.ifname})
                continue
            env = dict(req.args.env, CNI_CONTAINERID=cid, CNI_NETNS=str(cached.get("netns", "")))
            ok = True
            for d in reversed(delegates):
                try:
                    denv = {**env, "CNI_IFNAME": d.ifname, "CNI_ARGS": d.cni_args}
                    call.invoker.delete(d.net, denv, d.cap_args, d.args_cni, d.result)
                except Exception as exc:  # noqa: BLE001 - GC goes on past failures and reports them together
                    if not isinstance(exc, CniError):
                        call.log.bug(f"GC of stale container {cid}, {d.name} ({d.ifname})")
                    ok = False
                    errors.append(f"stale {cid} {d.name}: {exc}")
            if ok:
                cache.remove(call.conf.cni_dir, cid)
        # A valid container we hold no cache for (attached by Multus before a migration, or its
        # cache lost) has attachments we cannot name: a network GC would see them as stale and
        # free addresses still in use. Then the delegate networks get no GC this time.
        cached_ids = set(cache.list_containers(call.conf.cni_dir))
        unknown = sorted({cid for cid, _ifname in valid if cid not in cached_ids})
        if unknown:
            call.log.warning(
                f"GC: no delegate cache for valid container(s) {', '.join(unknown[:5])}"
                f"{' …' if len(unknown) > 5 else ''}: their networks' attachments are unknown, so the "
                "delegate networks are not garbage-collected this time"
            )
            per_network = {}
        for net, attachments in per_network.values():
            errors += call.invoker.gc(net, dict(req.args.env), attachments)
        if errors:
            raise CniError("garbage collection incomplete: " + "; ".join(errors))

    def status(self, req: Request) -> None:
        call = _Call(req)
        self._command(call, "STATUS", lambda: self._status(call))

    def _status(self, call: _Call) -> None:
        call.wait_ready(wait=False)
        delegates = plan(call.conf, call.source, call.pod, "eth0")
        call.invoker.status(delegates[0].net, dict(call.req.args.env))


def _log_plan(call: _Call, delegates: list[Delegate]) -> None:
    """At `debug`: each delegate of the plan, in attachment order."""
    if not call.log.enabled("debug"):
        return
    call.log.debug(f"{call.pod.label()}: plan of {len(delegates)} delegate(s)")
    for i, d in enumerate(delegates):
        types = ",".join(str(field(p, "type")) for p in d.net.plugins)
        call.log.debug(
            f"{call.pod.label()}: plan [{i}] {d.name} (CNI name {d.net.name!r}, cniVersion {d.net.cni_version}): "
            f"type {types}, ifname {d.ifname}{', master' if d.master else ''}"
        )


def _failure_reason(exc: CniError) -> str:
    """The Warning event's reason: Multus's `NoNetworkFound` for a network that does not exist, else `AddFailed`."""
    from multiplane.k8s.errors import NotFound

    if isinstance(exc.__cause__, NotFound) or exc.msg.startswith(("cannot find a network", "cannot find network")):
        return "NoNetworkFound"
    return "AddFailed"


def _failure_message(exc: CniError) -> str:
    text = f"multiplane could not attach the pod's networks: {exc.msg}"
    return f"{text} ({exc.details})" if exc.details else text


def _valid_attachments(raw: dict[str, Any]) -> set[tuple[str, str]]:
    if "cni.dev/valid-attachments" in raw:
        items = raw["cni.dev/valid-attachments"]
    elif "cni.dev/attachments" in raw:
        items = raw["cni.dev/attachments"]
    else:
        # Unlike host-local, the meta-plugin refuses: reading "absent" as "nothing is valid"
        # would tear down every pod's secondary networks on the node.
        raise InvalidConfig("GC needs cni.dev/valid-attachments: refusing to treat every attachment as stale")
    return {(str(i.get("containerID", "")), str(i.get("ifname", ""))) for i in items or [] if isinstance(i, dict)}


def _selection_from_status(call: _Call) -> str:
    """The secondary networks ADD recorded in the network-status file, as a JSON selection ("" if none).

    The status file outlives a damaged cache: it names each attached NAD ("ns/name") and its
    interface, so DEL can still find links and addresses the configuration alone cannot.
    """
    try:
        fd = os.open(_status_path(call.conf.cni_dir, call.req.args.container_id), os.O_RDONLY | os.O_NOFOLLOW)
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


def _remove_file(call: _Call, what: str, path: Callable[[], str]) -> None:
    """Unlink a state file (a link is removed, never followed); a failure is logged, DEL goes on."""
    try:
        os.unlink(path())
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as exc:  # a directory planted there, a linked status dir, a read-only mount
        call.log.error(f"{call.pod.label()}: cannot remove the {what} file of {call.req.args.container_id}: {exc}")


def _status_path(cni_dir: str, container_id: str, create: bool = False) -> str:
    """`<cniDir>/status/<id>.json`; the directory must be ours (a real directory, not a link)."""
    status_dir = os.path.join(cni_dir, "status")
    if create:
        os.makedirs(status_dir, mode=0o700, exist_ok=True)
    if os.path.islink(status_dir):
        raise OSError(errno.ELOOP, f"{status_dir} is a symbolic link")
    return os.path.join(status_dir, f"{container_id}.json")


def _named_error(pod: PodRef, d: Delegate, exc: BaseException, doing: str = "adding container to") -> CniError:
    text = exc.msg if isinstance(exc, CniError) else f"{type(exc).__name__}: {exc}"
    details = exc.details if isinstance(exc, CniError) else ""
    code = exc.error_code if isinstance(exc, CniError) else 999
    return DelegateError(code, f'[{pod.label()}:{d.name}]: error {doing} network "{d.name}": {text}', details)


def _merge_prev(req: Request, result: Result) -> Result:
    """Chained use: prevResult's interfaces and addresses first, then the cluster network's."""
    prev_raw = req.conf.get("prevResult")
    if not isinstance(prev_raw, dict):
        return result
    prev = Result.parse(prev_raw, req.conf.cni_version)
    offset = len(prev.interfaces)
    for ip in result.ips:
        if ip.interface is not None:
            ip.interface += offset
    prev.interfaces += result.interfaces
    prev.ips += result.ips
    prev.routes += result.routes
    if not result.dns.empty():
        prev.dns = result.dns
    return prev
