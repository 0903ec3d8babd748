"""Ψ, the conditional decoder: (skeleton image, appearance frame) → image."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .common import ConvBlock, release_stages, upsample2


class ConditionalDecoder(nn.Module):
    """Reconstruct the target frame from its skeleton and another frame of the video.

    ``skeleton``: ``B×1×H×W`` in [-1, 1]; ``appearance``: ``B×3×H×W`` in
    [-1, 1] → ``B×3×H×W``.  Two encoders bring each input to
    ``widths[-1]`` channels at ``H / 2**(len(widths)-1)``; their features are
    concatenated and brought back to full size by bilinear ×2 stages.

    ``style``: ``upsample-tanh`` upsamples the joined features at once (each stage: ×2, two 3×3
    conv + norm + ReLU) and ends in ``tanh``, so the output is in [-1, 1]; ``release`` (the authors'
    layout) first mixes the joined features with two 3×3 convs at the lowest resolution, has one conv
    in the last stage and no output activation (the output is not bounded).

    ``arch``: the two encoders' layout: ``ours`` (two 3×3 convs per level) or ``release`` (the
    release's ``NipsEncoder``, :func:`~.common.release_stages`, ending in a linear 1×1 conv to
    ``widths[-1]``); with ``style="release"`` too, Ψ is the release's ``CondNipsGenerator``.

    (Earlier versions had skip connections from either encoder as options: measured as not
    helping, they were removed; docs/design.md.)
    """

    def __init__(
        self,
        *,
        widths: Sequence[int] = (32, 64, 128, 256),
        norm: str = "batch",
        style: str = "upsample-tanh",
        arch: str = "ours",
    ):
        super().__init__()
        if style not in ("upsample-tanh", "release"):
            raise ValueError(f"unknown decoder style {style!r}; choose upsample-tanh or release")
        self.style = style
        widths = list(widths)

        def encoder(cin: int) -> nn.Sequential:
            if arch == "release":
                return nn.Sequential(*release_stages(cin, widths, norm=norm, out=widths[-1]))
            layers = [ConvBlock(cin, widths[0], norm=norm)]
            for a, b in zip(widths[:-1], widths[1:]):
                layers.append(ConvBlock(a, b, norm=norm, stride=2))
            return nn.Sequential(*layers)

        self.skeleton_encoder = encoder(1)
        self.appearance_encoder = encoder(3)
        ups = []
        cin = 2 * widths[-1]
        if style == "release":
            self.mix = ConvBlock(cin, widths[-1], norm=norm)
            cin = widths[-1]
        for i, w in enumerate(reversed(widths[:-1])):
            last = i == len(widths) - 2
            ups.append(ConvBlock(cin, w, norm=norm, n=1 if style == "release" and last else 2))
            cin = w
        self.ups = nn.ModuleList(ups)
        self.head = nn.Conv2d(widths[0], 3, 3, padding=1)

    def forward(self, skeleton: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.skeleton_encoder(skeleton), self.appearance_encoder(appearance)], dim=1)
        if self.style == "release":
            x = self.mix(x)
        for block in self.ups:
            x = block(upsample2(x))
        x = self.head(x)
        return x if self.style == "release" else torch.tanh(x)
