"""The ``scratch`` job: build an architecture, train it from scratch, return its metrics."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from typing import Any

from ..fileio import make_private_dir
from .base import Job, JobContext, JobResult, register, train_metrics


def train_candidate(
    arch: Any,
    seed: int,
    dataset: Any,
    recipe: Any,
    device: Any = "auto",
    checkpoint_dir: str | os.PathLike | None = None,
    on_progress: Any = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Train ``arch`` (Architecture or its dict) from scratch on ``dataset`` (Dataset or name) with
    ``recipe`` (Recipe, dict or name) and ``seed``; returns :func:`train_metrics` plus
    ``checkpoint_discarded``.

    ``seed`` seeds the initial weights (torch's RNG before the model is built) and the trainer's
    batch order/augmentation. With ``checkpoint_dir`` an interrupted run resumes from ``last.pt``.
    A checkpoint that cannot be resumed (corrupt, truncated, foreign) is discarded and the run starts
    from scratch (``checkpoint_discarded`` says why). Raises ``TrainingDiverged`` on a NaN/inf loss."""
    import torch

    from ..arch import Architecture
    from ..data import load_dataset
    from ..errors import CheckpointError
    from ..models import build_model
    from ..train import Recipe, get_recipe, train

    if not isinstance(arch, Architecture):
        arch = Architecture.from_dict(arch)
    if isinstance(dataset, str):
        dataset = load_dataset(dataset)
    if isinstance(recipe, Mapping):
        recipe = Recipe.from_dict(dict(recipe))
    elif isinstance(recipe, str):
        recipe = get_recipe(recipe)

    def run():
        torch.manual_seed(int(seed))  # the initial weights: the trainer seeds only its own randomness
        hooks: tuple = ()
        if arch.densities is None:
            model = build_model(arch)
        else:
            # Unstructured sparsity: an Architecture holds per-conv densities, not mask positions, so a
            # scratch trial draws its masks at exactly those densities (seeded), re-initialises the kept
            # weights as the reference does, and keeps the masks fixed while training.
            from ..prune.sparse import MaskHook, init_sparse_

            model = build_model(arch, mask_seed=int(seed))
            init_sparse_(model, torch.Generator().manual_seed(int(seed)))
            hooks = (MaskHook(),)
        return train(model, dataset, recipe, seed=int(seed), device=device, on_progress=on_progress,
                     checkpoint_dir=checkpoint_dir, hooks=hooks, threads=threads)

    discarded = None
    if checkpoint_dir is not None:
        make_private_dir(checkpoint_dir)
    try:
        result = run()
    except CheckpointError as e:
        if checkpoint_dir is None:
            raise
        # a checkpoint left by a killed run that cannot be resumed: discard it, train from scratch
        discarded = str(e)
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
        make_private_dir(checkpoint_dir)
        result = run()
    return {**train_metrics(result), "checkpoint_discarded": discarded}


@register
class Scratch(Job):
    """Train the trial's ``arch`` from scratch with its ``recipe`` and ``seed``."""

    name = "scratch"
    cacheable = True

    def run(self, attrs: Mapping[str, Any], ctx: JobContext) -> JobResult:
        metrics = train_candidate(attrs["arch"], int(attrs["seed"]), ctx.data, attrs["recipe"], ctx.device,
                                  ctx.checkpoint_dir, on_progress=ctx.on_progress, threads=ctx.threads)
        return JobResult(metrics)
