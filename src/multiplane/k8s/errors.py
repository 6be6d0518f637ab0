"""Kubernetes API errors, apart from the client so callers can match on them without loading http/ssl."""

from __future__ import annotations

from multiplane.errors import CniError

__all__ = ["ApiError", "NotFound"]


class ApiError(CniError):
    """The API server answered with an error (or could not be reached); `status` is the HTTP code (0: none)."""

    def __init__(self, msg: str, status: int = 0, details: str = "") -> None:
        super().__init__(msg, details)
        self.status = status


class NotFound(ApiError):
    pass
