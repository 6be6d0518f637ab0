"""The Kubernetes objects validate reads: a NetworkAttachmentDefinition, and a Pod's annotations.

Their keys are case-sensitive (K8sObject); the CNI configuration inside a NAD is network.py's.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema

from multiplane.tools.validate.schemas.base import K8sObject
from multiplane.tools.validate.schemas.scalars import Label, Subdomain, falsy_none, loose

__all__ = ["NAD_API_VERSION", "NadMetadata", "NadSpec", "NetworkAttachmentDefinition", "Pod", "PodMetadata"]

NAD_API_VERSION = "k8s.cni.cncf.io/v1"

LooseNadApiVersion = loose({"const": NAD_API_VERSION})
LooseString = loose({"type": "string"})


class NadMetadata(K8sObject):
    name: Subdomain
    namespace: Label | None = Field(None, description="absent: the current namespace (local files: every namespace)")


class NadSpec(K8sObject):
    config: Annotated[
        str | None,
        BeforeValidator(falsy_none),
        WithJsonSchema(
            {
                "type": "string",
                "description": "the CNI configuration (one plugin or a conflist) as JSON text; "
                "empty: the file of the NAD's name in confDir",
                "contentMediaType": "application/json",
            }
        ),
    ] = None


class NetworkAttachmentDefinition(K8sObject):
    """k8s.cni.cncf.io/v1 NetworkAttachmentDefinition."""

    apiVersion: LooseNadApiVersion = None
    kind: Literal["NetworkAttachmentDefinition"]
    metadata: NadMetadata
    spec: Annotated[NadSpec | None, BeforeValidator(falsy_none)] = None


class PodMetadata(K8sObject):
    name: LooseString = None
    namespace: Label | None = None
    annotations: dict[str, str] | None = None


class Pod(K8sObject):
    """The part of a Pod (or a pod template) multiplane reads: its annotations."""

    metadata: PodMetadata | None = None
