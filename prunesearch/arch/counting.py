"""Analytic, torch-free parameter and MAC counts.

Conventions (so that counts match the reference code and ``sum(p.numel())``): convs have no bias;
every BatchNorm contributes weight + bias (running statistics are buffers); linears have a bias.
MACs are multiply-accumulates of convs and linears (what ``FlopCounterMode`` counts, halved);
BN, ReLU, pooling and additions are not counted. FLOPs = 2 x MACs.

For unstructured sparsity (``arch.densities``) a conv keeps ``kept_weights(n, density)`` non-zero
weights, and params/MACs count the non-zero ones.
"""

from __future__ import annotations

from .architecture import Architecture
from .families import Layer, get_family


def kept_weights(n: int, density: float) -> int:
    """Non-zero weights of a layer with ``n`` weights at ``density`` (at least one)."""
    return max(1, min(n, int(round(n * density))))


def _layer_counts(layer: Layer, densities: tuple[float, ...] | None) -> tuple[int, int]:
    if layer.kind == "conv":
        n = layer.cin * layer.cout * layer.k * layer.k
        if densities is not None and layer.conv_index is not None:
            n = kept_weights(n, densities[layer.conv_index])
        return n, n * layer.hw * layer.hw
    if layer.kind == "bn":
        return 2 * layer.cout, 0
    if layer.kind == "linear":
        return layer.cin * layer.cout + (layer.cout if layer.bias else 0), layer.cin * layer.cout
    raise ValueError(f"unknown layer kind {layer.kind}")


def count_params_macs(arch: Architecture) -> tuple[int, int]:
    params = macs = 0
    for layer in get_family(arch.family).layers(arch):
        p, m = _layer_counts(layer, arch.densities)
        params += p
        macs += m
    return params, macs


def count_params(arch: Architecture) -> int:
    """Trainable parameters (non-zero ones for sparse architectures)."""
    return count_params_macs(arch)[0]


def count_macs(arch: Architecture) -> int:
    """Multiply-accumulates of one forward pass on one image. FLOPs = 2 x MACs."""
    return count_params_macs(arch)[1]


def count_flops(arch: Architecture) -> int:
    return 2 * count_macs(arch)


def conv_weight_counts(arch: Architecture) -> list[int]:
    """Dense weight count of every conv layer, in ``conv_index`` order (for densities)."""
    return [l.cin * l.cout * l.k * l.k for l in get_family(arch.family).layers(arch) if l.kind == "conv"]
