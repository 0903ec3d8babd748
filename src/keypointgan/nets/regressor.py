"""η, the keypoint regressor: skeleton image → K heatmaps → K points."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..geometry import soft_argmax
from .common import ConvBlock, conv_bias, norm_layer, release_stages


class KeypointRegressor(nn.Module):
    """``B×1×H×W`` skeleton image in [-1, 1] → ``B×K×2`` points ``(x, y)`` in [-1, 1].

    A 7×7 conv at full resolution, then one stride-2 stage per entry of
    ``widths[1:]`` (three by default, so the heatmaps are at ``H/8``), then a
    1×1 conv to ``K`` maps and the marginal :func:`~keypointgan.geometry.soft_argmax`.
    ``forward(y, return_heatmaps=True)`` also returns the ``B×K×h×w`` maps.

    ``arch``: ``ours`` as above; ``release`` the authors' ``NipsEncoder``
    (:func:`~.common.release_stages`: a 3×3 conv after the 7×7 one, biases before instance norms).
    """

    def __init__(self, *, num_keypoints: int, widths: Sequence[int] = (32, 64, 128, 256), norm: str = "batch", in_channels: int = 1,
                 arch: str = "ours"):
        super().__init__()
        widths = list(widths)
        if arch == "release":
            stem, *stages = release_stages(in_channels, widths, norm=norm)
            self.stem = stem
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, widths[0], 7, padding=3, bias=norm == "none"), norm_layer(norm, widths[0]), nn.ReLU(inplace=True)
            )
            stages = [ConvBlock(cin, cout, norm=norm, stride=2) for cin, cout in zip(widths[:-1], widths[1:])]
        self.stages = nn.Sequential(*stages)
        self.head = nn.Conv2d(widths[-1], num_keypoints, 1, bias=arch == "ours" or conv_bias(norm, arch))
        self.num_keypoints = num_keypoints

    def heatmaps(self, y: torch.Tensor) -> torch.Tensor:
        """``B×1×H×W`` skeleton image → the ``B×K×h×w`` heatmap logits (before the soft-argmax)."""
        return self.head(self.stages(self.stem(y)))

    def forward(self, y: torch.Tensor, return_heatmaps: bool = False):
        maps = self.heatmaps(y)
        points = soft_argmax(maps)
        return (points, maps) if return_heatmaps else points
