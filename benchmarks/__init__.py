"""Benchmarks: scripts that measure. Tests never import them."""
