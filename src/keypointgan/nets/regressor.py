"""η, the keypoint regressor: skeleton image → K heatmaps → K points."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..geometry import soft_argmax
from .common import ConvBlock, norm_layer


class KeypointRegressor(nn.Module):
    """``B×1×H×W`` skeleton image in [-1, 1] → ``B×K×2`` points ``(x, y)`` in [-1, 1].

    A 7×7 conv at full resolution, then one stride-2 stage per entry of
    ``widths[1:]`` (three by default, so the heatmaps are at ``H/8``), then a
    1×1 conv to ``K`` maps and the marginal :func:`~keypointgan.geometry.soft_argmax`.
    ``forward(y, return_heatmaps=True)`` also returns the ``B×K×h×w`` maps.
    """

    def __init__(self, *, num_keypoints: int, widths: Sequence[int] = (32, 64, 128, 256), norm: str = "batch", in_channels: int = 1):
        super().__init__()
        widths = list(widths)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 7, padding=3, bias=norm == "none"), norm_layer(norm, widths[0]), nn.ReLU(inplace=True)
        )
        stages = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            stages.append(ConvBlock(cin, cout, norm=norm, stride=2))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Conv2d(widths[-1], num_keypoints, 1)
        self.num_keypoints = num_keypoints

    def heatmaps(self, y: torch.Tensor) -> torch.Tensor:
        """``B×1×H×W`` skeleton image → the ``B×K×h×w`` heatmap logits (before the soft-argmax)."""
        return self.head(self.stages(self.stem(y)))

    def forward(self, y: torch.Tensor, return_heatmaps: bool = False):
        maps = self.heatmaps(y)
        points = soft_argmax(maps)
        return (points, maps) if return_heatmaps else points
