"""Kubernetes API errors, apart from the client so callers can match on them without loading socket/ssl."""

from __future__ import annotations

from multiplane.errors import CniError

__all__ = ["AlreadyExists", "ApiError", "Conflict", "Gone", "NotFound"]


class ApiError(CniError):
    """The API server answered with an error (or could not be reached); `status` is the HTTP code (0: none)."""

    def __init__(self, msg: str, status: int = 0, details: str = "") -> None:
        super().__init__(msg, details)
        self.status = status


class NotFound(ApiError):
    pass


class Gone(ApiError):
    """410: the resourceVersion asked for is older than the server keeps (reason Expired); list again.

    Raised for an HTTP 410 answer and for a watch stream's ERROR event carrying a 410 Status,
    which is how the real API server reports a too-old resourceVersion to a watch.
    """


class Conflict(ApiError):
    """409 (reason Conflict): a precondition failed: the resourceVersion (or uid) given is not the object's.

    An update (PUT) with a stale resourceVersion, or a DELETE whose preconditions name another
    uid or resourceVersion: read the object again and decide anew.
    """


class AlreadyExists(ApiError):
    """409 (reason AlreadyExists): a create (POST) named an object that exists already; nothing was written."""
