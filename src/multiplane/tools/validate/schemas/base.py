"""The two ways the models read an object: Go's decoder for CNI objects, exact keys for Kubernetes ones.

Unknown keys are kept and ignored by both; types are strict ("1500" is not a number).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

__all__ = ["GoObject", "K8sObject"]


class GoObject(BaseModel):
    """A JSON object decoded like Go's encoding/json decodes into a struct (the rules: the package docstring)."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _go_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data  # the model reports "must be an object"
        names = {(f.alias or name).lower(): (f.alias or name) for name, f in cls.model_fields.items()}
        folded: dict[Any, Any] = {}
        for key, value in data.items():
            canonical = names.get(key.lower()) if isinstance(key, str) else None
            if canonical is None:
                folded[key] = value
            else:
                folded.pop(canonical, None)  # the last spelling wins, wherever it stands
                folded[canonical] = value
        folded = {k: v for k, v in folded.items() if not (v is None and isinstance(k, str) and k.lower() in names)}
        return cls._adjust(folded)

    @classmethod
    def _adjust(cls, data: dict[Any, Any]) -> dict[Any, Any]:
        """Hook for keys the CNI path reads only in some cases (drop them when it does not)."""
        return data


class K8sObject(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
