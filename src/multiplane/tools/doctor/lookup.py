"""Networks found the way the plugin finds them: a NAD (API or local files), a clusterNetwork/defaultNetworks value."""

from __future__ import annotations

import os

from multiplane.errors import InvalidConfig
from multiplane.tools.doctor.model import Unknown

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from multiplane.plugins.meta.networks import KubeSource, LocalSource, NetworkConfig
    from multiplane.tools.doctor.node import Doctor

__all__ = ["nad", "resolve"]


def nad(doctor: Doctor, namespace: str, name: str) -> dict[str, Any] | None:
    """The NAD as the plugin would read it (API or local files); None if there is none."""
    from multiplane.k8s.errors import NotFound
    from multiplane.plugins.meta.networks import KubeSource, LocalSource

    source: KubeSource | LocalSource
    if doctor.client is not None:
        source = KubeSource(doctor.client)
    elif doctor.api == "down":
        raise Unknown(f'cannot look NAD "{namespace}/{name}" up: the API is unreachable')
    else:
        source = LocalSource(doctor.real(doctor.conf.local_nad_dir), pod_dir="", args={}, runtime_annotations={})
    try:
        return source.nad(namespace, name)
    except NotFound:
        return None


def resolve(doctor: Doctor, value: str, namespace: str) -> tuple[str, NetworkConfig]:
    """A clusterNetwork/defaultNetworks value → (what to call it, config), as the plugin resolves it."""
    from multiplane.plugins.meta.networks import conf_by_name, conf_files, load_file, nad_config

    conf = doctor.conf
    conf_dir = doctor.real(conf.conf_dir)
    if "/" not in value:
        found_nad = nad(doctor, namespace, value)
        if found_nad is not None:
            return f"NAD {namespace}/{value}", nad_config(found_nad, conf_dir)
        found = conf_by_name(conf_dir, value)
        if found is None:
            raise InvalidConfig(f'no NAD "{namespace}/{value}" and no CNI file named {value!r} in {conf.conf_dir}')
        return f"{value!r} in {conf.conf_dir}", found
    real = doctor.real(value)
    if os.path.isdir(real):
        files = [p for p in conf_files(real) if not os.path.basename(p).startswith("00-multiplane")]
        if not files:
            raise InvalidConfig(f"no CNI configuration in the directory {value}")
        return doctor.unroot(files[0]), load_file(files[0])
    if os.path.isfile(real):
        return value, load_file(real)
    raise InvalidConfig(f"{value}: no such file or directory")
