"""prunesearch: network pruning as architecture search."""

__version__ = "0.2.0"
