"""The Architecture noun: a network described as data (family, depth, per-slot widths, ...).

An Architecture never knows nn.Module; `prunesearch.models.build_model` turns it into one. Its
parameter and MAC counts are computed (`count_params`, `count_macs`), never stored by hand.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ..errors import ConfigError, suggest


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
        isinstance(value, float) and not value.is_integer()
    ):
        raise ConfigError(f"{what} must be an integer, got {value!r}")
    return int(value)


MAX_WIDTH = 65_536  # channels per layer: documented input limits, checked before anything is built
MAX_CLASSES = 100_000
MAX_INPUT = 4_096


@dataclass(frozen=True)
class Architecture:
    """A CNN as plain data.

    - ``family``: ``vgg``, ``resnet``, ``preresnet`` or ``densenet``; ``depth`` names the base model
      (vgg16, resnet56, ...). ``blocks`` (per-stage block counts) overrides the depth's block
      counts for depth-pruned (Sparse Structure Selection) residual nets.
    - ``widths``: one integer per slot of the family (see ``get_family(f).slots(arch)``).
    - ``selections``: for PreResNet/DenseNet, per selection slot, the kept input-channel indices
      (``None`` = the first ``width`` channels). Only pruned architectures carry them.
    - ``densities``: for unstructured sparsity, the fraction of non-zero weights per conv layer.
    - ``name``: a label (e.g. ``resnet56-b``); not part of ``arch_id``.
    """

    family: str
    depth: int
    widths: tuple[int, ...]
    num_classes: int = 10
    in_channels: int = 3
    input_size: int = 32
    head: str | None = None
    blocks: tuple[int, ...] | None = None
    selections: tuple[tuple[int, ...] | None, ...] | None = None
    densities: tuple[float, ...] | None = None
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        from .families import get_family

        set_ = object.__setattr__
        if not isinstance(self.widths, (list, tuple)):
            raise ConfigError(f"widths must be a list of integers, got {self.widths!r}")
        set_(self, "widths", tuple(_as_int(w, "every width") for w in self.widths))
        for attr in ("depth", "num_classes", "in_channels", "input_size"):
            set_(self, attr, _as_int(getattr(self, attr), attr))
        if self.blocks is not None:
            set_(self, "blocks", tuple(_as_int(b, "every block count") for b in self.blocks))
        if self.selections is not None:
            set_(
                self,
                "selections",
                tuple(None if s is None else tuple(_as_int(i, "a selection index") for i in s) for s in self.selections),
            )
            if all(s is None for s in self.selections):
                set_(self, "selections", None)
        if self.densities is not None:
            dens = []
            for d in self.densities:
                if isinstance(d, bool) or not isinstance(d, (int, float)) or not (0 < float(d) <= 1) or math.isnan(d):
                    raise ConfigError(f"every density must be in (0, 1], got {d!r}")
                dens.append(float(d))
            set_(self, "densities", tuple(dens))
        if self.num_classes < 1 or self.in_channels < 1 or self.input_size < 1:
            raise ConfigError(
                f"num_classes, in_channels and input_size must be positive, got "
                f"{self.num_classes}, {self.in_channels}, {self.input_size}"
            )
        bad = [w for w in self.widths if w < 1]
        if bad:
            raise ConfigError(f"widths must be >= 1, got {bad[0]} in {list(self.widths)}; a layer cannot have zero channels")
        wide = [w for w in self.widths if w > MAX_WIDTH]
        if wide or self.num_classes > MAX_CLASSES or self.in_channels > MAX_WIDTH or self.input_size > MAX_INPUT:
            raise ConfigError(f"architecture too large: widths <= {MAX_WIDTH:,}, classes <= {MAX_CLASSES:,}, input "
                              f"<= {MAX_INPUT:,} px (saw width {max(self.widths):,}, {self.num_classes:,} classes, "
                              f"{self.input_size:,} px); check the file")
        get_family(self.family).validate(self)

    # --- identity -------------------------------------------------------------------------
    @property
    def arch_id(self) -> str:
        """Stable 12-hex-digit hash of the structure (not of ``name``)."""
        d = self.to_dict()
        d.pop("name", None)
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    @property
    def model_name(self) -> str:
        """``vgg16``, ``resnet56``, ... (the base model this architecture is a pruned form of)."""
        return f"{self.family}{self.depth}"

    @property
    def label(self) -> str:
        return self.name or self.model_name

    def replace(self, **changes: Any) -> "Architecture":
        return replace(self, **changes)

    # --- (de)serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "family": self.family,
            "depth": self.depth,
            "widths": list(self.widths),
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "input_size": self.input_size,
        }
        if self.head is not None:
            d["head"] = self.head
        if self.blocks is not None:
            d["blocks"] = list(self.blocks)
        if self.selections is not None:
            d["selections"] = [None if s is None else list(s) for s in self.selections]
        if self.densities is not None:
            d["densities"] = list(self.densities)
        if self.name is not None:
            d["name"] = self.name
        return d

    @classmethod
    def from_dict(cls, d: Any, source: str = "architecture") -> "Architecture":
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: expected a mapping with keys family, depth, widths; got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        for key in d:
            if key not in known:
                raise ConfigError(
                    f"{source}: unknown key '{key}'{suggest(key, known)}; known keys: {', '.join(sorted(known))}"
                )
        for key in ("family", "depth", "widths"):
            if key not in d:
                raise ConfigError(f"{source}: missing key '{key}'; an architecture needs family, depth and widths")
        try:
            return cls(**d)
        except TypeError as e:  # pragma: no cover - guarded by the key checks above
            raise ConfigError(f"{source}: {e}") from None
        except ConfigError as e:  # widths/depth checks: say which file (or record) they came from
            if str(e).startswith(f"{source}:"):
                raise
            raise type(e)(f"{source}: {e}") from None
