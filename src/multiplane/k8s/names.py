"""Kubernetes object names, validated before they go into an API path or a file path (pure).

Namespaces are DNS-1123 labels (63 characters at most); pod and NetworkAttachmentDefinition
names are DNS-1123 subdomains (253 at most, dot-separated labels), as the API server
requires. Anything else (`/`, `..`, NUL, upper case, an empty string) cannot name an
object, so it is refused here and never reaches a URL or `os.path.join`.
"""

from __future__ import annotations

import re

__all__ = ["is_label", "is_subdomain"]

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def is_label(value: object) -> bool:
    """A DNS-1123 label: what a namespace name must be."""
    return isinstance(value, str) and len(value) <= 63 and _LABEL.fullmatch(value) is not None


def is_subdomain(value: object) -> bool:
    """A DNS-1123 subdomain: what a pod or NAD name must be."""
    if not isinstance(value, str) or not value or len(value) > 253:
        return False
    return all(_LABEL.fullmatch(part) is not None for part in value.split("."))
