"""Lazy package entry points (PEP 562): a stage exports its names and loads each module on
first use, so importing one of its modules (the schema imports every ``tables`` module)
loads none of its services.

A package's ``__init__`` lists ``_EXPORTS`` (name → module, or → (module, name) for an
alias) and a literal ``__all__``, and ends with
``__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str,
                 exports: Mapping[str, str | tuple[str, str]]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of a package that exports ``exports`` lazily."""

    def getattr_(name: str) -> Any:
        target = exports.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attribute = (target, name) if isinstance(target, str) else target
        return getattr(importlib.import_module(f"{package}.{module}"), attribute)

    def dir_() -> list[str]:
        return sorted(exports)

    return getattr_, dir_
