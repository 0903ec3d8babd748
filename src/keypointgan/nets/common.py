"""Building blocks shared by the networks."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ARCHS, NORMS


def norm_layer(kind: str, channels: int) -> nn.Module:
    """A normalisation layer by name: ``batch``, ``instance`` (learnt scale and shift), ``instance-noaffine``
    (without them, as in the authors' release), ``group`` (8 groups) or ``none``."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "instance-noaffine":
        return nn.InstanceNorm2d(channels, affine=False)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose from {NORMS}")


def conv_bias(norm: str, arch: str = "ours") -> bool:
    """Whether a conv followed by a ``norm`` layer has a bias: in our layouts only without a norm (a
    norm's shift makes it redundant); in the release's (``arch="release"``) before every norm but batch
    norm (its rule: biases before instance norms, none before batch norms)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose from {ARCHS}")
    return norm == "none" if arch == "ours" else norm != "batch"


class ConvBlock(nn.Sequential):
    """``n`` × (3×3 conv + norm + ReLU); the first conv may have a stride.  ``bias``: the convs' biases
    (None: only without a norm, :func:`conv_bias`)."""

    def __init__(self, cin: int, cout: int, *, norm: str = "batch", n: int = 2, stride: int = 1, bias: bool | None = None):
        layers: list[nn.Module] = []
        bias = norm == "none" if bias is None else bias
        for i in range(n):
            layers += [
                nn.Conv2d(cin if i == 0 else cout, cout, 3, stride=stride if i == 0 else 1, padding=1, bias=bias),
                norm_layer(norm, cout),
                nn.ReLU(inplace=True),
            ]
        super().__init__(*layers)


def release_stages(cin: int, widths, *, norm: str, out: int | None = None) -> list[nn.Sequential]:
    """The encoder of the authors' release, one ``nn.Sequential`` per level (its ``NipsEncoder`` and the
    encoder half of its ``SkipNipsGenerator``): level 0 a 7×7 then a 3×3 conv at full resolution, level
    ``i`` a stride-2 3×3 conv to ``widths[i]`` then a 3×3 conv, each conv followed by ``norm`` and ReLU
    and biased by the release's rule (:func:`conv_bias`); with ``out`` the last level ends in a linear
    1×1 conv to ``out`` channels (no norm, no activation).  Level ``i`` works at ``H / 2**i``."""
    widths = list(widths)
    bias = conv_bias(norm, "release")
    first = nn.Sequential(nn.Conv2d(cin, widths[0], 7, padding=3, bias=bias), norm_layer(norm, widths[0]), nn.ReLU(inplace=True),
                          *ConvBlock(widths[0], widths[0], norm=norm, n=1, bias=bias))
    stages = [first] + [nn.Sequential(*ConvBlock(a, b, norm=norm, stride=2, bias=bias)) for a, b in zip(widths[:-1], widths[1:])]
    if out is not None:
        stages[-1].append(nn.Conv2d(widths[-1], out, 1, bias=bias))
    return stages


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """The authors' init: conv weights ~ N(0, std), norm scales ~ N(1, std), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
