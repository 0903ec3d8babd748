"""Random image changes for two training terms: renders drawn the way Φ might draw them (for η) and
similarity warps (for Φ's equivariance).

Both draw every random number from the ``torch.Generator`` they are given, so a run stays
reproducible and resumes bit-identically.  Images are ``B×C×H×W``; skeleton images are in [-1, 1]
(background -1), as :func:`keypointgan.geometry.render_signed` writes them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import geometry

__all__ = ["perturb_renders", "random_similarity", "warp"]

_SPUR_LIMBS = ((0, 1), (2, 3))
"""Two free segments: the strokes that :func:`perturb_renders` adds where the skeleton has none."""


def _uniform(gen: torch.Generator, n: int, lo: float, hi: float, like: torch.Tensor) -> torch.Tensor:
    return (torch.rand(n, generator=gen, dtype=torch.float32) * (hi - lo) + lo).to(like.device, like.dtype).view(n, 1, 1, 1)


def perturb_renders(y: torch.Tensor, gen: torch.Generator, strength: float, sigma: float) -> torch.Tensor:
    """Rendered skeletons ``y`` (``B×1×H×W`` in [-1, 1]) redrawn with the variations of a learnt drawing.

    Per image, with ``s = strength`` (0: ``y`` unchanged; 1: the widest ranges):

    * line weight: the [0, 1] render raised to ``γ ∈ [3^-s, 3^s]`` (log-uniform), which is exactly the
      render at ``σ² / γ`` for one limb;
    * fainter strokes: scaled by ``[1 - s/2, 1]``;
    * blur: blended with its 3×3 box blur (twice) by ``[0, s]``;
    * missing strokes: with probability ``s/2`` a square of side ``[0.15, 0.35]`` of the image erased;
    * spurious strokes: with probability ``s/2`` two random segments (a point when their ends meet) drawn
      at intensity ``[0.3, 0.8]·s`` beside the skeleton;
    * a smooth elastic warp of at most ``0.04·s`` (in [-1, 1] units, about 1.3 px at 64 px), from a
      4×4 grid of random shifts;
    * noise ``N(0, (0.02 s)²)``.

    The keypoints the render came from stay the targets: η learns to read them through these changes.
    Returns a new ``B×1×H×W`` tensor in [-1, 1]; differentiable in ``y``.
    """
    if strength <= 0:
        return y
    s = float(strength)
    b, _, h, w = y.shape
    u = (y + 1.0) * 0.5
    gamma = torch.exp(_uniform(gen, b, -s, s, u) * math.log(3.0))
    u = u.clamp_min(1e-6) ** gamma
    u = u * _uniform(gen, b, 1.0 - 0.5 * s, 1.0, u)
    blur = F.avg_pool2d(F.avg_pool2d(u, 3, 1, 1, count_include_pad=False), 3, 1, 1, count_include_pad=False)
    alpha = _uniform(gen, b, 0.0, s, u)
    u = (1.0 - alpha) * u + alpha * blur

    # missing strokes: one square erased in some images
    erase = (_uniform(gen, b, 0.0, 1.0, u) < 0.5 * s).to(u.dtype)
    side = _uniform(gen, b, 0.15, 0.35, u)
    cx, cy = _uniform(gen, b, -1.0, 1.0, u), _uniform(gen, b, -1.0, 1.0, u)
    gx = torch.linspace(-1.0, 1.0, w, device=u.device, dtype=u.dtype).view(1, 1, 1, w)
    gy = torch.linspace(-1.0, 1.0, h, device=u.device, dtype=u.dtype).view(1, 1, h, 1)
    inside = ((gx - cx).abs() < side) & ((gy - cy).abs() < side)
    u = u * (1.0 - erase * inside.to(u.dtype))

    # spurious strokes: two free segments in some images
    ends = (torch.rand(b, 4, 2, generator=gen, dtype=torch.float32) * 1.8 - 0.9).to(u.device, u.dtype)
    short = ends[:, 1::2] - ends[:, 0::2]
    ends[:, 1::2] = ends[:, 0::2] + short * _uniform(gen, b, 0.0, 0.4, u).view(b, 1, 1)
    spur = geometry.render_skeleton(ends, _SPUR_LIMBS, (h, w), sigma)
    add = (_uniform(gen, b, 0.0, 1.0, u) < 0.5 * s).to(u.dtype) * _uniform(gen, b, 0.3, 0.8, u) * s
    u = torch.maximum(u, spur * add)

    # a smooth elastic warp
    flow = (torch.rand(b, 2, 4, 4, generator=gen, dtype=torch.float32) * 2 - 1).to(u.device, u.dtype) * (0.04 * s)
    flow = F.interpolate(flow, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    base = torch.stack(torch.meshgrid(gy.view(h), gx.view(w), indexing="ij")[::-1], dim=-1).unsqueeze(0)
    u = F.grid_sample(u, base + flow, mode="bilinear", padding_mode="zeros", align_corners=True)

    u = u + torch.randn(u.shape, generator=gen, dtype=torch.float32).to(u.device, u.dtype) * (0.02 * s)
    return u.clamp(0.0, 1.0) * 2.0 - 1.0


def random_similarity(gen: torch.Generator, n: int, *, rotate_deg: float, scale: float, shift: float,
                      device=None, dtype=torch.float32) -> torch.Tensor:
    """``n×2×3`` affine matrices (``F.affine_grid``'s: output grid → input points, in [-1, 1] units) of random
    similarity transforms: rotation ±``rotate_deg``, scale in ``[1 - scale, 1 + scale]``, shift ±``shift``."""
    ang = (torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1) * math.radians(rotate_deg)
    sc = 1.0 + (torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1) * scale
    t = (torch.rand(n, 2, generator=gen, dtype=torch.float64) * 2 - 1) * shift
    cos, sin = torch.cos(ang) * sc, torch.sin(ang) * sc
    theta = torch.stack([torch.stack([cos, -sin, t[:, 0]], -1), torch.stack([sin, cos, t[:, 1]], -1)], 1)
    return theta.to(device=device, dtype=dtype)


def warp(images: torch.Tensor, theta: torch.Tensor, *, fill: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``images`` (``B×C×H×W``) resampled by ``theta`` (:func:`random_similarity`), bilinear, with ``fill``
    outside the source (None: the nearest border pixel); and the ``B×1×H×W`` mask (1 where every tap was
    inside the source).  Pixel centres follow :func:`keypointgan.geometry.soft_argmax` (``align_corners=True``)."""
    grid = F.affine_grid(theta, list(images.shape), align_corners=True)
    if fill is None:
        out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)
    else:
        out = F.grid_sample(images - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=True) + fill
    ones = torch.ones_like(images[:, :1])
    mask = (F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros", align_corners=True) > 0.999).to(images.dtype)
    return out, mask
