"""CNN families as torch-free structure: slots, ties, stages and a layer plan.

A family turns an Architecture into a *layer plan* (the weighted layers with their shapes and output
sizes). Counting walks the plan; `prunesearch.models` builds modules from the same widths and a test
checks that both agree for many random widths. Conventions follow the reference code (REFERENCE §2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, NamedTuple

from ..errors import ConfigError
from ..registry import Registry

if TYPE_CHECKING:
    from .architecture import Architecture


@dataclass(frozen=True)
class Slot:
    """One prunable width.

    ``stage``: 0-based stage (feature-map size group). ``rel_depth``: position in [0, 1] along the
    network. ``tie``: slots with the same key must keep equal widths (residual adds). ``kind``:
    ``conv`` (output channels of a conv) or ``select`` (how many input channels a layer reads).
    ``base_width`` is the unpruned width, which is also the slot's maximum. ``role``: what the width
    is for, so design rules keep separate profiles for widths that behave differently (see ROLES).
    """

    name: str
    stage: int
    rel_depth: float
    base_width: int
    tie: str | None = None
    kind: str = "conv"
    role: str = "conv"


#: Slot roles. Pruning methods treat them differently (a residual stream is tied across a stage and
#: rarely pruned; block-internal widths are free), so a rule that pooled them would average away
#: exactly the pattern it should carry (ResNet-56-B keeps its stream at 16 and cuts conv1 to 6).
ROLES = {
    "conv": "VGG conv widths (VGG's head is fixed, not a slot)",
    "stream": "residual-stream widths tied by the additions (ResNet stem and block outputs)",
    "inner": "block-internal widths (ResNet conv1; PreResNet bottleneck conv1/conv2)",
    "outer": "input channels a bottleneck block (or the head) reads from the wide residual stream (PreResNet)",
    "growth": "input channels a dense layer reads (DenseNet)",
    "transition": "input channels a transition (or the head) reads (DenseNet)",
}
#: Where a rule without a target slot's own role looks next (before the pooled profile).
ROLE_FALLBACK = {"outer": ("stream",), "stream": ("outer",), "transition": ("outer", "stream"),
                 "growth": ("inner",)}


class Layer(NamedTuple):
    """A weighted layer of the plan. ``hw``: output feature-map side (convs); 1 for linear/bn1d.
    (A NamedTuple: counting builds hundreds of these per call, so they must be cheap.)"""

    kind: str  # conv | bn | linear
    cin: int
    cout: int
    k: int = 1
    hw: int = 1
    stride: int = 1
    bias: bool = False
    conv_index: int | None = None  # index among the plan's convs (for per-layer densities)


class Family:
    """Base class for a CNN family. Subclasses declare the named depths and the structure."""

    name: ClassVar[str]
    min_width: ClassVar[int] = 1
    named_depths: ClassVar[tuple[int, ...]] = ()
    num_stages: ClassVar[int] = 3

    # -- to implement ------------------------------------------------------------------------
    def valid_depth(self, depth: int) -> bool:
        raise NotImplementedError

    def depth_rule(self) -> str:
        raise NotImplementedError

    def base_widths(self, arch: "Architecture") -> list[int]:
        """Unpruned widths for ``arch``'s depth/blocks."""
        raise NotImplementedError

    def slots(self, arch: "Architecture") -> list[Slot]:
        raise NotImplementedError

    def layers(self, arch: "Architecture") -> list[Layer]:
        raise NotImplementedError

    def selection_inputs(self, arch: "Architecture") -> list[int]:
        """Number of channels available to each ``select`` slot (in slot order)."""
        return []

    # -- shared ------------------------------------------------------------------------------
    def base(self, depth: int, num_classes: int = 10, in_channels: int = 3, input_size: int = 32,
             head: str | None = None, blocks: tuple[int, ...] | None = None) -> "Architecture":
        from .architecture import Architecture

        self.check_depth(depth)
        probe = _Probe(self.name, depth, blocks, head)
        return Architecture(self.name, depth, tuple(self.base_widths(probe)), num_classes, in_channels,
                            input_size, head=self.default_head(head), blocks=blocks)

    def default_head(self, head: str | None) -> str | None:
        if head is not None:
            raise ConfigError(f"--head applies to vgg only; {self.name} has one head")
        return None

    def check_depth(self, depth: int) -> None:
        if not self.valid_depth(depth):
            raise ConfigError(
                f"{self.name}{depth} is not a valid depth: {self.depth_rule()}; named: "
                + ", ".join(f"{self.name}{d}" for d in self.named_depths)
            )

    def validate(self, arch: "Architecture") -> None:
        """Raise ConfigError unless ``arch`` is a buildable member of this family."""
        self.check_depth(arch.depth)
        self.validate_head(arch)
        self.validate_blocks(arch)
        slots = self.slots(arch)
        if len(arch.widths) != len(slots):
            raise ConfigError(
                f"{arch.model_name} needs {len(slots)} widths (one per slot), got {len(arch.widths)}; "
                f"see `prunesearch arch count {arch.model_name} --json` for the slot layout"
            )
        groups: dict[str, int] = {}
        for slot, w in zip(slots, arch.widths):
            if w < self.min_width:
                raise ConfigError(f"slot {slot.name} has width {w}, below the minimum {self.min_width}")
            if slot.kind == "select" and w > slot.base_width:
                raise ConfigError(
                    f"slot {slot.name} selects {w} input channels but only {slot.base_width} exist"
                )
            if slot.tie is not None:
                if groups.setdefault(slot.tie, w) != w:
                    raise ConfigError(
                        f"slots tied by residual adds ({slot.tie}) must have equal widths; "
                        f"{slot.name} has {w}, another has {groups[slot.tie]}"
                    )
        self.validate_selections(arch, slots)
        if arch.densities is not None:
            n_conv = sum(1 for layer in self.layers(arch) if layer.kind == "conv")
            if len(arch.densities) != n_conv:
                raise ConfigError(f"{arch.model_name} has {n_conv} conv layers; got {len(arch.densities)} densities")

    def validate_head(self, arch: "Architecture") -> None:
        if arch.head is not None:
            raise ConfigError(f"head '{arch.head}' applies to vgg only")

    def validate_blocks(self, arch: "Architecture") -> None:
        if arch.blocks is not None:
            raise ConfigError(f"{self.name} does not take per-stage block counts")

    def validate_selections(self, arch: "Architecture", slots: list[Slot]) -> None:
        if arch.selections is None:
            return
        sel_slots = [s for s in slots if s.kind == "select"]
        if len(arch.selections) != len(sel_slots):
            raise ConfigError(
                f"{arch.model_name} has {len(sel_slots)} selection slots; got {len(arch.selections)} selections"
            )
        widths = [w for s, w in zip(slots, arch.widths) if s.kind == "select"]
        for slot, w, sel in zip(sel_slots, widths, arch.selections):
            if sel is None:
                continue
            if len(sel) != w or len(set(sel)) != len(sel) or min(sel) < 0 or max(sel) >= slot.base_width:
                raise ConfigError(
                    f"selection of {slot.name} must be {w} distinct indices in [0, {slot.base_width}), got {list(sel)[:8]}..."
                )

    def stage_of_hw(self, input_size: int, hw: int) -> int:
        return 0


@dataclass(frozen=True)
class _Probe:
    """Minimal stand-in used to compute base widths before an Architecture exists."""

    family: str
    depth: int
    blocks: tuple[int, ...] | None
    head: str | None
    widths: tuple[int, ...] = ()


def _rel(i: int, n: int) -> float:
    return 0.0 if n <= 1 else i / (n - 1)


# ------------------------------------------------------------------------------------------------
# VGG (CIFAR)
# ------------------------------------------------------------------------------------------------
VGG_CFGS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512],
}
VGG_HEADS = ("slim", "l1")
L1_HEAD_HIDDEN = 512


class VGG(Family):
    name = "vgg"
    named_depths = (11, 13, 16, 19)
    num_stages = 5

    def valid_depth(self, depth: int) -> bool:
        return depth in VGG_CFGS

    def depth_rule(self) -> str:
        return "vgg depth is one of 11, 13, 16, 19"

    def default_head(self, head: str | None) -> str | None:
        head = head or "slim"
        if head not in VGG_HEADS:
            raise ConfigError(f"unknown vgg head '{head}'; choose slim (one Linear) or l1 (Linear-BN-ReLU-Linear)")
        return head

    def validate_head(self, arch: "Architecture") -> None:
        if arch.head not in VGG_HEADS:
            raise ConfigError(f"vgg head must be slim or l1, got {arch.head!r}")

    def stage_pattern(self, depth: int) -> list[int]:
        """Stage index of every conv (stages are the groups between max-pools)."""
        stages, s = [], 0
        for item in VGG_CFGS[depth]:
            if item == "M":
                s += 1
            else:
                stages.append(s)
        return stages

    def base_widths(self, arch) -> list[int]:
        return [w for w in VGG_CFGS[arch.depth] if w != "M"]  # type: ignore[misc]

    def slots(self, arch) -> list[Slot]:
        base = self.base_widths(arch)
        stages = self.stage_pattern(arch.depth)
        n = len(base)
        return [Slot(f"conv{i + 1}", stages[i], _rel(i, n), base[i]) for i in range(n)]

    def cfg(self, arch) -> list[int | str]:
        """The reference code's cfg list (widths with 'M' for max-pool)."""
        it = iter(arch.widths)
        return [item if item == "M" else next(it) for item in VGG_CFGS[arch.depth]]

    def layers(self, arch) -> list[Layer]:
        out: list[Layer] = []
        cin, hw, ci = arch.in_channels, arch.input_size, 0
        for item in self.cfg(arch):
            if item == "M":
                hw //= 2
                continue
            out += [Layer("conv", cin, item, 3, hw, conv_index=ci), Layer("bn", item, item)]  # type: ignore[arg-type]
            cin, ci = item, ci + 1
        # global average pool, then the head (features = last width)
        if arch.head == "l1":
            out += [
                Layer("linear", cin, L1_HEAD_HIDDEN, bias=True),
                Layer("bn", L1_HEAD_HIDDEN, L1_HEAD_HIDDEN),
                Layer("linear", L1_HEAD_HIDDEN, arch.num_classes, bias=True),
            ]
        else:
            out.append(Layer("linear", cin, arch.num_classes, bias=True))
        return out

    def validate(self, arch) -> None:
        super().validate(arch)
        pools = sum(1 for item in VGG_CFGS[arch.depth] if item == "M")
        if arch.input_size < 2**pools:
            raise ConfigError(f"vgg needs input_size >= {2 ** pools} ({pools} max-pools), got {arch.input_size}")


# ------------------------------------------------------------------------------------------------
# ResNet (CIFAR, basic blocks, option-A shortcut)
# ------------------------------------------------------------------------------------------------
RESNET_STAGE_WIDTHS = (16, 32, 64)


class _Residual(Family):
    """Residual families: depth = depth_step * n + 2 with n blocks per stage (depth_step = 3 stages x
    the weighted layers of a block); ``arch.blocks``
    (Sparse Structure Selection) may remove blocks stage by stage."""

    depth_step: ClassVar[int]
    min_depth: ClassVar[int]

    def valid_depth(self, depth: int) -> bool:
        return depth >= self.min_depth and (depth - 2) % self.depth_step == 0

    def depth_rule(self) -> str:
        k = self.depth_step
        return f"{self.name} depth is {k}n+2 ({', '.join(str(k * i + 2) for i in (1, 2, 3))}, ...)"

    def stage_blocks(self, arch) -> tuple[int, ...]:
        n = (arch.depth - 2) // self.depth_step
        return arch.blocks if arch.blocks is not None else (n, n, n)

    def validate_blocks(self, arch) -> None:
        if arch.blocks is None:
            return
        n = (arch.depth - 2) // self.depth_step
        if len(arch.blocks) != 3 or any(b < 0 or b > n for b in arch.blocks) or sum(arch.blocks) < 1:
            raise ConfigError(
                f"{arch.model_name} blocks must be 3 per-stage counts in [0, {n}] with at least one block, got {list(arch.blocks)}"
            )


class ResNet(_Residual):
    """CIFAR ResNet-(6n+2). Slots: stem, then per block conv1 (free) and conv2 (tied per stage).

    The stem and every block output of stage 1 are tied (identity shortcuts); each stage's block
    outputs are tied. Option-A shortcut: stride-2 subsample, then zero-pad (or, if a pruned stage is
    narrower than its input, drop) channels: parameter-free either way.
    """

    name = "resnet"
    named_depths = (20, 32, 44, 56, 110)

    depth_step = 6
    min_depth = 8

    def base_widths(self, arch) -> list[int]:
        out = [RESNET_STAGE_WIDTHS[0]]
        for s, nb in enumerate(self.stage_blocks(arch)):
            out += [RESNET_STAGE_WIDTHS[s]] * (2 * nb)
        return out

    def slots(self, arch) -> list[Slot]:
        blocks = self.stage_blocks(arch)
        total = 1 + 2 * sum(blocks)
        out = [Slot("stem", 0, 0.0, RESNET_STAGE_WIDTHS[0], tie="stage1.out", role="stream")]
        i = 1
        for s, nb in enumerate(blocks):
            for b in range(nb):
                w = RESNET_STAGE_WIDTHS[s]
                out.append(Slot(f"stage{s + 1}.block{b + 1}.conv1", s, _rel(i, total), w, role="inner"))
                out.append(Slot(f"stage{s + 1}.block{b + 1}.conv2", s, _rel(i + 1, total), w, tie=f"stage{s + 1}.out",
                                role="stream"))
                i += 2
        return out

    def block_widths(self, arch) -> list[list[tuple[int, int]]]:
        """Per stage, per block: (conv1 width, conv2 width)."""
        it = iter(arch.widths[1:])
        return [[(next(it), next(it)) for _ in range(nb)] for nb in self.stage_blocks(arch)]

    def layers(self, arch) -> list[Layer]:
        hw, ci = arch.input_size, 0
        c = arch.widths[0]
        out = [Layer("conv", arch.in_channels, c, 3, hw, conv_index=0), Layer("bn", c, c)]
        ci = 1
        for s, blocks in enumerate(self.block_widths(arch)):
            for b, (mid, cout) in enumerate(blocks):
                stride = 2 if (s > 0 and b == 0) else 1
                hw = (hw - 1) // stride + 1
                out += [
                    Layer("conv", c, mid, 3, hw, stride, conv_index=ci), Layer("bn", mid, mid),
                    Layer("conv", mid, cout, 3, hw, conv_index=ci + 1), Layer("bn", cout, cout),
                ]
                ci += 2
                c = cout
        out.append(Layer("linear", c, arch.num_classes, bias=True))
        return out


# ------------------------------------------------------------------------------------------------
# PreResNet (bottleneck, pre-activation)
# ------------------------------------------------------------------------------------------------
PRERESNET_PLANES = (16, 32, 64)
PRERESNET_STEM = 16


class PreResNet(_Residual):
    """PreResNet-(9n+2), bottleneck. Slots per block: input selection (c0), conv1 (c1), conv2 (c2);
    then the head's input selection. Block outputs (4 x planes) are never pruned.

    The reference code applies BN to all block inputs and then selects channels; BN is per-channel,
    so selecting first and normalising only the kept channels is the same function with physically
    narrow layers (and fewer parameters: only real weights are counted).
    """

    name = "preresnet"
    named_depths = (56, 110, 164)

    depth_step = 9
    min_depth = 11

    def _block_inputs(self, arch) -> list[list[tuple[int, int]]]:
        """Per stage, per block: (input channels, planes)."""
        c = PRERESNET_STEM
        out = []
        for s, nb in enumerate(self.stage_blocks(arch)):
            stage = []
            for _ in range(nb):
                stage.append((c, PRERESNET_PLANES[s]))
                c = 4 * PRERESNET_PLANES[s]
            out.append(stage)
        return out

    def _final_channels(self, arch) -> int:
        c = PRERESNET_STEM
        for s, nb in enumerate(self.stage_blocks(arch)):
            if nb:
                c = 4 * PRERESNET_PLANES[s]
        return c

    def base_widths(self, arch) -> list[int]:
        out = []
        for stage in self._block_inputs(arch):
            for cin, p in stage:
                out += [cin, p, p]
        return out + [self._final_channels(arch)]

    def slots(self, arch) -> list[Slot]:
        out = []
        nb_total = sum(self.stage_blocks(arch))
        total = 3 * nb_total + 1
        i = 0
        for s, stage in enumerate(self._block_inputs(arch)):
            for b, (cin, p) in enumerate(stage):
                pre = f"stage{s + 1}.block{b + 1}"
                out += [
                    Slot(f"{pre}.select", s, _rel(i, total), cin, kind="select", role="outer"),
                    Slot(f"{pre}.conv1", s, _rel(i + 1, total), p, role="inner"),
                    Slot(f"{pre}.conv2", s, _rel(i + 2, total), p, role="inner"),
                ]
                i += 3
        last_stage = max((s for s, nb in enumerate(self.stage_blocks(arch)) if nb), default=0)
        out.append(Slot("head.select", last_stage, 1.0, self._final_channels(arch), kind="select", role="outer"))
        return out

    def block_widths(self, arch) -> list[list[tuple[int, int, int, int, int]]]:
        """Per stage, per block: (input channels, c0, c1, c2, planes)."""
        it = iter(arch.widths)
        return [[(cin, next(it), next(it), next(it), p) for cin, p in stage] for stage in self._block_inputs(arch)]

    def layers(self, arch) -> list[Layer]:
        hw = arch.input_size
        out = [Layer("conv", arch.in_channels, PRERESNET_STEM, 3, hw, conv_index=0)]
        ci = 1
        for s, stage in enumerate(self.block_widths(arch)):
            for b, (cin, c0, c1, c2, p) in enumerate(stage):
                stride = 2 if (s > 0 and b == 0) else 1
                hw_in, hw = hw, (hw - 1) // stride + 1
                out += [
                    Layer("bn", c0, c0),
                    Layer("conv", c0, c1, 1, hw_in, conv_index=ci), Layer("bn", c1, c1),
                    Layer("conv", c1, c2, 3, hw, stride, conv_index=ci + 1), Layer("bn", c2, c2),
                    Layer("conv", c2, 4 * p, 1, hw, conv_index=ci + 2),
                ]
                ci += 3
                if b == 0 and (stride != 1 or cin != 4 * p):
                    out.append(Layer("conv", cin, 4 * p, 1, hw, stride, conv_index=ci))
                    ci += 1
        cf = arch.widths[-1]
        out += [Layer("bn", cf, cf), Layer("linear", cf, arch.num_classes, bias=True)]
        return out


# ------------------------------------------------------------------------------------------------
# DenseNet (k = 12, no bottleneck, compression 1)
# ------------------------------------------------------------------------------------------------
DENSENET_GROWTH = 12


class DenseNet(Family):
    """DenseNet-(3n+4), growth 12. Slots: every layer's, transition's and the head's input selection.

    New channels (growth) and transition outputs are never pruned, so each slot's maximum (its base
    width) is the number of channels available at that point.
    """

    name = "densenet"
    named_depths = (40,)

    def valid_depth(self, depth: int) -> bool:
        return depth >= 7 and (depth - 4) % 3 == 0

    def depth_rule(self) -> str:
        return "densenet depth is 3n+4 (7, 10, ..., 40)"

    def base_widths(self, arch) -> list[int]:
        n = (arch.depth - 4) // 3
        out, c = [], 2 * DENSENET_GROWTH
        for _ in range(3):
            out += [c + DENSENET_GROWTH * i for i in range(n + 1)]
            c += DENSENET_GROWTH * n
        return out

    def slots(self, arch) -> list[Slot]:
        n = (arch.depth - 4) // 3
        base = self.base_widths(arch)
        total = len(base)
        out = []
        for i, w in enumerate(base):
            s, j = divmod(i, n + 1)
            if i == total - 1:  # the head's selection after the last block
                out.append(Slot("head.select", 2, 1.0, w, kind="select", role="transition"))
            elif j == n:
                out.append(Slot(f"transition{s + 1}.select", s, _rel(i, total), w, kind="select", role="transition"))
            else:
                out.append(Slot(f"block{s + 1}.layer{j + 1}.select", s, _rel(i, total), w, kind="select",
                                role="growth"))
        return out

    def layers(self, arch) -> list[Layer]:
        n = (arch.depth - 4) // 3
        hw, ci = arch.input_size, 1
        out = [Layer("conv", arch.in_channels, 2 * DENSENET_GROWTH, 3, hw, conv_index=0)]
        w = iter(arch.widths)
        c_full = 2 * DENSENET_GROWTH
        for s in range(3):
            for _ in range(n):
                c = next(w)
                out += [Layer("bn", c, c), Layer("conv", c, DENSENET_GROWTH, 3, hw, conv_index=ci)]
                ci += 1
                c_full += DENSENET_GROWTH
            c = next(w)
            if s < 2:
                out += [Layer("bn", c, c), Layer("conv", c, c_full, 1, hw, conv_index=ci)]
                ci += 1
                hw //= 2
            else:
                out += [Layer("bn", c, c), Layer("linear", c, arch.num_classes, bias=True)]
        return out

    def validate(self, arch) -> None:
        super().validate(arch)
        if arch.input_size < 4:
            raise ConfigError(f"densenet needs input_size >= 4 (two 2x2 pools), got {arch.input_size}")


FAMILIES: Registry[Family] = Registry("model family")
for _fam in (VGG(), ResNet(), PreResNet(), DenseNet()):
    FAMILIES.register(_fam.name, _fam)


def get_family(name: str) -> Family:
    return FAMILIES.get(name)
