"""Ψ, the conditional decoder: (skeleton image, appearance frame) → image."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .common import ConvBlock, upsample2


class ConditionalDecoder(nn.Module):
    """Reconstruct the target frame from its skeleton and another frame of the video.

    ``skeleton``: ``B×1×H×W`` in [-1, 1]; ``appearance``: ``B×3×H×W`` in
    [-1, 1] → ``B×3×H×W`` in [-1, 1] (tanh).  Two encoders bring each input to
    ``widths[-1]`` channels at ``H / 2**(len(widths)-1)``; their features are
    concatenated and brought back to full size by bilinear ×2 stages.

    With ``pose_skips`` (not in the paper) each upsampling stage also receives
    the skeleton encoder's features of its resolution, so the pose reaches the
    output at full resolution.  With ``appearance_skips`` (not in the paper)
    the same holds for the appearance encoder: the static parts of the frame
    (background) can be copied sharply, and what is left to reconstruct is
    what moved — the part the skeleton must explain.
    """

    def __init__(
        self,
        *,
        widths: Sequence[int] = (32, 64, 128, 256),
        norm: str = "batch",
        pose_skips: bool = False,
        appearance_skips: bool = False,
    ):
        super().__init__()
        widths = list(widths)
        self.pose_skips = pose_skips
        self.appearance_skips = appearance_skips

        def encoder(cin: int) -> nn.Sequential:
            layers = [ConvBlock(cin, widths[0], norm=norm)]
            for a, b in zip(widths[:-1], widths[1:]):
                layers.append(ConvBlock(a, b, norm=norm, stride=2))
            return nn.Sequential(*layers)

        self.pose_encoder = encoder(1)
        self.appearance_encoder = encoder(3)
        ups = []
        cin = 2 * widths[-1]
        for w in reversed(widths[:-1]):
            ups.append(ConvBlock(cin + (w if pose_skips else 0) + (w if appearance_skips else 0), w, norm=norm))
            cin = w
        self.ups = nn.ModuleList(ups)
        self.head = nn.Conv2d(widths[0], 3, 3, padding=1)

    @staticmethod
    def _features(encoder: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in encoder:
            x = stage(x)
            feats.append(x)
        return feats

    def forward(self, skeleton: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        pose = self._features(self.pose_encoder, skeleton)
        app = self._features(self.appearance_encoder, appearance)
        x = torch.cat([pose.pop(), app.pop()], dim=1)
        for block in self.ups:
            x = upsample2(x)
            parts = [x]
            if self.pose_skips:
                parts.append(pose.pop())
            if self.appearance_skips:
                parts.append(app.pop())
            x = block(torch.cat(parts, dim=1) if len(parts) > 1 else x)
        return torch.tanh(self.head(x))
