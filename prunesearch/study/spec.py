"""Specs: ``search_spaces/*.yaml`` -> a validated, immutable plan. One reader for both kinds:

- ``kind: study`` (the default): a budgeted comparison, generators x budgets x seeds, trained from
  scratch -> :class:`Plan`;
- ``kind: rethink``: the paper's fine-tune vs Scratch-E vs Scratch-B comparison -> :class:`RethinkPlan`.

Both run as Optuna studies (``prunesearch study`` / ``prunesearch rethink``), so their results are
trial records in one storage. Torch-free and Optuna-free. The study format (every key optional
unless marked)::

    kind: study
    name: demo-resnet20-mnist5k     # study name (default: the file's stem); smoke runs add "-smoke"
    description: free text
    model: resnet20                  # REQUIRED: any name prunesearch.arch.resolve_model knows
    dataset: mnist5k                 # REQUIRED: any name prunesearch.data.load_dataset knows
    dataset_options: {}              # loader options, e.g. {image_size: 8} for synthetic
    val_fraction: 0.1                # validation split carved from the training set (choices use it)
    data_dir: ~/data                 # where the dataset files live (default: $PRUNESEARCH_DATA_DIR)
    recipe: fast                     # a built-in recipe name or YAML path, or a mapping:
    #  recipe: {name: fast, overrides: {epochs: 10}}
    budgets: [0.25, 0.5]             # REQUIRED: fraction (<= 1) of the base model, or counts (> 1)
    budget_kind: params              # params (default) or macs: what the budgets count
    seeds: 5                         # an int n (= seeds 0..n-1) or a list of ints; default 5
    generators:                      # REQUIRED: arm -> options (or a list of names); an arm is a
      uniform: {}                    #   generator name, optionally labelled: transferred@l1norm
      random: {}
      searched: {trials: 8, n_startup_trials: 4, min_multiplier: 0.25}
      guided: {rule: ../runs/discover-x/rule.yaml}   # relative to this file's folder
    settings:                        # how workers run the study
      heartbeat_interval: 10         # seconds between a running trial's heartbeats
      grace_period: 60               # seconds without a heartbeat before a trial is re-run
      max_retries: 3                 # re-runs of a trial whose worker died or was interrupted
      sampler_seed: 0                # TPE seed base for the searched arm
      keep_checkpoints: false        # keep a completed trial's last.pt (default: deleted when done)
    smoke:                           # --smoke: any of the keys above (not name/smoke); each replaces
      dataset: digits                # the top-level value, except recipe.overrides, which merge
      recipe: {overrides: {epochs: 1}}
      budgets: [0.5]
      seeds: [0]

Relative file paths in generator options (``rule``, ``run``, ``architecture`` and the files of
``architectures``) resolve against the folder of the spec file, not the current directory, so a
spec runs the same from anywhere (``~`` and absolute paths are kept). Recipe paths too.

The ``searched`` options are the study's own: ``trials`` (per budget and seed), ``n_startup_trials``
(random trials before TPE), ``min_multiplier`` (lower end of each per-stage multiplier, in (0, 1]).
Every other arm's options go unchanged to ``GENERATORS[name].generate(base, budget, seed, **options)``.

The rethink format is documented at :func:`rethink_plan_from_dict`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..arch.budget import BUDGET_KINDS, Budget
from ..errors import BudgetError, ConfigError, suggest

COMMON_KEYS = ("kind", "name", "description", "model", "dataset", "dataset_options", "val_fraction", "data_dir",
               "recipe", "seeds", "settings", "smoke")
STUDY_KEYS = COMMON_KEYS + ("budgets", "budget_kind", "generators")
RETHINK_KEYS = COMMON_KEYS + ("variant", "head", "method", "method_options", "regularizer_options", "budget",
                              "budget_kind", "ratio", "finetune_epochs", "lottery_lrs", "scratch_b")
TOP_KEYS = STUDY_KEYS  # old name
KINDS = ("study", "rethink")
REQUIRED = ("model", "dataset", "budgets", "generators")
RECIPE_KEYS = ("name", "overrides")
SETTINGS_DEFAULTS: dict[str, Any] = {
    "heartbeat_interval": 10,
    "grace_period": 60,
    "max_retries": 3,
    "sampler_seed": 0,
    "keep_checkpoints": False,
}
DEFAULT_SEEDS = 5  # the paper's: with 5 paired seeds a paired t-test can reach p < 0.05
MAX_SEEDS = 1000
MAX_SEARCHED_TRIALS = 10_000
MAX_SETTING_SECONDS = 86_400
PATH_OPTIONS = ("rule", "run", "architecture")  # generator options that name a file or run dir
SEARCHED = "searched"
SEARCHED_DEFAULTS: dict[str, Any] = {"trials": 4, "n_startup_trials": 4, "min_multiplier": 0.25}
PAPER_EPOCHS, PAPER_FINETUNE_EPOCHS = 160, 40
DEFAULT_LOTTERY_LRS = (0.1, 0.01)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_ARM_RE = re.compile(r"^([a-z_]+)(?:@([A-Za-z0-9._-]{1,40}))?$")


def generator_of(arm: str) -> str:
    """The generator behind an arm label: ``transferred@l1norm`` -> ``transferred``."""
    return arm.split("@", 1)[0]


@dataclass(frozen=True)
class Plan:
    """A validated study spec (the smoke block already applied when ``smoke`` is True)."""

    name: str  # the Optuna study name
    model: str
    dataset: str
    dataset_options: dict[str, Any]
    recipe_name: str
    recipe_overrides: dict[str, Any]
    budgets: tuple[Budget, ...]
    seeds: tuple[int, ...]
    generators: dict[str, dict[str, Any]]  # arm label -> options, in spec order
    settings: dict[str, Any]
    data_dir: str | None = None
    description: str = ""
    smoke: bool = False
    source: str | None = None  # the spec file
    val_fraction: float = 0.1
    kind: str = "study"

    @property
    def budget_kind(self) -> str:
        return self.budgets[0].kind if self.budgets else "params"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "name": self.name, "model": self.model, "dataset": self.dataset,
            "dataset_options": dict(self.dataset_options), "val_fraction": self.val_fraction,
            "recipe": {"name": self.recipe_name, "overrides": dict(self.recipe_overrides)},
            "budgets": [b.value for b in self.budgets], "budget_kind": self.budget_kind, "seeds": list(self.seeds),
            "generators": copy.deepcopy(self.generators), "settings": dict(self.settings),
            "data_dir": self.data_dir, "description": self.description, "smoke": self.smoke,
            "source": self.source,
        }

    def searched_options(self) -> dict[str, Any] | None:
        return self.generators.get(SEARCHED)

    def arm_hash(self, arm: str) -> str:
        """Identity of one arm's plan: model, data (name, options, split), recipe, budget kind and its
        options except the number of searched trials. A changed spec under the same study name plans
        new trials (old results are kept, never overwritten); adding budgets, seeds or searched
        trials adds only the missing ones. Fixed arms' slots also carry the planned arch_id, so an
        edited rule file plans a new trial rather than reporting the old architecture."""
        opts = {k: v for k, v in self.generators[arm].items() if k != "trials"}
        blob = json.dumps(
            [self.model, self.dataset, self.dataset_options, self.val_fraction, self.recipe_name,
             self.recipe_overrides, self.budget_kind, arm, opts],
            sort_keys=True, default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class RethinkPlan:
    """A validated rethink experiment: one model, dataset, pruning method and amount, over seeds.

    ``model`` or ``variant`` names the network (a variant such as ``resnet56-b`` is a predefined
    pruned target: its base model is trained and pruned to exactly those widths). ``budget``
    (fraction <= 1 or a count, of ``budget_kind``), ``ratio`` (the method's own knob) or ``variant``
    says how much to prune; ``method_options`` go to ``method.prune``, ``regularizer_options`` to
    ``method.regularizer``. ``recipe`` + ``recipe_overrides`` is the base / Scratch-E recipe.
    """

    dataset: str
    method: str
    model: str | None = None
    variant: str | None = None
    head: str | None = None
    budget: float | None = None
    budget_kind: str = "params"
    ratio: float | None = None
    seeds: tuple[int, ...] = tuple(range(DEFAULT_SEEDS))
    recipe: str = "paper"
    recipe_overrides: dict[str, Any] = field(default_factory=dict)
    finetune_epochs: int | None = None
    lottery_lrs: tuple[float, ...] = DEFAULT_LOTTERY_LRS
    scratch_b: str = "reference"
    method_options: dict[str, Any] = field(default_factory=dict)
    regularizer_options: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    val_fraction: float = 0.1
    data_dir: str | None = None
    name: str | None = None
    description: str = ""
    smoke: bool = False
    source: str | None = None
    settings: dict[str, Any] = field(default_factory=lambda: dict(SETTINGS_DEFAULTS))
    kind: str = "rethink"

    @property
    def label(self) -> str:
        """The model as the table shows it: the variant name, else the model name."""
        return (self.variant or self.model or "?").lower()

    @property
    def run_name(self) -> str:
        raw = self.name or f"{self.method}-{self.label}-{self.dataset}"
        return re.sub(r"[^A-Za-z0-9._-]+", "_", raw).strip("._-")[:100] or "rethink"

    def to_dict(self) -> dict[str, Any]:
        import dataclasses

        d = dataclasses.asdict(self)
        d["seeds"] = list(self.seeds)
        d["lottery_lrs"] = list(self.lottery_lrs)
        return d

    def identity(self) -> dict[str, Any]:
        """What a resumed run must share with the study it resumes (seeds may grow)."""
        d = self.to_dict()
        for k in ("seeds", "description", "source", "data_dir", "name", "settings"):
            d.pop(k, None)
        return d

    def replace(self, **changes: Any) -> "RethinkPlan":
        import dataclasses

        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------------------------
def load_spec(path: str | os.PathLike, smoke: bool = False, kind: str | None = None) -> "Plan | RethinkPlan":
    """Read and validate a spec of either kind; ``kind`` (``study``/``rethink``), when given, is the
    kind the caller runs: a spec of the other kind is a one-line error naming the right command."""
    from ..fileio import read_yaml_spec

    p = Path(path)
    where = str(p)
    data = read_yaml_spec(p, f"{kind or 'study'} spec", "search_spaces/demo.yaml")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: a spec must be a mapping of keys (model, dataset, ...), saw {type(data).__name__}")
    found = data.get("kind", "study")
    if found not in KINDS:
        raise ConfigError(f"{where}: 'kind' must be one of {', '.join(KINDS)}, saw {found!r}")
    if kind is not None and found != kind:
        raise ConfigError(f"{where}: this is a {found} spec (kind: {found}); run it with 'prunesearch {found}'")
    if found == "rethink":
        return rethink_plan_from_dict(data, where=where, smoke=smoke, source=where, base_dir=p.resolve().parent,
                                      default_name=p.stem)
    return plan_from_dict(data, where=where, default_name=p.stem, smoke=smoke, source=where,
                          base_dir=p.resolve().parent)


def _apply_smoke(data: Mapping, keys: tuple[str, ...], where: str, smoke: bool, default_recipe: str) -> dict[str, Any]:
    """The spec with its ``smoke:`` block applied (when ``smoke``): each key replaces the top-level
    value, except recipe.overrides, which merge; a new dataset drops the old dataset_options."""
    d = dict(data)
    d.pop("kind", None)
    smoke_block = d.pop("smoke", None)
    if smoke_block is not None and not isinstance(smoke_block, Mapping):
        raise ConfigError(f"{where}: 'smoke' must be a mapping of overrides, saw {type(smoke_block).__name__}")
    if not smoke:
        return d
    if smoke_block is None:
        raise ConfigError(f"{where}: --smoke needs a 'smoke:' block (e.g. smoke: {{dataset: digits, "
                          "recipe: {overrides: {epochs: 1}}}}); add one")
    _check_keys(smoke_block, tuple(k for k in keys if k not in ("kind", "name", "smoke")), where, "smoke.")
    base_recipe = _recipe(d.get("recipe", default_recipe), where, "recipe")
    for k, v in smoke_block.items():
        if k == "recipe":
            r = _recipe(v, where, "smoke.recipe", allow_missing_name=True)
            d["recipe"] = {"name": r[0] or base_recipe[0], "overrides": {**base_recipe[1], **r[1]}}
        else:
            d[k] = v
    if "dataset" in smoke_block and "dataset_options" not in smoke_block:
        d.pop("dataset_options", None)  # the full run's loader options belong to its dataset
    return d


def _name(d: Mapping, where: str, default_name: str, smoke: bool) -> str:
    name = d.get("name", default_name)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(f"{where}: 'name' must be letters, digits, '.', '_' or '-' (at most 100), saw {name!r}")
    return f"{name}-smoke" if smoke else name


def _common(d: Mapping, where: str, base_dir: str | os.PathLike | None) -> dict[str, Any]:
    """Keys both kinds share, validated."""
    from ..data.dataset import check_val_fraction

    dataset_options = d.get("dataset_options") or {}
    if not isinstance(dataset_options, Mapping):
        raise ConfigError(f"{where}: 'dataset_options' must be a mapping (e.g. {{image_size: 8}}), "
                          f"saw {type(dataset_options).__name__}")
    data_dir = d.get("data_dir")
    if data_dir is not None:
        data_dir = _str(data_dir, where, "data_dir")
    description = d.get("description", "") or ""
    if not isinstance(description, str):
        raise ConfigError(f"{where}: 'description' must be text, saw {type(description).__name__}")
    try:
        val_fraction = check_val_fraction(d.get("val_fraction", 0.1))
    except ConfigError as e:
        raise ConfigError(f"{where}: 'val_fraction': {e}") from None
    return {"dataset_options": {str(k): v for k, v in dataset_options.items()}, "data_dir": data_dir,
            "description": description, "val_fraction": val_fraction,
            "settings": _settings(d.get("settings") or {}, where)}


def plan_from_dict(
    data: Any, where: str = "spec", default_name: str = "study", smoke: bool = False, source: str | None = None,
    base_dir: str | os.PathLike | None = None,
) -> Plan:
    """Validate a study spec mapping. ``base_dir``: the folder relative file options resolve against
    (``load_spec`` passes the spec file's folder); None keeps them as given."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: a study spec must be a mapping of keys (model, dataset, budgets, "
                          f"generators, ...), saw {type(data).__name__}")
    _check_keys(data, STUDY_KEYS, where, "")
    kind = data.get("kind", "study")
    if kind != "study":
        raise ConfigError(f"{where}: 'kind: {kind}' is not a study spec; run it with 'prunesearch {kind}'"
                          if isinstance(kind, str) and kind.isidentifier() else
                          f"{where}: 'kind' must be 'study' for 'prunesearch study', saw {kind!r}")
    d = _apply_smoke(data, STUDY_KEYS, where, smoke, "fast")
    for k in REQUIRED:
        if k not in d or d[k] is None:
            raise ConfigError(f"{where}: missing required key '{k}'; see search_spaces/README.md for the format")
    name = _name(d, where, default_name, smoke)
    model = _str(d["model"], where, "model")
    dataset = _dataset(d["dataset"], where)
    common = _common(d, where, base_dir)
    recipe_name, overrides = _recipe(d.get("recipe", "fast"), where, "recipe", base_dir=base_dir)
    _check_recipe(recipe_name or "fast", overrides, where)
    kind_b = _budget_kind(d.get("budget_kind", "params"), where)
    budgets = _budgets(d["budgets"], where, kind_b)
    seeds = _seeds(d.get("seeds", DEFAULT_SEEDS), where)
    generators = _generators(d["generators"], where, base_dir)
    return Plan(
        name=name, model=model, dataset=dataset, dataset_options=common["dataset_options"],
        recipe_name=recipe_name or "fast", recipe_overrides=overrides, budgets=budgets, seeds=seeds,
        generators=generators, settings=common["settings"], data_dir=common["data_dir"],
        description=common["description"], smoke=smoke, source=source, val_fraction=common["val_fraction"],
    )


def rethink_plan_from_dict(data: Any, where: str = "rethink spec", smoke: bool = False, source: str | None = None,
                           require_kind: bool = True, base_dir: str | os.PathLike | None = None,
                           default_name: str | None = None) -> RethinkPlan:
    """Validate a rethink spec mapping. The format (``yaml.safe_load``)::

        kind: rethink                 # REQUIRED in files: marks a rethink experiment
        name: l1norm-resnet56-b       # study name (default: the file's stem); smoke adds "-smoke"
        description: free text
        model: resnet56               # the base model; or
        variant: resnet56-b           # a predefined pruned target (l1norm, thinet, regression)
        head: l1                      # VGG only: slim (one Linear, default) or l1 (Linear-BN-ReLU-Linear)
        dataset: cifar10              # REQUIRED: any prunesearch.data name
        dataset_options: {}           # loader options (e.g. synthetic: n_train, n_test, image_size)
        val_fraction: 0.1             # validation split carved from the training set
        data_dir: ~/data              # where CIFAR lives
        method: l1norm                # REQUIRED: a registered pruning method
        budget: 0.5                   # how much: a budget (fraction <= 1 or a count), or
        budget_kind: params           #   (params or macs)
        ratio: 0.4                    #   the method's own ratio (slimming's percent, ...), or a variant
        method_options: {}            # more keyword options for method.prune
        regularizer_options: {}       # keyword options for method.regularizer (slimming: {s: 1e-4})
        seeds: 5                      # a count (0..n-1) or a list; default 5
        recipe: paper                 # base / Scratch-E recipe: a name or {name: paper, overrides: {...}}
        finetune_epochs: 40           # default: a quarter of the base epochs (40 of 160)
        lottery_lrs: [0.1, 0.01]      # winning ticket vs random init at these rates (mask methods)
        scratch_b: reference          # reference: int(E * FLOPs ratio), no cap; capped: at most 2x
        settings: {...}               # as in study specs (heartbeats, retries)
        smoke: {...}                  # --smoke: any keys above replace the top-level ones
                                      # (recipe.overrides merge)
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: a rethink spec must be a mapping (kind: rethink, model, dataset, method, ...), "
                          f"saw {type(data).__name__}")
    _check_keys(data, RETHINK_KEYS, where, "")
    if require_kind and data.get("kind") != "rethink":
        raise ConfigError(f"{where}: 'kind' must be 'rethink' (this file is a {data.get('kind') or 'study'} spec?); "
                          "add 'kind: rethink' or run it with the command its kind names")
    d = _apply_smoke(data, RETHINK_KEYS, where, smoke, "paper")
    for k in ("dataset", "method"):
        if d.get(k) is None:
            raise ConfigError(f"{where}: missing required key '{k}'; see search_spaces/paper/README.md for the format")
    model = None if d.get("model") is None else _str(d["model"], where, "model")
    variant = None if d.get("variant") is None else _str(d["variant"], where, "variant")
    if model is None and variant is None:
        raise ConfigError(f"{where}: give 'model' (e.g. resnet56) or 'variant' (e.g. resnet56-b)")
    amounts = [k for k in ("budget", "ratio") if d.get(k) is not None]
    if len(amounts) > 1 or (amounts and variant is not None):
        raise ConfigError(f"{where}: give at most one of 'budget', 'ratio' or 'variant' (how much to prune); "
                          f"saw {', '.join(amounts + (['variant'] if variant else []))}")
    kind_b = _budget_kind(d.get("budget_kind", "params"), where)
    budget = None
    if d.get("budget") is not None:
        try:
            budget = Budget.of(d["budget"], kind_b).value
        except BudgetError as e:
            raise ConfigError(f"{where}: 'budget': {e}") from None
    ratio = None
    if d.get("ratio") is not None:
        ratio = d["ratio"]
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
            raise ConfigError(f"{where}: 'ratio' is the fraction pruned, in [0, 1); saw {ratio!r}")
        ratio = float(ratio)
    recipe_name, overrides = _recipe(d.get("recipe", "paper"), where, "recipe", base_dir=base_dir)
    ft = d.get("finetune_epochs")
    if ft is not None and (isinstance(ft, bool) or not isinstance(ft, int) or not 1 <= ft <= 100_000):
        raise ConfigError(f"{where}: 'finetune_epochs' must be an integer in [1, 100000], saw {ft!r}")
    lrs = d.get("lottery_lrs", list(DEFAULT_LOTTERY_LRS))
    if not isinstance(lrs, list) or not lrs or len(lrs) > 20:
        raise ConfigError(f"{where}: 'lottery_lrs' must be a list of up to 20 learning rates like [0.1, 0.01], saw {lrs!r}")
    lrs = tuple(_positive(x, where, "lottery_lrs") for x in lrs)
    scratch_b = d.get("scratch_b", "reference")
    if scratch_b not in ("reference", "capped"):
        raise ConfigError(f"{where}: 'scratch_b' must be reference (CIFAR: no cap) or capped (ImageNet: at most 2x), "
                          f"saw {scratch_b!r}{suggest(str(scratch_b), ('reference', 'capped'))}")
    name = None
    if d.get("name") is not None or default_name is not None:
        name = _name(d, where, default_name or "rethink", smoke)
    common = _common(d, where, base_dir)
    plan = RethinkPlan(
        dataset=_dataset(d["dataset"], where), method=_str(d["method"], where, "method"),
        model=model, variant=variant, head=None if d.get("head") is None else _str(d["head"], where, "head"),
        budget=budget, budget_kind=kind_b, ratio=ratio, seeds=_seeds(d.get("seeds", DEFAULT_SEEDS), where),
        recipe=recipe_name or "paper", recipe_overrides=overrides, finetune_epochs=ft, lottery_lrs=lrs,
        scratch_b=scratch_b, method_options=_mapping(d.get("method_options"), where, "method_options"),
        regularizer_options=_mapping(d.get("regularizer_options"), where, "regularizer_options"),
        dataset_options=common["dataset_options"], val_fraction=common["val_fraction"],
        data_dir=common["data_dir"], name=name, description=common["description"], smoke=smoke, source=source,
        settings=common["settings"],
    )
    check_rethink_plan(plan, where)
    return plan


def check_rethink_plan(plan: RethinkPlan, where: str = "rethink") -> None:
    """Name-level checks that need no data or training: method, model/variant, recipe, amount."""
    import inspect

    from ..arch import NAMED_VARIANTS, resolve_model

    def wrap(key: str, fn: Any) -> Any:
        try:
            return fn()
        except ConfigError as e:
            raise ConfigError(f"{where}: '{key}': {e}") from None

    try:
        from ..prune import get_method
    except ImportError:  # pragma: no cover - the torch-free spec check of a machine without torch
        return
    method = wrap("method", lambda: get_method(plan.method))
    if plan.variant is not None:
        if plan.variant.lower() not in NAMED_VARIANTS:
            raise ConfigError(f"{where}: 'variant': unknown variant '{plan.variant}'"
                              f"{suggest(plan.variant.lower(), NAMED_VARIANTS)}; known: {', '.join(sorted(NAMED_VARIANTS))}")
        if "variant" not in inspect.signature(method.prune).parameters:
            raise ConfigError(f"{where}: 'variant': method {plan.method} has no predefined variants (l1norm, thinet and "
                              "regression do); give a budget or ratio instead")
        v = resolve_model(plan.variant)
        if plan.model is not None and resolve_model(plan.model).model_name != v.model_name:
            raise ConfigError(f"{where}: 'model' {plan.model} does not match variant {plan.variant} (a pruned "
                              f"{v.model_name}); drop 'model' or make it {v.model_name}")
    else:
        wrap("model", lambda: resolve_model(plan.model or "", head=plan.head))
    automatic = "threshold" in inspect.signature(method.prune).parameters  # sss: |factor| threshold
    if plan.budget is None and plan.ratio is None and plan.variant is None and not automatic and not (
            {"target", "threshold", "rate"} & set(plan.method_options)):
        raise ConfigError(f"{where}: say how much {plan.method} prunes: give 'budget' (e.g. 0.5), 'ratio' "
                          "(the method's own) or 'variant' (l1norm, thinet, regression)")
    _check_recipe(plan.recipe, plan.recipe_overrides, where)


# ---------------------------------------------------------------------------------------------
def _check_keys(d: Mapping, known: tuple[str, ...], where: str, prefix: str) -> None:
    for k in d:
        if k not in known:
            raise ConfigError(
                f"{where}: unknown key '{prefix}{k}'{suggest(str(k), known)}; known keys: {', '.join(known)}"
            )


def _str(v: Any, where: str, key: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ConfigError(f"{where}: '{key}' must be a non-empty text value, saw {v!r}")
    if len(v) > 4096:
        raise ConfigError(f"{where}: '{key}' is {len(v)} characters long; at most 4096")
    return v.strip()


def _dataset(v: Any, where: str) -> str:
    """The dataset name as given (stripped); the loaders normalise it (``canonical_dataset``)."""
    return _str(v, where, "dataset")


def _mapping(v: Any, where: str, key: str) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise ConfigError(f"{where}: '{key}' must be a mapping of options, saw {type(v).__name__}")
    return {str(k): val for k, val in v.items()}


def _positive(v: Any, where: str, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ConfigError(f"{where}: '{key}' must be a positive number, saw {v!r}")
    return float(v)


def _recipe(v: Any, where: str, key: str, allow_missing_name: bool = False,
            base_dir: str | os.PathLike | None = None) -> tuple[str | None, dict[str, Any]]:
    if isinstance(v, str):
        return _recipe_name(_str(v, where, key), base_dir), {}
    if not isinstance(v, Mapping):
        raise ConfigError(f"{where}: '{key}' must be a recipe name or a mapping {{name: fast, overrides: "
                          f"{{epochs: 10}}}}, saw {type(v).__name__}")
    _check_keys(v, RECIPE_KEYS, where, f"{key}.")
    name = v.get("name")
    if name is None and not allow_missing_name:
        name = "fast"
    if name is not None:
        name = _recipe_name(_str(name, where, f"{key}.name"), base_dir)
    overrides = v.get("overrides") or {}
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"{where}: '{key}.overrides' must be a mapping of recipe keys, saw {type(overrides).__name__}")
    return name, {str(k): val for k, val in overrides.items()}


def _recipe_name(name: str, base_dir: str | os.PathLike | None) -> str:
    """A recipe file path resolves against the spec's folder, like every other file option."""
    if name.endswith((".yaml", ".yml", ".json")) or os.sep in name:
        return _resolve_path(name, base_dir)
    return name


def _check_recipe(name: str, overrides: dict[str, Any], where: str) -> None:
    """Unknown recipe names and override keys fail at load time, naming the spec file."""
    try:
        from ..train import get_recipe
    except ImportError:  # the training package is optional at spec-load time
        return
    try:
        get_recipe(name, **overrides)
    except ConfigError as e:
        raise ConfigError(f"{where}: 'recipe': {e}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: 'recipe.overrides' has a value of the wrong type ({e})") from None


def _budget_kind(v: Any, where: str) -> str:
    if v not in BUDGET_KINDS:
        raise ConfigError(f"{where}: 'budget_kind' must be one of {', '.join(BUDGET_KINDS)} (params: equal "
                          f"parameter counts; macs: equal compute), saw {v!r}{suggest(str(v), BUDGET_KINDS)}")
    return v


def _budgets(v: Any, where: str, kind: str = "params") -> tuple[Budget, ...]:
    items = v if isinstance(v, list) else [v]
    try:
        return tuple(Budget.parse_list(items, kind, what=f"{where}: 'budgets'"))
    except BudgetError as e:
        raise ConfigError(str(e)) from None


def _seeds(v: Any, where: str) -> tuple[int, ...]:
    if isinstance(v, int) and not isinstance(v, bool):
        if not 1 <= v <= MAX_SEEDS:
            raise ConfigError(f"{where}: 'seeds' as a count must be in [1, {MAX_SEEDS}], saw {v}; or give a list like [0, 1, 2]")
        return tuple(range(v))
    if not isinstance(v, list) or not v:
        raise ConfigError(f"{where}: 'seeds' must be a count (5) or a non-empty list of integers ([0, 1, 2]), saw {v!r}")
    if len(v) > MAX_SEEDS:
        raise ConfigError(f"{where}: 'seeds' lists {len(v)} seeds; at most {MAX_SEEDS}")
    out: list[int] = []
    for s in v:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2**31:
            raise ConfigError(f"{where}: 'seeds' entry {s!r} must be an integer in [0, 2**31)")
        if s in out:
            raise ConfigError(f"{where}: 'seeds' lists {s} twice; remove the duplicate")
        out.append(s)
    return tuple(out)


def _known_generators() -> list[str] | None:
    try:
        from ..generators import GENERATORS
    except ImportError:
        return None
    return sorted(set(GENERATORS.names()) | {SEARCHED})


def _resolve_path(v: Any, base_dir: str | os.PathLike | None) -> Any:
    """A relative path text -> joined onto ``base_dir``; anything else unchanged."""
    if base_dir is None or not isinstance(v, str) or not v.strip():
        return v
    path = os.path.expanduser(v.strip())
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(os.fspath(base_dir), path))


def _generators(v: Any, where: str, base_dir: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    if isinstance(v, list):
        names = [str(n) for n in v]
        if len(set(names)) != len(names):
            raise ConfigError(f"{where}: 'generators' lists an arm twice ({names}); label a second one, e.g. "
                              "transferred@other")
        v = {n: {} for n in names}
    if not isinstance(v, Mapping) or not v:
        raise ConfigError(f"{where}: 'generators' must map generator names to options, e.g. "
                          "{uniform: {}, searched: {trials: 8}}, saw " + repr(v))
    known = _known_generators()
    out: dict[str, dict[str, Any]] = {}
    for arm, opts in v.items():
        arm = str(arm)
        m = _ARM_RE.match(arm)
        gen = generator_of(arm)
        if m is None or (known is not None and gen not in known):
            raise ConfigError(f"{where}: unknown generator 'generators.{arm}'{suggest(gen, known or [])}; "
                              f"known: {', '.join(known or [])} (a second arm of one generator takes a label: "
                              "transferred@other)")
        if gen == SEARCHED and arm != SEARCHED:
            raise ConfigError(f"{where}: 'generators.{arm}': the searched arm cannot be labelled; use one 'searched'")
        if opts is None:
            opts = {}
        if not isinstance(opts, Mapping):
            raise ConfigError(f"{where}: 'generators.{arm}' must be a mapping of options (or {{}}), "
                              f"saw {type(opts).__name__}")
        opts = {str(k): val for k, val in opts.items()}
        for k in PATH_OPTIONS:
            if k in opts:
                opts[k] = _resolve_path(opts[k], base_dir)
        if isinstance(opts.get("architectures"), Mapping):
            opts["architectures"] = {b: _resolve_path(f, base_dir) for b, f in opts["architectures"].items()}
        if gen == SEARCHED:
            opts = _searched(opts, where)
        out[arm] = opts
    return out


def _searched(opts: dict[str, Any], where: str) -> dict[str, Any]:
    _check_keys(opts, tuple(SEARCHED_DEFAULTS), where, "generators.searched.")
    out = dict(SEARCHED_DEFAULTS)
    out.update(opts)
    for k in ("trials", "n_startup_trials"):
        x = out[k]
        lo = 1 if k == "trials" else 0
        if isinstance(x, bool) or not isinstance(x, int) or not lo <= x <= MAX_SEARCHED_TRIALS:
            raise ConfigError(f"{where}: 'generators.searched.{k}' must be an integer in [{lo}, {MAX_SEARCHED_TRIALS}], "
                              f"saw {x!r}")
    m = out["min_multiplier"]
    if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 < m <= 1:
        raise ConfigError(f"{where}: 'generators.searched.min_multiplier' must be in (0, 1], saw {out['min_multiplier']!r}")
    out["min_multiplier"] = float(m)
    return out


def _settings(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, Mapping):
        raise ConfigError(f"{where}: 'settings' must be a mapping, saw {type(v).__name__}")
    _check_keys(v, tuple(SETTINGS_DEFAULTS), where, "settings.")
    out = dict(SETTINGS_DEFAULTS)
    out.update(v)
    for k in ("heartbeat_interval", "grace_period"):
        x = out[k]
        if isinstance(x, bool) or not isinstance(x, int) or not 1 <= x <= MAX_SETTING_SECONDS:
            raise ConfigError(f"{where}: 'settings.{k}' must be a whole number of seconds in [1, {MAX_SETTING_SECONDS}], "
                              f"saw {x!r}")
    if out["grace_period"] <= out["heartbeat_interval"]:
        raise ConfigError(f"{where}: 'settings.grace_period' ({out['grace_period']}) must exceed "
                          f"'settings.heartbeat_interval' ({out['heartbeat_interval']}); use about 3x")
    if not isinstance(out["keep_checkpoints"], bool):
        raise ConfigError(f"{where}: 'settings.keep_checkpoints' must be true or false, saw {out['keep_checkpoints']!r}")
    for k in ("max_retries", "sampler_seed"):
        x = out[k]
        if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x < 2**31:
            raise ConfigError(f"{where}: 'settings.{k}' must be an integer in [0, 2**31), saw {x!r}")
    return out
