"""Φ, the pose encoder: image → skeleton image."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .common import ConvBlock, upsample2


class PoseEncoder(nn.Module):
    """U-Net-like image-to-skeleton network.

    ``B×3×H×W`` image in [-1, 1] → ``B×1×H×W`` skeleton image (no output
    activation; it is trained to look like rendered skeletons mapped to
    [-1, 1]).  ``len(widths)`` levels; level ``i`` works at ``H / 2**i`` with
    ``widths[i]`` channels; skip connections join levels of equal size;
    bilinear upsampling.  ``H`` and ``W`` must be divisible by ``2**(levels-1)``.
    """

    def __init__(self, *, widths: Sequence[int] = (32, 64, 128, 256), norm: str = "batch", in_channels: int = 3, out_channels: int = 1):
        super().__init__()
        widths = list(widths)
        self.down = nn.ModuleList()
        cin = in_channels
        for i, w in enumerate(widths):
            self.down.append(ConvBlock(cin, w, norm=norm, stride=1 if i == 0 else 2))
            cin = w
        self.up = nn.ModuleList()
        for i in range(len(widths) - 1, 0, -1):
            self.up.append(ConvBlock(widths[i] + widths[i - 1], widths[i - 1], norm=norm))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for block in self.up:
            x = block(torch.cat([upsample2(x), skips.pop()], dim=1))
        return self.head(x)
