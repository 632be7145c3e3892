"""Shared by the data-driven methods (ThiNet, regression): targets, sampled activations of each
slot's *consumers* (the convs/linears that read the slot's channels), per-channel contributions to
their outputs, and least-squares reconstruction of the consumers' weights.

For a consumer with weight ``W`` (O, C, k, k) reading input ``x``, the output at a sampled position
and output channel is ``sum_c X[:, c]`` with ``X[:, c] = <W[o, c], patch_c>`` (convs here have no
bias). ThiNet and regression choose the channels whose removal changes that sum least; the kept
channels' weights are then refitted on the same samples. Everything is computed on the unpruned
model's activations (one forward pass over a few training images, in eval mode), which keeps the
sample sizes small and the result independent of the order in which layers are visited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..arch import Architecture, get_family, resolve_model, scale_to_budget
from ..arch.io import NAMED_VARIANTS
from ..errors import ConfigError
from .channels import module_plan, tie_groups


def target_widths(method: str, base: Architecture, *, budget: float | None, ratio: float | None,
                  variant: str | None, target: Architecture | None) -> tuple[tuple[int, ...], dict[str, Any]]:
    """Per-slot widths of a predefined-target method: a named ``variant`` or a ``target``
    architecture (the paper's setting), a ``budget`` (the uniform widths of the one budget solver),
    or a per-layer ``ratio`` (``w - int(w * ratio)`` in every slot)."""
    given = [n for n, v in (("budget", budget), ("ratio", ratio), ("variant", variant), ("target", target)) if v is not None]
    if len(given) != 1:
        raise ConfigError(
            f"{method} needs exactly one of budget=, ratio= (fraction pruned per layer), variant= (e.g. resnet56-b) "
            f"or target= (an Architecture); got {', '.join(given) or 'none'}"
        )
    if variant is not None:
        key = str(variant).strip().lower()
        if key not in NAMED_VARIANTS:
            raise ConfigError(f"unknown {method} variant '{variant}'; known: {', '.join(sorted(NAMED_VARIANTS))}")
        target = resolve_model(key, num_classes=base.num_classes, in_channels=base.in_channels,
                               input_size=base.input_size, head=base.head if base.family == "vgg" else None)
    if target is not None:
        if (target.family, target.depth, target.blocks, target.head) != (base.family, base.depth, base.blocks, base.head):
            raise ConfigError(f"{method} target {target.label} is not a pruned form of {base.label}; prune a "
                              f"{target.model_name} base model{' with the ' + str(target.head) + ' head' if target.head else ''}")
        return tuple(target.widths), {"variant": variant or target.name or "target"}
    if budget is not None:
        return scale_to_budget(base, budget).widths, {"budget": budget}
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise ConfigError(f"{method} ratio is the fraction of channels pruned per layer, in [0, 1); got {ratio!r}")
    m = get_family(base.family).min_width
    return tuple(max(m, w - int(w * float(ratio))) for w in base.widths), {"ratio": float(ratio)}


def slot_consumers(base: Architecture) -> list[list[str]]:
    """Per slot: the conv/linear modules whose input channels are that slot's channels."""
    n = len(get_family(base.family).slots(base))
    out: list[list[str]] = [[] for _ in range(n)]
    for name, (kind, _o, i) in module_plan(base).slicing.items():
        if kind in ("conv", "linear") and i is not None:
            out[i].append(name)
    return out


def capture_inputs(model: nn.Module, data: Any, names: list[str], n_images: int, seed: int) -> dict[str, torch.Tensor]:
    """The inputs of the modules ``names`` on ``n_images`` training images (eval mode), on the CPU."""
    from ..data import DeviceData

    if data is None:
        raise ConfigError("this method reads activations: pass data= (a prunesearch.data.Dataset)")
    if not data.resident:
        raise ConfigError(f"dataset {data.name} is streamed; data-driven pruning needs an in-memory dataset")
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(data.num_train, generator=g)[: max(2, int(n_images))]
    dd = DeviceData(data, device)
    x = dd.normalize(data.train_x[idx].to(device))
    mods = dict(model.named_modules())
    got: dict[str, torch.Tensor] = {}
    handles = [mods[n].register_forward_pre_hook(lambda m, inp, n=n: got.__setitem__(n, inp[0].detach().float().cpu()))
               for n in names]
    was = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return got


@dataclass
class Samples:
    """Sampled patches of one consumer: ``patches`` (P, C, kk) float64, ``out_index`` (P,) a random
    output channel per sample, ``weight`` (O, C, kk) float64."""

    name: str
    patches: torch.Tensor
    out_index: torch.Tensor
    weight: torch.Tensor

    def contributions(self) -> torch.Tensor:
        """X (P, C): each input channel's contribution to the sampled output."""
        return (self.patches * self.weight[self.out_index]).sum(-1)

    def outputs(self) -> torch.Tensor:
        """Y (P, O): the consumer's full output (without bias) at every sampled position."""
        p = self.patches.flatten(1)
        return p @ self.weight.flatten(1).T


def sample_consumer(name: str, module: nn.Module, x: torch.Tensor, n_samples: int, g: torch.Generator) -> Samples:
    w = module.weight.detach().double().cpu()
    if isinstance(module, nn.Linear):
        x = x.flatten(1).double()
        rows = torch.randint(0, x.shape[0], (n_samples,), generator=g)
        patches = x[rows].unsqueeze(-1)  # (P, C, 1)
        weight = w.unsqueeze(-1)
    elif isinstance(module, nn.Conv2d):
        k, s, p = module.kernel_size[0], module.stride[0], module.padding[0]
        xp = F.pad(x.double(), (p, p, p, p))
        n, c, h, wd = x.shape
        ho, wo = (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1
        ni = torch.randint(0, n, (n_samples,), generator=g)
        hi = torch.randint(0, ho, (n_samples,), generator=g) * s
        wi = torch.randint(0, wo, (n_samples,), generator=g) * s
        ar = torch.arange(k)
        rows = (hi[:, None] + ar)[:, :, None]  # (P, k, 1)
        cols = (wi[:, None] + ar)[:, None, :]  # (P, 1, k)
        patches = xp[ni[:, None, None], :, rows, cols]  # (P, k, k, C)
        patches = patches.permute(0, 3, 1, 2).reshape(n_samples, c, k * k)
        weight = w.reshape(w.shape[0], w.shape[1], k * k)
    else:  # pragma: no cover - module_plan only names convs and linears as consumers
        raise ConfigError(f"cannot sample consumer {name} of type {type(module).__name__}")
    out_index = torch.randint(0, weight.shape[0], (n_samples,), generator=g)
    return Samples(name, patches, out_index, weight)


def group_samples(model: nn.Module, base: Architecture, data: Any, *, n_images: int, n_samples: int,
                  seed: int) -> tuple[list[list[int]], list[list[Samples]]]:
    """Tie groups of the base and, per group, samples of every consumer of its channels."""
    slots = get_family(base.family).slots(base)
    groups = tie_groups(slots)
    consumers = slot_consumers(base)
    names = sorted({c for cs in consumers for c in cs})
    inputs = capture_inputs(model, data, names, n_images, seed)
    mods = dict(model.named_modules())
    g = torch.Generator().manual_seed(seed + 1)
    out = []
    for members in groups:
        out.append([sample_consumer(c, mods[c], inputs[c], n_samples, g) for i in members for c in consumers[i]])
    return groups, out


def channel_scaling(samples: Samples, kept: torch.Tensor) -> torch.Tensor:
    """ThiNet's refit: one least-squares factor per kept channel so that the kept contributions best
    reproduce the full output (``gamma = argmin ||y - X_kept gamma||``); all ones if that does not
    lower the error (ill-conditioned samples)."""
    x = samples.contributions()
    y = x.sum(1)
    xk = x[:, kept]
    gamma = torch.linalg.lstsq(xk, y.unsqueeze(1), driver="gelsd").solution.squeeze(1)
    ones = torch.ones_like(gamma)
    if not torch.isfinite(gamma).all() or (y - xk @ gamma).norm() >= (y - xk @ ones).norm():
        return ones
    return gamma


def ridge_refit(samples: Samples, kept: torch.Tensor, strength: float = 1e-3) -> torch.Tensor:
    """Regression's refit: the consumer's weights over the kept input channels, by least squares on
    the sampled outputs, pulled towards the original weights (ridge, relative ``strength``) so that
    small samples stay well posed. Returns (O, k, kk)."""
    kk = samples.weight.shape[-1]
    p = samples.patches[:, kept].flatten(1)  # (P, k*kk)
    y = samples.outputs()  # (P, O)
    w0 = samples.weight[:, kept].flatten(1)  # (O, k*kk)
    a = p.T @ p
    lam = strength * float(torch.trace(a)) / a.shape[0] + 1e-12
    a = a + lam * torch.eye(a.shape[0], dtype=a.dtype)
    b = p.T @ y + lam * w0.T
    w = torch.linalg.solve(a, b).T
    if not torch.isfinite(w).all() or (y - p @ w.T).norm() >= (y - p @ w0.T).norm():
        w = w0
    return w.reshape(w.shape[0], len(kept), kk)


def write_consumer(state: dict[str, torch.Tensor], base: Architecture, keep: list[tuple[int, ...]], name: str,
                   new_weight: torch.Tensor) -> None:
    """Put a refitted consumer weight (all O outputs x kept inputs) into the inherited state dict,
    sliced to the consumer's own kept outputs."""
    kind, out_slot, _ = module_plan(base).slicing[name]
    key = f"{name}.weight"
    old = state[key]
    w = new_weight
    if out_slot is not None:
        w = w[list(keep[out_slot])]
    state[key] = w.reshape(old.shape).to(dtype=old.dtype, device=old.device)
