"""Building blocks shared by the networks."""

from __future__ import annotations

import torch
from torch import nn

from ..config import NORMS


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


class ConvBlock(nn.Sequential):
    """``n`` × (3×3 conv + norm + ReLU); the first conv may have a stride."""

    def __init__(self, cin: int, cout: int, *, norm: str = "batch", n: int = 2, stride: int = 1):
        layers: list[nn.Module] = []
        for i in range(n):
            layers += [
                nn.Conv2d(cin if i == 0 else cout, cout, 3, stride=stride if i == 0 else 1, padding=1, bias=norm == "none"),
                norm_layer(norm, cout),
                nn.ReLU(inplace=True),
            ]
        super().__init__(*layers)


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
