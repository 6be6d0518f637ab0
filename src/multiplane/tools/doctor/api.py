"""The `api.*` checks: the kubeconfig of 00-multiplane.conf (or `--kubeconfig`) reaches the API, and the plugin's rights.

Rights are asked with SelfSubjectAccessReviews, which the API server does not store.
"""

from __future__ import annotations

from multiplane.errors import CniError
from multiplane.installer import CONF_NAME
from multiplane.tools.doctor.model import FAIL, OK, WARNING

TYPE_CHECKING = False
if TYPE_CHECKING:
    from multiplane.k8s.client import KubeClient, KubeConfig
    from multiplane.k8s.errors import ApiError
    from multiplane.tools.doctor.node import Doctor

__all__ = ["RIGHTS", "check_api"]

ACCESS_REVIEW = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
# (verb, API group, resource, subresource, status when denied, what breaks)
RIGHTS = (
    ("get", "", "pods", "", FAIL, "the plugin cannot read pods: every ADD fails"),
    (
        "get",
        "k8s.cni.cncf.io",
        "network-attachment-definitions",
        "",
        FAIL,
        "the plugin cannot read NADs: every pod that selects a network fails",
    ),
    (
        "patch",
        "",
        "pods",
        "status",
        FAIL,
        "the plugin cannot write network-status: every ADD is rolled back and fails",
    ),
    ("create", "", "events", "", WARNING, "the plugin cannot record events on pods (pods still start)"),
)


def check_api(doctor: Doctor) -> None:
    """api.reach and one api.rbac.* per right; sets `doctor.api` ("up"/"down") and, once reached, `doctor.client`."""
    from multiplane.k8s.client import KubeClient, load_kubeconfig

    if doctor.kubeconfig:
        path, shown, rooted = doctor.kubeconfig, doctor.kubeconfig, False
    elif doctor.meta is None:
        doctor.add(
            "api.reach", WARNING, f"not checked: no usable {CONF_NAME} names a kubeconfig", "see the config checks"
        )
        return
    elif not doctor.meta.kubeconfig:
        doctor.add(
            "api.reach",
            OK,
            f"no kubeconfig in {CONF_NAME}: the plugin reads NADs from {doctor.meta.local_nad_dir} "
            f"and pods from {doctor.meta.local_pod_dir}, not from the API",
        )
        return
    else:
        path, shown, rooted = doctor.real(doctor.meta.kubeconfig), doctor.meta.kubeconfig, True
    try:
        cfg = load_kubeconfig(path)
        if rooted:
            _root_files(doctor, cfg)
        client = KubeClient(cfg, timeout=5.0, retry_budget=1.0)
    except CniError as exc:
        doctor.api = "down"
        doctor.add(
            "api.reach",
            FAIL,
            f"cannot use the kubeconfig {shown}: {exc}: every ADD fails",
            "run `multiplane install` again (it writes the kubeconfig), or fix the file",
        )
        return
    _check_rights(doctor, client, cfg.server, shown)


def _root_files(doctor: Doctor, cfg: KubeConfig) -> None:
    """The files a node's kubeconfig names are node paths too: read them under --root."""
    for attr in ("ca_file", "cert_file", "key_file", "token_file"):
        value = getattr(cfg, attr)
        if value and not (doctor.root and value.startswith(doctor.root + "/")):
            setattr(cfg, attr, doctor.real(value))


def _review(client: KubeClient, verb: str, group: str, resource: str, sub: str) -> tuple[bool, str]:
    """(allowed, the reason given) from one SelfSubjectAccessReview."""
    body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": verb, "group": group, "resource": resource, "subresource": sub}},
    }
    data = client.request("POST", ACCESS_REVIEW, "selfsubjectaccessreviews.authorization.k8s.io", body=body)
    status = data.get("status") if isinstance(data, dict) else None
    if not isinstance(status, dict):
        return False, "the review came back without a status"
    return status.get("allowed") is True, str(status.get("reason") or "")


def _check_rights(doctor: Doctor, client: KubeClient, server: str, shown: str) -> None:
    """One review per right; the first answer (or failure to get one) decides api.reach."""
    from multiplane.k8s.errors import ApiError

    reached = False
    for verb, group, resource, sub, denied, breaks in RIGHTS:
        right = f"{verb} {resource}" + (f"/{sub}" if sub else "")
        check_id = f"api.rbac.{verb}-{resource}" + (f"-{sub}" if sub else "")
        try:
            allowed, reason = _review(client, verb, group, resource, sub)
        except ApiError as exc:
            if not reached and (exc.status in (0, 401) or exc.status >= 500):
                doctor.api = "down"
                doctor.add("api.reach", FAIL, f"{exc} (credentials from {shown}): every ADD fails", _reach(exc, server))
                return
            if not reached:
                reached = True
                doctor.add("api.reach", OK, f"{server} answers (credentials from {shown})")
            doctor.add(check_id, WARNING, f"cannot ask whether the plugin may {right}: {exc}", "check RBAC by hand")
            continue
        if not reached:
            reached = True
            doctor.api, doctor.client = "up", client
            doctor.add("api.reach", OK, f"{server} answers (credentials from {shown})")
        if allowed:
            doctor.add(check_id, OK, f"may {right}")
        else:
            why = f" ({reason})" if reason else ""
            allow = f"{verb} on {resource}" + (f"/{sub}" if sub else "") + (f" in API group {group}" if group else "")
            doctor.add(
                check_id,
                denied,
                f"may not {right}{why}: {breaks}",
                f"apply packaging/k8s/rbac.yaml (its ClusterRole must allow {allow})",
            )
    doctor.api, doctor.client = "up", client


def _reach(exc: ApiError, server: str) -> str:
    """What to do when the API does not answer (or refuses the credentials)."""
    if exc.status == 401:
        return (
            "the token is wrong or expired: check that the DaemonSet's token-refresh container runs "
            "(it keeps the token copy next to the kubeconfig fresh)"
        )
    return f"check that this node reaches {server} (routes, firewall, the API server itself)"
