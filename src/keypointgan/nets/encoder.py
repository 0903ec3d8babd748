"""Φ, the pose encoder: image → skeleton image."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .common import ConvBlock, conv_bias, release_stages, upsample2


class PoseEncoder(nn.Module):
    """U-Net-like image-to-skeleton network.

    ``B×3×H×W`` image in [-1, 1] → ``B×1×H×W`` skeleton image (no output
    activation; it is trained to look like rendered skeletons mapped to
    [-1, 1]).  ``len(widths)`` levels; level ``i`` works at ``H / 2**i`` with
    ``widths[i]`` channels; skip connections join levels of equal size;
    bilinear upsampling.  ``H`` and ``W`` must be divisible by ``2**(levels-1)``.

    ``arch``: ``ours`` — per level two 3×3 convs down; up, the upsampled features concatenated with
    the skip go through two 3×3 convs; a 1×1 output conv.  ``release`` — the authors'
    ``SkipNipsGenerator``: the encoder of :func:`~.common.release_stages` (a 7×7 start, a linear 1×1
    bottleneck), two 3×3 convs at the lowest level (``mid``), then per level up the upsampled features
    and the skip joined by a 1×1 conv without bias or norm and two 3×3 convs (one at full resolution),
    and a 3×3 output conv.  Receptive field of one output pixel at 4 levels: 87 px (ours), 123 px
    (release) square (docs/design.md).
    """

    def __init__(self, *, widths: Sequence[int] = (32, 64, 128, 256), norm: str = "batch", in_channels: int = 3, out_channels: int = 1,
                 arch: str = "ours"):
        super().__init__()
        widths = list(widths)
        self.arch = arch
        bias = conv_bias(norm, arch)
        if arch == "release":
            self.down = nn.ModuleList(release_stages(in_channels, widths, norm=norm, out=widths[-1]))
            self.mid = ConvBlock(widths[-1], widths[-1], norm=norm, bias=bias)
        else:
            self.down = nn.ModuleList(ConvBlock(cin, w, norm=norm, stride=1 if i == 0 else 2)
                                      for i, (cin, w) in enumerate(zip([in_channels] + widths[:-1], widths)))
        self.up = nn.ModuleList()
        for i in range(len(widths) - 1, 0, -1):
            if arch == "release":
                join = nn.Conv2d(widths[i] + widths[i - 1], widths[i], 1, bias=False)
                self.up.append(nn.Sequential(join, *ConvBlock(widths[i], widths[i - 1], norm=norm, n=1 if i == 1 else 2, bias=bias)))
            else:
                self.up.append(ConvBlock(widths[i] + widths[i - 1], widths[i - 1], norm=norm))
        self.head = nn.Conv2d(widths[0], out_channels, 3 if arch == "release" else 1, padding=1 if arch == "release" else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = skips.pop()
        if self.arch == "release":
            x = self.mid(x)
        for block in self.up:
            x = block(torch.cat([upsample2(x), skips.pop()], dim=1))
        return self.head(x)
