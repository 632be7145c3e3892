"""Analytic, torch-free parameter and MAC counts.

Conventions (so that counts match the reference code and ``sum(p.numel())``): convs have no bias;
every BatchNorm contributes weight + bias (running statistics are buffers); linears have a bias.
MACs are multiply-accumulates of convs and linears (what ``FlopCounterMode`` counts, halved);
BN, ReLU, pooling and additions are not counted. FLOPs = 2 x MACs.

For unstructured sparsity (``arch.densities``) a conv keeps ``kept_weights(n, density)`` non-zero
weights, and params/MACs count the non-zero ones.
"""

from __future__ import annotations

import numpy as np

from .architecture import Architecture
from .families import get_family


def kept_weights(n: int, density: float) -> int:
    """Non-zero weights of a layer with ``n`` weights at ``density`` (at least one)."""
    return max(1, min(n, int(round(n * density))))


class _Lin:
    """A width expression during symbolic counting: ``const + sum(coef * width[slot])``."""

    __slots__ = ("terms",)

    def __init__(self, terms: dict[int, int]) -> None:
        self.terms = terms  # slot index -> coefficient; -1 is the constant term

    def _combine(self, other, sign: int) -> "_Lin":
        o = other.terms if isinstance(other, _Lin) else {-1: int(other)}
        t = dict(self.terms)
        for k, v in o.items():
            t[k] = t.get(k, 0) + sign * v
        return _Lin(t)

    def __add__(self, other):
        return self._combine(other, 1)

    __radd__ = __add__

    def __mul__(self, other: int) -> "_Lin":
        if isinstance(other, _Lin):
            raise TypeError("layer plans multiply widths only when counting")
        return _Lin({k: v * other for k, v in self.terms.items()})

    __rmul__ = __mul__


def _product(a, b) -> dict[tuple[int, int], int]:
    ta = a.terms if isinstance(a, _Lin) else {-1: int(a)}
    tb = b.terms if isinstance(b, _Lin) else {-1: int(b)}
    return {(i, j): ca * cb for i, ca in ta.items() for j, cb in tb.items()}


def _compile(arch: Architecture) -> tuple[tuple, tuple]:
    """Params and MACs of ``arch``'s structure as quadratic forms in its widths.

    The family's layer plan is walked once with symbolic widths; every later count with the same
    structure (family, depth, blocks, head, classes, channels, input size) is a short sum. This is
    what makes the budget solver's bisection cheap. Sparse architectures take the plain path.
    """
    sym = _fast_replace(arch, tuple(_Lin({i: 1}) for i in range(len(arch.widths))))
    params: dict[tuple[int, int], int] = {}
    macs: dict[tuple[int, int], int] = {}

    def add(acc, terms, scale):
        for key, c in terms.items():
            acc[key] = acc.get(key, 0) + c * scale

    for kind, cin, cout, k, hw, _stride, bias, _ci in get_family(arch.family).layers(sym):
        if kind == "conv":
            prod = _product(cin, cout)
            add(params, prod, k * k)
            add(macs, prod, k * k * hw * hw)
        elif kind == "bn":
            add(params, _product(cout, 1), 2)
        else:  # linear
            prod = _product(cin, cout)
            add(params, prod, 1)
            add(macs, prod, 1)
            if bias:
                add(params, _product(cout, 1), 1)

    def pack(acc):
        items = [(i, j, c) for (i, j), c in acc.items() if c]
        i, j, c = zip(*items) if items else ((), (), ())
        return np.array(i, dtype=np.int64), np.array(j, dtype=np.int64), np.array(c, dtype=np.int64)

    return pack(params), pack(macs)


def _fast_replace(arch: Architecture, widths) -> Architecture:
    obj = object.__new__(Architecture)
    for f in Architecture.__dataclass_fields__:
        object.__setattr__(obj, f, getattr(arch, f))
    object.__setattr__(obj, "widths", widths)
    return obj


_FORMS: dict[tuple, tuple] = {}


def _forms(arch: Architecture) -> tuple:
    key = (arch.family, arch.depth, arch.blocks, arch.head, arch.num_classes, arch.in_channels, arch.input_size,
           len(arch.widths))
    forms = _FORMS.get(key)
    if forms is None:
        forms = _FORMS[key] = _compile(arch)
    return forms


def _eval(form: tuple, arch: Architecture) -> int:
    i, j, c = form
    w = np.array((*arch.widths, 1), dtype=np.int64)  # index -1 is the constant 1
    return int((c * w[i] * w[j]).sum())


def count_params_macs(arch: Architecture) -> tuple[int, int]:
    if arch.densities is not None:
        return _count_plain(arch)
    params, macs = _forms(arch)
    return _eval(params, arch), _eval(macs, arch)


def _count_plain(arch: Architecture) -> tuple[int, int]:
    params = macs = 0
    dens = arch.densities
    for kind, cin, cout, k, hw, _stride, bias, ci in get_family(arch.family).layers(arch):
        if kind == "conv":
            n = cin * cout * k * k
            if dens is not None and ci is not None:
                n = kept_weights(n, dens[ci])
            params += n
            macs += n * hw * hw
        elif kind == "bn":
            params += 2 * cout
        else:  # linear
            params += cin * cout + (cout if bias else 0)
            macs += cin * cout
    return params, macs


def count_params(arch: Architecture) -> int:
    """Trainable parameters (non-zero ones for sparse architectures)."""
    if arch.densities is not None:
        return _count_plain(arch)[0]
    return _eval(_forms(arch)[0], arch)


def count_macs(arch: Architecture) -> int:
    """Multiply-accumulates of one forward pass on one image. FLOPs = 2 x MACs."""
    if arch.densities is not None:
        return _count_plain(arch)[1]
    return _eval(_forms(arch)[1], arch)


def count_flops(arch: Architecture) -> int:
    return 2 * count_macs(arch)


def conv_weight_counts(arch: Architecture) -> list[int]:
    """Dense weight count of every conv layer, in ``conv_index`` order (for densities)."""
    return [l.cin * l.cout * l.k * l.k for l in get_family(arch.family).layers(arch) if l.kind == "conv"]
