"""The pruning-method contract, its result, and the registry ``METHODS``.

A pruning method is an *architecture generator*: run on a (trained) base model it says which
channels (structured) or weights (unstructured) to keep. From that keep set come

- ``result.arch``: the pruned, physically narrow :class:`~prunesearch.arch.Architecture`
  (for sparse methods: the dense widths plus per-conv ``densities``);
- ``result.state_dict``: the base model's weights sliced to the kept channels, which
  ``build_model(result.arch).load_state_dict(result.state_dict)`` accepts strictly (fine-tuning);
- ``result.keep`` / ``result.masks``: which channels / weights survived, so that patterns and rules
  (``prunesearch.rules``) can be extracted without looking at modules.

Writing a method (issue 4 and 5 methods all follow this)::

    @register
    class MyMethod(PruningMethod):
        name = "mine"
        structured = True

        def regularizer(self, arch, *, budget=None, ratio=None, **options):  # optional: base training
            return None

        def prune(self, model, arch, *, budget=None, ratio=None, data=None, **options):
            check_request(self, arch, budget, ratio)
            scores = [...]                             # one 1-D tensor per slot (None = not prunable)
            return prune_by_scores(self, model, arch, scores, budget=budget, ratio=ratio)

``prune_by_scores`` (in ``prunesearch.prune.channels``) is the shared machinery: one global
threshold over all scored channels (reference semantics), tie groups, the minimum-width guard,
bisection to a parameter budget, keep sets -> widths/selections, and weight inheritance. A method
with a different selection procedure (ThiNet's greedy search, regression) builds its own keep sets
and finishes with ``result_from_keep``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..arch import Architecture, count_macs, count_params
from ..arch.budget import unpruned
from ..errors import ConfigError
from ..registry import Registry

if TYPE_CHECKING:  # torch stays out of the import path of torch-free callers
    import torch
    from torch import nn

    from ..data import Dataset
    from ..train import TrainHook


@dataclass(frozen=True)
class PruneResult:
    """What a pruning method produced.

    - ``arch``: the pruned architecture. Structured: narrow widths (PreResNet/DenseNet also carry
      ``selections``, the kept input-channel indices of each selection slot, ``None`` where the
      selection is the identity/prefix). Unstructured: the base widths plus ``densities``.
    - ``base``: the unpruned architecture the model was built from.
    - ``keep``: structured only; per slot (in ``get_family(f).slots(base)`` order) the sorted kept
      channel indices, in the base model's channel numbering. ``len(keep[i]) == arch.widths[i]``.
    - ``masks``: unstructured only; per conv (``conv_index`` order) a float 0/1 tensor shaped like
      the conv weight. Give them to ``build_model(arch, masks=masks)``.
    - ``state_dict``: inherited weights for ``build_model(arch)`` (strict load). For unstructured
      results the masked weights and their ``weight_mask`` buffers.
    - ``method``: the method's registry name. ``ratio``: the global pruning ratio that was applied
      (fraction of the pooled channels/weights below the threshold: the reference code's
      ``percent``), ``None`` for predefined variants. ``threshold``: the score threshold (keep iff
      score > threshold), ``None`` when not threshold-based.
    - ``info``: method-specific facts (target budget, budget error, guarded slots, variant, ...).
    """

    arch: Architecture
    base: Architecture
    method: str
    state_dict: dict[str, "torch.Tensor"] = field(repr=False)
    keep: tuple[tuple[int, ...], ...] | None = field(default=None, repr=False)
    masks: tuple["torch.Tensor", ...] | None = field(default=None, repr=False)
    ratio: float | None = None
    threshold: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def params(self) -> int:
        return count_params(self.arch)

    @property
    def macs(self) -> int:
        return count_macs(self.arch)

    @property
    def keep_ratios(self) -> tuple[float, ...]:
        """Per slot: kept width / base width (structured); all 1.0 for unstructured results.
        Depth-pruned results (fewer blocks, hence other slots) have no per-slot ratio."""
        if len(self.arch.widths) != len(self.base.widths):
            raise ConfigError(
                f"{self.method} removed blocks ({self.arch.label} has {len(self.arch.widths)} slots, the base "
                f"{len(self.base.widths)}); compare arch.blocks with the base instead of per-slot keep ratios"
            )
        return tuple(w / b for w, b in zip(self.arch.widths, self.base.widths))

    def channel_masks(self) -> list["torch.Tensor"]:
        """Structured results: per slot a bool tensor over the base channels (True = kept)."""
        import torch

        if self.keep is None:
            raise ConfigError(f"{self.method} is unstructured: it has weight masks (result.masks), not channel masks")
        out = []
        for idx, b in zip(self.keep, self.base.widths):
            m = torch.zeros(b, dtype=torch.bool)
            m[list(idx)] = True
            out.append(m)
        return out


class PruningMethod:
    """Base class of every pruning method (one instance per method lives in ``METHODS``).

    Class attributes:

    - ``name``: registry name (``slimming``, ``l1norm``, ``magnitude``, ...).
    - ``structured``: True if the method removes channels (the result is a narrow architecture);
      False if it zeroes single weights (the result carries per-conv densities and masks).
    - ``families``: the model families the method applies to; ``check_request`` raises a
      ConfigError naming an alternative for the others.
    - ``needs_data``: True if ``prune`` reads activations (ThiNet, regression): then ``data`` (a
      :class:`~prunesearch.data.Dataset`) is required.
    - ``prunes``: what is removed: ``channels`` (narrow widths; ``result.keep`` per slot),
      ``weights`` (unstructured; ``result.masks`` per conv, ``arch.densities``) or ``blocks``
      (depth: ``arch.blocks``; ``result.keep`` is ``None``). Patterns/rules read this.

    Methods (``prune`` must be implemented; the others have working defaults):

    - ``regularizer(arch, *, budget=None, ratio=None, **options) -> TrainHook | None``: the hook the
      *base* model must be trained with for this method to work (Network Slimming's L1 penalty on BN
      gammas, soft filter pruning's periodic zeroing, ...). ``None`` = plain training. ``arch`` is
      the base architecture (defaults such as slimming's ``s`` depend on the family). ``budget`` /
      ``ratio`` are the target ``prune`` will get: every method accepts them, most ignore them;
      methods that prune *during* training (soft filter pruning) need them, and then the base must
      be trained once per target.
    - ``prepare(model, arch) -> nn.Module``: called on the freshly built base model before it is
      trained with the regulariser; returns the model to train (default: unchanged). Sparse
      Structure Selection adds one scaling factor per residual block here (the factor must exist
      before the optimiser is created); ``prune`` then accepts the prepared model.
    - ``prune(model, arch, *, budget=None, ratio=None, data=None, **options) -> PruneResult``:
      ``model`` is ``build_model(arch)`` with trained (or any) weights; it is not modified.
      Exactly one way of saying how much to prune, unless the method has predefined variants:

      * ``budget``: a parameter budget (fraction <= 1 of the base model's parameters, or an absolute
        count > 1, as in :func:`prunesearch.arch.resolve_budget`). The method finds its own global
        ratio/threshold by bisection so that ``count_params(result.arch)`` is as close to the budget
        as the granularity allows (one channel, or one tied channel group; one weight for
        unstructured). ``result.info["budget_rel_error"]`` says how close it got.
      * ``ratio``: the method's own global knob with the reference code's semantics (e.g. slimming's
        ``percent``: the fraction of pooled BN channels at or below the threshold).
      * method-specific ``options`` (e.g. ``variant="resnet56-b"`` for l1norm).

    Guarantees every implementation keeps (and the shared contract tests check): ``result.arch``
    is valid for its family; no slot is narrower than ``get_family(f).min_width`` (layer collapse is
    guarded by keeping the top-scored channels); tied slots keep one shared channel set; the widths
    equal what ``keep``/``masks`` imply; ``build_model(result.arch)`` loads ``result.state_dict``
    strictly.

    - ``build_pruned(result, init="inherit" | "scratch", seed=0) -> nn.Module`` and
      ``train_hooks(result) -> list[TrainHook]``: how to train the pruned model (fine-tune from the
      inherited weights, or from scratch), e.g. ``train(method.build_pruned(r, init="scratch", seed=s),
      data, recipe, seed=s, device=d, hooks=method.train_hooks(r))``.
    """

    name: ClassVar[str]
    structured: ClassVar[bool] = True
    prunes: ClassVar[str] = "channels"
    families: ClassVar[tuple[str, ...]] = ("vgg", "resnet", "preresnet", "densenet")
    needs_data: ClassVar[bool] = False

    def regularizer(self, arch: Architecture, *, budget: float | None = None, ratio: float | None = None,
                    **options: Any) -> "TrainHook | None":
        if options:
            raise ConfigError(f"pruning method '{self.name}' takes no regulariser options, got {', '.join(sorted(options))}")
        return None

    def prepare(self, model: "nn.Module", arch: Architecture) -> "nn.Module":
        return model

    def diagnose(self, model: "nn.Module", arch: Architecture, thresholds: dict[str, float] | None = None) -> dict | None:
        """What training with the regulariser did to the method's criterion (e.g. slimming: how many
        BN gammas went to zero), so a caller can tell a real pattern from an untrained one; None for
        methods with nothing to report. ``thresholds``: budget label -> the threshold pruning used."""
        return None

    def prune(
        self,
        model: "nn.Module",
        arch: Architecture,
        *,
        budget: float | None = None,
        ratio: float | None = None,
        data: "Dataset | None" = None,
        **options: Any,
    ) -> PruneResult:
        raise NotImplementedError

    def build_pruned(self, result: PruneResult, *, init: str = "inherit", seed: int = 0) -> "nn.Module":
        """The pruned model, ready to train: ``init="inherit"`` loads ``result.state_dict`` (fine-tuning);
        ``init="scratch"`` is a fresh random init drawn with ``seed`` (Scratch-E / Scratch-B; sparse
        convs use the reference's density-aware init, see ``prunesearch.prune.sparse.init_sparse_``).
        Methods with other inits (lottery's rewind) override this and accept more ``init`` names."""
        import torch

        from ..models import build_model

        if init not in ("inherit", "scratch"):
            raise ConfigError(f"unknown init '{init}' for {self.name}; choose inherit (fine-tune) or scratch")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(result.arch, masks=result.masks)
            if init == "inherit":
                model.load_state_dict(result.state_dict, strict=True)
            elif result.masks is not None:
                from .sparse import init_sparse_

                init_sparse_(model)
        return model

    def train_hooks(self, result: PruneResult) -> list["TrainHook"]:
        """Hooks for training the *pruned* model (fine-tune or scratch): ``MaskHook`` for sparse
        results (keeps pruned weights at zero), none for narrow architectures."""
        if result.masks is None:
            return []
        from .sparse import MaskHook

        return [MaskHook()]

    def __repr__(self) -> str:
        return f"<pruning method {self.name}>"


METHODS: Registry[PruningMethod] = Registry("pruning method")


def register(cls: type[PruningMethod]) -> type[PruningMethod]:
    """Class decorator: register one instance of ``cls`` under ``cls.name``."""
    METHODS.register(cls.name, cls())
    return cls


def get_method(name: str) -> PruningMethod:
    """The registered method ``name`` (ConfigError listing the known ones otherwise)."""
    return METHODS.get(name)


def regularizer_options(method: "PruningMethod", options: dict[str, Any] | None = None, *, budget: Any = None,
                        ratio: float | None = None, lr_sum: float | None = None) -> dict[str, Any]:
    """The keyword options for ``method.regularizer``: the caller's ``options``, plus the prune target
    (``budget``/``ratio``, for methods that prune while training, e.g. soft filter pruning) and the
    run's learning-rate sum (for strengths that scale with the run, e.g. slimming's ``s="auto"``),
    each only where the method's regulariser takes it and the caller did not set it."""
    import inspect

    kw = dict(options or {})
    params = inspect.signature(method.regularizer).parameters
    for key, value in (("budget", budget), ("ratio", ratio), ("lr_sum", lr_sum)):
        if value is not None and key in params and key not in kw:
            kw[key] = value
    return kw


def check_request(
    method: PruningMethod,
    arch: Architecture,
    budget: float | None,
    ratio: float | None,
    *,
    allow_neither: bool = False,
    data: Any = None,
) -> None:
    """Validate the common arguments of ``prune`` (raises ConfigError saying what to do)."""
    if arch.family not in method.families:
        raise ConfigError(
            f"pruning method '{method.name}' does not apply to {arch.family} models "
            f"(it supports {', '.join(method.families)}); use 'slimming' or 'magnitude' for {arch.family}"
        )
    if arch.densities is not None:
        raise ConfigError(f"{arch.label} is already sparse; prune the dense base model")
    if arch != unpruned(arch):
        raise ConfigError(
            f"prune expects the unpruned {arch.model_name} architecture the model was built from; got pruned widths "
            f"{list(arch.widths)[:6]}...; prune the base model (prunesearch.arch.resolve_model('{arch.model_name}'))"
        )
    if budget is not None and ratio is not None:
        raise ConfigError(f"give {method.name} either budget= or ratio=, not both (got {budget!r} and {ratio!r})")
    if budget is None and ratio is None and not allow_neither:
        raise ConfigError(f"{method.name} needs budget= (fraction or parameter count) or ratio= (global prune ratio)")
    if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1):
        raise ConfigError(f"ratio is the fraction pruned and must be in [0, 1), got {ratio!r}")
    if method.needs_data and data is None:
        raise ConfigError(f"{method.name} reads activations: pass data= (a prunesearch.data.Dataset)")


def check_model(model: "nn.Module", arch: Architecture) -> None:
    """Raise ConfigError unless ``model`` has the state-dict layout of ``build_model(arch)``."""
    import torch

    from ..models import build_model

    with torch.device("meta"):  # shapes only: no memory, no init cost
        want = {k: tuple(v.shape) for k, v in build_model(arch).state_dict().items()}
    have = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if want != have:
        diff = sorted(set(want.items()) ^ set(have.items()))[:2]
        raise ConfigError(
            f"the model does not match {arch.label} (first differences: {diff}); "
            f"pass the model built by prunesearch.models.build_model(arch) for the same arch"
        )


