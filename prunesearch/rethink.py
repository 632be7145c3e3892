"""The paper's own comparison (REFERENCE §1, §3): fine-tune vs Scratch-E vs Scratch-B.

One experiment = a model, a dataset, a pruning method and how much to prune. For every seed:

1. **unpruned**: build the base (the method's ``prepare``), save its initialisation, train it with
   the method's regulariser (base recipe, E epochs);
2. prune it (``method.prune``) -> the pruned architecture and its inherited weights;
3. **finetune**: the pruned model from the inherited weights, lr 0.001 constant (the ``finetune``
   recipe), ``finetune_epochs`` (default E/4: 40 of 160 as in the paper);
4. **scratch-e**: the pruned architecture from a fresh random init, E epochs;
5. **scratch-b**: the same for ``scratch_b_epochs(E, MACs_base, MACs_pruned)`` epochs (same compute
   as the base; no cap on CIFAR, ``scratch_b: capped`` for the ImageNet convention);
6. for weight-level (mask) results, e.g. ``magnitude`` and ``lottery``: **winning-ticket-lrX** (the
   surviving weights rewound to the saved initialisation) vs **random-init-lrX**, each at the
   learning rates ``lottery_lrs`` (0.1 and 0.01). At a learning rate other than the base recipe's,
   the base is trained again at that rate from the same initialisation (**unpruned-lrX**) and pruned
   again. At the base recipe's own rate, random-init is by definition the Scratch-E run (same
   architecture, mask, init and recipe), so that record is reused rather than retrained.

Every finished arm is appended at once (atomically) to ``DIR/rethink.jsonl`` as a
:class:`~prunesearch.records.RethinkRecord`; each arm trains with a checkpoint under
``DIR/checkpoints/seedS/ARM``, so re-running the same experiment in the same folder resumes where it
stopped and skips recorded arms. The table (``prunesearch.report``'s rethink tables) goes to
``DIR/rethink.md``; pruned architectures to ``DIR/architectures/``.

Experiment specs (``search_spaces/paper/*.yaml``) hold the same settings as the CLI options; see
:func:`load_rethink_spec` for the format. This module never prints: progress goes to ``on_event``.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, PrunesearchError, suggest
from .records import COMPLETE, FAILED, RethinkRecord

SPEC_KEYS = (
    "kind", "name", "description", "model", "variant", "head", "dataset", "data_dir", "dataset_options",
    "method", "method_options", "regularizer_options", "budget", "ratio", "seeds", "recipe",
    "finetune_epochs", "lottery_lrs", "scratch_b", "smoke",
)
RECIPE_KEYS = ("name", "overrides")
PAPER_EPOCHS, PAPER_FINETUNE_EPOCHS = 160, 40
DEFAULT_LOTTERY_LRS = (0.1, 0.01)
ARMS = ("unpruned", "finetune", "scratch-e", "scratch-b")
JSONL, MARKDOWN = "rethink.jsonl", "rethink.md"
PREFLIGHT_EPOCHS = 5


# ------------------------------------------------------------------------------------------------
# The experiment spec
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RethinkSpec:
    """A validated rethink experiment (from CLI options or a spec file, smoke block applied).

    ``model`` or ``variant`` names the network (a variant such as ``resnet56-b`` is a predefined
    pruned target: its base model is trained and pruned to exactly those widths). ``budget``
    (fraction <= 1 or parameter count), ``ratio`` (the method's own knob) or ``variant`` says how
    much to prune; ``method_options`` go to ``method.prune``, ``regularizer_options`` to
    ``method.regularizer``. ``recipe`` + ``recipe_overrides`` is the base / Scratch-E recipe.
    """

    dataset: str
    method: str
    model: str | None = None
    variant: str | None = None
    head: str | None = None
    budget: float | None = None
    ratio: float | None = None
    seeds: tuple[int, ...] = (0,)
    recipe: str = "paper"
    recipe_overrides: dict[str, Any] = field(default_factory=dict)
    finetune_epochs: int | None = None
    lottery_lrs: tuple[float, ...] = DEFAULT_LOTTERY_LRS
    scratch_b: str = "reference"
    method_options: dict[str, Any] = field(default_factory=dict)
    regularizer_options: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    data_dir: str | None = None
    name: str | None = None
    description: str = ""
    smoke: bool = False
    source: str | None = None

    @property
    def label(self) -> str:
        """The model as the table shows it: the variant name, else the model name."""
        return (self.variant or self.model or "?").lower()

    @property
    def run_name(self) -> str:
        return self.name or f"{self.method}-{self.label}-{self.dataset.replace(':', '_').replace('/', '_')}"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["seeds"] = list(self.seeds)
        d["lottery_lrs"] = list(self.lottery_lrs)
        return d

    def identity(self) -> dict[str, Any]:
        """What a resumed run must share with the folder it resumes (seeds may grow)."""
        d = self.to_dict()
        for k in ("seeds", "description", "source", "data_dir", "name"):
            d.pop(k, None)
        return d

    def replace(self, **changes: Any) -> "RethinkSpec":
        return dataclasses.replace(self, **changes)


def _where_key(where: str, key: str) -> str:
    return f"{where}: '{key}'"


def _check_keys(d: Mapping, known: tuple[str, ...], where: str, prefix: str = "") -> None:
    for k in d:
        if k not in known:
            raise ConfigError(f"{where}: unknown key '{prefix}{k}'{suggest(str(k), known)}; known keys: {', '.join(known)}")


def _text(v: Any, where: str, key: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ConfigError(f"{_where_key(where, key)} must be a non-empty text value, saw {v!r}")
    return v.strip()


def _mapping(v: Any, where: str, key: str) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise ConfigError(f"{_where_key(where, key)} must be a mapping of options, saw {type(v).__name__}")
    return {str(k): val for k, val in v.items()}


def _positive(v: Any, where: str, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v <= 0:
        raise ConfigError(f"{_where_key(where, key)} must be a positive number, saw {v!r}")
    return float(v)


def _recipe(v: Any, where: str, key: str = "recipe") -> tuple[str | None, dict[str, Any]]:
    if isinstance(v, str):
        return _text(v, where, key), {}
    if not isinstance(v, Mapping):
        raise ConfigError(f"{_where_key(where, key)} must be a recipe name or a mapping {{name: paper, overrides: "
                          f"{{epochs: 160}}}}, saw {type(v).__name__}")
    _check_keys(v, RECIPE_KEYS, where, f"{key}.")
    name = None if v.get("name") is None else _text(v["name"], where, f"{key}.name")
    return name, _mapping(v.get("overrides"), where, f"{key}.overrides")


def _seeds(v: Any, where: str) -> tuple[int, ...]:
    if isinstance(v, int) and not isinstance(v, bool):
        if v < 1:
            raise ConfigError(f"{where}: 'seeds' as a count must be >= 1, saw {v}; or give a list like [0, 1, 2]")
        return tuple(range(v))
    if not isinstance(v, list) or not v or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in v):
        raise ConfigError(f"{where}: 'seeds' must be a count (5) or a list of non-negative integers ([0, 1]), saw {v!r}")
    if len(set(v)) != len(v):
        raise ConfigError(f"{where}: 'seeds' lists a seed twice ({v}); remove the duplicate")
    return tuple(v)


def spec_from_dict(data: Any, where: str = "rethink spec", smoke: bool = False, source: str | None = None,
                   require_kind: bool = True) -> RethinkSpec:
    """Validate a rethink spec mapping (one-line ConfigErrors that name ``where`` and the key)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: a rethink spec must be a mapping (kind: rethink, model, dataset, method, ...), "
                          f"saw {type(data).__name__}")
    _check_keys(data, SPEC_KEYS, where)
    d = dict(data)
    if require_kind and d.get("kind") != "rethink":
        raise ConfigError(f"{where}: 'kind' must be 'rethink' (this file is a {d.get('kind') or 'study'} spec?); "
                          "add 'kind: rethink' or run it with the command its kind names")
    d.pop("kind", None)
    smoke_block = d.pop("smoke", None)
    if smoke_block is not None and not isinstance(smoke_block, Mapping):
        raise ConfigError(f"{where}: 'smoke' must be a mapping of overrides, saw {type(smoke_block).__name__}")
    if smoke:
        if smoke_block is None:
            raise ConfigError(f"{where}: --smoke needs a 'smoke:' block (e.g. smoke: {{dataset: synthetic, seeds: 1, "
                              "recipe: {overrides: {epochs: 1}}}}); add one")
        _check_keys(smoke_block, tuple(k for k in SPEC_KEYS if k not in ("kind", "smoke")), where, "smoke.")
        base_name, base_over = _recipe(d.get("recipe", "paper"), where)
        for k, v in smoke_block.items():
            if k == "recipe":  # recipe overrides merge; everything else replaces
                name, over = _recipe(v, where, "smoke.recipe")
                d["recipe"] = {"name": name or base_name, "overrides": {**base_over, **over}}
            else:
                d[k] = v

    for k in ("dataset", "method"):
        if d.get(k) is None:
            raise ConfigError(f"{where}: missing required key '{k}'; see search_spaces/paper/README.md for the format")
    model = None if d.get("model") is None else _text(d["model"], where, "model")
    variant = None if d.get("variant") is None else _text(d["variant"], where, "variant")
    if model is None and variant is None:
        raise ConfigError(f"{where}: give 'model' (e.g. resnet56) or 'variant' (e.g. resnet56-b)")
    amounts = [k for k in ("budget", "ratio") if d.get(k) is not None]
    if len(amounts) > 1 or (amounts and variant is not None):
        raise ConfigError(f"{where}: give at most one of 'budget', 'ratio' or 'variant' (how much to prune); "
                          f"saw {', '.join(amounts + (['variant'] if variant else []))}")
    budget = None if d.get("budget") is None else _positive(d["budget"], where, "budget")
    ratio = None
    if d.get("ratio") is not None:
        ratio = d["ratio"]
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
            raise ConfigError(f"{where}: 'ratio' is the fraction pruned, in [0, 1); saw {ratio!r}")
        ratio = float(ratio)
    recipe_name, overrides = _recipe(d.get("recipe", "paper"), where)
    ft = d.get("finetune_epochs")
    if ft is not None and (isinstance(ft, bool) or not isinstance(ft, int) or ft < 1):
        raise ConfigError(f"{where}: 'finetune_epochs' must be an integer >= 1, saw {ft!r}")
    lrs = d.get("lottery_lrs", list(DEFAULT_LOTTERY_LRS))
    if not isinstance(lrs, list) or not lrs:
        raise ConfigError(f"{where}: 'lottery_lrs' must be a list of learning rates like [0.1, 0.01], saw {lrs!r}")
    lrs = tuple(_positive(x, where, "lottery_lrs") for x in lrs)
    scratch_b = d.get("scratch_b", "reference")
    if scratch_b not in ("reference", "capped"):
        raise ConfigError(f"{where}: 'scratch_b' must be reference (CIFAR: no cap) or capped (ImageNet: at most 2x), "
                          f"saw {scratch_b!r}{suggest(str(scratch_b), ('reference', 'capped'))}")
    name = d.get("name")
    if name is not None:
        name = _text(name, where, "name") + ("-smoke" if smoke else "")
    description = d.get("description") or ""
    if not isinstance(description, str):
        raise ConfigError(f"{where}: 'description' must be text, saw {type(description).__name__}")
    spec = RethinkSpec(
        dataset=_text(d["dataset"], where, "dataset"), method=_text(d["method"], where, "method"),
        model=model, variant=variant, head=None if d.get("head") is None else _text(d["head"], where, "head"),
        budget=budget, ratio=ratio, seeds=_seeds(d.get("seeds", 1), where), recipe=recipe_name or "paper",
        recipe_overrides=overrides, finetune_epochs=ft, lottery_lrs=lrs, scratch_b=scratch_b,
        method_options=_mapping(d.get("method_options"), where, "method_options"),
        regularizer_options=_mapping(d.get("regularizer_options"), where, "regularizer_options"),
        dataset_options=_mapping(d.get("dataset_options"), where, "dataset_options"),
        data_dir=None if d.get("data_dir") is None else _text(d["data_dir"], where, "data_dir"),
        name=name, description=description, smoke=smoke, source=source,
    )
    check_spec(spec, where)
    return spec


def check_spec(spec: RethinkSpec, where: str = "rethink") -> None:
    """Name-level checks that need no data or training: method, model/variant, recipe, options."""
    from .arch import resolve_model
    from .arch.io import NAMED_VARIANTS
    from .prune import get_method
    from .train import get_recipe

    def wrap(key: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except ConfigError as e:
            raise ConfigError(f"{where}: '{key}': {e}") from None

    method = wrap("method", lambda: get_method(spec.method))
    if spec.variant is not None:
        if spec.variant.lower() not in NAMED_VARIANTS:
            raise ConfigError(f"{where}: 'variant': unknown variant '{spec.variant}'{suggest(spec.variant.lower(), NAMED_VARIANTS)}; "
                              f"known: {', '.join(sorted(NAMED_VARIANTS))}")
        if "variant" not in inspect.signature(method.prune).parameters:
            raise ConfigError(f"{where}: 'variant': method {spec.method} has no predefined variants (l1norm, thinet and "
                              "regression do); give a budget or ratio instead")
        v = resolve_model(spec.variant)
        if spec.model is not None and resolve_model(spec.model).model_name != v.model_name:
            raise ConfigError(f"{where}: 'model' {spec.model} does not match variant {spec.variant} (a pruned "
                              f"{v.model_name}); drop 'model' or make it {v.model_name}")
    else:
        wrap("model", lambda: resolve_model(spec.model or "", head=spec.head))  # type: ignore[arg-type]
    automatic = "threshold" in inspect.signature(method.prune).parameters  # sss: |factor| threshold
    if spec.budget is None and spec.ratio is None and spec.variant is None and not automatic and not (
            {"target", "threshold"} & set(spec.method_options)):
        raise ConfigError(f"{where}: say how much {spec.method} prunes: give 'budget' (e.g. 0.5), 'ratio' "
                          "(the method's own) or 'variant' (l1norm, thinet, regression)")
    wrap("recipe", lambda: get_recipe(spec.recipe, **spec.recipe_overrides))


def load_rethink_spec(path: str | os.PathLike, smoke: bool = False) -> RethinkSpec:
    """Read a rethink experiment spec (YAML, ``yaml.safe_load``). The format::

        kind: rethink                 # REQUIRED: marks a rethink experiment (not a study spec)
        name: l1norm-resnet56-b       # run name (default: method-model-dataset); smoke adds "-smoke"
        description: free text
        model: resnet56               # the base model; or
        variant: resnet56-b           # a predefined pruned target (l1norm, thinet, regression)
        head: l1                      # VGG only: slim (one Linear, default) or l1 (Linear-BN-ReLU-Linear)
        dataset: cifar10              # REQUIRED: any prunesearch.data name
        data_dir: ~/data              # where CIFAR lives
        dataset_options: {}           # loader options (e.g. synthetic: n_train, n_test, image_size)
        method: l1norm                # REQUIRED: a registered pruning method
        budget: 0.5                   # how much: a parameter budget (fraction <= 1 or a count), or
        ratio: 0.4                    #   the method's own ratio (slimming's percent, ...), or a variant
        method_options: {}            # more keyword options for method.prune
        regularizer_options: {}       # keyword options for method.regularizer (slimming: {s: 1e-4})
        seeds: 5                      # a count (0..n-1) or a list
        recipe: paper                 # base / Scratch-E recipe: a name or {name: paper, overrides: {...}}
        finetune_epochs: 40           # default: a quarter of the base epochs (40 of 160)
        lottery_lrs: [0.1, 0.01]      # winning ticket vs random init at these rates (mask methods)
        scratch_b: reference          # reference: int(E * FLOPs ratio), no cap; capped: at most 2x
        smoke: {...}                  # --smoke: any keys above replace the top-level ones
                                      # (recipe.overrides merge)
    """
    from .fileio import read_yaml_spec

    p = Path(path)
    where = str(p)
    data = read_yaml_spec(p, "rethink spec", "search_spaces/paper/l1norm-resnet56-b.yaml")
    spec = spec_from_dict(data, where=where, smoke=smoke, source=where)
    return spec if spec.name else spec.replace(name=p.stem + ("-smoke" if smoke else ""))


# ------------------------------------------------------------------------------------------------
# Running it
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RethinkEvent:
    """Progress of a run. ``kind``: ``arm-start`` (``epochs`` planned), ``progress`` (``progress`` is
    the trainer's ProgressEvent), ``arm-end`` (``record``), ``pruned`` (``message`` describes the
    result), ``skip`` (an arm already recorded in the run folder)."""

    kind: str
    arm: str = ""
    seed: int = 0
    epochs: int = 0
    progress: Any = None
    record: RethinkRecord | None = None
    message: str = ""


@dataclass
class RethinkRun:
    spec: RethinkSpec
    out_dir: Path
    records: list[RethinkRecord]
    tables: list[Any]  # prunesearch.report.TextTable
    files: dict[str, Path]


def append_record(path: Path, record: RethinkRecord) -> None:
    """Append one record as a JSON line, atomically (the whole file is rewritten to a temp file and
    renamed over the old one, so a crash leaves either the old or the new file, never half a line)."""
    from .arch import atomic_write_text

    old = path.read_text() if path.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    atomic_write_text(path, old + json.dumps(record.to_dict(), sort_keys=True) + "\n")


def lr_tag(lr: float) -> str:
    return f"lr{lr:g}"


def finetune_epochs_for(spec: RethinkSpec, base_epochs: int) -> int:
    if spec.finetune_epochs is not None:
        return spec.finetune_epochs
    return max(1, int(round(base_epochs * PAPER_FINETUNE_EPOCHS / PAPER_EPOCHS)))


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    params = inspect.signature(fn).parameters
    return name in params


def run_rethink(
    spec: RethinkSpec,
    out_dir: str | os.PathLike,
    *,
    device: str = "auto",
    threads: int | None = None,
    on_event: Callable[[RethinkEvent], None] | None = None,
    preflight: bool | None = None,
) -> RethinkRun:
    """Run (or resume) the experiment in ``out_dir``; returns its records, tables and files.

    ``preflight``: prune an untrained base once before any training, so that a bad budget or option
    fails in seconds instead of after the base has trained (default: when the base trains for at
    least ``PREFLIGHT_EPOCHS`` epochs; for shorter runs the real prune fails just as early)."""
    import torch

    from .arch import count_macs, count_params, resolve_model, save_architecture, unpruned
    from .data import load_dataset
    from .models import build_model
    from .prune import get_method
    from .prune.lottery import rewind
    from .train import get_recipe, resolve_device, scratch_b_epochs, train

    emit = on_event or (lambda e: None)
    out = Path(out_dir)
    check_spec(spec, spec.source or "rethink")
    dev = resolve_device(device)
    method = get_method(spec.method)
    data = load_dataset(spec.dataset, data_dir=spec.data_dir, **spec.dataset_options)
    fit = dict(num_classes=data.num_classes, in_channels=data.in_channels, input_size=data.image_size)
    if spec.variant is not None:
        variant = resolve_model(spec.variant, **fit)
        base_arch = unpruned(variant)
    else:
        base_arch = resolve_model(spec.model, head=spec.head, **fit)  # type: ignore[arg-type]
    base_recipe = get_recipe(spec.recipe, **spec.recipe_overrides)
    if base_recipe.mode != "scratch-e":
        base_recipe = base_recipe.replace(mode="scratch-e")
    E = base_recipe.epochs
    ft_template = get_recipe("finetune")
    ft_recipe = base_recipe.replace(name="finetune", epochs=finetune_epochs_for(spec, E), lr=ft_template.lr,
                                    schedule=ft_template.schedule, mode="finetune")
    base_params, base_macs = count_params(base_arch), count_macs(base_arch)

    # The run folder: one experiment per folder (resuming it must not mix two experiments).
    try:
        out.mkdir(parents=True, exist_ok=True, mode=0o700)  # run dirs are private (as a study's)
    except OSError as e:
        raise ConfigError(f"run dir {out} cannot be created ({e.strerror or e}); give --out a writable directory") from None
    spec_path = out / "spec.json"
    if spec_path.exists():
        try:
            old = json.loads(spec_path.read_text())
        except (OSError, ValueError):
            old = None
        if old is not None and old.get("identity") != json.loads(json.dumps(spec.identity(), default=str)):
            raise ConfigError(f"{out} holds a different rethink experiment ({old.get('spec', {}).get('name')}); "
                              "use another --out folder or delete it")
    from .arch import atomic_write_text

    atomic_write_text(spec_path, json.dumps({"identity": spec.identity(), "spec": spec.to_dict()}, indent=2, default=str))
    jsonl = out / JSONL
    records: list[RethinkRecord] = []
    if jsonl.exists():
        from .report import load_rethink_jsonl

        records = load_rethink_jsonl(jsonl)
    done = {(r.arm, r.seed): r for r in records if r.state == COMPLETE}

    # Validate the prune request before hours of training: regulariser options and one dry prune.
    prune_kw: dict[str, Any] = dict(spec.method_options)
    for key, value in (("budget", spec.budget), ("ratio", spec.ratio), ("variant", spec.variant)):
        if value is not None:
            prune_kw[key] = value
    reg_kw = dict(spec.regularizer_options)
    for key, value in (("budget", spec.budget), ("ratio", spec.ratio)):
        if value is not None and _accepts(method.regularizer, key) and key not in reg_kw:
            reg_kw[key] = value  # soft filter pruning zeroes towards the same target during training
    needs_init = bool(getattr(method, "needs_init", False))
    method.regularizer(base_arch, **reg_kw)
    if preflight is None:
        preflight = E >= PREFLIGHT_EPOCHS
    if preflight:
        with torch.random.fork_rng(devices=[]):
            probe = method.prepare(build_model(base_arch), base_arch)
            extra = {"init_state": probe.state_dict()} if needs_init else {}
            method.prune(probe, base_arch, data=data if method.needs_data else None, **prune_kw, **extra)
            del probe

    from .records import versions

    run_versions = versions()

    def make_record(arm: str, seed: int, arch, recipe, result=None, error: str | None = None) -> RethinkRecord:
        return RethinkRecord(
            arm=arm, seed=seed, model=spec.label, dataset=data.name, method=spec.method,
            params=count_params(arch), macs=count_macs(arch), epochs=recipe.epochs,
            best_acc=None if result is None else result.best_acc,
            final_acc=None if result is None else result.final_acc, lr=recipe.lr,
            state=COMPLETE if error is None else FAILED, fail_reason=error, arch=arch.to_dict(),
            train_seconds=None if result is None else round(result.train_seconds, 3),
            recipe=recipe.to_dict(), budget=spec.budget, ratio=spec.ratio, variant=spec.variant,
            versions=run_versions,
        )

    def run_arm(arm: str, seed: int, arch, model_fn: Callable[[], Any], recipe, hooks=()) -> tuple[RethinkRecord, Any]:
        """Train one arm (or skip it when recorded); returns its record and the trained model."""
        base_like = arm == "unpruned" or arm.startswith("unpruned-")
        if (arm, seed) in done and not base_like:
            emit(RethinkEvent("skip", arm, seed, recipe.epochs, record=done[(arm, seed)]))
            return done[(arm, seed)], None
        # A recorded base is still needed (it is pruned next): its checkpoint makes this a reload.
        emit(RethinkEvent("arm-start", arm, seed, recipe.epochs))
        model = model_fn()
        try:
            result = train(model, data, recipe, seed=seed, device=dev, hooks=list(hooks), threads=threads,
                           checkpoint_dir=out / "checkpoints" / f"seed{seed}" / arm,
                           on_progress=lambda ev: emit(RethinkEvent("progress", arm, seed, recipe.epochs, progress=ev)))
            rec = make_record(arm, seed, arch, recipe, result)
        except PrunesearchError as e:  # a diverged or broken arm is a result too; the others go on
            rec = make_record(arm, seed, arch, recipe, error=str(e))
            model = None
        if (arm, seed) not in done:
            append_record(jsonl, rec)
            records.append(rec)
            if rec.state == COMPLETE:
                done[(arm, seed)] = rec
        emit(RethinkEvent("arm-end", arm, seed, recipe.epochs, record=rec))
        return rec, model

    def prune(model, seed: int, init_state, tag: str = ""):
        kw = dict(prune_kw)
        if needs_init:
            kw["init_state"] = init_state
        result = method.prune(model, base_arch, data=data if method.needs_data else None, **kw)
        extra = {k: v for k, v in result.info.items() if isinstance(v, (int, float, str, bool)) and k != "rewind"}
        save_architecture(result.arch, out / "architectures" / f"seed{seed}{tag}.yaml", method=spec.method,
                          seed=seed, base=base_arch.label, info=extra)
        emit(RethinkEvent("pruned", "", seed, message=(
            f"seed {seed}{tag}: {spec.method} -> {result.params:,} params ({100 * result.params / base_params:.1f} % of "
            f"{base_params:,}), {result.macs:,} MACs ({100 * result.macs / base_macs:.1f} %)")))
        return result

    for seed in spec.seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            init_model = method.prepare(build_model(base_arch), base_arch)
        init_state = {k: v.detach().clone() for k, v in init_model.state_dict().items()}

        def fresh_base() -> Any:
            m = method.prepare(build_model(base_arch), base_arch)
            m.load_state_dict(init_state)
            return m

        hook = method.regularizer(base_arch, **reg_kw)
        rec, base_model = run_arm("unpruned", seed, base_arch, fresh_base, base_recipe, [hook] if hook else [])
        if rec.state != COMPLETE or base_model is None:
            continue
        result = prune(base_model, seed, init_state)
        pruned = result.arch
        hooks = method.train_hooks(result)
        run_arm("finetune", seed, pruned, lambda: method.build_pruned(result, init="inherit"), ft_recipe, hooks)
        scratch = lambda: method.build_pruned(result, init="scratch", seed=seed)  # noqa: E731
        se, _ = run_arm("scratch-e", seed, pruned, scratch, base_recipe, hooks)
        b_epochs = scratch_b_epochs(E, base_macs, count_macs(pruned), convention=spec.scratch_b)
        run_arm("scratch-b", seed, pruned, scratch, base_recipe.replace(epochs=b_epochs, mode="scratch-b"), hooks)

        if result.masks is None:
            continue
        # Winning ticket vs random init at each learning rate (weight-level results).
        for lr in spec.lottery_lrs:
            tag = lr_tag(lr)
            recipe_lr = base_recipe.replace(lr=lr)
            if math.isclose(lr, base_recipe.lr):
                r_lr = result
            else:
                hook = method.regularizer(base_arch, **reg_kw)
                rec, m_lr = run_arm(f"unpruned-{tag}", seed, base_arch, fresh_base, recipe_lr, [hook] if hook else [])
                if rec.state != COMPLETE or m_lr is None:
                    continue
                r_lr = prune(m_lr, seed, init_state, tag=f"-{tag}")

            def ticket(r=r_lr) -> Any:
                m = build_model(r.arch, masks=r.masks)
                m.load_state_dict(rewind(r, init_state), strict=True)
                return m

            hooks_lr = method.train_hooks(r_lr)
            run_arm(f"winning-ticket-{tag}", seed, r_lr.arch, ticket, recipe_lr, hooks_lr)
            arm = f"random-init-{tag}"
            if r_lr is result and se.state == COMPLETE:
                if (arm, seed) not in done:  # identical to Scratch-E by construction: reuse it
                    rec = dataclasses.replace(se, arm=arm)
                    append_record(jsonl, rec)
                    records.append(rec)
                    done[(arm, seed)] = rec
                emit(RethinkEvent("arm-end", arm, seed, recipe_lr.epochs, record=done[(arm, seed)],
                                  message="same run as scratch-e"))
            else:
                run_arm(arm, seed, r_lr.arch, lambda r=r_lr: method.build_pruned(r, init="scratch", seed=seed),
                        recipe_lr, hooks_lr)

    tables, files = write_tables(spec, records, out)
    files[JSONL] = jsonl
    return RethinkRun(spec=spec, out_dir=out, records=records, tables=tables, files=files)


def build_tables(spec: RethinkSpec, records: list[RethinkRecord]) -> list[Any]:
    """The paper-style tables (``prunesearch.report``'s rethink renderers) for ``records``."""
    from .report import build_report
    from .report.render import all_tables

    title = f"rethink: {spec.method} on {spec.label}, {spec.dataset}"
    return all_tables(build_report([], rethink=records, title=title))


def write_tables(spec: RethinkSpec, records: list[RethinkRecord], out: Path) -> tuple[list[Any], dict[str, Path]]:
    from .arch import atomic_write_text
    from .report.writers import table_markdown

    tables = build_tables(spec, records)
    lines = [f"# rethink: {spec.run_name}", ""]
    if spec.description:
        lines += [spec.description, ""]
    lines += [f"- method {spec.method}, model {spec.label}, dataset {spec.dataset}, seeds {list(spec.seeds)}, "
              f"recipe {spec.recipe} {spec.recipe_overrides or ''}".rstrip(), ""]
    lines += [table_markdown(t) for t in tables]
    path = out / MARKDOWN
    atomic_write_text(path, "\n".join(lines))
    return tables, {MARKDOWN: path}


__all__ = ["ARMS", "RethinkEvent", "RethinkRun", "RethinkSpec", "append_record", "build_tables", "check_spec",
           "finetune_epochs_for", "load_rethink_spec", "run_rethink", "spec_from_dict"]
