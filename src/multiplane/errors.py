"""The CNI error tree: one class per well-known code, serialised in one place.

    CniError (999, ErrInternal)
    ├── IncompatibleVersion (1)
    ├── UnsupportedField (2)
    ├── UnknownContainer (3)
    ├── InvalidEnvironment (4)
    ├── IOFailure (5)
    ├── DecodingFailure (6)
    ├── InvalidConfig (7)
    ├── TryAgainLater (11)
    ├── NotAvailable (50)
    ├── NotAvailableLimited (51)
    ├── PluginNotFound (999: a delegate's binary is missing)
    └── DelegateError (any code a delegated plugin reported)

Only `skel` turns these into JSON on stdout (`to_json`); nothing else prints them.
"""

from __future__ import annotations


TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar

__all__ = [
    "CniError",
    "DecodingFailure",
    "DelegateError",
    "IOFailure",
    "IncompatibleVersion",
    "InvalidConfig",
    "InvalidEnvironment",
    "NotAvailable",
    "NotAvailableLimited",
    "PluginNotFound",
    "TryAgainLater",
    "UnknownContainer",
    "UnsupportedField",
    "go_json",
    "go_string",
]


def _go_escape(text: str) -> str:
    """What Go's encoder does beyond JSON: HTML-safe escapes, and U+FFFD for text that is not Unicode.

    A lone UTF-16 surrogate (U+D800-U+DFFF) is not a Unicode scalar value and cannot be
    written as UTF-8. Python makes them from a JSON escape such as "\\ud800" and, with
    surrogateescape, from non-UTF-8 bytes in the environment; Go never has them in a string.
    Each becomes the escape `\\ufffd` (U+FFFD, the replacement character), which is exactly
    what Go's encoder writes for bytes that are not UTF-8 (and Go's decoder already turns a
    `\\ud800`-style escape into U+FFFD). Escaping the surrogate itself would keep it, but
    strict decoders (Rust's serde_json among them) refuse such a document.
    """
    # Go escapes these so the output is safe to embed in HTML; libcni users see the same bytes.
    text = (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )
    try:
        text.encode()
    except UnicodeEncodeError:
        text = "".join("\\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return text


def go_json(obj: object, indent: int | None = 4) -> str:
    """Serialise like Go's encoding/json: 4-space indent, HTML-safe escapes, no trailing newline.

    The text is always valid Unicode, so it can be encoded as UTF-8 (see `_go_escape`).
    """
    import json

    text = json.dumps(
        obj, indent=indent, ensure_ascii=False, allow_nan=False, separators=(",", ": ") if indent else (",", ":")
    )
    return _go_escape(text)


def go_string(text: str) -> str:
    """One JSON string exactly as `go_json` writes it, without loading the json package (VERSION's fast path)."""
    from _json import encode_basestring  # what json.dumps(ensure_ascii=False) uses for every string

    return _go_escape(encode_basestring(text))


class CniError(Exception):
    """A failure reported to the runtime as a CNI error object; `code` is the SPEC code."""

    code: ClassVar[int] = 999

    def __init__(self, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details

    @property
    def error_code(self) -> int:
        return self.code

    def __str__(self) -> str:
        # libcni renders an error as "msg; details" (pkg/types Error.Error()).
        return f"{self.msg}; {self.details}" if self.details else self.msg

    def to_dict(self, cni_version: str) -> dict[str, object]:
        return {"cniVersion": cni_version, "code": self.error_code, "msg": self.msg, "details": self.details}

    def to_json(self, cni_version: str) -> str:
        return go_json(self.to_dict(cni_version))


class IncompatibleVersion(CniError):
    code = 1


class UnsupportedField(CniError):
    code = 2


class UnknownContainer(CniError):
    code = 3


class InvalidEnvironment(CniError):
    code = 4


class IOFailure(CniError):
    code = 5


class DecodingFailure(CniError):
    code = 6


class InvalidConfig(CniError):
    code = 7


class TryAgainLater(CniError):
    code = 11


class NotAvailable(CniError):
    code = 50


class NotAvailableLimited(CniError):
    code = 51


class PluginNotFound(CniError):
    """A delegate's binary is in none of the search paths (999, as libcni reports it)."""


class DelegateError(CniError):
    """An error a delegated plugin reported; keeps the delegate's own code (11, 50, 51 … survive)."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg, details)
        self._code = code

    @property
    def error_code(self) -> int:
        # Code 0 is libcni's "could not parse the plugin's output"; it is not a spec code,
        # so report it as an internal error while keeping the text.
        return self._code if self._code > 0 else 999
