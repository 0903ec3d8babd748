"""Inference shared by evaluation, the detector, predict and the demo: η(Φ(x)) → points, and the flip test."""

from __future__ import annotations

import torch

__all__ = ["predict_points", "unmirror"]


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
