"""Architectures as exact, torch-free data: families, counts, the budget solver, formats."""

from .architecture import Architecture
from .budget import (
    BUDGET_KINDS,
    CELL_TOLERANCE,
    SOLVER_AIM,
    TOLERANCE,
    Budget,
    BudgetFit,
    check_fit,
    count,
    fit_budget,
    min_params,
    resolve_budget,
    scale_densities_to_budget,
    scale_to_budget,
    unpruned,
)
from .counting import conv_weight_counts, count_flops, count_macs, count_params, count_params_macs, kept_weights
from .families import FAMILIES, Family, Layer, Slot, get_family
from .io import (
    NAMED_VARIANTS,
    atomic_write_text,
    from_reference_cfg,
    known_model_names,
    load_architecture,
    parse_cfg_text,
    resolve_model,
    save_architecture,
)

__all__ = [
    "BUDGET_KINDS", "CELL_TOLERANCE", "SOLVER_AIM", "TOLERANCE", "Budget", "check_fit", "count",
    "Architecture", "BudgetFit", "FAMILIES", "Family", "Layer", "NAMED_VARIANTS", "Slot",
    "atomic_write_text", "conv_weight_counts", "count_flops", "count_macs", "count_params",
    "count_params_macs", "fit_budget", "from_reference_cfg", "get_family", "kept_weights",
    "known_model_names", "load_architecture", "min_params", "parse_cfg_text", "resolve_budget",
    "resolve_model", "save_architecture", "scale_densities_to_budget", "scale_to_budget", "unpruned",
]
