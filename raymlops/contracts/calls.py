"""Dotted calls: how one area asks another for a value without importing it (serving resolves a registry
alias, the app monitor submits a retrain job), and the one ``module:function`` importer."""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import Field, field_validator

from raymlops.contracts.base import Contract


def import_object(ref: str) -> Any:
    """``"package.module:name"`` (or ``"package.module.name"``) -> the object (a function or class). Every
    dotted reference in raymlops (calls, transforms, custom preprocessing steps) is imported here.

    Raises:
        ValueError: ``ref`` names no module and attribute.
        ImportError, AttributeError: the module or the name does not exist.
    """
    module, sep, name = ref.partition(":") if ":" in ref else ref.rpartition(".")
    if not sep or not module or not name:
        raise ValueError(f"a dotted reference must be 'module:name', got {ref!r}")
    return getattr(importlib.import_module(module), name)


class Call(Contract):
    """``call(*args)``, named by dotted path so the exported Serve config stays plain YAML and the caller
    stays free of the callee's imports."""

    call: str = Field(description="The function, as 'package.module:function'.")
    args: list[Any] = Field(default_factory=list, description="Positional arguments, JSON-serializable.")

    @field_validator("call")
    @classmethod
    def _dotted(cls, v: str) -> str:
        module, sep, name = v.partition(":")
        if not sep or not module or not name:
            raise ValueError(f"must be 'module:function', got {v!r}")
        return v

    def __call__(self, *extra: Any) -> Any:
        """Imports the function and calls it with ``args`` followed by ``extra``."""
        return import_object(self.call)(*self.args, *extra)


class Watch(Call):
    """A call polled every ``every`` seconds (a registry alias followed as it moves)."""

    every: float = Field(gt=0, description="Seconds between calls.")
