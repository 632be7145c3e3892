"""Pruning methods as architecture generators.

``METHODS`` maps a name to a :class:`PruningMethod`; ``get_method(name)`` looks one up. Every module
of this package (except ``_private`` ones) is imported here, so a new method only has to live in its
own module and decorate its class with ``@register``: the shared contract tests
(``tests/test_prune_contract.py``) then cover it automatically.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import METHODS, PruneResult, PruningMethod, check_model, check_request, get_method, register

for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_") and _mod.name != "base":
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["METHODS", "PruneResult", "PruningMethod", "check_model", "check_request", "get_method", "register"]
