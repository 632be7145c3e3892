"""Names, published formats and files: the ways an Architecture enters and leaves prunesearch.

- ``resolve_model("resnet56")`` -> the unpruned architecture; named variants (``resnet56-b``) are
  derived from the published pruning rules of REFERENCE §2 (never typed in by hand).
- ``from_reference_cfg(model, cfg)`` imports the reference code's width lists.
- ``load_architecture`` / ``save_architecture``: YAML or JSON files (``yaml.safe_load`` only).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, suggest
from ..fileio import atomic_write_text, read_document
from .architecture import Architecture
from .families import FAMILIES, VGG_CFGS, get_family

_MODEL_RE = re.compile(r"^([a-z]+?)(\d+)$")


MAX_DEPTH = 2_000  # layers; the deepest CIFAR models in the papers have 1,202


def _parse_model(name: str) -> tuple[str, int]:
    m = _MODEL_RE.match(name.strip().lower())
    if not m or m.group(1) not in FAMILIES:
        raise ConfigError(
            f"unknown model '{name}'{suggest(name, known_model_names())}; known: {', '.join(known_model_names())}"
        )
    digits = m.group(2)
    if len(digits) > 5 or int(digits) > MAX_DEPTH:  # checked before anything is built
        raise ConfigError(f"model '{name}': depth {digits} is larger than {MAX_DEPTH:,}; give a depth like "
                          f"{', '.join(known_model_names()[:4])}")
    return m.group(1), int(digits)


def known_model_names() -> list[str]:
    names = [f"{fam}{d}" for fam, f in FAMILIES.items() for d in f.named_depths]
    return names + sorted(NAMED_VARIANTS)


# ---------------------------------------------------------------------------------------------
# Named variants from the L1-norm filter pruning paper (Li et al. 2017), as rules.
# ---------------------------------------------------------------------------------------------
def _l1_resnet(depth: int, stage_ratios: Sequence[float], skip_layers: Sequence[int]) -> Callable[..., Architecture]:
    """Prune ``stage_ratios[s]`` of every block's first conv in stage s, except the blocks whose first
    conv has one of the ``skip_layers`` ids (stem = 1; block i has convs 2+2i and 3+2i).
    Kept width = int(width * (1 - ratio)) as in the reference code."""

    def make(**kw: Any) -> Architecture:
        base = get_family("resnet").base(depth, **kw)
        widths = list(base.widths)
        n = (depth - 2) // 6
        for i in range(3 * n):
            if 2 + 2 * i in skip_layers:
                continue
            slot = 1 + 2 * i  # conv1 of block i
            widths[slot] = int(widths[slot] * (1 - stage_ratios[i // n]))
        return base.replace(widths=tuple(widths))

    return make


def _l1_vgg16_a(**kw: Any) -> Architecture:
    """VGG-16-A: prune 50 % of conv 1 and convs 8-13."""
    kw["head"] = kw.get("head") or "l1"
    base = get_family("vgg").base(16, **kw)
    widths = [int(w * 0.5) if (i + 1) in (1, 8, 9, 10, 11, 12, 13) else w for i, w in enumerate(base.widths)]
    return base.replace(widths=tuple(widths))


NAMED_VARIANTS: dict[str, Callable[..., Architecture]] = {
    "vgg16-a": _l1_vgg16_a,
    "resnet56-a": _l1_resnet(56, (0.1, 0.1, 0.1), (16, 20, 38, 54)),
    "resnet56-b": _l1_resnet(56, (0.6, 0.3, 0.1), (16, 18, 20, 34, 38, 54)),
    "resnet110-a": _l1_resnet(110, (0.5, 0.0, 0.0), (36,)),
    "resnet110-b": _l1_resnet(110, (0.5, 0.4, 0.3), (36, 38, 74)),
}
# The head each named variant's experiment used (L1-norm variants: the l1 head on VGG).
VARIANT_METHOD = {name: "l1norm" for name in NAMED_VARIANTS}


def resolve_model(
    name: str,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    head: str | None = None,
) -> Architecture:
    """A model name (``vgg16``, ``resnet56``, ``preresnet164``, ``densenet40``, ...) or a named
    variant (``vgg16-a``, ``resnet56-b``, ...) -> Architecture. VGG defaults to the ``slim`` head."""
    key = name.strip().lower()
    kw = dict(num_classes=num_classes, in_channels=in_channels, input_size=input_size)
    if key in NAMED_VARIANTS:
        if head is not None and not key.startswith("vgg"):
            raise ConfigError(f"--head applies to vgg only; {key} has one head")
        arch = NAMED_VARIANTS[key](head=head, **kw) if key.startswith("vgg") else NAMED_VARIANTS[key](**kw)
        return arch.replace(name=key)
    family, depth = _parse_model(key)
    return get_family(family).base(depth, head=head, **kw)


# ---------------------------------------------------------------------------------------------
# The reference code's cfg lists.
# ---------------------------------------------------------------------------------------------
def parse_cfg_text(text: str) -> list[int | str]:
    items: list[int | str] = []
    for raw in re.split(r"[,\s]+", text.strip().strip("[]")):
        tok = raw.strip().strip("'\"")
        if not tok:
            continue
        if tok.upper() == "M":
            items.append("M")
            continue
        try:
            items.append(int(tok))
        except ValueError:
            raise ConfigError(f"cfg entry '{tok}' is not an integer width or M; give e.g. --cfg \"32,64,M,128\"") from None
    if not items:
        raise ConfigError("cfg is empty; give comma-separated widths, e.g. --cfg \"32,64,M,128\"")
    return items


def from_reference_cfg(base: Architecture, cfg: Sequence[int | str] | str) -> Architecture:
    """Import the reference code's width list onto ``base`` (which fixes family, depth, head, ...):

    - VGG: the cfg with ``M`` for max-pools (must sit where the depth's template has them);
    - ResNet: one width per block (the block's first conv, the only one L1-norm pruning touches);
    - PreResNet: three per block (input selection, conv1, conv2) + the head's selection; a leading
      stem width of 16 (as in the reference list) is accepted and checked;
    - DenseNet: one input-selection count per layer, transition and head (3n+3 numbers).
    """
    items = parse_cfg_text(cfg) if isinstance(cfg, str) else list(cfg)
    fam = get_family(base.family)
    widths_only = [x for x in items if x != "M"]
    for w in widths_only:
        if not isinstance(w, int) or isinstance(w, bool):
            raise ConfigError(f"cfg entry {w!r} is not an integer width")
        if w < 1:
            raise ConfigError(f"cfg width {w} must be >= 1; a layer cannot have zero channels")
    if base.family == "vgg":
        template = VGG_CFGS[base.depth]
        if len(items) != len(template):
            raise ConfigError(
                f"vgg{base.depth} cfg needs {len(template)} entries ({len(widths_only) and sum(1 for t in template if t != 'M')} "
                f"widths and {sum(1 for t in template if t == 'M')} M), got {len(items)}"
            )
        for i, (a, t) in enumerate(zip(items, template)):
            if (a == "M") != (t == "M"):
                raise ConfigError(
                    f"vgg{base.depth} cfg has {'M' if a == 'M' else a} at position {i + 1} where the template has "
                    f"{'M' if t == 'M' else 'a width'}; expected layout {','.join(map(str, template))}"
                )
        return base.replace(widths=tuple(widths_only), name=None)
    if "M" in items:
        raise ConfigError(f"'M' (max-pool) only appears in vgg cfgs, not in {base.model_name}")
    if base.family == "resnet":
        nblocks = sum(fam.stage_blocks(base))  # type: ignore[attr-defined]
        if len(widths_only) != nblocks:
            raise ConfigError(f"{base.model_name} cfg needs one width per block ({nblocks}), got {len(widths_only)}")
        widths = list(base.widths)
        for i, w in enumerate(widths_only):
            widths[1 + 2 * i] = w
        return base.replace(widths=tuple(widths), name=None)
    n_slots = len(base.widths)
    if base.family == "preresnet" and len(widths_only) == n_slots + 1:
        if widths_only[0] != 16:
            raise ConfigError(f"preresnet cfg's leading stem width must be 16, got {widths_only[0]}")
        widths_only = widths_only[1:]
    if len(widths_only) != n_slots:
        what = "three per block + the head's" if base.family == "preresnet" else "one per layer, transition and head"
        raise ConfigError(f"{base.model_name} cfg needs {n_slots} widths ({what}), got {len(widths_only)}")
    return base.replace(widths=tuple(widths_only), name=None)


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------
def load_architecture(path: str | os.PathLike) -> Architecture:
    """Read an architecture file (YAML or JSON). A file may hold the architecture itself or a
    mapping with an ``architecture`` key (as written by discover/transfer)."""
    p = Path(path)
    data = read_document(p, "architecture")
    if isinstance(data, dict) and "architecture" in data:
        data = data["architecture"]
    return Architecture.from_dict(data, source=str(p))


def save_architecture(arch: Architecture, path: str | os.PathLike, **extra: Any) -> Path:
    """Write atomically (temp + rename). ``extra`` keys (params, macs, provenance) go beside it."""
    from .counting import count_params_macs

    p = Path(path)
    params, macs = count_params_macs(arch)
    doc = {"architecture": arch.to_dict(), "arch_id": arch.arch_id, "params": params, "macs": macs,
           "flops": 2 * macs, **extra}
    text = json.dumps(doc, indent=2) if p.suffix == ".json" else yaml.safe_dump(doc, sort_keys=False)
    atomic_write_text(p, text)
    return p
