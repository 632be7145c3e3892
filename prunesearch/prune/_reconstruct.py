"""Shared by the data-driven methods (ThiNet, regression): targets, sampled activations of each
slot's *consumers* (the convs/linears that read the slot's channels), per-channel contributions to
their outputs, least-squares reconstruction of the consumers' weights, and the layer-by-layer pass
(:func:`sequential_pass`) both methods run.

For a consumer with weight ``W`` (O, C, k, k) reading input ``x``, the output at a sampled position
and output channel is ``sum_c X[:, c]`` with ``X[:, c] = <W[o, c], patch_c>`` (convs here have no
bias). ThiNet and regression choose the channels whose removal changes that sum least; the kept
channels' weights are then refitted on the same samples.

Layer by layer (ThiNet, Luo et al. 2017, Sec. 3, the framework; Channel Pruning, He et al. 2017, Sec. 3.2
"whole model pruning"; REFERENCE §4): the tie groups of slots are visited in network order; for
group g the consumers' inputs are captured on the network *pruned so far* (groups < g already
narrowed and their consumers refitted), channels are selected, the consumers refitted, and only then
is group g+1 visited. Deliberate differences from the papers: no fine-tuning epoch between layers
(ThiNet fine-tunes one or two epochs per layer; here the fine-tuned arm trains once at the end, the
same for every method), and every layer is visited in one pass over the same ``n_images`` images
(eval mode, BN running statistics), which keeps the pass cheap and deterministic.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..arch import Architecture, get_family, resolve_model, scale_to_budget
from ..arch.io import NAMED_VARIANTS
from ..errors import ConfigError
from .channels import arch_from_keep, inherit_state_dict, module_plan, tie_groups


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


def ridge_refit(samples: Samples, kept: torch.Tensor, strength: float = 1e-3,
                target: torch.Tensor | None = None) -> torch.Tensor:
    """Regression's refit: the consumer's weights over the kept input channels, by least squares on
    the sampled outputs (``target`` (P, O) when given, e.g. the original network's outputs at the same
    positions; else the consumer's own full output), pulled towards the current weights (ridge,
    relative ``strength``) so that small samples stay well posed. Returns (O, k, kk)."""
    kk = samples.weight.shape[-1]
    p = samples.patches[:, kept].flatten(1)  # (P, k*kk)
    y = samples.outputs() if target is None else target  # (P, O)
    w0 = samples.weight[:, kept].flatten(1)  # (O, k*kk)
    a = p.T @ p
    lam = strength * float(torch.trace(a)) / a.shape[0] + 1e-12
    a = a + lam * torch.eye(a.shape[0], dtype=a.dtype)
    b = p.T @ y + lam * w0.T
    w = torch.linalg.solve(a, b).T
    if not torch.isfinite(w).all() or (y - p @ w.T).norm() >= (y - p @ w0.T).norm():
        w = w0
    return w.reshape(w.shape[0], len(kept), kk)


# ------------------------------------------------------------------------------------------------
# The layer-by-layer pass
# ------------------------------------------------------------------------------------------------
@dataclass
class Step:
    """One consumer's samples at one step of the sequential pass: ``samples`` on the network pruned
    so far, and (if requested) ``target`` (P, O) the *original* network's output of that consumer at
    the same sampled positions, restricted to the consumer's current output channels."""

    samples: Samples
    target: torch.Tensor | None = None

    def y(self) -> torch.Tensor:
        """(P,) the value to reproduce at each sample's output channel: the original network's output
        when a target was captured, else the consumer's own full output on the current input."""
        if self.target is None:
            return self.samples.contributions().sum(1)
        return self.target[torch.arange(self.target.shape[0]), self.samples.out_index]


def step_generator(seed: int, group: int, consumer: int) -> torch.Generator:
    """The sampling generator of one consumer at one step (deterministic, independent of the others)."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + 1009 * int(group) + int(consumer) + 1)


def partial_model(work: nn.Module, base: Architecture, keep: list[tuple[int, ...]]) -> nn.Module:
    """``build_model(arch_from_keep(base, keep))`` with ``work``'s weights sliced to ``keep``: the
    network pruned so far (exactly the model the fine-tuned arm would get for these keep sets)."""
    from ..models import build_model

    device = next(work.parameters()).device
    model = build_model(arch_from_keep(base, keep)).to(device)
    model.load_state_dict(inherit_state_dict(work, base, keep), strict=True)
    return model.eval()


def sequential_pass(
    model: nn.Module,
    base: Architecture,
    data: Any,
    widths: tuple[int, ...],
    *,
    select: Callable[[int, list[Step], int], list[int]],
    refit: Callable[[Step, torch.Tensor], torch.Tensor | None],
    n_images: int,
    n_samples: int,
    seed: int,
    original_target: bool = False,
) -> tuple[list[tuple[int, ...]], nn.Module]:
    """Prune ``model`` (built from ``base``, not modified) to ``widths`` layer by layer.

    For every tie group in network order whose target width is below its base width: build the
    network pruned so far (:func:`partial_model`), capture its consumers' inputs on ``n_images``
    training images, sample ``n_samples`` outputs per consumer (:func:`step_generator`), call
    ``select(group_index, steps, width)`` for the kept channels (base numbering), and
    ``refit(step, kept)`` for each consumer's new weight over the kept inputs ((O, k, kk), its current
    output channels; ``None`` keeps the sliced weight). ``original_target=True`` also samples the
    original network at the same positions (He et al.'s reconstruction target, ``Step.target``).

    Returns the keep sets (one per slot) and a full-width copy of the model whose consumer weights
    hold the refits at the kept positions: ``result_from_keep(method, work, base, keep)`` then
    inherits the refitted weights (the fine-tuned arm starts from them)."""
    fam = get_family(base.family)
    slots = fam.slots(base)
    groups = tie_groups(slots)
    consumers = slot_consumers(base)
    plan = module_plan(base).slicing
    work = copy.deepcopy(model).eval()
    keep: list[tuple[int, ...]] = [tuple(range(s.base_width)) for s in slots]
    originals: dict[str, torch.Tensor] = {}
    if original_target:
        names = sorted({c for cs in consumers for c in cs})
        originals = capture_inputs(model, data, names, n_images, seed)
    orig_mods = dict(model.named_modules())
    for gi, members in enumerate(groups):
        base_w, w = slots[members[0]].base_width, int(widths[members[0]])
        names = [c for i in members for c in consumers[i]]
        if w >= base_w or not names:
            continue
        current = partial_model(work, base, keep)
        inputs = capture_inputs(current, data, names, n_images, seed)
        mods = dict(current.named_modules())
        steps = []
        for j, c in enumerate(names):
            s = sample_consumer(c, mods[c], inputs[c], n_samples, step_generator(seed, gi, j))
            target = None
            if original_target:
                o = sample_consumer(c, orig_mods[c], originals[c], n_samples, step_generator(seed, gi, j))
                out_slot = plan[c][1]
                rows = list(keep[out_slot]) if out_slot is not None else list(range(o.weight.shape[0]))
                target = o.outputs()[:, rows]
            steps.append(Step(s, target))
        kept = tuple(sorted(int(k) for k in select(gi, steps, w)))
        kept_t = torch.tensor(kept, dtype=torch.long)
        for c, st in zip(names, steps):
            new = refit(st, kept_t)
            if new is None:
                continue
            out_slot = plan[c][1]
            weight = orig_mods[c].weight  # shape reference only
            with torch.no_grad():
                wmod = dict(work.named_modules())[c].weight
                full = wmod.detach().clone()
                rows = torch.tensor(keep[out_slot] if out_slot is not None else range(full.shape[0]), dtype=torch.long)
                block = full[rows]
                block[:, kept_t] = new.reshape(len(rows), len(kept), *weight.shape[2:]).to(full)
                full[rows] = block
                wmod.copy_(full)
        for i in members:
            keep[i] = kept
    return keep, work
