"""Architecture -> nn.Module, with physically narrow layers (no masks, no surgery).

Each builder reads the widths the same way the family's layer plan does; a test builds many random
architectures per family and checks ``sum(p.numel()) == count_params(arch)`` and that
``FlopCounterMode`` measures ``2 * count_macs(arch)``.

Sparse architectures (``arch.densities``) get a fixed binary mask per conv (a buffer named
``weight_mask``) with exactly ``kept_weights(n, density)`` ones; masks are drawn at random with a
seed, or given (``masks=``) when they come from a pruning method. Training keeps them with
``prunesearch.prune.sparse.MaskHook``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..arch import Architecture, get_family, kept_weights
from ..arch.families import DENSENET_GROWTH, L1_HEAD_HIDDEN, PRERESNET_STEM, VGG_CFGS
from ..registry import Registry

BUILDERS: Registry = Registry("model builder")


MAX_PARAMS = 2_000_000_000


def build_model(arch: Architecture, masks: Sequence[torch.Tensor] | None = None, mask_seed: int = 0) -> nn.Module:
    """Build ``arch`` as an nn.Module (CPU, fp32, freshly initialised). Refuses, before allocating,
    an architecture whose weights alone would not fit in memory (MAX_PARAMS)."""
    from ..arch import count_params
    from ..errors import ConfigError

    n = count_params(arch)
    if n > MAX_PARAMS:
        raise ConfigError(f"{arch.label} has {n:,} parameters, more than the {MAX_PARAMS:,} prunesearch builds "
                          f"({4 * n / 2**30:,.0f} GiB of fp32 weights); check the architecture file or the budget")
    model = BUILDERS.get(arch.family)(arch)
    if arch.densities is not None:
        attach_masks(model, arch, masks, mask_seed)
    return model


def conv_layers(model: nn.Module) -> list[nn.Conv2d]:
    """Convs in the order of the family's layer plan (``conv_index``)."""
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def attach_masks(model: nn.Module, arch: Architecture, masks: Sequence[torch.Tensor] | None, seed: int = 0) -> None:
    convs = conv_layers(model)
    assert arch.densities is not None and len(convs) == len(arch.densities)
    gen = torch.Generator().manual_seed(seed)
    for i, (conv, d) in enumerate(zip(convs, arch.densities)):
        n = conv.weight.numel()
        if masks is not None:
            mask = masks[i].to(dtype=conv.weight.dtype).reshape(conv.weight.shape)
        else:
            keep = kept_weights(n, d)
            mask = torch.zeros(n)
            mask[torch.randperm(n, generator=gen)[:keep]] = 1.0
            mask = mask.reshape(conv.weight.shape)
        conv.register_buffer("weight_mask", mask)
        with torch.no_grad():
            conv.weight.mul_(mask)


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, padding=k // 2, bias=False), nn.BatchNorm2d(cout)]


def _init(model: nn.Module, bn_gamma: float = 1.0) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.constant_(m.weight, bn_gamma)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    return model


# ------------------------------------------------------------------------------------------------
class VGGNet(nn.Module):
    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = arch.in_channels
        it = iter(arch.widths)
        for item in VGG_CFGS[arch.depth]:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                w = next(it)
                layers += [*_conv_bn(cin, w), nn.ReLU(inplace=True)]
                cin = w
        self.features = nn.Sequential(*layers)
        if arch.head == "l1":
            self.classifier = nn.Sequential(
                nn.Linear(cin, L1_HEAD_HIDDEN), nn.BatchNorm1d(L1_HEAD_HIDDEN), nn.ReLU(inplace=True),
                nn.Linear(L1_HEAD_HIDDEN, arch.num_classes),
            )
        else:
            self.classifier = nn.Linear(cin, arch.num_classes)
        # Network Slimming's VGG initialises BN gammas at 0.5.
        _init(self, bn_gamma=0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)  # = AvgPool2d(2) for 32 px inputs
        return self.classifier(x)


# ------------------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """CIFAR ResNet basic block with the option-A (parameter-free) shortcut.

    A stride-2 block (the first of stages 2 and 3) carries a ``route`` buffer: for each output
    channel the input channel its shortcut copies, ``cin`` meaning zero. Built fresh it is the
    positional zero padding of the reference code (``route[i] = i`` for ``i < cin``); a pruned model
    that inherits weights gets the route of its kept channels (``prunesearch.prune.channels``), so it
    computes exactly what the masked full network computes when the stage outputs are pruned. Loading
    a state dict without ``route`` (older checkpoints) keeps the positional route."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, mid, 3, stride)
        self.conv2, self.bn2 = _conv_bn(mid, cout, 3, 1)
        self.stride, self.cin, self.cout = stride, cin, cout
        if stride != 1:
            self.register_buffer("route", torch.clamp(torch.arange(cout), max=cin))

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        # Option A: parameter-free. Subsample, then zero-pad (or drop) channels.
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
            return F.pad(x, (0, 0, 0, 0, 0, 1)).index_select(1, self.route)
        if self.cout > self.cin:
            x = F.pad(x, (0, 0, 0, 0, 0, self.cout - self.cin))
        elif self.cout < self.cin:
            x = x[:, : self.cout]
        return x

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if prefix + "route" in missing_keys:  # a checkpoint from before the route: positional padding
            missing_keys.remove(prefix + "route")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        fam = get_family("resnet")
        c = arch.widths[0]
        self.conv1, self.bn1 = _conv_bn(arch.in_channels, c)
        stages = []
        for s, blocks in enumerate(fam.block_widths(arch)):  # type: ignore[attr-defined]
            mods = []
            for b, (mid, cout) in enumerate(blocks):
                mods.append(BasicBlock(c, mid, cout, 2 if (s > 0 and b == 0) else 1))
                c = cout
            stages.append(nn.Sequential(*mods))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(c, arch.num_classes)
        _init(self)
        nn.init.kaiming_normal_(self.fc.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


# ------------------------------------------------------------------------------------------------
class ChannelSelect(nn.Module):
    """Keep the channels at ``indices`` (a buffer, so it travels with the state dict)."""

    def __init__(self, indices: Sequence[int], total: int) -> None:
        super().__init__()
        self.register_buffer("indices", torch.as_tensor(list(indices), dtype=torch.long))
        self.identity = list(indices) == list(range(total))
        self.prefix = list(indices) == list(range(len(indices)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return x
        if self.prefix:
            return x[:, : self.indices.numel()]
        return x.index_select(1, self.indices)


def _selection(arch: Architecture, k: int, width: int) -> Sequence[int]:
    sel = None if arch.selections is None else arch.selections[k]
    return sel if sel is not None else range(width)


class Bottleneck(nn.Module):
    """Pre-activation bottleneck with input-channel selection (select -> BN -> ReLU -> 1x1 ...)."""

    def __init__(self, cin: int, c0: int, c1: int, c2: int, planes: int, stride: int, selection: Sequence[int],
                 downsample: bool) -> None:
        super().__init__()
        self.select = ChannelSelect(selection, cin)
        self.bn1 = nn.BatchNorm2d(c0)
        self.conv1 = nn.Conv2d(c0, c1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c2)
        self.conv3 = nn.Conv2d(c2, 4 * planes, 1, bias=False)
        self.downsample = nn.Conv2d(cin, 4 * planes, 1, stride, bias=False) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(self.select(x))))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        residual = self.downsample(x) if self.downsample is not None else x
        return out + residual


class PreResNet(nn.Module):
    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        fam = get_family("preresnet")
        self.conv1 = nn.Conv2d(arch.in_channels, PRERESNET_STEM, 3, 1, 1, bias=False)
        stages, k, c = [], 0, PRERESNET_STEM
        for s, blocks in enumerate(fam.block_widths(arch)):  # type: ignore[attr-defined]
            mods = []
            for b, (cin, c0, c1, c2, p) in enumerate(blocks):
                stride = 2 if (s > 0 and b == 0) else 1
                down = b == 0 and (stride != 1 or cin != 4 * p)
                mods.append(Bottleneck(cin, c0, c1, c2, p, stride, _selection(arch, k, c0), down))
                k += 1
                c = 4 * p
            stages.append(nn.Sequential(*mods))
        self.layer1, self.layer2, self.layer3 = stages
        cf = arch.widths[-1]
        self.select = ChannelSelect(_selection(arch, k, cf), c)
        self.bn = nn.BatchNorm2d(cf)
        self.fc = nn.Linear(cf, arch.num_classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        x = F.relu(self.bn(self.select(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


# ------------------------------------------------------------------------------------------------
class DenseLayer(nn.Module):
    def __init__(self, cin: int, c: int, selection: Sequence[int]) -> None:
        super().__init__()
        self.select = ChannelSelect(selection, cin)
        self.bn = nn.BatchNorm2d(c)
        self.conv = nn.Conv2d(c, DENSENET_GROWTH, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv(F.relu(self.bn(self.select(x))))], 1)


class Transition(nn.Module):
    def __init__(self, cin: int, c: int, selection: Sequence[int]) -> None:
        super().__init__()
        self.select = ChannelSelect(selection, cin)
        self.bn = nn.BatchNorm2d(c)
        self.conv = nn.Conv2d(c, cin, 1, bias=False)  # compression 1: output = all channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(self.select(x)))), 2)


class DenseNet(nn.Module):
    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        n = (arch.depth - 4) // 3
        c_full = 2 * DENSENET_GROWTH
        self.conv1 = nn.Conv2d(arch.in_channels, c_full, 3, 1, 1, bias=False)
        mods: list[nn.Module] = []
        k = 0
        for s in range(3):
            for _ in range(n):
                mods.append(DenseLayer(c_full, arch.widths[k], _selection(arch, k, arch.widths[k])))
                c_full += DENSENET_GROWTH
                k += 1
            if s < 2:
                mods.append(Transition(c_full, arch.widths[k], _selection(arch, k, arch.widths[k])))
                k += 1
        self.features = nn.Sequential(*mods)
        cf = arch.widths[k]
        self.select = ChannelSelect(_selection(arch, k, cf), c_full)
        self.bn = nn.BatchNorm2d(cf)
        self.fc = nn.Linear(cf, arch.num_classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.conv1(x))
        x = F.relu(self.bn(self.select(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


BUILDERS.register("vgg", VGGNet)
BUILDERS.register("resnet", CifarResNet)
BUILDERS.register("preresnet", PreResNet)
BUILDERS.register("densenet", DenseNet)

__all__ = ["BUILDERS", "attach_masks", "build_model", "conv_layers"]
