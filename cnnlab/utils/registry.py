"""Functions filed under their own names, as timm's @register_model files its models: a
builder or loader is written once, and its YAML name is its function's name."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


class Registry(dict[str, Callable]):
    """A name → function table that `register` fills as the functions are defined."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, function: F) -> F:
        """File `function` under its `__name__` (a decorator); a name registered twice is a bug."""
        name = function.__name__
        if name in self:
            raise TypeError(f"{self.kind} {name!r} is registered twice")
        self[name] = function
        return function
