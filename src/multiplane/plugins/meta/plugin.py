"""The meta-plugin (`multiplane`): attach the cluster network and every selected network, and report.

ADD: read the pod (API or local files) → plan the delegates → refuse interface names that
clash → cache the plan → run each delegate (built-ins in-process, others by exec); on the
first failure undo the attached ones in reverse, the failed one included → apply
`default-route` → cache the results → write network-status → return the cluster network's
result in our cniVersion. DEL works from the cache (pod, NAD and API server not needed),
in reverse, past failures. CHECK checks every delegate against its cached result. GC
translates the runtime's valid attachments to delegate attachments. STATUS reports the
readiness file and the cluster network. One invocation's state is `call.Call`; DEL without a
usable cache is `teardown.py`.

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

import os
import time

from multiplane import logs
from multiplane.errors import CniError, DelegateError, InvalidConfig, InvalidEnvironment, PluginNotFound
from multiplane.fsutil import write_atomic
from multiplane.plugins.meta import cache, status, teardown
from multiplane.plugins.meta.call import Call
from multiplane.plugins.meta.plan import Delegate, PodRef, plan, requested_ips_missing
from multiplane.spec.gojson import field
from multiplane.spec.result import Result

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from multiplane.skel import Request

__all__ = ["Meta"]


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
        call: Call, command: str, body: Callable[[], Any], on_error: Callable[[CniError], None] | None = None
    ) -> Any:
        """Run one command with `call.log` as the process logger; a non-CNI exception becomes code 999, traceback logged."""
        args = call.req.args
        what = f"{call.pod.label()}: {command} of container {args.container_id}"
        started = time.monotonic()
        outcome = "failed"
        with logs.using(call.log):
            call.log.debug(f"{what} (netns {args.netns or '-'}, ifname {args.ifname or '-'}, CNI_ARGS {args.args!r})")
            if call.front.note:  # which front door ran it, and why (the one-shot fallback says so)
                call.log.verbose(f"{what}: {call.front.note}")
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
        call = Call(req)

        def failed(exc: CniError) -> None:
            # The runtime shows this too, but node logs (and the pod's Events) are where operators look first.
            call.log.error(f"{call.pod.label()}: ADD of container {req.args.container_id} failed: {exc}")
            call.event("Warning", _failure_reason(exc), _failure_message(exc))

        result: Result = self._command(call, "ADD", lambda: self._add(call), failed)
        return result

    def _add(self, call: Call) -> Result:
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
        for d in delegates:  # once every attachment is in place: a rolled-back ADD announces nothing
            ips = " ".join(str(ip.address) for ip in _result(d).ips)
            call.event("Normal", "AddedInterface", f"Add {d.ifname} [{ips}] from {d.name}")
        return _merge_prev(req, _result(master))

    def _rollback(self, call: Call, attached: list[Delegate]) -> None:
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

    def _report(self, call: Call, delegates: list[Delegate]) -> None:
        """network-status: to the pod (API) first; then the status file, so a failed write leaves none."""
        entries = []
        for d in delegates:
            entries += status.entries(d.name, _result(d), d.master)
        value = status.render(entries)
        call.log.verbose(f"{call.pod.label()}: network-status {value}")
        if call.pod.known:
            from multiplane.k8s.errors import NotFound

            try:
                call.source.write_status(call.pod.namespace, call.pod.name, call.pod.api_uid or call.pod.uid, value)
            except NotFound:
                call.log.error(f"{call.pod.label()}: pod disappeared before network-status was written")
        try:
            write_atomic(
                teardown.status_path(call.conf.cni_dir, call.req.args.container_id, create=True), value.encode()
            )
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
        call = Call(req)
        self._command(call, "DEL", lambda: self._delete(call))

    def _delete(self, call: Call) -> None:
        cid = call.req.args.container_id
        problem = call.pod.problem()
        if problem:
            call.log.error(f"DEL of container {cid}: {problem}; the pod is ignored")
            call.pod.namespace = call.pod.name = ""
        if call.conf.readiness_file and not os.path.exists(call.conf.readiness_file):
            call.log.error(
                f"{call.pod.label()}: readiness indicator file {call.conf.readiness_file} is missing; deleting anyway"
            )
        delegates = teardown.from_cache(call)
        if delegates is None:
            teardown.delete_uncached(call)
            return
        failures = teardown.delete_all(call, delegates)
        call.log.verbose(f"{call.pod.label()}: deleted {len(delegates)} attachment(s) of container {cid}")
        if failures:
            keep = call.conf.retry_delete_on_error and not all(isinstance(e, PluginNotFound) for _d, e in failures)
            if not keep:
                teardown.forget(call)
            text = "; ".join(f"{d.name} ({d.ifname}): {exc}" for d, exc in failures)
            kept = "kept for a retry (retryDeleteOnError)" if keep else "removed; a retried DEL is best effort"
            call.log.error(f"{call.pod.label()}: DEL of container {cid} failed: {text}; the cache is {kept}")
            raise CniError(f"failed to delete some attachments: {text}")
        teardown.forget(call)

    def check(self, req: Request) -> None:
        call = Call(req)
        self._command(call, "CHECK", lambda: self._check(call))

    def _check(self, call: Call) -> None:
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
        call = Call(req)
        self._command(call, "GC", lambda: self._gc(call))

    def _gc(self, call: Call) -> None:
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
        call = Call(req)
        self._command(call, "STATUS", lambda: self._status(call))

    def _status(self, call: Call) -> None:
        call.wait_ready(wait=False)
        delegates = plan(call.conf, call.source, call.pod, "eth0")
        call.invoker.status(delegates[0].net, dict(call.req.args.env))


def _log_plan(call: Call, delegates: list[Delegate]) -> None:
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
    from multiplane.spec.gc import valid_attachments

    keep = valid_attachments(raw)
    if keep is None:
        # Unlike host-local, the meta-plugin refuses: reading "absent" as "nothing is valid"
        # would tear down every pod's secondary networks on the node.
        raise InvalidConfig("GC needs cni.dev/valid-attachments: refusing to treat every attachment as stale")
    return keep


def _result(d: Delegate) -> Result:
    """The result of an attached delegate (a runtime check, not an assert: asserts vanish under -O)."""
    if d.result is None:
        raise CniError(f"internal error: {d.name} ({d.ifname}) has no result after ADD")
    return d.result


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
