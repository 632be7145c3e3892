"""Study specs: ``search_spaces/NAME.yaml`` -> a validated, immutable :class:`Plan`.

Torch-free and Optuna-free. The format (every key optional unless marked)::

    kind: study                      # optional; other kinds (rethink) belong to other commands
    name: demo-resnet20-mnist5k     # study name (default: the file's stem); smoke runs add "-smoke"
    description: free text
    model: resnet20                  # REQUIRED: any name prunesearch.arch.resolve_model knows
    dataset: mnist5k                 # REQUIRED: any name prunesearch.data.load_dataset knows
    dataset_options: {}              # loader options, e.g. {image_size: 8} for synthetic
    data_dir: ~/data                 # where the dataset files live (default: $PRUNESEARCH_DATA_DIR)
    recipe: fast                     # a built-in recipe name or YAML path, or a mapping:
    #  recipe: {name: fast, overrides: {epochs: 10}}
    budgets: [0.25, 0.5]             # REQUIRED: fraction (<= 1) of the base params, or counts (> 1)
    seeds: 2                         # an int n (= seeds 0..n-1) or a list of ints; default 1
    generators:                      # REQUIRED: name -> options (or a list of names)
      uniform: {}
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
spec runs the same from anywhere (``~`` and absolute paths are kept). Specs built in code
(``plan_from_dict`` without ``base_dir``) keep their paths as given.

The ``searched`` options are the study's own: ``trials`` (per budget and seed), ``n_startup_trials``
(random trials before TPE), ``min_multiplier`` (lower end of each per-stage multiplier, in (0, 1]).
Every other generator's options go unchanged to ``GENERATORS[name].generate(base, budget, seed,
**options)``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, suggest

TOP_KEYS = (
    "kind", "name", "description", "model", "dataset", "dataset_options", "data_dir", "recipe", "budgets",
    "seeds", "generators", "settings", "smoke",
)
REQUIRED = ("model", "dataset", "budgets", "generators")
RECIPE_KEYS = ("name", "overrides")
SETTINGS_DEFAULTS: dict[str, Any] = {
    "heartbeat_interval": 10,
    "grace_period": 60,
    "max_retries": 3,
    "sampler_seed": 0,
    "keep_checkpoints": False,
}
PATH_OPTIONS = ("rule", "run", "architecture")  # generator options that name a file or run dir
SEARCHED = "searched"
SEARCHED_DEFAULTS: dict[str, Any] = {"trials": 4, "n_startup_trials": 4, "min_multiplier": 0.25}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class Plan:
    """A validated study spec (the smoke block already applied when ``smoke`` is True)."""

    name: str  # the Optuna study name
    model: str
    dataset: str
    dataset_options: dict[str, Any]
    recipe_name: str
    recipe_overrides: dict[str, Any]
    budgets: tuple[float, ...]
    seeds: tuple[int, ...]
    generators: dict[str, dict[str, Any]]  # name -> options, in spec order
    settings: dict[str, Any]
    data_dir: str | None = None
    description: str = ""
    smoke: bool = False
    source: str | None = None  # the spec file

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "model": self.model, "dataset": self.dataset,
            "dataset_options": dict(self.dataset_options),
            "recipe": {"name": self.recipe_name, "overrides": dict(self.recipe_overrides)},
            "budgets": list(self.budgets), "seeds": list(self.seeds),
            "generators": copy.deepcopy(self.generators), "settings": dict(self.settings),
            "data_dir": self.data_dir, "description": self.description, "smoke": self.smoke,
            "source": self.source,
        }

    def searched_options(self) -> dict[str, Any] | None:
        return self.generators.get(SEARCHED)

    def arm_hash(self, generator: str) -> str:
        """Identity of one generator's arms: model, dataset, recipe and its options except the
        number of searched trials. A changed spec under the same study name plans new trials
        (old results are kept, never overwritten); adding budgets, seeds or searched trials adds
        only the missing ones."""
        opts = {k: v for k, v in self.generators[generator].items() if k != "trials"}
        blob = json.dumps(
            [self.model, self.dataset, self.dataset_options, self.recipe_name, self.recipe_overrides,
             generator, opts],
            sort_keys=True, default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:8]


def budget_label(budget: float) -> str:
    """0.25 -> '0.25', 250000.0 -> '250000': stable text for keys and parameter names."""
    return f"{budget:g}" if budget <= 1 else str(int(round(budget)))


# ---------------------------------------------------------------------------------------------
def load_spec(path: str | os.PathLike, smoke: bool = False) -> Plan:
    """Read and validate a study spec; errors are one-line ConfigErrors naming the file and key."""
    from ..fileio import read_yaml_spec

    p = Path(path)
    where = str(p)
    data = read_yaml_spec(p, "study spec", "search_spaces/demo.yaml")
    return plan_from_dict(data, where=where, default_name=p.stem, smoke=smoke, source=where,
                          base_dir=p.resolve().parent)


def plan_from_dict(
    data: Any, where: str = "spec", default_name: str = "study", smoke: bool = False, source: str | None = None,
    base_dir: str | os.PathLike | None = None,
) -> Plan:
    """Validate a spec mapping. ``base_dir``: the folder relative file options resolve against
    (``load_spec`` passes the spec file's folder); None keeps them as given."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: a study spec must be a mapping of keys (model, dataset, budgets, "
                          f"generators, ...), saw {type(data).__name__}")
    _check_keys(data, TOP_KEYS, where, "")
    kind = data.get("kind", "study")
    if kind != "study":
        raise ConfigError(f"{where}: 'kind: {kind}' is not a study spec; run it with 'prunesearch {kind}'"
                          if isinstance(kind, str) and kind.isidentifier() else
                          f"{where}: 'kind' must be 'study' for 'prunesearch study', saw {kind!r}")
    d = dict(data)
    d.pop("kind", None)
    smoke_block = d.pop("smoke", None)
    if smoke:
        if smoke_block is None:
            raise ConfigError(f"{where}: --smoke needs a 'smoke:' block (e.g. smoke: {{dataset: digits, "
                              "recipe: {overrides: {epochs: 1}}}}); add one")
        if not isinstance(smoke_block, Mapping):
            raise ConfigError(f"{where}: 'smoke' must be a mapping of overrides, saw {type(smoke_block).__name__}")
        _check_keys(smoke_block, tuple(k for k in TOP_KEYS if k not in ("kind", "name", "smoke")), where, "smoke.")
        base_recipe = _recipe(d.get("recipe", "fast"), where, "recipe")
        for k, v in smoke_block.items():
            if k == "recipe":
                r = _recipe(v, where, "smoke.recipe", allow_missing_name=True)
                merged = dict(base_recipe[1])
                merged.update(r[1])
                d["recipe"] = {"name": r[0] or base_recipe[0], "overrides": merged}
            else:
                d[k] = v
        if "dataset" in smoke_block and "dataset_options" not in smoke_block:
            d.pop("dataset_options", None)  # the full run's loader options belong to its dataset
    elif smoke_block is not None and not isinstance(smoke_block, Mapping):
        raise ConfigError(f"{where}: 'smoke' must be a mapping of overrides, saw {type(smoke_block).__name__}")

    for k in REQUIRED:
        if k not in d or d[k] is None:
            raise ConfigError(f"{where}: missing required key '{k}'; see search_spaces/README.md for the format")

    name = d.get("name", default_name)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(f"{where}: 'name' must be letters, digits, '.', '_' or '-' (at most 100), saw {name!r}")
    if smoke:
        name = f"{name}-smoke"
    model = _str(d["model"], where, "model")
    dataset = _str(d["dataset"], where, "dataset")
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
    recipe_name, overrides = _recipe(d.get("recipe", "fast"), where, "recipe")
    _check_recipe(recipe_name or "fast", overrides, where)
    budgets = _budgets(d["budgets"], where)
    seeds = _seeds(d.get("seeds", 1), where)
    generators = _generators(d["generators"], where, base_dir)
    settings = _settings(d.get("settings") or {}, where)
    return Plan(
        name=name, model=model, dataset=dataset, dataset_options={str(k): v for k, v in dataset_options.items()},
        recipe_name=recipe_name or "fast",
        recipe_overrides=overrides, budgets=budgets, seeds=seeds, generators=generators,
        settings=settings, data_dir=data_dir, description=description, smoke=smoke, source=source,
    )


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
    return v.strip()


def _recipe(v: Any, where: str, key: str, allow_missing_name: bool = False) -> tuple[str | None, dict[str, Any]]:
    if isinstance(v, str):
        return _str(v, where, key), {}
    if not isinstance(v, Mapping):
        raise ConfigError(f"{where}: '{key}' must be a recipe name or a mapping {{name: fast, overrides: "
                          f"{{epochs: 10}}}}, saw {type(v).__name__}")
    _check_keys(v, RECIPE_KEYS, where, f"{key}.")
    name = v.get("name")
    if name is None and not allow_missing_name:
        name = "fast"
    if name is not None:
        name = _str(name, where, f"{key}.name")
    overrides = v.get("overrides") or {}
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"{where}: '{key}.overrides' must be a mapping of recipe keys, saw {type(overrides).__name__}")
    return name, {str(k): val for k, val in overrides.items()}


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


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.replace("_", ""))
        except ValueError:
            return None
    return None


def _budgets(v: Any, where: str) -> tuple[float, ...]:
    items = v if isinstance(v, list) else [v]
    out: list[float] = []
    for item in items:
        b = _number(item)
        if b is None or math.isnan(b) or math.isinf(b):
            raise ConfigError(f"{where}: 'budgets' entry {item!r} is not a number; give fractions of the base "
                              "model like [0.2, 0.4] or parameter counts like [250000]")
        if b <= 0:
            raise ConfigError(f"{where}: 'budgets' entry {item!r} must be positive; give e.g. [0.2, 0.4, 0.6]")
        if b > 1 and b != int(b):
            raise ConfigError(f"{where}: 'budgets' entry {item!r} is above 1, so it is a parameter count and "
                              "must be a whole number; give a fraction <= 1 or an integer count")
        if b in out:
            raise ConfigError(f"{where}: 'budgets' lists {item!r} twice; remove the duplicate")
        out.append(b)
    if not out:
        raise ConfigError(f"{where}: 'budgets' is empty; give e.g. [0.2, 0.4, 0.6]")
    return tuple(out)


def _seeds(v: Any, where: str) -> tuple[int, ...]:
    if isinstance(v, int) and not isinstance(v, bool):
        if v < 1:
            raise ConfigError(f"{where}: 'seeds' as a count must be >= 1, saw {v}; or give a list like [0, 1, 2]")
        return tuple(range(v))
    if not isinstance(v, list) or not v:
        raise ConfigError(f"{where}: 'seeds' must be a count (3) or a non-empty list of integers ([0, 1, 2]), saw {v!r}")
    out: list[int] = []
    for s in v:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ConfigError(f"{where}: 'seeds' entry {s!r} must be a non-negative integer")
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
        v = {str(n): {} for n in v}
    if not isinstance(v, Mapping) or not v:
        raise ConfigError(f"{where}: 'generators' must map generator names to options, e.g. "
                          "{uniform: {}, searched: {trials: 8}}, saw " + repr(v))
    known = _known_generators()
    out: dict[str, dict[str, Any]] = {}
    for name, opts in v.items():
        name = str(name)
        if known is not None and name not in known:
            raise ConfigError(f"{where}: unknown generator 'generators.{name}'{suggest(name, known)}; "
                              f"known: {', '.join(known)}")
        if opts is None:
            opts = {}
        if not isinstance(opts, Mapping):
            raise ConfigError(f"{where}: 'generators.{name}' must be a mapping of options (or {{}}), "
                              f"saw {type(opts).__name__}")
        opts = {str(k): val for k, val in opts.items()}
        for k in PATH_OPTIONS:
            if k in opts:
                opts[k] = _resolve_path(opts[k], base_dir)
        if isinstance(opts.get("architectures"), Mapping):
            opts["architectures"] = {b: _resolve_path(f, base_dir) for b, f in opts["architectures"].items()}
        if name == SEARCHED:
            opts = _searched(opts, where)
        out[name] = opts
    return out


def _searched(opts: dict[str, Any], where: str) -> dict[str, Any]:
    _check_keys(opts, tuple(SEARCHED_DEFAULTS), where, "generators.searched.")
    out = dict(SEARCHED_DEFAULTS)
    out.update(opts)
    for k in ("trials", "n_startup_trials"):
        x = out[k]
        if isinstance(x, bool) or not isinstance(x, int) or x < (1 if k == "trials" else 0):
            raise ConfigError(f"{where}: 'generators.searched.{k}' must be an integer >= "
                              f"{1 if k == 'trials' else 0}, saw {x!r}")
    m = _number(out["min_multiplier"])
    if m is None or not 0 < m <= 1:
        raise ConfigError(f"{where}: 'generators.searched.min_multiplier' must be in (0, 1], saw {out['min_multiplier']!r}")
    out["min_multiplier"] = m
    return out


def _settings(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, Mapping):
        raise ConfigError(f"{where}: 'settings' must be a mapping, saw {type(v).__name__}")
    _check_keys(v, tuple(SETTINGS_DEFAULTS), where, "settings.")
    out = dict(SETTINGS_DEFAULTS)
    out.update(v)
    for k in ("heartbeat_interval", "grace_period"):
        x = out[k]
        if isinstance(x, bool) or not isinstance(x, int) or x < 1:
            raise ConfigError(f"{where}: 'settings.{k}' must be a whole number of seconds >= 1, saw {x!r}")
    if out["grace_period"] <= out["heartbeat_interval"]:
        raise ConfigError(f"{where}: 'settings.grace_period' ({out['grace_period']}) must exceed "
                          f"'settings.heartbeat_interval' ({out['heartbeat_interval']}); use about 3x")
    if not isinstance(out["keep_checkpoints"], bool):
        raise ConfigError(f"{where}: 'settings.keep_checkpoints' must be true or false, saw {out['keep_checkpoints']!r}")
    for k in ("max_retries", "sampler_seed"):
        x = out[k]
        if isinstance(x, bool) or not isinstance(x, int) or x < 0:
            raise ConfigError(f"{where}: 'settings.{k}' must be an integer >= 0, saw {x!r}")
    return out
