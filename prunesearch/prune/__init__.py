"""Pruning methods as architecture generators.

``METHODS`` maps a name to a :class:`PruningMethod`; ``get_method(name)`` looks one up. Every module
of this package (except ``_private`` ones) is imported here, so a new method only has to live in its
own module and decorate its class with ``@register``: the shared contract tests
(``tests/test_prune_contract.py``) then cover it automatically.

Shared machinery for new methods: ``prune_by_scores`` (per-slot scores -> one global threshold,
ties, width guard, budget bisection, inherited weights), ``keep_top`` (predefined widths),
``result_from_keep`` (any keep sets -> PruneResult), ``module_plan`` (which module holds each slot's
BN / filters), ``MaskHook`` and ``init_sparse_`` (unstructured masks in training).
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import METHODS, PruneResult, PruningMethod, check_model, check_request, get_method, register
from .channels import ChannelPool, keep_top, module_plan, prune_by_scores, result_from_keep
from .sparse import MaskHook, init_sparse_

for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_") and _mod.name != "base":
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = [
    "METHODS", "ChannelPool", "MaskHook", "PruneResult", "PruningMethod", "check_model", "check_request",
    "get_method", "init_sparse_", "keep_top", "module_plan", "prune_by_scores", "register", "result_from_keep",
]
