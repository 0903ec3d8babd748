"""Inference shared by evaluation, the detector, predict, the demo and export: η(Φ(x)) → points, and the flip test."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .geometry import heatmap_agreement, render_signed, soft_argmax
from .pixels import uint8_to_signed

__all__ = ["predict_points", "predict_points_confidence", "read_rendered", "unmirror", "DetectorGraph"]


def unmirror(points: torch.Tensor, flip_permutation: list[int]) -> torch.Tensor:
    """``B×K×2`` points in [-1, 1] predicted on mirrored images → points for the images themselves:
    ``x → −x``, and left and right keypoints swapped (``flip_permutation``, the skeleton's)."""
    return points[:, flip_permutation] * points.new_tensor([-1.0, 1.0])


@torch.no_grad()
def predict_points(
    phi: torch.nn.Module,
    eta: torch.nn.Module,
    images: torch.Tensor,
    *,
    flip_permutation: list[int] | None = None,
    batch_size: int = 64,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """η(Φ(x)) for ``N×3×S×S`` images in [-1, 1] → ``N×K×2`` points in [-1, 1] (on the CPU).

    With ``flip_permutation`` (the skeleton's left/right swap), the *flip test*: each image is also
    predicted mirrored, its points are mapped back (:func:`unmirror`), and the two predictions are
    averaged. The networks' modes are not changed.
    """
    dev = next(phi.parameters()).device
    outs = []
    for i in range(0, images.shape[0], batch_size):
        x = images[i : i + batch_size].to(dev)
        n = x.shape[0]
        if flip_permutation is not None:
            x = torch.cat([x, x.flip(-1)])
        p = eta(phi(x.contiguous(memory_format=memory_format))).float()
        if flip_permutation is not None:
            p = 0.5 * (p[:n] + unmirror(p[n:], flip_permutation))
        outs.append(p.cpu())
    return torch.cat(outs, 0)


@torch.no_grad()
def read_rendered(eta: nn.Module, points: torch.Tensor, skeleton, size: int, sigma: float, batch_size: int = 64) -> torch.Tensor:
    """What ``eta`` reads on the skeleton images of ``points``: ``N×K×2`` in [-1, 1] → rendered at ``size``
    px with ``sigma`` (:func:`~keypointgan.geometry.render_signed`) → ``N×K×2`` in [-1, 1] (on the CPU)."""
    dev = next(eta.parameters()).device
    outs = [eta(render_signed(points[i : i + batch_size].to(dev), skeleton, size, sigma)).float().cpu()
            for i in range(0, points.shape[0], batch_size)]
    return torch.cat(outs, 0)


class DetectorGraph(nn.Module):
    """Φ → η's heatmaps → points and confidence, as one module: what ``keypointgan export`` writes to ONNX.

    ``forward(images)`` → ``(points, confidence)``:

    * ``images``: ``N×3×S×S`` float in [-1, 1] at the model's size ``S`` (RGB); with ``preprocess``,
      ``N×H×W×3`` uint8 RGB of any ``H×W``, which the graph casts, scales (:func:`~keypointgan.pixels.uint8_to_signed`) and
      resizes to ``S×S`` (bilinear, ``align_corners=False``, *no* antialiasing: shrinking by more
      than 2× aliases where the library's own preparation, PIL's antialiased bilinear, does not).
    * ``points``: ``N×K×2`` float32 ``(x, y)`` in [-1, 1] on the ``S×S`` grid (x right, y down; -1 and
      1 are the centres of the first and last pixel).
    * ``confidence``: ``N×K`` float32 in [0, 1].

    Each image is read twice, as is and mirrored: η's heatmaps of the mirror image, mirrored back
    (columns reversed, keypoints permuted by ``flip_permutation``, the skeleton's left/right swap), are
    compared with the image's own by :func:`~keypointgan.geometry.heatmap_agreement` — the confidence.
    With ``flip_test`` the points are the mean of the two readings' soft-argmax (the flip test); without,
    the image's own reading alone (the mirrored pass then serves the confidence only).
    """

    def __init__(
        self, phi: nn.Module, eta: nn.Module, *, flip_permutation: list[int], flip_test: bool = True, preprocess: bool = False, size: int | None = None
    ):
        super().__init__()
        if preprocess and not size:
            raise ValueError("preprocess needs the model's input size")
        self.phi, self.eta = phi, eta
        self.flip_permutation = list(flip_permutation)
        self.flip_test = bool(flip_test)
        self.preprocess = bool(preprocess)
        self.size = size

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images
        if self.preprocess:
            x = uint8_to_signed(x.permute(0, 3, 1, 2))
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        n = x.shape[0]
        maps = self.eta.heatmaps(self.phi(torch.cat([x, x.flip(-1)]))).float()
        own, mirrored = maps[:n], maps[n:]
        points = soft_argmax(own)
        if self.flip_test:
            points = 0.5 * (points + unmirror(soft_argmax(mirrored), self.flip_permutation))
        conf = heatmap_agreement(own, mirrored[:, self.flip_permutation].flip(-1))
        return points, conf


@torch.no_grad()
def predict_points_confidence(
    phi: nn.Module, eta: nn.Module, images: torch.Tensor, *, flip_permutation: list[int], flip_test: bool = True, batch_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`predict_points`, with confidence: ``N×3×S×S`` in [-1, 1] → ``N×K×2`` points in [-1, 1]
    and ``N×K`` confidences in [0, 1] (both on the CPU; see :class:`DetectorGraph`)."""
    graph = DetectorGraph(phi, eta, flip_permutation=flip_permutation, flip_test=flip_test)
    dev = next(phi.parameters()).device
    pts, conf = [], []
    for i in range(0, images.shape[0], batch_size):
        p, c = graph(images[i : i + batch_size].to(dev))
        pts.append(p.cpu())
        conf.append(c.cpu())
    return torch.cat(pts, 0), torch.cat(conf, 0)
