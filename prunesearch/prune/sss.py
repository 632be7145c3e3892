"""Sparse Structure Selection (Huang & Wang, ECCV 2018; REFERENCE §4): prune depth, not width.

Every residual block gets a scaling factor ``lambda`` on its residual branch
(``out = relu(lambda * branch(x) + shortcut(x))`` for ResNet, ``lambda * branch(x) + x`` for
PreResNet) and the network is trained on ``loss + s * sum |lambda|`` (paper §3.2, eq. 4 with the
L1 regulariser on lambda). Following the paper's §3.3 the factors are optimised with accelerated
proximal gradient: after every SGD step of the weights, each factor takes the APG step of
:class:`BlockSparsity` (gradient step, soft-thresholding ``sign(x) * max(|x| - lr * s, 0)``, Nesterov
momentum in the paper's reformulation, exactly the update of the reference code's ``APGNAG``
optimiser), so factors become *exactly* zero. Blocks whose factor is exactly zero contribute
nothing and are removed. The pruned architecture keeps the base widths and records the per-stage
block counts in ``Architecture.blocks``.

- ``prepare(model, arch)`` adds the factors (a parameter ``sss_scale`` on the branch's last module,
  e.g. ``layer1.0.bn2.sss_scale``, initialised to 1 and applied by a forward hook on that module;
  ``prunesearch.models`` is unchanged), so the optimiser sees them. ``regularizer(arch, s=1e-4,
  momentum=0.9)`` is the APG hook (``s``: the paper's gamma).
- ``prune(model, arch)`` (automatic target, ``threshold=0.0``) removes the blocks whose factor is
  exactly zero, as the paper does. ``threshold=t`` removes ``|lambda| <= t``; ``ratio`` removes that
  fraction of the removable blocks (lowest ``|lambda|`` first); ``budget`` removes blocks by
  ascending ``|lambda|`` and stops at the count closest to the budget (granularity: one block).
- Which blocks can go (:func:`removable_blocks`): any block whose shortcut is the identity. Blocks
  with a stride-2 or widening shortcut (ResNet: first block of stages 2 and 3; PreResNet: the first
  block of every stage, whose shortcut is a 1x1 projection) cannot be removed without changing the
  shapes of the next block: removing them is structurally impossible here, so they stay even with a
  zero factor (``info["kept_zero_blocks"]``); their branch is then folded to zero, so the pruned
  model still computes what the base computed. ResNet's stage-1 first block has an identity
  shortcut and may go like any other (stage 1 may even lose every block).
- Inherited weights: kept blocks move up to fill the gaps (removable blocks all have the same shapes
  as the blocks after them) and ``lambda`` is folded into the branch (ResNet: ``bn2`` weight and
  bias; PreResNet: ``conv3`` weight), so ``build_model(result.arch)`` computes exactly what the
  base computed with the removed blocks' branches set to zero.
- On a model without factors (not prepared), a block is scored by the mean |gamma| of the BN that
  scales its branch (ResNet ``bn2``, PreResNet ``bn3``), a proxy for the same quantity (the
  automatic target then removes only blocks whose gammas are all zero; use ratio= or budget=).

Differences from the paper and why: the factors sit on whole residual blocks only (the paper also
puts them on groups and neurons; this toolkit's search space is depth here and width elsewhere);
APG runs per training step with the run's learning-rate schedule and its own momentum buffer
(``momentum``, default the recipe-typical 0.9) while the weights keep the recipe's SGD, as the
reference's ``APGNAG`` does; the factors get no weight decay.
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
DEFAULT_MOMENTUM = 0.9  # the reference trains lambda with the SGD momentum of the run (0.9)
DEFAULT_THRESHOLD = 0.0  # APG makes factors exactly zero: the automatic target removes exactly those
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


def soft_threshold(x: torch.Tensor, t: float) -> torch.Tensor:
    """The proximal operator of ``t * |x|``: ``sign(x) * max(|x| - t, 0)`` (exact zeros below ``t``)."""
    return torch.sign(x) * torch.clamp(x.abs() - t, min=0.0)


class BlockSparsity(TrainHook):
    """Accelerated proximal gradient (APG) on the block factors, the SSS paper's optimiser (§3.3).

    The factors are taken out of the SGD step (their gradient is set aside in ``after_backward`` and
    ``.grad`` cleared, so SGD's momentum and weight decay never touch them) and updated in
    ``after_step`` with the paper's momentum reformulation of APG, as the reference's ``APGNAG``
    optimiser does it (``lr``: the epoch's learning rate, ``mu``: ``momentum``, ``v``: a buffer)::

        v <- mu * v;  z <- S(lambda - lr * grad, lr * s);  v <- z - lambda + v;  lambda <- z + mu * v

    ``S`` is :func:`soft_threshold`, so ``z`` is exactly 0.0 whenever ``|lambda - lr * grad| <= lr * s``;
    the stored factor (the look-ahead point ``z + mu * v``) is exactly 0.0 once ``z`` has been 0 for
    two steps in a row (``momentum=0``: after one). No weight decay on the factors (the L1 term is
    their only regulariser). The learning rate comes from ``on_epoch_start`` (the trainer calls it);
    the momentum buffers are saved in the checkpoint (``state_dict``).
    """

    def __init__(self, s: float = DEFAULT_SPARSITY, momentum: float = DEFAULT_MOMENTUM) -> None:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not s >= 0:
            raise ConfigError(f"sss sparsity s must be a number >= 0, got {s!r}; try s=1e-4")
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
            raise ConfigError(f"sss momentum must be a number in [0, 1), got {momentum!r}; try momentum=0.9")
        self.s = float(s)
        self.momentum = float(momentum)
        self.lr: float | None = None
        self._grads: dict[str, torch.Tensor] = {}
        self._buffers: dict[str, torch.Tensor] = {}

    @staticmethod
    def factors(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in model.named_parameters() if n.endswith("." + SCALE)]

    def on_epoch_start(self, model: nn.Module, epoch: int, lr: float) -> None:
        self.lr = float(lr)

    def after_backward(self, model: nn.Module) -> None:
        for name, p in self.factors(model):
            if p.grad is not None:
                self._grads[name] = p.grad.detach().clone()
                p.grad = None  # SGD skips parameters without a gradient

    def after_step(self, model: nn.Module) -> None:
        if not self._grads:
            return
        if self.lr is None:
            raise ConfigError("sss's proximal step needs the learning rate: train with prunesearch.train.train "
                              "(it calls on_epoch_start), or call hook.on_epoch_start(model, epoch, lr) first")
        with torch.no_grad():
            for name, p in self.factors(model):
                g = self._grads.pop(name, None)
                if g is None:
                    continue
                v = self._buffers.get(name)
                v = torch.zeros_like(p) if v is None else v.to(p.device) * self.momentum
                z = soft_threshold(p - self.lr * g.to(p.dtype), self.lr * self.s)
                v = z - p + v
                p.copy_(z + self.momentum * v)
                self._buffers[name] = v.detach().clone()
        self._grads.clear()

    def state_dict(self) -> dict[str, Any]:
        return {"s": self.s, "momentum": self.momentum,
                "buffers": {k: v.detach().cpu().clone() for k, v in self._buffers.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.s = float(state.get("s", self.s))
        self.momentum = float(state.get("momentum", self.momentum))
        self._buffers = {k: v.clone() for k, v in dict(state.get("buffers") or {}).items()}

    def __repr__(self) -> str:
        return f"BlockSparsity(s={self.s:g}, momentum={self.momentum:g})"


def removable_blocks(model: nn.Module, family: str) -> list[list[bool]]:
    """Per stage, per block: True if the block can be removed, i.e. its shortcut is the identity (stride
    1, as many output as input channels), so the blocks around it keep their shapes. ResNet: every block
    except the first of stages 2 and 3 (stride 2, zero-padded widening); stage 1 may lose all its blocks.
    PreResNet: every block except the first of each stage (projection shortcut, stage 1 included)."""
    out = []
    for stage in blocks_of(model):
        row = []
        for blk in stage:
            if family == "resnet":
                row.append(blk.stride == 1 and blk.cin == blk.cout)
            else:
                row.append(blk.downsample is None and tuple(blk.conv2.stride) == (1, 1))
        out.append(row)
    return out


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
    """SSS: an L1-penalised factor per residual block trained by APG; blocks whose factor is exactly zero are removed."""

    name = "sss"
    structured = True
    prunes = "blocks"
    families = ("resnet", "preresnet")

    def prepare(self, model: nn.Module, arch: Architecture) -> nn.Module:
        check_request(self, arch, None, None, allow_neither=True)
        return attach_block_scales(model, arch.family)

    def regularizer(self, arch: Architecture, *, budget: float | None = None, ratio: float | None = None,
                    s: float | None = None, momentum: float | None = None, **options: Any) -> TrainHook:
        # budget/ratio: the target prune will get; the penalty does not depend on it.
        if options:
            raise ConfigError(f"sss's regulariser takes s= (sparsity on block factors) and momentum= (APG momentum), "
                              f"got {', '.join(sorted(options))}")
        check_request(self, arch, None, None, allow_neither=True)
        return BlockSparsity(DEFAULT_SPARSITY if s is None else s, DEFAULT_MOMENTUM if momentum is None else momentum)

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
        movable = removable_blocks(model, arch.family)
        # Removable blocks (identity shortcut, see removable_blocks), weakest first; ties: later blocks first.
        order = sorted(((sc, s, b) for s, row in enumerate(scores) for b, sc in enumerate(row) if movable[s][b]),
                       key=lambda t: (t[0], -t[1], -t[2]))
        prepared = any(block_scale(blk, arch.family) is not None for st in blocks_of(model) for blk in st)
        info: dict[str, Any] = {"block_scores": scores, "criterion": "|block factor|" if prepared
                                else "mean |gamma| of the BN scaling the branch (model has no factors)"}

        def kept_after(n_removed: int) -> list[list[int]]:
            gone = {(s, b) for _, s, b in order[:n_removed]}
            return [[b for b in range(len(row)) if (s, b) not in gone] for s, row in enumerate(scores)]

        if threshold is not None:
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or threshold < 0:
                raise ConfigError(f"sss threshold must be a number >= 0, got {threshold!r}; 0.0 (the default) removes exactly-zero factors")
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
                    f"({sizes[-1]:,} {b.unit} with only the blocks that cannot be removed); raise the budget or use a width method (slimming)"
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
        # zero-factor blocks that cannot go (they change resolution/width): their branch is folded to 0
        info["kept_zero_blocks"] = [[b for b in k if scores[s][b] == 0.0] for s, k in enumerate(kept)]
        info["removed_blocks"] = [[b for b in range(len(row)) if b not in k] for row, k in zip(scores, kept)]
        return PruneResult(
            arch=new, base=arch, method=self.name, state_dict=inherit_blocks(model, arch, kept),
            keep=None, masks=None, ratio=n / len(order) if order else 0.0,
            threshold=None if threshold is None else float(threshold), info=info,
        )


__all__ = ["BlockSparsity", "SparseStructureSelection", "attach_block_scales", "block_scores", "depth_pruned",
           "inherit_blocks", "removable_blocks", "soft_threshold"]
