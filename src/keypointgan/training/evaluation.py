"""Evaluation during training: held-out frames with true keypoints, scored with the averaged (or raw)
Φ and η, and a sheet of predictions drawn beside the truth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import pixels as P
from ..inference import predict_points
from ..skeleton import Skeleton

__all__ = ["EvalSet", "predict_eval_points", "evaluate_points", "save_eval_predictions"]


@dataclass
class EvalSet:
    """Frames with true keypoints for periodic evaluation (never used for training)."""

    images: torch.Tensor  # N×3×S×S in [-1, 1]
    keypoints: np.ndarray  # N×K×2 pixel (x, y) of the original frames
    hw: np.ndarray  # N×2 original (H, W)
    groups: list[str]  # video id (or protocol group) per frame


def predict_eval_points(phi: nn.Module, eta: nn.Module, images: torch.Tensor, skeleton: Skeleton, *, flip_test: bool,
                        memory_format: torch.memory_format = torch.contiguous_format, batch_size: int = 64) -> torch.Tensor:
    """``N×3×S×S`` → ``N×K×2`` points in [-1, 1], the networks in eval mode (their modes restored after)."""
    was = phi.training, eta.training
    phi.eval(), eta.eval()
    try:
        flip = skeleton.flip_permutation if flip_test else None
        return predict_points(phi, eta, images, flip_permutation=flip, batch_size=batch_size, memory_format=memory_format)
    finally:
        phi.train(was[0]), eta.train(was[1])


def evaluate_points(points: torch.Tensor, es: EvalSet, skeleton: Skeleton) -> dict:
    """Metrics (:func:`keypointgan.evaluate.summarize`, without the per-group table) of ``N×K×2``
    points in [-1, 1] predicted on ``es.images``."""
    from ..evaluate import summarize

    pix = P.norm_to_image_pixels(points, es.images.shape[-1], es.hw)
    res = summarize(pix, es.keypoints, es.hw, skeleton, es.groups)
    res.pop("per_group")
    return res


def save_eval_predictions(points: torch.Tensor, es: EvalSet, skeleton: Skeleton, path: Path, n: int = 12) -> Path:
    """``path`` (PNG): the predicted keypoints (``N×K×2`` in [-1, 1]) on up to ``n`` evenly spaced
    frames of ``es``, each beside the truth, drawn on the frames as the network sees them."""
    from ..viz import overlay_sheet, tensor_to_uint8

    idx = np.linspace(0, len(es.images) - 1, min(n, len(es.images))).round().astype(int)
    size = es.images.shape[-1]
    grid_hw = (size, size)
    pred = P.norm_to_image_pixels(points[idx], size, grid_hw)
    true = P.norm_to_image_pixels(P.image_pixels_to_norm(es.keypoints[idx], size, es.hw[idx]), size, grid_hw)
    return overlay_sheet(tensor_to_uint8(es.images[idx]), pred, true, skeleton, path)
