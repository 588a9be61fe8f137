"""Installing one of our replacements on a Faust object, once (agents start per topic, both install)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def install_once(owner: Any, name: str, kind: type[T], make: Callable[[], T]) -> T:
    """`owner.<name>` = `make()` as an instance attribute, unless a `kind` is there already → it."""
    current = owner.__dict__.get(name)
    if isinstance(current, kind):
        return current
    installed = make()
    setattr(owner, name, installed)
    return installed
