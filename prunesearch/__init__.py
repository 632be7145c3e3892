"""prunesearch: network pruning as architecture search."""

__version__ = "0.1.0"
