"""Architecture generators: ``generate(base, budget, seed, **options) -> Architecture``.

Every generator finishes through the one budget solver (``prunesearch.arch.scale_to_budget``), so
all arms of a comparison sit at the same parameter count (within 0.5 %).
"""

from __future__ import annotations

from .base import GENERATORS, Generator, get_generator
from . import basic  # noqa: F401  (registers uniform and random)
from . import rule_based  # noqa: F401  (registers pruned, guided and transferred)

__all__ = ["GENERATORS", "Generator", "get_generator"]
