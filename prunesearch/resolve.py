"""The one resolver: (model, dataset, dataset options) -> the base Architecture to prune.

Every command, pipeline and study asks this question here. The dataset's shape (classes,
channels, image side) comes from what its loader declared when it registered, so nothing is
loaded to learn three integers; names are normalised once (``CIFAR10`` is ``cifar10``).
"""

from __future__ import annotations

from typing import Any

from .arch import Architecture, resolve_model, unpruned
from .errors import ConfigError


def resolve_target(model: str, dataset: str, dataset_options: dict[str, Any] | None = None,
                   head: str | None = None) -> Architecture:
    """``model`` (a family name like ``resnet56`` or a published variant like ``resnet56-b``)
    shaped for ``dataset``: the variant itself, when one is named."""
    from .data.dataset import dataset_info

    info = dataset_info(dataset, dataset_options)
    try:
        return resolve_model(model, num_classes=info.num_classes, in_channels=info.in_channels,
                             input_size=info.image_size, head=head)
    except ConfigError as e:
        if str(e).startswith(("unknown model", f"{model}")):
            raise
        raise ConfigError(f"{model} on {info.name}: {e}") from None


def resolve_base(model: str, dataset: str, dataset_options: dict[str, Any] | None = None,
                 head: str | None = None) -> Architecture:
    """The unpruned architecture of ``model`` shaped for ``dataset`` (named after ``model``)."""
    return unpruned(resolve_target(model, dataset, dataset_options, head)).replace(name=model.strip().lower())


def plan_base(plan: Any) -> Architecture:
    """The unpruned base of a study or rethink plan (a rethink variant's base model)."""
    if getattr(plan, "kind", "study") == "rethink":
        target = resolve_target(plan.variant or plan.model or "", plan.dataset, plan.dataset_options, plan.head)
        return unpruned(target).replace(name=(plan.model or target.model_name))
    return resolve_base(plan.model, plan.dataset, plan.dataset_options)
