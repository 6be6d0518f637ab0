"""The models' located errors: how a check raises one, and how validate reads pydantic's errors back.

A check that needs more than one field raises `PydanticCustomError("multiplane", …)`; its
context may carry `at`, the path of the offending key below the object, which validate
appends to the error's path. Union tags (`<macvlan>`, …) in `loc` are not keys and are dropped.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from pydantic_core import PydanticCustomError

from multiplane.spec.gojson import json_type

__all__ = ["error_loc", "fail", "is_tag", "message", "quote"]

# pydantic's type errors, as "must be …"
_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def fail(message: str, at: tuple[str | int, ...] = ()) -> NoReturn:
    """A located error: `message` as is (no template expansion), `at` relative to the current object."""
    context: dict[str, Any] = {"message": message}
    if at:
        context["at"] = list(at)
    raise PydanticCustomError("multiplane", "{message}", context)


def quote(value: object) -> str:
    """A value as JSON text, for messages."""
    return json.dumps(value, ensure_ascii=False)


def is_tag(segment: object) -> bool:
    """A union tag in an error's loc (not a key of the document)."""
    return isinstance(segment, str) and segment.startswith("<") and segment.endswith(">")


def message(err: dict[str, Any]) -> str:
    """A pydantic error in the words of the rest of multiplane."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "multiplane":
        return str(ctx["message"])
    if kind == "missing":
        return "required"
    words = _TYPE_WORDS.get(kind)
    if words is not None:
        return f"must be {words}, got {json_type(value)}"
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", '"')
        return f"must be {expected}, got {json.dumps(value, default=str)}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return str(err["msg"])


def error_loc(err: dict[str, Any]) -> tuple[Any, ...]:
    """Where a pydantic error is, below the validated object: its loc without tags, then its `at`."""
    loc = tuple(seg for seg in err["loc"] if not is_tag(seg))
    at = (err.get("ctx") or {}).get("at")
    return loc + tuple(at) if at else loc
