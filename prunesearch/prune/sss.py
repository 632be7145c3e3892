"""Sparse Structure Selection (Huang & Wang 2018; REFERENCE §4): prune depth, not width.

Every residual block gets a scaling factor ``lambda`` on its residual branch
(``out = relu(lambda * branch(x) + shortcut(x))`` for ResNet, ``lambda * branch(x) + x`` for
PreResNet). The factor is trained with the network under a sparsity penalty (the subgradient
``s * sign(lambda)`` added after every backward pass, like slimming's penalty on BN gammas); blocks
whose factor ends near zero contribute nothing and are removed. The pruned architecture keeps the
base widths and records the per-stage block counts in ``Architecture.blocks``.

- ``prepare(model, arch)`` adds the factors (a parameter ``sss_scale`` on the branch's last module,
  e.g. ``layer1.0.bn2.sss_scale``, initialised to 1 and applied by a forward hook on that module;
  ``prunesearch.models`` is unchanged), so
  the optimiser sees them. ``regularizer(arch, s=1e-4)`` is the penalty.
- ``prune(model, arch, threshold=0.01)`` removes blocks with ``|lambda| <= threshold`` (the automatic
  target); ``ratio`` removes that fraction of the removable blocks (lowest ``|lambda|`` first);
  ``budget`` removes blocks by ascending ``|lambda|`` and stops at the count closest to the budget
  (granularity: one block).
- The first block of each stage changes the resolution/width (stride 2 or a projection shortcut)
  and is never removed, so every stage keeps at least one block.
- Inherited weights: kept blocks move up to fill the gaps (all non-first blocks of a stage have the
  same shapes) and ``lambda`` is folded into the branch (ResNet: ``bn2`` weight and bias; PreResNet:
  ``conv3`` weight), so ``build_model(result.arch)`` computes exactly what the base computed with
  the removed blocks' branches set to zero.
- On a model without factors (not prepared), a block is scored by the mean |gamma| of the BN that
  scales its branch (ResNet ``bn2``, PreResNet ``bn3``), a proxy for the same quantity.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from ..arch import TOLERANCE, Architecture, Budget, get_family
from ..errors import BudgetError, ConfigError
from ..train import TrainHook
from .base import PruneResult, PruningMethod, check_request, register

SCALE = "sss_scale"
DEFAULT_SPARSITY = 1e-4
DEFAULT_THRESHOLD = 1e-2
# Per family: (module of the branch whose output lambda scales, BN used as proxy when unprepared,
# tensors into which lambda is folded).
_BRANCH = {
    "resnet": ("bn2", "bn2", ("bn2.weight", "bn2.bias")),
    "preresnet": ("conv3", "bn3", ("conv3.weight",)),
}
_BLOCK_KEY = re.compile(r"^layer(\d)\.(\d+)\.(.+)$")


def blocks_of(model: nn.Module) -> list[list[nn.Module]]:
    """Per stage, the residual blocks of a CIFAR ResNet/PreResNet built by ``build_model``."""
    return [list(getattr(model, f"layer{s}")) for s in (1, 2, 3)]


def _scale_output(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
    # The factor lives on the module it scales, so copies of the model (deepcopy) stay consistent.
    return output * getattr(module, SCALE).to(output.dtype)


def block_scale(block: nn.Module, family: str) -> nn.Parameter | None:
    """The block's factor, or None if the model was not prepared."""
    return getattr(getattr(block, _BRANCH[family][0]), SCALE, None)


def attach_block_scales(model: nn.Module, family: str) -> nn.Module:
    """Give every residual block a trainable factor ``sss_scale`` (1.0) on its branch (idempotent)."""
    if family not in _BRANCH:
        raise ConfigError(f"sss scales residual blocks; {family} has none (use resnet or preresnet)")
    last = _BRANCH[family][0]
    for stage in blocks_of(model):
        for block in stage:
            module = getattr(block, last)
            if hasattr(module, SCALE):
                continue
            module.register_parameter(SCALE, nn.Parameter(torch.ones(())))
            module.register_forward_hook(_scale_output)
    return model


def block_scores(model: nn.Module, family: str) -> list[list[float]]:
    """|lambda| per block (per stage), or the proxy mean |gamma| when the model has no factors."""
    proxy = _BRANCH[family][1]
    out = []
    for stage in blocks_of(model):
        row = []
        for block in stage:
            scale = block_scale(block, family)
            if scale is not None:
                row.append(float(scale.detach().abs().cpu()))
            else:
                row.append(float(getattr(block, proxy).weight.detach().abs().mean().cpu()))
        out.append(row)
    return out


class BlockSparsity(TrainHook):
    """Adds ``s * sign(lambda)`` to every block factor's gradient (subgradient of ``s * sum |lambda|``)."""

    def __init__(self, s: float = DEFAULT_SPARSITY) -> None:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not s >= 0:
            raise ConfigError(f"sss sparsity s must be a number >= 0, got {s!r}")
        self.s = float(s)

    def after_backward(self, model: nn.Module) -> None:
        with torch.no_grad():
            for m in model.modules():
                p = m._parameters.get(SCALE) if hasattr(m, "_parameters") else None
                if p is not None and p.grad is not None:
                    p.grad.add_(torch.sign(p), alpha=self.s)

    def state_dict(self) -> dict[str, Any]:
        return {"s": self.s}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.s = float(state.get("s", self.s))

    def __repr__(self) -> str:
        return f"BlockSparsity(s={self.s:g})"


def depth_pruned(base: Architecture, kept: list[list[int]]) -> Architecture:
    """``base`` with only the ``kept`` blocks (indices per stage); ``blocks=None`` when all are kept."""
    fam = get_family(base.family)
    counts = tuple(len(k) for k in kept)
    full = fam.stage_blocks(base)  # type: ignore[attr-defined]
    blocks = None if counts == tuple(full) else counts
    return fam.base(base.depth, num_classes=base.num_classes, in_channels=base.in_channels,
                    input_size=base.input_size, blocks=blocks)


def inherit_blocks(model: nn.Module, base: Architecture, kept: list[list[int]]) -> dict[str, torch.Tensor]:
    """The base model's tensors for the kept blocks, renumbered within each stage, with each kept
    block's factor folded into its branch; other tensors (stem, head) unchanged."""
    fold = _BRANCH[base.family][2]
    new_index = [{old: j for j, old in enumerate(k)} for k in kept]
    scales = {(s, b): block_scale(blk, base.family) for s, stage in enumerate(blocks_of(model)) for b, blk in enumerate(stage)}
    out: dict[str, torch.Tensor] = {}
    for key, t in model.state_dict().items():
        t = t.detach()
        m = _BLOCK_KEY.match(key)
        if m is None:
            out[key] = t.clone()
            continue
        s, b, rest = int(m.group(1)) - 1, int(m.group(2)), m.group(3)
        if b not in new_index[s] or rest.endswith(SCALE):
            continue
        lam = scales[(s, b)]
        if lam is not None and rest in fold:
            t = t * lam.detach().to(t.dtype)
        out[f"layer{s + 1}.{new_index[s][b]}.{rest}"] = t.clone()
    return out


def _check_sss_model(model: nn.Module, arch: Architecture) -> None:
    from ..models import build_model

    want = {k: tuple(v.shape) for k, v in build_model(arch).state_dict().items()}
    have = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("." + SCALE)}
    if want != have:
        diff = sorted(set(want.items()) ^ set(have.items()))[:2]
        raise ConfigError(
            f"the model does not match {arch.label} (first differences: {diff}); pass the model built by "
            "prunesearch.models.build_model(arch) (optionally prepared by sss.prepare)"
        )


@register
class SparseStructureSelection(PruningMethod):
    """SSS: a sparsity-penalised factor per residual block; blocks whose factor vanishes are removed."""

    name = "sss"
    structured = True
    prunes = "blocks"
    families = ("resnet", "preresnet")

    def prepare(self, model: nn.Module, arch: Architecture) -> nn.Module:
        check_request(self, arch, None, None, allow_neither=True)
        return attach_block_scales(model, arch.family)

    def regularizer(self, arch: Architecture, *, budget: float | None = None, ratio: float | None = None,
                    s: float | None = None, **options: Any) -> TrainHook:
        # budget/ratio: the target prune will get; the penalty does not depend on it.
        if options:
            raise ConfigError(f"sss's regulariser takes s= (sparsity on block factors), got {', '.join(sorted(options))}")
        check_request(self, arch, None, None, allow_neither=True)
        return BlockSparsity(DEFAULT_SPARSITY if s is None else s)

    def prune(
        self,
        model: nn.Module,
        arch: Architecture,
        *,
        budget: float | None = None,
        ratio: float | None = None,
        data: Any = None,
        threshold: float | None = None,
        **options: Any,
    ) -> PruneResult:
        if options:
            raise ConfigError(f"sss takes budget=, ratio= or threshold=, got {', '.join(sorted(options))}")
        given = sum(x is not None for x in (budget, ratio, threshold))
        if given > 1:
            raise ConfigError("sss: give one of budget=, ratio= or threshold= (|factor| at or below it is removed)")
        check_request(self, arch, budget, ratio, allow_neither=True)
        _check_sss_model(model, arch)
        if given == 0:
            threshold = DEFAULT_THRESHOLD
        scores = block_scores(model, arch.family)
        # Removable blocks (never the first of a stage), weakest first; ties: later blocks first.
        order = sorted(((sc, s, b) for s, row in enumerate(scores) for b, sc in enumerate(row) if b > 0),
                       key=lambda t: (t[0], -t[1], -t[2]))
        prepared = any(block_scale(blk, arch.family) is not None for st in blocks_of(model) for blk in st)
        info: dict[str, Any] = {"block_scores": scores, "criterion": "|block factor|" if prepared
                                else "mean |gamma| of the BN scaling the branch (model has no factors)"}

        def kept_after(n_removed: int) -> list[list[int]]:
            gone = {(s, b) for _, s, b in order[:n_removed]}
            return [[b for b in range(len(row)) if (s, b) not in gone] for s, row in enumerate(scores)]

        if threshold is not None:
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or threshold < 0:
                raise ConfigError(f"sss threshold must be a number >= 0, got {threshold!r}")
            n = sum(1 for sc, _, _ in order if sc <= threshold)
            info["threshold"] = float(threshold)
        elif ratio is not None:
            n = int(len(order) * float(ratio))
        else:
            b = Budget.of(budget)  # type: ignore[arg-type]
            target = b.resolve(arch)
            sizes = [b.measure(depth_pruned(arch, kept_after(k))) for k in range(len(order) + 1)]
            if target < sizes[-1]:
                raise BudgetError(
                    f"budget {target:,} {b.unit} is below the smallest depth sss can reach on {arch.model_name} "
                    f"({sizes[-1]:,} {b.unit} with one block per stage); raise the budget or use a width method (slimming)"
                )
            n = min(range(len(sizes)), key=lambda k: (abs(sizes[k] - target), k))
            info.update(budget=b.value, budget_kind=b.kind, target_params=target,
                        budget_rel_error=abs(sizes[n] - target) / target)
            if info["budget_rel_error"] > TOLERANCE:
                info["budget_note"] = (f"{sizes[n]:,} params is the closest whole number of blocks gets to {target:,} "
                                       f"({100 * info['budget_rel_error']:.2f} % off): one block is a big step")
        kept = kept_after(n)
        new = depth_pruned(arch, kept)
        info["kept_blocks"] = kept
        info["removed_blocks"] = [[b for b in range(len(row)) if b not in k] for row, k in zip(scores, kept)]
        return PruneResult(
            arch=new, base=arch, method=self.name, state_dict=inherit_blocks(model, arch, kept),
            keep=None, masks=None, ratio=n / len(order) if order else 0.0,
            threshold=None if threshold is None else float(threshold), info=info,
        )


__all__ = ["BlockSparsity", "SparseStructureSelection", "attach_block_scales", "block_scores", "depth_pruned",
           "inherit_blocks"]
